/*
 * tern-qmgr: the queue manager of Tern's MTA.
 *
 * A thin main on the service skeleton (a "proc" service: no listener).
 * init (after the privilege drop) reads the qmgr_* settings, opens the
 * client of tern-authd, the DNS resolver and the destination of the local
 * tern-lmtpd (run/lmtp.sock; the relay host's and those of remote domains
 * are made when first needed), and starts watching the queue (scan.c).  A
 * 1 s tick starts deferred messages whose time came, closes idle
 * connections, forgets unused remote domains and runs the periodic
 * rescan.  A reload that changes dns_resolvers, dns_timeout or
 * dns_cache_ttl_max starts a new resolver with an empty answer cache
 * (lookups under way end as temporary failures).  On stop no new message
 * starts; those being delivered finish (or are cut at the drain deadline and found in active/
 * at the next start).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "compat.h"
#include "authclient.h"
#include "cfg.h"
#include "dns.h"
#include "log.h"
#include "qmgr.h"
#include "services.h"
#include "str.h"
#include "svc.h"
#include "tls.h"
#include "xalloc.h"

/* A string that reached its maximum is cut there: fine here. */
#define STR_TRY(x) do { if ((x) < 0) { /* cut */ } } while (0)

static struct qmgr qmgr_state;

struct qmgr *qmgr_get(void)
{
	return &qmgr_state;
}

const char *qmgr_folder_name(enum qfolder f)
{
	static const char *const names[] = { "incoming", "active", "deferred",
					     "hold", "corrupt", "tmp" };

	return names[f];
}

char *qmgr_path(const struct qmgr *q, enum qfolder f, const char *name)
{
	struct str *p = str_new(256, 8192);
	char *r;

	if (str_printf(p, "%s/queue/%s%s%s", q->root, qmgr_folder_name(f),
		       name != NULL ? "/" : "", name != NULL ? name : "") < 0)
		str_clear(p);
	r = xstrdup(str_c(p));
	str_free(&p);
	return r;
}

int64_t qmgr_now(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec;
}

double qmgr_now_precise(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* relayhost: "host:port", "[host]:port" or "host" (port 25). */
static void qmgr_relay_setting(struct qmgr *q, const char *v)
{
	struct qmgr_settings *s = &q->set;
	struct str *host = str_new(64, 1024);
	const char *port = "25", *colon;
	char *old_host = s->relay_host, *old_port = s->relay_port;

	if (v[0] == '[') {
		const char *close = strchr(v, ']');

		if (close != NULL) {
			STR_TRY(str_append(host, v + 1,
					   (size_t)(close - v - 1)));
			if (close[1] == ':')
				port = close + 2;
		}
	} else if ((colon = strrchr(v, ':')) != NULL) {
		STR_TRY(str_append(host, v, (size_t)(colon - v)));
		port = colon + 1;
	} else {
		STR_TRY(str_append_c(host, v));
	}
	s->relay_host = str_len(host) > 0 ? xstrdup(str_c(host)) : NULL;
	s->relay_port = s->relay_host != NULL ? xstrdup(port) : NULL;
	if (v[0] != '\0' && s->relay_host == NULL)
		log_warn(NULL, "relayhost '%s' not understood: ignored", v);
	/* Another relay host: the old destination ends when idle. */
	if ((old_host == NULL) != (s->relay_host == NULL) ||
	    (old_host != NULL && (strcmp(old_host, s->relay_host) != 0 ||
				  strcmp(old_port, s->relay_port) != 0)))
		dest_free(&q->relay);
	free(old_host);
	free(old_port);
	str_free(&host);
}

static void relay_auth_clear(struct qmgr_settings *s)
{
	free(s->relay_user);
	if (s->relay_password != NULL) {
		explicit_bzero(s->relay_password, strlen(s->relay_password));
		free(s->relay_password);
	}
	s->relay_user = s->relay_password = NULL;
}

/* relayhost_auth_file: "user password" on its first line. */
static void qmgr_relay_auth_setting(struct qmgr *q, const char *path)
{
	struct qmgr_settings *s = &q->set;
	struct qmgr_settings old = { .relay_user = s->relay_user,
				     .relay_password = s->relay_password };
	struct str *text = str_new(256, 4096);
	const char *error, *line, *space;
	size_t len;

	s->relay_user = s->relay_password = NULL;
	if (path[0] == '\0')
		goto done;
	if (cfg_read_file(path, 4095, text, &error) < 0) {
		log_warn(NULL, "relayhost_auth_file %s: %s: no AUTH", path,
			 error);
	} else {
		line = str_c(text);
		len = strcspn(line, "\r\n");
		space = memchr(line, ' ', len);
		if (space == NULL || space == line || space + 1 == line + len)
			log_warn(NULL, "relayhost_auth_file %s: not \"user "
				 "password\": no AUTH", path);
		else {
			s->relay_user = xstrndup(line, (size_t)(space - line));
			s->relay_password = xstrndup(space + 1, (size_t)
						     (line + len - space - 1));
		}
		explicit_bzero(str_data(text), str_len(text));
	}
done:
	str_free(&text);
	/* Other credentials: the relay's connections end when idle. */
	if ((old.relay_user == NULL) != (s->relay_user == NULL) ||
	    (old.relay_user != NULL &&
	     (strcmp(old.relay_user, s->relay_user) != 0 ||
	      strcmp(old.relay_password, s->relay_password) != 0)))
		dest_free(&q->relay);
	relay_auth_clear(&old);
}

/* The client TLS context for STARTTLS, or NULL (none wanted or it
 * cannot be made). */
static struct tls_ctx *qmgr_tls(struct qmgr *q)
{
	const char *error;

	if (q->set.smtp_tls == 0)
		return NULL;
	if (q->tls == NULL) {
		q->tls = tls_ctx_client_new(NULL, false, NULL, &error);
		if (q->tls == NULL)
			log_warn(NULL, "TLS client context: %s", error);
	}
	return q->tls;
}

struct dest *qmgr_relay(struct qmgr *q)
{
	if (q->set.relay_host == NULL)
		return NULL;
	if (q->relay == NULL)
		q->relay = dest_new_smtp(q, q->set.relay_host,
					 q->set.relay_port, qmgr_tls(q),
					 q->set.smtp_tls == 2);
	return q->relay;
}

struct dest *qmgr_mx(struct qmgr *q, const char *domain)
{
	for (size_t i = 0; i < q->nmx; i++) {
		if (strcasecmp(dest_name(q->mx[i]), domain) == 0)
			return q->mx[i];
	}
	if (q->nmx == q->mx_cap) {
		q->mx_cap = q->mx_cap ? q->mx_cap * 2 : 16;
		q->mx = xrealloc(q->mx, q->mx_cap * sizeof(*q->mx));
	}
	q->mx[q->nmx] = dest_new_mx(q, domain, qmgr_tls(q),
				    q->set.smtp_tls == 2);
	return q->mx[q->nmx++];
}

/* Mailbox servers' destinations are named "lmtp:MAILHOST". */
#define MAILBOX_PREFIX "lmtp:"

struct dest *qmgr_mailbox(struct qmgr *q, const char *mailhost)
{
	struct str *name = str_new(64, 1024), *host = str_new(64, 1024);
	char port[8];
	unsigned base = 0;
	struct dest *d = NULL;

	STR_TRY(str_printf(name, MAILBOX_PREFIX "%s", mailhost));
	for (size_t i = 0; i < q->nmx && d == NULL; i++) {
		if (strcasecmp(dest_name(q->mx[i]), str_c(name)) == 0)
			d = q->mx[i];
	}
	if (d == NULL) {
		if (!tern_server_find(q->set.servers, q->set.nservers,
				      mailhost, host, &base))
			STR_TRY(str_append_c(host, mailhost));
		snprintf(port, sizeof(port), "%u", tern_port(base, 7025));
		if (q->nmx == q->mx_cap) {
			q->mx_cap = q->mx_cap ? q->mx_cap * 2 : 16;
			q->mx = xrealloc(q->mx, q->mx_cap * sizeof(*q->mx));
		}
		d = q->mx[q->nmx++] = dest_new_lmtp_tcp(q, str_c(name),
							str_c(host), port);
	}
	str_free(&name);
	str_free(&host);
	return d;
}

/* proxy_servers: the map of mailbox servers.  Their destinations are
 * made again from it (those in use end when idle). */
static void qmgr_servers_setting(struct qmgr *q, const struct cfg *cfg)
{
	size_t n = 0;
	const char *const *list = cfg_list(cfg, OPT_PROXY_SERVERS, &n);

	for (size_t i = 0; i < q->set.nservers; i++)
		free(q->set.servers[i]);
	free(q->set.servers);
	q->set.servers = xcalloc(n + 1, sizeof(*q->set.servers));
	q->set.nservers = 0;
	for (size_t i = 0; i < n; i++) {
		if (strchr(list[i], '=') != NULL)
			q->set.servers[q->set.nservers++] = xstrdup(list[i]);
	}
	for (size_t i = 0; i < q->nmx;) {
		if (strncmp(dest_name(q->mx[i]), MAILBOX_PREFIX,
			    strlen(MAILBOX_PREFIX)) == 0) {
			dest_free(&q->mx[i]);
			q->mx[i] = q->mx[--q->nmx];
		} else {
			i++;
		}
	}
}

static void mx_free_all(struct qmgr *q)
{
	for (size_t i = 0; i < q->nmx; i++)
		dest_free(&q->mx[i]);
	free(q->mx);
	q->mx = NULL;
	q->nmx = q->mx_cap = 0;
}

/* The resolver, made anew when its settings changed. */
static void qmgr_dns_setting(struct qmgr *q, const struct cfg *cfg)
{
	size_t n = 0;
	const char *const *list = cfg_list(cfg, OPT_DNS_RESOLVERS, &n);
	const char *text = cfg_str(cfg, OPT_DNS_RESOLVERS);
	uint64_t timeout = cfg_duration(cfg, OPT_DNS_TIMEOUT);
	uint64_t ttl_max = cfg_duration(cfg, OPT_DNS_CACHE_TTL_MAX);
	struct dns_settings ds = {
		.servers = list, .nservers = n,
		.timeout_ms = timeout, .tries = 2,
		.cache_ttl_max_ms = ttl_max,
	};
	const char *error;

	if (q->dns != NULL && q->set.dns_servers != NULL &&
	    strcmp(q->set.dns_servers, text) == 0 &&
	    q->set.dns_timeout_ms == timeout &&
	    q->set.dns_cache_ttl_max_ms == ttl_max)
		return;
	dns_resolver_free(&q->dns);
	free(q->set.dns_servers);
	q->set.dns_servers = xstrdup(text);
	q->set.dns_timeout_ms = timeout;
	q->set.dns_cache_ttl_max_ms = ttl_max;
	q->dns = dns_resolver_new(q->loop, &ds, &error);
	if (q->dns == NULL)
		log_error(NULL, "DNS resolver (dns_resolvers = %s): %s; mail "
			  "to other domains is deferred", text, error);
}

static void qmgr_settings(struct qmgr *q)
{
	const struct cfg *cfg = svc_config(q->svc);
	struct qmgr_settings *s = &q->set;
	const char *pm = cfg_str(cfg, OPT_QMGR_POSTMASTER);
	struct str *p = str_new(64, 2048);

	s->retry_min = (int64_t)(cfg_duration(cfg, OPT_QMGR_RETRY_MIN) / 1000);
	s->retry_max = (int64_t)(cfg_duration(cfg, OPT_QMGR_RETRY_MAX) / 1000);
	s->lifetime =
		(int64_t)(cfg_duration(cfg, OPT_QMGR_QUEUE_LIFETIME) / 1000);
	s->delay_warning =
		(int64_t)(cfg_duration(cfg, OPT_QMGR_DELAY_WARNING) / 1000);
	s->rescan_ms = cfg_duration(cfg, OPT_QMGR_RESCAN_INTERVAL);
	s->idle_ms = cfg_duration(cfg, OPT_QMGR_CONNECTION_IDLE);
	s->lmtp_timeout_ms = cfg_duration(cfg, OPT_QMGR_LMTP_TIMEOUT);
	s->smtp_timeout_ms = cfg_duration(cfg, OPT_QMGR_SMTP_TIMEOUT);
	s->connect_timeout_ms =
		cfg_duration(cfg, OPT_QMGR_SMTP_CONNECT_TIMEOUT);
	s->smtp_tls = (unsigned)cfg_enum(cfg, OPT_QMGR_SMTP_TLS);
	s->smtp_port = (unsigned)cfg_int(cfg, OPT_QMGR_SMTP_PORT);
	qmgr_relay_setting(q, cfg_str(cfg, OPT_RELAYHOST));
	qmgr_relay_auth_setting(q, cfg_str(cfg, OPT_RELAYHOST_AUTH_FILE));
	qmgr_servers_setting(q, cfg);
	qmgr_dns_setting(q, cfg);
	s->active_limit = (unsigned)cfg_int(cfg, OPT_QMGR_ACTIVE_LIMIT);
	s->active_bytes_limit = cfg_size(cfg, OPT_QMGR_ACTIVE_BYTES_LIMIT);
	s->dest_limit =
		(unsigned)cfg_int(cfg, OPT_QMGR_DESTINATION_CONCURRENCY);
	free(s->hostname);
	free(s->postmaster);
	s->hostname = xstrdup(cfg_str(cfg, OPT_MYHOSTNAME));
	if (pm[0] == '\0')
		STR_TRY(str_printf(p, "postmaster@%s", s->hostname));
	else
		STR_TRY(str_append_c(p, pm));
	s->postmaster = xstrdup(str_c(p));
	str_free(&p);
}

static void qmgr_tick(uv_timer_t *t)
{
	struct qmgr *q = t->data;

	if (q->stopping)
		return;
	dest_tick(q->lmtp);
	if (q->relay != NULL)
		dest_tick(q->relay);
	for (size_t i = 0; i < q->nmx;) {
		dest_tick(q->mx[i]);
		if (dest_unused(q->mx[i])) {
			dest_free(&q->mx[i]);
			q->mx[i] = q->mx[--q->nmx];
			continue;
		}
		i++;
	}
	scan_tick(q);
}

static int qmgr_init(struct svc *svc, const char **error_r)
{
	const struct cfg *cfg = svc_config(svc);
	struct qmgr *q = &qmgr_state;
	struct authclient_settings aset = {
		.timeout_ms = cfg_duration(cfg, OPT_AUTHD_TIMEOUT),
		.max_frame = (size_t)cfg_size(cfg, OPT_IPC_FRAME_MAX),
	};
	struct str *p = str_new(256, 8192);

	q->svc = svc;
	q->loop = svc_loop(svc);
	q->root = xstrdup(svc_root(svc));
	svc_set_ctx(svc, q);
	qmgr_settings(q);
	STR_TRY(str_printf(p, "%s/%s", q->root, AUTHCLIENT_SOCKET));
	q->auth = authclient_new(q->loop, str_c(p), &aset);
	str_clear(p);
	STR_TRY(str_printf(p, "%s/run/lmtp.sock", q->root));
	q->lmtp = dest_new(q, "lmtp-local", str_c(p));
	str_free(&p);
	if (scan_start(q, error_r) < 0)
		return -1;
	uv_timer_init(q->loop, &q->tick);
	q->tick.data = q;
	uv_timer_start(&q->tick, qmgr_tick, 1000, 1000);
	log_info(NULL, "qmgr ready: retry %llds..%llds, lifetime %llds, "
		 "%u messages and %llu bytes at once",
		 (long long)q->set.retry_min, (long long)q->set.retry_max,
		 (long long)q->set.lifetime, q->set.active_limit,
		 (unsigned long long)q->set.active_bytes_limit);
	return 0;
}

static void qmgr_reload(struct svc *svc)
{
	struct qmgr *q = svc_ctx(svc);

	if (q != NULL)
		qmgr_settings(q);
}

static void qmgr_stop(struct svc *svc)
{
	struct qmgr *q = svc_ctx(svc);

	if (q == NULL || q->stopping)
		return;
	q->stopping = true;
	uv_timer_stop(&q->tick);
	uv_close((uv_handle_t *)&q->tick, NULL);
	scan_stop(q);
}

static void qmgr_drained(struct svc *svc)
{
	struct qmgr *q = svc_ctx(svc);

	if (q == NULL)
		return;
	dest_free(&q->lmtp);
	dest_free(&q->relay);
	mx_free_all(q);
	dns_resolver_free(&q->dns);
	authclient_free(&q->auth);
}

static void qmgr_deinit(struct svc *svc)
{
	struct qmgr *q = svc_ctx(svc);

	if (q == NULL)
		return;
	free(q->set.hostname);
	free(q->set.postmaster);
	free(q->set.relay_host);
	relay_auth_clear(&q->set);
	for (size_t i = 0; i < q->set.nservers; i++)
		free(q->set.servers[i]);
	free(q->set.servers);
	q->set.servers = NULL;
	q->set.nservers = 0;
	free(q->set.relay_port);
	free(q->set.dns_servers);
	free(q->root);
	if (q->tls != NULL)
		tls_ctx_free(&q->tls);
	free(q->pending);
	free(q->deferred);
	q->set.hostname = q->set.postmaster = q->root = NULL;
}

static const struct svc_spec qmgr_spec = {
	.name = "qmgr",
	.init = qmgr_init,
	.on_reload = qmgr_reload,
	.on_stop = qmgr_stop,
	.on_drained = qmgr_drained,
	.deinit = qmgr_deinit,
};

int main(int argc, char **argv)
{
	return svc_main(argc, argv, &qmgr_spec);
}
