/* ipc.c: see ipc.h; the byte layout is in docs/protocols/ipc.md. */
#include "config.h"

#include "compat.h"

#include <stdarg.h>
#include <stdlib.h>

#include "ipc.h"
#include "log.h"
#include "str.h"

/* version, type length, id, field count; plus the type itself */
#define IPC_HDR_FIXED (1 + 1 + 4 + 2)
#define IPC_PAYLOAD_MIN (IPC_HDR_FIXED + 1)
/* kind, name length, 1-byte name, value: the smallest field (string) */
#define IPC_FIELD_MIN (1 + 1 + 1 + 4)
#define IPC_ERROR_MAX 512
/* Room in a message's store for names, values and their NULs. */
#define IPC_STORE_MAX (IPC_FRAME_MAX_HARD + 3 * IPC_FIELDS_MAX)

struct ipc_field {
	size_t name_off;
	size_t val_off;		/* strings: offset in store */
	size_t val_len;
	int64_t ival;		/* integers */
	unsigned char name_len;
	unsigned char kind;
};

struct ipc_msg {
	char type[IPC_TYPE_MAX + 1];
	uint32_t id;
	int overflow;
	size_t size;		/* encoded payload bytes */
	struct str *store;	/* names and string values, NUL after each */
	struct ipc_field *fields;
	unsigned int nfields, cap;
	struct str *error;	/* ipc_msg_check() messages */
};

enum ipc_dec_state {
	IPC_DEC_PREFIX,
	IPC_DEC_PAYLOAD,
	IPC_DEC_FAILED,
};

struct ipc_decoder {
	size_t max_frame;
	enum ipc_dec_state state;
	unsigned char prefix[IPC_FRAME_PREFIX];
	size_t prefix_have;
	size_t need;		/* payload bytes of the current frame */
	struct str *buf;	/* partial payload */
	struct str *error;
};

/* --- names ------------------------------------------------------------ */

static int ipc_name_char(unsigned char c, int type)
{
	if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')
		return 1;
	return type && (c == '.' || c == '-');
}

static int ipc_name_valid(const char *p, size_t len, size_t max, int type)
{
	if (len < 1 || len > max)
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (!ipc_name_char((unsigned char)p[i], type))
			return 0;
	}
	return 1;
}

/* --- building --------------------------------------------------------- */

static struct ipc_msg *ipc_msg_alloc(const char *type, size_t tlen,
				     size_t initial)
{
	struct ipc_msg *m = calloc(1, sizeof(*m));

	if (m == NULL)
		abort();
	memcpy(m->type, type, tlen);
	m->type[tlen] = '\0';
	m->size = IPC_HDR_FIXED + tlen;
	m->store = str_new(initial, IPC_STORE_MAX);
	return m;
}

struct ipc_msg *ipc_msg_new(const char *type)
{
	size_t tlen = strlen(type);

	if (!ipc_name_valid(type, tlen, IPC_TYPE_MAX, 1))
		log_panic(NULL, "ipc: invalid message type name");
	return ipc_msg_alloc(type, tlen, 64);
}

void ipc_msg_free(struct ipc_msg **m)
{
	if (*m == NULL)
		return;
	str_free(&(*m)->store);
	str_free(&(*m)->error);
	free((*m)->fields);
	free(*m);
	*m = NULL;
}

void ipc_msg_set_id(struct ipc_msg *m, uint32_t id)
{
	m->id = id;
}

static struct ipc_field *ipc_field_push(struct ipc_msg *m)
{
	if (m->nfields == m->cap) {
		unsigned int cap = m->cap == 0 ? 8 : m->cap * 2;
		struct ipc_field *f;

		if (cap > IPC_FIELDS_MAX)
			cap = IPC_FIELDS_MAX;
		f = realloc(m->fields, cap * sizeof(*f));
		if (f == NULL)
			abort();
		m->fields = f;
		m->cap = cap;
	}
	return &m->fields[m->nfields++];
}

/* Appends p[len] and a NUL to the store; the offset goes to *off_r. */
static int ipc_store(struct ipc_msg *m, const void *p, size_t len,
		     size_t *off_r)
{
	size_t off = str_len(m->store);

	if (str_append(m->store, p, len) < 0 ||
	    str_append_byte(m->store, '\0') < 0) {
		str_truncate(m->store, off);
		return -1;
	}
	*off_r = off;
	return 0;
}

/* Adds a field whose value is already known to be well-formed. */
static struct ipc_field *ipc_field_add(struct ipc_msg *m, const char *name,
				       size_t nlen, enum ipc_kind kind,
				       const void *p, size_t len)
{
	size_t wire, name_off, val_off = 0, mark = str_len(m->store);
	struct ipc_field *f;

	if (len > IPC_FRAME_MAX_HARD)
		len = IPC_FRAME_MAX_HARD;	/* too large anyway; no wrap */
	wire = 2 + nlen + (kind == IPC_INT ? 8 : 4 + len);
	if (m->overflow || m->nfields >= IPC_FIELDS_MAX ||
	    wire > IPC_FRAME_MAX_HARD - m->size) {
		m->overflow = 1;
		return NULL;
	}
	if (ipc_store(m, name, nlen, &name_off) < 0 ||
	    (kind == IPC_STR && ipc_store(m, p, len, &val_off) < 0)) {
		str_truncate(m->store, mark);
		m->overflow = 1;
		return NULL;
	}
	f = ipc_field_push(m);
	f->name_off = name_off;
	f->name_len = (unsigned char)nlen;
	f->kind = (unsigned char)kind;
	f->val_off = val_off;
	f->val_len = kind == IPC_STR ? len : 0;
	f->ival = 0;
	m->size += wire;
	return f;
}

static size_t ipc_check_name(const char *name)
{
	size_t nlen = strlen(name);

	if (!ipc_name_valid(name, nlen, IPC_NAME_MAX, 0))
		log_panic(NULL, "ipc: invalid field name");
	return nlen;
}

void ipc_msg_add_str(struct ipc_msg *m, const char *name, const void *p,
		     size_t len)
{
	size_t nlen = ipc_check_name(name);

	(void)ipc_field_add(m, name, nlen, IPC_STR, p, len);
}

void ipc_msg_add_cstr(struct ipc_msg *m, const char *name, const char *value)
{
	ipc_msg_add_str(m, name, value, strlen(value));
}

void ipc_msg_add_int(struct ipc_msg *m, const char *name, int64_t value)
{
	size_t nlen = ipc_check_name(name);
	struct ipc_field *f = ipc_field_add(m, name, nlen, IPC_INT, NULL, 0);

	if (f != NULL)
		f->ival = value;
}

size_t ipc_msg_size(const struct ipc_msg *m)
{
	return m->size;
}

/* --- encoding --------------------------------------------------------- */

static void ipc_put_be(unsigned char *b, uint64_t v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)(v >> (8 * (n - 1 - i)));
}

static uint64_t ipc_get_be(const unsigned char *b, size_t n)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n; i++)
		v = (v << 8) | b[i];
	return v;
}

/* Appends what ipc_msg_encode() already made room for. */
static void ipc_put(struct str *out, const void *p, size_t n)
{
	if (str_append(out, p, n) < 0)
		log_panic(NULL, "ipc: encode ran out of reserved room");
}

static void ipc_put_int(struct str *out, uint64_t v, size_t n)
{
	unsigned char b[8];

	ipc_put_be(b, v, n);
	ipc_put(out, b, n);
}

int ipc_msg_encode(const struct ipc_msg *m, size_t max_frame, struct str *out,
		   const char **error_r)
{
	size_t tlen = strlen(m->type);

	if (max_frame == 0 || max_frame > IPC_FRAME_MAX_HARD)
		max_frame = IPC_FRAME_MAX_HARD;
	if (m->overflow) {
		*error_r = "ipc: message has too many or too large fields";
		return -1;
	}
	if (m->size > max_frame) {
		*error_r = "ipc: message is larger than the frame limit";
		return -1;
	}
	if (str_room(out) < IPC_FRAME_PREFIX + m->size) {
		*error_r = "ipc: no room for the message in the output buffer";
		return -1;
	}
	ipc_put_int(out, m->size, 4);
	ipc_put_int(out, IPC_CODEC_VERSION, 1);
	ipc_put_int(out, tlen, 1);
	ipc_put(out, m->type, tlen);
	ipc_put_int(out, m->id, 4);
	ipc_put_int(out, m->nfields, 2);
	for (unsigned int i = 0; i < m->nfields; i++) {
		const struct ipc_field *f = &m->fields[i];

		ipc_put_int(out, f->kind, 1);
		ipc_put_int(out, f->name_len, 1);
		ipc_put(out, str_c(m->store) + f->name_off, f->name_len);
		if (f->kind == IPC_INT) {
			ipc_put_int(out, (uint64_t)f->ival, 8);
		} else {
			ipc_put_int(out, f->val_len, 4);
			ipc_put(out, str_c(m->store) + f->val_off, f->val_len);
		}
	}
	return 0;
}

/* --- getters ---------------------------------------------------------- */

const char *ipc_msg_type(const struct ipc_msg *m)
{
	return m->type;
}

int ipc_msg_type_is(const struct ipc_msg *m, const char *type)
{
	return strcmp(m->type, type) == 0;
}

uint32_t ipc_msg_id(const struct ipc_msg *m)
{
	return m->id;
}

static int ipc_field_is(const struct ipc_msg *m, const struct ipc_field *f,
			const char *name, size_t nlen)
{
	return f->name_len == nlen &&
	       memcmp(str_c(m->store) + f->name_off, name, nlen) == 0;
}

static const struct ipc_field *ipc_find(const struct ipc_msg *m,
					const char *name, unsigned int n)
{
	size_t nlen = strlen(name);

	for (unsigned int i = 0; i < m->nfields; i++) {
		if (ipc_field_is(m, &m->fields[i], name, nlen) && n-- == 0)
			return &m->fields[i];
	}
	return NULL;
}

unsigned int ipc_msg_count(const struct ipc_msg *m, const char *name)
{
	size_t nlen = strlen(name);
	unsigned int count = 0;

	for (unsigned int i = 0; i < m->nfields; i++)
		count += ipc_field_is(m, &m->fields[i], name, nlen);
	return count;
}

int ipc_msg_get_str_nth(const struct ipc_msg *m, const char *name,
			unsigned int n, const char **p_r, size_t *len_r)
{
	const struct ipc_field *f = ipc_find(m, name, n);

	if (f == NULL || f->kind != IPC_STR)
		return -1;
	*p_r = str_c(m->store) + f->val_off;
	*len_r = f->val_len;
	return 0;
}

int ipc_msg_get_cstr_nth(const struct ipc_msg *m, const char *name,
			 unsigned int n, const char **value_r)
{
	const char *p;
	size_t len;

	if (ipc_msg_get_str_nth(m, name, n, &p, &len) < 0 ||
	    memchr(p, '\0', len) != NULL)
		return -1;
	*value_r = p;
	return 0;
}

int ipc_msg_get_int_nth(const struct ipc_msg *m, const char *name,
			unsigned int n, int64_t *value_r)
{
	const struct ipc_field *f = ipc_find(m, name, n);

	if (f == NULL || f->kind != IPC_INT)
		return -1;
	*value_r = f->ival;
	return 0;
}

int ipc_msg_get_str(const struct ipc_msg *m, const char *name,
		    const char **p_r, size_t *len_r)
{
	return ipc_msg_get_str_nth(m, name, 0, p_r, len_r);
}

int ipc_msg_get_cstr(const struct ipc_msg *m, const char *name,
		     const char **value_r)
{
	return ipc_msg_get_cstr_nth(m, name, 0, value_r);
}

int ipc_msg_get_int(const struct ipc_msg *m, const char *name,
		    int64_t *value_r)
{
	return ipc_msg_get_int_nth(m, name, 0, value_r);
}

unsigned int ipc_msg_nfields(const struct ipc_msg *m)
{
	return m->nfields;
}

int ipc_msg_field(const struct ipc_msg *m, unsigned int i,
		  const char **name_r, enum ipc_kind *kind_r)
{
	if (i >= m->nfields)
		return -1;
	*name_r = str_c(m->store) + m->fields[i].name_off;
	*kind_r = (enum ipc_kind)m->fields[i].kind;
	return 0;
}

static const struct ipc_field *ipc_field_at(const struct ipc_msg *m,
					    unsigned int i, const char *name,
					    enum ipc_kind kind)
{
	if (i >= m->nfields || m->fields[i].kind != kind ||
	    !ipc_field_is(m, &m->fields[i], name, strlen(name)))
		return NULL;
	return &m->fields[i];
}

int ipc_msg_int_at(const struct ipc_msg *m, unsigned int i, const char *name,
		   int64_t *value_r)
{
	const struct ipc_field *f = ipc_field_at(m, i, name, IPC_INT);

	if (f == NULL)
		return -1;
	*value_r = f->ival;
	return 0;
}

int ipc_msg_str_at(const struct ipc_msg *m, unsigned int i, const char *name,
		   const char **p_r, size_t *len_r)
{
	const struct ipc_field *f = ipc_field_at(m, i, name, IPC_STR);

	if (f == NULL)
		return -1;
	*p_r = str_c(m->store) + f->val_off;
	*len_r = f->val_len;
	return 0;
}

/* --- schema ----------------------------------------------------------- */

static const char *ipc_kind_name(enum ipc_kind kind)
{
	return kind == IPC_INT ? "an integer" : "a string";
}

static const char *ipc_msg_fail(struct ipc_msg *m, const char *fmt, ...)
	TERN_PRINTF(2, 3);

static const char *ipc_msg_fail(struct ipc_msg *m, const char *fmt, ...)
{
	va_list ap;

	if (m->error == NULL)
		m->error = str_new(128, IPC_ERROR_MAX);
	str_clear(m->error);
	if (str_printf(m->error, "message '%s': ", m->type) < 0)
		return "ipc: invalid message";
	va_start(ap, fmt);
	if (str_vprintf(m->error, fmt, ap) < 0)
		str_clear(m->error);	/* cannot happen: bounded parts */
	va_end(ap);
	return str_len(m->error) > 0 ? str_c(m->error) : "ipc: invalid message";
}

static const struct ipc_field_spec *
ipc_spec_find(const struct ipc_field_spec *specs, const char *name)
{
	for (; specs->name != NULL; specs++) {
		if (strcmp(specs->name, name) == 0)
			return specs;
	}
	return NULL;
}

/* Kind, length and NUL rules for one field. */
static int ipc_check_field(struct ipc_msg *m, const struct ipc_field *f,
			   const struct ipc_field_spec *spec,
			   const char **error_r)
{
	const char *name = str_c(m->store) + f->name_off;
	const char *val = str_c(m->store) + f->val_off;

	if (f->kind != spec->kind) {
		*error_r = ipc_msg_fail(m, "field '%s' must be %s", name,
					ipc_kind_name(spec->kind));
		return -1;
	}
	if (f->kind != IPC_STR)
		return 0;
	if (spec->max_len > 0 && f->val_len > spec->max_len) {
		*error_r = ipc_msg_fail(m, "field '%s' is %zu bytes, limit %zu",
					name, f->val_len, spec->max_len);
		return -1;
	}
	if ((spec->flags & IPC_SPEC_NO_NUL) != 0 &&
	    memchr(val, '\0', f->val_len) != NULL) {
		*error_r = ipc_msg_fail(m, "field '%s' contains a NUL byte",
					name);
		return -1;
	}
	return 0;
}

int ipc_msg_check(struct ipc_msg *m, const struct ipc_field_spec *specs,
		  const char **error_r)
{
	const struct ipc_field_spec *spec;

	for (unsigned int i = 0; i < m->nfields; i++) {
		const char *name = str_c(m->store) + m->fields[i].name_off;

		spec = ipc_spec_find(specs, name);
		if (spec == NULL) {
			*error_r = ipc_msg_fail(m, "unknown field '%s'", name);
			return -1;
		}
		if (ipc_check_field(m, &m->fields[i], spec, error_r) < 0)
			return -1;
	}
	for (spec = specs; spec->name != NULL; spec++) {
		unsigned int n = ipc_msg_count(m, spec->name);
		unsigned int max = spec->max == 0 ? 1 : spec->max;

		if (n < spec->min && n == 0) {
			*error_r = ipc_msg_fail(m, "missing field '%s'",
						spec->name);
			return -1;
		}
		if (n < spec->min) {
			*error_r = ipc_msg_fail(m, "field '%s' occurs %u "
						"times, at least %u needed",
						spec->name, n, spec->min);
			return -1;
		}
		if (n > max) {
			*error_r = ipc_msg_fail(m, "field '%s' occurs %u "
						"times, limit %u",
						spec->name, n, max);
			return -1;
		}
	}
	return 0;
}

/* --- hello ------------------------------------------------------------ */

static const struct ipc_field_spec ipc_hello_spec[] = {
	{ "proto", IPC_STR, 1, 1, IPC_TYPE_MAX, IPC_SPEC_NO_NUL },
	{ "version", IPC_INT, 1, 1, 0, 0 },
	{ NULL, IPC_INT, 0, 0, 0, 0 },
};

struct ipc_msg *ipc_hello_new(const char *proto, int64_t version)
{
	struct ipc_msg *m = ipc_msg_new(IPC_HELLO_TYPE);

	ipc_msg_add_cstr(m, "proto", proto);
	ipc_msg_add_int(m, "version", version);
	return m;
}

int ipc_hello_check(struct ipc_msg *m, const char *proto, int64_t version,
		    const char **error_r)
{
	const char *peer_proto;
	int64_t peer_version;

	if (!ipc_msg_type_is(m, IPC_HELLO_TYPE)) {
		*error_r = ipc_msg_fail(m, "expected a hello naming protocol "
					"'%s' version %lld", proto,
					(long long)version);
		return -1;
	}
	if (ipc_msg_check(m, ipc_hello_spec, error_r) < 0)
		return -1;
	if (ipc_msg_get_cstr(m, "proto", &peer_proto) < 0 ||
	    ipc_msg_get_int(m, "version", &peer_version) < 0)
		log_panic(NULL, "ipc: hello passed its schema check");
	if (strcmp(peer_proto, proto) != 0 || peer_version != version) {
		*error_r = ipc_msg_fail(m, "peer speaks protocol '%s' "
					"version %lld, we need '%s' version "
					"%lld", peer_proto,
					(long long)peer_version, proto,
					(long long)version);
		return -1;
	}
	return 0;
}

/* --- decoding --------------------------------------------------------- */

struct ipc_decoder *ipc_decoder_new(size_t max_frame)
{
	struct ipc_decoder *d = calloc(1, sizeof(*d));

	if (d == NULL)
		abort();
	if (max_frame == 0)
		max_frame = IPC_FRAME_MAX_DEFAULT;
	if (max_frame < IPC_FRAME_MAX_MIN)
		max_frame = IPC_FRAME_MAX_MIN;
	if (max_frame > IPC_FRAME_MAX_HARD)
		max_frame = IPC_FRAME_MAX_HARD;
	d->max_frame = max_frame;
	d->state = IPC_DEC_PREFIX;
	d->error = str_new(128, IPC_ERROR_MAX);
	return d;
}

void ipc_decoder_free(struct ipc_decoder **d)
{
	if (*d == NULL)
		return;
	str_free(&(*d)->buf);
	str_free(&(*d)->error);
	free(*d);
	*d = NULL;
}

size_t ipc_decoder_max_frame(const struct ipc_decoder *d)
{
	return d->max_frame;
}

static int ipc_dec_fail(struct ipc_decoder *d, const char **error_r,
			const char *fmt, ...) TERN_PRINTF(3, 4);

static int ipc_dec_fail(struct ipc_decoder *d, const char **error_r,
			const char *fmt, ...)
{
	va_list ap;

	str_clear(d->error);
	va_start(ap, fmt);
	if (str_vprintf(d->error, fmt, ap) < 0)
		str_clear(d->error);
	va_end(ap);
	if (str_len(d->error) == 0 && str_append_c(d->error, "ipc: error") < 0)
		log_panic(NULL, "ipc: error buffer too small");
	d->state = IPC_DEC_FAILED;
	str_free(&d->buf);
	*error_r = str_c(d->error);
	return -1;
}

/* A cursor over one complete payload. */
struct ipc_cur {
	const unsigned char *p, *end;
	const char *error;
};

static int ipc_take(struct ipc_cur *c, size_t n, const unsigned char **p_r)
{
	if ((size_t)(c->end - c->p) < n) {
		c->error = "truncated";
		return -1;
	}
	*p_r = c->p;
	c->p += n;
	return 0;
}

static int ipc_take_int(struct ipc_cur *c, size_t n, uint64_t *v_r)
{
	const unsigned char *p;

	if (ipc_take(c, n, &p) < 0)
		return -1;
	*v_r = ipc_get_be(p, n);
	return 0;
}

static int ipc_parse_field(struct ipc_cur *c, struct ipc_msg *m)
{
	const unsigned char *name, *val = NULL;
	uint64_t kind, nlen, v = 0;
	struct ipc_field *f;

	if (ipc_take_int(c, 1, &kind) < 0 || ipc_take_int(c, 1, &nlen) < 0 ||
	    ipc_take(c, nlen, &name) < 0)
		return -1;
	if (kind != IPC_INT && kind != IPC_STR) {
		c->error = "unknown field kind";
		return -1;
	}
	if (!ipc_name_valid((const char *)name, nlen, IPC_NAME_MAX, 0)) {
		c->error = "invalid field name";
		return -1;
	}
	if (kind == IPC_INT) {
		if (ipc_take_int(c, 8, &v) < 0)
			return -1;
	} else if (ipc_take_int(c, 4, &v) < 0 || ipc_take(c, v, &val) < 0) {
		return -1;
	}
	f = ipc_field_add(m, (const char *)name, nlen, (enum ipc_kind)kind,
			  val, kind == IPC_STR ? v : 0);
	if (f == NULL) {
		c->error = "message too large";
		return -1;
	}
	if (kind == IPC_INT)
		f->ival = (int64_t)v;
	return 0;
}

/* Parses one complete payload into a new message. */
static struct ipc_msg *ipc_parse(const unsigned char *p, size_t len,
				 const char **error_r)
{
	struct ipc_cur c = { p, p + len, NULL };
	const unsigned char *type;
	uint64_t version, tlen, id, nfields;
	struct ipc_msg *m;

	if (ipc_take_int(&c, 1, &version) < 0 ||
	    ipc_take_int(&c, 1, &tlen) < 0 || ipc_take(&c, tlen, &type) < 0 ||
	    ipc_take_int(&c, 4, &id) < 0 || ipc_take_int(&c, 2, &nfields) < 0) {
		*error_r = "truncated message header";
		return NULL;
	}
	if (version != IPC_CODEC_VERSION) {
		*error_r = "unsupported codec version";
		return NULL;
	}
	if (!ipc_name_valid((const char *)type, tlen, IPC_TYPE_MAX, 1)) {
		*error_r = "invalid message type name";
		return NULL;
	}
	if (nfields > IPC_FIELDS_MAX ||
	    nfields * IPC_FIELD_MIN > (size_t)(c.end - c.p)) {
		*error_r = "field count too large for the frame";
		return NULL;
	}
	m = ipc_msg_alloc((const char *)type, tlen, len);
	m->id = (uint32_t)id;
	if (nfields > 0) {
		m->fields = calloc(nfields, sizeof(*m->fields));
		if (m->fields == NULL)
			abort();
		m->cap = (unsigned int)nfields;
	}
	for (uint64_t i = 0; i < nfields; i++) {
		if (ipc_parse_field(&c, m) < 0) {
			*error_r = c.error;
			ipc_msg_free(&m);
			return NULL;
		}
	}
	if (c.p != c.end) {
		*error_r = "trailing bytes after the last field";
		ipc_msg_free(&m);
		return NULL;
	}
	return m;
}

static int ipc_dec_frame(struct ipc_decoder *d, const char *p, size_t len,
			 struct ipc_msg **msg_r, const char **error_r)
{
	const char *why = NULL;
	struct ipc_msg *m = ipc_parse((const unsigned char *)p, len, &why);

	if (m == NULL)
		return ipc_dec_fail(d, error_r, "ipc: bad frame: %s", why);
	d->state = IPC_DEC_PREFIX;
	d->prefix_have = 0;
	*msg_r = m;
	return 1;
}

/* Collects the length prefix; 1 when complete and acceptable. */
static int ipc_dec_prefix(struct ipc_decoder *d, const char **pos,
			  const char *end, const char **error_r)
{
	size_t n = IPC_FRAME_PREFIX - d->prefix_have;

	if ((size_t)(end - *pos) < n)
		n = (size_t)(end - *pos);
	memcpy(d->prefix + d->prefix_have, *pos, n);
	*pos += n;
	d->prefix_have += n;
	if (d->prefix_have < IPC_FRAME_PREFIX)
		return 0;
	d->need = (size_t)ipc_get_be(d->prefix, IPC_FRAME_PREFIX);
	if (d->need > d->max_frame)
		return ipc_dec_fail(d, error_r, "ipc: frame of %zu bytes "
				    "exceeds the limit of %zu", d->need,
				    d->max_frame);
	if (d->need < IPC_PAYLOAD_MIN)
		return ipc_dec_fail(d, error_r, "ipc: frame of %zu bytes is "
				    "too short", d->need);
	d->state = IPC_DEC_PAYLOAD;
	return 1;
}

int ipc_decoder_feed(struct ipc_decoder *d, const char **pos, const char *end,
		     struct ipc_msg **msg_r, const char **error_r)
{
	size_t have, n;
	int ret;

	if (d->state == IPC_DEC_FAILED) {
		*error_r = str_c(d->error);
		return -1;
	}
	if (d->state == IPC_DEC_PREFIX) {
		ret = ipc_dec_prefix(d, pos, end, error_r);
		if (ret <= 0)
			return ret;
	}
	have = d->buf == NULL ? 0 : str_len(d->buf);
	if (have == 0 && (size_t)(end - *pos) >= d->need) {
		/* The whole payload is in the input: parse it in place. */
		const char *p = *pos;

		*pos += d->need;
		return ipc_dec_frame(d, p, d->need, msg_r, error_r);
	}
	if (d->buf == NULL)
		d->buf = str_new(0, d->max_frame);
	n = d->need - have;
	if ((size_t)(end - *pos) < n)
		n = (size_t)(end - *pos);
	if (str_append(d->buf, *pos, n) < 0)
		log_panic(NULL, "ipc: decoder buffer past its frame limit");
	*pos += n;
	if (str_len(d->buf) < d->need)
		return 0;
	ret = ipc_dec_frame(d, str_c(d->buf), d->need, msg_r, error_r);
	if (d->buf != NULL && d->need > 65536)
		str_free(&d->buf);	/* do not keep a large buffer idle */
	else if (d->buf != NULL)
		str_clear(d->buf);
	return ret;
}

int ipc_decoder_finish(struct ipc_decoder *d, const char **error_r)
{
	size_t have;

	if (d->state == IPC_DEC_FAILED) {
		*error_r = str_c(d->error);
		return -1;
	}
	if (d->state == IPC_DEC_PREFIX && d->prefix_have == 0)
		return 0;
	if (d->state == IPC_DEC_PREFIX)
		return ipc_dec_fail(d, error_r, "ipc: connection closed "
				    "inside a frame's length prefix");
	have = d->buf == NULL ? 0 : str_len(d->buf);
	return ipc_dec_fail(d, error_r, "ipc: connection closed inside a "
			    "frame (%zu of %zu bytes)", have, d->need);
}
