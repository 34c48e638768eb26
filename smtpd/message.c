/* message.c: see message.h. */
#include "config.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include "compat.h"
#include "filter.h"
#include "log.h"
#include "message.h"
#include "queue.h"
#include "smtpd.h"
#include "smtpproto.h"
#include "spool.h"
#include "str.h"
#include "svc.h"
#include "xalloc.h"

#define REPLY_MAX 1024
#define HEADER_SCAN_MAX (256 * 1024)	/* header bytes the hook sees */
#define MESSAGE_ID_LOG_MAX 256

enum msg_step {
	STEP_NONE,	/* not finishing */
	STEP_BODY,	/* filter_body */
	STEP_WRITE,	/* the last records */
	STEP_ACCEPT,	/* filter_accept */
	STEP_COMMIT,	/* fsync, rename, fsync folder */
	STEP_COMMITTED,	/* 250 */
	STEP_DONE,
};

struct msg {
	struct smtpd *sd;
	char id[QUEUE_ID_SIZE];
	struct queue_envelope env;
	msg_wake_cb *wake;
	void *ctx;
	bool begun;
	struct smtp_data *data;	/* DATA; NULL for BDAT */
	struct spool *spool;
	struct str *raw;	/* message bytes not yet framed */
	struct str *out;	/* records not yet handed to the spool */
	uint64_t size;		/* message bytes, Received included */
	uint64_t header_size;	/* the Received header */
	unsigned flags;		/* SMTP_DATA_* (BDAT: ours) */
	bool bdat_cr;		/* BDAT: the last byte was a CR */
	/* the header, for filter_headers */
	struct str *header;
	size_t line_len;
	bool header_done;
	enum filter_verdict verdict;
	char *verdict_reply;
	unsigned hops;		/* Received fields, ours included */
	/* the end */
	bool waiting;		/* the feed waits for a spool write */
	enum msg_step step;
	bool step_running;	/* an asynchronous step is out */
	bool in_step;		/* inside finish_step */
	msg_done_cb *done;
	struct str *chunk_error;
};

static void on_spool(void *ctx);

struct msg *msg_new(struct smtpd *sd, const char *id, msg_wake_cb *wake,
		    void *ctx)
{
	struct msg *m = xcalloc(1, sizeof(*m));
	struct timeval tv;

	m->sd = sd;
	str_lcpy(m->id, id, sizeof(m->id));
	m->wake = wake;
	m->ctx = ctx;
	gettimeofday(&tv, NULL);
	m->env.id = xstrdup(id);
	m->env.arrival_sec = (int64_t)tv.tv_sec;
	m->env.arrival_usec = (uint32_t)tv.tv_usec;
	return m;
}

void msg_free(struct msg **mp)
{
	struct msg *m = *mp;

	*mp = NULL;
	if (m == NULL)
		return;
	spool_free(&m->spool, true);
	smtp_data_free(&m->data);
	str_free(&m->raw);
	str_free(&m->out);
	str_free(&m->header);
	str_free(&m->chunk_error);
	free(m->verdict_reply);
	queue_envelope_clear(&m->env);
	free(m);
}

struct queue_envelope *msg_envelope(struct msg *m)
{
	return &m->env;
}

const char *msg_id(const struct msg *m)
{
	return m->id;
}

bool msg_begun(const struct msg *m)
{
	return m->begun;
}

/* ---- the start ---- */

/* Received: (RFC 5321 section 4.4), folded. */
static int add_received(struct msg *m)
{
	const struct queue_envelope *e = &m->env;
	char date[SMTP_DATE_SIZE];
	bool unix_peer = strcmp(e->client_addr, "unix") == 0;
	bool v6 = strchr(e->client_addr, ':') != NULL;
	int r;

	smtp_date((time_t)e->arrival_sec, date);
	r = str_printf(m->raw, "Received: from %s (%s%s%s%s)\r\n",
		       e->helo != NULL ? e->helo : "unknown",
		       unix_peer ? "local socket" : "unknown [",
		       v6 ? "IPv6:" : "", unix_peer ? "" : e->client_addr,
		       unix_peer ? "" : "]");
	if (r == 0 && e->tls != NULL)
		r = str_printf(m->raw, "\t(using %s)\r\n", e->tls);
	if (r == 0)
		r = str_printf(m->raw, "\tby %s (Tern) with %s id %s\r\n",
			       m->sd->hostname, e->protocol, m->id);
	if (r == 0 && e->nrcpts == 1)
		r = str_printf(m->raw, "\tfor <%s>; %s\r\n",
			       e->rcpts[0].address, date);
	else if (r == 0)
		r = str_printf(m->raw, "\t; %s\r\n", date);
	return r;
}

void msg_begin(struct msg *m)
{
	struct smtpd *sd = m->sd;

	m->begun = true;
	if (m->env.body == NULL)
		m->env.body = xstrdup("7BIT");
	m->raw = str_new(QUEUE_DATA_MAX, QUEUE_DATA_MAX);
	m->out = str_new(SPOOL_CHUNK + QUEUE_RECORD_OVERHEAD,
			 SPOOL_WRITE_MAX);
	m->header = str_new(1024, HEADER_SCAN_MAX);
	m->chunk_error = str_new(128, REPLY_MAX);
	m->spool = spool_new(svc_loop(sd->svc), sd->queue_tmp, m->id,
			     on_spool, m);
	if (queue_encode_envelope(m->out, &m->env) < 0 ||
	    add_received(m) < 0) {
		/* Cannot happen: every field was checked at MAIL and RCPT. */
		log_error(m->id, "queue file: envelope too large");
		m->flags |= SMTP_DATA_TOO_BIG;
	}
	m->header_size = str_len(m->raw);
	m->size = m->header_size;
}

/* ---- the message ---- */

/* A message that will be refused is not written any further. */
static bool refused(const struct msg *m)
{
	unsigned bad = SMTP_DATA_TOO_BIG;

	if (!m->sd->normalize_newlines)
		bad |= SMTP_DATA_BARE_CR | SMTP_DATA_BARE_LF;
	return (m->flags & bad) != 0 || m->verdict != FILTER_CONTINUE ||
	       m->hops > m->sd->hop_limit;
}

/* Logs the Message-ID field, Postfix-style, when the header has one. */
static void log_message_id(struct msg *m)
{
	const char *h = str_c(m->header), *end = h + str_len(m->header);

	for (const char *line = h; line < end;) {
		const char *eol = memchr(line, '\n', (size_t)(end - line));
		size_t len = (size_t)((eol != NULL ? eol : end) - line);

		if (len > 11 && strncasecmp(line, "Message-ID:", 11) == 0) {
			const char *v = line + 11;

			len -= 11;
			while (len > 0 && (*v == ' ' || *v == '\t')) {
				v++;
				len--;
			}
			while (len > 0 && (v[len - 1] == '\r' ||
					   v[len - 1] == ' '))
				len--;
			if (len > MESSAGE_ID_LOG_MAX)
				len = MESSAGE_ID_LOG_MAX;
			if (len > 0)
				log_info(m->id, "message-id=%.*s", (int)len, v);
			return;
		}
		if (eol == NULL)
			break;
		line = eol + 1;
	}
}

/* Received fields in the client's header (their names at the start of a
 * line, any case, "Received :" too). */
static unsigned count_received(const char *h, size_t len)
{
	static const char name[] = "received";
	unsigned n = 0;

	for (size_t i = 0; i < len;) {
		const char *eol = memchr(h + i, '\n', len - i);
		size_t end = eol != NULL ? (size_t)(eol - h) : len;

		if (end - i > sizeof(name) - 1 &&
		    strncasecmp(h + i, name, sizeof(name) - 1) == 0) {
			size_t k = i + sizeof(name) - 1;

			while (k < end && (h[k] == ' ' || h[k] == '\t'))
				k++;
			if (k < end && h[k] == ':')
				n++;
		}
		i = end + 1;
	}
	return n;
}

static void header_end(struct msg *m)
{
	const char *reply = NULL;

	m->header_done = true;
	log_message_id(m);
	/* One more: the Received field of our own. */
	m->hops = count_received(str_c(m->header), str_len(m->header)) + 1;
	if (m->hops > m->sd->hop_limit) {
		str_free(&m->header);	/* refused at the end: no filters */
		return;
	}
	m->verdict = filter_headers(m->sd, &m->env, str_c(m->header),
				    str_len(m->header), &reply);
	if (m->verdict != FILTER_CONTINUE && reply != NULL)
		m->verdict_reply = xstrdup(reply);
	str_free(&m->header);
}

/* Watches the message bytes for the end of the header. */
static void scan_header(struct msg *m, const char *p, size_t n)
{
	for (size_t i = 0; i < n && !m->header_done; i++) {
		if (str_append_byte(m->header, (unsigned char)p[i]) < 0) {
			header_end(m);	/* too long: the hook sees the start */
			return;
		}
		if (p[i] == '\n') {
			if (m->line_len == 0) {
				header_end(m);
				return;
			}
			m->line_len = 0;
		} else if (p[i] != '\r') {
			m->line_len++;
		}
	}
}

/* Frames the raw bytes into data records and hands them to the spool.
 * 0, or -1 when a write runs (try again after on_spool). */
static int flush_raw(struct msg *m)
{
	if (spool_busy(m->spool))
		return -1;
	if (!refused(m) && str_len(m->raw) > 0) {
		if (queue_encode_data(m->out, str_c(m->raw),
				      str_len(m->raw)) < 0)
			m->flags |= SMTP_DATA_TOO_BIG;	/* cannot happen */
	}
	str_clear(m->raw);
	if (refused(m)) {
		str_clear(m->out);
		return 0;
	}
	if (str_len(m->out) > 0 &&
	    spool_write(m->spool, m->out, on_spool, m) < 0)
		str_clear(m->out);	/* the error is kept */
	return 0;
}

int msg_data_feed(struct msg *m, const char **pos, const char *end)
{
	int r;

	if (m->data == NULL)
		m->data = smtp_data_new(m->sd->normalize_newlines ?
					SMTP_DATA_NORMALIZE :
					SMTP_DATA_STRICT, m->sd->size_limit);
	for (;;) {
		size_t before = str_len(m->raw);

		r = smtp_data_feed(m->data, pos, end, m->raw);
		if (!m->header_done)
			scan_header(m, str_c(m->raw) + before,
				    str_len(m->raw) - before);
		m->size += str_len(m->raw) - before;
		if (r == 1) {
			m->flags |= smtp_data_flags(m->data);
			return MSG_FEED_END;
		}
		if (r == 0)
			return MSG_FEED_MORE;
		/* raw is full: frame it and write. */
		m->flags |= smtp_data_flags(m->data);
		if (flush_raw(m) < 0) {
			m->waiting = true;
			return MSG_FEED_WAIT;
		}
	}
}

/* Appends BDAT bytes with the CRLF rules of DATA: a CR is held back
 * until the next byte shows whether it starts a CRLF. */
static void chunk_copy(struct msg *m, const char *p, size_t n)
{
	bool norm = m->sd->normalize_newlines;
	size_t before = str_len(m->raw);
	int r = 0;

	for (size_t i = 0; i < n && r == 0; i++) {
		char c = p[i];

		if (c == '\n') {
			if (!m->bdat_cr)
				m->flags |= SMTP_DATA_BARE_LF;
			r = str_append(m->raw, m->bdat_cr || norm ? "\r\n" :
				       "\n", m->bdat_cr || norm ? 2 : 1);
			m->bdat_cr = false;
			continue;
		}
		if (m->bdat_cr) {
			m->flags |= SMTP_DATA_BARE_CR;
			r = str_append(m->raw, norm ? "\r\n" : "\r",
				       norm ? 2 : 1);
			m->bdat_cr = false;
		}
		if (r < 0)
			break;
		if (c == '\r')
			m->bdat_cr = true;
		else
			r = str_append_byte(m->raw, (unsigned char)c);
	}
	if (!m->header_done)
		scan_header(m, str_c(m->raw) + before, str_len(m->raw) - before);
	m->size += str_len(m->raw) - before;
}

int msg_chunk_feed(struct msg *m, const char **pos, const char *end,
		   uint64_t *left)
{
	while (*left > 0 && *pos < end) {
		/* Room for the worst case: a held CR and the byte after it
		 * become three bytes. */
		size_t room = str_room(m->raw) / 3;
		size_t avail = (size_t)(end - *pos);
		size_t n = avail < *left ? avail : (size_t)*left;

		if (n > room)
			n = room;
		if (n == 0) {
			if (flush_raw(m) < 0) {
				m->waiting = true;
				return MSG_FEED_WAIT;
			}
			continue;
		}
		if (m->size - m->header_size + n > m->sd->size_limit)
			m->flags |= SMTP_DATA_TOO_BIG;
		if (refused(m))
			str_clear(m->raw);	/* read and dropped */
		else
			chunk_copy(m, *pos, n);
		*pos += n;
		*left -= n;
	}
	return *left == 0 ? MSG_FEED_END : MSG_FEED_MORE;
}

/* ---- the end ---- */

static void finish_step(struct msg *m);

static void on_spool(void *ctx)
{
	struct msg *m = ctx;

	if (m->step != STEP_NONE) {
		m->step_running = false;
		finish_step(m);
	} else if (m->waiting) {
		m->waiting = false;
		m->wake(m->ctx);
	}
}

static void reply_done(struct msg *m, const char *fmt, ...) TERN_PRINTF(2, 3);

static void reply_done(struct msg *m, const char *fmt, ...)
{
	struct str *line = str_new(128, REPLY_MAX);
	va_list ap;

	va_start(ap, fmt);
	(void)str_vsetf(line, fmt, ap);
	va_end(ap);
	m->step = STEP_DONE;
	if (str_c(line)[0] != '2')
		spool_free(&m->spool, true);
	m->done(str_c(line), m->ctx);
	str_free(&line);
}

/* The refusal of a message that was read but cannot be queued; true
 * when there is one (it was given). */
static bool refuse(struct msg *m)
{
	const char *error = spool_error(m->spool);

	if (m->flags & SMTP_DATA_TOO_BIG) {
		log_info(m->id, "reject: message from=<%s> too big (over %llu "
			 "bytes)", m->env.sender,
			 (unsigned long long)m->sd->size_limit);
		reply_done(m, "552 5.3.4 Message size exceeds fixed limit of "
			   "%llu bytes",
			   (unsigned long long)m->sd->size_limit);
	} else if ((m->flags & (SMTP_DATA_BARE_CR | SMTP_DATA_BARE_LF)) &&
		   !m->sd->normalize_newlines) {
		log_info(m->id, "reject: message from=<%s>: bare %s received",
			 m->env.sender, m->flags & SMTP_DATA_BARE_LF ?
			 "<LF>" : "<CR>");
		reply_done(m, "550 5.5.2 Error: bare %s received; lines must "
			   "end with <CR><LF>", m->flags & SMTP_DATA_BARE_LF ?
			   "<LF>" : "<CR>");
	} else if (m->hops > m->sd->hop_limit) {
		log_info(m->id, "reject: message from=<%s>: too many hops (%u "
			 "Received header fields, smtpd_hop_count_limit %u)",
			 m->env.sender, m->hops, m->sd->hop_limit);
		reply_done(m, "554 5.4.6 Too many hops (%u Received header "
			   "fields): mail loop?", m->hops);
	} else if (m->verdict != FILTER_CONTINUE) {
		log_info(m->id, "reject: message from=<%s>: content filter: "
			 "%s", m->env.sender, m->verdict_reply != NULL ?
			 m->verdict_reply : "refused");
		if (m->verdict_reply != NULL)
			reply_done(m, "%s", m->verdict_reply);
		else if (m->verdict == FILTER_REJECT)
			reply_done(m, "550 5.7.1 Message content rejected");
		else
			reply_done(m, "451 4.7.1 Message content check failed, "
				   "try again later");
	} else if (error != NULL) {
		log_error(m->id, "queue file: %s", error);
		reply_done(m, "452 4.3.1 Insufficient system storage, try "
			   "again later");
	} else {
		return false;
	}
	return true;
}

static void filter_done(enum filter_verdict verdict, const char *reply,
			void *ctx)
{
	struct msg *m = ctx;

	if (verdict != FILTER_CONTINUE) {
		m->verdict = verdict;
		free(m->verdict_reply);
		m->verdict_reply = reply != NULL ? xstrdup(reply) : NULL;
	}
	m->step_running = false;
	if (!m->in_step)
		finish_step(m);
}

static void committed(struct msg *m)
{
	log_info(m->id, "from=<%s>, size=%llu, nrcpt=%zu (queue incoming)",
		 m->env.sender, (unsigned long long)m->size, m->env.nrcpts);
	reply_done(m, "250 2.0.0 Ok: queued as %s", m->id);
}

/* One step after the other; each asynchronous one comes back here.
 * Returns at once after the reply: the session may have freed m. */
static void finish_step(struct msg *m)
{
	struct str *path;

	m->in_step = true;
	while (!m->step_running) {
		if (spool_busy(m->spool))
			break;	/* on_spool brings us back */
		if (refuse(m))
			return;
		switch (m->step) {
		case STEP_NONE:
		case STEP_BODY:
			if (!m->header_done)
				header_end(m);
			m->step = STEP_WRITE;
			m->step_running = true;
			filter_body(m->sd, &m->env, m->size, filter_done, m);
			break;
		case STEP_WRITE:
			if (str_len(m->raw) > 0) {
				(void)flush_raw(m);
				break;
			}
			if (queue_encode_end(m->out, m->size) < 0)
				m->flags |= SMTP_DATA_TOO_BIG;
			(void)flush_raw(m);
			m->step = STEP_ACCEPT;
			break;
		case STEP_ACCEPT:
			m->step = STEP_COMMIT;
			m->step_running = true;
			filter_accept(m->sd, &m->env, spool_path(m->spool),
				      filter_done, m);
			break;
		case STEP_COMMIT:
			path = str_new(256, 8192);
			if (str_printf(path, "%s/%s", m->sd->queue_incoming,
				       m->id) < 0)
				str_clear(path);
			m->step = STEP_COMMITTED;
			m->step_running = true;
			if (spool_commit(m->spool, str_c(path), on_spool, m) <
			    0)
				m->step_running = false;	/* error set */
			str_free(&path);
			break;
		case STEP_COMMITTED:
			committed(m);
			return;
		case STEP_DONE:
			return;
		}
	}
	m->in_step = false;
}

void msg_finish(struct msg *m, msg_done_cb *done)
{
	m->done = done;
	if (m->bdat_cr) {
		m->flags |= SMTP_DATA_BARE_CR;
		m->bdat_cr = false;
	}
	m->step = STEP_BODY;
	finish_step(m);
}

const char *msg_chunk_error(struct msg *m)
{
	if (m->flags & SMTP_DATA_TOO_BIG) {
		(void)str_setf(m->chunk_error, "552 5.3.4 Message size exceeds "
			       "fixed limit of %llu bytes",
			       (unsigned long long)m->sd->size_limit);
		return str_c(m->chunk_error);
	}
	return NULL;
}
