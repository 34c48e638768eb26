/*
 * imapsearch.h: typed views of SEARCH, SORT and THREAD commands parsed by
 * imapparse.h.
 *
 * The search program becomes a tree of keys: every key of RFC 3501 and
 * RFC 9051, sequence sets and UID sets (with "$" of SEARCHRES), OR, NOT and
 * parenthesised groups, MODSEQ with its optional entry (CONDSTORE), YOUNGER
 * and OLDER (WITHIN), dates as "d-Mon-yyyy" (bare or quoted); the CHARSET
 * and the ESEARCH RETURN options come apart (RETURN () means ALL).  Strings
 * may hold 8-bit bytes: the caller checks them against the charset (and
 * answers NO [BADCHARSET] for one it does not know).
 *
 * SORT (RFC 5256, with ESORT's RETURN and DISPLAY sorting of RFC 5957)
 * adds its criteria; THREAD its algorithm name (upper-cased, the caller
 * decides whether it supports it).
 *
 * Structs are allocated from the command and freed with it.  Errors are
 * -1 with a message for "tag BAD".  Limits: keys nest at most
 * IMAP_SEARCH_DEPTH_MAX deep.
 * Callers: tern-imapd.
 */
#ifndef TERN_IMAPSEARCH_H
#define TERN_IMAPSEARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compat.h"
#include "imapparse.h"
#include "imaptypes.h"

#define IMAP_SEARCH_DEPTH_MAX 64

enum imap_search_key {
	IMAP_SEARCH_AND,		/* children; the root and "(...)" */
	IMAP_SEARCH_OR,			/* two children */
	IMAP_SEARCH_NOT,		/* one child */
	IMAP_SEARCH_ALL,
	IMAP_SEARCH_SEQSET,		/* set */
	IMAP_SEARCH_UID,		/* set */
	/* flags */
	IMAP_SEARCH_ANSWERED,
	IMAP_SEARCH_DELETED,
	IMAP_SEARCH_DRAFT,
	IMAP_SEARCH_FLAGGED,
	IMAP_SEARCH_NEW,
	IMAP_SEARCH_OLD,
	IMAP_SEARCH_RECENT,
	IMAP_SEARCH_SEEN,
	IMAP_SEARCH_UNANSWERED,
	IMAP_SEARCH_UNDELETED,
	IMAP_SEARCH_UNDRAFT,
	IMAP_SEARCH_UNFLAGGED,
	IMAP_SEARCH_UNSEEN,
	IMAP_SEARCH_KEYWORD,		/* value */
	IMAP_SEARCH_UNKEYWORD,		/* value */
	/* strings: value, len */
	IMAP_SEARCH_BCC,
	IMAP_SEARCH_BODY,
	IMAP_SEARCH_CC,
	IMAP_SEARCH_FROM,
	IMAP_SEARCH_SUBJECT,
	IMAP_SEARCH_TEXT,
	IMAP_SEARCH_TO,
	IMAP_SEARCH_HEADER,		/* header, value */
	/* dates: date */
	IMAP_SEARCH_BEFORE,
	IMAP_SEARCH_ON,
	IMAP_SEARCH_SINCE,
	IMAP_SEARCH_SENTBEFORE,
	IMAP_SEARCH_SENTON,
	IMAP_SEARCH_SENTSINCE,
	/* numbers: number */
	IMAP_SEARCH_LARGER,
	IMAP_SEARCH_SMALLER,
	IMAP_SEARCH_MODSEQ,		/* and entry, entry_type */
	IMAP_SEARCH_YOUNGER,		/* seconds */
	IMAP_SEARCH_OLDER,
};

enum imap_search_entry_type {
	IMAP_SEARCH_ENTRY_ALL,
	IMAP_SEARCH_ENTRY_PRIV,
	IMAP_SEARCH_ENTRY_SHARED,
};

struct imap_search_node {
	enum imap_search_key key;
	const char *value;		/* may hold 8-bit bytes */
	size_t len;
	const char *header;		/* HEADER field name */
	struct imap_date date;
	uint64_t number;
	struct imap_seqset *set;	/* unresolved */
	const char *entry;		/* MODSEQ "/flags/\\seen" or NULL */
	enum imap_search_entry_type entry_type;
	struct imap_search_node *children;
	size_t nchildren;
};

#define IMAP_SEARCH_RET_MIN 0x01
#define IMAP_SEARCH_RET_MAX 0x02
#define IMAP_SEARCH_RET_ALL 0x04
#define IMAP_SEARCH_RET_COUNT 0x08
#define IMAP_SEARCH_RET_SAVE 0x10

struct imap_search {
	const char *charset;		/* upper-cased, or NULL */
	bool esearch;			/* RETURN given */
	unsigned ret;			/* IMAP_SEARCH_RET_* */
	bool modseq;			/* a MODSEQ key is used */
	bool saved;			/* "$" is used */
	struct imap_search_node root;	/* AND of the keys */
};

int imap_cmd_search(struct imap_cmd *cmd, const struct imap_search **search_r,
		    const char **error_r) TERN_WUR;

enum imap_sort_key {
	IMAP_SORT_ARRIVAL,
	IMAP_SORT_CC,
	IMAP_SORT_DATE,
	IMAP_SORT_FROM,
	IMAP_SORT_SIZE,
	IMAP_SORT_SUBJECT,
	IMAP_SORT_TO,
	IMAP_SORT_DISPLAYFROM,
	IMAP_SORT_DISPLAYTO,
};

struct imap_sort_criterion {
	enum imap_sort_key key;
	bool reverse;
};

struct imap_sort {
	const struct imap_sort_criterion *criteria;
	size_t ncriteria;
	struct imap_search search;	/* charset is mandatory */
};

int imap_cmd_sort(struct imap_cmd *cmd, const struct imap_sort **sort_r,
		  const char **error_r) TERN_WUR;

struct imap_thread {
	const char *algorithm;		/* upper-cased */
	struct imap_search search;
};

int imap_cmd_thread(struct imap_cmd *cmd, const struct imap_thread **thread_r,
		    const char **error_r) TERN_WUR;

#endif
