/*
 * netlist.h: lists of IP networks (mynetworks of the MTA, the networks a
 * mailbox server trusts for proxy logins) and the client-address test.
 *
 * Entries are "192.0.2.0/24", "2001:db8::/32" or a single address
 * ("127.0.0.1", "::1"); a client reported as IPv4 (conn.h turns
 * IPv4-mapped IPv6 addresses into IPv4) matches the IPv4 entries.  Bad
 * entries are skipped and reported through warn.  Limits: NETLIST_MAX
 * entries.  Callers: tern-smtpd, tern-imapd, tern-popd.
 */
#ifndef TERN_NETLIST_H
#define TERN_NETLIST_H

#include <stdbool.h>
#include <stddef.h>

#include "compat.h"

#define NETLIST_MAX 1024

struct netlist;

struct netlist *netlist_new(const char *const *items, size_t count,
			    void (*warn)(const char *entry));
void netlist_free(struct netlist **nl);
/* addr: a textual IPv4 or IPv6 address; false for "unix", NULL lists and
 * anything that is not an address. */
bool netlist_match(const struct netlist *nl, const char *addr);

#endif
