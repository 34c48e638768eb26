/*
 * session.h: one LMTP client connection of tern-lmtpd (RFC 2033).
 *
 * Commands: LHLO (required before MAIL), MAIL (SIZE=, BODY=), RCPT, DATA,
 * RSET, NOOP, QUIT, HELP, VRFY (252, disabled); EHLO and HELO are refused
 * (this is LMTP), STARTTLS, AUTH, EXPN and BDAT are not offered.  The
 * extensions announced: PIPELINING, ENHANCEDSTATUSCODES, 8BITMIME, SIZE.
 *
 * Pipelining: commands are taken one at a time from the input; while a
 * recipient is being checked (tern-authd, tern-stored) or the message is
 * being spooled or delivered, the rest of the input waits and nothing more
 * is read from the socket, so replies come in command order and memory
 * stays bounded (one read of CONN_READ_SIZE beyond a command line).
 *
 * Limits: lmtp_line_limit per command line, lmtp_recipient_limit RCPT per
 * transaction, lmtp_message_size_limit per message, lmtp_idle_timeout
 * between client bytes, SESSION_ERRORS_MAX protocol errors per session.
 * Callers: main.c.
 */
#ifndef TERN_LMTPD_SESSION_H
#define TERN_LMTPD_SESSION_H

#include <uv.h>

#include "compat.h"

#define SESSION_ERRORS_MAX 20

struct lmtpd;

/* A client accepted by the skeleton (stream allocated with malloc). */
void session_accept(struct lmtpd *ld, uv_stream_t *client);
/* Stop: idle sessions get 421 and close; busy ones close after their
 * current transaction. */
void sessions_stop(struct lmtpd *ld);

#endif
