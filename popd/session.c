/* session.c: see session.h. */
#include "config.h"

#include <stdarg.h>
#include <stdlib.h>
#include <strings.h>

#include "compat.h"
#include "authclient.h"
#include "conn.h"
#include "dir.h"
#include "log.h"
#include "mailbox.h"
#include "pop3proto.h"
#include "popd.h"
#include "proxyauth.h"
#include "retr.h"
#include "session.h"
#include "str.h"
#include "svc.h"
#include "xalloc.h"

#define REPLY_MAX 1024
#define OUT_FLUSH (64 * 1024)		/* replies written at this size */
#define OUT_MAX (16 * 1024 * 1024)	/* one LIST of the largest INBOX */
#define PASSWORD_MAX 4096
/* Input kept while a command waits: one read beyond a command line. */
#define INPUT_MAX(line_max) (2 * CONN_READ_SIZE + (line_max) + 2)

enum session_state {
	ST_AUTH,	/* AUTHORIZATION */
	ST_LOGIN,	/* waiting for authd or the mailbox */
	ST_TRANS,	/* TRANSACTION */
	ST_UPDATE,	/* QUIT: waiting for the store */
};

struct session {
	struct svc_session ss;	/* first: the skeleton's list and holds */
	struct popd *pd;
	struct conn *conn;
	struct pop3_parser *parser;
	struct str *in;		/* input not yet taken */
	struct str *out;	/* replies not yet written */
	struct str *sasl;	/* decoded AUTH PLAIN */
	char id[16];
	char *peer;
	char *user;		/* USER given, waiting for PASS */
	char *login;		/* the authenticated address */
	uv_timer_t idle;
	enum session_state state;
	struct mailbox *mb;
	struct retr *retr;	/* the message being sent */
	struct retr *ahead;	/* the next one, read ahead */
	uint32_t ahead_msg;
	uint32_t retr_msg;
	bool retr_top;
	unsigned errors;
	unsigned auth_failures;
	uint32_t n_retr, n_dele;	/* for the log */
	uint64_t retr_bytes;
	bool tls;		/* TLS is on (implicit or after STLS) */
	bool sasl_wait;		/* AUTH PLAIN waits for its response */
	bool blocked;		/* waiting for an answer: input parked */
	bool running;		/* inside session_run */
	bool gone;		/* the conn is closed */
	bool stop;		/* close once the command is done */
	bool counted;		/* reported to authd's connection counters */
};

static void session_run(struct session *s);
static void read_ahead(struct session *s, uint32_t n);

/* ---- life ---- */

static void session_release(struct session *s)
{
	if (!svc_session_put(s->pd->svc, &s->ss))
		return;
	pop3_parser_free(&s->parser);
	str_free(&s->in);
	str_free(&s->out);
	str_free(&s->sasl);
	free(s->peer);
	free(s->user);
	free(s->login);
	free(s);
}

static void idle_closed(uv_handle_t *h)
{
	session_release(h->data);
}

/* ---- replies ---- */

static void flush_out(struct session *s)
{
	if (s->gone || str_len(s->out) == 0)
		return;
	if (conn_write(s->conn, str_c(s->out), str_len(s->out)) < 0)
		conn_abort(s->conn, "write failed");
	str_clear(s->out);
}

static void reply(struct session *s, const char *fmt, ...) TERN_PRINTF(2, 3);

static void reply(struct session *s, const char *fmt, ...)
{
	size_t start = str_len(s->out);
	va_list ap;

	if (s->gone)
		return;
	va_start(ap, fmt);
	if (str_vprintf(s->out, fmt, ap) < 0)
		str_truncate(s->out, start);
	va_end(ap);
	if (str_len(s->out) - start > REPLY_MAX)
		str_truncate(s->out, start + REPLY_MAX);
	if (str_append(s->out, "\r\n", 2) < 0) {
		conn_abort(s->conn, "reply overflow");
		return;
	}
	if (str_len(s->out) >= OUT_FLUSH)
		flush_out(s);
}

/* Closes after what was queued. */
static void session_close(struct session *s, const char *reason)
{
	flush_out(s);
	if (!s->gone)
		conn_close(s->conn, reason);
}

/* A protocol error: too many end the session. */
static void reply_error(struct session *s, const char *text)
{
	reply(s, "%s", text);
	if (++s->errors >= SESSION_ERRORS_MAX) {
		log_info(s->id, "too many errors from %s", s->peer);
		reply(s, "-ERR Too many errors, closing");
		session_close(s, "too many errors");
	}
}

static void session_wake(struct session *s)
{
	s->blocked = false;
	if (!s->running)
		session_run(s);
}

/* ---- AUTHORIZATION ---- */

/* false for a unix-socket or unknown peer: authd counts IPs only. */
static bool peer_is_ip(const char *peer)
{
	return strcmp(peer, "unix") != 0 && strcmp(peer, "unknown") != 0 &&
	       peer[0] != '\0';
}

/* Whether USER/PASS and AUTH PLAIN may be used now. */
static bool login_allowed(const struct session *s)
{
	return svc_plaintext_allowed(s->pd->plaintext, s->tls, s->peer);
}

static bool stls_offered(const struct session *s)
{
	return s->state == ST_AUTH && !s->tls && s->pd->tls != NULL;
}

static void cmd_capa(struct session *s)
{
	const struct popd *pd = s->pd;

	reply(s, "+OK Capability list follows");
	reply(s, "TOP");
	reply(s, "UIDL");
	reply(s, "RESP-CODES");
	reply(s, "AUTH-RESP-CODE");
	reply(s, "PIPELINING");
	if (s->state == ST_AUTH && login_allowed(s)) {
		reply(s, "USER");
		reply(s, "SASL PLAIN");
	}
	if (stls_offered(s))
		reply(s, "STLS");
	if (pd->expire[0] != '\0')
		reply(s, "EXPIRE %s", pd->expire);
	if (pd->login_delay_ms > 0)
		reply(s, "LOGIN-DELAY %llu",
		      (unsigned long long)((pd->login_delay_ms + 999) / 1000));
	reply(s, "IMPLEMENTATION Tern");
	reply(s, ".");
}

static void mailbox_opened(enum mailbox_status st, const char *error,
			   void *ctx)
{
	struct session *s = ctx;
	uint32_t count;
	uint64_t size;

	switch (st) {
	case MAILBOX_OK:
		mailbox_stat(s->mb, &count, &size);
		s->state = ST_TRANS;
		log_info(s->id, "login: user=<%s>, messages=%u, size=%llu",
			 s->login, count, (unsigned long long)size);
		reply(s, "+OK Logged in, %u messages (%llu octets)", count,
		      (unsigned long long)size);
		read_ahead(s, 1);
		break;
	case MAILBOX_INUSE:
		log_info(s->id, "login refused: user=<%s>: mailbox in use",
			 s->login);
		reply(s, "-ERR [IN-USE] Mailbox is locked by another POP3 "
		      "session");
		break;
	case MAILBOX_LOGIN_DELAY:
		log_info(s->id, "login refused: user=<%s>: login delay",
			 s->login);
		reply(s, "-ERR [LOGIN-DELAY] Minimum time between logins not "
		      "reached");
		break;
	case MAILBOX_TEMPFAIL:
		log_warn(s->id, "login failed: user=<%s>: %s", s->login,
			 error != NULL ? error : "mailbox unavailable");
		reply(s, "-ERR [SYS/TEMP] Mailbox unavailable, try again "
		      "later");
		break;
	}
	if (st != MAILBOX_OK) {
		mailbox_free(&s->mb);
		free(s->login);
		s->login = NULL;
		s->state = ST_AUTH;
	}
	session_wake(s);
}

static void auth_failed(struct session *s, const char *text)
{
	reply(s, "%s", text);
	s->state = ST_AUTH;
	if (++s->auth_failures >= SESSION_AUTH_FAILURES_MAX) {
		reply(s, "-ERR [AUTH] Too many failed logins, closing");
		session_close(s, "too many failed logins");
	}
}

/* A successful login (a password check, or a proxy login): open the
 * mailbox. */
static void login_ok(struct session *s, const struct authclient_account *acct)
{
	if (!popd_host_is_local(s->pd, acct->mailhost)) {
		log_info(s->id, "login refused: user=<%s>: mailbox on %s",
			 acct->address, acct->mailhost);
		reply(s, "-ERR [SYS/PERM] This mailbox is on another server");
		s->state = ST_AUTH;
		session_wake(s);
		return;
	}
	s->login = xstrdup(acct->address);
	s->mb = mailbox_new(s->pd, s->id, acct->id, acct->address);
	mailbox_open(s->mb, mailbox_opened, s);
	/* still blocked: mailbox_opened wakes us */
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
		login_ok(s, acct);
		session_release(s);
		return;
	case AUTHCLIENT_AUTHFAIL:
	case AUTHCLIENT_NOTFOUND:
	case AUTHCLIENT_INVALID:
		auth_failed(s, "-ERR [AUTH] Authentication failed");
		break;
	case AUTHCLIENT_REFUSED:
		auth_failed(s, "-ERR [SYS/PERM] Account not available");
		break;
	case AUTHCLIENT_LOCKEDOUT:
		auth_failed(s, "-ERR [AUTH] Too many failed logins from your "
			    "address, try again later");
		break;
	case AUTHCLIENT_TEMPFAIL:
		log_warn(s->id, "authentication unavailable: %s",
			 error != NULL ? error : "tern-authd");
		reply(s, "-ERR [SYS/TEMP] Authentication unavailable, try "
		      "again later");
		s->state = ST_AUTH;
		break;
	}
	session_wake(s);
	session_release(s);
}

/* The account of a proxy login (tern-proxyd checked the password). */
static void proxy_lookup_done(enum authclient_status st,
			      const struct authclient_account *acct,
			      const char *error, void *ctx)
{
	struct session *s = ctx;

	if (s->gone) {
		session_release(s);
		return;
	}
	if (st == AUTHCLIENT_OK && acct->status == DIR_ACCOUNT_ACTIVE) {
		login_ok(s, acct);
		session_release(s);
		return;
	}
	if (st == AUTHCLIENT_TEMPFAIL) {
		log_warn(s->id, "proxy login: %s",
			 error != NULL ? error : "tern-authd");
		reply(s, "-ERR [SYS/TEMP] Directory unavailable, try again "
		      "later");
		s->state = ST_AUTH;
	} else {
		log_info(s->id, "proxy login refused: %s",
			 authclient_status_name(st));
		auth_failed(s, "-ERR [AUTH] No such account");
	}
	session_wake(s);
	session_release(s);
}

static void login(struct session *s, const char *user, const char *password)
{
	if (strlen(user) > DIR_ADDRESS_MAX || strlen(password) > PASSWORD_MAX ||
	    password[0] == '\0') {
		auth_failed(s, "-ERR [AUTH] Authentication failed");
		return;
	}
	s->state = ST_LOGIN;
	s->blocked = true;
	s->ss.holds++;
	authclient_authenticate(s->pd->auth, user, password, POPD_SERVICE,
				s->peer, auth_done, s);
}

/* A refusal for a plaintext login that is not allowed now. */
static bool refuse_plaintext(struct session *s)
{
	if (login_allowed(s))
		return false;
	reply_error(s, "-ERR [AUTH] Plaintext authentication disallowed on "
		    "non-secure connections, use STLS");
	return true;
}

static void cmd_user(struct session *s, const struct pop3_cmd *cmd)
{
	if (refuse_plaintext(s))
		return;
	free(s->user);
	s->user = xstrdup(cmd->arg);
	reply(s, "+OK Send your password");
}

static void cmd_pass(struct session *s, const struct pop3_cmd *cmd)
{
	char *user = s->user;

	if (refuse_plaintext(s))
		return;
	if (user == NULL) {
		reply_error(s, "-ERR Send USER first");
		return;
	}
	s->user = NULL;
	login(s, user, cmd->arg);
	free(user);
}

static void sasl_plain(struct session *s, const char *b64)
{
	const char *authz, *authc, *password;

	if (pop3_sasl_plain_decode(b64, strlen(b64), s->sasl, &authz, &authc,
				   &password) < 0) {
		reply_error(s, "-ERR [AUTH] Invalid AUTH PLAIN response");
		return;
	}
	if (authz[0] != '\0' && strcmp(authz, authc) != 0) {
		if (proxyauth_verify(s->pd->proxy, authc, password, s->peer) &&
		    strlen(authz) <= DIR_ADDRESS_MAX) {
			/* tern-proxyd logs in for its user. */
			s->state = ST_LOGIN;
			s->blocked = true;
			s->ss.holds++;
			authclient_lookup(s->pd->auth, authz,
					  proxy_lookup_done, s);
			str_clear(s->sasl);
			return;
		}
		log_info(s->id, "authorization identity refused: rip=%s",
			 s->peer);
		auth_failed(s, "-ERR [AUTH] Authorization identity not "
			    "allowed");
		return;
	}
	login(s, authc, password);
	str_clear(s->sasl);	/* the password goes */
}

static void cmd_auth(struct session *s, const struct pop3_cmd *cmd)
{
	if (cmd->arg[0] == '\0') {
		/* The mechanism list of the pre-CAPA extension. */
		reply(s, "+OK Mechanisms follow");
		if (login_allowed(s))
			reply(s, "PLAIN");
		reply(s, ".");
		return;
	}
	if (strcmp(cmd->arg, "PLAIN") != 0) {
		reply_error(s, "-ERR Unsupported authentication mechanism");
		return;
	}
	if (refuse_plaintext(s))
		return;
	free(s->user);
	s->user = NULL;
	if (cmd->initial != NULL) {
		sasl_plain(s, strcmp(cmd->initial, "=") == 0 ? "" :
			   cmd->initial);
		return;
	}
	s->sasl_wait = true;
	pop3_parser_expect_sasl(s->parser);
	reply(s, "+ ");
}

static void cmd_sasl(struct session *s, const struct pop3_cmd *cmd)
{
	if (!s->sasl_wait)
		return;
	s->sasl_wait = false;
	if (strcmp(cmd->arg, "*") == 0) {
		reply_error(s, "-ERR Authentication cancelled");
		return;
	}
	sasl_plain(s, cmd->arg);
}

/* STLS: returns true when TLS is starting (the caller drops the rest of
 * its input). */
static bool cmd_stls(struct session *s)
{
	const char *error;

	if (s->tls) {
		reply_error(s, "-ERR TLS is already active");
		return false;
	}
	if (s->pd->tls == NULL) {
		reply_error(s, "-ERR TLS is not available");
		return false;
	}
	reply(s, "+OK Begin TLS negotiation");
	flush_out(s);
	if (conn_start_tls(s->conn, s->pd->tls, NULL, &error) < 0) {
		log_warn(s->id, "STLS: %s", error);
		conn_abort(s->conn, "STLS failed");
		return false;
	}
	s->tls = true;
	free(s->user);
	s->user = NULL;
	s->sasl_wait = false;
	pop3_parser_reset(s->parser);
	return true;
}

/* ---- TRANSACTION ---- */

/* The message a command names, or 0 after an -ERR reply. */
static uint32_t msg_arg(struct session *s, const struct pop3_cmd *cmd)
{
	if (cmd->msg > mailbox_count(s->mb)) {
		reply_error(s, "-ERR No such message");
		return 0;
	}
	if (mailbox_deleted(s->mb, cmd->msg)) {
		reply_error(s, "-ERR Message is deleted");
		return 0;
	}
	return cmd->msg;
}

static void cmd_stat(struct session *s)
{
	uint32_t count;
	uint64_t size;

	mailbox_stat(s->mb, &count, &size);
	reply(s, "+OK %u %llu", count, (unsigned long long)size);
}

static void cmd_list(struct session *s, const struct pop3_cmd *cmd)
{
	uint32_t n = mailbox_count(s->mb), count;
	uint64_t size;

	if (cmd->has_msg) {
		if ((n = msg_arg(s, cmd)) != 0)
			reply(s, "+OK %u %llu", n, (unsigned long long)
			      mailbox_size(s->mb, n));
		return;
	}
	mailbox_stat(s->mb, &count, &size);
	reply(s, "+OK %u messages (%llu octets)", count,
	      (unsigned long long)size);
	for (uint32_t i = 1; i <= n && !s->gone; i++) {
		if (mailbox_valid(s->mb, i))
			reply(s, "%u %llu", i, (unsigned long long)
			      mailbox_size(s->mb, i));
	}
	reply(s, ".");
}

static void cmd_uidl(struct session *s, const struct pop3_cmd *cmd)
{
	uint32_t n = mailbox_count(s->mb);
	char uidl[MAILBOX_UIDL_MAX];

	if (cmd->has_msg) {
		if ((n = msg_arg(s, cmd)) != 0) {
			mailbox_uidl(s->mb, n, uidl);
			reply(s, "+OK %u %s", n, uidl);
		}
		return;
	}
	reply(s, "+OK Unique-ID listing follows");
	for (uint32_t i = 1; i <= n && !s->gone; i++) {
		if (mailbox_valid(s->mb, i)) {
			mailbox_uidl(s->mb, i, uidl);
			reply(s, "%u %s", i, uidl);
		}
	}
	reply(s, ".");
}

/* RETR's reply line for message n (ok: RETR_OK_MAX bytes). */
static void retr_ok_line(struct session *s, uint32_t n, char *ok)
{
	snprintf(ok, RETR_OK_MAX, "+OK %llu octets\r\n",
		 (unsigned long long)mailbox_size(s->mb, n));
}

/* Reads the first message from n on ahead, when there is one. */
static void read_ahead(struct session *s, uint32_t n)
{
	char ok[RETR_OK_MAX];

	retr_cancel(&s->ahead);
	while (n <= mailbox_count(s->mb) && !mailbox_valid(s->mb, n))
		n++;
	if (n > mailbox_count(s->mb) || s->gone || conn_closing(s->conn))
		return;
	retr_ok_line(s, n, ok);
	s->ahead = retr_open(svc_loop(s->pd->svc), s->conn,
			     mailbox_path(s->mb, n), ok);
	s->ahead_msg = n;
}

static void retr_finished(struct session *s, enum retr_status st,
			  uint64_t bytes)
{
	switch (st) {
	case RETR_OK:
		if (!s->retr_top) {
			mailbox_retrieved(s->mb, s->retr_msg);
			s->n_retr++;
			s->retr_bytes += bytes;
		}
		read_ahead(s, s->retr_msg + 1);
		break;
	case RETR_GONE:
		log_info(s->id, "message %u of <%s> was removed by another "
			 "session", s->retr_msg, s->login);
		reply(s, "-ERR Message %u was removed by another session",
		      s->retr_msg);
		break;
	case RETR_FAILED:
		session_close(s, "message read failed");
		break;
	}
}

static void retr_done(enum retr_status st, uint64_t bytes, void *ctx)
{
	struct session *s = ctx;

	s->retr = NULL;
	retr_finished(s, st, bytes);
	session_wake(s);
}

static void cmd_retr(struct session *s, const struct pop3_cmd *cmd)
{
	bool top = cmd->verb == POP3_TOP;
	uint32_t n = msg_arg(s, cmd);
	enum retr_status st;
	uint64_t bytes;
	char ok[RETR_OK_MAX];

	if (n == 0)
		return;
	if (top)
		str_lcpy(ok, "+OK Top of message follows\r\n", sizeof(ok));
	else
		retr_ok_line(s, n, ok);
	flush_out(s);
	s->retr_msg = n;
	s->retr_top = top;
	if (s->ahead != NULL && s->ahead_msg == n) {
		s->retr = s->ahead;
		s->ahead = NULL;
	} else {
		retr_cancel(&s->ahead);
		s->retr = retr_open(svc_loop(s->pd->svc), s->conn,
				    mailbox_path(s->mb, n), NULL);
	}
	if (retr_send(s->retr, ok, top ? (cmd->lines > INT64_MAX ? INT64_MAX :
					  (int64_t)cmd->lines) : -1,
		      retr_done, s, &st, &bytes) == 1) {
		s->retr = NULL;
		retr_finished(s, st, bytes);
		return;
	}
	s->blocked = true;
}

static void cmd_dele(struct session *s, const struct pop3_cmd *cmd)
{
	uint32_t n = msg_arg(s, cmd);

	if (n == 0)
		return;
	mailbox_delete(s->mb, n);
	s->n_dele++;
	reply(s, "+OK Message %u deleted", n);
}

static void cmd_rset(struct session *s)
{
	uint32_t count;
	uint64_t size;

	mailbox_undelete_all(s->mb);
	s->n_dele = 0;
	mailbox_stat(s->mb, &count, &size);
	reply(s, "+OK %u messages (%llu octets)", count,
	      (unsigned long long)size);
}

static void log_logout(struct session *s, const char *how)
{
	log_info(s->id, "logout: user=<%s>, %s, retrieved=%u/%llu, "
		 "deleted=%u", s->login, how, s->n_retr,
		 (unsigned long long)s->retr_bytes, s->n_dele);
}

static void update_done(enum mailbox_status st, const char *error,
			void *ctx)
{
	struct session *s = ctx;

	if (st == MAILBOX_OK) {
		log_logout(s, "quit");
		reply(s, "+OK Tern POP3 server signing off");
	} else {
		log_logout(s, error != NULL ? error : "update failed");
		reply(s, "-ERR [SYS/TEMP] Some deleted messages not removed");
	}
	retr_cancel(&s->ahead);
	mailbox_free(&s->mb);
	session_close(s, NULL);
	session_wake(s);
}

static void cmd_quit(struct session *s)
{
	if (s->state != ST_TRANS) {
		reply(s, "+OK Tern POP3 server signing off");
		session_close(s, NULL);
		return;
	}
	s->state = ST_UPDATE;
	if (!mailbox_update(s->mb, update_done, s)) {
		update_done(MAILBOX_OK, NULL, s);
		return;
	}
	s->blocked = true;
}

/* ---- dispatch ---- */

static void command_auth(struct session *s, const struct pop3_cmd *cmd)
{
	switch (cmd->verb) {
	case POP3_USER:
		cmd_user(s, cmd);
		break;
	case POP3_PASS:
		cmd_pass(s, cmd);
		break;
	case POP3_AUTH:
		cmd_auth(s, cmd);
		break;
	case POP3_APOP:
		reply_error(s, "-ERR APOP is not supported");
		break;
	default:
		reply_error(s, "-ERR Command not valid before login");
		break;
	}
}

static void command_trans(struct session *s, const struct pop3_cmd *cmd)
{
	switch (cmd->verb) {
	case POP3_STAT:
		cmd_stat(s);
		break;
	case POP3_LIST:
		cmd_list(s, cmd);
		break;
	case POP3_RETR:
	case POP3_TOP:
		cmd_retr(s, cmd);
		break;
	case POP3_DELE:
		cmd_dele(s, cmd);
		break;
	case POP3_NOOP:
		reply(s, "+OK");
		break;
	case POP3_RSET:
		cmd_rset(s);
		break;
	case POP3_UIDL:
		cmd_uidl(s, cmd);
		break;
	default:
		reply_error(s, "-ERR Command not valid after login");
		break;
	}
}

/* Returns true when the rest of the input must be dropped (STLS). */
static bool command(struct session *s, const struct pop3_cmd *cmd)
{
	if (cmd->verb == POP3_SASL) {
		cmd_sasl(s, cmd);
		return false;
	}
	switch (cmd->verb) {
	case POP3_UNKNOWN:
		reply_error(s, "-ERR Unknown command");
		return false;
	case POP3_CAPA:
		cmd_capa(s);
		return false;
	case POP3_QUIT:
		cmd_quit(s);
		return false;
	case POP3_STLS:
		if (s->state != ST_AUTH) {
			reply_error(s, "-ERR STLS only before login");
			return false;
		}
		return cmd_stls(s);
	default:
		break;
	}
	if (s->state == ST_AUTH)
		command_auth(s, cmd);
	else
		command_trans(s, cmd);
	return false;
}

/* Feeds the waiting input to the parser until it is used up or something
 * must be waited for. */
static void session_run(struct session *s)
{
	const char *start, *pos, *end;
	struct pop3_cmd cmd;
	const char *error;
	int r;

	if (s->running || s->gone)
		return;
	s->running = true;
	start = pos = str_c(s->in);
	end = start + str_len(s->in);
	while (!s->blocked && !conn_closing(s->conn) &&
	       conn_pending(s->conn) < CONN_HIGH_WATER) {
		r = pop3_parser_feed(s->parser, &pos, end, &cmd, &error);
		if (r == 0)
			break;
		if (r < 0) {
			s->sasl_wait = false;
			reply_error(s, error);
		} else if (command(s, &cmd)) {
			pos = end;	/* plaintext after STLS: dropped */
			break;
		}
	}
	if (!s->gone)
		str_consume(s->in, (size_t)(pos - start));
	s->running = false;
	flush_out(s);
	if (s->gone || conn_closing(s->conn))
		return;
	if (s->stop && !s->blocked) {
		reply(s, "-ERR [SYS/TEMP] Server shutting down");
		session_close(s, "shutting down");
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

/* ---- connection events ---- */

static void on_read(struct conn *c, const char *data, size_t len)
{
	struct session *s = conn_ctx(c);

	if (str_append(s->in, data, len) < 0) {
		/* Cannot happen: reading stops while input waits. */
		reply(s, "-ERR Input overflow");
		flush_out(s);
		conn_abort(c, "input overflow");
		return;
	}
	session_run(s);
}

static void on_drain(struct conn *c)
{
	struct session *s = conn_ctx(c);

	if (s->retr != NULL)
		retr_resume(s->retr);
	else
		session_run(s);
}

static void on_close(struct conn *c, const char *reason)
{
	struct session *s = conn_ctx(c);

	if (s->login != NULL && s->mb != NULL)
		log_logout(s, "disconnected without QUIT, nothing deleted");
	log_info(s->id, "disconnect from %s%s%s", s->peer,
		 reason != NULL ? ": " : "", reason != NULL ? reason : "");
	if (s->counted && s->pd->auth != NULL)
		authclient_disconnect_notify(s->pd->auth, POPD_SERVICE,
					     s->peer);
	s->counted = false;
	s->gone = true;
	s->conn = NULL;
	retr_cancel(&s->retr);
	retr_cancel(&s->ahead);
	mailbox_free(&s->mb);
	uv_close((uv_handle_t *)&s->idle, idle_closed);
	session_release(s);
}

static void on_idle(uv_timer_t *t)
{
	struct session *s = t->data;

	uv_timer_stop(t);
	log_info(s->id, "timeout from %s", s->peer);
	reply(s, "-ERR Disconnected for inactivity");
	session_close(s, "idle timeout");
}

static const struct conn_ops session_ops = {
	.on_read = on_read,
	.on_close = on_close,
	.on_drain = on_drain,
};

void session_accept(struct popd *pd, uv_stream_t *client)
{
	struct session *s = xcalloc(1, sizeof(*s));
	const char *error = "no certificate loaded";

	s->pd = pd;
	svc_new_id(s->id);
	s->parser = pop3_parser_new(pd->line_max);
	s->in = str_new(4096, INPUT_MAX(pd->line_max));
	s->out = str_new(4096, OUT_MAX);
	s->sasl = str_new(256, POP3_SASL_MAX + 1);
	s->conn = conn_new(svc_loop(pd->svc), client, &session_ops, s, s->id);
	s->peer = xstrdup(conn_peer_address(s->conn));
	uv_timer_init(svc_loop(pd->svc), &s->idle);
	s->idle.data = s;
	uv_timer_start(&s->idle, on_idle, pd->idle_ms, pd->idle_ms);
	/* held by the conn and the timer(s) */
	svc_session_add(pd->svc, &s->ss, 2);
	if (peer_is_ip(s->peer) && pd->auth != NULL) {
		/* The reply (the counts) is not waited for. */
		authclient_connect_notify(pd->auth, POPD_SERVICE, s->peer,
					  NULL, NULL);
		s->counted = true;
	}
	log_info(s->id, "connect from %s%s", s->peer,
		 pd->implicit_tls ? " (TLS)" : "");
	if (pd->implicit_tls) {
		/* No certificate since a reload: nothing to speak. */
		if (pd->tls == NULL ||
		    conn_start_tls(s->conn, pd->tls, NULL, &error) < 0) {
			log_warn(s->id, "TLS: %s", error);
			conn_abort(s->conn, "TLS failed");
			return;
		}
		s->tls = true;
	}
	if (svc_stopping(pd->svc)) {
		reply(s, "-ERR [SYS/TEMP] Server shutting down");
		session_close(s, "shutting down");
		return;
	}
	reply(s, "+OK Tern POP3 server ready");
	flush_out(s);
}

void sessions_stop(struct popd *pd)
{
	for (struct svc_session *ss = svc_session_first(pd->svc); ss != NULL;
	     ss = ss->next) {
		struct session *s = (struct session *)ss;

		if (s->gone)
			continue;
		if (s->blocked || s->running) {
			s->stop = true;
			continue;
		}
		reply(s, "-ERR [SYS/TEMP] Server shutting down");
		session_close(s, "shutting down");
	}
}
