/*
 * dir_ext.h: an external directory (Active Directory, or a site's own
 * OpenLDAP) for password checks and the address book, while accounts and
 * Tern's own attributes (status, mail host, quota) stay in Tern's
 * directory (dir.h, either backend).
 *
 * tern-authd opens it (ext_ldap_* options, docs/ldap.md) next to its
 * directory handle and asks it:
 * - dir_ext_authenticate(): finds the user's entry with ext_ldap_user_filter
 *   (exactly one entry, else a failure) over a service connection, then
 *   binds as that entry's DN with the password on a connection of its own;
 * - dir_ext_gal_search(): entries matching ext_ldap_gal_filter, with their
 *   mail, display, given and surname attributes mapped by ext_ldap_attr_*.
 * Searches ask for pages (RFC 2696) so that a server's size limit for one
 * answer does not cut them.  A server that is down or slower than
 * ext_ldap_timeout gives DIR_TEMPFAIL, never a permanent answer; after a
 * failed connect no new one is tried before a backoff of 100 ms doubling to
 * 2 s.  Every call may run on any thread: the service connection is under
 * the handle's own lock.
 *
 * Filter templates: "%u" is the full address, "%l" its local part, "%d"
 * its domain (user filter), "%s" the search text (address book filter),
 * "%%" a '%'.  Every substituted value is escaped (RFC 4515), so that no
 * value can add a wildcard, a parenthesis or a backslash to the filter;
 * wildcards belong in the template.  Any other "%x", or a '%' at the end,
 * is an error; the result is at most DIR_EXT_FILTER_MAX bytes.
 */
#ifndef TERN_DIR_EXT_H
#define TERN_DIR_EXT_H

#include <stdbool.h>
#include <stddef.h>

#include "compat.h"
#include "dir.h"
#include "str.h"

#define DIR_EXT_TEMPLATE_MAX 1024	/* bytes of a filter template */
#define DIR_EXT_FILTER_MAX 4096		/* bytes of a filter made from one */

/* The values a template may use; NULL = not available here (its "%x" is
 * an error). */
struct dir_ext_vars {
	const char *u, *l, *d, *s;
};

/* Fills out with tmpl, its "%x" replaced by the escaped values: DIR_OK, or
 * DIR_INVALID with the reason in error. */
enum dir_status dir_ext_template(const char *tmpl,
				 const struct dir_ext_vars *vars,
				 struct str *out, struct str *error) TERN_WUR;

struct dir_ext_settings {
	const char *uri;		/* one or more, space-separated */
	const char *base_dn;
	const char *bind_dn;		/* "" = anonymous */
	const char *bind_password_file;	/* its first line */
	unsigned timeout_ms;
	bool starttls;			/* ldap:// then STARTTLS */
	const char *ca_file;		/* "" or NULL: the system's CAs */
	const char *user_filter, *gal_filter;
	const char *attr_mail, *attr_display_name, *attr_given_name,
		   *attr_surname;
	bool auth, gal;			/* what it is used for */
};

struct dir_ext;
struct cfg;

/* Checks the settings (templates, attribute names) and reads the
 * password; no connection is made here. */
enum dir_status dir_ext_open(const struct dir_ext_settings *set,
			     struct dir_ext **ext_r, struct str *error)
	TERN_WUR;
/* The external directory tern.conf names (dir_config.c): *ext_r NULL when
 * neither ext_ldap_auth nor ext_ldap_gal is on. */
enum dir_status dir_ext_open_config(const struct cfg *cfg,
				    struct dir_ext **ext_r, struct str *error)
	TERN_WUR;
void dir_ext_close(struct dir_ext **ext);
/* ext_ldap_auth and ext_ldap_gal (false for NULL). */
bool dir_ext_auth(const struct dir_ext *ext);
bool dir_ext_gal(const struct dir_ext *ext);
/* For log lines: the URI. */
const char *dir_ext_describe(const struct dir_ext *ext);

/* The password of a normalized address: DIR_OK when the external
 * directory accepts it; DIR_NOTFOUND when no entry or more than one
 * matches the user filter; DIR_AUTHFAIL for a wrong or empty password;
 * DIR_TEMPFAIL when the server is down, slow or refuses the service
 * bind. */
enum dir_status dir_ext_authenticate(struct dir_ext *ext, const char *address,
				     const char *password, struct str *error)
	TERN_WUR;

/* Address book entries (DIR_GAL_ACCOUNT) matching text: at most limit
 * (1 to DIR_GAL_LIMIT_MAX), unsorted; entries without a valid mail
 * address are left out.  text is checked by the caller (dir_gal_search()
 * rules). */
enum dir_status dir_ext_gal_search(struct dir_ext *ext, const char *text,
				   size_t limit,
				   struct dir_gal_entry ***list_r,
				   size_t *count_r, struct str *error)
	TERN_WUR;

#endif
