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
 */
#ifndef TERN_DIR_LDAP_H
#define TERN_DIR_LDAP_H

#include <stddef.h>

#include "compat.h"
#include "str.h"

#define DIR_LDAP_PAGE_SIZE 500
#define DIR_LDAP_PAGES_MAX 10000

int dir_ldap_filter_escape(struct str *out, const char *value, size_t len)
	TERN_WUR;
int dir_ldap_dn_escape(struct str *out, const char *value, size_t len)
	TERN_WUR;

#endif
