/*
 * lmtp-load: an LMTP (RFC 2033) load generator for benchmarks.
 *
 * Delivers N pre-generated messages over M parallel connections to one LMTP
 * server on a loopback address or a unix socket, checks that every reply is
 * the expected one (250 for MAIL, RCPT and each per-recipient DATA reply,
 * 354 for DATA) and prints deliveries/s, MB/s and latency percentiles.
 *
 * Messages: sizes follow a bounded Pareto distribution (alpha 1 by default)
 * between 2 KB and 200 KB, so most are a few KB and about 1 in 100 is over
 * 100 KB; messages over 16 KB carry a base64 attachment.  Message i is made
 * from (seed, i) alone, so every run with the same options sends the same
 * bytes to the same recipients, whichever server and thread order.
 *
 * Bounds: at most --messages messages, and no new transaction starts after
 * --time-limit seconds; every socket read and write times out after
 * --io-timeout seconds (at most the time limit), so the program ends within
 * time limit + io timeout (+ the reconnect pauses, at most 2 s a connection).
 * Only loopback addresses (127.0.0.0/8, ::1) and unix sockets are accepted.
 *
 * Built by bench/run-lmtp with the system compiler:
 *   cc -O2 -pthread -o lmtp-load bench/lmtp-load.c -lm
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MESSAGES_MAX 1000000
#define CONNECTIONS_MAX 256
#define RCPTS_MAX 100
#define ACCOUNTS_MAX 1000000
#define SIZE_MIN_LIMIT 512
#define SIZE_MAX_LIMIT (64 * 1024 * 1024)
#define TOTAL_BYTES_MAX ((size_t)2 * 1024 * 1024 * 1024)
#define REPLY_LINE_MAX 4096
#define REPLY_LINES_MAX 100
#define RECONNECTS_MAX 20
#define ERRORS_KEPT 8
#define ATTACH_THRESHOLD (16 * 1024)

struct options {
	const char *target;
	long messages;
	long connections;
	long rcpts;
	long accounts;
	long min_size;
	long max_size;
	double alpha;
	uint64_t seed;
	double time_limit;
	double io_timeout;
	const char *domain;
	const char *user_prefix;
	const char *sender;
	bool pipelining;
};

struct message {
	char *wire;     /* dot-stuffed, CRLF, ending in ".\r\n" */
	size_t wire_len;
	size_t size;    /* the message itself, before dot-stuffing */
};

struct target {
	int family;
	struct sockaddr_storage addr;
	socklen_t addr_len;
};

struct conn {
	int fd;
	bool pipelining;
	char buf[65536];
	size_t start, end;
};

struct result {
	bool ok;
	bool attempted;
	double latency;  /* end of DATA sent to last reply, seconds */
	double txn;      /* MAIL sent to last reply, seconds */
	int rcpt_ok;
};

static struct options opt = {
	.messages = 2000,
	.connections = 8,
	.rcpts = 1,
	.accounts = 100,
	.min_size = 2048,
	.max_size = 204800,
	.alpha = 1.0,
	.seed = 1,
	.time_limit = 300,
	.io_timeout = 60,
	.domain = "bench.test",
	.user_prefix = "user",
	.sender = "loadgen@sender.test",
};

static struct target tgt;
static struct message *msgs;
static struct result *results;
static atomic_long next_msg;
static atomic_long reconnects;
static atomic_long conn_failures;
static double deadline;
static pthread_barrier_t start_barrier;
static pthread_mutex_t err_lock = PTHREAD_MUTEX_INITIALIZER;
static char *errors[ERRORS_KEPT];
static long errors_total;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("lmtp-load: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n);

	if (p == NULL)
		die("out of memory (%zu bytes)", n);
	return p;
}

/* Keeps the first few distinct error texts for the report. */
static void note_error(const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&err_lock);
	errors_total++;
	for (int i = 0; i < ERRORS_KEPT; i++) {
		if (errors[i] == NULL) {
			errors[i] = strdup(text);
			break;
		}
		if (strcmp(errors[i], text) == 0)
			break;
	}
	pthread_mutex_unlock(&err_lock);
}

/* ---- deterministic message generation ---- */

static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static double uniform01(uint64_t *state)
{
	return (double)(splitmix64(state) >> 11) / 9007199254740992.0;
}

/* Bounded Pareto on [min, max] by inversion of its CDF. */
static size_t draw_size(uint64_t *state)
{
	double l = (double)opt.min_size, h = (double)opt.max_size;
	double u = uniform01(state);
	double x = l / pow(1.0 - u * (1.0 - pow(l / h, opt.alpha)),
			   1.0 / opt.alpha);

	if (x < l)
		x = l;
	if (x > h)
		x = h;
	return (size_t)x;
}

struct gen {
	char *p;
	size_t len, cap;   /* wire form */
	size_t size;       /* unstuffed size */
	bool bol;          /* at the beginning of a line */
};

static void gen_put(struct gen *g, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (g->len + 2 > g->cap)
			die("internal: message buffer overflow");
		if (g->bol && s[i] == '.')
			g->p[g->len++] = '.';  /* dot-stuffing */
		g->p[g->len++] = s[i];
		g->size++;
		g->bol = (s[i] == '\n');
	}
}

static void gen_puts(struct gen *g, const char *s)
{
	gen_put(g, s, strlen(s));
}

static void gen_printf(struct gen *g, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		die("internal: header line too long");
	gen_put(g, line, (size_t)n);
}

static const char *const words[] = {
	"the", "meeting", "report", "quarterly", "please", "review", "attached",
	"budget", "schedule", "thanks", "regards", "project", "update", "team",
	"customer", "invoice", "delivery", "server", "mailbox", "tomorrow",
	"agenda", "draft", "final", "version", "question", "answer", "office",
	"a", "of", "to", "and", "in", "for", "on", "with", "is", "we", "you",
};

/* Text lines of at most 76 characters, about 1 in 40 starting with a dot. */
static void gen_text(struct gen *g, uint64_t *st, size_t target)
{
	char line[96];

	while (g->size + 2 < target) {
		size_t room = target - g->size - 2, n = 0;
		size_t want = 40 + splitmix64(st) % 37;

		if (want > room || room - want < 3)
			want = room;  /* the last line ends exactly at target */
		if (splitmix64(st) % 40 == 0 && want > 0)
			line[n++] = '.';
		while (n < want) {
			const char *w = words[splitmix64(st) %
					      (sizeof(words) / sizeof(words[0]))];
			if (n > 0 && line[n - 1] != '.')
				line[n++] = ' ';
			while (*w != '\0' && n < want)
				line[n++] = *w++;
		}
		gen_put(g, line, n);
		gen_put(g, "\r\n", 2);
	}
}

static void gen_base64(struct gen *g, uint64_t *st, size_t target)
{
	static const char b64[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char line[80];

	while (g->size + 2 < target) {
		size_t n = target - g->size - 2;

		if (n > 76)
			n = 76;
		for (size_t i = 0; i < n; i++)
			line[i] = b64[splitmix64(st) & 63];
		gen_put(g, line, n);
		gen_put(g, "\r\n", 2);
	}
}

static void rcpt_address(long msg, long j, char *buf, size_t len)
{
	long k = (msg * opt.rcpts + j) % opt.accounts + 1;

	snprintf(buf, len, "%s%ld@%s", opt.user_prefix, k, opt.domain);
}

static void make_message(long i, struct message *m)
{
	uint64_t st = opt.seed * 0x100000001b3ULL + (uint64_t)i;
	size_t size = draw_size(&st);
	struct gen g = { .bol = true };
	char addr[256];
	time_t date = 1700000000 + i;
	struct tm tm;
	char datestr[64];

	/* Headers may push a message past its drawn size; leave room. */
	g.cap = size * 2 + 4096;
	g.p = xmalloc(g.cap);
	gmtime_r(&date, &tm);
	strftime(datestr, sizeof(datestr), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	gen_printf(&g, "Received: from client.sender.test (client.sender.test "
		       "[192.0.2.%ld])\r\n\tby mx.%s with ESMTPS id L%08lX\r\n"
		       "\tfor <%s%ld@%s>; %s\r\n",
		   i % 250 + 1, opt.domain, (unsigned long)i, opt.user_prefix,
		   i % opt.accounts + 1, opt.domain, datestr);
	gen_printf(&g, "From: Load Generator <%s>\r\n", opt.sender);
	gen_puts(&g, "To: ");
	for (long j = 0; j < opt.rcpts; j++) {
		rcpt_address(i, j, addr, sizeof(addr));
		gen_printf(&g, "%s<%s>", j > 0 ? ",\r\n\t" : "", addr);
	}
	gen_puts(&g, "\r\n");
	gen_printf(&g, "Subject: benchmark message %ld (seed %" PRIu64 ")\r\n",
		   i, opt.seed);
	gen_printf(&g, "Date: %s\r\n", datestr);
	gen_printf(&g, "Message-ID: <%ld.%" PRIu64 ".lmtp-load@sender.test>\r\n",
		   i, opt.seed);
	gen_puts(&g, "MIME-Version: 1.0\r\n");
	if (size > ATTACH_THRESHOLD) {
		size_t text = 1500 + splitmix64(&st) % 3000;

		gen_printf(&g, "Content-Type: multipart/mixed; "
			       "boundary=\"=_b%ld\"\r\n\r\n", i);
		gen_puts(&g, "This is a multi-part message in MIME format.\r\n");
		gen_printf(&g, "--=_b%ld\r\nContent-Type: text/plain; "
			       "charset=us-ascii\r\n\r\n", i);
		gen_text(&g, &st, g.size + text);
		gen_printf(&g, "--=_b%ld\r\nContent-Type: "
			       "application/octet-stream\r\nContent-Disposition: "
			       "attachment; filename=\"file%ld.bin\"\r\n"
			       "Content-Transfer-Encoding: base64\r\n\r\n", i, i);
		if (g.size + 64 < size)
			gen_base64(&g, &st, size - 32);
		gen_printf(&g, "--=_b%ld--\r\n", i);
	} else {
		gen_puts(&g, "Content-Type: text/plain; charset=us-ascii\r\n\r\n");
		gen_text(&g, &st, size);
	}
	/* Pad to the drawn size with one short last line when there is room. */
	if (g.size + 3 <= size) {
		size_t n = size - g.size - 2;
		char pad[80];

		if (n > sizeof(pad))
			n = sizeof(pad);
		memset(pad, 'x', n);
		gen_put(&g, pad, n);
		gen_put(&g, "\r\n", 2);
	}
	if (g.len + 3 > g.cap)
		die("internal: message buffer overflow");
	memcpy(g.p + g.len, ".\r\n", 3);
	g.len += 3;
	m->wire = g.p;
	m->wire_len = g.len;
	m->size = g.size;
}

/* ---- connections ---- */

static bool loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
	}
	return false;
}

static void parse_target(const char *t)
{
	memset(&tgt, 0, sizeof(tgt));
	if (strncmp(t, "unix:", 5) == 0) {
		struct sockaddr_un *un = (struct sockaddr_un *)&tgt.addr;
		size_t n = strlen(t + 5);

		if (n == 0 || n >= sizeof(un->sun_path))
			die("unix socket path empty or too long: %s", t + 5);
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, t + 5, n + 1);
		tgt.family = AF_UNIX;
		tgt.addr_len = sizeof(*un);
		return;
	}

	char host[256], port[16];
	const char *colon;

	if (t[0] == '[') {
		const char *close = strchr(t, ']');

		if (close == NULL || close[1] != ':')
			die("bad target %s (expected [V6ADDR]:PORT)", t);
		if ((size_t)(close - t - 1) >= sizeof(host))
			die("bad target %s", t);
		memcpy(host, t + 1, (size_t)(close - t - 1));
		host[close - t - 1] = '\0';
		colon = close + 1;
	} else {
		colon = strrchr(t, ':');
		if (colon == NULL || (size_t)(colon - t) >= sizeof(host))
			die("bad target %s (expected HOST:PORT)", t);
		memcpy(host, t, (size_t)(colon - t));
		host[colon - t] = '\0';
	}
	if (strlen(colon + 1) == 0 || strlen(colon + 1) >= sizeof(port))
		die("bad port in %s", t);
	memcpy(port, colon + 1, strlen(colon + 1) + 1);

	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
	};
	struct addrinfo *ai;
	int rc = getaddrinfo(host, port, &hints, &ai);

	if (rc != 0)
		die("bad target %s: %s (numeric loopback address needed)", t,
		    gai_strerror(rc));
	if (!loopback(ai->ai_addr))
		die("refusing %s: only loopback addresses (127.0.0.0/8, ::1) "
		    "or unix: sockets", t);
	tgt.family = ai->ai_family;
	memcpy(&tgt.addr, ai->ai_addr, ai->ai_addrlen);
	tgt.addr_len = ai->ai_addrlen;
	freeaddrinfo(ai);
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* One line without its CRLF into line (NUL-terminated); -1 on error. */
static int read_line(struct conn *c, char *line, size_t cap)
{
	for (;;) {
		for (size_t i = c->start; i < c->end; i++) {
			if (c->buf[i] != '\n')
				continue;
			size_t n = i - c->start;

			if (n > 0 && c->buf[i - 1] == '\r')
				n--;
			if (n >= cap)
				n = cap - 1;
			memcpy(line, c->buf + c->start, n);
			line[n] = '\0';
			c->start = i + 1;
			return 0;
		}
		if (c->end - c->start >= REPLY_LINE_MAX) {
			errno = EMSGSIZE;
			return -1;
		}
		if (c->start > 0) {
			memmove(c->buf, c->buf + c->start, c->end - c->start);
			c->end -= c->start;
			c->start = 0;
		}
		ssize_t r = recv(c->fd, c->buf + c->end,
				 sizeof(c->buf) - c->end, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = ECONNRESET;
			return -1;
		}
		c->end += (size_t)r;
	}
}

/*
 * Reads one (possibly multi-line) reply.  Returns its code, or -1 when the
 * connection failed or the reply is malformed (the connection is then out of
 * step and must be dropped).  The last line's text goes to text.
 */
static int read_reply(struct conn *c, char *text, size_t cap, bool *pipelining)
{
	char line[REPLY_LINE_MAX];

	for (int n = 0; n < REPLY_LINES_MAX; n++) {
		if (read_line(c, line, sizeof(line)) < 0) {
			snprintf(text, cap, "read: %s", strerror(errno));
			return -1;
		}
		if (strlen(line) < 3 || line[0] < '1' || line[0] > '5' ||
		    line[1] < '0' || line[1] > '9' || line[2] < '0' ||
		    line[2] > '9' ||
		    (line[3] != '\0' && line[3] != ' ' && line[3] != '-')) {
			snprintf(text, cap, "malformed reply: %.200s", line);
			return -1;
		}
		if (pipelining != NULL && strncasecmp(line + 4, "PIPELINING", 10) == 0)
			*pipelining = true;
		if (line[3] != '-') {
			snprintf(text, cap, "%s", line);
			return atoi(line);
		}
	}
	snprintf(text, cap, "reply of more than %d lines", REPLY_LINES_MAX);
	return -1;
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->start = c->end = 0;
}

static int conn_open(struct conn *c)
{
	struct timeval tv;
	char text[REPLY_LINE_MAX];
	int one = 1, code;

	c->start = c->end = 0;
	c->pipelining = false;
	c->fd = socket(tgt.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		note_error("socket: %s", strerror(errno));
		return -1;
	}
	tv.tv_sec = (time_t)opt.io_timeout;
	tv.tv_usec = (suseconds_t)((opt.io_timeout - (double)tv.tv_sec) * 1e6);
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (tgt.family != AF_UNIX)
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&tgt.addr, tgt.addr_len) < 0) {
		note_error("connect: %s", strerror(errno));
		conn_close(c);
		return -1;
	}
	code = read_reply(c, text, sizeof(text), NULL);
	if (code != 220) {
		note_error("greeting: %s", text);
		conn_close(c);
		return -1;
	}
	if (write_all(c->fd, "LHLO lmtp-load.bench.test\r\n", 27) < 0) {
		note_error("LHLO: write: %s", strerror(errno));
		conn_close(c);
		return -1;
	}
	code = read_reply(c, text, sizeof(text), &c->pipelining);
	if (code != 250) {
		note_error("LHLO: %s", text);
		conn_close(c);
		return -1;
	}
	if (!opt.pipelining)
		c->pipelining = false;
	return 0;
}

/* ---- one transaction ---- */

enum txn_status { TXN_OK, TXN_FAILED, TXN_BROKEN };

static int send_str(struct conn *c, const char *s)
{
	return write_all(c->fd, s, strlen(s));
}

static enum txn_status txn_broken(const char *what, const char *text)
{
	note_error("%s: %s", what, text);
	return TXN_BROKEN;
}

static enum txn_status transaction(struct conn *c, long i, struct result *r)
{
	char cmd[64 + 3 * 256], addr[256], text[REPLY_LINE_MAX];
	size_t len = 0;
	int code, accepted = 0;
	double t0, t1, t2;
	bool failed = false;

	/* MAIL, RCPTs and DATA: one write when pipelining, else one each. */
	t0 = now();
	len = (size_t)snprintf(cmd, sizeof(cmd), "MAIL FROM:<%s>\r\n",
			       opt.sender);
	if (!c->pipelining) {
		if (write_all(c->fd, cmd, len) < 0)
			return txn_broken("MAIL: write", strerror(errno));
		code = read_reply(c, text, sizeof(text), NULL);
		if (code < 0)
			return txn_broken("MAIL", text);
		if (code != 250) {
			note_error("MAIL: %s", text);
			send_str(c, "RSET\r\n");
			return read_reply(c, text, sizeof(text), NULL) == 250 ?
				       TXN_FAILED : TXN_BROKEN;
		}
	} else if (write_all(c->fd, cmd, len) < 0) {
		return txn_broken("MAIL: write", strerror(errno));
	}
	for (long j = 0; j < opt.rcpts; j++) {
		rcpt_address(i, j, addr, sizeof(addr));
		len = (size_t)snprintf(cmd, sizeof(cmd), "RCPT TO:<%s>\r\n",
				       addr);
		if (write_all(c->fd, cmd, len) < 0)
			return txn_broken("RCPT: write", strerror(errno));
		if (c->pipelining)
			continue;
		code = read_reply(c, text, sizeof(text), NULL);
		if (code < 0)
			return txn_broken("RCPT", text);
		if (code == 250)
			accepted++;
		else {
			note_error("RCPT %s: %s", addr, text);
			failed = true;
		}
	}
	if (write_all(c->fd, "DATA\r\n", 6) < 0)
		return txn_broken("DATA: write", strerror(errno));
	if (c->pipelining) {
		code = read_reply(c, text, sizeof(text), NULL);
		if (code < 0)
			return txn_broken("MAIL", text);
		if (code != 250) {
			note_error("MAIL: %s", text);
			failed = true;
		}
		for (long j = 0; j < opt.rcpts; j++) {
			code = read_reply(c, text, sizeof(text), NULL);
			if (code < 0)
				return txn_broken("RCPT", text);
			if (code == 250)
				accepted++;
			else {
				note_error("RCPT: %s", text);
				failed = true;
			}
		}
	}
	code = read_reply(c, text, sizeof(text), NULL);
	if (code < 0)
		return txn_broken("DATA", text);
	if (code != 354) {
		if (accepted > 0)
			note_error("DATA: %s", text);
		send_str(c, "RSET\r\n");
		return read_reply(c, text, sizeof(text), NULL) == 250 ?
			       TXN_FAILED : TXN_BROKEN;
	}
	if (write_all(c->fd, msgs[i].wire, msgs[i].wire_len) < 0)
		return txn_broken("message: write", strerror(errno));
	t1 = now();
	/* One reply per accepted recipient (RFC 2033 4.2). */
	for (int j = 0; j < (accepted > 0 ? accepted : 1); j++) {
		code = read_reply(c, text, sizeof(text), NULL);
		if (code < 0)
			return txn_broken("end of DATA", text);
		if (code == 250 && accepted > 0)
			r->rcpt_ok++;
		else {
			note_error("end of DATA: %s", text);
			failed = true;
		}
	}
	t2 = now();
	r->latency = t2 - t1;
	r->txn = t2 - t0;
	r->ok = !failed && r->rcpt_ok == opt.rcpts;
	return r->ok ? TXN_OK : TXN_FAILED;
}

static void *worker(void *arg)
{
	struct conn *c = arg;
	int reconnects_here = 0;
	bool up = conn_open(c) == 0;

	if (!up)
		atomic_fetch_add(&conn_failures, 1);
	pthread_barrier_wait(&start_barrier);
	while (now() < deadline) {
		if (!up) {
			if (reconnects_here >= RECONNECTS_MAX)
				break;
			reconnects_here++;
			atomic_fetch_add(&reconnects, 1);
			usleep(100000);
			up = conn_open(c) == 0;
			if (!up)
				continue;
		}
		long i = atomic_fetch_add(&next_msg, 1);

		if (i >= opt.messages)
			break;
		results[i].attempted = true;
		if (transaction(c, i, &results[i]) == TXN_BROKEN) {
			conn_close(c);
			up = false;
		}
	}
	if (up) {
		char text[REPLY_LINE_MAX];

		if (send_str(c, "QUIT\r\n") == 0)
			(void)read_reply(c, text, sizeof(text), NULL);
		conn_close(c);
	}
	return NULL;
}

/* ---- report ---- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array. */
static double pct(const double *v, long n, double p)
{
	long k;

	if (n == 0)
		return 0;
	k = (long)ceil(p / 100.0 * (double)n);
	if (k < 1)
		k = 1;
	return v[k - 1];
}

static void usage(FILE *f)
{
	fputs("usage: lmtp-load [options] TARGET\n"
	      "  TARGET             HOST:PORT or [V6]:PORT on loopback, or unix:PATH\n"
	      "  -n, --messages N   messages to deliver (2000)\n"
	      "  -c, --connections M parallel connections (8)\n"
	      "  -r, --rcpts R      recipients per message (1)\n"
	      "  -a, --accounts K   recipients are PREFIX1..PREFIXK@DOMAIN (100)\n"
	      "  -d, --domain D     recipient domain (bench.test)\n"
	      "  -u, --user-prefix P local part prefix (user)\n"
	      "  -f, --sender ADDR  envelope sender (loadgen@sender.test)\n"
	      "  -s, --seed S       seed of the message set (1)\n"
	      "      --min-size B   smallest message (2048)\n"
	      "      --max-size B   largest message (204800)\n"
	      "      --alpha A      Pareto shape of the sizes (1.0)\n"
	      "  -t, --time-limit S start no transaction after S seconds (300)\n"
	      "      --io-timeout S socket read/write timeout (60)\n"
	      "  -P, --pipelining   send MAIL, RCPT and DATA in one write when "
	      "offered\n"
	      "Prints a report and a line 'RESULT key=value ...'; exits 0 when "
	      "every message\nwas delivered, 1 otherwise, 2 on usage errors.\n",
	      f);
}

static long num_arg(const char *s, long min, long max, const char *what)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		die("%s must be an integer from %ld to %ld", what, min, max);
	return v;
}

static double real_arg(const char *s, double min, double max, const char *what)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= min && v <= max))
		die("%s must be a number from %g to %g", what, min, max);
	return v;
}

static void parse_args(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "messages", required_argument, NULL, 'n' },
		{ "connections", required_argument, NULL, 'c' },
		{ "rcpts", required_argument, NULL, 'r' },
		{ "accounts", required_argument, NULL, 'a' },
		{ "domain", required_argument, NULL, 'd' },
		{ "user-prefix", required_argument, NULL, 'u' },
		{ "sender", required_argument, NULL, 'f' },
		{ "seed", required_argument, NULL, 's' },
		{ "min-size", required_argument, NULL, 1 },
		{ "max-size", required_argument, NULL, 2 },
		{ "alpha", required_argument, NULL, 3 },
		{ "time-limit", required_argument, NULL, 't' },
		{ "io-timeout", required_argument, NULL, 4 },
		{ "pipelining", no_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "n:c:r:a:d:u:f:s:t:Ph", lopts,
				 NULL)) != -1) {
		switch (ch) {
		case 'n':
			opt.messages = num_arg(optarg, 1, MESSAGES_MAX, "--messages");
			break;
		case 'c':
			opt.connections = num_arg(optarg, 1, CONNECTIONS_MAX,
						  "--connections");
			break;
		case 'r':
			opt.rcpts = num_arg(optarg, 1, RCPTS_MAX, "--rcpts");
			break;
		case 'a':
			opt.accounts = num_arg(optarg, 1, ACCOUNTS_MAX, "--accounts");
			break;
		case 'd':
			opt.domain = optarg;
			break;
		case 'u':
			opt.user_prefix = optarg;
			break;
		case 'f':
			opt.sender = optarg;
			break;
		case 's':
			opt.seed = (uint64_t)num_arg(optarg, 0, LONG_MAX, "--seed");
			break;
		case 1:
			opt.min_size = num_arg(optarg, SIZE_MIN_LIMIT,
					       SIZE_MAX_LIMIT, "--min-size");
			break;
		case 2:
			opt.max_size = num_arg(optarg, SIZE_MIN_LIMIT,
					       SIZE_MAX_LIMIT, "--max-size");
			break;
		case 3:
			opt.alpha = real_arg(optarg, 0.1, 10, "--alpha");
			break;
		case 't':
			opt.time_limit = real_arg(optarg, 1, 86400, "--time-limit");
			break;
		case 4:
			opt.io_timeout = real_arg(optarg, 1, 3600, "--io-timeout");
			break;
		case 'P':
			opt.pipelining = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		exit(2);
	}
	opt.target = argv[optind];
	if (opt.min_size > opt.max_size)
		die("--min-size is larger than --max-size");
	if (opt.rcpts > opt.accounts)
		die("--rcpts must not exceed --accounts (recipients are distinct)");
	if (strlen(opt.domain) > 100 || strlen(opt.user_prefix) > 100 ||
	    strlen(opt.sender) > 200)
		die("domain, prefix or sender too long");
	if (opt.io_timeout > opt.time_limit)
		opt.io_timeout = opt.time_limit;
}

int main(int argc, char **argv)
{
	pthread_t *threads;
	struct conn *conns;
	size_t total = 0, *sizes;
	double t_start, t_end, elapsed;
	long ok = 0, failed = 0, attempted = 0, rcpt_ok = 0, nlat = 0;
	size_t bytes_ok = 0;
	double *lat, *txn;

	parse_args(argc, argv);
	parse_target(opt.target);
	signal(SIGPIPE, SIG_IGN);

	/* Generate every message before the clock starts. */
	msgs = xmalloc(sizeof(*msgs) * (size_t)opt.messages);
	results = calloc((size_t)opt.messages, sizeof(*results));
	sizes = xmalloc(sizeof(*sizes) * (size_t)opt.messages);
	if (results == NULL)
		die("out of memory");
	for (long i = 0; i < opt.messages; i++) {
		make_message(i, &msgs[i]);
		sizes[i] = msgs[i].size;
		total += msgs[i].wire_len;
		if (total > TOTAL_BYTES_MAX)
			die("message set over %zu bytes: lower --messages",
			    TOTAL_BYTES_MAX);
	}
	qsort(sizes, (size_t)opt.messages, sizeof(*sizes), cmp_size);
	{
		size_t sum = 0;

		for (long i = 0; i < opt.messages; i++)
			sum += sizes[i];
		printf("lmtp-load: %s, %ld messages, %ld connections, "
		       "%ld rcpt/message, %ld accounts, seed %" PRIu64 "%s\n",
		       opt.target, opt.messages, opt.connections, opt.rcpts,
		       opt.accounts, opt.seed,
		       opt.pipelining ? ", pipelining" : "");
		printf("message set: %.2f MB; size min %zu, median %zu, "
		       "mean %zu, p99 %zu, max %zu bytes\n",
		       (double)sum / 1e6, sizes[0],
		       sizes[(opt.messages - 1) / 2], sum / (size_t)opt.messages,
		       sizes[(long)ceil(0.99 * (double)opt.messages) - 1],
		       sizes[opt.messages - 1]);
	}

	threads = xmalloc(sizeof(*threads) * (size_t)opt.connections);
	conns = xmalloc(sizeof(*conns) * (size_t)opt.connections);
	pthread_barrier_init(&start_barrier, NULL,
			     (unsigned)opt.connections + 1);
	/* Connection set-up (greeting, LHLO) is bounded but not measured. */
	deadline = now() + opt.time_limit;
	for (long k = 0; k < opt.connections; k++) {
		conns[k].fd = -1;
		if (pthread_create(&threads[k], NULL, worker, &conns[k]) != 0)
			die("pthread_create failed");
	}
	pthread_barrier_wait(&start_barrier);
	t_start = now();
	for (long k = 0; k < opt.connections; k++)
		pthread_join(threads[k], NULL);
	t_end = now();
	elapsed = t_end - t_start;

	lat = xmalloc(sizeof(*lat) * (size_t)opt.messages);
	txn = xmalloc(sizeof(*txn) * (size_t)opt.messages);
	for (long i = 0; i < opt.messages; i++) {
		struct result *r = &results[i];

		if (!r->attempted)
			continue;
		attempted++;
		rcpt_ok += r->rcpt_ok;
		if (r->ok) {
			ok++;
			bytes_ok += msgs[i].size;
			lat[nlat] = r->latency;
			txn[nlat] = r->txn;
			nlat++;
		} else {
			failed++;
		}
	}
	qsort(lat, (size_t)nlat, sizeof(*lat), cmp_double);
	qsort(txn, (size_t)nlat, sizeof(*txn), cmp_double);

	double dps = elapsed > 0 ? (double)ok / elapsed : 0;
	double rps = elapsed > 0 ? (double)rcpt_ok / elapsed : 0;
	double mbps = elapsed > 0 ? (double)bytes_ok / 1e6 / elapsed : 0;

	printf("delivered: %ld of %ld messages (%ld recipient deliveries); "
	       "failed %ld; not attempted %ld\n",
	       ok, opt.messages, rcpt_ok, failed, opt.messages - attempted);
	printf("connections: %ld failed to open, %ld reconnects\n",
	       (long)conn_failures, (long)reconnects);
	printf("elapsed: %.3f s\n", elapsed);
	printf("throughput: %.1f deliveries/s (messages), %.1f recipient "
	       "deliveries/s, %.2f MB/s\n", dps, rps, mbps);
	printf("latency, end of DATA to last reply: p50 %.2f ms, p99 %.2f ms, "
	       "max %.2f ms\n", pct(lat, nlat, 50) * 1e3,
	       pct(lat, nlat, 99) * 1e3, nlat ? lat[nlat - 1] * 1e3 : 0.0);
	printf("latency, MAIL to last reply:        p50 %.2f ms, p99 %.2f ms, "
	       "max %.2f ms\n", pct(txn, nlat, 50) * 1e3,
	       pct(txn, nlat, 99) * 1e3, nlat ? txn[nlat - 1] * 1e3 : 0.0);
	if (errors_total > 0) {
		printf("errors: %ld; first distinct ones:\n", errors_total);
		for (int i = 0; i < ERRORS_KEPT && errors[i] != NULL; i++)
			printf("  %s\n", errors[i]);
	}
	printf("RESULT messages=%ld delivered=%ld failed=%ld not_attempted=%ld "
	       "rcpt_deliveries=%ld elapsed_s=%.3f deliveries_per_s=%.2f "
	       "rcpt_deliveries_per_s=%.2f mb_per_s=%.3f p50_ms=%.3f "
	       "p99_ms=%.3f max_ms=%.3f txn_p50_ms=%.3f txn_p99_ms=%.3f "
	       "errors=%ld\n",
	       opt.messages, ok, failed, opt.messages - attempted, rcpt_ok,
	       elapsed, dps, rps, mbps, pct(lat, nlat, 50) * 1e3,
	       pct(lat, nlat, 99) * 1e3, nlat ? lat[nlat - 1] * 1e3 : 0.0,
	       pct(txn, nlat, 50) * 1e3, pct(txn, nlat, 99) * 1e3,
	       errors_total);
	return ok == opt.messages ? 0 : 1;
}
