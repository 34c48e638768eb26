/*
 * session.h: one POP3 client connection of tern-popd.
 *
 * States (RFC 1939): AUTHORIZATION (USER/PASS, AUTH PLAIN with or without
 * an initial response, CAPA, STLS, QUIT), TRANSACTION on the snapshot the
 * mailbox module took at login (STAT, LIST, RETR, TOP, DELE, NOOP, RSET,
 * UIDL, CAPA, QUIT) and UPDATE after QUIT.  Every refusal is one "-ERR"
 * line and the session goes on; error replies carry RFC 2449/3206 codes
 * ([IN-USE], [LOGIN-DELAY], [AUTH], [SYS/TEMP], [SYS/PERM]).
 *
 * Logins go to tern-authd with service "pop3" and the client's IP, so the
 * failure delay and lockout are the ones every protocol shares.  Without
 * TLS, USER/PASS and AUTH PLAIN are refused unless pop3_plaintext_auth
 * allows them for this client.  STLS drops whatever the client sent after
 * it and resets the parser.
 *
 * Pipelining: commands are taken one at a time from the input; while
 * authd, the store or a RETR is being waited for, the rest waits and
 * nothing more is read, so replies come in order and memory stays
 * bounded.  Replies produced by one read go out in one write.
 *
 * Limits: pop3_line_limit per line, SESSION_ERRORS_MAX protocol errors
 * and SESSION_AUTH_FAILURES_MAX failed logins per connection,
 * pop3_idle_timeout between commands.  Callers: main.c.
 */
#ifndef TERN_POPD_SESSION_H
#define TERN_POPD_SESSION_H

#include <uv.h>

#include "compat.h"

#define SESSION_ERRORS_MAX 20
#define SESSION_AUTH_FAILURES_MAX 3

struct popd;

/* A client accepted by the skeleton (stream allocated with malloc). */
void session_accept(struct popd *pd, uv_stream_t *client);
/* Stop: sessions between commands get -ERR [SYS/TEMP] and close without
 * UPDATE; busy ones close when their command is done. */
void sessions_stop(struct popd *pd);

#endif
