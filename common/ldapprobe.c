/*
 * ldapprobe.c: the root DSE search of tern-master's LDAP readiness probe
 * (see ldapprobe.h).  BER as RFC 4511 uses it: definite lengths only,
 * short form or long form of up to four bytes.
 */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "ldapprobe.h"

#define TAG_SEQUENCE 0x30
#define TAG_INTEGER 0x02
#define TAG_ENUMERATED 0x0a
#define TAG_SEARCH_ENTRY 0x64	/* [APPLICATION 4] */
#define TAG_SEARCH_DONE 0x65	/* [APPLICATION 5] */
#define TAG_SEARCH_REF 0x73	/* [APPLICATION 19] */
#define TAG_EXTENDED_RESPONSE 0x78	/* [APPLICATION 24] */

void ldapprobe_request(unsigned char buf[LDAPPROBE_REQUEST_SIZE])
{
	static const unsigned char req[LDAPPROBE_REQUEST_SIZE] = {
		0x30, 42,		/* LDAPMessage */
		0x02, 1, 1,		/* messageID 1 */
		0x63, 37,		/* SearchRequest */
		0x04, 0,		/* baseObject "" */
		0x0a, 1, 0,		/* scope baseObject */
		0x0a, 1, 0,		/* derefAliases never */
		0x02, 1, 0,		/* sizeLimit 0 */
		0x02, 1, 0,		/* timeLimit 0 */
		0x01, 1, 0,		/* typesOnly FALSE */
		0x87, 11, 'o', 'b', 'j', 'e', 'c', 't', 'C', 'l', 'a', 's',
		's',			/* present: objectClass */
		0x30, 5, 0x04, 3, '1', '.', '1',	/* attributes: "1.1" */
	};

	memcpy(buf, req, sizeof(req));
}

/* One tag and length at b[*pos]: 1 done (*len_r, *pos after the length),
 * 0 more bytes needed, -1 bad. */
static int tag_len(const unsigned char *b, size_t n, size_t *pos,
		   unsigned char *tag_r, size_t *len_r)
{
	size_t p = *pos, len;

	if (p + 2 > n)
		return 0;
	*tag_r = b[p++];
	if ((*tag_r & 0x1f) == 0x1f)
		return -1;	/* high tag numbers: not in LDAP */
	len = b[p++];
	if (len & 0x80) {
		size_t k = len & 0x7f;

		if (k == 0 || k > 4)
			return -1;	/* indefinite, or absurd */
		if (p + k > n)
			return 0;
		len = 0;
		for (size_t i = 0; i < k; i++)
			len = len << 8 | b[p++];
	}
	*pos = p;
	*len_r = len;
	return 1;
}

enum ldapprobe_state ldapprobe_answer(const unsigned char *b, size_t n,
				      int *code_r)
{
	size_t pos = 0;

	while (pos < n) {
		size_t len, end, ilen;
		unsigned char tag;
		int r = tag_len(b, n, &pos, &tag, &len);

		if (r <= 0)
			return r == 0 ? LDAPPROBE_MORE : LDAPPROBE_BAD;
		if (tag != TAG_SEQUENCE || len > LDAPPROBE_ANSWER_MAX)
			return LDAPPROBE_BAD;
		if (pos + len > n)
			return LDAPPROBE_MORE;
		end = pos + len;
		/* messageID: 1, or 0 for a notice of disconnection */
		if (tag_len(b, end, &pos, &tag, &ilen) != 1 ||
		    tag != TAG_INTEGER || ilen != 1 || pos + 1 > end ||
		    b[pos] > 1)
			return LDAPPROBE_BAD;
		pos++;
		if (tag_len(b, end, &pos, &tag, &ilen) != 1 ||
		    pos + ilen > end)
			return LDAPPROBE_BAD;
		if (tag == TAG_SEARCH_DONE || tag == TAG_EXTENDED_RESPONSE) {
			/* LDAPResult: resultCode ENUMERATED first (a notice
			 * of disconnection is an extended response) */
			size_t q = pos;

			uint32_t code = 0;

			if (tag_len(b, end, &q, &tag, &ilen) != 1 ||
			    tag != TAG_ENUMERATED || ilen < 1 || ilen > 3 ||
			    q + ilen > end || (b[q] & 0x80) != 0)
				return LDAPPROBE_BAD;	/* codes are small */
			for (size_t i = 0; i < ilen; i++)
				code = code << 8 | b[q + i];
			*code_r = (int)code;
			return LDAPPROBE_DONE;
		}
		if (tag != TAG_SEARCH_ENTRY && tag != TAG_SEARCH_REF)
			return LDAPPROBE_BAD;
		pos = end;
	}
	return LDAPPROBE_MORE;
}
