/*
 * ternctl.h: what ternctl's command files share.
 *
 * ternctl.c parses the global options and dispatches; setup.c creates an
 * instance root; ctl_service.c starts, stops, reloads and reports on
 * tern-master; ctl_config.c shows the configuration.  Each command returns
 * the process exit status.
 */
#ifndef TERN_TERNCTL_H
#define TERN_TERNCTL_H

#include "compat.h"

struct json;
struct str;

struct ctl {
	const char *root;	/* absolute */
	int json;
};

int ctl_setup(struct ctl *ctl, int argc, char **argv);
int ctl_start(struct ctl *ctl, int argc, char **argv);
int ctl_stop(struct ctl *ctl, int argc, char **argv);
int ctl_restart(struct ctl *ctl, int argc, char **argv);
int ctl_reload(struct ctl *ctl, int argc, char **argv);
int ctl_status(struct ctl *ctl, int argc, char **argv);
int ctl_config(struct ctl *ctl, int argc, char **argv);
/* setup_ldap.c: the bundled slapd of setup --directory=ldap.  The
 * services.conf line (appended to out) and the instance under data/ldap. */
struct cfg;
int setup_ldap_service_line(struct ctl *ctl, unsigned port_base,
			    const char *user, struct str *out);
/* --ldap-provider: the bundled slapd as a syncrepl replica of provider
 * (an LDAP URI), bound as its cn=tern-replicator with the password in the
 * first line of password_file.  NULL: a provider, the usual. */
struct setup_ldap_replica {
	const char *provider;
	const char *password_file;
};
int setup_ldap_instance(struct ctl *ctl, const struct cfg *cfg,
			const struct setup_ldap_replica *replica);
/* ctl_dir.c: directory provisioning. */
int ctl_domain(struct ctl *ctl, int argc, char **argv);
int ctl_account(struct ctl *ctl, int argc, char **argv);
int ctl_alias(struct ctl *ctl, int argc, char **argv);
int ctl_list(struct ctl *ctl, int argc, char **argv);
int ctl_cos(struct ctl *ctl, int argc, char **argv);
int ctl_gal(struct ctl *ctl, int argc, char **argv);
/* ctl_migrate.c: directory migrate --to=ldap (the embedded directory
 * copied into LDAP). */
int ctl_directory(struct ctl *ctl, int argc, char **argv);
/* ctl_store.c: store check (store stopped), mailbox ls/cat (running). */
int ctl_store(struct ctl *ctl, int argc, char **argv);
int ctl_mailbox(struct ctl *ctl, int argc, char **argv);
/* ctl_queue.c: the mail queue (list, flush, delete, hold, release). */
int ctl_queue(struct ctl *ctl, int argc, char **argv);

/* Shared helpers (ternctl.c). */
char *ctl_path(const struct ctl *ctl, const char *rel);	/* malloc'd */
void ctl_warn(void *ctx, const char *msg);		/* cfg warnings */
int ctl_no_args(int argc, char **argv, const char *usage);
/* As root, becomes the daemon user (privs.h) so that files ternctl creates
 * stay the daemons'; prints why not and returns -1 on failure. */
int ctl_become_user(const char *user);
/* --json output: start a pretty document in a new *out; done prints it
 * (or the error) and frees both; returns the exit status (0 or 1). */
struct json *ctl_json_start(struct str **out);
int ctl_json_done(struct json **j, struct str **out);

#endif
