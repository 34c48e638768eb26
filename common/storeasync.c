/* storeasync.c: see storeasync.h. */
#include "config.h"

#include <stdlib.h>

#include "compat.h"
#include "ipc.h"
#include "ipcchan.h"
#include "log.h"
#include "storeasync.h"
#include "xalloc.h"

#define SA_BACKOFF_MIN 100	/* ms */
#define SA_BACKOFF_MAX 5000
#define SA_STABLE_MS 1000	/* a connection up this long was a success */
#define SA_ATTEMPTS_MAX 2	/* sends of one idempotent request */
#define SA_CODE_MAX 32
#define SA_MESSAGE_MAX 4096

struct sa_req {
	struct sa_req *prev, *next;
	struct storeasync *sa;
	uint32_t id;
	unsigned flags;
	struct ipc_msg *msg;	/* the request, kept for a second send */
	storeasync_done_cb *done;
	storeasync_deliver_cb *deliver;	/* deliver requests */
	size_t nrcpts;			/* deliver: recipients sent */
	void *ctx;
	uv_timer_t timer;	/* the timeout, or an early failure */
	const char *fail;	/* early failure: the message */
	unsigned int attempts;
	bool sent;		/* on the current channel, unanswered */
	struct ipc_msg **frames;	/* data frames so far */
	size_t nframes, frames_cap;
};

struct storeasync {
	uv_loop_t *loop;
	char *path;
	struct storeasync_settings set;
	struct ipc_chan *chan;
	uv_timer_t retry;
	uint64_t backoff, connected_at, tried_at;
	bool got_msg;
	bool warned;		/* the outage was logged */
	struct sa_req *head, *tail;	/* in request order */
	size_t pending, inflight;
	uint32_t next_id;
	unsigned int handles;	/* open handles; freed at 0 when freeing */
	bool freeing;
	storeasync_notify_cb *notify;	/* frames with id 0, and losses */
	void *notify_ctx;
};

#define F_END { NULL, IPC_INT, 0, 0, 0, 0 }

static const struct ipc_field_spec spec_error[] = {
	{ "code", IPC_STR, 1, 1, SA_CODE_MAX, IPC_SPEC_NO_NUL },
	{ "message", IPC_STR, 0, 1, SA_MESSAGE_MAX, IPC_SPEC_NO_NUL },
	F_END,
};

static const struct ipc_field_spec spec_delivered[] = {
	{ "blob", IPC_STR, 1, 1, 64, IPC_SPEC_NO_NUL },
	{ "size", IPC_INT, 1, 1, 0, 0 },
	{ "status", IPC_STR, 0, STOREASYNC_RCPT_MAX, 16, IPC_SPEC_NO_NUL },
	{ "uid", IPC_INT, 0, STOREASYNC_RCPT_MAX, 0, 0 },
	{ "uidvalidity", IPC_INT, 0, STOREASYNC_RCPT_MAX, 0, 0 },
	{ "message", IPC_STR, 0, STOREASYNC_RCPT_MAX, SA_MESSAGE_MAX,
	  IPC_SPEC_NO_NUL },
	F_END,
};

const char *storeasync_status_name(enum storeasync_status st)
{
	static const char *const names[] = { "ok", "error", "tempfail" };

	return (size_t)st < TERN_NELEM(names) ? names[st] : "unknown";
}

/* ---- completion ---- */

static void sa_handle_closed(struct storeasync *sa)
{
	if (--sa->handles == 0 && sa->freeing) {
		free(sa->path);
		free(sa);
	}
}

static void req_drop_frames(struct sa_req *req)
{
	for (size_t i = 0; i < req->nframes; i++)
		ipc_msg_free(&req->frames[i]);
	req->nframes = 0;
}

static void req_timer_closed(uv_handle_t *h)
{
	struct sa_req *req = h->data;
	struct storeasync *sa = req->sa;

	req_drop_frames(req);
	free(req->frames);
	ipc_msg_free(&req->msg);
	free(req);
	sa_handle_closed(sa);
}

static void req_unlink(struct storeasync *sa, struct sa_req *req)
{
	if (req->prev != NULL)
		req->prev->next = req->next;
	else
		sa->head = req->next;
	if (req->next != NULL)
		req->next->prev = req->prev;
	else
		sa->tail = req->prev;
	req->prev = req->next = NULL;
	sa->pending--;
	if (req->sent)
		sa->inflight--;
}

static void sa_pump(struct storeasync *sa);

static const char *cstr_or(const struct ipc_msg *m, const char *name,
			   const char *def)
{
	const char *v;

	return m != NULL && ipc_msg_get_cstr(m, name, &v) == 0 ? v : def;
}

/* Parses a deliver "ok" answer; -1 when it does not fit the request. */
static int parse_delivery(const struct sa_req *req, const struct ipc_msg *m,
			  struct storeasync_delivery *d,
			  struct storeasync_rcpt_result *res)
{
	static const char *const words[] = {
		[STOREASYNC_RCPT_OK] = "ok",
		[STOREASYNC_RCPT_OVERQUOTA] = "overquota",
		[STOREASYNC_RCPT_NOFOLDER] = "nofolder",
		[STOREASYNC_RCPT_ERROR] = "error",
	};
	const char *status;
	int64_t size, uid, uidv;
	size_t n = req->nrcpts, w;

	if (ipc_msg_count(m, "status") != n || ipc_msg_count(m, "uid") != n ||
	    ipc_msg_count(m, "uidvalidity") != n ||
	    ipc_msg_count(m, "message") != n ||
	    ipc_msg_get_cstr(m, "blob", &d->blob) < 0 ||
	    ipc_msg_get_int(m, "size", &size) < 0 || size < 0)
		return -1;
	d->size = (uint64_t)size;
	for (size_t i = 0; i < n; i++) {
		if (ipc_msg_get_cstr_nth(m, "status", (unsigned)i,
					 &status) < 0 ||
		    ipc_msg_get_int_nth(m, "uid", (unsigned)i, &uid) < 0 ||
		    ipc_msg_get_int_nth(m, "uidvalidity", (unsigned)i,
					&uidv) < 0 ||
		    ipc_msg_get_cstr_nth(m, "message", (unsigned)i,
					 &res[i].message) < 0 ||
		    uid < 0 || uid > UINT32_MAX || uidv < 0 ||
		    uidv > UINT32_MAX)
			return -1;
		for (w = 0; w < TERN_NELEM(words); w++) {
			if (strcmp(status, words[w]) == 0)
				break;
		}
		/* An unknown word from a newer store counts as an error. */
		res[i].status = w < TERN_NELEM(words) ?
					(enum storeasync_rcpt_status)w :
					STOREASYNC_RCPT_ERROR;
		res[i].uid = (uint32_t)uid;
		res[i].uidvalidity = (uint32_t)uidv;
	}
	d->results = res;
	d->nresults = n;
	return 0;
}

/* The store did not take the file after these errors (protocol). */
static bool code_leaves_file(const char *code)
{
	return strcmp(code, "unknown") == 0 || strcmp(code, "invalid") == 0 ||
	       strcmp(code, "busy") == 0;
}

static void finish_deliver(struct sa_req *req, enum storeasync_status st,
			   const struct ipc_msg *final, const char *code,
			   const char *error, bool file_ours)
{
	struct storeasync_rcpt_result *res;
	struct storeasync_delivery d;

	if (st != STOREASYNC_OK) {
		req->deliver(st, NULL, file_ours, code, error, req->ctx);
		return;
	}
	res = xcalloc(req->nrcpts + 1, sizeof(*res));
	if (parse_delivery(req, final, &d, res) < 0) {
		log_warn(NULL, "stored: malformed deliver answer");
		req->deliver(STOREASYNC_TEMPFAIL, NULL, false, "",
			     "tern-stored: malformed deliver answer",
			     req->ctx);
	} else {
		req->deliver(STOREASYNC_OK, &d, false, "", NULL, req->ctx);
	}
	free(res);
}

/* Ends a request.  final is NULL for TEMPFAIL. */
static void req_finish(struct sa_req *req, enum storeasync_status st,
		       const struct ipc_msg *final, const char *error,
		       bool file_ours)
{
	struct storeasync *sa = req->sa;
	const char *code = st == STOREASYNC_ERROR ?
				   cstr_or(final, "code", "") : "";

	if (st == STOREASYNC_ERROR) {
		error = cstr_or(final, "message", code);
		file_ours = code_leaves_file(code);
	}
	req_unlink(sa, req);
	uv_timer_stop(&req->timer);
	if (req->deliver != NULL)
		finish_deliver(req, st, final, code, error, file_ours);
	else
		req->done(st, req->frames, req->nframes, final, code, error,
			  req->ctx);
	uv_close((uv_handle_t *)&req->timer, req_timer_closed);
	if (!sa->freeing)
		sa_pump(sa);
}

static void req_fail(struct sa_req *req, const char *error, bool file_ours)
{
	req_finish(req, STOREASYNC_TEMPFAIL, NULL, error, file_ours);
}

static void req_timeout(uv_timer_t *t)
{
	struct sa_req *req = t->data;

	if (req->fail != NULL)
		req_fail(req, req->fail, true);
	else
		req_fail(req, "no answer from tern-stored in time",
			 !req->sent);
}

/* ---- the connection ---- */

static void sa_connect(struct storeasync *sa);

static void sa_send(struct storeasync *sa, struct sa_req *req)
{
	const char *error;

	if (sa->chan == NULL || req->sent || req->msg == NULL)
		return;
	if (ipc_chan_send(sa->chan, req->msg, &error) < 0) {
		/* Too large fails; a closing channel keeps it for the next. */
		if (ipc_msg_size(req->msg) > (sa->set.max_frame != 0 ?
					      sa->set.max_frame :
					      IPC_FRAME_MAX_DEFAULT))
			req_fail(req, error, true);
		return;
	}
	req->sent = true;
	req->attempts++;
	sa->inflight++;
}

/* Sends waiting requests while the in-flight bound allows. */
static void sa_pump(struct storeasync *sa)
{
	struct sa_req *req, *next;

	if (sa->chan == NULL)
		return;
	for (req = sa->head; req != NULL && !sa->freeing; req = next) {
		next = req->next;
		if (sa->inflight >= sa->set.inflight_max || sa->chan == NULL)
			break;
		sa_send(sa, req);
	}
}

static void retry_cb(uv_timer_t *t)
{
	sa_connect(t->data);
}

static void on_msg(struct ipc_chan *chan, struct ipc_msg **msg, void *ctx);

static void on_close(struct ipc_chan *chan, const char *error, void *ctx)
{
	struct storeasync *sa = ctx;
	struct sa_req *req, *next;
	/* Before the hello nothing left: the channel holds output back. */
	bool delivered = ipc_chan_ready(chan);
	bool stable = sa->got_msg ||
		      (delivered && uv_now(sa->loop) - sa->connected_at >=
					    SA_STABLE_MS);

	if (sa->chan == chan)
		sa->chan = NULL;
	if (sa->freeing) {
		sa_handle_closed(sa);
		return;
	}
	if (error != NULL && (delivered || !sa->warned))
		log_warn(NULL, "stored: %s%s", error,
			 delivered ? "" : " (retrying quietly)");
	else if (error == NULL && delivered)
		log_warn(NULL, "stored: connection closed by tern-stored");
	sa->warned = !delivered;
	/* The retry timer first: requests made by the callbacks below wait
	 * for it instead of opening a channel in the middle of this loop. */
	sa->backoff = stable ? SA_BACKOFF_MIN :
		      sa->backoff * 2 > SA_BACKOFF_MAX ? SA_BACKOFF_MAX :
							 sa->backoff * 2;
	uv_timer_start(&sa->retry, retry_cb, sa->backoff, 0);
	if (delivered && sa->notify != NULL) {
		sa->notify(NULL, sa->notify_ctx);	/* watches are gone */
		if (sa->freeing) {
			sa_handle_closed(sa);
			return;
		}
	}
	for (req = sa->head; req != NULL; req = next) {
		next = req->next;
		req_drop_frames(req);
		if (!req->sent)
			continue;
		if (!delivered)
			req->attempts--;
		if (delivered && ((req->flags & STOREASYNC_IDEMPOTENT) == 0 ||
				  req->attempts >= SA_ATTEMPTS_MAX)) {
			req_fail(req, "connection to tern-stored lost", true);
		} else {
			req->sent = false;
			sa->inflight--;
		}
		if (sa->freeing)
			break;	/* a callback freed us: the rest is done */
	}
	sa_handle_closed(sa);
}

static void sa_connect(struct storeasync *sa)
{
	struct ipc_chan_settings set = {
		.max_frame = sa->set.max_frame,
		.proto = STOREASYNC_PROTO,
		.version = STOREASYNC_VERSION,
		.on_msg = on_msg,
		.on_close = on_close,
		.ctx = sa,
	};
	const char *error;

	if (sa->chan != NULL || sa->freeing)
		return;
	sa->tried_at = uv_now(sa->loop);
	sa->chan = ipc_chan_connect(sa->loop, sa->path, &set, &error);
	if (sa->chan == NULL) {
		log_warn(NULL, "stored: %s", error);
		uv_timer_start(&sa->retry, retry_cb, SA_BACKOFF_MAX, 0);
		return;
	}
	sa->handles++;
	sa->connected_at = uv_now(sa->loop);
	sa->got_msg = false;
	sa_pump(sa);
}

/* ---- answers ---- */

static void on_msg(struct ipc_chan *chan, struct ipc_msg **msg, void *ctx)
{
	struct storeasync *sa = ctx;
	struct ipc_msg *m = *msg;
	const char *type = ipc_msg_type(m), *error;
	struct sa_req *req;

	sa->got_msg = true;
	if (ipc_msg_id(m) == 0) {
		if (sa->notify != NULL)
			sa->notify(m, sa->notify_ctx);
		else
			log_debug(NULL, "stored: unexpected '%s' frame", type);
		return;
	}
	for (req = sa->head; req != NULL; req = req->next) {
		if (req->id == ipc_msg_id(m) && req->sent)
			break;
	}
	if (req == NULL) {
		log_debug(NULL, "stored: answer '%s' to no request", type);
		return;
	}
	if (strcmp(type, "error") == 0) {
		if (ipc_msg_check(m, spec_error, &error) < 0) {
			log_warn(NULL, "stored: %s", error);
			req_fail(req, "tern-stored: malformed error answer",
				 false);
			return;
		}
		req_finish(req, STOREASYNC_ERROR, m, NULL, false);
	} else if (strcmp(type, "ok") == 0) {
		if (req->deliver != NULL &&
		    ipc_msg_check(m, spec_delivered, &error) < 0) {
			log_warn(NULL, "stored: %s", error);
			req_fail(req, "tern-stored: malformed deliver answer",
				 false);
			return;
		}
		req_finish(req, STOREASYNC_OK, m, NULL, false);
	} else if (req->nframes >= STOREASYNC_DATA_MAX) {
		req_fail(req, "tern-stored: answer too long", false);
	} else {
		if (req->nframes == req->frames_cap) {
			req->frames_cap = req->frames_cap * 2 + 8;
			req->frames = xrealloc(req->frames,
					       req->frames_cap *
						       sizeof(*req->frames));
		}
		req->frames[req->nframes++] = m;
		*msg = NULL;
	}
}

/* ---- requests ---- */

static struct sa_req *req_new(struct storeasync *sa, struct ipc_msg **msg,
			      unsigned flags, void *ctx)
{
	struct sa_req *req = xcalloc(1, sizeof(*req));

	req->sa = sa;
	req->flags = flags;
	req->ctx = ctx;
	if (++sa->next_id == 0)
		sa->next_id = 1;
	req->id = sa->next_id;
	req->msg = *msg;
	*msg = NULL;
	ipc_msg_set_id(req->msg, req->id);
	uv_timer_init(sa->loop, &req->timer);
	req->timer.data = req;
	sa->handles++;
	return req;
}

/* Queues req and sends it when connected and under the in-flight bound;
 * over the queue bound, or after storeasync_free, it fails from the loop. */
static void req_submit(struct storeasync *sa, struct sa_req *req)
{
	uint64_t timeout = sa->set.timeout_ms;

	req->prev = sa->tail;
	if (sa->tail != NULL)
		sa->tail->next = req;
	else
		sa->head = req;
	sa->tail = req;
	sa->pending++;
	if (sa->freeing || sa->pending > sa->set.queue_max) {
		req->fail = sa->freeing ? "storeasync closed" :
					  "too many requests waiting for "
					  "tern-stored";
		timeout = 0;
		ipc_msg_free(&req->msg);
	}
	uv_timer_start(&req->timer, req_timeout, timeout, 0);
	if (req->msg == NULL)
		return;
	if (sa->chan == NULL &&
	    (!uv_is_active((uv_handle_t *)&sa->retry) ||
	     uv_now(sa->loop) - sa->tried_at >= SA_BACKOFF_MIN)) {
		/* A new request is worth a try at once (the store may be
		 * back), at most every SA_BACKOFF_MIN. */
		uv_timer_stop(&sa->retry);
		sa_connect(sa);
	} else {
		sa_pump(sa);
	}
}

void storeasync_request(struct storeasync *sa, struct ipc_msg **msg,
			unsigned flags, storeasync_done_cb *cb, void *ctx)
{
	struct sa_req *req = req_new(sa, msg, flags, ctx);

	req->done = cb;
	req_submit(sa, req);
}

void storeasync_deliver(struct storeasync *sa, const char *file, int64_t date,
			const struct storeasync_rcpt *rcpts, size_t n,
			storeasync_deliver_cb *cb, void *ctx)
{
	storeasync_deliver_key(sa, file, date, NULL, rcpts, n, cb, ctx);
}

void storeasync_deliver_key(struct storeasync *sa, const char *file,
			    int64_t date, const char *key,
			    const struct storeasync_rcpt *rcpts, size_t n,
			    storeasync_deliver_cb *cb, void *ctx)
{
	struct ipc_msg *m = ipc_msg_new("deliver");
	struct sa_req *req;

	ipc_msg_add_cstr(m, "file", file);
	if (date > 0)
		ipc_msg_add_int(m, "date", date);
	if (key != NULL && key[0] != '\0')
		ipc_msg_add_cstr(m, "key", key);
	for (size_t i = 0; i < n && i < STOREASYNC_RCPT_MAX; i++) {
		ipc_msg_add_int(m, "rcpt_account", rcpts[i].account);
		ipc_msg_add_cstr(m, "rcpt_address", rcpts[i].address);
		ipc_msg_add_cstr(m, "rcpt_folder", rcpts[i].folder != NULL ?
							   rcpts[i].folder :
							   "");
		ipc_msg_add_int(m, "rcpt_flags", rcpts[i].flags);
		ipc_msg_add_int(m, "rcpt_quota", rcpts[i].quota);
	}
	req = req_new(sa, &m, 0, ctx);
	req->deliver = cb;
	req->nrcpts = n;
	if (n == 0 || n > STOREASYNC_RCPT_MAX) {
		/* Fails from the loop like any early failure. */
		req->fail = "bad recipient count for a delivery";
		ipc_msg_free(&req->msg);
	}
	req_submit(sa, req);
}

/* ---- life ---- */

struct storeasync *storeasync_new(uv_loop_t *loop, const char *socket_path,
				  const struct storeasync_settings *set)
{
	struct storeasync *sa = xcalloc(1, sizeof(*sa));

	sa->loop = loop;
	sa->path = xstrdup(socket_path);
	if (set != NULL)
		sa->set = *set;
	if (sa->set.timeout_ms == 0)
		sa->set.timeout_ms = STOREASYNC_TIMEOUT_DEFAULT;
	if (sa->set.queue_max == 0)
		sa->set.queue_max = STOREASYNC_QUEUE_DEFAULT;
	if (sa->set.inflight_max == 0)
		sa->set.inflight_max = STOREASYNC_INFLIGHT_DEFAULT;
	sa->backoff = SA_BACKOFF_MIN;
	uv_timer_init(loop, &sa->retry);
	sa->retry.data = sa;
	sa->handles = 1;
	sa_connect(sa);
	return sa;
}

static void retry_closed(uv_handle_t *h)
{
	sa_handle_closed(h->data);
}

void storeasync_free(struct storeasync **sap)
{
	struct storeasync *sa = *sap;

	*sap = NULL;
	if (sa == NULL || sa->freeing)
		return;
	sa->freeing = true;
	while (sa->head != NULL)
		req_fail(sa->head, "storeasync closed", !sa->head->sent);
	ipc_chan_close(&sa->chan);
	uv_close((uv_handle_t *)&sa->retry, retry_closed);
}

void storeasync_set_notify(struct storeasync *sa, storeasync_notify_cb *cb,
			   void *ctx)
{
	sa->notify = cb;
	sa->notify_ctx = ctx;
}

size_t storeasync_pending(const struct storeasync *sa)
{
	return sa->pending;
}

bool storeasync_connected(const struct storeasync *sa)
{
	return sa->chan != NULL && ipc_chan_ready(sa->chan);
}
