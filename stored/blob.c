/* blob.c: see blob.h. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

struct blob_store {
	char *dir;
	char *tmp;
	char *intent;
	int lock_fd;			/* flock'ed DIR/lock */
	char *sync[BLOB_SYNC_MAX];	/* directories to fsync */
	size_t nsync;
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
	int created, fd;

	if (mkdir_once(dir, &created, error) < 0)
		return -1;
	bs = xcalloc(1, sizeof(*bs));
	bs->lock_fd = -1;
	bs->dir = xstrdup(dir);
	bs->tmp = join(dir, "tmp");
	bs->intent = join(dir, "intent");
	if (store_lock(bs, error) < 0 ||
	    mkdir_once(bs->tmp, &created, error) < 0)
		goto fail;
	fd = open(bs->intent, O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0) {
		str_setf(error, "open %s: %s", bs->intent, strerror(errno));
		goto fail;
	}
	close(fd);
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
	free(bs->dir);
	free(bs->tmp);
	free(bs->intent);
	if (bs->lock_fd >= 0)
		close(bs->lock_fd);
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

int blob_sync_dirs(struct blob_store *bs, struct str *error)
{
	int r = 0;

	/* Deepest first: a new shard is synced before its parent. */
	for (size_t i = bs->nsync; i-- > 0;) {
		if (r == 0 && fsutil_sync_dir(bs->sync[i], error) < 0)
			r = -1;
		free(bs->sync[i]);
	}
	bs->nsync = 0;
	return r;
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

int blob_intent_write(struct blob_store *bs, const char *const *hex,
		      size_t n, struct str *error)
{
	struct str *buf;
	int fd, r = 0;

	if (n > BLOB_INTENT_MAX)
		return str_setf(error, "too many new blobs in one batch");
	buf = str_new((BLOB_HEX_LEN + 1) * (n + 1),
		      (BLOB_HEX_LEN + 1) * (BLOB_INTENT_MAX + 1));
	for (size_t i = 0; i < n; i++)
		if (str_printf(buf, "%s\n", hex[i]) < 0)
			abort();
	fd = open(bs->intent, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0) {
		r = str_setf(error, "open %s: %s", bs->intent,
			     strerror(errno));
		goto done;
	}
	if (fsutil_write_all(fd, str_c(buf), str_len(buf)) < 0)
		r = str_setf(error, "write %s: %s", bs->intent,
			     strerror(errno));
	if (r == 0 && fsync(fd) < 0)
		r = str_setf(error, "fsync %s: %s", bs->intent,
			     strerror(errno));
	close(fd);
done:
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

static int is_shard(const char *name)
{
	return strlen(name) == 2 && strspn(name, "0123456789abcdef") == 2;
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
		if (str_printf(p, "%s/%s", bs->dir, a->d_name) < 0 ||
		    (mid = opendir(str_c(p))) == NULL)
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
