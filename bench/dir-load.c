/*
 * dir-load: a load generator for Tern's directory lookups, for benchmarks.
 *
 * Sends recipient lookups or password checks to a running tern-authd and
 * prints operations per second and latency percentiles (p50, p99, max).
 *
 *   --op rcpt   what tern-lmtpd does at RCPT time: resolve the address,
 *               then look up the account of each target (lmtpd/rcpt.c);
 *               tern-smtpd makes the resolve alone.
 *   --op auth   a password check (service imap, client 127.0.0.1).
 *
 *   --mode authclient   through common/authclient on one libuv loop, as a
 *               daemon does: one connection, --clients operations in
 *               flight at once, and the daemon's cache of positive answers
 *               when tern-authd hands out a time to live
 *               (authclient_cache_ttl); the hit rate is reported.
 *   --mode direct       --clients threads, each with its own blocking
 *               connection to run/authd.sock (common/ipcclient), one request
 *               at a time: tern-authd and its backend with no client cache.
 *
 * Addresses: PREFIX1..PREFIXK@DOMAIN (--accounts K); --working-set W draws
 * from W of them (chosen from the seed) instead of all K; --unknown P makes
 * P percent of the operations name addresses that do not exist.  Every
 * answer is checked (a known address resolves to its own account, an
 * unknown one is "not found"; a password check of a known account succeeds,
 * of an unknown one fails); any other answer counts as an error and makes
 * the exit status 1.
 *
 * --passes N runs the load N times on the same connection(s), each pass
 * with fresh random draws from the same working set, and prints one RESULT
 * line per pass (pass 1 fills the cache, pass 2 finds it warm).
 *
 * Bounds: at most --requests operations a pass, and none starts after
 * --time-limit seconds of that pass; every request times out after
 * --io-timeout seconds.  Only a unix socket is used.
 *
 * Built with the tree (noinst, links common/libterncommon.a); run by
 * bench/run-dir.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "authclient.h"
#include "ipc.h"
#include "ipcclient.h"
#include "xalloc.h"

#define CLIENTS_MAX 256
#define REQUESTS_MAX 10000000
#define ACCOUNTS_MAX 10000000
#define PASSES_MAX 10
#define TIME_LIMIT_MAX 3600
#define ADDR_MAX 320
#define TARGETS_MAX 64
#define FRAMES_MAX 1000		/* per reply, direct mode */
#define ERRORS_SHOWN 5

enum op_kind { OP_RCPT, OP_AUTH };
enum mode { MODE_AUTHCLIENT, MODE_DIRECT };

static struct {
	const char *socket;
	enum mode mode;
	enum op_kind op;
	unsigned int clients;
	uint64_t requests;
	unsigned int time_limit, io_timeout, passes, unknown;
	uint64_t accounts, working_set, seed;
	const char *domain, *prefix, *password;
} opt = {
	.mode = MODE_AUTHCLIENT, .op = OP_RCPT, .clients = 8,
	.requests = 20000, .time_limit = 30, .io_timeout = 10, .passes = 1,
	.unknown = 5, .accounts = 100000, .seed = 1, .domain = "bench.test",
	.prefix = "user", .password = "bench-password",
};

/* One pass: what every operation took, and what it got. */
static struct pass {
	unsigned int number;
	double *lat_ms;		/* by completion order */
	double *lat_known_ms, *lat_unknown_ms;	/* the same, split */
	atomic_uint_fast64_t started, done, ok, notfound, authfail, errors;
	atomic_uint_fast64_t done_known, done_unknown;
	uint64_t sent;		/* authclient requests (loop thread) */
	uint64_t t0_ns, t1_ns;
	size_t hits0;		/* authclient's counter at the start */
	size_t requests, hits;		/* during the pass */
} pass;

static uint64_t *working;	/* account numbers of the working set */
static pthread_mutex_t err_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned int errors_shown;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15u;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
	return x ^ (x >> 31);
}

/* The address of operation i of the current pass; *known_r says whether
 * it exists. */
static void op_address(uint64_t i, char *buf, size_t size, bool *known_r)
{
	uint64_t r = mix64(mix64(opt.seed ^ ((uint64_t)pass.number << 40)) ^ i);
	uint64_t n;

	if (r % 100 < opt.unknown) {
		*known_r = false;
		snprintf(buf, size, "nobody%" PRIu64 "@%s", (r >> 8) % 1000000,
			 opt.domain);
		return;
	}
	*known_r = true;
	n = working[(r >> 8) % opt.working_set];
	snprintf(buf, size, "%s%" PRIu64 "@%s", opt.prefix, n, opt.domain);
}

static void note_error(const char *address, const char *fmt, const char *a)
{
	atomic_fetch_add(&pass.errors, 1);
	pthread_mutex_lock(&err_lock);
	if (errors_shown++ < ERRORS_SHOWN)
		fprintf(stderr, "dir-load: %s: %s%s\n", address, fmt,
			a != NULL ? a : "");
	pthread_mutex_unlock(&err_lock);
}

static void record(uint64_t t_start, bool known)
{
	double ms = (double)(now_ns() - t_start) / 1e6;
	uint64_t k = atomic_fetch_add(&pass.done, 1), j;

	if (k < opt.requests)
		pass.lat_ms[k] = ms;
	if (known) {
		j = atomic_fetch_add(&pass.done_known, 1);
		if (j < opt.requests)
			pass.lat_known_ms[j] = ms;
	} else {
		j = atomic_fetch_add(&pass.done_unknown, 1);
		if (j < opt.requests)
			pass.lat_unknown_ms[j] = ms;
	}
}

/* May operation number *i_r start now? */
static bool op_next(uint64_t *i_r)
{
	uint64_t i;

	if (now_ns() - pass.t0_ns >= (uint64_t)opt.time_limit * 1000000000u)
		return false;
	i = atomic_fetch_add(&pass.started, 1);
	if (i >= opt.requests)
		return false;
	*i_r = i;
	return true;
}

/* ---- through common/authclient ---- */

struct slot {
	struct authclient *ac;
	uint64_t t_start;
	char address[ADDR_MAX + 64];
	bool known;
	char (*targets)[ADDR_MAX + 1];
	size_t ntargets, cur;
};

static uv_loop_t *loop;
static struct authclient *ac;
static struct slot *slots;
static unsigned int slots_busy;
static uv_timer_t timer;
static bool deadline_hit;

static void slot_start(struct slot *s);

static void slot_end(struct slot *s)
{
	record(s->t_start, s->known);
	slots_busy--;
	slot_start(s);
}

static void on_account(enum authclient_status st,
		       const struct authclient_account *acct,
		       const char *error, void *ctx)
{
	struct slot *s = ctx;

	if (opt.op == OP_AUTH) {
		if (st == AUTHCLIENT_OK && s->known)
			atomic_fetch_add(&pass.ok, 1);
		else if (st == AUTHCLIENT_AUTHFAIL && !s->known)
			atomic_fetch_add(&pass.authfail, 1);
		else
			note_error(s->address, "auth: ",
				   error != NULL ? error :
				   authclient_status_name(st));
		slot_end(s);
		return;
	}
	if (st != AUTHCLIENT_OK) {
		note_error(s->address, "lookup: ", error != NULL ? error :
			   authclient_status_name(st));
		slot_end(s);
		return;
	}
	if (++s->cur < s->ntargets) {
		pass.sent++;
		authclient_lookup(ac, s->targets[s->cur], on_account, s);
		return;
	}
	atomic_fetch_add(&pass.ok, 1);
	slot_end(s);
}

static void on_resolved(enum authclient_status st,
			const struct authclient_resolution *res,
			const char *error, void *ctx)
{
	struct slot *s = ctx;
	size_t n = 0;

	if (st == AUTHCLIENT_NOTFOUND && !s->known) {
		atomic_fetch_add(&pass.notfound, 1);
		slot_end(s);
		return;
	}
	if (st != AUTHCLIENT_OK || !s->known) {
		note_error(s->address, "resolve: ", error != NULL ? error :
			   authclient_status_name(st));
		slot_end(s);
		return;
	}
	for (size_t i = 0; i < res->ntargets && n < TARGETS_MAX; i++)
		if (res->targets[i].kind == DIR_TARGET_ACCOUNT)
			snprintf(s->targets[n++], ADDR_MAX + 1, "%s",
				 res->targets[i].address);
	if (n != 1 || strcmp(s->targets[0], s->address) != 0) {
		note_error(s->address, "resolve: unexpected targets", NULL);
		slot_end(s);
		return;
	}
	s->ntargets = n;
	s->cur = 0;
	pass.sent++;
	authclient_lookup(ac, s->targets[0], on_account, s);
}

static void slot_start(struct slot *s)
{
	uint64_t i;

	if (!op_next(&i)) {
		if (slots_busy == 0)
			uv_stop(loop);
		return;
	}
	slots_busy++;
	op_address(i, s->address, sizeof(s->address), &s->known);
	s->t_start = now_ns();
	pass.sent++;
	if (opt.op == OP_AUTH)
		authclient_authenticate(ac, s->address, opt.password, "imap",
					"127.0.0.1", on_account, s);
	else
		authclient_resolve(ac, s->address, on_resolved, s);
}

static void on_deadline(uv_timer_t *t)
{
	fprintf(stderr, "dir-load: operations still pending after the time "
		"limit and the request timeout\n");
	deadline_hit = true;
	uv_stop(loop);
}

static void on_pause(uv_timer_t *t)
{
	uv_stop(loop);
}

static void on_wait(uv_timer_t *t)
{
	if (authclient_connected(ac))
		uv_stop(loop);
}

/* Waits (bounded) for the connection and for authd's answer to the
 * client's "watch", so that the first pass may use the cache. */
static int authclient_ready(void)
{
	uint64_t end = now_ns() + (uint64_t)opt.io_timeout * 1000000000u;

	uv_timer_start(&timer, on_wait, 20, 20);
	while (!authclient_connected(ac) && now_ns() < end)
		uv_run(loop, UV_RUN_DEFAULT);
	uv_timer_stop(&timer);
	if (!authclient_connected(ac))
		return -1;
	uv_timer_start(&timer, on_pause, 200, 0);	/* the watch reply */
	uv_run(loop, UV_RUN_DEFAULT);
	return 0;
}

static void run_authclient_pass(void)
{
	slots_busy = 0;
	pass.sent = 0;
	uv_timer_start(&timer, on_deadline,
		       (uint64_t)(opt.time_limit + opt.io_timeout + 5) * 1000,
		       0);
	for (unsigned int c = 0; c < opt.clients; c++)
		slot_start(&slots[c]);
	if (slots_busy > 0)
		uv_run(loop, UV_RUN_DEFAULT);
	uv_timer_stop(&timer);
}

/* ---- directly over the socket ---- */

struct conn {
	struct ipc_client *c;
	uint32_t next_id;
};

/* Sends m and gathers the frames of its reply until one of the final
 * types; targets (resolve) go to targets_r.  The final frame in *final_r. */
static int rpc(struct conn *k, struct ipc_msg *m, struct ipc_msg **final_r,
	       char (*targets)[ADDR_MAX + 1], size_t *ntargets_r,
	       const char **error_r)
{
	int ms = (int)opt.io_timeout * 1000;
	uint32_t id = ++k->next_id;

	if (id == 0)
		id = k->next_id = 1;
	ipc_msg_set_id(m, id);
	if (ipc_client_send(k->c, m, ms, error_r) < 0)
		return -1;
	if (ntargets_r != NULL)
		*ntargets_r = 0;
	for (int n = 0; n < FRAMES_MAX; n++) {
		struct ipc_msg *r;
		const char *kind, *addr;

		if (ipc_client_recv(k->c, ms, &r, error_r) < 0)
			return -1;
		if (ipc_msg_id(r) != id) {
			ipc_msg_free(&r);
			*error_r = "reply to another request";
			return -1;
		}
		if (!ipc_msg_type_is(r, "target")) {
			*final_r = r;
			return 0;
		}
		if (ntargets_r != NULL && *ntargets_r < TARGETS_MAX &&
		    ipc_msg_get_cstr(r, "kind", &kind) == 0 &&
		    strcmp(kind, "account") == 0 &&
		    ipc_msg_get_cstr(r, "address", &addr) == 0)
			snprintf(targets[(*ntargets_r)++], ADDR_MAX + 1, "%s",
				 addr);
		ipc_msg_free(&r);
	}
	*error_r = "too many frames in one reply";
	return -1;
}

/* One operation; -1 when the connection is gone. */
static int direct_op(struct conn *k, const char *address, bool known,
		     char (*targets)[ADDR_MAX + 1])
{
	struct ipc_msg *m, *r = NULL;
	const char *error = NULL, *result;
	size_t n = 0;

	if (opt.op == OP_AUTH) {
		m = ipc_msg_new("authenticate");
		ipc_msg_add_cstr(m, "user", address);
		ipc_msg_add_cstr(m, "password", opt.password);
		ipc_msg_add_cstr(m, "service", "imap");
		ipc_msg_add_cstr(m, "rip", "127.0.0.1");
	} else {
		m = ipc_msg_new("resolve");
		ipc_msg_add_cstr(m, "address", address);
	}
	if (rpc(k, m, &r, targets, &n, &error) < 0) {
		ipc_msg_free(&m);
		note_error(address, "connection: ", error);
		return -1;
	}
	ipc_msg_free(&m);
	if (opt.op == OP_AUTH) {
		if (!ipc_msg_type_is(r, "auth") ||
		    ipc_msg_get_cstr(r, "result", &result) < 0)
			note_error(address, "auth: reply ", ipc_msg_type(r));
		else if (known && strcmp(result, "ok") == 0)
			atomic_fetch_add(&pass.ok, 1);
		else if (!known && strcmp(result, "authfail") == 0)
			atomic_fetch_add(&pass.authfail, 1);
		else
			note_error(address, "auth: ", result);
		ipc_msg_free(&r);
		return 0;
	}
	if (!known) {
		if (ipc_msg_type_is(r, "notfound"))
			atomic_fetch_add(&pass.notfound, 1);
		else
			note_error(address, "resolve: reply ", ipc_msg_type(r));
		ipc_msg_free(&r);
		return 0;
	}
	if (!ipc_msg_type_is(r, "resolved") || n != 1 ||
	    strcmp(targets[0], address) != 0) {
		note_error(address, "resolve: reply ", ipc_msg_type(r));
		ipc_msg_free(&r);
		return 0;
	}
	ipc_msg_free(&r);
	for (size_t t = 0; t < n; t++) {
		m = ipc_msg_new("lookup");
		ipc_msg_add_cstr(m, "address", targets[t]);
		if (rpc(k, m, &r, NULL, NULL, &error) < 0) {
			ipc_msg_free(&m);
			note_error(address, "connection: ", error);
			return -1;
		}
		ipc_msg_free(&m);
		if (!ipc_msg_type_is(r, "account")) {
			note_error(address, "lookup: reply ", ipc_msg_type(r));
			ipc_msg_free(&r);
			return 0;
		}
		ipc_msg_free(&r);
	}
	atomic_fetch_add(&pass.ok, 1);
	return 0;
}

static struct conn *conns;
static pthread_barrier_t barrier;

static void *direct_thread(void *arg)
{
	struct conn *k = arg;
	char (*targets)[ADDR_MAX + 1] = xcalloc(TARGETS_MAX, sizeof(*targets));
	char address[ADDR_MAX + 64];
	uint64_t i, t;
	bool known;

	pthread_barrier_wait(&barrier);
	while (ipc_client_is_connected(k->c) && op_next(&i)) {
		op_address(i, address, sizeof(address), &known);
		t = now_ns();
		if (direct_op(k, address, known, targets) < 0)
			break;
		record(t, known);
	}
	free(targets);
	return NULL;
}

static int direct_connect(void)
{
	const char *error;
	int ms = (int)opt.io_timeout * 1000;

	conns = xcalloc(opt.clients, sizeof(*conns));
	for (unsigned int c = 0; c < opt.clients; c++) {
		conns[c].c = ipc_client_new(0);
		if (ipc_client_connect(conns[c].c, opt.socket, ms, &error) < 0 ||
		    ipc_client_hello(conns[c].c, "tern-authd", 1, ms,
				     &error) < 0) {
			fprintf(stderr, "dir-load: %s: %s\n", opt.socket, error);
			return -1;
		}
	}
	return 0;
}

static void run_direct_pass(void)
{
	pthread_t *th = xcalloc(opt.clients, sizeof(*th));

	pthread_barrier_init(&barrier, NULL, opt.clients + 1);
	for (unsigned int c = 0; c < opt.clients; c++)
		if (pthread_create(&th[c], NULL, direct_thread, &conns[c]) != 0) {
			fprintf(stderr, "dir-load: pthread_create failed\n");
			exit(2);
		}
	pass.t0_ns = now_ns();
	pthread_barrier_wait(&barrier);
	for (unsigned int c = 0; c < opt.clients; c++)
		pthread_join(th[c], NULL);
	pthread_barrier_destroy(&barrier);
	free(th);
}

/* ---- results ---- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double pct(const double *v, uint64_t n, double p)
{
	uint64_t k;

	if (n == 0)
		return 0;
	k = (uint64_t)(p * (double)(n - 1) + 0.5);
	return v[k < n ? k : n - 1];
}

/* Sorts v[0..n) and prints NAME_p50_ms= NAME_p99_ms= NAME_max_ms=. */
static void print_pcts(const char *name, double *v, uint64_t n)
{
	if (n > opt.requests)
		n = opt.requests;
	qsort(v, n, sizeof(double), cmp_double);
	printf(" %sn=%" PRIu64 " %sp50_ms=%.4f %sp99_ms=%.4f %smax_ms=%.4f",
	       name, n, name, pct(v, n, 0.50), name, pct(v, n, 0.99), name,
	       n > 0 ? v[n - 1] : 0);
}

static void report(void)
{
	uint64_t n = atomic_load(&pass.done);
	double secs = (double)(pass.t1_ns - pass.t0_ns) / 1e9;

	if (n > opt.requests)
		n = opt.requests;
	printf("RESULT pass=%u ops=%" PRIu64 " ok=%" PRIu64 " notfound=%"
	       PRIu64 " authfail=%" PRIu64 " errors=%" PRIu64 " elapsed_s=%.3f"
	       " ops_per_s=%.1f requests=%zu cache_hits=%zu hit_rate=%.4f",
	       pass.number, n, (uint64_t)atomic_load(&pass.ok),
	       (uint64_t)atomic_load(&pass.notfound),
	       (uint64_t)atomic_load(&pass.authfail),
	       (uint64_t)atomic_load(&pass.errors), secs,
	       secs > 0 ? (double)n / secs : 0, pass.requests, pass.hits,
	       pass.requests > 0 ? (double)pass.hits / (double)pass.requests
				 : 0);
	print_pcts("", pass.lat_ms, n);
	print_pcts("known_", pass.lat_known_ms,
		   atomic_load(&pass.done_known));
	print_pcts("unknown_", pass.lat_unknown_ms,
		   atomic_load(&pass.done_unknown));
	printf("\n");
	printf("pass %u: %" PRIu64 " operations in %.2f s: %.0f/s, p50 %.3f "
	       "ms, p99 %.3f ms, max %.3f ms (known addresses: p99 %.3f ms), "
	       "errors %" PRIu64, pass.number, n, secs,
	       secs > 0 ? (double)n / secs : 0, pct(pass.lat_ms, n, 0.50),
	       pct(pass.lat_ms, n, 0.99), n > 0 ? pass.lat_ms[n - 1] : 0,
	       pct(pass.lat_known_ms, atomic_load(&pass.done_known) <
		   opt.requests ? atomic_load(&pass.done_known) :
		   opt.requests, 0.99),
	       (uint64_t)atomic_load(&pass.errors));
	if (opt.mode == MODE_AUTHCLIENT)
		printf(", cache hits %zu of %zu requests", pass.hits,
		       pass.requests);
	printf("\n");
	fflush(stdout);
}

/* ---- options ---- */

static void usage(int status)
{
	fprintf(status == 0 ? stdout : stderr,
		"usage: dir-load [options] --socket ROOT/run/authd.sock\n"
		"  --mode authclient|direct  (authclient)\n"
		"  --op rcpt|auth            (rcpt)\n"
		"  --clients N               operations at once (8)\n"
		"  --requests N              operations a pass at most (20000)\n"
		"  --time-limit S            no operation starts after S s (30)\n"
		"  --io-timeout S            per request (10)\n"
		"  --passes N                (1)\n"
		"  --accounts K              PREFIX1..PREFIXK@DOMAIN (100000)\n"
		"  --working-set W           draw from W of them (all)\n"
		"  --unknown P               percent unknown addresses (5)\n"
		"  --domain D --prefix P --password PW --seed N\n");
	exit(status);
}

static uint64_t num(const char *s, uint64_t min, uint64_t max,
		    const char *what)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *s == '\0' || *end != '\0' || *s == '-' ||
	    v < min || v > max) {
		fprintf(stderr, "dir-load: --%s: %s is not a number from %"
			PRIu64 " to %" PRIu64 "\n", what, s, min, max);
		exit(2);
	}
	return v;
}

static void parse_args(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "mode", required_argument, NULL, 'm' },
		{ "op", required_argument, NULL, 'o' },
		{ "clients", required_argument, NULL, 'c' },
		{ "requests", required_argument, NULL, 'n' },
		{ "time-limit", required_argument, NULL, 't' },
		{ "io-timeout", required_argument, NULL, 'i' },
		{ "passes", required_argument, NULL, 'p' },
		{ "accounts", required_argument, NULL, 'a' },
		{ "working-set", required_argument, NULL, 'w' },
		{ "unknown", required_argument, NULL, 'u' },
		{ "domain", required_argument, NULL, 'd' },
		{ "prefix", required_argument, NULL, 'P' },
		{ "password", required_argument, NULL, 'W' },
		{ "seed", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
		switch (ch) {
		case 's': opt.socket = optarg; break;
		case 'm':
			if (strcmp(optarg, "authclient") == 0)
				opt.mode = MODE_AUTHCLIENT;
			else if (strcmp(optarg, "direct") == 0)
				opt.mode = MODE_DIRECT;
			else
				usage(2);
			break;
		case 'o':
			if (strcmp(optarg, "rcpt") == 0)
				opt.op = OP_RCPT;
			else if (strcmp(optarg, "auth") == 0)
				opt.op = OP_AUTH;
			else
				usage(2);
			break;
		case 'c': opt.clients = (unsigned int)num(optarg, 1,
			  CLIENTS_MAX, "clients"); break;
		case 'n': opt.requests = num(optarg, 1, REQUESTS_MAX,
			  "requests"); break;
		case 't': opt.time_limit = (unsigned int)num(optarg, 1,
			  TIME_LIMIT_MAX, "time-limit"); break;
		case 'i': opt.io_timeout = (unsigned int)num(optarg, 1, 600,
			  "io-timeout"); break;
		case 'p': opt.passes = (unsigned int)num(optarg, 1,
			  PASSES_MAX, "passes"); break;
		case 'a': opt.accounts = num(optarg, 1, ACCOUNTS_MAX,
			  "accounts"); break;
		case 'w': opt.working_set = num(optarg, 1, ACCOUNTS_MAX,
			  "working-set"); break;
		case 'u': opt.unknown = (unsigned int)num(optarg, 0, 100,
			  "unknown"); break;
		case 'd': opt.domain = optarg; break;
		case 'P': opt.prefix = optarg; break;
		case 'W': opt.password = optarg; break;
		case 'S': opt.seed = num(optarg, 0, UINT64_MAX, "seed"); break;
		case 'h': usage(0); break;
		default: usage(2);
		}
	}
	if (optind != argc || opt.socket == NULL)
		usage(2);
	if (opt.working_set == 0 || opt.working_set > opt.accounts)
		opt.working_set = opt.accounts;
	if (strlen(opt.domain) + strlen(opt.prefix) + 24 > ADDR_MAX) {
		fprintf(stderr, "dir-load: domain and prefix too long\n");
		exit(2);
	}
}

/* W distinct account numbers out of 1..K (all of them when W = K). */
static void pick_working_set(void)
{
	uint64_t k = opt.accounts;
	uint64_t *all = xcalloc(k, sizeof(*all));

	for (uint64_t i = 0; i < k; i++)
		all[i] = i + 1;
	for (uint64_t i = 0; i < opt.working_set; i++) {
		uint64_t j = i + mix64(opt.seed * 31 + i) % (k - i), t;

		t = all[i];
		all[i] = all[j];
		all[j] = t;
	}
	working = all;
}

int main(int argc, char **argv)
{
	struct authclient_settings set = { 0 };
	int status = 0;

	parse_args(argc, argv);
	setvbuf(stdout, NULL, _IOLBF, 0);
	pick_working_set();
	pass.lat_ms = xcalloc(opt.requests, sizeof(double));
	pass.lat_known_ms = xcalloc(opt.requests, sizeof(double));
	pass.lat_unknown_ms = xcalloc(opt.requests, sizeof(double));
	if (opt.mode == MODE_AUTHCLIENT) {
		loop = uv_default_loop();
		uv_timer_init(loop, &timer);
		set.timeout_ms = (uint64_t)opt.io_timeout * 1000;
		set.queue_max = CLIENTS_MAX * 2;
		ac = authclient_new(loop, opt.socket, &set);
		slots = xcalloc(opt.clients, sizeof(*slots));
		for (unsigned int c = 0; c < opt.clients; c++)
			slots[c].targets = xcalloc(TARGETS_MAX,
						   sizeof(*slots[c].targets));
		if (authclient_ready() < 0) {
			fprintf(stderr, "dir-load: cannot connect to %s\n",
				opt.socket);
			return 1;
		}
	} else if (direct_connect() < 0) {
		return 1;
	}
	printf("dir-load: %s, %s, %u clients, %" PRIu64 " operations a pass "
	       "at most, %u s, %" PRIu64 " accounts, working set %" PRIu64
	       ", %u%% unknown\n", opt.mode == MODE_DIRECT ? "direct" :
	       "authclient", opt.op == OP_AUTH ? "auth" : "rcpt", opt.clients,
	       opt.requests, opt.time_limit, opt.accounts, opt.working_set,
	       opt.unknown);
	for (unsigned int p = 1; p <= opt.passes; p++) {
		pass.number = p;
		atomic_store(&pass.started, 0);
		atomic_store(&pass.done, 0);
		atomic_store(&pass.done_known, 0);
		atomic_store(&pass.done_unknown, 0);
		atomic_store(&pass.ok, 0);
		atomic_store(&pass.notfound, 0);
		atomic_store(&pass.authfail, 0);
		atomic_store(&pass.errors, 0);
		if (opt.mode == MODE_AUTHCLIENT) {
			/* Each operation's requests: resolve + lookup, or
			 * authenticate; the hits come from the client. */
			pass.hits0 = authclient_cache_hits(ac);
			pass.t0_ns = now_ns();
			run_authclient_pass();
			pass.t1_ns = now_ns();
			pass.hits = authclient_cache_hits(ac) - pass.hits0;
			pass.requests = (size_t)pass.sent;
		} else {
			run_direct_pass();
			pass.t1_ns = now_ns();
		}
		report();
		if (atomic_load(&pass.errors) > 0 ||
		    atomic_load(&pass.done) == 0 || deadline_hit) {
			status = 1;
			break;
		}
	}
	if (opt.mode == MODE_AUTHCLIENT) {
		authclient_free(&ac);
		uv_close((uv_handle_t *)&timer, NULL);
		uv_run(loop, UV_RUN_DEFAULT);
		uv_loop_close(loop);
		for (unsigned int c = 0; c < opt.clients; c++)
			free(slots[c].targets);
		free(slots);
	} else {
		for (unsigned int c = 0; c < opt.clients; c++)
			ipc_client_free(&conns[c].c);
		free(conns);
	}
	free(pass.lat_ms);
	free(pass.lat_known_ms);
	free(pass.lat_unknown_ms);
	free(working);
	return status;
}
