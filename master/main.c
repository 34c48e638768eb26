/*
 * tern-master: starts, watches and restarts every Tern daemon.
 *
 * It reads conf/tern.conf and conf/services.conf, binds every listening
 * socket itself, spawns each service's processes with those sockets, restarts
 * a process that exits (backing off when a service crash-loops), reloads both
 * files on SIGHUP or `ternctl reload` without closing a listening socket
 * whose address did not change, and on SIGTERM stops the daemons (they drain
 * their sessions), then external servers, and exits.  It holds run/master.pid
 * (locked) and answers ternctl on run/master.sock.  `ternctl start` starts
 * it; run by hand it stays in the foreground.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "cfg.h"
#include "listen.h"
#include "log.h"
#include "master.h"
#include "paths.h"
#include "services.h"
#include "str.h"
#include "xalloc.h"

extern char **environ;

struct master master;
static int pid_fd = -1;

uint64_t master_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void cfg_warn_log(void *ctx, const char *msg)
{
	log_warn(NULL, "%s", msg);
}

static int master_load(struct master *m, struct cfg **cfg_r,
		       struct services **table_r, struct str *error)
{
	*cfg_r = NULL;
	*table_r = NULL;
	if (cfg_load(m->root, m->conf_path, cfg_warn_log, m, cfg_r, error) < 0)
		return -1;
	if (services_load(m->root, m->services_path, table_r, error) < 0) {
		cfg_free(cfg_r);
		return -1;
	}
	return 0;
}

/* Unix sockets belong to the daemon account (user in tern.conf), so that
 * daemons that dropped root can connect to each other. */
static void master_socket_owner(struct master *m)
{
	const char *user = cfg_str(m->cfg, OPT_USER);
	struct passwd *pw;

	if (geteuid() != 0 || user[0] == '\0') {
		listen_pool_set_owner(m->pool, -1, -1);
		return;
	}
	pw = getpwnam(user);
	if (pw == NULL) {
		log_warn(NULL, "user '%s' does not exist: unix sockets stay "
			 "root's", user);
		listen_pool_set_owner(m->pool, -1, -1);
		return;
	}
	listen_pool_set_owner(m->pool, (long)pw->pw_uid, (long)pw->pw_gid);
	/* The log file too: daemons reopen it after SIGHUP, without root. */
	if (log_target()[0] == '/' &&
	    chown(log_target(), pw->pw_uid, pw->pw_gid) < 0)
		log_warn(NULL, "chown %s: %s", log_target(), strerror(errno));
}

static void master_open_log(struct master *m)
{
	const char *error;

	if (log_open("master", cfg_str(m->cfg, OPT_LOG_TARGET),
		     (enum log_level)cfg_enum(m->cfg, OPT_LOG_LEVEL),
		     &error) < 0)
		log_error(NULL, "cannot open log %s: %s",
			  cfg_str(m->cfg, OPT_LOG_TARGET), error);
}

int master_reload(struct master *m, struct str *error)
{
	struct services *table;
	struct cfg *cfg;

	if (master_load(m, &cfg, &table, error) < 0) {
		log_error(NULL, "reload refused: %s", str_c(error));
		return -1;
	}
	cfg_free(&m->cfg);
	m->cfg = cfg;
	master_open_log(m);
	master_socket_owner(m);
	log_info(NULL, "reloading configuration");
	services_rt_apply(m, table);
	return 0;
}

void master_exit_if_done(struct master *m)
{
	if (!m->stopping || !services_rt_all_gone(m))
		return;
	uv_close((uv_handle_t *)&m->sig_term, NULL);
	uv_close((uv_handle_t *)&m->sig_int, NULL);
	uv_close((uv_handle_t *)&m->sig_hup, NULL);
}

void master_stop(struct master *m)
{
	if (m->stopping)
		return;
	m->stopping = 1;
	log_info(NULL, "stopping all services");
	control_close(m);
	services_rt_stop(m);
	master_exit_if_done(m);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct master *m = h->data;

	if (signum == SIGHUP) {
		struct str *err = str_new(128, 4096);

		if (!m->stopping)
			(void)master_reload(m, err);
		str_free(&err);
	} else {
		master_stop(m);
	}
}

/* run/master.pid, locked for the master's life: a second master fails. */
static int pidfile_take(struct master *m)
{
	char *path = path_join(m->root, "run/master.pid");
	char buf[32];
	int n;

	pid_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (pid_fd < 0) {
		fprintf(stderr, "tern-master: %s: %s\n", path, strerror(errno));
		free(path);
		return -1;
	}
	if (flock(pid_fd, LOCK_EX | LOCK_NB) < 0) {
		n = (int)read(pid_fd, buf, sizeof(buf) - 1);
		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		fprintf(stderr, "tern-master: already running (pid %s)\n", buf);
		free(path);
		return -1;
	}
	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(pid_fd, 0) < 0 || pwrite(pid_fd, buf, (size_t)n, 0) != n) {
		fprintf(stderr, "tern-master: %s: %s\n", path, strerror(errno));
		free(path);
		return -1;
	}
	free(path);
	return 0;
}

static void pidfile_release(struct master *m)
{
	char *path = path_join(m->root, "run/master.pid");

	unlink(path);
	free(path);
	close(pid_fd);
}

/* The environment children inherit: ours without TERN_ variables the
 * master sets itself per process. */
static char **base_env(void)
{
	size_t n = 0, k = 0;
	char **env;

	while (environ[n] != NULL)
		n++;
	env = xcalloc(n + 1, sizeof(*env));
	for (size_t i = 0; i < n; i++) {
		if (strncmp(environ[i], "TERN_", 5) == 0 &&
		    strncmp(environ[i], "TERN_LIBEXECDIR=", 16) != 0)
			continue;
		env[k++] = environ[i];
	}
	return env;
}

static void usage(void)
{
	fprintf(stderr, "usage: tern-master [-r ROOT]\n"
			"(normally started by `ternctl start`)\n");
}

int main(int argc, char **argv)
{
	struct master *m = &master;
	struct str *err = str_new(256, 8192);
	const char *root = getenv("TERN_ROOT"), *error;
	int c;

	signal(SIGPIPE, SIG_IGN);
	while ((c = getopt(argc, argv, "r:")) != -1) {
		if (c == 'r') {
			root = optarg;
		} else {
			usage();
			return 1;
		}
	}
	if (optind != argc) {
		usage();
		return 1;
	}
	if (root == NULL || *root == '\0')
		root = TERN_PREFIX;
	m->root = realpath(root, NULL);
	if (m->root == NULL) {
		fprintf(stderr, "tern-master: %s: %s\n", root, strerror(errno));
		return 1;
	}
	m->conf_path = path_join(m->root, "conf/tern.conf");
	m->services_path = path_join(m->root, "conf/services.conf");
	if (log_open("master", "stderr", LOGL_INFO, &error) < 0)
		return 1;
	if (master_load(m, &m->cfg, &m->table, err) < 0) {
		fprintf(stderr, "tern-master: %s\n", str_c(err));
		return 1;
	}
	if (pidfile_take(m) < 0)
		return 1;
	master_open_log(m);
	m->loop = uv_default_loop();
	m->started_ms = master_now_ms();
	m->pool = listen_pool_new();
	master_socket_owner(m);
	m->base_env = base_env();
	if (control_open(m, &error) < 0) {
		log_error(NULL, "cannot open the control socket: %s", error);
		fprintf(stderr, "tern-master: control socket: %s\n", error);
		pidfile_release(m);
		return 1;
	}
	uv_signal_init(m->loop, &m->sig_term);
	uv_signal_init(m->loop, &m->sig_int);
	uv_signal_init(m->loop, &m->sig_hup);
	m->sig_term.data = m->sig_int.data = m->sig_hup.data = m;
	uv_signal_start(&m->sig_term, on_signal, SIGTERM);
	uv_signal_start(&m->sig_int, on_signal, SIGINT);
	uv_signal_start(&m->sig_hup, on_signal, SIGHUP);
	log_info(NULL, "starting (root %s, %zu services)", m->root,
		 services_count(m->table));
	services_rt_start(m);
	uv_run(m->loop, UV_RUN_DEFAULT);

	listen_pool_free(&m->pool);
	log_info(NULL, "stopped");
	pidfile_release(m);
	uv_loop_close(m->loop);
	services_free(&m->table);
	cfg_free(&m->cfg);
	free(m->base_env);
	free(m->conf_path);
	free(m->services_path);
	free(m->root);
	str_free(&err);
	log_close();
	return 0;
}
