/*
 * smtpd.h: tern-smtpd, the SMTP server (RFC 5321) that receives mail from
 * other servers (MX, port 25) and from users (submission, 587 and 465) and
 * writes each accepted message into the queue (ROOT/queue/incoming) for
 * tern-qmgr.  This header holds what the whole process shares: its client
 * of tern-authd, the role and TLS role of its service and the settings from
 * tern.conf (re-read on reload).  main.c fills it in; session.c, message.c
 * and filter.c read it.
 *
 * Roles: a service named "submission" or "submissions" (or started with
 * -o submission=yes) requires AUTH before MAIL and, without TLS, STARTTLS
 * before AUTH; "submissions" (or -o tls=implicit) is TLS from the first
 * byte.  Every other service is an MX: AUTH is offered (under TLS) but
 * not required.  docs/smtpd.md is the administrator's page.
 */
#ifndef TERN_SMTPD_H
#define TERN_SMTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compat.h"
#include "svc.h"

struct svc;
struct authclient;
struct tls_ctx;
struct session;
struct netlist;

struct smtpd {
	struct svc *svc;
	struct authclient *auth;
	struct tls_ctx *tls;		/* NULL: no certificate, no STARTTLS */
	bool implicit_tls;		/* submissions: TLS from the start */
	bool submission;		/* AUTH required before MAIL */
	char *service;			/* the service name, for anvil */
	char *hostname;			/* myhostname */
	char *postmaster;		/* what RCPT TO:<postmaster> means */
	char *queue_tmp;		/* ROOT/queue/tmp */
	char *queue_incoming;		/* ROOT/queue/incoming */
	struct netlist *mynetworks;
	enum svc_plaintext plaintext;	/* smtpd_plaintext_auth */
	uint64_t size_limit;		/* message_size_limit */
	unsigned hop_limit;		/* smtpd_hop_count_limit */
	unsigned rcpt_limit;		/* smtpd_recipient_limit */
	unsigned error_limit;		/* smtpd_error_limit */
	unsigned conn_limit;		/* smtpd_client_connection_limit */
	unsigned client_msg_rate;	/* smtpd_client_message_rate_limit */
	unsigned client_rcpt_rate;	/* smtpd_client_recipient_rate_limit */
	unsigned user_msg_rate;		/* smtpd_user_message_rate_limit */
	unsigned user_rcpt_rate;	/* smtpd_user_recipient_rate_limit */
	size_t line_max;		/* smtpd_line_limit */
	uint64_t idle_ms;		/* smtpd_timeout */
	uint64_t greet_delay_ms;	/* smtpd_greet_delay (MX only) */
	bool normalize_newlines;	/* smtpd_bare_newline = normalize */
	bool vrfy_502;			/* smtpd_vrfy_reply = 502 */
	bool sender_login_check;	/* smtpd_sender_login_check */
};

/* The process's one context (svc_ctx of the skeleton). */
struct smtpd *smtpd_get(struct svc *svc);

#endif
