/*
 * reader.c: tern-stored's reader thread (stored.h says what it is for).
 *
 * The loop thread queues read-only ops (reader_submit); the thread takes
 * them in order, runs each in its own read transaction on its own SQLite
 * connection and hands it back through a uv_async; the loop then answers
 * it, or passes it to the writer when the reader could not answer it.
 */
#include "config.h"

#include <stdlib.h>

#include "compat.h"
#include "blob.h"
#include "log.h"
#include "meta.h"
#include "stored.h"
#include "str.h"
#include "xalloc.h"

#define READER_ERROR_MAX 4096

struct reader {
	uv_loop_t *loop;
	uv_async_t async;
	uv_thread_t thread;
	uv_mutex_t lock;
	uv_cond_t wake;
	struct commit *commit;
	commit_done_cb *done;
	void *done_ctx;
	struct store_ctx ctx;
	/* under lock */
	struct store_op *queue, **queue_tail;
	struct store_op *out, **out_tail;
	int stopping;
	/* loop thread */
	size_t in_flight;
};

static void reader_thread(void *arg)
{
	struct reader *r = arg;
	struct store_op *op;

	uv_mutex_lock(&r->lock);
	for (;;) {
		while (r->queue == NULL && !r->stopping)
			uv_cond_wait(&r->wake, &r->lock);
		if (r->queue == NULL)
			break;
		op = r->queue;
		r->queue = op->next;
		if (r->queue == NULL)
			r->queue_tail = &r->queue;
		op->next = NULL;
		uv_mutex_unlock(&r->lock);
		str_clear(r->ctx.error);
		ops_exec_read(&r->ctx, op);
		uv_mutex_lock(&r->lock);
		*r->out_tail = op;
		r->out_tail = &op->next;
		uv_async_send(&r->async);
	}
	uv_mutex_unlock(&r->lock);
}

/* Loop thread: the answered ops, and those for the writer. */
static void reader_async(uv_async_t *h)
{
	struct reader *r = h->data;
	struct store_op *list, *op;

	uv_mutex_lock(&r->lock);
	list = r->out;
	r->out = NULL;
	r->out_tail = &r->out;
	uv_mutex_unlock(&r->lock);
	while ((op = list) != NULL) {
		list = op->next;
		op->next = NULL;
		r->in_flight--;
		if (op->to_writer) {
			op->to_writer = 0;
			commit_submit(r->commit, op);
		} else {
			r->done(op, r->done_ctx);
		}
	}
}

int reader_start(uv_loop_t *loop, const struct commit_settings *set,
		 struct commit *commit, commit_done_cb *done, void *ctx,
		 struct reader **r_r, struct str *error)
{
	struct reader *r = xcalloc(1, sizeof(*r));

	r->loop = loop;
	r->commit = commit;
	r->done = done;
	r->done_ctx = ctx;
	r->queue_tail = &r->queue;
	r->out_tail = &r->out;
	r->ctx.fetch_max = set->fetch_max;
	r->ctx.reader = 1;
	r->ctx.error = str_new(256, READER_ERROR_MAX);
	/* The writer's blob store, for paths only (it holds the store's
	 * lock; this thread changes nothing in it). */
	r->ctx.blobs = (struct blob_store *)commit_blobs(commit);
	if (meta_open_reader(set->meta_path, &r->ctx.meta, error) < 0) {
		str_free(&r->ctx.error);
		free(r);
		return -1;
	}
	uv_mutex_init(&r->lock);
	uv_cond_init(&r->wake);
	uv_async_init(loop, &r->async, reader_async);
	r->async.data = r;
	if (uv_thread_create(&r->thread, reader_thread, r) != 0)
		log_panic(NULL, "cannot start the reader thread");
	*r_r = r;
	return 0;
}

void reader_submit(struct reader *r, struct store_op *op)
{
	op->next = NULL;
	r->in_flight++;
	uv_mutex_lock(&r->lock);
	*r->queue_tail = op;
	r->queue_tail = &op->next;
	uv_cond_signal(&r->wake);
	uv_mutex_unlock(&r->lock);
}

size_t reader_in_flight(const struct reader *r)
{
	return r->in_flight;
}

static void reader_closed(uv_handle_t *h)
{
	struct reader *r = h->data;

	uv_mutex_destroy(&r->lock);
	uv_cond_destroy(&r->wake);
	free(r);
}

void reader_stop(struct reader **rp)
{
	struct reader *r = *rp;

	if (r == NULL)
		return;
	*rp = NULL;
	uv_mutex_lock(&r->lock);
	r->stopping = 1;
	uv_cond_signal(&r->wake);
	uv_mutex_unlock(&r->lock);
	uv_thread_join(&r->thread);
	reader_async(&r->async);	/* what was answered last */
	meta_close(&r->ctx.meta);
	r->ctx.blobs = NULL;	/* the writer's */
	str_free(&r->ctx.error);
	uv_close((uv_handle_t *)&r->async, reader_closed);
}
