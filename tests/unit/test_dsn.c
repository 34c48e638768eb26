/* test_dsn.c: the RFC 3464 notices of tern-qmgr (structure, RET=HDRS,
 * ORCPT and ENVID decoding, control characters), NOTIFY rules, xtext, the
 * retry backoff and the state file (round trip, refusals). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "compat.h"
#include "dsn.h"
#include "qstate.h"
#include "str.h"

static const char msg[] = "From: a@example.org\r\nSubject: hi\r\n\r\n"
			  "body line\r\n";

static struct str *build(bool hdrs, enum dsn_action action)
{
	struct str *out = str_new(0, 1 << 20);
	struct dsn_info info = {
		.hostname = "mx.example.com", .queue_id = "0F9K3T2M7Q0AB3K7",
		.bounce_id = "0F9K3T2M7Q0AB3K8", .to = "a@example.org",
		.envid = "env+2Bid", .arrival = 1732850000, .now = 1732850060,
		.headers_only = hdrs,
	};
	struct dsn_rcpt r[2] = {
		{ .address = "x@example.com",
		  .orcpt = "rfc822;X+2Bt@example.com",
		  .action = action, .status = "5.1.1",
		  .diagnostic = "550 5.1.1 unknown\r\nBcc: evil",
		  .remote_mta = "lmtp-local" },
		{ .address = "y@example.com", .action = action,
		  .status = "5.2.2", .diagnostic = NULL },
	};

	assert_int_equal(dsn_build(out, &info, r, 2, msg, strlen(msg)), 0);
	return out;
}

static void test_failure_notice(void **state)
{
	struct str *out = build(false, DSN_FAILED);
	const char *s = str_c(out);

	(void)state;
	assert_non_null(strstr(s, "From: Mail Delivery System "
				  "<MAILER-DAEMON@mx.example.com>\r\n"));
	assert_non_null(strstr(s, "To: <a@example.org>\r\n"));
	assert_non_null(strstr(s, "Auto-Submitted: auto-replied\r\n"));
	assert_non_null(strstr(s, "Content-Type: multipart/report; "
				  "report-type=delivery-status;"));
	assert_non_null(strstr(s, "boundary=\"0F9K3T2M7Q0AB3K7/"
				  "0F9K3T2M7Q0AB3K8\""));
	assert_non_null(strstr(s, "Content-Type: message/delivery-status"));
	assert_non_null(strstr(s, "Reporting-MTA: dns; mx.example.com\r\n"));
	assert_non_null(strstr(s, "Original-Envelope-Id: env+id\r\n"));
	assert_non_null(strstr(s, "Arrival-Date: Fri, 29 Nov 2024"));
	assert_non_null(strstr(s, "\r\n\r\nFinal-Recipient: rfc822; "
				  "x@example.com\r\n"
				  "Original-Recipient: rfc822; "
				  "X+t@example.com\r\nAction: failed\r\n"
				  "Status: 5.1.1\r\n"));
	/* No header injection through a diagnostic. */
	assert_non_null(strstr(s, "Diagnostic-Code: smtp; 550 5.1.1 "
				  "unknown  Bcc: evil\r\n"));
	assert_null(strstr(s, "\r\nBcc: evil"));
	assert_non_null(strstr(s, "Final-Recipient: rfc822; y@example.com"
				  "\r\nAction: failed\r\nStatus: 5.2.2\r\n"));
	assert_non_null(strstr(s, "Content-Type: message/rfc822\r\n"));
	assert_non_null(strstr(s, "\r\n\r\nFrom: a@example.org\r\nSubject: "
				  "hi\r\n\r\nbody line\r\n"));
	assert_non_null(strstr(s, "--0F9K3T2M7Q0AB3K7/0F9K3T2M7Q0AB3K8--\r\n"));
	str_free(&out);
}

static void test_headers_only_and_success(void **state)
{
	struct str *out = build(true, DSN_DELIVERED);
	const char *s = str_c(out);

	(void)state;
	assert_non_null(strstr(s, "Subject: Successful Mail Delivery Report"));
	assert_non_null(strstr(s, "Action: delivered"));
	assert_non_null(strstr(s, "Content-Type: text/rfc822-headers\r\n"));
	assert_null(strstr(s, "body line"));
	str_free(&out);
}

static void test_delay_notice(void **state)
{
	struct str *out = build(true, DSN_DELAYED);
	const char *s = str_c(out);

	(void)state;
	assert_non_null(strstr(s, "Subject: Delayed Mail (still being "
				  "retried)\r\n"));
	assert_non_null(strstr(s, "Action: delayed\r\n"));
	assert_non_null(strstr(s, "will be retried"));
	assert_null(strstr(s, "body line"));
	str_free(&out);
}

static void test_notify_xtext(void **state)
{
	struct str *o = str_new(0, 64);

	(void)state;
	assert_true(dsn_notify_has(NULL, "FAILURE"));
	assert_true(dsn_notify_has(NULL, "DELAY"));
	assert_false(dsn_notify_has(NULL, "SUCCESS"));
	assert_false(dsn_notify_has("NEVER", "FAILURE"));
	assert_true(dsn_notify_has("SUCCESS,FAILURE", "FAILURE"));
	assert_true(dsn_notify_has("success", "SUCCESS"));
	assert_false(dsn_notify_has("SUCCESS", "FAILURE"));
	assert_false(dsn_notify_has("FAILURES", "FAILURE"));
	assert_int_equal(dsn_xtext_decode("a+2Bb+3D", o), 0);
	assert_string_equal(str_c(o), "a+b=");
	str_clear(o);
	assert_int_equal(dsn_xtext_decode("a+2", o), -1);
	str_clear(o);
	assert_int_equal(dsn_xtext_decode("a+zz", o), -1);
	str_clear(o);
	assert_int_equal(dsn_xtext_decode("a b", o), -1);
	str_free(&o);
}

static void test_backoff(void **state)
{
	(void)state;
	assert_int_equal(qstate_backoff(1, 300, 14400), 300);
	assert_int_equal(qstate_backoff(2, 300, 14400), 600);
	assert_int_equal(qstate_backoff(3, 300, 14400), 1200);
	assert_int_equal(qstate_backoff(7, 300, 14400), 14400);
	assert_int_equal(qstate_backoff(4000000000u, 300, 14400), 14400);
}

static void test_state_round_trip(void **state)
{
	struct qstate st, back;
	struct str *out = str_new(0, 65536), *again = str_new(0, 65536);
	const char *error;

	(void)state;
	qstate_init(&st, 3);
	st.attempts = 2;
	st.next_try = 1732850300;
	st.warned = true;
	st.rcpts[0].done = true;
	qstate_add_reached(&st, 1, "ann@example.com");
	qstate_add_reached(&st, 1, "ANN@example.com");	/* the same */
	qstate_set_error(&st, 2, "451 4.4.1 down\r\nand out");
	assert_int_equal(qstate_encode(&st, out), 0);
	assert_string_equal(str_c(out), "tern-qstate 1\nattempts 2\n"
			    "next 1732850300\nwarned 1\nD 0\n"
			    "T 1 ann@example.com\n"
			    "E 2 451 4.4.1 down  and out\n");
	/* Byte by byte is the same as whole: the parser is given it all,
	 * so check every truncation is refused or read consistently. */
	assert_int_equal(qstate_parse(&back, str_c(out), str_len(out), 3,
				      &error), 0);
	assert_int_equal(qstate_encode(&back, again), 0);
	assert_string_equal(str_c(out), str_c(again));
	assert_true(qstate_reached(&back, 1, "Ann@Example.com"));
	assert_true(back.warned);
	assert_false(qstate_reached(&back, 2, "ann@example.com"));
	qstate_clear(&back);
	for (size_t n = 0; n < str_len(out); n++) {
		int r = qstate_parse(&back, str_c(out), n, 3, &error);

		assert_true(r == 0 || r == -1);
		qstate_clear(&back);
	}
	qstate_clear(&st);
	str_free(&out);
	str_free(&again);
}

static void bad_state(const char *text, const char *why)
{
	struct qstate st;
	const char *error = NULL;

	assert_int_equal(qstate_parse(&st, text, strlen(text), 2, &error), -1);
	assert_non_null(strstr(error, why));
	qstate_clear(&st);
}

static void test_state_refusals(void **state)
{
	(void)state;
	bad_state("", "empty");
	bad_state("tern-qstate 9\n", "version");
	bad_state("tern-qstate 1\nD 2\n", "out of range");
	bad_state("tern-qstate 1\nD x\n", "out of range");
	bad_state("tern-qstate 1\nQ 0\n", "malformed");
	bad_state("tern-qstate 1\nattempts x\n", "malformed");
	bad_state("tern-qstate 1\nD 0 extra\n", "malformed");
	bad_state("tern-qstate 1\nwarned 2\n", "malformed");
	bad_state("tern-qstate 1\nT 0\n", "malformed");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_failure_notice),
		cmocka_unit_test(test_headers_only_and_success),
		cmocka_unit_test(test_delay_notice),
		cmocka_unit_test(test_notify_xtext),
		cmocka_unit_test(test_backoff),
		cmocka_unit_test(test_state_round_trip),
		cmocka_unit_test(test_state_refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
