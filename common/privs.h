/*
 * privs.h: giving up root for the unprivileged daemon account.
 *
 * privs_drop() switches the process to the account named by the user
 * option ("tern") when it runs as root: supplementary groups, group, then
 * user, and checks that root cannot be regained.  Nothing happens when the
 * process is not root or user is empty.  Callers: the service skeleton
 * after opening what needs root, and ternctl before it touches files the
 * daemons own (the directory database, the store).
 */
#ifndef TERN_PRIVS_H
#define TERN_PRIVS_H

#include "compat.h"
#include "str.h"

/* 0, or -1 with a message for the administrator in error. */
int privs_drop(const char *user, struct str *error) TERN_WUR;

#endif
