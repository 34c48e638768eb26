/*
 * tern-lmtpd: the LMTP server (RFC 2033) that delivers into tern-stored.
 *
 * A thin main on the service skeleton: init (after the privilege drop)
 * opens the clients of tern-authd (recipients) and tern-stored
 * (deliveries) and reads the lmtp_* settings; sessions (session.c) speak
 * LMTP on the "lmtp" and "lmtp-local" listeners.  On stop, idle sessions
 * get 421; busy ones finish their transaction first; then the clients are
 * closed and the loop ends.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "compat.h"
#include "authclient.h"
#include "cfg.h"
#include "lmtpd.h"
#include "log.h"
#include "netlist.h"
#include "paths.h"
#include "session.h"
#include "storeasync.h"
#include "str.h"
#include "svc.h"
#include "xalloc.h"

static struct lmtpd lmtpd_state;

struct lmtpd *lmtpd_get(struct svc *svc)
{
	return svc_ctx(svc);
}

bool lmtpd_host_is_local(const struct lmtpd *ld, const char *host)
{
	return host[0] == '\0' || strcasecmp(host, "localhost") == 0 ||
	       strcasecmp(host, ld->hostname) == 0;
}

bool lmtpd_client_trusted(const struct lmtpd *ld, const char *peer)
{
	return strcmp(peer, "unix") == 0 || netlist_match(ld->trusted, peer);
}

static void warn_entry(const char *entry)
{
	log_warn(NULL, "lmtp_trusted_networks: ignoring '%s': not an "
		 "address or network", entry);
}

/* The settings from tern.conf (again on reload). */
static void lmtpd_settings(struct lmtpd *ld)
{
	const struct cfg *cfg = svc_config(ld->svc);
	const char *const *nets;
	size_t n = 0;

	free(ld->hostname);
	free(ld->spool_dir);
	ld->hostname = xstrdup(cfg_str(cfg, OPT_MYHOSTNAME));
	ld->spool_dir = path_join(cfg_str(cfg, OPT_STORE_DIR), "tmp");
	ld->size_limit = cfg_size(cfg, OPT_LMTP_MESSAGE_SIZE_LIMIT);
	ld->rcpt_limit = (unsigned)cfg_int(cfg, OPT_LMTP_RECIPIENT_LIMIT);
	ld->line_max = (size_t)cfg_size(cfg, OPT_LMTP_LINE_LIMIT);
	ld->idle_ms = cfg_duration(cfg, OPT_LMTP_IDLE_TIMEOUT);
	ld->quota_permanent = cfg_bool(cfg, OPT_LMTP_QUOTA_PERMANENT);
	ld->plus_folder = cfg_bool(cfg, OPT_LMTP_PLUS_FOLDER);
	netlist_free(&ld->trusted);
	nets = cfg_list(cfg, OPT_LMTP_TRUSTED_NETWORKS, &n);
	ld->trusted = netlist_new(nets, n, warn_entry);
}

static int lmtpd_init(struct svc *svc, const char **error_r)
{
	const struct cfg *cfg = svc_config(svc);
	struct lmtpd *ld = &lmtpd_state;
	struct authclient_settings aset = {
		.timeout_ms = cfg_duration(cfg, OPT_AUTHD_TIMEOUT),
		.max_frame = (size_t)cfg_size(cfg, OPT_IPC_FRAME_MAX),
	};
	struct storeasync_settings sset = {
		.timeout_ms = cfg_duration(cfg, OPT_LMTP_STORE_TIMEOUT),
		.max_frame = (size_t)cfg_size(cfg, OPT_IPC_FRAME_MAX),
	};
	char *path;

	ld->svc = svc;
	svc_set_ctx(svc, ld);
	lmtpd_settings(ld);
	path = path_join(svc_root(svc), AUTHCLIENT_SOCKET);
	ld->auth = authclient_new(svc_loop(svc), path, &aset);
	free(path);
	path = path_join(svc_root(svc), STOREASYNC_SOCKET);
	ld->store = storeasync_new(svc_loop(svc), path, &sset);
	free(path);
	log_info(NULL, "lmtp ready: host %s, spool %s, size limit %llu",
		 ld->hostname, ld->spool_dir,
		 (unsigned long long)ld->size_limit);
	return 0;
}

static void lmtpd_accept(struct svc *svc, uv_stream_t *client, int listener)
{
	session_accept(lmtpd_get(svc), client);
}

static void lmtpd_reload(struct svc *svc)
{
	struct lmtpd *ld = lmtpd_get(svc);

	if (ld != NULL)
		lmtpd_settings(ld);
}

static void lmtpd_close_clients(struct lmtpd *ld)
{
	authclient_free(&ld->auth);
	storeasync_free(&ld->store);
}

/* svc: stopping and no session left: close the peers' clients. */
static void lmtpd_drained(struct svc *svc)
{
	struct lmtpd *ld = lmtpd_get(svc);

	if (ld != NULL)
		lmtpd_close_clients(ld);
}

static void lmtpd_stop(struct svc *svc)
{
	struct lmtpd *ld = lmtpd_get(svc);

	if (ld == NULL)
		return;
	sessions_stop(ld);
}

static void lmtpd_deinit(struct svc *svc)
{
	struct lmtpd *ld = lmtpd_get(svc);

	/* The clients' handles may be closed already (drain deadline):
	 * only the plain memory goes. */
	if (ld == NULL)
		return;
	free(ld->hostname);
	free(ld->spool_dir);
	ld->hostname = ld->spool_dir = NULL;
	netlist_free(&ld->trusted);
}

static const struct svc_spec lmtpd_spec = {
	.name = "lmtpd",
	.init = lmtpd_init,
	.on_accept = lmtpd_accept,
	.on_reload = lmtpd_reload,
	.on_stop = lmtpd_stop,
	.on_drained = lmtpd_drained,
	.deinit = lmtpd_deinit,
};

int main(int argc, char **argv)
{
	return svc_main(argc, argv, &lmtpd_spec);
}
