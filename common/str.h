/*
 * str.h: the one growable byte string, with a hard maximum size.
 *
 * Every variable-length piece of protocol input and output goes through a
 * struct str.  The maximum is fixed at creation: an append that would pass it
 * fails with -1 (errno ENOBUFS) and leaves the string unchanged, so a peer can
 * never make us grow a buffer without bound.  The contents are always
 * NUL-terminated (the NUL is not counted in the length and not in the max),
 * so str_c() can be handed to C APIs; the bytes may contain NULs themselves.
 *
 * Callers: everything.  Limits: max must be >= 1 and <= STR_MAX_LIMIT.
 */
#ifndef TERN_STR_H
#define TERN_STR_H

#include <stdarg.h>
#include <stddef.h>

#include "compat.h"

#define STR_MAX_LIMIT ((size_t)1 << 31)

struct str;

/* Creates an empty string; initial is a capacity hint.  Aborts on ENOMEM. */
struct str *str_new(size_t initial, size_t max);
void str_free(struct str **s);

/* -1 (ENOBUFS) when the result would be longer than max; s is unchanged. */
int str_append(struct str *s, const void *p, size_t n) TERN_WUR;
int str_append_c(struct str *s, const char *cstr) TERN_WUR;
int str_append_byte(struct str *s, unsigned char c) TERN_WUR;
int str_printf(struct str *s, const char *fmt, ...) TERN_PRINTF(2, 3) TERN_WUR;
int str_vprintf(struct str *s, const char *fmt, va_list ap) TERN_PRINTF(2, 0)
	TERN_WUR;

/* Replaces the contents (same rules as append). */
int str_set(struct str *s, const void *p, size_t n) TERN_WUR;
/* Replaces the contents with a formatted message, cut to fit the maximum:
 * for error strings.  NULL s is allowed (nothing happens).  Returns -1, so
 * that "return str_setf(error, ...);" reports a failure in one line. */
int str_setf(struct str *s, const char *fmt, ...) TERN_PRINTF(2, 3);
int str_vsetf(struct str *s, const char *fmt, va_list ap) TERN_PRINTF(2, 0);

const char *str_c(const struct str *s);
char *str_data(struct str *s);
size_t str_len(const struct str *s);
size_t str_max(const struct str *s);
size_t str_room(const struct str *s);	/* bytes that may still be appended */

void str_truncate(struct str *s, size_t len);	/* no-op if len >= length */
void str_clear(struct str *s);
/* Removes the first n bytes (all when n >= length). */
void str_consume(struct str *s, size_t n);

/* Copies a C string into a new str of exactly that size (max = len or 1). */
struct str *str_dup_c(const char *cstr);

/* Bounded helpers for fixed destination buffers (constants only). */
size_t str_lcpy(char *dst, const char *src, size_t size);

/* The value of a hexadecimal digit (either case), -1 for any other byte. */
int str_hex_value(unsigned char c);

#endif
