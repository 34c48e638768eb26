/*
 * server.c: tern-authd's clients: one IPC channel per connected daemon.
 *
 * Each request is checked against its schema, answered from the cache or
 * handed to the thread pool (job.c); replies go out as they complete, in
 * any order, each carrying its request's id.  A request that fails its
 * schema, or of an unknown type, gets an "error" reply; a bad frame closes
 * that channel only.  Password checks go through the anvil (lockout,
 * progressive delay, fail2ban log lines) and at most auth_slots of them
 * run at once, so lookups always find a free pool thread.
 * docs/protocols/authd.md is the protocol.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <unistd.h>

#include "compat.h"
#include "authd.h"
#include "ipc.h"
#include "ipcchan.h"
#include "log.h"
#include "svc.h"
#include "xalloc.h"

#define CLIENT_REGS_MAX 100000	/* connections one client may register */

/* A (service, IP) pair this client registered with "connect". */
struct conn_reg {
	char *service, *rip;
	unsigned int count;
};

struct authd_client {
	struct authd *ad;
	struct ipc_chan *chan;		/* NULL once closing */
	struct authd_client *prev, *next;
	unsigned int refs;		/* the channel + jobs in flight */
	char id[16];
	uint32_t watch_id;		/* "watch" request; 0 = none */
	struct conn_reg *regs;
	size_t nregs, regs_cap;
};

/* ---- schemas ---- */

#define F_STR(name, max) { name, IPC_STR, 1, 1, max, IPC_SPEC_NO_NUL }
#define F_END { NULL, IPC_INT, 0, 0, 0, 0 }

static const struct ipc_field_spec spec_address[] = {
	F_STR("address", DIR_ADDRESS_MAX), F_END,
};
static const struct ipc_field_spec spec_domain[] = {
	F_STR("domain", 255), F_END,
};
static const struct ipc_field_spec spec_auth[] = {
	F_STR("user", DIR_ADDRESS_MAX),
	F_STR("password", AUTHD_PASSWORD_MAX),
	F_STR("service", AUTHD_SERVICE_MAX),
	F_STR("rip", AUTHD_RIP_MAX),
	F_END,
};
static const struct ipc_field_spec spec_event[] = {
	F_STR("service", AUTHD_SERVICE_MAX),
	F_STR("who", DIR_ADDRESS_MAX),
	{ "n", IPC_INT, 1, 1, 0, 0 },
	F_END,
};
static const struct ipc_field_spec spec_gal[] = {
	F_STR("text", DIR_GAL_TEXT_MAX),
	{ "limit", IPC_INT, 0, 1, 0, 0 },
	F_END,
};
static const struct ipc_field_spec spec_none[] = {
	F_END,
};
static const struct ipc_field_spec spec_conn[] = {
	F_STR("service", AUTHD_SERVICE_MAX),
	F_STR("rip", AUTHD_RIP_MAX),
	F_END,
};

/* ---- clients ---- */

static void client_unref(struct authd_client **cp)
{
	struct authd_client *c = *cp;

	*cp = NULL;
	if (--c->refs > 0)
		return;
	for (size_t i = 0; i < c->nregs; i++) {
		free(c->regs[i].service);
		free(c->regs[i].rip);
	}
	free(c->regs);
	free(c);
}

static void client_send(struct authd_client *c, struct ipc_msg *m)
{
	const char *error;

	if (c->chan != NULL && ipc_chan_send(c->chan, m, &error) < 0)
		log_warn(c->id, "reply not sent: %s", error);
	ipc_msg_free(&m);
}

static struct ipc_msg *reply_new(const char *type, uint32_t id)
{
	struct ipc_msg *m = ipc_msg_new(type);

	ipc_msg_set_id(m, id);
	return m;
}

static void reply_message(struct authd_client *c, const char *type,
			  uint32_t id, const char *message)
{
	struct ipc_msg *m = reply_new(type, id);

	if (message != NULL)
		ipc_msg_add_cstr(m, "message", message);
	client_send(c, m);
}

static void add_opt(struct ipc_msg *m, const char *name, const char *value)
{
	ipc_msg_add_cstr(m, name, value != NULL ? value : "");
}

static void add_account(struct ipc_msg *m, const struct dir_account *a)
{
	ipc_msg_add_int(m, "account_id", a->id);
	ipc_msg_add_cstr(m, "address", a->address);
	add_opt(m, "display_name", a->display_name);
	ipc_msg_add_cstr(m, "status", dir_account_status_name(a->status));
	add_opt(m, "mailhost", a->mailhost);
	add_opt(m, "cos", a->cos);
	ipc_msg_add_int(m, "quota", (int64_t)a->quota);
	ipc_msg_add_int(m, "quota_effective", (int64_t)a->quota_effective);
	ipc_msg_add_int(m, "created", a->created);
}

/* The answer of a lookup, resolve or domain request. */
static void reply_value(struct authd_client *c, enum authd_job_kind kind,
			uint32_t id, const struct cache_value *v)
{
	struct ipc_msg *m;

	if (kind == JOB_DOMAIN) {
		m = reply_new("domain", id);
		ipc_msg_add_int(m, "exists", v->status == DIR_OK);
		client_send(c, m);
		return;
	}
	if (v->status == DIR_NOTFOUND) {
		client_send(c, reply_new("notfound", id));
		return;
	}
	if (kind == JOB_LOOKUP) {
		m = reply_new("account", id);
		add_account(m, v->account);
		client_send(c, m);
		return;
	}
	for (size_t i = 0; i < v->resolution->ntargets; i++) {
		const struct dir_target *t = &v->resolution->targets[i];

		m = reply_new("target", id);
		ipc_msg_add_cstr(m, "kind", t->kind == DIR_TARGET_ACCOUNT ?
						    "account" : "external");
		ipc_msg_add_cstr(m, "address", t->address);
		if (t->kind == DIR_TARGET_ACCOUNT) {
			add_opt(m, "mailhost", t->mailhost);
			ipc_msg_add_cstr(m, "status",
					 dir_account_status_name(t->status));
			ipc_msg_add_int(m, "account_id", t->account_id);
		}
		client_send(c, m);
	}
	m = reply_new("resolved", id);
	ipc_msg_add_int(m, "local_domain", v->resolution->local_domain);
	if (v->resolution->detail != NULL)
		ipc_msg_add_cstr(m, "detail", v->resolution->detail);
	ipc_msg_add_int(m, "targets", (int64_t)v->resolution->ntargets);
	client_send(c, m);
}

/* The address book: one "gal_entry" per entry, then "gal". */
static void reply_gal(struct authd_job *job)
{
	struct ipc_msg *m;

	for (size_t i = 0; i < job->ngal; i++) {
		const struct dir_gal_entry *e = job->gal[i];

		m = reply_new("gal_entry", job->id);
		ipc_msg_add_cstr(m, "kind", dir_gal_kind_name(e->kind));
		ipc_msg_add_cstr(m, "address", e->address);
		add_opt(m, "display_name", e->display_name);
		client_send(job->client, m);
	}
	m = reply_new("gal", job->id);
	ipc_msg_add_int(m, "entries", (int64_t)job->ngal);
	client_send(job->client, m);
}

/* ---- jobs ---- */

static struct authd_job *job_new(struct authd_client *c,
				 enum authd_job_kind kind, uint32_t id)
{
	struct authd_job *job = xcalloc(1, sizeof(*job));

	job->ad = c->ad;
	job->client = c;
	c->refs++;
	job->kind = kind;
	job->id = id;
	job->generation = cache_generation(c->ad->cache);
	job->error = str_new(128, AUTHD_ERROR_MAX);
	return job;
}

static void job_free_now(struct authd_job *job)
{
	if (job->password != NULL) {
		explicit_bzero(job->password, strlen(job->password));
		free(job->password);
	}
	free(job->key);
	free(job->user);
	free(job->service);
	free(job->rip);
	cache_value_clear(&job->value);
	dir_gal_array_free(&job->gal, job->ngal);
	str_free(&job->error);
	if (job->client != NULL)
		client_unref(&job->client);
	free(job);
}

void authd_job_free(struct authd_job **jobp)
{
	if (*jobp != NULL)
		job_free_now(*jobp);
	*jobp = NULL;
}

static void list_add(struct authd_job **head, struct authd_job *job)
{
	job->prev = NULL;
	job->next = *head;
	if (*head != NULL)
		(*head)->prev = job;
	*head = job;
}

static void list_del(struct authd_job **head, struct authd_job *job)
{
	if (job->prev != NULL)
		job->prev->next = job->next;
	else
		*head = job->next;
	if (job->next != NULL)
		job->next->prev = job->prev;
	job->prev = job->next = NULL;
}

/* ---- authentication ---- */

/* user for the log, between < and >: bytes outside the address set
 * (space, <, >, =, %, control and non-ASCII bytes...) as %XX, so that a
 * user name can never fake another field of the line. */
static void log_user(struct str *out, const char *user)
{
	static const char ok[] = "!#$&'*+-./?^_`{|}~@";

	for (const unsigned char *p = (const unsigned char *)user; *p != '\0';
	     p++) {
		int r = (*p < 0x80 && (isalnum(*p) || strchr(ok, *p) != NULL)) ?
				str_append_byte(out, *p) :
				str_printf(out, "%%%02X", *p);
		if (r < 0)
			break;
	}
}

static void auth_log(struct authd_job *job, enum log_level level,
		     const char *what, const char *reason)
{
	struct str *u = str_new(64, 2048);

	log_user(u, job->user);
	log_msg(level, job->client->id,
		"%s: service=%s rip=%s user=<%s>%s%s", what, job->service,
		job->rip[0] != '\0' ? job->rip : "-", str_c(u),
		reason != NULL ? " reason=" : "", reason != NULL ? reason : "");
	str_free(&u);
}

static void auth_reply(struct authd_job *job, const char *result)
{
	struct ipc_msg *m = reply_new("auth", job->id);

	ipc_msg_add_cstr(m, "result", result);
	if (strcmp(result, "ok") == 0)
		add_account(m, job->value.account);
	client_send(job->client, m);
}

static void delay_closed(uv_handle_t *h)
{
	struct authd_job *job = h->data;

	job_free_now(job);
}

static void delay_done(uv_timer_t *t)
{
	struct authd_job *job = t->data;

	list_del(&job->ad->delayed, job);
	auth_reply(job, "authfail");
	uv_close((uv_handle_t *)&job->timer, delay_closed);
}

static void auth_failed(struct authd_job *job)
{
	struct authd *ad = job->ad;
	const char *user = job->key != NULL ? job->key : job->user;
	struct anvil_failure f;

	anvil_auth_failed(ad->anvil, job->rip, user, uv_now(ad->loop), &f);
	auth_log(job, LOGL_INFO, "authentication failed", job->reason);
	if (f.locked_out) {
		struct str *u = str_new(64, 2048);

		log_user(u, job->user);
		log_warn(job->client->id,
			 "authentication lockout: rip=%s failures=%u "
			 "seconds=%llu service=%s user=<%s>", job->rip,
			 f.ip_failures,
			 (unsigned long long)(ad->lockout_ms / 1000),
			 job->service, str_c(u));
		str_free(&u);
	}
	if (f.delay_ms == 0 || ad->stopping) {
		auth_reply(job, "authfail");
		job_free_now(job);
		return;
	}
	uv_timer_init(ad->loop, &job->timer);
	job->timer.data = job;
	list_add(&ad->delayed, job);
	uv_timer_start(&job->timer, delay_done, f.delay_ms, 0);
}

static void auth_finished(struct authd_job *job)
{
	struct authd *ad = job->ad;
	const char *user = job->key != NULL ? job->key : job->user;

	switch (job->status) {
	case DIR_OK:
		anvil_auth_succeeded(ad->anvil, job->rip, user,
				     uv_now(ad->loop));
		auth_log(job, LOGL_INFO, "authenticated", NULL);
		auth_reply(job, "ok");
		break;
	case DIR_REFUSED:
		auth_log(job, LOGL_INFO, "authentication refused",
			 job->reason);
		auth_reply(job, "refused");
		break;
	case DIR_TEMPFAIL:
		log_warn(job->client->id, "authentication of service=%s "
			 "rip=%s: directory error: %s", job->service,
			 job->rip[0] != '\0' ? job->rip : "-",
			 str_c(job->error));
		auth_reply(job, "tempfail");
		break;
	default:
		auth_failed(job);
		return;
	}
	job_free_now(job);
}

/* Starts waiting checks while slots are free. */
static void auth_pump(struct authd *ad)
{
	while (ad->auth_running < ad->auth_slots && ad->wait_tail != NULL) {
		struct authd_job *job = ad->wait_tail;

		ad->wait_tail = job->prev;
		if (ad->wait_tail != NULL)
			ad->wait_tail->next = NULL;
		else
			ad->wait_head = NULL;
		job->prev = job->next = NULL;
		ad->waiting--;
		if (job->client->chan == NULL) {
			job_free_now(job);	/* nobody is waiting */
			continue;
		}
		ad->auth_running++;
		authd_job_start(job);
	}
}

void authd_server_job_done(struct authd_job *job)
{
	struct authd *ad = job->ad;

	if (job->kind == JOB_AUTH) {
		ad->auth_running--;
		/* Counted even when the client left: no escape by hanging up. */
		auth_finished(job);
		auth_pump(ad);
		return;
	}
	if (job->kind == JOB_GAL && job->status == DIR_OK) {
		reply_gal(job);
	} else if (job->kind != JOB_GAL && (job->status == DIR_OK ||
					     job->status == DIR_NOTFOUND)) {
		reply_value(job->client, job->kind, job->id, &job->value);
		cache_put(ad->cache, job->kind == JOB_LOOKUP ? CACHE_ACCOUNT :
				     job->kind == JOB_RESOLVE ? CACHE_RESOLVE :
								CACHE_DOMAIN,
			  job->key, &job->value, job->generation,
			  uv_now(ad->loop));
	} else if (job->status == DIR_INVALID) {
		reply_message(job->client, "invalid", job->id,
			      str_c(job->error));
	} else {
		log_warn(job->client->id, "directory error: %s",
			 str_c(job->error));
		reply_message(job->client, "tempfail", job->id,
			      str_c(job->error));
	}
	job_free_now(job);
}

/* ---- requests ---- */

/* A service name: [a-z0-9_-]{1,32}. */
static bool service_valid(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) ||
		      *s == '_' || *s == '-'))
			return false;
	}
	return true;
}

/* A client IP: empty (unknown) or an IPv4 or IPv6 address. */
static bool rip_valid(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return *s == '\0' || inet_pton(AF_INET, s, buf) == 1 ||
	       inet_pton(AF_INET6, s, buf) == 1;
}

/* Normalizes an address or domain; NULL when it is malformed. */
static char *normalize(enum authd_job_kind kind, const char *in,
		       struct str *error)
{
	struct str *out;
	enum dir_status st;
	char *r;

	/* Address literals are resolved as written (dir_resolve()). */
	if (kind == JOB_RESOLVE && dir_address_literal(in))
		return xstrdup(in);
	out = str_new(64, DIR_ADDRESS_MAX);
	st = kind == JOB_DOMAIN ?
				     dir_domain_normalize(in, out, error) :
				     dir_address_normalize(in, out, NULL, error);
	r = st == DIR_OK ? xstrdup(str_c(out)) : NULL;

	str_free(&out);
	return r;
}

/* lookup, resolve, domain: from the cache or the pool. */
static void req_directory(struct authd_client *c, struct ipc_msg *m,
			  enum authd_job_kind kind, const char *field)
{
	struct authd *ad = c->ad;
	enum cache_kind ck = kind == JOB_LOOKUP ? CACHE_ACCOUNT :
			     kind == JOB_RESOLVE ? CACHE_RESOLVE : CACHE_DOMAIN;
	const struct cache_value *v;
	struct authd_job *job;
	const char *in;

	if (ipc_msg_get_cstr(m, field, &in) < 0)
		log_panic(c->id, "checked field %s missing", field);
	job = job_new(c, kind, ipc_msg_id(m));
	job->key = normalize(kind, in, job->error);
	if (job->key == NULL) {
		if (kind == JOB_LOOKUP)
			client_send(c, reply_new("notfound", job->id));
		else
			reply_message(c, "invalid", job->id,
				      str_c(job->error));
		job_free_now(job);
		return;
	}
	v = cache_get(ad->cache, ck, job->key, uv_now(ad->loop));
	if (v != NULL) {
		reply_value(c, kind, job->id, v);
		job_free_now(job);
		return;
	}
	authd_job_start(job);
}

static void req_auth(struct authd_client *c, struct ipc_msg *m)
{
	struct authd *ad = c->ad;
	const char *user, *password, *service, *rip;
	struct authd_job *job;

	if (ipc_msg_get_cstr(m, "user", &user) < 0 ||
	    ipc_msg_get_cstr(m, "password", &password) < 0 ||
	    ipc_msg_get_cstr(m, "service", &service) < 0 ||
	    ipc_msg_get_cstr(m, "rip", &rip) < 0)
		log_panic(c->id, "checked authenticate field missing");
	if (!service_valid(service) || !rip_valid(rip)) {
		reply_message(c, "error", ipc_msg_id(m), "message "
			      "'authenticate': bad service or rip");
		return;
	}
	job = job_new(c, JOB_AUTH, ipc_msg_id(m));
	job->user = xstrdup(user);
	job->service = xstrdup(service);
	job->rip = xstrdup(rip);
	job->key = normalize(JOB_LOOKUP, user, job->error);
	str_clear(job->error);
	if (anvil_auth_locked(ad->anvil, rip, uv_now(ad->loop), NULL)) {
		auth_log(job, LOGL_INFO, "authentication refused", "lockout");
		auth_reply(job, "lockedout");
		job_free_now(job);
		return;
	}
	if (ad->waiting >= AUTHD_AUTH_WAIT_MAX) {
		log_warn(c->id, "too many password checks waiting: tempfail");
		auth_reply(job, "tempfail");
		job_free_now(job);
		return;
	}
	job->password = xstrdup(password);
	/* The wait queue: new checks at the head, started from the tail. */
	job->next = ad->wait_head;
	if (ad->wait_head != NULL)
		ad->wait_head->prev = job;
	ad->wait_head = job;
	if (ad->wait_tail == NULL)
		ad->wait_tail = job;
	ad->waiting++;
	auth_pump(ad);
}

/* gal: the address book, never cached (the text is the user's). */
static void req_gal(struct authd_client *c, struct ipc_msg *m)
{
	struct authd_job *job;
	const char *text;
	int64_t limit = 0;

	if (ipc_msg_get_cstr(m, "text", &text) < 0)
		log_panic(c->id, "checked gal field missing");
	if (ipc_msg_count(m, "limit") > 0 &&
	    (ipc_msg_get_int(m, "limit", &limit) < 0 || limit < 0 ||
	     limit > DIR_GAL_LIMIT_MAX)) {
		char msg[64];

		snprintf(msg, sizeof(msg), "limit must be 0 to %d",
			 DIR_GAL_LIMIT_MAX);
		reply_message(c, "invalid", ipc_msg_id(m), msg);
		return;
	}
	job = job_new(c, JOB_GAL, ipc_msg_id(m));
	job->key = xstrdup(text);
	job->limit = (size_t)limit;
	authd_job_start(job);
}

/* watch: the client caches positive answers for ttl ms and drops them
 * when told ("invalidate", with the watch's id). */
static void req_watch(struct authd_client *c, struct ipc_msg *m)
{
	struct ipc_msg *r = reply_new("watch", ipc_msg_id(m));

	c->watch_id = ipc_msg_id(m);
	ipc_msg_add_int(r, "ttl", (int64_t)c->ad->client_ttl_ms);
	client_send(c, r);
}

void authd_server_invalidate(struct authd *ad)
{
	for (struct authd_client *c = ad->clients; c != NULL; c = c->next) {
		struct ipc_msg *m;

		if (c->watch_id == 0 || c->chan == NULL)
			continue;
		m = reply_new("invalidate", c->watch_id);
		ipc_msg_add_int(m, "ttl", (int64_t)ad->client_ttl_ms);
		client_send(c, m);
	}
}

/* stats: requests received since start, by type, and the checks of the
 * directory serial done (a test waits for one begun after its change). */
static void req_stats(struct authd_client *c, struct ipc_msg *m)
{
	static const char *const names[] = {
		[JOB_LOOKUP] = "lookup", [JOB_RESOLVE] = "resolve",
		[JOB_DOMAIN] = "domain", [JOB_AUTH] = "authenticate",
		[JOB_GAL] = "gal",
	};
	struct ipc_msg *r = reply_new("stats", ipc_msg_id(m));

	for (size_t i = 0; i < TERN_NELEM(names); i++)
		ipc_msg_add_int(r, names[i], (int64_t)c->ad->requests[i]);
	ipc_msg_add_int(r, "polls", (int64_t)c->ad->polls);
	client_send(c, r);
}

static struct conn_reg *reg_find(struct authd_client *c, const char *service,
				 const char *rip)
{
	for (size_t i = 0; i < c->nregs; i++) {
		if (strcmp(c->regs[i].service, service) == 0 &&
		    strcmp(c->regs[i].rip, rip) == 0)
			return &c->regs[i];
	}
	return NULL;
}

static void reply_counts(struct authd_client *c, uint32_t id,
			 unsigned int count, unsigned int rate)
{
	struct ipc_msg *m = reply_new("connections", id);

	ipc_msg_add_int(m, "count", count);
	ipc_msg_add_int(m, "rate", rate);
	client_send(c, m);
}

/* event: counts n events of a kind for a client or user. */
static void req_event(struct authd_client *c, struct ipc_msg *m)
{
	struct authd *ad = c->ad;
	const char *event, *who;
	unsigned int count;
	int64_t n;

	if (ipc_msg_get_cstr(m, "service", &event) < 0 ||
	    ipc_msg_get_cstr(m, "who", &who) < 0 ||
	    ipc_msg_get_int(m, "n", &n) < 0)
		log_panic(c->id, "checked event field missing");
	if (!service_valid(event) || *who == '\0' || n < 1 ||
	    n > AUTHD_EVENTS_MAX) {
		reply_message(c, "error", ipc_msg_id(m), "bad event");
		return;
	}
	count = anvil_event(ad->anvil, event, who, (unsigned int)n,
			    uv_now(ad->loop));
	reply_counts(c, ipc_msg_id(m), count, count);
}

/* connect, disconnect, connections. */
static void req_conn(struct authd_client *c, struct ipc_msg *m,
		     const char *type)
{
	struct authd *ad = c->ad;
	uint64_t now = uv_now(ad->loop);
	const char *service, *rip;
	struct conn_reg *reg;
	unsigned int count, rate;

	if (ipc_msg_get_cstr(m, "service", &service) < 0 ||
	    ipc_msg_get_cstr(m, "rip", &rip) < 0)
		log_panic(c->id, "checked connect field missing");
	if (!service_valid(service) || !rip_valid(rip) || *rip == '\0') {
		reply_message(c, "error", ipc_msg_id(m), "bad service or rip");
		return;
	}
	reg = reg_find(c, service, rip);
	if (strcmp(type, "connections") == 0) {
		count = anvil_connections(ad->anvil, service, rip, now, &rate);
	} else if (strcmp(type, "disconnect") == 0) {
		if (reg != NULL && reg->count > 0) {
			reg->count--;
			anvil_disconnect(ad->anvil, service, rip, now);
		}
		count = anvil_connections(ad->anvil, service, rip, now, &rate);
	} else {
		if (reg == NULL && c->nregs >= CLIENT_REGS_MAX) {
			reply_message(c, "error", ipc_msg_id(m),
				      "too many connections registered");
			return;
		}
		if (reg == NULL) {
			if (c->nregs == c->regs_cap) {
				c->regs_cap = c->regs_cap * 2 + 8;
				c->regs = xrealloc(c->regs, c->regs_cap *
							    sizeof(*c->regs));
			}
			reg = &c->regs[c->nregs++];
			reg->service = xstrdup(service);
			reg->rip = xstrdup(rip);
			reg->count = 0;
		}
		reg->count++;
		count = anvil_connect(ad->anvil, service, rip, now, &rate);
	}
	reply_counts(c, ipc_msg_id(m), count, rate);
}

struct request {
	const char *type;
	const struct ipc_field_spec *spec;
};

static const struct request requests[] = {
	{ "lookup", spec_address },
	{ "resolve", spec_address },
	{ "domain", spec_domain },
	{ "authenticate", spec_auth },
	{ "connect", spec_conn },
	{ "disconnect", spec_conn },
	{ "connections", spec_conn },
	{ "event", spec_event },
	{ "gal", spec_gal },
	{ "watch", spec_none },
	{ "stats", spec_none },
};

static void on_msg(struct ipc_chan *chan, struct ipc_msg **mp, void *ctx)
{
	struct authd_client *c = ctx;
	struct ipc_msg *m = *mp;
	const char *type = ipc_msg_type(m), *error;
	const struct request *rq = NULL;

	for (size_t i = 0; i < TERN_NELEM(requests); i++) {
		if (strcmp(requests[i].type, type) == 0)
			rq = &requests[i];
	}
	if (rq == NULL) {
		log_warn(c->id, "unknown request '%s'", type);
		reply_message(c, "error", ipc_msg_id(m), "unknown request");
		return;
	}
	if (ipc_msg_check(m, rq->spec, &error) < 0) {
		log_warn(c->id, "bad request: %s", error);
		reply_message(c, "error", ipc_msg_id(m), error);
		return;
	}
	if (strcmp(type, "lookup") == 0) {
		c->ad->requests[JOB_LOOKUP]++;
		req_directory(c, m, JOB_LOOKUP, "address");
	} else if (strcmp(type, "resolve") == 0) {
		c->ad->requests[JOB_RESOLVE]++;
		req_directory(c, m, JOB_RESOLVE, "address");
	} else if (strcmp(type, "domain") == 0) {
		c->ad->requests[JOB_DOMAIN]++;
		req_directory(c, m, JOB_DOMAIN, "domain");
	} else if (strcmp(type, "authenticate") == 0) {
		c->ad->requests[JOB_AUTH]++;
		req_auth(c, m);
	} else if (strcmp(type, "event") == 0) {
		req_event(c, m);
	} else if (strcmp(type, "gal") == 0) {
		c->ad->requests[JOB_GAL]++;
		req_gal(c, m);
	} else if (strcmp(type, "watch") == 0) {
		req_watch(c, m);
	} else if (strcmp(type, "stats") == 0) {
		req_stats(c, m);
	} else {
		req_conn(c, m, type);
	}
}

/* ---- channels ---- */

static void on_close(struct ipc_chan *chan, const char *error, void *ctx)
{
	struct authd_client *c = ctx;
	struct authd *ad = c->ad;
	uint64_t now = uv_now(ad->loop);

	if (error != NULL)
		log_warn(c->id, "client closed: %s", error);
	else
		log_debug(c->id, "client disconnected");
	for (size_t i = 0; i < c->nregs; i++) {
		for (; c->regs[i].count > 0; c->regs[i].count--)
			anvil_disconnect(ad->anvil, c->regs[i].service,
					 c->regs[i].rip, now);
	}
	c->chan = NULL;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		ad->clients = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	svc_session_closed(ad->svc);
	client_unref(&c);
}

/* Only root and our own user may ask for passwords and records. */
static bool client_allowed(struct authd_client *c)
{
	const char *error;
	pid_t pid;
	uid_t uid;
	gid_t gid;

	if (ipc_chan_peer_cred(c->chan, &pid, &uid, &gid, &error) < 0) {
		log_warn(c->id, "peer credentials: %s", error);
		return false;
	}
	if (uid != 0 && uid != geteuid()) {
		log_warn(c->id, "refused client pid %ld uid %ld", (long)pid,
			 (long)uid);
		return false;
	}
	log_debug(c->id, "client pid %ld uid %ld", (long)pid, (long)uid);
	return true;
}

static void client_free_closed(uv_handle_t *h)
{
	free(h);
}

void authd_server_accept(struct authd *ad, uv_stream_t *stream)
{
	struct ipc_chan_settings set = {
		.max_frame = ad->max_frame,
		.proto = AUTHD_PROTO,
		.version = AUTHD_VERSION,
		.on_msg = on_msg,
		.on_close = on_close,
	};
	struct authd_client *c;
	const char *error;
	uv_os_fd_t fd;
	int dupfd;

	/* The skeleton accepted into its own pipe; the channel takes a
	 * copy of the socket and that pipe goes. */
	dupfd = uv_fileno((uv_handle_t *)stream, &fd) == 0 ? dup(fd) : -1;
	uv_close((uv_handle_t *)stream, client_free_closed);
	if (dupfd < 0 || ad->stopping) {
		if (dupfd >= 0)
			close(dupfd);
		return;
	}
	c = xcalloc(1, sizeof(*c));
	c->ad = ad;
	c->refs = 1;
	svc_new_id(c->id);
	set.ctx = c;
	c->chan = ipc_chan_open_fd(ad->loop, dupfd, IPC_CHAN_SERVER, &set,
				   &error);
	if (c->chan == NULL) {
		log_warn(c->id, "cannot open client channel: %s", error);
		free(c);
		return;
	}
	c->next = ad->clients;
	if (ad->clients != NULL)
		ad->clients->prev = c;
	ad->clients = c;
	svc_session_opened(ad->svc);
	if (!client_allowed(c))
		ipc_chan_close(&c->chan);
}

void authd_server_stop(struct authd *ad)
{
	struct authd_job *job;

	ad->stopping = true;
	for (struct authd_client *c = ad->clients; c != NULL; c = c->next)
		ipc_chan_close(&c->chan);
	while ((job = ad->delayed) != NULL) {
		list_del(&ad->delayed, job);
		uv_timer_stop(&job->timer);
		auth_reply(job, "authfail");
		uv_close((uv_handle_t *)&job->timer, delay_closed);
	}
	while ((job = ad->wait_head) != NULL) {
		ad->wait_head = job->next;
		job_free_now(job);
	}
	ad->wait_tail = NULL;
	ad->waiting = 0;
}
