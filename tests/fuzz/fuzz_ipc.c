/*
 * fuzz_ipc.c: libFuzzer target for the IPC decoder (common/ipc.c).
 *
 * The first input byte picks the frame limit and how the rest is split; the
 * rest is a byte stream from a peer.  Checked: the split does not change
 * the outcome, every decoded frame re-encodes to exactly the bytes it came
 * from, and the getters and the schema check hold on whatever decoded.
 */
#include "config.h"

#include "compat.h"

#include <stdint.h>
#include <stdlib.h>

#include "ipc.h"
#include "str.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_MSGS 64

static const struct ipc_field_spec fuzz_spec[] = {
	{ "user", IPC_STR, 1, 1, 64, IPC_SPEC_NO_NUL },
	{ "n", IPC_INT, 0, 4, 0, 0 },
	{ "rcpt", IPC_STR, 0, 100, 0, 0 },
	{ NULL, IPC_INT, 0, 0, 0, 0 },
};

static void fuzz_check_msg(struct ipc_msg *m, const char *frame, size_t len)
{
	struct str *out = str_new(len, IPC_FRAME_MAX_HARD + IPC_FRAME_PREFIX);
	const char *error, *name, *p;
	enum ipc_kind kind;
	size_t vlen;
	int64_t v;

	if (ipc_msg_encode(m, 0, out, &error) < 0 || str_len(out) != len ||
	    memcmp(str_c(out), frame, len) != 0)
		abort();
	for (unsigned int i = 0; i < ipc_msg_nfields(m); i++) {
		unsigned int n;

		if (ipc_msg_field(m, i, &name, &kind) < 0)
			abort();
		n = ipc_msg_count(m, name);
		if (n == 0)
			abort();
		if (kind == IPC_STR &&
		    ipc_msg_get_str_nth(m, name, n - 1, &p, &vlen) < 0)
			abort();
		if (kind == IPC_INT &&
		    ipc_msg_get_int_nth(m, name, n - 1, &v) < 0)
			abort();
	}
	(void)!ipc_msg_check(m, fuzz_spec, &error);
	(void)!ipc_hello_check(m, "tern-fuzz", 1, &error);
	str_free(&out);
}

/* Decodes in pieces of step bytes (0 = whole); returns messages or -1. */
static int fuzz_decode(const char *in, size_t len, size_t max, size_t step,
		       int check)
{
	struct ipc_decoder *d = ipc_decoder_new(max);
	const char *p = in, *end = in + len, *error;
	int count = 0, r = 0;

	while (p < end && r >= 0) {
		const char *stop = step == 0 || (size_t)(end - p) < step ?
				   end : p + step;
		const char *start = p;
		struct ipc_msg *m;

		while ((r = ipc_decoder_feed(d, &p, stop, &m, &error)) == 1) {
			if (check)
				fuzz_check_msg(m, start, (size_t)(p - start));
			start = p;
			ipc_msg_free(&m);
			count++;
		}
	}
	if (r == 0 && ipc_decoder_finish(d, &error) < 0)
		r = -1;
	ipc_decoder_free(&d);
	return r < 0 ? -1 - count : count;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t maxes[] = { 0, 256, 300, 4096 };
	size_t max, step;

	if (size < 1)
		return 0;
	max = maxes[data[0] & 3];
	step = (data[0] >> 2) & 7;
	data++;
	size--;
	if (fuzz_decode((const char *)data, size, max, 0, 1) !=
	    fuzz_decode((const char *)data, size, max, step + 1, 0))
		abort();
	return 0;
}
