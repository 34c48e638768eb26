/*
 * imapcmd.h: typed views of parsed IMAP commands (imapparse.h): FETCH,
 * STORE, COPY/MOVE, SELECT/EXAMINE, STATUS, LIST/LSUB, APPEND, ENABLE, ID,
 * AUTHENTICATE and LOGIN, plus the argument types they share (mailbox
 * names, flag lists, sequence sets).  SEARCH, SORT and THREAD are in
 * imapsearch.h.
 *
 * Each imap_cmd_X() checks the whole argument list of its command and
 * fills a struct allocated from the command (freed with it); strings point
 * into the command.  On a syntax error they return -1 with a message for
 * "tag BAD <message>".  Mailbox names come out in UTF-8: decoded from
 * modified UTF-7, or taken as they are (valid UTF-8 required) when
 * UTF8=ACCEPT is enabled; "INBOX" in any case is "INBOX".  Sequence sets
 * are left unresolved ("*" and "$" are the caller's to resolve).
 *
 * Grammar: RFC 3501/9051, with CONDSTORE/QRESYNC (7162), LIST-EXTENDED
 * (5258), SPECIAL-USE (6154), LIST-STATUS (5819), MULTIAPPEND (3502),
 * BINARY (3516), ENABLE (5161), ID (2971), SASL-IR (4959), MOVE (6851).
 *
 * Callers: tern-imapd.  Limits: those of the parser; ID follows RFC 2971
 * (30 pairs, keys of 30 and values of 1024 bytes).
 */
#ifndef TERN_IMAPCMD_H
#define TERN_IMAPCMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "compat.h"
#include "imapparse.h"
#include "imaptypes.h"

#define IMAP_SECTION_PARTS_MAX 64	/* "1.2.3..." depth */

/* ---- shared argument types ---- */

/* A sequence set (number or set token); owned by the command. */
int imap_arg_seqset(struct imap_cmd *cmd, const struct imap_arg *a,
		    struct imap_seqset **set_r, const char **error_r) TERN_WUR;
/* A mailbox name in UTF-8 (see above). */
int imap_arg_mailbox(struct imap_cmd *cmd, const struct imap_arg *a,
		     bool utf8, const char **name_r, const char **error_r)
	TERN_WUR;
/* A parenthesised flag list ("\Seen" or keywords); single flags without
 * parentheses too when bare != 0 (STORE). */
int imap_arg_flags(struct imap_cmd *cmd, const struct imap_arg *a,
		   bool bare, const char *const **flags_r, size_t *n_r,
		   const char **error_r) TERN_WUR;

/* ---- FETCH ---- */

#define IMAP_FETCH_FLAGS 0x001
#define IMAP_FETCH_INTERNALDATE 0x002
#define IMAP_FETCH_RFC822_SIZE 0x004
#define IMAP_FETCH_ENVELOPE 0x008
#define IMAP_FETCH_BODY 0x010		/* BODY (structure, no extensions) */
#define IMAP_FETCH_BODYSTRUCTURE 0x020
#define IMAP_FETCH_UID 0x040
#define IMAP_FETCH_MODSEQ 0x080
#define IMAP_FETCH_RFC822 0x100		/* the whole message; sets \Seen */
#define IMAP_FETCH_RFC822_HEADER 0x200
#define IMAP_FETCH_RFC822_TEXT 0x400	/* sets \Seen */

enum imap_fetch_kind {
	IMAP_FETCH_KIND_BODY,		/* BODY[...] / BODY.PEEK[...] */
	IMAP_FETCH_KIND_BINARY,		/* BINARY[...] / BINARY.PEEK[...] */
	IMAP_FETCH_KIND_BINARY_SIZE,	/* BINARY.SIZE[...] */
};

enum imap_section_spec {
	IMAP_SECTION_ALL,		/* [] or [1.2]: the whole part */
	IMAP_SECTION_HEADER,
	IMAP_SECTION_HEADER_FIELDS,
	IMAP_SECTION_HEADER_FIELDS_NOT,
	IMAP_SECTION_TEXT,
	IMAP_SECTION_MIME,
};

struct imap_fetch_section {
	enum imap_fetch_kind kind;
	bool peek;
	uint32_t parts[IMAP_SECTION_PARTS_MAX];	/* "1.2" = { 1, 2 } */
	size_t nparts;
	enum imap_section_spec spec;
	const char *const *fields;	/* HEADER.FIELDS[.NOT], as sent */
	size_t nfields;
	bool partial;			/* <offset.length> */
	uint64_t offset, length;
};

struct imap_fetch {
	struct imap_seqset *set;
	unsigned items;			/* IMAP_FETCH_* */
	struct imap_fetch_section *sections;
	size_t nsections;
	bool changedsince_set;
	uint64_t changedsince;		/* CHANGEDSINCE (implies MODSEQ) */
	bool vanished;			/* VANISHED (UID FETCH only) */
	bool sets_seen;			/* a non-peek body item was asked */
};

int imap_cmd_fetch(struct imap_cmd *cmd, const struct imap_fetch **fetch_r,
		   const char **error_r) TERN_WUR;
/* The name of a section in the FETCH response: "BODY[1.HEADER.FIELDS
 * (DATE)]<0>" (PEEK dropped, only the origin of a partial). */
int imap_fetch_section_name(const struct imap_fetch_section *s,
			    struct str *out) TERN_WUR;

/* ---- STORE ---- */

enum imap_store_op {
	IMAP_STORE_REPLACE,	/* FLAGS */
	IMAP_STORE_ADD,		/* +FLAGS */
	IMAP_STORE_REMOVE,	/* -FLAGS */
};

struct imap_store {
	struct imap_seqset *set;
	enum imap_store_op op;
	bool silent;
	const char *const *flags;
	size_t nflags;
	bool unchangedsince_set;
	uint64_t unchangedsince;
};

int imap_cmd_store(struct imap_cmd *cmd, const struct imap_store **store_r,
		   const char **error_r) TERN_WUR;

/* ---- COPY, MOVE ---- */

struct imap_copy {
	struct imap_seqset *set;
	const char *mailbox;
};

int imap_cmd_copy(struct imap_cmd *cmd, bool utf8,
		  const struct imap_copy **copy_r, const char **error_r)
	TERN_WUR;

/* ---- SELECT, EXAMINE ---- */

struct imap_select {
	const char *mailbox;
	bool condstore;
	bool qresync;
	uint32_t uidvalidity;		/* QRESYNC */
	uint64_t modseq;
	struct imap_seqset *known_uids;	/* or NULL */
	struct imap_seqset *match_seqs;	/* seq-match-data, or NULL */
	struct imap_seqset *match_uids;
};

int imap_cmd_select(struct imap_cmd *cmd, bool utf8,
		    const struct imap_select **select_r, const char **error_r)
	TERN_WUR;

/* ---- STATUS ---- */

#define IMAP_STATUS_MESSAGES 0x01
#define IMAP_STATUS_RECENT 0x02
#define IMAP_STATUS_UIDNEXT 0x04
#define IMAP_STATUS_UIDVALIDITY 0x08
#define IMAP_STATUS_UNSEEN 0x10
#define IMAP_STATUS_DELETED 0x20
#define IMAP_STATUS_SIZE 0x40
#define IMAP_STATUS_HIGHESTMODSEQ 0x80

struct imap_status {
	const char *mailbox;
	unsigned items;			/* IMAP_STATUS_* */
};

/* A parenthesised list of status items. */
int imap_status_items(const struct imap_arg *a, unsigned *items_r,
		      const char **error_r) TERN_WUR;
int imap_cmd_status(struct imap_cmd *cmd, bool utf8,
		    const struct imap_status **status_r, const char **error_r)
	TERN_WUR;

/* ---- LIST, LSUB ---- */

#define IMAP_LIST_SEL_SUBSCRIBED 0x1
#define IMAP_LIST_SEL_REMOTE 0x2
#define IMAP_LIST_SEL_RECURSIVEMATCH 0x4
#define IMAP_LIST_SEL_SPECIAL_USE 0x8

#define IMAP_LIST_RET_SUBSCRIBED 0x1
#define IMAP_LIST_RET_CHILDREN 0x2
#define IMAP_LIST_RET_SPECIAL_USE 0x4
#define IMAP_LIST_RET_STATUS 0x8

struct imap_list {
	bool lsub;
	bool extended;			/* selection or return options, or
					 * several patterns */
	const char *reference;		/* UTF-8 */
	const char *const *patterns;	/* UTF-8, wildcards kept */
	size_t npatterns;
	unsigned select;		/* IMAP_LIST_SEL_* */
	unsigned ret;			/* IMAP_LIST_RET_* */
	unsigned status_items;		/* RETURN (STATUS (...)) */
};

int imap_cmd_list(struct imap_cmd *cmd, bool utf8,
		  const struct imap_list **list_r, const char **error_r)
	TERN_WUR;

/* ---- APPEND ---- */

struct imap_append_msg {
	const char *const *flags;
	size_t nflags;
	bool date_set;
	time_t date;			/* UTC */
	int zone;			/* minutes east of UTC */
	const char *data;
	size_t size;
	bool binary;			/* sent as literal8 ~{n} */
};

struct imap_append {
	const char *mailbox;
	struct imap_append_msg *msgs;	/* MULTIAPPEND: one or more */
	size_t nmsgs;
};

int imap_cmd_append(struct imap_cmd *cmd, bool utf8,
		    const struct imap_append **append_r, const char **error_r)
	TERN_WUR;

/* ---- ENABLE, ID, AUTHENTICATE, LOGIN ---- */

struct imap_enable {
	const char *const *caps;	/* upper-cased */
	size_t ncaps;
};

int imap_cmd_enable(struct imap_cmd *cmd, const struct imap_enable **en_r,
		    const char **error_r) TERN_WUR;

#define IMAP_ID_MAX_PAIRS 30
#define IMAP_ID_MAX_KEY 30
#define IMAP_ID_MAX_VALUE 1024

struct imap_id {
	const char *const *keys;
	const char *const *values;	/* NULL for NIL */
	size_t n;			/* 0 for "ID NIL" */
};

int imap_cmd_id(struct imap_cmd *cmd, const struct imap_id **id_r,
		const char **error_r) TERN_WUR;

struct imap_authenticate {
	const char *mechanism;		/* upper-cased */
	bool has_ir;			/* SASL-IR initial response */
	const char *ir;			/* base64 as sent; "" for "=" */
};

int imap_cmd_authenticate(struct imap_cmd *cmd,
			  const struct imap_authenticate **auth_r,
			  const char **error_r) TERN_WUR;

struct imap_login {
	const char *user;
	const char *password;
};

int imap_cmd_login(struct imap_cmd *cmd, const struct imap_login **login_r,
		   const char **error_r) TERN_WUR;

#endif
