/* fuzz_services.c: libFuzzer target for the services.conf parser. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>

#include "compat.h"
#include "services.h"
#include "str.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct str *error = str_new(0, 4096), *out = str_new(0, 1 << 20);
	struct services *table = NULL;

	if (services_load_buffer("/tern", "fuzz.conf", data, size, &table,
				 error) < 0) {
		if (table != NULL || str_len(error) == 0)
			abort();
		goto out;
	}
	for (size_t i = 0; i < services_count(table); i++) {
		const struct service *svc = services_get(table, i);

		if (services_find(table, svc->name) != svc ||
		    !services_equal(svc, svc) || svc->argc < 1 ||
		    svc->argv[svc->argc] != NULL)
			abort();
		for (size_t j = 0; j < svc->nlisten; j++) {
			if (!services_addr_equal(&svc->listen[j],
						 &svc->listen[j]) ||
			    services_addr_format(out, &svc->listen[j]) < 0)
				abort();
		}
		if (services_procs(svc) < 1)
			abort();
	}
out:
	services_free(&table);
	str_free(&error);
	str_free(&out);
	return 0;
}
