/*
 * fuzz_memcache.c: the memcached reply parser of common/memcache.
 *
 * The first byte picks the command the replies answer (get, set, delete)
 * and seeds the chunk sizes.  The rest is parsed whole and in chunks; both
 * ways must give the same replies and the same verdict, values must stay
 * within their bound, and a parser that reported an error must keep
 * reporting it.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "memcache.h"
#include "str.h"

#define VALUE_MAX 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Replies as "result:len:value\0" into trace; -1 on a parser error. */
static int parse(const char *in, size_t len, enum memcache_op op,
		 size_t step, struct str *trace)
{
	struct memcache_parser *p = memcache_parser_new(VALUE_MAX);
	const char *pos = in, *end = in + len, *error;
	struct memcache_reply r;
	int ret = 0;

	memcache_parser_expect(p, op, "tern:route:k");
	while (pos < end && ret == 0) {
		const char *ce = step == 0 || (size_t)(end - pos) < step ?
				 end : pos + step;

		while (pos < ce) {
			int x = memcache_parser_feed(p, &pos, ce, &r, &error);

			if (x == 0)
				break;
			if (x < 0) {
				if (error == NULL ||
				    memcache_parser_feed(p, &pos, end, &r,
							 &error) != -1)
					abort();
				ret = -1;
				break;
			}
			if (r.value_len > VALUE_MAX ||
			    (r.result == MEMCACHE_HIT) != (r.value != NULL))
				abort();
			(void)!str_printf(trace, "%d:%zu:", (int)r.result,
					  r.value_len);
			if (r.value != NULL)
				(void)!str_append(trace, r.value, r.value_len);
			(void)!str_append_byte(trace, 0);
			memcache_parser_expect(p, op, "tern:route:k");
		}
	}
	memcache_parser_free(&p);
	return ret;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct str *a, *b;
	enum memcache_op op;
	size_t step;
	int ra, rb;

	if (size < 1)
		return 0;
	op = (enum memcache_op)(data[0] % 3);
	step = (size_t)(data[0] >> 2) % 9;
	a = str_new(256, 1 << 22);
	b = str_new(256, 1 << 22);
	ra = parse((const char *)data + 1, size - 1, op, 0, a);
	rb = parse((const char *)data + 1, size - 1, op, step == 0 ? 1 : step,
		   b);
	if (ra != rb || str_len(a) != str_len(b) ||
	    memcmp(str_c(a), str_c(b), str_len(a)) != 0)
		abort();
	str_free(&a);
	str_free(&b);
	return 0;
}
