/*
 * lmtpd.h: tern-lmtpd, the LMTP server (RFC 2033) that delivers into
 * tern-stored.  This header holds what the whole process shares: its
 * clients of tern-authd and tern-stored and the settings from tern.conf
 * (re-read on reload).  main.c fills it in; session.c, rcpt.c and deliver.c
 * read it (the spool writer is common/spool.c).
 *
 * Listeners: the "lmtp" service (inet, 127.0.0.1:7025) and "lmtp-local"
 * (unix, run/lmtp.sock) run this program; both speak the same protocol.
 * docs/lmtp.md is the administrator's page.
 */
#ifndef TERN_LMTPD_H
#define TERN_LMTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compat.h"

struct svc;
struct authclient;
struct netlist;
struct storeasync;
struct session;

struct lmtpd {
	struct svc *svc;
	struct authclient *auth;
	struct storeasync *store;
	char *hostname;		/* myhostname */
	char *spool_dir;	/* STORE_DIR/tmp, absolute */
	uint64_t size_limit;	/* lmtp_message_size_limit */
	unsigned rcpt_limit;	/* lmtp_recipient_limit */
	size_t line_max;	/* lmtp_line_limit */
	uint64_t idle_ms;	/* lmtp_idle_timeout */
	bool quota_permanent;	/* lmtp_quota_permanent */
	bool plus_folder;	/* lmtp_plus_folder */
	struct netlist *trusted;	/* lmtp_trusted_networks */
	uint64_t spool_seq;	/* spool file names */
};

/* The process's one context (svc_ctx of the skeleton). */
struct lmtpd *lmtpd_get(struct svc *svc);

/* true when host names this server: myhostname (any case), "localhost"
 * or "" (an account without a mail host). */
bool lmtpd_host_is_local(const struct lmtpd *ld, const char *host);

/* true when the client may name queue ids (XQUEUEID, docs/protocols/
 * lmtp.md): a unix-socket client, or one in lmtp_trusted_networks. */
bool lmtpd_client_trusted(const struct lmtpd *ld, const char *peer);


#endif
