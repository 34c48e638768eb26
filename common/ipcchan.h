/*
 * ipcchan.h: an IPC channel (codec of ipc.h) over a libuv unix socket.
 *
 * A channel owns its uv_pipe_t.  It decodes what the peer sends and hands
 * each message to on_msg; it queues what we send and writes it in order.
 * Output is bounded: when queued bytes would pass output_limit the peer has
 * stopped reading, and the channel closes with an error instead of growing.
 *
 * Handshake: with settings.proto set, the server side queues its hello
 * first; the client side checks that the first message is a hello for
 * exactly proto and version (it is not passed to on_msg) and holds back its
 * own output until then, so nothing is sent to the wrong protocol.
 *
 * Closing: ipc_chan_close() or any error starts libuv's close; on_close runs
 * after libuv's close callback, with error NULL for an orderly end (our close
 * or the peer's EOF between frames), and the channel is freed right after
 * it.  Output still queued at close time is dropped; libuv usually writes a
 * message to the socket before ipc_chan_send() returns.
 *
 * Callers: the master's control socket, authd, stored and their clients.
 * All on the loop thread.
 */
#ifndef TERN_IPCCHAN_H
#define TERN_IPCCHAN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "compat.h"
#include "ipc.h"

#define IPC_CHAN_OUTPUT_DEFAULT ((size_t)4 << 20)	/* 4 MiB */

struct ipc_chan;

/* *msg belongs to the channel and is freed when the callback returns; set
 * *msg = NULL to keep it (then free it with ipc_msg_free()).  The callback
 * may call ipc_chan_send() and ipc_chan_close(). */
typedef void ipc_chan_msg_cb(struct ipc_chan *chan, struct ipc_msg **msg,
			     void *ctx);
/* The last call for chan; error is NULL for an orderly end. */
typedef void ipc_chan_close_cb(struct ipc_chan *chan, const char *error,
			       void *ctx);

enum ipc_chan_role {
	IPC_CHAN_SERVER,	/* sends the hello */
	IPC_CHAN_CLIENT,	/* checks the hello */
};

struct ipc_chan_settings {
	size_t max_frame;	/* each direction; 0 = IPC_FRAME_MAX_DEFAULT */
	size_t output_limit;	/* 0 = IPC_CHAN_OUTPUT_DEFAULT */
	const char *proto;	/* NULL: no hello handshake */
	int64_t version;
	ipc_chan_msg_cb *on_msg;
	ipc_chan_close_cb *on_close;
	void *ctx;
};

/* Takes over fd, a connected unix stream socket (also on failure). */
struct ipc_chan *ipc_chan_open_fd(uv_loop_t *loop, int fd,
				  enum ipc_chan_role role,
				  const struct ipc_chan_settings *set,
				  const char **error_r);
/* Accepts one connection from a listening uv_pipe_t; server role. */
struct ipc_chan *ipc_chan_accept(uv_stream_t *server,
				 const struct ipc_chan_settings *set,
				 const char **error_r);
/* Starts connecting to a unix socket path; client role.  Messages sent
 * before the connection is up are queued; a failed connect ends in
 * on_close with the error. */
struct ipc_chan *ipc_chan_connect(uv_loop_t *loop, const char *path,
				  const struct ipc_chan_settings *set,
				  const char **error_r);

/* Queues one message.  -1 with *error_r when the channel is closing, the
 * message is too large for max_frame (the channel stays open), or the
 * output limit was reached (the channel is then closing). */
int ipc_chan_send(struct ipc_chan *chan, const struct ipc_msg *m,
		  const char **error_r) TERN_WUR;

/* Starts closing and sets *chan = NULL; on_close follows from the loop. */
void ipc_chan_close(struct ipc_chan **chan);

/* Bytes queued or being written. */
size_t ipc_chan_output_pending(const struct ipc_chan *chan);
/* Bytes the peer has read since the channel opened: written to the
 * socket and gone from its send queue (it reads, if slowly). */
uint64_t ipc_chan_output_read(const struct ipc_chan *chan);
/* 1 once connected and (client with proto) the hello was accepted. */
int ipc_chan_ready(const struct ipc_chan *chan);
void *ipc_chan_ctx(const struct ipc_chan *chan);

/* The peer's credentials (SO_PEERCRED), for access checks. */
int ipc_chan_peer_cred(const struct ipc_chan *chan, pid_t *pid_r,
		       uid_t *uid_r, gid_t *gid_r, const char **error_r)
	TERN_WUR;

#endif
