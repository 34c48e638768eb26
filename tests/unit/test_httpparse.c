/* test_httpparse.c: the HTTP head parser and the chunked scanner, every
 * input fed whole and one byte at a time. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "compat.h"
#include "httpparse.h"

/* What one parse gave, copied out of the parser. */
struct got {
	int r;
	unsigned status;	/* error status */
	char method[16], target[64], reason[32];
	unsigned code, minor;
	size_t nfields;
	enum http_body body;
	uint64_t length;
	bool keep_alive, expect;
	size_t used;		/* bytes taken up to the end of the head */
	char host[32];
};

/* Feeds text in steps of step bytes (0: whole) until a head or an error. */
static void parse(enum http_kind kind, bool head_req, const char *text,
		  size_t step, size_t head_max, size_t fields_max,
		  struct got *g)
{
	struct http_parser *p = http_parser_new(kind, head_max, fields_max);
	const char *pos = text, *end = text + strlen(text);
	const struct http_head *h = NULL;
	const char *error = NULL;

	memset(g, 0, sizeof(*g));
	http_parser_reset(p, head_req);
	g->r = 0;
	while (pos < end) {
		const char *ce = step == 0 || (size_t)(end - pos) < step ?
				 end : pos + step;

		g->r = http_parser_feed(p, &pos, ce, &h, &g->status, &error);
		if (g->r != 0)
			break;
		assert_ptr_equal(pos, ce);
	}
	if (g->r == 1) {
		const struct http_field *f = http_head_field(h, "Host");

		if (h->method != NULL)
			snprintf(g->method, sizeof(g->method), "%s", h->method);
		if (h->target != NULL)
			snprintf(g->target, sizeof(g->target), "%s", h->target);
		if (h->reason != NULL)
			snprintf(g->reason, sizeof(g->reason), "%s", h->reason);
		if (f != NULL)
			snprintf(g->host, sizeof(g->host), "%s", f->value);
		g->code = h->status;
		g->minor = h->minor;
		g->nfields = h->nfields;
		g->body = h->body;
		g->length = h->content_length;
		g->keep_alive = h->keep_alive;
		g->expect = h->expect_continue;
		g->used = (size_t)(pos - text);
		assert_int_equal(h->head_len, g->used);
	} else if (g->r < 0) {
		assert_non_null(error);
		if (getenv("TEST_VERBOSE") != NULL)
			fprintf(stderr, "# %u %s\n", g->status, error);
	}
	http_parser_free(&p);
	assert_null(p);
}

/* Both ways must agree; the whole-input result is returned. */
static void parse2(enum http_kind kind, bool head_req, const char *text,
		   struct got *g)
{
	struct got one;

	parse(kind, head_req, text, 1, 65536, 100, &one);
	parse(kind, head_req, text, 0, 65536, 100, g);
	assert_int_equal(one.r, g->r);
	assert_int_equal(one.status, g->status);
	assert_int_equal(one.body, g->body);
	assert_int_equal(one.used, g->used);
	assert_string_equal(one.target, g->target);
}

static void expect_error(enum http_kind kind, const char *text,
			 unsigned status)
{
	struct got g;

	parse2(kind, false, text, &g);
	assert_int_equal(g.r, -1);
	assert_int_equal(g.status, status);
}

static void test_simple_get(void **state)
{
	struct got g;

	(void)state;
	parse2(HTTP_REQUEST, false, "GET /a/b?c=d HTTP/1.1\r\nHost: ex.com  "
	       "\r\nAccept: */*\r\n\r\nGET /next", &g);
	assert_int_equal(g.r, 1);
	assert_string_equal(g.method, "GET");
	assert_string_equal(g.target, "/a/b?c=d");
	assert_string_equal(g.host, "ex.com");
	assert_int_equal(g.minor, 1);
	assert_int_equal(g.nfields, 2);
	assert_int_equal(g.body, HTTP_BODY_NONE);
	assert_true(g.keep_alive);
	/* stops right after the empty line: the next request stays */
	assert_int_equal(g.used, strlen("GET /a/b?c=d HTTP/1.1\r\nHost: "
					"ex.com  \r\nAccept: */*\r\n\r\n"));
}

static void test_versions_and_keepalive(void **state)
{
	struct got g;

	(void)state;
	parse2(HTTP_REQUEST, false, "GET / HTTP/1.0\r\n\r\n", &g);
	assert_int_equal(g.r, 1);
	assert_int_equal(g.minor, 0);
	assert_false(g.keep_alive);
	parse2(HTTP_REQUEST, false, "GET / HTTP/1.0\r\nConnection: "
	       "Keep-Alive\r\n\r\n", &g);
	assert_true(g.keep_alive);
	parse2(HTTP_REQUEST, false, "GET / HTTP/1.1\r\nHost: a\r\n"
	       "Connection: foo, close\r\n\r\n", &g);
	assert_false(g.keep_alive);
	/* leading CRLF before a request line is ignored */
	parse2(HTTP_REQUEST, false, "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	       &g);
	assert_int_equal(g.r, 1);
	expect_error(HTTP_REQUEST, "GET / HTTP/2.0\r\n\r\n", 505);
	expect_error(HTTP_REQUEST, "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505);
	expect_error(HTTP_REQUEST, "GET / HTTP/1.1x\r\nHost: a\r\n\r\n", 400);
	expect_error(HTTP_REQUEST, "GET / http/1.1\r\nHost: a\r\n\r\n", 400);
	expect_error(HTTP_REQUEST, "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	expect_error(HTTP_REQUEST, "GET /\r\n\r\n", 400);
	expect_error(HTTP_REQUEST, "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	expect_error(HTTP_REQUEST, "GET / HTTP/1.1\r\n\r\n", 400); /* Host */
	expect_error(HTTP_REQUEST, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n"
		     "\r\n", 400);
	expect_error(HTTP_REQUEST, "\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n"
		     "Host: a\r\n\r\n", 400);
}

static void test_bodies(void **state)
{
	struct got g;

	(void)state;
	parse2(HTTP_REQUEST, false, "POST /x HTTP/1.1\r\nHost: a\r\n"
	       "Content-Length: 42\r\nExpect: 100-continue\r\n\r\n", &g);
	assert_int_equal(g.r, 1);
	assert_int_equal(g.body, HTTP_BODY_LENGTH);
	assert_int_equal(g.length, 42);
	assert_true(g.expect);
	/* the same length twice, or as a list, is one length */
	parse2(HTTP_REQUEST, false, "POST /x HTTP/1.1\r\nHost: a\r\n"
	       "Content-Length: 7\r\nContent-Length: 7, 7\r\n\r\n", &g);
	assert_int_equal(g.r, 1);
	assert_int_equal(g.length, 7);
	parse2(HTTP_REQUEST, false, "POST /x HTTP/1.1\r\nHost: a\r\n"
	       "Content-Length: 0\r\n\r\n", &g);
	assert_int_equal(g.body, HTTP_BODY_NONE);
	parse2(HTTP_REQUEST, false, "POST /x HTTP/1.1\r\nHost: a\r\n"
	       "Transfer-Encoding: gzip, CHUNKED\r\n\r\n", &g);
	assert_int_equal(g.r, 1);
	assert_int_equal(g.body, HTTP_BODY_CHUNKED);
}

static void test_smuggling(void **state)
{
	(void)state;
	expect_error(HTTP_REQUEST, "POST / HTTP/1.1\r\nHost: a\r\n"
		     "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
		     400);
	expect_error(HTTP_REQUEST, "POST / HTTP/1.1\r\nHost: a\r\n"
		     "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 400);
	expect_error(HTTP_REQUEST, "POST / HTTP/1.1\r\nHost: a\r\n"
		     "Content-Length: 5, 6\r\n\r\n", 400);
	expect_error(HTTP_REQUEST, "POST / HTTP/1.1\r\nHost: a\r\n"
		     "Content-Length: +5\r\n\r\n", 400);
	expect_error(HTTP_REQUEST, "POST / HTTP/1.1\r\nHost: a\r\n"
		     "Content-Length: 0x5\r\n\r\n", 400);
	expect_error(HTTP_REQUEST, "POST / HTTP/1.1\r\nHost: a\r\n"
		     "Content-Length: \r\n\r\n", 400);
	expect_error(HTTP_REQUEST, "POST / HTTP/1.1\r\nHost: a\r\n"
		     "Content-Length: 99999999999999999999\r\n\r\n", 400);
	expect_error(HTTP_REQUEST, "POST / HTTP/1.1\r\nHost: a\r\n"
		     "Transfer-Encoding: chunked, gzip\r\n\r\n", 400);
	expect_error(HTTP_REQUEST, "POST / HTTP/1.1\r\nHost: a\r\n"
		     "Transfer-Encoding: gzip\r\n\r\n", 400);
	expect_error(HTTP_REQUEST, "POST / HTTP/1.1\r\nHost: a\r\n"
		     "Transfer-Encoding: chunked\r\nTransfer-Encoding: "
		     "chunked\r\n\r\n", 400);
	expect_error(HTTP_REQUEST, "POST / HTTP/1.0\r\n"
		     "Transfer-Encoding: chunked\r\n\r\n", 400);
	expect_error(HTTP_REQUEST, "POST / HTTP/1.1\r\nHost: a\r\n"
		     "Transfer-Encoding : chunked\r\n\r\n", 400);
	expect_error(HTTP_REQUEST, "POST / HTTP/1.1\r\nHost: a\r\n"
		     "Transfer-Encoding:\r\n chunked\r\n\r\n", 400);
	expect_error(HTTP_REQUEST, "GET / HTTP/1.1\nHost: a\r\n\r\n", 400);
	expect_error(HTTP_REQUEST, "GET / HTTP/1.1\r\nHost: a\n\r\n", 400);
	expect_error(HTTP_REQUEST, "GET / HTTP/1.1\r\nHost: a\r\n\n", 400);
	expect_error(HTTP_REQUEST, "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
		     400);
	expect_error(HTTP_REQUEST, "GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n",
		     400);
	expect_error(HTTP_REQUEST, "GET / HTTP/1.1\r\n: a\r\n\r\n", 400);
	expect_error(HTTP_REQUEST, "GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400);
}

static void test_limits(void **state)
{
	char big[4096];
	struct got g;
	size_t n = 0;

	(void)state;
	n += (size_t)snprintf(big + n, sizeof(big) - n,
			      "GET / HTTP/1.1\r\nHost: a\r\n");
	while (n < 2000)
		n += (size_t)snprintf(big + n, sizeof(big) - n,
				      "X-Pad: 0123456789\r\n");
	snprintf(big + n, sizeof(big) - n, "\r\n");
	parse(HTTP_REQUEST, false, big, 1, 1024, 1000, &g);
	assert_int_equal(g.r, -1);
	assert_int_equal(g.status, 431);
	parse(HTTP_REQUEST, false, big, 0, 4096, 10, &g);
	assert_int_equal(g.r, -1);
	assert_int_equal(g.status, 431);
	parse(HTTP_REQUEST, false, big, 7, 4096, 1000, &g);
	assert_int_equal(g.r, 1);
	assert_true(g.nfields > 90);
	/* exactly headers_max fields pass */
	parse(HTTP_REQUEST, false, "GET / HTTP/1.1\r\nHost: a\r\nB: c\r\n\r\n",
	      1, 1024, 2, &g);
	assert_int_equal(g.r, 1);
	parse(HTTP_REQUEST, false, "GET / HTTP/1.1\r\nHost: a\r\nB: c\r\n"
	      "D: e\r\n\r\n", 1, 1024, 2, &g);
	assert_int_equal(g.status, 431);
}

static void test_responses(void **state)
{
	struct got g;

	(void)state;
	parse2(HTTP_RESPONSE, false, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
	       "\r\nabc", &g);
	assert_int_equal(g.r, 1);
	assert_int_equal(g.code, 200);
	assert_string_equal(g.reason, "OK");
	assert_int_equal(g.body, HTTP_BODY_LENGTH);
	assert_true(g.keep_alive);
	parse2(HTTP_RESPONSE, true, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
	       "\r\n", &g);
	assert_int_equal(g.body, HTTP_BODY_NONE);
	parse2(HTTP_RESPONSE, false, "HTTP/1.1 204 No Content\r\n\r\n", &g);
	assert_int_equal(g.body, HTTP_BODY_NONE);
	assert_true(g.keep_alive);
	parse2(HTTP_RESPONSE, false, "HTTP/1.1 304 Not Modified\r\nContent-"
	       "Length: 10\r\n\r\n", &g);
	assert_int_equal(g.body, HTTP_BODY_NONE);
	parse2(HTTP_RESPONSE, false, "HTTP/1.1 100 Continue\r\n\r\n", &g);
	assert_int_equal(g.code, 100);
	assert_int_equal(g.body, HTTP_BODY_NONE);
	parse2(HTTP_RESPONSE, false, "HTTP/1.0 200 OK\r\nServer: x\r\n\r\n",
	       &g);
	assert_int_equal(g.body, HTTP_BODY_CLOSE);
	assert_false(g.keep_alive);
	parse2(HTTP_RESPONSE, false, "HTTP/1.1 200 OK\r\nTransfer-Encoding: "
	       "chunked\r\nContent-Length: 5\r\n\r\n", &g);
	assert_int_equal(g.body, HTTP_BODY_CHUNKED);
	parse2(HTTP_RESPONSE, false, "HTTP/1.1 200 OK\r\nTransfer-Encoding: "
	       "gzip\r\n\r\n", &g);
	assert_int_equal(g.body, HTTP_BODY_CLOSE);
	parse2(HTTP_RESPONSE, false, "HTTP/1.1 404\r\nContent-Length: 0\r\n"
	       "\r\n", &g);
	assert_int_equal(g.r, 1);
	assert_int_equal(g.code, 404);
	expect_error(HTTP_RESPONSE, "HTTP/1.1 20 OK\r\n\r\n", 400);
	expect_error(HTTP_RESPONSE, "HTTP/1.1 2000 OK\r\n\r\n", 400);
	expect_error(HTTP_RESPONSE, "HTTP/1.1 099 OK\r\n\r\n", 400);
	expect_error(HTTP_RESPONSE, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n"
		     "Content-Length: 2\r\n\r\n", 400);
}

/* Scans body in steps; returns the result and the bytes used overall. */
static int chunked(const char *body, size_t step, size_t *used_r)
{
	struct http_chunked c;
	size_t len = strlen(body), off = 0;
	const char *error = NULL;

	http_chunked_init(&c);
	while (off < len) {
		size_t n = step == 0 || len - off < step ? len - off : step;
		size_t used = 0;
		int r = http_chunked_feed(&c, body + off, n, &used, &error);

		if (r < 0) {
			assert_non_null(error);
			return -1;
		}
		off += used;
		if (r == 1) {
			*used_r = off;
			return 1;
		}
		assert_int_equal(used, n);
	}
	*used_r = off;
	return 0;
}

static void chunked_both(const char *body, int want, size_t want_used)
{
	size_t u1 = 0, u0 = 0;

	assert_int_equal(chunked(body, 1, &u1), want);
	assert_int_equal(chunked(body, 0, &u0), want);
	if (want >= 0) {
		assert_int_equal(u1, want_used);
		assert_int_equal(u0, want_used);
	}
}

static void test_chunked(void **state)
{
	static const char a[] = "5\r\nhello\r\n1A;name=\"v\"\r\n"
				"abcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n";
	static const char b[] = "3 ; x\r\nabc\r\n0\r\nX-Sum: 1\r\n"
				"Y: 2\r\n\r\n";

	(void)state;
	chunked_both(a, 1, strlen(a));
	chunked_both("0\r\n\r\nGET / HTTP/1.1", 1, 5);
	chunked_both(b, 1, strlen(b));
	chunked_both("5\r\nhel", 0, 6);
	chunked_both("\r\n", -1, 0);
	chunked_both("g\r\n", -1, 0);
	chunked_both("5\nhello\r\n0\r\n\r\n", -1, 0);
	chunked_both("5\r\nhello\n0\r\n\r\n", -1, 0);
	chunked_both("5\r\nhelloX\r\n0\r\n\r\n", -1, 0);
	chunked_both("0\r\nX: 1\n\r\n", -1, 0);
	chunked_both("0\r\n X: 1\r\n\r\n", -1, 0);
	chunked_both("1000000000000000\r\n", -1, 0);
	chunked_both("-1\r\n", -1, 0);
	chunked_both("5 5\r\n", -1, 0);
	chunked_both("5;a\x01\r\n", -1, 0);
	chunked_both("0\r\n\r", 0, 4);
}

static void test_lists(void **state)
{
	static const char v[] = " a, ,b ,Close ";

	(void)state;
	assert_true(http_list_has(v, strlen(v), "close"));
	assert_true(http_list_has(v, strlen(v), "a"));
	assert_true(http_list_has(v, strlen(v), "b"));
	assert_false(http_list_has(v, strlen(v), "c"));
	assert_false(http_list_has("", 0, "a"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple_get),
		cmocka_unit_test(test_versions_and_keepalive),
		cmocka_unit_test(test_bodies),
		cmocka_unit_test(test_smuggling),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_responses),
		cmocka_unit_test(test_chunked),
		cmocka_unit_test(test_lists),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
