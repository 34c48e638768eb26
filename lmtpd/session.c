/* session.c: see session.h. */
#include "config.h"

#include <stdarg.h>
#include <stdlib.h>
#include <strings.h>

#include "compat.h"
#include "conn.h"
#include "deliver.h"
#include "dir.h"
#include "linereader.h"
#include "lmtpd.h"
#include "log.h"
#include "rcpt.h"
#include "session.h"
#include "smtpproto.h"
#include "str.h"
#include "svc.h"
#include "xalloc.h"

#define REPLY_MAX 1024
/* Characters of an XQUEUEID value (Tern's queue ids have 16). */
#define SESSION_QUEUE_ID_MAX 64
/* Input kept while a command waits: one read beyond a command line. */
#define INPUT_MAX(line_max) (2 * CONN_READ_SIZE + (line_max) + 2)

enum session_state {
	ST_START,	/* before LHLO */
	ST_READY,	/* LHLO done, no transaction */
	ST_MAIL,	/* MAIL accepted: RCPT, DATA */
	ST_DATA,	/* reading the message */
	ST_FINISH,	/* spooling and delivering: replies follow */
};

struct session {
	struct svc_session ss;	/* first: the skeleton's list and holds */
	struct lmtpd *ld;
	struct conn *conn;
	struct linereader *lr;
	struct str *in;		/* input not yet taken */
	struct str *line;	/* the command being parsed */
	char id[16];
	char *peer;
	char *lhlo;
	uv_timer_t idle;
	enum session_state state;
	struct txn *txn;
	uint64_t size_hint;	/* MAIL SIZE= */
	char queue_id[SESSION_QUEUE_ID_MAX + 1];	/* MAIL XQUEUEID=, or "" */
	size_t rcpt_cmds;	/* RCPT commands in this transaction */
	unsigned errors;
	bool blocked;		/* waiting for an answer: input parked */
	bool running;		/* inside session_run */
	bool gone;		/* the conn is closed */
	bool stop;		/* close once the transaction is over */
	bool trusted;		/* may name queue ids (XQUEUEID) */
};

static void session_run(struct session *s);

/* ---- life ---- */

static void session_release(struct session *s)
{
	if (!svc_session_put(s->ld->svc, &s->ss))
		return;
	txn_free(&s->txn);
	linereader_free(&s->lr);
	str_free(&s->in);
	str_free(&s->line);
	free(s->peer);
	free(s->lhlo);
	free(s);
}

static void idle_closed(uv_handle_t *h)
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

/* A protocol error: too many end the session. */
static void reply_error(struct session *s, const char *text)
{
	reply(s, "%s", text);
	if (++s->errors >= SESSION_ERRORS_MAX) {
		log_info(s->id, "too many errors from %s", s->peer);
		reply(s, "421 4.7.0 %s Error: too many errors",
		      s->ld->hostname);
		conn_close(s->conn, "too many errors");
	}
}

static void reset_txn(struct session *s)
{
	txn_free(&s->txn);
	s->size_hint = 0;
	s->rcpt_cmds = 0;
	if (s->state == ST_MAIL)
		s->state = ST_READY;
}

/* Called by answers that came from the loop (or from inside a call). */
static void session_wake(struct session *s)
{
	s->blocked = false;
	if (!s->running)
		session_run(s);
}

static void txn_wake(void *ctx)
{
	session_wake(ctx);
}

/* ---- commands ---- */

static void cmd_lhlo(struct session *s, const struct smtp_cmd *cmd)
{
	if (!smtp_hello_name_valid(cmd->arg)) {
		reply_error(s, "501 5.5.4 Syntax: LHLO hostname");
		return;
	}
	reset_txn(s);
	free(s->lhlo);
	s->lhlo = xstrdup(cmd->arg);
	s->state = ST_READY;
	reply(s, "250-%s", s->ld->hostname);
	reply(s, "250-PIPELINING");
	reply(s, "250-SIZE %llu", (unsigned long long)s->ld->size_limit);
	reply(s, "250-ENHANCEDSTATUSCODES");
	if (s->trusted)
		reply(s, "250-XQUEUEID");
	reply(s, "250 8BITMIME");
}

/* An XQUEUEID value: 1 to SESSION_QUEUE_ID_MAX letters and digits. */
static bool queue_id_valid_param(const char *v)
{
	size_t n = 0;

	if (v == NULL)
		return false;
	for (; v[n] != '\0'; n++) {
		if (n >= SESSION_QUEUE_ID_MAX ||
		    !((v[n] >= '0' && v[n] <= '9') ||
		      (v[n] >= 'A' && v[n] <= 'Z') ||
		      (v[n] >= 'a' && v[n] <= 'z')))
			return false;
	}
	return n > 0;
}

/* 0 when every MAIL parameter is one we offer; replies otherwise. */
static int mail_params(struct session *s, const struct smtp_cmd *cmd)
{
	for (size_t i = 0; i < cmd->nparams; i++) {
		const char *k = cmd->params[i].keyword;
		const char *v = cmd->params[i].value;
		char *end;

		if (strcmp(k, "SIZE") == 0 && v != NULL && *v >= '0' &&
		    *v <= '9') {
			s->size_hint = strtoull(v, &end, 10);
			if (*end != '\0') {
				reply_error(s, "501 5.5.4 Bad SIZE value");
				return -1;
			}
		} else if (strcmp(k, "BODY") == 0 && v != NULL &&
			   (strcasecmp(v, "7BIT") == 0 ||
			    strcasecmp(v, "8BITMIME") == 0)) {
			continue;
		} else if (strcmp(k, "XQUEUEID") == 0 && s->trusted) {
			if (!queue_id_valid_param(v) || s->queue_id[0] != '\0') {
				reply_error(s, "501 5.5.4 Bad XQUEUEID value");
				return -1;
			}
			str_lcpy(s->queue_id, v, sizeof(s->queue_id));
		} else {
			reply_error(s, "555 5.5.4 Unsupported MAIL parameter");
			return -1;
		}
	}
	return 0;
}

static void cmd_mail(struct session *s, const struct smtp_cmd *cmd)
{
	if (s->state == ST_START) {
		reply_error(s, "503 5.5.1 Error: send LHLO first");
		return;
	}
	if (s->state != ST_READY) {
		reply_error(s, "503 5.5.1 Error: nested MAIL command");
		return;
	}
	s->size_hint = 0;
	s->queue_id[0] = '\0';
	if (mail_params(s, cmd) < 0)
		return;
	if (s->size_hint > s->ld->size_limit) {
		log_info(s->id, "reject: MAIL from=<%s>, size=%llu: message "
			 "too big", cmd->path,
			 (unsigned long long)s->size_hint);
		reply(s, "552 5.3.4 Message size exceeds fixed limit of %llu "
		      "bytes", (unsigned long long)s->ld->size_limit);
		s->size_hint = 0;
		return;
	}
	s->txn = txn_new(s->ld, s->id, cmd->path, txn_wake, s);
	if (s->queue_id[0] != '\0')
		txn_set_key(s->txn, s->lhlo, s->queue_id);
	s->rcpt_cmds = 0;
	s->state = ST_MAIL;
	reply(s, "250 2.1.0 Ok");
}

static void rcpt_done(const char *text, struct rcpt *accepted, void *ctx)
{
	struct session *s = ctx;

	if (s->gone || s->txn == NULL) {
		rcpt_free(&accepted);
	} else if (accepted != NULL) {
		const char *addr = accepted->address;

		log_debug(s->id, "RCPT <%s>: %zu mailbox(es)", addr,
			  accepted->ntargets);
		if (txn_add_rcpt(s->txn, accepted) < 0)
			reply(s, "452 4.5.3 Error: too many recipients in "
			      "this transaction");
		else
			reply(s, "%s", text);
	} else {
		log_info(s->id, "reject: RCPT from %s: %s", s->peer, text);
		reply(s, "%s", text);
	}
	session_wake(s);
	session_release(s);
}

static void cmd_rcpt(struct session *s, const struct smtp_cmd *cmd)
{
	if (s->state != ST_MAIL) {
		reply_error(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (cmd->nparams > 0) {
		reply_error(s, "555 5.5.4 Unsupported RCPT parameter");
		return;
	}
	if (++s->rcpt_cmds > s->ld->rcpt_limit) {
		reply(s, "452 4.5.3 Error: too many recipients");
		return;
	}
	if (strlen(cmd->path) > DIR_ADDRESS_MAX) {
		reply_error(s, "501 5.1.3 Recipient address too long");
		return;
	}
	s->blocked = true;
	s->ss.holds++;
	rcpt_check(s->ld, s->id, cmd->path, s->size_hint, rcpt_done, s);
}

static void cmd_data(struct session *s)
{
	if (s->state != ST_MAIL) {
		reply_error(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (txn_rcpt_count(s->txn) == 0) {
		reply_error(s, "503 5.5.1 Error: no valid recipients");
		return;
	}
	txn_data_begin(s->txn, s->lhlo, s->peer);
	s->state = ST_DATA;
	reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

static void finish_reply(const char *line, void *ctx)
{
	struct session *s = ctx;

	reply(s, "%s", line);
}

static void finish_done(void *ctx)
{
	struct session *s = ctx;

	reset_txn(s);
	s->state = ST_READY;
	session_wake(s);
}

/* The end marker was read: the txn writes, delivers and replies. */
static void data_end(struct session *s)
{
	s->state = ST_FINISH;
	s->blocked = true;
	txn_finish(s->txn, finish_reply, finish_done);
}

static void command(struct session *s, const struct linereader_line *l)
{
	struct smtp_cmd cmd;
	const char *error;

	if (l->flags & (LINEREADER_F_BARE_CR | LINEREADER_F_BARE_LF)) {
		reply_error(s, "500 5.5.2 Error: bare CR or LF in command");
		return;
	}
	if (str_set(s->line, l->data, l->len) < 0 ||
	    smtp_cmd_parse(str_data(s->line), str_len(s->line), 0, &cmd,
			   &error) < 0) {
		reply_error(s, str_len(s->line) == l->len ? error :
			    "500 5.5.2 Error: line too long");
		return;
	}
	switch (cmd.verb) {
	case SMTP_LHLO:
		cmd_lhlo(s, &cmd);
		break;
	case SMTP_MAIL:
		cmd_mail(s, &cmd);
		break;
	case SMTP_RCPT:
		cmd_rcpt(s, &cmd);
		break;
	case SMTP_DATA:
		cmd_data(s);
		break;
	case SMTP_RSET:
		reset_txn(s);
		reply(s, "250 2.0.0 Ok");
		break;
	case SMTP_NOOP:
		reply(s, "250 2.0.0 Ok");
		break;
	case SMTP_QUIT:
		reply(s, "221 2.0.0 %s closing connection", s->ld->hostname);
		conn_close(s->conn, NULL);
		break;
	case SMTP_HELP:
		reply(s, "214 2.0.0 Commands: LHLO MAIL RCPT DATA RSET NOOP "
		      "QUIT HELP VRFY; see RFC 2033");
		break;
	case SMTP_VRFY:
		reply(s, "252 2.0.0 VRFY is disabled; send the message and "
		      "RCPT will tell");
		break;
	case SMTP_HELO:
	case SMTP_EHLO:
		reply_error(s, "500 5.5.1 Error: this is LMTP, use LHLO");
		break;
	case SMTP_UNKNOWN:
		reply_error(s, "500 5.5.2 Error: command not recognized");
		break;
	default:
		reply_error(s, "502 5.5.1 Error: command not implemented");
		break;
	}
}

/* Feeds the waiting input to the message or the command parser until it
 * is used up or something must be waited for. */
static void session_run(struct session *s)
{
	const char *start, *pos, *end;
	struct linereader_line line;
	int r;

	if (s->running || s->gone)
		return;
	s->running = true;
	start = pos = str_c(s->in);
	end = start + str_len(s->in);
	while (!s->blocked && !conn_closing(s->conn) &&
	       conn_pending(s->conn) < CONN_HIGH_WATER) {
		if (s->state == ST_DATA) {
			r = txn_data_feed(s->txn, &pos, end);
			if (r == TXN_MORE)
				break;
			if (r == TXN_WAIT)
				s->blocked = true;
			else
				data_end(s);
			continue;
		}
		r = linereader_feed(s->lr, &pos, end, &line);
		if (r == LINEREADER_MORE)
			break;
		if (r == LINEREADER_TOO_LONG)
			reply_error(s, "500 5.5.2 Error: line too long");
		else if (r == LINEREADER_LINE)
			command(s, &line);
	}
	str_consume(s->in, (size_t)(pos - start));
	s->running = false;
	if (conn_closing(s->conn))
		return;
	if (s->stop && !s->blocked && s->state <= ST_MAIL) {
		reply(s, "421 4.3.2 %s Service shutting down",
		      s->ld->hostname);
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

/* ---- connection events ---- */

static void on_read(struct conn *c, const char *data, size_t len)
{
	struct session *s = conn_ctx(c);

	if (str_append(s->in, data, len) < 0) {
		/* Cannot happen: reading stops while input waits. */
		reply(s, "421 4.3.0 %s Error: input overflow",
		      s->ld->hostname);
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
	s->gone = true;
	s->conn = NULL;
	txn_free(&s->txn);
	uv_close((uv_handle_t *)&s->idle, idle_closed);
	session_release(s);
}

static void on_idle(uv_timer_t *t)
{
	struct session *s = t->data;

	uv_timer_stop(t);
	log_info(s->id, "timeout after %s from %s",
		 s->state == ST_DATA ? "DATA" : "command", s->peer);
	reply(s, "421 4.4.2 %s Error: timeout exceeded", s->ld->hostname);
	conn_close(s->conn, "idle timeout");
}

static const struct conn_ops session_ops = {
	.on_read = on_read,
	.on_close = on_close,
	.on_drain = on_drain,
};

void session_accept(struct lmtpd *ld, uv_stream_t *client)
{
	struct session *s = xcalloc(1, sizeof(*s));

	s->ld = ld;
	svc_new_id(s->id);
	s->lr = linereader_new(ld->line_max);
	linereader_set_bare_lf(s->lr, 0);
	s->in = str_new(4096, INPUT_MAX(ld->line_max));
	s->line = str_new(256, ld->line_max);
	s->conn = conn_new(svc_loop(ld->svc), client, &session_ops, s, s->id);
	s->peer = xstrdup(conn_peer_address(s->conn));
	s->trusted = lmtpd_client_trusted(ld, s->peer);
	uv_timer_init(svc_loop(ld->svc), &s->idle);
	s->idle.data = s;
	uv_timer_start(&s->idle, on_idle, ld->idle_ms, ld->idle_ms);
	/* held by the conn and the timer(s) */
	svc_session_add(ld->svc, &s->ss, 2);
	log_info(s->id, "connect from %s", s->peer);
	if (svc_stopping(ld->svc)) {
		reply(s, "421 4.3.2 %s Service shutting down",
		      ld->hostname);
		conn_close(s->conn, "shutting down");
		return;
	}
	reply(s, "220 %s LMTP Tern ready", ld->hostname);
}

void sessions_stop(struct lmtpd *ld)
{
	for (struct svc_session *ss = svc_session_first(ld->svc); ss != NULL;
	     ss = ss->next) {
		struct session *s = (struct session *)ss;

		if (s->gone)
			continue;
		if (s->state == ST_DATA || s->state == ST_FINISH ||
		    s->blocked) {
			s->stop = true;
			continue;
		}
		reply(s, "421 4.3.2 %s Service shutting down",
		      s->ld->hostname);
		conn_close(s->conn, "shutting down");
	}
}
