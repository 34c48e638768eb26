/*
 * filter.h: the places where content filters (milters, anti-virus,
 * anti-spam) plug into tern-smtpd.  They do nothing yet: every hook says
 * "continue".  message.c calls them at fixed points of each message:
 *
 *   filter_headers()  once the message header is complete (the first
 *                     empty line, or the end of a message without one),
 *                     with the header bytes; synchronous: its verdict is
 *                     kept and applied at the end of the message;
 *   filter_body()     after the last byte of the message, before the end
 *                     record is written; asynchronous (cb may come later);
 *   filter_accept()   after the queue file is written and before it is
 *                     committed (renamed into incoming/) and 250 is sent;
 *                     asynchronous.
 *
 * A verdict other than FILTER_CONTINUE ends the message: FILTER_REJECT
 * with a 5xx reply, FILTER_TEMPFAIL with a 4xx reply; the queue file is
 * removed.  A filter that is down must answer FILTER_CONTINUE or
 * FILTER_TEMPFAIL as its configuration says.  Callers: message.c.
 */
#ifndef TERN_SMTPD_FILTER_H
#define TERN_SMTPD_FILTER_H

#include <stddef.h>
#include <stdint.h>

#include "compat.h"

struct smtpd;
struct queue_envelope;

enum filter_verdict {
	FILTER_CONTINUE = 0,
	FILTER_REJECT,		/* reply: "550 5.7.1 ..." */
	FILTER_TEMPFAIL,	/* reply: "451 4.7.1 ..." */
};

/* reply: the SMTP reply for a verdict other than CONTINUE, else NULL. */
typedef void filter_cb(enum filter_verdict verdict, const char *reply,
		       void *ctx);

enum filter_verdict filter_headers(struct smtpd *sd,
				   const struct queue_envelope *env,
				   const char *header, size_t len,
				   const char **reply_r);
void filter_body(struct smtpd *sd, const struct queue_envelope *env,
		 uint64_t size, filter_cb *cb, void *ctx);
void filter_accept(struct smtpd *sd, const struct queue_envelope *env,
		   const char *queue_file, filter_cb *cb, void *ctx);

#endif
