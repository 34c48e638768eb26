/* test_compress.c: COMPRESS=DEFLATE input side of tern-imapd: raw deflate
 * inflated only as far as the session's buffer has room, split input,
 * corrupt input, and the bound on waiting compressed bytes. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <cmocka.h>

#include "compat.h"
#include "compress.h"
#include "str.h"
#include "xalloc.h"

/* Raw deflate of data with a sync flush at the end, as a client sends. */
static unsigned char *deflate_raw(const void *data, size_t len,
				  size_t *out_len)
{
	z_stream z;
	size_t cap = compressBound((uLong)len) + 64;
	unsigned char *out = xmalloc(cap);

	memset(&z, 0, sizeof(z));
	assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, -15, 8,
				      Z_DEFAULT_STRATEGY), Z_OK);
	z.next_in = (unsigned char *)(uintptr_t)data;
	z.avail_in = (uInt)len;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	assert_int_equal(deflate(&z, Z_SYNC_FLUSH), Z_OK);
	*out_len = cap - z.avail_out;
	deflateEnd(&z);
	return out;
}

static void test_roundtrip_split(void **state)
{
	const char *text = "a1 NOOP\r\na2 LIST \"\" \"*\"\r\n";
	size_t clen;
	unsigned char *c = deflate_raw(text, strlen(text), &clen);
	struct compress *z = compress_new();
	struct str *in = str_new(16, 4096);

	/* One byte at a time: the same text comes out. */
	for (size_t i = 0; i < clen; i++) {
		assert_int_equal(compress_feed(z, c + i, 1), 0);
		assert_int_equal(compress_inflate(z, in), 0);
	}
	assert_false(compress_pending(z));
	assert_int_equal(str_len(in), strlen(text));
	assert_memory_equal(str_c(in), text, strlen(text));
	str_free(&in);
	compress_free(&z);
	free(c);
}

static void test_bounded_by_room(void **state)
{
	size_t big = 8 << 20, clen, total = 0;
	char *zeros = xcalloc(1, big);
	unsigned char *c = deflate_raw(zeros, big, &clen);
	struct compress *z = compress_new();
	struct str *in = str_new(16, 65536);

	/* 8 MiB of zeros compress to a few KiB: the session's 64 KiB input
	 * buffer must never be passed, the rest waits compressed. */
	assert_true(clen < 65536);
	assert_int_equal(compress_feed(z, c, clen), 0);
	for (int rounds = 0; rounds < 1000 && total < big; rounds++) {
		assert_int_equal(compress_inflate(z, in), 0);
		assert_true(str_len(in) <= 65536);
		total += str_len(in);
		str_clear(in);
	}
	assert_int_equal(total, big);
	assert_false(compress_pending(z));
	str_free(&in);
	compress_free(&z);
	free(c);
	free(zeros);
}

static void test_corrupt_and_limit(void **state)
{
	static const unsigned char junk[] = { 0xff, 0xff, 0xff, 0xff, 0xff };
	struct compress *z = compress_new();
	struct str *in = str_new(16, 4096);
	char *lots = xcalloc(1, COMPRESS_INPUT_MAX + 1);

	assert_int_equal(compress_feed(z, junk, sizeof(junk)), 0);
	assert_int_equal(compress_inflate(z, in), -1);
	compress_free(&z);
	z = compress_new();
	/* More waiting compressed input than the bound is refused. */
	assert_int_equal(compress_feed(z, lots, COMPRESS_INPUT_MAX + 1), -1);
	compress_free(&z);
	str_free(&in);
	free(lots);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_split),
		cmocka_unit_test(test_bounded_by_room),
		cmocka_unit_test(test_corrupt_and_limit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
