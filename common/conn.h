/*
 * conn.h: one network connection with optional TLS, for every protocol daemon.
 *
 * A struct conn owns a connected libuv stream (TCP or unix socket) and, once
 * TLS is on, a struct tls_engine.  The daemon sees plaintext only: on_read
 * delivers decrypted bytes, conn_write takes plaintext.  TLS starts either at
 * once (implicit TLS: call conn_start_tls right after conn_new) or in the
 * middle of the session (STARTTLS), on the server or on the client side.
 *
 * Limits: reads go through one per-thread buffer of CONN_READ_SIZE bytes, so
 * on_read data is valid only during the call.  Nothing is read from the
 * socket while the daemon has paused reading (conn_read_stop): at most one
 * read's worth of ciphertext waits in the TLS engine.  Writes are copied and
 * queued without a bound of their own; the daemon applies back-pressure by
 * checking conn_pending() against CONN_HIGH_WATER and waiting for on_drain.
 *
 * Lifetime: the conn lives until the libuv close callbacks have run; then
 * on_close is called exactly once and the conn is freed.  Callbacks may call
 * any conn function (conn_close/conn_abort only schedule the end), but after
 * on_close returns the pointer is gone.  Idle timeouts belong to the caller.
 *
 * Callers: imapd, pop3d, smtpd, lmtpd sessions (server side) and the SMTP/LMTP
 * clients (client side).
 */
#ifndef TERN_CONN_H
#define TERN_CONN_H

#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <uv.h>

#include "compat.h"

#define CONN_READ_SIZE 65536
#define CONN_LOW_WATER 16384		/* on_drain below this */
#define CONN_HIGH_WATER (256 * 1024)	/* suggested: stop producing above */
#define CONN_CLOSE_LINGER_MS 10000	/* graceful close gives up after */
#define CONN_ID_MAX 64
#define CONN_PLAIN_QUEUE_MAX (16 * 1024 * 1024)	/* while TLS is starting */

struct conn;
struct tls_ctx;
struct tls_engine;

struct conn_ops {
	/* Plaintext from the peer (decrypted when TLS is on). */
	void (*on_read)(struct conn *c, const char *data, size_t len);
	/* The end, once: reason NULL after conn_close(c, NULL), otherwise why
	 * ("disconnected", "TLS handshake failed: ...", "read error: ...").
	 * The conn is freed when this returns. */
	void (*on_close)(struct conn *c, const char *reason);
	/* The output queue fell below CONN_LOW_WATER after being above it.
	 * Optional. */
	void (*on_drain)(struct conn *c);
	/* The TLS handshake completed (a failure closes the conn instead).
	 * Optional. */
	void (*on_tls)(struct conn *c);
};

/*
 * Takes over stream, which must be initialised, connected or accepted, and
 * allocated with malloc(): conn closes and frees it.  Reading starts at once.
 * id (session id, cut at CONN_ID_MAX) prefixes conn's log lines.
 */
struct conn *conn_new(uv_loop_t *loop, uv_stream_t *stream,
		      const struct conn_ops *ops, void *ctx, const char *id);
/* Accepts one connection from a listening TCP or unix stream and wraps it.
 * NULL with *error_r set on failure. */
struct conn *conn_accept(uv_stream_t *server, const struct conn_ops *ops,
			 void *ctx, const char *id, const char **error_r)
	TERN_WUR;

/* Queues a copy of data (plaintext): -1 when the conn is closing or the
 * pre-handshake queue would pass CONN_PLAIN_QUEUE_MAX (data dropped). */
int conn_write(struct conn *c, const void *data, size_t len);
int conn_write_c(struct conn *c, const char *cstr);
/* One protocol reply line (SMTP, LMTP): formatted, cut at max bytes, CRLF
 * appended, queued; a failure aborts the conn. */
void conn_write_vline(struct conn *c, size_t max, const char *fmt,
		      va_list ap) TERN_PRINTF(3, 0);
/* Bytes queued and not yet handed to the kernel (ciphertext once encrypted). */
size_t conn_pending(const struct conn *c);

/* Pause and resume on_read.  While paused nothing is read from the socket
 * (the TLS handshake still proceeds). */
void conn_read_stop(struct conn *c);
void conn_read_start(struct conn *c);

/*
 * Turns TLS on.  ctx decides the role (server or client context).  Client:
 * peer_name is sent as SNI and verified as tls_ctx_client_new says; servers
 * pass NULL.  Implicit TLS: call right after conn_new.  STARTTLS: call right
 * after queueing the plaintext reply ("220 Ready to start TLS"):
 *
 *  - From this call on, on_read never again carries plaintext from before the
 *    upgrade.  The socket is not read until the queued reply has been written
 *    to the kernel; everything read after that is TLS.  A peer that sent
 *    anything after its STARTTLS line without waiting for our reply fails
 *    the handshake; it never gets those bytes interpreted as commands.
 *
 *  - THE CALLER MUST DROP THE REST OF THE CHUNK IT IS PROCESSING AND RESET
 *    ITS OWN PARSER (line reader, pipelined commands, SASL state) when it
 *    calls this from on_read.  "STARTTLS\r\nMAIL FROM:<x>\r\n" arrives in one
 *    on_read; the bytes after STARTTLS came in plaintext and must never be
 *    executed inside the TLS session (CVE-2011-0411).  conn cannot take them
 *    back once on_read has them.
 *
 *  - Plaintext written with conn_write after this call is sent encrypted once
 *    the handshake is done.  on_tls follows success; failure closes the conn
 *    with the reason (and logs nothing itself).
 *
 * -1 with *error_r when TLS is already on, the conn is closing, or the engine
 * cannot be created.
 */
int conn_start_tls(struct conn *c, struct tls_ctx *ctx, const char *peer_name,
		   const char **error_r) TERN_WUR;
bool conn_tls_active(const struct conn *c);	/* handshake done */
/* The engine (for tls_engine_info), or NULL before TLS. */
struct tls_engine *conn_tls(struct conn *c);

/* Graceful end: stops reading, writes what is queued, sends close_notify when
 * TLS is on, shuts the socket down and closes it.  Gives up after
 * CONN_CLOSE_LINGER_MS.  reason is passed to on_close (copied).  Repeated
 * calls keep the first reason. */
void conn_close(struct conn *c, const char *reason);
/* Immediate end: queued output is dropped. */
void conn_abort(struct conn *c, const char *reason);
bool conn_closing(const struct conn *c);

/* "1.2.3.4", "::1" (IPv4-mapped addresses as IPv4), "unix" or "unknown". */
const char *conn_peer_address(const struct conn *c);
const char *conn_id(const struct conn *c);
void *conn_ctx(const struct conn *c);
void conn_set_ctx(struct conn *c, void *ctx);

#endif
