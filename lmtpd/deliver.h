/*
 * deliver.h: one LMTP mail transaction of tern-lmtpd, from MAIL to the
 * per-recipient replies after DATA.
 *
 * A txn collects the sender and the accepted recipients (rcpt.h), takes
 * the message from the DATA reader of smtpproto.h (strict mode: the end is
 * found only at CRLF.CRLF, so a bare LF cannot smuggle a second message in,
 * and a message with a bare CR or LF is refused), and spools it into the
 * store's tmp/ folder (spool.h) behind a Return-Path: and a Received:
 * header.  At the end it sends ONE deliver request to tern-stored for all
 * recipients (one blob), then gives one reply per recipient, in RCPT
 * order: 250 only after the store has acknowledged, i.e. the message is
 * durable.  Replies are listed in docs/lmtp.md.
 *
 * Logging (one line per event, with the session id): "from=<...>, size=N,
 * nrcpt=M[, key=HOST/QUEUEID]" once per message, then per mailbox "to=<...>, relay=stored,
 * status=sent (uid N)", "status=deferred (...)" or "status=bounced (...)".
 *
 * Limits: lmtp_message_size_limit bytes of message (more is read and
 * dropped, then refused), STOREASYNC_RCPT_MAX mailboxes per transaction.
 * Callers: session.c.  Loop thread only.
 */
#ifndef TERN_LMTPD_DELIVER_H
#define TERN_LMTPD_DELIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compat.h"

struct lmtpd;
struct rcpt;
struct txn;

/* Called when a spool write the txn waited for is done. */
typedef void txn_wake_cb(void *ctx);
/* One reply line (without CRLF) for the client. */
typedef void txn_reply_cb(const char *line, void *ctx);
/* The replies are all given; the txn may be freed. */
typedef void txn_done_cb(void *ctx);

/* After MAIL: also starts creating the spool file (on the thread pool),
 * removed again when the transaction ends without a message. */
struct txn *txn_new(struct lmtpd *ld, const char *id, const char *sender,
		    txn_wake_cb *wake, void *ctx);
/* The client named the message's queue id (XQUEUEID): the delivery goes
 * to the store with the key "LHLO-NAME/QUEUE-ID", so that the store keeps
 * it and a repeated delivery of the same message (the client lost our
 * answer) is not stored twice (docs/protocols/lmtp.md). */
void txn_set_key(struct txn *t, const char *lhlo, const char *queue_id);
/* Ends the transaction.  A delivery already sent to the store is waited
 * for in the background (and logged); a message not yet handed over is
 * dropped.  Sets *t to NULL. */
void txn_free(struct txn **t);

/* Takes r.  -1 (r freed) when the mailboxes would pass
 * STOREASYNC_RCPT_MAX. */
int txn_add_rcpt(struct txn *t, struct rcpt *r) TERN_WUR;
size_t txn_rcpt_count(const struct txn *t);

/* After "354": starts the message with its header fields.  lhlo: the
 * client's LHLO name, peer: its address ("unix" for the local socket). */
void txn_data_begin(struct txn *t, const char *lhlo, const char *peer);

#define TXN_MORE 0	/* all input consumed, the message goes on */
#define TXN_WAIT 1	/* a spool write must end first: wake follows */
#define TXN_END 2	/* the end marker was read; *pos is after it */

/* Consumes message bytes from *pos up to end. */
int txn_data_feed(struct txn *t, const char **pos, const char *end)
	TERN_WUR;

/* After TXN_END: finishes the file, delivers, and calls reply once per
 * recipient in order, then done.  A message refused without the store
 * (too big, bare CR/LF, spool error) may be answered from inside this
 * call; the caller must not depend on either. */
void txn_finish(struct txn *t, txn_reply_cb *reply, txn_done_cb *done);

#endif
