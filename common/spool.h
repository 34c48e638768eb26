/*
 * spool.h: one message file written off the loop thread: by tern-lmtpd
 * into the store's spool folder (STORE_DIR/tmp/, docs/store.md), by
 * tern-smtpd into the mail queue (docs/protocols/queue.md).
 *
 * The file is created exclusively (O_CREAT|O_EXCL, mode 0640) and written
 * with libuv's file requests, which run on the thread pool: the loop never
 * blocks on the disk.  One operation runs at a time; the caller checks
 * spool_busy() and waits for the callback before the next write.  lmtpd
 * closes the file and hands it over (the store fsyncs it when it takes
 * it); smtpd commits it: fsync, close, rename into its final folder,
 * fsync that folder (spool_commit), all on the thread pool.
 *
 * Errors are sticky: after the first failure every later write is skipped
 * (spool_write returns -1) and spool_error() says what went wrong.  A
 * create that fails is seen in its callback.  spool_free() may be called at any
 * time: a running operation finishes in the background without a callback,
 * then the file is closed and, when asked, removed.
 *
 * Callers: lmtpd/deliver.c, smtpd/message.c.  Loop thread only.
 */
#ifndef TERN_SPOOL_H
#define TERN_SPOOL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "compat.h"
#include "str.h"

#define SPOOL_CHUNK (64 * 1024)	/* bytes handed to one write, usually */
#define SPOOL_WRITE_MAX (4 * 1024 * 1024)	/* at most */

struct spool;

/* An operation ended; spool_error() tells whether it worked. */
typedef void spool_cb(void *ctx);

/* Starts creating dir/name; cb when it is done. */
struct spool *spool_new(uv_loop_t *loop, const char *dir, const char *name,
			spool_cb *cb, void *ctx);
/* true while an operation runs (wait for its callback). */
bool spool_busy(const struct spool *sp);
/* Writes the bytes of buf at the end of the file and empties buf; cb when
 * written.  Only when not busy.  -1 when nothing was started (an earlier
 * error, the file not open, buf empty): no callback then. */
int spool_write(struct spool *sp, struct str *buf, spool_cb *cb, void *ctx)
	TERN_WUR;
/* Closes the file (after the last write); cb when closed.  -1 when nothing
 * was started (the file is not open): no callback then. */
int spool_close(struct spool *sp, spool_cb *cb, void *ctx) TERN_WUR;
/* Makes the file durable under final_path (same file system): fsync,
 * close, rename, fsync of final_path's folder; cb when done.  On success
 * the file is no longer the spool's (spool_free never removes it); on
 * failure it is removed from final_path again if the rename had happened.
 * -1 when nothing was started (an earlier error, the file not open). */
int spool_commit(struct spool *sp, const char *final_path, spool_cb *cb,
		 void *ctx) TERN_WUR;
/* NULL while everything worked, else the first error. */
const char *spool_error(const struct spool *sp);
const char *spool_path(const struct spool *sp);
uint64_t spool_size(const struct spool *sp);	/* bytes written */
/* Ends it: the file is removed when remove_file (it is ours), else left
 * to whoever owns it now (the store).  Sets *sp to NULL. */
void spool_free(struct spool **sp, bool remove_file);

#endif
