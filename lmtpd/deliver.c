/* deliver.c: see deliver.h. */
#include "config.h"

#include <stdarg.h>
#include <stdlib.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "deliver.h"
#include "lmtpd.h"
#include "log.h"
#include "rcpt.h"
#include "smtpproto.h"
#include "spool.h"
#include "storeasync.h"
#include "str.h"
#include "svc.h"
#include "xalloc.h"

#define REPLY_MAX 1024

struct txn {
	struct lmtpd *ld;
	char id[16];
	char *sender;
	char *key;		/* the delivery key, or NULL */
	struct rcpt **rcpts;
	size_t nrcpts, rcpts_cap, ntargets;
	txn_wake_cb *wake;
	void *ctx;
	/* the message */
	struct smtp_data *data;
	struct spool *spool;
	struct str *buf;	/* message bytes not yet handed to the spool */
	uint64_t header_size;	/* Return-Path and Received */
	int64_t date;
	bool waiting;		/* the feed waits for a spool write */
	bool finishing, closed;
	txn_reply_cb *reply;
	txn_done_cb *done;
	/* the delivery */
	bool in_store;		/* the deliver request is out */
	bool orphan;		/* txn_free came first: log and go */
};

static void on_spool(void *ctx);

/* The spool file is created as the transaction starts, on the thread
 * pool: the create (the costly part of spooling a small message) runs
 * while the recipients are checked, instead of after DATA.  A transaction
 * that ends without a message removes it again. */
static void start_spool(struct txn *t)
{
	struct lmtpd *ld = t->ld;
	struct str *name = str_new(64, 256);

	if (str_printf(name, "lmtp.%s.%ld.%llu", t->id, (long)getpid(),
		       (unsigned long long)++ld->spool_seq) < 0)
		str_clear(name);
	t->spool = spool_new(svc_loop(ld->svc), ld->spool_dir, str_c(name),
			     on_spool, t);
	str_free(&name);
}

struct txn *txn_new(struct lmtpd *ld, const char *id, const char *sender,
		    txn_wake_cb *wake, void *ctx)
{
	struct txn *t = xcalloc(1, sizeof(*t));

	t->ld = ld;
	str_lcpy(t->id, id, sizeof(t->id));
	t->sender = xstrdup(sender);
	t->wake = wake;
	t->ctx = ctx;
	start_spool(t);
	return t;
}

static void txn_destroy(struct txn *t)
{
	for (size_t i = 0; i < t->nrcpts; i++)
		rcpt_free(&t->rcpts[i]);
	free(t->rcpts);
	spool_free(&t->spool, true);
	smtp_data_free(&t->data);
	str_free(&t->buf);
	free(t->sender);
	free(t->key);
	free(t);
}

void txn_set_key(struct txn *t, const char *lhlo, const char *queue_id)
{
	struct str *k = str_new(64, 1024);

	free(t->key);
	t->key = NULL;
	if (str_printf(k, "%s/%s", lhlo != NULL ? lhlo : "", queue_id) == 0)
		t->key = xstrdup(str_c(k));
	str_free(&k);
}

void txn_free(struct txn **tp)
{
	struct txn *t = *tp;

	*tp = NULL;
	if (t == NULL)
		return;
	if (t->in_store) {
		t->orphan = true;
		return;
	}
	txn_destroy(t);
}

int txn_add_rcpt(struct txn *t, struct rcpt *r)
{
	if (t->ntargets + r->ntargets > STOREASYNC_RCPT_MAX) {
		rcpt_free(&r);
		return -1;
	}
	if (t->nrcpts == t->rcpts_cap) {
		t->rcpts_cap = t->rcpts_cap * 2 + 4;
		t->rcpts = xrealloc(t->rcpts, t->rcpts_cap * sizeof(*t->rcpts));
	}
	t->rcpts[t->nrcpts++] = r;
	t->ntargets += r->ntargets;
	return 0;
}

size_t txn_rcpt_count(const struct txn *t)
{
	return t->nrcpts;
}

/* ---- DATA ---- */

static void on_spool(void *ctx);

/* Return-Path: and Received: (RFC 5321 section 4.4), folded. */
static void add_headers(struct txn *t, const char *lhlo, const char *peer)
{
	char date[SMTP_DATE_SIZE];
	bool local = strcmp(peer, "unix") == 0;
	int r;

	smtp_date((time_t)t->date, date);
	r = str_printf(t->buf, "Return-Path: <%s>\r\n"
		       "Received: from %s (%s%s%s)\r\n"
		       "\tby %s (Tern) with LMTP id %s\r\n",
		       t->sender, lhlo, local ? "local socket" : "[",
		       local ? "" : peer, local ? "" : "]", t->ld->hostname,
		       t->id);
	if (r == 0 && t->nrcpts == 1)
		r = str_printf(t->buf, "\tfor <%s>; %s\r\n",
			       t->rcpts[0]->address, date);
	else if (r == 0)
		r = str_printf(t->buf, "\t; %s\r\n", date);
	if (r < 0)
		str_clear(t->buf);	/* cannot happen: bounded inputs */
	t->header_size = str_len(t->buf);
}

void txn_data_begin(struct txn *t, const char *lhlo, const char *peer)
{
	struct lmtpd *ld = t->ld;

	t->date = (int64_t)time(NULL);
	t->data = smtp_data_new(SMTP_DATA_STRICT, ld->size_limit);
	t->buf = str_new(SPOOL_CHUNK, SPOOL_CHUNK);
	add_headers(t, lhlo, peer);
}

/* A message that will be refused is not written any further. */
static bool refused(const struct txn *t)
{
	return (smtp_data_flags(t->data) &
		(SMTP_DATA_TOO_BIG | SMTP_DATA_BARE_CR | SMTP_DATA_BARE_LF)) !=
	       0;
}

int txn_data_feed(struct txn *t, const char **pos, const char *end)
{
	int r;

	for (;;) {
		r = smtp_data_feed(t->data, pos, end, t->buf);
		if (r == 1)
			return TXN_END;
		if (r == 0)
			return TXN_MORE;
		/* The buffer is full: hand it to the spool. */
		if (spool_busy(t->spool)) {
			t->waiting = true;
			return TXN_WAIT;
		}
		if (refused(t) ||
		    spool_write(t->spool, t->buf, on_spool, t) < 0)
			str_clear(t->buf);	/* the error is kept */
	}
}

/* ---- the end ---- */

static void finish_step(struct txn *t);

static void on_spool(void *ctx)
{
	struct txn *t = ctx;

	if (t->finishing) {
		finish_step(t);
	} else if (t->waiting) {
		t->waiting = false;
		t->wake(t->ctx);
	}
}

static void reply_line(struct txn *t, const char *fmt, ...)
	TERN_PRINTF(2, 3);

/* One reply to the client (none once the session is gone). */
static void reply_line(struct txn *t, const char *fmt, ...)
{
	struct str *line;
	va_list ap;

	if (t->orphan)
		return;
	line = str_new(128, REPLY_MAX);
	va_start(ap, fmt);
	(void)str_vsetf(line, fmt, ap);
	va_end(ap);
	t->reply(str_c(line), t->ctx);
	str_free(&line);
}

/* ", orig_to=<rcpt>" when the mailbox is not the address the client
 * named (an expansion, a +tag, another case). */
static const char *orig_sep(const struct rcpt *r, const struct rcpt_target *tg)
{
	return strcasecmp(r->address, tg->address) != 0 ? ", orig_to=<" : "";
}

static const char *orig_addr(const struct rcpt *r,
			     const struct rcpt_target *tg)
{
	return strcasecmp(r->address, tg->address) != 0 ? r->address : "";
}

static const char *orig_end(const struct rcpt *r, const struct rcpt_target *tg)
{
	return strcasecmp(r->address, tg->address) != 0 ? ">" : "";
}

static void deliver(struct txn *t);

static void decide(struct txn *t)
{
	unsigned flags = smtp_data_flags(t->data);
	const char *error = spool_error(t->spool);

	log_info(t->id, "from=<%s>, size=%llu, nrcpt=%zu%s%s", t->sender,
		 (unsigned long long)(t->header_size +
				      smtp_data_size(t->data)),
		 t->nrcpts, t->key != NULL ? ", key=" : "",
		 t->key != NULL ? t->key : "");
	if (flags & SMTP_DATA_TOO_BIG) {
		for (size_t i = 0; i < t->nrcpts; i++) {
			log_info(t->id, "to=<%s>, relay=none, status=bounced "
				 "(message too big)", t->rcpts[i]->address);
			reply_line(t, "552 5.3.4 <%s>: message too big "
				   "(limit %llu bytes)",
				   t->rcpts[i]->address,
				   (unsigned long long)t->ld->size_limit);
		}
	} else if (flags & (SMTP_DATA_BARE_CR | SMTP_DATA_BARE_LF)) {
		for (size_t i = 0; i < t->nrcpts; i++) {
			log_info(t->id, "to=<%s>, relay=none, status=bounced "
				 "(bare CR or LF in the message)",
				 t->rcpts[i]->address);
			reply_line(t, "550 5.6.0 <%s>: message refused: bare "
				   "CR or LF; lines must end with CRLF",
				   t->rcpts[i]->address);
		}
	} else if (error != NULL) {
		log_error(t->id, "spool: %s", error);
		for (size_t i = 0; i < t->nrcpts; i++) {
			log_info(t->id, "to=<%s>, relay=none, status=deferred "
				 "(cannot spool the message)",
				 t->rcpts[i]->address);
			reply_line(t, "451 4.3.0 <%s>: cannot spool the "
				   "message, try again later",
				   t->rcpts[i]->address);
		}
	} else {
		deliver(t);
		return;
	}
	spool_free(&t->spool, true);
	t->done(t->ctx);
}

static void finish_step(struct txn *t)
{
	if (spool_busy(t->spool))
		return;	/* on_spool brings us back */
	if (!refused(t) && str_len(t->buf) > 0 &&
	    spool_write(t->spool, t->buf, on_spool, t) == 0)
		return;
	str_clear(t->buf);
	if (!t->closed) {
		t->closed = true;
		if (spool_close(t->spool, on_spool, t) == 0)
			return;
	}
	decide(t);
}

void txn_finish(struct txn *t, txn_reply_cb *reply, txn_done_cb *done)
{
	t->reply = reply;
	t->done = done;
	t->finishing = true;
	finish_step(t);
}

/* ---- the delivery ---- */

/* The index of (account, folder) in the request, added when new. */
static size_t target_index(struct storeasync_rcpt *sr, size_t *n,
			   const struct rcpt_target *tg)
{
	for (size_t i = 0; i < *n; i++) {
		if (sr[i].account == tg->account &&
		    strcmp(sr[i].folder, tg->folder) == 0)
			return i;
	}
	sr[*n].account = tg->account;
	sr[*n].address = tg->address;
	sr[*n].folder = tg->folder;
	sr[*n].flags = 0;
	sr[*n].quota = tg->quota;
	return (*n)++;
}

static void on_delivered(enum storeasync_status st,
			 const struct storeasync_delivery *d, bool file_ours,
			 const char *code, const char *error, void *ctx);

static void deliver(struct txn *t)
{
	struct storeasync_rcpt *sr = xcalloc(t->ntargets + 1, sizeof(*sr));
	size_t n = 0;

	for (size_t i = 0; i < t->nrcpts; i++) {
		for (size_t j = 0; j < t->rcpts[i]->ntargets; j++)
			(void)target_index(sr, &n, &t->rcpts[i]->targets[j]);
	}
	t->in_store = true;
	storeasync_deliver_key(t->ld->store, spool_path(t->spool), t->date,
			       t->key, sr, n, on_delivered, t);
	free(sr);
}

/* The replies when the store did not deliver at all. */
static void store_failed(struct txn *t, const char *code, const char *error)
{
	for (size_t i = 0; i < t->nrcpts; i++) {
		struct rcpt *r = t->rcpts[i];

		for (size_t j = 0; j < r->ntargets; j++)
			log_info(t->id, "to=<%s>%s%s%s, relay=stored, "
				 "status=deferred (mail store: %s%s%s)",
				 r->targets[j].address,
				 orig_sep(r, &r->targets[j]),
				 orig_addr(r, &r->targets[j]),
				 orig_end(r, &r->targets[j]),
				 code[0] != '\0' ? code : "",
				 code[0] != '\0' ? ": " : "",
				 error != NULL ? error : "unavailable");
		reply_line(t, "451 4.3.0 <%s>: mail store unavailable, try "
			   "again later", r->address);
	}
}

/* Logs the mailboxes of r and gives its one reply. */
static void rcpt_result(struct txn *t, const struct rcpt *r,
			const struct storeasync_delivery *d,
			struct storeasync_rcpt *sr, size_t *n)
{
	size_t ok = 0, quota = 0, temp = 0;
	uint32_t uid = 0;

	for (size_t j = 0; j < r->ntargets; j++) {
		const struct rcpt_target *tg = &r->targets[j];
		const struct storeasync_rcpt_result *res =
			&d->results[target_index(sr, n, tg)];

		if (res->status == STOREASYNC_RCPT_OK) {
			ok++;
			uid = res->uid;
			log_info(t->id, "to=<%s>%s%s%s, relay=stored, "
				 "status=sent (uid %u)", tg->address,
				 orig_sep(r, tg), orig_addr(r, tg),
				 orig_end(r, tg), res->uid);
			continue;
		}
		if (res->status == STOREASYNC_RCPT_OVERQUOTA)
			quota++;
		else
			temp++;
		log_info(t->id, "to=<%s>%s%s%s, relay=stored, status=%s (%s)",
			 tg->address, orig_sep(r, tg), orig_addr(r, tg),
			 orig_end(r, tg),
			 res->status == STOREASYNC_RCPT_OVERQUOTA &&
					 (t->ld->quota_permanent ||
					  r->ntargets > 1) ?
				 "bounced" : "deferred",
			 res->message[0] != '\0' ? res->message : "error");
	}
	if (temp > 0)
		reply_line(t, "451 4.3.0 <%s>: delivery failed, try again "
			   "later", r->address);
	else if (ok == r->ntargets && ok == 1)
		reply_line(t, "250 2.0.0 <%s> delivered (uid %u)", r->address,
			   uid);
	else if (ok == r->ntargets)
		reply_line(t, "250 2.0.0 <%s> delivered to %zu mailboxes",
			   r->address, ok);
	else if (ok > 0)
		reply_line(t, "250 2.0.0 <%s> delivered to %zu of %zu "
			   "mailboxes (the others are full)", r->address, ok,
			   r->ntargets);
	else if (t->ld->quota_permanent)
		reply_line(t, "552 5.2.2 <%s>: mailbox full", r->address);
	else
		reply_line(t, "452 4.2.2 <%s>: mailbox full, try again later",
			   r->address);
}

static void on_delivered(enum storeasync_status st,
			 const struct storeasync_delivery *d, bool file_ours,
			 const char *code, const char *error, void *ctx)
{
	struct txn *t = ctx;
	struct storeasync_rcpt *sr;
	size_t n = 0;

	t->in_store = false;
	spool_free(&t->spool, st != STOREASYNC_OK && file_ours);
	if (st != STOREASYNC_OK) {
		store_failed(t, code, error);
	} else {
		sr = xcalloc(t->ntargets + 1, sizeof(*sr));
		for (size_t i = 0; i < t->nrcpts; i++)
			rcpt_result(t, t->rcpts[i], d, sr, &n);
		free(sr);
	}
	if (t->orphan)
		txn_destroy(t);
	else
		t->done(t->ctx);
}
