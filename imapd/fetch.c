/*
 * fetch.c: FETCH and STORE (with CONDSTORE's CHANGEDSINCE, UNCHANGEDSINCE
 * and QRESYNC's VANISHED modifier).
 *
 * FETCH answers FLAGS, UID and MODSEQ from the session's view; everything
 * else needs the store's metadata (fetch batches by UID: internal date,
 * size, blob path, cached ENVELOPE and BODYSTRUCTURE) and, for body
 * sections, the blob itself, mapped read-only (msgbody.h).  A non-PEEK
 * body item first sets \Seen in the store (read-write folders), so the
 * FLAGS it reports are the new ones.  Responses go out one message at a
 * time; above the connection's high-water mark the command waits for
 * on_drain (s->resume) before the next message, so a client that does not
 * read costs at most one message part of buffer beyond the mark.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "compat.h"
#include "commands.h"
#include "imapcmd.h"
#include "imapd.h"
#include "imaptypes.h"
#include "ipc.h"
#include "log.h"
#include "mbox.h"
#include "mime.h"
#include "mime_imap.h"
#include "msgbody.h"
#include "session.h"
#include "storeasync.h"
#include "str.h"
#include "xalloc.h"

#define FETCH_BATCH 1000
#define META_ITEMS (IMAP_FETCH_INTERNALDATE | IMAP_FETCH_RFC822_SIZE |	\
		    IMAP_FETCH_ENVELOPE | IMAP_FETCH_BODY |		\
		    IMAP_FETCH_BODYSTRUCTURE | IMAP_FETCH_RFC822 |	\
		    IMAP_FETCH_RFC822_HEADER | IMAP_FETCH_RFC822_TEXT)

/* What the store said of one message. */
struct meta {
	uint32_t uid;
	int64_t date;
	uint64_t size;
	char *blob;
	char *envelope, *bodystructure;	/* NULL when not cached */
};

struct fetch_op {
	const struct imap_fetch *f;
	unsigned items;
	size_t *idx, n;		/* the messages, view indexes */
	size_t pos;		/* the next of idx to answer */
	struct meta *meta;	/* the batch, when metadata is needed */
	size_t nmeta, mpos;
	uint32_t next_uid;	/* the store batch continues here */
	bool need_meta;
	bool failed;		/* a message could not be read */
	bool bad;		/* a section is not allowed: BAD */
	const char *bad_text;
	bool unknown_cte;
	char **seen_sets;	/* \Seen to set first, in store-sized sets */
	size_t nseen_sets, seen_next;
};

static void meta_clear(struct fetch_op *op)
{
	for (size_t i = 0; i < op->nmeta; i++) {
		free(op->meta[i].blob);
		free(op->meta[i].envelope);
		free(op->meta[i].bodystructure);
	}
	free(op->meta);
	op->meta = NULL;
	op->nmeta = op->mpos = 0;
}

static void fetch_op_free(void *ctx)
{
	struct fetch_op *op = ctx;

	meta_clear(op);
	mbox_uidsets_free(op->seen_sets, op->nseen_sets);
	free(op->idx);
	free(op);
}

/* ---- one message ---- */

static void out_date(struct session *s, int64_t date)
{
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr",
					      "May", "Jun", "Jul", "Aug",
					      "Sep", "Oct", "Nov", "Dec" };
	time_t t = (time_t)date;
	struct tm tm;

	gmtime_r(&t, &tm);
	out_printf(s, "INTERNALDATE \"%2d-%s-%04d %02d:%02d:%02d +0000\"",
		   tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900,
		   tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Opens the blob once per message, when a body item needs it. */
static struct msgbody *open_body(struct session *s, struct fetch_op *op,
				 const struct meta *m, struct msgbody **mb)
{
	struct str *error;

	if (*mb != NULL)
		return *mb;
	error = str_new(128, 1024);
	if (msgbody_open(m->blob, m->size, &s->d->mime, mb, error) < 0) {
		log_warn(s->id, "fetch uid %u: %s", m->uid, str_c(error));
		op->failed = true;
		*mb = NULL;
	}
	str_free(&error);
	return *mb;
}

static void out_structure(struct session *s, struct fetch_op *op,
			  const struct meta *m, struct msgbody **mb,
			  bool extended)
{
	const char *cached = extended ? m->bodystructure : NULL;
	struct str *tmp;

	if (cached != NULL) {
		out_append(s, cached, strlen(cached));
		return;
	}
	if (open_body(s, op, m, mb) == NULL) {
		out_printf(s, "NIL");
		return;
	}
	tmp = str_new(1024, 16 << 20);
	if (mime_imap_bodystructure(msgbody_tree(*mb), extended, tmp) < 0)
		str_clear(tmp);
	out_append(s, str_c(tmp), str_len(tmp));
	str_free(&tmp);
}

static void out_envelope(struct session *s, struct fetch_op *op,
			 const struct meta *m, struct msgbody **mb)
{
	struct str *tmp;

	if (m->envelope != NULL) {
		out_append(s, m->envelope, strlen(m->envelope));
		return;
	}
	if (open_body(s, op, m, mb) == NULL) {
		out_printf(s, "NIL");
		return;
	}
	tmp = str_new(1024, 4 << 20);
	if (mime_imap_envelope(msgbody_tree(*mb), tmp) < 0)
		str_clear(tmp);
	out_append(s, str_c(tmp), str_len(tmp));
	str_free(&tmp);
}

/* One section item: its name, then its value. */
static void out_section(struct session *s, struct fetch_op *op,
			const struct meta *m, struct msgbody **mb,
			const struct imap_fetch_section *sec)
{
	struct msgbody_result res;
	struct str *tmp = str_new(256, 4096);
	const char *error;
	int r;

	if (imap_fetch_section_name(sec, tmp) < 0)
		str_clear(tmp);
	out_append(s, str_c(tmp), str_len(tmp));
	out_printf(s, " ");
	str_clear(tmp);
	if (open_body(s, op, m, mb) == NULL) {
		out_printf(s, sec->kind == IMAP_FETCH_KIND_BINARY_SIZE ?
			   "0" : "NIL");
		str_free(&tmp);
		return;
	}
	r = msgbody_fetch(*mb, sec, &res, &error);
	if (r == MSGBODY_EBADSECTION) {
		op->bad = true;
		op->bad_text = error;
	} else if (r == MSGBODY_EUNKNOWN_CTE) {
		op->unknown_cte = true;
	} else if (r != MSGBODY_OK && r != MSGBODY_ENOPART) {
		op->failed = true;
	}
	if (r != MSGBODY_OK && r != MSGBODY_ENOPART) {
		out_printf(s, sec->kind == IMAP_FETCH_KIND_BINARY_SIZE ?
			   "0" : "NIL");
		str_free(&tmp);
		return;
	}
	if (sec->kind == IMAP_FETCH_KIND_BINARY_SIZE) {
		out_printf(s, "%llu", (unsigned long long)res.size);
	} else if (res.missing) {
		out_printf(s, "NIL");
	} else {
		if (msgbody_literal_prefix(&res, sec->kind ==
					   IMAP_FETCH_KIND_BINARY, tmp) == 0)
			out_append(s, str_c(tmp), str_len(tmp));
		out_append(s, res.data, (size_t)res.size);
	}
	msgbody_result_free(&res);
	str_free(&tmp);
}

/* RFC822, RFC822.HEADER, RFC822.TEXT: the old names of BODY[], HEADER and
 * TEXT. */
static void out_rfc822(struct session *s, struct fetch_op *op,
		       const struct meta *m, struct msgbody **mb,
		       const char *name, enum imap_section_spec spec)
{
	struct imap_fetch_section sec;
	struct msgbody_result res;
	struct str *tmp = str_new(64, 256);
	const char *error;

	memset(&sec, 0, sizeof(sec));
	sec.kind = IMAP_FETCH_KIND_BODY;
	sec.spec = spec;
	out_printf(s, "%s ", name);
	if (open_body(s, op, m, mb) == NULL ||
	    msgbody_fetch(*mb, &sec, &res, &error) != MSGBODY_OK) {
		out_printf(s, "NIL");
		str_free(&tmp);
		return;
	}
	if (msgbody_literal_prefix(&res, false, tmp) == 0)
		out_append(s, str_c(tmp), str_len(tmp));
	out_append(s, res.data, (size_t)res.size);
	msgbody_result_free(&res);
	str_free(&tmp);
}

static void fetch_one(struct session *s, struct fetch_op *op, size_t i,
		      const struct meta *m)
{
	struct mbox_msg *msg = &s->mb->msgs[i];
	unsigned items = op->items;
	struct msgbody *mb = NULL;
	const char *sep = "";
	struct str *flags;

	out_printf(s, "* %zu FETCH (", i + 1);
	if (items & IMAP_FETCH_UID) {
		out_printf(s, "UID %u", msg->uid);
		sep = " ";
	}
	if (items & IMAP_FETCH_FLAGS) {
		flags = str_new(128, 8192);
		mbox_flags_format(flags, msg->flags, mbox_keywords(s->mb, i));
		out_printf(s, "%sFLAGS %s", sep, str_c(flags));
		str_free(&flags);
		sep = " ";
	}
	if (items & IMAP_FETCH_MODSEQ) {
		out_printf(s, "%sMODSEQ (%llu)", sep,
			   (unsigned long long)msg->modseq);
		sep = " ";
	}
	if (m != NULL) {
		if (items & IMAP_FETCH_INTERNALDATE) {
			out_printf(s, "%s", sep);
			out_date(s, m->date);
			sep = " ";
		}
		if (items & IMAP_FETCH_RFC822_SIZE) {
			out_printf(s, "%sRFC822.SIZE %llu", sep,
				   (unsigned long long)m->size);
			sep = " ";
		}
		if (items & IMAP_FETCH_ENVELOPE) {
			out_printf(s, "%sENVELOPE ", sep);
			out_envelope(s, op, m, &mb);
			sep = " ";
		}
		if (items & IMAP_FETCH_BODYSTRUCTURE) {
			out_printf(s, "%sBODYSTRUCTURE ", sep);
			out_structure(s, op, m, &mb, true);
			sep = " ";
		}
		if (items & IMAP_FETCH_BODY) {
			out_printf(s, "%sBODY ", sep);
			out_structure(s, op, m, &mb, false);
			sep = " ";
		}
		if (items & IMAP_FETCH_RFC822_HEADER) {
			out_printf(s, "%s", sep);
			out_rfc822(s, op, m, &mb, "RFC822.HEADER",
				   IMAP_SECTION_HEADER);
			sep = " ";
		}
		if (items & IMAP_FETCH_RFC822_TEXT) {
			out_printf(s, "%s", sep);
			out_rfc822(s, op, m, &mb, "RFC822.TEXT",
				   IMAP_SECTION_TEXT);
			sep = " ";
		}
		if (items & IMAP_FETCH_RFC822) {
			out_printf(s, "%s", sep);
			out_rfc822(s, op, m, &mb, "RFC822", IMAP_SECTION_ALL);
			sep = " ";
		}
		for (size_t k = 0; k < op->f->nsections; k++) {
			out_printf(s, "%s", sep);
			out_section(s, op, m, &mb, &op->f->sections[k]);
			sep = " ";
		}
	}
	out_printf(s, ")\r\n");
	msgbody_close(&mb);
}

/* ---- the loop ---- */

static void fetch_finish(struct session *s, struct fetch_op *op)
{
	bool uid = s->cmd->uid;

	if (op->bad) {
		const char *text = op->bad_text;

		fetch_op_free(op);
		cmd_error(s, "BAD", text != NULL ? text : "Invalid section");
		return;
	}
	if (op->unknown_cte) {
		fetch_op_free(op);
		cmd_done(s, uid, "NO", "[UNKNOWN-CTE] Unknown content "
			 "transfer encoding");
		return;
	}
	if (op->failed) {
		fetch_op_free(op);
		cmd_done(s, uid, "NO", "Some messages could not be read");
		return;
	}
	fetch_op_free(op);
	cmd_done(s, uid, "OK", "FETCH completed");
}

static void fetch_run(struct session *s);
static void fetch_batch(struct session *s, struct fetch_op *op);

static void fetch_resume(struct session *s)
{
	fetch_run(s);
}

/* Answers messages until the batch or the client's patience ends. */
static void fetch_run(struct session *s)
{
	struct fetch_op *op = s->resume_ctx;

	while (op->pos < op->n) {
		size_t i = op->idx[op->pos];
		const struct meta *m = NULL;

		if (op->need_meta) {
			uint32_t uid = s->mb->msgs[i].uid;

			while (op->mpos < op->nmeta &&
			       op->meta[op->mpos].uid < uid)
				op->mpos++;
			if (op->mpos >= op->nmeta) {
				if (op->next_uid == 0 ||
				    op->next_uid > uid) {
					/* Gone from the store: skip it. */
					op->pos++;
					continue;
				}
				fetch_batch(s, op);
				return;
			}
			if (op->meta[op->mpos].uid != uid) {
				op->pos++;
				continue;
			}
			m = &op->meta[op->mpos];
		}
		fetch_one(s, op, i, m);
		op->pos++;
		if (out_full(s)) {
			s->resume = fetch_resume;
			s->resume_free = fetch_op_free;
			out_flush(s);
			return;
		}
	}
	s->resume_ctx = NULL;
	fetch_finish(s, op);
}

static void batch_answer(struct session *s, enum storeasync_status st,
			 struct ipc_msg *const *frames, size_t nframes,
			 const struct ipc_msg *final, const char *code,
			 const char *error, void *ctx)
{
	struct fetch_op *op = ctx;
	int64_t next = 0;

	if (st != STOREASYNC_OK || s->mb == NULL) {
		fetch_op_free(op);
		s->resume_ctx = NULL;
		cmd_tempfail(s, "fetch", error != NULL ? error : code);
		return;
	}
	meta_clear(op);
	op->meta = xcalloc(nframes + 1, sizeof(*op->meta));
	for (size_t i = 0; i < nframes; i++) {
		struct meta *m = &op->meta[op->nmeta];
		const char *blob, *env = NULL, *bs = NULL;
		int64_t uid, date, size;

		if (ipc_msg_get_int(frames[i], "uid", &uid) < 0 ||
		    ipc_msg_get_int(frames[i], "date", &date) < 0 ||
		    ipc_msg_get_int(frames[i], "size", &size) < 0 ||
		    ipc_msg_get_cstr(frames[i], "blob", &blob) < 0 ||
		    uid <= 0 || uid > UINT32_MAX || size < 0)
			continue;
		(void)!ipc_msg_get_cstr(frames[i], "envelope", &env);
		(void)!ipc_msg_get_cstr(frames[i], "bodystructure", &bs);
		m->uid = (uint32_t)uid;
		m->date = date;
		m->size = (uint64_t)size;
		m->blob = xstrdup(blob);
		m->envelope = env != NULL ? xstrdup(env) : NULL;
		m->bodystructure = bs != NULL ? xstrdup(bs) : NULL;
		op->nmeta++;
	}
	op->next_uid = ipc_msg_get_int(final, "next", &next) == 0 &&
				       next > 0 && next <= UINT32_MAX ?
			       (uint32_t)next : 0;
	s->resume_ctx = op;
	fetch_run(s);
}

static void fetch_batch(struct session *s, struct fetch_op *op)
{
	uint32_t first = s->mb->msgs[op->idx[op->pos]].uid;
	uint32_t last = s->mb->msgs[op->idx[op->n - 1]].uid;
	struct ipc_msg *req = store_req(s, "fetch", s->mb->name);

	ipc_msg_add_int(req, "first", first);
	ipc_msg_add_int(req, "last", last);
	ipc_msg_add_int(req, "limit", FETCH_BATCH);
	s->resume_ctx = NULL;
	store_call(s, req, true, batch_answer, op, fetch_op_free);
}

static void fetch_start(struct session *s, struct fetch_op *op)
{
	if (op->n == 0) {
		fetch_op_free(op);
		cmd_done(s, s->cmd->uid, "OK", "FETCH completed");
		return;
	}
	if (op->need_meta) {
		op->next_uid = s->mb->msgs[op->idx[0]].uid;
		fetch_batch(s, op);
		return;
	}
	s->resume_ctx = op;
	fetch_run(s);
}

/* ---- \Seen for non-PEEK body items ---- */

static void seen_next(struct session *s, struct fetch_op *op);

static void seen_answer(struct session *s, enum storeasync_status st,
			struct ipc_msg *const *frames, size_t nframes,
			const struct ipc_msg *final, const char *code,
			const char *error, void *ctx)
{
	struct fetch_op *op = ctx;

	if (st != STOREASYNC_OK || s->mb == NULL) {
		fetch_op_free(op);
		cmd_tempfail(s, "setting \\Seen", error != NULL ? error : code);
		return;
	}
	for (size_t i = 0; i < nframes; i++)
		(void)mbox_apply_flags_frame(s, frames[i]);
	if (++op->seen_next < op->nseen_sets) {
		seen_next(s, op);
		return;
	}
	fetch_start(s, op);
}

static void seen_next(struct session *s, struct fetch_op *op)
{
	struct ipc_msg *req = store_req(s, "store", s->mb->name);

	ipc_msg_add_cstr(req, "uids", op->seen_sets[op->seen_next]);
	ipc_msg_add_cstr(req, "mode", "+");
	ipc_msg_add_int(req, "flags", MBOX_SEEN);
	store_call(s, req, false, seen_answer, op, fetch_op_free);
}

/* A body item without PEEK sets \Seen (read-write folders) before the
 * answers, which then carry the new FLAGS. */
static void fetch_seen_then_start(struct session *s, struct fetch_op *op)
{
	const struct imap_fetch *f = op->f;
	size_t *unseen, n = 0;

	if (!(f->sets_seen || (f->items & (IMAP_FETCH_RFC822 |
					   IMAP_FETCH_RFC822_TEXT))) ||
	    s->mb->readonly || op->n == 0) {
		fetch_start(s, op);
		return;
	}
	unseen = xcalloc(op->n, sizeof(*unseen));
	for (size_t k = 0; k < op->n; k++) {
		if ((s->mb->msgs[op->idx[k]].flags & MBOX_SEEN) == 0)
			unseen[n++] = op->idx[k];
	}
	op->items |= IMAP_FETCH_FLAGS;
	if (s->condstore)
		op->items |= IMAP_FETCH_MODSEQ;
	op->seen_sets = mbox_uidsets(s->mb, unseen, n, &op->nseen_sets);
	free(unseen);
	if (op->nseen_sets == 0) {
		fetch_start(s, op);
		return;
	}
	op->seen_next = 0;
	seen_next(s, op);
}

/* ---- VANISHED (EARLIER) for UID FETCH ... (CHANGEDSINCE n VANISHED) ---- */

static void vanished_answer(struct session *s, enum storeasync_status st,
			    struct ipc_msg *const *frames, size_t nframes,
			    const struct ipc_msg *final, const char *code,
			    const char *error, void *ctx)
{
	struct fetch_op *op = ctx;

	if (st != STOREASYNC_OK) {
		fetch_op_free(op);
		cmd_tempfail(s, "vanished", error != NULL ? error : code);
		return;
	}
	mbox_send_vanished(s, frames, nframes, op->f->set);
	fetch_seen_then_start(s, op);
}

void cmd_fetch(struct session *s, struct imap_cmd *cmd)
{
	const struct imap_fetch *f;
	struct fetch_op *op;
	const char *error;
	struct ipc_msg *req;

	if (imap_cmd_fetch(cmd, &f, &error) < 0) {
		cmd_error(s, "BAD", error);
		return;
	}
	if (f->vanished && (!cmd->uid || !s->qresync || !f->changedsince_set)) {
		cmd_error(s, "BAD", "VANISHED needs UID FETCH, QRESYNC and "
			  "CHANGEDSINCE");
		return;
	}
	op = xcalloc(1, sizeof(*op));
	op->f = f;
	op->items = f->items;
	if (mbox_resolve(s, f->set, cmd->uid, &op->idx, &op->n, &error) < 0) {
		fetch_op_free(op);
		cmd_error(s, "BAD", error);
		return;
	}
	if (cmd->uid)
		op->items |= IMAP_FETCH_UID;
	if (f->changedsince_set) {
		size_t k = 0;

		s->condstore = true;
		op->items |= IMAP_FETCH_MODSEQ;
		for (size_t j = 0; j < op->n; j++) {
			if (s->mb->msgs[op->idx[j]].modseq > f->changedsince)
				op->idx[k++] = op->idx[j];
		}
		op->n = k;
	}
	if (f->items & IMAP_FETCH_MODSEQ)
		s->condstore = true;
	if (s->condstore && (op->items & IMAP_FETCH_FLAGS))
		op->items |= IMAP_FETCH_MODSEQ;
	op->need_meta = (op->items & META_ITEMS) != 0 || f->nsections > 0;
	/* Expunged elsewhere, not announced: their data is gone. */
	if (f->vanished) {
		imap_seqset_resolve(f->set, s->mb->count > 0 ?
				    s->mb->msgs[s->mb->count - 1].uid : 0);
		req = store_req(s, "vanished", s->mb->name);
		ipc_msg_add_int(req, "since", (int64_t)f->changedsince);
		store_call(s, req, true, vanished_answer, op, fetch_op_free);
		return;
	}
	fetch_seen_then_start(s, op);
}

/* ---- STORE ---- */

struct store_op {
	const struct imap_store *st;
	size_t *idx, n;
	bool uid;
	unsigned flags;
	const char **keywords;
	size_t nkeywords;
	char **sets;		/* store-sized UID sets */
	size_t nsets, next;
	struct imap_seqset *failed;	/* UNCHANGEDSINCE refusals */
};

static void store_op_free(void *ctx)
{
	struct store_op *op = ctx;

	mbox_uidsets_free(op->sets, op->nsets);
	imap_seqset_free(&op->failed);
	free(op->keywords);
	free(op->idx);
	free(op);
}

static void store_next(struct session *s, struct store_op *op);

/* The answers of the last set are in: report and end. */
static void store_finish(struct session *s, struct store_op *op)
{
	bool any_failed = imap_seqset_nranges(op->failed) > 0;
	struct str *text;

	if (!op->st->silent) {
		for (size_t j = 0; j < op->n; j++) {
			size_t k = op->idx[j];

			if (k >= s->mb->count ||
			    (any_failed && imap_seqset_contains(
				     op->failed, op->uid ? s->mb->msgs[k].uid :
							   (uint32_t)k + 1)))
				continue;
			mbox_send_flags(s, k, op->uid);
		}
	}
	if (any_failed) {
		text = str_new(256, 1 << 20);
		imap_seqset_resolve(op->failed, 0);
		if (imap_seqset_format(op->failed, text) < 0)
			str_clear(text);
		store_op_free(op);
		cmd_done(s, false, "OK", "[MODIFIED %s] Conditional STORE "
			 "failed for some", str_c(text));
		str_free(&text);
		return;
	}
	store_op_free(op);
	cmd_done(s, s->cmd->uid, "OK", "STORE completed");
}

static void store_answer(struct session *s, enum storeasync_status st,
			 struct ipc_msg *const *frames, size_t nframes,
			 const struct ipc_msg *final, const char *code,
			 const char *error, void *ctx)
{
	struct store_op *op = ctx;

	if (st != STOREASYNC_OK || s->mb == NULL) {
		store_op_free(op);
		if (st == STOREASYNC_ERROR && strcmp(code, "invalid") == 0)
			cmd_done(s, false, "NO", "%s", error != NULL ? error :
				 "Invalid flags");
		else
			cmd_tempfail(s, "store", error != NULL ? error : code);
		return;
	}
	for (size_t i = 0; i < nframes; i++) {
		int64_t uid, modseq = 0;
		long k;

		if (strcmp(ipc_msg_type(frames[i]), "failed") == 0) {
			for (unsigned n = 0; ipc_msg_get_int_nth(
				     frames[i], "uid", n, &uid) == 0; n++) {
				k = mbox_find_uid(s->mb, (uint32_t)uid);
				if (k < 0)
					continue;
				imap_seqset_add(op->failed, op->uid ?
						(uint32_t)uid :
						(uint32_t)k + 1,
						op->uid ? (uint32_t)uid :
						(uint32_t)k + 1);
			}
			continue;
		}
		k = mbox_apply_flags_frame(s, frames[i]);
		if (k < 0)
			continue;
		(void)!ipc_msg_get_int(frames[i], "modseq", &modseq);
		if (op->st->silent && s->condstore)
			/* RFC 7162 3.2: MODSEQ even when silent. */
			out_printf(s, "* %ld FETCH (MODSEQ (%llu))\r\n", k + 1,
				   (unsigned long long)modseq);
	}
	if (++op->next < op->nsets) {
		store_next(s, op);
		return;
	}
	store_finish(s, op);
}

static void store_next(struct session *s, struct store_op *op)
{
	const struct imap_store *st = op->st;
	struct ipc_msg *req = store_req(s, "store", s->mb->name);

	ipc_msg_add_cstr(req, "uids", op->sets[op->next]);
	ipc_msg_add_cstr(req, "mode", st->op == IMAP_STORE_ADD ? "+" :
				      st->op == IMAP_STORE_REMOVE ? "-" : "=");
	ipc_msg_add_int(req, "flags", op->flags);
	for (size_t k = 0; k < op->nkeywords; k++)
		ipc_msg_add_cstr(req, "keyword", op->keywords[k]);
	if (st->unchangedsince_set)
		ipc_msg_add_int(req, "unchangedsince",
				(int64_t)st->unchangedsince);
	store_call(s, req, false, store_answer, op, store_op_free);
}

void cmd_store(struct session *s, struct imap_cmd *cmd)
{
	const struct imap_store *st;
	const char *error;
	struct store_op *op;

	if (imap_cmd_store(cmd, &st, &error) < 0) {
		cmd_error(s, "BAD", error);
		return;
	}
	if (s->mb->readonly) {
		cmd_done(s, false, "NO", "[READ-ONLY] Folder is read-only");
		return;
	}
	op = xcalloc(1, sizeof(*op));
	op->st = st;
	op->uid = cmd->uid;
	op->failed = imap_seqset_new();
	if (mbox_flags_parse(st->flags, st->nflags, &op->flags,
			     &op->keywords, &op->nkeywords, &error) < 0 ||
	    mbox_resolve(s, st->set, cmd->uid, &op->idx, &op->n,
			 &error) < 0) {
		store_op_free(op);
		cmd_error(s, "BAD", error);
		return;
	}
	if (st->unchangedsince_set)
		s->condstore = true;
	op->sets = mbox_uidsets(s->mb, op->idx, op->n, &op->nsets);
	if (op->nsets == 0) {
		store_op_free(op);
		cmd_done(s, cmd->uid, "OK", "STORE completed");
		return;
	}
	store_next(s, op);
}
