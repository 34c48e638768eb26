/*
 * meta.h: tern-stored's mailbox metadata (accounts, folders, messages,
 * blob reference counts, quota usage).
 *
 * This header is the whole interface a metadata backend implements; the
 * SQLite one is meta_sqlite.c (WAL, synchronous=FULL, prepared statements,
 * a schema_version table).  A MariaDB backend will implement the same
 * functions.  Every call blocks: only tern-stored's writer thread and the
 * unit tests call it, one thread per struct meta.
 *
 * Model.  An account is the directory's numeric account id plus its
 * address; its rows (and the folders INBOX, Sent, Drafts, Trash, Junk and
 * Archive with their special-use attributes) are created on first use.
 * A folder has a UTF-8 name with '/' as hierarchy separator, a special-use
 * attribute, a subscribed flag, UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ.  A
 * message has a UID, a MODSEQ, the system flags as a bitmask, keywords,
 * an internal date, a size, its blob and optional cached envelope and body
 * structure.  Every change takes a new MODSEQ of its folder (one per call;
 * all messages changed by that call share it); expunged UIDs are kept with
 * their MODSEQ for QRESYNC.  Blob reference counts and the account's quota
 * usage change in the same transaction as the messages.
 *
 * Transactions: meta_begin() ... meta_commit(); inside, each request runs
 * between meta_savepoint() and meta_release() (or meta_rollback_to() when
 * it failed), so one failed request does not undo its batch neighbours.
 * Functions return META_OK or a negative enum meta_status; for
 * META_EINTERNAL the text is in error.
 */
#ifndef TERN_META_H
#define TERN_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compat.h"
#include "str.h"

#define META_SEEN 0x01
#define META_ANSWERED 0x02
#define META_FLAGGED 0x04
#define META_DELETED 0x08
#define META_DRAFT 0x10
#define META_FLAGS_ALL 0x1f

#define META_FOLDER_NAME_MAX 1024	/* bytes of a folder name */
#define META_KEYWORD_MAX 64		/* bytes of one keyword */
#define META_KEYWORDS_MAX 64		/* keywords per message */
#define META_ADDRESS_MAX 320

enum meta_status {
	META_OK = 0,
	META_EINTERNAL = -1,	/* database error: text in error */
	META_ENOTFOUND = -2,	/* no such folder */
	META_EEXISTS = -3,	/* folder exists */
	META_EOVERQUOTA = -4,	/* would pass the account's quota */
	META_EINVALID = -5,	/* bad name, or not allowed (INBOX rename) */
	META_ENOTEMPTY = -6,	/* folder has child folders */
	META_ENOTARGET = -7,	/* copy/move: no such target folder */
};

struct meta;

struct meta_account {
	int64_t id;		/* the directory's account id, > 0 */
	const char *address;	/* the account's address */
};

struct meta_folder {
	const char *name;
	const char *special_use;	/* "\\Sent" etc., or "" */
	int subscribed;
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint64_t highestmodseq;
};

struct meta_status_info {
	uint32_t exists;
	uint32_t unseen;
	uint32_t deleted;	/* with \Deleted */
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint64_t highestmodseq;
	uint64_t size;		/* bytes of all messages */
};

struct meta_new_message {
	const char *blob;		/* hex SHA-256 */
	uint64_t size;
	unsigned flags;			/* META_ bits */
	const char *keywords;		/* normalised, space-separated */
	int64_t internal_date;		/* seconds since the epoch */
	const char *envelope;		/* NULL when not parsed */
	const char *bodystructure;	/* NULL when not parsed */
};

struct meta_message {
	uint32_t uid;
	uint64_t modseq;
	unsigned flags;
	const char *keywords;
	int64_t internal_date;
	uint64_t size;
	const char *blob;
	const char *envelope;		/* NULL when absent */
	const char *bodystructure;	/* NULL when absent */
};

struct meta_quota {
	uint64_t used;		/* bytes of all the account's messages */
	uint64_t messages;
	uint64_t limit;		/* 0 = unlimited */
};

/* A UID set: ranges lo..hi inclusive; hi = UINT32_MAX stands for '*'. */
struct meta_uid_range {
	uint32_t lo, hi;
};
#define META_UIDSET_MAX 256	/* ranges in one set */
struct meta_uidset {
	size_t n;
	struct meta_uid_range r[META_UIDSET_MAX];
};

enum meta_store_mode {
	META_STORE_ADD,		/* +FLAGS */
	META_STORE_REMOVE,	/* -FLAGS */
	META_STORE_REPLACE,	/* FLAGS */
};

/* Parses "1:5,7,9:*" (IMAP sequence-set syntax on UIDs). -1 when bad. */
int meta_uidset_parse(const char *text, struct meta_uidset *set_r) TERN_WUR;
/* Normalises a space-separated keyword list into out (sorted, unique);
 * -1 when a keyword is not an IMAP atom, starts with '\', or the limits
 * are passed. */
int meta_keywords_normalise(const char *text, struct str *out) TERN_WUR;
/* Folder names: UTF-8, no empty level, no leading or trailing '/', no
 * control bytes, at most META_FOLDER_NAME_MAX bytes.  "inbox" in any case
 * is INBOX.  0 when valid (canonical form in out). */
int meta_folder_name_check(const char *name, struct str *out) TERN_WUR;

/* A connection for reads only (a reader thread), next to the writer's:
 * the store must have been opened by meta_open() before. */
int meta_open_reader(const char *path, struct meta **m_r, struct str *error)
	TERN_WUR;
int meta_open(const char *path, struct meta **m_r, struct str *error)
	TERN_WUR;
void meta_close(struct meta **m);

int meta_begin(struct meta *m, struct str *error) TERN_WUR;
/* A read transaction (the reader's connection): one snapshot. */
int meta_begin_read(struct meta *m, struct str *error) TERN_WUR;
int meta_commit(struct meta *m, struct str *error) TERN_WUR;
void meta_rollback(struct meta *m);
int meta_savepoint(struct meta *m, struct str *error) TERN_WUR;
int meta_release(struct meta *m, struct str *error) TERN_WUR;
void meta_rollback_to(struct meta *m);

/* 1 when the account's rows exist with that address, 0 when not (the
 * writer would create or update them), or an error. */
int meta_account_known(struct meta *m, const struct meta_account *a,
		       struct str *error) TERN_WUR;
/* Creates the account (and its default folders) on first use; updates the
 * stored address when the directory renamed it.  Inside a transaction. */
int meta_account_use(struct meta *m, const struct meta_account *a,
		     struct str *error) TERN_WUR;

/* --- folders (names canonical, see meta_folder_name_check) --------- */

typedef int meta_folder_cb(const struct meta_folder *f, void *ctx);
int meta_folder_list(struct meta *m, int64_t account, meta_folder_cb *cb,
		     void *ctx, struct str *error) TERN_WUR;
int meta_folder_get(struct meta *m, int64_t account, const char *name,
		    meta_folder_cb *cb, void *ctx, struct str *error)
	TERN_WUR;
/* special_use: "" or one of \Sent \Drafts \Trash \Junk \Archive \All
 * \Flagged. */
int meta_folder_create(struct meta *m, int64_t account, const char *name,
		       const char *special_use, struct str *error) TERN_WUR;
/* Renames the folder and its children; INBOX cannot be renamed. */
int meta_folder_rename(struct meta *m, int64_t account, const char *from,
		       const char *to, struct str *error) TERN_WUR;
/* Deletes a folder without children, with its messages. */
int meta_folder_delete(struct meta *m, int64_t account, const char *name,
		       struct str *error) TERN_WUR;
int meta_folder_subscribe(struct meta *m, int64_t account, const char *name,
			  int subscribed, struct str *error) TERN_WUR;
/* counts: also the message counts and size (a pass over the folder's
 * messages); without, only UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ. */
int meta_folder_status(struct meta *m, int64_t account, const char *name,
		       bool counts, struct meta_status_info *st_r,
		       struct str *error) TERN_WUR;

/* --- messages ------------------------------------------------------- */

/* Adds an (unreferenced) blob row if absent, so that a blob installed for
 * a request that then failed is reclaimed like any other. */
int meta_blob_register(struct meta *m, const char *hex, uint64_t size,
		       struct str *error) TERN_WUR;
/* Adds a message; META_EOVERQUOTA when used + size > limit (limit > 0). */
int meta_message_add(struct meta *m, int64_t account, const char *folder,
		     const struct meta_new_message *nm, uint32_t *uid_r,
		     uint32_t *uidvalidity_r, uint64_t *modseq_r,
		     struct str *error) TERN_WUR;

typedef int meta_message_cb(const struct meta_message *msg, void *ctx);
/* Messages with first <= uid <= last in UID order, at most limit of them;
 * *next_r is the UID to continue from (0 when none is left). */
int meta_fetch(struct meta *m, int64_t account, const char *folder,
	       uint32_t first, uint32_t last, unsigned limit,
	       meta_message_cb *cb, void *ctx, uint32_t *next_r,
	       struct str *error) TERN_WUR;
/* The same with only uid, modseq, flags and keywords set (the rest zero
 * or NULL): the columns a view needs, without reading the others. */
int meta_fetch_flags(struct meta *m, int64_t account, const char *folder,
		     uint32_t first, uint32_t last, unsigned limit,
		     meta_message_cb *cb, void *ctx, uint32_t *next_r,
		     struct str *error) TERN_WUR;

/* Changes flags and keywords of the messages in set.  With unchangedsince
 * > 0, a message whose MODSEQ is higher is left alone and reported to
 * failed_cb (CONDSTORE).  changed_cb sees each message after its change
 * (messages whose flags did not change keep their MODSEQ and are not
 * reported).  *highestmodseq_r is the folder's value afterwards. */
typedef int meta_uid_cb(uint32_t uid, void *ctx);
int meta_store_flags(struct meta *m, int64_t account, const char *folder,
		     const struct meta_uidset *set, enum meta_store_mode mode,
		     unsigned flags, const char *keywords,
		     uint64_t unchangedsince, meta_message_cb *changed_cb,
		     meta_uid_cb *failed_cb, void *ctx,
		     uint64_t *highestmodseq_r, struct str *error) TERN_WUR;

/* Expunges the \Deleted messages (only those in set when set != NULL);
 * reports each UID; drops blob references and quota usage. */
int meta_expunge(struct meta *m, int64_t account, const char *folder,
		 const struct meta_uidset *set, meta_uid_cb *cb, void *ctx,
		 uint64_t *highestmodseq_r, struct str *error) TERN_WUR;

/* What a copy or move did (UIDPLUS COPYUID, CONDSTORE). */
struct meta_copy_result {
	uint32_t uidvalidity;		/* of the target */
	uint64_t highestmodseq;		/* of the target, afterwards */
	uint64_t src_highestmodseq;	/* of the source, afterwards */
	uint32_t count;			/* messages copied */
};

/* Copies the messages of set from folder `from` to folder `to` of the same
 * account, in UID order: each gets the target's next UID and one new
 * MODSEQ of the target (shared by the call), and keeps its flags,
 * keywords, internal date, size, blob and cached envelope and body
 * structure.  Copy: each blob gains a reference and the quota usage grows
 * (META_EOVERQUOTA, nothing copied, when it would pass the limit).  Move
 * (move != 0): the source messages are expunged in the same transaction
 * (remembered for QRESYNC with one new MODSEQ of the source); references
 * and usage do not change.  cb sees each (source UID, new UID) pair.
 * META_ENOTFOUND: no source folder; META_ENOTARGET: no target folder;
 * META_EINVALID: a move within one folder.  A set that matches nothing is
 * no error (count 0, nothing changes). */
typedef int meta_copy_cb(uint32_t uid, uint32_t new_uid, void *ctx);
int meta_copy(struct meta *m, int64_t account, const char *from,
	      const char *to, const struct meta_uidset *set, int move,
	      meta_copy_cb *cb, void *ctx, struct meta_copy_result *res_r,
	      struct str *error) TERN_WUR;

/* UIDs expunged with a MODSEQ above since (QRESYNC VANISHED). */
int meta_vanished(struct meta *m, int64_t account, const char *folder,
		  uint64_t since, meta_uid_cb *cb, void *ctx,
		  struct str *error) TERN_WUR;

/* --- quota ---------------------------------------------------------- */

int meta_quota_get(struct meta *m, int64_t account, struct meta_quota *q_r,
		   struct str *error) TERN_WUR;
/* limit 0 = unlimited. */
int meta_quota_set(struct meta *m, int64_t account, uint64_t limit,
		   struct str *error) TERN_WUR;

/* --- blobs ---------------------------------------------------------- */

/* The reference count of a blob; META_ENOTFOUND when it has no row. */
int meta_blob_refs(struct meta *m, const char *hex, int64_t *refs_r,
		   struct str *error) TERN_WUR;
typedef int meta_blob_cb(const char *hex, int64_t refs, void *ctx);
/* Blobs whose count dropped to 0 (their files may be removed). */
int meta_blobs_unreferenced(struct meta *m, meta_blob_cb *cb, void *ctx,
			    struct str *error) TERN_WUR;
/* Deletes the rows of blobs with no reference (after their files went). */
int meta_blobs_forget_unreferenced(struct meta *m, struct str *error)
	TERN_WUR;
/* Every blob row (for checks and tests). */
int meta_blobs_all(struct meta *m, meta_blob_cb *cb, void *ctx,
		   struct str *error) TERN_WUR;

/* --- delivery keys ------------------------------------------------ */

/*
 * A delivery key names one delivery attempt of one queued message (the
 * client's queue id; see the deliver request in docs/protocols/stored.md).
 * The store keeps (key, account, folder) with the UID the message got, in
 * the transaction of the message, so that the same delivery repeated
 * after a crash (the client never saw the answer) is recognised and not
 * stored twice.  Keys are at most META_DELIVERY_KEY_MAX bytes; rows older
 * than store_delivery_key_lifetime are pruned.
 */
#define META_DELIVERY_KEY_MAX 512

/* META_OK with the UID and UIDVALIDITY recorded, or META_ENOTFOUND. */
int meta_delivery_find(struct meta *m, const char *key, int64_t account,
		       const char *folder, uint32_t *uid_r,
		       uint32_t *uidvalidity_r, struct str *error) TERN_WUR;
/* Records a delivery (created: seconds since the epoch); META_EEXISTS when
 * the key is already there for that account and folder. */
int meta_delivery_add(struct meta *m, const char *key, int64_t account,
		      const char *folder, uint32_t uid, uint32_t uidvalidity,
		      int64_t created, struct str *error) TERN_WUR;
/* Forgets the deliveries created before `before`; *removed_r of them. */
int meta_delivery_prune(struct meta *m, int64_t before, uint64_t *removed_r,
			struct str *error) TERN_WUR;

/* --- consistency (ternctl store check, with tern-stored stopped) --- */

/* Every blob the metadata knows (a row, or a message naming it): the
 * row's reference count (-1 without a row) and the messages naming it. */
typedef int meta_blob_use_cb(const char *hex, int64_t refcount,
			     int64_t messages, void *ctx);
int meta_check_blobs(struct meta *m, meta_blob_use_cb *cb, void *ctx,
		     struct str *error) TERN_WUR;
/* Sets a blob's reference count (adding the row with size if absent). */
int meta_blob_set_refs(struct meta *m, const char *hex, int64_t refs,
		       uint64_t size, struct str *error) TERN_WUR;

/* A message naming a blob. */
struct meta_blob_user {
	int64_t account;
	const char *address;
	const char *folder;
	uint32_t uid;
	uint64_t size;
};
typedef int meta_blob_user_cb(const struct meta_blob_user *u, void *ctx);
int meta_blob_users(struct meta *m, const char *hex, meta_blob_user_cb *cb,
		    void *ctx, struct str *error) TERN_WUR;
/* The blob's file is lost: expunges every message naming it (each with a
 * new MODSEQ of its folder, remembered for QRESYNC; usage drops) and
 * leaves the row unreferenced. */
int meta_blob_drop(struct meta *m, const char *hex, struct str *error)
	TERN_WUR;

/* An account's recorded quota usage and what its messages add up to. */
struct meta_usage {
	int64_t account;
	const char *address;
	uint64_t used, messages;		/* recorded */
	uint64_t real_used, real_messages;	/* summed */
};
typedef int meta_usage_cb(const struct meta_usage *u, void *ctx);
/* Every account (only that one when account > 0). */
int meta_check_usage(struct meta *m, int64_t account, meta_usage_cb *cb,
		     void *ctx, struct str *error) TERN_WUR;
int meta_usage_set(struct meta *m, int64_t account, uint64_t used,
		   uint64_t messages, struct str *error) TERN_WUR;
/* The id of the account with this address; META_ENOTFOUND when none. */
int meta_account_find(struct meta *m, const char *address, int64_t *id_r,
		      struct str *error) TERN_WUR;

#endif
