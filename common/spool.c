/* spool.c: see spool.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compat.h"
#include "fsutil.h"
#include "spool.h"
#include "str.h"
#include "xalloc.h"

#define SPOOL_ERROR_MAX 512

enum spool_op {
	OP_NONE,
	OP_OPEN,
	OP_WRITE,
	OP_CLOSE,
	OP_UNLINK,
	OP_COMMIT,
};

struct spool {
	uv_loop_t *loop;
	uv_fs_t req;
	uv_work_t work;		/* spool_commit */
	char *final_path;
	int commit_errno;	/* 0, or why the commit failed */
	const char *commit_step;
	enum spool_op op;	/* running, or OP_NONE */
	char *path;
	uv_file fd;		/* -1 when not open */
	bool created;		/* the file exists because of us */
	struct str *buf;	/* the write in progress */
	size_t done;		/* bytes of buf written */
	uint64_t size;
	struct str *error;	/* empty while all is well */
	spool_cb *cb;
	void *ctx;
	bool dropping;		/* spool_free was called */
	bool remove;		/* ... and the file goes */
};

static void op_done(uv_fs_t *req);

static void set_error(struct spool *sp, const char *what, ssize_t r)
{
	if (str_len(sp->error) == 0)
		(void)str_setf(sp->error, "%s %s: %s", what, sp->path,
			       uv_strerror((int)r));
}

/* The next step of spool_free: close, unlink, free. */
static void teardown(struct spool *sp)
{
	if (sp->fd >= 0) {
		sp->op = OP_CLOSE;
		if (uv_fs_close(sp->loop, &sp->req, sp->fd, op_done) == 0) {
			sp->fd = -1;
			return;
		}
		sp->fd = -1;
	}
	if (sp->remove && sp->created) {
		sp->remove = false;
		sp->op = OP_UNLINK;
		if (uv_fs_unlink(sp->loop, &sp->req, sp->path, op_done) == 0)
			return;
	}
	sp->op = OP_NONE;
	str_free(&sp->buf);
	str_free(&sp->error);
	free(sp->final_path);
	free(sp->path);
	free(sp);
}

/* -1 when the request could not be queued (the error is set). */
static int start_write(struct spool *sp)
{
	uv_buf_t b = uv_buf_init(str_data(sp->buf) + sp->done,
				 (unsigned int)(str_len(sp->buf) - sp->done));
	int r;

	sp->op = OP_WRITE;
	r = uv_fs_write(sp->loop, &sp->req, sp->fd, &b, 1, (int64_t)sp->size,
			op_done);
	if (r < 0) {
		set_error(sp, "write", r);
		str_clear(sp->buf);
		sp->op = OP_NONE;
		return -1;
	}
	return 0;
}

/* true when the operation continues (another request was started). */
static bool op_result(struct spool *sp, enum spool_op op, ssize_t r)
{
	switch (op) {
	case OP_OPEN:
		if (r < 0) {
			set_error(sp, "create", r);
		} else {
			sp->fd = (uv_file)r;
			sp->created = true;
		}
		break;
	case OP_WRITE:
		if (r < 0) {
			set_error(sp, "write", r);
			break;
		}
		sp->done += (size_t)r;
		sp->size += (uint64_t)r;
		if (r > 0 && sp->done < str_len(sp->buf) && !sp->dropping)
			return start_write(sp) == 0;
		if (r == 0 && sp->done < str_len(sp->buf))
			set_error(sp, "write", UV_EIO);
		break;
	case OP_CLOSE:
		if (r < 0)
			set_error(sp, "close", r);
		break;
	case OP_UNLINK:
	case OP_COMMIT:
	case OP_NONE:
		break;
	}
	return false;
}

static void op_done(uv_fs_t *req)
{
	struct spool *sp = req->data;
	enum spool_op op = sp->op;
	ssize_t r = req->result;

	uv_fs_req_cleanup(req);
	req->data = sp;
	if (op_result(sp, op, r))
		return;
	sp->op = OP_NONE;
	if (op == OP_WRITE) {
		str_clear(sp->buf);
		sp->done = 0;
	}
	if (sp->dropping) {
		teardown(sp);
		return;
	}
	if (sp->cb != NULL)
		sp->cb(sp->ctx);
}

struct spool *spool_new(uv_loop_t *loop, const char *dir, const char *name,
			spool_cb *cb, void *ctx)
{
	struct spool *sp = xcalloc(1, sizeof(*sp));
	struct str *path = str_new(256, 4096);
	int r;

	sp->loop = loop;
	sp->fd = -1;
	sp->buf = str_new(SPOOL_CHUNK, SPOOL_WRITE_MAX);
	sp->error = str_new(128, SPOOL_ERROR_MAX);
	sp->req.data = sp;
	sp->cb = cb;
	sp->ctx = ctx;
	if (str_printf(path, "%s/%s", dir, name) < 0)
		str_clear(path);
	sp->path = xstrdup(str_c(path));
	str_free(&path);
	sp->op = OP_OPEN;
	r = uv_fs_open(loop, &sp->req, sp->path,
		       O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
		       0640, op_done);
	if (r < 0) {
		set_error(sp, "create", r);
		sp->op = OP_NONE;
	}
	return sp;
}

bool spool_busy(const struct spool *sp)
{
	return sp->op != OP_NONE;
}

int spool_write(struct spool *sp, struct str *buf, spool_cb *cb, void *ctx)
{
	sp->cb = cb;
	sp->ctx = ctx;
	if (str_set(sp->buf, str_c(buf), str_len(buf)) < 0)
		set_error(sp, "buffer", UV_ENOBUFS);
	str_clear(buf);
	sp->done = 0;
	if (str_len(sp->error) > 0 || sp->fd < 0 || str_len(sp->buf) == 0) {
		str_clear(sp->buf);
		return -1;
	}
	return start_write(sp);
}

int spool_close(struct spool *sp, spool_cb *cb, void *ctx)
{
	uv_file fd = sp->fd;
	int r;

	if (fd < 0)
		return -1;
	sp->cb = cb;
	sp->ctx = ctx;
	sp->fd = -1;
	sp->op = OP_CLOSE;
	r = uv_fs_close(sp->loop, &sp->req, fd, op_done);
	if (r < 0) {
		set_error(sp, "close", r);
		sp->op = OP_NONE;
		return -1;
	}
	return 0;
}

/* On the thread pool: fsync, close, rename, fsync the folder. */
static void commit_work(uv_work_t *w)
{
	struct spool *sp = w->data;
	int fd = sp->fd;
	bool renamed = false;

	sp->commit_errno = 0;
	if (fsync(fd) < 0) {
		sp->commit_errno = errno;
		sp->commit_step = "fsync";
	}
	if (close(fd) < 0 && sp->commit_errno == 0) {
		sp->commit_errno = errno;
		sp->commit_step = "close";
	}
	if (sp->commit_errno == 0) {
		if (rename(sp->path, sp->final_path) < 0) {
			sp->commit_errno = errno;
			sp->commit_step = "rename";
		} else {
			renamed = true;
		}
	}
	if (renamed && fsutil_sync_parent(sp->final_path, NULL) < 0) {
		sp->commit_errno = errno != 0 ? errno : EIO;
		sp->commit_step = "fsync folder of";
		/* Not durable: the client will be told so; take the file
		 * back so that a retry cannot double it. */
		if (rename(sp->final_path, sp->path) < 0)
			(void)unlink(sp->final_path);
	}
}

static void commit_done(uv_work_t *w, int status)
{
	struct spool *sp = w->data;

	sp->op = OP_NONE;
	sp->fd = -1;
	if (status < 0 && sp->commit_errno == 0) {
		sp->commit_errno = ECANCELED;
		sp->commit_step = "commit";
	}
	if (sp->commit_errno != 0) {
		if (str_len(sp->error) == 0)
			(void)str_setf(sp->error, "%s %s: %s", sp->commit_step,
				       strcmp(sp->commit_step, "rename") == 0 ||
				       strcmp(sp->commit_step, "fsync folder "
					      "of") == 0 ? sp->final_path :
				       sp->path, strerror(sp->commit_errno));
	} else {
		sp->created = false;	/* it is the queue's now */
	}
	if (sp->dropping) {
		teardown(sp);
		return;
	}
	if (sp->cb != NULL)
		sp->cb(sp->ctx);
}

int spool_commit(struct spool *sp, const char *final_path, spool_cb *cb,
		 void *ctx)
{
	if (sp->fd < 0 || str_len(sp->error) > 0)
		return -1;
	sp->cb = cb;
	sp->ctx = ctx;
	free(sp->final_path);
	sp->final_path = xstrdup(final_path);
	sp->work.data = sp;
	sp->op = OP_COMMIT;
	if (uv_queue_work(sp->loop, &sp->work, commit_work, commit_done) < 0) {
		sp->op = OP_NONE;
		set_error(sp, "commit", UV_EIO);
		return -1;
	}
	return 0;
}

const char *spool_error(const struct spool *sp)
{
	return str_len(sp->error) > 0 ? str_c(sp->error) : NULL;
}

const char *spool_path(const struct spool *sp)
{
	return sp->path;
}

uint64_t spool_size(const struct spool *sp)
{
	return sp->size;
}

void spool_free(struct spool **spp, bool remove_file)
{
	struct spool *sp = *spp;

	*spp = NULL;
	if (sp == NULL)
		return;
	sp->dropping = true;
	sp->remove = remove_file;
	sp->cb = NULL;
	if (sp->op == OP_NONE)
		teardown(sp);
}
