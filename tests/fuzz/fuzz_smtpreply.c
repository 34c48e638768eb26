/*
 * fuzz_smtpreply.c: the SMTP/LMTP reply parser of common/smtpclient, and
 * the dot-stuffing of outgoing messages.
 *
 * The first byte seeds the chunk sizes.  The input is parsed whole and in
 * chunks; both ways must give the same replies (code, status, text) and
 * the same verdict, codes must lie in 200..599 and texts within their
 * bound.  The input is also dot-stuffed: the result must end in ".\r\n",
 * and unstuffing it must give the input back (with a CRLF added when the
 * input did not end in LF).
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "smtpclient.h"
#include "str.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Replies as "code status text\0" into trace; -1 on a parser error. */
static int parse(const char *in, size_t len, uint8_t seed, struct str *trace)
{
	struct smtp_reply_parser *p = smtp_reply_parser_new();
	const char *pos = in, *end = in + len, *error;
	const struct smtp_reply *r;
	int ret = 0;

	while (pos < end && ret == 0) {
		size_t step = seed == 0 ? len : (size_t)(seed % 7) + 1;
		const char *ce = (size_t)(end - pos) < step ? end : pos + step;
		int x;

		while (pos < ce &&
		       (x = smtp_reply_parser_feed(p, &pos, ce, &r,
						   &error)) != 0) {
			if (x < 0) {
				ret = -1;
				break;
			}
			if (r->code < 200 || r->code > 599 ||
			    str_len(r->text) > SMTPCLIENT_TEXT_MAX)
				abort();
			if (str_printf(trace, "%u %s %s", r->code,
				       r->enhanced, str_c(r->text)) < 0 ||
			    str_append_byte(trace, 0) < 0)
				abort();
		}
		seed = (uint8_t)(seed * 31 + 7);
	}
	smtp_reply_parser_free(&p);
	return ret;
}

static void check_stuff(const char *in, size_t len)
{
	struct str *out = str_new(0, len * 2 + 16);
	struct str *back = str_new(0, len * 2 + 16);
	const char *s, *end;

	if (smtpclient_stuff(out, in, len) < 0)
		abort();
	s = str_c(out);
	end = s + str_len(out);
	if (str_len(out) < 3 || memcmp(end - 3, ".\r\n", 3) != 0)
		abort();
	end -= 3;
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		size_t n = nl != NULL ? (size_t)(nl - s) + 1 : (size_t)(end - s);

		if (*s == '.') {
			s++;
			n--;
		}
		if (str_append(back, s, n) < 0)
			abort();
		s += n;
	}
	if (len > 0 && in[len - 1] != '\n') {
		if (str_len(back) != len + 2 ||
		    memcmp(str_c(back) + len, "\r\n", 2) != 0)
			abort();
	} else if (str_len(back) != len) {
		abort();
	}
	if (memcmp(str_c(back), in, len) != 0)
		abort();
	str_free(&out);
	str_free(&back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct str *a, *b;
	const char *in = (const char *)data + 1;
	int ra, rb;

	if (size < 1)
		return 0;
	a = str_new(0, 1 << 24);
	b = str_new(0, 1 << 24);
	ra = parse(in, size - 1, 0, a);
	rb = parse(in, size - 1, data[0] | 1, b);
	/* Chunked parsing may stop earlier at the same error; the replies
	 * before it must agree. */
	if (ra != rb || (ra == 0 && (str_len(a) != str_len(b) ||
				     memcmp(str_c(a), str_c(b),
					    str_len(a)) != 0)))
		abort();
	check_stuff(in, size - 1);
	str_free(&a);
	str_free(&b);
	return 0;
}
