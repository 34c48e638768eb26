/* ipcchan.c: see ipcchan.h. */
#include "config.h"

#include "compat.h"

#include <errno.h>
#include <linux/sockios.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ipc.h"
#include "ipcchan.h"
#include "log.h"
#include "str.h"

#define IPC_CHAN_READ_SIZE 65536
#define IPC_CHAN_ERROR_MAX 512

struct ipc_chan {
	uv_pipe_t pipe;		/* pipe.data is the chan */
	uv_write_t wreq;
	uv_connect_t creq;
	struct ipc_chan_settings set;
	struct str *proto;	/* copy of set.proto */
	enum ipc_chan_role role;
	struct ipc_decoder *dec;
	struct str *pending;	/* frames not yet handed to libuv */
	struct str *inflight;	/* frames of the write in progress */
	uint64_t written;	/* bytes whose write completed (to the
				 * kernel) */
	char *rbuf;
	struct str *error;
	unsigned int connected:1;
	unsigned int hello_ok:1;
	unsigned int writing:1;
	unsigned int closing:1;
	unsigned int notify:1;	/* call on_close when closed */
};

static void ipc_chan_flush(struct ipc_chan *chan);

static void ipc_chan_closed(uv_handle_t *handle)
{
	struct ipc_chan *chan = handle->data;

	if (chan->notify && chan->set.on_close != NULL) {
		chan->set.on_close(chan, str_len(chan->error) > 0 ?
				   str_c(chan->error) : NULL, chan->set.ctx);
	}
	ipc_decoder_free(&chan->dec);
	str_free(&chan->pending);
	str_free(&chan->inflight);
	str_free(&chan->error);
	str_free(&chan->proto);
	free(chan->rbuf);
	free(chan);
}

/* Starts the close; error (copied) NULL for an orderly end. */
static void ipc_chan_shut(struct ipc_chan *chan, const char *error)
{
	if (chan->closing)
		return;
	chan->closing = 1;
	if (error != NULL && str_set(chan->error, error, strlen(error)) < 0)
		str_truncate(chan->error, 0);
	if (error != NULL && str_len(chan->error) == 0 &&
	    str_append_c(chan->error, "ipc: channel error") < 0)
		log_panic(NULL, "ipc: channel error buffer too small");
	(void)uv_read_stop((uv_stream_t *)&chan->pipe);
	uv_close((uv_handle_t *)&chan->pipe, ipc_chan_closed);
}

static void ipc_chan_shut_uv(struct ipc_chan *chan, const char *what, int err)
{
	char buf[256];

	snprintf(buf, sizeof(buf), "ipc: %s: %s", what, uv_strerror(err));
	ipc_chan_shut(chan, buf);
}

void ipc_chan_close(struct ipc_chan **chan)
{
	if (*chan == NULL)
		return;
	ipc_chan_shut(*chan, NULL);
	*chan = NULL;
}

static struct ipc_chan *ipc_chan_alloc(uv_loop_t *loop,
				       enum ipc_chan_role role,
				       const struct ipc_chan_settings *set,
				       const char **error_r)
{
	struct ipc_chan *chan = calloc(1, sizeof(*chan));
	int r;

	if (chan == NULL)
		abort();
	chan->set = *set;
	chan->dec = ipc_decoder_new(set->max_frame);
	chan->set.max_frame = ipc_decoder_max_frame(chan->dec);
	if (chan->set.output_limit == 0)
		chan->set.output_limit = IPC_CHAN_OUTPUT_DEFAULT;
	if (chan->set.output_limit < chan->set.max_frame + IPC_FRAME_PREFIX)
		chan->set.output_limit = chan->set.max_frame + IPC_FRAME_PREFIX;
	if (set->proto != NULL)
		chan->proto = str_dup_c(set->proto);
	chan->set.proto = NULL;
	chan->role = role;
	chan->pending = str_new(0, chan->set.output_limit);
	chan->inflight = str_new(0, chan->set.output_limit);
	chan->error = str_new(0, IPC_CHAN_ERROR_MAX);
	chan->rbuf = malloc(IPC_CHAN_READ_SIZE);
	if (chan->rbuf == NULL)
		abort();
	r = uv_pipe_init(loop, &chan->pipe, 0);
	if (r < 0) {
		/* Nothing to close yet: free directly. */
		*error_r = uv_strerror(r);
		chan->pipe.data = chan;
		ipc_chan_closed((uv_handle_t *)&chan->pipe);
		return NULL;
	}
	chan->pipe.data = chan;
	return chan;
}

/* Ends a constructor that failed after uv_pipe_init. */
static struct ipc_chan *ipc_chan_abort(struct ipc_chan *chan, int err,
				       const char **error_r)
{
	*error_r = uv_strerror(err);
	chan->notify = 0;
	ipc_chan_shut(chan, NULL);
	return NULL;
}

int ipc_chan_ready(const struct ipc_chan *chan)
{
	return chan->connected &&
	       (chan->proto == NULL || chan->role == IPC_CHAN_SERVER ||
		chan->hello_ok);
}

void *ipc_chan_ctx(const struct ipc_chan *chan)
{
	return chan->set.ctx;
}

uint64_t ipc_chan_output_read(const struct ipc_chan *chan)
{
	uint64_t n = chan->written;
	uv_os_fd_t fd;
	int queued = 0;

	/* A large write goes out bit by bit: what libuv has handed to the
	 * kernel of it counts too. */
	if (chan->writing) {
		size_t left = uv_stream_get_write_queue_size(
			(const uv_stream_t *)&chan->pipe);

		if (left < str_len(chan->inflight))
			n += str_len(chan->inflight) - left;
	}
	/* Less what still sits in the socket's send queue, unread. */
	if (uv_fileno((const uv_handle_t *)&chan->pipe, &fd) == 0 &&
	    ioctl(fd, SIOCOUTQ, &queued) == 0 && queued > 0 &&
	    (uint64_t)queued <= n)
		n -= (uint64_t)queued;
	return n;
}

size_t ipc_chan_output_pending(const struct ipc_chan *chan)
{
	return str_len(chan->pending) + str_len(chan->inflight);
}

/* --- reading ---------------------------------------------------------- */

static void ipc_chan_alloc_cb(uv_handle_t *handle, size_t suggested,
			      uv_buf_t *buf)
{
	struct ipc_chan *chan = handle->data;

	buf->base = chan->rbuf;
	buf->len = IPC_CHAN_READ_SIZE;
}

static void ipc_chan_deliver(struct ipc_chan *chan, struct ipc_msg *msg)
{
	const char *error;

	if (chan->role == IPC_CHAN_CLIENT && chan->proto != NULL &&
	    !chan->hello_ok) {
		if (ipc_hello_check(msg, str_c(chan->proto),
				    chan->set.version, &error) < 0) {
			ipc_chan_shut(chan, error);
		} else {
			chan->hello_ok = 1;
			ipc_chan_flush(chan);
		}
		ipc_msg_free(&msg);
		return;
	}
	if (chan->set.on_msg != NULL)
		chan->set.on_msg(chan, &msg, chan->set.ctx);
	ipc_msg_free(&msg);
}

static void ipc_chan_read_cb(uv_stream_t *stream, ssize_t nread,
			     const uv_buf_t *buf)
{
	struct ipc_chan *chan = stream->data;
	const char *pos = buf->base, *end, *error;
	struct ipc_msg *msg;
	int r;

	if (nread == UV_EOF) {
		if (ipc_decoder_finish(chan->dec, &error) < 0)
			ipc_chan_shut(chan, error);
		else if (!ipc_chan_ready(chan))
			ipc_chan_shut(chan, "ipc: connection closed before "
				      "the hello");
		else
			ipc_chan_shut(chan, NULL);
		return;
	}
	if (nread < 0) {
		ipc_chan_shut_uv(chan, "read", (int)nread);
		return;
	}
	end = pos + nread;
	while (!chan->closing) {
		r = ipc_decoder_feed(chan->dec, &pos, end, &msg, &error);
		if (r == 0)
			break;
		if (r < 0) {
			ipc_chan_shut(chan, error);
			break;
		}
		ipc_chan_deliver(chan, msg);
	}
}

/* Connected: read, and write what was queued. */
static int ipc_chan_start(struct ipc_chan *chan)
{
	int r;

	chan->connected = 1;
	chan->notify = 1;
	r = uv_read_start((uv_stream_t *)&chan->pipe, ipc_chan_alloc_cb,
			  ipc_chan_read_cb);
	if (r < 0)
		return r;
	ipc_chan_flush(chan);
	return 0;
}

/* --- writing ---------------------------------------------------------- */

static void ipc_chan_write_cb(uv_write_t *req, int status)
{
	struct ipc_chan *chan = req->data;

	chan->writing = 0;
	if (status >= 0)
		chan->written += str_len(chan->inflight);
	str_clear(chan->inflight);
	if (chan->closing)
		return;
	if (status < 0) {
		ipc_chan_shut_uv(chan, "write", status);
		return;
	}
	ipc_chan_flush(chan);
}

static void ipc_chan_flush(struct ipc_chan *chan)
{
	struct str *tmp;
	uv_buf_t buf;
	int r;

	if (chan->closing || chan->writing || !ipc_chan_ready(chan) ||
	    str_len(chan->pending) == 0)
		return;
	tmp = chan->inflight;
	chan->inflight = chan->pending;
	chan->pending = tmp;
	buf = uv_buf_init(str_data(chan->inflight),
			  (unsigned int)str_len(chan->inflight));
	chan->wreq.data = chan;
	r = uv_write(&chan->wreq, (uv_stream_t *)&chan->pipe, &buf, 1,
		     ipc_chan_write_cb);
	if (r < 0) {
		ipc_chan_shut_uv(chan, "write", r);
		return;
	}
	chan->writing = 1;
}

int ipc_chan_send(struct ipc_chan *chan, const struct ipc_msg *m,
		  const char **error_r)
{
	size_t frame = IPC_FRAME_PREFIX + ipc_msg_size(m);

	if (chan->closing) {
		*error_r = "ipc: channel is closed";
		return -1;
	}
	if (ipc_msg_size(m) <= chan->set.max_frame &&
	    frame > chan->set.output_limit - ipc_chan_output_pending(chan)) {
		ipc_chan_shut(chan, "ipc: output limit reached: "
			      "the peer is not reading");
		*error_r = str_c(chan->error);
		return -1;
	}
	if (ipc_msg_encode(m, chan->set.max_frame, chan->pending, error_r) < 0)
		return -1;
	ipc_chan_flush(chan);
	return 0;
}

/* --- opening ---------------------------------------------------------- */

/* Server role with a protocol: the hello goes first. */
static void ipc_chan_queue_hello(struct ipc_chan *chan)
{
	struct ipc_msg *hello;
	const char *error;

	if (chan->role != IPC_CHAN_SERVER || chan->proto == NULL)
		return;
	hello = ipc_hello_new(str_c(chan->proto), chan->set.version);
	if (ipc_msg_encode(hello, chan->set.max_frame, chan->pending,
			   &error) < 0)
		log_panic(NULL, "ipc: cannot encode the hello: %s", error);
	ipc_msg_free(&hello);
}

static struct ipc_chan *ipc_chan_opened(struct ipc_chan *chan,
					const char **error_r)
{
	int r;

	ipc_chan_queue_hello(chan);
	r = ipc_chan_start(chan);
	if (r < 0)
		return ipc_chan_abort(chan, r, error_r);
	return chan;
}

struct ipc_chan *ipc_chan_open_fd(uv_loop_t *loop, int fd,
				  enum ipc_chan_role role,
				  const struct ipc_chan_settings *set,
				  const char **error_r)
{
	struct ipc_chan *chan = ipc_chan_alloc(loop, role, set, error_r);
	int r;

	if (chan == NULL) {
		close(fd);
		return NULL;
	}
	r = uv_pipe_open(&chan->pipe, fd);
	if (r < 0) {
		close(fd);
		return ipc_chan_abort(chan, r, error_r);
	}
	return ipc_chan_opened(chan, error_r);
}

struct ipc_chan *ipc_chan_accept(uv_stream_t *server,
				 const struct ipc_chan_settings *set,
				 const char **error_r)
{
	struct ipc_chan *chan = ipc_chan_alloc(server->loop, IPC_CHAN_SERVER,
					       set, error_r);
	int r;

	if (chan == NULL)
		return NULL;
	r = uv_accept(server, (uv_stream_t *)&chan->pipe);
	if (r < 0)
		return ipc_chan_abort(chan, r, error_r);
	return ipc_chan_opened(chan, error_r);
}

static void ipc_chan_connect_cb(uv_connect_t *req, int status)
{
	struct ipc_chan *chan = req->data;
	int r;

	if (chan->closing)
		return;
	if (status < 0) {
		ipc_chan_shut_uv(chan, "connect", status);
		return;
	}
	r = ipc_chan_start(chan);
	if (r < 0)
		ipc_chan_shut_uv(chan, "read", r);
}

struct ipc_chan *ipc_chan_connect(uv_loop_t *loop, const char *path,
				  const struct ipc_chan_settings *set,
				  const char **error_r)
{
	struct sockaddr_un sun;
	struct ipc_chan *chan;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		*error_r = "ipc: socket path too long";
		return NULL;
	}
	chan = ipc_chan_alloc(loop, IPC_CHAN_CLIENT, set, error_r);
	if (chan == NULL)
		return NULL;
	/* Errors from here on end in on_close. */
	chan->notify = 1;
	chan->creq.data = chan;
	uv_pipe_connect(&chan->creq, &chan->pipe, path, ipc_chan_connect_cb);
	return chan;
}

int ipc_chan_peer_cred(const struct ipc_chan *chan, pid_t *pid_r,
		       uid_t *uid_r, gid_t *gid_r, const char **error_r)
{
#ifdef SO_PEERCRED
	struct ucred cred;
	socklen_t len = sizeof(cred);
	uv_os_fd_t fd;

	if (uv_fileno((const uv_handle_t *)&chan->pipe, &fd) < 0) {
		*error_r = "ipc: channel has no socket";
		return -1;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		*error_r = strerror(errno);
		return -1;
	}
	*pid_r = cred.pid;
	*uid_r = cred.uid;
	*gid_r = cred.gid;
	return 0;
#else
	*error_r = "ipc: peer credentials not supported on this system";
	return -1;
#endif
}
