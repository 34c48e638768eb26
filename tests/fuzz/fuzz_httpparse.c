/*
 * fuzz_httpparse.c: the HTTP head parser and the chunked scanner.
 *
 * The first byte picks requests or responses, the second seeds the chunk
 * sizes.  The input is read as a stream of messages the way tern-proxyd
 * reads it: a head, then its body (counted, chunked, or the rest), then the
 * next head, until the end or an error.  Fed whole and in chunks, both
 * ways must give the same trace; errors must carry 400, 431 or 505; a
 * head must never claim more bytes than it was given.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "httpparse.h"
#include "str.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void run(enum http_kind kind, const char *in, size_t len,
		size_t step, struct str *trace)
{
	struct http_parser *p = http_parser_new(kind, 2048, 20);
	const char *pos = in, *end = in + len;
	enum { HEAD, LENGTH, CHUNKED } state = HEAD;
	struct http_chunked ck;
	uint64_t left = 0;
	bool head_req = false;

	http_parser_reset(p, false);
	while (pos < end) {
		size_t n = step == 0 || (size_t)(end - pos) < step ?
				   (size_t)(end - pos) : step;
		const char *ce = pos + n, *before = pos;
		const struct http_head *h;
		const char *error;
		unsigned st;
		size_t used;
		int r;

		switch (state) {
		case HEAD:
			r = http_parser_feed(p, &pos, ce, &h, &st, &error);
			if (r < 0) {
				if (st != 400 && st != 431 && st != 505)
					abort();
				(void)str_printf(trace, "E%u %s\n", st, error);
				goto out;
			}
			if (pos < before || pos > ce)
				abort();
			if (r == 0)
				break;
			(void)str_printf(trace, "H%u %s %s %u %d %llu %d %zu\n",
					 h->status, h->method ? h->method : "",
					 h->target ? h->target : "", h->minor,
					 (int)h->body,
					 (unsigned long long)h->content_length,
					 h->keep_alive, h->nfields);
			head_req = h->method != NULL &&
				   strcmp(h->method, "HEAD") == 0;
			if (h->body == HTTP_BODY_LENGTH) {
				left = h->content_length;
				state = LENGTH;
			} else if (h->body == HTTP_BODY_CHUNKED) {
				http_chunked_init(&ck);
				state = CHUNKED;
			} else if (h->body == HTTP_BODY_CLOSE) {
				(void)str_printf(trace, "C\n");
				goto out;
			} else {
				http_parser_reset(p, head_req);
			}
			break;
		case LENGTH:
			if ((uint64_t)n > left)
				n = (size_t)left;
			left -= n;
			pos += n;
			if (left == 0) {
				state = HEAD;
				http_parser_reset(p, head_req);
				(void)str_printf(trace, "B\n");
			}
			break;
		case CHUNKED:
			r = http_chunked_feed(&ck, pos, n, &used, &error);
			if (r < 0) {
				(void)str_printf(trace, "X%s\n", error);
				goto out;
			}
			if (used > n)
				abort();
			pos += used;
			if (r == 1) {
				state = HEAD;
				http_parser_reset(p, head_req);
				(void)str_printf(trace, "K\n");
			}
			break;
		}
	}
out:
	http_parser_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct str *a, *b;
	enum http_kind kind;
	size_t step;

	if (size < 2)
		return 0;
	kind = data[0] & 1 ? HTTP_RESPONSE : HTTP_REQUEST;
	step = (size_t)(data[1] % 13) + 1;
	a = str_new(256, 1 << 20);
	b = str_new(256, 1 << 20);
	run(kind, (const char *)data + 2, size - 2, 0, a);
	run(kind, (const char *)data + 2, size - 2, step, b);
	if (str_len(a) != str_len(b) ||
	    memcmp(str_c(a), str_c(b), str_len(a)) != 0)
		abort();
	str_free(&a);
	str_free(&b);
	return 0;
}
