/*
 * dsn.h: the delivery status notifications of tern-qmgr (RFC 3464).
 *
 * dsn_build() writes one complete message: a multipart/report with a
 * text/plain part for people, a message/delivery-status part with one
 * per-message block and one block per recipient (Final-Recipient,
 * Original-Recipient from ORCPT with its xtext decoded, Action, Status,
 * Diagnostic-Code, Last-Attempt-Date), and the returned message: all of
 * it as message/rfc822 (RET=FULL, the default) or its header as
 * text/rfc822-headers (RET=HDRS).  Header values are cleaned of control
 * characters.  Pure: no I/O, time passed in.  Callers: qmgr/bounce.c and
 * tests/unit/test_dsn.c.
 */
#ifndef TERN_DSN_H
#define TERN_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compat.h"
#include "str.h"

enum dsn_action {
	DSN_FAILED,
	DSN_DELAYED,
	DSN_DELIVERED,
	DSN_RELAYED,	/* to a server without DSN */
};

struct dsn_rcpt {
	const char *address;	/* Final-Recipient */
	const char *orcpt;	/* "rfc822;xtext" or NULL */
	enum dsn_action action;
	const char *status;	/* "5.1.1" */
	const char *diagnostic;	/* "550 5.1.1 unknown user", or NULL */
	const char *remote_mta;	/* "lmtp-local", or NULL */
};

struct dsn_info {
	const char *hostname;	/* Reporting-MTA and MAILER-DAEMON@ */
	const char *queue_id;	/* of the original message */
	const char *bounce_id;	/* of the notice (Message-ID, boundary) */
	const char *to;		/* the original envelope sender */
	const char *envid;	/* xtext or NULL */
	int64_t arrival;	/* of the original message */
	int64_t now;
	bool headers_only;	/* RET=HDRS */
};

/* 0, or -1 when out is too small. */
int dsn_build(struct str *out, const struct dsn_info *info,
	      const struct dsn_rcpt *rcpts, size_t nrcpts, const char *msg,
	      size_t msglen) TERN_WUR;
/* Decodes RFC 3461 xtext ("+2B" = '+') into out; -1 when malformed. */
int dsn_xtext_decode(const char *in, struct str *out) TERN_WUR;
/* Whether a NOTIFY value asks for word ("FAILURE", "SUCCESS", "DELAY");
 * NULL (not given) means FAILURE and DELAY (RFC 3461 4.1). */
bool dsn_notify_has(const char *notify, const char *word);
const char *dsn_action_name(enum dsn_action a);

#endif
