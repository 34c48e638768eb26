/*
 * fuzz_dnsanswer.c: the DNS messages tern-qmgr reads itself (common/dns's
 * dns_answer_min_ttl(), for the MX answer cache) and the address literals
 * of recipient domains (dns_parse_literal()).
 *
 * The first byte picks the record type asked for; the rest is the
 * message.  Whatever the bytes, no read outside them (ASan), and a TTL
 * found is never above 2^31 - 1.  The same bytes as text go to
 * dns_parse_literal(), whose address must print back and parse again.
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "dns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void literal(const uint8_t *data, size_t size)
{
	struct sockaddr_storage ss, again;
	char text[128], buf[INET6_ADDRSTRLEN];

	if (size >= sizeof(text) - 8 || memchr(data, '\0', size) != NULL)
		return;
	memcpy(text, data, size);
	text[size] = '\0';
	if (dns_parse_literal(text, &ss) < 0)
		return;
	if (ss.ss_family == AF_INET) {
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, buf,
			  sizeof(buf));
		snprintf(text, sizeof(text), "[%s]", buf);
	} else if (ss.ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr,
			  buf, sizeof(buf));
		snprintf(text, sizeof(text), "[IPv6:%s]", buf);
	} else {
		abort();
	}
	if (dns_parse_literal(text, &again) < 0 ||
	    memcmp(&ss, &again, sizeof(ss)) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t ttl = 0;
	uint8_t *msg;

	if (size == 0 || size > 65536)
		return 0;
	/* A copy of exactly the message's size, so that ASan sees any
	 * read past its end. */
	msg = malloc(size - 1 > 0 ? size - 1 : 1);
	memcpy(msg, data + 1, size - 1);
	if (dns_answer_min_ttl(msg, size - 1, data[0], &ttl) == 0 &&
	    ttl > 0x7fffffffu)
		abort();
	free(msg);
	literal(data, size);
	return 0;
}
