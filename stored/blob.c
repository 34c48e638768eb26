/* blob.c: see blob.h. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "compat.h"
#include "blob.h"
#include "fsutil.h"
#include "str.h"
#include "xalloc.h"

#define BLOB_DIR_MODE 0750
#define BLOB_READ_CHUNK (64 * 1024)
#define BLOB_SYNC_MAX 1024	/* directories remembered between syncs */
#define BLOB_SHARD_PARENTS 257	/* DIR and DIR/00 ... DIR/ff */

struct blob_store {
	char *dir;
	char *tmp;
	char *intent;
	int lock_fd;			/* flock'ed DIR/lock */
	int intent_fd;			/* DIR/intent, kept open */
	size_t intent_len;		/* bytes the last intent wrote */
	char *sync[BLOB_SYNC_MAX];	/* directories to fsync */
	size_t nsync;
	/* parents of shards blob_prepare_dirs() is creating: count of the
	 * threads between the mkdir and the fsync of the parent */
	pthread_mutex_t noted_lock;
	char *noted[BLOB_SHARD_PARENTS];
	unsigned noted_count[BLOB_SHARD_PARENTS];
	size_t nnoted;
	int flat;			/* DIR/ab/<hex>, not DIR/ab/cd/<hex> */
};

/* mkdir that reports whether it created the directory. */
static int mkdir_once(const char *path, int *created_r, struct str *error)
{
	*created_r = 0;
	if (mkdir(path, BLOB_DIR_MODE) == 0) {
		*created_r = 1;
		return 0;
	}
	if (errno == EEXIST)
		return 0;
	return str_setf(error, "mkdir %s: %s", path, strerror(errno));
}

static char *join(const char *a, const char *b)
{
	struct str *s = str_new(strlen(a) + strlen(b) + 2, 8192);
	char *r;

	if (str_printf(s, "%s/%s", a, b) < 0)
		abort();
	r = xstrdup(str_c(s));
	str_free(&s);
	return r;
}

static int is_shard(const char *name)
{
	return strlen(name) == 2 && strspn(name, "0123456789abcdef") == 2;
}

/* 1 when the store keeps its blobs two levels deep (DIR/ab/cd/<hex>, the
 * layout of stores created before the flat one): the first shard that
 * holds anything holds a shard directory rather than a blob. */
static int layout_nested(const char *dir)
{
	DIR *top = opendir(dir), *sub;
	struct str *p = str_new(256, 8192);
	struct dirent *a, *b;
	int nested = -1;

	while (top != NULL && nested < 0 && (a = readdir(top)) != NULL) {
		if (!is_shard(a->d_name))
			continue;
		str_clear(p);
		if (str_printf(p, "%s/%s", dir, a->d_name) < 0 ||
		    (sub = opendir(str_c(p))) == NULL)
			continue;
		while (nested < 0 && (b = readdir(sub)) != NULL) {
			if (is_shard(b->d_name))
				nested = 1;
			else if (blob_hex_valid(b->d_name))
				nested = 0;
		}
		closedir(sub);
	}
	if (top != NULL)
		closedir(top);
	str_free(&p);
	return nested == 1;
}

/* The 256 shards of a flat store, created ahead so that no delivery
 * waits for a mkdir; DIR is fsynced by the caller. */
static int make_flat_shards(struct blob_store *bs, struct str *error)
{
	struct str *p = str_new(256, 8192);
	int created, r = 0;

	for (unsigned i = 0; i < 256 && r == 0; i++) {
		str_clear(p);
		if (str_printf(p, "%s/%02x", bs->dir, i) < 0)
			abort();
		r = mkdir_once(str_c(p), &created, error);
	}
	str_free(&p);
	return r;
}

/* The one-writer lock; kept open (and locked) until the store is freed. */
static int store_lock(struct blob_store *bs, struct str *error)
{
	char *path = join(bs->dir, "lock");
	int r = 0;

	bs->lock_fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0640);
	if (bs->lock_fd < 0)
		r = str_setf(error, "open %s: %s", path, strerror(errno));
	else if (flock(bs->lock_fd, LOCK_EX | LOCK_NB) < 0)
		r = str_setf(error, errno == EWOULDBLOCK ?
			     "the store %s is in use by another process "
			     "(tern-stored is running)%s" :
			     "lock %s: %s", bs->dir,
			     errno == EWOULDBLOCK ? "" : strerror(errno));
	free(path);
	return r;
}

int blob_store_open(const char *dir, struct blob_store **bs_r,
		    struct str *error)
{
	struct blob_store *bs;
	struct stat st;
	int created, fd;

	if (mkdir_once(dir, &created, error) < 0)
		return -1;
	bs = xcalloc(1, sizeof(*bs));
	bs->lock_fd = -1;
	bs->intent_fd = -1;
	if (pthread_mutex_init(&bs->noted_lock, NULL) != 0)
		abort();
	bs->dir = xstrdup(dir);
	bs->tmp = join(dir, "tmp");
	bs->intent = join(dir, "intent");
	if (store_lock(bs, error) < 0 ||
	    mkdir_once(bs->tmp, &created, error) < 0)
		goto fail;
	bs->flat = !layout_nested(dir);
	if (bs->flat && make_flat_shards(bs, error) < 0)
		goto fail;
	fd = open(bs->intent, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0 || fstat(fd, &st) < 0) {
		str_setf(error, "open %s: %s", bs->intent, strerror(errno));
		if (fd >= 0)
			close(fd);
		goto fail;
	}
	bs->intent_fd = fd;
	bs->intent_len = (size_t)st.st_size;
	if (fsutil_sync_dir(bs->dir, error) < 0)
		goto fail;
	*bs_r = bs;
	return 0;
fail:
	blob_store_free(&bs);
	return -1;
}

void blob_store_free(struct blob_store **bsp)
{
	struct blob_store *bs = *bsp;

	if (bs == NULL)
		return;
	for (size_t i = 0; i < bs->nsync; i++)
		free(bs->sync[i]);
	for (size_t i = 0; i < bs->nnoted; i++)
		free(bs->noted[i]);
	pthread_mutex_destroy(&bs->noted_lock);
	free(bs->dir);
	free(bs->tmp);
	free(bs->intent);
	if (bs->lock_fd >= 0)
		close(bs->lock_fd);
	if (bs->intent_fd >= 0)
		close(bs->intent_fd);
	free(bs);
	*bsp = NULL;
}

const char *blob_store_dir(const struct blob_store *bs)
{
	return bs->dir;
}

const char *blob_store_tmp_dir(const struct blob_store *bs)
{
	return bs->tmp;
}

int blob_store_nested(const struct blob_store *bs)
{
	return !bs->flat;
}

int blob_hex_valid(const char *hex)
{
	size_t i;

	for (i = 0; i < BLOB_HEX_LEN; i++) {
		char c = hex[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return 0;
	}
	return hex[i] == '\0';
}

int blob_path(const struct blob_store *bs, const char *hex, struct str *out)
{
	if (bs->flat)
		return str_printf(out, "%s/%.2s/%s", bs->dir, hex, hex);
	return str_printf(out, "%s/%.2s/%.2s/%s", bs->dir, hex, hex + 2, hex);
}

int blob_spool_check(const struct blob_store *bs, const char *path,
		     struct str *error)
{
	size_t n = strlen(bs->tmp);
	const char *name;

	if (strncmp(path, bs->tmp, n) != 0 || path[n] != '/')
		return str_setf(error, "spool file is not in %s/", bs->tmp);
	name = path + n + 1;
	if (*name == '\0' || *name == '.' || strlen(name) > 255 ||
	    strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			 "0123456789._-") != strlen(name))
		return str_setf(error, "bad spool file name");
	return 0;
}

static int hash_fd(int fd, char hex_r[BLOB_HEX_LEN + 1], uint64_t *size_r,
		   blob_chunk_cb *cb, void *ctx, struct str *error)
{
	static const char digits[] = "0123456789abcdef";
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char *buf = xmalloc(BLOB_READ_CHUNK);
	unsigned char out[32];
	uint64_t size = 0;
	ssize_t n;
	int r = -1;

	if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		str_setf(error, "SHA-256 unavailable");
		goto done;
	}
	while ((n = read(fd, buf, BLOB_READ_CHUNK)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			str_setf(error, "read: %s", strerror(errno));
			goto done;
		}
		if (EVP_DigestUpdate(md, buf, (size_t)n) != 1) {
			str_setf(error, "SHA-256 failed");
			goto done;
		}
		if (cb != NULL)
			cb(buf, (size_t)n, ctx);
		size += (uint64_t)n;
	}
	if (EVP_DigestFinal_ex(md, out, NULL) != 1) {
		str_setf(error, "SHA-256 failed");
		goto done;
	}
	for (size_t i = 0; i < sizeof(out); i++) {
		hex_r[2 * i] = digits[out[i] >> 4];
		hex_r[2 * i + 1] = digits[out[i] & 0xf];
	}
	hex_r[BLOB_HEX_LEN] = '\0';
	*size_r = size;
	r = 0;
done:
	EVP_MD_CTX_free(md);
	free(buf);
	return r;
}

int blob_prepare(const char *spool_path, char hex_r[BLOB_HEX_LEN + 1],
		 uint64_t *size_r, blob_chunk_cb *cb, void *ctx,
		 struct str *error)
{
	return blob_prepare_hooked(spool_path, hex_r, size_r, cb, ctx, NULL,
				   NULL, error);
}

int blob_prepare_hooked(const char *spool_path,
			char hex_r[BLOB_HEX_LEN + 1], uint64_t *size_r,
			blob_chunk_cb *cb, void *ctx, blob_hashed_cb *hashed,
			void *hashed_ctx, struct str *error)
{
	struct stat st;
	int fd, r;

	fd = open(spool_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY |
				      O_NONBLOCK);
	if (fd < 0)
		return str_setf(error, "open %s: %s", spool_path,
				strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
		close(fd);
		return str_setf(error, "%s: not a regular file with one link",
				spool_path);
	}
	r = hash_fd(fd, hex_r, size_r, cb, ctx, error);
	if (r == 0 && hashed != NULL)
		hashed(hex_r, hashed_ctx);
	if (r == 0 && fsync(fd) < 0)
		r = str_setf(error, "fsync %s: %s", spool_path,
			     strerror(errno));
	close(fd);
	return r;
}

static void sync_later(struct blob_store *bs, const char *dir)
{
	for (size_t i = 0; i < bs->nsync; i++)
		if (strcmp(bs->sync[i], dir) == 0)
			return;
	if (bs->nsync == BLOB_SYNC_MAX)
		abort();	/* callers sync at least once per batch */
	bs->sync[bs->nsync++] = xstrdup(dir);
}

/* Creates DIR/ab and DIR/ab/cd as needed; the parent of each created one
 * is synced later too. */
static int make_shards(struct blob_store *bs, const char *hex,
		       struct str *error)
{
	struct str *p = str_new(256, 8192);
	int created, r = -1;

	if (str_printf(p, "%s/%.2s", bs->dir, hex) < 0 ||
	    mkdir_once(str_c(p), &created, error) < 0)
		goto done;
	if (created)
		sync_later(bs, bs->dir);
	if (bs->flat) {
		r = 0;
		goto done;
	}
	if (str_printf(p, "/%.2s", hex + 2) < 0 ||
	    mkdir_once(str_c(p), &created, error) < 0)
		goto done;
	if (created) {
		str_truncate(p, str_len(p) - 3);
		sync_later(bs, str_c(p));
	}
	r = 0;
done:
	str_free(&p);
	return r;
}

/* Notes dir as the parent of a shard about to be created (any thread);
 * -1 when the table is full (cannot happen: 257 parents at most). */
static int note_parent(struct blob_store *bs, const char *dir)
{
	size_t i;
	int r = 0;

	pthread_mutex_lock(&bs->noted_lock);
	for (i = 0; i < bs->nnoted; i++)
		if (strcmp(bs->noted[i], dir) == 0)
			break;
	if (i == bs->nnoted && bs->nnoted < BLOB_SHARD_PARENTS) {
		bs->noted[i] = xstrdup(dir);
		bs->noted_count[i] = 0;
		bs->nnoted++;
	}
	if (i < bs->nnoted)
		bs->noted_count[i]++;
	else
		r = -1;
	pthread_mutex_unlock(&bs->noted_lock);
	return r;
}

/* The shard under dir exists and dir was fsynced after (or by someone
 * else, who noted it too). */
static void unnote_parent(struct blob_store *bs, const char *dir)
{
	pthread_mutex_lock(&bs->noted_lock);
	for (size_t i = 0; i < bs->nnoted; i++)
		if (strcmp(bs->noted[i], dir) == 0 && bs->noted_count[i] > 0) {
			bs->noted_count[i]--;
			break;
		}
	pthread_mutex_unlock(&bs->noted_lock);
}

/* Parents still noted join the directories of the next sync (writer);
 * the others are forgotten. */
static void take_noted(struct blob_store *bs)
{
	size_t keep = 0;

	pthread_mutex_lock(&bs->noted_lock);
	for (size_t i = 0; i < bs->nnoted; i++) {
		if (bs->noted_count[i] == 0) {
			free(bs->noted[i]);
			continue;
		}
		sync_later(bs, bs->noted[i]);
		bs->noted_count[keep] = bs->noted_count[i];
		bs->noted[keep++] = bs->noted[i];
	}
	bs->nnoted = keep;
	pthread_mutex_unlock(&bs->noted_lock);
}

/* mkdir of DIR/ab (level 1) or DIR/ab/cd (level 2), with the fsync of
 * its parent when it was created here.  The parent is noted before the
 * directory can exist and until that fsync is done: whoever finds the
 * directory in between leaves the fsync to the writer's next sync. */
static int prepare_level(struct blob_store *bs, const char *hex, int level,
			 struct str *error)
{
	struct str *parent = str_new(256, 8192);
	struct str *p = str_new(256, 8192);
	int created = 0, r = -1;

	if (level == 1) {
		if (str_append_c(parent, bs->dir) < 0 ||
		    str_printf(p, "%s/%.2s", bs->dir, hex) < 0)
			goto done;
	} else if (str_printf(parent, "%s/%.2s", bs->dir, hex) < 0 ||
		   str_printf(p, "%s/%.2s", str_c(parent), hex + 2) < 0) {
		goto done;
	}
	if (note_parent(bs, str_c(parent)) < 0) {
		r = str_setf(error, "too many shard parents");
		goto done;
	}
	r = mkdir_once(str_c(p), &created, error);
	if (r == 0 && created)
		r = fsutil_sync_dir(str_c(parent), error);
	/* After a failed fsync the parent stays noted: the writer syncs it
	 * with every batch from then on. */
	if (r == 0 || !created)
		unnote_parent(bs, str_c(parent));
done:
	str_free(&parent);
	str_free(&p);
	return r;
}

int blob_prepare_dirs(struct blob_store *bs, const char *hex,
		      struct str *error)
{
	struct str *p = str_new(256, 8192);
	int r = 0;

	if (!blob_hex_valid(hex)) {
		str_free(&p);
		return str_setf(error, "bad blob name");
	}
	if (bs->flat) {
		str_free(&p);
		return 0;	/* made at open; blob_install() remakes one */
	}
	if (str_printf(p, "%s/%.2s/%.2s", bs->dir, hex, hex + 2) < 0)
		abort();
	if (access(str_c(p), F_OK) != 0) {
		str_truncate(p, str_len(p) - 3);
		if (access(str_c(p), F_OK) != 0)
			r = prepare_level(bs, hex, 1, error);
		if (r == 0)
			r = prepare_level(bs, hex, 2, error);
	}
	str_free(&p);
	return r;
}

int blob_install(struct blob_store *bs, const char *spool_path,
		 const char *hex, int *installed_r, struct str *error)
{
	struct str *dest = str_new(256, 8192);
	int r = -1;

	*installed_r = 0;
	if (!blob_hex_valid(hex) || blob_path(bs, hex, dest) < 0) {
		str_setf(error, "bad blob name");
		goto done;
	}
	if (access(str_c(dest), F_OK) == 0) {
		/* Same content already stored: the spooled copy goes. */
		if (unlink(spool_path) < 0 && errno != ENOENT) {
			str_setf(error, "unlink %s: %s", spool_path,
				 strerror(errno));
			goto done;
		}
		r = 0;
		goto done;
	}
	if (make_shards(bs, hex, error) < 0)
		goto done;
	if (rename(spool_path, str_c(dest)) < 0) {
		str_setf(error, "rename %s: %s", spool_path, strerror(errno));
		goto done;
	}
	str_truncate(dest, str_len(dest) - BLOB_HEX_LEN - 1);
	sync_later(bs, str_c(dest));
	*installed_r = 1;
	r = 0;
done:
	str_free(&dest);
	return r;
}

struct sync_job {
	char **dirs;
	struct str **errors;	/* one per failed directory */
};

static void sync_one(size_t i, void *arg)
{
	struct sync_job *job = arg;
	struct str *e = str_new(128, 1024);

	if (fsutil_sync_dir(job->dirs[i], e) < 0)
		job->errors[i] = e;
	else
		str_free(&e);
}

int blob_sync_dirs_with(struct blob_store *bs, blob_runner *run,
			void *run_ctx, struct str *error)
{
	struct sync_job job = { bs->sync, NULL };
	size_t n;
	int r = 0;

	take_noted(bs);
	n = bs->nsync;
	if (n == 0)
		return 0;
	job.errors = xcalloc(n, sizeof(*job.errors));
	if (run != NULL && n > 1) {
		run(n, sync_one, &job, run_ctx);
	} else {
		/* Deepest first: a new shard is synced before its parent. */
		for (size_t i = n; i-- > 0 && r == 0;) {
			sync_one(i, &job);
			r = job.errors[i] != NULL ? -1 : 0;
		}
	}
	r = 0;
	for (size_t i = 0; i < n; i++) {
		if (job.errors[i] != NULL && r == 0)
			r = str_setf(error, "%s", str_c(job.errors[i]));
		str_free(&job.errors[i]);
		free(bs->sync[i]);
	}
	free(job.errors);
	bs->nsync = 0;
	return r;
}

int blob_sync_dirs(struct blob_store *bs, struct str *error)
{
	return blob_sync_dirs_with(bs, NULL, NULL, error);
}

int blob_remove(struct blob_store *bs, const char *hex, struct str *error)
{
	struct str *p = str_new(256, 8192);
	int r = 0;

	if (!blob_hex_valid(hex) || blob_path(bs, hex, p) < 0)
		r = str_setf(error, "bad blob name");
	else if (unlink(str_c(p)) < 0 && errno != ENOENT)
		r = str_setf(error, "unlink %s: %s", str_c(p),
			     strerror(errno));
	str_free(&p);
	return r;
}

int blob_exists(const struct blob_store *bs, const char *hex)
{
	struct str *p = str_new(256, 8192);
	int r = 0;

	if (blob_hex_valid(hex) && blob_path(bs, hex, p) == 0)
		r = access(str_c(p), F_OK) == 0;
	str_free(&p);
	return r;
}

/* The intent file is rewritten in place from offset 0 and only grows:
 * what the last batch wrote beyond the new list is blanked with empty
 * lines (skipped by the scan), so no stale hash stays listed, and
 * fdatasync has only the data to write (no truncation, no new blocks once
 * the file is large enough). */
int blob_intent_write(struct blob_store *bs, const char *const *hex,
		      size_t n, struct str *error)
{
	struct str *buf;
	size_t len;
	ssize_t w;
	int r = 0;

	if (n > BLOB_INTENT_MAX)
		return str_setf(error, "too many new blobs in one batch");
	buf = str_new((BLOB_HEX_LEN + 1) * (n + 1),
		      (BLOB_HEX_LEN + 1) * (BLOB_INTENT_MAX + 1));
	for (size_t i = 0; i < n; i++)
		if (str_printf(buf, "%s\n", hex[i]) < 0)
			abort();
	len = str_len(buf);
	while (str_len(buf) < bs->intent_len)
		if (str_append(buf, "\n", 1) < 0)
			abort();
	w = pwrite(bs->intent_fd, str_c(buf), str_len(buf), 0);
	while (w >= 0 && (size_t)w < str_len(buf)) {
		ssize_t more = pwrite(bs->intent_fd, str_c(buf) + w,
				      str_len(buf) - (size_t)w, (off_t)w);

		w = more < 0 ? more : w + more;
	}
	if (w < 0) {
		r = str_setf(error, "write %s: %s", bs->intent,
			     strerror(errno));
		bs->intent_len = str_len(buf);	/* blank it all next time */
	}
	else if (fdatasync(bs->intent_fd) < 0) {
		r = str_setf(error, "fdatasync %s: %s", bs->intent,
			     strerror(errno));
		bs->intent_len = str_len(buf);
	}
	else
		bs->intent_len = len;
	str_free(&buf);
	return r;
}

int blob_intent_scan(struct blob_store *bs, blob_hex_cb *cb, void *ctx,
		     struct str *error)
{
	char line[BLOB_HEX_LEN + 2];
	FILE *f = fopen(bs->intent, "re");
	int r = 0;

	if (f == NULL)
		return errno == ENOENT ? 0 :
		       str_setf(error, "open %s: %s", bs->intent,
				strerror(errno));
	while (r == 0 && fgets(line, sizeof(line), f) != NULL) {
		if (strlen(line) != BLOB_HEX_LEN + 1 ||
		    line[BLOB_HEX_LEN] != '\n')
			continue;	/* torn write: never acted upon */
		line[BLOB_HEX_LEN] = '\0';
		if (blob_hex_valid(line) && cb(line, ctx) < 0)
			r = str_setf(error, "intent scan stopped at %s",
				     line);
	}
	fclose(f);
	return r;
}

static int scan_leaf(const char *path, blob_hex_cb *cb, void *ctx,
		     struct str *error)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int r = 0;

	if (d == NULL)
		return str_setf(error, "opendir %s: %s", path,
				strerror(errno));
	while (r == 0 && (e = readdir(d)) != NULL)
		if (blob_hex_valid(e->d_name) && cb(e->d_name, ctx) < 0)
			r = str_setf(error, "blob scan stopped");
	closedir(d);
	return r;
}

int blob_scan(struct blob_store *bs, blob_hex_cb *cb, void *ctx,
	      struct str *error)
{
	DIR *top = opendir(bs->dir), *mid;
	struct str *p = str_new(256, 8192);
	struct dirent *a, *b;
	int r = 0;

	if (top == NULL) {
		str_free(&p);
		return str_setf(error, "opendir %s: %s", bs->dir,
				strerror(errno));
	}
	while (r == 0 && (a = readdir(top)) != NULL) {
		if (!is_shard(a->d_name))
			continue;
		str_clear(p);
		if (str_printf(p, "%s/%s", bs->dir, a->d_name) < 0)
			abort();
		if (bs->flat) {
			r = scan_leaf(str_c(p), cb, ctx, error);
			continue;
		}
		if ((mid = opendir(str_c(p))) == NULL)
			continue;
		while (r == 0 && (b = readdir(mid)) != NULL) {
			size_t keep = str_len(p);

			if (!is_shard(b->d_name))
				continue;
			if (str_printf(p, "/%s", b->d_name) < 0)
				abort();
			r = scan_leaf(str_c(p), cb, ctx, error);
			str_truncate(p, keep);
		}
		closedir(mid);
	}
	closedir(top);
	str_free(&p);
	return r;
}

int blob_spool_stale(struct blob_store *bs, int64_t max_age, int remove,
		     blob_spool_cb *cb, void *ctx, struct str *error)
{
	DIR *d = opendir(bs->tmp);
	struct str *p = str_new(256, 8192);
	time_t now = time(NULL);
	struct dirent *e;
	struct stat st;
	int r = 0;

	if (d == NULL) {
		str_free(&p);
		return str_setf(error, "opendir %s: %s", bs->tmp,
				strerror(errno));
	}
	while (r == 0 && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		str_clear(p);
		if (str_printf(p, "%s/%s", bs->tmp, e->d_name) < 0 ||
		    lstat(str_c(p), &st) < 0 || !S_ISREG(st.st_mode) ||
		    now - st.st_mtime <= max_age)
			continue;
		if (cb != NULL && cb(str_c(p), now - st.st_mtime, ctx) < 0)
			r = str_setf(error, "spool scan stopped");
		else if (remove && unlink(str_c(p)) < 0 && errno != ENOENT)
			r = str_setf(error, "unlink %s: %s", str_c(p),
				     strerror(errno));
	}
	closedir(d);
	str_free(&p);
	return r;
}
