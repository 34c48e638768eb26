/*
 * authclient.h: the directory and authentication client every daemon uses.
 *
 * lmtpd, smtpd, imapd, popd and webd never open the directory: they ask
 * tern-authd over ROOT/run/authd.sock (protocol tern-authd, version 1,
 * docs/protocols/authd.md) through this interface, asynchronously on their
 * libuv loop.  One authclient per process is enough: requests are
 * pipelined on one connection and matched to replies by id.
 *
 * Every request ends in exactly one callback, always from the loop (never
 * from inside the call that made the request).  Anything that keeps the
 * answer from arriving -- authd down or restarting, the request timeout,
 * the queue bound -- ends as AUTHCLIENT_TEMPFAIL with a message, which
 * callers turn into "try again later" (SMTP 4xx, IMAP NO [UNAVAILABLE]).
 * Strings and records passed to a callback are valid during the call only.
 *
 * Connection: opened at authclient_new() and reopened with backoff
 * (100 ms doubling to 5 s) whenever it closes.  Requests wait in a queue
 * while it is down (at most queue_max, waiting or in flight); a request
 * in flight when the connection drops is sent once more on the next one.
 *
 * Cache: positive answers of lookup, resolve and domain (never negative
 * ones, failures or password checks) are kept in this process for the
 * time to live tern-authd gives (authclient_cache_ttl; 0 = none), at most
 * 4096 of them (a full cache is dropped whole).  Only while tern-authd
 * has accepted this client's "watch" on the current connection: it sends
 * "invalidate" when the directory changes (it polls every 250 ms), the
 * cache is dropped then and whenever the connection closes, and an
 * answer to a request sent before a drop is not kept.  So a change is
 * seen within a second, as without the cache.  A cached answer still
 * comes through the callback from the loop.
 *
 * Loop thread only.  Limits: strings as in the protocol (addresses
 * DIR_ADDRESS_MAX bytes, passwords 4096, service names 32, IPs 64).
 */
#ifndef TERN_AUTHCLIENT_H
#define TERN_AUTHCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "compat.h"
#include "dir.h"

#define AUTHCLIENT_TIMEOUT_DEFAULT 30000	/* ms */
#define AUTHCLIENT_QUEUE_DEFAULT 4096
#define AUTHCLIENT_SOCKET "run/authd.sock"	/* under the instance root */

enum authclient_status {
	AUTHCLIENT_OK = 0,
	AUTHCLIENT_NOTFOUND,	/* no such address; domain: not one of ours */
	AUTHCLIENT_INVALID,	/* malformed address or domain */
	AUTHCLIENT_AUTHFAIL,	/* wrong password or unknown user (alike) */
	AUTHCLIENT_REFUSED,	/* right password, account locked or closed */
	AUTHCLIENT_LOCKEDOUT,	/* the client IP is locked out for now */
	AUTHCLIENT_TEMPFAIL,	/* try again later */
};

const char *authclient_status_name(enum authclient_status st);

/* An account as authd describes it (never with the password hash). */
struct authclient_account {
	int64_t id;
	const char *address;
	const char *display_name;	/* "" when none */
	enum dir_account_status status;
	const char *mailhost;		/* "" when none */
	const char *cos;		/* "" when none */
	uint64_t quota, quota_effective;	/* bytes, 0 = unlimited */
	int64_t created;		/* unix time */
};

struct authclient_target {
	enum dir_target_kind kind;
	const char *address;
	const char *mailhost;		/* accounts; "" for externals */
	enum dir_account_status status;	/* accounts */
	int64_t account_id;		/* accounts; 0 for externals */
};

struct authclient_resolution {
	bool local_domain;
	const char *detail;		/* "+tag" without the '+', or NULL */
	const struct authclient_target *targets;
	size_t ntargets;
};

/* One address-book entry. */
struct authclient_gal_entry {
	enum dir_gal_kind kind;
	const char *address;
	const char *display_name;	/* "" when none */
};

struct authclient_settings {
	uint64_t timeout_ms;	/* per request (daemons: authd_timeout); 0 =
				 * AUTHCLIENT_TIMEOUT_DEFAULT */
	size_t queue_max;	/* 0 = AUTHCLIENT_QUEUE_DEFAULT */
	size_t max_frame;	/* 0 = IPC_FRAME_MAX_DEFAULT */
};

/* lookup and authenticate: acct is set for AUTHCLIENT_OK only.  error is
 * a message for the log when st is TEMPFAIL or INVALID, else NULL. */
typedef void authclient_account_cb(enum authclient_status st,
				   const struct authclient_account *acct,
				   const char *error, void *ctx);
/* resolve: res is set for AUTHCLIENT_OK only. */
typedef void authclient_resolve_cb(enum authclient_status st,
				   const struct authclient_resolution *res,
				   const char *error, void *ctx);
/* domain: AUTHCLIENT_OK = one of ours, AUTHCLIENT_NOTFOUND = not. */
typedef void authclient_domain_cb(enum authclient_status st,
				  const char *error, void *ctx);
/* gal_search: entries (sorted by address) for AUTHCLIENT_OK only. */
typedef void authclient_gal_cb(enum authclient_status st,
			       const struct authclient_gal_entry *entries,
			       size_t count, const char *error, void *ctx);
/* connect_notify and connections: open connections from that IP to that
 * service (this one included) and connects in the current rate window. */
typedef void authclient_count_cb(enum authclient_status st,
				 unsigned int count, unsigned int rate,
				 const char *error, void *ctx);

/* socket_path: usually ROOT/AUTHCLIENT_SOCKET.  set may be NULL. */
struct authclient *authclient_new(uv_loop_t *loop, const char *socket_path,
				  const struct authclient_settings *set);
/* Calls every pending callback with AUTHCLIENT_TEMPFAIL ("authclient
 * closed"), then closes; the memory goes when the loop has run the close
 * callbacks.  Sets *ac to NULL. */
void authclient_free(struct authclient **ac);

/* The account of an address (aliases are not followed). */
void authclient_lookup(struct authclient *ac, const char *address,
		       authclient_account_cb *cb, void *ctx);
/* Where mail for a recipient goes: aliases, lists, catch-all, +detail. */
void authclient_resolve(struct authclient *ac, const char *address,
			authclient_resolve_cb *cb, void *ctx);
/* Whether domain is one of this installation's domains. */
void authclient_domain(struct authclient *ac, const char *domain,
		       authclient_domain_cb *cb, void *ctx);
/* The address book (dir_gal_search()): accounts and lists whose address
 * or names contain text; limit 0 = the directory's default (100).
 * AUTHCLIENT_INVALID for a text the directory refuses. */
void authclient_gal_search(struct authclient *ac, const char *text,
			   unsigned int limit, authclient_gal_cb *cb,
			   void *ctx);
/* Checks a password.  service names the protocol ("imap", "pop3",
 * "smtp", "http"), rip the client's IP ("" when unknown); together they
 * feed the shared failure counters.  A failed check may be answered late
 * (progressive delay): the caller's session just waits. */
void authclient_authenticate(struct authclient *ac, const char *user,
			     const char *password, const char *service,
			     const char *rip, authclient_account_cb *cb,
			     void *ctx);
/* A client connection opened (cb may be NULL) / closed.  authd forgets
 * the open connections of a daemon whose authclient goes away. */
void authclient_connect_notify(struct authclient *ac, const char *service,
			       const char *rip, authclient_count_cb *cb,
			       void *ctx);
void authclient_disconnect_notify(struct authclient *ac, const char *service,
				  const char *rip);
/* The counts without changing them. */
void authclient_connections(struct authclient *ac, const char *service,
			    const char *rip, authclient_count_cb *cb,
			    void *ctx);
/* Adds n events of a kind (e.g. "smtpd-rcpt-ip") for who (a client IP, a
 * user): cb gets the count in the current rate window (connect_rate_window)
 * as both count and rate.  Shared by every daemon through tern-authd. */
void authclient_event(struct authclient *ac, const char *event,
		      const char *who, unsigned int n,
		      authclient_count_cb *cb, void *ctx);

/* Requests answered from this process's cache since authclient_new(). */
size_t authclient_cache_hits(const struct authclient *ac);

/* Requests waiting or in flight. */
size_t authclient_pending(const struct authclient *ac);
/* true while the connection is open and its hello was accepted. */
bool authclient_connected(const struct authclient *ac);

#endif
