/* test_smtpclient.c: the SMTP/LMTP reply parser, fed whole and one byte
 * at a time (codes, multi-line replies, enhanced status codes, every
 * refusal and bound), the dot-stuffing of outgoing messages, and the
 * client on a real libuv loop against a scripted server thread that sends
 * its replies one byte at a time: LMTP with pipelining and per-recipient
 * results, SMTP with DSN parameters, one command at a time, a refused
 * MAIL (then RSET), a lost connection, a too-big message, a refused
 * greeting. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>
#include <cmocka.h>

#include "compat.h"
#include "smtpclient.h"
#include "str.h"

/* Feeds in (whole, or byte by byte when step is 1); collects replies as
 * "code|enhanced|text;" into out.  Returns -1 on a parser error. */
static int feed(const char *in, size_t len, size_t step, struct str *out,
		const char **error_r)
{
	struct smtp_reply_parser *p = smtp_reply_parser_new();
	size_t off = 0;
	int ret = 0;

	while (off < len && ret == 0) {
		size_t n = step == 0 || off + step > len ? len - off : step;
		const char *pos = in + off, *end = in + off + n;

		while (pos < end) {
			const struct smtp_reply *r;
			int x = smtp_reply_parser_feed(p, &pos, end, &r,
						       error_r);

			if (x < 0) {
				ret = -1;
				break;
			}
			if (x == 0)
				break;
			assert_true(str_printf(out, "%u|%s|%s;", r->code,
					       r->enhanced,
					       str_c(r->text)) == 0);
		}
		off += n;
	}
	smtp_reply_parser_free(&p);
	return ret;
}

static void check(const char *in, const char *want)
{
	for (size_t step = 0; step <= 1; step++) {
		struct str *out = str_new(64, 65536);
		const char *error = NULL;

		assert_int_equal(feed(in, strlen(in), step, out, &error), 0);
		assert_string_equal(str_c(out), want);
		str_free(&out);
	}
}

static void check_error(const char *in, const char *want_error)
{
	for (size_t step = 0; step <= 1; step++) {
		struct str *out = str_new(64, 65536);
		const char *error = NULL;

		assert_int_equal(feed(in, strlen(in), step, out, &error), -1);
		assert_non_null(error);
		assert_non_null(strstr(error, want_error));
		str_free(&out);
	}
}

static void test_replies(void **state)
{
	(void)state;
	check("220 mx.example.com ESMTP\r\n", "220||mx.example.com ESMTP;");
	check("250 2.1.5 Ok\r\n", "250|2.1.5|Ok;");
	check("250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 1000\r\n"
	      "250 8BITMIME\r\n",
	      "250||mx.example.com\nPIPELINING\nSIZE 1000\n8BITMIME;");
	/* LMTP: one reply per recipient, back to back. */
	check("250 2.0.0 <a@x> ok\r\n452 4.2.2 <b@x> full\r\n"
	      "550 5.1.1 <c@x> unknown\r\n",
	      "250|2.0.0|<a@x> ok;452|4.2.2|<b@x> full;"
	      "550|5.1.1|<c@x> unknown;");
	/* A status of the wrong class is text, not a status. */
	check("550 2.1.5 odd\r\n", "550||2.1.5 odd;");
	check("354\r\n", "354||;");
	check("250 ok\n", "250||ok;");		/* bare LF ends a line */
	check("451-4.3.0 one\r\n451 4.3.0 two\r\n", "451|4.3.0|one\ntwo;");
	check("250 a\x01" "b\r\n", "250||a?b;");
}

static void test_refusals(void **state)
{
	struct str *big = str_new(0, 1 << 20);
	size_t i;

	(void)state;
	check_error("hello\r\n", "code");
	check_error("25\r\n", "code");
	check_error("150 old\r\n", "code");
	check_error("650 no\r\n", "code");
	check_error("250x\r\n", "space or a hyphen");
	check_error("250-a\r\n251 b\r\n", "different codes");
	for (i = 0; i < SMTPCLIENT_LINE_MAX + 10; i++)
		assert_int_equal(str_append_byte(big, 'a'), 0);
	check_error(str_c(big), "too long");
	str_clear(big);
	for (i = 0; i <= SMTPCLIENT_LINES_MAX; i++)
		assert_int_equal(str_append_c(big, "250-x\r\n"), 0);
	assert_int_equal(str_append_c(big, "250 x\r\n"), 0);
	check_error(str_c(big), "too many lines");
	str_free(&big);
}

static void test_text_bound(void **state)
{
	struct str *in = str_new(0, 1 << 20), *out = str_new(0, 1 << 20);
	const char *error;

	(void)state;
	for (size_t i = 0; i < 50; i++)
		assert_int_equal(str_printf(in, "250-%0200d\r\n", 7), 0);
	assert_int_equal(str_append_c(in, "250 end\r\n"), 0);
	assert_int_equal(feed(str_c(in), str_len(in), 1, out, &error), 0);
	/* The text is cut at its bound, the reply still complete. */
	assert_true(str_len(out) <= SMTPCLIENT_TEXT_MAX + 16);
	assert_true(strncmp(str_c(out), "250||", 5) == 0);
	str_free(&in);
	str_free(&out);
}

static void test_format(void **state)
{
	struct smtp_reply_parser *p = smtp_reply_parser_new();
	const char *in = "451-4.4.1 first\r\n451 4.4.1 second\r\n";
	const char *pos = in, *end = in + strlen(in), *error;
	const struct smtp_reply *r;
	struct str *out = str_new(0, 1024);

	(void)state;
	assert_int_equal(smtp_reply_parser_feed(p, &pos, end, &r, &error), 1);
	smtp_reply_format(r, out);
	assert_string_equal(str_c(out), "451 4.4.1 first");
	smtp_reply_parser_free(&p);
	str_free(&out);
}

static void stuffed(const char *in, const char *want)
{
	struct str *out = str_new(0, 4096);

	assert_int_equal(smtpclient_stuff(out, in, strlen(in)), 0);
	assert_string_equal(str_c(out), want);
	str_free(&out);
}

static void test_stuff(void **state)
{
	(void)state;
	stuffed("a\r\n", "a\r\n.\r\n");
	stuffed(".a\r\n", "..a\r\n.\r\n");
	stuffed("x\r\n.\r\ny\r\n", "x\r\n..\r\ny\r\n.\r\n");
	stuffed("no end", "no end\r\n.\r\n");
	stuffed("", ".\r\n");
	stuffed("a\r\n..b\r\n", "a\r\n...b\r\n.\r\n");
}

/* ---- the client against a scripted server ---- */

/* A step: read one line starting with expect (NULL: read nothing;
 * "<DATA>": read the message up to ".\r\n"), then send reply (NULL: close
 * the connection) one byte at a time. */
struct step {
	const char *expect;
	const char *reply;
};

struct server {
	int lfd;
	const struct step *steps;
	char error[256];
	char data[4096];
	char lines[4096];	/* every command line read */
};

static int read_line(int fd, char *buf, size_t size)
{
	size_t n = 0;

	while (n + 1 < size) {
		char c;

		if (read(fd, &c, 1) != 1)
			return -1;
		buf[n++] = c;
		if (c == '\n')
			break;
	}
	buf[n] = '\0';
	return 0;
}

static void *server_main(void *arg)
{
	struct server *sv = arg;
	int fd = accept(sv->lfd, NULL, NULL);
	char line[1024];

	for (const struct step *st = sv->steps; fd >= 0; st++) {
		if (st->expect != NULL && strcmp(st->expect, "<DATA>") == 0) {
			while (read_line(fd, line, sizeof(line)) == 0 &&
			       strcmp(line, ".\r\n") != 0)
				strncat(sv->data, line,
					sizeof(sv->data) - strlen(sv->data) - 1);
		} else if (st->expect != NULL) {
			if (read_line(fd, line, sizeof(line)) < 0 ||
			    strncmp(line, st->expect, strlen(st->expect)) != 0) {
				snprintf(sv->error, sizeof(sv->error),
					 "wanted %.100s, got %.100s", st->expect,
					 line);
				break;
			}
			strncat(sv->lines, line,
				sizeof(sv->lines) - strlen(sv->lines) - 1);
		}
		if (st->reply == NULL)
			break;
		for (const char *p = st->reply; *p != '\0'; p++) {
			if (write(fd, p, 1) != 1)
				break;
			usleep(200);
		}
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

struct run {
	struct smtpclient *c;
	bool ready, ok, closed, done;
	char results[1024];
	struct smtpclient_msg msg;
	bool lmtp;
};

static void on_done(struct smtpclient *c, const struct smtp_reply *const *r,
		    size_t nr, void *ctx)
{
	struct run *run = ctx;
	struct str *t = str_new(64, 1024);
	size_t len;

	for (size_t i = 0; i < nr; i++) {
		str_clear(t);
		smtp_reply_format(r[i], t);
		strncat(run->results, str_c(t),
			sizeof(run->results) - strlen(run->results) - 2);
		len = strlen(run->results);
		if (len + 2 < sizeof(run->results)) {
			run->results[len] = '|';
			run->results[len + 1] = '\0';
		}
	}
	str_free(&t);
	run->done = true;
	smtpclient_quit(c);
}

static void on_ready(struct smtpclient *c, bool ok, const struct smtp_reply *r,
		     void *ctx)
{
	struct run *run = ctx;

	(void)r;
	run->ready = true;
	run->ok = ok;
	if (ok)
		assert_int_equal(smtpclient_send(c, &run->msg, on_done, run), 0);
}

static void on_closed(struct smtpclient *c, const char *reason, void *ctx)
{
	struct run *run = ctx;

	(void)c;
	(void)reason;
	run->closed = true;
}

/* Runs one session against the script; returns the per-recipient
 * results "code status text|...". */
static void session(const struct step *steps, bool lmtp,
		    const struct smtpclient_msg *msg, struct run *run,
		    struct server *sv)
{
	uv_loop_t loop;
	pthread_t th;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct smtpclient_settings set = {
		.lmtp = lmtp, .helo = "qmgr.test", .timeout_ms = 5000,
		.id = "test",
	};

	memset(sv, 0, sizeof(*sv));
	memset(run, 0, sizeof(*run));
	run->msg = *msg;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "/tmp/tern-sc-%d.sock",
		 (int)getpid());
	unlink(sa.sun_path);
	sv->steps = steps;
	sv->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(sv->lfd >= 0);
	assert_int_equal(bind(sv->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(sv->lfd, 1), 0);
	assert_int_equal(pthread_create(&th, NULL, server_main, sv), 0);
	assert_int_equal(uv_loop_init(&loop), 0);
	run->c = smtpclient_new(&loop, sa.sun_path, NULL, &set, on_ready,
				on_closed, run);
	for (int i = 0; i < 2000 && !run->closed; i++)
		uv_run(&loop, UV_RUN_ONCE);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	pthread_join(th, NULL);
	close(sv->lfd);
	unlink(sa.sun_path);
	assert_true(run->closed);
}

static const struct smtpclient_rcpt three[] = {
	{ .address = "a@x.test", .notify = "SUCCESS,FAILURE",
	  .orcpt = "rfc822;a+2B1@x.test" },
	{ .address = "b@x.test" },
	{ .address = "c@x.test" },
};

static void test_client_lmtp_pipelined(void **state)
{
	static const struct step steps[] = {
		{ NULL, "220 lmtp ready\r\n" },
		{ "LHLO qmgr.test", "250-lmtp\r\n250-PIPELINING\r\n"
				    "250-8BITMIME\r\n250 SIZE 1000\r\n" },
		{ "MAIL FROM:<s@x.test> SIZE=11 BODY=8BITMIME", "250 2.1.0 ok\r\n" },
		{ "RCPT TO:<a@x.test>\r\n", "250 2.1.5 ok\r\n" },
		{ "RCPT TO:<b@x.test>", "550 5.1.1 unknown\r\n" },
		{ "RCPT TO:<c@x.test>", "250 2.1.5 ok\r\n" },
		{ "DATA", "354 go\r\n" },
		{ "<DATA>", "250 2.0.0 a done\r\n452-4.2.2 c is\r\n"
			    "452 4.2.2 full\r\n" },
		{ "QUIT", NULL },
	};
	struct smtpclient_msg msg = {
		.sender = "s@x.test", .eightbit = true, .ret = "HDRS",
		.rcpts = three, .nrcpts = 3, .data = "x\r\n.dot\r\n\xc3\xa9",
		.len = 11,
	};
	struct run run;
	struct server sv;

	(void)state;
	session(steps, true, &msg, &run, &sv);
	assert_string_equal(sv.error, "");
	assert_true(run.ok && run.done);
	assert_string_equal(run.results, "250 2.0.0 a done|550 5.1.1 unknown|"
			    "452 4.2.2 c is|");
	assert_string_equal(sv.data, "x\r\n..dot\r\n\xc3\xa9\r\n");
	/* No DSN offered: no DSN parameters. */
	assert_null(strstr(sv.lines, "NOTIFY"));
	assert_null(strstr(sv.lines, "RET="));
}

static void test_client_smtp_dsn_and_mail_refused(void **state)
{
	static const struct step steps[] = {
		{ NULL, "220 mx\r\n" },
		{ "EHLO qmgr.test", "250-mx\r\n250 DSN\r\n" },
		{ "MAIL FROM:<s@x.test> RET=HDRS ENVID=E+2B",
		  "451 4.3.0 later\r\n" },
		{ "RSET", "250 ok\r\n" },
		{ "QUIT", NULL },
	};
	struct smtpclient_msg msg = {
		.sender = "s@x.test", .ret = "HDRS", .envid = "E+2B",
		.rcpts = three, .nrcpts = 3, .data = "x\r\n", .len = 3,
	};
	struct run run;
	struct server sv;

	(void)state;
	session(steps, false, &msg, &run, &sv);
	assert_string_equal(sv.error, "");
	assert_string_equal(run.results, "451 4.3.0 later|451 4.3.0 later|"
			    "451 4.3.0 later|");
}

static void test_client_smtp_one_by_one(void **state)
{
	static const struct step steps[] = {
		{ NULL, "220 mx\r\n" },
		{ "EHLO qmgr.test", "250-mx\r\n250 DSN\r\n" },
		{ "MAIL FROM:<s@x.test>", "250 ok\r\n" },
		{ "RCPT TO:<a@x.test> NOTIFY=SUCCESS,FAILURE "
		  "ORCPT=rfc822;a+2B1@x.test", "250 ok\r\n" },
		{ "RCPT TO:<b@x.test>\r\n", "550 5.1.1 no\r\n" },
		{ "RCPT TO:<c@x.test>\r\n", "250 ok\r\n" },
		{ "DATA", "354 go\r\n" },
		{ "<DATA>", "250 2.0.0 queued as X\r\n" },
		{ "QUIT", NULL },
	};
	struct smtpclient_msg msg = {
		.sender = "s@x.test", .rcpts = three, .nrcpts = 3,
		.data = "x\r\n", .len = 3,
	};
	struct run run;
	struct server sv;

	(void)state;
	session(steps, false, &msg, &run, &sv);
	assert_string_equal(sv.error, "");
	assert_string_equal(run.results, "250 2.0.0 queued as X|"
			    "550 5.1.1 no|250 2.0.0 queued as X|");
}

static void test_client_lost_and_refused(void **state)
{
	static const struct step lost[] = {
		{ NULL, "220 mx\r\n" },
		{ "LHLO", "250-lmtp\r\n250 PIPELINING\r\n" },
		{ "MAIL", "250 ok\r\n" },
		{ "RCPT", "250 ok\r\n" },
		{ "RCPT", NULL },	/* the server goes away */
	};
	static const struct step big[] = {
		{ NULL, "220 mx\r\n" },
		{ "LHLO", "250-lmtp\r\n250 SIZE 2\r\n" },
		{ "QUIT", NULL },
	};
	static const struct step greet[] = {
		{ NULL, "554 5.3.2 go away\r\n" },
		{ NULL, NULL },
	};
	struct smtpclient_msg msg = {
		.sender = "", .rcpts = three, .nrcpts = 3,
		.data = "x\r\n", .len = 3,
	};
	struct run run;
	struct server sv;

	(void)state;
	session(lost, true, &msg, &run, &sv);
	assert_string_equal(sv.error, "");
	assert_non_null(strstr(run.results, "451 4.4.2 lost connection"));
	assert_null(strstr(run.results, "250"));
	session(big, true, &msg, &run, &sv);
	assert_string_equal(run.results, "552 5.3.4 message too big for the "
			    "destination server|552 5.3.4 message too big "
			    "for the destination server|552 5.3.4 message "
			    "too big for the destination server|");
	session(greet, true, &msg, &run, &sv);
	assert_true(run.ready);
	assert_false(run.ok);
	assert_false(run.done);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_replies),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_text_bound),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_stuff),
		cmocka_unit_test(test_client_lmtp_pipelined),
		cmocka_unit_test(test_client_smtp_dsn_and_mail_refused),
		cmocka_unit_test(test_client_smtp_one_by_one),
		cmocka_unit_test(test_client_lost_and_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
