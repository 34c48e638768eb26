/*
 * msgbody.h: one stored message opened for FETCH and SEARCH: the bytes of
 * BODY[section], BINARY[section] and BINARY.SIZE[section] (RFC 3501 6.4.5,
 * RFC 3516, RFC 9051), and the FETCH value syntax around them.
 *
 * A message is an immutable blob file, mapped read-only with mmap; its MIME
 * tree (common/mime.h) is parsed on first need with the settings given at
 * open and kept until msgbody_close().  Bytes are served as stored (the
 * store keeps CRLF line ends; an LF-only file is served as it is, and its
 * RFC822.SIZE is its file size).  Results that are one byte range of the
 * file point into the mapping; built results (HEADER.FIELDS[.NOT], decoded
 * BINARY content) live in a buffer owned by the result.
 *
 * Sections:
 *   []            the whole message          [TEXT]   the message body
 *   [HEADER]      the header, blank line included
 *   [HEADER.FIELDS (a b)], [HEADER.FIELDS.NOT (a b)]: the fields whose
 *                 names match (ASCII case-insensitively) in their original
 *                 order, folding and line ends, then a blank line (CRLF,
 *                 or LF when the header itself ends in a bare LF)
 *   [1.2]         a part's body; [1.2.MIME] its MIME header;
 *   [1.2.HEADER], [1.2.TEXT], [1.2.HEADER.FIELDS ...] for a part that is
 *                 message/rfc822 (or message/global): the encapsulated
 *                 message's header and body.  A non-multipart message and
 *                 a non-multipart encapsulated message have a part 1 which
 *                 is their body (BODY[1] of a single-part message is its
 *                 body; BODY[2.1] of a message/rfc822 part 2 holding a
 *                 single-part message is that message's body).
 * A section naming no part (BODY[4] of a 3-part message, BODY[1.1] of a
 * text/plain part, [2.HEADER] of a part that is not a message) is not an
 * error of the command: RFC 3501 gives the FETCH data item as an nstring,
 * and Tern answers it with NIL (MSGBODY_ENOPART; msgbody_write_value()
 * writes "NIL" for such a result).  BINARY of a missing part is NIL too;
 * BINARY.SIZE of one has size 0 (its value is a number: answer 0).
 *
 * BINARY[section] is the content of a leaf part with its
 * Content-Transfer-Encoding removed: base64 (characters outside the
 * alphabet are skipped, decoding stops at the padding), quoted-printable
 * (soft line breaks removed, "=XX" decoded in either case, a malformed
 * "=" kept as it is, trailing whitespace before a line end dropped),
 * 7bit/8bit/binary (or none) as they are.  An unknown encoding is
 * MSGBODY_EUNKNOWN_CTE (answer NO [UNKNOWN-CTE]).  BINARY[] is the whole
 * message as is.  BINARY of a multipart part, or any BINARY or
 * BINARY.SIZE section with HEADER, TEXT or MIME, is MSGBODY_EBADSECTION
 * (answer BAD: RFC 3516 defines them for part numbers only and a
 * multipart has no single content to decode).  BINARY.SIZE[section] is the
 * decoded size (the partial is ignored).  Decoded content is never longer
 * than the encoded part, so a decode uses at most the part's size.
 *
 * A partial <offset.length> applies last (to the decoded data for
 * BINARY): an offset past the end gives an empty string.
 *
 * Errors: open failures give -1 with a sentence in error (may be NULL);
 * section lookups return a MSGBODY_E* status with a static message.
 * Callers: tern-imapd (FETCH, SEARCH through imapd/searchmsg.h).  Every call
 * blocks on the file (page faults): the session runs them off the loop or
 * accepts that cost.  Limits: the message size must fit in size_t and in
 * STR_MAX_LIMIT for built results.
 */
#ifndef TERN_IMAPD_MSGBODY_H
#define TERN_IMAPD_MSGBODY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compat.h"
#include "imapcmd.h"
#include "mime.h"
#include "str.h"

/* Status of a section lookup (0 = found). */
#define MSGBODY_OK 0
#define MSGBODY_ENOPART (-1)	  /* names no part: NIL */
#define MSGBODY_EBADSECTION (-2)  /* not allowed for BINARY: BAD */
#define MSGBODY_EUNKNOWN_CTE (-3) /* NO [UNKNOWN-CTE] */
#define MSGBODY_ETOOBIG (-4)	  /* result over STR_MAX_LIMIT: NO */

/* Content-Transfer-Encodings. */
enum msgbody_cte {
	MSGBODY_CTE_IDENTITY = 0,	/* none, 7bit, 8bit, binary */
	MSGBODY_CTE_BASE64,
	MSGBODY_CTE_QP,
	MSGBODY_CTE_UNKNOWN,
};

struct msgbody;

/* The data of one FETCH item.  data is valid while the message is open
 * and the result not freed; for BINARY.SIZE data is NULL and size is the
 * decoded size. */
struct msgbody_result {
	const unsigned char *data;
	uint64_t size;		/* bytes of data (after the partial) */
	uint64_t full_size;	/* before the partial */
	bool has_nul;		/* data holds a NUL byte */
	bool missing;		/* MSGBODY_ENOPART: the value is NIL */
	struct str *buf;	/* owned storage of built results, or NULL */
};

/* Maps path, which must be a regular file of exactly size bytes.  set NULL
 * = the default MIME limits (copied).  0 or -1 with a sentence in error. */
int msgbody_open(const char *path, uint64_t size,
		 const struct mime_settings *set, struct msgbody **msg_r,
		 struct str *error) TERN_WUR;
/* A message held in memory (tests, APPEND): data is not copied and must
 * stay valid until msgbody_close(). */
struct msgbody *msgbody_from_memory(const void *data, size_t size,
				    const struct mime_settings *set);
/* Unmaps, closes and frees the tree; sets *msg to NULL. */
void msgbody_close(struct msgbody **msg);

const unsigned char *msgbody_data(const struct msgbody *msg);
uint64_t msgbody_size(const struct msgbody *msg);
/* The MIME tree (parsed now if it was not yet); never NULL. */
const struct mime_part *msgbody_tree(struct msgbody *msg);
/* The top-level header fields only: the whole tree when it is parsed,
 * else a parse of the header alone (up to the first empty line), which
 * is all SEARCH needs for FROM, SUBJECT, HEADER and the like.  Its body
 * ranges mean nothing.  Never NULL. */
const struct mime_part *msgbody_header(struct msgbody *msg);

/* Finds the data of sec.  On MSGBODY_OK and MSGBODY_ENOPART *res_r is
 * filled (free it with msgbody_result_free()); on other statuses it is
 * empty and *error_r says why. */
int msgbody_fetch(struct msgbody *msg, const struct imap_fetch_section *sec,
		  struct msgbody_result *res_r, const char **error_r)
	TERN_WUR;
void msgbody_result_free(struct msgbody_result *res);

/* The part a list of part numbers names (nparts 0 = the message itself),
 * and whether it stands for a message (the root, or the message inside a
 * message/rfc822 part, so HEADER/TEXT apply to it).  NULL when there is no
 * such part. */
const struct mime_part *msgbody_part_find(struct msgbody *msg,
					  const uint32_t *parts,
					  size_t nparts, bool *is_msg_r);

/* The Content-Transfer-Encoding of part (case-insensitive, comments and
 * whitespace ignored; none = identity). */
enum msgbody_cte msgbody_part_cte(const struct mime_part *part);
/* The body of part with its transfer encoding removed (as for BINARY,
 * without partial).  MSGBODY_EUNKNOWN_CTE for an unknown encoding. */
int msgbody_part_content(struct msgbody *msg, const struct mime_part *part,
			 struct msgbody_result *res_r, const char **error_r)
	TERN_WUR;

/* Appends the decoded bytes of in (base64 or quoted-printable; identity
 * copies) to out, whose maximum must allow len more bytes: the output is
 * never longer than the input.  -1 (ENOBUFS) when out is full. */
int msgbody_cte_decode(enum msgbody_cte cte, const void *in, size_t len,
		       struct str *out) TERN_WUR;

/* The literal prefix of a value: "{n}\r\n", or "~{n}\r\n" when binary and
 * the data holds a NUL (RFC 3516 literal8).  For a session that streams the
 * data itself. */
int msgbody_literal_prefix(const struct msgbody_result *res, bool binary,
			   struct str *out) TERN_WUR;
/* The whole value: "NIL" for a missing part, else the prefix and the
 * data. */
int msgbody_write_value(const struct msgbody_result *res, bool binary,
			struct str *out) TERN_WUR;

#endif
