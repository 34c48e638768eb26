/*
 * dir_backend.h: what a directory backend provides to dir.c (internal to
 * the directory modules).
 *
 * A backend's handle starts with a struct dir whose ops point at its
 * table; dir.c's public dir_* functions check nothing but forward to it.
 * Every operation of dir.h that touches stored data has an entry here;
 * normalization, password hashing, destructors and dir_authenticate() are
 * shared and live in dir.c.  Backends: dir_sqlite.c (embedded, default)
 * and dir_ldap.c (OpenLDAP with ldap-schema/).
 */
#ifndef TERN_DIR_BACKEND_H
#define TERN_DIR_BACKEND_H

#include "dir.h"

/* What an address is, for resolution. */
enum dir_node_kind {
	DIR_NODE_NONE = 0,
	DIR_NODE_ACCOUNT,
	DIR_NODE_ALIAS,
	DIR_NODE_LIST,
};

struct dir_node {
	enum dir_node_kind kind;
	int64_t account_id;		/* ACCOUNT */
	char *mailhost;			/* ACCOUNT, malloc'd */
	enum dir_account_status status;	/* ACCOUNT */
	char *target;			/* ALIAS, malloc'd */
	char **members;			/* LIST, malloc'd, sorted */
	size_t nmembers;
};

void dir_node_clear(struct dir_node *node);

struct dir_ops {
	const char *name;	/* "sqlite", "ldap" */
	void (*close)(struct dir *dir);
	/* Drops what the handle remembers between calls; NULL: nothing. */
	void (*forget)(struct dir *dir);
	enum dir_status (*serial)(struct dir *dir, uint64_t *serial_r,
				  struct str *error);
	enum dir_status (*cos_add)(struct dir *dir, const struct dir_cos *cos,
				   struct str *error);
	enum dir_status (*cos_set)(struct dir *dir, const struct dir_cos *cos,
				   struct str *error);
	enum dir_status (*cos_del)(struct dir *dir, const char *name,
				   struct str *error);
	enum dir_status (*cos_get)(struct dir *dir, const char *name,
				   struct dir_cos **cos_r, struct str *error);
	enum dir_status (*cos_list)(struct dir *dir, struct dir_cos ***list_r,
				    size_t *count_r, struct str *error);
	enum dir_status (*domain_add)(struct dir *dir,
				      const struct dir_domain *dom,
				      struct str *error);
	enum dir_status (*domain_set)(struct dir *dir,
				      const struct dir_domain *dom,
				      struct str *error);
	enum dir_status (*domain_del)(struct dir *dir, const char *name,
				      struct str *error);
	enum dir_status (*domain_get)(struct dir *dir, const char *name,
				      struct dir_domain **dom_r,
				      struct str *error);
	enum dir_status (*domain_list)(struct dir *dir,
				       struct dir_domain ***list_r,
				       size_t *count_r, struct str *error);
	enum dir_status (*account_add)(struct dir *dir,
				       struct dir_account *acct,
				       struct str *error);
	/* NULL for backends that cannot keep a given id. */
	enum dir_status (*account_import)(struct dir *dir,
					  const struct dir_account *acct,
					  struct str *error);
	enum dir_status (*account_set)(struct dir *dir,
				       const struct dir_account *acct,
				       struct str *error);
	enum dir_status (*account_del)(struct dir *dir, const char *address,
				       struct str *error);
	enum dir_status (*account_get)(struct dir *dir, const char *address,
				       struct dir_account **acct_r,
				       struct str *error);
	enum dir_status (*account_list)(struct dir *dir, const char *domain,
					struct dir_account ***list_r,
					size_t *count_r, struct str *error);
	enum dir_status (*alias_add)(struct dir *dir, const char *address,
				     const char *target, struct str *error);
	enum dir_status (*alias_del)(struct dir *dir, const char *address,
				     struct str *error);
	enum dir_status (*alias_list)(struct dir *dir, const char *domain,
				      struct dir_alias ***list_r,
				      size_t *count_r, struct str *error);
	enum dir_status (*list_add)(struct dir *dir, const char *address,
				    struct str *error);
	enum dir_status (*list_del)(struct dir *dir, const char *address,
				    struct str *error);
	enum dir_status (*list_member_add)(struct dir *dir, const char *list,
					   const char *member,
					   struct str *error);
	enum dir_status (*list_member_del)(struct dir *dir, const char *list,
					   const char *member,
					   struct str *error);
	enum dir_status (*list_get)(struct dir *dir, const char *address,
				    struct dir_list_info **list_r,
				    struct str *error);
	enum dir_status (*list_list)(struct dir *dir, const char *domain,
				     struct dir_list_info ***list_r,
				     size_t *count_r, struct str *error);
	/* The address book: text is checked (1 to DIR_GAL_TEXT_MAX bytes, no
	 * control characters) and limit is 1 to DIR_GAL_LIMIT_MAX; dir.c
	 * sorts, removes duplicates and cuts the result at limit. */
	enum dir_status (*gal_search)(struct dir *dir, const char *text,
				      size_t limit,
				      struct dir_gal_entry ***list_r,
				      size_t *count_r, struct str *error);
	/* Authentication by bind (dir_account_dn(), dir_password_bind());
	 * NULL for backends without. */
	enum dir_status (*account_dn)(struct dir *dir, const char *address,
				      char **dn_r, struct str *error);
	enum dir_status (*password_bind)(struct dir *dir, const char *dn,
					 const char *password,
					 struct str *error);
	/*
	 * Recipient resolution (dir_resolve() in dir.c walks aliases, lists
	 * and catch-alls with these).  begin/end bracket one resolution
	 * (a read transaction, prepared statements); either may be NULL.
	 * node: what a normalized address is (DIR_NODE_NONE when nothing).
	 * domain: 1 when the domain is one of ours (with its catch-all
	 * address or NULL in *catchall_r), 0 when not, -1 on error (*st_r).
	 */
	enum dir_status (*resolve_begin)(struct dir *dir, struct str *error);
	void (*resolve_end)(struct dir *dir);
	enum dir_status (*node)(struct dir *dir, const char *address,
				struct dir_node *node, struct str *error);
	int (*domain_catchall)(struct dir *dir, const char *domain,
			       char **catchall_r, enum dir_status *st_r,
			       struct str *error);
};

/* The head of every backend's handle. */
struct dir {
	const struct dir_ops *ops;
	bool auth_bind;		/* dir_auth_by_bind() */
	struct dir_ext *ext;	/* owned, dir_set_ext(); NULL: none */
};

/* ---- shared checks (dir.c) ---- */

/* Normalized copies in *out_r (malloc'd); NULL input is DIR_INVALID. */
enum dir_status dir_norm_address(const char *in, char **out_r,
				 struct str *error) TERN_WUR;
enum dir_status dir_norm_domain(const char *in, char **out_r,
				struct str *error) TERN_WUR;
/* Printable UTF-8 text of fewer than DIR_NAME_MAX bytes (NULL is fine). */
enum dir_status dir_check_text(const char *what, const char *text,
			       struct str *error) TERN_WUR;
/* 1 to DIR_NAME_MAX - 1 letters, digits, '.', '_' or '-'. */
enum dir_status dir_check_cos_name(const char *name, struct str *error)
	TERN_WUR;
/* At most INT64_MAX (what SQLite and LDAP integers hold). */
enum dir_status dir_check_u64(const char *what, uint64_t v,
			      struct str *error) TERN_WUR;
/* The account fields add and set take (display name, quota, status,
 * password hash scheme, class of service, mail host); *mailhost_r is the
 * normalized mail host (malloc'd) or NULL. */
enum dir_status dir_check_account(const struct dir_account *a,
				  char **mailhost_r, struct str *error)
	TERN_WUR;
/* Grows a pointer array by one slot. */
void dir_array_push(void ***arr, size_t *count, void *item);

/* A set of addresses already visited (open addressing, FNV-1a), for loop-
 * safe list expansion. */
struct dir_seen {
	char **slots;
	size_t cap, count;
};
/* false when s was there already. */
bool dir_seen_add(struct dir_seen *set, const char *s);
void dir_seen_free(struct dir_seen *set);

/* A hash for unknown accounts, so that they cost what a real one costs. */
#define DIR_DUMMY_HASH "$argon2id$v=19$m=32768,t=3,p=1$dGVybi1kdW1teS1zYWx0" \
	"AA$xS86hIyfvYzBIAa7ciB/HbMPAKSyNsMD3oIGF//A5LA"

#endif
