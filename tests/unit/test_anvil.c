/* test_anvil.c: tern-authd's failure and connection counters, on an
 * injected clock (milliseconds). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "compat.h"
#include "anvil.h"

#define SEC 1000ULL

static struct anvil_settings settings(void)
{
	struct anvil_settings set = {
		.window_ms = 60 * SEC,
		.delay_max_ms = 8 * SEC,
		.lockout_threshold = 5,
		.lockout_ms = 300 * SEC,
		.rate_window_ms = 10 * SEC,
		.max_entries = 1000,
	};
	return set;
}

static void test_window_slides(void **state)
{
	struct anvil_settings set = settings();
	struct anvil *a = anvil_new(&set);
	struct anvil_failure f;

	set.lockout_threshold = 0;
	anvil_set_settings(a, &set);
	anvil_auth_failed(a, "192.0.2.1", "bob@example.com", 0, &f);
	assert_int_equal(f.ip_failures, 1);
	assert_int_equal(f.user_failures, 1);
	anvil_auth_failed(a, "192.0.2.1", "bob@example.com", 30 * SEC, &f);
	assert_int_equal(f.ip_failures, 2);
	/* The first failure leaves the window at 60 s exactly. */
	assert_int_equal(anvil_ip_failures(a, "192.0.2.1", 60 * SEC - 1), 2);
	assert_int_equal(anvil_ip_failures(a, "192.0.2.1", 60 * SEC), 1);
	assert_int_equal(anvil_user_failures(a, "bob@example.com",
					     60 * SEC), 1);
	assert_int_equal(anvil_ip_failures(a, "192.0.2.1", 90 * SEC), 0);
	anvil_auth_failed(a, "192.0.2.1", "bob@example.com", 91 * SEC, &f);
	assert_int_equal(f.ip_failures, 1);
	assert_int_equal(f.delay_ms, 0);
	/* Other IPs and users are counted apart. */
	assert_int_equal(anvil_ip_failures(a, "192.0.2.2", 91 * SEC), 0);
	assert_int_equal(anvil_user_failures(a, "eve@example.com", 91 * SEC),
			 0);
	anvil_free(&a);
	assert_null(a);
}

static void test_progressive_delay(void **state)
{
	struct anvil_settings set = settings();
	struct anvil *a;
	struct anvil_failure f;
	const uint64_t want[] = { 0, 1, 2, 4, 8, 8, 8 };

	set.lockout_threshold = 0;
	a = anvil_new(&set);
	for (size_t i = 0; i < TERN_NELEM(want); i++) {
		anvil_auth_failed(a, "198.51.100.7", "bob@example.com",
				  i * 100, &f);
		assert_int_equal(f.delay_ms, want[i] * SEC);
		assert_false(f.locked_out);
	}
	/* The account alone drives the delay from a fresh IP. */
	anvil_auth_failed(a, "198.51.100.8", "bob@example.com", 1000, &f);
	assert_int_equal(f.ip_failures, 1);
	assert_int_equal(f.delay_ms, 8 * SEC);
	/* And a fresh account from the busy IP. */
	anvil_auth_failed(a, "198.51.100.7", "carol@example.com", 1000, &f);
	assert_int_equal(f.user_failures, 1);
	assert_int_equal(f.delay_ms, 8 * SEC);
	/* No delay at all with delay_max 0. */
	set.delay_max_ms = 0;
	anvil_set_settings(a, &set);
	anvil_auth_failed(a, "198.51.100.7", "bob@example.com", 1100, &f);
	assert_int_equal(f.delay_ms, 0);
	anvil_free(&a);
}

static void test_lockout(void **state)
{
	struct anvil_settings set = settings();
	struct anvil *a = anvil_new(&set);
	struct anvil_failure f;
	uint64_t left = 0;

	for (unsigned int i = 1; i <= 4; i++) {
		anvil_auth_failed(a, "203.0.113.9", "u1@example.com", i * SEC,
				  &f);
		assert_false(f.locked_out);
		assert_false(anvil_auth_locked(a, "203.0.113.9", i * SEC,
					       NULL));
	}
	/* The fifth, with another account name: the IP counts. */
	anvil_auth_failed(a, "203.0.113.9", "u2@example.com", 5 * SEC, &f);
	assert_true(f.locked_out);
	assert_int_equal(f.ip_failures, 5);
	assert_true(anvil_auth_locked(a, "203.0.113.9", 5 * SEC, &left));
	assert_int_equal(left, 300 * SEC);
	assert_true(anvil_auth_locked(a, "203.0.113.9", 304 * SEC, &left));
	assert_int_equal(left, 1 * SEC);
	assert_false(anvil_auth_locked(a, "203.0.113.10", 10 * SEC, NULL));
	/* Locked out until the time is over, then a fresh count. */
	assert_false(anvil_auth_locked(a, "203.0.113.9", 305 * SEC, NULL));
	anvil_auth_failed(a, "203.0.113.9", "u1@example.com", 306 * SEC, &f);
	assert_int_equal(f.ip_failures, 1);
	assert_false(f.locked_out);
	/* An empty IP is never counted nor locked. */
	for (int i = 0; i < 10; i++)
		anvil_auth_failed(a, "", "u3@example.com", 400 * SEC, &f);
	assert_false(f.locked_out);
	assert_false(anvil_auth_locked(a, "", 400 * SEC, NULL));
	anvil_free(&a);
}

static void test_failures_spread_over_time(void **state)
{
	struct anvil_settings set = settings();
	struct anvil *a = anvil_new(&set);
	struct anvil_failure f;

	/* Five failures, but never five inside one 60 s window. */
	for (unsigned int i = 0; i < 10; i++) {
		anvil_auth_failed(a, "192.0.2.50", "x@example.com",
				  i * 20 * SEC, &f);
		assert_false(f.locked_out);
		assert_true(f.ip_failures <= 3);
	}
	anvil_free(&a);
}

static void test_success_resets(void **state)
{
	struct anvil_settings set = settings();
	struct anvil *a = anvil_new(&set);
	struct anvil_failure f;

	for (int i = 0; i < 4; i++)
		anvil_auth_failed(a, "192.0.2.3", "bob@example.com", SEC, &f);
	assert_int_equal(f.delay_ms, 4 * SEC);
	anvil_auth_succeeded(a, "192.0.2.3", "bob@example.com", 2 * SEC);
	assert_int_equal(anvil_ip_failures(a, "192.0.2.3", 2 * SEC), 0);
	assert_int_equal(anvil_user_failures(a, "bob@example.com", 2 * SEC),
			 0);
	anvil_auth_failed(a, "192.0.2.3", "bob@example.com", 3 * SEC, &f);
	assert_int_equal(f.ip_failures, 1);
	assert_int_equal(f.delay_ms, 0);
	anvil_free(&a);
}

static void test_connections(void **state)
{
	struct anvil_settings set = settings();
	struct anvil *a = anvil_new(&set);
	unsigned int rate;

	assert_int_equal(anvil_connect(a, "imap", "192.0.2.4", 0, &rate), 1);
	assert_int_equal(rate, 1);
	assert_int_equal(anvil_connect(a, "imap", "192.0.2.4", SEC, &rate),
			 2);
	assert_int_equal(rate, 2);
	assert_int_equal(anvil_connect(a, "pop3", "192.0.2.4", SEC, &rate), 1);
	assert_int_equal(anvil_connections(a, "imap", "192.0.2.4", 2 * SEC,
					   &rate), 2);
	anvil_disconnect(a, "imap", "192.0.2.4", 3 * SEC);
	assert_int_equal(anvil_connections(a, "imap", "192.0.2.4", 3 * SEC,
					   &rate), 1);
	assert_int_equal(rate, 2);
	/* The rate window (10 s) starts again; the open count stays. */
	assert_int_equal(anvil_connect(a, "imap", "192.0.2.4", 11 * SEC,
				       &rate), 2);
	assert_int_equal(rate, 1);
	anvil_disconnect(a, "imap", "192.0.2.4", 12 * SEC);
	anvil_disconnect(a, "imap", "192.0.2.4", 12 * SEC);
	anvil_disconnect(a, "imap", "192.0.2.4", 12 * SEC);
	assert_int_equal(anvil_connections(a, "imap", "192.0.2.4", 12 * SEC,
					   &rate), 0);
	assert_int_equal(anvil_connections(a, "smtp", "192.0.2.99", 0, &rate),
			 0);
	assert_int_equal(rate, 0);
	anvil_free(&a);
}

static void test_events(void **state)
{
	struct anvil_settings set = settings();
	struct anvil *a = anvil_new(&set);

	assert_int_equal(anvil_event(a, "smtpd-rcpt-ip", "192.0.2.4", 3, 0),
			 3);
	assert_int_equal(anvil_event(a, "smtpd-rcpt-ip", "192.0.2.4", 2, SEC),
			 5);
	/* Other kinds, other subjects, and connections are apart. */
	assert_int_equal(anvil_event(a, "smtpd-msg-ip", "192.0.2.4", 1, SEC),
			 1);
	assert_int_equal(anvil_event(a, "smtpd-rcpt-user", "192.0.2.4", 1,
				     SEC), 1);
	assert_int_equal(anvil_event(a, "smtpd-rcpt-ip", "192.0.2.5", 1, SEC),
			 1);
	/* The window (10 s) starts again. */
	assert_int_equal(anvil_event(a, "smtpd-rcpt-ip", "192.0.2.4", 1,
				     10 * SEC), 1);
	assert_int_equal(anvil_event(a, "smtpd-rcpt-ip", "192.0.2.4",
				     UINT32_MAX, 11 * SEC), UINT32_MAX);
	anvil_expire(a, 30 * SEC);
	assert_int_equal(anvil_entries(a), 0);
	anvil_free(&a);
}

static void test_eviction_bounded(void **state)
{
	struct anvil_settings set = settings();
	struct anvil *a;
	struct anvil_failure f;
	unsigned int rate;
	char ip[64];

	set.max_entries = 100;
	a = anvil_new(&set);
	/* A locked-out IP and an open connection survive a flood. */
	for (int i = 0; i < 5; i++)
		anvil_auth_failed(a, "203.0.113.1", "", 0, &f);
	assert_true(f.locked_out);
	(void)anvil_connect(a, "imap", "203.0.113.2", 0, &rate);
	for (int i = 0; i < 1000; i++) {
		snprintf(ip, sizeof(ip), "10.0.%d.%d", i / 256, i % 256);
		anvil_auth_failed(a, ip, "", SEC, &f);
		assert_true(anvil_entries(a) <= 100);
	}
	assert_int_equal(anvil_entries(a), 100);
	assert_true(anvil_auth_locked(a, "203.0.113.1", SEC, NULL));
	assert_int_equal(anvil_connections(a, "imap", "203.0.113.2", SEC,
					   &rate), 1);
	/* The oldest of the flood went first; the newest are there. */
	assert_int_equal(anvil_ip_failures(a, "10.0.0.0", SEC), 0);
	assert_int_equal(anvil_ip_failures(a, "10.0.3.231", SEC), 1);
	/* Expiry frees what holds nothing. */
	anvil_expire(a, 400 * SEC);
	assert_int_equal(anvil_entries(a), 1);	/* the open connection */
	anvil_disconnect(a, "imap", "203.0.113.2", 400 * SEC);
	anvil_expire(a, 400 * SEC);
	assert_int_equal(anvil_entries(a), 0);
	/* A lower bound on reload evicts at once. */
	for (int i = 0; i < 50; i++) {
		snprintf(ip, sizeof(ip), "10.1.0.%d", i);
		anvil_auth_failed(a, ip, "", 500 * SEC, &f);
	}
	set.max_entries = 10;
	anvil_set_settings(a, &set);
	assert_int_equal(anvil_entries(a), 10);
	anvil_free(&a);
}

static void test_long_keys_cut(void **state)
{
	struct anvil_settings set = settings();
	struct anvil *a = anvil_new(&set);
	struct anvil_failure f;
	char user[1000];

	memset(user, 'a', sizeof(user) - 1);
	user[sizeof(user) - 1] = '\0';
	anvil_auth_failed(a, "192.0.2.9", user, 0, &f);
	assert_int_equal(f.user_failures, 1);
	assert_int_equal(anvil_user_failures(a, user, 0), 1);
	anvil_free(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_window_slides),
		cmocka_unit_test(test_progressive_delay),
		cmocka_unit_test(test_lockout),
		cmocka_unit_test(test_failures_spread_over_time),
		cmocka_unit_test(test_success_resets),
		cmocka_unit_test(test_connections),
		cmocka_unit_test(test_events),
		cmocka_unit_test(test_eviction_bounded),
		cmocka_unit_test(test_long_keys_cut),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
