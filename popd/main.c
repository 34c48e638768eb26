/*
 * tern-popd: the POP3 server on the INBOX kept by tern-stored.
 *
 * A thin main on the service skeleton: init (after the privilege drop)
 * decides the TLS role of the service, creates the lock folder, opens the
 * clients of tern-authd (logins, shared failure counters) and tern-stored
 * (snapshots and expunges) and reads the pop3_* settings; sessions
 * (session.c) speak POP3.  On stop, sessions between commands get
 * "-ERR [SYS/TEMP]" and close (without UPDATE: RFC 1939 says a session
 * not ended by QUIT removes nothing); busy ones finish their command first.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>

#include "compat.h"
#include "authclient.h"
#include "cfg.h"
#include "log.h"
#include "mailbox.h"
#include "popd.h"
#include "proxyauth.h"
#include "retr.h"
#include "session.h"
#include "storeasync.h"
#include "str.h"
#include "svc.h"
#include "xalloc.h"

static struct popd popd_state;

struct popd *popd_get(struct svc *svc)
{
	return svc_ctx(svc);
}

bool popd_host_is_local(const struct popd *pd, const char *host)
{
	return host[0] == '\0' || strcasecmp(host, "localhost") == 0 ||
	       strcasecmp(host, pd->hostname) == 0;
}

static char *path_join(const char *a, const char *b)
{
	struct str *p = str_new(256, 8192);
	char *r;

	if (str_printf(p, "%s/%s", a, b) < 0)
		str_clear(p);
	r = xstrdup(str_c(p));
	str_free(&p);
	return r;
}

/* EXPIRE's value: "", "NEVER" or a number of days. */
static bool expire_valid(const char *text)
{
	size_t n = strlen(text);

	if (n == 0 || strcmp(text, "NEVER") == 0)
		return true;
	if (n > 9)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (text[i] < '0' || text[i] > '9')
			return false;
	}
	return true;
}

/* The settings from tern.conf (again on reload), then the service's -o
 * overrides. */
static void popd_settings(struct popd *pd)
{
	const struct cfg *cfg = svc_config(pd->svc);
	const char *expire = cfg_str(cfg, OPT_POP3_EXPIRE);

	free(pd->hostname);
	free(pd->expire);
	pd->hostname = xstrdup(cfg_str(cfg, OPT_MYHOSTNAME));
	pd->plaintext = svc_plaintext_setting(pd->svc, "pop3_plaintext_auth",
					      cfg_enum(cfg,
						       OPT_POP3_PLAINTEXT_AUTH));
	if (!expire_valid(expire)) {
		log_warn(NULL, "ignoring pop3_expire = %s: not a number of "
			 "days or NEVER", expire);
		expire = "";
	}
	pd->expire = xstrdup(expire);
	pd->line_max = (size_t)cfg_size(cfg, OPT_POP3_LINE_LIMIT);
	pd->idle_ms = cfg_duration(cfg, OPT_POP3_IDLE_TIMEOUT);
	pd->login_delay_ms = cfg_duration(cfg, OPT_POP3_LOGIN_DELAY);
	pd->messages_max = (unsigned)cfg_int(cfg, OPT_POP3_MESSAGES_MAX);
	proxyauth_free(&pd->proxy);
	pd->proxy = proxyauth_load(cfg);
	pd->snapshot_cache = (size_t)cfg_size(cfg, OPT_POP3_SNAPSHOT_CACHE);
}

static int popd_init(struct svc *svc, const char **error_r)
{
	const struct cfg *cfg = svc_config(svc);
	struct popd *pd = &popd_state;
	struct authclient_settings aset = {
		.timeout_ms = cfg_duration(cfg, OPT_AUTHD_TIMEOUT),
		.max_frame = (size_t)cfg_size(cfg, OPT_IPC_FRAME_MAX),
	};
	struct storeasync_settings sset = {
		.timeout_ms = cfg_duration(cfg, OPT_POP3_STORE_TIMEOUT),
		.max_frame = (size_t)cfg_size(cfg, OPT_IPC_FRAME_MAX),
	};
	const char *store_dir;
	char *path;

	pd->svc = svc;
	svc_set_ctx(svc, pd);
	popd_settings(pd);
	if (svc_tls_mode(svc, "pop3s", &pd->implicit_tls, error_r) < 0)
		return -1;
	pd->tls = svc_tls_server(svc);
	store_dir = cfg_str(cfg, OPT_STORE_DIR);
	path = store_dir[0] == '/' ? xstrdup(store_dir) :
				     path_join(svc_root(svc), store_dir);
	retr_set_store_dir(path);
	free(path);
	pd->lock_dir = path_join(svc_root(svc), POPD_LOCK_DIR);
	if (mkdir(pd->lock_dir, 0750) < 0 && errno != EEXIST) {
		log_error(NULL, "mkdir %s: %s", pd->lock_dir, strerror(errno));
		*error_r = "cannot create the POP3 lock folder";
		return -1;
	}
	path = path_join(svc_root(svc), AUTHCLIENT_SOCKET);
	pd->auth = authclient_new(svc_loop(svc), path, &aset);
	free(path);
	path = path_join(svc_root(svc), STOREASYNC_SOCKET);
	pd->store = storeasync_new(svc_loop(svc), path, &sset);
	free(path);
	log_info(NULL, "pop3 ready: service %s, %s, plaintext login %s",
		 svc_name(svc), pd->implicit_tls ? "implicit TLS" :
		 pd->tls != NULL ? "STLS offered" : "no TLS (no certificate)",
		 pd->plaintext == SVC_PLAINTEXT_YES ? "allowed" :
		 pd->plaintext == SVC_PLAINTEXT_LOOPBACK ? "from loopback" :
		 "refused");
	return 0;
}

static void popd_accept(struct svc *svc, uv_stream_t *client, int listener)
{
	session_accept(popd_get(svc), client);
}

static void popd_reload(struct svc *svc)
{
	struct popd *pd = popd_get(svc);

	if (pd == NULL)
		return;
	popd_settings(pd);
	/* The skeleton loaded the certificate again: the old context is
	 * gone (sessions keep their own reference). */
	pd->tls = svc_tls_server(svc);
}

static void popd_close_clients(struct popd *pd)
{
	authclient_free(&pd->auth);
	storeasync_free(&pd->store);
}

/* svc: stopping and no session left: close the peers' clients. */
static void popd_drained(struct svc *svc)
{
	struct popd *pd = popd_get(svc);

	if (pd != NULL)
		popd_close_clients(pd);
}

static void popd_stop(struct svc *svc)
{
	struct popd *pd = popd_get(svc);

	if (pd == NULL)
		return;
	sessions_stop(pd);
}

static void popd_deinit(struct svc *svc)
{
	struct popd *pd = popd_get(svc);

	if (pd == NULL)
		return;
	free(pd->hostname);
	free(pd->expire);
	free(pd->lock_dir);
	pd->hostname = pd->expire = pd->lock_dir = NULL;
	proxyauth_free(&pd->proxy);
	mailbox_cache_clear();
	retr_free_spare();
}

static const struct svc_spec popd_spec = {
	.name = "popd",
	.init = popd_init,
	.on_accept = popd_accept,
	.on_reload = popd_reload,
	.on_stop = popd_stop,
	.on_drained = popd_drained,
	.deinit = popd_deinit,
};

int main(int argc, char **argv)
{
	return svc_main(argc, argv, &popd_spec);
}
