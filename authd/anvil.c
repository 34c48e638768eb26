/* anvil.c: see anvil.h. */
#include "config.h"

#include <stdlib.h>
#include <sys/random.h>

#include "compat.h"
#include "anvil.h"
#include "xalloc.h"

#define ANVIL_BUCKETS_MIN 64
#define ANVIL_EVICT_SCAN 16	/* LRU entries looked at for a quiet one */
#define ANVIL_DELAY_STEP_MS 1000

enum anvil_kind {
	ANVIL_IP = 'i',
	ANVIL_USER = 'u',
	ANVIL_CONN = 'c',
	ANVIL_EVENT = 'e',
};

struct anvil_entry {
	struct anvil_entry *hnext;		/* hash chain */
	struct anvil_entry *newer, *older;	/* LRU list */
	uint32_t hash;
	uint64_t *fails;	/* ring of failure times, a->ring long */
	unsigned int nfails;	/* valid entries in the ring */
	unsigned int fail_pos;	/* next slot to write */
	uint64_t locked_until;
	unsigned int conns;
	unsigned int rate;
	uint64_t rate_start;
	size_t keylen;
	char key[];		/* kind byte, then the key, NUL-terminated */
};

struct anvil {
	struct anvil_settings set;
	struct anvil_entry **buckets;
	size_t nbuckets;	/* a power of two */
	size_t count;
	struct anvil_entry *newest, *oldest;
	unsigned int ring;
	uint32_t seed;
};

static unsigned int ring_size(const struct anvil_settings *set)
{
	unsigned int n = set->lockout_threshold;

	if (n < ANVIL_RING_MIN)
		n = ANVIL_RING_MIN;
	return n > ANVIL_RING_MAX ? ANVIL_RING_MAX : n;
}

static size_t buckets_for(size_t entries)
{
	size_t n = ANVIL_BUCKETS_MIN;

	while (n < entries && n < ((size_t)1 << 24))
		n <<= 1;
	return n;
}

/* Seeded FNV-1a over the kind byte and the key. */
static uint32_t anvil_hash(const struct anvil *a, const char *key, size_t len)
{
	uint32_t h = 2166136261u ^ a->seed;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)key[i];
		h *= 16777619u;
	}
	return h;
}

/* ---- LRU list and hash table ---- */

static void lru_unlink(struct anvil *a, struct anvil_entry *e)
{
	if (e->newer != NULL)
		e->newer->older = e->older;
	else
		a->newest = e->older;
	if (e->older != NULL)
		e->older->newer = e->newer;
	else
		a->oldest = e->newer;
	e->newer = e->older = NULL;
}

static void lru_push(struct anvil *a, struct anvil_entry *e)
{
	e->older = a->newest;
	e->newer = NULL;
	if (a->newest != NULL)
		a->newest->newer = e;
	a->newest = e;
	if (a->oldest == NULL)
		a->oldest = e;
}

static void entry_remove(struct anvil *a, struct anvil_entry *e)
{
	struct anvil_entry **pp = &a->buckets[e->hash & (a->nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	lru_unlink(a, e);
	a->count--;
	free(e->fails);
	free(e);
}

static void anvil_rehash(struct anvil *a, size_t nbuckets)
{
	struct anvil_entry **b = xcalloc(nbuckets, sizeof(*b));

	for (size_t i = 0; i < a->nbuckets; i++) {
		struct anvil_entry *e = a->buckets[i], *next;

		for (; e != NULL; e = next) {
			next = e->hnext;
			e->hnext = b[e->hash & (nbuckets - 1)];
			b[e->hash & (nbuckets - 1)] = e;
		}
	}
	free(a->buckets);
	a->buckets = b;
	a->nbuckets = nbuckets;
}

static bool entry_busy(const struct anvil_entry *e, uint64_t now)
{
	return e->conns > 0 || e->locked_until > now;
}

/* Makes room for one more entry. */
static void anvil_evict(struct anvil *a, uint64_t now)
{
	struct anvil_entry *e = a->oldest;

	for (int i = 0; e != NULL && i < ANVIL_EVICT_SCAN; i++, e = e->newer) {
		if (!entry_busy(e, now)) {
			entry_remove(a, e);
			return;
		}
	}
	if (a->oldest != NULL)
		entry_remove(a, a->oldest);
}

/* Builds the key "K" + part1 [+ " " + part2], cut at ANVIL_KEY_MAX. */
static size_t make_key(char *buf, enum anvil_kind kind, const char *p1,
		       const char *p2)
{
	size_t n = 1;

	buf[0] = (char)kind;
	for (; *p1 != '\0' && n < ANVIL_KEY_MAX; p1++)
		buf[n++] = *p1;
	if (p2 != NULL && n < ANVIL_KEY_MAX)
		buf[n++] = ' ';
	for (; p2 != NULL && *p2 != '\0' && n < ANVIL_KEY_MAX; p2++)
		buf[n++] = *p2;
	buf[n] = '\0';
	return n;
}

/* The entry for key; created when create is set (else NULL if absent). */
static struct anvil_entry *anvil_find(struct anvil *a, enum anvil_kind kind,
				      const char *p1, const char *p2,
				      uint64_t now, bool create)
{
	char key[ANVIL_KEY_MAX + 1];
	size_t len = make_key(key, kind, p1, p2);
	uint32_t h = anvil_hash(a, key, len);
	struct anvil_entry *e;

	for (e = a->buckets[h & (a->nbuckets - 1)]; e != NULL; e = e->hnext) {
		if (e->hash == h && e->keylen == len &&
		    memcmp(e->key, key, len) == 0) {
			lru_unlink(a, e);
			lru_push(a, e);
			return e;
		}
	}
	if (!create)
		return NULL;
	while (a->count >= a->set.max_entries && a->count > 0)
		anvil_evict(a, now);
	e = xcalloc(1, sizeof(*e) + len + 1);
	memcpy(e->key, key, len + 1);
	e->keylen = len;
	e->hash = h;
	e->hnext = a->buckets[h & (a->nbuckets - 1)];
	a->buckets[h & (a->nbuckets - 1)] = e;
	lru_push(a, e);
	a->count++;
	return e;
}

/* ---- failure rings ---- */

static unsigned int fails_in_window(const struct anvil *a,
				    const struct anvil_entry *e, uint64_t now)
{
	unsigned int n = 0;

	for (unsigned int i = 0; i < e->nfails; i++) {
		if (e->fails[i] + a->set.window_ms > now)
			n++;
	}
	return n;
}

static unsigned int fail_record(struct anvil *a, struct anvil_entry *e,
				uint64_t now)
{
	if (e->fails == NULL)
		e->fails = xcalloc(a->ring, sizeof(*e->fails));
	e->fails[e->fail_pos] = now;
	e->fail_pos = (e->fail_pos + 1) % a->ring;
	if (e->nfails < a->ring)
		e->nfails++;
	return fails_in_window(a, e, now);
}

static void fail_clear(struct anvil_entry *e)
{
	free(e->fails);
	e->fails = NULL;
	e->nfails = e->fail_pos = 0;
}

static uint64_t failure_delay(const struct anvil *a, unsigned int n)
{
	uint64_t d;

	if (n <= 1)
		return 0;
	d = n - 2 >= 40 ? UINT64_MAX :
			  (uint64_t)ANVIL_DELAY_STEP_MS << (n - 2);
	return d > a->set.delay_max_ms ? a->set.delay_max_ms : d;
}

/* ---- public ---- */

struct anvil *anvil_new(const struct anvil_settings *set)
{
	struct anvil *a = xcalloc(1, sizeof(*a));

	if (getrandom(&a->seed, sizeof(a->seed), 0) != sizeof(a->seed))
		a->seed = 0x5bd1e995u;
	a->set = *set;
	if (a->set.max_entries < 1)
		a->set.max_entries = 1;
	a->ring = ring_size(&a->set);
	a->nbuckets = buckets_for(a->set.max_entries);
	a->buckets = xcalloc(a->nbuckets, sizeof(*a->buckets));
	return a;
}

void anvil_free(struct anvil **ap)
{
	struct anvil *a = *ap;

	if (a == NULL)
		return;
	while (a->oldest != NULL)
		entry_remove(a, a->oldest);
	free(a->buckets);
	free(a);
	*ap = NULL;
}

void anvil_set_settings(struct anvil *a, const struct anvil_settings *set)
{
	unsigned int ring = ring_size(set);

	a->set = *set;
	if (a->set.max_entries < 1)
		a->set.max_entries = 1;
	if (ring != a->ring) {
		for (struct anvil_entry *e = a->oldest; e != NULL; e = e->newer)
			fail_clear(e);
		a->ring = ring;
	}
	while (a->count > a->set.max_entries)
		anvil_evict(a, 0);
	if (buckets_for(a->set.max_entries) > a->nbuckets)
		anvil_rehash(a, buckets_for(a->set.max_entries));
}

bool anvil_auth_locked(struct anvil *a, const char *rip, uint64_t now,
		       uint64_t *remaining_ms_r)
{
	struct anvil_entry *e;

	if (*rip == '\0')
		return false;
	e = anvil_find(a, ANVIL_IP, rip, NULL, now, false);
	if (e == NULL || e->locked_until <= now)
		return false;
	if (remaining_ms_r != NULL)
		*remaining_ms_r = e->locked_until - now;
	return true;
}

void anvil_auth_failed(struct anvil *a, const char *rip, const char *user,
		       uint64_t now, struct anvil_failure *r)
{
	struct anvil_entry *ip = NULL;
	unsigned int n;

	memset(r, 0, sizeof(*r));
	if (*user != '\0') {
		struct anvil_entry *u = anvil_find(a, ANVIL_USER, user, NULL,
						   now, true);
		r->user_failures = fail_record(a, u, now);
	}
	if (*rip != '\0') {
		ip = anvil_find(a, ANVIL_IP, rip, NULL, now, true);
		r->ip_failures = fail_record(a, ip, now);
	}
	n = r->ip_failures > r->user_failures ? r->ip_failures :
						r->user_failures;
	r->delay_ms = failure_delay(a, n);
	if (ip != NULL && a->set.lockout_threshold > 0 &&
	    r->ip_failures >= a->set.lockout_threshold) {
		ip->locked_until = now + a->set.lockout_ms;
		fail_clear(ip);
		r->locked_out = true;
	}
}

void anvil_auth_succeeded(struct anvil *a, const char *rip, const char *user,
			  uint64_t now)
{
	struct anvil_entry *e;

	if (*user != '\0' &&
	    (e = anvil_find(a, ANVIL_USER, user, NULL, now, false)) != NULL)
		fail_clear(e);
	if (*rip != '\0' &&
	    (e = anvil_find(a, ANVIL_IP, rip, NULL, now, false)) != NULL)
		fail_clear(e);
}

unsigned int anvil_ip_failures(struct anvil *a, const char *rip,
			       uint64_t now)
{
	struct anvil_entry *e = anvil_find(a, ANVIL_IP, rip, NULL, now, false);

	return e == NULL ? 0 : fails_in_window(a, e, now);
}

unsigned int anvil_user_failures(struct anvil *a, const char *user,
				 uint64_t now)
{
	struct anvil_entry *e = anvil_find(a, ANVIL_USER, user, NULL, now,
					   false);

	return e == NULL ? 0 : fails_in_window(a, e, now);
}

static void rate_roll(const struct anvil *a, struct anvil_entry *e,
		      uint64_t now)
{
	if (e->rate == 0 || now >= e->rate_start + a->set.rate_window_ms) {
		e->rate_start = now;
		e->rate = 0;
	}
}

unsigned int anvil_connect(struct anvil *a, const char *service,
			   const char *rip, uint64_t now, unsigned int *rate_r)
{
	struct anvil_entry *e = anvil_find(a, ANVIL_CONN, service, rip, now,
					   true);

	rate_roll(a, e, now);
	if (e->rate < UINT32_MAX)
		e->rate++;
	if (e->conns < UINT32_MAX)
		e->conns++;
	*rate_r = e->rate;
	return e->conns;
}

unsigned int anvil_event(struct anvil *a, const char *event, const char *who,
			 unsigned int n, uint64_t now)
{
	struct anvil_entry *e = anvil_find(a, ANVIL_EVENT, event, who, now,
					   true);

	rate_roll(a, e, now);
	e->rate = n > UINT32_MAX - e->rate ? UINT32_MAX : e->rate + n;
	return e->rate;
}

void anvil_disconnect(struct anvil *a, const char *service, const char *rip,
		      uint64_t now)
{
	struct anvil_entry *e = anvil_find(a, ANVIL_CONN, service, rip, now,
					   false);

	if (e != NULL && e->conns > 0)
		e->conns--;
}

unsigned int anvil_connections(struct anvil *a, const char *service,
			       const char *rip, uint64_t now,
			       unsigned int *rate_r)
{
	struct anvil_entry *e = anvil_find(a, ANVIL_CONN, service, rip, now,
					   false);

	*rate_r = 0;
	if (e == NULL)
		return 0;
	rate_roll(a, e, now);
	*rate_r = e->rate;
	return e->conns;
}

void anvil_expire(struct anvil *a, uint64_t now)
{
	struct anvil_entry *e = a->oldest, *next;

	for (; e != NULL; e = next) {
		next = e->newer;
		if (entry_busy(e, now) || fails_in_window(a, e, now) > 0 ||
		    (e->rate > 0 &&
		     now < e->rate_start + a->set.rate_window_ms))
			continue;
		entry_remove(a, e);
	}
}

size_t anvil_entries(const struct anvil *a)
{
	return a->count;
}
