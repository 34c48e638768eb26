/*
 * bounce.c: a delivery status notification becomes a new message in the
 * queue, written the way tern-smtpd writes one (common/queue's writer):
 * created exclusively in queue/tmp/, fsynced, renamed into
 * queue/incoming/, the folder fsynced.  Its sender is the null sender, so
 * a notice about it is never sent back (deliver.c).  Blocking: runs on
 * the thread pool.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "compat.h"
#include "qmgr.h"
#include "queue.h"
#include "str.h"
#include "xalloc.h"

/* A string that reached its maximum is cut there: fine here. */
#define STR_TRY(x) do { if ((x) < 0) { /* cut */ } } while (0)

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r;

	if (fd < 0)
		return -1;
	r = fsync(fd);
	close(fd);
	return r;
}

static int encode(const char *id, const char *rcpt, const char *msg,
		  size_t len, bool eightbit, struct str *out)
{
	struct queue_envelope env;
	struct timeval tv;
	int ret;

	memset(&env, 0, sizeof(env));
	gettimeofday(&tv, NULL);
	env.id = xstrdup(id);
	env.arrival_sec = tv.tv_sec;
	env.arrival_usec = (uint32_t)tv.tv_usec;
	env.client_addr = xstrdup("unix");
	env.protocol = xstrdup("LOCAL");
	env.sender = xstrdup("");
	env.body = xstrdup(eightbit ? "8BITMIME" : "7BIT");
	queue_envelope_add_rcpt(&env, rcpt, NULL, NULL);
	ret = queue_encode_envelope(out, &env);
	if (ret == 0)
		ret = queue_encode_data(out, msg, len);
	if (ret == 0)
		ret = queue_encode_end(out, len);
	queue_envelope_clear(&env);
	return ret;
}

int bounce_write(const struct qmgr *q, const char *id, const char *rcpt,
		 const char *msg, size_t len, bool eightbit,
		 struct str *error)
{
	struct str *out = str_new(len + 4096, len * 2 + 1024 * 1024);
	char *tmp, *final, *dir;
	int fd, ret = -1;

	tmp = qmgr_path(q, QF_TMP, id);
	final = qmgr_path(q, QF_INCOMING, id);
	dir = qmgr_path(q, QF_INCOMING, NULL);
	if (encode(id, rcpt, msg, len, eightbit, out) < 0) {
		STR_TRY(str_printf(error, "cannot encode the notice"));
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (fd < 0) {
		STR_TRY(str_printf(error, "%s: %s", tmp, strerror(errno)));
		goto out;
	}
	if (write_all(fd, str_c(out), str_len(out)) < 0 || fsync(fd) < 0) {
		STR_TRY(str_printf(error, "%s: %s", tmp, strerror(errno)));
		close(fd);
		(void)unlink(tmp);
		goto out;
	}
	close(fd);
	if (rename(tmp, final) < 0) {
		STR_TRY(str_printf(error, "%s: %s", final, strerror(errno)));
		(void)unlink(tmp);
		goto out;
	}
	if (sync_dir(dir) < 0) {
		STR_TRY(str_printf(error, "%s: %s", dir, strerror(errno)));
		if (rename(final, tmp) == 0)
			(void)unlink(tmp);
		goto out;
	}
	ret = 0;
out:
	free(tmp);
	free(final);
	free(dir);
	str_free(&out);
	return ret;
}
