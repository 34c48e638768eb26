/*
 * ctl_queue.c: ternctl queue list [--json] | show ID [--json] |
 * flush [ID] | delete ID|ALL | hold ID | release ID | requeue ID.
 *
 * The queue is a set of folders (docs/queue.md); these commands work on
 * the files directly, the way tern-qmgr leaves them: a message moves with
 * its state file (ID.state, written first).  A message in active/ is being
 * delivered: delete and hold refuse it (try again in a moment).  flush
 * creates queue/flush, which tern-qmgr sees at once (inotify), removes,
 * and answers by retrying every deferred message now; flush ID moves one
 * deferred message to incoming/.  release moves a held message to
 * incoming/, where tern-qmgr picks it up at once.  requeue ID also starts
 * the message's retries afresh (attempts, next try and errors cleared;
 * recipients already delivered stay delivered).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "compat.h"
#include "json.h"
#include "qstate.h"
#include "queue.h"
#include "str.h"
#include "ternctl.h"
#include "xalloc.h"

#define STR_TRY(x) do { if ((x) < 0) { /* cut */ } } while (0)

static const char *const folders[] = { "incoming", "active", "deferred",
				       "hold", "corrupt" };

static char *qpath(const struct ctl *ctl, const char *folder,
		   const char *name, const char *suffix)
{
	struct str *p = str_new(128, 8192);
	char *rel, *r;

	STR_TRY(str_printf(p, "queue/%s%s%s%s", folder, name ? "/" : "",
			   name ? name : "", suffix ? suffix : ""));
	rel = xstrdup(str_c(p));
	r = ctl_path(ctl, rel);
	free(rel);
	str_free(&p);
	return r;
}

/* The ids in a folder, sorted (ids sort by arrival). */
static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char **folder_ids(const struct ctl *ctl, const char *folder,
			 size_t *n_r)
{
	char *dir = qpath(ctl, folder, NULL, NULL);
	DIR *d = opendir(dir);
	struct dirent *e;
	char **ids = NULL;
	size_t n = 0, cap = 0;

	free(dir);
	*n_r = 0;
	if (d == NULL)
		return NULL;
	while ((e = readdir(d)) != NULL) {
		if (!queue_id_valid(e->d_name))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			ids = xrealloc(ids, cap * sizeof(*ids));
		}
		ids[n++] = xstrdup(e->d_name);
	}
	closedir(d);
	if (n > 0)
		qsort(ids, n, sizeof(*ids), cmp_str);
	*n_r = n;
	return ids;
}

static void free_ids(char **ids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
}

/* The envelope only (a listing need not read the message) and the file's
 * size: 0, or -1 with a sentence in err. */
static int read_envelope(const char *path, struct queue_envelope *env,
			 long long *size_r, struct str *err)
{
	struct queue_reader *r = queue_reader_new();
	const struct queue_envelope *e;
	const char *why = NULL;
	char buf[8192];
	bool done = false, first = true;
	struct stat sb;
	ssize_t n = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	*size_r = -1;
	if (fd < 0)
		why = strerror(errno);
	while (why == NULL && !done && (n = read(fd, buf, sizeof(buf))) > 0) {
		/* Queue files never change: a short first read is all. */
		if (first && (size_t)n < sizeof(buf))
			*size_r = n;
		first = false;
		const char *pos = buf, *end = buf + n, *data;
		size_t len;

		while (why == NULL && !done && pos < end) {
			int ev = queue_reader_feed(r, &pos, end, &data, &len,
						   &why);

			done = ev == QUEUE_READ_ENVELOPE;
		}
	}
	if (why == NULL && !done)
		why = n < 0 ? strerror(errno) : "no complete envelope";
	if (fd >= 0 && *size_r < 0 && fstat(fd, &sb) == 0)
		*size_r = (long long)sb.st_size;
	if (fd >= 0)
		close(fd);
	if (why != NULL) {
		STR_TRY(str_printf(err, "%s", why));
		queue_reader_free(&r);
		return -1;
	}
	e = queue_reader_envelope(r);
	env->arrival_sec = e->arrival_sec;
	env->sender = xstrdup(e->sender != NULL ? e->sender : "");
	for (size_t i = 0; i < e->nrcpts; i++)
		queue_envelope_add_rcpt(env, e->rcpts[i].address, NULL, NULL);
	queue_reader_free(&r);
	return 0;
}

/* "recipients": each recipient's address and state; full: with its DSN
 * options (queue show). */
static void json_recipients(struct json *j, const struct queue_envelope *e,
			    const struct qstate *st, bool full)
{
	json_key(j, "recipients");
	json_array_begin(j);
	for (size_t i = 0; i < e->nrcpts; i++) {
		json_object_begin(j);
		json_kv_cstring(j, "address", e->rcpts[i].address);
		if (full) {
			json_kv_cstring(j, "notify", e->rcpts[i].notify);
			json_kv_cstring(j, "orcpt", e->rcpts[i].orcpt);
		}
		json_kv_bool(j, "done", st->rcpts[i].done);
		json_kv_cstring(j, "error", st->rcpts[i].error);
		json_object_end(j);
	}
	json_array_end(j);
}

/* One message of a listing: read by a worker thread, printed in order. */
struct list_item {
	const char *folder;
	char *id;
	struct queue_envelope env;
	struct qstate st;
	long long size;
	bool ok;
	char *error;		/* !ok: why */
};

static void list_load(const struct ctl *ctl, struct list_item *it)
{
	struct str *err = str_new(128, 4096);
	char *path = qpath(ctl, it->folder, it->id, NULL);
	char *spath = qpath(ctl, it->folder, it->id, QSTATE_SUFFIX);

	memset(&it->env, 0, sizeof(it->env));
	it->ok = read_envelope(path, &it->env, &it->size, err) == 0;
	if (!it->ok) {
		it->error = xstrdup(str_c(err));
		qstate_init(&it->st, 0);
	} else if (qstate_read(spath, &it->st, it->env.nrcpts, err) < 0) {
		str_clear(err);		/* listed without its state */
	}
	str_free(&err);
	free(path);
	free(spath);
}

static void list_print(const struct list_item *it, struct json *j)
{
	const struct queue_envelope *env = &it->env;
	const struct qstate *st = &it->st;

	if (j != NULL) {
		json_object_begin(j);
		json_kv_cstring(j, "id", it->id);
		json_kv_cstring(j, "folder", it->folder);
		json_kv_int(j, "size", it->size);
		if (!it->ok) {
			json_kv_cstring(j, "error", it->error);
		} else {
			json_kv_int(j, "arrival", env->arrival_sec);
			json_kv_cstring(j, "sender", env->sender);
			json_kv_int(j, "attempts", st->attempts);
			json_kv_int(j, "next_try", st->next_try);
			json_recipients(j, env, st, false);
		}
		json_object_end(j);
	} else if (!it->ok) {
		printf("%-16s %-8s %8lld  (unreadable: %s)\n", it->id,
		       it->folder, it->size, it->error);
	} else {
		char when[32];
		time_t t = (time_t)env->arrival_sec;
		struct tm tm;

		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S",
			 gmtime_r(&t, &tm));
		printf("%-16s %-8s %8lld  %s  <%s>\n", it->id, it->folder,
		       it->size, when, env->sender);
		for (size_t i = 0; i < env->nrcpts; i++) {
			if (st->rcpts[i].done)
				continue;
			printf("%45s<%s>%s%s%s\n", "", env->rcpts[i].address,
			       st->rcpts[i].error ? " (" : "",
			       st->rcpts[i].error ? st->rcpts[i].error : "",
			       st->rcpts[i].error ? ")" : "");
		}
	}
}

static void list_item_clear(struct list_item *it)
{
	qstate_clear(&it->st);
	queue_envelope_clear(&it->env);
	free(it->error);
	free(it->id);
}

/* The files are read by LIST_THREADS threads (the work is system calls:
 * open, read, close of two small files per message), each a contiguous
 * share of the items. */
#define LIST_THREADS 4

struct list_share {
	const struct ctl *ctl;
	struct list_item *items;
	size_t from, to;
};

static void list_share_load(void *arg)
{
	struct list_share *sh = arg;

	for (size_t i = sh->from; i < sh->to; i++)
		list_load(sh->ctl, &sh->items[i]);
}

static void list_load_all(const struct ctl *ctl, struct list_item *items,
			  size_t n)
{
	struct list_share shares[LIST_THREADS];
	uv_thread_t threads[LIST_THREADS];
	bool started[LIST_THREADS] = { false };
	size_t per = (n + LIST_THREADS - 1) / LIST_THREADS;

	for (size_t t = 0; t < LIST_THREADS; t++) {
		shares[t].ctl = ctl;
		shares[t].items = items;
		shares[t].from = t * per < n ? t * per : n;
		shares[t].to = (t + 1) * per < n ? (t + 1) * per : n;
		/* A thread that cannot start: this one does its share. */
		if (shares[t].from < shares[t].to && t > 0)
			started[t] = uv_thread_create(&threads[t],
						      list_share_load,
						      &shares[t]) == 0;
	}
	list_share_load(&shares[0]);
	for (size_t t = 1; t < LIST_THREADS; t++) {
		if (started[t])
			uv_thread_join(&threads[t]);
		else
			list_share_load(&shares[t]);
	}
}

static int queue_list(struct ctl *ctl)
{
	struct str *out = NULL;
	struct json *j = ctl->json ? ctl_json_start(&out) : NULL;
	struct list_item *items = NULL;
	size_t total = 0, cap = 0;

	for (size_t f = 0; f < TERN_NELEM(folders); f++) {
		size_t n;
		char **ids = folder_ids(ctl, folders[f], &n);

		if (total + n > cap) {
			cap = total + n;
			items = xrealloc(items, cap * sizeof(*items));
		}
		for (size_t i = 0; i < n; i++) {
			memset(&items[total + i], 0, sizeof(*items));
			items[total + i].folder = folders[f];
			items[total + i].id = ids[i];	/* the item owns it */
		}
		total += n;
		free(ids);
	}
	list_load_all(ctl, items, total);
	if (j != NULL)
		json_array_begin(j);
	for (size_t i = 0; i < total; i++) {
		list_print(&items[i], j);
		list_item_clear(&items[i]);
	}
	free(items);
	if (j != NULL) {
		json_array_end(j);
		return ctl_json_done(&j, &out);
	}
	if (total == 0)
		printf("queue is empty\n");
	else
		printf("-- %zu message%s\n", total, total == 1 ? "" : "s");
	return 0;
}

/* The folder holding id, or NULL. */
static const char *find(const struct ctl *ctl, const char *id)
{
	for (size_t f = 0; f < TERN_NELEM(folders); f++) {
		char *p = qpath(ctl, folders[f], id, NULL);
		bool there = access(p, F_OK) == 0;

		free(p);
		if (there)
			return folders[f];
	}
	return NULL;
}

/* Moves id (state first) from one folder to another. */
static int move(const struct ctl *ctl, const char *id, const char *from,
		const char *to)
{
	char *a = qpath(ctl, from, id, QSTATE_SUFFIX);
	char *b = qpath(ctl, to, id, QSTATE_SUFFIX);
	int r;

	if (rename(a, b) < 0 && errno != ENOENT)
		fprintf(stderr, "ternctl: %s: %s\n", a, strerror(errno));
	free(a);
	free(b);
	a = qpath(ctl, from, id, NULL);
	b = qpath(ctl, to, id, NULL);
	r = rename(a, b);
	if (r < 0)
		fprintf(stderr, "ternctl: %s: %s\n", a, strerror(errno));
	free(a);
	free(b);
	return r;
}

static int remove_one(const struct ctl *ctl, const char *id,
		      const char *folder)
{
	char *p = qpath(ctl, folder, id, NULL);
	char *s = qpath(ctl, folder, id, QSTATE_SUFFIX);
	int r = unlink(p);

	if (r < 0)
		fprintf(stderr, "ternctl: %s: %s\n", p, strerror(errno));
	(void)unlink(s);
	free(p);
	free(s);
	return r;
}

static int queue_delete(struct ctl *ctl, const char *id)
{
	const char *f;
	size_t done = 0, busy = 0;

	if (strcmp(id, "ALL") == 0) {
		for (size_t k = 0; k < TERN_NELEM(folders); k++) {
			size_t n;
			char **ids = folder_ids(ctl, folders[k], &n);

			for (size_t i = 0; i < n; i++) {
				if (strcmp(folders[k], "active") == 0)
					busy++;
				else if (remove_one(ctl, ids[i],
						    folders[k]) == 0)
					done++;
			}
			free_ids(ids, n);
		}
		printf("deleted %zu message%s", done, done == 1 ? "" : "s");
		if (busy > 0)
			printf(" (%zu being delivered left alone)", busy);
		printf("\n");
		return 0;
	}
	f = find(ctl, id);
	if (f == NULL) {
		fprintf(stderr, "ternctl: %s: no such message\n", id);
		return 1;
	}
	if (strcmp(f, "active") == 0) {
		fprintf(stderr, "ternctl: %s is being delivered; try again\n",
			id);
		return 1;
	}
	if (remove_one(ctl, id, f) < 0)
		return 1;
	printf("%s: deleted\n", id);
	return 0;
}

static int queue_hold(struct ctl *ctl, const char *id, bool hold)
{
	const char *f = find(ctl, id);

	if (f == NULL) {
		fprintf(stderr, "ternctl: %s: no such message\n", id);
		return 1;
	}
	if (hold && strcmp(f, "hold") == 0) {
		printf("%s: already held\n", id);
		return 0;
	}
	if (hold && strcmp(f, "active") == 0) {
		fprintf(stderr, "ternctl: %s is being delivered; try again\n",
			id);
		return 1;
	}
	if (!hold && strcmp(f, "hold") != 0) {
		fprintf(stderr, "ternctl: %s is not held\n", id);
		return 1;
	}
	if (move(ctl, id, f, hold ? "hold" : "incoming") < 0)
		return 1;
	printf("%s: %s\n", id, hold ? "held" : "released");
	return 0;
}

/* ---- show ---- */

static void time_text(int64_t sec, char *buf, size_t size)
{
	time_t t = (time_t)sec;
	struct tm tm;

	strftime(buf, size, "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&t, &tm));
}

static const char *or_empty(const char *s)
{
	return s != NULL ? s : "";
}

static void show_json(struct json *j, const char *id, const char *folder,
		      const struct queue_envelope *e, const struct qstate *st,
		      const struct str *msg)
{
	json_object_begin(j);
	json_kv_cstring(j, "id", id);
	json_kv_cstring(j, "folder", folder);
	json_kv_int(j, "arrival", e->arrival_sec);
	json_kv_cstring(j, "client_address", e->client_addr);
	json_kv_cstring(j, "client_name", e->client_name);
	json_kv_cstring(j, "helo", e->helo);
	json_kv_cstring(j, "protocol", e->protocol);
	json_kv_cstring(j, "auth", e->auth);
	json_kv_cstring(j, "tls", e->tls);
	json_kv_cstring(j, "sender", e->sender);
	json_kv_cstring(j, "body", e->body);
	json_kv_bool(j, "smtputf8", e->smtputf8);
	json_kv_cstring(j, "ret", e->ret);
	json_kv_cstring(j, "envid", e->envid);
	json_kv_int(j, "attempts", st->attempts);
	json_kv_int(j, "next_try", st->next_try);
	json_kv_bool(j, "delay_notice_sent", st->warned);
	json_recipients(j, e, st, true);
	json_kv_int(j, "size", (int64_t)str_len(msg));
	json_key(j, "message");
	json_string(j, str_c(msg), str_len(msg));
	json_object_end(j);
}

static void show_text(const char *id, const char *folder,
		      const struct queue_envelope *e, const struct qstate *st,
		      const struct str *msg)
{
	char when[40];

	time_text(e->arrival_sec, when, sizeof(when));
	printf("id:         %s (%s)\n", id, folder);
	printf("arrival:    %s\n", when);
	if (e->client_addr != NULL)
		printf("client:     %s[%s], helo=<%s>, protocol=%s\n",
		       or_empty(e->client_name), e->client_addr,
		       or_empty(e->helo), or_empty(e->protocol));
	if (e->auth != NULL)
		printf("auth:       %s\n", e->auth);
	if (e->tls != NULL)
		printf("tls:        %s\n", e->tls);
	printf("sender:     <%s>%s%s%s%s%s%s\n", e->sender,
	       e->body != NULL ? " body=" : "", or_empty(e->body),
	       e->smtputf8 ? " smtputf8" : "",
	       e->ret != NULL ? " ret=" : "", or_empty(e->ret),
	       e->envid != NULL ? " envid" : "");
	if (e->envid != NULL)
		printf("envid:      %s\n", e->envid);
	printf("attempts:   %u", st->attempts);
	if (st->next_try > 0) {
		time_text(st->next_try, when, sizeof(when));
		printf(", next try %s", when);
	}
	printf("%s\n", st->warned ? ", delay notice sent" : "");
	for (size_t i = 0; i < e->nrcpts; i++) {
		printf("recipient:  <%s>", e->rcpts[i].address);
		if (e->rcpts[i].notify != NULL)
			printf(" notify=%s", e->rcpts[i].notify);
		if (e->rcpts[i].orcpt != NULL)
			printf(" orcpt=%s", e->rcpts[i].orcpt);
		printf(" %s%s%s\n", st->rcpts[i].done ? "(delivered)" :
		       st->rcpts[i].error != NULL ? "(deferred: " : "(pending)",
		       st->rcpts[i].done ? "" : or_empty(st->rcpts[i].error),
		       !st->rcpts[i].done && st->rcpts[i].error != NULL ?
		       ")" : "");
	}
	printf("-- message, %zu bytes\n", str_len(msg));
	fwrite(str_c(msg), 1, str_len(msg), stdout);
	if (str_len(msg) > 0 && str_c(msg)[str_len(msg) - 1] != '\n')
		printf("\n");
}

static int queue_show(struct ctl *ctl, const char *id)
{
	const char *f = find(ctl, id);
	struct queue_envelope env;
	struct qstate st;
	struct str *msg, *err;
	char *path, *spath;
	int rc = 0;

	if (f == NULL) {
		fprintf(stderr, "ternctl: %s: no such message\n", id);
		return 1;
	}
	memset(&env, 0, sizeof(env));
	msg = str_new(4096, (size_t)4 << 30);
	err = str_new(128, 4096);
	path = qpath(ctl, f, id, NULL);
	spath = qpath(ctl, f, id, QSTATE_SUFFIX);
	memset(&st, 0, sizeof(st));	/* qstate_read sets it up */
	if (queue_file_read(path, &env, msg, err) < 0) {
		fprintf(stderr, "ternctl: %s: %s\n", id, str_c(err));
		rc = 1;
	} else if (qstate_read(spath, &st, env.nrcpts, err) < 0) {
		fprintf(stderr, "ternctl: %s: state: %s\n", id, str_c(err));
		rc = 1;
	} else if (ctl->json) {
		struct str *out = NULL;
		struct json *j = ctl_json_start(&out);

		show_json(j, id, f, &env, &st, msg);
		rc = ctl_json_done(&j, &out);
	} else {
		show_text(id, f, &env, &st, msg);
	}
	qstate_clear(&st);
	queue_envelope_clear(&env);
	str_free(&msg);
	str_free(&err);
	free(path);
	free(spath);
	return rc;
}

/* ---- flush, requeue ---- */

/* flush ID: a deferred message to incoming/, tried at once. */
static int queue_flush_one(struct ctl *ctl, const char *id)
{
	const char *f = find(ctl, id);

	if (f == NULL) {
		fprintf(stderr, "ternctl: %s: no such message\n", id);
		return 1;
	}
	if (strcmp(f, "deferred") != 0) {
		fprintf(stderr, "ternctl: %s is not deferred (it is in %s)\n",
			id, f);
		return 1;
	}
	if (move(ctl, id, f, "incoming") < 0)
		return 1;
	printf("%s: retried now\n", id);
	return 0;
}

static int queue_requeue(struct ctl *ctl, const char *id)
{
	const char *f = find(ctl, id);
	struct queue_envelope env;
	struct qstate st;
	struct str *err;
	char *path, *spath;
	int rc = 1;

	if (f == NULL) {
		fprintf(stderr, "ternctl: %s: no such message\n", id);
		return 1;
	}
	if (strcmp(f, "deferred") != 0 && strcmp(f, "hold") != 0) {
		fprintf(stderr, "ternctl: %s is in %s: only deferred and held "
			"messages are requeued\n", id, f);
		return 1;
	}
	memset(&env, 0, sizeof(env));
	err = str_new(128, 4096);
	path = qpath(ctl, f, id, NULL);
	spath = qpath(ctl, f, id, QSTATE_SUFFIX);
	memset(&st, 0, sizeof(st));	/* qstate_read sets it up */
	if (queue_file_read(path, &env, NULL, err) < 0 ||
	    qstate_read(spath, &st, env.nrcpts, err) < 0) {
		fprintf(stderr, "ternctl: %s: %s\n", id, str_c(err));
		goto done;
	}
	st.attempts = 0;
	st.next_try = 0;
	st.warned = false;
	for (size_t i = 0; i < st.nrcpts; i++)
		qstate_set_error(&st, i, NULL);
	if (qstate_write(spath, &st, err) < 0) {
		fprintf(stderr, "ternctl: %s: %s\n", id, str_c(err));
		goto done;
	}
	if (move(ctl, id, f, "incoming") < 0)
		goto done;
	printf("%s: requeued\n", id);
	rc = 0;
done:
	qstate_clear(&st);
	queue_envelope_clear(&env);
	str_free(&err);
	free(path);
	free(spath);
	return rc;
}

static int queue_flush(struct ctl *ctl)
{
	char *p = qpath(ctl, "flush", NULL, NULL);
	int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0640);

	if (fd < 0) {
		fprintf(stderr, "ternctl: %s: %s\n", p, strerror(errno));
		free(p);
		return 1;
	}
	close(fd);
	free(p);
	printf("flush requested: deferred messages are retried now\n");
	return 0;
}

int ctl_queue(struct ctl *ctl, int argc, char **argv)
{
	const char *usage = "usage: ternctl queue list [--json] | show ID "
			    "[--json] | flush [ID] | delete ID|ALL | hold ID "
			    "| release ID | requeue ID\n";
	bool json = false;
	int n = 0;
	char *args[4];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else if (n < 4)
			args[n++] = argv[i];
		else
			n = 5;
	}
	if (json)
		ctl->json = 1;
	if (n == 1 && strcmp(args[0], "list") == 0)
		return queue_list(ctl);
	if (n == 1 && strcmp(args[0], "flush") == 0)
		return queue_flush(ctl);
	if (n == 2 && strcmp(args[0], "flush") == 0 && queue_id_valid(args[1]))
		return queue_flush_one(ctl, args[1]);
	if (n == 2 && strcmp(args[0], "show") == 0 && queue_id_valid(args[1]))
		return queue_show(ctl, args[1]);
	if (n == 2 && strcmp(args[0], "requeue") == 0 &&
	    queue_id_valid(args[1]))
		return queue_requeue(ctl, args[1]);
	if (n == 2 && strcmp(args[0], "delete") == 0 &&
	    (strcmp(args[1], "ALL") == 0 || queue_id_valid(args[1])))
		return queue_delete(ctl, args[1]);
	if (n == 2 && strcmp(args[0], "hold") == 0 && queue_id_valid(args[1]))
		return queue_hold(ctl, args[1], true);
	if (n == 2 && strcmp(args[0], "release") == 0 &&
	    queue_id_valid(args[1]))
		return queue_hold(ctl, args[1], false);
	fputs(usage, stderr);
	return 2;
}
