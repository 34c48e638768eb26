/*
 * dir_ext.c: the external directory for passwords and the address book
 * (dir_ext.h, docs/ldap.md "External directory").
 *
 * One service connection per handle, bound as ext_ldap_bind_dn (or
 * anonymously), under the handle's lock: it finds users and reads the
 * address book.  Password checks bind as the user's DN on a connection of
 * their own, opened and closed for each check, so that the service
 * connection never takes a user's identity.  A connection found dead is
 * reopened at once and the search retried once; a failed connect or a
 * timeout starts the backoff.  Only the result codes that mean "these
 * credentials are wrong" are a failed login; every other code is a
 * temporary failure.
 */
#include "config.h"

#include "compat.h"

#include <lber.h>
#include <ldap.h>
#include <pthread.h>
#include <stdlib.h>

#include "dir_backend.h"
#include "dir_ext.h"
#include "dir_ldap.h"
#include "xalloc.h"

#define EXT_ATTR_MAX 128
#define EXT_PASSWORD_MAX 4096
#define EXT_NO_CONNECTION (-1000)	/* ext_search: ext_connect said why */

struct dir_ext {
	char *uri, *base_dn, *bind_dn, *password;
	char *user_filter, *gal_filter;
	char *attr_mail, *attr_display_name, *attr_given_name, *attr_surname;
	unsigned timeout_ms;
	bool auth, gal;
	bool starttls;
	char *ca_file;		/* NULL: the system's CAs */

	pthread_mutex_t lock;	/* the fields below */
	LDAP *ld;		/* the service connection, or NULL */
	struct dir_ldap_backoff backoff;
};

/* ---- templates ---- */

static const char *template_value(const struct dir_ext_vars *vars, char c)
{
	switch (c) {
	case 'u': return vars->u;
	case 'l': return vars->l;
	case 'd': return vars->d;
	case 's': return vars->s;
	default: return NULL;
	}
}

enum dir_status dir_ext_template(const char *tmpl,
				 const struct dir_ext_vars *vars,
				 struct str *out, struct str *error)
{
	struct str *s = str_new(256, DIR_EXT_FILTER_MAX);
	enum dir_status st = DIR_OK;
	size_t len = strlen(tmpl);

	if (len == 0 || len > DIR_EXT_TEMPLATE_MAX) {
		str_setf(error, "a filter template must be 1 to %d bytes",
			 DIR_EXT_TEMPLATE_MAX);
		st = DIR_INVALID;
	}
	for (size_t i = 0; st == DIR_OK && i < len; i++) {
		const char *v;
		int r = 0;

		if (tmpl[i] != '%') {
			r = str_append(s, &tmpl[i], 1);
		} else if (i + 1 == len) {
			str_setf(error, "filter template '%.200s' ends with "
				 "'%%'", tmpl);
			st = DIR_INVALID;
			break;
		} else if (tmpl[++i] == '%') {
			r = str_append(s, "%", 1);
		} else if ((v = template_value(vars, tmpl[i])) != NULL) {
			r = dir_ldap_filter_escape(s, v, strlen(v));
		} else {
			unsigned char c = (unsigned char)tmpl[i];

			if (c >= 0x21 && c < 0x7f)
				str_setf(error, "filter template '%.200s': "
					 "unknown '%%%c'", tmpl, c);
			else
				str_setf(error, "filter template '%.200s': "
					 "unknown '%%' sequence", tmpl);
			st = DIR_INVALID;
			break;
		}
		if (r < 0) {
			str_setf(error, "the filter would be longer than %d "
				 "bytes", DIR_EXT_FILTER_MAX);
			st = DIR_INVALID;
		}
	}
	if (st == DIR_OK && str_set(out, str_c(s), str_len(s)) < 0) {
		str_setf(error, "the filter would be longer than %d bytes",
			 DIR_EXT_FILTER_MAX);
		st = DIR_INVALID;
	}
	str_free(&s);
	return st;
}

/* ---- the connection ---- */

static void ext_drop(struct dir_ext *x)
{
	if (x->ld != NULL)
		ldap_unbind_ext_s(x->ld, NULL, NULL);
	x->ld = NULL;
}

/* The server failed us: no new connection before the next backoff step. */
static void ext_down(struct dir_ext *x)
{
	ext_drop(x);
	dir_ldap_backoff_failed(&x->backoff);
}

/* TLS settings of this connection: the certificate verified against
 * ca_file (or the system's CAs), TLS 1.2 at least. */
static int ext_tls(const struct dir_ext *x, LDAP *ld)
{
	int demand = LDAP_OPT_X_TLS_DEMAND, min = LDAP_OPT_X_TLS_PROTOCOL_TLS1_2;
	int newctx = 0, rc;

	rc = ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand);
	if (rc == LDAP_OPT_SUCCESS)
		rc = ldap_set_option(ld, LDAP_OPT_X_TLS_PROTOCOL_MIN, &min);
	if (rc == LDAP_OPT_SUCCESS && x->ca_file != NULL)
		rc = ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE,
				     x->ca_file);
	if (rc == LDAP_OPT_SUCCESS)
		rc = ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &newctx);
	return rc == LDAP_OPT_SUCCESS ? LDAP_SUCCESS : LDAP_CONNECT_ERROR;
}

/* A new connection with Tern's options, TLS set up (STARTTLS done) when
 * configured; NULL with the code in *rc_r. */
static LDAP *ext_init(const struct dir_ext *x, int *rc_r)
{
	LDAP *ld = NULL;

	*rc_r = dir_ldap_init(x->uri, x->timeout_ms, &ld);
	if (*rc_r != LDAP_SUCCESS)
		return NULL;
	*rc_r = ext_tls(x, ld);
	if (*rc_r == LDAP_SUCCESS && x->starttls)
		*rc_r = ldap_start_tls_s(ld, NULL, NULL);
	if (*rc_r != LDAP_SUCCESS) {
		ldap_unbind_ext_s(ld, NULL, NULL);
		return NULL;
	}
	return ld;
}

static int simple_bind(LDAP *ld, const char *dn, const char *password)
{
	struct berval cred = { .bv_len = strlen(password),
			       .bv_val = (char *)password };

	return ldap_sasl_bind_s(ld, dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL,
				NULL);
}

/* The service connection; call with the lock held. */
static enum dir_status ext_connect(struct dir_ext *x, struct str *error)
{
	uint64_t wait = dir_ldap_backoff_wait(&x->backoff);
	int rc;

	if (x->ld != NULL)
		return DIR_OK;
	if (wait > 0) {
		str_setf(error, "external directory %s unreachable (next try "
			 "in %llu ms)", x->uri, (unsigned long long)wait);
		return DIR_TEMPFAIL;
	}
	x->ld = ext_init(x, &rc);
	if (x->ld != NULL)
		rc = simple_bind(x->ld, x->bind_dn, x->password);
	if (rc != LDAP_SUCCESS) {
		ext_down(x);
		str_setf(error, "external directory %s: bind as %s: %s", x->uri,
			 x->bind_dn[0] != '\0' ? "the service DN" :
			 "anonymous", ldap_err2string(rc));
		return DIR_TEMPFAIL;
	}
	dir_ldap_backoff_reset(&x->backoff);
	return DIR_OK;
}

/* One search on the service connection, retried once on a fresh
 * connection when the old one was found dead; call with the lock held.
 * The LDAP result code, with *res_r to free; EXT_NO_CONNECTION when
 * there is none. */
static int ext_search(struct dir_ext *x, const char *filter,
		      const char *const *attrs, int sizelimit,
		      LDAPControl **ctrls, LDAPMessage **res_r,
		      struct str *error)
{
	struct timeval tv = dir_ldap_tv(x->timeout_ms);
	bool fresh = x->ld == NULL;
	int rc = LDAP_OTHER;

	*res_r = NULL;
	for (int tries = 0; tries < 2; tries++) {
		if (ext_connect(x, error) != DIR_OK)
			return EXT_NO_CONNECTION;
		rc = ldap_search_ext_s(x->ld, x->base_dn, LDAP_SCOPE_SUBTREE,
				       filter, (char **)attrs, 0, ctrls, NULL,
				       &tv, sizelimit, res_r);
		if (rc != LDAP_SERVER_DOWN && rc != LDAP_CONNECT_ERROR)
			break;
		if (*res_r != NULL)
			ldap_msgfree(*res_r);
		*res_r = NULL;
		ext_drop(x);
		if (fresh)
			break;
		fresh = true;
	}
	return rc;
}

/* The status of a search's result code; a lost or hung server is dropped
 * (and backed off). */
static enum dir_status ext_status(struct dir_ext *x, int rc, bool limited,
				  struct str *error)
{
	if (rc == LDAP_SUCCESS || (limited && rc == LDAP_SIZELIMIT_EXCEEDED))
		return DIR_OK;
	if (rc == EXT_NO_CONNECTION)
		return DIR_TEMPFAIL;
	str_setf(error, "external directory %s: search under %s: %s", x->uri,
		 x->base_dn, ldap_err2string(rc));
	if (rc == LDAP_TIMEOUT || rc == LDAP_SERVER_DOWN ||
	    rc == LDAP_CONNECT_ERROR)
		ext_down(x);
	else if (rc < 0)
		ext_drop(x);
	return DIR_TEMPFAIL;
}

/* ---- passwords ---- */

/* The DN of the one entry the user filter finds (malloc'd). */
static enum dir_status user_dn(struct dir_ext *x, const char *filter,
			       char **dn_r, struct str *error)
{
	static const char *const no_attrs[] = { LDAP_NO_ATTRS, NULL };
	LDAPMessage *res = NULL, *e;
	enum dir_status st;
	int rc, n;
	char *dn;

	*dn_r = NULL;
	pthread_mutex_lock(&x->lock);
	rc = ext_search(x, filter, no_attrs, 2, NULL, &res, error);
	if (rc == LDAP_SIZELIMIT_EXCEEDED) {
		str_setf(error, "more than one entry matches");
		st = DIR_NOTFOUND;
	} else {
		st = ext_status(x, rc, false, error);
	}
	n = st == DIR_OK ? ldap_count_entries(x->ld, res) : 0;
	if (st == DIR_OK && n != 1) {
		str_setf(error, n == 0 ? "no entry matches" :
			 "more than one entry matches");
		st = DIR_NOTFOUND;
	}
	if (st == DIR_OK && (e = ldap_first_entry(x->ld, res)) != NULL &&
	    (dn = ldap_get_dn(x->ld, e)) != NULL) {
		*dn_r = xstrdup(dn);
		ldap_memfree(dn);
	} else if (st == DIR_OK) {
		str_setf(error, "external directory %s: entry without a DN",
			 x->uri);
		st = DIR_TEMPFAIL;
	}
	if (res != NULL)
		ldap_msgfree(res);
	pthread_mutex_unlock(&x->lock);
	return st;
}

/* A bind as dn on a connection of its own, closed at once. */
static enum dir_status user_bind(const struct dir_ext *x, const char *dn,
				 const char *password, struct str *error)
{
	LDAP *ld;
	int rc;

	ld = ext_init(x, &rc);
	if (ld != NULL) {
		rc = simple_bind(ld, dn, password);
		ldap_unbind_ext_s(ld, NULL, NULL);
	}
	switch (rc) {
	case LDAP_SUCCESS:
		return DIR_OK;
	case LDAP_INVALID_CREDENTIALS:	/* also: disabled, expired, locked */
	case LDAP_INAPPROPRIATE_AUTH:
	case LDAP_INSUFFICIENT_ACCESS:
	case LDAP_NO_SUCH_OBJECT:
		str_setf(error, "wrong password");
		return DIR_AUTHFAIL;
	default:
		str_setf(error, "external directory %s: bind as the user: %s",
			 x->uri, ldap_err2string(rc));
		return DIR_TEMPFAIL;
	}
}

enum dir_status dir_ext_authenticate(struct dir_ext *x, const char *address,
				     const char *password, struct str *error)
{
	const char *at = address != NULL ? strrchr(address, '@') : NULL;
	struct str *filter = str_new(256, DIR_EXT_FILTER_MAX);
	struct dir_ext_vars vars = { .u = address, .d = at ? at + 1 : NULL };
	size_t plen = password != NULL ? strlen(password) : 0;
	enum dir_status st;
	char *local = NULL, *dn = NULL;

	if (at == NULL) {
		str_free(&filter);
		str_setf(error, "not an address");
		return DIR_NOTFOUND;
	}
	local = xstrndup(address, (size_t)(at - address));
	vars.l = local;
	st = dir_ext_template(x->user_filter, &vars, filter, error);
	if (st == DIR_INVALID)
		st = DIR_NOTFOUND;	/* too long for the filter */
	if (st == DIR_OK)
		st = user_dn(x, str_c(filter), &dn, error);
	/* An empty password would be an unauthenticated bind: success. */
	if (st == DIR_OK && (plen == 0 || plen > EXT_PASSWORD_MAX)) {
		str_setf(error, "empty or overlong password");
		st = DIR_AUTHFAIL;
	}
	if (st == DIR_OK)
		st = user_bind(x, dn, password, error);
	free(dn);
	free(local);
	str_free(&filter);
	return st;
}

/* ---- the address book ---- */

struct gal_ctx {
	struct dir_ext *x;
	struct dir_gal_entry **list;
	size_t n;
};

static char *first_value(LDAP *ld, LDAPMessage *e, const char *attr)
{
	struct berval **v = ldap_get_values_len(ld, e, attr);
	char *r = NULL;

	if (v != NULL && v[0] != NULL && v[0]->bv_len < DIR_NAME_MAX &&
	    memchr(v[0]->bv_val, '\0', v[0]->bv_len) == NULL)
		r = xstrndup(v[0]->bv_val, v[0]->bv_len);
	ldap_value_free_len(v);
	return r;
}

/* The display name, else "given surname", else NULL (malloc'd). */
static char *gal_name(struct dir_ext *x, LDAPMessage *e)
{
	char *name = first_value(x->ld, e, x->attr_display_name);
	char *given, *sn;
	struct str *s;

	if (name != NULL && name[0] != '\0')
		return name;
	free(name);
	given = first_value(x->ld, e, x->attr_given_name);
	sn = first_value(x->ld, e, x->attr_surname);
	s = str_new(64, DIR_NAME_MAX - 1);
	if (given != NULL && str_append_c(s, given) == 0 && sn != NULL &&
	    str_append_c(s, " ") < 0)
		str_clear(s);
	if (sn != NULL && str_append_c(s, sn) < 0)
		str_clear(s);	/* too long: no name rather than half */
	name = str_len(s) > 0 ? xstrdup(str_c(s)) : NULL;
	str_free(&s);
	free(given);
	free(sn);
	return name;
}

static void gal_entry(struct gal_ctx *g, LDAPMessage *e)
{
	struct str *error = str_new(64, 512);
	char *mail = first_value(g->x->ld, e, g->x->attr_mail), *addr = NULL;
	char *name;
	struct dir_gal_entry *ge;

	if (mail != NULL && dir_norm_address(mail, &addr, error) == DIR_OK) {
		name = gal_name(g->x, e);
		if (name != NULL &&
		    dir_check_text("name", name, error) != DIR_OK) {
			free(name);
			name = NULL;
		}
		ge = xcalloc(1, sizeof(*ge));
		ge->kind = DIR_GAL_ACCOUNT;
		ge->address = addr;
		ge->display_name = name;
		dir_array_push((void ***)&g->list, &g->n, ge);
	}
	free(mail);
	str_free(&error);
}

/* One page of at most want entries after cookie (replaced by the next
 * one); call with the lock held. */
static enum dir_status gal_page(struct gal_ctx *g, const char *filter,
				const char *const *attrs, size_t want,
				struct berval *cookie, struct str *error)
{
	struct dir_ext *x = g->x;
	LDAPControl *ctl = NULL, *ctrls[2] = { NULL, NULL };
	LDAPMessage *res = NULL;
	enum dir_status st;
	size_t got = 0;
	int rc;

	st = ext_connect(x, error);
	if (st == DIR_OK && ldap_create_page_control(x->ld, (ber_int_t)want,
						     cookie, 0, &ctl) !=
				    LDAP_SUCCESS) {
		str_setf(error, "paged results control: out of memory");
		st = DIR_TEMPFAIL;
	}
	ber_memfree(cookie->bv_val);
	cookie->bv_val = NULL;
	cookie->bv_len = 0;
	if (st != DIR_OK)
		return st;
	ctrls[0] = ctl;
	rc = ext_search(x, filter, attrs, 0, ctrls, &res, error);
	ldap_control_free(ctl);
	st = ext_status(x, rc, true, error);
	for (LDAPMessage *e = st == DIR_OK && res != NULL ?
			      ldap_first_entry(x->ld, res) : NULL;
	     e != NULL && got < want; e = ldap_next_entry(x->ld, e), got++)
		gal_entry(g, e);
	if (st == DIR_OK && res != NULL && dir_ldap_page_cookie(x->ld, res, cookie) < 0) {
		str_setf(error, "external directory %s: bad paged results "
			 "control", x->uri);
		st = DIR_TEMPFAIL;
	}
	if (res != NULL)
		ldap_msgfree(res);
	return st;
}

/* Ends a paged search cut short (page size 0, RFC 2696). */
static void gal_abandon(struct dir_ext *x, const char *filter,
			struct berval *cookie)
{
	static const char *const no_attrs[] = { LDAP_NO_ATTRS, NULL };
	struct timeval tv = dir_ldap_tv(x->timeout_ms);
	LDAPControl *ctl = NULL, *ctrls[2] = { NULL, NULL };
	LDAPMessage *res = NULL;

	if (x->ld == NULL ||
	    ldap_create_page_control(x->ld, 0, cookie, 0, &ctl) !=
		    LDAP_SUCCESS)
		return;
	ctrls[0] = ctl;
	(void)ldap_search_ext_s(x->ld, x->base_dn, LDAP_SCOPE_SUBTREE, filter,
				(char **)no_attrs, 0, ctrls, NULL, &tv, 0,
				&res);
	if (res != NULL)
		ldap_msgfree(res);
	ldap_control_free(ctl);
}

enum dir_status dir_ext_gal_search(struct dir_ext *x, const char *text,
				   size_t limit,
				   struct dir_gal_entry ***list_r,
				   size_t *count_r, struct str *error)
{
	const char *attrs[] = { x->attr_mail, x->attr_display_name,
				x->attr_given_name, x->attr_surname, NULL };
	struct dir_ext_vars vars = { .s = text };
	struct str *filter = str_new(256, DIR_EXT_FILTER_MAX);
	struct gal_ctx g = { .x = x };
	struct berval cookie = { 0, NULL };
	enum dir_status st;

	*list_r = NULL;
	*count_r = 0;
	if (limit == 0 || limit > DIR_GAL_LIMIT_MAX)
		limit = DIR_GAL_LIMIT_MAX;
	st = dir_ext_template(x->gal_filter, &vars, filter, error);
	pthread_mutex_lock(&x->lock);
	/* Pages until limit entries or the last page, and at most
	 * DIR_GAL_LIMIT_MAX + 1 of them (a server might send empty ones). */
	for (unsigned page = 0; st == DIR_OK && page <= DIR_GAL_LIMIT_MAX;
	     page++) {
		size_t want = limit - g.n;

		if (want > DIR_LDAP_PAGE_SIZE)
			want = DIR_LDAP_PAGE_SIZE;
		st = gal_page(&g, str_c(filter), attrs, want, &cookie, error);
		if (st != DIR_OK || cookie.bv_len == 0)
			break;
		if (g.n >= limit) {
			gal_abandon(x, str_c(filter), &cookie);
			break;
		}
	}
	pthread_mutex_unlock(&x->lock);
	ber_memfree(cookie.bv_val);
	str_free(&filter);
	if (st != DIR_OK) {
		dir_gal_array_free(&g.list, g.n);
		return st;
	}
	*list_r = g.list;
	*count_r = g.n;
	return DIR_OK;
}

/* ---- opening ---- */

bool dir_ext_auth(const struct dir_ext *x)
{
	return x != NULL && x->auth;
}

bool dir_ext_gal(const struct dir_ext *x)
{
	return x != NULL && x->gal;
}

const char *dir_ext_describe(const struct dir_ext *x)
{
	return x->uri;
}

/* An attribute description: a letter, then letters, digits, hyphens
 * (RFC 4512 descr), or a numeric OID. */
static bool attr_valid(const char *a)
{
	size_t n = strlen(a);
	bool oid = a[0] >= '0' && a[0] <= '9';

	if (n == 0 || n > EXT_ATTR_MAX ||
	    !(oid || (a[0] >= 'a' && a[0] <= 'z') ||
	      (a[0] >= 'A' && a[0] <= 'Z')))
		return false;
	for (size_t i = 1; i < n; i++) {
		char c = a[i];

		if (oid ? !((c >= '0' && c <= '9') || c == '.') :
			  !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			    (c >= '0' && c <= '9') || c == '-'))
			return false;
	}
	return true;
}

/* Each template with sample values: its "%x" must be ones it may use. */
static enum dir_status settings_check(const struct dir_ext_settings *set,
				      struct str *error)
{
	const struct dir_ext_vars user = { .u = "u@d", .l = "u", .d = "d" };
	const struct dir_ext_vars gal = { .s = "s" };
	const char *attrs[] = { set->attr_mail, set->attr_display_name,
				set->attr_given_name, set->attr_surname };
	struct str *tmp = str_new(256, DIR_EXT_FILTER_MAX);
	enum dir_status st = DIR_OK;

	if (set->uri == NULL || set->uri[0] == '\0' || set->base_dn == NULL ||
	    set->base_dn[0] == '\0') {
		str_setf(error, "the external directory needs ext_ldap_uri "
			 "and ext_ldap_base_dn");
		st = DIR_INVALID;
	}
	if (st == DIR_OK && set->auth)
		st = dir_ext_template(set->user_filter != NULL ?
				      set->user_filter : "", &user, tmp,
				      error);
	if (st == DIR_OK && set->gal)
		st = dir_ext_template(set->gal_filter != NULL ?
				      set->gal_filter : "", &gal, tmp, error);
	for (size_t i = 0; st == DIR_OK && i < TERN_NELEM(attrs); i++) {
		if (attrs[i] == NULL || !attr_valid(attrs[i])) {
			str_setf(error, "ext_ldap_attr_*: '%.200s' is not an "
				 "attribute name", attrs[i] ? attrs[i] : "");
			st = DIR_INVALID;
		}
	}
	str_free(&tmp);
	return st;
}

enum dir_status dir_ext_open(const struct dir_ext_settings *set,
			     struct dir_ext **ext_r, struct str *error)
{
	struct dir_ext *x;
	enum dir_status st;

	*ext_r = NULL;
	st = settings_check(set, error);
	if (st != DIR_OK)
		return st;
	x = xcalloc(1, sizeof(*x));
	x->uri = xstrdup(set->uri);
	x->base_dn = xstrdup(set->base_dn);
	x->bind_dn = xstrdup(set->bind_dn != NULL ? set->bind_dn : "");
	x->user_filter = xstrdup(set->user_filter != NULL ?
				 set->user_filter : "");
	x->gal_filter = xstrdup(set->gal_filter != NULL ? set->gal_filter :
				"");
	x->attr_mail = xstrdup(set->attr_mail);
	x->attr_display_name = xstrdup(set->attr_display_name);
	x->attr_given_name = xstrdup(set->attr_given_name);
	x->attr_surname = xstrdup(set->attr_surname);
	x->timeout_ms = set->timeout_ms > 0 ? set->timeout_ms : 5000;
	x->starttls = set->starttls;
	x->ca_file = set->ca_file != NULL && set->ca_file[0] != '\0' ?
			     xstrdup(set->ca_file) : NULL;
	x->auth = set->auth;
	x->gal = set->gal;
	if (pthread_mutex_init(&x->lock, NULL) != 0)
		abort();
	if (x->bind_dn[0] != '\0')
		st = dir_ldap_secret_read(set->bind_password_file != NULL ?
					  set->bind_password_file : "",
					  "ext_ldap_bind_password_file",
					  DIR_INVALID, &x->password, error);
	else
		x->password = xstrdup("");
	if (st != DIR_OK) {
		dir_ext_close(&x);
		return st;
	}
	*ext_r = x;
	return DIR_OK;
}

void dir_ext_close(struct dir_ext **ext)
{
	struct dir_ext *x = *ext;

	if (x == NULL)
		return;
	ext_drop(x);
	pthread_mutex_destroy(&x->lock);
	if (x->password != NULL) {
		explicit_bzero(x->password, strlen(x->password));
		free(x->password);
	}
	free(x->uri);
	free(x->ca_file);
	free(x->base_dn);
	free(x->bind_dn);
	free(x->user_filter);
	free(x->gal_filter);
	free(x->attr_mail);
	free(x->attr_display_name);
	free(x->attr_given_name);
	free(x->attr_surname);
	free(x);
	*ext = NULL;
}
