/*
 * dns.c: MX and address lookups with c-ares on the libuv loop (see
 * dns.h).
 *
 * c-ares tells through its socket state callback which sockets it wants
 * watched; each gets a uv_poll.  One uv_timer fires at the time
 * ares_timeout() names, for retries and timeouts.  An MX lookup is one MX
 * query, then an A and an AAAA query for each host kept; the answer goes
 * to the caller from the loop (never from inside dns_lookup_mx()).
 *
 * Answers are kept (DNS_CACHE_BYTES in all, the oldest dropped first) for
 * the least TTL of their MX, A and AAAA records, at most
 * dns_settings.cache_ttl_max_ms; a permanent failure (no such domain,
 * null MX) for at most DNS_CACHE_NEGATIVE_MS; temporary failures and
 * answers where an address query failed for now are not kept.  A kept
 * answer shuffles its equal preferences again at each use.
 */
#include "config.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ares.h>
#include <idn2.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "compat.h"
#include "dns.h"
#include "str.h"
#include "xalloc.h"

/* A string that reached its maximum is cut there: fine here. */
#define STR_TRY(x) do { if ((x) < 0) { /* cut */ } } while (0)

struct dns_sock {
	uv_poll_t poll;
	struct dns_resolver *r;
	ares_socket_t fd;
	struct dns_sock *next;
};

/* A remembered answer (an MX host list or a permanent failure). */
struct dns_cached {
	struct dns_cached *hnext;	/* hash chain */
	struct dns_cached *older, *newer;	/* insertion order */
	uint64_t expires;		/* uv_now() */
	size_t bytes;			/* counted in the budget */
	enum dns_status status;
	char enhanced[8];
	bool implicit;
	char *error;			/* NULL when OK */
	struct dns_host *hosts;
	size_t nhosts;
	char domain[DNS_NAME_MAX + 1];
};

struct dns_resolver {
	uv_loop_t *loop;
	ares_channel ch;
	uv_timer_t *timer;
	struct dns_sock *socks;
	uint32_t rnd;
	bool dying;		/* in dns_resolver_free() */
	uint64_t cache_ttl_max;	/* ms; 0 = no cache */
	struct dns_cached *bucket[DNS_CACHE_BUCKETS];
	struct dns_cached *oldest, *newest;
	size_t cache_bytes;
	struct dns_cache_stats stats;
};

struct dns_lookup {
	struct dns_resolver *r;
	dns_mx_cb *cb;
	void *ctx;
	char domain[DNS_NAME_MAX + 1];
	struct dns_host hosts[DNS_MX_MAX];
	size_t nhosts;
	bool implicit;
	unsigned pending;	/* address queries still out */
	bool temp;		/* an address query failed for now */
	bool in_call;		/* inside dns_lookup_mx() */
	bool asked;		/* the answer came from the DNS */
	uint32_t ttl;		/* the least TTL seen, seconds */
	uv_timer_t *later;	/* hands the answer over from the loop */
	struct dns_mx_result res;
	char error[512];
};

struct dns_addr_query {
	struct dns_lookup *l;
	size_t host;
	bool v6;
};

/* ---- the pure parts ---- */

enum dns_status dns_classify(int st, const char **enhanced_r)
{
	switch (st) {
	case ARES_SUCCESS:
		*enhanced_r = "";
		return DNS_OK;
	case ARES_ENOTFOUND:
	case ARES_EBADNAME:
		*enhanced_r = "5.1.2";
		return DNS_PERM;
	case ARES_ENODATA:
		*enhanced_r = "5.4.4";
		return DNS_PERM;
	default:
		*enhanced_r = "4.4.3";
		return DNS_TEMP;
	}
}

int dns_parse_literal(const char *s, struct sockaddr_storage *ss)
{
	char buf[INET6_ADDRSTRLEN + 8];
	size_t n = strlen(s);
	bool v6;

	if (n < 3 || s[0] != '[' || s[n - 1] != ']' || n - 2 >= sizeof(buf))
		return -1;
	memcpy(buf, s + 1, n - 2);
	buf[n - 2] = '\0';
	v6 = strncasecmp(buf, "IPv6:", 5) == 0;
	memset(ss, 0, sizeof(*ss));
	if (v6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

		in6->sin6_family = AF_INET6;
		return inet_pton(AF_INET6, buf + 5, &in6->sin6_addr) == 1 ?
			       0 : -1;
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		in->sin_family = AF_INET;
		return inet_pton(AF_INET, buf, &in->sin_addr) == 1 ? 0 : -1;
	}
}

/* Skips a (possibly compressed) name at *pos: 0, or -1 past the end. */
static int skip_name(const unsigned char *b, size_t len, size_t *pos)
{
	size_t p = *pos;

	for (unsigned labels = 0; labels < 128; labels++) {
		if (p >= len)
			return -1;
		if ((b[p] & 0xc0) == 0xc0) {
			if (p + 2 > len)
				return -1;
			*pos = p + 2;
			return 0;
		}
		if ((b[p] & 0xc0) != 0)
			return -1;	/* extended label types */
		if (b[p] == 0) {
			*pos = p + 1;
			return 0;
		}
		p += 1 + (size_t)b[p];
	}
	return -1;
}

int dns_answer_min_ttl(const unsigned char *b, size_t len, unsigned type,
		       uint32_t *ttl_r)
{
	size_t pos = 12;
	unsigned qd, an;
	bool found = false;

	if (len < 12)
		return -1;
	qd = (unsigned)b[4] << 8 | b[5];
	an = (unsigned)b[6] << 8 | b[7];
	for (unsigned i = 0; i < qd; i++) {
		if (skip_name(b, len, &pos) < 0 || pos + 4 > len)
			return -1;
		pos += 4;
	}
	for (unsigned i = 0; i < an; i++) {
		unsigned rtype, rdlen;
		uint32_t ttl;

		if (skip_name(b, len, &pos) < 0 || pos + 10 > len)
			return -1;
		rtype = (unsigned)b[pos] << 8 | b[pos + 1];
		ttl = (uint32_t)b[pos + 4] << 24 | (uint32_t)b[pos + 5] << 16 |
		      (uint32_t)b[pos + 6] << 8 | b[pos + 7];
		rdlen = (unsigned)b[pos + 8] << 8 | b[pos + 9];
		pos += 10;
		if (pos + rdlen > len)
			return -1;
		pos += rdlen;
		if (ttl > 0x7fffffffu)
			ttl = 0;	/* RFC 2181 8: as if zero */
		if (rtype == type && (!found || ttl < *ttl_r)) {
			*ttl_r = ttl;
			found = true;
		}
	}
	return found ? 0 : -1;
}

bool dns_mx_is_null(const char *const *names, size_t n)
{
	return n == 1 && (names[0][0] == '\0' || strcmp(names[0], ".") == 0);
}

static bool host_before(const struct dns_host *a, const struct dns_host *b)
{
	return a->pref < b->pref || (a->pref == b->pref && a->key < b->key);
}

size_t dns_mx_order(struct dns_host *h, size_t n, uint32_t (*rnd)(void *),
		    void *ctx)
{
	size_t out = 0;

	/* Duplicates first: keep the most preferred entry of a name. */
	for (size_t i = 0; i < n; i++) {
		size_t k;

		for (k = 0; k < out; k++) {
			if (strcasecmp(h[k].name, h[i].name) == 0)
				break;
		}
		if (k < out) {
			if (h[i].pref < h[k].pref)
				h[k].pref = h[i].pref;
			continue;
		}
		if (out != i)
			h[out] = h[i];
		out++;
	}
	for (size_t i = 0; i < out; i++)
		h[i].key = rnd(ctx);
	/* Insertion sort: n is at most a few dozen. */
	for (size_t i = 1; i < out; i++) {
		struct dns_host t = h[i];
		size_t k = i;

		while (k > 0 && host_before(&t, &h[k - 1])) {
			h[k] = h[k - 1];
			k--;
		}
		h[k] = t;
	}
	return out;
}

/* One server: 0 and appended to out, or -1. */
static int server_one(const char *s, struct str *out)
{
	char host[INET6_ADDRSTRLEN + 1];
	unsigned char buf[sizeof(struct in6_addr)];
	const char *port = NULL, *end;
	size_t hl;
	bool v6;

	if (s[0] == '[') {
		end = strchr(s, ']');
		if (end == NULL || (end[1] != '\0' && end[1] != ':'))
			return -1;
		hl = (size_t)(end - s - 1);
		s++;
		port = end[1] == ':' ? end + 2 : NULL;
		v6 = true;
	} else if (strchr(s, ':') != strrchr(s, ':')) {
		hl = strlen(s);		/* a bare IPv6 address */
		v6 = true;
	} else {
		end = strchr(s, ':');
		hl = end != NULL ? (size_t)(end - s) : strlen(s);
		port = end != NULL ? end + 1 : NULL;
		v6 = false;
	}
	if (hl == 0 || hl >= sizeof(host))
		return -1;
	memcpy(host, s, hl);
	host[hl] = '\0';
	if (inet_pton(v6 ? AF_INET6 : AF_INET, host, buf) != 1)
		return -1;
	if (port != NULL) {
		char *pe;
		unsigned long p = strtoul(port, &pe, 10);

		if (port[0] < '0' || port[0] > '9' || *pe != '\0' || p == 0 ||
		    p > 65535 || strlen(port) > 5)
			return -1;
	}
	if (str_len(out) > 0 && str_append_byte(out, ',') < 0)
		return -1;
	if (str_printf(out, v6 ? "[%s]:%s" : "%s:%s", host,
		       port != NULL ? port : "53") < 0)
		return -1;
	return 0;
}

int dns_servers_csv(const char *const *servers, size_t n, struct str *out,
		    const char **error_r)
{
	str_clear(out);
	for (size_t i = 0; i < n; i++) {
		if (server_one(servers[i], out) < 0) {
			*error_r = "a DNS server is not IP, IP:port or "
				   "[IPv6]:port";
			return -1;
		}
	}
	return 0;
}

/* ---- c-ares on the loop ---- */

static uint32_t dns_rand(void *ctx)
{
	struct dns_resolver *r = ctx;
	uint32_t x = r->rnd;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	r->rnd = x;
	return x;
}

static void timer_freed(uv_handle_t *h)
{
	free(h);
}

static void dns_schedule(struct dns_resolver *r);

static void on_timer(uv_timer_t *t)
{
	struct dns_resolver *r = t->data;

	ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	dns_schedule(r);
}

/* The timer at the next time c-ares wants to look at its queries. */
static void dns_schedule(struct dns_resolver *r)
{
	struct timeval tv, *tvp;
	uint64_t ms;

	if (r->dying)
		return;
	tvp = ares_timeout(r->ch, NULL, &tv);
	if (tvp == NULL) {
		uv_timer_stop(r->timer);
		return;
	}
	ms = (uint64_t)tvp->tv_sec * 1000 +
	     ((uint64_t)tvp->tv_usec + 999) / 1000;
	uv_timer_start(r->timer, on_timer, ms, 0);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	struct dns_sock *s = p->data;
	struct dns_resolver *r = s->r;
	ares_socket_t fd = s->fd;

	ares_process_fd(r->ch,
			status < 0 || (events & UV_READABLE) ? fd :
							      ARES_SOCKET_BAD,
			status < 0 || (events & UV_WRITABLE) ? fd :
							      ARES_SOCKET_BAD);
	dns_schedule(r);
}

static void sock_freed(uv_handle_t *h)
{
	free(h->data);
}

static void sock_state(void *data, ares_socket_t fd, int readable,
		       int writable)
{
	struct dns_resolver *r = data;
	struct dns_sock **sp = &r->socks, *s;
	int events = (readable ? UV_READABLE : 0) |
		     (writable ? UV_WRITABLE : 0);

	while (*sp != NULL && (*sp)->fd != fd)
		sp = &(*sp)->next;
	s = *sp;
	if (events == 0) {
		if (s != NULL) {
			*sp = s->next;
			uv_poll_stop(&s->poll);
			uv_close((uv_handle_t *)&s->poll, sock_freed);
		}
		return;
	}
	if (s == NULL) {
		s = xcalloc(1, sizeof(*s));
		s->r = r;
		s->fd = fd;
		if (uv_poll_init_socket(r->loop, &s->poll, fd) < 0) {
			free(s);
			return;
		}
		s->poll.data = s;
		s->next = r->socks;
		r->socks = s;
	}
	uv_poll_start(&s->poll, events, on_poll);
}

struct dns_resolver *dns_resolver_new(uv_loop_t *loop,
				      const struct dns_settings *set,
				      const char **error_r)
{
	static bool lib_ready;
	struct dns_resolver *r;
	struct ares_options o;
	struct str *csv;
	int st;

	if (!lib_ready) {
		if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS) {
			*error_r = "c-ares cannot start";
			return NULL;
		}
		lib_ready = true;
	}
	csv = str_new(128, 8192);
	if (dns_servers_csv(set->servers, set->nservers, csv, error_r) < 0) {
		str_free(&csv);
		return NULL;
	}
	r = xcalloc(1, sizeof(*r));
	r->loop = loop;
	r->rnd = (uint32_t)uv_hrtime() ^ ((uint32_t)getpid() << 16) ^
		 (uint32_t)(uintptr_t)r;
	if (r->rnd == 0)
		r->rnd = 0x9e3779b9u;
	memset(&o, 0, sizeof(o));
	o.sock_state_cb = sock_state;
	o.sock_state_cb_data = r;
	o.timeout = set->timeout_ms > 0 && set->timeout_ms < 600000 ?
			    (int)set->timeout_ms : 5000;
	o.tries = set->tries > 0 && set->tries < 10 ? (int)set->tries : 2;
	o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
	st = ares_init_options(&r->ch, &o, ARES_OPT_SOCK_STATE_CB |
			       ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
			       ARES_OPT_FLAGS);
	if (st == ARES_SUCCESS && str_len(csv) > 0)
		st = ares_set_servers_ports_csv(r->ch, str_c(csv));
	str_free(&csv);
	if (st != ARES_SUCCESS) {
		*error_r = ares_strerror(st);
		if (r->ch != NULL)
			ares_destroy(r->ch);
		free(r);
		return NULL;
	}
	r->cache_ttl_max = set->cache_ttl_max_ms;
	r->timer = xmalloc(sizeof(*r->timer));
	uv_timer_init(loop, r->timer);
	r->timer->data = r;
	return r;
}

/* ---- the answer cache ---- */

static void lookup_end(struct dns_lookup *l, enum dns_status st,
		       const char *enhanced);

static size_t cache_slot(const char *domain)
{
	uint32_t h = 2166136261u;

	for (const char *p = domain; *p != '\0'; p++) {
		h ^= (unsigned char)(*p | 0x20);	/* any case */
		h *= 16777619u;
	}
	return h % DNS_CACHE_BUCKETS;
}

static void cache_drop(struct dns_resolver *r, struct dns_cached *c)
{
	struct dns_cached **pp = &r->bucket[cache_slot(c->domain)];

	while (*pp != c)
		pp = &(*pp)->hnext;
	*pp = c->hnext;
	if (c->older != NULL)
		c->older->newer = c->newer;
	else
		r->oldest = c->newer;
	if (c->newer != NULL)
		c->newer->older = c->older;
	else
		r->newest = c->older;
	r->cache_bytes -= c->bytes;
	r->stats.entries--;
	free(c->error);
	free(c->hosts);
	free(c);
}

static struct dns_cached *cache_find(struct dns_resolver *r,
				     const char *domain)
{
	struct dns_cached *c = r->bucket[cache_slot(domain)];

	while (c != NULL && strcasecmp(c->domain, domain) != 0)
		c = c->hnext;
	if (c != NULL && c->expires <= uv_now(r->loop)) {
		cache_drop(r, c);
		c = NULL;
	}
	return c;
}

/* Keeps the answer of l for its TTL (at most cache_ttl_max; permanent
 * failures at most DNS_CACHE_NEGATIVE_MS).  Partial answers (an address
 * query failed for now) and temporary failures are not kept. */
static void cache_put(struct dns_resolver *r, const struct dns_lookup *l)
{
	uint64_t ttl = l->res.status == DNS_OK ? (uint64_t)l->ttl * 1000 :
						DNS_CACHE_NEGATIVE_MS;
	struct dns_cached *c, *old;
	size_t hosts = l->res.nhosts * sizeof(struct dns_host);

	if (r->cache_ttl_max == 0 || !l->asked || l->temp ||
	    l->res.status == DNS_TEMP || r->dying)
		return;
	if (ttl > r->cache_ttl_max)
		ttl = r->cache_ttl_max;
	if (ttl == 0)
		return;
	old = cache_find(r, l->domain);
	if (old != NULL)
		cache_drop(r, old);
	c = xcalloc(1, sizeof(*c));
	str_lcpy(c->domain, l->domain, sizeof(c->domain));
	c->expires = uv_now(r->loop) + ttl;
	c->status = l->res.status;
	str_lcpy(c->enhanced, l->res.enhanced, sizeof(c->enhanced));
	c->implicit = l->res.implicit;
	c->error = l->res.error != NULL ? xstrdup(l->res.error) : NULL;
	if (hosts > 0) {
		c->hosts = xmalloc(hosts);
		memcpy(c->hosts, l->res.hosts, hosts);
		c->nhosts = l->res.nhosts;
	}
	c->bytes = sizeof(*c) + hosts;
	while (r->oldest != NULL &&
	       r->cache_bytes + c->bytes > DNS_CACHE_BYTES)
		cache_drop(r, r->oldest);
	c->hnext = r->bucket[cache_slot(c->domain)];
	r->bucket[cache_slot(c->domain)] = c;
	c->older = r->newest;
	if (r->newest != NULL)
		r->newest->newer = c;
	else
		r->oldest = c;
	r->newest = c;
	r->cache_bytes += c->bytes;
	r->stats.entries++;
}

/* The cached answer for l's domain into l: true when there was one. */
static bool cache_take(struct dns_resolver *r, struct dns_lookup *l)
{
	struct dns_cached *c;

	if (r->cache_ttl_max == 0)
		return false;
	c = cache_find(r, l->domain);
	if (c == NULL) {
		r->stats.misses++;
		return false;
	}
	r->stats.hits++;
	memcpy(l->hosts, c->hosts, c->nhosts * sizeof(*c->hosts));
	l->nhosts = c->nhosts;
	l->implicit = c->implicit;
	if (c->error != NULL)
		str_lcpy(l->error, c->error, sizeof(l->error));
	/* Equal preferences in a new random order each time. */
	l->nhosts = dns_mx_order(l->hosts, l->nhosts, dns_rand, r);
	lookup_end(l, c->status, c->enhanced);
	return true;
}

void dns_cache_stats(const struct dns_resolver *r,
		     struct dns_cache_stats *stats)
{
	*stats = r->stats;
	stats->bytes = r->cache_bytes;
}

void dns_resolver_free(struct dns_resolver **rp)
{
	struct dns_resolver *r = *rp;

	if (r == NULL)
		return;
	*rp = NULL;
	r->dying = true;
	ares_destroy(r->ch);	/* callbacks with ARES_EDESTRUCTION */
	while (r->socks != NULL) {
		struct dns_sock *s = r->socks;

		r->socks = s->next;
		uv_poll_stop(&s->poll);
		uv_close((uv_handle_t *)&s->poll, sock_freed);
	}
	uv_timer_stop(r->timer);
	uv_close((uv_handle_t *)r->timer, timer_freed);
	while (r->oldest != NULL)
		cache_drop(r, r->oldest);
	free(r);
}

/* ---- the lookup ---- */

static void lookup_deliver(struct dns_lookup *l)
{
	l->cb(&l->res, l->ctx);
	free(l);
}

static void later_fired(uv_timer_t *t)
{
	struct dns_lookup *l = t->data;

	uv_close((uv_handle_t *)t, timer_freed);
	lookup_deliver(l);
}

static void lookup_end(struct dns_lookup *l, enum dns_status st,
		       const char *enhanced)
{
	l->res.status = st;
	str_lcpy(l->res.enhanced, enhanced, sizeof(l->res.enhanced));
	l->res.error = st == DNS_OK ? NULL : l->error;
	l->res.implicit = l->implicit;
	l->res.hosts = l->hosts;
	l->res.nhosts = st == DNS_OK ? l->nhosts : 0;
	cache_put(l->r, l);
	if (!l->in_call) {
		lookup_deliver(l);
		return;
	}
	l->later = xmalloc(sizeof(*l->later));
	uv_timer_init(l->r->loop, l->later);
	l->later->data = l;
	uv_timer_start(l->later, later_fired, 0, 0);
}

static void lookup_fail(struct dns_lookup *l, int ares_status,
			const char *what)
{
	const char *enh;
	enum dns_status st = dns_classify(ares_status, &enh);

	if (st == DNS_OK) {
		st = DNS_TEMP;
		enh = "4.4.3";
	}
	snprintf(l->error, sizeof(l->error), "%s: %s", what,
		 ares_status == ARES_ENOTFOUND ? "no such domain" :
		 ares_status == ARES_ENODATA ? "no address record" :
		 ares_strerror(ares_status));
	lookup_end(l, st, enh);
}

/* IPv4 addresses before IPv6 ones, each family in answer order. */
static void order_addrs(struct dns_host *h)
{
	struct sockaddr_storage t[DNS_ADDR_MAX];
	size_t n = 0;

	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < h->naddr; i++) {
			if ((h->addr[i].ss_family == AF_INET) == (pass == 0))
				t[n++] = h->addr[i];
		}
	}
	memcpy(h->addr, t, n * sizeof(t[0]));
}

/* Every address query is back: the answer. */
static void addrs_done(struct dns_lookup *l)
{
	size_t out = 0;
	struct str *e;

	for (size_t i = 0; i < l->nhosts; i++) {
		if (l->hosts[i].naddr == 0)
			continue;
		order_addrs(&l->hosts[i]);
		if (out != i)
			l->hosts[out] = l->hosts[i];
		out++;
	}
	if (out > 0) {
		l->nhosts = out;
		lookup_end(l, DNS_OK, "");
		return;
	}
	e = str_new(128, sizeof(l->error) - 1);
	if (l->implicit)
		STR_TRY(str_printf(e, "%s has no MX and %s address", l->domain,
				   l->temp ? "cannot find its" : "no"));
	else
		STR_TRY(str_printf(e, "%s: %s for its MX host%s %s%s",
				   l->domain, l->temp ? "cannot find an address"
						      : "no address",
				   l->nhosts > 1 ? "s" : "", l->hosts[0].name,
				   l->nhosts > 1 ? ", ..." : ""));
	str_lcpy(l->error, str_c(e), sizeof(l->error));
	str_free(&e);
	lookup_end(l, l->temp ? DNS_TEMP : DNS_PERM,
		   l->temp ? "4.4.3" : "5.4.4");
}

static void add_addr(struct dns_host *h, int family, const void *a)
{
	struct sockaddr_storage *ss;

	if (h->naddr >= DNS_ADDR_MAX)
		return;
	ss = &h->addr[h->naddr++];
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		in->sin_family = AF_INET;
		memcpy(&in->sin_addr, a, sizeof(in->sin_addr));
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

		in6->sin6_family = AF_INET6;
		memcpy(&in6->sin6_addr, a, sizeof(in6->sin6_addr));
	}
}

static void lookup_ttl(struct dns_lookup *l, int ttl)
{
	uint32_t t = ttl > 0 ? (uint32_t)ttl : 0;

	if (t < l->ttl)
		l->ttl = t;
}

static void on_addr(void *arg, int status, int timeouts, unsigned char *abuf,
		    int alen)
{
	struct dns_addr_query *aq = arg;
	struct dns_lookup *l = aq->l;
	struct dns_host *h = &l->hosts[aq->host];
	int n = DNS_ADDR_MAX;

	(void)timeouts;
	if (status == ARES_SUCCESS && !aq->v6) {
		struct ares_addrttl a4[DNS_ADDR_MAX];

		status = ares_parse_a_reply(abuf, alen, NULL, a4, &n);
		for (int i = 0; status == ARES_SUCCESS && i < n; i++) {
			add_addr(h, AF_INET, &a4[i].ipaddr);
			lookup_ttl(l, a4[i].ttl);
		}
	} else if (status == ARES_SUCCESS) {
		struct ares_addr6ttl a6[DNS_ADDR_MAX];

		status = ares_parse_aaaa_reply(abuf, alen, NULL, a6, &n);
		for (int i = 0; status == ARES_SUCCESS && i < n; i++) {
			add_addr(h, AF_INET6, &a6[i].ip6addr);
			lookup_ttl(l, a6[i].ttl);
		}
	}
	if (status != ARES_SUCCESS && status != ARES_ENODATA &&
	    status != ARES_ENOTFOUND)
		l->temp = true;
	free(aq);
	if (--l->pending == 0)
		addrs_done(l);
}

/* An A and an AAAA query per host, all at once.  One count more than
 * the queries keeps l alive while they are sent (an answer may come from
 * inside ares_query()). */
static void query_addrs(struct dns_lookup *l)
{
	l->pending = (unsigned)(2 * l->nhosts) + 1;
	for (size_t i = 0; i < l->nhosts; i++) {
		for (int v6 = 0; v6 < 2; v6++) {
			struct dns_addr_query *aq = xcalloc(1, sizeof(*aq));

			aq->l = l;
			aq->host = i;
			aq->v6 = v6 != 0;
			ares_query(l->r->ch, l->hosts[i].name, ns_c_in,
				   v6 ? ns_t_aaaa : ns_t_a, on_addr, aq);
		}
	}
	if (--l->pending == 0)
		addrs_done(l);
}

/* Keeps the record in hosts[], replacing the least preferred one when
 * full. */
static void keep_mx(struct dns_lookup *l, const char *name, unsigned pref)
{
	size_t slot = l->nhosts;

	if (strlen(name) > DNS_NAME_MAX || name[0] == '\0')
		return;
	if (l->nhosts == DNS_MX_MAX) {
		slot = 0;
		for (size_t i = 1; i < l->nhosts; i++) {
			if (l->hosts[i].pref > l->hosts[slot].pref)
				slot = i;
		}
		if (l->hosts[slot].pref <= pref)
			return;
	} else {
		l->nhosts++;
	}
	memset(&l->hosts[slot], 0, sizeof(l->hosts[slot]));
	str_lcpy(l->hosts[slot].name, name, sizeof(l->hosts[slot].name));
	l->hosts[slot].pref = pref;
}

static void on_mx(void *arg, int status, int timeouts, unsigned char *abuf,
		  int alen)
{
	struct dns_lookup *l = arg;
	struct ares_mx_reply *mx = NULL;
	const char *first = NULL;
	size_t count = 0;

	(void)timeouts;
	l->asked = status != ARES_EDESTRUCTION;
	if (status == ARES_SUCCESS) {
		uint32_t ttl;

		status = ares_parse_mx_reply(abuf, alen, &mx);
		if (status == ARES_SUCCESS &&
		    dns_answer_min_ttl(abuf, (size_t)alen, ns_t_mx, &ttl) == 0)
			lookup_ttl(l, ttl > INT32_MAX ? INT32_MAX : (int)ttl);
		else if (status == ARES_SUCCESS)
			l->ttl = 0;	/* unknown: not kept */
	}
	if (status == ARES_ENODATA) {
		/* No MX: the domain is its own mail host. */
		l->implicit = true;
		keep_mx(l, l->domain, 0);
		query_addrs(l);
		return;
	}
	if (status != ARES_SUCCESS) {
		lookup_fail(l, status, l->domain);
		return;
	}
	for (struct ares_mx_reply *p = mx; p != NULL; p = p->next) {
		if (count++ == 0)
			first = p->host;
	}
	if (first != NULL && dns_mx_is_null(&first, count)) {
		snprintf(l->error, sizeof(l->error), "%s does not accept "
			 "mail (null MX)", l->domain);
		ares_free_data(mx);
		lookup_end(l, DNS_PERM, "5.1.10");
		return;
	}
	for (struct ares_mx_reply *p = mx; p != NULL; p = p->next) {
		if (strcmp(p->host, ".") != 0)
			keep_mx(l, p->host, p->priority);
	}
	ares_free_data(mx);
	l->nhosts = dns_mx_order(l->hosts, l->nhosts, dns_rand, l->r);
	if (l->nhosts == 0) {
		snprintf(l->error, sizeof(l->error), "%s: no usable MX host",
			 l->domain);
		lookup_end(l, DNS_PERM, "5.4.4");
		return;
	}
	query_addrs(l);
}

void dns_lookup_mx(struct dns_resolver *r, const char *domain,
		   dns_mx_cb *cb, void *ctx)
{
	struct dns_lookup *l = xcalloc(1, sizeof(*l));
	size_t n = strlen(domain);

	char *ace = NULL;

	l->r = r;
	l->cb = cb;
	l->ctx = ctx;
	l->in_call = true;
	/* An internationalized name is asked for by its A-labels. */
	for (size_t i = 0; i < n && ace == NULL; i++) {
		int rc;

		if ((unsigned char)domain[i] < 0x80)
			continue;
		rc = idn2_to_ascii_8z(domain, &ace, IDN2_NFC_INPUT |
				      IDN2_NONTRANSITIONAL);
		if (rc != IDN2_OK) {
			snprintf(l->error, sizeof(l->error), "%.300s: bad "
				 "international domain name: %s", domain,
				 idn2_strerror(rc));
			lookup_end(l, DNS_PERM, "5.1.2");
			l->in_call = false;
			return;
		}
		domain = ace;
		n = strlen(ace);
	}
	if (n > 0 && domain[n - 1] == '.')
		n--;
	if (n == 0 || n > DNS_NAME_MAX) {
		snprintf(l->error, sizeof(l->error), "bad domain name");
		idn2_free(ace);
		lookup_end(l, DNS_PERM, "5.1.2");
		l->in_call = false;
		return;
	}
	memcpy(l->domain, domain, n);
	l->domain[n] = '\0';
	idn2_free(ace);
	l->ttl = UINT32_MAX;
	if (!r->dying && cache_take(r, l)) {
		l->in_call = false;
		return;
	}
	if (r->dying) {
		snprintf(l->error, sizeof(l->error), "resolver stopping");
		lookup_end(l, DNS_TEMP, "4.4.3");
		l->in_call = false;
		return;
	}
	ares_query(r->ch, l->domain, ns_c_in, ns_t_mx, on_mx, l);
	/* Still here: an answer from inside waits for the loop. */
	l->in_call = false;
	dns_schedule(r);
}
