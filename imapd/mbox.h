/*
 * mbox.h: the folder a session has selected, as the session sees it.
 *
 * SELECT loads the folder's UIDs, flags, keywords and MODSEQs from
 * tern-stored (fetch batches) into an array in sequence-number order, and
 * asks the store to watch the folder.  From then on the view changes only
 * at points the session controls: the session's own commands change it
 * directly, and changes made elsewhere (notifications from tern-stored for
 * deliveries and other processes, broadcasts from other sessions of this
 * process) are noted on the view (a message marked expunged or dirty, new
 * UIDs pending) and reported by mbox_sync() at the end of a command or
 * during IDLE, so sequence numbers never shift under the client.
 *
 * The hub (one per process) keeps every selected view, dispatches the
 * store's notifications to the views of their (account, folder), and
 * watches each such folder once on the store connection; after the store
 * connection was lost it watches again and each view resynchronises
 * (a full fetch compared with the view).
 *
 * Callers: session.c and the command modules.  Limits: a folder's view
 * holds every message (about 40 bytes each plus keywords).
 */
#ifndef TERN_IMAPD_MBOX_H
#define TERN_IMAPD_MBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compat.h"

struct imapd;
struct session;
struct imap_cmd;
struct imap_seqset;
struct str;

/* Flag bits of the store (docs/protocols/stored.md). */
#define MBOX_SEEN 1u
#define MBOX_ANSWERED 2u
#define MBOX_FLAGGED 4u
#define MBOX_DELETED 8u
#define MBOX_DRAFT 16u
#define MBOX_FLAGS_ALL 31u

/* One message of a view: 16 bytes, so that a 100,000-message folder costs
 * a session 1.6 MB.  Its keywords are one of the view's keyword sets. */
struct mbox_msg {
	uint32_t uid;
	unsigned flags : 5;	/* MBOX_SEEN ... */
	unsigned expunged : 1;	/* gone elsewhere, not announced yet */
	unsigned dirty : 1;	/* flags changed elsewhere, not announced */
	unsigned kwset : 25;	/* index into kwsets; 0 = no keywords */
	uint64_t modseq;
};

#define MBOX_KWSETS_MAX ((1u << 25) - 1)

struct mbox {
	struct mbox *prev, *next;	/* the hub's list */
	struct session *s;
	int64_t account;
	char *name;			/* UTF-8; "INBOX" in that case */
	bool readonly;			/* EXAMINE */
	uint32_t uidvalidity, uidnext;
	uint64_t highestmodseq;
	struct mbox_msg *msgs;		/* sequence order */
	size_t count, cap;
	/* The distinct keyword strings ("$Work $Later") of the view: [0] is
	 * "", the rest interned through a hash table of indexes. */
	char **kwsets;
	size_t nkwsets, kwcap;
	uint32_t *kwhash;		/* open addressing, 0 = empty */
	size_t kwhash_size;
	uint32_t exists_sent;		/* the last EXISTS the client got */
	bool new_pending;		/* notified UIDs not loaded yet */
	bool resync;			/* the store connection was lost */
	bool loading;			/* a fetch for the view is running */
	uint64_t gen;			/* tells views at one address apart */
	size_t kept_bytes;		/* kept (no session): its memory */
	uint64_t kept_at;		/* kept: when, uv_hrtime() */
};

void mbox_hub_init(struct imapd *d);
/* Drops kept views beyond imap_view_cache (after a reload). */
void mbox_views_trim(struct imapd *d);
/* Drops every kept view (their watches go with the store connection). */
void mbox_views_free(struct imapd *d);

/* SELECT and EXAMINE (one handler; cmd->name tells which). */
void cmd_select(struct session *s, struct imap_cmd *cmd);
/* Leaves the selected folder (CLOSE, UNSELECT, a new SELECT, logout). */
void mbox_close(struct session *s);

/* Index (0-based) of a UID in the view, or -1. */
long mbox_find_uid(const struct mbox *mb, uint32_t uid);
/*
 * The messages a sequence set names: indexes (0-based, ascending, each
 * once) into *idx_r (malloc'd; free it), their count in *n_r.  uid: the
 * set holds UIDs ("*" is the highest UID; UIDs not in the view are
 * skipped).  Otherwise sequence numbers ("*" is the count); a number
 * beyond the count is an error: -1 with *error_r.  "$" is taken from the
 * session's saved search result.
 */
int mbox_resolve(struct session *s, struct imap_seqset *set, bool uid,
		 size_t **idx_r, size_t *n_r, const char **error_r) TERN_WUR;

/* The keywords of message i ("" for none). */
const char *mbox_keywords(const struct mbox *mb, size_t i);

/* "(\Seen \Flagged kw1)" of a message. */
void mbox_flags_format(struct str *out, unsigned flags,
		       const char *keywords);
/*
 * The UIDs of messages idx[0..n) (ascending view indexes) as UID-set texts
 * the store takes in one request (docs/protocols/stored.md: at most
 * MBOX_UIDSET_RANGES ranges and MBOX_UIDSET_BYTES bytes each): *n_r texts
 * (malloc'd array of malloc'd strings; mbox_uidsets_free()).  Messages
 * next to each other in the view make one range (no UID the view does not
 * know lies between them).
 */
#define MBOX_UIDSET_RANGES 256
#define MBOX_UIDSET_BYTES 8000
char **mbox_uidsets(const struct mbox *mb, const size_t *idx, size_t n,
		    size_t *n_r);
void mbox_uidsets_free(char **sets, size_t n);

/* Keyword string from a flag list: the system flags into *flags_r, the
 * keywords (validated atoms) kept; -1 with *error_r for an unknown
 * system flag. */
int mbox_flags_parse(const char *const *list, size_t n, unsigned *flags_r,
		     const char ***keywords_r, size_t *nkeywords_r,
		     const char **error_r) TERN_WUR;

/*
 * Reports what changed elsewhere since the last report: "* n EXPUNGE" (or
 * VANISHED under QRESYNC) when expunge_ok, "* n EXISTS", and FETCH FLAGS
 * of changed messages.  Loads new messages from the store first (then
 * done is called later); done may be called before this returns.
 */
void mbox_sync(struct session *s, bool expunge_ok,
	       void (*done)(struct session *s));

/*
 * This session changed the folder: tell the other sessions of this
 * process that have it selected.  Flags: uid got flags/keywords/modseq.
 * Expunge: uid is gone.  New: a message was added (they load it).
 */
void mbox_broadcast_flags(struct session *s, int64_t account,
			  const char *folder, uint32_t uid, unsigned flags,
			  const char *keywords, uint64_t modseq);
void mbox_broadcast_expunge(struct session *s, int64_t account,
			    const char *folder, uint32_t uid);
void mbox_broadcast_new(struct session *s, int64_t account,
			const char *folder);

/* Removes message i from the view (an expunge this session made). */
/* A folder of account was renamed (its children with it) or deleted, by
 * a session of this process or, as the store reports, elsewhere: views
 * follow a rename; sessions with a deleted folder selected end. */
void mbox_folder_renamed(struct imapd *d, int64_t account, const char *from,
			 const char *to);
void mbox_folder_deleted(struct imapd *d, int64_t account,
			 const char *folder);
/* The folder changed in ways the session did not report one by one (its
 * messages moved away): other views reload it. */
void mbox_broadcast_resync(struct session *s, int64_t account,
			   const char *folder);

void mbox_remove(struct mbox *mb, size_t i);
/* Sets flags of message i from a store answer. */
void mbox_set_flags(struct mbox *mb, size_t i, unsigned flags,
		    const char *keywords, uint64_t modseq);

/* "* VANISHED (EARLIER) uids" of the store's "expunged" frames, only the
 * UIDs in filter (when not NULL); nothing when none is left. */
struct ipc_msg;
void mbox_send_vanished(struct session *s, struct ipc_msg *const *frames,
			size_t nframes, const struct imap_seqset *filter);
/* A store "message" frame (uid, flags, keywords, modseq) of this
 * session's change: applied to the view and told to the other sessions.
 * The view index, or -1 (not in the view, malformed). */
long mbox_apply_flags_frame(struct session *s, const struct ipc_msg *frame);

/* The untagged FETCH of message i with FLAGS (and UID under QRESYNC or
 * with_uid, MODSEQ under CONDSTORE). */
void mbox_send_flags(struct session *s, size_t i, bool with_uid);

#endif
