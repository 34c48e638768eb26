/* msgbody.c: a mapped message and its FETCH section data. */
#include "config.h"

#include "compat.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base64.h"
#include "mime.h"
#include "msgbody.h"
#include "str.h"
#include "xalloc.h"

struct msgbody {
	const unsigned char *data;
	size_t size;
	void *map;		/* NULL for memory and empty messages */
	size_t map_len;
	struct mime_settings set;
	struct mime_part *tree;
	struct mime_part *header;	/* the top header alone, or NULL */
};

/* ---- opening ---- */

static struct msgbody *msgbody_new(const struct mime_settings *set)
{
	struct msgbody *msg = xcalloc(1, sizeof(*msg));

	if (set != NULL)
		msg->set = *set;
	else
		mime_settings_init(&msg->set);
	mime_settings_clamp(&msg->set);
	return msg;
}

struct msgbody *msgbody_from_memory(const void *data, size_t size,
				    const struct mime_settings *set)
{
	struct msgbody *msg = msgbody_new(set);

	msg->data = size > 0 ? data : (const unsigned char *)"";
	msg->size = size;
	return msg;
}

static int open_check(int fd, const char *path, uint64_t size,
		      struct str *error)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return str_setf(error, "fstat(%s) failed: %s", path,
				strerror(errno));
	if (!S_ISREG(st.st_mode)) {
		errno = EINVAL;
		return str_setf(error, "%s is not a regular file", path);
	}
	if ((uint64_t)st.st_size < size) {
		errno = EIO;
		return str_setf(error, "%s is shorter than expected "
				"(%" PRIu64 " < %" PRIu64 " bytes)", path,
				(uint64_t)st.st_size, size);
	}
	if ((uint64_t)st.st_size > size) {
		errno = EIO;
		return str_setf(error, "%s is longer than expected "
				"(%" PRIu64 " > %" PRIu64 " bytes)", path,
				(uint64_t)st.st_size, size);
	}
	if (size > (uint64_t)SIZE_MAX || size > STR_MAX_LIMIT) {
		errno = EFBIG;
		return str_setf(error, "%s is too large to map (%" PRIu64
				" bytes)", path, size);
	}
	return 0;
}

int msgbody_open(const char *path, uint64_t size,
		 const struct mime_settings *set, struct msgbody **msg_r,
		 struct str *error)
{
	struct msgbody *msg;
	void *map = NULL;
	int fd, saved;

	*msg_r = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return str_setf(error, "open(%s) failed: %s", path,
				strerror(errno));
	if (open_check(fd, path, size, error) < 0) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	if (size > 0) {
		map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (map == MAP_FAILED) {
			saved = errno;
			close(fd);
			errno = saved;
			return str_setf(error, "mmap(%s, %" PRIu64
					" bytes) failed: %s", path, size,
					strerror(saved));
		}
	}
	close(fd);
	msg = msgbody_from_memory(map, (size_t)size, set);
	msg->map = map;
	msg->map_len = (size_t)size;
	*msg_r = msg;
	return 0;
}

void msgbody_close(struct msgbody **msgp)
{
	struct msgbody *msg = *msgp;

	if (msg == NULL)
		return;
	*msgp = NULL;
	if (msg->tree != NULL)
		mime_part_free(&msg->tree);
	if (msg->header != NULL)
		mime_part_free(&msg->header);
	if (msg->map != NULL)
		munmap(msg->map, msg->map_len);
	free(msg);
}

const unsigned char *msgbody_data(const struct msgbody *msg)
{
	return msg->data;
}

uint64_t msgbody_size(const struct msgbody *msg)
{
	return msg->size;
}

const struct mime_part *msgbody_tree(struct msgbody *msg)
{
	if (msg->tree == NULL) {
		struct mime_parser *p = mime_parser_new(&msg->set);

		mime_parser_feed(p, msg->data, msg->size);
		msg->tree = mime_parser_finish(&p);
	}
	return msg->tree;
}

const struct mime_part *msgbody_header(struct msgbody *msg)
{
	const unsigned char *d = msg->data, *end;
	size_t n = msg->size;

	if (msg->tree != NULL)
		return msg->tree;
	if (msg->header == NULL) {
		struct mime_parser *p = mime_parser_new(&msg->set);
		size_t len = n;	/* no empty line: all of it */

		/* The header ends at the first empty line (CRLF or LF). */
		for (end = d; end < d + n; end++) {
			end = memchr(end, '\n', (size_t)(d + n - end));
			if (end == NULL)
				break;
			if ((end + 1 < d + n && end[1] == '\n') ||
			    (end + 2 < d + n && end[1] == '\r' &&
			     end[2] == '\n')) {
				len = (size_t)(end - d) + 1;
				break;
			}
		}
		mime_parser_feed(p, d, len);
		msg->header = mime_parser_finish(&p);
	}
	return msg->header;
}

/* ---- parts ---- */

/* Part number n below cur; is_msg says cur stands for a message (the
 * root, or the message inside a message/rfc822 part). */
static const struct mime_part *part_step(const struct mime_part *cur,
					 bool is_msg, uint32_t n)
{
	const struct mime_part *c;

	if (!is_msg && mime_part_kind(cur) == MIME_KIND_MESSAGE) {
		c = mime_part_child(cur);
		return c == NULL ? NULL : part_step(c, true, n);
	}
	if (mime_part_kind(cur) == MIME_KIND_MULTIPART) {
		if (n == 0)
			return NULL;
		for (c = mime_part_child(cur); c != NULL && n > 1; n--)
			c = mime_part_next(c);
		return c;
	}
	return is_msg && n == 1 ? cur : NULL;
}

const struct mime_part *msgbody_part_find(struct msgbody *msg,
					  const uint32_t *parts,
					  size_t nparts, bool *is_msg_r)
{
	const struct mime_part *x = msgbody_tree(msg);
	bool is_msg = true;

	for (size_t i = 0; i < nparts && x != NULL; i++) {
		x = part_step(x, is_msg, parts[i]);
		is_msg = false;
	}
	*is_msg_r = is_msg;
	return x;
}

/* "value (comment)" -> the first token, lowercase compare. */
static bool cte_is(const char *v, size_t len, const char *name)
{
	size_t i = 0, j, nlen = strlen(name);

	while (i < len && (v[i] == ' ' || v[i] == '\t'))
		i++;
	j = i;
	while (j < len && v[j] != ' ' && v[j] != '\t' && v[j] != '(' &&
	       v[j] != ';')
		j++;
	return j - i == nlen && strncasecmp(v + i, name, nlen) == 0;
}

static bool cte_empty(const char *v, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (v[i] == '(')
			return true;
		if (v[i] != ' ' && v[i] != '\t')
			return false;
	}
	return true;
}

enum msgbody_cte msgbody_part_cte(const struct mime_part *part)
{
	const struct mime_header *h;

	h = mime_part_header_find(part, "Content-Transfer-Encoding");
	if (h == NULL || cte_empty(h->value, h->value_len))
		return MSGBODY_CTE_IDENTITY;
	if (cte_is(h->value, h->value_len, "base64"))
		return MSGBODY_CTE_BASE64;
	if (cte_is(h->value, h->value_len, "quoted-printable"))
		return MSGBODY_CTE_QP;
	if (cte_is(h->value, h->value_len, "7bit") ||
	    cte_is(h->value, h->value_len, "8bit") ||
	    cte_is(h->value, h->value_len, "binary"))
		return MSGBODY_CTE_IDENTITY;
	return MSGBODY_CTE_UNKNOWN;
}

/* ---- transfer decoding ---- */

/* Output in chunks to a str, or only counted when out is NULL. */
struct sink {
	struct str *out;
	uint64_t count;
	size_t n;
	int failed;
	unsigned char buf[4096];
};

static void sink_flush(struct sink *s)
{
	if (s->out != NULL && s->n > 0 && !s->failed &&
	    str_append(s->out, s->buf, s->n) < 0)
		s->failed = 1;
	s->n = 0;
}

static inline void sink_put(struct sink *s, unsigned char c)
{
	if (s->n == sizeof(s->buf))
		sink_flush(s);
	s->buf[s->n++] = c;
	s->count++;
}

static void sink_put_n(struct sink *s, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sink_put(s, p[i]);
}

static void decode_base64(const unsigned char *p, size_t len, struct sink *s)
{
	uint32_t acc = 0;
	unsigned int n = 0;

	for (size_t i = 0; i < len && p[i] != '='; i++) {
		int v = base64_value(p[i]);

		if (v < 0)
			continue;
		acc = acc << 6 | (uint32_t)v;
		if (++n == 4) {
			sink_put(s, (unsigned char)(acc >> 16));
			sink_put(s, (unsigned char)(acc >> 8));
			sink_put(s, (unsigned char)acc);
			acc = 0;
			n = 0;
		}
	}
	if (n == 2) {
		sink_put(s, (unsigned char)(acc >> 4));
	} else if (n == 3) {
		sink_put(s, (unsigned char)(acc >> 10));
		sink_put(s, (unsigned char)(acc >> 2));
	}
}

/* One line of quoted-printable text, line end excluded. */
static void decode_qp_text(const unsigned char *p, size_t len,
			   struct sink *s)
{
	for (size_t i = 0; i < len; i++) {
		int hi, lo;

		if (p[i] == '=') {
			hi = i + 1 < len ? str_hex_value(p[i + 1]) : -1;
			lo = i + 2 < len ? str_hex_value(p[i + 2]) : -1;
			if (hi >= 0 && lo >= 0) {
				sink_put(s, (unsigned char)(hi << 4 | lo));
				i += 2;
				continue;
			}
		}
		sink_put(s, p[i]);
	}
}

static void decode_qp(const unsigned char *p, size_t len, struct sink *s)
{
	size_t pos = 0;

	while (pos < len) {
		const unsigned char *lf = memchr(p + pos, '\n', len - pos);
		size_t end = lf != NULL ? (size_t)(lf - p) : len;
		size_t text_end = end, eol_start;

		if (lf != NULL && text_end > pos && p[text_end - 1] == '\r')
			text_end--;
		eol_start = text_end;
		while (text_end > pos && (p[text_end - 1] == ' ' ||
					  p[text_end - 1] == '\t'))
			text_end--;
		if (text_end > pos && p[text_end - 1] == '=') {
			/* soft line break: no line end in the output */
			decode_qp_text(p + pos, text_end - 1 - pos, s);
		} else {
			decode_qp_text(p + pos, text_end - pos, s);
			if (lf != NULL)
				sink_put_n(s, p + eol_start,
					   end + 1 - eol_start);
		}
		pos = lf != NULL ? end + 1 : len;
	}
}

static int cte_run(enum msgbody_cte cte, const unsigned char *p, size_t len,
		   struct sink *s)
{
	switch (cte) {
	case MSGBODY_CTE_BASE64:
		decode_base64(p, len, s);
		break;
	case MSGBODY_CTE_QP:
		decode_qp(p, len, s);
		break;
	default:
		sink_put_n(s, p, len);
		break;
	}
	sink_flush(s);
	if (s->failed) {
		errno = ENOBUFS;
		return -1;
	}
	return 0;
}

int msgbody_cte_decode(enum msgbody_cte cte, const void *in, size_t len,
		       struct str *out)
{
	struct sink *s = xcalloc(1, sizeof(*s));
	size_t old = str_len(out);
	int ret;

	s->out = out;
	ret = cte_run(cte, in, len, s);
	free(s);
	if (ret < 0)
		str_truncate(out, old);
	return ret;
}

/* ---- results ---- */

static struct mime_range range_clamp(const struct msgbody *msg,
				     struct mime_range r)
{
	if (r.offset > msg->size)
		r.offset = msg->size;
	if (r.size > msg->size - r.offset)
		r.size = msg->size - r.offset;
	return r;
}

static void result_set(struct msgbody_result *res, const unsigned char *data,
		       uint64_t size)
{
	res->data = data;
	res->size = size;
	res->full_size = size;
}

static void result_partial(struct msgbody_result *res,
			   const struct imap_fetch_section *sec)
{
	uint64_t off = sec->offset, len = sec->length;

	if (!sec->partial || res->data == NULL)
		return;
	if (off > res->size)
		off = res->size;
	if (len > res->size - off)
		len = res->size - off;
	res->data += off;
	res->size = len;
}

static void result_nul(struct msgbody_result *res)
{
	res->has_nul = res->data != NULL && res->size > 0 &&
		       memchr(res->data, 0, (size_t)res->size) != NULL;
}

void msgbody_result_free(struct msgbody_result *res)
{
	str_free(&res->buf);
	memset(res, 0, sizeof(*res));
}

static int result_buf(struct msgbody_result *res, size_t need)
{
	if (need >= STR_MAX_LIMIT)
		return -1;
	res->buf = str_new(need + 1, need > 0 ? need : 1);
	return 0;
}

int msgbody_part_content(struct msgbody *msg, const struct mime_part *part,
			 struct msgbody_result *res_r, const char **error_r)
{
	struct mime_range r = range_clamp(msg, mime_part_body_range(part));
	enum msgbody_cte cte = msgbody_part_cte(part);

	memset(res_r, 0, sizeof(*res_r));
	if (mime_part_kind(part) == MIME_KIND_MULTIPART) {
		*error_r = "a multipart part has no content to decode";
		return MSGBODY_EBADSECTION;
	}
	if (cte == MSGBODY_CTE_UNKNOWN) {
		*error_r = "unknown Content-Transfer-Encoding";
		return MSGBODY_EUNKNOWN_CTE;
	}
	if (cte == MSGBODY_CTE_IDENTITY) {
		result_set(res_r, msg->data + r.offset, r.size);
		return MSGBODY_OK;
	}
	if (result_buf(res_r, (size_t)r.size) < 0 ||
	    msgbody_cte_decode(cte, msg->data + r.offset, (size_t)r.size,
			       res_r->buf) < 0) {
		msgbody_result_free(res_r);
		*error_r = "decoded content too large";
		return MSGBODY_ETOOBIG;
	}
	result_set(res_r, (const unsigned char *)str_c(res_r->buf),
		   str_len(res_r->buf));
	return MSGBODY_OK;
}

/* ---- HEADER.FIELDS ---- */

static size_t line_next(const unsigned char *h, size_t pos, size_t len)
{
	const unsigned char *lf = memchr(h + pos, '\n', len - pos);

	return lf != NULL ? (size_t)(lf - h) + 1 : len;
}

static bool is_blank_line(const unsigned char *h, size_t pos, size_t end)
{
	return (end - pos == 1 && h[pos] == '\n') ||
	       (end - pos == 2 && h[pos] == '\r' && h[pos + 1] == '\n');
}

static bool field_listed(const unsigned char *name, size_t len,
			 const struct imap_fetch_section *sec)
{
	for (size_t i = 0; i < sec->nfields; i++) {
		if (strlen(sec->fields[i]) == len &&
		    strncasecmp((const char *)name, sec->fields[i], len) == 0)
			return true;
	}
	return false;
}

/* The name of the field starting at h (before the colon, trailing
 * whitespace removed); false for a line without colon. */
static bool field_name(const unsigned char *h, size_t len, size_t *name_len_r)
{
	const unsigned char *colon = memchr(h, ':', len);
	size_t n;

	if (colon == NULL || memchr(h, '\n', (size_t)(colon - h)) != NULL)
		return false;
	n = (size_t)(colon - h);
	while (n > 0 && (h[n - 1] == ' ' || h[n - 1] == '\t'))
		n--;
	*name_len_r = n;
	return n > 0;
}

static int header_fields(const unsigned char *h, size_t len,
			 const struct imap_fetch_section *sec, struct str *out)
{
	bool negate = sec->spec == IMAP_SECTION_HEADER_FIELDS_NOT;
	const char *eol = "\r\n";
	size_t pos = 0, name_len;
	int ret = 0;

	while (pos < len) {
		size_t end = line_next(h, pos, len);

		if (is_blank_line(h, pos, end)) {
			if (end - pos == 1)
				eol = "\n";
			break;
		}
		while (end < len && (h[end] == ' ' || h[end] == '\t'))
			end = line_next(h, end, len);
		if (field_name(h + pos, end - pos, &name_len) &&
		    field_listed(h + pos, name_len, sec) != negate) {
			ret |= str_append(out, h + pos, end - pos);
			if (h[end - 1] != '\n')
				ret |= str_append_c(out, eol);
		}
		pos = end;
	}
	ret |= str_append_c(out, eol);
	return ret < 0 ? -1 : 0;
}

/* ---- sections ---- */

/* The message a HEADER/TEXT section applies to. */
static const struct mime_part *section_message(const struct mime_part *x,
					       bool is_msg)
{
	if (is_msg)
		return x;
	if (mime_part_kind(x) != MIME_KIND_MESSAGE)
		return NULL;
	return mime_part_child(x);
}

static int fetch_fields(struct msgbody *msg, const struct mime_part *m,
			const struct imap_fetch_section *sec,
			struct msgbody_result *res, const char **error_r)
{
	struct mime_range r = range_clamp(msg, mime_part_header_range(m));

	/* a last field without line end gets one, then the blank line */
	if (result_buf(res, (size_t)r.size + 4) < 0 ||
	    header_fields(msg->data + r.offset, (size_t)r.size, sec,
			  res->buf) < 0) {
		msgbody_result_free(res);
		*error_r = "header too large";
		return MSGBODY_ETOOBIG;
	}
	result_set(res, (const unsigned char *)str_c(res->buf),
		   str_len(res->buf));
	return MSGBODY_OK;
}

static int fetch_body(struct msgbody *msg, const struct mime_part *x,
		      bool is_msg, const struct imap_fetch_section *sec,
		      struct msgbody_result *res, const char **error_r)
{
	const struct mime_part *m;
	struct mime_range r;

	switch (sec->spec) {
	case IMAP_SECTION_ALL:
		r = sec->nparts == 0 ? (struct mime_range){ 0, msg->size } :
		    mime_part_body_range(x);
		break;
	case IMAP_SECTION_MIME:
		if (sec->nparts == 0)
			goto nopart;
		r = mime_part_header_range(x);
		break;
	default:
		m = section_message(x, is_msg);
		if (m == NULL)
			goto nopart;
		if (sec->spec == IMAP_SECTION_HEADER_FIELDS ||
		    sec->spec == IMAP_SECTION_HEADER_FIELDS_NOT)
			return fetch_fields(msg, m, sec, res, error_r);
		r = sec->spec == IMAP_SECTION_TEXT ? mime_part_body_range(m) :
		    mime_part_header_range(m);
		break;
	}
	r = range_clamp(msg, r);
	result_set(res, msg->data + r.offset, r.size);
	return MSGBODY_OK;
nopart:
	res->missing = true;
	*error_r = "no such section";
	return MSGBODY_ENOPART;
}

static int fetch_binary(struct msgbody *msg, const struct mime_part *x,
			const struct imap_fetch_section *sec,
			struct msgbody_result *res, const char **error_r)
{
	struct mime_range r;
	enum msgbody_cte cte;
	struct sink *s;

	if (sec->spec != IMAP_SECTION_ALL) {
		*error_r = "BINARY takes part numbers only";
		return MSGBODY_EBADSECTION;
	}
	if (sec->nparts == 0) {
		result_set(res, msg->data, msg->size);
		return MSGBODY_OK;
	}
	if (sec->kind == IMAP_FETCH_KIND_BINARY)
		return msgbody_part_content(msg, x, res, error_r);
	/* BINARY.SIZE: count without keeping the bytes */
	cte = msgbody_part_cte(x);
	if (mime_part_kind(x) == MIME_KIND_MULTIPART) {
		*error_r = "a multipart part has no content to decode";
		return MSGBODY_EBADSECTION;
	}
	if (cte == MSGBODY_CTE_UNKNOWN) {
		*error_r = "unknown Content-Transfer-Encoding";
		return MSGBODY_EUNKNOWN_CTE;
	}
	r = range_clamp(msg, mime_part_body_range(x));
	s = xcalloc(1, sizeof(*s));
	(void)cte_run(cte, msg->data + r.offset, (size_t)r.size, s);
	res->size = res->full_size = s->count;
	free(s);
	return MSGBODY_OK;
}

int msgbody_fetch(struct msgbody *msg, const struct imap_fetch_section *sec,
		  struct msgbody_result *res_r, const char **error_r)
{
	const struct mime_part *x;
	bool is_msg;
	int ret;

	memset(res_r, 0, sizeof(*res_r));
	if (sec->nparts > IMAP_SECTION_PARTS_MAX) {
		*error_r = "section nested too deep";
		return MSGBODY_EBADSECTION;
	}
	if (sec->kind != IMAP_FETCH_KIND_BODY &&
	    sec->spec != IMAP_SECTION_ALL) {
		*error_r = "BINARY takes part numbers only";
		return MSGBODY_EBADSECTION;
	}
	x = msgbody_part_find(msg, sec->parts, sec->nparts, &is_msg);
	if (x == NULL) {
		res_r->missing = true;
		*error_r = "no such section";
		return MSGBODY_ENOPART;
	}
	if (sec->kind == IMAP_FETCH_KIND_BODY)
		ret = fetch_body(msg, x, is_msg, sec, res_r, error_r);
	else
		ret = fetch_binary(msg, x, sec, res_r, error_r);
	if (ret != MSGBODY_OK)
		return ret;
	if (sec->kind != IMAP_FETCH_KIND_BINARY_SIZE) {
		result_partial(res_r, sec);
		result_nul(res_r);
	}
	return MSGBODY_OK;
}

/* ---- FETCH values ---- */

int msgbody_literal_prefix(const struct msgbody_result *res, bool binary,
			   struct str *out)
{
	return str_printf(out, "%s{%" PRIu64 "}\r\n",
			  binary && res->has_nul ? "~" : "", res->size);
}

int msgbody_write_value(const struct msgbody_result *res, bool binary,
			struct str *out)
{
	size_t old = str_len(out);

	if (res->missing)
		return str_append_c(out, "NIL");
	if (msgbody_literal_prefix(res, binary, out) < 0)
		return -1;
	if (res->size > 0 && str_append(out, res->data, (size_t)res->size) < 0) {
		str_truncate(out, old);
		return -1;
	}
	return 0;
}
