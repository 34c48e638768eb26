/*
 * memcache.c: the memcached text-protocol client (memcache.h).
 *
 * Parser states: P_IDLE (no reply expected), P_LINE (a reply line is being
 * collected, at most MEMCACHE_LINE_MAX bytes), P_DATA (the bytes of a
 * VALUE block), P_DATA_CR/P_DATA_LF (the CRLF after them), P_ERROR.
 *
 * Client: one connection per server; requests are written at once (or
 * when the connection comes up) and wait in order for their replies.  One
 * timer per server does the reconnect backoff and the request deadline.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <openssl/evp.h>

#include "compat.h"
#include "memcache.h"
#include "str.h"
#include "xalloc.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define ROUTE_ADDRESS_MAX 1024

const char *memcache_result_name(enum memcache_result r)
{
	switch (r) {
	case MEMCACHE_HIT: return "hit";
	case MEMCACHE_MISS: return "miss";
	case MEMCACHE_STORED: return "stored";
	case MEMCACHE_NOT_STORED: return "not stored";
	case MEMCACHE_DELETED: return "deleted";
	case MEMCACHE_NOT_FOUND: return "not found";
	case MEMCACHE_SERVER_ERROR: return "server error";
	case MEMCACHE_FAILED: return "failed";
	}
	return "?";
}

/* ---- keys ---- */

int memcache_route_key(const char *address, struct str *key_r)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	char lower[ROUTE_ADDRESS_MAX];
	size_t n = strlen(address);
	unsigned int mdlen = 0;

	str_clear(key_r);
	if (n == 0 || n > sizeof(lower))
		return -1;
	for (size_t i = 0; i < n; i++)
		lower[i] = (char)tolower((unsigned char)address[i]);
	if (EVP_Digest(lower, n, md, &mdlen, EVP_sha256(), NULL) != 1 ||
	    str_append_c(key_r, MEMCACHE_ROUTE_PREFIX) < 0)
		return -1;
	for (unsigned int i = 0; i < mdlen; i++) {
		if (str_append_byte(key_r, (unsigned char)hex[md[i] >> 4]) < 0 ||
		    str_append_byte(key_r, (unsigned char)hex[md[i] & 15]) < 0)
			return -1;
	}
	return 0;
}

bool memcache_key_valid(const char *key)
{
	size_t n = strlen(key);

	if (n == 0 || n > MEMCACHE_KEY_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)key[i] <= 0x20 ||
		    (unsigned char)key[i] >= 0x7f)
			return false;
	}
	return true;
}

bool memcache_route_value_valid(const char *value, size_t len)
{
	if (len == 0 || len > MEMCACHE_ROUTE_HOST_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)value[i];

		if (!isalnum(c) && strchr(".-_:[]", c) == NULL)
			return false;
		if (c == '\0')
			return false;
	}
	return true;
}

/* ---- the reply parser ---- */

enum pstate {
	P_IDLE,
	P_LINE,
	P_DATA,
	P_DATA_CR,
	P_DATA_LF,
	P_ERROR,
};

struct memcache_parser {
	enum pstate state;
	enum memcache_op op;
	size_t value_max;
	size_t remaining;	/* P_DATA */
	bool have_value;
	struct str *line;
	struct str *value;
	struct str *key;
	const char *error;
};

struct memcache_parser *memcache_parser_new(size_t value_max)
{
	struct memcache_parser *p = xcalloc(1, sizeof(*p));

	if (value_max == 0 || value_max > MEMCACHE_VALUE_MAX)
		value_max = MEMCACHE_VALUE_MAX;
	p->value_max = value_max;
	p->line = str_new(64, MEMCACHE_LINE_MAX + 1);
	p->value = str_new(64, value_max);
	p->key = str_new(64, MEMCACHE_KEY_MAX);
	p->state = P_IDLE;
	return p;
}

void memcache_parser_free(struct memcache_parser **pp)
{
	struct memcache_parser *p = *pp;

	if (p == NULL)
		return;
	str_free(&p->line);
	str_free(&p->value);
	str_free(&p->key);
	free(p);
	*pp = NULL;
}

void memcache_parser_expect(struct memcache_parser *p, enum memcache_op op,
			    const char *key)
{
	p->op = op;
	p->state = P_LINE;
	p->have_value = false;
	p->remaining = 0;
	p->error = NULL;
	str_clear(p->line);
	str_clear(p->value);
	str_clear(p->key);
	if (key == NULL || str_append_c(p->key, key) < 0)
		str_clear(p->key);
}

static int parse_fail(struct memcache_parser *p, const char *error,
		      const char **error_r)
{
	p->state = P_ERROR;
	p->error = error;
	*error_r = error;
	return -1;
}

/* A decimal number of at most digits_max digits, whole token. */
static bool parse_uint(const char *s, size_t len, size_t digits_max,
		       uint64_t *n_r)
{
	uint64_t n = 0;

	if (len == 0 || len > digits_max)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		n = n * 10 + (uint64_t)(s[i] - '0');
	}
	*n_r = n;
	return true;
}

static bool line_is(const char *line, size_t len, const char *word)
{
	return len == strlen(word) && memcmp(line, word, len) == 0;
}

static bool line_starts(const char *line, size_t len, const char *word)
{
	size_t n = strlen(word);

	return len >= n && memcmp(line, word, n) == 0;
}

/* "VALUE <key> <flags> <bytes>" (no CAS: we never send gets). */
static int value_line(struct memcache_parser *p, const char *line,
		      size_t len, const char **error_r)
{
	const char *f[4];
	size_t fl[4], nf = 0, i = 0;
	uint64_t flags, bytes;

	while (i < len && nf < 4) {
		size_t start = i;

		while (i < len && line[i] != ' ')
			i++;
		f[nf] = line + start;
		fl[nf++] = i - start;
		if (i < len)
			i++;	/* one space */
	}
	if (nf != 4 || i < len || fl[1] == 0 || line[len - 1] == ' ')
		return parse_fail(p, "malformed VALUE line", error_r);
	if (p->have_value)
		return parse_fail(p, "more than one VALUE", error_r);
	if (fl[1] != str_len(p->key) ||
	    memcmp(f[1], str_c(p->key), fl[1]) != 0)
		return parse_fail(p, "VALUE for a key not asked for", error_r);
	if (!parse_uint(f[2], fl[2], 10, &flags) || flags > UINT32_MAX ||
	    !parse_uint(f[3], fl[3], 20, &bytes))
		return parse_fail(p, "malformed VALUE line", error_r);
	if (bytes > p->value_max)
		return parse_fail(p, "value too long", error_r);
	p->remaining = (size_t)bytes;
	p->state = p->remaining > 0 ? P_DATA : P_DATA_CR;
	return 0;
}

static int done(struct memcache_parser *p, enum memcache_result r,
		struct memcache_reply *reply_r)
{
	p->state = P_IDLE;
	reply_r->result = r;
	reply_r->value = r == MEMCACHE_HIT ? str_c(p->value) : NULL;
	reply_r->value_len = r == MEMCACHE_HIT ? str_len(p->value) : 0;
	return 1;
}

/* A complete reply line (without CRLF). */
static int reply_line(struct memcache_parser *p, struct memcache_reply *r,
		      const char **error_r)
{
	const char *line = str_c(p->line);
	size_t len = str_len(p->line);

	if (line_is(line, len, "ERROR") ||
	    line_starts(line, len, "CLIENT_ERROR ") ||
	    line_starts(line, len, "SERVER_ERROR ")) {
		if (p->have_value)
			return parse_fail(p, "error after VALUE", error_r);
		return done(p, MEMCACHE_SERVER_ERROR, r);
	}
	switch (p->op) {
	case MEMCACHE_GET:
		if (line_is(line, len, "END"))
			return done(p, p->have_value ? MEMCACHE_HIT :
				    MEMCACHE_MISS, r);
		if (line_starts(line, len, "VALUE "))
			return value_line(p, line, len, error_r);
		break;
	case MEMCACHE_SET:
		if (line_is(line, len, "STORED"))
			return done(p, MEMCACHE_STORED, r);
		if (line_is(line, len, "NOT_STORED") ||
		    line_is(line, len, "EXISTS") ||
		    line_is(line, len, "NOT_FOUND"))
			return done(p, MEMCACHE_NOT_STORED, r);
		break;
	case MEMCACHE_DELETE:
		if (line_is(line, len, "DELETED"))
			return done(p, MEMCACHE_DELETED, r);
		if (line_is(line, len, "NOT_FOUND"))
			return done(p, MEMCACHE_NOT_FOUND, r);
		break;
	}
	return parse_fail(p, "unexpected reply", error_r);
}

int memcache_parser_feed(struct memcache_parser *p, const char **pos,
			 const char *end, struct memcache_reply *reply_r,
			 const char **error_r)
{
	while (*pos < end) {
		const char *s = *pos;
		size_t n;
		int x;

		switch (p->state) {
		case P_ERROR:
			*error_r = p->error;
			return -1;
		case P_IDLE:
			return parse_fail(p, "data without a request",
					  error_r);
		case P_LINE:
			n = (size_t)(end - s);
			for (size_t i = 0; i < n; i++) {
				if (s[i] != '\n')
					continue;
				if (str_append(p->line, s, i) < 0)
					return parse_fail(p, "reply line too "
							  "long", error_r);
				*pos = s + i + 1;
				if (str_len(p->line) == 0 ||
				    str_c(p->line)[str_len(p->line) - 1] !=
					    '\r')
					return parse_fail(p, "bare LF in "
							  "reply", error_r);
				str_truncate(p->line, str_len(p->line) - 1);
				if (memchr(str_c(p->line), '\0',
					   str_len(p->line)) != NULL ||
				    memchr(str_c(p->line), '\r',
					   str_len(p->line)) != NULL)
					return parse_fail(p, "bad byte in "
							  "reply line",
							  error_r);
				x = reply_line(p, reply_r, error_r);
				str_clear(p->line);
				if (x != 0)
					return x;
				goto next;
			}
			if (str_append(p->line, s, n) < 0)
				return parse_fail(p, "reply line too long",
						  error_r);
			*pos = end;
			return 0;
		case P_DATA:
			n = (size_t)(end - s);
			if (n > p->remaining)
				n = p->remaining;
			if (str_append(p->value, s, n) < 0)
				return parse_fail(p, "value too long", error_r);
			p->remaining -= n;
			*pos = s + n;
			if (p->remaining == 0)
				p->state = P_DATA_CR;
			break;
		case P_DATA_CR:
		case P_DATA_LF:
			if (*s != (p->state == P_DATA_CR ? '\r' : '\n'))
				return parse_fail(p, "value not followed by "
						  "CRLF", error_r);
			(*pos)++;
			if (p->state == P_DATA_CR) {
				p->state = P_DATA_LF;
			} else {
				p->state = P_LINE;
				p->have_value = true;
			}
			break;
		}
next:;
	}
	if (p->state == P_ERROR) {
		*error_r = p->error;
		return -1;
	}
	return 0;
}

/* ---- the client ---- */

enum sstate {
	S_DOWN,
	S_CONNECTING,
	S_UP,
};

struct mc_req {
	struct mc_req *next;
	enum memcache_op op;
	char *key;
	memcache_cb *cb;
	void *ctx;
	uint64_t deadline;
	struct str *wire;	/* not written yet (while connecting) */
};

struct mc_server {
	struct memcache *mc;
	char *name;
	bool is_unix;
	struct sockaddr_storage addr;
	uv_stream_t *stream;	/* uv_tcp_t or uv_pipe_t, NULL when down */
	uv_connect_t creq;
	uv_timer_t timer;
	enum sstate state;
	uint64_t backoff_ms;
	uint64_t retry_at;	/* S_DOWN: not before (uv_now) */
	struct mc_req *head, *tail;
	size_t nreqs;
	struct memcache_parser *parser;
};

struct memcache {
	uv_loop_t *loop;
	struct mc_server *servers;
	size_t nservers;
	uint64_t timeout_ms;
	size_t queue_max;
	struct mc_req *failed, *failed_tail;	/* to call back from the loop */
	uv_timer_t fail_timer;
	unsigned handles;	/* open handles, for the final free */
	bool freeing;
};

struct mc_write {
	uv_write_t req;
	char data[];
};

static void server_arm(struct mc_server *s);
static void server_connect(struct mc_server *s);

static void req_free(struct mc_req *r)
{
	free(r->key);
	str_free(&r->wire);
	free(r);
}

static void mc_maybe_free(struct memcache *mc)
{
	if (!mc->freeing || mc->handles > 0)
		return;
	for (size_t i = 0; i < mc->nservers; i++) {
		free(mc->servers[i].name);
		memcache_parser_free(&mc->servers[i].parser);
	}
	free(mc->servers);
	free(mc);
}

static void handle_closed(uv_handle_t *h)
{
	struct memcache *mc = h->data;

	mc->handles--;
	mc_maybe_free(mc);
}

static void stream_closed(uv_handle_t *h)
{
	struct memcache *mc = ((struct mc_server *)h->data)->mc;

	free(h);
	mc->handles--;
	mc_maybe_free(mc);
}

static void fail_deliver(uv_timer_t *t)
{
	struct memcache *mc = t->data;

	while (mc->failed != NULL) {
		struct mc_req *r = mc->failed;

		mc->failed = r->next;
		if (mc->failed == NULL)
			mc->failed_tail = NULL;
		r->cb(MEMCACHE_FAILED, NULL, 0, r->ctx);
		req_free(r);
	}
}

/* Ends a request with MEMCACHE_FAILED from the loop. */
static void fail_later(struct memcache *mc, struct mc_req *r)
{
	r->next = NULL;
	if (mc->failed_tail != NULL)
		mc->failed_tail->next = r;
	else
		mc->failed = r;
	mc->failed_tail = r;
	if (!mc->freeing)
		uv_timer_start(&mc->fail_timer, fail_deliver, 0, 0);
}

/* The connection is unusable: fail what waits, back off. */
static void server_down(struct mc_server *s)
{
	struct memcache *mc = s->mc;

	while (s->head != NULL) {
		struct mc_req *r = s->head;

		s->head = r->next;
		fail_later(mc, r);
	}
	s->tail = NULL;
	s->nreqs = 0;
	if (s->stream != NULL) {
		uv_close((uv_handle_t *)s->stream, stream_closed);
		s->stream = NULL;
	}
	s->state = S_DOWN;
	s->backoff_ms = s->backoff_ms == 0 ? BACKOFF_MIN_MS :
			s->backoff_ms * 2;
	if (s->backoff_ms > BACKOFF_MAX_MS)
		s->backoff_ms = BACKOFF_MAX_MS;
	s->retry_at = uv_now(mc->loop) + s->backoff_ms;
	server_arm(s);
}

static void on_timer(uv_timer_t *t)
{
	struct mc_server *s = t->data;
	uint64_t now = uv_now(s->mc->loop);

	if (s->state == S_DOWN) {
		if (now >= s->retry_at)
			server_connect(s);
		else
			server_arm(s);
		return;
	}
	if (s->head != NULL && s->head->deadline <= now) {
		server_down(s);	/* a slow server is as good as none */
		return;
	}
	server_arm(s);
}

/* The timer: the reconnect time when down, else the oldest deadline. */
static void server_arm(struct mc_server *s)
{
	uint64_t now = uv_now(s->mc->loop), at;

	if (s->mc->freeing)
		return;
	if (s->state == S_DOWN)
		at = s->retry_at;
	else if (s->head != NULL)
		at = s->head->deadline;
	else {
		uv_timer_stop(&s->timer);
		return;
	}
	uv_timer_start(&s->timer, on_timer, at > now ? at - now : 0, 0);
}

static void on_write(uv_write_t *req, int status)
{
	(void)status;	/* a failed write shows as a read error or close */
	free(req);
}

static int server_write(struct mc_server *s, const struct str *wire)
{
	struct mc_write *w = xmalloc(sizeof(*w) + str_len(wire));
	uv_buf_t buf;

	memcpy(w->data, str_c(wire), str_len(wire));
	buf = uv_buf_init(w->data, (unsigned)str_len(wire));
	if (uv_write(&w->req, s->stream, &buf, 1, on_write) < 0) {
		free(w);
		return -1;
	}
	return 0;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	static char rbuf[4096];

	(void)h;
	(void)hint;
	*buf = uv_buf_init(rbuf, sizeof(rbuf));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct mc_server *s = st->data;
	const char *pos = buf->base, *end;
	struct memcache_reply reply;
	const char *error;

	if (nread < 0) {
		server_down(s);
		return;
	}
	end = pos + nread;
	while (pos < end) {
		struct mc_req *r = s->head;
		int x;

		if (r == NULL) {
			server_down(s);	/* unasked-for bytes */
			return;
		}
		x = memcache_parser_feed(s->parser, &pos, end, &reply, &error);
		if (x == 0)
			break;
		if (x < 0) {
			server_down(s);
			return;
		}
		s->head = r->next;
		if (s->head == NULL)
			s->tail = NULL;
		s->nreqs--;
		s->backoff_ms = 0;
		if (s->head != NULL)
			memcache_parser_expect(s->parser, s->head->op,
					       s->head->key);
		r->cb(reply.result, reply.value, reply.value_len, r->ctx);
		req_free(r);
		if (s->stream == NULL || s->mc->freeing)
			return;
	}
	server_arm(s);
}

static void on_connect(uv_connect_t *req, int status)
{
	struct mc_server *s = req->data;

	if (s->mc->freeing || s->state != S_CONNECTING ||
	    req->handle != s->stream)
		return;
	if (status < 0 || uv_read_start(s->stream, on_alloc, on_read) < 0) {
		server_down(s);
		return;
	}
	/* The backoff starts again only with an answer: a server that
	 * accepts but does not answer stays skipped for longer and longer. */
	s->state = S_UP;
	for (struct mc_req *r = s->head; r != NULL; r = r->next) {
		if (r->wire != NULL && server_write(s, r->wire) < 0) {
			server_down(s);
			return;
		}
		str_free(&r->wire);
	}
	server_arm(s);
}

static void server_connect(struct mc_server *s)
{
	struct memcache *mc = s->mc;
	int r;

	if (s->is_unix) {
		uv_pipe_t *p = xcalloc(1, sizeof(*p));

		uv_pipe_init(mc->loop, p, 0);
		s->stream = (uv_stream_t *)p;
	} else {
		uv_tcp_t *t = xcalloc(1, sizeof(*t));

		uv_tcp_init(mc->loop, t);
		uv_tcp_nodelay(t, 1);
		s->stream = (uv_stream_t *)t;
	}
	mc->handles++;
	s->stream->data = s;
	s->creq.data = s;
	s->state = S_CONNECTING;
	if (s->is_unix) {
		uv_pipe_connect(&s->creq, (uv_pipe_t *)s->stream, s->name,
				on_connect);
		r = 0;
	} else {
		r = uv_tcp_connect(&s->creq, (uv_tcp_t *)s->stream,
				   (const struct sockaddr *)&s->addr,
				   on_connect);
	}
	if (r < 0) {
		server_down(s);
		return;
	}
	server_arm(s);
}

/* "HOST:PORT", "[V6]:PORT" or "/path". */
static int server_parse(struct mc_server *s, const char *spec)
{
	char host[64];
	const char *colon;
	unsigned long port;
	char *end;
	size_t n;

	if (spec[0] == '/') {
		if (strlen(spec) >= sizeof(((struct sockaddr_un *)0)->sun_path))
			return -1;
		s->is_unix = true;
		return 0;
	}
	colon = strrchr(spec, ':');
	if (colon == NULL)
		return -1;
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno != 0 || *end != '\0' || colon[1] == '\0' || port == 0 ||
	    port > 65535)
		return -1;
	n = (size_t)(colon - spec);
	if (spec[0] == '[') {
		if (n < 3 || spec[n - 1] != ']' || n - 2 >= sizeof(host))
			return -1;
		memcpy(host, spec + 1, n - 2);
		host[n - 2] = '\0';
		return uv_ip6_addr(host, (int)port,
				   (struct sockaddr_in6 *)&s->addr) < 0 ? -1 :
									  0;
	}
	if (n == 0 || n >= sizeof(host))
		return -1;
	memcpy(host, spec, n);
	host[n] = '\0';
	return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&s->addr) <
			       0 ? -1 : 0;
}

struct memcache *memcache_new(uv_loop_t *loop,
			      const struct memcache_settings *set,
			      const char **error_r)
{
	struct memcache *mc;

	if (set->nservers == 0 || set->nservers > MEMCACHE_SERVERS_MAX) {
		*error_r = "need 1 to 64 memcached servers";
		return NULL;
	}
	mc = xcalloc(1, sizeof(*mc));
	mc->loop = loop;
	mc->nservers = set->nservers;
	mc->timeout_ms = set->timeout_ms > 0 ? set->timeout_ms : 1000;
	mc->queue_max = set->queue_max > 0 ? set->queue_max :
					     MEMCACHE_QUEUE_DEFAULT;
	mc->servers = xcalloc(set->nservers, sizeof(*mc->servers));
	for (size_t i = 0; i < set->nservers; i++) {
		struct mc_server *s = &mc->servers[i];

		s->mc = mc;
		s->name = xstrdup(set->servers[i]);
		if (server_parse(s, s->name) < 0) {
			*error_r = "a memcached server is not HOST:PORT "
				   "(numeric), [IPV6]:PORT or /socket/path";
			mc->freeing = true;
			mc_maybe_free(mc);
			return NULL;
		}
	}
	uv_timer_init(loop, &mc->fail_timer);
	mc->fail_timer.data = mc;
	mc->handles++;
	for (size_t i = 0; i < mc->nservers; i++) {
		struct mc_server *s = &mc->servers[i];

		s->parser = memcache_parser_new(MEMCACHE_VALUE_MAX);
		uv_timer_init(loop, &s->timer);
		s->timer.data = s;
		mc->handles++;
		server_connect(s);
	}
	return mc;
}

void memcache_free(struct memcache **mcp)
{
	struct memcache *mc = *mcp;

	if (mc == NULL)
		return;
	*mcp = NULL;
	for (size_t i = 0; i < mc->nservers; i++) {
		struct mc_server *s = &mc->servers[i];

		server_down(s);
		s->timer.data = mc;
		uv_close((uv_handle_t *)&s->timer, handle_closed);
	}
	mc->freeing = true;
	fail_deliver(&mc->fail_timer);
	uv_close((uv_handle_t *)&mc->fail_timer, handle_closed);
}

/* FNV-1a of the key picks the server. */
static struct mc_server *server_for(struct memcache *mc, const char *key)
{
	uint32_t h = 2166136261u;

	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 16777619u;
	return &mc->servers[h % mc->nservers];
}

static void submit(struct memcache *mc, enum memcache_op op, const char *key,
		   const char *value, size_t value_len, unsigned ttl,
		   memcache_cb *cb, void *ctx)
{
	struct mc_req *r = xcalloc(1, sizeof(*r));
	struct mc_server *s;
	int x;

	r->op = op;
	r->cb = cb;
	r->ctx = ctx;
	r->key = xstrdup(key);
	if (mc->freeing || !memcache_key_valid(key) ||
	    value_len > MEMCACHE_VALUE_MAX) {
		fail_later(mc, r);
		return;
	}
	s = server_for(mc, key);
	if (s->state == S_DOWN && uv_now(mc->loop) >= s->retry_at)
		server_connect(s);
	if (s->state == S_DOWN || s->nreqs >= mc->queue_max) {
		fail_later(mc, r);
		return;
	}
	r->wire = str_new(64, MEMCACHE_KEY_MAX + MEMCACHE_VALUE_MAX + 64);
	if (op == MEMCACHE_GET)
		x = str_printf(r->wire, "get %s\r\n", key);
	else if (op == MEMCACHE_DELETE)
		x = str_printf(r->wire, "delete %s\r\n", key);
	else
		x = str_printf(r->wire, "set %s 0 %u %zu\r\n", key, ttl,
			       value_len) < 0 ||
		    str_append(r->wire, value, value_len) < 0 ||
		    str_append(r->wire, "\r\n", 2) < 0 ? -1 : 0;
	if (x < 0) {
		fail_later(mc, r);
		return;
	}
	r->deadline = uv_now(mc->loop) + mc->timeout_ms;
	if (s->head == NULL)
		memcache_parser_expect(s->parser, op, key);
	if (s->tail != NULL)
		s->tail->next = r;
	else
		s->head = r;
	s->tail = r;
	s->nreqs++;
	if (s->state == S_UP) {
		if (server_write(s, r->wire) < 0) {
			server_down(s);
			return;
		}
		str_free(&r->wire);
	}
	server_arm(s);
}

void memcache_get(struct memcache *mc, const char *key, memcache_cb *cb,
		  void *ctx)
{
	submit(mc, MEMCACHE_GET, key, NULL, 0, 0, cb, ctx);
}

void memcache_set(struct memcache *mc, const char *key, const char *value,
		  size_t value_len, unsigned ttl_s, memcache_cb *cb, void *ctx)
{
	submit(mc, MEMCACHE_SET, key, value, value_len, ttl_s, cb, ctx);
}

void memcache_delete(struct memcache *mc, const char *key, memcache_cb *cb,
		     void *ctx)
{
	submit(mc, MEMCACHE_DELETE, key, NULL, 0, 0, cb, ctx);
}

/* ---- one request on a private loop ---- */

struct once {
	bool done;
	enum memcache_result result;
};

static void once_done(enum memcache_result result, const char *value,
		      size_t value_len, void *ctx)
{
	struct once *o = ctx;

	(void)value;
	(void)value_len;
	o->done = true;
	o->result = result;
}

static void once_tick(uv_timer_t *t)
{
	(void)t;
}

enum memcache_result memcache_delete_once(const struct memcache_settings *set,
					  const char *key,
					  const char **error_r)
{
	uv_loop_t loop;
	uv_timer_t wait;
	struct memcache *mc;
	struct once o = { false, MEMCACHE_FAILED };
	uint64_t until;

	if (uv_loop_init(&loop) < 0) {
		*error_r = "cannot create an event loop";
		return MEMCACHE_FAILED;
	}
	mc = memcache_new(&loop, set, error_r);
	if (mc == NULL) {
		uv_loop_close(&loop);
		return MEMCACHE_FAILED;
	}
	/* Give the connection its chance before asking. */
	uv_timer_init(&loop, &wait);
	until = uv_now(&loop) + mc->timeout_ms;
	while (uv_now(&loop) < until) {
		struct mc_server *s = server_for(mc, key);

		if (s->state != S_CONNECTING)
			break;
		uv_timer_start(&wait, once_tick, 10, 0);
		uv_run(&loop, UV_RUN_ONCE);
	}
	memcache_delete(mc, key, once_done, &o);
	/* A tick, so that a run never sleeps past an answer given from a
	 * timer; the request's own timeout bounds the wait. */
	uv_timer_start(&wait, once_tick, 10, 10);
	while (!o.done)
		(void)uv_run(&loop, UV_RUN_ONCE);
	uv_timer_stop(&wait);
	memcache_free(&mc);
	uv_close((uv_handle_t *)&wait, NULL);
	(void)uv_run(&loop, UV_RUN_DEFAULT);
	(void)uv_loop_close(&loop);
	return o.result;
}
