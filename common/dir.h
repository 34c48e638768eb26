/*
 * dir.h: the directory interface: domains, accounts, aliases, distribution
 * lists, classes of service, recipient resolution and authentication.
 *
 * One interface, two backends chosen by directory_backend: the embedded
 * SQLite backend (dir_sqlite.c, the default: data/directory.db in WAL
 * mode) and OpenLDAP with Tern's schema (dir_ldap.c, ldap-schema/); dir.c
 * dispatches every call through the handle's table (dir_backend.h).
 * tern-authd is the only daemon that opens the directory; ternctl
 * writes through the same backend code; every other daemon asks tern-authd
 * (authclient.h).  Records returned by the getters are owned by the caller
 * and freed with the matching *_free().
 *
 * Addresses: "local@domain".  Domains are stored in their IDNA A-label form
 * (xn--...), lower case; local parts compare case-insensitively (stored
 * lower case).  dir_address_normalize() is the one place that does this.
 * Plus-addressing: "user+tag@domain" resolves like "user@domain", with the
 * tag reported separately.
 *
 * Errors: every call returns a dir_status; on anything but DIR_OK a
 * one-line message for the administrator is in error (when non-NULL).
 * DIR_TEMPFAIL means "try again later" (database busy or unreachable): the
 * callers turn it into 4xx replies, never bounces.
 */
#ifndef TERN_DIR_H
#define TERN_DIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compat.h"
#include "str.h"

#define DIR_ADDRESS_MAX 320	/* 64 + 1 + 255 */
#define DIR_NAME_MAX 256	/* display names, cos names, mail hosts */
#define DIR_LIST_DEPTH_MAX 16	/* nested lists followed at most */
#define DIR_EXPAND_MAX 10000	/* addresses one resolution may yield */

enum dir_status {
	DIR_OK = 0,
	DIR_NOTFOUND,		/* no such domain/account/alias/list/cos */
	DIR_EXISTS,		/* the name is taken */
	DIR_INVALID,		/* bad input: malformed address, bad value */
	DIR_REFUSED,		/* not allowed now (domain not empty, ...) */
	DIR_AUTHFAIL,		/* wrong password, or no such account */
	DIR_TEMPFAIL,		/* backend unavailable or busy: retry */
};

const char *dir_status_name(enum dir_status st);

enum dir_account_status {
	DIR_ACCOUNT_ACTIVE = 0,
	DIR_ACCOUNT_LOCKED,	/* no login; LMTP refuses mail (550 5.2.1) */
	DIR_ACCOUNT_CLOSED,	/* no login, mail refused */
};

const char *dir_account_status_name(enum dir_account_status st);
int dir_account_status_parse(const char *name, enum dir_account_status *r)
	TERN_WUR;

struct dir_cos {
	char *name;
	uint64_t quota;			/* bytes, 0 = unlimited */
	uint64_t max_message_size;	/* bytes, 0 = the server's limit */
	uint32_t max_recipients;	/* per message, 0 = the server's limit */
};

struct dir_domain {
	char *name;		/* A-label, lower case */
	char *cos;		/* default class of service for new accounts */
	char *catchall;		/* address receiving unknown local parts, or NULL */
	uint64_t default_quota;	/* bytes, 0 = from the cos */
	uint32_t accounts;	/* count, filled by get and list */
};

struct dir_account {
	int64_t id;		/* stable, never reused */
	char *address;		/* normalized */
	char *display_name;
	char *password_hash;	/* "$argon2id$..." or "$6$..."; NULL = no login */
	uint64_t quota;		/* bytes, 0 = from the cos (see effective) */
	uint64_t quota_effective;
	enum dir_account_status status;
	char *mailhost;		/* the mailbox server holding it */
	char *cos;
	int64_t created;	/* unix time */
};

struct dir_alias {
	char *address;		/* the alias */
	char *target;		/* an account, a list or an external address */
};

struct dir_list_info {
	char *address;
	char **members;		/* NULL-terminated: accounts, lists, externals */
	size_t nmembers;
};

/* Where mail for one address goes, after aliases, lists and catch-all. */
enum dir_target_kind {
	DIR_TARGET_ACCOUNT,	/* a local account: deliver to its mailhost */
	DIR_TARGET_EXTERNAL,	/* an address in no local domain: relay */
};

struct dir_target {
	enum dir_target_kind kind;
	char *address;		/* the account's or the external address */
	char *mailhost;		/* accounts only */
	enum dir_account_status status;	/* accounts only */
	int64_t account_id;	/* accounts only */
};

struct dir_resolution {
	bool local_domain;	/* the address's domain is one of ours */
	char *detail;		/* the "+tag" of user+tag@, or NULL */
	struct dir_target *targets;	/* unique, in first-seen order */
	size_t ntargets;
};

struct dir;

/* ---- opening ---- */

/* The embedded backend: path to the SQLite file, created with the schema
 * when missing.  readonly: never write (tern-authd opens it so). */
enum dir_status dir_open_sqlite(const char *path, bool readonly,
				struct dir **dir_r, struct str *error)
	TERN_WUR;
/* The LDAP backend (dir_ldap.c, docs/ldap.md).  uri: one or more LDAP
 * URIs, space-separated (ldapi://, ldap://); bind_dn NULL or "" = SASL
 * EXTERNAL (ldapi only), else a simple bind with the password read from
 * bind_password_file (its first line).  No connection is made here for
 * readonly (the first call connects); otherwise the server is reached and
 * the entries Tern needs under base_dn are created when missing.  A
 * server that is down or slower than timeout_ms gives DIR_TEMPFAIL. */
struct dir_ldap_settings {
	const char *uri;
	const char *base_dn;
	const char *bind_dn;
	const char *bind_password_file;
	unsigned timeout_ms;
	bool auth_bind;		/* ldap_auth = bind (dir_auth_by_bind()) */
};
enum dir_status dir_open_ldap(const struct dir_ldap_settings *set,
			      bool readonly, struct dir **dir_r,
			      struct str *error) TERN_WUR;
/* The backend tern.conf names (directory_backend and its options); the
 * values of directory_backend as cfg_enum() gives them.  readonly (what
 * tern-authd opens) binds to LDAP as ldap_authd_bind_dn when it is set. */
enum dir_backend_kind { DIR_BACKEND_SQLITE = 0, DIR_BACKEND_LDAP = 1 };
struct cfg;
enum dir_status dir_open_config(const struct cfg *cfg, bool readonly,
				struct dir **dir_r, struct str *error)
	TERN_WUR;
/* The bundled slapd's URI: ldapi:// with ROOT/run/ldapi percent-encoded
 * (malloc'd). */
char *dir_ldap_bundled_uri(const char *root);
/* What dir_open_config() opens, for log lines: a path or the LDAP URI
 * (malloc'd). */
char *dir_config_describe(const struct cfg *cfg);
void dir_close(struct dir **dir);
/* A read-only LDAP handle remembers the domains and classes of service it
 * read (their catch-all and quotas: every lookup needs them) until this
 * is called: tern-authd calls it when the directory serial moves, as it
 * clears its own cache.  Writes through a handle forget too. */
void dir_forget(struct dir *dir);
/* "sqlite" or "ldap". */
const char *dir_backend_name(const struct dir *dir);
/* Gives dir an external directory (dir_ext.h; NULL = none), closed with
 * it: dir_gal_search() then merges its entries (ext_ldap_gal) and
 * dir_authenticate() checks passwords with it (ext_ldap_auth).
 * dir_open_config() does this for handles that may write (ternctl's);
 * tern-authd keeps its own, to call it outside its directory lock. */
struct dir_ext;
void dir_set_ext(struct dir *dir, struct dir_ext *ext);

/* A number that changes whenever anything in the directory changes, from
 * any process: caches compare it (tern-authd polls it) to invalidate. */
enum dir_status dir_serial(struct dir *dir, uint64_t *serial_r,
			   struct str *error) TERN_WUR;

/* ---- addresses and passwords (no backend needed) ---- */

/* Lower-cases the local part, converts the domain to its A-label; checks
 * the syntax (dot-atom local part, up to 64 bytes; a valid domain).  With
 * detail_r, splits "user+tag" into "user" and "tag" (NULL when none). */
enum dir_status dir_address_normalize(const char *in, struct str *out,
				      char **detail_r, struct str *error)
	TERN_WUR;
enum dir_status dir_domain_normalize(const char *in, struct str *out,
				     struct str *error) TERN_WUR;
/* argon2id with a random 16-byte salt, in the PHC string format. */
enum dir_status dir_password_hash(const char *password, struct str *out,
				  struct str *error) TERN_WUR;
/* The same for a random machine secret of at least DIR_SECRET_MIN bytes
 * (the service DNs' passwords): one pass over 256 KiB, since guessing
 * such a secret is hopeless anyway and every bind pays the cost. */
#define DIR_SECRET_MIN 32
enum dir_status dir_secret_hash(const char *secret, struct str *out,
				struct str *error) TERN_WUR;
/* true when password matches an argon2id, argon2i or SHA512-crypt hash.
 * Constant-time for a given hash. */
bool dir_password_verify(const char *password, const char *hash);

/* ---- classes of service ---- */

enum dir_status dir_cos_add(struct dir *dir, const struct dir_cos *cos,
			    struct str *error) TERN_WUR;
enum dir_status dir_cos_set(struct dir *dir, const struct dir_cos *cos,
			    struct str *error) TERN_WUR;
enum dir_status dir_cos_del(struct dir *dir, const char *name,
			    struct str *error) TERN_WUR;
enum dir_status dir_cos_get(struct dir *dir, const char *name,
			    struct dir_cos **cos_r, struct str *error) TERN_WUR;
enum dir_status dir_cos_list(struct dir *dir, struct dir_cos ***list_r,
			     size_t *count_r, struct str *error) TERN_WUR;
void dir_cos_free(struct dir_cos **cos);
/* Frees an array from dir_cos_list() with its records. */
void dir_cos_array_free(struct dir_cos ***list, size_t count);

/* ---- domains ---- */

enum dir_status dir_domain_add(struct dir *dir, const struct dir_domain *dom,
			       struct str *error) TERN_WUR;
/* Changes cos, catchall and default_quota of an existing domain. */
enum dir_status dir_domain_set(struct dir *dir, const struct dir_domain *dom,
			       struct str *error) TERN_WUR;
/* DIR_REFUSED while the domain still has accounts, aliases or lists. */
enum dir_status dir_domain_del(struct dir *dir, const char *name,
			       struct str *error) TERN_WUR;
enum dir_status dir_domain_get(struct dir *dir, const char *name,
			       struct dir_domain **dom_r, struct str *error)
	TERN_WUR;
enum dir_status dir_domain_list(struct dir *dir, struct dir_domain ***list_r,
				size_t *count_r, struct str *error) TERN_WUR;
void dir_domain_free(struct dir_domain **dom);
/* Frees an array from dir_domain_list() with its records. */
void dir_domain_array_free(struct dir_domain ***list, size_t count);

/* ---- accounts ---- */

/* acct->address must be in an existing domain and free (not an account,
 * alias or list).  id and created are filled in. */
enum dir_status dir_account_add(struct dir *dir, struct dir_account *acct,
				struct str *error) TERN_WUR;
/* The same, keeping acct->id and acct->created (a copy of an account from
 * another directory: tern-stored files mail under the id); the next id
 * given to a new account moves past it.  The LDAP backend only (DIR_INVALID
 * with the embedded one). */
enum dir_status dir_account_import(struct dir *dir,
				   const struct dir_account *acct,
				   struct str *error) TERN_WUR;
/* Replaces display_name, quota, status, mailhost, cos and (when not NULL)
 * password_hash of the account named by acct->address. */
enum dir_status dir_account_set(struct dir *dir,
				const struct dir_account *acct,
				struct str *error) TERN_WUR;
enum dir_status dir_account_del(struct dir *dir, const char *address,
				struct str *error) TERN_WUR;
enum dir_status dir_account_get(struct dir *dir, const char *address,
				struct dir_account **acct_r,
				struct str *error) TERN_WUR;
/* domain NULL = all domains. */
enum dir_status dir_account_list(struct dir *dir, const char *domain,
				 struct dir_account ***list_r,
				 size_t *count_r, struct str *error) TERN_WUR;
void dir_account_free(struct dir_account **acct);
/* Frees an array from dir_account_list() with its records. */
void dir_account_array_free(struct dir_account ***list, size_t count);

/* ---- aliases ---- */

enum dir_status dir_alias_add(struct dir *dir, const char *address,
			      const char *target, struct str *error) TERN_WUR;
enum dir_status dir_alias_del(struct dir *dir, const char *address,
			      struct str *error) TERN_WUR;
enum dir_status dir_alias_list(struct dir *dir, const char *domain,
			       struct dir_alias ***list_r, size_t *count_r,
			       struct str *error) TERN_WUR;
void dir_alias_free(struct dir_alias **alias);
/* Frees an array from dir_alias_list() with its records. */
void dir_alias_array_free(struct dir_alias ***list, size_t count);

/* ---- distribution lists ---- */

enum dir_status dir_list_add(struct dir *dir, const char *address,
			     struct str *error) TERN_WUR;
enum dir_status dir_list_del(struct dir *dir, const char *address,
			     struct str *error) TERN_WUR;
enum dir_status dir_list_member_add(struct dir *dir, const char *list,
				    const char *member, struct str *error)
	TERN_WUR;
enum dir_status dir_list_member_del(struct dir *dir, const char *list,
				    const char *member, struct str *error)
	TERN_WUR;
enum dir_status dir_list_get(struct dir *dir, const char *address,
			     struct dir_list_info **list_r, struct str *error)
	TERN_WUR;
enum dir_status dir_list_list(struct dir *dir, const char *domain,
			      struct dir_list_info ***list_r, size_t *count_r,
			      struct str *error) TERN_WUR;
void dir_list_info_free(struct dir_list_info **list);
/* Frees an array from dir_list_list() with its records. */
void dir_list_info_array_free(struct dir_list_info ***list, size_t count);

/* ---- mail routing and login ---- */

/* Resolves a recipient: plus-addressing, aliases, lists (nested, each
 * address once, loops cut), catch-all.  DIR_NOTFOUND when the domain is
 * ours and nothing matches; for other domains local_domain is false and
 * the one target is the external address (an address literal,
 * "user@[192.0.2.1]" or "user@[IPv6:...]", is never ours and stays as
 * written). */
enum dir_status dir_resolve(struct dir *dir, const char *address,
			    struct dir_resolution **res_r, struct str *error)
	TERN_WUR;
/* "local@[192.0.2.1]" or "local@[IPv6:2001:db8::1]" (RFC 5321 4.1.3, the
 * tag in any case) with a valid local part; other address literals are
 * not taken. */
bool dir_address_literal(const char *address);
void dir_resolution_free(struct dir_resolution **res);

/* ---- the Global Address List (address book) ---- */

#define DIR_GAL_LIMIT_DEFAULT 100	/* entries a search returns */
#define DIR_GAL_LIMIT_MAX 1000
#define DIR_GAL_TEXT_MAX 128		/* bytes of search text */

enum dir_gal_kind {
	DIR_GAL_ACCOUNT,
	DIR_GAL_LIST,
};

struct dir_gal_entry {
	enum dir_gal_kind kind;
	char *address;
	char *display_name;	/* NULL when none */
};

/* The address book: accounts and lists whose address, display name, given
 * name or surname contains text (case-insensitive for ASCII; a user may
 * type any part, "*", "%" and the like match themselves), and the accounts
 * and lists that aliases containing text point to.  Closed accounts are
 * never listed; no password hash is read.  At most limit entries (0 =
 * DIR_GAL_LIMIT_DEFAULT, at most DIR_GAL_LIMIT_MAX), sorted by address,
 * each address once; when more match, SQLite keeps the first by address
 * and LDAP those the server sent first (a size limit).  text: 1 to
 * DIR_GAL_TEXT_MAX bytes, no control characters, else DIR_INVALID. */
enum dir_status dir_gal_search(struct dir *dir, const char *text,
			       size_t limit, struct dir_gal_entry ***list_r,
			       size_t *count_r, struct str *error) TERN_WUR;
/* Adds the entries of more (an external directory's, dir_ext.h) to a list
 * from dir_gal_search(): they take over *more and win where both have an
 * address; the result is sorted by address, each address once, cut at
 * limit (0 = DIR_GAL_LIMIT_DEFAULT, at most DIR_GAL_LIMIT_MAX). */
void dir_gal_merge(struct dir_gal_entry ***list, size_t *count,
		   struct dir_gal_entry ***more, size_t nmore, size_t limit);
void dir_gal_entry_free(struct dir_gal_entry **e);
/* Frees an array from dir_gal_search() with its records. */
void dir_gal_array_free(struct dir_gal_entry ***list, size_t count);
/* "account" or "list". */
const char *dir_gal_kind_name(enum dir_gal_kind kind);

/* true when passwords are checked by the directory server rather than
 * from the stored hash (LDAP with ldap_auth = bind, for directories whose
 * hashes the service DN cannot read): dir_authenticate() then finds the
 * account's DN with the service connection and binds as it with the
 * password on a connection of its own. */
bool dir_auth_by_bind(const struct dir *dir);
/* The DN of an account (malloc'd), found with the service connection;
 * DIR_NOTFOUND when there is none, DIR_REFUSED for a backend without
 * DNs. */
enum dir_status dir_account_dn(struct dir *dir, const char *address,
			       char **dn_r, struct str *error) TERN_WUR;
/* A simple bind as dn with password on a new connection, closed at once:
 * DIR_OK when the server accepts it, DIR_AUTHFAIL for invalid
 * credentials (or an entry that cannot bind), DIR_TEMPFAIL when the
 * server is down or slower than its timeout.  It never touches the
 * handle's own connection, so unlike every other call it may run while
 * another thread uses dir. */
enum dir_status dir_password_bind(struct dir *dir, const char *dn,
				  const char *password, struct str *error)
	TERN_WUR;

/* DIR_OK with the account when the password is right and the account may
 * log in (active); DIR_AUTHFAIL otherwise (the same answer for a wrong
 * password and an unknown account); DIR_REFUSED for a locked or closed
 * account with the right password.  With an external directory for
 * passwords (dir_set_ext()), the account comes from dir and the password
 * is checked by the external one. */
enum dir_status dir_authenticate(struct dir *dir, const char *address,
				 const char *password,
				 struct dir_account **acct_r,
				 struct str *error) TERN_WUR;

#endif
