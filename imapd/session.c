/* session.c: see session.h. */
#include "config.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "compat.h"
#include "authclient.h"
#include "base64.h"
#include "commands.h"
#include "compress.h"
#include "conn.h"
#include "dir.h"
#include "imapcmd.h"
#include "imapd.h"
#include "imapparse.h"
#include "imaptypes.h"
#include "ipc.h"
#include "log.h"
#include "mbox.h"
#include "mime_imap.h"
#include "proxyauth.h"
#include "session.h"
#include "storeasync.h"
#include "str.h"
#include "svc.h"
#include "xalloc.h"

#define OUT_FLUSH (64 * 1024)		/* responses written at this size */
#define OUT_MAX ((size_t)64 << 20)	/* one response of the largest kind */
#define INPUT_MAX (4 * CONN_READ_SIZE)
#define PASSWORD_MAX 4096
#define SASL_MAX 8192			/* decoded AUTHENTICATE bytes */
#define TAGGED_MAX 1024

static void session_run(struct session *s);

/* ---- life ---- */

static void session_release(struct session *s)
{
	if (!svc_session_put(s->d->svc, &s->ss))
		return;
	imap_parser_free(&s->parser);
	imap_cmd_free(&s->cmd);
	str_free(&s->in);
	str_free(&s->out);
	compress_free(&s->z);
	free(s->peer);
	free(s->rip);
	free(s->user);
	free(s->sasl_mech);
	free(s->sasl_user);
	free(s);
}

static void idle_closed(uv_handle_t *h)
{
	session_release(h->data);
}

/* ---- output ---- */

static void conn_put(struct session *s, const char *data, size_t len)
{
	if (s->gone || len == 0)
		return;
	if (s->z != NULL) {
		if (compress_write(s->z, s->conn, data, len) < 0)
			conn_abort(s->conn, "compression failed");
		return;
	}
	if (conn_write(s->conn, data, len) < 0)
		conn_abort(s->conn, "write failed");
}

void out_flush(struct session *s)
{
	if (s->gone || str_len(s->out) == 0) {
		if (s->z != NULL && !s->gone)
			compress_flush(s->z, s->conn);
		return;
	}
	conn_put(s, str_c(s->out), str_len(s->out));
	str_clear(s->out);
	if (s->z != NULL && !s->gone)
		compress_flush(s->z, s->conn);
}

void out_append(struct session *s, const void *data, size_t len)
{
	if (s->gone)
		return;
	if (len >= OUT_FLUSH) {
		/* Large data goes straight out, behind what is collected. */
		if (str_len(s->out) > 0) {
			conn_put(s, str_c(s->out), str_len(s->out));
			str_clear(s->out);
		}
		conn_put(s, data, len);
		return;
	}
	if (str_append(s->out, data, len) < 0) {
		conn_abort(s->conn, "response overflow");
		return;
	}
	if (str_len(s->out) >= OUT_FLUSH) {
		conn_put(s, str_c(s->out), str_len(s->out));
		str_clear(s->out);
	}
}

void out_printf(struct session *s, const char *fmt, ...)
{
	size_t start = str_len(s->out);
	va_list ap;

	if (s->gone)
		return;
	va_start(ap, fmt);
	if (str_vprintf(s->out, fmt, ap) < 0) {
		str_truncate(s->out, start);
		va_end(ap);
		conn_abort(s->conn, "response overflow");
		return;
	}
	va_end(ap);
	if (str_len(s->out) >= OUT_FLUSH) {
		conn_put(s, str_c(s->out), str_len(s->out));
		str_clear(s->out);
	}
}

bool out_full(struct session *s)
{
	return s->gone || conn_pending(s->conn) >= CONN_HIGH_WATER;
}

void out_string(struct session *s, const char *str, size_t len)
{
	struct str *tmp = str_new(len + 32, len + 64);

	if (mime_imap_string(tmp, str, len) == 0)
		out_append(s, str_c(tmp), str_len(tmp));
	str_free(&tmp);
}

void out_mailbox(struct session *s, const char *name)
{
	struct str *tmp = str_new(256, 16384);
	const char *error;

	if (s->utf8) {
		out_string(s, name, strlen(name));
	} else if (imap_mutf7_encode(name, strlen(name), tmp, &error) == 0) {
		out_string(s, str_c(tmp), str_len(tmp));
	} else {
		out_string(s, name, strlen(name));
	}
	str_free(&tmp);
}

/* Closes after what was queued. */
static void session_close(struct session *s, const char *reason)
{
	out_flush(s);
	if (!s->gone)
		conn_close(s->conn, reason);
}

/* ---- the command's end ---- */

static void finish_tagged(struct session *s)
{
	if (s->cmd != NULL && s->tagged != NULL)
		out_printf(s, "%s %s\r\n", s->cmd->tag, s->tagged);
	free(s->tagged);
	s->tagged = NULL;
	imap_cmd_free(&s->cmd);
	s->blocked = false;
	if (s->state == ST_LOGOUT) {
		session_close(s, NULL);
		return;
	}
	if (!s->running)
		session_run(s);
}

void cmd_done(struct session *s, bool expunge_ok, const char *status,
	      const char *fmt, ...)
{
	struct str *text = str_new(128, TAGGED_MAX);
	va_list ap;

	(void)!str_printf(text, "%s ", status);
	va_start(ap, fmt);
	if (str_vprintf(text, fmt, ap) < 0)
		str_truncate(text, TAGGED_MAX - 1);
	va_end(ap);
	free(s->tagged);
	s->tagged = xstrdup(str_c(text));
	str_free(&text);
	if (s->mb == NULL || s->gone) {
		finish_tagged(s);
		return;
	}
	mbox_sync(s, expunge_ok, finish_tagged);
}

void cmd_error(struct session *s, const char *status, const char *text)
{
	if (++s->errors >= SESSION_ERRORS_MAX) {
		log_info(s->id, "too many errors from %s", s->peer);
		out_printf(s, "* BYE Too many errors\r\n");
		s->state = ST_LOGOUT;
	}
	cmd_done(s, false, status, "%s", text);
}

void cmd_tempfail(struct session *s, const char *what, const char *error)
{
	log_warn(s->id, "%s: %s", what, error != NULL ? error : "failed");
	cmd_done(s, false, "NO", "[UNAVAILABLE] Mail store unavailable, try "
		 "again later");
}

/* ---- requests to the store ---- */

struct store_call_ctx {
	struct session *s;
	session_store_cb *cb;
	void *ctx;
	void (*ctx_free)(void *);
};

static void store_call_done(enum storeasync_status st,
			    struct ipc_msg *const *frames, size_t nframes,
			    const struct ipc_msg *final, const char *code,
			    const char *error, void *ctx)
{
	struct store_call_ctx *c = ctx;
	struct session *s = c->s;

	if (s->gone) {
		if (c->ctx_free != NULL)
			c->ctx_free(c->ctx);
	} else {
		c->cb(s, st, frames, nframes, final, code, error, c->ctx);
	}
	free(c);
	session_release(s);
}

struct ipc_msg *store_req(struct session *s, const char *type,
			  const char *folder)
{
	struct ipc_msg *req = ipc_msg_new(type);

	ipc_msg_add_int(req, "account", s->account);
	ipc_msg_add_cstr(req, "address", s->user);
	if (folder != NULL)
		ipc_msg_add_cstr(req, "folder", folder);
	return req;
}

void store_call(struct session *s, struct ipc_msg *req, bool idempotent,
		session_store_cb *cb, void *ctx, void (*ctx_free)(void *))
{
	struct store_call_ctx *c = xcalloc(1, sizeof(*c));

	c->s = s;
	c->cb = cb;
	c->ctx = ctx;
	c->ctx_free = ctx_free;
	s->ss.holds++;
	if (s->d->store == NULL) {
		/* Stopping: the store client is gone. */
		struct ipc_msg *none = NULL;

		ipc_msg_free(&req);
		store_call_done(STOREASYNC_TEMPFAIL, &none, 0, NULL, "",
				"tern-stored closed", c);
		return;
	}
	storeasync_request(s->d->store, &req,
			   idempotent ? STOREASYNC_IDEMPOTENT : 0,
			   store_call_done, c);
}

/* ---- capabilities ---- */

/* Whether LOGIN and AUTHENTICATE may be used now. */
static bool login_allowed(const struct session *s)
{
	return svc_plaintext_allowed(s->d->plaintext, s->tls, s->peer);
}

void session_capabilities(struct session *s, struct str *out)
{
	(void)!str_printf(out, "IMAP4rev1 IMAP4rev2 %s SASL-IR ID ENABLE IDLE",
			  s->d->literal_minus ? "LITERAL-" : "LITERAL+");
	if (s->state == ST_NOTAUTH) {
		if (!s->tls && s->d->tls != NULL)
			(void)!str_append_c(out, " STARTTLS");
		if (login_allowed(s))
			(void)!str_append_c(out, " AUTH=PLAIN AUTH=LOGIN");
		else
			(void)!str_append_c(out, " LOGINDISABLED");
		return;
	}
	(void)!str_printf(out, " %s APPENDLIMIT=%llu", COMMANDS_CAPABILITIES,
			 (unsigned long long)s->d->append_max);
	if (s->z == NULL)
		(void)!str_append_c(out, " COMPRESS=DEFLATE");
}

/* ---- commands of any state ---- */

static void cmd_capability(struct session *s, struct imap_cmd *cmd)
{
	struct str *caps = str_new(512, 4096);

	session_capabilities(s, caps);
	out_printf(s, "* CAPABILITY %s\r\n", str_c(caps));
	str_free(&caps);
	cmd_done(s, false, "OK", "CAPABILITY completed");
}

static void cmd_noop(struct session *s, struct imap_cmd *cmd)
{
	cmd_done(s, true, "OK", "%s completed", cmd->name);
}

static void cmd_logout(struct session *s, struct imap_cmd *cmd)
{
	out_printf(s, "* BYE Logging out\r\n");
	if (s->user != NULL)
		log_info(s->id, "logout: user=<%s>", s->user);
	mbox_close(s);
	s->state = ST_LOGOUT;
	cmd_done(s, false, "OK", "LOGOUT completed");
}

static void cmd_id(struct session *s, struct imap_cmd *cmd)
{
	const struct imap_id *id;
	const char *error;
	struct str *line;

	if (imap_cmd_id(cmd, &id, &error) < 0) {
		cmd_error(s, "BAD", error);
		return;
	}
	line = str_new(256, 8192);
	for (size_t i = 0; i < id->n; i++)
		(void)!str_printf(line, "%s%s=%s", i > 0 ? ", " : "",
				 id->keys[i],
				 id->values[i] != NULL ? id->values[i] :
							 "NIL");
	if (id->n > 0)
		log_info(s->id, "client id: %s", str_c(line));
	/* A trusted proxy says who its client is, before the login. */
	for (size_t i = 0; i < id->n && s->state == ST_NOTAUTH; i++) {
		if (strcasecmp(id->keys[i], "x-originating-ip") != 0 ||
		    id->values[i] == NULL ||
		    !proxyauth_trusted(s->d->proxy, s->peer) ||
		    strlen(id->values[i]) > 64)
			continue;
		free(s->rip);
		s->rip = xstrdup(id->values[i]);
		log_info(s->id, "client %s (through proxy %s)", s->rip,
			 s->peer);
	}
	str_free(&line);
	out_printf(s, "* ID (\"name\" \"Tern\" \"vendor\" \"Tern\")\r\n");
	cmd_done(s, false, "OK", "ID completed");
}

static void cmd_enable(struct session *s, struct imap_cmd *cmd)
{
	const struct imap_enable *en;
	const char *error;
	struct str *line = str_new(128, 4096);

	if (imap_cmd_enable(cmd, &en, &error) < 0) {
		str_free(&line);
		cmd_error(s, "BAD", error);
		return;
	}
	for (size_t i = 0; i < en->ncaps; i++) {
		const char *c = en->caps[i];
		bool *flag = NULL;

		if (strcmp(c, "CONDSTORE") == 0)
			flag = &s->condstore;
		else if (strcmp(c, "QRESYNC") == 0)
			flag = &s->qresync;
		else if (strcmp(c, "IMAP4REV2") == 0)
			flag = &s->rev2;
		else if (strcmp(c, "UTF8=ACCEPT") == 0)
			flag = &s->utf8;
		if (flag == NULL || *flag)
			continue;
		*flag = true;
		if (flag == &s->qresync)
			s->condstore = true;
		(void)!str_printf(line, " %s", strcmp(c, "IMAP4REV2") == 0 ?
				 "IMAP4rev2" : c);
	}
	out_printf(s, "* ENABLED%s\r\n", str_c(line));
	str_free(&line);
	cmd_done(s, false, "OK", "ENABLE completed");
}

static void cmd_namespace(struct session *s, struct imap_cmd *cmd)
{
	out_printf(s, "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
	cmd_done(s, false, "OK", "NAMESPACE completed");
}

/* ---- STARTTLS, COMPRESS ---- */

/* Returns true when TLS is starting (the caller drops the rest of its
 * input). */
static bool cmd_starttls(struct session *s, struct imap_cmd *cmd)
{
	const char *error;

	if (s->tls) {
		cmd_error(s, "BAD", "TLS is already active");
		return false;
	}
	if (s->d->tls == NULL) {
		cmd_error(s, "NO", "TLS is not available");
		return false;
	}
	out_printf(s, "%s OK Begin TLS negotiation now\r\n", cmd->tag);
	out_flush(s);
	imap_cmd_free(&s->cmd);
	s->blocked = false;
	if (conn_start_tls(s->conn, s->d->tls, NULL, &error) < 0) {
		log_warn(s->id, "STARTTLS: %s", error);
		conn_abort(s->conn, "STARTTLS failed");
		return false;
	}
	s->tls = true;
	imap_parser_reset(s->parser);
	return true;
}

/* COMPRESS DEFLATE: returns true when the rest of the input is to be
 * inflated. */
static bool cmd_compress(struct session *s, struct imap_cmd *cmd)
{
	if (cmd->nargs != 1 || !imap_arg_atom_eq(&cmd->args[0], "DEFLATE")) {
		cmd_error(s, "BAD", "Only COMPRESS DEFLATE is supported");
		return false;
	}
	if (s->z != NULL) {
		cmd_done(s, false, "NO", "[COMPRESSIONACTIVE] Already "
			 "compressing");
		return false;
	}
	out_printf(s, "%s OK DEFLATE active\r\n", cmd->tag);
	out_flush(s);
	imap_cmd_free(&s->cmd);
	s->blocked = false;
	s->z = compress_new();
	log_info(s->id, "compression on");
	return true;
}

/* ---- LOGIN, AUTHENTICATE ---- */

static void auth_failed(struct session *s, const char *text)
{
	if (++s->auth_failures >= SESSION_AUTH_FAILURES_MAX) {
		out_printf(s, "* BYE Too many failed logins\r\n");
		s->state = ST_LOGOUT;
	}
	cmd_done(s, false, "NO", "%s", text);
}

/* A successful login (a password check, or a proxy login). */
static void login_ok(struct session *s, const struct authclient_account *acct,
		     const char *method)
{
	struct str *caps;

	if (!imapd_host_is_local(s->d, acct->mailhost)) {
		log_info(s->id, "login refused: user=<%s>: mailbox on %s",
			 acct->address, acct->mailhost);
		cmd_done(s, false, "NO", "[UNAVAILABLE] This mailbox is on "
			 "another server");
		return;
	}
	s->user = xstrdup(acct->address);
	s->account = acct->id;
	s->quota = acct->quota_effective;
	s->state = ST_AUTH;
	log_info(s->id, "login: user=<%s>, method=%s, rip=%s%s", s->user,
		 method, s->rip, s->tls ? ", TLS" : "");
	uv_timer_set_repeat(&s->idle, s->d->idle_ms);
	uv_timer_again(&s->idle);
	caps = str_new(512, 4096);
	session_capabilities(s, caps);
	cmd_done(s, false, "OK", "[CAPABILITY %s] Logged in", str_c(caps));
	str_free(&caps);
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
		login_ok(s, acct, s->sasl_mech != NULL ? s->sasl_mech :
							 "LOGIN");
		break;
	case AUTHCLIENT_AUTHFAIL:
	case AUTHCLIENT_NOTFOUND:
	case AUTHCLIENT_INVALID:
		log_info(s->id, "authentication failed: rip=%s", s->rip);
		auth_failed(s, "[AUTHENTICATIONFAILED] Authentication failed");
		break;
	case AUTHCLIENT_REFUSED:
		auth_failed(s, "[CONTACTADMIN] Account not available");
		break;
	case AUTHCLIENT_LOCKEDOUT:
		auth_failed(s, "[UNAVAILABLE] Too many failed logins from "
			    "your address, try again later");
		break;
	case AUTHCLIENT_TEMPFAIL:
		log_warn(s->id, "authentication unavailable: %s",
			 error != NULL ? error : "tern-authd");
		cmd_done(s, false, "NO", "[UNAVAILABLE] Authentication "
			 "unavailable, try again later");
		break;
	}
	free(s->sasl_mech);
	s->sasl_mech = NULL;
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
		login_ok(s, acct, "PROXY");
	} else if (st == AUTHCLIENT_TEMPFAIL) {
		log_warn(s->id, "proxy login: %s",
			 error != NULL ? error : "tern-authd");
		cmd_done(s, false, "NO", "[UNAVAILABLE] Directory "
			 "unavailable, try again later");
	} else {
		log_info(s->id, "proxy login refused: %s",
			 authclient_status_name(st));
		cmd_done(s, false, "NO", "[AUTHORIZATIONFAILED] No such "
			 "account");
	}
	free(s->sasl_mech);
	s->sasl_mech = NULL;
	session_release(s);
}

static void login(struct session *s, const char *user, const char *password)
{
	if (strlen(user) > DIR_ADDRESS_MAX || strlen(password) > PASSWORD_MAX ||
	    password[0] == '\0' || user[0] == '\0') {
		auth_failed(s, "[AUTHENTICATIONFAILED] Authentication failed");
		return;
	}
	s->ss.holds++;
	authclient_authenticate(s->d->auth, user, password, "imap", s->rip,
				auth_done, s);
}

static bool refuse_plaintext(struct session *s)
{
	if (login_allowed(s))
		return false;
	cmd_error(s, "NO", "[PRIVACYREQUIRED] Plaintext authentication "
		  "disallowed on non-secure connections, use STARTTLS");
	return true;
}

static void cmd_login(struct session *s, struct imap_cmd *cmd)
{
	const struct imap_login *l;
	const char *error;

	if (imap_cmd_login(cmd, &l, &error) < 0) {
		cmd_error(s, "BAD", error);
		return;
	}
	if (refuse_plaintext(s))
		return;
	login(s, l->user, l->password);
}

static void sasl_plain(struct session *s, const char *b64, size_t len)
{
	struct str *buf = str_new(256, SASL_MAX + 1);
	const char *authz, *authc, *password;

	if (sasl_plain_decode(b64, len, SASL_MAX, buf, &authz, &authc,
			      &password) < 0) {
		str_free(&buf);
		free(s->sasl_mech);
		s->sasl_mech = NULL;
		cmd_error(s, "BAD", "Invalid SASL PLAIN response");
		return;
	}
	if (authz[0] != '\0' && strcmp(authz, authc) != 0) {
		if (proxyauth_verify(s->d->proxy, authc, password, s->peer) &&
		    strlen(authz) <= DIR_ADDRESS_MAX) {
			/* tern-proxyd logs in for its user. */
			s->ss.holds++;
			authclient_lookup(s->d->auth, authz, proxy_lookup_done,
					  s);
			str_free(&buf);
			return;
		}
		log_info(s->id, "authorization identity refused: rip=%s",
			 s->rip);
		str_free(&buf);
		free(s->sasl_mech);
		s->sasl_mech = NULL;
		auth_failed(s, "[AUTHORIZATIONFAILED] Authorization identity "
			    "not allowed");
		return;
	}
	login(s, authc, password);
	str_free(&buf);
}

/* A decoded AUTHENTICATE LOGIN response into a new string, or NULL. */
static char *sasl_text(const char *b64, size_t len)
{
	struct str *buf = str_new(256, SASL_MAX + 1);
	char *r = NULL;

	if (base64_decode(b64, len, BASE64_STRICT, buf) == 0 &&
	    memchr(str_c(buf), '\0', str_len(buf)) == NULL)
		r = xstrdup(str_c(buf));
	str_free(&buf);
	return r;
}

/* A client response line of AUTHENTICATE. */
static void sasl_line(struct session *s, const char *line, size_t len)
{
	char *text;

	if (len == 1 && line[0] == '*') {
		free(s->sasl_mech);
		s->sasl_mech = NULL;
		free(s->sasl_user);
		s->sasl_user = NULL;
		cmd_error(s, "BAD", "Authentication cancelled");
		return;
	}
	if (strcmp(s->sasl_mech, "PLAIN") == 0) {
		s->blocked = true;
		sasl_plain(s, line, len);
		return;
	}
	/* LOGIN: the user name, then the password. */
	text = sasl_text(line, len);
	if (text == NULL) {
		free(s->sasl_mech);
		s->sasl_mech = NULL;
		free(s->sasl_user);
		s->sasl_user = NULL;
		cmd_error(s, "BAD", "Invalid base64 response");
		return;
	}
	if (s->sasl_user == NULL) {
		s->sasl_user = text;
		out_printf(s, "+ UGFzc3dvcmQ6\r\n");
		return;
	}
	s->blocked = true;
	login(s, s->sasl_user, text);
	explicit_bzero(text, strlen(text));
	free(text);
	free(s->sasl_user);
	s->sasl_user = NULL;
}

static void cmd_authenticate(struct session *s, struct imap_cmd *cmd)
{
	const struct imap_authenticate *a;
	const char *error;

	if (imap_cmd_authenticate(cmd, &a, &error) < 0) {
		cmd_error(s, "BAD", error);
		return;
	}
	if (strcmp(a->mechanism, "PLAIN") != 0 &&
	    strcmp(a->mechanism, "LOGIN") != 0) {
		cmd_error(s, "NO", "Unsupported authentication mechanism");
		return;
	}
	if (refuse_plaintext(s))
		return;
	s->sasl_mech = xstrdup(a->mechanism);
	if (strcmp(a->mechanism, "PLAIN") == 0) {
		if (a->has_ir) {
			sasl_plain(s, a->ir, strlen(a->ir));
			return;
		}
		out_printf(s, "+ \r\n");
	} else if (a->has_ir) {
		s->sasl_user = sasl_text(a->ir, strlen(a->ir));
		if (s->sasl_user == NULL) {
			free(s->sasl_mech);
			s->sasl_mech = NULL;
			cmd_error(s, "BAD", "Invalid base64 response");
			return;
		}
		out_printf(s, "+ UGFzc3dvcmQ6\r\n");
	} else {
		out_printf(s, "+ VXNlcm5hbWU6\r\n");
	}
	/* The responses come as lines: read on. */
	s->blocked = false;
}

/* ---- IDLE ---- */

static void cmd_idle(struct session *s, struct imap_cmd *cmd)
{
	out_printf(s, "+ idling\r\n");
	s->idling = true;
	s->blocked = false;
	mbox_sync(s, true, NULL);
	out_flush(s);
}

static void idle_line(struct session *s, const char *line, size_t len)
{
	s->idling = false;
	s->blocked = true;
	if (len == 4 && strncasecmp(line, "DONE", 4) == 0)
		cmd_done(s, true, "OK", "IDLE terminated");
	else
		cmd_error(s, "BAD", "Expected DONE");
}

/* ---- dispatch ---- */

#define ANY (ST_NOTAUTH | ST_AUTH | ST_SELECTED)
#define AUTHED (ST_AUTH | ST_SELECTED)

static const struct command {
	const char *name;
	unsigned states;
	bool uid;		/* also as "UID name" */
	void (*fn)(struct session *s, struct imap_cmd *cmd);
} command_table[] = {
	{ "CAPABILITY", ANY, false, cmd_capability },
	{ "NOOP", ANY, false, cmd_noop },
	{ "LOGOUT", ANY, false, cmd_logout },
	{ "ID", ANY, false, cmd_id },
	{ "LOGIN", ST_NOTAUTH, false, cmd_login },
	{ "AUTHENTICATE", ST_NOTAUTH, false, cmd_authenticate },
	{ "ENABLE", AUTHED, false, cmd_enable },
	{ "NAMESPACE", AUTHED, false, cmd_namespace },
	{ "IDLE", AUTHED, false, cmd_idle },
	{ "SELECT", AUTHED, false, cmd_select },
	{ "EXAMINE", AUTHED, false, cmd_select },
	{ "CREATE", AUTHED, false, cmd_create },
	{ "DELETE", AUTHED, false, cmd_delete },
	{ "RENAME", AUTHED, false, cmd_rename },
	{ "SUBSCRIBE", AUTHED, false, cmd_subscribe },
	{ "UNSUBSCRIBE", AUTHED, false, cmd_subscribe },
	{ "LIST", AUTHED, false, cmd_list },
	{ "LSUB", AUTHED, false, cmd_list },
	{ "STATUS", AUTHED, false, cmd_status },
	{ "APPEND", AUTHED, false, cmd_append },
	{ "GETQUOTA", AUTHED, false, cmd_getquota },
	{ "GETQUOTAROOT", AUTHED, false, cmd_getquota },
	{ "SETQUOTA", AUTHED, false, cmd_getquota },
	{ "CHECK", ST_SELECTED, false, cmd_noop },
	{ "CLOSE", ST_SELECTED, false, cmd_close },
	{ "UNSELECT", ST_SELECTED, false, cmd_close },
	{ "EXPUNGE", ST_SELECTED, true, cmd_expunge },
	{ "FETCH", ST_SELECTED, true, cmd_fetch },
	{ "STORE", ST_SELECTED, true, cmd_store },
	{ "COPY", ST_SELECTED, true, cmd_copy },
	{ "MOVE", ST_SELECTED, true, cmd_copy },
	{ "SEARCH", ST_SELECTED, true, cmd_search },
	{ "SORT", ST_SELECTED, true, cmd_sort },
	{ "THREAD", ST_SELECTED, true, cmd_thread },
};

static void log_command_error(struct session *s, const char *what)
{
	log_debug(s->id, "%s", what);
}

/* Runs one parsed command.  Returns true when the rest of the input must
 * not be parsed as it is (STARTTLS: dropped; COMPRESS: inflated). */
static bool command(struct session *s, struct imap_cmd *cmd)
{
	const struct command *c = NULL;

	s->cmd = cmd;
	s->blocked = true;
	uv_timer_again(&s->idle);
	if (strcmp(cmd->name, "STARTTLS") == 0 && !cmd->uid) {
		if (s->state != ST_NOTAUTH) {
			cmd_error(s, "BAD", "STARTTLS only before login");
			return false;
		}
		return cmd_starttls(s, cmd);
	}
	if (strcmp(cmd->name, "COMPRESS") == 0 && !cmd->uid) {
		if (s->state == ST_NOTAUTH) {
			cmd_error(s, "BAD", "Log in first");
			return false;
		}
		return cmd_compress(s, cmd);
	}
	for (size_t i = 0; i < TERN_NELEM(command_table); i++) {
		if (strcmp(command_table[i].name, cmd->name) == 0) {
			c = &command_table[i];
			break;
		}
	}
	if (c == NULL || (cmd->uid && !c->uid)) {
		log_command_error(s, "unknown command");
		cmd_error(s, "BAD", "Unknown command");
		return false;
	}
	if ((c->states & s->state) == 0) {
		cmd_error(s, "BAD", s->state == ST_NOTAUTH ?
			  "Log in first" : s->state == ST_AUTH ?
			  "Select a folder first" :
			  "Not allowed in this state");
		return false;
	}
	c->fn(s, cmd);
	return false;
}

static void parse_error(struct session *s, const struct imap_parse_error *e)
{
	const char *kind = e->kind == IMAP_RESP_NO ? "NO" : "BAD";

	if (++s->errors >= SESSION_ERRORS_MAX) {
		log_info(s->id, "too many errors from %s", s->peer);
		out_printf(s, "* BYE Too many errors\r\n");
		s->state = ST_LOGOUT;
		session_close(s, "too many errors");
		return;
	}
	out_printf(s, "%s %s %s%s%s%s\r\n", e->tag != NULL ? e->tag : "*",
		   kind, e->code != NULL ? "[" : "",
		   e->code != NULL ? e->code : "",
		   e->code != NULL ? "] " : "", e->text);
}

/* Whether the session can take another command now. */
static bool session_ready(struct session *s)
{
	return !s->blocked && !s->gone && !conn_closing(s->conn) &&
	       s->state != ST_LOGOUT && !out_full(s);
}

/* Parses from *pos: commands, literal continuations, IDLE and SASL lines.
 * Returns when the input is used up or the session must wait. */
static void run_input(struct session *s, const char **pos, const char *end)
{
	const struct imap_parse_error *perr;
	struct imap_cmd *cmd;
	const char *line;
	size_t len;
	int r;

	while (session_ready(s)) {
		if (s->idling || s->sasl_mech != NULL) {
			r = imap_parser_feed_line(s->parser, pos, end, &line,
						  &len, &perr);
			if (r == 0)
				return;
			if (r < 0) {
				s->idling = false;
				free(s->sasl_mech);
				s->sasl_mech = NULL;
				s->blocked = true;
				cmd_error(s, "BAD", perr->text);
			} else if (s->idling) {
				idle_line(s, line, len);
			} else {
				sasl_line(s, line, len);
			}
			continue;
		}
		r = imap_parser_feed(s->parser, pos, end, &cmd, &perr);
		if (r == IMAP_PARSE_MORE)
			return;
		if (r == IMAP_PARSE_CONTINUE) {
			out_printf(s, "+ Ready for literal data\r\n");
			out_flush(s);
			continue;
		}
		if (r == IMAP_PARSE_ERROR) {
			parse_error(s, perr);
			continue;
		}
		if (command(s, cmd)) {
			/* After STARTTLS the rest was plaintext: dropped.
			 * After COMPRESS it is compressed: inflated. */
			if (s->z != NULL && *pos < end &&
			    compress_feed(s->z, *pos, (size_t)(end - *pos)) < 0)
				conn_abort(s->conn, "input overflow");
			*pos = end;
			return;
		}
	}
}

/* Feeds the waiting input to the parser until it is used up or something
 * must be waited for. */
static void session_run(struct session *s)
{
	const char *start, *pos, *end;

	if (s->running || s->gone)
		return;
	s->running = true;
	for (;;) {
		if (s->z != NULL && compress_pending(s->z) &&
		    compress_inflate(s->z, s->in) < 0) {
			conn_abort(s->conn, "bad compressed data");
			break;
		}
		start = pos = str_c(s->in);
		end = start + str_len(s->in);
		run_input(s, &pos, end);
		if (s->gone)
			break;
		str_consume(s->in, (size_t)(pos - start));
		if (s->z == NULL || !compress_pending(s->z) ||
		    !session_ready(s))
			break;
	}
	s->running = false;
	out_flush(s);
	if (s->gone || conn_closing(s->conn))
		return;
	if (s->state == ST_LOGOUT && !s->blocked) {
		session_close(s, NULL);
		return;
	}
	if (s->bye != NULL && !s->blocked) {
		out_printf(s, "* BYE %s\r\n", s->bye);
		session_close(s, s->bye);
		return;
	}
	if (s->blocked || out_full(s) ||
	    (s->z != NULL && compress_pending(s->z)))
		conn_read_stop(s->conn);
	else
		conn_read_start(s->conn);
}

/* ---- connection events ---- */

static void on_read(struct conn *c, const char *data, size_t len)
{
	struct session *s = conn_ctx(c);

	if (s->z != NULL) {
		if (compress_feed(s->z, data, len) < 0) {
			conn_abort(c, "input overflow");
			return;
		}
	} else if (str_append(s->in, data, len) < 0) {
		/* Cannot happen: reading stops while input waits. */
		out_printf(s, "* BYE Input overflow\r\n");
		out_flush(s);
		conn_abort(c, "input overflow");
		return;
	}
	uv_timer_again(&s->idle);
	session_run(s);
}

static void on_drain(struct conn *c)
{
	struct session *s = conn_ctx(c);

	if (s->resume != NULL) {
		void (*fn)(struct session *) = s->resume;

		s->resume = NULL;
		fn(s);
		return;
	}
	session_run(s);
}

static void on_close(struct conn *c, const char *reason)
{
	struct session *s = conn_ctx(c);

	log_info(s->id, "disconnect from %s%s%s%s%s%s", s->peer,
		 s->user != NULL ? ", user=<" : "",
		 s->user != NULL ? s->user : "", s->user != NULL ? ">" : "",
		 reason != NULL ? ": " : "", reason != NULL ? reason : "");
	s->gone = true;
	s->conn = NULL;
	if (s->resume != NULL && s->resume_free != NULL)
		s->resume_free(s->resume_ctx);
	s->resume = NULL;
	s->resume_ctx = NULL;
	mbox_close(s);
	uv_close((uv_handle_t *)&s->idle, idle_closed);
	session_release(s);
}

static void on_idle(uv_timer_t *t)
{
	struct session *s = t->data;

	if (s->blocked && !s->idling)
		return;	/* a command runs: its own timeouts apply */
	uv_timer_stop(t);
	log_info(s->id, "timeout from %s", s->peer);
	out_printf(s, "* BYE Disconnected for inactivity\r\n");
	session_close(s, "idle timeout");
}

static const struct conn_ops session_ops = {
	.on_read = on_read,
	.on_close = on_close,
	.on_drain = on_drain,
};

void session_accept(struct imapd *d, uv_stream_t *client)
{
	struct session *s = xcalloc(1, sizeof(*s));
	struct imap_parser_settings set;
	const char *error = "no certificate loaded";
	struct str *caps;

	s->d = d;
	svc_new_id(s->id);
	imap_parser_settings_default(&set);
	set.max_line = d->line_max;
	set.max_append = d->append_max;
	set.literal = d->literal_minus ? IMAP_LITERAL_MINUS :
					 IMAP_LITERAL_PLUS;
	s->parser = imap_parser_new(&set);
	/* Small at first: most connections idle most of the time. */
	s->in = str_new(256, INPUT_MAX * 2);
	s->out = str_new(256, OUT_MAX);
	s->state = ST_NOTAUTH;
	s->conn = conn_new(svc_loop(d->svc), client, &session_ops, s, s->id);
	s->peer = xstrdup(conn_peer_address(s->conn));
	s->rip = xstrdup(s->peer);
	uv_timer_init(svc_loop(d->svc), &s->idle);
	s->idle.data = s;
	uv_timer_start(&s->idle, on_idle, d->login_ms, d->login_ms);
	/* held by the conn and the timer(s) */
	svc_session_add(d->svc, &s->ss, 2);
	log_info(s->id, "connect from %s%s", s->peer,
		 d->implicit_tls ? " (TLS)" : "");
	if (d->implicit_tls) {
		/* No certificate since a reload: nothing to speak. */
		if (d->tls == NULL ||
		    conn_start_tls(s->conn, d->tls, NULL, &error) < 0) {
			log_warn(s->id, "TLS: %s", error);
			conn_abort(s->conn, "TLS failed");
			return;
		}
		s->tls = true;
	}
	if (svc_stopping(d->svc)) {
		out_printf(s, "* BYE Server shutting down\r\n");
		session_close(s, "shutting down");
		return;
	}
	caps = str_new(512, 4096);
	session_capabilities(s, caps);
	out_printf(s, "* OK [CAPABILITY %s] Tern IMAP server ready\r\n",
		   str_c(caps));
	str_free(&caps);
	out_flush(s);
}

void sessions_stop(struct imapd *d)
{
	for (struct svc_session *ss = svc_session_first(d->svc); ss != NULL;
	     ss = ss->next) {
		struct session *s = (struct session *)ss;

		session_bye(s, "Server shutting down");
	}
}

void session_bye(struct session *s, const char *text)
{
	if (s->gone)
		return;
	if ((s->blocked && !s->idling) || s->running) {
		s->bye = text;
		return;
	}
	out_printf(s, "* BYE %s\r\n", text);
	session_close(s, text);
}
