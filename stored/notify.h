/*
 * notify.h: tern-stored's change notifications (for IMAP IDLE and push).
 *
 * Writer side: while an op runs, ops.c records what it changed (new
 * message, flags changed, message expunged) in the op's notify_list;
 * rolling back a request truncates the list to its mark, a failed batch
 * clears it, so only committed changes are ever announced.
 *
 * Loop side: a notify_hub holds the watches of the clients (one account,
 * or one folder of it; at most NOTIFY_WATCHES_MAX per client).  When an op
 * comes back committed, notify_hub_publish() hands each event once to every
 * other client watching it.  The send function decides about backlog: it
 * returns -1 to drop the client (it is then forgotten by the hub), so no
 * client can make the store buffer without bound.
 *
 * Callers: ops.c (lists, writer thread), session.c (hub, loop thread).  No
 * locking: a list belongs to one op, the hub to the loop thread.
 */
#ifndef TERN_NOTIFY_H
#define TERN_NOTIFY_H

#include <stddef.h>
#include <stdint.h>

#include "compat.h"

#define NOTIFY_WATCHES_MAX 16384	/* per client: an imapd process watches
					 * every folder its sessions hold */

enum notify_kind {
	NOTIFY_NEW,	/* a message arrived (deliver, append, copy) */
	NOTIFY_FLAGS,		/* flags or keywords changed */
	NOTIFY_EXPUNGE,		/* a message went (expunge, move) */
	NOTIFY_RENAME,		/* the folder (and its children) renamed */
	NOTIFY_DELETE,		/* the folder deleted */
};

struct notify_event {
	enum notify_kind kind;
	int64_t account;
	char *folder;
	uint32_t uid;
	uint64_t modseq;
	unsigned flags;		/* NOTIFY_FLAGS only */
	char *keywords;		/* NOTIFY_FLAGS only, else NULL */
	char *new_name;		/* NOTIFY_RENAME only, else NULL */
};

struct notify_list {
	struct notify_event *v;
	size_t n, cap;
};

/* keywords may be NULL. */
void notify_list_add(struct notify_list *l, enum notify_kind kind,
		     int64_t account, const char *folder, uint32_t uid,
		     uint64_t modseq, unsigned flags, const char *keywords);
/* A folder renamed (uid, modseq 0); its children go with it. */
void notify_list_add_rename(struct notify_list *l, int64_t account,
			    const char *from, const char *to);
/* Drops the events past the first n (a rolled back request's). */
void notify_list_truncate(struct notify_list *l, size_t n);
/* Drops every event and frees the storage. */
void notify_list_clear(struct notify_list *l);

struct notify_hub;

/* Sends ev to the client; -1 drops the client from the hub. */
typedef int notify_send_fn(void *client, const struct notify_event *ev);

struct notify_hub *notify_hub_new(void);
void notify_hub_free(struct notify_hub **h);

/* Adds a watch of client on account (folder NULL or "": every folder).
 * 0, or -1 when the client has NOTIFY_WATCHES_MAX watches.  A watch that
 * exists already is not added twice. */
int notify_watch(struct notify_hub *h, void *client, int64_t account,
		 const char *folder) TERN_WUR;
/* Removes that watch; 1 when it existed, 0 when not. */
int notify_unwatch(struct notify_hub *h, void *client, int64_t account,
		   const char *folder);
/* Removes every watch of client (it closed). */
void notify_forget(struct notify_hub *h, void *client);
/* Watches of client (all clients when NULL). */
size_t notify_watches(const struct notify_hub *h, const void *client);

/* Each event of l to each watching client except origin (NULL: none),
 * once per client; returns the number of sends.  A rename reaches the
 * watchers of the folder and of its children, and then moves their
 * watches (the origin's too) to the new names. */
size_t notify_hub_publish(struct notify_hub *h, const struct notify_list *l,
			  const void *origin, notify_send_fn *send);

#endif
