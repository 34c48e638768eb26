/* test_json.c: the JSON writer. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "compat.h"

#include "json.h"
#include "str.h"

/* Writes one string value and compares the output. */
static void expect_json_string(const void *in, size_t len, const char *want)
{
	struct str *out = str_new(0, 1024);
	struct json *j = json_new(out, 0);
	const char *error = NULL;

	json_string(j, in, len);
	assert_int_equal(json_finish(j, &error), 0);
	assert_string_equal(str_c(out), want);
	json_free(&j);
	assert_null(j);
	str_free(&out);
}

static void test_escapes(void **state)
{
	expect_json_string("plain", 5, "\"plain\"");
	expect_json_string("", 0, "\"\"");
	expect_json_string("q\"b\\s/", 6, "\"q\\\"b\\\\s/\"");
	expect_json_string("\b\f\n\r\t", 5, "\"\\b\\f\\n\\r\\t\"");
	expect_json_string("\x01\x1f\x7f", 3, "\"\\u0001\\u001f\\u007f\"");
	expect_json_string("a\0b", 3, "\"a\\u0000b\"");
	expect_json_string("\xe2\x80\xa8\xe2\x80\xa9", 6, "\"\\u2028\\u2029\"");
}

static void test_utf8(void **state)
{
	/* valid: 2, 3 and 4 byte forms pass through */
	expect_json_string("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9,
		      "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
	/* a lone continuation byte, a truncated sequence at the end */
	expect_json_string("a\x80z", 3, "\"a\xef\xbf\xbdz\"");
	expect_json_string("a\xe2\x82", 3, "\"a\xef\xbf\xbd\xef\xbf\xbd\"");
	/* overlong, surrogate, above U+10FFFF, invalid lead bytes */
	expect_json_string("\xc0\xaf", 2, "\"\xef\xbf\xbd\xef\xbf\xbd\"");
	expect_json_string("\xe0\x80\xaf", 3,
		      "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
	expect_json_string("\xed\xa0\x80", 3,
		      "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
	expect_json_string("\xf4\x90\x80\x80", 4,
		      "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
	expect_json_string("\xff", 1, "\"\xef\xbf\xbd\"");
	/* the edges that are valid */
	expect_json_string("\xed\x9f\xbf\xf4\x8f\xbf\xbf", 7,
		      "\"\xed\x9f\xbf\xf4\x8f\xbf\xbf\"");
}

static void build_sample(struct json *j)
{
	json_object_begin(j);
	json_kv_cstring(j, "name", "tern");
	json_kv_int(j, "min", INT64_MIN);
	json_kv_int(j, "max", INT64_MAX);
	json_kv_bool(j, "up", 1);
	json_kv_bool(j, "down", 0);
	json_key(j, "none");
	json_null(j);
	json_kv_cstring(j, "null_str", NULL);
	json_key(j, "list");
	json_array_begin(j);
	json_int(j, 1);
	json_cstring(j, "two");
	json_object_begin(j);
	json_object_end(j);
	json_array_begin(j);
	json_array_end(j);
	json_array_end(j);
	json_key_n(j, "k\"ey", 4);
	json_object_begin(j);
	json_kv_int(j, "n", 0);
	json_object_end(j);
	json_object_end(j);
}

static void test_compact(void **state)
{
	struct str *out = str_new(0, 4096);
	struct json *j = json_new(out, 0);
	const char *error = NULL;

	build_sample(j);
	assert_int_equal(json_finish(j, &error), 0);
	assert_string_equal(str_c(out),
		"{\"name\":\"tern\",\"min\":-9223372036854775808,"
		"\"max\":9223372036854775807,\"up\":true,\"down\":false,"
		"\"none\":null,\"null_str\":null,"
		"\"list\":[1,\"two\",{},[]],\"k\\\"ey\":{\"n\":0}}");
	json_free(&j);
	str_free(&out);
}

static void test_pretty(void **state)
{
	struct str *out = str_new(0, 4096);
	struct json *j = json_new(out, JSON_PRETTY);
	const char *error = NULL;

	build_sample(j);
	assert_int_equal(json_finish(j, &error), 0);
	assert_string_equal(str_c(out),
		"{\n"
		"  \"name\": \"tern\",\n"
		"  \"min\": -9223372036854775808,\n"
		"  \"max\": 9223372036854775807,\n"
		"  \"up\": true,\n"
		"  \"down\": false,\n"
		"  \"none\": null,\n"
		"  \"null_str\": null,\n"
		"  \"list\": [\n"
		"    1,\n"
		"    \"two\",\n"
		"    {},\n"
		"    []\n"
		"  ],\n"
		"  \"k\\\"ey\": {\n"
		"    \"n\": 0\n"
		"  }\n"
		"}");
	json_free(&j);
	str_free(&out);
}

static void test_deep_pretty_indent(void **state)
{
	struct str *out = str_new(0, 1 << 16);
	struct json *j = json_new(out, JSON_PRETTY);
	const char *error = NULL, *p;

	for (int i = 0; i < JSON_DEPTH_MAX; i++)
		json_array_begin(j);
	for (int i = 0; i < JSON_DEPTH_MAX; i++)
		json_array_end(j);
	assert_int_equal(json_finish(j, &error), 0);
	/* The innermost "[]" sits after 63 levels of 2 spaces. */
	p = strstr(str_c(out), "[]");
	assert_non_null(p);
	assert_int_equal(p[-1], ' ');
	assert_int_equal(p[-126], ' ');
	assert_int_equal(p[-127], '\n');
	json_free(&j);
	str_free(&out);
}

static void expect_json_error(void (*fn)(struct json *), const char *what)
{
	struct str *out = str_new(0, 64);
	struct json *j = json_new(out, 0);
	const char *error = NULL;

	fn(j);
	assert_int_equal(json_finish(j, &error), -1);
	assert_non_null(strstr(error, what));
	json_free(&j);
	str_free(&out);
}

static void misuse_value_for_key(struct json *j)
{
	json_object_begin(j);
	json_int(j, 1);
	json_object_end(j);
}

static void misuse_key_in_array(struct json *j)
{
	json_array_begin(j);
	json_key(j, "k");
}

static void misuse_key_twice(struct json *j)
{
	json_object_begin(j);
	json_key(j, "a");
	json_key(j, "b");
}

static void misuse_mismatch(struct json *j)
{
	json_object_begin(j);
	json_array_end(j);
}

static void misuse_dangling_key(struct json *j)
{
	json_object_begin(j);
	json_key(j, "a");
	json_object_end(j);
}

static void misuse_unclosed(struct json *j)
{
	json_array_begin(j);
}

static void misuse_two_values(struct json *j)
{
	json_int(j, 1);
	json_int(j, 2);
}

static void misuse_nothing(struct json *j)
{
}

static void misuse_too_deep(struct json *j)
{
	for (int i = 0; i <= JSON_DEPTH_MAX; i++)
		json_array_begin(j);
}

static void misuse_too_long(struct json *j)
{
	json_cstring(j, "0123456789012345678901234567890123456789"
		     "0123456789012345678901234567890123456789");
}

static void test_errors(void **state)
{
	expect_json_error(misuse_value_for_key, "value where a key");
	expect_json_error(misuse_key_in_array, "key where a value");
	expect_json_error(misuse_key_twice, "key where a value");
	expect_json_error(misuse_mismatch, "does not match");
	expect_json_error(misuse_dangling_key, "does not match");
	expect_json_error(misuse_unclosed, "unclosed");
	expect_json_error(misuse_two_values, "more than one");
	expect_json_error(misuse_nothing, "no value");
	expect_json_error(misuse_too_deep, "too deep");
	expect_json_error(misuse_too_long, "output limit");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_compact),
		cmocka_unit_test(test_pretty),
		cmocka_unit_test(test_deep_pretty_indent),
		cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
