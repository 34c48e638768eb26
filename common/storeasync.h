/*
 * storeasync.h: the asynchronous tern-stored client for daemons.
 *
 * tern-lmtpd (and later tern-imapd, tern-popd, tern-webd) talk to the
 * mailbox store over ROOT/run/stored.sock (protocol tern-stored, version 1,
 * docs/protocols/stored.md) on their libuv loop through this interface.
 * One storeasync per process: requests are pipelined on one connection and
 * matched to their answers by id.  An answer is zero or more data frames
 * and one final frame ("ok" or "error").
 *
 * Every request ends in exactly one completion callback, always from the
 * loop (never from inside the call that made it).  Anything that keeps the
 * answer from arriving -- the store down or restarting, the connection
 * lost, the request timeout, the queue bound, storeasync_free() -- ends as
 * STOREASYNC_TEMPFAIL with a message for the log; callers turn it into
 * "try again later" (LMTP 451, IMAP NO [UNAVAILABLE]).  An "error" answer
 * of the store is STOREASYNC_ERROR with its code ("overquota",
 * "nofolder", ...).  Frames and strings given to callbacks are valid during
 * the call only.
 *
 * Connection: opened at storeasync_new() and reopened with backoff (100 ms
 * doubling to 5 s) whenever it closes.  Requests wait in a queue while it
 * is down (at most queue_max, waiting or in flight; at most inflight_max
 * sent and unanswered, which keeps us under the store's per-client bound).
 * A request that was sent when the connection dropped is sent once more
 * only when it was made with STOREASYNC_IDEMPOTENT (reads); anything that
 * changes the store (deliver, append, flags) fails instead, because the
 * store may or may not have done it.
 *
 * Loop thread only.  Limits: STOREASYNC_RCPT_MAX recipients per deliver,
 * frames up to max_frame each way.
 */
#ifndef TERN_STOREASYNC_H
#define TERN_STOREASYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "compat.h"
#include "ipc.h"

#define STOREASYNC_PROTO "tern-stored"
#define STOREASYNC_VERSION 1
#define STOREASYNC_SOCKET "run/stored.sock"	/* under the instance root */
#define STOREASYNC_TIMEOUT_DEFAULT 60000	/* ms */
#define STOREASYNC_QUEUE_DEFAULT 4096
#define STOREASYNC_INFLIGHT_DEFAULT 256
#define STOREASYNC_RCPT_MAX 1000	/* the store's bound per deliver */
#define STOREASYNC_DATA_MAX 100000	/* data frames kept per answer */

/* Request flag: safe to send again after a lost connection. */
#define STOREASYNC_IDEMPOTENT 0x1

enum storeasync_status {
	STOREASYNC_OK = 0,	/* final frame "ok" */
	STOREASYNC_ERROR,	/* final frame "error": see code */
	STOREASYNC_TEMPFAIL,	/* no answer: try again later */
};

const char *storeasync_status_name(enum storeasync_status st);

struct storeasync_settings {
	uint64_t timeout_ms;	/* per request; 0 = STOREASYNC_TIMEOUT_DEFAULT */
	size_t queue_max;	/* 0 = STOREASYNC_QUEUE_DEFAULT */
	size_t inflight_max;	/* 0 = STOREASYNC_INFLIGHT_DEFAULT */
	size_t max_frame;	/* 0 = IPC_FRAME_MAX_DEFAULT */
};

struct storeasync;

/*
 * The end of a generic request.  frames: the data frames of the answer in
 * order (nframes of them), final: the "ok" or "error" frame (NULL for
 * TEMPFAIL).  code: the error code for STOREASYNC_ERROR, else "".  error:
 * a message for the log (the store's message for ERROR), NULL for OK.
 */
typedef void storeasync_done_cb(enum storeasync_status st,
				struct ipc_msg *const *frames, size_t nframes,
				const struct ipc_msg *final, const char *code,
				const char *error, void *ctx);

/* ---- deliver ---- */

struct storeasync_rcpt {
	int64_t account;	/* the directory's account id, > 0 */
	const char *address;
	const char *folder;	/* NULL or "" = INBOX */
	unsigned flags;		/* \Seen 1, \Answered 2, ... */
	int64_t quota;		/* bytes from the directory, 0 = unlimited,
				 * -1 = keep the store's */
};

enum storeasync_rcpt_status {
	STOREASYNC_RCPT_OK = 0,
	STOREASYNC_RCPT_OVERQUOTA,
	STOREASYNC_RCPT_NOFOLDER,
	STOREASYNC_RCPT_ERROR,
};

struct storeasync_rcpt_result {
	enum storeasync_rcpt_status status;
	uint32_t uid, uidvalidity;
	const char *message;	/* "" when ok */
};

struct storeasync_delivery {
	const char *blob;	/* hex SHA-256 */
	uint64_t size;
	const struct storeasync_rcpt_result *results;	/* one per rcpt */
	size_t nresults;
};

/*
 * d is set for STOREASYNC_OK only.  file_ours: the store has not taken the
 * spooled file (never sent, refused before it took it, or the connection
 * was lost), so the caller should remove it if it still exists; false when
 * the store owns it (it removes or keeps it) or when it cannot be known
 * (a timeout while the store works on it).
 */
typedef void storeasync_deliver_cb(enum storeasync_status st,
				   const struct storeasync_delivery *d,
				   bool file_ours, const char *code,
				   const char *error, void *ctx);

/* socket_path: usually ROOT/STOREASYNC_SOCKET.  set may be NULL. */
struct storeasync *storeasync_new(uv_loop_t *loop, const char *socket_path,
				  const struct storeasync_settings *set);
/* Ends every pending request with STOREASYNC_TEMPFAIL ("storeasync
 * closed"), then closes; the memory goes when the loop has run the close
 * callbacks.  Sets *sa to NULL. */
void storeasync_free(struct storeasync **sa);

/*
 * Sends any request: *req is taken (set to NULL); its id is set here.
 * flags: STOREASYNC_IDEMPOTENT or 0.
 */
void storeasync_request(struct storeasync *sa, struct ipc_msg **req,
			unsigned flags, storeasync_done_cb *cb, void *ctx);

/* One spooled message (absolute path in the store's tmp/) to n local
 * recipients, 1 <= n <= STOREASYNC_RCPT_MAX; date 0 = now. */
void storeasync_deliver(struct storeasync *sa, const char *file, int64_t date,
			const struct storeasync_rcpt *rcpts, size_t n,
			storeasync_deliver_cb *cb, void *ctx);
/* The same with a delivery key (NULL for none): the store remembers it
 * with each mailbox and answers a repeated delivery with the same key as
 * delivered, without a second copy (docs/protocols/stored.md). */
void storeasync_deliver_key(struct storeasync *sa, const char *file,
			    int64_t date, const char *key,
			    const struct storeasync_rcpt *rcpts, size_t n,
			    storeasync_deliver_cb *cb, void *ctx);

/*
 * Change notifications (docs/protocols/stored.md, "watch"): the frames the
 * store sends with id 0 (notify.new, notify.flags, notify.expunge, and an
 * "error" with code overflow) go to cb as they arrive.  cb(NULL) says that
 * a connection closed: its watches are gone and changes may have been
 * missed; the owner sends its "watch" requests again (they wait for the
 * next connection) and resynchronises.  One callback per storeasync; cb
 * NULL turns notifications off.
 */
typedef void storeasync_notify_cb(const struct ipc_msg *frame, void *ctx);
void storeasync_set_notify(struct storeasync *sa, storeasync_notify_cb *cb,
			   void *ctx);

/* Requests waiting or in flight. */
size_t storeasync_pending(const struct storeasync *sa);
/* true while the connection is open and its hello was accepted. */
bool storeasync_connected(const struct storeasync *sa);

#endif
