/*
 * pop3proto.h: the POP3 command parser, the AUTH PLAIN decoder and the
 * message encoder of RETR and TOP.
 *
 * Pure and resumable, no I/O: tern-popd (and the POP3 side of tern-proxyd)
 * feed them bytes split at any point.
 *
 * The parser turns client input into commands (RFC 1939, 2449, 2595,
 * 5034): the verb (any case), its arguments checked per verb (message
 * numbers 1..POP3_MSG_MAX, TOP's line count), PASS's argument taken whole
 * (spaces are part of the password), AUTH's mechanism and optional initial
 * response.  After pop3_parser_expect_sasl() the next line is returned as
 * a SASL response (POP3_SASL) instead of a command.  A bad line (too long,
 * a NUL, a bad argument) is an error with a "-ERR ..." reply; the parser
 * goes on with the next line, so the session stays usable.  An unknown
 * verb is not an error (POP3_UNKNOWN): the session replies.
 *
 * The encoder turns a stored message into what RETR and TOP send: every
 * line ending (CRLF, a bare LF or a bare CR) becomes CRLF, a line starting
 * with "." gets one more, and pop3_body_finish() ends the last line and
 * adds the terminating ".".  For TOP it stops after the header, the empty
 * line and the requested number of body lines.  It never holds more than
 * one byte of state across calls, so a message is streamed in chunks.
 *
 * Limits: command lines of at most the parser's max_line bytes (clamped to
 * POP3_LINE_MIN..LINEREADER_MAX_LIMIT); AUTH PLAIN responses of at most
 * POP3_SASL_MAX decoded bytes.
 */
#ifndef TERN_POP3PROTO_H
#define TERN_POP3PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compat.h"
#include "str.h"

#define POP3_LINE_MIN 255		/* RFC 2449: 255 octets with CRLF */
#define POP3_MSG_MAX 0x7fffffffU	/* highest message number parsed */
#define POP3_SASL_MAX 8192		/* decoded AUTH PLAIN bytes */

enum pop3_verb {
	POP3_UNKNOWN = 0,
	POP3_USER,
	POP3_PASS,
	POP3_APOP,
	POP3_STAT,
	POP3_LIST,
	POP3_RETR,
	POP3_DELE,
	POP3_NOOP,
	POP3_RSET,
	POP3_QUIT,
	POP3_TOP,
	POP3_UIDL,
	POP3_CAPA,
	POP3_STLS,
	POP3_AUTH,
	POP3_SASL,	/* a SASL response line, after expect_sasl */
};

/* Strings point into the parser and stay valid until the next feed or
 * reset. */
struct pop3_cmd {
	enum pop3_verb verb;
	const char *name;	/* the verb as sent ("" for POP3_SASL) */
	/* USER: the name; PASS: everything after "PASS "; AUTH: the
	 * mechanism (upper-cased); POP3_SASL: the line; else "". */
	const char *arg;
	/* AUTH: the initial response, or NULL when none was sent. */
	const char *initial;
	/* LIST, UIDL (optional), RETR, DELE, TOP (required). */
	bool has_msg;
	uint32_t msg;
	uint64_t lines;		/* TOP */
};

struct pop3_parser;

struct pop3_parser *pop3_parser_new(size_t max_line);
void pop3_parser_free(struct pop3_parser **p);
/* Drops buffered input and the SASL mode (after STLS). */
void pop3_parser_reset(struct pop3_parser *p);
/* The next line is a SASL response, returned whole as POP3_SASL. */
void pop3_parser_expect_sasl(struct pop3_parser *p);
/* Bytes of an unfinished line held. */
size_t pop3_parser_buffered(const struct pop3_parser *p);

/*
 * Consumes input from *pos (at most one line per call).  1: a command in
 * *cmd_r; 0: all input consumed, need more; -1: a bad line, *error_r is
 * the reply to send ("-ERR ..."), and the parser goes on.
 */
int pop3_parser_feed(struct pop3_parser *p, const char **pos, const char *end,
		     struct pop3_cmd *cmd_r, const char **error_r) TERN_WUR;

const char *pop3_verb_name(enum pop3_verb verb);

/*
 * Decodes an AUTH PLAIN response (RFC 4616): base64 of
 * "authzid NUL authcid NUL password".  buf (the caller's, at least
 * POP3_SASL_MAX + 1 of room) holds the pieces, which the _r pointers
 * point into.  0, or -1 for bad base64, a wrong number of pieces, an
 * empty authcid or password, or over POP3_SASL_MAX bytes.
 */
int pop3_sasl_plain_decode(const char *b64, size_t len, struct str *buf,
			   const char **authzid_r, const char **authcid_r,
			   const char **password_r) TERN_WUR;

/* ---- the message encoder of RETR and TOP ---- */

#define POP3_BODY_ROOM_MIN 4	/* out must have this much room to progress */

struct pop3_body;

/* lines < 0: the whole message (RETR); else the header and that many lines
 * of the body (TOP). */
struct pop3_body *pop3_body_new(int64_t lines);
void pop3_body_free(struct pop3_body **b);
void pop3_body_reset(struct pop3_body *b, int64_t lines);
/*
 * Consumes stored message bytes from *pos, appending the encoded form to
 * out.  0: all input consumed; 1: TOP has all its lines (the rest of the
 * message is not needed; *pos stops there); -1: out is full (the caller
 * sends it, clears it and calls again with the same *pos).
 */
int pop3_body_feed(struct pop3_body *b, const char **pos, const char *end,
		   struct str *out) TERN_WUR;
/* The end of the message: ends an unfinished last line, then ".\r\n".
 * -1 when out is too full to finish (the caller sends it, clears it and
 * calls again); POP3_BODY_ROOM_MIN bytes of room are always enough. */
int pop3_body_finish(struct pop3_body *b, struct str *out) TERN_WUR;
/* Bytes appended to out since new or reset (for the log). */
uint64_t pop3_body_written(const struct pop3_body *b);

#endif
