/*
 * fuzz_msgbody.c: libFuzzer target for tern-imapd's FETCH section data
 * (imapd/msgbody.c).
 *
 * Byte 0 picks the MIME limits (tight or default), byte 1 the partial;
 * the rest is the message.  A set of sections is fetched (BODY[],
 * HEADER, TEXT, HEADER.FIELDS and .NOT, numbered parts, MIME headers,
 * BINARY and BINARY.SIZE, with and without partials): every plain range
 * must lie inside the message, BINARY must agree with BINARY.SIZE and
 * never be longer than the part, a partial must be a slice of the whole,
 * and the FETCH value must be writable.
 */
#include "config.h"

#include "compat.h"

#include <stdint.h>
#include <stdlib.h>

#include "msgbody.h"
#include "str.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fuzz_fields[] = { "Subject", "from", "X-A" };

static struct imap_fetch_section fuzz_section(enum imap_fetch_kind kind,
					      const char *s)
{
	struct imap_fetch_section sec;

	memset(&sec, 0, sizeof(sec));
	sec.kind = kind;
	while (*s >= '0' && *s <= '9' && sec.nparts < IMAP_SECTION_PARTS_MAX) {
		char *end;

		sec.parts[sec.nparts++] = (uint32_t)strtoul(s, &end, 10);
		s = *end == '.' ? end + 1 : end;
	}
	sec.spec = strcmp(s, "HEADER") == 0 ? IMAP_SECTION_HEADER :
		   strcmp(s, "TEXT") == 0 ? IMAP_SECTION_TEXT :
		   strcmp(s, "MIME") == 0 ? IMAP_SECTION_MIME :
		   strcmp(s, "FIELDS") == 0 ? IMAP_SECTION_HEADER_FIELDS :
		   strcmp(s, "NOT") == 0 ? IMAP_SECTION_HEADER_FIELDS_NOT :
		   IMAP_SECTION_ALL;
	sec.fields = fuzz_fields;
	sec.nfields = TERN_NELEM(fuzz_fields);
	return sec;
}

static void fuzz_check(struct msgbody *msg, const uint8_t *m, size_t len,
		       struct imap_fetch_section *sec, uint8_t partial)
{
	struct msgbody_result whole, part, bsize;
	struct str *out = str_new(0, len * 2 + 64);
	const char *error;
	int ret;

	ret = msgbody_fetch(msg, sec, &whole, &error);
	if (ret == MSGBODY_OK && whole.buf == NULL && whole.size > 0 &&
	    (whole.data < m || whole.data + whole.size > m + len))
		abort();
	if (ret == MSGBODY_OK && whole.size > len + 4)
		abort();
	if (ret == MSGBODY_OK || ret == MSGBODY_ENOPART) {
		if (msgbody_write_value(&whole, true, out) < 0)
			abort();
	}
	if (sec->kind == IMAP_FETCH_KIND_BINARY) {
		sec->kind = IMAP_FETCH_KIND_BINARY_SIZE;
		if (msgbody_fetch(msg, sec, &bsize, &error) != ret ||
		    (ret == MSGBODY_OK && bsize.size != whole.size))
			abort();
		msgbody_result_free(&bsize);
		sec->kind = IMAP_FETCH_KIND_BINARY;
	}
	sec->partial = true;
	sec->offset = partial & 0x0f;
	sec->length = partial >> 4;
	if (msgbody_fetch(msg, sec, &part, &error) != ret)
		abort();
	if (ret == MSGBODY_OK &&
	    (part.size > sec->length || part.full_size != whole.size ||
	     (part.size > 0 &&
	      memcmp(part.data, whole.data + sec->offset, part.size) != 0)))
		abort();
	sec->partial = false;
	msgbody_result_free(&part);
	msgbody_result_free(&whole);
	str_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const body[] = {
		"", "HEADER", "TEXT", "FIELDS", "NOT", "1", "1.MIME", "2",
		"1.2.MIME", "2.1", "2.HEADER", "2.FIELDS", "2.NOT", "3.TEXT",
		"1.1.1", "0",
	};
	static const char *const binary[] = { "", "1", "2", "1.2", "2.1",
					      "3" };
	struct mime_settings set;
	struct msgbody *msg;

	if (size < 2)
		return 0;
	mime_settings_init(&set);
	if (data[0] & 1) {
		set.max_parts = 1 + (data[0] >> 1) % 8;
		set.max_depth = (data[0] >> 4) % 4;
		set.max_header_line = 0;	/* clamped to the minimum */
		set.max_header_bytes = 0;
	}
	msg = msgbody_from_memory(data + 2, size - 2, &set);
	/* The header-only parse first (SEARCH), then the whole tree. */
	(void)mime_part_header_count(msgbody_header(msg));
	for (size_t i = 0; i < TERN_NELEM(body); i++) {
		struct imap_fetch_section sec =
			fuzz_section(IMAP_FETCH_KIND_BODY, body[i]);

		fuzz_check(msg, data + 2, size - 2, &sec, data[1]);
	}
	for (size_t i = 0; i < TERN_NELEM(binary); i++) {
		struct imap_fetch_section sec =
			fuzz_section(IMAP_FETCH_KIND_BINARY, binary[i]);

		fuzz_check(msg, data + 2, size - 2, &sec, data[1]);
	}
	msgbody_close(&msg);
	return 0;
}
