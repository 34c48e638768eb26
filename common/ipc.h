/*
 * ipc.h: the typed, versioned, size-bounded codec of Tern's internal IPC.
 *
 * Every daemon-to-daemon unix socket (the master's control socket, authd,
 * stored) carries frames of this codec; docs/protocols/ipc.md is the byte
 * layout.  A message has a type name, a u32 request id (a reply carries the
 * id of its request) and an ordered list of named fields, each a signed
 * 64-bit integer or a byte string (any bytes, NUL included).  A name may
 * repeat: that is how lists are sent.
 *
 * Limits: a frame's payload is at most the decoder's max_frame (default
 * IPC_FRAME_MAX_DEFAULT, never above IPC_FRAME_MAX_HARD), checked on the
 * length prefix before anything is allocated; at most IPC_FIELDS_MAX fields
 * per message; type names [a-z0-9_.-]{1,32}, field names [a-z0-9_]{1,64}.
 *
 * The decoder is a pure state machine: no I/O, input may be split at any
 * byte.  The receiver checks each message against a schema (ipc_msg_check)
 * that rejects missing, unknown, oversized, wrong-kind and over-repeated
 * fields.  The first message on a connection is the server's hello naming
 * protocol and version (ipc_hello_new / ipc_hello_check).
 *
 * Callers: ipcchan.c (libuv daemons), ipcclient.c (ternctl and other tools).
 * Builder misuse with an invalid type or field name is our bug and panics;
 * a message grown past the limits fails later, in ipc_msg_encode().
 */
#ifndef TERN_IPC_H
#define TERN_IPC_H

#include <stddef.h>
#include <stdint.h>

#include "compat.h"
#include "str.h"

#define IPC_CODEC_VERSION 1
#define IPC_FRAME_MAX_DEFAULT ((size_t)1 << 20)	/* 1 MiB */
#define IPC_FRAME_MAX_HARD ((size_t)16 << 20)	/* 16 MiB */
#define IPC_FRAME_MAX_MIN ((size_t)256)	/* smallest max_frame accepted */
#define IPC_FRAME_PREFIX 4	/* bytes of the length prefix */
#define IPC_FIELDS_MAX 4096
#define IPC_TYPE_MAX 32
#define IPC_NAME_MAX 64

enum ipc_kind {
	IPC_INT = 'i',	/* signed 64-bit integer */
	IPC_STR = 's',	/* byte string, may hold NULs */
};

struct ipc_msg;
struct ipc_decoder;

/* --- building ------------------------------------------------------- */

/* type must match [a-z0-9_.-]{1,32} (panics otherwise).  The id is 0. */
struct ipc_msg *ipc_msg_new(const char *type);
void ipc_msg_free(struct ipc_msg **m);
void ipc_msg_set_id(struct ipc_msg *m, uint32_t id);

/* name must match [a-z0-9_]{1,64} (panics otherwise).  Adding past
 * IPC_FIELDS_MAX fields or IPC_FRAME_MAX_HARD bytes marks the message as
 * overflowed: the field is dropped and ipc_msg_encode() fails. */
void ipc_msg_add_str(struct ipc_msg *m, const char *name, const void *p,
		     size_t len);
void ipc_msg_add_cstr(struct ipc_msg *m, const char *name, const char *value);
void ipc_msg_add_int(struct ipc_msg *m, const char *name, int64_t value);

/* Payload bytes of the encoded message (the frame adds IPC_FRAME_PREFIX). */
size_t ipc_msg_size(const struct ipc_msg *m);

/* Appends one whole frame to out.  -1 with *error_r when the message
 * overflowed, is larger than max_frame (0 = IPC_FRAME_MAX_HARD) or does not
 * fit in str_room(out); out is then unchanged. */
int ipc_msg_encode(const struct ipc_msg *m, size_t max_frame, struct str *out,
		   const char **error_r) TERN_WUR;

/* --- reading -------------------------------------------------------- */

const char *ipc_msg_type(const struct ipc_msg *m);
int ipc_msg_type_is(const struct ipc_msg *m, const char *type);
uint32_t ipc_msg_id(const struct ipc_msg *m);

/* Number of fields called name (0 when absent). */
unsigned int ipc_msg_count(const struct ipc_msg *m, const char *name);

/* The getters return 0, or -1 when the field is absent, has the other kind,
 * or (cstr) contains a NUL byte.  String values stay valid until the message
 * is freed and are always followed by a NUL (not counted in *len_r).  The
 * plain getters return the first occurrence; the _nth ones occurrence n
 * (counting from 0). */
int ipc_msg_get_str(const struct ipc_msg *m, const char *name,
		    const char **p_r, size_t *len_r) TERN_WUR;
int ipc_msg_get_cstr(const struct ipc_msg *m, const char *name,
		     const char **value_r) TERN_WUR;
int ipc_msg_get_int(const struct ipc_msg *m, const char *name,
		    int64_t *value_r) TERN_WUR;
int ipc_msg_get_str_nth(const struct ipc_msg *m, const char *name,
			unsigned int n, const char **p_r, size_t *len_r)
	TERN_WUR;
int ipc_msg_get_cstr_nth(const struct ipc_msg *m, const char *name,
			 unsigned int n, const char **value_r) TERN_WUR;
int ipc_msg_get_int_nth(const struct ipc_msg *m, const char *name,
			unsigned int n, int64_t *value_r) TERN_WUR;

/* All fields in wire order, for generic consumers (dumps, --json). */
unsigned int ipc_msg_nfields(const struct ipc_msg *m);
/* -1 when i >= ipc_msg_nfields(). */
int ipc_msg_field(const struct ipc_msg *m, unsigned int i,
		  const char **name_r, enum ipc_kind *kind_r) TERN_WUR;
/* Field i's value when it is named name and of that kind, else -1: for
 * frames of repeated groups of fields, read in one pass. */
int ipc_msg_int_at(const struct ipc_msg *m, unsigned int i, const char *name,
		   int64_t *value_r) TERN_WUR;
int ipc_msg_str_at(const struct ipc_msg *m, unsigned int i, const char *name,
		   const char **p_r, size_t *len_r) TERN_WUR;

/* --- schema --------------------------------------------------------- */

#define IPC_SPEC_NO_NUL 0x1	/* string value must not contain NUL */

/* One allowed field.  An array of specs ends with a { NULL } entry. */
struct ipc_field_spec {
	const char *name;
	enum ipc_kind kind;
	unsigned int min;	/* occurrences required (0 = optional) */
	unsigned int max;	/* occurrences allowed; 0 means 1 */
	size_t max_len;		/* strings: bytes allowed; 0 = any */
	unsigned int flags;	/* IPC_SPEC_* */
};

/* 0 when every field of m is described by specs, of the right kind, within
 * max_len, and each name occurs min..max times; else -1 with a message that
 * names the field (valid until m is freed or checked again). */
int ipc_msg_check(struct ipc_msg *m, const struct ipc_field_spec *specs,
		  const char **error_r) TERN_WUR;

/* --- hello handshake ------------------------------------------------ */

#define IPC_HELLO_TYPE "hello"

/* The server's first message: type "hello", fields proto and version. */
struct ipc_msg *ipc_hello_new(const char *proto, int64_t version);
/* 0 when m is a well-formed hello for exactly proto and version. */
int ipc_hello_check(struct ipc_msg *m, const char *proto, int64_t version,
		    const char **error_r) TERN_WUR;

/* --- decoding ------------------------------------------------------- */

/* max_frame: payload bytes allowed per frame; 0 means
 * IPC_FRAME_MAX_DEFAULT; clamped to IPC_FRAME_MAX_MIN..IPC_FRAME_MAX_HARD. */
struct ipc_decoder *ipc_decoder_new(size_t max_frame);
void ipc_decoder_free(struct ipc_decoder **d);
size_t ipc_decoder_max_frame(const struct ipc_decoder *d);

/* Consumes input from *pos up to end.  1: one message in *msg_r (the caller
 * frees it), *pos is past its frame and input may remain; 0: all input
 * consumed, need more; -1: protocol error in *error_r (valid until the
 * decoder is freed) and every later call fails the same way. */
int ipc_decoder_feed(struct ipc_decoder *d, const char **pos, const char *end,
		     struct ipc_msg **msg_r, const char **error_r) TERN_WUR;

/* At end of input: 0 when the stream ended between frames, -1 (truncated
 * frame, or an earlier error) otherwise. */
int ipc_decoder_finish(struct ipc_decoder *d, const char **error_r) TERN_WUR;

#endif
