/*
 * notify.c: see notify.h.
 *
 * The hub keeps its watches in one array grouped by client (a client's
 * watches are adjacent), so publishing an event is one pass over the
 * array that sends at most once per client.  Dropped clients are marked
 * during a publish and removed after it.
 */
#include "config.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "notify.h"
#include "xalloc.h"

struct watch {
	void *client;		/* NULL: dropped, removed after the pass */
	int64_t account;
	char *folder;		/* "" = every folder */
};

struct notify_hub {
	struct watch *w;
	size_t n, cap;
};

void notify_list_add(struct notify_list *l, enum notify_kind kind,
		     int64_t account, const char *folder, uint32_t uid,
		     uint64_t modseq, unsigned flags, const char *keywords)
{
	struct notify_event *ev;

	if (l->n == l->cap) {
		l->cap = l->cap == 0 ? 8 : l->cap * 2;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	ev = &l->v[l->n++];
	ev->kind = kind;
	ev->account = account;
	ev->folder = xstrdup(folder);
	ev->uid = uid;
	ev->modseq = modseq;
	ev->flags = flags;
	ev->keywords = keywords != NULL ? xstrdup(keywords) : NULL;
	ev->new_name = NULL;
}

void notify_list_add_rename(struct notify_list *l, int64_t account,
			    const char *from, const char *to)
{
	notify_list_add(l, NOTIFY_RENAME, account, from, 0, 0, 0, NULL);
	l->v[l->n - 1].new_name = xstrdup(to);
}

void notify_list_truncate(struct notify_list *l, size_t n)
{
	while (l->n > n) {
		l->n--;
		free(l->v[l->n].folder);
		free(l->v[l->n].keywords);
		free(l->v[l->n].new_name);
	}
}

void notify_list_clear(struct notify_list *l)
{
	notify_list_truncate(l, 0);
	free(l->v);
	l->v = NULL;
	l->cap = 0;
}

struct notify_hub *notify_hub_new(void)
{
	return xcalloc(1, sizeof(struct notify_hub));
}

void notify_hub_free(struct notify_hub **hp)
{
	struct notify_hub *h = *hp;

	if (h == NULL)
		return;
	for (size_t i = 0; i < h->n; i++)
		free(h->w[i].folder);
	free(h->w);
	free(h);
	*hp = NULL;
}

static const char *folder_or_all(const char *folder)
{
	return folder != NULL ? folder : "";
}

int notify_watch(struct notify_hub *h, void *client, int64_t account,
		 const char *folder)
{
	size_t i, last = h->n, mine = 0;

	folder = folder_or_all(folder);
	for (i = 0; i < h->n; i++) {
		if (h->w[i].client != client)
			continue;
		if (h->w[i].account == account &&
		    strcmp(h->w[i].folder, folder) == 0)
			return 0;
		mine++;
		last = i + 1;
	}
	if (mine >= NOTIFY_WATCHES_MAX)
		return -1;
	if (h->n == h->cap) {
		h->cap = h->cap == 0 ? 16 : h->cap * 2;
		h->w = xrealloc(h->w, h->cap * sizeof(*h->w));
	}
	/* After the client's other watches, or at the end. */
	memmove(&h->w[last + 1], &h->w[last], (h->n - last) * sizeof(*h->w));
	h->w[last].client = client;
	h->w[last].account = account;
	h->w[last].folder = xstrdup(folder);
	h->n++;
	return 0;
}

static void remove_at(struct notify_hub *h, size_t i)
{
	free(h->w[i].folder);
	memmove(&h->w[i], &h->w[i + 1], (h->n - i - 1) * sizeof(*h->w));
	h->n--;
}

int notify_unwatch(struct notify_hub *h, void *client, int64_t account,
		   const char *folder)
{
	folder = folder_or_all(folder);
	for (size_t i = 0; i < h->n; i++) {
		if (h->w[i].client == client && h->w[i].account == account &&
		    strcmp(h->w[i].folder, folder) == 0) {
			remove_at(h, i);
			return 1;
		}
	}
	return 0;
}

/* Removes the watches of client, or the dropped ones (client NULL). */
static void remove_client(struct notify_hub *h, const void *client)
{
	size_t kept = 0;

	for (size_t i = 0; i < h->n; i++) {
		if (h->w[i].client == client)
			free(h->w[i].folder);
		else
			h->w[kept++] = h->w[i];
	}
	h->n = kept;
}

void notify_forget(struct notify_hub *h, void *client)
{
	if (client != NULL)
		remove_client(h, client);
}

size_t notify_watches(const struct notify_hub *h, const void *client)
{
	size_t n = 0;

	for (size_t i = 0; i < h->n; i++)
		n += client == NULL || h->w[i].client == client;
	return n;
}

/* Whether folder is under (a child of) parent. */
static bool child_of(const char *folder, const char *parent)
{
	size_t n = strlen(parent);

	return strncmp(folder, parent, n) == 0 && folder[n] == '/';
}

static int matches(const struct watch *w, const struct notify_event *ev)
{
	return w->account == ev->account &&
	       (w->folder[0] == '\0' || strcmp(w->folder, ev->folder) == 0 ||
		(ev->kind == NOTIFY_RENAME && child_of(w->folder, ev->folder)));
}

/* After a rename: the watches of the folder and its children follow. */
static void rename_watches(struct notify_hub *h, const struct notify_event *ev)
{
	size_t from_len = strlen(ev->folder);

	for (size_t i = 0; i < h->n; i++) {
		struct watch *w = &h->w[i];
		size_t to_len = strlen(ev->new_name), rest;
		char *name;

		if (w->account != ev->account || w->folder[0] == '\0' ||
		    (strcmp(w->folder, ev->folder) != 0 &&
		     !child_of(w->folder, ev->folder)))
			continue;
		rest = strlen(w->folder + from_len);
		name = xmalloc(to_len + rest + 1);
		memcpy(name, ev->new_name, to_len);
		memcpy(name + to_len, w->folder + from_len, rest + 1);
		free(w->folder);
		w->folder = name;
	}
}

/* Marks every watch of client as dropped. */
static void drop(struct notify_hub *h, const void *client)
{
	for (size_t i = 0; i < h->n; i++)
		if (h->w[i].client == client)
			h->w[i].client = NULL;
}

size_t notify_hub_publish(struct notify_hub *h, const struct notify_list *l,
			  const void *origin, notify_send_fn *send)
{
	size_t sent = 0;
	int dropped = 0;

	for (size_t e = 0; e < l->n; e++) {
		const struct notify_event *ev = &l->v[e];
		void *last = NULL;

		for (size_t i = 0; i < h->n; i++) {
			void *client = h->w[i].client;

			if (client == NULL || client == origin ||
			    client == last || !matches(&h->w[i], ev))
				continue;
			last = client;
			if (send(client, ev) < 0) {
				drop(h, client);
				dropped = 1;
				continue;
			}
			sent++;
		}
		if (ev->kind == NOTIFY_RENAME)
			rename_watches(h, ev);
	}
	if (dropped)
		remove_client(h, NULL);
	return sent;
}
