/*
 * httpparse.c: HTTP/1.x heads and the chunked coding (httpparse.h).
 *
 * The head is gathered byte by byte into one buffer, line endings checked
 * on the way (CR must be followed by LF, LF preceded by CR) and turned into
 * NULs, so that each line is a C string when the empty line arrives; then
 * the start line, the fields and the framing are checked in one pass.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "compat.h"
#include "httpparse.h"
#include "str.h"
#include "xalloc.h"

struct http_parser {
	enum http_kind kind;
	size_t head_max, headers_max;
	char *buf;		/* grows up to head_max + 1 bytes */
	size_t cap;		/* bytes allocated */
	size_t len;		/* bytes in buf */
	size_t line_start;	/* offset of the current line in buf */
	size_t lines;		/* complete non-empty lines */
	size_t consumed;	/* bytes taken, CRs and leading CRLFs too */
	bool cr;		/* the last byte was CR */
	bool head_request;
	struct http_field *fields;
	struct http_head head;
};

/* Room for one more byte of head: false past head_max.  Nothing points
 * into buf before the head is complete, so it may move. */
static bool head_room(struct http_parser *p)
{
	if (p->len >= p->head_max)
		return false;
	if (p->len + 1 >= p->cap) {
		p->cap = p->cap * 2 > p->head_max + 1 ? p->head_max + 1 :
							 p->cap * 2;
		p->buf = xrealloc(p->buf, p->cap);
	}
	return true;
}

struct http_parser *http_parser_new(enum http_kind kind, size_t head_max,
				    size_t headers_max)
{
	struct http_parser *p = xcalloc(1, sizeof(*p));

	if (head_max < HTTP_HEAD_MIN)
		head_max = HTTP_HEAD_MIN;
	if (head_max > HTTP_HEAD_MAX)
		head_max = HTTP_HEAD_MAX;
	if (headers_max < 1)
		headers_max = 1;
	if (headers_max > HTTP_HEADERS_MAX)
		headers_max = HTTP_HEADERS_MAX;
	p->kind = kind;
	p->head_max = head_max;
	p->headers_max = headers_max;
	p->cap = HTTP_HEAD_MIN;
	p->buf = xmalloc(p->cap);
	p->fields = xcalloc(headers_max, sizeof(*p->fields));
	http_parser_reset(p, false);
	return p;
}

void http_parser_free(struct http_parser **pp)
{
	struct http_parser *p = *pp;

	if (p == NULL)
		return;
	free(p->buf);
	free(p->fields);
	free(p);
	*pp = NULL;
}

void http_parser_reset(struct http_parser *p, bool head_request)
{
	p->len = p->line_start = p->lines = p->consumed = 0;
	p->cr = false;
	p->head_request = head_request;
	memset(&p->head, 0, sizeof(p->head));
}

/* ---- character classes ---- */

static bool is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-vchar, SP or HTAB (obs-text included). */
static bool is_field_char(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* ---- lists ---- */

/* The next element of a comma-separated list: *start and *len (trimmed),
 * false at the end. */
static bool list_next(const char **pos, const char *end, const char **start,
		      size_t *len)
{
	const char *p = *pos, *e;

	while (p < end && (is_ows(*p) || *p == ','))
		p++;
	if (p >= end)
		return false;
	e = p;
	while (e < end && *e != ',')
		e++;
	*pos = e;
	*start = p;
	while (e > p && is_ows(e[-1]))
		e--;
	*len = (size_t)(e - p);
	return true;
}

bool http_list_has(const char *value, size_t len, const char *token)
{
	const char *pos = value, *end = value + len, *s;
	size_t n, tlen = strlen(token);

	while (list_next(&pos, end, &s, &n)) {
		if (n == tlen && strncasecmp(s, token, n) == 0)
			return true;
	}
	return false;
}

const struct http_field *http_head_field(const struct http_head *h,
					 const char *name)
{
	for (size_t i = 0; i < h->nfields; i++) {
		if (strcasecmp(h->fields[i].name, name) == 0)
			return &h->fields[i];
	}
	return NULL;
}

/* ---- the start line ---- */

/* "HTTP/1.0" or "HTTP/1.1": 0 with the minor; 505 for another well-formed
 * version, 400 for anything else. */
static unsigned parse_version(const char *v, size_t len, unsigned *minor_r)
{
	if (len != 8 || strncmp(v, "HTTP/", 5) != 0 || v[5] < '0' ||
	    v[5] > '9' || v[6] != '.' || v[7] < '0' || v[7] > '9')
		return 400;
	if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
		return 505;
	*minor_r = (unsigned)(v[7] - '0');
	return 0;
}

static unsigned parse_request_line(struct http_parser *p, char *line,
				   const char **error_r)
{
	char *sp1, *sp2;
	unsigned st;

	for (sp1 = line; is_tchar((unsigned char)*sp1); sp1++)
		;
	if (sp1 == line || *sp1 != ' ') {
		*error_r = "bad method";
		return 400;
	}
	for (sp2 = sp1 + 1; (unsigned char)*sp2 > 0x20 &&
			    (unsigned char)*sp2 < 0x7f; sp2++)
		;
	if (sp2 == sp1 + 1 || *sp2 != ' ') {
		*error_r = "bad request target";
		return 400;
	}
	st = parse_version(sp2 + 1, strlen(sp2 + 1), &p->head.minor);
	if (st != 0) {
		*error_r = st == 505 ? "HTTP version not supported" :
				       "bad HTTP version";
		return st;
	}
	*sp1 = *sp2 = '\0';
	p->head.method = line;
	p->head.target = sp1 + 1;
	return 0;
}

static unsigned parse_status_line(struct http_parser *p, char *line,
				  const char **error_r)
{
	const char *r;
	unsigned st;

	*error_r = "bad status line";
	if (strlen(line) < 12 || line[8] != ' ')
		return 400;
	st = parse_version(line, 8, &p->head.minor);
	if (st != 0)
		return st;
	for (int i = 9; i < 12; i++) {
		if (line[i] < '0' || line[i] > '9')
			return 400;
	}
	p->head.status = (unsigned)((line[9] - '0') * 100 +
				    (line[10] - '0') * 10 + (line[11] - '0'));
	if (p->head.status < 100 || (line[12] != ' ' && line[12] != '\0'))
		return 400;
	r = line[12] == ' ' ? line + 13 : line + 12;
	for (const char *c = r; *c != '\0'; c++) {
		if (!is_field_char((unsigned char)*c))
			return 400;
	}
	p->head.reason = r;
	return 0;
}

/* ---- fields ---- */

static unsigned parse_field(char *line, struct http_field *f,
			    const char **error_r)
{
	char *c = line, *v, *e;

	if (is_ows(*line)) {
		*error_r = "obsolete line folding";
		return 400;
	}
	while (is_tchar((unsigned char)*c))
		c++;
	if (c == line || *c != ':') {
		*error_r = "bad field name";
		return 400;
	}
	*c = '\0';
	for (v = c + 1; is_ows(*v); v++)
		;
	for (e = v; *e != '\0'; e++) {
		if (!is_field_char((unsigned char)*e)) {
			*error_r = "bad character in a field value";
			return 400;
		}
	}
	while (e > v && is_ows(e[-1]))
		e--;
	*e = '\0';
	f->name = line;
	f->name_len = (size_t)(c - line);
	f->value = v;
	f->value_len = (size_t)(e - v);
	return 0;
}

/* Content-Length (possibly a list): every element the same number. */
static unsigned content_length(struct http_head *h, bool *seen,
			       const struct http_field *f,
			       const char **error_r)
{
	const char *pos = f->value, *end = f->value + f->value_len, *s;
	size_t n;
	bool any = false;

	*error_r = "bad Content-Length";
	while (list_next(&pos, end, &s, &n)) {
		uint64_t v = 0;

		if (n == 0 || n > 18)
			return 400;
		for (size_t i = 0; i < n; i++) {
			if (s[i] < '0' || s[i] > '9')
				return 400;
			v = v * 10 + (uint64_t)(s[i] - '0');
		}
		if (*seen && v != h->content_length) {
			*error_r = "several different Content-Lengths";
			return 400;
		}
		*seen = any = true;
		h->content_length = v;
	}
	return any ? 0 : 400;
}

/* Transfer-Encoding: whether the last coding is chunked, chunked only
 * last. */
static unsigned transfer_encoding(const struct http_field *f, bool *chunked,
				  const char **error_r)
{
	const char *pos = f->value, *end = f->value + f->value_len, *s;
	size_t n;
	bool any = false;

	while (list_next(&pos, end, &s, &n)) {
		if (*chunked) {
			*error_r = "a coding after chunked";
			return 400;
		}
		*chunked = n == 7 && strncasecmp(s, "chunked", 7) == 0;
		any = true;
	}
	if (!any) {
		*error_r = "empty Transfer-Encoding";
		return 400;
	}
	return 0;
}

static unsigned framing(struct http_parser *p, const char **error_r)
{
	struct http_head *h = &p->head;
	bool cl = false, te = false, chunked = false, close = false;
	bool ka = false;
	unsigned hosts = 0, st;

	for (size_t i = 0; i < h->nfields; i++) {
		const struct http_field *f = &h->fields[i];

		if (strcasecmp(f->name, "Content-Length") == 0) {
			if ((st = content_length(h, &cl, f, error_r)) != 0)
				return st;
		} else if (strcasecmp(f->name, "Transfer-Encoding") == 0) {
			te = true;
			if ((st = transfer_encoding(f, &chunked, error_r)) != 0)
				return st;
		} else if (strcasecmp(f->name, "Connection") == 0) {
			close |= http_list_has(f->value, f->value_len, "close");
			ka |= http_list_has(f->value, f->value_len,
					    "keep-alive");
		} else if (strcasecmp(f->name, "Host") == 0) {
			hosts++;
		} else if (strcasecmp(f->name, "Expect") == 0) {
			h->expect_continue |= http_list_has(
				f->value, f->value_len, "100-continue");
		}
	}
	h->keep_alive = !close && (h->minor >= 1 || ka);
	h->has_transfer_encoding = te;
	if (p->kind == HTTP_REQUEST) {
		*error_r = "Content-Length with Transfer-Encoding";
		if (te && cl)
			return 400;
		*error_r = "Transfer-Encoding in HTTP/1.0";
		if (te && h->minor == 0)
			return 400;
		*error_r = "Transfer-Encoding not ending in chunked";
		if (te && !chunked)
			return 400;
		*error_r = "no Host or several";
		if (hosts > 1 || (hosts == 0 && h->minor >= 1))
			return 400;
		h->body = te ? HTTP_BODY_CHUNKED :
			  cl && h->content_length > 0 ? HTTP_BODY_LENGTH :
							HTTP_BODY_NONE;
		return 0;
	}
	if (p->head_request || h->status < 200 || h->status == 204 ||
	    h->status == 304) {
		h->body = HTTP_BODY_NONE;
	} else if (te) {
		h->body = chunked ? HTTP_BODY_CHUNKED : HTTP_BODY_CLOSE;
	} else if (cl) {
		h->body = h->content_length > 0 ? HTTP_BODY_LENGTH :
						  HTTP_BODY_NONE;
	} else {
		h->body = HTTP_BODY_CLOSE;
	}
	if (h->body == HTTP_BODY_CLOSE)
		h->keep_alive = false;
	return 0;
}

/* The head is in buf as NUL-terminated lines: check it whole. */
static unsigned parse_head(struct http_parser *p, const char **error_r)
{
	char *line = p->buf, *end = p->buf + p->len;
	char *next = line + strlen(line) + 1;
	unsigned st;

	st = p->kind == HTTP_REQUEST ? parse_request_line(p, line, error_r) :
				       parse_status_line(p, line, error_r);
	if (st != 0)
		return st;
	for (line = next; line < end && *line != '\0'; line = next) {
		next = line + strlen(line) + 1;	/* before the NULs go in */
		st = parse_field(line, &p->fields[p->head.nfields], error_r);
		if (st != 0)
			return st;
		p->head.nfields++;
	}
	p->head.fields = p->fields;
	return framing(p, error_r);
}

int http_parser_feed(struct http_parser *p, const char **pos,
		     const char *end, const struct http_head **head_r,
		     unsigned *status_r, const char **error_r)
{
	const char *s = *pos;
	unsigned st;

	while (s < end) {
		char c = *s++;

		p->consumed++;
		if (p->cr) {
			p->cr = false;
			if (c != '\n')
				goto bare_cr;
		} else if (c == '\r') {
			p->cr = true;
			continue;
		} else if (c == '\n') {
			*status_r = 400;
			*error_r = "bare LF in the head";
			return -1;
		} else if (c == '\0') {
			*status_r = 400;
			*error_r = "NUL in the head";
			return -1;
		} else {
			if (!head_room(p))
				goto too_big;
			p->buf[p->len++] = c;
			continue;
		}
		/* a line ended */
		if (p->len == p->line_start && p->lines == 0) {
			/* CRLF before a request line: ignored, bounded */
			if (p->consumed > 8)
				goto bad_start;
			continue;
		}
		if (!head_room(p))
			goto too_big;
		p->buf[p->len++] = '\0';
		if (p->len - 1 == p->line_start) {
			*pos = s;
			p->head.head_len = p->consumed;
			st = parse_head(p, error_r);
			if (st != 0) {
				*status_r = st;
				return -1;
			}
			*head_r = &p->head;
			return 1;
		}
		p->line_start = p->len;
		if (++p->lines > p->headers_max + 1) {
			*status_r = 431;
			*error_r = "too many header fields";
			return -1;
		}
	}
	*pos = s;
	return 0;
bare_cr:
	*status_r = 400;
	*error_r = "bare CR in the head";
	return -1;
bad_start:
	*status_r = 400;
	*error_r = "empty lines before the start line";
	return -1;
too_big:
	*status_r = 431;
	*error_r = "head too large";
	return -1;
}

/* ---- chunked ---- */

enum {
	C_SIZE0,	/* the first digit of a chunk size */
	C_SIZE,		/* more digits, ';', BWS or CR */
	C_BWS,		/* whitespace after the size: more, ';' or CR */
	C_EXT,		/* a chunk extension up to CR */
	C_SIZE_LF,
	C_DATA,
	C_DATA_CR,
	C_DATA_LF,
	C_TRAILER,	/* the start of a trailer line or the final CRLF */
	C_TRAILER_LINE,
	C_TRAILER_LF,
	C_END_LF,
	C_DONE,
};

void http_chunked_init(struct http_chunked *c)
{
	memset(c, 0, sizeof(*c));
	c->state = C_SIZE0;
}

/* One byte of a size line: 0 or -1. */
static int chunk_size_byte(struct http_chunked *c, char b,
			   const char **error_r)
{
	int h = str_hex_value((unsigned char)b);

	if (++c->line > HTTP_CHUNK_LINE_MAX) {
		*error_r = "chunk size line too long";
		return -1;
	}
	switch (c->state) {
	case C_SIZE0:
	case C_SIZE:
		if (h >= 0) {
			if (++c->digits > 15) {
				*error_r = "chunk size too large";
				return -1;
			}
			c->left = c->left * 16 + (uint64_t)h;
			c->state = C_SIZE;
			return 0;
		}
		if (c->state == C_SIZE0)
			break;
		/* fall through */
	case C_BWS:
		if (is_ows(b)) {
			c->state = C_BWS;
		} else if (b == ';') {
			c->state = C_EXT;
		} else if (b == '\r') {
			c->state = C_SIZE_LF;
		} else {
			break;
		}
		return 0;
	case C_EXT:
		if (b == '\r')
			c->state = C_SIZE_LF;
		else if (!is_field_char((unsigned char)b))
			break;
		return 0;
	default:
		break;
	}
	*error_r = "bad chunk size line";
	return -1;
}

int http_chunked_feed(struct http_chunked *c, const char *data, size_t len,
		      size_t *used_r, const char **error_r)
{
	size_t i = 0;

	while (i < len) {
		char b = data[i];

		switch (c->state) {
		case C_SIZE0:
		case C_SIZE:
		case C_BWS:
		case C_EXT:
			if (chunk_size_byte(c, b, error_r) < 0)
				return -1;
			i++;
			continue;
		case C_SIZE_LF:
			if (b != '\n')
				goto bad;
			c->line = 0;
			c->digits = 0;
			c->state = c->left == 0 ? C_TRAILER : C_DATA;
			i++;
			continue;
		case C_DATA: {
			size_t n = len - i;

			if ((uint64_t)n > c->left)
				n = (size_t)c->left;
			c->left -= n;
			i += n;
			if (c->left == 0)
				c->state = C_DATA_CR;
			continue;
		}
		case C_DATA_CR:
			if (b != '\r')
				goto bad;
			c->state = C_DATA_LF;
			break;
		case C_DATA_LF:
			if (b != '\n')
				goto bad;
			c->state = C_SIZE0;
			break;
		case C_TRAILER:
			if (b == '\r') {
				c->state = C_END_LF;
				break;
			}
			if (is_ows(b) || !is_field_char((unsigned char)b))
				goto bad;
			c->state = C_TRAILER_LINE;
			c->line = 0;
			/* fall through */
		case C_TRAILER_LINE:
			if (++c->trailer > HTTP_TRAILER_MAX ||
			    ++c->line > HTTP_CHUNK_LINE_MAX) {
				*error_r = "trailer too large";
				return -1;
			}
			if (b == '\r')
				c->state = C_TRAILER_LF;
			else if (!is_field_char((unsigned char)b))
				goto bad;
			break;
		case C_TRAILER_LF:
			if (b != '\n')
				goto bad;
			c->state = C_TRAILER;
			break;
		case C_END_LF:
			if (b != '\n')
				goto bad;
			c->state = C_DONE;
			*used_r = i + 1;
			return 1;
		default:
			*error_r = "chunked body already ended";
			return -1;
		}
		i++;
	}
	*used_r = len;
	return 0;
bad:
	*error_r = "bad chunked framing";
	return -1;
}
