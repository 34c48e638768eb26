/*
 * smtpproto.h: the SMTP and LMTP command parser and the DATA reader.
 *
 * Pure and resumable, no I/O: tern-smtpd, tern-lmtpd and the SMTP/LMTP
 * clients share them.  smtp_cmd_parse() takes one command line (without
 * its CRLF, as the line reader returns it) and splits it into the verb and
 * its arguments: MAIL FROM and RCPT TO paths per RFC 5321 section 4.1.2
 * (source routes dropped, quoted local parts kept as written, "<>" as the
 * null path, UTF-8 allowed when the caller allows SMTPUTF8), ESMTP
 * parameters as keyword/value pairs, the BDAT size and LAST.
 *
 * The DATA reader consumes the message after "354": it removes the dot
 * stuffing, finds the end only at CRLF.CRLF (never at LF.LF, bare CR or a
 * lone dot after a bare LF: the SMTP smuggling defence), and reports bare
 * CR and bare LF so the caller can reject the message (or, in normalize
 * mode, turns each bare CR or LF into CRLF).  It counts bytes against a
 * maximum and goes on consuming to the end when the message is too big, so
 * the session stays in step.
 *
 * Limits: SMTP_PARAMS_MAX parameters, SMTP_PATH_MAX bytes per path.
 */
#ifndef TERN_SMTPPROTO_H
#define TERN_SMTPPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "compat.h"
#include "str.h"

#define SMTP_PARAMS_MAX 16
#define SMTP_PATH_MAX 512	/* RFC 5321: 256 for the path; room for UTF-8 */

enum smtp_verb {
	SMTP_UNKNOWN = 0,
	SMTP_HELO,
	SMTP_EHLO,
	SMTP_LHLO,
	SMTP_MAIL,
	SMTP_RCPT,
	SMTP_DATA,
	SMTP_BDAT,
	SMTP_RSET,
	SMTP_NOOP,
	SMTP_QUIT,
	SMTP_VRFY,
	SMTP_EXPN,
	SMTP_HELP,
	SMTP_STARTTLS,
	SMTP_AUTH,
};

struct smtp_param {
	const char *keyword;	/* upper-cased */
	const char *value;	/* NULL when absent */
};

/* Pointers point into the caller's line buffer, which the parser modifies
 * (NUL-terminating the pieces): keep the line while using the command. */
struct smtp_cmd {
	enum smtp_verb verb;
	const char *name;	/* the verb as sent (for "502 5.5.1 X: ...") */
	const char *arg;	/* everything after the verb, or "" */
	/* MAIL, RCPT: the address inside <>, "" for the null path. */
	const char *path;
	struct smtp_param params[SMTP_PARAMS_MAX];
	size_t nparams;
	/* BDAT */
	uint64_t chunk_size;
	bool last;
};

#define SMTP_PARSE_UTF8 0x1	/* SMTPUTF8 offered: UTF-8 in paths */

/* 0, or -1 with a reply in *error_r ("501 5.5.4 Syntax: MAIL FROM:<address>"
 * and the like) that the caller can send as it is.  An unknown verb is not
 * an error: verb = SMTP_UNKNOWN. */
int smtp_cmd_parse(char *line, size_t len, unsigned flags,
		   struct smtp_cmd *cmd_r, const char **error_r) TERN_WUR;
/* The value of an ESMTP parameter (case-insensitive keyword); *found_r
 * tells a parameter without a value from a missing one. */
const char *smtp_cmd_param(const struct smtp_cmd *cmd, const char *keyword,
			   bool *found_r);
const char *smtp_verb_name(enum smtp_verb verb);

/* The argument of HELO, EHLO or LHLO: 1 to SMTP_HELLO_MAX printable
 * ASCII bytes without spaces or parentheses (it goes into a Received
 * header as written). */
#define SMTP_HELLO_MAX 255
bool smtp_hello_name_valid(const char *name);

/* The date of a Received: header (RFC 5322 section 3.3), local time:
 * "Sun, 29 Nov 2026 04:05:06 +0000". */
#define SMTP_DATE_SIZE 64
void smtp_date(time_t when, char buf[static SMTP_DATE_SIZE]);

/* ---- DATA ---- */

enum smtp_data_mode {
	SMTP_DATA_STRICT,	/* bare CR/LF flagged (caller rejects) */
	SMTP_DATA_NORMALIZE,	/* bare CR/LF become CRLF, and are flagged */
};

#define SMTP_DATA_BARE_CR 0x1
#define SMTP_DATA_BARE_LF 0x2
#define SMTP_DATA_TOO_BIG 0x4
#define SMTP_DATA_NUL 0x8

struct smtp_data;

struct smtp_data *smtp_data_new(enum smtp_data_mode mode, uint64_t max_size);
void smtp_data_free(struct smtp_data **d);
void smtp_data_reset(struct smtp_data *d);
/*
 * Consumes input from *pos to end, appending the unstuffed message (with
 * CRLF line ends) to out while it stays within max_size.  Returns 1 when
 * the end marker was seen (*pos is just after it: the rest is the next
 * command), 0 when all input was consumed, -1 when out is full (the caller
 * writes it away, clears it and calls again with the same *pos).
 */
int smtp_data_feed(struct smtp_data *d, const char **pos, const char *end,
		   struct str *out) TERN_WUR;
unsigned smtp_data_flags(const struct smtp_data *d);
uint64_t smtp_data_size(const struct smtp_data *d);	/* bytes of message */

#endif
