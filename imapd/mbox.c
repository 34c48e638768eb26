/* mbox.c: see mbox.h. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <uv.h>

#include "compat.h"
#include "imapcmd.h"
#include "imapd.h"
#include "imaptypes.h"
#include "ipc.h"
#include "log.h"
#include "mbox.h"
#include "session.h"
#include "storeasync.h"
#include "str.h"
#include "xalloc.h"

#define LOAD_BATCH 100000		/* messages per flags-only answer */
#define KEYWORDS_MAX 64

static uint64_t mbox_generation;	/* views made by this process */

_Static_assert(sizeof(struct mbox_msg) == 16, "a view's message grew");

/* ---- the view ---- */

static uint32_t kw_hash(const char *kw)
{
	uint32_t h = 2166136261u;	/* FNV-1a */

	for (; *kw != '\0'; kw++)
		h = (h ^ (unsigned char)*kw) * 16777619u;
	return h;
}

static void kw_rehash(struct mbox *mb)
{
	size_t size = mb->kwhash_size == 0 ? 64 : mb->kwhash_size * 2;

	free(mb->kwhash);
	mb->kwhash = xcalloc(size, sizeof(*mb->kwhash));
	mb->kwhash_size = size;
	for (size_t i = 1; i < mb->nkwsets; i++) {
		size_t h = kw_hash(mb->kwsets[i]) & (size - 1);

		while (mb->kwhash[h] != 0)
			h = (h + 1) & (size - 1);
		mb->kwhash[h] = (uint32_t)i;
	}
}

/* The index of a keyword string in the view's sets, added when new. */
static unsigned kw_intern(struct mbox *mb, const char *kw)
{
	size_t h;

	if (kw == NULL || kw[0] == '\0')
		return 0;
	if (mb->nkwsets == 0) {
		mb->kwsets = xcalloc(16, sizeof(*mb->kwsets));
		mb->kwcap = 16;
		mb->kwsets[0] = xstrdup("");
		mb->nkwsets = 1;
	}
	if ((mb->nkwsets + 1) * 2 > mb->kwhash_size)
		kw_rehash(mb);
	h = kw_hash(kw) & (mb->kwhash_size - 1);
	while (mb->kwhash[h] != 0) {
		if (strcmp(mb->kwsets[mb->kwhash[h]], kw) == 0)
			return mb->kwhash[h];
		h = (h + 1) & (mb->kwhash_size - 1);
	}
	if (mb->nkwsets >= MBOX_KWSETS_MAX)
		log_panic(NULL, "more than %u keyword sets in one folder",
			  MBOX_KWSETS_MAX);
	if (mb->nkwsets == mb->kwcap) {
		mb->kwcap *= 2;
		mb->kwsets = xrealloc(mb->kwsets,
				      mb->kwcap * sizeof(*mb->kwsets));
	}
	mb->kwsets[mb->nkwsets] = xstrdup(kw);
	mb->kwhash[h] = (uint32_t)mb->nkwsets;
	return (unsigned)mb->nkwsets++;
}

const char *mbox_keywords(const struct mbox *mb, size_t i)
{
	unsigned k = mb->msgs[i].kwset;

	return k == 0 || k >= mb->nkwsets ? "" : mb->kwsets[k];
}

static void mbox_free(struct mbox **mbp)
{
	struct mbox *mb = *mbp;

	if (mb == NULL)
		return;
	for (size_t i = 0; i < mb->nkwsets; i++)
		free(mb->kwsets[i]);
	free(mb->kwsets);
	free(mb->kwhash);
	free(mb->msgs);
	free(mb->name);
	free(mb);
	*mbp = NULL;
}

static struct mbox_msg *mbox_push(struct mbox *mb, uint32_t uid)
{
	struct mbox_msg *m;

	if (mb->count == mb->cap) {
		mb->cap = mb->cap * 2 + 64;
		mb->msgs = xrealloc(mb->msgs, mb->cap * sizeof(*mb->msgs));
	}
	m = &mb->msgs[mb->count++];
	memset(m, 0, sizeof(*m));
	m->uid = uid;
	return m;
}

long mbox_find_uid(const struct mbox *mb, uint32_t uid)
{
	size_t lo = 0, hi = mb->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (mb->msgs[mid].uid == uid)
			return (long)mid;
		if (mb->msgs[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

void mbox_remove(struct mbox *mb, size_t i)
{
	memmove(&mb->msgs[i], &mb->msgs[i + 1],
		(mb->count - i - 1) * sizeof(*mb->msgs));
	mb->count--;
	if (mb->exists_sent > 0)
		mb->exists_sent--;
}

void mbox_set_flags(struct mbox *mb, size_t i, unsigned flags,
		    const char *keywords, uint64_t modseq)
{
	struct mbox_msg *m = &mb->msgs[i];

	m->flags = flags & MBOX_FLAGS_ALL;
	m->kwset = kw_intern(mb, keywords);
	if (modseq > m->modseq)
		m->modseq = modseq;
	if (modseq > mb->highestmodseq)
		mb->highestmodseq = modseq;
}

int mbox_resolve(struct session *s, struct imap_seqset *set, bool uid,
		 size_t **idx_r, size_t *n_r, const char **error_r)
{
	struct mbox *mb = s->mb;
	const struct imap_seqset *use = set;
	size_t *idx = NULL, n = 0, cap = 0;
	uint32_t lo, hi;

	*idx_r = NULL;
	*n_r = 0;
	if (imap_seqset_is_saved(set)) {
		/* "$": the saved UIDs, whatever the command's kind. */
		if (s->saved == NULL)
			return 0;
		use = s->saved;
		uid = true;
	} else if (uid) {
		imap_seqset_resolve(set, mb->count > 0 ?
				    mb->msgs[mb->count - 1].uid : 0);
	} else {
		imap_seqset_resolve(set, (uint32_t)mb->count);
		for (size_t r = 0; r < imap_seqset_nranges(set); r++) {
			imap_seqset_range(set, r, &lo, &hi);
			if (lo == 0 || hi > mb->count) {
				*error_r = "Invalid message sequence number";
				return -1;
			}
		}
	}
	for (size_t r = 0; r < imap_seqset_nranges(use); r++) {
		imap_seqset_range(use, r, &lo, &hi);
		if (uid) {
			/* The first message with UID >= lo, then on. */
			size_t a = 0, b = mb->count;

			while (a < b) {
				size_t mid = a + (b - a) / 2;

				if (mb->msgs[mid].uid < lo)
					a = mid + 1;
				else
					b = mid;
			}
			for (; a < mb->count && mb->msgs[a].uid <= hi; a++) {
				if (n == cap) {
					cap = cap * 2 + 16;
					idx = xrealloc(idx, cap * sizeof(*idx));
				}
				idx[n++] = a;
			}
		} else {
			for (uint64_t q = lo; q <= hi; q++) {
				if (n == cap) {
					cap = cap * 2 + 16;
					idx = xrealloc(idx, cap * sizeof(*idx));
				}
				idx[n++] = (size_t)(q - 1);
			}
		}
	}
	*idx_r = idx;
	*n_r = n;
	return 0;
}

char **mbox_uidsets(const struct mbox *mb, const size_t *idx, size_t n,
		    size_t *n_r)
{
	struct str *cur = str_new(256, MBOX_UIDSET_BYTES + 32);
	char **sets = NULL;
	size_t nsets = 0, ranges = 0, k = 0;

	while (k < n) {
		size_t j = k;
		char piece[32];
		int len;

		while (j + 1 < n && idx[j + 1] == idx[j] + 1)
			j++;
		if (j == k)
			len = snprintf(piece, sizeof(piece), "%u",
				       mb->msgs[idx[k]].uid);
		else
			len = snprintf(piece, sizeof(piece), "%u:%u",
				       mb->msgs[idx[k]].uid,
				       mb->msgs[idx[j]].uid);
		if (ranges == MBOX_UIDSET_RANGES ||
		    str_len(cur) + (size_t)len + 1 > MBOX_UIDSET_BYTES) {
			sets = xrealloc(sets, (nsets + 1) * sizeof(*sets));
			sets[nsets++] = xstrdup(str_c(cur));
			str_clear(cur);
			ranges = 0;
		}
		if (str_len(cur) > 0)
			(void)!str_append_c(cur, ",");
		(void)!str_append(cur, piece, (size_t)len);
		ranges++;
		k = j + 1;
	}
	if (str_len(cur) > 0) {
		sets = xrealloc(sets, (nsets + 1) * sizeof(*sets));
		sets[nsets++] = xstrdup(str_c(cur));
	}
	str_free(&cur);
	*n_r = nsets;
	return sets;
}

void mbox_uidsets_free(char **sets, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(sets[i]);
	free(sets);
}

/* ---- flags ---- */

static const struct {
	const char *name;
	unsigned bit;
} system_flags[] = {
	{ "\\Seen", MBOX_SEEN },
	{ "\\Answered", MBOX_ANSWERED },
	{ "\\Flagged", MBOX_FLAGGED },
	{ "\\Deleted", MBOX_DELETED },
	{ "\\Draft", MBOX_DRAFT },
};

void mbox_flags_format(struct str *out, unsigned flags, const char *keywords)
{
	bool first = true;

	if (str_append_c(out, "(") < 0)
		return;
	for (size_t i = 0; i < TERN_NELEM(system_flags); i++) {
		if ((flags & system_flags[i].bit) == 0)
			continue;
		if (str_printf(out, "%s%s", first ? "" : " ",
			       system_flags[i].name) < 0)
			return;
		first = false;
	}
	if (keywords != NULL && keywords[0] != '\0' &&
	    str_printf(out, "%s%s", first ? "" : " ", keywords) < 0)
		return;
	(void)!str_append_c(out, ")");
}

static bool keyword_valid(const char *k)
{
	size_t n = strlen(k);

	if (n == 0 || n > KEYWORDS_MAX || k[0] == '\\')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)k[i];

		if (c <= 0x20 || c >= 0x7f || strchr("(){%*\"\\]", c) != NULL)
			return false;
	}
	return true;
}

int mbox_flags_parse(const char *const *list, size_t n, unsigned *flags_r,
		     const char ***keywords_r, size_t *nkeywords_r,
		     const char **error_r)
{
	const char **kw = n > 0 ? xcalloc(n, sizeof(*kw)) : NULL;
	size_t nkw = 0;
	unsigned flags = 0;

	for (size_t i = 0; i < n; i++) {
		const char *f = list[i];
		bool found = false;

		if (f[0] == '\\') {
			for (size_t j = 0; j < TERN_NELEM(system_flags); j++) {
				if (strcasecmp(f, system_flags[j].name) == 0) {
					flags |= system_flags[j].bit;
					found = true;
				}
			}
			if (!found && strcasecmp(f, "\\Recent") != 0) {
				free(kw);
				*error_r = "Unknown system flag";
				return -1;
			}
			continue;
		}
		if (!keyword_valid(f)) {
			free(kw);
			*error_r = "Invalid keyword";
			return -1;
		}
		kw[nkw++] = f;
	}
	if (nkw > KEYWORDS_MAX) {
		free(kw);
		*error_r = "Too many keywords";
		return -1;
	}
	*flags_r = flags;
	*keywords_r = kw;
	*nkeywords_r = nkw;
	return 0;
}

void mbox_send_flags(struct session *s, size_t i, bool with_uid)
{
	const struct mbox_msg *m = &s->mb->msgs[i];
	struct str *line = str_new(256, 64 * 1024);

	(void)!str_printf(line, "* %zu FETCH (", i + 1);
	if (with_uid || s->qresync)
		(void)!str_printf(line, "UID %u ", m->uid);
	(void)!str_append_c(line, "FLAGS ");
	mbox_flags_format(line, m->flags, mbox_keywords(s->mb, i));
	if (s->condstore)
		(void)!str_printf(line, " MODSEQ (%llu)",
				 (unsigned long long)m->modseq);
	(void)!str_append_c(line, ")\r\n");
	out_append(s, str_c(line), str_len(line));
	str_free(&line);
}

/* The FLAGS and PERMANENTFLAGS of SELECT: system flags and the keywords in
 * use. */
static void send_flag_lists(struct session *s)
{
	struct mbox *mb = s->mb;
	struct str *kw = str_new(256, 1 << 20);
	char **seen = NULL;
	size_t nseen = 0, cap = 0;

	for (size_t i = 1; i < mb->nkwsets; i++) {
		const char *p = mb->kwsets[i];

		while (p != NULL && *p != '\0') {
			size_t len = strcspn(p, " ");
			bool dup = false;

			for (size_t j = 0; j < nseen && !dup; j++)
				dup = strlen(seen[j]) == len &&
				      strncasecmp(seen[j], p, len) == 0;
			if (!dup && nseen < 1000) {
				if (nseen == cap) {
					cap = cap * 2 + 16;
					seen = xrealloc(seen,
							cap * sizeof(*seen));
				}
				seen[nseen++] = xstrndup(p, len);
				(void)!str_printf(kw, " %.*s", (int)len, p);
			}
			p += len;
			while (*p == ' ')
				p++;
		}
	}
	out_printf(s, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen "
		   "\\Draft%s)\r\n", str_c(kw));
	if (mb->readonly)
		out_printf(s, "* OK [PERMANENTFLAGS ()] Read-only folder\r\n");
	else
		out_printf(s, "* OK [PERMANENTFLAGS (\\Answered \\Flagged "
			   "\\Deleted \\Seen \\Draft%s \\*)] Flags permitted"
			   "\r\n", str_c(kw));
	for (size_t j = 0; j < nseen; j++)
		free(seen[j]);
	free(seen);
	str_free(&kw);
}

/* ---- the hub ---- */

static bool same_folder(const struct mbox *mb, int64_t account,
			const char *folder)
{
	return mb->account == account && strcmp(mb->name, folder) == 0;
}

static void hub_watch(struct imapd *d, const char *type, int64_t account,
		      const char *folder);

static void watch_done(enum storeasync_status st,
		       struct ipc_msg *const *frames, size_t nframes,
		       const struct ipc_msg *final, const char *code,
		       const char *error, void *ctx)
{
	char *what = ctx;

	if (st != STOREASYNC_OK)
		log_warn(NULL, "stored: %s: %s", what,
			 error != NULL ? error : code);
	free(what);
}

static void hub_watch(struct imapd *d, const char *type, int64_t account,
		      const char *folder)
{
	struct ipc_msg *req = ipc_msg_new(type);
	struct str *what = str_new(64, 4096);

	ipc_msg_add_int(req, "account", account);
	ipc_msg_add_cstr(req, "folder", folder);
	(void)!str_printf(what, "%s %lld %s", type, (long long)account,
			 folder);
	if (d->store != NULL)
		storeasync_request(d->store, &req, STOREASYNC_IDEMPOTENT,
				   watch_done, xstrdup(str_c(what)));
	ipc_msg_free(&req);
	str_free(&what);
}

/* Whether another view of the process, selected or kept, has this folder
 * (and so needs its notifications). */
static bool hub_other(struct imapd *d, const struct mbox *self,
		      int64_t account, const char *folder)
{
	for (struct mbox *mb = d->mboxes; mb != NULL; mb = mb->next) {
		if (mb != self && same_folder(mb, account, folder))
			return true;
	}
	for (struct mbox *mb = d->views; mb != NULL; mb = mb->next) {
		if (mb != self && same_folder(mb, account, folder))
			return true;
	}
	return false;
}

static void hub_add(struct imapd *d, struct mbox *mb)
{
	bool watched = hub_other(d, mb, mb->account, mb->name);

	mb->next = d->mboxes;
	if (mb->next != NULL)
		mb->next->prev = mb;
	d->mboxes = mb;
	if (!watched)
		hub_watch(d, "watch", mb->account, mb->name);
}

static void list_unlink(struct mbox **head, struct mbox *mb)
{
	if (mb->prev != NULL)
		mb->prev->next = mb->next;
	else if (*head == mb)
		*head = mb->next;
	if (mb->next != NULL)
		mb->next->prev = mb->prev;
	mb->prev = mb->next = NULL;
}

static void hub_remove(struct imapd *d, struct mbox *mb)
{
	list_unlink(&d->mboxes, mb);
	if (!hub_other(d, mb, mb->account, mb->name))
		hub_watch(d, "unwatch", mb->account, mb->name);
}

/* ---- kept views ----
 *
 * When a session closes a folder its view, if complete, is kept (newest
 * first, within imap_view_cache bytes) with the folder still watched.  Any
 * notification for the folder drops it; a SELECT takes it instead of
 * loading the folder when the store's UIDVALIDITY, UIDNEXT and
 * HIGHESTMODSEQ are still the view's, which with no notification between
 * means the folder did not change.
 */

#define VIEWS_COUNT_MAX 1000
#define VIEW_KEEP_NS (15ull * 60 * 1000000000)

static void view_drop(struct imapd *d, struct mbox *mb, bool unwatch)
{
	list_unlink(&d->views, mb);
	d->views_bytes -= mb->kept_bytes;
	if (unwatch && !hub_other(d, mb, mb->account, mb->name))
		hub_watch(d, "unwatch", mb->account, mb->name);
	mbox_free(&mb);
}

static void views_forget(struct imapd *d, int64_t account, const char *folder)
{
	struct mbox *next;

	for (struct mbox *mb = d->views; mb != NULL; mb = next) {
		next = mb->next;
		if (same_folder(mb, account, folder))
			view_drop(d, mb, true);
	}
}

void mbox_views_trim(struct imapd *d)
{
	uint64_t now = uv_hrtime();
	struct mbox *mb, *last = NULL;
	size_t n = 0;

	for (mb = d->views; mb != NULL; mb = mb->next) {
		last = mb;
		n++;
	}
	/* Oldest first, from the tail. */
	while ((mb = last) != NULL) {
		last = mb->prev;
		if (d->views_bytes <= d->views_max && n <= VIEWS_COUNT_MAX &&
		    now - mb->kept_at < VIEW_KEEP_NS)
			break;
		view_drop(d, mb, true);
		n--;
	}
}

void mbox_views_free(struct imapd *d)
{
	while (d->views != NULL)
		view_drop(d, d->views, false);
}

static size_t view_bytes(const struct mbox *mb)
{
	size_t n = sizeof(*mb) + strlen(mb->name) + 1 +
		   mb->cap * sizeof(*mb->msgs) +
		   mb->kwcap * sizeof(*mb->kwsets) +
		   mb->kwhash_size * sizeof(*mb->kwhash);

	for (size_t i = 0; i < mb->nkwsets; i++)
		n += strlen(mb->kwsets[i]) + 1;
	return n;
}

/* Takes a closed view off the hub, keeping its watch: kept, or freed. */
static void view_keep(struct imapd *d, struct mbox *mb)
{
	size_t j = 0;

	list_unlink(&d->mboxes, mb);
	views_forget(d, mb->account, mb->name);	/* an older one */
	/* What the store has now: without the expunged, nothing to tell. */
	for (size_t i = 0; i < mb->count; i++) {
		if (mb->msgs[i].expunged)
			continue;
		mb->msgs[i].dirty = false;
		mb->msgs[j++] = mb->msgs[i];
	}
	mb->count = j;
	if (mb->count < mb->cap) {
		mb->cap = mb->count;
		mb->msgs = mb->cap == 0 ? (free(mb->msgs), NULL) :
			   xrealloc(mb->msgs, mb->cap * sizeof(*mb->msgs));
	}
	mb->s = NULL;
	mb->kept_bytes = view_bytes(mb);
	mb->kept_at = uv_hrtime();
	mb->next = d->views;
	if (mb->next != NULL)
		mb->next->prev = mb;
	d->views = mb;
	d->views_bytes += mb->kept_bytes;
	mbox_views_trim(d);
}

/* The kept view of a folder if the store's state is still the view's;
 * taken off the list (its watch stays for the SELECT). */
static struct mbox *view_take(struct imapd *d, int64_t account,
			      const char *folder, uint32_t uidvalidity,
			      uint32_t uidnext, uint64_t highestmodseq)
{
	struct mbox *mb;

	for (mb = d->views; mb != NULL; mb = mb->next) {
		if (same_folder(mb, account, folder))
			break;
	}
	if (mb == NULL)
		return NULL;
	if (mb->uidvalidity != uidvalidity || mb->uidnext != uidnext ||
	    mb->highestmodseq != highestmodseq) {
		view_drop(d, mb, true);
		return NULL;
	}
	list_unlink(&d->views, mb);
	d->views_bytes -= mb->kept_bytes;
	mb->kept_bytes = 0;
	return mb;
}

/* A change reached a view: IDLE reports it at once. */
static void view_touched(struct mbox *mb)
{
	if (mb->s->idling)
		mbox_sync(mb->s, true, NULL);
}

static void note_new(struct mbox *mb, uint32_t uid)
{
	if (mb->count > 0 && uid <= mb->msgs[mb->count - 1].uid)
		return;
	mb->new_pending = true;
	view_touched(mb);
}

static void note_flags(struct mbox *mb, uint32_t uid, unsigned flags,
		       const char *keywords, uint64_t modseq)
{
	long i = mbox_find_uid(mb, uid);

	if (i < 0 || mb->msgs[i].expunged || modseq <= mb->msgs[i].modseq)
		return;
	mbox_set_flags(mb, (size_t)i, flags, keywords, modseq);
	mb->msgs[i].dirty = true;
	view_touched(mb);
}

static void note_expunge(struct mbox *mb, uint32_t uid, uint64_t modseq)
{
	long i = mbox_find_uid(mb, uid);

	if (modseq > mb->highestmodseq)
		mb->highestmodseq = modseq;
	if (i < 0 || mb->msgs[i].expunged)
		return;
	mb->msgs[i].expunged = true;
	view_touched(mb);
}

/* Whether folder is name or one of its children. */
static bool at_or_under(const char *folder, const char *name)
{
	size_t n = strlen(name);

	return strncmp(folder, name, n) == 0 &&
	       (folder[n] == '\0' || folder[n] == '/');
}

/* The name a view of folder has after from was renamed to. */
static char *renamed(const char *folder, const char *from, const char *to)
{
	size_t to_len = strlen(to), rest = strlen(folder + strlen(from));
	char *name = xmalloc(to_len + rest + 1);

	memcpy(name, to, to_len);
	memcpy(name + to_len, folder + strlen(from), rest + 1);
	return name;
}

void mbox_folder_renamed(struct imapd *d, int64_t account, const char *from,
			 const char *to)
{
	struct mbox *mb, *next;
	char *name;

	/* Selected views follow (the store moved the watches with them). */
	for (mb = d->mboxes; mb != NULL; mb = mb->next) {
		if (mb->account != account || !at_or_under(mb->name, from))
			continue;
		name = renamed(mb->name, from, to);
		free(mb->name);
		mb->name = name;
	}
	/* Kept views go, and the watches the store moved for them. */
	for (mb = d->views; mb != NULL; mb = next) {
		next = mb->next;
		if (mb->account != account || !at_or_under(mb->name, from))
			continue;
		name = renamed(mb->name, from, to);
		view_drop(d, mb, false);
		if (!hub_other(d, NULL, account, name))
			hub_watch(d, "unwatch", account, name);
		free(name);
	}
}

void mbox_folder_deleted(struct imapd *d, int64_t account,
			 const char *folder)
{
	struct mbox *next;

	views_forget(d, account, folder);
	for (struct mbox *mb = d->mboxes; mb != NULL; mb = next) {
		next = mb->next;
		if (same_folder(mb, account, folder))
			session_bye(mb->s, "Selected folder was deleted");
	}
}

void mbox_broadcast_resync(struct session *s, int64_t account,
			   const char *folder)
{
	struct mbox *next;

	views_forget(s->d, account, folder);
	for (struct mbox *mb = s->d->mboxes; mb != NULL; mb = next) {
		next = mb->next;
		if (mb->s != s && same_folder(mb, account, folder)) {
			mb->resync = true;
			view_touched(mb);
		}
	}
}

static void hub_notify(const struct ipc_msg *frame, void *ctx)
{
	struct imapd *d = ctx;
	struct mbox *mb, *next;
	const char *type, *folder, *keywords = "";
	int64_t account, uid, modseq, flags = 0;

	if (frame == NULL) {
		/* Watches are gone: kept views cannot be trusted; selected
		 * ones watch again and resynchronise. */
		mbox_views_free(d);
		for (mb = d->mboxes; mb != NULL; mb = next) {
			next = mb->next;
			mb->resync = true;
			/* The store keeps one watch per folder and
			 * connection: repeating it is harmless. */
			hub_watch(d, "watch", mb->account, mb->name);
			view_touched(mb);
		}
		return;
	}
	type = ipc_msg_type(frame);
	if (strcmp(type, "error") == 0) {
		log_warn(NULL, "stored: notifications overflowed");
		return;
	}
	if (strcmp(type, "notify.rename") == 0 ||
	    strcmp(type, "notify.delete") == 0) {
		bool rename = strcmp(type, "notify.rename") == 0;
		const char *to = NULL;

		if (ipc_msg_get_int(frame, "account", &account) < 0 ||
		    ipc_msg_get_cstr(frame, "folder", &folder) < 0 ||
		    (rename &&
		     ipc_msg_get_cstr(frame, "new_name", &to) < 0)) {
			log_warn(NULL, "stored: malformed %s notification",
				 type);
			return;
		}
		if (rename)
			mbox_folder_renamed(d, account, folder, to);
		else
			mbox_folder_deleted(d, account, folder);
		return;
	}
	if (ipc_msg_get_int(frame, "account", &account) < 0 ||
	    ipc_msg_get_cstr(frame, "folder", &folder) < 0 ||
	    ipc_msg_get_int(frame, "uid", &uid) < 0 ||
	    ipc_msg_get_int(frame, "modseq", &modseq) < 0 || uid <= 0 ||
	    uid > UINT32_MAX || modseq < 0) {
		log_warn(NULL, "stored: malformed %s notification", type);
		return;
	}
	if (strcmp(type, "notify.flags") == 0 &&
	    (ipc_msg_get_int(frame, "flags", &flags) < 0 ||
	     ipc_msg_get_cstr(frame, "keywords", &keywords) < 0)) {
		log_warn(NULL, "stored: malformed %s notification", type);
		return;
	}
	views_forget(d, account, folder);
	for (mb = d->mboxes; mb != NULL; mb = next) {
		next = mb->next;
		if (!same_folder(mb, account, folder))
			continue;
		if (strcmp(type, "notify.new") == 0)
			note_new(mb, (uint32_t)uid);
		else if (strcmp(type, "notify.flags") == 0)
			note_flags(mb, (uint32_t)uid, (unsigned)flags,
				   keywords, (uint64_t)modseq);
		else if (strcmp(type, "notify.expunge") == 0)
			note_expunge(mb, (uint32_t)uid, (uint64_t)modseq);
	}
}

void mbox_hub_init(struct imapd *d)
{
	d->mboxes = NULL;
	storeasync_set_notify(d->store, hub_notify, d);
}

void mbox_broadcast_flags(struct session *s, int64_t account,
			  const char *folder, uint32_t uid, unsigned flags,
			  const char *keywords, uint64_t modseq)
{
	struct mbox *next;

	views_forget(s->d, account, folder);
	for (struct mbox *mb = s->d->mboxes; mb != NULL; mb = next) {
		next = mb->next;
		if (mb->s != s && same_folder(mb, account, folder))
			note_flags(mb, uid, flags, keywords, modseq);
	}
}

void mbox_broadcast_expunge(struct session *s, int64_t account,
			    const char *folder, uint32_t uid)
{
	struct mbox *next;

	views_forget(s->d, account, folder);
	for (struct mbox *mb = s->d->mboxes; mb != NULL; mb = next) {
		next = mb->next;
		if (mb->s != s && same_folder(mb, account, folder))
			note_expunge(mb, uid, 0);
	}
}

void mbox_broadcast_new(struct session *s, int64_t account,
			const char *folder)
{
	struct mbox *next;

	views_forget(s->d, account, folder);
	for (struct mbox *mb = s->d->mboxes; mb != NULL; mb = next) {
		next = mb->next;
		if (mb->s != s && same_folder(mb, account, folder))
			note_new(mb, UINT32_MAX);
	}
}

/* ---- loading ---- */

/*
 * A load: fetch batches from first on, merged into the view.  full: the
 * whole folder (SELECT, resync): messages of the view the store no longer
 * has are marked expunged, changed flags dirty.
 */
struct load {
	uint64_t gen;		/* of the view it loads */
	uint32_t first;
	bool full;
	size_t pos;		/* full: next view index to compare */
	void (*done)(struct session *s, bool ok, const char *code,
		     const char *error, void *ctx);
	void *ctx;
};

static void load_next(struct session *s, struct load *ld);

static void load_message(struct mbox *mb, struct load *ld, int64_t uid,
			 int64_t flags, int64_t modseq, const char *kw)
{
	struct mbox_msg *m;

	if (uid <= 0 || uid > UINT32_MAX || modseq < 0)
		return;
	if (ld->full) {
		/* Messages of the view below uid are gone from the store. */
		while (ld->pos < mb->count &&
		       mb->msgs[ld->pos].uid < (uint32_t)uid) {
			mb->msgs[ld->pos].expunged = true;
			ld->pos++;
		}
		if (ld->pos < mb->count &&
		    mb->msgs[ld->pos].uid == (uint32_t)uid) {
			m = &mb->msgs[ld->pos++];
			if ((uint64_t)modseq != m->modseq) {
				mbox_set_flags(mb, ld->pos - 1,
					       (unsigned)flags, kw,
					       (uint64_t)modseq);
				m->dirty = true;
			}
			return;
		}
	}
	if (mb->count > 0 && (uint32_t)uid <= mb->msgs[mb->count - 1].uid)
		return;
	m = mbox_push(mb, (uint32_t)uid);
	m->flags = (unsigned)flags & MBOX_FLAGS_ALL;
	m->modseq = (uint64_t)modseq;
	m->kwset = kw_intern(mb, kw);
	if ((uint64_t)modseq > mb->highestmodseq)
		mb->highestmodseq = (uint64_t)modseq;
	if ((uint32_t)uid >= mb->uidnext)
		mb->uidnext = (uint32_t)uid + 1;
	if (ld->full)
		ld->pos = mb->count;
}

/* A "flags" frame: groups of (uid, modseq, flags, keywords) fields. */
static void load_frame(struct mbox *mb, struct load *ld,
		       const struct ipc_msg *f, struct str *kw)
{
	unsigned n = ipc_msg_nfields(f);
	int64_t uid, modseq, flags;
	const char *p;
	size_t len;

	if (!ipc_msg_type_is(f, "flags"))
		return;
	for (unsigned i = 0; i + 4 <= n; i += 4) {
		if (ipc_msg_int_at(f, i, "uid", &uid) < 0 ||
		    ipc_msg_int_at(f, i + 1, "modseq", &modseq) < 0 ||
		    ipc_msg_int_at(f, i + 2, "flags", &flags) < 0 ||
		    ipc_msg_str_at(f, i + 3, "keywords", &p, &len) < 0 ||
		    memchr(p, '\0', len) != NULL ||
		    str_set(kw, p, len) < 0) {
			log_warn(NULL, "stored: malformed flags answer");
			return;
		}
		load_message(mb, ld, uid, flags, modseq, str_c(kw));
	}
}

static void load_answer(struct session *s, enum storeasync_status st,
			struct ipc_msg *const *frames, size_t nframes,
			const struct ipc_msg *final, const char *code,
			const char *error, void *ctx)
{
	struct load *ld = ctx;
	struct mbox *mb = s->mb;
	struct str *kw;
	int64_t next = 0;

	if (mb == NULL || mb->gen != ld->gen) {
		/* The folder was closed (and maybe another selected). */
		ld->done(s, false, "closed", "folder closed", ld->ctx);
		free(ld);
		return;
	}
	if (st != STOREASYNC_OK) {
		mb->loading = false;
		ld->done(s, false, code, error, ld->ctx);
		free(ld);
		return;
	}
	kw = str_new(64, IPC_FRAME_MAX_HARD);
	for (size_t i = 0; i < nframes; i++)
		load_frame(mb, ld, frames[i], kw);
	str_free(&kw);
	if (ipc_msg_get_int(final, "next", &next) == 0 && next > 0 &&
	    next <= UINT32_MAX) {
		ld->first = (uint32_t)next;
		load_next(s, ld);
		return;
	}
	if (ld->full) {
		for (; ld->pos < mb->count; ld->pos++)
			mb->msgs[ld->pos].expunged = true;
	}
	mb->loading = false;
	ld->done(s, true, "", NULL, ld->ctx);
	free(ld);
}

static void load_next(struct session *s, struct load *ld)
{
	struct ipc_msg *req = store_req(s, "fetch", s->mb->name);

	ipc_msg_add_int(req, "first", ld->first);
	ipc_msg_add_int(req, "limit", LOAD_BATCH);
	ipc_msg_add_int(req, "flags_only", 1);
	store_call(s, req, true, load_answer, ld, free);
}

static void load_start(struct session *s, bool full,
		       void (*done)(struct session *s, bool ok,
				    const char *code, const char *error,
				    void *ctx),
		       void *ctx)
{
	struct load *ld = xcalloc(1, sizeof(*ld));
	struct mbox *mb = s->mb;

	ld->full = full;
	ld->gen = mb->gen;
	ld->first = full || mb->count == 0 ? 1 :
					     mb->msgs[mb->count - 1].uid + 1;
	ld->done = done;
	ld->ctx = ctx;
	mb->loading = true;
	mb->new_pending = false;
	if (full)
		mb->resync = false;
	load_next(s, ld);
}

/* ---- reporting changes ---- */

static void report(struct session *s, bool expunge_ok)
{
	struct mbox *mb = s->mb;
	struct imap_seqset *vanished = NULL;

	if (expunge_ok) {
		for (size_t i = mb->count; i-- > 0;) {
			if (!mb->msgs[i].expunged)
				continue;
			if (s->qresync) {
				if (vanished == NULL)
					vanished = imap_seqset_new();
				imap_seqset_add(vanished, mb->msgs[i].uid,
						mb->msgs[i].uid);
			} else {
				out_printf(s, "* %zu EXPUNGE\r\n", i + 1);
			}
			mbox_remove(mb, i);
		}
		if (vanished != NULL) {
			struct str *set = str_new(256, 1 << 20);

			imap_seqset_resolve(vanished, 0);
			if (imap_seqset_format(vanished, set) == 0)
				out_printf(s, "* VANISHED %s\r\n", str_c(set));
			str_free(&set);
			imap_seqset_free(&vanished);
		}
	}
	if (mb->count != mb->exists_sent) {
		if (mb->count > mb->exists_sent || expunge_ok)
			out_printf(s, "* %zu EXISTS\r\n", mb->count);
		mb->exists_sent = (uint32_t)mb->count;
	}
	for (size_t i = 0; i < mb->count; i++) {
		if (!mb->msgs[i].dirty)
			continue;
		mb->msgs[i].dirty = false;
		if (!mb->msgs[i].expunged)
			mbox_send_flags(s, i, false);
	}
}

struct sync_wait {
	void (*done)(struct session *s);
	bool expunge_ok;
};

static void sync_loaded(struct session *s, bool ok, const char *code,
			const char *error, void *ctx)
{
	struct sync_wait *w = ctx;

	if (s->mb != NULL) {
		if (!ok && strcmp(code, "closed") != 0)
			log_warn(s->id, "reloading %s: %s", s->mb->name,
				 error != NULL ? error : code);
		else if (w->done != NULL || s->idling)
			/* Not between commands: the next one reports. */
			report(s, w->expunge_ok);
		if (s->idling)
			out_flush(s);
	}
	if (w->done != NULL)
		w->done(s);
	else if (s->mb != NULL && s->idling && s->mb->new_pending)
		mbox_sync(s, true, NULL);
	free(w);
}

void mbox_sync(struct session *s, bool expunge_ok,
	       void (*done)(struct session *s))
{
	struct mbox *mb = s->mb;

	if (mb == NULL || mb->loading) {
		if (done != NULL)
			done(s);
		return;
	}
	if (mb->new_pending || mb->resync) {
		struct sync_wait *w = xcalloc(1, sizeof(*w));

		w->done = done;
		w->expunge_ok = expunge_ok;
		load_start(s, mb->resync, sync_loaded, w);
		return;
	}
	report(s, expunge_ok);
	if (s->idling)
		out_flush(s);
	if (done != NULL)
		done(s);
}

/* ---- SELECT, EXAMINE ---- */

struct select_op {
	const struct imap_select *sel;
	bool examine;
};

static void select_fail(struct session *s, struct select_op *op,
			const char *code, const char *error)
{
	mbox_free(&s->mb);
	s->state = ST_AUTH;
	free(op);
	if (strcmp(code, "nofolder") == 0 || strcmp(code, "invalid") == 0)
		cmd_done(s, false, "NO", "[NONEXISTENT] No such folder");
	else
		cmd_tempfail(s, "select", error != NULL ? error : code);
}

static void select_report(struct session *s, struct select_op *op)
{
	struct mbox *mb = s->mb;
	uint32_t unseen = 0;

	send_flag_lists(s);
	out_printf(s, "* %zu EXISTS\r\n", mb->count);
	mb->exists_sent = (uint32_t)mb->count;
	if (!s->rev2)
		out_printf(s, "* 0 RECENT\r\n");
	for (size_t i = 0; i < mb->count && !s->rev2; i++) {
		if ((mb->msgs[i].flags & MBOX_SEEN) == 0) {
			unseen = (uint32_t)i + 1;
			break;
		}
	}
	if (unseen > 0)
		out_printf(s, "* OK [UNSEEN %u] First unseen\r\n", unseen);
	out_printf(s, "* OK [UIDVALIDITY %u] UIDs valid\r\n", mb->uidvalidity);
	out_printf(s, "* OK [UIDNEXT %u] Predicted next UID\r\n", mb->uidnext);
	out_printf(s, "* OK [HIGHESTMODSEQ %llu] Highest\r\n",
		   (unsigned long long)mb->highestmodseq);
	if (s->rev2) {
		out_printf(s, "* LIST () \"/\" ");
		out_mailbox(s, mb->name);
		out_printf(s, "\r\n");
	}
}

/* QRESYNC: the messages changed since the client's MODSEQ (new ones
 * included), each with its UID. */
static void select_qresync_changes(struct session *s, struct select_op *op)
{
	struct mbox *mb = s->mb;

	for (size_t i = 0; i < mb->count; i++) {
		if (mb->msgs[i].modseq > op->sel->modseq)
			mbox_send_flags(s, i, true);
	}
}

static void select_finish(struct session *s, struct select_op *op)
{
	bool examine = op->examine;

	if (op->sel->qresync && op->sel->uidvalidity == s->mb->uidvalidity)
		select_qresync_changes(s, op);
	free(op);
	cmd_done(s, false, "OK", examine ? "[READ-ONLY] EXAMINE completed" :
		 "[READ-WRITE] SELECT completed");
}

void mbox_send_vanished(struct session *s, struct ipc_msg *const *frames,
			size_t nframes, const struct imap_seqset *filter)
{
	struct imap_seqset *set = imap_seqset_new();
	struct str *text = str_new(256, 4 << 20);
	bool any = false;
	int64_t uid;

	for (size_t f = 0; f < nframes; f++) {
		for (unsigned n = 0; ipc_msg_get_int_nth(frames[f], "uid", n,
							 &uid) == 0; n++) {
			if (uid <= 0 || uid > UINT32_MAX ||
			    (filter != NULL &&
			     !imap_seqset_contains(filter, (uint32_t)uid)))
				continue;
			imap_seqset_add(set, (uint32_t)uid, (uint32_t)uid);
			any = true;
		}
	}
	if (any) {
		imap_seqset_resolve(set, 0);
		if (imap_seqset_format(set, text) == 0)
			out_printf(s, "* VANISHED (EARLIER) %s\r\n",
				   str_c(text));
	}
	imap_seqset_free(&set);
	str_free(&text);
}

long mbox_apply_flags_frame(struct session *s, const struct ipc_msg *frame)
{
	int64_t uid, flags, modseq;
	const char *kw = "";
	long k;

	if (s->mb == NULL || ipc_msg_get_int(frame, "uid", &uid) < 0 ||
	    ipc_msg_get_int(frame, "flags", &flags) < 0 ||
	    ipc_msg_get_int(frame, "modseq", &modseq) < 0 || uid <= 0 ||
	    uid > UINT32_MAX || modseq < 0)
		return -1;
	(void)!ipc_msg_get_cstr(frame, "keywords", &kw);
	k = mbox_find_uid(s->mb, (uint32_t)uid);
	if (k < 0)
		return -1;
	mbox_set_flags(s->mb, (size_t)k, (unsigned)flags, kw,
		       (uint64_t)modseq);
	mbox_broadcast_flags(s, s->account, s->mb->name, (uint32_t)uid,
			     (unsigned)flags, kw, (uint64_t)modseq);
	return k;
}

static void select_vanished(struct session *s, enum storeasync_status st,
			    struct ipc_msg *const *frames, size_t nframes,
			    const struct ipc_msg *final, const char *code,
			    const char *error, void *ctx)
{
	struct select_op *op = ctx;

	if (st != STOREASYNC_OK) {
		select_fail(s, op, code, error);
		return;
	}
	mbox_send_vanished(s, frames, nframes, op->sel->known_uids);
	select_finish(s, op);
}

static void select_loaded(struct session *s, bool ok, const char *code,
			  const char *error, void *ctx)
{
	struct select_op *op = ctx;
	const struct imap_select *sel = op->sel;
	struct ipc_msg *req;

	if (!ok) {
		select_fail(s, op, code, error);
		return;
	}
	for (size_t i = 0; i < s->mb->count; i++)
		s->mb->msgs[i].expunged = s->mb->msgs[i].dirty = false;
	hub_add(s->d, s->mb);
	select_report(s, op);
	if (sel->qresync && sel->uidvalidity == s->mb->uidvalidity &&
	    sel->modseq > 0) {
		req = store_req(s, "vanished", s->mb->name);
		ipc_msg_add_int(req, "since", (int64_t)sel->modseq);
		store_call(s, req, true, select_vanished, op, free);
		return;
	}
	select_finish(s, op);
}

static void select_status(struct session *s, enum storeasync_status st,
			  struct ipc_msg *const *frames, size_t nframes,
			  const struct ipc_msg *final, const char *code,
			  const char *error, void *ctx)
{
	struct select_op *op = ctx;
	int64_t v, n;
	struct mbox *mb = s->mb, *kept;

	if (st != STOREASYNC_OK) {
		select_fail(s, op, code, error);
		return;
	}
	if (ipc_msg_get_int(final, "uidvalidity", &v) < 0 ||
	    ipc_msg_get_int(final, "uidnext", &n) < 0) {
		select_fail(s, op, "internal", "malformed status answer");
		return;
	}
	mb->uidvalidity = (uint32_t)v;
	mb->uidnext = (uint32_t)n;
	if (ipc_msg_get_int(final, "highestmodseq", &v) == 0 && v > 0)
		mb->highestmodseq = (uint64_t)v;
	kept = view_take(s->d, s->account, mb->name, mb->uidvalidity,
			 mb->uidnext, mb->highestmodseq);
	if (kept != NULL) {
		kept->s = s;
		kept->gen = mb->gen;
		kept->readonly = mb->readonly;
		kept->exists_sent = 0;
		mbox_free(&s->mb);
		s->mb = kept;
		select_loaded(s, true, "", NULL, op);
		return;
	}
	load_start(s, false, select_loaded, op);
}

void mbox_close(struct session *s)
{
	struct mbox *mb = s->mb;

	if (mb == NULL)
		return;
	if (mb->prev != NULL || s->d->mboxes == mb) {
		if (s->d->views_max > 0 && !mb->loading && !mb->new_pending &&
		    !mb->resync) {
			view_keep(s->d, mb);
			s->mb = NULL;
		} else {
			hub_remove(s->d, mb);
		}
	}
	mbox_free(&s->mb);
	imap_seqset_free(&s->saved);
	if (s->state == ST_SELECTED)
		s->state = ST_AUTH;
}

void cmd_select(struct session *s, struct imap_cmd *cmd)
{
	const struct imap_select *sel;
	struct select_op *op;
	const char *error;
	struct ipc_msg *req;

	if (imap_cmd_select(cmd, s->utf8, &sel, &error) < 0) {
		cmd_error(s, "BAD", error);
		return;
	}
	if (sel->qresync && !s->qresync) {
		cmd_error(s, "BAD", "QRESYNC is not enabled");
		return;
	}
	if (sel->condstore || sel->qresync)
		s->condstore = true;
	if (s->mb != NULL) {
		mbox_close(s);
		if (s->qresync || s->rev2)
			out_printf(s, "* OK [CLOSED] Previous folder closed"
				   "\r\n");
	}
	op = xcalloc(1, sizeof(*op));
	op->sel = sel;
	op->examine = strcmp(cmd->name, "EXAMINE") == 0;
	s->mb = xcalloc(1, sizeof(*s->mb));
	s->mb->gen = ++mbox_generation;
	s->mb->s = s;
	s->mb->account = s->account;
	s->mb->name = xstrdup(sel->mailbox);
	s->mb->readonly = op->examine;
	s->state = ST_SELECTED;
	req = store_req(s, "status", sel->mailbox);
	ipc_msg_add_int(req, "brief", 1);
	store_call(s, req, true, select_status, op, free);
}
