/* linereader.c: see linereader.h. */
#include "config.h"

#include "compat.h"

#include <stdlib.h>

#include "linereader.h"
#include "log.h"
#include "str.h"

struct linereader {
	size_t max_line;
	int accept_bare_lf;
	struct str *buf;	/* data of an unfinished line */
	int pending_cr;		/* a CR was held back after buf */
	int skipping;		/* discarding an over-long line */
	size_t skipped;		/* bytes discarded so far */
	int returned_buf;	/* the last LINE pointed into buf */
	uint64_t literal_left;
};

struct linereader *linereader_new(size_t max_line)
{
	struct linereader *lr = calloc(1, sizeof(*lr));

	if (lr == NULL)
		abort();
	if (max_line < 1)
		max_line = 1;
	if (max_line > LINEREADER_MAX_LIMIT)
		max_line = LINEREADER_MAX_LIMIT;
	lr->max_line = max_line;
	lr->accept_bare_lf = 1;
	lr->buf = str_new(max_line < 256 ? max_line : 256, max_line);
	return lr;
}

void linereader_free(struct linereader **lr)
{
	if (*lr == NULL)
		return;
	str_free(&(*lr)->buf);
	free(*lr);
	*lr = NULL;
}

void linereader_set_bare_lf(struct linereader *lr, int accept)
{
	lr->accept_bare_lf = accept != 0;
}

void linereader_reset(struct linereader *lr)
{
	str_clear(lr->buf);
	lr->pending_cr = 0;
	lr->skipping = 0;
	lr->skipped = 0;
	lr->returned_buf = 0;
	lr->literal_left = 0;
}

size_t linereader_buffered(const struct linereader *lr)
{
	if (lr->returned_buf)
		return 0;	/* buf holds the line just returned */
	return str_len(lr->buf) + (lr->pending_cr ? 1 : 0);
}

uint64_t linereader_literal_left(const struct linereader *lr)
{
	return lr->literal_left;
}

int linereader_expect_literal(struct linereader *lr, uint64_t n)
{
	if (linereader_buffered(lr) > 0 || lr->skipping ||
	    lr->literal_left > 0)
		return -1;
	lr->literal_left = n;
	return 0;
}

static int linereader_literal(struct linereader *lr, const char **pos,
			      const char *end, struct linereader_line *line_r)
{
	size_t n = (size_t)(end - *pos);

	if (n == 0)
		return LINEREADER_MORE;
	if ((uint64_t)n > lr->literal_left)
		n = (size_t)lr->literal_left;
	line_r->data = *pos;
	line_r->len = n;
	*pos += n;
	lr->literal_left -= n;
	line_r->flags = lr->literal_left == 0 ? LINEREADER_F_LITERAL_END : 0;
	return LINEREADER_LITERAL;
}

/* The LF that ends the line in [p, end), or NULL.  In strict mode only an
 * LF right after a CR counts; the CR may be the held-back one. */
static const char *linereader_find_end(const struct linereader *lr,
				       const char *p, const char *end)
{
	const char *start = p, *lf;

	while ((lf = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		if (lr->accept_bare_lf)
			return lf;
		if (lf > start ? lf[-1] == '\r' : lr->pending_cr)
			return lf;
		p = lf + 1;
	}
	return NULL;
}

/* Appends line data, or starts discarding once it no longer fits. */
static void linereader_keep(struct linereader *lr, const char *p, size_t n)
{
	if (!lr->skipping && n > str_room(lr->buf)) {
		lr->skipping = 1;
		lr->skipped = str_len(lr->buf);
		str_clear(lr->buf);
	}
	if (lr->skipping) {
		lr->skipped += n;
		return;
	}
	if (str_append(lr->buf, p, n) < 0)
		log_panic(NULL, "linereader: buffer past max_line");
}

static unsigned int linereader_flags(const struct linereader *lr,
				     const char *p, size_t n, int bare_end)
{
	unsigned int flags = bare_end ? LINEREADER_F_BARE_LF_END : 0;

	if (memchr(p, '\r', n) != NULL)
		flags |= LINEREADER_F_BARE_CR;
	if (memchr(p, '\n', n) != NULL)
		flags |= LINEREADER_F_BARE_LF;
	return flags;
}

/* The line ends at lf, inside the current input [*pos, end). */
static int linereader_finish(struct linereader *lr, const char **pos,
			     const char *lf, struct linereader_line *line_r)
{
	const char *p = *pos;
	int crlf = lf > p ? lf[-1] == '\r' : lr->pending_cr;
	size_t n = (size_t)(lf - p) - (crlf && lf > p ? 1 : 0);

	*pos = lf + 1;
	if (lr->pending_cr && !(crlf && lf == p))
		linereader_keep(lr, "\r", 1);	/* the held CR was data */
	lr->pending_cr = 0;
	if (lr->skipping || n > str_room(lr->buf)) {
		linereader_keep(lr, p, n);
		line_r->data = NULL;
		line_r->len = lr->skipped;
		line_r->flags = crlf ? 0 : LINEREADER_F_BARE_LF_END;
		lr->skipping = 0;
		lr->skipped = 0;
		str_clear(lr->buf);
		return LINEREADER_TOO_LONG;
	}
	if (str_len(lr->buf) == 0) {
		line_r->data = p;	/* zero-copy */
		line_r->len = n;
	} else {
		linereader_keep(lr, p, n);
		line_r->data = str_c(lr->buf);
		line_r->len = str_len(lr->buf);
		lr->returned_buf = 1;
	}
	line_r->flags = linereader_flags(lr, line_r->data, line_r->len, !crlf);
	return LINEREADER_LINE;
}

int linereader_feed(struct linereader *lr, const char **pos, const char *end,
		    struct linereader_line *line_r)
{
	const char *p = *pos, *lf;
	size_t n;

	if (lr->returned_buf) {
		str_clear(lr->buf);
		lr->returned_buf = 0;
	}
	if (lr->literal_left > 0)
		return linereader_literal(lr, pos, end, line_r);
	if (p == end)
		return LINEREADER_MORE;
	lf = linereader_find_end(lr, p, end);
	if (lf != NULL)
		return linereader_finish(lr, pos, lf, line_r);
	/* No line end yet: keep the data, holding back a final CR. */
	if (lr->pending_cr)
		linereader_keep(lr, "\r", 1);
	n = (size_t)(end - p);
	lr->pending_cr = p[n - 1] == '\r';
	linereader_keep(lr, p, n - (lr->pending_cr ? 1 : 0));
	*pos = end;
	return LINEREADER_MORE;
}
