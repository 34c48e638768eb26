/* test_netlist.c: network lists: IPv4 and IPv6 prefixes, single
 * addresses, prefix boundaries, bad entries. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "compat.h"
#include "netlist.h"

static int warnings;

static void warn(const char *entry)
{
	(void)entry;
	warnings++;
}

static void test_match(void **state)
{
	const char *items[] = { "192.0.2.0/24", "10.1.2.3", "2001:db8::/32",
				"::1", "172.16.0.0/12", "0.0.0.0/0x", "bad",
				"10.0.0.0/33", "1.2.3.4/", "" };
	struct netlist *nl;

	warnings = 0;
	nl = netlist_new(items, TERN_NELEM(items), warn);
	assert_int_equal(warnings, 5);
	assert_true(netlist_match(nl, "192.0.2.0"));
	assert_true(netlist_match(nl, "192.0.2.255"));
	assert_false(netlist_match(nl, "192.0.3.0"));
	assert_true(netlist_match(nl, "10.1.2.3"));
	assert_false(netlist_match(nl, "10.1.2.4"));
	assert_true(netlist_match(nl, "2001:db8:ffff::1"));
	assert_false(netlist_match(nl, "2001:db9::1"));
	assert_true(netlist_match(nl, "::1"));
	assert_false(netlist_match(nl, "::2"));
	/* /12: 172.16.0.0 - 172.31.255.255 */
	assert_true(netlist_match(nl, "172.31.255.255"));
	assert_false(netlist_match(nl, "172.32.0.0"));
	assert_false(netlist_match(nl, "unix"));
	assert_false(netlist_match(nl, "192.0.2.0/24"));
	assert_false(netlist_match(NULL, "10.1.2.3"));
	netlist_free(&nl);
	assert_null(nl);
}

static void test_everything_and_nothing(void **state)
{
	const char *all[] = { "0.0.0.0/0", "::/0" };
	struct netlist *nl = netlist_new(all, 2, NULL);

	assert_true(netlist_match(nl, "203.0.113.9"));
	assert_true(netlist_match(nl, "fe80::1"));
	netlist_free(&nl);
	nl = netlist_new(NULL, 0, NULL);
	assert_false(netlist_match(nl, "127.0.0.1"));
	netlist_free(&nl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_everything_and_nothing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
