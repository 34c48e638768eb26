/* storeclient.c: see storeclient.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "ipc.h"
#include "ipcclient.h"
#include "storeclient.h"
#include "str.h"
#include "xalloc.h"

#define STORE_ERROR_MAX 4096

struct store_client {
	struct ipc_client *ipc;
	int timeout_ms;
	uint32_t next_id;
	struct str *error;
	char code[32];
};

/* Data frames of one answer go to this. */
typedef int frame_cb(struct ipc_msg *m, void *ctx);

struct store_client *store_client_new(size_t max_frame, int timeout_ms)
{
	struct store_client *c = xcalloc(1, sizeof(*c));

	c->ipc = ipc_client_new(max_frame);
	c->timeout_ms = timeout_ms;
	c->error = str_new(128, STORE_ERROR_MAX);
	return c;
}

void store_client_free(struct store_client **cp)
{
	struct store_client *c = *cp;

	if (c == NULL)
		return;
	ipc_client_free(&c->ipc);
	str_free(&c->error);
	free(c);
	*cp = NULL;
}

const char *store_client_error_code(const struct store_client *c)
{
	return c->code;
}

int store_client_connect(struct store_client *c, const char *socket_path,
			 const char **error_r)
{
	c->code[0] = '\0';
	if (ipc_client_connect(c->ipc, socket_path, c->timeout_ms,
			       error_r) < 0)
		return -1;
	return ipc_client_hello(c->ipc, STORE_PROTO, STORE_PROTO_VERSION,
				c->timeout_ms, error_r);
}

int store_spool_create(const char *store_dir, struct str *path_r, int *fd_r,
		       const char **error_r)
{
	static unsigned counter;
	struct timespec ts;

	for (int tries = 0; tries < 100; tries++) {
		clock_gettime(CLOCK_REALTIME, &ts);
		str_clear(path_r);
		if (str_printf(path_r, "%s/tmp/%lld.%ld.P%ldC%u", store_dir,
			       (long long)ts.tv_sec, (long)ts.tv_nsec,
			       (long)getpid(), counter++) < 0) {
			*error_r = "spool path too long";
			return -1;
		}
		*fd_r = open(str_c(path_r),
			     O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
		if (*fd_r >= 0)
			return 0;
		if (errno != EEXIST) {
			*error_r = strerror(errno);
			return -1;
		}
	}
	*error_r = "cannot create a unique spool file";
	return -1;
}

static int client_fail(struct store_client *c, const char **error_r,
		       const char *text)
{
	str_clear(c->error);
	if (str_append_c(c->error, text) < 0)
		str_clear(c->error);
	*error_r = str_c(c->error);
	return -1;
}

/* Sends req (freed), passes data frames to cb, returns the final "ok"
 * frame in *ok_r (the caller frees it; NULL allowed to drop it). */
static int run(struct store_client *c, struct ipc_msg *req, frame_cb *cb,
	       void *ctx, struct ipc_msg **ok_r, const char **error_r)
{
	uint32_t id = ++c->next_id;
	struct ipc_msg *m = NULL;
	const char *text;
	int r;

	c->code[0] = '\0';
	ipc_msg_set_id(req, id);
	r = ipc_client_send(c->ipc, req, c->timeout_ms, error_r);
	ipc_msg_free(&req);
	if (r < 0)
		return -1;
	for (;;) {
		if (ipc_client_recv(c->ipc, c->timeout_ms, &m, error_r) < 0)
			return -1;
		if (ipc_msg_id(m) != id) {
			ipc_msg_free(&m);
			return client_fail(c, error_r, "reply for another "
					   "request");
		}
		if (ipc_msg_type_is(m, "ok"))
			break;
		if (ipc_msg_type_is(m, "error")) {
			if (ipc_msg_get_cstr(m, "code", &text) == 0)
				str_lcpy(c->code, text, sizeof(c->code));
			if (ipc_msg_get_cstr(m, "message", &text) < 0)
				text = "error";
			r = client_fail(c, error_r, text);
			ipc_msg_free(&m);
			return r;
		}
		r = cb != NULL ? cb(m, ctx) : 0;
		ipc_msg_free(&m);
		if (r < 0)
			return client_fail(c, error_r, "bad reply frame");
	}
	if (ok_r != NULL)
		*ok_r = m;
	else
		ipc_msg_free(&m);
	return 0;
}

static struct ipc_msg *request(const char *type, const struct store_account *a)
{
	struct ipc_msg *m = ipc_msg_new(type);

	if (a != NULL) {
		ipc_msg_add_int(m, "account", a->id);
		ipc_msg_add_cstr(m, "address", a->address);
	}
	return m;
}

static int64_t int_or(const struct ipc_msg *m, const char *name, unsigned n,
		      int64_t def)
{
	int64_t v;

	return ipc_msg_get_int_nth(m, name, n, &v) == 0 ? v : def;
}

static const char *cstr_or(const struct ipc_msg *m, const char *name,
			   const char *def)
{
	const char *v;

	return ipc_msg_get_cstr(m, name, &v) == 0 ? v : def;
}

int store_deliver(struct store_client *c, const char *spool_path,
		  int64_t date, const struct store_rcpt *rcpts, size_t n,
		  struct store_rcpt_result *results_r, const char **error_r)
{
	struct ipc_msg *req = request("deliver", NULL), *ok;
	const char *status;

	ipc_msg_add_cstr(req, "file", spool_path);
	if (date > 0)
		ipc_msg_add_int(req, "date", date);
	for (size_t i = 0; i < n; i++) {
		ipc_msg_add_int(req, "rcpt_account", rcpts[i].account.id);
		ipc_msg_add_cstr(req, "rcpt_address",
				 rcpts[i].account.address);
		ipc_msg_add_cstr(req, "rcpt_folder", rcpts[i].folder != NULL ?
				 rcpts[i].folder : "");
		ipc_msg_add_int(req, "rcpt_flags", rcpts[i].flags);
		ipc_msg_add_int(req, "rcpt_quota", rcpts[i].quota);
	}
	if (run(c, req, NULL, NULL, &ok, error_r) < 0)
		return -1;
	if (ipc_msg_count(ok, "status") != n) {
		ipc_msg_free(&ok);
		return client_fail(c, error_r, "wrong number of results");
	}
	for (unsigned i = 0; i < n; i++) {
		if (ipc_msg_get_cstr_nth(ok, "status", i, &status) < 0)
			status = "error";
		if (strcmp(status, "ok") == 0)
			results_r[i].status = STORE_RCPT_OK;
		else if (strcmp(status, "overquota") == 0)
			results_r[i].status = STORE_RCPT_OVERQUOTA;
		else if (strcmp(status, "nofolder") == 0)
			results_r[i].status = STORE_RCPT_NOFOLDER;
		else
			results_r[i].status = STORE_RCPT_ERROR;
		results_r[i].uid = (uint32_t)int_or(ok, "uid", i, 0);
		results_r[i].uidvalidity =
			(uint32_t)int_or(ok, "uidvalidity", i, 0);
	}
	ipc_msg_free(&ok);
	return 0;
}

static void add_keywords(struct ipc_msg *req, const char *const *keywords,
			 size_t n)
{
	for (size_t i = 0; i < n; i++)
		ipc_msg_add_cstr(req, "keyword", keywords[i]);
}

int store_append(struct store_client *c, const struct store_account *a,
		 const char *folder, const char *spool_path, unsigned flags,
		 const char *const *keywords, size_t nkeywords, int64_t date,
		 uint32_t *uid_r, uint32_t *uidvalidity_r,
		 const char **error_r)
{
	struct ipc_msg *req = request("append", a), *ok;

	ipc_msg_add_cstr(req, "folder", folder);
	ipc_msg_add_cstr(req, "file", spool_path);
	ipc_msg_add_int(req, "flags", flags);
	add_keywords(req, keywords, nkeywords);
	if (date > 0)
		ipc_msg_add_int(req, "date", date);
	if (run(c, req, NULL, NULL, &ok, error_r) < 0)
		return -1;
	*uid_r = (uint32_t)int_or(ok, "uid", 0, 0);
	*uidvalidity_r = (uint32_t)int_or(ok, "uidvalidity", 0, 0);
	ipc_msg_free(&ok);
	return 0;
}

struct folder_ctx {
	store_folder_cb *cb;
	void *ctx;
};

static int folder_frame(struct ipc_msg *m, void *ctx)
{
	struct folder_ctx *fc = ctx;
	struct store_folder f;

	if (!ipc_msg_type_is(m, "folder"))
		return -1;
	f.name = cstr_or(m, "name", "");
	f.special_use = cstr_or(m, "special_use", "");
	f.subscribed = (int)int_or(m, "subscribed", 0, 0);
	f.uidvalidity = (uint32_t)int_or(m, "uidvalidity", 0, 0);
	f.uidnext = (uint32_t)int_or(m, "uidnext", 0, 0);
	f.highestmodseq = (uint64_t)int_or(m, "highestmodseq", 0, 0);
	return fc->cb(&f, fc->ctx);
}

int store_folder_list(struct store_client *c, const struct store_account *a,
		      store_folder_cb *cb, void *ctx, const char **error_r)
{
	struct folder_ctx fc = { cb, ctx };

	return run(c, request("folder.list", a), folder_frame, &fc, NULL,
		   error_r);
}

static int folder_simple(struct store_client *c, const char *type,
			 const struct store_account *a, const char *folder,
			 const char *name2, const char *value2,
			 const char **error_r)
{
	struct ipc_msg *req = request(type, a);

	ipc_msg_add_cstr(req, "folder", folder);
	if (name2 != NULL && value2 != NULL)
		ipc_msg_add_cstr(req, name2, value2);
	return run(c, req, NULL, NULL, NULL, error_r);
}

int store_folder_create(struct store_client *c, const struct store_account *a,
			const char *folder, const char *special_use,
			const char **error_r)
{
	return folder_simple(c, "folder.create", a, folder, "special_use",
			     special_use, error_r);
}

int store_folder_rename(struct store_client *c, const struct store_account *a,
			const char *from, const char *to,
			const char **error_r)
{
	return folder_simple(c, "folder.rename", a, from, "new_name", to,
			     error_r);
}

int store_folder_delete(struct store_client *c, const struct store_account *a,
			const char *folder, const char **error_r)
{
	return folder_simple(c, "folder.delete", a, folder, NULL, NULL,
			     error_r);
}

int store_folder_subscribe(struct store_client *c,
			   const struct store_account *a, const char *folder,
			   int subscribed, const char **error_r)
{
	return folder_simple(c, subscribed ? "folder.subscribe" :
				"folder.unsubscribe", a, folder, NULL, NULL,
			     error_r);
}

int store_status(struct store_client *c, const struct store_account *a,
		 const char *folder, struct store_status *st_r,
		 const char **error_r)
{
	struct ipc_msg *req = request("status", a), *ok;

	ipc_msg_add_cstr(req, "folder", folder);
	if (run(c, req, NULL, NULL, &ok, error_r) < 0)
		return -1;
	st_r->exists = (uint32_t)int_or(ok, "exists", 0, 0);
	st_r->unseen = (uint32_t)int_or(ok, "unseen", 0, 0);
	st_r->uidvalidity = (uint32_t)int_or(ok, "uidvalidity", 0, 0);
	st_r->uidnext = (uint32_t)int_or(ok, "uidnext", 0, 0);
	st_r->highestmodseq = (uint64_t)int_or(ok, "highestmodseq", 0, 0);
	st_r->size = (uint64_t)int_or(ok, "size", 0, 0);
	ipc_msg_free(&ok);
	return 0;
}

struct message_ctx {
	store_message_cb *cb;
	store_uid_cb *failed;
	void *ctx;
	const char *uid_type;	/* "failed" or "expunged" */
};

static int message_frame(struct ipc_msg *m, void *ctx)
{
	struct message_ctx *mc = ctx;
	struct store_message msg;
	const char *v;

	if (mc->uid_type != NULL && ipc_msg_type_is(m, mc->uid_type)) {
		for (unsigned i = 0; i < ipc_msg_count(m, "uid"); i++)
			if (mc->failed != NULL &&
			    mc->failed((uint32_t)int_or(m, "uid", i, 0),
				       mc->ctx) < 0)
				return -1;
		return 0;
	}
	if (!ipc_msg_type_is(m, "message"))
		return -1;
	memset(&msg, 0, sizeof(msg));
	msg.uid = (uint32_t)int_or(m, "uid", 0, 0);
	msg.modseq = (uint64_t)int_or(m, "modseq", 0, 0);
	msg.flags = (unsigned)int_or(m, "flags", 0, 0);
	msg.keywords = cstr_or(m, "keywords", "");
	msg.date = int_or(m, "date", 0, 0);
	msg.size = (uint64_t)int_or(m, "size", 0, 0);
	msg.blob = cstr_or(m, "blob", "");
	msg.envelope = ipc_msg_get_cstr(m, "envelope", &v) == 0 ? v : NULL;
	msg.bodystructure = ipc_msg_get_cstr(m, "bodystructure", &v) == 0 ?
				    v : NULL;
	return mc->cb != NULL ? mc->cb(&msg, mc->ctx) : 0;
}

int store_fetch(struct store_client *c, const struct store_account *a,
		const char *folder, uint32_t first, uint32_t last,
		unsigned limit, store_message_cb *cb, void *ctx,
		uint32_t *next_r, const char **error_r)
{
	struct ipc_msg *req = request("fetch", a), *ok;
	struct message_ctx mc = { cb, NULL, ctx, NULL };

	ipc_msg_add_cstr(req, "folder", folder);
	ipc_msg_add_int(req, "first", first);
	ipc_msg_add_int(req, "last", last);
	if (limit > 0)
		ipc_msg_add_int(req, "limit", limit);
	if (run(c, req, message_frame, &mc, &ok, error_r) < 0)
		return -1;
	*next_r = (uint32_t)int_or(ok, "next", 0, 0);
	ipc_msg_free(&ok);
	return 0;
}

int store_flags(struct store_client *c, const struct store_account *a,
		const char *folder, const char *uids, char mode,
		unsigned flags, const char *const *keywords, size_t nkeywords,
		uint64_t unchangedsince, store_message_cb *changed,
		store_uid_cb *failed, void *ctx, uint64_t *highestmodseq_r,
		const char **error_r)
{
	struct ipc_msg *req = request("store", a), *ok;
	struct message_ctx mc = { changed, failed, ctx, "failed" };
	char m[2] = { mode, '\0' };

	ipc_msg_add_cstr(req, "folder", folder);
	ipc_msg_add_cstr(req, "uids", uids);
	ipc_msg_add_cstr(req, "mode", m);
	ipc_msg_add_int(req, "flags", flags);
	add_keywords(req, keywords, nkeywords);
	if (unchangedsince > 0)
		ipc_msg_add_int(req, "unchangedsince",
				(int64_t)unchangedsince);
	if (run(c, req, message_frame, &mc, &ok, error_r) < 0)
		return -1;
	*highestmodseq_r = (uint64_t)int_or(ok, "highestmodseq", 0, 0);
	ipc_msg_free(&ok);
	return 0;
}

int store_expunge(struct store_client *c, const struct store_account *a,
		  const char *folder, const char *uids, store_uid_cb *cb,
		  void *ctx, uint64_t *highestmodseq_r, const char **error_r)
{
	struct ipc_msg *req = request("expunge", a), *ok;
	struct message_ctx mc = { NULL, cb, ctx, "expunged" };

	ipc_msg_add_cstr(req, "folder", folder);
	if (uids != NULL)
		ipc_msg_add_cstr(req, "uids", uids);
	if (run(c, req, message_frame, &mc, &ok, error_r) < 0)
		return -1;
	*highestmodseq_r = (uint64_t)int_or(ok, "highestmodseq", 0, 0);
	ipc_msg_free(&ok);
	return 0;
}

struct pair_ctx {
	store_pair_cb *cb;
	void *ctx;
};

static int copied_frame(struct ipc_msg *m, void *ctx)
{
	struct pair_ctx *pc = ctx;
	unsigned n = ipc_msg_count(m, "uid");

	if (!ipc_msg_type_is(m, "copied") || ipc_msg_count(m, "new_uid") != n)
		return -1;
	for (unsigned i = 0; pc->cb != NULL && i < n; i++)
		if (pc->cb((uint32_t)int_or(m, "uid", i, 0),
			   (uint32_t)int_or(m, "new_uid", i, 0), pc->ctx) < 0)
			return -1;
	return 0;
}

int store_copy(struct store_client *c, const struct store_account *a,
	       const char *folder, const char *uids, const char *to, int move,
	       store_pair_cb *pair, void *ctx,
	       struct store_copy_result *res_r, const char **error_r)
{
	struct ipc_msg *req = request(move ? "move" : "copy", a), *ok;
	struct pair_ctx pc = { pair, ctx };

	ipc_msg_add_cstr(req, "folder", folder);
	ipc_msg_add_cstr(req, "uids", uids);
	ipc_msg_add_cstr(req, "to", to);
	if (run(c, req, copied_frame, &pc, &ok, error_r) < 0)
		return -1;
	res_r->count = (uint32_t)int_or(ok, "count", 0, 0);
	res_r->uidvalidity = (uint32_t)int_or(ok, "uidvalidity", 0, 0);
	res_r->highestmodseq = (uint64_t)int_or(ok, "highestmodseq", 0, 0);
	res_r->src_highestmodseq =
		(uint64_t)int_or(ok, "src_highestmodseq", 0, 0);
	ipc_msg_free(&ok);
	return 0;
}

int store_quota_get(struct store_client *c, const struct store_account *a,
		    struct store_quota *q_r, const char **error_r)
{
	struct ipc_msg *ok;

	if (run(c, request("quota.get", a), NULL, NULL, &ok, error_r) < 0)
		return -1;
	q_r->used = (uint64_t)int_or(ok, "used", 0, 0);
	q_r->messages = (uint64_t)int_or(ok, "messages", 0, 0);
	q_r->limit = (uint64_t)int_or(ok, "limit", 0, 0);
	ipc_msg_free(&ok);
	return 0;
}

int store_quota_set(struct store_client *c, const struct store_account *a,
		    uint64_t limit, const char **error_r)
{
	struct ipc_msg *req = request("quota.set", a);

	ipc_msg_add_int(req, "limit", (int64_t)limit);
	return run(c, req, NULL, NULL, NULL, error_r);
}
