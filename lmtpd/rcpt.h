/*
 * rcpt.h: what tern-lmtpd answers to one RCPT TO, and where the mail goes.
 *
 * rcpt_check() resolves the address through tern-authd (aliases, lists,
 * catch-all and plus-addressing are applied there), keeps the targets
 * that are local accounts homed on this server, looks up each one's quota,
 * compares it with the usage tern-stored reports, and picks the plus
 * folder (lmtp_plus_folder) when the account has it.  It ends in one
 * callback, always from the loop, with the reply line to send and, when
 * the recipient is accepted, its targets.  The replies are the table of
 * docs/lmtp.md: 550 5.1.1 unknown, 550 5.2.1 disabled, 452 4.2.2 or
 * 552 5.2.2 over quota, 550 5.3.3 not deliverable here (another domain,
 * or an expansion to one), 451 4.3.0 directory or store unavailable, or
 * the mailbox on another server.
 *
 * An expansion (alias, list) gives one reply: a member that is locked,
 * closed or over quota is left out (and logged) as long as another member
 * remains; a member we cannot deliver at all (external, another mail host)
 * refuses the whole recipient, so nothing is lost silently.
 *
 * Limits: STOREASYNC_RCPT_MAX targets per recipient.  Callers: session.c;
 * deliver.c reads the targets.
 */
#ifndef TERN_LMTPD_RCPT_H
#define TERN_LMTPD_RCPT_H

#include <stddef.h>
#include <stdint.h>

#include "compat.h"

struct lmtpd;

/* One mailbox the message goes into. */
struct rcpt_target {
	int64_t account;	/* the directory's id */
	char *address;		/* the account's address */
	char *folder;		/* "" = INBOX */
	int64_t quota;		/* bytes from the directory, 0 = unlimited */
};

/* An accepted recipient. */
struct rcpt {
	char *address;		/* as in RCPT TO */
	struct rcpt_target *targets;
	size_t ntargets;
};

void rcpt_free(struct rcpt **r);

/* reply: the whole reply line without CRLF; accepted: the recipient when
 * the reply is 250 (the callee owns it), else NULL. */
typedef void rcpt_check_cb(const char *reply, struct rcpt *accepted,
			   void *ctx);

/* size: the MAIL SIZE= value, or 0.  id: the session id for the log. */
void rcpt_check(struct lmtpd *ld, const char *id, const char *address,
		uint64_t size, rcpt_check_cb *cb, void *ctx);

#endif
