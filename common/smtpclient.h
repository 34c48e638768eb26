/*
 * smtpclient.h: the asynchronous SMTP and LMTP client of Tern's MTA.
 *
 * Two layers.  The reply parser is pure and resumable (no I/O, input split
 * at any byte): it turns server output into replies -- a three-digit code,
 * the enhanced status code when the server gave one (RFC 3463), and the
 * text of every line -- and refuses bad replies (no code, mixed codes in
 * one multi-line reply, a line or a reply over its bound) with a message.
 * Lines end in CRLF; a bare LF is taken as a line end too.
 *
 * The client speaks one session on a struct conn (unix socket or TCP):
 * greeting, LHLO (LMTP) or EHLO with a HELO fallback (SMTP), STARTTLS when
 * the caller gave a TLS context and the server offers it, AUTH when the
 * caller gave credentials (only over TLS), then any number
 * of transactions on the same connection (connection reuse).  A
 * transaction sends MAIL FROM with SIZE, BODY, SMTPUTF8 and the DSN
 * parameters RET and ENVID, and Tern's XQUEUEID (docs/protocols/lmtp.md)
 * (each only when the server announced the extension), RCPT TO with NOTIFY
 * and ORCPT, and DATA; with PIPELINING it
 * sends MAIL, the RCPTs and DATA in one write.  The message is dot-stuffed
 * on the way out.  Its result is one reply per recipient: the RCPT reply
 * when the recipient was refused, else the reply to the end of data (LMTP:
 * one per accepted recipient, RFC 2033; SMTP: one for all).  Whatever
 * keeps a reply from arriving (connection lost, timeout) becomes a
 * synthesized 4.4.2 reply, so every recipient always gets an outcome.
 *
 * Limits: SMTPCLIENT_LINE_MAX bytes per reply line, SMTPCLIENT_LINES_MAX
 * lines per reply, one transaction at a time per client.  Callers:
 * tern-qmgr (LMTP to tern-lmtpd, later SMTP to remote MX and relay hosts).
 * Loop thread only.
 */
#ifndef TERN_SMTPCLIENT_H
#define TERN_SMTPCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "compat.h"
#include "str.h"

#define SMTPCLIENT_LINE_MAX 2048	/* RFC 5321: 512; be lenient */
#define SMTPCLIENT_LINES_MAX 100
#define SMTPCLIENT_TEXT_MAX 4096	/* reply text kept, lines joined */

/* ---- replies ---- */

struct smtp_reply {
	unsigned code;		/* 200..599 */
	char enhanced[16];	/* "2.1.5", or "" when the server gave none */
	/* The lines' text without code and status, joined by "\n" (cut at
	 * SMTPCLIENT_TEXT_MAX). */
	struct str *text;
	size_t nlines;
};

/* Sets r (its text allocated) to a one-line reply made here. */
void smtp_reply_set(struct smtp_reply *r, unsigned code,
		    const char *enhanced, const char *text);

struct smtp_reply_parser;

struct smtp_reply_parser *smtp_reply_parser_new(void);
void smtp_reply_parser_free(struct smtp_reply_parser **p);
void smtp_reply_parser_reset(struct smtp_reply_parser *p);
/* 1: a complete reply in *reply_r (valid until the next call); 0: all
 * input consumed; -1: a bad reply, *error_r says why (the parser stays in
 * error until reset). */
int smtp_reply_parser_feed(struct smtp_reply_parser *p, const char **pos,
			   const char *end, const struct smtp_reply **reply_r,
			   const char **error_r) TERN_WUR;
/* "250 2.1.5 Ok" style one-line rendering of a reply for logs and DSNs
 * (first line of text only; control characters replaced). */
void smtp_reply_format(const struct smtp_reply *r, struct str *out);

/* ---- the client ---- */

struct smtpclient;
struct tls_ctx;

struct smtpclient_settings {
	bool lmtp;		/* LHLO, one final reply per recipient */
	const char *helo;	/* our name in LHLO/EHLO */
	uint64_t timeout_ms;	/* per reply */
	uint64_t connect_timeout_ms;	/* TCP connect; 0 = the system's */
	struct tls_ctx *tls;	/* client context: STARTTLS when offered */
	const char *tls_name;	/* SNI and verification name */
	bool tls_required;	/* fail when STARTTLS is not offered */
	/* AUTH (PLAIN, else LOGIN) after STARTTLS when set: never without
	 * TLS.  A refusal ends the setup with a 4.7.0 reply (the mail
	 * waits; a wrong password is no reason to bounce it). */
	const char *auth_user;
	const char *auth_password;
	const char *id;		/* log prefix (the destination name) */
};

/* The session is ready for transactions (ok) or failed before it was
 * (reply: the server's refusal or a synthesized 4.4.x reply). */
typedef void smtpclient_ready_cb(struct smtpclient *c, bool ok,
				 const struct smtp_reply *reply, void *ctx);
/* The connection ended (the client is freed after this returns). */
typedef void smtpclient_close_cb(struct smtpclient *c, const char *reason,
				 void *ctx);

struct smtpclient_rcpt {
	const char *address;
	const char *notify;	/* "NEVER", "SUCCESS,FAILURE"...; NULL */
	const char *orcpt;	/* "rfc822;a@example.com" (xtext); NULL */
};

struct smtpclient_msg {
	const char *sender;	/* "" for the null sender */
	bool eightbit;		/* BODY=8BITMIME */
	bool smtputf8;
	const char *ret;	/* "FULL"/"HDRS" or NULL */
	const char *envid;	/* xtext or NULL */
	const char *queue_id;	/* XQUEUEID (LMTP to tern-lmtpd) or NULL */
	const struct smtpclient_rcpt *rcpts;
	size_t nrcpts;
	const char *data;	/* the message, CRLF lines, not stuffed; kept */
	size_t len;		/*  alive by the caller until the callback */
};

/* replies[i] for rcpts[i]; valid during the call. */
typedef void smtpclient_done_cb(struct smtpclient *c,
				const struct smtp_reply *const *replies,
				size_t n, void *ctx);

/* Connects to a unix socket path, or to addr (TCP) when path is NULL. */
struct smtpclient *smtpclient_new(uv_loop_t *loop, const char *path,
				  const struct sockaddr *addr,
				  const struct smtpclient_settings *set,
				  smtpclient_ready_cb *on_ready,
				  smtpclient_close_cb *on_close, void *ctx);
/* Starts a transaction; only when smtpclient_idle().  -1 when not.  m is
 * copied; the strings and arrays it points to must stay until cb. */
int smtpclient_send(struct smtpclient *c, const struct smtpclient_msg *m,
		    smtpclient_done_cb *cb, void *ctx) TERN_WUR;
/* Ready and no transaction running. */
bool smtpclient_idle(const struct smtpclient *c);
/* Sends QUIT when idle and closes; on_close follows (never from inside
 * this call).  A running transaction ends with 4.4.2 replies. */
void smtpclient_quit(struct smtpclient *c);
bool smtpclient_has_ext(const struct smtpclient *c, const char *ext);
void *smtpclient_ctx(const struct smtpclient *c);
void smtpclient_set_ctx(struct smtpclient *c, void *ctx);

/* Appends data to out dot-stuffed, with a final CRLF when missing and the
 * end marker ".\r\n" (used by the client; exposed for tests). */
int smtpclient_stuff(struct str *out, const char *data, size_t len)
	TERN_WUR;

#endif
