/*
 * searchmsg.h: whether one message matches a SEARCH program (the key tree
 * of common/imapsearch.h, RFC 3501 6.4.4, RFC 9051 6.4.4, CONDSTORE
 * MODSEQ, WITHIN YOUNGER/OLDER, SEARCHRES "$").
 *
 * searchmsg_prepare() turns a parsed program into a matcher once per
 * command: the search strings are converted from the command's CHARSET to
 * UTF-8 and case-folded, sequence and UID sets are copied and "*" resolved
 * against the mailbox, dates become day numbers.  searchmsg_match() then
 * decides per message from its metadata; the content is reached (through
 * the message's callback) only when a key that needs it is evaluated, and
 * keys needing content are evaluated after the others in every AND/OR, so
 * a flag-, size- or set-only search never opens a file.
 *
 * Semantics chosen:
 *  - Strings match as case-insensitive substrings of UTF-8 text after
 *    simple case folding of ASCII, Latin-1, Latin Extended-A, Greek and
 *    Cyrillic (U+00B5 and U+017F folded too; sharp s, dotted/dotless i
 *    and all other scripts compare as they are).  An empty string matches
 *    every message (HEADER name "" matches any message having the field).
 *  - FROM, TO, CC, BCC, SUBJECT and HEADER look at every field of that name
 *    in the message's top-level header, RFC 2047-decoded and unfolded.
 *  - BODY looks at the text/\* leaves of the whole MIME tree (inside
 *    message/rfc822 parts too), transfer encoding removed, converted from
 *    their charset to UTF-8 (a part in an unknown transfer encoding is
 *    searched as it is stored); TEXT at the decoded top-level header fields
 *    ("Name: value") and at the same bodies.  A match never spans two parts
 *    or two fields.
 *  - No \Recent flag is kept: RECENT and NEW (RECENT UNSEEN) match nothing,
 *    OLD every message.
 *  - KEYWORD/UNKEYWORD compare the atom case-insensitively with each
 *    space-separated keyword; a system flag name ("\Seen") given there is
 *    tested against the flag bits.
 *  - BEFORE/ON/SINCE compare the internal date's calendar date in the
 *    server's zone; SENTBEFORE/SENTON/SENTSINCE the Date: field's date in
 *    the zone written there, or the internal date's when the field is
 *    missing or not a date.  YOUNGER n: internal date >= now - n; OLDER n:
 *    internal date < now - n.
 *  - MODSEQ n: the message's modseq >= n (the entry name is ignored: one
 *    modseq per message).  "$" in a sequence or UID set is the saved UID
 *    set (none saved: matches nothing).
 *
 * Charsets: NULL, US-ASCII and UTF-8 (8-bit bytes then taken as UTF-8,
 * invalid sequences becoming U+FFFD) and any name iconv accepts; another
 * name gives SEARCHMSG_EBADCHARSET, and searchmsg_charsets() the list for
 * "NO [BADCHARSET (...)]".
 *
 * Callers: tern-imapd SEARCH, SORT, THREAD (one thread: the charset list
 * is filled on first use).  Limits: key nesting is bounded by the parser
 * (IMAP_SEARCH_DEPTH_MAX); the decoded header and body text of a message
 * is built once per searchmsg_match() and held until it returns: at most
 * about three times the message size (charset conversion can grow text;
 * past STR_MAX_LIMIT per part only a prefix is searched).
 */
#ifndef TERN_IMAPD_SEARCHMSG_H
#define TERN_IMAPD_SEARCHMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "compat.h"
#include "imapsearch.h"
#include "imaptypes.h"
#include "str.h"

struct msgbody;

/* Flag bits of a message. */
#define SEARCHMSG_SEEN 0x01
#define SEARCHMSG_ANSWERED 0x02
#define SEARCHMSG_FLAGGED 0x04
#define SEARCHMSG_DELETED 0x08
#define SEARCHMSG_DRAFT 0x10

/* Status of searchmsg_prepare(). */
#define SEARCHMSG_EBADCHARSET (-2)	/* NO [BADCHARSET (list)] */

/* The mailbox around the search. */
struct searchmsg_env {
	uint32_t max_seq;		/* messages in the mailbox ("*") */
	uint32_t max_uid;		/* highest UID in use ("*") */
	const struct imap_seqset *saved;	/* "$" as UIDs, or NULL */
	time_t now;			/* for YOUNGER/OLDER */
	int tz_minutes;			/* server zone, east of UTC */
};

/* Gives the opened message; it stays the caller's (the matcher does not
 * close it).  NULL with *error_r when it cannot be opened. */
typedef struct msgbody *searchmsg_open_fn(void *context,
					  const char **error_r);

/* One message.  msg may be set when it is already open; else open is
 * called (at most once per searchmsg_match()) when content is needed. */
struct searchmsg_msg {
	uint32_t seq, uid;
	unsigned flags;			/* SEARCHMSG_* */
	const char *keywords;		/* space-separated, or NULL */
	time_t internal_date;		/* UTC */
	uint64_t size;			/* RFC822.SIZE */
	uint64_t modseq;
	struct msgbody *msg;
	searchmsg_open_fn *open;
	void *open_context;
};

struct searchmsg;

/* 0, SEARCHMSG_EBADCHARSET, or -1 with *error_r (a string that is not
 * valid in the charset, say). */
int searchmsg_prepare(const struct imap_search *search,
		      const struct searchmsg_env *env,
		      struct searchmsg **prog_r, const char **error_r)
	TERN_WUR;
void searchmsg_free(struct searchmsg **prog);

/* 1 (matches), 0 (does not), -1 with *error_r when the content was needed
 * and could not be read. */
int searchmsg_match(struct searchmsg *prog, const struct searchmsg_msg *m,
		    const char **error_r) TERN_WUR;
/* Whether any key needs headers or body. */
bool searchmsg_needs_content(const struct searchmsg *prog);
/* Whether any key needs more than the flags, keywords, UID, sequence
 * number and MODSEQ: the internal date, the size or the content. */
bool searchmsg_needs_meta(const struct searchmsg *prog);
/* Whether any key needs more of the content than the top-level header
 * (BODY, TEXT): otherwise the message given to the matcher may hold the
 * header alone. */
bool searchmsg_needs_body(const struct searchmsg *prog);

/* The charsets to list in BADCHARSET: "US-ASCII UTF-8 ISO-8859-1 ...",
 * those iconv here supports. */
const char *searchmsg_charsets(void);

/* Appends s (UTF-8) case-folded as described above; invalid UTF-8 bytes
 * are kept as they are.  Never longer than the input. */
int searchmsg_fold(const char *s, size_t len, struct str *out) TERN_WUR;

#endif
