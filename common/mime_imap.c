/* mime_imap.c: ENVELOPE, BODYSTRUCTURE and BODY (RFC 3501 7.4.2). */
#include "config.h"

#include "compat.h"

#include <inttypes.h>
#include <strings.h>

#include "mime.h"
#include "mime_addr.h"
#include "mime_encode.h"
#include "mime_imap.h"

/* Addresses per list written into an ENVELOPE. */
#define ENVELOPE_ADDRS_MAX 10000

/* ---- strings ---- */

static int needs_literal(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\r' || c == '\n' || c >= 0x80)
			return 1;
	}
	return 0;
}

static size_t count_nuls(const char *s, size_t len)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++)
		n += s[i] == '\0';
	return n;
}

/* Appends s without its NUL bytes. */
static int append_no_nul(struct str *out, const char *s, size_t len)
{
	const char *end = s + len, *nul;

	while (s < end) {
		nul = memchr(s, '\0', (size_t)(end - s));
		if (str_append(out, s, (size_t)((nul ? nul : end) - s)) < 0)
			return -1;
		if (nul == NULL)
			break;
		s = nul + 1;
	}
	return 0;
}

static int append_quoted(struct str *out, const char *s, size_t len)
{
	if (str_append_byte(out, '"') < 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\0')
			continue;
		if ((s[i] == '"' || s[i] == '\\') &&
		    str_append_byte(out, '\\') < 0)
			return -1;
		if (str_append_byte(out, (unsigned char)s[i]) < 0)
			return -1;
	}
	return str_append_byte(out, '"');
}

int mime_imap_string(struct str *out, const char *s, size_t len)
{
	if (!needs_literal(s, len))
		return append_quoted(out, s, len);
	if (str_printf(out, "{%zu}\r\n", len - count_nuls(s, len)) < 0)
		return -1;
	return append_no_nul(out, s, len);
}

int mime_imap_nstring(struct str *out, const char *s, size_t len)
{
	if (s == NULL)
		return str_append_c(out, "NIL");
	return mime_imap_string(out, s, len);
}

static int cstring(struct str *out, const char *s)
{
	return mime_imap_nstring(out, s, s != NULL ? strlen(s) : 0);
}

static int sp(struct str *out)
{
	return str_append_byte(out, ' ');
}

/* ---- ENVELOPE ---- */

static int header_nstring(struct str *out, const struct mime_part *msg,
			  const char *name)
{
	const struct mime_header *h = mime_part_header_find(msg, name);

	return h == NULL ? str_append_c(out, "NIL") :
	       mime_imap_string(out, h->value, h->value_len);
}

static int address_one(struct str *out, const struct mime_address *a)
{
	if (a->kind == MIME_ADDR_GROUP_END)
		return str_append_c(out, "(NIL NIL NIL NIL)");
	if (a->kind == MIME_ADDR_GROUP_START) {
		if (str_append_c(out, "(NIL NIL ") < 0 ||
		    cstring(out, a->name) < 0)
			return -1;
		return str_append_c(out, " NIL)");
	}
	if (str_append_byte(out, '(') < 0 || cstring(out, a->name) < 0 ||
	    sp(out) < 0 || cstring(out, a->route) < 0 || sp(out) < 0 ||
	    cstring(out, a->mailbox) < 0 || sp(out) < 0 ||
	    cstring(out, a->domain) < 0)
		return -1;
	return str_append_byte(out, ')');
}

/* The parsed list of the first field named name (NULL: absent/empty). */
static struct mime_address *addresses_of(const struct mime_part *msg,
					 const char *name)
{
	const struct mime_header *h = mime_part_header_find(msg, name);

	if (h == NULL)
		return NULL;
	return mime_address_parse(h->value, h->value_len, ENVELOPE_ADDRS_MAX);
}

static int address_list(struct str *out, const struct mime_address *list)
{
	if (list == NULL)
		return str_append_c(out, "NIL");
	if (str_append_byte(out, '(') < 0)
		return -1;
	for (; list != NULL; list = list->next) {
		if (address_one(out, list) < 0)
			return -1;
	}
	return str_append_byte(out, ')');
}

/* from, sender, reply-to, to, cc, bcc; sender and reply-to default to
 * from (RFC 3501). */
static int envelope_addresses(struct str *out, const struct mime_part *msg)
{
	static const char *const names[] = { "from", "sender", "reply-to",
					     "to", "cc", "bcc" };
	struct mime_address *from = addresses_of(msg, "from"), *list;
	int ret = 0;

	for (size_t i = 0; i < TERN_NELEM(names) && ret == 0; i++) {
		list = i == 0 ? from : addresses_of(msg, names[i]);
		if (list == NULL && (i == 1 || i == 2))
			ret = address_list(out, from);
		else
			ret = address_list(out, list);
		if (ret == 0)
			ret = sp(out);
		if (i > 0)
			mime_address_free(&list);
	}
	mime_address_free(&from);
	return ret;
}

int mime_imap_envelope(const struct mime_part *msg, struct str *out)
{
	if (str_append_byte(out, '(') < 0 ||
	    header_nstring(out, msg, "date") < 0 || sp(out) < 0 ||
	    header_nstring(out, msg, "subject") < 0 || sp(out) < 0 ||
	    envelope_addresses(out, msg) < 0 ||
	    header_nstring(out, msg, "in-reply-to") < 0 || sp(out) < 0 ||
	    header_nstring(out, msg, "message-id") < 0)
		return -1;
	return str_append_byte(out, ')');
}

/* ---- BODYSTRUCTURE ---- */

static int params_list(struct str *out, const struct mime_param *ps,
		       size_t n)
{
	if (n == 0)
		return str_append_c(out, "NIL");
	if (str_append_byte(out, '(') < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if ((i > 0 && sp(out) < 0) || cstring(out, ps[i].name) < 0 ||
		    sp(out) < 0 || cstring(out, ps[i].value) < 0)
			return -1;
	}
	return str_append_byte(out, ')');
}

static int disposition(struct str *out, const struct mime_part *x)
{
	const struct mime_param *ps;
	size_t n;
	const char *d = mime_part_disposition(x, &ps, &n);

	if (d == NULL)
		return str_append_c(out, "NIL");
	if (str_append_byte(out, '(') < 0 || cstring(out, d) < 0 ||
	    sp(out) < 0 || params_list(out, ps, n) < 0)
		return -1;
	return str_append_byte(out, ')');
}

/* Content-Language: NIL, one string, or a list of strings. */
static int language(struct str *out, const struct mime_part *x)
{
	const struct mime_header *h = mime_part_header_find(x,
							    "content-language");
	const char *s, *end, *start;
	int n = 0;

	if (h == NULL || h->value_len == 0)
		return str_append_c(out, "NIL");
	s = h->value;
	end = s + h->value_len;
	if (memchr(s, ',', h->value_len) == NULL)
		return mime_imap_string(out, s, h->value_len);
	if (str_append_byte(out, '(') < 0)
		return -1;
	while (s < end) {
		while (s < end && (*s == ',' || *s == ' ' || *s == '\t'))
			s++;
		start = s;
		while (s < end && *s != ',' && *s != ' ' && *s != '\t')
			s++;
		if (s > start && ((n++ > 0 && sp(out) < 0) ||
				  mime_imap_string(out, start,
						   (size_t)(s - start)) < 0))
			return -1;
	}
	return str_append_byte(out, ')');
}

static int ext_common(struct str *out, const struct mime_part *x)
{
	if (sp(out) < 0 || disposition(out, x) < 0 || sp(out) < 0 ||
	    language(out, x) < 0 || sp(out) < 0)
		return -1;
	return header_nstring(out, x, "content-location");
}

/* Content-Transfer-Encoding: its first word, "7bit" when absent. */
static int encoding(struct str *out, const struct mime_part *x)
{
	const struct mime_header *h =
		mime_part_header_find(x, "content-transfer-encoding");
	size_t n = 0;

	if (h == NULL || h->value_len == 0)
		return str_append_c(out, "\"7bit\"");
	while (n < h->value_len && h->value[n] != ' ' &&
	       h->value[n] != '\t' && h->value[n] != '(' &&
	       h->value[n] != ';')
		n++;
	return mime_imap_string(out, h->value, n);
}

static int body_fields(struct str *out, const struct mime_part *x)
{
	const struct mime_param *ps;
	size_t n = mime_part_params(x, &ps);

	if (cstring(out, mime_part_type(x)) < 0 || sp(out) < 0 ||
	    cstring(out, mime_part_subtype(x)) < 0 || sp(out) < 0 ||
	    params_list(out, ps, n) < 0 || sp(out) < 0 ||
	    header_nstring(out, x, "content-id") < 0 || sp(out) < 0 ||
	    header_nstring(out, x, "content-description") < 0 ||
	    sp(out) < 0 || encoding(out, x) < 0)
		return -1;
	return str_printf(out, " %" PRIu64, mime_part_body_range(x).size);
}

static int body_part(struct str *out, const struct mime_part *x, int ext,
		     unsigned int depth);

static int body_single(struct str *out, const struct mime_part *x, int ext,
		       unsigned int depth)
{
	if (str_append_byte(out, '(') < 0 || body_fields(out, x) < 0)
		return -1;
	if (mime_part_kind(x) == MIME_KIND_MESSAGE) {
		const struct mime_part *m = mime_part_child(x);

		if (sp(out) < 0 || mime_imap_envelope(m, out) < 0 ||
		    sp(out) < 0 || body_part(out, m, ext, depth + 1) < 0 ||
		    str_printf(out, " %" PRIu64, mime_part_body_lines(x)) < 0)
			return -1;
	} else if (mime_part_is(x, "text", NULL) &&
		   str_printf(out, " %" PRIu64, mime_part_body_lines(x)) < 0) {
		return -1;
	}
	if (ext && (sp(out) < 0 ||
		    header_nstring(out, x, "content-md5") < 0 ||
		    ext_common(out, x) < 0))
		return -1;
	return str_append_byte(out, ')');
}

static int body_multi(struct str *out, const struct mime_part *x, int ext,
		      unsigned int depth)
{
	const struct mime_param *ps;
	size_t n = mime_part_params(x, &ps);

	if (str_append_byte(out, '(') < 0)
		return -1;
	for (const struct mime_part *c = mime_part_child(x); c != NULL;
	     c = mime_part_next(c)) {
		if (body_part(out, c, ext, depth + 1) < 0)
			return -1;
	}
	if (sp(out) < 0 || cstring(out, mime_part_subtype(x)) < 0)
		return -1;
	if (ext && (sp(out) < 0 || params_list(out, ps, n) < 0 ||
		    ext_common(out, x) < 0))
		return -1;
	return str_append_byte(out, ')');
}

/* Recursion depth is bounded by the parser's max_depth setting. */
static int body_part(struct str *out, const struct mime_part *x, int ext,
		     unsigned int depth)
{
	if (mime_part_kind(x) == MIME_KIND_MULTIPART)
		return body_multi(out, x, ext, depth);
	return body_single(out, x, ext, depth);
}

int mime_imap_bodystructure(const struct mime_part *msg, int extended,
			    struct str *out)
{
	return body_part(out, msg, extended, 0);
}
