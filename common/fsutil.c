/* fsutil.c: see fsutil.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compat.h"
#include "fsutil.h"
#include "str.h"

int fsutil_sync_dir(const char *dir, struct str *error)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int e;

	if (fd < 0) {
		e = errno;
		str_setf(error, "open %s: %s", dir, strerror(e));
		errno = e;
		return -1;
	}
	if (fsync(fd) < 0) {
		e = errno;
		close(fd);
		str_setf(error, "fsync %s: %s", dir, strerror(e));
		errno = e;
		return -1;
	}
	close(fd);
	return 0;
}

int fsutil_sync_parent(const char *path, struct str *error)
{
	const char *slash = strrchr(path, '/');
	struct str *dir = str_new(64, PATH_MAX);
	int r;

	if (slash == NULL)
		r = str_append_c(dir, ".");
	else if (slash == path)
		r = str_append_c(dir, "/");
	else
		r = str_append(dir, path, (size_t)(slash - path));
	if (r < 0)
		str_setf(error, "%s: path too long", path);
	else
		r = fsutil_sync_dir(str_c(dir), error);
	str_free(&dir);
	return r;
}

int fsutil_write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) {
			errno = EIO;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The temporary file next to path: created, written, fsynced, closed. */
static int write_temp(const char *path, const void *data, size_t len,
		      mode_t mode, struct str *tmp, struct str *error)
{
	int fd, e;

	if (str_printf(tmp, "%s.tmp.XXXXXX", path) < 0) {
		errno = ENAMETOOLONG;
		return str_setf(error, "%s: path too long", path);
	}
	fd = mkostemp(str_data(tmp), O_CLOEXEC);
	if (fd < 0) {
		e = errno;
		str_setf(error, "cannot create a temporary file next to %s: "
			 "%s", path, strerror(e));
		errno = e;
		return -1;
	}
	if (fchmod(fd, mode) < 0 || fsutil_write_all(fd, data, len) < 0 ||
	    fsync(fd) < 0) {
		e = errno;
		close(fd);
		unlink(str_c(tmp));
		str_setf(error, "cannot write %s: %s", str_c(tmp), strerror(e));
		errno = e;
		return -1;
	}
	if (close(fd) < 0) {
		e = errno;
		unlink(str_c(tmp));
		str_setf(error, "cannot write %s: %s", str_c(tmp), strerror(e));
		errno = e;
		return -1;
	}
	return 0;
}

int fsutil_write_file(const char *path, const void *data, size_t len,
		      mode_t mode, unsigned flags, struct str *error)
{
	struct str *tmp = str_new(64, PATH_MAX);
	int r, e;

	r = write_temp(path, data, len, mode, tmp, error);
	if (r < 0)
		goto out;
	if (flags & FSUTIL_REPLACE) {
		r = rename(str_c(tmp), path);
	} else {
		r = link(str_c(tmp), path);
		e = errno;
		unlink(str_c(tmp));
		errno = e;
	}
	if (r < 0) {
		e = errno;
		if (flags & FSUTIL_REPLACE)
			unlink(str_c(tmp));
		str_setf(error, "cannot create %s: %s", path, strerror(e));
		errno = e;
		goto out;
	}
	r = fsutil_sync_parent(path, error);
out:
	str_free(&tmp);
	return r;
}
