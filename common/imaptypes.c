/* imaptypes.c: see imaptypes.h. */
#include "config.h"

#include "compat.h"

#include <stdlib.h>
#include <strings.h>

#include "imaptypes.h"
#include "xalloc.h"

/* ---- sequence sets -------------------------------------------------- */

/* A range; 0 stands for "*" until resolved. */
struct seq_range {
	uint32_t lo, hi;
};

struct imap_seqset {
	struct seq_range *r;
	size_t n, cap;
	bool saved;	/* "$" */
	bool star;	/* an unresolved "*" */
};

static void set_push(struct imap_seqset *set, uint32_t lo, uint32_t hi)
{
	if (set->n == set->cap) {
		set->cap = set->cap == 0 ? 4 : set->cap * 2;
		set->r = xrealloc(set->r, set->cap * sizeof(*set->r));
	}
	set->r[set->n].lo = lo;
	set->r[set->n].hi = hi;
	set->n++;
}

static int range_cmp(const void *a, const void *b)
{
	const struct seq_range *x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Sorts and merges (no "*" left). */
static void set_normalise(struct imap_seqset *set)
{
	size_t o = 0;

	if (set->n == 0)
		return;
	qsort(set->r, set->n, sizeof(*set->r), range_cmp);
	for (size_t i = 0; i < set->n; i++) {
		if (o > 0 && (uint64_t)set->r[i].lo <=
				     (uint64_t)set->r[o - 1].hi + 1) {
			if (set->r[i].hi > set->r[o - 1].hi)
				set->r[o - 1].hi = set->r[i].hi;
			continue;
		}
		set->r[o++] = set->r[i];
	}
	set->n = o;
}

/* A seq-number at s[*i]: 0 for "*", or -1. */
static int seq_number(const char *s, size_t len, size_t *i, uint32_t *n_r,
		      bool allow_zero)
{
	uint64_t v = 0;
	size_t start = *i;

	if (*i < len && s[*i] == '*') {
		(*i)++;
		*n_r = 0;
		return 0;
	}
	while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
		v = v * 10 + (uint64_t)(s[*i] - '0');
		if (v > UINT32_MAX)
			return -1;
		(*i)++;
	}
	if (*i == start || (v == 0 && !allow_zero))
		return -1;
	*n_r = (uint32_t)v;
	return 0;
}

static int seqset_scan(const char *s, size_t len, struct imap_seqset *set,
		       bool allow_zero)
{
	size_t i = 0;

	if (len == 1 && s[0] == '$') {
		if (set != NULL)
			set->saved = true;
		return 0;
	}
	for (;;) {
		uint32_t lo, hi;

		if (seq_number(s, len, &i, &lo, allow_zero) < 0)
			return -1;
		hi = lo;
		if (i < len && s[i] == ':') {
			i++;
			if (seq_number(s, len, &i, &hi, allow_zero) < 0)
				return -1;
		}
		if (set != NULL) {
			if (lo == 0 || hi == 0)
				set->star = true;
			set_push(set, lo < hi ? lo : hi, lo < hi ? hi : lo);
		}
		if (i == len)
			return 0;
		if (s[i] != ',')
			return -1;
		i++;
	}
}

bool imap_seqset_syntax(const char *s, size_t len)
{
	return seqset_scan(s, len, NULL, true) == 0;
}

struct imap_seqset *imap_seqset_new(void)
{
	return xcalloc(1, sizeof(struct imap_seqset));
}

int imap_seqset_parse(const char *s, size_t len, struct imap_seqset **set_r,
		      const char **error_r)
{
	struct imap_seqset *set = imap_seqset_new();

	if (seqset_scan(s, len, set, false) < 0) {
		imap_seqset_free(&set);
		*error_r = "Invalid sequence set";
		return -1;
	}
	if (!set->star)
		set_normalise(set);
	*set_r = set;
	return 0;
}

void imap_seqset_free(struct imap_seqset **set)
{
	if (*set == NULL)
		return;
	free((*set)->r);
	free(*set);
	*set = NULL;
}

void imap_seqset_add(struct imap_seqset *set, uint32_t lo, uint32_t hi)
{
	struct seq_range *last = set->n > 0 ? &set->r[set->n - 1] : NULL;
	bool unsorted;

	if (lo == 0 || hi == 0)
		return;
	if (lo > hi) {
		uint32_t t = lo;

		lo = hi;
		hi = t;
	}
	if (last != NULL && lo >= last->lo && (uint64_t)lo <=
						     (uint64_t)last->hi + 1) {
		if (hi > last->hi)
			last->hi = hi;
		return;
	}
	/* Decided before set_push(), which may move set->r (and last). */
	unsorted = last != NULL && lo < last->lo;
	set_push(set, lo, hi);
	if (unsorted)
		set_normalise(set);
}

bool imap_seqset_is_saved(const struct imap_seqset *set)
{
	return set->saved;
}

bool imap_seqset_has_star(const struct imap_seqset *set)
{
	return set->star;
}

void imap_seqset_resolve(struct imap_seqset *set, uint32_t max)
{
	size_t o = 0;

	if (!set->star)
		return;
	for (size_t i = 0; i < set->n; i++) {
		uint32_t lo = set->r[i].lo, hi = set->r[i].hi;

		/* "n:*": "*" was sorted first as 0. */
		if (lo == 0)
			lo = max;
		if (hi == 0)
			hi = max;
		if (lo > hi) {
			uint32_t t = lo;

			lo = hi;
			hi = t;
		}
		if (lo == 0)
			lo = 1;
		if (hi == 0)
			continue;
		set->r[o].lo = lo;
		set->r[o].hi = hi;
		o++;
	}
	set->n = o;
	set->star = false;
	set_normalise(set);
}

size_t imap_seqset_nranges(const struct imap_seqset *set)
{
	return set->n;
}

void imap_seqset_range(const struct imap_seqset *set, size_t i,
		       uint32_t *lo_r, uint32_t *hi_r)
{
	*lo_r = set->r[i].lo;
	*hi_r = set->r[i].hi;
}

/* The first range with hi >= n. */
static size_t set_find(const struct imap_seqset *set, uint32_t n)
{
	size_t lo = 0, hi = set->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (set->r[mid].hi < n)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

bool imap_seqset_contains(const struct imap_seqset *set, uint32_t n)
{
	size_t i;

	if (set->star || n == 0)
		return false;
	i = set_find(set, n);
	return i < set->n && set->r[i].lo <= n;
}

bool imap_seqset_next(const struct imap_seqset *set, uint32_t *n)
{
	size_t i;

	if (set->star || *n == UINT32_MAX)
		return false;
	i = set_find(set, *n + 1);
	if (i >= set->n)
		return false;
	*n = set->r[i].lo > *n + 1 ? set->r[i].lo : *n + 1;
	return true;
}

uint64_t imap_seqset_count(const struct imap_seqset *set)
{
	uint64_t c = 0;

	for (size_t i = 0; i < set->n; i++)
		c += (uint64_t)set->r[i].hi - set->r[i].lo + 1;
	return c;
}

static int put_num(struct str *out, uint32_t n)
{
	return n == 0 ? str_append_byte(out, '*') :
			str_printf(out, "%u", (unsigned)n);
}

int imap_seqset_format(const struct imap_seqset *set, struct str *out)
{
	if (set->saved)
		return str_append_byte(out, '$');
	for (size_t i = 0; i < set->n; i++) {
		if ((i > 0 && str_append_byte(out, ',') < 0) ||
		    put_num(out, set->r[i].lo) < 0)
			return -1;
		if (set->r[i].hi != set->r[i].lo &&
		    (str_append_byte(out, ':') < 0 ||
		     put_num(out, set->r[i].hi) < 0))
			return -1;
	}
	return 0;
}

/* ---- dates ---------------------------------------------------------- */

static const char months[12][4] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};

static bool is_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int y, int m)
{
	static const int days[12] = { 31, 28, 31, 30, 31, 30,
				      31, 31, 30, 31, 30, 31 };

	return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

static int digits(const char *s, size_t n, int *v_r)
{
	int v = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*v_r = v;
	return 0;
}

/* "d-Mon-yyyy" at s; *used_r = its length. */
static int date_scan(const char *s, size_t len, struct imap_date *d,
		     size_t *used_r)
{
	size_t dl = len >= 2 && s[1] == '-' ? 1 : 2;

	if (len >= 2 && s[0] == ' ' && dl == 2) {
		s++;	/* date-day-fixed " d" */
		len--;
		dl = 1;
		(*used_r)++;
	}
	if (len < dl + 9 || s[dl] != '-' || s[dl + 4] != '-' ||
	    digits(s, dl, &d->day) < 0 ||
	    digits(s + dl + 5, 4, &d->year) < 0)
		return -1;
	d->mon = 0;
	for (int m = 0; m < 12; m++) {
		if (strncasecmp(s + dl + 1, months[m], 3) == 0)
			d->mon = m + 1;
	}
	if (d->mon == 0 || d->day < 1 || d->day > month_days(d->year, d->mon))
		return -1;
	*used_r += dl + 9;
	return 0;
}

int imap_date_parse(const char *s, size_t len, struct imap_date *date_r)
{
	size_t used = 0;

	if (len > 0 && s[0] == ' ')
		return -1;
	if (date_scan(s, len, date_r, &used) < 0 || used != len)
		return -1;
	return 0;
}

/* Days since 1970-01-01 of a civil date. */
static int64_t days_from_civil(int y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int imap_datetime_parse(const char *s, size_t len, time_t *t_r, int *zone_r)
{
	struct imap_date d;
	size_t used = 0;
	int hh, mm, ss, zh, zm;

	if (date_scan(s, len, &d, &used) < 0 || len - used != 15)
		return -1;
	s += used;
	if (s[0] != ' ' || s[3] != ':' || s[6] != ':' || s[9] != ' ' ||
	    (s[10] != '+' && s[10] != '-') || digits(s + 1, 2, &hh) < 0 ||
	    digits(s + 4, 2, &mm) < 0 || digits(s + 7, 2, &ss) < 0 ||
	    digits(s + 11, 2, &zh) < 0 || digits(s + 13, 2, &zm) < 0 ||
	    hh > 23 || mm > 59 || ss > 60 || zm > 59)
		return -1;
	*zone_r = (zh * 60 + zm) * (s[10] == '-' ? -1 : 1);
	*t_r = (time_t)(days_from_civil(d.year, d.mon, d.day) * 86400 +
			hh * 3600 + mm * 60 + ss - (int64_t)*zone_r * 60);
	return 0;
}

/* ---- UTF-8 and modified UTF-7 --------------------------------------- */

/* One code point at s[*i]; -1 when not valid UTF-8. */
static int32_t utf8_next(const char *s, size_t len, size_t *i)
{
	const unsigned char *u = (const unsigned char *)s + *i;
	size_t left = len - *i, n;
	uint32_t cp, min;

	if (u[0] < 0x80) {
		(*i)++;
		return u[0];
	}
	if (u[0] >= 0xc2 && u[0] <= 0xdf) {
		n = 2, cp = u[0] & 0x1f, min = 0x80;
	} else if (u[0] >= 0xe0 && u[0] <= 0xef) {
		n = 3, cp = u[0] & 0x0f, min = 0x800;
	} else if (u[0] >= 0xf0 && u[0] <= 0xf4) {
		n = 4, cp = u[0] & 0x07, min = 0x10000;
	} else {
		return -1;
	}
	if (left < n)
		return -1;
	for (size_t k = 1; k < n; k++) {
		if ((u[k] & 0xc0) != 0x80)
			return -1;
		cp = (cp << 6) | (u[k] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return -1;
	*i += n;
	return (int32_t)cp;
}

bool imap_utf8_valid(const char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		if (utf8_next(s, len, &i) < 0)
			return false;
	}
	return true;
}

static int put_utf8(struct str *out, uint32_t cp)
{
	unsigned char b[4];
	size_t n;

	if (cp < 0x80) {
		b[0] = (unsigned char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (unsigned char)(0xc0 | (cp >> 6));
		b[1] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (unsigned char)(0xe0 | (cp >> 12));
		b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (unsigned char)(0xf0 | (cp >> 18));
		b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return str_append(out, b, n);
}

static const char b64[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int b64_value(char c)
{
	const char *p = c != '\0' ? strchr(b64, c) : NULL;

	return p != NULL ? (int)(p - b64) : -1;
}

static bool printable(uint32_t c)
{
	return c >= 0x20 && c <= 0x7e;
}

/* One UTF-16 unit of an encoded run; *high holds a pending surrogate. */
static int decode_unit(uint32_t u, uint32_t *high, struct str *out,
		       const char **error_r)
{
	if (*high != 0) {
		if (u < 0xdc00 || u > 0xdfff) {
			*error_r = "Unpaired surrogate in mailbox name";
			return -1;
		}
		u = 0x10000 + ((*high - 0xd800) << 10) + (u - 0xdc00);
		*high = 0;
	} else if (u >= 0xd800 && u <= 0xdbff) {
		*high = u;
		return 0;
	} else if ((u >= 0xdc00 && u <= 0xdfff) || u == 0 || printable(u)) {
		*error_r = "Invalid modified UTF-7 in mailbox name";
		return -1;
	}
	if (put_utf8(out, u) < 0) {
		*error_r = "Mailbox name too long";
		return -1;
	}
	return 0;
}

/* The run after "&" at s[*i], up to and past its "-". */
static int decode_run(const char *s, size_t len, size_t *i, struct str *out,
		      const char **error_r)
{
	uint32_t bits = 0, high = 0;
	unsigned nbits = 0;

	for (; *i < len && s[*i] != '-'; (*i)++) {
		int v = b64_value(s[*i]);

		if (v < 0) {
			*error_r = "Invalid modified UTF-7 in mailbox name";
			return -1;
		}
		bits = (bits << 6) | (uint32_t)v;
		nbits += 6;
		if (nbits >= 16) {
			nbits -= 16;
			if (decode_unit((bits >> nbits) & 0xffff, &high, out,
					error_r) < 0)
				return -1;
			bits &= (1u << nbits) - 1;
		}
	}
	if (*i >= len || high != 0 || nbits >= 6 || bits != 0) {
		*error_r = "Invalid modified UTF-7 in mailbox name";
		return -1;
	}
	(*i)++;
	return 0;
}

int imap_mutf7_decode(const char *s, size_t len, struct str *out,
		      const char **error_r)
{
	size_t i = 0;
	bool after_run = false;

	while (i < len) {
		unsigned char c = (unsigned char)s[i++];

		if (!printable(c)) {
			*error_r = "Invalid character in mailbox name";
			return -1;
		}
		if (c != '&') {
			after_run = false;
			if (str_append_byte(out, c) < 0)
				goto full;
			continue;
		}
		if (i < len && s[i] == '-') {
			i++;
			after_run = false;
			if (str_append_byte(out, '&') < 0)
				goto full;
			continue;
		}
		if (after_run) {
			*error_r = "Invalid modified UTF-7 in mailbox name";
			return -1;
		}
		if (decode_run(s, len, &i, out, error_r) < 0)
			return -1;
		after_run = true;
	}
	return 0;
full:
	*error_r = "Mailbox name too long";
	return -1;
}

/* Appends the base64 digits that a UTF-16 unit completes. */
static int put_unit(struct str *out, uint32_t u, uint32_t *bits,
		    unsigned *nbits)
{
	int r = 0;

	*bits = (*bits << 16) | u;
	*nbits += 16;
	while (*nbits >= 6) {
		*nbits -= 6;
		r |= str_append_byte(out,
				     (unsigned char)b64[(*bits >> *nbits) & 63]);
	}
	*bits &= (1u << *nbits) - 1;
	return r;
}

int imap_mutf7_encode(const char *s, size_t len, struct str *out,
		      const char **error_r)
{
	size_t i = 0;

	while (i < len) {
		uint32_t bits = 0;
		unsigned nbits = 0;
		int r = 0;

		if (printable((unsigned char)s[i])) {
			r = s[i] == '&' ? str_append(out, "&-", 2) :
					  str_append_byte(out,
							  (unsigned char)s[i]);
			i++;
			if (r < 0)
				goto full;
			continue;
		}
		if (str_append_byte(out, '&') < 0)
			goto full;
		while (i < len && !printable((unsigned char)s[i])) {
			int32_t cp = utf8_next(s, len, &i);
			uint32_t units[2];
			size_t nu = 1;

			if (cp <= 0) {
				*error_r = "Invalid UTF-8 in mailbox name";
				return -1;
			}
			units[0] = (uint32_t)cp;
			if (cp >= 0x10000) {
				uint32_t v = (uint32_t)cp - 0x10000;

				units[0] = 0xd800 + (v >> 10);
				units[1] = 0xdc00 + (v & 0x3ff);
				nu = 2;
			}
			for (size_t k = 0; k < nu; k++)
				r |= put_unit(out, units[k], &bits, &nbits);
		}
		if (nbits > 0)
			r |= str_append_byte(out, (unsigned char)
					     b64[(bits << (6 - nbits)) & 63]);
		r |= str_append_byte(out, '-');
		if (r < 0)
			goto full;
	}
	return 0;
full:
	*error_r = "Mailbox name too long";
	return -1;
}
