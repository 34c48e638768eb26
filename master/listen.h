/*
 * listen.h: the master's pool of listening sockets.
 *
 * tern-master binds every listening socket itself and hands the descriptors
 * to its children.  The pool keeps each socket open across reloads as long as
 * some service still listens on that address, so a reload never refuses a
 * connection on an address that did not change.  Reload protocol:
 * listen_pool_mark() clears every "in use" flag, listen_pool_get() is called
 * for each address of the new table (reusing or binding), and
 * listen_pool_sweep() closes the sockets no service uses any more.
 *
 * Addresses: inet "HOST:PORT", "[V6]:PORT", "*:PORT" (all IPv4 and IPv6
 * addresses: two sockets); unix: a path.  Called by master/service.c only.
 */
#ifndef TERN_MASTER_LISTEN_H
#define TERN_MASTER_LISTEN_H

#include <stddef.h>

#include "compat.h"

#define LISTEN_FDS_MAX 32

enum listen_kind { LISTEN_INET, LISTEN_UNIX };

struct listen_pool;

struct listen_pool *listen_pool_new(void);
void listen_pool_free(struct listen_pool **pool);	/* closes every socket */

/* Appends the descriptors for addr to fds_r (at most LISTEN_FDS_MAX in all,
 * *nfds_r is updated), binding new sockets when the address is not open yet.
 * mode applies to unix sockets (0 = 0666). */
int listen_pool_get(struct listen_pool *pool, enum listen_kind kind,
		    const char *addr, int backlog, unsigned mode, int *fds_r,
		    size_t *nfds_r, const char **error_r) TERN_WUR;
/* Owner given to unix sockets bound from now on (the daemon account, so
 * that daemons reach each other's sockets); -1 = leave as created. */
void listen_pool_set_owner(struct listen_pool *pool, long uid, long gid);
void listen_pool_mark(struct listen_pool *pool);
void listen_pool_sweep(struct listen_pool *pool);

/* Canonical "addr" for status output of one descriptor ("127.0.0.1:7000",
 * "[::1]:7000", or the unix path). */
const char *listen_pool_name(struct listen_pool *pool, int fd);

#endif
