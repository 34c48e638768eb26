/*
 * tern-proxyd: the IMAP, POP3 and HTTP proxy in front of the mailbox servers
 * (proxyd.h says what it does).
 *
 * A thin main on the service skeleton: init decides the protocol and the
 * TLS role of the service, opens the tern-authd client, reads the proxy_*
 * settings, the proxy credential and, from this instance's services.conf,
 * where the local mailbox server's backend listener is.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "compat.h"
#include "authclient.h"
#include "cfg.h"
#include "conn.h"
#include "log.h"
#include "memcache.h"
#include "paths.h"
#include "proxyauth.h"
#include "proxyd.h"
#include "services.h"
#include "str.h"
#include "svc.h"
#include "tls.h"
#include "xalloc.h"

static struct proxyd proxyd_state;

struct proxyd *proxyd_get(struct svc *svc)
{
	return svc_ctx(svc);
}

static void servers_free(struct proxyd *d)
{
	for (size_t i = 0; i < d->nservers; i++)
		free(d->servers[i]);
	free(d->servers);
	d->servers = NULL;
	d->nservers = 0;
}

unsigned proxyd_backend_port(const struct proxyd *d, unsigned port_base)
{
	if (d->proto == PROXY_HTTP)
		return tern_port(port_base, 8080);
	if (d->backend_tls != NULL)
		return tern_port(port_base,
				 d->proto == PROXY_IMAP ? 7993 : 7995);
	return tern_port(port_base, d->proto == PROXY_IMAP ? 7143 : 7110);
}

/* The client context for TLS to the mailbox servers (or none). */
int proxyd_client_start(struct proxyd *d, struct conn *client,
			struct svc_session *ss, const char *id,
			const char *peer, struct proxy_count *pc,
			authclient_count_cb *cb, void *ctx)
{
	const char *error = "no certificate loaded";

	if (d->implicit_tls) {
		/* No certificate since a reload: nothing to speak. */
		if (d->tls == NULL ||
		    conn_start_tls(client, d->tls, NULL, &error) < 0) {
			log_warn(id, "TLS: %s", error);
			conn_abort(client, "TLS failed");
			return -1;
		}
	}
	if (d->auth == NULL || strcmp(peer, "unix") == 0 ||
	    strcmp(peer, "unknown") == 0)
		return 1;
	pc->counted = true;
	if (d->client_max > 0 && authclient_connected(d->auth)) {
		pc->counting = true;
		ss->holds++;
		authclient_connect_notify(d->auth, d->count_service, peer, cb,
					  ctx);
		return 0;
	}
	authclient_connect_notify(d->auth, d->count_service, peer, NULL,
				  NULL);
	return 1;
}

void proxyd_client_end(struct proxyd *d, const char *peer,
		       struct proxy_count *pc)
{
	if (pc->counted && d->auth != NULL)
		authclient_disconnect_notify(d->auth, d->count_service, peer);
	pc->counted = false;
}

static void proxyd_backend_tls(struct proxyd *d)
{
	const struct cfg *cfg = svc_config(d->svc);
	const char *ca = cfg_str(cfg, OPT_PROXY_BACKEND_CA_FILE);
	const char *error;

	tls_ctx_free(&d->backend_tls);	/* open connections keep theirs */
	d->backend_verify = ca[0] != '\0';
	if (!cfg_bool(cfg, OPT_PROXY_BACKEND_TLS))
		return;
	d->backend_tls = tls_ctx_client_new(d->backend_verify ? ca : NULL,
					    d->backend_verify, NULL, &error);
	if (d->backend_tls == NULL)
		log_warn(NULL, "proxy_backend_tls: %s: mailbox servers are "
			 "reached without TLS", error);
}

/* Where this machine's mailbox server listens: the first address of the
 * backend service in services.conf ("imap-backend", "pop3-backend", or
 * -o backend=NAME), else the standard backend port on 127.0.0.1. */
static void proxyd_local_backend(struct proxyd *d)
{
	const char *name = svc_override(d->svc, "backend");
	char *path = path_join(svc_root(d->svc), "conf/services.conf");
	struct str *err = str_new(256, 4096);
	struct services *table = NULL;
	const struct service *sv;

	if (name == NULL && d->proto == PROXY_HTTP)
		name = "http-backend";
	if (name == NULL && d->backend_tls != NULL)
		name = d->proto == PROXY_IMAP ? "imaps-backend" :
						"pop3s-backend";
	if (name == NULL)
		name = d->proto == PROXY_IMAP ? "imap-backend" :
						"pop3-backend";
	free(d->local_host);
	d->local_host = xstrdup("127.0.0.1");
	d->local_port = proxyd_backend_port(d, 0);
	if (services_load(svc_root(d->svc), path, &table, err) < 0) {
		log_warn(NULL, "%s", str_c(err));
	} else if ((sv = services_find(table, name)) == NULL ||
		   sv->type != SERVICE_INET || sv->nlisten == 0) {
		log_warn(NULL, "no inet service %s in %s: the local mailbox "
			 "server is taken to be at 127.0.0.1:%u", name, path,
			 d->local_port);
	} else {
		const struct service_addr *a = &sv->listen[0];

		if (a->family != AF_UNSPEC) {
			free(d->local_host);
			d->local_host = xstrdup(a->host);
		}
		d->local_port = a->port;
	}
	services_free(&table);
	str_free(&err);
	free(path);
}

/* The route cache client, made again from the settings. */
static void proxyd_route_cache(struct proxyd *d)
{
	const struct cfg *cfg = svc_config(d->svc);
	struct memcache_settings set = { 0 };
	const char *error;

	memcache_free(&d->mc);
	set.servers = cfg_list(cfg, OPT_PROXY_MEMCACHED_SERVERS,
			       &set.nservers);
	set.timeout_ms = cfg_duration(cfg, OPT_PROXY_MEMCACHED_TIMEOUT);
	d->route_ttl_s = (unsigned)(cfg_duration(cfg,
						 OPT_PROXY_ROUTE_CACHE_TTL) /
				    CFG_SECOND);
	if (set.nservers == 0)
		return;
	d->mc = memcache_new(svc_loop(d->svc), &set, &error);
	if (d->mc == NULL)
		log_warn(NULL, "proxy_memcached_servers: %s: no route cache",
			 error);
}

/* proxy_http_upstream: "HOST:PORT" or "[V6]:PORT", or none. */
static void proxyd_http_upstream(struct proxyd *d)
{
	const char *v = cfg_str(svc_config(d->svc), OPT_PROXY_HTTP_UPSTREAM);
	struct str *host = str_new(64, 1024);
	const char *colon;
	unsigned long port = 0;
	char *end = NULL;

	free(d->http_upstream_host);
	d->http_upstream_host = NULL;
	if (v[0] != '\0') {
		colon = strrchr(v, ':');
		if (colon != NULL)
			port = strtoul(colon + 1, &end, 10);
		if (colon == NULL || colon == v || *end != '\0' || port == 0 ||
		    port > 65535 ||
		    (v[0] == '[' && (colon[-1] != ']' || colon - v < 3)) ||
		    (v[0] != '[' && memchr(v, ':', (size_t)(colon - v)))) {
			log_warn(NULL, "proxy_http_upstream: ignoring '%s': "
				 "not HOST:PORT", v);
		} else {
			if (v[0] == '[')
				(void)!str_append(host, v + 1,
						  (size_t)(colon - v - 2));
			else
				(void)!str_append(host, v,
						  (size_t)(colon - v));
			d->http_upstream_host = xstrdup(str_c(host));
			d->http_upstream_port = (unsigned)port;
		}
	}
	str_free(&host);
}

static void proxyd_settings(struct proxyd *d)
{
	const struct cfg *cfg = svc_config(d->svc);
	const char *const *list;
	size_t n = 0;

	if (d->proto == PROXY_HTTP) {
		d->plaintext = SVC_PLAINTEXT_YES;
		d->connect_ms = cfg_duration(cfg, OPT_PROXY_CONNECT_TIMEOUT);
		d->retry_ms = cfg_duration(cfg, OPT_PROXY_BACKEND_RETRY);
		d->client_max = (unsigned)cfg_int(
			cfg, OPT_PROXY_CLIENT_CONNECTION_LIMIT);
		d->login_ms = d->idle_ms =
			cfg_duration(cfg, OPT_PROXY_HTTP_IDLE_TIMEOUT);
		d->http_fields_max = (size_t)cfg_int(
			cfg, OPT_PROXY_HTTP_HEADER_FIELDS_MAX);
		proxyd_http_upstream(d);
		goto common;
	}
	d->plaintext = svc_plaintext_setting(
		d->svc, d->proto == PROXY_IMAP ? "imap_plaintext_auth" :
						 "pop3_plaintext_auth",
		cfg_enum(cfg, d->proto == PROXY_IMAP ?
				      OPT_IMAP_PLAINTEXT_AUTH :
				      OPT_POP3_PLAINTEXT_AUTH));
	d->connect_ms = cfg_duration(cfg, OPT_PROXY_CONNECT_TIMEOUT);
	d->retry_ms = cfg_duration(cfg, OPT_PROXY_BACKEND_RETRY);
	d->user_max = (unsigned)cfg_int(cfg, OPT_PROXY_USER_CONNECTIONS_MAX);
	d->client_max = (unsigned)cfg_int(cfg,
					  OPT_PROXY_CLIENT_CONNECTION_LIMIT);
	proxyd_route_cache(d);
	if (d->proto == PROXY_IMAP) {
		d->login_ms = cfg_duration(cfg, OPT_IMAP_LOGIN_TIMEOUT);
		/* The backend enforces its own idle time; the relay only
		 * cuts connections that stay silent well beyond it. */
		d->idle_ms = cfg_duration(cfg, OPT_IMAP_IDLE_TIMEOUT) +
			     5 * CFG_MINUTE;
		d->line_max = (size_t)cfg_size(cfg, OPT_IMAP_LINE_LIMIT);
	} else {
		d->login_ms = cfg_duration(cfg, OPT_POP3_IDLE_TIMEOUT);
		d->idle_ms = cfg_duration(cfg, OPT_POP3_IDLE_TIMEOUT) +
			     5 * CFG_MINUTE;
		d->line_max = (size_t)cfg_size(cfg, OPT_POP3_LINE_LIMIT);
	}
common:
	free(d->hostname);
	d->hostname = xstrdup(cfg_str(cfg, OPT_MYHOSTNAME));
	proxyauth_free(&d->pa);
	d->pa = proxyauth_load(cfg);
	proxyd_backend_tls(d);
	proxyd_local_backend(d);
	servers_free(d);
	list = cfg_list(cfg, OPT_PROXY_SERVERS, &n);
	d->servers = xcalloc(n + 1, sizeof(*d->servers));
	for (size_t i = 0; i < n; i++) {
		if (strchr(list[i], '=') == NULL) {
			log_warn(NULL, "proxy_servers: ignoring '%s': not "
				 "NAME=ADDRESS[:PORT_BASE]", list[i]);
			continue;
		}
		d->servers[d->nservers++] = xstrdup(list[i]);
	}
}

/* The protocol from the service name or -o protocol=. */
static int proxyd_protocol(struct proxyd *d, const char **error_r)
{
	const char *name = svc_name(d->svc);
	const char *o = svc_override(d->svc, "protocol");

	if (o != NULL) {
		if (strcmp(o, "imap") == 0)
			d->proto = PROXY_IMAP;
		else if (strcmp(o, "pop3") == 0)
			d->proto = PROXY_POP3;
		else if (strcmp(o, "http") == 0)
			d->proto = PROXY_HTTP;
		else
			goto bad;
		return 0;
	}
	if (strncmp(name, "imap", 4) == 0) {
		d->proto = PROXY_IMAP;
		return 0;
	}
	if (strncmp(name, "pop3", 4) == 0) {
		d->proto = PROXY_POP3;
		return 0;
	}
	if (strncmp(name, "http", 4) == 0) {
		d->proto = PROXY_HTTP;
		return 0;
	}
bad:
	*error_r = "the service needs -o protocol=imap, pop3 or http";
	return -1;
}

static int proxyd_init(struct svc *svc, const char **error_r)
{
	const struct cfg *cfg = svc_config(svc);
	struct proxyd *d = &proxyd_state;
	struct authclient_settings aset = {
		.timeout_ms = cfg_duration(cfg, OPT_AUTHD_TIMEOUT),
		.max_frame = (size_t)cfg_size(cfg, OPT_IPC_FRAME_MAX),
	};
	char *path;

	d->svc = svc;
	svc_set_ctx(svc, d);
	if (proxyd_protocol(d, error_r) < 0 ||
	    svc_tls_mode(svc, d->proto == PROXY_IMAP ? "imaps" :
			 d->proto == PROXY_POP3 ? "pop3s" : "https",
			 &d->implicit_tls, error_r) < 0)
		return -1;
	d->tls = svc_tls_server(svc);
	{
		struct str *name = str_new(64, 64);

		/* Apart from the mailbox servers' own counts. */
		(void)!str_printf(name, "proxy-%.26s", svc_name(svc));
		d->count_service = xstrdup(str_c(name));
		str_free(&name);
	}
	proxyd_settings(d);
	path = path_join(svc_root(svc), AUTHCLIENT_SOCKET);
	d->auth = authclient_new(svc_loop(svc), path, &aset);
	free(path);
	log_info(NULL, "%s proxy ready: service %s, %s",
		 d->proto == PROXY_IMAP ? "imap" :
		 d->proto == PROXY_POP3 ? "pop3" : "http", svc_name(svc),
		 d->implicit_tls ? "implicit TLS" :
		 d->proto == PROXY_HTTP ? "plain HTTP" :
		 d->tls != NULL ? "STARTTLS offered" :
				  "no TLS (no certificate)");
	return 0;
}

static void proxyd_accept(struct svc *svc, uv_stream_t *client, int listener)
{
	struct proxyd *d = proxyd_get(svc);

	if (d->proto == PROXY_HTTP)
		hsession_accept(d, client);
	else
		psession_accept(d, client);
}

static void proxyd_reload(struct svc *svc)
{
	struct proxyd *d = proxyd_get(svc);

	if (d == NULL)
		return;
	proxyd_settings(d);
	/* The skeleton loaded the certificate again: the old context is
	 * gone (sessions keep their own reference). */
	d->tls = svc_tls_server(svc);
}

static void proxyd_drained(struct svc *svc)
{
	struct proxyd *d = proxyd_get(svc);

	if (d != NULL) {
		authclient_free(&d->auth);
		memcache_free(&d->mc);
	}
}

static void proxyd_stop(struct svc *svc)
{
	struct proxyd *d = proxyd_get(svc);

	if (d != NULL && d->proto == PROXY_HTTP)
		hsessions_stop(d);
	else if (d != NULL)
		psessions_stop(d);
}

static void proxyd_deinit(struct svc *svc)
{
	struct proxyd *d = proxyd_get(svc);

	if (d == NULL)
		return;
	servers_free(d);
	proxyauth_free(&d->pa);
	memcache_free(&d->mc);
	tls_ctx_free(&d->backend_tls);
	free(d->hostname);
	free(d->local_host);
	free(d->count_service);
	free(d->http_upstream_host);
	d->hostname = d->local_host = d->count_service = NULL;
	d->http_upstream_host = NULL;
	while (d->down != NULL) {
		struct backend_down *b = d->down;

		d->down = b->next;
		free(b->key);
		free(b);
	}
}

static const struct svc_spec proxyd_spec = {
	.name = "proxyd",
	.init = proxyd_init,
	.on_accept = proxyd_accept,
	.on_reload = proxyd_reload,
	.on_stop = proxyd_stop,
	.on_drained = proxyd_drained,
	.deinit = proxyd_deinit,
};

int main(int argc, char **argv)
{
	return svc_main(argc, argv, &proxyd_spec);
}
