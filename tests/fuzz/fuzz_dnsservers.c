/*
 * fuzz_dnsservers.c: the name server list of tern-qmgr (dns_resolvers,
 * read by common/dns's dns_servers_csv()).
 *
 * The input is split at newlines into at most 16 entries.  A list that
 * is taken must come out as c-ares's "addr:port,[addr6]:port" form and
 * be taken again, unchanged, when its entries are fed back.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "dns.h"
#include "str.h"

#define ENTRIES_MAX 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Splits text at sep into at most ENTRIES_MAX NUL-terminated entries. */
static size_t split(char *text, char sep, const char **out)
{
	size_t n = 0;
	char *p = text;

	while (n < ENTRIES_MAX) {
		char *e = strchr(p, sep);

		out[n++] = p;
		if (e == NULL)
			break;
		*e = '\0';
		p = e + 1;
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *ent[ENTRIES_MAX], *ent2[ENTRIES_MAX];
	struct str *a, *b;
	const char *error;
	char *text, *copy;
	size_t n, n2;

	if (size > 4096 || memchr(data, '\0', size) != NULL)
		return 0;
	text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	n = split(text, '\n', ent);
	a = str_new(64, 65536);
	b = str_new(64, 65536);
	if (dns_servers_csv(ent, n, a, &error) == 0) {
		copy = strdup(str_c(a));
		n2 = str_len(a) > 0 ? split(copy, ',', ent2) : 0;
		if (n2 != n || dns_servers_csv(ent2, n2, b, &error) < 0 ||
		    strcmp(str_c(a), str_c(b)) != 0)
			abort();
		free(copy);
	}
	str_free(&a);
	str_free(&b);
	free(text);
	return 0;
}
