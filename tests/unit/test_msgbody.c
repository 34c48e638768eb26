/* test_msgbody.c: FETCH section data of imapd/msgbody: BODY[] sections
 * of every kind, BINARY and BINARY.SIZE, partials, NIL for missing parts,
 * transfer decoding, the FETCH value syntax and opening files.  The
 * expected bytes were worked out by hand from RFC 3501 6.4.5 and
 * RFC 3516; every prefix of the test messages is also fetched to check
 * that truncated input stays inside its bounds. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "compat.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "msgbody.h"
#include "xalloc.h"
#include "str.h"

#define L(s) s, sizeof(s) - 1

/* multipart/mixed: QP text, base64 attachment, message/rfc822 holding a
 * multipart/alternative, a part in an unknown encoding. */
static const char m_mixed[] =
	"Return-Path: <alice@example.com>\r\n"
	"From: Alice <alice@example.com>\r\n"
	"To: Bob <bob@example.net>\r\n"
	"Subject: =?ISO-8859-1?Q?Caf=E9?= report\r\n"
	"X-Folded: first\r\n"
	" second\r\n"
	"Date: Mon, 2 Mar 2026 10:00:00 +0100\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=\"outer\"\r\n"
	"\r\n"
	"preamble\r\n"
	"--outer\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"Content-Transfer-Encoding: Quoted-Printable\r\n"
	"\r\n"
	"Hello w=C3=B6rld, this is soft=\r\n"
	" broken.  \r\n"
	"Tail =3d end\r\n"
	"--outer\r\n"
	"Content-Type: application/octet-stream; name=\"a.bin\"\r\n"
	"Content-Transfer-Encoding: base64 (binary data)\r\n"
	"\r\n"
	"AAEC\r\n"
	"AwQ=\r\n"
	"--outer\r\n"
	"Content-Type: message/rfc822\r\n"
	"\r\n"
	"From: Carol <carol@example.org>\r\n"
	"Subject: inner\r\n"
	"Content-Type: multipart/alternative; boundary=\"inner\"\r\n"
	"\r\n"
	"--inner\r\n"
	"Content-Type: text/plain\r\n"
	"\r\n"
	"plain inner\r\n"
	"--inner\r\n"
	"Content-Type: text/html\r\n"
	"\r\n"
	"<p>html inner</p>\r\n"
	"--inner--\r\n"
	"\r\n"
	"--outer\r\n"
	"Content-Type: text/plain\r\n"
	"Content-Transfer-Encoding: x-uuencode\r\n"
	"\r\n"
	"begin 644 x\r\n"
	"--outer--\r\n"
	"epilogue\r\n";

static const char m_mixed_header[] =
	"Return-Path: <alice@example.com>\r\n"
	"From: Alice <alice@example.com>\r\n"
	"To: Bob <bob@example.net>\r\n"
	"Subject: =?ISO-8859-1?Q?Caf=E9?= report\r\n"
	"X-Folded: first\r\n"
	" second\r\n"
	"Date: Mon, 2 Mar 2026 10:00:00 +0100\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=\"outer\"\r\n"
	"\r\n";

static const char m_inner[] =
	"From: Carol <carol@example.org>\r\n"
	"Subject: inner\r\n"
	"Content-Type: multipart/alternative; boundary=\"inner\"\r\n"
	"\r\n"
	"--inner\r\n"
	"Content-Type: text/plain\r\n"
	"\r\n"
	"plain inner\r\n"
	"--inner\r\n"
	"Content-Type: text/html\r\n"
	"\r\n"
	"<p>html inner</p>\r\n"
	"--inner--\r\n";

/* A single-part message, LF line ends only. */
static const char m_lf[] =
	"From: dave@example.com\n"
	"Subject: lf only\n"
	"Content-Type: text/plain; charset=us-ascii\n"
	"\n"
	"line one\n"
	"line two\n";

/* Nested multipart, missing close boundary, NUL bytes in a text part. */
static const char m_nested[] =
	"From: erin@example.com\r\n"
	"Content-Type: multipart/mixed; boundary=b1\r\n"
	"\r\n"
	"--b1\r\n"
	"Content-Type: multipart/alternative; boundary=b2\r\n"
	"\r\n"
	"--b2\r\n"
	"Content-Type: text/plain\r\n"
	"\r\n"
	"alt one\r\n"
	"--b2\r\n"
	"Content-Type: text/plain\r\n"
	"Content-Transfer-Encoding: 8bit\r\n"
	"\r\n"
	"nul\0here\r\n"
	"--b2--\r\n"
	"--b1\r\n"
	"Content-Type: message/rfc822\r\n"
	"\r\n"
	"Subject: single\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"aGk=\r\n"
	"--b1\r\n"
	"Content-Type: text/plain\r\n"
	"\r\n"
	"no close boundary\r\n";

struct fx {
	struct msgbody *msg;
	struct msgbody_result res;
	struct str *out;
};

/* Builds a section from "1.2.HEADER.FIELDS" style text. */
static struct imap_fetch_section sec_make(enum imap_fetch_kind kind,
					  const char *s)
{
	struct imap_fetch_section sec;

	memset(&sec, 0, sizeof(sec));
	sec.kind = kind;
	while (*s >= '0' && *s <= '9') {
		char *end;

		sec.parts[sec.nparts++] = (uint32_t)strtoul(s, &end, 10);
		s = *end == '.' ? end + 1 : end;
	}
	if (strcmp(s, "") == 0)
		sec.spec = IMAP_SECTION_ALL;
	else if (strcmp(s, "HEADER") == 0)
		sec.spec = IMAP_SECTION_HEADER;
	else if (strcmp(s, "HEADER.FIELDS") == 0)
		sec.spec = IMAP_SECTION_HEADER_FIELDS;
	else if (strcmp(s, "HEADER.FIELDS.NOT") == 0)
		sec.spec = IMAP_SECTION_HEADER_FIELDS_NOT;
	else if (strcmp(s, "TEXT") == 0)
		sec.spec = IMAP_SECTION_TEXT;
	else if (strcmp(s, "MIME") == 0)
		sec.spec = IMAP_SECTION_MIME;
	else
		fail_msg("bad section %s", s);
	return sec;
}

static int fetch(struct msgbody *msg, struct msgbody_result *res,
		 enum imap_fetch_kind kind, const char *section)
{
	struct imap_fetch_section sec = sec_make(kind, section);
	const char *error = NULL;
	int ret;

	msgbody_result_free(res);
	ret = msgbody_fetch(msg, &sec, res, &error);
	if (ret != MSGBODY_OK)
		assert_non_null(error);
	return ret;
}

static void expect(struct msgbody *msg, enum imap_fetch_kind kind,
		   const char *section, const char *want, size_t want_len)
{
	struct msgbody_result res;

	memset(&res, 0, sizeof(res));
	assert_int_equal(fetch(msg, &res, kind, section), MSGBODY_OK);
	if (res.size != want_len || memcmp(res.data, want, want_len) != 0)
		fail_msg("section [%s]: got %d bytes \"%.*s\", want \"%.*s\"",
			 section, (int)res.size, (int)res.size, res.data,
			 (int)want_len, want);
	assert_int_equal(res.full_size, want_len);
	msgbody_result_free(&res);
}

static void expect_status(struct msgbody *msg, enum imap_fetch_kind kind,
			  const char *section, int status)
{
	struct msgbody_result res;

	memset(&res, 0, sizeof(res));
	assert_int_equal(fetch(msg, &res, kind, section), status);
	if (status == MSGBODY_ENOPART)
		assert_true(res.missing);
	else
		assert_false(res.missing);
	msgbody_result_free(&res);
}

static void expect_fields(struct msgbody *msg, const char *section,
			  const char *const *fields, size_t n,
			  const char *want)
{
	struct imap_fetch_section sec = sec_make(IMAP_FETCH_KIND_BODY,
						 section);
	struct msgbody_result res;
	const char *error;

	sec.fields = fields;
	sec.nfields = n;
	assert_int_equal(msgbody_fetch(msg, &sec, &res, &error), MSGBODY_OK);
	assert_non_null(res.buf);
	if (res.size != strlen(want) || memcmp(res.data, want, res.size) != 0)
		fail_msg("[%s]: got \"%.*s\"", section, (int)res.size,
			 res.data);
	msgbody_result_free(&res);
}

static void test_body_sections(void **state)
{
	struct msgbody *msg = msgbody_from_memory(L(m_mixed), NULL);
	const unsigned char *base = msgbody_data(msg);
	struct msgbody_result res;

	memset(&res, 0, sizeof(res));
	expect(msg, IMAP_FETCH_KIND_BODY, "", L(m_mixed));
	expect(msg, IMAP_FETCH_KIND_BODY, "HEADER", L(m_mixed_header));
	expect(msg, IMAP_FETCH_KIND_BODY, "TEXT",
	       m_mixed + sizeof(m_mixed_header) - 1,
	       sizeof(m_mixed) - sizeof(m_mixed_header));
	expect(msg, IMAP_FETCH_KIND_BODY, "1",
	       L("Hello w=C3=B6rld, this is soft=\r\n broken.  \r\n"
		 "Tail =3d end"));
	expect(msg, IMAP_FETCH_KIND_BODY, "1.MIME",
	       L("Content-Type: text/plain; charset=utf-8\r\n"
		 "Content-Transfer-Encoding: Quoted-Printable\r\n\r\n"));
	expect(msg, IMAP_FETCH_KIND_BODY, "2", L("AAEC\r\nAwQ="));
	expect(msg, IMAP_FETCH_KIND_BODY, "3", L(m_inner));
	expect(msg, IMAP_FETCH_KIND_BODY, "3.MIME",
	       L("Content-Type: message/rfc822\r\n\r\n"));
	expect(msg, IMAP_FETCH_KIND_BODY, "3.HEADER",
	       L("From: Carol <carol@example.org>\r\n"
		 "Subject: inner\r\n"
		 "Content-Type: multipart/alternative; boundary=\"inner\"\r\n"
		 "\r\n"));
	expect(msg, IMAP_FETCH_KIND_BODY, "3.TEXT",
	       L("--inner\r\nContent-Type: text/plain\r\n\r\nplain inner\r\n"
		 "--inner\r\nContent-Type: text/html\r\n\r\n"
		 "<p>html inner</p>\r\n--inner--\r\n"));
	expect(msg, IMAP_FETCH_KIND_BODY, "3.1", L("plain inner"));
	expect(msg, IMAP_FETCH_KIND_BODY, "3.2", L("<p>html inner</p>"));
	expect(msg, IMAP_FETCH_KIND_BODY, "3.2.MIME",
	       L("Content-Type: text/html\r\n\r\n"));
	expect(msg, IMAP_FETCH_KIND_BODY, "4", L("begin 644 x"));

	/* plain ranges point into the message, no copy */
	assert_int_equal(fetch(msg, &res, IMAP_FETCH_KIND_BODY, "3.1"),
			 MSGBODY_OK);
	assert_null(res.buf);
	assert_true(res.data > base && res.data < base + sizeof(m_mixed));
	assert_false(res.has_nul);
	msgbody_result_free(&res);
	msgbody_close(&msg);
	assert_null(msg);
}

static void test_missing_parts(void **state)
{
	struct msgbody *msg = msgbody_from_memory(L(m_mixed), NULL);

	expect_status(msg, IMAP_FETCH_KIND_BODY, "5", MSGBODY_ENOPART);
	expect_status(msg, IMAP_FETCH_KIND_BODY, "0", MSGBODY_ENOPART);
	expect_status(msg, IMAP_FETCH_KIND_BODY, "1.1", MSGBODY_ENOPART);
	expect_status(msg, IMAP_FETCH_KIND_BODY, "2.HEADER", MSGBODY_ENOPART);
	expect_status(msg, IMAP_FETCH_KIND_BODY, "1.TEXT", MSGBODY_ENOPART);
	expect_status(msg, IMAP_FETCH_KIND_BODY, "3.3", MSGBODY_ENOPART);
	expect_status(msg, IMAP_FETCH_KIND_BODY, "3.1.1", MSGBODY_ENOPART);
	expect_status(msg, IMAP_FETCH_KIND_BINARY, "9", MSGBODY_ENOPART);
	expect_status(msg, IMAP_FETCH_KIND_BINARY_SIZE, "9", MSGBODY_ENOPART);
	msgbody_close(&msg);
}

static void test_single_part(void **state)
{
	struct msgbody *msg = msgbody_from_memory(L(m_lf), NULL);

	expect(msg, IMAP_FETCH_KIND_BODY, "1", L("line one\nline two\n"));
	expect(msg, IMAP_FETCH_KIND_BODY, "TEXT", L("line one\nline two\n"));
	expect(msg, IMAP_FETCH_KIND_BODY, "HEADER",
	       L("From: dave@example.com\nSubject: lf only\n"
		 "Content-Type: text/plain; charset=us-ascii\n\n"));
	expect(msg, IMAP_FETCH_KIND_BINARY, "1", L("line one\nline two\n"));
	expect_status(msg, IMAP_FETCH_KIND_BODY, "2", MSGBODY_ENOPART);
	expect_status(msg, IMAP_FETCH_KIND_BODY, "1.1", MSGBODY_ENOPART);
	{
		static const char *const f[] = { "subject" };

		/* an LF-only header gets an LF blank line */
		expect_fields(msg, "HEADER.FIELDS", f, 1,
			      "Subject: lf only\n\n");
	}
	msgbody_close(&msg);
}

static void test_nested(void **state)
{
	struct msgbody *msg = msgbody_from_memory(L(m_nested), NULL);
	struct msgbody_result res;
	struct str *out = str_new(0, 1024);

	memset(&res, 0, sizeof(res));
	expect(msg, IMAP_FETCH_KIND_BODY, "1.1", L("alt one"));
	expect(msg, IMAP_FETCH_KIND_BODY, "1.2", L("nul\0here"));
	expect(msg, IMAP_FETCH_KIND_BODY, "1.2.MIME",
	       L("Content-Type: text/plain\r\n"
		 "Content-Transfer-Encoding: 8bit\r\n\r\n"));
	/* part 2 holds a single-part message: 2.1 is its body */
	expect(msg, IMAP_FETCH_KIND_BODY, "2.1", L("aGk="));
	expect(msg, IMAP_FETCH_KIND_BINARY, "2.1", L("hi"));
	expect(msg, IMAP_FETCH_KIND_BODY, "2.TEXT", L("aGk="));
	expect(msg, IMAP_FETCH_KIND_BODY, "2.HEADER",
	       L("Subject: single\r\nContent-Transfer-Encoding: base64\r\n"
		 "\r\n"));
	expect_status(msg, IMAP_FETCH_KIND_BODY, "2.2", MSGBODY_ENOPART);
	/* missing close boundary: the last part runs to the end */
	expect(msg, IMAP_FETCH_KIND_BODY, "3", L("no close boundary\r\n"));
	/* BINARY of a multipart is refused */
	expect_status(msg, IMAP_FETCH_KIND_BINARY, "1",
		      MSGBODY_EBADSECTION);
	expect_status(msg, IMAP_FETCH_KIND_BINARY_SIZE, "1",
		      MSGBODY_EBADSECTION);
	expect(msg, IMAP_FETCH_KIND_BINARY, "", L(m_nested));

	/* NUL bytes: literal8 only for BINARY */
	assert_int_equal(fetch(msg, &res, IMAP_FETCH_KIND_BODY, "1.2"),
			 MSGBODY_OK);
	assert_true(res.has_nul);
	assert_int_equal(msgbody_write_value(&res, false, out), 0);
	assert_int_equal(str_len(out), 5 + 8);
	assert_memory_equal(str_c(out), "{8}\r\nnul\0here", 13);
	str_clear(out);
	assert_int_equal(msgbody_write_value(&res, true, out), 0);
	assert_memory_equal(str_c(out), "~{8}\r\nnul\0here", 14);
	str_clear(out);
	assert_int_equal(msgbody_literal_prefix(&res, true, out), 0);
	assert_string_equal(str_c(out), "~{8}\r\n");
	str_clear(out);
	assert_int_equal(fetch(msg, &res, IMAP_FETCH_KIND_BODY, "1.1"),
			 MSGBODY_OK);
	assert_false(res.has_nul);
	assert_int_equal(msgbody_write_value(&res, true, out), 0);
	assert_string_equal(str_c(out), "{7}\r\nalt one");
	str_clear(out);
	assert_int_equal(fetch(msg, &res, IMAP_FETCH_KIND_BODY, "7"),
			 MSGBODY_ENOPART);
	assert_int_equal(msgbody_write_value(&res, false, out), 0);
	assert_string_equal(str_c(out), "NIL");
	msgbody_result_free(&res);
	str_free(&out);
	msgbody_close(&msg);
}

static void test_deep_rfc822(void **state)
{
	static const char m[] =
		"Subject: level 0\r\n"
		"Content-Type: message/rfc822\r\n"
		"\r\n"
		"Subject: level 1\r\n"
		"Content-Type: message/rfc822\r\n"
		"\r\n"
		"Subject: level 2\r\n"
		"Content-Type: multipart/mixed; boundary=x\r\n"
		"\r\n"
		"--x\r\n"
		"\r\n"
		"deep text\r\n"
		"--x--\r\n";
	struct msgbody *msg = msgbody_from_memory(L(m), NULL);

	/* the root is a message/rfc822: part 1 is the whole inner message */
	expect(msg, IMAP_FETCH_KIND_BODY, "1.HEADER",
	       L("Subject: level 1\r\nContent-Type: message/rfc822\r\n\r\n"));
	expect(msg, IMAP_FETCH_KIND_BODY, "1.1.HEADER",
	       L("Subject: level 2\r\n"
		 "Content-Type: multipart/mixed; boundary=x\r\n\r\n"));
	expect(msg, IMAP_FETCH_KIND_BODY, "1.1.1", L("deep text"));
	expect(msg, IMAP_FETCH_KIND_BODY, "1.1.1.MIME", L("\r\n"));
	expect_status(msg, IMAP_FETCH_KIND_BODY, "1.1.2", MSGBODY_ENOPART);
	msgbody_close(&msg);
}

static void test_header_fields(void **state)
{
	static const char *const subj[] = { "X-FOLDED", "subject" };
	static const char *const not[] = { "from", "TO", "Subject", "date",
					   "x-folded", "return-path",
					   "MIME-Version" };
	static const char *const none[] = { "X-Nothing" };
	static const char *const prefix[] = { "Subj", "Subject2" };
	static const char *const inner[] = { "subject" };
	struct msgbody *msg = msgbody_from_memory(L(m_mixed), NULL);

	expect_fields(msg, "HEADER.FIELDS", subj, 2,
		      "Subject: =?ISO-8859-1?Q?Caf=E9?= report\r\n"
		      "X-Folded: first\r\n second\r\n\r\n");
	expect_fields(msg, "HEADER.FIELDS.NOT", not, TERN_NELEM(not),
		      "Content-Type: multipart/mixed; boundary=\"outer\"\r\n"
		      "\r\n");
	expect_fields(msg, "HEADER.FIELDS", none, 1, "\r\n");
	expect_fields(msg, "HEADER.FIELDS", prefix, 2, "\r\n");
	expect_fields(msg, "3.HEADER.FIELDS", inner, 1,
		      "Subject: inner\r\n\r\n");
	expect_fields(msg, "3.HEADER.FIELDS.NOT", inner, 1,
		      "From: Carol <carol@example.org>\r\n"
		      "Content-Type: multipart/alternative; "
		      "boundary=\"inner\"\r\n\r\n");
	msgbody_close(&msg);
}

static void test_header_fields_odd(void **state)
{
	/* space before the colon, a line without colon, a header without a
	 * blank line and without a final line end */
	static const char m[] =
		"Subject : spaced\r\n"
		"garbage line\r\n"
		"X-A: 1\r\n"
		"x-a: 2";
	static const char *const f[] = { "subject", "X-a" };
	struct msgbody *msg = msgbody_from_memory(L(m), NULL);

	expect_fields(msg, "HEADER.FIELDS", f, 2,
		      "Subject : spaced\r\nX-A: 1\r\nx-a: 2\r\n\r\n");
	expect_fields(msg, "HEADER.FIELDS.NOT", f, 2, "\r\n");
	msgbody_close(&msg);
}

static void test_binary(void **state)
{
	struct msgbody *msg = msgbody_from_memory(L(m_mixed), NULL);
	struct msgbody_result res;
	const char *error;

	memset(&res, 0, sizeof(res));
	expect(msg, IMAP_FETCH_KIND_BINARY, "1",
	       L("Hello w\xc3\xb6rld, this is soft broken.\r\nTail = end"));
	expect(msg, IMAP_FETCH_KIND_BINARY, "2", L("\0\1\2\3\4"));
	expect(msg, IMAP_FETCH_KIND_BINARY, "3", L(m_inner));
	expect(msg, IMAP_FETCH_KIND_BINARY, "3.1", L("plain inner"));
	assert_int_equal(fetch(msg, &res, IMAP_FETCH_KIND_BINARY, "2"),
			 MSGBODY_OK);
	assert_true(res.has_nul);
	assert_non_null(res.buf);
	assert_int_equal(fetch(msg, &res, IMAP_FETCH_KIND_BINARY_SIZE, "2"),
			 MSGBODY_OK);
	assert_int_equal(res.size, 5);
	assert_null(res.data);
	assert_int_equal(fetch(msg, &res, IMAP_FETCH_KIND_BINARY_SIZE, "1"),
			 MSGBODY_OK);
	assert_int_equal(res.size, 46);
	assert_int_equal(fetch(msg, &res, IMAP_FETCH_KIND_BINARY_SIZE, "3.2"),
			 MSGBODY_OK);
	assert_int_equal(res.size, 17);
	msgbody_result_free(&res);

	expect_status(msg, IMAP_FETCH_KIND_BINARY, "4", MSGBODY_EUNKNOWN_CTE);
	expect_status(msg, IMAP_FETCH_KIND_BINARY_SIZE, "4",
		      MSGBODY_EUNKNOWN_CTE);
	expect_status(msg, IMAP_FETCH_KIND_BINARY, "HEADER",
		      MSGBODY_EBADSECTION);
	expect_status(msg, IMAP_FETCH_KIND_BINARY, "1.MIME",
		      MSGBODY_EBADSECTION);
	expect_status(msg, IMAP_FETCH_KIND_BINARY, "3.TEXT",
		      MSGBODY_EBADSECTION);
	{
		struct imap_fetch_section sec = sec_make(IMAP_FETCH_KIND_BINARY,
							 "4");

		assert_int_equal(msgbody_fetch(msg, &sec, &res, &error),
				 MSGBODY_EUNKNOWN_CTE);
		assert_string_equal(error,
				    "unknown Content-Transfer-Encoding");
	}
	msgbody_close(&msg);
}

static void expect_partial(struct msgbody *msg, enum imap_fetch_kind kind,
			   const char *section, uint64_t off, uint64_t len,
			   const char *want, size_t want_len)
{
	struct imap_fetch_section sec = sec_make(kind, section);
	struct msgbody_result res;
	const char *error;

	sec.partial = true;
	sec.offset = off;
	sec.length = len;
	assert_int_equal(msgbody_fetch(msg, &sec, &res, &error), MSGBODY_OK);
	assert_int_equal(res.size, want_len);
	if (want_len > 0)
		assert_memory_equal(res.data, want, want_len);
	msgbody_result_free(&res);
}

static void test_partial(void **state)
{
	struct msgbody *msg = msgbody_from_memory(L(m_mixed), NULL);
	static const char *const f[] = { "to" };
	struct imap_fetch_section sec;
	struct msgbody_result res;
	const char *error;

	expect_partial(msg, IMAP_FETCH_KIND_BODY, "", 0, 11,
		       L("Return-Path"));
	expect_partial(msg, IMAP_FETCH_KIND_BODY, "1", 6, 5, L("w=C3="));
	expect_partial(msg, IMAP_FETCH_KIND_BINARY, "1", 6, 3,
		       L("w\xc3\xb6"));
	expect_partial(msg, IMAP_FETCH_KIND_BINARY, "2", 4, 100, L("\4"));
	expect_partial(msg, IMAP_FETCH_KIND_BODY, "3.1", 6, 1000, L("inner"));
	expect_partial(msg, IMAP_FETCH_KIND_BODY, "3.1", 11, 10, L(""));
	expect_partial(msg, IMAP_FETCH_KIND_BODY, "3.1", 12, 10, L(""));
	expect_partial(msg, IMAP_FETCH_KIND_BODY, "3.1", UINT64_MAX,
		       UINT64_MAX, L(""));
	expect_partial(msg, IMAP_FETCH_KIND_BODY, "3.1", 0, 0, L(""));

	/* partial of a built result; the partial keeps the full size */
	sec = sec_make(IMAP_FETCH_KIND_BODY, "HEADER.FIELDS");
	sec.fields = f;
	sec.nfields = 1;
	sec.partial = true;
	sec.offset = 4;
	sec.length = 3;
	assert_int_equal(msgbody_fetch(msg, &sec, &res, &error), MSGBODY_OK);
	assert_int_equal(res.size, 3);
	assert_memory_equal(res.data, "Bob", 3);
	assert_int_equal(res.full_size, strlen("To: Bob <bob@example.net>\r\n"
					       "\r\n"));
	msgbody_result_free(&res);

	/* BINARY.SIZE ignores the partial */
	sec = sec_make(IMAP_FETCH_KIND_BINARY_SIZE, "2");
	sec.partial = true;
	sec.offset = 1;
	sec.length = 1;
	assert_int_equal(msgbody_fetch(msg, &sec, &res, &error), MSGBODY_OK);
	assert_int_equal(res.size, 5);
	msgbody_result_free(&res);
	msgbody_close(&msg);
}

static void expect_decode(enum msgbody_cte cte, const char *in,
			  const char *want, size_t want_len)
{
	struct str *out = str_new(0, strlen(in) > 0 ? strlen(in) : 1);

	assert_int_equal(msgbody_cte_decode(cte, in, strlen(in), out), 0);
	if (str_len(out) != want_len ||
	    memcmp(str_c(out), want, want_len) != 0)
		fail_msg("decode \"%s\": got \"%s\"", in, str_c(out));
	str_free(&out);
}

static void test_decoders(void **state)
{
	struct str *small = str_new(0, 2);

	expect_decode(MSGBODY_CTE_BASE64, "aGVsbG8=", L("hello"));
	expect_decode(MSGBODY_CTE_BASE64, "aGVs\r\nbG8", L("hello"));
	expect_decode(MSGBODY_CTE_BASE64, " a G V s b G 8 = junk", L("hello"));
	expect_decode(MSGBODY_CTE_BASE64, "aGVsbA==\r\n", L("hell"));
	expect_decode(MSGBODY_CTE_BASE64, "a!G@V#s", L("hel"));
	expect_decode(MSGBODY_CTE_BASE64, "YQ", L("a"));
	expect_decode(MSGBODY_CTE_BASE64, "Y", L(""));
	expect_decode(MSGBODY_CTE_BASE64, "", L(""));
	expect_decode(MSGBODY_CTE_BASE64, "////", L("\xff\xff\xff"));
	expect_decode(MSGBODY_CTE_BASE64, "++++", L("\xfb\xef\xbe"));

	expect_decode(MSGBODY_CTE_QP, "a=3Db", L("a=b"));
	expect_decode(MSGBODY_CTE_QP, "a=3db=C3=a9", L("a=b\xc3\xa9"));
	expect_decode(MSGBODY_CTE_QP, "soft=\r\nbreak", L("softbreak"));
	expect_decode(MSGBODY_CTE_QP, "soft=\nbreak\n", L("softbreak\n"));
	expect_decode(MSGBODY_CTE_QP, "soft=  \r\nbreak", L("softbreak"));
	expect_decode(MSGBODY_CTE_QP, "trail  \t\r\nx", L("trail\r\nx"));
	expect_decode(MSGBODY_CTE_QP, "trail  ", L("trail"));
	expect_decode(MSGBODY_CTE_QP, "bad =ZZ =4", L("bad =ZZ =4"));
	expect_decode(MSGBODY_CTE_QP, "end=", L("end"));
	expect_decode(MSGBODY_CTE_QP, "=", L(""));
	expect_decode(MSGBODY_CTE_QP, "a\r\n\r\nb", L("a\r\n\r\nb"));
	expect_decode(MSGBODY_CTE_QP, "bare\rcr", L("bare\rcr"));
	expect_decode(MSGBODY_CTE_QP, "=00", L("\0"));
	expect_decode(MSGBODY_CTE_IDENTITY, "as =3D is", L("as =3D is"));

	/* a full output fails and leaves out as it was */
	assert_int_equal(str_append_c(small, "x"), 0);
	assert_int_equal(msgbody_cte_decode(MSGBODY_CTE_BASE64, "aGVsbG8=", 8,
					    small), -1);
	assert_int_equal(errno, ENOBUFS);
	assert_string_equal(str_c(small), "x");
	str_free(&small);
}

static void test_cte_names(void **state)
{
	static const struct {
		const char *hdr;
		enum msgbody_cte cte;
	} cases[] = {
		{ "", MSGBODY_CTE_IDENTITY },
		{ "Content-Transfer-Encoding: 7bit\r\n", MSGBODY_CTE_IDENTITY },
		{ "Content-Transfer-Encoding: 8BIT\r\n", MSGBODY_CTE_IDENTITY },
		{ "Content-Transfer-Encoding: binary\r\n",
		  MSGBODY_CTE_IDENTITY },
		{ "Content-Transfer-Encoding:  BASE64 \r\n",
		  MSGBODY_CTE_BASE64 },
		{ "Content-Transfer-Encoding: base64(x)\r\n",
		  MSGBODY_CTE_BASE64 },
		{ "Content-Transfer-Encoding: quoted-printable\r\n",
		  MSGBODY_CTE_QP },
		{ "Content-Transfer-Encoding: (empty)\r\n",
		  MSGBODY_CTE_IDENTITY },
		{ "Content-Transfer-Encoding: base64x\r\n",
		  MSGBODY_CTE_UNKNOWN },
		{ "Content-Transfer-Encoding: x-uue\r\n", MSGBODY_CTE_UNKNOWN },
	};
	struct str *m = str_new(0, 1024);

	for (size_t i = 0; i < TERN_NELEM(cases); i++) {
		struct msgbody *msg;

		str_clear(m);
		assert_int_equal(str_printf(m, "%s\r\nbody", cases[i].hdr), 0);
		msg = msgbody_from_memory(str_c(m), str_len(m), NULL);
		assert_int_equal(msgbody_part_cte(msgbody_tree(msg)),
				 cases[i].cte);
		msgbody_close(&msg);
	}
	str_free(&m);
}

/* Every prefix of the messages: whatever is fetched lies inside the
 * message or in the result's own buffer, decoded sizes agree with
 * BINARY.SIZE, and nothing crashes (ASan checks the reads). */
static void check_prefixes(const char *m, size_t len)
{
	static const char *const sections[] = {
		"", "HEADER", "TEXT", "1", "1.MIME", "2", "2.1", "3",
		"3.HEADER", "3.TEXT", "3.1", "3.2.MIME", "1.1", "4", "5",
	};
	static const char *const f[] = { "subject", "from" };
	static const enum imap_fetch_kind kinds[] = {
		IMAP_FETCH_KIND_BODY, IMAP_FETCH_KIND_BINARY,
	};

	for (size_t n = 0; n <= len; n++) {
		char *copy = malloc(n > 0 ? n : 1);
		struct msgbody *msg;

		memcpy(copy, m, n);
		msg = msgbody_from_memory(copy, n, NULL);
		for (size_t i = 0; i < TERN_NELEM(sections); i++) {
			for (size_t k = 0; k < TERN_NELEM(kinds); k++) {
				struct imap_fetch_section sec =
					sec_make(kinds[k], sections[i]);
				struct msgbody_result res, size;
				const char *error;
				int ret, ret2;

				ret = msgbody_fetch(msg, &sec, &res, &error);
				if (ret == MSGBODY_OK && res.buf == NULL)
					assert_true(res.size == 0 ||
						    ((const char *)res.data >=
							     copy &&
						     (const char *)res.data +
								     res.size <=
							     copy + n));
				sec.kind = IMAP_FETCH_KIND_BINARY_SIZE;
				ret2 = msgbody_fetch(msg, &sec, &size, &error);
				if (kinds[k] == IMAP_FETCH_KIND_BINARY) {
					assert_int_equal(ret, ret2);
					if (ret == MSGBODY_OK)
						assert_int_equal(res.size,
								 size.size);
				}
				msgbody_result_free(&res);
				msgbody_result_free(&size);
			}
		}
		{
			struct imap_fetch_section sec =
				sec_make(IMAP_FETCH_KIND_BODY,
					 "HEADER.FIELDS.NOT");
			struct msgbody_result res;
			const char *error;

			sec.fields = f;
			sec.nfields = 2;
			assert_int_equal(msgbody_fetch(msg, &sec, &res,
						       &error), MSGBODY_OK);
			assert_true(res.size <= n + 4);
			msgbody_result_free(&res);
		}
		msgbody_close(&msg);
		free(copy);
	}
}

static void test_prefixes(void **state)
{
	check_prefixes(L(m_mixed));
	check_prefixes(L(m_nested));
	check_prefixes(L(m_lf));
}

/* ---- files ---- */

static char tmpdir[] = "/tmp/test_msgbody.XXXXXX";

static int setup_dir(void **state)
{
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown_dir(void **state)
{
	static const char *const names[] = { "m1", "empty", "short", "d" };
	struct str *p = str_new(0, 4096);

	for (size_t i = 0; i < TERN_NELEM(names); i++) {
		str_clear(p);
		if (str_printf(p, "%s/%s", tmpdir, names[i]) == 0) {
			(void)unlink(str_c(p));
			(void)rmdir(str_c(p));
		}
	}
	str_free(&p);
	return rmdir(tmpdir);
}

static const char *write_file(const char *name, const void *data, size_t len)
{
	static char path[512];
	int fd;

	assert_true((size_t)snprintf(path, sizeof(path), "%s/%s", tmpdir,
				     name) < sizeof(path));
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
	return path;
}

static void test_open_file(void **state)
{
	struct str *error = str_new(0, 1024);
	struct msgbody *msg;
	const char *path = write_file("m1", L(m_mixed));

	assert_int_equal(msgbody_open(path, sizeof(m_mixed) - 1, NULL, &msg,
				      error), 0);
	assert_int_equal(msgbody_size(msg), sizeof(m_mixed) - 1);
	expect(msg, IMAP_FETCH_KIND_BODY, "3.1", L("plain inner"));
	expect(msg, IMAP_FETCH_KIND_BINARY, "2", L("\0\1\2\3\4"));
	expect(msg, IMAP_FETCH_KIND_BODY, "", L(m_mixed));
	msgbody_close(&msg);
	assert_null(msg);
	msgbody_close(&msg);	/* NULL is fine */

	/* the wrong size either way is an error */
	assert_int_equal(msgbody_open(path, sizeof(m_mixed), NULL, &msg,
				      error), -1);
	assert_null(msg);
	assert_non_null(strstr(str_c(error), "shorter than expected"));
	assert_int_equal(msgbody_open(path, 10, NULL, &msg, error), -1);
	assert_non_null(strstr(str_c(error), "longer than expected"));
	assert_int_equal(msgbody_open(path, 10, NULL, &msg, NULL), -1);
	str_free(&error);
}

static void test_open_edge(void **state)
{
	struct str *error = str_new(0, 1024);
	struct msgbody *msg;
	const char *path = write_file("empty", "", 0);
	struct str *p = str_new(0, 1024);

	/* an empty message maps nothing and has empty sections */
	assert_int_equal(msgbody_open(path, 0, NULL, &msg, error), 0);
	expect(msg, IMAP_FETCH_KIND_BODY, "", L(""));
	expect(msg, IMAP_FETCH_KIND_BODY, "HEADER", L(""));
	expect(msg, IMAP_FETCH_KIND_BODY, "TEXT", L(""));
	expect(msg, IMAP_FETCH_KIND_BODY, "1", L(""));
	expect(msg, IMAP_FETCH_KIND_BINARY, "1", L(""));
	msgbody_close(&msg);
	assert_int_equal(msgbody_open(path, 1, NULL, &msg, error), -1);
	assert_non_null(strstr(str_c(error), "shorter"));

	assert_int_equal(str_printf(p, "%s/missing", tmpdir), 0);
	assert_int_equal(msgbody_open(str_c(p), 5, NULL, &msg, error), -1);
	assert_int_equal(errno, ENOENT);
	assert_non_null(strstr(str_c(error), "open("));

	str_clear(p);
	assert_int_equal(str_printf(p, "%s/d", tmpdir), 0);
	assert_int_equal(mkdir(str_c(p), 0700), 0);
	assert_int_equal(msgbody_open(str_c(p), 0, NULL, &msg, error), -1);
	assert_non_null(strstr(str_c(error), "not a regular file"));

	/* mmap refused: sysfs attribute files are regular but cannot be
	 * mapped (skipped where there is none) */
	if (access("/sys/kernel/mm/transparent_hugepage/enabled", R_OK) ==
	    0) {
		struct stat st;

		assert_int_equal(stat("/sys/kernel/mm/transparent_hugepage/"
				      "enabled", &st), 0);
		if (msgbody_open("/sys/kernel/mm/transparent_hugepage/enabled",
				 (uint64_t)st.st_size, NULL, &msg, error) < 0)
			assert_non_null(strstr(str_c(error), "mmap("));
		else
			msgbody_close(&msg);
	}
	str_free(&p);
	str_free(&error);
}

/* The header-only parse: fields of the top header, whatever the body,
 * the line ends or a missing empty line; the full tree replaces it. */
static void check_header(const char *text, const char *name,
			 const char *value)
{
	/* An exact copy without the NUL: reading past the end is caught. */
	size_t len = strlen(text);
	char *copy = xmalloc(len > 0 ? len : 1);
	struct msgbody *msg;
	const struct mime_header *h;

	memcpy(copy, text, len);
	msg = msgbody_from_memory(copy, len, NULL);

	h = mime_part_header_find(msgbody_header(msg), name);
	if (value == NULL) {
		assert_null(h);
	} else {
		assert_non_null(h);
		assert_int_equal(h->value_len, strlen(value));
		assert_memory_equal(h->value, value, strlen(value));
	}
	(void)msgbody_tree(msg);
	assert_ptr_equal(msgbody_header(msg), msgbody_tree(msg));
	msgbody_close(&msg);
	free(copy);
}

static void test_header_only(void **state)
{
	check_header("Subject: a\r\nFrom: b\r\n\r\nSubject: body\r\n",
		     "subject", "a");
	check_header("Subject: a\nX: y\n\nX: body\n", "x", "y");
	check_header("Subject: no body at all", "Subject", "no body at all");
	check_header("\r\nSubject: in the body\r\n", "Subject", NULL);
	check_header("Content-Type: multipart/mixed; boundary=b\r\n"
		     "Subject: parts\r\n\r\n--b\r\nSubject: inner\r\n"
		     "\r\nx\r\n--b--\r\n", "Subject", "parts");
	check_header("", "Subject", NULL);
	/* The last byte a newline, no empty line: nothing read past it. */
	check_header("Subject: end\n", "Subject", "end");
	check_header("Subject: end\r\nX: y\r\n", "X", "y");
}

static void test_settings(void **state)
{
	/* tight limits: parts past max_parts are not split, lookups still
	 * answer inside the message */
	struct mime_settings set;
	struct msgbody *msg;

	mime_settings_init(&set);
	set.max_parts = 2;
	msg = msgbody_from_memory(L(m_mixed), &set);
	expect(msg, IMAP_FETCH_KIND_BODY, "", L(m_mixed));
	expect_status(msg, IMAP_FETCH_KIND_BODY, "3.1", MSGBODY_ENOPART);
	msgbody_close(&msg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_body_sections),
		cmocka_unit_test(test_missing_parts),
		cmocka_unit_test(test_single_part),
		cmocka_unit_test(test_nested),
		cmocka_unit_test(test_deep_rfc822),
		cmocka_unit_test(test_header_fields),
		cmocka_unit_test(test_header_fields_odd),
		cmocka_unit_test(test_binary),
		cmocka_unit_test(test_partial),
		cmocka_unit_test(test_decoders),
		cmocka_unit_test(test_cte_names),
		cmocka_unit_test(test_prefixes),
		cmocka_unit_test(test_open_file),
		cmocka_unit_test(test_open_edge),
		cmocka_unit_test(test_settings),
		cmocka_unit_test(test_header_only),
	};

	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
