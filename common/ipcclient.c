/* ipcclient.c: see ipcclient.h. */
#include "config.h"

#include "compat.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ipc.h"
#include "ipcclient.h"
#include "str.h"

#define IPC_CLIENT_READ_SIZE 65536
#define IPC_CLIENT_ERROR_MAX 1024

struct ipc_client {
	int fd;
	size_t max_frame;
	struct ipc_decoder *dec;
	struct str *in;		/* read but not yet decoded */
	struct str *out;	/* the frame being sent */
	char *rbuf;
	struct str *error;
};

struct ipc_client *ipc_client_new(size_t max_frame)
{
	struct ipc_client *c = calloc(1, sizeof(*c));

	if (c == NULL)
		abort();
	c->fd = -1;
	c->dec = ipc_decoder_new(max_frame);
	c->max_frame = ipc_decoder_max_frame(c->dec);
	c->in = str_new(0, IPC_CLIENT_READ_SIZE);
	c->out = str_new(0, c->max_frame + IPC_FRAME_PREFIX);
	c->rbuf = malloc(IPC_CLIENT_READ_SIZE);
	if (c->rbuf == NULL)
		abort();
	c->error = str_new(0, IPC_CLIENT_ERROR_MAX);
	return c;
}

void ipc_client_close(struct ipc_client *c)
{
	size_t max_frame = c->max_frame;

	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	str_clear(c->in);
	ipc_decoder_free(&c->dec);
	c->dec = ipc_decoder_new(max_frame);
}

void ipc_client_free(struct ipc_client **c)
{
	if (*c == NULL)
		return;
	if ((*c)->fd >= 0)
		close((*c)->fd);
	ipc_decoder_free(&(*c)->dec);
	str_free(&(*c)->in);
	str_free(&(*c)->out);
	str_free(&(*c)->error);
	free((*c)->rbuf);
	free(*c);
	*c = NULL;
}

int ipc_client_is_connected(const struct ipc_client *c)
{
	return c->fd >= 0;
}

static int ipc_client_fail(struct ipc_client *c, const char **error_r,
			   int close_it, const char *fmt, ...)
	TERN_PRINTF(4, 5);

static int ipc_client_fail(struct ipc_client *c, const char **error_r,
			   int close_it, const char *fmt, ...)
{
	va_list ap;

	str_clear(c->error);
	va_start(ap, fmt);
	if (str_vprintf(c->error, fmt, ap) < 0)
		str_clear(c->error);
	va_end(ap);
	if (str_len(c->error) == 0 &&
	    str_append_c(c->error, "ipc: client error") < 0)
		abort();
	if (close_it)
		ipc_client_close(c);
	*error_r = str_c(c->error);
	return -1;
}

static int64_t ipc_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t ipc_deadline(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : ipc_now_ms() + timeout_ms;
}

/* poll() for events until the deadline: 1 ready, 0 timeout, -1 error. */
static int ipc_wait(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = events };

	for (;;) {
		int64_t left = deadline < 0 ? -1 : deadline - ipc_now_ms();
		int r;

		if (deadline >= 0 && left <= 0)
			return 0;
		r = poll(&pfd, 1, left > 1000000 ? 1000000 : (int)left);
		if (r > 0)
			return 1;
		if (r < 0 && errno != EINTR)
			return -1;
	}
}

/* After a non-blocking connect() said EINPROGRESS or EAGAIN. */
static int ipc_client_connect_wait(struct ipc_client *c,
				   const struct sockaddr_un *sun,
				   int64_t deadline)
{
	int err = errno;
	socklen_t len = sizeof(err);

	while (err == EAGAIN) {
		/* Backlog full: retry until the deadline. */
		if (deadline >= 0 && ipc_now_ms() >= deadline)
			return ETIMEDOUT;
		(void)poll(NULL, 0, 10);
		err = connect(c->fd, (const struct sockaddr *)sun,
			      sizeof(*sun)) == 0 ? 0 : errno;
	}
	if (err != EINPROGRESS)
		return err;
	switch (ipc_wait(c->fd, POLLOUT, deadline)) {
	case 0:
		return ETIMEDOUT;
	case -1:
		return errno;
	default:
		break;
	}
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return errno;
	return err;
}

int ipc_client_connect(struct ipc_client *c, const char *path,
		       int timeout_ms, const char **error_r)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int64_t deadline = ipc_deadline(timeout_ms);
	int err = 0;

	ipc_client_close(c);
	if (str_lcpy(sun.sun_path, path, sizeof(sun.sun_path)) >=
	    sizeof(sun.sun_path))
		return ipc_client_fail(c, error_r, 1, "ipc: socket path too "
				       "long: %s", path);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return ipc_client_fail(c, error_r, 1, "ipc: socket: %s",
				       strerror(errno));
	if (connect(c->fd, (const struct sockaddr *)&sun, sizeof(sun)) < 0) {
		err = errno;
		if (err == EINPROGRESS || err == EAGAIN)
			err = ipc_client_connect_wait(c, &sun, deadline);
	}
	if (err != 0)
		return ipc_client_fail(c, error_r, 1, "ipc: connect to %s: %s",
				       path, strerror(err));
	return 0;
}

int ipc_client_send(struct ipc_client *c, const struct ipc_msg *m,
		    int timeout_ms, const char **error_r)
{
	int64_t deadline = ipc_deadline(timeout_ms);
	size_t done = 0;

	if (c->fd < 0)
		return ipc_client_fail(c, error_r, 0, "ipc: not connected");
	str_clear(c->out);
	if (ipc_msg_encode(m, c->max_frame, c->out, error_r) < 0)
		return -1;
	while (done < str_len(c->out)) {
		ssize_t n = send(c->fd, str_c(c->out) + done,
				 str_len(c->out) - done, MSG_NOSIGNAL);

		if (n >= 0) {
			done += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return ipc_client_fail(c, error_r, 1, "ipc: send: %s",
					       strerror(errno));
		if (ipc_wait(c->fd, POLLOUT, deadline) <= 0)
			return ipc_client_fail(c, error_r, 1,
					       "ipc: send timed out");
	}
	return 0;
}

/* Decodes from c->in; 1 with a message, 0 when it needs more, -1. */
static int ipc_client_decode(struct ipc_client *c, struct ipc_msg **msg_r,
			     const char **error_r)
{
	const char *start = str_c(c->in), *pos = start;
	const char *end = start + str_len(c->in), *error;
	int r = ipc_decoder_feed(c->dec, &pos, end, msg_r, &error);

	if (r < 0)
		return ipc_client_fail(c, error_r, 1, "%s", error);
	str_consume(c->in, (size_t)(pos - start));
	return r;
}

/* Reads once into c->in: 1 data, 0 timeout, -1 error or EOF. */
static int ipc_client_read(struct ipc_client *c, int64_t deadline,
			   const char **error_r)
{
	const char *error;
	ssize_t n;

	switch (ipc_wait(c->fd, POLLIN, deadline)) {
	case 0:
		return ipc_client_fail(c, error_r, 0, "ipc: receive timed out");
	case -1:
		return ipc_client_fail(c, error_r, 1, "ipc: poll: %s",
				       strerror(errno));
	default:
		break;
	}
	n = read(c->fd, c->rbuf, IPC_CLIENT_READ_SIZE);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 1;
	if (n < 0)
		return ipc_client_fail(c, error_r, 1, "ipc: read: %s",
				       strerror(errno));
	if (n == 0 && ipc_decoder_finish(c->dec, &error) < 0)
		return ipc_client_fail(c, error_r, 1, "%s", error);
	if (n == 0)
		return ipc_client_fail(c, error_r, 1,
				       "ipc: connection closed by the server");
	/* c->in is empty here: every read is decoded before the next one. */
	if (str_append(c->in, c->rbuf, (size_t)n) < 0)
		return ipc_client_fail(c, error_r, 1, "ipc: input overflow");
	return 1;
}

int ipc_client_recv(struct ipc_client *c, int timeout_ms,
		    struct ipc_msg **msg_r, const char **error_r)
{
	int64_t deadline = ipc_deadline(timeout_ms);
	int r;

	if (c->fd < 0)
		return ipc_client_fail(c, error_r, 0, "ipc: not connected");
	for (;;) {
		r = ipc_client_decode(c, msg_r, error_r);
		if (r != 0)
			return r > 0 ? 0 : -1;
		if (ipc_client_read(c, deadline, error_r) <= 0)
			return -1;
	}
}

int ipc_client_hello(struct ipc_client *c, const char *proto, int64_t version,
		     int timeout_ms, const char **error_r)
{
	struct ipc_msg *m;
	const char *error;
	int r;

	if (ipc_client_recv(c, timeout_ms, &m, error_r) < 0)
		return -1;
	r = ipc_hello_check(m, proto, version, &error);
	if (r < 0)
		r = ipc_client_fail(c, error_r, 1, "%s", error);
	ipc_msg_free(&m);
	return r;
}
