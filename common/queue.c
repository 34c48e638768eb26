/* queue.c: see queue.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "compat.h"
#include "queue.h"
#include "str.h"
#include "xalloc.h"

/* Crockford's base-32 alphabet: no I, L, O, U. */
static const char id_alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
#define ID_TIME_CHARS 11	/* 55 bits of microseconds */
#define ID_PID_CHARS 5		/* 25 bits of process id */

/* ---- envelope ---- */

void queue_envelope_clear(struct queue_envelope *env)
{
	char **fields[] = {
		&env->id, &env->client_addr, &env->client_name, &env->helo,
		&env->protocol, &env->auth, &env->tls, &env->sender,
		&env->body, &env->ret, &env->envid,
	};

	for (size_t i = 0; i < TERN_NELEM(fields); i++) {
		free(*fields[i]);
		*fields[i] = NULL;
	}
	for (size_t i = 0; i < env->nrcpts; i++) {
		free(env->rcpts[i].address);
		free(env->rcpts[i].notify);
		free(env->rcpts[i].orcpt);
	}
	free(env->rcpts);
	env->rcpts = NULL;
	env->nrcpts = 0;
	env->arrival_sec = 0;
	env->arrival_usec = 0;
	env->smtputf8 = false;
}

static char *dup_or_null(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

void queue_envelope_add_rcpt(struct queue_envelope *env, const char *address,
			     const char *notify, const char *orcpt)
{
	struct queue_rcpt *r;

	/* Grow in powers of two (the count itself is the capacity hint). */
	if ((env->nrcpts & (env->nrcpts - 1)) == 0)
		env->rcpts = xrealloc(env->rcpts, (env->nrcpts == 0 ? 1 :
						   env->nrcpts * 2) *
						  sizeof(*env->rcpts));
	r = &env->rcpts[env->nrcpts++];
	r->address = xstrdup(address);
	r->notify = dup_or_null(notify);
	r->orcpt = dup_or_null(orcpt);
}

/* ---- ids ---- */

void queue_id_new(char id[static QUEUE_ID_SIZE])
{
	static uint64_t last;
	struct timeval tv;
	uint64_t t;
	unsigned long pid = (unsigned long)getpid();

	gettimeofday(&tv, NULL);
	t = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
	if (t <= last)
		t = last + 1;
	last = t;
	for (int i = ID_TIME_CHARS - 1; i >= 0; i--) {
		id[i] = id_alphabet[t & 31];
		t >>= 5;
	}
	for (int i = ID_PID_CHARS - 1; i >= 0; i--) {
		id[ID_TIME_CHARS + i] = id_alphabet[pid & 31];
		pid >>= 5;
	}
	id[QUEUE_ID_LEN] = '\0';
}

static int id_digit(char c)
{
	const char *p = c != '\0' ? strchr(id_alphabet, c) : NULL;

	return p != NULL ? (int)(p - id_alphabet) : -1;
}

bool queue_id_valid(const char *id)
{
	size_t i;

	for (i = 0; id[i] != '\0'; i++) {
		if (i >= QUEUE_ID_LEN || id_digit(id[i]) < 0)
			return false;
	}
	return i == QUEUE_ID_LEN;
}

long queue_id_pid(const char *id)
{
	long pid = 0;

	if (!queue_id_valid(id))
		return -1;
	for (int i = 0; i < ID_PID_CHARS; i++)
		pid = pid * 32 + id_digit(id[ID_TIME_CHARS + i]);
	return pid;
}

/* ---- writer ---- */

static int encode_record(struct str *out, char type, const void *data,
			 size_t len)
{
	if (str_printf(out, "%c%zu:", type, len) < 0 ||
	    str_append(out, data, len) < 0 || str_append(out, "\n", 1) < 0)
		return -1;
	return 0;
}

/* A field that may be absent; -1 when too long. */
static int encode_field(struct str *out, char type, const char *value)
{
	size_t n;

	if (value == NULL)
		return 0;
	n = strlen(value);
	if (n > QUEUE_FIELD_MAX)
		return -1;
	return encode_record(out, type, value, n);
}

static int encode_rcpts(struct str *out, const struct queue_envelope *env)
{
	if (env->nrcpts == 0 || env->nrcpts > QUEUE_RCPT_MAX)
		return -1;
	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct queue_rcpt *r = &env->rcpts[i];

		if (r->address == NULL ||
		    encode_field(out, QUEUE_REC_RCPT, r->address) < 0 ||
		    encode_field(out, QUEUE_REC_NOTIFY, r->notify) < 0 ||
		    encode_field(out, QUEUE_REC_ORCPT, r->orcpt) < 0)
			return -1;
	}
	return 0;
}

int queue_encode_envelope(struct str *out, const struct queue_envelope *env)
{
	char arrival[48];
	const struct { char type; const char *value; } fields[] = {
		{ QUEUE_REC_VERSION, QUEUE_VERSION },
		{ QUEUE_REC_ID, env->id },
		{ QUEUE_REC_ARRIVAL, arrival },
		{ QUEUE_REC_CLIENT_ADDR, env->client_addr },
		{ QUEUE_REC_CLIENT_NAME, env->client_name },
		{ QUEUE_REC_HELO, env->helo },
		{ QUEUE_REC_PROTOCOL, env->protocol },
		{ QUEUE_REC_AUTH, env->auth },
		{ QUEUE_REC_TLS, env->tls },
		{ QUEUE_REC_SENDER, env->sender },
		{ QUEUE_REC_BODY, env->body },
		{ QUEUE_REC_SMTPUTF8, env->smtputf8 ? "1" : NULL },
		{ QUEUE_REC_RET, env->ret },
		{ QUEUE_REC_ENVID, env->envid },
	};

	if (env->id == NULL || !queue_id_valid(env->id) ||
	    env->sender == NULL || env->arrival_sec < 0 ||
	    env->arrival_usec >= 1000000)
		return -1;
	snprintf(arrival, sizeof(arrival), "%lld.%06u",
		 (long long)env->arrival_sec, (unsigned)env->arrival_usec);
	for (size_t i = 0; i < TERN_NELEM(fields); i++) {
		if (encode_field(out, fields[i].type, fields[i].value) < 0)
			return -1;
	}
	if (encode_rcpts(out, env) < 0)
		return -1;
	return encode_record(out, QUEUE_REC_MESSAGE, "", 0);
}

int queue_encode_data(struct str *out, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		size_t n = len < QUEUE_DATA_MAX ? len : QUEUE_DATA_MAX;

		if (encode_record(out, QUEUE_REC_DATA, p, n) < 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

int queue_encode_end(struct str *out, uint64_t size)
{
	char num[24];
	int n = snprintf(num, sizeof(num), "%llu", (unsigned long long)size);

	return encode_record(out, QUEUE_REC_END, num, (size_t)n);
}

/* ---- reader ---- */

enum reader_state {
	RS_TYPE,	/* the record's letter */
	RS_LENGTH,	/* its digits up to ':' */
	RS_VALUE,	/* its bytes */
	RS_NEWLINE,	/* the '\n' after them */
	RS_DONE,	/* after the end record */
	RS_ERROR,
};

/* Where each envelope record may stand: ranks must not decrease. */
enum rank {
	RK_NONE = 0, RK_VERSION, RK_ID, RK_ARRIVAL, RK_CLIENT_ADDR,
	RK_CLIENT_NAME, RK_HELO, RK_PROTOCOL, RK_AUTH, RK_TLS, RK_SENDER,
	RK_BODY, RK_SMTPUTF8, RK_RET, RK_ENVID, RK_RCPT, RK_MESSAGE,
};

struct queue_reader {
	enum reader_state state;
	char type;
	size_t len, left;	/* the record's length, bytes still due */
	unsigned digits;
	enum rank rank;		/* of the last envelope record */
	bool rcpt_notify, rcpt_orcpt;	/* seen for the last recipient */
	struct str *value;	/* a non-data record's bytes */
	uint64_t size;		/* data bytes so far */
	struct queue_envelope env;
	const char *error;
};

struct queue_reader *queue_reader_new(void)
{
	struct queue_reader *r = xcalloc(1, sizeof(*r));

	r->value = str_new(128, QUEUE_FIELD_MAX + 1);
	return r;
}

void queue_reader_free(struct queue_reader **rp)
{
	struct queue_reader *r = *rp;

	*rp = NULL;
	if (r == NULL)
		return;
	queue_envelope_clear(&r->env);
	str_free(&r->value);
	free(r);
}

const struct queue_envelope *queue_reader_envelope(
	const struct queue_reader *r)
{
	return &r->env;
}

uint64_t queue_reader_size(const struct queue_reader *r)
{
	return r->size;
}

static int fail(struct queue_reader *r, const char *error,
		const char **error_r)
{
	r->state = RS_ERROR;
	r->error = error;
	*error_r = error;
	return QUEUE_READ_ERROR;
}

static enum rank type_rank(char type)
{
	switch (type) {
	case QUEUE_REC_VERSION: return RK_VERSION;
	case QUEUE_REC_ID: return RK_ID;
	case QUEUE_REC_ARRIVAL: return RK_ARRIVAL;
	case QUEUE_REC_CLIENT_ADDR: return RK_CLIENT_ADDR;
	case QUEUE_REC_CLIENT_NAME: return RK_CLIENT_NAME;
	case QUEUE_REC_HELO: return RK_HELO;
	case QUEUE_REC_PROTOCOL: return RK_PROTOCOL;
	case QUEUE_REC_AUTH: return RK_AUTH;
	case QUEUE_REC_TLS: return RK_TLS;
	case QUEUE_REC_SENDER: return RK_SENDER;
	case QUEUE_REC_BODY: return RK_BODY;
	case QUEUE_REC_SMTPUTF8: return RK_SMTPUTF8;
	case QUEUE_REC_RET: return RK_RET;
	case QUEUE_REC_ENVID: return RK_ENVID;
	case QUEUE_REC_RCPT:
	case QUEUE_REC_NOTIFY:
	case QUEUE_REC_ORCPT: return RK_RCPT;
	case QUEUE_REC_MESSAGE: return RK_MESSAGE;
	default: return RK_NONE;
	}
}

/* The type letter: known, and allowed here. */
static int check_type(struct queue_reader *r, char type,
		      const char **error_r)
{
	enum rank rk = type_rank(type);

	if (r->rank == RK_MESSAGE) {
		if (type != QUEUE_REC_DATA && type != QUEUE_REC_END)
			return fail(r, "queue file: only data or end records "
				    "may follow the envelope", error_r);
		return 0;
	}
	if (rk == RK_NONE)
		return fail(r, type == QUEUE_REC_DATA || type == QUEUE_REC_END ?
			    "queue file: message data before the envelope "
			    "ended" : "queue file: unknown record type",
			    error_r);
	if (r->rank == RK_NONE && rk != RK_VERSION)
		return fail(r, "queue file: no version record first", error_r);
	if (rk < r->rank || (rk == r->rank && rk != RK_RCPT))
		return fail(r, "queue file: envelope record out of order or "
			    "repeated", error_r);
	if ((type == QUEUE_REC_NOTIFY || type == QUEUE_REC_ORCPT) &&
	    r->rank != RK_RCPT)
		return fail(r, "queue file: recipient option before any "
			    "recipient", error_r);
	if ((type == QUEUE_REC_NOTIFY && r->rcpt_notify) ||
	    (type == QUEUE_REC_ORCPT && r->rcpt_orcpt))
		return fail(r, "queue file: recipient option repeated",
			    error_r);
	return 0;
}

/* The length is known: within the limit of the type? */
static int check_length(struct queue_reader *r, const char **error_r)
{
	size_t max = r->type == QUEUE_REC_DATA ? QUEUE_DATA_MAX :
		     r->type == QUEUE_REC_MESSAGE ? 0 :
		     r->type == QUEUE_REC_END ? 20 : QUEUE_FIELD_MAX;

	if (r->len > max)
		return fail(r, "queue file: record too long", error_r);
	if (r->type == QUEUE_REC_DATA && r->len == 0)
		return fail(r, "queue file: empty data record", error_r);
	return 0;
}

/* Envelope text: printable, no control characters (UTF-8 allowed). */
static bool text_ok(const char *s, size_t len, bool empty_ok)
{
	if (len == 0)
		return empty_ok;
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	}
	return true;
}

static bool digits_ok(const char *s, size_t len)
{
	if (len == 0 || len > 19)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
	}
	return true;
}

static bool arrival_parse(const char *s, size_t len, int64_t *sec_r,
			  uint32_t *usec_r)
{
	const char *dot = memchr(s, '.', len);

	if (dot == NULL || !digits_ok(s, (size_t)(dot - s)) ||
	    (size_t)(dot - s) > 15 || len - (size_t)(dot - s) - 1 != 6 ||
	    !digits_ok(dot + 1, 6))
		return false;
	*sec_r = strtoll(s, NULL, 10);
	*usec_r = (uint32_t)strtoul(dot + 1, NULL, 10);
	return true;
}

static bool one_of(const char *s, const char *a, const char *b)
{
	return strcmp(s, a) == 0 || strcmp(s, b) == 0;
}

/* A complete non-data record: checks its value and stores it. */
static int take_field(struct queue_reader *r, const char **error_r)
{
	const char *v = str_c(r->value);
	size_t len = str_len(r->value);
	struct queue_envelope *e = &r->env;
	bool empty_ok = r->type == QUEUE_REC_SENDER ||
			r->type == QUEUE_REC_MESSAGE;
	char **slot = NULL;

	if (!text_ok(v, len, empty_ok))
		return fail(r, "queue file: bad characters in a field",
			    error_r);
	switch (r->type) {
	case QUEUE_REC_VERSION:
		if (strcmp(v, QUEUE_VERSION) != 0)
			return fail(r, "queue file: unknown version", error_r);
		break;
	case QUEUE_REC_ID:
		if (!queue_id_valid(v))
			return fail(r, "queue file: bad queue id", error_r);
		slot = &e->id;
		break;
	case QUEUE_REC_ARRIVAL:
		if (!arrival_parse(v, len, &e->arrival_sec, &e->arrival_usec))
			return fail(r, "queue file: bad arrival time",
				    error_r);
		break;
	case QUEUE_REC_CLIENT_ADDR: slot = &e->client_addr; break;
	case QUEUE_REC_CLIENT_NAME: slot = &e->client_name; break;
	case QUEUE_REC_HELO: slot = &e->helo; break;
	case QUEUE_REC_PROTOCOL: slot = &e->protocol; break;
	case QUEUE_REC_AUTH: slot = &e->auth; break;
	case QUEUE_REC_TLS: slot = &e->tls; break;
	case QUEUE_REC_SENDER:
		if (e->id == NULL || e->arrival_sec == 0)
			return fail(r, "queue file: no id or arrival time "
				    "before the sender", error_r);
		slot = &e->sender;
		break;
	case QUEUE_REC_BODY:
		if (!one_of(v, "7BIT", "8BITMIME"))
			return fail(r, "queue file: bad body type", error_r);
		slot = &e->body;
		break;
	case QUEUE_REC_SMTPUTF8:
		if (strcmp(v, "1") != 0)
			return fail(r, "queue file: bad SMTPUTF8 record",
				    error_r);
		e->smtputf8 = true;
		break;
	case QUEUE_REC_RET:
		if (!one_of(v, "FULL", "HDRS"))
			return fail(r, "queue file: bad RET value", error_r);
		slot = &e->ret;
		break;
	case QUEUE_REC_ENVID: slot = &e->envid; break;
	case QUEUE_REC_RCPT:
		if (e->sender == NULL)
			return fail(r, "queue file: recipient before the "
				    "sender", error_r);
		if (e->nrcpts >= QUEUE_RCPT_MAX)
			return fail(r, "queue file: too many recipients",
				    error_r);
		queue_envelope_add_rcpt(e, v, NULL, NULL);
		r->rcpt_notify = r->rcpt_orcpt = false;
		break;
	case QUEUE_REC_NOTIFY:
		r->rcpt_notify = true;
		slot = &e->rcpts[e->nrcpts - 1].notify;
		break;
	case QUEUE_REC_ORCPT:
		r->rcpt_orcpt = true;
		slot = &e->rcpts[e->nrcpts - 1].orcpt;
		break;
	case QUEUE_REC_MESSAGE:
		if (e->nrcpts == 0)
			return fail(r, "queue file: no recipients", error_r);
		break;
	case QUEUE_REC_END:
		if (!digits_ok(v, len) ||
		    strtoull(v, NULL, 10) != r->size)
			return fail(r, "queue file: the message size does "
				    "not match the end record", error_r);
		return QUEUE_READ_END;
	default:
		return fail(r, "queue file: unknown record type", error_r);
	}
	if (slot != NULL)
		*slot = xstrdup(v);
	r->rank = type_rank(r->type);
	return r->type == QUEUE_REC_MESSAGE ? QUEUE_READ_ENVELOPE :
	       QUEUE_READ_MORE;
}

/* One byte of the record head: the type or a length digit. */
static int head_byte(struct queue_reader *r, char c, const char **error_r)
{
	if (r->state == RS_TYPE) {
		if (check_type(r, c, error_r) < 0)
			return QUEUE_READ_ERROR;
		r->type = c;
		r->len = 0;
		r->digits = 0;
		r->state = RS_LENGTH;
		return 0;
	}
	if (c == ':' && r->digits > 0) {
		if (check_length(r, error_r) < 0)
			return QUEUE_READ_ERROR;
		r->left = r->len;
		str_clear(r->value);
		r->state = r->len > 0 ? RS_VALUE : RS_NEWLINE;
		return 0;
	}
	if (c < '0' || c > '9' || r->digits >= QUEUE_LENGTH_DIGITS ||
	    (r->digits == 1 && r->len == 0))
		return fail(r, "queue file: bad record length", error_r);
	r->len = r->len * 10 + (size_t)(c - '0');
	r->digits++;
	return 0;
}

int queue_reader_feed(struct queue_reader *r, const char **pos,
		      const char *end, const char **data_r, size_t *len_r,
		      const char **error_r)
{
	while (*pos < end) {
		const char *p = *pos;
		size_t avail = (size_t)(end - p);
		size_t n;
		int ev;

		switch (r->state) {
		case RS_ERROR:
			*error_r = r->error;
			return QUEUE_READ_ERROR;
		case RS_DONE:
			return fail(r, "queue file: bytes after the end record",
				    error_r);
		case RS_TYPE:
		case RS_LENGTH:
			(*pos)++;
			if (head_byte(r, *p, error_r) < 0)
				return QUEUE_READ_ERROR;
			break;
		case RS_VALUE:
			n = avail < r->left ? avail : r->left;
			*pos += n;
			r->left -= n;
			if (r->left == 0)
				r->state = RS_NEWLINE;
			if (r->type == QUEUE_REC_DATA) {
				r->size += n;
				*data_r = p;
				*len_r = n;
				return QUEUE_READ_DATA;
			}
			if (memchr(p, '\0', n) != NULL)
				return fail(r, "queue file: NUL in a field",
					    error_r);
			if (str_append(r->value, p, n) < 0)
				return fail(r, "queue file: record too long",
					    error_r);
			break;
		case RS_NEWLINE:
			(*pos)++;
			if (*p != '\n')
				return fail(r, "queue file: record not ended "
					    "by a newline", error_r);
			r->state = RS_TYPE;
			if (r->type == QUEUE_REC_DATA)
				break;
			ev = take_field(r, error_r);
			if (ev == QUEUE_READ_END)
				r->state = RS_DONE;
			if (ev != QUEUE_READ_MORE)
				return ev;
			break;
		}
	}
	return QUEUE_READ_MORE;
}

/* ---- whole files ---- */

int queue_file_read(const char *path, struct queue_envelope *env,
		    struct str *msg, struct str *error)
{
	struct queue_reader *r;
	char buf[16384];
	bool ended = false;
	const char *err = NULL;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0) {
		if (error != NULL)
			(void)str_setf(error, "open %s: %s", path,
				       strerror(errno));
		return -1;
	}
	r = queue_reader_new();
	while (err == NULL && (n = read(fd, buf, sizeof(buf))) != 0) {
		const char *pos = buf, *end = buf + (n > 0 ? n : 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = strerror(errno);
			break;
		}
		while (err == NULL && pos < end) {
			const char *data;
			size_t len;
			int ev = queue_reader_feed(r, &pos, end, &data, &len,
						   &err);

			if (ev == QUEUE_READ_DATA && msg != NULL &&
			    str_append(msg, data, len) < 0)
				err = "the message is larger than the buffer";
			else if (ev == QUEUE_READ_END)
				ended = true;
		}
	}
	close(fd);
	if (err == NULL && !ended)
		err = "queue file: incomplete (no end record)";
	if (err != NULL) {
		if (error != NULL)
			(void)str_setf(error, "%s: %s", path, err);
		queue_reader_free(&r);
		return -1;
	}
	*env = r->env;
	memset(&r->env, 0, sizeof(r->env));
	queue_reader_free(&r);
	return 0;
}
