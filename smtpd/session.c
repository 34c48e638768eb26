/* session.c: see session.h. */
#include "config.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "compat.h"
#include "authclient.h"
#include "base64.h"
#include "conn.h"
#include "dir.h"
#include "linereader.h"
#include "log.h"
#include "message.h"
#include "netlist.h"
#include "pop3proto.h"
#include "queue.h"
#include "session.h"
#include "smtpd.h"
#include "smtpproto.h"
#include "str.h"
#include "svc.h"
#include "tls.h"
#include "xalloc.h"

#define REPLY_MAX 1024
#define PASSWORD_MAX 4096
#define ENVID_MAX 100		/* RFC 3461 */
#define ORCPT_MAX 500
#define TLS_DESC_MAX 256
/* Input kept while a command waits: one read beyond a command line. */
#define INPUT_MAX(line_max) (2 * CONN_READ_SIZE + (line_max) + 2)

enum session_state {
	ST_GREET,	/* before the greeting */
	ST_START,	/* before EHLO/HELO */
	ST_READY,	/* no transaction */
	ST_MAIL,	/* MAIL accepted: RCPT, DATA, BDAT */
	ST_DATA,	/* reading the message */
	ST_BDAT,	/* reading a chunk */
	ST_FINISH,	/* writing the queue file: the reply follows */
};

enum sasl_state {
	SASL_NONE,
	SASL_PLAIN,		/* waiting for the PLAIN response */
	SASL_LOGIN_USER,	/* LOGIN: waiting for the user name */
	SASL_LOGIN_PASS,	/* LOGIN: waiting for the password */
};

struct session {
	struct svc_session ss;	/* first: the skeleton's list and holds */
	struct smtpd *sd;
	struct conn *conn;
	struct linereader *lr;
	struct str *in;		/* input not yet taken */
	struct str *line;	/* the command being parsed */
	struct str *sasl;	/* decoded SASL responses */
	char id[16];
	char *peer;
	char *helo;
	char *tls_desc;		/* "TLSv1.3 with cipher ..." */
	char *auth_user;	/* the authenticated account */
	int64_t auth_id;
	char *login_user;	/* AUTH LOGIN: the name given */
	const char *sasl_mech;
	enum sasl_state sasl_state;
	uv_timer_t idle;
	uv_timer_t greet;
	unsigned greet_waits;	/* the delay and the connection count */
	enum session_state state;
	struct msg *msg;
	uint64_t size_hint;	/* MAIL SIZE= */
	size_t rcpt_cmds;	/* RCPT commands in this transaction */
	uint64_t bdat_size;	/* the chunk's size */
	uint64_t bdat_left;	/* bytes of the chunk still due */
	bool bdat_last;
	const char *bdat_refusal;	/* the chunk is read and refused */
	bool bdat_used;		/* this transaction used BDAT */
	unsigned errors;
	unsigned auth_failures;
	bool esmtp;		/* EHLO (not HELO) */
	bool tls;		/* TLS is on (implicit or after STARTTLS) */
	bool counted;		/* registered with the connection counters */
	bool blocked;		/* waiting for an answer: input parked */
	bool running;		/* inside session_run */
	bool gone;		/* the conn is closed */
	bool stop;		/* close once the transaction is over */
};

static void session_run(struct session *s);

/* ---- life ---- */

static void session_release(struct session *s)
{
	if (!svc_session_put(s->sd->svc, &s->ss))
		return;
	msg_free(&s->msg);
	linereader_free(&s->lr);
	str_free(&s->in);
	str_free(&s->line);
	str_free(&s->sasl);
	free(s->peer);
	free(s->helo);
	free(s->tls_desc);
	free(s->auth_user);
	free(s->login_user);
	free(s);
}

static void timer_closed(uv_handle_t *h)
{
	session_release(h->data);
}

/* ---- replies ---- */

static void reply(struct session *s, const char *fmt, ...) TERN_PRINTF(2, 3);

static void reply(struct session *s, const char *fmt, ...)
{
	va_list ap;

	if (s->gone)
		return;
	va_start(ap, fmt);
	conn_write_vline(s->conn, REPLY_MAX, fmt, ap);
	va_end(ap);
}

/* An error of the client: too many end the session. */
static void reply_error(struct session *s, const char *fmt, ...)
	TERN_PRINTF(2, 3);

static void reply_error(struct session *s, const char *fmt, ...)
{
	struct str *line = str_new(128, REPLY_MAX);
	va_list ap;

	va_start(ap, fmt);
	(void)str_vsetf(line, fmt, ap);
	va_end(ap);
	reply(s, "%s", str_c(line));
	str_free(&line);
	if (++s->errors >= s->sd->error_limit && !s->gone) {
		log_info(s->id, "too many errors from %s", s->peer);
		reply(s, "421 4.7.0 %s Error: too many errors",
		      s->sd->hostname);
		conn_close(s->conn, "too many errors");
	}
}

/* The id of the log lines: the queue id inside a transaction. */
static const char *log_id(const struct session *s)
{
	return s->msg != NULL ? msg_id(s->msg) : s->id;
}

static const char *protocol(const struct session *s)
{
	if (!s->esmtp)
		return "SMTP";
	if (s->tls)
		return s->auth_user != NULL ? "ESMTPSA" : "ESMTPS";
	return s->auth_user != NULL ? "ESMTPA" : "ESMTP";
}

/* A refused MAIL or RCPT, Postfix-style. */
static void log_reject(struct session *s, const char *what, const char *text,
		       const char *to)
{
	const struct queue_envelope *e =
		s->msg != NULL ? msg_envelope(s->msg) : NULL;

	log_info(log_id(s), "reject: %s from unknown[%s]: %s; from=<%s>%s%s%s "
		 "proto=%s helo=<%s>", what, s->peer, text,
		 e != NULL ? e->sender : "", to != NULL ? " to=<" : "",
		 to != NULL ? to : "", to != NULL ? ">" : "", protocol(s),
		 s->helo != NULL ? s->helo : "");
}

static void reset_txn(struct session *s)
{
	msg_free(&s->msg);
	s->size_hint = 0;
	s->rcpt_cmds = 0;
	s->bdat_used = false;
	if (s->state == ST_MAIL)
		s->state = ST_READY;
}

static void session_wake(struct session *s)
{
	s->blocked = false;
	if (!s->running)
		session_run(s);
}

static void msg_wake(void *ctx)
{
	session_wake(ctx);
}

/* ---- EHLO, HELO ---- */

static bool auth_allowed(const struct session *s)
{
	return svc_plaintext_allowed(s->sd->plaintext, s->tls, s->peer);
}

static void cmd_hello(struct session *s, const struct smtp_cmd *cmd,
		      bool esmtp)
{
	const struct smtpd *sd = s->sd;

	if (!smtp_hello_name_valid(cmd->arg)) {
		reply_error(s, "501 5.5.4 Syntax: %s hostname",
			    esmtp ? "EHLO" : "HELO");
		return;
	}
	reset_txn(s);
	free(s->helo);
	s->helo = xstrdup(cmd->arg);
	s->esmtp = esmtp;
	s->state = ST_READY;
	if (!esmtp) {
		reply(s, "250 %s", sd->hostname);
		return;
	}
	reply(s, "250-%s", sd->hostname);
	reply(s, "250-PIPELINING");
	reply(s, "250-SIZE %llu", (unsigned long long)sd->size_limit);
	if (sd->tls != NULL && !s->tls)
		reply(s, "250-STARTTLS");
	if (s->auth_user == NULL && auth_allowed(s))
		reply(s, "250-AUTH PLAIN LOGIN");
	reply(s, "250-ENHANCEDSTATUSCODES");
	reply(s, "250-8BITMIME");
	reply(s, "250-DSN");
	reply(s, "250-SMTPUTF8");
	reply(s, "250 CHUNKING");
}

/* ---- STARTTLS ---- */

/* true when TLS is starting (the caller drops the rest of its input). */
static bool cmd_starttls(struct session *s, const struct smtp_cmd *cmd)
{
	const char *error;

	if (s->tls) {
		reply_error(s, "554 5.5.1 Error: TLS already active");
		return false;
	}
	if (s->sd->tls == NULL) {
		reply_error(s, "454 4.7.0 TLS not available due to local "
			    "problem");
		return false;
	}
	if (cmd->arg[0] != '\0') {
		reply_error(s, "501 5.5.4 Syntax: STARTTLS");
		return false;
	}
	if (s->state >= ST_MAIL) {
		reply_error(s, "503 5.5.1 Error: MAIL transaction in progress");
		return false;
	}
	reply(s, "220 2.0.0 Ready to start TLS");
	if (conn_start_tls(s->conn, s->sd->tls, NULL, &error) < 0) {
		log_warn(s->id, "STARTTLS: %s", error);
		conn_abort(s->conn, "STARTTLS failed");
		return false;
	}
	/* RFC 3207: forget everything the client said before. */
	s->tls = true;
	reset_txn(s);
	free(s->helo);
	s->helo = NULL;
	s->esmtp = false;
	s->state = ST_START;
	s->sasl_state = SASL_NONE;
	linereader_reset(s->lr);
	return true;
}

static void on_tls(struct conn *c)
{
	struct session *s = conn_ctx(c);
	struct str *d = str_new(128, TLS_DESC_MAX);

	if (tls_engine_describe(conn_tls(c), d) == 0) {
		free(s->tls_desc);
		s->tls_desc = xstrdup(str_c(d));
		log_info(s->id, "TLS from %s: %s", s->peer, s->tls_desc);
	}
	str_free(&d);
}

/* ---- AUTH ---- */

static void auth_failed(struct session *s, const char *text)
{
	reply_error(s, "%s", text);
	if (++s->auth_failures >= SESSION_AUTH_FAILURES_MAX && !s->gone) {
		reply(s, "421 4.7.0 %s Error: too many failed "
		      "authentications", s->sd->hostname);
		conn_close(s->conn, "too many failed authentications");
	}
}

static void auth_done(enum authclient_status st,
		      const struct authclient_account *acct,
		      const char *error, void *ctx)
{
	struct session *s = ctx;

	if (s->gone) {
		session_release(s);
		return;
	}
	switch (st) {
	case AUTHCLIENT_OK:
		s->auth_user = xstrdup(acct->address);
		s->auth_id = acct->id;
		log_info(s->id, "authenticated: method=%s, user=<%s>",
			 s->sasl_mech, acct->address);
		reply(s, "235 2.7.0 Authentication successful");
		break;
	case AUTHCLIENT_AUTHFAIL:
	case AUTHCLIENT_NOTFOUND:
	case AUTHCLIENT_INVALID:
	case AUTHCLIENT_REFUSED:
		log_info(s->id, "authentication failed: method=%s from %s",
			 s->sasl_mech, s->peer);
		auth_failed(s, "535 5.7.8 Error: authentication failed");
		break;
	case AUTHCLIENT_LOCKEDOUT:
		auth_failed(s, "454 4.7.0 Too many failed authentications "
			    "from your address, try again later");
		break;
	case AUTHCLIENT_TEMPFAIL:
		log_warn(s->id, "authentication unavailable: %s",
			 error != NULL ? error : "tern-authd");
		reply(s, "454 4.7.0 Temporary authentication failure, try "
		      "again later");
		break;
	}
	session_wake(s);
	session_release(s);
}

static void login(struct session *s, const char *user, const char *password)
{
	if (strlen(user) > DIR_ADDRESS_MAX || strlen(password) > PASSWORD_MAX ||
	    user[0] == '\0' || password[0] == '\0') {
		auth_failed(s, "535 5.7.8 Error: authentication failed");
		return;
	}
	s->blocked = true;
	s->ss.holds++;
	authclient_authenticate(s->sd->auth, user, password, "smtp", s->peer,
				auth_done, s);
}

static void sasl_plain(struct session *s, const char *b64)
{
	const char *authz, *authc, *password;

	str_clear(s->sasl);
	if (pop3_sasl_plain_decode(b64, strlen(b64), s->sasl, &authz, &authc,
				   &password) < 0) {
		reply_error(s, "501 5.5.2 Error: invalid AUTH PLAIN response");
		return;
	}
	if (authz[0] != '\0' && strcmp(authz, authc) != 0) {
		auth_failed(s, "535 5.7.8 Error: authorization identity not "
			    "allowed");
		return;
	}
	login(s, authc, password);
	str_clear(s->sasl);	/* the password goes */
}

/* Decodes one base64 SASL line into s->sasl: -1 after a reply. */
static int sasl_decode(struct session *s, const char *b64)
{
	str_clear(s->sasl);
	if (base64_decode(b64, strlen(b64), BASE64_STRICT, s->sasl) < 0 ||
	    memchr(str_c(s->sasl), '\0', str_len(s->sasl)) != NULL) {
		reply_error(s, "501 5.5.2 Error: invalid base64 in the AUTH "
			    "response");
		return -1;
	}
	return 0;
}

/* A response line during AUTH. */
static void sasl_line(struct session *s, const char *text)
{
	enum sasl_state st = s->sasl_state;

	s->sasl_state = SASL_NONE;
	if (strcmp(text, "*") == 0) {
		free(s->login_user);
		s->login_user = NULL;
		reply_error(s, "501 5.7.0 Error: authentication aborted");
		return;
	}
	if (st == SASL_PLAIN) {
		sasl_plain(s, text);
		return;
	}
	if (sasl_decode(s, text) < 0)
		return;
	if (st == SASL_LOGIN_USER) {
		free(s->login_user);
		s->login_user = xstrdup(str_c(s->sasl));
		s->sasl_state = SASL_LOGIN_PASS;
		reply(s, "334 UGFzc3dvcmQ6");	/* "Password:" */
		return;
	}
	login(s, s->login_user != NULL ? s->login_user : "", str_c(s->sasl));
	str_clear(s->sasl);
	free(s->login_user);
	s->login_user = NULL;
}

static void cmd_auth(struct session *s, const struct smtp_cmd *cmd)
{
	char *mech = xstrdup(cmd->arg);
	char *initial = strchr(mech, ' ');

	if (initial != NULL)
		*initial++ = '\0';
	if (s->state == ST_START || !s->esmtp) {
		reply_error(s, "503 5.5.1 Error: send EHLO first");
	} else if (s->auth_user != NULL) {
		reply_error(s, "503 5.5.1 Error: already authenticated");
	} else if (s->state != ST_READY) {
		reply_error(s, "503 5.5.1 Error: MAIL transaction in progress");
	} else if (!auth_allowed(s)) {
		if (s->sd->tls != NULL)
			reply_error(s, "530 5.7.0 Must issue a STARTTLS "
				    "command first");
		else
			reply_error(s, "538 5.7.11 Encryption required for "
				    "requested authentication mechanism");
	} else if (strcasecmp(mech, "PLAIN") == 0) {
		s->sasl_mech = "PLAIN";
		if (initial == NULL) {
			s->sasl_state = SASL_PLAIN;
			reply(s, "334 ");
		} else {
			sasl_plain(s, strcmp(initial, "=") == 0 ? "" :
				   initial);
		}
	} else if (strcasecmp(mech, "LOGIN") == 0) {
		s->sasl_mech = "LOGIN";
		if (initial == NULL) {
			s->sasl_state = SASL_LOGIN_USER;
			reply(s, "334 VXNlcm5hbWU6");	/* "Username:" */
		} else if (sasl_decode(s, initial) == 0) {
			free(s->login_user);
			s->login_user = xstrdup(str_c(s->sasl));
			s->sasl_state = SASL_LOGIN_PASS;
			reply(s, "334 UGFzc3dvcmQ6");
		}
	} else {
		reply_error(s, "504 5.5.4 Error: unsupported authentication "
			    "mechanism");
	}
	free(mech);
}

/* ---- MAIL ---- */

/* RFC 3461 xtext. */
static bool xtext_valid(const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '+') {
			if (!strchr("0123456789ABCDEF", s[1]) || s[1] == '\0' ||
			    !strchr("0123456789ABCDEF", s[2]) || s[2] == '\0')
				return false;
			s += 2;
		} else if (*s < '!' || *s > '~' || *s == '=') {
			return false;
		}
	}
	return true;
}

/* The MAIL parameters into the envelope: 0, or -1 after a reply. */
static int mail_params(struct session *s, const struct smtp_cmd *cmd,
		       struct queue_envelope *e)
{
	for (size_t i = 0; i < cmd->nparams; i++) {
		const char *k = cmd->params[i].keyword;
		const char *v = cmd->params[i].value;
		char *end;

		if (!s->esmtp) {
			reply_error(s, "555 5.5.4 Error: MAIL parameters need "
				    "EHLO");
			return -1;
		}
		if (strcmp(k, "SIZE") == 0 && v != NULL && *v >= '0' &&
		    *v <= '9') {
			s->size_hint = strtoull(v, &end, 10);
			if (*end != '\0' || end - v > 19) {
				reply_error(s, "501 5.5.4 Bad SIZE value");
				return -1;
			}
		} else if (strcmp(k, "BODY") == 0 && v != NULL &&
			   (strcasecmp(v, "7BIT") == 0 ||
			    strcasecmp(v, "8BITMIME") == 0) && e->body == NULL) {
			e->body = xstrdup(strcasecmp(v, "7BIT") == 0 ?
					  "7BIT" : "8BITMIME");
		} else if (strcmp(k, "SMTPUTF8") == 0 && v == NULL) {
			e->smtputf8 = true;
		} else if (strcmp(k, "RET") == 0 && v != NULL &&
			   (strcasecmp(v, "FULL") == 0 ||
			    strcasecmp(v, "HDRS") == 0) && e->ret == NULL) {
			e->ret = xstrdup(strcasecmp(v, "FULL") == 0 ? "FULL" :
					 "HDRS");
		} else if (strcmp(k, "ENVID") == 0 && v != NULL &&
			   e->envid == NULL) {
			if (strlen(v) > ENVID_MAX || !xtext_valid(v) ||
			    v[0] == '\0') {
				reply_error(s, "501 5.5.4 Bad ENVID value");
				return -1;
			}
			e->envid = xstrdup(v);
		} else if (strcmp(k, "AUTH") == 0 && v != NULL) {
			continue;	/* RFC 4954: we trust no one's */
		} else {
			reply_error(s, "555 5.5.4 Unsupported MAIL parameter "
				    "%s", k);
			return -1;
		}
	}
	return 0;
}

/* The envelope's client facts, once MAIL is accepted. */
static void mail_accepted(struct session *s)
{
	struct queue_envelope *e = msg_envelope(s->msg);

	e->client_addr = xstrdup(s->peer);
	e->client_name = xstrdup("unknown");
	e->helo = xstrdup(s->helo);
	e->protocol = xstrdup(protocol(s));
	if (s->auth_user != NULL)
		e->auth = xstrdup(s->auth_user);
	if (s->tls_desc != NULL)
		e->tls = xstrdup(s->tls_desc);
	s->state = ST_MAIL;
	if (s->auth_user != NULL)
		log_info(msg_id(s->msg), "client=unknown[%s], session=%s, "
			 "sasl_method=%s, sasl_username=%s", s->peer, s->id,
			 s->sasl_mech, s->auth_user);
	else
		log_info(msg_id(s->msg), "client=unknown[%s], session=%s",
			 s->peer, s->id);
	reply(s, "250 2.1.0 Ok");
}

static void sender_checked(enum authclient_status st,
			   const struct authclient_resolution *res,
			   const char *error, void *ctx)
{
	struct session *s = ctx;
	bool owned = false;

	if (s->gone || s->msg == NULL) {
		session_release(s);
		return;
	}
	if (st == AUTHCLIENT_OK && res->local_domain && res->ntargets > 0) {
		owned = true;
		for (size_t i = 0; i < res->ntargets; i++) {
			if (res->targets[i].kind != DIR_TARGET_ACCOUNT ||
			    res->targets[i].account_id != s->auth_id)
				owned = false;
		}
	}
	if (owned) {
		mail_accepted(s);
	} else if (st == AUTHCLIENT_TEMPFAIL) {
		log_warn(log_id(s), "MAIL: directory: %s",
			 error != NULL ? error : "unavailable");
		reply(s, "451 4.3.0 Directory unavailable, try again later");
		reset_txn(s);
	} else {
		log_reject(s, "MAIL", "553 5.7.1 sender not owned by the "
			   "authenticated user", NULL);
		reply_error(s, "553 5.7.1 <%s>: Sender address rejected: not "
			    "owned by user %s", msg_envelope(s->msg)->sender,
			    s->auth_user);
		reset_txn(s);
	}
	session_wake(s);
	session_release(s);
}

/* ---- rate limits ----
 *
 * Counts per connect_rate_window kept by tern-authd over every process: a
 * MAIL counts a message, a RCPT a recipient, against the client address
 * (mynetworks exempt) and against the authenticated user.  Over a limit:
 * 450 4.7.1.  When tern-authd cannot answer, mail goes on: the limits
 * brake senders, they do not gate delivery.
 */

enum rate_what { RATE_MSG, RATE_RCPT };

struct rate_gate {
	struct session *s;
	enum rate_what what;
	unsigned step;			/* 0 the client, 1 the user */
	void (*pass)(struct session *s, void *arg);
	void (*refuse)(struct session *s, void *arg, const char *text);
	void *arg;
};

static void rate_next(struct rate_gate *g);

/* The limit of a step and whom it counts (NULL: nothing to count). */
static const char *rate_step(const struct rate_gate *g, unsigned step,
			     unsigned *limit_r, const char **event_r)
{
	const struct session *s = g->s;
	const struct smtpd *sd = s->sd;
	bool msg = g->what == RATE_MSG;

	if (step == 0) {
		*limit_r = msg ? sd->client_msg_rate : sd->client_rcpt_rate;
		*event_r = msg ? "smtpd-msg-ip" : "smtpd-rcpt-ip";
		if (*limit_r == 0 || netlist_match(sd->mynetworks, s->peer))
			return NULL;
		return s->peer;
	}
	*limit_r = msg ? sd->user_msg_rate : sd->user_rcpt_rate;
	*event_r = msg ? "smtpd-msg-user" : "smtpd-rcpt-user";
	return *limit_r == 0 ? NULL : s->auth_user;
}

static void rate_counted(enum authclient_status st, unsigned int count,
			 unsigned int rate, const char *error, void *ctx)
{
	struct rate_gate *g = ctx;
	struct session *s = g->s;
	const char *event, *who;
	unsigned limit;

	if (s->gone || s->msg == NULL) {
		/* The refusal frees what pass would have used. */
		if (g->arg != NULL)
			g->refuse(NULL, g->arg, NULL);
		free(g);
		session_release(s);
		return;
	}
	who = rate_step(g, g->step, &limit, &event);
	s->blocked = false;
	if (st != AUTHCLIENT_OK) {
		log_warn(log_id(s), "%s rate of %s not counted: %s", event, who,
			 error != NULL ? error : "tern-authd unavailable");
	} else if (count > limit) {
		struct str *text = str_new(128, REPLY_MAX);

		(void)str_setf(text, "450 4.7.1 Error: too %s from %s",
			       g->what == RATE_MSG ? "much mail" :
						     "many recipients", who);
		g->refuse(s, g->arg, str_c(text));
		str_free(&text);
		free(g);
		session_wake(s);
		session_release(s);
		return;
	}
	g->step++;
	rate_next(g);
	if (!s->blocked)
		session_wake(s);
	session_release(s);
}

static void rate_next(struct rate_gate *g)
{
	struct session *s = g->s;
	void (*pass)(struct session *s, void *arg) = g->pass;
	void *arg = g->arg;
	const char *event, *who;
	unsigned limit;

	for (; g->step < 2; g->step++) {
		who = rate_step(g, g->step, &limit, &event);
		if (who == NULL)
			continue;
		s->blocked = true;
		s->ss.holds++;
		authclient_event(s->sd->auth, event, who, 1, rate_counted, g);
		return;
	}
	free(g);
	pass(s, arg);
}

/* Counts one message or recipient, then calls pass, or refuse with the
 * reply when a limit is over (with s and text NULL when the session went
 * away meanwhile: only arg is to be freed). */
static void rate_check(struct session *s, enum rate_what what,
		       void (*pass)(struct session *s, void *arg),
		       void (*refuse)(struct session *s, void *arg,
				      const char *text),
		       void *arg)
{
	struct rate_gate *g = xcalloc(1, sizeof(*g));

	g->s = s;
	g->what = what;
	g->pass = pass;
	g->refuse = refuse;
	g->arg = arg;
	rate_next(g);
}

/* The MAIL checks after the rate limits. */
static void mail_counted(struct session *s, void *arg)
{
	const char *sender = msg_envelope(s->msg)->sender;

	(void)arg;
	if (s->auth_user != NULL && s->sd->sender_login_check &&
	    sender[0] != '\0' && strcasecmp(sender, s->auth_user) != 0) {
		s->blocked = true;
		s->ss.holds++;
		authclient_resolve(s->sd->auth, sender, sender_checked, s);
		return;
	}
	mail_accepted(s);
}

static void mail_refused(struct session *s, void *arg, const char *text)
{
	(void)arg;
	if (s == NULL)
		return;
	log_reject(s, "MAIL", text, NULL);
	reply(s, "%s", text);
	reset_txn(s);
}

static void cmd_mail(struct session *s, const struct smtp_cmd *cmd)
{
	struct smtpd *sd = s->sd;
	struct queue_envelope *e;
	char qid[QUEUE_ID_SIZE];

	if (s->state == ST_START) {
		reply_error(s, "503 5.5.1 Error: send HELO/EHLO first");
		return;
	}
	if (s->state != ST_READY) {
		reply_error(s, "503 5.5.1 Error: nested MAIL command");
		return;
	}
	if (sd->submission && s->auth_user == NULL) {
		if (!s->tls && sd->tls != NULL)
			reply_error(s, "530 5.7.0 Must issue a STARTTLS "
				    "command first");
		else
			reply_error(s, "530 5.7.0 Authentication required");
		return;
	}
	queue_id_new(qid);
	s->msg = msg_new(sd, qid, msg_wake, s);
	e = msg_envelope(s->msg);
	e->sender = xstrdup(cmd->path);
	s->size_hint = 0;
	if (mail_params(s, cmd, e) < 0) {
		reset_txn(s);
		return;
	}
	if (s->size_hint > sd->size_limit) {
		log_reject(s, "MAIL", "552 5.3.4 message too big", NULL);
		reply(s, "552 5.3.4 Message size exceeds fixed limit of %llu "
		      "bytes", (unsigned long long)sd->size_limit);
		reset_txn(s);
		return;
	}
	rate_check(s, RATE_MSG, mail_counted, mail_refused, NULL);
}

/* ---- RCPT ---- */

struct rcpt_job {
	struct session *s;
	char *address, *notify, *orcpt;
	bool postmaster;	/* RCPT TO:<postmaster>: always taken */
};

static bool notify_valid(const char *v)
{
	char *copy, *tok, *save;
	bool ok = true, never = false;
	size_t n = 0;

	if (strcasecmp(v, "NEVER") == 0)
		return true;
	copy = xstrdup(v);
	for (tok = strtok_r(copy, ",", &save); tok != NULL && ok;
	     tok = strtok_r(NULL, ",", &save)) {
		n++;
		if (strcasecmp(tok, "NEVER") == 0)
			never = true;
		else if (strcasecmp(tok, "SUCCESS") != 0 &&
			 strcasecmp(tok, "FAILURE") != 0 &&
			 strcasecmp(tok, "DELAY") != 0)
			ok = false;
	}
	free(copy);
	return ok && !never && n > 0 && v[strlen(v) - 1] != ',';
}

/* "rfc822;xtext" (the type any atom, the address xtext). */
static bool orcpt_valid(const char *v)
{
	const char *semi = strchr(v, ';');

	if (semi == NULL || semi == v || strlen(v) > ORCPT_MAX ||
	    semi[1] == '\0')
		return false;
	for (const char *p = v; p < semi; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-'))
			return false;
	}
	return xtext_valid(semi + 1);
}

static char *upper_dup(const char *v)
{
	char *r = xstrdup(v);

	for (char *p = r; *p != '\0'; p++) {
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
	}
	return r;
}

/* The RCPT parameters: 0, or -1 after a reply. */
static int rcpt_params(struct session *s, const struct smtp_cmd *cmd,
		       struct rcpt_job *job)
{
	for (size_t i = 0; i < cmd->nparams; i++) {
		const char *k = cmd->params[i].keyword;
		const char *v = cmd->params[i].value;

		if (!s->esmtp) {
			reply_error(s, "555 5.5.4 Error: RCPT parameters need "
				    "EHLO");
			return -1;
		}
		if (strcmp(k, "NOTIFY") == 0 && v != NULL &&
		    job->notify == NULL) {
			if (!notify_valid(v)) {
				reply_error(s, "501 5.5.4 Bad NOTIFY value");
				return -1;
			}
			job->notify = upper_dup(v);
		} else if (strcmp(k, "ORCPT") == 0 && v != NULL &&
			   job->orcpt == NULL) {
			if (!orcpt_valid(v)) {
				reply_error(s, "501 5.5.4 Bad ORCPT value");
				return -1;
			}
			job->orcpt = xstrdup(v);
		} else {
			reply_error(s, "555 5.5.4 Unsupported RCPT parameter "
				    "%s", k);
			return -1;
		}
	}
	return 0;
}

static void rcpt_job_free(struct rcpt_job *job)
{
	free(job->address);
	free(job->notify);
	free(job->orcpt);
	free(job);
}

static bool relay_allowed(const struct session *s)
{
	return s->auth_user != NULL ||
	       netlist_match(s->sd->mynetworks, s->peer);
}

static void rcpt_refuse(struct session *s, const char *addr,
			const char *fmt, ...) TERN_PRINTF(3, 4);

static void rcpt_refuse(struct session *s, const char *addr,
			const char *fmt, ...)
{
	struct str *line = str_new(128, REPLY_MAX);
	va_list ap;

	va_start(ap, fmt);
	(void)str_vsetf(line, fmt, ap);
	va_end(ap);
	log_reject(s, "RCPT", str_c(line), addr);
	if (str_c(line)[0] == '5')
		reply_error(s, "%s", str_c(line));
	else
		reply(s, "%s", str_c(line));
	str_free(&line);
}

static void rcpt_resolved(enum authclient_status st,
			  const struct authclient_resolution *res,
			  const char *error, void *ctx)
{
	struct rcpt_job *job = ctx;
	struct session *s = job->s;
	const char *a = job->address;

	if (s->gone || s->msg == NULL) {
		rcpt_job_free(job);
		session_release(s);
		return;
	}
	if ((st == AUTHCLIENT_OK && (!res->local_domain || res->ntargets > 0) &&
	     (res->local_domain || relay_allowed(s))) ||
	    (job->postmaster && st != AUTHCLIENT_TEMPFAIL)) {
		queue_envelope_add_rcpt(msg_envelope(s->msg), a, job->notify,
					job->orcpt);
		log_debug(log_id(s), "RCPT <%s>: %s", a, res->local_domain ?
			  "local" : "relay");
		reply(s, "250 2.1.5 Ok");
	} else if (st == AUTHCLIENT_OK && !res->local_domain) {
		rcpt_refuse(s, a, "554 5.7.1 <%s>: Relay access denied", a);
	} else if (st == AUTHCLIENT_OK || st == AUTHCLIENT_NOTFOUND) {
		rcpt_refuse(s, a, "550 5.1.1 <%s>: Recipient address "
			    "rejected: no such user here", a);
	} else if (st == AUTHCLIENT_INVALID) {
		rcpt_refuse(s, a, "501 5.1.3 <%s>: Bad recipient address "
			    "syntax", a);
	} else {
		log_warn(log_id(s), "RCPT <%s>: directory: %s", a,
			 error != NULL ? error : "unavailable");
		rcpt_refuse(s, a, "451 4.3.0 <%s>: Directory unavailable, "
			    "try again later", a);
	}
	rcpt_job_free(job);
	session_wake(s);
	session_release(s);
}

static void rcpt_counted(struct session *s, void *arg)
{
	struct rcpt_job *job = arg;

	s->blocked = true;
	s->ss.holds++;
	authclient_resolve(s->sd->auth, job->address, rcpt_resolved, job);
}

static void rcpt_rate_refused(struct session *s, void *arg, const char *text)
{
	struct rcpt_job *job = arg;

	if (s != NULL)
		rcpt_refuse(s, job->address, "%s", text);
	rcpt_job_free(job);
}

static void cmd_rcpt(struct session *s, const struct smtp_cmd *cmd)
{
	struct rcpt_job *job;

	if (s->state != ST_MAIL) {
		reply_error(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	job = xcalloc(1, sizeof(*job));
	job->s = s;
	job->address = xstrdup(cmd->path);
	if (rcpt_params(s, cmd, job) < 0) {
		rcpt_job_free(job);
		return;
	}
	if (++s->rcpt_cmds > s->sd->rcpt_limit) {
		rcpt_refuse(s, job->address, "452 4.5.3 Error: too many "
			    "recipients");
		rcpt_job_free(job);
		return;
	}
	if (strcasecmp(job->address, "postmaster") == 0) {
		/* RFC 5321 4.5.1: accepted without a domain, always. */
		free(job->address);
		job->address = xstrdup(s->sd->postmaster);
		job->postmaster = true;
	}
	if (job->address[0] == '\0' ||
	    strlen(job->address) > DIR_ADDRESS_MAX ||
	    strchr(job->address, '@') == NULL) {
		reply_error(s, "501 5.1.3 Bad recipient address syntax");
		rcpt_job_free(job);
		return;
	}
	rate_check(s, RATE_RCPT, rcpt_counted, rcpt_rate_refused, job);
}

/* ---- DATA, BDAT ---- */

static bool txn_ready(struct session *s, bool bdat)
{
	if (s->state != ST_MAIL) {
		if (!bdat)
			reply_error(s, "503 5.5.1 Error: need MAIL command");
		else
			s->bdat_refusal = "503 5.5.1 Error: need MAIL command";
		return false;
	}
	if (msg_envelope(s->msg)->nrcpts == 0) {
		if (!bdat)
			reply_error(s, "554 5.5.1 Error: no valid recipients");
		else
			s->bdat_refusal = "554 5.5.1 Error: no valid "
					  "recipients";
		return false;
	}
	return true;
}

static void cmd_data(struct session *s, const struct smtp_cmd *cmd)
{
	if (cmd->arg[0] != '\0') {
		reply_error(s, "501 5.5.4 Syntax: DATA");
		return;
	}
	if (!txn_ready(s, false))
		return;
	if (s->bdat_used) {
		reply_error(s, "503 5.5.1 Error: DATA after BDAT");
		return;
	}
	msg_begin(s->msg);
	s->state = ST_DATA;
	reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

static void cmd_bdat(struct session *s, const struct smtp_cmd *cmd)
{
	s->bdat_size = s->bdat_left = cmd->chunk_size;
	s->bdat_last = cmd->last;
	s->bdat_refusal = NULL;
	if (!txn_ready(s, true))
		return;	/* the chunk is read and refused */
	if (!msg_begun(s->msg))
		msg_begin(s->msg);
	s->bdat_used = true;
	s->state = ST_BDAT;
}

static void finish_done(const char *text, void *ctx)
{
	struct session *s = ctx;

	reply(s, "%s", text);
	s->state = ST_MAIL;
	reset_txn(s);
	session_wake(s);
	session_release(s);
}

/* The end marker or the last chunk was read. */
static void message_end(struct session *s)
{
	s->state = ST_FINISH;
	s->blocked = true;
	s->ss.holds++;	/* the session waits for the commit, even closed */
	msg_finish(s->msg, finish_done);
}

/* A chunk was read completely. */
static void chunk_end(struct session *s)
{
	const char *error;

	if (s->bdat_refusal != NULL) {
		reply_error(s, "%s", s->bdat_refusal);
		s->bdat_refusal = NULL;
		return;
	}
	if (s->bdat_last) {
		message_end(s);
		return;
	}
	error = msg_chunk_error(s->msg);
	s->state = ST_MAIL;
	if (error != NULL) {
		log_info(msg_id(s->msg), "reject: BDAT from unknown[%s]: %s",
			 s->peer, error);
		reply(s, "%s", error);
		reset_txn(s);
		return;
	}
	reply(s, "250 2.0.0 Ok: %llu octets received",
	      (unsigned long long)s->bdat_size);
}

/* Skips the bytes of a refused chunk. */
static int chunk_skip(struct session *s, const char **pos, const char *end)
{
	size_t avail = (size_t)(end - *pos);
	size_t n = avail < s->bdat_left ? avail : (size_t)s->bdat_left;

	*pos += n;
	s->bdat_left -= n;
	return s->bdat_left == 0 ? MSG_FEED_END : MSG_FEED_MORE;
}

/* ---- commands ---- */

/* Returns true when the rest of the input must be dropped (STARTTLS). */
static bool command(struct session *s, const struct linereader_line *l)
{
	struct smtp_cmd cmd;
	const char *error;

	if (l->flags & (LINEREADER_F_BARE_CR | LINEREADER_F_BARE_LF)) {
		s->sasl_state = SASL_NONE;
		reply_error(s, "500 5.5.2 Error: bare <CR> or <LF> in a "
			    "command");
		return false;
	}
	if (str_set(s->line, l->data, l->len) < 0) {
		s->sasl_state = SASL_NONE;
		reply_error(s, "500 5.5.2 Error: line too long");
		return false;
	}
	if (s->sasl_state != SASL_NONE) {
		sasl_line(s, str_c(s->line));
		return false;
	}
	if (smtp_cmd_parse(str_data(s->line), str_len(s->line),
			   SMTP_PARSE_UTF8, &cmd, &error) < 0) {
		reply_error(s, "%s", error);
		return false;
	}
	switch (cmd.verb) {
	case SMTP_EHLO:
		cmd_hello(s, &cmd, true);
		break;
	case SMTP_HELO:
		cmd_hello(s, &cmd, false);
		break;
	case SMTP_STARTTLS:
		return cmd_starttls(s, &cmd);
	case SMTP_AUTH:
		cmd_auth(s, &cmd);
		break;
	case SMTP_MAIL:
		cmd_mail(s, &cmd);
		break;
	case SMTP_RCPT:
		cmd_rcpt(s, &cmd);
		break;
	case SMTP_DATA:
		cmd_data(s, &cmd);
		break;
	case SMTP_BDAT:
		cmd_bdat(s, &cmd);
		break;
	case SMTP_RSET:
		reset_txn(s);
		reply(s, "250 2.0.0 Ok");
		break;
	case SMTP_NOOP:
		reply(s, "250 2.0.0 Ok");
		break;
	case SMTP_QUIT:
		reply(s, "221 2.0.0 Bye");
		conn_close(s->conn, NULL);
		break;
	case SMTP_HELP:
		reply(s, "214 2.0.0 Commands: EHLO HELO STARTTLS AUTH MAIL "
		      "RCPT DATA BDAT RSET NOOP QUIT HELP VRFY");
		break;
	case SMTP_VRFY:
		if (s->sd->vrfy_502)
			reply_error(s, "502 5.5.1 VRFY command is disabled");
		else
			reply(s, "252 2.0.0 Cannot VRFY user, but will accept "
			      "the message and attempt delivery");
		break;
	case SMTP_EXPN:
		reply_error(s, "502 5.5.1 EXPN command is disabled");
		break;
	case SMTP_LHLO:
		reply_error(s, "500 5.5.1 Error: this is SMTP, not LMTP");
		break;
	case SMTP_UNKNOWN:
	default:
		reply_error(s, "500 5.5.2 Error: command not recognized");
		break;
	}
	return false;
}

/* One step of the message: MSG_FEED_MORE, MSG_FEED_WAIT or MSG_FEED_END. */
static int message_step(struct session *s, const char **pos, const char *end)
{
	if (s->state == ST_DATA)
		return msg_data_feed(s->msg, pos, end);
	if (s->bdat_refusal != NULL)
		return chunk_skip(s, pos, end);
	return msg_chunk_feed(s->msg, pos, end, &s->bdat_left);
}

/* Feeds the waiting input to the message or the command parser until it
 * is used up or something must be waited for. */
static void session_run(struct session *s)
{
	const char *start, *pos, *end;
	struct linereader_line line;
	int r;

	if (s->running || s->gone || s->state == ST_GREET)
		return;
	s->running = true;
	start = pos = str_c(s->in);
	end = start + str_len(s->in);
	while (!s->blocked && !conn_closing(s->conn) &&
	       conn_pending(s->conn) < CONN_HIGH_WATER) {
		if (s->state == ST_DATA || s->state == ST_BDAT ||
		    s->bdat_refusal != NULL) {
			r = message_step(s, &pos, end);
			if (r == MSG_FEED_MORE && s->bdat_left > 0)
				break;
			if (r == MSG_FEED_MORE && s->state == ST_DATA)
				break;
			if (r == MSG_FEED_WAIT) {
				s->blocked = true;
			} else if (s->state == ST_DATA) {
				message_end(s);
			} else {
				chunk_end(s);
			}
			continue;
		}
		r = linereader_feed(s->lr, &pos, end, &line);
		if (r == LINEREADER_MORE)
			break;
		if (r == LINEREADER_TOO_LONG) {
			s->sasl_state = SASL_NONE;
			reply_error(s, "500 5.5.2 Error: line too long");
		} else if (r == LINEREADER_LINE && command(s, &line)) {
			pos = end;	/* plaintext after STARTTLS: dropped */
			break;
		}
	}
	if (!s->gone)
		str_consume(s->in, (size_t)(pos - start));
	s->running = false;
	if (s->gone || conn_closing(s->conn))
		return;
	if (s->stop && !s->blocked && s->state <= ST_MAIL) {
		reply(s, "421 4.3.2 %s Service shutting down",
		      s->sd->hostname);
		conn_close(s->conn, "shutting down");
		return;
	}
	if (s->blocked || conn_pending(s->conn) >= CONN_HIGH_WATER) {
		conn_read_stop(s->conn);
		uv_timer_stop(&s->idle);
	} else {
		conn_read_start(s->conn);
		uv_timer_again(&s->idle);
	}
}

/* ---- the greeting ---- */

static void greet(struct session *s)
{
	if (s->gone || conn_closing(s->conn) || s->state != ST_GREET)
		return;
	if (svc_stopping(s->sd->svc)) {
		reply(s, "421 4.3.2 %s Service shutting down",
		      s->sd->hostname);
		conn_close(s->conn, "shutting down");
		return;
	}
	s->state = ST_START;
	reply(s, "220 %s ESMTP Tern", s->sd->hostname);
	session_run(s);
}

static void greet_part_done(struct session *s)
{
	if (s->greet_waits > 0 && --s->greet_waits == 0)
		greet(s);
}

static void on_greet_timer(uv_timer_t *t)
{
	struct session *s = t->data;

	uv_timer_stop(t);
	greet_part_done(s);
}

static void conn_counted(enum authclient_status st, unsigned int count,
			 unsigned int rate, const char *error, void *ctx)
{
	struct session *s = ctx;
	unsigned limit = s->sd->conn_limit;

	(void)rate;
	if (s->gone) {
		session_release(s);
		return;
	}
	if (st == AUTHCLIENT_OK && limit > 0 && count > limit) {
		log_info(s->id, "reject: too many connections from %s (%u, "
			 "limit %u)", s->peer, count, limit);
		reply(s, "421 4.7.0 %s Error: too many connections from your "
		      "address", s->sd->hostname);
		conn_close(s->conn, "too many connections");
	} else {
		if (st != AUTHCLIENT_OK)
			log_warn(s->id, "connection count: %s",
				 error != NULL ? error : "unavailable");
		greet_part_done(s);
	}
	session_release(s);
}

/* ---- connection events ---- */

static void on_read(struct conn *c, const char *data, size_t len)
{
	struct session *s = conn_ctx(c);

	if (s->state == ST_GREET) {
		if (len == 0)
			return;
		log_info(s->id, "reject: early talker from %s: sent data "
			 "before the greeting", s->peer);
		reply(s, "554 5.5.1 %s Error: you talked before the greeting",
		      s->sd->hostname);
		conn_close(c, "early talker");
		return;
	}
	if (str_append(s->in, data, len) < 0) {
		/* Cannot happen: reading stops while input waits. */
		reply(s, "421 4.3.0 %s Error: input overflow",
		      s->sd->hostname);
		conn_abort(c, "input overflow");
		return;
	}
	session_run(s);
}

static void on_drain(struct conn *c)
{
	session_run(conn_ctx(c));
}

static void on_close(struct conn *c, const char *reason)
{
	struct session *s = conn_ctx(c);

	log_info(s->id, "disconnect from %s%s%s", s->peer,
		 reason != NULL ? ": " : "", reason != NULL ? reason : "");
	if (s->counted && s->sd->auth != NULL)
		authclient_disconnect_notify(s->sd->auth, s->sd->service,
					     s->peer);
	s->gone = true;
	s->conn = NULL;
	if (s->state != ST_FINISH)
		msg_free(&s->msg);	/* a commit in flight finishes */
	uv_close((uv_handle_t *)&s->idle, timer_closed);
	uv_close((uv_handle_t *)&s->greet, timer_closed);
	session_release(s);
}

static void on_idle(uv_timer_t *t)
{
	struct session *s = t->data;

	uv_timer_stop(t);
	log_info(s->id, "timeout after %s from %s",
		 s->state == ST_DATA || s->state == ST_BDAT ? "DATA" :
		 "command", s->peer);
	reply(s, "421 4.4.2 %s Error: timeout exceeded", s->sd->hostname);
	conn_close(s->conn, "idle timeout");
}

static const struct conn_ops session_ops = {
	.on_read = on_read,
	.on_close = on_close,
	.on_drain = on_drain,
	.on_tls = on_tls,
};

static void session_timers(struct session *s)
{
	uv_loop_t *loop = svc_loop(s->sd->svc);

	uv_timer_init(loop, &s->idle);
	s->idle.data = s;
	uv_timer_start(&s->idle, on_idle, s->sd->idle_ms, s->sd->idle_ms);
	uv_timer_init(loop, &s->greet);
	s->greet.data = s;
}

void session_accept(struct smtpd *sd, uv_stream_t *client)
{
	struct session *s = xcalloc(1, sizeof(*s));
	const char *error;
	const char *rip;

	s->sd = sd;
	svc_new_id(s->id);
	s->lr = linereader_new(sd->line_max);
	linereader_set_bare_lf(s->lr, 0);
	s->in = str_new(4096, INPUT_MAX(sd->line_max));
	s->line = str_new(256, sd->line_max);
	s->sasl = str_new(256, POP3_SASL_MAX + 1);
	s->conn = conn_new(svc_loop(sd->svc), client, &session_ops, s, s->id);
	s->peer = xstrdup(conn_peer_address(s->conn));
	session_timers(s);
	/* held by the conn and the timer(s) */
	svc_session_add(sd->svc, &s->ss, 3);
	log_info(s->id, "connect from unknown[%s]%s", s->peer,
		 sd->implicit_tls ? " (TLS)" : "");
	if (sd->implicit_tls) {
		if (conn_start_tls(s->conn, sd->tls, NULL, &error) < 0) {
			log_warn(s->id, "TLS: %s", error);
			conn_abort(s->conn, "TLS failed");
			return;
		}
		s->tls = true;
	}
	s->state = ST_GREET;
	s->greet_waits = 1;	/* released below */
	rip = strcmp(s->peer, "unix") == 0 || strcmp(s->peer, "unknown") == 0 ?
	      "" : s->peer;
	if (sd->auth != NULL) {
		/* Counted always (authd forgets what a closed client
		 * counted); waited for only when there is a limit to apply
		 * and tern-authd is there to answer at once. */
		s->counted = true;
		if (sd->conn_limit > 0 && authclient_connected(sd->auth) &&
		    !netlist_match(sd->mynetworks, s->peer)) {
			s->greet_waits++;
			s->ss.holds++;
			authclient_connect_notify(sd->auth, sd->service, rip,
						  conn_counted, s);
		} else {
			authclient_connect_notify(sd->auth, sd->service, rip,
						  NULL, NULL);
		}
	}
	if (sd->greet_delay_ms > 0 && !sd->implicit_tls) {
		s->greet_waits++;
		uv_timer_start(&s->greet, on_greet_timer, sd->greet_delay_ms,
			       0);
	}
	greet_part_done(s);
}

void sessions_stop(struct smtpd *sd)
{
	for (struct svc_session *ss = svc_session_first(sd->svc); ss != NULL;
	     ss = ss->next) {
		struct session *s = (struct session *)ss;

		if (s->gone)
			continue;
		if (s->state == ST_DATA || s->state == ST_BDAT ||
		    s->state == ST_FINISH || s->blocked || s->running) {
			s->stop = true;
			continue;
		}
		reply(s, "421 4.3.2 %s Service shutting down",
		      s->sd->hostname);
		conn_close(s->conn, "shutting down");
	}
}
