/*
 * ctl_migrate.c: ternctl directory migrate --to=ldap [--force] [--switch]
 *
 * Copies the embedded directory (directory_file, opened read-only) into
 * the LDAP directory that the ldap_* options name (ldap_write_uri, else
 * ldap_uri, else the bundled slapd), whatever directory_backend says:
 * classes of service, domains with their catch-alls, accounts (password
 * hashes as stored, never hashed again; status, quotas, display name,
 * mail host, class of service, id and creation time), aliases, lists and
 * their members.  Both sides are opened through dir.h; accounts keep their
 * ids (tern-stored files mail under them: dir_account_import()).
 *
 * Safe to run again: what LDAP already holds identically is skipped, what
 * is missing is added (list members one by one), and what differs is
 * reported and left alone, or made like the embedded directory with
 * --force.  Exit 0 only when LDAP then holds everything: any error or
 * difference left alone exits 1.  With --switch, and only after such a
 * run, conf/tern.conf gets directory_backend = ldap (and, for the bundled
 * slapd, tern-authd's read-only DN).
 *
 * The copy runs in a child process that becomes the daemon user (like
 * every directory command); tern.conf is written by the parent.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "compat.h"
#include "cfg.h"
#include "dir.h"
#include "fsutil.h"
#include "str.h"
#include "ternctl.h"
#include "xalloc.h"

#define MIG_PASSES_MAX 64	/* rounds for aliases of aliases, lists... */
#define MIG_CONF_MAX (1 << 20)
#define AUTHD_RDN "cn=tern-authd"

static const char migrate_usage[] =
	"directory migrate --to=ldap [--force] [--switch]";

enum mig_kind { K_COS, K_DOMAIN, K_ACCOUNT, K_ALIAS, K_LIST, K_MEMBER, K_N };

static const char *const kind_names[K_N] = {
	"classes of service", "domains", "accounts", "aliases", "lists",
	"list members",
};

struct mig_count {
	unsigned added, same, differ, forced, failed;
};

/* An alias or list member still to add (its target may come later). */
struct pending {
	enum mig_kind kind;	/* K_ALIAS or K_MEMBER */
	const char *address;	/* the alias or the list */
	const char *value;	/* the target or the member */
	bool forced;		/* replaces a different alias (--force) */
	bool done;
};

struct mig {
	struct cfg *cfg;
	struct dir *src, *dst;
	struct dir_ldap_settings set;
	char *uri;
	bool force;
	struct str *err;
	struct mig_count n[K_N];
	struct pending *pend;
	size_t npend, pend_cap;
};

/* ---- small helpers ---- */

static bool same_text(const char *a, const char *b)
{
	if (a == NULL)
		a = "";
	if (b == NULL)
		b = "";
	return strcmp(a, b) == 0;
}

static void mig_error(struct mig *m, enum mig_kind k, const char *what,
		      const char *name)
{
	fprintf(stderr, "ternctl: %s %s: %s\n", what, name, str_c(m->err));
	m->n[k].failed++;
}

/* A difference: reported; true when --force says to overwrite it. */
static bool mig_differs(struct mig *m, enum mig_kind k, const char *what,
			const char *name, const char *how)
{
	if (m->force) {
		printf("%s %s: differs in LDAP (%s): overwritten (--force)\n",
		       what, name, how);
		return true;
	}
	printf("%s %s: differs in LDAP (%s): left alone (--force to "
	       "overwrite)\n", what, name, how);
	m->n[k].differ++;
	return false;
}

static void pending_add(struct mig *m, enum mig_kind k, const char *address,
			const char *value, bool forced)
{
	if (m->npend == m->pend_cap) {
		m->pend_cap = m->pend_cap == 0 ? 64 : 2 * m->pend_cap;
		m->pend = xrealloc(m->pend, m->pend_cap * sizeof(*m->pend));
	}
	m->pend[m->npend++] = (struct pending){ k, address, value, forced,
						 false };
}

/* ---- classes of service ---- */

static void cos_one(struct mig *m, const struct dir_cos *c)
{
	struct dir_cos *d = NULL;
	enum dir_status st = dir_cos_get(m->dst, c->name, &d, m->err);

	if (st == DIR_NOTFOUND) {
		if (dir_cos_add(m->dst, c, m->err) != DIR_OK)
			mig_error(m, K_COS, "class of service", c->name);
		else
			m->n[K_COS].added++;
	} else if (st != DIR_OK) {
		mig_error(m, K_COS, "class of service", c->name);
	} else if (d->quota == c->quota &&
		   d->max_message_size == c->max_message_size &&
		   d->max_recipients == c->max_recipients) {
		m->n[K_COS].same++;
	} else if (mig_differs(m, K_COS, "class of service", c->name,
			       "limits")) {
		if (dir_cos_set(m->dst, c, m->err) != DIR_OK)
			mig_error(m, K_COS, "class of service", c->name);
		else
			m->n[K_COS].forced++;
	}
	dir_cos_free(&d);
}

/* ---- domains: without catch-all first, catch-alls at the end ---- */

static const char *domain_diff(const struct dir_domain *a,
			       const struct dir_domain *b)
{
	if (!same_text(a->cos, b->cos))
		return "class of service";
	if (!same_text(a->catchall, b->catchall))
		return "catch-all";
	if (a->default_quota != b->default_quota)
		return "default quota";
	return NULL;
}

/* Phase 1; *later_r: the domain needs dir_domain_set() at the end. */
static void domain_one(struct mig *m, const struct dir_domain *s,
		       bool *later_r)
{
	struct dir_domain *d = NULL, bare = *s;
	enum dir_status st = dir_domain_get(m->dst, s->name, &d, m->err);
	const char *how;

	*later_r = false;
	if (st == DIR_NOTFOUND) {
		bare.catchall = NULL;
		if (dir_domain_add(m->dst, &bare, m->err) != DIR_OK) {
			mig_error(m, K_DOMAIN, "domain", s->name);
		} else {
			m->n[K_DOMAIN].added++;
			*later_r = s->catchall != NULL &&
				   s->catchall[0] != '\0';
		}
	} else if (st != DIR_OK) {
		mig_error(m, K_DOMAIN, "domain", s->name);
	} else if ((how = domain_diff(s, d)) == NULL) {
		m->n[K_DOMAIN].same++;
	} else if (mig_differs(m, K_DOMAIN, "domain", s->name, how)) {
		*later_r = true;
		m->n[K_DOMAIN].forced++;
	}
	dir_domain_free(&d);
}

/* ---- accounts ---- */

static const char *account_diff(const struct dir_account *s,
				const struct dir_account *d)
{
	if (s->id != d->id)
		return "account id";
	if (!same_text(s->password_hash, d->password_hash))
		return "password";
	if (s->status != d->status)
		return "status";
	if (s->quota != d->quota)
		return "quota";
	if (!same_text(s->display_name, d->display_name))
		return "display name";
	if (!same_text(s->mailhost, d->mailhost))
		return "mail host";
	if (!same_text(s->cos, d->cos))
		return "class of service";
	return NULL;
}

static void account_one(struct mig *m, struct dir_account *s)
{
	struct dir_account *d = NULL;
	enum dir_status st = dir_account_get(m->dst, s->address, &d, m->err);
	const char *how;

	if (st == DIR_NOTFOUND) {
		if (dir_account_import(m->dst, s, m->err) != DIR_OK)
			mig_error(m, K_ACCOUNT, "account", s->address);
		else
			m->n[K_ACCOUNT].added++;
	} else if (st != DIR_OK) {
		mig_error(m, K_ACCOUNT, "account", s->address);
	} else if ((how = account_diff(s, d)) == NULL) {
		m->n[K_ACCOUNT].same++;
	} else if (mig_differs(m, K_ACCOUNT, "account", s->address, how)) {
		/* password_hash NULL would keep LDAP's: clear it by hand. */
		if (s->password_hash == NULL && d->password_hash != NULL)
			printf("account %s: has no password here; remove "
			       "userPassword from its LDAP entry by hand\n",
			       s->address);
		/* Another id: the entry is made again with this one. */
		if (s->id != d->id ?
			    dir_account_del(m->dst, s->address, m->err) !=
					    DIR_OK ||
				    dir_account_import(m->dst, s, m->err) !=
					    DIR_OK :
			    dir_account_set(m->dst, s, m->err) != DIR_OK)
			mig_error(m, K_ACCOUNT, "account", s->address);
		else
			m->n[K_ACCOUNT].forced++;
	}
	dir_account_free(&d);
}

/* ---- lists: the entries first, members with the aliases ---- */

static bool in_members(char *const *members, size_t n, const char *address)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(members[i], address) == 0)
			return true;
	return false;
}

static void list_one(struct mig *m, const struct dir_list_info *s)
{
	struct dir_list_info *d = NULL;
	enum dir_status st = dir_list_get(m->dst, s->address, &d, m->err);
	size_t extra = 0;

	if (st == DIR_NOTFOUND) {
		if (dir_list_add(m->dst, s->address, m->err) != DIR_OK) {
			mig_error(m, K_LIST, "list", s->address);
			return;
		}
		m->n[K_LIST].added++;
	} else if (st != DIR_OK) {
		mig_error(m, K_LIST, "list", s->address);
		return;
	}
	for (size_t i = 0; i < s->nmembers; i++) {
		if (d != NULL && in_members(d->members, d->nmembers,
					    s->members[i]))
			m->n[K_MEMBER].same++;
		else
			pending_add(m, K_MEMBER, s->address, s->members[i],
				    false);
	}
	/* Members only LDAP has would be lost: a difference. */
	for (size_t i = 0; d != NULL && i < d->nmembers; i++)
		if (!in_members(s->members, s->nmembers, d->members[i]))
			extra++;
	if (d != NULL && extra == 0)
		m->n[K_LIST].same++;
	else if (extra > 0 && mig_differs(m, K_LIST, "list", s->address,
					  "members only LDAP has"))
		m->n[K_LIST].forced++;
	for (size_t i = 0; m->force && d != NULL && i < d->nmembers; i++) {
		if (in_members(s->members, s->nmembers, d->members[i]))
			continue;
		if (dir_list_member_del(m->dst, s->address, d->members[i],
					m->err) != DIR_OK)
			mig_error(m, K_LIST, "list", s->address);
		else
			printf("list %s: member %s removed\n", s->address,
			       d->members[i]);
	}
	dir_list_info_free(&d);
}

/* ---- aliases ---- */

static int alias_cmp(const void *a, const void *b)
{
	const struct dir_alias *const *x = a, *const *y = b;

	return strcmp((*x)->address, (*y)->address);
}

static void alias_one(struct mig *m, const struct dir_alias *s,
		      struct dir_alias **have, size_t nhave)
{
	struct dir_alias key = { .address = s->address }, *kp = &key;
	struct dir_alias **d = nhave == 0 ? NULL :
			       bsearch(&kp, have, nhave, sizeof(*have),
				       alias_cmp);

	if (d == NULL) {
		pending_add(m, K_ALIAS, s->address, s->target, false);
	} else if (strcmp((*d)->target, s->target) == 0) {
		m->n[K_ALIAS].same++;
	} else if (mig_differs(m, K_ALIAS, "alias", s->address, "target")) {
		if (dir_alias_del(m->dst, s->address, m->err) != DIR_OK)
			mig_error(m, K_ALIAS, "alias", s->address);
		else
			pending_add(m, K_ALIAS, s->address, s->target, true);
	}
}

static void pending_count(struct mig *m, const struct pending *p)
{
	if (p->forced)
		m->n[p->kind].forced++;
	else
		m->n[p->kind].added++;
}

/* Aliases and members whose targets are other aliases or lists: rounds
 * until one adds nothing. */
static void pending_run(struct mig *m)
{
	bool progress = true;
	enum dir_status st;

	for (int pass = 0; progress && pass < MIG_PASSES_MAX; pass++) {
		progress = false;
		for (size_t i = 0; i < m->npend; i++) {
			struct pending *p = &m->pend[i];

			if (p->done)
				continue;
			st = p->kind == K_ALIAS ?
			     dir_alias_add(m->dst, p->address, p->value,
					   m->err) :
			     dir_list_member_add(m->dst, p->address, p->value,
						 m->err);
			if (st == DIR_OK) {
				p->done = true;
				progress = true;
				pending_count(m, p);
			}
		}
	}
	for (size_t i = 0; i < m->npend; i++) {
		struct pending *p = &m->pend[i];

		if (p->done)
			continue;
		/* Once more, for its message. */
		st = p->kind == K_ALIAS ?
		     dir_alias_add(m->dst, p->address, p->value, m->err) :
		     dir_list_member_add(m->dst, p->address, p->value, m->err);
		if (st == DIR_OK) {
			pending_count(m, p);
			continue;
		}
		fprintf(stderr, "ternctl: %s %s -> %s: %s\n",
			p->kind == K_ALIAS ? "alias" : "list member",
			p->address, p->value, str_c(m->err));
		m->n[p->kind].failed++;
	}
}

/* ---- the whole copy ---- */

static void copy_cos(struct mig *m)
{
	struct dir_cos **list = NULL;
	size_t n = 0;

	if (dir_cos_list(m->src, &list, &n, m->err) != DIR_OK) {
		mig_error(m, K_COS, "reading", "classes of service");
		return;
	}
	for (size_t i = 0; i < n; i++)
		cos_one(m, list[i]);
	dir_cos_array_free(&list, n);
}

static void copy_accounts(struct mig *m)
{
	struct dir_account **list = NULL;
	size_t n = 0;

	if (dir_account_list(m->src, NULL, &list, &n, m->err) != DIR_OK) {
		mig_error(m, K_ACCOUNT, "reading", "accounts");
		return;
	}
	for (size_t i = 0; i < n; i++)
		account_one(m, list[i]);
	dir_account_array_free(&list, n);
}

static void copy_aliases(struct mig *m)
{
	struct dir_alias **src = NULL, **have = NULL;
	size_t ns = 0, nh = 0;

	if (dir_alias_list(m->src, NULL, &src, &ns, m->err) != DIR_OK ||
	    dir_alias_list(m->dst, NULL, &have, &nh, m->err) != DIR_OK) {
		mig_error(m, K_ALIAS, "reading", "aliases");
	} else {
		if (nh > 1)
			qsort(have, nh, sizeof(*have), alias_cmp);
		for (size_t i = 0; i < ns; i++)
			alias_one(m, src[i], have, nh);
		pending_run(m);
	}
	dir_alias_array_free(&src, ns);
	dir_alias_array_free(&have, nh);
}

static void copy_all(struct mig *m)
{
	struct dir_domain **doms = NULL;
	struct dir_list_info **lists = NULL;
	size_t nd = 0, nl = 0;
	bool *later = NULL;

	copy_cos(m);
	if (dir_domain_list(m->src, &doms, &nd, m->err) != DIR_OK) {
		mig_error(m, K_DOMAIN, "reading", "domains");
		return;
	}
	later = xcalloc(nd + 1, sizeof(*later));
	for (size_t i = 0; i < nd; i++)
		domain_one(m, doms[i], &later[i]);
	copy_accounts(m);
	if (dir_list_list(m->src, NULL, &lists, &nl, m->err) != DIR_OK) {
		mig_error(m, K_LIST, "reading", "lists");
	} else {
		for (size_t i = 0; i < nl; i++)
			list_one(m, lists[i]);
	}
	/* The aliases, then every pending alias and member together. */
	copy_aliases(m);
	for (size_t i = 0; i < nd; i++)
		if (later[i] && dir_domain_set(m->dst, doms[i], m->err) !=
				DIR_OK)
			mig_error(m, K_DOMAIN, "domain", doms[i]->name);
	free(later);
	dir_list_info_array_free(&lists, nl);
	dir_domain_array_free(&doms, nd);
}

/* 0 when LDAP now holds everything; prints the summary. */
static int summary(const struct mig *m)
{
	unsigned todo = 0, bad = 0;

	printf("%-20s %7s %9s %9s %11s %6s\n", "", "added", "unchanged",
	       "different", "overwritten", "errors");
	for (int k = 0; k < K_N; k++) {
		const struct mig_count *c = &m->n[k];

		printf("%-20s %7u %9u %9u %11u %6u\n", kind_names[k],
		       c->added, c->same, c->differ, c->forced, c->failed);
		todo += c->added + c->forced;
		bad += c->differ + c->failed;
	}
	if (todo == 0 && bad == 0)
		printf("nothing to do: %s holds the whole embedded "
		       "directory\n", m->uri);
	else if (bad == 0)
		printf("done: %s holds the whole embedded directory\n",
		       m->uri);
	return bad == 0 ? 0 : 1;
}

/* The copy, in the child (as the daemon user). */
static int migrate_run(struct mig *m)
{
	enum dir_status st;

	if (ctl_become_user(cfg_str(m->cfg, OPT_USER)) < 0)
		return 1;
	umask(027);
	st = dir_open_sqlite(cfg_str(m->cfg, OPT_DIRECTORY_FILE), true,
			     &m->src, m->err);
	if (st == DIR_OK)
		st = dir_open_ldap(&m->set, false, &m->dst, m->err);
	if (st != DIR_OK) {
		fprintf(stderr, "ternctl: %s\n", str_c(m->err));
		return 1;
	}
	printf("copying %s into %s (%s)\n",
	       cfg_str(m->cfg, OPT_DIRECTORY_FILE), m->uri, m->set.base_dn);
	copy_all(m);
	return summary(m);
}

/* ---- --switch: tern.conf ---- */

/* text with "key = value" instead of every active key line, or at the
 * end when there is none. */
static int conf_set(struct str *text, const char *key, const char *value)
{
	struct str *out = str_new(str_len(text) + 256, MIG_CONF_MAX);
	const char *p = str_c(text), *end = p + str_len(text);
	size_t klen = strlen(key);
	bool found = false;
	int r = 0;

	while (r == 0 && p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *eol = nl != NULL ? nl + 1 : end;
		const char *q = p + strspn(p, " \t");

		if ((size_t)(eol - q) > klen && strncmp(q, key, klen) == 0 &&
		    strchr(" \t=", q[klen]) != NULL) {
			r = str_printf(out, "%s = %s\n", key, value);
			found = true;
		} else {
			r = str_append(out, p, (size_t)(eol - p));
			if (r == 0 && nl == NULL)
				r = str_append_c(out, "\n");
		}
		p = eol;
	}
	if (r == 0 && !found)
		r = str_printf(out, "%s = %s\n", key, value);
	if (r == 0)
		r = str_set(text, str_c(out), str_len(out));
	str_free(&out);
	return r;
}

static int switch_conf(struct ctl *ctl, const struct cfg *cfg)
{
	char *path = ctl_path(ctl, "conf/tern.conf");
	struct str *text = str_new(4096, MIG_CONF_MAX);
	struct str *err = str_new(256, 4096), *dn = str_new(128, 4096);
	const char *why = NULL;
	struct stat st;
	int r = -1;

	if (stat(path, &st) < 0) {
		fprintf(stderr, "ternctl: %s: %s\n", path, strerror(errno));
		goto out;
	}
	if (cfg_read_file(path, MIG_CONF_MAX, text, &why) < 0) {
		fprintf(stderr, "ternctl: %s: %s\n", path, why);
		goto out;
	}
	if (conf_set(text, "directory_backend", "ldap") < 0)
		goto too_long;
	/* The bundled slapd has a read-only DN for tern-authd. */
	if (cfg_str(cfg, OPT_LDAP_URI)[0] == '\0' &&
	    cfg_str(cfg, OPT_LDAP_AUTHD_BIND_DN)[0] == '\0' &&
	    access(cfg_str(cfg, OPT_LDAP_AUTHD_BIND_PASSWORD_FILE),
		   F_OK) == 0) {
		if (str_printf(dn, AUTHD_RDN ",%s",
			       cfg_str(cfg, OPT_LDAP_BASE_DN)) < 0 ||
		    conf_set(text, "ldap_authd_bind_dn", str_c(dn)) < 0)
			goto too_long;
	}
	if (fsutil_write_file(path, str_c(text), str_len(text),
			      st.st_mode & 07777, FSUTIL_REPLACE, err) < 0) {
		fprintf(stderr, "ternctl: %s\n", str_c(err));
		goto out;
	}
	if (chown(path, st.st_uid, st.st_gid) < 0 && geteuid() == 0)
		fprintf(stderr, "ternctl: chown %s: %s\n", path,
			strerror(errno));
	printf("%s: directory_backend = ldap%s%s; restart Tern "
	       "(ternctl restart) to use it\n", path,
	       str_len(dn) > 0 ? ", ldap_authd_bind_dn = " : "", str_c(dn));
	r = 0;
	goto out;
too_long:
	fprintf(stderr, "ternctl: %s: too long\n", path);
out:
	free(path);
	str_free(&text);
	str_free(&err);
	str_free(&dn);
	return r;
}

/* ---- the command ---- */

static int migrate(struct ctl *ctl, struct mig *m, bool do_switch)
{
	pid_t pid;
	int status;

	if (cfg_enum(m->cfg, OPT_DIRECTORY_BACKEND) == DIR_BACKEND_LDAP &&
	    !m->force) {
		fprintf(stderr, "ternctl: directory_backend is ldap already: "
			"the embedded directory %s may be out of date (give "
			"--force to copy it anyway)\n",
			cfg_str(m->cfg, OPT_DIRECTORY_FILE));
		return 1;
	}
	if (access(cfg_str(m->cfg, OPT_DIRECTORY_FILE), R_OK) < 0) {
		fprintf(stderr, "ternctl: %s: %s\n",
			cfg_str(m->cfg, OPT_DIRECTORY_FILE), strerror(errno));
		return 1;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "ternctl: fork: %s\n", strerror(errno));
		return 1;
	}
	if (pid == 0) {
		int r = migrate_run(m);

		dir_close(&m->src);
		dir_close(&m->dst);
		fflush(NULL);
		exit(r);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		if (do_switch)
			fprintf(stderr, "ternctl: tern.conf not switched: "
				"the copy is incomplete\n");
		return 1;
	}
	if (do_switch && switch_conf(ctl, m->cfg) < 0)
		return 1;
	if (!do_switch)
		printf("tern.conf unchanged: run again with --switch to use "
		       "the LDAP directory\n");
	return 0;
}

int ctl_directory(struct ctl *ctl, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "to", required_argument, NULL, 't' },
		{ "force", no_argument, NULL, 'f' },
		{ "switch", no_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	struct mig m = { .force = false };
	bool do_switch = false, to_ldap = false;
	char *conf;
	int c, r = 2;

	if (argc < 2 || strcmp(argv[1], "migrate") != 0) {
		fprintf(stderr, "usage: ternctl %s\n", migrate_usage);
		return 2;
	}
	optind = 0;
	while ((c = getopt_long(argc - 1, argv + 1, "", opts, NULL)) != -1) {
		if (c == 't' && strcmp(optarg, "ldap") == 0) {
			to_ldap = true;
		} else if (c == 'f') {
			m.force = true;
		} else if (c == 's') {
			do_switch = true;
		} else {
			if (c == 't')
				fprintf(stderr, "ternctl: --to must be "
					"ldap\n");
			fprintf(stderr, "usage: ternctl %s\n", migrate_usage);
			return 2;
		}
	}
	if (!to_ldap || optind != argc - 1) {
		fprintf(stderr, "usage: ternctl %s\n", migrate_usage);
		return 2;
	}
	m.err = str_new(256, 4096);
	conf = ctl_path(ctl, "conf/tern.conf");
	r = cfg_load(ctl->root, conf, ctl_warn, NULL, &m.cfg, m.err);
	free(conf);
	if (r < 0) {
		fprintf(stderr, "ternctl: %s\n", str_c(m.err));
		r = 1;
		goto out;
	}
	m.uri = xstrdup(cfg_str(m.cfg, OPT_LDAP_WRITE_URI));
	if (m.uri[0] == '\0') {
		free(m.uri);
		m.uri = cfg_str(m.cfg, OPT_LDAP_URI)[0] != '\0' ?
			xstrdup(cfg_str(m.cfg, OPT_LDAP_URI)) :
			dir_ldap_bundled_uri(ctl->root);
	}
	m.set.uri = m.uri;
	m.set.base_dn = cfg_str(m.cfg, OPT_LDAP_BASE_DN);
	m.set.bind_dn = cfg_str(m.cfg, OPT_LDAP_BIND_DN);
	m.set.bind_password_file = cfg_str(m.cfg, OPT_LDAP_BIND_PASSWORD_FILE);
	m.set.timeout_ms = (unsigned)cfg_duration(m.cfg, OPT_LDAP_TIMEOUT);
	m.set.auth_bind = false;
	r = migrate(ctl, &m, do_switch);
out:
	free(m.uri);
	free(m.pend);
	cfg_free(&m.cfg);
	str_free(&m.err);
	return r;
}
