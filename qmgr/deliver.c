/*
 * deliver.c: one delivery attempt of one queued message.
 *
 * 1. (thread pool) move the file (and its state) into active/, read it
 *    with common/queue's reader and its state; unreadable -> corrupt/.
 * 2. resolve every recipient not done yet through tern-authd (aliases,
 *    lists, catch-all, +detail); unknown -> 5.1.1 at once; addresses in
 *    other domains go to the relay host, or without one to the MX hosts
 *    of their domain.
 * 3. one LMTP transaction to the local tern-lmtpd with every local
 *    address, and one SMTP transaction to the relay host with every
 *    remote one (or one per remote domain to its MX hosts), all at the
 *    same time (duplicates sent once).  A destination that can never
 *    take the mail (null MX, no such domain) bounces its recipients.
 * 4. per address: sent, deferred or bounced (a log line each); past
 *    qmgr_queue_lifetime a deferral becomes a bounce; DSNs built for
 *    NOTIFY=FAILURE (the default) and NOTIFY=SUCCESS, and once after
 *    qmgr_delay_warning for NOTIFY=DELAY.
 * 5. (thread pool) write the DSNs into incoming/, then remove the message
 *    when every recipient is done, else write its state and move it to
 *    deferred/ with the next try after the backoff.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "compat.h"
#include "authclient.h"
#include "dsn.h"
#include "log.h"
#include "qmgr.h"
#include "qstate.h"
#include "queue.h"
#include "smtpclient.h"
#include "str.h"
#include "xalloc.h"

/* A string that reached its maximum is cut there: fine here. */
#define STR_TRY(x) do { if ((x) < 0) { /* cut */ } } while (0)

enum tout {
	T_PENDING,
	T_SENT,
	T_DEFERRED,
	T_FAILED,
};

enum tkind {
	K_NONE,
	K_LMTP,			/* to the local tern-lmtpd */
	K_RELAY,		/* to the relay host */
	K_MX,			/* to the MX hosts of its domain */
	K_MAILBOX,		/* to another mailbox server's tern-lmtpd */
};

struct qtarget {
	char *addr;
	size_t rcpt;
	enum tkind kind;
	bool relayed;		/* to a server without DSN */
	long dup;		/* index of the same address earlier, or -1 */
	enum tout out;
	char *reply;		/* "250 2.0.0 Ok" */
	char status[16];	/* enhanced status code */
	char *relay;		/* NULL = none */
	char *mailhost;		/* K_MAILBOX: the account's mail host */
};

enum notice {
	N_FAILURE,
	N_SUCCESS,
	N_DELAY,
};

struct qbounce {
	char *rcpt;
	struct str *msg;
	bool eightbit;
	enum notice kind;
	char id[QUEUE_ID_SIZE];
	int ok;
};

struct qmsg {
	struct qmgr *q;
	char id[QUEUE_ID_SIZE];
	enum qfolder from;
	uint64_t bytes;		/* charged to q->active_bytes */
	uv_work_t req;
	int load;		/* 0 read, 1 gone, -1 corrupt */
	struct queue_envelope env;
	struct str *data;
	struct qstate st;
	struct str *error;
	size_t resolving;
	struct qtarget *t;
	size_t nt, tcap;
	struct qgroup {
		struct qmsg *m;
		struct dest *dest;
		struct smtpclient_rcpt *lr;
		size_t *lmap, nl;
	} *g;			/* LMTP, relay host, then one per domain */
	size_t ng;
	bool eightbit;		/* BODY=8BITMIME or 8-bit bytes in it */
	unsigned outstanding;
	bool *failed_now;
	bool all_done;
	int64_t due;
	struct qbounce b[3];
	size_t nb;
};

struct resolve_ctx {
	struct qmsg *m;
	size_t rcpt;
};

static void finish_attempt(struct qmsg *m);

static void msg_free(struct qmsg *m)
{
	for (size_t i = 0; i < m->nt; i++) {
		free(m->t[i].addr);
		free(m->t[i].reply);
		free(m->t[i].relay);
		free(m->t[i].mailhost);
	}
	for (size_t i = 0; i < m->nb; i++) {
		free(m->b[i].rcpt);
		str_free(&m->b[i].msg);
	}
	free(m->t);
	for (size_t i = 0; i < m->ng; i++) {
		free(m->g[i].lr);
		free(m->g[i].lmap);
	}
	free(m->g);
	free(m->failed_now);
	queue_envelope_clear(&m->env);
	qstate_clear(&m->st);
	str_free(&m->data);
	str_free(&m->error);
	free(m);
}

static struct qtarget *add_target(struct qmsg *m, const char *addr,
				  size_t rcpt)
{
	struct qtarget *t;

	if (m->nt == m->tcap) {
		m->tcap = m->tcap ? m->tcap * 2 : 8;
		m->t = xrealloc(m->t, m->tcap * sizeof(*m->t));
	}
	t = &m->t[m->nt++];
	memset(t, 0, sizeof(*t));
	t->addr = xstrdup(addr);
	t->rcpt = rcpt;
	t->dup = -1;
	return t;
}

static void set_out(struct qtarget *t, enum tout out, const char *status,
		    const char *reply)
{
	t->out = out;
	str_lcpy(t->status, status, sizeof(t->status));
	free(t->reply);
	t->reply = xstrdup(reply);
}

/* ---- 5: the end of the attempt (thread pool) ---- */

static void unlink_path(const struct qmgr *q, enum qfolder f,
			const char *name)
{
	char *p = qmgr_path(q, f, name);

	(void)unlink(p);
	free(p);
}

static void sync_folder(const struct qmgr *q, enum qfolder f)
{
	char *p = qmgr_path(q, f, NULL);
	int fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
	free(p);
}

static void end_work(uv_work_t *req)
{
	struct qmsg *m = req->data;
	struct qmgr *q = m->q;
	struct str *name = str_new(64, 256);
	char *src, *dst;

	for (size_t i = 0; i < m->nb; i++) {
		struct qbounce *b = &m->b[i];

		b->ok = bounce_write(q, b->id, b->rcpt, str_c(b->msg),
				     str_len(b->msg), b->eightbit,
				     m->error) == 0;
		if (!b->ok && b->kind == N_DELAY)
			m->st.warned = false;	/* again next time */
		if (!b->ok && b->kind == N_FAILURE) {
			/* Not durable: the failed recipients wait. */
			for (size_t k = 0; k < m->env.nrcpts; k++) {
				if (m->failed_now[k])
					m->st.rcpts[k].done = false;
			}
			if (m->all_done) {
				m->st.attempts++;
				m->due = qmgr_now() +
					 qstate_backoff(m->st.attempts,
							q->set.retry_min,
							q->set.retry_max);
				m->st.next_try = m->due;
			}
			m->all_done = false;
		}
	}
	STR_TRY(str_printf(name, "%s%s", m->id, QSTATE_SUFFIX));
	if (m->all_done) {
		unlink_path(q, QF_ACTIVE, str_c(name));
		unlink_path(q, QF_ACTIVE, m->id);
		sync_folder(q, QF_ACTIVE);
		str_free(&name);
		return;
	}
	dst = qmgr_path(q, QF_DEFERRED, str_c(name));
	if (qstate_write(dst, &m->st, m->error) < 0)
		m->load = -2;	/* logged after */
	free(dst);
	src = qmgr_path(q, QF_ACTIVE, m->id);
	dst = qmgr_path(q, QF_DEFERRED, m->id);
	if (rename(src, dst) < 0) {
		STR_TRY(str_printf(m->error, " rename to deferred/: %s",
				   strerror(errno)));
		m->load = -2;
	}
	sync_folder(q, QF_DEFERRED);
	unlink_path(q, QF_ACTIVE, str_c(name));
	free(src);
	free(dst);
	str_free(&name);
}

static const char *const notice_names[] = { "non-delivery", "delivery",
					    "delay" };

static void end_after(uv_work_t *req, int status)
{
	struct qmsg *m = req->data;
	struct qmgr *q = m->q;

	(void)status;
	for (size_t i = 0; i < m->nb; i++) {
		if (m->b[i].ok)
			log_info(m->id, "sender %s notification: %s",
				 notice_names[m->b[i].kind],
				 m->b[i].id);
		else
			log_error(m->id, "cannot queue the notification: "
				  "%s", str_c(m->error));
	}
	if (m->load == -2)
		log_error(m->id, "%s", str_c(m->error));
	if (m->all_done)
		log_info(m->id, "removed");
	scan_message_done(q, m->id, !m->all_done, m->due, m->bytes);
	msg_free(m);
}

/* ---- 4: outcomes ---- */

static void log_outcome(struct qmsg *m, const struct qtarget *t,
		       double delay)
{
	static const char *const words[] = { "pending", "sent", "deferred",
					      "bounced" };
	const char *orig = m->env.rcpts[t->rcpt].address;
	struct str *l = str_new(256, 4096);

	STR_TRY(str_printf(l, "to=<%s>", t->addr));
	if (strcasecmp(orig, t->addr) != 0)
		STR_TRY(str_printf(l, ", orig_to=<%s>", orig));
	STR_TRY(str_printf(l, ", relay=%s, delay=%.1f, dsn=%s, status=%s (%s)",
			 t->relay != NULL ? t->relay : "none", delay, t->status,
			 words[t->out],
			 t->reply != NULL ? t->reply : ""));
	log_info(m->id, "%s", str_c(l));
	str_free(&l);
}

static void add_bounce(struct qmsg *m, const char *to, struct dsn_rcpt *r,
		       size_t n, enum notice kind)
{
	struct qbounce *b = &m->b[m->nb];
	const char *ret = m->env.ret;
	struct dsn_info info = {
		.hostname = m->q->set.hostname,
		.queue_id = m->id,
		.to = to,
		.envid = m->env.envid,
		.arrival = m->env.arrival_sec,
		.now = qmgr_now(),
		.headers_only = kind != N_FAILURE || (ret != NULL &&
					     strcasecmp(ret, "HDRS") == 0),
	};

	queue_id_new(b->id);
	info.bounce_id = b->id;
	b->msg = str_new(str_len(m->data) + 8192,
			 str_len(m->data) + 1024 * 1024);
	if (dsn_build(b->msg, &info, r, n, str_c(m->data),
		      str_len(m->data)) < 0) {
		log_error(m->id, "notification too large");
		str_free(&b->msg);
		return;
	}
	b->rcpt = xstrdup(to);
	b->kind = kind;
	b->eightbit = !info.headers_only && m->env.body != NULL &&
		      strcasecmp(m->env.body, "8BITMIME") == 0;
	m->nb++;
}

static bool is_postmaster(const struct qmsg *m, const char *addr)
{
	return strcasecmp(addr, m->q->set.postmaster) == 0;
}

/* The DSNs of this attempt. */
static void make_bounces(struct qmsg *m)
{
	struct dsn_rcpt *fail = xcalloc(m->nt + 1, sizeof(*fail));
	struct dsn_rcpt *ok = xcalloc(m->nt + 1, sizeof(*ok));
	size_t nf = 0, nok = 0;
	bool to_pm = false;
	const char *sender = m->env.sender;

	for (size_t i = 0; i < m->nt; i++) {
		const struct qtarget *t = &m->t[i];
		const struct queue_rcpt *r = &m->env.rcpts[t->rcpt];
		struct dsn_rcpt d = {
			.address = t->addr, .orcpt = r->orcpt,
			.status = t->status, .diagnostic = t->reply,
			.remote_mta = t->relay,
		};

		if (t->out == T_FAILED &&
		    dsn_notify_has(r->notify, "FAILURE")) {
			d.action = DSN_FAILED;
			fail[nf++] = d;
			if (is_postmaster(m, r->address))
				to_pm = true;
		} else if (t->out == T_SENT &&
			   dsn_notify_has(r->notify, "SUCCESS")) {
			d.action = t->relayed ? DSN_RELAYED : DSN_DELIVERED;
			ok[nok++] = d;
		}
	}
	if (nf > 0 && sender[0] != '\0') {
		add_bounce(m, sender, fail, nf, N_FAILURE);
	} else if (nf > 0 && to_pm) {
		log_warn(m->id, "undeliverable notice to the postmaster: "
			 "dropped");
	} else if (nf > 0) {
		log_info(m->id, "sender is empty (a bounce): no notice "
			 "to it; telling %s", m->q->set.postmaster);
		add_bounce(m, m->q->set.postmaster, fail, nf, N_FAILURE);
	}
	if (nok > 0 && sender[0] != '\0')
		add_bounce(m, sender, ok, nok, N_SUCCESS);
	free(fail);
	free(ok);
}

/* Once per message, after qmgr_delay_warning: the recipients still
 * pending that asked for DELAY (the default) are told to their sender. */
static void make_delay_notice(struct qmsg *m, int64_t now)
{
	int64_t after = m->q->set.delay_warning;
	struct dsn_rcpt *d;
	size_t n = 0;

	if (after <= 0 || m->st.warned || m->env.sender[0] == '\0' ||
	    now - m->env.arrival_sec < after)
		return;
	d = xcalloc(m->nt + 1, sizeof(*d));
	for (size_t i = 0; i < m->nt; i++) {
		const struct qtarget *t = &m->t[i];
		const struct queue_rcpt *r = &m->env.rcpts[t->rcpt];

		if (t->out != T_DEFERRED || !dsn_notify_has(r->notify, "DELAY"))
			continue;
		d[n].address = t->addr;
		d[n].orcpt = r->orcpt;
		d[n].action = DSN_DELAYED;
		d[n].status = t->status;
		d[n].diagnostic = t->reply;
		d[n].remote_mta = t->relay;
		n++;
	}
	if (n > 0)
		add_bounce(m, m->env.sender, d, n, N_DELAY);
	m->st.warned = true;
	free(d);
}

static void finish_attempt(struct qmsg *m)
{
	struct qmgr *q = m->q;
	int64_t now = qmgr_now();
	double delay = qmgr_now_precise() - (double)m->env.arrival_sec -
		       (double)m->env.arrival_usec / 1e6;
	bool expired = now - m->env.arrival_sec >= q->set.lifetime;
	bool *pending = xcalloc(m->env.nrcpts + 1, sizeof(bool));

	for (size_t i = 0; i < m->nt; i++) {
		struct qtarget *t = &m->t[i];

		if (t->dup >= 0) {
			const struct qtarget *o = &m->t[t->dup];

			set_out(t, o->out, o->status, o->reply);
			free(t->relay);
			t->relay = o->relay != NULL ? xstrdup(o->relay) : NULL;
			t->relayed = o->relayed;
		}
		if (t->out == T_PENDING)
			set_out(t, T_DEFERRED, "4.3.0", "451 4.3.0 no outcome");
		if (t->out == T_DEFERRED && expired) {
			struct str *r = str_new(128, 2048);

			STR_TRY(str_printf(r, "message expired after %llds in "
					 "the queue: %s",
					 (long long)(now - m->env.arrival_sec),
					 t->reply));
			set_out(t, T_FAILED, t->status, str_c(r));
			str_free(&r);
		}
		if (t->out == T_SENT)
			qstate_add_reached(&m->st, t->rcpt, t->addr);
		if (t->out == T_DEFERRED) {
			pending[t->rcpt] = true;
			qstate_set_error(&m->st, t->rcpt, t->reply);
		}
		if (t->out == T_FAILED)
			m->failed_now[t->rcpt] = true;
		log_outcome(m, t, delay);
	}
	m->all_done = true;
	for (size_t i = 0; i < m->env.nrcpts; i++) {
		if (!pending[i])
			m->st.rcpts[i].done = true;
		else
			m->all_done = false;
	}
	free(pending);
	make_bounces(m);
	if (!m->all_done)
		make_delay_notice(m, now);
	if (!m->all_done) {
		m->st.attempts++;
		m->due = now + qstate_backoff(m->st.attempts, q->set.retry_min,
					      q->set.retry_max);
		m->st.next_try = m->due;
	}
	m->req.data = m;
	if (uv_queue_work(q->loop, &m->req, end_work, end_after) < 0) {
		end_work(&m->req);
		end_after(&m->req, 0);
	}
}

/* ---- 3: LMTP and SMTP ---- */

static enum tout outcome_of(unsigned code)
{
	return code / 100 == 2 ? T_SENT : code / 100 == 4 ? T_DEFERRED :
							    T_FAILED;
}

/* The enhanced status code of a reply, or one made from its class. */
static const char *status_of(const struct smtp_reply *r)
{
	static const char *const made[] = { "2.0.0", "4.0.0", "5.0.0" };

	if (r->enhanced[0] != '\0')
		return r->enhanced;
	return made[r->code / 100 == 2 ? 0 : r->code / 100 == 4 ? 1 : 2];
}

static void group_done(struct qmsg *m)
{
	if (--m->outstanding == 0)
		finish_attempt(m);
}

static void on_sent(struct smtpclient *c, const struct smtp_reply *const *r,
		    size_t n, void *ctx)
{
	struct qgroup *g = ctx;
	struct qmsg *m = g->m;
	struct str *t = str_new(128, 2048);
	bool relayed = !dest_is_lmtp(g->dest) &&
		       !smtpclient_has_ext(c, "DSN");

	for (size_t i = 0; i < n && i < g->nl; i++) {
		struct qtarget *tg = &m->t[g->lmap[i]];
		unsigned cls = r[i]->code / 100;

		str_clear(t);
		smtp_reply_format(r[i], t);
		set_out(tg, outcome_of(r[i]->code), status_of(r[i]), str_c(t));
		tg->relayed = cls == 2 && relayed;
	}
	str_free(&t);
	dest_put(g->dest, c, true);
	group_done(m);
}

/* No connection: deferred, or bounced when it can never work. */
static void group_defer(struct qgroup *g, const struct smtp_reply *err,
			bool permanent)
{
	struct qmsg *m = g->m;
	struct str *t = str_new(128, 2048);

	if (err != NULL)
		smtp_reply_format(err, t);
	else
		STR_TRY(str_append_c(t, "451 4.3.2 queue manager stopping"));
	for (size_t i = 0; i < g->nl; i++)
		set_out(&m->t[g->lmap[i]],
			permanent && err != NULL ? T_FAILED : T_DEFERRED,
			err != NULL && err->enhanced[0] != '\0' ?
				err->enhanced : "4.4.1", str_c(t));
	str_free(&t);
	group_done(m);
}

static void on_client(struct smtpclient *c, const struct smtp_reply *err,
		      bool permanent, void *ctx)
{
	struct qgroup *g = ctx;
	struct qmsg *m = g->m;
	/* Over SMTP a message with 8-bit bytes is 8-bit whatever its BODY
	 * said: never sent to a server without 8BITMIME (5.6.3). */
	struct smtpclient_msg msg = {
		.sender = m->env.sender,
		.eightbit = dest_is_lmtp(g->dest) ?
				    m->env.body != NULL &&
					    strcasecmp(m->env.body,
						       "8BITMIME") == 0 :
				    m->eightbit,
		.smtputf8 = m->env.smtputf8,
		.ret = m->env.ret,
		.envid = m->env.envid,
		.queue_id = dest_is_lmtp(g->dest) ? m->id : NULL,
		.rcpts = g->lr,
		.nrcpts = g->nl,
		.data = str_c(m->data),
		.len = str_len(m->data),
	};

	if (c == NULL) {
		group_defer(g, err, permanent);
		return;
	}
	for (size_t i = 0; i < g->nl; i++) {
		struct qtarget *t = &m->t[g->lmap[i]];

		free(t->relay);
		t->relay = xstrdup(dest_conn_name(c));
	}
	if (smtpclient_send(c, &msg, on_sent, g) < 0) {
		dest_put(g->dest, c, false);
		group_defer(g, NULL, false);
	}
}

static const char *domain_of(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at != NULL ? at + 1 : "";
}

/* What groups targets of a kind beyond the kind: the domain (MX), the
 * mail host (another mailbox server), else nothing (NULL). */
static const char *group_key(const struct qtarget *t)
{
	return t->kind == K_MX ? domain_of(t->addr) :
	       t->kind == K_MAILBOX ? t->mailhost : NULL;
}

/* Fills a group with the pending targets of one kind (each address
 * once), of one key (group_key) when key is not NULL; false when it has
 * none. */
static bool group_fill(struct qmsg *m, struct qgroup *g, enum tkind kind,
		       const char *key, struct dest *dest)
{
	g->m = m;
	g->dest = dest;
	g->lr = xcalloc(m->nt + 1, sizeof(*g->lr));
	g->lmap = xcalloc(m->nt + 1, sizeof(*g->lmap));
	for (size_t i = 0; i < m->nt; i++) {
		struct qtarget *t = &m->t[i];
		const struct queue_rcpt *r = &m->env.rcpts[t->rcpt];

		if (t->kind != kind || t->out != T_PENDING ||
		    (key != NULL && strcasecmp(group_key(t), key) != 0))
			continue;
		for (size_t k = 0; k < i; k++) {
			if (m->t[k].kind == kind && m->t[k].dup < 0 &&
			    strcasecmp(m->t[k].addr, t->addr) == 0) {
				t->dup = (long)k;
				break;
			}
		}
		if (t->dup >= 0)
			continue;
		free(t->relay);
		t->relay = dest_is_mx(dest) ? NULL : xstrdup(dest_name(dest));
		g->lr[g->nl].address = t->addr;
		g->lr[g->nl].notify = r->notify;
		g->lr[g->nl].orcpt = r->orcpt;
		g->lmap[g->nl++] = i;
	}
	if (g->nl == 0) {
		free(g->lr);
		free(g->lmap);
		memset(g, 0, sizeof(*g));
	}
	return g->nl > 0;
}

/* The groups: LMTP, the relay host, then one per remote domain or other
 * mailbox server; all made before any starts (their addresses are
 * callback contexts). */
static void deliver_all(struct qmsg *m)
{
	struct qmgr *q = m->q;
	struct dest *relay = qmgr_relay(q);

	m->g = xcalloc(m->nt + 2, sizeof(*m->g));
	if (group_fill(m, &m->g[m->ng], K_LMTP, NULL, q->lmtp))
		m->ng++;
	if (relay != NULL && group_fill(m, &m->g[m->ng], K_RELAY, NULL, relay))
		m->ng++;
	for (size_t i = 0; i < m->nt; i++) {
		enum tkind kind = m->t[i].kind;
		const char *key = group_key(&m->t[i]);
		bool seen = key == NULL;

		/* The first target of a key fills its whole group. */
		for (size_t k = 0; k < i && !seen; k++)
			seen = m->t[k].kind == kind &&
			       strcasecmp(group_key(&m->t[k]), key) == 0;
		if (seen)
			continue;
		if (group_fill(m, &m->g[m->ng], kind, key,
			       kind == K_MX ? qmgr_mx(q, key) :
					      qmgr_mailbox(q, key)))
			m->ng++;
	}
	m->outstanding = 1 + (unsigned)m->ng;
	for (size_t i = 0; i < m->ng; i++)
		dest_get(m->g[i].dest, on_client, &m->g[i]);
	group_done(m);
}

/* ---- 2: resolution ---- */

static bool host_is_local(const struct qmgr *q, const char *host)
{
	return host == NULL || host[0] == '\0' ||
	       strcasecmp(host, "localhost") == 0 ||
	       strcasecmp(host, q->set.hostname) == 0;
}

/* user@domain + detail -> user+detail@domain */
static char *with_detail(const char *addr, const char *detail)
{
	const char *at = strrchr(addr, '@');
	struct str *s = str_new(128, 2048);
	char *r;

	if (at == NULL || detail == NULL || detail[0] == '\0')
		STR_TRY(str_append_c(s, addr));
	else
		STR_TRY(str_printf(s, "%.*s+%s%s", (int)(at - addr), addr,
				 detail, at));
	r = xstrdup(str_c(s));
	str_free(&s);
	return r;
}

/* An address in another domain: to the relay host, or to the MX hosts
 * of its domain. */
static void remote_kind(struct qmsg *m, struct qtarget *t)
{
	t->kind = qmgr_relay(m->q) != NULL ? K_RELAY : K_MX;
}

static void add_remote(struct qmsg *m, const char *addr, size_t rcpt)
{
	if (qstate_reached(&m->st, rcpt, addr))
		return;
	remote_kind(m, add_target(m, addr, rcpt));
}

static void add_resolved(struct qmsg *m, size_t rcpt,
			 const struct authclient_resolution *res)
{
	const char *orig = m->env.rcpts[rcpt].address;

	if (!res->local_domain) {
		add_remote(m, orig, rcpt);
		return;
	}
	if (res->ntargets == 0) {
		set_out(add_target(m, orig, rcpt), T_SENT, "2.0.0",
			"250 2.0.0 list without members: nothing to do");
		return;
	}
	for (size_t i = 0; i < res->ntargets; i++) {
		const struct authclient_target *tg = &res->targets[i];
		char *addr = res->ntargets == 1 ?
				     with_detail(tg->address, res->detail) :
				     xstrdup(tg->address);
		struct qtarget *t;

		if (qstate_reached(&m->st, rcpt, addr)) {
			free(addr);
			continue;
		}
		t = add_target(m, addr, rcpt);
		free(addr);
		if (tg->kind == DIR_TARGET_EXTERNAL) {
			t->kind = K_NONE;
			remote_kind(m, t);
		} else if (!host_is_local(m->q, tg->mailhost)) {
			t->kind = K_MAILBOX;
			t->mailhost = xstrdup(tg->mailhost);
		} else {
			t->kind = K_LMTP;
		}
	}
}

static void on_resolved(enum authclient_status st,
			const struct authclient_resolution *res,
			const char *error, void *ctx)
{
	struct resolve_ctx *rc = ctx;
	struct qmsg *m = rc->m;
	size_t i = rc->rcpt;
	const char *addr = m->env.rcpts[i].address;
	struct str *s;

	free(rc);
	switch (st) {
	case AUTHCLIENT_OK:
		add_resolved(m, i, res);
		break;
	case AUTHCLIENT_NOTFOUND:
		set_out(add_target(m, addr, i), T_FAILED, "5.1.1",
			"550 5.1.1 unknown recipient");
		break;
	case AUTHCLIENT_INVALID:
		set_out(add_target(m, addr, i), T_FAILED, "5.1.3",
			"553 5.1.3 bad recipient address syntax");
		break;
	default:
		s = str_new(128, 1024);
		STR_TRY(str_printf(s, "451 4.3.0 directory unavailable: %s",
				 error != NULL ? error : "unknown error"));
		set_out(add_target(m, addr, i), T_DEFERRED, "4.3.0", str_c(s));
		str_free(&s);
		break;
	}
	if (--m->resolving == 0)
		deliver_all(m);
}

static void resolve_all(struct qmsg *m)
{
	size_t todo = 0;

	for (size_t i = 0; i < m->env.nrcpts; i++)
		todo += !m->st.rcpts[i].done;
	if (todo == 0) {
		finish_attempt(m);
		return;
	}
	m->resolving = todo;
	for (size_t i = 0; i < m->env.nrcpts; i++) {
		struct resolve_ctx *rc;

		if (m->st.rcpts[i].done)
			continue;
		rc = xmalloc(sizeof(*rc));
		rc->m = m;
		rc->rcpt = i;
		authclient_resolve(m->q->auth, m->env.rcpts[i].address,
				   on_resolved, rc);
	}
}

/* ---- 1: load (thread pool) ---- */

/* Renames folder/name to active/name: 0, or errno. */
static int move_one(const struct qmgr *q, enum qfolder f, const char *name)
{
	char *src = qmgr_path(q, f, name), *dst = qmgr_path(q, QF_ACTIVE, name);
	int r = rename(src, dst) < 0 ? errno : 0;

	free(src);
	free(dst);
	return r;
}

/* The message (its state first) into active/: 0, 1 = gone, -1 = error.
 * A deferred message may have been held and released since: then it
 * waits in incoming/. */
static int move_in(struct qmsg *m)
{
	enum qfolder from[2] = { m->from, QF_INCOMING };
	size_t nfrom = m->from == QF_DEFERRED ? 2 : 1;
	struct str *name = str_new(64, 256);
	int r = ENOENT;

	STR_TRY(str_printf(name, "%s%s", m->id, QSTATE_SUFFIX));
	for (size_t i = 0; i < nfrom && r == ENOENT; i++) {
		(void)move_one(m->q, from[i], str_c(name));
		r = move_one(m->q, from[i], m->id);
	}
	str_free(&name);
	if (r != 0 && r != ENOENT)
		STR_TRY(str_printf(m->error, "moving %s to active/: %s",
				   m->id, strerror(r)));
	return r == 0 ? 0 : r == ENOENT ? 1 : -1;
}

static bool has_8bit(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)p[i] & 0x80)
			return true;
	}
	return false;
}

static void load_work(uv_work_t *req)
{
	struct qmsg *m = req->data;
	struct qmgr *q = m->q;
	struct str *spath = str_new(64, 8192);
	char *path, *dst;
	int r;

	if (m->from == QF_ACTIVE) {
		/* Killed between writing the state into deferred/ and
		 * moving the message there: that state is the newest. */
		STR_TRY(str_printf(spath, "%s%s", m->id, QSTATE_SUFFIX));
		(void)move_one(q, QF_DEFERRED, str_c(spath));
		str_clear(spath);
	} else {
		r = move_in(m);
		if (r != 0) {
			m->load = r;
			str_free(&spath);
			return;
		}
	}
	path = qmgr_path(q, QF_ACTIVE, m->id);
	if (access(path, R_OK) < 0) {
		m->load = errno == ENOENT ? 1 : -3;
		STR_TRY(str_printf(m->error, "cannot read %s: %s (left in "
				   "active/)", path, strerror(errno)));
		free(path);
		str_free(&spath);
		return;
	}
	if (queue_file_read(path, &m->env, m->data, m->error) < 0) {
		dst = qmgr_path(q, QF_CORRUPT, m->id);
		(void)rename(path, dst);
		free(dst);
		free(path);
		m->load = -1;
		str_free(&spath);
		return;
	}
	/* Scanned here, off the loop: a message may be large. */
	m->eightbit = (m->env.body != NULL &&
		       strcasecmp(m->env.body, "8BITMIME") == 0) ||
		      has_8bit(str_c(m->data), str_len(m->data));
	STR_TRY(str_printf(spath, "%s%s", path, QSTATE_SUFFIX));
	if (qstate_read(str_c(spath), &m->st, m->env.nrcpts, m->error) < 0)
		str_clear(m->error);	/* a bad state: start afresh */
	free(path);
	str_free(&spath);
	m->load = 0;
}

static void load_after(uv_work_t *req, int status)
{
	struct qmsg *m = req->data;
	struct qmgr *q = m->q;

	if (status < 0 || m->load != 0) {
		if (m->load == -1)
			log_error(m->id, "unreadable queue file, moved to "
				  "corrupt/: %s", str_c(m->error));
		else if (m->load < 0)
			log_error(m->id, "%s", str_c(m->error));
		scan_message_done(q, m->id, false, 0, m->bytes);
		msg_free(m);
		return;
	}
	m->failed_now = xcalloc(m->env.nrcpts + 1, sizeof(bool));
	if (m->st.attempts == 0 && m->from != QF_DEFERRED)
		log_info(m->id, "from=<%s>, size=%zu, nrcpt=%zu",
			 m->env.sender, str_len(m->data), m->env.nrcpts);
	resolve_all(m);
}

void deliver_start(struct qmgr *q, const char *id, enum qfolder from,
		   uint64_t bytes)
{
	struct qmsg *m = xcalloc(1, sizeof(*m));

	m->q = q;
	m->bytes = bytes;
	str_lcpy(m->id, id, sizeof(m->id));
	m->from = from;
	m->data = str_new(64 * 1024, (size_t)1 << 31);
	m->error = str_new(128, 4096);
	m->req.data = m;
	if (uv_queue_work(q->loop, &m->req, load_work, load_after) < 0) {
		scan_message_done(q, id, false, 0, bytes);
		msg_free(m);
	}
}
