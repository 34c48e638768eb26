/*
 * setup_ldap.c: the bundled OpenLDAP directory of `ternctl setup
 * --directory=ldap` (docs/ldap.md).
 *
 * Creates data/ldap/ with slapd.d/ (cn=config, loaded with slapadd -n0
 * from config.ldif: modules back_mdb, argon2 and syncprov; schemas core,
 * cosine, inetorgperson and Tern's tern.ldif; an mdb database in db/ for
 * ldap_base_dn with indexes and ACLs) and the database's first entries
 * (slapadd -n1: the base entry, the service DN ternctl writes with, the
 * read-only DN tern-authd binds as, the replication DN replicas bind as,
 * and the skeleton under it), and conf/ldap.secret,
 * conf/ldap-authd.secret and conf/ldap-replicator.secret with their
 * random passwords (their {ARGON2} hashes are in the directory).
 *
 * With --ldap-provider the database is a replica instead: a syncrepl
 * consumer (refreshAndPersist) of the provider's, bound as its
 * cn=tern-replicator, that sends writers to the provider (olcUpdateRef);
 * it starts empty and holds no secrets of its own (the provider's
 * conf/ldap.secret and conf/ldap-authd.secret are copied by hand).
 * slapd runs
 * under tern-master as the first line of services.conf, on ldapi:// at
 * run/ldapi and on 127.0.0.1 at the instance's LDAP port.  An existing
 * data/ldap/slapd.d is kept as it is.
 *
 * ACLs: root over ldapi (SASL EXTERNAL, peer credentials) manages
 * everything; password hashes are readable by no one but the service DN,
 * and writable by their owner; every authenticated user may read the
 * address-book attributes of the entries under ou=domains; the service DN
 * writes the whole tree and tern-authd's DN and the replication DN read
 * it (hashes included); the rest is readable only by its owner.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pwd.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "compat.h"
#include "cfg.h"
#include "dir.h"
#include "fsutil.h"
#include "ldap_schema.h"
#include "services.h"
#include "str.h"
#include "ternctl.h"
#include "xalloc.h"

#define SLAPD "/usr/sbin/slapd"
#define SLAPADD "/usr/sbin/slapadd"
#define LDAP_STD_PORT 389
#define SECRET_BYTES 24
#define TEXT_MAX (256 * 1024)
#define SERVICE_RDN "cn=tern-service"
#define AUTHD_RDN "cn=tern-authd"
#define REPL_RDN "cn=tern-replicator"
/* A replica retries the provider every second 30 times, then every 10 s. */
#define REPL_RETRY "1 30 10 +"

extern char **environ;

static const char tern_schema_ldif[] = TERN_SCHEMA_LDIF;

/* Runs argv, waits; 0 when it exited 0. */
static int run_program(char *const argv[])
{
	pid_t pid;
	int status;

	if (posix_spawn(&pid, argv[0], NULL, NULL, argv, environ) != 0) {
		fprintf(stderr, "ternctl: cannot run %s: %s\n", argv[0],
			strerror(errno));
		return -1;
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0) {
		fprintf(stderr, "ternctl: %s failed\n", argv[0]);
		return -1;
	}
	return 0;
}

static int write_file(const char *path, const struct str *text, mode_t mode)
{
	struct str *err = str_new(128, 4096);
	int r = fsutil_write_file(path, str_c(text), str_len(text), mode,
				  FSUTIL_REPLACE, err);

	if (r < 0)
		fprintf(stderr, "ternctl: %s\n", str_c(err));
	str_free(&err);
	return r;
}

static int append(struct str *s, const char *const *parts)
{
	for (; *parts != NULL; parts++)
		if (str_append_c(s, *parts) < 0)
			return -1;
	return 0;
}

int setup_ldap_service_line(struct ctl *ctl, unsigned port_base,
			    const char *user, struct str *out)
{
	char *uri = dir_ldap_bundled_uri(ctl->root);
	char *slapd_d = ctl_path(ctl, "data/ldap/slapd.d");
	char port[16];
	int r = -1;

	snprintf(port, sizeof(port), "%u", tern_port(port_base,
						     LDAP_STD_PORT));
	if (access(SLAPD, X_OK) < 0) {
		fprintf(stderr, "ternctl: %s not found: install the slapd "
			"package for --directory=ldap\n", SLAPD);
	} else if (strlen(ctl->root) + sizeof("/run/ldapi") > 108) {
		fprintf(stderr, "ternctl: %s/run/ldapi is too long for a unix "
			"socket\n", ctl->root);
	} else {
		const char *const line[] = {
			"# The bundled directory server, first so that it "
			"starts first.\n",
			"ldap proc - 1 yes ready=ldapi:run/ldapi external=yes "
			SLAPD " -d 0 -h \"", uri, " ldap://127.0.0.1:", port,
			"/\" -F ", slapd_d, NULL,
		};
		const char *const as_user[] = {
			" -u ", user, " -g ", user, NULL,
		};

		r = append(out, line);
		if (r == 0 && user[0] != '\0' && geteuid() == 0)
			r = append(out, as_user);
		if (r == 0)
			r = str_append_c(out, "\n");
	}
	free(uri);
	free(slapd_d);
	return r;
}

/* The value of the first RDN of a "dc=VALUE,..." base DN (malloc'd). */
static char *base_dc(const char *base)
{
	size_t n;

	if (strncasecmp(base, "dc=", 3) != 0)
		return NULL;
	n = strcspn(base + 3, ",+\\");
	if (n == 0)
		return NULL;
	return xstrndup(base + 3, n);
}

/* The olcSyncrepl and olcUpdateRef lines of a replica. */
static int replica_ldif(const struct setup_ldap_replica *rep,
			const char *base, const char *repl,
			const char *secret, struct str *out)
{
	const char *const parts[] = {
		"olcSyncrepl: {0}rid=001 provider=", rep->provider,
		" bindmethod=simple binddn=\"", repl, "\" credentials=\"",
		secret, "\" searchbase=\"", base, "\" scope=sub "
		"type=refreshAndPersist retry=\"" REPL_RETRY "\" "
		"timeout=5 network-timeout=5\n",
		"olcUpdateRef: ", rep->provider, "\n",
		NULL,
	};

	return append(out, parts);
}

static int config_ldif(struct ctl *ctl, const char *base, const char *svc,
		       const char *authd, const char *repl,
		       const struct setup_ldap_replica *rep,
		       const char *secret, struct str *out)
{
	char *db = ctl_path(ctl, "data/ldap/db");
	char *schema = ctl_path(ctl, "data/ldap/tern.ldif");
	const char *peer = "gidNumber=0+uidNumber=0,cn=peercred,cn=external,"
			   "cn=auth";
	int r;

	const char *const parts[] = {
		"dn: cn=config\nobjectClass: olcGlobal\ncn: config\n\n",
		"dn: cn=module{0},cn=config\nobjectClass: olcModuleList\n"
		"cn: module{0}\nolcModulePath: /usr/lib/ldap\n"
		"olcModuleLoad: back_mdb\nolcModuleLoad: argon2\n"
		"olcModuleLoad: syncprov\n\n",
		"dn: cn=schema,cn=config\nobjectClass: olcSchemaConfig\n"
		"cn: schema\n\n",
		"include: file:///etc/ldap/schema/core.ldif\n\n",
		"include: file:///etc/ldap/schema/cosine.ldif\n\n",
		"include: file:///etc/ldap/schema/inetorgperson.ldif\n\n",
		"include: file://", schema, "\n\n",
		"dn: olcDatabase={-1}frontend,cn=config\n"
		"objectClass: olcDatabaseConfig\n"
		"objectClass: olcFrontendConfig\n"
		"olcDatabase: {-1}frontend\nolcPasswordHash: {ARGON2}\n\n",
		"dn: olcDatabase={0}config,cn=config\n"
		"objectClass: olcDatabaseConfig\nolcDatabase: {0}config\n"
		"olcAccess: {0}to * by dn.exact=", peer,
		" manage by * none\n\n",
		"dn: olcDatabase={1}mdb,cn=config\n"
		"objectClass: olcDatabaseConfig\nobjectClass: olcMdbConfig\n"
		"olcDatabase: {1}mdb\nolcDbDirectory: ", db, "\n"
		"olcSuffix: ", base, "\nolcRootDN: ", peer, "\n"
		"olcDbMaxSize: 4294967296\n"
		"olcLimits: {0}dn.exact=\"", svc, "\" size=unlimited "
		"time=unlimited\n"
		"olcLimits: {1}dn.exact=\"", authd, "\" size=unlimited "
		"time=unlimited\n"
		"olcLimits: {2}dn.exact=\"", repl, "\" size=unlimited "
		"time=unlimited\n"
		"olcDbIndex: objectClass eq\n"
		"olcDbIndex: mail eq,sub\n"
		"olcDbIndex: cn,sn,givenName,displayName eq,sub\n"
		"olcDbIndex: ternMailAlternateAddress eq,sub\n"
		"olcDbIndex: ternDomainName eq\n"
		"olcDbIndex: ternAliasTarget eq\n"
		"olcDbIndex: ternListMember eq\n"
		"olcDbIndex: ternCosName eq\n"
		"olcDbIndex: ternAccountId eq\n"
		"olcDbIndex: entryCSN,entryUUID eq\n",
		"olcAccess: {0}to * by dn.exact=", peer, " manage by * break\n",
		"olcAccess: {1}to attrs=userPassword by dn.exact=\"", svc,
		"\" write by dn.exact=\"", authd, "\" read "
		"by dn.exact=\"", repl, "\" read "
		"by self =w by anonymous auth by * none\n",
		"olcAccess: {2}to dn.subtree=\"ou=domains,", base, "\" "
		"attrs=entry,objectClass,mail,cn,sn,givenName,displayName,"
		"ternMailAlternateAddress "
		"by dn.exact=\"", svc, "\" write by dn.exact=\"", authd,
		"\" read by dn.exact=\"", repl, "\" read "
		"by users read by * none\n",
		"olcAccess: {3}to * by dn.exact=\"", svc, "\" write "
		"by dn.exact=\"", authd, "\" read by dn.exact=\"", repl,
		"\" read by self read by * none\n",
		NULL,
	};
	static const char *const overlay[] = {
		"\ndn: olcOverlay={0}syncprov,olcDatabase={1}mdb,cn=config\n"
		"objectClass: olcOverlayConfig\n"
		"objectClass: olcSyncProvConfig\nolcOverlay: {0}syncprov\n"
		"olcSpCheckpoint: 100 10\nolcSpSessionLog: 1000\n",
		NULL,
	};

	r = append(out, parts);
	if (r == 0 && rep != NULL)
		r = replica_ldif(rep, base, repl, secret, out);
	if (r == 0)
		r = append(out, overlay);
	free(db);
	free(schema);
	return r;
}

static int base_ldif(const char *base, const char *dc, const char *svc,
		     const char *hash, const char *authd,
		     const char *authd_hash, const char *repl,
		     const char *repl_hash, struct str *out)
{
	const char *const parts[] = {
		"dn: ", base, "\nobjectClass: dcObject\n"
		"objectClass: organization\ndc: ", dc, "\no: ", dc, "\n\n",
		"dn: ", svc, "\nobjectClass: organizationalRole\n"
		"objectClass: simpleSecurityObject\ncn: tern-service\n"
		"description: ternctl writes the directory as this DN\n"
		"userPassword: {ARGON2}", hash, "\n\n",
		"dn: ", authd, "\nobjectClass: organizationalRole\n"
		"objectClass: simpleSecurityObject\ncn: tern-authd\n"
		"description: tern-authd binds as this DN; it may only read\n"
		"userPassword: {ARGON2}", authd_hash, "\n\n",
		"dn: ", repl, "\nobjectClass: organizationalRole\n"
		"objectClass: simpleSecurityObject\ncn: tern-replicator\n"
		"description: replicas (syncrepl) bind as this DN; it may "
		"only read\n"
		"userPassword: {ARGON2}", repl_hash, "\n\n",
		"dn: cn=tern,", base, "\nobjectClass: ternDirectory\ncn: tern\n"
		"ternSerial: 1\nternNextId: 1\n\n",
		"dn: ou=domains,", base, "\nobjectClass: organizationalUnit\n"
		"ou: domains\n\n",
		"dn: ou=cos,", base, "\nobjectClass: organizationalUnit\n"
		"ou: cos\n\n",
		"dn: cn=default,ou=cos,", base, "\nobjectClass: ternCos\n"
		"cn: default\nternQuota: 0\nternMaxMessageSize: 0\n"
		"ternMaxRecipients: 0\n",
		NULL,
	};

	return append(out, parts);
}

/* A random password (hex) in conf/NAME, and its argon2id hash (a cheap
 * one: dir_secret_hash()). */
static int make_secret(struct ctl *ctl, const struct passwd *pw,
		       const char *name, const char *what, struct str *hash)
{
	unsigned char raw[SECRET_BYTES];
	char hex[2 * SECRET_BYTES + 2];
	struct str *err = str_new(128, 1024), *text = str_new(64, 256);
	struct str *rel = str_new(64, 256);
	char *path;
	int r = -1;

	path = str_append_c(rel, "conf/") < 0 || str_append_c(rel, name) < 0 ?
	       NULL : ctl_path(ctl, str_c(rel));
	str_free(&rel);
	if (path == NULL)
		goto out;
	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
		fprintf(stderr, "ternctl: getrandom: %s\n", strerror(errno));
		goto out;
	}
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(hex + 2 * i, 3, "%02x", raw[i]);
	if (dir_secret_hash(hex, hash, err) != DIR_OK) {
		fprintf(stderr, "ternctl: %s\n", str_c(err));
		goto out;
	}
	if (str_set(text, hex, 2 * SECRET_BYTES) < 0 ||
	    str_append_c(text, "\n") < 0 || write_file(path, text, 0640) < 0)
		goto out;
	if (pw != NULL && chown(path, 0, pw->pw_gid) < 0) {
		fprintf(stderr, "ternctl: chown %s: %s\n", path,
			strerror(errno));
		goto out;
	}
	printf("%s: created (%s)\n", path, what);
	r = 0;
out:
	explicit_bzero(raw, sizeof(raw));
	explicit_bzero(hex, sizeof(hex));
	str_free(&text);
	str_free(&err);
	free(path);
	return r;
}

static uid_t chown_uid;
static gid_t chown_gid;

static int chown_one(const char *path, const struct stat *st, int flag,
		     struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return lchown(path, chown_uid, chown_gid) < 0 ? -1 : 0;
}

static int slapadd(const char *slapd_d, int db, const char *ldif)
{
	char dbarg[8];
	char *const argv[] = {
		(char *)SLAPADD, "-q", "-n", dbarg, "-F", (char *)slapd_d,
		"-l", (char *)ldif, NULL,
	};

	snprintf(dbarg, sizeof(dbarg), "%d", db);
	return run_program(argv);
}

/* The replication password from FILE's first line (malloc'd): it goes
 * into a quoted olcSyncrepl value, so no quotes, backslashes or control
 * characters. */
static char *replica_secret(const char *path)
{
	char buf[1024];
	FILE *f = fopen(path, "r");
	bool ok;
	char *r = NULL;

	if (f == NULL) {
		fprintf(stderr, "ternctl: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	ok = fgets(buf, sizeof(buf), f) != NULL;
	fclose(f);
	if (ok)
		buf[strcspn(buf, "\r\n")] = '\0';
	for (const char *p = buf; ok && *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == '"' || *p == '\\' ||
		    *p == 0x7f)
			ok = false;
	if (!ok || buf[0] == '\0')
		fprintf(stderr, "ternctl: %s: the first line must be the "
			"replication password (printable, without quotes or "
			"backslashes)\n", path);
	else
		r = xstrdup(buf);
	explicit_bzero(buf, sizeof(buf));
	return r;
}

/* "RDN,BASE" (malloc'd). */
static char *dn_under(const char *rdn, const char *base)
{
	size_t n = strlen(rdn) + 1 + strlen(base) + 1;
	char *dn = xmalloc(n);

	snprintf(dn, n, "%s,%s", rdn, base);
	return dn;
}

struct ldap_paths {
	char *dir, *slapd_d, *db, *schema, *conf, *first;
};

static void paths_free(struct ldap_paths *p)
{
	free(p->dir);
	free(p->slapd_d);
	free(p->db);
	free(p->schema);
	free(p->conf);
	free(p->first);
}

/* The provider's secrets and first entries (not for a replica). */
static int provider_entries(struct ctl *ctl, const struct passwd *pw,
			    const struct ldap_paths *lp, const char *base,
			    const char *dc, const char *svc, const char *authd,
			    const char *repl)
{
	struct str *text = str_new(4096, TEXT_MAX), *hash = str_new(128, 1024);
	struct str *authd_hash = str_new(128, 1024);
	struct str *repl_hash = str_new(128, 1024);
	int r = -1;

	if (make_secret(ctl, pw, "ldap.secret", "the service DN's password",
			hash) < 0 ||
	    make_secret(ctl, pw, "ldap-authd.secret",
			"tern-authd's read-only DN's password",
			authd_hash) < 0 ||
	    make_secret(ctl, pw, "ldap-replicator.secret",
			"the replication DN's password, for replicas",
			repl_hash) < 0)
		goto out;
	if (base_ldif(base, dc, svc, str_c(hash), authd, str_c(authd_hash),
		      repl, str_c(repl_hash), text) < 0 ||
	    write_file(lp->first, text, 0640) < 0)
		goto out;
	r = slapadd(lp->slapd_d, 1, lp->first);
out:
	str_free(&text);
	str_free(&hash);
	str_free(&authd_hash);
	str_free(&repl_hash);
	return r;
}

int setup_ldap_instance(struct ctl *ctl, const struct cfg *cfg,
			const struct setup_ldap_replica *replica)
{
	const char *base = cfg_str(cfg, OPT_LDAP_BASE_DN);
	const char *user = cfg_str(cfg, OPT_USER);
	struct passwd *pw = NULL;
	struct str *text = str_new(4096, TEXT_MAX);
	struct ldap_paths lp = {
		.dir = ctl_path(ctl, "data/ldap"),
		.slapd_d = ctl_path(ctl, "data/ldap/slapd.d"),
		.db = ctl_path(ctl, "data/ldap/db"),
		.schema = ctl_path(ctl, "data/ldap/tern.ldif"),
		.conf = ctl_path(ctl, "data/ldap/config.ldif"),
		.first = ctl_path(ctl, "data/ldap/base.ldif"),
	};
	char *dc = base_dc(base), *svc = NULL, *authd = NULL, *repl = NULL;
	char *secret = NULL;
	int r = -1;

	if (access(lp.slapd_d, F_OK) == 0) {
		printf("%s: kept as it is\n", lp.slapd_d);
		r = 0;
		goto out;
	}
	if (dc == NULL) {
		fprintf(stderr, "ternctl: ldap_base_dn '%s' must start with "
			"dc= for the bundled directory\n", base);
		goto out;
	}
	if (replica != NULL &&
	    (secret = replica_secret(replica->password_file)) == NULL)
		goto out;
	if (geteuid() == 0 && user[0] != '\0')
		pw = getpwnam(user);
	svc = dn_under(SERVICE_RDN, base);
	authd = dn_under(AUTHD_RDN, base);
	repl = dn_under(REPL_RDN, base);
	if (strcmp(authd, cfg_str(cfg, OPT_LDAP_AUTHD_BIND_DN)) != 0)
		printf("note: ldap_authd_bind_dn is '%s'; the bundled "
		       "directory's read-only DN for tern-authd is %s\n",
		       cfg_str(cfg, OPT_LDAP_AUTHD_BIND_DN), authd);
	if (strcmp(svc, cfg_str(cfg, OPT_LDAP_BIND_DN)) != 0)
		printf("note: ldap_bind_dn is %s; the bundled directory's "
		       "service DN is %s\n", cfg_str(cfg, OPT_LDAP_BIND_DN),
		       svc);
	if ((mkdir(lp.dir, 0750) < 0 && errno != EEXIST) ||
	    mkdir(lp.slapd_d, 0750) < 0 || (mkdir(lp.db, 0750) < 0 &&
					    errno != EEXIST)) {
		fprintf(stderr, "ternctl: mkdir under %s: %s\n", lp.dir,
			strerror(errno));
		goto out;
	}
	if (str_set(text, tern_schema_ldif, strlen(tern_schema_ldif)) < 0 ||
	    write_file(lp.schema, text, 0644) < 0)
		goto out;
	str_clear(text);
	/* A replica's config.ldif holds the replication password. */
	if (config_ldif(ctl, base, svc, authd, repl, replica, secret,
			text) < 0 ||
	    write_file(lp.conf, text, 0640) < 0)
		goto out;
	if (slapadd(lp.slapd_d, 0, lp.conf) < 0)
		goto out;
	if (replica == NULL &&
	    provider_entries(ctl, pw, &lp, base, dc, svc, authd, repl) < 0)
		goto out;
	if (pw != NULL) {
		chown_uid = pw->pw_uid;
		chown_gid = pw->pw_gid;
		if (nftw(lp.dir, chown_one, 16, FTW_PHYS) < 0) {
			fprintf(stderr, "ternctl: chown %s: %s\n", lp.dir,
				strerror(errno));
			goto out;
		}
	}
	if (replica == NULL) {
		printf("%s: created (slapd configuration and database for "
		       "%s)\n", lp.dir, base);
	} else {
		printf("%s: created (a replica of %s at %s; writes go "
		       "there)\n", lp.dir, base, replica->provider);
		printf("note: copy conf/ldap.secret and conf/ldap-authd.secret "
		       "from the provider into %s/conf (mode 0640)\n",
		       ctl->root);
	}
	r = 0;
out:
	if (r < 0 && access(lp.slapd_d, F_OK) == 0)
		fprintf(stderr, "ternctl: remove %s before running setup "
			"again\n", lp.dir);
	if (r < 0 && secret != NULL)
		(void)!unlink(lp.conf);
	if (secret != NULL)
		explicit_bzero(str_data(text), str_len(text));
	str_free(&text);
	paths_free(&lp);
	free(dc);
	free(svc);
	free(authd);
	free(repl);
	if (secret != NULL)
		explicit_bzero(secret, strlen(secret));
	free(secret);
	return r;
}
