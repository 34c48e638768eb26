/*
 * storeclient.h: a blocking client of tern-stored for tools and tests.
 *
 * Connects to the store's unix socket (run/stored.sock), checks the hello
 * ("tern-stored" version 1) and runs one request at a time: each helper
 * sends a request, reads the data frames of its answer (passing them to a
 * callback) up to the final "ok" or "error" frame, and returns.  Every wait
 * is bounded by the timeout given to store_client_new().  Daemons will get
 * an asynchronous variant on ipcchan.h; this one is for ternctl and tests.
 *
 * Messages: store_spool_create() makes a new file in the store's spool
 * folder (STORE_DIR/tmp, mode 0640, O_EXCL); the caller writes the message,
 * closes the fd and passes the path to store_deliver()/store_append().  From
 * then on the store owns the file (see docs/protocols/stored.md).
 *
 * Errors: -1 with *error_r (valid until the next call on the client); for
 * an error reply of the store, store_client_error_code() names its code
 * ("overquota", "nofolder", "exists", "invalid", ...).
 */
#ifndef TERN_STORECLIENT_H
#define TERN_STORECLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "compat.h"
#include "str.h"

#define STORE_PROTO "tern-stored"
#define STORE_PROTO_VERSION 1

#define STORE_SEEN 0x01
#define STORE_ANSWERED 0x02
#define STORE_FLAGGED 0x04
#define STORE_DELETED 0x08
#define STORE_DRAFT 0x10

struct store_client;

struct store_account {
	int64_t id;		/* the directory's account id */
	const char *address;
};

struct store_rcpt {
	struct store_account account;
	const char *folder;	/* NULL or "" = INBOX */
	unsigned flags;
	int64_t quota;		/* bytes from the directory; -1 = keep */
};

enum store_rcpt_status {
	STORE_RCPT_OK,
	STORE_RCPT_OVERQUOTA,
	STORE_RCPT_NOFOLDER,
	STORE_RCPT_ERROR,
};

struct store_rcpt_result {
	enum store_rcpt_status status;
	uint32_t uid, uidvalidity;
};

struct store_folder {
	const char *name, *special_use;
	int subscribed;
	uint32_t uidvalidity, uidnext;
	uint64_t highestmodseq;
};

struct store_status {
	uint32_t exists, unseen, uidvalidity, uidnext;
	uint64_t highestmodseq, size;
};

struct store_message {
	uint32_t uid;
	uint64_t modseq;
	unsigned flags;
	const char *keywords;	/* space-separated */
	int64_t date;		/* fetch only */
	uint64_t size;		/* fetch only */
	const char *blob;	/* fetch only: path of the message file */
	const char *envelope, *bodystructure;	/* NULL when absent */
};

struct store_quota {
	uint64_t used, messages, limit;
};

typedef int store_folder_cb(const struct store_folder *f, void *ctx);
typedef int store_message_cb(const struct store_message *m, void *ctx);
typedef int store_uid_cb(uint32_t uid, void *ctx);

struct store_client *store_client_new(size_t max_frame, int timeout_ms);
void store_client_free(struct store_client **c);
int store_client_connect(struct store_client *c, const char *socket_path,
			 const char **error_r) TERN_WUR;
/* The code of the last error reply, or "" after other errors. */
const char *store_client_error_code(const struct store_client *c);

/* Creates STORE_DIR/tmp/<unique name>; the path goes to path_r. */
int store_spool_create(const char *store_dir, struct str *path_r, int *fd_r,
		       const char **error_r) TERN_WUR;

/* One result per recipient in results_r (n entries). */
int store_deliver(struct store_client *c, const char *spool_path,
		  int64_t date, const struct store_rcpt *rcpts, size_t n,
		  struct store_rcpt_result *results_r, const char **error_r)
	TERN_WUR;
int store_append(struct store_client *c, const struct store_account *a,
		 const char *folder, const char *spool_path, unsigned flags,
		 const char *const *keywords, size_t nkeywords, int64_t date,
		 uint32_t *uid_r, uint32_t *uidvalidity_r,
		 const char **error_r) TERN_WUR;

int store_folder_list(struct store_client *c, const struct store_account *a,
		      store_folder_cb *cb, void *ctx, const char **error_r)
	TERN_WUR;
int store_folder_create(struct store_client *c, const struct store_account *a,
			const char *folder, const char *special_use,
			const char **error_r) TERN_WUR;
int store_folder_rename(struct store_client *c, const struct store_account *a,
			const char *from, const char *to,
			const char **error_r) TERN_WUR;
int store_folder_delete(struct store_client *c, const struct store_account *a,
			const char *folder, const char **error_r) TERN_WUR;
int store_folder_subscribe(struct store_client *c,
			   const struct store_account *a, const char *folder,
			   int subscribed, const char **error_r) TERN_WUR;
int store_status(struct store_client *c, const struct store_account *a,
		 const char *folder, struct store_status *st_r,
		 const char **error_r) TERN_WUR;

/* Messages with first <= uid <= last, at most limit (0 = the server's
 * maximum); *next_r is where to continue, 0 when done. */
int store_fetch(struct store_client *c, const struct store_account *a,
		const char *folder, uint32_t first, uint32_t last,
		unsigned limit, store_message_cb *cb, void *ctx,
		uint32_t *next_r, const char **error_r) TERN_WUR;
/* mode '+', '-' or '='; unchangedsince 0 = none.  changed sees each
 * changed message, failed each UID refused by UNCHANGEDSINCE. */
int store_flags(struct store_client *c, const struct store_account *a,
		const char *folder, const char *uids, char mode,
		unsigned flags, const char *const *keywords, size_t nkeywords,
		uint64_t unchangedsince, store_message_cb *changed,
		store_uid_cb *failed, void *ctx, uint64_t *highestmodseq_r,
		const char **error_r) TERN_WUR;
/* uids NULL = every \Deleted message; else the \Deleted ones in uids. */
int store_expunge(struct store_client *c, const struct store_account *a,
		  const char *folder, const char *uids, store_uid_cb *cb,
		  void *ctx, uint64_t *highestmodseq_r, const char **error_r)
	TERN_WUR;

/* copy (move 0) or move the messages of uids from folder to `to` (same
 * account); pair sees each (source UID, new UID) for UIDPLUS COPYUID.
 * Error codes "notarget" (no such target: TRYCREATE), "overquota". */
struct store_copy_result {
	uint32_t count, uidvalidity;	/* uidvalidity of the target */
	uint64_t highestmodseq, src_highestmodseq;
};
typedef int store_pair_cb(uint32_t uid, uint32_t new_uid, void *ctx);
int store_copy(struct store_client *c, const struct store_account *a,
	       const char *folder, const char *uids, const char *to, int move,
	       store_pair_cb *pair, void *ctx,
	       struct store_copy_result *res_r, const char **error_r)
	TERN_WUR;

int store_quota_get(struct store_client *c, const struct store_account *a,
		    struct store_quota *q_r, const char **error_r) TERN_WUR;
int store_quota_set(struct store_client *c, const struct store_account *a,
		    uint64_t limit, const char **error_r) TERN_WUR;

#endif
