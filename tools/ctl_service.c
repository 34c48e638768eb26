/*
 * ctl_service.c: ternctl start, stop, restart, reload and status.
 *
 * They talk to tern-master over run/master.sock with the IPC codec
 * (docs/protocols/master.md).  start runs tern-master detached and returns
 * once every enabled service is ready, or fails with the reason; stop
 * returns only when no process of the instance is left.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "cfg.h"
#include "ipc.h"
#include "ipcclient.h"
#include "json.h"
#include "paths.h"
#include "services.h"
#include "str.h"
#include "ternctl.h"

#define CTL_TIMEOUT_MS 5000
#define MASTER_PROTO "tern-master"
#define MASTER_PROTO_VERSION 1
#define STATUS_SERVICES_MAX 256
#define STATUS_PIDS_MAX 256
#define STATUS_LISTEN_MAX 64

struct svc_status {
	const char *name, *type, *state, *message, *last_exit;
	int enabled, external;
	int64_t procs, uptime, restarts;
	int64_t pids[STATUS_PIDS_MAX];
	unsigned npids;
	const char *listen[STATUS_LISTEN_MAX];
	unsigned nlisten;
};

struct status {
	struct ipc_msg *msgs[STATUS_SERVICES_MAX + 1];
	struct svc_status svcs[STATUS_SERVICES_MAX];
	unsigned n;
	int64_t master_pid, uptime, ready, stopping;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* Whether pid is a live tern-master: not gone, not a zombie waiting for
 * its parent, not a reused pid. */
static bool master_alive(pid_t pid)
{
	char stat_path[64], st[512], *rp;
	ssize_t n;
	int fd;

	if (pid <= 0 || kill(pid, 0) < 0)
		return false;
	snprintf(stat_path, sizeof(stat_path), "/proc/%ld/stat", (long)pid);
	fd = open(stat_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return true;	/* no /proc: trust kill() */
	n = read(fd, st, sizeof(st) - 1);
	close(fd);
	st[n > 0 ? n : 0] = '\0';
	rp = strrchr(st, ')');
	if (rp == NULL || strstr(st, "(tern-master)") == NULL)
		return false;
	return !(rp[1] == ' ' && rp[2] == 'Z');
}

/* The pid in run/master.pid when that process is alive, else 0. */
static pid_t master_pid(struct ctl *ctl)
{
	char *path = ctl_path(ctl, "run/master.pid");
	char buf[32] = "";
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;
	long pid;

	free(path);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	pid = strtol(buf, NULL, 10);
	return master_alive((pid_t)pid) ? (pid_t)pid : 0;
}

/* An error message of an ipc_client lives in the client: a copy of it
 * (ternctl's own buffer) outlives ipc_client_free(). */
static void error_keep(const char **error_r)
{
	static char buf[512];

	if (*error_r != NULL && *error_r != buf) {
		snprintf(buf, sizeof(buf), "%s", *error_r);
		*error_r = buf;
	}
}

static struct ipc_client *master_connect(struct ctl *ctl, const char **error_r)
{
	struct ipc_client *c = ipc_client_new(0);
	char *path = ctl_path(ctl, "run/master.sock");

	if (ipc_client_connect(c, path, CTL_TIMEOUT_MS, error_r) < 0 ||
	    ipc_client_hello(c, MASTER_PROTO, MASTER_PROTO_VERSION,
			     CTL_TIMEOUT_MS, error_r) < 0) {
		error_keep(error_r);
		ipc_client_free(&c);
	}
	free(path);
	return c;
}

/* Sends a request without fields; the answer (ok/error) in *reply_r. */
static int master_call(struct ctl *ctl, const char *type,
		       struct ipc_msg **reply_r, const char **error_r)
{
	struct ipc_client *c = master_connect(ctl, error_r);
	struct ipc_msg *req;
	int r;

	if (c == NULL)
		return -1;
	req = ipc_msg_new(type);
	ipc_msg_set_id(req, 1);
	r = ipc_client_send(c, req, CTL_TIMEOUT_MS, error_r);
	if (r == 0)
		r = ipc_client_recv(c, 60000, reply_r, error_r);
	ipc_msg_free(&req);
	if (r < 0)
		error_keep(error_r);
	ipc_client_free(&c);
	return r;
}

static void status_free(struct status *st)
{
	for (unsigned i = 0; i <= STATUS_SERVICES_MAX; i++)
		ipc_msg_free(&st->msgs[i]);
	memset(st, 0, sizeof(*st));
}

static int status_parse_service(struct svc_status *s, struct ipc_msg *m)
{
	const char *v;

	if (ipc_msg_get_cstr(m, "name", &s->name) < 0 ||
	    ipc_msg_get_cstr(m, "type", &s->type) < 0 ||
	    ipc_msg_get_cstr(m, "state", &s->state) < 0)
		return -1;
	s->message = ipc_msg_get_cstr(m, "message", &v) == 0 ? v : NULL;
	s->last_exit = ipc_msg_get_cstr(m, "last_exit", &v) == 0 ? v : NULL;
	int64_t en = 0, ex = 0;
	if (ipc_msg_get_int(m, "enabled", &en) < 0 ||
	    ipc_msg_get_int(m, "external", &ex) < 0 ||
	    ipc_msg_get_int(m, "procs", &s->procs) < 0 ||
	    ipc_msg_get_int(m, "uptime", &s->uptime) < 0 ||
	    ipc_msg_get_int(m, "restarts", &s->restarts) < 0)
		return -1;
	s->enabled = en != 0;
	s->external = ex != 0;
	s->npids = ipc_msg_count(m, "pid");
	if (s->npids > STATUS_PIDS_MAX)
		s->npids = STATUS_PIDS_MAX;
	for (unsigned i = 0; i < s->npids; i++) {
		if (ipc_msg_get_int_nth(m, "pid", i, &s->pids[i]) < 0)
			return -1;
	}
	s->nlisten = ipc_msg_count(m, "listen");
	if (s->nlisten > STATUS_LISTEN_MAX)
		s->nlisten = STATUS_LISTEN_MAX;
	for (unsigned i = 0; i < s->nlisten; i++) {
		if (ipc_msg_get_cstr_nth(m, "listen", i, &s->listen[i]) < 0)
			return -1;
	}
	return 0;
}

static int status_fetch(struct ctl *ctl, struct status *st,
			const char **error_r)
{
	struct ipc_client *c = master_connect(ctl, error_r);
	struct ipc_msg *req, *m = NULL;
	int r;

	memset(st, 0, sizeof(*st));
	if (c == NULL)
		return -1;
	req = ipc_msg_new("status");
	ipc_msg_set_id(req, 1);
	r = ipc_client_send(c, req, CTL_TIMEOUT_MS, error_r);
	ipc_msg_free(&req);
	while (r == 0) {
		r = ipc_client_recv(c, CTL_TIMEOUT_MS, &m, error_r);
		if (r < 0)
			break;
		if (ipc_msg_type_is(m, "end")) {
			if (ipc_msg_get_int(m, "master_pid", &st->master_pid) < 0 ||
			    ipc_msg_get_int(m, "uptime", &st->uptime) < 0 ||
			    ipc_msg_get_int(m, "ready", &st->ready) < 0 ||
			    ipc_msg_get_int(m, "stopping", &st->stopping) < 0) {
				*error_r = "bad status end from tern-master";
				r = -1;
			}
			st->msgs[STATUS_SERVICES_MAX] = m;
			break;
		}
		if (!ipc_msg_type_is(m, "service") || st->n == STATUS_SERVICES_MAX ||
		    status_parse_service(&st->svcs[st->n], m) < 0) {
			*error_r = "unexpected status message from tern-master";
			ipc_msg_free(&m);
			r = -1;
			break;
		}
		st->msgs[st->n++] = m;
	}
	if (r < 0)
		error_keep(error_r);
	ipc_client_free(&c);
	if (r < 0)
		status_free(st);
	return r;
}

static void format_uptime(char *buf, size_t size, int64_t s)
{
	if (s >= 86400)
		snprintf(buf, size, "%lldd%02lldh", (long long)(s / 86400),
			 (long long)(s % 86400 / 3600));
	else
		snprintf(buf, size, "%lld:%02lld:%02lld", (long long)(s / 3600),
			 (long long)(s % 3600 / 60), (long long)(s % 60));
}

static void status_print_text(struct ctl *ctl, const struct status *st)
{
	char up[32];

	format_uptime(up, sizeof(up), st->uptime);
	printf("%-14s %-9s %-16s %-9s %-8s %s\n", "SERVICE", "STATE", "PIDS",
	       "UPTIME", "RESTARTS", "LISTEN");
	printf("%-14s %-9s %-16lld %-9s %-8s %s/run/master.sock\n", "master",
	       st->stopping ? "stopping" : "running",
	       (long long)st->master_pid, up, "-", ctl->root);
	for (unsigned i = 0; i < st->n; i++) {
		const struct svc_status *s = &st->svcs[i];
		struct str *pids = str_new(32, 4096), *listen = str_new(32, 8192);

		for (unsigned k = 0; k < s->npids; k++)
			(void)!str_printf(pids, "%s%lld", k ? "," : "",
					  (long long)s->pids[k]);
		for (unsigned k = 0; k < s->nlisten; k++)
			(void)!str_printf(listen, "%s%s", k ? "," : "",
					  s->listen[k]);
		format_uptime(up, sizeof(up), s->uptime);
		printf("%-14s %-9s %-16s %-9s %-8lld %s\n", s->name, s->state,
		       str_len(pids) ? str_c(pids) : "-",
		       s->npids ? up : "-", (long long)s->restarts,
		       str_len(listen) ? str_c(listen) : "-");
		if (s->message != NULL)
			printf("%14s %s\n", "", s->message);
		str_free(&pids);
		str_free(&listen);
	}
}

static int status_print_json(const struct status *st, int running)
{
	struct str *out;
	struct json *j = ctl_json_start(&out);

	json_object_begin(j);
	json_key(j, "master");
	json_object_begin(j);
	json_kv_bool(j, "running", running);
	if (running) {
		json_kv_int(j, "pid", st->master_pid);
		json_kv_int(j, "uptime", st->uptime);
		json_kv_bool(j, "stopping", (int)st->stopping);
	}
	json_object_end(j);
	json_kv_bool(j, "ready", running && st->ready);
	json_key(j, "services");
	json_array_begin(j);
	for (unsigned i = 0; running && i < st->n; i++) {
		const struct svc_status *s = &st->svcs[i];

		json_object_begin(j);
		json_kv_cstring(j, "name", s->name);
		json_kv_cstring(j, "type", s->type);
		json_kv_cstring(j, "state", s->state);
		json_kv_bool(j, "enabled", s->enabled);
		json_kv_bool(j, "external", s->external);
		json_kv_int(j, "procs", s->procs);
		json_key(j, "pids");
		json_array_begin(j);
		for (unsigned k = 0; k < s->npids; k++)
			json_int(j, s->pids[k]);
		json_array_end(j);
		json_kv_int(j, "uptime", s->uptime);
		json_kv_int(j, "restarts", s->restarts);
		json_key(j, "listen");
		json_array_begin(j);
		for (unsigned k = 0; k < s->nlisten; k++)
			json_cstring(j, s->listen[k]);
		json_array_end(j);
		json_kv_cstring(j, "message", s->message);
		json_kv_cstring(j, "last_exit", s->last_exit);
		json_object_end(j);
	}
	json_array_end(j);
	json_object_end(j);
	return ctl_json_done(&j, &out);
}

int ctl_status(struct ctl *ctl, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	struct status st;
	const char *error;
	int c, ok = 1;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c != 'j') {
			fprintf(stderr, "usage: ternctl status [--json]\n");
			return 2;
		}
		ctl->json = 1;
	}
	if (master_pid(ctl) == 0 || status_fetch(ctl, &st, &error) < 0) {
		if (ctl->json) {
			memset(&st, 0, sizeof(st));
			status_print_json(&st, 0);
		} else {
			printf("tern-master is not running (root %s)\n",
			       ctl->root);
		}
		return 1;
	}
	for (unsigned i = 0; i < st.n; i++) {
		if (st.svcs[i].enabled && strcmp(st.svcs[i].state, "running"))
			ok = 0;
	}
	if (ctl->json)
		status_print_json(&st, 1);
	else
		status_print_text(ctl, &st);
	status_free(&st);
	return ok ? 0 : 1;
}

/* Validates both files as the master will read them; prints the errors. */
static int check_config(struct ctl *ctl, struct cfg **cfg_r)
{
	char *conf = ctl_path(ctl, "conf/tern.conf");
	char *svcs = ctl_path(ctl, "conf/services.conf");
	struct str *err = str_new(256, 8192);
	struct services *table = NULL;
	int r = 0;

	if (cfg_load(ctl->root, conf, ctl_warn, NULL, cfg_r, err) < 0 ||
	    services_load(ctl->root, svcs, &table, err) < 0) {
		fprintf(stderr, "ternctl: %s\n", str_c(err));
		cfg_free(cfg_r);
		r = -1;
	}
	services_free(&table);
	str_free(&err);
	free(conf);
	free(svcs);
	return r;
}

/* The last lines of the log that name service (or all, with NULL). */
static void print_log_lines(struct ctl *ctl, const struct cfg *cfg,
			    const char *service, int max)
{
	const char *target = cfg_str(cfg, OPT_LOG_TARGET);
	struct str *text = str_new(65536, 64 << 20), *pat = str_new(64, 256);
	const char *error, *p, *lines[16];
	int n = 0;

	if (max > 16)
		max = 16;
	if (target[0] != '/' || cfg_read_file(target, 64 << 20, text,
					      &error) < 0)
		goto out;
	if (service != NULL && str_printf(pat, "service %s", service) < 0)
		goto out;
	for (p = str_c(text); *p != '\0';) {
		const char *nl = strchr(p, '\n');
		size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
		const char *hit = service == NULL ? p : memmem(p, len, str_c(pat),
								str_len(pat));
		if (hit != NULL) {
			if (n == max) {
				memmove(lines, lines + 1,
					(size_t)(max - 1) * sizeof(lines[0]));
				n--;
			}
			lines[n++] = p;
		}
		p += len + (nl != NULL);
	}
	for (int i = 0; i < n; i++) {
		size_t len = strcspn(lines[i], "\n");
		fprintf(stderr, "  %.*s\n", (int)len, lines[i]);
	}
out:
	str_free(&text);
	str_free(&pat);
}

static void print_startup_errors(struct ctl *ctl)
{
	char *path = ctl_path(ctl, "log/master.err");
	struct str *text = str_new(4096, 1 << 20);
	const char *error;

	if (cfg_read_file(path, 1 << 20, text, &error) == 0 && str_len(text))
		fprintf(stderr, "%s", str_c(text));
	str_free(&text);
	free(path);
}

static pid_t spawn_master(struct ctl *ctl, const char *program)
{
	char *errpath = ctl_path(ctl, "log/master.err");
	pid_t pid = fork();

	if (pid == 0) {
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		int err = open(errpath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND,
			       0640);

		setsid();
		if (null < 0 || err < 0 || dup2(null, 0) < 0 ||
		    dup2(err, 1) < 0 || dup2(err, 2) < 0)
			_exit(127);
		execl(program, "tern-master", "-r", ctl->root, (char *)NULL);
		fprintf(stderr, "ternctl: cannot run %s: %s\n", program,
			strerror(errno));
		_exit(127);
	}
	free(errpath);
	return pid;
}

/* Waits for every enabled service to be ready: 0, or -1 after printing
 * why not. */
static int wait_ready(struct ctl *ctl, const struct cfg *cfg, pid_t child,
		      uint64_t timeout_ms)
{
	uint64_t deadline = now_ms() + timeout_ms;
	struct status st;
	const char *error = "no answer";
	int wstatus;

	while (now_ms() < deadline) {
		if (child > 0 && waitpid(child, &wstatus, WNOHANG) == child) {
			fprintf(stderr, "ternctl: tern-master exited at start:\n");
			print_startup_errors(ctl);
			return -1;
		}
		if (status_fetch(ctl, &st, &error) == 0) {
			int failed = 0;

			for (unsigned i = 0; i < st.n; i++) {
				const struct svc_status *s = &st.svcs[i];

				if (strcmp(s->state, "backoff") != 0 &&
				    strcmp(s->state, "failed") != 0)
					continue;
				fprintf(stderr, "ternctl: service %s failed: "
					"%s\n", s->name,
					s->message ? s->message : s->state);
				print_log_lines(ctl, cfg, s->name, 3);
				failed = 1;
			}
			if (failed) {
				status_free(&st);
				fprintf(stderr, "ternctl: the other services "
					"keep running; fix the cause, then "
					"`ternctl reload` (or `ternctl stop`)\n");
				return -1;
			}
			if (st.ready) {
				status_print_text(ctl, &st);
				status_free(&st);
				return 0;
			}
			status_free(&st);
		}
		sleep_ms(50);
	}
	fprintf(stderr, "ternctl: not ready after %llu ms (%s)\n",
		(unsigned long long)timeout_ms, error);
	print_log_lines(ctl, cfg, NULL, 5);
	return -1;
}

int ctl_start(struct ctl *ctl, int argc, char **argv)
{
	struct cfg *cfg = NULL;
	char *program;
	pid_t pid, child;
	int r;

	if (ctl_no_args(argc, argv, "start") < 0)
		return 2;
	if (check_config(ctl, &cfg) < 0)
		return 1;
	pid = master_pid(ctl);
	if (pid != 0) {
		printf("tern-master is already running (pid %ld)\n", (long)pid);
		r = wait_ready(ctl, cfg, 0,
			       cfg_duration(cfg, OPT_SERVICE_READY_TIMEOUT) +
				       5000);
		cfg_free(&cfg);
		return r < 0 ? 1 : 0;
	}
	program = path_find_program("tern-master");
	if (program == NULL) {
		fprintf(stderr, "ternctl: tern-master not found in %s\n",
			path_libexec_dirs());
		cfg_free(&cfg);
		return 1;
	}
	child = spawn_master(ctl, program);
	free(program);
	if (child < 0) {
		fprintf(stderr, "ternctl: fork: %s\n", strerror(errno));
		cfg_free(&cfg);
		return 1;
	}
	r = wait_ready(ctl, cfg, child,
		       cfg_duration(cfg, OPT_SERVICE_READY_TIMEOUT) + 5000);
	cfg_free(&cfg);
	return r < 0 ? 1 : 0;
}

int ctl_stop(struct ctl *ctl, int argc, char **argv)
{
	struct ipc_msg *reply = NULL;
	const char *error;
	uint64_t deadline;
	struct cfg *cfg = NULL;
	struct str *err = str_new(256, 8192);
	char *conf;
	pid_t pid;

	if (ctl_no_args(argc, argv, "stop") < 0) {
		str_free(&err);
		return 2;
	}
	pid = master_pid(ctl);
	if (pid == 0) {
		printf("tern-master is not running\n");
		str_free(&err);
		return 0;
	}
	/* The wait is the master's own bound (drain, then SIGKILL) and a
	 * margin; a broken tern.conf falls back to the defaults. */
	conf = ctl_path(ctl, "conf/tern.conf");
	if (cfg_load(ctl->root, conf, NULL, NULL, &cfg, err) < 0)
		(void)!cfg_load(ctl->root, NULL, NULL, NULL, &cfg, err);
	free(conf);
	deadline = now_ms() + 15000 +
		   (cfg != NULL ? cfg_duration(cfg, OPT_DRAIN_TIMEOUT) : 30000);
	cfg_free(&cfg);
	str_free(&err);
	if (master_call(ctl, "stop", &reply, &error) < 0) {
		fprintf(stderr, "ternctl: %s; sending SIGTERM to %ld\n", error,
			(long)pid);
		kill(pid, SIGTERM);
	}
	ipc_msg_free(&reply);
	/* The process itself, not its pid file: the master removes the file
	 * just before it exits. */
	while (master_alive(pid) && now_ms() < deadline)
		sleep_ms(20);
	if (master_alive(pid)) {
		fprintf(stderr, "ternctl: tern-master (pid %ld) did not stop; "
			"killing its process group\n", (long)pid);
		kill(-pid, SIGKILL);
		return 1;
	}
	printf("stopped\n");
	return 0;
}

int ctl_restart(struct ctl *ctl, int argc, char **argv)
{
	int r = ctl_stop(ctl, argc, argv);

	if (r != 0)
		return r;
	optind = 0;
	return ctl_start(ctl, argc, argv);
}

int ctl_reload(struct ctl *ctl, int argc, char **argv)
{
	struct ipc_msg *reply = NULL;
	struct cfg *cfg = NULL;
	const char *error, *msg;
	int r = 0;

	if (ctl_no_args(argc, argv, "reload") < 0)
		return 2;
	if (master_pid(ctl) == 0) {
		fprintf(stderr, "ternctl: tern-master is not running\n");
		return 1;
	}
	if (check_config(ctl, &cfg) < 0)
		return 1;
	cfg_free(&cfg);
	if (master_call(ctl, "reload", &reply, &error) < 0) {
		fprintf(stderr, "ternctl: %s\n", error);
		return 1;
	}
	if (ipc_msg_type_is(reply, "ok")) {
		printf("reloaded\n");
	} else {
		if (ipc_msg_get_cstr(reply, "message", &msg) < 0)
			msg = "reload failed";
		fprintf(stderr, "ternctl: %s\n", msg);
		r = 1;
	}
	ipc_msg_free(&reply);
	return r;
}
