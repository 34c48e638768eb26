/* test_memcache.c: route keys and the memcached reply parser, fed one
 * byte at a time as well as whole; the client against a loopback stand-in
 * server that answers late, wrongly or not at all. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <uv.h>

#include "compat.h"
#include "memcache.h"
#include "str.h"

/* ---- keys ---- */

static void test_route_key(void **state)
{
	struct str *k = str_new(16, 128);

	(void)state;
	assert_int_equal(memcache_route_key("ann@example.com", k), 0);
	assert_string_equal(str_c(k), "tern:route:71d4f55f72fa128dfb468a1a39"
			    "01507c804b74316488744d769d7f4b16696476");
	assert_true(memcache_key_valid(str_c(k)));
	assert_int_equal(str_len(k), strlen(MEMCACHE_ROUTE_PREFIX) + 64);
	str_free(&k);
}

static void test_route_key_case_and_payloads(void **state)
{
	static const char *const evil[] = {
		"a b@example.com",
		"ann@example.com\r\nflush_all\r\n",
		"x\r\nset tern:route:abc 0 0 1\r\nz\r\n",
		"\x01\x7f\xff@example.com",
		"delete tern:route:anything",
	};
	struct str *a = str_new(16, 128), *b = str_new(16, 128);
	char big[1026];

	(void)state;
	assert_int_equal(memcache_route_key("Ann@Example.COM", a), 0);
	assert_int_equal(memcache_route_key("ann@example.com", b), 0);
	assert_string_equal(str_c(a), str_c(b));
	for (size_t i = 0; i < TERN_NELEM(evil); i++) {
		assert_int_equal(memcache_route_key(evil[i], a), 0);
		assert_true(memcache_key_valid(str_c(a)));
		assert_int_equal(str_len(a), 75);
		assert_null(strpbrk(str_c(a), " \r\n"));
	}
	memset(big, 'a', 300);
	big[300] = '\0';
	assert_int_equal(memcache_route_key(big, a), 0);
	assert_int_equal(str_len(a), 75);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(memcache_route_key(big, a), -1);	/* 1024+ */
	assert_int_equal(memcache_route_key("", a), -1);
	str_free(&a);
	str_free(&b);
}

static void test_key_and_value_valid(void **state)
{
	char k[MEMCACHE_KEY_MAX + 2];

	(void)state;
	assert_true(memcache_key_valid("tern:route:00"));
	assert_false(memcache_key_valid(""));
	assert_false(memcache_key_valid("a b"));
	assert_false(memcache_key_valid("a\r\nflush_all"));
	assert_false(memcache_key_valid("a\x7f"));
	memset(k, 'k', sizeof(k) - 1);
	k[sizeof(k) - 1] = '\0';
	assert_false(memcache_key_valid(k));
	k[MEMCACHE_KEY_MAX] = '\0';
	assert_true(memcache_key_valid(k));

	assert_true(memcache_route_value_valid("mbox2.example.com", 17));
	assert_true(memcache_route_value_valid("[::1]", 5));
	assert_false(memcache_route_value_valid("", 0));
	assert_false(memcache_route_value_valid("a b", 3));
	assert_false(memcache_route_value_valid("a\0b", 3));
	assert_false(memcache_route_value_valid("host\r\n", 6));
}

/* ---- the parser ---- */

struct got {
	int r;
	enum memcache_result result;
	char value[MEMCACHE_VALUE_MAX + 1];
	size_t value_len;
	char error[64];
};

/* Feeds text with step bytes at a time (0: whole), expecting op/key for
 * every reply, and collects up to max results; stops at an error. */
static size_t feed_all(const char *text, size_t len, size_t step,
		       enum memcache_op op, const char *key,
		       size_t value_max, struct got *out, size_t max)
{
	struct memcache_parser *p = memcache_parser_new(value_max);
	const char *pos = text, *end = text + len;
	size_t n = 0;
	bool failed = false;

	memcache_parser_expect(p, op, key);
	while (pos < end && n < max && !failed) {
		const char *ce = step == 0 || (size_t)(end - pos) < step ?
				 end : pos + step;

		while (n < max && pos < ce) {
			struct memcache_reply rep;
			const char *error = NULL;
			int r = memcache_parser_feed(p, &pos, ce, &rep, &error);
			struct got *g = &out[n];

			if (r == 0)
				break;
			memset(g, 0, sizeof(*g));
			g->r = r;
			n++;
			if (r < 0) {
				assert_non_null(error);
				str_lcpy(g->error, error, sizeof(g->error));
				failed = true;
				break;
			}
			g->result = rep.result;
			if (rep.result == MEMCACHE_HIT) {
				assert_true(rep.value_len <= value_max);
				memcpy(g->value, rep.value, rep.value_len);
				g->value_len = rep.value_len;
				assert_int_equal(rep.value[rep.value_len], 0);
			}
			memcache_parser_expect(p, op, key);
		}
	}
	memcache_parser_free(&p);
	assert_null(p);
	return n;
}

/* Both ways (whole and byte at a time) must agree. */
static size_t feed_both(const char *text, enum memcache_op op,
			const char *key, struct got *out, size_t max)
{
	struct got *whole = calloc(max, sizeof(*whole));
	size_t n1 = feed_all(text, strlen(text), 0, op, key, 64, whole, max);
	size_t n2 = feed_all(text, strlen(text), 1, op, key, 64, out, max);

	assert_int_equal(n1, n2);
	for (size_t i = 0; i < n1; i++) {
		assert_int_equal(whole[i].r, out[i].r);
		assert_int_equal(whole[i].result, out[i].result);
		assert_int_equal(whole[i].value_len, out[i].value_len);
		assert_memory_equal(whole[i].value, out[i].value,
				    out[i].value_len + 1);
		assert_string_equal(whole[i].error, out[i].error);
	}
	free(whole);
	return n2;
}

static void test_parse_get(void **state)
{
	struct got g[4];
	size_t n;

	(void)state;
	n = feed_both("VALUE k1 0 5\r\nmbox2\r\nEND\r\n", MEMCACHE_GET, "k1",
		      g, 4);
	assert_int_equal(n, 1);
	assert_int_equal(g[0].r, 1);
	assert_int_equal(g[0].result, MEMCACHE_HIT);
	assert_string_equal(g[0].value, "mbox2");

	/* Binary-looking data inside a value is data, not a line. */
	n = feed_both("VALUE k1 7 6\r\na\r\nEND\r\nEND\r\n", MEMCACHE_GET,
		      "k1", g, 4);
	assert_int_equal(n, 1);
	assert_int_equal(g[0].result, MEMCACHE_HIT);
	assert_int_equal(g[0].value_len, 6);
	assert_memory_equal(g[0].value, "a\r\nEND", 6);

	n = feed_both("VALUE k1 0 0\r\n\r\nEND\r\n", MEMCACHE_GET, "k1", g, 4);
	assert_int_equal(g[0].result, MEMCACHE_HIT);
	assert_int_equal(g[0].value_len, 0);

	/* Pipelined: miss, then hit. */
	n = feed_both("END\r\nVALUE k1 0 1\r\nx\r\nEND\r\n", MEMCACHE_GET,
		      "k1", g, 4);
	assert_int_equal(n, 2);
	assert_int_equal(g[0].result, MEMCACHE_MISS);
	assert_int_equal(g[1].result, MEMCACHE_HIT);
	assert_string_equal(g[1].value, "x");
}

static void test_parse_store_delete(void **state)
{
	struct got g[4];

	(void)state;
	assert_int_equal(feed_both("STORED\r\nNOT_STORED\r\nEXISTS\r\n",
				   MEMCACHE_SET, NULL, g, 4), 3);
	assert_int_equal(g[0].result, MEMCACHE_STORED);
	assert_int_equal(g[1].result, MEMCACHE_NOT_STORED);
	assert_int_equal(g[2].result, MEMCACHE_NOT_STORED);
	assert_int_equal(feed_both("DELETED\r\nNOT_FOUND\r\n", MEMCACHE_DELETE,
				   NULL, g, 4), 2);
	assert_int_equal(g[0].result, MEMCACHE_DELETED);
	assert_int_equal(g[1].result, MEMCACHE_NOT_FOUND);
	assert_int_equal(feed_both("ERROR\r\nCLIENT_ERROR bad\r\n"
				   "SERVER_ERROR out of memory\r\n",
				   MEMCACHE_DELETE, NULL, g, 4), 3);
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(g[i].result, MEMCACHE_SERVER_ERROR);
}

/* Each of these is one clear error, never a reply. */
static void test_parse_errors(void **state)
{
	static const struct {
		const char *text;
		enum memcache_op op;
		const char *error;
	} cases[] = {
		{ "VALUE other 0 1\r\nx\r\nEND\r\n", MEMCACHE_GET,
		  "VALUE for a key not asked for" },
		{ "VALUE k1 0 65\r\n", MEMCACHE_GET, "value too long" },
		{ "VALUE k1 0 99999999999999999999999\r\n", MEMCACHE_GET,
		  "malformed VALUE line" },
		{ "VALUE k1 0 -1\r\n", MEMCACHE_GET, "malformed VALUE line" },
		{ "VALUE k1 0 1 2 3\r\n", MEMCACHE_GET,
		  "malformed VALUE line" },
		{ "VALUE k1 0 1 \r\n", MEMCACHE_GET, "malformed VALUE line" },
		{ "VALUE k1 x 1\r\n", MEMCACHE_GET, "malformed VALUE line" },
		{ "VALUE k1 0 1\r\nxy\r\n", MEMCACHE_GET,
		  "value not followed by CRLF" },
		{ "VALUE k1 0 1\r\nx\r\nVALUE k1 0 1\r\n", MEMCACHE_GET,
		  "more than one VALUE" },
		{ "VALUE k1 0 1\r\nx\r\nERROR\r\n", MEMCACHE_GET,
		  "error after VALUE" },
		{ "END\n", MEMCACHE_GET, "bare LF in reply" },
		{ "EN\rD\r\n", MEMCACHE_GET, "bad byte in reply line" },
		{ "STORED\r\n", MEMCACHE_GET, "unexpected reply" },
		{ "END\r\n", MEMCACHE_SET, "unexpected reply" },
		{ "DELETED \r\n", MEMCACHE_DELETE, "unexpected reply" },
		{ "flush_all\r\n", MEMCACHE_DELETE, "unexpected reply" },
	};
	struct got g[4];

	(void)state;
	for (size_t i = 0; i < TERN_NELEM(cases); i++) {
		size_t n = feed_both(cases[i].text, cases[i].op, "k1", g, 4);

		assert_int_equal(n, 1);
		assert_int_equal(g[0].r, -1);
		assert_string_equal(g[0].error, cases[i].error);
	}
}

static void test_parse_line_bound_and_idle(void **state)
{
	char *text = malloc(100000);
	struct memcache_parser *p = memcache_parser_new(64);
	struct memcache_reply rep;
	const char *pos, *end, *error = NULL;
	struct got g[2];
	size_t n;

	(void)state;
	memset(text, 'A', 99998);
	memcpy(text + 99998, "\r\n", 2);
	for (size_t step = 0; step <= 1; step++) {
		n = feed_all(text, 100000, step, MEMCACHE_GET, "k1", 64, g, 2);
		assert_int_equal(n, 1);
		assert_string_equal(g[0].error, "reply line too long");
	}
	/* Bytes nobody asked for. */
	pos = "END\r\nEND\r\n";
	end = pos + 10;
	memcache_parser_expect(p, MEMCACHE_GET, "k1");
	assert_int_equal(memcache_parser_feed(p, &pos, end, &rep, &error), 1);
	assert_int_equal(rep.result, MEMCACHE_MISS);
	assert_int_equal(memcache_parser_feed(p, &pos, end, &rep, &error), -1);
	assert_string_equal(error, "data without a request");
	/* Sticky until the next expect. */
	assert_int_equal(memcache_parser_feed(p, &pos, end, &rep, &error), -1);
	memcache_parser_free(&p);
	free(text);
}

/* ---- the client against a stand-in server ---- */

struct fake {
	uv_tcp_t server;
	uv_tcp_t *peers[8];
	size_t npeers;
	const char *answer;	/* sent for each request line; NULL: silent */
	struct str *seen;
	int port;
};

struct result {
	int calls;
	enum memcache_result r;
	char value[64];
};

static void fake_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	static char b[4096];

	(void)h;
	(void)hint;
	*buf = uv_buf_init(b, sizeof(b));
}

static void fake_written(uv_write_t *w, int status)
{
	(void)status;
	free(w);
}

static void fake_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	struct fake *f = st->data;

	if (n <= 0)
		return;
	(void)!str_append(f->seen, buf->base, (size_t)n);
	if (f->answer != NULL && memchr(buf->base, '\n', (size_t)n) != NULL) {
		uv_write_t *w = malloc(sizeof(*w));
		uv_buf_t b = uv_buf_init((char *)f->answer,
					 (unsigned)strlen(f->answer));

		assert_int_equal(uv_write(w, st, &b, 1, fake_written), 0);
	}
}

static void free_handle(uv_handle_t *h)
{
	free(h);
}

static void fake_accept(uv_stream_t *server, int status)
{
	struct fake *f = server->data;
	uv_tcp_t *peer = calloc(1, sizeof(*peer));

	assert_int_equal(status, 0);
	uv_tcp_init(server->loop, peer);
	peer->data = f;
	assert_int_equal(uv_accept(server, (uv_stream_t *)peer), 0);
	if (f->npeers == TERN_NELEM(f->peers)) {
		uv_close((uv_handle_t *)peer, free_handle);
		return;
	}
	f->peers[f->npeers++] = peer;
	uv_read_start((uv_stream_t *)peer, fake_alloc, fake_read);
}

static void fake_start(uv_loop_t *loop, struct fake *f, const char *answer)
{
	struct sockaddr_in a;
	struct sockaddr_storage got;
	int len = sizeof(got);

	memset(f, 0, sizeof(*f));
	f->answer = answer;
	f->seen = str_new(256, 65536);
	uv_tcp_init(loop, &f->server);
	f->server.data = f;
	uv_ip4_addr("127.0.0.1", 0, &a);
	assert_int_equal(uv_tcp_bind(&f->server, (struct sockaddr *)&a, 0), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&f->server, 8, fake_accept),
			 0);
	uv_tcp_getsockname(&f->server, (struct sockaddr *)&got, &len);
	f->port = ntohs(((struct sockaddr_in *)&got)->sin_port);
}

static void fake_stop(struct fake *f)
{
	uv_close((uv_handle_t *)&f->server, NULL);
	for (size_t i = 0; i < f->npeers; i++)
		uv_close((uv_handle_t *)f->peers[i], free_handle);
	f->npeers = 0;
	str_free(&f->seen);
}

static void on_result(enum memcache_result r, const char *value, size_t len,
		      void *ctx)
{
	struct result *res = ctx;

	res->calls++;
	res->r = r;
	if (value != NULL)
		str_lcpy(res->value, value, len + 1 < sizeof(res->value) ?
			 len + 1 : sizeof(res->value));
}

static void tick_cb(uv_timer_t *t)
{
	(void)t;
}

/* Runs the loop until the result came or 3 s passed. */
static void wait_result(uv_loop_t *loop, struct result *res)
{
	uint64_t until = uv_now(loop) + 3000;
	uv_timer_t tick;

	/* A tick, so that a run never sleeps past an answer given from a
	 * timer. */
	uv_timer_init(loop, &tick);
	uv_timer_start(&tick, tick_cb, 10, 10);
	while (res->calls == 0 && uv_now(loop) < until) {
		uv_run(loop, UV_RUN_ONCE);
		uv_update_time(loop);
	}
	uv_close((uv_handle_t *)&tick, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
}

static struct memcache *client(uv_loop_t *loop, const char *spec,
			       uint64_t timeout_ms)
{
	const char *servers[] = { spec };
	struct memcache_settings set = { servers, 1, timeout_ms, 0 };
	const char *error = NULL;
	struct memcache *mc = memcache_new(loop, &set, &error);

	assert_non_null(mc);
	return mc;
}

static void test_client_roundtrip_and_timeout(void **state)
{
	uv_loop_t loop;
	struct fake f;
	struct memcache *mc;
	struct result res = { 0 };
	char spec[64];

	(void)state;
	uv_loop_init(&loop);
	fake_start(&loop, &f, "VALUE tern:route:k 0 5\r\nmbox2\r\nEND\r\n");
	snprintf(spec, sizeof(spec), "127.0.0.1:%d", f.port);
	mc = client(&loop, spec, 500);
	memcache_get(mc, "tern:route:k", on_result, &res);
	assert_int_equal(res.calls, 0);		/* never from inside */
	wait_result(&loop, &res);
	assert_int_equal(res.calls, 1);
	assert_int_equal(res.r, MEMCACHE_HIT);
	assert_string_equal(res.value, "mbox2");
	assert_non_null(strstr(str_c(f.seen), "get tern:route:k\r\n"));

	/* A key that would smuggle a command never leaves. */
	memset(&res, 0, sizeof(res));
	memcache_get(mc, "k\r\nflush_all", on_result, &res);
	wait_result(&loop, &res);
	assert_int_equal(res.r, MEMCACHE_FAILED);
	assert_null(strstr(str_c(f.seen), "flush_all"));

	/* Silent server: the request times out. */
	f.answer = NULL;
	memset(&res, 0, sizeof(res));
	memcache_get(mc, "tern:route:k", on_result, &res);
	wait_result(&loop, &res);
	assert_int_equal(res.calls, 1);
	assert_int_equal(res.r, MEMCACHE_FAILED);

	memcache_free(&mc);
	fake_stop(&f);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_client_down_and_garbage(void **state)
{
	uv_loop_t loop;
	struct fake f;
	struct memcache *mc;
	struct result res = { 0 };
	char spec[64];
	const char *bad[] = { "localhost:11211", "1.2.3.4", "1.2.3.4:0",
			      "[::1:5", "relative/path" };
	const char *error;

	(void)state;
	uv_loop_init(&loop);
	for (size_t i = 0; i < TERN_NELEM(bad); i++) {
		struct memcache_settings set = { &bad[i], 1, 100, 0 };

		error = NULL;
		assert_null(memcache_new(&loop, &set, &error));
		assert_non_null(error);
	}
	/* Nothing listens: fails quickly, not at the timeout. */
	fake_start(&loop, &f, "garbage\r\n");
	snprintf(spec, sizeof(spec), "127.0.0.1:%d", f.port);
	fake_stop(&f);
	uv_run(&loop, UV_RUN_DEFAULT);
	mc = client(&loop, spec, 2000);
	memcache_delete(mc, "tern:route:k", on_result, &res);
	wait_result(&loop, &res);
	assert_int_equal(res.r, MEMCACHE_FAILED);
	memcache_free(&mc);
	uv_run(&loop, UV_RUN_DEFAULT);

	/* A reply that breaks the protocol fails the request. */
	fake_start(&loop, &f, "garbage\r\n");
	snprintf(spec, sizeof(spec), "127.0.0.1:%d", f.port);
	mc = client(&loop, spec, 2000);
	memset(&res, 0, sizeof(res));
	memcache_set(mc, "tern:route:k", "v", 1, 300, on_result, &res);
	wait_result(&loop, &res);
	assert_int_equal(res.r, MEMCACHE_FAILED);
	assert_non_null(strstr(str_c(f.seen),
			       "set tern:route:k 0 300 1\r\nv\r\n"));
	memcache_free(&mc);
	fake_stop(&f);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_route_key),
		cmocka_unit_test(test_route_key_case_and_payloads),
		cmocka_unit_test(test_key_and_value_valid),
		cmocka_unit_test(test_parse_get),
		cmocka_unit_test(test_parse_store_delete),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_parse_line_bound_and_idle),
		cmocka_unit_test(test_client_roundtrip_and_timeout),
		cmocka_unit_test(test_client_down_and_garbage),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
