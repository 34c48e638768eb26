/*
 * session.h: one IMAP client connection of tern-imapd, and what the
 * command modules (folder.c, fetch.c, msgcmd.c, mbox.c) share with it.
 *
 * States (RFC 9051 section 3): not authenticated, authenticated, selected,
 * logout.  Commands run one at a time in the order they came: while a
 * command runs (its handler returned without cmd_done() because it waits
 * for tern-authd or tern-stored) the session is blocked: nothing more is
 * read, so memory stays bounded, until the command calls cmd_done().
 * Before every tagged OK of a command in the selected state the session
 * reports what other sessions and deliveries changed (mbox_sync): EXISTS
 * and FETCH FLAGS always, EXPUNGE only where RFC 9051 section 7.5.1 allows
 * it (not after FETCH, STORE or SEARCH by sequence number).
 *
 * Output goes to s->out and to the connection in one write per batch;
 * long FETCH answers stop above CONN_HIGH_WATER and go on from on_drain
 * (s->resume), so a client that does not read makes us buffer at most one
 * message part beyond the water mark.
 *
 * Logins go to tern-authd with service "imap" and the client's IP, so the
 * failure delay and lockout are the ones every protocol shares.  Without
 * TLS, LOGIN and AUTHENTICATE are refused (LOGINDISABLED) unless
 * imap_plaintext_auth allows them for this client.  STARTTLS drops what
 * the client sent after it and resets the parser.
 *
 * Limits: imap_line_limit per line, imap_append_limit per APPEND literal,
 * SESSION_ERRORS_MAX bad commands and SESSION_AUTH_FAILURES_MAX failed
 * logins per connection, imap_login_timeout before login and
 * imap_idle_timeout after.  Callers: main.c and the command modules.
 */
#ifndef TERN_IMAPD_SESSION_H
#define TERN_IMAPD_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "compat.h"
#include "storeasync.h"
#include "svc.h"

#define SESSION_ERRORS_MAX 50
#define SESSION_AUTH_FAILURES_MAX 3

struct imapd;
struct imap_cmd;
struct imap_parser;
struct imap_seqset;
struct conn;
struct str;
struct mbox;
struct compress;

enum session_state {
	ST_NOTAUTH = 0x1,
	ST_AUTH = 0x2,
	ST_SELECTED = 0x4,
	ST_LOGOUT = 0x8,
};

struct session {
	struct svc_session ss;	/* first: the skeleton's list and holds */
	struct imapd *d;
	struct conn *conn;
	struct imap_parser *parser;
	struct str *in;		/* input not yet parsed */
	struct str *out;	/* responses not yet written */
	char id[16];
	char *peer;		/* the connection's peer address */
	char *rip;		/* the client's: peer, or what a trusted proxy
				 * reported (ID x-originating-ip) */
	enum session_state state;
	int64_t account;	/* the directory's id, after login */
	char *user;		/* the account's address */
	uint64_t quota;		/* bytes from the directory, 0 = none */
	struct mbox *mb;	/* the selected folder */
	struct imap_cmd *cmd;	/* the command running */
	char *tagged;		/* its final response, while a sync runs */
	uv_timer_t idle;
	unsigned errors, auth_failures;
	struct imap_seqset *saved;	/* SEARCHRES "$", as UIDs */
	struct compress *z;	/* COMPRESS=DEFLATE, or NULL */
	/* A long answer waiting for the client to read (on_drain). */
	void (*resume)(struct session *s);
	void *resume_ctx;
	void (*resume_free)(void *ctx);	/* frees resume_ctx on close */
	char *sasl_mech;	/* AUTHENTICATE waiting for a response */
	char *sasl_user;	/* AUTHENTICATE LOGIN: the user name */
	bool tls;		/* TLS is on (implicit or after STARTTLS) */
	bool blocked;		/* a command waits: input parked */
	bool running;		/* inside session_run */
	bool gone;		/* the conn is closed */
	const char *bye;	/* close with "* BYE" once the command is done */
	bool idling;		/* in IDLE, waiting for DONE */
	bool utf8;		/* ENABLE UTF8=ACCEPT */
	bool condstore;		/* CONDSTORE in use (ENABLE or implied) */
	bool qresync;		/* ENABLE QRESYNC */
	bool rev2;		/* ENABLE IMAP4rev2 */
};

/* A client accepted by the skeleton (stream allocated with malloc). */
void session_accept(struct imapd *d, uv_stream_t *client);
/* Stop: sessions between commands get "* BYE" and close; busy ones close
 * when their command is done. */
void sessions_stop(struct imapd *d);
/* Ends the session with "* BYE text" (text static), at once when it waits
 * for the client, else when its command is done. */
void session_bye(struct session *s, const char *text);

/* ---- for the command modules ---- */

/* Appends raw text (the caller writes the CRLF). */
void out_printf(struct session *s, const char *fmt, ...) TERN_PRINTF(2, 3);
void out_append(struct session *s, const void *data, size_t len);
/* Hands the collected output to the connection. */
void out_flush(struct session *s);
/* True when the connection's queue is above the high-water mark. */
bool out_full(struct session *s);

/*
 * Ends the running command: reports pending mailbox changes (EXPUNGE too
 * when expunge_ok) and then "tag STATUS text" (text may start with a
 * "[CODE] "), frees the command and goes on with the next one.  status:
 * "OK", "NO" or "BAD".  Also for commands that never waited.
 */
void cmd_done(struct session *s, bool expunge_ok, const char *status,
	      const char *fmt, ...) TERN_PRINTF(4, 5);
/* A BAD or NO counted as a protocol error. */
void cmd_error(struct session *s, const char *status, const char *text);
/* The store is unavailable: NO [UNAVAILABLE] and a log line. */
void cmd_tempfail(struct session *s, const char *what, const char *error);
/* The CAPABILITY list for the session's state ("IMAP4rev1 ..."). */
void session_capabilities(struct session *s, struct str *out);

/*
 * A request to tern-stored for this session: store_req() starts one with
 * the session's account and address (and folder unless NULL);
 * store_call() sends it, holding the session, and calls cb unless the
 * session went away meanwhile (then ctx_free(ctx), when not NULL).  frames, final, code, error: as
 * storeasync_done_cb says.
 */
typedef void session_store_cb(struct session *s, enum storeasync_status st,
			      struct ipc_msg *const *frames, size_t nframes,
			      const struct ipc_msg *final, const char *code,
			      const char *error, void *ctx);
struct ipc_msg *store_req(struct session *s, const char *type,
			  const char *folder);
void store_call(struct session *s, struct ipc_msg *req, bool idempotent,
		session_store_cb *cb, void *ctx, void (*ctx_free)(void *));

/* Folder names as the client writes them: modified UTF-7, or UTF-8 after
 * ENABLE UTF8=ACCEPT; quoted or a literal. */
void out_mailbox(struct session *s, const char *name);
/* An IMAP astring/nstring value: quoted or a literal. */
void out_string(struct session *s, const char *str, size_t len);

#endif
