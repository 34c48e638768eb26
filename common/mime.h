/*
 * mime.h: the streaming RFC 5322 / MIME (RFC 2045-2049) message parser.
 *
 * Pure and resumable: no I/O; the message is fed in chunks of any size
 * (split at any byte) and the parser builds a tree of parts.  Each part has
 * its header fields (name, raw value, unfolded value), its Content-* data,
 * and the offsets and sizes of its header and body within the message, and
 * its body's line count.  A multipart part has its body parts as children
 * (RFC 2046 boundaries; preamble and epilogue are not parts); a
 * message/rfc822 or message/global part has the encapsulated message as its
 * only child.  The root is the message itself.
 *
 * Line ends: LF ends a line, with or without a CR before it; a bare CR is
 * data.  Lines = LFs in the body, plus one for a final line without LF.
 * The line end before a boundary belongs to the boundary (RFC 2046).
 *
 * Limits (struct mime_settings, each with a compiled-in default and a
 * min/max): a header field longer than max_header_line is cut there and
 * flagged (the bytes past it are never buffered); fields past
 * max_header_bytes per part are dropped and flagged; past max_parts parts,
 * max_depth nesting or max_memory bytes of tree, parts stop being split:
 * the part that would have been split becomes an opaque leaf, reported as
 * text/plain (MIME_PART_F_OPAQUE).  Malformed input (no closing boundary,
 * NUL bytes, 8-bit headers, lines without colon) never fails the parse.
 *
 * Callers: tern-stored (cached ENVELOPE/BODYSTRUCTURE), imapd (FETCH
 * sections, SEARCH), the MTA.  Output formats are in mime_imap.h, header
 * decoding in mime_encode.h, addresses in mime_addr.h, SORT/THREAD keys in
 * mime_sort.h.
 */
#ifndef TERN_MIME_H
#define TERN_MIME_H

#include <stddef.h>
#include <stdint.h>

#include "compat.h"

/* Defaults and bounds of the settings. */
#define MIME_DEF_MAX_HEADER_LINE ((size_t)64 << 10)
#define MIME_MIN_MAX_HEADER_LINE ((size_t)1024)
#define MIME_MAX_MAX_HEADER_LINE ((size_t)16 << 20)
#define MIME_DEF_MAX_HEADER_BYTES ((size_t)1 << 20)
#define MIME_MIN_MAX_HEADER_BYTES ((size_t)1024)
#define MIME_MAX_MAX_HEADER_BYTES ((size_t)64 << 20)
#define MIME_DEF_MAX_PARTS 10000u
#define MIME_MAX_MAX_PARTS 1000000u
#define MIME_DEF_MAX_DEPTH 100u
#define MIME_MAX_MAX_DEPTH 1000u
#define MIME_DEF_MAX_MEMORY ((size_t)64 << 20)
#define MIME_MIN_MAX_MEMORY ((size_t)64 << 10)
#define MIME_MAX_MAX_MEMORY ((size_t)1 << 31)
/* Longest boundary recognised (RFC 2046 allows 70). */
#define MIME_BOUNDARY_MAX 200

struct mime_settings {
	size_t max_header_line;	 /* bytes of one field, folds included */
	size_t max_header_bytes; /* stored header bytes per part */
	unsigned int max_parts;	 /* parts in the tree, root included */
	unsigned int max_depth;	 /* nesting levels below the root */
	size_t max_memory;	 /* bytes of tree (parts, fields, params) */
};

/* Part flags. */
#define MIME_PART_F_HEADER_TRUNCATED 0x01 /* a field was cut */
#define MIME_PART_F_HEADER_LIMIT 0x02	  /* fields were dropped */
#define MIME_PART_F_OPAQUE 0x04		  /* not split (limits, no parts) */
#define MIME_PART_F_NO_CLOSE 0x08	  /* multipart without close line */
#define MIME_PART_F_BAD_HEADER 0x10	  /* lines without colon, NULs */
#define MIME_PART_F_LIMIT_HIT 0x20	  /* parts/depth/memory limit hit */
#define MIME_PART_F_8BIT_HEADER 0x40	  /* 8-bit bytes in the header */

enum mime_kind {
	MIME_KIND_LEAF = 0,
	MIME_KIND_MULTIPART,
	MIME_KIND_MESSAGE,	/* message/rfc822 or message/global */
};

/* One header field, read-only; strings are NUL-terminated but may hold
 * NULs themselves (use the lengths). */
struct mime_header {
	const char *name;	/* as sent, trailing whitespace removed */
	const char *raw;	/* after the colon, folds kept, no final EOL */
	size_t raw_len;
	const char *value;	/* unfolded, trimmed */
	size_t value_len;
	int truncated;
};

/* A byte range of the original message. */
struct mime_range {
	uint64_t offset;
	uint64_t size;
};

struct cfg;
struct mime_param;
struct mime_parser;
struct mime_part;

/* Fills in the defaults; mime_settings_clamp() forces values into range. */
void mime_settings_init(struct mime_settings *set_r);
void mime_settings_clamp(struct mime_settings *set);
/* The settings from tern.conf (the mime_max_* options). */
void mime_settings_from_cfg(const struct cfg *cfg,
			    struct mime_settings *set_r);

/* set NULL = defaults (the settings are copied and clamped). */
struct mime_parser *mime_parser_new(const struct mime_settings *set);
void mime_parser_feed(struct mime_parser *p, const void *data, size_t size);
/* Ends the input, frees the parser and returns the tree (never NULL). */
struct mime_part *mime_parser_finish(struct mime_parser **p);
/* Abandons a parse. */
void mime_parser_free(struct mime_parser **p);
/* Frees a whole tree; give it the root. */
void mime_part_free(struct mime_part **root);

/* Navigation. */
const struct mime_part *mime_part_parent(const struct mime_part *part);
const struct mime_part *mime_part_child(const struct mime_part *part);
const struct mime_part *mime_part_next(const struct mime_part *part);
unsigned int mime_part_child_count(const struct mime_part *part);

/* Structure and positions. */
enum mime_kind mime_part_kind(const struct mime_part *part);
unsigned int mime_part_flags(const struct mime_part *part);
/* Flags of all parts of the tree below and including part, or'd. */
unsigned int mime_part_flags_all(const struct mime_part *part);
struct mime_range mime_part_header_range(const struct mime_part *part);
struct mime_range mime_part_body_range(const struct mime_part *part);
uint64_t mime_part_body_lines(const struct mime_part *part);

/* Content-Type as the parser uses it (defaults applied, text/plain for
 * opaque parts), as sent (case kept). */
const char *mime_part_type(const struct mime_part *part);
const char *mime_part_subtype(const struct mime_part *part);
/* 1 when part's type/subtype match (case-insensitively; subtype NULL =
 * any). */
int mime_part_is(const struct mime_part *part, const char *type,
		 const char *subtype);
/* Content-Type parameters (charset=us-ascii by default when the part has
 * no valid Content-Type). */
size_t mime_part_params(const struct mime_part *part,
			const struct mime_param **params_r);
/* Content-Disposition: its type (NULL when none) and parameters. */
const char *mime_part_disposition(const struct mime_part *part,
				  const struct mime_param **params_r,
				  size_t *count_r);
/* First parameter named name (lowercase; RFC 2231 decoded to UTF-8),
 * from Content-Type (disposition == 0) or Content-Disposition. */
const char *mime_part_param_utf8(const struct mime_part *part,
				 int disposition, const char *name);

/* Header fields in message order. */
size_t mime_part_header_count(const struct mime_part *part);
const struct mime_header *mime_part_header(const struct mime_part *part,
					   size_t i);
/* First field named name (case-insensitive), NULL when none. */
const struct mime_header *mime_part_header_find(const struct mime_part *part,
						const char *name);

/* Section of an IMAP FETCH BODY[...] (RFC 3501 6.4.5), without the
 * header-list of HEADER.FIELDS: "", "HEADER", "TEXT", "1.2", "1.2.MIME",
 * "3.HEADER", "3.TEXT", "3.HEADER.FIELDS.NOT", ...  Returns 0 and the
 * range of the message, or -1 with *error_r when the section is invalid
 * or names no part.  HEADER* ranges include the blank line. */
int mime_section_find(const struct mime_part *root, const char *section,
		      struct mime_range *range_r, const char **error_r)
	TERN_WUR;

#endif
