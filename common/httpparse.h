/*
 * httpparse.h: the HTTP/1.x message head parser and the chunked body
 * scanner, as far as a proxy needs them to frame messages (RFC 9110,
 * RFC 9112).
 *
 * Pure and resumable, no I/O: tern-proxyd feeds bytes split at any point.
 * A parser takes either request heads or response heads.  It copies the
 * head into its own buffer (HTTP_HEAD_MIN bytes at first, grown as a head
 * needs, at most head_max bytes) and, at the empty line, checks it whole: the start line,
 * each field line and the fields that decide framing.  The body is never
 * touched: the caller reads http_head's framing and moves body bytes
 * itself (counting Content-Length, or with an http_chunked scanner).
 *
 * Strict on purpose (a proxy that reads a message differently from the
 * server behind it lets one request hide inside another): every line ends
 * in CRLF (a bare LF or CR is an error), obsolete line folding, whitespace
 * before a field's colon, control characters, a Content-Length that is not
 * digits, several different Content-Lengths, Content-Length together with
 * Transfer-Encoding in a request, a request Transfer-Encoding whose last
 * coding is not chunked (or any in HTTP/1.0), and versions other than
 * HTTP/1.0 and 1.1 are all errors.  Errors carry the status a server
 * answers with: 400, 431 (head larger than head_max or more than
 * headers_max fields) or 505 (another HTTP version).
 *
 * Limits: head_max (HTTP_HEAD_MIN..HTTP_HEAD_MAX) bytes of head,
 * headers_max (1..HTTP_HEADERS_MAX) field lines; chunk sizes below 2^60,
 * chunk-size lines and trailer lines HTTP_CHUNK_LINE_MAX bytes, trailers
 * HTTP_TRAILER_MAX bytes in all.
 *
 * Callers: tern-proxyd's HTTP front end (proxyd/http.c).
 */
#ifndef TERN_HTTPPARSE_H
#define TERN_HTTPPARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compat.h"

#define HTTP_HEAD_MIN 1024
#define HTTP_HEAD_MAX (1024 * 1024)
#define HTTP_HEADERS_MAX 1000
#define HTTP_CHUNK_LINE_MAX 4096
#define HTTP_TRAILER_MAX 16384

enum http_kind {
	HTTP_REQUEST,
	HTTP_RESPONSE,
};

/* How the body after a head ends. */
enum http_body {
	HTTP_BODY_NONE,		/* no body */
	HTTP_BODY_LENGTH,	/* content_length bytes */
	HTTP_BODY_CHUNKED,	/* chunked coding, scanned with http_chunked */
	HTTP_BODY_CLOSE,	/* responses: until the connection closes */
};

/* One field line: name and value point into the parser's buffer (the
 * value without surrounding whitespace), NUL-terminated. */
struct http_field {
	const char *name;
	const char *value;
	size_t name_len, value_len;
};

/* A complete head, valid until the next feed or reset. */
struct http_head {
	/* Requests: the method and the request target as sent. */
	const char *method;
	const char *target;
	/* Responses: the status code and reason phrase. */
	unsigned status;
	const char *reason;
	unsigned minor;			/* HTTP/1.minor */
	const struct http_field *fields;
	size_t nfields;
	/* Framing. */
	enum http_body body;
	uint64_t content_length;	/* HTTP_BODY_LENGTH */
	bool keep_alive;		/* version and Connection allow it */
	bool has_transfer_encoding;	/* responses: CL was then ignored */
	bool expect_continue;		/* requests: Expect: 100-continue */
	size_t head_len;		/* bytes of head consumed in all */
};

struct http_parser;

/* head_max and headers_max are clamped to the limits above. */
struct http_parser *http_parser_new(enum http_kind kind, size_t head_max,
				    size_t headers_max);
void http_parser_free(struct http_parser **p);

/* Ready for the next head.  Responses: head_request says the request was
 * HEAD, so that no body follows whatever the fields say (as for 1xx, 204
 * and 304, which the parser knows itself). */
void http_parser_reset(struct http_parser *p, bool head_request);

/*
 * Takes bytes from *pos up to end, advancing *pos over what it used: 1
 * when a head is complete (*pos just after its empty line; the head is in
 * *head_r), 0 when all input was taken and more is needed, -1 on an error
 * (*status_r 400, 431 or 505 and *error_r a short text; *pos unspecified).
 * After 1 or -1 the parser must be reset before it is fed again.
 */
int http_parser_feed(struct http_parser *p, const char **pos,
		     const char *end, const struct http_head **head_r,
		     unsigned *status_r, const char **error_r) TERN_WUR;

/* The first field named name (any case) or NULL. */
const struct http_field *http_head_field(const struct http_head *h,
					 const char *name);
/* Whether a comma-separated field value holds token (any case). */
bool http_list_has(const char *value, size_t len, const char *token);

/* Scans a chunked body (chunks, the last chunk, trailers, the final
 * CRLF) so that it can be passed on as it is. */
struct http_chunked {
	int state;
	uint64_t left;		/* data bytes left in the chunk */
	size_t line;		/* bytes of the current size/trailer line */
	size_t trailer;		/* bytes of trailers so far */
	unsigned digits;
};

void http_chunked_init(struct http_chunked *c);
/*
 * Takes up to len bytes: 1 when the body ended (*used_r bytes of data were
 * its end; the rest belongs to what follows), 0 when all len bytes were
 * used and more are needed, -1 on a framing error (*error_r).
 */
int http_chunked_feed(struct http_chunked *c, const char *data, size_t len,
		      size_t *used_r, const char **error_r) TERN_WUR;

#endif
