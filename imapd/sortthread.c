/* sortthread.c: SORT and THREAD (RFC 5256, RFC 5957); see sortthread.h. */
#include "config.h"

#include "compat.h"

#include <inttypes.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

#include "mime.h"
#include "mime_sort.h"
#include "sortthread.h"
#include "xalloc.h"

#define NONE SORTTHREAD_NONE

/* ---- keys from a parsed message ---- */

/* A str big enough for whatever a header value of len bytes decodes to. */
static struct str *key_str(size_t len)
{
	size_t max = len > (STR_MAX_LIMIT - 64) / 3 ? STR_MAX_LIMIT
						     : len * 3 + 64;

	return str_new(64, max);
}

static char *key_take(struct str **s)
{
	char *r = xstrndup(str_c(*s), str_len(*s));

	str_free(s);
	return r;
}

static char *key_subject(const struct mime_part *root, bool *is_reply_r)
{
	const struct mime_header *h = mime_part_header_find(root, "subject");
	struct str *s;
	int reply = 0;

	*is_reply_r = false;
	if (h == NULL)
		return xstrdup("");
	s = key_str(h->value_len);
	if (mime_subject_base(h->value, h->value_len, s, &reply) < 0)
		str_clear(s);
	*is_reply_r = reply != 0;
	return key_take(&s);
}

static char *key_address(const struct mime_part *root, const char *name,
			 int display)
{
	const struct mime_header *h = mime_part_header_find(root, name);
	struct str *s = key_str(h != NULL ? h->value_len : 0);

	if (mime_sort_address(root, name, display, s) < 0)
		str_clear(s);
	return key_take(&s);
}

/* The first message-id of field name, NULL when none. */
static char *key_first_id(const struct mime_part *root, const char *name)
{
	const struct mime_header *h = mime_part_header_find(root, name);
	const char *pos, *id;
	size_t len;

	if (h == NULL)
		return NULL;
	pos = h->value;
	if (mime_msgid_next(&pos, h->value + h->value_len, &id, &len) != 1)
		return NULL;
	return xstrndup(id, len);
}

/* The last SORTTHREAD_REFS_MAX ids of References. */
static void key_references(struct sortthread_msg *m,
			   const struct mime_part *root)
{
	const struct mime_header *h = mime_part_header_find(root, "references");
	const char *pos, *end, *id;
	size_t len, total = 0, skip, i = 0;

	if (h == NULL)
		return;
	end = h->value + h->value_len;
	for (pos = h->value; mime_msgid_next(&pos, end, &id, &len) == 1;)
		total++;
	if (total == 0)
		return;
	skip = total > SORTTHREAD_REFS_MAX ? total - SORTTHREAD_REFS_MAX : 0;
	m->references = xcalloc(total - skip, sizeof(*m->references));
	for (pos = h->value; mime_msgid_next(&pos, end, &id, &len) == 1;) {
		if (i++ >= skip)
			m->references[m->nreferences++] = xstrndup(id, len);
	}
}

void sortthread_msg_fill(struct sortthread_msg *m,
			 const struct mime_part *root, uint32_t seq,
			 uint32_t uid, time_t internal_date, uint64_t size)
{
	const struct mime_header *h = mime_part_header_find(root, "date");
	time_t t;
	int tz;

	memset(m, 0, sizeof(*m));
	m->seq = seq;
	m->uid = uid;
	m->internal_date = internal_date;
	m->size = size;
	if (h != NULL && mime_date_parse(h->value, h->value_len, &t, &tz) == 0)
		m->sent_date = t;
	m->subject = key_subject(root, &m->is_reply);
	m->from = key_address(root, "from", 0);
	m->to = key_address(root, "to", 0);
	m->cc = key_address(root, "cc", 0);
	m->displayfrom = key_address(root, "from", 1);
	m->displayto = key_address(root, "to", 1);
	m->message_id = key_first_id(root, "message-id");
	m->in_reply_to = key_first_id(root, "in-reply-to");
	key_references(m, root);
}

void sortthread_msg_clear(struct sortthread_msg *m)
{
	size_t i;

	free(m->subject);
	free(m->from);
	free(m->to);
	free(m->cc);
	free(m->displayfrom);
	free(m->displayto);
	free(m->message_id);
	free(m->in_reply_to);
	for (i = 0; i < m->nreferences; i++)
		free(m->references[i]);
	free(m->references);
	memset(m, 0, sizeof(*m));
}

/* ---- comparisons ---- */

static unsigned char casemap(unsigned char c)
{
	return c >= 'a' && c <= 'z' ? (unsigned char)(c - 'a' + 'A') : c;
}

/* i;ascii-casemap ordering; NULL is "". */
static int casemap_cmp(const char *a, const char *b)
{
	const unsigned char *x = (const unsigned char *)(a != NULL ? a : "");
	const unsigned char *y = (const unsigned char *)(b != NULL ? b : "");
	unsigned char cx, cy;

	for (;; x++, y++) {
		cx = casemap(*x);
		cy = casemap(*y);
		if (cx != cy || cx == '\0')
			return (cx > cy) - (cx < cy);
	}
}

#define CMP3(a, b) (((a) > (b)) - ((a) < (b)))

time_t sortthread_sent_date(const struct sortthread_msg *m)
{
	return m->sent_date != 0 ? m->sent_date : m->internal_date;
}

static int key_cmp(const struct sortthread_msg *a,
		   const struct sortthread_msg *b, enum imap_sort_key key)
{
	switch (key) {
	case IMAP_SORT_ARRIVAL:
		return CMP3(a->internal_date, b->internal_date);
	case IMAP_SORT_CC:
		return casemap_cmp(a->cc, b->cc);
	case IMAP_SORT_DATE:
		return CMP3(sortthread_sent_date(a), sortthread_sent_date(b));
	case IMAP_SORT_FROM:
		return casemap_cmp(a->from, b->from);
	case IMAP_SORT_SIZE:
		return CMP3(a->size, b->size);
	case IMAP_SORT_SUBJECT:
		return casemap_cmp(a->subject, b->subject);
	case IMAP_SORT_TO:
		return casemap_cmp(a->to, b->to);
	case IMAP_SORT_DISPLAYFROM:
		return casemap_cmp(a->displayfrom, b->displayfrom);
	case IMAP_SORT_DISPLAYTO:
		return casemap_cmp(a->displayto, b->displayto);
	}
	return 0;
}

int sortthread_compare(const struct sortthread_msg *a,
		       const struct sortthread_msg *b,
		       const struct imap_sort_criterion *criteria,
		       size_t ncriteria)
{
	size_t i;
	int r;

	for (i = 0; i < ncriteria; i++) {
		r = key_cmp(a, b, criteria[i].key);
		if (r != 0)
			return criteria[i].reverse ? -r : r;
	}
	return 0;
}

/* ---- an iterative, stable merge sort of index arrays ---- */

typedef int sort_cmp_fn(const void *ctx, size_t a, size_t b);

static void merge_pass(const size_t *src, size_t *dst, size_t n, size_t width,
		       sort_cmp_fn *cmp, const void *ctx)
{
	size_t lo, mid, hi, i, j, k;

	for (lo = 0; lo < n; lo += 2 * width) {
		mid = n - lo > width ? lo + width : n;
		hi = n - mid > width ? mid + width : n;
		i = lo;
		j = mid;
		k = lo;
		while (i < mid && j < hi)
			dst[k++] = cmp(ctx, src[j], src[i]) < 0 ? src[j++]
								 : src[i++];
		while (i < mid)
			dst[k++] = src[i++];
		while (j < hi)
			dst[k++] = src[j++];
	}
}

static void merge_sort(size_t *a, size_t n, sort_cmp_fn *cmp, const void *ctx)
{
	size_t *tmp, *src = a, *dst, *t, width;

	if (n < 2)
		return;
	tmp = xmalloc(n * sizeof(*tmp));
	dst = tmp;
	for (width = 1; width < n; width = width > n / 2 ? n : width * 2) {
		merge_pass(src, dst, n, width, cmp, ctx);
		t = src;
		src = dst;
		dst = t;
	}
	if (src != a)
		memcpy(a, src, n * sizeof(*a));
	free(tmp);
}

/* ---- SORT ---- */

struct sort_ctx {
	const struct sortthread_msg *msgs;
	const struct imap_sort_criterion *criteria;
	size_t ncriteria;
};

static int seq_cmp(const struct sortthread_msg *msgs, size_t a, size_t b)
{
	int r = CMP3(msgs[a].seq, msgs[b].seq);

	return r != 0 ? r : CMP3(a, b);
}

static int sort_cmp(const void *vctx, size_t a, size_t b)
{
	const struct sort_ctx *ctx = vctx;
	int r = sortthread_compare(&ctx->msgs[a], &ctx->msgs[b],
				   ctx->criteria, ctx->ncriteria);

	return r != 0 ? r : seq_cmp(ctx->msgs, a, b);
}

void sortthread_sort(const struct sortthread_msg *msgs, size_t count,
		     const struct imap_sort_criterion *criteria,
		     size_t ncriteria, size_t *order_r)
{
	struct sort_ctx ctx = { msgs, criteria, ncriteria };
	size_t i;

	for (i = 0; i < count; i++)
		order_r[i] = i;
	merge_sort(order_r, count, sort_cmp, &ctx);
}

/* Sent date, then sequence number. */
static int date_cmp(const struct sortthread_msg *msgs, size_t a, size_t b)
{
	int r = CMP3(sortthread_sent_date(&msgs[a]),
		     sortthread_sent_date(&msgs[b]));

	return r != 0 ? r : seq_cmp(msgs, a, b);
}

/* ---- a fixed-size string table (open addressing) ---- */

struct htab {
	const char **keys;	/* NULL = empty slot */
	size_t *vals;
	size_t mask;
	uint64_t seed;
	bool casemap;
};

static void htab_init(struct htab *t, size_t entries, bool fold)
{
	size_t cap = 16;

	while (cap < entries * 2 + 1)
		cap *= 2;
	t->keys = xcalloc(cap, sizeof(*t->keys));
	t->vals = xcalloc(cap, sizeof(*t->vals));
	t->mask = cap - 1;
	/* Varies per table, so that colliding keys cannot be prepared. */
	t->seed = ((uint64_t)(uintptr_t)t->keys << 16) ^
		  (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 40);
	t->casemap = fold;
}

static void htab_free(struct htab *t)
{
	free(t->keys);
	free(t->vals);
	t->keys = NULL;
	t->vals = NULL;
}

static uint64_t htab_hash(const struct htab *t, const char *s)
{
	uint64_t h = t->seed ^ 0xcbf29ce484222325ULL;
	unsigned char c;

	for (; *s != '\0'; s++) {
		c = (unsigned char)*s;
		h ^= t->casemap ? casemap(c) : c;
		h *= 0x100000001b3ULL;
	}
	h ^= h >> 31;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 29;
	return h;
}

/* The slot of key: found (keys[slot] != NULL) or the empty one for it. */
static size_t htab_slot(const struct htab *t, const char *key)
{
	size_t i = (size_t)htab_hash(t, key) & t->mask;

	while (t->keys[i] != NULL) {
		if (t->casemap ? casemap_cmp(t->keys[i], key) == 0
			       : strcmp(t->keys[i], key) == 0)
			break;
		i = (i + 1) & t->mask;
	}
	return i;
}

/* ---- tree export ---- */

static struct sortthread_tree *tree_new(size_t count)
{
	struct sortthread_tree *tree = xcalloc(1, sizeof(*tree));

	tree->nodes = xcalloc(count > 0 ? count : 1, sizeof(*tree->nodes));
	tree->first = NONE;
	return tree;
}

void sortthread_tree_free(struct sortthread_tree **tree)
{
	if (*tree == NULL)
		return;
	free((*tree)->nodes);
	free(*tree);
	*tree = NULL;
}

int sortthread_algo_parse(const char *name, enum sortthread_algo *algo_r)
{
	if (strcasecmp(name, "ORDEREDSUBJECT") == 0)
		*algo_r = SORTTHREAD_ORDEREDSUBJECT;
	else if (strcasecmp(name, "REFERENCES") == 0)
		*algo_r = SORTTHREAD_REFERENCES;
	else
		return -1;
	return 0;
}

/* ---- THREAD=ORDEREDSUBJECT ---- */

static int subject_date_cmp(const void *ctx, size_t a, size_t b)
{
	const struct sortthread_msg *msgs = ctx;
	int r = casemap_cmp(msgs[a].subject, msgs[b].subject);

	return r != 0 ? r : date_cmp(msgs, a, b);
}

static int date_cmp_ctx(const void *ctx, size_t a, size_t b)
{
	return date_cmp(ctx, a, b);
}

/* Sorts by base subject and date; the first message of each subject is a
 * thread whose children are the others; threads go by their first date. */
static struct sortthread_tree *
thread_orderedsubject(const struct sortthread_msg *msgs, size_t count)
{
	struct sortthread_tree *tree = tree_new(count);
	size_t *idx = xmalloc((count > 0 ? count : 1) * sizeof(*idx));
	size_t *firsts = xmalloc((count > 0 ? count : 1) * sizeof(*firsts));
	size_t i, nthreads = 0, start = 0;

	for (i = 0; i < count; i++)
		idx[i] = i;
	merge_sort(idx, count, subject_date_cmp, msgs);
	/* Node i is message i. */
	for (i = 0; i < count; i++) {
		tree->nodes[i].msg = i;
		tree->nodes[i].child = NONE;
		tree->nodes[i].next = NONE;
	}
	for (i = 0; i < count; i++) {
		if (i > start &&
		    casemap_cmp(msgs[idx[i]].subject,
				msgs[idx[start]].subject) == 0) {
			if (i == start + 1)
				tree->nodes[idx[start]].child = idx[i];
			else
				tree->nodes[idx[i - 1]].next = idx[i];
			continue;
		}
		start = i;
		firsts[nthreads++] = idx[i];
	}
	merge_sort(firsts, nthreads, date_cmp_ctx, msgs);
	for (i = 0; i + 1 < nthreads; i++)
		tree->nodes[firsts[i]].next = firsts[i + 1];
	tree->first = nthreads > 0 ? firsts[0] : NONE;
	tree->count = count;
	free(firsts);
	free(idx);
	return tree;
}

/* ---- THREAD=REFERENCES ---- */

struct ctr {
	size_t msg;		/* NONE for a dummy */
	size_t parent, child, last, prev, next;
};

struct refs {
	const struct sortthread_msg *msgs;
	struct ctr *c;
	size_t n, cap;
	size_t root;
	size_t *buf;		/* scratch of cap entries */
};

static size_t ctr_new(struct refs *r, size_t msg)
{
	struct ctr *x;

	if (r->n == r->cap) {
		r->cap = r->cap * 2 + 16;
		r->c = xrealloc(r->c, r->cap * sizeof(*r->c));
		if (r->buf != NULL)
			r->buf = xrealloc(r->buf, r->cap * sizeof(*r->buf));
	}
	x = &r->c[r->n];
	x->msg = msg;
	x->parent = x->child = x->last = x->prev = x->next = NONE;
	return r->n++;
}

static void ctr_unlink(struct refs *r, size_t x)
{
	struct ctr *c = r->c;
	size_t p = c[x].parent;

	if (p == NONE)
		return;
	if (c[x].prev != NONE)
		c[c[x].prev].next = c[x].next;
	else
		c[p].child = c[x].next;
	if (c[x].next != NONE)
		c[c[x].next].prev = c[x].prev;
	else
		c[p].last = c[x].prev;
	c[x].parent = c[x].prev = c[x].next = NONE;
}

static void ctr_append(struct refs *r, size_t p, size_t x)
{
	struct ctr *c = r->c;

	c[x].parent = p;
	c[x].prev = c[p].last;
	c[x].next = NONE;
	if (c[p].last != NONE)
		c[c[p].last].next = x;
	else
		c[p].child = x;
	c[p].last = x;
}

/* Puts unlinked x just before sibling s. */
static void ctr_insert_before(struct refs *r, size_t s, size_t x)
{
	struct ctr *c = r->c;
	size_t p = c[s].parent;

	c[x].parent = p;
	c[x].prev = c[s].prev;
	c[x].next = s;
	if (c[s].prev != NONE)
		c[c[s].prev].next = x;
	else
		c[p].child = x;
	c[s].prev = x;
}

/* The node after n in a pre-order walk of top's subtree, NONE at its end. */
static size_t subtree_next(const struct refs *r, size_t top, size_t n)
{
	if (r->c[n].child != NONE)
		return r->c[n].child;
	for (; n != top; n = r->c[n].parent) {
		if (r->c[n].next != NONE)
			return r->c[n].next;
	}
	return NONE;
}

/* Whether making p the parent of x would close a loop (x is p or one of
 * its ancestors).  A message without children is nobody's ancestor;
 * otherwise p's ancestors and x's subtree are walked in step, and the
 * first walk to end decides.  When both go on past
 * SORTTHREAD_LOOP_WALK_MAX steps the answer is yes (no link). */
static bool would_loop(const struct refs *r, size_t p, size_t x)
{
	size_t up, down, steps;

	if (p == x)
		return true;
	if (r->c[x].child == NONE)
		return false;
	up = r->c[p].parent;
	down = r->c[x].child;
	for (steps = 0; steps < SORTTHREAD_LOOP_WALK_MAX; steps++) {
		if (up == x || down == p)
			return true;
		if (up == NONE || down == NONE)
			return false;
		up = r->c[up].parent;
		down = subtree_next(r, x, down);
	}
	return true;
}

/* The container of id, a new dummy when it is not known. */
static size_t refs_lookup(struct refs *r, struct htab *ids, const char *id)
{
	size_t slot = htab_slot(ids, id);

	if (ids->keys[slot] == NULL) {
		ids->keys[slot] = id;
		ids->vals[slot] = ctr_new(r, NONE);
	}
	return ids->vals[slot];
}

/* The container of message i: by Message-ID, or a new one when it has
 * none or a lower sequence number holds it already (step 1). */
static size_t refs_own(struct refs *r, struct htab *ids, size_t i)
{
	const char *id = r->msgs[i].message_id;
	size_t slot;

	if (id == NULL || id[0] == '\0')
		return ctr_new(r, i);
	slot = htab_slot(ids, id);
	if (ids->keys[slot] == NULL) {
		ids->keys[slot] = id;
		ids->vals[slot] = ctr_new(r, i);
	} else if (r->c[ids->vals[slot]].msg == NONE) {
		r->c[ids->vals[slot]].msg = i;
	} else {
		return ctr_new(r, i);
	}
	return ids->vals[slot];
}

/* Step 1: links the References (or In-Reply-To) chain of message i and
 * the message under its last reference. */
static void refs_link(struct refs *r, struct htab *ids, size_t i)
{
	const struct sortthread_msg *m = &r->msgs[i];
	char *const *list = m->references;
	size_t n = m->nreferences, cur, prev = NONE, x, k;

	cur = refs_own(r, ids, i);
	if (n == 0 && m->in_reply_to != NULL) {
		list = &m->in_reply_to;
		n = 1;
	}
	for (k = 0; k < n; k++) {
		if (list[k] == NULL || list[k][0] == '\0')
			continue;
		x = refs_lookup(r, ids, list[k]);
		if (prev != NONE && r->c[x].parent == NONE &&
		    !would_loop(r, prev, x))
			ctr_append(r, prev, x);
		prev = x;
	}
	ctr_unlink(r, cur);
	if (prev != NONE && !would_loop(r, prev, cur))
		ctr_append(r, prev, cur);
}

/* The containers under the root, each after all of its descendants;
 * returns how many (the root itself last). */
static size_t refs_postorder(struct refs *r, size_t *out)
{
	size_t *stack = r->buf, sp = 0, n = 0, x, ch, i;

	stack[sp++] = r->root;
	while (sp > 0) {
		x = stack[--sp];
		out[n++] = x;
		for (ch = r->c[x].child; ch != NONE; ch = r->c[ch].next)
			stack[sp++] = ch;
	}
	for (i = 0; i < n / 2; i++) {
		x = out[i];
		out[i] = out[n - 1 - i];
		out[n - 1 - i] = x;
	}
	return n;
}

/* Step 3: dummies without children go; those with children give them to
 * their parent, except at the top level when they have two or more. */
static void refs_prune(struct refs *r)
{
	size_t *order = xmalloc(r->cap * sizeof(*order));
	size_t n = refs_postorder(r, order), i, x, ch;
	struct ctr *c = r->c;

	for (i = 0; i < n; i++) {
		x = order[i];
		if (x == r->root || c[x].msg != NONE)
			continue;
		if (c[x].child != NONE && c[x].parent == r->root &&
		    c[x].child != c[x].last)
			continue;
		while ((ch = c[x].child) != NONE) {
			ctr_unlink(r, ch);
			ctr_insert_before(r, x, ch);
		}
		ctr_unlink(r, x);
	}
	free(order);
}

/* The message that stands for x: x, or a dummy's first child. */
static size_t refs_msg(const struct refs *r, size_t x)
{
	while (r->c[x].msg == NONE && r->c[x].child != NONE)
		x = r->c[x].child;
	return r->c[x].msg;
}

static int refs_date_cmp(const void *ctx, size_t a, size_t b)
{
	const struct refs *r = ctx;
	size_t ma = refs_msg(r, a), mb = refs_msg(r, b);

	if (ma == NONE || mb == NONE)
		return CMP3(ma != NONE, mb != NONE);
	return date_cmp(r->msgs, ma, mb);
}

/* Sorts the children of p by sent date. */
static void refs_sort_children(struct refs *r, size_t p)
{
	size_t n = 0, x, i;

	if (r->c[p].child == r->c[p].last)
		return;
	for (x = r->c[p].child; x != NONE; x = r->c[x].next)
		r->buf[n++] = x;
	merge_sort(r->buf, n, refs_date_cmp, r);
	r->c[p].child = r->c[p].last = NONE;
	for (i = 0; i < n; i++)
		ctr_append(r, p, r->buf[i]);
}

/* The thread subject of top-level x, "" when none. */
static const char *refs_subject(const struct refs *r, size_t x)
{
	size_t m = refs_msg(r, x);
	const char *s = m != NONE ? r->msgs[m].subject : NULL;

	return s != NULL ? s : "";
}

static bool refs_is_reply(const struct refs *r, size_t x)
{
	return r->c[x].msg != NONE && r->msgs[r->c[x].msg].is_reply;
}

/* Step 5.C for one top-level x and the table's t. */
static size_t refs_merge(struct refs *r, size_t t, size_t x)
{
	bool xdummy = r->c[x].msg == NONE, tdummy = r->c[t].msg == NONE;
	size_t ch, d;

	if (xdummy && tdummy) {
		while ((ch = r->c[x].child) != NONE) {
			ctr_unlink(r, ch);
			ctr_append(r, t, ch);
		}
		ctr_unlink(r, x);
	} else if (tdummy ||
		   (refs_is_reply(r, x) && !xdummy && !refs_is_reply(r, t))) {
		ctr_unlink(r, x);
		ctr_append(r, t, x);
	} else {
		d = ctr_new(r, NONE);
		ctr_insert_before(r, t, d);
		ctr_unlink(r, t);
		ctr_append(r, d, t);
		ctr_unlink(r, x);
		ctr_append(r, d, x);
		return d;
	}
	return t;
}

/* Steps 4 and 5: sorts the top level, then merges threads whose thread
 * subjects are equal. */
static void refs_group(struct refs *r)
{
	size_t *tops = xmalloc(r->cap * sizeof(*tops));
	size_t n = 0, i, x, slot;
	struct htab subj;
	const char *s;

	for (x = r->c[r->root].child; x != NONE; x = r->c[x].next) {
		if (r->c[x].msg == NONE)
			refs_sort_children(r, x);
	}
	refs_sort_children(r, r->root);
	for (x = r->c[r->root].child; x != NONE; x = r->c[x].next)
		tops[n++] = x;
	htab_init(&subj, n, true);
	for (i = 0; i < n; i++) {
		x = tops[i];
		s = refs_subject(r, x);
		if (s[0] == '\0')
			continue;
		slot = htab_slot(&subj, s);
		if (subj.keys[slot] == NULL) {
			subj.keys[slot] = s;
			subj.vals[slot] = x;
		} else if (r->c[subj.vals[slot]].msg != NONE &&
			   (r->c[x].msg == NONE ||
			    (refs_is_reply(r, subj.vals[slot]) &&
			     !refs_is_reply(r, x)))) {
			subj.vals[slot] = x;
		}
	}
	for (i = 0; i < n; i++) {
		x = tops[i];
		s = refs_subject(r, x);
		if (s[0] == '\0')
			continue;
		slot = htab_slot(&subj, s);
		if (subj.vals[slot] != x)
			subj.vals[slot] = refs_merge(r, subj.vals[slot], x);
	}
	htab_free(&subj);
	free(tops);
}

/* Step 6: every set of siblings by sent date, the deepest first. */
static void refs_sort_all(struct refs *r)
{
	size_t *order = xmalloc(r->cap * sizeof(*order));
	size_t n = refs_postorder(r, order), i;

	for (i = 0; i < n; i++)
		refs_sort_children(r, order[i]);
	free(order);
}

/* Copies the containers under the root into a tree. */
static struct sortthread_tree *refs_export(struct refs *r)
{
	size_t *order = xmalloc(r->cap * sizeof(*order));
	size_t *map = xmalloc(r->cap * sizeof(*map));
	size_t n = refs_postorder(r, order), i, x;
	struct sortthread_tree *tree = tree_new(n);
	struct sortthread_node *node;

	/* order ends with the root; every other container gets a node. */
	for (i = 0; i + 1 < n; i++)
		map[order[i]] = i;
	for (i = 0; i + 1 < n; i++) {
		x = order[i];
		node = &tree->nodes[i];
		node->msg = r->c[x].msg;
		node->child = r->c[x].child != NONE ? map[r->c[x].child] : NONE;
		node->next = r->c[x].next != NONE ? map[r->c[x].next] : NONE;
	}
	x = r->c[r->root].child;
	tree->first = x != NONE ? map[x] : NONE;
	tree->count = n - 1;
	free(map);
	free(order);
	return tree;
}

static int seq_cmp_ctx(const void *ctx, size_t a, size_t b)
{
	return seq_cmp(ctx, a, b);
}

static struct sortthread_tree *
thread_references(const struct sortthread_msg *msgs, size_t count)
{
	struct refs r = { msgs, NULL, 0, 0, NONE, NULL };
	struct sortthread_tree *tree;
	size_t *byseq = xmalloc((count > 0 ? count : 1) * sizeof(*byseq));
	size_t i, ids = 0, x;
	struct htab idt;

	for (i = 0; i < count; i++) {
		byseq[i] = i;
		ids += 1 + (msgs[i].nreferences > 0 ? msgs[i].nreferences : 1);
	}
	/* Every id makes at most one container; 5.C adds at most one dummy
	 * per top-level thread, and there is the root. */
	r.cap = ids + count + 1;
	r.c = xmalloc(r.cap * sizeof(*r.c));
	htab_init(&idt, ids, false);
	merge_sort(byseq, count, seq_cmp_ctx, msgs);
	for (i = 0; i < count; i++)
		refs_link(&r, &idt, byseq[i]);
	htab_free(&idt);
	free(byseq);
	r.buf = xmalloc(r.cap * sizeof(*r.buf));
	r.root = ctr_new(&r, NONE);
	for (x = 0; x < r.root; x++) {
		if (r.c[x].parent == NONE)
			ctr_append(&r, r.root, x);
	}
	refs_prune(&r);
	refs_group(&r);
	refs_sort_all(&r);
	tree = refs_export(&r);
	free(r.buf);
	free(r.c);
	return tree;
}

struct sortthread_tree *sortthread_thread(const struct sortthread_msg *msgs,
					  size_t count,
					  enum sortthread_algo algo)
{
	if (algo == SORTTHREAD_ORDEREDSUBJECT)
		return thread_orderedsubject(msgs, count);
	return thread_references(msgs, count);
}

/* ---- the THREAD response ---- */

enum fmt_op { FMT_OPEN, FMT_VISIT, FMT_CLOSE };

struct fmt_item {
	size_t node;
	enum fmt_op op;
};

/* Writes one top-level thread: a node with one child continues inline,
 * one with more opens a parenthesised list per child. */
static int format_thread(const struct sortthread_tree *tree,
			 const struct sortthread_msg *msgs, bool use_uid,
			 size_t top, struct fmt_item *stack, struct str *out)
{
	const struct sortthread_node *node;
	size_t sp = 0, base, ch, i;
	struct fmt_item it;
	bool after_num = false;
	int ret = str_append_byte(out, '(');

	stack[sp++] = (struct fmt_item){ top, FMT_VISIT };
	while (sp > 0 && ret == 0) {
		it = stack[--sp];
		if (it.op != FMT_VISIT) {
			if (it.op == FMT_OPEN && after_num)
				ret = str_append_byte(out, ' ');
			if (ret == 0)
				ret = str_append_byte(out,
						      it.op == FMT_OPEN ? '('
									: ')');
			after_num = false;
			continue;
		}
		node = &tree->nodes[it.node];
		if (node->msg != NONE) {
			ret = str_printf(out, "%s%" PRIu32,
					 after_num ? " " : "",
					 use_uid ? msgs[node->msg].uid
						 : msgs[node->msg].seq);
			after_num = true;
		}
		if (node->child == NONE)
			continue;
		if (tree->nodes[node->child].next == NONE) {
			stack[sp++] = (struct fmt_item){ node->child,
							 FMT_VISIT };
			continue;
		}
		base = sp;
		for (ch = node->child; ch != NONE; ch = tree->nodes[ch].next) {
			stack[sp++] = (struct fmt_item){ ch, FMT_OPEN };
			stack[sp++] = (struct fmt_item){ ch, FMT_VISIT };
			stack[sp++] = (struct fmt_item){ ch, FMT_CLOSE };
		}
		for (i = 0; i < (sp - base) / 2; i++) {
			it = stack[base + i];
			stack[base + i] = stack[sp - 1 - i];
			stack[sp - 1 - i] = it;
		}
	}
	if (ret == 0)
		ret = str_append_byte(out, ')');
	return ret;
}

int sortthread_format(const struct sortthread_tree *tree,
		      const struct sortthread_msg *msgs, bool use_uid,
		      struct str *out)
{
	struct fmt_item *stack;
	size_t top;
	int ret = 0;

	if (tree->count == 0)
		return 0;
	/* Each node is pushed at most once with its open and close. */
	stack = xmalloc((3 * tree->count + 1) * sizeof(*stack));
	for (top = tree->first; top != NONE && ret == 0;
	     top = tree->nodes[top].next)
		ret = format_thread(tree, msgs, use_uid, top, stack, out);
	free(stack);
	return ret;
}
