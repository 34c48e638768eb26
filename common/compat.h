/*
 * compat.h: attributes and banned functions shared by every Tern source file.
 *
 * Include first in every .c file (after config.h).  It defines the attribute
 * macros of our error vocabulary and poisons the unbounded string functions
 * so that they cannot creep back in.
 */
#ifndef TERN_COMPAT_H
#define TERN_COMPAT_H

#include <stddef.h>

#define TERN_WUR __attribute__((warn_unused_result))
#define TERN_NORETURN __attribute__((noreturn))
#define TERN_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define TERN_UNUSED __attribute__((unused))
#define TERN_NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Included before the poison so system headers that mention them still parse. */
#include <stdio.h>
#include <string.h>

/* clang refuses to poison names FORTIFY_SOURCE defines as macros. */
#if !defined(TERN_NO_POISON) && !(defined(__clang__) && defined(_FORTIFY_SOURCE))
#pragma GCC poison strcpy strcat sprintf vsprintf gets
#endif

#endif
