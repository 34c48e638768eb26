/* authclient.c: see authclient.h. */
#include "config.h"

#include <stdlib.h>

#include "compat.h"
#include "authclient.h"
#include "ipc.h"
#include "ipcchan.h"
#include "log.h"
#include "xalloc.h"

#define AC_PROTO "tern-authd"
#define AC_VERSION 1
#define AC_BACKOFF_MIN 100	/* ms */
#define AC_BACKOFF_MAX 5000
#define AC_STABLE_MS 1000	/* a connection up this long was a success */
#define AC_ATTEMPTS_MAX 2	/* sends of one request */
#define AC_CACHE_MAX 4096	/* entries; a full cache is dropped whole */
#define AC_CACHE_TARGETS_MAX 64	/* larger resolutions are not cached */
#define AC_CACHE_BUCKETS 1024	/* a power of two */

enum ac_kind {
	AC_LOOKUP,
	AC_RESOLVE,
	AC_DOMAIN,
	AC_AUTH,
	AC_COUNT,
	AC_NOTIFY,	/* disconnect: no callback */
	AC_GAL,
};

/* A cached positive answer; shared by the cache and the requests that
 * answer from it, freed with the last reference. */
struct ac_centry {
	struct ac_centry *next;		/* hash chain */
	unsigned int refs;
	enum ac_kind kind;		/* AC_LOOKUP, AC_RESOLVE, AC_DOMAIN */
	char *key;
	uint64_t expires;		/* uv_now() */
	struct authclient_account acct;	/* AC_LOOKUP: strings owned */
	struct authclient_resolution res;	/* AC_RESOLVE: all owned */
};

struct ac_req {
	struct ac_req *prev, *next;
	struct authclient *ac;
	enum ac_kind kind;
	uint32_t id;
	struct ipc_msg *msg;	/* the request, kept for a second send */
	union {
		authclient_account_cb *account;
		authclient_resolve_cb *resolve;
		authclient_domain_cb *domain;
		authclient_count_cb *count;
		authclient_gal_cb *gal;
	} cb;
	void *ctx;
	uv_timer_t timer;	/* the timeout, or an early failure */
	const char *fail;	/* early failure: the message */
	unsigned int attempts;
	bool sent;		/* on the current channel */
	struct ipc_msg **targets;	/* resolve: "target" replies so far;
					 * gal: "gal_entry" replies */
	size_t ntargets, targets_cap;
	char *key;		/* lookup, resolve, domain: the cache key */
	uint64_t generation;	/* of the cache when sent */
	struct ac_centry *cached;	/* answered from the cache */
};

struct authclient {
	uv_loop_t *loop;
	char *path;
	struct authclient_settings set;
	struct ipc_chan *chan;
	uv_timer_t retry;
	uint64_t backoff, connected_at;
	bool got_msg;
	bool warned;		/* the outage was logged */
	struct ac_req *head, *tail;	/* in request order */
	size_t pending;
	uint32_t next_id;
	unsigned int handles;	/* open handles; freed at 0 when freeing */
	bool freeing;
	/* The cache of positive answers: used only while authd has accepted
	 * our "watch" on the current connection, so that its "invalidate"
	 * reaches us when the directory changes. */
	struct ac_centry *buckets[AC_CACHE_BUCKETS];
	size_t centries;
	uint64_t generation;	/* bumped by every clear */
	uint64_t ttl_ms;	/* from authd; 0 = no caching */
	uint32_t watch_id;	/* our "watch" request; 0 = none */
	bool watching;
	uint64_t hits;
};

/* ---- reply schemas ---- */

#define F_END { NULL, IPC_INT, 0, 0, 0, 0 }

#define ACCOUNT_FIELDS(n) \
	{ "account_id", IPC_INT, n, 1, 0, 0 }, \
	{ "address", IPC_STR, n, 1, DIR_ADDRESS_MAX, IPC_SPEC_NO_NUL }, \
	{ "display_name", IPC_STR, n, 1, DIR_NAME_MAX * 4, IPC_SPEC_NO_NUL }, \
	{ "status", IPC_STR, n, 1, 16, IPC_SPEC_NO_NUL }, \
	{ "mailhost", IPC_STR, n, 1, DIR_NAME_MAX, IPC_SPEC_NO_NUL }, \
	{ "cos", IPC_STR, n, 1, DIR_NAME_MAX, IPC_SPEC_NO_NUL }, \
	{ "quota", IPC_INT, n, 1, 0, 0 }, \
	{ "quota_effective", IPC_INT, n, 1, 0, 0 }, \
	{ "created", IPC_INT, n, 1, 0, 0 }

static const struct ipc_field_spec spec_account[] = {
	ACCOUNT_FIELDS(1), F_END,
};
static const struct ipc_field_spec spec_auth[] = {
	{ "result", IPC_STR, 1, 1, 16, IPC_SPEC_NO_NUL },
	ACCOUNT_FIELDS(0), F_END,
};
static const struct ipc_field_spec spec_target[] = {
	{ "kind", IPC_STR, 1, 1, 16, IPC_SPEC_NO_NUL },
	{ "address", IPC_STR, 1, 1, DIR_ADDRESS_MAX, IPC_SPEC_NO_NUL },
	{ "mailhost", IPC_STR, 0, 1, DIR_NAME_MAX, IPC_SPEC_NO_NUL },
	{ "status", IPC_STR, 0, 1, 16, IPC_SPEC_NO_NUL },
	{ "account_id", IPC_INT, 0, 1, 0, 0 },
	F_END,
};
static const struct ipc_field_spec spec_resolved[] = {
	{ "local_domain", IPC_INT, 1, 1, 0, 0 },
	{ "detail", IPC_STR, 0, 1, DIR_ADDRESS_MAX, IPC_SPEC_NO_NUL },
	{ "targets", IPC_INT, 1, 1, 0, 0 },
	F_END,
};
static const struct ipc_field_spec spec_domain[] = {
	{ "exists", IPC_INT, 1, 1, 0, 0 }, F_END,
};
static const struct ipc_field_spec spec_counts[] = {
	{ "count", IPC_INT, 1, 1, 0, 0 },
	{ "rate", IPC_INT, 1, 1, 0, 0 },
	F_END,
};
static const struct ipc_field_spec spec_gal_entry[] = {
	{ "kind", IPC_STR, 1, 1, 16, IPC_SPEC_NO_NUL },
	{ "address", IPC_STR, 1, 1, DIR_ADDRESS_MAX, IPC_SPEC_NO_NUL },
	{ "display_name", IPC_STR, 1, 1, DIR_NAME_MAX * 4, IPC_SPEC_NO_NUL },
	F_END,
};
static const struct ipc_field_spec spec_gal[] = {
	{ "entries", IPC_INT, 1, 1, 0, 0 }, F_END,
};
static const struct ipc_field_spec spec_watch[] = {
	{ "ttl", IPC_INT, 1, 1, 0, 0 }, F_END,
};
static const struct ipc_field_spec spec_message[] = {
	{ "message", IPC_STR, 0, 1, 4096, IPC_SPEC_NO_NUL }, F_END,
};
static const struct ipc_field_spec spec_none[] = {
	F_END,
};

const char *authclient_status_name(enum authclient_status st)
{
	static const char *const names[] = {
		"ok", "notfound", "invalid", "authfail", "refused",
		"lockedout", "tempfail",
	};

	return (size_t)st < TERN_NELEM(names) ? names[st] : "unknown";
}

/* ---- the cache ---- */

static void centry_unref(struct ac_centry **ep)
{
	struct ac_centry *e = *ep;

	*ep = NULL;
	if (e == NULL || --e->refs > 0)
		return;
	free(e->key);
	free((char *)e->acct.address);
	free((char *)e->acct.display_name);
	free((char *)e->acct.mailhost);
	free((char *)e->acct.cos);
	for (size_t i = 0; i < e->res.ntargets; i++) {
		free((char *)e->res.targets[i].address);
		free((char *)e->res.targets[i].mailhost);
	}
	free((void *)e->res.targets);
	free((char *)e->res.detail);
	free(e);
}

static size_t cache_bucket(enum ac_kind kind, const char *key)
{
	uint64_t h = 14695981039346656037ULL ^ (unsigned)kind;

	for (; *key != '\0'; key++)
		h = (h ^ (unsigned char)*key) * 1099511628211ULL;
	return (size_t)h & (AC_CACHE_BUCKETS - 1);
}

/* Drops every entry; answers to requests sent before are not stored. */
static void cache_clear(struct authclient *ac)
{
	for (size_t i = 0; i < AC_CACHE_BUCKETS; i++) {
		while (ac->buckets[i] != NULL) {
			struct ac_centry *e = ac->buckets[i];

			ac->buckets[i] = e->next;
			centry_unref(&e);
		}
	}
	ac->centries = 0;
	ac->generation++;
}

/* Unlinks the entry of kind and key (returned, still referenced). */
static struct ac_centry *cache_unlink(struct authclient *ac,
				      enum ac_kind kind, const char *key)
{
	struct ac_centry **pp = &ac->buckets[cache_bucket(kind, key)], *e;

	for (; (e = *pp) != NULL; pp = &e->next) {
		if (e->kind == kind && strcmp(e->key, key) == 0) {
			*pp = e->next;
			ac->centries--;
			return e;
		}
	}
	return NULL;
}

static struct ac_centry *cache_find(struct authclient *ac, enum ac_kind kind,
				    const char *key)
{
	struct ac_centry *e;

	if (!ac->watching || ac->ttl_ms == 0)
		return NULL;
	for (e = ac->buckets[cache_bucket(kind, key)]; e != NULL; e = e->next)
		if (e->kind == kind && strcmp(e->key, key) == 0)
			break;
	if (e != NULL && uv_now(ac->loop) >= e->expires) {
		e = cache_unlink(ac, kind, key);
		centry_unref(&e);
	}
	return e;
}

static const char *dup_or_empty(const char *s)
{
	return xstrdup(s != NULL ? s : "");
}

/* Keeps a positive answer of req, unless the cache was cleared since req
 * was sent (the answer may predate a change). */
static void cache_put(struct authclient *ac, struct ac_req *req,
		      const struct authclient_account *acct,
		      const struct authclient_resolution *res)
{
	struct ac_centry *e, *old;

	if (req->key == NULL || req->cached != NULL || !ac->watching ||
	    ac->ttl_ms == 0 || req->generation != ac->generation ||
	    (res != NULL && res->ntargets > AC_CACHE_TARGETS_MAX))
		return;
	if (ac->centries >= AC_CACHE_MAX) {
		cache_clear(ac);
		req->generation = ac->generation;
	}
	e = xcalloc(1, sizeof(*e));
	e->refs = 1;
	e->kind = req->kind;
	e->key = xstrdup(req->key);
	e->expires = uv_now(ac->loop) + ac->ttl_ms;
	if (acct != NULL) {
		e->acct = *acct;
		e->acct.address = dup_or_empty(acct->address);
		e->acct.display_name = dup_or_empty(acct->display_name);
		e->acct.mailhost = dup_or_empty(acct->mailhost);
		e->acct.cos = dup_or_empty(acct->cos);
	}
	if (res != NULL) {
		struct authclient_target *t =
			xcalloc(res->ntargets + 1, sizeof(*t));

		for (size_t i = 0; i < res->ntargets; i++) {
			t[i] = res->targets[i];
			t[i].address = dup_or_empty(res->targets[i].address);
			t[i].mailhost = dup_or_empty(res->targets[i].mailhost);
		}
		e->res.local_domain = res->local_domain;
		e->res.detail = res->detail != NULL ? xstrdup(res->detail) :
						      NULL;
		e->res.targets = t;
		e->res.ntargets = res->ntargets;
	}
	old = cache_unlink(ac, e->kind, e->key);
	centry_unref(&old);
	e->next = ac->buckets[cache_bucket(e->kind, e->key)];
	ac->buckets[cache_bucket(e->kind, e->key)] = e;
	ac->centries++;
}

/* ---- completion ---- */

static void ac_handle_closed(struct authclient *ac)
{
	if (--ac->handles == 0 && ac->freeing) {
		free(ac->path);
		free(ac);
	}
}

static void req_timer_closed(uv_handle_t *h)
{
	struct ac_req *req = h->data;
	struct authclient *ac = req->ac;

	for (size_t i = 0; i < req->ntargets; i++)
		ipc_msg_free(&req->targets[i]);
	free(req->targets);
	ipc_msg_free(&req->msg);
	free(req->key);
	centry_unref(&req->cached);
	free(req);
	ac_handle_closed(ac);
}

static void req_unlink(struct authclient *ac, struct ac_req *req)
{
	if (req->prev != NULL)
		req->prev->next = req->next;
	else
		ac->head = req->next;
	if (req->next != NULL)
		req->next->prev = req->prev;
	else
		ac->tail = req->prev;
	req->prev = req->next = NULL;
	ac->pending--;
}

/* Ends a request with a result; the data pointers may be NULL. */
static void req_finish(struct ac_req *req, enum authclient_status st,
		       const struct authclient_account *acct,
		       const struct authclient_resolution *res,
		       unsigned int count, unsigned int rate,
		       const char *error)
{
	struct authclient *ac = req->ac;

	req_unlink(ac, req);
	uv_timer_stop(&req->timer);
	if (st == AUTHCLIENT_OK && (req->kind == AC_LOOKUP ||
				    req->kind == AC_RESOLVE ||
				    req->kind == AC_DOMAIN))
		cache_put(ac, req, req->kind == AC_LOOKUP ? acct : NULL,
			  req->kind == AC_RESOLVE ? res : NULL);
	switch (req->kind) {
	case AC_LOOKUP:
	case AC_AUTH:
		req->cb.account(st, st == AUTHCLIENT_OK ? acct : NULL, error,
				req->ctx);
		break;
	case AC_RESOLVE:
		req->cb.resolve(st, st == AUTHCLIENT_OK ? res : NULL, error,
				req->ctx);
		break;
	case AC_DOMAIN:
		req->cb.domain(st, error, req->ctx);
		break;
	case AC_COUNT:
		if (req->cb.count != NULL)
			req->cb.count(st, count, rate, error, req->ctx);
		break;
	case AC_NOTIFY:
		break;
	case AC_GAL:
		req->cb.gal(st, NULL, 0, error, req->ctx);
		break;
	}
	uv_close((uv_handle_t *)&req->timer, req_timer_closed);
}

static void req_fail(struct ac_req *req, const char *error)
{
	req_finish(req, AUTHCLIENT_TEMPFAIL, NULL, NULL, 0, 0, error);
}

static void req_timeout(uv_timer_t *t)
{
	struct ac_req *req = t->data;

	if (req->cached != NULL) {	/* an answer from the cache */
		req_finish(req, AUTHCLIENT_OK, &req->cached->acct,
			   &req->cached->res, 0, 0, NULL);
		return;
	}
	req_fail(req, req->fail != NULL ? req->fail :
					 "no answer from tern-authd in time");
}

/* ---- the connection ---- */

static void ac_connect(struct authclient *ac);

static void ac_send(struct authclient *ac, struct ac_req *req)
{
	const char *error;

	if (ac->chan == NULL || req->sent || req->msg == NULL)
		return;
	if (ipc_chan_send(ac->chan, req->msg, &error) < 0) {
		/* Too large fails; a closing channel keeps it for the next. */
		if (ipc_msg_size(req->msg) > (ac->set.max_frame != 0 ?
					      ac->set.max_frame :
					      IPC_FRAME_MAX_DEFAULT))
			req_fail(req, error);
		return;
	}
	req->sent = true;
	req->attempts++;
}

static void retry_cb(uv_timer_t *t)
{
	ac_connect(t->data);
}

static void on_msg(struct ipc_chan *chan, struct ipc_msg **msg, void *ctx);

static void on_close(struct ipc_chan *chan, const char *error, void *ctx)
{
	struct authclient *ac = ctx;
	struct ac_req *req, *next;
	/* Before the hello nothing left: the channel holds output back. */
	bool delivered = ipc_chan_ready(chan);
	bool stable = ac->got_msg ||
		      (delivered && uv_now(ac->loop) - ac->connected_at >=
					    AC_STABLE_MS);

	if (ac->chan == chan)
		ac->chan = NULL;
	/* No "invalidate" can reach us now: nothing cached is safe. */
	cache_clear(ac);
	ac->watching = false;
	ac->watch_id = 0;
	if (ac->freeing) {
		ac_handle_closed(ac);
		return;
	}
	/* One warning per outage, not one per retry. */
	if (error != NULL && (delivered || !ac->warned))
		log_warn(NULL, "authd: %s%s", error,
			 delivered ? "" : " (retrying quietly)");
	ac->warned = !delivered;
	for (req = ac->head; req != NULL; req = next) {
		next = req->next;
		for (size_t i = 0; i < req->ntargets; i++)
			ipc_msg_free(&req->targets[i]);
		req->ntargets = 0;
		if (req->sent && !delivered)
			req->attempts--;
		if (req->sent && req->attempts >= AC_ATTEMPTS_MAX)
			req_fail(req, "connection to tern-authd lost");
		else
			req->sent = false;
		if (ac->freeing)
			break;	/* a callback freed us: the rest is done */
	}
	if (ac->freeing) {
		ac_handle_closed(ac);
		return;
	}
	ac->backoff = stable ? AC_BACKOFF_MIN :
		      ac->backoff * 2 > AC_BACKOFF_MAX ? AC_BACKOFF_MAX :
							 ac->backoff * 2;
	uv_timer_start(&ac->retry, retry_cb, ac->backoff, 0);
	ac_handle_closed(ac);
}

/* Asks authd for the cache's time to live and its "invalidate" notices;
 * sent first on every new connection. */
static void watch_send(struct authclient *ac)
{
	struct ipc_msg *m = ipc_msg_new("watch");
	const char *error;

	if (++ac->next_id == 0)
		ac->next_id = 1;
	ac->watch_id = ac->next_id;
	ipc_msg_set_id(m, ac->watch_id);
	if (ipc_chan_send(ac->chan, m, &error) < 0)
		ac->watch_id = 0;
	ipc_msg_free(&m);
}

/* "watch" (the answer) or "invalidate" (the directory changed, or the
 * time to live): take the time to live, dropping what is cached for
 * "invalidate"; "error" (an authd without watches): no cache. */
static void watch_reply(struct authclient *ac, struct ipc_msg *m)
{
	const char *type = ipc_msg_type(m), *error;
	int64_t ttl = 0;

	/* The answer to "watch" finds the cache empty (cleared when the
	 * last connection closed), and requests sent on this connection
	 * before it are answered after it: they may be kept. */
	if (strcmp(type, "watch") != 0)
		cache_clear(ac);
	ac->watching = false;
	if (strcmp(type, "watch") != 0 && strcmp(type, "invalidate") != 0)
		return;
	if (ipc_msg_check(m, spec_watch, &error) < 0 ||
	    ipc_msg_get_int(m, "ttl", &ttl) < 0 || ttl < 0) {
		log_warn(NULL, "authd: bad '%s' reply", type);
		return;
	}
	ac->ttl_ms = (uint64_t)ttl;
	ac->watching = ttl > 0;
}

static void ac_connect(struct authclient *ac)
{
	struct ipc_chan_settings set = {
		.max_frame = ac->set.max_frame,
		.proto = AC_PROTO,
		.version = AC_VERSION,
		.on_msg = on_msg,
		.on_close = on_close,
		.ctx = ac,
	};
	const char *error;

	if (ac->chan != NULL || ac->freeing)
		return;
	ac->chan = ipc_chan_connect(ac->loop, ac->path, &set, &error);
	if (ac->chan == NULL) {
		log_warn(NULL, "authd: %s", error);
		uv_timer_start(&ac->retry, retry_cb, AC_BACKOFF_MAX, 0);
		return;
	}
	ac->handles++;
	ac->connected_at = uv_now(ac->loop);
	ac->got_msg = false;
	watch_send(ac);
	for (struct ac_req *req = ac->head, *next; req != NULL; req = next) {
		next = req->next;
		ac_send(ac, req);
	}
}

/* ---- replies ---- */

static int get_str(const struct ipc_msg *m, const char *name)
{
	const char *v;

	return ipc_msg_get_cstr(m, name, &v);
}

static const char *cstr_or(const struct ipc_msg *m, const char *name,
			   const char *def)
{
	const char *v;

	return ipc_msg_get_cstr(m, name, &v) == 0 ? v : def;
}

static int64_t int_or(const struct ipc_msg *m, const char *name, int64_t def)
{
	int64_t v;

	return ipc_msg_get_int(m, name, &v) == 0 ? v : def;
}

static int parse_account(const struct ipc_msg *m,
			 struct authclient_account *a)
{
	if (get_str(m, "address") < 0 ||
	    dir_account_status_parse(cstr_or(m, "status", ""), &a->status) < 0)
		return -1;
	a->id = int_or(m, "account_id", 0);
	a->address = cstr_or(m, "address", "");
	a->display_name = cstr_or(m, "display_name", "");
	a->mailhost = cstr_or(m, "mailhost", "");
	a->cos = cstr_or(m, "cos", "");
	a->quota = (uint64_t)int_or(m, "quota", 0);
	a->quota_effective = (uint64_t)int_or(m, "quota_effective", 0);
	a->created = int_or(m, "created", 0);
	return 0;
}

static void reply_auth(struct ac_req *req, struct ipc_msg *m)
{
	static const struct {
		const char *name;
		enum authclient_status st;
	} results[] = {
		{ "ok", AUTHCLIENT_OK },
		{ "authfail", AUTHCLIENT_AUTHFAIL },
		{ "refused", AUTHCLIENT_REFUSED },
		{ "lockedout", AUTHCLIENT_LOCKEDOUT },
		{ "tempfail", AUTHCLIENT_TEMPFAIL },
	};
	const char *result = cstr_or(m, "result", "");
	struct authclient_account a;

	for (size_t i = 0; i < TERN_NELEM(results); i++) {
		if (strcmp(result, results[i].name) != 0)
			continue;
		if (results[i].st == AUTHCLIENT_OK &&
		    parse_account(m, &a) < 0)
			break;
		req_finish(req, results[i].st, &a, NULL, 0, 0,
			   results[i].st == AUTHCLIENT_TEMPFAIL ?
				   "tern-authd: directory unavailable" : NULL);
		return;
	}
	req_fail(req, "tern-authd: bad authentication reply");
}

static int parse_target(const struct ipc_msg *m, struct authclient_target *t)
{
	const char *kind = cstr_or(m, "kind", "");

	memset(t, 0, sizeof(*t));
	t->address = cstr_or(m, "address", "");
	t->mailhost = cstr_or(m, "mailhost", "");
	t->account_id = int_or(m, "account_id", 0);
	if (strcmp(kind, "external") == 0) {
		t->kind = DIR_TARGET_EXTERNAL;
		return 0;
	}
	t->kind = DIR_TARGET_ACCOUNT;
	if (strcmp(kind, "account") != 0)
		return -1;
	return dir_account_status_parse(cstr_or(m, "status", ""), &t->status);
}

static void reply_resolved(struct ac_req *req, struct ipc_msg *m)
{
	struct authclient_resolution res = { 0 };
	struct authclient_target *t;

	if ((uint64_t)int_or(m, "targets", -1) != req->ntargets) {
		req_fail(req, "tern-authd: resolution lost targets");
		return;
	}
	t = xcalloc(req->ntargets + 1, sizeof(*t));
	for (size_t i = 0; i < req->ntargets; i++) {
		if (parse_target(req->targets[i], &t[i]) < 0) {
			free(t);
			req_fail(req, "tern-authd: bad target reply");
			return;
		}
	}
	res.local_domain = int_or(m, "local_domain", 0) != 0;
	res.detail = cstr_or(m, "detail", NULL);
	res.targets = t;
	res.ntargets = req->ntargets;
	req_finish(req, AUTHCLIENT_OK, NULL, &res, 0, 0, NULL);
	free(t);
}

/* The entries of a "gal" reply, from the "gal_entry" frames before it. */
static void reply_gal(struct ac_req *req, struct ipc_msg *m)
{
	struct authclient_gal_entry *e;
	struct authclient *ac = req->ac;

	if ((uint64_t)int_or(m, "entries", -1) != req->ntargets) {
		req_fail(req, "tern-authd: address book lost entries");
		return;
	}
	e = xcalloc(req->ntargets + 1, sizeof(*e));
	for (size_t i = 0; i < req->ntargets; i++) {
		const char *kind = cstr_or(req->targets[i], "kind", "");

		if (strcmp(kind, "account") != 0 && strcmp(kind, "list") != 0) {
			free(e);
			req_fail(req, "tern-authd: bad address book entry");
			return;
		}
		e[i].kind = kind[0] == 'l' ? DIR_GAL_LIST : DIR_GAL_ACCOUNT;
		e[i].address = cstr_or(req->targets[i], "address", "");
		e[i].display_name = cstr_or(req->targets[i], "display_name",
					    "");
	}
	/* req_finish() would call back without the entries: by hand. */
	req_unlink(ac, req);
	uv_timer_stop(&req->timer);
	req->cb.gal(AUTHCLIENT_OK, e, req->ntargets, NULL, req->ctx);
	uv_close((uv_handle_t *)&req->timer, req_timer_closed);
	free(e);
}

/* "target" and "gal_entry" replies are kept until their "resolved" or
 * "gal". */
static void reply_target(struct ac_req *req, struct ipc_msg **msg)
{
	if (req->ntargets >= (req->kind == AC_GAL ? DIR_GAL_LIMIT_MAX :
			      DIR_EXPAND_MAX)) {
		req_fail(req, "tern-authd: too many targets");
		return;
	}
	if (req->ntargets == req->targets_cap) {
		req->targets_cap = req->targets_cap * 2 + 16;
		req->targets = xrealloc(req->targets, req->targets_cap *
						      sizeof(*req->targets));
	}
	req->targets[req->ntargets++] = *msg;
	*msg = NULL;
}

struct reply_type {
	const char *type;
	const struct ipc_field_spec *spec;
};

static const struct reply_type reply_types[] = {
	{ "account", spec_account }, { "auth", spec_auth },
	{ "target", spec_target }, { "resolved", spec_resolved },
	{ "domain", spec_domain }, { "connections", spec_counts },
	{ "notfound", spec_none }, { "invalid", spec_message },
	{ "tempfail", spec_message }, { "error", spec_message },
	{ "ok", spec_none }, { "gal_entry", spec_gal_entry },
	{ "gal", spec_gal },
};

/* 0 when type is a reply that kind may receive. */
static int reply_fits(enum ac_kind kind, const char *type)
{
	static const char *const ok[] = {
		[AC_LOOKUP] = " account notfound ",
		[AC_RESOLVE] = " target resolved notfound invalid ",
		[AC_DOMAIN] = " domain invalid ",
		[AC_AUTH] = " auth ",
		[AC_COUNT] = " connections ",
		[AC_NOTIFY] = " connections ok ",
		[AC_GAL] = " gal gal_entry invalid ",
	};
	const char *p = strstr(ok[kind], type);
	size_t n = strlen(type);

	if (strcmp(type, "tempfail") == 0 || strcmp(type, "error") == 0)
		return 0;
	return p != NULL && p[-1] == ' ' && p[n] == ' ' ? 0 : -1;
}

static void reply_dispatch(struct ac_req *req, struct ipc_msg **msg)
{
	struct ipc_msg *m = *msg;
	const char *type = ipc_msg_type(m);
	struct authclient_account a;
	bool exists;

	if (strcmp(type, "tempfail") == 0 || strcmp(type, "error") == 0) {
		req_fail(req, cstr_or(m, "message", type));
	} else if (strcmp(type, "notfound") == 0) {
		req_finish(req, AUTHCLIENT_NOTFOUND, NULL, NULL, 0, 0, NULL);
	} else if (strcmp(type, "invalid") == 0) {
		req_finish(req, AUTHCLIENT_INVALID, NULL, NULL, 0, 0,
			   cstr_or(m, "message", "invalid"));
	} else if (strcmp(type, "account") == 0) {
		if (parse_account(m, &a) < 0)
			req_fail(req, "tern-authd: bad account reply");
		else
			req_finish(req, AUTHCLIENT_OK, &a, NULL, 0, 0, NULL);
	} else if (strcmp(type, "auth") == 0) {
		reply_auth(req, m);
	} else if (strcmp(type, "target") == 0 ||
		   strcmp(type, "gal_entry") == 0) {
		reply_target(req, msg);
	} else if (strcmp(type, "gal") == 0) {
		reply_gal(req, m);
	} else if (strcmp(type, "resolved") == 0) {
		reply_resolved(req, m);
	} else if (strcmp(type, "domain") == 0) {
		exists = int_or(m, "exists", 0) != 0;
		req_finish(req, exists ? AUTHCLIENT_OK : AUTHCLIENT_NOTFOUND,
			   NULL, NULL, 0, 0, NULL);
	} else if (strcmp(type, "connections") == 0) {
		req_finish(req, AUTHCLIENT_OK, NULL, NULL,
			   (unsigned int)int_or(m, "count", 0),
			   (unsigned int)int_or(m, "rate", 0), NULL);
	} else {
		req_finish(req, AUTHCLIENT_OK, NULL, NULL, 0, 0, NULL);
	}
}

static void on_msg(struct ipc_chan *chan, struct ipc_msg **msg, void *ctx)
{
	struct authclient *ac = ctx;
	struct ipc_msg *m = *msg;
	const struct reply_type *rt = NULL;
	struct ac_req *req;
	const char *error;

	ac->got_msg = true;
	if (ac->watch_id != 0 && ipc_msg_id(m) == ac->watch_id) {
		watch_reply(ac, m);
		return;
	}
	for (req = ac->head; req != NULL; req = req->next) {
		if (req->id == ipc_msg_id(m) && req->sent)
			break;
	}
	for (size_t i = 0; i < TERN_NELEM(reply_types); i++) {
		if (strcmp(reply_types[i].type, ipc_msg_type(m)) == 0)
			rt = &reply_types[i];
	}
	if (req == NULL) {
		log_debug(NULL, "authd: reply '%s' to no request",
			  ipc_msg_type(m));
		return;
	}
	if (rt == NULL || reply_fits(req->kind, rt->type) < 0) {
		log_warn(NULL, "authd: unexpected reply '%s'",
			 ipc_msg_type(m));
		req_fail(req, "tern-authd: unexpected reply");
		return;
	}
	if (ipc_msg_check(m, rt->spec, &error) < 0) {
		log_warn(NULL, "authd: %s", error);
		req_fail(req, "tern-authd: malformed reply");
		return;
	}
	reply_dispatch(req, msg);
}

/* ---- requests ---- */

static struct ac_req *req_new(struct authclient *ac, enum ac_kind kind,
			      const char *type, void *ctx)
{
	struct ac_req *req = xcalloc(1, sizeof(*req));

	req->ac = ac;
	req->kind = kind;
	req->ctx = ctx;
	if (++ac->next_id == 0)
		ac->next_id = 1;
	req->id = ac->next_id;
	req->msg = ipc_msg_new(type);
	ipc_msg_set_id(req->msg, req->id);
	uv_timer_init(ac->loop, &req->timer);
	req->timer.data = req;
	ac->handles++;
	return req;
}

/* Queues req and sends it when connected; over the bound, or after
 * authclient_free, it fails from the loop. */
static void req_enqueue(struct authclient *ac, struct ac_req *req)
{
	req->prev = ac->tail;
	if (ac->tail != NULL)
		ac->tail->next = req;
	else
		ac->head = req;
	ac->tail = req;
	ac->pending++;
}

static void req_submit(struct authclient *ac, struct ac_req *req)
{
	uint64_t timeout = ac->set.timeout_ms;

	req_enqueue(ac, req);
	if (ac->freeing || ac->pending > ac->set.queue_max) {
		req->fail = ac->freeing ? "authclient closed" :
					  "too many requests waiting for "
					  "tern-authd";
		timeout = 0;
		ipc_msg_free(&req->msg);
	}
	uv_timer_start(&req->timer, req_timeout, timeout, 0);
	if (req->msg == NULL)
		return;
	if (ac->chan == NULL && !uv_is_active((uv_handle_t *)&ac->retry))
		ac_connect(ac);
	else
		ac_send(ac, req);
}

/* A lookup, resolve or domain request: answered from the cache (from the
 * loop, at once) or sent.  The caller sets the callback, then submits. */
static struct ac_req *req_cacheable(struct authclient *ac, enum ac_kind kind,
				    const char *type, const char *field,
				    const char *key, void *ctx)
{
	struct ac_centry *e = ac->freeing ? NULL :
			      cache_find(ac, kind, key);
	struct ac_req *req = req_new(ac, kind, type, ctx);

	req->key = xstrdup(key);
	req->generation = ac->generation;
	if (e != NULL) {
		e->refs++;
		req->cached = e;
		ipc_msg_free(&req->msg);
		ac->hits++;
	} else {
		ipc_msg_add_cstr(req->msg, field, key);
	}
	return req;
}

static void req_submit_cacheable(struct authclient *ac, struct ac_req *req)
{
	if (req->cached == NULL) {
		req_submit(ac, req);
		return;
	}
	req_enqueue(ac, req);
	uv_timer_start(&req->timer, req_timeout, 0, 0);
}

void authclient_lookup(struct authclient *ac, const char *address,
		       authclient_account_cb *cb, void *ctx)
{
	struct ac_req *req = req_cacheable(ac, AC_LOOKUP, "lookup", "address",
					   address, ctx);

	req->cb.account = cb;
	req_submit_cacheable(ac, req);
}

void authclient_resolve(struct authclient *ac, const char *address,
			authclient_resolve_cb *cb, void *ctx)
{
	struct ac_req *req = req_cacheable(ac, AC_RESOLVE, "resolve",
					   "address", address, ctx);

	req->cb.resolve = cb;
	req_submit_cacheable(ac, req);
}

void authclient_domain(struct authclient *ac, const char *domain,
		       authclient_domain_cb *cb, void *ctx)
{
	struct ac_req *req = req_cacheable(ac, AC_DOMAIN, "domain", "domain",
					   domain, ctx);

	req->cb.domain = cb;
	req_submit_cacheable(ac, req);
}

size_t authclient_cache_hits(const struct authclient *ac)
{
	return (size_t)ac->hits;
}

void authclient_gal_search(struct authclient *ac, const char *text,
			   unsigned int limit, authclient_gal_cb *cb,
			   void *ctx)
{
	struct ac_req *req = req_new(ac, AC_GAL, "gal", ctx);

	req->cb.gal = cb;
	ipc_msg_add_cstr(req->msg, "text", text);
	if (limit > 0)
		ipc_msg_add_int(req->msg, "limit", limit);
	req_submit(ac, req);
}

void authclient_authenticate(struct authclient *ac, const char *user,
			     const char *password, const char *service,
			     const char *rip, authclient_account_cb *cb,
			     void *ctx)
{
	struct ac_req *req = req_new(ac, AC_AUTH, "authenticate", ctx);

	req->cb.account = cb;
	ipc_msg_add_cstr(req->msg, "user", user);
	ipc_msg_add_cstr(req->msg, "password", password);
	ipc_msg_add_cstr(req->msg, "service", service);
	ipc_msg_add_cstr(req->msg, "rip", rip != NULL ? rip : "");
	req_submit(ac, req);
}

static void count_request(struct authclient *ac, enum ac_kind kind,
			  const char *type, const char *service,
			  const char *rip, authclient_count_cb *cb, void *ctx)
{
	struct ac_req *req = req_new(ac, kind, type, ctx);

	req->cb.count = cb;
	ipc_msg_add_cstr(req->msg, "service", service);
	ipc_msg_add_cstr(req->msg, "rip", rip);
	req_submit(ac, req);
}

void authclient_connect_notify(struct authclient *ac, const char *service,
			       const char *rip, authclient_count_cb *cb,
			       void *ctx)
{
	count_request(ac, AC_COUNT, "connect", service, rip, cb, ctx);
}

void authclient_disconnect_notify(struct authclient *ac, const char *service,
				  const char *rip)
{
	count_request(ac, AC_NOTIFY, "disconnect", service, rip, NULL, NULL);
}

void authclient_connections(struct authclient *ac, const char *service,
			    const char *rip, authclient_count_cb *cb,
			    void *ctx)
{
	count_request(ac, AC_COUNT, "connections", service, rip, cb, ctx);
}

void authclient_event(struct authclient *ac, const char *event,
		      const char *who, unsigned int n,
		      authclient_count_cb *cb, void *ctx)
{
	struct ac_req *req = req_new(ac, AC_COUNT, "event", ctx);

	req->cb.count = cb;
	ipc_msg_add_cstr(req->msg, "service", event);
	ipc_msg_add_cstr(req->msg, "who", who);
	ipc_msg_add_int(req->msg, "n", n);
	req_submit(ac, req);
}

/* ---- life ---- */

struct authclient *authclient_new(uv_loop_t *loop, const char *socket_path,
				  const struct authclient_settings *set)
{
	struct authclient *ac = xcalloc(1, sizeof(*ac));

	ac->loop = loop;
	ac->path = xstrdup(socket_path);
	if (set != NULL)
		ac->set = *set;
	if (ac->set.timeout_ms == 0)
		ac->set.timeout_ms = AUTHCLIENT_TIMEOUT_DEFAULT;
	if (ac->set.queue_max == 0)
		ac->set.queue_max = AUTHCLIENT_QUEUE_DEFAULT;
	ac->backoff = AC_BACKOFF_MIN;
	uv_timer_init(loop, &ac->retry);
	ac->retry.data = ac;
	ac->handles = 1;
	ac_connect(ac);
	return ac;
}

static void retry_closed(uv_handle_t *h)
{
	ac_handle_closed(h->data);
}

void authclient_free(struct authclient **acp)
{
	struct authclient *ac = *acp;

	*acp = NULL;
	if (ac == NULL || ac->freeing)
		return;
	ac->freeing = true;
	while (ac->head != NULL)
		req_fail(ac->head, "authclient closed");
	cache_clear(ac);
	ipc_chan_close(&ac->chan);
	uv_close((uv_handle_t *)&ac->retry, retry_closed);
}

size_t authclient_pending(const struct authclient *ac)
{
	return ac->pending;
}

bool authclient_connected(const struct authclient *ac)
{
	return ac->chan != NULL && ipc_chan_ready(ac->chan);
}
