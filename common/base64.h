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

/* Appends the decoded bytes to out: 0, or -1 (bad input, or out full). */
int base64_decode(const char *in, size_t len, unsigned flags,
		  struct str *out) TERN_WUR;

#endif
