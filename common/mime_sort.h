/*
 * mime_sort.h: the header keys IMAP SORT, THREAD and SEARCH need (RFC 5256,
 * RFC 5957): Date as a time, the base subject, message-ids of
 * Message-ID/In-Reply-To/References, the first address of a field.
 *
 * Pure functions over header values (take them from mime_part_header_find()
 * on the message's root or encapsulated part); lenient like the rest of
 * the parser.  Callers: tern-stored (stored with the message), imapd.
 * Limits: output goes to a caller's bounded str (-1 when it is full).
 */
#ifndef TERN_MIME_SORT_H
#define TERN_MIME_SORT_H

#include <stddef.h>
#include <time.h>

#include "compat.h"
#include "str.h"

struct mime_part;

/* RFC 5322 date-time (obsolete forms too: 2-digit years, named zones,
 * comments, no weekday, no seconds).  0 with the UTC time and the zone
 * offset in minutes east of UTC, -1 when it is not a date. */
int mime_date_parse(const char *s, size_t len, time_t *time_r,
		    int *tz_minutes_r) TERN_WUR;

/* RFC 5256 section 2.1 base subject, in UTF-8, appended to out.
 * *is_reply_r (may be NULL) says whether a reply/forward marker was
 * removed. */
int mime_subject_base(const char *s, size_t len, struct str *out,
		      int *is_reply_r) TERN_WUR;

/* Iterates the "<id>" message-ids in a value: 1 with *id_r and *len_r the id
 * without brackets and whitespace, 0 at the end.  *pos starts at the
 * value and moves on. */
int mime_msgid_next(const char **pos, const char *end, const char **id_r,
		    size_t *len_r) TERN_WUR;

/* The SORT key of address field name ("from", "to", "cc") of msg: the
 * first mailbox's local part (display == 0), or (display != 0, RFC 5957)
 * its decoded display name, else "local@domain".  Nothing is appended when
 * there is no address. */
int mime_sort_address(const struct mime_part *msg, const char *name,
		      int display, struct str *out) TERN_WUR;

#endif
