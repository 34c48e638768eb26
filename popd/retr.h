/*
 * retr.h: RETR and TOP, one message streamed from its blob to the client.
 *
 * retr_open() starts reading at once: the blob is opened and read in
 * RETR_CHUNK pieces.  Each open and piece is first tried on the loop
 * thread where that cannot block (openat2 with RESOLVE_CACHED, preadv2
 * with RWF_NOWAIT: the path and data are cached, as they nearly always
 * are for a mailbox being downloaded), so a message of one piece usually
 * costs no trip to the libuv thread pool; otherwise the piece is read with
 * pread on the thread pool (the first piece in the same work item as the
 * open, and the file closed in the work item that reaches its end).
 * The session opens the next message while the client is still reading
 * the current one (read-ahead), so a client that retrieves messages in
 * order finds the first piece waiting, already encoded behind RETR's
 * reply line, and gets its answer with one write.  Blobs under the store
 * folder are opened relative to a descriptor of that folder.
 *
 * retr_send() says what to send: each piece goes through the pop3proto
 * encoder (CRLF line ends, dot-stuffing, TOP's line limit) and is written
 * to the connection; no more than one piece of input and its encoded form
 * are held, and reading pauses while the connection's output is above
 * CONN_HIGH_WATER (the session calls retr_resume() from on_drain).
 *
 * The reply line ("+OK ...") goes out with the first piece, only once the
 * blob is open: when it cannot be opened (a message expunged by another
 * session whose blob went away) the status is RETR_GONE and nothing was
 * written.  An error after that (unreadable file) is RETR_FAILED: the
 * client has a partial answer, the session must close.
 *
 * Callers: session.c.  After retr_cancel() no callback comes.
 */
#ifndef TERN_POPD_RETR_H
#define TERN_POPD_RETR_H

#include <stdint.h>
#include <uv.h>

#include "compat.h"

#define RETR_CHUNK (64 * 1024)
#define RETR_OK_MAX 64	/* a reply line with its CRLF, and the NUL */

struct conn;
struct retr;

enum retr_status {
	RETR_OK = 0,
	RETR_GONE,	/* the blob is gone: nothing was sent */
	RETR_FAILED,	/* broken off after the reply line: close */
};

/* bytes: message bytes sent after encoding (for the log). */
typedef void retr_done_cb(enum retr_status st, uint64_t bytes, void *ctx);

/* The blob folder (store_dir): blobs under it are opened relative to it.
 * Called at start-up; without it (or when it cannot be opened) blobs are
 * opened by their absolute path. */
void retr_set_store_dir(const char *dir);
/* Starts reading the blob at path (read-ahead).  ok_line: the reply line
 * RETR would send for it (with its CRLF, shorter than RETR_OK_MAX), so
 * that the first chunk is encoded ahead too; NULL = not known. */
struct retr *retr_open(uv_loop_t *loop, struct conn *c, const char *path,
		       const char *ok_line);
/*
 * Sends the message: lines < 0 for RETR, else TOP with that many body
 * lines; ok_line (with its CRLF) is copied.  1: done at once, *st_r and
 * *bytes_r are set, r is freed and no callback comes; 0: cb follows from
 * the loop (r is freed before it is called).
 */
int retr_send(struct retr *r, const char *ok_line, int64_t lines,
	      retr_done_cb *cb, void *ctx, enum retr_status *st_r,
	      uint64_t *bytes_r) TERN_WUR;
/* The connection drained: go on if we were waiting for it. */
void retr_resume(struct retr *r);
/* The session is going away: stop, close the file, free; sets *r NULL. */
void retr_cancel(struct retr **r);
/* Frees the one finished retr kept for reuse (at exit). */
void retr_free_spare(void);

#endif
