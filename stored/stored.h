/*
 * stored.h: the parts of tern-stored and how they meet.
 *
 * session.c (loop thread): accepts clients on the "stored" listener, runs
 * the IPC channel (hello "tern-stored" version 1), checks each request
 * against its schema and hands it to the writer as a struct store_op; when
 * the op comes back it sends the replies.
 * commit.c (helper threads, writer thread): helpers take each spooled
 * message as it arrives (hash, MIME parse, fsync; several at once); the
 * writer does the group commit.  It takes every pending op whose message
 * is taken (up to store_batch_max, in arrival order), makes the new blobs
 * durable, runs all ops in one SQLite transaction, commits, and only then
 * returns the ops to the loop; after that it removes the blob files whose
 * last reference went.
 * ops.c (writer thread): what each request does and its reply frames
 * (docs/protocols/stored.md), and the change events it records.
 * notify.c: the events and the clients' watches (watch/unwatch are
 * answered on the loop thread; committed events go out from there).
 */
#ifndef TERN_STORED_H
#define TERN_STORED_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "compat.h"
#include "blob.h"
#include "ipc.h"
#include "meta.h"
#include "notify.h"
#include "str.h"

#define STORED_PROTO "tern-stored"
#define STORED_PROTO_VERSION 1

struct store_session;
struct store_request;

/* One request on its way through the writer and back. */
struct store_op {
	struct store_op *next;
	const struct store_request *def;
	struct ipc_msg *req;		/* checked against def's schema */
	struct store_session *session;	/* NULL once the client left */
	int64_t received;		/* time(NULL) at receipt */
	/* spooled message (deliver, append): taken by a helper thread
	 * (commit.c) before the writer sees the op */
	struct store_op *prep_next;	/* in the helpers' queue */
	int ready;			/* taken (or nothing to take) */
	struct store_op *dirs_next;	/* its shard mkdirs, queued */
	int dirs_state;			/* 0 none, queued, running, done */
	const char *spool;		/* the file field, or NULL */
	char hex[BLOB_HEX_LEN + 1];
	uint64_t size;
	int spool_failed;		/* the file could not be taken */
	char *envelope;			/* IMAP ENVELOPE, or NULL */
	char *bodystructure;		/* IMAP BODYSTRUCTURE, or NULL */
	/* replies, built by the writer thread; the last is ok or error */
	struct ipc_msg **replies;
	size_t nreplies, cap;
	/* committed changes, published to watching clients (notify.h) */
	struct notify_list events;
	int write;			/* counted in the session's writes */
	int to_writer;			/* the reader passes it on */
};

/* --- session.c and main.c ------------------------------------------ */

struct svc;

/* The daemon's state (main.c). */
struct stored {
	struct svc *svc;
	struct commit *commit;
	struct reader *reader;		/* read-only requests */
	struct store_session *sessions;	/* open ones */
	size_t nsessions;		/* allocated ones, open or not */
	size_t frame_max;
	unsigned requests_max;		/* in flight per client */
	struct notify_hub *hub;		/* watches of the clients */
	size_t notify_backlog_max;	/* output queued before a drop */
};

/* Takes over an accepted unix stream (svc on_accept). */
void session_accept(struct stored *d, uv_stream_t *client);
/* commit_done_cb: sends the op's replies, frees it. */
void session_op_done(struct store_op *op, void *ctx);
/* Closes idle sessions; busy ones close once answered. */
void sessions_stop(struct stored *d);
/* The last session is gone while stopping: the writer may stop. */
void stored_sessions_gone(struct stored *d);

/* --- ops.c ---------------------------------------------------------- */

struct store_ctx {
	struct meta *meta;
	struct blob_store *blobs;
	unsigned fetch_max;
	struct str *error;
	int reader;		/* the reader's connection: nothing may change */
};

/* The request definition for a type, or NULL when unknown. */
const struct store_request *ops_find(const char *type);
/* Whether a request only reads (status, fetch, folder.list, vanished,
 * quota.get): the reader thread may answer it. */
int ops_read_only(const struct store_request *def);
/* Runs a read-only op on the reader's connection; an op that would need
 * the writer (its account's rows do not exist yet) gets to_writer set and
 * no reply. */
void ops_exec_read(struct store_ctx *ctx, struct store_op *op);
const struct ipc_field_spec *ops_schema(const struct store_request *def);
/* The name of the spooled-file field of the request, or NULL. */
const char *ops_spool_field(const struct store_request *def);
/* Runs the op inside the open transaction (in its own savepoint). */
void ops_exec(struct store_ctx *ctx, struct store_op *op);
/* Replaces the op's replies by one error frame. */
void ops_fail(struct store_op *op, const char *code, const char *message);
void op_free(struct store_op **op);

/* --- commit.c ------------------------------------------------------- */

struct commit;

struct commit_settings {
	const char *meta_path;
	const char *store_dir;
	unsigned batch_max;	/* ops per transaction */
	unsigned fetch_max;	/* messages per fetch answer */
	int64_t key_lifetime;	/* seconds a delivery key is kept */
};

/* Called on the loop thread for each finished op (owns it). */
typedef void commit_done_cb(struct store_op *op, void *ctx);

/* Starts the writer thread, which opens the store and recovers it; waits
 * for that to finish. */
int commit_start(uv_loop_t *loop, const struct commit_settings *set,
		 commit_done_cb *done, void *ctx, struct commit **c_r,
		 struct str *error) TERN_WUR;
void commit_submit(struct commit *c, struct store_op *op);
/* The writer's blob store (paths only: the reader shares it read-only). */
const struct blob_store *commit_blobs(const struct commit *c);

/* --- reader.c ------------------------------------------------------- */

/*
 * The reader thread answers read-only requests on its own SQLite
 * connection (WAL: it reads what is committed while the writer works), so
 * a FETCH never waits behind a group commit's fsyncs.  A session sends its
 * reads there only while it has no write in flight, so it always reads
 * its own writes.  Ops the reader cannot answer go on to the writer.
 */
struct reader;

int reader_start(uv_loop_t *loop, const struct commit_settings *set,
		 struct commit *commit, commit_done_cb *done, void *ctx,
		 struct reader **r_r, struct str *error) TERN_WUR;
void reader_submit(struct reader *r, struct store_op *op);
/* Ops submitted and not yet handed back. */
size_t reader_in_flight(const struct reader *r);
/* Finishes the queued ops, stops the thread, closes the loop handle; *r =
 * NULL. */
void reader_stop(struct reader **r);
/* Ops submitted and not yet handed back. */
size_t commit_in_flight(const struct commit *c);
/* Finishes the queued ops, stops the thread, closes the loop handle (the
 * memory goes in its close callback); *c = NULL. */
void commit_stop(struct commit **c);

#endif
