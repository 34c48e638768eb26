/* test_dns.c: common/dns: MX ordering (preference, random order among
 * equal preferences, duplicates), null MX, the mapping of lookup results
 * to status codes, name server lists, and lookups on the loop against a
 * name server that is not there or never answers (temporary failure,
 * never a callback from inside the call, pending lookups ended by
 * dns_resolver_free()). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <ares.h>
#include <cmocka.h>
#include <uv.h>

#include "compat.h"
#include "dns.h"
#include "str.h"

static uint32_t counter_rnd(void *ctx)
{
	uint32_t *x = ctx;

	*x = *x * 1103515245u + 12345u;
	return *x >> 8;
}

static void set_host(struct dns_host *h, const char *name, unsigned pref)
{
	memset(h, 0, sizeof(*h));
	str_lcpy(h->name, name, sizeof(h->name));
	h->pref = pref;
}

static void test_order_by_preference(void **state)
{
	struct dns_host h[5];
	uint32_t seed = 7;
	size_t n;

	(void)state;
	set_host(&h[0], "c.test", 30);
	set_host(&h[1], "a.test", 10);
	set_host(&h[2], "d.test", 40);
	set_host(&h[3], "b.test", 20);
	set_host(&h[4], "A.TEST", 50);	/* duplicate: dropped */
	n = dns_mx_order(h, 5, counter_rnd, &seed);
	assert_int_equal(n, 4);
	assert_string_equal(h[0].name, "a.test");
	assert_string_equal(h[1].name, "b.test");
	assert_string_equal(h[2].name, "c.test");
	assert_string_equal(h[3].name, "d.test");
}

static void test_duplicate_keeps_best_preference(void **state)
{
	struct dns_host h[3];
	uint32_t seed = 1;
	size_t n;

	(void)state;
	set_host(&h[0], "x.test", 50);
	set_host(&h[1], "y.test", 20);
	set_host(&h[2], "x.test", 5);
	n = dns_mx_order(h, 3, counter_rnd, &seed);
	assert_int_equal(n, 2);
	assert_string_equal(h[0].name, "x.test");
	assert_int_equal(h[0].pref, 5);
	assert_string_equal(h[1].name, "y.test");
}

/* Equal preferences come in every order over many draws; the lower
 * preference is always first. */
static void test_random_among_equal(void **state)
{
	bool seen[3] = { false, false, false };
	uint32_t seed = 12345;

	(void)state;
	for (int round = 0; round < 300; round++) {
		struct dns_host h[4];
		size_t n;

		set_host(&h[0], "e1.test", 10);
		set_host(&h[1], "e2.test", 10);
		set_host(&h[2], "e3.test", 10);
		set_host(&h[3], "best.test", 0);
		n = dns_mx_order(h, 4, counter_rnd, &seed);
		assert_int_equal(n, 4);
		assert_string_equal(h[0].name, "best.test");
		for (size_t i = 1; i < 4; i++)
			assert_int_equal(h[i].pref, 10);
		seen[h[1].name[1] - '1'] = true;
	}
	assert_true(seen[0] && seen[1] && seen[2]);
}

static void test_null_mx(void **state)
{
	const char *root[] = { "" }, *dot[] = { "." },
		   *two[] = { "", "mx.test" }, *one[] = { "mx.test" };

	(void)state;
	assert_true(dns_mx_is_null(root, 1));
	assert_true(dns_mx_is_null(dot, 1));
	assert_false(dns_mx_is_null(two, 2));
	assert_false(dns_mx_is_null(one, 1));
	assert_false(dns_mx_is_null(one, 0));
}

static void test_classify(void **state)
{
	const char *e;

	(void)state;
	assert_int_equal(dns_classify(ARES_SUCCESS, &e), DNS_OK);
	assert_string_equal(e, "");
	assert_int_equal(dns_classify(ARES_ENOTFOUND, &e), DNS_PERM);
	assert_string_equal(e, "5.1.2");
	assert_int_equal(dns_classify(ARES_ENODATA, &e), DNS_PERM);
	assert_string_equal(e, "5.4.4");
	assert_int_equal(dns_classify(ARES_EBADNAME, &e), DNS_PERM);
	assert_string_equal(e, "5.1.2");
	static const int temp[] = { ARES_ESERVFAIL, ARES_ETIMEOUT,
				    ARES_ECONNREFUSED, ARES_EREFUSED,
				    ARES_EFORMERR, ARES_EDESTRUCTION,
				    ARES_ECANCELLED, ARES_EBADRESP };
	for (size_t i = 0; i < TERN_NELEM(temp); i++) {
		assert_int_equal(dns_classify(temp[i], &e), DNS_TEMP);
		assert_string_equal(e, "4.4.3");
	}
}

static void test_servers(void **state)
{
	const char *good[] = { "127.0.0.1", "192.0.2.1:5353", "::1",
			       "[2001:db8::1]:53", "[::1]" };
	static const char *const bad[] = {
		"", "host.test", "127.0.0.1:", "127.0.0.1:0",
		"127.0.0.1:65536", "127.0.0.1:53x", "[::1", "[::1]x",
		"[127.0.0.1]:53", "1.2.3", "::1:::", "127.0.0.1:+53",
		"127.0.0.1:000053",
	};
	struct str *out = str_new(64, 4096);
	const char *err = NULL;

	(void)state;
	assert_int_equal(dns_servers_csv(good, TERN_NELEM(good), out, &err),
			 0);
	assert_string_equal(str_c(out), "127.0.0.1:53,192.0.2.1:5353,"
			    "[::1]:53,[2001:db8::1]:53,[::1]:53");
	for (size_t i = 0; i < TERN_NELEM(bad); i++) {
		err = NULL;
		assert_int_equal(dns_servers_csv(&bad[i], 1, out, &err), -1);
		assert_non_null(err);
	}
	assert_int_equal(dns_servers_csv(NULL, 0, out, &err), 0);
	assert_string_equal(str_c(out), "");
	str_free(&out);
}

/* Every prefix of a good entry is either good or refused with a
 * message: no crash, no read past the end (under ASan). */
static void test_servers_prefixes(void **state)
{
	static const char *const full[] = { "[2001:db8::53]:5353",
					    "198.51.100.7:53", "fe80::1" };
	struct str *out = str_new(64, 4096);
	char buf[64];

	(void)state;
	for (size_t k = 0; k < TERN_NELEM(full); k++) {
		for (size_t n = 0; n <= strlen(full[k]); n++) {
			const char *one[1] = { buf };
			const char *err = NULL;

			memcpy(buf, full[k], n);
			buf[n] = '\0';
			if (dns_servers_csv(one, 1, out, &err) < 0)
				assert_non_null(err);
			else
				assert_true(str_len(out) > 0);
		}
	}
	str_free(&out);
}

/* ---- lookups on a loop ---- */

struct got {
	int calls;
	enum dns_status status;
	char enhanced[8];
	bool inside;
};

static bool in_lookup_call;

static void on_mx(const struct dns_mx_result *res, void *ctx)
{
	struct got *g = ctx;

	g->calls++;
	g->status = res->status;
	str_lcpy(g->enhanced, res->enhanced, sizeof(g->enhanced));
	g->inside = in_lookup_call;
	if (res->status != DNS_OK)
		assert_non_null(res->error);
}

/* A free UDP port on 127.0.0.1: bound, then closed. */
static int closed_port(void)
{
	uv_loop_t loop;
	uv_udp_t u;
	struct sockaddr_in a;
	struct sockaddr_storage got;
	int len = sizeof(got);

	uv_loop_init(&loop);
	uv_udp_init(&loop, &u);
	uv_ip4_addr("127.0.0.1", 0, &a);
	assert_int_equal(uv_udp_bind(&u, (const struct sockaddr *)&a, 0), 0);
	assert_int_equal(uv_udp_getsockname(&u, (struct sockaddr *)&got,
					    &len), 0);
	uv_close((uv_handle_t *)&u, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	return ntohs(((struct sockaddr_in *)&got)->sin_port);
}

static void test_lookup_no_server(void **state)
{
	uv_loop_t loop;
	char server[64];
	const char *servers[1] = { server };
	struct dns_settings set = { .servers = servers, .nservers = 1,
				    .timeout_ms = 300, .tries = 1 };
	struct dns_resolver *r;
	struct got a = { 0 }, b = { 0 }, c = { 0 };
	const char *err = NULL;

	(void)state;
	snprintf(server, sizeof(server), "127.0.0.1:%d", closed_port());
	uv_loop_init(&loop);
	r = dns_resolver_new(&loop, &set, &err);
	assert_non_null(r);
	in_lookup_call = true;
	dns_lookup_mx(r, "example.test", on_mx, &a);
	dns_lookup_mx(r, "", on_mx, &b);
	in_lookup_call = false;
	assert_int_equal(a.calls + b.calls, 0);
	for (int i = 0; i < 200 && (a.calls == 0 || b.calls == 0); i++)
		uv_run(&loop, UV_RUN_ONCE);
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.status, DNS_TEMP);
	assert_string_equal(a.enhanced, "4.4.3");
	assert_false(a.inside);
	assert_int_equal(b.calls, 1);
	assert_int_equal(b.status, DNS_PERM);
	assert_false(b.inside);
	/* A lookup still pending when the resolver goes: TEMP. */
	dns_lookup_mx(r, "pending.test", on_mx, &c);
	dns_resolver_free(&r);
	assert_null(r);
	for (int i = 0; i < 50 && c.calls == 0; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	assert_int_equal(c.calls, 1);
	assert_int_equal(c.status, DNS_TEMP);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* A name server that never answers: the timer path, TEMP 4.4.3 after
 * the timeout and not long before. */
static void test_lookup_timeout(void **state)
{
	uv_loop_t loop;
	struct sockaddr_in a = { 0 };
	socklen_t len = sizeof(a);
	char server[64];
	const char *servers[1] = { server };
	struct dns_settings set = { .servers = servers, .nservers = 1,
				    .timeout_ms = 200, .tries = 1 };
	struct dns_resolver *r;
	struct got g = { 0 };
	const char *err = NULL;
	uint64_t start;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	(void)state;
	assert_true(fd >= 0);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	snprintf(server, sizeof(server), "127.0.0.1:%u",
		 (unsigned)ntohs(a.sin_port));
	uv_loop_init(&loop);
	r = dns_resolver_new(&loop, &set, &err);
	assert_non_null(r);
	start = uv_hrtime();
	dns_lookup_mx(r, "silent.test", on_mx, &g);
	for (int i = 0; i < 1000 && g.calls == 0; i++)
		uv_run(&loop, UV_RUN_ONCE);
	assert_int_equal(g.calls, 1);
	assert_int_equal(g.status, DNS_TEMP);
	assert_string_equal(g.enhanced, "4.4.3");
	assert_true(uv_hrtime() - start >= 150 * 1000000ull);
	assert_true(uv_hrtime() - start < 5000 * 1000000ull);
	dns_resolver_free(&r);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	close(fd);
}

/* A response to "mx.test MX" with two MX records (TTL 300 and 120, the
 * second name compressed), a CNAME (TTL 5, another type), then an A record
 * in the additional section (not an answer). */
static const unsigned char mx_answer[] = {
	0x12, 0x34, 0x81, 0x80, 0, 1, 0, 3, 0, 0, 0, 1,
	/* question: mx.test MX IN */
	2, 'm', 'x', 4, 't', 'e', 's', 't', 0, 0, 15, 0, 1,
	/* answer 1 (offset 25): pointer to the question's name, MX, TTL 300,
	 * exchange a.mx.test */
	0xc0, 12, 0, 15, 0, 1, 0, 0, 1, 44, 0, 6,
	0, 10, 1, 'a', 0xc0, 12,
	/* answer 2: TTL 120, exchange b.mx.test (compressed) */
	0xc0, 12, 0, 15, 0, 1, 0, 0, 0, 120, 0, 6,
	0, 20, 1, 'b', 0xc0, 12,
	/* answer 3: a CNAME with TTL 5 (ends at offset 75) */
	0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 5, 0, 2, 0xc0, 12,
	/* additional: an A record with TTL 1 */
	0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 127, 0, 0, 2,
};

static void test_answer_ttl(void **state)
{
	uint32_t ttl = 7;
	unsigned char b[sizeof(mx_answer)];

	(void)state;
	assert_int_equal(dns_answer_min_ttl(mx_answer, sizeof(mx_answer), 15,
					    &ttl), 0);
	assert_int_equal(ttl, 120);
	assert_int_equal(dns_answer_min_ttl(mx_answer, sizeof(mx_answer), 5,
					    &ttl), 0);
	assert_int_equal(ttl, 5);
	/* The A record is outside the answer section. */
	assert_int_equal(dns_answer_min_ttl(mx_answer, sizeof(mx_answer), 1,
					    &ttl), -1);
	/* Cut anywhere inside the answers: an error, never a read past
	 * the end (ASan watches). */
	for (size_t n = 0; n < 75; n++) {
		unsigned char *cut = malloc(n > 0 ? n : 1);

		memcpy(cut, mx_answer, n);
		assert_int_equal(dns_answer_min_ttl(cut, n, 15, &ttl), -1);
		free(cut);
	}
	/* A TTL with the top bit set counts as 0 (RFC 2181). */
	memcpy(b, mx_answer, sizeof(b));
	b[31] = 0x80;	/* the first byte of answer 1's TTL */
	assert_int_equal(dns_answer_min_ttl(b, sizeof(b), 15, &ttl), 0);
	assert_int_equal(ttl, 0);
	/* Label types other than plain and pointer are refused. */
	memcpy(b, mx_answer, sizeof(b));
	b[12] = 0x40;	/* an extended label type */
	assert_int_equal(dns_answer_min_ttl(b, sizeof(b), 15, &ttl), -1);
}

static void test_literal(void **state)
{
	struct sockaddr_storage ss;
	char text[INET6_ADDRSTRLEN];

	(void)state;
	assert_int_equal(dns_parse_literal("[192.0.2.7]", &ss), 0);
	assert_int_equal(ss.ss_family, AF_INET);
	inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, text,
		  sizeof(text));
	assert_string_equal(text, "192.0.2.7");
	assert_int_equal(dns_parse_literal("[ipv6:2001:DB8::1]", &ss), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, text,
		  sizeof(text));
	assert_string_equal(text, "2001:db8::1");
	static const char *const bad[] = {
		"", "[", "[]", "192.0.2.7", "[192.0.2.7", "[192.0.2.256]",
		"[2001:db8::1]", "[IPv6:192.0.2.7]", "[tag:content]",
		"[192.0.2.7 ]", "[IPv6:2001:db8::1:2:3:4:5:6:7:8:9:10:11:12]",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(dns_parse_literal(bad[i], &ss), -1);
}

static void test_bad_settings(void **state)
{
	uv_loop_t loop;
	const char *servers[1] = { "not-an-ip" };
	struct dns_settings set = { .servers = servers, .nservers = 1 };
	const char *err = NULL;

	(void)state;
	uv_loop_init(&loop);
	assert_null(dns_resolver_new(&loop, &set, &err));
	assert_non_null(err);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order_by_preference),
		cmocka_unit_test(test_duplicate_keeps_best_preference),
		cmocka_unit_test(test_random_among_equal),
		cmocka_unit_test(test_null_mx),
		cmocka_unit_test(test_classify),
		cmocka_unit_test(test_servers),
		cmocka_unit_test(test_servers_prefixes),
		cmocka_unit_test(test_lookup_no_server),
		cmocka_unit_test(test_lookup_timeout),
		cmocka_unit_test(test_bad_settings),
		cmocka_unit_test(test_answer_ttl),
		cmocka_unit_test(test_literal),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
