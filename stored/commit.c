/*
 * commit.c: tern-stored's writer thread and its group commit.
 *
 * The loop thread queues ops (commit_submit); the writer takes all that
 * are pending, at most batch_max, and for that batch:
 *   1. takes each spooled message: opens it, hashes it, fsyncs it;
 *   2. writes the hashes of the blobs that are new to DIR/intent (fsync);
 *   3. renames them into place and fsyncs the changed directories;
 *   4. runs every op in one transaction (each in its own savepoint) and
 *      commits it (SQLite in WAL mode with synchronous=FULL);
 *   5. hands the ops back to the loop (uv_async_send), which answers;
 *   6. removes the files of blobs whose last reference went, then their
 *      rows.
 * Nothing is acknowledged before step 4 has returned.  When the commit
 * fails, every op of the batch is answered with an error.  At start the
 * writer opens the store and recovers from a crash: hashes in the intent
 * file without a row are removed, and so are unreferenced blobs and spool
 * files older than a day.
 */
#include "config.h"

#include <stdlib.h>
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

struct commit {
	uv_loop_t *loop;
	uv_async_t async;
	uv_thread_t thread;
	uv_mutex_t lock;
	uv_cond_t wake;		/* the writer waits for work on it */
	uv_cond_t started;	/* commit_start waits for the open */
	/* under lock */
	struct store_op *queue, **queue_tail;
	struct store_op *done, **done_tail;
	int stopping, start_state;	/* 0 opening, 1 ok, -1 failed */
	size_t in_flight;		/* loop thread only */
	/* writer thread */
	struct commit_settings set;
	char *meta_path, *store_dir;
	struct store_ctx ctx;
	struct str *start_error;
	commit_done_cb *done_cb;
	void *done_ctx;
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

static int reclaim_one(const char *hex, int64_t refs, void *ctx)
{
	struct commit *c = ctx;
	struct str *error = str_new(128, COMMIT_ERROR_MAX);

	if (blob_remove(c->ctx.blobs, hex, error) < 0)
		log_error(NULL, "reclaim blob %s: %s", hex, str_c(error));
	else
		log_debug(NULL, "blob %s reclaimed", hex);
	str_free(&error);
	return 0;
}

/* Removes unreferenced blob files, then their rows. */
static int reclaim(struct commit *c)
{
	struct meta *m = c->ctx.meta;

	if (meta_blobs_unreferenced(m, reclaim_one, c, c->ctx.error) < 0)
		return -1;
	if (meta_begin(m, c->ctx.error) < 0)
		return -1;
	if (meta_blobs_forget_unreferenced(m, c->ctx.error) < 0 ||
	    meta_commit(m, c->ctx.error) < 0) {
		meta_rollback(m);
		return -1;
	}
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
	    reclaim(c) < 0) {
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

/* Step 1 for one op: hash, parse and fsync its spooled file. */
static void take_spool(struct commit *c, struct store_op *op)
{
	const char *field = ops_spool_field(op->def);
	struct mime_parser *parser;

	if (field == NULL)
		return;
	parser = mime_parser_new(NULL);
	if (ipc_msg_get_cstr(op->req, field, &op->spool) < 0 ||
	    blob_spool_check(c->ctx.blobs, op->spool, c->ctx.error) < 0 ||
	    blob_prepare(op->spool, op->hex, &op->size, mime_chunk, parser,
			 c->ctx.error) < 0) {
		mime_parser_free(&parser);
		op->spool_failed = 1;
		ops_fail(op, "nofile", str_c(c->ctx.error));
		log_warn(NULL, "request %s: %s", ipc_msg_type(op->req),
			 str_c(c->ctx.error));
		if (op->spool != NULL &&
		    blob_spool_check(c->ctx.blobs, op->spool,
				     c->ctx.error) == 0)
			(void)unlink(op->spool);
		op->spool = NULL;
		return;
	}
	imap_cache(op, &parser);
}

/* Steps 2 and 3: intent, rename, directory fsyncs.  -1 fails the batch. */
static int install_blobs(struct commit *c, struct store_op *batch)
{
	const char **fresh = NULL;
	size_t n = 0;
	int installed;

	for (struct store_op *op = batch; op != NULL; op = op->next) {
		int dup = 0;

		if (op->spool == NULL || blob_exists(c->ctx.blobs, op->hex))
			continue;
		for (size_t i = 0; i < n; i++)
			dup |= strcmp(fresh[i], op->hex) == 0;
		if (dup)
			continue;
		fresh = xrealloc(fresh, (n + 1) * sizeof(*fresh));
		fresh[n++] = op->hex;
	}
	if (n > 0 && blob_intent_write(c->ctx.blobs, fresh, n,
				       c->ctx.error) < 0) {
		free(fresh);
		return -1;
	}
	free(fresh);
	for (struct store_op *op = batch; op != NULL; op = op->next) {
		if (op->spool == NULL)
			continue;
		if (blob_install(c->ctx.blobs, op->spool, op->hex, &installed,
				 c->ctx.error) < 0)
			return -1;
	}
	return blob_sync_dirs(c->ctx.blobs, c->ctx.error);
}

static void fail_batch(struct store_op *batch, const char *why)
{
	log_error(NULL, "batch failed: %s", why);
	for (struct store_op *op = batch; op != NULL; op = op->next)
		ops_fail(op, "internal", why);
}

/* Step 4. */
static void run_batch(struct commit *c, struct store_op *batch)
{
	struct meta *m = c->ctx.meta;

	if (meta_begin(m, c->ctx.error) < 0) {
		fail_batch(batch, str_c(c->ctx.error));
		return;
	}
	for (struct store_op *op = batch; op != NULL; op = op->next) {
		if (op->spool != NULL &&
		    meta_blob_register(m, op->hex, op->size,
				       c->ctx.error) < 0) {
			meta_rollback(m);
			fail_batch(batch, str_c(c->ctx.error));
			return;
		}
		ops_exec(&c->ctx, op);
	}
	if (meta_commit(m, c->ctx.error) < 0) {
		meta_rollback(m);
		fail_batch(batch, str_c(c->ctx.error));
	}
}

/* After a failed install: the store owns the spooled files, so they go,
 * and blobs already renamed for this batch go as at recovery. */
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

static void process(struct commit *c, struct store_op *batch, size_t n)
{
	int spooled = 0;

	for (struct store_op *op = batch; op != NULL; op = op->next) {
		take_spool(c, op);
		spooled |= op->spool != NULL;
	}
	if (spooled && install_blobs(c, batch) < 0) {
		fail_batch(batch, str_c(c->ctx.error));
		abandon(c, batch);
	} else {
		run_batch(c, batch);
	}
	log_debug(NULL, "batch of %zu request(s) committed", n);
}

/* Takes up to batch_max queued ops; NULL when stopping with none left. */
static struct store_op *take_batch(struct commit *c, size_t *n_r)
{
	struct store_op *batch, **tail;
	size_t n = 0;

	uv_mutex_lock(&c->lock);
	while (c->queue == NULL && !c->stopping)
		uv_cond_wait(&c->wake, &c->lock);
	batch = c->queue;
	tail = &c->queue;
	while (*tail != NULL && n < c->set.batch_max) {
		tail = &(*tail)->next;
		n++;
	}
	c->queue = *tail;
	*tail = NULL;
	if (c->queue == NULL)
		c->queue_tail = &c->queue;
	uv_mutex_unlock(&c->lock);
	*n_r = n;
	return batch;
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

static void writer_main(void *arg)
{
	struct commit *c = arg;
	struct store_op *batch;
	size_t n;
	int ok = writer_open(c) == 0;

	uv_mutex_lock(&c->lock);
	c->start_state = ok ? 1 : -1;
	uv_cond_signal(&c->started);
	uv_mutex_unlock(&c->lock);
	if (!ok)
		return;
	while ((batch = take_batch(c, &n)) != NULL) {
		process(c, batch, n);
		hand_back(c, batch);
		if (reclaim(c) < 0)
			log_error(NULL, "reclaiming blobs: %s",
				  str_c(c->ctx.error));
	}
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
	c->queue_tail = &c->queue;
	c->done_tail = &c->done;
	c->done_cb = done;
	c->done_ctx = ctx;
	if (uv_mutex_init(&c->lock) < 0 || uv_cond_init(&c->wake) < 0 ||
	    uv_cond_init(&c->started) < 0)
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
	*c_r = c;
	return 0;
}

void commit_submit(struct commit *c, struct store_op *op)
{
	op->next = NULL;
	c->in_flight++;
	uv_mutex_lock(&c->lock);
	*c->queue_tail = op;
	c->queue_tail = &op->next;
	uv_cond_signal(&c->wake);
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
	if (!uv_is_closing((uv_handle_t *)&c->async))
		uv_close((uv_handle_t *)&c->async, on_async_closed);
	else
		commit_free(c);
}
