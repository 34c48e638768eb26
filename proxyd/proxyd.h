/*
 * proxyd.h: tern-proxyd, the IMAP and POP3 front end that sends every user
 * to the mailbox server holding their account.
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
 * The protocol of a service: "imap..." names speak IMAP, "pop3..." POP3
 * (-o protocol=imap|pop3 for any other name); "imaps"/"pop3s" names are
 * implicit TLS as for the servers.  docs/proxy.md is the administrator's
 * page.
 */
#ifndef TERN_PROXYD_H
#define TERN_PROXYD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
};

struct proxyd *proxyd_get(struct svc *svc);

/* The backend port of the protocol on a server with port_base. */
unsigned proxyd_backend_port(const struct proxyd *d, unsigned port_base);

/* session.c */
void psession_accept(struct proxyd *d, uv_stream_t *client);
void psessions_stop(struct proxyd *d);

#endif
