/*
 * pop3-load.c: the POP3 download load of bench/run-pop3.
 *
 * Runs --sessions sessions one after the other against one POP3 server on
 * 127.0.0.1 (or ::1): connect, greeting, USER/PASS, UIDL, RETR 1..N (one
 * at a time, each waiting for its answer, as fetchmail and most clients
 * do; --pipeline sends all RETRs at once), QUIT.  Every reply is checked;
 * each RETR answer is read to its terminating dot and its bytes counted.
 * Prints one RESULT line: sessions, messages, bytes (message bytes as
 * received, dot-stuffed, with CRLF), elapsed seconds, messages/s, MB/s
 * (10^6 bytes), and the session time p50 and max; then one PHASES line:
 * the median time of each phase of a session in ms (greeting, login =
 * USER+PASS, uidl, retr = all RETRs, quit), so a report can say where
 * the time goes.
 *
 * Bounds: at most 100 sessions of at most 1,000,000 messages; every read
 * and write times out after 60 s; loopback addresses only.  Standalone C
 * (no Tern code), built by run-pop3 with the system compiler.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE (256 * 1024)
#define IO_TIMEOUT_MS 60000
#define PHASES 5	/* greeting, login, uidl, retr, quit */

static const char *const phase_names[PHASES] = {
	"greeting", "login", "uidl", "retr", "quit",
};

struct client {
	int fd;
	char buf[BUF_SIZE];
	size_t start, end;
	uint64_t bytes;		/* multi-line payload bytes read */
};

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "pop3-load: ");
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

static void fill(struct client *c)
{
	ssize_t n;

	if (c->start > 0) {
		memmove(c->buf, c->buf + c->start, c->end - c->start);
		c->end -= c->start;
		c->start = 0;
	}
	if (c->end == sizeof(c->buf))
		die("line longer than the buffer");
	wait_fd(c->fd, POLLIN);
	n = read(c->fd, c->buf + c->end, sizeof(c->buf) - c->end);
	if (n < 0)
		die("read: %s", strerror(errno));
	if (n == 0)
		die("the server closed the connection");
	c->end += (size_t)n;
}

static void send_all(struct client *c, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w;

		wait_fd(c->fd, POLLOUT);
		w = write(c->fd, p, n);
		if (w < 0 && errno != EINTR && errno != EAGAIN)
			die("write: %s", strerror(errno));
		if (w > 0) {
			p += w;
			n -= (size_t)w;
		}
	}
}

/* The next line (without CRLF) into line (truncated at size). */
static void read_line(struct client *c, char *line, size_t size)
{
	for (;;) {
		char *lf = memchr(c->buf + c->start, '\n', c->end - c->start);

		if (lf != NULL) {
			size_t n = (size_t)(lf - (c->buf + c->start));

			if (n > 0 && lf[-1] == '\r')
				n--;
			if (n >= size)
				n = size - 1;
			memcpy(line, c->buf + c->start, n);
			line[n] = '\0';
			c->start = (size_t)(lf - c->buf) + 1;
			return;
		}
		fill(c);
	}
}

static void expect_ok(struct client *c, const char *what)
{
	char line[1024];

	read_line(c, line, sizeof(line));
	if (strncmp(line, "+OK", 3) != 0)
		die("%s: %s", what, line);
}

/* The body of a multi-line answer, up to and including ".\r\n". */
static void read_multi(struct client *c)
{
	for (;;) {
		char *p = c->buf + c->start, *e = c->buf + c->end;

		while (p < e) {
			char *lf = memchr(p, '\n', (size_t)(e - p));

			if (lf == NULL)
				break;
			if (lf - p == 2 && p[0] == '.' && p[1] == '\r') {
				c->start = (size_t)(lf + 1 - c->buf);
				return;
			}
			c->bytes += (uint64_t)(lf + 1 - p);
			p = lf + 1;
		}
		c->start = (size_t)(p - c->buf);
		fill(c);
	}
}

static int connect_to(const char *host, int port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, one = 1;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&ss)->sin_addr)
	    == 1) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		if ((ntohl(sin->sin_addr.s_addr) >> 24) != 127)
			die("only loopback targets");
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		len = sizeof(*sin);
	} else if (strcmp(host, "::1") == 0) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_addr = in6addr_loopback;
		s6->sin6_port = htons((uint16_t)port);
		len = sizeof(*s6);
	} else {
		die("bad host %s (loopback addresses only)", host);
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&ss, len) < 0)
		die("connect: %s", strerror(errno));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void usage(void)
{
	fprintf(stderr, "usage: pop3-load --user U --password P [--sessions "
		"N] [--pipeline] HOST:PORT\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *user = NULL, *password = NULL, *target = NULL;
	int sessions = 5, pipeline = 0;
	static struct client c;
	double *times, *phase[PHASES], t0, total;
	uint64_t messages = 0, bytes = 0;
	char line[1024], host[64], *colon;
	int port;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--user") == 0 && i + 1 < argc)
			user = argv[++i];
		else if (strcmp(argv[i], "--password") == 0 && i + 1 < argc)
			password = argv[++i];
		else if (strcmp(argv[i], "--sessions") == 0 && i + 1 < argc)
			sessions = atoi(argv[++i]);
		else if (strcmp(argv[i], "--pipeline") == 0)
			pipeline = 1;
		else if (argv[i][0] != '-' && target == NULL)
			target = argv[i];
		else
			usage();
	}
	if (user == NULL || password == NULL || target == NULL ||
	    sessions < 1 || sessions > 100)
		usage();
	colon = strrchr(target, ':');
	if (colon == NULL || (size_t)(colon - target) >= sizeof(host))
		usage();
	memcpy(host, target, (size_t)(colon - target));
	host[colon - target] = '\0';
	port = atoi(colon + 1);
	times = calloc((size_t)sessions, sizeof(*times));
	for (int p = 0; p < PHASES; p++)
		phase[p] = calloc((size_t)sessions, sizeof(double));
	t0 = now();
	for (int s = 0; s < sessions; s++) {
		double st = now();
		unsigned n = 0;
		char cmd[1200];

		c.fd = connect_to(host, port);
		c.start = c.end = 0;
		c.bytes = 0;
		expect_ok(&c, "greeting");
		phase[0][s] = now() - st;
		snprintf(cmd, sizeof(cmd), "USER %s\r\n", user);
		send_all(&c, cmd, strlen(cmd));
		expect_ok(&c, "USER");
		snprintf(cmd, sizeof(cmd), "PASS %s\r\n", password);
		send_all(&c, cmd, strlen(cmd));
		expect_ok(&c, "PASS");
		phase[1][s] = now() - st - phase[0][s];
		send_all(&c, "UIDL\r\n", 6);
		expect_ok(&c, "UIDL");
		/* Count the listing's lines, then forget its bytes. */
		for (;;) {
			read_line(&c, line, sizeof(line));
			if (strcmp(line, ".") == 0)
				break;
			n++;
		}
		if (n > 1000000)
			die("too many messages: %u", n);
		phase[2][s] = now() - st;
		if (pipeline) {
			for (unsigned i = 1; i <= n; i++) {
				int len = snprintf(cmd, sizeof(cmd),
						   "RETR %u\r\n", i);
				send_all(&c, cmd, (size_t)len);
			}
		}
		for (unsigned i = 1; i <= n; i++) {
			if (!pipeline) {
				int len = snprintf(cmd, sizeof(cmd),
						   "RETR %u\r\n", i);
				send_all(&c, cmd, (size_t)len);
			}
			expect_ok(&c, "RETR");
			read_multi(&c);
		}
		phase[3][s] = now() - st;
		send_all(&c, "QUIT\r\n", 6);
		expect_ok(&c, "QUIT");
		close(c.fd);
		times[s] = now() - st;
		phase[4][s] = times[s] - phase[3][s];
		phase[3][s] -= phase[2][s];
		phase[2][s] -= phase[0][s] + phase[1][s];
		messages += n;
		bytes += c.bytes;
	}
	total = now() - t0;
	qsort(times, (size_t)sessions, sizeof(*times), cmp_double);
	printf("RESULT sessions=%d messages=%llu bytes=%llu elapsed_s=%.4f "
	       "msgs_per_s=%.1f mb_per_s=%.2f session_p50_s=%.4f "
	       "session_max_s=%.4f\n", sessions,
	       (unsigned long long)messages, (unsigned long long)bytes, total,
	       (double)messages / total, (double)bytes / total / 1e6,
	       times[(sessions - 1) / 2], times[sessions - 1]);
	printf("PHASES");
	for (int p = 0; p < PHASES; p++) {
		qsort(phase[p], (size_t)sessions, sizeof(double), cmp_double);
		printf(" %s_ms=%.2f", phase_names[p],
		       phase[p][(sessions - 1) / 2] * 1000);
		free(phase[p]);
	}
	printf("\n");
	free(times);
	return 0;
}
