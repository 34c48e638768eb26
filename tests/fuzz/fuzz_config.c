/* fuzz_config.c: libFuzzer target for the tern.conf parser (cfg.h). */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "cfg.h"
#include "str.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void count_warning(void *ctx, const char *msg)
{
	size_t *n = ctx;

	if (msg[0] == '\0')
		abort();
	(*n)++;
}

/* Every value check and list split on the input as one value. */
static void check_values(const uint8_t *data, size_t size)
{
	struct str *expected = str_new(0, 1024);
	char *text = malloc(size + 1);
	char **items;
	size_t n;

	if (text == NULL)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	for (size_t i = 0; i < OPT_COUNT; i++) {
		if (cfg_value_check(cfg_def((enum cfg_opt)i), text,
				    expected) < 0 && str_len(expected) == 0)
			abort();
	}
	items = cfg_list_split(text, &n);
	if (items[n] != NULL)
		abort();
	cfg_list_free(&items);
	free(text);
	str_free(&expected);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct str *error = str_new(0, 4096), *out = str_new(0, 1 << 20);
	struct cfg *cfg = NULL;
	struct cfg_item item;
	size_t warnings = 0, pos = 0;

	if (cfg_load_buffer("/tern", "fuzz.conf", NULL, data, size,
			    count_warning, &warnings, &cfg, error) < 0) {
		if (cfg != NULL || str_len(error) == 0)
			abort();
	} else {
		if (cfg_show(cfg, NULL, out, error) < 0)
			abort();
		while (cfg_iter(cfg, &pos, &item)) {
			if (item.value == NULL || item.source == NULL)
				abort();
		}
		(void)cfg_size(cfg, OPT_IPC_FRAME_MAX);
		(void)cfg_duration(cfg, OPT_DRAIN_TIMEOUT);
		(void)cfg_int(cfg, OPT_CRASH_LOOP_LIMIT);
		(void)cfg_enum(cfg, OPT_LOG_LEVEL);
		cfg_free(&cfg);
	}
	if (size <= 4096)
		check_values(data, size);
	str_free(&error);
	str_free(&out);
	return 0;
}
