/* cache.c: see cache.h. */
#include "config.h"

#include <stdlib.h>

#include "compat.h"
#include "cache.h"
#include "xalloc.h"

#define CACHE_BUCKETS_MIN 64
#define CACHE_BUCKETS_MAX ((size_t)1 << 22)

struct cache_entry {
	struct cache_entry *hnext;
	struct cache_entry *newer, *older;
	uint32_t hash;
	uint64_t expires;
	struct cache_value value;
	size_t keylen;
	char key[];		/* kind byte + key, NUL-terminated */
};

struct cache {
	size_t max_entries;
	uint64_t ttl_ms;
	struct cache_entry **buckets;
	size_t nbuckets;
	size_t count;
	struct cache_entry *newest, *oldest;
	uint64_t generation;
	uint64_t hits, misses;
};

static size_t buckets_for(size_t entries)
{
	size_t n = CACHE_BUCKETS_MIN;

	while (n < entries && n < CACHE_BUCKETS_MAX)
		n <<= 1;
	return n;
}

static uint32_t cache_hash(const char *key, size_t len)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)key[i];
		h *= 16777619u;
	}
	return h;
}

void cache_value_clear(struct cache_value *v)
{
	dir_account_free(&v->account);
	dir_resolution_free(&v->resolution);
	memset(v, 0, sizeof(*v));
}

static void lru_unlink(struct cache *c, struct cache_entry *e)
{
	if (e->newer != NULL)
		e->newer->older = e->older;
	else
		c->newest = e->older;
	if (e->older != NULL)
		e->older->newer = e->newer;
	else
		c->oldest = e->newer;
	e->newer = e->older = NULL;
}

static void lru_push(struct cache *c, struct cache_entry *e)
{
	e->older = c->newest;
	e->newer = NULL;
	if (c->newest != NULL)
		c->newest->newer = e;
	c->newest = e;
	if (c->oldest == NULL)
		c->oldest = e;
}

static void entry_remove(struct cache *c, struct cache_entry *e)
{
	struct cache_entry **pp = &c->buckets[e->hash & (c->nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	lru_unlink(c, e);
	c->count--;
	cache_value_clear(&e->value);
	free(e);
}

struct cache *cache_new(size_t max_entries, uint64_t ttl_ms)
{
	struct cache *c = xcalloc(1, sizeof(*c));

	c->max_entries = max_entries;
	c->ttl_ms = ttl_ms;
	c->nbuckets = buckets_for(max_entries);
	c->buckets = xcalloc(c->nbuckets, sizeof(*c->buckets));
	c->generation = 1;
	return c;
}

void cache_clear(struct cache *c)
{
	while (c->oldest != NULL)
		entry_remove(c, c->oldest);
	c->generation++;
}

void cache_free(struct cache **cp)
{
	struct cache *c = *cp;

	if (c == NULL)
		return;
	cache_clear(c);
	free(c->buckets);
	free(c);
	*cp = NULL;
}

void cache_set_limits(struct cache *c, size_t max_entries, uint64_t ttl_ms)
{
	size_t nb = buckets_for(max_entries);

	c->max_entries = max_entries;
	c->ttl_ms = ttl_ms;
	while (c->count > max_entries)
		entry_remove(c, c->oldest);
	if (nb != c->nbuckets) {
		/* Simplest correct rehash: start over. */
		cache_clear(c);
		free(c->buckets);
		c->nbuckets = nb;
		c->buckets = xcalloc(nb, sizeof(*c->buckets));
	}
}

/* Writes kind + key into a new buffer; *len_r is its length. */
static char *make_key(enum cache_kind kind, const char *key, size_t *len_r)
{
	size_t n = strlen(key);
	char *k = xmalloc(n + 2);

	k[0] = (char)kind;
	memcpy(k + 1, key, n + 1);
	*len_r = n + 1;
	return k;
}

static struct cache_entry *cache_find(struct cache *c, const char *k,
				      size_t len, uint32_t h)
{
	struct cache_entry *e = c->buckets[h & (c->nbuckets - 1)];

	for (; e != NULL; e = e->hnext) {
		if (e->hash == h && e->keylen == len &&
		    memcmp(e->key, k, len) == 0)
			return e;
	}
	return NULL;
}

const struct cache_value *cache_get(struct cache *c, enum cache_kind kind,
				    const char *key, uint64_t now)
{
	size_t len;
	char *k = make_key(kind, key, &len);
	uint32_t h = cache_hash(k, len);
	struct cache_entry *e = cache_find(c, k, len, h);

	free(k);
	if (e != NULL && e->expires <= now) {
		entry_remove(c, e);
		e = NULL;
	}
	if (e == NULL) {
		c->misses++;
		return NULL;
	}
	c->hits++;
	lru_unlink(c, e);
	lru_push(c, e);
	return &e->value;
}

void cache_put(struct cache *c, enum cache_kind kind, const char *key,
	       struct cache_value *v, uint64_t generation, uint64_t now)
{
	struct cache_entry *e;
	size_t len;
	char *k;
	uint32_t h;

	if (c->max_entries == 0 || generation != c->generation ||
	    (v->status != DIR_OK && v->status != DIR_NOTFOUND)) {
		cache_value_clear(v);
		return;
	}
	k = make_key(kind, key, &len);
	h = cache_hash(k, len);
	e = cache_find(c, k, len, h);
	if (e != NULL)
		entry_remove(c, e);
	while (c->count >= c->max_entries)
		entry_remove(c, c->oldest);
	e = xcalloc(1, sizeof(*e) + len + 1);
	memcpy(e->key, k, len + 1);
	free(k);
	e->keylen = len;
	e->hash = h;
	e->expires = now + c->ttl_ms;
	e->value = *v;
	memset(v, 0, sizeof(*v));
	e->hnext = c->buckets[h & (c->nbuckets - 1)];
	c->buckets[h & (c->nbuckets - 1)] = e;
	lru_push(c, e);
	c->count++;
}

uint64_t cache_generation(const struct cache *c)
{
	return c->generation;
}

size_t cache_entries(const struct cache *c)
{
	return c->count;
}

void cache_stats(const struct cache *c, uint64_t *hits_r, uint64_t *misses_r)
{
	*hits_r = c->hits;
	*misses_r = c->misses;
}
