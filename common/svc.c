/* svc.c: see svc.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "compat.h"
#include "cfg.h"
#include "ipc.h"
#include "log.h"
#include "paths.h"
#include "privs.h"
#include "str.h"
#include "svc.h"
#include "tls.h"
#include "xalloc.h"

#define SVC_LISTEN_FD_FIRST 4
#define SVC_STATUS_FD 3
#define SVC_LISTEN_MAX 32
#define SVC_OVERRIDES_MAX 32

struct svc_listener {
	union {
		uv_tcp_t tcp;
		uv_pipe_t pipe;
		uv_stream_t stream;
		uv_handle_t handle;
	} h;
	struct svc *svc;
	int index;
	int open;
};

struct svc {
	const struct svc_spec *spec;
	uv_loop_t *loop;
	struct cfg *cfg;
	char *root;
	const char *conf_path;
	char *conf_alloc;
	const char *name;
	const char *overrides[SVC_OVERRIDES_MAX];
	size_t noverrides;
	struct svc_listener listeners[SVC_LISTEN_MAX];
	size_t nlisteners;
	uv_signal_t sig_term, sig_int, sig_hup;
	uv_pipe_t status;		/* fd 3: EOF = the master went away */
	int status_open;
	uv_timer_t drain_timer;
	struct tls_ctx *tls;
	int tls_tried;
	size_t sessions;
	struct svc_session *session_list;
	int stopping;
	int drained;		/* on_drained was called */
	int debug;
	void *ctx;
};

static void svc_usage(const struct svc_spec *spec)
{
	fprintf(stderr,
		"usage: tern-%s [-r ROOT] [-c FILE] [-o KEY=VALUE]... [-d]\n"
		"(normally started by tern-master)\n", spec->name);
}

uv_loop_t *svc_loop(struct svc *svc) { return svc->loop; }
const struct cfg *svc_config(struct svc *svc) { return svc->cfg; }
const char *svc_root(struct svc *svc) { return svc->root; }
const char *svc_name(struct svc *svc) { return svc->name; }
void *svc_ctx(struct svc *svc) { return svc->ctx; }
void svc_set_ctx(struct svc *svc, void *ctx) { svc->ctx = ctx; }
size_t svc_sessions(struct svc *svc) { return svc->sessions; }
int svc_stopping(struct svc *svc) { return svc->stopping; }

const char *svc_override(struct svc *svc, const char *key)
{
	size_t n = strlen(key);

	for (size_t i = svc->noverrides; i-- > 0;) {
		const char *o = svc->overrides[i];
		if (strncmp(o, key, n) == 0 && o[n] == '=')
			return o + n + 1;
	}
	return NULL;
}

void svc_new_id(char id[static 16])
{
	static const char hex[] = "0123456789ABCDEF";
	unsigned char r[5];

	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		log_panic(NULL, "getrandom failed: %s", strerror(errno));
	for (size_t i = 0; i < sizeof(r); i++) {
		id[2 * i] = hex[r[i] >> 4];
		id[2 * i + 1] = hex[r[i] & 15];
	}
	id[10] = '\0';
}

static void cfg_warn_log(void *ctx, const char *msg)
{
	log_warn(NULL, "%s", msg);
}

static struct cfg *svc_load_cfg(struct svc *svc)
{
	struct str *err = str_new(256, 4096);
	struct cfg *cfg = NULL;

	if (cfg_load(svc->root, svc->conf_path, cfg_warn_log, svc, &cfg,
		     err) < 0)
		log_error(NULL, "%s", str_c(err));
	str_free(&err);
	return cfg;
}

static void svc_open_log(struct svc *svc)
{
	const char *error;
	enum log_level level = svc->debug ? LOGL_DEBUG :
				(enum log_level)cfg_enum(svc->cfg,
							 OPT_LOG_LEVEL);

	if (log_open(svc->spec->name, cfg_str(svc->cfg, OPT_LOG_TARGET),
		     level, &error) < 0)
		log_error(NULL, "cannot open log %s: %s",
			  cfg_str(svc->cfg, OPT_LOG_TARGET), error);
}

struct tls_ctx *svc_tls_server(struct svc *svc)
{
	const char *error;

	if (svc->tls != NULL || svc->tls_tried)
		return svc->tls;
	svc->tls_tried = 1;
	svc->tls = tls_ctx_server_new(cfg_str(svc->cfg, OPT_TLS_CERT_FILE),
				      cfg_str(svc->cfg, OPT_TLS_KEY_FILE),
				      cfg_str(svc->cfg, OPT_TLS_CIPHERS),
				      cfg_str(svc->cfg, OPT_TLS_MIN_VERSION),
				      &error);
	if (svc->tls == NULL)
		log_error(NULL, "TLS disabled: %s", error);
	return svc->tls;
}

int svc_tls_mode(struct svc *svc, const char *implicit_name, bool *implicit_r,
		 const char **error_r)
{
	const char *name = svc_name(svc);
	const char *o = svc_override(svc, "tls");
	size_t n = strlen(implicit_name);

	*implicit_r = strcmp(name, implicit_name) == 0 ||
		      (strncmp(name, implicit_name, n) == 0 && name[n] == '-');
	if (o != NULL) {
		if (strcmp(o, "implicit") == 0) {
			*implicit_r = true;
		} else if (strcmp(o, "starttls") == 0) {
			*implicit_r = false;
		} else {
			*error_r = "-o tls= must be implicit or starttls";
			return -1;
		}
	}
	if (*implicit_r && svc_tls_server(svc) == NULL) {
		*error_r = "implicit TLS needs tls_cert_file and tls_key_file";
		return -1;
	}
	return 0;
}

int svc_enum_setting(struct svc *svc, const char *key, unsigned cfg_value,
		     const char *const *words, size_t nwords)
{
	const char *o = svc_override(svc, key);

	if (o == NULL)
		return (int)cfg_value;
	for (size_t i = 0; i < nwords; i++) {
		if (strcasecmp(o, words[i]) == 0)
			return (int)i;
	}
	log_warn(NULL, "ignoring -o %s=%s: not one of the allowed values",
		 key, o);
	return (int)cfg_value;
}

bool svc_plaintext_allowed(enum svc_plaintext setting, bool tls,
			   const char *peer)
{
	switch (setting) {
	case SVC_PLAINTEXT_YES:
		return true;
	case SVC_PLAINTEXT_LOOPBACK:
		return tls || strncmp(peer, "127.", 4) == 0 ||
		       strcmp(peer, "::1") == 0 || strcmp(peer, "unix") == 0;
	case SVC_PLAINTEXT_NO:
		break;
	}
	return tls;
}

enum svc_plaintext svc_plaintext_setting(struct svc *svc, const char *key,
					 unsigned cfg_value)
{
	static const char *const words[] = SVC_PLAINTEXT_WORDS;

	return (enum svc_plaintext)svc_enum_setting(svc, key, cfg_value, words,
						    TERN_NELEM(words));
}

void svc_session_opened(struct svc *svc)
{
	svc->sessions++;
}

static void svc_finish(struct svc *svc);

void svc_session_add(struct svc *svc, struct svc_session *ss, unsigned holds)
{
	ss->holds = holds;
	ss->prev = NULL;
	ss->next = svc->session_list;
	if (ss->next != NULL)
		ss->next->prev = ss;
	svc->session_list = ss;
	svc_session_opened(svc);
}

bool svc_session_put(struct svc *svc, struct svc_session *ss)
{
	if (ss->holds == 0)
		log_panic(NULL, "session hold underflow");
	if (--ss->holds > 0)
		return false;
	if (ss->prev != NULL)
		ss->prev->next = ss->next;
	else
		svc->session_list = ss->next;
	if (ss->next != NULL)
		ss->next->prev = ss->prev;
	ss->prev = ss->next = NULL;
	svc_session_closed(svc);
	return true;
}

struct svc_session *svc_session_first(struct svc *svc)
{
	return svc->session_list;
}

void svc_session_closed(struct svc *svc)
{
	if (svc->sessions == 0)
		log_panic(NULL, "session count underflow");
	svc->sessions--;
	if (svc->stopping && svc->sessions == 0)
		svc_finish(svc);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct svc_listener *l = server->data;
	struct svc *svc = l->svc;
	uv_stream_t *client;

	if (status < 0) {
		log_warn(NULL, "accept: %s", uv_strerror(status));
		return;
	}
	if (server->type == UV_TCP) {
		uv_tcp_t *t = xmalloc(sizeof(*t));
		uv_tcp_init(svc->loop, t);
		client = (uv_stream_t *)t;
	} else {
		uv_pipe_t *p = xmalloc(sizeof(*p));
		uv_pipe_init(svc->loop, p, 0);
		client = (uv_stream_t *)p;
	}
	if (uv_accept(server, client) < 0 || svc->spec->on_accept == NULL) {
		uv_close((uv_handle_t *)client, (uv_close_cb)free);
		return;
	}
	/* Replies are written whole: no delayed-ACK stall between two
	 * pipelined replies. */
	if (server->type == UV_TCP)
		uv_tcp_nodelay((uv_tcp_t *)client, 1);
	svc->spec->on_accept(svc, client, l->index);
}

static int svc_adopt_listeners(struct svc *svc, const char **error_r)
{
	const char *env = getenv("TERN_LISTEN_FDS");
	long n;

	if (env == NULL)
		return 0;
	n = strtol(env, NULL, 10);
	if (n < 0 || n > SVC_LISTEN_MAX) {
		*error_r = "bad TERN_LISTEN_FDS";
		return -1;
	}
	for (long i = 0; i < n; i++) {
		struct svc_listener *l = &svc->listeners[i];
		int fd = SVC_LISTEN_FD_FIRST + (int)i, domain = 0, r;
		socklen_t len = sizeof(domain);

		if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0) {
			*error_r = "inherited listening socket is missing";
			return -1;
		}
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		if (domain == AF_UNIX) {
			uv_pipe_init(svc->loop, &l->h.pipe, 0);
			r = uv_pipe_open(&l->h.pipe, fd);
		} else {
			uv_tcp_init(svc->loop, &l->h.tcp);
			r = uv_tcp_open(&l->h.tcp, fd);
		}
		l->h.handle.data = l;
		l->svc = svc;
		l->index = (int)i;
		l->open = 1;
		svc->nlisteners++;
		if (r == 0)
			r = uv_listen(&l->h.stream, SOMAXCONN, on_connection);
		if (r < 0) {
			*error_r = uv_strerror(r);
			return -1;
		}
	}
	return 0;
}

static int svc_drop_privileges(struct svc *svc, const char **error_r)
{
	static char buf[512];
	struct str *err = str_new(128, sizeof(buf) - 1);
	int r = privs_drop(cfg_str(svc->cfg, OPT_USER), err);

	if (r < 0) {
		str_lcpy(buf, str_c(err), sizeof(buf));
		*error_r = buf;
	}
	str_free(&err);
	return r;
}

static void svc_report_ready(struct svc *svc)
{
	struct ipc_msg *m;
	struct str *frame;
	const char *error;

	if (getenv("TERN_STATUS_FD") == NULL)
		return;
	m = ipc_msg_new("ready");
	ipc_msg_add_int(m, "pid", getpid());
	frame = str_new(64, 4096);
	if (ipc_msg_encode(m, 4096, frame, &error) < 0 ||
	    write(SVC_STATUS_FD, str_c(frame), str_len(frame)) !=
		    (ssize_t)str_len(frame))
		log_warn(NULL, "cannot report readiness to the master");
	str_free(&frame);
	ipc_msg_free(&m);
}

static void svc_stop(struct svc *svc);

static void status_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	static char mem[256];

	buf->base = mem;
	buf->len = sizeof(mem);
}

static void status_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct svc *svc = s->data;

	if (n >= 0)
		return;		/* the master sends nothing yet */
	uv_read_stop(s);
	if (!svc->stopping) {
		log_warn(NULL, "the master went away: stopping");
		svc_stop(svc);
	}
}

/* Watches the status socket, so that we stop when the master dies. */
static void svc_watch_master(struct svc *svc)
{
	if (getenv("TERN_STATUS_FD") == NULL)
		return;
	if (uv_pipe_init(svc->loop, &svc->status, 0) < 0)
		return;
	svc->status.data = svc;
	svc->status_open = 1;
	if (uv_pipe_open(&svc->status, SVC_STATUS_FD) < 0 ||
	    uv_read_start((uv_stream_t *)&svc->status, status_alloc,
			  status_read) < 0)
		log_warn(NULL, "cannot watch the master's status socket");
}

static void close_walk_cb(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* The loop may end: let the daemon close its peers, then close the
 * skeleton's own handles. */
static void svc_finish(struct svc *svc)
{
	if (!svc->drained) {
		svc->drained = 1;
		if (svc->spec->on_drained != NULL)
			svc->spec->on_drained(svc);
	}
	if (!uv_is_closing((uv_handle_t *)&svc->drain_timer))
		uv_close((uv_handle_t *)&svc->drain_timer, NULL);
	if (svc->status_open) {
		svc->status_open = 0;
		uv_close((uv_handle_t *)&svc->status, NULL);
	}
	if (!uv_is_closing((uv_handle_t *)&svc->sig_term)) {
		uv_close((uv_handle_t *)&svc->sig_term, NULL);
		uv_close((uv_handle_t *)&svc->sig_int, NULL);
		uv_close((uv_handle_t *)&svc->sig_hup, NULL);
	}
}

static void on_drain_deadline(uv_timer_t *t)
{
	struct svc *svc = t->data;

	log_warn(NULL, "drain deadline passed with %zu session(s) open; "
		 "closing them", svc->sessions);
	/* Exit at once: the kernel closes the sockets.  Nothing is lost,
	 * since every daemon acknowledges only what is already durable, and
	 * a half-done store batch is recovered at the next start as after a
	 * crash.  Closing the sessions' handles here without their own close
	 * callbacks would only leak their state. */
	_exit(0);
}

static void svc_stop(struct svc *svc)
{
	uint64_t drain;
	const char *d;

	if (svc->stopping)
		return;
	svc->stopping = 1;
	for (size_t i = 0; i < svc->nlisteners; i++) {
		if (svc->listeners[i].open) {
			uv_close(&svc->listeners[i].h.handle, NULL);
			svc->listeners[i].open = 0;
		}
	}
	log_info(NULL, "stopping: %zu session(s) to drain", svc->sessions);
	if (svc->spec->on_stop != NULL)
		svc->spec->on_stop(svc);
	if (svc->sessions == 0) {
		svc_finish(svc);
		return;
	}
	drain = cfg_duration(svc->cfg, OPT_DRAIN_TIMEOUT);
	d = getenv("TERN_DRAIN_MS");
	if (d != NULL)
		drain = strtoull(d, NULL, 10);
	uv_timer_start(&svc->drain_timer, on_drain_deadline, drain, 0);
}

static void svc_reload(struct svc *svc)
{
	struct cfg *cfg = svc_load_cfg(svc);
	const char *error;

	if (cfg == NULL) {
		log_error(NULL, "reload failed: keeping the old configuration");
		return;
	}
	cfg_free(&svc->cfg);
	svc->cfg = cfg;
	svc_open_log(svc);
	if (log_reopen(&error) < 0)
		log_error(NULL, "cannot reopen log: %s", error);
	if (svc->tls != NULL || svc->tls_tried) {
		tls_ctx_free(&svc->tls);
		svc->tls_tried = 0;
		(void)svc_tls_server(svc);
	}
	log_info(NULL, "configuration reloaded");
	if (svc->spec->on_reload != NULL)
		svc->spec->on_reload(svc);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct svc *svc = h->data;

	if (signum == SIGHUP)
		svc_reload(svc);
	else
		svc_stop(svc);
}

static int svc_parse_args(struct svc *svc, int argc, char **argv)
{
	struct str *opts = str_new(32, 256);
	int c, bad = 0;

	if (str_append_c(opts, "+r:c:o:d") < 0 ||
	    (svc->spec->optstring != NULL &&
	     str_append_c(opts, svc->spec->optstring) < 0))
		log_fatal(NULL, "option string too long");
	while ((c = getopt(argc, argv, str_c(opts))) != -1) {
		switch (c) {
		case 'r':
			free(svc->root);
			svc->root = xstrdup(optarg);
			break;
		case 'c':
			svc->conf_path = optarg;
			break;
		case 'o':
			if (strchr(optarg, '=') == NULL ||
			    svc->noverrides == SVC_OVERRIDES_MAX)
				bad = 1;
			else
				svc->overrides[svc->noverrides++] = optarg;
			break;
		case 'd':
			svc->debug = 1;
			break;
		default:
			if (c == '?' || svc->spec->getopt == NULL ||
			    svc->spec->getopt(svc, c, optarg) < 0)
				bad = 1;
		}
	}
	str_free(&opts);
	if (bad || optind != argc) {
		svc_usage(svc->spec);
		return -1;
	}
	return 0;
}

static void svc_init_root(struct svc *svc)
{
	const char *env = getenv("TERN_ROOT");

	if (svc->root == NULL)
		svc->root = xstrdup(env != NULL && *env != '\0' ? env :
							TERN_PREFIX);
	if (svc->conf_path == NULL)
		svc->conf_path = svc->conf_alloc =
			path_join(svc->root, "conf/tern.conf");
}

static int svc_start(struct svc *svc, const char **error_r)
{
	if (svc_adopt_listeners(svc, error_r) < 0)
		return -1;
	if (svc->spec->pre_drop != NULL && svc->spec->pre_drop(svc, error_r) < 0)
		return -1;
	if (svc_drop_privileges(svc, error_r) < 0)
		return -1;
	if (svc->spec->init != NULL && svc->spec->init(svc, error_r) < 0)
		return -1;
	return 0;
}

int svc_main(int argc, char **argv, const struct svc_spec *spec)
{
	struct svc svc_s = { .spec = spec };
	struct svc *svc = &svc_s;
	const char *error = NULL;
	int status = 0;

	signal(SIGPIPE, SIG_IGN);
	if (log_open(spec->name, "stderr", LOGL_INFO, &error) < 0)
		return 1;
	if (svc_parse_args(svc, argc, argv) < 0)
		return 1;
	svc_init_root(svc);
	svc->name = getenv("TERN_SERVICE") != NULL ? getenv("TERN_SERVICE") :
						       spec->name;
	svc->cfg = svc_load_cfg(svc);
	if (svc->cfg == NULL)
		return 1;
	svc_open_log(svc);
	svc->loop = uv_default_loop();
	uv_signal_init(svc->loop, &svc->sig_term);
	uv_signal_init(svc->loop, &svc->sig_int);
	uv_signal_init(svc->loop, &svc->sig_hup);
	uv_timer_init(svc->loop, &svc->drain_timer);
	svc->sig_term.data = svc->sig_int.data = svc->sig_hup.data = svc;
	svc->drain_timer.data = svc;
	uv_signal_start(&svc->sig_term, on_signal, SIGTERM);
	uv_signal_start(&svc->sig_int, on_signal, SIGINT);
	uv_signal_start(&svc->sig_hup, on_signal, SIGHUP);

	if (svc_start(svc, &error) < 0) {
		log_error(NULL, "cannot start: %s", error);
		status = 1;
		svc_stop(svc);
		uv_walk(svc->loop, close_walk_cb, NULL);
	} else {
		log_info(NULL, "daemon started (service %s)", svc->name);
		svc_report_ready(svc);
		svc_watch_master(svc);
	}
	uv_run(svc->loop, UV_RUN_DEFAULT);
	if (spec->deinit != NULL)
		spec->deinit(svc);
	uv_walk(svc->loop, close_walk_cb, NULL);
	uv_run(svc->loop, UV_RUN_DEFAULT);
	uv_loop_close(svc->loop);
	if (status == 0)
		log_info(NULL, "daemon stopped");
	tls_ctx_free(&svc->tls);
	cfg_free(&svc->cfg);
	free(svc->root);
	free(svc->conf_alloc);
	log_close();
	return status;
}
