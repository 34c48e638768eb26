/*
 * session.c: one tern-stored client connection, on the loop thread.
 *
 * The channel sends the hello (proto "tern-stored", version 1).  Each
 * request is looked up, checked against its schema, and queued for the
 * writer; its replies go out when the writer hands it back, in completion
 * order (every reply carries the request id).  An unknown type or a schema
 * error is answered with an error frame at once; a bad frame closes this
 * client only (the channel does that).  A session lives until its channel
 * has closed and no op of it is in flight.
 */
#include "config.h"

#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "ipc.h"
#include "ipcchan.h"
#include "log.h"
#include "stored.h"
#include "svc.h"
#include "xalloc.h"

struct store_session {
	struct stored *d;
	struct ipc_chan *chan;		/* NULL once closing */
	int open;			/* until the channel's on_close */
	struct store_session *prev, *next;
	unsigned in_flight;
	char id[16];
};

static void session_send(struct store_session *s, struct ipc_msg *m)
{
	const char *error;

	if (s->chan != NULL && ipc_chan_send(s->chan, m, &error) < 0)
		log_warn(s->id, "reply not sent: %s", error);
}

static void session_error(struct store_session *s, uint32_t id,
			  const char *code, const char *message)
{
	struct ipc_msg *m = ipc_msg_new("error");

	ipc_msg_set_id(m, id);
	ipc_msg_add_cstr(m, "code", code);
	ipc_msg_add_cstr(m, "message", message);
	session_send(s, m);
	ipc_msg_free(&m);
}

static void session_release(struct store_session *s)
{
	struct stored *d = s->d;

	if (s->open || s->in_flight > 0)
		return;
	free(s);
	d->nsessions--;
	if (d->nsessions == 0 && svc_stopping(d->svc))
		stored_sessions_gone(d);
}

static void session_msg(struct ipc_chan *chan, struct ipc_msg **msgp,
			void *ctx)
{
	struct store_session *s = ctx;
	struct ipc_msg *msg = *msgp;
	const struct store_request *def = ops_find(ipc_msg_type(msg));
	struct store_op *op;
	const char *error;

	if (def == NULL) {
		session_error(s, ipc_msg_id(msg), "unknown",
			      "unknown request type");
		return;
	}
	if (ipc_msg_check(msg, ops_schema(def), &error) < 0) {
		session_error(s, ipc_msg_id(msg), "invalid", error);
		return;
	}
	if (s->in_flight >= s->d->requests_max || svc_stopping(s->d->svc)) {
		session_error(s, ipc_msg_id(msg), "busy",
			      svc_stopping(s->d->svc) ? "stopping" :
			      "too many requests in flight");
		return;
	}
	op = xcalloc(1, sizeof(*op));
	op->def = def;
	op->req = msg;
	op->session = s;
	op->received = (int64_t)time(NULL);
	*msgp = NULL;
	s->in_flight++;
	commit_submit(s->d->commit, op);
}

static void session_closed(struct ipc_chan *chan, const char *error,
			   void *ctx)
{
	struct store_session *s = ctx;
	struct stored *d = s->d;

	if (error != NULL)
		log_info(s->id, "client closed: %s", error);
	s->chan = NULL;
	s->open = 0;
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		d->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	svc_session_closed(d->svc);
	session_release(s);
}

void session_op_done(struct store_op *op, void *ctx)
{
	struct store_session *s = op->session;

	for (size_t i = 0; s != NULL && i < op->nreplies; i++)
		session_send(s, op->replies[i]);
	op_free(&op);
	if (s == NULL)
		return;
	s->in_flight--;
	if (s->in_flight == 0 && s->chan != NULL && svc_stopping(s->d->svc))
		ipc_chan_close(&s->chan);
	session_release(s);
}

void session_accept(struct stored *d, uv_stream_t *client)
{
	struct ipc_chan_settings set = {
		.max_frame = d->frame_max,
		.proto = STORED_PROTO,
		.version = STORED_PROTO_VERSION,
		.on_msg = session_msg,
		.on_close = session_closed,
	};
	struct store_session *s;
	const char *error;
	uv_os_fd_t fd;
	int dupfd;

	if (uv_fileno((uv_handle_t *)client, &fd) < 0 ||
	    (dupfd = dup(fd)) < 0) {
		log_error(NULL, "accept: cannot take the connection");
		uv_close((uv_handle_t *)client, (uv_close_cb)free);
		return;
	}
	uv_close((uv_handle_t *)client, (uv_close_cb)free);
	s = xcalloc(1, sizeof(*s));
	s->d = d;
	svc_new_id(s->id);
	set.ctx = s;
	s->chan = ipc_chan_open_fd(svc_loop(d->svc), dupfd, IPC_CHAN_SERVER,
				   &set, &error);
	if (s->chan == NULL) {
		log_error(s->id, "accept: %s", error);
		free(s);
		return;
	}
	s->open = 1;
	d->nsessions++;
	s->next = d->sessions;
	if (s->next != NULL)
		s->next->prev = s;
	d->sessions = s;
	svc_session_opened(d->svc);
	log_debug(s->id, "client connected");
}

void sessions_stop(struct stored *d)
{
	struct store_session *s, *next;

	for (s = d->sessions; s != NULL; s = next) {
		next = s->next;
		if (s->in_flight == 0 && s->chan != NULL)
			ipc_chan_close(&s->chan);
	}
}
