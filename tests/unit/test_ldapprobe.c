/* test_ldapprobe.c: the LDAP readiness probe's request bytes and the
 * reading of answers, whole and byte at a time. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "compat.h"
#include "ldapprobe.h"

/* A root DSE entry (no attributes), then SearchResultDone success. */
static const unsigned char entry_then_done[] = {
	0x30, 0x0b, 0x02, 0x01, 0x01, 0x64, 0x06, 0x04, 0x00, 0x30, 0x02,
	0x30, 0x00,
	0x30, 0x0c, 0x02, 0x01, 0x01, 0x65, 0x07, 0x0a, 0x01, 0x00, 0x04,
	0x00, 0x04, 0x00,
};

/* insufficientAccess (50), the message length in long form. */
static const unsigned char done_50_long[] = {
	0x30, 0x81, 0x0c, 0x02, 0x01, 0x01, 0x65, 0x07, 0x0a, 0x01, 0x32,
	0x04, 0x00, 0x04, 0x00,
};

/* A notice of disconnection: message id 0, extended response,
 * unavailable (52). */
static const unsigned char notice[] = {
	0x30, 0x0c, 0x02, 0x01, 0x00, 0x78, 0x07, 0x0a, 0x01, 0x34, 0x04,
	0x00, 0x04, 0x00,
};

static void test_request(void **state)
{
	unsigned char req[LDAPPROBE_REQUEST_SIZE];

	(void)state;
	ldapprobe_request(req);
	/* The outer and inner lengths agree with the size. */
	assert_int_equal(req[0], 0x30);
	assert_int_equal(req[1], LDAPPROBE_REQUEST_SIZE - 2);
	assert_int_equal(req[5], 0x63);
	assert_int_equal(req[6], LDAPPROBE_REQUEST_SIZE - 7);
	assert_memory_equal(req + LDAPPROBE_REQUEST_SIZE - 3, "1.1", 3);
}

/* Every prefix is MORE; the whole gives DONE with code. */
static void check_whole_and_prefixes(const unsigned char *b, size_t n,
				     int code)
{
	int got = -1;

	for (size_t i = 0; i < n; i++) {
		unsigned char *cut = malloc(i > 0 ? i : 1);

		memcpy(cut, b, i);
		assert_int_equal(ldapprobe_answer(cut, i, &got),
				 LDAPPROBE_MORE);
		free(cut);
	}
	assert_int_equal(ldapprobe_answer(b, n, &got), LDAPPROBE_DONE);
	assert_int_equal(got, code);
}

static void test_answers(void **state)
{
	(void)state;
	check_whole_and_prefixes(entry_then_done, sizeof(entry_then_done), 0);
	check_whole_and_prefixes(done_50_long, sizeof(done_50_long), 50);
	check_whole_and_prefixes(notice, sizeof(notice), 52);
}

static void test_bad(void **state)
{
	static const char http[] = "HTTP/1.0 200 OK\r\n\r\n";
	unsigned char b[sizeof(entry_then_done)];
	int code;

	(void)state;
	assert_int_equal(ldapprobe_answer((const unsigned char *)http,
					  sizeof(http) - 1, &code),
			 LDAPPROBE_BAD);
	/* Another message id. */
	memcpy(b, entry_then_done, sizeof(b));
	b[4] = 2;
	assert_int_equal(ldapprobe_answer(b, sizeof(b), &code),
			 LDAPPROBE_BAD);
	/* Another operation than search results. */
	memcpy(b, entry_then_done, sizeof(b));
	b[5] = 0x61;	/* BindResponse */
	assert_int_equal(ldapprobe_answer(b, sizeof(b), &code),
			 LDAPPROBE_BAD);
	/* An indefinite length, a five-byte length, a huge message. */
	static const unsigned char indefinite[] = { 0x30, 0x80, 0, 0 };
	static const unsigned char five[] = { 0x30, 0x85, 1, 1, 1, 1, 1 };
	static const unsigned char huge[] = { 0x30, 0x84, 0x7f, 0, 0, 0 };
	assert_int_equal(ldapprobe_answer(indefinite, sizeof(indefinite),
					  &code), LDAPPROBE_BAD);
	assert_int_equal(ldapprobe_answer(five, sizeof(five), &code),
			 LDAPPROBE_BAD);
	assert_int_equal(ldapprobe_answer(huge, sizeof(huge), &code),
			 LDAPPROBE_BAD);
	/* A result code that is not an ENUMERATED. */
	memcpy(b, entry_then_done, sizeof(b));
	b[20] = 0x02;
	assert_int_equal(ldapprobe_answer(b, sizeof(b), &code),
			 LDAPPROBE_BAD);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request),
		cmocka_unit_test(test_answers),
		cmocka_unit_test(test_bad),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
