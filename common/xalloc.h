/*
 * xalloc.h: allocation that cannot fail.
 *
 * Tern treats running out of memory as fatal: these wrappers abort instead
 * of returning NULL, so callers never carry half-handled ENOMEM paths.
 * Bounds on what peers can make us allocate are enforced before we get here
 * (struct str maxima, parser limits).  Callers: everything.
 */
#ifndef TERN_XALLOC_H
#define TERN_XALLOC_H

#include <stddef.h>

#include "compat.h"

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#endif
