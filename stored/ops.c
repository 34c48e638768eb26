/*
 * ops.c: what each tern-stored request does, on the writer thread.
 *
 * Each request type has a schema (checked on the loop thread before the op
 * is queued) and an exec function that runs inside the batch transaction,
 * in its own savepoint, and builds the reply frames.  The frames and their
 * fields are documented in docs/protocols/stored.md.
 */
#include "config.h"

#include <stdlib.h>

#include "compat.h"
#include "blob.h"
#include "ipc.h"
#include "log.h"
#include "meta.h"
#include "stored.h"
#include "str.h"
#include "xalloc.h"

#define RCPT_MAX 1000
#define FILE_MAX 4096
#define UIDS_MAX 8192
#define IDS_PER_FRAME 1000

typedef int op_exec_fn(struct store_ctx *ctx, struct store_op *op);

struct store_request {
	const char *type;
	const struct ipc_field_spec *schema;
	const char *spool_field;
	op_exec_fn *exec;
	int read_only;
};

#define F_ACCOUNT { "account", IPC_INT, 1, 1, 0, 0 }, \
	{ "address", IPC_STR, 1, 1, META_ADDRESS_MAX, IPC_SPEC_NO_NUL }
#define F_FOLDER { "folder", IPC_STR, 1, 1, META_FOLDER_NAME_MAX, \
	IPC_SPEC_NO_NUL }
#define F_END { NULL, 0, 0, 0, 0, 0 }

static const struct ipc_field_spec deliver_schema[] = {
	{ "file", IPC_STR, 1, 1, FILE_MAX, IPC_SPEC_NO_NUL },
	{ "date", IPC_INT, 0, 1, 0, 0 },
	{ "rcpt_account", IPC_INT, 1, RCPT_MAX, 0, 0 },
	{ "rcpt_address", IPC_STR, 1, RCPT_MAX, META_ADDRESS_MAX,
	  IPC_SPEC_NO_NUL },
	{ "rcpt_folder", IPC_STR, 0, RCPT_MAX, META_FOLDER_NAME_MAX,
	  IPC_SPEC_NO_NUL },
	{ "rcpt_flags", IPC_INT, 0, RCPT_MAX, 0, 0 },
	{ "rcpt_quota", IPC_INT, 0, RCPT_MAX, 0, 0 },
	{ "key", IPC_STR, 0, 1, META_DELIVERY_KEY_MAX, IPC_SPEC_NO_NUL },
	F_END
};

static const struct ipc_field_spec append_schema[] = {
	F_ACCOUNT, F_FOLDER,
	{ "file", IPC_STR, 1, 1, FILE_MAX, IPC_SPEC_NO_NUL },
	{ "date", IPC_INT, 0, 1, 0, 0 },
	{ "flags", IPC_INT, 0, 1, 0, 0 },
	{ "keyword", IPC_STR, 0, META_KEYWORDS_MAX, META_KEYWORD_MAX,
	  IPC_SPEC_NO_NUL },
	{ "quota", IPC_INT, 0, 1, 0, 0 },
	F_END
};

static const struct ipc_field_spec account_schema[] = { F_ACCOUNT, F_END };

static const struct ipc_field_spec folder_schema[] = {
	F_ACCOUNT, F_FOLDER, F_END
};

static const struct ipc_field_spec status_schema[] = {
	F_ACCOUNT, F_FOLDER,
	{ "brief", IPC_INT, 0, 1, 0, 0 },
	F_END
};

static const struct ipc_field_spec create_schema[] = {
	F_ACCOUNT, F_FOLDER,
	{ "special_use", IPC_STR, 0, 1, 32, IPC_SPEC_NO_NUL },
	F_END
};

static const struct ipc_field_spec rename_schema[] = {
	F_ACCOUNT, F_FOLDER,
	{ "new_name", IPC_STR, 1, 1, META_FOLDER_NAME_MAX, IPC_SPEC_NO_NUL },
	F_END
};

static const struct ipc_field_spec fetch_schema[] = {
	F_ACCOUNT, F_FOLDER,
	{ "first", IPC_INT, 0, 1, 0, 0 },
	{ "last", IPC_INT, 0, 1, 0, 0 },
	{ "limit", IPC_INT, 0, 1, 0, 0 },
	{ "flags_only", IPC_INT, 0, 1, 0, 0 },
	F_END
};

static const struct ipc_field_spec store_schema[] = {
	F_ACCOUNT, F_FOLDER,
	{ "uids", IPC_STR, 1, 1, UIDS_MAX, IPC_SPEC_NO_NUL },
	{ "mode", IPC_STR, 1, 1, 1, IPC_SPEC_NO_NUL },
	{ "flags", IPC_INT, 0, 1, 0, 0 },
	{ "keyword", IPC_STR, 0, META_KEYWORDS_MAX, META_KEYWORD_MAX,
	  IPC_SPEC_NO_NUL },
	{ "unchangedsince", IPC_INT, 0, 1, 0, 0 },
	F_END
};

static const struct ipc_field_spec expunge_schema[] = {
	F_ACCOUNT, F_FOLDER,
	{ "uids", IPC_STR, 0, 1, UIDS_MAX, IPC_SPEC_NO_NUL },
	F_END
};

static const struct ipc_field_spec copy_schema[] = {
	F_ACCOUNT, F_FOLDER,
	{ "uids", IPC_STR, 1, 1, UIDS_MAX, IPC_SPEC_NO_NUL },
	{ "to", IPC_STR, 1, 1, META_FOLDER_NAME_MAX, IPC_SPEC_NO_NUL },
	F_END
};

static const struct ipc_field_spec vanished_schema[] = {
	F_ACCOUNT, F_FOLDER,
	{ "since", IPC_INT, 1, 1, 0, 0 },
	F_END
};

static const struct ipc_field_spec quota_set_schema[] = {
	F_ACCOUNT,
	{ "limit", IPC_INT, 1, 1, 0, 0 },
	F_END
};

/* ---- replies ---- */

static struct ipc_msg *op_reply(struct store_op *op, const char *type)
{
	struct ipc_msg *m = ipc_msg_new(type);

	ipc_msg_set_id(m, ipc_msg_id(op->req));
	if (op->nreplies == op->cap) {
		op->cap = op->cap == 0 ? 4 : op->cap * 2;
		op->replies = xrealloc(op->replies,
				       op->cap * sizeof(*op->replies));
	}
	op->replies[op->nreplies++] = m;
	return m;
}

static void replies_clear(struct store_op *op)
{
	for (size_t i = 0; i < op->nreplies; i++)
		ipc_msg_free(&op->replies[i]);
	op->nreplies = 0;
}

void ops_fail(struct store_op *op, const char *code, const char *message)
{
	struct ipc_msg *m;

	replies_clear(op);
	notify_list_truncate(&op->events, 0);
	m = op_reply(op, "error");
	ipc_msg_add_cstr(m, "code", code);
	ipc_msg_add_cstr(m, "message", message);
}

void op_free(struct store_op **opp)
{
	struct store_op *op = *opp;

	if (op == NULL)
		return;
	replies_clear(op);
	free(op->replies);
	notify_list_clear(&op->events);
	free(op->envelope);
	free(op->bodystructure);
	ipc_msg_free(&op->req);
	free(op);
	*opp = NULL;
}

/* The error reply for a meta status; returns -1 (roll back). */
static int fail_status(struct store_ctx *ctx, struct store_op *op, int r)
{
	switch (r) {
	case META_ENOTFOUND:
		ops_fail(op, "nofolder", "no such folder");
		break;
	case META_EEXISTS:
		ops_fail(op, "exists", "folder exists");
		break;
	case META_EOVERQUOTA:
		ops_fail(op, "overquota", "quota exceeded");
		break;
	case META_EINVALID:
		ops_fail(op, "invalid", "not allowed or invalid value");
		break;
	case META_ENOTEMPTY:
		ops_fail(op, "notempty", "folder has child folders");
		break;
	case META_ENOTARGET:
		ops_fail(op, "notarget", "no such target folder");
		break;
	default:
		ops_fail(op, "internal", str_c(ctx->error));
		break;
	}
	return -1;
}

/* ---- request fields ---- */

/* Reads account/address and creates the account on first use. */
static int get_account(struct store_ctx *ctx, struct store_op *op,
		       struct meta_account *a)
{
	if (ipc_msg_get_int(op->req, "account", &a->id) < 0 ||
	    ipc_msg_get_cstr(op->req, "address", &a->address) < 0 ||
	    a->id <= 0 || a->address[0] == '\0') {
		ops_fail(op, "invalid", "bad account or address");
		return -1;
	}
	if (ctx->reader) {
		int known = meta_account_known(ctx->meta, a, ctx->error);

		if (known < 0)
			return fail_status(ctx, op, META_EINTERNAL);
		if (known == 0) {
			op->to_writer = 1;	/* rows to create first */
			return -1;
		}
		return 0;
	}
	if (meta_account_use(ctx->meta, a, ctx->error) < 0)
		return fail_status(ctx, op, META_EINTERNAL);
	return 0;
}

/* Canonical folder name of field into out. */
static int get_folder(struct store_op *op, const char *field, struct str *out)
{
	const char *name;

	if (ipc_msg_get_cstr(op->req, field, &name) < 0 ||
	    meta_folder_name_check(name, out) < 0) {
		ops_fail(op, "invalid", "bad folder name");
		return -1;
	}
	return 0;
}

static int get_int(const struct ipc_msg *m, const char *name, int64_t def,
		   int64_t *value_r)
{
	if (ipc_msg_count(m, name) == 0) {
		*value_r = def;
		return 0;
	}
	return ipc_msg_get_int(m, name, value_r);
}

/* The keyword fields, normalised. */
static int get_keywords(struct store_op *op, struct str *out)
{
	unsigned n = ipc_msg_count(op->req, "keyword");
	struct str *all = str_new(256, META_KEYWORDS_MAX *
					       (META_KEYWORD_MAX + 1));
	const char *k;
	int r = 0;

	for (unsigned i = 0; r == 0 && i < n; i++) {
		if (ipc_msg_get_cstr_nth(op->req, "keyword", i, &k) < 0 ||
		    strchr(k, ' ') != NULL ||
		    (i > 0 && str_append_byte(all, ' ') < 0) ||
		    str_append_c(all, k) < 0)
			r = -1;
	}
	if (r == 0)
		r = meta_keywords_normalise(str_c(all), out);
	str_free(&all);
	if (r < 0)
		ops_fail(op, "invalid", "bad keyword");
	return r;
}

/* ---- deliver and append ---- */

/* Adds one message for one recipient; the reply fields are the caller's. */
static int add_message(struct store_ctx *ctx, struct store_op *op,
		       const struct meta_account *a, const char *folder,
		       unsigned flags, const char *keywords, int64_t date,
		       int64_t quota, uint32_t *uid_r, uint32_t *uidv_r,
		       uint64_t *modseq_r)
{
	struct meta_new_message nm = {
		.blob = op->hex,
		.size = op->size,
		.flags = flags,
		.keywords = keywords,
		.internal_date = date,
		.envelope = op->envelope,
		.bodystructure = op->bodystructure,
	};
	int r = META_OK;

	if (quota >= 0)
		r = meta_quota_set(ctx->meta, a->id, (uint64_t)quota,
				   ctx->error);
	if (r == META_OK)
		r = meta_message_add(ctx->meta, a->id, folder, &nm, uid_r,
				     uidv_r, modseq_r, ctx->error);
	return r;
}

static const char *status_word(int r)
{
	return r == META_OK ? "ok" : r == META_EOVERQUOTA ? "overquota" :
	       r == META_ENOTFOUND ? "nofolder" : "error";
}

/* With a delivery key: META_OK when this delivery was already stored
 * (uid and uidvalidity of then), META_ENOTFOUND when it was not. */
static int delivered_before(struct store_ctx *ctx, const char *key,
			    const struct meta_account *a,
			    const char *folder, uint32_t *uid_r,
			    uint32_t *uidv_r)
{
	int r;

	if (key == NULL)
		return META_ENOTFOUND;
	r = meta_delivery_find(ctx->meta, key, a->id, folder, uid_r, uidv_r,
			       ctx->error);
	if (r == META_OK)
		log_info(NULL, "deliver: key=%s, to=<%s>, folder=%s: already "
			 "delivered (uid %u), not stored again", key,
			 a->address, folder, *uid_r);
	return r;
}

/* Stores the message for one recipient, and its delivery key. */
static int add_rcpt_message(struct store_ctx *ctx, struct store_op *op,
			    const char *key, const struct meta_account *a,
			    const char *folder, unsigned flags, int64_t date,
			    int64_t quota, uint32_t *uid_r, uint32_t *uidv_r,
			    uint64_t *modseq_r)
{
	int r = add_message(ctx, op, a, folder, flags, "", date, quota, uid_r,
			    uidv_r, modseq_r);

	if (r == META_OK && key != NULL)
		r = meta_delivery_add(ctx->meta, key, a->id, folder, *uid_r,
				      *uidv_r, op->received, ctx->error);
	if (r == META_EEXISTS)	/* cannot be: looked up just before */
		r = META_EINTERNAL;
	return r;
}

static int exec_one_rcpt(struct store_ctx *ctx, struct store_op *op,
			 unsigned i, int64_t date, const char *key,
			 struct ipc_msg *reply, struct str *folder)
{
	struct meta_account a;
	const char *name = "";
	int64_t flags = 0, quota = -1;
	uint32_t uid = 0, uidv = 0;
	uint64_t modseq = 0;
	int r = META_EINVALID;

	if (ipc_msg_get_int_nth(op->req, "rcpt_account", i, &a.id) < 0 ||
	    ipc_msg_get_cstr_nth(op->req, "rcpt_address", i, &a.address) < 0 ||
	    (ipc_msg_count(op->req, "rcpt_folder") > 0 &&
	     ipc_msg_get_cstr_nth(op->req, "rcpt_folder", i, &name) < 0) ||
	    (ipc_msg_count(op->req, "rcpt_flags") > 0 &&
	     ipc_msg_get_int_nth(op->req, "rcpt_flags", i, &flags) < 0) ||
	    (ipc_msg_count(op->req, "rcpt_quota") > 0 &&
	     ipc_msg_get_int_nth(op->req, "rcpt_quota", i, &quota) < 0) ||
	    a.id <= 0 || a.address[0] == '\0' ||
	    meta_folder_name_check(name[0] == '\0' ? "INBOX" : name,
				   folder) < 0) {
		str_clear(ctx->error);
		if (str_append_c(ctx->error, "bad recipient fields") < 0)
			abort();
	} else if (meta_savepoint(ctx->meta, ctx->error) == META_OK) {
		int again = META_ENOTFOUND;

		r = meta_account_use(ctx->meta, &a, ctx->error);
		if (r == META_OK)
			r = again = delivered_before(ctx, key, &a,
						     str_c(folder), &uid,
						     &uidv);
		if (r == META_ENOTFOUND)
			r = add_rcpt_message(ctx, op, key, &a, str_c(folder),
					     (unsigned)flags & META_FLAGS_ALL,
					     date, quota, &uid, &uidv,
					     &modseq);
		if (r == META_OK)
			r = meta_release(ctx->meta, ctx->error);
		else
			meta_rollback_to(ctx->meta);
		if (r == META_OK && again != META_OK)
			notify_list_add(&op->events, NOTIFY_NEW, a.id,
					str_c(folder), uid, modseq, 0, NULL);
	} else {
		r = META_EINTERNAL;
	}
	ipc_msg_add_cstr(reply, "status", status_word(r));
	ipc_msg_add_int(reply, "uid", r == META_OK ? uid : 0);
	ipc_msg_add_int(reply, "uidvalidity", r == META_OK ? uidv : 0);
	ipc_msg_add_cstr(reply, "message",
			 r == META_OK ? "" : r == META_EOVERQUOTA ?
			 "quota exceeded" : r == META_ENOTFOUND ?
			 "no such folder" : str_c(ctx->error));
	return r;
}

static int exec_deliver(struct store_ctx *ctx, struct store_op *op)
{
	unsigned n = ipc_msg_count(op->req, "rcpt_account");
	struct str *folder = str_new(64, META_FOLDER_NAME_MAX);
	struct ipc_msg *reply;
	const char *key = NULL;
	int64_t date;

	if (ipc_msg_count(op->req, "key") > 0 &&
	    (ipc_msg_get_cstr(op->req, "key", &key) < 0 || key[0] == '\0')) {
		str_free(&folder);
		ops_fail(op, "invalid", "bad delivery key");
		return -1;
	}
	if (ipc_msg_count(op->req, "rcpt_address") != n ||
	    (ipc_msg_count(op->req, "rcpt_folder") != 0 &&
	     ipc_msg_count(op->req, "rcpt_folder") != n) ||
	    (ipc_msg_count(op->req, "rcpt_flags") != 0 &&
	     ipc_msg_count(op->req, "rcpt_flags") != n) ||
	    (ipc_msg_count(op->req, "rcpt_quota") != 0 &&
	     ipc_msg_count(op->req, "rcpt_quota") != n) ||
	    get_int(op->req, "date", op->received, &date) < 0) {
		str_free(&folder);
		ops_fail(op, "invalid", "recipient lists differ in length");
		return -1;
	}
	reply = op_reply(op, "ok");
	ipc_msg_add_cstr(reply, "blob", op->hex);
	ipc_msg_add_int(reply, "size", (int64_t)op->size);
	for (unsigned i = 0; i < n; i++)
		(void)exec_one_rcpt(ctx, op, i, date, key, reply, folder);
	str_free(&folder);
	return 0;
}

static int exec_append(struct store_ctx *ctx, struct store_op *op)
{
	struct str *folder = str_new(64, META_FOLDER_NAME_MAX);
	struct str *kw = str_new(64, META_KEYWORDS_MAX *
					     (META_KEYWORD_MAX + 1));
	struct meta_account a;
	int64_t date, flags, quota;
	uint32_t uid, uidv;
	uint64_t modseq;
	struct ipc_msg *reply;
	int r = -1;

	if (get_account(ctx, op, &a) < 0 ||
	    get_folder(op, "folder", folder) < 0 ||
	    get_keywords(op, kw) < 0)
		goto done;
	if (get_int(op->req, "date", op->received, &date) < 0 ||
	    get_int(op->req, "flags", 0, &flags) < 0 ||
	    get_int(op->req, "quota", -1, &quota) < 0) {
		ops_fail(op, "invalid", "bad field");
		goto done;
	}
	r = add_message(ctx, op, &a, str_c(folder),
			(unsigned)flags & META_FLAGS_ALL, str_c(kw), date,
			quota, &uid, &uidv, &modseq);
	if (r < 0) {
		r = fail_status(ctx, op, r);
		goto done;
	}
	notify_list_add(&op->events, NOTIFY_NEW, a.id, str_c(folder), uid,
			modseq, 0, NULL);
	reply = op_reply(op, "ok");
	ipc_msg_add_int(reply, "uid", uid);
	ipc_msg_add_int(reply, "uidvalidity", uidv);
	ipc_msg_add_int(reply, "modseq", (int64_t)modseq);
	ipc_msg_add_cstr(reply, "blob", op->hex);
	ipc_msg_add_int(reply, "size", (int64_t)op->size);
done:
	str_free(&folder);
	str_free(&kw);
	return r;
}

/* ---- folders ---- */

static int folder_frame(const struct meta_folder *f, void *ctx)
{
	struct store_op *op = ctx;
	struct ipc_msg *m = op_reply(op, "folder");

	ipc_msg_add_cstr(m, "name", f->name);
	ipc_msg_add_cstr(m, "special_use", f->special_use);
	ipc_msg_add_int(m, "subscribed", f->subscribed);
	ipc_msg_add_int(m, "uidvalidity", f->uidvalidity);
	ipc_msg_add_int(m, "uidnext", f->uidnext);
	ipc_msg_add_int(m, "highestmodseq", (int64_t)f->highestmodseq);
	return 0;
}

static int exec_folder_list(struct store_ctx *ctx, struct store_op *op)
{
	struct meta_account a;
	int r;

	if (get_account(ctx, op, &a) < 0)
		return -1;
	r = meta_folder_list(ctx->meta, a.id, folder_frame, op, ctx->error);
	if (r < 0)
		return fail_status(ctx, op, r);
	(void)op_reply(op, "ok");
	return 0;
}

enum folder_action { F_CREATE, F_RENAME, F_DELETE, F_SUB, F_UNSUB };

static int folder_change(struct store_ctx *ctx, struct store_op *op,
			 enum folder_action act)
{
	struct str *name = str_new(64, META_FOLDER_NAME_MAX);
	struct str *to = str_new(64, META_FOLDER_NAME_MAX);
	const char *special = "";
	struct meta_account a;
	int r = -1;

	if (get_account(ctx, op, &a) < 0 ||
	    get_folder(op, "folder", name) < 0 ||
	    (act == F_RENAME && get_folder(op, "new_name", to) < 0))
		goto done;
	if (act == F_CREATE && ipc_msg_count(op->req, "special_use") > 0 &&
	    ipc_msg_get_cstr(op->req, "special_use", &special) < 0)
		special = "?";
	r = act == F_CREATE ? meta_folder_create(ctx->meta, a.id, str_c(name),
						 special, ctx->error) :
	    act == F_RENAME ? meta_folder_rename(ctx->meta, a.id, str_c(name),
						 str_c(to), ctx->error) :
	    act == F_DELETE ? meta_folder_delete(ctx->meta, a.id, str_c(name),
						 ctx->error) :
			      meta_folder_subscribe(ctx->meta, a.id,
						    str_c(name), act == F_SUB,
						    ctx->error);
	if (r < 0) {
		r = fail_status(ctx, op, r);
		goto done;
	}
	if (act == F_RENAME)
		notify_list_add_rename(&op->events, a.id, str_c(name),
				       str_c(to));
	else if (act == F_DELETE)
		notify_list_add(&op->events, NOTIFY_DELETE, a.id, str_c(name),
				0, 0, 0, NULL);
	(void)op_reply(op, "ok");
done:
	str_free(&name);
	str_free(&to);
	return r;
}

static int exec_folder_create(struct store_ctx *ctx, struct store_op *op)
{
	return folder_change(ctx, op, F_CREATE);
}

static int exec_folder_rename(struct store_ctx *ctx, struct store_op *op)
{
	return folder_change(ctx, op, F_RENAME);
}

static int exec_folder_delete(struct store_ctx *ctx, struct store_op *op)
{
	return folder_change(ctx, op, F_DELETE);
}

static int exec_folder_subscribe(struct store_ctx *ctx, struct store_op *op)
{
	return folder_change(ctx, op, F_SUB);
}

static int exec_folder_unsubscribe(struct store_ctx *ctx,
				   struct store_op *op)
{
	return folder_change(ctx, op, F_UNSUB);
}

static int exec_status(struct store_ctx *ctx, struct store_op *op)
{
	struct str *name = str_new(64, META_FOLDER_NAME_MAX);
	struct meta_status_info st;
	struct meta_account a;
	struct ipc_msg *m;
	int64_t brief;
	int r = -1;

	if (get_account(ctx, op, &a) < 0 ||
	    get_folder(op, "folder", name) < 0 ||
	    get_int(op->req, "brief", 0, &brief) < 0)
		goto done;
	r = meta_folder_status(ctx->meta, a.id, str_c(name), brief == 0, &st,
			       ctx->error);
	if (r < 0) {
		r = fail_status(ctx, op, r);
		goto done;
	}
	m = op_reply(op, "ok");
	if (brief == 0) {
		ipc_msg_add_int(m, "exists", st.exists);
		ipc_msg_add_int(m, "unseen", st.unseen);
		ipc_msg_add_int(m, "deleted", st.deleted);
		ipc_msg_add_int(m, "size", (int64_t)st.size);
	}
	ipc_msg_add_int(m, "uidvalidity", st.uidvalidity);
	ipc_msg_add_int(m, "uidnext", st.uidnext);
	ipc_msg_add_int(m, "highestmodseq", (int64_t)st.highestmodseq);
done:
	str_free(&name);
	return r;
}

/* ---- messages ---- */

struct fetch_state {
	struct store_ctx *ctx;
	struct store_op *op;
	struct str *path;
	struct ipc_msg *flags;		/* flags_only: the frame being filled */
	unsigned in_flags;
};

/* A flags-only answer: "flags" frames of repeated (uid, modseq, flags,
 * keywords) groups, far cheaper to build and read than a frame each. */
#define FLAGS_PER_FRAME 1000		/* 4 fields each: < IPC_FIELDS_MAX */
#define FLAGS_FRAME_BYTES (128 * 1024)

static int flags_group(const struct meta_message *msg, void *ctx)
{
	struct fetch_state *fs = ctx;

	if (fs->flags == NULL || fs->in_flags == FLAGS_PER_FRAME ||
	    ipc_msg_size(fs->flags) > FLAGS_FRAME_BYTES) {
		fs->flags = op_reply(fs->op, "flags");
		fs->in_flags = 0;
	}
	ipc_msg_add_int(fs->flags, "uid", msg->uid);
	ipc_msg_add_int(fs->flags, "modseq", (int64_t)msg->modseq);
	ipc_msg_add_int(fs->flags, "flags", msg->flags);
	ipc_msg_add_cstr(fs->flags, "keywords", msg->keywords);
	fs->in_flags++;
	return 0;
}

static int message_frame(const struct meta_message *msg, void *ctx)
{
	struct fetch_state *fs = ctx;
	struct ipc_msg *m = op_reply(fs->op, "message");

	ipc_msg_add_int(m, "uid", msg->uid);
	ipc_msg_add_int(m, "modseq", (int64_t)msg->modseq);
	ipc_msg_add_int(m, "flags", msg->flags);
	ipc_msg_add_cstr(m, "keywords", msg->keywords);
	if (fs->path == NULL)
		return 0;	/* a store answer: no more fields */
	ipc_msg_add_int(m, "date", msg->internal_date);
	ipc_msg_add_int(m, "size", (int64_t)msg->size);
	str_clear(fs->path);
	if (blob_path(fs->ctx->blobs, msg->blob, fs->path) < 0)
		return -1;
	ipc_msg_add_cstr(m, "blob", str_c(fs->path));
	if (msg->envelope != NULL)
		ipc_msg_add_cstr(m, "envelope", msg->envelope);
	if (msg->bodystructure != NULL)
		ipc_msg_add_cstr(m, "bodystructure", msg->bodystructure);
	return 0;
}

static int exec_fetch(struct store_ctx *ctx, struct store_op *op)
{
	struct str *name = str_new(64, META_FOLDER_NAME_MAX);
	struct fetch_state fs = { ctx, op, NULL, NULL, 0 };
	int64_t first, last, limit, flags_only;
	struct meta_account a;
	struct ipc_msg *m;
	uint32_t next;
	int r = -1;

	if (get_account(ctx, op, &a) < 0 || get_folder(op, "folder", name) < 0)
		goto done;
	if (get_int(op->req, "first", 1, &first) < 0 ||
	    get_int(op->req, "last", UINT32_MAX, &last) < 0 ||
	    get_int(op->req, "limit", ctx->fetch_max, &limit) < 0 ||
	    get_int(op->req, "flags_only", 0, &flags_only) < 0 ||
	    first < 1 || last < first || last > UINT32_MAX || limit < 1) {
		ops_fail(op, "invalid", "bad UID range or limit");
		goto done;
	}
	/* Flags-only answers are small: a hundred times as many messages. */
	if (limit > ctx->fetch_max * (flags_only != 0 ? 100 : 1))
		limit = ctx->fetch_max * (flags_only != 0 ? 100 : 1);
	if (flags_only != 0) {
		r = meta_fetch_flags(ctx->meta, a.id, str_c(name),
				     (uint32_t)first, (uint32_t)last,
				     (unsigned)limit, flags_group, &fs, &next,
				     ctx->error);
	} else {
		fs.path = str_new(256, 8192);
		r = meta_fetch(ctx->meta, a.id, str_c(name), (uint32_t)first,
			       (uint32_t)last, (unsigned)limit, message_frame,
			       &fs, &next, ctx->error);
	}
	if (r < 0) {
		r = fail_status(ctx, op, r);
		goto done;
	}
	m = op_reply(op, "ok");
	ipc_msg_add_int(m, "next", next);
done:
	str_free(&fs.path);
	str_free(&name);
	return r;
}

/* Collects UIDs into frames of at most IDS_PER_FRAME "uid" fields. */
struct uid_frames {
	struct store_op *op;
	const char *type;
	struct ipc_msg *cur;
	unsigned in_cur;
};

static int uid_frame_add(uint32_t uid, void *ctx)
{
	struct uid_frames *u = ctx;

	if (u->cur == NULL || u->in_cur == IDS_PER_FRAME) {
		u->cur = op_reply(u->op, u->type);
		u->in_cur = 0;
	}
	ipc_msg_add_int(u->cur, "uid", uid);
	u->in_cur++;
	return 0;
}

static int get_uidset(struct store_op *op, struct meta_uidset *set)
{
	const char *text;

	if (ipc_msg_get_cstr(op->req, "uids", &text) < 0 ||
	    meta_uidset_parse(text, set) < 0) {
		ops_fail(op, "invalid", "bad UID set");
		return -1;
	}
	return 0;
}

struct store_answer {
	struct fetch_state fs;
	struct uid_frames failed;
	int64_t account;
	const char *folder;
};

static int store_changed(const struct meta_message *msg, void *ctx)
{
	struct store_answer *ans = ctx;

	notify_list_add(&ans->fs.op->events, NOTIFY_FLAGS, ans->account,
			ans->folder, msg->uid, msg->modseq, msg->flags,
			msg->keywords);
	return message_frame(msg, &ans->fs);
}

static int store_failed(uint32_t uid, void *ctx)
{
	return uid_frame_add(uid, &((struct store_answer *)ctx)->failed);
}

static int exec_store(struct store_ctx *ctx, struct store_op *op)
{
	struct str *name = str_new(64, META_FOLDER_NAME_MAX);
	struct str *kw = str_new(64, META_KEYWORDS_MAX *
					     (META_KEYWORD_MAX + 1));
	struct meta_uidset *set = xmalloc(sizeof(*set));
	struct store_answer ans = { { ctx, op, NULL, NULL, 0 },
				    { op, "failed", NULL, 0 }, 0, NULL };
	enum meta_store_mode mode;
	int64_t flags, since;
	uint64_t hms;
	struct meta_account a;
	const char *mode_text;
	int r = -1;

	if (get_account(ctx, op, &a) < 0 ||
	    get_folder(op, "folder", name) < 0 ||
	    get_uidset(op, set) < 0 || get_keywords(op, kw) < 0)
		goto done;
	if (ipc_msg_get_cstr(op->req, "mode", &mode_text) < 0 ||
	    strchr("+-=", mode_text[0]) == NULL || mode_text[0] == '\0' ||
	    get_int(op->req, "flags", 0, &flags) < 0 ||
	    get_int(op->req, "unchangedsince", 0, &since) < 0 || since < 0 ||
	    (flags & ~(int64_t)META_FLAGS_ALL) != 0) {
		ops_fail(op, "invalid", "bad mode, flags or unchangedsince");
		goto done;
	}
	mode = mode_text[0] == '+' ? META_STORE_ADD :
	       mode_text[0] == '-' ? META_STORE_REMOVE : META_STORE_REPLACE;
	ans.account = a.id;
	ans.folder = str_c(name);
	r = meta_store_flags(ctx->meta, a.id, str_c(name), set, mode,
			     (unsigned)flags, str_c(kw), (uint64_t)since,
			     store_changed, store_failed, &ans, &hms,
			     ctx->error);
	if (r < 0) {
		r = fail_status(ctx, op, r);
		goto done;
	}
	ipc_msg_add_int(op_reply(op, "ok"), "highestmodseq", (int64_t)hms);
done:
	free(set);
	str_free(&name);
	str_free(&kw);
	return r;
}

/* The expunged UIDs as frames and as events (MODSEQ set afterwards). */
struct expunge_answer {
	struct uid_frames u;
	int64_t account;
	const char *folder;
};

static int expunge_one(uint32_t uid, void *ctx)
{
	struct expunge_answer *ans = ctx;

	notify_list_add(&ans->u.op->events, NOTIFY_EXPUNGE, ans->account,
			ans->folder, uid, 0, 0, NULL);
	return uid_frame_add(uid, &ans->u);
}

static void events_set_modseq(struct notify_list *l, size_t from,
			      uint64_t modseq)
{
	for (size_t i = from; i < l->n; i++)
		l->v[i].modseq = modseq;
}

static int exec_expunge(struct store_ctx *ctx, struct store_op *op)
{
	struct str *name = str_new(64, META_FOLDER_NAME_MAX);
	struct meta_uidset *set = NULL;
	struct expunge_answer ans = { { op, "expunged", NULL, 0 }, 0, NULL };
	size_t mark = op->events.n;
	struct meta_account a;
	uint64_t hms;
	int r = -1;

	if (get_account(ctx, op, &a) < 0 || get_folder(op, "folder", name) < 0)
		goto done;
	if (ipc_msg_count(op->req, "uids") > 0) {
		set = xmalloc(sizeof(*set));
		if (get_uidset(op, set) < 0)
			goto done;
	}
	ans.account = a.id;
	ans.folder = str_c(name);
	r = meta_expunge(ctx->meta, a.id, str_c(name), set, expunge_one, &ans,
			 &hms, ctx->error);
	if (r < 0) {
		r = fail_status(ctx, op, r);
		goto done;
	}
	events_set_modseq(&op->events, mark, hms);
	ipc_msg_add_int(op_reply(op, "ok"), "highestmodseq", (int64_t)hms);
done:
	free(set);
	str_free(&name);
	return r;
}

/* COPY and MOVE: "copied" frames of (uid, new_uid) pairs. */
struct copy_answer {
	struct store_op *op;
	struct ipc_msg *cur;
	unsigned in_cur;
	uint32_t *uids;		/* pairs: source, new */
	size_t n;
};

static int copy_pair(uint32_t uid, uint32_t new_uid, void *ctx)
{
	struct copy_answer *ans = ctx;

	if (ans->cur == NULL || ans->in_cur == IDS_PER_FRAME) {
		ans->cur = op_reply(ans->op, "copied");
		ans->in_cur = 0;
	}
	ipc_msg_add_int(ans->cur, "uid", uid);
	ipc_msg_add_int(ans->cur, "new_uid", new_uid);
	ans->in_cur++;
	ans->uids = xrealloc(ans->uids, 2 * (ans->n + 1) * sizeof(*ans->uids));
	ans->uids[2 * ans->n] = uid;
	ans->uids[2 * ans->n + 1] = new_uid;
	ans->n++;
	return 0;
}

static void copy_events(struct store_op *op, int64_t account,
			const char *from, const char *to, int move,
			const struct copy_answer *ans,
			const struct meta_copy_result *res)
{
	for (size_t i = 0; i < ans->n; i++)
		notify_list_add(&op->events, NOTIFY_NEW, account, to,
				ans->uids[2 * i + 1], res->highestmodseq, 0,
				NULL);
	for (size_t i = 0; move && i < ans->n; i++)
		notify_list_add(&op->events, NOTIFY_EXPUNGE, account, from,
				ans->uids[2 * i], res->src_highestmodseq, 0,
				NULL);
}

static int copy_or_move(struct store_ctx *ctx, struct store_op *op, int move)
{
	struct str *from = str_new(64, META_FOLDER_NAME_MAX);
	struct str *to = str_new(64, META_FOLDER_NAME_MAX);
	struct meta_uidset *set = xmalloc(sizeof(*set));
	struct copy_answer ans = { op, NULL, 0, NULL, 0 };
	struct meta_copy_result res;
	struct meta_account a;
	struct ipc_msg *m;
	int r = -1;

	if (get_account(ctx, op, &a) < 0 ||
	    get_folder(op, "folder", from) < 0 ||
	    get_folder(op, "to", to) < 0 || get_uidset(op, set) < 0)
		goto done;
	r = meta_copy(ctx->meta, a.id, str_c(from), str_c(to), set, move,
		      copy_pair, &ans, &res, ctx->error);
	if (r < 0) {
		r = fail_status(ctx, op, r);
		goto done;
	}
	copy_events(op, a.id, str_c(from), str_c(to), move, &ans, &res);
	m = op_reply(op, "ok");
	ipc_msg_add_int(m, "count", res.count);
	ipc_msg_add_int(m, "uidvalidity", res.uidvalidity);
	ipc_msg_add_int(m, "highestmodseq", (int64_t)res.highestmodseq);
	if (move)
		ipc_msg_add_int(m, "src_highestmodseq",
				(int64_t)res.src_highestmodseq);
done:
	free(ans.uids);
	free(set);
	str_free(&from);
	str_free(&to);
	return r;
}

static int exec_copy(struct store_ctx *ctx, struct store_op *op)
{
	return copy_or_move(ctx, op, 0);
}

static int exec_move(struct store_ctx *ctx, struct store_op *op)
{
	return copy_or_move(ctx, op, 1);
}

static int exec_vanished(struct store_ctx *ctx, struct store_op *op)
{
	struct str *name = str_new(64, META_FOLDER_NAME_MAX);
	struct uid_frames u = { op, "expunged", NULL, 0 };
	struct meta_account a;
	int64_t since;
	int r = -1;

	if (get_account(ctx, op, &a) < 0 || get_folder(op, "folder", name) < 0)
		goto done;
	if (ipc_msg_get_int(op->req, "since", &since) < 0 || since < 0) {
		ops_fail(op, "invalid", "bad since");
		goto done;
	}
	r = meta_vanished(ctx->meta, a.id, str_c(name), (uint64_t)since,
			  uid_frame_add, &u, ctx->error);
	if (r < 0)
		r = fail_status(ctx, op, r);
	else
		(void)op_reply(op, "ok");
done:
	str_free(&name);
	return r;
}

/* ---- quota ---- */

static int exec_quota_get(struct store_ctx *ctx, struct store_op *op)
{
	struct meta_account a;
	struct meta_quota q;
	struct ipc_msg *m;
	int r;

	if (get_account(ctx, op, &a) < 0)
		return -1;
	r = meta_quota_get(ctx->meta, a.id, &q, ctx->error);
	if (r < 0)
		return fail_status(ctx, op, r);
	m = op_reply(op, "ok");
	ipc_msg_add_int(m, "used", (int64_t)q.used);
	ipc_msg_add_int(m, "messages", (int64_t)q.messages);
	ipc_msg_add_int(m, "limit", (int64_t)q.limit);
	return 0;
}

static int exec_quota_set(struct store_ctx *ctx, struct store_op *op)
{
	struct meta_account a;
	int64_t limit;
	int r;

	if (get_account(ctx, op, &a) < 0)
		return -1;
	if (ipc_msg_get_int(op->req, "limit", &limit) < 0 || limit < 0) {
		ops_fail(op, "invalid", "bad limit");
		return -1;
	}
	r = meta_quota_set(ctx->meta, a.id, (uint64_t)limit, ctx->error);
	if (r < 0)
		return fail_status(ctx, op, r);
	(void)op_reply(op, "ok");
	return 0;
}

/* ---- the table ---- */

static const struct store_request requests[] = {
	{ "deliver", deliver_schema, "file", exec_deliver, 0 },
	{ "append", append_schema, "file", exec_append, 0 },
	{ "folder.list", account_schema, NULL, exec_folder_list, 1 },
	{ "folder.create", create_schema, NULL, exec_folder_create, 0 },
	{ "folder.rename", rename_schema, NULL, exec_folder_rename, 0 },
	{ "folder.delete", folder_schema, NULL, exec_folder_delete, 0 },
	{ "folder.subscribe", folder_schema, NULL, exec_folder_subscribe, 0 },
	{ "folder.unsubscribe", folder_schema, NULL,
	  exec_folder_unsubscribe, 0 },
	{ "status", status_schema, NULL, exec_status, 1 },
	{ "fetch", fetch_schema, NULL, exec_fetch, 1 },
	{ "store", store_schema, NULL, exec_store, 0 },
	{ "expunge", expunge_schema, NULL, exec_expunge, 0 },
	{ "copy", copy_schema, NULL, exec_copy, 0 },
	{ "move", copy_schema, NULL, exec_move, 0 },
	{ "vanished", vanished_schema, NULL, exec_vanished, 1 },
	{ "quota.get", account_schema, NULL, exec_quota_get, 1 },
	{ "quota.set", quota_set_schema, NULL, exec_quota_set, 0 },
};

const struct store_request *ops_find(const char *type)
{
	for (size_t i = 0; i < TERN_NELEM(requests); i++)
		if (strcmp(requests[i].type, type) == 0)
			return &requests[i];
	return NULL;
}

const struct ipc_field_spec *ops_schema(const struct store_request *def)
{
	return def->schema;
}

const char *ops_spool_field(const struct store_request *def)
{
	return def->spool_field;
}

int ops_read_only(const struct store_request *def)
{
	return def->read_only;
}

void ops_exec_read(struct store_ctx *ctx, struct store_op *op)
{
	/* One read transaction: a consistent snapshot of what is committed. */
	if (meta_begin_read(ctx->meta, ctx->error) < 0) {
		ops_fail(op, "internal", str_c(ctx->error));
		return;
	}
	(void)op->def->exec(ctx, op);
	meta_rollback(ctx->meta);
}

void ops_exec(struct store_ctx *ctx, struct store_op *op)
{
	size_t mark = op->events.n;

	if (op->spool_failed)
		return;		/* the writer already set the error */
	if (meta_savepoint(ctx->meta, ctx->error) < 0) {
		ops_fail(op, "internal", str_c(ctx->error));
		return;
	}
	if (op->def->exec(ctx, op) < 0) {
		meta_rollback_to(ctx->meta);
		notify_list_truncate(&op->events, mark);
		return;
	}
	if (meta_release(ctx->meta, ctx->error) < 0) {
		meta_rollback_to(ctx->meta);
		ops_fail(op, "internal", str_c(ctx->error));
	}
}
