/* compress.c: see compress.h. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "compat.h"
#include "compress.h"
#include "conn.h"
#include "str.h"
#include "xalloc.h"

#define CHUNK 16384

struct compress {
	z_stream in, out;
	struct str *pending;	/* compressed input not inflated yet */
	bool dirty;		/* output since the last flush */
};

struct compress *compress_new(void)
{
	struct compress *z = xcalloc(1, sizeof(*z));

	/* Negative window bits: raw deflate, as RFC 4978 says. */
	if (inflateInit2(&z->in, -15) != Z_OK ||
	    deflateInit2(&z->out, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8,
			 Z_DEFAULT_STRATEGY) != Z_OK)
		abort();
	z->pending = str_new(CHUNK, COMPRESS_INPUT_MAX);
	return z;
}

void compress_free(struct compress **zp)
{
	struct compress *z = *zp;

	if (z == NULL)
		return;
	inflateEnd(&z->in);
	deflateEnd(&z->out);
	str_free(&z->pending);
	free(z);
	*zp = NULL;
}

int compress_feed(struct compress *z, const void *data, size_t len)
{
	return str_append(z->pending, data, len);
}

bool compress_pending(const struct compress *z)
{
	return str_len(z->pending) > 0;
}

int compress_inflate(struct compress *z, struct str *out)
{
	unsigned char buf[CHUNK];
	size_t used = 0;
	int r;

	while (used < str_len(z->pending) && str_room(out) > 0) {
		size_t room = str_room(out) < sizeof(buf) ? str_room(out) :
							    sizeof(buf);

		z->in.next_in = (unsigned char *)str_data(z->pending) + used;
		z->in.avail_in = (uInt)(str_len(z->pending) - used);
		z->in.next_out = buf;
		z->in.avail_out = (uInt)room;
		r = inflate(&z->in, Z_SYNC_FLUSH);
		if (r != Z_OK && r != Z_BUF_ERROR && r != Z_STREAM_END)
			return -1;
		used = str_len(z->pending) - z->in.avail_in;
		if (room - z->in.avail_out > 0 &&
		    str_append(out, buf, room - z->in.avail_out) < 0)
			return -1;
		if (r == Z_BUF_ERROR || r == Z_STREAM_END)
			break;	/* nothing more can be done now */
		if (z->in.avail_out != 0 && z->in.avail_in == 0)
			break;
	}
	str_consume(z->pending, used);
	return 0;
}

static int deflate_run(struct compress *z, struct conn *c, int flush)
{
	unsigned char buf[CHUNK];

	do {
		z->out.next_out = buf;
		z->out.avail_out = sizeof(buf);
		if (deflate(&z->out, flush) == Z_STREAM_ERROR)
			return -1;
		if (sizeof(buf) - z->out.avail_out > 0 &&
		    conn_write(c, buf, sizeof(buf) - z->out.avail_out) < 0)
			return -1;
	} while (z->out.avail_out == 0);
	return 0;
}

int compress_write(struct compress *z, struct conn *c, const void *data,
		   size_t len)
{
	z->out.next_in = (unsigned char *)(uintptr_t)data;
	z->out.avail_in = (uInt)len;
	z->dirty = true;
	return deflate_run(z, c, Z_NO_FLUSH);
}

void compress_flush(struct compress *z, struct conn *c)
{
	if (!z->dirty)
		return;
	z->dirty = false;
	z->out.next_in = NULL;
	z->out.avail_in = 0;
	(void)deflate_run(z, c, Z_SYNC_FLUSH);
}
