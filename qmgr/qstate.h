/*
 * qstate.h: the delivery state of a queued message, kept in ID.state
 * beside the queue file (which never changes once written).
 *
 * The state says how many attempts were made, when the next one is due,
 * and per recipient (by its index in the queue file) whether it is done
 * (delivered or bounced), which of its expanded addresses were delivered
 * already, and the last temporary error.  The file is text:
 *
 *     tern-qstate 1
 *     attempts 2
 *     next 1732850300
 *     warned 1                  the delay notice was sent (optional)
 *     D 0                       recipient 0 is done
 *     T 1 ann@example.com       recipient 1 reached ann@example.com
 *     E 1 451 4.4.1 text        recipient 1's last temporary error
 *
 * It is written to a temporary file, fsynced and renamed over the old one
 * (qstate_write), so a reader sees the old or the new state, never a mix.
 * A missing file means a fresh message.  Limits: QSTATE_FILE_MAX bytes;
 * recipient indexes below the recipient count.  Callers: tern-qmgr and
 * ternctl queue (list).
 */
#ifndef TERN_QSTATE_H
#define TERN_QSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compat.h"
#include "str.h"

#define QSTATE_VERSION "tern-qstate 1"
#define QSTATE_SUFFIX ".state"
#define QSTATE_FILE_MAX (16 * 1024 * 1024)
#define QSTATE_TEXT_MAX 512	/* of one error */

struct qstate_rcpt {
	bool done;
	char *error;		/* last temporary error, or NULL */
	char **reached;		/* expanded addresses delivered */
	size_t nreached;
};

struct qstate {
	unsigned attempts;
	int64_t next_try;	/* unix time; 0 = at once */
	bool warned;		/* the delay notice was sent */
	struct qstate_rcpt *rcpts;
	size_t nrcpts;
};

void qstate_init(struct qstate *st, size_t nrcpts);
void qstate_clear(struct qstate *st);
/* 0, or -1 with *error_r for a malformed state. */
int qstate_parse(struct qstate *st, const char *data, size_t len,
		 size_t nrcpts, const char **error_r) TERN_WUR;
int qstate_encode(const struct qstate *st, struct str *out) TERN_WUR;
/* Blocking (thread pool or tools): 1 = read, 0 = no file (st fresh),
 * -1 = error (a sentence in error). */
int qstate_read(const char *path, struct qstate *st, size_t nrcpts,
		struct str *error) TERN_WUR;
/* Blocking: path.tmp, fsync, rename, fsync of the folder.  -1 with a
 * sentence in error. */
int qstate_write(const char *path, const struct qstate *st,
		 struct str *error) TERN_WUR;

/* Blocking: only the attempts and the next try, from the start of the
 * file (for scans and listings): 1 = read, 0 = no file, -1 = bad. */
int qstate_peek(const char *path, unsigned *attempts_r, int64_t *next_r)
	TERN_WUR;

bool qstate_reached(const struct qstate *st, size_t rcpt, const char *addr);
void qstate_add_reached(struct qstate *st, size_t rcpt, const char *addr);
void qstate_set_error(struct qstate *st, size_t rcpt, const char *error);

/* The wait before attempt number attempts+1: min doubled per attempt
 * made, at most max (all in seconds). */
int64_t qstate_backoff(unsigned attempts, int64_t min, int64_t max);

#endif
