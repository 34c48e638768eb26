/* searchmsg.c: SEARCH keys against one message. */
#include "config.h"

#include "compat.h"

#include <ctype.h>
#include <errno.h>
#include <iconv.h>
#include <stdlib.h>
#include <strings.h>

#include "imapsearch.h"
#include "imaptypes.h"
#include "mime.h"
#include "mime_encode.h"
#include "mime_sort.h"
#include "msgbody.h"
#include "searchmsg.h"
#include "str.h"
#include "xalloc.h"

#define SET_TEXT_MAX ((size_t)64 << 20)
#define FIELD_TEXT_MIN 64

struct snode {
	enum imap_search_key key;
	char *str;		/* folded UTF-8 needle, keyword or field */
	size_t len;
	char *header;		/* HEADER field name */
	int64_t day;		/* date keys: days since 1970-01-01 */
	uint64_t number;
	struct imap_seqset *set;
	bool saved;		/* the set is "$" */
	bool content;		/* the subtree needs the content */
	bool meta;		/* ... or the date or size (the store's) */
	bool body;		/* ... or the body (BODY, TEXT) */
	struct snode *children;
	size_t nchildren;
};

struct searchmsg {
	struct snode root;
	struct imap_seqset *saved;	/* copy of env->saved, or NULL */
	time_t now;
	int tz_minutes;
};

/* A top-level header field, decoded and folded: "name: value". */
struct field {
	const char *name;
	struct str *line;
	size_t value_off;
};

/* What one searchmsg_match() has looked at so far. */
struct mstate {
	struct searchmsg *prog;
	const struct searchmsg_msg *m;
	struct msgbody *msg;
	const char *error;
	struct field *fields;
	size_t nfields;
	bool fields_done;
	struct str **bodies;
	size_t nbodies, abodies;
	bool bodies_done;
};

/* ---- case folding ---- */

static uint32_t fold_latin(uint32_t c)
{
	if ((c >= 0xc0 && c <= 0xd6) || (c >= 0xd8 && c <= 0xde))
		return c + 0x20;
	if (c == 0xb5)
		return 0x3bc;
	if ((c >= 0x100 && c <= 0x12f) || (c >= 0x132 && c <= 0x137) ||
	    (c >= 0x14a && c <= 0x177))
		return c | 1;
	if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e))
		return (c & 1) != 0 ? c + 1 : c;
	if (c == 0x178)
		return 0xff;
	if (c == 0x17f)
		return 's';
	return c;
}

static uint32_t fold_greek(uint32_t c)
{
	static const uint32_t pairs[][2] = {
		{ 0x386, 0x3ac }, { 0x38c, 0x3cc }, { 0x3c2, 0x3c3 },
		{ 0x3cf, 0x3d7 }, { 0x3d0, 0x3b2 }, { 0x3d1, 0x3b8 },
		{ 0x3d5, 0x3c6 }, { 0x3d6, 0x3c0 }, { 0x3f0, 0x3ba },
		{ 0x3f1, 0x3c1 }, { 0x3f4, 0x3b8 }, { 0x3f5, 0x3b5 },
		{ 0x3f7, 0x3f8 }, { 0x3f9, 0x3f2 }, { 0x3fa, 0x3fb },
		{ 0x37f, 0x3f3 },
	};

	if (c >= 0x388 && c <= 0x38a)
		return c + 0x25;
	if (c == 0x38e || c == 0x38f)
		return c + 0x3f;
	if ((c >= 0x391 && c <= 0x3a1) || (c >= 0x3a3 && c <= 0x3ab))
		return c + 0x20;
	if ((c >= 0x3d8 && c <= 0x3ef) || c == 0x370 || c == 0x372 ||
	    c == 0x376)
		return c | 1;
	if (c >= 0x3fd && c <= 0x3ff)
		return c - 0x82;
	for (size_t i = 0; i < TERN_NELEM(pairs); i++) {
		if (pairs[i][0] == c)
			return pairs[i][1];
	}
	return c;
}

static uint32_t fold_cyrillic(uint32_t c)
{
	if (c >= 0x400 && c <= 0x40f)
		return c + 0x50;
	if (c >= 0x410 && c <= 0x42f)
		return c + 0x20;
	if ((c >= 0x460 && c <= 0x481) || (c >= 0x48a && c <= 0x4bf) ||
	    (c >= 0x4d0 && c <= 0x52f))
		return c | 1;
	if (c == 0x4c0)
		return 0x4cf;
	if (c >= 0x4c1 && c <= 0x4ce)
		return (c & 1) != 0 ? c + 1 : c;
	return c;
}

/* Every mapping keeps the UTF-8 length or shortens it (U+017F). */
static uint32_t fold_char(uint32_t c)
{
	if (c < 0x80)
		return c >= 'A' && c <= 'Z' ? c + 0x20 : c;
	if (c < 0x370)
		return fold_latin(c);
	if (c < 0x400)
		return fold_greek(c);
	if (c < 0x530)
		return fold_cyrillic(c);
	return c;
}

int searchmsg_fold(const char *s, size_t len, struct str *out)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < len) {
		unsigned char b[2];
		uint32_t c;

		/* only 2-byte sequences can fold outside ASCII */
		if (p[i] >= 0xc2 && p[i] <= 0xd4 && i + 1 < len &&
		    (p[i + 1] & 0xc0) == 0x80) {
			c = fold_char((uint32_t)(p[i] & 0x1f) << 6 |
				      (p[i + 1] & 0x3f));
			if (c < 0x80) {
				if (str_append_byte(out, (unsigned char)c) < 0)
					return -1;
			} else {
				b[0] = (unsigned char)(0xc0 | c >> 6);
				b[1] = (unsigned char)(0x80 | (c & 0x3f));
				if (str_append(out, b, 2) < 0)
					return -1;
			}
			i += 2;
			continue;
		}
		if (str_append_byte(out, p[i] >= 'A' && p[i] <= 'Z' ?
					 p[i] + 0x20 : p[i]) < 0)
			return -1;
		i++;
	}
	return 0;
}

/* ---- charsets ---- */

static const char *const charset_candidates[] = {
	"US-ASCII", "UTF-8", "ISO-8859-1", "ISO-8859-2", "ISO-8859-5",
	"ISO-8859-7", "ISO-8859-15", "WINDOWS-1250", "WINDOWS-1251",
	"WINDOWS-1252", "KOI8-R", "KOI8-U", "SHIFT_JIS", "EUC-JP",
	"ISO-2022-JP", "GB2312", "GB18030", "BIG5", "EUC-KR", "UTF-16",
};

static bool charset_name_ok(const char *cs)
{
	size_t i;

	for (i = 0; cs[i] != '\0'; i++) {
		unsigned char c = (unsigned char)cs[i];

		if (!isalnum(c) && strchr("-_.:+", c) == NULL)
			return false;
	}
	return i > 0 && i <= MIME_CHARSET_MAX;
}

static bool charset_is_utf8(const char *cs)
{
	return cs == NULL || strcasecmp(cs, "UTF-8") == 0 ||
	       strcasecmp(cs, "US-ASCII") == 0 || strcasecmp(cs, "UTF8") == 0;
}

static bool charset_known(const char *cs)
{
	iconv_t cd;

	if (charset_is_utf8(cs))
		return true;
	if (!charset_name_ok(cs))
		return false;
	cd = iconv_open("UTF-8", cs);
	if (cd == (iconv_t)-1)
		return false;
	iconv_close(cd);
	return true;
}

const char *searchmsg_charsets(void)
{
	static char list[512];

	if (list[0] != '\0')
		return list;
	for (size_t i = 0; i < TERN_NELEM(charset_candidates); i++) {
		size_t used = strlen(list);

		if (!charset_known(charset_candidates[i]))
			continue;
		snprintf(list + used, sizeof(list) - used, "%s%s",
			 used > 0 ? " " : "", charset_candidates[i]);
	}
	return list;
}

/* The needle: value in charset, as folded UTF-8. */
static int needle_make(const char *charset, const char *v, size_t len,
		       struct snode *n)
{
	size_t max = len * 3 + 16;
	struct str *utf8 = str_new(len + 1, max), *folded;
	int ret;

	ret = charset_is_utf8(charset) ? mime_utf8_append(v, len, utf8) :
	      mime_charset_to_utf8(charset, v, len, utf8);
	folded = str_new(str_len(utf8) + 1, str_len(utf8) + 1);
	if (ret == 0)
		ret = searchmsg_fold(str_c(utf8), str_len(utf8), folded);
	n->len = str_len(folded);
	n->str = xmalloc(n->len + 1);
	memcpy(n->str, str_c(folded), n->len + 1);
	str_free(&utf8);
	str_free(&folded);
	return ret;
}

/* ---- preparing ---- */

static int64_t days_from_civil(int y, int m, int d)
{
	int64_t yy = (int64_t)y - (m <= 2);
	int64_t era = (yy >= 0 ? yy : yy - 399) / 400;
	int64_t yoe = yy - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + doe - 719468;
}

static int64_t day_of(time_t t, int tz_minutes)
{
	int64_t s = (int64_t)t + (int64_t)tz_minutes * 60;

	return s >= 0 ? s / 86400 : -((-s + 86399) / 86400);
}

/* A copy of set (the command's stays as it is) with "*" resolved. */
static struct imap_seqset *set_copy(const struct imap_seqset *set,
				    uint32_t max)
{
	struct str *s = str_new(64, SET_TEXT_MAX);
	struct imap_seqset *copy = NULL;
	const char *error;

	if (imap_seqset_format(set, s) < 0 ||
	    imap_seqset_parse(str_c(s), str_len(s), &copy, &error) < 0)
		copy = imap_seqset_new();
	str_free(&s);
	imap_seqset_resolve(copy, max);
	return copy;
}

static bool key_needs_content(enum imap_search_key k)
{
	switch (k) {
	case IMAP_SEARCH_BCC:
	case IMAP_SEARCH_BODY:
	case IMAP_SEARCH_CC:
	case IMAP_SEARCH_FROM:
	case IMAP_SEARCH_SUBJECT:
	case IMAP_SEARCH_TEXT:
	case IMAP_SEARCH_TO:
	case IMAP_SEARCH_HEADER:
	case IMAP_SEARCH_SENTBEFORE:
	case IMAP_SEARCH_SENTON:
	case IMAP_SEARCH_SENTSINCE:
		return true;
	default:
		return false;
	}
}

/* Keys that look at the internal date or the size. */
static bool key_needs_meta(enum imap_search_key k)
{
	switch (k) {
	case IMAP_SEARCH_BEFORE:
	case IMAP_SEARCH_ON:
	case IMAP_SEARCH_SINCE:
	case IMAP_SEARCH_YOUNGER:
	case IMAP_SEARCH_OLDER:
	case IMAP_SEARCH_LARGER:
	case IMAP_SEARCH_SMALLER:
		return true;
	default:
		return false;
	}
}

static bool key_is_string(enum imap_search_key k)
{
	return key_needs_content(k) && k != IMAP_SEARCH_SENTBEFORE &&
	       k != IMAP_SEARCH_SENTON && k != IMAP_SEARCH_SENTSINCE;
}

static int node_prepare(const struct imap_search_node *in,
			const struct imap_search *search,
			const struct searchmsg_env *env, struct snode *out,
			const char **error_r);

/* The children, then those needing the content moved last (in order):
 * AND and OR give the same answer in any order, and the cheap keys can
 * then decide without opening the message. */
static int children_prepare(const struct imap_search_node *in,
			    const struct imap_search *search,
			    const struct searchmsg_env *env, struct snode *out,
			    const char **error_r)
{
	size_t n = in->nchildren, lo = 0;
	struct snode *sorted;

	out->children = xcalloc(n > 0 ? n : 1, sizeof(*out->children));
	for (size_t i = 0; i < n; i++) {
		if (node_prepare(&in->children[i], search, env,
				 &out->children[i], error_r) < 0)
			return -1;
		out->nchildren = i + 1;
		if (out->children[i].content)
			out->content = true;
		if (out->children[i].meta)
			out->meta = true;
		if (out->children[i].body)
			out->body = true;
	}
	sorted = xcalloc(n > 0 ? n : 1, sizeof(*sorted));
	for (size_t i = 0; i < n; i++) {
		if (!out->children[i].content)
			sorted[lo++] = out->children[i];
	}
	for (size_t i = 0; i < n; i++) {
		if (out->children[i].content)
			sorted[lo++] = out->children[i];
	}
	free(out->children);
	out->children = sorted;
	return 0;
}

static int node_prepare(const struct imap_search_node *in,
			const struct imap_search *search,
			const struct searchmsg_env *env, struct snode *out,
			const char **error_r)
{
	memset(out, 0, sizeof(*out));
	out->key = in->key;
	out->number = in->number;
	out->content = key_needs_content(in->key);
	out->meta = out->content || key_needs_meta(in->key);
	out->body = in->key == IMAP_SEARCH_BODY || in->key == IMAP_SEARCH_TEXT;
	switch (in->key) {
	case IMAP_SEARCH_AND:
	case IMAP_SEARCH_OR:
	case IMAP_SEARCH_NOT:
		return children_prepare(in, search, env, out, error_r);
	case IMAP_SEARCH_SEQSET:
	case IMAP_SEARCH_UID:
		if (in->set == NULL) {
			out->set = imap_seqset_new();	/* matches nothing */
			break;
		}
		if (imap_seqset_is_saved(in->set)) {
			out->saved = true;
			break;
		}
		out->set = set_copy(in->set, in->key == IMAP_SEARCH_UID ?
					     env->max_uid : env->max_seq);
		break;
	case IMAP_SEARCH_KEYWORD:
	case IMAP_SEARCH_UNKEYWORD:
		out->len = in->value != NULL ? in->len : 0;
		out->str = xmalloc(out->len + 1);
		memcpy(out->str, in->value != NULL ? in->value : "", out->len);
		out->str[out->len] = '\0';
		break;
	case IMAP_SEARCH_BEFORE:
	case IMAP_SEARCH_ON:
	case IMAP_SEARCH_SINCE:
	case IMAP_SEARCH_SENTBEFORE:
	case IMAP_SEARCH_SENTON:
	case IMAP_SEARCH_SENTSINCE:
		out->day = days_from_civil(in->date.year, in->date.mon,
					   in->date.day);
		break;
	default:
		break;
	}
	if (key_is_string(in->key)) {
		if (in->key == IMAP_SEARCH_HEADER)
			out->header = xstrdup(in->header != NULL ? in->header :
					      "");
		if (needle_make(search->charset,
				in->value != NULL ? in->value : "",
				in->value != NULL ? in->len : 0, out) < 0) {
			*error_r = "search string too long";
			return -1;
		}
	}
	return 0;
}

static void node_free(struct snode *n)
{
	for (size_t i = 0; i < n->nchildren; i++)
		node_free(&n->children[i]);
	free(n->children);
	free(n->str);
	free(n->header);
	imap_seqset_free(&n->set);
}

int searchmsg_prepare(const struct imap_search *search,
		      const struct searchmsg_env *env,
		      struct searchmsg **prog_r, const char **error_r)
{
	struct searchmsg *prog;

	*prog_r = NULL;
	if (!charset_known(search->charset)) {
		*error_r = "unsupported charset";
		return SEARCHMSG_EBADCHARSET;
	}
	prog = xcalloc(1, sizeof(*prog));
	prog->now = env->now;
	prog->tz_minutes = env->tz_minutes;
	if (env->saved != NULL)
		prog->saved = set_copy(env->saved, env->max_uid);
	if (node_prepare(&search->root, search, env, &prog->root,
			 error_r) < 0) {
		searchmsg_free(&prog);
		return -1;
	}
	*prog_r = prog;
	return 0;
}

void searchmsg_free(struct searchmsg **progp)
{
	struct searchmsg *prog = *progp;

	if (prog == NULL)
		return;
	*progp = NULL;
	node_free(&prog->root);
	imap_seqset_free(&prog->saved);
	free(prog);
}

bool searchmsg_needs_content(const struct searchmsg *prog)
{
	return prog->root.content;
}

bool searchmsg_needs_meta(const struct searchmsg *prog)
{
	return prog->root.meta;
}

bool searchmsg_needs_body(const struct searchmsg *prog)
{
	return prog->root.body;
}

/* ---- the content ---- */

static struct msgbody *state_msg(struct mstate *st)
{
	if (st->msg != NULL)
		return st->msg;
	if (st->m->msg != NULL) {
		st->msg = st->m->msg;
	} else if (st->m->open != NULL) {
		st->error = NULL;
		st->msg = st->m->open(st->m->open_context, &st->error);
		if (st->msg == NULL && st->error == NULL)
			st->error = "message could not be opened";
	} else {
		st->error = "message content not available";
	}
	return st->msg;
}

static size_t text_max(size_t len)
{
	return len < (STR_MAX_LIMIT - FIELD_TEXT_MIN) / 4 ?
	       len * 3 + FIELD_TEXT_MIN : STR_MAX_LIMIT;
}

/* Folds the UTF-8 in tmp into a new str. */
static struct str *fold_new(const struct str *tmp)
{
	struct str *out = str_new(str_len(tmp) + 1,
				  str_len(tmp) > 0 ? str_len(tmp) : 1);

	/* folding never lengthens the text: this cannot fail */
	if (searchmsg_fold(str_c(tmp), str_len(tmp), out) < 0)
		str_truncate(out, 0);
	return out;
}

static int fields_load(struct mstate *st)
{
	const struct mime_part *root;
	struct msgbody *msg;

	if (st->fields_done)
		return 0;
	msg = state_msg(st);
	if (msg == NULL)
		return -1;
	root = msgbody_header(msg);
	st->nfields = mime_part_header_count(root);
	st->fields = xcalloc(st->nfields > 0 ? st->nfields : 1,
			     sizeof(*st->fields));
	for (size_t i = 0; i < st->nfields; i++) {
		const struct mime_header *h = mime_part_header(root, i);
		size_t nlen = strlen(h->name);
		struct str *tmp = str_new(0, text_max(nlen + h->value_len));

		/* a value too long to decode whole is searched in its
		 * decoded prefix */
		if (str_append(tmp, h->name, nlen) < 0 ||
		    str_append(tmp, ": ", 2) < 0 ||
		    mime_header_decode(h->value, h->value_len, tmp) < 0)
			errno = 0;	/* the prefix in tmp is searched */
		st->fields[i].name = h->name;
		st->fields[i].line = fold_new(tmp);
		st->fields[i].value_off = nlen + 2 < str_len(st->fields[i].line) ?
					  nlen + 2 : str_len(st->fields[i].line);
		str_free(&tmp);
	}
	st->fields_done = true;
	return 0;
}

static void body_add(struct mstate *st, struct str *folded)
{
	if (st->nbodies == st->abodies) {
		st->abodies = st->abodies > 0 ? st->abodies * 2 : 4;
		st->bodies = xrealloc(st->bodies,
				      st->abodies * sizeof(*st->bodies));
	}
	st->bodies[st->nbodies++] = folded;
}

static void body_load_part(struct mstate *st, struct msgbody *msg,
			   const struct mime_part *part)
{
	const char *charset = mime_part_param_utf8(part, 0, "charset");
	struct msgbody_result res;
	struct mime_range r;
	const char *error;
	struct str *tmp;

	if (msgbody_part_content(msg, part, &res, &error) != MSGBODY_OK) {
		/* unknown encoding: search the stored bytes */
		r = mime_part_body_range(part);
		if (r.offset > msgbody_size(msg))
			r.offset = msgbody_size(msg);
		if (r.size > msgbody_size(msg) - r.offset)
			r.size = msgbody_size(msg) - r.offset;
		memset(&res, 0, sizeof(res));
		res.data = msgbody_data(msg) + r.offset;
		res.size = r.size;
	}
	tmp = str_new(0, text_max((size_t)res.size));
	if (mime_charset_to_utf8(charset != NULL ? charset : "us-ascii",
				 res.data, (size_t)res.size, tmp) < 0)
		errno = 0;	/* too long: the prefix in tmp is searched */
	body_add(st, fold_new(tmp));
	str_free(&tmp);
	msgbody_result_free(&res);
}

static int bodies_load(struct mstate *st)
{
	const struct mime_part *p;
	struct msgbody *msg;

	if (st->bodies_done)
		return 0;
	msg = state_msg(st);
	if (msg == NULL)
		return -1;
	/* depth-first over the tree, without recursion */
	p = msgbody_tree(msg);
	while (p != NULL) {
		if (mime_part_kind(p) == MIME_KIND_LEAF &&
		    mime_part_is(p, "text", NULL))
			body_load_part(st, msg, p);
		if (mime_part_child(p) != NULL) {
			p = mime_part_child(p);
			continue;
		}
		while (p != NULL && mime_part_next(p) == NULL)
			p = mime_part_parent(p);
		if (p != NULL)
			p = mime_part_next(p);
	}
	st->bodies_done = true;
	return 0;
}

static void state_free(struct mstate *st)
{
	for (size_t i = 0; i < st->nfields; i++)
		str_free(&st->fields[i].line);
	free(st->fields);
	for (size_t i = 0; i < st->nbodies; i++)
		str_free(&st->bodies[i]);
	free(st->bodies);
}

/* ---- matching ---- */

static bool contains(const char *hay, size_t hlen, const struct snode *n)
{
	return n->len == 0 || memmem(hay, hlen, n->str, n->len) != NULL;
}

static int match_field(struct mstate *st, const char *name,
		       const struct snode *n)
{
	if (fields_load(st) < 0)
		return -1;
	for (size_t i = 0; i < st->nfields; i++) {
		const struct field *f = &st->fields[i];

		if (strcasecmp(f->name, name) == 0 &&
		    contains(str_c(f->line) + f->value_off,
			     str_len(f->line) - f->value_off, n))
			return 1;
	}
	return 0;
}

static int match_body(struct mstate *st, const struct snode *n)
{
	if (bodies_load(st) < 0)
		return -1;
	for (size_t i = 0; i < st->nbodies; i++) {
		if (contains(str_c(st->bodies[i]), str_len(st->bodies[i]), n))
			return 1;
	}
	return 0;
}

static int match_text(struct mstate *st, const struct snode *n)
{
	if (fields_load(st) < 0)
		return -1;
	for (size_t i = 0; i < st->nfields; i++) {
		if (contains(str_c(st->fields[i].line),
			     str_len(st->fields[i].line), n))
			return 1;
	}
	return match_body(st, n);
}

static int sent_day(struct mstate *st, int64_t *day_r)
{
	const struct mime_header *h;
	struct msgbody *msg = state_msg(st);
	time_t t;
	int tz;

	if (msg == NULL)
		return -1;
	h = mime_part_header_find(msgbody_header(msg), "Date");
	if (h != NULL && mime_date_parse(h->value, h->value_len, &t, &tz) == 0)
		*day_r = day_of(t, tz);
	else
		*day_r = day_of(st->m->internal_date, st->prog->tz_minutes);
	return 0;
}

static bool keyword_has(const char *list, const char *kw, size_t len)
{
	const char *p = list;

	if (list == NULL || len == 0)
		return false;
	while (*p != '\0') {
		size_t n = strcspn(p, " ");

		if (n == len && strncasecmp(p, kw, len) == 0)
			return true;
		p += n;
		p += strspn(p, " ");
	}
	return false;
}

static bool keyword_match(const struct searchmsg_msg *m,
			  const struct snode *n)
{
	static const struct {
		const char *name;
		unsigned bit;
	} sys[] = {
		{ "\\Seen", SEARCHMSG_SEEN }, { "\\Answered", SEARCHMSG_ANSWERED },
		{ "\\Flagged", SEARCHMSG_FLAGGED },
		{ "\\Deleted", SEARCHMSG_DELETED },
		{ "\\Draft", SEARCHMSG_DRAFT },
	};

	for (size_t i = 0; i < TERN_NELEM(sys); i++) {
		if (strcasecmp(n->str, sys[i].name) == 0)
			return (m->flags & sys[i].bit) != 0;
	}
	return keyword_has(m->keywords, n->str, n->len);
}

static bool set_match(const struct mstate *st, const struct snode *n,
		      uint32_t v)
{
	if (n->saved)
		return st->prog->saved != NULL &&
		       imap_seqset_contains(st->prog->saved, st->m->uid);
	return imap_seqset_contains(n->set, v);
}

static int eval(struct mstate *st, const struct snode *n);

static int eval_bool(struct mstate *st, const struct snode *n)
{
	int r = 1;

	switch (n->key) {
	case IMAP_SEARCH_AND:
		for (size_t i = 0; i < n->nchildren && r == 1; i++)
			r = eval(st, &n->children[i]);
		return r;
	case IMAP_SEARCH_OR:
		r = 0;
		for (size_t i = 0; i < n->nchildren && r == 0; i++)
			r = eval(st, &n->children[i]);
		return r;
	default:	/* NOT */
		r = n->nchildren > 0 ? eval(st, &n->children[0]) : 0;
		return r < 0 ? r : !r;
	}
}

static int eval_flag(const struct searchmsg_msg *m, enum imap_search_key k)
{
	switch (k) {
	case IMAP_SEARCH_ANSWERED:
		return (m->flags & SEARCHMSG_ANSWERED) != 0;
	case IMAP_SEARCH_DELETED:
		return (m->flags & SEARCHMSG_DELETED) != 0;
	case IMAP_SEARCH_DRAFT:
		return (m->flags & SEARCHMSG_DRAFT) != 0;
	case IMAP_SEARCH_FLAGGED:
		return (m->flags & SEARCHMSG_FLAGGED) != 0;
	case IMAP_SEARCH_SEEN:
		return (m->flags & SEARCHMSG_SEEN) != 0;
	case IMAP_SEARCH_UNANSWERED:
		return (m->flags & SEARCHMSG_ANSWERED) == 0;
	case IMAP_SEARCH_UNDELETED:
		return (m->flags & SEARCHMSG_DELETED) == 0;
	case IMAP_SEARCH_UNDRAFT:
		return (m->flags & SEARCHMSG_DRAFT) == 0;
	case IMAP_SEARCH_UNFLAGGED:
		return (m->flags & SEARCHMSG_FLAGGED) == 0;
	case IMAP_SEARCH_UNSEEN:
		return (m->flags & SEARCHMSG_SEEN) == 0;
	case IMAP_SEARCH_OLD:
		return 1;	/* no \Recent is kept */
	default:		/* NEW, RECENT */
		return 0;
	}
}

static int eval_date(struct mstate *st, const struct snode *n)
{
	int64_t day;

	if (n->key == IMAP_SEARCH_SENTBEFORE || n->key == IMAP_SEARCH_SENTON ||
	    n->key == IMAP_SEARCH_SENTSINCE) {
		if (sent_day(st, &day) < 0)
			return -1;
	} else {
		day = day_of(st->m->internal_date, st->prog->tz_minutes);
	}
	switch (n->key) {
	case IMAP_SEARCH_BEFORE:
	case IMAP_SEARCH_SENTBEFORE:
		return day < n->day;
	case IMAP_SEARCH_ON:
	case IMAP_SEARCH_SENTON:
		return day == n->day;
	default:
		return day >= n->day;
	}
}

static int eval_string(struct mstate *st, const struct snode *n)
{
	switch (n->key) {
	case IMAP_SEARCH_BCC:
		return match_field(st, "Bcc", n);
	case IMAP_SEARCH_CC:
		return match_field(st, "Cc", n);
	case IMAP_SEARCH_FROM:
		return match_field(st, "From", n);
	case IMAP_SEARCH_TO:
		return match_field(st, "To", n);
	case IMAP_SEARCH_SUBJECT:
		return match_field(st, "Subject", n);
	case IMAP_SEARCH_HEADER:
		return match_field(st, n->header, n);
	case IMAP_SEARCH_BODY:
		return match_body(st, n);
	default:
		return match_text(st, n);
	}
}

static int eval(struct mstate *st, const struct snode *n)
{
	const struct searchmsg_msg *m = st->m;
	int64_t age = (int64_t)st->prog->now - (int64_t)m->internal_date;

	switch (n->key) {
	case IMAP_SEARCH_AND:
	case IMAP_SEARCH_OR:
	case IMAP_SEARCH_NOT:
		return eval_bool(st, n);
	case IMAP_SEARCH_ALL:
		return 1;
	case IMAP_SEARCH_SEQSET:
		return set_match(st, n, m->seq);
	case IMAP_SEARCH_UID:
		return set_match(st, n, m->uid);
	case IMAP_SEARCH_KEYWORD:
		return keyword_match(m, n);
	case IMAP_SEARCH_UNKEYWORD:
		return !keyword_match(m, n);
	case IMAP_SEARCH_LARGER:
		return m->size > n->number;
	case IMAP_SEARCH_SMALLER:
		return m->size < n->number;
	case IMAP_SEARCH_MODSEQ:
		return m->modseq >= n->number;
	case IMAP_SEARCH_YOUNGER:
		return age <= (int64_t)(n->number > INT64_MAX / 2 ?
					INT64_MAX / 2 : n->number);
	case IMAP_SEARCH_OLDER:
		return age > (int64_t)(n->number > INT64_MAX / 2 ?
				       INT64_MAX / 2 : n->number);
	case IMAP_SEARCH_BEFORE:
	case IMAP_SEARCH_ON:
	case IMAP_SEARCH_SINCE:
	case IMAP_SEARCH_SENTBEFORE:
	case IMAP_SEARCH_SENTON:
	case IMAP_SEARCH_SENTSINCE:
		return eval_date(st, n);
	default:
		if (key_is_string(n->key))
			return eval_string(st, n);
		return eval_flag(m, n->key);
	}
}

int searchmsg_match(struct searchmsg *prog, const struct searchmsg_msg *m,
		    const char **error_r)
{
	struct mstate st;
	int r;

	memset(&st, 0, sizeof(st));
	st.prog = prog;
	st.m = m;
	r = eval(&st, &prog->root);
	if (r < 0)
		*error_r = st.error != NULL ? st.error :
			   "message content not available";
	state_free(&st);
	return r;
}
