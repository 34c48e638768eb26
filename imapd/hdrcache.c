/* hdrcache.c: see hdrcache.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compat.h"
#include "hdrcache.h"
#include "xalloc.h"

struct hentry {
	char *path;
	char *data;
	size_t len;
	struct hentry *older, *newer;	/* age order */
	struct hentry *chain;		/* hash bucket */
};

static struct hentry **buckets;
static size_t nbuckets;
static struct hentry *oldest, *newest;
static size_t total, count;
static size_t limit = HDRCACHE_BYTES;

static size_t path_hash(const char *p)
{
	size_t h = 2166136261u;	/* FNV-1a */

	for (; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return h;
}

static void unlink_age(struct hentry *e)
{
	if (e->older != NULL)
		e->older->newer = e->newer;
	else
		oldest = e->newer;
	if (e->newer != NULL)
		e->newer->older = e->older;
	else
		newest = e->older;
	e->older = e->newer = NULL;
}

/* e (unlinked) becomes the newest. */
static void link_newest(struct hentry *e)
{
	e->older = newest;
	if (newest != NULL)
		newest->newer = e;
	else
		oldest = e;
	newest = e;
}

static void evict_oldest(void)
{
	struct hentry *e = oldest, **pp;

	unlink_age(e);
	for (pp = &buckets[path_hash(e->path) % nbuckets]; *pp != e;
	     pp = &(*pp)->chain)
		;
	*pp = e->chain;
	total -= e->len;
	count--;
	free(e->path);
	free(e->data);
	free(e);
}

static void grow(void)
{
	size_t n = nbuckets == 0 ? 1024 : nbuckets * 2;
	struct hentry **b = xcalloc(n, sizeof(*b));

	for (size_t i = 0; i < nbuckets; i++) {
		struct hentry *e = buckets[i], *next;

		for (; e != NULL; e = next) {
			next = e->chain;
			e->chain = b[path_hash(e->path) % n];
			b[path_hash(e->path) % n] = e;
		}
	}
	free(buckets);
	buckets = b;
	nbuckets = n;
}

/* The header of the file: read in pieces until its empty line. */
static char *read_header(const char *path, uint64_t size, size_t *len_r)
{
	size_t cap = size < 4096 ? (size_t)size + 1 : 4096, len = 0;
	char *buf = xmalloc(cap);
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		free(buf);
		return NULL;
	}
	for (;;) {
		ssize_t r;
		char *end;

		if (len == cap) {
			if (cap >= HDRCACHE_HEADER_MAX)
				break;
			cap *= 2;
			buf = xrealloc(buf, cap);
		}
		r = read(fd, buf + len, cap - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			len = 0;
			break;
		}
		if (r == 0) {
			close(fd);
			*len_r = len;	/* a message that is all header */
			return buf;
		}
		len += (size_t)r;
		/* The empty line ends the header (CRLF or LF). */
		for (end = buf; (end = memchr(end, '\n', (size_t)(buf + len -
							     end))) != NULL;
		     end++) {
			size_t at = (size_t)(end - buf);

			if ((at + 1 < len && end[1] == '\n') ||
			    (at + 2 < len && end[1] == '\r' && end[2] == '\n')) {
				close(fd);
				*len_r = at + 1;
				return buf;
			}
		}
	}
	close(fd);
	free(buf);
	return NULL;
}

const char *hdrcache_get(const char *path, uint64_t size, size_t *len_r)
{
	struct hentry *e;
	size_t len;
	char *data;

	if (nbuckets > 0) {
		for (e = buckets[path_hash(path) % nbuckets]; e != NULL;
		     e = e->chain) {
			if (strcmp(e->path, path) == 0) {
				unlink_age(e);	/* now the newest */
				link_newest(e);
				*len_r = e->len;
				return e->data;
			}
		}
	}
	data = read_header(path, size, &len);
	if (data == NULL)
		return NULL;
	while (oldest != NULL && total + len > limit)
		evict_oldest();
	if (count >= nbuckets)
		grow();
	e = xcalloc(1, sizeof(*e));
	e->path = xstrdup(path);
	e->data = data;
	e->len = len;
	e->chain = buckets[path_hash(path) % nbuckets];
	buckets[path_hash(path) % nbuckets] = e;
	link_newest(e);
	total += len;
	count++;
	*len_r = len;
	return data;
}

void hdrcache_set_limit(size_t bytes)
{
	limit = bytes;
	while (oldest != NULL && total > limit)
		evict_oldest();
}

void hdrcache_clear(void)
{
	while (oldest != NULL)
		evict_oldest();
	free(buckets);
	buckets = NULL;
	nbuckets = 0;
}
