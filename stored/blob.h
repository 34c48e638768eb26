/*
 * blob.h: tern-stored's immutable, content-addressed message files.
 *
 * A blob is the exact bytes of one message, named by the lower-case hex
 * SHA-256 of those bytes and kept at DIR/ab/<hash> (ab: its first two hex
 * digits), under the store directory (store_dir, default data/store).  The
 * 256 shards are made when the store is opened.  A store of the older
 * nested layout, DIR/ab/cd/<hash> (cd made on demand), is recognised at
 * open and keeps it.  A message delivered to many local recipients is one blob;
 * the metadata (meta.h) counts the references and the blob file is removed
 * only after the transaction that dropped the last one has committed.
 *
 * Spool rule: a client writes the message into DIR/tmp/ (same filesystem),
 * closes it and sends its path; from then on the store owns the file.
 * blob_prepare() opens it without following links, insists on a regular
 * file with one link, hashes it and fsyncs it; blob_install() renames it
 * into place (or unlinks it when the same content is already stored) and
 * remembers the directories to fsync; blob_sync_dirs() fsyncs them.
 * blob_prepare() keeps no state and blob_prepare_dirs() locks what it
 * shares: both may run on any thread; so may blob_exists() and
 * blob_remove(), which touch no shared state.  The other calls on one
 * store come from one thread at a time (the filer, or the writer when no
 * batch is being filed).
 *
 * Crash safety: before a batch renames new blobs into place, their hashes go
 * to DIR/intent (rewritten in place and fdatasynced; blob_intent_write()
 * blanks what the previous list left beyond the new one, so nothing stale
 * stays listed); at start-up every hash listed there
 * that the metadata does not know is an orphan of an uncommitted batch and
 * is removed.  Nothing here fsyncs less than that rule needs.
 *
 * One writer: blob_store_open() takes an exclusive lock (flock) on
 * DIR/lock, held until blob_store_free(), so a second tern-stored or a
 * `ternctl store check` cannot work on a store that is in use.
 *
 * Spool hygiene: files a crashed client left in DIR/tmp are removed when
 * older than a day (blob_spool_stale(), at start and by store check).
 *
 * Callers: the writer thread of tern-stored and `ternctl store check`
 * (every function blocks).
 */
#ifndef TERN_BLOB_H
#define TERN_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "compat.h"
#include "str.h"

#define BLOB_HEX_LEN 64
#define BLOB_INTENT_MAX 65536	/* hashes listed in one intent file */

struct blob_store;

#define BLOB_SPOOL_STALE_SECS (24 * 60 * 60)

/* Opens (and creates, mode 0750) dir, dir/tmp and dir/intent, and locks
 * the store; fails when another process holds the lock. */
int blob_store_open(const char *dir, struct blob_store **bs_r,
		    struct str *error) TERN_WUR;
void blob_store_free(struct blob_store **bs);

const char *blob_store_dir(const struct blob_store *bs);
const char *blob_store_tmp_dir(const struct blob_store *bs);
/* 1 for a store of the nested layout (DIR/ab/cd/<hash>), whose shard
 * directories blob_prepare_dirs() makes per blob. */
int blob_store_nested(const struct blob_store *bs);

/* 1 when hex is 64 lower-case hex digits. */
int blob_hex_valid(const char *hex);
/* Appends DIR/ab/cd/<hex> to out. */
int blob_path(const struct blob_store *bs, const char *hex, struct str *out)
	TERN_WUR;

/* 0 when path names a file directly inside DIR/tmp/ (a plain name of
 * [A-Za-z0-9._-], not starting with '.'); the file is not touched. */
int blob_spool_check(const struct blob_store *bs, const char *path,
		     struct str *error) TERN_WUR;

/* Opens the spooled file, checks it, hashes it into hex_r, fsyncs it.
 * Each chunk read also goes to cb when it is not NULL (one read pass for
 * hashing and parsing). */
typedef void blob_chunk_cb(const void *data, size_t len, void *ctx);
int blob_prepare(const char *spool_path, char hex_r[BLOB_HEX_LEN + 1],
		 uint64_t *size_r, blob_chunk_cb *cb, void *ctx,
		 struct str *error) TERN_WUR;
/* The same; hashed (when not NULL) is called once the hash is known and
 * before the fsync, so that the caller can start other work meanwhile. */
typedef void blob_hashed_cb(const char *hex, void *ctx);
int blob_prepare_hooked(const char *spool_path,
			char hex_r[BLOB_HEX_LEN + 1], uint64_t *size_r,
			blob_chunk_cb *cb, void *ctx, blob_hashed_cb *hashed,
			void *hashed_ctx, struct str *error) TERN_WUR;

/* Creates the shard directories of hex ahead of blob_install(), from any
 * thread, and fsyncs the parent of each one it created (nested layout;
 * nothing to do in the flat one).  The parent is
 * noted from before the mkdir until after that fsync, and the next
 * blob_sync_dirs() fsyncs every parent still noted: an install that finds
 * its shard already there never misses the fsync of its creation. */
int blob_prepare_dirs(struct blob_store *bs, const char *hex,
		      struct str *error) TERN_WUR;

/* Moves the spooled file to its place; *installed_r = 1 when renamed, 0
 * when the blob already existed and the spooled file was removed. */
int blob_install(struct blob_store *bs, const char *spool_path,
		 const char *hex, int *installed_r, struct str *error)
	TERN_WUR;
/* fsyncs every directory blob_install() changed since the last call. */
int blob_sync_dirs(struct blob_store *bs, struct str *error) TERN_WUR;
/* The same with the fsyncs issued in parallel: run must call fn(i, arg)
 * exactly once for every i < n, on any threads, and return only when all
 * of them have returned.  (Concurrent fsyncs overlap on the device instead
 * of queueing one behind the other.) */
typedef void blob_task_cb(size_t i, void *arg);
typedef void blob_runner(size_t n, blob_task_cb *fn, void *arg,
			 void *run_ctx);
int blob_sync_dirs_with(struct blob_store *bs, blob_runner *run,
			void *run_ctx, struct str *error) TERN_WUR;

/* Removes a blob file; a missing one is not an error. */
int blob_remove(struct blob_store *bs, const char *hex, struct str *error)
	TERN_WUR;
/* 1 when the blob file exists. */
int blob_exists(const struct blob_store *bs, const char *hex);

/* Replaces DIR/intent with the n hashes, fsynced. */
int blob_intent_write(struct blob_store *bs, const char *const *hex,
		      size_t n, struct str *error) TERN_WUR;
/* Reads DIR/intent: calls cb for each valid hash listed (a torn last line is
 * ignored).  cb returns -1 to stop with an error. */
typedef int blob_hex_cb(const char *hex, void *ctx);
int blob_intent_scan(struct blob_store *bs, blob_hex_cb *cb, void *ctx,
		     struct str *error) TERN_WUR;

/* Calls cb for each plain file in DIR/tmp not modified for more than
 * max_age seconds; removes it too when remove is set (after cb). */
typedef int blob_spool_cb(const char *path, int64_t age, void *ctx);
int blob_spool_stale(struct blob_store *bs, int64_t max_age, int remove,
		     blob_spool_cb *cb, void *ctx, struct str *error) TERN_WUR;

/* Calls cb for every blob file under DIR (for checks and tests). */
int blob_scan(struct blob_store *bs, blob_hex_cb *cb, void *ctx,
	      struct str *error) TERN_WUR;

#endif
