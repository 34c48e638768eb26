/*
 * commit.c: tern-stored's writer thread and its group commit.
 *
 * The loop thread queues ops (commit_submit).  An op that names a spooled
 * message also goes to the helper threads, which take it as soon as one is
 * free (step 1, several messages at once, while the writer commits earlier
 * batches):
 *   1. open the spooled file, hash it, parse its MIME structure (for the
 *      cached ENVELOPE and BODYSTRUCTURE), fsync it; meanwhile, in a store
 *      of the nested layout, another helper creates the shard directories
 *      of its blob and fsyncs their parents (blob_prepare_dirs).
 * The writer takes the pending ops in arrival order up to the first one
 * whose message is not taken yet, at most batch_max, and for that batch:
 *   2. (filer thread) writes the hashes of the blobs that are new to
 *      DIR/intent (fdatasync), with those of the batch filed before;
 *   3. (filer thread) renames them into place and fsyncs the changed
 *      directories, the fsyncs spread over the helpers;
 *   4. (writer, meanwhile) runs every op in one transaction (each in its
 *      own savepoint); once the filer is done, takes the next batch and
 *      posts it to the filer, then commits (SQLite in WAL mode with
 *      synchronous=FULL), or rolls back when step 2 or 3 failed; a failed
 *      commit fails the posted batch too;
 *   5. hands the ops back to the loop (uv_async_send), which answers;
 *   6. removes the files of blobs whose last reference went, then their
 *      rows (sparing the blobs of the batch being filed); once an hour
 *      (and at start), forgets the delivery keys older than
 *      store_delivery_key_lifetime.
 * Nothing is acknowledged before step 4 has returned.  When the commit
 * fails, every op of the batch is answered with an error.  At start the
 * writer opens the store and recovers from a crash: hashes in the intent
 * file without a row are removed, and so are unreferenced blobs and spool
 * files older than a day.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "blob.h"
#include "log.h"
#include "meta.h"
#include "mime.h"
#include "mime_imap.h"
#include "stored.h"
#include "str.h"
#include "xalloc.h"

#define COMMIT_ERROR_MAX 4096
#define COMMIT_IMAP_MAX ((size_t)1 << 20)	/* cached ENVELOPE etc. */
/* Helper threads: each takes one spooled message (hash, parse, fsync) or
 * one directory fsync at a time.  Mostly they wait on the disk, so more of
 * them than cores lets independent fsyncs overlap on the device. */
#define COMMIT_HELPERS 8
/* How often the writer forgets old delivery keys (seconds). */
#define COMMIT_PRUNE_INTERVAL 3600

/* A parallel loop the writer hands to the helpers (blob_runner). */
struct commit_job {
	blob_task_cb *fn;	/* NULL when there is none */
	void *arg;
	size_t n, next, running;
};

struct commit {
	uv_loop_t *loop;
	uv_async_t async;
	uv_thread_t thread;
	uv_mutex_t lock;
	uv_cond_t wake;		/* the writer waits for work on it */
	uv_cond_t started;	/* commit_start waits for the open */
	uv_cond_t help;		/* the helpers wait for work on it */
	uv_cond_t job_done;	/* the writer waits for its job */
	uv_thread_t helpers[COMMIT_HELPERS];
	size_t nhelpers;
	/* under lock */
	struct store_op *queue, **queue_tail;
	struct store_op *prep, **prep_tail;	/* messages to take */
	struct store_op *dirs, **dirs_tail;	/* shard mkdirs to run */
	uv_cond_t dirs_done;
	struct commit_job job;
	struct store_op *done, **done_tail;
	int stopping, start_state;	/* 0 opening, 1 ok, -1 failed */
	int helpers_stopping;
	/* the filer: steps 2 and 3 of the batch the writer posted */
	uv_thread_t filer;
	uv_cond_t file_wake;
	struct store_op *file_batch;	/* posted, not yet taken up */
	int file_done, file_result;
	struct str *file_error;
	/* the new blobs of the batch filed before (filer only): listed in
	 * the next intent too, as that batch may not have committed yet */
	char (*fresh_prev)[BLOB_HEX_LEN + 1];
	size_t nfresh_prev;
	size_t in_flight;		/* loop thread only */

	/* writer thread */
	struct commit_settings set;
	char *meta_path, *store_dir;
	struct store_ctx ctx;
	struct str *start_error;
	commit_done_cb *done_cb;
	void *done_ctx;
	int64_t pruned_at;	/* last prune of the delivery keys */
};

/* ---- recovery ---- */

static int recover_intent(const char *hex, void *ctx)
{
	struct commit *c = ctx;
	int64_t refs;
	int r = meta_blob_refs(c->ctx.meta, hex, &refs, c->ctx.error);

	if (r == META_ENOTFOUND) {
		log_info(NULL, "recovery: removing uncommitted blob %s", hex);
		return blob_remove(c->ctx.blobs, hex, c->ctx.error);
	}
	return r < 0 ? -1 : 0;
}

struct reclaim_ctx {
	struct commit *c;
	const struct store_op *spare;	/* a batch being filed, or NULL */
	int spared;
};

/* 1 when a spooled message of batch has the blob hex. */
static int in_batch(const struct store_op *batch, const char *hex)
{
	for (const struct store_op *op = batch; op != NULL; op = op->next)
		if (op->spool != NULL && strcmp(op->hex, hex) == 0)
			return 1;
	return 0;
}

static int reclaim_one(const char *hex, int64_t refs, void *ctx)
{
	struct reclaim_ctx *rc = ctx;
	struct str *error;

	(void)refs;
	if (in_batch(rc->spare, hex)) {
		rc->spared = 1;
		return 0;
	}
	error = str_new(128, COMMIT_ERROR_MAX);
	if (blob_remove(rc->c->ctx.blobs, hex, error) < 0)
		log_error(NULL, "reclaim blob %s: %s", hex, str_c(error));
	else
		log_debug(NULL, "blob %s reclaimed", hex);
	str_free(&error);
	return 0;
}

/* Removes unreferenced blob files, then their rows.  A blob of the batch
 * being filed (spare) keeps its file, which that batch may have found
 * already stored; the rows then stay too, for a later reclaim to forget
 * once the batch has committed or failed (removing a file twice is
 * harmless). */
static int reclaim(struct commit *c, const struct store_op *spare)
{
	struct meta *m = c->ctx.meta;
	struct reclaim_ctx rc = { c, spare, 0 };

	if (meta_blobs_unreferenced(m, reclaim_one, &rc, c->ctx.error) < 0)
		return -1;
	if (rc.spared)
		return 0;
	if (meta_begin(m, c->ctx.error) < 0)
		return -1;
	if (meta_blobs_forget_unreferenced(m, c->ctx.error) < 0 ||
	    meta_commit(m, c->ctx.error) < 0) {
		meta_rollback(m);
		return -1;
	}
	return 0;
}

/* Forgets the delivery keys past their lifetime, at most once per
 * COMMIT_PRUNE_INTERVAL. */
static int prune_keys(struct commit *c)
{
	struct meta *m = c->ctx.meta;
	int64_t now = (int64_t)time(NULL);
	uint64_t n = 0;

	if (c->pruned_at != 0 && now >= c->pruned_at &&
	    now - c->pruned_at < COMMIT_PRUNE_INTERVAL)
		return 0;
	c->pruned_at = now;
	if (meta_begin(m, c->ctx.error) < 0)
		return -1;
	if (meta_delivery_prune(m, now - c->set.key_lifetime, &n,
				c->ctx.error) < 0 ||
	    meta_commit(m, c->ctx.error) < 0) {
		meta_rollback(m);
		return -1;
	}
	if (n > 0)
		log_info(NULL, "forgot %llu delivery key(s) older than %lld s",
			 (unsigned long long)n, (long long)c->set.key_lifetime);
	return 0;
}

static int stale_spool(const char *path, int64_t age, void *ctx)
{
	log_info(NULL, "removing stale spool file %s (%lld s old)", path,
		 (long long)age);
	return 0;
}

static int writer_open(struct commit *c)
{
	struct str *error = c->start_error;

	if (blob_store_open(c->store_dir, &c->ctx.blobs, error) < 0)
		return -1;
	if (meta_open(c->meta_path, &c->ctx.meta, error) < 0)
		return -1;
	if (blob_spool_stale(c->ctx.blobs, BLOB_SPOOL_STALE_SECS, 1,
			     stale_spool, NULL, error) < 0)
		log_warn(NULL, "spool cleanup: %s", str_c(error));
	str_clear(error);
	if (blob_intent_scan(c->ctx.blobs, recover_intent, c, error) < 0 ||
	    reclaim(c, NULL) < 0 || prune_keys(c) < 0) {
		if (str_len(error) == 0 &&
		    str_append_c(error, str_c(c->ctx.error)) < 0)
			str_clear(error);
		return -1;
	}
	return 0;
}

/* ---- one batch ---- */

static void mime_chunk(const void *data, size_t len, void *ctx)
{
	mime_parser_feed(ctx, data, len);
}

/* The IMAP ENVELOPE and BODYSTRUCTURE of the parsed message, cached in the
 * metadata; left NULL when too large. */
static void imap_cache(struct store_op *op, struct mime_parser **parser)
{
	struct mime_part *root = mime_parser_finish(parser);
	struct str *out = str_new(1024, COMMIT_IMAP_MAX);

	if (mime_imap_envelope(root, out) == 0)
		op->envelope = xstrdup(str_c(out));
	str_clear(out);
	if (mime_imap_bodystructure(root, 1, out) == 0)
		op->bodystructure = xstrdup(str_c(out));
	str_free(&out);
	mime_part_free(&root);
}

enum { DIRS_NONE, DIRS_QUEUED, DIRS_RUNNING, DIRS_DONE };

/* The shard directories of op's blob (slow on a busy filesystem).  A
 * failure is met again, and reported, by blob_install(). */
static void run_dirs(struct commit *c, struct store_op *op)
{
	struct str *error = str_new(128, COMMIT_ERROR_MAX);

	if (blob_prepare_dirs(c->ctx.blobs, op->hex, error) < 0)
		log_debug(NULL, "shard for %s: %s", op->hex, str_c(error));
	str_free(&error);
}

struct hashed_ctx {
	struct commit *c;
	struct store_op *op;
};

/* blob_hashed_cb: the mkdirs go to another helper while this one fsyncs
 * the message. */
static void on_hashed(const char *hex, void *ctx)
{
	struct hashed_ctx *h = ctx;
	struct commit *c = h->c;

	(void)hex;	/* h->op->hex */
	uv_mutex_lock(&c->lock);
	h->op->dirs_next = NULL;
	h->op->dirs_state = DIRS_QUEUED;
	*c->dirs_tail = h->op;
	c->dirs_tail = &h->op->dirs_next;
	uv_cond_signal(&c->help);
	uv_mutex_unlock(&c->lock);
}

/* Waits for op's mkdirs, or runs them here when no helper took them. */
static void finish_dirs(struct commit *c, struct store_op *op)
{
	struct store_op **pp;

	uv_mutex_lock(&c->lock);
	if (op->dirs_state == DIRS_QUEUED) {
		for (pp = &c->dirs; *pp != op; pp = &(*pp)->dirs_next)
			;
		*pp = op->dirs_next;
		if (*pp == NULL)
			c->dirs_tail = pp;
		op->dirs_state = DIRS_RUNNING;
		uv_mutex_unlock(&c->lock);
		run_dirs(c, op);
		uv_mutex_lock(&c->lock);
		op->dirs_state = DIRS_DONE;
	}
	while (op->dirs_state == DIRS_RUNNING)
		uv_cond_wait(&c->dirs_done, &c->lock);
	uv_mutex_unlock(&c->lock);
}

/* Step 1 for one op, on a helper thread: hash, parse and fsync its
 * spooled file.  Touches only the op and the store's fixed paths. */
static void take_spool(struct commit *c, struct store_op *op,
		       struct str *error)
{
	const char *field = ops_spool_field(op->def);
	struct hashed_ctx h = { c, op };
	struct mime_parser *parser;
	int r;

	if (field == NULL)
		return;
	parser = mime_parser_new(NULL);
	op->dirs_state = DIRS_NONE;
	r = ipc_msg_get_cstr(op->req, field, &op->spool) < 0 ||
	    blob_spool_check(c->ctx.blobs, op->spool, error) < 0 ||
	    blob_prepare_hooked(op->spool, op->hex, &op->size, mime_chunk,
				parser, blob_store_nested(c->ctx.blobs) ?
					on_hashed : NULL, &h, error) < 0;
	if (op->dirs_state != DIRS_NONE)
		finish_dirs(c, op);
	if (r) {
		mime_parser_free(&parser);
		op->spool_failed = 1;
		ops_fail(op, "nofile", str_c(error));
		log_warn(NULL, "request %s: %s", ipc_msg_type(op->req),
			 str_c(error));
		if (op->spool != NULL &&
		    blob_spool_check(c->ctx.blobs, op->spool, error) == 0)
			(void)unlink(op->spool);
		op->spool = NULL;
		return;
	}
	imap_cache(op, &parser);
}

/* blob_runner for the writer: fn(i) for every i < n on the helpers and
 * on the writer itself; returns when all are done. */
static void run_parallel(size_t n, blob_task_cb *fn, void *arg, void *ctx)
{
	struct commit *c = ctx;
	struct commit_job *job = &c->job;

	uv_mutex_lock(&c->lock);
	*job = (struct commit_job){ .fn = fn, .arg = arg, .n = n };
	uv_cond_broadcast(&c->help);
	while (job->next < job->n) {
		size_t i = job->next++;

		job->running++;
		uv_mutex_unlock(&c->lock);
		fn(i, arg);
		uv_mutex_lock(&c->lock);
		job->running--;
	}
	while (job->running > 0)
		uv_cond_wait(&c->job_done, &c->lock);
	job->fn = NULL;
	uv_mutex_unlock(&c->lock);
}

/* Steps 2 and 3, on the filer thread: intent, rename, directory fsyncs.
 * The intent lists the new blobs of this batch and of the one filed
 * before, which the writer may still be committing.  -1 fails the
 * batch. */
static int install_blobs(struct commit *c, struct store_op *batch,
			 struct str *error)
{
	const char **list = xcalloc(c->nfresh_prev + 1, sizeof(*list));
	size_t nprev = c->nfresh_prev, n = nprev;
	int installed, r;

	for (size_t i = 0; i < nprev; i++)
		list[i] = c->fresh_prev[i];
	for (struct store_op *op = batch; op != NULL; op = op->next) {
		int dup = 0;

		if (op->spool == NULL || blob_exists(c->ctx.blobs, op->hex))
			continue;
		for (size_t i = nprev; i < n; i++)
			dup |= strcmp(list[i], op->hex) == 0;
		if (dup)
			continue;
		list = xrealloc(list, (n + 1) * sizeof(*list));
		list[n++] = op->hex;
	}
	r = n > 0 ? blob_intent_write(c->ctx.blobs, list, n, error) : 0;
	/* This batch's list, for the next one (copied: the ops go back to
	 * the loop once committed). */
	c->fresh_prev = xrealloc(c->fresh_prev, (n - nprev + 1) *
					       sizeof(*c->fresh_prev));
	for (size_t i = nprev; i < n; i++)
		memcpy(c->fresh_prev[i - nprev], list[i], BLOB_HEX_LEN + 1);
	c->nfresh_prev = n - nprev;
	free(list);
	if (r < 0)
		return -1;
	for (struct store_op *op = batch; op != NULL; op = op->next) {
		if (op->spool == NULL)
			continue;
		if (blob_install(c->ctx.blobs, op->spool, op->hex, &installed,
				 error) < 0)
			return -1;
	}
	return blob_sync_dirs_with(c->ctx.blobs, run_parallel, c, error);
}

static void fail_batch(struct store_op *batch, const char *why)
{
	log_error(NULL, "batch failed: %s", why);
	for (struct store_op *op = batch; op != NULL; op = op->next)
		ops_fail(op, "internal", why);
}

/* Step 4 up to the commit: the statements of every op in the open
 * transaction.  -1 (the batch failed, rolled back) or 0. */
static int run_batch(struct commit *c, struct store_op *batch)
{
	struct meta *m = c->ctx.meta;

	if (meta_begin(m, c->ctx.error) < 0) {
		fail_batch(batch, str_c(c->ctx.error));
		return -1;
	}
	for (struct store_op *op = batch; op != NULL; op = op->next) {
		if (op->spool != NULL &&
		    meta_blob_register(m, op->hex, op->size,
				       c->ctx.error) < 0) {
			meta_rollback(m);
			fail_batch(batch, str_c(c->ctx.error));
			return -1;
		}
		ops_exec(&c->ctx, op);
	}
	return 0;
}

/* After a failed batch: the store owns the spooled files, so they go, and
 * blobs already renamed for this batch go as at recovery. */
static void abandon(struct commit *c, struct store_op *batch)
{
	for (struct store_op *op = batch; op != NULL; op = op->next)
		if (op->spool != NULL)
			(void)unlink(op->spool);
	if (blob_intent_scan(c->ctx.blobs, recover_intent, c,
			     c->ctx.error) < 0)
		log_error(NULL, "cleaning up a failed batch: %s",
			  str_c(c->ctx.error));
}

/* The filer thread runs steps 2 and 3 of each batch the writer posts. */
static void filer_main(void *arg)
{
	struct commit *c = arg;

	uv_mutex_lock(&c->lock);
	for (;;) {
		struct store_op *batch = c->file_batch;
		int r;

		if (batch == NULL) {
			if (c->helpers_stopping)
				break;
			uv_cond_wait(&c->file_wake, &c->lock);
			continue;
		}
		uv_mutex_unlock(&c->lock);
		r = install_blobs(c, batch, c->file_error);
		uv_mutex_lock(&c->lock);
		c->file_batch = NULL;
		c->file_result = r;
		c->file_done = 1;
		uv_cond_signal(&c->file_wake);
	}
	uv_mutex_unlock(&c->lock);
}

static void file_post(struct commit *c, struct store_op *batch)
{
	uv_mutex_lock(&c->lock);
	str_clear(c->file_error);
	c->file_done = 0;
	c->file_batch = batch;
	uv_cond_broadcast(&c->file_wake);
	uv_mutex_unlock(&c->lock);
}

static int file_wait(struct commit *c)
{
	int r;

	uv_mutex_lock(&c->lock);
	while (!c->file_done)
		uv_cond_wait(&c->file_wake, &c->lock);
	r = c->file_result;
	uv_mutex_unlock(&c->lock);
	return r;
}

static void hand_back(struct commit *c, struct store_op *batch)
{
	uv_mutex_lock(&c->lock);
	*c->done_tail = batch;
	while (*c->done_tail != NULL)
		c->done_tail = &(*c->done_tail)->next;
	uv_mutex_unlock(&c->lock);
	uv_async_send(&c->async);
}

static int batch_spooled(const struct store_op *batch)
{
	for (const struct store_op *op = batch; op != NULL; op = op->next)
		if (op->spool != NULL)
			return 1;
	return 0;
}

/* Takes up to batch_max queued ops, in order, up to the first one not
 * ready.  With wait, waits for one, and returns NULL only when stopping
 * with none left; without, returns NULL when none is ready.  (The
 * helpers keep running until the writer has stopped, so every queued op
 * becomes ready.) */
static struct store_op *take_batch(struct commit *c, int wait, size_t *n_r)
{
	struct store_op *batch, **tail;
	size_t n = 0;

	uv_mutex_lock(&c->lock);
	while (wait && ((c->queue == NULL && !c->stopping) ||
			(c->queue != NULL && !c->queue->ready)))
		uv_cond_wait(&c->wake, &c->lock);
	batch = c->queue;
	tail = &c->queue;
	while (*tail != NULL && (*tail)->ready && n < c->set.batch_max) {
		tail = &(*tail)->next;
		n++;
	}
	if (n > 0) {
		c->queue = *tail;
		*tail = NULL;
		if (c->queue == NULL)
			c->queue_tail = &c->queue;
	}
	uv_mutex_unlock(&c->lock);
	*n_r = n;
	return n > 0 ? batch : NULL;
}

/* A batch taken, its files posted to the filer when it has any. */
struct taken {
	struct store_op *batch;
	size_t n;
	int spooled;
	int failed;	/* answered with errors already: only to hand back */
};

static int take(struct commit *c, int wait, struct taken *t)
{
	t->batch = take_batch(c, wait, &t->n);
	t->failed = 0;
	if (t->batch == NULL)
		return 0;
	t->spooled = batch_spooled(t->batch);
	if (t->spooled)
		file_post(c, t->batch);
	return 1;
}

/* One batch, whose files the filer has (when it has any).  The new blobs
 * are made durable (filer) while the writer runs the statements; the
 * commit waits for both, so no metadata is committed before its blobs are
 * on disk.  Once they are, the next batch is taken and its files posted,
 * so that they go to disk while this one commits; when the commit then
 * fails, that batch fails too (it may count on a blob of this one). */
static void process(struct commit *c, struct taken *cur, struct taken *next)
{
	struct meta *m = c->ctx.meta;
	int sql, files = 0, ok;

	next->batch = NULL;
	sql = run_batch(c, cur->batch);
	if (cur->spooled)
		files = file_wait(c);
	if (files == 0 && sql == 0)
		(void)take(c, 0, next);
	if (files < 0) {
		if (sql == 0)
			meta_rollback(m);
		fail_batch(cur->batch, str_c(c->file_error));
	} else if (sql == 0 && meta_commit(m, c->ctx.error) < 0) {
		meta_rollback(m);
		fail_batch(cur->batch, str_c(c->ctx.error));
		sql = -1;
	}
	ok = files == 0 && sql == 0;
	if (!ok && next->batch != NULL) {
		if (next->spooled)
			(void)file_wait(c);
		fail_batch(next->batch, "an earlier batch failed");
		if (next->spooled)
			abandon(c, next->batch);
		next->failed = 1;
	}
	if (cur->spooled && !ok)
		abandon(c, cur->batch);
	log_debug(NULL, "batch of %zu request(s) %s", cur->n,
		  ok ? "committed" : "failed");
}

static void writer_main(void *arg)
{
	struct commit *c = arg;
	struct taken cur, next;
	int ok = writer_open(c) == 0;

	uv_mutex_lock(&c->lock);
	c->start_state = ok ? 1 : -1;
	uv_cond_signal(&c->started);
	uv_mutex_unlock(&c->lock);
	if (!ok)
		return;
	if (!take(c, 1, &cur))
		return;
	for (;;) {
		process(c, &cur, &next);
		hand_back(c, cur.batch);
		if (next.batch != NULL && next.failed) {
			hand_back(c, next.batch);
			next.batch = NULL;
		}
		if (reclaim(c, next.batch) < 0)
			log_error(NULL, "reclaiming blobs: %s",
				  str_c(c->ctx.error));
		if (prune_keys(c) < 0)
			log_error(NULL, "forgetting delivery keys: %s",
				  str_c(c->ctx.error));
		if (next.batch != NULL)
			cur = next;
		else if (!take(c, 1, &cur))
			break;
	}
}

/* ---- helper threads ---- */

static void helper_main(void *arg)
{
	struct commit *c = arg;
	struct commit_job *job = &c->job;
	struct str *error = str_new(128, COMMIT_ERROR_MAX);
	struct store_op *op;

	uv_mutex_lock(&c->lock);
	for (;;) {
		if (job->fn != NULL && job->next < job->n) {
			size_t i = job->next++;
			blob_task_cb *fn = job->fn;
			void *fn_arg = job->arg;

			job->running++;
			uv_mutex_unlock(&c->lock);
			fn(i, fn_arg);
			uv_mutex_lock(&c->lock);
			if (--job->running == 0 && job->next == job->n)
				uv_cond_signal(&c->job_done);
		} else if ((op = c->dirs) != NULL) {
			c->dirs = op->dirs_next;
			if (c->dirs == NULL)
				c->dirs_tail = &c->dirs;
			op->dirs_state = DIRS_RUNNING;
			uv_mutex_unlock(&c->lock);
			run_dirs(c, op);
			uv_mutex_lock(&c->lock);
			op->dirs_state = DIRS_DONE;
			uv_cond_broadcast(&c->dirs_done);
		} else if ((op = c->prep) != NULL) {
			c->prep = op->prep_next;
			if (c->prep == NULL)
				c->prep_tail = &c->prep;
			uv_mutex_unlock(&c->lock);
			take_spool(c, op, error);
			str_clear(error);
			uv_mutex_lock(&c->lock);
			op->ready = 1;
			if (op == c->queue)
				uv_cond_signal(&c->wake);
		} else if (c->helpers_stopping) {
			break;
		} else {
			uv_cond_wait(&c->help, &c->lock);
		}
	}
	uv_mutex_unlock(&c->lock);
	str_free(&error);
}

static void helpers_start(struct commit *c)
{
	if (uv_thread_create(&c->filer, filer_main, c) < 0)
		log_fatal(NULL, "cannot start the filer thread");
	for (size_t i = 0; i < COMMIT_HELPERS; i++) {
		if (uv_thread_create(&c->helpers[i], helper_main, c) < 0)
			log_fatal(NULL, "cannot start the helper threads");
		c->nhelpers++;
	}
}

static void helpers_stop(struct commit *c)
{
	uv_mutex_lock(&c->lock);
	c->helpers_stopping = 1;
	uv_cond_broadcast(&c->help);
	uv_mutex_unlock(&c->lock);
	uv_cond_broadcast(&c->file_wake);
	for (size_t i = 0; i < c->nhelpers; i++)
		uv_thread_join(&c->helpers[i]);
	c->nhelpers = 0;
	uv_thread_join(&c->filer);
}

/* ---- loop side ---- */

static void on_async(uv_async_t *a)
{
	struct commit *c = a->data;
	struct store_op *done, *next;

	uv_mutex_lock(&c->lock);
	done = c->done;
	c->done = NULL;
	c->done_tail = &c->done;
	uv_mutex_unlock(&c->lock);
	for (; done != NULL; done = next) {
		next = done->next;
		done->next = NULL;
		c->in_flight--;
		c->done_cb(done, c->done_ctx);
	}
}

static void commit_free(struct commit *c)
{
	struct store_op *op, *next;

	for (op = c->done; op != NULL; op = next) {
		next = op->next;
		op_free(&op);
	}
	meta_close(&c->ctx.meta);
	blob_store_free(&c->ctx.blobs);
	str_free(&c->ctx.error);
	str_free(&c->start_error);
	uv_mutex_destroy(&c->lock);
	uv_cond_destroy(&c->wake);
	uv_cond_destroy(&c->started);
	uv_cond_destroy(&c->help);
	uv_cond_destroy(&c->job_done);
	uv_cond_destroy(&c->file_wake);
	uv_cond_destroy(&c->dirs_done);
	str_free(&c->file_error);
	free(c->fresh_prev);
	free(c->meta_path);
	free(c->store_dir);
	free(c);
}

static void on_async_closed(uv_handle_t *h)
{
	commit_free(h->data);
}

int commit_start(uv_loop_t *loop, const struct commit_settings *set,
		 commit_done_cb *done, void *ctx, struct commit **c_r,
		 struct str *error)
{
	struct commit *c = xcalloc(1, sizeof(*c));

	c->loop = loop;
	c->set = *set;
	c->meta_path = xstrdup(set->meta_path);
	c->store_dir = xstrdup(set->store_dir);
	c->ctx.fetch_max = set->fetch_max;
	c->ctx.error = str_new(128, COMMIT_ERROR_MAX);
	c->start_error = str_new(128, COMMIT_ERROR_MAX);
	c->file_error = str_new(128, COMMIT_ERROR_MAX);
	c->queue_tail = &c->queue;
	c->prep_tail = &c->prep;
	c->dirs_tail = &c->dirs;
	c->done_tail = &c->done;
	c->done_cb = done;
	c->done_ctx = ctx;
	if (uv_mutex_init(&c->lock) < 0 || uv_cond_init(&c->wake) < 0 ||
	    uv_cond_init(&c->started) < 0 || uv_cond_init(&c->help) < 0 ||
	    uv_cond_init(&c->job_done) < 0 || uv_cond_init(&c->file_wake) < 0 ||
	    uv_cond_init(&c->dirs_done) < 0)
		log_fatal(NULL, "cannot create the writer's locks");
	uv_async_init(loop, &c->async, on_async);
	c->async.data = c;
	if (uv_thread_create(&c->thread, writer_main, c) < 0)
		log_fatal(NULL, "cannot start the writer thread");
	uv_mutex_lock(&c->lock);
	while (c->start_state == 0)
		uv_cond_wait(&c->started, &c->lock);
	uv_mutex_unlock(&c->lock);
	if (c->start_state < 0) {
		uv_thread_join(&c->thread);
		if (str_append_c(error, str_c(c->start_error)) < 0)
			str_clear(error);
		uv_close((uv_handle_t *)&c->async, on_async_closed);
		return -1;
	}
	helpers_start(c);
	*c_r = c;
	return 0;
}

const struct blob_store *commit_blobs(const struct commit *c)
{
	return c->ctx.blobs;
}

void commit_submit(struct commit *c, struct store_op *op)
{
	op->next = NULL;
	op->prep_next = NULL;
	op->ready = ops_spool_field(op->def) == NULL;
	c->in_flight++;
	uv_mutex_lock(&c->lock);
	*c->queue_tail = op;
	c->queue_tail = &op->next;
	if (!op->ready) {
		*c->prep_tail = op;
		c->prep_tail = &op->prep_next;
		uv_cond_signal(&c->help);
	} else if (op == c->queue) {
		uv_cond_signal(&c->wake);
	}
	uv_mutex_unlock(&c->lock);
}

size_t commit_in_flight(const struct commit *c)
{
	return c->in_flight;
}

void commit_stop(struct commit **cp)
{
	struct commit *c = *cp;

	if (c == NULL)
		return;
	*cp = NULL;
	uv_mutex_lock(&c->lock);
	c->stopping = 1;
	uv_cond_signal(&c->wake);
	uv_mutex_unlock(&c->lock);
	uv_thread_join(&c->thread);
	helpers_stop(c);
	if (!uv_is_closing((uv_handle_t *)&c->async))
		uv_close((uv_handle_t *)&c->async, on_async_closed);
	else
		commit_free(c);
}
