/* conn.c: see conn.h. */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>

#include "compat.h"
#include "conn.h"
#include "log.h"
#include "str.h"
#include "tls.h"

#define CONN_TLS_PLAIN_SIZE 16384	/* one TLS record of plaintext */
#define CONN_WRITE_CHUNK (1024 * 1024)	/* largest single uv_write */
#define CONN_REASON_MAX 1024

/*
 * OPEN -> UPGRADING (conn_start_tls, until the queued plaintext is written)
 * -> OPEN; OPEN or UPGRADING -> CLOSING (flushing) -> SHUTDOWN (FIN sent,
 * input discarded until EOF) -> CLOSED (uv_close called).  conn_abort jumps
 * to CLOSED from anywhere.
 */
enum conn_state {
	CONN_OPEN,
	CONN_UPGRADING,
	CONN_CLOSING,
	CONN_SHUTDOWN,
	CONN_CLOSED,
};

struct conn_wreq {
	uv_write_t req;
	struct conn *conn;
	size_t len;
	char data[];
};

struct conn {
	uv_loop_t *loop;
	uv_stream_t *stream;
	uv_timer_t timer;	/* read kick when OPEN, linger when closing */
	uv_shutdown_t shutdown_req;
	const struct conn_ops *ops;
	void *ctx;
	enum conn_state state;
	int open_handles;
	bool app_reading;	/* the daemon wants on_read */
	bool sock_reading;	/* uv_read_start is in effect */
	bool tls_starved;	/* the engine has no plaintext left */
	bool above_low;		/* pending reached CONN_LOW_WATER */
	bool reason_set;
	struct tls_engine *tls;
	struct str *tls_queue;	/* plaintext written before the handshake */
	struct str *reason;
	size_t write_bytes;	/* in uv_write requests not completed */
	char id[CONN_ID_MAX + 1];
	char peer[INET6_ADDRSTRLEN];
};

/* Read data lives here only during on_read (see conn.h). */
static _Thread_local char conn_rbuf[CONN_READ_SIZE];
static _Thread_local char conn_pbuf[CONN_TLS_PLAIN_SIZE];

static void conn_update_reading(struct conn *c);
static void conn_tls_pump(struct conn *c);

static void conn_set_reason(struct conn *c, const char *reason)
{
	if (c->reason_set)
		return;
	c->reason_set = true;
	if (reason == NULL)
		return;
	c->reason = str_new(64, CONN_REASON_MAX);
	if (str_append_c(c->reason, reason) < 0)
		str_truncate(c->reason, 0);
}

static void conn_free(struct conn *c)
{
	tls_engine_free(&c->tls);
	str_free(&c->tls_queue);
	str_free(&c->reason);
	free(c->stream);
	free(c);
}

static void conn_close_cb(uv_handle_t *handle)
{
	struct conn *c = handle->data;

	if (--c->open_handles > 0)
		return;
	if (c->ops->on_close != NULL)
		c->ops->on_close(c, c->reason != NULL ? str_c(c->reason)
						      : NULL);
	conn_free(c);
}

void conn_abort(struct conn *c, const char *reason)
{
	if (c->state == CONN_CLOSED)
		return;
	conn_set_reason(c, reason);
	c->state = CONN_CLOSED;
	c->sock_reading = false;
	str_free(&c->tls_queue);
	uv_close((uv_handle_t *)c->stream, conn_close_cb);
	uv_close((uv_handle_t *)&c->timer, conn_close_cb);
}

static void conn_abort_uv(struct conn *c, const char *what, int err)
{
	char buf[256];

	snprintf(buf, sizeof(buf), "%s: %s", what, uv_strerror(err));
	conn_abort(c, buf);
}

static void conn_load_peer(struct conn *c)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);

	str_lcpy(c->peer, "unknown", sizeof(c->peer));
	if (c->stream->type == UV_NAMED_PIPE) {
		str_lcpy(c->peer, "unix", sizeof(c->peer));
		return;
	}
	if (c->stream->type != UV_TCP ||
	    uv_tcp_getpeername((uv_tcp_t *)c->stream, (struct sockaddr *)&ss,
			       &len) != 0)
		return;
	if (ss.ss_family == AF_INET) {
		uv_ip4_name((struct sockaddr_in *)&ss, c->peer,
			    sizeof(c->peer));
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
			inet_ntop(AF_INET, &sin6->sin6_addr.s6_addr[12],
				  c->peer, sizeof(c->peer));
		else
			uv_ip6_name(sin6, c->peer, sizeof(c->peer));
	}
}

struct conn *conn_new(uv_loop_t *loop, uv_stream_t *stream,
		      const struct conn_ops *ops, void *ctx, const char *id)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (c == NULL)
		abort();
	c->loop = loop;
	c->stream = stream;
	stream->data = c;
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	c->shutdown_req.data = c;
	c->open_handles = 2;
	c->ops = ops;
	c->ctx = ctx;
	str_lcpy(c->id, id != NULL ? id : "", sizeof(c->id));
	conn_load_peer(c);
	c->app_reading = true;
	c->tls_starved = true;
	conn_update_reading(c);
	return c;
}

static void conn_free_handle_cb(uv_handle_t *handle)
{
	free(handle);
}

struct conn *conn_accept(uv_stream_t *server, const struct conn_ops *ops,
			 void *ctx, const char *id, const char **error_r)
{
	uv_stream_t *client;
	int r;

	if (server->type == UV_TCP) {
		uv_tcp_t *tcp = malloc(sizeof(*tcp));

		if (tcp == NULL)
			abort();
		uv_tcp_init(server->loop, tcp);
		client = (uv_stream_t *)tcp;
	} else if (server->type == UV_NAMED_PIPE) {
		uv_pipe_t *pipe = malloc(sizeof(*pipe));

		if (pipe == NULL)
			abort();
		uv_pipe_init(server->loop, pipe, 0);
		client = (uv_stream_t *)pipe;
	} else {
		*error_r = "listener is neither TCP nor a unix socket";
		return NULL;
	}
	r = uv_accept(server, client);
	if (r < 0) {
		*error_r = uv_strerror(r);
		uv_close((uv_handle_t *)client, conn_free_handle_cb);
		return NULL;
	}
	return conn_new(server->loop, client, ops, ctx, id);
}

/* Reading. */

static bool conn_want_socket(const struct conn *c)
{
	switch (c->state) {
	case CONN_SHUTDOWN:
		return true;	/* discarding until the peer's EOF */
	case CONN_OPEN:
		if (c->tls == NULL)
			return c->app_reading;
		if (!tls_engine_handshake_done(c->tls))
			return true;
		return c->app_reading && c->tls_starved;
	default:
		return false;
	}
}

static void conn_alloc_cb(uv_handle_t *handle, size_t suggested,
			  uv_buf_t *buf)
{
	*buf = uv_buf_init(conn_rbuf, sizeof(conn_rbuf));
}

static void conn_read_cb(uv_stream_t *stream, ssize_t nread,
			 const uv_buf_t *buf)
{
	struct conn *c = stream->data;

	if (nread == 0)
		return;
	if (c->state == CONN_SHUTDOWN) {
		if (nread < 0)
			conn_abort(c, NULL);	/* the reason is already set */
		return;
	}
	if (c->state != CONN_OPEN)
		return;
	if (nread < 0) {
		if (nread == UV_EOF)
			conn_close(c, "disconnected");
		else
			conn_abort_uv(c, "read error", (int)nread);
		return;
	}
	if (c->tls == NULL) {
		c->ops->on_read(c, buf->base, (size_t)nread);
		conn_update_reading(c);
		return;
	}
	if (tls_engine_feed(c->tls, buf->base, (size_t)nread) < 0) {
		conn_abort(c, "out of memory for TLS input");
		return;
	}
	c->tls_starved = false;
	conn_tls_pump(c);
}

static void conn_update_reading(struct conn *c)
{
	bool want = conn_want_socket(c);
	int r;

	if (c->state == CONN_CLOSED || want == c->sock_reading)
		return;
	if (want) {
		r = uv_read_start(c->stream, conn_alloc_cb, conn_read_cb);
		if (r < 0) {
			conn_abort_uv(c, "read error", r);
			return;
		}
	} else {
		uv_read_stop(c->stream);
	}
	c->sock_reading = want;
}

static void conn_kick_cb(uv_timer_t *timer)
{
	struct conn *c = timer->data;

	if (c->state == CONN_OPEN && c->tls != NULL)
		conn_tls_pump(c);
}

void conn_read_stop(struct conn *c)
{
	c->app_reading = false;
	conn_update_reading(c);
}

void conn_read_start(struct conn *c)
{
	if (c->app_reading)
		return;
	c->app_reading = true;
	/* Plaintext may wait inside the engine; deliver it from the loop, not
	 * from inside the caller. */
	if (c->state == CONN_OPEN && c->tls != NULL &&
	    tls_engine_handshake_done(c->tls) && !c->tls_starved)
		uv_timer_start(&c->timer, conn_kick_cb, 0, 0);
	conn_update_reading(c);
}

/* Writing. */

size_t conn_pending(const struct conn *c)
{
	return c->write_bytes + (c->tls_queue != NULL ? str_len(c->tls_queue)
						       : 0);
}

static void conn_shutdown(struct conn *c);
static void conn_tls_begin(struct conn *c);

static void conn_after_write(struct conn *c)
{
	switch (c->state) {
	case CONN_UPGRADING:
		if (c->write_bytes == 0)
			conn_tls_begin(c);
		break;
	case CONN_CLOSING:
		if (c->write_bytes == 0)
			conn_shutdown(c);
		break;
	case CONN_OPEN:
		if (c->above_low && conn_pending(c) < CONN_LOW_WATER) {
			c->above_low = false;
			if (c->ops->on_drain != NULL)
				c->ops->on_drain(c);
		}
		break;
	default:
		break;
	}
}

static void conn_write_cb(uv_write_t *req, int status)
{
	struct conn_wreq *w = req->data;
	struct conn *c = w->conn;

	c->write_bytes -= w->len;
	free(w);
	if (c->state == CONN_CLOSED)
		return;
	if (status < 0) {
		conn_abort_uv(c, "write error", status);
		return;
	}
	conn_after_write(c);
}

static struct conn_wreq *conn_wreq_new(struct conn *c, size_t len)
{
	struct conn_wreq *w = malloc(sizeof(*w) + len);

	if (w == NULL)
		abort();
	w->req.data = w;
	w->conn = c;
	w->len = len;
	return w;
}

/* Hands w to libuv; on failure the conn is aborted and w freed. */
static void conn_submit(struct conn *c, struct conn_wreq *w)
{
	uv_buf_t buf = uv_buf_init(w->data, (unsigned int)w->len);
	int r;

	r = uv_write(&w->req, c->stream, &buf, 1, conn_write_cb);
	if (r < 0) {
		free(w);
		conn_abort_uv(c, "write error", r);
		return;
	}
	c->write_bytes += w->len;
	if (conn_pending(c) >= CONN_LOW_WATER)
		c->above_low = true;
}

static void conn_flush_tls(struct conn *c)
{
	size_t n = tls_engine_out_pending(c->tls);
	struct conn_wreq *w;

	if (n == 0 || c->state == CONN_CLOSED || c->state == CONN_SHUTDOWN)
		return;
	w = conn_wreq_new(c, n);
	w->len = tls_engine_out_take(c->tls, w->data, n);
	conn_submit(c, w);
}

static void conn_write_raw(struct conn *c, const char *data, size_t len)
{
	/* Nothing queued: write what the socket takes now, without a copy;
	 * the rest (if any) is queued as usual. */
	if (c->write_bytes == 0 && c->state == CONN_OPEN) {
		uv_buf_t buf = uv_buf_init((char *)data, (unsigned int)(
			len < CONN_WRITE_CHUNK ? len : CONN_WRITE_CHUNK));
		int n = uv_try_write(c->stream, &buf, 1);

		if (n > 0) {
			data += n;
			len -= (size_t)n;
		}
	}
	while (len > 0 && c->state != CONN_CLOSED) {
		size_t n = len < CONN_WRITE_CHUNK ? len : CONN_WRITE_CHUNK;
		struct conn_wreq *w = conn_wreq_new(c, n);

		memcpy(w->data, data, n);
		conn_submit(c, w);
		data += n;
		len -= n;
	}
}

static void conn_fail_tls(struct conn *c, const char *error)
{
	/* Graceful, so that the alert OpenSSL queued reaches the peer. */
	conn_close(c, error);
}

int conn_write(struct conn *c, const void *data, size_t len)
{
	const char *error;

	if (c->state != CONN_OPEN && c->state != CONN_UPGRADING)
		return -1;
	if (len == 0)
		return 0;
	if (c->tls != NULL && (c->state == CONN_UPGRADING ||
			       !tls_engine_handshake_done(c->tls))) {
		if (c->tls_queue == NULL)
			c->tls_queue = str_new(len, CONN_PLAIN_QUEUE_MAX);
		if (str_append(c->tls_queue, data, len) < 0)
			return -1;
		if (conn_pending(c) >= CONN_LOW_WATER)
			c->above_low = true;
		return 0;
	}
	if (c->tls == NULL) {
		conn_write_raw(c, data, len);
		return 0;
	}
	if (tls_engine_write(c->tls, data, len, &error) < 0) {
		conn_fail_tls(c, error);
		return -1;
	}
	conn_flush_tls(c);
	return 0;
}

int conn_write_c(struct conn *c, const char *cstr)
{
	return conn_write(c, cstr, strlen(cstr));
}

void conn_write_vline(struct conn *c, size_t max, const char *fmt,
		      va_list ap)
{
	struct str *line = str_new(128, max + 2);

	(void)str_vsetf(line, fmt, ap);
	if (str_len(line) > max)
		str_truncate(line, max);
	if (str_append(line, "\r\n", 2) < 0 ||
	    conn_write(c, str_c(line), str_len(line)) < 0)
		conn_abort(c, "write failed");
	str_free(&line);
}

/* TLS. */

static void conn_tls_log(struct conn *c)
{
	struct str *s = str_new(256, 1024);
	struct tls_info info;
	bool server = tls_engine_role(c->tls) == TLS_ROLE_SERVER;

	int r;

	tls_engine_info(c->tls, &info);
	r = str_printf(s, "%s TLS connection established %s %s: ",
		       tls_trust_name(info.trust), server ? "from" : "to",
		       c->peer);
	if (r == 0)
		r = tls_engine_describe(c->tls, s);
	if (r == 0 && server && info.sni != NULL)
		r = str_printf(s, " SNI=%s", info.sni);
	/* A cut line is still worth logging. */
	log_info(c->id, "%s", str_c(s));
	str_free(&s);
}

static void conn_tls_established(struct conn *c)
{
	const char *error;

	conn_tls_log(c);
	if (c->tls_queue != NULL) {
		int r = tls_engine_write(c->tls, str_c(c->tls_queue),
					 str_len(c->tls_queue), &error);

		str_free(&c->tls_queue);
		if (r < 0) {
			conn_fail_tls(c, error);
			return;
		}
		conn_flush_tls(c);
	}
	if (c->ops->on_tls != NULL && c->state == CONN_OPEN)
		c->ops->on_tls(c);
}

static void conn_tls_pump(struct conn *c)
{
	const char *error;
	size_t len;
	int r;

	if (!tls_engine_handshake_done(c->tls)) {
		r = tls_engine_handshake(c->tls, &error);
		conn_flush_tls(c);
		if (r == TLS_R_ERROR) {
			conn_fail_tls(c, error);
			return;
		}
		if (r == TLS_R_AGAIN) {
			c->tls_starved = true;
			conn_update_reading(c);
			return;
		}
		c->tls_starved = false;	/* data may follow the Finished */
		conn_tls_established(c);
	}
	while (c->state == CONN_OPEN && c->app_reading) {
		r = tls_engine_read(c->tls, conn_pbuf, sizeof(conn_pbuf), &len,
				    &error);
		conn_flush_tls(c);	/* e.g. a KeyUpdate answer */
		if (r == TLS_R_OK) {
			c->ops->on_read(c, conn_pbuf, len);
		} else if (r == TLS_R_AGAIN) {
			c->tls_starved = true;
		} else if (r == TLS_R_EOF) {
			conn_close(c, "disconnected");
			return;
		} else {
			conn_fail_tls(c, error);
			return;
		}
		if (r == TLS_R_AGAIN)
			break;
	}
	conn_update_reading(c);
}

/* The queued plaintext is in the kernel: from here on, the wire is TLS. */
static void conn_tls_begin(struct conn *c)
{
	c->state = CONN_OPEN;
	c->tls_starved = true;
	conn_tls_pump(c);
}

int conn_start_tls(struct conn *c, struct tls_ctx *ctx, const char *peer_name,
		   const char **error_r)
{
	if (c->state != CONN_OPEN) {
		*error_r = "connection is closing";
		return -1;
	}
	if (c->tls != NULL) {
		*error_r = "TLS is already active";
		return -1;
	}
	c->tls = tls_engine_new(ctx, peer_name, c->id, error_r);
	if (c->tls == NULL)
		return -1;
	/* Stop reading now: whatever the peer sent before our reply reached
	 * it is not read as plaintext, and not yet as TLS either. */
	c->state = CONN_UPGRADING;
	conn_update_reading(c);
	if (c->write_bytes == 0)
		conn_tls_begin(c);
	return 0;
}

bool conn_tls_active(const struct conn *c)
{
	return c->tls != NULL && tls_engine_handshake_done(c->tls);
}

struct tls_engine *conn_tls(struct conn *c)
{
	return c->tls;
}

/* Closing. */

static void conn_linger_cb(uv_timer_t *timer)
{
	struct conn *c = timer->data;

	log_debug(c->id, "close: peer did not take our output in time");
	conn_abort(c, NULL);
}

static void conn_shutdown_cb(uv_shutdown_t *req, int status)
{
	struct conn *c = req->data;

	if (c->state != CONN_SHUTDOWN)
		return;		/* aborted meanwhile */
	if (status < 0) {
		conn_abort(c, NULL);
		return;
	}
	/* Read (and drop) until the peer closes too, so that our last words
	 * are not lost to a reset caused by unread input. */
	conn_update_reading(c);
}

static void conn_shutdown(struct conn *c)
{
	int r;

	if (c->state != CONN_CLOSING)
		return;
	c->state = CONN_SHUTDOWN;
	r = uv_shutdown(&c->shutdown_req, c->stream, conn_shutdown_cb);
	if (r < 0)
		conn_abort(c, NULL);
}

void conn_close(struct conn *c, const char *reason)
{
	bool upgrading = c->state == CONN_UPGRADING;

	if (c->state != CONN_OPEN && c->state != CONN_UPGRADING)
		return;
	conn_set_reason(c, reason);
	c->state = CONN_CLOSING;
	conn_update_reading(c);
	str_free(&c->tls_queue);
	if (c->tls != NULL && !upgrading &&
	    tls_engine_shutdown(c->tls) == 0)
		conn_flush_tls(c);
	if (c->state != CONN_CLOSING)
		return;		/* the flush failed and aborted */
	uv_timer_start(&c->timer, conn_linger_cb, CONN_CLOSE_LINGER_MS, 0);
	if (c->write_bytes == 0)
		conn_shutdown(c);
}

bool conn_closing(const struct conn *c)
{
	return c->state != CONN_OPEN && c->state != CONN_UPGRADING;
}

const char *conn_peer_address(const struct conn *c)
{
	return c->peer;
}

const char *conn_id(const struct conn *c)
{
	return c->id;
}

void *conn_ctx(const struct conn *c)
{
	return c->ctx;
}

void conn_set_ctx(struct conn *c, void *ctx)
{
	c->ctx = ctx;
}
