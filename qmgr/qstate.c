/*
 * qstate.c: the delivery state file of a queued message (see qstate.h).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compat.h"
#include "qstate.h"
#include "str.h"
#include "xalloc.h"

/* A string that reached its maximum is cut there: fine here. */
#define STR_TRY(x) do { if ((x) < 0) { /* cut */ } } while (0)

void qstate_init(struct qstate *st, size_t nrcpts)
{
	memset(st, 0, sizeof(*st));
	st->nrcpts = nrcpts;
	st->rcpts = xcalloc(nrcpts + 1, sizeof(*st->rcpts));
}

void qstate_clear(struct qstate *st)
{
	for (size_t i = 0; i < st->nrcpts && st->rcpts != NULL; i++) {
		struct qstate_rcpt *r = &st->rcpts[i];

		free(r->error);
		for (size_t k = 0; k < r->nreached; k++)
			free(r->reached[k]);
		free(r->reached);
	}
	free(st->rcpts);
	memset(st, 0, sizeof(*st));
}

bool qstate_reached(const struct qstate *st, size_t rcpt, const char *addr)
{
	const struct qstate_rcpt *r;

	if (rcpt >= st->nrcpts)
		return false;
	r = &st->rcpts[rcpt];
	for (size_t k = 0; k < r->nreached; k++) {
		if (strcasecmp(r->reached[k], addr) == 0)
			return true;
	}
	return false;
}

void qstate_add_reached(struct qstate *st, size_t rcpt, const char *addr)
{
	struct qstate_rcpt *r;

	if (rcpt >= st->nrcpts || qstate_reached(st, rcpt, addr))
		return;
	r = &st->rcpts[rcpt];
	r->reached = xrealloc(r->reached,
			      (r->nreached + 1) * sizeof(*r->reached));
	r->reached[r->nreached++] = xstrdup(addr);
}

/* Copies text without control characters, cut at QSTATE_TEXT_MAX. */
static char *clean_text(const char *s)
{
	size_t n = strlen(s);
	char *c;

	if (n > QSTATE_TEXT_MAX)
		n = QSTATE_TEXT_MAX;
	c = xmalloc(n + 1);
	for (size_t i = 0; i < n; i++)
		c[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? ' ' : s[i];
	c[n] = '\0';
	return c;
}

void qstate_set_error(struct qstate *st, size_t rcpt, const char *error)
{
	if (rcpt >= st->nrcpts)
		return;
	free(st->rcpts[rcpt].error);
	st->rcpts[rcpt].error = error != NULL ? clean_text(error) : NULL;
}

int64_t qstate_backoff(unsigned attempts, int64_t min, int64_t max)
{
	int64_t wait = min;

	for (unsigned i = 1; i < attempts && wait < max; i++)
		wait *= 2;
	return wait < max ? wait : max;
}

int qstate_encode(const struct qstate *st, struct str *out)
{
	int ret = 0;

	ret |= str_printf(out, "%s\nattempts %u\nnext %lld\n", QSTATE_VERSION,
			  st->attempts, (long long)st->next_try);
	if (st->warned)
		ret |= str_append_c(out, "warned 1\n");
	for (size_t i = 0; i < st->nrcpts; i++) {
		const struct qstate_rcpt *r = &st->rcpts[i];

		if (r->done)
			ret |= str_printf(out, "D %zu\n", i);
		for (size_t k = 0; k < r->nreached; k++)
			ret |= str_printf(out, "T %zu %s\n", i, r->reached[k]);
		if (r->error != NULL && !r->done)
			ret |= str_printf(out, "E %zu %s\n", i, r->error);
	}
	return ret < 0 ? -1 : 0;
}

/* The recipient index at *s (then the space after it): -1 when bad. */
static long parse_index(const char **s, size_t nrcpts)
{
	char *end;
	unsigned long v;

	if (**s < '0' || **s > '9')
		return -1;
	errno = 0;
	v = strtoul(*s, &end, 10);
	if (errno != 0 || v >= nrcpts || (*end != ' ' && *end != '\0'))
		return -1;
	*s = *end == ' ' ? end + 1 : end;
	return (long)v;
}

static int parse_line(struct qstate *st, char *line, const char **error_r)
{
	const char *s = line + 2;
	long idx;
	char *end;

	if (strncmp(line, "attempts ", 9) == 0) {
		st->attempts = (unsigned)strtoul(line + 9, &end, 10);
		return *end == '\0' ? 0 : -1;
	}
	if (strncmp(line, "next ", 5) == 0) {
		st->next_try = strtoll(line + 5, &end, 10);
		return *end == '\0' ? 0 : -1;
	}
	if (strcmp(line, "warned 1") == 0) {
		st->warned = true;
		return 0;
	}
	if (line[0] == '\0' || line[1] != ' ')
		return -1;
	idx = parse_index(&s, st->nrcpts);
	if (idx < 0) {
		*error_r = "recipient index out of range";
		return -1;
	}
	switch (line[0]) {
	case 'D':
		st->rcpts[idx].done = true;
		return *s == '\0' ? 0 : -1;
	case 'T':
		if (*s == '\0')
			return -1;
		qstate_add_reached(st, (size_t)idx, s);
		return 0;
	case 'E':
		qstate_set_error(st, (size_t)idx, s);
		return 0;
	default:
		return -1;
	}
}

int qstate_parse(struct qstate *st, const char *data, size_t len,
		 size_t nrcpts, const char **error_r)
{
	struct str *line = str_new(256, 8192);
	size_t i = 0, lineno = 0;
	int ret = 0;

	qstate_init(st, nrcpts);
	*error_r = "malformed state line";
	while (i < len && ret == 0) {
		const char *nl = memchr(data + i, '\n', len - i);
		size_t n = nl != NULL ? (size_t)(nl - (data + i)) : len - i;

		str_clear(line);
		if (str_append(line, data + i, n) < 0 ||
		    memchr(data + i, '\0', n) != NULL) {
			*error_r = "state line too long or with NUL";
			ret = -1;
			break;
		}
		i += n + (nl != NULL ? 1 : 0);
		if (lineno++ == 0) {
			if (strcmp(str_c(line), QSTATE_VERSION) != 0) {
				*error_r = "unknown state version";
				ret = -1;
			}
			continue;
		}
		ret = parse_line(st, str_data(line), error_r);
	}
	if (ret == 0 && lineno == 0) {
		*error_r = "empty state file";
		ret = -1;
	}
	str_free(&line);
	return ret;
}

int qstate_read(const char *path, struct qstate *st, size_t nrcpts,
		struct str *error)
{
	struct str *data = str_new(4096, QSTATE_FILE_MAX);
	char buf[8192];
	const char *why;
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret = 1;
	ssize_t n;

	if (fd < 0) {
		str_free(&data);
		qstate_init(st, nrcpts);
		if (errno == ENOENT)
			return 0;
		STR_TRY(str_printf(error, "%s: %s", path, strerror(errno)));
		return -1;
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		if (str_append(data, buf, (size_t)n) < 0) {
			n = -1;
			errno = EFBIG;
			break;
		}
		/* A short read of a regular file is its end (state files
		 * are replaced by rename, never written in place). */
		if ((size_t)n < sizeof(buf))
			break;
	}
	if (n < 0) {
		STR_TRY(str_printf(error, "%s: %s", path, strerror(errno)));
		qstate_init(st, nrcpts);
		ret = -1;
	} else if (qstate_parse(st, str_c(data), str_len(data), nrcpts,
				&why) < 0) {
		STR_TRY(str_printf(error, "%s: %s", path, why));
		ret = -1;
	}
	close(fd);
	str_free(&data);
	return ret;
}

static int sync_dir_of(const char *path)
{
	struct str *dir = str_dup_c(path);
	char *slash = strrchr(str_data(dir), '/');
	int fd, ret;

	if (slash != NULL)
		str_truncate(dir, (size_t)(slash - str_c(dir)));
	fd = open(slash != NULL ? str_c(dir) : ".",
		  O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	str_free(&dir);
	if (fd < 0)
		return -1;
	ret = fsync(fd);
	close(fd);
	return ret;
}

int qstate_write(const char *path, const struct qstate *st,
		 struct str *error)
{
	struct str *out = str_new(256, QSTATE_FILE_MAX);
	struct str *tmp = str_new(256, 8192);
	const char *p;
	size_t left;
	int fd = -1, ret = -1;

	if (qstate_encode(st, out) < 0) {
		STR_TRY(str_printf(error, "%s: state too large", path));
		goto out;
	}
	STR_TRY(str_printf(tmp, "%s.tmp", path));
	fd = open(str_c(tmp), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0)
		goto fail;
	for (p = str_c(out), left = str_len(out); left > 0;) {
		ssize_t n = write(fd, p, left);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		p += n;
		left -= (size_t)n;
	}
	if (fsync(fd) < 0 || close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(str_c(tmp), path) < 0 || sync_dir_of(path) < 0)
		goto fail;
	ret = 0;
	goto out;
fail:
	STR_TRY(str_printf(error, "%s: %s", path, strerror(errno)));
	if (fd >= 0)
		close(fd);
	(void)unlink(str_c(tmp));
out:
	str_free(&out);
	str_free(&tmp);
	return ret;
}

int qstate_peek(const char *path, unsigned *attempts_r, int64_t *next_r)
{
	char buf[256];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;
	const char *s;

	*attempts_r = 0;
	*next_r = 0;
	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	if (strncmp(buf, QSTATE_VERSION "\n", sizeof(QSTATE_VERSION)) != 0)
		return -1;
	s = strstr(buf, "\nattempts ");
	if (s != NULL)
		*attempts_r = (unsigned)strtoul(s + 10, NULL, 10);
	s = strstr(buf, "\nnext ");
	if (s != NULL)
		*next_r = strtoll(s + 6, NULL, 10);
	return 1;
}
