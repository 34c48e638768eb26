/*
 * ternctl: the administrator's one command.
 *
 *   ternctl [-r ROOT] COMMAND [ARGS]
 *
 * ROOT is the instance root: -r, else TERN_ROOT, else the install prefix.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "compat.h"
#include "json.h"
#include "paths.h"
#include "privs.h"
#include "str.h"
#include "ternctl.h"

static const struct {
	const char *name;
	int (*run)(struct ctl *ctl, int argc, char **argv);
	const char *help;
} commands[] = {
	{ "setup", ctl_setup, "setup [--port-base N] [--hostname NAME]: "
			      "create the instance root" },
	{ "start", ctl_start, "start: start tern-master and every service" },
	{ "stop", ctl_stop, "stop: stop every service and tern-master" },
	{ "restart", ctl_restart, "restart: stop, then start" },
	{ "reload", ctl_reload, "reload: re-read tern.conf and services.conf" },
	{ "status", ctl_status, "status [--json]: services, pids, uptime, "
				"restarts, listening addresses" },
	{ "config", ctl_config, "config show [KEY] [--json] | config doc: "
				"effective configuration, option reference" },
	{ "domain", ctl_domain, "domain add|list|show|set|del: mail domains" },
	{ "account", ctl_account, "account add|list|show|passwd|set|del: "
				  "mail accounts" },
	{ "alias", ctl_alias, "alias add|del|list: addresses that forward" },
	{ "list", ctl_list, "list add|del|show|list, list member add|del: "
			    "distribution lists" },
	{ "cos", ctl_cos, "cos add|set|del|list|show: classes of service" },
	{ "directory", ctl_directory, "directory migrate --to=ldap [--force] "
				      "[--switch]: copy the embedded directory "
				      "into LDAP" },
	{ "gal", ctl_gal, "gal search TEXT [--limit N] [--json]: the address "
			  "book (accounts and lists)" },
	{ "store", ctl_store, "store check [ACCOUNT] [--repair]: check the "
			      "mailbox store (tern-stored stopped)" },
	{ "queue", ctl_queue, "queue list [--json] | flush | delete ID|ALL | "
	  "hold ID | release ID: the mail queue" },
	{ "mailbox", ctl_mailbox, "mailbox ls ACCOUNT [FOLDER] | mailbox cat "
				  "ACCOUNT FOLDER UID: look into a mailbox" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: ternctl [-r ROOT] COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < TERN_NELEM(commands); i++)
		fprintf(f, "  %s\n", commands[i].help);
	fprintf(f, "\nROOT: -r, else $TERN_ROOT, else %s\n", TERN_PREFIX);
}

char *ctl_path(const struct ctl *ctl, const char *rel)
{
	return path_join(ctl->root, rel);
}

void ctl_warn(void *ctx, const char *msg)
{
	fprintf(stderr, "ternctl: warning: %s\n", msg);
}

struct json *ctl_json_start(struct str **out)
{
	*out = str_new(4096, 256 << 20);
	return json_new(*out, JSON_PRETTY);
}

int ctl_json_done(struct json **j, struct str **out)
{
	const char *error;
	int r = json_finish(*j, &error);

	if (r == 0)
		printf("%s\n", str_c(*out));
	else
		fprintf(stderr, "ternctl: json: %s\n", error);
	json_free(j);
	str_free(out);
	return r < 0 ? 1 : 0;
}

int ctl_become_user(const char *user)
{
	struct str *err = str_new(128, 1024);
	int r = privs_drop(user, err);

	if (r < 0)
		fprintf(stderr, "ternctl: %s\n", str_c(err));
	str_free(&err);
	return r;
}

int ctl_no_args(int argc, char **argv, const char *usage_text)
{
	if (argc > 1) {
		fprintf(stderr, "ternctl: unexpected argument '%s'\nusage: "
			"ternctl %s\n", argv[1], usage_text);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct ctl ctl = { 0 };
	const char *root = getenv("TERN_ROOT");
	char abs[PATH_MAX];
	int c;

	/* A server that goes away (slapd, tern-master) is an error to report,
	 * not a signal that ends ternctl silently. */
	signal(SIGPIPE, SIG_IGN);
	while ((c = getopt(argc, argv, "+r:h")) != -1) {
		switch (c) {
		case 'r':
			root = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	if (root == NULL || *root == '\0')
		root = TERN_PREFIX;
	/* The root may not exist before setup: make it absolute by hand. */
	if (root[0] != '/') {
		if (getcwd(abs, sizeof(abs)) == NULL ||
		    strlen(abs) + 1 + strlen(root) >= sizeof(abs)) {
			fprintf(stderr, "ternctl: cannot resolve %s\n", root);
			return 1;
		}
		snprintf(abs + strlen(abs), sizeof(abs) - strlen(abs), "/%s",
			 root);
		root = abs;
	}
	ctl.root = root;
	for (size_t i = 0; i < TERN_NELEM(commands); i++) {
		if (strcmp(argv[optind], commands[i].name) == 0) {
			int sub = optind;

			optind = 0;	/* glibc: start over for the command */
			return commands[i].run(&ctl, argc - sub, argv + sub);
		}
	}
	fprintf(stderr, "ternctl: unknown command '%s'\n", argv[optind]);
	usage(stderr);
	return 2;
}
