/* str.c: see str.h. */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "compat.h"
#include "str.h"
#include "xalloc.h"

struct str {
	char *data;
	size_t len;
	size_t cap;	/* allocated bytes, including room for the NUL */
	size_t max;
};

struct str *str_new(size_t initial, size_t max)
{
	struct str *s = xrealloc(NULL, sizeof(*s));

	if (max < 1)
		max = 1;
	if (max > STR_MAX_LIMIT)
		max = STR_MAX_LIMIT;
	if (initial > max)
		initial = max;
	if (initial < 16)
		initial = 16 < max ? 16 : max;
	s->cap = initial + 1;
	s->data = xrealloc(NULL, s->cap);
	s->data[0] = '\0';
	s->len = 0;
	s->max = max;
	return s;
}

void str_free(struct str **s)
{
	if (*s == NULL)
		return;
	free((*s)->data);
	free(*s);
	*s = NULL;
}

static int str_reserve(struct str *s, size_t n)
{
	size_t want, cap;

	if (n > s->max - s->len) {
		errno = ENOBUFS;
		return -1;
	}
	want = s->len + n + 1;
	if (want <= s->cap)
		return 0;
	cap = s->cap;
	while (cap < want)
		cap = cap < SIZE_MAX / 2 ? cap * 2 : want;
	if (cap > s->max + 1)
		cap = s->max + 1;
	s->data = xrealloc(s->data, cap);
	s->cap = cap;
	return 0;
}

int str_append(struct str *s, const void *p, size_t n)
{
	if (str_reserve(s, n) < 0)
		return -1;
	if (n > 0)
		memcpy(s->data + s->len, p, n);
	s->len += n;
	s->data[s->len] = '\0';
	return 0;
}

int str_append_c(struct str *s, const char *cstr)
{
	return str_append(s, cstr, strlen(cstr));
}

int str_append_byte(struct str *s, unsigned char c)
{
	return str_append(s, &c, 1);
}

int str_vprintf(struct str *s, const char *fmt, va_list ap)
{
	va_list ap2;
	int n;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return -1;
	if (str_reserve(s, (size_t)n) < 0)
		return -1;
	vsnprintf(s->data + s->len, (size_t)n + 1, fmt, ap);
	s->len += (size_t)n;
	return 0;
}

int str_printf(struct str *s, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = str_vprintf(s, fmt, ap);
	va_end(ap);
	return r;
}

int str_set(struct str *s, const void *p, size_t n)
{
	if (n > s->max) {
		errno = ENOBUFS;
		return -1;
	}
	str_clear(s);
	return str_append(s, p, n);
}

int str_vsetf(struct str *s, const char *fmt, va_list ap)
{
	char buf[1024];
	va_list ap2;
	int n;

	if (s == NULL)
		return -1;
	str_clear(s);
	va_copy(ap2, ap);
	if (str_vprintf(s, fmt, ap2) < 0) {
		/* Too long for s: keep what fits. */
		n = vsnprintf(buf, sizeof(buf), fmt, ap);
		if (n > 0) {
			size_t len = (size_t)n < sizeof(buf) ? (size_t)n :
							      sizeof(buf) - 1;
			if (len > s->max)
				len = s->max;
			str_clear(s);
			if (str_append(s, buf, len) < 0)
				str_clear(s);
		}
	}
	va_end(ap2);
	return -1;
}

int str_setf(struct str *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	str_vsetf(s, fmt, ap);
	va_end(ap);
	return -1;
}

const char *str_c(const struct str *s)
{
	return s->data;
}

char *str_data(struct str *s)
{
	return s->data;
}

size_t str_len(const struct str *s)
{
	return s->len;
}

size_t str_max(const struct str *s)
{
	return s->max;
}

size_t str_room(const struct str *s)
{
	return s->max - s->len;
}

void str_truncate(struct str *s, size_t len)
{
	if (len >= s->len)
		return;
	s->len = len;
	s->data[len] = '\0';
}

void str_clear(struct str *s)
{
	str_truncate(s, 0);
}

void str_consume(struct str *s, size_t n)
{
	if (n >= s->len) {
		str_clear(s);
		return;
	}
	memmove(s->data, s->data + n, s->len - n);
	s->len -= n;
	s->data[s->len] = '\0';
}

struct str *str_dup_c(const char *cstr)
{
	size_t n = strlen(cstr);
	struct str *s = str_new(n, n > 0 ? n : 1);

	if (str_append(s, cstr, n) < 0)
		abort();
	return s;
}

size_t str_lcpy(char *dst, const char *src, size_t size)
{
	size_t n = strlen(src);

	if (size > 0) {
		size_t c = n < size - 1 ? n : size - 1;
		memcpy(dst, src, c);
		dst[c] = '\0';
	}
	return n;
}

int str_hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}
