/* test_str.c: the bounded string type and the log line escaping. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "compat.h"
#include "str.h"

static void test_append_within_max(void **state)
{
	struct str *s = str_new(0, 10);

	assert_int_equal(str_append(s, "hello", 5), 0);
	assert_int_equal(str_append_c(s, "world"), 0);
	assert_int_equal(str_len(s), 10);
	assert_string_equal(str_c(s), "helloworld");
	assert_int_equal(str_room(s), 0);
	str_free(&s);
	assert_null(s);
}

static void test_append_past_max_fails_unchanged(void **state)
{
	struct str *s = str_new(4, 8);

	assert_int_equal(str_append_c(s, "abcdef"), 0);
	errno = 0;
	assert_int_equal(str_append_c(s, "xyz"), -1);
	assert_int_equal(errno, ENOBUFS);
	assert_string_equal(str_c(s), "abcdef");
	assert_int_equal(str_printf(s, "%d", 12345), -1);
	assert_string_equal(str_c(s), "abcdef");
	assert_int_equal(str_printf(s, "%d", 12), 0);
	assert_string_equal(str_c(s), "abcdef12");
	str_free(&s);
}

static void test_consume_truncate_set(void **state)
{
	struct str *s = str_new(0, 100);

	assert_int_equal(str_append(s, "a\0b", 3), 0);
	assert_int_equal(str_len(s), 3);
	str_consume(s, 1);
	assert_int_equal(str_len(s), 2);
	assert_memory_equal(str_c(s), "\0b", 2);
	str_consume(s, 10);
	assert_int_equal(str_len(s), 0);
	assert_int_equal(str_set(s, "xyz", 3), 0);
	str_truncate(s, 1);
	assert_string_equal(str_c(s), "x");
	str_truncate(s, 5);
	assert_string_equal(str_c(s), "x");
	str_free(&s);
}

static void test_byte_at_a_time_growth(void **state)
{
	struct str *s = str_new(0, 1000);

	for (int i = 0; i < 1000; i++)
		assert_int_equal(str_append_byte(s, (unsigned char)('a' + i % 26)), 0);
	assert_int_equal(str_append_byte(s, 'x'), -1);
	assert_int_equal(str_len(s), 1000);
	assert_int_equal(str_c(s)[1000], '\0');
	str_free(&s);
}

static void test_lcpy(void **state)
{
	char buf[4];

	assert_int_equal(str_lcpy(buf, "abcdef", sizeof(buf)), 6);
	assert_string_equal(buf, "abc");
	struct str *d = str_dup_c("");
	assert_int_equal(str_len(d), 0);
	str_free(&d);
}

static void test_hex_value(void **state)
{
	(void)state;
	for (int c = 0; c < 256; c++) {
		int want = c >= '0' && c <= '9' ? c - '0' :
			   c >= 'a' && c <= 'f' ? c - 'a' + 10 :
			   c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;

		assert_int_equal(str_hex_value((unsigned char)c), want);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_append_within_max),
		cmocka_unit_test(test_append_past_max_fails_unchanged),
		cmocka_unit_test(test_consume_truncate_set),
		cmocka_unit_test(test_byte_at_a_time_growth),
		cmocka_unit_test(test_lcpy),
		cmocka_unit_test(test_hex_value),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
