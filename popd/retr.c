/* retr.c: see retr.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "compat.h"
#include "conn.h"
#include "log.h"
#include "pop3proto.h"
#include "retr.h"
#include "str.h"
#include "xalloc.h"

/* Encoded output flushed to the conn at this size (at most twice a
 * chunk: every byte may become two). */
#define OUT_MAX (2 * RETR_CHUNK + 64)

struct retr {
	uv_loop_t *loop;
	struct conn *conn;
	uv_work_t work;
	char *path;
	int fd;
	int err;		/* errno of the work item */
	uint64_t offset;	/* next pread */
	size_t got;		/* bytes in buf from the last read */
	bool eof;		/* the last read reached the end */
	bool busy;		/* a work item is in flight */
	bool waiting;		/* for the conn to drain */
	bool cancelled;
	bool started;		/* the first chunk was handled */
	bool claimed;		/* retr_send() was called */
	bool ready;		/* a chunk waits for retr_send() */
	struct pop3_body *body;
	struct str *out;
	retr_done_cb *cb;
	void *ctx;
	char buf[RETR_CHUNK];
};

static void retr_destroy(struct retr *r)
{
	if (r->fd >= 0)
		close(r->fd);	/* only after a cancel during a read */
	pop3_body_free(&r->body);
	str_free(&r->out);
	free(r->path);
	free(r);
}

/* Thread pool: open on the first call, read the next chunk, close at the
 * end of the file. */
static void read_work(uv_work_t *w)
{
	struct retr *r = w->data;
	ssize_t n;

	r->err = 0;
	if (r->fd < 0) {
		r->fd = open(r->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
		if (r->fd < 0) {
			r->err = errno;
			return;
		}
	}
	do
		n = pread(r->fd, r->buf, sizeof(r->buf), (off_t)r->offset);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		r->err = errno;
		r->got = 0;
	} else {
		r->got = (size_t)n;
		r->offset += (uint64_t)n;
		/* A regular file: a short read is its end. */
		r->eof = (size_t)n < sizeof(r->buf);
	}
	if (r->eof || n < 0) {
		close(r->fd);
		r->fd = -1;
	}
}

static bool flush(struct retr *r)
{
	if (str_len(r->out) > 0 &&
	    conn_write(r->conn, str_c(r->out), str_len(r->out)) < 0)
		return false;
	str_clear(r->out);
	return true;
}

static void read_next(struct retr *r);

/* Encodes and writes the chunk just read: true when the message is done
 * (*st_r says how), false when more is to come (a read is queued or
 * waits for the conn to drain). */
static bool process(struct retr *r, enum retr_status *st_r)
{
	const char *pos = r->buf, *end = r->buf + r->got;
	int fr;

	if (r->err != 0) {
		if (!r->started) {
			if (r->err != ENOENT)
				log_warn(conn_id(r->conn), "open %s: %s",
					 r->path, strerror(r->err));
			*st_r = RETR_GONE;
			return true;
		}
		log_warn(conn_id(r->conn), "read %s: %s", r->path,
			 strerror(r->err));
		(void)flush(r);
		*st_r = RETR_FAILED;
		return true;
	}
	r->started = true;
	*st_r = RETR_FAILED;
	while ((fr = pop3_body_feed(r->body, &pos, end, r->out)) == -1) {
		if (!flush(r))
			return true;
	}
	if (fr == 1 || r->eof) {
		if (r->fd >= 0) {
			close(r->fd);	/* TOP stopped early; no I/O on close */
			r->fd = -1;
		}
		while (pop3_body_finish(r->body, r->out) < 0) {
			if (!flush(r))
				return true;
		}
		if (flush(r))
			*st_r = RETR_OK;
		return true;
	}
	if (!flush(r))
		return true;
	read_next(r);
	return false;
}

static void read_done(uv_work_t *w, int status)
{
	struct retr *r = w->data;
	enum retr_status st;
	retr_done_cb *cb;
	uint64_t bytes;
	void *ctx;

	r->busy = false;
	if (r->cancelled) {
		retr_destroy(r);
		return;
	}
	if (status < 0 && r->err == 0)
		r->err = ECANCELED;
	if (!r->claimed) {
		r->ready = true;	/* read ahead: wait for retr_send() */
		return;
	}
	if (!process(r, &st))
		return;
	cb = r->cb;
	ctx = r->ctx;
	bytes = pop3_body_written(r->body);
	retr_destroy(r);
	cb(st, bytes, ctx);
}

static void read_next(struct retr *r)
{
	if (conn_pending(r->conn) >= CONN_HIGH_WATER) {
		r->waiting = true;
		return;
	}
	r->waiting = false;
	r->busy = true;
	if (uv_queue_work(r->loop, &r->work, read_work, read_done) < 0)
		log_panic(conn_id(r->conn), "uv_queue_work failed");
}

struct retr *retr_open(uv_loop_t *loop, struct conn *c, const char *path)
{
	struct retr *r = xmalloc(sizeof(*r));

	memset(r, 0, offsetof(struct retr, buf));
	r->loop = loop;
	r->conn = c;
	r->path = xstrdup(path);
	r->fd = -1;
	r->body = pop3_body_new(-1);
	r->out = str_new(4096, OUT_MAX);
	r->work.data = r;
	r->busy = true;
	if (uv_queue_work(loop, &r->work, read_work, read_done) < 0)
		log_panic(conn_id(c), "uv_queue_work failed");
	return r;
}

int retr_send(struct retr *r, const char *ok_line, int64_t lines,
	      retr_done_cb *cb, void *ctx, enum retr_status *st_r,
	      uint64_t *bytes_r)
{
	r->claimed = true;
	r->cb = cb;
	r->ctx = ctx;
	pop3_body_reset(r->body, lines);
	if (str_append_c(r->out, ok_line) < 0)
		str_clear(r->out);
	if (r->busy)
		return 0;	/* read_done() goes on */
	r->ready = false;
	if (!process(r, st_r))
		return 0;
	*bytes_r = pop3_body_written(r->body);
	retr_destroy(r);
	return 1;
}

void retr_resume(struct retr *r)
{
	if (r != NULL && r->waiting && !r->busy)
		read_next(r);
}

void retr_cancel(struct retr **rp)
{
	struct retr *r = *rp;

	if (r == NULL)
		return;
	*rp = NULL;
	r->cancelled = true;
	if (!r->busy)
		retr_destroy(r);
}
