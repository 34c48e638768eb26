/*
 * msgcmd.c: the message commands other than FETCH and STORE: APPEND
 * (UIDPLUS APPENDUID), CLOSE, UNSELECT, EXPUNGE and UID EXPUNGE, COPY and
 * MOVE (UIDPLUS COPYUID), SEARCH (ESEARCH, SEARCHRES, CONDSTORE), SORT and
 * THREAD.
 *
 * SEARCH, SORT and THREAD walk the folder's metadata in store batches and
 * decide per message (searchmsg.h); message files are opened only for keys
 * that need headers or bodies, and SORT and THREAD read each message's
 * header for their keys (sortthread.h).
 *
 * APPEND writes the literal into the store's spool folder and hands the
 * file over with the append request: the OK comes after the store
 * committed it (fsynced and renamed into place).
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "commands.h"
#include "imapcmd.h"
#include "imapd.h"
#include "hdrcache.h"
#include "imapsearch.h"
#include "imaptypes.h"
#include "ipc.h"
#include "log.h"
#include "mbox.h"
#include "msgbody.h"
#include "searchmsg.h"
#include "session.h"
#include "sortthread.h"
#include "storeasync.h"
#include "storeclient.h"
#include "str.h"
#include "xalloc.h"

#define SCAN_BATCH 1000

/* ---- APPEND ---- */

struct append_op {
	const struct imap_append *a;
	size_t next;		/* the next message of a MULTIAPPEND */
	uint32_t uidvalidity;
	struct imap_seqset *uids;
};

static void append_op_free(void *ctx)
{
	struct append_op *op = ctx;

	imap_seqset_free(&op->uids);
	free(op);
}

static void append_next(struct session *s, struct append_op *op);

static void append_answer(struct session *s, enum storeasync_status st,
			  struct ipc_msg *const *frames, size_t nframes,
			  const struct ipc_msg *final, const char *code,
			  const char *error, void *ctx)
{
	struct append_op *op = ctx;
	int64_t uid = 0, uidvalidity = 0;
	struct str *text;

	if (st == STOREASYNC_ERROR) {
		append_op_free(op);
		if (strcmp(code, "nofolder") == 0)
			cmd_done(s, false, "NO", "[TRYCREATE] No such folder");
		else if (strcmp(code, "overquota") == 0)
			cmd_done(s, false, "NO", "[OVERQUOTA] Quota exceeded");
		else
			cmd_done(s, false, "NO", "[CANNOT] %s",
				 error != NULL ? error : "APPEND failed");
		return;
	}
	if (st != STOREASYNC_OK) {
		append_op_free(op);
		cmd_tempfail(s, "append", error);
		return;
	}
	(void)!ipc_msg_get_int(final, "uid", &uid);
	(void)!ipc_msg_get_int(final, "uidvalidity", &uidvalidity);
	op->uidvalidity = (uint32_t)uidvalidity;
	imap_seqset_add(op->uids, (uint32_t)uid, (uint32_t)uid);
	if (s->mb != NULL && strcmp(s->mb->name, op->a->mailbox) == 0)
		s->mb->new_pending = true;
	mbox_broadcast_new(s, s->account, op->a->mailbox);
	log_info(s->id, "append: user=<%s>, folder=%s, uid=%lld", s->user,
		 op->a->mailbox, (long long)uid);
	if (++op->next < op->a->nmsgs) {
		append_next(s, op);
		return;
	}
	text = str_new(64, 8192);
	imap_seqset_resolve(op->uids, 0);
	if (imap_seqset_format(op->uids, text) < 0)
		str_clear(text);
	cmd_done(s, false, "OK", "[APPENDUID %u %s] APPEND completed",
		 op->uidvalidity, str_c(text));
	str_free(&text);
	append_op_free(op);
}

/* Writes data to a new spool file: its path in path, 0; -1 after a log
 * line. */
static int spool_write(struct session *s, const char *data, size_t size,
		       struct str *path)
{
	const char *error;
	int fd;
	size_t done = 0;

	if (store_spool_create(s->d->store_dir, path, &fd, &error) < 0) {
		log_warn(s->id, "append: %s", error);
		return -1;
	}
	while (done < size) {
		ssize_t r = write(fd, data + done, size - done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			log_warn(s->id, "append: write %s: %s", str_c(path),
				 strerror(errno));
			close(fd);
			unlink(str_c(path));
			return -1;
		}
		done += (size_t)r;
	}
	if (close(fd) < 0) {
		log_warn(s->id, "append: close %s: %s", str_c(path),
			 strerror(errno));
		unlink(str_c(path));
		return -1;
	}
	return 0;
}

static void append_next(struct session *s, struct append_op *op)
{
	const struct imap_append_msg *m = &op->a->msgs[op->next];
	const char *error, **keywords;
	struct str *path = str_new(256, 4096);
	struct ipc_msg *req;
	unsigned flags;
	size_t nkw;

	if (mbox_flags_parse(m->flags, m->nflags, &flags, &keywords, &nkw,
			     &error) < 0) {
		str_free(&path);
		append_op_free(op);
		cmd_error(s, "BAD", error);
		return;
	}
	if (m->size == 0) {
		free(keywords);
		str_free(&path);
		append_op_free(op);
		cmd_done(s, false, "NO", "[CANNOT] Empty message");
		return;
	}
	if (spool_write(s, m->data, m->size, path) < 0) {
		free(keywords);
		str_free(&path);
		append_op_free(op);
		cmd_done(s, false, "NO", "[UNAVAILABLE] Cannot write the "
			 "message, try again later");
		return;
	}
	req = store_req(s, "append", op->a->mailbox);
	ipc_msg_add_cstr(req, "file", str_c(path));
	ipc_msg_add_int(req, "date", m->date_set ? (int64_t)m->date :
						   (int64_t)time(NULL));
	ipc_msg_add_int(req, "flags", flags);
	for (size_t k = 0; k < nkw; k++)
		ipc_msg_add_cstr(req, "keyword", keywords[k]);
	ipc_msg_add_int(req, "quota", s->quota > 0 ? (int64_t)s->quota : 0);
	free(keywords);
	str_free(&path);
	store_call(s, req, false, append_answer, op, append_op_free);
}

void cmd_append(struct session *s, struct imap_cmd *cmd)
{
	const struct imap_append *a;
	const char *error;
	struct append_op *op;

	if (imap_cmd_append(cmd, s->utf8, &a, &error) < 0) {
		cmd_error(s, "BAD", error);
		return;
	}
	op = xcalloc(1, sizeof(*op));
	op->a = a;
	op->uids = imap_seqset_new();
	append_next(s, op);
}

/* ---- EXPUNGE, CLOSE, UNSELECT ---- */

/* Removes the UIDs of the answer's frames of type ("expunged", or
 * "copied" of a MOVE: their source UIDs) from the view, reporting them
 * unless silent, and tells the other sessions. */
static void apply_expunged(struct session *s, struct ipc_msg *const *frames,
			   size_t nframes, const char *type, bool silent)
{
	struct imap_seqset *vanished = imap_seqset_new();
	bool any = false;
	int64_t uid;

	for (size_t f = 0; f < nframes; f++) {
		if (strcmp(ipc_msg_type(frames[f]), type) != 0)
			continue;
		for (unsigned n = 0; ipc_msg_get_int_nth(frames[f], "uid", n,
							 &uid) == 0;
		     n++) {
			long k = mbox_find_uid(s->mb, (uint32_t)uid);

			mbox_broadcast_expunge(s, s->account, s->mb->name,
					       (uint32_t)uid);
			if (k < 0)
				continue;
			if (!silent && !s->qresync)
				out_printf(s, "* %ld EXPUNGE\r\n", k + 1);
			imap_seqset_add(vanished, (uint32_t)uid,
					(uint32_t)uid);
			any = true;
			mbox_remove(s->mb, (size_t)k);
		}
	}
	if (any && !silent && s->qresync) {
		struct str *text = str_new(256, 4 << 20);

		imap_seqset_resolve(vanished, 0);
		if (imap_seqset_format(vanished, text) == 0)
			out_printf(s, "* VANISHED %s\r\n", str_c(text));
		str_free(&text);
	}
	imap_seqset_free(&vanished);
}

struct expunge_op {
	bool closing;		/* CLOSE: silent, then leave the folder */
	char **sets;		/* UID EXPUNGE: store-sized UID sets */
	size_t nsets, next;
};

static void expunge_op_free(void *ctx)
{
	struct expunge_op *op = ctx;

	mbox_uidsets_free(op->sets, op->nsets);
	free(op);
}

static void expunge_next(struct session *s, struct expunge_op *op);

static void expunge_answer(struct session *s, enum storeasync_status st,
			   struct ipc_msg *const *frames, size_t nframes,
			   const struct ipc_msg *final, const char *code,
			   const char *error, void *ctx)
{
	struct expunge_op *op = ctx;
	bool closing = op->closing;
	int64_t hms;

	if (st != STOREASYNC_OK || s->mb == NULL) {
		expunge_op_free(op);
		cmd_tempfail(s, "expunge", error != NULL ? error : code);
		return;
	}
	apply_expunged(s, frames, nframes, "expunged", closing);
	if (ipc_msg_get_int(final, "highestmodseq", &hms) == 0 && hms > 0 &&
	    (uint64_t)hms > s->mb->highestmodseq)
		s->mb->highestmodseq = (uint64_t)hms;
	if (++op->next < op->nsets) {
		expunge_next(s, op);
		return;
	}
	expunge_op_free(op);
	if (closing) {
		mbox_close(s);
		cmd_done(s, false, "OK", "CLOSE completed");
	} else if (s->condstore) {
		cmd_done(s, true, "OK", "[HIGHESTMODSEQ %llu] EXPUNGE "
			 "completed",
			 (unsigned long long)s->mb->highestmodseq);
	} else {
		cmd_done(s, true, "OK", "EXPUNGE completed");
	}
}

static void expunge_next(struct session *s, struct expunge_op *op)
{
	struct ipc_msg *req = store_req(s, "expunge", s->mb->name);

	if (op->nsets > 0)
		ipc_msg_add_cstr(req, "uids", op->sets[op->next]);
	store_call(s, req, false, expunge_answer, op, expunge_op_free);
}

void cmd_expunge(struct session *s, struct imap_cmd *cmd)
{
	struct expunge_op *op;

	if (s->mb->readonly) {
		cmd_done(s, false, "NO", "[READ-ONLY] Folder is read-only");
		return;
	}
	op = xcalloc(1, sizeof(*op));
	if (cmd->uid) {
		struct imap_seqset *set;
		const char *error;
		size_t *idx, n;

		if (cmd->nargs != 1 ||
		    imap_arg_seqset(cmd, &cmd->args[0], &set, &error) < 0 ||
		    mbox_resolve(s, set, true, &idx, &n, &error) < 0) {
			expunge_op_free(op);
			cmd_error(s, "BAD", "Expected a UID set");
			return;
		}
		op->sets = mbox_uidsets(s->mb, idx, n, &op->nsets);
		free(idx);
		if (op->nsets == 0) {
			expunge_op_free(op);
			cmd_done(s, true, "OK", "EXPUNGE completed");
			return;
		}
	} else if (cmd->nargs != 0) {
		expunge_op_free(op);
		cmd_error(s, "BAD", "EXPUNGE takes no arguments");
		return;
	}
	expunge_next(s, op);
}

void cmd_close(struct session *s, struct imap_cmd *cmd)
{
	if (strcmp(cmd->name, "UNSELECT") == 0 || s->mb->readonly) {
		mbox_close(s);
		cmd_done(s, false, "OK", "%s completed", cmd->name);
		return;
	}
	/* CLOSE: expunge without reporting, then leave. */
	{
		struct expunge_op *op = xcalloc(1, sizeof(*op));

		op->closing = true;
		expunge_next(s, op);
	}
}

/* ---- COPY, MOVE ---- */

struct copy_op {
	const char *to;
	bool move;
	char **sets;		/* store-sized UID sets */
	size_t nsets, next;
	struct imap_seqset *src, *dst;	/* COPYUID, over all sets */
	uint32_t uidvalidity;
	uint64_t count;
};

static void copy_op_free(void *ctx)
{
	struct copy_op *op = ctx;

	mbox_uidsets_free(op->sets, op->nsets);
	imap_seqset_free(&op->src);
	imap_seqset_free(&op->dst);
	free(op);
}

/* "COPYUID v src dst" text of the pairs in src and dst, or "". */
static void copyuid_text(struct imap_seqset *src, struct imap_seqset *dst,
			 uint32_t uidvalidity, struct str *out)
{
	struct str *a = str_new(256, 4 << 20), *b = str_new(256, 4 << 20);

	imap_seqset_resolve(src, 0);
	imap_seqset_resolve(dst, 0);
	if (imap_seqset_nranges(src) > 0 &&
	    imap_seqset_format(src, a) == 0 && imap_seqset_format(dst, b) == 0)
		(void)!str_printf(out, "COPYUID %u %s %s", uidvalidity,
				  str_c(a), str_c(b));
	str_free(&a);
	str_free(&b);
}

static void copy_next(struct session *s, struct copy_op *op);

static void copy_answer(struct session *s, enum storeasync_status st,
			struct ipc_msg *const *frames, size_t nframes,
			const struct ipc_msg *final, const char *code,
			const char *error, void *ctx)
{
	struct copy_op *op = ctx;
	struct imap_seqset *src, *dst;
	struct str *text;
	int64_t uidvalidity = 0, count = 0, uid, new_uid;

	if (st != STOREASYNC_OK || s->mb == NULL) {
		bool move = op->move;

		copy_op_free(op);
		/* Sets already done stay done (RFC 6851 allows a MOVE in
		 * parts); the client is told the command failed. */
		if (st == STOREASYNC_ERROR && strcmp(code, "notarget") == 0)
			cmd_done(s, false, "NO", "[TRYCREATE] No such folder");
		else if (st == STOREASYNC_ERROR &&
			 strcmp(code, "overquota") == 0)
			cmd_done(s, false, "NO", "[OVERQUOTA] Quota exceeded");
		else if (st == STOREASYNC_ERROR && strcmp(code, "invalid") == 0)
			cmd_done(s, false, "NO", "[CANNOT] %s",
				 error != NULL ? error : "Not possible");
		else
			cmd_tempfail(s, move ? "move" : "copy",
				     error != NULL ? error : code);
		return;
	}
	(void)!ipc_msg_get_int(final, "uidvalidity", &uidvalidity);
	(void)!ipc_msg_get_int(final, "count", &count);
	op->uidvalidity = (uint32_t)uidvalidity;
	op->count += (uint64_t)count;
	/* Source UIDs ascend, and the store gives target UIDs in that
	 * order: the two sets pair up in order. */
	src = op->move ? imap_seqset_new() : op->src;
	dst = op->move ? imap_seqset_new() : op->dst;
	for (size_t f = 0; f < nframes; f++) {
		for (unsigned n = 0;
		     ipc_msg_get_int_nth(frames[f], "uid", n, &uid) == 0 &&
		     ipc_msg_get_int_nth(frames[f], "new_uid", n,
					 &new_uid) == 0;
		     n++) {
			imap_seqset_add(src, (uint32_t)uid, (uint32_t)uid);
			imap_seqset_add(dst, (uint32_t)new_uid,
					(uint32_t)new_uid);
		}
	}
	if (strcmp(op->to, s->mb->name) == 0)
		s->mb->new_pending = true;
	mbox_broadcast_new(s, s->account, op->to);
	if (op->move) {
		/* Each part: its COPYUID, then its expunges. */
		text = str_new(256, 8 << 20);
		copyuid_text(src, dst, op->uidvalidity, text);
		if (str_len(text) > 0)
			out_printf(s, "* OK [%s] Moved\r\n", str_c(text));
		str_free(&text);
		imap_seqset_free(&src);
		imap_seqset_free(&dst);
		apply_expunged(s, frames, nframes, "copied", false);
	}
	if (++op->next < op->nsets) {
		copy_next(s, op);
		return;
	}
	if (op->move) {
		copy_op_free(op);
		cmd_done(s, true, "OK", "MOVE completed");
		return;
	}
	text = str_new(256, 8 << 20);
	copyuid_text(op->src, op->dst, op->uidvalidity, text);
	if (str_len(text) > 0)
		cmd_done(s, s->cmd->uid, "OK", "[%s] COPY completed",
			 str_c(text));
	else
		cmd_done(s, s->cmd->uid, "OK", "COPY completed");
	str_free(&text);
	copy_op_free(op);
}

static void copy_next(struct session *s, struct copy_op *op)
{
	struct ipc_msg *req = store_req(s, op->move ? "move" : "copy",
					s->mb->name);

	ipc_msg_add_cstr(req, "uids", op->sets[op->next]);
	ipc_msg_add_cstr(req, "to", op->to);
	store_call(s, req, false, copy_answer, op, copy_op_free);
}

void cmd_copy(struct session *s, struct imap_cmd *cmd)
{
	bool move = strcmp(cmd->name, "MOVE") == 0;
	const struct imap_copy *c;
	struct copy_op *op;
	const char *error;
	size_t *idx, n;

	if (imap_cmd_copy(cmd, s->utf8, &c, &error) < 0) {
		cmd_error(s, "BAD", error);
		return;
	}
	if (move && s->mb->readonly) {
		cmd_done(s, false, "NO", "[READ-ONLY] Folder is read-only");
		return;
	}
	if (mbox_resolve(s, c->set, cmd->uid, &idx, &n, &error) < 0) {
		cmd_error(s, "BAD", error);
		return;
	}
	op = xcalloc(1, sizeof(*op));
	op->to = c->mailbox;
	op->move = move;
	op->src = imap_seqset_new();
	op->dst = imap_seqset_new();
	op->sets = mbox_uidsets(s->mb, idx, n, &op->nsets);
	free(idx);
	if (op->nsets == 0) {
		copy_op_free(op);
		cmd_done(s, false, "OK", "%s completed, nothing matched",
			 cmd->name);
		return;
	}
	copy_next(s, op);
}

/* ---- the scan of SEARCH, SORT and THREAD ---- */

enum scan_kind { SCAN_SEARCH, SCAN_SORT, SCAN_THREAD };

struct scan {
	enum scan_kind kind;
	const struct imap_search *search;
	const struct imap_sort *sort;
	enum sortthread_algo algo;
	struct searchmsg *prog;
	uint32_t first;		/* the next store batch */
	size_t *hits, nhits;	/* view indexes of the matches */
	size_t hits_cap;
	struct sortthread_msg *keys;	/* SORT, THREAD: per hit */
	uint64_t max_modseq;
	bool failed;
	const char *error;
};

static void scan_free(void *ctx)
{
	struct scan *sc = ctx;

	if (sc->keys != NULL) {
		for (size_t i = 0; i < sc->nhits; i++)
			sortthread_msg_clear(&sc->keys[i]);
		free(sc->keys);
	}
	searchmsg_free(&sc->prog);
	free(sc->hits);
	free(sc);
}

struct opener {
	struct session *s;
	const char *blob;
	uint64_t size;
	bool header_only;	/* the header is all the keys look at */
	struct msgbody *msg;
	const char *error;
};

static struct msgbody *open_message(void *context, const char **error_r)
{
	struct opener *o = context;
	struct str *error;

	if (o->msg != NULL)
		return o->msg;
	if (o->header_only) {
		size_t len;
		const char *h = hdrcache_get(o->blob, o->size, &len);

		if (h != NULL) {
			o->msg = msgbody_from_memory(h, len, &o->s->d->mime);
			return o->msg;
		}
	}
	error = str_new(128, 1024);
	if (msgbody_open(o->blob, o->size, &o->s->d->mime, &o->msg,
			 error) < 0) {
		log_warn(o->s->id, "search: %s", str_c(error));
		o->msg = NULL;
		*error_r = "message file unreadable";
	}
	str_free(&error);
	return o->msg;
}

static void scan_result(struct session *s, struct scan *sc);
static void scan_next(struct session *s, struct scan *sc);

static void scan_hit(struct scan *sc, size_t i, uint64_t modseq)
{
	if (sc->nhits == sc->hits_cap) {
		sc->hits_cap = sc->hits_cap * 2 + 64;
		sc->hits = xrealloc(sc->hits,
				    sc->hits_cap * sizeof(*sc->hits));
	}
	sc->hits[sc->nhits++] = i;
	if (modseq > sc->max_modseq)
		sc->max_modseq = modseq;
}

/* One message of a batch: whether it matches, and its sort keys. */
static void scan_message(struct session *s, struct scan *sc, size_t i,
			 const struct ipc_msg *f)
{
	struct mbox_msg *msg = &s->mb->msgs[i];
	struct opener o = { .s = s };
	struct searchmsg_msg m;
	int64_t date = 0, size = 0;
	const char *error;
	int r;

	(void)!ipc_msg_get_int(f, "date", &date);
	(void)!ipc_msg_get_int(f, "size", &size);
	if (ipc_msg_get_cstr(f, "blob", &o.blob) < 0)
		return;
	o.size = (uint64_t)size;
	memset(&m, 0, sizeof(m));
	m.seq = (uint32_t)i + 1;
	m.uid = msg->uid;
	m.flags = msg->flags;
	m.keywords = mbox_keywords(s->mb, i);
	m.internal_date = (time_t)date;
	m.size = (uint64_t)size;
	m.modseq = msg->modseq;
	m.open = open_message;
	m.open_context = &o;
	o.header_only = !searchmsg_needs_body(sc->prog);
	r = searchmsg_match(sc->prog, &m, &error);
	if (r < 0) {
		sc->failed = true;
	} else if (r > 0) {
		if (sc->kind != SCAN_SEARCH) {
			sc->keys = xrealloc(sc->keys, (sc->nhits + 1) *
							      sizeof(*sc->keys));
			memset(&sc->keys[sc->nhits], 0, sizeof(*sc->keys));
			if (open_message(&o, &error) != NULL)
				sortthread_msg_fill(&sc->keys[sc->nhits],
						    msgbody_header(o.msg),
						    m.seq, m.uid, m.internal_date,
						    m.size);
			else
				sc->failed = true;
		}
		scan_hit(sc, i, msg->modseq);
	}
	msgbody_close(&o.msg);
}

/* A message matched on what the view holds (no store data needed). */
static void scan_view_message(struct session *s, struct scan *sc, size_t i)
{
	struct mbox_msg *msg = &s->mb->msgs[i];
	struct searchmsg_msg m;
	const char *error;

	memset(&m, 0, sizeof(m));
	m.seq = (uint32_t)i + 1;
	m.uid = msg->uid;
	m.flags = msg->flags;
	m.keywords = mbox_keywords(s->mb, i);
	m.modseq = msg->modseq;
	if (searchmsg_match(sc->prog, &m, &error) > 0)
		scan_hit(sc, i, msg->modseq);
}

static void scan_answer(struct session *s, enum storeasync_status st,
			struct ipc_msg *const *frames, size_t nframes,
			const struct ipc_msg *final, const char *code,
			const char *error, void *ctx)
{
	struct scan *sc = ctx;
	int64_t next = 0, uid;

	if (st != STOREASYNC_OK || s->mb == NULL) {
		scan_free(sc);
		cmd_tempfail(s, "search", error != NULL ? error : code);
		return;
	}
	for (size_t f = 0; f < nframes; f++) {
		long k;

		if (ipc_msg_get_int(frames[f], "uid", &uid) < 0)
			continue;
		k = mbox_find_uid(s->mb, (uint32_t)uid);
		if (k >= 0 && !s->mb->msgs[k].expunged)
			scan_message(s, sc, (size_t)k, frames[f]);
	}
	if (ipc_msg_get_int(final, "next", &next) == 0 && next > 0 &&
	    next <= UINT32_MAX) {
		sc->first = (uint32_t)next;
		scan_next(s, sc);
		return;
	}
	scan_result(s, sc);
}

static void scan_next(struct session *s, struct scan *sc)
{
	struct ipc_msg *req = store_req(s, "fetch", s->mb->name);

	ipc_msg_add_int(req, "first", sc->first);
	ipc_msg_add_int(req, "limit", SCAN_BATCH);
	store_call(s, req, true, scan_answer, sc, scan_free);
}

static void scan_start(struct session *s, struct scan *sc,
		       const struct imap_search *search)
{
	struct searchmsg_env env = {
		.max_seq = (uint32_t)s->mb->count,
		.max_uid = s->mb->count > 0 ?
				   s->mb->msgs[s->mb->count - 1].uid : 0,
		.saved = s->saved,
		.now = time(NULL),
		.tz_minutes = 0,
	};
	const char *error = "Invalid search";
	int r;

	sc->search = search;
	if (search->modseq)
		s->condstore = true;
	r = searchmsg_prepare(search, &env, &sc->prog, &error);
	if (r == SEARCHMSG_EBADCHARSET) {
		scan_free(sc);
		cmd_done(s, false, "NO", "[BADCHARSET (%s)] Unknown charset",
			 searchmsg_charsets());
		return;
	}
	if (r < 0) {
		scan_free(sc);
		cmd_error(s, "BAD", error);
		return;
	}
	if (s->mb->count == 0) {
		scan_result(s, sc);
		return;
	}
	if (sc->kind == SCAN_SEARCH && !searchmsg_needs_meta(sc->prog)) {
		/* Flags, keywords, UIDs and MODSEQs: the view has them. */
		for (size_t i = 0; i < s->mb->count; i++) {
			if (!s->mb->msgs[i].expunged)
				scan_view_message(s, sc, i);
		}
		scan_result(s, sc);
		return;
	}
	sc->first = 1;
	scan_next(s, sc);
}

/* ---- results ---- */

static void search_result(struct session *s, struct scan *sc)
{
	const struct imap_search *search = sc->search;
	bool uid = s->cmd->uid;
	unsigned ret = search->ret;
	struct imap_seqset *set;
	struct str *text;

	if (ret & IMAP_SEARCH_RET_SAVE) {
		imap_seqset_free(&s->saved);
		s->saved = imap_seqset_new();
		if (ret & (IMAP_SEARCH_RET_MIN | IMAP_SEARCH_RET_MAX) &&
		    !(ret & (IMAP_SEARCH_RET_ALL | IMAP_SEARCH_RET_COUNT))) {
			/* SAVE with MIN/MAX saves those only (RFC 5182). */
			if (sc->nhits > 0 && (ret & IMAP_SEARCH_RET_MIN)) {
				uint32_t u = s->mb->msgs[sc->hits[0]].uid;

				imap_seqset_add(s->saved, u, u);
			}
			if (sc->nhits > 0 && (ret & IMAP_SEARCH_RET_MAX)) {
				uint32_t u = s->mb->msgs[sc->hits[sc->nhits -
								   1]].uid;

				imap_seqset_add(s->saved, u, u);
			}
		} else {
			for (size_t k = 0; k < sc->nhits; k++) {
				uint32_t u = s->mb->msgs[sc->hits[k]].uid;

				imap_seqset_add(s->saved, u, u);
			}
		}
		imap_seqset_resolve(s->saved, 0);
	}
	if (!search->esearch && !s->rev2) {
		out_printf(s, "* SEARCH");
		for (size_t k = 0; k < sc->nhits; k++)
			out_printf(s, " %u", uid ? s->mb->msgs[sc->hits[k]].uid
						 : (uint32_t)sc->hits[k] + 1);
		if (search->modseq && sc->nhits > 0)
			out_printf(s, " (MODSEQ %llu)",
				   (unsigned long long)sc->max_modseq);
		out_printf(s, "\r\n");
		return;
	}
	if (!search->esearch)
		ret = IMAP_SEARCH_RET_ALL;
	if (ret == IMAP_SEARCH_RET_SAVE)
		return;	/* only saved: no ESEARCH response */
	out_printf(s, "* ESEARCH (TAG ");
	out_string(s, s->cmd->tag, strlen(s->cmd->tag));
	out_printf(s, ")%s", uid ? " UID" : "");
	if (sc->nhits > 0) {
		size_t first = sc->hits[0], last = sc->hits[sc->nhits - 1];

		if (ret & IMAP_SEARCH_RET_MIN)
			out_printf(s, " MIN %u", uid ? s->mb->msgs[first].uid :
						       (uint32_t)first + 1);
		if (ret & IMAP_SEARCH_RET_MAX)
			out_printf(s, " MAX %u", uid ? s->mb->msgs[last].uid :
						       (uint32_t)last + 1);
	}
	if (ret & IMAP_SEARCH_RET_COUNT)
		out_printf(s, " COUNT %zu", sc->nhits);
	if ((ret & IMAP_SEARCH_RET_ALL) && sc->nhits > 0) {
		set = imap_seqset_new();
		for (size_t k = 0; k < sc->nhits; k++) {
			uint32_t v = uid ? s->mb->msgs[sc->hits[k]].uid :
					   (uint32_t)sc->hits[k] + 1;

			imap_seqset_add(set, v, v);
		}
		imap_seqset_resolve(set, 0);
		text = str_new(256, 16 << 20);
		if (imap_seqset_format(set, text) == 0)
			out_printf(s, " ALL %s", str_c(text));
		str_free(&text);
		imap_seqset_free(&set);
	}
	if (search->modseq && sc->nhits > 0)
		out_printf(s, " MODSEQ %llu",
			   (unsigned long long)sc->max_modseq);
	out_printf(s, "\r\n");
}

static void sort_result(struct session *s, struct scan *sc)
{
	size_t *order = xcalloc(sc->nhits + 1, sizeof(*order));
	bool uid = s->cmd->uid;

	sortthread_sort(sc->keys, sc->nhits, sc->sort->criteria,
			sc->sort->ncriteria, order);
	out_printf(s, "* SORT");
	for (size_t k = 0; k < sc->nhits; k++) {
		size_t i = sc->hits[order[k]];

		out_printf(s, " %u", uid ? s->mb->msgs[i].uid :
					   (uint32_t)i + 1);
	}
	if (sc->sort->search.modseq && sc->nhits > 0)
		out_printf(s, " (MODSEQ %llu)",
			   (unsigned long long)sc->max_modseq);
	out_printf(s, "\r\n");
	free(order);
}

static void thread_result(struct session *s, struct scan *sc)
{
	struct sortthread_tree *tree = sortthread_thread(sc->keys, sc->nhits,
							 sc->algo);
	struct str *text = str_new(1024, 32 << 20);

	if (sortthread_format(tree, sc->keys, s->cmd->uid, text) < 0)
		sc->failed = true;
	out_printf(s, "* THREAD %s\r\n", str_c(text));
	str_free(&text);
	sortthread_tree_free(&tree);
}

static void scan_result(struct session *s, struct scan *sc)
{
	bool failed = sc->failed;
	const char *name = s->cmd->name;

	switch (sc->kind) {
	case SCAN_SEARCH:
		search_result(s, sc);
		break;
	case SCAN_SORT:
		sort_result(s, sc);
		break;
	case SCAN_THREAD:
		thread_result(s, sc);
		break;
	}
	scan_free(sc);
	if (failed)
		cmd_done(s, false, "NO", "%s: some messages could not be "
			 "read", name);
	else
		cmd_done(s, false, "OK", "%s completed", name);
}

void cmd_search(struct session *s, struct imap_cmd *cmd)
{
	const struct imap_search *search;
	const char *error;
	struct scan *sc;

	if (imap_cmd_search(cmd, &search, &error) < 0) {
		cmd_error(s, "BAD", error);
		return;
	}
	sc = xcalloc(1, sizeof(*sc));
	sc->kind = SCAN_SEARCH;
	scan_start(s, sc, search);
}

void cmd_sort(struct session *s, struct imap_cmd *cmd)
{
	const struct imap_sort *sort;
	const char *error;
	struct scan *sc;

	if (imap_cmd_sort(cmd, &sort, &error) < 0) {
		cmd_error(s, "BAD", error);
		return;
	}
	sc = xcalloc(1, sizeof(*sc));
	sc->kind = SCAN_SORT;
	sc->sort = sort;
	scan_start(s, sc, &sort->search);
}

void cmd_thread(struct session *s, struct imap_cmd *cmd)
{
	const struct imap_thread *th;
	const char *error;
	struct scan *sc;
	enum sortthread_algo algo;

	if (imap_cmd_thread(cmd, &th, &error) < 0) {
		cmd_error(s, "BAD", error);
		return;
	}
	if (sortthread_algo_parse(th->algorithm, &algo) < 0) {
		cmd_error(s, "BAD", "Unsupported threading algorithm");
		return;
	}
	sc = xcalloc(1, sizeof(*sc));
	sc->kind = SCAN_THREAD;
	sc->algo = algo;
	scan_start(s, sc, &th->search);
}
