/*
 * authclient-probe: drives common/authclient against a running tern-authd,
 * for the integration tests.
 *
 * Usage: authclient-probe SOCKET [TIMEOUT_MS].  Reads one command a line
 * from stdin, runs it through authclient on a libuv loop, and prints one
 * result line on stdout before reading the next:
 *   lookup ADDR                    -> "lookup ok ADDR STATUS MAILHOST"
 *   resolve ADDR                   -> "resolve ok LOCAL T1,T2,..."
 *   domain NAME                    -> "domain ok" / "domain notfound"
 *   auth USER PASS SERVICE [RIP]   -> "auth ok ADDR" / "auth authfail" ...
 *   connect SERVICE RIP            -> "connect ok COUNT RATE"
 *   disconnect SERVICE RIP         -> "disconnect sent"
 *   conns SERVICE RIP              -> "conns ok COUNT RATE"
 *   gal TEXT [LIMIT]               -> "gal ok N ADDR:KIND:NAME|..."
 *   hits                           -> "hits N" (answers from the cache)
 *   quit
 * Failures print "CMD STATUS: ERROR".  Exit status 0 after quit or EOF.
 */
#include "config.h"

#include <stdlib.h>
#include <unistd.h>

#include "compat.h"
#include "authclient.h"
#include "str.h"

#define PROBE_LINE_MAX 8192
#define PROBE_ARGS_MAX 6

static uv_loop_t *loop;
static struct authclient *ac;
static uv_pipe_t in;
static struct str *inbuf;
static bool busy, eof;

static void next_command(void);

static void done(void)
{
	fflush(stdout);
	busy = false;
	next_command();
}

static void print_fail(const char *cmd, enum authclient_status st,
		       const char *error)
{
	printf("%s %s%s%s\n", cmd, authclient_status_name(st),
	       error != NULL ? ": " : "", error != NULL ? error : "");
}

static void account_cb(enum authclient_status st,
		       const struct authclient_account *a, const char *error,
		       void *ctx)
{
	const char *cmd = ctx;

	if (st != AUTHCLIENT_OK)
		print_fail(cmd, st, error);
	else if (strcmp(cmd, "auth") == 0)
		printf("auth ok %s\n", a->address);
	else
		printf("lookup ok %s %s %s\n", a->address,
		       dir_account_status_name(a->status),
		       a->mailhost[0] != '\0' ? a->mailhost : "-");
	done();
}

static void resolve_cb(enum authclient_status st,
		       const struct authclient_resolution *res,
		       const char *error, void *ctx)
{
	if (st != AUTHCLIENT_OK) {
		print_fail("resolve", st, error);
	} else {
		printf("resolve ok %d ", res->local_domain ? 1 : 0);
		for (size_t i = 0; i < res->ntargets; i++)
			printf("%s%s", i > 0 ? "," : "",
			       res->targets[i].address);
		printf("\n");
	}
	done();
}

static void domain_cb(enum authclient_status st, const char *error,
		      void *ctx)
{
	print_fail("domain", st, error);
	done();
}

static void gal_cb(enum authclient_status st,
		   const struct authclient_gal_entry *e, size_t n,
		   const char *error, void *ctx)
{
	if (st != AUTHCLIENT_OK) {
		print_fail("gal", st, error);
	} else {
		printf("gal ok %zu ", n);
		for (size_t i = 0; i < n; i++)
			printf("%s%s:%s:%s", i > 0 ? "|" : "", e[i].address,
			       dir_gal_kind_name(e[i].kind),
			       e[i].display_name);
		printf("\n");
	}
	done();
}

static void count_cb(enum authclient_status st, unsigned int count,
		     unsigned int rate, const char *error, void *ctx)
{
	if (st != AUTHCLIENT_OK)
		print_fail(ctx, st, error);
	else
		printf("%s ok %u %u\n", (const char *)ctx, count, rate);
	done();
}

static void run(char **av, int ac_n)
{
	busy = true;
	if (ac_n == 2 && strcmp(av[0], "lookup") == 0) {
		authclient_lookup(ac, av[1], account_cb, "lookup");
	} else if (ac_n == 2 && strcmp(av[0], "resolve") == 0) {
		authclient_resolve(ac, av[1], resolve_cb, NULL);
	} else if (ac_n == 2 && strcmp(av[0], "domain") == 0) {
		authclient_domain(ac, av[1], domain_cb, NULL);
	} else if ((ac_n == 4 || ac_n == 5) && strcmp(av[0], "auth") == 0) {
		authclient_authenticate(ac, av[1], av[2], av[3],
					ac_n == 5 ? av[4] : "", account_cb,
					"auth");
	} else if ((ac_n == 2 || ac_n == 3) && strcmp(av[0], "gal") == 0) {
		authclient_gal_search(ac, av[1], ac_n == 3 ?
				      (unsigned int)atoi(av[2]) : 0, gal_cb,
				      NULL);
	} else if (ac_n == 3 && strcmp(av[0], "connect") == 0) {
		authclient_connect_notify(ac, av[1], av[2], count_cb,
					  "connect");
	} else if (ac_n == 3 && strcmp(av[0], "conns") == 0) {
		authclient_connections(ac, av[1], av[2], count_cb, "conns");
	} else if (ac_n == 3 && strcmp(av[0], "disconnect") == 0) {
		authclient_disconnect_notify(ac, av[1], av[2]);
		printf("disconnect sent\n");
		done();
	} else if (ac_n == 1 && strcmp(av[0], "hits") == 0) {
		printf("hits %zu\n", authclient_cache_hits(ac));
		done();
	} else if (ac_n == 1 && strcmp(av[0], "quit") == 0) {
		eof = true;
		busy = false;
		next_command();
	} else {
		printf("usage error\n");
		done();
	}
}

static void finish(void)
{
	uv_read_stop((uv_stream_t *)&in);
	if (!uv_is_closing((uv_handle_t *)&in))
		uv_close((uv_handle_t *)&in, NULL);
	authclient_free(&ac);
}

static void next_command(void)
{
	char *line, *nl, *av[PROBE_ARGS_MAX], *save = NULL;
	int n = 0;

	if (busy || ac == NULL)
		return;
	nl = memchr(str_c(inbuf), '\n', str_len(inbuf));
	if (nl == NULL) {
		if (eof)
			finish();
		return;
	}
	line = strndup(str_c(inbuf), (size_t)(nl - str_c(inbuf)));
	str_consume(inbuf, (size_t)(nl - str_c(inbuf)) + 1);
	for (char *w = strtok_r(line, " ", &save); w != NULL && n < PROBE_ARGS_MAX;
	     w = strtok_r(NULL, " ", &save))
		av[n++] = w;
	if (n == 0)
		next_command();
	else
		run(av, n);
	free(line);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	static char mem[4096];

	buf->base = mem;
	buf->len = sizeof(mem);
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	if (n < 0) {
		eof = true;
		uv_read_stop(s);
	} else if (str_append(inbuf, buf->base, (size_t)n) < 0) {
		fprintf(stderr, "authclient-probe: line too long\n");
		exit(2);
	}
	next_command();
}

int main(int argc, char **argv)
{
	struct authclient_settings set = { 0 };

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: authclient-probe SOCKET [TIMEOUT_MS]\n");
		return 2;
	}
	if (argc == 3)
		set.timeout_ms = strtoull(argv[2], NULL, 10);
	setvbuf(stdout, NULL, _IOLBF, 0);
	loop = uv_default_loop();
	inbuf = str_new(256, PROBE_LINE_MAX);
	ac = authclient_new(loop, argv[1], &set);
	uv_pipe_init(loop, &in, 0);
	if (uv_pipe_open(&in, 0) < 0 ||
	    uv_read_start((uv_stream_t *)&in, alloc_cb, read_cb) < 0) {
		fprintf(stderr, "authclient-probe: stdin must be a pipe\n");
		return 2;
	}
	uv_run(loop, UV_RUN_DEFAULT);
	uv_loop_close(loop);
	str_free(&inbuf);
	return 0;
}
