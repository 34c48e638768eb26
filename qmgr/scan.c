/*
 * scan.c: the queue folders as tern-qmgr sees them (see qmgr.h).
 *
 * New files in incoming/ are seen at once through inotify (a libuv fs
 * event on the folder); a scan at start (active/ first: messages an
 * earlier process left there, then incoming/ and deferred/) and a rescan
 * every qmgr_rescan_interval catch anything an event missed.  Work waits
 * in a FIFO until fewer than qmgr_active_limit messages are being
 * delivered and the next one's queue file fits in qmgr_active_bytes_limit
 * (the sizes of those being delivered, which are held in memory).  Deferred messages wait in a list with their next try; the
 * tick starts those that are due.  `ternctl queue flush` creates
 * queue/flush: seeing it, qmgr removes it and makes every deferred
 * message due now.  Folder reads run on the thread pool.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compat.h"
#include "log.h"
#include "qmgr.h"
#include "qstate.h"
#include "svc.h"
#include "xalloc.h"

/* A string that reached its maximum is cut there: fine here. */
#define STR_TRY(x) do { if ((x) < 0) { /* cut */ } } while (0)

/* ---- a set of queue ids ---- */

#define QIDSET_BUCKETS 4096

struct qid_node {
	struct qid_node *next;
	char id[QUEUE_ID_SIZE];
};

struct qidset {
	struct qid_node *b[QIDSET_BUCKETS];
};

static unsigned qid_hash(const char *id)
{
	unsigned h = 5381;

	for (; *id != '\0'; id++)
		h = h * 33 + (unsigned char)*id;
	return h % QIDSET_BUCKETS;
}

static bool qidset_has(struct qidset *s, const char *id)
{
	for (struct qid_node *n = s->b[qid_hash(id)]; n != NULL; n = n->next) {
		if (strcmp(n->id, id) == 0)
			return true;
	}
	return false;
}

static void qidset_add(struct qidset *s, const char *id)
{
	unsigned h = qid_hash(id);
	struct qid_node *n = xmalloc(sizeof(*n));

	str_lcpy(n->id, id, sizeof(n->id));
	n->next = s->b[h];
	s->b[h] = n;
}

static void qidset_del(struct qidset *s, const char *id)
{
	for (struct qid_node **p = &s->b[qid_hash(id)]; *p != NULL;
	     p = &(*p)->next) {
		if (strcmp((*p)->id, id) == 0) {
			struct qid_node *n = *p;

			*p = n->next;
			free(n);
			return;
		}
	}
}

static void qidset_free(struct qidset **sp)
{
	struct qidset *s = *sp;

	if (s == NULL)
		return;
	for (size_t i = 0; i < QIDSET_BUCKETS; i++) {
		while (s->b[i] != NULL) {
			struct qid_node *n = s->b[i];

			s->b[i] = n->next;
			free(n);
		}
	}
	free(s);
	*sp = NULL;
}

/* ---- work lists ---- */

/* The size of a waiting message's queue file (0 when it is gone: the
 * attempt finds that out). */
static uint64_t pending_bytes(const struct qmgr *q, const struct qpending *p)
{
	char *path = qmgr_path(q, p->from, p->id);
	struct stat st;
	uint64_t n = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;

	free(path);
	return n;
}

static void pump(struct qmgr *q)
{
	while (!q->stopping && q->active < q->set.active_limit &&
	       q->pending_head < q->npending) {
		struct qpending *p = &q->pending[q->pending_head];
		uint64_t bytes = pending_bytes(q, p);

		if (q->active > 0 &&
		    q->active_bytes + bytes > q->set.active_bytes_limit) {
			if (!q->bytes_full)
				log_info(NULL, "%u messages of %llu bytes "
					 "in delivery: the next waits "
					 "(qmgr_active_bytes_limit %llu)",
					 q->active,
					 (unsigned long long)q->active_bytes,
					 (unsigned long long)
						 q->set.active_bytes_limit);
			q->bytes_full = true;
			break;
		}
		q->bytes_full = false;
		q->pending_head++;
		q->active++;
		q->active_bytes += bytes;
		svc_session_opened(q->svc);
		deliver_start(q, p->id, p->from, bytes);
	}
	if (q->pending_head == q->npending)
		q->pending_head = q->npending = 0;
}

static void push_pending(struct qmgr *q, const char *id, enum qfolder from)
{
	if (q->npending == q->pending_cap) {
		if (q->pending_head > 0) {
			memmove(q->pending, q->pending + q->pending_head,
				(q->npending - q->pending_head) *
					sizeof(*q->pending));
			q->npending -= q->pending_head;
			q->pending_head = 0;
		}
		if (q->npending == q->pending_cap) {
			q->pending_cap = q->pending_cap ? q->pending_cap * 2 :
							  64;
			q->pending = xrealloc(q->pending, q->pending_cap *
							   sizeof(*q->pending));
		}
	}
	str_lcpy(q->pending[q->npending].id, id, QUEUE_ID_SIZE);
	q->pending[q->npending].from = from;
	q->pending[q->npending].due = 0;
	q->npending++;
}

/* Removes id from the deferred list: false when it is not there. */
static bool take_deferred(struct qmgr *q, const char *id)
{
	for (size_t i = 0; i < q->ndeferred; i++) {
		if (strcmp(q->deferred[i].id, id) == 0) {
			q->deferred[i] = q->deferred[--q->ndeferred];
			return true;
		}
	}
	return false;
}

/* A new id found: work for it unless it is known already. */
static void found(struct qmgr *q, const char *id, enum qfolder from,
		  int64_t due)
{
	if (q->known == NULL)
		return;
	if (qidset_has(q->known, id)) {
		/* Released from hold while its retry was still waiting:
		 * it goes now, from incoming/. */
		if (from == QF_INCOMING && take_deferred(q, id))
			push_pending(q, id, QF_INCOMING);
		return;
	}
	qidset_add(q->known, id);
	if (from == QF_DEFERRED && due > qmgr_now()) {
		if (q->ndeferred == q->deferred_cap) {
			size_t cap = q->deferred_cap ? q->deferred_cap * 2 : 64;

			q->deferred = xrealloc(q->deferred,
					       cap * sizeof(*q->deferred));
			q->deferred_cap = cap;
		}
		str_lcpy(q->deferred[q->ndeferred].id, id, QUEUE_ID_SIZE);
		q->deferred[q->ndeferred].from = QF_DEFERRED;
		q->deferred[q->ndeferred].due = due;
		q->ndeferred++;
		return;
	}
	push_pending(q, id, from);
}

void scan_message_done(struct qmgr *q, const char *id, bool deferred,
		       int64_t due, uint64_t bytes)
{
	q->active--;
	q->active_bytes -= bytes;
	svc_session_closed(q->svc);
	if (q->known == NULL)
		return;		/* stopping */
	qidset_del(q->known, id);
	if (deferred && !q->stopping)
		found(q, id, QF_DEFERRED, due);
	pump(q);
}

/* Deferred messages whose time came go to the work list. */
static void start_due(struct qmgr *q, bool all)
{
	int64_t now = qmgr_now();
	size_t k = 0;

	for (size_t i = 0; i < q->ndeferred; i++) {
		struct qpending *d = &q->deferred[i];

		if (all || d->due <= now)
			push_pending(q, d->id, QF_DEFERRED);
		else
			q->deferred[k++] = *d;
	}
	q->ndeferred = k;
	pump(q);
}

/* ---- folder scans (thread pool) ---- */

struct scan_job {
	uv_work_t req;
	struct qmgr *q;
	bool deferred_too, flush, first;
	char *dirs[3];
	enum qfolder folders[3];
	size_t ndirs;
	struct qpending *found;
	size_t nfound, cap;
};

static void scan_dir(struct scan_job *j, size_t k)
{
	DIR *d = opendir(j->dirs[k]);
	struct dirent *e;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		struct qpending *p;

		if (!queue_id_valid(e->d_name))
			continue;
		if (j->nfound == j->cap) {
			j->cap = j->cap ? j->cap * 2 : 64;
			j->found = xrealloc(j->found,
					    j->cap * sizeof(*j->found));
		}
		p = &j->found[j->nfound++];
		str_lcpy(p->id, e->d_name, QUEUE_ID_SIZE);
		p->from = j->folders[k];
		p->due = 0;
		if (p->from == QF_DEFERRED && !j->flush) {
			struct str *path = str_new(256, 8192);
			unsigned attempts;

			STR_TRY(str_printf(path, "%s/%s%s", j->dirs[k],
					 e->d_name, QSTATE_SUFFIX));
			if (qstate_peek(str_c(path), &attempts, &p->due) < 0)
				p->due = 0;
			str_free(&path);
		}
	}
	closedir(d);
}

static int cmp_pending(const void *a, const void *b)
{
	const struct qpending *x = a, *y = b;

	if (x->from != y->from)
		return x->from == QF_ACTIVE ? -1 : y->from == QF_ACTIVE ? 1 : 0;
	return strcmp(x->id, y->id);
}

static void scan_work(uv_work_t *req)
{
	struct scan_job *j = req->data;

	for (size_t k = 0; k < j->ndirs; k++)
		scan_dir(j, k);
	/* Oldest first (ids sort by arrival); active/ before the rest. */
	if (j->nfound > 0)
		qsort(j->found, j->nfound, sizeof(*j->found), cmp_pending);
}

static void scan_after(uv_work_t *req, int status)
{
	struct scan_job *j = req->data;
	struct qmgr *q = j->q;

	q->scanning = false;
	if (status == 0 && !q->stopping) {
		for (size_t i = 0; i < j->nfound; i++)
			found(q, j->found[i].id, j->found[i].from,
			      j->found[i].due);
		if (j->flush)
			start_due(q, true);
		pump(q);
	}
	for (size_t k = 0; k < j->ndirs; k++)
		free(j->dirs[k]);
	free(j->found);
	free(j);
}

void scan_rescan(struct qmgr *q, bool deferred_too, bool flush)
{
	struct scan_job *j;

	if (q->stopping)
		return;
	if (flush)
		start_due(q, true);
	if (q->scanning && !flush)
		return;
	j = xcalloc(1, sizeof(*j));
	j->q = q;
	j->flush = flush;
	j->req.data = j;
	if (q->last_rescan_ms == 0) {
		j->folders[j->ndirs] = QF_ACTIVE;
		j->dirs[j->ndirs++] = qmgr_path(q, QF_ACTIVE, NULL);
	}
	j->folders[j->ndirs] = QF_INCOMING;
	j->dirs[j->ndirs++] = qmgr_path(q, QF_INCOMING, NULL);
	if (deferred_too) {
		j->folders[j->ndirs] = QF_DEFERRED;
		j->dirs[j->ndirs++] = qmgr_path(q, QF_DEFERRED, NULL);
	}
	q->last_rescan_ms = (int64_t)uv_now(q->loop);
	q->scanning = true;
	if (uv_queue_work(q->loop, &j->req, scan_work, scan_after) < 0) {
		q->scanning = false;
		for (size_t k = 0; k < j->ndirs; k++)
			free(j->dirs[k]);
		free(j);
	}
}

void scan_tick(struct qmgr *q)
{
	start_due(q, false);
	if ((uint64_t)((int64_t)uv_now(q->loop) - q->last_rescan_ms) >=
	    q->set.rescan_ms)
		scan_rescan(q, true, false);
}

/* ---- inotify ---- */

static void on_incoming(uv_fs_event_t *h, const char *name, int events,
			int status)
{
	struct qmgr *q = h->data;

	(void)events;
	if (status < 0 || name == NULL || q->stopping)
		return;
	if (!queue_id_valid(name))
		return;
	found(q, name, QF_INCOMING, 0);
	pump(q);
}

static void on_queue(uv_fs_event_t *h, const char *name, int events,
		     int status)
{
	struct qmgr *q = h->data;
	struct str *p;

	(void)events;
	if (status < 0 || name == NULL || q->stopping ||
	    strcmp(name, "flush") != 0)
		return;
	p = str_new(256, 8192);
	STR_TRY(str_printf(p, "%s/queue/flush", q->root));
	if (unlink(str_c(p)) == 0) {
		log_info(NULL, "flush: retrying every deferred message now");
		scan_rescan(q, true, true);
	}
	str_free(&p);
}

int scan_start(struct qmgr *q, const char **error_r)
{
	static const enum qfolder all[] = { QF_INCOMING, QF_ACTIVE,
					    QF_DEFERRED, QF_HOLD, QF_CORRUPT,
					    QF_TMP };
	struct str *p = str_new(256, 8192);
	char *dir;
	int r;

	STR_TRY(str_printf(p, "%s/queue", q->root));
	(void)mkdir(str_c(p), 0750);
	for (size_t i = 0; i < TERN_NELEM(all); i++) {
		dir = qmgr_path(q, all[i], NULL);
		if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
			log_error(NULL, "mkdir %s: %s", dir, strerror(errno));
			free(dir);
			str_free(&p);
			*error_r = "cannot create the queue folders";
			return -1;
		}
		free(dir);
	}
	q->known = xcalloc(1, sizeof(*q->known));
	uv_fs_event_init(q->loop, &q->watch_incoming);
	uv_fs_event_init(q->loop, &q->watch_queue);
	q->watch_incoming.data = q->watch_queue.data = q;
	dir = qmgr_path(q, QF_INCOMING, NULL);
	r = uv_fs_event_start(&q->watch_incoming, on_incoming, dir, 0);
	free(dir);
	if (r == 0)
		r = uv_fs_event_start(&q->watch_queue, on_queue, str_c(p), 0);
	str_free(&p);
	if (r < 0) {
		log_error(NULL, "watching the queue: %s", uv_strerror(r));
		*error_r = "cannot watch the queue folders";
		return -1;
	}
	scan_rescan(q, true, false);
	return 0;
}

void scan_stop(struct qmgr *q)
{
	uv_fs_event_stop(&q->watch_incoming);
	uv_fs_event_stop(&q->watch_queue);
	uv_close((uv_handle_t *)&q->watch_incoming, NULL);
	uv_close((uv_handle_t *)&q->watch_queue, NULL);
	q->npending = q->pending_head = 0;
	q->ndeferred = 0;
	qidset_free(&q->known);
}
