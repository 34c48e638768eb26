/*
 * compress.h: COMPRESS=DEFLATE (RFC 4978) for an IMAP session: raw
 * deflate (no zlib or gzip header) both ways over the connection.
 *
 * Input: compressed bytes are taken as they come (compress_feed, at most
 * COMPRESS_INPUT_MAX waiting) and inflated only while the session's input
 * buffer has room (compress_inflate), so a small packet that inflates to a
 * lot never makes us hold more than that buffer: the rest waits, still
 * compressed, and the session stops reading from the socket meanwhile.
 * Output: compress_write deflates into the connection; compress_flush ends
 * a batch with a sync flush so the client sees every response at once.
 *
 * Callers: session.c.
 */
#ifndef TERN_IMAPD_COMPRESS_H
#define TERN_IMAPD_COMPRESS_H

#include <stdbool.h>
#include <stddef.h>

#include "compat.h"

#define COMPRESS_INPUT_MAX (1024 * 1024)

struct compress;
struct conn;
struct str;

struct compress *compress_new(void);
void compress_free(struct compress **z);

/* Compressed input, copied: -1 when more than COMPRESS_INPUT_MAX would
 * wait. */
int compress_feed(struct compress *z, const void *data, size_t len)
	TERN_WUR;
bool compress_pending(const struct compress *z);
/* Inflates waiting input into out while out has room: 0, or -1 for
 * corrupt data. */
int compress_inflate(struct compress *z, struct str *out) TERN_WUR;

/* Deflates data onto the connection: 0, or -1 when the connection refused
 * it. */
int compress_write(struct compress *z, struct conn *c, const void *data,
		   size_t len) TERN_WUR;
/* Ends a batch of output (Z_SYNC_FLUSH). */
void compress_flush(struct compress *z, struct conn *c);

#endif
