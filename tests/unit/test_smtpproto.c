/* test_smtpproto.c: SMTP/LMTP command parsing and the DATA reader. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "compat.h"
#include "smtpproto.h"
#include "str.h"

struct parsed {
	char line[1024];
	struct smtp_cmd cmd;
	const char *error;
	int r;
};

static struct parsed *parse(const char *text, unsigned flags)
{
	static struct parsed p;

	memset(&p, 0, sizeof(p));
	str_lcpy(p.line, text, sizeof(p.line));
	p.r = smtp_cmd_parse(p.line, strlen(p.line), flags, &p.cmd, &p.error);
	return &p;
}

static void test_helo_family(void **state)
{
	struct parsed *p = parse("EHLO mx.example.com", 0);

	assert_int_equal(p->r, 0);
	assert_int_equal(p->cmd.verb, SMTP_EHLO);
	assert_string_equal(p->cmd.arg, "mx.example.com");
	p = parse("lhlo client  ", 0);
	assert_int_equal(p->cmd.verb, SMTP_LHLO);
	assert_string_equal(p->cmd.arg, "client");
	p = parse("HELO", 0);
	assert_int_equal(p->r, -1);
	assert_non_null(strstr(p->error, "501"));
}

static void test_mail_with_params(void **state)
{
	struct parsed *p = parse("MAIL FROM:<Bob@Example.COM> SIZE=1000 "
				 "body=8BITMIME SMTPUTF8", 0);
	bool found;

	assert_int_equal(p->r, 0);
	assert_int_equal(p->cmd.verb, SMTP_MAIL);
	assert_string_equal(p->cmd.path, "Bob@Example.COM");
	assert_int_equal(p->cmd.nparams, 3);
	assert_string_equal(smtp_cmd_param(&p->cmd, "size", &found), "1000");
	assert_string_equal(smtp_cmd_param(&p->cmd, "BODY", NULL), "8BITMIME");
	assert_null(smtp_cmd_param(&p->cmd, "SMTPUTF8", &found));
	assert_true(found);
	assert_null(smtp_cmd_param(&p->cmd, "RET", &found));
	assert_false(found);
}

static void test_paths(void **state)
{
	static const struct {
		const char *line;
		int ok;
		const char *path;
	} cases[] = {
		{ "MAIL FROM:<>", 1, "" },
		{ "mail from: <a@b.example>", 1, "a@b.example" },
		{ "MAIL FROM:a@b.example SIZE=10", 1, "a@b.example" },
		{ "RCPT TO:<@r1.example,@r2.example:u@example.com>", 1,
		  "u@example.com" },
		{ "RCPT TO:<Postmaster>", 1, "Postmaster" },
		{ "RCPT TO:<\"john doe\"@example.com>", 1,
		  "\"john doe\"@example.com" },
		{ "RCPT TO:<\"a>b\"@example.com>", 1, "\"a>b\"@example.com" },
		{ "RCPT TO:<u@[127.0.0.1]>", 1, "u@[127.0.0.1]" },
		{ "RCPT TO:<>", 0, NULL },
		{ "RCPT TO:<a..b@example.com>", 0, NULL },
		{ "RCPT TO:<.a@example.com>", 0, NULL },
		{ "RCPT TO:<a.@example.com>", 0, NULL },
		{ "RCPT TO:<a@-x.example>", 0, NULL },
		{ "RCPT TO:<a@x..example>", 0, NULL },
		{ "RCPT TO:<a@>", 0, NULL },
		{ "RCPT TO:<a b@example.com>", 0, NULL },
		{ "RCPT TO:<a@example.com", 0, NULL },
		{ "RCPT TO:<a@example.com>X", 0, NULL },
		{ "RCPT FROM:<a@example.com>", 0, NULL },
		{ "RCPT TO:<jos\xc3\xa9@example.com>", 0, NULL },
	};

	for (size_t i = 0; i < TERN_NELEM(cases); i++) {
		struct parsed *p = parse(cases[i].line, 0);

		if (p->r != (cases[i].ok ? 0 : -1))
			fail_msg("%s: r=%d", cases[i].line, p->r);
		if (cases[i].ok)
			assert_string_equal(p->cmd.path, cases[i].path);
		else
			assert_non_null(strstr(p->error, "501"));
	}
}

static void test_utf8_paths(void **state)
{
	struct parsed *p = parse("RCPT TO:<jos\xc3\xa9@b\xc3\xbc" "cher.example>",
				 SMTP_PARSE_UTF8);

	assert_int_equal(p->r, 0);
	assert_string_equal(p->cmd.path, "jos\xc3\xa9@b\xc3\xbc" "cher.example");
}

static void test_bad_params(void **state)
{
	struct str *many = str_new(0, 1024);

	assert_int_equal(parse("MAIL FROM:<a@b> SIZE=", 0)->r, -1);
	assert_int_equal(parse("MAIL FROM:<a@b> =x", 0)->r, -1);
	assert_int_equal(parse("MAIL FROM:<a@b> SI\x01ZE=1", 0)->r, -1);
	assert_int_equal(parse("MAIL FROM:<a@b> A=b=c", 0)->r, -1);
	assert_int_equal(str_append_c(many, "MAIL FROM:<a@b>"), 0);
	for (int i = 0; i <= SMTP_PARAMS_MAX; i++)
		assert_int_equal(str_printf(many, " P%d=%d", i, i), 0);
	assert_int_equal(parse(str_c(many), 0)->r, -1);
	str_free(&many);
}

static void test_bdat_and_others(void **state)
{
	struct parsed *p = parse("BDAT 100 last", 0);

	assert_int_equal(p->r, 0);
	assert_int_equal(p->cmd.chunk_size, 100);
	assert_true(p->cmd.last);
	p = parse("BDAT 0", 0);
	assert_int_equal(p->r, 0);
	assert_false(p->cmd.last);
	assert_int_equal(parse("BDAT x", 0)->r, -1);
	assert_int_equal(parse("BDAT 99999999999999999999999", 0)->r, -1);
	assert_int_equal(parse("BDAT 5 FIRST", 0)->r, -1);
	assert_int_equal(parse("DATA now", 0)->r, -1);
	assert_int_equal(parse("QUIT", 0)->cmd.verb, SMTP_QUIT);
	assert_int_equal(parse("starttls", 0)->cmd.verb, SMTP_STARTTLS);
	assert_int_equal(parse("VRFY", 0)->r, -1);
	p = parse("XYZZY magic", 0);
	assert_int_equal(p->r, 0);
	assert_int_equal(p->cmd.verb, SMTP_UNKNOWN);
	assert_string_equal(p->cmd.name, "XYZZY");
	p = parse("NOOP anything goes", 0);
	assert_int_equal(p->cmd.verb, SMTP_NOOP);
}

static void test_nul_in_command(void **state)
{
	char line[] = "MAIL FROM:<a@b>\0x";
	struct smtp_cmd cmd;
	const char *error;

	assert_int_equal(smtp_cmd_parse(line, sizeof(line) - 1, 0, &cmd,
					&error), -1);
	assert_non_null(strstr(error, "NUL"));
}

/* ---- DATA ---- */

struct data_run {
	struct str *msg;
	unsigned flags;
	uint64_t size;
	int ended;
	size_t rest;	/* input bytes left after the end marker */
};

/* Feeds in with chunks of `step` bytes (0 = whole) into an output str of
 * `room` bytes, draining it whenever it fills. */
static struct data_run run_data(const char *in, size_t len, size_t step,
				enum smtp_data_mode mode, uint64_t max,
				size_t room)
{
	struct smtp_data *d = smtp_data_new(mode, max);
	struct str *out = str_new(0, room);
	struct data_run r = { .msg = str_new(0, 1 << 20) };
	const char *pos = in, *end = in + len;

	while (pos < end && !r.ended) {
		const char *chunk_end = step == 0 || (size_t)(end - pos) < step ?
						end : pos + step;
		int x;

		while ((x = smtp_data_feed(d, &pos, chunk_end, out)) == -1) {
			assert_int_equal(str_append(r.msg, str_c(out),
						    str_len(out)), 0);
			str_clear(out);
		}
		if (x == 1)
			r.ended = 1;
	}
	assert_int_equal(str_append(r.msg, str_c(out), str_len(out)), 0);
	r.flags = smtp_data_flags(d);
	r.size = smtp_data_size(d);
	r.rest = (size_t)(end - pos);
	str_free(&out);
	smtp_data_free(&d);
	return r;
}

static void check_data(const char *in, enum smtp_data_mode mode,
		       const char *want, unsigned want_flags, int want_end,
		       size_t want_rest)
{
	size_t len = strlen(in);
	static const size_t steps[] = { 0, 1, 2, 3, 7 };
	static const size_t rooms[] = { 1 << 16, 4, 5 };

	for (size_t i = 0; i < TERN_NELEM(steps); i++) {
		for (size_t k = 0; k < TERN_NELEM(rooms); k++) {
			struct data_run r = run_data(in, len, steps[i], mode,
						     1 << 20, rooms[k]);

			assert_string_equal(str_c(r.msg), want);
			assert_int_equal(r.flags, want_flags);
			assert_int_equal(r.ended, want_end);
			if (want_end)
				assert_int_equal(r.rest, want_rest);
			assert_int_equal(r.size, strlen(want));
			str_free(&r.msg);
		}
	}
}

static void test_data_basic(void **state)
{
	check_data("Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n", SMTP_DATA_STRICT,
		   "Subject: x\r\n\r\nbody\r\n", 0, 1, 6);
	check_data(".\r\n", SMTP_DATA_STRICT, "", 0, 1, 0);
	check_data("a\r\n..b\r\n...\r\n.\r\n", SMTP_DATA_STRICT,
		   "a\r\n.b\r\n..\r\n", 0, 1, 0);
	check_data("no end\r\n", SMTP_DATA_STRICT, "no end\r\n", 0, 0, 0);
}

static void test_data_smuggling(void **state)
{
	/* Only CRLF.CRLF ends DATA: none of these fake endings do. */
	check_data("a\n.\nMAIL FROM:<x@y>\r\n.\r\n", SMTP_DATA_STRICT,
		   "a\n.\nMAIL FROM:<x@y>\r\n", SMTP_DATA_BARE_LF, 1, 0);
	check_data("a\r\n.\nb\r\n.\r\n", SMTP_DATA_STRICT,
		   "a\r\n\nb\r\n", SMTP_DATA_BARE_LF, 1, 0);
	check_data("a\n.\r\nb\r\n.\r\n", SMTP_DATA_STRICT,
		   "a\n.\r\nb\r\n", SMTP_DATA_BARE_LF, 1, 0);
	check_data("a\r.\r\nb\r\n.\r\n", SMTP_DATA_STRICT,
		   "a\r.\r\nb\r\n", SMTP_DATA_BARE_CR, 1, 0);
	check_data("a\r\n.\rb\r\n.\r\n", SMTP_DATA_STRICT,
		   "a\r\n\rb\r\n", SMTP_DATA_BARE_CR, 1, 0);
}

static void test_data_normalize(void **state)
{
	check_data("a\nb\rc\r\n.\r\n", SMTP_DATA_NORMALIZE,
		   "a\r\nb\r\nc\r\n", SMTP_DATA_BARE_CR | SMTP_DATA_BARE_LF,
		   1, 0);
}

static void test_data_too_big_and_nul(void **state)
{
	const char *in = "123456789\r\n.\r\nNEXT";
	struct data_run r = run_data(in, strlen(in), 0, SMTP_DATA_STRICT, 5,
				     1024);

	assert_true(r.flags & SMTP_DATA_TOO_BIG);
	assert_int_equal(r.ended, 1);
	assert_int_equal(r.rest, 4);
	assert_int_equal(r.size, 11);
	assert_true(str_len(r.msg) <= 5);
	str_free(&r.msg);
	r = run_data("a\0b\r\n.\r\n", 8, 1, SMTP_DATA_STRICT, 100, 64);
	assert_true(r.flags & SMTP_DATA_NUL);
	assert_int_equal(str_len(r.msg), 5);
	str_free(&r.msg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_helo_family),
		cmocka_unit_test(test_mail_with_params),
		cmocka_unit_test(test_paths),
		cmocka_unit_test(test_utf8_paths),
		cmocka_unit_test(test_bad_params),
		cmocka_unit_test(test_bdat_and_others),
		cmocka_unit_test(test_nul_in_command),
		cmocka_unit_test(test_data_basic),
		cmocka_unit_test(test_data_smuggling),
		cmocka_unit_test(test_data_normalize),
		cmocka_unit_test(test_data_too_big_and_nul),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
