/*
 * cache.h: tern-authd's in-memory cache of directory answers.
 *
 * Holds positive and negative answers of account lookups, recipient
 * resolutions and domain checks, keyed by kind and normalized name.  The
 * cache owns the records put into it (dir.h types, password hashes never
 * included) and frees them on eviction.  Bounds: at most max_entries
 * entries (least recently used evicted first; 0 disables the cache) and
 * each entry lives at most ttl_ms.
 *
 * Invalidation: tern-authd polls dir_serial() and calls cache_clear() when
 * it changes.  The generation counter lets a lookup that started before a
 * clear avoid storing its (possibly stale) answer after it: read
 * cache_generation() when the lookup starts and pass it to cache_put().
 *
 * Caller: authd/server.c, on the loop thread only.
 */
#ifndef TERN_AUTHD_CACHE_H
#define TERN_AUTHD_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compat.h"
#include "dir.h"

enum cache_kind {
	CACHE_ACCOUNT = 'a',	/* account by address */
	CACHE_RESOLVE = 'r',	/* recipient resolution by address */
	CACHE_DOMAIN = 'd',	/* domain existence by name */
};

/* One cached answer.  status is DIR_OK or DIR_NOTFOUND; for DIR_OK the
 * record of the kind is set (domains: exists is true). */
struct cache_value {
	enum dir_status status;
	struct dir_account *account;
	struct dir_resolution *resolution;
	bool exists;
};

struct cache;

struct cache *cache_new(size_t max_entries, uint64_t ttl_ms);
void cache_free(struct cache **c);
/* New limits (reload); entries past a lower bound are evicted. */
void cache_set_limits(struct cache *c, size_t max_entries, uint64_t ttl_ms);

/* The answer for key, valid until the next cache call; NULL when absent
 * or expired. */
const struct cache_value *cache_get(struct cache *c, enum cache_kind kind,
				    const char *key, uint64_t now);
/* Takes over the records of *v (always: they are freed at once when the
 * cache is disabled or generation is stale) and clears *v. */
void cache_put(struct cache *c, enum cache_kind kind, const char *key,
	       struct cache_value *v, uint64_t generation, uint64_t now);
/* Frees the records of a value not put into the cache. */
void cache_value_clear(struct cache_value *v);

/* Forgets everything and starts a new generation. */
void cache_clear(struct cache *c);
uint64_t cache_generation(const struct cache *c);
size_t cache_entries(const struct cache *c);
/* Hits and misses since start, for the debug log. */
void cache_stats(const struct cache *c, uint64_t *hits_r, uint64_t *misses_r);

#endif
