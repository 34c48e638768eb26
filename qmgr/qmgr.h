/*
 * qmgr.h: what the files of tern-qmgr share.
 *
 * main.c: the daemon on the service skeleton, settings, the 1 s tick.
 * scan.c: the queue folders: inotify on incoming/ (and on queue/ for the
 *   flush request of ternctl), scans, the pending list, the deferred list,
 *   the moves between folders (on the thread pool).
 * deliver.c: one message: read, resolve through tern-authd, deliver over
 *   LMTP and SMTP (relay host, or MX hosts per domain), record the
 *   outcome, bounce, defer or remove.
 * dest.c: destinations (the local tern-lmtpd, the relay host, each remote
 *   domain by its MX hosts): connection setup over the candidate hosts,
 *   connection reuse and the concurrency limit.
 * bounce.c: writes a DSN as a new queue file into incoming/.
 */
#ifndef TERN_QMGR_H
#define TERN_QMGR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "compat.h"
#include "queue.h"
#include "str.h"

struct svc;
struct authclient;
struct smtpclient;
struct smtp_reply;
struct dest;
struct dns_resolver;

enum qfolder {
	QF_INCOMING,
	QF_ACTIVE,
	QF_DEFERRED,
	QF_HOLD,
	QF_CORRUPT,
	QF_TMP,
};

struct qmgr_settings {
	int64_t retry_min, retry_max, lifetime;	/* seconds */
	int64_t delay_warning;			/* seconds; 0 = never */
	uint64_t rescan_ms, idle_ms, lmtp_timeout_ms, smtp_timeout_ms;
	uint64_t connect_timeout_ms;
	char *relay_host, *relay_port;	/* NULL: no relay host */
	char *relay_user, *relay_password;	/* NULL: no AUTH */
	char **servers;			/* proxy_servers: the mailbox servers */
	size_t nservers;
	unsigned smtp_port;		/* of MX hosts */
	unsigned smtp_tls;		/* 0 none, 1 may, 2 encrypt */
	char *dns_servers;		/* the dns_resolvers text, to see changes */
	uint64_t dns_timeout_ms;
	uint64_t dns_cache_ttl_max_ms;
	unsigned active_limit, dest_limit;
	uint64_t active_bytes_limit;	/* qmgr_active_bytes_limit */
	char *hostname, *postmaster;
};

/* A message waiting for its turn. */
struct qpending {
	char id[QUEUE_ID_SIZE];
	enum qfolder from;
	int64_t due;		/* deferred: next try; 0 = now */
};

struct qmgr {
	struct svc *svc;
	uv_loop_t *loop;
	char *root;
	struct qmgr_settings set;
	struct authclient *auth;
	struct dest *lmtp;
	struct dest *relay;	/* made when first needed */
	struct dest **mx;	/* one per remote domain in use */
	size_t nmx, mx_cap;
	struct dns_resolver *dns;	/* NULL when it could not start */
	struct tls_ctx *tls;	/* client context for STARTTLS */
	uv_timer_t tick;
	uv_fs_event_t watch_incoming, watch_queue;
	bool stopping;
	/* Known ids (pending, deferred or active), by a small hash set. */
	struct qidset *known;
	struct qpending *pending;	/* FIFO of incoming work */
	size_t npending, pending_cap, pending_head;
	struct qpending *deferred;	/* waiting for their time */
	size_t ndeferred, deferred_cap;
	unsigned active;
	uint64_t active_bytes;	/* queue file sizes of the active ones */
	bool bytes_full;	/* logged that active_bytes_limit was hit */
	int64_t last_rescan_ms;
	bool scanning;
};

struct qmgr *qmgr_get(void);
char *qmgr_path(const struct qmgr *q, enum qfolder f, const char *name);
const char *qmgr_folder_name(enum qfolder f);
int64_t qmgr_now(void);		/* unix seconds */
double qmgr_now_precise(void);

/* scan.c */
int scan_start(struct qmgr *q, const char **error_r);
void scan_stop(struct qmgr *q);
void scan_tick(struct qmgr *q);
/* A message ended its attempt: deferred (due > 0) or gone; bytes: what
 * deliver_start() was given. */
void scan_message_done(struct qmgr *q, const char *id, bool deferred,
		       int64_t due, uint64_t bytes);
void scan_rescan(struct qmgr *q, bool deferred_too, bool flush);

/* deliver.c */
/* bytes: the size of its queue file, charged to active_bytes until
 * scan_message_done(). */
void deliver_start(struct qmgr *q, const char *id, enum qfolder from,
		   uint64_t bytes);

/* dest.c */
/* A connection (c), or none (c NULL) and why: err (NULL when the
 * destination is going away), permanent when the mail can never go
 * there. */
typedef void dest_get_cb(struct smtpclient *c, const struct smtp_reply *err,
			 bool permanent, void *ctx);
struct tls_ctx;
struct dest *dest_new(struct qmgr *q, const char *name, const char *path);
struct dest *dest_new_smtp(struct qmgr *q, const char *host,
			   const char *port, struct tls_ctx *tls,
			   bool tls_required);
struct dest *dest_new_mx(struct qmgr *q, const char *domain,
			 struct tls_ctx *tls, bool tls_required);
/* LMTP over TCP to another mailbox server's tern-lmtpd; named name. */
struct dest *dest_new_lmtp_tcp(struct qmgr *q, const char *name,
			       const char *host, const char *port);
bool dest_is_lmtp(const struct dest *d);
bool dest_is_mx(const struct dest *d);
/* No connection, waiter or pending work. */
bool dest_unused(const struct dest *d);
/* "host[ip]:port" (or the LMTP destination's name) of a connection that
 * dest_get() handed out. */
const char *dest_conn_name(const struct smtpclient *c);
/* The relay host's destination, or NULL when none is configured. */
struct dest *qmgr_relay(struct qmgr *q);
/* The destination of a remote domain (made when first needed). */
struct dest *qmgr_mx(struct qmgr *q, const char *domain);
/* The tern-lmtpd of another mailbox server, mail host mailhost: its
 * proxy_servers entry, else the host itself on the LMTP port. */
struct dest *qmgr_mailbox(struct qmgr *q, const char *mailhost);
void dest_free(struct dest **d);
void dest_get(struct dest *d, dest_get_cb *cb, void *ctx);
void dest_put(struct dest *d, struct smtpclient *c, bool reuse);
void dest_tick(struct dest *d);
const char *dest_name(const struct dest *d);

/* bounce.c: blocking (thread pool).  Writes queue file id (made with
 * queue_id_new() on the loop thread: it is not thread-safe) with the null
 * sender to rcpt; msg is the whole notice.  0, or -1 with error. */
int bounce_write(const struct qmgr *q, const char *id, const char *rcpt,
		 const char *msg, size_t len, bool eightbit,
		 struct str *error) TERN_WUR;

#endif
