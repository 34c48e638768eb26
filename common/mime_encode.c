/* mime_encode.c: RFC 2047 words, RFC 2231 parameters, charsets to UTF-8. */
#include "config.h"

#include "compat.h"
#include "base64.h"

#include <ctype.h>
#include <errno.h>
#include <iconv.h>
#include <stdint.h>
#include <stdlib.h>
#include <strings.h>

#include "mime_encode.h"
#include "str.h"
#include "xalloc.h"

#define UTF8_REPLACEMENT "\xEF\xBF\xBD"

/* ---- UTF-8 ---- */

/* Length of the valid UTF-8 sequence at p (RFC 3629), 0 when invalid. */
static size_t utf8_seq_len(const unsigned char *p, size_t left)
{
	size_t n, i;
	uint32_t cp;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xC2 && p[0] <= 0xDF)
		n = 2, cp = p[0] & 0x1F;
	else if (p[0] >= 0xE0 && p[0] <= 0xEF)
		n = 3, cp = p[0] & 0x0F;
	else if (p[0] >= 0xF0 && p[0] <= 0xF4)
		n = 4, cp = p[0] & 0x07;
	else
		return 0;
	if (left < n)
		return 0;
	for (i = 1; i < n; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3F);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return n;
}

int mime_utf8_append(const void *in, size_t len, struct str *out)
{
	const unsigned char *p = in, *end = p + len, *run = p;

	while (p < end) {
		size_t n = utf8_seq_len(p, (size_t)(end - p));

		if (n > 0) {
			p += n;
			continue;
		}
		if (str_append(out, run, (size_t)(p - run)) < 0 ||
		    str_append_c(out, UTF8_REPLACEMENT) < 0)
			return -1;
		run = ++p;
	}
	return str_append(out, run, (size_t)(p - run));
}

/* ---- charsets ---- */

/* Only plain names reach iconv_open(): no "//" suffixes, no paths. */
static int charset_usable(const char *cs)
{
	size_t i;

	for (i = 0; cs[i] != '\0'; i++) {
		unsigned char c = (unsigned char)cs[i];

		if (!isalnum(c) && strchr("-_.:+()", c) == NULL)
			return 0;
	}
	return i > 0 && i <= MIME_CHARSET_MAX;
}

static int charset_is_utf8ish(const char *cs)
{
	/* us-ascii is often mislabelled UTF-8: keep valid UTF-8 as it is */
	return strcasecmp(cs, "utf-8") == 0 || strcasecmp(cs, "utf8") == 0 ||
	       strcasecmp(cs, "us-ascii") == 0 || strcasecmp(cs, "ascii") == 0;
}

/* Runs iconv over in; an invalid or incomplete byte becomes U+FFFD. */
static int iconv_run(iconv_t cd, const char *in, size_t len, struct str *out)
{
	char buf[512];	/* output scratch: iconv never writes past its size */
	char *ip = (char *)in, *op;
	size_t il = len, ol, r;

	for (;;) {
		op = buf;
		ol = sizeof(buf);
		r = iconv(cd, il > 0 ? &ip : NULL, &il, &op, &ol);
		if (str_append(out, buf, sizeof(buf) - ol) < 0)
			return -1;
		if (r != (size_t)-1 && il == 0)
			break;
		if (r == (size_t)-1 && errno == E2BIG)
			continue;
		if (r == (size_t)-1) {
			if (str_append_c(out, UTF8_REPLACEMENT) < 0)
				return -1;
			ip++;
			il--;
			iconv(cd, NULL, NULL, NULL, NULL);
		}
	}
	return 0;
}

int mime_charset_to_utf8(const char *charset, const void *in, size_t len,
			 struct str *out)
{
	iconv_t cd;
	int ret;

	if (charset == NULL || charset_is_utf8ish(charset) ||
	    !charset_usable(charset))
		return mime_utf8_append(in, len, out);
	cd = iconv_open("UTF-8", charset);
	if (cd == (iconv_t)-1)
		return mime_utf8_append(in, len, out);
	ret = iconv_run(cd, in, len, out);
	iconv_close(cd);
	return ret;
}

/* ---- RFC 2047 ---- */

/* Q: '_' is a space, "=XX" a byte; a broken '=' stays as it is. */
static int decode_q(const char *in, size_t len, struct str *out)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		int h, l;

		if (c == '_')
			c = ' ';
		else if (c == '=' && i + 2 < len &&
			 (h = str_hex_value((unsigned char)in[i + 1])) >= 0 &&
			 (l = str_hex_value((unsigned char)in[i + 2])) >= 0) {
			c = (unsigned char)(h << 4 | l);
			i += 2;
		}
		if (str_append_byte(out, c) < 0)
			return -1;
	}
	return 0;
}

struct ewords {
	struct str *bytes;	/* decoded bytes of adjacent words */
	char charset[MIME_CHARSET_MAX + 1];
};

/* Parses "=?cs?E?text?=" at in; returns its length, 0 when malformed. */
static size_t ew_scan(const char *in, size_t len, char *cs_r, char *enc_r,
		      const char **text_r, size_t *tlen_r)
{
	size_t i = 2, cs_len;
	const char *q;

	if (len < 8 || in[0] != '=' || in[1] != '?')
		return 0;
	q = memchr(in + 2, '?', len - 2);
	if (q == NULL)
		return 0;
	cs_len = (size_t)(q - in) - 2;
	if (cs_len == 0 || cs_len > MIME_CHARSET_MAX)
		return 0;
	memcpy(cs_r, in + 2, cs_len);
	cs_r[cs_len] = '\0';
	i += cs_len + 1;
	if (i + 2 > len || in[i + 1] != '?' || strchr("BbQq", in[i]) == NULL ||
	    in[i] == '\0')
		return 0;
	*enc_r = (char)toupper((unsigned char)in[i]);
	i += 2;
	*text_r = in + i;
	for (; i < len && in[i] != '?'; i++) {
		if (in[i] == ' ' || in[i] == '\t' || in[i] == '\r' ||
		    in[i] == '\n')
			return 0;
	}
	if (i + 1 >= len || in[i + 1] != '=')
		return 0;
	*tlen_r = (size_t)(in + i - *text_r);
	return i + 2;
}

static int ew_flush(struct ewords *ew, struct str *out)
{
	int ret;

	if (str_len(ew->bytes) == 0)
		return 0;
	ret = mime_charset_to_utf8(ew->charset, str_c(ew->bytes),
				   str_len(ew->bytes), out);
	str_clear(ew->bytes);
	return ret;
}

/* Decodes one scanned word into ew (flushing a different charset first).
 * -1: malformed, nothing appended; -2: out of room. */
static int ew_add(struct ewords *ew, char *cs, char enc, const char *text,
		  size_t tlen, struct str *out)
{
	char *star = strchr(cs, '*');	/* RFC 2231 language suffix */
	size_t old;

	if (star != NULL)
		*star = '\0';
	if (strcasecmp(cs, ew->charset) != 0) {
		if (ew_flush(ew, out) < 0)
			return -2;
		str_lcpy(ew->charset, cs, sizeof(ew->charset));
	}
	old = str_len(ew->bytes);
	if ((enc == 'B' ? base64_decode(text, tlen, 0, ew->bytes) :
	     decode_q(text, tlen, ew->bytes)) < 0) {
		str_truncate(ew->bytes, old);
		return -1;
	}
	return 0;
}

static int only_space(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' &&
		    p[i] != '\n')
			return 0;
	}
	return 1;
}

/* Appends literal text between words: dropped when it is only whitespace
 * between two encoded words. */
static int text_flush(struct ewords *ew, const char *p, size_t n,
		      int between_words, struct str *out)
{
	if (n == 0 || (between_words && only_space(p, n)))
		return 0;
	if (ew_flush(ew, out) < 0)
		return -1;
	return mime_utf8_append(p, n, out);
}

static int decode_loop(struct ewords *ew, const char *in, size_t len,
		       struct str *out)
{
	size_t i = 0, run = 0, wlen, tlen;
	char cs[MIME_CHARSET_MAX + 1], enc;
	const char *text;
	int after_word = 0, r;

	while (i < len) {
		wlen = in[i] == '=' ? ew_scan(in + i, len - i, cs, &enc,
					       &text, &tlen) : 0;
		if (wlen == 0) {
			i++;
			continue;
		}
		if (text_flush(ew, in + run, i - run, after_word, out) < 0)
			return -1;
		r = ew_add(ew, cs, enc, text, tlen, out);
		if (r == -2)
			return -1;
		if (r == -1) {	/* malformed: keep it as text */
			run = i;
			i += 2;
			after_word = 0;
			continue;
		}
		i += wlen;
		run = i;
		after_word = 1;
	}
	if (text_flush(ew, in + run, len - run, 0, out) < 0)
		return -1;
	return ew_flush(ew, out);
}

int mime_header_decode(const char *in, size_t len, struct str *out)
{
	struct ewords ew;
	int ret;

	ew.bytes = str_new(64, str_max(out));
	ew.charset[0] = '\0';
	ret = decode_loop(&ew, in, len, out);
	str_free(&ew.bytes);
	return ret;
}

/* ---- RFC 2231 ---- */

static int pct_decode(const char *in, size_t len, struct str *out)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		int h, l;

		if (c == '%' && i + 2 < len &&
		    (h = str_hex_value((unsigned char)in[i + 1])) >= 0 &&
		    (l = str_hex_value((unsigned char)in[i + 2])) >= 0) {
			c = (unsigned char)(h << 4 | l);
			i += 2;
		}
		if (str_append_byte(out, c) < 0)
			return -1;
	}
	return 0;
}

int mime_rfc2231_decode(const char *in, size_t len, struct str *out)
{
	const char *q1 = memchr(in, '\'', len), *q2 = NULL;
	char cs[MIME_CHARSET_MAX + 1] = "";
	struct str *bytes;
	int ret;

	if (q1 != NULL)
		q2 = memchr(q1 + 1, '\'', len - (size_t)(q1 + 1 - in));
	if (q2 != NULL && (size_t)(q1 - in) <= MIME_CHARSET_MAX) {
		memcpy(cs, in, (size_t)(q1 - in));
		cs[q1 - in] = '\0';
		len -= (size_t)(q2 + 1 - in);
		in = q2 + 1;
	}
	bytes = str_new(len, len > 0 ? len : 1);
	ret = pct_decode(in, len, bytes);
	if (ret == 0)
		ret = mime_charset_to_utf8(cs[0] != '\0' ? cs : NULL,
					   str_c(bytes), str_len(bytes), out);
	str_free(&bytes);
	return ret;
}

/* ---- RFC 2045 parameters ---- */

struct lexer {
	const char *p, *end;
};

static void lex_skip_cfws(struct lexer *lx)
{
	unsigned int depth = 0;

	while (lx->p < lx->end) {
		char c = *lx->p;

		if (depth > 0 && c == '\\' && lx->p + 1 < lx->end)
			lx->p++;
		else if (c == '(')
			depth++;
		else if (c == ')' && depth > 0)
			depth--;
		else if (depth == 0 && c != ' ' && c != '\t' && c != '\r' &&
			 c != '\n')
			return;
		lx->p++;
	}
}

/* A quoted string at lx->p (the opening quote): unescaped into out. */
static void lex_quoted(struct lexer *lx, struct str *out)
{
	for (lx->p++; lx->p < lx->end && *lx->p != '"'; lx->p++) {
		if (*lx->p == '\\' && lx->p + 1 < lx->end)
			lx->p++;
		if (*lx->p != '\r' && *lx->p != '\n' &&
		    str_append_byte(out, (unsigned char)*lx->p) < 0)
			return;	/* cannot happen: out is as long as input */
	}
	if (lx->p < lx->end)
		lx->p++;
}

/* An unquoted value or a name: up to ';', '=', whitespace or '('. */
static void lex_word(struct lexer *lx, int stop_eq, struct str *out)
{
	const char *s = lx->p;

	while (lx->p < lx->end && *lx->p != ';' && *lx->p != ' ' &&
	       *lx->p != '\t' && *lx->p != '\r' && *lx->p != '\n' &&
	       *lx->p != '(' && *lx->p != '"' && !(stop_eq && *lx->p == '='))
		lx->p++;
	if (str_append(out, s, (size_t)(lx->p - s)) < 0)
		return;
}

/* Skips to just after the next ';' outside quotes and comments; returns 0
 * at the end of the input. */
static int lex_next_semicolon(struct lexer *lx, struct str *scratch)
{
	while (lx->p < lx->end) {
		lex_skip_cfws(lx);
		if (lx->p >= lx->end)
			break;
		if (*lx->p == ';') {
			lx->p++;
			return 1;
		}
		if (*lx->p == '"') {
			lex_quoted(lx, scratch);
			str_clear(scratch);
		} else {
			lex_word(lx, 0, scratch);
			str_clear(scratch);
			if (lx->p < lx->end && *lx->p != ';' &&
			    *lx->p != '(' && *lx->p != '"')
				lx->p++;
		}
	}
	return 0;
}

/* One raw parameter before RFC 2231 processing. */
struct raw_param {
	char *name;	/* lowercase, with the '*' suffixes */
	char *value;
	size_t value_len;
};

static void raw_param_read(struct lexer *lx, struct str *name,
			   struct str *value, struct raw_param *rp)
{
	rp->name = NULL;
	str_clear(name);
	str_clear(value);
	lex_skip_cfws(lx);
	lex_word(lx, 1, name);
	lex_skip_cfws(lx);
	if (str_len(name) == 0 || lx->p >= lx->end || *lx->p != '=')
		return;
	lx->p++;
	lex_skip_cfws(lx);
	if (lx->p < lx->end && *lx->p == '"')
		lex_quoted(lx, value);
	else
		lex_word(lx, 0, value);
	rp->name = xstrndup(str_c(name), str_len(name));
	for (char *c = rp->name; *c != '\0'; c++)
		*c = (char)tolower((unsigned char)*c);
	rp->value = xmalloc(str_len(value) + 1);
	memcpy(rp->value, str_c(value), str_len(value) + 1);
	rp->value_len = str_len(value);
}

/* Splits "name*3*" into base length, section (-1 for none), extended. */
static size_t name_split(const char *name, long *section_r, int *ext_r)
{
	size_t len = strlen(name);
	const char *star = strchr(name, '*');
	char *endp;

	*section_r = -1;
	*ext_r = len > 0 && name[len - 1] == '*';
	if (star == NULL)
		return len;
	if (star[1] >= '0' && star[1] <= '9') {
		long n = strtol(star + 1, &endp, 10);

		if ((*endp == '\0' || (*endp == '*' && endp[1] == '\0')) &&
		    n <= MIME_PARAM_SECTION_MAX && endp - star <= 4)
			*section_r = n;
		else
			return len;	/* not RFC 2231: a plain odd name */
	} else if (star[1] != '\0') {
		return len;
	}
	return (size_t)(star - name);
}

/* Appends a non-extended section to an extended value, %-encoding what
 * RFC 2231 would not allow there. */
static void pct_append(struct str *out, const char *v, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)v[i];
		int ok;

		if (c > 0x20 && c < 0x7F && strchr("%'*()<>@,;:\\\"/[]?=",
						  c) == NULL)
			ok = str_append_byte(out, c);
		else
			ok = str_printf(out, "%%%02X", c);
		if (ok < 0)
			return;
	}
}

static int base_is(const struct raw_param *rp, const char *base, size_t blen)
{
	long sec;
	int ext;

	return rp->name != NULL &&
	       name_split(rp->name, &sec, &ext) == blen &&
	       strncmp(rp->name, base, blen) == 0 &&
	       (sec >= 0 || ext);
}

/* Indexes of base's sections, sorted by section number ("name*" is 0). */
static size_t sections_collect(const struct raw_param *raw, size_t n,
			       size_t first, size_t blen, size_t *idx,
			       long *secs)
{
	size_t c = 0, i, j;
	long s;
	int ext;

	for (i = first; i < n; i++) {
		if (!base_is(&raw[i], raw[first].name, blen))
			continue;
		name_split(raw[i].name, &s, &ext);
		if (s < 0)
			s = 0;
		for (j = c; j > 0 && secs[j - 1] > s; j--) {
			secs[j] = secs[j - 1];
			idx[j] = idx[j - 1];
		}
		secs[j] = s;
		idx[j] = i;
		c++;
	}
	return c;
}

/* Joins the RFC 2231 sections of raw[first]'s base name into one
 * parameter; the consumed raw params get name == NULL. */
static void join_sections(struct raw_param *raw, size_t n, size_t first,
			  struct mime_param *mp, struct str *acc)
{
	size_t idx[MIME_PARAMS_MAX], c, k, blen;
	long secs[MIME_PARAMS_MAX + 1], sec;
	int ext, any_ext;

	blen = name_split(raw[first].name, &sec, &ext);
	idx[0] = first;	/* raw[first] is always its own first section */
	c = sections_collect(raw, n, first, blen, idx, secs);
	str_clear(acc);
	name_split(raw[idx[0]].name, &sec, &any_ext);
	for (k = 0; k < c; k++) {
		const struct raw_param *rp = &raw[idx[k]];

		name_split(rp->name, &sec, &ext);
		if (any_ext && !ext)
			pct_append(acc, rp->value, rp->value_len);
		else if (!any_ext && ext)
			(void)!pct_decode(rp->value, rp->value_len, acc);
		else
			(void)!str_append(acc, rp->value, rp->value_len);
	}
	mp->name = xmalloc(blen + 2);
	memcpy(mp->name, raw[first].name, blen);
	mp->name[blen] = '*';
	mp->name[blen + (any_ext ? 1 : 0)] = '\0';
	mp->value = xstrndup(str_c(acc), str_len(acc));
	for (k = 0; k < c; k++) {
		free(raw[idx[k]].name);
		raw[idx[k]].name = NULL;
	}
}

static char *decoded_value(const struct mime_param *mp, size_t max)
{
	struct str *s = str_new(64, max * 3 + 16);
	size_t len = strlen(mp->value), nlen = strlen(mp->name);
	char *ret;

	if (nlen > 0 && mp->name[nlen - 1] == '*')
		(void)!mime_rfc2231_decode(mp->value, len, s);
	else
		(void)!mime_header_decode(mp->value, len, s);
	ret = xstrndup(str_c(s), str_len(s));
	str_free(&s);
	return ret;
}

static void params_build(struct raw_param *raw, size_t n,
			 struct mime_param *out, size_t *count_r,
			 struct str *acc)
{
	size_t i, c = 0;
	long sec;
	int ext;

	for (i = 0; i < n; i++) {
		if (raw[i].name == NULL)
			continue;
		name_split(raw[i].name, &sec, &ext);
		if (sec >= 0 || ext) {
			join_sections(raw, n, i, &out[c], acc);
		} else {
			out[c].name = raw[i].name;
			out[c].value = xstrndup(raw[i].value,
						raw[i].value_len);
			raw[i].name = NULL;
		}
		out[c].utf8 = decoded_value(&out[c], str_max(acc));
		c++;
	}
	*count_r = c;
}

static size_t params_bytes(const struct mime_param *mp, size_t n)
{
	size_t b = n * sizeof(*mp);

	for (size_t i = 0; i < n; i++)
		b += strlen(mp[i].name) + strlen(mp[i].value) +
		     strlen(mp[i].utf8) + 3;
	return b;
}

void mime_params_parse(const char *in, size_t len, size_t *lead_len_r,
		       struct mime_param **params_r, size_t *count_r,
		       size_t *bytes_r)
{
	struct lexer lx = { in, in + len };
	struct str *name = str_new(32, len + 1), *value = str_new(32, len + 1);
	struct raw_param *raw = NULL;
	size_t n = 0, i;

	*params_r = NULL;
	*count_r = 0;
	*lead_len_r = len;
	if (lex_next_semicolon(&lx, value))
		*lead_len_r = (size_t)(lx.p - 1 - in);
	while (lx.p < lx.end && n < MIME_PARAMS_MAX) {
		if (raw == NULL)
			raw = xcalloc(MIME_PARAMS_MAX, sizeof(*raw));
		raw_param_read(&lx, name, value, &raw[n]);
		if (raw[n].name != NULL)
			n++;
		if (!lex_next_semicolon(&lx, value))
			break;
	}
	if (n > 0) {
		*params_r = xcalloc(n, sizeof(**params_r));
		params_build(raw, n, *params_r, count_r, name);
	}
	for (i = 0; i < n; i++) {
		free(raw[i].name);
		free(raw[i].value);
	}
	free(raw);
	if (bytes_r != NULL)
		*bytes_r = params_bytes(*params_r, *count_r);
	str_free(&name);
	str_free(&value);
}

void mime_params_free(struct mime_param **params, size_t count)
{
	if (*params == NULL)
		return;
	for (size_t i = 0; i < count; i++) {
		free((*params)[i].name);
		free((*params)[i].value);
		free((*params)[i].utf8);
	}
	free(*params);
	*params = NULL;
}
