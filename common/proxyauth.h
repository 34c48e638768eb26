/*
 * proxyauth.h: proxy logins between tern-proxyd and the mailbox servers.
 *
 * tern-proxyd authenticates users itself (through tern-authd) and then
 * logs into the user's mailbox server with SASL PLAIN: authorization
 * identity = the user, authentication identity = proxy_master_user,
 * password = the shared secret of proxy_secret_file.  A mailbox server
 * (tern-imapd, tern-popd) accepts such a login only from a client in
 * proxy_trusted_networks, and only when the secret matches (compared in
 * constant time); it also takes the real client's address from such a
 * peer for its logs and counters.  No user password is stored or passed
 * on anywhere.
 *
 * Callers: tern-proxyd, tern-imapd, tern-popd.  Limits: the secret is one
 * line of at most PROXYAUTH_SECRET_MAX bytes.
 */
#ifndef TERN_PROXYAUTH_H
#define TERN_PROXYAUTH_H

#include <stdbool.h>

#include "compat.h"

#define PROXYAUTH_SECRET_MAX 1024
#define PROXYAUTH_SECRET_BYTES 32	/* random bytes ternctl setup writes */

struct cfg;
struct proxyauth;

/* Reads the settings and the secret file (a problem is logged once and
 * leaves proxy logins off).  Never NULL. */
struct proxyauth *proxyauth_load(const struct cfg *cfg);
void proxyauth_free(struct proxyauth **pa);

/* The master identity and the secret (tern-proxyd); secret "" = none. */
const char *proxyauth_user(const struct proxyauth *pa);
const char *proxyauth_secret(const struct proxyauth *pa);
/* Whether peer (conn_peer_address()) may use proxy logins. */
bool proxyauth_trusted(const struct proxyauth *pa, const char *peer);
/* Whether authcid/password from peer is a valid proxy login. */
bool proxyauth_verify(const struct proxyauth *pa, const char *authcid,
		      const char *password, const char *peer);

#endif
