/*
 * fuzz_smtpproto.c: the SMTP command parser and the DATA reader.
 *
 * The first byte picks the mode.  Commands: each line of the input is
 * parsed with and without SMTPUTF8; a parsed path must be a substring of
 * the line.  DATA: the input is read whole and in chunks whose sizes come
 * from the input itself, into output buffers of two sizes; every way must
 * give the same message, flags, size and end position.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>

#include "compat.h"
#include "smtpproto.h"
#include "str.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_commands(const char *in, size_t len)
{
	const char *p = in, *end = in + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		char *line = malloc(n + 1);
		struct smtp_cmd cmd;
		const char *error;

		for (unsigned flags = 0; flags <= SMTP_PARSE_UTF8; flags++) {
			memcpy(line, p, n);
			line[n] = '\0';
			if (smtp_cmd_parse(line, n, flags, &cmd, &error) == 0) {
				if (cmd.path < line || cmd.path > line + n) {
					if (cmd.path[0] != '\0')
						abort();
				}
				for (size_t i = 0; i < cmd.nparams; i++) {
					if (cmd.params[i].keyword[0] == '\0')
						abort();
				}
			} else if (error == NULL || error[0] != '5') {
				abort();
			}
		}
		free(line);
		p += n + (nl != NULL);
	}
}

struct outcome {
	struct str *msg;
	unsigned flags;
	uint64_t size;
	int ended;
	size_t consumed;
};

static struct outcome read_data(const char *in, size_t len, uint8_t seed,
				size_t room, enum smtp_data_mode mode)
{
	struct smtp_data *d = smtp_data_new(mode, 4096);
	struct str *out = str_new(0, room);
	struct outcome o = { .msg = str_new(0, 1 << 22) };
	const char *pos = in, *end = in + len;

	while (pos < end && !o.ended) {
		size_t step = seed == 0 ? len : (size_t)(seed % 13) + 1;
		const char *ce = (size_t)(end - pos) < step ? end : pos + step;
		int r;

		while ((r = smtp_data_feed(d, &pos, ce, out)) == -1) {
			if (str_append(o.msg, str_c(out), str_len(out)) < 0)
				abort();
			str_clear(out);
		}
		o.ended = r == 1;
		seed = (uint8_t)(seed * 31 + 7);
	}
	if (str_append(o.msg, str_c(out), str_len(out)) < 0)
		abort();
	o.flags = smtp_data_flags(d);
	o.size = smtp_data_size(d);
	o.consumed = (size_t)(pos - in);
	str_free(&out);
	smtp_data_free(&d);
	return o;
}

static void fuzz_data(const char *in, size_t len, uint8_t seed)
{
	for (int mode = SMTP_DATA_STRICT; mode <= SMTP_DATA_NORMALIZE; mode++) {
		struct outcome a = read_data(in, len, 0, 1 << 16, mode);
		struct outcome b = read_data(in, len, seed | 1, 4, mode);

		if (a.flags != b.flags || a.size != b.size ||
		    a.ended != b.ended || a.consumed != b.consumed ||
		    str_len(a.msg) != str_len(b.msg) ||
		    memcmp(str_c(a.msg), str_c(b.msg), str_len(a.msg)) != 0)
			abort();
		if (str_len(a.msg) > 4096)
			abort();
		str_free(&a.msg);
		str_free(&b.msg);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	if (data[0] & 1)
		fuzz_commands((const char *)data + 2, size - 2);
	else
		fuzz_data((const char *)data + 2, size - 2, data[1]);
	return 0;
}
