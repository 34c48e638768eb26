/*
 * fuzz_mime.c: libFuzzer target for the MIME parser (common/mime*.c).
 *
 * Byte 0 picks the limits (tight or default), byte 1 seeds the chunk
 * splits; the rest is the message.  It is parsed whole and in random
 * chunks: BODYSTRUCTURE, BODY, ENVELOPE and the section ranges must be
 * the same, and every range must lie inside the message.  Header values
 * also go through the RFC 2047 decoder, the date parser and the base
 * subject, which must produce valid UTF-8 without crashing.
 */
#include "config.h"

#include "compat.h"

#include <stdint.h>
#include <stdlib.h>

#include "mime.h"
#include "mime_encode.h"
#include "mime_imap.h"
#include "mime_sort.h"
#include "str.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct mime_part *fuzz_parse(const struct mime_settings *set,
				    const uint8_t *d, size_t len,
				    uint32_t seed)
{
	struct mime_parser *p = mime_parser_new(set);
	size_t i = 0, n;

	while (i < len) {
		if (seed == 0) {
			n = len - i;
		} else {
			seed = seed * 1103515245u + 12345u;
			n = 1 + (seed >> 16) % 17;
			if (n > len - i)
				n = len - i;
		}
		mime_parser_feed(p, d + i, n);
		i += n;
	}
	return mime_parser_finish(&p);
}

static void fuzz_sections(const struct mime_part *root, size_t len,
			  struct str *out)
{
	static const char *const secs[] = {
		"", "HEADER", "TEXT", "1", "1.MIME", "1.1", "1.2", "2",
		"2.HEADER", "2.TEXT", "1.1.1", "1.2.MIME", "3.1.2",
	};
	struct mime_range r;
	const char *error;

	for (size_t i = 0; i < TERN_NELEM(secs); i++) {
		if (mime_section_find(root, secs[i], &r, &error) < 0) {
			(void)!str_append_c(out, "|-");
			continue;
		}
		if (r.offset > len || r.size > len - r.offset)
			abort();
		(void)!str_printf(out, "|%llu,%llu",
				  (unsigned long long)r.offset,
				  (unsigned long long)r.size);
	}
}

static struct str *fuzz_describe(const struct mime_part *root, size_t len)
{
	struct str *s = str_new(0, 1 << 24);
	int r1 = mime_imap_bodystructure(root, 1, s);
	int r2 = str_append_c(s, "\n") == 0 ?
		 mime_imap_bodystructure(root, 0, s) : -1;
	int r3 = str_append_c(s, "\n") == 0 ? mime_imap_envelope(root, s) :
		 -1;

	if (r1 < 0 || r2 < 0 || r3 < 0)
		abort();	/* 16 MiB is far more than any input needs */
	fuzz_sections(root, len, s);
	(void)!str_printf(s, "|%x", mime_part_flags_all(root));
	return s;
}

/* Decoders over the root's fields: output must be valid UTF-8. */
static void fuzz_decoders(const struct mime_part *root)
{
	struct str *s = str_new(0, 1 << 20), *chk = str_new(0, 1 << 21);
	time_t t;
	int tz;

	for (size_t i = 0; i < mime_part_header_count(root); i++) {
		const struct mime_header *h = mime_part_header(root, i);

		str_clear(s);
		str_clear(chk);
		if (mime_header_decode(h->value, h->value_len, s) == 0) {
			if (mime_utf8_append(str_c(s), str_len(s), chk) < 0 ||
			    str_len(chk) != str_len(s))
				abort();
		}
		str_clear(s);
		(void)!mime_subject_base(h->value, h->value_len, s, NULL);
		(void)!mime_date_parse(h->value, h->value_len, &t, &tz);
	}
	str_free(&s);
	str_free(&chk);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mime_settings set;
	struct mime_part *a, *b;
	struct str *da, *db;

	if (size < 2)
		return 0;
	mime_settings_init(&set);
	if (data[0] & 1) {
		set.max_parts = 1 + (data[0] >> 1) % 8;
		set.max_depth = (data[0] >> 4) % 4;
		set.max_header_line = 0;	/* clamped to the minimum */
		set.max_header_bytes = 0;
	}
	a = fuzz_parse(&set, data + 2, size - 2, 0);
	b = fuzz_parse(&set, data + 2, size - 2, 1u + data[1]);
	da = fuzz_describe(a, size - 2);
	db = fuzz_describe(b, size - 2);
	if (str_len(da) != str_len(db) ||
	    memcmp(str_c(da), str_c(db), str_len(da)) != 0)
		abort();
	fuzz_decoders(a);
	str_free(&da);
	str_free(&db);
	mime_part_free(&a);
	mime_part_free(&b);
	return 0;
}
