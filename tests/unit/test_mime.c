/* test_mime.c: the MIME parser, ENVELOPE/BODYSTRUCTURE, sections, header
 * decoding and SORT keys.  Every message is parsed whole and in 1, 2, 3, 7
 * and 64 byte pieces; the results must not differ.  The expected IMAP
 * strings were worked out by hand from RFC 3501 7.4.2. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "compat.h"

#include <stdlib.h>

#include "cfg.h"
#include "mime.h"
#include "mime_addr.h"
#include "mime_encode.h"
#include "mime_imap.h"
#include "mime_sort.h"
#include "str.h"

static struct mime_part *parse_set(const char *msg, size_t len, size_t step,
				   const struct mime_settings *set)
{
	struct mime_parser *p = mime_parser_new(set);
	size_t i, n;

	if (step == 0) {
		mime_parser_feed(p, msg, len);
	} else {
		for (i = 0; i < len; i += n) {
			n = len - i < step ? len - i : step;
			mime_parser_feed(p, msg + i, n);
		}
	}
	return mime_parser_finish(&p);
}

/* "BS\nBODY\nENV" of a parse. */
static struct str *describe(const struct mime_part *root)
{
	struct str *s = str_new(0, 1 << 20);

	assert_int_equal(mime_imap_bodystructure(root, 1, s), 0);
	assert_int_equal(str_append_c(s, "\n"), 0);
	assert_int_equal(mime_imap_bodystructure(root, 0, s), 0);
	assert_int_equal(str_append_c(s, "\n"), 0);
	assert_int_equal(mime_imap_envelope(root, s), 0);
	return s;
}

/* Parses msg in every split and checks that all give the same result;
 * returns the whole parse. */
static struct mime_part *parse_all(const char *msg, size_t len)
{
	static const size_t steps[] = { 1, 2, 3, 7, 64 };
	struct mime_part *root = parse_set(msg, len, 0, NULL), *r;
	struct str *want = describe(root), *got;

	for (size_t i = 0; i < TERN_NELEM(steps); i++) {
		r = parse_set(msg, len, steps[i], NULL);
		got = describe(r);
		if (strcmp(str_c(got), str_c(want)) != 0)
			fail_msg("step %zu:\n%s\nwhole:\n%s", steps[i],
				 str_c(got), str_c(want));
		str_free(&got);
		mime_part_free(&r);
	}
	str_free(&want);
	return root;
}

static void expect_imap(const struct mime_part *root, const char *bs,
			const char *env)
{
	struct str *s = str_new(0, 1 << 20);

	assert_int_equal(mime_imap_bodystructure(root, 1, s), 0);
	if (strcmp(str_c(s), bs) != 0)
		fail_msg("BODYSTRUCTURE\n got %s\nwant %s", str_c(s), bs);
	if (env != NULL) {
		str_clear(s);
		assert_int_equal(mime_imap_envelope(root, s), 0);
		if (strcmp(str_c(s), env) != 0)
			fail_msg("ENVELOPE\n got %s\nwant %s", str_c(s), env);
	}
	str_free(&s);
}

static void expect_body(const struct mime_part *root, const char *body)
{
	struct str *s = str_new(0, 1 << 20);

	assert_int_equal(mime_imap_bodystructure(root, 0, s), 0);
	if (strcmp(str_c(s), body) != 0)
		fail_msg("BODY\n got %s\nwant %s", str_c(s), body);
	str_free(&s);
}

/* The section's bytes must be want. */
static void expect_section(const struct mime_part *root, const char *msg,
			   const char *section, const char *want)
{
	struct mime_range r;
	const char *error;

	if (mime_section_find(root, section, &r, &error) < 0)
		fail_msg("section %s: %s", section, error);
	if (r.size != strlen(want) || memcmp(msg + r.offset, want, r.size))
		fail_msg("section %s: got '%.*s' want '%s'", section,
			 (int)r.size, msg + r.offset, want);
}

static void expect_no_section(const struct mime_part *root,
			      const char *section)
{
	struct mime_range r;
	const char *error = NULL;

	assert_int_equal(mime_section_find(root, section, &r, &error), -1);
	assert_non_null(error);
}

#define PARSE_LIT(s) parse_all(s, sizeof(s) - 1)

/* ---- real-world shapes ---- */

static const char msg_simple[] =
	"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n"
	"From: Terry Gray <gray@cac.washington.edu>\r\n"
	"Subject: IMAP4rev1 WG mtg summary and minutes\r\n"
	"To: imap@cac.washington.edu\r\n"
	"cc: minutes@CNRI.Reston.VA.US,\r\n"
	"\tJohn Klensin <KLENSIN@MIT.EDU>\r\n"
	"Message-Id: <B27397-0100000@cac.washington.edu>\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
	"\r\n"
	"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
	"Bye\r\n";

static void test_simple(void **state)
{
	struct mime_part *root = parse_all(msg_simple,
					   strlen(msg_simple));

	/* body: 55 + 5 bytes, 2 lines */
	expect_imap(root,
		"(\"TEXT\" \"PLAIN\" (\"charset\" \"US-ASCII\") NIL NIL "
		"\"7bit\" 60 2 NIL NIL NIL NIL)",
		"(\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" "
		"\"IMAP4rev1 WG mtg summary and minutes\" "
		"((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
		"((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
		"((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
		"((NIL NIL \"imap\" \"cac.washington.edu\")) "
		"((NIL NIL \"minutes\" \"CNRI.Reston.VA.US\")"
		"(\"John Klensin\" NIL \"KLENSIN\" \"MIT.EDU\")) NIL NIL "
		"\"<B27397-0100000@cac.washington.edu>\")");
	expect_body(root, "(\"TEXT\" \"PLAIN\" (\"charset\" \"US-ASCII\") "
			  "NIL NIL \"7bit\" 60 2)");
	expect_section(root, msg_simple, "1",
		       "Hello Joe, do you think we can meet at 3:30 "
		       "tomorrow?\r\nBye\r\n");
	expect_section(root, msg_simple, "TEXT",
		       "Hello Joe, do you think we can meet at 3:30 "
		       "tomorrow?\r\nBye\r\n");
	expect_section(root, msg_simple, "", msg_simple);
	assert_int_equal(mime_section_find(root, "HEADER",
					   &(struct mime_range){ 0, 0 },
					   &(const char *){ NULL }), 0);
	expect_no_section(root, "2");
	expect_no_section(root, "1.1");
	expect_no_section(root, "1.HEADER");
	expect_no_section(root, "MIME");
	expect_no_section(root, "0");
	expect_no_section(root, "1.");
	expect_no_section(root, "BOGUS");
	mime_part_free(&root);
}

/* multipart/alternative with a nested multipart/related, then a
 * message/rfc822 attachment and an RFC 2231 named PDF. */
static const char msg_nested[] =
	"From: Ann <ann@example.org>\r\n"
	"To: Bob <bob@example.net>\r\n"
	"Subject: Report\r\n"
	"Content-Type: multipart/mixed; boundary=\"=_outer\"\r\n"
	"\r\n"
	"This is a multi-part message in MIME format.\r\n"
	"--=_outer\r\n"
	"Content-Type: multipart/alternative; boundary=alt\r\n"
	"\r\n"
	"--alt\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"Content-Transfer-Encoding: quoted-printable\r\n"
	"\r\n"
	"See the chart.\r\n"
	"Ann\r\n"
	"--alt\r\n"
	"Content-Type: multipart/related; boundary=\"rel\"; "
	"type=\"text/html\"\r\n"
	"\r\n"
	"--rel\r\n"
	"Content-Type: text/html; charset=utf-8\r\n"
	"\r\n"
	"<p>See <img src=\"cid:c1\"></p>\r\n"
	"--rel\r\n"
	"Content-Type: image/png\r\n"
	"Content-ID: <c1>\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"Content-Disposition: inline\r\n"
	"\r\n"
	"iVBORw0KGgo=\r\n"
	"--rel--\r\n"
	"\r\n"
	"--alt--   \r\n"
	"--=_outer\r\n"
	"Content-Type: message/rfc822\r\n"
	"Content-Description: forwarded\r\n"
	"\r\n"
	"From: c@d.example\r\n"
	"Subject: old\r\n"
	"Message-ID: <x@y>\r\n"
	"\r\n"
	"old text\r\n"
	"--=_outer\r\n"
	"Content-Type: application/pdf;\r\n"
	" name*0=\"annual \"; name*1=\"report.pdf\"\r\n"
	"Content-Disposition: attachment;\r\n"
	" filename*=UTF-8''%E2%82%AC%20report.pdf\r\n"
	"Content-Language: en, fr\r\n"
	"Content-Location: report.pdf\r\n"
	"Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n"
	"\r\n"
	"JVBERi0xLjQK\r\n"
	"--=_outer--\r\n"
	"epilogue\r\n";

static void test_nested(void **state)
{
	struct mime_part *root = parse_all(msg_nested, strlen(msg_nested));
	const struct mime_part *pdf;

	/* 1.1: "See the chart.\r\nAnn" = 19 bytes, 2 lines.
	 * 1.2.1: 7+18+4 = 29 bytes, 1 line.  1.2.2: 12 bytes.
	 * 2: the encapsulated message, 19+14+19+2+8 = 62 bytes, 5 lines;
	 * its body "old text" 8 bytes, 1 line.  3: 12 bytes. */
	expect_imap(root,
		"(((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL "
		"\"quoted-printable\" 19 2 NIL NIL NIL NIL)"
		"((\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" "
		"29 1 NIL NIL NIL NIL)"
		"(\"image\" \"png\" NIL \"<c1>\" NIL \"base64\" 12 NIL "
		"(\"inline\" NIL) NIL NIL) \"related\" (\"boundary\" \"rel\" "
		"\"type\" \"text/html\") NIL NIL NIL) \"alternative\" "
		"(\"boundary\" \"alt\") NIL NIL NIL)"
		"(\"message\" \"rfc822\" NIL NIL \"forwarded\" \"7bit\" 62 "
		"(NIL \"old\" ((NIL NIL \"c\" \"d.example\")) "
		"((NIL NIL \"c\" \"d.example\")) ((NIL NIL \"c\" \"d.example\")) "
		"NIL NIL NIL NIL \"<x@y>\") "
		"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
		"\"7bit\" 8 1 NIL NIL NIL NIL) 5 NIL NIL NIL NIL)"
		"(\"application\" \"pdf\" (\"name\" \"annual report.pdf\") NIL "
		"NIL \"7bit\" 12 \"Q2hlY2sgSW50ZWdyaXR5IQ==\" (\"attachment\" "
		"(\"filename*\" \"UTF-8''%E2%82%AC%20report.pdf\")) "
		"(\"en\" \"fr\") \"report.pdf\") \"mixed\" "
		"(\"boundary\" \"=_outer\") NIL NIL NIL)",
		"(NIL \"Report\" ((\"Ann\" NIL \"ann\" \"example.org\")) "
		"((\"Ann\" NIL \"ann\" \"example.org\")) "
		"((\"Ann\" NIL \"ann\" \"example.org\")) "
		"((\"Bob\" NIL \"bob\" \"example.net\")) NIL NIL NIL NIL)");
	expect_body(root,
		"(((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL "
		"\"quoted-printable\" 19 2)((\"text\" \"html\" (\"charset\" "
		"\"utf-8\") NIL NIL \"7bit\" 29 1)(\"image\" \"png\" NIL "
		"\"<c1>\" NIL \"base64\" 12) \"related\") \"alternative\")"
		"(\"message\" \"rfc822\" NIL NIL \"forwarded\" \"7bit\" 62 "
		"(NIL \"old\" ((NIL NIL \"c\" \"d.example\")) "
		"((NIL NIL \"c\" \"d.example\")) ((NIL NIL \"c\" \"d.example\")) "
		"NIL NIL NIL NIL \"<x@y>\") "
		"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
		"\"7bit\" 8 1) 5)"
		"(\"application\" \"pdf\" (\"name\" \"annual report.pdf\") NIL "
		"NIL \"7bit\" 12) \"mixed\")");
	expect_section(root, msg_nested, "1.1", "See the chart.\r\nAnn");
	expect_section(root, msg_nested, "1.2.1",
		       "<p>See <img src=\"cid:c1\"></p>");
	expect_section(root, msg_nested, "1.2.2.MIME",
		       "Content-Type: image/png\r\nContent-ID: <c1>\r\n"
		       "Content-Transfer-Encoding: base64\r\n"
		       "Content-Disposition: inline\r\n\r\n");
	expect_section(root, msg_nested, "2.HEADER",
		       "From: c@d.example\r\nSubject: old\r\n"
		       "Message-ID: <x@y>\r\n\r\n");
	expect_section(root, msg_nested, "2.HEADER.FIELDS",
		       "From: c@d.example\r\nSubject: old\r\n"
		       "Message-ID: <x@y>\r\n\r\n");
	expect_section(root, msg_nested, "2.TEXT", "old text");
	expect_section(root, msg_nested, "2.1", "old text");
	expect_section(root, msg_nested, "2.MIME",
		       "Content-Type: message/rfc822\r\n"
		       "Content-Description: forwarded\r\n\r\n");
	expect_section(root, msg_nested, "3", "JVBERi0xLjQK");
	expect_section(root, msg_nested, "1.2.2", "iVBORw0KGgo=");
	expect_no_section(root, "1.2.3");
	expect_no_section(root, "3.HEADER");
	expect_no_section(root, "4");
	expect_no_section(root, "2.2");
	pdf = mime_part_next(mime_part_next(mime_part_child(root)));
	assert_string_equal(mime_part_param_utf8(pdf, 1, "filename"),
			    "\xE2\x82\xAC report.pdf");
	assert_string_equal(mime_part_param_utf8(pdf, 0, "name"),
			    "annual report.pdf");
	assert_null(mime_part_param_utf8(pdf, 0, "nope"));
	assert_int_equal(mime_part_flags_all(root), 0);
	mime_part_free(&root);
}

static const char msg_groups[] =
	"From: =?UTF-8?B?SsO2cmc=?= <jorg@example.de>\r\n"
	"Sender: (nobody)\r\n"
	"Reply-To: list:;\r\n"
	"To: undisclosed-recipients:;, A Group: \"Doe, Jane\" <jane@x.example>,"
	"\r\n  bob@y.example (Bob Smith); , <@r1.example,@r2.example:c@z.example>\r\n"
	"Cc: \"very odd\\\"local\"@q.example, nodomain\r\n"
	"Bcc:\r\n"
	"In-Reply-To: <a@b> <c@d>\r\n"
	"Subject: =?koi8-r?B?8NLJ18XU?=\r\n"
	"\r\n";

static void test_groups_and_addresses(void **state)
{
	struct mime_part *root = parse_all(msg_groups, strlen(msg_groups));

	/* No body at all: 0 bytes, 0 lines.  Sender holds no address, so it
	 * is From; Reply-To is an empty group. */
	expect_imap(root,
		"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
		"\"7bit\" 0 0 NIL NIL NIL NIL)",
		"(NIL \"=?koi8-r?B?8NLJ18XU?=\" "
		"((\"=?UTF-8?B?SsO2cmc=?=\" NIL \"jorg\" \"example.de\")) "
		"((\"=?UTF-8?B?SsO2cmc=?=\" NIL \"jorg\" \"example.de\")) "
		"((NIL NIL \"list\" NIL)(NIL NIL NIL NIL)) "
		"((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)"
		"(NIL NIL \"A Group\" NIL)"
		"(\"Doe, Jane\" NIL \"jane\" \"x.example\")"
		"(\"Bob Smith\" NIL \"bob\" \"y.example\")(NIL NIL NIL NIL)"
		"(NIL \"@r1.example,@r2.example\" \"c\" \"z.example\")) "
		"((NIL NIL \"very odd\\\"local\" \"q.example\")"
		"(NIL NIL \"nodomain\" \"\")) NIL \"<a@b> <c@d>\" NIL)");
	mime_part_free(&root);
}

/* ---- header decoding ---- */

static void expect_decoded(const char *in, const char *want)
{
	struct str *s = str_new(0, 4096);

	assert_int_equal(mime_header_decode(in, strlen(in), s), 0);
	if (strcmp(str_c(s), want) != 0)
		fail_msg("decode '%s': got '%s' want '%s'", in, str_c(s),
			 want);
	str_free(&s);
}

static void test_encoded_words(void **state)
{
	expect_decoded("=?ISO-8859-1?Q?Caf=E9_cr=E8me?=", "Caf\xC3\xA9 cr"
		       "\xC3\xA8me");
	expect_decoded("=?UTF-8?B?SsO2cmc=?= Meier", "J\xC3\xB6rg Meier");
	expect_decoded("=?koi8-r?B?8NLJ18XU?=",
		       "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82");
	/* adjacent words: the space between goes, split UTF-8 joins */
	expect_decoded("=?utf-8?q?a?= =?utf-8?q?b?=", "ab");
	expect_decoded("=?utf-8?B?4oI=?=\r\n =?utf-8?B?rA==?=", "\xE2\x82\xAC");
	expect_decoded("=?utf-8?q?a?= x =?utf-8?q?b?=", "a x b");
	/* different charsets next to each other */
	expect_decoded("=?iso-8859-1?q?=E9?= =?utf-8?q?=C3=A9?=",
		       "\xC3\xA9\xC3\xA9");
	/* malformed words stay as they are */
	expect_decoded("=?utf-8?x?abc?=", "=?utf-8?x?abc?=");
	expect_decoded("=?utf-8?b?!!!?= z", "=?utf-8?b?!!!?= z");
	expect_decoded("=?utf-8?q?a b?=", "=?utf-8?q?a b?=");
	expect_decoded("=??q?a?=", "=??q?a?=");
	expect_decoded("a =?utf-8?q?broken", "a =?utf-8?q?broken");
	expect_decoded("=?utf-8*en?q?hi?=", "hi");
	/* unknown charset keeps bytes; invalid UTF-8 becomes U+FFFD */
	expect_decoded("=?x-unknown?q?ok=FF?=", "ok\xEF\xBF\xBD");
	expect_decoded("raw \xC3\xA9 \xFF", "raw \xC3\xA9 \xEF\xBF\xBD");
	expect_decoded("=?us-ascii?q?=80?=", "\xEF\xBF\xBD");
	expect_decoded("=?utf-8//TRANSLIT?q?x?=", "x");
	expect_decoded("", "");
}

static void test_rfc2231(void **state)
{
	struct mime_param *ps;
	size_t n, lead, bytes;
	const char *v = "attachment; FileName*0*=iso-8859-1'fr'%E9t%E9;"
			" filename*1=\" 2024.txt\"; size=10 (bytes);"
			" junk; =x; title*=utf-8''%F0%9F%98%80";

	mime_params_parse(v, strlen(v), &lead, &ps, &n, &bytes);
	assert_int_equal(lead, 10);
	assert_int_equal(n, 3);
	assert_string_equal(ps[0].name, "filename*");
	assert_string_equal(ps[0].value, "iso-8859-1'fr'%E9t%E9%202024.txt");
	assert_string_equal(ps[0].utf8, "\xC3\xA9t\xC3\xA9 2024.txt");
	assert_string_equal(ps[1].name, "size");
	assert_string_equal(ps[1].value, "10");
	assert_string_equal(ps[2].utf8, "\xF0\x9F\x98\x80");
	assert_true(bytes > 0);
	mime_params_free(&ps, n);
	assert_null(ps);
	/* sections out of order, a gap, and an encoded word in a plain value */
	v = "a; n*2=c; n*0=a; n*1=b; q=\"=?utf-8?q?=C3=A9?=\"";
	mime_params_parse(v, strlen(v), &lead, &ps, &n, NULL);
	assert_int_equal(n, 2);
	assert_string_equal(ps[0].name, "n");
	assert_string_equal(ps[0].value, "abc");
	assert_string_equal(ps[1].value, "=?utf-8?q?=C3=A9?=");
	assert_string_equal(ps[1].utf8, "\xC3\xA9");
	mime_params_free(&ps, n);
	mime_params_parse("", 0, &lead, &ps, &n, NULL);
	assert_int_equal(n, 0);
	assert_null(ps);
}

/* ---- IMAP strings ---- */

static void expect_imap_str(const char *in, size_t len, const char *want,
			  size_t want_len)
{
	struct str *s = str_new(0, 256);

	assert_int_equal(mime_imap_string(s, in, len), 0);
	assert_int_equal(str_len(s), want_len);
	assert_memory_equal(str_c(s), want, want_len);
	str_free(&s);
}

static void test_imap_strings(void **state)
{
	struct str *s = str_new(0, 8);

	expect_imap_str("abc", 3, "\"abc\"", 5);
	expect_imap_str("", 0, "\"\"", 2);
	expect_imap_str("a\"b\\c", 5, "\"a\\\"b\\\\c\"", 9);
	expect_imap_str("a\r\nb", 4, "{4}\r\na\r\nb", 9);
	expect_imap_str("caf\xC3\xA9", 5, "{5}\r\ncaf\xC3\xA9", 10);
	expect_imap_str("a\0b", 3, "\"ab\"", 4);
	expect_imap_str("\xFF\0", 2, "{1}\r\n\xFF", 6);
	assert_int_equal(mime_imap_nstring(s, NULL, 0), 0);
	assert_string_equal(str_c(s), "NIL");
	assert_int_equal(mime_imap_string(s, "too long", 8), -1);
	str_free(&s);
}

/* ---- malformed input ---- */

static void test_malformed_multipart(void **state)
{
	/* no close delimiter; a boundary-like line inside a part; a
	 * boundary with trailing junk is text */
	static const char m[] =
		"Content-Type: multipart/mixed; boundary=b\n"
		"\n"
		"--b\n"
		"\n"
		"one\n"
		"--bx\n"
		"--b junk\n"
		"--b\n"
		"Content-Type: text/plain\n"
		"\n"
		"two";
	struct mime_part *root = parse_all(m, strlen(m));

	/* 1: "one\n--bx\n--b junk" = 17 bytes, 3 lines.  2: "two" */
	expect_imap(root,
		"((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
		"\"7bit\" 17 3 NIL NIL NIL NIL)(\"text\" \"plain\" NIL NIL NIL "
		"\"7bit\" 3 1 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"b\") "
		"NIL NIL NIL)", NULL);
	assert_true(mime_part_flags(root) & MIME_PART_F_NO_CLOSE);
	expect_section(root, m, "2", "two");
	expect_section(root, m, "1.MIME", "\n");
	mime_part_free(&root);
}

static void test_line_ends(void **state)
{
	/* bare LF, CRLF and a bare CR (data) mixed; the close delimiter
	 * without a line end at the end of input */
	static const char m[] =
		"Content-Type: multipart/mixed; boundary=\"x y\"\r\n"
		"\n"
		"--x y\t \n"
		"\r\n"
		"a\rb\r\n"
		"c\n"
		"\r\n"
		"--x y\r\n"
		"--x y--";
	struct mime_part *root = parse_all(m, strlen(m));

	/* 1: "a\rb\r\nc\n" = 7 bytes, 2 lines (the last CRLF is the
	 * boundary's).  2: no header, no body. */
	expect_imap(root,
		"((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
		"\"7bit\" 7 2 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" "
		"\"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) \"mixed\" "
		"(\"boundary\" \"x y\") NIL NIL NIL)", NULL);
	assert_false(mime_part_flags(root) & MIME_PART_F_NO_CLOSE);
	expect_section(root, m, "1", "a\rb\r\nc\n");
	mime_part_free(&root);
}

static void test_degenerate(void **state)
{
	static const char nul[] = "Subject: a\0b\r\nno colon here\r\n"
				  "\xC3\xA9: x\r\n\r\nbody\0\r\n";
	struct mime_part *root = parse_all("", 0);
	const struct mime_header *h;

	expect_imap(root, "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL "
			  "NIL \"7bit\" 0 0 NIL NIL NIL NIL)",
		    "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
	mime_part_free(&root);
	root = PARSE_LIT("Subject: only");
	expect_imap(root, "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL "
			  "NIL \"7bit\" 0 0 NIL NIL NIL NIL)",
		    "(NIL \"only\" NIL NIL NIL NIL NIL NIL NIL NIL)");
	mime_part_free(&root);
	root = parse_all(nul, sizeof(nul) - 1);
	h = mime_part_header_find(root, "subject");
	assert_non_null(h);
	assert_int_equal(h->value_len, 3);
	assert_memory_equal(h->value, "a\0b", 3);
	assert_int_equal(mime_part_header_count(root), 2);
	assert_true(mime_part_flags(root) & MIME_PART_F_BAD_HEADER);
	assert_true(mime_part_flags(root) & MIME_PART_F_8BIT_HEADER);
	expect_imap(root, "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL "
			  "NIL \"7bit\" 7 1 NIL NIL NIL NIL)",
		    "(NIL \"ab\" NIL NIL NIL NIL NIL NIL NIL NIL)");
	mime_part_free(&root);
	/* a multipart that never shows its boundary is an opaque leaf */
	root = PARSE_LIT("Content-Type: multipart/mixed; boundary=z\r\n\r\n"
			 "text\r\n");
	expect_imap(root, "(\"text\" \"plain\" (\"boundary\" \"z\") NIL NIL "
			  "\"7bit\" 6 1 NIL NIL NIL NIL)", NULL);
	assert_true(mime_part_flags(root) & MIME_PART_F_OPAQUE);
	mime_part_free(&root);
	/* folded header with 8-bit bytes: a literal */
	root = PARSE_LIT("Subject: caf\xC3\xA9\r\n\tdu coin\r\n\r\n");
	h = mime_part_header_find(root, "SUBJECT");
	assert_int_equal(h->raw_len, 16);
	assert_memory_equal(h->raw, " caf\xC3\xA9\r\n\tdu coin", 16);
	expect_imap(root, "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL "
			  "NIL \"7bit\" 0 0 NIL NIL NIL NIL)",
		    "(NIL {13}\r\ncaf\xC3\xA9\tdu coin NIL NIL NIL NIL NIL "
		    "NIL NIL NIL)");
	mime_part_free(&root);
}

static void test_digest_default(void **state)
{
	static const char m[] =
		"Content-Type: multipart/digest; boundary=d\r\n\r\n"
		"--d\r\n\r\nSubject: one\r\n\r\nbody\r\n"
		"--d--\r\n";
	struct mime_part *root = parse_all(m, strlen(m));

	expect_imap(root,
		"((\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 20 "
		"(NIL \"one\" NIL NIL NIL NIL NIL NIL NIL NIL) "
		"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
		"\"7bit\" 4 1 NIL NIL NIL NIL) 3 NIL NIL NIL NIL) \"digest\" "
		"(\"boundary\" \"d\") NIL NIL NIL)", NULL);
	expect_section(root, m, "1.1", "body");
	expect_section(root, m, "1.HEADER", "Subject: one\r\n\r\n");
	mime_part_free(&root);
}

/* ---- limits ---- */

static void test_long_header_line(void **state)
{
	size_t big = 10 << 20, i;
	char *m = malloc(big + 64);
	struct mime_parser *p = mime_parser_new(NULL);
	struct mime_part *root;
	const struct mime_header *h;

	memcpy(m, "Subject: ", 9);
	memset(m + 9, 'x', big);
	memcpy(m + 9 + big, "\r\nTo: a@b\r\n\r\nhi", 16);
	/* 9 + big + 15 bytes */
	for (i = 0; i < big + 24; i += 4096)
		mime_parser_feed(p, m + i, big + 24 - i < 4096 ?
				 big + 24 - i : 4096);
	root = mime_parser_finish(&p);
	h = mime_part_header_find(root, "subject");
	assert_non_null(h);
	assert_true(h->truncated);
	assert_true(h->raw_len < MIME_DEF_MAX_HEADER_LINE);
	assert_true(mime_part_flags(root) & MIME_PART_F_HEADER_TRUNCATED);
	assert_non_null(mime_part_header_find(root, "to"));
	assert_int_equal(mime_part_body_range(root).size, 2);
	assert_int_equal(mime_part_body_range(root).offset, big + 22);
	mime_part_free(&root);
	free(m);
}

/* n nested multiparts, each with one text part after it. */
static struct str *deep_message(unsigned int n)
{
	struct str *s = str_new(0, 1 << 20);

	for (unsigned int i = 0; i < n; i++)
		assert_int_equal(str_printf(s, "Content-Type: multipart/mixed;"
					    " boundary=b%u\r\n\r\n--b%u\r\n",
					    i, i), 0);
	assert_int_equal(str_append_c(s, "\r\nleaf\r\n"), 0);
	return s;
}

static void test_depth_limit(void **state)
{
	struct mime_settings set;
	struct str *m = deep_message(5000), *bs = str_new(0, 1 << 22);
	struct mime_part *root;
	const struct mime_part *x;
	unsigned int depth = 0;

	mime_settings_init(&set);
	set.max_depth = 3;
	root = parse_set(str_c(m), str_len(m), 0, &set);
	for (x = root; mime_part_child(x) != NULL; x = mime_part_child(x))
		depth++;
	assert_int_equal(depth, 3);
	assert_true(mime_part_flags(x) & MIME_PART_F_OPAQUE);
	assert_true(mime_part_flags_all(root) & MIME_PART_F_LIMIT_HIT);
	assert_int_equal(mime_imap_bodystructure(root, 1, bs), 0);
	assert_non_null(strstr(str_c(bs), "(((\"text\" \"plain\" (\"boundary\" "
				       "\"b3\")"));
	mime_part_free(&root);
	/* the default depth copes with 5000 levels without recursing */
	root = parse_set(str_c(m), str_len(m), 0, NULL);
	depth = 0;
	for (x = root; mime_part_child(x) != NULL; x = mime_part_child(x))
		depth++;
	assert_int_equal(depth, MIME_DEF_MAX_DEPTH);
	mime_part_free(&root);
	str_free(&m);
	str_free(&bs);
}

static void test_parts_and_memory_limits(void **state)
{
	struct mime_settings set;
	struct str *m = str_new(0, 1 << 22);
	struct mime_part *root;

	assert_int_equal(str_append_c(m, "Content-Type: multipart/mixed; "
				      "boundary=b\r\n\r\n"), 0);
	for (int i = 0; i < 20000; i++)
		assert_int_equal(str_append_c(m, "--b\r\nX-A: 0123456789\r\n"
					      "\r\nx\r\n"), 0);
	assert_int_equal(str_append_c(m, "--b--\r\n"), 0);
	mime_settings_init(&set);
	set.max_parts = 100;
	root = parse_set(str_c(m), str_len(m), 0, &set);
	assert_int_equal(mime_part_child_count(root), 99);
	assert_true(mime_part_flags(root) & MIME_PART_F_LIMIT_HIT);
	assert_int_equal(mime_part_body_range(root).offset +
			 mime_part_body_range(root).size, str_len(m));
	mime_part_free(&root);
	mime_settings_init(&set);
	set.max_memory = 1;	/* clamped to the minimum */
	root = parse_set(str_c(m), str_len(m), 0, &set);
	assert_true(mime_part_child_count(root) < 1000);
	assert_true(mime_part_flags(root) & MIME_PART_F_LIMIT_HIT);
	mime_part_free(&root);
	mime_settings_init(&set);
	set.max_header_bytes = 0;	/* clamped to 1024 */
	str_clear(m);
	for (int i = 0; i < 100; i++)
		assert_int_equal(str_append_c(m, "X-Filler: 0123456789\r\n"),
				 0);
	root = parse_set(str_c(m), str_len(m), 1, &set);
	assert_true(mime_part_header_count(root) < 30);
	assert_true(mime_part_flags(root) & MIME_PART_F_HEADER_LIMIT);
	mime_part_free(&root);
	str_free(&m);
}

static void test_settings_from_cfg(void **state)
{
	static const char conf[] = "mime_max_parts = 5\n"
				   "mime_max_header_line = 2k\n";
	struct str *error = str_new(0, 1024);
	struct mime_settings set;
	struct cfg *cfg = NULL;

	assert_int_equal(cfg_load_buffer("/nonexistent", "test.conf", NULL,
					 conf, sizeof(conf) - 1, NULL, NULL,
					 &cfg, error), 0);
	mime_settings_from_cfg(cfg, &set);
	assert_int_equal(set.max_parts, 5);
	assert_int_equal(set.max_header_line, 2048);
	assert_int_equal(set.max_header_bytes, MIME_DEF_MAX_HEADER_BYTES);
	assert_int_equal(set.max_depth, MIME_DEF_MAX_DEPTH);
	assert_int_equal(set.max_memory, MIME_DEF_MAX_MEMORY);
	cfg_free(&cfg);
	str_free(&error);
}

/* ---- SORT / THREAD keys ---- */

static void expect_date(const char *in, long long want, int want_tz)
{
	time_t t;
	int tz;

	if (mime_date_parse(in, strlen(in), &t, &tz) < 0)
		fail_msg("date '%s' not parsed", in);
	if ((long long)t != want || tz != want_tz)
		fail_msg("date '%s': %lld %d, want %lld %d", in, (long long)t,
			 tz, want, want_tz);
}

static void test_dates(void **state)
{
	time_t t;
	int tz;

	expect_date("Thu, 1 Jan 1970 00:00:00 +0000", 0, 0);
	expect_date("Tue, 1 Jul 2003 10:52:37 +0200", 1057049557, 120);
	expect_date("1 Jul 2003 10:52 +0200", 1057049520, 120);
	expect_date("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)", 837595405,
		    -420);
	expect_date("17 Jul 96 02:23:25 PDT", 837595405, -420);
	expect_date("Sat, 29 Feb 2020 23:59:60 GMT", 1583020800, 0);
	expect_date("  (c) Mon , 01 Jan 2001 00:00:00 Z", 978307200, 0);
	expect_date("1-jan-2001 00:00:00 -0000", 978307200, 0);
	assert_int_equal(mime_date_parse("yesterday", 9, &t, &tz), -1);
	assert_int_equal(mime_date_parse("1 Foo 2001 00:00", 16, &t, &tz),
			 -1);
	assert_int_equal(mime_date_parse("1 Jan 2001 25:00", 16, &t, &tz),
			 -1);
	assert_int_equal(mime_date_parse("", 0, &t, &tz), -1);
}

static void expect_base(const char *in, const char *want, int want_reply)
{
	struct str *s = str_new(0, 1024);
	int reply = -1;

	assert_int_equal(mime_subject_base(in, strlen(in), s, &reply), 0);
	if (strcmp(str_c(s), want) != 0 || reply != want_reply)
		fail_msg("subject '%s': '%s' %d, want '%s' %d", in, str_c(s),
			 reply, want, want_reply);
	str_free(&s);
}

static void test_subject_base(void **state)
{
	expect_base("Hello", "Hello", 0);
	expect_base("Re: Hello", "Hello", 1);
	expect_base("RE: re:  FWD: hello  (fwd) (FWD)", "hello", 1);
	expect_base("[list] Re: [list] hi", "hi", 1);
	expect_base("[list] hi", "hi", 0);
	expect_base("[only]", "[only]", 0);
	expect_base("[Fwd: Re: topic]", "topic", 1);
	expect_base("Re[2]: x", "x", 1);
	expect_base("\tRe:\t=?utf-8?q?caf=C3=A9?=   au  lait ", "caf\xC3\xA9 au lait",
		    1);
	expect_base("Ref: not a reply", "Ref: not a reply", 0);
	expect_base("", "", 0);
}

static void test_msgids_and_sort_addresses(void **state)
{
	static const char m[] =
		"From: \"=?utf-8?q?J=C3=B6rg?=\" <jorg@x.example>\r\n"
		"To: g: ; second@y.example\r\n"
		"Cc: third@z.example\r\n\r\n";
	const char *v = "<a@b> junk < c@d > <e<f> <>", *pos = v, *id;
	struct mime_part *root = parse_all(m, strlen(m));
	struct str *s = str_new(0, 256);
	size_t len;

	assert_int_equal(mime_msgid_next(&pos, v + strlen(v), &id, &len), 1);
	assert_memory_equal(id, "a@b", len);
	assert_int_equal(mime_msgid_next(&pos, v + strlen(v), &id, &len), 1);
	assert_int_equal(len, 3);
	assert_memory_equal(id, "c@d", len);
	assert_int_equal(mime_msgid_next(&pos, v + strlen(v), &id, &len), 1);
	assert_memory_equal(id, "f", len);
	assert_int_equal(mime_msgid_next(&pos, v + strlen(v), &id, &len), 0);
	assert_int_equal(mime_sort_address(root, "from", 0, s), 0);
	assert_string_equal(str_c(s), "jorg");
	str_clear(s);
	assert_int_equal(mime_sort_address(root, "from", 1, s), 0);
	assert_string_equal(str_c(s), "J\xC3\xB6rg");
	str_clear(s);
	assert_int_equal(mime_sort_address(root, "to", 1, s), 0);
	assert_string_equal(str_c(s), "second@y.example");
	str_clear(s);
	assert_int_equal(mime_sort_address(root, "bcc", 0, s), 0);
	assert_string_equal(str_c(s), "");
	str_free(&s);
	mime_part_free(&root);
}

static void test_address_parser(void **state)
{
	static const char v[] = "(c) Mary (x) <mary@x.test> (after), "
				"\"Quoted\\\\Name\" <\"a b\"@[1.2.3.4]>, ,"
				" <>, junk> @ , last@host";
	struct mime_address *list = mime_address_parse(v, strlen(v), 100);
	struct mime_address *a = list;

	assert_non_null(a);
	assert_string_equal(a->name, "Mary");
	assert_string_equal(a->mailbox, "mary");
	a = a->next;
	assert_string_equal(a->name, "Quoted\\Name");
	assert_string_equal(a->mailbox, "a b");
	assert_string_equal(a->domain, "[1.2.3.4]");
	a = a->next;
	assert_null(a->name);
	assert_string_equal(a->mailbox, "");
	assert_string_equal(a->domain, "");
	for (a = a->next; a->next != NULL; a = a->next)
		;
	assert_string_equal(a->mailbox, "last");
	assert_string_equal(a->domain, "host");
	mime_address_free(&list);
	assert_null(list);
	/* the limit holds, and a group that was started is still closed */
	list = mime_address_parse("g: a@b, c@d, e@f;", 17, 2);
	assert_int_equal(list->kind, MIME_ADDR_GROUP_START);
	assert_int_equal(list->next->next->kind, MIME_ADDR_GROUP_END);
	assert_null(list->next->next->next);
	mime_address_free(&list);
	assert_null(mime_address_parse("", 0, 10));
	assert_null(mime_address_parse(" , ;", 4, 10));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple),
		cmocka_unit_test(test_nested),
		cmocka_unit_test(test_groups_and_addresses),
		cmocka_unit_test(test_encoded_words),
		cmocka_unit_test(test_rfc2231),
		cmocka_unit_test(test_imap_strings),
		cmocka_unit_test(test_malformed_multipart),
		cmocka_unit_test(test_line_ends),
		cmocka_unit_test(test_degenerate),
		cmocka_unit_test(test_digest_default),
		cmocka_unit_test(test_long_header_line),
		cmocka_unit_test(test_depth_limit),
		cmocka_unit_test(test_parts_and_memory_limits),
		cmocka_unit_test(test_settings_from_cfg),
		cmocka_unit_test(test_dates),
		cmocka_unit_test(test_subject_base),
		cmocka_unit_test(test_msgids_and_sort_addresses),
		cmocka_unit_test(test_address_parser),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
