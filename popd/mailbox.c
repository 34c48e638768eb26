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
#include "storeclient.h"
#include "str.h"
#include "svc.h"
#include "xalloc.h"

#define FETCH_BATCH 1000
#define SET_RANGES_MAX 256	/* the store's bound per UID set */
#define SET_BYTES_MAX 8000	/* below its 8192 bytes */
#define BLOB_PATH_MAX 4096

#define MSG_DELETED 0x1
#define MSG_RETRIEVED 0x2
#define MSG_SEEN 0x4		/* \Seen in the store at login */

/* mailbox_open() takes the lock while it reads the snapshot (status,
 * then the snapshot cache or fetch). */
#define OPEN_LOCK 0x1
#define OPEN_SNAPSHOT 0x2

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
	bool have_status;	/* the fields below are known */
	uint32_t uidnext, exists;
	uint64_t modseq;	/* HIGHESTMODSEQ */
	struct mbox_msg *msgs;
	uint32_t n, cap;
	char *paths;
	size_t plen, pcap;
	unsigned pending;	/* store requests and file work in flight */
	unsigned opening;	/* OPEN_* steps of mailbox_open() left */
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

/* One step of mailbox_open() succeeded: the last one opens the mailbox.
 * (A failed step calls finish() at once, which clears cb.) */
static void open_step_done(struct mailbox *mb, unsigned step)
{
	mb->opening &= ~step;
	if (mb->opening == 0)
		finish(mb, MAILBOX_OK, NULL);
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

/* ---- the snapshot cache ----
 *
 * The message lists of INBOXes recently opened by this process, least
 * recently used first out, within pop3_snapshot_cache bytes.  An entry is
 * used only when the store's status of the INBOX is exactly the one it was
 * made with: UIDs only grow (UIDNEXT) and an expunge lowers the count
 * unless an append (UIDNEXT again) hides it, so equal UIDVALIDITY, UIDNEXT
 * and count mean the same messages, whose size and blob never change; an
 * equal HIGHESTMODSEQ also means unchanged \Seen flags.  A list is kept
 * only when it matches the status taken just before it was fetched
 * (count, every UID below UIDNEXT), so a delivery or an expunge between
 * the two never leaves a wrong list behind.
 */

struct snap {
	struct snap *prev, *next;	/* most recently used first */
	int64_t account;
	char *address;
	uint32_t uidvalidity, uidnext, exists;
	uint64_t modseq;
	struct mbox_msg *msgs;		/* flags: MSG_SEEN only */
	uint32_t n;
	char *paths;
	size_t plen;
	size_t bytes;			/* charged to the cache */
};

static struct snap *snap_head, *snap_tail;
static size_t snap_bytes;

static void snap_unlink(struct snap *e)
{
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		snap_head = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	else
		snap_tail = e->prev;
	e->prev = e->next = NULL;
	snap_bytes -= e->bytes;
}

static void snap_push(struct snap *e)
{
	e->next = snap_head;
	if (snap_head != NULL)
		snap_head->prev = e;
	else
		snap_tail = e;
	snap_head = e;
	snap_bytes += e->bytes;
}

static void snap_free(struct snap *e)
{
	free(e->address);
	free(e->msgs);
	free(e->paths);
	free(e);
}

/* Evicts until the cache holds at most max bytes. */
static void snap_trim(size_t max)
{
	while (snap_tail != NULL && snap_bytes > max) {
		struct snap *e = snap_tail;

		snap_unlink(e);
		snap_free(e);
	}
}

static struct snap *snap_find(const struct mailbox *mb)
{
	for (struct snap *e = snap_head; e != NULL; e = e->next) {
		if (e->account == mb->account &&
		    strcmp(e->address, mb->address) == 0)
			return e;
	}
	return NULL;
}

/* Takes the list from the cache when the status says it is current. */
static bool snap_get(struct mailbox *mb)
{
	struct snap *e;

	snap_trim(mb->pd->snapshot_cache);	/* it may have been lowered */
	if (mb->pd->snapshot_cache == 0 || !mb->have_status)
		return false;
	if ((e = snap_find(mb)) == NULL)
		return false;
	snap_unlink(e);
	if (e->uidvalidity != mb->uidvalidity || e->uidnext != mb->uidnext ||
	    e->exists != mb->exists || e->modseq != mb->modseq ||
	    e->n > mb->pd->messages_max) {
		snap_free(e);	/* out of date */
		return false;
	}
	snap_push(e);
	mb->msgs = xmalloc((e->n > 0 ? e->n : 1) * sizeof(*mb->msgs));
	if (e->n > 0)
		memcpy(mb->msgs, e->msgs, e->n * sizeof(*mb->msgs));
	mb->n = mb->cap = e->n;
	mb->paths = xmalloc(e->plen > 0 ? e->plen : 1);
	if (e->plen > 0)
		memcpy(mb->paths, e->paths, e->plen);
	mb->plen = mb->pcap = e->plen;
	return true;
}

/* Keeps a copy of the list just fetched, when it matches the status. */
static void snap_put(struct mailbox *mb)
{
	size_t max = mb->pd->snapshot_cache;
	struct snap *e;

	if (max == 0 || !mb->have_status || mb->n != mb->exists ||
	    (mb->n > 0 && mb->msgs[mb->n - 1].uid >= mb->uidnext))
		return;
	if ((e = snap_find(mb)) != NULL) {
		snap_unlink(e);
		snap_free(e);
	}
	e = xcalloc(1, sizeof(*e));
	e->bytes = sizeof(*e) + strlen(mb->address) + 1 +
		   mb->n * sizeof(*mb->msgs) + mb->plen;
	if (e->bytes > max) {
		free(e);
		return;
	}
	e->account = mb->account;
	e->address = xstrdup(mb->address);
	e->uidvalidity = mb->uidvalidity;
	e->uidnext = mb->uidnext;
	e->exists = mb->exists;
	e->modseq = mb->modseq;
	e->n = mb->n;
	e->msgs = xmalloc((mb->n > 0 ? mb->n : 1) * sizeof(*e->msgs));
	for (uint32_t i = 0; i < mb->n; i++) {
		e->msgs[i] = mb->msgs[i];
		e->msgs[i].flags &= MSG_SEEN;
	}
	e->plen = mb->plen;
	e->paths = xmalloc(mb->plen > 0 ? mb->plen : 1);
	if (mb->plen > 0)
		memcpy(e->paths, mb->paths, mb->plen);
	snap_trim(max - e->bytes);
	snap_push(e);
}

void mailbox_cache_clear(void)
{
	snap_trim(0);
}

/* ---- the snapshot ---- */

static void fetch_from(struct mailbox *mb, uint32_t first);

static int add_message(struct mailbox *mb, struct ipc_msg *f)
{
	const char *error, *blob;
	int64_t uid, size, flags;
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
	if (ipc_msg_get_int(f, "flags", &flags) < 0)
		flags = 0;
	mb->msgs[mb->n++] = (struct mbox_msg){ .uid = (uint32_t)uid,
		.flags = (flags & STORE_SEEN) ? MSG_SEEN : 0,
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
	snap_put(mb);
	open_step_done(mb, OPEN_SNAPSHOT);
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
	int64_t uv, next, exists, modseq;

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
	mb->have_status =
		ipc_msg_get_int(final, "uidnext", &next) == 0 &&
		ipc_msg_get_int(final, "exists", &exists) == 0 &&
		ipc_msg_get_int(final, "highestmodseq", &modseq) == 0 &&
		next >= 0 && next <= (int64_t)UINT32_MAX + 1 && exists >= 0 &&
		exists <= UINT32_MAX && modseq >= 0;
	if (mb->have_status) {
		/* UIDNEXT past the last UID is kept as 0: never matched. */
		mb->uidnext = next > UINT32_MAX ? 0 : (uint32_t)next;
		mb->exists = (uint32_t)exists;
		mb->modseq = (uint64_t)modseq;
	}
	if (snap_get(mb)) {
		log_debug(mb->id, "snapshot of <%s>: %u messages (cached)",
			  mb->address, mb->n);
		open_step_done(mb, OPEN_SNAPSHOT);
		return;
	}
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
	open_step_done(mb, OPEN_LOCK);
}

void mailbox_open(struct mailbox *mb, mailbox_cb *cb, void *ctx)
{
	struct lock_work *lw = xcalloc(1, sizeof(*lw));
	struct str *p = str_new(256, 8192);
	struct ipc_msg *m;

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
	mb->opening = OPEN_LOCK | OPEN_SNAPSHOT;
	if (uv_queue_work(svc_loop(mb->pd->svc), &lw->work, lock_work,
			  lock_done) < 0)
		log_panic(mb->id, "uv_queue_work failed");
	/* The snapshot is read while the lock is taken; it is dropped with
	 * the mailbox when the lock is refused. */
	m = request(mb, "status");
	send_request(mb, &m, STOREASYNC_IDEMPOTENT, status_done);
}

/* ---- UPDATE ---- */

/* true when message i is one uid_sets() is after. */
static bool uid_wanted(const struct mailbox *mb, uint32_t i, uint32_t want,
		       uint32_t skip)
{
	return (mb->msgs[i].flags & want) && !(mb->msgs[i].flags & skip);
}

/* UID sets of the messages with (flags & want) but none of skip, each
 * within the store's bounds; *count_r sets. */
static char **uid_sets(const struct mailbox *mb, uint32_t want, uint32_t skip,
		       size_t *count_r)
{
	char **sets = NULL;
	size_t nsets = 0;
	struct str *s = str_new(256, SET_BYTES_MAX + 32);
	unsigned ranges = 0;

	for (uint32_t i = 0; i < mb->n;) {
		uint32_t j = i;

		if (!uid_wanted(mb, i, want, skip)) {
			i++;
			continue;
		}
		/* A run of consecutive UIDs all selected. */
		while (j + 1 < mb->n && uid_wanted(mb, j + 1, want, skip) &&
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
	char **del = uid_sets(mb, MSG_DELETED, 0, &ndel);
	/* \Seen where it is not set yet (nor expunged anyway). */
	char **seen = uid_sets(mb, MSG_RETRIEVED, MSG_DELETED | MSG_SEEN,
			       &nseen);

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
