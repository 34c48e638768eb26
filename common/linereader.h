/*
 * linereader.h: the line splitter of the text protocols (SMTP, LMTP, POP3,
 * IMAP).  Pure and resumable: no I/O, input may be split at any byte.
 *
 * Each feed returns at most one event: a complete line (without its line
 * ending), a literal chunk (IMAP), "need more input", or a recoverable "line
 * too long".  A line longer than max_line bytes (not counting CRLF) is
 * discarded up to its line end and reported once, when that end arrives; the
 * reader then goes on with the next line, so the connection stays usable.
 * The reader never buffers more than max_line bytes: a line that arrives in
 * one piece is returned in place (zero-copy), and literal bytes always are.
 *
 * Line ends: CRLF always ends a line.  A bare LF ends a line too unless
 * linereader_set_bare_lf(lr, 0); then it stays in the line as data.  Each
 * line carries flags so that SMTP can refuse the bare CR and bare LF that
 * message smuggling relies on.
 *
 * After STARTTLS call linereader_reset() and drop whatever input the caller
 * still holds: no plaintext may survive into the TLS session.
 *
 * Callers: smtpd, lmtpd, pop3d, imapd session code.  Limits: max_line is
 * clamped to 1..LINEREADER_MAX_LIMIT.
 */
#ifndef TERN_LINEREADER_H
#define TERN_LINEREADER_H

#include <stddef.h>
#include <stdint.h>

#include "compat.h"

#define LINEREADER_MAX_LIMIT ((size_t)16 << 20)

/* Return values of linereader_feed(). */
#define LINEREADER_TOO_LONG (-1)	/* a line was discarded; go on */
#define LINEREADER_MORE 0		/* all input consumed */
#define LINEREADER_LINE 1		/* *line_r is a line */
#define LINEREADER_LITERAL 2		/* *line_r is a literal chunk */

/* Line flags. */
#define LINEREADER_F_BARE_LF_END 0x01	/* ended with LF, no CR before */
#define LINEREADER_F_BARE_CR 0x02	/* a CR inside the line's data */
#define LINEREADER_F_BARE_LF 0x04	/* an LF inside the data (strict) */
#define LINEREADER_F_LITERAL_END 0x08	/* last chunk of the literal */

struct linereader_line {
	const char *data;	/* valid until the next feed or reset */
	size_t len;
	unsigned int flags;	/* LINEREADER_F_* */
};

struct linereader;

struct linereader *linereader_new(size_t max_line);
void linereader_free(struct linereader **lr);

/* accept != 0 (the default): a bare LF ends a line (flag BARE_LF_END).
 * accept == 0: only CRLF ends a line; an LF alone is data (flag BARE_LF). */
void linereader_set_bare_lf(struct linereader *lr, int accept);

/* Consumes input from *pos (at most one line or chunk per call) and returns
 * one of the LINEREADER_* values above.  For TOO_LONG, line_r->len is the
 * number of bytes discarded (line data, without the line ending). */
int linereader_feed(struct linereader *lr, const char **pos, const char *end,
		    struct linereader_line *line_r) TERN_WUR;

/* The next n input bytes are a literal: feeds return them as
 * LINEREADER_LITERAL chunks (the last one flagged LITERAL_END) before line
 * mode resumes.  Only between lines: -1 while a partial line is buffered or
 * a literal is still pending.  n == 0 is a no-op. */
int linereader_expect_literal(struct linereader *lr, uint64_t n) TERN_WUR;
/* Literal bytes still to come (0 in line mode). */
uint64_t linereader_literal_left(const struct linereader *lr);

/* Drops every buffered byte and any pending literal; the bare-LF mode and
 * max_line stay. */
void linereader_reset(struct linereader *lr);
/* Bytes of an unfinished line held by the reader: at most max_line, plus
 * one for a final CR held back until the next byte shows what it is. */
size_t linereader_buffered(const struct linereader *lr);

#endif
