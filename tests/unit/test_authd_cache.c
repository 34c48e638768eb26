/* test_authd_cache.c: tern-authd's answer cache: bound, TTL, generations. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "compat.h"
#include "cache.h"
#include "xalloc.h"

static struct cache_value account(const char *address)
{
	struct cache_value v = { .status = DIR_OK };

	v.account = xcalloc(1, sizeof(*v.account));
	v.account->address = xstrdup(address);
	v.account->mailhost = xstrdup("mail.example.com");
	return v;
}

static void test_put_get_negative(void **state)
{
	struct cache *c = cache_new(10, 60000);
	struct cache_value v = account("bob@example.com");
	struct cache_value neg = { .status = DIR_NOTFOUND };
	const struct cache_value *got;

	cache_put(c, CACHE_ACCOUNT, "bob@example.com", &v,
		  cache_generation(c), 0);
	assert_null(v.account);
	cache_put(c, CACHE_ACCOUNT, "nobody@example.com", &neg,
		  cache_generation(c), 0);
	got = cache_get(c, CACHE_ACCOUNT, "bob@example.com", 1);
	assert_non_null(got);
	assert_string_equal(got->account->address, "bob@example.com");
	got = cache_get(c, CACHE_ACCOUNT, "nobody@example.com", 1);
	assert_non_null(got);
	assert_int_equal(got->status, DIR_NOTFOUND);
	/* Kinds are apart. */
	assert_null(cache_get(c, CACHE_RESOLVE, "bob@example.com", 1));
	/* TTL. */
	assert_null(cache_get(c, CACHE_ACCOUNT, "bob@example.com", 60000));
	assert_int_equal(cache_entries(c), 1);
	cache_free(&c);
	assert_null(c);
}

static void test_bound_lru(void **state)
{
	struct cache *c = cache_new(3, 60000);
	char key[32];

	for (int i = 0; i < 3; i++) {
		struct cache_value v = { .status = DIR_NOTFOUND };

		snprintf(key, sizeof(key), "u%d@example.com", i);
		cache_put(c, CACHE_ACCOUNT, key, &v, cache_generation(c), 0);
	}
	/* Touch u0, so u1 is the least recently used. */
	assert_non_null(cache_get(c, CACHE_ACCOUNT, "u0@example.com", 1));
	{
		struct cache_value v = account("u3@example.com");

		cache_put(c, CACHE_ACCOUNT, "u3@example.com", &v,
			  cache_generation(c), 2);
	}
	assert_int_equal(cache_entries(c), 3);
	assert_null(cache_get(c, CACHE_ACCOUNT, "u1@example.com", 3));
	assert_non_null(cache_get(c, CACHE_ACCOUNT, "u0@example.com", 3));
	assert_non_null(cache_get(c, CACHE_ACCOUNT, "u3@example.com", 3));
	cache_set_limits(c, 1, 60000);
	assert_true(cache_entries(c) <= 1);
	cache_free(&c);
}

static void test_generation_and_disabled(void **state)
{
	struct cache *c = cache_new(10, 60000);
	uint64_t gen = cache_generation(c);
	struct cache_value v = account("bob@example.com");
	struct cache_value t = { .status = DIR_TEMPFAIL };

	cache_clear(c);
	/* An answer read before the clear is not stored after it. */
	cache_put(c, CACHE_ACCOUNT, "bob@example.com", &v, gen, 0);
	assert_null(v.account);
	assert_int_equal(cache_entries(c), 0);
	/* Temporary failures are never cached. */
	cache_put(c, CACHE_ACCOUNT, "bob@example.com", &t,
		  cache_generation(c), 0);
	assert_int_equal(cache_entries(c), 0);
	cache_free(&c);
	c = cache_new(0, 60000);
	v = account("bob@example.com");
	cache_put(c, CACHE_ACCOUNT, "bob@example.com", &v,
		  cache_generation(c), 0);
	assert_null(cache_get(c, CACHE_ACCOUNT, "bob@example.com", 0));
	cache_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_get_negative),
		cmocka_unit_test(test_bound_lru),
		cmocka_unit_test(test_generation_and_disabled),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
