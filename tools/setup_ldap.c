/*
 * setup_ldap.c: the bundled OpenLDAP directory of `ternctl setup
 * --directory=ldap` (docs/ldap.md).
 *
 * Creates data/ldap/ with slapd.d/ (cn=config, loaded with slapadd -n0
 * from config.ldif: modules back_mdb, argon2 and syncprov; schemas core,
 * cosine, inetorgperson and Tern's tern.ldif; an mdb database in db/ for
 * ldap_base_dn with indexes and ACLs) and the database's first entries
 * (slapadd -n1: the base entry, the service DN ternctl writes with, the
 * read-only DN tern-authd binds as, and the skeleton under it), and
 * conf/ldap.secret and conf/ldap-authd.secret with their random passwords
 * (their {ARGON2} hashes are in the directory).  slapd runs
 * under tern-master as the first line of services.conf, on ldapi:// at
 * run/ldapi and on 127.0.0.1 at the instance's LDAP port.  An existing
 * data/ldap/slapd.d is kept as it is.
 *
 * ACLs: root over ldapi (SASL EXTERNAL, peer credentials) manages
 * everything; password hashes are readable by no one but the service DN,
 * and writable by their owner; every authenticated user may read the
 * address-book attributes of the entries under ou=domains; the service DN
 * writes the whole tree and tern-authd's DN reads it (hashes included);
 * the rest is readable only by its owner.
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
			"ldap proc - 1 yes ready=unix:run/ldapi external=yes "
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

static int config_ldif(struct ctl *ctl, const char *base, const char *svc,
		       const char *authd, struct str *out)
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
		"by self =w by anonymous auth by * none\n",
		"olcAccess: {2}to dn.subtree=\"ou=domains,", base, "\" "
		"attrs=entry,objectClass,mail,cn,sn,givenName,displayName,"
		"ternMailAlternateAddress "
		"by dn.exact=\"", svc, "\" write by dn.exact=\"", authd,
		"\" read by users read by * none\n",
		"olcAccess: {3}to * by dn.exact=\"", svc, "\" write "
		"by dn.exact=\"", authd, "\" read by self read by * none\n\n",
		"dn: olcOverlay={0}syncprov,olcDatabase={1}mdb,cn=config\n"
		"objectClass: olcOverlayConfig\n"
		"objectClass: olcSyncProvConfig\nolcOverlay: {0}syncprov\n",
		NULL,
	};

	r = append(out, parts);
	free(db);
	free(schema);
	return r;
}

static int base_ldif(const char *base, const char *dc, const char *svc,
		     const char *hash, const char *authd,
		     const char *authd_hash, struct str *out)
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

/* A random password (hex) in conf/NAME, and its argon2id hash. */
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
	if (dir_password_hash(hex, hash, err) != DIR_OK) {
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

int setup_ldap_instance(struct ctl *ctl, const struct cfg *cfg)
{
	const char *base = cfg_str(cfg, OPT_LDAP_BASE_DN);
	const char *user = cfg_str(cfg, OPT_USER);
	struct passwd *pw = NULL;
	struct str *text = str_new(4096, TEXT_MAX), *hash = str_new(128, 1024);
	char *dir = ctl_path(ctl, "data/ldap");
	char *slapd_d = ctl_path(ctl, "data/ldap/slapd.d");
	char *db = ctl_path(ctl, "data/ldap/db");
	char *schema = ctl_path(ctl, "data/ldap/tern.ldif");
	char *conf = ctl_path(ctl, "data/ldap/config.ldif");
	char *first = ctl_path(ctl, "data/ldap/base.ldif");
	char *dc = base_dc(base), *svc = NULL, *authd = NULL;
	struct str *authd_hash = str_new(128, 1024);
	int r = -1;

	if (access(slapd_d, F_OK) == 0) {
		printf("%s: kept as it is\n", slapd_d);
		r = 0;
		goto out;
	}
	if (dc == NULL) {
		fprintf(stderr, "ternctl: ldap_base_dn '%s' must start with "
			"dc= for the bundled directory\n", base);
		goto out;
	}
	if (geteuid() == 0 && user[0] != '\0')
		pw = getpwnam(user);
	svc = xmalloc(strlen(base) + sizeof(SERVICE_RDN ","));
	snprintf(svc, strlen(base) + sizeof(SERVICE_RDN ","), SERVICE_RDN
		 ",%s", base);
	authd = xmalloc(strlen(base) + sizeof(AUTHD_RDN ","));
	snprintf(authd, strlen(base) + sizeof(AUTHD_RDN ","), AUTHD_RDN
		 ",%s", base);
	if (strcmp(authd, cfg_str(cfg, OPT_LDAP_AUTHD_BIND_DN)) != 0)
		printf("note: ldap_authd_bind_dn is '%s'; the bundled "
		       "directory's read-only DN for tern-authd is %s\n",
		       cfg_str(cfg, OPT_LDAP_AUTHD_BIND_DN), authd);
	if (strcmp(svc, cfg_str(cfg, OPT_LDAP_BIND_DN)) != 0)
		printf("note: ldap_bind_dn is %s; the bundled directory's "
		       "service DN is %s\n", cfg_str(cfg, OPT_LDAP_BIND_DN),
		       svc);
	if ((mkdir(dir, 0750) < 0 && errno != EEXIST) ||
	    mkdir(slapd_d, 0750) < 0 || (mkdir(db, 0750) < 0 &&
					 errno != EEXIST)) {
		fprintf(stderr, "ternctl: mkdir under %s: %s\n", dir,
			strerror(errno));
		goto out;
	}
	if (str_set(text, tern_schema_ldif, strlen(tern_schema_ldif)) < 0 ||
	    write_file(schema, text, 0644) < 0)
		goto out;
	str_clear(text);
	if (config_ldif(ctl, base, svc, authd, text) < 0 ||
	    write_file(conf, text, 0640) < 0)
		goto out;
	if (make_secret(ctl, pw, "ldap.secret", "the service DN's password",
			hash) < 0 ||
	    make_secret(ctl, pw, "ldap-authd.secret",
			"tern-authd's read-only DN's password", authd_hash) < 0)
		goto out;
	str_clear(text);
	if (base_ldif(base, dc, svc, str_c(hash), authd, str_c(authd_hash),
		      text) < 0 ||
	    write_file(first, text, 0640) < 0)
		goto out;
	if (slapadd(slapd_d, 0, conf) < 0 || slapadd(slapd_d, 1, first) < 0)
		goto out;
	if (pw != NULL) {
		chown_uid = pw->pw_uid;
		chown_gid = pw->pw_gid;
		if (nftw(dir, chown_one, 16, FTW_PHYS) < 0) {
			fprintf(stderr, "ternctl: chown %s: %s\n", dir,
				strerror(errno));
			goto out;
		}
	}
	printf("%s: created (slapd configuration and database for %s)\n",
	       dir, base);
	r = 0;
out:
	if (r < 0 && access(slapd_d, F_OK) == 0)
		fprintf(stderr, "ternctl: remove %s before running setup "
			"again\n", dir);
	str_free(&text);
	str_free(&hash);
	free(dir);
	free(slapd_d);
	free(db);
	free(schema);
	free(conf);
	free(first);
	free(dc);
	free(svc);
	free(authd);
	str_free(&authd_hash);
	return r;
}
