/*
 * setup.c: `ternctl setup`, which creates or completes an instance root.
 *
 * Layout: conf/ (tern.conf, services.conf, ssl/), data/, queue/{incoming,
 * active,deferred,hold,corrupt}, log/, run/, backup/.  Existing files are
 * never overwritten, so running it twice is safe.  As root it also creates
 * the unprivileged account daemons run as (the user option, "tern") and
 * gives it the folders it writes to; the TLS key is root:tern 0640.
 * --directory=ldap adds the bundled OpenLDAP server (setup_ldap.c); with
 * --ldap-provider=URI and --ldap-replicator-password-file=FILE it is a
 * replica of another instance's, and tern.conf gets ldap_write_uri = URI.
 * --memcached[=socket|tcp] adds the bundled memcached (the proxy's route
 * cache): a services.conf line that tern-master runs (-U 0, as the daemon
 * user when started as root) on run/memcached/memcached.sock (the folder
 * belongs to the daemon user: memcached binds after dropping privileges)
 * or 127.0.0.1 on the memcached port under the port base, and
 * proxy_memcached_servers pointing at it in a new tern.conf.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <openssl/crypto.h>

#include "compat.h"
#include "cfg.h"
#include "dir.h"
#include "fsutil.h"
#include "paths.h"
#include "proxyauth.h"
#include "services.h"
#include "str.h"
#include "ternctl.h"
#include "tlsgen.h"
#include "xalloc.h"

extern char **environ;

static const char *const dirs[] = {
	"conf", "conf/ssl", "data", "queue", "queue/incoming", "queue/active",
	"queue/deferred", "queue/hold", "queue/corrupt", "log", "run", "backup",
};
/* Folders the daemons write to after dropping privileges. */
static const char *const daemon_dirs[] = {
	"data", "queue", "queue/incoming", "queue/active", "queue/deferred",
	"queue/hold", "queue/corrupt", "log", "backup",
};
/* Programs a default services.conf may name. */
static const char *const known_programs[] = {
	"tern-authd", "tern-stored", "tern-qmgr", "tern-lmtpd", "tern-smtpd",
	"tern-proxyd", "tern-imapd", "tern-popd", "tern-webd",
};

static int mkdir_p(const char *path, mode_t mode)
{
	struct str *s = str_new(128, 8192);
	const char *p = path;
	int r = 0;

	while (r == 0 && *p != '\0') {
		p += strspn(p, "/");
		p += strcspn(p, "/");
		str_clear(s);
		if (str_append(s, path, (size_t)(p - path)) < 0)
			r = -1;
		else if (mkdir(str_c(s), mode) < 0 && errno != EEXIST)
			r = -1;
	}
	str_free(&s);
	return r;
}

/* Writes a new file durably (fsutil.h); never replaces an existing one.
 * 1 = written, 0 = existed, -1 = error (message in error). */
static int write_new_file(const char *path, const struct str *text,
			  mode_t mode, struct str *error)
{
	if (access(path, F_OK) == 0)
		return 0;
	if (fsutil_write_file(path, str_c(text), str_len(text), mode, 0,
			      error) < 0)
		return errno == EEXIST ? 0 : -1;
	return 1;
}

static int run_useradd(const char *user, const char *home)
{
	char *const argv[] = {
		"useradd", "--system", "--user-group", "--no-create-home",
		"--home-dir", (char *)home, "--shell", "/usr/sbin/nologin",
		"--comment", "Tern mail server", (char *)user, NULL,
	};
	pid_t pid;
	int status;

	if (posix_spawnp(&pid, "useradd", NULL, NULL, argv, environ) != 0)
		return -1;
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0)
		return -1;
	return 0;
}

/* Creates the daemon account when missing and hands it its folders. */
static int setup_user(struct ctl *ctl, const char *user)
{
	struct passwd *pw;

	if (geteuid() != 0 || user[0] == '\0')
		return 0;
	pw = getpwnam(user);
	if (pw == NULL) {
		if (run_useradd(user, ctl->root) < 0) {
			fprintf(stderr, "ternctl: cannot create user %s with "
				"useradd\n", user);
			return -1;
		}
		printf("created system user %s\n", user);
		pw = getpwnam(user);
		if (pw == NULL)
			return -1;
	}
	for (size_t i = 0; i < TERN_NELEM(daemon_dirs); i++) {
		char *p = ctl_path(ctl, daemon_dirs[i]);
		int r = chown(p, pw->pw_uid, pw->pw_gid);

		if (r < 0)
			fprintf(stderr, "ternctl: chown %s: %s\n", p,
				strerror(errno));
		free(p);
		if (r < 0)
			return -1;
	}
	{
		char *key = ctl_path(ctl, "conf/ssl/tern.key");
		if (chown(key, 0, pw->pw_gid) < 0 || chmod(key, 0640) < 0)
			fprintf(stderr, "ternctl: %s: %s\n", key,
				strerror(errno));
		free(key);
	}
	return 0;
}

/* The line of the default table that defines service name. */
static void print_default_line(const struct str *defaults, const char *name)
{
	const char *p = str_c(defaults);
	size_t n = strlen(name);

	while (*p != '\0') {
		size_t len = strcspn(p, "\n");

		if (len > n && strncmp(p, name, n) == 0 &&
		    (p[n] == ' ' || p[n] == '\t'))
			printf("    %.*s\n", (int)len, p);
		p += len + (p[len] == '\n');
	}
}

/* An existing services.conf is never rewritten; say which services of
 * installed programs it lacks (after an upgrade, say) and their lines. */
static void report_missing_services(struct ctl *ctl, const char *path,
				    const struct str *defaults)
{
	struct services *have = NULL, *want = NULL;
	struct str *err = str_new(256, 8192);

	if (services_load(ctl->root, path, &have, err) == 0 &&
	    services_load_buffer(ctl->root, "default", str_c(defaults),
				 str_len(defaults), &want, err) == 0) {
		for (size_t i = 0; i < services_count(want); i++) {
			const struct service *svc = services_get(want, i);

			if (services_find(have, svc->name) != NULL)
				continue;
			printf("%s: no service '%s' for the installed %s; to "
			       "run it, add:\n", path, svc->name, svc->argv[0]);
			print_default_line(defaults, svc->name);
		}
	}
	services_free(&have);
	services_free(&want);
	str_free(&err);
}

#define MEMCACHED "/usr/bin/memcached"

enum memcached_mode {
	MEMCACHED_NONE,
	MEMCACHED_SOCKET,
	MEMCACHED_TCP,
};

/* Where the bundled memcached listens, as proxy_memcached_servers says
 * it: "ROOT/run/memcached/memcached.sock" or "127.0.0.1:PORT". */
static int memcached_address(struct ctl *ctl, enum memcached_mode mode,
			     unsigned port_base, struct str *out)
{
	char *sock;
	int r;

	if (mode == MEMCACHED_TCP)
		return str_printf(out, "127.0.0.1:%u",
				  tern_port(port_base, 11211));
	sock = ctl_path(ctl, "run/memcached/memcached.sock");
	r = strlen(sock) >= 108 ? -1 : str_append_c(out, sock);
	if (r < 0)
		fprintf(stderr, "ternctl: %s is too long for a unix socket\n",
			sock);
	free(sock);
	return r;
}

/* The folder of the bundled memcached's socket, the daemon user's. */
static int memcached_dir(struct ctl *ctl, const char *user)
{
	char *dir = ctl_path(ctl, "run/memcached");
	struct passwd *pw;
	int r = mkdir_p(dir, 0750);

	pw = r == 0 && geteuid() == 0 && user[0] != '\0' ? getpwnam(user) :
							    NULL;
	if (r == 0 && pw != NULL && chown(dir, pw->pw_uid, pw->pw_gid) < 0)
		r = -1;
	if (r < 0)
		fprintf(stderr, "ternctl: %s: %s\n", dir, strerror(errno));
	free(dir);
	return r;
}

/* The services.conf line of the bundled memcached. */
static int memcached_line(struct ctl *ctl, enum memcached_mode mode,
			  unsigned port_base, const char *user,
			  struct str *out)
{
	struct str *addr = str_new(128, 256);
	int r = -1;

	if (access(MEMCACHED, X_OK) < 0) {
		fprintf(stderr, "ternctl: %s not found: install the memcached "
			"package for --memcached\n", MEMCACHED);
	} else if (memcached_address(ctl, mode, port_base, addr) == 0) {
		r = str_append_c(out, "# The bundled memcached: the proxy's "
				 "route cache (docs/proxy.md).\n");
		if (r == 0 && mode == MEMCACHED_TCP)
			r = str_printf(out, "memcached proc - 1 yes "
				       "ready=tcp:%s external=yes " MEMCACHED
				       " -l 127.0.0.1 -p %u -U 0 -m 64",
				       str_c(addr),
				       tern_port(port_base, 11211));
		else if (r == 0)
			r = str_printf(out, "memcached proc - 1 yes "
				       "ready=unix:run/memcached/memcached.sock "
				       "external=yes " MEMCACHED " -s %s "
				       "-a 0660 -U 0 -m 64", str_c(addr));
		if (r == 0 && user[0] != '\0' && geteuid() == 0)
			r = str_printf(out, " -u %s", user);
		if (r == 0)
			r = str_append_c(out, "\n");
	}
	str_free(&addr);
	return r;
}

/* The services.conf line of the bundled slapd, before the others. */
static int ldap_line(struct ctl *ctl, unsigned port_base, struct str *line)
{
	char *conf = ctl_path(ctl, "conf/tern.conf");
	struct str *err = str_new(256, 8192);
	struct cfg *cfg = NULL;
	int r = cfg_load(ctl->root, conf, ctl_warn, NULL, &cfg, err);

	if (r < 0)
		fprintf(stderr, "ternctl: %s\n", str_c(err));
	else
		r = setup_ldap_service_line(ctl, port_base,
					    cfg_str(cfg, OPT_USER), line);
	cfg_free(&cfg);
	str_free(&err);
	free(conf);
	return r;
}

static bool program_listed(const char *const *installed, const char *name)
{
	for (; *installed != NULL; installed++) {
		if (strcmp(*installed, name) == 0)
			return true;
	}
	return false;
}

/* tern-proxyd's HTTP and HTTPS front end when tern-webd is not installed
 * here (with tern-webd the default table has them): the proxy serves
 * http and https, and the http-backend line, disabled, tells it where
 * this machine's web back end will listen. */
static int http_proxy_lines(struct str *out, unsigned port_base,
			    const char *const *installed)
{
	struct str *listen = str_new(64, 128);
	int r;

	if (!program_listed(installed, "tern-proxyd") ||
	    program_listed(installed, "tern-webd")) {
		str_free(&listen);
		return 0;
	}
	r = str_append_c(out, "\n# HTTP and HTTPS through tern-proxyd "
			 "(docs/proxy.md).  http-backend is where\n"
			 "# tern-webd listens on this machine: known to the "
			 "proxy, run by no program\n# until tern-webd is "
			 "installed (then enable it).\n");
	if (r == 0)
		r = str_printf(out, "%-14s %-5s *:%-30u %-5s %-7s %s\n"
			       "%-14s %-5s *:%-30u %-5s %-7s %s\n", "http",
			       "inet", tern_port(port_base, 80), "-", "yes",
			       "tern-proxyd", "https", "inet",
			       tern_port(port_base, 443), "-", "yes",
			       "tern-proxyd");
	if (r == 0)
		r = str_printf(listen, "127.0.0.1:%u",
			       tern_port(port_base, 8080));
	if (r == 0)
		r = str_printf(out, "%-14s %-5s %-32s %-5s %-7s %s\n",
			       "http-backend", "inet", str_c(listen), "1", "no",
			       "tern-webd");
	str_free(&listen);
	return r;
}

static int setup_conf(struct ctl *ctl, unsigned port_base, bool ldap,
		      const char *provider, enum memcached_mode mc)
{
	const char *installed[TERN_NELEM(known_programs) + 1];
	struct str *text = str_new(4096, 1 << 20);
	struct str *err = str_new(256, 8192);
	struct str *line = str_new(512, 8192);
	size_t n = 0;
	char *path;
	int r;

	if (cfg_write_default_conf(text) < 0)
		goto fail;
	if (ldap && str_append_c(text, "\n# The directory is the bundled "
				 "OpenLDAP server (docs/ldap.md);\n"
				 "# tern-authd binds as a DN that may only "
				 "read.\n"
				 "directory_backend = ldap\n"
				 "ldap_authd_bind_dn = cn=tern-authd,dc=tern\n")
	    < 0)
		goto fail;
	if (provider != NULL &&
	    (str_append_c(text, "# It is a replica: ternctl writes to the "
			  "provider.\nldap_write_uri = ") < 0 ||
	     str_append_c(text, provider) < 0 ||
	     str_append_c(text, "\n") < 0))
		goto fail;
	if (mc != MEMCACHED_NONE &&
	    (str_append_c(text, "\n# The proxy's route cache is the bundled "
			  "memcached (docs/proxy.md).\n"
			  "proxy_memcached_servers = ") < 0 ||
	     memcached_address(ctl, mc, port_base, text) < 0 ||
	     str_append_c(text, "\n") < 0))
		goto fail;
	path = ctl_path(ctl, "conf/tern.conf");
	r = write_new_file(path, text, 0644, err);
	if (r < 0)
		fprintf(stderr, "ternctl: %s\n", str_c(err));
	else
		printf("%s: %s\n", path, r ? "created" : "kept as it is");
	free(path);
	if (r < 0)
		goto fail;

	for (size_t i = 0; i < TERN_NELEM(known_programs); i++) {
		char *p = path_find_program(known_programs[i]);
		if (p != NULL)
			installed[n++] = known_programs[i];
		free(p);
	}
	installed[n] = NULL;
	str_clear(text);
	if (ldap && ldap_line(ctl, port_base, line) < 0)
		goto fail;
	if (mc != MEMCACHED_NONE) {
		const char *user = "tern";
		char *conf = ctl_path(ctl, "conf/tern.conf");
		struct cfg *cfg = NULL;

		if (cfg_load(ctl->root, conf, ctl_warn, NULL, &cfg, err) == 0)
			user = cfg_str(cfg, OPT_USER);
		r = memcached_line(ctl, mc, port_base, user, line);
		cfg_free(&cfg);
		free(conf);
		if (r < 0)
			goto fail;
	}
	if (str_append(text, str_c(line), str_len(line)) < 0 ||
	    services_write_default(text, port_base, installed) < 0 ||
	    http_proxy_lines(text, port_base, installed) < 0)
		goto fail;
	path = ctl_path(ctl, "conf/services.conf");
	r = write_new_file(path, text, 0644, err);
	if (r < 0)
		fprintf(stderr, "ternctl: %s\n", str_c(err));
	else
		printf("%s: %s\n", path, r ? "created" : "kept as it is");
	if (r == 0)
		report_missing_services(ctl, path, text);
	free(path);
	if (r < 0)
		goto fail;
	str_free(&text);
	str_free(&err);
	str_free(&line);
	return 0;
fail:
	str_free(&text);
	str_free(&err);
	str_free(&line);
	return -1;
}

static int setup_cert(struct ctl *ctl, const char *hostname)
{
	const char *names[] = { hostname, "localhost", NULL };
	char *crt = ctl_path(ctl, "conf/ssl/tern.crt");
	char *key = ctl_path(ctl, "conf/ssl/tern.key");
	const char *error;
	int r = 0;

	if (access(crt, F_OK) == 0 || access(key, F_OK) == 0) {
		printf("%s: kept as it is\n", crt);
	} else if (tlsgen_selfsigned(crt, key, hostname,
				     strcmp(hostname, "localhost") == 0 ?
					     names + 1 : names,
				     825, false, &error) < 0) {
		fprintf(stderr, "ternctl: certificate: %s\n", error);
		r = -1;
	} else {
		printf("%s: created (self-signed for %s; replace it with a "
		       "real certificate, see docs/tls.md)\n", crt, hostname);
	}
	free(crt);
	free(key);
	return r;
}

/* The shared secret of proxy logins (proxyauth.h): random, hex, one
 * line; kept when it exists. */
static int setup_proxy_secret(const struct cfg *cfg)
{
	const char *path = cfg_str(cfg, OPT_PROXY_SECRET_FILE);
	const char *user = cfg_str(cfg, OPT_USER);
	struct passwd *pw;
	unsigned char raw[PROXYAUTH_SECRET_BYTES];
	struct str *text, *err;
	int r;

	if (path[0] == '\0')
		return 0;
	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
		fprintf(stderr, "ternctl: getrandom: %s\n", strerror(errno));
		return -1;
	}
	text = str_new(2 * sizeof(raw) + 2, 2 * sizeof(raw) + 2);
	err = str_new(128, 1024);
	for (size_t i = 0; i < sizeof(raw); i++)
		(void)!str_printf(text, "%02x", raw[i]);
	(void)!str_append_c(text, "\n");
	OPENSSL_cleanse(raw, sizeof(raw));
	r = write_new_file(path, text, 0600, err);
	if (r < 0)
		fprintf(stderr, "ternctl: %s: %s\n", path, str_c(err));
	else if (r > 0)
		printf("%s: created (proxy logins; copy it to every server "
		       "of the site)\n", path);
	/* Root's, readable by the daemons' group, like the TLS key. */
	pw = geteuid() == 0 && user[0] != '\0' ? getpwnam(user) : NULL;
	if (r > 0 && pw != NULL &&
	    (chown(path, 0, pw->pw_gid) < 0 || chmod(path, 0640) < 0))
		fprintf(stderr, "ternctl: %s: %s\n", path, strerror(errno));
	OPENSSL_cleanse(str_data(text), str_len(text));
	str_free(&text);
	str_free(&err);
	return r < 0 ? -1 : 0;
}

/* --ldap-provider and --ldap-replicator-password-file: both or neither,
 * with --directory=ldap; the URI goes into cn=config and tern.conf. */
static int replica_check(const struct setup_ldap_replica *rep, bool ldap)
{
	const char *u = rep->provider;

	if (u == NULL && rep->password_file == NULL)
		return 0;
	if (u == NULL || rep->password_file == NULL || !ldap) {
		fprintf(stderr, "ternctl: --ldap-provider needs "
			"--ldap-replicator-password-file and "
			"--directory=ldap\n");
		return -1;
	}
	if ((strncmp(u, "ldap://", 7) != 0 && strncmp(u, "ldaps://", 8) != 0 &&
	     strncmp(u, "ldapi://", 8) != 0) ||
	    u[strcspn(u, " \t\r\n\"\\")] != '\0' || strlen(u) > 1024) {
		fprintf(stderr, "ternctl: --ldap-provider must be one LDAP URI "
			"(ldap://HOST:PORT/), without spaces or quotes\n");
		return -1;
	}
	return 0;
}

int ctl_setup(struct ctl *ctl, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "port-base", required_argument, NULL, 'p' },
		{ "hostname", required_argument, NULL, 'H' },
		{ "directory", required_argument, NULL, 'd' },
		{ "memcached", optional_argument, NULL, 'm' },
		{ "ldap-provider", required_argument, NULL, 'P' },
		{ "ldap-replicator-password-file", required_argument, NULL,
		  'W' },
		{ NULL, 0, NULL, 0 },
	};
	struct setup_ldap_replica replica = { NULL, NULL };
	char host[256] = "";
	unsigned long port_base = 0;
	struct str *err = str_new(256, 8192);
	struct cfg *cfg = NULL;
	char *end, *conf;
	int c, status = 1;
	bool ldap = false;
	enum memcached_mode mc = MEMCACHED_NONE;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			errno = 0;
			port_base = strtoul(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || optarg[0] == '-' ||
			    port_base > TERN_PORT_BASE_MAX) {
				fprintf(stderr, "ternctl: --port-base must be "
					"0..%u\n", TERN_PORT_BASE_MAX);
				goto out;
			}
			break;
		case 'H':
			str_lcpy(host, optarg, sizeof(host));
			break;
		case 'd':
			if (strcmp(optarg, "ldap") != 0 &&
			    strcmp(optarg, "sqlite") != 0) {
				fprintf(stderr, "ternctl: --directory must be "
					"sqlite or ldap\n");
				goto out;
			}
			ldap = strcmp(optarg, "ldap") == 0;
			break;
		case 'm':
			if (optarg == NULL || strcmp(optarg, "socket") == 0) {
				mc = MEMCACHED_SOCKET;
			} else if (strcmp(optarg, "tcp") == 0) {
				mc = MEMCACHED_TCP;
			} else {
				fprintf(stderr, "ternctl: --memcached must be "
					"socket or tcp\n");
				goto out;
			}
			break;
		case 'P':
			replica.provider = optarg;
			break;
		case 'W':
			replica.password_file = optarg;
			break;
		default:
			fprintf(stderr, "usage: ternctl setup [--port-base N] "
				"[--hostname NAME] [--directory=sqlite|ldap] "
				"[--memcached[=socket|tcp]] "
				"[--ldap-provider=URI "
				"--ldap-replicator-password-file=FILE]\n");
			goto out;
		}
	}
	if (replica_check(&replica, ldap) < 0)
		goto out;
	if (optind != argc) {
		fprintf(stderr, "ternctl: unexpected argument '%s'\n",
			argv[optind]);
		goto out;
	}
	umask(022);
	for (size_t i = 0; i < TERN_NELEM(dirs); i++) {
		char *p = ctl_path(ctl, dirs[i]);
		int r = mkdir_p(p, 0755);

		if (r < 0)
			fprintf(stderr, "ternctl: mkdir %s: %s\n", p,
				strerror(errno));
		free(p);
		if (r < 0)
			goto out;
	}
	if (setup_conf(ctl, (unsigned)port_base, ldap, replica.provider,
		       mc) < 0)
		goto out;
	conf = ctl_path(ctl, "conf/tern.conf");
	if (cfg_load(ctl->root, conf, ctl_warn, NULL, &cfg, err) < 0) {
		fprintf(stderr, "ternctl: %s\n", str_c(err));
		free(conf);
		goto out;
	}
	free(conf);
	if (host[0] == '\0') {
		const char *h = cfg_str(cfg, OPT_MYHOSTNAME);
		str_lcpy(host, h[0] != '\0' ? h : "localhost", sizeof(host));
		if (h[0] == '\0' && gethostname(host, sizeof(host) - 1) < 0)
			str_lcpy(host, "localhost", sizeof(host));
	}
	if (setup_cert(ctl, host) < 0 ||
	    setup_user(ctl, cfg_str(cfg, OPT_USER)) < 0 ||
	    setup_proxy_secret(cfg) < 0)
		goto out;
	if (ldap && setup_ldap_instance(ctl, cfg, replica.provider != NULL ?
						     &replica : NULL) < 0)
		goto out;
	if (mc == MEMCACHED_SOCKET &&
	    memcached_dir(ctl, cfg_str(cfg, OPT_USER)) < 0)
		goto out;
	if (ldap &&
	    cfg_enum(cfg, OPT_DIRECTORY_BACKEND) != DIR_BACKEND_LDAP)
		printf("note: conf/tern.conf was kept; to move the embedded "
		       "directory into the bundled one, see ternctl directory "
		       "migrate --to=ldap (docs/ldap.md)\n");
	if (mc != MEMCACHED_NONE &&
	    cfg_str(cfg, OPT_PROXY_MEMCACHED_SERVERS)[0] == '\0')
		printf("note: conf/tern.conf was kept; set "
		       "proxy_memcached_servers in it to use the bundled "
		       "memcached\n");
	printf("instance root %s is ready: start it with ternctl -r %s start\n",
	       ctl->root, ctl->root);
	status = 0;
out:
	cfg_free(&cfg);
	str_free(&err);
	return status;
}
