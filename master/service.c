/*
 * service.c: tern-master's services at run time: their processes, restarts
 * with backoff, readiness, graceful replacement on reload, and status.
 *
 * A struct svc_rt is one service of the current table (or a retiring one,
 * replaced or removed by a reload, whose processes are draining).  Each
 * process of a Tern daemon gets its status socket on fd 3 and the service's
 * listening sockets from fd 4 on; it reports "ready" on fd 3 once it serves.
 * External programs get neither and are ready when their ready= address
 * accepts a connection, or answers an LDAP search with ready=ldap... (or
 * at once without one).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "compat.h"
#include "cfg.h"
#include "ipc.h"
#include "ipcchan.h"
#include "ldapprobe.h"
#include "listen.h"
#include "log.h"
#include "master.h"
#include "paths.h"
#include "services.h"
#include "str.h"
#include "xalloc.h"

#define RT_PROCS_MAX 256
#define RT_EXITS_MAX 1000	/* crash_loop_limit's maximum */
#define RT_MESSAGE_MAX 512
#define PROBE_INTERVAL_MS 100
#define STOP_GRACE_MS 5000	/* after the drain deadline, SIGKILL */

enum rt_state {
	RT_STARTING,
	RT_RUNNING,
	RT_BACKOFF,
	RT_FAILED,
	RT_DISABLED,
};

static const char *const rt_state_names[] = {
	"starting", "running", "backoff", "failed", "disabled",
};

struct proc {
	struct svc_rt *rt;
	uv_process_t handle;
	uv_pipe_t status;
	struct ipc_decoder *dec;
	int status_open;
	int closes;		/* close callbacks still to come */
	int exited;
	int ready;
	int stopping;		/* we sent SIGTERM */
	int probe_fd;		/* ready=ldap...: the search's connection */
	unsigned char probe_buf[LDAPPROBE_ANSWER_MAX];
	size_t probe_len;
	pid_t pid;
	uint64_t started_ms;
};

struct svc_rt {
	struct svc_rt *next;
	struct master *m;
	const struct service *def;	/* NULL once retiring */
	char *name;
	int external;
	enum rt_state state;
	int retiring;
	int kept, replaced;	/* marks while a reload is applied */
	int fds[LISTEN_FDS_MAX];
	size_t nfds;
	struct proc *procs[RT_PROCS_MAX];
	unsigned want;
	unsigned char slot_started[RT_PROCS_MAX];
	unsigned restarts;
	uint64_t exits[RT_EXITS_MAX];	/* recent exit times, oldest first */
	unsigned nexits;
	uint64_t backoff_ms;
	uv_timer_t timer;		/* restarts, probes, ready deadline */
	uv_timer_t kill_timer;		/* SIGKILL after the drain deadline */
	int timers_closing;
	char message[RT_MESSAGE_MAX];
	char last_exit[128];
	uint64_t ready_deadline;
};

static void rt_schedule(struct svc_rt *rt, uint64_t delay_ms);
static void rt_spawn_missing(struct svc_rt *rt);
static void rt_maybe_free(struct svc_rt *rt);

static uint64_t cfg_ms(struct master *m, enum cfg_opt opt)
{
	return cfg_duration(m->cfg, opt);
}

static void rt_set_message(struct svc_rt *rt, const char *fmt, ...)
	TERN_PRINTF(2, 3);
static void rt_set_message(struct svc_rt *rt, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(rt->message, sizeof(rt->message), fmt, ap);
	va_end(ap);
}

/* ---- state ---------------------------------------------------------- */

static unsigned rt_alive(const struct svc_rt *rt)
{
	unsigned n = 0;

	for (unsigned i = 0; i < RT_PROCS_MAX; i++)
		n += rt->procs[i] != NULL && !rt->procs[i]->exited;
	return n;
}

static void rt_update_state(struct svc_rt *rt)
{
	unsigned ready = 0;

	if (rt->retiring || rt->state == RT_DISABLED ||
	    rt->state == RT_BACKOFF || rt->state == RT_FAILED)
		return;
	for (unsigned i = 0; i < rt->want; i++)
		ready += rt->procs[i] != NULL && !rt->procs[i]->exited &&
			 rt->procs[i]->ready;
	if (ready == rt->want && rt->state != RT_RUNNING) {
		rt->state = RT_RUNNING;
		rt->message[0] = '\0';
		log_info(NULL, "service %s ready (%u process%s)", rt->name,
			 rt->want, rt->want == 1 ? "" : "es");
	} else if (ready < rt->want) {
		rt->state = RT_STARTING;
	}
}

/* ---- processes ------------------------------------------------------ */

/* The connection of an LDAP readiness probe, if any. */
static void probe_close(struct proc *p)
{
	if (p->probe_fd >= 0)
		close(p->probe_fd);
	p->probe_fd = -1;
	p->probe_len = 0;
}

static void proc_closed(uv_handle_t *h)
{
	struct proc *p = h->data;

	if (--p->closes > 0)
		return;
	probe_close(p);
	ipc_decoder_free(&p->dec);
	free(p);
}

static void proc_release(struct proc *p)
{
	struct svc_rt *rt = p->rt;

	for (unsigned i = 0; i < RT_PROCS_MAX; i++) {
		if (rt->procs[i] == p)
			rt->procs[i] = NULL;
	}
	p->closes = 1;
	if (p->status_open) {
		p->closes++;
		p->status_open = 0;
		uv_close((uv_handle_t *)&p->status, proc_closed);
	}
	uv_close((uv_handle_t *)&p->handle, proc_closed);
}

static void proc_on_status(struct proc *p, struct ipc_msg *msg)
{
	if (ipc_msg_type_is(msg, "ready") && !p->ready) {
		p->ready = 1;
		log_debug(NULL, "service %s: pid %ld ready", p->rt->name,
			  (long)p->pid);
		rt_update_state(p->rt);
	}
}

static void status_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	static char mem[4096];

	buf->base = mem;
	buf->len = sizeof(mem);
}

static void status_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct proc *p = s->data;
	const char *pos = buf->base, *end, *error;
	struct ipc_msg *msg;
	int r;

	if (n < 0) {
		/* EOF: the process is exiting; the exit callback does the rest */
		uv_read_stop(s);
		return;
	}
	end = buf->base + n;
	while ((r = ipc_decoder_feed(p->dec, &pos, end, &msg, &error)) == 1) {
		proc_on_status(p, msg);
		ipc_msg_free(&msg);
	}
	if (r < 0) {
		log_warn(NULL, "service %s: pid %ld: bad status message: %s",
			 p->rt->name, (long)p->pid, error);
		uv_read_stop(s);
	}
}

static void rt_record_exit(struct svc_rt *rt, uint64_t now)
{
	uint64_t window = cfg_ms(rt->m, OPT_CRASH_LOOP_WINDOW);
	unsigned keep = 0;

	for (unsigned i = 0; i < rt->nexits; i++) {
		if (rt->exits[i] + window > now)
			rt->exits[keep++] = rt->exits[i];
	}
	rt->nexits = keep;
	if (rt->nexits == RT_EXITS_MAX) {
		memmove(rt->exits, rt->exits + 1,
			(RT_EXITS_MAX - 1) * sizeof(rt->exits[0]));
		rt->nexits--;
	}
	rt->exits[rt->nexits++] = now;
}

static void rt_after_crash(struct svc_rt *rt, const char *what)
{
	struct master *m = rt->m;
	uint64_t now = master_now_ms(), delay;
	long long limit = cfg_int(m->cfg, OPT_CRASH_LOOP_LIMIT);

	rt_record_exit(rt, now);
	if (rt->nexits >= (unsigned)limit) {
		uint64_t max = cfg_ms(m, OPT_RESTART_BACKOFF_MAX);

		rt->backoff_ms = rt->backoff_ms == 0 ? 1000 :
						       rt->backoff_ms * 2;
		if (rt->backoff_ms > max)
			rt->backoff_ms = max;
		delay = rt->backoff_ms;
		rt->state = RT_BACKOFF;
		rt_set_message(rt, "crash-looping: %u exits in %llus, last: %s; "
			       "next start in %llu.%llus", rt->nexits,
			       (unsigned long long)(cfg_ms(m, OPT_CRASH_LOOP_WINDOW) /
						    1000),
			       what, (unsigned long long)(delay / 1000),
			       (unsigned long long)(delay % 1000 / 100));
		log_warn(NULL, "service %s is crash-looping (%u exits in %llus)"
			 ": next start in %llu ms", rt->name, rt->nexits,
			 (unsigned long long)(cfg_ms(m, OPT_CRASH_LOOP_WINDOW) /
					      1000),
			 (unsigned long long)delay);
	} else {
		delay = cfg_ms(m, OPT_RESTART_DELAY);
		if (rt->state != RT_BACKOFF)
			rt->state = RT_STARTING;
	}
	rt_schedule(rt, delay);
}

static void proc_exit(uv_process_t *h, int64_t status, int sig)
{
	struct proc *p = h->data;
	struct svc_rt *rt = p->rt;
	char what[64];

	p->exited = 1;
	if (sig != 0)
		snprintf(what, sizeof(what), "killed by signal %d", sig);
	else
		snprintf(what, sizeof(what), "exited with status %lld",
			 (long long)status);
	snprintf(rt->last_exit, sizeof(rt->last_exit), "pid %ld %s",
		 (long)p->pid, what);
	if (p->stopping || rt->retiring || rt->m->stopping) {
		log_info(NULL, "service %s: pid %ld %s", rt->name,
			 (long)p->pid, what);
	} else {
		log_warn(NULL, "service %s: pid %ld %s", rt->name,
			 (long)p->pid, what);
		/* A process that ran long enough earns a fresh start. */
		if (master_now_ms() - p->started_ms >
		    cfg_ms(rt->m, OPT_CRASH_LOOP_WINDOW) && p->ready) {
			rt->backoff_ms = 0;
			rt->nexits = 0;
		}
		rt_after_crash(rt, what);
	}
	proc_release(p);
	if (rt->retiring || rt->m->stopping)
		rt_maybe_free(rt);
}

/* Finds argv[0]: as given when absolute, under the root when relative with
 * a '/', else among Tern's programs (paths.h), else in PATH (execvp). */
static char *resolve_program(const char *root, const char *prog)
{
	char *found;

	if (prog[0] == '/')
		return xstrdup(prog);
	if (strchr(prog, '/') != NULL)
		return path_join(root, prog);
	found = path_find_program(prog);
	return found != NULL ? found : xstrdup(prog);
}

static char **build_env(struct svc_rt *rt, unsigned index)
{
	size_t n = 0, i;
	char **env;
	struct str *s = str_new(64, 8192);

	while (rt->m->base_env[n] != NULL)
		n++;
	env = xcalloc(n + 8, sizeof(*env));
	for (i = 0; i < n; i++)
		env[i] = rt->m->base_env[i];
#define ENV_ADD(...)                                                    \
	do {                                                            \
		str_clear(s);                                           \
		if (str_printf(s, __VA_ARGS__) < 0)                     \
			log_panic(NULL, "environment too long");        \
		env[i++] = xstrdup(str_c(s));                           \
	} while (0)
	ENV_ADD("TERN_ROOT=%s", rt->m->root);
	ENV_ADD("TERN_SERVICE=%s", rt->name);
	ENV_ADD("TERN_PROCESS_INDEX=%u", index);
	if (!rt->external) {
		ENV_ADD("TERN_STATUS_FD=3");
		ENV_ADD("TERN_LISTEN_FDS=%zu", rt->nfds);
		if (rt->def->drain_ms >= 0)
			ENV_ADD("TERN_DRAIN_MS=%lld", rt->def->drain_ms);
	}
#undef ENV_ADD
	env[i] = NULL;
	str_free(&s);
	return env;
}

static void free_env(struct svc_rt *rt, char **env)
{
	size_t n = 0;

	while (rt->m->base_env[n] != NULL)
		n++;
	for (size_t i = n; env[i] != NULL; i++)
		free(env[i]);
	free(env);
}

static int proc_spawn(struct svc_rt *rt, unsigned index)
{
	uv_stdio_container_t stdio[4 + LISTEN_FDS_MAX];
	uv_process_options_t opt = { 0 };
	struct proc *p = xcalloc(1, sizeof(*p));
	int sv[2] = { -1, -1 }, r, nstdio = 3;
	char *file;
	char **env;

	p->rt = rt;
	p->probe_fd = -1;
	stdio[0].flags = UV_IGNORE;
	stdio[1].flags = UV_INHERIT_FD;
	stdio[1].data.fd = 1;
	stdio[2].flags = UV_INHERIT_FD;
	stdio[2].data.fd = 2;
	if (!rt->external) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
			rt_set_message(rt, "socketpair: %s", strerror(errno));
			free(p);
			return -1;
		}
		stdio[3].flags = UV_INHERIT_FD;
		stdio[3].data.fd = sv[1];
		for (size_t i = 0; i < rt->nfds; i++) {
			stdio[4 + i].flags = UV_INHERIT_FD;
			stdio[4 + i].data.fd = rt->fds[i];
		}
		nstdio = 4 + (int)rt->nfds;
	}
	file = resolve_program(rt->m->root, rt->def->argv[0]);
	env = build_env(rt, index);
	opt.file = file;
	opt.args = rt->def->argv;
	opt.env = env;
	opt.cwd = rt->m->root;
	opt.stdio = stdio;
	opt.stdio_count = nstdio;
	opt.exit_cb = proc_exit;
	p->handle.data = p;
	r = uv_spawn(rt->m->loop, &p->handle, &opt);
	free_env(rt, env);
	if (sv[1] >= 0)
		close(sv[1]);
	if (r < 0) {
		rt_set_message(rt, "cannot run %s: %s", file, uv_strerror(r));
		log_error(NULL, "service %s: cannot run %s: %s", rt->name, file,
			  uv_strerror(r));
		free(file);
		if (sv[0] >= 0)
			close(sv[0]);
		/* uv_spawn initialised the handle: it must still be closed. */
		p->closes = 1;
		uv_close((uv_handle_t *)&p->handle, proc_closed);
		return -1;
	}
	free(file);
	p->pid = p->handle.pid;
	p->started_ms = master_now_ms();
	rt->procs[index] = p;
	if (!rt->external) {
		p->dec = ipc_decoder_new(4096);
		uv_pipe_init(rt->m->loop, &p->status, 0);
		uv_pipe_open(&p->status, sv[0]);
		p->status.data = p;
		p->status_open = 1;
		uv_read_start((uv_stream_t *)&p->status, status_alloc,
			      status_read);
	} else if (!rt->def->has_ready) {
		p->ready = 1;
	}
	log_info(NULL, "service %s: started pid %ld", rt->name, (long)p->pid);
	return 0;
}

/* ---- readiness probes and timers ------------------------------------ */

/* A connection to a (non-blocking): its descriptor, or -1. */
static int probe_connect(const struct service_addr *a)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	struct pollfd pfd;
	int fd, r, err = 0;
	socklen_t elen = sizeof(err);

	if (a->family == AF_UNIX) {
		struct sockaddr_un *sun = (void *)&ss;
		sun->sun_family = AF_UNIX;
		if (str_lcpy(sun->sun_path, a->path, sizeof(sun->sun_path)) >=
		    sizeof(sun->sun_path))
			return -1;
		len = sizeof(*sun);
	} else if (a->family == AF_INET6) {
		struct sockaddr_in6 *s6 = (void *)&ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)a->port);
		inet_pton(AF_INET6, a->host, &s6->sin6_addr);
		len = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (void *)&ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)a->port);
		inet_pton(AF_INET, a->host, &s4->sin_addr);
		len = sizeof(*s4);
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	if (fd < 0)
		return -1;
	r = connect(fd, (struct sockaddr *)&ss, len);
	if (r < 0 && errno == EINPROGRESS) {
		pfd.fd = fd;
		pfd.events = POLLOUT;
		/* Local addresses answer at once; never block the loop long. */
		if (poll(&pfd, 1, 20) == 1 &&
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 &&
		    err == 0)
			r = 0;
	}
	if (r < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * Whether p's service answers: its ready= address accepts a connection
 * or, with ready=ldap..., answers an LDAP search with success.  The search
 * spans timer ticks: the request goes out on a new connection, the
 * answer is read (without waiting) at the next ticks.
 */
static bool probe_ready(struct proc *p)
{
	const struct service *def = p->rt->def;
	unsigned char req[LDAPPROBE_REQUEST_SIZE];
	enum ldapprobe_state st;
	ssize_t n;
	int code = -1;

	if (!def->ready_ldap) {
		int fd = probe_connect(&def->ready);

		if (fd >= 0)
			close(fd);
		return fd >= 0;
	}
	if (p->probe_fd < 0) {
		p->probe_fd = probe_connect(&def->ready);
		ldapprobe_request(req);
		if (p->probe_fd >= 0 &&
		    send(p->probe_fd, req, sizeof(req), MSG_NOSIGNAL) !=
			    (ssize_t)sizeof(req))
			probe_close(p);
		return false;
	}
	n = recv(p->probe_fd, p->probe_buf + p->probe_len,
		 sizeof(p->probe_buf) - p->probe_len, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return false;
	if (n <= 0) {
		probe_close(p);		/* closed or failed: again */
		return false;
	}
	p->probe_len += (size_t)n;
	st = ldapprobe_answer(p->probe_buf, p->probe_len, &code);
	if (st == LDAPPROBE_MORE && p->probe_len < sizeof(p->probe_buf))
		return false;
	if (st == LDAPPROBE_DONE && code != 0)
		log_debug(NULL, "service %s: pid %ld: LDAP search answered "
			  "with result code %d", p->rt->name, (long)p->pid,
			  code);
	probe_close(p);
	return st == LDAPPROBE_DONE && code == 0;
}

static void rt_timer_fired(uv_timer_t *t)
{
	struct svc_rt *rt = t->data;
	uint64_t now = master_now_ms();
	int probing = 0;

	if (rt->retiring || rt->m->stopping)
		return;
	if (rt->state == RT_FAILED || rt->state == RT_BACKOFF ||
	    rt_alive(rt) < rt->want)
		rt_spawn_missing(rt);
	for (unsigned i = 0; i < rt->want; i++) {
		struct proc *p = rt->procs[i];

		if (p == NULL || p->exited || p->ready)
			continue;
		if (rt->external && rt->def->has_ready && probe_ready(p)) {
			p->ready = 1;
			continue;
		}
		if (now >= p->started_ms +
				   cfg_ms(rt->m, OPT_SERVICE_READY_TIMEOUT)) {
			log_error(NULL, "service %s: pid %ld not ready after "
				  "%llu ms; killing it", rt->name, (long)p->pid,
				  (unsigned long long)cfg_ms(
					  rt->m, OPT_SERVICE_READY_TIMEOUT));
			uv_process_kill(&p->handle, SIGKILL);
			continue;
		}
		probing = 1;
	}
	rt_update_state(rt);
	if (probing && !uv_is_active((uv_handle_t *)&rt->timer))
		uv_timer_start(&rt->timer, rt_timer_fired, PROBE_INTERVAL_MS,
			       0);
}

static void rt_schedule(struct svc_rt *rt, uint64_t delay_ms)
{
	uv_timer_start(&rt->timer, rt_timer_fired, delay_ms, 0);
}

static int rt_bind(struct svc_rt *rt)
{
	const struct service *def = rt->def;
	struct str *addr = str_new(64, 4096);
	const char *error;
	int r = 0;

	rt->nfds = 0;
	for (size_t i = 0; i < def->nlisten && r == 0; i++) {
		str_clear(addr);
		if (services_addr_format(addr, &def->listen[i]) < 0)
			log_panic(NULL, "address too long");
		r = listen_pool_get(rt->m->pool,
				    def->type == SERVICE_UNIX ? LISTEN_UNIX :
								LISTEN_INET,
				    str_c(addr), (int)def->backlog, def->mode,
				    rt->fds, &rt->nfds, &error);
	}
	str_free(&addr);
	if (r < 0) {
		rt->state = RT_FAILED;
		rt_set_message(rt, "cannot listen: %s", error);
		log_error(NULL, "service %s: cannot listen: %s", rt->name,
			  error);
		rt->nfds = 0;
	}
	return r;
}

static void rt_spawn_missing(struct svc_rt *rt)
{
	int failed = 0;

	if (rt->state == RT_FAILED && rt->def->nlisten > 0 && rt->nfds == 0) {
		if (rt_bind(rt) < 0) {
			rt_after_crash(rt, rt->message);
			return;
		}
		rt->state = RT_STARTING;
	}
	for (unsigned i = 0; i < rt->want; i++) {
		if (rt->procs[i] != NULL)
			continue;
		if (proc_spawn(rt, i) < 0) {
			failed = 1;
			break;
		}
		if (rt->slot_started[i])
			rt->restarts++;
		rt->slot_started[i] = 1;
	}
	if (failed) {
		rt_after_crash(rt, rt->message);
		return;
	}
	if (rt->state == RT_BACKOFF)
		rt->state = RT_STARTING;
	rt_update_state(rt);
	if (rt->state != RT_RUNNING)
		rt_schedule(rt, PROBE_INTERVAL_MS);
}

/* ---- the table ------------------------------------------------------ */

static void rt_timer_closed(uv_handle_t *h)
{
	struct svc_rt *rt = h->data;

	if (--rt->timers_closing == 0) {
		free(rt->name);
		free(rt);
	}
}

static void rt_unlink(struct svc_rt *rt)
{
	struct svc_rt **pp = &rt->m->services;

	while (*pp != NULL && *pp != rt)
		pp = &(*pp)->next;
	if (*pp == rt)
		*pp = rt->next;
}

/* A retiring service (or any, while the master stops) goes away once its
 * last process has exited. */
static void rt_maybe_free(struct svc_rt *rt)
{
	struct master *m = rt->m;

	for (unsigned i = 0; i < RT_PROCS_MAX; i++) {
		if (rt->procs[i] != NULL)
			return;
	}
	if (!rt->retiring && !m->stopping)
		return;
	if (rt->timers_closing > 0)
		return;
	rt_unlink(rt);
	rt->timers_closing = 2;
	uv_close((uv_handle_t *)&rt->timer, rt_timer_closed);
	uv_close((uv_handle_t *)&rt->kill_timer, rt_timer_closed);
	if (m->stopping) {
		services_rt_stop_externals(m);
		master_exit_if_done(m);
	}
}

static struct svc_rt *rt_new(struct master *m, const struct service *def)
{
	struct svc_rt *rt = xcalloc(1, sizeof(*rt));

	rt->m = m;
	rt->def = def;
	rt->name = xstrdup(def->name);
	rt->external = def->external;
	rt->want = def->enabled ? services_procs(def) : 0;
	if (rt->want > RT_PROCS_MAX)
		rt->want = RT_PROCS_MAX;
	rt->state = def->enabled ? RT_STARTING : RT_DISABLED;
	uv_timer_init(m->loop, &rt->timer);
	uv_timer_init(m->loop, &rt->kill_timer);
	rt->timer.data = rt->kill_timer.data = rt;
	rt->next = m->services;
	m->services = rt;
	return rt;
}

static void rt_kill_deadline(uv_timer_t *t)
{
	struct svc_rt *rt = t->data;

	for (unsigned i = 0; i < RT_PROCS_MAX; i++) {
		struct proc *p = rt->procs[i];

		if (p != NULL && !p->exited) {
			log_warn(NULL, "service %s: pid %ld did not stop in "
				 "time; killing it", rt->name, (long)p->pid);
			uv_process_kill(&p->handle, SIGKILL);
		}
	}
}

/* Asks every process of rt to stop (SIGTERM: they drain) and arms the
 * SIGKILL deadline. */
static void rt_terminate(struct svc_rt *rt)
{
	uint64_t drain = cfg_ms(rt->m, OPT_DRAIN_TIMEOUT);
	int any = 0;

	if (rt->def != NULL && rt->def->drain_ms >= 0)
		drain = (uint64_t)rt->def->drain_ms;
	uv_timer_stop(&rt->timer);
	for (unsigned i = 0; i < RT_PROCS_MAX; i++) {
		struct proc *p = rt->procs[i];

		if (p != NULL && !p->exited && !p->stopping) {
			p->stopping = 1;
			uv_process_kill(&p->handle, SIGTERM);
			any = 1;
		}
	}
	if (any)
		uv_timer_start(&rt->kill_timer, rt_kill_deadline,
			       drain + STOP_GRACE_MS, 0);
}

static void rt_retire(struct svc_rt *rt)
{
	rt->retiring = 1;
	rt->def = NULL;
	rt_terminate(rt);
	rt_maybe_free(rt);
}

static void rt_start(struct svc_rt *rt)
{
	if (rt->state == RT_DISABLED)
		return;
	if (rt->def->nlisten > 0 && rt_bind(rt) < 0) {
		rt_after_crash(rt, rt->message);
		return;
	}
	rt_spawn_missing(rt);
}

void services_rt_start(struct master *m)
{
	size_t n = services_count(m->table);

	listen_pool_mark(m->pool);
	for (size_t i = 0; i < n; i++)
		rt_start(rt_new(m, services_get(m->table, i)));
	listen_pool_sweep(m->pool);
}

static struct svc_rt *rt_find_current(struct master *m, const char *name)
{
	for (struct svc_rt *rt = m->services; rt != NULL; rt = rt->next) {
		if (!rt->retiring && strcmp(rt->name, name) == 0)
			return rt;
	}
	return NULL;
}

static void rt_signal_all(struct svc_rt *rt, int sig)
{
	for (unsigned i = 0; i < RT_PROCS_MAX; i++) {
		struct proc *p = rt->procs[i];

		if (p != NULL && !p->exited)
			uv_process_kill(&p->handle, sig);
	}
}

void services_rt_apply(struct master *m, struct services *table)
{
	struct svc_rt *rt, *next, *old;
	size_t n = services_count(table);

	listen_pool_mark(m->pool);
	/* Keep what did not change: same listeners, same processes, which
	 * re-read tern.conf on SIGHUP. */
	for (size_t i = 0; i < n; i++) {
		const struct service *def = services_get(table, i);

		old = rt_find_current(m, def->name);
		if (old == NULL || !services_equal(old->def, def))
			continue;
		old->def = def;
		old->nfds = 0;
		if (def->enabled && def->nlisten > 0 &&
		    old->state != RT_FAILED && rt_bind(old) < 0)
			continue;
		old->kept = 1;
		rt_signal_all(old, SIGHUP);
	}
	/* Retire what changed or went away; its replacement starts first. */
	for (rt = m->services; rt != NULL; rt = next) {
		next = rt->next;
		if (rt->retiring)
			continue;
		if (rt->kept) {
			rt->kept = 0;
			continue;
		}
		rt->replaced = 1;
	}
	for (size_t i = 0; i < n; i++) {
		const struct service *def = services_get(table, i);

		old = rt_find_current(m, def->name);
		if (old != NULL && !old->replaced)
			continue;
		if (old != NULL)
			log_info(NULL, "service %s changed: restarting it",
				 def->name);
		else
			log_info(NULL, "service %s added", def->name);
		rt = rt_new(m, def);
		rt_start(rt);
		if (old != NULL) {
			old->replaced = 0;
			rt_retire(old);
		}
	}
	for (rt = m->services; rt != NULL; rt = next) {
		next = rt->next;
		if (rt->replaced) {
			log_info(NULL, "service %s removed: stopping it",
				 rt->name);
			rt->replaced = 0;
			rt_retire(rt);
		}
	}
	listen_pool_sweep(m->pool);
	services_free(&m->table);
	m->table = table;
}

void services_rt_stop(struct master *m)
{
	struct svc_rt *rt, *next;
	int tern_left = 0;

	/* Tern daemons first; external servers (directory, cache) last, once
	 * nothing of ours can still need them. */
	for (rt = m->services; rt != NULL; rt = rt->next) {
		if (!rt->external && rt_alive(rt) > 0) {
			rt_terminate(rt);
			tern_left = 1;
		}
	}
	for (rt = m->services; rt != NULL; rt = next) {
		next = rt->next;
		if (rt->external && !tern_left)
			rt_terminate(rt);
		rt_maybe_free(rt);
	}
}

int services_rt_all_gone(struct master *m)
{
	return m->services == NULL;
}

void services_rt_stop_externals(struct master *m)
{
	for (struct svc_rt *rt = m->services; rt != NULL; rt = rt->next) {
		if (!rt->external)
			return;
	}
	for (struct svc_rt *rt = m->services; rt != NULL; rt = rt->next)
		rt_terminate(rt);
}

void services_rt_status(struct master *m, struct ipc_chan *chan, uint32_t id,
			int *all_ready_r)
{
	size_t n = services_count(m->table);
	uint64_t now = master_now_ms();
	const char *error;

	*all_ready_r = 1;
	for (size_t i = 0; i < n; i++) {
		const struct service *def = services_get(m->table, i);
		struct svc_rt *rt = rt_find_current(m, def->name);
		struct ipc_msg *msg;
		uint64_t oldest = 0;

		if (rt == NULL)
			continue;
		msg = ipc_msg_new("service");
		ipc_msg_set_id(msg, id);
		ipc_msg_add_cstr(msg, "name", rt->name);
		ipc_msg_add_cstr(msg, "type", services_type_name(def->type));
		ipc_msg_add_cstr(msg, "state", rt_state_names[rt->state]);
		ipc_msg_add_int(msg, "enabled", def->enabled);
		ipc_msg_add_int(msg, "external", def->external);
		ipc_msg_add_int(msg, "procs", rt->want);
		for (unsigned k = 0; k < RT_PROCS_MAX; k++) {
			struct proc *p = rt->procs[k];

			if (p == NULL || p->exited)
				continue;
			ipc_msg_add_int(msg, "pid", p->pid);
			if (oldest == 0 || p->started_ms < oldest)
				oldest = p->started_ms;
		}
		ipc_msg_add_int(msg, "uptime",
				oldest == 0 ? 0 : (int64_t)((now - oldest) / 1000));
		ipc_msg_add_int(msg, "restarts", rt->restarts);
		for (size_t k = 0; k < rt->nfds; k++)
			ipc_msg_add_cstr(msg, "listen",
					 listen_pool_name(m->pool, rt->fds[k]));
		if (rt->message[0] != '\0')
			ipc_msg_add_cstr(msg, "message", rt->message);
		if (rt->last_exit[0] != '\0')
			ipc_msg_add_cstr(msg, "last_exit", rt->last_exit);
		if (def->enabled && rt->state != RT_RUNNING)
			*all_ready_r = 0;
		if (ipc_chan_send(chan, msg, &error) < 0)
			log_warn(NULL, "status: %s", error);
		ipc_msg_free(&msg);
	}
}
