/* test_queue.c: the queue file: ids, the writer, and the reader fed one
 * byte at a time as well as whole, on good files and on every kind of
 * damage (truncation, bad lengths, order, values, trailing bytes). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "compat.h"
#include "queue.h"
#include "str.h"

struct got {
	int last;		/* the last event other than MORE/DATA */
	int envelopes;		/* QUEUE_READ_ENVELOPE events */
	struct str *msg;
	char error[128];
	struct queue_envelope env;
};

/* Reads in steps of step bytes (0 = whole). */
static void got_read(struct got *g, const char *in, size_t len, size_t step)
{
	struct queue_reader *r = queue_reader_new();
	const char *pos = in, *end = in + len;

	memset(g, 0, sizeof(*g));
	g->msg = str_new(256, 1 << 20);
	g->last = QUEUE_READ_MORE;
	while (pos < end && g->last != QUEUE_READ_ERROR) {
		const char *stop = step == 0 || (size_t)(end - pos) < step ?
				   end : pos + step;

		while (pos < stop) {
			const char *d, *error = NULL;
			size_t n;
			int ev = queue_reader_feed(r, &pos, stop, &d, &n,
						   &error);

			if (ev == QUEUE_READ_DATA) {
				assert_int_equal(str_append(g->msg, d, n), 0);
				continue;
			}
			if (ev == QUEUE_READ_ENVELOPE)
				g->envelopes++;
			if (ev != QUEUE_READ_MORE)
				g->last = ev;
			if (ev == QUEUE_READ_ERROR) {
				assert_non_null(error);
				snprintf(g->error, sizeof(g->error), "%s",
					 error);
				break;
			}
		}
	}
	if (g->last == QUEUE_READ_END) {
		const struct queue_envelope *e = queue_reader_envelope(r);

		g->env = *e;
		/* take the envelope over from the reader */
		memset((void *)e, 0, sizeof(*e));
	}
	queue_reader_free(&r);
}

static void got_free(struct got *g)
{
	str_free(&g->msg);
	queue_envelope_clear(&g->env);
}

static void sample_envelope(struct queue_envelope *e, const char *id)
{
	memset(e, 0, sizeof(*e));
	e->id = strdup(id);
	e->arrival_sec = 1732850000;
	e->arrival_usec = 42;
	e->client_addr = strdup("192.0.2.7");
	e->client_name = strdup("unknown");
	e->helo = strdup("mx.example.org");
	e->protocol = strdup("ESMTPSA");
	e->auth = strdup("ann@example.com");
	e->tls = strdup("TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 "
			"(256/256 bits)");
	e->sender = strdup("ann@example.com");
	e->body = strdup("8BITMIME");
	e->smtputf8 = true;
	e->ret = strdup("HDRS");
	e->envid = strdup("QQ+2B1");
	queue_envelope_add_rcpt(e, "bob@example.com", "SUCCESS,FAILURE",
				"rfc822;bob@example.com");
	queue_envelope_add_rcpt(e, "carol@example.net", NULL, NULL);
	queue_envelope_add_rcpt(e, "dave@example.net", "NEVER", NULL);
}

/* A whole file: envelope, message, end. */
static struct str *sample_file(const char *message, size_t len)
{
	struct queue_envelope e;
	char id[QUEUE_ID_SIZE];
	struct str *out = str_new(1024, 4 << 20);

	queue_id_new(id);
	sample_envelope(&e, id);
	assert_int_equal(queue_encode_envelope(out, &e), 0);
	assert_int_equal(queue_encode_data(out, message, len), 0);
	assert_int_equal(queue_encode_end(out, len), 0);
	queue_envelope_clear(&e);
	return out;
}

static void test_ids(void **state)
{
	char a[QUEUE_ID_SIZE], b[QUEUE_ID_SIZE];

	(void)state;
	queue_id_new(a);
	for (int i = 0; i < 1000; i++) {
		queue_id_new(b);
		assert_true(queue_id_valid(b));
		assert_int_equal(strlen(b), QUEUE_ID_LEN);
		assert_true(strcmp(a, b) < 0);	/* strictly increasing */
		memcpy(a, b, sizeof(a));
	}
	assert_int_equal(queue_id_pid(a), (long)getpid());
	assert_false(queue_id_valid(""));
	assert_false(queue_id_valid("0000000000000I00"));	/* no I */
	assert_false(queue_id_valid("000000000000000"));	/* short */
	assert_false(queue_id_valid("00000000000000000"));	/* long */
	assert_false(queue_id_valid("../../etc/passwd"));
	assert_int_equal(queue_id_pid("bad"), -1);
}

static void test_roundtrip(void **state)
{
	static const char message[] = "Received: from x\r\nSubject: hi\r\n"
				      "\r\nbody\r\n";
	struct str *file = sample_file(message, sizeof(message) - 1);

	(void)state;
	for (size_t step = 0; step <= 1; step++) {
		struct got g;

		got_read(&g, str_c(file), str_len(file), step);
		assert_int_equal(g.last, QUEUE_READ_END);
		assert_int_equal(g.envelopes, 1);
		assert_int_equal(str_len(g.msg), sizeof(message) - 1);
		assert_memory_equal(str_c(g.msg), message,
				    sizeof(message) - 1);
		assert_true(queue_id_valid(g.env.id));
		assert_int_equal(g.env.arrival_sec, 1732850000);
		assert_int_equal(g.env.arrival_usec, 42);
		assert_string_equal(g.env.client_addr, "192.0.2.7");
		assert_string_equal(g.env.helo, "mx.example.org");
		assert_string_equal(g.env.protocol, "ESMTPSA");
		assert_string_equal(g.env.auth, "ann@example.com");
		assert_string_equal(g.env.sender, "ann@example.com");
		assert_string_equal(g.env.body, "8BITMIME");
		assert_true(g.env.smtputf8);
		assert_string_equal(g.env.ret, "HDRS");
		assert_string_equal(g.env.envid, "QQ+2B1");
		assert_int_equal(g.env.nrcpts, 3);
		assert_string_equal(g.env.rcpts[0].address, "bob@example.com");
		assert_string_equal(g.env.rcpts[0].notify, "SUCCESS,FAILURE");
		assert_string_equal(g.env.rcpts[0].orcpt,
				    "rfc822;bob@example.com");
		assert_null(g.env.rcpts[1].notify);
		assert_null(g.env.rcpts[1].orcpt);
		assert_string_equal(g.env.rcpts[2].notify, "NEVER");
		got_free(&g);
	}
	str_free(&file);
}

/* A message larger than one data record, with every byte value. */
static void test_large_message(void **state)
{
	size_t len = QUEUE_DATA_MAX * 2 + 123;
	char *message = malloc(len);
	struct str *file;
	struct got g;

	(void)state;
	for (size_t i = 0; i < len; i++)
		message[i] = (char)(i * 7);
	file = sample_file(message, len);
	got_read(&g, str_c(file), str_len(file), 1);
	assert_int_equal(g.last, QUEUE_READ_END);
	assert_int_equal(str_len(g.msg), len);
	assert_memory_equal(str_c(g.msg), message, len);
	got_free(&g);
	got_read(&g, str_c(file), str_len(file), 4093);
	assert_int_equal(g.last, QUEUE_READ_END);
	got_free(&g);
	str_free(&file);
	free(message);
}

/* Every proper prefix of a file is incomplete, never an error or an end. */
static void test_truncated(void **state)
{
	static const char message[] = "Subject: x\r\n\r\nhello\r\n";
	struct str *file = sample_file(message, sizeof(message) - 1);

	(void)state;
	for (size_t cut = 0; cut < str_len(file); cut++) {
		struct got g;

		got_read(&g, str_c(file), cut, 1);
		assert_true(g.last == QUEUE_READ_MORE ||
			    g.last == QUEUE_READ_ENVELOPE);
		got_free(&g);
	}
	str_free(&file);
}

/* Damaged files: each gives an error, fed whole and byte by byte. */
static void test_errors(void **state)
{
	static const struct {
		const char *text;
		const char *error;
	} cases[] = {
		{ "X1:a\n", "no version record first" },
		{ "V12:tern-queue 9\n", "unknown version" },
		{ "V12:tern-queue 1\nQ1:a\n", "unknown record type" },
		{ "V12:tern-queue 1\nI01:a\n", "bad record length" },
		{ "V12:tern-queue 1\nIx:a\n", "bad record length" },
		{ "V12:tern-queue 1\nI:a\n", "bad record length" },
		{ "V12:tern-queue 1\nI99999999:a\n", "bad record length" },
		{ "V12:tern-queue 1\nI5000:", "record too long" },
		{ "V12:tern-queue 1\nI16:0000000000000001x", "newline" },
		{ "V12:tern-queue 1\nI3:abc\n", "bad queue id" },
		{ "V12:tern-queue 1\nT17:1732850000.000001\n"
		  "I16:0000000000000001\n", "out of order" },
		{ "V12:tern-queue 1\nI16:0000000000000001\n"
		  "I16:0000000000000001\n", "out of order" },
		{ "V12:tern-queue 1\nI16:0000000000000001\nT3:1.2\n",
		  "bad arrival" },
		{ "V12:tern-queue 1\nI16:0000000000000001\n"
		  "T17:1732850000.000001\nS1:a\nR3:b\tc\n", "bad characters" },
		{ "V12:tern-queue 1\nI16:0000000000000001\n"
		  "T17:1732850000.000001\nS1:a\nn5:NEVER\n",
		  "recipient option before" },
		{ "V12:tern-queue 1\nI16:0000000000000001\n"
		  "T17:1732850000.000001\nS1:a\nR1:b\nn5:NEVER\nn5:NEVER\n",
		  "option repeated" },
		{ "V12:tern-queue 1\nI16:0000000000000001\n"
		  "T17:1732850000.000001\nS1:a\nM0:\n", "no recipients" },
		{ "V12:tern-queue 1\nI16:0000000000000001\n"
		  "T17:1732850000.000001\nS1:a\nB4:8BIT\n", "bad body" },
		{ "V12:tern-queue 1\nI16:0000000000000001\n"
		  "T17:1732850000.000001\nS1:a\nX3:ALL\n", "bad RET" },
		{ "V12:tern-queue 1\nD1:a\n", "before the envelope" },
		{ "V12:tern-queue 1\nI16:0000000000000001\n"
		  "T17:1732850000.000001\nS1:a\nR1:b\nM0:\nD0:\n",
		  "empty data record" },
		{ "V12:tern-queue 1\nI16:0000000000000001\n"
		  "T17:1732850000.000001\nS1:a\nR1:b\nM0:\nD1:a\nZ1:2\n",
		  "size does not match" },
		{ "V12:tern-queue 1\nI16:0000000000000001\n"
		  "T17:1732850000.000001\nS1:a\nR1:b\nM0:\nD1:a\nR1:c\n",
		  "only data or end" },
		{ "V12:tern-queue 1\nI16:0000000000000001\n"
		  "T17:1732850000.000001\nS1:a\nR1:b\nM0:\nZ1:0\nD1:a\n",
		  "after the end" },
		{ "V12:tern-queue 1\nI16:0000000000000001\n"
		  "T17:1732850000.000001\nS1:a\nR1:b\nM1:x\n",
		  "record too long" },
	};

	(void)state;
	for (size_t i = 0; i < TERN_NELEM(cases); i++) {
		for (size_t step = 0; step <= 1; step++) {
			struct got g;

			got_read(&g, cases[i].text, strlen(cases[i].text),
				 step);
			if (g.last != QUEUE_READ_ERROR ||
			    strstr(g.error, cases[i].error) == NULL)
				fail_msg("case %zu step %zu: last %d error "
					 "'%s', want '%s'", i, step, g.last,
					 g.error, cases[i].error);
			got_free(&g);
		}
	}
}

/* The writer refuses what the reader would refuse. */
static void test_writer_limits(void **state)
{
	struct queue_envelope e;
	struct str *out = str_new(1024, 1 << 20);
	char id[QUEUE_ID_SIZE];
	char *longer = malloc(QUEUE_FIELD_MAX + 2);

	(void)state;
	queue_id_new(id);
	memset(&e, 0, sizeof(e));
	e.id = strdup(id);
	e.arrival_sec = 1;
	assert_int_equal(queue_encode_envelope(out, &e), -1);	/* sender */
	e.sender = strdup("");
	assert_int_equal(queue_encode_envelope(out, &e), -1);	/* rcpts */
	memset(longer, 'a', QUEUE_FIELD_MAX + 1);
	longer[QUEUE_FIELD_MAX + 1] = '\0';
	queue_envelope_add_rcpt(&e, longer, NULL, NULL);
	str_clear(out);
	assert_int_equal(queue_encode_envelope(out, &e), -1);	/* long */
	free(e.rcpts[0].address);
	e.rcpts[0].address = strdup("x@example.com");
	str_clear(out);
	assert_int_equal(queue_encode_envelope(out, &e), 0);
	queue_envelope_clear(&e);
	free(longer);
	str_free(&out);
}

/* queue_file_read on real files: complete, truncated, absent. */
static void test_file_read(void **state)
{
	static const char message[] = "Subject: x\r\n\r\nhello\r\n";
	struct str *file = sample_file(message, sizeof(message) - 1);
	struct str *msg = str_new(64, 1 << 20), *err = str_new(64, 1024);
	char path[] = "/tmp/test_queue.XXXXXX";
	struct queue_envelope env;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, str_c(file), str_len(file)),
			 (ssize_t)str_len(file));
	memset(&env, 0, sizeof(env));
	assert_int_equal(queue_file_read(path, &env, msg, err), 0);
	assert_string_equal(str_c(msg), message);
	assert_int_equal(env.nrcpts, 3);
	queue_envelope_clear(&env);
	assert_int_equal(ftruncate(fd, (off_t)str_len(file) - 1), 0);
	assert_int_equal(queue_file_read(path, &env, NULL, err), -1);
	assert_non_null(strstr(str_c(err), "incomplete"));
	close(fd);
	unlink(path);
	assert_int_equal(queue_file_read(path, &env, NULL, err), -1);
	str_free(&msg);
	str_free(&err);
	str_free(&file);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ids),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_large_message),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_writer_limits),
		cmocka_unit_test(test_file_read),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
