/*
 * http.c: one HTTP client of tern-proxyd (services "http" and "https"),
 * from the first request to the close (proxyd.h, docs/proxy.md).
 *
 * Requests are handled one at a time, in order: the head is read
 * (httpparse.h: strict framing, so that no request hides inside another),
 * routed (Basic authentication checked with tern-authd, a signed session
 * cookie, a DAV path naming a user, or the default upstream), sent to the
 * backend with the forwarding fields, its body passed on as it comes; the
 * response head is read, cleaned of hop-by-hop fields and passed on with
 * its body.  Only then is the next pipelined request read.  States:
 * H_HEAD (reading a request head), H_ROUTE (tern-authd asked), H_CONNECT
 * (connecting to the backend, under proxy_connect_timeout), H_FORWARD
 * (request body up, response down).
 *
 * Backends: a client connection keeps at most one backend connection; a
 * request for another backend closes it and opens one there.  A backend
 * connection (struct hback) outlives its session when it is replaced; it
 * is detached (s = NULL) and only closes.
 *
 * Limits: request heads HTTP_REQUEST_HEAD_MAX bytes (431 above) and
 * proxy_http_header_fields_max fields; proxy_http_idle_timeout without a
 * byte either way; proxy_client_connection_limit as for IMAP and POP3.
 * Body bytes are never held beyond one read: each side stops reading while
 * the other's output queue is above CONN_HIGH_WATER.
 */
#include "config.h"

#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "compat.h"
#include "authclient.h"
#include "base64.h"
#include "conn.h"
#include "dir.h"
#include "httpparse.h"
#include "log.h"
#include "proxyauth.h"
#include "proxyd.h"
#include "services.h"
#include "str.h"
#include "svc.h"
#include "xalloc.h"

#define HTTP_REQUEST_HEAD_MAX (64 * 1024)
#define HTTP_RESPONSE_HEAD_MAX (64 * 1024)
#define HTTP_PASSWORD_MAX 4096
#define HTTP_PATH_LOG_MAX 256
#define HTTP_COOKIE_NAME "TERN_SESSION"
/* Client input held while a request is routed or its response relayed:
 * one head and a read. */
#define HTTP_INPUT_MAX (HTTP_REQUEST_HEAD_MAX + 2 * CONN_READ_SIZE)

enum hstate {
	H_HEAD,
	H_ROUTE,
	H_CONNECT,
	H_FORWARD,
};

struct hsession;

/* One backend connection. */
struct hback {
	struct hsession *s;	/* NULL once detached */
	struct conn *conn;	/* NULL while connecting */
	char *name;		/* "host:port" */
	char *host;
	unsigned port;
	uv_getaddrinfo_t gai;
	uv_connect_t creq;
	uv_tcp_t *tcp;
	bool resolving, connecting;	/* a libuv callback will come */
	bool reusable;
	unsigned requests;		/* sent on this connection */
};

struct hsession {
	struct svc_session ss;	/* first: the skeleton's list and holds */
	struct proxyd *d;
	struct conn *client;
	char id[16];
	char *peer;
	uv_timer_t timer;
	struct http_parser *req, *resp;
	const struct http_head *rh;	/* the request being handled */
	struct str *in;			/* client input not yet handled */
	enum hstate state;
	/* the request */
	char *path;			/* without the query, for the log */
	char *user;			/* authenticated: X-Tern-User */
	bool basic;			/* Authorization checked here */
	bool dav;			/* routed by a DAV path */
	bool keep_alive;		/* the client connection goes on */
	bool head_req;
	enum http_body req_body;
	uint64_t req_left;
	struct http_chunked req_ck;
	bool req_done;
	/* the response */
	bool resp_head_done;
	bool resp_started;		/* bytes of it went to the client */
	uint64_t resp_bytes;		/* bytes of it from the backend */
	bool retried;			/* sent again once already */
	enum http_body resp_body;
	uint64_t resp_left;
	struct http_chunked resp_ck;
	unsigned status;
	struct hback *hb;
	char *backend_name;		/* of this request, for the log */
	uint64_t t0, up, down;
	bool gone, running, stop;
	struct proxy_count count;
};

static void pump(struct hsession *s);
static void on_timer(uv_timer_t *t);
static void request_end(struct hsession *s);

/* ---- life ---- */

static void session_release(struct hsession *s)
{
	if (!svc_session_put(s->d->svc, &s->ss))
		return;
	http_parser_free(&s->req);
	http_parser_free(&s->resp);
	str_free(&s->in);
	free(s->peer);
	free(s->path);
	free(s->user);
	free(s->backend_name);
	free(s);
}

static void timer_closed(uv_handle_t *h)
{
	session_release(h->data);
}

static void hback_free(struct hback *hb)
{
	free(hb->name);
	free(hb->host);
	free(hb);
}

static void tcp_free(uv_handle_t *h)
{
	free(h);
}

/* Lets the backend connection go: it closes on its own, or the libuv
 * callback still to come frees it. */
static void hback_detach(struct hsession *s, bool abort)
{
	struct hback *hb = s->hb;

	if (hb == NULL)
		return;
	s->hb = NULL;
	hb->s = NULL;
	if (hb->conn != NULL) {
		if (abort)
			conn_abort(hb->conn, NULL);
		else
			conn_close(hb->conn, NULL);
	} else if (hb->connecting) {
		uv_close((uv_handle_t *)hb->tcp, tcp_free);
		hb->tcp = NULL;		/* on_connect (ECANCELED) frees hb */
	} else if (!hb->resolving) {
		hback_free(hb);
	}
}

static void timer_idle(struct hsession *s)
{
	uv_timer_start(&s->timer, on_timer, s->d->idle_ms, s->d->idle_ms);
}

/* ---- replies made here ---- */

static const char *reason_of(unsigned status)
{
	switch (status) {
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	}
	return "Error";
}

/* Answers the current request with status and ends it; extra is more
 * header lines (each ending in CRLF) or NULL.  The connection closes
 * unless it may go on (no request body left unread). */
static void reply_error(struct hsession *s, unsigned status,
			const char *extra, bool close)
{
	struct str *out = str_new(512, 4096);
	const char *reason = reason_of(status);

	if (!s->req_done)
		close = true;
	if (s->stop)
		close = true;
	if (close)
		s->keep_alive = false;
	if (!s->keep_alive)
		close = true;
	(void)!str_printf(out, "HTTP/1.1 %u %s\r\nContent-Type: text/plain; "
			  "charset=utf-8\r\nContent-Length: %zu\r\n"
			  "Cache-Control: no-store\r\n%s%s\r\n%s\n", status,
			  reason, strlen(reason) + 1, extra != NULL ? extra : "",
			  close ? "Connection: close\r\n" :
			  (s->rh != NULL && s->rh->minor == 0) ?
				  "Connection: keep-alive\r\n" : "",
			  s->head_req ? "" : reason);
	if (s->head_req)	/* no body after all, length kept */
		str_truncate(out, str_len(out) - strlen(reason) - 1);
	if (s->client != NULL && conn_write(s->client, str_c(out),
					     str_len(out)) == 0)
		s->down += str_len(out);
	str_free(&out);
	s->status = status;
	s->resp_started = true;
	request_end(s);
}

/* ---- the log line and the end of a request ---- */

static void log_request(struct hsession *s)
{
	uint64_t ms = uv_now(svc_loop(s->d->svc)) - s->t0;

	log_info(s->id, "http: client=%s, user=%s, method=%s, path=%.*s%s, "
		 "backend=%s, status=%u, in=%llu, out=%llu, %llums", s->peer,
		 s->user != NULL ? s->user : "-",
		 s->rh != NULL ? s->rh->method : "-", HTTP_PATH_LOG_MAX,
		 s->path != NULL ? s->path : "-",
		 s->path != NULL && strlen(s->path) > HTTP_PATH_LOG_MAX ?
			 "..." : "",
		 s->backend_name != NULL ? s->backend_name : "-", s->status,
		 (unsigned long long)s->up, (unsigned long long)s->down,
		 (unsigned long long)ms);
}

/* The response is complete (or the request ended here): log, then the
 * next request or the close. */
static void request_end(struct hsession *s)
{
	log_request(s);
	if (s->hb != NULL && (!s->hb->reusable || !s->req_done ||
			      !s->resp_head_done))
		hback_detach(s, !s->req_done);
	free(s->path);
	free(s->user);
	free(s->backend_name);
	s->path = s->user = s->backend_name = NULL;
	s->rh = NULL;
	s->basic = s->dav = false;
	s->status = 0;
	s->up = s->down = 0;
	s->resp_head_done = s->resp_started = false;
	http_parser_reset(s->req, false);
	s->state = H_HEAD;
	if (s->client == NULL || s->gone)
		return;
	if (!s->keep_alive) {
		hback_detach(s, false);
		conn_close(s->client, NULL);
		return;
	}
	timer_idle(s);
	pump(s);
}

/* ---- routing ---- */

static void hback_failed(struct hsession *s, const char *why);
static void send_request(struct hsession *s);

static void backend_read(struct conn *c, const char *data, size_t len);
static void backend_close(struct conn *c, const char *reason);
static void backend_drain(struct conn *c);

static const struct conn_ops backend_ops = {
	.on_read = backend_read,
	.on_close = backend_close,
	.on_drain = backend_drain,
};

static void on_connect(uv_connect_t *req, int status)
{
	struct hback *hb = req->data;
	struct hsession *s = hb->s;
	uv_tcp_t *tcp = hb->tcp;

	hb->connecting = false;
	hb->tcp = NULL;
	if (tcp == NULL) {	/* closed by hback_detach */
		hback_free(hb);
		return;
	}
	if (status < 0 || s == NULL) {
		uv_close((uv_handle_t *)tcp, tcp_free);
		if (s != NULL)
			hback_failed(s, uv_strerror(status));
		else
			hback_free(hb);
		return;
	}
	hb->conn = conn_new(svc_loop(s->d->svc), (uv_stream_t *)tcp,
			    &backend_ops, hb, s->id);
	hb->reusable = true;
	send_request(s);
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
			struct addrinfo *res)
{
	struct hback *hb = req->data;
	struct hsession *s = hb->s;
	int r;

	hb->resolving = false;
	if (s == NULL || status < 0 || res == NULL) {
		uv_freeaddrinfo(res);
		if (s == NULL)
			hback_free(hb);
		else
			hback_failed(s, status < 0 ? uv_strerror(status) :
				     "no address");
		return;
	}
	hb->tcp = xcalloc(1, sizeof(*hb->tcp));
	uv_tcp_init(svc_loop(s->d->svc), hb->tcp);
	uv_tcp_nodelay(hb->tcp, 1);
	hb->creq.data = hb;
	r = uv_tcp_connect(&hb->creq, hb->tcp, res->ai_addr, on_connect);
	uv_freeaddrinfo(res);
	hb->connecting = r == 0;
	if (r < 0) {
		uv_close((uv_handle_t *)hb->tcp, tcp_free);
		hb->tcp = NULL;
		hback_failed(s, uv_strerror(r));
	}
}

/* Sends the request to host:port, on the open connection when it is
 * there already. */
static void connect_to(struct hsession *s, const char *host, unsigned port)
{
	struct proxyd *d = s->d;
	struct str *name = str_new(64, 1024);
	struct addrinfo hints;
	struct hback *hb;
	char portstr[8];
	int r;

	(void)!str_printf(name, strchr(host, ':') != NULL ? "[%s]:%u" :
			  "%s:%u", host, port);
	free(s->backend_name);
	s->backend_name = xstrdup(str_c(name));
	str_free(&name);
	if (s->hb != NULL && s->hb->conn != NULL && s->hb->reusable &&
	    strcmp(s->hb->name, s->backend_name) == 0) {
		send_request(s);
		return;
	}
	hback_detach(s, false);
	if (proxyd_backend_is_down(d, s->backend_name)) {
		hback_failed(s, NULL);
		return;
	}
	hb = xcalloc(1, sizeof(*hb));
	hb->s = s;
	hb->name = xstrdup(s->backend_name);
	hb->host = xstrdup(host);
	hb->port = port;
	s->hb = hb;
	s->state = H_CONNECT;
	uv_timer_start(&s->timer, on_timer, d->connect_ms, 0);
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(portstr, sizeof(portstr), "%u", port);
	hb->gai.data = hb;
	hb->resolving = true;
	r = uv_getaddrinfo(svc_loop(d->svc), &hb->gai, on_resolved, hb->host,
			   portstr, &hints);
	if (r < 0) {
		hb->resolving = false;
		hback_failed(s, uv_strerror(r));
	}
}

/* The backend could not be reached (why NULL: it is marked down). */
static void hback_failed(struct hsession *s, const char *why)
{
	struct proxyd *d = s->d;
	char extra[64];

	if (why != NULL) {
		log_warn(s->id, "backend %s: %s", s->backend_name, why);
		proxyd_backend_mark_down(d, s->backend_name);
	}
	hback_detach(s, true);
	snprintf(extra, sizeof(extra), "Retry-After: %llu\r\n",
		 (unsigned long long)(d->retry_ms / 1000 > 0 ?
				      d->retry_ms / 1000 : 1));
	reply_error(s, 503, extra, false);
}

/* Where the default upstream is: proxy_http_upstream or this machine's
 * http-backend. */
static void route_default(struct hsession *s)
{
	struct proxyd *d = s->d;

	if (d->http_upstream_host != NULL)
		connect_to(s, d->http_upstream_host, d->http_upstream_port);
	else
		connect_to(s, d->local_host, d->local_port);
}

/* The http-backend of mail host mailhost (as backend_connect in
 * session.c: proxy_servers first, then this machine or the name). */
static void route_mailhost(struct hsession *s, const char *mailhost)
{
	struct proxyd *d = s->d;
	struct str *host = str_new(64, 1024);
	const char *name = mailhost[0] != '\0' ? mailhost : d->hostname;
	unsigned base, port;

	if (tern_server_find(d->servers, d->nservers, name, host, &base)) {
		port = proxyd_backend_port(d, base);
	} else if (mailhost[0] == '\0' ||
		   strcasecmp(mailhost, "localhost") == 0 ||
		   strcasecmp(mailhost, d->hostname) == 0) {
		str_clear(host);
		(void)!str_append_c(host, d->local_host);
		port = d->local_port;
	} else {
		(void)!str_append_c(host, mailhost);
		port = proxyd_backend_port(d, 0);
	}
	connect_to(s, str_c(host), port);
	str_free(&host);
}

static void auth_done(enum authclient_status st,
		      const struct authclient_account *acct,
		      const char *error, void *ctx)
{
	struct hsession *s = ctx;

	if (s->gone || s->client == NULL) {
		session_release(s);
		return;
	}
	switch (st) {
	case AUTHCLIENT_OK:
		s->user = xstrdup(acct->address);
		route_mailhost(s, acct->mailhost);
		break;
	case AUTHCLIENT_LOCKEDOUT:
		log_info(s->id, "authentication locked out: rip=%s", s->peer);
		reply_error(s, 429, "Retry-After: 60\r\n", false);
		break;
	case AUTHCLIENT_TEMPFAIL:
		log_warn(s->id, "authentication unavailable: %s",
			 error != NULL ? error : "tern-authd");
		reply_error(s, 503, "Retry-After: 5\r\n", false);
		break;
	default:
		log_info(s->id, "authentication failed: rip=%s", s->peer);
		reply_error(s, 401, "WWW-Authenticate: Basic realm=\"Tern\", "
			    "charset=\"UTF-8\"\r\n", false);
		break;
	}
	session_release(s);
}

static void lookup_done(enum authclient_status st,
			const struct authclient_account *acct,
			const char *error, void *ctx)
{
	struct hsession *s = ctx;

	if (s->gone || s->client == NULL) {
		session_release(s);
		return;
	}
	if (st == AUTHCLIENT_OK) {
		route_mailhost(s, acct->mailhost);
	} else if (st == AUTHCLIENT_TEMPFAIL && !s->dav) {
		/* the cookie cannot be checked against the directory */
		free(s->user);
		s->user = NULL;
		route_default(s);
	} else if (st == AUTHCLIENT_TEMPFAIL) {
		log_warn(s->id, "lookup unavailable: %s",
			 error != NULL ? error : "tern-authd");
		reply_error(s, 503, "Retry-After: 5\r\n", false);
	} else {
		if (!s->dav) {	/* the cookie's account is gone */
			free(s->user);
			s->user = NULL;
		}
		route_default(s);	/* no such user: the upstream says so */
	}
	session_release(s);
}

/* Basic credentials: "user:password" in base64; false when malformed. */
static bool basic_decode(const char *b64, struct str *buf, char **user_r,
			 const char **password_r)
{
	char *colon;

	if (base64_decode(b64, strlen(b64), 0, buf) < 0 ||
	    memchr(str_c(buf), '\0', str_len(buf)) != NULL)
		return false;
	colon = strchr(str_data(buf), ':');
	if (colon == NULL || colon == str_c(buf) ||
	    (size_t)(colon - str_c(buf)) > DIR_ADDRESS_MAX ||
	    strlen(colon + 1) == 0 || strlen(colon + 1) > HTTP_PASSWORD_MAX)
		return false;
	*colon = '\0';
	*user_r = str_data(buf);
	*password_r = colon + 1;
	return true;
}

/* TERN_SESSION=ADDRESS|EXPIRY|HMAC: the address when the signature is
 * right and the time not past, else NULL. */
static char *cookie_user(struct hsession *s, const char *value, size_t len)
{
	const char *secret = proxyauth_secret(s->d->pa);
	const char *bar1, *bar2, *end = value + len;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	char hex[2 * EVP_MAX_MD_SIZE + 1];
	unsigned long long expiry = 0;

	if (secret[0] == '\0' || len > DIR_ADDRESS_MAX + 100)
		return NULL;
	bar2 = memrchr(value, '|', len);
	if (bar2 == NULL)
		return NULL;
	bar1 = memrchr(value, '|', (size_t)(bar2 - value));
	if (bar1 == NULL || bar1 == value || bar2 - bar1 < 2 ||
	    bar2 - bar1 > 20 || end - bar2 - 1 != 64)
		return NULL;
	for (const char *c = bar1 + 1; c < bar2; c++) {
		if (*c < '0' || *c > '9')
			return NULL;
		expiry = expiry * 10 + (unsigned long long)(*c - '0');
	}
	if (expiry <= (unsigned long long)time(NULL))
		return NULL;
	if (HMAC(EVP_sha256(), secret, (int)strlen(secret),
		 (const unsigned char *)value, (size_t)(bar2 - value), mac,
		 &maclen) == NULL || maclen != 32)
		return NULL;
	for (unsigned i = 0; i < maclen; i++)
		snprintf(hex + 2 * i, 3, "%02x", mac[i]);
	if (CRYPTO_memcmp(hex, bar2 + 1, 64) != 0)
		return NULL;
	return xstrndup(value, (size_t)(bar1 - value));
}

/* The session cookie among the Cookie fields, verified, or NULL. */
static char *session_cookie(struct hsession *s, const struct http_head *h)
{
	size_t nlen = strlen(HTTP_COOKIE_NAME);

	for (size_t i = 0; i < h->nfields; i++) {
		const char *p = h->fields[i].value;

		if (strcasecmp(h->fields[i].name, "Cookie") != 0)
			continue;
		while (*p != '\0') {
			size_t n = strcspn(p, ";");

			while (*p == ' ' && n > 0) {
				p++;
				n--;
			}
			if (n > nlen && strncmp(p, HTTP_COOKIE_NAME, nlen) ==
			    0 && p[nlen] == '=') {
				const char *v = p + nlen + 1;
				size_t vlen = n - nlen - 1;

				if (vlen >= 2 && v[0] == '"' &&
				    v[vlen - 1] == '"') {
					v++;
					vlen -= 2;
				}
				return cookie_user(s, v, vlen);
			}
			p += n;
			if (*p == ';')
				p++;
		}
	}
	return NULL;
}

/* /dav/USER@DOMAIN/...: the user, %XX decoded, or NULL. */
static char *dav_user(const char *path)
{
	struct str *u;
	const char *p;
	char *r = NULL;

	if (strncmp(path, "/dav/", 5) != 0)
		return NULL;
	u = str_new(64, DIR_ADDRESS_MAX);
	for (p = path + 5; *p != '\0' && *p != '/'; p++) {
		int c = (unsigned char)*p;

		if (c == '%') {
			int hi = str_hex_value((unsigned char)p[1]);
			int lo = hi < 0 ? -1 : str_hex_value((unsigned char)p[2]);

			if (lo < 0 || (hi | lo) == 0)
				goto out;	/* not %XX, or %00 */
			c = hi << 4 | lo;
			p += 2;
		}
		if (str_append_byte(u, (unsigned char)c) < 0)
			goto out;
	}
	if (str_len(u) > 0 && strchr(str_c(u), '@') != NULL)
		r = xstrdup(str_c(u));
out:
	str_free(&u);
	return r;
}

/* Decides where the request goes, maybe after asking tern-authd. */
static void route(struct hsession *s, const struct http_head *h)
{
	const struct http_field *auth = http_head_field(h, "Authorization");
	bool well_known = strncmp(s->path, "/.well-known/caldav", 19) == 0 ||
			  strncmp(s->path, "/.well-known/carddav", 20) == 0;
	char *dav, *user;
	const char *password;

	s->state = H_ROUTE;
	if (auth != NULL && strncasecmp(auth->value, "Basic ", 6) == 0) {
		struct str *buf = str_new(256, DIR_ADDRESS_MAX +
					  HTTP_PASSWORD_MAX + 2);

		s->basic = true;
		if (!basic_decode(auth->value + 6, buf, &user, &password)) {
			OPENSSL_cleanse(str_data(buf), str_len(buf));
			str_free(&buf);
			reply_error(s, 401, "WWW-Authenticate: Basic realm="
				    "\"Tern\", charset=\"UTF-8\"\r\n", false);
			return;
		}
		s->ss.holds++;
		authclient_authenticate(s->d->auth, user, password, "http",
					s->peer, auth_done, s);
		OPENSSL_cleanse(str_data(buf), str_len(buf));
		str_free(&buf);
		return;
	}
	if (!well_known)
		s->user = session_cookie(s, h);
	dav = dav_user(s->path);
	s->dav = dav != NULL;
	if (dav != NULL || s->user != NULL) {
		s->ss.holds++;
		authclient_lookup(s->d->auth, dav != NULL ? dav : s->user,
				  lookup_done, s);
		free(dav);
		return;
	}
	route_default(s);
}

/* ---- the request to the backend ---- */

static bool hop_by_hop(const char *name)
{
	static const char *const names[] = {
		"Connection", "Keep-Alive", "Proxy-Connection", "TE",
		"Upgrade", "Proxy-Authorization", "Proxy-Authenticate",
	};

	for (size_t i = 0; i < TERN_NELEM(names); i++) {
		if (strcasecmp(name, names[i]) == 0)
			return true;
	}
	return false;
}

/* Whether a field goes on: not hop-by-hop, not named in Connection. */
static bool field_passes(const struct http_head *h,
			 const struct http_field *f)
{
	if (hop_by_hop(f->name))
		return false;
	for (size_t i = 0; i < h->nfields; i++) {
		if (strcasecmp(h->fields[i].name, "Connection") == 0 &&
		    http_list_has(h->fields[i].value, h->fields[i].value_len,
				  f->name))
			return false;
	}
	return true;
}

static void build_request(struct hsession *s, struct str *out)
{
	const struct http_head *h = s->rh;
	bool v6 = strchr(s->peer, ':') != NULL;
	const char *proto = s->d->implicit_tls ? "https" : "http";

	(void)!str_printf(out, "%s %s HTTP/1.%u\r\n", h->method, h->target,
			  h->minor);
	for (size_t i = 0; i < h->nfields; i++) {
		const struct http_field *f = &h->fields[i];

		if (!field_passes(h, f) ||
		    strncasecmp(f->name, "X-Tern-", 7) == 0 ||
		    strcasecmp(f->name, "X-Forwarded-For") == 0 ||
		    strcasecmp(f->name, "X-Forwarded-Proto") == 0 ||
		    strcasecmp(f->name, "X-Forwarded-Host") == 0 ||
		    strcasecmp(f->name, "Forwarded") == 0 ||
		    (s->basic && strcasecmp(f->name, "Authorization") == 0))
			continue;
		(void)!str_printf(out, "%s: %s\r\n", f->name, f->value);
	}
	(void)!str_printf(out, "X-Forwarded-For: %s\r\nX-Forwarded-Proto: %s"
			  "\r\nForwarded: for=%s%s%s;proto=%s\r\n", s->peer,
			  proto, v6 ? "\"[" : "", s->peer, v6 ? "]\"" : "",
			  proto);
	if (s->user != NULL)
		(void)!str_printf(out, "X-Tern-User: %s\r\n", s->user);
	(void)!str_append_c(out, "\r\n");
}

static void send_request(struct hsession *s)
{
	struct str *out = str_new(4096, HTTP_REQUEST_HEAD_MAX + 4096);

	s->state = H_FORWARD;
	s->resp_head_done = false;
	s->resp_bytes = 0;
	s->hb->requests++;
	http_parser_reset(s->resp, s->head_req);
	build_request(s, out);
	s->up += str_len(out);
	if (conn_write(s->hb->conn, str_c(out), str_len(out)) < 0) {
		str_free(&out);
		hback_detach(s, true);
		reply_error(s, 502, NULL, true);
		return;
	}
	str_free(&out);
	timer_idle(s);
	pump(s);
}

/* Passes request body bytes from s->in on; false when it must wait. */
static bool forward_body(struct hsession *s)
{
	const char *data = str_c(s->in), *error;
	size_t len = str_len(s->in), n = len;
	int r;

	if (s->req_done)
		return false;
	if (len == 0 || s->hb == NULL || s->hb->conn == NULL)
		return false;
	if (s->req_body == HTTP_BODY_LENGTH) {
		if ((uint64_t)n > s->req_left)
			n = (size_t)s->req_left;
		s->req_left -= n;
		s->req_done = s->req_left == 0;
	} else {
		r = http_chunked_feed(&s->req_ck, data, len, &n, &error);
		if (r < 0) {
			log_info(s->id, "bad request body from %s: %s",
				 s->peer, error);
			hback_detach(s, true);
			if (!s->resp_started)
				reply_error(s, 400, NULL, true);
			else if (s->client != NULL)
				conn_abort(s->client, "bad request body");
			return false;
		}
		s->req_done = r == 1;
	}
	s->up += n;
	if (conn_write(s->hb->conn, data, n) < 0)
		return false;
	str_consume(s->in, n);
	if (conn_pending(s->hb->conn) >= CONN_HIGH_WATER)
		return false;
	return !s->req_done;
}

/* ---- the request head ---- */

static void request_begin(struct hsession *s, const struct http_head *h)
{
	size_t plen = strcspn(h->target, "?");

	s->rh = h;
	s->t0 = uv_now(svc_loop(s->d->svc));
	s->path = xstrndup(h->target, plen);
	s->head_req = strcmp(h->method, "HEAD") == 0;
	s->retried = false;
	s->keep_alive = h->keep_alive && !s->stop;
	s->req_body = h->body;
	s->req_left = h->content_length;
	s->req_done = h->body == HTTP_BODY_NONE;
	http_chunked_init(&s->req_ck);
	if (strcmp(h->method, "CONNECT") == 0) {
		reply_error(s, 405, NULL, true);
		return;
	}
	route(s, h);
}

static void head_error(struct hsession *s, unsigned status,
		       const char *error)
{
	log_info(s->id, "bad request from %s: %s", s->peer, error);
	s->t0 = uv_now(svc_loop(s->d->svc));
	s->req_done = false;	/* nothing after it can be trusted */
	reply_error(s, status, NULL, true);
}

/* Handles what the client sent, as far as the state allows. */
static void pump(struct hsession *s)
{
	if (s->running || s->gone || s->client == NULL || s->count.counting)
		return;
	s->running = true;
	while (s->client != NULL && !s->gone && !conn_closing(s->client)) {
		if (s->state == H_HEAD) {
			const char *start = str_c(s->in), *pos = start;
			const struct http_head *h;
			const char *error;
			unsigned st;
			int r;

			if (str_len(s->in) == 0) {
				if (s->stop) {
					conn_close(s->client, "shutting down");
					break;
				}
				conn_read_start(s->client);
				break;
			}
			r = http_parser_feed(s->req, &pos,
					     start + str_len(s->in), &h, &st,
					     &error);
			str_consume(s->in, (size_t)(pos - start));
			if (r == 0) {
				conn_read_start(s->client);
				break;
			}
			if (r < 0) {
				head_error(s, st, error);
				break;
			}
			request_begin(s, h);
			continue;
		}
		if (s->state == H_FORWARD && forward_body(s))
			continue;
		/* waiting: read on only for a body still to come */
		if (s->state == H_FORWARD && !s->req_done &&
		    (s->hb == NULL || s->hb->conn == NULL ||
		     conn_pending(s->hb->conn) < CONN_HIGH_WATER) &&
		    str_len(s->in) == 0)
			conn_read_start(s->client);
		else
			conn_read_stop(s->client);
		break;
	}
	s->running = false;
}

/* ---- the backend's response ---- */

static void write_client(struct hsession *s, const char *data, size_t len)
{
	if (s->client == NULL || len == 0)
		return;
	if (conn_write(s->client, data, len) == 0)
		s->down += len;
	s->resp_started = true;
	if (s->hb != NULL && s->hb->conn != NULL &&
	    conn_pending(s->client) >= CONN_HIGH_WATER)
		conn_read_stop(s->hb->conn);
}

/* The response head, cleaned, to the client. */
static void response_head(struct hsession *s, const struct http_head *h)
{
	struct str *out = str_new(4096, HTTP_RESPONSE_HEAD_MAX + 4096);
	bool interim = h->status < 200;

	if (!interim) {
		if (h->body == HTTP_BODY_CLOSE || !s->req_done || s->stop)
			s->keep_alive = false;
		s->hb->reusable = h->keep_alive;
		s->status = h->status;
	}
	(void)!str_printf(out, "HTTP/1.1 %u %s\r\n", h->status, h->reason);
	for (size_t i = 0; i < h->nfields; i++) {
		const struct http_field *f = &h->fields[i];

		if (field_passes(h, f))
			(void)!str_printf(out, "%s: %s\r\n", f->name,
					  f->value);
	}
	if (!interim && !s->keep_alive)
		(void)!str_append_c(out, "Connection: close\r\n");
	else if (!interim && s->rh->minor == 0)
		(void)!str_append_c(out, "Connection: keep-alive\r\n");
	(void)!str_append_c(out, "\r\n");
	/* HTTP/1.0 clients get no interim responses */
	if (!interim || s->rh->minor >= 1)
		write_client(s, str_c(out), str_len(out));
	str_free(&out);
}

/* The response from the backend is complete. */
static void response_done(struct hsession *s)
{
	if (s->resp_body == HTTP_BODY_CLOSE)
		s->hb->reusable = false;
	request_end(s);
}

static void backend_error(struct hsession *s, const char *why)
{
	log_warn(s->id, "backend %s: %s", s->backend_name, why);
	hback_detach(s, true);
	if (!s->resp_started)
		reply_error(s, 502, NULL, true);
	else if (s->client != NULL)
		conn_abort(s->client, "backend failed");
}

static void backend_read(struct conn *c, const char *data, size_t len)
{
	struct hback *hb = conn_ctx(c);
	struct hsession *s = hb->s;
	const char *pos = data, *end = data + len, *error;
	bool done = false;
	size_t n;
	int r;

	if (s != NULL && s->hb == hb)
		s->resp_bytes += len;
	if (s == NULL || s->hb != hb || s->state != H_FORWARD) {
		hb->reusable = false;
		if (s != NULL && s->hb == hb)
			hback_detach(s, true);
		else
			conn_abort(c, "unexpected data");
		return;
	}
	uv_timer_again(&s->timer);
	while (pos < end && s->hb == hb && s->state == H_FORWARD) {
		if (!s->resp_head_done) {
			const struct http_head *h;
			unsigned st;

			r = http_parser_feed(s->resp, &pos, end, &h, &st,
					     &error);
			if (r == 0)
				break;
			if (r < 0) {
				backend_error(s, error);
				return;
			}
			if (h->status == 101) {
				backend_error(s, "protocol switch refused");
				return;
			}
			response_head(s, h);
			if (h->status < 200) {
				http_parser_reset(s->resp, s->head_req);
				continue;
			}
			s->resp_head_done = true;
			s->resp_body = h->body;
			s->resp_left = h->content_length;
			http_chunked_init(&s->resp_ck);
			if (h->body == HTTP_BODY_NONE) {
				done = true;
				break;
			}
			continue;
		}
		n = (size_t)(end - pos);
		if (s->resp_body == HTTP_BODY_LENGTH) {
			if ((uint64_t)n > s->resp_left)
				n = (size_t)s->resp_left;
			s->resp_left -= n;
			write_client(s, pos, n);
			pos += n;
			if (s->resp_left == 0) {
				done = true;
				break;
			}
		} else if (s->resp_body == HTTP_BODY_CHUNKED) {
			r = http_chunked_feed(&s->resp_ck, pos, n, &n, &error);
			if (r < 0) {
				backend_error(s, error);
				return;
			}
			write_client(s, pos, n);
			pos += n;
			if (r == 1) {
				done = true;
				break;
			}
		} else {
			write_client(s, pos, n);
			pos = end;
		}
	}
	if (done) {
		/* bytes after a complete response: not a backend to reuse */
		if (pos < end)
			hb->reusable = false;
		response_done(s);
	}
}

static void backend_drain(struct conn *c)
{
	struct hback *hb = conn_ctx(c);

	if (hb->s != NULL && hb->s->hb == hb)
		pump(hb->s);
}

/* Whether a request the backend dropped unanswered may be sent again on a
 * new connection: an idempotent method (RFC 9110 9.2.2) without a body,
 * sent on a kept connection (which the backend may close just as the
 * request comes), once. */
static bool may_retry(const struct hsession *s, const struct hback *hb)
{
	static const char *const methods[] = {
		"GET", "HEAD", "OPTIONS", "DELETE", "TRACE",
	};

	if (s->retried || hb->requests < 2 || s->resp_bytes > 0 ||
	    s->req_body != HTTP_BODY_NONE || s->rh == NULL)
		return false;
	for (size_t i = 0; i < TERN_NELEM(methods); i++) {
		if (strcmp(s->rh->method, methods[i]) == 0)
			return true;
	}
	return false;
}

static void backend_close(struct conn *c, const char *reason)
{
	struct hback *hb = conn_ctx(c);
	struct hsession *s = hb->s;

	hb->conn = NULL;
	if (s != NULL && s->hb == hb) {
		s->hb = NULL;
		hb->s = NULL;
		if (s->state == H_FORWARD && s->resp_head_done &&
		    s->resp_body == HTTP_BODY_CLOSE) {
			s->keep_alive = false;
			request_end(s);
		} else if (s->state == H_FORWARD && may_retry(s, hb)) {
			log_info(s->id, "backend %s closed a kept connection "
				 "unanswered: sending %s again on a new one",
				 s->backend_name, s->rh->method);
			s->retried = true;
			connect_to(s, hb->host, hb->port);
		} else if (s->state == H_FORWARD) {
			log_warn(s->id, "backend %s closed: %s",
				 s->backend_name,
				 reason != NULL ? reason : "early");
			if (!s->resp_started)
				reply_error(s, 502, NULL, true);
			else if (s->client != NULL)
				conn_abort(s->client, "backend closed");
		}
	}
	hback_free(hb);
}

/* ---- the client connection ---- */

static void client_read(struct conn *c, const char *data, size_t len)
{
	struct hsession *s = conn_ctx(c);

	uv_timer_again(&s->timer);
	if (str_append(s->in, data, len) < 0) {
		conn_abort(c, "input overflow");
		return;
	}
	if (str_len(s->in) >= HTTP_REQUEST_HEAD_MAX)
		conn_read_stop(c);
	pump(s);
}

static void client_drain(struct conn *c)
{
	struct hsession *s = conn_ctx(c);

	if (s->hb != NULL && s->hb->conn != NULL && s->state == H_FORWARD)
		conn_read_start(s->hb->conn);
}

static void client_close(struct conn *c, const char *reason)
{
	struct hsession *s = conn_ctx(c);

	if (s->state != H_HEAD && s->rh != NULL)
		log_request(s);
	log_info(s->id, "disconnect from %s%s%s", s->peer,
		 reason != NULL ? ": " : "", reason != NULL ? reason : "");
	proxyd_client_end(s->d, s->peer, &s->count);
	s->gone = true;
	s->client = NULL;
	hback_detach(s, true);
	uv_close((uv_handle_t *)&s->timer, timer_closed);
	session_release(s);
}

static void on_timer(uv_timer_t *t)
{
	struct hsession *s = t->data;

	uv_timer_stop(t);
	switch (s->state) {
	case H_HEAD:
		conn_close(s->client, "idle timeout");
		break;
	case H_ROUTE:
		break;	/* authclient has its own timeout */
	case H_CONNECT:
		hback_failed(s, "timeout");
		break;
	case H_FORWARD:
		if (!s->resp_started) {
			log_warn(s->id, "backend %s: no response",
				 s->backend_name);
			hback_detach(s, true);
			reply_error(s, 504, NULL, true);
		} else {
			hback_detach(s, true);
			conn_abort(s->client, "idle timeout");
		}
		break;
	}
}

static const struct conn_ops client_ops = {
	.on_read = client_read,
	.on_close = client_close,
	.on_drain = client_drain,
};

static void conn_counted(enum authclient_status st, unsigned int count,
			 unsigned int rate, const char *error, void *ctx)
{
	struct hsession *s = ctx;
	unsigned limit = s->d->client_max;
	static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\n"
				   "Content-Length: 0\r\nRetry-After: 10\r\n"
				   "Connection: close\r\n\r\n";

	(void)rate;
	s->count.counting = false;
	if (s->gone || s->client == NULL) {
		session_release(s);
		return;
	}
	if (st == AUTHCLIENT_OK && limit > 0 && count > limit) {
		log_info(s->id, "reject: too many connections from %s (%u, "
			 "limit %u)", s->peer, count, limit);
		(void)conn_write(s->client, busy, sizeof(busy) - 1);
		conn_close(s->client, "too many connections");
	} else {
		if (st != AUTHCLIENT_OK)
			log_warn(s->id, "connection count: %s",
				 error != NULL ? error : "unavailable");
		pump(s);
	}
	session_release(s);
}

void hsession_accept(struct proxyd *d, uv_stream_t *client)
{
	struct hsession *s = xcalloc(1, sizeof(*s));

	s->d = d;
	svc_new_id(s->id);
	s->req = http_parser_new(HTTP_REQUEST, HTTP_REQUEST_HEAD_MAX,
				 d->http_fields_max);
	s->resp = http_parser_new(HTTP_RESPONSE, HTTP_RESPONSE_HEAD_MAX,
				  d->http_fields_max);
	s->in = str_new(4096, HTTP_INPUT_MAX);
	s->client = conn_new(svc_loop(d->svc), client, &client_ops, s, s->id);
	s->peer = xstrdup(conn_peer_address(s->client));
	s->keep_alive = true;
	uv_timer_init(svc_loop(d->svc), &s->timer);
	s->timer.data = s;
	timer_idle(s);
	svc_session_add(d->svc, &s->ss, 2);	/* the conn and the timer */
	log_info(s->id, "connect from %s%s", s->peer,
		 d->implicit_tls ? " (TLS)" : "");
	(void)proxyd_client_start(d, s->client, &s->ss, s->id, s->peer,
				  &s->count, conn_counted, s);
}

void hsessions_stop(struct proxyd *d)
{
	for (struct svc_session *ss = svc_session_first(d->svc); ss != NULL;
	     ss = ss->next) {
		struct hsession *s = (struct hsession *)ss;

		if (s->gone || s->client == NULL)
			continue;
		s->stop = true;
		s->keep_alive = false;
		if (s->state == H_HEAD && str_len(s->in) == 0 && !s->running)
			conn_close(s->client, "shutting down");
	}
}
