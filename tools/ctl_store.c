/*
 * ctl_store.c: the mailbox store from ternctl.
 *
 *   ternctl store check [ACCOUNT] [--repair]
 *   ternctl mailbox ls ACCOUNT [FOLDER]
 *   ternctl mailbox cat ACCOUNT FOLDER UID
 *
 * store check works on the files, with tern-stored stopped: it opens the
 * metadata (stored/meta.h) and the blob folder (stored/blob.h) itself and
 * takes the store's lock, so it refuses with a clear message while
 * tern-stored runs (the store is the only writer of its files; a check
 * that raced it would report changes in flight as damage).  It reports
 * blob files without a row, rows whose file is missing, reference counts
 * that differ from the messages, quota usage that differs from the sum of
 * the messages, unreferenced blobs and spool files older than a day; with
 * --repair it fixes them in one transaction and removes files only after
 * the commit.  ACCOUNT (an address or the numeric id) limits the quota
 * check; blobs are shared between accounts and always checked in full.
 * Exit: 0 nothing found (or all repaired), 1 problems left or an error,
 * 2 usage.
 *
 * mailbox talks to the running tern-stored (run/stored.sock) with the
 * blocking client (storeclient.h); the account id comes from the
 * directory (dir.h, opened read-only).  cat prints the message file the
 * store names, as the access daemons read it.
 *
 * Run as root, both switch to the daemon user (the user option), so any
 * file they create belongs to it: check before it opens anything, mailbox
 * right after connecting to the store's socket.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "blob.h"
#include "cfg.h"
#include "dir.h"
#include "meta.h"
#include "storeclient.h"
#include "str.h"
#include "ternctl.h"
#include "xalloc.h"

#define STORE_TIMEOUT_MS 30000
#define STORE_SOCKET "run/stored.sock"
#define SUBJECT_MAX 200		/* bytes of a subject shown by ls */

/* ---- shared: configuration and user ---- */

/* Loads tern.conf; with drop, switches to the daemon user too. */
static int load_config(struct ctl *ctl, int drop, struct cfg **cfg_r)
{
	struct str *err = str_new(256, 4096);
	char *conf = ctl_path(ctl, "conf/tern.conf");
	int r = cfg_load(ctl->root, conf, ctl_warn, NULL, cfg_r, err);

	if (r < 0)
		fprintf(stderr, "ternctl: %s\n", str_c(err));
	free(conf);
	str_free(&err);
	if (r == 0 && drop && ctl_become_user(cfg_str(*cfg_r, OPT_USER)) < 0)
		r = -1;
	if (r == 0)
		umask(027);
	return r;
}

/* ---- store check ---- */

struct check {
	struct meta *m;
	struct blob_store *bs;
	struct str *err, *path;
	int repair;
	unsigned problems;
	char **files;		/* blob files on disk, sorted */
	size_t nfiles;
	char **doomed;		/* files to remove after the commit */
	size_t ndoomed;
	unsigned char *known;	/* per file: the metadata knows it */
};

static int cmp_hex(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int file_add(const char *hex, void *ctx)
{
	struct check *c = ctx;

	c->files = xrealloc(c->files, (c->nfiles + 1) * sizeof(*c->files));
	c->files[c->nfiles++] = xstrdup(hex);
	return 0;
}

/* Index of hex among the files on disk, or -1. */
static long file_find(const struct check *c, const char *hex)
{
	size_t lo = 0, hi = c->nfiles;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int d = strcmp(c->files[mid], hex);

		if (d == 0)
			return (long)mid;
		if (d < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static void doom(struct check *c, const char *hex)
{
	c->doomed = xrealloc(c->doomed, (c->ndoomed + 1) * sizeof(*c->doomed));
	c->doomed[c->ndoomed++] = xstrdup(hex);
}

static const char *blob_file(struct check *c, const char *hex)
{
	str_clear(c->path);
	if (blob_path(c->bs, hex, c->path) < 0)
		return hex;
	return str_c(c->path);
}

static const char *fixed(const struct check *c, const char *what)
{
	return c->repair ? what : "";
}

static int print_user(const struct meta_blob_user *u, void *ctx)
{
	printf("  %s (account %" PRId64 ") %s uid %" PRIu32 "\n", u->address,
	       u->account, u->folder, u->uid);
	return 0;
}

/* One blob the metadata knows, against the files on disk. */
static int check_blob(const char *hex, int64_t refcount, int64_t messages,
		      void *ctx)
{
	struct check *c = ctx;
	long at = file_find(c, hex);

	if (at >= 0)
		c->known[at] = 1;
	if (messages > 0 && at < 0) {
		c->problems++;
		printf("missing blob file: %s, named by %" PRId64
		       " message(s)%s\n", blob_file(c, hex), messages,
		       fixed(c, ": messages expunged"));
		if (meta_blob_users(c->m, hex, print_user, c, c->err) < 0)
			return -1;
		return c->repair ? meta_blob_drop(c->m, hex, c->err) : 0;
	}
	if (refcount != messages) {
		c->problems++;
		printf("bad reference count: blob %s counts %" PRId64
		       ", %" PRId64 " message(s) name it%s\n", hex, refcount,
		       messages, fixed(c, ": fixed"));
		if (c->repair && meta_blob_set_refs(c->m, hex, messages, 0,
						    c->err) < 0)
			return -1;
	}
	if (messages == 0 && refcount == 0) {
		c->problems++;
		printf("unreferenced blob: %s%s\n", at >= 0 ?
		       blob_file(c, hex) : hex, fixed(c, ": removed"));
	}
	if (messages == 0 && at >= 0 && c->repair)
		doom(c, hex);
	return 0;
}

static int check_usage(const struct meta_usage *u, void *ctx)
{
	struct check *c = ctx;

	if (u->used == u->real_used && u->messages == u->real_messages)
		return 0;
	c->problems++;
	printf("quota usage: %s (account %" PRId64 ") records %" PRIu64
	       " bytes in %" PRIu64 " message(s), its messages add up to %"
	       PRIu64 " bytes in %" PRIu64 "%s\n", u->address, u->account,
	       u->used, u->messages, u->real_used, u->real_messages,
	       fixed(c, ": fixed"));
	if (c->repair && meta_usage_set(c->m, u->account, u->real_used,
					u->real_messages, c->err) < 0)
		return -1;
	return 0;
}

static int check_spool(const char *path, int64_t age, void *ctx)
{
	struct check *c = ctx;

	c->problems++;
	printf("stale spool file: %s (%" PRId64 " hours old)%s\n", path,
	       age / 3600, fixed(c, ": removed"));
	return 0;
}

/* Files without any row: reported, and removed after the commit. */
static void check_orphans(struct check *c)
{
	for (size_t i = 0; i < c->nfiles; i++) {
		if (c->known[i])
			continue;
		c->problems++;
		printf("orphan blob file: %s (no metadata row)%s\n",
		       blob_file(c, c->files[i]), fixed(c, ": removed"));
		if (c->repair)
			doom(c, c->files[i]);
	}
}

/* After the commit: the doomed files, then the rows left at 0. */
static int check_cleanup(struct check *c)
{
	for (size_t i = 0; i < c->ndoomed; i++)
		if (blob_remove(c->bs, c->doomed[i], c->err) < 0)
			return -1;
	if (meta_begin(c->m, c->err) < 0)
		return -1;
	if (meta_blobs_forget_unreferenced(c->m, c->err) < 0 ||
	    meta_commit(c->m, c->err) < 0) {
		meta_rollback(c->m);
		return -1;
	}
	return 0;
}

static int check_account(struct check *c, const char *arg, int64_t *id_r)
{
	char *end;
	int r;

	*id_r = 0;
	if (arg == NULL)
		return 0;
	errno = 0;
	*id_r = strtoll(arg, &end, 10);
	if (errno == 0 && *end == '\0' && *id_r > 0)
		return 0;
	r = meta_account_find(c->m, arg, id_r, c->err);
	if (r == META_ENOTFOUND)
		str_setf(c->err, "no account %s in the store", arg);
	return r < 0 ? -1 : 0;
}

static int check_run(struct check *c, const char *account)
{
	int64_t id;

	if (blob_scan(c->bs, file_add, c, c->err) < 0)
		return -1;
	if (c->nfiles > 0)
		qsort(c->files, c->nfiles, sizeof(*c->files), cmp_hex);
	c->known = xcalloc(c->nfiles + 1, 1);
	if (blob_spool_stale(c->bs, BLOB_SPOOL_STALE_SECS, c->repair,
			     check_spool, c, c->err) < 0 ||
	    meta_begin(c->m, c->err) < 0)
		return -1;
	if (check_account(c, account, &id) < 0 ||
	    meta_check_blobs(c->m, check_blob, c, c->err) < 0 ||
	    meta_check_usage(c->m, id, check_usage, c, c->err) < 0) {
		meta_rollback(c->m);
		return -1;
	}
	check_orphans(c);
	if (!c->repair) {
		meta_rollback(c->m);
		return 0;
	}
	if (meta_commit(c->m, c->err) < 0) {
		meta_rollback(c->m);
		return -1;
	}
	return check_cleanup(c);
}

static void check_free(struct check *c)
{
	for (size_t i = 0; i < c->nfiles; i++)
		free(c->files[i]);
	for (size_t i = 0; i < c->ndoomed; i++)
		free(c->doomed[i]);
	free(c->files);
	free(c->doomed);
	free(c->known);
	meta_close(&c->m);
	blob_store_free(&c->bs);
	str_free(&c->err);
	str_free(&c->path);
}

static int store_check(struct ctl *ctl, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "repair", no_argument, NULL, 'R' },
		{ NULL, 0, NULL, 0 },
	};
	struct check c = { .err = str_new(256, 4096),
			   .path = str_new(256, 8192) };
	struct cfg *cfg = NULL;
	int opt, r = 1;

	optind = 0;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt != 'R') {
			check_free(&c);
			fprintf(stderr, "usage: ternctl store check [ACCOUNT] "
				"[--repair]\n");
			return 2;
		}
		c.repair = 1;
	}
	if (argc - optind > 1) {
		check_free(&c);
		fprintf(stderr, "usage: ternctl store check [ACCOUNT] "
			"[--repair]\n");
		return 2;
	}
	if (load_config(ctl, 1, &cfg) < 0)
		goto out;
	if (blob_store_open(cfg_str(cfg, OPT_STORE_DIR), &c.bs, c.err) < 0 ||
	    meta_open(cfg_str(cfg, OPT_STORE_META_FILE), &c.m, c.err) < 0 ||
	    check_run(&c, optind < argc ? argv[optind] : NULL) < 0) {
		fprintf(stderr, "ternctl: store check: %s\n", str_c(c.err));
		if (strstr(str_c(c.err), "in use") != NULL)
			fprintf(stderr, "ternctl: store check works on a "
				"stopped store: run ternctl stop first\n");
		goto out;
	}
	if (c.problems == 0)
		printf("store check: no problems found\n");
	else if (c.repair)
		printf("store check: %u problem(s) found and repaired\n",
		       c.problems);
	else
		printf("store check: %u problem(s) found; run ternctl store "
		       "check --repair to fix them\n", c.problems);
	r = c.problems == 0 || c.repair ? 0 : 1;
out:
	check_free(&c);
	cfg_free(&cfg);
	return r;
}

int ctl_store(struct ctl *ctl, int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "check") == 0)
		return store_check(ctl, argc - 1, argv + 1);
	fprintf(stderr, "usage: ternctl store check [ACCOUNT] [--repair]\n");
	return 2;
}

/* ---- mailbox ---- */

struct mbox {
	struct cfg *cfg;
	struct store_client *sc;
	struct store_account acct;
	char *address;
	struct str *text;
};

/* The account's id from the directory (read-only). */
static int mbox_account(struct mbox *b, const char *address)
{
	struct str *err = str_new(256, 4096);
	struct dir_account *a = NULL;
	struct dir *dir = NULL;
	int r = -1;

	if (dir_open_config(b->cfg, true, &dir, err) != DIR_OK ||
	    dir_account_get(dir, address, &a, err) != DIR_OK) {
		fprintf(stderr, "ternctl: %s\n", str_c(err));
	} else {
		b->acct.id = a->id;
		b->address = xstrdup(a->address);
		b->acct.address = b->address;
		r = 0;
	}
	dir_account_free(&a);
	dir_close(&dir);
	str_free(&err);
	return r;
}

static int mbox_open(struct ctl *ctl, struct mbox *b, const char *address)
{
	char *sock = ctl_path(ctl, STORE_SOCKET);
	const char *error;
	int r = -1;

	/* The socket may be reachable by root only: connect first. */
	if (load_config(ctl, 0, &b->cfg) < 0)
		goto out;
	b->sc = store_client_new((size_t)cfg_size(b->cfg, OPT_IPC_FRAME_MAX),
				 STORE_TIMEOUT_MS);
	if (store_client_connect(b->sc, sock, &error) < 0) {
		fprintf(stderr, "ternctl: tern-stored at %s: %s (is it "
			"running?)\n", sock, error);
		goto out;
	}
	if (ctl_become_user(cfg_str(b->cfg, OPT_USER)) < 0 ||
	    mbox_account(b, address) < 0)
		goto out;
	r = 0;
out:
	free(sock);
	return r;
}

static void mbox_close(struct mbox *b)
{
	store_client_free(&b->sc);
	cfg_free(&b->cfg);
	free(b->address);
	str_free(&b->text);
}

/* Appends a space (unless first) and word; -1 when out is full. */
static int append_word(struct str *out, const char *word)
{
	if (str_len(out) > 0 && str_append_byte(out, ' ') < 0)
		return -1;
	return str_append_c(out, word) < 0 ? -1 : 0;
}

static const char *flag_text(unsigned flags, const char *keywords,
			     struct str *out)
{
	static const struct {
		unsigned bit;
		const char *name;
	} names[] = {
		{ STORE_SEEN, "\\Seen" }, { STORE_ANSWERED, "\\Answered" },
		{ STORE_FLAGGED, "\\Flagged" }, { STORE_DELETED, "\\Deleted" },
		{ STORE_DRAFT, "\\Draft" },
	};
	int r = 0;

	str_clear(out);
	for (size_t i = 0; i < TERN_NELEM(names); i++)
		if (flags & names[i].bit)
			r |= append_word(out, names[i].name);
	if (keywords[0] != '\0')
		r |= append_word(out, keywords);
	return r != 0 ? "?" : str_len(out) > 0 ? str_c(out) : "-";
}

/* Appends c to out (a control byte as '?'); a full out stays cut. */
static void put_shown(struct str *out, unsigned char c)
{
	if (out != NULL && str_append_byte(out, c < 0x20 ? '?' : c) < 0)
		return;
}

/* Skips one IMAP nstring at *p (quoted, literal or NIL); with out, appends
 * its value (control bytes as '?').  -1 when malformed. */
static int nstring(const char **p, struct str *out)
{
	const char *s = *p;
	char *end;
	unsigned long n;

	while (*s == ' ')
		s++;
	if (strncmp(s, "NIL", 3) == 0) {
		*p = s + 3;
		return 0;
	}
	if (*s == '{') {
		n = strtoul(s + 1, &end, 10);
		if (end[0] != '}' || end[1] != '\r' || end[2] != '\n' ||
		    strnlen(end + 3, n) < n)
			return -1;
		for (size_t i = 0; i < n; i++)
			put_shown(out, (unsigned char)end[3 + i]);
		*p = end + 3 + n;
		return 0;
	}
	if (*s++ != '"')
		return -1;
	for (; *s != '"'; s++) {
		if (*s == '\0')
			return -1;
		if (*s == '\\' && s[1] != '\0')
			s++;
		put_shown(out, (unsigned char)*s);
	}
	*p = s + 1;
	return 0;
}

/* The subject: the second field of the cached ENVELOPE. */
static const char *subject_of(const char *envelope, struct str *out)
{
	const char *p = envelope;

	str_clear(out);
	if (p == NULL || *p++ != '(' || nstring(&p, NULL) < 0 ||
	    nstring(&p, out) < 0)
		return "";
	return str_c(out);
}

/* Folders of folder.list, kept: one request at a time on the client. */
struct folder_names {
	char **name, **use;
	size_t n;
};

static int ls_folder(const struct store_folder *f, void *ctx)
{
	struct folder_names *fn = ctx;

	fn->name = xrealloc(fn->name, (fn->n + 1) * sizeof(*fn->name));
	fn->use = xrealloc(fn->use, (fn->n + 1) * sizeof(*fn->use));
	fn->name[fn->n] = xstrdup(f->name);
	fn->use[fn->n] = xstrdup(f->special_use[0] != '\0' ?
				 f->special_use : "-");
	fn->n++;
	return 0;
}

static int ls_folders(struct mbox *b)
{
	struct folder_names fn = { NULL, NULL, 0 };
	struct store_status st;
	const char *error;
	int r = 0;

	if (store_folder_list(b->sc, &b->acct, ls_folder, &fn, &error) < 0) {
		fprintf(stderr, "ternctl: %s\n", error);
		r = 1;
	}
	printf("%-24s %-9s %8s %8s %12s\n", "FOLDER", "USE", "MESSAGES",
	       "UNSEEN", "BYTES");
	for (size_t i = 0; r == 0 && i < fn.n; i++) {
		if (store_status(b->sc, &b->acct, fn.name[i], &st,
				 &error) < 0) {
			fprintf(stderr, "ternctl: %s: %s\n", fn.name[i], error);
			r = 1;
			break;
		}
		printf("%-24s %-9s %8" PRIu32 " %8" PRIu32 " %12" PRIu64 "\n",
		       fn.name[i], fn.use[i], st.exists, st.unseen, st.size);
	}
	for (size_t i = 0; i < fn.n; i++) {
		free(fn.name[i]);
		free(fn.use[i]);
	}
	free(fn.name);
	free(fn.use);
	return r;
}

static int ls_message(const struct store_message *m, void *ctx)
{
	struct mbox *b = ctx;
	struct str *flags = str_new(64, 8192);
	char date[32];
	struct tm tm;
	time_t t = (time_t)m->date;

	if (localtime_r(&t, &tm) == NULL ||
	    strftime(date, sizeof(date), "%Y-%m-%d %H:%M", &tm) == 0)
		str_lcpy(date, "?", sizeof(date));
	printf("%8" PRIu32 "  %-16s  %10" PRIu64 "  %-20s  %s\n", m->uid,
	       date, m->size, flag_text(m->flags, m->keywords, flags),
	       subject_of(m->envelope, b->text));
	str_free(&flags);
	return 0;
}

static int mailbox_ls(struct mbox *b, const char *folder)
{
	uint32_t next = 1;
	const char *error;

	b->text = str_new(256, SUBJECT_MAX);
	if (folder == NULL)
		return ls_folders(b);
	printf("%8s  %-16s  %10s  %-20s  %s\n", "UID", "DATE", "SIZE",
	       "FLAGS", "SUBJECT");
	while (next != 0) {
		if (store_fetch(b->sc, &b->acct, folder, next, UINT32_MAX, 0,
				ls_message, b, &next, &error) < 0) {
			fprintf(stderr, "ternctl: %s: %s\n", folder, error);
			return 1;
		}
	}
	return 0;
}

struct cat {
	uint32_t uid;
	char *path;
};

static int cat_found(const struct store_message *m, void *ctx)
{
	struct cat *c = ctx;

	if (m->uid == c->uid && c->path == NULL)
		c->path = xstrdup(m->blob);
	return 0;
}

static int copy_out(const char *path)
{
	char buf[65536];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC), r = 0;

	if (fd < 0) {
		fprintf(stderr, "ternctl: %s: %s\n", path, strerror(errno));
		return 1;
	}
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || fwrite(buf, 1, (size_t)n, stdout) != (size_t)n) {
			fprintf(stderr, "ternctl: %s: %s\n", path,
				strerror(errno));
			r = 1;
			break;
		}
	}
	close(fd);
	if (fflush(stdout) != 0)
		r = 1;
	return r;
}

static int mailbox_cat(struct mbox *b, const char *folder, const char *uid)
{
	struct cat c = { 0, NULL };
	unsigned long v;
	uint32_t next;
	const char *error;
	char *end;
	int r;

	errno = 0;
	v = strtoul(uid, &end, 10);
	if (errno != 0 || *end != '\0' || v == 0 || v >= UINT32_MAX ||
	    uid[0] == '-') {
		fprintf(stderr, "ternctl: bad UID '%s'\n", uid);
		return 2;
	}
	c.uid = (uint32_t)v;
	if (store_fetch(b->sc, &b->acct, folder, c.uid, c.uid, 1, cat_found,
			&c, &next, &error) < 0) {
		fprintf(stderr, "ternctl: %s: %s\n", folder, error);
		return 1;
	}
	if (c.path == NULL) {
		fprintf(stderr, "ternctl: no message with UID %s in %s\n",
			uid, folder);
		return 1;
	}
	r = copy_out(c.path);
	free(c.path);
	return r;
}

int ctl_mailbox(struct ctl *ctl, int argc, char **argv)
{
	struct mbox b = { 0 };
	int ls, r = 1;

	ls = argc >= 2 && strcmp(argv[1], "ls") == 0;
	if (!(ls && (argc == 3 || argc == 4)) &&
	    !(argc == 5 && strcmp(argv[1], "cat") == 0)) {
		fprintf(stderr, "usage:\n  ternctl mailbox ls ACCOUNT "
			"[FOLDER]\n  ternctl mailbox cat ACCOUNT FOLDER "
			"UID\n");
		return 2;
	}
	if (mbox_open(ctl, &b, argv[2]) == 0)
		r = ls ? mailbox_ls(&b, argc == 4 ? argv[3] : NULL) :
			 mailbox_cat(&b, argv[3], argv[4]);
	mbox_close(&b);
	return r;
}
