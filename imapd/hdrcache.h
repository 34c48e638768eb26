/*
 * hdrcache.h: the top-level headers of messages, kept in memory by
 * tern-imapd for SEARCH on header keys (FROM, SUBJECT, HEADER, SENT*).
 *
 * Message files are immutable, so a header read once stays right for as
 * long as the file exists; the key is the blob's path.  A SEARCH over a
 * folder then costs no open, mmap or munmap per message after the first
 * time, only the header parse.  Bounded: HDRCACHE_BYTES of headers per
 * process (the oldest go first) and HDRCACHE_HEADER_MAX per message (a
 * longer header is not cached: the caller reads the file).
 *
 * Callers: msgcmd.c (loop thread only).
 */
#ifndef TERN_IMAPD_HDRCACHE_H
#define TERN_IMAPD_HDRCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "compat.h"

#define HDRCACHE_BYTES ((size_t)32 << 20)
#define HDRCACHE_HEADER_MAX ((size_t)64 << 10)

/*
 * The header of the message file at path (size bytes): from the cache,
 * or read now (up to and including its empty line) and kept.  NULL when
 * the file cannot be read or its header is longer than
 * HDRCACHE_HEADER_MAX.  The data stays valid until the next call.
 */
const char *hdrcache_get(const char *path, uint64_t size, size_t *len_r);
/* Frees everything (at exit). */
void hdrcache_clear(void);
/* Another bound than HDRCACHE_BYTES (tests). */
void hdrcache_set_limit(size_t bytes);

#endif
