/*
 * fuzz_pop3proto.c: the POP3 command parser, AUTH PLAIN decoding and the
 * RETR/TOP encoder.
 *
 * The first byte picks the mode, the second seeds the chunk sizes.
 * Commands: the input is parsed whole and in chunks; both ways must give
 * the same results, errors must be "-ERR" replies, and each AUTH PLAIN
 * initial response is decoded.  Encoder: the input is encoded whole and in
 * chunks into output buffers of two sizes (RETR and a TOP line count from
 * the seed); both must agree, the output must end in CRLF.CRLF, every line
 * must end in CRLF and no line may be a lone "." before the end.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>

#include "compat.h"
#include "pop3proto.h"
#include "str.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void parse_all(const char *in, size_t len, uint8_t seed,
		      struct str *trace)
{
	struct pop3_parser *p = pop3_parser_new(300);
	struct str *buf = str_new(64, POP3_SASL_MAX + 1);
	const char *pos = in, *end = in + len;

	while (pos < end) {
		size_t step = seed == 0 ? len : (size_t)(seed % 11) + 1;
		const char *ce = (size_t)(end - pos) < step ? end : pos + step;
		struct pop3_cmd cmd;
		const char *error, *z, *c, *pw;
		int r;

		while ((r = pop3_parser_feed(p, &pos, ce, &cmd, &error)) != 0) {
			if (r < 0) {
				if (strncmp(error, "-ERR ", 5) != 0)
					abort();
				(void)str_printf(trace, "E%s\n", error);
				continue;
			}
			(void)str_printf(trace, "%d|%s|%s|%u|%llu\n", cmd.verb,
					 cmd.name, cmd.arg, cmd.msg,
					 (unsigned long long)cmd.lines);
			if (cmd.verb == POP3_AUTH && cmd.initial == NULL)
				pop3_parser_expect_sasl(p);
			if (cmd.initial != NULL &&
			    pop3_sasl_plain_decode(cmd.initial,
						   strlen(cmd.initial), buf,
						   &z, &c, &pw) == 0 &&
			    (c[0] == '\0' || pw[0] == '\0'))
				abort();
		}
		seed = (uint8_t)(seed * 31 + 7);
	}
	str_free(&buf);
	pop3_parser_free(&p);
}

static void fuzz_commands(const char *in, size_t len, uint8_t seed)
{
	struct str *a = str_new(0, 1 << 24), *b = str_new(0, 1 << 24);

	parse_all(in, len, 0, a);
	parse_all(in, len, seed | 1, b);
	if (str_len(a) != str_len(b) ||
	    memcmp(str_c(a), str_c(b), str_len(a)) != 0)
		abort();
	str_free(&a);
	str_free(&b);
}

static struct str *encode(const char *in, size_t len, int64_t lines,
			  uint8_t seed, size_t room)
{
	struct pop3_body *b = pop3_body_new(lines);
	struct str *out = str_new(0, room);
	struct str *all = str_new(0, 1 << 24);
	const char *pos = in, *end = in + len;
	int r = 0;

	while (pos < end && r != 1) {
		size_t step = seed == 0 ? len : (size_t)(seed % 13) + 1;
		const char *ce = (size_t)(end - pos) < step ? end : pos + step;

		while ((r = pop3_body_feed(b, &pos, ce, out)) == -1) {
			if (str_append(all, str_c(out), str_len(out)) < 0)
				abort();
			str_clear(out);
		}
		seed = (uint8_t)(seed * 31 + 7);
	}
	while (pop3_body_finish(b, out) < 0) {
		if (str_append(all, str_c(out), str_len(out)) < 0)
			abort();
		str_clear(out);
	}
	if (str_append(all, str_c(out), str_len(out)) < 0 ||
	    pop3_body_written(b) != str_len(all))
		abort();
	str_free(&out);
	pop3_body_free(&b);
	return all;
}

static void check_encoded(const struct str *s)
{
	const char *d = str_c(s), *end = d + str_len(s);

	if (str_len(s) < 3 || memcmp(end - 3, ".\r\n", 3) != 0)
		abort();
	if (str_len(s) > 3 && memcmp(end - 5, "\r\n", 2) != 0)
		abort();
	for (const char *l = d; l < end;) {
		const char *cr = memchr(l, '\r', (size_t)(end - l));
		const char *lf = memchr(l, '\n', (size_t)(end - l));

		if (cr == NULL || lf != cr + 1)
			abort();
		if (cr == l + 1 && *l == '.' && cr + 2 != end)
			abort();	/* a lone dot before the end */
		l = cr + 2;
	}
}

static void fuzz_encoder(const char *in, size_t len, uint8_t seed)
{
	int64_t lines[2] = { -1, seed % 5 };

	for (size_t i = 0; i < 2; i++) {
		struct str *a = encode(in, len, lines[i], 0, 1 << 16);
		struct str *b = encode(in, len, lines[i], seed | 1, 4);

		if (str_len(a) != str_len(b) ||
		    memcmp(str_c(a), str_c(b), str_len(a)) != 0)
			abort();
		check_encoded(a);
		str_free(&a);
		str_free(&b);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	if (data[0] & 1)
		fuzz_commands((const char *)data + 2, size - 2, data[1]);
	else
		fuzz_encoder((const char *)data + 2, size - 2, data[1]);
	return 0;
}
