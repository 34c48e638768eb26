/*
 * fuzz_qstate.c: the delivery state file of tern-qmgr (qmgr/qstate).
 *
 * The first byte is the recipient count.  Whatever parses must encode and
 * parse back to the same text (a fixed point), and every index stays below
 * the count.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "qstate.h"
#include "str.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qstate st, st2;
	struct str *a, *b;
	const char *error;
	size_t n;

	if (size < 1)
		return 0;
	n = data[0];
	if (qstate_parse(&st, (const char *)data + 1, size - 1, n,
			 &error) < 0) {
		qstate_clear(&st);
		return 0;
	}
	a = str_new(0, QSTATE_FILE_MAX);
	b = str_new(0, QSTATE_FILE_MAX);
	if (qstate_encode(&st, a) < 0 ||
	    qstate_parse(&st2, str_c(a), str_len(a), n, &error) < 0 ||
	    qstate_encode(&st2, b) < 0 || strcmp(str_c(a), str_c(b)) != 0)
		abort();
	qstate_clear(&st);
	qstate_clear(&st2);
	str_free(&a);
	str_free(&b);
	return 0;
}
