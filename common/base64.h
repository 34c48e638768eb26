/*
 * base64.h: base64 decoding (RFC 4648 alphabet) for SASL responses and
 * MIME encoded words.
 *
 * BASE64_STRICT is the form SASL exchanges must use: the length a multiple
 * of 4, "=" padding only at the end.  Without it (MIME "B" encoded words),
 * the padding may be missing.  Either way a character outside the
 * alphabet, or a lone last 6 bits, is an error.  The output goes to a
 * bounded str, so its maximum bounds the work.  (IMAP's modified base64 for
 * mailbox names has its own alphabet and lives in imaptypes.c.)
 */
#ifndef TERN_BASE64_H
#define TERN_BASE64_H

#include <stddef.h>

#include "compat.h"
#include "str.h"

#define BASE64_STRICT 0x1

/* The 6-bit value of a base64 character, -1 for any other byte. */
int base64_value(unsigned char c);

/* Appends the decoded bytes to out: 0, or -1 (bad input, or out full). */
int base64_decode(const char *in, size_t len, unsigned flags,
		  struct str *out) TERN_WUR;

/* Appends the base64 of in (with padding): 0, or -1 when out is full. */
int base64_encode(const void *in, size_t len, struct str *out) TERN_WUR;

/*
 * Decodes a SASL PLAIN response (RFC 4616): base64 of "authzid NUL
 * authcid NUL password".  buf (the caller's, with room for max + 1 bytes)
 * holds the pieces, which the _r pointers point into.  0, or -1 for bad
 * base64, a wrong number of pieces, an empty authcid or password, or more
 * than max decoded bytes.  Callers: POP3, IMAP and SMTP AUTH.
 */
int sasl_plain_decode(const char *b64, size_t len, size_t max,
		      struct str *buf, const char **authzid_r,
		      const char **authcid_r, const char **password_r)
	TERN_WUR;

#endif
