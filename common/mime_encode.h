/*
 * mime_encode.h: header text decoding for the MIME parser: RFC 2047
 * encoded words, RFC 2045/2231 parameters, charsets to UTF-8 (iconv).
 *
 * Everything here works on bytes that came from a peer: input is never
 * trusted to be valid UTF-8, output always is (invalid sequences and bytes
 * that a charset cannot map become U+FFFD; an unknown charset keeps its bytes
 * where they are valid UTF-8).  Output goes to a struct str whose maximum the
 * caller chose: -1 (ENOBUFS) means the result did not fit and out holds a
 * prefix.  Malformed encoded words are kept as they are.
 *
 * Callers: common/mime.c (parameters), common/mime_sort.c (subjects), and
 * imapd SEARCH through mime_header_decode().  Limits: MIME_CHARSET_MAX bytes
 * of charset name; MIME_PARAMS_MAX parameters per field (the rest are
 * dropped); RFC 2231 sections numbered 0..MIME_PARAM_SECTION_MAX.
 */
#ifndef TERN_MIME_ENCODE_H
#define TERN_MIME_ENCODE_H

#include <stddef.h>

#include "compat.h"
#include "str.h"

#define MIME_CHARSET_MAX 64
#define MIME_PARAMS_MAX 128
#define MIME_PARAM_SECTION_MAX 999

/* One parameter of a structured field (Content-Type, Content-Disposition).
 * name is lowercased; RFC 2231 continuations are joined.  When any section
 * was charset-encoded, name ends in '*' and value keeps the RFC 2231 form
 * "charset'lang'pct-encoded" (what IMAP BODYSTRUCTURE shows); utf8 is always
 * the decoded text (RFC 2231 or, for plain values, RFC 2047 decoded). */
struct mime_param {
	char *name;
	char *value;
	char *utf8;
};

/* Appends in (bytes in charset) as UTF-8.  An unknown or unusable charset
 * name keeps the bytes (invalid UTF-8 becomes U+FFFD). */
int mime_charset_to_utf8(const char *charset, const void *in, size_t len,
			 struct str *out) TERN_WUR;
/* Appends in, replacing invalid UTF-8 sequences with U+FFFD. */
int mime_utf8_append(const void *in, size_t len, struct str *out) TERN_WUR;
/* Decodes an (unfolded) unstructured header value for display and search:
 * RFC 2047 B and Q words, adjacent words joined (with the whitespace between
 * them dropped and their bytes converted together), everything to UTF-8. */
int mime_header_decode(const char *in, size_t len, struct str *out)
	TERN_WUR;
/* Decodes an RFC 2231 extended value "charset'lang'pct-encoded" to UTF-8. */
int mime_rfc2231_decode(const char *in, size_t len, struct str *out)
	TERN_WUR;

/* Parses "lead; name=value; ..." (RFC 2045 syntax, comments and RFC 2231
 * allowed, lenient about junk).  *lead_len_r is the length of the text
 * before the first ';' outside quotes and comments.  The parameters are
 * xalloc'd; *bytes_r (may be NULL) gets the bytes allocated for them.  At
 * most MIME_PARAMS_MAX parameters; values longer than len cannot occur. */
void mime_params_parse(const char *in, size_t len, size_t *lead_len_r,
		       struct mime_param **params_r, size_t *count_r,
		       size_t *bytes_r);
void mime_params_free(struct mime_param **params, size_t count);

#endif
