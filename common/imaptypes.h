/*
 * imaptypes.h: the IMAP data types that commands carry, apart from the
 * command syntax: sequence sets, dates, and mailbox names in modified
 * UTF-7 (RFC 3501 section 5.1.3).
 *
 * Sequence sets ("1,3:5,7:*", "$") parse into ranges; "*" stays symbolic
 * until imap_seqset_resolve() gets the largest number in use, which also
 * sorts and merges the ranges ("4:2" is 2:4, "*:4" is 4:max, and with
 * max < 4 it is max:4 as RFC 3501 says).  Numbers are 1..2^32-1.
 *
 * Modified UTF-7 converts both ways with strict checks: printable ASCII
 * stands for itself ("&" as "&-"), everything else is base64 of UTF-16
 * between "&" and "-"; non-canonical forms (an encoded printable
 * character, adjacent encoded runs, padding bits, lone surrogates, NUL)
 * are refused, so decode(encode(x)) == x and encode(decode(y)) == y.
 *
 * Callers: imapparse, imapcmd, imapsearch, tern-imapd.  Limits: a set holds
 * at most one range per input byte; outputs go to a bounded struct str.
 */
#ifndef TERN_IMAPTYPES_H
#define TERN_IMAPTYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "compat.h"
#include "str.h"

/* ---- sequence sets ---- */

struct imap_seqset;

/* True when s is a sequence-set or "$" (syntax only; 0 allowed). */
bool imap_seqset_syntax(const char *s, size_t len);
int imap_seqset_parse(const char *s, size_t len, struct imap_seqset **set_r,
		      const char **error_r) TERN_WUR;
/* An empty set, for building results with imap_seqset_add(). */
struct imap_seqset *imap_seqset_new(void);
void imap_seqset_free(struct imap_seqset **set);
void imap_seqset_add(struct imap_seqset *set, uint32_t lo, uint32_t hi);
/* "$": the saved search result (SEARCHRES); the caller substitutes. */
bool imap_seqset_is_saved(const struct imap_seqset *set);
bool imap_seqset_has_star(const struct imap_seqset *set);
/* Gives "*" the value max (0 for an empty mailbox: "*" then matches
 * nothing, and "n:*" is 1:n), then sorts and merges the ranges. */
void imap_seqset_resolve(struct imap_seqset *set, uint32_t max);

/* After resolve (or on a set without "*"): */
size_t imap_seqset_nranges(const struct imap_seqset *set);
void imap_seqset_range(const struct imap_seqset *set, size_t i,
		       uint32_t *lo_r, uint32_t *hi_r);
bool imap_seqset_contains(const struct imap_seqset *set, uint32_t n);
/* The smallest member > *n into *n (start with *n = 0); false at the
 * end. */
bool imap_seqset_next(const struct imap_seqset *set, uint32_t *n);
uint64_t imap_seqset_count(const struct imap_seqset *set);
/* "1:3,5" ("*" and "$" as such when unresolved). */
int imap_seqset_format(const struct imap_seqset *set, struct str *out)
	TERN_WUR;

/* ---- dates ---- */

struct imap_date {
	int year, mon, day;	/* mon 1..12 */
};

/* date-text "d-Mon-yyyy" (day 1 or 2 digits). */
int imap_date_parse(const char *s, size_t len, struct imap_date *date_r)
	TERN_WUR;
/* date-time "dd-Mon-yyyy hh:mm:ss +zzzz" (day may be " d"): the UTC time
 * and the zone offset in minutes. */
int imap_datetime_parse(const char *s, size_t len, time_t *t_r,
			int *zone_r) TERN_WUR;

/* ---- mailbox names ---- */

bool imap_utf8_valid(const char *s, size_t len);
/* Modified UTF-7 to UTF-8 and back, appended to out; -1 with *error_r on
 * invalid input or when out is full. */
int imap_mutf7_decode(const char *s, size_t len, struct str *out,
		      const char **error_r) TERN_WUR;
int imap_mutf7_encode(const char *s, size_t len, struct str *out,
		      const char **error_r) TERN_WUR;

#endif
