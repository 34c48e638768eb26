/*
 * tern-smtpd: the SMTP server that receives mail into the queue.
 *
 * A thin main on the service skeleton: init (after the privilege drop)
 * decides the role and TLS role of the service, makes sure the queue
 * folders exist, removes temporary queue files that a killed process left
 * behind, opens the client of tern-authd (recipients, logins, connection
 * counters) and reads the smtpd_* settings; sessions (session.c) speak
 * SMTP.  On stop, idle sessions get 421; busy ones finish their
 * transaction first; then the client is closed and the loop ends.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compat.h"
#include "authclient.h"
#include "cfg.h"
#include "log.h"
#include "paths.h"
#include "netlist.h"
#include "queue.h"
#include "session.h"
#include "smtpd.h"
#include "str.h"
#include "svc.h"
#include "xalloc.h"

#define QUEUE_TMP "queue/tmp"
#define QUEUE_INCOMING "queue/incoming"

static struct smtpd smtpd_state;

struct smtpd *smtpd_get(struct svc *svc)
{
	return svc_ctx(svc);
}

static void mynetworks_warn(const char *entry)
{
	log_warn(NULL, "ignoring mynetworks entry %s: not an address or "
		 "network", entry);
}

/* The settings from tern.conf (again on reload), then the service's -o
 * overrides. */
static void smtpd_settings(struct smtpd *sd)
{
	const struct cfg *cfg = svc_config(sd->svc);
	const char *const *nets;
	size_t nnets;

	free(sd->hostname);
	sd->hostname = xstrdup(cfg_str(cfg, OPT_MYHOSTNAME));
	free(sd->postmaster);
	if (cfg_str(cfg, OPT_QMGR_POSTMASTER)[0] != '\0') {
		sd->postmaster = xstrdup(cfg_str(cfg, OPT_QMGR_POSTMASTER));
	} else {
		struct str *pm = str_new(64, 1024);

		(void)!str_printf(pm, "postmaster@%s", sd->hostname);
		sd->postmaster = xstrdup(str_c(pm));
		str_free(&pm);
	}
	sd->plaintext = svc_plaintext_setting(sd->svc, "smtpd_plaintext_auth",
					      cfg_enum(cfg,
						       OPT_SMTPD_PLAINTEXT_AUTH));
	sd->size_limit = cfg_size(cfg, OPT_MESSAGE_SIZE_LIMIT);
	sd->hop_limit = (unsigned)cfg_int(cfg, OPT_SMTPD_HOP_COUNT_LIMIT);
	sd->rcpt_limit = (unsigned)cfg_int(cfg, OPT_SMTPD_RECIPIENT_LIMIT);
	sd->error_limit = (unsigned)cfg_int(cfg, OPT_SMTPD_ERROR_LIMIT);
	sd->conn_limit = (unsigned)cfg_int(cfg,
					   OPT_SMTPD_CLIENT_CONNECTION_LIMIT);
	sd->client_msg_rate = (unsigned)cfg_int(cfg,
					OPT_SMTPD_CLIENT_MESSAGE_RATE_LIMIT);
	sd->client_rcpt_rate = (unsigned)cfg_int(cfg,
					OPT_SMTPD_CLIENT_RECIPIENT_RATE_LIMIT);
	sd->user_msg_rate = (unsigned)cfg_int(cfg,
					      OPT_SMTPD_USER_MESSAGE_RATE_LIMIT);
	sd->user_rcpt_rate = (unsigned)cfg_int(cfg,
					OPT_SMTPD_USER_RECIPIENT_RATE_LIMIT);
	sd->line_max = (size_t)cfg_size(cfg, OPT_SMTPD_LINE_LIMIT);
	sd->idle_ms = cfg_duration(cfg, OPT_SMTPD_TIMEOUT);
	sd->greet_delay_ms = sd->submission ? 0 :
			     cfg_duration(cfg, OPT_SMTPD_GREET_DELAY);
	sd->normalize_newlines = cfg_enum(cfg, OPT_SMTPD_BARE_NEWLINE) == 1;
	sd->vrfy_502 = cfg_enum(cfg, OPT_SMTPD_VRFY_REPLY) == 1;
	sd->sender_login_check = cfg_bool(cfg, OPT_SMTPD_SENDER_LOGIN_CHECK);
	netlist_free(&sd->mynetworks);
	nets = cfg_list(cfg, OPT_MYNETWORKS, &nnets);
	sd->mynetworks = netlist_new(nets, nnets, mynetworks_warn);
}

/* -o NAME=yes|no: *value_r, or -1 for another word. */
static int override_bool(struct smtpd *sd, const char *name, bool *value_r)
{
	const char *o = svc_override(sd->svc, name);

	if (o == NULL)
		return 0;
	if (strcmp(o, "yes") == 0)
		*value_r = true;
	else if (strcmp(o, "no") == 0)
		*value_r = false;
	else
		return -1;
	return 0;
}

/* Submission and implicit TLS from the service name, or -o. */
static int smtpd_roles(struct smtpd *sd, const char **error_r)
{
	const char *name = svc_name(sd->svc);
	const char *o = svc_override(sd->svc, "tls");

	sd->submission = strncmp(name, "submission", 10) == 0;
	sd->implicit_tls = strcmp(name, "submissions") == 0 ||
			   strncmp(name, "submissions-", 12) == 0;
	if (override_bool(sd, "submission", &sd->submission) < 0) {
		*error_r = "-o submission= must be yes or no";
		return -1;
	}
	if (o != NULL) {
		if (strcmp(o, "implicit") == 0) {
			sd->implicit_tls = true;
		} else if (strcmp(o, "starttls") == 0) {
			sd->implicit_tls = false;
		} else {
			*error_r = "-o tls= must be implicit or starttls";
			return -1;
		}
	}
	sd->tls = svc_tls_server(sd->svc);
	if (sd->implicit_tls && sd->tls == NULL) {
		*error_r = "implicit TLS needs tls_cert_file and tls_key_file";
		return -1;
	}
	return 0;
}

static int make_dir(const char *path, const char **error_r)
{
	if (mkdir(path, 0750) < 0 && errno != EEXIST) {
		log_error(NULL, "mkdir %s: %s", path, strerror(errno));
		*error_r = "cannot create the queue folders";
		return -1;
	}
	return 0;
}

/* Temporary files of processes that are gone (killed mid-message): the
 * client got no 250 for them, so they go. */
static void clean_tmp(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t removed = 0;

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		long pid = queue_id_pid(de->d_name);
		char *path;

		if (pid <= 0 || pid == (long)getpid() ||
		    kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		path = path_join(dir, de->d_name);
		if (unlink(path) == 0)
			removed++;
		free(path);
	}
	closedir(d);
	if (removed > 0)
		log_info(NULL, "removed %zu unfinished queue file(s) from %s",
			 removed, dir);
}

static int smtpd_init(struct svc *svc, const char **error_r)
{
	const struct cfg *cfg = svc_config(svc);
	struct smtpd *sd = &smtpd_state;
	struct authclient_settings aset = {
		.timeout_ms = cfg_duration(cfg, OPT_AUTHD_TIMEOUT),
		.max_frame = (size_t)cfg_size(cfg, OPT_IPC_FRAME_MAX),
	};
	char *path;

	sd->svc = svc;
	svc_set_ctx(svc, sd);
	if (smtpd_roles(sd, error_r) < 0)
		return -1;
	smtpd_settings(sd);
	sd->service = xstrdup(svc_name(svc));
	sd->queue_tmp = path_join(svc_root(svc), QUEUE_TMP);
	sd->queue_incoming = path_join(svc_root(svc), QUEUE_INCOMING);
	path = path_join(svc_root(svc), "queue");
	if (make_dir(path, error_r) < 0 ||
	    make_dir(sd->queue_tmp, error_r) < 0 ||
	    make_dir(sd->queue_incoming, error_r) < 0) {
		free(path);
		return -1;
	}
	free(path);
	clean_tmp(sd->queue_tmp);
	path = path_join(svc_root(svc), AUTHCLIENT_SOCKET);
	sd->auth = authclient_new(svc_loop(svc), path, &aset);
	free(path);
	log_info(NULL, "smtp ready: service %s, %s, %s, size limit %llu",
		 svc_name(svc), sd->submission ? "submission" : "mx",
		 sd->implicit_tls ? "implicit TLS" :
		 sd->tls != NULL ? "STARTTLS offered" : "no TLS (no certificate)",
		 (unsigned long long)sd->size_limit);
	return 0;
}

static void smtpd_accept(struct svc *svc, uv_stream_t *client, int listener)
{
	(void)listener;
	session_accept(smtpd_get(svc), client);
}

static void smtpd_reload(struct svc *svc)
{
	struct smtpd *sd = smtpd_get(svc);

	if (sd == NULL)
		return;
	smtpd_settings(sd);
	/* The skeleton loaded the certificate again: the old context is
	 * gone (engines of open sessions keep their own reference). */
	sd->tls = svc_tls_server(svc);
	if (sd->implicit_tls && sd->tls == NULL)
		log_error(NULL, "implicit TLS without a certificate: new "
			  "connections will fail");
}

/* svc: stopping and no session left: close the authd client. */
static void smtpd_drained(struct svc *svc)
{
	struct smtpd *sd = smtpd_get(svc);

	if (sd != NULL)
		authclient_free(&sd->auth);
}

static void smtpd_stop(struct svc *svc)
{
	struct smtpd *sd = smtpd_get(svc);

	if (sd != NULL)
		sessions_stop(sd);
}

static void smtpd_deinit(struct svc *svc)
{
	struct smtpd *sd = smtpd_get(svc);

	if (sd == NULL)
		return;
	free(sd->hostname);
	free(sd->postmaster);
	sd->postmaster = NULL;
	free(sd->service);
	free(sd->queue_tmp);
	free(sd->queue_incoming);
	netlist_free(&sd->mynetworks);
	sd->hostname = sd->service = NULL;
	sd->queue_tmp = sd->queue_incoming = NULL;
}

static const struct svc_spec smtpd_spec = {
	.name = "smtpd",
	.init = smtpd_init,
	.on_accept = smtpd_accept,
	.on_reload = smtpd_reload,
	.on_stop = smtpd_stop,
	.on_drained = smtpd_drained,
	.deinit = smtpd_deinit,
};

int main(int argc, char **argv)
{
	return svc_main(argc, argv, &smtpd_spec);
}
