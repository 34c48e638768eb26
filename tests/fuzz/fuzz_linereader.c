/*
 * fuzz_linereader.c: libFuzzer target for the line reader
 * (common/linereader.c).
 *
 * Byte 0 picks the mode (bare LF accepted or not, IMAP literals on "{N}"),
 * byte 1 max_line (1..64), byte 2 the split size; the rest is peer input.
 * Checked: the split does not change the events; no line is longer than
 * max_line or holds a line end it should have been cut at; the reader
 * never holds more than max_line bytes (plus a held-back CR); literal
 * chunks point into the input.
 */
#include "config.h"

#include "compat.h"

#include <stdint.h>
#include <stdlib.h>

#include "linereader.h"
#include "str.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_opts {
	int strict;
	int literals;
	size_t max;
};

static void fuzz_line_invariants(const struct fuzz_opts *o,
				 const struct linereader_line *l)
{
	int has_cr = memchr(l->data, '\r', l->len) != NULL;
	int has_lf = memchr(l->data, '\n', l->len) != NULL;

	if (l->len > o->max)
		abort();
	if (!o->strict && has_lf)
		abort();
	if (has_cr != ((l->flags & LINEREADER_F_BARE_CR) != 0) ||
	    has_lf != ((l->flags & LINEREADER_F_BARE_LF) != 0))
		abort();
	if (o->strict && (l->flags & LINEREADER_F_BARE_LF_END) != 0)
		abort();
}

/* "{N}" at the end of a line with N < 1000 announces a literal. */
static uint64_t fuzz_literal(const struct linereader_line *l)
{
	uint64_t n = 0, mul = 1;
	size_t i;

	if (l->len < 3 || l->data[l->len - 1] != '}')
		return 0;
	for (i = l->len - 2; i > 0 && l->data[i] >= '0' &&
	     l->data[i] <= '9' && mul < 1000; i--) {
		n += (uint64_t)(l->data[i] - '0') * mul;
		mul *= 10;
	}
	return l->data[i] == '{' && i < l->len - 2 ? n : 0;
}

static void fuzz_event(struct str *t, int r, const struct linereader_line *l)
{
	char head[32];
	int ok;

	if (r == LINEREADER_LITERAL) {
		/* joined: chunk sizes depend on the split */
		ok = str_append(t, l->data, l->len) == 0 &&
		     ((l->flags & LINEREADER_F_LITERAL_END) == 0 ||
		      str_append_c(t, "|X") == 0);
	} else {
		snprintf(head, sizeof(head), "|%c%x:%zu:", r == 1 ? 'L' : 'T',
			 l->flags, l->len);
		ok = str_append_c(t, head) == 0 &&
		     (r != 1 || str_append(t, l->data, l->len) == 0);
	}
	if (!ok)
		abort();
}

static struct str *fuzz_run(const struct fuzz_opts *o, const char *in,
			    size_t len, size_t step)
{
	struct linereader *lr = linereader_new(o->max);
	struct str *t = str_new(0, 64 * len + 64);
	const char *p = in, *end = in + len;
	struct linereader_line l;

	linereader_set_bare_lf(lr, !o->strict);
	while (p < end) {
		const char *stop = step == 0 || (size_t)(end - p) < step ?
				   end : p + step;
		int r;

		while ((r = linereader_feed(lr, &p, stop, &l)) != 0) {
			fuzz_event(t, r, &l);
			if (r == LINEREADER_LINE)
				fuzz_line_invariants(o, &l);
			if (r == LINEREADER_LITERAL &&
			    (l.data < in || l.data + l.len > end))
				abort();
			if (r == LINEREADER_LINE && o->literals &&
			    linereader_expect_literal(lr, fuzz_literal(&l)) < 0)
				abort();
		}
		if (p != stop || linereader_buffered(lr) > o->max + 1)
			abort();
	}
	linereader_free(&lr);
	return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_opts o;
	struct str *a, *b;
	size_t step;

	if (size < 3)
		return 0;
	o.strict = data[0] & 1;
	o.literals = (data[0] >> 1) & 1;
	o.max = 1 + (data[1] & 63);
	step = 1 + (data[2] & 15);
	a = fuzz_run(&o, (const char *)data + 3, size - 3, 0);
	b = fuzz_run(&o, (const char *)data + 3, size - 3, step);
	if (str_len(a) != str_len(b) ||
	    memcmp(str_c(a), str_c(b), str_len(a)) != 0)
		abort();
	str_free(&a);
	str_free(&b);
	return 0;
}
