/*
 * smtpclient.c: the SMTP/LMTP reply parser and the asynchronous client
 * session (see smtpclient.h).
 */
#include "config.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base64.h"
#include "compat.h"
#include "conn.h"
#include "log.h"
#include "smtpclient.h"
#include "str.h"
#include "xalloc.h"

/* A string that reached its maximum is cut there: fine here. */
#define STR_TRY(x) do { if ((x) < 0) { /* cut */ } } while (0)

/* ---- the reply parser ---- */

struct smtp_reply_parser {
	struct str *line;	/* the line being read */
	struct smtp_reply reply;
	bool in_reply;		/* a continuation line was seen */
	bool done;		/* the last reply was handed out */
	bool failed;
	const char *error;
};

struct smtp_reply_parser *smtp_reply_parser_new(void)
{
	struct smtp_reply_parser *p = xcalloc(1, sizeof(*p));

	p->line = str_new(128, SMTPCLIENT_LINE_MAX);
	p->reply.text = str_new(128, SMTPCLIENT_TEXT_MAX);
	return p;
}

void smtp_reply_parser_free(struct smtp_reply_parser **pp)
{
	struct smtp_reply_parser *p = *pp;

	if (p == NULL)
		return;
	str_free(&p->line);
	str_free(&p->reply.text);
	free(p);
	*pp = NULL;
}

static void reply_clear(struct smtp_reply *r)
{
	r->code = 0;
	r->enhanced[0] = '\0';
	r->nlines = 0;
	str_clear(r->text);
}

void smtp_reply_parser_reset(struct smtp_reply_parser *p)
{
	str_clear(p->line);
	reply_clear(&p->reply);
	p->in_reply = p->done = p->failed = false;
	p->error = NULL;
}

/* Length of an enhanced status code "c.sss.ddd" at s (class must match
 * the reply's first digit), followed by a space or the end; else 0. */
static size_t enhanced_len(const char *s, size_t n, char cls)
{
	size_t i = 0, digits;

	if (n < 5 || s[0] != cls || s[1] != '.')
		return 0;
	i = 2;
	for (int part = 0; part < 2; part++) {
		digits = 0;
		while (i < n && isdigit((unsigned char)s[i]) && digits < 3) {
			i++;
			digits++;
		}
		if (digits == 0)
			return 0;
		if (part == 0) {
			if (i >= n || s[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < n && s[i] != ' ')
		return 0;
	return i;
}

static int parser_fail(struct smtp_reply_parser *p, const char *why,
		       const char **error_r)
{
	p->failed = true;
	p->error = why;
	*error_r = why;
	return -1;
}

/* Appends text to the reply's text, cut at its maximum; control
 * characters become '?'. */
static void reply_add_text(struct smtp_reply *r, const char *s, size_t n)
{
	if (r->nlines > 0 && str_append_byte(r->text, '\n') < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch < 0x20 || ch == 0x7f)
			ch = '?';
		if (str_append_byte(r->text, ch) < 0)
			return;
	}
}

/* One complete line (without its line end): 1 when it ends the reply. */
static int parser_line(struct smtp_reply_parser *p, const char *s, size_t n,
		       const char **error_r)
{
	struct smtp_reply *r = &p->reply;
	unsigned code;
	size_t elen;
	bool last;

	if (n < 3 || !isdigit((unsigned char)s[0]) || s[0] < '2' ||
	    s[0] > '5' || !isdigit((unsigned char)s[1]) ||
	    !isdigit((unsigned char)s[2]))
		return parser_fail(p, "reply line without a valid code",
				   error_r);
	if (n > 3 && s[3] != ' ' && s[3] != '-')
		return parser_fail(p, "reply code not followed by a space "
				   "or a hyphen", error_r);
	code = (unsigned)((s[0] - '0') * 100 + (s[1] - '0') * 10 +
			  (s[2] - '0'));
	if (p->in_reply && code != r->code)
		return parser_fail(p, "different codes in one multi-line "
				   "reply", error_r);
	if (r->nlines >= SMTPCLIENT_LINES_MAX)
		return parser_fail(p, "too many lines in one reply", error_r);
	last = n == 3 || s[3] == ' ';
	r->code = code;
	s += n > 3 ? 4 : 3;
	n -= n > 3 ? 4 : 3;
	elen = enhanced_len(s, n, (char)('0' + code / 100));
	if (elen > 0 && elen < sizeof(r->enhanced)) {
		if (r->nlines == 0) {
			memcpy(r->enhanced, s, elen);
			r->enhanced[elen] = '\0';
		}
		s += elen;
		n -= elen;
		if (n > 0) {
			s++;
			n--;
		}
	}
	reply_add_text(r, s, n);
	r->nlines++;
	p->in_reply = !last;
	return last ? 1 : 0;
}

int smtp_reply_parser_feed(struct smtp_reply_parser *p, const char **pos,
			   const char *end, const struct smtp_reply **reply_r,
			   const char **error_r)
{
	if (p->failed) {
		*error_r = p->error;
		return -1;
	}
	if (p->done) {
		reply_clear(&p->reply);
		p->done = false;
	}
	while (*pos < end) {
		const char *s = *pos;
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		size_t take = nl != NULL ? (size_t)(nl - s) : (size_t)(end - s);
		size_t n;
		int ret;

		if (str_append(p->line, s, take) < 0)
			return parser_fail(p, "reply line too long", error_r);
		*pos += take;
		if (nl == NULL)
			return 0;
		(*pos)++;	/* the LF */
		n = str_len(p->line);
		if (n > 0 && str_c(p->line)[n - 1] == '\r')
			n--;
		ret = parser_line(p, str_c(p->line), n, error_r);
		str_clear(p->line);
		if (ret < 0)
			return -1;
		if (ret == 1) {
			p->done = true;
			*reply_r = &p->reply;
			return 1;
		}
	}
	return 0;
}

void smtp_reply_format(const struct smtp_reply *r, struct str *out)
{
	const char *t = str_c(r->text);
	size_t n = strcspn(t, "\n");

	STR_TRY(str_printf(out, "%03u%s%s%s%.*s", r->code,
			 r->enhanced[0] != '\0' ? " " : "", r->enhanced,
			 n > 0 ? " " : "", (int)n, t));
}

int smtpclient_stuff(struct str *out, const char *data, size_t len)
{
	size_t i = 0;

	while (i < len) {
		const char *nl = memchr(data + i, '\n', len - i);
		size_t end = nl != NULL ? (size_t)(nl - data) + 1 : len;

		if (data[i] == '.' && str_append_byte(out, '.') < 0)
			return -1;
		if (str_append(out, data + i, end - i) < 0)
			return -1;
		i = end;
	}
	if (len > 0 && data[len - 1] != '\n' && str_append_c(out, "\r\n") < 0)
		return -1;
	return str_append_c(out, ".\r\n");
}

/* ---- the client ---- */

enum sc_state {
	SC_CONNECTING,
	SC_GREETING,
	SC_HELLO,
	SC_HELO,		/* EHLO refused: HELO */
	SC_STARTTLS,
	SC_AUTH,
	SC_READY,
	SC_TXN,
	SC_QUIT,
	SC_DEAD,
};

enum sc_expect {
	EX_MAIL,
	EX_RCPT,
	EX_DATA,
	EX_FINAL,
	EX_RSET,
};

struct sc_reply {
	struct smtp_reply r;
	bool set;
};

struct smtpclient {
	uv_loop_t *loop;
	struct conn *conn;
	uv_stream_t *stream;	/* until conn_new takes it */
	uv_connect_t creq;
	uv_timer_t *timer;
	enum sc_state state;
	bool tls_done, quit_asked, ready_done;
	bool tls_on;		/* TLS is established */
	unsigned auth_step;	/* SC_AUTH: 0 AUTH sent, 1 user, 2 password */
	struct smtpclient_settings set;
	char *helo, *tls_name, *id;
	char *auth_user, *auth_password;
	struct smtp_reply_parser *parser;
	struct str *exts;	/* "\nKEYWORD args" per EHLO line */
	smtpclient_ready_cb *on_ready;
	smtpclient_close_cb *on_close;
	void *ctx;
	/* The transaction. */
	const struct smtpclient_msg *msg;	/* &msg_copy while running */
	struct smtpclient_msg msg_copy;
	smtpclient_done_cb *done_cb;
	void *done_ctx;
	struct sc_reply *replies;
	bool pipelining, mail_ok;
	enum sc_expect expect;
	size_t rcpt_next;	/* next RCPT reply expected */
	size_t final_next;	/* next accepted recipient for a final */
	size_t accepted;
};

static void sc_fail_all(struct smtpclient *c, const char *why);

static void reply_copy(struct sc_reply *dst, const struct smtp_reply *src)
{
	dst->r.code = src->code;
	memcpy(dst->r.enhanced, src->enhanced, sizeof(dst->r.enhanced));
	str_clear(dst->r.text);
	STR_TRY(str_append(dst->r.text, str_c(src->text), str_len(src->text)));
	dst->r.nlines = src->nlines;
	dst->set = true;
}

void smtp_reply_set(struct smtp_reply *r, unsigned code,
		    const char *enhanced, const char *text)
{
	r->code = code;
	str_lcpy(r->enhanced, enhanced, sizeof(r->enhanced));
	str_clear(r->text);
	STR_TRY(str_append_c(r->text, text));
	r->nlines = 1;
}

static void reply_synth(struct sc_reply *dst, unsigned code,
			const char *enhanced, const char *text)
{
	smtp_reply_set(&dst->r, code, enhanced, text);
	dst->set = true;
}

static void timer_closed(uv_handle_t *h)
{
	free(h);
}

static void sc_free(struct smtpclient *c)
{
	if (c->timer != NULL) {
		uv_timer_stop(c->timer);
		uv_close((uv_handle_t *)c->timer, timer_closed);
	}
	smtp_reply_parser_free(&c->parser);
	str_free(&c->exts);
	free(c->helo);
	free(c->tls_name);
	free(c->id);
	free(c->auth_user);
	if (c->auth_password != NULL) {
		explicit_bzero(c->auth_password, strlen(c->auth_password));
		free(c->auth_password);
	}
	free(c);
}

static void sc_timeout(uv_timer_t *t)
{
	struct smtpclient *c = t->data;

	if (c->conn != NULL)
		conn_abort(c->conn, "timeout waiting for the server");
}

static void sc_wait(struct smtpclient *c)
{
	if (c->set.timeout_ms > 0)
		uv_timer_start(c->timer, sc_timeout, c->set.timeout_ms, 0);
}

static void sc_send(struct smtpclient *c, const char *line)
{
	(void)conn_write_c(c->conn, line);
	(void)conn_write_c(c->conn, "\r\n");
}

bool smtpclient_has_ext(const struct smtpclient *c, const char *ext)
{
	const char *s = str_c(c->exts);
	size_t n = strlen(ext);

	while ((s = strchr(s, '\n')) != NULL) {
		s++;
		if (strncasecmp(s, ext, n) == 0 &&
		    (s[n] == '\0' || s[n] == ' ' || s[n] == '\n' ||
		     s[n] == '='))
			return true;
	}
	return false;
}

/* The SIZE the server announced, 0 when none. */
static uint64_t sc_size_max(const struct smtpclient *c)
{
	const char *s = str_c(c->exts);

	while ((s = strchr(s, '\n')) != NULL) {
		s++;
		if (strncasecmp(s, "SIZE ", 5) == 0)
			return strtoull(s + 5, NULL, 10);
	}
	return 0;
}

static void sc_ready(struct smtpclient *c, bool ok,
		     const struct smtp_reply *r)
{
	uv_timer_stop(c->timer);
	c->ready_done = true;
	if (ok)
		c->state = SC_READY;
	if (c->on_ready != NULL)
		c->on_ready(c, ok, r, c->ctx);
	if (!ok && c->conn != NULL)
		conn_close(c->conn, "session setup failed");
}

static void sc_hello(struct smtpclient *c)
{
	struct str *l = str_new(64, 1024);

	STR_TRY(str_printf(l, "%s %s", c->set.lmtp ? "LHLO" : "EHLO", c->helo));
	sc_send(c, str_c(l));
	str_free(&l);
	c->state = SC_HELLO;
	sc_wait(c);
}

/* ---- AUTH ---- */

/* Whether the EHLO reply's AUTH line lists mech. */
static bool sc_auth_offers(const struct smtpclient *c, const char *mech)
{
	const char *s = str_c(c->exts);
	size_t n = strlen(mech);

	while ((s = strchr(s, '\n')) != NULL) {
		const char *p;

		s++;
		if (strncasecmp(s, "AUTH ", 5) != 0)
			continue;
		for (p = s + 5; *p != '\0' && *p != '\n';) {
			size_t len = strcspn(p, " \n");

			if (len == n && strncasecmp(p, mech, n) == 0)
				return true;
			p += len;
			while (*p == ' ')
				p++;
		}
	}
	return false;
}

/* The setup fails with a 4.7.0 reply made of why and the server's. */
static void sc_auth_fail(struct smtpclient *c, const char *why,
			 const struct smtp_reply *r)
{
	struct sc_reply fake = { .r.text = str_new(64, SMTPCLIENT_TEXT_MAX) };
	struct str *text = str_new(64, SMTPCLIENT_TEXT_MAX);

	STR_TRY(str_append_c(text, why));
	if (r != NULL) {
		STR_TRY(str_append_c(text, ": "));
		smtp_reply_format(r, text);
	}
	reply_synth(&fake, 454, "4.7.0", str_c(text));
	sc_ready(c, false, &fake.r);
	str_free(&fake.r.text);
	str_free(&text);
}

/* Sends "prefix base64(p)"; the line is not logged anywhere. */
static void sc_send_b64(struct smtpclient *c, const char *prefix,
			const void *p, size_t n)
{
	struct str *l = str_new(64, 4096);

	STR_TRY(str_append_c(l, prefix));
	if (base64_encode(p, n, l) < 0)
		str_clear(l);	/* too long: the server refuses "" */
	sc_send(c, str_c(l));
	explicit_bzero(str_data(l), str_len(l));
	str_free(&l);
}

static void sc_auth_start(struct smtpclient *c)
{
	size_t ul = strlen(c->auth_user), pl = strlen(c->auth_password);
	char *plain;

	if (!c->tls_on) {
		sc_auth_fail(c, "no TLS with the server: credentials are "
			     "not sent in clear", NULL);
		return;
	}
	c->state = SC_AUTH;
	c->auth_step = 0;
	if (sc_auth_offers(c, "PLAIN")) {
		/* RFC 4616: authzid (empty) NUL authcid NUL password. */
		plain = xmalloc(ul + pl + 2);
		plain[0] = '\0';
		memcpy(plain + 1, c->auth_user, ul);
		plain[ul + 1] = '\0';
		memcpy(plain + ul + 2, c->auth_password, pl);
		sc_send_b64(c, "AUTH PLAIN ", plain, ul + pl + 2);
		explicit_bzero(plain, ul + pl + 2);
		free(plain);
		c->auth_step = 2;
	} else if (sc_auth_offers(c, "LOGIN")) {
		sc_send(c, "AUTH LOGIN");
	} else {
		sc_auth_fail(c, "the server offers neither AUTH PLAIN nor "
			     "LOGIN", NULL);
		return;
	}
	sc_wait(c);
}

static void sc_auth_reply(struct smtpclient *c, const struct smtp_reply *r)
{
	if (r->code == 235) {
		sc_ready(c, true, r);
		return;
	}
	if (r->code != 334 || c->auth_step >= 2) {
		sc_auth_fail(c, "authentication refused", r);
		return;
	}
	/* AUTH LOGIN: the user name, then the password. */
	if (c->auth_step == 0)
		sc_send_b64(c, "", c->auth_user, strlen(c->auth_user));
	else
		sc_send_b64(c, "", c->auth_password,
			    strlen(c->auth_password));
	c->auth_step++;
	sc_wait(c);
}

static void sc_hello_reply(struct smtpclient *c, const struct smtp_reply *r)
{
	const char *t = str_c(r->text), *nl;
	const char *why;

	if (r->code / 100 != 2) {
		if (c->state == SC_HELLO && !c->set.lmtp &&
		    r->code / 100 == 5) {
			struct str *l = str_new(64, 1024);

			STR_TRY(str_printf(l, "HELO %s", c->helo));
			sc_send(c, str_c(l));
			str_free(&l);
			c->state = SC_HELO;
			sc_wait(c);
			return;
		}
		sc_ready(c, false, r);
		return;
	}
	str_clear(c->exts);
	if (c->state == SC_HELLO) {
		nl = strchr(t, '\n');
		if (nl != NULL)
			STR_TRY(str_append_c(c->exts, nl));
	}
	if (c->set.tls != NULL && !c->tls_done &&
	    smtpclient_has_ext(c, "STARTTLS")) {
		sc_send(c, "STARTTLS");
		c->state = SC_STARTTLS;
		sc_wait(c);
		return;
	}
	if (c->set.tls_required && !c->tls_done) {
		struct sc_reply fake = { .r.text = str_new(64, 256) };

		why = "TLS is required and the server does not offer STARTTLS";
		reply_synth(&fake, 451, "4.7.4", why);
		sc_ready(c, false, &fake.r);
		str_free(&fake.r.text);
		return;
	}
	if (c->auth_user != NULL) {
		sc_auth_start(c);
		return;
	}
	sc_ready(c, true, r);
}

static void sc_on_tls(struct conn *conn)
{
	struct smtpclient *c = conn_ctx(conn);

	c->tls_done = true;
	c->tls_on = true;
	sc_hello(c);
}

static void sc_starttls_reply(struct smtpclient *c, const struct smtp_reply *r)
{
	const char *error;

	if (r->code != 220) {
		if (c->set.tls_required) {
			sc_ready(c, false, r);
			return;
		}
		c->tls_done = true;	/* go on without */
		if (c->auth_user != NULL)
			sc_auth_start(c);	/* refuses: no TLS */
		else
			sc_ready(c, true, r);
		return;
	}
	smtp_reply_parser_reset(c->parser);
	if (conn_start_tls(c->conn, c->set.tls, c->tls_name, &error) < 0) {
		struct sc_reply fake = { .r.text = str_new(64, 512) };

		reply_synth(&fake, 421, "4.7.0", error);
		sc_ready(c, false, &fake.r);
		str_free(&fake.r.text);
		return;
	}
	sc_wait(c);
}

/* ---- transactions ---- */

static void sc_txn_end(struct smtpclient *c)
{
	const struct smtp_reply **list;
	smtpclient_done_cb *cb = c->done_cb;
	void *ctx = c->done_ctx;
	size_t n = c->msg->nrcpts;
	struct sc_reply *replies = c->replies;

	uv_timer_stop(c->timer);
	list = xcalloc(n + 1, sizeof(*list));
	for (size_t i = 0; i < n; i++) {
		if (!replies[i].set)
			reply_synth(&replies[i], 451, "4.4.2",
				    "no reply from the server");
		list[i] = &replies[i].r;
	}
	c->replies = NULL;
	c->msg = NULL;
	c->done_cb = NULL;
	if (c->state == SC_TXN)
		c->state = SC_READY;
	cb(c, list, n, ctx);
	for (size_t i = 0; i < n; i++)
		str_free(&replies[i].r.text);
	free(replies);
	free(list);
}

static void sc_rcpt_line(struct smtpclient *c, size_t i, struct str *l)
{
	const struct smtpclient_rcpt *rc = &c->msg->rcpts[i];
	bool dsn = smtpclient_has_ext(c, "DSN");

	str_clear(l);
	STR_TRY(str_printf(l, "RCPT TO:<%s>", rc->address));
	if (dsn && rc->notify != NULL)
		STR_TRY(str_printf(l, " NOTIFY=%s", rc->notify));
	if (dsn && rc->orcpt != NULL)
		STR_TRY(str_printf(l, " ORCPT=%s", rc->orcpt));
	sc_send(c, str_c(l));
}

static void sc_mail_line(struct smtpclient *c, struct str *l)
{
	const struct smtpclient_msg *m = c->msg;
	bool dsn = smtpclient_has_ext(c, "DSN");

	STR_TRY(str_printf(l, "MAIL FROM:<%s>", m->sender));
	if (smtpclient_has_ext(c, "SIZE"))
		STR_TRY(str_printf(l, " SIZE=%zu", m->len));
	if (m->eightbit && smtpclient_has_ext(c, "8BITMIME"))
		STR_TRY(str_append_c(l, " BODY=8BITMIME"));
	if (m->smtputf8 && smtpclient_has_ext(c, "SMTPUTF8"))
		STR_TRY(str_append_c(l, " SMTPUTF8"));
	if (dsn && m->ret != NULL)
		STR_TRY(str_printf(l, " RET=%s", m->ret));
	if (dsn && m->envid != NULL)
		STR_TRY(str_printf(l, " ENVID=%s", m->envid));
	if (m->queue_id != NULL && smtpclient_has_ext(c, "XQUEUEID"))
		STR_TRY(str_printf(l, " XQUEUEID=%s", m->queue_id));
	sc_send(c, str_c(l));
}

/* A refusal before anything is sent: every recipient gets it. */
static bool sc_precheck(struct smtpclient *c)
{
	const struct smtpclient_msg *m = c->msg;
	uint64_t max = sc_size_max(c);
	const char *enh = NULL, *why = NULL;
	unsigned code = 0;

	if (max > 0 && m->len > max) {
		code = 552;
		enh = "5.3.4";
		why = "message too big for the destination server";
	} else if (m->eightbit && !smtpclient_has_ext(c, "8BITMIME")) {
		code = 554;
		enh = "5.6.3";
		why = "8-bit message and the server does not offer 8BITMIME";
	} else if (m->smtputf8 && !smtpclient_has_ext(c, "SMTPUTF8")) {
		code = 553;
		enh = "5.6.7";
		why = "SMTPUTF8 message and the server does not offer it";
	}
	if (why == NULL)
		return true;
	for (size_t i = 0; i < m->nrcpts; i++)
		reply_synth(&c->replies[i], code, enh, why);
	return false;
}

int smtpclient_send(struct smtpclient *c, const struct smtpclient_msg *m,
		    smtpclient_done_cb *cb, void *ctx)
{
	struct str *l;

	if (!smtpclient_idle(c) || m->nrcpts == 0)
		return -1;
	c->msg_copy = *m;
	c->msg = m = &c->msg_copy;
	c->done_cb = cb;
	c->done_ctx = ctx;
	c->replies = xcalloc(m->nrcpts, sizeof(*c->replies));
	for (size_t i = 0; i < m->nrcpts; i++)
		c->replies[i].r.text = str_new(64, SMTPCLIENT_TEXT_MAX);
	c->state = SC_TXN;
	c->mail_ok = false;
	c->rcpt_next = c->final_next = c->accepted = 0;
	c->pipelining = smtpclient_has_ext(c, "PIPELINING");
	if (!sc_precheck(c)) {
		sc_txn_end(c);
		return 0;
	}
	l = str_new(256, 4096);
	sc_mail_line(c, l);
	c->expect = EX_MAIL;
	if (c->pipelining) {
		for (size_t i = 0; i < m->nrcpts; i++)
			sc_rcpt_line(c, i, l);
		sc_send(c, "DATA");
	}
	str_free(&l);
	sc_wait(c);
	return 0;
}

static void sc_rset(struct smtpclient *c)
{
	sc_send(c, "RSET");
	c->expect = EX_RSET;
}

static void sc_send_data(struct smtpclient *c)
{
	const struct smtpclient_msg *m = c->msg;
	struct str *out = str_new(m->len + m->len / 32 + 64,
				  m->len * 2 + 64);

	if (smtpclient_stuff(out, m->data, m->len) < 0 ||
	    conn_write(c->conn, str_c(out), str_len(out)) < 0) {
		str_free(&out);
		conn_abort(c->conn, "cannot queue the message");
		return;
	}
	str_free(&out);
	c->expect = EX_FINAL;
}

/* The DATA reply. */
static void sc_data_reply(struct smtpclient *c, const struct smtp_reply *r)
{
	const struct smtpclient_msg *m = c->msg;

	if (r->code == 354) {
		if (c->accepted == 0 || !c->mail_ok) {
			conn_abort(c->conn, "server accepted DATA without "
				   "recipients");
			return;
		}
		sc_send_data(c);
		return;
	}
	for (size_t i = 0; i < m->nrcpts; i++) {
		if (!c->replies[i].set)
			reply_copy(&c->replies[i], r);
	}
	sc_rset(c);
}

/* After each RCPT reply without pipelining: the next command. */
static void sc_next_cmd(struct smtpclient *c)
{
	struct str *l;

	if (c->pipelining)
		return;
	if (c->rcpt_next < c->msg->nrcpts) {
		l = str_new(256, 4096);
		sc_rcpt_line(c, c->rcpt_next, l);
		str_free(&l);
	} else if (c->accepted > 0) {
		sc_send(c, "DATA");
	} else {
		sc_rset(c);
	}
}

static void sc_final_reply(struct smtpclient *c, const struct smtp_reply *r)
{
	const struct smtpclient_msg *m = c->msg;

	if (!c->set.lmtp) {
		for (size_t i = 0; i < m->nrcpts; i++) {
			if (!c->replies[i].set)
				reply_copy(&c->replies[i], r);
		}
		sc_txn_end(c);
		return;
	}
	while (c->final_next < m->nrcpts && c->replies[c->final_next].set)
		c->final_next++;
	if (c->final_next < m->nrcpts)
		reply_copy(&c->replies[c->final_next++], r);
	while (c->final_next < m->nrcpts && c->replies[c->final_next].set)
		c->final_next++;
	if (c->final_next >= m->nrcpts)
		sc_txn_end(c);
}

static void sc_txn_reply(struct smtpclient *c, const struct smtp_reply *r)
{
	const struct smtpclient_msg *m = c->msg;

	switch (c->expect) {
	case EX_MAIL:
		c->mail_ok = r->code / 100 == 2;
		c->expect = EX_RCPT;
		if (!c->mail_ok) {
			for (size_t i = 0; i < m->nrcpts; i++)
				reply_copy(&c->replies[i], r);
			if (!c->pipelining)
				sc_rset(c);
			return;
		}
		sc_next_cmd(c);
		return;
	case EX_RCPT:
		if (c->mail_ok) {
			if (r->code / 100 == 2)
				c->accepted++;
			else
				reply_copy(&c->replies[c->rcpt_next], r);
		}
		c->rcpt_next++;
		if (c->rcpt_next == m->nrcpts)
			c->expect = EX_DATA;
		sc_next_cmd(c);
		return;
	case EX_DATA:
		sc_data_reply(c, r);
		return;
	case EX_FINAL:
		sc_final_reply(c, r);
		return;
	case EX_RSET:
		sc_txn_end(c);
		return;
	}
}

static void sc_reply(struct smtpclient *c, const struct smtp_reply *r)
{
	switch (c->state) {
	case SC_GREETING:
		if (r->code != 220) {
			sc_ready(c, false, r);
			return;
		}
		sc_hello(c);
		return;
	case SC_HELLO:
	case SC_HELO:
		sc_hello_reply(c, r);
		return;
	case SC_STARTTLS:
		sc_starttls_reply(c, r);
		return;
	case SC_AUTH:
		sc_auth_reply(c, r);
		return;
	case SC_TXN:
		sc_wait(c);
		sc_txn_reply(c, r);
		return;
	default:
		/* Unexpected output (421 while idle): the server goes away;
		 * the close follows. */
		return;
	}
}

static void sc_on_read(struct conn *conn, const char *data, size_t len)
{
	struct smtpclient *c = conn_ctx(conn);
	const char *pos = data, *end = data + len, *error;
	const struct smtp_reply *r;

	while (pos < end && !conn_closing(conn)) {
		enum sc_state before = c->state;
		int ret = smtp_reply_parser_feed(c->parser, &pos, end, &r,
						 &error);

		if (ret < 0) {
			log_warn(c->id, "bad reply from the server: %s", error);
			conn_abort(conn, error);
			return;
		}
		if (ret == 0)
			return;
		sc_reply(c, r);
		/* After STARTTLS's 220 the rest of this chunk was sent in
		 * plaintext: never read it as part of the TLS session. */
		if (before == SC_STARTTLS && c->state == SC_STARTTLS)
			return;
	}
}

/* Every recipient still without a reply gets a 4.4.2 one. */
static void sc_fail_all(struct smtpclient *c, const char *why)
{
	struct str *t = str_new(64, 1024);

	STR_TRY(str_printf(t, "lost connection with %s: %s",
			 c->id, why != NULL ? why : "closed"));
	for (size_t i = 0; i < c->msg->nrcpts; i++) {
		if (!c->replies[i].set)
			reply_synth(&c->replies[i], 451, "4.4.2", str_c(t));
	}
	str_free(&t);
	sc_txn_end(c);
}

static void sc_on_close(struct conn *conn, const char *reason)
{
	struct smtpclient *c = conn_ctx(conn);
	enum sc_state st = c->state;

	c->conn = NULL;
	c->state = SC_DEAD;
	if (st == SC_TXN) {
		c->state = SC_DEAD;
		sc_fail_all(c, reason);
	} else if (st < SC_READY && !c->ready_done) {
		struct sc_reply fake = { .r.text = str_new(64, 1024) };
		struct str *t = str_new(64, 1024);

		STR_TRY(str_printf(t, "cannot talk to %s: %s", c->id,
				 reason != NULL ? reason : "closed"));
		reply_synth(&fake, 421, "4.4.2", str_c(t));
		if (c->on_ready != NULL)
			c->on_ready(c, false, &fake.r, c->ctx);
		str_free(&fake.r.text);
		str_free(&t);
	}
	if (c->on_close != NULL)
		c->on_close(c, reason, c->ctx);
	sc_free(c);
}

static const struct conn_ops sc_ops = {
	.on_read = sc_on_read,
	.on_close = sc_on_close,
	.on_tls = sc_on_tls,
};

static void stream_closed(uv_handle_t *h)
{
	struct smtpclient *c = h->data;
	struct sc_reply fake = { .r.text = str_new(64, 1024) };
	struct str *t = str_new(64, 1024);

	free(h);
	STR_TRY(str_printf(t, "cannot connect to %s", c->id));
	reply_synth(&fake, 421, "4.4.1", str_c(t));
	c->state = SC_DEAD;
	if (c->on_ready != NULL && !c->ready_done)
		c->on_ready(c, false, &fake.r, c->ctx);
	if (c->on_close != NULL)
		c->on_close(c, "cannot connect", c->ctx);
	str_free(&fake.r.text);
	str_free(&t);
	sc_free(c);
}

static void sc_connected(uv_connect_t *req, int status)
{
	struct smtpclient *c = req->data;
	uv_stream_t *s = c->stream;

	/* Cancelled by the connect timeout: stream_closed() follows. */
	if (s == NULL || uv_is_closing((uv_handle_t *)s))
		return;
	c->stream = NULL;
	uv_timer_stop(c->timer);
	if (status < 0 || c->quit_asked) {
		if (status < 0)
			log_warn(c->id, "connect: %s", uv_strerror(status));
		s->data = c;
		uv_close((uv_handle_t *)s, stream_closed);
		return;
	}
	c->conn = conn_new(c->loop, s, &sc_ops, c, c->id);
	c->state = SC_GREETING;
	sc_wait(c);
}

/* The TCP connect took too long: closing the handle cancels it. */
static void sc_connect_timeout(uv_timer_t *t)
{
	struct smtpclient *c = t->data;

	if (c->state != SC_CONNECTING || c->stream == NULL ||
	    uv_is_closing((uv_handle_t *)c->stream))
		return;
	log_warn(c->id, "connect: timed out");
	c->stream->data = c;
	uv_close((uv_handle_t *)c->stream, stream_closed);
}

struct smtpclient *smtpclient_new(uv_loop_t *loop, const char *path,
				  const struct sockaddr *addr,
				  const struct smtpclient_settings *set,
				  smtpclient_ready_cb *on_ready,
				  smtpclient_close_cb *on_close, void *ctx)
{
	struct smtpclient *c = xcalloc(1, sizeof(*c));

	c->loop = loop;
	c->set = *set;
	c->helo = xstrdup(set->helo != NULL && set->helo[0] != '\0' ?
			  set->helo : "localhost");
	c->tls_name = set->tls_name != NULL ? xstrdup(set->tls_name) : NULL;
	c->id = xstrdup(set->id != NULL ? set->id : "smtpclient");
	if (set->auth_user != NULL && set->auth_password != NULL) {
		c->auth_user = xstrdup(set->auth_user);
		c->auth_password = xstrdup(set->auth_password);
	}
	c->set.auth_user = c->set.auth_password = NULL;
	c->set.helo = c->helo;
	c->set.tls_name = c->tls_name;
	c->set.id = c->id;
	c->parser = smtp_reply_parser_new();
	c->exts = str_new(256, 8192);
	c->on_ready = on_ready;
	c->on_close = on_close;
	c->ctx = ctx;
	c->timer = xmalloc(sizeof(*c->timer));
	uv_timer_init(loop, c->timer);
	c->timer->data = c;
	c->creq.data = c;
	c->state = SC_CONNECTING;
	if (path != NULL) {
		uv_pipe_t *p = xmalloc(sizeof(*p));

		uv_pipe_init(loop, p, 0);
		c->stream = (uv_stream_t *)p;
		uv_pipe_connect(&c->creq, p, path, sc_connected);
	} else {
		uv_tcp_t *t = xmalloc(sizeof(*t));
		int r;

		uv_tcp_init(loop, t);
		c->stream = (uv_stream_t *)t;
		r = uv_tcp_connect(&c->creq, t, addr, sc_connected);
		if (r < 0) {
			/* Reported from the loop, like every outcome. */
			log_warn(c->id, "connect: %s", uv_strerror(r));
			c->stream = NULL;
			t->data = c;
			uv_close((uv_handle_t *)t, stream_closed);
		} else if (set->connect_timeout_ms > 0) {
			uv_timer_start(c->timer, sc_connect_timeout,
				       set->connect_timeout_ms, 0);
		}
	}
	return c;
}

bool smtpclient_idle(const struct smtpclient *c)
{
	return c->state == SC_READY && c->conn != NULL &&
	       !conn_closing(c->conn);
}

void smtpclient_quit(struct smtpclient *c)
{
	c->quit_asked = true;
	if (c->conn == NULL)
		return;		/* connecting: closed when it completes */
	if (c->state == SC_READY) {
		c->state = SC_QUIT;
		sc_send(c, "QUIT");
		conn_close(c->conn, NULL);
		return;
	}
	conn_abort(c->conn, "client closed");
}

void *smtpclient_ctx(const struct smtpclient *c)
{
	return c->ctx;
}

void smtpclient_set_ctx(struct smtpclient *c, void *ctx)
{
	c->ctx = ctx;
}
