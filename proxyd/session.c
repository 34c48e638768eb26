/*
 * session.c: one client of tern-proxyd, from the greeting to the end of
 * the relay (proxyd.h).
 *
 * States: PS_PREAUTH (commands handled here), PS_AUTHD (the password is
 * with tern-authd), PS_BACKEND (resolving, connecting and logging into
 * the mailbox server, under proxy_connect_timeout), PS_RELAY (bytes both
 * ways).  While a state waits, nothing more is read from the client.  In
 * the relay each side stops reading while the other side's output queue
 * is above CONN_HIGH_WATER, so a slow reader never makes the proxy buffer
 * more than that per direction.
 *
 * Logs: "connect from", "login: user=<...>, backend=..., rip=...", and at
 * the end one line with user, client, backend, bytes each way and the
 * duration.  Limits: imap_line_limit / pop3_line_limit per command line,
 * SESSION_AUTH_FAILURES_MAX failed logins and SESSION_ERRORS_MAX bad
 * commands per connection, proxy_user_connections_max relayed
 * connections per user and process, proxy_client_connection_limit
 * connections per client address and service (counted by tern-authd; the
 * greeting waits for the count).
 *
 * Routes: tern-authd's answer to the password check carries the mail
 * host.  With a route cache, the cached route is read next: a miss or a
 * route that differs from the directory's is replaced by the directory's
 * (which always decides: a mailbox server refuses users homed elsewhere);
 * memcached down or slow only skips the cache.
 */
#include "config.h"

#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/crypto.h>

#include "compat.h"
#include "authclient.h"
#include "base64.h"
#include "conn.h"
#include "dir.h"
#include "imapcmd.h"
#include "imapparse.h"
#include "linereader.h"
#include "log.h"
#include "memcache.h"
#include "pop3proto.h"
#include "proxyauth.h"
#include "proxyd.h"
#include "services.h"
#include "str.h"
#include "svc.h"
#include "xalloc.h"

#define SESSION_AUTH_FAILURES_MAX 3
#define SESSION_ERRORS_MAX 20
#define INPUT_MAX (4 * CONN_READ_SIZE)
#define BACKEND_LINE_MAX 8192
#define PASSWORD_MAX 4096
#define SASL_MAX 8192

enum pstate {
	PS_PREAUTH,
	PS_AUTHD,
	PS_BACKEND,
	PS_RELAY,
};

enum bstep {
	B_GREETING,	/* waiting for the backend's greeting */
	B_LOGIN,	/* the proxy login was sent */
};

struct psession {
	struct svc_session ss;	/* first: the skeleton's list and holds */
	struct proxyd *d;
	struct conn *client;
	struct conn *backend;
	char id[16];
	char *peer;
	enum pstate state;
	struct imap_parser *ip;		/* IMAP before login */
	struct pop3_parser *pp;		/* POP3 before login */
	struct str *in;			/* client input not yet taken */
	struct str *out;		/* replies to the client */
	char *tag;			/* IMAP: the login command's tag */
	char *mech;			/* SASL mechanism waiting, or NULL */
	char *sasl_user;		/* AUTHENTICATE LOGIN, POP3 USER */
	char *user;			/* the authenticated address */
	char *dir_host;			/* the directory's mail host */
	struct str *route_key;		/* memcache_route_key(user) */
	char *backend_name;		/* "host:port" */
	char *backend_host;
	char *backend_peer;		/* its name for the TLS check */
	unsigned backend_port;
	struct linereader *blr;		/* backend lines before the relay */
	enum bstep bstep;
	uv_timer_t timer;
	uv_getaddrinfo_t gai;
	uv_connect_t creq;
	uv_tcp_t *tcp;			/* connecting, before conn_new */
	bool resolving;			/* gai in flight */
	unsigned auth_failures, errors;
	uint64_t started;
	uint64_t up, down;		/* bytes client->backend, back */
	bool tls;
	bool gone;
	bool running;
	bool stop;
	bool quitting;			/* LOGOUT / QUIT answered */
	struct proxy_count count;	/* the greeting waits for it */
};

static void session_run(struct psession *s);
static void on_timer(uv_timer_t *t);

/* Forgets secrets held in a buffer. */
static void wipe(struct str *buf)
{
	OPENSSL_cleanse(str_data(buf), str_len(buf));
	str_clear(buf);
}

/* ---- life ---- */

static void session_release(struct psession *s)
{
	if (!svc_session_put(s->d->svc, &s->ss))
		return;
	imap_parser_free(&s->ip);
	pop3_parser_free(&s->pp);
	linereader_free(&s->blr);
	str_free(&s->in);
	str_free(&s->out);
	free(s->peer);
	free(s->tag);
	free(s->mech);
	free(s->sasl_user);
	free(s->user);
	free(s->dir_host);
	str_free(&s->route_key);
	free(s->backend_name);
	free(s->backend_host);
	free(s->backend_peer);
	free(s);
}

static void timer_closed(uv_handle_t *h)
{
	session_release(h->data);
}

static void flush(struct psession *s)
{
	if (s->client == NULL || str_len(s->out) == 0)
		return;
	if (conn_write(s->client, str_c(s->out), str_len(s->out)) < 0)
		conn_abort(s->client, "write failed");
	str_clear(s->out);
}

static void reply(struct psession *s, const char *fmt, ...)
	TERN_PRINTF(2, 3);

static void reply(struct psession *s, const char *fmt, ...)
{
	size_t start = str_len(s->out);
	va_list ap;

	if (s->client == NULL)
		return;
	va_start(ap, fmt);
	if (str_vprintf(s->out, fmt, ap) < 0 ||
	    str_append(s->out, "\r\n", 2) < 0)
		str_truncate(s->out, start);
	va_end(ap);
}

static void close_client(struct psession *s, const char *reason)
{
	flush(s);
	if (s->client != NULL)
		conn_close(s->client, reason);
}

static bool login_allowed(const struct psession *s)
{
	return svc_plaintext_allowed(s->d->plaintext, s->tls, s->peer);
}

/* ---- backend down marks ---- */

bool proxyd_backend_is_down(struct proxyd *d, const char *key)
{
	uint64_t now = uv_now(svc_loop(d->svc));

	for (struct backend_down **p = &d->down; *p != NULL;) {
		struct backend_down *b = *p;

		if (b->until <= now) {
			*p = b->next;
			free(b->key);
			free(b);
			continue;
		}
		if (strcmp(b->key, key) == 0)
			return true;
		p = &b->next;
	}
	return false;
}

void proxyd_backend_mark_down(struct proxyd *d, const char *key)
{
	struct backend_down *b;

	if (d->retry_ms == 0 || proxyd_backend_is_down(d, key))
		return;
	b = xcalloc(1, sizeof(*b));
	b->key = xstrdup(key);
	b->until = uv_now(svc_loop(d->svc)) + d->retry_ms;
	b->next = d->down;
	d->down = b;
}

/* ---- the end of a login attempt ---- */

/* Back to the commands, after a refused login or an unreachable server. */
static void login_over(struct psession *s)
{
	s->state = PS_PREAUTH;
	free(s->user);
	s->user = NULL;
	free(s->tag);
	s->tag = NULL;
	if (!s->gone)
		uv_timer_start(&s->timer, on_timer, s->d->login_ms,
			       s->d->login_ms);
	if (s->client != NULL && !s->gone)
		session_run(s);
}

static void auth_failed(struct psession *s, const char *imap_text,
			const char *pop3_text)
{
	if (s->d->proto == PROXY_IMAP)
		reply(s, "%s NO %s", s->tag != NULL ? s->tag : "*", imap_text);
	else
		reply(s, "-ERR %s", pop3_text);
	if (++s->auth_failures >= SESSION_AUTH_FAILURES_MAX) {
		if (s->d->proto == PROXY_IMAP)
			reply(s, "* BYE Too many failed logins");
		close_client(s, "too many failed logins");
	}
}

static void backend_drop(struct psession *s)
{
	if (s->backend != NULL) {
		conn_abort(s->backend, "login failed");
		s->backend = NULL;
	}
	linereader_free(&s->blr);
}

/* The mailbox server failed us: tell the client to come back later. */
static void backend_failed(struct psession *s, const char *why)
{
	log_warn(s->id, "backend %s for user=<%s>: %s", s->backend_name,
		 s->user != NULL ? s->user : "", why);
	proxyd_backend_mark_down(s->d, s->backend_name);
	backend_drop(s);
	if (s->d->proto == PROXY_IMAP)
		reply(s, "%s NO [UNAVAILABLE] Mailbox server unavailable, "
		      "try again later", s->tag != NULL ? s->tag : "*");
	else
		reply(s, "-ERR [SYS/TEMP] Mailbox server unavailable, try "
		      "again later");
	flush(s);
	login_over(s);
}

/* ---- relay ---- */

static void relay_start(struct psession *s, const char *rest, size_t len)
{
	struct proxyd *d = s->d;

	s->state = PS_RELAY;
	linereader_free(&s->blr);
	log_info(s->id, "login: user=<%s>, backend=%s, rip=%s%s", s->user,
		 s->backend_name, s->peer, s->tls ? ", TLS" : "");
	flush(s);
	if (len > 0 && conn_write(s->client, rest, len) == 0)
		s->down += len;
	/* What the client sent after its login command goes on. */
	if (str_len(s->in) > 0) {
		s->up += str_len(s->in);
		if (conn_write(s->backend, str_c(s->in), str_len(s->in)) < 0)
			conn_abort(s->backend, "write failed");
		str_clear(s->in);
	}
	uv_timer_start(&s->timer, on_timer, d->idle_ms, d->idle_ms);
	conn_read_start(s->client);
}

/* ---- the backend connection ---- */

/* One line of the backend during the proxy login. */
static void backend_line(struct psession *s, const char *line, size_t len,
			 const char **pos, const char *end)
{
	struct proxyd *d = s->d;
	struct str *msg, *b64;

	if (s->bstep == B_GREETING) {
		if (d->proto == PROXY_IMAP ? len < 4 ||
			    strncasecmp(line, "* OK", 4) != 0 :
			    len < 3 || strncmp(line, "+OK", 3) != 0) {
			backend_failed(s, "no greeting");
			return;
		}
		msg = str_new(256, 4096);
		b64 = str_new(256, 4096);
		(void)!str_printf(msg, "%s%c%s%c%s", s->user, 0,
				  proxyauth_user(d->pa), 0,
				  proxyauth_secret(d->pa));
		(void)!base64_encode(str_c(msg), str_len(msg), b64);
		wipe(msg);
		if (d->proto == PROXY_IMAP)
			(void)!str_printf(msg, "P1 ID (\"x-originating-ip\" "
					  "\"%s\")\r\nP2 AUTHENTICATE PLAIN "
					  "%s\r\n", s->peer, str_c(b64));
		else
			(void)!str_printf(msg, "AUTH PLAIN %s\r\n",
					  str_c(b64));
		if (conn_write(s->backend, str_c(msg), str_len(msg)) < 0) {
			str_free(&msg);
			str_free(&b64);
			backend_failed(s, "write failed");
			return;
		}
		wipe(msg);
		wipe(b64);
		str_free(&msg);
		str_free(&b64);
		s->bstep = B_LOGIN;
		return;
	}
	if (d->proto == PROXY_POP3) {
		if (len >= 3 && strncmp(line, "+OK", 3) == 0) {
			reply(s, "%.*s", (int)len, line);
			relay_start(s, *pos, (size_t)(end - *pos));
			*pos = end;
		} else {
			backend_failed(s, "proxy login refused");
		}
		return;
	}
	/* IMAP: the ID answer passes; P2's answer decides. */
	if (len >= 6 && strncmp(line, "P2 OK ", 6) == 0) {
		reply(s, "%s OK %.*s", s->tag, (int)(len - 6), line + 6);
		relay_start(s, *pos, (size_t)(end - *pos));
		*pos = end;
	} else if (len >= 3 && strncmp(line, "P2 ", 3) == 0) {
		backend_failed(s, "proxy login refused");
	} else if (len >= 1 && line[0] == '+') {
		backend_failed(s, "unexpected continuation");
	}
}

static void backend_read(struct conn *c, const char *data, size_t len)
{
	struct psession *s = conn_ctx(c);
	const char *pos = data, *end = data + len;
	struct linereader_line line;
	int r;

	if (s->state == PS_RELAY) {
		s->down += len;
		uv_timer_again(&s->timer);
		if (s->client == NULL || conn_write(s->client, data, len) < 0)
			return;
		if (conn_pending(s->client) >= CONN_HIGH_WATER)
			conn_read_stop(c);
		return;
	}
	while (s->state == PS_BACKEND && s->blr != NULL && pos < end) {
		r = linereader_feed(s->blr, &pos, end, &line);
		if (r == LINEREADER_MORE)
			break;
		if (r == LINEREADER_TOO_LONG) {
			backend_failed(s, "line too long");
			return;
		}
		if (r == LINEREADER_LINE)
			backend_line(s, line.data, line.len, &pos, end);
	}
}

static void backend_drain(struct conn *c)
{
	struct psession *s = conn_ctx(c);

	if (s->state == PS_RELAY && s->client != NULL)
		conn_read_start(s->client);
}

static void backend_close(struct conn *c, const char *reason)
{
	struct psession *s = conn_ctx(c);

	if (s->backend == c) {
		s->backend = NULL;
		if (s->state == PS_RELAY) {
			close_client(s, "backend closed");
		} else if (s->state == PS_BACKEND) {
			backend_failed(s, reason != NULL ? reason :
				       "connection closed");
		}
	}
	session_release(s);
}

static const struct conn_ops backend_ops = {
	.on_read = backend_read,
	.on_close = backend_close,
	.on_drain = backend_drain,
};

static void tcp_free(uv_handle_t *h)
{
	struct psession *s = h->data;

	free(h);
	session_release(s);
}

static void on_connect(uv_connect_t *req, int status)
{
	struct psession *s = req->data;
	uv_tcp_t *tcp = s->tcp;
	const char *error;

	s->tcp = NULL;
	if (status < 0 || s->gone || s->state != PS_BACKEND) {
		uv_close((uv_handle_t *)tcp, tcp_free);	/* takes the hold */
		if (!s->gone && s->state == PS_BACKEND)
			backend_failed(s, uv_strerror(status));
		return;
	}
	tcp->data = NULL;
	s->backend = conn_new(svc_loop(s->d->svc), (uv_stream_t *)tcp,
			      &backend_ops, s, s->id);
	/* The hold of the connect request now belongs to the conn. */
	s->blr = linereader_new(BACKEND_LINE_MAX);
	s->bstep = B_GREETING;
	if (s->d->backend_tls != NULL &&
	    conn_start_tls(s->backend, s->d->backend_tls, s->backend_peer,
			   &error) < 0)
		conn_abort(s->backend, error);
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
			struct addrinfo *res)
{
	struct psession *s = req->data;
	int r;

	s->resolving = false;
	if (s->gone || s->state != PS_BACKEND) {
		uv_freeaddrinfo(res);
		session_release(s);
		return;
	}
	if (status < 0 || res == NULL) {
		uv_freeaddrinfo(res);
		backend_failed(s, status < 0 ? uv_strerror(status) :
			       "no address");
		session_release(s);
		return;
	}
	s->tcp = xcalloc(1, sizeof(*s->tcp));
	uv_tcp_init(svc_loop(s->d->svc), s->tcp);
	s->tcp->data = s;
	uv_tcp_nodelay(s->tcp, 1);
	s->creq.data = s;
	r = uv_tcp_connect(&s->creq, s->tcp, res->ai_addr, on_connect);
	uv_freeaddrinfo(res);
	if (r < 0) {
		uv_close((uv_handle_t *)s->tcp, tcp_free);
		s->tcp = NULL;
		backend_failed(s, uv_strerror(r));
		return;	/* tcp_free drops the hold */
	}
	/* The hold goes on with the connect request. */
}

/* "NAME=ADDRESS[:PORT_BASE]" of proxy_servers: the address and port of
 * mail host name, or false. */
static bool route_listed(struct psession *s, const char *name,
			 struct str *host, unsigned *port_r)
{
	unsigned base;

	if (!tern_server_find(s->d->servers, s->d->nservers, name, host,
			      &base))
		return false;
	*port_r = proxyd_backend_port(s->d, base);
	return true;
}

static void backend_connect(struct psession *s, const char *mailhost)
{
	struct proxyd *d = s->d;
	struct str *host = str_new(64, 1024);
	struct addrinfo hints;
	char port[8];
	int r;

	if (mailhost[0] == '\0' || strcasecmp(mailhost, "localhost") == 0 ||
	    strcasecmp(mailhost, d->hostname) == 0) {
		if (!route_listed(s, mailhost[0] != '\0' ? mailhost :
				  d->hostname, host, &s->backend_port)) {
			str_clear(host);
			(void)!str_append_c(host, d->local_host);
			s->backend_port = d->local_port;
		}
	} else if (!route_listed(s, mailhost, host, &s->backend_port)) {
		(void)!str_append_c(host, mailhost);
		s->backend_port = proxyd_backend_port(d, 0);
	}
	free(s->backend_host);
	free(s->backend_name);
	free(s->backend_peer);
	s->backend_peer = xstrdup(mailhost[0] != '\0' ? mailhost :
				  d->hostname);
	s->backend_host = xstrdup(str_c(host));
	str_clear(host);
	(void)!str_printf(host, strchr(s->backend_host, ':') != NULL ?
			  "[%s]:%u" : "%s:%u", s->backend_host,
			  s->backend_port);
	s->backend_name = xstrdup(str_c(host));
	str_free(&host);
	s->state = PS_BACKEND;
	if (proxyd_backend_is_down(d, s->backend_name)) {
		backend_failed(s, "marked down, not tried");
		return;
	}
	if (s->resolving || s->tcp != NULL || s->backend != NULL) {
		/* An earlier attempt has not ended yet. */
		backend_failed(s, "previous attempt still running");
		return;
	}
	uv_timer_start(&s->timer, on_timer, d->connect_ms, 0);
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%u", s->backend_port);
	s->gai.data = s;
	s->ss.holds++;
	s->resolving = true;
	r = uv_getaddrinfo(svc_loop(d->svc), &s->gai, on_resolved,
			   s->backend_host, port, &hints);
	if (r < 0) {
		s->ss.holds--;
		s->resolving = false;
		backend_failed(s, uv_strerror(r));
	}
}

/* ---- the route cache ---- */

static void route_stored(enum memcache_result r, const char *value,
			 size_t len, void *ctx)
{
	(void)value;
	(void)len;
	(void)ctx;
	if (r != MEMCACHE_STORED)
		log_msg(LOGL_DEBUG, NULL, "route cache: set: %s",
			memcache_result_name(r));
}

static void route_store(struct psession *s)
{
	struct proxyd *d = s->d;

	if (d->mc == NULL)
		return;
	if (memcache_route_value_valid(s->dir_host, strlen(s->dir_host)))
		memcache_set(d->mc, str_c(s->route_key), s->dir_host,
			     strlen(s->dir_host), d->route_ttl_s,
			     route_stored, NULL);
	else	/* no mail host: this machine, nothing to cache */
		memcache_delete(d->mc, str_c(s->route_key), route_stored,
				NULL);
}

static void route_cached(enum memcache_result r, const char *value,
			 size_t len, void *ctx)
{
	struct psession *s = ctx;

	if (s->gone || s->state != PS_AUTHD) {
		session_release(s);
		return;
	}
	if (r == MEMCACHE_HIT && memcache_route_value_valid(value, len) &&
	    strcasecmp(value, s->dir_host) == 0) {
		log_info(s->id, "route: user=<%s>, mailhost=%s, from cache",
			 s->user, value);
	} else if (r == MEMCACHE_HIT) {
		/* The directory has just answered: it is the newer word. */
		log_info(s->id, "route: user=<%s>: cached mail host differs "
			 "from the directory's (%s): cache updated", s->user,
			 s->dir_host[0] != '\0' ? s->dir_host : "this server");
		route_store(s);
	} else if (r == MEMCACHE_MISS) {
		if (s->dir_host[0] != '\0')
			route_store(s);
	} else {
		/* A failed server is left alone until it answers again. */
		log_msg(LOGL_DEBUG, s->id, "route cache: %s",
			memcache_result_name(r));
	}
	backend_connect(s, s->dir_host);
	flush(s);
	session_release(s);
}

/* Reads the cached route (when there is a cache), then connects to the
 * directory's mail host. */
static void route(struct psession *s, const char *dir_host)
{
	struct proxyd *d = s->d;

	if (d->mc == NULL) {
		backend_connect(s, dir_host);
		return;
	}
	if (s->route_key == NULL)
		s->route_key = str_new(80, 128);
	if (memcache_route_key(s->user, s->route_key) < 0) {
		backend_connect(s, dir_host);
		return;
	}
	free(s->dir_host);
	s->dir_host = xstrdup(dir_host);
	s->ss.holds++;
	memcache_get(d->mc, str_c(s->route_key), route_cached, s);
}

/* ---- login ---- */

static unsigned user_connections(struct proxyd *d, const char *user)
{
	unsigned n = 0;

	for (struct svc_session *ss = svc_session_first(d->svc); ss != NULL;
	     ss = ss->next) {
		const struct psession *o = (const struct psession *)ss;

		if (!o->gone && o->state == PS_RELAY && o->user != NULL &&
		    strcmp(o->user, user) == 0)
			n++;
	}
	return n;
}

static void auth_done(enum authclient_status st,
		      const struct authclient_account *acct,
		      const char *error, void *ctx)
{
	struct psession *s = ctx;

	if (s->gone) {
		session_release(s);
		return;
	}
	switch (st) {
	case AUTHCLIENT_OK:
		if (user_connections(s->d, acct->address) >= s->d->user_max) {
			log_info(s->id, "login refused: user=<%s>: too many "
				 "connections", acct->address);
			auth_failed(s, "[LIMIT] Too many connections for this "
				    "user", "[IN-USE] Too many connections "
				    "for this user");
			login_over(s);
			break;
		}
		s->user = xstrdup(acct->address);
		route(s, acct->mailhost);
		break;
	case AUTHCLIENT_AUTHFAIL:
	case AUTHCLIENT_NOTFOUND:
	case AUTHCLIENT_INVALID:
		log_info(s->id, "authentication failed: rip=%s", s->peer);
		auth_failed(s, "[AUTHENTICATIONFAILED] Authentication failed",
			    "[AUTH] Authentication failed");
		login_over(s);
		break;
	case AUTHCLIENT_REFUSED:
		auth_failed(s, "[CONTACTADMIN] Account not available",
			    "[SYS/PERM] Account not available");
		login_over(s);
		break;
	case AUTHCLIENT_LOCKEDOUT:
		auth_failed(s, "[UNAVAILABLE] Too many failed logins from "
			    "your address, try again later",
			    "[AUTH] Too many failed logins from your "
			    "address, try again later");
		login_over(s);
		break;
	case AUTHCLIENT_TEMPFAIL:
		log_warn(s->id, "authentication unavailable: %s",
			 error != NULL ? error : "tern-authd");
		auth_failed(s, "[UNAVAILABLE] Authentication unavailable, "
			    "try again later", "[SYS/TEMP] Authentication "
			    "unavailable, try again later");
		login_over(s);
		break;
	}
	flush(s);
	session_release(s);
}

static void login(struct psession *s, const char *user, const char *password)
{
	if (strlen(user) > DIR_ADDRESS_MAX || strlen(password) > PASSWORD_MAX ||
	    user[0] == '\0' || password[0] == '\0') {
		auth_failed(s, "[AUTHENTICATIONFAILED] Authentication failed",
			    "[AUTH] Authentication failed");
		return;
	}
	s->state = PS_AUTHD;
	s->ss.holds++;
	authclient_authenticate(s->d->auth, user, password,
				s->d->proto == PROXY_IMAP ? "imap" : "pop3",
				s->peer, auth_done, s);
}

/* A SASL PLAIN response (base64): a login, or a refusal. */
static void sasl_plain(struct psession *s, const char *b64, size_t len)
{
	struct str *buf = str_new(256, SASL_MAX + 1);
	const char *authz, *authc, *password;

	if (sasl_plain_decode(b64, len, SASL_MAX, buf, &authz, &authc,
			      &password) < 0) {
		auth_failed(s, "[AUTHENTICATIONFAILED] Invalid SASL response",
			    "[AUTH] Invalid AUTH PLAIN response");
	} else if (authz[0] != '\0' && strcmp(authz, authc) != 0) {
		auth_failed(s, "[AUTHORIZATIONFAILED] Authorization identity "
			    "not allowed", "[AUTH] Authorization identity "
			    "not allowed");
	} else {
		login(s, authc, password);
	}
	wipe(buf);
	str_free(&buf);
}

static char *sasl_text(const char *b64, size_t len)
{
	struct str *buf = str_new(256, SASL_MAX + 1);
	char *r = NULL;

	if (base64_decode(b64, len, BASE64_STRICT, buf) == 0 &&
	    memchr(str_c(buf), '\0', str_len(buf)) == NULL)
		r = xstrdup(str_c(buf));
	wipe(buf);
	str_free(&buf);
	return r;
}

/* ---- STARTTLS / STLS ---- */

static bool start_tls(struct psession *s)
{
	const char *error;

	flush(s);
	if (conn_start_tls(s->client, s->d->tls, NULL, &error) < 0) {
		log_warn(s->id, "STARTTLS: %s", error);
		conn_abort(s->client, "STARTTLS failed");
		return false;
	}
	s->tls = true;
	if (s->ip != NULL)
		imap_parser_reset(s->ip);
	if (s->pp != NULL)
		pop3_parser_reset(s->pp);
	free(s->sasl_user);
	s->sasl_user = NULL;
	return true;
}

/* ---- IMAP before login ---- */

static void imap_caps(struct psession *s, struct str *out)
{
	(void)!str_append_c(out, "IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID "
			    "ENABLE IDLE");
	if (!s->tls && s->d->tls != NULL)
		(void)!str_append_c(out, " STARTTLS");
	(void)!str_append_c(out, login_allowed(s) ?
			    " AUTH=PLAIN AUTH=LOGIN" : " LOGINDISABLED");
}

static void imap_bad(struct psession *s, const char *tag, const char *kind,
		     const char *text)
{
	reply(s, "%s %s %s", tag, kind, text);
	if (++s->errors >= SESSION_ERRORS_MAX) {
		reply(s, "* BYE Too many errors");
		close_client(s, "too many errors");
	}
}

/* Returns true when the rest of the input must be dropped (STARTTLS). */
static bool imap_command(struct psession *s, struct imap_cmd *cmd)
{
	const char *error;
	struct str *caps;

	if (strcmp(cmd->name, "CAPABILITY") == 0) {
		caps = str_new(256, 1024);
		imap_caps(s, caps);
		reply(s, "* CAPABILITY %s", str_c(caps));
		reply(s, "%s OK CAPABILITY completed", cmd->tag);
		str_free(&caps);
	} else if (strcmp(cmd->name, "NOOP") == 0) {
		reply(s, "%s OK NOOP completed", cmd->tag);
	} else if (strcmp(cmd->name, "LOGOUT") == 0) {
		reply(s, "* BYE Logging out");
		reply(s, "%s OK LOGOUT completed", cmd->tag);
		s->quitting = true;
		close_client(s, NULL);
	} else if (strcmp(cmd->name, "ID") == 0) {
		reply(s, "* ID (\"name\" \"Tern\" \"vendor\" \"Tern\")");
		reply(s, "%s OK ID completed", cmd->tag);
	} else if (strcmp(cmd->name, "STARTTLS") == 0) {
		if (s->tls || s->d->tls == NULL) {
			imap_bad(s, cmd->tag, "BAD", s->tls ?
				 "TLS is already active" :
				 "TLS is not available");
		} else {
			reply(s, "%s OK Begin TLS negotiation now", cmd->tag);
			return start_tls(s);
		}
	} else if (strcmp(cmd->name, "LOGIN") == 0) {
		const struct imap_login *l;

		if (imap_cmd_login(cmd, &l, &error) < 0) {
			imap_bad(s, cmd->tag, "BAD", error);
		} else if (!login_allowed(s)) {
			imap_bad(s, cmd->tag, "NO", "[PRIVACYREQUIRED] "
				 "Plaintext authentication disallowed on "
				 "non-secure connections, use STARTTLS");
		} else {
			free(s->tag);
			s->tag = xstrdup(cmd->tag);
			login(s, l->user, l->password);
		}
	} else if (strcmp(cmd->name, "AUTHENTICATE") == 0) {
		const struct imap_authenticate *a;

		if (imap_cmd_authenticate(cmd, &a, &error) < 0) {
			imap_bad(s, cmd->tag, "BAD", error);
		} else if (strcmp(a->mechanism, "PLAIN") != 0 &&
			   strcmp(a->mechanism, "LOGIN") != 0) {
			imap_bad(s, cmd->tag, "NO", "Unsupported "
				 "authentication mechanism");
		} else if (!login_allowed(s)) {
			imap_bad(s, cmd->tag, "NO", "[PRIVACYREQUIRED] "
				 "Plaintext authentication disallowed on "
				 "non-secure connections, use STARTTLS");
		} else {
			free(s->tag);
			s->tag = xstrdup(cmd->tag);
			if (strcmp(a->mechanism, "PLAIN") == 0 && a->has_ir) {
				sasl_plain(s, a->ir, strlen(a->ir));
			} else if (strcmp(a->mechanism, "PLAIN") == 0) {
				s->mech = xstrdup("PLAIN");
				reply(s, "+ ");
			} else if (a->has_ir &&
				   (s->sasl_user = sasl_text(
					    a->ir, strlen(a->ir))) != NULL) {
				s->mech = xstrdup("LOGIN");
				reply(s, "+ UGFzc3dvcmQ6");
			} else if (a->has_ir) {
				imap_bad(s, cmd->tag, "BAD", "Invalid base64");
			} else {
				s->mech = xstrdup("LOGIN");
				reply(s, "+ VXNlcm5hbWU6");
			}
		}
	} else {
		imap_bad(s, cmd->tag, "BAD", "Log in first");
	}
	return false;
}

/* An AUTHENTICATE response line. */
static void imap_sasl_line(struct psession *s, const char *line, size_t len)
{
	char *text;

	if (len == 1 && line[0] == '*') {
		free(s->mech);
		s->mech = NULL;
		free(s->sasl_user);
		s->sasl_user = NULL;
		imap_bad(s, s->tag, "BAD", "Authentication cancelled");
		free(s->tag);
		s->tag = NULL;
		return;
	}
	if (strcmp(s->mech, "PLAIN") == 0) {
		free(s->mech);
		s->mech = NULL;
		sasl_plain(s, line, len);
		return;
	}
	text = sasl_text(line, len);
	if (text == NULL) {
		free(s->mech);
		s->mech = NULL;
		free(s->sasl_user);
		s->sasl_user = NULL;
		imap_bad(s, s->tag, "BAD", "Invalid base64");
		return;
	}
	if (s->sasl_user == NULL) {
		s->sasl_user = text;
		reply(s, "+ UGFzc3dvcmQ6");
		return;
	}
	free(s->mech);
	s->mech = NULL;
	login(s, s->sasl_user, text);
	OPENSSL_cleanse(text, strlen(text));
	free(text);
	free(s->sasl_user);
	s->sasl_user = NULL;
}

static bool imap_input(struct psession *s, const char **pos, const char *end)
{
	const struct imap_parse_error *perr;
	struct imap_cmd *cmd;
	const char *line;
	size_t len;
	bool drop;
	int r;

	if (s->mech != NULL) {
		r = imap_parser_feed_line(s->ip, pos, end, &line, &len, &perr);
		if (r == 0)
			return false;
		if (r < 0) {
			free(s->mech);
			s->mech = NULL;
			imap_bad(s, s->tag, "BAD", perr->text);
		} else {
			imap_sasl_line(s, line, len);
		}
		return true;
	}
	r = imap_parser_feed(s->ip, pos, end, &cmd, &perr);
	if (r == IMAP_PARSE_MORE)
		return false;
	if (r == IMAP_PARSE_CONTINUE) {
		reply(s, "+ Ready for literal data");
		return true;
	}
	if (r == IMAP_PARSE_ERROR) {
		imap_bad(s, perr->tag != NULL ? perr->tag : "*",
			 perr->kind == IMAP_RESP_NO ? "NO" : "BAD", perr->text);
		return true;
	}
	drop = imap_command(s, cmd);
	imap_cmd_free(&cmd);
	if (drop)
		*pos = end;
	return !drop;
}

/* ---- POP3 before login ---- */

static void pop3_err(struct psession *s, const char *text)
{
	reply(s, "%s", text);
	if (++s->errors >= SESSION_ERRORS_MAX) {
		reply(s, "-ERR Too many errors, closing");
		close_client(s, "too many errors");
	}
}

static bool pop3_input(struct psession *s, const char **pos, const char *end)
{
	struct pop3_cmd cmd;
	const char *error;
	int r;

	r = pop3_parser_feed(s->pp, pos, end, &cmd, &error);
	if (r == 0)
		return false;
	if (r < 0) {
		free(s->mech);
		s->mech = NULL;
		pop3_err(s, error);
		return true;
	}
	switch (cmd.verb) {
	case POP3_CAPA:
		reply(s, "+OK Capability list follows");
		reply(s, "TOP");
		reply(s, "UIDL");
		reply(s, "RESP-CODES");
		reply(s, "AUTH-RESP-CODE");
		reply(s, "PIPELINING");
		if (login_allowed(s)) {
			reply(s, "USER");
			reply(s, "SASL PLAIN");
		}
		if (!s->tls && s->d->tls != NULL)
			reply(s, "STLS");
		reply(s, "IMPLEMENTATION Tern");
		reply(s, ".");
		break;
	case POP3_QUIT:
		reply(s, "+OK Bye");
		s->quitting = true;
		close_client(s, NULL);
		break;
	case POP3_STLS:
		if (s->tls || s->d->tls == NULL) {
			pop3_err(s, s->tls ? "-ERR TLS is already active" :
				 "-ERR TLS is not available");
			break;
		}
		reply(s, "+OK Begin TLS negotiation");
		if (start_tls(s))
			*pos = end;
		return false;
	case POP3_USER:
		if (!login_allowed(s)) {
			pop3_err(s, "-ERR [AUTH] Plaintext authentication "
				 "disallowed on non-secure connections, use "
				 "STLS");
			break;
		}
		free(s->sasl_user);
		s->sasl_user = xstrdup(cmd.arg);
		reply(s, "+OK Send your password");
		break;
	case POP3_PASS:
		if (!login_allowed(s)) {
			pop3_err(s, "-ERR [AUTH] Plaintext authentication "
				 "disallowed on non-secure connections, use "
				 "STLS");
		} else if (s->sasl_user == NULL) {
			pop3_err(s, "-ERR Send USER first");
		} else {
			char *user = s->sasl_user;

			s->sasl_user = NULL;
			login(s, user, cmd.arg);
			free(user);
		}
		break;
	case POP3_AUTH:
		if (cmd.arg[0] == '\0') {
			reply(s, "+OK Mechanisms follow");
			if (login_allowed(s))
				reply(s, "PLAIN");
			reply(s, ".");
		} else if (strcmp(cmd.arg, "PLAIN") != 0) {
			pop3_err(s, "-ERR Unsupported authentication "
				 "mechanism");
		} else if (!login_allowed(s)) {
			pop3_err(s, "-ERR [AUTH] Plaintext authentication "
				 "disallowed on non-secure connections, use "
				 "STLS");
		} else if (cmd.initial != NULL) {
			sasl_plain(s, strcmp(cmd.initial, "=") == 0 ? "" :
				   cmd.initial, strcmp(cmd.initial, "=") == 0 ?
				   0 : strlen(cmd.initial));
		} else {
			s->mech = xstrdup("PLAIN");
			pop3_parser_expect_sasl(s->pp);
			reply(s, "+ ");
		}
		break;
	case POP3_SASL:
		free(s->mech);
		s->mech = NULL;
		if (strcmp(cmd.arg, "*") == 0)
			pop3_err(s, "-ERR Authentication cancelled");
		else
			sasl_plain(s, cmd.arg, strlen(cmd.arg));
		break;
	default:
		pop3_err(s, "-ERR Log in first");
		break;
	}
	return true;
}

/* ---- the loop ---- */

static void session_run(struct psession *s)
{
	const char *start, *pos, *end;

	if (s->running || s->gone || s->client == NULL || s->count.counting)
		return;
	s->running = true;
	start = pos = str_c(s->in);
	end = start + str_len(s->in);
	while (s->state == PS_PREAUTH && !s->quitting &&
	       !conn_closing(s->client)) {
		bool more = s->d->proto == PROXY_IMAP ?
				    imap_input(s, &pos, end) :
				    pop3_input(s, &pos, end);

		if (!more)
			break;
	}
	if (!s->gone && s->client != NULL)
		str_consume(s->in, (size_t)(pos - start));
	s->running = false;
	flush(s);
	if (s->gone || s->client == NULL || conn_closing(s->client))
		return;
	if (s->stop && s->state == PS_PREAUTH) {
		reply(s, s->d->proto == PROXY_IMAP ?
			      "* BYE Server shutting down" :
			      "-ERR [SYS/TEMP] Server shutting down");
		close_client(s, "shutting down");
		return;
	}
	if (s->state == PS_PREAUTH)
		conn_read_start(s->client);
	else
		conn_read_stop(s->client);
}

/* ---- the client connection ---- */

static void client_read(struct conn *c, const char *data, size_t len)
{
	struct psession *s = conn_ctx(c);

	if (s->state == PS_RELAY) {
		s->up += len;
		uv_timer_again(&s->timer);
		if (s->backend == NULL ||
		    conn_write(s->backend, data, len) < 0)
			return;
		if (conn_pending(s->backend) >= CONN_HIGH_WATER)
			conn_read_stop(c);
		return;
	}
	if (str_append(s->in, data, len) < 0) {
		conn_abort(c, "input overflow");
		return;
	}
	if (s->state == PS_PREAUTH) {
		uv_timer_again(&s->timer);
		session_run(s);
	} else {
		conn_read_stop(c);
	}
}

static void client_drain(struct conn *c)
{
	struct psession *s = conn_ctx(c);

	if (s->state == PS_RELAY) {
		if (s->backend != NULL)
			conn_read_start(s->backend);
	} else {
		session_run(s);
	}
}

static void client_close(struct conn *c, const char *reason)
{
	struct psession *s = conn_ctx(c);
	uint64_t ms = uv_now(svc_loop(s->d->svc)) - s->started;

	if (s->user != NULL && s->state == PS_RELAY)
		log_info(s->id, "proxy: user=<%s>, client=%s, backend=%s, "
			 "in=%llu, out=%llu, duration=%llu.%03llus%s%s",
			 s->user, s->peer, s->backend_name,
			 (unsigned long long)s->up,
			 (unsigned long long)s->down,
			 (unsigned long long)(ms / 1000),
			 (unsigned long long)(ms % 1000),
			 reason != NULL ? ": " : "",
			 reason != NULL ? reason : "");
	else
		log_info(s->id, "disconnect from %s%s%s", s->peer,
			 reason != NULL ? ": " : "",
			 reason != NULL ? reason : "");
	proxyd_client_end(s->d, s->peer, &s->count);
	s->gone = true;
	s->client = NULL;
	if (s->backend != NULL)
		conn_close(s->backend, NULL);
	uv_close((uv_handle_t *)&s->timer, timer_closed);
	session_release(s);
}

static void on_timer(uv_timer_t *t)
{
	struct psession *s = t->data;

	uv_timer_stop(t);
	switch (s->state) {
	case PS_BACKEND:
		backend_failed(s, "timeout");
		break;
	case PS_AUTHD:
		break;	/* authclient has its own timeout */
	case PS_PREAUTH:
		log_info(s->id, "timeout from %s", s->peer);
		reply(s, s->d->proto == PROXY_IMAP ?
			      "* BYE Disconnected for inactivity" :
			      "-ERR Disconnected for inactivity");
		close_client(s, "idle timeout");
		break;
	case PS_RELAY:
		close_client(s, "idle timeout");
		break;
	}
}

static const struct conn_ops client_ops = {
	.on_read = client_read,
	.on_close = client_close,
	.on_drain = client_drain,
};

static void greet(struct psession *s)
{
	struct proxyd *d = s->d;
	struct str *caps;

	if (svc_stopping(d->svc)) {
		reply(s, d->proto == PROXY_IMAP ? "* BYE Server shutting down" :
			  "-ERR [SYS/TEMP] Server shutting down");
		close_client(s, "shutting down");
		return;
	}
	if (d->proto == PROXY_IMAP) {
		caps = str_new(256, 1024);
		imap_caps(s, caps);
		reply(s, "* OK [CAPABILITY %s] Tern IMAP proxy ready",
		      str_c(caps));
		str_free(&caps);
	} else {
		reply(s, "+OK Tern POP3 proxy ready");
	}
	flush(s);
}

static void conn_counted(enum authclient_status st, unsigned int count,
			 unsigned int rate, const char *error, void *ctx)
{
	struct psession *s = ctx;
	unsigned limit = s->d->client_max;

	(void)rate;
	s->count.counting = false;
	if (s->gone || s->client == NULL) {
		session_release(s);
		return;
	}
	if (st == AUTHCLIENT_OK && limit > 0 && count > limit) {
		log_info(s->id, "reject: too many connections from %s (%u, "
			 "limit %u)", s->peer, count, limit);
		reply(s, s->d->proto == PROXY_IMAP ?
			      "* BYE [LIMIT] Too many connections from your "
			      "address" :
			      "-ERR [SYS/TEMP] Too many connections from "
			      "your address");
		close_client(s, "too many connections");
	} else {
		if (st != AUTHCLIENT_OK)
			log_warn(s->id, "connection count: %s",
				 error != NULL ? error : "unavailable");
		greet(s);
		session_run(s);
	}
	session_release(s);
}

void psession_accept(struct proxyd *d, uv_stream_t *client)
{
	struct psession *s = xcalloc(1, sizeof(*s));
	struct imap_parser_settings set;
	int r;

	s->d = d;
	svc_new_id(s->id);
	if (d->proto == PROXY_IMAP) {
		imap_parser_settings_default(&set);
		set.max_line = d->line_max;
		set.literal = IMAP_LITERAL_PLUS;
		s->ip = imap_parser_new(&set);
	} else {
		s->pp = pop3_parser_new(d->line_max);
	}
	s->in = str_new(256, INPUT_MAX + d->line_max);
	s->out = str_new(256, 64 * 1024);
	s->client = conn_new(svc_loop(d->svc), client, &client_ops, s,
			     s->id);
	s->peer = xstrdup(conn_peer_address(s->client));
	s->started = uv_now(svc_loop(d->svc));
	uv_timer_init(svc_loop(d->svc), &s->timer);
	s->timer.data = s;
	uv_timer_start(&s->timer, on_timer, d->login_ms, d->login_ms);
	/* held by the conn and the timer(s) */
	svc_session_add(d->svc, &s->ss, 2);
	log_info(s->id, "connect from %s%s", s->peer,
		 d->implicit_tls ? " (TLS)" : "");
	r = proxyd_client_start(d, s->client, &s->ss, s->id, s->peer,
				&s->count, conn_counted, s);
	s->tls = r >= 0 && d->implicit_tls;
	if (r > 0)
		greet(s);
}

void psessions_stop(struct proxyd *d)
{
	for (struct svc_session *ss = svc_session_first(d->svc); ss != NULL;
	     ss = ss->next) {
		struct psession *s = (struct psession *)ss;

		if (s->gone || s->client == NULL)
			continue;
		if (s->state != PS_PREAUTH || s->running) {
			/* Relayed sessions end when their client or server
			 * ends them; the drain deadline bounds that. */
			s->stop = true;
			continue;
		}
		reply(s, d->proto == PROXY_IMAP ? "* BYE Server shutting down" :
			  "-ERR [SYS/TEMP] Server shutting down");
		close_client(s, "shutting down");
	}
}
