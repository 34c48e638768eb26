/*
 * dir_ldap.h: the value escaping of the LDAP directory backend, exposed
 * for its unit tests (internal to the directory modules).
 *
 * dir_ldap_filter_escape() makes bytes safe inside an LDAP filter value
 * (RFC 4515): '*', '(', ')', '\' and NUL, and also every byte outside
 * printable ASCII, become \XX.  dir_ldap_dn_escape() makes bytes safe as an
 * attribute value in a DN (RFC 4514): '"', '+', ',', ';', '<', '>', '\'
 * and '=' get a backslash, a leading '#' or space and a trailing space
 * too, and NUL and control bytes become \XX.  Both append to out and
 * return -1 when out is full.
 *
 * Searches that may return many entries ask for them in pages (RFC 2696)
 * of DIR_LDAP_PAGE_SIZE, below the usual server limits for one answer
 * (Active Directory's MaxPageSize is 1000), and follow at most
 * DIR_LDAP_PAGES_MAX pages.
 *
 * The LDAP plumbing both LDAP clients of the directory use (dir_ldap.c for
 * Tern's directory, dir_ext.c for an external one): connections with
 * Tern's options, the reconnect backoff, the paged results cookie and the
 * bind password file.
 */
#ifndef TERN_DIR_LDAP_H
#define TERN_DIR_LDAP_H

#include <ldap.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#include "compat.h"
#include "dir.h"
#include "str.h"

#define DIR_LDAP_PAGE_SIZE 500
#define DIR_LDAP_PAGES_MAX 10000

int dir_ldap_filter_escape(struct str *out, const char *value, size_t len)
	TERN_WUR;
int dir_ldap_dn_escape(struct str *out, const char *value, size_t len)
	TERN_WUR;

/* ---- the plumbing ---- */

struct timeval dir_ldap_tv(unsigned ms);
/* ldap_initialize() with Tern's options: LDAPv3, no referrals chased,
 * timeout_ms for the connect and for each operation.  The libldap code;
 * *ld_r NULL when it is not LDAP_SUCCESS. */
int dir_ldap_init(const char *uri, unsigned timeout_ms, LDAP **ld_r);

/* After a failed connect or a timeout no new connection is tried for
 * 100 ms, doubling up to 2 s, so that a hung or dead server costs one
 * timeout per step instead of one per call. */
struct dir_ldap_backoff {
	uint64_t retry_at_ms;	/* monotonic; 0 = connect now */
	unsigned step_ms;
};
void dir_ldap_backoff_failed(struct dir_ldap_backoff *b);
void dir_ldap_backoff_reset(struct dir_ldap_backoff *b);
/* Milliseconds still to wait before a connect, 0 when it may go. */
uint64_t dir_ldap_backoff_wait(const struct dir_ldap_backoff *b);

/* The cookie of the paged results control of a result (malloc'd in
 * *cookie; bv_len 0 when the search is complete or the server does not
 * page).  -1 when the control does not decode. */
int dir_ldap_page_cookie(LDAP *ld, LDAPMessage *res, struct berval *cookie);

/* The first line of a password file, without its line end (malloc'd).
 * what names the file in messages; an unreadable file gives unreadable,
 * an empty one DIR_INVALID. */
enum dir_status dir_ldap_secret_read(const char *path, const char *what,
				     enum dir_status unreadable,
				     char **secret_r, struct str *error)
	TERN_WUR;

#endif
