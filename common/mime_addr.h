/*
 * mime_addr.h: RFC 5322 address lists (From, To, Cc, ...) for the IMAP
 * ENVELOPE and for sorting.
 *
 * Lenient like every mail client must be: display names as phrases or
 * quoted strings, a comment as the name when there is no phrase
 * ("a@b (Ann)"), quoted local parts (unquoted in the result), obsolete
 * routes ("<@r1,@r2:a@b>"), groups ("team: a@b, c@d;"), addresses without
 * a domain; junk up to the next ',' is skipped.  Strings stay raw (encoded
 * words are not decoded: ENVELOPE wants them raw; use mime_header_decode()
 * for display).
 *
 * A group is a MIME_ADDR_GROUP_START entry (name = the group's name), its
 * members, then MIME_ADDR_GROUP_END, as in IMAP.  Callers:
 * common/mime_imap.c, common/mime_sort.c.  Limits: at most max_addrs
 * entries (the rest are dropped); input is a bounded header value.
 */
#ifndef TERN_MIME_ADDR_H
#define TERN_MIME_ADDR_H

#include <stddef.h>

#include "compat.h"

enum mime_addr_kind {
	MIME_ADDR_MAILBOX = 0,
	MIME_ADDR_GROUP_START,
	MIME_ADDR_GROUP_END,
};

/* A result record (read-only for callers); strings are NUL-terminated. */
struct mime_address {
	struct mime_address *next;
	enum mime_addr_kind kind;
	char *name;	/* display name or group name; NULL when none */
	char *route;	/* "@a,@b" or NULL */
	char *mailbox;	/* local part ("" when missing); NULL for groups */
	char *domain;	/* "" when missing; NULL for groups */
};

/* Parses an unfolded header value; NULL when it holds no address. */
struct mime_address *mime_address_parse(const char *in, size_t len,
					size_t max_addrs);
void mime_address_free(struct mime_address **list);

#endif
