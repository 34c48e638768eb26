/*
 * dir_config.c: opens the directory backend that tern.conf names
 * (directory_backend and the directory_file or ldap_* options), for
 * tern-authd and ternctl.
 *
 * Opened read-only (tern-authd), the LDAP backend binds as
 * ldap_authd_bind_dn when it is set, else as ldap_bind_dn (ternctl's).
 *
 * An empty ldap_uri means the bundled slapd that `ternctl setup
 * --directory=ldap` creates: ldapi:// on run/ldapi under the instance root,
 * with the path percent-encoded as RFC 4516 URLs want it.  Opened for
 * writing (ternctl), the LDAP backend goes to ldap_write_uri when it is
 * set: the provider of a replica, whose own slapd refuses writes.
 *
 * The external directory (ext_ldap_*, dir_ext.h) is opened here too when
 * ext_ldap_auth or ext_ldap_gal is on: by dir_ext_open_config() for
 * tern-authd, and given to the handles that may write (ternctl's).
 */
#include "config.h"

#include "compat.h"

#include <stdlib.h>

#include "cfg.h"
#include "dir.h"
#include "dir_ext.h"
#include "xalloc.h"

#define DIR_URI_MAX 4096

/* ldapi://ROOT/run/ldapi with every byte but unreserved ones as %XX. */
char *dir_ldap_bundled_uri(const char *root)
{
	static const char hex[] = "0123456789ABCDEF";
	struct str *path = str_new(128, DIR_URI_MAX);
	struct str *s = str_new(128, DIR_URI_MAX * 3);
	int r2;
	char *r;

	r2 = str_append_c(path, root) < 0 ? -1 :
	     str_append_c(path, "/run/ldapi");
	if (r2 == 0)
		r2 = str_append_c(s, "ldapi://");
	for (const char *p = str_c(path); r2 == 0 && *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;
		char esc[3] = { '%', hex[c >> 4], hex[c & 15] };

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		    c == '_' || c == '~')
			r2 = str_append(s, p, 1);
		else
			r2 = str_append(s, esc, sizeof(esc));
	}
	r = xstrdup(str_c(s));
	str_free(&path);
	str_free(&s);
	return r;
}

static char *uri_of(const struct cfg *cfg, bool readonly)
{
	const char *uri = cfg_str(cfg, OPT_LDAP_URI);

	if (!readonly && cfg_str(cfg, OPT_LDAP_WRITE_URI)[0] != '\0')
		uri = cfg_str(cfg, OPT_LDAP_WRITE_URI);
	if (uri[0] != '\0')
		return xstrdup(uri);
	return dir_ldap_bundled_uri(cfg_root(cfg));
}

char *dir_config_describe(const struct cfg *cfg)
{
	if (cfg_enum(cfg, OPT_DIRECTORY_BACKEND) == DIR_BACKEND_LDAP)
		return uri_of(cfg, true);
	return xstrdup(cfg_str(cfg, OPT_DIRECTORY_FILE));
}

/* The backend alone. */
static enum dir_status open_backend(const struct cfg *cfg, bool readonly,
				    struct dir **dir_r, struct str *error)
{
	struct dir_ldap_settings set;
	enum dir_status st;
	char *uri;

	if (cfg_enum(cfg, OPT_DIRECTORY_BACKEND) != DIR_BACKEND_LDAP)
		return dir_open_sqlite(cfg_str(cfg, OPT_DIRECTORY_FILE),
				       readonly, dir_r, error);
	uri = uri_of(cfg, readonly);
	set.uri = uri;
	set.base_dn = cfg_str(cfg, OPT_LDAP_BASE_DN);
	set.bind_dn = cfg_str(cfg, OPT_LDAP_BIND_DN);
	set.bind_password_file = cfg_str(cfg, OPT_LDAP_BIND_PASSWORD_FILE);
	/* tern-authd only reads: with its own DN when one is set. */
	if (readonly && cfg_str(cfg, OPT_LDAP_AUTHD_BIND_DN)[0] != '\0') {
		set.bind_dn = cfg_str(cfg, OPT_LDAP_AUTHD_BIND_DN);
		set.bind_password_file =
			cfg_str(cfg, OPT_LDAP_AUTHD_BIND_PASSWORD_FILE);
	}
	set.timeout_ms = (unsigned)cfg_duration(cfg, OPT_LDAP_TIMEOUT);
	set.auth_bind = cfg_enum(cfg, OPT_LDAP_AUTH) == 1;
	st = dir_open_ldap(&set, readonly, dir_r, error);
	free(uri);
	return st;
}

enum dir_status dir_open_config(const struct cfg *cfg, bool readonly,
				struct dir **dir_r, struct str *error)
{
	struct dir_ext *ext = NULL;
	enum dir_status st;

	st = open_backend(cfg, readonly, dir_r, error);
	if (st != DIR_OK || readonly)
		return st;
	st = dir_ext_open_config(cfg, &ext, error);
	if (st != DIR_OK) {
		dir_close(dir_r);
		return st;
	}
	dir_set_ext(*dir_r, ext);
	return DIR_OK;
}

enum dir_status dir_ext_open_config(const struct cfg *cfg,
				    struct dir_ext **ext_r, struct str *error)
{
	struct dir_ext_settings set = {
		.uri = cfg_str(cfg, OPT_EXT_LDAP_URI),
		.base_dn = cfg_str(cfg, OPT_EXT_LDAP_BASE_DN),
		.bind_dn = cfg_str(cfg, OPT_EXT_LDAP_BIND_DN),
		.bind_password_file =
			cfg_str(cfg, OPT_EXT_LDAP_BIND_PASSWORD_FILE),
		.timeout_ms = (unsigned)cfg_duration(cfg, OPT_EXT_LDAP_TIMEOUT),
		.starttls = cfg_bool(cfg, OPT_EXT_LDAP_STARTTLS),
		.ca_file = cfg_str(cfg, OPT_EXT_LDAP_CA_FILE),
		.user_filter = cfg_str(cfg, OPT_EXT_LDAP_USER_FILTER),
		.gal_filter = cfg_str(cfg, OPT_EXT_LDAP_GAL_FILTER),
		.attr_mail = cfg_str(cfg, OPT_EXT_LDAP_ATTR_MAIL),
		.attr_display_name =
			cfg_str(cfg, OPT_EXT_LDAP_ATTR_DISPLAY_NAME),
		.attr_given_name = cfg_str(cfg, OPT_EXT_LDAP_ATTR_GIVEN_NAME),
		.attr_surname = cfg_str(cfg, OPT_EXT_LDAP_ATTR_SURNAME),
		.auth = cfg_bool(cfg, OPT_EXT_LDAP_AUTH),
		.gal = cfg_bool(cfg, OPT_EXT_LDAP_GAL),
	};

	*ext_r = NULL;
	if (!set.auth && !set.gal)
		return DIR_OK;
	return dir_ext_open(&set, ext_r, error);
}
