/*
 * fsutil.h: durable file helpers, the one written durability protocol.
 *
 * A file that must survive a crash is written to a temporary file in the
 * same folder (created exclusively), fully written, fsynced, then moved to
 * its name with rename() (replacing) or link() (never replacing: an existing
 * file wins and is kept), and finally the folder itself is fsynced so the
 * new name is on disk too.  Recovery may then treat a file as either
 * absent or complete, never torn.
 *
 * Callers: tern-stored (blob.c), the certificate writer (tlsgen.c),
 * `ternctl setup`.  Every call blocks: never on an event loop thread.
 * Errors: -1 with a sentence in error (may be NULL) and errno kept from the
 * failing call.
 */
#ifndef TERN_FSUTIL_H
#define TERN_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

#include "compat.h"
#include "str.h"

#define FSUTIL_REPLACE 0x1	/* rename over an existing file */

/* fsyncs the folder dir. */
int fsutil_sync_dir(const char *dir, struct str *error) TERN_WUR;
/* fsyncs the folder that holds path ("." for a bare name). */
int fsutil_sync_parent(const char *path, struct str *error) TERN_WUR;

/* write() of all len bytes, restarting after EINTR and short writes. */
int fsutil_write_all(int fd, const void *data, size_t len) TERN_WUR;

/* Writes data as the file path, durably, with mode (umask not applied).
 * Without FSUTIL_REPLACE an existing path is kept: -1 with errno EEXIST and
 * nothing changed.  The temporary file never outlives a failure. */
int fsutil_write_file(const char *path, const void *data, size_t len,
		      mode_t mode, unsigned flags, struct str *error)
	TERN_WUR;

#endif
