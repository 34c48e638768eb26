/*
 * paths.h: where Tern's files and programs are.
 *
 * path_join() builds "ROOT/REL" for files of an instance root.
 * path_find_program() finds one of Tern's programs (tern-master, daemons):
 * in each folder of TERN_LIBEXECDIR (a colon-separated list, so tests can
 * run from a build tree), else in the libexec folder chosen at configure
 * time.  Callers: tern-master, ternctl, the service skeleton.
 */
#ifndef TERN_PATHS_H
#define TERN_PATHS_H

#include "compat.h"

/* malloc'd "root/rel"; aborts when it would pass PATH_JOIN_MAX. */
#define PATH_JOIN_MAX 4096
char *path_join(const char *root, const char *rel);
/* malloc'd path of an executable, or NULL when none is found. */
char *path_find_program(const char *name);
/* The folders path_find_program() searches, for messages. */
const char *path_libexec_dirs(void);

#endif
