/* test_hdrcache.c: tern-imapd's cache of message headers: the header up
 * to its empty line (CRLF or LF), a message that is all header, files it
 * cannot read or whose header is too long, hits that do not read the file
 * again, and the bound on the bytes kept. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "compat.h"
#include "hdrcache.h"
#include "xalloc.h"

static char dir[] = "/tmp/tern-hdrcache-XXXXXX";

static char *write_file(const char *name, const char *data, size_t len)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *path = xmalloc(n);
	FILE *f;

	snprintf(path, n, "%s/%s", dir, name);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	fclose(f);
	return path;
}

static void check(const char *path, uint64_t size, const char *want)
{
	size_t len;
	const char *h = hdrcache_get(path, size, &len);

	if (want == NULL) {
		assert_null(h);
		return;
	}
	assert_non_null(h);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(h, want, len);
}

static void test_headers(void **state)
{
	const char *crlf = "Subject: a\r\nFrom: b\r\n\r\nbody\r\n";
	const char *lf = "Subject: c\n\nbody\n";
	const char *all = "Subject: only a header";
	char *p1 = write_file("crlf", crlf, strlen(crlf));
	char *p2 = write_file("lf", lf, strlen(lf));
	char *p3 = write_file("all", all, strlen(all));
	char *big = xcalloc(1, HDRCACHE_HEADER_MAX + 100);
	char *p4;

	memset(big, 'x', HDRCACHE_HEADER_MAX + 99);
	memcpy(big, "X: ", 3);
	p4 = write_file("big", big, strlen(big));
	check(p1, strlen(crlf), "Subject: a\r\nFrom: b\r\n");
	check(p2, strlen(lf), "Subject: c\n");
	check(p3, strlen(all), all);
	check(p4, strlen(big), NULL);		/* too long to keep */
	check("/nonexistent/tern", 10, NULL);
	/* A hit does not read the file again (message files never change:
	 * this one does only to show it). */
	free(write_file("crlf", "Subject: changed\r\n\r\n", 20));
	check(p1, strlen(crlf), "Subject: a\r\nFrom: b\r\n");
	hdrcache_clear();
	check(p1, 20, "Subject: changed\r\n");
	hdrcache_clear();
	free(big);
	free(p1);
	free(p2);
	free(p3);
	free(p4);
}

static void test_bound(void **state)
{
	char name[32], text[64];
	char *first = NULL;

	hdrcache_set_limit(1000);
	for (int i = 0; i < 100; i++) {
		char *p;

		snprintf(name, sizeof(name), "m%d", i);
		snprintf(text, sizeof(text), "Subject: %03d\r\n\r\nx", i);
		p = write_file(name, text, strlen(text));
		snprintf(text, sizeof(text), "Subject: %03d\r\n", i);
		check(p, 20, text);
		if (i == 0)
			first = p;
		else
			free(p);
	}
	/* 100 headers of 15 bytes do not fit in 1000: the first went, and
	 * reading it again finds the file changed. */
	free(write_file("m0", "Subject: new\r\n\r\n", 16));
	check(first, 16, "Subject: new\r\n");
	free(first);
	hdrcache_clear();
	hdrcache_set_limit(HDRCACHE_BYTES);
}

static int setup(void **state)
{
	return mkdtemp(dir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_headers),
		cmocka_unit_test(test_bound),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
