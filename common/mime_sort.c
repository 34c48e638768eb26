/* mime_sort.c: SORT/THREAD keys: dates, base subjects, message-ids. */
#include "config.h"

#include "compat.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <strings.h>

#include "mime.h"
#include "mime_addr.h"
#include "mime_encode.h"
#include "mime_sort.h"
#include "xalloc.h"

/* ---- dates ---- */

struct date_lexer {
	const char *p, *end;
};

static void date_skip(struct date_lexer *lx)
{
	unsigned int depth = 0;

	for (; lx->p < lx->end; lx->p++) {
		char c = *lx->p;

		if (c == '(')
			depth++;
		else if (c == ')' && depth > 0)
			depth--;
		else if (depth == 0 && c != ' ' && c != '\t' && c != '\r' &&
			 c != '\n')
			break;
	}
}

/* Up to max digits; -1 when there is none. */
static long date_number(struct date_lexer *lx, int max, int *digits_r)
{
	long v = 0;
	int n = 0;

	date_skip(lx);
	while (lx->p < lx->end && n < max && isdigit((unsigned char)*lx->p)) {
		v = v * 10 + (*lx->p++ - '0');
		n++;
	}
	if (digits_r != NULL)
		*digits_r = n;
	return n > 0 ? v : -1;
}

/* A word of letters, lowercased into buf (at most size-1 letters). */
static size_t date_word(struct date_lexer *lx, char *buf, size_t size)
{
	size_t n = 0;

	date_skip(lx);
	while (lx->p < lx->end && isalpha((unsigned char)*lx->p)) {
		if (n + 1 < size)
			buf[n++] = (char)tolower((unsigned char)*lx->p);
		lx->p++;
	}
	buf[n] = '\0';
	return n;
}

static int month_number(const char *w)
{
	static const char months[] = "janfebmaraprmayjunjulaugsepoctnovdec";

	if (strlen(w) < 3)
		return -1;
	for (int i = 0; i < 12; i++) {
		if (strncmp(months + 3 * i, w, 3) == 0)
			return i + 1;
	}
	return -1;
}

/* Named zones of RFC 5322 4.3; others (military letters) are -0000. */
static int zone_named(const char *w)
{
	static const struct {
		const char *name;
		int minutes;
	} zones[] = {
		{ "ut", 0 }, { "gmt", 0 }, { "z", 0 },
		{ "est", -300 }, { "edt", -240 }, { "cst", -360 },
		{ "cdt", -300 }, { "mst", -420 }, { "mdt", -360 },
		{ "pst", -480 }, { "pdt", -420 },
	};

	for (size_t i = 0; i < TERN_NELEM(zones); i++) {
		if (strcmp(w, zones[i].name) == 0)
			return zones[i].minutes;
	}
	return 0;
}

static int date_zone(struct date_lexer *lx)
{
	char w[8];
	int sign, digits;
	long v;

	date_skip(lx);
	if (lx->p < lx->end && (*lx->p == '+' || *lx->p == '-')) {
		sign = *lx->p++ == '-' ? -1 : 1;
		v = date_number(lx, 4, &digits);
		if (digits != 4 || v % 100 > 59)
			return 0;
		return sign * (int)(v / 100 * 60 + v % 100);
	}
	return date_word(lx, w, sizeof(w)) > 0 ? zone_named(w) : 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static long year_fix(long y, int digits)
{
	if (digits <= 2)
		return y < 50 ? y + 2000 : y + 1900;
	if (digits == 3)
		return y + 1900;
	return y;
}

static int date_time_part(struct date_lexer *lx, long *h, long *mi,
			  long *s)
{
	*h = date_number(lx, 2, NULL);
	if (lx->p >= lx->end || *lx->p != ':')
		return -1;
	lx->p++;
	*mi = date_number(lx, 2, NULL);
	*s = 0;
	if (lx->p < lx->end && *lx->p == ':') {
		lx->p++;
		*s = date_number(lx, 2, NULL);
	}
	return *h < 0 || *h > 23 || *mi < 0 || *mi > 59 || *s < 0 ||
	       *s > 60 ? -1 : 0;
}

int mime_date_parse(const char *s, size_t len, time_t *time_r,
		    int *tz_minutes_r)
{
	struct date_lexer lx = { s, s + len };
	const char *save;
	char w[16];
	long day, year, h, mi, sec;
	int mon, digits, tz;

	save = lx.p;
	if (date_word(&lx, w, sizeof(w)) > 0) {	/* day of week */
		date_skip(&lx);
		if (lx.p < lx.end && *lx.p == ',')
			lx.p++;
	} else {
		lx.p = save;
	}
	day = date_number(&lx, 2, NULL);
	date_skip(&lx);
	if (lx.p < lx.end && *lx.p == '-')
		lx.p++;
	mon = month_number((date_word(&lx, w, sizeof(w)), w));
	date_skip(&lx);
	if (lx.p < lx.end && *lx.p == '-')
		lx.p++;
	year = date_number(&lx, 4, &digits);
	if (day < 1 || day > 31 || mon < 0 || year < 0 ||
	    date_time_part(&lx, &h, &mi, &sec) < 0)
		return -1;
	year = year_fix(year, digits);
	tz = date_zone(&lx);
	*time_r = (time_t)(days_from_civil(year, mon, (int)day) * 86400 +
			   h * 3600 + mi * 60 + sec - tz * 60);
	*tz_minutes_r = tz;
	return 0;
}

/* ---- base subject (RFC 5256 2.1) ---- */

struct subj {
	char *s;
	size_t len;
	int is_reply;
};

static int sp_char(char c)
{
	return c == ' ' || c == '\t';
}

static void subj_drop_front(struct subj *sb, size_t n)
{
	memmove(sb->s, sb->s + n, sb->len - n);
	sb->len -= n;
}

/* Step 2: trailing "(fwd)" and whitespace. */
static void subj_trailer(struct subj *sb)
{
	for (;;) {
		if (sb->len > 0 && sp_char(sb->s[sb->len - 1])) {
			sb->len--;
		} else if (sb->len >= 5 &&
			   strncasecmp(sb->s + sb->len - 5, "(fwd)", 5) == 0) {
			sb->len -= 5;
			sb->is_reply = 1;
		} else {
			return;
		}
	}
}

/* subj-blob at s: "[" *BLOBCHAR "]" *WSP; its length or 0. */
static size_t blob_len(const char *s, size_t len)
{
	size_t i = 1;

	if (len == 0 || s[0] != '[')
		return 0;
	while (i < len && s[i] != ']' && s[i] != '[')
		i++;
	if (i >= len || s[i] != ']')
		return 0;
	for (i++; i < len && sp_char(s[i]); i++)
		;
	return i;
}

/* subj-leader at s: WSP, or *blob ("re" / "fw" / "fwd") *WSP [blob] ":". */
static size_t leader_len(const char *s, size_t len)
{
	size_t i = 0, b;

	if (len > 0 && sp_char(s[0]))
		return 1;
	while ((b = blob_len(s + i, len - i)) > 0)
		i += b;
	if (len - i >= 3 && strncasecmp(s + i, "fwd", 3) == 0)
		i += 3;
	else if (len - i >= 2 && (strncasecmp(s + i, "re", 2) == 0 ||
				  strncasecmp(s + i, "fw", 2) == 0))
		i += 2;
	else
		return 0;
	while (i < len && sp_char(s[i]))
		i++;
	i += blob_len(s + i, len - i);
	return i < len && s[i] == ':' ? i + 1 : 0;
}

/* Steps 3-5. */
static void subj_leaders(struct subj *sb)
{
	size_t n;

	for (;;) {
		n = leader_len(sb->s, sb->len);
		if (n > 0) {
			if (!sp_char(sb->s[0]))
				sb->is_reply = 1;
			subj_drop_front(sb, n);
			continue;
		}
		n = blob_len(sb->s, sb->len);
		if (n > 0 && n < sb->len) {
			subj_drop_front(sb, n);
			continue;
		}
		return;
	}
}

/* Step 6: "[fwd:" ... "]". */
static int subj_fwd_wrapper(struct subj *sb)
{
	if (sb->len < 6 || strncasecmp(sb->s, "[fwd:", 5) != 0 ||
	    sb->s[sb->len - 1] != ']')
		return 0;
	sb->len--;
	subj_drop_front(sb, 5);
	sb->is_reply = 1;
	return 1;
}

/* Step 1 after decoding: whitespace runs become one space. */
static void subj_squeeze(struct subj *sb)
{
	size_t n = 0;

	for (size_t i = 0; i < sb->len; i++) {
		char c = sb->s[i];

		if (c == '\t' || c == '\r' || c == '\n')
			c = ' ';
		if (c == ' ' && n > 0 && sb->s[n - 1] == ' ')
			continue;
		sb->s[n++] = c;
	}
	sb->len = n;
}

int mime_subject_base(const char *s, size_t len, struct str *out,
		      int *is_reply_r)
{
	struct str *dec = str_new(len + 16, len * 3 + 16);
	struct subj sb = { NULL, 0, 0 };
	int ret;

	(void)!mime_header_decode(s, len, dec);
	sb.s = str_data(dec);
	sb.len = str_len(dec);
	subj_squeeze(&sb);
	do {
		subj_trailer(&sb);
		subj_leaders(&sb);
	} while (subj_fwd_wrapper(&sb));
	ret = str_append(out, sb.s, sb.len);
	if (is_reply_r != NULL)
		*is_reply_r = sb.is_reply;
	str_free(&dec);
	return ret;
}

/* ---- message-ids ---- */

int mime_msgid_next(const char **pos, const char *end, const char **id_r,
		    size_t *len_r)
{
	const char *lt, *gt;

	for (;;) {
		lt = memchr(*pos, '<', (size_t)(end - *pos));
		if (lt == NULL) {
			*pos = end;
			return 0;
		}
		gt = memchr(lt + 1, '>', (size_t)(end - lt - 1));
		if (gt == NULL) {
			*pos = end;
			return 0;
		}
		*pos = gt + 1;
		lt = memrchr(lt, '<', (size_t)(gt - lt));
		while (lt + 1 < gt && (lt[1] == ' ' || lt[1] == '\t'))
			lt++;
		while (gt > lt + 1 && (gt[-1] == ' ' || gt[-1] == '\t'))
			gt--;
		if (gt > lt + 1 && memchr(lt + 1, '<', (size_t)(gt - lt - 1))
		    == NULL) {
			*id_r = lt + 1;
			*len_r = (size_t)(gt - lt - 1);
			return 1;
		}
	}
}

/* ---- addresses ---- */

int mime_sort_address(const struct mime_part *msg, const char *name,
		      int display, struct str *out)
{
	const struct mime_header *h = mime_part_header_find(msg, name);
	struct mime_address *list, *a;
	int ret = 0;

	if (h == NULL)
		return 0;
	list = mime_address_parse(h->value, h->value_len, 1000);
	for (a = list; a != NULL && a->kind != MIME_ADDR_MAILBOX; a = a->next)
		;
	if (a != NULL && !display)
		ret = str_append_c(out, a->mailbox);
	else if (a != NULL && a->name != NULL && a->name[0] != '\0')
		ret = mime_header_decode(a->name, strlen(a->name), out);
	else if (a != NULL)
		ret = str_printf(out, "%s@%s", a->mailbox, a->domain);
	mime_address_free(&list);
	return ret;
}
