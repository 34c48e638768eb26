/*
 * message.h: one SMTP mail transaction of tern-smtpd, from MAIL to the
 * reply after the message, and its queue file.
 *
 * The session fills in the envelope (queue.h: sender, recipients with their
 * DSN options, client, HELO, auth identity, TLS) while MAIL and RCPT are
 * accepted.  At DATA or the first BDAT, msg_begin() creates the queue file
 * in ROOT/queue/tmp (named by the queue id) and writes the envelope and the
 * Received header; the message follows, read by the DATA reader of
 * smtpproto.h (dot-unstuffing, the end only at CRLF.CRLF) or taken chunk by
 * chunk (BDAT).  Bare CR and bare LF are refused (550 5.5.2) or, with
 * smtpd_bare_newline = normalize, turned into CRLF; the same holds for BDAT
 * chunks.  At the end, msg_finish() writes the end record, then commits the
 * file: fsync, rename into ROOT/queue/incoming, fsync of the folder (all on
 * the thread pool) -- only then is "250 2.0.0 Ok: queued as ID" given.  A
 * failure to write (disk full, folder unwritable) gives 452 4.3.1 and
 * removes our own temporary file; nothing else in the queue is touched.
 *
 * Content filter hooks (filter.h) are called after the header, after the
 * body and before the commit.
 *
 * Logging, with the queue id: "from=<...>, size=N, nrcpt=M (queue
 * incoming)" once the file is committed; refusals with their reason.
 * Limits: message_size_limit bytes of message (more is read and dropped,
 * then refused with 552 5.3.4).  Callers: session.c.  Loop thread only.
 */
#ifndef TERN_SMTPD_MESSAGE_H
#define TERN_SMTPD_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compat.h"
#include "queue.h"

struct smtpd;
struct msg;

/* A queue-file write the message waited for is done. */
typedef void msg_wake_cb(void *ctx);
/* The final reply (without CRLF); the message may be freed after it. */
typedef void msg_done_cb(const char *reply, void *ctx);

/* id: the queue id (also the log id). */
struct msg *msg_new(struct smtpd *sd, const char *id, msg_wake_cb *wake,
		    void *ctx);
/* Ends the transaction: a file not yet committed is removed (in the
 * background when a write is running).  Sets *m to NULL. */
void msg_free(struct msg **m);

/* The envelope the session fills in before msg_begin (the queue id and
 * arrival time are set already). */
struct queue_envelope *msg_envelope(struct msg *m);
const char *msg_id(const struct msg *m);
bool msg_begun(const struct msg *m);

/* After "354" or at the first BDAT: creates the queue file, writes the
 * envelope and the Received header. */
void msg_begin(struct msg *m);

#define MSG_FEED_MORE 0	/* all input consumed, the message goes on */
#define MSG_FEED_WAIT 1	/* a file write must end first: wake follows */
#define MSG_FEED_END 2	/* DATA: the end marker was read; BDAT: the chunk
			 * is complete */

/* DATA: consumes message bytes from *pos up to end. */
int msg_data_feed(struct msg *m, const char **pos, const char *end)
	TERN_WUR;
/* BDAT: consumes up to *left bytes of the chunk (decrementing it). */
int msg_chunk_feed(struct msg *m, const char **pos, const char *end,
		   uint64_t *left) TERN_WUR;
/* BDAT: the reply of a chunk that is not LAST ("250 2.0.0 ..."), or the
 * error that ended the transaction already (then the session drops it). */
const char *msg_chunk_error(struct msg *m);

/* After the message: finishes and commits the file, then done with the
 * one reply.  done may be called from inside this call. */
void msg_finish(struct msg *m, msg_done_cb *done);

#endif
