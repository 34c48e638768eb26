/*
 * ctl_dir.c: provisioning the directory (dir.h) with ternctl:
 *
 *   ternctl domain  add|list|show|set|del
 *   ternctl account add|list|show|passwd|set|del|move (move: the mail host
 *           and the cached route, never the mailbox data)
 *   ternctl alias   add|del|list
 *   ternctl list    add|del|show|list, list member add|del LIST ADDRESS
 *   ternctl cos     add|set|del|list|show
 *   ternctl gal     search TEXT [--limit N] [--json]
 *
 * Each command opens the file named by the directory_file option, makes
 * one change (one transaction) or prints, and exits 0 with a confirmation
 * line; bad input is one "ternctl: ..." line on stderr, exit 1, nothing
 * changed; a usage error exits 2.  list and show take --json.
 *
 * Passwords never come from argv: they are read from the terminal with
 * echo off (twice), or as the first line of stdin when it is not a
 * terminal.  Run as root, ternctl switches to the daemon user (the user
 * option) before it opens the directory, so the file and its -wal and
 * -shm companions are always owned by that user and readable by
 * tern-authd; the file is created mode 0640.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <idn2.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "cfg.h"
#include "dir.h"
#include "json.h"
#include "memcache.h"
#include "str.h"
#include "ternctl.h"
#include "xalloc.h"

#define PASSWORD_MAX 4096

enum {
	O_JSON = 1 << 0, O_COS = 1 << 1, O_QUOTA = 1 << 2,
	O_CATCHALL = 1 << 3, O_NO_CATCHALL = 1 << 4, O_NAME = 1 << 5,
	O_STATUS = 1 << 6, O_MAILHOST = 1 << 7, O_NO_PASSWORD = 1 << 8,
	O_MAX_MSG = 1 << 9, O_MAX_RCPT = 1 << 10, O_LIMIT = 1 << 11,
};

static const struct option long_opts[] = {
	{ "json", no_argument, NULL, O_JSON },
	{ "cos", required_argument, NULL, O_COS },
	{ "quota", required_argument, NULL, O_QUOTA },
	{ "catchall", required_argument, NULL, O_CATCHALL },
	{ "no-catchall", no_argument, NULL, O_NO_CATCHALL },
	{ "name", required_argument, NULL, O_NAME },
	{ "status", required_argument, NULL, O_STATUS },
	{ "mailhost", required_argument, NULL, O_MAILHOST },
	{ "no-password", no_argument, NULL, O_NO_PASSWORD },
	{ "max-message-size", required_argument, NULL, O_MAX_MSG },
	{ "max-recipients", required_argument, NULL, O_MAX_RCPT },
	{ "limit", required_argument, NULL, O_LIMIT },
	{ NULL, 0, NULL, 0 },
};

/* A parsed command line. */
struct dopts {
	unsigned seen;		/* O_ bits given */
	const char *cos, *catchall, *name, *mailhost;
	enum dir_account_status status;
	uint64_t quota, max_msg;
	uint32_t max_rcpt;
	size_t limit;
	char **args;		/* the positional arguments */
	int nargs;
};

/* One command run: the configuration, the open directory, messages. */
struct dctx {
	struct ctl *ctl;
	struct cfg *cfg;
	struct dir *dir;
	struct str *err;
	struct dopts o;
};

struct dsub {
	const char *name;
	int (*run)(struct dctx *d);
	unsigned allowed;	/* O_ bits */
	int amin, amax;		/* positional arguments */
	const char *usage;
};

static int fail(struct dctx *d)
{
	fprintf(stderr, "ternctl: %s\n", str_c(d->err));
	return 1;
}

static int usage_error(const char *group, const struct dsub *s)
{
	fprintf(stderr, "usage: ternctl %s %s\n", group, s->usage);
	return 2;
}

/* ---- options ---- */

static int opt_value(struct dopts *o, int c, const char *arg)
{
	long long n;

	switch (c) {
	case O_COS: o->cos = arg; return 0;
	case O_CATCHALL: o->catchall = arg; return 0;
	case O_NAME: o->name = arg; return 0;
	case O_MAILHOST: o->mailhost = arg; return 0;
	case O_QUOTA:
	case O_MAX_MSG:
		if (cfg_parse_size(arg, c == O_QUOTA ? &o->quota :
				   &o->max_msg) < 0) {
			fprintf(stderr, "ternctl: invalid size '%s' (a number "
				"of bytes with an optional k, M or G suffix, "
				"e.g. 512M; 0 = no limit)\n", arg);
			return -1;
		}
		return 0;
	case O_MAX_RCPT:
		if (cfg_parse_int(arg, &n) < 0 || n < 0 || n > UINT32_MAX) {
			fprintf(stderr, "ternctl: invalid number '%s' for "
				"--max-recipients\n", arg);
			return -1;
		}
		o->max_rcpt = (uint32_t)n;
		return 0;
	case O_LIMIT:
		if (cfg_parse_int(arg, &n) < 0 || n < 1 ||
		    n > DIR_GAL_LIMIT_MAX) {
			fprintf(stderr, "ternctl: invalid limit '%s' (1 to "
				"%d)\n", arg, DIR_GAL_LIMIT_MAX);
			return -1;
		}
		o->limit = (size_t)n;
		return 0;
	case O_STATUS:
		if (dir_account_status_parse(arg, &o->status) < 0) {
			fprintf(stderr, "ternctl: invalid status '%s' (active, "
				"locked or closed)\n", arg);
			return -1;
		}
		return 0;
	}
	return 0;
}

/* 0, or the exit status of a usage (2) or value (1) error. */
static int opts_parse(int argc, char **argv, const char *group,
		      const struct dsub *s, struct dopts *o)
{
	int c;

	memset(o, 0, sizeof(*o));
	optind = 0;
	opterr = 1;
	while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
		if (c == '?' || !(s->allowed & (unsigned)c))
			return usage_error(group, s);
		o->seen |= (unsigned)c;
		if (opt_value(o, c, optarg) < 0)
			return 1;
	}
	o->args = argv + optind;
	o->nargs = argc - optind;
	if (o->nargs < s->amin || o->nargs > s->amax)
		return usage_error(group, s);
	return 0;
}

/* ---- opening the directory ---- */

static int dctx_open(struct dctx *d)
{
	char *conf = ctl_path(d->ctl, "conf/tern.conf");
	const char *path;
	int r;

	r = cfg_load(d->ctl->root, conf, ctl_warn, NULL, &d->cfg, d->err);
	free(conf);
	if (r < 0)
		return fail(d);
	path = cfg_str(d->cfg, OPT_DIRECTORY_FILE);
	if (path[0] == '\0' &&
	    cfg_enum(d->cfg, OPT_DIRECTORY_BACKEND) == DIR_BACKEND_SQLITE) {
		fprintf(stderr, "ternctl: directory_file is empty\n");
		return 1;
	}
	if (ctl_become_user(cfg_str(d->cfg, OPT_USER)) < 0)
		return 1;
	umask(027);
	if (dir_open_config(d->cfg, false, &d->dir, d->err) != DIR_OK)
		return fail(d);
	return 0;
}

static int run_group(struct ctl *ctl, int argc, char **argv,
		     const char *group, const struct dsub *subs, size_t nsubs)
{
	const struct dsub *s = NULL;
	struct dctx d = { .ctl = ctl };
	int r;

	for (size_t i = 0; argc >= 2 && i < nsubs; i++)
		if (strcmp(argv[1], subs[i].name) == 0)
			s = &subs[i];
	if (s == NULL) {
		fprintf(stderr, "usage:\n");
		for (size_t i = 0; i < nsubs; i++)
			fprintf(stderr, "  ternctl %s %s\n", group,
				subs[i].usage);
		return 2;
	}
	r = opts_parse(argc - 1, argv + 1, group, s, &d.o);
	if (r != 0)
		return r;
	d.err = str_new(256, 4096);
	r = dctx_open(&d);
	if (r == 0)
		r = s->run(&d);
	dir_close(&d.dir);
	cfg_free(&d.cfg);
	str_free(&d.err);
	return r;
}

/* ---- output helpers ---- */

static const char *size_text(struct str *buf, uint64_t v, const char *zero)
{
	str_clear(buf);
	if (v == 0 || cfg_format_size(buf, v) < 0)
		return zero;
	return str_c(buf);
}

static const char *or_none(const char *s)
{
	return s != NULL && s[0] != '\0' ? s : "none";
}

/* The normalized form of an address or domain, for messages. */
static int norm(struct dctx *d, const char *in, bool domain, struct str *out)
{
	enum dir_status st = domain ? dir_domain_normalize(in, out, d->err) :
			     dir_address_normalize(in, out, NULL, d->err);

	return st == DIR_OK ? 0 : fail(d);
}

/* ---- domains ---- */

static void domain_json(struct json *j, const struct dir_domain *dom)
{
	json_object_begin(j);
	json_kv_cstring(j, "name", dom->name);
	json_kv_cstring(j, "cos", dom->cos);
	json_kv_cstring(j, "catchall", dom->catchall);
	json_kv_int(j, "default_quota", (int64_t)dom->default_quota);
	json_kv_int(j, "accounts", dom->accounts);
	json_object_end(j);
}

static int domain_add(struct dctx *d)
{
	struct dir_domain dom = {
		.name = d->o.args[0], .cos = (char *)d->o.cos,
		.catchall = (char *)d->o.catchall,
		.default_quota = d->o.quota,
	};
	struct str *name = str_new(256, 1024);
	int r = norm(d, d->o.args[0], true, name);

	if (r == 0 && dir_domain_add(d->dir, &dom, d->err) != DIR_OK)
		r = fail(d);
	if (r == 0)
		printf("domain %s added\n", str_c(name));
	str_free(&name);
	return r;
}

static int domain_list(struct dctx *d)
{
	struct dir_domain **list;
	struct str *buf, *out;
	struct json *j;
	size_t n;

	if (dir_domain_list(d->dir, &list, &n, d->err) != DIR_OK)
		return fail(d);
	if (d->o.seen & O_JSON) {
		j = ctl_json_start(&out);
		json_array_begin(j);
		for (size_t i = 0; i < n; i++)
			domain_json(j, list[i]);
		json_array_end(j);
		dir_domain_array_free(&list, n);
		return ctl_json_done(&j, &out);
	}
	buf = str_new(32, 64);
	for (size_t i = 0; i < n; i++)
		printf("%s accounts=%u cos=%s quota=%s catchall=%s\n",
		       list[i]->name, list[i]->accounts, list[i]->cos,
		       size_text(buf, list[i]->default_quota, "cos"),
		       or_none(list[i]->catchall));
	str_free(&buf);
	dir_domain_array_free(&list, n);
	return 0;
}

static int domain_show(struct dctx *d)
{
	struct dir_domain *dom;
	struct str *buf, *out;
	struct json *j;
	char *u = NULL;

	if (dir_domain_get(d->dir, d->o.args[0], &dom, d->err) != DIR_OK)
		return fail(d);
	if (d->o.seen & O_JSON) {
		j = ctl_json_start(&out);
		domain_json(j, dom);
		dir_domain_free(&dom);
		return ctl_json_done(&j, &out);
	}
	buf = str_new(32, 64);
	printf("name: %s\n", dom->name);
	if (idn2_to_unicode_8z8z(dom->name, &u, 0) == IDN2_OK &&
	    strcmp(u, dom->name) != 0)
		printf("unicode: %s\n", u);
	free(u);
	printf("cos: %s\ndefault_quota: %s\ncatchall: %s\naccounts: %u\n",
	       dom->cos, size_text(buf, dom->default_quota, "from the cos"),
	       or_none(dom->catchall), dom->accounts);
	str_free(&buf);
	dir_domain_free(&dom);
	return 0;
}

static int domain_set(struct dctx *d)
{
	struct dir_domain *dom;
	char *keep_catchall;
	int r = 0;

	if ((d->o.seen & ~O_JSON) == 0) {
		fprintf(stderr, "ternctl: nothing to change: give --cos, "
			"--quota, --catchall or --no-catchall\n");
		return 1;
	}
	if (dir_domain_get(d->dir, d->o.args[0], &dom, d->err) != DIR_OK)
		return fail(d);
	keep_catchall = dom->catchall;
	if (d->o.seen & O_COS) {
		free(dom->cos);
		dom->cos = xstrdup(d->o.cos);
	}
	if (d->o.seen & O_QUOTA)
		dom->default_quota = d->o.quota;
	if (d->o.seen & O_CATCHALL)
		dom->catchall = (char *)d->o.catchall;
	if (d->o.seen & O_NO_CATCHALL)
		dom->catchall = NULL;
	if (dir_domain_set(d->dir, dom, d->err) != DIR_OK)
		r = fail(d);
	else
		printf("domain %s changed\n", dom->name);
	dom->catchall = keep_catchall;
	dir_domain_free(&dom);
	return r;
}

static int domain_del(struct dctx *d)
{
	struct str *name = str_new(256, 1024);
	int r = norm(d, d->o.args[0], true, name);

	if (r == 0 && dir_domain_del(d->dir, d->o.args[0], d->err) != DIR_OK)
		r = fail(d);
	if (r == 0)
		printf("domain %s deleted\n", str_c(name));
	str_free(&name);
	return r;
}

static const struct dsub domain_subs[] = {
	{ "add", domain_add, O_COS | O_QUOTA | O_CATCHALL, 1, 1,
	  "add DOMAIN [--cos NAME] [--quota SIZE] [--catchall ADDRESS]" },
	{ "list", domain_list, O_JSON, 0, 0, "list [--json]" },
	{ "show", domain_show, O_JSON, 1, 1, "show DOMAIN [--json]" },
	{ "set", domain_set, O_COS | O_QUOTA | O_CATCHALL | O_NO_CATCHALL, 1,
	  1, "set DOMAIN [--cos NAME] [--quota SIZE] [--catchall ADDRESS | "
	  "--no-catchall]" },
	{ "del", domain_del, 0, 1, 1, "del DOMAIN" },
};

int ctl_domain(struct ctl *ctl, int argc, char **argv)
{
	return run_group(ctl, argc, argv, "domain", domain_subs,
			 TERN_NELEM(domain_subs));
}

/* ---- passwords ---- */

/* One line from fd into pw (without the newline): 0, or -1 on EOF before
 * any byte, a read error or a line past PASSWORD_MAX. */
static int line_read(int fd, struct str *pw)
{
	bool any = false;
	char c;

	str_clear(pw);
	for (;;) {
		ssize_t n = read(fd, &c, 1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			return any ? 0 : -1;
		any = true;
		if (c == '\n')
			break;
		if (str_append_byte(pw, (unsigned char)c) < 0)
			return -1;
	}
	if (str_len(pw) > 0 && str_c(pw)[str_len(pw) - 1] == '\r')
		str_truncate(pw, str_len(pw) - 1);
	return 0;
}

static int tty_read(const char *prompt, struct str *pw)
{
	struct termios old, quiet;
	int r;

	if (tcgetattr(STDIN_FILENO, &old) < 0)
		return -1;
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	quiet.c_lflag |= ECHONL;
	fputs(prompt, stderr);
	fflush(stderr);
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) < 0)
		return -1;
	r = line_read(STDIN_FILENO, pw);
	(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	return r;
}

static void wipe(struct str *s)
{
	explicit_bzero(str_data(s), str_len(s));
	str_clear(s);
}

/* Reads a new password and puts its hash into hash; 0 or exit status. */
static int password_new(struct dctx *d, struct str *hash)
{
	struct str *pw = str_new(64, PASSWORD_MAX);
	struct str *again = str_new(64, PASSWORD_MAX);
	int r = 0;

	if (isatty(STDIN_FILENO)) {
		if (tty_read("New password: ", pw) < 0 ||
		    tty_read("Again: ", again) < 0) {
			fprintf(stderr, "ternctl: cannot read the password\n");
			r = 1;
		} else if (strcmp(str_c(pw), str_c(again)) != 0) {
			fprintf(stderr, "ternctl: the passwords differ\n");
			r = 1;
		}
	} else if (line_read(STDIN_FILENO, pw) < 0) {
		fprintf(stderr, "ternctl: no password on stdin (one line of "
			"at most %d bytes)\n", PASSWORD_MAX);
		r = 1;
	}
	if (r == 0 && str_len(pw) == 0) {
		fprintf(stderr, "ternctl: empty password\n");
		r = 1;
	}
	if (r == 0 && dir_password_hash(str_c(pw), hash, d->err) != DIR_OK)
		r = fail(d);
	wipe(pw);
	wipe(again);
	str_free(&pw);
	str_free(&again);
	return r;
}

/* ---- accounts ---- */

static const char *hash_scheme(const char *hash)
{
	if (hash == NULL)
		return NULL;
	if (strncmp(hash, "$argon2id$", 10) == 0)
		return "argon2id";
	if (strncmp(hash, "$argon2i$", 9) == 0)
		return "argon2i";
	if (strncmp(hash, "$6$", 3) == 0)
		return "sha512-crypt";
	return "unknown";
}

static void account_json(struct json *j, const struct dir_account *a)
{
	json_object_begin(j);
	json_kv_int(j, "id", a->id);
	json_kv_cstring(j, "address", a->address);
	json_kv_cstring(j, "display_name", a->display_name);
	json_kv_cstring(j, "status", dir_account_status_name(a->status));
	json_kv_int(j, "quota", (int64_t)a->quota);
	json_kv_int(j, "quota_effective", (int64_t)a->quota_effective);
	json_kv_cstring(j, "mailhost", a->mailhost);
	json_kv_cstring(j, "cos", a->cos);
	json_kv_int(j, "created", a->created);
	json_kv_cstring(j, "password_scheme", hash_scheme(a->password_hash));
	json_object_end(j);
}

/* Errors that need no password: bad address, no domain, name taken. */
static int account_precheck(struct dctx *d, const char *address)
{
	struct dir_domain *dom = NULL;
	struct str *a = str_new(DIR_ADDRESS_MAX, DIR_ADDRESS_MAX);
	enum dir_status st;
	int r = norm(d, address, false, a);

	if (r == 0 && dir_domain_get(d->dir, strrchr(str_c(a), '@') + 1, &dom,
				     d->err) != DIR_OK)
		r = fail(d);
	dir_domain_free(&dom);
	if (r == 0) {
		struct dir_account *acct = NULL;

		st = dir_account_get(d->dir, str_c(a), &acct, d->err);
		dir_account_free(&acct);
		if (st == DIR_OK) {
			fprintf(stderr, "ternctl: account %s exists already\n",
				str_c(a));
			r = 1;
		} else if (st != DIR_NOTFOUND) {
			r = fail(d);
		}
	}
	str_free(&a);
	return r;
}

static int account_add(struct dctx *d)
{
	struct dir_account acct = {
		.address = d->o.args[0], .display_name = (char *)d->o.name,
		.quota = d->o.quota, .status = d->o.status,
		.cos = (char *)d->o.cos,
		.mailhost = (char *)(d->o.mailhost != NULL ? d->o.mailhost :
				     cfg_str(d->cfg, OPT_MYHOSTNAME)),
	};
	struct str *hash = str_new(256, 1024);
	struct str *a = str_new(DIR_ADDRESS_MAX, DIR_ADDRESS_MAX);
	int r = account_precheck(d, acct.address);

	if (r == 0)
		r = norm(d, acct.address, false, a);
	if (r == 0 && !(d->o.seen & O_NO_PASSWORD)) {
		r = password_new(d, hash);
		acct.password_hash = str_data(hash);
	}
	if (r == 0 && dir_account_add(d->dir, &acct, d->err) != DIR_OK)
		r = fail(d);
	if (r == 0)
		printf("account %s added (id %lld)%s\n", str_c(a),
		       (long long)acct.id, d->o.seen & O_NO_PASSWORD ?
		       ", no password: it cannot log in" : "");
	wipe(hash);
	str_free(&hash);
	str_free(&a);
	return r;
}

static int account_list(struct dctx *d)
{
	const char *domain = d->o.nargs > 0 ? d->o.args[0] : NULL;
	struct dir_account **list;
	struct str *buf, *out;
	struct json *j;
	size_t n;

	if (dir_account_list(d->dir, domain, &list, &n, d->err) != DIR_OK)
		return fail(d);
	if (d->o.seen & O_JSON) {
		j = ctl_json_start(&out);
		json_array_begin(j);
		for (size_t i = 0; i < n; i++)
			account_json(j, list[i]);
		json_array_end(j);
		dir_account_array_free(&list, n);
		return ctl_json_done(&j, &out);
	}
	buf = str_new(32, 64);
	for (size_t i = 0; i < n; i++)
		printf("%s %s quota=%s mailhost=%s cos=%s%s%s\n",
		       list[i]->address,
		       dir_account_status_name(list[i]->status),
		       size_text(buf, list[i]->quota_effective, "unlimited"),
		       list[i]->mailhost, list[i]->cos,
		       list[i]->display_name != NULL ? " name=" : "",
		       list[i]->display_name != NULL ?
		       list[i]->display_name : "");
	str_free(&buf);
	dir_account_array_free(&list, n);
	return 0;
}

static int account_show(struct dctx *d)
{
	struct dir_account *a;
	struct str *buf, *out;
	struct json *j;
	char when[64];
	struct tm tm;
	time_t t;

	if (dir_account_get(d->dir, d->o.args[0], &a, d->err) != DIR_OK)
		return fail(d);
	if (d->o.seen & O_JSON) {
		j = ctl_json_start(&out);
		account_json(j, a);
		dir_account_free(&a);
		return ctl_json_done(&j, &out);
	}
	t = (time_t)a->created;
	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		str_lcpy(when, "?", sizeof(when));
	buf = str_new(32, 64);
	printf("address: %s\nid: %lld\nname: %s\nstatus: %s\n", a->address,
	       (long long)a->id, a->display_name != NULL ? a->display_name :
	       "", dir_account_status_name(a->status));
	printf("quota: %s", size_text(buf, a->quota, "from the domain or "
				       "cos"));
	printf(" (effective: %s)\n", size_text(buf, a->quota_effective,
					       "unlimited"));
	printf("mailhost: %s\ncos: %s\npassword: %s\ncreated: %s\n",
	       a->mailhost, a->cos, a->password_hash != NULL ?
	       hash_scheme(a->password_hash) : "none (cannot log in)", when);
	str_free(&buf);
	dir_account_free(&a);
	return 0;
}

static int account_passwd(struct dctx *d)
{
	struct str *hash = str_new(256, 1024);
	struct dir_account *a;
	int r = 0;

	if (dir_account_get(d->dir, d->o.args[0], &a, d->err) != DIR_OK) {
		str_free(&hash);
		return fail(d);
	}
	r = password_new(d, hash);
	if (r == 0) {
		free(a->password_hash);
		a->password_hash = xstrdup(str_c(hash));
		if (dir_account_set(d->dir, a, d->err) != DIR_OK)
			r = fail(d);
	}
	if (r == 0)
		printf("password of %s changed\n", a->address);
	wipe(hash);
	str_free(&hash);
	dir_account_free(&a);
	return r;
}

static void replace(char **field, const char *value)
{
	free(*field);
	*field = value != NULL ? xstrdup(value) : NULL;
}

static int account_set(struct dctx *d)
{
	struct dir_account *a;
	int r = 0;

	if (d->o.seen == 0) {
		fprintf(stderr, "ternctl: nothing to change: give --quota, "
			"--status, --name, --cos or --mailhost\n");
		return 1;
	}
	if (dir_account_get(d->dir, d->o.args[0], &a, d->err) != DIR_OK)
		return fail(d);
	if (d->o.seen & O_QUOTA)
		a->quota = d->o.quota;
	if (d->o.seen & O_STATUS)
		a->status = d->o.status;
	if (d->o.seen & O_NAME)
		replace(&a->display_name, d->o.name[0] != '\0' ? d->o.name :
			NULL);
	if (d->o.seen & O_COS)
		replace(&a->cos, d->o.cos);
	if (d->o.seen & O_MAILHOST)
		replace(&a->mailhost, d->o.mailhost);
	replace(&a->password_hash, NULL);	/* keep it */
	if (dir_account_set(d->dir, a, d->err) != DIR_OK)
		r = fail(d);
	else
		printf("account %s changed\n", a->address);
	dir_account_free(&a);
	return r;
}

static int account_del(struct dctx *d)
{
	struct str *a = str_new(DIR_ADDRESS_MAX, DIR_ADDRESS_MAX);
	int r = norm(d, d->o.args[0], false, a);

	if (r == 0 && dir_account_del(d->dir, str_c(a), d->err) != DIR_OK)
		r = fail(d);
	if (r == 0)
		printf("account %s deleted\n", str_c(a));
	str_free(&a);
	return r;
}

/* The cached route of an address goes (memcache.h): 0, or 1 when the
 * cache could not be told. */
static int route_forget(struct dctx *d, const char *address)
{
	struct memcache_settings set = { 0 };
	struct str *key = str_new(80, 128);
	enum memcache_result r;
	const char *error = NULL;
	int status = 0;

	set.servers = cfg_list(d->cfg, OPT_PROXY_MEMCACHED_SERVERS,
			       &set.nservers);
	/* A tool may wait longer than a login does. */
	set.timeout_ms = cfg_duration(d->cfg, OPT_PROXY_MEMCACHED_TIMEOUT);
	if (set.timeout_ms < 2000)
		set.timeout_ms = 2000;
	if (set.nservers == 0) {
		str_free(&key);
		return 0;
	}
	if (memcache_route_key(address, key) < 0) {
		r = MEMCACHE_FAILED;
		error = "no key for that address";
	} else {
		r = memcache_delete_once(&set, str_c(key), &error);
	}
	if (r == MEMCACHE_DELETED || r == MEMCACHE_NOT_FOUND) {
		printf("route cache: %s\n", r == MEMCACHE_DELETED ?
		       "cached route deleted" : "no cached route");
	} else {
		fprintf(stderr, "ternctl: route cache: %s%s%s: the old route "
			"stays cached until proxy_route_cache_ttl ends or a "
			"login corrects it\n", memcache_result_name(r),
			error != NULL ? ": " : "", error != NULL ? error : "");
		status = 1;
	}
	str_free(&key);
	return status;
}

/* The mail host changes; mailbox data is not copied. */
static int account_move(struct dctx *d)
{
	const char *server = d->o.args[1];
	struct dir_account *a;
	int r;

	if (!memcache_route_value_valid(server, strlen(server))) {
		fprintf(stderr, "ternctl: '%s' is not a server name (letters, "
			"digits, '.', '-', '_', ':', '[' and ']', at most %d "
			"bytes)\n", server, MEMCACHE_ROUTE_HOST_MAX);
		return 1;
	}
	if (dir_account_get(d->dir, d->o.args[0], &a, d->err) != DIR_OK)
		return fail(d);
	replace(&a->mailhost, server);
	replace(&a->password_hash, NULL);	/* keep it */
	if (dir_account_set(d->dir, a, d->err) != DIR_OK) {
		dir_account_free(&a);
		return fail(d);
	}
	printf("account %s: mail host is now %s (mailbox data was not "
	       "copied)\n", a->address, server);
	r = route_forget(d, a->address);
	dir_account_free(&a);
	return r;
}

#define ACCOUNT_FIELDS (O_QUOTA | O_STATUS | O_NAME | O_COS | O_MAILHOST)

static const struct dsub account_subs[] = {
	{ "add", account_add, ACCOUNT_FIELDS | O_NO_PASSWORD, 1, 1,
	  "add ADDRESS [--name NAME] [--quota SIZE] [--status STATUS] "
	  "[--cos NAME] [--mailhost HOST] [--no-password]" },
	{ "list", account_list, O_JSON, 0, 1, "list [DOMAIN] [--json]" },
	{ "show", account_show, O_JSON, 1, 1, "show ADDRESS [--json]" },
	{ "passwd", account_passwd, 0, 1, 1, "passwd ADDRESS" },
	{ "set", account_set, ACCOUNT_FIELDS, 1, 1,
	  "set ADDRESS [--quota SIZE] [--status active|locked|closed] "
	  "[--name NAME] [--cos NAME] [--mailhost HOST]" },
	{ "del", account_del, 0, 1, 1, "del ADDRESS" },
	{ "move", account_move, 0, 2, 2,
	  "move ADDRESS SERVER  (sets the mail host and deletes the cached "
	  "route; mailbox data is NOT copied)" },
};

int ctl_account(struct ctl *ctl, int argc, char **argv)
{
	return run_group(ctl, argc, argv, "account", account_subs,
			 TERN_NELEM(account_subs));
}

/* ---- aliases ---- */

static int alias_add(struct dctx *d)
{
	struct str *a = str_new(DIR_ADDRESS_MAX, DIR_ADDRESS_MAX);
	struct str *t = str_new(DIR_ADDRESS_MAX, DIR_ADDRESS_MAX);
	int r = norm(d, d->o.args[0], false, a);

	if (r == 0)
		r = norm(d, d->o.args[1], false, t);
	if (r == 0 && dir_alias_add(d->dir, str_c(a), str_c(t), d->err) !=
	    DIR_OK)
		r = fail(d);
	if (r == 0)
		printf("alias %s -> %s added\n", str_c(a), str_c(t));
	str_free(&a);
	str_free(&t);
	return r;
}

static int alias_del(struct dctx *d)
{
	struct str *a = str_new(DIR_ADDRESS_MAX, DIR_ADDRESS_MAX);
	int r = norm(d, d->o.args[0], false, a);

	if (r == 0 && dir_alias_del(d->dir, str_c(a), d->err) != DIR_OK)
		r = fail(d);
	if (r == 0)
		printf("alias %s deleted\n", str_c(a));
	str_free(&a);
	return r;
}

static int alias_list(struct dctx *d)
{
	const char *domain = d->o.nargs > 0 ? d->o.args[0] : NULL;
	struct dir_alias **list;
	struct json *j;
	struct str *out;
	size_t n;

	if (dir_alias_list(d->dir, domain, &list, &n, d->err) != DIR_OK)
		return fail(d);
	if (d->o.seen & O_JSON) {
		j = ctl_json_start(&out);
		json_array_begin(j);
		for (size_t i = 0; i < n; i++) {
			json_object_begin(j);
			json_kv_cstring(j, "address", list[i]->address);
			json_kv_cstring(j, "target", list[i]->target);
			json_object_end(j);
		}
		json_array_end(j);
		dir_alias_array_free(&list, n);
		return ctl_json_done(&j, &out);
	}
	for (size_t i = 0; i < n; i++)
		printf("%s -> %s\n", list[i]->address, list[i]->target);
	dir_alias_array_free(&list, n);
	return 0;
}

static const struct dsub alias_subs[] = {
	{ "add", alias_add, 0, 2, 2, "add ADDRESS TARGET" },
	{ "del", alias_del, 0, 1, 1, "del ADDRESS" },
	{ "list", alias_list, O_JSON, 0, 1, "list [DOMAIN] [--json]" },
};

int ctl_alias(struct ctl *ctl, int argc, char **argv)
{
	return run_group(ctl, argc, argv, "alias", alias_subs,
			 TERN_NELEM(alias_subs));
}

/* ---- distribution lists ---- */

static void list_json(struct json *j, const struct dir_list_info *l)
{
	json_object_begin(j);
	json_kv_cstring(j, "address", l->address);
	json_key(j, "members");
	json_array_begin(j);
	for (size_t i = 0; i < l->nmembers; i++)
		json_cstring(j, l->members[i]);
	json_array_end(j);
	json_object_end(j);
}

static int list_add(struct dctx *d)
{
	struct str *a = str_new(DIR_ADDRESS_MAX, DIR_ADDRESS_MAX);
	int r = norm(d, d->o.args[0], false, a);

	if (r == 0 && dir_list_add(d->dir, str_c(a), d->err) != DIR_OK)
		r = fail(d);
	if (r == 0)
		printf("list %s added\n", str_c(a));
	str_free(&a);
	return r;
}

static int list_del(struct dctx *d)
{
	struct str *a = str_new(DIR_ADDRESS_MAX, DIR_ADDRESS_MAX);
	int r = norm(d, d->o.args[0], false, a);

	if (r == 0 && dir_list_del(d->dir, str_c(a), d->err) != DIR_OK)
		r = fail(d);
	if (r == 0)
		printf("list %s deleted\n", str_c(a));
	str_free(&a);
	return r;
}

static int list_show(struct dctx *d)
{
	struct dir_list_info *l;
	struct json *j;
	struct str *out;

	if (dir_list_get(d->dir, d->o.args[0], &l, d->err) != DIR_OK)
		return fail(d);
	if (d->o.seen & O_JSON) {
		j = ctl_json_start(&out);
		list_json(j, l);
		dir_list_info_free(&l);
		return ctl_json_done(&j, &out);
	}
	printf("list: %s\nmembers: %zu\n", l->address, l->nmembers);
	for (size_t i = 0; i < l->nmembers; i++)
		printf("  %s\n", l->members[i]);
	dir_list_info_free(&l);
	return 0;
}

static int list_list(struct dctx *d)
{
	const char *domain = d->o.nargs > 0 ? d->o.args[0] : NULL;
	struct dir_list_info **list;
	struct json *j;
	struct str *out;
	size_t n;

	if (dir_list_list(d->dir, domain, &list, &n, d->err) != DIR_OK)
		return fail(d);
	if (d->o.seen & O_JSON) {
		j = ctl_json_start(&out);
		json_array_begin(j);
		for (size_t i = 0; i < n; i++)
			list_json(j, list[i]);
		json_array_end(j);
		dir_list_info_array_free(&list, n);
		return ctl_json_done(&j, &out);
	}
	for (size_t i = 0; i < n; i++)
		printf("%s members=%zu\n", list[i]->address,
		       list[i]->nmembers);
	dir_list_info_array_free(&list, n);
	return 0;
}

static int list_member(struct dctx *d)
{
	struct str *l = str_new(DIR_ADDRESS_MAX, DIR_ADDRESS_MAX);
	struct str *m = str_new(DIR_ADDRESS_MAX, DIR_ADDRESS_MAX);
	bool add = strcmp(d->o.args[0], "add") == 0;
	enum dir_status st;
	int r = 0;

	if (!add && strcmp(d->o.args[0], "del") != 0) {
		fprintf(stderr, "usage: ternctl list member add|del LIST "
			"ADDRESS\n");
		r = 2;
	}
	if (r == 0)
		r = norm(d, d->o.args[1], false, l);
	if (r == 0)
		r = norm(d, d->o.args[2], false, m);
	if (r == 0) {
		st = add ? dir_list_member_add(d->dir, str_c(l), str_c(m),
					       d->err) :
		     dir_list_member_del(d->dir, str_c(l), str_c(m), d->err);
		if (st != DIR_OK)
			r = fail(d);
	}
	if (r == 0)
		printf("%s %s list %s\n", str_c(m), add ? "added to" :
		       "removed from", str_c(l));
	str_free(&l);
	str_free(&m);
	return r;
}

static const struct dsub list_subs[] = {
	{ "add", list_add, 0, 1, 1, "add ADDRESS" },
	{ "del", list_del, 0, 1, 1, "del ADDRESS" },
	{ "show", list_show, O_JSON, 1, 1, "show ADDRESS [--json]" },
	{ "list", list_list, O_JSON, 0, 1, "list [DOMAIN] [--json]" },
	{ "member", list_member, 0, 3, 3, "member add|del LIST ADDRESS" },
};

int ctl_list(struct ctl *ctl, int argc, char **argv)
{
	return run_group(ctl, argc, argv, "list", list_subs,
			 TERN_NELEM(list_subs));
}

/* ---- classes of service ---- */

static void cos_json(struct json *j, const struct dir_cos *c)
{
	json_object_begin(j);
	json_kv_cstring(j, "name", c->name);
	json_kv_int(j, "quota", (int64_t)c->quota);
	json_kv_int(j, "max_message_size", (int64_t)c->max_message_size);
	json_kv_int(j, "max_recipients", c->max_recipients);
	json_object_end(j);
}

static void cos_print(const struct dir_cos *c)
{
	struct str *a = str_new(32, 64), *b = str_new(32, 64);

	printf("%s quota=%s max_message_size=%s max_recipients=", c->name,
	       size_text(a, c->quota, "unlimited"),
	       size_text(b, c->max_message_size, "server"));
	if (c->max_recipients == 0)
		printf("server\n");
	else
		printf("%u\n", c->max_recipients);
	str_free(&a);
	str_free(&b);
}

static void cos_apply(const struct dopts *o, struct dir_cos *c)
{
	if (o->seen & O_QUOTA)
		c->quota = o->quota;
	if (o->seen & O_MAX_MSG)
		c->max_message_size = o->max_msg;
	if (o->seen & O_MAX_RCPT)
		c->max_recipients = o->max_rcpt;
}

static int cos_add(struct dctx *d)
{
	struct dir_cos c = { .name = d->o.args[0] };

	cos_apply(&d->o, &c);
	if (dir_cos_add(d->dir, &c, d->err) != DIR_OK)
		return fail(d);
	printf("cos %s added\n", c.name);
	return 0;
}

static int cos_set(struct dctx *d)
{
	struct dir_cos *c;
	int r = 0;

	if (d->o.seen == 0) {
		fprintf(stderr, "ternctl: nothing to change: give --quota, "
			"--max-message-size or --max-recipients\n");
		return 1;
	}
	if (dir_cos_get(d->dir, d->o.args[0], &c, d->err) != DIR_OK)
		return fail(d);
	cos_apply(&d->o, c);
	if (dir_cos_set(d->dir, c, d->err) != DIR_OK)
		r = fail(d);
	else
		printf("cos %s changed\n", c->name);
	dir_cos_free(&c);
	return r;
}

static int cos_del(struct dctx *d)
{
	if (dir_cos_del(d->dir, d->o.args[0], d->err) != DIR_OK)
		return fail(d);
	printf("cos %s deleted\n", d->o.args[0]);
	return 0;
}

static int cos_list(struct dctx *d)
{
	struct dir_cos **list;
	struct json *j;
	struct str *out;
	size_t n;

	if (dir_cos_list(d->dir, &list, &n, d->err) != DIR_OK)
		return fail(d);
	if (d->o.seen & O_JSON) {
		j = ctl_json_start(&out);
		json_array_begin(j);
		for (size_t i = 0; i < n; i++)
			cos_json(j, list[i]);
		json_array_end(j);
		dir_cos_array_free(&list, n);
		return ctl_json_done(&j, &out);
	}
	for (size_t i = 0; i < n; i++)
		cos_print(list[i]);
	dir_cos_array_free(&list, n);
	return 0;
}

static int cos_show(struct dctx *d)
{
	struct dir_cos *c;
	struct json *j;
	struct str *out;

	if (dir_cos_get(d->dir, d->o.args[0], &c, d->err) != DIR_OK)
		return fail(d);
	if (d->o.seen & O_JSON) {
		j = ctl_json_start(&out);
		cos_json(j, c);
		dir_cos_free(&c);
		return ctl_json_done(&j, &out);
	}
	cos_print(c);
	dir_cos_free(&c);
	return 0;
}

#define COS_FIELDS (O_QUOTA | O_MAX_MSG | O_MAX_RCPT)

static const struct dsub cos_subs[] = {
	{ "add", cos_add, COS_FIELDS, 1, 1, "add NAME [--quota SIZE] "
	  "[--max-message-size SIZE] [--max-recipients N]" },
	{ "set", cos_set, COS_FIELDS, 1, 1, "set NAME [--quota SIZE] "
	  "[--max-message-size SIZE] [--max-recipients N]" },
	{ "del", cos_del, 0, 1, 1, "del NAME" },
	{ "list", cos_list, O_JSON, 0, 0, "list [--json]" },
	{ "show", cos_show, O_JSON, 1, 1, "show NAME [--json]" },
};

int ctl_cos(struct ctl *ctl, int argc, char **argv)
{
	return run_group(ctl, argc, argv, "cos", cos_subs,
			 TERN_NELEM(cos_subs));
}

/* ---- the address book ---- */

static int gal_search(struct dctx *d)
{
	struct dir_gal_entry **list;
	struct json *j;
	struct str *out;
	size_t n;

	if (dir_gal_search(d->dir, d->o.args[0], d->o.limit, &list, &n,
			   d->err) != DIR_OK)
		return fail(d);
	if (d->o.seen & O_JSON) {
		j = ctl_json_start(&out);
		json_array_begin(j);
		for (size_t i = 0; i < n; i++) {
			json_object_begin(j);
			json_kv_cstring(j, "address", list[i]->address);
			json_kv_cstring(j, "kind",
					dir_gal_kind_name(list[i]->kind));
			json_kv_cstring(j, "display_name",
					list[i]->display_name);
			json_object_end(j);
		}
		json_array_end(j);
		dir_gal_array_free(&list, n);
		return ctl_json_done(&j, &out);
	}
	for (size_t i = 0; i < n; i++)
		printf("%s %s%s%s\n", list[i]->address,
		       dir_gal_kind_name(list[i]->kind),
		       list[i]->display_name != NULL ? " " : "",
		       list[i]->display_name != NULL ?
		       list[i]->display_name : "");
	dir_gal_array_free(&list, n);
	return 0;
}

static const struct dsub gal_subs[] = {
	{ "search", gal_search, O_JSON | O_LIMIT, 1, 1,
	  "search TEXT [--limit N] [--json]" },
};

int ctl_gal(struct ctl *ctl, int argc, char **argv)
{
	return run_group(ctl, argc, argv, "gal", gal_subs,
			 TERN_NELEM(gal_subs));
}
