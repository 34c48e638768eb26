/* netlist.c: see netlist.h. */
#include "config.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "netlist.h"
#include "xalloc.h"

struct net {
	int family;		/* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned bits;		/* prefix length */
};

struct netlist {
	struct net *nets;
	size_t count;
};

/* "address" or "address/bits"; -1 for anything else. */
static int net_parse(const char *text, struct net *n)
{
	char buf[INET6_ADDRSTRLEN];
	const char *slash = strchr(text, '/');
	size_t len = slash != NULL ? (size_t)(slash - text) : strlen(text);
	unsigned max, bits = 0;

	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, text, len);
	buf[len] = '\0';
	memset(n, 0, sizeof(*n));
	if (inet_pton(AF_INET, buf, n->addr) == 1)
		n->family = AF_INET, max = 32;
	else if (inet_pton(AF_INET6, buf, n->addr) == 1)
		n->family = AF_INET6, max = 128;
	else
		return -1;
	if (slash == NULL) {
		n->bits = max;
		return 0;
	}
	if (slash[1] == '\0' || strlen(slash + 1) > 3)
		return -1;
	for (const char *p = slash + 1; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		bits = bits * 10 + (unsigned)(*p - '0');
	}
	if (bits > max)
		return -1;
	n->bits = bits;
	return 0;
}

struct netlist *netlist_new(const char *const *items, size_t count,
			    void (*warn)(const char *entry))
{
	struct netlist *nl = xcalloc(1, sizeof(*nl));

	if (count > NETLIST_MAX)
		count = NETLIST_MAX;
	nl->nets = xcalloc(count + 1, sizeof(*nl->nets));
	for (size_t i = 0; i < count; i++) {
		if (net_parse(items[i], &nl->nets[nl->count]) == 0)
			nl->count++;
		else if (warn != NULL)
			warn(items[i]);
	}
	return nl;
}

void netlist_free(struct netlist **nlp)
{
	struct netlist *nl = *nlp;

	*nlp = NULL;
	if (nl == NULL)
		return;
	free(nl->nets);
	free(nl);
}

/* Whether the first bits bits of a and b are equal. */
static bool same_prefix(const unsigned char *a, const unsigned char *b,
			unsigned bits)
{
	unsigned whole = bits / 8, rest = bits % 8;

	if (memcmp(a, b, whole) != 0)
		return false;
	return rest == 0 ||
	       ((a[whole] ^ b[whole]) & (unsigned char)(0xff << (8 - rest))) ==
		       0;
}

bool netlist_match(const struct netlist *nl, const char *addr)
{
	struct net peer;

	if (nl == NULL || addr == NULL || strchr(addr, '/') != NULL ||
	    net_parse(addr, &peer) < 0)
		return false;
	for (size_t i = 0; i < nl->count; i++) {
		if (nl->nets[i].family == peer.family &&
		    same_prefix(nl->nets[i].addr, peer.addr,
				nl->nets[i].bits))
			return true;
	}
	return false;
}
