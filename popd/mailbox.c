/* mailbox.c: see mailbox.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "compat.h"
#include "ipc.h"
#include "log.h"
#include "mailbox.h"
#include "popd.h"
#include "storeasync.h"
#include "str.h"
#include "svc.h"
#include "xalloc.h"

#define FETCH_BATCH 1000
#define SET_RANGES_MAX 256	/* the store's bound per UID set */
#define SET_BYTES_MAX 8000	/* below its 8192 bytes */
#define BLOB_PATH_MAX 4096

#define MSG_DELETED 0x1
#define MSG_RETRIEVED 0x2

struct mbox_msg {
	uint32_t uid;
	uint32_t flags;		/* MSG_* */
	uint64_t size;
	size_t path;		/* offset in paths */
};

struct mailbox {
	struct popd *pd;
	char id[16];
	int64_t account;
	char *address;
	int lock_fd;
	uint32_t uidvalidity;
	struct mbox_msg *msgs;
	uint32_t n, cap;
	char *paths;
	size_t plen, pcap;
	unsigned pending;	/* store requests and file work in flight */
	bool freed;
	bool failed;		/* update: some request failed */
	const char *error;	/* the first failure, static text */
	mailbox_cb *cb;
	void *ctx;
};

struct lock_work {
	uv_work_t work;
	struct mailbox *mb;
	char *path;
	uint64_t delay_ms;
	int fd;
	int err;
	enum mailbox_status st;
};

static const struct ipc_field_spec spec_message[] = {
	{ "uid", IPC_INT, 1, 1, 0, 0 },
	{ "modseq", IPC_INT, 0, 1, 0, 0 },
	{ "flags", IPC_INT, 0, 1, 0, 0 },
	{ "keywords", IPC_STR, 0, 1, 0, 0 },
	{ "date", IPC_INT, 0, 1, 0, 0 },
	{ "size", IPC_INT, 1, 1, 0, 0 },
	{ "blob", IPC_STR, 1, 1, BLOB_PATH_MAX, IPC_SPEC_NO_NUL },
	{ "envelope", IPC_STR, 0, 1, 0, 0 },
	{ "bodystructure", IPC_STR, 0, 1, 0, 0 },
	{ NULL, IPC_INT, 0, 0, 0, 0 },
};

/* ---- life ---- */

struct mailbox *mailbox_new(struct popd *pd, const char *id,
			    int64_t account, const char *address)
{
	struct mailbox *mb = xcalloc(1, sizeof(*mb));

	mb->pd = pd;
	str_lcpy(mb->id, id, sizeof(mb->id));
	mb->account = account;
	mb->address = xstrdup(address);
	mb->lock_fd = -1;
	return mb;
}

static void close_done(uv_fs_t *req)
{
	uv_fs_req_cleanup(req);
	free(req);
}

/* Releases the lock (closing the file drops the flock). */
static void unlock(struct mailbox *mb)
{
	uv_fs_t *req;

	if (mb->lock_fd < 0)
		return;
	req = xmalloc(sizeof(*req));
	if (uv_fs_close(svc_loop(mb->pd->svc), req, mb->lock_fd,
			close_done) < 0) {
		close(mb->lock_fd);
		free(req);
	}
	mb->lock_fd = -1;
}

static void destroy(struct mailbox *mb)
{
	unlock(mb);
	free(mb->address);
	free(mb->msgs);
	free(mb->paths);
	free(mb);
}

void mailbox_free(struct mailbox **mbp)
{
	struct mailbox *mb = *mbp;

	if (mb == NULL)
		return;
	*mbp = NULL;
	mb->freed = true;
	mb->cb = NULL;
	if (mb->pending == 0)
		destroy(mb);
}

/* One request or work item is over: false when the mailbox was freed
 * meanwhile (and is gone now if this was the last one). */
static bool settle(struct mailbox *mb)
{
	mb->pending--;
	if (!mb->freed)
		return true;
	if (mb->pending == 0)
		destroy(mb);
	return false;
}

static void finish(struct mailbox *mb, enum mailbox_status st,
		   const char *error)
{
	mailbox_cb *cb = mb->cb;

	mb->cb = NULL;
	if (cb != NULL)
		cb(st, error, mb->ctx);
}

/* ---- store requests ---- */

static struct ipc_msg *request(struct mailbox *mb, const char *type)
{
	struct ipc_msg *m = ipc_msg_new(type);

	ipc_msg_add_int(m, "account", mb->account);
	ipc_msg_add_cstr(m, "address", mb->address);
	ipc_msg_add_cstr(m, "folder", "INBOX");
	return m;
}

static void send_request(struct mailbox *mb, struct ipc_msg **m,
			 unsigned flags, storeasync_done_cb *cb)
{
	mb->pending++;
	storeasync_request(mb->pd->store, m, flags, cb, mb);
}

static void log_store_failure(struct mailbox *mb, const char *what,
			      enum storeasync_status st, const char *code,
			      const char *error)
{
	log_warn(mb->id, "store %s for <%s> failed: %s%s%s: %s", what,
		 mb->address, storeasync_status_name(st),
		 code[0] != '\0' ? " " : "", code,
		 error != NULL ? error : "no message");
}

/* ---- the snapshot ---- */

static void fetch_from(struct mailbox *mb, uint32_t first);

static int add_message(struct mailbox *mb, struct ipc_msg *f)
{
	const char *error, *blob;
	int64_t uid, size;
	size_t len;

	if (ipc_msg_check(f, spec_message, &error) < 0) {
		log_warn(mb->id, "bad message frame from the store: %s",
			 error);
		return -1;
	}
	if (ipc_msg_get_int(f, "uid", &uid) < 0 ||
	    ipc_msg_get_int(f, "size", &size) < 0 ||
	    ipc_msg_get_str(f, "blob", &blob, &len) < 0 || uid < 1 ||
	    uid > UINT32_MAX || size < 0 || blob[0] != '/') {
		log_warn(mb->id, "bad message frame from the store: bad "
			 "uid, size or blob");
		return -1;
	}
	if (mb->n == mb->cap) {
		mb->cap = mb->cap == 0 ? 64 : mb->cap * 2;
		mb->msgs = xrealloc(mb->msgs, mb->cap * sizeof(*mb->msgs));
	}
	if (mb->plen + len + 1 > mb->pcap) {
		while (mb->plen + len + 1 > mb->pcap)
			mb->pcap = mb->pcap == 0 ? 8192 : mb->pcap * 2;
		mb->paths = xrealloc(mb->paths, mb->pcap);
	}
	memcpy(mb->paths + mb->plen, blob, len + 1);
	mb->msgs[mb->n++] = (struct mbox_msg){ .uid = (uint32_t)uid,
		.size = (uint64_t)size, .path = mb->plen };
	mb->plen += len + 1;
	return 0;
}

static void fetch_done(enum storeasync_status st,
		       struct ipc_msg *const *frames, size_t nframes,
		       const struct ipc_msg *final, const char *code,
		       const char *error, void *ctx)
{
	struct mailbox *mb = ctx;
	int64_t next = 0;

	if (!settle(mb))
		return;
	if (st != STOREASYNC_OK) {
		log_store_failure(mb, "fetch", st, code, error);
		finish(mb, MAILBOX_TEMPFAIL, "the store is not available");
		return;
	}
	for (size_t i = 0; i < nframes; i++) {
		if (!ipc_msg_type_is(frames[i], "message"))
			continue;
		if (mb->n >= mb->pd->messages_max) {
			log_info(mb->id, "INBOX of <%s> has more than %u "
				 "messages: listing the first %u", mb->address,
				 mb->pd->messages_max, mb->pd->messages_max);
			next = 0;
			goto done;
		}
		if (add_message(mb, frames[i]) < 0) {
			finish(mb, MAILBOX_TEMPFAIL, "bad answer of the store");
			return;
		}
	}
	if (ipc_msg_get_int(final, "next", &next) < 0 || next < 0 ||
	    next > UINT32_MAX)
		next = 0;
	if (next != 0 && mb->n > 0 && next <= mb->msgs[mb->n - 1].uid)
		next = 0;	/* no progress: do not loop */
done:
	if (next != 0) {
		fetch_from(mb, (uint32_t)next);
		return;
	}
	log_debug(mb->id, "snapshot of <%s>: %u messages", mb->address,
		  mb->n);
	finish(mb, MAILBOX_OK, NULL);
}

static void fetch_from(struct mailbox *mb, uint32_t first)
{
	struct ipc_msg *m = request(mb, "fetch");

	ipc_msg_add_int(m, "first", first);
	ipc_msg_add_int(m, "limit", FETCH_BATCH);
	send_request(mb, &m, STOREASYNC_IDEMPOTENT, fetch_done);
}

static void status_done(enum storeasync_status st,
			struct ipc_msg *const *frames, size_t nframes,
			const struct ipc_msg *final, const char *code,
			const char *error, void *ctx)
{
	struct mailbox *mb = ctx;
	int64_t uv;

	if (!settle(mb))
		return;
	if (st != STOREASYNC_OK) {
		log_store_failure(mb, "status", st, code, error);
		finish(mb, MAILBOX_TEMPFAIL, "the store is not available");
		return;
	}
	if (ipc_msg_get_int(final, "uidvalidity", &uv) < 0 || uv < 0 ||
	    uv > UINT32_MAX) {
		finish(mb, MAILBOX_TEMPFAIL, "bad answer of the store");
		return;
	}
	mb->uidvalidity = (uint32_t)uv;
	fetch_from(mb, 1);
}

/* ---- the lock ---- */

static void lock_work(uv_work_t *w)
{
	struct lock_work *lw = w->data;
	bool created = true;
	struct stat st;
	struct timespec now;
	int fd;

	fd = open(lw->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (fd < 0 && errno == EEXIST) {
		created = false;
		fd = open(lw->path, O_RDWR | O_CLOEXEC);
	}
	if (fd < 0) {
		lw->err = errno;
		lw->st = MAILBOX_TEMPFAIL;
		return;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		lw->err = errno;
		lw->st = errno == EWOULDBLOCK ? MAILBOX_INUSE :
						MAILBOX_TEMPFAIL;
		close(fd);
		return;
	}
	if (!created && lw->delay_ms > 0 && fstat(fd, &st) == 0 &&
	    clock_gettime(CLOCK_REALTIME, &now) == 0) {
		int64_t ms = ((int64_t)now.tv_sec - st.st_mtim.tv_sec) * 1000 +
			     (now.tv_nsec - st.st_mtim.tv_nsec) / 1000000;

		if (ms >= 0 && (uint64_t)ms < lw->delay_ms) {
			lw->st = MAILBOX_LOGIN_DELAY;
			close(fd);
			return;
		}
	}
	(void)futimens(fd, NULL);	/* the last login: now */
	lw->fd = fd;
	lw->st = MAILBOX_OK;
}

static void lock_done(uv_work_t *w, int status)
{
	struct lock_work *lw = w->data;
	struct mailbox *mb = lw->mb;
	enum mailbox_status st = status < 0 ? MAILBOX_TEMPFAIL : lw->st;
	struct ipc_msg *m;

	if (st == MAILBOX_TEMPFAIL)
		log_warn(mb->id, "lock %s: %s", lw->path,
			 lw->err != 0 ? strerror(lw->err) : "cancelled");
	mb->lock_fd = lw->fd;	/* destroy() closes it when freed */
	free(lw->path);
	free(lw);
	if (!settle(mb))
		return;
	if (st != MAILBOX_OK) {
		finish(mb, st, st == MAILBOX_TEMPFAIL ?
		       "cannot lock the mailbox" : NULL);
		return;
	}
	m = request(mb, "status");
	send_request(mb, &m, STOREASYNC_IDEMPOTENT, status_done);
}

void mailbox_open(struct mailbox *mb, mailbox_cb *cb, void *ctx)
{
	struct lock_work *lw = xcalloc(1, sizeof(*lw));
	struct str *p = str_new(256, 8192);

	mb->cb = cb;
	mb->ctx = ctx;
	if (str_printf(p, "%s/%lld.lock", mb->pd->lock_dir,
		       (long long)mb->account) < 0)
		str_clear(p);
	lw->path = xstrdup(str_c(p));
	str_free(&p);
	lw->mb = mb;
	lw->fd = -1;
	lw->delay_ms = mb->pd->login_delay_ms;
	lw->work.data = lw;
	mb->pending++;
	if (uv_queue_work(svc_loop(mb->pd->svc), &lw->work, lock_work,
			  lock_done) < 0)
		log_panic(mb->id, "uv_queue_work failed");
}

/* ---- UPDATE ---- */

/* UID sets of the messages with (flags & want), each within the store's
 * bounds; *count_r sets. */
static char **uid_sets(const struct mailbox *mb, uint32_t want, bool not_del,
		       size_t *count_r)
{
	char **sets = NULL;
	size_t nsets = 0;
	struct str *s = str_new(256, SET_BYTES_MAX + 32);
	unsigned ranges = 0;

	for (uint32_t i = 0; i < mb->n;) {
		uint32_t j = i;

		if (!(mb->msgs[i].flags & want) ||
		    (not_del && (mb->msgs[i].flags & MSG_DELETED))) {
			i++;
			continue;
		}
		/* A run of consecutive UIDs all selected. */
		while (j + 1 < mb->n && (mb->msgs[j + 1].flags & want) &&
		       !(not_del && (mb->msgs[j + 1].flags & MSG_DELETED)) &&
		       mb->msgs[j + 1].uid == mb->msgs[j].uid + 1)
			j++;
		if (ranges == SET_RANGES_MAX ||
		    str_len(s) > SET_BYTES_MAX - 24) {
			sets = xrealloc(sets, (nsets + 1) * sizeof(*sets));
			sets[nsets++] = xstrdup(str_c(s));
			str_clear(s);
			ranges = 0;
		}
		if ((ranges > 0 && str_append_byte(s, ',') < 0) ||
		    (i == j ? str_printf(s, "%u", mb->msgs[i].uid) :
			      str_printf(s, "%u:%u", mb->msgs[i].uid,
					 mb->msgs[j].uid)) < 0)
			log_panic(mb->id, "UID set overflow");
		ranges++;
		i = j + 1;
	}
	if (ranges > 0) {
		sets = xrealloc(sets, (nsets + 1) * sizeof(*sets));
		sets[nsets++] = xstrdup(str_c(s));
	}
	str_free(&s);
	*count_r = nsets;
	return sets;
}

static void free_sets(char **sets, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(sets[i]);
	free(sets);
}

static void update_step_done(struct mailbox *mb, const char *what,
			     enum storeasync_status st, const char *code,
			     const char *error);

static void expunge_done(enum storeasync_status st,
			 struct ipc_msg *const *frames, size_t nframes,
			 const struct ipc_msg *final, const char *code,
			 const char *error, void *ctx)
{
	struct mailbox *mb = ctx;

	if (settle(mb))
		update_step_done(mb, "expunge", st, code, error);
}

static void seen_done(enum storeasync_status st,
		      struct ipc_msg *const *frames, size_t nframes,
		      const struct ipc_msg *final, const char *code,
		      const char *error, void *ctx)
{
	struct mailbox *mb = ctx;

	if (!settle(mb))
		return;
	/* \Seen is a courtesy: a failure does not fail the UPDATE. */
	if (st != STOREASYNC_OK)
		log_store_failure(mb, "+\\Seen", st, code, error);
	update_step_done(mb, NULL, STOREASYNC_OK, "", NULL);
}

static void send_store(struct mailbox *mb, const char *set, int flags,
		       storeasync_done_cb *cb)
{
	struct ipc_msg *m = request(mb, "store");

	ipc_msg_add_cstr(m, "uids", set);
	ipc_msg_add_cstr(m, "mode", "+");
	ipc_msg_add_int(m, "flags", flags);
	send_request(mb, &m, STOREASYNC_IDEMPOTENT, cb);
}

/* \Deleted was set on one set: expunge those UIDs now (the same set). */
struct set_ctx {
	struct mailbox *mb;
	char *set;
};

static void deleted_done(enum storeasync_status st,
			 struct ipc_msg *const *frames, size_t nframes,
			 const struct ipc_msg *final, const char *code,
			 const char *error, void *ctx)
{
	struct set_ctx *sc = ctx;
	struct mailbox *mb = sc->mb;
	struct ipc_msg *m;

	if (!settle(mb) || st != STOREASYNC_OK) {
		if (!mb->freed)
			update_step_done(mb, "+\\Deleted", st, code, error);
		free(sc->set);
		free(sc);
		return;
	}
	m = request(mb, "expunge");
	ipc_msg_add_cstr(m, "uids", sc->set);
	free(sc->set);
	free(sc);
	send_request(mb, &m, 0, expunge_done);
}

static void update_step_done(struct mailbox *mb, const char *what,
			     enum storeasync_status st, const char *code,
			     const char *error)
{
	if (st != STOREASYNC_OK) {
		log_store_failure(mb, what, st, code, error);
		mb->failed = true;
	}
	if (mb->pending > 0)
		return;
	finish(mb, mb->failed ? MAILBOX_TEMPFAIL : MAILBOX_OK,
	       mb->failed ? "some deleted messages not removed" : NULL);
}

bool mailbox_update(struct mailbox *mb, mailbox_cb *cb, void *ctx)
{
	size_t ndel, nseen;
	char **del = uid_sets(mb, MSG_DELETED, false, &ndel);
	char **seen = uid_sets(mb, MSG_RETRIEVED, true, &nseen);

	mb->cb = cb;
	mb->ctx = ctx;
	mb->failed = false;
	for (size_t i = 0; i < ndel; i++) {
		struct set_ctx *sc = xmalloc(sizeof(*sc));
		struct ipc_msg *m = request(mb, "store");

		sc->mb = mb;
		sc->set = xstrdup(del[i]);
		ipc_msg_add_cstr(m, "uids", del[i]);
		ipc_msg_add_cstr(m, "mode", "+");
		ipc_msg_add_int(m, "flags", 8);	/* \Deleted */
		mb->pending++;
		storeasync_request(mb->pd->store, &m, STOREASYNC_IDEMPOTENT,
				   deleted_done, sc);
	}
	for (size_t i = 0; i < nseen; i++)
		send_store(mb, seen[i], 1, seen_done);	/* \Seen */
	free_sets(del, ndel);
	free_sets(seen, nseen);
	return ndel + nseen > 0;
}

/* ---- the snapshot to the session ---- */

uint32_t mailbox_count(const struct mailbox *mb)
{
	return mb->n;
}

void mailbox_stat(const struct mailbox *mb, uint32_t *count_r,
		  uint64_t *size_r)
{
	uint32_t c = 0;
	uint64_t s = 0;

	for (uint32_t i = 0; i < mb->n; i++) {
		if (!(mb->msgs[i].flags & MSG_DELETED)) {
			c++;
			s += mb->msgs[i].size;
		}
	}
	*count_r = c;
	*size_r = s;
}

bool mailbox_valid(const struct mailbox *mb, uint32_t n)
{
	return n >= 1 && n <= mb->n && !(mb->msgs[n - 1].flags & MSG_DELETED);
}

bool mailbox_deleted(const struct mailbox *mb, uint32_t n)
{
	return n >= 1 && n <= mb->n && (mb->msgs[n - 1].flags & MSG_DELETED);
}

uint64_t mailbox_size(const struct mailbox *mb, uint32_t n)
{
	return mb->msgs[n - 1].size;
}

const char *mailbox_path(const struct mailbox *mb, uint32_t n)
{
	return mb->paths + mb->msgs[n - 1].path;
}

void mailbox_uidl(const struct mailbox *mb, uint32_t n, char *uidl)
{
	snprintf(uidl, MAILBOX_UIDL_MAX, "%x.%x", mb->uidvalidity,
		 mb->msgs[n - 1].uid);
}

void mailbox_delete(struct mailbox *mb, uint32_t n)
{
	mb->msgs[n - 1].flags |= MSG_DELETED;
}

void mailbox_retrieved(struct mailbox *mb, uint32_t n)
{
	mb->msgs[n - 1].flags |= MSG_RETRIEVED;
}

void mailbox_undelete_all(struct mailbox *mb)
{
	for (uint32_t i = 0; i < mb->n; i++)
		mb->msgs[i].flags &= ~(uint32_t)MSG_DELETED;
}
