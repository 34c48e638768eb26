/*
 * imap-load.c: the IMAP loads of bench/run-imap.
 *
 * Three modes, each against one IMAP server on 127.0.0.1 (or ::1):
 *
 *   ops   --clients N connections at once, each running --iterations
 *         sessions one after the other: connect and greeting, LOGIN,
 *         SELECT INBOX, then --repeat times: FETCH 1:* (FLAGS), FETCH of
 *         the ENVELOPE of --range consecutive messages, FETCH BODY.PEEK[]
 *         of one message, STORE +FLAGS (\Seen) on one message, SEARCH
 *         UNSEEN, SEARCH SUBJECT "word"; then LOGOUT.  Messages and words
 *         come from a generator seeded with --seed and the client number,
 *         so two servers receive the same commands.  Prints operations/s
 *         and p50/p99 per command kind.  With --connect-only a session is
 *         connect and greeting, LOGIN and LOGOUT alone (sessions/s is then
 *         the connection setup rate).
 *   big   one connection, logged in once (not timed), then --repeat times:
 *         SELECT --folder and UID FETCH 1:* (FLAGS), each timed, the FETCH
 *         answers counted against EXISTS; UNSELECT in between.  The
 *         first round is reported apart (cold caches); the median, min
 *         and max are of the other rounds.
 *   idle  --connections connections opened by --threads threads (over
 *         TLS with --tls), each logged in, --folder selected and in IDLE;
 *         then "READY ..." on stdout, a wait for a line (or EOF) on stdin,
 *         and DONE and LOGOUT on every connection, each checked.
 *
 * Every reply is read to its tagged answer and checked (OK expected);
 * literals are skipped by their announced size.  Output is RESULT and
 * OP lines of key=value pairs for run-imap.
 *
 * Bounds: at most 1,000 clients x 100,000 iterations, 20,000 idle
 * connections, 1,000 repeats; no session starts after --time-limit
 * seconds; every read and write times out after 120 s; loopback
 * addresses only.  Standalone C (libc, pthreads and OpenSSL's libssl),
 * built by run-imap with the system compiler.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IO_TIMEOUT_MS 120000
#define LINE_KEEP 4096		/* bytes of a response line kept */

enum op {
	OP_CONNECT, OP_LOGIN, OP_SELECT, OP_FETCH_FLAGS, OP_FETCH_ENVELOPE,
	OP_FETCH_BODY, OP_STORE, OP_SEARCH_UNSEEN, OP_SEARCH_SUBJECT,
	OP_LOGOUT, OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
	"connect", "login", "select", "fetch_flags", "fetch_envelope",
	"fetch_body", "store_seen", "search_unseen", "search_subject",
	"logout",
};

/* Words of the generated subjects (run-imap uses the same list). */
static const char *const subject_words[] = {
	"report", "meeting", "budget", "invoice", "travel", "release",
	"review", "lunch",
};

struct conn {
	int fd;
	SSL *ssl;
	char *buf;
	size_t size, start, end;
	unsigned tag;
	uint64_t literal_bytes;	/* literal bytes skipped */
	char line[LINE_KEEP];	/* the last logical line, no literals */
};

struct opts {
	const char *mode, *user, *password, *folder, *host;
	int port, clients, iterations, repeat, range, connections, threads;
	int tls, connect_only;
	unsigned seed;
	double time_limit;
};

static struct opts o = {
	.folder = "INBOX", .clients = 20, .iterations = 10, .repeat = 1,
	.range = 20, .connections = 1000, .threads = 4, .seed = 1,
	.time_limit = 300,
};
static SSL_CTX *ssl_ctx;
static double t_start;

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "imap-load: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void wait_fd(int fd, short events)
{
	struct pollfd p = { .fd = fd, .events = events };
	int r;

	do
		r = poll(&p, 1, IO_TIMEOUT_MS);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		die("timeout after %d ms", IO_TIMEOUT_MS);
	if (r < 0)
		die("poll: %s", strerror(errno));
}

/* TLS needs the socket's direction that OpenSSL asked for. */
static void ssl_wait(struct conn *c, int ret, const char *what)
{
	int e = SSL_get_error(c->ssl, ret);

	if (e == SSL_ERROR_WANT_READ)
		wait_fd(c->fd, POLLIN);
	else if (e == SSL_ERROR_WANT_WRITE)
		wait_fd(c->fd, POLLOUT);
	else if (e == SSL_ERROR_ZERO_RETURN)
		die("%s: the server closed the TLS connection", what);
	else
		die("%s: TLS error %d (%s)", what, e,
		    ERR_error_string(ERR_get_error(), NULL));
}

static void fill(struct conn *c)
{
	ssize_t n;

	if (c->start > 0) {
		memmove(c->buf, c->buf + c->start, c->end - c->start);
		c->end -= c->start;
		c->start = 0;
	}
	if (c->end == c->size)
		die("response line longer than %zu bytes", c->size);
	for (;;) {
		if (c->ssl != NULL) {
			int r = SSL_read(c->ssl, c->buf + c->end,
					 (int)(c->size - c->end));

			if (r > 0) {
				c->end += (size_t)r;
				return;
			}
			ssl_wait(c, r, "read");
			continue;
		}
		wait_fd(c->fd, POLLIN);
		n = read(c->fd, c->buf + c->end, c->size - c->end);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			die("read: %s", strerror(errno));
		if (n == 0)
			die("the server closed the connection");
		c->end += (size_t)n;
		return;
	}
}

static void send_all(struct conn *c, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w;

		if (c->ssl != NULL) {
			int r = SSL_write(c->ssl, p, (int)n);

			if (r <= 0) {
				ssl_wait(c, r, "write");
				continue;
			}
			w = r;
		} else {
			wait_fd(c->fd, POLLOUT);
			w = write(c->fd, p, n);
			if (w < 0 && errno != EINTR && errno != EAGAIN)
				die("write: %s", strerror(errno));
		}
		if (w > 0) {
			p += w;
			n -= (size_t)w;
		}
	}
}

/* Drop n literal bytes, counting them. */
static void skip_literal(struct conn *c, uint64_t n)
{
	while (n > 0) {
		size_t have = c->end - c->start;

		if (have == 0) {
			c->start = c->end = 0;
			fill(c);
			continue;
		}
		if (have > n)
			have = (size_t)n;
		c->start += have;
		n -= have;
		c->literal_bytes += have;
	}
}

/* A literal announced at the end of a line: "{123}" or "{123+}". */
static int literal_size(const char *s, size_t n, uint64_t *size_r)
{
	size_t i;
	uint64_t v = 0;

	if (n < 3 || s[n - 1] != '}')
		return 0;
	i = n - 2;
	if (s[i] == '+')
		i--;
	while (i > 0 && s[i] >= '0' && s[i] <= '9')
		i--;
	if (s[i] != '{' || i + 2 > n - 1)
		return 0;
	for (size_t k = i + 1; s[k] >= '0' && s[k] <= '9'; k++)
		v = v * 10 + (uint64_t)(s[k] - '0');
	*size_r = v;
	return 1;
}

/* One logical response line (literals skipped) into c->line. */
static void read_response(struct conn *c)
{
	size_t kept = 0;

	for (;;) {
		char *lf = memchr(c->buf + c->start, '\n', c->end - c->start);
		char *s = c->buf + c->start;
		size_t n;
		uint64_t lit;

		if (lf == NULL) {
			fill(c);
			continue;
		}
		n = (size_t)(lf - s);
		if (n > 0 && lf[-1] == '\r')
			n--;
		if (kept + 1 < sizeof(c->line)) {
			size_t k = n;

			if (kept + k >= sizeof(c->line))
				k = sizeof(c->line) - kept - 1;
			memcpy(c->line + kept, s, k);
			kept += k;
			c->line[kept] = '\0';
		}
		c->start = (size_t)(lf - c->buf) + 1;
		if (!literal_size(s, n, &lit))
			return;
		skip_literal(c, lit);
	}
}

static void expect_greeting(struct conn *c)
{
	read_response(c);
	if (strncmp(c->line, "* OK", 4) != 0)
		die("greeting: %s", c->line);
}

/*
 * Send one command (a tag is prepended) and read to its tagged answer.
 * Untagged lines are passed to on_untagged.  Returns the untagged count.
 */
static unsigned command(struct conn *c, const char *what,
			void (*on_untagged)(struct conn *, void *), void *arg,
			const char *fmt, ...)
{
	char cmd[1200], tag[16];
	int len, tlen;
	unsigned untagged = 0;
	va_list ap;

	tlen = snprintf(tag, sizeof(tag), "a%u", ++c->tag);
	len = snprintf(cmd, sizeof(cmd), "%s ", tag);
	va_start(ap, fmt);
	len += vsnprintf(cmd + len, sizeof(cmd) - (size_t)len - 2, fmt, ap);
	va_end(ap);
	if (len >= (int)sizeof(cmd) - 2)
		die("command too long");
	memcpy(cmd + len, "\r\n", 2);
	send_all(c, cmd, (size_t)len + 2);
	for (;;) {
		read_response(c);
		if (strncmp(c->line, tag, (size_t)tlen) == 0 &&
		    c->line[tlen] == ' ') {
			if (strncmp(c->line + tlen + 1, "OK", 2) != 0)
				die("%s: %s", what, c->line);
			return untagged;
		}
		if (c->line[0] == '*') {
			untagged++;
			if (on_untagged != NULL)
				on_untagged(c, arg);
		}
	}
}

static void conn_open(struct conn *c, size_t bufsize)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, o.host,
		      &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		if ((ntohl(sin->sin_addr.s_addr) >> 24) != 127)
			die("only loopback targets");
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)o.port);
		len = sizeof(*sin);
	} else if (strcmp(o.host, "::1") == 0) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_addr = in6addr_loopback;
		s6->sin6_port = htons((uint16_t)o.port);
		len = sizeof(*s6);
	} else {
		die("bad host %s (loopback addresses only)", o.host);
	}
	c->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		die("socket: %s", strerror(errno));
	if (connect(c->fd, (struct sockaddr *)&ss, len) < 0)
		die("connect: %s", strerror(errno));
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (c->buf == NULL || c->size != bufsize) {
		free(c->buf);
		c->buf = malloc(bufsize);
		if (c->buf == NULL)
			die("out of memory");
		c->size = bufsize;
	}
	c->start = c->end = 0;
	c->tag = 0;
	c->ssl = NULL;
	if (o.tls) {
		int r;

		c->ssl = SSL_new(ssl_ctx);
		if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
			die("SSL_new failed");
		while ((r = SSL_connect(c->ssl)) != 1)
			ssl_wait(c, r, "handshake");
	}
	expect_greeting(c);
}

static void conn_close(struct conn *c)
{
	if (c->ssl != NULL) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	close(c->fd);
	c->fd = -1;
}

static void login(struct conn *c)
{
	/* Quoted strings: the generated user and password need no escape. */
	command(c, "LOGIN", NULL, NULL, "LOGIN \"%s\" \"%s\"", o.user,
		o.password);
}

struct select_info {
	unsigned long exists;
};

static void on_select(struct conn *c, void *arg)
{
	struct select_info *si = arg;
	unsigned long n;
	char word[16];

	if (sscanf(c->line, "* %lu %15s", &n, word) == 2 &&
	    strcmp(word, "EXISTS") == 0)
		si->exists = n;
}

static void on_search(struct conn *c, void *arg)
{
	unsigned long *hits = arg;

	if (strncmp(c->line, "* SEARCH", 8) == 0) {
		for (const char *p = c->line + 8; *p != '\0'; p++)
			if (*p == ' ' && p[1] >= '0' && p[1] <= '9')
				(*hits)++;
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Nearest rank. */
static double percentile(const double *v, size_t n, double p)
{
	size_t k;

	if (n == 0)
		return 0;
	k = (size_t)(p * (double)n + 0.999999);
	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return v[k - 1];
}

/* ---- ops ---------------------------------------------------------------- */

struct samples {
	double *v;
	size_t n, cap;
};

struct client {
	pthread_t thread;
	int index;
	unsigned seed;
	struct samples s[OP_COUNT];
	unsigned long sessions, search_hits;
	uint64_t body_bytes;
};

static void sample_add(struct samples *s, double t)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 64;
		s->v = realloc(s->v, s->cap * sizeof(*s->v));
		if (s->v == NULL)
			die("out of memory");
	}
	s->v[s->n++] = t;
}

static unsigned next_rand(unsigned *state)
{
	*state = *state * 1103515245u + 12345u;
	return (*state >> 8) & 0xffffff;
}

#define TIMED(cl, op, stmt)                                              \
	do {                                                             \
		double t0_ = now();                                      \
		stmt;                                                    \
		sample_add(&(cl)->s[op], now() - t0_);                   \
	} while (0)

static void ops_session(struct client *cl, struct conn *c)
{
	struct select_info si = { 0 };
	unsigned long n;

	TIMED(cl, OP_CONNECT, conn_open(c, 256 * 1024));
	TIMED(cl, OP_LOGIN, login(c));
	if (o.connect_only)
		goto logout;
	TIMED(cl, OP_SELECT, command(c, "SELECT", on_select, &si,
				     "SELECT INBOX"));
	n = si.exists;
	for (int r = 0; r < o.repeat && n > 0; r++) {
		unsigned long a = next_rand(&cl->seed) % n + 1;
		unsigned long b = a + (unsigned long)o.range - 1;
		unsigned long m1 = next_rand(&cl->seed) % n + 1;
		unsigned long m2 = next_rand(&cl->seed) % n + 1;
		const char *w = subject_words[next_rand(&cl->seed) %
					      (sizeof(subject_words) /
					       sizeof(subject_words[0]))];
		unsigned got;
		uint64_t before;

		if (b > n)
			b = n;
		TIMED(cl, OP_FETCH_FLAGS,
		      got = command(c, "FETCH FLAGS", NULL, NULL,
				    "FETCH 1:* (FLAGS)"));
		if (got < n)
			die("FETCH 1:* (FLAGS): %u answers for %lu messages",
			    got, n);
		TIMED(cl, OP_FETCH_ENVELOPE,
		      command(c, "FETCH ENVELOPE", NULL, NULL,
			      "FETCH %lu:%lu (ENVELOPE)", a, b));
		before = c->literal_bytes;
		TIMED(cl, OP_FETCH_BODY,
		      command(c, "FETCH BODY", NULL, NULL,
			      "FETCH %lu (BODY.PEEK[])", m1));
		if (c->literal_bytes == before)
			die("FETCH %lu (BODY.PEEK[]): no literal", m1);
		cl->body_bytes += c->literal_bytes - before;
		TIMED(cl, OP_STORE,
		      command(c, "STORE", NULL, NULL,
			      "STORE %lu +FLAGS (\\Seen)", m2));
		TIMED(cl, OP_SEARCH_UNSEEN,
		      command(c, "SEARCH UNSEEN", on_search, &cl->search_hits,
			      "SEARCH UNSEEN"));
		TIMED(cl, OP_SEARCH_SUBJECT,
		      command(c, "SEARCH SUBJECT", on_search,
			      &cl->search_hits, "SEARCH SUBJECT \"%s\"", w));
	}
logout:
	TIMED(cl, OP_LOGOUT, command(c, "LOGOUT", NULL, NULL, "LOGOUT"));
	conn_close(c);
	cl->sessions++;
}

static void *ops_thread(void *arg)
{
	struct client *cl = arg;
	struct conn c = { .fd = -1 };

	for (int i = 0; i < o.iterations; i++) {
		if (now() - t_start > o.time_limit)
			break;
		ops_session(cl, &c);
	}
	free(c.buf);
	return NULL;
}

static void run_ops(void)
{
	struct client *cls = calloc((size_t)o.clients, sizeof(*cls));
	unsigned long sessions = 0, hits = 0;
	uint64_t body = 0, total_ops = 0;
	double elapsed;

	if (cls == NULL)
		die("out of memory");
	t_start = now();
	for (int i = 0; i < o.clients; i++) {
		cls[i].index = i;
		cls[i].seed = o.seed * 7919u + (unsigned)i * 104729u + 1;
		if (pthread_create(&cls[i].thread, NULL, ops_thread, &cls[i]))
			die("pthread_create failed");
	}
	for (int i = 0; i < o.clients; i++)
		pthread_join(cls[i].thread, NULL);
	elapsed = now() - t_start;
	for (int k = 0; k < OP_COUNT; k++) {
		struct samples all = { 0 };
		double sum = 0;

		for (int i = 0; i < o.clients; i++)
			for (size_t j = 0; j < cls[i].s[k].n; j++) {
				sample_add(&all, cls[i].s[k].v[j]);
				sum += cls[i].s[k].v[j];
			}
		qsort(all.v, all.n, sizeof(*all.v), cmp_double);
		/* connect is not an IMAP command: not counted as an op */
		if (k != OP_CONNECT)
			total_ops += all.n;
		printf("OP name=%s count=%zu p50_ms=%.3f p99_ms=%.3f "
		       "mean_ms=%.3f max_ms=%.3f\n", op_names[k], all.n,
		       percentile(all.v, all.n, 0.50) * 1000,
		       percentile(all.v, all.n, 0.99) * 1000,
		       all.n ? sum / (double)all.n * 1000 : 0,
		       all.n ? all.v[all.n - 1] * 1000 : 0);
		free(all.v);
	}
	for (int i = 0; i < o.clients; i++) {
		sessions += cls[i].sessions;
		hits += cls[i].search_hits;
		body += cls[i].body_bytes;
		for (int k = 0; k < OP_COUNT; k++)
			free(cls[i].s[k].v);
	}
	printf("RESULT clients=%d sessions=%lu ops=%llu elapsed_s=%.4f "
	       "ops_per_s=%.1f sessions_per_s=%.2f body_bytes=%llu "
	       "search_hits=%lu\n", o.clients, sessions,
	       (unsigned long long)total_ops, elapsed,
	       (double)total_ops / elapsed, (double)sessions / elapsed,
	       (unsigned long long)body, hits);
	free(cls);
}

/* ---- big ---------------------------------------------------------------- */

static void on_fetch_count(struct conn *c, void *arg)
{
	unsigned long *count = arg;

	if (strstr(c->line, " FETCH (") != NULL)
		(*count)++;
}

static void run_big(void)
{
	struct conn c = { .fd = -1 };
	double *sel = calloc((size_t)o.repeat, sizeof(double));
	double *fet = calloc((size_t)o.repeat, sizeof(double));
	double *tot = calloc((size_t)o.repeat, sizeof(double));
	unsigned long exists = 0;
	size_t k, n;

	if (sel == NULL || fet == NULL || tot == NULL)
		die("out of memory");
	conn_open(&c, 256 * 1024);
	login(&c);
	for (int r = 0; r < o.repeat; r++) {
		struct select_info si = { 0 };
		unsigned long fetched = 0;
		double t0 = now(), t1, t2;

		command(&c, "SELECT", on_select, &si, "SELECT \"%s\"",
			o.folder);
		t1 = now();
		command(&c, "UID FETCH", on_fetch_count, &fetched,
			"UID FETCH 1:* (FLAGS)");
		t2 = now();
		if (fetched != si.exists)
			die("UID FETCH 1:* (FLAGS): %lu answers, EXISTS %lu",
			    fetched, si.exists);
		exists = si.exists;
		sel[r] = t1 - t0;
		fet[r] = t2 - t1;
		tot[r] = t2 - t0;
		printf("ROUND n=%d select_ms=%.3f fetch_ms=%.3f "
		       "total_ms=%.3f\n", r + 1, sel[r] * 1000,
		       fet[r] * 1000, tot[r] * 1000);
		fflush(stdout);
		command(&c, "UNSELECT", NULL, NULL, "UNSELECT");
	}
	command(&c, "LOGOUT", NULL, NULL, "LOGOUT");
	conn_close(&c);
	printf("RESULT folder=%s messages=%lu repeat=%d first_ms=%.3f "
	       "first_select_ms=%.3f first_fetch_ms=%.3f", o.folder, exists,
	       o.repeat, tot[0] * 1000, sel[0] * 1000, fet[0] * 1000);
	/* The first round may pay for cold caches: the rest are the figure. */
	k = o.repeat > 1 ? 1 : 0;
	n = (size_t)(o.repeat - k);
	qsort(sel + k, n, sizeof(double), cmp_double);
	qsort(fet + k, n, sizeof(double), cmp_double);
	qsort(tot + k, n, sizeof(double), cmp_double);
	printf(" median_ms=%.3f min_ms=%.3f max_ms=%.3f select_median_ms=%.3f"
	       " fetch_median_ms=%.3f\n",
	       percentile(tot + k, n, 0.5) * 1000, tot[k] * 1000,
	       tot[o.repeat - 1] * 1000, percentile(sel + k, n, 0.5) * 1000,
	       percentile(fet + k, n, 0.5) * 1000);
	free(sel);
	free(fet);
	free(tot);
	free(c.buf);
}

/* ---- idle --------------------------------------------------------------- */

struct idler {
	pthread_t thread;
	struct conn *conns;
	int first, count;
	int phase;		/* 0: open, 1: close */
};

static struct conn *idle_conns;

static void idle_enter(struct conn *c)
{
	char cmd[32];
	int len;

	login(c);
	command(c, "SELECT", NULL, NULL, "SELECT \"%s\"", o.folder);
	len = snprintf(cmd, sizeof(cmd), "a%u IDLE\r\n", ++c->tag);
	send_all(c, cmd, (size_t)len);
	for (;;) {
		read_response(c);
		if (c->line[0] == '+')
			return;
		if (c->line[0] != '*')
			die("IDLE: %s", c->line);
	}
}

static void idle_leave(struct conn *c)
{
	char tag[16];
	int tlen = snprintf(tag, sizeof(tag), "a%u", c->tag);

	send_all(c, "DONE\r\n", 6);
	for (;;) {
		read_response(c);
		if (strncmp(c->line, tag, (size_t)tlen) == 0 &&
		    c->line[tlen] == ' ') {
			if (strncmp(c->line + tlen + 1, "OK", 2) != 0)
				die("IDLE DONE: %s", c->line);
			break;
		}
	}
	command(c, "LOGOUT", NULL, NULL, "LOGOUT");
	conn_close(c);
	free(c->buf);
	c->buf = NULL;
}

static void *idle_thread(void *arg)
{
	struct idler *id = arg;

	for (int i = id->first; i < id->first + id->count; i++) {
		if (id->phase == 0) {
			conn_open(&idle_conns[i], 4096);
			idle_enter(&idle_conns[i]);
		} else {
			idle_leave(&idle_conns[i]);
		}
	}
	return NULL;
}

static void idle_phase(struct idler *ids, int phase)
{
	for (int t = 0; t < o.threads; t++) {
		ids[t].phase = phase;
		if (pthread_create(&ids[t].thread, NULL, idle_thread, &ids[t]))
			die("pthread_create failed");
	}
	for (int t = 0; t < o.threads; t++)
		pthread_join(ids[t].thread, NULL);
}

static void run_idle(void)
{
	struct idler *ids = calloc((size_t)o.threads, sizeof(*ids));
	char line[64];
	double t0, t1, t2, setup;
	int per = o.connections / o.threads, extra = o.connections % o.threads;
	int first = 0;

	idle_conns = calloc((size_t)o.connections, sizeof(*idle_conns));
	if (ids == NULL || idle_conns == NULL)
		die("out of memory");
	for (int t = 0; t < o.threads; t++) {
		ids[t].first = first;
		ids[t].count = per + (t < extra);
		first += ids[t].count;
	}
	t0 = now();
	idle_phase(ids, 0);
	setup = now() - t0;
	printf("READY connections=%d tls=%d setup_s=%.2f\n", o.connections,
	       o.tls, setup);
	fflush(stdout);
	if (fgets(line, sizeof(line), stdin) == NULL && ferror(stdin))
		die("stdin: %s", strerror(errno));
	/* Every connection must still be there and leave IDLE cleanly. */
	t1 = now();
	idle_phase(ids, 1);
	t2 = now();
	printf("RESULT connections=%d tls=%d setup_s=%.2f teardown_s=%.2f\n",
	       o.connections, o.tls, setup, t2 - t1);
	free(idle_conns);
	free(ids);
}

/* ---- main --------------------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr,
		"usage: imap-load ops|big|idle --user U --password P "
		"[--clients N] [--iterations N] [--repeat N] [--range N] "
		"[--seed N] [--folder F] [--connections N] [--threads N] "
		"[--tls] [--connect-only] [--time-limit S] HOST:PORT\n");
	exit(2);
}

static int int_arg(const char *s, int lo, int hi)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*end != '\0' || v < lo || v > hi)
		usage();
	return (int)v;
}

int main(int argc, char **argv)
{
	const char *target = NULL;
	static char host[64];
	char *colon;

	if (argc < 2)
		usage();
	o.mode = argv[1];
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--tls") == 0) {
			o.tls = 1;
			continue;
		}
		if (strcmp(a, "--connect-only") == 0) {
			o.connect_only = 1;
			continue;
		}
		if (a[0] != '-') {
			if (target != NULL)
				usage();
			target = a;
			continue;
		}
		if (v == NULL)
			usage();
		i++;
		if (strcmp(a, "--user") == 0)
			o.user = v;
		else if (strcmp(a, "--password") == 0)
			o.password = v;
		else if (strcmp(a, "--folder") == 0)
			o.folder = v;
		else if (strcmp(a, "--clients") == 0)
			o.clients = int_arg(v, 1, 1000);
		else if (strcmp(a, "--iterations") == 0)
			o.iterations = int_arg(v, 1, 100000);
		else if (strcmp(a, "--repeat") == 0)
			o.repeat = int_arg(v, 1, 1000);
		else if (strcmp(a, "--range") == 0)
			o.range = int_arg(v, 1, 100000);
		else if (strcmp(a, "--seed") == 0)
			o.seed = (unsigned)int_arg(v, 0, 1000000000);
		else if (strcmp(a, "--connections") == 0)
			o.connections = int_arg(v, 1, 20000);
		else if (strcmp(a, "--threads") == 0)
			o.threads = int_arg(v, 1, 64);
		else if (strcmp(a, "--time-limit") == 0)
			o.time_limit = int_arg(v, 1, 86400);
		else
			usage();
	}
	if (o.user == NULL || o.password == NULL || target == NULL ||
	    strpbrk(o.user, "\"\\") != NULL ||
	    strpbrk(o.password, "\"\\") != NULL ||
	    strpbrk(o.folder, "\"\\") != NULL)
		usage();
	colon = strrchr(target, ':');
	if (colon == NULL || (size_t)(colon - target) >= sizeof(host))
		usage();
	memcpy(host, target, (size_t)(colon - target));
	host[colon - target] = '\0';
	o.host = host;
	o.port = int_arg(colon + 1, 1, 65535);
	if (strcmp(host, "::1") != 0) {
		struct in_addr a;

		if (inet_pton(AF_INET, host, &a) != 1 ||
		    (ntohl(a.s_addr) >> 24) != 127)
			die("bad host %s (loopback addresses only)", host);
	}
	if (o.threads > o.connections)
		o.threads = o.connections;
	if (o.tls) {
		ssl_ctx = SSL_CTX_new(TLS_client_method());
		if (ssl_ctx == NULL)
			die("SSL_CTX_new failed");
		/* A private self-signed server: no verification. */
		SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_NONE, NULL);
		SSL_CTX_set_min_proto_version(ssl_ctx, TLS1_2_VERSION);
	}
	if (strcmp(o.mode, "ops") == 0)
		run_ops();
	else if (strcmp(o.mode, "big") == 0)
		run_big();
	else if (strcmp(o.mode, "idle") == 0)
		run_idle();
	else
		usage();
	if (ssl_ctx != NULL)
		SSL_CTX_free(ssl_ctx);
	return 0;
}
