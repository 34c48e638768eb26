/* mime.c: the streaming MIME parser and its part tree. */
#include "config.h"

#include "compat.h"

#include <ctype.h>
#include <stdlib.h>
#include <strings.h>

#include "cfg.h"
#include "mime.h"
#include "mime_encode.h"
#include "str.h"
#include "xalloc.h"

/* Body lines are kept only as far as a boundary line could reach. */
#define BOUNDARY_KEEP (4 + MIME_BOUNDARY_MAX)

enum mp_state {
	MP_PREAMBLE = 0,
	MP_CHILD,
	MP_SKIP,	/* parts limit: delimiters end parts, none start */
	MP_EPILOGUE,
};

struct mime_part {
	struct mime_part *parent, *child, *last_child, *next;
	unsigned int nchildren, depth, flags;
	enum mime_kind kind;
	enum mp_state mp_state;
	int header_done;

	struct mime_header *fields;
	size_t nfields, afields, header_bytes;

	char *type, *subtype, *disposition;
	struct mime_param *params, *dparams;
	size_t nparams, ndparams;
	const char *boundary;	/* points into params */
	size_t boundary_len;

	uint64_t hdr_off, body_off, body_end, lf_start, lines;
};

/* The line being read: its first keep bytes, and what the rest held. */
struct line {
	const char *kept;
	size_t klen;
	uint64_t clen;	/* content length, line end excluded */
	unsigned int eol;	/* 0 (end of input), 1 (LF) or 2 (CRLF) */
	uint64_t start, next;	/* its offset and the next line's */
};

struct mime_parser {
	struct mime_settings set;
	struct mime_part *root, *cur;
	int in_header;

	struct str *field;	/* "name:raw" of the field being read */
	int field_active, field_trunc;

	char *line;
	size_t line_len, line_cap, line_keep;
	uint64_t line_total, tail_nonws;
	unsigned char last_byte;

	uint64_t offset, line_start, lf_count;
	unsigned int pending_eol, eol_next;
	int prev_nonempty, nonempty_next;

	unsigned int nparts;
	size_t mem;
	struct mime_part **bstack;	/* multiparts with a live boundary */
	size_t nb, ab;
};

/* ---- settings ---- */

void mime_settings_init(struct mime_settings *set_r)
{
	set_r->max_header_line = MIME_DEF_MAX_HEADER_LINE;
	set_r->max_header_bytes = MIME_DEF_MAX_HEADER_BYTES;
	set_r->max_parts = MIME_DEF_MAX_PARTS;
	set_r->max_depth = MIME_DEF_MAX_DEPTH;
	set_r->max_memory = MIME_DEF_MAX_MEMORY;
}

static size_t clamp_size(size_t v, size_t lo, size_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

void mime_settings_clamp(struct mime_settings *set)
{
	set->max_header_line = clamp_size(set->max_header_line,
					  MIME_MIN_MAX_HEADER_LINE,
					  MIME_MAX_MAX_HEADER_LINE);
	set->max_header_bytes = clamp_size(set->max_header_bytes,
					   MIME_MIN_MAX_HEADER_BYTES,
					   MIME_MAX_MAX_HEADER_BYTES);
	set->max_parts = (unsigned int)clamp_size(set->max_parts, 1,
						  MIME_MAX_MAX_PARTS);
	set->max_depth = (unsigned int)clamp_size(set->max_depth, 0,
						  MIME_MAX_MAX_DEPTH);
	set->max_memory = clamp_size(set->max_memory, MIME_MIN_MAX_MEMORY,
				     MIME_MAX_MAX_MEMORY);
}

void mime_settings_from_cfg(const struct cfg *cfg,
			    struct mime_settings *set_r)
{
	set_r->max_header_line = (size_t)cfg_size(cfg,
						  OPT_MIME_MAX_HEADER_LINE);
	set_r->max_header_bytes = (size_t)cfg_size(cfg,
						   OPT_MIME_MAX_HEADER_SIZE);
	set_r->max_parts = (unsigned int)cfg_int(cfg, OPT_MIME_MAX_PARTS);
	set_r->max_depth = (unsigned int)cfg_int(cfg, OPT_MIME_MAX_DEPTH);
	set_r->max_memory = (size_t)cfg_size(cfg, OPT_MIME_MAX_MEMORY);
	mime_settings_clamp(set_r);
}

/* ---- parts ---- */

static int mem_reserve(struct mime_parser *p, size_t n)
{
	if (p->mem > p->set.max_memory || n > p->set.max_memory - p->mem) {
		p->root->flags |= MIME_PART_F_LIMIT_HIT;
		return -1;
	}
	p->mem += n;
	return 0;
}

static struct mime_part *part_new(struct mime_parser *p,
				  struct mime_part *parent, uint64_t hdr_off)
{
	struct mime_part *x;

	if (parent != NULL && (p->nparts >= p->set.max_parts ||
			       mem_reserve(p, sizeof(*x)) < 0)) {
		p->root->flags |= MIME_PART_F_LIMIT_HIT;
		parent->flags |= MIME_PART_F_LIMIT_HIT;
		return NULL;
	}
	x = xcalloc(1, sizeof(*x));
	x->hdr_off = x->body_off = x->body_end = hdr_off;
	x->parent = parent;
	p->nparts++;
	if (parent == NULL)
		return x;
	x->depth = parent->depth + 1;
	if (parent->last_child != NULL)
		parent->last_child->next = x;
	else
		parent->child = x;
	parent->last_child = x;
	parent->nchildren++;
	return x;
}

static void part_free_one(struct mime_part *x)
{
	for (size_t i = 0; i < x->nfields; i++)
		free((char *)x->fields[i].name);
	free(x->fields);
	free(x->type);
	free(x->subtype);
	free(x->disposition);
	mime_params_free(&x->params, x->nparams);
	mime_params_free(&x->dparams, x->ndparams);
	free(x);
}

/* Iterative: nesting depth must not become stack depth. */
void mime_part_free(struct mime_part **root)
{
	struct mime_part *x = *root, *next;

	while (x != NULL) {
		if (x->child != NULL) {
			next = x->child;
			x->child = NULL;
			x = next;
			continue;
		}
		next = x->next != NULL ? x->next : x->parent;
		part_free_one(x);
		x = next;
	}
	*root = NULL;
}

static void part_make_opaque(struct mime_part *x)
{
	x->kind = MIME_KIND_LEAF;
	x->flags |= MIME_PART_F_OPAQUE;
	free(x->type);
	free(x->subtype);
	x->type = xstrdup("text");
	x->subtype = xstrdup("plain");
}

/* ---- header fields ---- */

static int is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* Removes the line ends of folds and trims; returns the new length. */
static size_t unfold(char *dst, const char *src, size_t len)
{
	size_t n = 0, i, start = 0;

	for (i = 0; i < len; i++) {
		if (src[i] == '\n' ||
		    (src[i] == '\r' && i + 1 < len && src[i + 1] == '\n'))
			continue;
		dst[n++] = src[i];
	}
	while (n > 0 && is_wsp(dst[n - 1]))
		n--;
	while (start < n && is_wsp(dst[start]))
		start++;
	memmove(dst, dst + start, n - start);
	dst[n - start] = '\0';
	return n - start;
}

static void field_store(struct mime_parser *p, struct mime_part *x,
			const char *line, size_t len, size_t name_len)
{
	const char *colon = line + name_len;
	size_t raw_len = len - name_len - 1, need;
	struct mime_header *h;
	char *blk;

	while (name_len > 0 && is_wsp(line[name_len - 1]))
		name_len--;
	need = name_len + 2 * raw_len + 3 + sizeof(*h);
	if (x->header_bytes + need > p->set.max_header_bytes) {
		x->flags |= MIME_PART_F_HEADER_LIMIT;
		return;
	}
	if (mem_reserve(p, need) < 0) {
		x->flags |= MIME_PART_F_HEADER_LIMIT;
		return;
	}
	x->header_bytes += need;
	if (x->nfields == x->afields) {
		x->afields = x->afields == 0 ? 8 : x->afields * 2;
		x->fields = xrealloc(x->fields,
				     x->afields * sizeof(*x->fields));
	}
	h = &x->fields[x->nfields++];
	blk = xmalloc(name_len + 2 * raw_len + 3);
	memcpy(blk, line, name_len);
	blk[name_len] = '\0';
	memcpy(blk + name_len + 1, colon + 1, raw_len);
	blk[name_len + 1 + raw_len] = '\0';
	h->name = blk;
	h->raw = blk + name_len + 1;
	h->raw_len = raw_len;
	h->value = blk + name_len + raw_len + 2;
	h->value_len = unfold(blk + name_len + raw_len + 2, colon + 1,
			      raw_len);
	h->truncated = p->field_trunc;
}

static void field_finish(struct mime_parser *p)
{
	const char *s = str_c(p->field), *colon;
	size_t len = str_len(p->field);

	if (!p->field_active)
		return;
	p->field_active = 0;
	if (p->field_trunc)
		p->cur->flags |= MIME_PART_F_HEADER_TRUNCATED;
	colon = memchr(s, ':', len);
	if (colon == NULL || colon == s) {
		p->cur->flags |= MIME_PART_F_BAD_HEADER;
		return;
	}
	field_store(p, p->cur, s, len, (size_t)(colon - s));
}

static void field_append(struct mime_parser *p, const void *d, size_t n)
{
	size_t room = str_room(p->field);

	if (n == 0)
		return;
	if (n > room) {
		p->field_trunc = 1;
		n = room;
	}
	(void)!str_append(p->field, d, n);
}

static void header_flags(struct mime_part *x, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)s[i] >= 0x80)
			x->flags |= MIME_PART_F_8BIT_HEADER;
		else if (s[i] == '\0')
			x->flags |= MIME_PART_F_BAD_HEADER;
	}
}

/* ---- Content-* ---- */

static int is_token_char(unsigned char c)
{
	return c > 0x20 && c < 0x7F && strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

static const char *skip_cfws(const char *s, const char *end)
{
	unsigned int depth = 0;

	for (; s < end; s++) {
		if (*s == '(')
			depth++;
		else if (*s == ')' && depth > 0)
			depth--;
		else if (depth == 0 && !is_wsp(*s) && *s != '\r' &&
			 *s != '\n')
			break;
	}
	return s;
}

static char *read_token(const char **s, const char *end)
{
	const char *start;

	*s = skip_cfws(*s, end);
	start = *s;
	while (*s < end && is_token_char((unsigned char)**s))
		(*s)++;
	if (*s == start)
		return NULL;
	return xstrndup(start, (size_t)(*s - start));
}

/* "type/subtype" at the start of a Content-Type value. */
static int ctype_split(const char *v, size_t len, char **type_r,
		       char **subtype_r)
{
	const char *s = v, *end = v + len;

	*type_r = read_token(&s, end);
	*subtype_r = NULL;
	s = skip_cfws(s, end);
	if (*type_r != NULL && s < end && *s == '/') {
		s++;
		*subtype_r = read_token(&s, end);
	}
	if (*subtype_r != NULL)
		return 0;
	free(*type_r);
	*type_r = NULL;
	return -1;
}

static void ctype_default(struct mime_part *x)
{
	const struct mime_part *mp = x->parent;

	if (mp != NULL && mp->kind == MIME_KIND_MULTIPART &&
	    strcasecmp(mp->subtype, "digest") == 0) {
		x->type = xstrdup("message");
		x->subtype = xstrdup("rfc822");
		return;
	}
	x->type = xstrdup("text");
	x->subtype = xstrdup("plain");
	x->params = xcalloc(1, sizeof(*x->params));
	x->params[0].name = xstrdup("charset");
	x->params[0].value = xstrdup("us-ascii");
	x->params[0].utf8 = xstrdup("us-ascii");
	x->nparams = 1;
}

static void ctype_parse(struct mime_parser *p, struct mime_part *x)
{
	const struct mime_header *h = mime_part_header_find(x, "content-type");
	size_t lead, bytes;

	if (h != NULL) {
		mime_params_parse(h->value, h->value_len, &lead, &x->params,
				  &x->nparams, &bytes);
		p->mem += bytes;
		if (ctype_split(h->value, lead, &x->type, &x->subtype) == 0)
			return;
		mime_params_free(&x->params, x->nparams);
		x->nparams = 0;
	}
	ctype_default(x);
}

static void disposition_parse(struct mime_parser *p, struct mime_part *x)
{
	const struct mime_header *h =
		mime_part_header_find(x, "content-disposition");
	const char *s;
	size_t lead, bytes;

	if (h == NULL)
		return;
	s = h->value;
	mime_params_parse(h->value, h->value_len, &lead, &x->dparams,
			  &x->ndparams, &bytes);
	p->mem += bytes;
	x->disposition = read_token(&s, h->value + lead);
}

static int cte_is_identity(const struct mime_part *x)
{
	const struct mime_header *h =
		mime_part_header_find(x, "content-transfer-encoding");
	const char *s, *end;
	char *tok;
	int ret;

	if (h == NULL)
		return 1;
	s = h->value;
	end = h->value + h->value_len;
	tok = read_token(&s, end);
	ret = tok == NULL || strcasecmp(tok, "7bit") == 0 ||
	      strcasecmp(tok, "8bit") == 0 || strcasecmp(tok, "binary") == 0;
	free(tok);
	return ret;
}

static void boundary_find(struct mime_part *x)
{
	for (size_t i = 0; i < x->nparams; i++) {
		size_t len = strlen(x->params[i].value);

		if (strcmp(x->params[i].name, "boundary") != 0)
			continue;
		if (len > 0 && len <= MIME_BOUNDARY_MAX) {
			x->boundary = x->params[i].value;
			x->boundary_len = len;
		}
		return;
	}
}

static void kind_decide(struct mime_parser *p, struct mime_part *x)
{
	int deep = x->depth >= p->set.max_depth;

	x->kind = MIME_KIND_LEAF;
	if (strcasecmp(x->type, "multipart") == 0) {
		boundary_find(x);
		if (x->boundary != NULL && !deep)
			x->kind = MIME_KIND_MULTIPART;
		else
			part_make_opaque(x);
	} else if (mime_part_is(x, "message", "rfc822") ||
		   mime_part_is(x, "message", "global")) {
		if (cte_is_identity(x) && !deep)
			x->kind = MIME_KIND_MESSAGE;
		else
			part_make_opaque(x);
	}
	if (deep && (x->flags & MIME_PART_F_OPAQUE))
		x->flags |= MIME_PART_F_LIMIT_HIT;
}

static void header_done(struct mime_parser *p, struct mime_part *x,
			uint64_t body_off, uint64_t lf_start)
{
	x->body_off = x->body_end = body_off;
	x->lf_start = lf_start;
	x->header_done = 1;
	ctype_parse(p, x);
	disposition_parse(p, x);
	kind_decide(p, x);
}

/* ---- structure ---- */

static void bstack_push(struct mime_parser *p, struct mime_part *x)
{
	if (p->nb == p->ab) {
		p->ab = p->ab == 0 ? 8 : p->ab * 2;
		p->bstack = xrealloc(p->bstack, p->ab * sizeof(*p->bstack));
	}
	p->bstack[p->nb++] = x;
}

/* After the blank line: multiparts wait for boundaries, messages start
 * their encapsulated message right away. */
static void body_begin(struct mime_parser *p)
{
	struct mime_part *x = p->cur, *child;

	p->in_header = 0;
	if (x->kind == MIME_KIND_MULTIPART) {
		bstack_push(p, x);
	} else if (x->kind == MIME_KIND_MESSAGE) {
		child = part_new(p, x, x->body_off);
		if (child == NULL) {
			part_make_opaque(x);
			return;
		}
		p->cur = child;
		p->in_header = 1;
	}
}

static void part_close(struct mime_parser *p, struct mime_part *x,
		       uint64_t end, uint64_t lf_end, int trail)
{
	if (!x->header_done) {
		if (x == p->cur)
			field_finish(p);
		header_done(p, x, end, lf_end);
	}
	if (end <= x->body_off) {
		x->body_end = x->body_off;
		x->lines = 0;
	} else {
		x->body_end = end;
		x->lines = lf_end - x->lf_start + (trail ? 1 : 0);
	}
	if (x->kind != MIME_KIND_LEAF && x->nchildren == 0)
		part_make_opaque(x);
}

/* Closes p->cur and its ancestors below stop (all when stop is NULL). */
static void close_up_to(struct mime_parser *p, struct mime_part *stop,
			uint64_t end, uint64_t lf_end, int trail)
{
	struct mime_part *x;

	for (x = p->cur; x != stop; x = x->parent)
		part_close(p, x, end, lf_end, trail);
	p->in_header = 0;
}

static int all_wsp(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!is_wsp(s[i]))
			return 0;
	}
	return 1;
}

/* Index+1 in the boundary stack of the multipart whose boundary the line
 * is (innermost first), 0 for none. */
static size_t boundary_match(const struct mime_parser *p,
			     const struct line *ln, int *close_r)
{
	const char *rest;
	size_t i, rlen, bl;

	if (p->nb == 0 || ln->klen < 2 || ln->kept[0] != '-' ||
	    ln->kept[1] != '-' || p->tail_nonws > 0)
		return 0;
	for (i = p->nb; i-- > 0;) {
		bl = p->bstack[i]->boundary_len;
		if (ln->klen < 2 + bl ||
		    memcmp(ln->kept + 2, p->bstack[i]->boundary, bl) != 0)
			continue;
		rest = ln->kept + 2 + bl;
		rlen = ln->klen - 2 - bl;
		*close_r = rlen >= 2 && rest[0] == '-' && rest[1] == '-';
		if (*close_r) {
			rest += 2;
			rlen -= 2;
		}
		if (all_wsp(rest, rlen))
			return i + 1;
	}
	return 0;
}

static void boundary_hit(struct mime_parser *p, size_t idx, int close,
			 const struct line *ln)
{
	struct mime_part *m = p->bstack[idx], *child;
	uint64_t end = ln->start - p->pending_eol;
	uint64_t lf_end = p->lf_count - (p->pending_eol > 0 ? 1 : 0);

	close_up_to(p, m, end, lf_end, p->prev_nonempty);
	p->cur = m;
	p->nb = idx + 1;
	if (close) {
		p->nb = idx;
		m->mp_state = MP_EPILOGUE;
		return;
	}
	p->eol_next = 0;
	p->nonempty_next = 0;
	if (m->mp_state == MP_SKIP)
		return;
	child = part_new(p, m, ln->next);
	if (child == NULL) {
		m->mp_state = MP_SKIP;
		return;
	}
	m->mp_state = MP_CHILD;
	p->cur = child;
	p->in_header = 1;
}

static void header_line(struct mime_parser *p, const struct line *ln)
{
	if (ln->clen == 0) {
		field_finish(p);
		header_done(p, p->cur, ln->next, p->lf_count + 1);
		body_begin(p);
		p->eol_next = 0;
		return;
	}
	header_flags(p->cur, ln->kept, ln->klen);
	if (ln->klen > 0 && is_wsp(ln->kept[0]) && p->field_active) {
		field_append(p, p->pending_eol == 2 ? "\r\n" : "\n",
			     p->pending_eol == 2 ? 2 : 1);
		field_append(p, ln->kept, ln->klen);
	} else {
		field_finish(p);
		str_clear(p->field);
		p->field_active = 1;
		p->field_trunc = 0;
		field_append(p, ln->kept, ln->klen);
	}
	if (ln->clen > ln->klen)
		p->field_trunc = 1;
}

static void line_process(struct mime_parser *p, const struct line *ln)
{
	size_t idx;
	int close = 0;

	p->eol_next = ln->eol;
	p->nonempty_next = ln->clen > 0;
	idx = boundary_match(p, ln, &close);
	if (idx > 0)
		boundary_hit(p, idx - 1, close, ln);
	else if (p->in_header)
		header_line(p, ln);
	p->pending_eol = p->eol_next;
	p->prev_nonempty = p->nonempty_next;
}

/* ---- input ---- */

static size_t line_keep_now(const struct mime_parser *p)
{
	if (p->in_header)
		return p->set.max_header_line;
	return p->nb > 0 ? BOUNDARY_KEEP : 0;
}

static void line_add(struct mime_parser *p, const char *d, size_t n)
{
	size_t copy;

	if (n == 0)
		return;
	if (p->line_total == 0)
		p->line_keep = line_keep_now(p);
	copy = p->line_keep - p->line_len;
	if (copy > n)
		copy = n;
	if (p->line_len + copy > p->line_cap) {
		p->line_cap = p->line_cap * 2 > p->line_len + copy ?
			      p->line_cap * 2 : p->line_len + copy;
		if (p->line_cap > p->line_keep)
			p->line_cap = p->line_keep;
		p->line = xrealloc(p->line, p->line_cap);
	}
	if (copy > 0) {
		memcpy(p->line + p->line_len, d, copy);
		p->line_len += copy;
	}
	for (size_t i = copy; i < n; i++)
		p->tail_nonws += !is_wsp(d[i]);
	p->last_byte = (unsigned char)d[n - 1];
	p->line_total += n;
	p->offset += n;
}

static void line_end(struct mime_parser *p, int has_lf)
{
	struct line ln;

	ln.clen = p->line_total;
	ln.eol = has_lf ? 1 : 0;
	if (has_lf && ln.clen > 0 && p->last_byte == '\r') {
		ln.eol = 2;
		ln.clen--;
		if (p->line_len > ln.clen)
			p->line_len = (size_t)ln.clen;
		else
			p->tail_nonws--;
	}
	ln.kept = p->line;
	ln.klen = p->line_len;
	ln.start = p->line_start;
	ln.next = p->offset + (has_lf ? 1 : 0);
	line_process(p, &ln);
	p->offset = ln.next;
	p->lf_count += has_lf ? 1 : 0;
	p->line_start = p->offset;
	p->line_len = 0;
	p->line_total = 0;
	p->tail_nonws = 0;
}

void mime_parser_feed(struct mime_parser *p, const void *data, size_t size)
{
	const char *d = data, *end = d + size, *lf;

	while (d < end) {
		lf = memchr(d, '\n', (size_t)(end - d));
		line_add(p, d, (size_t)((lf != NULL ? lf : end) - d));
		if (lf == NULL)
			break;
		line_end(p, 1);
		d = lf + 1;
	}
}

struct mime_parser *mime_parser_new(const struct mime_settings *set)
{
	struct mime_parser *p = xcalloc(1, sizeof(*p));

	if (set != NULL)
		p->set = *set;
	else
		mime_settings_init(&p->set);
	mime_settings_clamp(&p->set);
	p->root = part_new(p, NULL, 0);
	p->mem = sizeof(*p->root);
	p->cur = p->root;
	p->in_header = 1;
	p->field = str_new(256, p->set.max_header_line);
	return p;
}

void mime_parser_free(struct mime_parser **pp)
{
	struct mime_parser *p = *pp;

	if (p == NULL)
		return;
	mime_part_free(&p->root);
	str_free(&p->field);
	free(p->line);
	free(p->bstack);
	free(p);
	*pp = NULL;
}

struct mime_part *mime_parser_finish(struct mime_parser **pp)
{
	struct mime_parser *p = *pp;
	struct mime_part *root;

	if (p->line_total > 0)
		line_end(p, 0);
	for (size_t i = 0; i < p->nb; i++)
		p->bstack[i]->flags |= MIME_PART_F_NO_CLOSE;
	close_up_to(p, NULL, p->offset, p->lf_count,
		    p->pending_eol == 0 && p->prev_nonempty);
	root = p->root;
	p->root = NULL;
	mime_parser_free(pp);
	return root;
}

/* ---- accessors ---- */

const struct mime_part *mime_part_parent(const struct mime_part *part)
{
	return part->parent;
}

const struct mime_part *mime_part_child(const struct mime_part *part)
{
	return part->child;
}

const struct mime_part *mime_part_next(const struct mime_part *part)
{
	return part->next;
}

unsigned int mime_part_child_count(const struct mime_part *part)
{
	return part->nchildren;
}

enum mime_kind mime_part_kind(const struct mime_part *part)
{
	return part->kind;
}

unsigned int mime_part_flags(const struct mime_part *part)
{
	return part->flags;
}

unsigned int mime_part_flags_all(const struct mime_part *part)
{
	const struct mime_part *x = part;
	unsigned int flags = 0;

	while (x != NULL) {
		flags |= x->flags;
		if (x->child != NULL) {
			x = x->child;
			continue;
		}
		while (x != part && x->next == NULL)
			x = x->parent;
		x = x == part ? NULL : x->next;
	}
	return flags;
}

struct mime_range mime_part_header_range(const struct mime_part *part)
{
	struct mime_range r = { part->hdr_off, part->body_off - part->hdr_off };

	return r;
}

struct mime_range mime_part_body_range(const struct mime_part *part)
{
	struct mime_range r = { part->body_off,
				part->body_end - part->body_off };

	return r;
}

uint64_t mime_part_body_lines(const struct mime_part *part)
{
	return part->lines;
}

const char *mime_part_type(const struct mime_part *part)
{
	return part->type;
}

const char *mime_part_subtype(const struct mime_part *part)
{
	return part->subtype;
}

int mime_part_is(const struct mime_part *part, const char *type,
		 const char *subtype)
{
	return strcasecmp(part->type, type) == 0 &&
	       (subtype == NULL || strcasecmp(part->subtype, subtype) == 0);
}

size_t mime_part_params(const struct mime_part *part,
			const struct mime_param **params_r)
{
	*params_r = part->params;
	return part->nparams;
}

const char *mime_part_disposition(const struct mime_part *part,
				  const struct mime_param **params_r,
				  size_t *count_r)
{
	*params_r = part->dparams;
	*count_r = part->ndparams;
	return part->disposition;
}

const char *mime_part_param_utf8(const struct mime_part *part,
				 int disposition, const char *name)
{
	const struct mime_param *ps = disposition ? part->dparams :
				      part->params;
	size_t n = disposition ? part->ndparams : part->nparams;
	size_t len = strlen(name);

	for (size_t i = 0; i < n; i++) {
		if (strncmp(ps[i].name, name, len) == 0 &&
		    (ps[i].name[len] == '\0' ||
		     (ps[i].name[len] == '*' && ps[i].name[len + 1] == '\0')))
			return ps[i].utf8;
	}
	return NULL;
}

size_t mime_part_header_count(const struct mime_part *part)
{
	return part->nfields;
}

const struct mime_header *mime_part_header(const struct mime_part *part,
					   size_t i)
{
	return i < part->nfields ? &part->fields[i] : NULL;
}

const struct mime_header *mime_part_header_find(const struct mime_part *part,
						const char *name)
{
	for (size_t i = 0; i < part->nfields; i++) {
		if (strcasecmp(part->fields[i].name, name) == 0)
			return &part->fields[i];
	}
	return NULL;
}

/* ---- sections ---- */

/* Part number n below cur; is_msg says cur stands for a message (the
 * root, or the message inside a message/rfc822 part). */
static const struct mime_part *section_step(const struct mime_part *cur,
					    int is_msg, unsigned long n)
{
	const struct mime_part *c;
	unsigned long i;

	if (!is_msg && cur->kind == MIME_KIND_MESSAGE)
		return section_step(cur->child, 1, n);
	if (cur->kind == MIME_KIND_MULTIPART) {
		for (c = cur->child, i = 1; c != NULL && i < n; i++)
			c = c->next;
		return c;
	}
	return is_msg && n == 1 ? cur : NULL;
}

static int section_text(const struct mime_part *x, int is_msg,
			const char *s, struct mime_range *range_r)
{
	if (!is_msg) {
		if (strcmp(s, "MIME") == 0) {
			*range_r = mime_part_header_range(x);
			return 0;
		}
		if (x->kind != MIME_KIND_MESSAGE)
			return -1;
		x = x->child;
	}
	if (strcmp(s, "TEXT") == 0)
		*range_r = mime_part_body_range(x);
	else if (strcmp(s, "HEADER") == 0 || strcmp(s, "HEADER.FIELDS") == 0 ||
		 strcmp(s, "HEADER.FIELDS.NOT") == 0)
		*range_r = mime_part_header_range(x);
	else
		return -1;
	return 0;
}

int mime_section_find(const struct mime_part *root, const char *section,
		      struct mime_range *range_r, const char **error_r)
{
	const struct mime_part *x = root;
	const char *s = section;
	int is_msg = 1;

	while (*s >= '1' && *s <= '9') {
		char *endp;
		unsigned long n = strtoul(s, &endp, 10);

		x = section_step(x, is_msg, n);
		if (x == NULL || endp - s > 9) {
			*error_r = "no such part";
			return -1;
		}
		is_msg = 0;
		s = endp;
		if (*s == '\0')
			break;
		if (*s++ != '.' || *s == '\0') {
			*error_r = "invalid section";
			return -1;
		}
	}
	if (*s == '\0') {
		*range_r = is_msg ? (struct mime_range){ 0, root->body_end } :
			   mime_part_body_range(x);
		return 0;
	}
	if (section_text(x, is_msg, s, range_r) < 0) {
		*error_r = "invalid section";
		return -1;
	}
	return 0;
}
