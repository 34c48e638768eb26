/* test_imapparse.c: the IMAP command parser, its data types and the typed
 * command views.  Every transcript is fed whole and one byte at a time. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "compat.h"
#include "imapcmd.h"
#include "imapparse.h"
#include "imapsearch.h"
#include "imaptypes.h"
#include "str.h"

/* ---- transcripts ---------------------------------------------------- */

static void dump_arg(struct str *out, const struct imap_arg *a)
{
	static const char *const prefixes[] = {
		"A", "N", "S", "0", "Q", "", "~", "L",
	};

	assert_int_equal(str_append_c(out, prefixes[a->type]), 0);
	if (a->type == IMAP_ARG_LIST || (a->flags & IMAP_ARG_F_SECTION)) {
		if (a->type != IMAP_ARG_LIST)
			assert_int_equal(str_append_c(out, a->str), 0);
		assert_int_equal(str_append_byte(out, '('), 0);
		for (size_t i = 0; i < a->count; i++) {
			if (i > 0)
				assert_int_equal(str_append_byte(out, ' '), 0);
			dump_arg(out, &a->list[i]);
		}
		assert_int_equal(str_append_byte(out, ')'), 0);
		return;
	}
	if (a->type == IMAP_ARG_LITERAL || a->type == IMAP_ARG_LITERAL8)
		assert_int_equal(str_printf(out, "{%zu}", a->len), 0);
	for (size_t i = 0; i < a->len; i++) {
		unsigned char c = (unsigned char)a->str[i];

		if (c < 0x20 || c >= 0x7f)
			assert_int_equal(str_printf(out, "\\x%02x", c), 0);
		else
			assert_int_equal(str_append_byte(out, c), 0);
	}
}

/* Feeds in with steps of chunk bytes (0: whole) and writes what came
 * out: "C tag NAME [UID] args", "+", "E BAD|NO [code] tag: text". */
static struct str *run_chunked(const struct imap_parser_settings *set,
			       const char *in, size_t len, size_t chunk)
{
	struct imap_parser *p = imap_parser_new(set);
	struct str *out = str_new(256, 1 << 20);
	const char *pos = in, *end = in + len;

	while (pos < end) {
		const char *ce = chunk == 0 || (size_t)(end - pos) < chunk ?
				 end : pos + chunk;

		while (pos < ce) {
			struct imap_cmd *cmd;
			const struct imap_parse_error *err;
			int r = imap_parser_feed(p, &pos, ce, &cmd, &err);

			if (r == IMAP_PARSE_MORE)
				break;
			if (r == IMAP_PARSE_CONTINUE) {
				assert_int_equal(str_append_c(out, "+\n"), 0);
			} else if (r == IMAP_PARSE_ERROR) {
				assert_int_equal(str_printf(out, "E %s %s %s: %s\n",
					err->kind == IMAP_RESP_BAD ? "BAD" : "NO",
					err->code != NULL ? err->code : "-",
					err->tag != NULL ? err->tag : "*",
					err->text), 0);
			} else {
				assert_int_equal(r, IMAP_PARSE_COMMAND);
				assert_int_equal(str_printf(out, "C %s %s%s",
					cmd->tag, cmd->uid ? "UID " : "",
					cmd->name), 0);
				for (size_t i = 0; i < cmd->nargs; i++) {
					assert_int_equal(
						str_append_byte(out, ' '), 0);
					dump_arg(out, &cmd->args[i]);
				}
				assert_int_equal(str_append_byte(out, '\n'), 0);
				imap_cmd_free(&cmd);
			}
		}
	}
	imap_parser_free(&p);
	return out;
}

/* Runs whole and byte by byte; both must give expect. */
static void check_set(const struct imap_parser_settings *set,
		      const char *in, size_t len, const char *expect)
{
	size_t chunks[] = { 0, 1, 2, 7 };

	for (size_t i = 0; i < TERN_NELEM(chunks); i++) {
		struct str *out = run_chunked(set, in, len, chunks[i]);

		if (strcmp(str_c(out), expect) != 0)
			fail_msg("chunk %zu:\n got: %s\nwant: %s", chunks[i],
				 str_c(out), expect);
		str_free(&out);
	}
}

static void check(const char *in, const char *expect)
{
	check_set(NULL, in, strlen(in), expect);
}

/* Parses exactly one command from in. */
static struct imap_cmd *one_n(const char *in, size_t len)
{
	struct imap_parser *p = imap_parser_new(NULL);
	const char *pos = in, *end = in + len;
	struct imap_cmd *cmd = NULL;
	const struct imap_parse_error *err;
	int r;

	while ((r = imap_parser_feed(p, &pos, end, &cmd, &err)) ==
	       IMAP_PARSE_CONTINUE)
		;
	if (r != IMAP_PARSE_COMMAND)
		fail_msg("no command from %s (%d: %s)", in, r,
			 r < 0 ? err->text : "");
	imap_parser_free(&p);
	return cmd;
}

static struct imap_cmd *one(const char *in)
{
	return one_n(in, strlen(in));
}

/* ---- tokenizer ------------------------------------------------------ */

static void test_simple_commands(void **state)
{
	check("a1 NOOP\r\n", "C a1 NOOP\n");
	check("a2 login joe \"se\\\"cr\\\\et\"\r\n",
	      "C a2 LOGIN Ajoe Qse\"cr\\et\n");
	check("a3 uid fetch 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (DATE FROM)]"
	      "<0.100>)\r\n",
	      "C a3 UID FETCH S1:* L(AFLAGS ABODY.PEEK[HEADER.FIELDS ()]"
	      "<0.100>(ADATE AFROM))\n");
	check("x SELECT INBOX (QRESYNC (67890007 20050715194045000 "
	      "41,43:211,214:541))\n",
	      "C x SELECT AINBOX L(AQRESYNC L(N67890007 N20050715194045000 "
	      "S41,43:211,214:541))\n");
	check("t STORE $ +FLAGS.SILENT (\\Seen $Forwarded) NIL\r\n",
	      "C t STORE S$ A+FLAGS.SILENT L(A\\Seen A$Forwarded) 0NIL\n");
	check("\r\n\r\nb NOOP  \r\n", "C b NOOP\n");
	check("c LIST \"\" %/[Gmail]/*\r\n", "C c LIST Q A%/[Gmail]/*\n");
	check("d APPEND x (\\Seen) \"1-Jan-2024 10:00:00 +0100\" {0}\r\n\r\n",
	      "+\nC d APPEND Ax L(A\\Seen) Q1-Jan-2024 10:00:00 +0100 {0}\n");
}

static void test_literals(void **state)
{
	check("a LOGIN {3}\r\njoe {6}\r\nse\r\ncr\r\n",
	      "+\n+\nC a LOGIN {3}joe {6}se\\x0d\\x0acr\n");
	/* a literal in a section list */
	check("f FETCH 1 BODY[HEADER.FIELDS ({4}\r\nDATE \"X-A\")]<5.6>\r\n",
	      "+\nC f FETCH N1 ABODY[HEADER.FIELDS ()]<5.6>({4}DATE QX-A)\n");
	/* literal8 and its NUL */
	check_set(NULL, "g APPEND box ~{3}\r\na\0b\r\n", 24,
		  "+\nC g APPEND Abox ~{3}a\\x00b\n");
}

static void test_literal_plus_minus(void **state)
{
	struct imap_parser_settings set;
	const char *in = "a LOGIN {3+}\r\njoe x\r\nb NOOP\r\n";

	imap_parser_settings_default(&set);
	/* Without LITERAL+, the literal is refused and skipped. */
	check_set(&set, in, strlen(in),
		  "E BAD - a: Non-synchronizing literals are not supported\n"
		  "C b NOOP\n");
	set.literal = IMAP_LITERAL_PLUS;
	check_set(&set, in, strlen(in), "C a LOGIN {3}joe Ax\nC b NOOP\n");
	set.literal = IMAP_LITERAL_MINUS;
	check_set(&set, in, strlen(in), "C a LOGIN {3}joe Ax\nC b NOOP\n");

	/* LITERAL-: over 4096 is BAD [TOOBIG], and skipped by its size. */
	{
		size_t n = 4097;
		struct str *big = str_new(0, 8192);

		assert_int_equal(str_printf(big, "a APPEND x {%zu+}\r\n", n), 0);
		for (size_t i = 0; i < n; i++)
			assert_int_equal(str_append_byte(big, 'b'), 0);
		assert_int_equal(str_append_c(big, " junk\r\nc NOOP\r\n"), 0);
		check_set(&set, str_c(big), str_len(big),
			  "E BAD TOOBIG a: Non-synchronizing literal over "
			  "4096 bytes\nC c NOOP\n");
		set.literal = IMAP_LITERAL_PLUS;
		for (size_t chunk = 0; chunk < 3; chunk++) {
			struct str *out = run_chunked(&set, str_c(big),
						      str_len(big), chunk);
			const char *o = str_c(out);
			const char *tail = "bb Ajunk\nC c NOOP\n";

			assert_int_equal(strncmp(o, "C a APPEND Ax {4097}b", 21),
					 0);
			assert_int_equal(str_len(out), 20 + 4097 + 16);
			assert_string_equal(o + str_len(out) - strlen(tail),
					    tail);
			str_free(&out);
		}
		str_free(&big);
	}
}

static void test_literal_limits(void **state)
{
	struct imap_parser_settings set;
	struct imap_parser *p;
	const char *in = "a APPEND x {1000}\r\nb NOOP\r\n";
	const char *pos = in, *end = in + strlen(in);
	struct imap_cmd *cmd;
	const struct imap_parse_error *err;

	imap_parser_settings_default(&set);
	set.max_append = 999;
	check_set(&set, in, strlen(in),
		  "E NO TOOBIG a: Literal too big\nC b NOOP\n");
	/* refused before any literal byte is read */
	p = imap_parser_new(&set);
	assert_int_equal(imap_parser_feed(p, &pos, end, &cmd, &err),
			 IMAP_PARSE_ERROR);
	assert_ptr_equal(pos, strstr(in, "b NOOP"));
	assert_int_equal(err->kind, IMAP_RESP_NO);
	assert_string_equal(err->code, "TOOBIG");
	assert_string_equal(err->tag, "a");
	imap_parser_free(&p);

	/* the continuation comes before any literal byte is consumed */
	in = "a LOGIN {3}\r\njoe pw\r\n";
	pos = in;
	end = in + strlen(in);
	p = imap_parser_new(NULL);
	assert_int_equal(imap_parser_feed(p, &pos, end, &cmd, &err),
			 IMAP_PARSE_CONTINUE);
	assert_ptr_equal(pos, strstr(in, "joe"));
	assert_true(imap_parser_in_command(p));
	assert_int_equal(imap_parser_feed(p, &pos, end, &cmd, &err),
			 IMAP_PARSE_COMMAND);
	imap_cmd_free(&cmd);
	imap_parser_free(&p);

	/* other commands have the smaller literal limit */
	set.max_append = 1 << 20;
	set.max_literal = 10;
	in = "a LOGIN {11}\r\nb APPEND x {11}\r\n01234567890\r\n";
	check_set(&set, in, strlen(in),
		  "E NO TOOBIG a: Literal too big\n+\nC b APPEND Ax {11}01234567890\n");
	/* the command total */
	set.max_line = 64;
	set.max_command = 100;
	in = "a APPEND x {90}\r\n";
	check_set(&set, in, strlen(in), "E NO TOOBIG a: Command too big\n");
}

static void test_long_line(void **state)
{
	struct imap_parser_settings set;
	struct str *in = str_new(0, 1 << 16);

	imap_parser_settings_default(&set);
	set.max_line = 100;
	assert_int_equal(str_append_c(in, "a1 LOGIN "), 0);
	for (int i = 0; i < 200; i++)
		assert_int_equal(str_append_byte(in, 'x'), 0);
	assert_int_equal(str_append_c(in, "\r\na2 NOOP\r\n"), 0);
	check_set(&set, str_c(in), str_len(in),
		  "E BAD - a1: Line too long\nC a2 NOOP\n");
	/* an over-long line ending in {n+}: the literal is skipped too */
	set.literal = IMAP_LITERAL_PLUS;
	str_clear(in);
	assert_int_equal(str_append_c(in, "a1 APPEND "), 0);
	for (int i = 0; i < 200; i++)
		assert_int_equal(str_append_byte(in, 'x'), 0);
	assert_int_equal(str_append_c(in, " {12+}\r\nb2 DELETE xx\r\na3 NOOP\r\n"),
			 0);
	check_set(&set, str_c(in), str_len(in),
		  "E BAD - a1: Line too long\nC a3 NOOP\n");
	str_free(&in);
}

static void test_garbage(void **state)
{
	static const char in[] =
		"+tag NOOP\r\n"
		"\0a NOOP\r\n"
		"a\x80 NOOP\r\n"
		"b NO\x80OP\r\n"
		"c LOGIN a\x80 b\r\n"
		"d LOGIN \"a\0\" b\r\n"
		"e LOGIN \"a\xc3\xa9\" b\r\n"
		"f LOGIN (a b\r\n"
		"g LOGIN a b)\r\n"
		"h LOGIN \"a\r\n"
		"i LOGIN \"a\\x\"\r\n"
		"j FETCH 1 (a)(b)\r\n"
		"k LOGIN {3}x\r\n"
		"l LOGIN {99999999999999999999999}\r\n"
		"m\r\n"
		"UID\r\n"
		"n UID\r\n"
		"o NOOP\r\n";

	check_set(NULL, in, sizeof(in) - 1,
		  "E BAD - *: Invalid tag\n"
		  "E BAD - *: Invalid tag\n"
		  "E BAD - *: Invalid tag\n"
		  "E BAD - b: Invalid command name\n"
		  "E BAD - c: Invalid character in atom\n"
		  "E BAD - d: Invalid character in quoted string\n"
		  "C e LOGIN Qa\\xc3\\xa9 Ab\n"
		  "E BAD - f: Unterminated list\n"
		  "E BAD - g: Unexpected )\n"
		  "E BAD - h: Unterminated quoted string\n"
		  "E BAD - i: Invalid escape in quoted string\n"
		  "E BAD - j: Missing space between arguments\n"
		  "E BAD - k: Invalid literal\n"
		  "E BAD - l: Literal size out of range\n"
		  "E BAD - m: Missing command\n"
		  "E BAD - UID: Missing command\n"
		  "C n UID\n"
		  "C o NOOP\n");
}

static void test_nesting_and_args(void **state)
{
	struct imap_parser_settings set;
	struct str *in = str_new(0, 1 << 16);

	imap_parser_settings_default(&set);
	set.max_depth = 3;
	check_set(&set, "a X (((1)))\r\nb X ((((1))))\r\nc NOOP\r\n", 37,
		  "C a X L(L(L(N1)))\nE BAD - b: Too deeply nested\n"
		  "C c NOOP\n");
	set.max_args = 16;
	assert_int_equal(str_append_c(in, "a X"), 0);
	for (int i = 0; i < 17; i++)
		assert_int_equal(str_append_c(in, " 1"), 0);
	assert_int_equal(str_append_c(in, "\r\nb NOOP\r\n"), 0);
	check_set(&set, str_c(in), str_len(in),
		  "E BAD - a: Too many arguments\nC b NOOP\n");
	/* deep nesting with the defaults: refused, no crash */
	str_clear(in);
	assert_int_equal(str_append_c(in, "a X "), 0);
	for (int i = 0; i < 5000; i++)
		assert_int_equal(str_append_byte(in, '('), 0);
	assert_int_equal(str_append_c(in, "\r\nb NOOP\r\n"), 0);
	check_set(NULL, str_c(in), str_len(in),
		  "E BAD - a: Too deeply nested\nC b NOOP\n");
	str_free(&in);
}

static void test_feed_line(void **state)
{
	struct imap_parser *p = imap_parser_new(NULL);
	const char *in = "a AUTHENTICATE PLAIN\r\ndGVzdA==\r\nb NOOP\r\n";
	const char *pos = in, *end = in + strlen(in), *line;
	size_t len;
	struct imap_cmd *cmd;
	const struct imap_parse_error *err;

	assert_int_equal(imap_parser_feed(p, &pos, end, &cmd, &err),
			 IMAP_PARSE_COMMAND);
	imap_cmd_free(&cmd);
	assert_int_equal(imap_parser_feed_line(p, &pos, end, &line, &len,
					       &err), 1);
	assert_int_equal(len, 8);
	assert_memory_equal(line, "dGVzdA==", 8);
	assert_int_equal(imap_parser_feed(p, &pos, end, &cmd, &err),
			 IMAP_PARSE_COMMAND);
	assert_string_equal(cmd->name, "NOOP");
	imap_cmd_free(&cmd);
	imap_parser_free(&p);
}

/* ---- sequence sets and names ---------------------------------------- */

static void check_seq(const char *in, uint32_t max, const char *expect)
{
	struct imap_seqset *set;
	const char *error;
	struct str *out = str_new(0, 1024);

	if (imap_seqset_parse(in, strlen(in), &set, &error) < 0) {
		assert_null(expect);
		str_free(&out);
		return;
	}
	assert_non_null(expect);
	imap_seqset_resolve(set, max);
	assert_int_equal(imap_seqset_format(set, out), 0);
	assert_string_equal(str_c(out), expect);
	imap_seqset_free(&set);
	str_free(&out);
}

static void test_seqsets(void **state)
{
	struct imap_seqset *set;
	const char *error;
	uint32_t n = 0, seen = 0;

	check_seq("*:4", 10, "4:10");
	check_seq("*:4", 2, "2:4");
	check_seq("4:2", 10, "2:4");
	check_seq("1,3:*", 5, "1,3:5");
	check_seq("5,1,2,3,9:7,6", 100, "1:3,5:9");
	check_seq("*", 0, "");
	check_seq("1:*", 0, "1");
	check_seq("4294967295", 1, "4294967295");
	check_seq("$", 1, "$");
	check_seq("0", 1, NULL);
	check_seq("1:0", 1, NULL);
	check_seq("4294967296", 1, NULL);
	check_seq("1,", 1, NULL);
	check_seq(",1", 1, NULL);
	check_seq("1::2", 1, NULL);
	check_seq("$,1", 1, NULL);
	check_seq("", 1, NULL);

	assert_int_equal(imap_seqset_parse("2:4,10,4294967295", 17, &set,
					   &error), 0);
	assert_true(imap_seqset_contains(set, 3));
	assert_false(imap_seqset_contains(set, 5));
	assert_true(imap_seqset_contains(set, 4294967295u));
	assert_int_equal(imap_seqset_count(set), 5);
	while (imap_seqset_next(set, &n))
		seen++;
	assert_int_equal(seen, 5);
	assert_int_equal(n, 4294967295u);
	imap_seqset_free(&set);

	set = imap_seqset_new();
	imap_seqset_add(set, 1, 1);
	imap_seqset_add(set, 2, 3);
	imap_seqset_add(set, 7, 7);
	imap_seqset_add(set, 5, 5);
	{
		struct str *out = str_new(0, 64);

		assert_int_equal(imap_seqset_format(set, out), 0);
		assert_string_equal(str_c(out), "1:3,5,7");
		str_free(&out);
	}
	imap_seqset_free(&set);

	/* Many separate ranges, in and out of order: the array grows under
	 * the adds (it once read its old storage after growing). */
	set = imap_seqset_new();
	for (uint32_t u = 2; u <= 40; u += 2)
		imap_seqset_add(set, u, u);
	imap_seqset_add(set, 1, 1);
	imap_seqset_add(set, 41, 41);
	for (uint32_t u = 99; u >= 61; u -= 2)
		imap_seqset_add(set, u, u);
	{
		struct str *out = str_new(0, 1024);

		assert_int_equal(imap_seqset_format(set, out), 0);
		assert_true(strncmp(str_c(out), "1:2,4,6,", 8) == 0);
		assert_int_equal(imap_seqset_nranges(set), 20 + 20);
		assert_true(imap_seqset_contains(set, 41));
		assert_true(imap_seqset_contains(set, 61));
		assert_false(imap_seqset_contains(set, 62));
		str_free(&out);
	}
	imap_seqset_free(&set);
}

static void mutf7_round(const char *utf8, const char *mutf7)
{
	struct str *out = str_new(0, 1024);
	const char *error;

	assert_int_equal(imap_mutf7_encode(utf8, strlen(utf8), out, &error), 0);
	assert_string_equal(str_c(out), mutf7);
	str_clear(out);
	assert_int_equal(imap_mutf7_decode(mutf7, strlen(mutf7), out, &error),
			 0);
	assert_string_equal(str_c(out), utf8);
	str_free(&out);
}

static void test_mutf7(void **state)
{
	static const char *const invalid[] = {
		"&", "&AOQ", "&AGE-", "&AOQ-&AOQ-", "&AOR-", "&2D0-",
		"&3gA-", "&2D3eAA", "a\x80", "&AAA-", "&A-", "&AOQA-",
		"a\tb", "&*-",
	};
	struct str *out = str_new(0, 1024);
	const char *error;

	mutf7_round("Entw\xc3\xbcrfe", "Entw&APw-rfe");
	mutf7_round("&", "&-");
	mutf7_round("a&b", "a&-b");
	mutf7_round("", "");
	mutf7_round("\xe5\x8f\xb0\xe5\x8c\x97", "&U,BTFw-");
	mutf7_round("~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5"
		    "\xe6\x9c\xac\xe8\xaa\x9e",
		    "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
	mutf7_round("\xf0\x9f\x98\x80", "&2D3eAA-");	/* surrogates */
	mutf7_round("\xc3\xa4&\xc3\xb6", "&AOQ-&-&APY-");
	mutf7_round("\t", "&AAk-");
	for (size_t i = 0; i < TERN_NELEM(invalid); i++) {
		str_clear(out);
		if (imap_mutf7_decode(invalid[i], strlen(invalid[i]), out,
				      &error) == 0)
			fail_msg("decoded %s", invalid[i]);
	}
	str_clear(out);
	assert_int_equal(imap_mutf7_encode("\xc3\x28", 2, out, &error), -1);
	assert_int_equal(imap_mutf7_encode("\xed\xa0\x80", 3, out, &error), -1);
	assert_int_equal(imap_mutf7_encode("a\0b", 3, out, &error), -1);
	str_free(&out);
}

static void test_dates(void **state)
{
	struct imap_date d;
	time_t t;
	int zone;

	assert_int_equal(imap_date_parse("1-Feb-1994", 10, &d), 0);
	assert_int_equal(d.year, 1994);
	assert_int_equal(d.mon, 2);
	assert_int_equal(d.day, 1);
	assert_int_equal(imap_date_parse("29-feb-2024", 11, &d), 0);
	assert_int_equal(imap_date_parse("29-Feb-2023", 11, &d), -1);
	assert_int_equal(imap_date_parse("1-Foo-2023", 10, &d), -1);
	assert_int_equal(imap_date_parse("001-Feb-2023", 12, &d), -1);
	assert_int_equal(imap_datetime_parse(" 1-Jan-1970 01:00:00 +0100", 26,
					     &t, &zone), 0);
	assert_int_equal(t, 0);
	assert_int_equal(zone, 60);
	assert_int_equal(imap_datetime_parse("17-Jul-1996 02:44:25 -0700", 26,
					     &t, &zone), 0);
	assert_int_equal(t, 837596665);
	assert_int_equal(imap_datetime_parse("17-Jul-1996 24:44:25 -0700", 26,
					     &t, &zone), -1);
}

/* ---- typed commands ------------------------------------------------- */

static void test_fetch(void **state)
{
	struct imap_cmd *cmd = one("a UID FETCH 1:* (FLAGS BODY.PEEK[1.2."
				   "HEADER.FIELDS.NOT (X-A \"X B\")]<0.512> "
				   "BINARY[3]<7.8> BINARY.SIZE[] BODY[1.MIME] "
				   "RFC822.TEXT MODSEQ) (CHANGEDSINCE 12345 "
				   "VANISHED)\r\n");
	const struct imap_fetch *f;
	const char *error;
	struct str *name = str_new(0, 1024);

	assert_int_equal(imap_cmd_fetch(cmd, &f, &error), 0);
	assert_int_equal(f->items, IMAP_FETCH_FLAGS | IMAP_FETCH_UID |
			 IMAP_FETCH_RFC822_TEXT | IMAP_FETCH_MODSEQ);
	assert_int_equal(f->nsections, 4);
	assert_true(f->sections[0].peek);
	assert_int_equal(f->sections[0].nparts, 2);
	assert_int_equal(f->sections[0].parts[1], 2);
	assert_int_equal(f->sections[0].spec, IMAP_SECTION_HEADER_FIELDS_NOT);
	assert_int_equal(f->sections[0].nfields, 2);
	assert_string_equal(f->sections[0].fields[1], "X B");
	assert_true(f->sections[0].partial);
	assert_int_equal(f->sections[0].length, 512);
	assert_int_equal(imap_fetch_section_name(&f->sections[0], name), 0);
	assert_string_equal(str_c(name),
			    "BODY[1.2.HEADER.FIELDS.NOT (X-A \"X B\")]<0>");
	assert_int_equal(f->sections[1].kind, IMAP_FETCH_KIND_BINARY);
	assert_int_equal(f->sections[1].offset, 7);
	assert_int_equal(f->sections[2].kind, IMAP_FETCH_KIND_BINARY_SIZE);
	assert_int_equal(f->sections[3].spec, IMAP_SECTION_MIME);
	assert_true(f->sets_seen);
	assert_true(f->changedsince_set);
	assert_int_equal(f->changedsince, 12345);
	assert_true(f->vanished);
	imap_cmd_free(&cmd);
	str_free(&name);

	cmd = one("b FETCH 2 ALL\r\n");
	assert_int_equal(imap_cmd_fetch(cmd, &f, &error), 0);
	assert_int_equal(f->items, IMAP_FETCH_FLAGS | IMAP_FETCH_INTERNALDATE |
			 IMAP_FETCH_RFC822_SIZE | IMAP_FETCH_ENVELOPE);
	assert_false(f->sets_seen);
	imap_cmd_free(&cmd);

	static const char *const bad[] = {
		"c FETCH 1 (ALL)\r\n", "c FETCH 1 BODY[MIME]\r\n",
		"c FETCH 1 BODY[1.]\r\n", "c FETCH 1 BODY[0]\r\n",
		"c FETCH 1 BINARY[TEXT]\r\n", "c FETCH 1 BODY[]<1.0>\r\n",
		"c FETCH 1 BINARY.SIZE[1]<1.2>\r\n", "c FETCH 1 FOO\r\n",
		"c FETCH 1 BODY[HEADER.FIELDS ()]\r\n",
		"c FETCH 1 (FLAGS) (VANISHED)\r\n",
		"c FETCH 0 FLAGS\r\n", "c FETCH x FLAGS\r\n",
		"c FETCH 1 BODY[TEXT\r\n",
	};
	for (size_t i = 0; i < TERN_NELEM(bad); i++) {
		cmd = one(bad[i]);
		if (imap_cmd_fetch(cmd, &f, &error) == 0)
			fail_msg("accepted %s", bad[i]);
		imap_cmd_free(&cmd);
	}
}

static void test_store_copy(void **state)
{
	struct imap_cmd *cmd = one("a STORE 1:3 (UNCHANGEDSINCE 7) -FLAGS.SILENT"
				   " \\Seen \\Deleted\r\n");
	const struct imap_store *st;
	const struct imap_copy *cp;
	const char *error;

	assert_int_equal(imap_cmd_store(cmd, &st, &error), 0);
	assert_int_equal(st->op, IMAP_STORE_REMOVE);
	assert_true(st->silent);
	assert_int_equal(st->nflags, 2);
	assert_string_equal(st->flags[1], "\\Deleted");
	assert_int_equal(st->unchangedsince, 7);
	imap_cmd_free(&cmd);
	cmd = one("a STORE 1 FLAGS ()\r\n");
	assert_int_equal(imap_cmd_store(cmd, &st, &error), 0);
	assert_int_equal(st->nflags, 0);
	imap_cmd_free(&cmd);
	cmd = one("a STORE 1 FLAGS (\\Recent)\r\n");
	assert_int_equal(imap_cmd_store(cmd, &st, &error), -1);
	imap_cmd_free(&cmd);
	cmd = one("a MOVE 1:* &AOQ-\r\n");
	assert_int_equal(imap_cmd_copy(cmd, false, &cp, &error), 0);
	assert_string_equal(cp->mailbox, "\xc3\xa4");
	imap_cmd_free(&cmd);
}

static void test_search(void **state)
{
	struct imap_cmd *cmd = one(
		"a UID SEARCH RETURN (MIN COUNT) CHARSET utf-8 1:5 OR "
		"(FROM joe SINCE 1-Feb-1994) NOT HEADER X-Y \"z\" "
		"UID $ MODSEQ \"/flags/\\\\draft\" all 620162338 "
		"YOUNGER 3600 SENTON \"2-Mar-2020\" LARGER 0\r\n");
	const struct imap_search *s;
	const struct imap_search_node *n;
	const char *error;

	assert_int_equal(imap_cmd_search(cmd, &s, &error), 0);
	assert_string_equal(s->charset, "UTF-8");
	assert_true(s->esearch);
	assert_int_equal(s->ret, IMAP_SEARCH_RET_MIN | IMAP_SEARCH_RET_COUNT);
	assert_true(s->saved);
	assert_true(s->modseq);
	n = s->root.children;
	assert_int_equal(s->root.nchildren, 7);
	assert_int_equal(n[0].key, IMAP_SEARCH_SEQSET);
	assert_int_equal(n[1].key, IMAP_SEARCH_OR);
	assert_int_equal(n[1].children[0].key, IMAP_SEARCH_AND);
	assert_int_equal(n[1].children[0].children[1].date.year, 1994);
	assert_int_equal(n[1].children[1].key, IMAP_SEARCH_NOT);
	assert_string_equal(n[1].children[1].children[0].header, "X-Y");
	assert_int_equal(n[2].key, IMAP_SEARCH_UID);
	assert_int_equal(n[3].key, IMAP_SEARCH_MODSEQ);
	assert_string_equal(n[3].entry, "/flags/\\draft");
	assert_int_equal(n[3].number, 620162338);
	assert_int_equal(n[4].number, 3600);
	assert_int_equal(n[5].date.mon, 3);
	assert_int_equal(n[6].key, IMAP_SEARCH_LARGER);
	imap_cmd_free(&cmd);

	cmd = one("a SEARCH RETURN () ALL\r\n");
	assert_int_equal(imap_cmd_search(cmd, &s, &error), 0);
	assert_int_equal(s->ret, IMAP_SEARCH_RET_ALL);
	imap_cmd_free(&cmd);

	static const char *const bad[] = {
		"a SEARCH\r\n", "a SEARCH FOO\r\n", "a SEARCH OR ALL\r\n",
		"a SEARCH SINCE 30-Feb-2020\r\n", "a SEARCH YOUNGER 0\r\n",
		"a SEARCH RETURN (FOO) ALL\r\n", "a SEARCH CHARSET\r\n",
		"a SEARCH HEADER \"\" x\r\n", "a SEARCH KEYWORD \\Seen\r\n",
		"a SEARCH UID 0\r\n", "a SEARCH ()\r\n",
	};
	for (size_t i = 0; i < TERN_NELEM(bad); i++) {
		cmd = one(bad[i]);
		if (imap_cmd_search(cmd, &s, &error) == 0)
			fail_msg("accepted %s", bad[i]);
		imap_cmd_free(&cmd);
	}
	/* deep NOT chains stop at the depth limit */
	{
		struct str *in = str_new(0, 4096);

		assert_int_equal(str_append_c(in, "a SEARCH"), 0);
		for (int i = 0; i < 100; i++)
			assert_int_equal(str_append_c(in, " NOT"), 0);
		assert_int_equal(str_append_c(in, " ALL\r\n"), 0);
		cmd = one(str_c(in));
		assert_int_equal(imap_cmd_search(cmd, &s, &error), -1);
		imap_cmd_free(&cmd);
		str_free(&in);
	}
}

static void test_sort_thread(void **state)
{
	struct imap_cmd *cmd = one("a UID SORT (REVERSE DATE SUBJECT) UTF-8 "
				   "UNSEEN\r\n");
	const struct imap_sort *so;
	const struct imap_thread *th;
	const char *error;

	assert_int_equal(imap_cmd_sort(cmd, &so, &error), 0);
	assert_int_equal(so->ncriteria, 2);
	assert_true(so->criteria[0].reverse);
	assert_int_equal(so->criteria[0].key, IMAP_SORT_DATE);
	assert_false(so->criteria[1].reverse);
	assert_string_equal(so->search.charset, "UTF-8");
	imap_cmd_free(&cmd);
	cmd = one("a SORT (REVERSE) UTF-8 ALL\r\n");
	assert_int_equal(imap_cmd_sort(cmd, &so, &error), -1);
	imap_cmd_free(&cmd);
	cmd = one("a THREAD references US-ASCII SINCE 1-Jan-2020\r\n");
	assert_int_equal(imap_cmd_thread(cmd, &th, &error), 0);
	assert_string_equal(th->algorithm, "REFERENCES");
	assert_int_equal(th->search.root.children[0].key, IMAP_SEARCH_SINCE);
	imap_cmd_free(&cmd);
}

static void test_list_status(void **state)
{
	struct imap_cmd *cmd = one("a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" "
				   "(INBOX Entw&APw-rfe/%) RETURN (CHILDREN "
				   "STATUS (MESSAGES UNSEEN))\r\n");
	const struct imap_list *l;
	const struct imap_status *st;
	const char *error;

	assert_int_equal(imap_cmd_list(cmd, false, &l, &error), 0);
	assert_true(l->extended);
	assert_int_equal(l->select, IMAP_LIST_SEL_SUBSCRIBED |
			 IMAP_LIST_SEL_RECURSIVEMATCH);
	assert_int_equal(l->ret, IMAP_LIST_RET_CHILDREN | IMAP_LIST_RET_STATUS);
	assert_int_equal(l->status_items, IMAP_STATUS_MESSAGES |
			 IMAP_STATUS_UNSEEN);
	assert_int_equal(l->npatterns, 2);
	assert_string_equal(l->patterns[1], "Entw\xc3\xbcrfe/%");
	imap_cmd_free(&cmd);

	cmd = one("a LIST \"\" *\r\n");
	assert_int_equal(imap_cmd_list(cmd, false, &l, &error), 0);
	assert_false(l->extended);
	assert_string_equal(l->patterns[0], "*");
	imap_cmd_free(&cmd);
	cmd = one("a LIST (RECURSIVEMATCH) \"\" *\r\n");
	assert_int_equal(imap_cmd_list(cmd, false, &l, &error), -1);
	imap_cmd_free(&cmd);
	cmd = one("a LSUB \"\" (a b)\r\n");
	assert_int_equal(imap_cmd_list(cmd, false, &l, &error), -1);
	imap_cmd_free(&cmd);

	cmd = one("a STATUS inbox (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED "
		  "SIZE HIGHESTMODSEQ RECENT)\r\n");
	assert_int_equal(imap_cmd_status(cmd, false, &st, &error), 0);
	assert_string_equal(st->mailbox, "INBOX");
	assert_int_equal(st->items, 0xff);
	imap_cmd_free(&cmd);
	cmd = one("a STATUS x (FOO)\r\n");
	assert_int_equal(imap_cmd_status(cmd, false, &st, &error), -1);
	imap_cmd_free(&cmd);
	/* UTF8=ACCEPT: names as they are, but valid UTF-8 */
	cmd = one("a STATUS \"Entw\xc3\xbcrfe\" (SIZE)\r\n");
	assert_int_equal(imap_cmd_status(cmd, true, &st, &error), 0);
	assert_string_equal(st->mailbox, "Entw\xc3\xbcrfe");
	assert_int_equal(imap_cmd_status(cmd, false, &st, &error), -1);
	imap_cmd_free(&cmd);
}

static void test_select_append(void **state)
{
	struct imap_cmd *cmd = one("a SELECT INBOX (QRESYNC (67890007 "
				   "90060115194045000 41:211,214:541 "
				   "(1:2 3,4)) CONDSTORE)\r\n");
	const struct imap_select *sel;
	const struct imap_append *ap;
	const char *error;

	assert_int_equal(imap_cmd_select(cmd, false, &sel, &error), 0);
	assert_true(sel->qresync);
	assert_true(sel->condstore);
	assert_int_equal(sel->uidvalidity, 67890007);
	assert_true(sel->modseq == UINT64_C(90060115194045000));
	assert_true(imap_seqset_contains(sel->known_uids, 300));
	assert_true(imap_seqset_contains(sel->match_uids, 4));
	imap_cmd_free(&cmd);
	cmd = one("a SELECT x (QRESYNC (0 1))\r\n");
	assert_int_equal(imap_cmd_select(cmd, false, &sel, &error), -1);
	imap_cmd_free(&cmd);

	static const char app[] = "a APPEND Sent (\\Seen) \" 7-Feb-2024 "
		"10:00:00 +0000\" {2}\r\nhi ~{3}\r\na\0b UTF8 (~{1}\r\nx)\r\n";
	static const char nul[] = "a APPEND x {3}\r\na\0b\r\n";

	cmd = one_n(app, sizeof(app) - 1);
	assert_int_equal(imap_cmd_append(cmd, false, &ap, &error), 0);
	assert_string_equal(ap->mailbox, "Sent");
	assert_int_equal(ap->nmsgs, 3);
	assert_int_equal(ap->msgs[0].nflags, 1);
	assert_true(ap->msgs[0].date_set);
	assert_int_equal(ap->msgs[0].size, 2);
	assert_true(ap->msgs[1].binary);
	assert_int_equal(ap->msgs[1].size, 3);
	assert_true(ap->msgs[2].binary);
	imap_cmd_free(&cmd);
	cmd = one_n(nul, sizeof(nul) - 1);
	assert_int_equal(imap_cmd_append(cmd, false, &ap, &error), -1);
	imap_cmd_free(&cmd);
}

static void test_misc_commands(void **state)
{
	struct imap_cmd *cmd = one("a ENABLE condstore UTF8=ACCEPT\r\n");
	const struct imap_enable *en;
	const struct imap_id *id;
	const struct imap_authenticate *au;
	const struct imap_login *lo;
	const char *error;

	assert_int_equal(imap_cmd_enable(cmd, &en, &error), 0);
	assert_int_equal(en->ncaps, 2);
	assert_string_equal(en->caps[0], "CONDSTORE");
	imap_cmd_free(&cmd);
	cmd = one("a ID (\"name\" \"x\" \"version\" NIL)\r\n");
	assert_int_equal(imap_cmd_id(cmd, &id, &error), 0);
	assert_int_equal(id->n, 2);
	assert_null(id->values[1]);
	imap_cmd_free(&cmd);
	cmd = one("a ID NIL\r\n");
	assert_int_equal(imap_cmd_id(cmd, &id, &error), 0);
	assert_int_equal(id->n, 0);
	imap_cmd_free(&cmd);
	cmd = one("a AUTHENTICATE plain AGpvZQBwdw==\r\n");
	assert_int_equal(imap_cmd_authenticate(cmd, &au, &error), 0);
	assert_string_equal(au->mechanism, "PLAIN");
	assert_true(au->has_ir);
	assert_string_equal(au->ir, "AGpvZQBwdw==");
	imap_cmd_free(&cmd);
	cmd = one("a AUTHENTICATE EXTERNAL =\r\n");
	assert_int_equal(imap_cmd_authenticate(cmd, &au, &error), 0);
	assert_string_equal(au->ir, "");
	imap_cmd_free(&cmd);
	cmd = one("a AUTHENTICATE PLAIN abc\r\n");
	assert_int_equal(imap_cmd_authenticate(cmd, &au, &error), -1);
	imap_cmd_free(&cmd);
	cmd = one("a LOGIN joe {2}\r\npw\r\n");
	assert_int_equal(imap_cmd_login(cmd, &lo, &error), 0);
	assert_string_equal(lo->user, "joe");
	assert_string_equal(lo->password, "pw");
	imap_cmd_free(&cmd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple_commands),
		cmocka_unit_test(test_literals),
		cmocka_unit_test(test_literal_plus_minus),
		cmocka_unit_test(test_literal_limits),
		cmocka_unit_test(test_long_line),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_nesting_and_args),
		cmocka_unit_test(test_feed_line),
		cmocka_unit_test(test_seqsets),
		cmocka_unit_test(test_mutf7),
		cmocka_unit_test(test_dates),
		cmocka_unit_test(test_fetch),
		cmocka_unit_test(test_store_copy),
		cmocka_unit_test(test_search),
		cmocka_unit_test(test_sort_thread),
		cmocka_unit_test(test_list_status),
		cmocka_unit_test(test_select_append),
		cmocka_unit_test(test_misc_commands),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
