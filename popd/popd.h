/*
 * popd.h: tern-popd, the POP3 server (RFC 1939, 2449, 2595, 5034) on the
 * INBOX kept by tern-stored.  This header holds what the whole process
 * shares: its clients of tern-authd and tern-stored, the TLS role of its
 * service and the settings from tern.conf (re-read on reload).  main.c
 * fills it in; session.c, mailbox.c and retr.c read it.
 *
 * Listeners: pop3 and pop3-backend begin in plaintext and offer STLS;
 * pop3s and pop3s-backend are implicit TLS (the service name says which,
 * or -o tls=implicit|starttls in services.conf).  docs/pop3.md is the
 * administrator's page.
 */
#ifndef TERN_POPD_H
#define TERN_POPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compat.h"
#include "svc.h"

struct authclient;
struct storeasync;
struct tls_ctx;
struct proxyauth;
struct session;

#define POPD_LOCK_DIR "data/pop3"	/* under the instance root */
/* The service name for authd: failure and connection counters. */
#define POPD_SERVICE "pop3"

struct popd {
	struct svc *svc;
	struct authclient *auth;
	struct storeasync *store;
	struct tls_ctx *tls;		/* NULL: no certificate, no STLS */
	struct proxyauth *proxy;	/* logins of tern-proxyd */
	bool implicit_tls;		/* pop3s: TLS from the first byte */
	enum svc_plaintext plaintext;	/* pop3_plaintext_auth */
	char *hostname;			/* myhostname */
	char *lock_dir;			/* ROOT/POPD_LOCK_DIR */
	char *expire;			/* pop3_expire, "" = not announced */
	size_t line_max;		/* pop3_line_limit */
	uint64_t idle_ms;		/* pop3_idle_timeout */
	uint64_t login_delay_ms;	/* pop3_login_delay */
	unsigned messages_max;		/* pop3_messages_max */
	size_t snapshot_cache;		/* pop3_snapshot_cache, bytes */
};

/* The process's one context (svc_ctx of the skeleton). */
struct popd *popd_get(struct svc *svc);

/* true when host names this server: myhostname (any case), "localhost"
 * or "" (an account without a mail host). */
bool popd_host_is_local(const struct popd *pd, const char *host);


#endif
