/*
 * dest.c: one delivery destination: the local tern-lmtpd on run/lmtp.sock
 * over LMTP, the relay host over SMTP (its name resolved with the thread
 * pool's getaddrinfo at each connect), or one remote domain over SMTP to
 * its MX hosts (common/dns at each connect; an address literal
 * "[192.0.2.1]" or "[IPv6:...]" is the host itself).
 *
 * At most qmgr_destination_concurrency connections per destination, idle
 * ones kept for qmgr_connection_idle and handed to the next message
 * (connection reuse), messages waiting in a FIFO when every connection
 * is busy.  Setting up a connection walks a list of candidates (the
 * addresses of the relay host, or of the MX hosts in preference order,
 * at most DEST_TRY_MAX): a refused connection, a lost one or a refusal
 * of the greeting, EHLO/HELO or STARTTLS moves on to the next.  When none
 * is left, every waiting message fails with the last reason (they are
 * deferred and retried later), or bounces when the DNS said the domain
 * can never take mail (null MX, no such domain).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netdb.h>
#include <arpa/inet.h>

#include "compat.h"
#include "dns.h"
#include "log.h"
#include "qmgr.h"
#include "smtpclient.h"
#include "xalloc.h"

#define STR_TRY(x) do { if ((x) < 0) { /* cut */ } } while (0)

/* Addresses tried at most to set up one connection. */
#define DEST_TRY_MAX 10

enum dest_kind {
	DK_LMTP,
	DK_LMTP_TCP,		/* another mailbox server's tern-lmtpd */
	DK_RELAY,
	DK_MX,
};

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
	enum dest_kind kind;
	char *name, *path;	/* path: the LMTP socket */
	char *host, *port;	/* relay host; host = domain for MX */
	struct tls_ctx *tls;
	bool tls_required;
	unsigned conns;		/* open or being set up */
	unsigned connecting;
	unsigned refs;		/* links, walks: d is freed at 0 when closing */
	struct dest_idle *idle;
	size_t nidle, idle_cap;
	struct dest_waiter *wait;
	size_t nwait, wait_cap;
	bool closing;
};

/* One candidate of a walk. */
struct dest_cand {
	char *name;		/* "host[ip]:port" */
	char *tls_name;		/* the host name */
	struct sockaddr_storage addr;
};

/* Setting up one connection: the candidates tried in turn. */
struct dest_walk {
	struct dest *d;
	struct dest_cand cand[DEST_TRY_MAX];
	size_t ncand, next;
	struct smtp_reply last;	/* why the last candidate failed */
};

/* One connection, the smtpclient's context. */
struct dest_link {
	struct dest *d;
	struct dest_walk *walk;	/* while being set up */
	char *name;
	bool counted;		/* holds one of d->conns */
};

const char *dest_name(const struct dest *d)
{
	return d->name;
}

bool dest_is_lmtp(const struct dest *d)
{
	return d->kind == DK_LMTP || d->kind == DK_LMTP_TCP;
}

bool dest_is_mx(const struct dest *d)
{
	return d->kind == DK_MX;
}

bool dest_unused(const struct dest *d)
{
	return d->conns == 0 && d->nwait == 0 && d->nidle == 0 &&
	       d->refs == 0;
}

const char *dest_conn_name(const struct smtpclient *c)
{
	const struct dest_link *l = smtpclient_ctx(c);

	return l->name;
}

static struct dest *dest_alloc(struct qmgr *q, enum dest_kind kind,
			       const char *name)
{
	struct dest *d = xcalloc(1, sizeof(*d));

	d->q = q;
	d->kind = kind;
	d->name = xstrdup(name);
	return d;
}

struct dest *dest_new(struct qmgr *q, const char *name, const char *path)
{
	struct dest *d = dest_alloc(q, DK_LMTP, name);

	d->path = xstrdup(path);
	return d;
}

struct dest *dest_new_smtp(struct qmgr *q, const char *host,
			   const char *port, struct tls_ctx *tls,
			   bool tls_required)
{
	struct str *n = str_new(64, 1024);
	struct dest *d;

	STR_TRY(str_printf(n, "%s[%s]:%s", host, host, port));
	d = dest_alloc(q, DK_RELAY, str_c(n));
	d->host = xstrdup(host);
	d->port = xstrdup(port);
	d->tls = tls;
	d->tls_required = tls_required;
	str_free(&n);
	return d;
}

struct dest *dest_new_lmtp_tcp(struct qmgr *q, const char *name,
			       const char *host, const char *port)
{
	struct dest *d = dest_alloc(q, DK_LMTP_TCP, name);

	d->host = xstrdup(host);
	d->port = xstrdup(port);
	return d;
}

struct dest *dest_new_mx(struct qmgr *q, const char *domain,
			 struct tls_ctx *tls, bool tls_required)
{
	struct dest *d = dest_alloc(q, DK_MX, domain);

	d->host = xstrdup(domain);
	d->tls = tls;
	d->tls_required = tls_required;
	return d;
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

static void dest_unref(struct dest *d)
{
	d->refs--;
	if (d->closing && d->refs == 0 && d->conns == 0)
		dest_release(d);
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

/* Every waiter fails with r. */
static void fail_waiters(struct dest *d, const struct smtp_reply *r,
			 bool permanent)
{
	struct dest_waiter w;

	while (pop_waiter(d, &w))
		w.cb(NULL, r, permanent, w.ctx);
}

static void dest_settings(struct dest *d, struct smtpclient_settings *set,
			  const char *tls_name, const char *id)
{
	struct qmgr *q = d->q;

	memset(set, 0, sizeof(*set));
	set->lmtp = dest_is_lmtp(d);
	set->helo = q->set.hostname;
	set->timeout_ms = dest_is_lmtp(d) ? q->set.lmtp_timeout_ms :
					    q->set.smtp_timeout_ms;
	set->connect_timeout_ms = d->kind == DK_LMTP ? 0 :
				  q->set.connect_timeout_ms;
	set->tls = d->tls;
	set->tls_required = d->tls_required;
	set->tls_name = tls_name;
	set->id = id;
	if (d->kind == DK_RELAY) {
		set->auth_user = q->set.relay_user;
		set->auth_password = q->set.relay_password;
	}
}

/* ---- connections ---- */

static void on_close(struct smtpclient *c, const char *reason, void *ctx)
{
	struct dest_link *l = ctx;
	struct dest *d = l->d;

	(void)reason;
	if (l->counted) {
		idle_remove(d, c);
		d->conns--;
	}
	free(l->name);
	free(l);
	dest_unref(d);
}

static void walk_next(struct dest_walk *w);

static void walk_free(struct dest_walk *w)
{
	struct dest *d = w->d;

	for (size_t i = 0; i < w->ncand; i++) {
		free(w->cand[i].name);
		free(w->cand[i].tls_name);
	}
	str_free(&w->last.text);
	free(w);
	dest_unref(d);
}

/* The walk ends without a connection: every waiter fails. */
static void walk_fail(struct dest_walk *w, bool permanent)
{
	struct dest *d = w->d;

	d->conns--;
	d->connecting--;
	d->refs++;		/* d stays while the waiters are told */
	fail_waiters(d, &w->last, permanent);
	walk_free(w);
	dest_unref(d);
}

static void walk_set_last(struct dest_walk *w, unsigned code,
			  const char *enh, const char *text)
{
	smtp_reply_set(&w->last, code, enh, text);
}

/* A candidate failed with r: remember why, always as a temporary failure
 * (another host or a later try may do better). */
static void walk_note(struct dest_walk *w, const char *name,
		      const struct smtp_reply *r)
{
	struct str *t = str_new(128, 2048), *u = str_new(128, 2048);
	char enh[16] = "4.4.2";

	smtp_reply_format(r, t);
	log_warn(NULL, "%s: %s", name, str_c(t));
	/* Our own replies name the host already; a server's does not. */
	if (strstr(str_c(r->text), name) != NULL)
		STR_TRY(str_append_c(u, str_c(r->text)));
	else
		STR_TRY(str_printf(u, "%s said: %s", name, str_c(t)));
	if (r->enhanced[0] != '\0' && r->code / 100 == 4)
		str_lcpy(enh, r->enhanced, sizeof(enh));
	walk_set_last(w, r->code / 100 == 4 ? r->code : 451, enh, str_c(u));
	str_free(&t);
	str_free(&u);
}

static void on_ready(struct smtpclient *c, bool ok,
		     const struct smtp_reply *r, void *ctx)
{
	struct dest_link *l = ctx;
	struct dest *d = l->d;
	struct dest_walk *w = l->walk;

	l->walk = NULL;
	if (w == NULL)		/* not from a walk: cannot happen */
		return;
	if (ok) {
		l->counted = true;
		d->connecting--;
		walk_free(w);
		dest_put(d, c, true);
		return;
	}
	walk_note(w, l->name, r);
	w->next++;
	walk_next(w);
}

/* Connects to the next candidate, or fails the walk. */
static void walk_next(struct dest_walk *w)
{
	struct dest *d = w->d;
	struct smtpclient_settings set;
	struct dest_link *l;
	const struct dest_cand *cd;

	if (d->closing || w->next >= w->ncand) {
		if (w->ncand == 0 && w->last.code == 0)
			walk_set_last(w, 451, "4.4.1", "no address to try");
		walk_fail(w, false);
		return;
	}
	cd = &w->cand[w->next];
	l = xcalloc(1, sizeof(*l));
	l->d = d;
	l->walk = w;
	l->name = xstrdup(cd->name);
	d->refs++;
	dest_settings(d, &set, cd->tls_name, cd->name);
	(void)smtpclient_new(d->q->loop, d->path,
			     d->path != NULL ? NULL :
					       (const struct sockaddr *)&cd->addr,
			     &set, on_ready, on_close, l);
}

static void walk_add(struct dest_walk *w, const char *host,
		     const struct sockaddr *sa, unsigned port)
{
	struct dest_cand *cd;
	char ip[INET6_ADDRSTRLEN];
	struct str *n;

	if (w->ncand >= DEST_TRY_MAX)
		return;
	cd = &w->cand[w->ncand];
	memset(&cd->addr, 0, sizeof(cd->addr));
	if (sa->sa_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&cd->addr;

		memcpy(in, sa, sizeof(*in));
		in->sin_port = htons((uint16_t)port);
		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
	} else if (sa->sa_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&cd->addr;

		memcpy(in6, sa, sizeof(*in6));
		in6->sin6_port = htons((uint16_t)port);
		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
	} else {
		return;
	}
	n = str_new(64, 1024);
	STR_TRY(str_printf(n, "%s[%s]:%u", host, ip, port));
	cd->name = xstrdup(str_c(n));
	cd->tls_name = xstrdup(host);
	str_free(&n);
	w->ncand++;
}

static struct dest_walk *walk_new(struct dest *d)
{
	struct dest_walk *w = xcalloc(1, sizeof(*w));

	w->d = d;
	w->last.text = str_new(128, SMTPCLIENT_TEXT_MAX);
	d->refs++;
	return w;
}

static void on_mx(const struct dns_mx_result *res, void *ctx)
{
	struct dest_walk *w = ctx;
	unsigned port = w->d->q->set.smtp_port;

	if (res->status != DNS_OK) {
		walk_set_last(w, res->status == DNS_PERM ? 550 : 451,
			      res->enhanced, res->error);
		log_warn(NULL, "%s", res->error);
		walk_fail(w, res->status == DNS_PERM);
		return;
	}
	for (size_t i = 0; i < res->nhosts; i++) {
		const struct dns_host *h = &res->hosts[i];

		for (size_t k = 0; k < h->naddr; k++)
			walk_add(w, h->name,
				 (const struct sockaddr *)&h->addr[k], port);
	}
	walk_next(w);
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
			struct addrinfo *res)
{
	struct dest_walk *w = req->data;
	struct dest *d = w->d;
	unsigned port = (unsigned)strtoul(d->port, NULL, 10);

	free(req);
	if (status < 0 || res == NULL) {
		struct str *t = str_new(64, 1024);

		STR_TRY(str_printf(t, "cannot resolve %s: %s", d->host,
				   status < 0 ? uv_strerror(status) :
						"no address"));
		walk_set_last(w, 451, "4.4.3", str_c(t));
		log_warn(NULL, "%s: %s", d->name, str_c(t));
		str_free(&t);
		if (res != NULL)
			uv_freeaddrinfo(res);
		walk_fail(w, false);
		return;
	}
	for (struct addrinfo *a = res; a != NULL; a = a->ai_next)
		walk_add(w, d->host, a->ai_addr, port);
	uv_freeaddrinfo(res);
	walk_next(w);
}

static void dest_connect(struct dest *d)
{
	struct dest_walk *w = walk_new(d);

	d->conns++;
	d->connecting++;
	if (d->kind == DK_LMTP) {
		w->cand[0].name = xstrdup(d->name);
		w->ncand = 1;
		walk_next(w);
	} else if (d->kind == DK_MX && d->host[0] == '[') {
		struct sockaddr_storage ss;
		char ip[INET6_ADDRSTRLEN];

		/* An address literal: that address, no DNS. */
		if (dns_parse_literal(d->host, &ss) < 0) {
			struct str *t = str_new(64, 1024);

			STR_TRY(str_printf(t, "%s: unsupported address "
					   "literal", d->host));
			walk_set_last(w, 550, "5.1.2", str_c(t));
			str_free(&t);
			walk_fail(w, true);
			return;
		}
		inet_ntop(ss.ss_family, ss.ss_family == AF_INET ?
			  (const void *)&((struct sockaddr_in *)&ss)->sin_addr :
			  (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr,
			  ip, sizeof(ip));
		walk_add(w, ip, (const struct sockaddr *)&ss,
			 d->q->set.smtp_port);
		if (w->ncand > 0) {
			free(w->cand[0].tls_name);	/* no SNI for an IP */
			w->cand[0].tls_name = NULL;
		}
		walk_next(w);
	} else if (d->kind == DK_MX) {
		if (d->q->dns == NULL) {
			walk_set_last(w, 451, "4.4.3", "no DNS resolver");
			walk_fail(w, false);
			return;
		}
		dns_lookup_mx(d->q->dns, d->host, on_mx, w);
	} else {
		uv_getaddrinfo_t *req = xmalloc(sizeof(*req));
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
		int r;

		req->data = w;
		r = uv_getaddrinfo(d->q->loop, req, on_resolved, d->host,
				   d->port, &hints);
		if (r < 0) {
			free(req);
			walk_set_last(w, 451, "4.4.3", uv_strerror(r));
			walk_fail(w, false);
		}
	}
}

void dest_get(struct dest *d, dest_get_cb *cb, void *ctx)
{
	if (d->nidle > 0) {
		struct smtpclient *c = d->idle[--d->nidle].c;

		cb(c, NULL, false, ctx);
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
		w.cb(c, NULL, false, w.ctx);
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

	if (d == NULL)
		return;
	*dp = NULL;
	d->closing = true;
	d->refs++;
	fail_waiters(d, NULL, false);
	while (d->nidle > 0)
		smtpclient_quit(d->idle[--d->nidle].c);
	dest_unref(d);
}
