/*
 * mailbox.h: one POP3 session's view of an INBOX: the lock, the snapshot
 * taken at login and the UPDATE state at QUIT.
 *
 * The lock: ROOT/data/pop3/ACCOUNT.lock (the directory's numeric account
 * id), held with flock(LOCK_EX|LOCK_NB) for the whole session.  flock
 * works across tern-popd's processes (one per core) and between two
 * sessions of one process (each opens the file); the kernel drops it when
 * a process dies, so it is never stale.  The file's mtime is the time of
 * the account's last POP3 login, which pop3_login_delay checks.  File work
 * runs on the libuv thread pool.
 *
 * The snapshot, read while the lock is taken: the INBOX's status (store
 * "status": UIDVALIDITY, UIDNEXT, count, HIGHESTMODSEQ), then every
 * message in UID order (store "fetch" in batches: UID, size, blob path,
 * \Seen), at most pop3_messages_max, unless the process's snapshot cache
 * (pop3_snapshot_cache) holds the list for exactly that status.  Message
 * numbers are 1..n in that order and never change during the session;
 * UIDLs are "UIDVALIDITY.UID" in hex (stable across sessions and
 * restarts, unique per mailbox).
 *
 * UPDATE: the messages marked deleted get \Deleted and are expunged by
 * UID (store "store", then "expunge" with the UID set); the ones retrieved
 * get \Seen unless they had it at login.  A message another session
 * expunged meanwhile is simply absent: no error.
 *
 * Lifetime: mailbox_free() may be called with requests in flight; their
 * answers are then dropped and the lock is released once they are done.
 * Callbacks come from the loop, never from inside the call.  Callers:
 * session.c.
 */
#ifndef TERN_POPD_MAILBOX_H
#define TERN_POPD_MAILBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compat.h"

#define MAILBOX_UIDL_MAX 24	/* "%x.%x" of two u32, with the NUL */

struct popd;
struct mailbox;

enum mailbox_status {
	MAILBOX_OK = 0,
	MAILBOX_INUSE,		/* another POP3 session holds the lock */
	MAILBOX_LOGIN_DELAY,	/* logged in too recently */
	MAILBOX_TEMPFAIL,	/* the store or the lock file failed */
};

typedef void mailbox_cb(enum mailbox_status st, const char *error,
			void *ctx);

struct mailbox *mailbox_new(struct popd *pd, const char *id,
			    int64_t account, const char *address);
/* Drops the snapshot and releases the lock (after pending requests). */
void mailbox_free(struct mailbox **mb);

/* Frees the snapshot cache (at exit). */
void mailbox_cache_clear(void);

/* Takes the lock and the snapshot. */
void mailbox_open(struct mailbox *mb, mailbox_cb *cb, void *ctx);
/* The UPDATE state: expunges what was deleted, marks what was retrieved
 * seen.  error says what failed for MAILBOX_TEMPFAIL.  false (and no
 * callback) when there is nothing to change. */
bool mailbox_update(struct mailbox *mb, mailbox_cb *cb, void *ctx);

/* Messages in the snapshot (deleted ones included). */
uint32_t mailbox_count(const struct mailbox *mb);
/* Messages not marked deleted, and their size in bytes. */
void mailbox_stat(const struct mailbox *mb, uint32_t *count_r,
		  uint64_t *size_r);
/* true when n names a message of the snapshot not marked deleted. */
bool mailbox_valid(const struct mailbox *mb, uint32_t n);
bool mailbox_deleted(const struct mailbox *mb, uint32_t n);
uint64_t mailbox_size(const struct mailbox *mb, uint32_t n);
const char *mailbox_path(const struct mailbox *mb, uint32_t n);
/* uidl: MAILBOX_UIDL_MAX bytes. */
void mailbox_uidl(const struct mailbox *mb, uint32_t n, char *uidl);

void mailbox_delete(struct mailbox *mb, uint32_t n);
void mailbox_retrieved(struct mailbox *mb, uint32_t n);
/* RSET: no message is marked deleted any more. */
void mailbox_undelete_all(struct mailbox *mb);

#endif
