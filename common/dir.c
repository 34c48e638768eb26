/*
 * dir.c: the backend-independent half of the directory (dir.h): status
 * names, address and domain normalization, password hashing and checking,
 * and the destructors of the records every backend returns.
 *
 * Password hashes are argon2id with t=3 passes over m=32 MiB on p=1 lane,
 * a random 16-byte salt and a 32-byte tag, in the PHC string format
 * ("$argon2id$v=19$m=32768,t=3,p=1$SALT$TAG").  One hash or verify takes
 * about 90 ms on a 2-core machine of 2024 and 32 MiB while it runs; the
 * parameters live in the string, so raising them later keeps old hashes
 * working.  Verification also accepts argon2i and SHA512-crypt ("$6$"),
 * for accounts imported from other systems.  One-lane argon2 hashes (all
 * that Tern writes) are verified with libsodium, whose implementation is
 * about 1.5 times faster here than libargon2's; others with libargon2.
 */
#include "config.h"

#include "compat.h"

#include <arpa/inet.h>
#include <argon2.h>
#include <crypt.h>
#include <errno.h>
#include <sodium.h>
#include <idn2.h>
#include <stdarg.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/random.h>

#include "dir_backend.h"
#include "dir_ext.h"
#include "xalloc.h"

#define DIR_LOCAL_MAX 64
#define DIR_DOMAIN_MAX 255
#define DIR_LABEL_MAX 63
#define DIR_PASSWORD_MAX 4096
#define DIR_HASH_MAX 1024

#define ARGON2_T_COST 3
#define ARGON2_M_COST_KIB (32 * 1024)
#define ARGON2_SECRET_M_COST_KIB 256	/* dir_secret_hash() */
#define ARGON2_LANES 1
#define ARGON2_SALT_LEN 16
#define ARGON2_TAG_LEN 32

const char *dir_status_name(enum dir_status st)
{
	switch (st) {
	case DIR_OK: return "ok";
	case DIR_NOTFOUND: return "not found";
	case DIR_EXISTS: return "exists";
	case DIR_INVALID: return "invalid";
	case DIR_REFUSED: return "refused";
	case DIR_AUTHFAIL: return "authentication failed";
	case DIR_TEMPFAIL: return "temporary failure";
	}
	return "unknown";
}

static const char *const account_status_names[] = {
	[DIR_ACCOUNT_ACTIVE] = "active",
	[DIR_ACCOUNT_LOCKED] = "locked",
	[DIR_ACCOUNT_CLOSED] = "closed",
};

const char *dir_account_status_name(enum dir_account_status st)
{
	if ((size_t)st < TERN_NELEM(account_status_names))
		return account_status_names[st];
	return "unknown";
}

int dir_account_status_parse(const char *name, enum dir_account_status *r)
{
	for (size_t i = 0; i < TERN_NELEM(account_status_names); i++) {
		if (strcmp(name, account_status_names[i]) == 0) {
			*r = (enum dir_account_status)i;
			return 0;
		}
	}
	return -1;
}

/* ---- addresses ---- */

static bool is_atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* A dot-atom of 1..64 bytes. */
static bool local_valid(const char *p, size_t len)
{
	if (len == 0 || len > DIR_LOCAL_MAX || p[0] == '.' ||
	    p[len - 1] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '.') {
			if (p[i + 1] == '.')
				return false;
		} else if (!is_atext((unsigned char)p[i])) {
			return false;
		}
	}
	return true;
}

/* Letters, digits and inner hyphens, 1..63 bytes per label. */
static bool ascii_domain_valid(const char *d)
{
	size_t len = strlen(d), label = 0;

	if (len == 0 || len > DIR_DOMAIN_MAX)
		return false;
	for (size_t i = 0; i <= len; i++) {
		char c = d[i];

		if (c == '.' || c == '\0') {
			if (label == 0 || label > DIR_LABEL_MAX ||
			    d[i - 1] == '-')
				return false;
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			   (c == '-' && label > 0)) {
			label++;
		} else {
			return false;
		}
	}
	return true;
}

/* Non-ASCII bytes, or an A-label to check. */
static bool needs_idna(const char *d)
{
	for (const char *p = d; *p != '\0'; p++)
		if ((unsigned char)*p >= 0x80)
			return true;
	return strcasestr(d, "xn--") != NULL;
}

enum dir_status dir_domain_normalize(const char *in, struct str *out,
				     struct str *error)
{
	char *ace = NULL;
	int rc = IDN2_OK;

	if (in[0] == '\0' || strlen(in) > DIR_DOMAIN_MAX * 4) {
		str_setf(error, "invalid domain '%.300s'", in);
		return DIR_INVALID;
	}
	for (const char *p = in; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x21 || *p == 0x7f) {
			str_setf(error, "invalid domain '%.300s': control "
				  "character or space", in);
			return DIR_INVALID;
		}
	}
	/* Plain ASCII needs no IDNA mapping (and may use all 255 bytes). */
	if (!needs_idna(in))
		ace = xstrdup(in);
	else if ((rc = idn2_to_ascii_8z(in, &ace, IDN2_NFC_INPUT |
					IDN2_NONTRANSITIONAL)) != IDN2_OK) {
		str_setf(error, "invalid domain '%.300s': %s", in,
			  idn2_strerror(rc));
		return DIR_INVALID;
	}
	for (char *p = ace; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	if (!ascii_domain_valid(ace)) {
		str_setf(error, "invalid domain '%.300s': labels of letters, "
			  "digits and hyphens, 1 to 63 bytes each, 255 in all",
			  in);
		free(ace);
		return DIR_INVALID;
	}
	if (str_set(out, ace, strlen(ace)) < 0) {
		str_setf(error, "domain '%.300s' is too long", in);
		free(ace);
		return DIR_INVALID;
	}
	free(ace);
	return DIR_OK;
}

enum dir_status dir_address_normalize(const char *in, struct str *out,
				      char **detail_r, struct str *error)
{
	const char *at = strrchr(in, '@');
	struct str *domain = str_new(DIR_DOMAIN_MAX, DIR_DOMAIN_MAX);
	char local[DIR_LOCAL_MAX + 1];
	size_t llen, base;
	enum dir_status st;

	if (detail_r != NULL)
		*detail_r = NULL;
	if (at == NULL) {
		str_setf(error, "invalid address '%.300s': no @domain", in);
		str_free(&domain);
		return DIR_INVALID;
	}
	llen = (size_t)(at - in);
	if (!local_valid(in, llen)) {
		str_setf(error, "invalid address '%.300s': the local part "
			  "must be 1 to 64 letters, digits, dots (not first, "
			  "last or doubled) or !#$%%&'*+-/=?^_`{|}~", in);
		str_free(&domain);
		return DIR_INVALID;
	}
	st = dir_domain_normalize(at + 1, domain, error);
	if (st != DIR_OK) {
		str_free(&domain);
		return st;
	}
	for (size_t i = 0; i < llen; i++) {
		char c = in[i];

		local[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
	}
	local[llen] = '\0';
	base = llen;
	if (detail_r != NULL) {
		char *plus = strchr(local, '+');

		/* "+tag@" alone has no user part: keep it whole. */
		if (plus != NULL && plus != local && plus[-1] != '.') {
			*detail_r = xstrdup(plus + 1);
			base = (size_t)(plus - local);
		}
	}
	str_clear(out);
	if (str_append(out, local, base) < 0 || str_append_c(out, "@") < 0 ||
	    str_append(out, str_c(domain), str_len(domain)) < 0) {
		str_setf(error, "address '%.300s' is too long", in);
		if (detail_r != NULL) {
			free(*detail_r);
			*detail_r = NULL;
		}
		str_free(&domain);
		return DIR_INVALID;
	}
	str_free(&domain);
	return DIR_OK;
}

/* ---- passwords ---- */

/* argon2id with t passes over m KiB. */
static enum dir_status hash_argon2id(const char *password, uint32_t t,
				     uint32_t m, struct str *out,
				     struct str *error)
{
	unsigned char salt[ARGON2_SALT_LEN];
	size_t plen = strlen(password), elen, got = 0;
	char *enc;
	int rc;

	if (plen == 0 || plen > DIR_PASSWORD_MAX) {
		str_setf(error, "the password must be 1 to %d bytes",
			  DIR_PASSWORD_MAX);
		return DIR_INVALID;
	}
	while (got < sizeof(salt)) {
		ssize_t n = getrandom(salt + got, sizeof(salt) - got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			str_setf(error, "getrandom: %s", strerror(errno));
			return DIR_TEMPFAIL;
		}
		got += (size_t)n;
	}
	elen = argon2_encodedlen(t, m, ARGON2_LANES, ARGON2_SALT_LEN,
				 ARGON2_TAG_LEN, Argon2_id);
	enc = xmalloc(elen);
	rc = argon2id_hash_encoded(t, m, ARGON2_LANES, password, plen, salt,
				   sizeof(salt), ARGON2_TAG_LEN, enc, elen);
	if (rc != ARGON2_OK) {
		str_setf(error, "argon2id: %s", argon2_error_message(rc));
		free(enc);
		return DIR_TEMPFAIL;
	}
	if (str_set(out, enc, strlen(enc)) < 0) {
		str_setf(error, "password hash does not fit");
		free(enc);
		return DIR_INVALID;
	}
	free(enc);
	return DIR_OK;
}

enum dir_status dir_password_hash(const char *password, struct str *out,
				  struct str *error)
{
	return hash_argon2id(password, ARGON2_T_COST, ARGON2_M_COST_KIB, out,
			     error);
}

enum dir_status dir_secret_hash(const char *secret, struct str *out,
				struct str *error)
{
	if (strlen(secret) < DIR_SECRET_MIN) {
		str_setf(error, "a machine secret has at least %d bytes",
			 DIR_SECRET_MIN);
		return DIR_INVALID;
	}
	return hash_argon2id(secret, 1, ARGON2_SECRET_M_COST_KIB, out, error);
}

static bool equal_const_time(const char *a, const char *b, size_t n)
{
	volatile unsigned char diff = 0;

	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char)(a[i] ^ b[i]);
	return diff == 0;
}

static bool sha512_crypt_verify(const char *password, const char *hash)
{
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	const char *res = crypt_r(password, hash, cd);
	size_t n = strlen(hash);
	bool ok = false;

	if (res != NULL && res[0] != '*' && strlen(res) == n)
		ok = equal_const_time(res, hash, n);
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return ok;
}

/* Same answer from either library; libsodium handles one lane only. */
static bool argon2_check(const char *password, size_t plen, const char *hash,
			 argon2_type type)
{
	if (strstr(hash, ",p=1$") != NULL && sodium_init() >= 0)
		return crypto_pwhash_str_verify(hash, password,
						(unsigned long long)plen) == 0;
	return argon2_verify(hash, password, plen, type) == ARGON2_OK;
}

bool dir_password_verify(const char *password, const char *hash)
{
	size_t plen;

	if (password == NULL || hash == NULL ||
	    strlen(hash) > DIR_HASH_MAX)
		return false;
	plen = strlen(password);
	if (plen == 0 || plen > DIR_PASSWORD_MAX)
		return false;
	if (strncmp(hash, "$argon2id$", 10) == 0)
		return argon2_check(password, plen, hash, Argon2_id);
	if (strncmp(hash, "$argon2i$", 9) == 0)
		return argon2_check(password, plen, hash, Argon2_i);
	if (strncmp(hash, "$6$", 3) == 0)
		return sha512_crypt_verify(password, hash);
	return false;
}

/* ---- records ---- */

void dir_cos_free(struct dir_cos **cos)
{
	if (*cos == NULL)
		return;
	free((*cos)->name);
	free(*cos);
	*cos = NULL;
}

void dir_cos_array_free(struct dir_cos ***list, size_t count)
{
	if (*list == NULL)
		return;
	for (size_t i = 0; i < count; i++)
		dir_cos_free(&(*list)[i]);
	free(*list);
	*list = NULL;
}

void dir_domain_free(struct dir_domain **dom)
{
	if (*dom == NULL)
		return;
	free((*dom)->name);
	free((*dom)->cos);
	free((*dom)->catchall);
	free(*dom);
	*dom = NULL;
}

void dir_domain_array_free(struct dir_domain ***list, size_t count)
{
	if (*list == NULL)
		return;
	for (size_t i = 0; i < count; i++)
		dir_domain_free(&(*list)[i]);
	free(*list);
	*list = NULL;
}

void dir_account_free(struct dir_account **acct)
{
	struct dir_account *a = *acct;

	if (a == NULL)
		return;
	free(a->address);
	free(a->display_name);
	if (a->password_hash != NULL) {
		explicit_bzero(a->password_hash, strlen(a->password_hash));
		free(a->password_hash);
	}
	free(a->mailhost);
	free(a->cos);
	free(a);
	*acct = NULL;
}

void dir_account_array_free(struct dir_account ***list, size_t count)
{
	if (*list == NULL)
		return;
	for (size_t i = 0; i < count; i++)
		dir_account_free(&(*list)[i]);
	free(*list);
	*list = NULL;
}

void dir_alias_free(struct dir_alias **alias)
{
	if (*alias == NULL)
		return;
	free((*alias)->address);
	free((*alias)->target);
	free(*alias);
	*alias = NULL;
}

void dir_alias_array_free(struct dir_alias ***list, size_t count)
{
	if (*list == NULL)
		return;
	for (size_t i = 0; i < count; i++)
		dir_alias_free(&(*list)[i]);
	free(*list);
	*list = NULL;
}

void dir_list_info_free(struct dir_list_info **list)
{
	struct dir_list_info *l = *list;

	if (l == NULL)
		return;
	free(l->address);
	for (size_t i = 0; i < l->nmembers; i++)
		free(l->members[i]);
	free(l->members);
	free(l);
	*list = NULL;
}

void dir_list_info_array_free(struct dir_list_info ***list, size_t count)
{
	if (*list == NULL)
		return;
	for (size_t i = 0; i < count; i++)
		dir_list_info_free(&(*list)[i]);
	free(*list);
	*list = NULL;
}

void dir_resolution_free(struct dir_resolution **res)
{
	struct dir_resolution *r = *res;

	if (r == NULL)
		return;
	for (size_t i = 0; i < r->ntargets; i++) {
		free(r->targets[i].address);
		free(r->targets[i].mailhost);
	}
	free(r->targets);
	free(r->detail);
	free(r);
	*res = NULL;
}

/* ---- checks and helpers the backends share (dir_backend.h) ---- */

enum dir_status dir_norm_address(const char *in, char **out_r,
				 struct str *error)
{
	struct str *s = str_new(DIR_ADDRESS_MAX, DIR_ADDRESS_MAX);
	enum dir_status st = DIR_INVALID;

	*out_r = NULL;
	if (in == NULL)
		str_setf(error, "missing address");
	else
		st = dir_address_normalize(in, s, NULL, error);
	if (st == DIR_OK)
		*out_r = xstrdup(str_c(s));
	str_free(&s);
	return st;
}

enum dir_status dir_norm_domain(const char *in, char **out_r, struct str *error)
{
	struct str *s = str_new(DIR_ADDRESS_MAX, DIR_ADDRESS_MAX);
	enum dir_status st = DIR_INVALID;

	*out_r = NULL;
	if (in == NULL)
		str_setf(error, "missing domain");
	else
		st = dir_domain_normalize(in, s, error);
	if (st == DIR_OK)
		*out_r = xstrdup(str_c(s));
	str_free(&s);
	return st;
}

/* Printable UTF-8 text of fewer than DIR_NAME_MAX bytes. */
enum dir_status dir_check_text(const char *what, const char *text,
			       struct str *error)
{
	if (text == NULL)
		return DIR_OK;
	if (strlen(text) >= DIR_NAME_MAX) {
		str_setf(error, "%s is longer than %d bytes", what,
			  DIR_NAME_MAX - 1);
		return DIR_INVALID;
	}
	for (const char *p = text; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			str_setf(error, "%s contains a control character",
				  what);
			return DIR_INVALID;
		}
	}
	return DIR_OK;
}

enum dir_status dir_check_cos_name(const char *name, struct str *error)
{
	size_t len = name != NULL ? strlen(name) : 0;

	if (len == 0 || len >= DIR_NAME_MAX) {
		str_setf(error, "invalid cos name: 1 to %d letters, digits, "
			  "'.', '_' or '-'", DIR_NAME_MAX - 1);
		return DIR_INVALID;
	}
	for (size_t i = 0; i < len; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-')) {
			str_setf(error, "invalid cos name '%.300s': use "
				  "letters, digits, '.', '_' or '-'", name);
			return DIR_INVALID;
		}
	}
	return DIR_OK;
}

enum dir_status dir_check_u64(const char *what, uint64_t v, struct str *error)
{
	if (v > (uint64_t)INT64_MAX) {
		str_setf(error, "%s is too large", what);
		return DIR_INVALID;
	}
	return DIR_OK;
}

/* Grows a pointer array by one slot. */
void dir_array_push(void ***arr, size_t *count, void *item)
{
	*arr = xrealloc(*arr, (*count + 1) * sizeof(**arr));
	(*arr)[(*count)++] = item;
}

static uint64_t seen_hash(const char *s)
{
	uint64_t h = 14695981039346656037ULL;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static char **seen_slot(char **slots, size_t cap, const char *s)
{
	size_t i = (size_t)seen_hash(s) & (cap - 1);

	while (slots[i] != NULL && strcmp(slots[i], s) != 0)
		i = (i + 1) & (cap - 1);
	return &slots[i];
}

/* false when s was there already. */
bool dir_seen_add(struct dir_seen *set, const char *s)
{
	char **slot;

	if (set->count * 2 >= set->cap) {
		size_t cap = set->cap == 0 ? 64 : set->cap * 2;
		char **slots = xcalloc(cap, sizeof(*slots));

		for (size_t i = 0; i < set->cap; i++)
			if (set->slots[i] != NULL)
				*seen_slot(slots, cap, set->slots[i]) =
					set->slots[i];
		free(set->slots);
		set->slots = slots;
		set->cap = cap;
	}
	slot = seen_slot(set->slots, set->cap, s);
	if (*slot != NULL)
		return false;
	*slot = xstrdup(s);
	set->count++;
	return true;
}

void dir_seen_free(struct dir_seen *set)
{
	for (size_t i = 0; i < set->cap; i++)
		free(set->slots[i]);
	free(set->slots);
}

/* ---- dispatch to the backend (dir_backend.h) ---- */

void dir_close(struct dir **dir)
{
	if (*dir == NULL)
		return;
	dir_ext_close(&(*dir)->ext);
	(*dir)->ops->close(*dir);
	*dir = NULL;
}

const char *dir_backend_name(const struct dir *dir)
{
	return dir->ops->name;
}

void dir_set_ext(struct dir *dir, struct dir_ext *ext)
{
	dir_ext_close(&dir->ext);
	dir->ext = ext;
}

enum dir_status dir_serial(struct dir *dir, uint64_t *serial_r,
			   struct str *error)
{
	return dir->ops->serial(dir, serial_r, error);
}

enum dir_status dir_cos_add(struct dir *dir, const struct dir_cos *cos,
			    struct str *error)
{
	return dir->ops->cos_add(dir, cos, error);
}

enum dir_status dir_cos_set(struct dir *dir, const struct dir_cos *cos,
			    struct str *error)
{
	return dir->ops->cos_set(dir, cos, error);
}

enum dir_status dir_cos_del(struct dir *dir, const char *name,
			    struct str *error)
{
	return dir->ops->cos_del(dir, name, error);
}

enum dir_status dir_cos_get(struct dir *dir, const char *name,
			    struct dir_cos **cos_r, struct str *error)
{
	return dir->ops->cos_get(dir, name, cos_r, error);
}

enum dir_status dir_cos_list(struct dir *dir, struct dir_cos ***list_r,
			     size_t *count_r, struct str *error)
{
	return dir->ops->cos_list(dir, list_r, count_r, error);
}

enum dir_status dir_domain_add(struct dir *dir, const struct dir_domain *dom,
			       struct str *error)
{
	return dir->ops->domain_add(dir, dom, error);
}

enum dir_status dir_domain_set(struct dir *dir, const struct dir_domain *dom,
			       struct str *error)
{
	return dir->ops->domain_set(dir, dom, error);
}

enum dir_status dir_domain_del(struct dir *dir, const char *name,
			       struct str *error)
{
	return dir->ops->domain_del(dir, name, error);
}

enum dir_status dir_domain_get(struct dir *dir, const char *name,
			       struct dir_domain **dom_r, struct str *error)
{
	return dir->ops->domain_get(dir, name, dom_r, error);
}

enum dir_status dir_domain_list(struct dir *dir, struct dir_domain ***list_r,
				size_t *count_r, struct str *error)
{
	return dir->ops->domain_list(dir, list_r, count_r, error);
}

enum dir_status dir_account_add(struct dir *dir, struct dir_account *acct,
				struct str *error)
{
	return dir->ops->account_add(dir, acct, error);
}

void dir_forget(struct dir *dir)
{
	if (dir->ops->forget != NULL)
		dir->ops->forget(dir);
}

enum dir_status dir_account_import(struct dir *dir,
				   const struct dir_account *acct,
				   struct str *error)
{
	if (dir->ops->account_import == NULL) {
		str_setf(error, "the %s directory cannot import accounts",
			 dir->ops->name);
		return DIR_INVALID;
	}
	if (acct->id <= 0) {
		str_setf(error, "account %s: no id to keep", acct->address);
		return DIR_INVALID;
	}
	return dir->ops->account_import(dir, acct, error);
}

enum dir_status dir_account_set(struct dir *dir,
				const struct dir_account *acct,
				struct str *error)
{
	return dir->ops->account_set(dir, acct, error);
}

enum dir_status dir_account_del(struct dir *dir, const char *address,
				struct str *error)
{
	return dir->ops->account_del(dir, address, error);
}

enum dir_status dir_account_get(struct dir *dir, const char *address,
				struct dir_account **acct_r,
				struct str *error)
{
	return dir->ops->account_get(dir, address, acct_r, error);
}

enum dir_status dir_account_list(struct dir *dir, const char *domain,
				 struct dir_account ***list_r,
				 size_t *count_r, struct str *error)
{
	return dir->ops->account_list(dir, domain, list_r, count_r, error);
}

enum dir_status dir_alias_add(struct dir *dir, const char *address,
			      const char *target, struct str *error)
{
	return dir->ops->alias_add(dir, address, target, error);
}

enum dir_status dir_alias_del(struct dir *dir, const char *address,
			      struct str *error)
{
	return dir->ops->alias_del(dir, address, error);
}

enum dir_status dir_alias_list(struct dir *dir, const char *domain,
			       struct dir_alias ***list_r, size_t *count_r,
			       struct str *error)
{
	return dir->ops->alias_list(dir, domain, list_r, count_r, error);
}

enum dir_status dir_list_add(struct dir *dir, const char *address,
			     struct str *error)
{
	return dir->ops->list_add(dir, address, error);
}

enum dir_status dir_list_del(struct dir *dir, const char *address,
			     struct str *error)
{
	return dir->ops->list_del(dir, address, error);
}

enum dir_status dir_list_member_add(struct dir *dir, const char *list,
				    const char *member, struct str *error)
{
	return dir->ops->list_member_add(dir, list, member, error);
}

enum dir_status dir_list_member_del(struct dir *dir, const char *list,
				    const char *member, struct str *error)
{
	return dir->ops->list_member_del(dir, list, member, error);
}

enum dir_status dir_list_get(struct dir *dir, const char *address,
			     struct dir_list_info **list_r, struct str *error)
{
	return dir->ops->list_get(dir, address, list_r, error);
}

enum dir_status dir_list_list(struct dir *dir, const char *domain,
			      struct dir_list_info ***list_r, size_t *count_r,
			      struct str *error)
{
	return dir->ops->list_list(dir, domain, list_r, count_r, error);
}

enum dir_status dir_check_account(const struct dir_account *a,
				  char **mailhost_r, struct str *error)
{
	enum dir_status st;
	const char *h = a->password_hash;

	*mailhost_r = NULL;
	st = dir_check_text("display name", a->display_name, error);
	if (st == DIR_OK)
		st = dir_check_u64("quota", a->quota, error);
	if (st == DIR_OK && (unsigned)a->status > DIR_ACCOUNT_CLOSED) {
		str_setf(error, "invalid account status");
		st = DIR_INVALID;
	}
	if (st == DIR_OK && h != NULL &&
	    (strncmp(h, "$argon2id$", 10) != 0 &&
	     strncmp(h, "$argon2i$", 9) != 0 && strncmp(h, "$6$", 3) != 0)) {
		str_setf(error, "password hash must be argon2id, argon2i or "
			  "SHA512-crypt ($6$)");
		st = DIR_INVALID;
	}
	if (st == DIR_OK)
		st = dir_check_text("password hash", h, error);
	if (st == DIR_OK && a->cos != NULL)
		st = dir_check_cos_name(a->cos, error);
	if (st == DIR_OK && a->mailhost != NULL) {
		st = dir_norm_domain(a->mailhost, mailhost_r, error);
		if (st != DIR_OK)
			str_setf(error, "invalid mail host '%.300s'",
				  a->mailhost);
	}
	return st;
}

/* ---- recipient resolution (every backend) ---- */

#define DIR_VISIT_MAX (4 * DIR_EXPAND_MAX)

void dir_node_clear(struct dir_node *node)
{
	free(node->mailhost);
	free(node->target);
	for (size_t i = 0; i < node->nmembers; i++)
		free(node->members[i]);
	free(node->members);
	memset(node, 0, sizeof(*node));
}

struct expand {
	struct dir *dir;
	struct dir_seen seen;
	struct dir_resolution *res;
	size_t cap;
	struct str *error;
	/* The last node read to learn its kind, kept for the expansion that
	 * starts there (one directory read less per recipient). */
	char *memo_addr;
	struct dir_node memo;
};

static void memo_clear(struct expand *x)
{
	free(x->memo_addr);
	x->memo_addr = NULL;
	dir_node_clear(&x->memo);
	memset(&x->memo, 0, sizeof(x->memo));
}

/* What address is: the kept node when it is the one, else a read. */
static enum dir_status fetch_node(struct expand *x, const char *address,
				  struct dir_node *node)
{
	if (x->memo_addr != NULL && strcmp(x->memo_addr, address) == 0) {
		*node = x->memo;
		memset(&x->memo, 0, sizeof(x->memo));
		free(x->memo_addr);
		x->memo_addr = NULL;
		return DIR_OK;
	}
	return x->dir->ops->node(x->dir, address, node, x->error);
}

static const char *domain_part(const char *address)
{
	const char *at = strrchr(address, '@');

	return at != NULL ? at + 1 : "";
}

static enum dir_status expand_target(struct expand *x,
				     enum dir_target_kind kind,
				     const char *address,
				     struct dir_node *node)
{
	struct dir_resolution *res = x->res;
	struct dir_target *t;

	if (res->ntargets >= DIR_EXPAND_MAX) {
		str_setf(x->error, "expansion yields more than %d addresses",
			 DIR_EXPAND_MAX);
		return DIR_REFUSED;
	}
	if (res->ntargets == x->cap) {
		x->cap = x->cap == 0 ? 8 : x->cap * 2;
		res->targets = xrealloc(res->targets,
					x->cap * sizeof(*res->targets));
	}
	t = &res->targets[res->ntargets++];
	memset(t, 0, sizeof(*t));
	t->kind = kind;
	t->address = xstrdup(address);
	if (kind == DIR_TARGET_ACCOUNT) {
		t->account_id = node->account_id;
		t->mailhost = node->mailhost != NULL ? node->mailhost :
						       xstrdup("");
		node->mailhost = NULL;
		t->status = node->status;
	}
	return DIR_OK;
}

/* One address and, for aliases and lists, what it leads to. */
static enum dir_status expand_node(struct expand *x, const char *address,
				   unsigned depth)
{
	struct dir_node node;
	enum dir_status st;
	char *catchall = NULL;
	int local;

	if (!dir_seen_add(&x->seen, address))
		return DIR_OK;	/* a duplicate or a loop */
	if (x->seen.count > DIR_VISIT_MAX) {
		str_setf(x->error, "expansion visits more than %d addresses",
			 DIR_VISIT_MAX);
		return DIR_REFUSED;
	}
	memset(&node, 0, sizeof(node));
	st = fetch_node(x, address, &node);
	if (st != DIR_OK) {
		dir_node_clear(&node);
		return st;
	}
	switch (node.kind) {
	case DIR_NODE_ACCOUNT:
		st = expand_target(x, DIR_TARGET_ACCOUNT, address, &node);
		break;
	case DIR_NODE_ALIAS:
		if (depth < DIR_LIST_DEPTH_MAX && node.target != NULL)
			st = expand_node(x, node.target, depth + 1);
		break;	/* nested too deep: cut */
	case DIR_NODE_LIST:
		for (size_t i = 0; depth < DIR_LIST_DEPTH_MAX &&
				   st == DIR_OK && i < node.nmembers; i++)
			st = expand_node(x, node.members[i], depth + 1);
		break;
	case DIR_NODE_NONE:
		local = x->dir->ops->domain_catchall(x->dir,
						     domain_part(address),
						     &catchall, &st, x->error);
		free(catchall);
		if (local == 0)	/* elsewhere; dangling when ours */
			st = expand_target(x, DIR_TARGET_EXTERNAL, address,
					   NULL);
		break;
	}
	dir_node_clear(&node);
	return st;
}

/* What an address is (the node kept for expand_node()). */
static enum dir_status node_kind(struct expand *x, const char *address,
				 enum dir_node_kind *kind_r)
{
	enum dir_status st;

	memo_clear(x);
	st = x->dir->ops->node(x->dir, address, &x->memo, x->error);
	*kind_r = x->memo.kind;
	if (st == DIR_OK)
		x->memo_addr = xstrdup(address);
	else
		memo_clear(x);
	return st;
}

/* Where resolution starts: the address, user@ without +tag, the catch-all;
 * *start_r is malloc'd, NULL when nothing matches. */
static enum dir_status resolve_start(struct expand *x, const char *full,
				     const char *base, const char *detail,
				     const char *catchall, char **start_r)
{
	enum dir_node_kind kind;
	enum dir_status st;

	*start_r = NULL;
	st = node_kind(x, full, &kind);
	if (st != DIR_OK || kind != DIR_NODE_NONE) {
		*start_r = st == DIR_OK ? xstrdup(full) : NULL;
		return st;
	}
	if (detail != NULL) {
		st = node_kind(x, base, &kind);
		if (st != DIR_OK)
			return st;
		if (kind != DIR_NODE_NONE) {
			x->res->detail = xstrdup(detail);
			*start_r = xstrdup(base);
			return DIR_OK;
		}
	}
	if (catchall != NULL)
		*start_r = xstrdup(catchall);
	return DIR_OK;
}

static enum dir_status resolve_local(struct expand *x, const char *address,
				     const char *catchall)
{
	struct str *full = str_new(DIR_ADDRESS_MAX, DIR_ADDRESS_MAX);
	struct str *base = str_new(DIR_ADDRESS_MAX, DIR_ADDRESS_MAX);
	char *detail = NULL, *start = NULL;
	enum dir_status st;

	st = dir_address_normalize(address, full, NULL, x->error);
	if (st == DIR_OK)
		st = dir_address_normalize(address, base, &detail, x->error);
	if (st == DIR_OK)
		st = resolve_start(x, str_c(full), str_c(base), detail,
				   catchall, &start);
	if (st == DIR_OK && start == NULL) {
		str_setf(x->error, "%s does not exist", str_c(full));
		st = DIR_NOTFOUND;
	}
	if (st == DIR_OK)
		st = expand_node(x, start, 0);
	if (st == DIR_OK && x->res->ntargets == 0) {
		str_setf(x->error, "%s leads to no recipient (dangling alias "
			 "or empty list)", str_c(full));
		st = DIR_NOTFOUND;
	}
	free(start);
	free(detail);
	str_free(&full);
	str_free(&base);
	return st;
}

bool dir_address_literal(const char *address)
{
	const char *at = strrchr(address, '@');
	const char *lit = at != NULL ? at + 1 : "";
	size_t n = strlen(lit);
	char ip[64];
	unsigned char bin[16];

	if (n < 3 || n - 2 >= sizeof(ip) || lit[0] != '[' ||
	    lit[n - 1] != ']' || !local_valid(address, (size_t)(at - address)))
		return false;
	memcpy(ip, lit + 1, n - 2);
	ip[n - 2] = '\0';
	return strncasecmp(ip, "IPv6:", 5) == 0 ?
		       inet_pton(AF_INET6, ip + 5, bin) == 1 :
		       inet_pton(AF_INET, ip, bin) == 1;
}

/* An address literal is never one of our domains: the address goes on as
 * written, to that host. */
static struct dir_resolution *resolve_literal(const char *address)
{
	struct dir_resolution *res = xcalloc(1, sizeof(*res));

	res->targets = xcalloc(1, sizeof(*res->targets));
	res->targets[0].kind = DIR_TARGET_EXTERNAL;
	res->targets[0].address = xstrdup(address);
	res->ntargets = 1;
	return res;
}

enum dir_status dir_resolve(struct dir *dir, const char *address,
			    struct dir_resolution **res_r, struct str *error)
{
	struct expand x = { .dir = dir, .error = error };
	char *addr = NULL, *catchall = NULL;
	enum dir_status st;
	int local;

	*res_r = NULL;
	if (address != NULL && dir_address_literal(address)) {
		*res_r = resolve_literal(address);
		return DIR_OK;
	}
	st = dir_norm_address(address, &addr, error);
	if (st != DIR_OK)
		return st;
	if (dir->ops->resolve_begin != NULL &&
	    (st = dir->ops->resolve_begin(dir, error)) != DIR_OK) {
		if (dir->ops->resolve_end != NULL)
			dir->ops->resolve_end(dir);	/* whatever began */
		free(addr);
		return st;
	}
	x.res = xcalloc(1, sizeof(*x.res));
	local = dir->ops->domain_catchall(dir, domain_part(addr), &catchall,
					  &st, error);
	if (local == 0) {
		x.res->local_domain = false;
		st = expand_target(&x, DIR_TARGET_EXTERNAL, addr, NULL);
	} else if (local == 1) {
		x.res->local_domain = true;
		st = resolve_local(&x, address, catchall);
	}
	if (dir->ops->resolve_end != NULL)
		dir->ops->resolve_end(dir);
	memo_clear(&x);
	free(addr);
	free(catchall);
	dir_seen_free(&x.seen);
	if (st != DIR_OK)
		dir_resolution_free(&x.res);
	*res_r = x.res;
	return st;
}

/* ---- the address book (every backend) ---- */

const char *dir_gal_kind_name(enum dir_gal_kind kind)
{
	return kind == DIR_GAL_LIST ? "list" : "account";
}

void dir_gal_entry_free(struct dir_gal_entry **e)
{
	if (*e == NULL)
		return;
	free((*e)->address);
	free((*e)->display_name);
	free(*e);
	*e = NULL;
}

void dir_gal_array_free(struct dir_gal_entry ***list, size_t count)
{
	if (*list == NULL)
		return;
	for (size_t i = 0; i < count; i++)
		dir_gal_entry_free(&(*list)[i]);
	free(*list);
	*list = NULL;
}

static int cmp_gal(const void *a, const void *b)
{
	return strcmp((*(struct dir_gal_entry *const *)a)->address,
		      (*(struct dir_gal_entry *const *)b)->address);
}

/* Sorts by address, keeps each address once and the first limit entries;
 * returns how many are left. */
static size_t gal_sort_cut(struct dir_gal_entry **list, size_t n,
			   size_t limit)
{
	size_t k = 0;

	if (n > 1)
		qsort(list, n, sizeof(*list), cmp_gal);
	for (size_t i = 0; i < n; i++) {	/* each address once */
		if (k > 0 && strcmp(list[k - 1]->address,
				    list[i]->address) == 0)
			dir_gal_entry_free(&list[i]);
		else
			list[k++] = list[i];
	}
	for (size_t i = limit; i < k; i++)
		dir_gal_entry_free(&list[i]);
	return k < limit ? k : limit;
}

enum dir_status dir_gal_search(struct dir *dir, const char *text,
			       size_t limit, struct dir_gal_entry ***list_r,
			       size_t *count_r, struct str *error)
{
	struct dir_gal_entry **list = NULL;
	enum dir_status st;
	size_t n = 0;

	*list_r = NULL;
	*count_r = 0;
	if (text == NULL || text[0] == '\0' ||
	    strlen(text) > DIR_GAL_TEXT_MAX) {
		str_setf(error, "the search text must be 1 to %d bytes",
			 DIR_GAL_TEXT_MAX);
		return DIR_INVALID;
	}
	st = dir_check_text("the search text", text, error);
	if (st != DIR_OK)
		return st;
	if (limit == 0)
		limit = DIR_GAL_LIMIT_DEFAULT;
	if (limit > DIR_GAL_LIMIT_MAX)
		limit = DIR_GAL_LIMIT_MAX;
	st = dir->ops->gal_search(dir, text, limit, &list, &n, error);
	if (st != DIR_OK) {
		dir_gal_array_free(&list, n);
		return st;
	}
	n = gal_sort_cut(list, n, limit);
	if (dir_ext_gal(dir->ext)) {
		struct dir_gal_entry **more = NULL;
		size_t nmore = 0;

		st = dir_ext_gal_search(dir->ext, text, limit, &more, &nmore,
					error);
		if (st != DIR_OK) {
			dir_gal_array_free(&list, n);
			return st;
		}
		dir_gal_merge(&list, &n, &more, nmore, limit);
	}
	*list_r = list;
	*count_r = n;
	return DIR_OK;
}

void dir_gal_merge(struct dir_gal_entry ***list, size_t *count,
		   struct dir_gal_entry ***more, size_t nmore, size_t limit)
{
	struct dir_seen seen = { NULL, 0, 0 };
	size_t k = 0;

	if (limit == 0)
		limit = DIR_GAL_LIMIT_DEFAULT;
	if (limit > DIR_GAL_LIMIT_MAX)
		limit = DIR_GAL_LIMIT_MAX;
	for (size_t i = 0; i < nmore; i++)
		(void)dir_seen_add(&seen, (*more)[i]->address);
	for (size_t i = 0; i < *count; i++) {	/* more's entries win */
		if (dir_seen_add(&seen, (*list)[i]->address))
			(*list)[k++] = (*list)[i];
		else
			dir_gal_entry_free(&(*list)[i]);
	}
	dir_seen_free(&seen);
	*list = xrealloc(*list, (k + nmore + 1) * sizeof(**list));
	for (size_t i = 0; i < nmore; i++)
		(*list)[k++] = (*more)[i];
	free(*more);
	*more = NULL;
	*count = gal_sort_cut(*list, k, limit);
}

/* ---- login (every backend) ---- */

bool dir_auth_by_bind(const struct dir *dir)
{
	return dir->auth_bind && dir->ops->password_bind != NULL;
}

enum dir_status dir_account_dn(struct dir *dir, const char *address,
			       char **dn_r, struct str *error)
{
	*dn_r = NULL;
	if (dir->ops->account_dn == NULL) {
		str_setf(error, "the %s directory has no DNs", dir->ops->name);
		return DIR_REFUSED;
	}
	return dir->ops->account_dn(dir, address, dn_r, error);
}

enum dir_status dir_password_bind(struct dir *dir, const char *dn,
				  const char *password, struct str *error)
{
	size_t plen = password != NULL ? strlen(password) : 0;

	if (dir->ops->password_bind == NULL) {
		str_setf(error, "the %s directory cannot bind",
			 dir->ops->name);
		return DIR_REFUSED;
	}
	/* An empty password would be an unauthenticated bind: success. */
	if (plen == 0 || plen > DIR_PASSWORD_MAX) {
		str_setf(error, "authentication failed");
		return DIR_AUTHFAIL;
	}
	return dir->ops->password_bind(dir, dn, password, error);
}

/* The password check of dir_authenticate() by a bind as the account. */
static enum dir_status authenticate_bind(struct dir *dir,
					 struct dir_account *acct,
					 const char *password,
					 struct str *error)
{
	enum dir_status st;
	char *dn = NULL;

	st = dir_account_dn(dir, acct->address, &dn, error);
	if (st == DIR_OK)
		st = dir_password_bind(dir, dn, password, error);
	free(dn);
	if (st == DIR_NOTFOUND || st == DIR_REFUSED || st == DIR_INVALID)
		st = DIR_AUTHFAIL;
	if (st == DIR_AUTHFAIL)
		str_setf(error, "authentication failed");
	return st;
}

enum dir_status dir_authenticate(struct dir *dir, const char *address,
				 const char *password,
				 struct dir_account **acct_r,
				 struct str *error)
{
	struct dir_account *acct = NULL;
	enum dir_status st;
	bool ok;

	if (acct_r != NULL)
		*acct_r = NULL;
	st = dir_account_get(dir, address, &acct, error);
	if (st == DIR_TEMPFAIL)
		return st;
	if (st == DIR_OK && dir_ext_auth(dir->ext)) {
		st = dir_ext_authenticate(dir->ext, acct->address, password,
					  error);
		if (st != DIR_OK) {
			dir_account_free(&acct);
			if (st == DIR_TEMPFAIL)
				return st;
			str_setf(error, "authentication failed");
			return DIR_AUTHFAIL;
		}
		ok = true;
	} else if (st == DIR_OK && dir_auth_by_bind(dir)) {
		st = authenticate_bind(dir, acct, password, error);
		if (st != DIR_OK) {
			dir_account_free(&acct);
			return st;
		}
		ok = true;
	} else if (st != DIR_OK || acct->password_hash == NULL) {
		/* Same cost and answer as a wrong password. */
		(void)dir_password_verify(password != NULL &&
					  password[0] != '\0' ? password :
					  "-", DIR_DUMMY_HASH);
		dir_account_free(&acct);
		str_setf(error, "authentication failed");
		return DIR_AUTHFAIL;
	} else {
		ok = dir_password_verify(password, acct->password_hash);
	}
	if (!ok) {
		dir_account_free(&acct);
		str_setf(error, "authentication failed");
		return DIR_AUTHFAIL;
	}
	if (acct->status != DIR_ACCOUNT_ACTIVE) {
		str_setf(error, "account %s is %s", acct->address,
			  dir_account_status_name(acct->status));
		dir_account_free(&acct);
		return DIR_REFUSED;
	}
	if (acct_r != NULL)
		*acct_r = acct;
	else
		dir_account_free(&acct);
	return DIR_OK;
}
