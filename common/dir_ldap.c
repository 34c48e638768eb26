/*
 * dir_ldap.c: the LDAP directory backend (dir.h) on OpenLDAP with Tern's
 * schema (ldap-schema/tern.schema, docs/ldap.md).
 *
 * Layout under the base DN B:
 *   cn=tern,B                          ternDirectory: ternSerial, ternNextId
 *   cn=NAME,ou=cos,B                   ternCos
 *   ternDomainName=D,ou=domains,B      ternDomain
 *   mail=A,ternDomainName=D,ou=domains,B
 *       inetOrgPerson + ternAccount, ternAlias or ternDistributionList
 * Accounts, aliases and lists of a domain share one namespace because they
 * share one parent and are named by their address: the server refuses a
 * second entry of the same name atomically.  Lookups search by (mail=A)
 * with the value escaped (RFC 4515); DNs are built with escaped values (RFC
 * 4514).  Passwords are in userPassword as "{ARGON2}" + the PHC string or
 * "{CRYPT}" + the crypt(3) string, which slapd's argon2 module and crypt
 * support also accept for a bind as the account.
 *
 * Changes: every write Tern makes bumps ternSerial of cn=tern,B (an LDAP
 * increment, RFC 4525); dir_serial() hashes it with the base entry's
 * contextCSN (kept by the syncprov overlay of the bundled slapd), so that
 * changes made with other LDAP tools are seen too.  Account ids come from
 * ternNextId by compare-and-swap (delete the old value, add the next, in
 * one modify).
 *
 * Connection: one per handle, used by one thread at a time (tern-authd
 * serializes its calls under its directory lock on the thread-pool
 * threads; ternctl is single-threaded).  Calls block up to timeout_ms.  A
 * lost connection is reopened at once and the call retried once; after a
 * failed connect or a timeout, no new connection is tried before a backoff
 * of 100 ms doubling to 2 s, and calls answer DIR_TEMPFAIL meanwhile.  Any failure to reach or use the
 * server is DIR_TEMPFAIL, never a permanent answer.
 *
 * Searches that may return many entries (the lists, the count of a
 * domain's accounts, the address book) go through ld_search_paged(): pages
 * of DIR_LDAP_PAGE_SIZE (RFC 2696), so that a server's size limit for one
 * answer does not cut them.
 */
#include "config.h"

#include "compat.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <lber.h>
#include <ldap.h>
#include <sasl/sasl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "dir_backend.h"
#include "dir_ldap.h"
#include "xalloc.h"

#define LDIR_DN_MAX 4096
#define LDIR_FILTER_MAX 4096
#define LDIR_SECRET_MAX 1024
#define LDIR_BACKOFF_MIN_MS 100
#define LDIR_BACKOFF_MAX_MS 2000
#define LDIR_CAS_TRIES 16
#define LDIR_MEMO_MAX 64	/* domains, classes of service remembered */
#define LDIR_MODS_MAX 20
#define LDIR_NO_CONNECTION (-1000)	/* req_run: ld_connect said why */

enum kind { KIND_NONE, KIND_ACCOUNT, KIND_ALIAS, KIND_LIST };

static const char *const kind_names[] = {
	[KIND_NONE] = "address", [KIND_ACCOUNT] = "account",
	[KIND_ALIAS] = "alias", [KIND_LIST] = "list",
};

/* What a read-only handle remembers of a domain or a class of service
 * between calls, until dir_forget(): the facts every recipient lookup of
 * the domain needs (one search each less per lookup). */
struct memo {
	char *name;
	bool found;
	char *catchall;		/* domains */
	uint64_t quota;		/* the domain's default quota, the cos's */
};

struct ldir {
	struct dir base;	/* first: dir.c sees this */
	LDAP *ld;
	char *uri, *base_dn, *bind_dn, *password;
	char *domains_dn, *cos_dn, *state_dn;
	unsigned timeout_ms;
	bool readonly;
	struct dir_ldap_backoff backoff;
	struct memo domains[LDIR_MEMO_MAX], coses[LDIR_MEMO_MAX];
	size_t ndomains, ncoses;
};

/* A formatted string of less than LDIR_DN_MAX bytes (malloc'd), or NULL
 * when it would be longer. */
static char *fmt_dup(const char *fmt, ...) TERN_PRINTF(1, 2);
static char *fmt_dup(const char *fmt, ...)
{
	char *buf = xmalloc(LDIR_DN_MAX);
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, LDIR_DN_MAX, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= LDIR_DN_MAX) {
		free(buf);
		return NULL;
	}
	return xrealloc(buf, (size_t)n + 1);
}

/* ---- escaping ---- */

int dir_ldap_filter_escape(struct str *out, const char *value, size_t len)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)value[i];
		char esc[3] = { '\\', hex[c >> 4], hex[c & 15] };
		int r;

		if (c < 0x20 || c >= 0x7f || c == '*' || c == '(' ||
		    c == ')' || c == '\\')
			r = str_append(out, esc, sizeof(esc));
		else
			r = str_append(out, &value[i], 1);
		if (r < 0)
			return -1;
	}
	return 0;
}

int dir_ldap_dn_escape(struct str *out, const char *value, size_t len)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)value[i];
		char esc[3] = { '\\', hex[c >> 4], hex[c & 15] };
		int r;

		if (c < 0x20 || c == 0x7f)
			r = str_append(out, esc, sizeof(esc));
		else if (strchr("\"+,;<>\\=", c) != NULL ||
			 (i == 0 && (c == '#' || c == ' ')) ||
			 (i == len - 1 && c == ' '))
			r = str_append(out, esc, 1) < 0 ? -1 :
			    str_append(out, &value[i], 1);
		else
			r = str_append(out, &value[i], 1);
		if (r < 0)
			return -1;
	}
	return 0;
}

/* "ATTR=VALUE,PARENT" with VALUE escaped (malloc'd). */
static char *dn_make(const char *attr, const char *value, const char *parent)
{
	struct str *s = str_new(128, LDIR_DN_MAX);
	char *r = NULL;

	if (str_append_c(s, attr) == 0 && str_append_c(s, "=") == 0 &&
	    dir_ldap_dn_escape(s, value, strlen(value)) == 0 &&
	    str_append_c(s, ",") == 0 && str_append_c(s, parent) == 0)
		r = xstrdup(str_c(s));
	str_free(&s);
	return r;
}

/* "(ATTR=VALUE)" with VALUE escaped, inside "(&CLASS...)" when cls is set
 * (malloc'd). */
static char *filter_make(const char *cls, const char *attr, const char *value)
{
	struct str *s = str_new(128, LDIR_FILTER_MAX);
	char *r = NULL;
	int ok;

	if (cls != NULL)
		ok = str_append_c(s, "(&(objectClass=") == 0 &&
		     str_append_c(s, cls) == 0 && str_append_c(s, ")(") == 0;
	else
		ok = str_append_c(s, "(") == 0;
	ok = ok && str_append_c(s, attr) == 0 && str_append_c(s, "=") == 0;
	if (ok && dir_ldap_filter_escape(s, value, strlen(value)) == 0 &&
	    str_append_c(s, cls != NULL ? "))" : ")") == 0)
		r = xstrdup(str_c(s));
	str_free(&s);
	return r;
}

static char *domain_dn(struct ldir *l, const char *domain)
{
	return dn_make("ternDomainName", domain, l->domains_dn);
}

static const char *domain_of(const char *address)
{
	return strrchr(address, '@') + 1;
}

static char *entry_dn(struct ldir *l, const char *address)
{
	char *parent = domain_dn(l, domain_of(address)), *dn = NULL;

	if (parent != NULL)
		dn = dn_make("mail", address, parent);
	free(parent);
	return dn;
}

/* ---- the connection ---- */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void dir_ldap_backoff_failed(struct dir_ldap_backoff *b)
{
	b->step_ms = b->step_ms == 0 ? LDIR_BACKOFF_MIN_MS : b->step_ms * 2;
	if (b->step_ms > LDIR_BACKOFF_MAX_MS)
		b->step_ms = LDIR_BACKOFF_MAX_MS;
	b->retry_at_ms = now_ms() + b->step_ms;
}

void dir_ldap_backoff_reset(struct dir_ldap_backoff *b)
{
	b->step_ms = 0;
	b->retry_at_ms = 0;
}

uint64_t dir_ldap_backoff_wait(const struct dir_ldap_backoff *b)
{
	uint64_t now = now_ms();

	return now < b->retry_at_ms ? b->retry_at_ms - now : 0;
}

struct timeval dir_ldap_tv(unsigned ms)
{
	struct timeval tv = { .tv_sec = ms / 1000,
			      .tv_usec = (long)(ms % 1000) * 1000 };
	return tv;
}

int dir_ldap_init(const char *uri, unsigned timeout_ms, LDAP **ld_r)
{
	struct timeval tv = dir_ldap_tv(timeout_ms);
	int v3 = LDAP_VERSION3;
	int rc = ldap_initialize(ld_r, uri);

	if (rc != LDAP_SUCCESS) {
		*ld_r = NULL;
		return rc;
	}
	(void)ldap_set_option(*ld_r, LDAP_OPT_PROTOCOL_VERSION, &v3);
	(void)ldap_set_option(*ld_r, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
	(void)ldap_set_option(*ld_r, LDAP_OPT_NETWORK_TIMEOUT, &tv);
	(void)ldap_set_option(*ld_r, LDAP_OPT_TIMEOUT, &tv);
	return LDAP_SUCCESS;
}

static void ld_drop(struct ldir *l)
{
	if (l->ld != NULL)
		ldap_unbind_ext_s(l->ld, NULL, NULL);
	l->ld = NULL;
}

/* The server failed us: no new connection before the next backoff step. */
static void ld_down(struct ldir *l)
{
	ld_drop(l);
	dir_ldap_backoff_failed(&l->backoff);
}

/* Errors that mean the connection or the server is unusable. */
static bool rc_is_down(int rc)
{
	return rc == LDAP_SERVER_DOWN || rc == LDAP_CONNECT_ERROR ||
	       rc == LDAP_TIMEOUT || rc == LDAP_UNAVAILABLE ||
	       rc == LDAP_BUSY || rc == LDAP_LOCAL_ERROR ||
	       rc == LDAP_TIMELIMIT_EXCEEDED || rc == LDAP_OTHER ||
	       rc == LDAP_UNWILLING_TO_PERFORM || rc == LDAP_NO_MEMORY;
}

/* SASL EXTERNAL needs no answers: every prompt gets the empty default
 * (the identity is the peer's uid and gid over ldapi://). */
static int sasl_defaults(LDAP *ld, unsigned flags, void *defaults, void *in)
{
	sasl_interact_t *it = in;

	(void)ld;
	(void)flags;
	(void)defaults;
	for (; it->id != SASL_CB_LIST_END; it++) {
		it->result = "";
		it->len = 0;
	}
	return LDAP_SUCCESS;
}

static enum dir_status ld_connect(struct ldir *l, struct str *error)
{
	struct berval cred = { 0, NULL };
	uint64_t wait = dir_ldap_backoff_wait(&l->backoff);
	int rc;

	if (l->ld != NULL)
		return DIR_OK;
	if (wait > 0) {
		str_setf(error, "directory server %s unreachable (next try in "
			  "%llu ms)", l->uri, (unsigned long long)wait);
		return DIR_TEMPFAIL;
	}
	rc = dir_ldap_init(l->uri, l->timeout_ms, &l->ld);
	if (rc == LDAP_SUCCESS) {
		if (l->bind_dn[0] == '\0') {
			rc = ldap_sasl_interactive_bind_s(l->ld, NULL,
							  "EXTERNAL", NULL,
							  NULL,
							  LDAP_SASL_QUIET,
							  sasl_defaults, NULL);
		} else {
			cred.bv_val = l->password;
			cred.bv_len = strlen(l->password);
			rc = ldap_sasl_bind_s(l->ld, l->bind_dn,
					      LDAP_SASL_SIMPLE, &cred, NULL,
					      NULL, NULL);
		}
	}
	if (rc != LDAP_SUCCESS) {
		ld_down(l);
		str_setf(error, "directory server %s: %s%s", l->uri,
			  l->bind_dn[0] != '\0' ? "bind as the service DN: " :
			  "SASL EXTERNAL bind: ", ldap_err2string(rc));
		return DIR_TEMPFAIL;
	}
	dir_ldap_backoff_reset(&l->backoff);
	return DIR_OK;
}

/* The status for an LDAP result code; drops the connection when it is
 * gone.  No message for the codes callers word themselves. */
static enum dir_status ld_status(struct ldir *l, int rc, const char *what,
				 struct str *error)
{
	switch (rc) {
	case LDAP_SUCCESS:
		return DIR_OK;
	case LDAP_NO_SUCH_OBJECT:
	case LDAP_NO_SUCH_ATTRIBUTE:
		return DIR_NOTFOUND;
	case LDAP_ALREADY_EXISTS:
	case LDAP_TYPE_OR_VALUE_EXISTS:
		return DIR_EXISTS;
	case LDAP_NOT_ALLOWED_ON_NONLEAF:
		str_setf(error, "%s: %s", what, ldap_err2string(rc));
		return DIR_REFUSED;
	case LDAP_INVALID_DN_SYNTAX:
	case LDAP_INVALID_SYNTAX:
	case LDAP_OBJECT_CLASS_VIOLATION:
	case LDAP_CONSTRAINT_VIOLATION:
	case LDAP_UNDEFINED_TYPE:
	case LDAP_NAMING_VIOLATION:
		str_setf(error, "directory server %s: %s: %s", l->uri, what,
			  ldap_err2string(rc));
		return DIR_INVALID;
	default:
		break;
	}
	str_setf(error, "directory server %s: %s: %s", l->uri, what,
		  ldap_err2string(rc));
	if (rc == LDAP_TIMEOUT || rc == LDAP_SERVER_DOWN ||
	    rc == LDAP_CONNECT_ERROR)
		ld_down(l);
	else if (rc_is_down(rc) || rc < 0)
		ld_drop(l);
	return DIR_TEMPFAIL;
}

enum op { OP_SEARCH, OP_ADD, OP_MODIFY, OP_DELETE };

struct req {
	enum op op;
	const char *dn;
	int scope;
	const char *filter;
	char **attrs;
	LDAPMod **mods;
	int sizelimit;		/* OP_SEARCH: entries at most, 0 = any */
	LDAPControl **ctrls;	/* OP_SEARCH: server controls, or NULL */
	LDAPMessage *res;	/* OP_SEARCH, freed by the caller */
};

static int req_run_once(struct ldir *l, struct req *r)
{
	struct timeval tv = dir_ldap_tv(l->timeout_ms);

	switch (r->op) {
	case OP_SEARCH:
		return ldap_search_ext_s(l->ld, r->dn, r->scope, r->filter,
					 r->attrs, 0, r->ctrls, NULL, &tv,
					 r->sizelimit, &r->res);
	case OP_ADD:
		return ldap_add_ext_s(l->ld, r->dn, r->mods, NULL, NULL);
	case OP_MODIFY:
		return ldap_modify_ext_s(l->ld, r->dn, r->mods, NULL, NULL);
	case OP_DELETE:
		return ldap_delete_ext_s(l->ld, r->dn, NULL, NULL);
	}
	return LDAP_OTHER;
}

/* Runs one request; a connection found dead is reopened and the request
 * retried once.  Returns the LDAP result code, or LDIR_NO_CONNECTION with
 * the reason in error. */
static int req_run(struct ldir *l, struct req *r, struct str *error)
{
	bool fresh = l->ld == NULL;
	int rc;

	r->res = NULL;
	if (ld_connect(l, error) != DIR_OK)
		return LDIR_NO_CONNECTION;
	rc = req_run_once(l, r);
	if ((rc == LDAP_SERVER_DOWN || rc == LDAP_CONNECT_ERROR) && !fresh) {
		if (r->res != NULL)
			ldap_msgfree(r->res);
		r->res = NULL;
		ld_drop(l);
		if (ld_connect(l, error) != DIR_OK)
			return LDIR_NO_CONNECTION;
		rc = req_run_once(l, r);
	}
	return rc;
}

static bool dn_ends_with(const char *dn, const char *suffix)
{
	size_t n = strlen(dn), k = strlen(suffix);

	return n >= k && strcasecmp(dn + n - k, suffix) == 0 &&
	       (n == k || dn[n - k - 1] == ',');
}

/* A missing search base is an answer ("no such domain") only when the
 * server found the container above it: ou=domains or ou=cos, or the base
 * DN for the state entry.  A tree without them (a wrong ldap_base_dn, a
 * database not loaded) is a temporary failure, never "unknown user". */
static bool notfound_is_answer(struct ldir *l, const char *base,
			       LDAPMessage *res)
{
	char *matched = NULL;
	bool ok = false;

	if (res == NULL || ldap_parse_result(l->ld, res, NULL, &matched, NULL,
					     NULL, NULL, 0) != LDAP_SUCCESS)
		return false;
	if (matched != NULL)
		ok = dn_ends_with(matched, l->domains_dn) ||
		     strcasecmp(matched, l->cos_dn) == 0 ||
		     (strcasecmp(base, l->state_dn) == 0 &&
		      strcasecmp(matched, l->base_dn) == 0);
	ldap_memfree(matched);
	return ok;
}

/* A search: DIR_OK with the result in *res_r (free with ldap_msgfree),
 * DIR_NOTFOUND when base does not exist but its container does.  With a
 * sizelimit, the first sizelimit entries are a success; -1 asks for no
 * limit but takes the server's size limit as an answer too.  ctrls:
 * server controls to send (the paged results control), or NULL. */
static enum dir_status ld_search_ctl(struct ldir *l, const char *base,
				     int scope, const char *filter,
				     const char *const *attrs, int sizelimit,
				     LDAPControl **ctrls, LDAPMessage **res_r,
				     struct str *error)
{
	struct req r = { .op = OP_SEARCH, .dn = base, .scope = scope,
			 .filter = filter, .attrs = (char **)attrs,
			 .sizelimit = sizelimit > 0 ? sizelimit : 0,
			 .ctrls = ctrls };
	enum dir_status st;
	int rc;

	*res_r = NULL;
	rc = req_run(l, &r, error);
	if (rc == LDIR_NO_CONNECTION)
		return DIR_TEMPFAIL;
	if (rc == LDAP_SIZELIMIT_EXCEEDED && sizelimit != 0 && r.res != NULL)
		rc = LDAP_SUCCESS;
	if (rc == LDAP_NO_SUCH_OBJECT && !notfound_is_answer(l, base, r.res)) {
		str_setf(error, "directory server %s: %s is missing (wrong "
			  "ldap_base_dn, or the tree is not set up)", l->uri,
			  strcasecmp(base, l->cos_dn) == 0 ||
			  dn_ends_with(base, l->cos_dn) ? l->cos_dn :
			  l->domains_dn);
		if (r.res != NULL)
			ldap_msgfree(r.res);
		return DIR_TEMPFAIL;
	}
	st = ld_status(l, rc, "search", error);
	if (st != DIR_OK) {
		if (r.res != NULL)
			ldap_msgfree(r.res);
		return st;
	}
	*res_r = r.res;
	return DIR_OK;
}

static enum dir_status ld_search(struct ldir *l, const char *base, int scope,
				 const char *filter, const char *const *attrs,
				 LDAPMessage **res_r, struct str *error)
{
	return ld_search_ctl(l, base, scope, filter, attrs, 0, NULL, res_r,
			     error);
}

/* ---- paged searches (RFC 2696) ---- */

/* One entry of a paged search; anything but DIR_OK stops it. */
typedef enum dir_status (*entry_fn)(struct ldir *l, LDAPMessage *e,
				    void *ctx, struct str *error);

int dir_ldap_page_cookie(LDAP *ld, LDAPMessage *res, struct berval *cookie)
{
	LDAPControl **ctrls = NULL, *c;
	ber_int_t estimate = 0;
	int r = 0;

	cookie->bv_len = 0;
	cookie->bv_val = NULL;
	if (ldap_parse_result(ld, res, NULL, NULL, NULL, NULL, &ctrls, 0) !=
	    LDAP_SUCCESS)
		return 0;
	c = ldap_control_find(LDAP_CONTROL_PAGEDRESULTS, ctrls, NULL);
	if (c != NULL &&
	    ldap_parse_pageresponse_control(ld, c, &estimate, cookie) !=
		    LDAP_SUCCESS)
		r = -1;
	ldap_controls_free(ctrls);
	return r;
}

/* Tells the server that a paged search ends here (RFC 2696: page size 0
 * with the last cookie); its answer does not matter. */
static void ld_page_abandon(struct ldir *l, const char *base, int scope,
			    const char *filter, struct berval *cookie)
{
	static const char *const no_attrs[] = { LDAP_NO_ATTRS, NULL };
	struct timeval tv = dir_ldap_tv(l->timeout_ms);
	LDAPControl *ctl = NULL, *ctrls[2] = { NULL, NULL };
	LDAPMessage *res = NULL;

	if (l->ld == NULL ||
	    ldap_create_page_control(l->ld, 0, cookie, 0, &ctl) !=
		    LDAP_SUCCESS)
		return;
	ctrls[0] = ctl;
	(void)ldap_search_ext_s(l->ld, base, scope, filter, (char **)no_attrs,
				0, ctrls, NULL, &tv, 0, &res);
	if (res != NULL)
		ldap_msgfree(res);
	ldap_control_free(ctl);
}

/* A search in pages of DIR_LDAP_PAGE_SIZE entries (fewer when limit is
 * nearer), so that a server's size limit for one answer does not cut it:
 * fn is called for each entry, until limit entries (0 = all) or the last
 * page.  A search cut short lets the server drop its state (page size 0).
 * With a limit, a size limit of the server is an answer, not an error. */
static enum dir_status ld_search_paged(struct ldir *l, const char *base,
				       int scope, const char *filter,
				       const char *const *attrs, size_t limit,
				       entry_fn fn, void *ctx,
				       struct str *error)
{
	struct berval cookie = { 0, NULL };
	enum dir_status st = DIR_OK;
	size_t got = 0;
	bool more = true, cut = false;

	for (unsigned page = 0; st == DIR_OK && more; page++) {
		LDAPControl *ctl = NULL, *ctrls[2] = { NULL, NULL };
		LDAPMessage *res = NULL;
		size_t want = DIR_LDAP_PAGE_SIZE;

		if (limit > 0 && limit - got < want)
			want = limit - got;
		st = ld_connect(l, error);
		if (st == DIR_OK &&
		    ldap_create_page_control(l->ld, (ber_int_t)want, &cookie,
					     0, &ctl) != LDAP_SUCCESS)
			st = ld_status(l, LDAP_NO_MEMORY, "paged search",
				       error);
		ctrls[0] = ctl;
		ber_memfree(cookie.bv_val);
		cookie.bv_val = NULL;
		cookie.bv_len = 0;
		if (st == DIR_OK)
			st = ld_search_ctl(l, base, scope, filter, attrs,
					   limit > 0 ? -1 : 0, ctrls, &res,
					   error);
		if (ctl != NULL)
			ldap_control_free(ctl);
		for (LDAPMessage *e = st == DIR_OK && res != NULL ?
				      ldap_first_entry(l->ld, res) : NULL;
		     st == DIR_OK && e != NULL && (limit == 0 || got < limit);
		     e = ldap_next_entry(l->ld, e), got++)
			st = fn(l, e, ctx, error);
		if (st == DIR_OK && res != NULL &&
		    dir_ldap_page_cookie(l->ld, res, &cookie) < 0)
			st = ld_status(l, LDAP_DECODING_ERROR, "paged search",
				       error);
		if (res != NULL)
			ldap_msgfree(res);
		more = cookie.bv_len > 0;
		if (st == DIR_OK && more && limit > 0 && got >= limit) {
			ld_page_abandon(l, base, scope, filter, &cookie);
			more = false;
		} else if (more && page + 1 >= DIR_LDAP_PAGES_MAX) {
			cut = true;
			more = false;
		}
	}
	ber_memfree(cookie.bv_val);
	if (st == DIR_OK && cut) {
		str_setf(error, "directory server %s: search under %s returns "
			 "more than %d pages", l->uri, base,
			 DIR_LDAP_PAGES_MAX);
		st = DIR_TEMPFAIL;
	}
	return st;
}

static enum dir_status ld_write(struct ldir *l, enum op op, const char *dn,
				LDAPMod **mods, struct str *error)
{
	static const char *const what[] = {
		[OP_SEARCH] = "search", [OP_ADD] = "add",
		[OP_MODIFY] = "modify", [OP_DELETE] = "delete",
	};
	struct req r = { .op = op, .dn = dn, .mods = mods };
	int rc;

	if (l->readonly) {
		str_setf(error, "directory %s is open read-only", l->uri);
		return DIR_REFUSED;
	}
	str_clear(error);
	rc = req_run(l, &r, error);
	if (rc == LDIR_NO_CONNECTION)
		return DIR_TEMPFAIL;
	return ld_status(l, rc, what[op], error);
}

/* ---- modification lists ---- */

struct mods {
	LDAPMod *list[LDIR_MODS_MAX + 1];
	LDAPMod mod[LDIR_MODS_MAX];
	size_t n;
};

/* One attribute with the values in vals (NULL-terminated; NULL or empty
 * for none, which with LDAP_MOD_REPLACE removes the attribute). */
static void mods_addv(struct mods *m, int op, const char *attr,
		      const char *const *vals)
{
	LDAPMod *mod;
	size_t n = 0;

	if (m->n >= LDIR_MODS_MAX)
		abort();	/* our bug: the callers' counts are fixed */
	mod = &m->mod[m->n];
	mod->mod_op = op;
	mod->mod_type = xstrdup(attr);
	while (vals != NULL && vals[n] != NULL)
		n++;
	mod->mod_values = xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		mod->mod_values[i] = xstrdup(vals[i]);
	if (n == 0 && op != LDAP_MOD_ADD) {
		free(mod->mod_values);
		mod->mod_values = NULL;
	}
	m->list[m->n++] = mod;
	m->list[m->n] = NULL;
}

static void mods_add(struct mods *m, int op, const char *attr,
		     const char *value)
{
	const char *vals[2] = { value, NULL };

	mods_addv(m, op, attr, vals);
}

static void mods_add_u64(struct mods *m, int op, const char *attr,
			 uint64_t value)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)value);
	mods_add(m, op, attr, buf);
}

static void mods_free(struct mods *m)
{
	for (size_t i = 0; i < m->n; i++) {
		free(m->mod[i].mod_type);
		for (size_t k = 0; m->mod[i].mod_values != NULL &&
				   m->mod[i].mod_values[k] != NULL; k++) {
			char *v = m->mod[i].mod_values[k];

			explicit_bzero(v, strlen(v));
			free(v);
		}
		free(m->mod[i].mod_values);
	}
	m->n = 0;
	m->list[0] = NULL;
}

/* ---- reading entries ---- */

/* The first value of attr (malloc'd), or NULL. */
static char *val_str(LDAP *ld, LDAPMessage *e, const char *attr)
{
	struct berval **v = ldap_get_values_len(ld, e, attr);
	char *r = NULL;

	if (v != NULL && v[0] != NULL) {
		r = xmalloc(v[0]->bv_len + 1);
		memcpy(r, v[0]->bv_val, v[0]->bv_len);
		r[v[0]->bv_len] = '\0';
	}
	ldap_value_free_len(v);
	return r;
}

static int64_t val_i64(LDAP *ld, LDAPMessage *e, const char *attr)
{
	char *s = val_str(ld, e, attr), *end;
	long long v = 0;

	if (s != NULL) {
		errno = 0;
		v = strtoll(s, &end, 10);
		if (errno != 0 || *end != '\0' || v < 0)
			v = 0;
	}
	free(s);
	return (int64_t)v;
}

/* Every value of attr, NULL-terminated (never NULL itself). */
static char **val_all(LDAP *ld, LDAPMessage *e, const char *attr,
		      size_t *n_r)
{
	struct berval **v = ldap_get_values_len(ld, e, attr);
	size_t n = v != NULL ? (size_t)ldap_count_values_len(v) : 0;
	char **r = xcalloc(n + 1, sizeof(char *));

	for (size_t i = 0; i < n; i++) {
		r[i] = xmalloc(v[i]->bv_len + 1);
		memcpy(r[i], v[i]->bv_val, v[i]->bv_len);
		r[i][v[i]->bv_len] = '\0';
	}
	ldap_value_free_len(v);
	*n_r = n;
	return r;
}

static bool has_class(LDAP *ld, LDAPMessage *e, const char *cls)
{
	struct berval **v = ldap_get_values_len(ld, e, "objectClass");
	bool found = false;

	for (size_t i = 0; v != NULL && v[i] != NULL && !found; i++)
		found = v[i]->bv_len == strlen(cls) &&
			strncasecmp(v[i]->bv_val, cls, v[i]->bv_len) == 0;
	ldap_value_free_len(v);
	return found;
}

static enum kind kind_of(LDAP *ld, LDAPMessage *e)
{
	if (has_class(ld, e, "ternAccount"))
		return KIND_ACCOUNT;
	if (has_class(ld, e, "ternAlias"))
		return KIND_ALIAS;
	if (has_class(ld, e, "ternDistributionList"))
		return KIND_LIST;
	return KIND_NONE;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_strv(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* The records of a paged search, as they come. */
struct collect {
	void **list;
	size_t n;
};

/* ---- the serial and the id counter ---- */

static const char *const serial_attrs[] = { "ternSerial", NULL };
static const char *const csn_attrs[] = { "contextCSN", NULL };

static void hash_add(uint64_t *h, const char *s)
{
	for (; s != NULL && *s != '\0'; s++)
		*h = (*h ^ (unsigned char)*s) * 1099511628211ULL;
	*h = (*h ^ 0xff) * 1099511628211ULL;
}

static enum dir_status ld_serial(struct dir *base, uint64_t *serial_r,
				 struct str *error)
{
	struct ldir *l = (struct ldir *)base;
	uint64_t h = 14695981039346656037ULL;
	LDAPMessage *res = NULL, *e;
	enum dir_status st;
	char **v;
	size_t n;

	*serial_r = 0;
	st = ld_search(l, l->base_dn, LDAP_SCOPE_BASE, "(objectClass=*)",
		       csn_attrs, &res, error);
	if (st == DIR_NOTFOUND) {
		str_setf(error, "base DN %s does not exist on %s", l->base_dn,
			  l->uri);
		return DIR_TEMPFAIL;
	}
	if (st != DIR_OK)
		return st;
	e = ldap_first_entry(l->ld, res);
	v = e != NULL ? val_all(l->ld, e, "contextCSN", &n) :
	    xcalloc(1, sizeof(char *));
	for (size_t i = 0; v[i] != NULL; i++)
		hash_add(&h, v[i]);
	free_strv(v, e != NULL ? n : 0);
	ldap_msgfree(res);
	st = ld_search(l, l->state_dn, LDAP_SCOPE_BASE, "(objectClass=*)",
		       serial_attrs, &res, error);
	if (st == DIR_OK && (e = ldap_first_entry(l->ld, res)) != NULL) {
		char *s = val_str(l->ld, e, "ternSerial");

		hash_add(&h, s);
		free(s);
	} else if (st == DIR_NOTFOUND) {
		st = DIR_OK;	/* not provisioned yet */
	}
	if (res != NULL)
		ldap_msgfree(res);
	*serial_r = h;
	return st;
}

static void memo_clear(struct memo *m, size_t *n)
{
	for (size_t i = 0; i < *n; i++) {
		free(m[i].name);
		free(m[i].catchall);
	}
	*n = 0;
}

static void ld_forget(struct dir *base)
{
	struct ldir *l = (struct ldir *)base;

	memo_clear(l->domains, &l->ndomains);
	memo_clear(l->coses, &l->ncoses);
}

static const struct memo *memo_find(const struct memo *m, size_t n,
				    const char *name)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(m[i].name, name) == 0)
			return &m[i];
	}
	return NULL;
}

/* Keeps a fact (read-only handles only; a full table starts again). */
static void memo_add(struct ldir *l, struct memo *m, size_t *n,
		     const char *name, bool found, const char *catchall,
		     uint64_t quota)
{
	if (!l->readonly)
		return;
	if (*n == LDIR_MEMO_MAX)
		memo_clear(m, n);
	m[*n].name = xstrdup(name);
	m[*n].found = found;
	m[*n].catchall = catchall != NULL ? xstrdup(catchall) : NULL;
	m[*n].quota = quota;
	(*n)++;
}

/* After a successful write; a failure only delays cache invalidation
 * until the contextCSN changes or the caches expire. */
static void serial_bump(struct ldir *l)
{
	struct str *err = str_new(64, 1024);
	struct mods m = { .n = 0 };

	ld_forget(&l->base);
	mods_add(&m, LDAP_MOD_INCREMENT, "ternSerial", "1");
	(void)ld_write(l, OP_MODIFY, l->state_dn, m.list, err);
	mods_free(&m);
	str_free(&err);
}

static enum dir_status domain_read(struct ldir *l, const char *name,
				   LDAPMessage **res_r, LDAPMessage **e_r,
				   struct str *error);
static enum dir_status ld_cos_get(struct dir *base, const char *name,
				  struct dir_cos **cos_r, struct str *error);

/* A domain's catch-all (malloc'd, or NULL) and default quota, from the
 * memo or a read: DIR_OK, DIR_NOTFOUND or an error. */
static enum dir_status domain_facts(struct ldir *l, const char *name,
				    char **catchall_r, uint64_t *quota_r,
				    struct str *error)
{
	const struct memo *f = memo_find(l->domains, l->ndomains, name);
	LDAPMessage *res = NULL, *e;
	enum dir_status st;
	char *catchall = NULL;
	uint64_t quota = 0;

	if (f == NULL) {
		st = domain_read(l, name, &res, &e, error);
		if (st == DIR_OK) {
			catchall = val_str(l->ld, e, "ternCatchAll");
			quota = (uint64_t)val_i64(l->ld, e,
						  "ternDefaultQuota");
		}
		if (res != NULL)
			ldap_msgfree(res);
		if (st != DIR_OK && st != DIR_NOTFOUND) {
			free(catchall);
			return st;
		}
		memo_add(l, l->domains, &l->ndomains, name, st == DIR_OK,
			 catchall, quota);
	} else {
		st = f->found ? DIR_OK : DIR_NOTFOUND;
		catchall = f->catchall != NULL ? xstrdup(f->catchall) : NULL;
		quota = f->quota;
	}
	if (catchall_r != NULL)
		*catchall_r = catchall;
	else
		free(catchall);
	if (quota_r != NULL)
		*quota_r = quota;
	return st;
}

/* A class of service's quota (0 when it does not exist), from the memo
 * or a read. */
static enum dir_status cos_quota(struct ldir *l, const char *name,
				 uint64_t *quota_r, struct str *error)
{
	const struct memo *f = memo_find(l->coses, l->ncoses, name);
	struct dir_cos *cos = NULL;
	enum dir_status st;

	if (f != NULL) {
		*quota_r = f->quota;
		return DIR_OK;
	}
	st = ld_cos_get(&l->base, name, &cos, error);
	*quota_r = cos != NULL ? cos->quota : 0;
	dir_cos_free(&cos);
	if (st == DIR_NOTFOUND || st == DIR_INVALID)
		st = DIR_OK;
	if (st == DIR_OK)
		memo_add(l, l->coses, &l->ncoses, name, *quota_r != 0, NULL,
			 *quota_r);
	return st;
}

/*
 * ternNextId by compare-and-swap.  past 0: takes the next id (*id_r) for a
 * new account; past > 0: moves ternNextId beyond past (an imported
 * account's id) when it is not already.
 */
static enum dir_status next_id(struct ldir *l, int64_t past, int64_t *id_r,
			       struct str *error)
{
	static const char *const attrs[] = { "ternNextId", NULL };
	enum dir_status st = DIR_TEMPFAIL;

	for (int i = 0; i < LDIR_CAS_TRIES; i++) {
		LDAPMessage *res = NULL, *e;
		struct mods m = { .n = 0 };
		int64_t id = 0;

		st = ld_search(l, l->state_dn, LDAP_SCOPE_BASE,
			       "(objectClass=*)", attrs, &res, error);
		if (st == DIR_OK && (e = ldap_first_entry(l->ld, res)) != NULL)
			id = val_i64(l->ld, e, "ternNextId");
		if (res != NULL)
			ldap_msgfree(res);
		if (st == DIR_OK && id <= 0) {
			str_setf(error, "%s has no ternNextId", l->state_dn);
			return DIR_TEMPFAIL;
		}
		if (st != DIR_OK)
			return st == DIR_NOTFOUND ? DIR_TEMPFAIL : st;
		if (past > 0 && id > past)
			return DIR_OK;
		mods_add_u64(&m, LDAP_MOD_DELETE, "ternNextId", (uint64_t)id);
		mods_add_u64(&m, LDAP_MOD_ADD, "ternNextId",
			     (uint64_t)(past > 0 ? past : id) + 1);
		str_clear(error);
		st = ld_write(l, OP_MODIFY, l->state_dn, m.list, error);
		mods_free(&m);
		if (st == DIR_OK) {
			if (id_r != NULL)
				*id_r = id;
			return DIR_OK;
		}
		if (str_len(error) > 0)
			return st;	/* not a lost race */
	}
	str_setf(error, "could not allocate an account id (contention)");
	return DIR_TEMPFAIL;
}

/* ---- lookups ---- */

static const char *const addr_attrs[] = {
	"objectClass", "mail", "ternAccountId", "ternMailHost",
	"ternAccountStatus", "ternAliasTarget", "ternListMember",
	"displayName", NULL,
};

/* The entry named by address (any kind) in *res_r and *e_r; KIND_NONE with
 * *res_r NULL when there is none. */
static enum dir_status addr_lookup(struct ldir *l, const char *address,
				   enum kind *kind_r, LDAPMessage **res_r,
				   LDAPMessage **e_r, struct str *error)
{
	char *filter = filter_make(NULL, "mail", address);
	char *base = domain_dn(l, domain_of(address));
	enum dir_status st = DIR_INVALID;

	*kind_r = KIND_NONE;
	*res_r = NULL;
	*e_r = NULL;
	if (filter == NULL || base == NULL)
		str_setf(error, "address %.300s is too long", address);
	else
		st = ld_search(l, base, LDAP_SCOPE_ONELEVEL, filter,
			       addr_attrs, res_r, error);
	free(filter);
	free(base);
	if (st == DIR_NOTFOUND)
		return DIR_OK;	/* no such domain */
	if (st != DIR_OK)
		return st;
	for (LDAPMessage *e = ldap_first_entry(l->ld, *res_r); e != NULL;
	     e = ldap_next_entry(l->ld, e)) {
		enum kind k = kind_of(l->ld, e);

		if (k != KIND_NONE) {
			*kind_r = k;
			*e_r = e;
			return DIR_OK;
		}
	}
	ldap_msgfree(*res_r);
	*res_r = NULL;
	return DIR_OK;
}

static enum dir_status addr_kind(struct ldir *l, const char *address,
				 enum kind *kind_r, struct str *error)
{
	LDAPMessage *res, *e;
	enum dir_status st = addr_lookup(l, address, kind_r, &res, &e, error);

	if (res != NULL)
		ldap_msgfree(res);
	return st;
}

static const char *const domain_attrs[] = {
	"ternDomainName", "ternCosName", "ternCatchAll", "ternDefaultQuota",
	NULL,
};

/* The domain entry: DIR_NOTFOUND (no message) when it does not exist. */
static enum dir_status domain_read(struct ldir *l, const char *name,
				   LDAPMessage **res_r, LDAPMessage **e_r,
				   struct str *error)
{
	char *dn = domain_dn(l, name);
	enum dir_status st;

	*e_r = NULL;
	if (dn == NULL) {
		*res_r = NULL;
		str_setf(error, "domain %.300s is too long", name);
		return DIR_INVALID;
	}
	st = ld_search(l, dn, LDAP_SCOPE_BASE, "(objectClass=ternDomain)",
		       domain_attrs, res_r, error);
	free(dn);
	if (st == DIR_OK && (*e_r = ldap_first_entry(l->ld, *res_r)) == NULL)
		st = DIR_NOTFOUND;
	if (st != DIR_OK && *res_r != NULL) {
		ldap_msgfree(*res_r);
		*res_r = NULL;
	}
	return st;
}

static enum dir_status domain_exists(struct ldir *l, const char *name,
				     struct str *error)
{
	LDAPMessage *res, *e;
	enum dir_status st = domain_read(l, name, &res, &e, error);

	if (res != NULL)
		ldap_msgfree(res);
	if (st == DIR_NOTFOUND)
		str_setf(error, "domain %s does not exist", name);
	return st;
}

/* A target in one of our domains must exist; others are external. */
static enum dir_status target_check(struct ldir *l, const char *target,
				    struct str *error)
{
	enum dir_status st = domain_exists(l, domain_of(target), error);
	enum kind kind;

	if (st == DIR_NOTFOUND)
		return DIR_OK;
	if (st == DIR_OK)
		st = addr_kind(l, target, &kind, error);
	if (st == DIR_OK && kind == KIND_NONE) {
		str_setf(error, "%s does not exist (no account, alias or "
			  "list)", target);
		st = DIR_NOTFOUND;
	}
	return st;
}

static enum dir_status count_one(struct ldir *l, LDAPMessage *e, void *ctx,
				 struct str *error)
{
	(void)l;
	(void)e;
	(void)error;
	++*(int64_t *)ctx;
	return DIR_OK;
}

/* Counts entries matching filter under base (one level). */
static enum dir_status count_entries(struct ldir *l, const char *base,
				     int scope, const char *filter,
				     int64_t *n_r, struct str *error)
{
	static const char *const no_attrs[] = { LDAP_NO_ATTRS, NULL };

	*n_r = 0;
	return ld_search_paged(l, base, scope, filter, no_attrs, 0,
			       count_one, n_r, error);
}

/* ---- classes of service ---- */

static const char *const cos_attrs[] = {
	"cn", "ternQuota", "ternMaxMessageSize", "ternMaxRecipients", NULL,
};

static enum dir_status cos_check(const struct dir_cos *cos, struct str *error)
{
	enum dir_status st = dir_check_cos_name(cos->name, error);

	if (st == DIR_OK)
		st = dir_check_u64("quota", cos->quota, error);
	if (st == DIR_OK)
		st = dir_check_u64("max_message_size", cos->max_message_size,
				   error);
	return st;
}

static enum dir_status cos_write(struct ldir *l, const struct dir_cos *cos,
				 bool add, struct str *error)
{
	enum dir_status st = cos_check(cos, error);
	int op = add ? LDAP_MOD_ADD : LDAP_MOD_REPLACE;
	struct mods m = { .n = 0 };
	char *dn;

	if (st != DIR_OK)
		return st;
	dn = dn_make("cn", cos->name, l->cos_dn);
	if (add) {
		mods_add(&m, op, "objectClass", "ternCos");
		mods_add(&m, op, "cn", cos->name);
	}
	mods_add_u64(&m, op, "ternQuota", cos->quota);
	mods_add_u64(&m, op, "ternMaxMessageSize", cos->max_message_size);
	mods_add_u64(&m, op, "ternMaxRecipients", cos->max_recipients);
	st = ld_write(l, add ? OP_ADD : OP_MODIFY, dn, m.list, error);
	mods_free(&m);
	free(dn);
	if (st == DIR_EXISTS)
		str_setf(error, "cos %s exists already", cos->name);
	else if (st == DIR_NOTFOUND)
		str_setf(error, "cos %s does not exist", cos->name);
	if (st == DIR_OK)
		serial_bump(l);
	return st;
}

static enum dir_status ld_cos_add(struct dir *base, const struct dir_cos *cos,
				  struct str *error)
{
	return cos_write((struct ldir *)base, cos, true, error);
}

static enum dir_status ld_cos_set(struct dir *base, const struct dir_cos *cos,
				  struct str *error)
{
	return cos_write((struct ldir *)base, cos, false, error);
}

static struct dir_cos *cos_entry(LDAP *ld, LDAPMessage *e)
{
	struct dir_cos *c = xcalloc(1, sizeof(*c));

	c->name = val_str(ld, e, "cn");
	if (c->name == NULL)
		c->name = xstrdup("");
	c->quota = (uint64_t)val_i64(ld, e, "ternQuota");
	c->max_message_size = (uint64_t)val_i64(ld, e, "ternMaxMessageSize");
	c->max_recipients = (uint32_t)val_i64(ld, e, "ternMaxRecipients");
	return c;
}

static enum dir_status ld_cos_get(struct dir *base, const char *name,
				  struct dir_cos **cos_r, struct str *error)
{
	struct ldir *l = (struct ldir *)base;
	LDAPMessage *res = NULL, *e = NULL;
	enum dir_status st = dir_check_cos_name(name, error);
	char *dn;

	*cos_r = NULL;
	if (st != DIR_OK)
		return st == DIR_INVALID ? DIR_NOTFOUND : st;
	dn = dn_make("cn", name, l->cos_dn);
	st = ld_search(l, dn, LDAP_SCOPE_BASE, "(objectClass=ternCos)",
		       cos_attrs, &res, error);
	free(dn);
	if (st == DIR_OK && (e = ldap_first_entry(l->ld, res)) != NULL)
		*cos_r = cos_entry(l->ld, e);
	else if (st == DIR_OK || st == DIR_NOTFOUND)
		st = DIR_NOTFOUND;
	if (st == DIR_NOTFOUND)
		str_setf(error, "cos %s does not exist", name);
	if (res != NULL)
		ldap_msgfree(res);
	return st;
}

static int cmp_cos(const void *a, const void *b)
{
	return strcmp((*(struct dir_cos *const *)a)->name,
		      (*(struct dir_cos *const *)b)->name);
}

static enum dir_status ld_cos_list(struct dir *base, struct dir_cos ***list_r,
				   size_t *count_r, struct str *error)
{
	struct ldir *l = (struct ldir *)base;
	struct dir_cos **list = NULL;
	LDAPMessage *res = NULL;
	enum dir_status st;
	size_t n = 0;

	*list_r = NULL;
	*count_r = 0;
	st = ld_search(l, l->cos_dn, LDAP_SCOPE_ONELEVEL,
		       "(objectClass=ternCos)", cos_attrs, &res, error);
	if (st == DIR_NOTFOUND)
		st = DIR_OK;
	for (LDAPMessage *e = res != NULL ? ldap_first_entry(l->ld, res) :
			      NULL; st == DIR_OK && e != NULL;
	     e = ldap_next_entry(l->ld, e))
		dir_array_push((void ***)&list, &n, cos_entry(l->ld, e));
	if (res != NULL)
		ldap_msgfree(res);
	if (st != DIR_OK)
		return st;
	if (n > 1)
		qsort(list, n, sizeof(*list), cmp_cos);
	*list_r = list;
	*count_r = n;
	return DIR_OK;
}

static enum dir_status ld_cos_del(struct dir *base, const char *name,
				  struct str *error)
{
	struct ldir *l = (struct ldir *)base;
	enum dir_status st = dir_check_cos_name(name, error);
	int64_t ndom = 0, nacct = 0;
	struct dir_cos *cos = NULL;
	char *f1 = NULL, *f2 = NULL, *dn = NULL;

	if (st == DIR_OK && strcmp(name, "default") == 0) {
		str_setf(error, "cos default cannot be deleted");
		st = DIR_REFUSED;
	}
	if (st == DIR_OK)
		st = ld_cos_get(base, name, &cos, error);
	dir_cos_free(&cos);
	if (st != DIR_OK)
		return st;
	f1 = filter_make("ternDomain", "ternCosName", name);
	f2 = filter_make("ternAccount", "ternCosName", name);
	st = count_entries(l, l->domains_dn, LDAP_SCOPE_ONELEVEL, f1, &ndom,
			   error);
	if (st == DIR_OK)
		st = count_entries(l, l->domains_dn, LDAP_SCOPE_SUBTREE, f2,
				   &nacct, error);
	if (st == DIR_OK && ndom + nacct > 0) {
		str_setf(error, "cos %s is still used by %lld domain%s and "
			  "%lld account%s", name, (long long)ndom,
			  ndom == 1 ? "" : "s", (long long)nacct,
			  nacct == 1 ? "" : "s");
		st = DIR_REFUSED;
	}
	if (st == DIR_OK) {
		dn = dn_make("cn", name, l->cos_dn);
		st = ld_write(l, OP_DELETE, dn, NULL, error);
		if (st == DIR_NOTFOUND)
			str_setf(error, "cos %s does not exist", name);
	}
	if (st == DIR_OK)
		serial_bump(l);
	free(f1);
	free(f2);
	free(dn);
	return st;
}

/* ---- domains ---- */

static enum dir_status cos_must_exist(struct ldir *l, const char *name,
				      struct str *error)
{
	struct dir_cos *cos = NULL;
	enum dir_status st = ld_cos_get(&l->base, name, &cos, error);

	dir_cos_free(&cos);
	return st;
}

static enum dir_status domain_write(struct ldir *l,
				    const struct dir_domain *dom, bool add,
				    struct str *error)
{
	char *name = NULL, *catchall = NULL, *dn = NULL;
	int op = add ? LDAP_MOD_ADD : LDAP_MOD_REPLACE;
	struct mods m = { .n = 0 };
	enum dir_status st;

	st = dir_norm_domain(dom->name, &name, error);
	if (st == DIR_OK && dom->catchall != NULL && dom->catchall[0] != '\0')
		st = dir_norm_address(dom->catchall, &catchall, error);
	if (st == DIR_OK)
		st = dir_check_u64("default quota", dom->default_quota, error);
	if (st == DIR_OK && !add)
		st = domain_exists(l, name, error);
	if (st == DIR_OK && (add || dom->cos != NULL))
		st = cos_must_exist(l, dom->cos != NULL ? dom->cos : "default",
				    error);
	if (st == DIR_OK && catchall != NULL)
		st = target_check(l, catchall, error);
	if (st != DIR_OK)
		goto out;
	dn = domain_dn(l, name);
	if (add) {
		mods_add(&m, op, "objectClass", "ternDomain");
		mods_add(&m, op, "ternDomainName", name);
	}
	if (add || dom->cos != NULL)
		mods_add(&m, op, "ternCosName",
			 dom->cos != NULL ? dom->cos : "default");
	if (catchall != NULL || !add)
		mods_add(&m, op, "ternCatchAll", catchall);
	mods_add_u64(&m, op, "ternDefaultQuota", dom->default_quota);
	st = ld_write(l, add ? OP_ADD : OP_MODIFY, dn, m.list, error);
	if (st == DIR_EXISTS)
		str_setf(error, "domain %s exists already", name);
	else if (st == DIR_NOTFOUND)
		str_setf(error, "domain %s does not exist", name);
	if (st == DIR_OK)
		serial_bump(l);
out:
	mods_free(&m);
	free(dn);
	free(name);
	free(catchall);
	return st;
}

static enum dir_status ld_domain_add(struct dir *base,
				     const struct dir_domain *dom,
				     struct str *error)
{
	return domain_write((struct ldir *)base, dom, true, error);
}

static enum dir_status ld_domain_set(struct dir *base,
				     const struct dir_domain *dom,
				     struct str *error)
{
	return domain_write((struct ldir *)base, dom, false, error);
}

static const char *plural(int64_t n, const char *one, const char *many)
{
	return n == 1 ? one : many;
}

static enum dir_status ld_domain_del(struct dir *base, const char *name,
				     struct str *error)
{
	struct ldir *l = (struct ldir *)base;
	int64_t na = 0, nal = 0, nl = 0;
	char *norm = NULL, *dn = NULL;
	enum dir_status st;

	st = dir_norm_domain(name, &norm, error);
	if (st == DIR_OK)
		st = domain_exists(l, norm, error);
	if (st == DIR_OK)
		dn = domain_dn(l, norm);
	if (st == DIR_OK)
		st = count_entries(l, dn, LDAP_SCOPE_ONELEVEL,
				   "(objectClass=ternAccount)", &na, error);
	if (st == DIR_OK)
		st = count_entries(l, dn, LDAP_SCOPE_ONELEVEL,
				   "(objectClass=ternAlias)", &nal, error);
	if (st == DIR_OK)
		st = count_entries(l, dn, LDAP_SCOPE_ONELEVEL,
				   "(objectClass=ternDistributionList)", &nl,
				   error);
	if (st == DIR_OK && na + nal + nl > 0) {
		str_setf(error, "domain %s still has %lld %s, %lld %s and "
			  "%lld %s: delete them first", norm, (long long)na,
			  plural(na, "account", "accounts"), (long long)nal,
			  plural(nal, "alias", "aliases"), (long long)nl,
			  plural(nl, "list", "lists"));
		st = DIR_REFUSED;
	}
	if (st == DIR_OK)
		st = ld_write(l, OP_DELETE, dn, NULL, error);
	if (st == DIR_NOTFOUND)
		str_setf(error, "domain %s does not exist", norm);
	if (st == DIR_OK)
		serial_bump(l);
	free(dn);
	free(norm);
	return st;
}

/* The count of a domain's accounts, below its entry dn. */
static enum dir_status domain_count(struct ldir *l, struct dir_domain *d,
				    const char *dn, struct str *error)
{
	int64_t n = 0;
	enum dir_status st;

	if (dn == NULL)
		return ld_status(l, LDAP_DECODING_ERROR, "entry DN", error);
	st = count_entries(l, dn, LDAP_SCOPE_ONELEVEL,
			   "(objectClass=ternAccount)", &n, error);
	d->accounts = (uint32_t)n;
	return st;
}

/* A domain record without its count of accounts, and its entry's DN in
 * *dn_r (malloc'd, NULL when it does not decode). */
static struct dir_domain *domain_entry(struct ldir *l, LDAPMessage *e,
				       char **dn_r)
{
	struct dir_domain *d = xcalloc(1, sizeof(*d));
	char *dn;

	d->name = val_str(l->ld, e, "ternDomainName");
	if (d->name == NULL)
		d->name = xstrdup("");
	d->cos = val_str(l->ld, e, "ternCosName");
	if (d->cos == NULL)
		d->cos = xstrdup("default");
	d->catchall = val_str(l->ld, e, "ternCatchAll");
	d->default_quota = (uint64_t)val_i64(l->ld, e, "ternDefaultQuota");
	dn = ldap_get_dn(l->ld, e);
	*dn_r = dn != NULL ? xstrdup(dn) : NULL;
	ldap_memfree(dn);
	return d;
}

static enum dir_status ld_domain_get(struct dir *base, const char *name,
				     struct dir_domain **dom_r,
				     struct str *error)
{
	struct ldir *l = (struct ldir *)base;
	LDAPMessage *res = NULL, *e;
	enum dir_status st;
	char *norm = NULL, *dn = NULL;

	*dom_r = NULL;
	st = dir_norm_domain(name, &norm, error);
	if (st == DIR_OK)
		st = domain_read(l, norm, &res, &e, error);
	if (st == DIR_OK) {
		*dom_r = domain_entry(l, e, &dn);
		st = domain_count(l, *dom_r, dn, error);
		free(dn);
	}
	if (st == DIR_NOTFOUND)
		str_setf(error, "domain %s does not exist", norm);
	if (st != DIR_OK)
		dir_domain_free(dom_r);
	if (res != NULL)
		ldap_msgfree(res);
	free(norm);
	return st;
}

/* The domains and their DNs; counted once the paged search is over (a
 * server keeps one paged search per connection). */
struct domains {
	struct collect c;
	char **dns;
	size_t ndns;
};

static enum dir_status collect_domain(struct ldir *l, LDAPMessage *e,
				      void *ctx, struct str *error)
{
	struct domains *d = ctx;
	char *dn = NULL;

	(void)error;
	dir_array_push(&d->c.list, &d->c.n, domain_entry(l, e, &dn));
	dir_array_push((void ***)&d->dns, &d->ndns, dn);
	return DIR_OK;
}

static int cmp_domain(const void *a, const void *b)
{
	return strcmp((*(struct dir_domain *const *)a)->name,
		      (*(struct dir_domain *const *)b)->name);
}

static enum dir_status ld_domain_list(struct dir *base,
				      struct dir_domain ***list_r,
				      size_t *count_r, struct str *error)
{
	struct ldir *l = (struct ldir *)base;
	struct domains d = { { NULL, 0 }, NULL, 0 };
	struct collect c;
	enum dir_status st;

	*list_r = NULL;
	*count_r = 0;
	st = ld_search_paged(l, l->domains_dn, LDAP_SCOPE_ONELEVEL,
			     "(objectClass=ternDomain)", domain_attrs, 0,
			     collect_domain, &d, error);
	if (st == DIR_NOTFOUND)
		st = DIR_OK;
	c = d.c;
	for (size_t i = 0; st == DIR_OK && i < c.n; i++)
		st = domain_count(l, c.list[i], d.dns[i], error);
	free_strv(d.dns, d.ndns);
	if (st != DIR_OK) {
		dir_domain_array_free((struct dir_domain ***)&c.list, c.n);
		return st;
	}
	if (c.n > 1)
		qsort(c.list, c.n, sizeof(*c.list), cmp_domain);
	*list_r = (struct dir_domain **)c.list;
	*count_r = c.n;
	return DIR_OK;
}

/* ---- accounts ---- */

static const char *const account_attrs[] = {
	"objectClass", "mail", "displayName", "userPassword", "ternAccountId",
	"ternQuota", "ternAccountStatus", "ternMailHost", "ternCosName",
	"ternCreated", NULL,
};

/* "{ARGON2}$argon2id$..." or "{CRYPT}$6$..." (malloc'd). */
static char *password_value(const char *hash)
{
	return fmt_dup("%s%s", hash[1] == 'a' ? "{ARGON2}" : "{CRYPT}",
		       hash);
}

/* The stored hash without its {SCHEME} for Tern's schemes; others are
 * kept whole (no Tern login: dir_password_verify() refuses them). */
static char *password_hash_of(LDAP *ld, LDAPMessage *e)
{
	char *v = val_str(ld, e, "userPassword"), *h;
	size_t skip = 0;

	if (v == NULL)
		return NULL;
	if (strncasecmp(v, "{ARGON2}", 8) == 0)
		skip = 8;
	else if (strncasecmp(v, "{CRYPT}", 7) == 0)
		skip = 7;
	h = xstrdup(v + skip);
	explicit_bzero(v, strlen(v));
	free(v);
	return h;
}

static const char *cn_of(const struct dir_account *a, const char *addr)
{
	return a->display_name != NULL && a->display_name[0] != '\0' ?
	       a->display_name : addr;
}

/* The message for a name taken in the shared namespace. */
static void name_taken(struct ldir *l, const char *addr, struct str *error)
{
	struct str *tmp = str_new(64, 1024);
	enum kind kind = KIND_NONE;

	if (addr_kind(l, addr, &kind, tmp) != DIR_OK)
		kind = KIND_NONE;
	str_setf(error, "%s %s exists already", kind_names[kind], addr);
	str_free(&tmp);
}

/* The address is free in the shared namespace of its (existing) domain;
 * the domain's cos in *cos_r when asked. */
static enum dir_status address_free(struct ldir *l, const char *addr,
				    char **cos_r, struct str *error)
{
	LDAPMessage *res = NULL, *e;
	enum dir_status st;
	enum kind kind;

	st = domain_read(l, domain_of(addr), &res, &e, error);
	if (st == DIR_NOTFOUND)
		str_setf(error, "domain %s does not exist", domain_of(addr));
	if (st == DIR_OK && cos_r != NULL) {
		*cos_r = val_str(l->ld, e, "ternCosName");
		if (*cos_r == NULL)
			*cos_r = xstrdup("default");
	}
	if (res != NULL)
		ldap_msgfree(res);
	if (st == DIR_OK)
		st = addr_kind(l, addr, &kind, error);
	if (st == DIR_OK && kind != KIND_NONE) {
		str_setf(error, "%s %s exists already", kind_names[kind],
			  addr);
		st = DIR_EXISTS;
	}
	return st;
}

/* An account entry; keep: with acct->id and acct->created as they are. */
static enum dir_status account_add(struct ldir *l, struct dir_account *acct,
				   bool keep, struct str *error)
{
	char *addr = NULL, *host = NULL, *dcos = NULL, *dn = NULL;
	char *pw = NULL;
	static const char *const classes[] = {
		"inetOrgPerson", "ternAccount", NULL,
	};
	int64_t id = keep ? acct->id : 0;
	int64_t now = keep && acct->created > 0 ? acct->created :
						  (int64_t)time(NULL);
	struct mods m = { .n = 0 };
	enum dir_status st;

	st = dir_norm_address(acct->address, &addr, error);
	if (st == DIR_OK)
		st = dir_check_account(acct, &host, error);
	if (st == DIR_OK)
		st = address_free(l, addr, &dcos, error);
	if (st == DIR_OK && acct->cos != NULL)
		st = cos_must_exist(l, acct->cos, error);
	if (st == DIR_OK)
		st = keep ? next_id(l, id, NULL, error) :
			    next_id(l, 0, &id, error);
	if (st != DIR_OK)
		goto out;
	dn = entry_dn(l, addr);
	mods_addv(&m, LDAP_MOD_ADD, "objectClass", classes);
	mods_add(&m, LDAP_MOD_ADD, "mail", addr);
	mods_add(&m, LDAP_MOD_ADD, "cn", cn_of(acct, addr));
	mods_add(&m, LDAP_MOD_ADD, "sn", cn_of(acct, addr));
	if (acct->display_name != NULL && acct->display_name[0] != '\0')
		mods_add(&m, LDAP_MOD_ADD, "displayName", acct->display_name);
	if (acct->password_hash != NULL) {
		pw = password_value(acct->password_hash);
		mods_add(&m, LDAP_MOD_ADD, "userPassword", pw);
	}
	mods_add_u64(&m, LDAP_MOD_ADD, "ternAccountId", (uint64_t)id);
	mods_add(&m, LDAP_MOD_ADD, "ternMailHost",
		 host != NULL ? host : "localhost");
	mods_add_u64(&m, LDAP_MOD_ADD, "ternQuota", acct->quota);
	mods_add(&m, LDAP_MOD_ADD, "ternAccountStatus",
		 dir_account_status_name(acct->status));
	mods_add(&m, LDAP_MOD_ADD, "ternCosName",
		 acct->cos != NULL ? acct->cos : dcos);
	mods_add_u64(&m, LDAP_MOD_ADD, "ternCreated", (uint64_t)now);
	st = ld_write(l, OP_ADD, dn, m.list, error);
	if (st == DIR_EXISTS)
		name_taken(l, addr, error);
	if (st == DIR_OK) {
		acct->id = id;
		acct->created = now;
		serial_bump(l);
	}
out:
	mods_free(&m);
	if (pw != NULL)
		explicit_bzero(pw, strlen(pw));
	free(pw);
	free(dn);
	free(addr);
	free(host);
	free(dcos);
	return st;
}

static enum dir_status ld_account_add(struct dir *base,
				      struct dir_account *acct,
				      struct str *error)
{
	return account_add((struct ldir *)base, acct, false, error);
}

static enum dir_status ld_account_import(struct dir *base,
					 const struct dir_account *acct,
					 struct str *error)
{
	struct dir_account copy = *acct;

	return account_add((struct ldir *)base, &copy, true, error);
}

static enum dir_status ld_account_set(struct dir *base,
				      const struct dir_account *acct,
				      struct str *error)
{
	struct ldir *l = (struct ldir *)base;
	char *addr = NULL, *host = NULL, *dn = NULL, *pw = NULL;
	const char *dname = acct->display_name;
	struct mods m = { .n = 0 };
	enum dir_status st;
	enum kind kind;

	st = dir_norm_address(acct->address, &addr, error);
	if (st == DIR_OK)
		st = dir_check_account(acct, &host, error);
	if (st == DIR_OK)
		st = addr_kind(l, addr, &kind, error);
	if (st == DIR_OK && kind != KIND_ACCOUNT) {
		str_setf(error, "account %s does not exist", addr);
		st = DIR_NOTFOUND;
	}
	if (st == DIR_OK && acct->cos != NULL)
		st = cos_must_exist(l, acct->cos, error);
	if (st != DIR_OK)
		goto out;
	dn = entry_dn(l, addr);
	mods_add(&m, LDAP_MOD_REPLACE, "displayName",
		 dname != NULL && dname[0] != '\0' ? dname : NULL);
	mods_add(&m, LDAP_MOD_REPLACE, "cn", cn_of(acct, addr));
	mods_add(&m, LDAP_MOD_REPLACE, "sn", cn_of(acct, addr));
	mods_add_u64(&m, LDAP_MOD_REPLACE, "ternQuota", acct->quota);
	mods_add(&m, LDAP_MOD_REPLACE, "ternAccountStatus",
		 dir_account_status_name(acct->status));
	if (host != NULL)
		mods_add(&m, LDAP_MOD_REPLACE, "ternMailHost", host);
	if (acct->cos != NULL)
		mods_add(&m, LDAP_MOD_REPLACE, "ternCosName", acct->cos);
	if (acct->password_hash != NULL) {
		pw = password_value(acct->password_hash);
		mods_add(&m, LDAP_MOD_REPLACE, "userPassword", pw);
	}
	st = ld_write(l, OP_MODIFY, dn, m.list, error);
	if (st == DIR_NOTFOUND)
		str_setf(error, "account %s does not exist", addr);
	if (st == DIR_OK)
		serial_bump(l);
out:
	mods_free(&m);
	if (pw != NULL)
		explicit_bzero(pw, strlen(pw));
	free(pw);
	free(dn);
	free(addr);
	free(host);
	return st;
}

/* Takes address out of every list. */
static enum dir_status memberships_drop(struct ldir *l, const char *addr,
					struct str *error)
{
	static const char *const no_attrs[] = { LDAP_NO_ATTRS, NULL };
	char *filter = filter_make("ternDistributionList", "ternListMember",
				   addr);
	LDAPMessage *res = NULL;
	enum dir_status st;

	st = ld_search(l, l->domains_dn, LDAP_SCOPE_SUBTREE, filter,
		       no_attrs, &res, error);
	free(filter);
	for (LDAPMessage *e = st == DIR_OK ? ldap_first_entry(l->ld, res) :
			      NULL; e != NULL; e = ldap_next_entry(l->ld, e)) {
		struct mods m = { .n = 0 };
		char *dn = ldap_get_dn(l->ld, e);

		mods_add(&m, LDAP_MOD_DELETE, "ternListMember", addr);
		if (dn != NULL)
			st = ld_write(l, OP_MODIFY, dn, m.list, error);
		ldap_memfree(dn);
		mods_free(&m);
		if (st != DIR_OK && st != DIR_NOTFOUND)
			break;
		st = DIR_OK;
	}
	if (res != NULL)
		ldap_msgfree(res);
	return st;
}

/* Deletes one kind of entry by address, and its list memberships. */
static enum dir_status entry_del(struct ldir *l, const char *address,
				 enum kind want, struct str *error)
{
	enum dir_status st;
	char *addr = NULL, *dn = NULL;
	enum kind kind = KIND_NONE;

	st = dir_norm_address(address, &addr, error);
	if (st == DIR_OK)
		st = addr_kind(l, addr, &kind, error);
	if (st == DIR_OK && kind != want) {
		str_setf(error, "%s %s does not exist", kind_names[want],
			 addr);
		st = DIR_NOTFOUND;
	}
	if (st == DIR_OK) {
		dn = entry_dn(l, addr);
		st = ld_write(l, OP_DELETE, dn, NULL, error);
		if (st == DIR_NOTFOUND)
			str_setf(error, "%s %s does not exist",
				  kind_names[want], addr);
	}
	if (st == DIR_OK && want != KIND_ALIAS)
		st = memberships_drop(l, addr, error);
	if (st == DIR_OK)
		serial_bump(l);
	free(dn);
	free(addr);
	return st;
}

static enum dir_status ld_account_del(struct dir *base, const char *address,
				      struct str *error)
{
	return entry_del((struct ldir *)base, address, KIND_ACCOUNT, error);
}

/* Domain defaults for quota_effective, read once per call. */
struct quota_ctx {
	char *domain;
	uint64_t default_quota;
	char *cos;
	uint64_t cos_quota;
};

static void quota_ctx_free(struct quota_ctx *q)
{
	free(q->domain);
	free(q->cos);
	memset(q, 0, sizeof(*q));
}

static enum dir_status quota_effective(struct ldir *l, struct quota_ctx *q,
				       struct dir_account *a,
				       struct str *error)
{
	enum dir_status st = DIR_OK;

	if (a->quota != 0) {
		a->quota_effective = a->quota;
		return DIR_OK;
	}
	if (q->domain == NULL ||
	    strcmp(q->domain, domain_of(a->address)) != 0) {
		free(q->domain);
		q->domain = xstrdup(domain_of(a->address));
		st = domain_facts(l, q->domain, NULL, &q->default_quota,
				  error);
		if (st == DIR_NOTFOUND)
			st = DIR_OK;
	}
	if (st == DIR_OK && q->default_quota == 0 &&
	    (q->cos == NULL || strcmp(q->cos, a->cos) != 0)) {
		free(q->cos);
		q->cos = xstrdup(a->cos);
		st = cos_quota(l, a->cos, &q->cos_quota, error);
	}
	a->quota_effective = q->default_quota != 0 ? q->default_quota :
			     q->cos_quota;
	return st;
}

static struct dir_account *account_entry(LDAP *ld, LDAPMessage *e)
{
	struct dir_account *a = xcalloc(1, sizeof(*a));
	char *status = val_str(ld, e, "ternAccountStatus");
	enum dir_account_status s = DIR_ACCOUNT_ACTIVE;

	a->id = val_i64(ld, e, "ternAccountId");
	a->address = val_str(ld, e, "mail");
	if (a->address == NULL)
		a->address = xstrdup("");
	a->display_name = val_str(ld, e, "displayName");
	a->password_hash = password_hash_of(ld, e);
	a->quota = (uint64_t)val_i64(ld, e, "ternQuota");
	if (status != NULL && dir_account_status_parse(status, &s) < 0)
		s = DIR_ACCOUNT_LOCKED;	/* unknown: no login */
	a->status = s;
	free(status);
	a->mailhost = val_str(ld, e, "ternMailHost");
	if (a->mailhost == NULL)
		a->mailhost = xstrdup("localhost");
	a->cos = val_str(ld, e, "ternCosName");
	if (a->cos == NULL)
		a->cos = xstrdup("default");
	a->created = val_i64(ld, e, "ternCreated");
	return a;
}

static enum dir_status ld_account_get(struct dir *base, const char *address,
				      struct dir_account **acct_r,
				      struct str *error)
{
	struct ldir *l = (struct ldir *)base;
	struct quota_ctx q = { 0 };
	LDAPMessage *res = NULL, *e;
	char *addr = NULL, *filter = NULL, *parent = NULL;
	enum dir_status st;

	*acct_r = NULL;
	st = dir_norm_address(address, &addr, error);
	if (st != DIR_OK)
		return st;
	filter = filter_make("ternAccount", "mail", addr);
	parent = domain_dn(l, domain_of(addr));
	st = ld_search(l, parent, LDAP_SCOPE_ONELEVEL, filter, account_attrs,
		       &res, error);
	if (st == DIR_OK && (e = ldap_first_entry(l->ld, res)) != NULL)
		*acct_r = account_entry(l->ld, e);
	else if (st == DIR_OK || st == DIR_NOTFOUND)
		st = DIR_NOTFOUND;
	if (res != NULL)
		ldap_msgfree(res);
	if (st == DIR_OK)
		st = quota_effective(l, &q, *acct_r, error);
	if (st == DIR_NOTFOUND)
		str_setf(error, "account %s does not exist", addr);
	if (st != DIR_OK)
		dir_account_free(acct_r);
	quota_ctx_free(&q);
	free(filter);
	free(parent);
	free(addr);
	return st;
}

/* The search base for a list call: one domain (which must exist) or all. */
static enum dir_status list_base(struct ldir *l, const char *domain,
				 char **base_r, struct str *error)
{
	enum dir_status st;
	char *norm = NULL;

	*base_r = NULL;
	if (domain == NULL) {
		*base_r = xstrdup(l->domains_dn);
		return DIR_OK;
	}
	st = dir_norm_domain(domain, &norm, error);
	if (st == DIR_OK)
		st = domain_exists(l, norm, error);
	if (st == DIR_OK)
		*base_r = domain_dn(l, norm);
	free(norm);
	return st;
}

static int cmp_account(const void *a, const void *b)
{
	return strcmp((*(struct dir_account *const *)a)->address,
		      (*(struct dir_account *const *)b)->address);
}

static enum dir_status collect_account(struct ldir *l, LDAPMessage *e,
				       void *ctx, struct str *error)
{
	struct collect *c = ctx;

	(void)error;
	dir_array_push(&c->list, &c->n, account_entry(l->ld, e));
	return DIR_OK;
}

static enum dir_status ld_account_list(struct dir *base, const char *domain,
				       struct dir_account ***list_r,
				       size_t *count_r, struct str *error)
{
	struct ldir *l = (struct ldir *)base;
	struct collect c = { NULL, 0 };
	struct dir_account **list;
	struct quota_ctx q = { 0 };
	enum dir_status st;
	char *sbase = NULL;
	size_t n;

	*list_r = NULL;
	*count_r = 0;
	st = list_base(l, domain, &sbase, error);
	if (st == DIR_OK)
		st = ld_search_paged(l, sbase, LDAP_SCOPE_SUBTREE,
				     "(objectClass=ternAccount)",
				     account_attrs, 0, collect_account, &c,
				     error);
	if (st == DIR_NOTFOUND && domain == NULL)
		st = DIR_OK;
	list = (struct dir_account **)c.list;
	n = c.n;
	if (n > 1)
		qsort(list, n, sizeof(*list), cmp_account);
	for (size_t i = 0; st == DIR_OK && i < n; i++)
		st = quota_effective(l, &q, list[i], error);
	quota_ctx_free(&q);
	free(sbase);
	if (st != DIR_OK) {
		dir_account_array_free(&list, n);
		return st;
	}
	*list_r = list;
	*count_r = n;
	return DIR_OK;
}

/* ---- aliases ---- */

static enum dir_status ld_alias_add(struct dir *base, const char *address,
				    const char *target, struct str *error)
{
	struct ldir *l = (struct ldir *)base;
	char *addr = NULL, *tgt = NULL, *dn = NULL;
	struct mods m = { .n = 0 };
	enum dir_status st;

	st = dir_norm_address(address, &addr, error);
	if (st == DIR_OK)
		st = dir_norm_address(target, &tgt, error);
	if (st == DIR_OK && strcmp(addr, tgt) == 0) {
		str_setf(error, "alias %s cannot point to itself", addr);
		st = DIR_INVALID;
	}
	if (st == DIR_OK)
		st = address_free(l, addr, NULL, error);
	if (st == DIR_OK)
		st = target_check(l, tgt, error);
	if (st != DIR_OK)
		goto out;
	dn = entry_dn(l, addr);
	mods_add(&m, LDAP_MOD_ADD, "objectClass", "ternAlias");
	mods_add(&m, LDAP_MOD_ADD, "mail", addr);
	mods_add(&m, LDAP_MOD_ADD, "ternAliasTarget", tgt);
	st = ld_write(l, OP_ADD, dn, m.list, error);
	if (st == DIR_EXISTS)
		name_taken(l, addr, error);
	if (st == DIR_OK)
		serial_bump(l);
out:
	mods_free(&m);
	free(dn);
	free(addr);
	free(tgt);
	return st;
}

static enum dir_status ld_alias_del(struct dir *base, const char *address,
				    struct str *error)
{
	return entry_del((struct ldir *)base, address, KIND_ALIAS, error);
}

static int cmp_alias(const void *a, const void *b)
{
	return strcmp((*(struct dir_alias *const *)a)->address,
		      (*(struct dir_alias *const *)b)->address);
}

static enum dir_status collect_alias(struct ldir *l, LDAPMessage *e,
				     void *ctx, struct str *error)
{
	struct dir_alias *a = xcalloc(1, sizeof(*a));
	struct collect *c = ctx;

	(void)error;
	a->address = val_str(l->ld, e, "mail");
	a->target = val_str(l->ld, e, "ternAliasTarget");
	if (a->address == NULL)
		a->address = xstrdup("");
	if (a->target == NULL)
		a->target = xstrdup("");
	dir_array_push(&c->list, &c->n, a);
	return DIR_OK;
}

static enum dir_status ld_alias_list(struct dir *base, const char *domain,
				     struct dir_alias ***list_r,
				     size_t *count_r, struct str *error)
{
	static const char *const attrs[] = { "mail", "ternAliasTarget", NULL };
	struct ldir *l = (struct ldir *)base;
	struct collect c = { NULL, 0 };
	struct dir_alias **list;
	enum dir_status st;
	char *sbase = NULL;
	size_t n;

	*list_r = NULL;
	*count_r = 0;
	st = list_base(l, domain, &sbase, error);
	if (st == DIR_OK)
		st = ld_search_paged(l, sbase, LDAP_SCOPE_SUBTREE,
				     "(objectClass=ternAlias)", attrs, 0,
				     collect_alias, &c, error);
	if (st == DIR_NOTFOUND && domain == NULL)
		st = DIR_OK;
	list = (struct dir_alias **)c.list;
	n = c.n;
	free(sbase);
	if (st != DIR_OK) {
		dir_alias_array_free(&list, n);
		return st;
	}
	if (n > 1)
		qsort(list, n, sizeof(*list), cmp_alias);
	*list_r = list;
	*count_r = n;
	return DIR_OK;
}

/* ---- distribution lists ---- */

static enum dir_status ld_list_add(struct dir *base, const char *address,
				   struct str *error)
{
	struct ldir *l = (struct ldir *)base;
	struct mods m = { .n = 0 };
	char *addr = NULL, *dn = NULL;
	enum dir_status st;

	st = dir_norm_address(address, &addr, error);
	if (st == DIR_OK)
		st = address_free(l, addr, NULL, error);
	if (st == DIR_OK) {
		dn = entry_dn(l, addr);
		mods_add(&m, LDAP_MOD_ADD, "objectClass",
			 "ternDistributionList");
		mods_add(&m, LDAP_MOD_ADD, "mail", addr);
		st = ld_write(l, OP_ADD, dn, m.list, error);
		if (st == DIR_EXISTS)
			name_taken(l, addr, error);
	}
	if (st == DIR_OK)
		serial_bump(l);
	mods_free(&m);
	free(dn);
	free(addr);
	return st;
}

static enum dir_status ld_list_del(struct dir *base, const char *address,
				   struct str *error)
{
	return entry_del((struct ldir *)base, address, KIND_LIST, error);
}

static enum dir_status member_write(struct ldir *l, const char *list,
				    const char *member, bool add,
				    struct str *error)
{
	char *laddr = NULL, *maddr = NULL, *dn = NULL;
	struct mods m = { .n = 0 };
	enum dir_status st;
	enum kind kind;

	st = dir_norm_address(list, &laddr, error);
	if (st == DIR_OK)
		st = dir_norm_address(member, &maddr, error);
	if (st == DIR_OK && add && strcmp(laddr, maddr) == 0) {
		str_setf(error, "list %s cannot contain itself", laddr);
		st = DIR_INVALID;
	}
	if (st == DIR_OK)
		st = addr_kind(l, laddr, &kind, error);
	if (st == DIR_OK && kind != KIND_LIST) {
		str_setf(error, "list %s does not exist", laddr);
		st = DIR_NOTFOUND;
	}
	if (st == DIR_OK && add)
		st = target_check(l, maddr, error);
	if (st != DIR_OK)
		goto out;
	dn = entry_dn(l, laddr);
	mods_add(&m, add ? LDAP_MOD_ADD : LDAP_MOD_DELETE, "ternListMember",
		 maddr);
	str_clear(error);
	st = ld_write(l, OP_MODIFY, dn, m.list, error);
	if (st == DIR_EXISTS && add)
		str_setf(error, "%s is already a member of list %s", maddr,
			  laddr);
	else if (st == DIR_NOTFOUND && add)
		str_setf(error, "list %s does not exist", laddr);
	if (st == DIR_NOTFOUND && !add) {
		str_setf(error, "%s is not a member of list %s", maddr, laddr);
		st = DIR_NOTFOUND;
	}
	if (st == DIR_OK)
		serial_bump(l);
out:
	mods_free(&m);
	free(dn);
	free(laddr);
	free(maddr);
	return st;
}

static enum dir_status ld_list_member_add(struct dir *base, const char *list,
					  const char *member,
					  struct str *error)
{
	return member_write((struct ldir *)base, list, member, true, error);
}

static enum dir_status ld_list_member_del(struct dir *base, const char *list,
					  const char *member,
					  struct str *error)
{
	return member_write((struct ldir *)base, list, member, false, error);
}

static struct dir_list_info *list_entry(LDAP *ld, LDAPMessage *e)
{
	struct dir_list_info *li = xcalloc(1, sizeof(*li));

	li->address = val_str(ld, e, "mail");
	if (li->address == NULL)
		li->address = xstrdup("");
	li->members = val_all(ld, e, "ternListMember", &li->nmembers);
	if (li->nmembers > 1)
		qsort(li->members, li->nmembers, sizeof(char *), cmp_str);
	return li;
}

static enum dir_status ld_list_get(struct dir *base, const char *address,
				   struct dir_list_info **list_r,
				   struct str *error)
{
	struct ldir *l = (struct ldir *)base;
	LDAPMessage *res = NULL, *e = NULL;
	enum dir_status st;
	enum kind kind;
	char *addr = NULL;

	*list_r = NULL;
	st = dir_norm_address(address, &addr, error);
	if (st == DIR_OK)
		st = addr_lookup(l, addr, &kind, &res, &e, error);
	if (st == DIR_OK && kind == KIND_LIST)
		*list_r = list_entry(l->ld, e);
	else if (st == DIR_OK) {
		str_setf(error, "list %s does not exist", addr);
		st = DIR_NOTFOUND;
	}
	if (res != NULL)
		ldap_msgfree(res);
	free(addr);
	return st;
}

static int cmp_list(const void *a, const void *b)
{
	return strcmp((*(struct dir_list_info *const *)a)->address,
		      (*(struct dir_list_info *const *)b)->address);
}

static enum dir_status collect_list(struct ldir *l, LDAPMessage *e,
				    void *ctx, struct str *error)
{
	struct collect *c = ctx;

	(void)error;
	dir_array_push(&c->list, &c->n, list_entry(l->ld, e));
	return DIR_OK;
}

static enum dir_status ld_list_list(struct dir *base, const char *domain,
				    struct dir_list_info ***list_r,
				    size_t *count_r, struct str *error)
{
	static const char *const attrs[] = { "mail", "ternListMember", NULL };
	struct ldir *l = (struct ldir *)base;
	struct collect c = { NULL, 0 };
	struct dir_list_info **list;
	enum dir_status st;
	char *sbase = NULL;
	size_t n;

	*list_r = NULL;
	*count_r = 0;
	st = list_base(l, domain, &sbase, error);
	if (st == DIR_OK)
		st = ld_search_paged(l, sbase, LDAP_SCOPE_SUBTREE,
				     "(objectClass=ternDistributionList)",
				     attrs, 0, collect_list, &c, error);
	if (st == DIR_NOTFOUND && domain == NULL)
		st = DIR_OK;
	list = (struct dir_list_info **)c.list;
	n = c.n;
	free(sbase);
	if (st != DIR_OK) {
		dir_list_info_array_free(&list, n);
		return st;
	}
	if (n > 1)
		qsort(list, n, sizeof(*list), cmp_list);
	*list_r = list;
	*count_r = n;
	return DIR_OK;
}

/* ---- authentication by bind ---- */

static enum dir_status ld_account_dn(struct dir *base, const char *address,
				     char **dn_r, struct str *error)
{
	struct ldir *l = (struct ldir *)base;
	LDAPMessage *res = NULL, *e = NULL;
	enum dir_status st;
	enum kind kind;
	char *addr = NULL, *dn;

	*dn_r = NULL;
	st = dir_norm_address(address, &addr, error);
	if (st == DIR_OK)
		st = addr_lookup(l, addr, &kind, &res, &e, error);
	if (st == DIR_OK && kind != KIND_ACCOUNT) {
		str_setf(error, "account %s does not exist", addr);
		st = DIR_NOTFOUND;
	}
	if (st == DIR_OK) {
		dn = ldap_get_dn(l->ld, e);
		if (dn != NULL)
			*dn_r = xstrdup(dn);
		else
			st = ld_status(l, LDAP_DECODING_ERROR, "entry DN",
				       error);
		ldap_memfree(dn);
	}
	if (res != NULL)
		ldap_msgfree(res);
	free(addr);
	return st;
}

/* On a connection of its own: the handle's connection keeps the service
 * DN's identity, and only immutable fields of l are read here. */
static enum dir_status ld_password_bind(struct dir *base, const char *dn,
					const char *password,
					struct str *error)
{
	struct ldir *l = (struct ldir *)base;
	struct berval cred = { .bv_len = strlen(password),
			       .bv_val = (char *)password };
	LDAP *ld = NULL;
	int rc = dir_ldap_init(l->uri, l->timeout_ms, &ld);

	if (rc == LDAP_SUCCESS)
		rc = ldap_sasl_bind_s(ld, dn, LDAP_SASL_SIMPLE, &cred, NULL,
				      NULL, NULL);
	if (ld != NULL)
		ldap_unbind_ext_s(ld, NULL, NULL);
	switch (rc) {
	case LDAP_SUCCESS:
		return DIR_OK;
	case LDAP_INVALID_CREDENTIALS:	/* also: no password, locked */
	case LDAP_INAPPROPRIATE_AUTH:
	case LDAP_INSUFFICIENT_ACCESS:
	case LDAP_NO_SUCH_OBJECT:
		str_setf(error, "authentication failed");
		return DIR_AUTHFAIL;
	default:
		str_setf(error, "directory server %s: bind as the account: %s",
			  l->uri, ldap_err2string(rc));
		return DIR_TEMPFAIL;
	}
}

/* ---- the address book ---- */

/* The attributes a text is looked for in (substring, case-insensitive). */
static const char *const gal_match_attrs[] = {
	"mail", "displayName", "cn", "sn", "givenName",
	"ternMailAlternateAddress", NULL,
};

/* (&CLASSES(|(mail=*T*)(displayName=*T*)...)) with T escaped (RFC 4515),
 * or NULL when too long (malloc'd). */
static char *gal_filter(const char *classes, const char *text)
{
	struct str *s = str_new(512, LDIR_FILTER_MAX);
	char *r = NULL;
	int ok;

	ok = str_append_c(s, "(&") == 0 && str_append_c(s, classes) == 0 &&
	     str_append_c(s, "(|") == 0;
	for (size_t i = 0; ok && gal_match_attrs[i] != NULL; i++)
		ok = str_append_c(s, "(") == 0 &&
		     str_append_c(s, gal_match_attrs[i]) == 0 &&
		     str_append_c(s, "=*") == 0 &&
		     dir_ldap_filter_escape(s, text, strlen(text)) == 0 &&
		     str_append_c(s, "*)") == 0;
	if (ok && str_append_c(s, "))") == 0)
		r = xstrdup(str_c(s));
	str_free(&s);
	return r;
}

static void gal_push(struct dir_gal_entry ***list, size_t *n,
		     enum dir_gal_kind kind, char *address, char *name)
{
	struct dir_gal_entry *e = xcalloc(1, sizeof(*e));

	e->kind = kind;
	e->address = address;
	e->display_name = name;
	dir_array_push((void ***)list, n, e);
}

/* The account or list an alias points to, when it is one of ours and not
 * a closed account. */
static enum dir_status gal_alias(struct ldir *l, const char *target,
				 struct dir_gal_entry ***list, size_t *n,
				 struct str *error)
{
	LDAPMessage *res = NULL, *e = NULL;
	enum dir_status st;
	enum kind kind;
	char *status;

	if (strchr(target, '@') == NULL)
		return DIR_OK;
	st = addr_lookup(l, target, &kind, &res, &e, error);
	if (st == DIR_OK && kind == KIND_ACCOUNT) {
		status = val_str(l->ld, e, "ternAccountStatus");
		if (status == NULL || strcmp(status, "closed") != 0)
			gal_push(list, n, DIR_GAL_ACCOUNT,
				 val_str(l->ld, e, "mail"),
				 val_str(l->ld, e, "displayName"));
		free(status);
	} else if (st == DIR_OK && kind == KIND_LIST) {
		gal_push(list, n, DIR_GAL_LIST, val_str(l->ld, e, "mail"),
			 NULL);
	}
	if (res != NULL)
		ldap_msgfree(res);
	return st;
}

struct gal_ctx {
	struct dir_gal_entry ***list;
	size_t *n;
	char ***targets;
	size_t *nt;
};

static enum dir_status gal_entry(struct ldir *l, LDAPMessage *e, void *ctx,
				 struct str *error)
{
	struct gal_ctx *g = ctx;
	char *mail = val_str(l->ld, e, "mail"), *target;

	(void)error;
	switch (mail != NULL ? kind_of(l->ld, e) : KIND_NONE) {
	case KIND_ACCOUNT:
		gal_push(g->list, g->n, DIR_GAL_ACCOUNT, mail,
			 val_str(l->ld, e, "displayName"));
		mail = NULL;
		break;
	case KIND_LIST:
		gal_push(g->list, g->n, DIR_GAL_LIST, mail, NULL);
		mail = NULL;
		break;
	case KIND_ALIAS:	/* looked up once the search is done */
		target = val_str(l->ld, e, "ternAliasTarget");
		if (target != NULL)
			dir_array_push((void ***)g->targets, g->nt, target);
		break;
	case KIND_NONE:
		break;
	}
	free(mail);
	return DIR_OK;
}

/* Accounts (not closed) and lists, and the targets of the aliases, that
 * match text; at most limit of each, so that aliases never crowd out
 * entries found directly. */
static enum dir_status gal_find(struct ldir *l, const char *text, size_t limit,
				bool aliases, struct dir_gal_entry ***list,
				size_t *n, char ***targets, size_t *nt,
				struct str *error)
{
	static const char *const attrs[] = {
		"objectClass", "mail", "displayName", "ternAliasTarget", NULL,
	};
	char *filter = gal_filter(aliases ? "(objectClass=ternAlias)" :
				  "(|(objectClass=ternAccount)"
				  "(objectClass=ternDistributionList))"
				  "(!(ternAccountStatus=closed))", text);
	struct gal_ctx g = { list, n, targets, nt };
	enum dir_status st;

	if (filter == NULL) {
		str_setf(error, "the search text is too long");
		return DIR_INVALID;
	}
	st = ld_search_paged(l, l->domains_dn, LDAP_SCOPE_SUBTREE, filter,
			     attrs, limit, gal_entry, &g, error);
	free(filter);
	if (st == DIR_NOTFOUND)
		st = DIR_OK;	/* nothing provisioned yet */
	return st;
}

static enum dir_status ld_gal_search(struct dir *base, const char *text,
				     size_t limit,
				     struct dir_gal_entry ***list_r,
				     size_t *count_r, struct str *error)
{
	struct ldir *l = (struct ldir *)base;
	struct dir_gal_entry **list = NULL;
	char **targets = NULL;
	enum dir_status st;
	size_t n = 0, nt = 0;

	*list_r = NULL;
	*count_r = 0;
	st = gal_find(l, text, limit, false, &list, &n, &targets, &nt, error);
	if (st == DIR_OK)
		st = gal_find(l, text, limit, true, &list, &n, &targets, &nt,
			      error);
	for (size_t i = 0; st == DIR_OK && i < nt; i++)
		st = gal_alias(l, targets[i], &list, &n, error);
	free_strv(targets, nt);
	if (st != DIR_OK) {
		dir_gal_array_free(&list, n);
		return st;
	}
	*list_r = list;
	*count_r = n;
	return DIR_OK;
}

/* ---- resolution primitives (dir.c walks the graph) ---- */

static enum dir_status ld_node(struct dir *base, const char *address,
			       struct dir_node *node, struct str *error)
{
	struct ldir *l = (struct ldir *)base;
	LDAPMessage *res = NULL, *e = NULL;
	enum dir_status st;
	enum kind kind;
	char *s;

	st = addr_lookup(l, address, &kind, &res, &e, error);
	if (st != DIR_OK)
		return st;
	switch (kind) {
	case KIND_ACCOUNT:
		node->kind = DIR_NODE_ACCOUNT;
		node->status = DIR_ACCOUNT_ACTIVE;
		s = val_str(l->ld, e, "ternAccountStatus");
		if (s != NULL &&
		    dir_account_status_parse(s, &node->status) < 0)
			node->status = DIR_ACCOUNT_LOCKED;
		free(s);
		node->account_id = val_i64(l->ld, e, "ternAccountId");
		node->mailhost = val_str(l->ld, e, "ternMailHost");
		if (node->mailhost == NULL)
			node->mailhost = xstrdup("localhost");
		break;
	case KIND_ALIAS:
		node->kind = DIR_NODE_ALIAS;
		node->target = val_str(l->ld, e, "ternAliasTarget");
		break;
	case KIND_LIST:
		node->kind = DIR_NODE_LIST;
		node->members = val_all(l->ld, e, "ternListMember",
					&node->nmembers);
		if (node->members != NULL)
			qsort(node->members, node->nmembers, sizeof(char *),
			      cmp_str);
		break;
	default:
		break;
	}
	if (res != NULL)
		ldap_msgfree(res);
	return DIR_OK;
}

static int ld_domain_catchall(struct dir *base, const char *domain,
			      char **catchall_r, enum dir_status *st_r,
			      struct str *error)
{
	struct ldir *l = (struct ldir *)base;
	enum dir_status st;

	*catchall_r = NULL;
	st = domain_facts(l, domain, catchall_r, NULL, error);
	if (st == DIR_NOTFOUND)
		return 0;
	*st_r = st;
	return st == DIR_OK ? 1 : -1;
}

/* ---- opening ---- */

/* The entries Tern needs under the base DN, created when missing. */
static enum dir_status skeleton_ensure(struct ldir *l, struct str *error)
{
	struct {
		const char *dn;
		const char *cls, *attr, *value;
	} items[] = {
		{ l->domains_dn, "organizationalUnit", "ou", "domains" },
		{ l->cos_dn, "organizationalUnit", "ou", "cos" },
		{ NULL, "ternCos", "cn", "default" },
		{ l->state_dn, "ternDirectory", "cn", "tern" },
	};
	enum dir_status st = DIR_OK;

	for (size_t i = 0; st == DIR_OK && i < TERN_NELEM(items); i++) {
		struct mods m = { .n = 0 };
		char *dn = items[i].dn != NULL ? xstrdup(items[i].dn) :
			   dn_make("cn", "default", l->cos_dn);

		mods_add(&m, LDAP_MOD_ADD, "objectClass", items[i].cls);
		mods_add(&m, LDAP_MOD_ADD, items[i].attr, items[i].value);
		if (items[i].dn == l->state_dn) {
			mods_add(&m, LDAP_MOD_ADD, "ternSerial", "1");
			mods_add(&m, LDAP_MOD_ADD, "ternNextId", "1");
		}
		str_clear(error);
		st = ld_write(l, OP_ADD, dn, m.list, error);
		if (st == DIR_EXISTS)
			st = DIR_OK;
		else if (st == DIR_NOTFOUND) {
			str_setf(error, "base DN %s does not exist on %s",
				  l->base_dn, l->uri);
			st = DIR_TEMPFAIL;
		}
		mods_free(&m);
		free(dn);
	}
	return st;
}

static void ld_close(struct dir *base)
{
	struct ldir *l = (struct ldir *)base;

	ld_drop(l);
	ld_forget(base);
	if (l->password != NULL) {
		explicit_bzero(l->password, strlen(l->password));
		free(l->password);
	}
	free(l->uri);
	free(l->base_dn);
	free(l->bind_dn);
	free(l->domains_dn);
	free(l->cos_dn);
	free(l->state_dn);
	free(l);
}

enum dir_status dir_ldap_secret_read(const char *path, const char *what,
				     enum dir_status unreadable,
				     char **secret_r, struct str *error)
{
	char buf[LDIR_SECRET_MAX + 1];
	ssize_t n;
	int fd;

	*secret_r = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		str_setf(error, "cannot read %s %s: %s", what, path,
			  strerror(errno));
		return unreadable;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0) {
		str_setf(error, "%s: %s", path, strerror(errno));
		return unreadable;
	}
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (buf[0] == '\0') {
		str_setf(error, "%s %s is empty", what, path);
		return DIR_INVALID;
	}
	*secret_r = xstrdup(buf);
	explicit_bzero(buf, sizeof(buf));
	return DIR_OK;
}

static const struct dir_ops ldap_ops;

enum dir_status dir_open_ldap(const struct dir_ldap_settings *set,
			      bool readonly, struct dir **dir_r,
			      struct str *error)
{
	struct ldir *l;
	enum dir_status st = DIR_OK;

	*dir_r = NULL;
	if (set->uri == NULL || set->uri[0] == '\0' || set->base_dn == NULL ||
	    set->base_dn[0] == '\0') {
		str_setf(error, "the LDAP directory needs ldap_uri and "
			  "ldap_base_dn");
		return DIR_INVALID;
	}
	l = xcalloc(1, sizeof(*l));
	l->base.ops = &ldap_ops;
	l->base.auth_bind = set->auth_bind;
	l->uri = xstrdup(set->uri);
	l->base_dn = xstrdup(set->base_dn);
	l->bind_dn = xstrdup(set->bind_dn != NULL ? set->bind_dn : "");
	l->timeout_ms = set->timeout_ms > 0 ? set->timeout_ms : 5000;
	l->readonly = readonly;
	l->domains_dn = fmt_dup("ou=domains,%s", l->base_dn);
	l->cos_dn = fmt_dup("ou=cos,%s", l->base_dn);
	l->state_dn = fmt_dup("cn=tern,%s", l->base_dn);
	if (l->domains_dn == NULL || l->cos_dn == NULL || l->state_dn == NULL) {
		str_setf(error, "ldap_base_dn is too long");
		st = DIR_INVALID;
	}
	if (st == DIR_OK && l->bind_dn[0] != '\0')
		st = dir_ldap_secret_read(set->bind_password_file != NULL ?
					  set->bind_password_file : "",
					  "the LDAP bind password file",
					  DIR_TEMPFAIL, &l->password, error);
	if (st == DIR_OK && !readonly)
		st = skeleton_ensure(l, error);
	if (st != DIR_OK) {
		ld_close(&l->base);
		return st;
	}
	*dir_r = &l->base;
	return DIR_OK;
}

static const struct dir_ops ldap_ops = {
	.name = "ldap",
	.close = ld_close,
	.forget = ld_forget,
	.serial = ld_serial,
	.cos_add = ld_cos_add,
	.cos_set = ld_cos_set,
	.cos_del = ld_cos_del,
	.cos_get = ld_cos_get,
	.cos_list = ld_cos_list,
	.domain_add = ld_domain_add,
	.domain_set = ld_domain_set,
	.domain_del = ld_domain_del,
	.domain_get = ld_domain_get,
	.domain_list = ld_domain_list,
	.account_add = ld_account_add,
	.account_import = ld_account_import,
	.account_set = ld_account_set,
	.account_del = ld_account_del,
	.account_get = ld_account_get,
	.account_list = ld_account_list,
	.alias_add = ld_alias_add,
	.alias_del = ld_alias_del,
	.alias_list = ld_alias_list,
	.list_add = ld_list_add,
	.list_del = ld_list_del,
	.list_member_add = ld_list_member_add,
	.list_member_del = ld_list_member_del,
	.list_get = ld_list_get,
	.list_list = ld_list_list,
	.gal_search = ld_gal_search,
	.account_dn = ld_account_dn,
	.password_bind = ld_password_bind,
	.node = ld_node,
	.domain_catchall = ld_domain_catchall,
};
