/* test_dir_ldap.c: the LDAP directory backend without a server: value
 * escaping for filters (RFC 4515) and DNs (RFC 4514), checked by decoding
 * with libldap, and the failures of opening without a reachable server. */
#include "config.h"

#include <ldap.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>

#include "compat.h"
#include "dir.h"
#include "dir_ldap.h"
#include "str.h"

static const char *filter_of(struct str *s, const char *v, size_t len)
{
	str_clear(s);
	assert_int_equal(dir_ldap_filter_escape(s, v, len), 0);
	return str_c(s);
}

static const char *dn_of(struct str *s, const char *v, size_t len)
{
	str_clear(s);
	assert_int_equal(dir_ldap_dn_escape(s, v, len), 0);
	return str_c(s);
}

static void test_filter_escape(void **state)
{
	struct str *s = str_new(64, 4096);

	(void)state;
	assert_string_equal(filter_of(s, "a@b.c", 5), "a@b.c");
	assert_string_equal(filter_of(s, "*", 1), "\\2a");
	assert_string_equal(filter_of(s, "(x)", 3), "\\28x\\29");
	assert_string_equal(filter_of(s, "\\", 1), "\\5c");
	assert_string_equal(filter_of(s, "a\0b", 3), "a\\00b");
	assert_string_equal(filter_of(s, "*)(uid=*))(|(uid=*", 18),
			    "\\2a\\29\\28uid=\\2a\\29\\29\\28|\\28uid=\\2a");
	assert_string_equal(filter_of(s, "\x01\x7f\xc3\xa9", 4),
			    "\\01\\7f\\c3\\a9");
	/* The literal text \00 is three bytes, not a NUL. */
	assert_string_equal(filter_of(s, "\\00", 3), "\\5c00");
	assert_string_equal(filter_of(s, "", 0), "");
	str_free(&s);
}

/* Every byte value, alone and inside text, survives the escaping. */
static void test_filter_escape_all_bytes(void **state)
{
	struct str *s = str_new(64, 4096);

	(void)state;
	for (unsigned c = 0; c < 256; c++) {
		char in[3] = { 'x', (char)c, 'y' };
		const char *out = filter_of(s, in, sizeof(in));
		char dec[8];
		size_t n = 0;

		for (const char *p = out; *p != '\0'; p++) {
			assert_true(*p != '*' && *p != '(' && *p != ')');
			if (*p == '\\') {
				unsigned v;

				assert_int_equal(sscanf(p + 1, "%2x", &v), 1);
				dec[n++] = (char)v;
				p += 2;
			} else {
				dec[n++] = *p;
			}
			assert_true(n < sizeof(dec));
		}
		assert_int_equal(n, sizeof(in));
		assert_memory_equal(dec, in, sizeof(in));
	}
	str_free(&s);
}

static void test_dn_escape(void **state)
{
	struct str *s = str_new(64, 4096);

	(void)state;
	assert_string_equal(dn_of(s, "a@b.c", 5), "a@b.c");
	assert_string_equal(dn_of(s, "a+b=c,d", 7), "a\\+b\\=c\\,d");
	assert_string_equal(dn_of(s, "\"<>;\\", 5), "\\\"\\<\\>\\;\\\\");
	assert_string_equal(dn_of(s, "#x", 2), "\\#x");
	assert_string_equal(dn_of(s, "x#", 2), "x#");
	assert_string_equal(dn_of(s, " x ", 3), "\\ x\\ ");
	assert_string_equal(dn_of(s, "a\0b", 3), "a\\00b");
	assert_string_equal(dn_of(s, "*()", 3), "*()");
	str_free(&s);
}

/* libldap parses each escaped value back to the original bytes. */
static void test_dn_escape_roundtrip(void **state)
{
	static const char *const values[] = {
		"plain", "a+b", "a,b=c", "#lead", " lead", "trail ",
		"\"q\"", "<>;\\", "*(x)*", "jos\xc3\xa9", "a\x01z",
		"x+y@example.com",
	};
	struct str *s = str_new(64, 4096);
	struct str *dn = str_new(64, 4096);

	(void)state;
	for (size_t i = 0; i < TERN_NELEM(values); i++) {
		LDAPDN parsed = NULL;
		size_t len = strlen(values[i]);

		str_clear(dn);
		assert_int_equal(str_append_c(dn, "mail="), 0);
		assert_int_equal(str_append_c(dn, dn_of(s, values[i], len)),
				 0);
		assert_int_equal(str_append_c(dn, ",dc=tern"), 0);
		assert_int_equal(ldap_str2dn(str_c(dn), &parsed,
					     LDAP_DN_FORMAT_LDAPV3),
				 LDAP_SUCCESS);
		assert_non_null(parsed[0]);
		assert_null(parsed[0][1]);	/* one AVA: no '+' split */
		assert_int_equal(parsed[0][0]->la_value.bv_len, len);
		assert_memory_equal(parsed[0][0]->la_value.bv_val, values[i],
				    len);
		assert_non_null(parsed[1]);
		assert_null(parsed[2]);		/* no ',' split */
		ldap_dnfree(parsed);
	}
	str_free(&s);
	str_free(&dn);
}

static void test_escape_bounded(void **state)
{
	struct str *s = str_new(4, 8);

	(void)state;
	assert_int_equal(dir_ldap_filter_escape(s, "****", 4), -1);
	str_clear(s);
	assert_int_equal(dir_ldap_dn_escape(s, "++++++", 6), -1);
	str_free(&s);
}

static void test_open_errors(void **state)
{
	struct dir_ldap_settings set = {
		.uri = "ldapi://%2Fnonexistent%2Ftern%2Fldapi",
		.base_dn = "dc=tern",
		.bind_dn = "",
		.timeout_ms = 500,
	};
	struct str *err = str_new(64, 4096);
	struct dir_account *a = NULL;
	struct dir *d = NULL;
	uint64_t serial;

	(void)state;
	/* Read-only opens lazily; every call is then a temporary failure. */
	assert_int_equal(dir_open_ldap(&set, true, &d, err), DIR_OK);
	assert_string_equal(dir_backend_name(d), "ldap");
	assert_int_equal(dir_serial(d, &serial, err), DIR_TEMPFAIL);
	assert_int_equal(dir_account_get(d, "a@example.com", &a, err),
			 DIR_TEMPFAIL);
	assert_null(a);
	assert_int_equal(dir_authenticate(d, "a@example.com", "pw", &a, err),
			 DIR_TEMPFAIL);
	dir_close(&d);
	assert_null(d);
	/* A writer must reach the server. */
	assert_int_equal(dir_open_ldap(&set, false, &d, err), DIR_TEMPFAIL);
	assert_null(d);
	set.bind_dn = "cn=tern-service,dc=tern";
	set.bind_password_file = "/nonexistent/ldap.secret";
	assert_int_equal(dir_open_ldap(&set, true, &d, err), DIR_TEMPFAIL);
	assert_non_null(strstr(str_c(err), "/nonexistent/ldap.secret"));
	set.uri = "";
	assert_int_equal(dir_open_ldap(&set, true, &d, err), DIR_INVALID);
	assert_null(d);
	str_free(&err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_filter_escape),
		cmocka_unit_test(test_filter_escape_all_bytes),
		cmocka_unit_test(test_dn_escape),
		cmocka_unit_test(test_dn_escape_roundtrip),
		cmocka_unit_test(test_escape_bounded),
		cmocka_unit_test(test_open_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
