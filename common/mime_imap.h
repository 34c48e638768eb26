/*
 * mime_imap.h: IMAP FETCH data built from a parsed message: ENVELOPE,
 * BODYSTRUCTURE (with extension data) and BODY, exactly as RFC 3501
 * section 7.4.2 (and RFC 9051 7.5.2) write them.
 *
 * Strings are quoted, with '"' and '\' escaped, when they are 7-bit text;
 * a value with CR, LF or 8-bit bytes is sent as a literal {n}\r\n...;
 * NUL bytes, which IMAP cannot carry, are left out.  Absent values are NIL.
 * Header values are the unfolded raw values (encoded words are not
 * decoded, as RFC 3501 asks).  Parameters keep RFC 2231 form: continuations
 * are joined, charset-encoded ones stay "name*" "charset'lang'%XX..".
 * Opaque parts (see mime.h) are written as text/plain leaves.
 *
 * Callers: tern-stored (cached at delivery), imapd FETCH.  Limits: the
 * output str's maximum; -1 (ENOBUFS) when the result does not fit.
 */
#ifndef TERN_MIME_IMAP_H
#define TERN_MIME_IMAP_H

#include <stddef.h>

#include "compat.h"
#include "str.h"

struct mime_part;

/* An IMAP string (quoted or literal) and an nstring (NULL -> NIL). */
int mime_imap_string(struct str *out, const char *s, size_t len) TERN_WUR;
int mime_imap_nstring(struct str *out, const char *s, size_t len) TERN_WUR;

/* ENVELOPE of a message: the root, or the child of a message/rfc822
 * part. */
int mime_imap_envelope(const struct mime_part *msg, struct str *out)
	TERN_WUR;
/* BODYSTRUCTURE (extended != 0) or BODY of a message (give the root). */
int mime_imap_bodystructure(const struct mime_part *msg, int extended,
			    struct str *out) TERN_WUR;

#endif
