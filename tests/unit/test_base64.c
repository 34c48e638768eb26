/* test_base64.c: strict (SASL) and lenient (MIME) base64 decoding. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "compat.h"
#include "base64.h"
#include "str.h"

static int dec(const char *in, unsigned flags, struct str *out)
{
	str_clear(out);
	return base64_decode(in, strlen(in), flags, out);
}

static void test_strict(void **state)
{
	struct str *out = str_new(0, 64);

	assert_int_equal(dec("AGJvYgBzM2NyZXQ=", BASE64_STRICT, out), 0);
	assert_int_equal(str_len(out), 11);
	assert_memory_equal(str_c(out), "\0bob\0s3cret", 11);
	assert_int_equal(dec("YQ==", BASE64_STRICT, out), 0);
	assert_string_equal(str_c(out), "a");
	assert_int_equal(dec("", BASE64_STRICT, out), 0);
	assert_int_equal(dec("YQ", BASE64_STRICT, out), -1);	/* no padding */
	assert_int_equal(dec("Y===", BASE64_STRICT, out), -1);
	assert_int_equal(dec("YQ==YQ==", BASE64_STRICT, out), -1);
	assert_int_equal(dec("Y!Q=", BASE64_STRICT, out), -1);
	str_free(&out);
}

static void test_lenient_and_bounds(void **state)
{
	struct str *out = str_new(0, 4);

	assert_int_equal(dec("YWJj", 0, out), 0);
	assert_string_equal(str_c(out), "abc");
	assert_int_equal(dec("YQ", 0, out), 0);		/* padding optional */
	assert_string_equal(str_c(out), "a");
	assert_int_equal(dec("Y", 0, out), -1);		/* lone 6 bits */
	assert_int_equal(dec("YW=J", 0, out), -1);
	assert_int_equal(dec("YWJjZGVm", 0, out), -1);	/* over the max */
	str_free(&out);
}

static void test_encode(void **state)
{
	static const char *const plain[] = { "", "f", "fo", "foo", "foob",
					     "fooba", "foobar" };
	static const char *const coded[] = { "", "Zg==", "Zm8=", "Zm9v",
					     "Zm9vYg==", "Zm9vYmE=",
					     "Zm9vYmFy" };
	struct str *out = str_new(0, 64), *back = str_new(0, 64);

	/* RFC 4648 section 10, and back again. */
	for (size_t i = 0; i < TERN_NELEM(plain); i++) {
		str_clear(out);
		str_clear(back);
		assert_int_equal(base64_encode(plain[i], strlen(plain[i]),
					       out), 0);
		assert_string_equal(str_c(out), coded[i]);
		assert_int_equal(base64_decode(str_c(out), str_len(out),
					       BASE64_STRICT, back), 0);
		assert_string_equal(str_c(back), plain[i]);
	}
	str_free(&out);
	out = str_new(0, 3);
	assert_int_equal(base64_encode("foo", 3, out), -1);
	str_free(&out);
	str_free(&back);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strict),
		cmocka_unit_test(test_encode),
		cmocka_unit_test(test_lenient_and_bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
