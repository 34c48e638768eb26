/*
 * session.h: one SMTP client connection of tern-smtpd (RFC 5321).
 *
 * Commands: EHLO, HELO, STARTTLS (RFC 3207), AUTH PLAIN and LOGIN
 * (RFC 4954, checked by tern-authd), MAIL (SIZE, BODY, SMTPUTF8, RET,
 * ENVID, AUTH), RCPT (NOTIFY, ORCPT), DATA, BDAT (RFC 3030), RSET, NOOP,
 * QUIT, HELP, VRFY (252 or 502, never an answer about a user), EXPN (502).
 * EHLO announces PIPELINING, SIZE, STARTTLS (when a certificate is loaded
 * and TLS is not on yet), AUTH (when allowed now), ENHANCEDSTATUSCODES,
 * 8BITMIME, DSN, SMTPUTF8 and CHUNKING.
 *
 * Policy: recipients in our domains must exist (550 5.1.1); others are
 * relayed only for authenticated clients and mynetworks (554 5.7.1); an
 * authenticated client must own its envelope sender (553 5.7.1, unless
 * smtpd_sender_login_check = no); submission services require AUTH before
 * MAIL and STARTTLS before AUTH (530 5.7.0).  A client that talks before
 * the greeting gets 554 and is dropped; one with more open connections
 * than smtpd_client_connection_limit gets 421.
 *
 * STARTTLS drops every byte that came after the command in plaintext and
 * resets the session (a new EHLO is needed).  Pipelining: commands are
 * taken one at a time; while a directory answer or a queue write is
 * awaited, the rest of the input waits and nothing more is read.
 *
 * Limits: smtpd_line_limit per command line, smtpd_recipient_limit RCPT
 * per transaction, message_size_limit per message, smtpd_timeout between
 * client bytes, smtpd_error_limit errors per session.  Callers: main.c.
 */
#ifndef TERN_SMTPD_SESSION_H
#define TERN_SMTPD_SESSION_H

#include <uv.h>

#include "compat.h"

#define SESSION_AUTH_FAILURES_MAX 3

struct smtpd;

/* A client accepted by the skeleton (stream allocated with malloc). */
void session_accept(struct smtpd *sd, uv_stream_t *client);
/* Stop: idle sessions get 421 and close; busy ones close after their
 * current transaction. */
void sessions_stop(struct smtpd *sd);

#endif
