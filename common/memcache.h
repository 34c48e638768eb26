/*
 * memcache.h: a small asynchronous memcached client on the libuv loop,
 * used for the proxy's route cache (docs/proxy.md).
 *
 * Text protocol only, three commands: get (one key), set (with a TTL) and
 * delete.  Replies are parsed by a pure, resumable state machine
 * (memcache_parser_*: no I/O, input split at any byte, every line and
 * value bounded before anything is stored); a reply that breaks the
 * protocol closes the connection.
 *
 * Keys never carry peer input: memcache_route_key() turns an address into
 * "tern:route:" + hex(SHA-256(lower-cased address)), and every command
 * checks its key (1..MEMCACHE_KEY_MAX printable bytes, no space) before
 * anything is written.  Values are sent with their length, never parsed
 * by the server as commands.
 *
 * Servers: "HOST:PORT" (numeric IPv4), "[IPV6]:PORT" or an absolute unix
 * socket path.  A key always goes to the same server (a hash of the key).
 * Each server has one connection, opened at once and reopened with backoff
 * (100 ms doubling to 5 s, back to the start only after an answer) when it
 * closes.  Requests are pipelined; the
 * oldest one waiting longer than timeout_ms fails all of them and closes
 * the connection.  While a server is down or backing off, requests fail at
 * once: the cache is an optimisation and callers go on without it.
 *
 * Every request ends in exactly one callback, always from the loop, never
 * inside the call that made it (memcache_free() calls the pending ones
 * with MEMCACHE_FAILED).  Loop thread only.
 *
 * Callers: tern-proxyd (route lookups), ternctl account move (delete).
 */
#ifndef TERN_MEMCACHE_H
#define TERN_MEMCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "compat.h"

struct str;

#define MEMCACHE_KEY_MAX 250		/* memcached's own limit */
#define MEMCACHE_LINE_MAX 512		/* reply lines without CRLF */
#define MEMCACHE_VALUE_MAX 4096		/* values we store or accept */
#define MEMCACHE_QUEUE_DEFAULT 1024	/* requests per server */
#define MEMCACHE_SERVERS_MAX 64
#define MEMCACHE_ROUTE_PREFIX "tern:route:"
#define MEMCACHE_ROUTE_HOST_MAX 255	/* a cached mail host */

enum memcache_op {
	MEMCACHE_GET,
	MEMCACHE_SET,
	MEMCACHE_DELETE,
};

enum memcache_result {
	MEMCACHE_HIT,		/* get: value */
	MEMCACHE_MISS,		/* get: END without value */
	MEMCACHE_STORED,	/* set */
	MEMCACHE_NOT_STORED,	/* set: NOT_STORED, EXISTS or NOT_FOUND */
	MEMCACHE_DELETED,	/* delete */
	MEMCACHE_NOT_FOUND,	/* delete: no such key */
	MEMCACHE_SERVER_ERROR,	/* ERROR, CLIENT_ERROR or SERVER_ERROR */
	MEMCACHE_FAILED,	/* no answer: down, timeout, bad reply */
};

const char *memcache_result_name(enum memcache_result r);

/* ---- the reply parser ---- */

struct memcache_reply {
	enum memcache_result result;
	const char *value;	/* MEMCACHE_HIT: value_len bytes, NUL-ended;
				 * valid until the next feed or expect */
	size_t value_len;
};

/* value_max: the largest value accepted (1..MEMCACHE_VALUE_MAX). */
struct memcache_parser *memcache_parser_new(size_t value_max);
void memcache_parser_free(struct memcache_parser **p);
/* The next reply is the answer to op (for MEMCACHE_GET, on key: a VALUE
 * line for any other key is an error).  Also clears an error. */
void memcache_parser_expect(struct memcache_parser *p, enum memcache_op op,
			    const char *key);
/* 1 = a reply is complete in *reply_r (then nothing more is taken until
 * the next expect), 0 = all input taken, more needed, -1 = protocol error
 * in *error_r (sticky until the next expect).  *pos advances over what
 * was taken. */
int memcache_parser_feed(struct memcache_parser *p, const char **pos,
			 const char *end, struct memcache_reply *reply_r,
			 const char **error_r) TERN_WUR;

/* ---- keys ---- */

/* "tern:route:" + 64 lower-case hex digits of SHA-256 of the address with
 * ASCII letters lower-cased.  The same function serves tern-proxyd and
 * ternctl.  -1 when the address is empty or over 1024 bytes. */
int memcache_route_key(const char *address, struct str *key_r) TERN_WUR;
/* Whether key is one memcached takes as a single token. */
bool memcache_key_valid(const char *key);
/* Whether a cached value looks like a mail host (1..255 bytes of letters,
 * digits, '.', '-', '_', ':', '[' and ']'). */
bool memcache_route_value_valid(const char *value, size_t len);

/* ---- the client ---- */

struct memcache_settings {
	const char *const *servers;
	size_t nservers;		/* 1..MEMCACHE_SERVERS_MAX */
	uint64_t timeout_ms;		/* per request, > 0 */
	size_t queue_max;		/* 0 = MEMCACHE_QUEUE_DEFAULT */
};

typedef void memcache_cb(enum memcache_result result, const char *value,
			 size_t value_len, void *ctx);

/* NULL with *error_r (static text) when a server entry is malformed. */
struct memcache *memcache_new(uv_loop_t *loop,
			      const struct memcache_settings *set,
			      const char **error_r);
/* Calls pending callbacks with MEMCACHE_FAILED, closes the connections;
 * the memory goes once the loop has run the close callbacks.  Sets *mc to
 * NULL. */
void memcache_free(struct memcache **mc);

void memcache_get(struct memcache *mc, const char *key, memcache_cb *cb,
		  void *ctx);
void memcache_set(struct memcache *mc, const char *key, const char *value,
		  size_t value_len, unsigned ttl_s, memcache_cb *cb, void *ctx);
void memcache_delete(struct memcache *mc, const char *key, memcache_cb *cb,
		     void *ctx);

/* For tools: one delete on a private loop, waiting at most timeout_ms.
 * Returns the result; *error_r is set for a bad server list. */
enum memcache_result memcache_delete_once(const struct memcache_settings *set,
					  const char *key,
					  const char **error_r);

#endif
