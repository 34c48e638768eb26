/*
 * imapd.h: tern-imapd, the IMAP server (RFC 3501, RFC 9051) on the
 * mailboxes kept by tern-stored.  This header holds what the whole process
 * shares: its clients of tern-authd and tern-stored, the TLS role of its
 * service, the settings from tern.conf (re-read on reload), the open
 * sessions and the folders they have selected (so that a change made by
 * one session reaches the others of this process, which tern-stored does
 * not notify about changes made on our own connection).
 *
 * Listeners: imap and imap-backend begin in plaintext and offer STARTTLS;
 * imaps and imaps-backend are implicit TLS (the service name says which,
 * or -o tls=implicit|starttls in services.conf).  docs/imap.md is the
 * administrator's page.
 */
#ifndef TERN_IMAPD_H
#define TERN_IMAPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compat.h"
#include "mime.h"
#include "svc.h"

struct authclient;
struct storeasync;
struct tls_ctx;
struct proxyauth;
struct session;
struct mbox;

struct imapd {
	struct svc *svc;
	struct authclient *auth;
	struct storeasync *store;
	struct tls_ctx *tls;		/* NULL: no certificate, no STARTTLS */
	struct proxyauth *proxy;	/* logins of tern-proxyd */
	bool implicit_tls;		/* imaps: TLS from the first byte */
	enum svc_plaintext plaintext;	/* imap_plaintext_auth */
	char *hostname;			/* myhostname */
	char *store_dir;		/* store_dir: APPEND spools into its tmp/ */
	size_t line_max;		/* imap_line_limit */
	uint64_t append_max;		/* imap_append_limit */
	bool literal_minus;		/* imap_literal = minus */
	uint64_t login_ms;		/* imap_login_timeout */
	uint64_t idle_ms;		/* imap_idle_timeout */
	struct mime_settings mime;
	struct mbox *mboxes;		/* selected folders (mbox.c) */
	struct mbox *views;		/* kept views, latest first (mbox.c) */
	size_t views_bytes, views_max;	/* imap_view_cache */
};

/* The process's one context (svc_ctx of the skeleton). */
struct imapd *imapd_get(struct svc *svc);

/* true when host names this server: myhostname (any case), "localhost"
 * or "" (an account without a mail host). */
bool imapd_host_is_local(const struct imapd *d, const char *host);

#endif
