/* test_linereader.c: the text protocol line reader, whole and byte by byte. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "compat.h"

#include <stdlib.h>

#include "linereader.h"
#include "str.h"

#define AUTO_LITERAL 0x100	/* a line ending in {N} announces a literal */
#define STRICT 0x200		/* bare LF is not a line end */

/* Appends one event to the transcript: L:<line>[flags], T:<n>, X:<lit>. */
static void log_event(struct str *t, int r, const struct linereader_line *l)
{
	if (r == LINEREADER_TOO_LONG) {
		int lf = (l->flags & LINEREADER_F_BARE_LF_END) != 0;

		assert_int_equal(str_printf(t, "T:%zu%s|", l->len,
					    lf ? "[lf]" : ""), 0);
		return;
	}
	if (r == LINEREADER_LITERAL) {
		/* Chunks of one literal are joined: splits vary by step. */
		if (str_len(t) < 2 || strncmp(str_c(t) + str_len(t) - 1, ">",
					      1) != 0)
			assert_int_equal(str_append_c(t, "X:<"), 0);
		else
			str_truncate(t, str_len(t) - 1);
		assert_int_equal(str_append(t, l->data, l->len), 0);
		assert_int_equal(str_append_c(t, ">"), 0);
		if (l->flags & LINEREADER_F_LITERAL_END)
			assert_int_equal(str_append_c(t, "|"), 0);
		return;
	}
	assert_int_equal(str_append_c(t, "L:"), 0);
	assert_int_equal(str_append(t, l->data, l->len), 0);
	assert_int_equal(str_printf(t, "%s%s%s|",
		(l->flags & LINEREADER_F_BARE_LF_END) ? "[lf]" : "",
		(l->flags & LINEREADER_F_BARE_CR) ? "[cr]" : "",
		(l->flags & LINEREADER_F_BARE_LF) ? "[LF]" : ""), 0);
}

/* A literal announced as "{N}" at the end of the line. */
static void maybe_literal(struct linereader *lr,
			  const struct linereader_line *l)
{
	const char *open;
	char num[32];
	size_t n;

	if (l->len < 3 || l->data[l->len - 1] != '}')
		return;
	open = memrchr(l->data, '{', l->len);
	if (open == NULL)
		return;
	n = (size_t)(l->data + l->len - 1 - open - 1);
	if (n == 0 || n >= sizeof(num))
		return;
	memcpy(num, open + 1, n);
	num[n] = '\0';
	assert_int_equal(linereader_expect_literal(lr, strtoull(num, NULL, 10)),
			 0);
}

/* Feeds in in pieces of step bytes (0 = whole); returns the transcript. */
static struct str *run(const char *in, size_t len, size_t max, size_t step,
		       unsigned int opts)
{
	struct linereader *lr = linereader_new(max);
	struct str *t = str_new(0, 1 << 16);
	const char *p = in, *end = in + len;
	struct linereader_line l;

	if (opts & STRICT)
		linereader_set_bare_lf(lr, 0);
	while (p < end) {
		const char *stop = step == 0 || (size_t)(end - p) < step ?
				   end : p + step;
		int r;

		while ((r = linereader_feed(lr, &p, stop, &l)) !=
		       LINEREADER_MORE) {
			log_event(t, r, &l);
			if (r == LINEREADER_LINE && (opts & AUTO_LITERAL))
				maybe_literal(lr, &l);
			if (r == LINEREADER_LITERAL) {
				/* zero-copy: the chunk lies in the input */
				assert_true(l.data >= in &&
					    l.data + l.len <= end);
			}
		}
		assert_ptr_equal(p, stop);
		/* at most max data bytes, plus a final CR held back */
		assert_true(linereader_buffered(lr) <= max + 1);
	}
	linereader_free(&lr);
	assert_null(lr);
	return t;
}

/* The same transcript whole, byte by byte, and in 2, 3 and 7 byte steps. */
static void expect(const char *in, size_t max, unsigned int opts,
		   const char *want)
{
	static const size_t steps[] = { 0, 1, 2, 3, 7 };

	for (size_t i = 0; i < TERN_NELEM(steps); i++) {
		struct str *t = run(in, strlen(in), max, steps[i], opts);

		if (strcmp(str_c(t), want) != 0)
			fail_msg("step %zu: got '%s' want '%s'", steps[i],
				 str_c(t), want);
		str_free(&t);
	}
}

static void test_line_ends(void **state)
{
	expect("a\r\nb\nc\r\n", 100, 0, "L:a|L:b[lf]|L:c|");
	expect("\r\n\n\r\n", 100, 0, "L:|L:[lf]|L:|");
	expect("no end yet", 100, 0, "");
	expect("x\r", 100, 0, "");
	expect("a\rb\r\n", 100, 0, "L:a\rb[cr]|");
	expect("a\r\r\n", 100, 0, "L:a\r[cr]|");
	expect("\r\r\r\n", 100, 0, "L:\r\r[cr]|");
	expect("a\rb\n", 100, 0, "L:a\rb[lf][cr]|");
	expect("a\r\n.\r\n", 100, 0, "L:a|L:.|");
}

static void test_strict_mode(void **state)
{
	expect("a\nb\r\nc\r\n", 100, STRICT, "L:a\nb[LF]|L:c|");
	expect("\n\r\n", 100, STRICT, "L:\n[LF]|");
	expect("a\r\r\n", 100, STRICT, "L:a\r[cr]|");
	/* The smuggling pattern: <LF>.<CR><LF> hides inside one line. */
	expect("data\n.\r\nMAIL\r\n", 100, STRICT,
	       "L:data\n.[LF]|L:MAIL|");
	expect("x\r\n\r\n", 100, STRICT, "L:x|L:|");
	expect("a\n\r\r\n", 100, STRICT, "L:a\n\r[cr][LF]|");
}

static void test_too_long_recovers(void **state)
{
	expect("12345\r\nok\r\n", 5, 0, "L:12345|L:ok|");
	expect("123456\r\nok\r\n", 5, 0, "T:6|L:ok|");
	expect("123456\nok\n", 5, 0, "T:6[lf]|L:ok[lf]|");
	expect("1234\r5\r\nok\r\n", 5, 0, "T:6|L:ok|");
	expect("1234567890123\r\n123456789\r\nyes\r\n", 5, 0,
	       "T:13|T:9|L:yes|");
	expect("1234567\n89\r\nok\r\n", 5, STRICT, "T:10|L:ok|");
	/* A long line never ending: nothing buffered, nothing returned. */
	expect("123456789012345678901234567890", 5, 0, "");
	/* max_line 1 */
	expect("a\r\nbb\r\nc\n", 1, 0, "L:a|T:2|L:c[lf]|");
}

static void test_never_buffers_more_than_max(void **state)
{
	struct linereader *lr = linereader_new(8);
	struct linereader_line l;
	const char *in = "12345678\r", *p = in;

	assert_int_equal(linereader_feed(lr, &p, in + 9, &l), LINEREADER_MORE);
	assert_int_equal(linereader_buffered(lr), 9);	/* 8 + held CR */
	in = "9";
	p = in;
	assert_int_equal(linereader_feed(lr, &p, in + 1, &l), LINEREADER_MORE);
	assert_int_equal(linereader_buffered(lr), 0);	/* discarding */
	in = "\r\nnext\r\n";
	p = in;
	assert_int_equal(linereader_feed(lr, &p, in + 8, &l),
			 LINEREADER_TOO_LONG);
	assert_int_equal(l.len, 10);
	assert_int_equal(linereader_feed(lr, &p, in + 8, &l), LINEREADER_LINE);
	assert_int_equal(l.len, 4);
	assert_memory_equal(l.data, "next", 4);
	assert_ptr_equal(l.data, in + 2);	/* zero-copy */
	linereader_free(&lr);
}

static void test_literal(void **state)
{
	expect("A1 LOGIN {5}\r\nhello\r\nA2 NOOP\r\n", 100, AUTO_LITERAL,
	       "L:A1 LOGIN {5}|X:<hello>|L:|L:A2 NOOP|");
	/* an announcing line that is too long announces nothing */
	expect("A {12}\r\n\r\n\r\nabc\ndefg rest\r\n", 4, AUTO_LITERAL,
	       "T:6|L:|L:|L:abc[lf]|T:9|");
	/* literal bytes may hold CR and LF, and be longer than max_line */
	expect("{12}\r\n\r\n\r\nabc\ndefg rest\r\n", 10, AUTO_LITERAL,
	       "L:{12}|X:<\r\n\r\nabc\ndefg>|L: rest|");
	expect("{3}\r\nabc{2}\r\nxy\r\n", 10, AUTO_LITERAL,
	       "L:{3}|X:<abc>|L:{2}|X:<xy>|L:|");
}

static void test_literal_rules(void **state)
{
	struct linereader *lr = linereader_new(64);
	struct linereader_line l;
	const char *in = "abc{3}\r\nxyz", *p = in;

	assert_int_equal(linereader_expect_literal(lr, 0), 0);
	assert_int_equal(linereader_literal_left(lr), 0);
	assert_int_equal(linereader_feed(lr, &p, in + 3, &l), LINEREADER_MORE);
	assert_int_equal(linereader_expect_literal(lr, 3), -1);
	assert_int_equal(linereader_feed(lr, &p, in + 8, &l), LINEREADER_LINE);
	assert_int_equal(l.len, 6);
	assert_memory_equal(l.data, "abc{3}", 6);	/* from the buffer */
	assert_int_equal(linereader_expect_literal(lr, 3), 0);
	assert_int_equal(linereader_expect_literal(lr, 3), -1);
	assert_int_equal(linereader_literal_left(lr), 3);
	assert_int_equal(linereader_feed(lr, &p, in + 10, &l),
			 LINEREADER_LITERAL);
	assert_int_equal(l.len, 2);
	assert_int_equal(l.flags, 0);
	assert_int_equal(linereader_feed(lr, &p, in + 10, &l),
			 LINEREADER_MORE);
	assert_int_equal(linereader_feed(lr, &p, in + 11, &l),
			 LINEREADER_LITERAL);
	assert_int_equal(l.len, 1);
	assert_int_equal(l.flags, LINEREADER_F_LITERAL_END);
	assert_int_equal(linereader_literal_left(lr), 0);
	linereader_free(&lr);
}

static void test_reset_drops_plaintext(void **state)
{
	struct linereader *lr = linereader_new(64);
	struct linereader_line l;
	const char *in = "STARTTLS\r\nRSET\r", *p = in;

	linereader_set_bare_lf(lr, 0);
	assert_int_equal(linereader_feed(lr, &p, in + 15, &l), LINEREADER_LINE);
	assert_int_equal(l.len, 8);
	/* The caller drops what it still holds; here we also buffered some. */
	assert_int_equal(linereader_feed(lr, &p, in + 15, &l), LINEREADER_MORE);
	assert_int_equal(linereader_buffered(lr), 5);
	linereader_reset(lr);
	assert_int_equal(linereader_buffered(lr), 0);
	in = "\nEHLO x\n\r\n";
	p = in;
	/* Strict mode survives the reset: the LF is data, not RSET's end. */
	assert_int_equal(linereader_feed(lr, &p, in + 10, &l), LINEREADER_LINE);
	assert_int_equal(l.len, 8);
	assert_memory_equal(l.data, "\nEHLO x\n", 8);
	assert_int_equal(l.flags, LINEREADER_F_BARE_LF);
	/* A pending literal goes too. */
	assert_int_equal(linereader_expect_literal(lr, 100), 0);
	linereader_reset(lr);
	assert_int_equal(linereader_literal_left(lr), 0);
	linereader_free(&lr);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_line_ends),
		cmocka_unit_test(test_strict_mode),
		cmocka_unit_test(test_too_long_recovers),
		cmocka_unit_test(test_never_buffers_more_than_max),
		cmocka_unit_test(test_literal),
		cmocka_unit_test(test_literal_rules),
		cmocka_unit_test(test_reset_drops_plaintext),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
