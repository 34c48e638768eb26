/* test_searchmsg.c: SEARCH keys against single messages (imapd/searchmsg):
 * flags, keywords, sets with "*" and "$", sizes, MODSEQ, dates in the
 * server's and the sender's zone, YOUNGER/OLDER, header and body strings
 * (RFC 2047 words, transfer encodings, charsets, case folding), charset
 * conversion of the search strings, BADCHARSET, and that the message is
 * opened only when a key needs it.  Programs come from the real command
 * parser (common/imapsearch.h). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "compat.h"

#include <stdlib.h>

#include "imapparse.h"
#include "imapsearch.h"
#include "msgbody.h"
#include "searchmsg.h"
#include "str.h"

#define L(s) s, sizeof(s) - 1

static const char m_rich[] =
	"From: =?UTF-8?B?SsO8cmdlbiBNw7xsbGVy?= <jm@example.de>\r\n"
	"To: Bob <bob@example.net>\r\n"
	"Cc: carol@example.org\r\n"
	"Subject: =?ISO-8859-1?Q?Caf=E9_cr=E8me?= and\r\n"
	" more\r\n"
	"Date: Tue, 03 Mar 2026 23:30:00 -0500\r\n"
	"X-Priority: 3\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=\"mix\"\r\n"
	"\r\n"
	"--mix\r\n"
	"Content-Type: multipart/alternative; boundary=\"alt\"\r\n"
	"\r\n"
	"--alt\r\n"
	"Content-Type: text/plain; charset=iso-8859-1\r\n"
	"Content-Transfer-Encoding: quoted-printable\r\n"
	"\r\n"
	"Gr=FC=DFe aus K=F6ln, a soft=\r\n"
	"break here.\r\n"
	"--alt\r\n"
	"Content-Type: text/html; charset=utf-8\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"PGI+zpHOks6TINCf0YDQuNCy0LXRgjwvYj4=\r\n"
	"--alt--\r\n"
	"--mix\r\n"
	"Content-Type: application/octet-stream\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"eHggc2VjcmV0d29yZCB4eA==\r\n"
	"--mix\r\n"
	"Content-Type: message/rfc822\r\n"
	"\r\n"
	"Subject: inner\r\n"
	"\r\n"
	"innerneedle text\r\n"
	"--mix--\r\n";

/* LF only, no Date, no MIME header, a NUL byte */
static const char m_plain[] =
	"From: dave@example.com\n"
	"Subject: plain one\n"
	"\n"
	"Just text with a \0 NUL and ONE needle.\n";

struct opener {
	struct msgbody *msg;
	unsigned calls;
	bool fail;
};

static struct msgbody *open_cb(void *context, const char **error_r)
{
	struct opener *o = context;

	o->calls++;
	if (o->fail) {
		*error_r = "blob missing";
		return NULL;
	}
	return o->msg;
}

struct fx {
	struct opener op;
	struct searchmsg_msg m;
	struct searchmsg_env env;
	struct imap_seqset *saved;
};

static struct imap_cmd *parse(const char *in, size_t len)
{
	struct imap_parser *p = imap_parser_new(NULL);
	const char *pos = in, *end = in + len;
	struct imap_cmd *cmd = NULL;
	const struct imap_parse_error *err;
	int r;

	while ((r = imap_parser_feed(p, &pos, end, &cmd, &err)) ==
	       IMAP_PARSE_CONTINUE)
		;
	if (r != IMAP_PARSE_COMMAND)
		fail_msg("no command from %s (%d: %s)", in, r,
			 r < 0 ? err->text : "");
	imap_parser_free(&p);
	return cmd;
}

/* Prepares "a SEARCH <keys>" and matches it against fx's message. */
static int run_n(struct fx *fx, const char *keys, size_t len)
{
	struct str *line = str_new(0, 4096);
	const struct imap_search *search;
	struct searchmsg *prog;
	struct imap_cmd *cmd;
	const char *error = NULL;
	int r;

	assert_int_equal(str_append_c(line, "a SEARCH "), 0);
	assert_int_equal(str_append(line, keys, len), 0);
	assert_int_equal(str_append_c(line, "\r\n"), 0);
	cmd = parse(str_c(line), str_len(line));
	if (imap_cmd_search(cmd, &search, &error) < 0)
		fail_msg("SEARCH %s: %s", keys, error);
	r = searchmsg_prepare(search, &fx->env, &prog, &error);
	if (r == 0) {
		r = searchmsg_match(prog, &fx->m, &error);
		if (r < 0)
			assert_non_null(error);
		searchmsg_free(&prog);
		assert_null(prog);
	} else {
		assert_null(prog);
	}
	imap_cmd_free(&cmd);
	str_free(&line);
	return r;
}

static int run(struct fx *fx, const char *keys)
{
	return run_n(fx, keys, strlen(keys));
}

#define YES(fx, keys) \
	do { if (run(fx, keys) != 1) fail_msg("should match: %s", keys); } \
	while (0)
#define NO(fx, keys) \
	do { if (run(fx, keys) != 0) fail_msg("should not match: %s", keys); } \
	while (0)

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	const char *error;

	if (fx == NULL)
		return -1;
	fx->op.msg = msgbody_from_memory(L(m_rich), NULL);
	fx->m.seq = 5;
	fx->m.uid = 42;
	fx->m.flags = SEARCHMSG_SEEN | SEARCHMSG_FLAGGED;
	fx->m.keywords = "$Forwarded Work  Later";
	fx->m.internal_date = 1772589600;	/* 2026-03-04 02:00:00 UTC */
	fx->m.size = sizeof(m_rich) - 1;
	fx->m.modseq = 1000;
	fx->m.open = open_cb;
	fx->m.open_context = &fx->op;
	fx->env.max_seq = 10;
	fx->env.max_uid = 100;
	fx->env.now = 1772589600 + 3600;
	fx->env.tz_minutes = 60;
	if (imap_seqset_parse(L("7,42,90:95"), &fx->saved, &error) < 0)
		return -1;
	fx->env.saved = fx->saved;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;

	msgbody_close(&fx->op.msg);
	imap_seqset_free(&fx->saved);
	free(fx);
	return 0;
}

static void test_flags_no_open(void **state)
{
	struct fx *fx = *state;

	YES(fx, "ALL");
	YES(fx, "SEEN");
	YES(fx, "FLAGGED");
	NO(fx, "UNSEEN");
	NO(fx, "UNFLAGGED");
	NO(fx, "ANSWERED");
	YES(fx, "UNANSWERED");
	NO(fx, "DELETED");
	YES(fx, "UNDELETED");
	NO(fx, "DRAFT");
	YES(fx, "UNDRAFT");
	/* no \Recent: NEW and RECENT match nothing, OLD everything */
	NO(fx, "NEW");
	NO(fx, "RECENT");
	YES(fx, "OLD");
	fx->m.flags = SEARCHMSG_ANSWERED | SEARCHMSG_DELETED | SEARCHMSG_DRAFT;
	YES(fx, "ANSWERED DELETED DRAFT UNSEEN UNFLAGGED");
	NO(fx, "NEW");
	fx->m.flags = SEARCHMSG_SEEN | SEARCHMSG_FLAGGED;
	YES(fx, "LARGER 100 SMALLER 100000 MODSEQ 1000 UID 42 5");
	assert_int_equal(fx->op.calls, 0);
}

static void test_keywords(void **state)
{
	struct fx *fx = *state;

	YES(fx, "KEYWORD work");
	YES(fx, "KEYWORD WORK");
	YES(fx, "KEYWORD $forwarded");
	YES(fx, "KEYWORD Later");
	NO(fx, "KEYWORD wor");
	NO(fx, "KEYWORD orwarded");
	NO(fx, "KEYWORD Junk");
	NO(fx, "UNKEYWORD Work");
	YES(fx, "UNKEYWORD Junk");
	fx->m.keywords = NULL;
	NO(fx, "KEYWORD work");
	YES(fx, "UNKEYWORD work");
	fx->m.keywords = "";
	NO(fx, "KEYWORD work");
	fx->m.keywords = "$Forwarded Work  Later";
	assert_int_equal(fx->op.calls, 0);
}

static void test_numbers(void **state)
{
	struct fx *fx = *state;
	char buf[64];

	snprintf(buf, sizeof(buf), "LARGER %zu", sizeof(m_rich) - 2);
	YES(fx, buf);
	snprintf(buf, sizeof(buf), "LARGER %zu", sizeof(m_rich) - 1);
	NO(fx, buf);
	snprintf(buf, sizeof(buf), "SMALLER %zu", sizeof(m_rich));
	YES(fx, buf);
	snprintf(buf, sizeof(buf), "SMALLER %zu", sizeof(m_rich) - 1);
	NO(fx, buf);
	YES(fx, "MODSEQ 999");
	YES(fx, "MODSEQ 1000");
	NO(fx, "MODSEQ 1001");
	YES(fx, "MODSEQ \"/flags/\\\\seen\" all 1000");
	/* now = internal + 3600 */
	YES(fx, "YOUNGER 3600");
	YES(fx, "YOUNGER 7200");
	NO(fx, "YOUNGER 3599");
	YES(fx, "OLDER 3599");
	NO(fx, "OLDER 3600");
	assert_int_equal(fx->op.calls, 0);
}

static void test_sets(void **state)
{
	struct fx *fx = *state;

	YES(fx, "5");
	YES(fx, "1:5");
	YES(fx, "5:1");
	YES(fx, "1,3,5,7");
	NO(fx, "1:4,6:*");
	YES(fx, "*:5");
	NO(fx, "*");
	fx->m.seq = 10;
	YES(fx, "*");
	YES(fx, "9:*");
	fx->m.seq = 5;
	YES(fx, "UID 42");
	YES(fx, "UID 40:*");
	NO(fx, "UID *");
	YES(fx, "UID 1:41,42");
	NO(fx, "UID 43:50");
	/* "$" is the saved UID set, for sequence sets too */
	YES(fx, "UID $");
	YES(fx, "$");
	fx->m.uid = 43;
	NO(fx, "UID $");
	NO(fx, "$");
	fx->env.saved = NULL;
	fx->m.uid = 42;
	NO(fx, "UID $");
	fx->env.saved = fx->saved;
	/* an empty mailbox: "*" is nothing */
	fx->env.max_seq = 0;
	NO(fx, "*");
	fx->env.max_seq = 10;
	assert_int_equal(fx->op.calls, 0);
}

static void test_boolean(void **state)
{
	struct fx *fx = *state;

	YES(fx, "OR SEEN DELETED");
	YES(fx, "OR DELETED SEEN");
	NO(fx, "OR DELETED DRAFT");
	YES(fx, "NOT DELETED");
	NO(fx, "NOT SEEN");
	NO(fx, "NOT (SEEN FLAGGED)");
	YES(fx, "NOT (SEEN DELETED)");
	YES(fx, "(SEEN (FLAGGED (UID 42)))");
	NO(fx, "(SEEN (FLAGGED (UID 43)))");
	NO(fx, "OR (DELETED SEEN) (NOT OR SEEN FLAGGED)");
	YES(fx, "OR (DELETED SEEN) (NOT OR DELETED DRAFT)");
	YES(fx, "NOT NOT SEEN");
	YES(fx, "OR NOT SEEN OR DRAFT NOT DELETED");
	NO(fx, "SEEN NOT FLAGGED");
	assert_int_equal(fx->op.calls, 0);
}

static void test_dates(void **state)
{
	struct fx *fx = *state;

	/* internal 2026-03-04 02:00 UTC: 03:00 on Mar 4 at +0100 */
	YES(fx, "ON 4-Mar-2026");
	NO(fx, "ON 3-Mar-2026");
	YES(fx, "SINCE 4-Mar-2026");
	NO(fx, "SINCE 5-Mar-2026");
	YES(fx, "BEFORE 5-Mar-2026");
	NO(fx, "BEFORE 4-Mar-2026");
	YES(fx, "SINCE \"1-Jan-2026\" BEFORE 1-Jan-2027");
	/* at -0500 it is 21:00 on Mar 3 */
	fx->env.tz_minutes = -300;
	YES(fx, "ON 3-Mar-2026");
	NO(fx, "ON 4-Mar-2026");
	YES(fx, "BEFORE 4-Mar-2026");
	fx->env.tz_minutes = 60;
	assert_int_equal(fx->op.calls, 0);

	/* Date: Tue, 03 Mar 2026 23:30 -0500 is Mar 3 where it was written
	 * (Mar 4 in UTC) */
	YES(fx, "SENTON 3-Mar-2026");
	NO(fx, "SENTON 4-Mar-2026");
	YES(fx, "SENTBEFORE 4-Mar-2026");
	NO(fx, "SENTBEFORE 3-Mar-2026");
	YES(fx, "SENTSINCE 3-Mar-2026");
	NO(fx, "SENTSINCE 4-Mar-2026");
	assert_true(fx->op.calls > 0);
}

static void test_sent_fallback(void **state)
{
	struct fx *fx = *state;
	struct msgbody *rich = fx->op.msg;

	/* no Date: field: the internal date in the server's zone */
	fx->op.msg = msgbody_from_memory(L(m_plain), NULL);
	YES(fx, "SENTON 4-Mar-2026");
	NO(fx, "SENTON 3-Mar-2026");
	YES(fx, "BODY needle");
	YES(fx, "BODY \"one NEEDLE\"");
	YES(fx, "SUBJECT PLAIN");
	NO(fx, "BODY plain");
	msgbody_close(&fx->op.msg);
	fx->op.msg = rich;
}

static void test_headers(void **state)
{
	struct fx *fx = *state;

	YES(fx, "SUBJECT caf");
	YES(fx, "SUBJECT \"CAF\xc3\x89 CR\xc3\x88ME\"");	/* CAFÉ CRÈME */
	YES(fx, "CHARSET UTF-8 SUBJECT \"caf\xc3\xa9\"");
	YES(fx, "SUBJECT \"and more\"");	/* unfolded */
	NO(fx, "SUBJECT cafe");
	NO(fx, "SUBJECT inner");		/* the encapsulated one */
	YES(fx, "SUBJECT \"\"");
	YES(fx, "FROM \"j\xc3\xbcrgen m\xc3\xbcller\"");
	YES(fx, "FROM \"J\xc3\x9cRGEN\"");	/* JÜRGEN */
	YES(fx, "FROM jm@EXAMPLE.de");
	NO(fx, "FROM bob");
	YES(fx, "TO bob@example.net");
	NO(fx, "TO carol");
	YES(fx, "CC carol");
	NO(fx, "BCC carol");
	NO(fx, "BCC \"\"");
	YES(fx, "HEADER X-Priority 3");
	YES(fx, "HEADER x-priority \"\"");
	NO(fx, "HEADER X-Priority 4");
	NO(fx, "HEADER X-Missing \"\"");
	YES(fx, "HEADER subject \"cr\xc3\xa8me\"");
	NO(fx, "HEADER X-Prio 3");
}

static void test_charsets(void **state)
{
	struct fx *fx = *state;
	const char *list = searchmsg_charsets();

	/* the same strings in ISO-8859-1 */
	YES(fx, "CHARSET ISO-8859-1 FROM {6}\r\nM\xdcLLER");
	YES(fx, "CHARSET iso-8859-1 BODY {4}\r\nK\xf6ln");
	YES(fx, "CHARSET ISO-8859-1 SUBJECT {4}\r\ncaf\xe9");
	NO(fx, "CHARSET ISO-8859-1 SUBJECT {5}\r\ncaf\xc3\xa9");
	/* KOI8-R "привет" */
	YES(fx, "CHARSET KOI8-R BODY {6}\r\n\xd0\xd2\xc9\xd7\xc5\xd4");
	YES(fx, "CHARSET US-ASCII BODY aus");
	assert_int_equal(run(fx, "CHARSET X-NO-SUCH-CHARSET BODY x"),
			 SEARCHMSG_EBADCHARSET);
	assert_int_equal(run(fx, "CHARSET \"../../etc/x\" BODY x"),
			 SEARCHMSG_EBADCHARSET);
	assert_non_null(strstr(list, "US-ASCII"));
	assert_non_null(strstr(list, "UTF-8"));
	assert_non_null(strstr(list, "ISO-8859-1"));
	assert_null(strstr(list, "  "));
	assert_ptr_equal(searchmsg_charsets(), list);
}

static void test_body(void **state)
{
	struct fx *fx = *state;

	/* QP ISO-8859-1 text/plain */
	YES(fx, "BODY \"gr\xc3\xbc\xc3\x9f" "e aus k\xc3\xb6ln\"");
	YES(fx, "BODY \"GR\xc3\x9c\xc3\x9f" "E\"");
	YES(fx, "BODY \"softbreak here\"");
	NO(fx, "BODY \"soft=\"");
	/* base64 UTF-8 text/html: Greek and Cyrillic case folding */
	YES(fx, "BODY \"\xce\xb1\xce\xb2\xce\xb3\"");	/* αβγ */
	YES(fx, "BODY \"\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82\"");
	YES(fx, "BODY \"\xd0\x9f\xd0\xa0\xd0\x98\xd0\x92\xd0\x95\xd0\xa2\"");
	YES(fx, "BODY <b>");
	/* not text: the attachment is not searched */
	NO(fx, "BODY secretword");
	NO(fx, "TEXT secretword");
	/* inside message/rfc822 */
	YES(fx, "BODY innerneedle");
	/* headers are not body, but are text */
	NO(fx, "BODY caf");
	YES(fx, "TEXT \"caf\xc3\xa9\"");
	YES(fx, "TEXT x-priority");
	YES(fx, "TEXT \"x-priority: 3\"");
	YES(fx, "TEXT innerneedle");
	NO(fx, "TEXT nowhere");
	/* no match across parts */
	NO(fx, "BODY \"here.<b>\"");
	NO(fx, "BODY {7}\r\nhere.\r\n");
	YES(fx, "BODY \"\"");
	YES(fx, "NOT BODY nowhere");
}

static void test_lazy_open(void **state)
{
	struct fx *fx = *state;

	fx->op.calls = 0;
	/* the cheap key decides first */
	NO(fx, "SUBJECT caf DELETED");
	NO(fx, "DELETED SUBJECT caf");
	YES(fx, "OR SUBJECT nowhere SEEN");
	YES(fx, "NOT (DELETED OR BODY x TEXT y)");
	assert_int_equal(fx->op.calls, 0);
	/* several content keys: opened once per match */
	YES(fx, "SUBJECT caf BODY aus TEXT innerneedle SENTON 3-Mar-2026");
	assert_int_equal(fx->op.calls, 1);
	YES(fx, "SUBJECT caf");
	assert_int_equal(fx->op.calls, 2);

	/* an open message is used as it is */
	fx->m.msg = fx->op.msg;
	YES(fx, "SUBJECT caf");
	assert_int_equal(fx->op.calls, 2);
	fx->m.msg = NULL;

	/* the open fails: an error, not a non-match */
	fx->op.fail = true;
	assert_int_equal(run(fx, "SUBJECT caf"), -1);
	assert_int_equal(run(fx, "SEEN"), 1);
	fx->op.fail = false;
	fx->m.open = NULL;
	assert_int_equal(run(fx, "BODY x"), -1);
	fx->m.open = open_cb;
}

static void test_needs_content(void **state)
{
	static const struct {
		const char *keys;
		bool content;
	} cases[] = {
		{ "SEEN 1:5 UID 3 LARGER 5", false },
		{ "OR SEEN (NOT SENTON 1-Jan-2020)", true },
		{ "NOT HEADER X-A \"\"", true },
		{ "BEFORE 1-Jan-2020", false },
	};
	struct fx *fx = *state;

	for (size_t i = 0; i < TERN_NELEM(cases); i++) {
		struct str *line = str_new(0, 256);
		const struct imap_search *search;
		struct searchmsg *prog;
		struct imap_cmd *cmd;
		const char *error;

		assert_int_equal(str_printf(line, "a SEARCH %s\r\n",
					    cases[i].keys), 0);
		cmd = parse(str_c(line), str_len(line));
		assert_int_equal(imap_cmd_search(cmd, &search, &error), 0);
		assert_int_equal(searchmsg_prepare(search, &fx->env, &prog,
						   &error), 0);
		assert_int_equal(searchmsg_needs_content(prog),
				 cases[i].content);
		searchmsg_free(&prog);
		imap_cmd_free(&cmd);
		str_free(&line);
	}
}

static void expect_fold(const char *in, const char *want)
{
	struct str *out = str_new(0, strlen(in) > 0 ? strlen(in) : 1);

	assert_int_equal(searchmsg_fold(in, strlen(in), out), 0);
	assert_string_equal(str_c(out), want);
	str_free(&out);
}

static void test_fold(void **state)
{
	expect_fold("Hello WORLD 123", "hello world 123");
	expect_fold("\xc3\x80\xc3\x89\xc3\x8e\xc3\x96\xc3\x9e",
		    "\xc3\xa0\xc3\xa9\xc3\xae\xc3\xb6\xc3\xbe");
	expect_fold("\xc3\x97", "\xc3\x97");		/* × stays */
	expect_fold("\xc3\x9f", "\xc3\x9f");		/* ß stays */
	expect_fold("\xc2\xb5", "\xce\xbc");		/* µ -> μ */
	expect_fold("\xc5\xb8", "\xc3\xbf");		/* Ÿ -> ÿ */
	expect_fold("\xc5\xbf", "s");			/* ſ -> s */
	expect_fold("\xc4\x80\xc5\x81\xc5\xbd", "\xc4\x81\xc5\x82\xc5\xbe");
	expect_fold("\xce\xa3\xce\x91\xcf\x82", "\xcf\x83\xce\xb1\xcf\x83");
	expect_fold("\xce\x86\xce\x88\xce\x8f", "\xce\xac\xce\xad\xcf\x8e");
	expect_fold("\xd0\x81\xd0\x96\xd0\xaf", "\xd1\x91\xd0\xb6\xd1\x8f");
	expect_fold("\xd1\xa0\xd3\x80", "\xd1\xa1\xd3\x8f");
	expect_fold("\xe2\x84\xaa", "\xe2\x84\xaa");	/* K sign: as is */
	/* invalid UTF-8 is kept */
	expect_fold("A\xc3" "B\xff\xd0", "a\xc3" "b\xff\xd0");
	expect_fold("", "");
	{
		struct str *small = str_new(0, 2);

		assert_int_equal(searchmsg_fold("abc", 3, small), -1);
		str_free(&small);
	}
}

static void test_utf8_words(void **state)
{
	static const char m[] =
		"Subject: =?UTF-8?Q?=D0=9F=D1=80=D0=B8=D0=B2=D0=B5=D1=82?=\r\n"
		" =?utf-8?b?zrHOss6z?= end\r\n"
		"From: =?iso-8859-1?q?Fran=E7ois?= <f@example.fr>\r\n"
		"Content-Type: text/plain; charset=utf-8\r\n"
		"Content-Transfer-Encoding: 8bit\r\n"
		"\r\n"
		"\xce\xa3\xce\x95\xce\x9b\xce\x97\xce\x9d\xce\x97\r\n";
	struct fx *fx = *state;
	struct msgbody *rich = fx->op.msg;

	fx->op.msg = msgbody_from_memory(L(m), NULL);
	/* adjacent encoded words are joined without the space */
	YES(fx, "SUBJECT \"\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82"
		"\xce\xb1\xce\xb2\xce\xb3 end\"");
	NO(fx, "SUBJECT \"=?UTF-8?Q?\"");
	YES(fx, "FROM \"FRAN\xc3\x87OIS\"");
	YES(fx, "CHARSET ISO-8859-1 FROM {8}\r\nfran\xe7ois");
	/* 8bit UTF-8 body, final sigma folded */
	YES(fx, "BODY \"\xcf\x83\xce\xb5\xce\xbb\xce\xb7\xce\xbd\xce\xb7\"");
	msgbody_close(&fx->op.msg);
	fx->op.msg = rich;
}

/* Every prefix of the rich message: content keys answer 0 or 1. */
static void test_prefixes(void **state)
{
	struct fx *fx = *state;
	struct msgbody *rich = fx->op.msg;

	for (size_t n = 0; n < sizeof(m_rich); n++) {
		char *copy = malloc(n > 0 ? n : 1);
		int r;

		memcpy(copy, m_rich, n);
		fx->op.msg = msgbody_from_memory(copy, n, NULL);
		r = run(fx, "OR OR TEXT innerneedle BODY \"k\xc3\xb6ln\" "
			    "OR SENTON 3-Mar-2026 HEADER x-priority \"\"");
		assert_true(r == 0 || r == 1);
		/* the whole text part is there: it must be found */
		if (n == sizeof(m_rich) - 1)
			assert_int_equal(r, 1);
		msgbody_close(&fx->op.msg);
		free(copy);
	}
	fx->op.msg = rich;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flags_no_open),
		cmocka_unit_test(test_keywords),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_sets),
		cmocka_unit_test(test_boolean),
		cmocka_unit_test(test_dates),
		cmocka_unit_test(test_sent_fallback),
		cmocka_unit_test(test_headers),
		cmocka_unit_test(test_charsets),
		cmocka_unit_test(test_body),
		cmocka_unit_test(test_lazy_open),
		cmocka_unit_test(test_needs_content),
		cmocka_unit_test(test_fold),
		cmocka_unit_test(test_utf8_words),
		cmocka_unit_test(test_prefixes),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
