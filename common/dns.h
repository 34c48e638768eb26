/*
 * dns.h: asynchronous MX and address lookups for Tern's MTA, with c-ares
 * driven by the libuv loop (a uv_poll per resolver socket, one timer for
 * c-ares's timeouts).
 *
 * dns_lookup_mx() answers where mail for a domain goes (an
 * internationalized name is asked for by its A-labels, IDNA2008 with the
 * non-transitional mapping of UTS #46): its MX hosts in
 * preference order (random order among equal preferences), each with its
 * IPv4 then IPv6 addresses.  A domain without MX records is its own
 * single host (the implicit MX of RFC 5321 5.1).  Failures come as a
 * status and an enhanced status code: a null MX (RFC 7505) is permanent
 * 5.1.10, a domain that does not exist permanent 5.1.2, a domain without
 * any address permanent 5.4.4; an unreachable or failing name server or a
 * timeout is temporary 4.4.3.
 *
 * Limits: DNS_MX_MAX hosts per answer (the most preferred), DNS_ADDR_MAX
 * addresses per host, DNS_NAME_MAX bytes per name.  The servers are the
 * ones given (IP or IP:port, [IPv6]:port) or, when none, those of
 * /etc/resolv.conf.  Answers are kept for their TTL (at most
 * cache_ttl_max_ms; see dns.c).  Callers: tern-qmgr.  Loop thread only.
 */
#ifndef TERN_DNS_H
#define TERN_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "compat.h"

#define DNS_MX_MAX 16
#define DNS_ADDR_MAX 8
#define DNS_NAME_MAX 255
#define DNS_CACHE_BUCKETS 1024
#define DNS_CACHE_BYTES (8u << 20)	/* answers kept, at most */
#define DNS_CACHE_NEGATIVE_MS (60 * 1000)	/* permanent failures */

enum dns_status {
	DNS_OK,
	DNS_TEMP,		/* try again later */
	DNS_PERM,		/* will never work */
};

struct dns_host {
	char name[DNS_NAME_MAX + 1];
	unsigned pref;
	uint32_t key;		/* random tie-breaker among equal prefs */
	struct sockaddr_storage addr[DNS_ADDR_MAX];
	size_t naddr;
};

struct dns_mx_result {
	enum dns_status status;
	char enhanced[8];	/* "4.4.3"...; "" when DNS_OK */
	const char *error;	/* why, for logs and DSNs; NULL when OK */
	bool implicit;		/* no MX: the domain itself */
	const struct dns_host *hosts;	/* the ones with addresses */
	size_t nhosts;
};

struct dns_settings {
	const char *const *servers;	/* NULL or empty: resolv.conf */
	size_t nservers;
	uint64_t timeout_ms;	/* per try */
	unsigned tries;
	uint64_t cache_ttl_max_ms;	/* 0: no answer cache */
};

struct dns_cache_stats {
	uint64_t hits, misses;
	size_t entries, bytes;
};

struct dns_resolver;

/* NULL with *error_r on a bad setting or when c-ares cannot start. */
struct dns_resolver *dns_resolver_new(uv_loop_t *loop,
				      const struct dns_settings *set,
				      const char **error_r);
/* Pending lookups end now with DNS_TEMP (their callbacks run inside). */
void dns_resolver_free(struct dns_resolver **r);

/* The answer cache: hits and misses since the start, and its size. */
void dns_cache_stats(const struct dns_resolver *r,
		     struct dns_cache_stats *stats);

/* res is valid during the call only.  Never called from inside
 * dns_lookup_mx(). */
typedef void dns_mx_cb(const struct dns_mx_result *res, void *ctx);
void dns_lookup_mx(struct dns_resolver *r, const char *domain,
		   dns_mx_cb *cb, void *ctx);

/* ---- the pure parts (exposed for tests) ---- */

/* An address literal of RFC 5321 4.1.3, "[192.0.2.1]" or "[IPv6:2001:db8::1]"
 * (the tag in any case), into *ss (port 0): 0, or -1 for anything else
 * (general address literals included). */
int dns_parse_literal(const char *s, struct sockaddr_storage *ss) TERN_WUR;

/* Sorts hosts by preference; equal preferences in an order given by
 * random keys drawn from rnd(ctx).  Duplicate names keep their first
 * (most preferred) entry.  Returns the new count. */
size_t dns_mx_order(struct dns_host *h, size_t n,
		    uint32_t (*rnd)(void *ctx), void *ctx);
/* True when the MX answer is a null MX: one record whose exchange is the
 * root ("" or "."). */
bool dns_mx_is_null(const char *const *names, size_t n);
/* Maps the c-ares status of a query to ours and an enhanced status code:
 * no such domain 5.1.2, no records of the type 5.4.4, a name server
 * failure, refusal or timeout 4.4.3. */
enum dns_status dns_classify(int ares_status, const char **enhanced_r);
/* The least TTL (seconds; above 2^31 - 1 counts as 0) of the answer
 * records of the given type in a DNS message: 0, or -1 when there is none
 * or the message is malformed. */
int dns_answer_min_ttl(const unsigned char *msg, size_t len, unsigned type,
		       uint32_t *ttl_r) TERN_WUR;
/* Server list (IP, IP:port, [IPv6]:port) to c-ares's CSV form; -1 with
 * *error_r on a bad entry. */
struct str;
int dns_servers_csv(const char *const *servers, size_t n, struct str *out,
		    const char **error_r) TERN_WUR;

#endif
