/* retr.c: see retr.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>
#if defined(__linux__) && defined(SYS_openat2) && defined(RWF_NOWAIT) && \
	__has_include(<linux/openat2.h>)
#include <linux/openat2.h>
#ifdef RESOLVE_CACHED
#define RETR_NOWAIT 1
#endif
#endif

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
	bool sized;		/* size is known (opened on the loop) */
	uint64_t size;		/* of the blob, when sized */
	bool busy;		/* a work item is in flight */
	bool waiting;		/* for the conn to drain */
	bool cancelled;
	bool started;		/* the first chunk was handled */
	bool claimed;		/* retr_send() was called */
	bool ready;		/* a chunk waits for retr_send() */
	bool pre;		/* out holds ok and the first chunk encoded */
	char ok[RETR_OK_MAX];	/* RETR's reply line, "" = none given */
	struct pop3_body *body;
	struct str *out;
	retr_done_cb *cb;
	void *ctx;
	char buf[RETR_CHUNK];
};

/* The blob folder, opened once: blob paths under it are opened relative
 * to it, which saves the kernel the walk of the leading components. */
static int store_fd = -1;
static char *store_dir;
static size_t store_dir_len;

void retr_set_store_dir(const char *dir)
{
	if (store_fd >= 0)
		close(store_fd);
	free(store_dir);
	store_dir = NULL;
	store_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (store_fd < 0)
		return;		/* absolute paths then, as before */
	store_dir = xstrdup(dir);
	store_dir_len = strlen(dir);
	while (store_dir_len > 1 && store_dir[store_dir_len - 1] == '/')
		store_dir[--store_dir_len] = '\0';
}

/* One finished retr is kept for the next message, with its buffers (the
 * output grown to the size of the messages sent): a download of many
 * messages does not allocate and grow them again for each one. */
static struct retr *spare;

static void retr_destroy(struct retr *r)
{
	if (r->fd >= 0)
		close(r->fd);	/* only after a cancel during a read */
	free(r->path);
	r->path = NULL;
	if (spare == NULL) {
		str_clear(r->out);
		spare = r;
		return;
	}
	pop3_body_free(&r->body);
	str_free(&r->out);
	free(r);
}

void retr_free_spare(void)
{
	if (spare == NULL)
		return;
	pop3_body_free(&spare->body);
	str_free(&spare->out);
	free(spare);
	spare = NULL;
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

/*
 * The loop thread: opens and reads the next chunk only when that cannot
 * block (a path in the dentry cache, data in the page cache), which for
 * a message read shortly after the store wrote or a client read it is
 * nearly always.  A message that fits in one chunk then costs no trip to
 * the thread pool.  false: it would block or failed; the thread pool
 * does it (and reports any error) instead.
 */
static bool read_nowait(struct retr *r)
{
#ifdef RETR_NOWAIT
	struct iovec iov = { .iov_base = r->buf, .iov_len = sizeof(r->buf) };
	ssize_t n;

	if (r->fd < 0) {
		struct open_how how = {
			.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY,
			.resolve = RESOLVE_CACHED,
		};
		struct stat st;
		const char *path = r->path;
		int dirfd = AT_FDCWD;
		long fd;

		if (store_fd >= 0 &&
		    strncmp(path, store_dir, store_dir_len) == 0 &&
		    path[store_dir_len] == '/') {
			dirfd = store_fd;
			path += store_dir_len + 1;
		}
		fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));

		if (fd < 0)
			return false;
		r->fd = (int)fd;
		if (fstat(r->fd, &st) < 0 || !S_ISREG(st.st_mode))
			return false;
		r->size = (uint64_t)st.st_size;
		r->sized = true;
	}
	if (!r->sized)
		return false;
	/* A short read here may be the end of what is cached, not of the
	 * file: the size says which. */
	n = preadv2(r->fd, &iov, 1, (off_t)r->offset, RWF_NOWAIT);
	if (n < 0 || (n == 0 && r->offset < r->size))
		return false;
	r->err = 0;
	r->got = (size_t)n;
	r->offset += (uint64_t)n;
	r->eof = r->offset >= r->size;
	if (r->eof) {
		close(r->fd);
		r->fd = -1;
	}
	return true;
#else
	(void)r;
	return false;
#endif
}

static bool flush(struct retr *r)
{
	if (str_len(r->out) > 0 &&
	    conn_write(r->conn, str_c(r->out), str_len(r->out)) < 0)
		return false;
	str_clear(r->out);
	return true;
}

static bool read_next(struct retr *r);

/* Encodes and writes the chunk just read: true when the message is done
 * (*st_r says how), false when more is to come (a read is queued or
 * waits for the conn to drain). */
static bool process(struct retr *r, enum retr_status *st_r)
{
	const char *pos, *end;
	int fr;

again:
	pos = r->buf;
	end = r->buf + r->got;
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
	if (r->pre) {
		/* Encoded while the client read the message before. */
		r->pre = false;
		if (r->eof) {
			if (flush(r))
				*st_r = RETR_OK;
			return true;
		}
		goto sent;
	}
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
sent:
	if (!flush(r))
		return true;
	if (read_next(r))
		goto again;
	return false;
}

/* Goes on with the chunk in buf; calls back and frees r when done. */
static void run(struct retr *r)
{
	enum retr_status st;
	retr_done_cb *cb;
	uint64_t bytes;
	void *ctx;

	if (!process(r, &st))
		return;
	cb = r->cb;
	ctx = r->ctx;
	bytes = pop3_body_written(r->body);
	retr_destroy(r);
	cb(st, bytes, ctx);
}

/*
 * The first chunk read ahead is encoded as RETR sends it, behind its
 * reply line, while the client is still busy with the message before:
 * the RETR that follows only writes it.  TOP (or anything unexpected)
 * encodes it again from buf.
 */
static void pre_encode(struct retr *r)
{
	const char *pos = r->buf;

	if (r->ok[0] == '\0' || r->err != 0)
		return;
	pop3_body_reset(r->body, -1);
	str_clear(r->out);
	if (str_append_c(r->out, r->ok) < 0 ||
	    pop3_body_feed(r->body, &pos, r->buf + r->got, r->out) != 0 ||
	    (r->eof && pop3_body_finish(r->body, r->out) < 0)) {
		str_clear(r->out);
		return;
	}
	r->pre = true;
}

static void read_done(uv_work_t *w, int status)
{
	struct retr *r = w->data;

	r->busy = false;
	if (r->cancelled) {
		retr_destroy(r);
		return;
	}
	if (status < 0 && r->err == 0)
		r->err = ECANCELED;
	if (!r->claimed) {
		r->ready = true;	/* read ahead: wait for retr_send() */
		pre_encode(r);
		return;
	}
	run(r);
}

/* true: the next chunk is in buf now; false: it comes to read_done(),
 * or the conn must drain first. */
static bool read_next(struct retr *r)
{
	if (conn_pending(r->conn) >= CONN_HIGH_WATER) {
		r->waiting = true;
		return false;
	}
	r->waiting = false;
	if (read_nowait(r))
		return true;
	r->busy = true;
	if (uv_queue_work(r->loop, &r->work, read_work, read_done) < 0)
		log_panic(conn_id(r->conn), "uv_queue_work failed");
	return false;
}

struct retr *retr_open(uv_loop_t *loop, struct conn *c, const char *path,
		       const char *ok_line)
{
	struct retr *r = spare;
	struct pop3_body *body = NULL;
	struct str *out = NULL;

	if (r != NULL) {
		spare = NULL;
		body = r->body;
		out = r->out;
	} else {
		r = xmalloc(sizeof(*r));
	}
	memset(r, 0, offsetof(struct retr, buf));
	r->body = body != NULL ? body : pop3_body_new(-1);
	r->out = out != NULL ? out : str_new(4096, OUT_MAX);
	r->loop = loop;
	r->conn = c;
	r->path = xstrdup(path);
	if (ok_line != NULL)
		str_lcpy(r->ok, ok_line, sizeof(r->ok));
	r->fd = -1;
	r->work.data = r;
	if (read_nowait(r)) {
		r->ready = true;	/* read ahead: wait for retr_send() */
		pre_encode(r);
		return r;
	}
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
	if (!r->pre || lines >= 0 || strcmp(ok_line, r->ok) != 0) {
		r->pre = false;
		pop3_body_reset(r->body, lines);
		str_clear(r->out);
		if (str_append_c(r->out, ok_line) < 0)
			str_clear(r->out);
	}
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
	if (r != NULL && r->waiting && !r->busy && read_next(r))
		run(r);
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
