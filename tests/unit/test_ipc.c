/* test_ipc.c: the IPC codec, its channel on libuv and the blocking client. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "compat.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "ipc.h"
#include "ipcchan.h"
#include "ipcclient.h"
#include "str.h"

#define MAX_MSGS 16

/* --- helpers ---------------------------------------------------------- */

static struct str *encode(const struct ipc_msg *m)
{
	struct str *out = str_new(0, IPC_FRAME_MAX_HARD + 4);
	const char *error = NULL;

	assert_int_equal(ipc_msg_encode(m, 0, out, &error), 0);
	return out;
}

/* Feeds data whole (step 0) or in pieces of step bytes; returns the last
 * status (-1 stops), the messages in msgs. */
static int decode(const void *data, size_t len, size_t step, size_t max,
		  struct ipc_msg **msgs, unsigned int *n_r,
		  const char **error_r)
{
	struct ipc_decoder *d = ipc_decoder_new(max);
	const char *p = data, *end = p + len;
	int r = 0;

	*n_r = 0;
	while (p < end) {
		const char *chunk_end = step == 0 || (size_t)(end - p) < step ?
					end : p + step;

		while ((r = ipc_decoder_feed(d, &p, chunk_end, &msgs[*n_r],
					     error_r)) == 1) {
			assert_true(*n_r < MAX_MSGS - 1);
			(*n_r)++;
		}
		if (r < 0)
			break;
		assert_ptr_equal(p, chunk_end);
	}
	if (r == 0)
		r = ipc_decoder_finish(d, error_r);
	if (r < 0) {
		/* The error lives in the decoder: keep a copy. */
		static char copy[512];

		str_lcpy(copy, *error_r, sizeof(copy));
		*error_r = copy;
	}
	ipc_decoder_free(&d);
	return r;
}

static void free_msgs(struct ipc_msg **msgs, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++)
		ipc_msg_free(&msgs[i]);
}

/* A frame from raw payload bytes. */
static size_t frame(char *buf, const void *payload, size_t len)
{
	buf[0] = (char)(len >> 24);
	buf[1] = (char)(len >> 16);
	buf[2] = (char)(len >> 8);
	buf[3] = (char)len;
	memcpy(buf + 4, payload, len);
	return len + 4;
}

/* Expects the raw payload to be rejected with error text containing what. */
static void expect_bad_payload(const void *payload, size_t len,
			       const char *what)
{
	char buf[512];
	struct ipc_msg *msgs[MAX_MSGS];
	const char *error = NULL;
	unsigned int n;
	size_t flen = frame(buf, payload, len);

	for (size_t step = 0; step <= 1; step++) {
		assert_int_equal(decode(buf, flen, step, 0, msgs, &n, &error),
				 -1);
		assert_int_equal(n, 0);
		assert_non_null(strstr(error, what));
	}
}

static struct ipc_msg *sample(void)
{
	struct ipc_msg *m = ipc_msg_new("auth.pass-req_1");

	ipc_msg_set_id(m, 0xfedcba98);
	ipc_msg_add_cstr(m, "user", "alice@example.com");
	ipc_msg_add_str(m, "secret", "a\0b", 3);
	ipc_msg_add_str(m, "empty", "", 0);
	ipc_msg_add_int(m, "min", INT64_MIN);
	ipc_msg_add_int(m, "max", INT64_MAX);
	ipc_msg_add_int(m, "neg", -2);
	ipc_msg_add_cstr(m, "rcpt", "a@x");
	ipc_msg_add_cstr(m, "rcpt", "b@x");
	ipc_msg_add_cstr(m, "rcpt", "c@x");
	return m;
}

static void check_sample(const struct ipc_msg *m)
{
	const char *p, *name;
	enum ipc_kind kind;
	size_t len;
	int64_t v;

	assert_string_equal(ipc_msg_type(m), "auth.pass-req_1");
	assert_true(ipc_msg_type_is(m, "auth.pass-req_1"));
	assert_int_equal(ipc_msg_id(m), 0xfedcba98);
	assert_int_equal(ipc_msg_get_cstr(m, "user", &p), 0);
	assert_string_equal(p, "alice@example.com");
	assert_int_equal(ipc_msg_get_str(m, "secret", &p, &len), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(p, "a\0b", 3);
	assert_int_equal(p[3], '\0');
	assert_int_equal(ipc_msg_get_cstr(m, "secret", &p), -1);
	assert_int_equal(ipc_msg_get_str(m, "empty", &p, &len), 0);
	assert_int_equal(len, 0);
	assert_int_equal(ipc_msg_get_int(m, "min", &v), 0);
	assert_true(v == INT64_MIN);
	assert_int_equal(ipc_msg_get_int(m, "max", &v), 0);
	assert_true(v == INT64_MAX);
	assert_int_equal(ipc_msg_get_int(m, "neg", &v), 0);
	assert_true(v == -2);
	/* wrong kind, absent */
	assert_int_equal(ipc_msg_get_int(m, "user", &v), -1);
	assert_int_equal(ipc_msg_get_str(m, "neg", &p, &len), -1);
	assert_int_equal(ipc_msg_get_cstr(m, "nope", &p), -1);
	/* repeated */
	assert_int_equal(ipc_msg_count(m, "rcpt"), 3);
	assert_int_equal(ipc_msg_count(m, "user"), 1);
	assert_int_equal(ipc_msg_count(m, "nope"), 0);
	assert_int_equal(ipc_msg_get_cstr_nth(m, "rcpt", 2, &p), 0);
	assert_string_equal(p, "c@x");
	assert_int_equal(ipc_msg_get_cstr_nth(m, "rcpt", 0, &p), 0);
	assert_string_equal(p, "a@x");
	assert_int_equal(ipc_msg_get_cstr_nth(m, "rcpt", 3, &p), -1);
	assert_int_equal(ipc_msg_get_int_nth(m, "neg", 1, &v), -1);
	assert_int_equal(ipc_msg_get_str_nth(m, "rcpt", 1, &p, &len), 0);
	assert_int_equal(len, 3);
	/* iteration */
	assert_int_equal(ipc_msg_nfields(m), 9);
	assert_int_equal(ipc_msg_field(m, 3, &name, &kind), 0);
	assert_string_equal(name, "min");
	assert_int_equal(kind, IPC_INT);
	assert_int_equal(ipc_msg_field(m, 9, &name, &kind), -1);
	/* by position */
	assert_int_equal(ipc_msg_int_at(m, 3, "min", &v), 0);
	assert_true(v == INT64_MIN);
	assert_int_equal(ipc_msg_int_at(m, 3, "max", &v), -1);
	assert_int_equal(ipc_msg_int_at(m, 0, "user", &v), -1);
	assert_int_equal(ipc_msg_str_at(m, 8, "rcpt", &p, &len), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(p, "c@x", 3);
	assert_int_equal(ipc_msg_str_at(m, 9, "rcpt", &p, &len), -1);
	assert_int_equal(ipc_msg_str_at(m, 3, "min", &p, &len), -1);
}

/* --- codec ------------------------------------------------------------ */

static void test_roundtrip_whole_and_bytewise(void **state)
{
	struct ipc_msg *m = sample(), *msgs[MAX_MSGS];
	struct str *out = encode(m);
	const char *error = NULL;
	unsigned int n;

	check_sample(m);
	assert_int_equal(str_len(out), ipc_msg_size(m) + IPC_FRAME_PREFIX);
	for (size_t step = 0; step <= 3; step++) {
		assert_int_equal(decode(str_c(out), str_len(out), step, 0,
					msgs, &n, &error), 0);
		assert_int_equal(n, 1);
		check_sample(msgs[0]);
		free_msgs(msgs, n);
	}
	ipc_msg_free(&m);
	assert_null(m);
	str_free(&out);
}

static void test_several_frames_split_everywhere(void **state)
{
	struct ipc_msg *a = sample(), *b = ipc_msg_new("x"), *msgs[MAX_MSGS];
	struct str *out = encode(a);
	const char *error = NULL;
	unsigned int n;

	assert_int_equal(ipc_msg_encode(b, 0, out, &error), 0);
	assert_int_equal(ipc_msg_encode(a, 0, out, &error), 0);
	for (size_t split = 0; split <= str_len(out); split++) {
		struct ipc_decoder *d = ipc_decoder_new(0);
		const char *p = str_c(out), *mid = p + split;
		const char *end = p + str_len(out);
		int r;

		n = 0;
		while ((r = ipc_decoder_feed(d, &p, mid, &msgs[n],
					     &error)) == 1)
			n++;
		assert_int_equal(r, 0);
		while ((r = ipc_decoder_feed(d, &p, end, &msgs[n],
					     &error)) == 1)
			n++;
		assert_int_equal(r, 0);
		assert_int_equal(ipc_decoder_finish(d, &error), 0);
		assert_int_equal(n, 3);
		check_sample(msgs[0]);
		assert_string_equal(ipc_msg_type(msgs[1]), "x");
		assert_int_equal(ipc_msg_nfields(msgs[1]), 0);
		check_sample(msgs[2]);
		free_msgs(msgs, n);
		ipc_decoder_free(&d);
	}
	ipc_msg_free(&a);
	ipc_msg_free(&b);
	str_free(&out);
}

static void test_truncated_at_eof(void **state)
{
	struct ipc_msg *m = sample(), *msgs[MAX_MSGS];
	struct str *out = encode(m);
	const char *error = NULL;
	unsigned int n;

	for (size_t len = 1; len < str_len(out); len++) {
		assert_int_equal(decode(str_c(out), len, len % 2, 0, msgs, &n,
					&error), -1);
		assert_int_equal(n, 0);
		assert_non_null(strstr(error, "closed inside a frame"));
	}
	ipc_msg_free(&m);
	str_free(&out);
}

static void test_oversized_rejected_before_allocation(void **state)
{
	/* 1 MiB + 1 announced: rejected on the prefix alone. */
	const char prefix[4] = { 0, 0x10, 0, 1 };
	struct ipc_decoder *d = ipc_decoder_new(0);
	struct ipc_msg *msg = NULL;
	const char *p = prefix, *error = NULL;

	assert_int_equal(ipc_decoder_max_frame(d), IPC_FRAME_MAX_DEFAULT);
	assert_int_equal(ipc_decoder_feed(d, &p, p + 4, &msg, &error), -1);
	assert_null(msg);
	assert_non_null(strstr(error, "exceeds the limit of 1048576"));
	/* sticky */
	p = prefix;
	assert_int_equal(ipc_decoder_feed(d, &p, p + 1, &msg, &error), -1);
	assert_int_equal(ipc_decoder_finish(d, &error), -1);
	ipc_decoder_free(&d);

	/* The hard cap wins over a larger request; 4 GiB - 1 announced. */
	d = ipc_decoder_new((size_t)1 << 30);
	assert_int_equal(ipc_decoder_max_frame(d), IPC_FRAME_MAX_HARD);
	{
		const char big[4] = { -1, -1, -1, -1 };

		p = big;
		assert_int_equal(ipc_decoder_feed(d, &p, p + 4, &msg, &error),
				 -1);
	}
	ipc_decoder_free(&d);

	/* A small max: a 300-byte message is too large, byte by byte too. */
	{
		struct ipc_msg *m = ipc_msg_new("big"), *msgs[MAX_MSGS];
		char fill[300];
		struct str *out;
		unsigned int n;

		memset(fill, 'x', sizeof(fill));
		ipc_msg_add_str(m, "data", fill, sizeof(fill));
		out = encode(m);
		assert_int_equal(decode(str_c(out), str_len(out), 1, 256,
					msgs, &n, &error), -1);
		assert_non_null(strstr(error, "exceeds the limit of 256"));
		assert_int_equal(decode(str_c(out), str_len(out), 0, 512,
					msgs, &n, &error), 0);
		free_msgs(msgs, n);
		str_clear(out);
		assert_int_equal(ipc_msg_encode(m, 256, out, &error), -1);
		assert_int_equal(str_len(out), 0);
		ipc_msg_free(&m);
		str_free(&out);
	}
}

static void test_garbage_frames(void **state)
{
	/* version, type length, type, id(4), field count(2), fields */
	static const char ok[] = "\x01\x01x\0\0\0\x07\0\x01"
				 "i\x01n\0\0\0\0\0\0\0\x05";
	struct ipc_msg *msgs[MAX_MSGS];
	const char *error = NULL;
	char buf[512], big[300];
	unsigned int n;
	size_t len;
	int64_t v;

	len = frame(buf, ok, sizeof(ok) - 1);
	assert_int_equal(decode(buf, len, 1, 0, msgs, &n, &error), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ipc_msg_id(msgs[0]), 7);
	assert_int_equal(ipc_msg_get_int(msgs[0], "n", &v), 0);
	assert_true(v == 5);
	free_msgs(msgs, n);

	expect_bad_payload("\x02\x01x\0\0\0\0\0\0", 9, "codec version");
	expect_bad_payload("\x01\x01X\0\0\0\0\0\0", 9, "type name");
	expect_bad_payload("\x01\x00\0\0\0\0\0\0\0", 9, "type name");
	expect_bad_payload("\x01\x01x\0\0\0\0\0", 8, "too short");
	expect_bad_payload("\x01\x05x\0\0\0\0\0\0", 9, "truncated");
	expect_bad_payload("\x01\x01x\0\0\0\0\0\x01"
			   "q\x01n\0\0\0\0\0\0\0\x05", 20, "kind");
	expect_bad_payload("\x01\x01x\0\0\0\0\0\x01"
			   "i\x01N\0\0\0\0\0\0\0\x05", 20, "field name");
	expect_bad_payload("\x01\x01x\0\0\0\0\0\x01"
			   "i\x00\0\0\0\0\0\0\0\x05\0", 20, "field name");
	expect_bad_payload("\x01\x01x\0\0\0\0\0\x01"
			   "s\x01n\0\0\0\x09" "abc", 16, "truncated");
	expect_bad_payload("\x01\x01x\0\0\0\0\0\x01"
			   "i\x01n\0\0\0\0\0\0\0\x05zz", 22, "trailing");
	expect_bad_payload("\x01\x01x\0\0\0\0\0\x02"
			   "i\x01n\0\0\0\0\0\0\0\x05", 20, "field count");
	expect_bad_payload("\x01\x01x\0\0\0\0\x10\x01"
			   "i\x01n\0\0\0\0\0\0\0\x05", 20, "field count");
	/* A name of 65 bytes. */
	memcpy(big, "\x01\x01x\0\0\0\0\0\x01s\x41", 11);
	memset(big + 11, 'a', 65);
	memset(big + 76, 0, 4);
	expect_bad_payload(big, 80, "field name");
	/* 64 is fine. */
	big[10] = 0x40;
	memset(big + 75, 0, 4);
	len = frame(buf, big, 79);
	assert_int_equal(decode(buf, len, 0, 0, msgs, &n, &error), 0);
	assert_int_equal(n, 1);
	big[75] = '\0';
	assert_int_equal(ipc_msg_count(msgs[0], big + 11), 1);
	free_msgs(msgs, n);
}

static void test_encode_limits(void **state)
{
	struct ipc_msg *m = ipc_msg_new("many");
	struct str *out = str_new(0, 64);
	const char *error = NULL;

	ipc_msg_add_cstr(m, "a", "0123456789012345678901234567890123456789");
	ipc_msg_add_cstr(m, "b", "0123456789012345678901234567890123456789");
	assert_int_equal(ipc_msg_encode(m, 0, out, &error), -1);
	assert_non_null(strstr(error, "no room"));
	assert_int_equal(str_len(out), 0);
	str_free(&out);
	ipc_msg_free(&m);

	m = ipc_msg_new("many");
	for (int i = 0; i <= IPC_FIELDS_MAX; i++)
		ipc_msg_add_int(m, "i", i);
	assert_int_equal(ipc_msg_count(m, "i"), IPC_FIELDS_MAX);
	out = str_new(0, 1 << 20);
	assert_int_equal(ipc_msg_encode(m, 0, out, &error), -1);
	assert_non_null(strstr(error, "too many"));
	ipc_msg_free(&m);

	/* A value past the hard cap is refused without being read. */
	m = ipc_msg_new("huge");
	ipc_msg_add_str(m, "v", "", IPC_FRAME_MAX_HARD + 1);
	ipc_msg_add_str(m, "w", "", SIZE_MAX);
	assert_int_equal(ipc_msg_nfields(m), 0);
	assert_int_equal(ipc_msg_encode(m, 0, out, &error), -1);
	ipc_msg_free(&m);

	/* Exactly IPC_FIELDS_MAX fields is fine and decodes. */
	m = ipc_msg_new("many");
	for (int i = 0; i < IPC_FIELDS_MAX; i++)
		ipc_msg_add_int(m, "i", i);
	assert_int_equal(ipc_msg_encode(m, 0, out, &error), 0);
	{
		struct ipc_msg *msgs[MAX_MSGS];
		unsigned int n;
		int64_t v;

		assert_int_equal(decode(str_c(out), str_len(out), 0, 0, msgs,
					&n, &error), 0);
		assert_int_equal(ipc_msg_count(msgs[0], "i"), IPC_FIELDS_MAX);
		assert_int_equal(ipc_msg_get_int_nth(msgs[0], "i", 4095, &v),
				 0);
		assert_true(v == 4095);
		free_msgs(msgs, n);
	}
	ipc_msg_free(&m);
	str_free(&out);
}

static const struct ipc_field_spec deliver_spec[] = {
	{ "user", IPC_STR, 1, 1, 16, IPC_SPEC_NO_NUL },
	{ "size", IPC_INT, 1, 1, 0, 0 },
	{ "rcpt", IPC_STR, 1, 3, 0, 0 },
	{ "note", IPC_STR, 0, 0, 0, 0 },
	{ NULL, IPC_INT, 0, 0, 0, 0 },
};

static void expect_rejected(struct ipc_msg *m, const char *what)
{
	const char *error = NULL;

	assert_int_equal(ipc_msg_check(m, deliver_spec, &error), -1);
	assert_non_null(strstr(error, what));
	assert_non_null(strstr(error, "message 'deliver'"));
	ipc_msg_free(&m);
}

static struct ipc_msg *deliver(const char *user, int rcpts)
{
	struct ipc_msg *m = ipc_msg_new("deliver");

	if (user != NULL)
		ipc_msg_add_cstr(m, "user", user);
	ipc_msg_add_int(m, "size", 10);
	for (int i = 0; i < rcpts; i++)
		ipc_msg_add_cstr(m, "rcpt", "r@x");
	return m;
}

static void test_schema_check(void **state)
{
	struct ipc_msg *m = deliver("bob", 3);
	const char *error = NULL;

	assert_int_equal(ipc_msg_check(m, deliver_spec, &error), 0);
	ipc_msg_add_cstr(m, "note", "hi");
	assert_int_equal(ipc_msg_check(m, deliver_spec, &error), 0);
	ipc_msg_add_cstr(m, "note", "again");
	assert_int_equal(ipc_msg_check(m, deliver_spec, &error), -1);
	assert_string_equal(error, "message 'deliver': field 'note' occurs "
			    "2 times, limit 1");
	ipc_msg_free(&m);

	expect_rejected(deliver(NULL, 1), "missing field 'user'");
	expect_rejected(deliver("bob", 0), "missing field 'rcpt'");
	expect_rejected(deliver("bob", 4), "field 'rcpt' occurs 4 times");
	expect_rejected(deliver("bob-has-a-long-name", 1),
		     "field 'user' is 19 bytes, limit 16");
	m = deliver("bob", 1);
	ipc_msg_add_int(m, "extra", 1);
	expect_rejected(m, "unknown field 'extra'");
	m = ipc_msg_new("deliver");
	ipc_msg_add_int(m, "user", 1);
	expect_rejected(m, "field 'user' must be a string");
	m = ipc_msg_new("deliver");
	ipc_msg_add_cstr(m, "size", "10");
	expect_rejected(m, "field 'size' must be an integer");
	m = ipc_msg_new("deliver");
	ipc_msg_add_str(m, "user", "b\0b", 3);
	expect_rejected(m, "field 'user' contains a NUL byte");
}

static void test_hello(void **state)
{
	struct ipc_msg *m = ipc_hello_new("tern-control", 1);
	const char *error = NULL;

	assert_int_equal(ipc_hello_check(m, "tern-control", 1, &error), 0);
	assert_int_equal(ipc_hello_check(m, "tern-control", 2, &error), -1);
	assert_string_equal(error, "message 'hello': peer speaks protocol "
			    "'tern-control' version 1, we need "
			    "'tern-control' version 2");
	assert_int_equal(ipc_hello_check(m, "tern-auth", 1, &error), -1);
	assert_non_null(strstr(error, "we need 'tern-auth'"));
	ipc_msg_add_int(m, "pid", 1);
	assert_int_equal(ipc_hello_check(m, "tern-control", 1, &error), -1);
	assert_non_null(strstr(error, "unknown field 'pid'"));
	ipc_msg_free(&m);

	m = ipc_msg_new("status");
	assert_int_equal(ipc_hello_check(m, "tern-control", 1, &error), -1);
	assert_non_null(strstr(error, "expected a hello"));
	ipc_msg_free(&m);

	m = ipc_msg_new("hello");
	ipc_msg_add_cstr(m, "proto", "tern-control");
	assert_int_equal(ipc_hello_check(m, "tern-control", 1, &error), -1);
	assert_non_null(strstr(error, "missing field 'version'"));
	ipc_msg_free(&m);
}

/* --- channel on libuv ------------------------------------------------- */

struct peer {
	const char *name;
	struct ipc_chan *chan;
	unsigned int msgs;
	uint32_t last_id;
	char last_type[IPC_TYPE_MAX + 1];
	int closed;
	char error[256];
	int reply;		/* answer "ping" with "pong" */
	int close_on_msg;
	struct ipc_msg *kept;
	uv_pipe_t *listener;
};

static void peer_msg(struct ipc_chan *chan, struct ipc_msg **msg, void *ctx)
{
	struct peer *p = ctx;
	const char *error;

	assert_ptr_equal(ipc_chan_ctx(chan), p);
	p->msgs++;
	p->last_id = ipc_msg_id(*msg);
	str_lcpy(p->last_type, ipc_msg_type(*msg), sizeof(p->last_type));
	if (p->reply && ipc_msg_type_is(*msg, "ping")) {
		struct ipc_msg *r = ipc_msg_new("pong");

		ipc_msg_set_id(r, ipc_msg_id(*msg));
		assert_int_equal(ipc_chan_send(chan, r, &error), 0);
		ipc_msg_free(&r);
	}
	if (ipc_msg_type_is(*msg, "keep")) {
		p->kept = *msg;
		*msg = NULL;
	}
	if (p->close_on_msg || ipc_msg_type_is(*msg == NULL ? p->kept : *msg,
						"quit")) {
		/* The channel the message came on, not p->chan: a server
		 * may have accepted another connection since. */
		if (p->chan == chan)
			p->chan = NULL;
		ipc_chan_close(&chan);
		if (p->listener != NULL &&
		    !uv_is_closing((uv_handle_t *)p->listener))
			uv_close((uv_handle_t *)p->listener, NULL);
	}
}

static void peer_close(struct ipc_chan *chan, const char *error, void *ctx)
{
	struct peer *p = ctx;

	p->closed++;
	/* Only if it is this one: the close of an old connection must not
	 * forget a newer one. */
	if (p->chan == chan)
		p->chan = NULL;
	if (error != NULL)
		str_lcpy(p->error, error, sizeof(p->error));
}

static struct ipc_chan_settings peer_settings(struct peer *p,
					      const char *proto,
					      int64_t version)
{
	struct ipc_chan_settings set = {
		.proto = proto,
		.version = version,
		.on_msg = peer_msg,
		.on_close = peer_close,
		.ctx = p,
	};
	return set;
}

static void open_pair(uv_loop_t *loop, struct peer *srv, struct peer *cli,
		      int64_t cli_version)
{
	struct ipc_chan_settings s = peer_settings(srv, "tern-test", 1);
	struct ipc_chan_settings c = peer_settings(cli, "tern-test",
						   cli_version);
	const char *error = NULL;
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	srv->chan = ipc_chan_open_fd(loop, sv[0], IPC_CHAN_SERVER, &s, &error);
	assert_non_null(srv->chan);
	cli->chan = ipc_chan_open_fd(loop, sv[1], IPC_CHAN_CLIENT, &c, &error);
	assert_non_null(cli->chan);
}

static void loop_done(uv_loop_t *loop)
{
	assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(loop), 0);
}

static void test_chan_request_reply(void **state)
{
	struct peer srv = { .name = "srv", .reply = 1 };
	struct peer cli = { .name = "cli" };
	struct ipc_msg *m = ipc_msg_new("ping");
	const char *error = NULL;
	uv_loop_t loop;

	uv_loop_init(&loop);
	open_pair(&loop, &srv, &cli, 1);
	/* Held until the hello arrives. */
	ipc_msg_set_id(m, 77);
	assert_int_equal(ipc_chan_send(cli.chan, m, &error), 0);
	assert_false(ipc_chan_ready(cli.chan));
	assert_true(ipc_chan_output_pending(cli.chan) > 0);
	ipc_msg_free(&m);
	while (cli.msgs == 0)
		uv_run(&loop, UV_RUN_ONCE);
	assert_true(ipc_chan_ready(cli.chan));
	assert_int_equal(srv.msgs, 1);
	assert_string_equal(cli.last_type, "pong");
	assert_int_equal(cli.last_id, 77);
	{
		pid_t pid;
		uid_t uid;
		gid_t gid;

		assert_int_equal(ipc_chan_peer_cred(srv.chan, &pid, &uid, &gid,
						    &error), 0);
		assert_int_equal(pid, getpid());
		assert_int_equal(uid, getuid());
	}
	/* A message kept by the callback survives it. */
	m = ipc_msg_new("keep");
	ipc_msg_add_cstr(m, "v", "still here");
	assert_int_equal(ipc_chan_send(cli.chan, m, &error), 0);
	ipc_msg_free(&m);
	while (srv.kept == NULL)
		uv_run(&loop, UV_RUN_ONCE);
	assert_int_equal(ipc_msg_get_cstr(srv.kept, "v", &error), 0);
	assert_string_equal(error, "still here");
	ipc_msg_free(&srv.kept);

	ipc_chan_close(&cli.chan);
	assert_null(cli.chan);
	assert_int_equal(cli.closed, 0);	/* only from the loop */
	loop_done(&loop);
	assert_int_equal(cli.closed, 1);
	assert_int_equal(cli.error[0], '\0');
	assert_int_equal(srv.closed, 1);
	assert_int_equal(srv.error[0], '\0');	/* EOF between frames */
}

static void test_chan_hello_mismatch(void **state)
{
	struct peer srv = { .name = "srv" }, cli = { .name = "cli" };
	uv_loop_t loop;

	uv_loop_init(&loop);
	open_pair(&loop, &srv, &cli, 2);
	loop_done(&loop);
	assert_int_equal(cli.closed, 1);
	assert_int_equal(cli.msgs, 0);
	assert_non_null(strstr(cli.error, "version 1, we need 'tern-test' "
			       "version 2"));
	assert_int_equal(srv.closed, 1);
}

/* The peer at raw never reads: the output limit must close the channel. */
static void test_chan_output_limit(void **state)
{
	struct peer srv = { .name = "srv" };
	struct ipc_chan_settings s = peer_settings(&srv, NULL, 0);
	struct ipc_msg *m = ipc_msg_new("flood");
	const char *error = NULL;
	char fill[200];
	uv_loop_t loop;
	int sv[2], i;

	memset(fill, 'f', sizeof(fill));
	ipc_msg_add_str(m, "data", fill, sizeof(fill));
	uv_loop_init(&loop);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	s.max_frame = 256;
	s.output_limit = 4096;
	srv.chan = ipc_chan_open_fd(&loop, sv[0], IPC_CHAN_SERVER, &s, &error);
	assert_non_null(srv.chan);
	for (i = 0; i < 1000000; i++) {
		if (ipc_chan_send(srv.chan, m, &error) < 0)
			break;
		assert_true(ipc_chan_output_pending(srv.chan) <= 4096);
		uv_run(&loop, UV_RUN_NOWAIT);
	}
	assert_true(i < 1000000);
	assert_non_null(strstr(error, "output limit"));
	assert_int_equal(ipc_chan_send(srv.chan, m, &error), -1);
	assert_non_null(strstr(error, "closed"));
	loop_done(&loop);
	assert_int_equal(srv.closed, 1);
	assert_non_null(strstr(srv.error, "not reading"));
	ipc_msg_free(&m);
	close(sv[1]);
}

/* What the peer writes on a raw socket ends the channel with error. */
static void raw_peer(const void *data, size_t len, const char *what)
{
	struct peer srv = { .name = "srv" };
	struct ipc_chan_settings s = peer_settings(&srv, NULL, 0);
	const char *error = NULL;
	uv_loop_t loop;
	int sv[2];

	uv_loop_init(&loop);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	srv.chan = ipc_chan_open_fd(&loop, sv[0], IPC_CHAN_SERVER, &s, &error);
	assert_non_null(srv.chan);
	assert_int_equal(write(sv[1], data, len), (ssize_t)len);
	close(sv[1]);
	loop_done(&loop);
	assert_int_equal(srv.closed, 1);
	assert_non_null(strstr(srv.error, what));
}

static void test_chan_bad_input(void **state)
{
	struct ipc_msg *m = sample();
	struct str *out = encode(m);

	raw_peer("\0\0\0\x09\x01\x01X\0\0\0\0\0\0", 13, "type name");
	raw_peer("\x7f\0\0\0", 4, "exceeds the limit");
	raw_peer(str_c(out), str_len(out) - 1, "closed inside a frame");
	ipc_msg_free(&m);
	str_free(&out);
}

/* --- connect, listen and the blocking client ------------------------- */

static char sock_dir[64];
static char sock_path[128];

static int setup_sock(void **state)
{
	str_lcpy(sock_dir, "/tmp/tern-test-ipc.XXXXXX", sizeof(sock_dir));
	if (mkdtemp(sock_dir) == NULL)
		return -1;
	snprintf(sock_path, sizeof(sock_path), "%s/ctl", sock_dir);
	return 0;
}

static int teardown_sock(void **state)
{
	unlink(sock_path);
	rmdir(sock_dir);
	return 0;
}

#define SERVER_CHANS 8

struct server {
	uv_loop_t loop;
	uv_pipe_t listener;
	uv_async_t stop;	/* sent by the main thread: close everything */
	uv_thread_t tid;
	struct peer peer;
	struct ipc_chan *chans[SERVER_CHANS];	/* accepted, not yet closed */
	unsigned int errors;	/* in the server thread: no cmocka there */
};

static void server_chan_closed(struct ipc_chan *chan, const char *error,
			       void *ctx)
{
	struct server *s = (struct server *)((char *)ctx -
					     offsetof(struct server, peer));

	for (unsigned int i = 0; i < SERVER_CHANS; i++) {
		if (s->chans[i] == chan)
			s->chans[i] = NULL;
	}
	peer_close(chan, error, ctx);
}

static void server_conn(uv_stream_t *listener, int status)
{
	struct server *s = listener->data;
	struct ipc_chan_settings set = peer_settings(&s->peer, "tern-test", 1);
	struct ipc_chan *chan;
	const char *error = NULL;
	unsigned int i;

	set.on_close = server_chan_closed;
	if (status < 0) {
		s->errors++;
		return;
	}
	chan = ipc_chan_accept(listener, &set, &error);
	if (chan == NULL) {
		s->errors++;
		return;
	}
	for (i = 0; i < SERVER_CHANS && s->chans[i] != NULL; i++)
		;
	if (i == SERVER_CHANS) {
		s->errors++;
		ipc_chan_close(&chan);
		return;
	}
	s->chans[i] = chan;
	s->peer.chan = chan;
}

static void server_init(struct server *s)
{
	memset(s, 0, sizeof(*s));
	unlink(sock_path);
	assert_int_equal(uv_loop_init(&s->loop), 0);
	assert_int_equal(uv_pipe_init(&s->loop, &s->listener, 0), 0);
	s->listener.data = s;
	assert_int_equal(uv_pipe_bind(&s->listener, sock_path), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&s->listener, 4,
				   server_conn), 0);
	s->peer.name = "server";
	s->peer.reply = 1;
	s->peer.listener = &s->listener;
}

static void test_chan_connect(void **state)
{
	struct server s;
	struct peer cli = { .name = "cli" };
	struct ipc_chan_settings c = peer_settings(&cli, "tern-test", 1);
	struct ipc_msg *m = ipc_msg_new("ping");
	const char *error = NULL;

	server_init(&s);
	cli.chan = ipc_chan_connect(&s.loop, sock_path, &c, &error);
	assert_non_null(cli.chan);
	ipc_msg_set_id(m, 5);
	assert_int_equal(ipc_chan_send(cli.chan, m, &error), 0);
	ipc_msg_free(&m);
	while (cli.msgs == 0)
		uv_run(&s.loop, UV_RUN_ONCE);
	assert_string_equal(cli.last_type, "pong");
	m = ipc_msg_new("quit");
	assert_int_equal(ipc_chan_send(cli.chan, m, &error), 0);
	ipc_msg_free(&m);
	loop_done(&s.loop);
	assert_int_equal(cli.closed, 1);
	assert_string_equal(cli.error, "");
	assert_int_equal(s.peer.closed, 1);

	/* Nobody listening: the error comes through on_close. */
	memset(&cli, 0, sizeof(cli));
	uv_loop_init(&s.loop);
	cli.chan = ipc_chan_connect(&s.loop, sock_path, &c, &error);
	assert_non_null(cli.chan);
	loop_done(&s.loop);
	assert_int_equal(cli.closed, 1);
	assert_non_null(strstr(cli.error, "connect"));
}

static void server_thread(void *arg)
{
	struct server *s = arg;

	uv_run(&s->loop, UV_RUN_DEFAULT);
}

/* In the server thread: close every handle, so uv_run returns whatever
 * the connections were doing. */
static void server_stop_cb(uv_async_t *async)
{
	struct server *s = async->data;

	if (!uv_is_closing((uv_handle_t *)&s->listener))
		uv_close((uv_handle_t *)&s->listener, NULL);
	for (unsigned int i = 0; i < SERVER_CHANS; i++) {
		struct ipc_chan *chan = s->chans[i];

		/* Removed from chans by server_chan_closed. */
		ipc_chan_close(&chan);
	}
	uv_close((uv_handle_t *)async, NULL);
}

static void server_start(struct server *s)
{
	assert_int_equal(uv_async_init(&s->loop, &s->stop, server_stop_cb),
			 0);
	s->stop.data = s;
	assert_int_equal(uv_thread_create(&s->tid, server_thread, s), 0);
}

/* Stops the server thread explicitly: no message has to reach it, so the
 * end does not depend on which connection it saw first. */
static void server_stop(struct server *s)
{
	assert_int_equal(uv_async_send(&s->stop), 0);
	assert_int_equal(uv_thread_join(&s->tid), 0);
	assert_int_equal(uv_loop_close(&s->loop), 0);
	assert_int_equal(s->errors, 0);
}

static void test_blocking_client(void **state)
{
	struct ipc_client *c = ipc_client_new(0);
	struct ipc_msg *m, *r = NULL;
	const char *error = NULL;
	struct server s;

	assert_int_equal(ipc_client_connect(c, "/nonexistent/tern.sock", 100,
					    &error), -1);
	assert_non_null(strstr(error, "connect to /nonexistent/tern.sock"));
	assert_false(ipc_client_is_connected(c));

	server_init(&s);
	server_start(&s);
	assert_int_equal(ipc_client_connect(c, sock_path, 1000, &error), 0);
	assert_int_equal(ipc_client_hello(c, "tern-test", 1, 1000, &error), 0);

	m = ipc_msg_new("ping");
	ipc_msg_set_id(m, 99);
	assert_int_equal(ipc_client_send(c, m, 1000, &error), 0);
	ipc_msg_free(&m);
	assert_int_equal(ipc_client_recv(c, 1000, &r, &error), 0);
	assert_string_equal(ipc_msg_type(r), "pong");
	assert_int_equal(ipc_msg_id(r), 99);
	ipc_msg_free(&r);

	/* No answer to this one: a timeout, and the connection stays. */
	m = ipc_msg_new("silence");
	assert_int_equal(ipc_client_send(c, m, 1000, &error), 0);
	ipc_msg_free(&m);
	assert_int_equal(ipc_client_recv(c, 50, &r, &error), -1);
	assert_non_null(strstr(error, "timed out"));
	assert_true(ipc_client_is_connected(c));

	m = ipc_msg_new("quit");
	assert_int_equal(ipc_client_send(c, m, 1000, &error), 0);
	ipc_msg_free(&m);
	assert_int_equal(ipc_client_recv(c, 2000, &r, &error), -1);
	assert_non_null(strstr(error, "closed by the server"));
	assert_false(ipc_client_is_connected(c));

	server_stop(&s);
	assert_int_equal(s.peer.closed, 1);
	ipc_client_free(&c);
	assert_null(c);
}

static void test_blocking_client_wrong_proto(void **state)
{
	struct ipc_client *c = ipc_client_new(0);
	struct ipc_msg *m;
	const char *error = NULL;
	struct server s;

	server_init(&s);
	s.peer.close_on_msg = 1;
	server_start(&s);
	assert_int_equal(ipc_client_connect(c, sock_path, 1000, &error), 0);
	assert_int_equal(ipc_client_hello(c, "tern-other", 1, 1000, &error),
			 -1);
	assert_non_null(strstr(error, "peer speaks protocol 'tern-test'"));
	assert_false(ipc_client_is_connected(c));

	/* The server still takes connections after a refused hello. */
	assert_int_equal(ipc_client_connect(c, sock_path, 1000, &error), 0);
	assert_int_equal(ipc_client_hello(c, "tern-test", 1, 1000, &error), 0);
	m = ipc_msg_new("bye");
	assert_int_equal(ipc_client_send(c, m, 1000, &error), 0);
	ipc_msg_free(&m);
	/* close_on_msg: the server ends this connection, not the first. */
	assert_int_equal(ipc_client_recv(c, 2000, &m, &error), -1);
	assert_non_null(strstr(error, "closed by the server"));

	server_stop(&s);
	assert_int_equal(s.peer.closed, 2);
	ipc_client_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_whole_and_bytewise),
		cmocka_unit_test(test_several_frames_split_everywhere),
		cmocka_unit_test(test_truncated_at_eof),
		cmocka_unit_test(test_oversized_rejected_before_allocation),
		cmocka_unit_test(test_garbage_frames),
		cmocka_unit_test(test_encode_limits),
		cmocka_unit_test(test_schema_check),
		cmocka_unit_test(test_hello),
		cmocka_unit_test(test_chan_request_reply),
		cmocka_unit_test(test_chan_hello_mismatch),
		cmocka_unit_test(test_chan_output_limit),
		cmocka_unit_test(test_chan_bad_input),
		cmocka_unit_test_setup_teardown(test_chan_connect, setup_sock,
						teardown_sock),
		cmocka_unit_test_setup_teardown(test_blocking_client,
						setup_sock, teardown_sock),
		cmocka_unit_test_setup_teardown(
			test_blocking_client_wrong_proto, setup_sock,
			teardown_sock),
	};
	/* A last bound for any wait: a hang kills the run instead of
	 * stalling make check. */
	alarm(300);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
