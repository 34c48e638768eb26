/*
 * control.c: the master's control socket, run/master.sock (mode 0600).
 *
 * ternctl connects, receives the hello (proto "tern-master", version 1) and
 * sends one request per frame: "status" (answered by one "service" frame per
 * service and an "end" frame), "reload" and "stop" (answered by "ok" or
 * "error" with a message).  docs/protocols/master.md has the fields.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compat.h"
#include "cfg.h"
#include "ipc.h"
#include "ipcchan.h"
#include "log.h"
#include "master.h"
#include "str.h"

#define CONTROL_CLIENTS_MAX 64

static unsigned control_clients;

static const struct ipc_field_spec no_fields[] = { { .name = NULL } };

static void control_reply(struct ipc_chan *chan, uint32_t id, const char *type,
			  const char *message)
{
	struct ipc_msg *msg = ipc_msg_new(type);
	const char *error;

	ipc_msg_set_id(msg, id);
	if (message != NULL)
		ipc_msg_add_cstr(msg, "message", message);
	if (ipc_chan_send(chan, msg, &error) < 0)
		log_warn(NULL, "control: %s", error);
	ipc_msg_free(&msg);
}

static void control_status(struct master *m, struct ipc_chan *chan,
			   uint32_t id)
{
	struct ipc_msg *end;
	const char *error;
	int ready;

	services_rt_status(m, chan, id, &ready);
	end = ipc_msg_new("end");
	ipc_msg_set_id(end, id);
	ipc_msg_add_int(end, "master_pid", getpid());
	ipc_msg_add_int(end, "uptime",
			(int64_t)((master_now_ms() - m->started_ms) / 1000));
	ipc_msg_add_int(end, "ready", ready);
	ipc_msg_add_int(end, "stopping", m->stopping);
	if (ipc_chan_send(chan, end, &error) < 0)
		log_warn(NULL, "control: %s", error);
	ipc_msg_free(&end);
}

static void control_msg(struct ipc_chan *chan, struct ipc_msg **msgp,
			void *ctx)
{
	struct master *m = ctx;
	struct ipc_msg *msg = *msgp;
	uint32_t id = ipc_msg_id(msg);
	const char *error;

	if (ipc_msg_check(msg, no_fields, &error) < 0) {
		control_reply(chan, id, "error", error);
	} else if (ipc_msg_type_is(msg, "status")) {
		control_status(m, chan, id);
	} else if (ipc_msg_type_is(msg, "reload")) {
		struct str *err = str_new(128, 4096);

		if (m->stopping)
			control_reply(chan, id, "error", "master is stopping");
		else if (master_reload(m, err) < 0)
			control_reply(chan, id, "error", str_c(err));
		else
			control_reply(chan, id, "ok", NULL);
		str_free(&err);
	} else if (ipc_msg_type_is(msg, "stop")) {
		control_reply(chan, id, "ok", NULL);
		master_stop(m);
	} else {
		control_reply(chan, id, "error", "unknown request");
	}
}

static void control_closed(struct ipc_chan *chan, const char *error,
			   void *ctx)
{
	if (error != NULL)
		log_debug(NULL, "control connection: %s", error);
	control_clients--;
}

static void control_accept(uv_stream_t *server, int status)
{
	struct master *m = server->data;
	struct ipc_chan_settings set = {
		.proto = MASTER_PROTO,
		.version = MASTER_PROTO_VERSION,
		.on_msg = control_msg,
		.on_close = control_closed,
		.ctx = m,
	};
	struct ipc_chan *chan;
	const char *error;
	uid_t uid;
	pid_t pid;
	gid_t gid;

	if (status < 0)
		return;
	chan = ipc_chan_accept(server, &set, &error);
	if (chan == NULL) {
		log_warn(NULL, "control: accept: %s", error);
		return;
	}
	control_clients++;
	/* Only the master's own user (root) may steer it. */
	if (ipc_chan_peer_cred(chan, &pid, &uid, &gid, &error) < 0 ||
	    (uid != geteuid() && uid != 0) ||
	    control_clients > CONTROL_CLIENTS_MAX) {
		log_warn(NULL, "control: refused a client (uid %ld)",
			 (long)uid);
		ipc_chan_close(&chan);
	}
}

int control_open(struct master *m, const char **error_r)
{
	static char err[512];
	struct str *path = str_new(128, 4096);
	int r;

	if (str_printf(path, "%s/run/master.sock", m->root) < 0) {
		*error_r = "root path too long";
		str_free(&path);
		return -1;
	}
	unlink(str_c(path));
	uv_pipe_init(m->loop, &m->control, 0);
	m->control.data = m;
	m->control_open = 1;
	r = uv_pipe_bind(&m->control, str_c(path));
	if (r == 0 && chmod(str_c(path), 0600) < 0)
		r = uv_translate_sys_error(errno);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&m->control, 16, control_accept);
	if (r < 0) {
		snprintf(err, sizeof(err), "%s: %s", str_c(path),
			 uv_strerror(r));
		*error_r = err;
	}
	str_free(&path);
	return r < 0 ? -1 : 0;
}

void control_close(struct master *m)
{
	struct str *path;

	if (!m->control_open)
		return;
	m->control_open = 0;
	uv_close((uv_handle_t *)&m->control, NULL);
	path = str_new(128, 4096);
	if (str_printf(path, "%s/run/master.sock", m->root) == 0)
		unlink(str_c(path));
	str_free(&path);
}
