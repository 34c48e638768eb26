/*
 * tmpdir.h: the private temporary folders of unit tests that work on
 * files (the store, the configuration loaders).  Header only: each test
 * program includes it once.
 */
#ifndef TERN_TEST_TMPDIR_H
#define TERN_TEST_TMPDIR_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Makes $TMPDIR/tern-TAG-XXXXXX (/tmp when TMPDIR is unset or long)
 * into dir (size bytes); NULL on failure. */
static inline char *tmpdir_make(char *dir, size_t size, const char *tag)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(dir, size, "%s/tern-%s-XXXXXX",
		 tmp != NULL && strlen(tmp) < 40 ? tmp : "/tmp", tag);
	return mkdtemp(dir);
}

static inline int tmpdir_rm_entry(const char *path, const struct stat *st,
				  int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Removes dir and everything below it: 0, or -1. */
static inline int tmpdir_remove(const char *dir)
{
	return nftw(dir, tmpdir_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
