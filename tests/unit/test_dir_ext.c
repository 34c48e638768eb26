/* test_dir_ext.c: the external directory without a server: the filter
 * templates (every value escaped, "%%", unknown sequences, length limits),
 * the checks of dir_ext_open(), a server that cannot be reached, and the
 * merge of its address book entries with Tern's. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "compat.h"
#include "dir.h"
#include "dir_ext.h"
#include "dir_ldap.h"
#include "str.h"
#include "xalloc.h"

static const struct dir_ext_vars user_vars = {
	.u = "bob@example.com", .l = "bob", .d = "example.com",
};

/* The result of a template that must work. */
static const char *fill(struct str *out, const char *tmpl,
			const struct dir_ext_vars *vars)
{
	struct str *err = str_new(64, 1024);

	if (dir_ext_template(tmpl, vars, out, err) != DIR_OK)
		fail_msg("template '%s': %s", tmpl, str_c(err));
	str_free(&err);
	return str_c(out);
}

/* The error of a template that must fail. */
static void refused(const char *tmpl, const struct dir_ext_vars *vars,
		    const char *why)
{
	struct str *out = str_new(64, 8192), *err = str_new(64, 1024);

	assert_int_equal(str_set(out, "old", 3), 0);
	assert_int_equal(dir_ext_template(tmpl, vars, out, err), DIR_INVALID);
	assert_non_null(strstr(str_c(err), why));
	assert_string_equal(str_c(out), "old");	/* untouched */
	str_free(&out);
	str_free(&err);
}

static void test_substitution(void **state)
{
	struct str *out = str_new(64, 8192);
	struct dir_ext_vars gal = { .s = "ann" };

	(void)state;
	assert_string_equal(fill(out, "(&(objectClass=user)"
				 "(userPrincipalName=%u))", &user_vars),
			    "(&(objectClass=user)"
			    "(userPrincipalName=bob@example.com))");
	assert_string_equal(fill(out, "(|(sAMAccountName=%l)(uid=%l@%d))",
				 &user_vars),
			    "(|(sAMAccountName=bob)(uid=bob@example.com))");
	assert_string_equal(fill(out, "(|(mail=*%s*)(sn=%s*))", &gal),
			    "(|(mail=*ann*)(sn=ann*))");
	assert_string_equal(fill(out, "(cn=x)", &user_vars), "(cn=x)");
	/* %% is one '%', never the start of a sequence. */
	assert_string_equal(fill(out, "(a=100%%)", &user_vars), "(a=100%)");
	assert_string_equal(fill(out, "(a=%%u%u)", &user_vars),
			    "(a=%ubob@example.com)");
	assert_string_equal(fill(out, "%%%%", &user_vars), "%%");
	str_free(&out);
}

static void test_hostile_values(void **state)
{
	struct str *out = str_new(64, 8192);
	struct dir_ext_vars v = { .u = "*)(uid=*))(|(uid=*",
				  .l = "a\\2a", .d = "(x)" };
	struct dir_ext_vars gal = { .s = "*" };

	(void)state;
	assert_string_equal(fill(out, "(upn=%u)", &v),
			    "(upn=\\2a\\29\\28uid=\\2a\\29\\29\\28|\\28uid=\\2a)");
	assert_string_equal(fill(out, "(l=%l)(d=%d)", &v),
			    "(l=a\\5c2a)(d=\\28x\\29)");
	/* The wildcards of the template stay, the user's '*' does not. */
	assert_string_equal(fill(out, "(mail=*%s*)", &gal),
			    "(mail=*\\2a*)");
	/* A value that looks like a sequence is only text. */
	v.u = "%s%%";
	assert_string_equal(fill(out, "(upn=%u)", &v), "(upn=%s%%)");
	str_free(&out);
}

/* Every byte value, alone and inside text, comes out as the LDAP escaping
 * gives it: never a bare '*', '(', ')' or '\' of the user's. */
static void test_every_byte(void **state)
{
	struct str *out = str_new(64, 8192), *want = str_new(64, 8192);

	(void)state;
	for (unsigned c = 1; c < 256; c++) {
		char val[4] = { 'a', (char)c, 'b', '\0' };
		struct dir_ext_vars v = { .s = val };

		str_clear(want);
		assert_int_equal(str_append_c(want, "(x=*"), 0);
		assert_int_equal(dir_ldap_filter_escape(want, val, 3), 0);
		assert_int_equal(str_append_c(want, "*)"), 0);
		assert_string_equal(fill(out, "(x=*%s*)", &v), str_c(want));
		for (const char *p = str_c(out) + 4;
		     p < str_c(out) + str_len(out) - 2; p++)
			assert_true(*p != '(' && *p != ')' && *p != '*');
	}
	str_free(&out);
	str_free(&want);
}

static void test_bad_templates(void **state)
{
	struct dir_ext_vars gal = { .s = "x" };

	(void)state;
	refused("(a=%x)", &user_vars, "unknown '%x'");
	refused("(a=%U)", &user_vars, "unknown '%U'");
	refused("(a=%\x01)", &user_vars, "unknown '%' sequence");
	refused("(a=%\xc3\xa9)", &user_vars, "unknown '%' sequence");
	refused("(a=%", &user_vars, "ends with '%'");
	refused("%", &user_vars, "ends with '%'");
	refused("(a=%%%", &user_vars, "ends with '%'");
	refused("(a=%%%)", &user_vars, "unknown '%)'");
	/* each template only with its own values */
	refused("(mail=*%s*)", &user_vars, "unknown '%s'");
	refused("(upn=%u)", &gal, "unknown '%u'");
	refused("", &user_vars, "1 to 1024 bytes");
}

static void test_length_limits(void **state)
{
	struct str *out = str_new(64, 8192), *err = str_new(64, 1024);
	char *tmpl = xmalloc(DIR_EXT_TEMPLATE_MAX + 2);
	char *val = xmalloc(DIR_EXT_FILTER_MAX + 2);
	struct dir_ext_vars v = { .s = val };

	(void)state;
	memset(tmpl, 'x', DIR_EXT_TEMPLATE_MAX + 1);
	tmpl[DIR_EXT_TEMPLATE_MAX] = '\0';
	assert_int_equal(dir_ext_template(tmpl, &v, out, err), DIR_OK);
	assert_int_equal(str_len(out), DIR_EXT_TEMPLATE_MAX);
	tmpl[DIR_EXT_TEMPLATE_MAX] = 'x';
	tmpl[DIR_EXT_TEMPLATE_MAX + 1] = '\0';
	refused(tmpl, &v, "1 to 1024 bytes");
	/* the result: DIR_EXT_FILTER_MAX bytes fit, one more does not */
	memset(val, 'v', DIR_EXT_FILTER_MAX - 4);
	val[DIR_EXT_FILTER_MAX - 4] = '\0';
	assert_int_equal(dir_ext_template("(a=%s)", &v, out, err), DIR_OK);
	assert_int_equal(str_len(out), DIR_EXT_FILTER_MAX);
	val[DIR_EXT_FILTER_MAX - 4] = 'v';
	val[DIR_EXT_FILTER_MAX - 3] = '\0';
	refused("(a=%s)", &v, "longer than 4096");
	/* escaping counts: 1366 '*' are 4098 bytes escaped */
	memset(val, '*', 1366);
	val[1366] = '\0';
	refused("%s", &v, "longer than 4096");
	val[1365] = '\0';
	assert_int_equal(dir_ext_template("%s", &v, out, err), DIR_OK);
	assert_int_equal(str_len(out), 4095);
	/* a caller's smaller string is a failure, not a cut filter */
	{
		struct str *small = str_new(16, 16);

		assert_int_equal(dir_ext_template("(upn=%u)", &user_vars,
						  small, err), DIR_INVALID);
		assert_int_equal(str_len(small), 0);
		str_free(&small);
	}
	free(tmpl);
	free(val);
	str_free(&out);
	str_free(&err);
}

static struct dir_ext_settings good_settings(void)
{
	struct dir_ext_settings set = {
		.uri = "ldap://127.0.0.1:1/",
		.base_dn = "dc=example,dc=com",
		.bind_dn = "",
		.timeout_ms = 500,
		.user_filter = "(userPrincipalName=%u)",
		.gal_filter = "(mail=*%s*)",
		.attr_mail = "mail",
		.attr_display_name = "displayName",
		.attr_given_name = "givenName",
		.attr_surname = "2.5.4.4",
		.auth = true,
		.gal = true,
	};
	return set;
}

static void open_refused(const struct dir_ext_settings *set, const char *why)
{
	struct str *err = str_new(64, 1024);
	struct dir_ext *x = NULL;

	assert_int_equal(dir_ext_open(set, &x, err), DIR_INVALID);
	assert_null(x);
	assert_non_null(strstr(str_c(err), why));
	str_free(&err);
}

static void test_open_checks(void **state)
{
	struct dir_ext_settings set = good_settings();

	(void)state;
	set.user_filter = "(upn=%s)";
	open_refused(&set, "unknown '%s'");
	set = good_settings();
	set.gal_filter = "(mail=*%u*)";
	open_refused(&set, "unknown '%u'");
	set = good_settings();
	set.attr_mail = "mail)(x=*";
	open_refused(&set, "not an attribute name");
	set = good_settings();
	set.attr_display_name = "";
	open_refused(&set, "not an attribute name");
	set = good_settings();
	set.uri = "";
	open_refused(&set, "ext_ldap_uri");
	set = good_settings();
	set.bind_dn = "cn=reader,dc=example,dc=com";
	set.bind_password_file = "/nonexistent/ext.secret";
	open_refused(&set, "cannot read");
	/* a template only checked for what it is used for */
	set = good_settings();
	set.gal = false;
	set.gal_filter = "(%x)";
	{
		struct str *err = str_new(64, 1024);
		struct dir_ext *x = NULL;

		assert_int_equal(dir_ext_open(&set, &x, err), DIR_OK);
		assert_true(dir_ext_auth(x));
		assert_false(dir_ext_gal(x));
		dir_ext_close(&x);
		assert_null(x);
		str_free(&err);
	}
	assert_false(dir_ext_auth(NULL));
	assert_false(dir_ext_gal(NULL));
}

/* Nobody listens: temporary failures, never a failed login. */
static void test_server_down(void **state)
{
	struct dir_ext_settings set = good_settings();
	struct str *err = str_new(64, 1024);
	struct dir_gal_entry **list = NULL;
	struct dir_ext *x = NULL;
	size_t n = 0;

	(void)state;
	assert_int_equal(dir_ext_open(&set, &x, err), DIR_OK);
	assert_int_equal(dir_ext_authenticate(x, "bob@example.com", "pw",
					      err), DIR_TEMPFAIL);
	/* within the backoff: at once, and still temporary */
	assert_int_equal(dir_ext_authenticate(x, "bob@example.com", "pw",
					      err), DIR_TEMPFAIL);
	assert_int_equal(dir_ext_gal_search(x, "bob", 10, &list, &n, err),
			 DIR_TEMPFAIL);
	assert_null(list);
	assert_int_equal(n, 0);
	/* not an address: no search at all */
	assert_int_equal(dir_ext_authenticate(x, "bob", "pw", err),
			 DIR_NOTFOUND);
	dir_ext_close(&x);
	str_free(&err);
}

static struct dir_gal_entry *entry(const char *addr, const char *name)
{
	struct dir_gal_entry *e = xcalloc(1, sizeof(*e));

	e->kind = DIR_GAL_ACCOUNT;
	e->address = xstrdup(addr);
	e->display_name = name != NULL ? xstrdup(name) : NULL;
	return e;
}

static void test_gal_merge(void **state)
{
	struct dir_gal_entry **list = xcalloc(3, sizeof(*list));
	struct dir_gal_entry **more = xcalloc(3, sizeof(*more));
	size_t n = 3;

	(void)state;
	list[0] = entry("team@example.com", NULL);
	list[0]->kind = DIR_GAL_LIST;
	list[1] = entry("bob@example.com", "Bob (Tern)");
	list[2] = entry("zed@example.com", NULL);
	more[0] = entry("carol@example.com", "Carol");
	more[1] = entry("bob@example.com", "Bob Builder");
	more[2] = entry("carol@example.com", "Carol again");
	dir_gal_merge(&list, &n, &more, 3, 3);
	assert_null(more);
	assert_int_equal(n, 3);
	assert_string_equal(list[0]->address, "bob@example.com");
	assert_string_equal(list[0]->display_name, "Bob Builder");
	assert_string_equal(list[1]->address, "carol@example.com");
	assert_string_equal(list[2]->address, "team@example.com");
	assert_int_equal(list[2]->kind, DIR_GAL_LIST);
	dir_gal_array_free(&list, n);
	/* nothing to add */
	list = NULL;
	n = 0;
	dir_gal_merge(&list, &n, &more, 0, 0);
	assert_int_equal(n, 0);
	free(list);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_substitution),
		cmocka_unit_test(test_hostile_values),
		cmocka_unit_test(test_every_byte),
		cmocka_unit_test(test_bad_templates),
		cmocka_unit_test(test_length_limits),
		cmocka_unit_test(test_open_checks),
		cmocka_unit_test(test_server_down),
		cmocka_unit_test(test_gal_merge),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
