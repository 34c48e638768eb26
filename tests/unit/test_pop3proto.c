/* test_pop3proto.c: the POP3 command parser, AUTH PLAIN decoding and the
 * RETR/TOP encoder, all fed one byte at a time as well as whole. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "compat.h"
#include "pop3proto.h"
#include "str.h"

/* One parse result, copied out of the parser. */
struct got {
	int r;
	enum pop3_verb verb;
	char name[16];
	char arg[600];
	char initial[600];
	bool has_initial;
	bool has_msg;
	uint32_t msg;
	uint64_t lines;
	char error[80];
};

/* Feeds text one byte at a time (step 1) or whole (step 0) and collects up
 * to max results. */
static size_t feed_all(struct pop3_parser *p, const char *text, size_t step,
		       struct got *out, size_t max, bool sasl_after_auth)
{
	const char *pos = text, *end = text + strlen(text);
	size_t n = 0;

	while (pos < end && n < max) {
		const char *ce = step == 0 || (size_t)(end - pos) < step ?
				 end : pos + step;

		while (n < max) {
			struct pop3_cmd cmd;
			const char *error = NULL;
			int r = pop3_parser_feed(p, &pos, ce, &cmd, &error);
			struct got *g = &out[n];

			if (r == 0)
				break;
			memset(g, 0, sizeof(*g));
			g->r = r;
			if (r < 0) {
				str_lcpy(g->error, error, sizeof(g->error));
			} else {
				g->verb = cmd.verb;
				str_lcpy(g->name, cmd.name, sizeof(g->name));
				str_lcpy(g->arg, cmd.arg, sizeof(g->arg));
				g->has_initial = cmd.initial != NULL;
				if (cmd.initial != NULL)
					str_lcpy(g->initial, cmd.initial,
						 sizeof(g->initial));
				g->has_msg = cmd.has_msg;
				g->msg = cmd.msg;
				g->lines = cmd.lines;
				if (sasl_after_auth && cmd.verb == POP3_AUTH &&
				    cmd.initial == NULL)
					pop3_parser_expect_sasl(p);
			}
			n++;
		}
	}
	return n;
}

static void both_ways(const char *text, struct got *a, size_t max,
		      size_t *n_r)
{
	struct got *b = calloc(max, sizeof(*b));
	struct pop3_parser *p1 = pop3_parser_new(512);
	struct pop3_parser *p2 = pop3_parser_new(512);
	size_t na = feed_all(p1, text, 0, a, max, true);
	size_t nb = feed_all(p2, text, 1, b, max, true);

	assert_int_equal(na, nb);
	for (size_t i = 0; i < na; i++) {
		assert_int_equal(a[i].r, b[i].r);
		assert_int_equal(a[i].verb, b[i].verb);
		assert_string_equal(a[i].arg, b[i].arg);
		assert_string_equal(a[i].error, b[i].error);
		assert_int_equal(a[i].msg, b[i].msg);
		assert_int_equal(a[i].lines, b[i].lines);
	}
	*n_r = na;
	pop3_parser_free(&p1);
	pop3_parser_free(&p2);
	assert_null(p1);
	free(b);
}

static void test_rfc1939_commands(void **state)
{
	struct got g[20];
	size_t n;

	both_ways("USER ann@example.com\r\nPASS  sec ret \r\nstat\r\n"
		  "LIST\r\nlist 2\r\nRETR 1\r\nDELE 3\r\nNOOP\r\nRSET\r\n"
		  "TOP 1 10\r\nUIDL\r\nUIDL 7\r\nQUIT\r\n", g, 20, &n);
	assert_int_equal(n, 13);
	assert_int_equal(g[0].verb, POP3_USER);
	assert_string_equal(g[0].arg, "ann@example.com");
	assert_int_equal(g[1].verb, POP3_PASS);
	assert_string_equal(g[1].arg, " sec ret ");	/* spaces kept */
	assert_int_equal(g[2].verb, POP3_STAT);
	assert_string_equal(g[2].name, "stat");
	assert_int_equal(g[3].verb, POP3_LIST);
	assert_false(g[3].has_msg);
	assert_true(g[4].has_msg);
	assert_int_equal(g[4].msg, 2);
	assert_int_equal(g[5].verb, POP3_RETR);
	assert_int_equal(g[6].verb, POP3_DELE);
	assert_int_equal(g[6].msg, 3);
	assert_int_equal(g[7].verb, POP3_NOOP);
	assert_int_equal(g[8].verb, POP3_RSET);
	assert_int_equal(g[9].verb, POP3_TOP);
	assert_int_equal(g[9].msg, 1);
	assert_int_equal(g[9].lines, 10);
	assert_int_equal(g[10].verb, POP3_UIDL);
	assert_false(g[10].has_msg);
	assert_int_equal(g[11].msg, 7);
	assert_int_equal(g[12].verb, POP3_QUIT);
}

static void test_bad_arguments(void **state)
{
	struct got g[20];
	size_t n;

	both_ways("RETR\r\nRETR 0\r\nRETR x\r\nRETR -1\r\nDELE 1 2\r\n"
		  "TOP 1\r\nTOP 1 x\r\nLIST 99999999999\r\nUSER\r\n"
		  "STAT now\r\n\r\nFOO bar\r\nRETRIEVE 1\r\nNOOP\r\n",
		  g, 20, &n);
	assert_int_equal(n, 14);
	for (size_t i = 0; i < 11; i++)
		assert_int_equal(g[i].r, -1);
	assert_non_null(strstr(g[0].error, "-ERR Syntax"));
	assert_non_null(strstr(g[1].error, "Invalid message number"));
	assert_non_null(strstr(g[2].error, "Invalid message number"));
	assert_non_null(strstr(g[4].error, "Too many arguments"));
	assert_non_null(strstr(g[5].error, "TOP msg lines"));
	assert_non_null(strstr(g[7].error, "Invalid message number"));
	assert_non_null(strstr(g[10].error, "Empty command"));
	assert_int_equal(g[11].r, 1);
	assert_int_equal(g[11].verb, POP3_UNKNOWN);
	assert_string_equal(g[11].name, "FOO");
	assert_int_equal(g[12].verb, POP3_UNKNOWN);
	assert_int_equal(g[13].verb, POP3_NOOP);	/* still in step */
}

static void test_long_line_and_nul(void **state)
{
	char text[2000];
	struct got g[4];
	size_t n;

	memset(text, 'A', 1000);
	memcpy(text + 1000, "\r\nNO", 5);
	both_ways(text, g, 4, &n);
	/* strlen stops at the NUL: "NO" then nothing complete. */
	assert_int_equal(n, 1);
	assert_int_equal(g[0].r, -1);
	assert_string_equal(g[0].error, "-ERR Line too long");
	{
		static const char in[] = "NO\0OP\r\nNOOP\r\n";
		struct pop3_parser *p = pop3_parser_new(100);
		const char *pos = in, *end = in + sizeof(in) - 1;
		struct pop3_cmd cmd;
		const char *error;

		assert_int_equal(pop3_parser_feed(p, &pos, end, &cmd, &error),
				 -1);
		assert_non_null(strstr(error, "Invalid characters"));
		assert_int_equal(pop3_parser_feed(p, &pos, end, &cmd, &error),
				 1);
		assert_int_equal(cmd.verb, POP3_NOOP);
		pop3_parser_free(&p);
	}
}

static void test_auth_and_sasl(void **state)
{
	struct got g[8];
	size_t n;

	both_ways("AUTH plain AGFubgBzZWNyZXQ=\r\nAUTH PLAIN\r\n"
		  "AGFubgBzZWNyZXQ=\r\nAUTH\r\nCAPA\r\nSTLS\r\n", g, 8, &n);
	assert_int_equal(n, 6);
	assert_int_equal(g[0].verb, POP3_AUTH);
	assert_string_equal(g[0].arg, "PLAIN");
	assert_true(g[0].has_initial);
	assert_string_equal(g[0].initial, "AGFubgBzZWNyZXQ=");
	assert_int_equal(g[1].verb, POP3_AUTH);
	assert_false(g[1].has_initial);
	assert_int_equal(g[2].verb, POP3_SASL);	/* after AUTH PLAIN */
	assert_string_equal(g[2].arg, "AGFubgBzZWNyZXQ=");
	assert_int_equal(g[3].verb, POP3_AUTH);
	assert_string_equal(g[3].arg, "");
	/* ... and so CAPA, after the bare AUTH, is a response too. */
	assert_int_equal(g[4].verb, POP3_SASL);
	assert_int_equal(g[5].verb, POP3_STLS);
}

static void test_reset_drops_input(void **state)
{
	static const char in[] = "STLS\r\nUSER evil";
	static const char in2[] = "\r\nCAPA\r\n";
	struct pop3_parser *p = pop3_parser_new(100);
	const char *pos = in, *end = in + strlen(in);
	struct pop3_cmd cmd;
	const char *error;

	assert_int_equal(pop3_parser_feed(p, &pos, end, &cmd, &error), 1);
	assert_int_equal(cmd.verb, POP3_STLS);
	assert_int_equal(pop3_parser_feed(p, &pos, end, &cmd, &error), 0);
	assert_true(pop3_parser_buffered(p) > 0);
	pop3_parser_reset(p);
	assert_int_equal(pop3_parser_buffered(p), 0);
	pos = in2;
	end = in2 + strlen(in2);
	assert_int_equal(pop3_parser_feed(p, &pos, end, &cmd, &error), -1);
	assert_int_equal(pop3_parser_feed(p, &pos, end, &cmd, &error), 1);
	assert_int_equal(cmd.verb, POP3_CAPA);
	pop3_parser_free(&p);
}

static void test_sasl_plain(void **state)
{
	struct str *buf = str_new(64, POP3_SASL_MAX + 1);
	const char *z, *c, *pw;
	static const char *const bad[] = {
		"AGFubg==",		/* one NUL only */
		"AGFubgBzZWNyZXQ",	/* length */
		"AGFu=gBzZWNyZXQ=",	/* padding inside */
		"AAA=",			/* "\0\0": empty authcid, password */
		"AGFubgA=",		/* empty password */
		"AGFubgBzZWNyZXQAeA==",	/* three NULs */
		"AG*ubgBzZWNyZXQ=",	/* bad character */
	};

	assert_int_equal(pop3_sasl_plain_decode("AGFubgBzZWNyZXQ=", 16, buf,
						&z, &c, &pw), 0);
	assert_string_equal(z, "");
	assert_string_equal(c, "ann");
	assert_string_equal(pw, "secret");
	/* "adm\0ann\0pw" */
	assert_int_equal(pop3_sasl_plain_decode("YWRtAGFubgBwdw==", 16, buf,
						&z, &c, &pw), 0);
	assert_string_equal(z, "adm");
	assert_string_equal(c, "ann");
	assert_string_equal(pw, "pw");
	for (size_t i = 0; i < TERN_NELEM(bad); i++)
		assert_int_equal(pop3_sasl_plain_decode(bad[i], strlen(bad[i]),
							buf, &z, &c, &pw),
				 -1);
	str_free(&buf);
}

/* Encodes msg with chunks of step bytes (0 = whole) into an output buffer
 * of room bytes at a time; returns the result. */
static char *encode(const char *msg, size_t len, int64_t lines, size_t step,
		    size_t room)
{
	struct pop3_body *b = pop3_body_new(lines);
	struct str *out = str_new(0, room);
	struct str *all = str_new(0, 1 << 20);
	const char *pos = msg, *end = msg + len;
	int r = 0;
	char *res;

	while (pos < end && r != 1) {
		const char *ce = step == 0 || (size_t)(end - pos) < step ?
				 end : pos + step;

		while ((r = pop3_body_feed(b, &pos, ce, out)) == -1) {
			assert_int_equal(str_append(all, str_c(out),
						    str_len(out)), 0);
			str_clear(out);
		}
		if (r == 1)
			break;
		assert_true(pos == ce);
	}
	while (pop3_body_finish(b, out) < 0) {
		assert_int_equal(str_append(all, str_c(out), str_len(out)), 0);
		str_clear(out);
	}
	assert_int_equal(str_append(all, str_c(out), str_len(out)), 0);
	assert_int_equal(pop3_body_written(b), str_len(all));
	res = strdup(str_c(all));
	str_free(&out);
	str_free(&all);
	pop3_body_free(&b);
	return res;
}

static void check_encode(const char *msg, int64_t lines, const char *want)
{
	static const size_t steps[] = { 0, 1, 2, 3, 7 };
	static const size_t rooms[] = { 4, 5, 6, 9, 4096 };

	for (size_t i = 0; i < TERN_NELEM(steps); i++) {
		for (size_t j = 0; j < TERN_NELEM(rooms); j++) {
			char *got = encode(msg, strlen(msg), lines, steps[i],
					   rooms[j]);

			if (strcmp(got, want) != 0)
				fail_msg("step %zu room %zu: got [%s] want "
					 "[%s]", steps[i], rooms[j], got,
					 want);
			free(got);
		}
	}
}

static void test_encode_retr(void **state)
{
	check_encode("", -1, ".\r\n");
	check_encode("a\r\nb\r\n", -1, "a\r\nb\r\n.\r\n");
	check_encode("a\nb", -1, "a\r\nb\r\n.\r\n");		/* LF, no end */
	check_encode("a\rb\r", -1, "a\r\nb\r\n.\r\n");		/* bare CR */
	check_encode("a\r\r\nb\n\n", -1, "a\r\n\r\nb\r\n\r\n.\r\n");
	check_encode(".\r\n..x\n.", -1, "..\r\n...x\r\n..\r\n.\r\n");
	check_encode("x.\r\n .\r\n", -1, "x.\r\n .\r\n.\r\n");
	check_encode("H: v\r\n\r\n.\r\nbody\r\n", -1,
		     "H: v\r\n\r\n..\r\nbody\r\n.\r\n");
}

/* Random text of CR, LF, dots and letters, in long CRLF runs (the fast
 * path of RETR) broken by the odd bare CR or LF and leading dot: the
 * whole message at once and byte at a time must give the same bytes. */
static void test_encode_random(void **state)
{
	static const char alphabet[] = "ab.\r\n";
	unsigned int seed = 12345;
	char msg[600];

	for (int round = 0; round < 300; round++) {
		size_t len = 0;

		while (len < sizeof(msg) - 4) {
			seed = seed * 1103515245u + 12345u;
			if ((seed >> 16) % 4 != 0) {
				msg[len++] = 'x';
				if ((seed >> 20) % 6 == 0) {
					msg[len++] = '\r';
					msg[len++] = '\n';
				}
			} else {
				msg[len++] = alphabet[(seed >> 18) % 5];
			}
		}
		msg[len] = '\0';
		for (int64_t lines = -1; lines <= 2; lines += 3) {
			char *whole = encode(msg, len, lines, 0, 1 << 16);
			char *bytes = encode(msg, len, lines, 1, 4);
			char *small = encode(msg, len, lines, 0, 7);

			assert_string_equal(whole, bytes);
			assert_string_equal(whole, small);
			free(whole);
			free(bytes);
			free(small);
		}
	}
}

static void test_encode_top(void **state)
{
	static const char msg[] = "A: 1\r\nB: 2\r\n\r\nl1\r\n.l2\r\nl3\r\n";

	check_encode(msg, 0, "A: 1\r\nB: 2\r\n\r\n.\r\n");
	check_encode(msg, 1, "A: 1\r\nB: 2\r\n\r\nl1\r\n.\r\n");
	check_encode(msg, 2, "A: 1\r\nB: 2\r\n\r\nl1\r\n..l2\r\n.\r\n");
	check_encode(msg, 99, "A: 1\r\nB: 2\r\n\r\nl1\r\n..l2\r\nl3\r\n"
		     ".\r\n");
	check_encode("A: 1\nB: 2\n\nl1\nl2\n", 1, "A: 1\r\nB: 2\r\n\r\n"
		     "l1\r\n.\r\n");
	check_encode("A: 1\r\nno body", 0, "A: 1\r\nno body\r\n.\r\n");
	check_encode("\r\nbody\r\n", 0, "\r\n.\r\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc1939_commands),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_long_line_and_nul),
		cmocka_unit_test(test_auth_and_sasl),
		cmocka_unit_test(test_reset_drops_input),
		cmocka_unit_test(test_sasl_plain),
		cmocka_unit_test(test_encode_retr),
		cmocka_unit_test(test_encode_top),
		cmocka_unit_test(test_encode_random),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
