/*
 * fuzz_ldapprobe.c: tern-master's reading of an LDAP server's answer to
 * its readiness search (common/ldapprobe).  Whatever the bytes: no read
 * outside them (ASan), and reading a longer input that starts with a
 * complete answer gives the same verdict.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "ldapprobe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *copy, *longer;
	int code = -1, code2 = -1;
	enum ldapprobe_state st, st2;

	if (size > LDAPPROBE_ANSWER_MAX)
		return 0;
	copy = malloc(size > 0 ? size : 1);
	memcpy(copy, data, size);
	st = ldapprobe_answer(copy, size, &code);
	if (st == LDAPPROBE_DONE) {
		longer = malloc(size + 16);
		memcpy(longer, data, size);
		memset(longer + size, 0x30, 16);
		st2 = ldapprobe_answer(longer, size + 16, &code2);
		if (st2 != LDAPPROBE_DONE || code2 != code)
			abort();
		free(longer);
	}
	free(copy);
	return 0;
}
