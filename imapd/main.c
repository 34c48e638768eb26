/*
 * tern-imapd: the IMAP server on the mailboxes kept by tern-stored.
 *
 * A thin main on the service skeleton: init (after the privilege drop)
 * decides the TLS role of the service, opens the clients of tern-authd
 * (logins, shared failure counters) and tern-stored (folders, messages,
 * change notifications) and reads the imap_* settings; sessions
 * (session.c) speak IMAP.  On stop, sessions between commands get
 * "* BYE" and close; busy ones finish their command first.
 */
#include "config.h"

#include <stdlib.h>
#include <strings.h>

#include "compat.h"
#include "authclient.h"
#include "cfg.h"
#include "hdrcache.h"
#include "imapd.h"
#include "log.h"
#include "mbox.h"
#include "paths.h"
#include "proxyauth.h"
#include "session.h"
#include "storeasync.h"
#include "svc.h"
#include "xalloc.h"

static struct imapd imapd_state;

struct imapd *imapd_get(struct svc *svc)
{
	return svc_ctx(svc);
}

bool imapd_host_is_local(const struct imapd *d, const char *host)
{
	return host[0] == '\0' || strcasecmp(host, "localhost") == 0 ||
	       strcasecmp(host, d->hostname) == 0;
}

/* The settings from tern.conf (again on reload), then the service's -o
 * overrides. */
static void imapd_settings(struct imapd *d)
{
	const struct cfg *cfg = svc_config(d->svc);

	free(d->hostname);
	d->hostname = xstrdup(cfg_str(cfg, OPT_MYHOSTNAME));
	d->plaintext = svc_plaintext_setting(d->svc, "imap_plaintext_auth",
					     cfg_enum(cfg,
						      OPT_IMAP_PLAINTEXT_AUTH));
	d->line_max = (size_t)cfg_size(cfg, OPT_IMAP_LINE_LIMIT);
	d->append_max = cfg_size(cfg, OPT_IMAP_APPEND_LIMIT);
	d->literal_minus = cfg_enum(cfg, OPT_IMAP_LITERAL) == 1;
	d->login_ms = cfg_duration(cfg, OPT_IMAP_LOGIN_TIMEOUT);
	d->idle_ms = cfg_duration(cfg, OPT_IMAP_IDLE_TIMEOUT);
	d->views_max = (size_t)cfg_size(cfg, OPT_IMAP_VIEW_CACHE);
	mime_settings_from_cfg(cfg, &d->mime);
	proxyauth_free(&d->proxy);
	d->proxy = proxyauth_load(cfg);
}

static int imapd_init(struct svc *svc, const char **error_r)
{
	const struct cfg *cfg = svc_config(svc);
	struct imapd *d = &imapd_state;
	struct authclient_settings aset = {
		.timeout_ms = cfg_duration(cfg, OPT_AUTHD_TIMEOUT),
		.max_frame = (size_t)cfg_size(cfg, OPT_IPC_FRAME_MAX),
	};
	struct storeasync_settings sset = {
		.timeout_ms = cfg_duration(cfg, OPT_IMAP_STORE_TIMEOUT),
		.max_frame = (size_t)cfg_size(cfg, OPT_IPC_FRAME_MAX),
	};
	char *path;

	d->svc = svc;
	svc_set_ctx(svc, d);
	imapd_settings(d);
	if (svc_tls_mode(svc, "imaps", &d->implicit_tls, error_r) < 0)
		return -1;
	d->tls = svc_tls_server(svc);
	d->store_dir = xstrdup(cfg_str(cfg, OPT_STORE_DIR));
	path = path_join(svc_root(svc), AUTHCLIENT_SOCKET);
	d->auth = authclient_new(svc_loop(svc), path, &aset);
	free(path);
	path = path_join(svc_root(svc), STOREASYNC_SOCKET);
	d->store = storeasync_new(svc_loop(svc), path, &sset);
	free(path);
	mbox_hub_init(d);
	log_info(NULL, "imap ready: service %s, %s, plaintext login %s",
		 svc_name(svc), d->implicit_tls ? "implicit TLS" :
		 d->tls != NULL ? "STARTTLS offered" :
				  "no TLS (no certificate)",
		 d->plaintext == SVC_PLAINTEXT_YES ? "allowed" :
		 d->plaintext == SVC_PLAINTEXT_LOOPBACK ? "from loopback" :
		 "refused");
	return 0;
}

static void imapd_accept(struct svc *svc, uv_stream_t *client, int listener)
{
	session_accept(imapd_get(svc), client);
}

static void imapd_reload(struct svc *svc)
{
	struct imapd *d = imapd_get(svc);

	if (d == NULL)
		return;
	imapd_settings(d);
	mbox_views_trim(d);
	/* The skeleton loaded the certificate again: the old context is
	 * gone (sessions keep their own reference). */
	d->tls = svc_tls_server(svc);
}

/* svc: stopping and no session left: close the peers' clients. */
static void imapd_drained(struct svc *svc)
{
	struct imapd *d = imapd_get(svc);

	if (d == NULL)
		return;
	mbox_views_free(d);
	authclient_free(&d->auth);
	storeasync_free(&d->store);
}

static void imapd_stop(struct svc *svc)
{
	struct imapd *d = imapd_get(svc);

	if (d != NULL)
		sessions_stop(d);
}

static void imapd_deinit(struct svc *svc)
{
	struct imapd *d = imapd_get(svc);

	if (d == NULL)
		return;
	free(d->hostname);
	free(d->store_dir);
	d->hostname = d->store_dir = NULL;
	proxyauth_free(&d->proxy);
	hdrcache_clear();
}

static const struct svc_spec imapd_spec = {
	.name = "imapd",
	.init = imapd_init,
	.on_accept = imapd_accept,
	.on_reload = imapd_reload,
	.on_stop = imapd_stop,
	.on_drained = imapd_drained,
	.deinit = imapd_deinit,
};

int main(int argc, char **argv)
{
	return svc_main(argc, argv, &imapd_spec);
}
