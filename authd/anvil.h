/*
 * anvil.h: tern-authd's shared counters of authentication failures and
 * connections, for every protocol daemon (IMAP, POP3, SMTP, HTTP) at once.
 *
 * Pure logic: no I/O, no clock of its own (every call takes "now" in
 * milliseconds), so the unit test drives it with an injected clock.
 *
 * Failures: each failed login is recorded against the client IP and the
 * account name.  A counter holds the times of its most recent failures and
 * counts those inside the sliding window (settings.window_ms).  The reply
 * to a failure is delayed 0, 1, 2, 4 ... seconds (capped at delay_max_ms)
 * by the larger of the two counts; when an IP reaches lockout_threshold
 * failures inside the window it is locked out for lockout_ms, and its
 * failures are forgotten.  A successful login clears both counters.
 *
 * Connections: per (service, IP), the number of open connections (connect
 * minus disconnect) and the number of connects in the current fixed rate
 * window (rate_window_ms).
 *
 * Events: per (event, who), a count in the same kind of fixed window: the
 * messages and recipients per minute of an SMTP client or user.
 *
 * Limits: at most max_entries counters of all kinds; a new one evicts the
 * least recently used, preferring entries that are neither locked out nor
 * holding open connections.  Keys are at most ANVIL_KEY_MAX bytes (longer
 * ones are cut).  Caller: authd/server.c, on the loop thread only.
 */
#ifndef TERN_ANVIL_H
#define TERN_ANVIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compat.h"

#define ANVIL_KEY_MAX 400
#define ANVIL_RING_MIN 16	/* failures remembered, at least (delays) */
#define ANVIL_RING_MAX 1024	/* failures remembered, at most */

struct anvil_settings {
	uint64_t window_ms;		/* failures older than this expire */
	uint64_t delay_max_ms;		/* longest delay of a failed reply */
	unsigned int lockout_threshold;	/* IP failures in window; 0 = off */
	uint64_t lockout_ms;		/* how long a locked-out IP waits */
	uint64_t rate_window_ms;	/* connection rate window */
	size_t max_entries;		/* counters of all kinds */
};

/* What one failure led to. */
struct anvil_failure {
	unsigned int ip_failures;	/* in the window, this one included */
	unsigned int user_failures;
	uint64_t delay_ms;		/* delay the failed reply by this */
	bool locked_out;		/* this failure locked the IP out */
};

struct anvil;

struct anvil *anvil_new(const struct anvil_settings *set);
void anvil_free(struct anvil **a);
/* New settings (reload).  Failure history is kept where the ring size
 * stays the same; entries past a lower max_entries are evicted. */
void anvil_set_settings(struct anvil *a, const struct anvil_settings *set);

/* true while rip is locked out; *remaining_ms_r (may be NULL) is the time
 * left.  An empty rip is never locked out. */
bool anvil_auth_locked(struct anvil *a, const char *rip, uint64_t now,
		       uint64_t *remaining_ms_r);
/* Records a failed login of user (may be "") from rip (may be ""). */
void anvil_auth_failed(struct anvil *a, const char *rip, const char *user,
		       uint64_t now, struct anvil_failure *r);
/* A successful login: forgets the failures of rip and user. */
void anvil_auth_succeeded(struct anvil *a, const char *rip, const char *user,
			  uint64_t now);
/* Failures of rip or user in the window (for status and tests). */
unsigned int anvil_ip_failures(struct anvil *a, const char *rip,
			       uint64_t now);
unsigned int anvil_user_failures(struct anvil *a, const char *user,
				 uint64_t now);

/* A connection opened: returns the open count (this one included) and in
 * *rate_r the connects in the current rate window. */
unsigned int anvil_connect(struct anvil *a, const char *service,
			   const char *rip, uint64_t now, unsigned int *rate_r);
/* A connection closed (a count already at 0 stays there). */
void anvil_disconnect(struct anvil *a, const char *service, const char *rip,
		      uint64_t now);
/* The counts without changing them (0 and 0 for an unknown pair). */
unsigned int anvil_connections(struct anvil *a, const char *service,
			       const char *rip, uint64_t now,
			       unsigned int *rate_r);

/* Adds n events of event (e.g. "smtpd-msg-ip") for who (an IP, a user)
 * and returns the count in the current rate window, these included. */
unsigned int anvil_event(struct anvil *a, const char *event, const char *who,
			 unsigned int n, uint64_t now);

/* Frees counters that hold nothing any more (all failures expired, not
 * locked out, no open connection, rate window over). */
void anvil_expire(struct anvil *a, uint64_t now);
size_t anvil_entries(const struct anvil *a);

#endif
