/*
 * proxyd.h: tern-proxyd, the IMAP, POP3 and HTTP front end that sends
 * every user to the mailbox server holding their account.
 *
 * A client talks to the proxy until it has logged in: greeting,
 * CAPABILITY/CAPA, STARTTLS/STLS, ID, LOGIN, AUTHENTICATE PLAIN and LOGIN,
 * USER/PASS, AUTH PLAIN.  The proxy checks the password with tern-authd
 * (service "imap" or "pop3" and the client's address: the failure delay
 * and lockout are the ones the mailbox servers use), finds the account's
 * mail host, connects to that server's backend port (imap-backend 7143,
 * pop3-backend 7110, shifted by the port base), logs in there as the user
 * with the proxy credential (proxyauth.h; the user's password goes no
 * further), and from then on relays bytes both ways until either side
 * closes.  The capabilities a client sees after login are the backend's.
 *
 * A mailbox server that cannot be reached or refuses the proxy login is
 * marked down for proxy_backend_retry; its users get "[UNAVAILABLE] try
 * again later" (IMAP) or "-ERR [SYS/TEMP]" (POP3) and may log in again;
 * other users are not affected.
 *
 * Routes: with proxy_memcached_servers set, the route of an
 * authenticated user is read from memcached (memcache.h, key
 * memcache_route_key() of the address) and kept equal to the directory's
 * mail host: a miss or a different value is (re)written for
 * proxy_route_cache_ttl.  memcached down or slower than
 * proxy_memcached_timeout: the cache is skipped, the login goes on.  Client addresses are limited to
 * proxy_client_connection_limit connections per service (tern-authd
 * counts them over all processes).
 *
 * The protocol of a service: "imap..." names speak IMAP, "pop3..." POP3,
 * "http..." HTTP (-o protocol=imap|pop3|http for any other name);
 * "imaps"/"pop3s"/"https" names are implicit TLS as for the servers.
 *
 * HTTP (http.c) is a reverse proxy per request rather than per
 * connection: each request is routed on its own (Basic authentication
 * checked with tern-authd as service "http", the signed TERN_SESSION
 * cookie, a /dav/USER path, or the default upstream proxy_http_upstream)
 * to a mailbox server's http-backend port (8080 shifted by its port
 * base), with X-Forwarded-For, X-Forwarded-Proto, Forwarded and, for an
 * authenticated user, X-Tern-User.  docs/proxy.md is the administrator's
 * page.
 */
#ifndef TERN_PROXYD_H
#define TERN_PROXYD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "authclient.h"
#include "compat.h"
#include "svc.h"

struct authclient;
struct memcache;
struct proxyauth;
struct tls_ctx;
struct psession;

enum proxy_proto {
	PROXY_IMAP,
	PROXY_POP3,
	PROXY_HTTP,
};

/* A mailbox server that failed, not tried again before until. */
struct backend_down {
	struct backend_down *next;
	char *key;		/* "host:port" */
	uint64_t until;		/* uv_now() */
};

struct proxyd {
	struct svc *svc;
	struct authclient *auth;
	struct tls_ctx *tls;		/* NULL: no STARTTLS */
	struct tls_ctx *backend_tls;	/* proxy_backend_tls; NULL: plain */
	bool backend_verify;		/* proxy_backend_ca_file given */
	bool implicit_tls;
	enum proxy_proto proto;
	enum svc_plaintext plaintext;	/* imap_/pop3_plaintext_auth */
	struct proxyauth *pa;
	char **servers;			/* proxy_servers entries */
	size_t nservers;
	unsigned port_base;
	uint64_t connect_ms;		/* proxy_connect_timeout */
	uint64_t retry_ms;		/* proxy_backend_retry */
	uint64_t login_ms;		/* before login */
	uint64_t idle_ms;		/* while relaying */
	unsigned user_max;		/* proxy_user_connections_max */
	unsigned client_max;		/* proxy_client_connection_limit */
	char *count_service;		/* "proxy-NAME": tern-authd's count */
	struct memcache *mc;		/* route cache, NULL when none */
	unsigned route_ttl_s;		/* proxy_route_cache_ttl */
	size_t line_max;
	char *hostname;
	char *local_host;		/* this machine's backend listener */
	unsigned local_port;
	struct backend_down *down;
	/* HTTP (http.c) */
	char *http_upstream_host;	/* proxy_http_upstream; NULL: local */
	unsigned http_upstream_port;
	size_t http_fields_max;		/* proxy_http_header_fields_max */
};

struct proxyd *proxyd_get(struct svc *svc);

/* The backend port of the protocol on a server with port_base. */
unsigned proxyd_backend_port(const struct proxyd *d, unsigned port_base);

/* A client connection's count in tern-authd (every front end). */
struct proxy_count {
	bool counting;		/* waiting for the count */
	bool counted;		/* tern-authd counts this connection */
};

/*
 * What every front end does with a new client connection: implicit TLS
 * when the service is so, then the count of the client's connections
 * (always counted: tern-authd forgets what a closed client counted; waited
 * for only with proxy_client_connection_limit and tern-authd there).
 * Returns 1 to go on now, 0 when cb(ctx) comes with the count (ss is held
 * for it), -1 when TLS could not start (the connection is aborted).
 */
struct conn;
struct svc_session;
int proxyd_client_start(struct proxyd *d, struct conn *client,
			struct svc_session *ss, const char *id,
			const char *peer, struct proxy_count *pc,
			authclient_count_cb *cb, void *ctx);
/* The end of a client connection: tern-authd stops counting it. */
void proxyd_client_end(struct proxyd *d, const char *peer,
		       struct proxy_count *pc);

/* session.c */
void psession_accept(struct proxyd *d, uv_stream_t *client);
void psessions_stop(struct proxyd *d);
/* Whether a backend ("host:port") failed less than proxy_backend_retry
 * ago; marks one that failed. */
bool proxyd_backend_is_down(struct proxyd *d, const char *key);
void proxyd_backend_mark_down(struct proxyd *d, const char *key);

/* http.c */
void hsession_accept(struct proxyd *d, uv_stream_t *client);
void hsessions_stop(struct proxyd *d);

#endif
