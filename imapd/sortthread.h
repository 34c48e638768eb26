/*
 * sortthread.h: IMAP SORT (RFC 5256, DISPLAYFROM/DISPLAYTO of RFC 5957)
 * and THREAD=ORDEREDSUBJECT / THREAD=REFERENCES (RFC 5256 2.1, 2.2).
 *
 * Pure: no I/O, no mailbox access.  The caller fills one struct
 * sortthread_msg per message (sortthread_msg_fill() does it from a parsed
 * message) and hands the array over; SORT answers an order of indices,
 * THREAD a tree that sortthread_format() writes as the IMAP THREAD
 * response text.  Strings compare with the i;ascii-casemap collation
 * (I18NLEVEL=1), message-ids byte for byte.  The sent date is the Date:
 * time, or the internal date when it is missing; equal keys are ordered by
 * sequence number.
 *
 * Limits: everything is iterative (no recursion however deep a References
 * chain goes); time is O(n log n) plus the References ids.  Linking a
 * parent to a message that already has children checks for a loop by
 * walking the parent's ancestors and the message's descendants side by
 * side, at most SORTTHREAD_LOOP_WALK_MAX steps: only when both are longer
 * is the link taken for a loop and not made.  sortthread_msg_fill() keeps
 * the last SORTTHREAD_REFS_MAX ids of References.
 *
 * Callers: tern-imapd (SORT, UID SORT, THREAD, UID THREAD).
 */
#ifndef TERN_SORTTHREAD_H
#define TERN_SORTTHREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "compat.h"
#include "imapsearch.h"
#include "str.h"

#define SORTTHREAD_NONE ((size_t)-1)
#define SORTTHREAD_REFS_MAX 1000
#define SORTTHREAD_LOOP_WALK_MAX 1024

struct mime_part;

/* The keys of one message.  Strings are UTF-8 and NUL-terminated; the
 * key strings are never NULL ("" when the field is missing), the ids are
 * without angle brackets.  With sortthread_msg_fill() the struct owns its
 * strings (sortthread_msg_clear() frees them); a caller filling it by hand
 * may point at its own strings and not call the clear function. */
struct sortthread_msg {
	uint32_t seq;		/* message sequence number */
	uint32_t uid;
	time_t internal_date;	/* ARRIVAL; also the sent date without Date: */
	time_t sent_date;	/* Date: header, 0 when missing or unparsable */
	uint64_t size;		/* RFC822.SIZE */
	bool is_reply;		/* the subject had Re:/Fwd: forms */
	char *subject;		/* base subject (mime_subject_base()) */
	char *from;		/* mime_sort_address(.., 0) */
	char *to;
	char *cc;
	char *displayfrom;	/* mime_sort_address(.., 1) */
	char *displayto;
	char *message_id;	/* NULL when none */
	char *in_reply_to;	/* its first id, NULL when none */
	char **references;	/* ids of References, oldest first */
	size_t nreferences;
};

enum sortthread_algo {
	SORTTHREAD_ORDEREDSUBJECT,
	SORTTHREAD_REFERENCES,
};

/* One node of a thread tree: a message (msg = index into the messages)
 * or a dummy (msg = SORTTHREAD_NONE), which only occurs at the top level
 * and then has two or more children.  Links are node indices. */
struct sortthread_node {
	size_t msg;
	size_t child;		/* first child, SORTTHREAD_NONE when none */
	size_t next;		/* next sibling, SORTTHREAD_NONE at the end */
};

/* The threads: first is the first top-level node; siblings are in their
 * final order. */
struct sortthread_tree {
	struct sortthread_node *nodes;
	size_t count;
	size_t first;
};

/* Fills m from a parsed message (the root part, or an encapsulated
 * message): Date, Subject, From/To/Cc keys, Message-ID, In-Reply-To,
 * References.  Keys longer than the header allows come out empty. */
void sortthread_msg_fill(struct sortthread_msg *m,
			 const struct mime_part *root, uint32_t seq,
			 uint32_t uid, time_t internal_date, uint64_t size);
/* Frees what sortthread_msg_fill() allocated and zeroes m. */
void sortthread_msg_clear(struct sortthread_msg *m);

/* The sent date of RFC 5256: Date:, or the internal date. */
time_t sortthread_sent_date(const struct sortthread_msg *m);

/* Compares two messages by the criteria (0 only when all keys are equal;
 * sequence numbers are not looked at). */
int sortthread_compare(const struct sortthread_msg *a,
		       const struct sortthread_msg *b,
		       const struct imap_sort_criterion *criteria,
		       size_t ncriteria);

/* SORT: order_r (count entries, from the caller) receives the indices of
 * msgs in sorted order; equal keys by ascending sequence number, also
 * under REVERSE.  ncriteria may be 0 (sequence order). */
void sortthread_sort(const struct sortthread_msg *msgs, size_t count,
		     const struct imap_sort_criterion *criteria,
		     size_t ncriteria, size_t *order_r);

/* "ORDEREDSUBJECT" or "REFERENCES" (any case): 0 with *algo_r, -1 when
 * the algorithm is not supported. */
int sortthread_algo_parse(const char *name, enum sortthread_algo *algo_r)
	TERN_WUR;

/* THREAD over all count messages (in any order; the message-id of
 * duplicates goes to the lowest sequence number).  Never fails. */
struct sortthread_tree *sortthread_thread(const struct sortthread_msg *msgs,
					  size_t count,
					  enum sortthread_algo algo);
void sortthread_tree_free(struct sortthread_tree **tree);

/* Appends the threads as in "* THREAD (2)(3 6 (4 23)(44 7 96))" (without
 * "* THREAD ", nothing for no messages), with UIDs (use_uid) or sequence
 * numbers.  -1 (ENOBUFS) when out is full; out then holds a prefix. */
int sortthread_format(const struct sortthread_tree *tree,
		      const struct sortthread_msg *msgs, bool use_uid,
		      struct str *out) TERN_WUR;

#endif
