/*
 * queue.h: the queue file of Tern's MTA, its queue ids, its writer and its
 * reader.
 *
 * tern-smtpd writes one queue file per accepted message into
 * ROOT/queue/incoming; tern-qmgr reads it.  The file is a sequence of
 * typed records, each "T<length>:<bytes>\n" (T one letter, length in
 * decimal), in a fixed order: the version, the envelope (queue id, arrival
 * time, client, HELO, protocol, auth identity, TLS, sender, body type,
 * DSN RET/ENVID, then each recipient with its NOTIFY and ORCPT), the start
 * of the message, the message itself in data records of at most
 * QUEUE_DATA_MAX bytes (the Received header Tern added comes first), and
 * an end record holding the message size.  A file without its end record,
 * or with anything after it, is incomplete and treated as absent.
 * docs/protocols/queue.md describes the format field by field.
 *
 * queue_encode_*() append records to a str (the caller writes them out).
 * The reader is a pure, resumable state machine (no I/O; input may be split
 * at any byte): it checks every record's type, length and place, fills in a
 * struct queue_envelope and hands data records to the caller.
 *
 * Limits: QUEUE_FIELD_MAX bytes per envelope field, QUEUE_DATA_MAX per data
 * record, QUEUE_RCPT_MAX recipients; the reader buffers at most one record.
 * Callers: tern-smtpd (writer), tern-qmgr and the tests (reader).
 */
#ifndef TERN_QUEUE_H
#define TERN_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compat.h"
#include "str.h"

#define QUEUE_VERSION "tern-queue 1"
#define QUEUE_ID_LEN 16			/* characters of a queue id */
#define QUEUE_ID_SIZE (QUEUE_ID_LEN + 1)
#define QUEUE_FIELD_MAX 1024		/* one envelope field */
#define QUEUE_DATA_MAX (64 * 1024)	/* one data record */
#define QUEUE_RCPT_MAX 100000
#define QUEUE_LENGTH_DIGITS 7		/* "65536" fits; more is an error */
/* Bytes a data record adds around its data. */
#define QUEUE_RECORD_OVERHEAD (1 + QUEUE_LENGTH_DIGITS + 2)

/* Record types (the letter that starts each record). */
#define QUEUE_REC_VERSION 'V'
#define QUEUE_REC_ID 'I'
#define QUEUE_REC_ARRIVAL 'T'
#define QUEUE_REC_CLIENT_ADDR 'C'
#define QUEUE_REC_CLIENT_NAME 'N'
#define QUEUE_REC_HELO 'H'
#define QUEUE_REC_PROTOCOL 'P'
#define QUEUE_REC_AUTH 'A'
#define QUEUE_REC_TLS 'L'
#define QUEUE_REC_SENDER 'S'
#define QUEUE_REC_BODY 'B'
#define QUEUE_REC_SMTPUTF8 'U'
#define QUEUE_REC_RET 'X'
#define QUEUE_REC_ENVID 'E'
#define QUEUE_REC_RCPT 'R'
#define QUEUE_REC_NOTIFY 'n'	/* of the recipient before it */
#define QUEUE_REC_ORCPT 'o'	/* of the recipient before it */
#define QUEUE_REC_MESSAGE 'M'
#define QUEUE_REC_DATA 'D'
#define QUEUE_REC_END 'Z'

struct queue_rcpt {
	char *address;
	char *notify;	/* "NEVER" or e.g. "SUCCESS,FAILURE"; NULL = unset */
	char *orcpt;	/* "rfc822;user@example.com" (xtext as sent); NULL */
};

/* Every string is malloc'd; NULL (or false, 0) when the file has none. */
struct queue_envelope {
	char *id;
	int64_t arrival_sec;
	uint32_t arrival_usec;
	char *client_addr;	/* "192.0.2.1", "::1", "unix" */
	char *client_name;	/* the verified host name, or "unknown" */
	char *helo;
	char *protocol;		/* SMTP ESMTP ESMTPS ESMTPA ESMTPSA */
	char *auth;		/* the authenticated account */
	char *tls;		/* "TLSv1.3 with cipher ... (256/256 bits)" */
	char *sender;		/* "" = the null sender */
	char *body;		/* "7BIT" or "8BITMIME" */
	bool smtputf8;
	char *ret;		/* "FULL" or "HDRS" */
	char *envid;		/* xtext as sent */
	struct queue_rcpt *rcpts;
	size_t nrcpts;
};

void queue_envelope_clear(struct queue_envelope *env);
/* Appends a recipient (strings copied; notify, orcpt may be NULL). */
void queue_envelope_add_rcpt(struct queue_envelope *env, const char *address,
			     const char *notify, const char *orcpt);

/* ---- queue ids ---- */

/* A new id: 11 characters of microseconds since 1970 and 5 of the process
 * id, in a 32-letter alphabet without I, L, O, U; ids of one process
 * increase strictly, so they sort by arrival. */
void queue_id_new(char id[static QUEUE_ID_SIZE]);
bool queue_id_valid(const char *id);
/* The process id inside an id (for cleaning up temporary files). */
long queue_id_pid(const char *id);

/* ---- writer ---- */

/* Appends the version, the envelope and the message start.  -1 when a
 * field is too long, a required field is missing or out is full. */
int queue_encode_envelope(struct str *out, const struct queue_envelope *env)
	TERN_WUR;
/* Appends message bytes as data records of at most QUEUE_DATA_MAX. */
int queue_encode_data(struct str *out, const void *data, size_t len)
	TERN_WUR;
/* Appends the end record; size is the sum of the data bytes. */
int queue_encode_end(struct str *out, uint64_t size) TERN_WUR;

/* ---- reader ---- */

struct queue_reader;

#define QUEUE_READ_MORE 0	/* all input consumed */
#define QUEUE_READ_DATA 1	/* *data_r, *len_r: message bytes */
#define QUEUE_READ_ENVELOPE 2	/* the envelope is complete */
#define QUEUE_READ_END 3	/* the end record: the file is complete */
#define QUEUE_READ_ERROR (-1)	/* *error_r says why; stays in error */

struct queue_reader *queue_reader_new(void);
void queue_reader_free(struct queue_reader **r);
/* Consumes input from *pos; returns one event.  Data pointers are valid
 * until the next call.  After QUEUE_READ_END any further byte is an
 * error. */
int queue_reader_feed(struct queue_reader *r, const char **pos,
		      const char *end, const char **data_r, size_t *len_r,
		      const char **error_r) TERN_WUR;
/* The envelope read so far (complete after QUEUE_READ_ENVELOPE). */
const struct queue_envelope *queue_reader_envelope(
	const struct queue_reader *r);
uint64_t queue_reader_size(const struct queue_reader *r); /* data bytes */

/* Reads a whole queue file (blocking): 0 with the envelope (and, when msg
 * is not NULL, the message appended to it), or -1 with a sentence in
 * error.  env must be zeroed or cleared. */
int queue_file_read(const char *path, struct queue_envelope *env,
		    struct str *msg, struct str *error) TERN_WUR;

#endif
