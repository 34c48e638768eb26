/*
 * tern-authd: the directory service of a Tern instance.
 *
 * The only daemon that opens the directory (read-only; ternctl writes it).
 * It answers every other daemon over run/authd.sock with the tern-authd
 * protocol (docs/protocols/authd.md): account lookups, recipient
 * resolution, domain checks, password authentication, and the shared
 * anvil counters (auth failures, lockouts, connection counts) for all
 * protocols.  Directory calls and password checks run on the libuv thread
 * pool, sized here before the first job.
 */
#include "config.h"

#include <stdlib.h>
#include <unistd.h>

#include "compat.h"
#include "authd.h"
#include "cfg.h"
#include "log.h"
#include "svc.h"
#include "xalloc.h"

#define THREADS_MIN 4
#define THREADS_MAX 32
#define THREADS_FOR_LOOKUPS 2	/* pool threads never used by checks */

static struct authd authd_state;

static void settings_from_cfg(const struct cfg *cfg,
			      struct anvil_settings *set)
{
	memset(set, 0, sizeof(*set));
	set->window_ms = cfg_duration(cfg, OPT_AUTH_FAILURE_WINDOW);
	set->delay_max_ms = cfg_duration(cfg, OPT_AUTH_FAILURE_DELAY_MAX);
	set->lockout_threshold =
		(unsigned int)cfg_int(cfg, OPT_AUTH_LOCKOUT_THRESHOLD);
	set->lockout_ms = cfg_duration(cfg, OPT_AUTH_LOCKOUT_TIME);
	set->rate_window_ms = cfg_duration(cfg, OPT_CONNECT_RATE_WINDOW);
	set->max_entries = (size_t)cfg_int(cfg, OPT_ANVIL_MAX_ENTRIES);
}

/* UV_THREADPOOL_SIZE is read at the first job: set it now unless the
 * administrator did.  Returns the pool size. */
static unsigned int size_thread_pool(void)
{
	const char *env = getenv("UV_THREADPOOL_SIZE");
	long n = sysconf(_SC_NPROCESSORS_ONLN) + THREADS_FOR_LOOKUPS;
	char buf[16];

	if (env != NULL && atoi(env) > 0)
		return (unsigned int)atoi(env);
	if (n < THREADS_MIN)
		n = THREADS_MIN;
	if (n > THREADS_MAX)
		n = THREADS_MAX;
	snprintf(buf, sizeof(buf), "%ld", n);
	setenv("UV_THREADPOOL_SIZE", buf, 1);
	return (unsigned int)n;
}

/* The LDAP directory from tern.conf (directory_backend = ldap). */
static int open_ldap(struct authd *ad, const struct cfg *cfg,
		     const char **error_r)
{
	static char msg[AUTHD_ERROR_MAX];
	struct str *error = str_new(128, AUTHD_ERROR_MAX);
	int r = 0;

	for (unsigned i = 0; i < ad->ndirs && r == 0; i++) {
		if (dir_open_config(cfg, true, &ad->dirs[i], error) !=
		    DIR_OK) {
			snprintf(msg, sizeof(msg), "directory: %s",
				 str_c(error));
			*error_r = msg;
			r = -1;
		}
	}
	str_free(&error);
	return r;
}

/* The external directory (ext_ldap_auth, ext_ldap_gal): settings and
 * password file now, its first call connects. */
static int open_ext(struct authd *ad, const struct cfg *cfg,
		    const char **error_r)
{
	static char msg[AUTHD_ERROR_MAX];
	struct str *error = str_new(128, AUTHD_ERROR_MAX);
	int r = 0;

	if (dir_ext_open_config(cfg, &ad->ext, error) != DIR_OK) {
		snprintf(msg, sizeof(msg), "external directory: %s",
			 str_c(error));
		*error_r = msg;
		r = -1;
	} else if (ad->ext != NULL) {
		log_info(NULL, "external directory %s: passwords %s, "
			 "address book %s", dir_ext_describe(ad->ext),
			 dir_ext_auth(ad->ext) ? "yes" : "no",
			 dir_ext_gal(ad->ext) ? "yes" : "no");
	}
	str_free(&error);
	return r;
}

static int authd_init(struct svc *svc, const char **error_r)
{
	struct authd *ad = &authd_state;
	const struct cfg *cfg = svc_config(svc);
	struct anvil_settings set;
	unsigned int threads = size_thread_pool();

	ad->svc = svc;
	ad->loop = svc_loop(svc);
	ad->max_frame = (size_t)cfg_size(cfg, OPT_IPC_FRAME_MAX);
	ad->auth_slots = threads > THREADS_FOR_LOOKUPS ?
				 threads - THREADS_FOR_LOOKUPS : 1;
	settings_from_cfg(cfg, &set);
	ad->lockout_ms = set.lockout_ms;
	ad->anvil = anvil_new(&set);
	ad->cache = cache_new((size_t)cfg_int(cfg, OPT_AUTHD_CACHE_SIZE),
			      cfg_duration(cfg, OPT_AUTHD_CACHE_TTL));
	ad->client_ttl_ms = cfg_duration(cfg, OPT_AUTHCLIENT_CACHE_TTL);
	if (pthread_mutex_init(&ad->dir_lock, NULL) != 0 ||
	    pthread_cond_init(&ad->dir_free, NULL) != 0) {
		*error_r = "pthread_mutex_init failed";
		return -1;
	}
	ad->ndirs = threads < AUTHD_DIRS_MAX ? threads : AUTHD_DIRS_MAX;
	ad->dir_path = dir_config_describe(cfg);
	/* The LDAP handles are opened here (each connects at its first
	 * call); job.c opens SQLite handles itself when first taken. */
	if (cfg_enum(cfg, OPT_DIRECTORY_BACKEND) == DIR_BACKEND_LDAP &&
	    open_ldap(ad, cfg, error_r) < 0)
		return -1;
	if (open_ext(ad, cfg, error_r) < 0)
		return -1;
	/* Before serving: the loop has no client yet to keep waiting. */
	authd_dir_open(ad);
	authd_poll_start(ad);
	authd_job_prepare(ad);
	svc_set_ctx(svc, ad);
	log_info(NULL, "thread pool %u, password checks at once %u, "
		 "cache %zu entries", threads, ad->auth_slots,
		 (size_t)cfg_int(cfg, OPT_AUTHD_CACHE_SIZE));
	return 0;
}

static void authd_accept(struct svc *svc, uv_stream_t *client, int listener)
{
	authd_server_accept(&authd_state, client);
}

static void authd_reload(struct svc *svc)
{
	struct authd *ad = &authd_state;
	const struct cfg *cfg = svc_config(svc);
	struct anvil_settings set;

	settings_from_cfg(cfg, &set);
	ad->lockout_ms = set.lockout_ms;
	anvil_set_settings(ad->anvil, &set);
	cache_set_limits(ad->cache, (size_t)cfg_int(cfg, OPT_AUTHD_CACHE_SIZE),
			 cfg_duration(cfg, OPT_AUTHD_CACHE_TTL));
	if (cfg_duration(cfg, OPT_AUTHCLIENT_CACHE_TTL) != ad->client_ttl_ms) {
		ad->client_ttl_ms = cfg_duration(cfg, OPT_AUTHCLIENT_CACHE_TTL);
		authd_server_invalidate(ad);
	}
	{
		char *now = dir_config_describe(cfg);

		if (strcmp(ad->dir_path, now) != 0)
			log_warn(NULL, "the directory changed to %s: restart "
				 "tern-authd to use it", now);
		free(now);
	}
}

static void authd_stop(struct svc *svc)
{
	struct authd *ad = &authd_state;

	authd_poll_stop(ad);
	authd_server_stop(ad);
}

static void authd_deinit(struct svc *svc)
{
	struct authd *ad = &authd_state;

	if (ad->dir_path == NULL)
		return;		/* init did not run */
	authd_dir_close(ad);
	dir_ext_close(&ad->ext);
	pthread_cond_destroy(&ad->dir_free);
	pthread_mutex_destroy(&ad->dir_lock);
	anvil_free(&ad->anvil);
	cache_free(&ad->cache);
	free(ad->dir_path);
	ad->dir_path = NULL;
}

static const struct svc_spec authd_spec = {
	.name = "authd",
	.init = authd_init,
	.on_accept = authd_accept,
	.on_reload = authd_reload,
	.on_stop = authd_stop,
	.deinit = authd_deinit,
};

int main(int argc, char **argv)
{
	return svc_main(argc, argv, &authd_spec);
}
