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
 *
 * Notifications: "watch" and "unwatch" are answered here on the loop
 * thread (they touch no store data).  When an op comes back committed, its
 * events go to every other session watching them, as frames with id 0.  A
 * session whose queued output passes store_notify_backlog_max when an
 * event is due, and which has read nothing for NOTIFY_STALL_MS, is
 * dropped: it gets no more events, an "overflow" error frame (id 0) is
 * queued, and the connection is closed once that has been written or
 * after NOTIFY_DRAIN_MS.
 */
#include "config.h"

#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "ipc.h"
#include "ipcchan.h"
#include "log.h"
#include "meta.h"
#include "notify.h"
#include "stored.h"
#include "svc.h"
#include "xalloc.h"

#define STORED_OUTPUT_LIMIT ((size_t)128 << 20)	/* per client */
#define NOTIFY_DRAIN_MS 10000	/* an overflowed client's last chance */
#define NOTIFY_STALL_MS 5000	/* over the backlog, reading nothing */
#define NOTIFY_DRAIN_TICK_MS 100

struct store_session {
	struct stored *d;
	struct ipc_chan *chan;		/* NULL once closing */
	int open;			/* until the channel's on_close */
	struct store_session *prev, *next;
	unsigned in_flight;
	unsigned writes;		/* ops in flight that change the store */
	uv_timer_t *drain;		/* after an overflow, until closed */
	unsigned drain_ticks;
	int overflowed;
	uint64_t seen_read;		/* ipc_chan_output_read, sampled */
	uint64_t progress_ms;		/* when the client last read, or was
					 * under the backlog limit */
	char id[16];
};

static const struct ipc_field_spec watch_schema[] = {
	{ "account", IPC_INT, 1, 1, 0, 0 },
	{ "folder", IPC_STR, 0, 1, META_FOLDER_NAME_MAX, IPC_SPEC_NO_NUL },
	{ NULL, 0, 0, 0, 0, 0 }
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

/* ---- notifications ---- */

static void drain_closed(uv_handle_t *h)
{
	free(h);
}

static void drain_stop(struct store_session *s)
{
	if (s->drain == NULL)
		return;
	uv_timer_stop(s->drain);
	uv_close((uv_handle_t *)s->drain, drain_closed);
	s->drain = NULL;
}

static void drain_tick(uv_timer_t *t)
{
	struct store_session *s = t->data;

	if (s->chan != NULL && ipc_chan_output_pending(s->chan) > 0 &&
	    ++s->drain_ticks < NOTIFY_DRAIN_MS / NOTIFY_DRAIN_TICK_MS)
		return;
	drain_stop(s);
	if (s->chan != NULL)
		ipc_chan_close(&s->chan);
}

/* The client does not read: no more events, an error, then the close. */
static void session_overflow(struct store_session *s, size_t pending)
{
	log_warn(s->id, "client does not read its notifications (%zu bytes "
		 "queued): dropping it", pending);
	s->overflowed = 1;
	session_error(s, 0, "overflow", "notifications not read in time; "
		      "the connection is closed");
	s->drain = xmalloc(sizeof(*s->drain));
	uv_timer_init(svc_loop(s->d->svc), s->drain);
	s->drain->data = s;
	uv_timer_start(s->drain, drain_tick, NOTIFY_DRAIN_TICK_MS,
		       NOTIFY_DRAIN_TICK_MS);
}

static const char *const event_types[] = {
	[NOTIFY_NEW] = "notify.new",
	[NOTIFY_FLAGS] = "notify.flags",
	[NOTIFY_EXPUNGE] = "notify.expunge",
	[NOTIFY_RENAME] = "notify.rename",
	[NOTIFY_DELETE] = "notify.delete",
};

/* notify_send_fn: one event frame (id 0) to a watching session. */
static int session_notify(void *client, const struct notify_event *ev)
{
	struct store_session *s = client;
	struct ipc_msg *m;
	size_t pending;
	uint64_t nread, now;

	if (s->chan == NULL || s->overflowed)
		return -1;
	pending = ipc_chan_output_pending(s->chan);
	now = uv_now(svc_loop(s->d->svc));
	/* Only a client that reads nothing is dropped: one that is busy
	 * reading a large backlog of answers (and events) it asked for goes
	 * on (the channel's own limit bounds its output).  How much it has
	 * read (a system call) matters only over the limit. */
	if (pending <= s->d->notify_backlog_max) {
		s->progress_ms = now;
	} else {
		nread = ipc_chan_output_read(s->chan);
		if (nread != s->seen_read)
			s->progress_ms = now;
		s->seen_read = nread;
		if (now - s->progress_ms >= NOTIFY_STALL_MS) {
			session_overflow(s, pending);
			return -1;
		}
	}
	m = ipc_msg_new(event_types[ev->kind]);
	ipc_msg_add_int(m, "account", ev->account);
	ipc_msg_add_cstr(m, "folder", ev->folder);
	ipc_msg_add_int(m, "uid", ev->uid);
	ipc_msg_add_int(m, "modseq", (int64_t)ev->modseq);
	if (ev->kind == NOTIFY_RENAME)
		ipc_msg_add_cstr(m, "new_name", ev->new_name);
	if (ev->kind == NOTIFY_FLAGS) {
		ipc_msg_add_int(m, "flags", ev->flags);
		ipc_msg_add_cstr(m, "keywords", ev->keywords != NULL ?
				 ev->keywords : "");
	}
	session_send(s, m);
	ipc_msg_free(&m);
	return 0;
}

/* "watch" and "unwatch", answered at once. */
static void session_watch(struct store_session *s, struct ipc_msg *msg,
			  int add)
{
	struct str *folder = str_new(64, META_FOLDER_NAME_MAX);
	struct ipc_msg *ok;
	const char *name = "", *error;
	int64_t account;

	if (ipc_msg_check(msg, watch_schema, &error) < 0) {
		session_error(s, ipc_msg_id(msg), "invalid", error);
	} else if (ipc_msg_get_int(msg, "account", &account) < 0 ||
		   account <= 0 ||
		   (ipc_msg_count(msg, "folder") > 0 &&
		    (ipc_msg_get_cstr(msg, "folder", &name) < 0 ||
		     meta_folder_name_check(name, folder) < 0))) {
		session_error(s, ipc_msg_id(msg), "invalid",
			      "bad account or folder");
	} else if (add && notify_watch(s->d->hub, s, account,
				       str_c(folder)) < 0) {
		session_error(s, ipc_msg_id(msg), "invalid",
			      "too many watches on this connection");
	} else {
		if (!add)
			(void)notify_unwatch(s->d->hub, s, account,
					     str_c(folder));
		ok = ipc_msg_new("ok");
		ipc_msg_set_id(ok, ipc_msg_id(msg));
		session_send(s, ok);
		ipc_msg_free(&ok);
	}
	str_free(&folder);
}

/* ---- requests ---- */

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

	if (ipc_msg_type_is(msg, "watch") || ipc_msg_type_is(msg, "unwatch")) {
		session_watch(s, msg, ipc_msg_type_is(msg, "watch"));
		return;
	}
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
	/* Reads go to the reader unless a write of this client is still on
	 * its way: then they queue behind it, so a client reads its writes. */
	if (ops_read_only(def) && s->writes == 0 && s->d->reader != NULL) {
		reader_submit(s->d->reader, op);
		return;
	}
	op->write = !ops_read_only(def);
	if (op->write)
		s->writes++;
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
	drain_stop(s);
	notify_forget(d->hub, s);
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
	struct stored *d = ctx;

	if (s != NULL && op->write)
		s->writes--;
	for (size_t i = 0; s != NULL && i < op->nreplies; i++)
		session_send(s, op->replies[i]);
	if (op->events.n > 0)
		(void)notify_hub_publish(d->hub, &op->events, s,
					 session_notify);
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
		/* One daemon's connection carries the answers of all its
		 * sessions: a folder's metadata can be megabytes. */
		.output_limit = STORED_OUTPUT_LIMIT,
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
	s->progress_ms = uv_now(svc_loop(d->svc));
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
