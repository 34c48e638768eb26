/*
 * ipcclient.h: a blocking IPC client (codec of ipc.h) for command-line tools.
 *
 * ternctl talks to the master's control socket with it: connect to a unix
 * socket path, check the server's hello, send a request, wait for the reply.
 * Every call takes a timeout in milliseconds (negative: wait forever) and
 * waits with poll(), so a stuck server cannot hang a tool.  Not for daemons:
 * they use ipcchan.h on the event loop.
 *
 * Errors are strings, valid until the next call on the same client.  After
 * a failed or timed-out send, or any receive error except a timeout, the
 * connection is closed; ipc_client_connect() may be called again.
 * Limits: frames up to the max_frame given to ipc_client_new().
 */
#ifndef TERN_IPCCLIENT_H
#define TERN_IPCCLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "compat.h"
#include "ipc.h"

struct ipc_client;

/* max_frame: as for ipc_decoder_new(), both directions. */
struct ipc_client *ipc_client_new(size_t max_frame);
void ipc_client_free(struct ipc_client **c);	/* closes the socket */

int ipc_client_connect(struct ipc_client *c, const char *path,
		       int timeout_ms, const char **error_r) TERN_WUR;
void ipc_client_close(struct ipc_client *c);
int ipc_client_is_connected(const struct ipc_client *c);

int ipc_client_send(struct ipc_client *c, const struct ipc_msg *m,
		    int timeout_ms, const char **error_r) TERN_WUR;
/* 0 with the next message in *msg_r (the caller frees it); -1 on error,
 * timeout or end of stream. */
int ipc_client_recv(struct ipc_client *c, int timeout_ms,
		    struct ipc_msg **msg_r, const char **error_r) TERN_WUR;
/* Receives the server's hello and checks it names proto and version. */
int ipc_client_hello(struct ipc_client *c, const char *proto, int64_t version,
		     int timeout_ms, const char **error_r) TERN_WUR;

#endif
