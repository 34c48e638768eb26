/* json.c: see json.h. */
#include "config.h"

#include "compat.h"

#include <inttypes.h>
#include <stdlib.h>

#include "json.h"
#include "str.h"

struct json_level {
	char close;		/* '}', ']', or 0 at the top */
	int want_value;		/* object: a key was written */
	size_t count;		/* members or elements so far */
};

struct json {
	struct str *out;
	unsigned int flags;
	const char *error;
	unsigned int depth;
	struct json_level levels[JSON_DEPTH_MAX + 1];
};

struct json *json_new(struct str *out, unsigned int flags)
{
	struct json *j = calloc(1, sizeof(*j));

	if (j == NULL)
		abort();
	j->out = out;
	j->flags = flags;
	return j;
}

void json_free(struct json **j)
{
	free(*j);
	*j = NULL;
}

static void json_put(struct json *j, const void *p, size_t n)
{
	if (j->error == NULL && str_append(j->out, p, n) < 0)
		j->error = "json: output limit reached";
}

static void json_put_c(struct json *j, const char *s)
{
	json_put(j, s, strlen(s));
}

static void json_newline(struct json *j, unsigned int depth)
{
	static const char spaces[] = "                                ";

	if ((j->flags & JSON_PRETTY) == 0)
		return;
	json_put(j, "\n", 1);
	for (size_t n = (size_t)depth * 2; n > 0;) {
		size_t k = n < sizeof(spaces) - 1 ? n : sizeof(spaces) - 1;

		json_put(j, spaces, k);
		n -= k;
	}
}

/* Separator and bookkeeping before a member's key or an element. */
static void json_next_item(struct json *j, struct json_level *l)
{
	if (l->count++ > 0)
		json_put(j, ",", 1);
	json_newline(j, j->depth);
}

/* 0 when a value may be written here. */
static int json_pre_value(struct json *j)
{
	struct json_level *l = &j->levels[j->depth];

	if (j->error != NULL)
		return -1;
	if (l->close == 0) {
		if (l->count++ > 0)
			j->error = "json: more than one top-level value";
	} else if (l->close == '}') {
		if (!l->want_value)
			j->error = "json: value where a key is expected";
		l->want_value = 0;
	} else {
		json_next_item(j, l);
	}
	return j->error == NULL ? 0 : -1;
}

static void json_begin(struct json *j, char open, char close)
{
	if (json_pre_value(j) < 0)
		return;
	if (j->depth >= JSON_DEPTH_MAX) {
		j->error = "json: nesting too deep";
		return;
	}
	json_put(j, &open, 1);
	j->depth++;
	j->levels[j->depth].close = close;
	j->levels[j->depth].want_value = 0;
	j->levels[j->depth].count = 0;
}

static void json_end(struct json *j, char close)
{
	struct json_level *l = &j->levels[j->depth];

	if (j->error != NULL)
		return;
	if (l->close != close || l->want_value) {
		j->error = "json: end does not match the open container";
		return;
	}
	j->depth--;
	if (l->count > 0)
		json_newline(j, j->depth);
	json_put(j, &close, 1);
}

void json_object_begin(struct json *j)
{
	json_begin(j, '{', '}');
}

void json_object_end(struct json *j)
{
	json_end(j, '}');
}

void json_array_begin(struct json *j)
{
	json_begin(j, '[', ']');
}

void json_array_end(struct json *j)
{
	json_end(j, ']');
}

/* Length of the valid UTF-8 sequence at p (n > 0 bytes), 0 if invalid. */
static size_t json_utf8_len(const unsigned char *p, size_t n)
{
	unsigned char c = p[0], lo = 0x80, hi = 0xbf;
	size_t len;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;	/* no overlong forms */
	else if (c == 0xed)
		hi = 0x9f;	/* no surrogates */
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;	/* nothing above U+10FFFF */
	if (n < len || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++) {
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	}
	return len;
}

/* The escape for the sequence at p of length len, or NULL if none. */
static const char *json_escape(const unsigned char *p, size_t len,
			       char *buf, size_t size)
{
	if (len == 3 && p[0] == 0xe2 && p[1] == 0x80 &&
	    (p[2] == 0xa8 || p[2] == 0xa9))
		return p[2] == 0xa8 ? "\\u2028" : "\\u2029";
	if (len != 1)
		return NULL;
	switch (p[0]) {
	case '"': return "\\\"";
	case '\\': return "\\\\";
	case '\b': return "\\b";
	case '\f': return "\\f";
	case '\n': return "\\n";
	case '\r': return "\\r";
	case '\t': return "\\t";
	default:
		break;
	}
	if (p[0] >= 0x20 && p[0] != 0x7f)
		return NULL;
	snprintf(buf, size, "\\u%04x", p[0]);
	return buf;
}

static void json_put_string(struct json *j, const void *data, size_t n)
{
	const unsigned char *p = data, *run = p;
	char buf[8];

	json_put(j, "\"", 1);
	for (size_t i = 0; i < n;) {
		size_t len = json_utf8_len(p + i, n - i);
		const char *esc = len == 0 ? "\xef\xbf\xbd" :
				  json_escape(p + i, len, buf, sizeof(buf));

		if (esc == NULL) {
			i += len;
			continue;
		}
		json_put(j, run, (size_t)(p + i - run));
		json_put_c(j, esc);
		i += len == 0 ? 1 : len;
		run = p + i;
	}
	json_put(j, run, (size_t)(p + n - run));
	json_put(j, "\"", 1);
}

void json_key_n(struct json *j, const void *key, size_t len)
{
	struct json_level *l = &j->levels[j->depth];

	if (j->error != NULL)
		return;
	if (l->close != '}' || l->want_value) {
		j->error = "json: key where a value is expected";
		return;
	}
	json_next_item(j, l);
	json_put_string(j, key, len);
	json_put_c(j, (j->flags & JSON_PRETTY) != 0 ? ": " : ":");
	l->want_value = 1;
}

void json_key(struct json *j, const char *key)
{
	json_key_n(j, key, strlen(key));
}

void json_string(struct json *j, const void *p, size_t len)
{
	if (json_pre_value(j) == 0)
		json_put_string(j, p, len);
}

void json_cstring(struct json *j, const char *s)
{
	if (s == NULL)
		json_null(j);
	else
		json_string(j, s, strlen(s));
}

void json_int(struct json *j, int64_t v)
{
	char buf[32];

	if (json_pre_value(j) < 0)
		return;
	snprintf(buf, sizeof(buf), "%" PRId64, v);
	json_put_c(j, buf);
}

void json_bool(struct json *j, int v)
{
	if (json_pre_value(j) == 0)
		json_put_c(j, v ? "true" : "false");
}

void json_null(struct json *j)
{
	if (json_pre_value(j) == 0)
		json_put_c(j, "null");
}

void json_kv_cstring(struct json *j, const char *key, const char *s)
{
	json_key(j, key);
	json_cstring(j, s);
}

void json_kv_int(struct json *j, const char *key, int64_t v)
{
	json_key(j, key);
	json_int(j, v);
}

void json_kv_bool(struct json *j, const char *key, int v)
{
	json_key(j, key);
	json_bool(j, v);
}

int json_finish(struct json *j, const char **error_r)
{
	if (j->error == NULL && j->depth > 0)
		j->error = "json: unclosed object or array";
	if (j->error == NULL && j->levels[0].count == 0)
		j->error = "json: no value written";
	if (j->error != NULL) {
		*error_r = j->error;
		return -1;
	}
	return 0;
}
