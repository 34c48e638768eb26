/*
 * dest.c: one delivery destination (the local tern-lmtpd on
 * run/lmtp.sock over LMTP, or the relay host over SMTP, its name resolved
 * with the thread pool's getaddrinfo at each connect): at most
 * qmgr_destination_concurrency connections, idle ones kept for
 * qmgr_connection_idle and handed to the next message (connection reuse),
 * messages waiting in a FIFO when every connection is busy.  A
 * connection that cannot be set up fails every waiting message with its
 * reply (they are deferred and retried later).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <netdb.h>

#include "compat.h"
#include "log.h"
#include "qmgr.h"
#include "smtpclient.h"
#include "xalloc.h"

#define STR_TRY(x) do { if ((x) < 0) { /* cut */ } } while (0)

struct dest_waiter {
	dest_get_cb *cb;
	void *ctx;
};

struct dest_idle {
	struct smtpclient *c;
	uint64_t since;		/* uv_now */
};

struct dest {
	struct qmgr *q;
	char *name, *path;	/* path NULL: TCP to host:port */
	char *host, *port;
	bool lmtp;
	struct tls_ctx *tls;
	bool tls_required;
	unsigned conns;		/* open or connecting */
	unsigned connecting;
	struct dest_idle *idle;
	size_t nidle, idle_cap;
	struct dest_waiter *wait;
	size_t nwait, wait_cap;
	bool closing;
};

const char *dest_name(const struct dest *d)
{
	return d->name;
}

struct dest *dest_new(struct qmgr *q, const char *name, const char *path)
{
	struct dest *d = xcalloc(1, sizeof(*d));

	d->q = q;
	d->name = xstrdup(name);
	d->path = xstrdup(path);
	d->lmtp = true;
	return d;
}

struct dest *dest_new_smtp(struct qmgr *q, const char *host,
			   const char *port, struct tls_ctx *tls,
			   bool tls_required)
{
	struct dest *d = xcalloc(1, sizeof(*d));
	struct str *n = str_new(64, 1024);

	STR_TRY(str_printf(n, "%s[%s]:%s", host, host, port));
	d->q = q;
	d->name = xstrdup(str_c(n));
	d->host = xstrdup(host);
	d->port = xstrdup(port);
	d->tls = tls;
	d->tls_required = tls_required;
	str_free(&n);
	return d;
}

bool dest_is_lmtp(const struct dest *d)
{
	return d->lmtp;
}

static void dest_release(struct dest *d)
{
	free(d->name);
	free(d->path);
	free(d->host);
	free(d->port);
	free(d->idle);
	free(d->wait);
	free(d);
}

static void idle_remove(struct dest *d, struct smtpclient *c)
{
	for (size_t i = 0; i < d->nidle; i++) {
		if (d->idle[i].c == c) {
			d->idle[i] = d->idle[--d->nidle];
			return;
		}
	}
}

/* The first waiter (removed from the list); false when none. */
static bool pop_waiter(struct dest *d, struct dest_waiter *w)
{
	if (d->nwait == 0)
		return false;
	*w = d->wait[0];
	memmove(d->wait, d->wait + 1, (d->nwait - 1) * sizeof(*d->wait));
	d->nwait--;
	return true;
}

static void on_close(struct smtpclient *c, const char *reason, void *ctx)
{
	struct dest *d = ctx;

	(void)reason;
	idle_remove(d, c);
	d->conns--;
	if (d->closing && d->conns == 0)
		dest_release(d);
}

static void on_ready(struct smtpclient *c, bool ok,
		     const struct smtp_reply *r, void *ctx)
{
	struct dest *d = ctx;
	struct dest_waiter w;

	d->connecting--;
	if (ok) {
		dest_put(d, c, true);
		return;
	}
	{
		struct str *t = str_new(64, 1024);

		smtp_reply_format(r, t);
		log_warn(NULL, "%s: %s", d->name, str_c(t));
		str_free(&t);
	}
	/* Everyone waiting fails now: they retry later. */
	while (pop_waiter(d, &w))
		w.cb(NULL, r, w.ctx);
}

static void dest_settings(struct dest *d, struct smtpclient_settings *set)
{
	struct qmgr *q = d->q;

	memset(set, 0, sizeof(*set));
	set->lmtp = d->lmtp;
	set->helo = q->set.hostname;
	set->timeout_ms = d->lmtp ? q->set.lmtp_timeout_ms :
				    q->set.smtp_timeout_ms;
	set->tls = d->tls;
	set->tls_required = d->tls_required;
	set->tls_name = d->host;
	set->id = d->name;
}

/* A connection could not even start: every waiter fails with why. */
static void dest_fail(struct dest *d, unsigned code, const char *enh,
		      const char *why)
{
	struct smtp_reply r = { .code = code };
	struct dest_waiter w;

	r.text = str_new(64, 1024);
	str_lcpy(r.enhanced, enh, sizeof(r.enhanced));
	STR_TRY(str_append_c(r.text, why));
	log_warn(NULL, "%s: %s", d->name, why);
	while (pop_waiter(d, &w))
		w.cb(NULL, &r, w.ctx);
	str_free(&r.text);
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
			struct addrinfo *res)
{
	struct dest *d = req->data;
	struct smtpclient_settings set;

	free(req);
	if (status < 0 || res == NULL || d->closing) {
		struct str *t = str_new(64, 1024);

		STR_TRY(str_printf(t, "cannot resolve %s: %s", d->host,
				   status < 0 ? uv_strerror(status) :
						"no address"));
		d->conns--;
		d->connecting--;
		dest_fail(d, 451, "4.4.3", str_c(t));
		str_free(&t);
		if (res != NULL)
			uv_freeaddrinfo(res);
		if (d->closing && d->conns == 0)
			dest_release(d);
		return;
	}
	dest_settings(d, &set);
	(void)smtpclient_new(d->q->loop, NULL, res->ai_addr, &set, on_ready,
			     on_close, d);
	uv_freeaddrinfo(res);
}

static void dest_connect(struct dest *d)
{
	struct smtpclient_settings set;

	d->conns++;
	d->connecting++;
	if (d->path != NULL) {
		dest_settings(d, &set);
		(void)smtpclient_new(d->q->loop, d->path, NULL, &set, on_ready,
				     on_close, d);
	} else {
		uv_getaddrinfo_t *req = xmalloc(sizeof(*req));
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
		int r;

		req->data = d;
		r = uv_getaddrinfo(d->q->loop, req, on_resolved, d->host,
				   d->port, &hints);
		if (r < 0) {
			free(req);
			d->conns--;
			d->connecting--;
			dest_fail(d, 451, "4.4.3", uv_strerror(r));
		}
	}
}

void dest_get(struct dest *d, dest_get_cb *cb, void *ctx)
{
	if (d->nidle > 0) {
		struct smtpclient *c = d->idle[--d->nidle].c;

		cb(c, NULL, ctx);
		return;
	}
	if (d->nwait == d->wait_cap) {
		d->wait_cap = d->wait_cap ? d->wait_cap * 2 : 16;
		d->wait = xrealloc(d->wait, d->wait_cap * sizeof(*d->wait));
	}
	d->wait[d->nwait].cb = cb;
	d->wait[d->nwait].ctx = ctx;
	d->nwait++;
	if (d->conns < d->q->set.dest_limit && d->connecting < d->nwait)
		dest_connect(d);
}

void dest_put(struct dest *d, struct smtpclient *c, bool reuse)
{
	struct dest_waiter w;

	if (!reuse || !smtpclient_idle(c) || d->closing) {
		smtpclient_quit(c);
		return;
	}
	if (pop_waiter(d, &w)) {
		w.cb(c, NULL, w.ctx);
		return;
	}
	if (d->q->set.idle_ms == 0) {
		smtpclient_quit(c);
		return;
	}
	if (d->nidle == d->idle_cap) {
		d->idle_cap = d->idle_cap ? d->idle_cap * 2 : 8;
		d->idle = xrealloc(d->idle, d->idle_cap * sizeof(*d->idle));
	}
	d->idle[d->nidle].c = c;
	d->idle[d->nidle].since = uv_now(d->q->loop);
	d->nidle++;
}

void dest_tick(struct dest *d)
{
	uint64_t now = uv_now(d->q->loop);

	for (size_t i = 0; i < d->nidle;) {
		if (now - d->idle[i].since >= d->q->set.idle_ms) {
			struct smtpclient *c = d->idle[i].c;

			d->idle[i] = d->idle[--d->nidle];
			smtpclient_quit(c);
			continue;
		}
		i++;
	}
}

void dest_free(struct dest **dp)
{
	struct dest *d = *dp;
	struct dest_waiter w;

	if (d == NULL)
		return;
	*dp = NULL;
	d->closing = true;
	while (pop_waiter(d, &w))
		w.cb(NULL, NULL, w.ctx);
	while (d->nidle > 0)
		smtpclient_quit(d->idle[--d->nidle].c);
	if (d->conns == 0)
		dest_release(d);
}
