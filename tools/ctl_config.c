/*
 * ctl_config.c: `ternctl config show [KEY] [--json]` prints the effective
 * value of every option (or one) with where it came from ("default" or
 * FILE:LINE); `ternctl config doc` prints the Markdown option reference
 * (docs/config.md is this output).
 */
#include "config.h"

#include <getopt.h>
#include <stdlib.h>

#include "compat.h"
#include "cfg.h"
#include "json.h"
#include "str.h"
#include "ternctl.h"

static int config_show_json(const struct cfg *cfg, const char *key)
{
	struct str *out;
	struct json *j = ctl_json_start(&out);
	struct cfg_item item;
	size_t pos = 0;

	json_array_begin(j);
	while (cfg_iter(cfg, &pos, &item)) {
		if (key != NULL && strcmp(key, item.name) != 0)
			continue;
		json_object_begin(j);
		json_kv_cstring(j, "name", item.name);
		json_kv_cstring(j, "value", item.value);
		json_kv_cstring(j, "source", item.source);
		json_kv_cstring(j, "type", item.type);
		json_kv_cstring(j, "default", item.default_value);
		json_kv_cstring(j, "doc", item.doc);
		json_object_end(j);
	}
	json_array_end(j);
	return ctl_json_done(&j, &out);
}

static int config_show(struct ctl *ctl, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	struct str *err = str_new(256, 8192), *out = str_new(8192, 16 << 20);
	char *conf = ctl_path(ctl, "conf/tern.conf");
	const char *key = NULL;
	struct cfg *cfg = NULL;
	enum cfg_opt id;
	int c, status = 1;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c != 'j') {
			fprintf(stderr, "usage: ternctl config show [KEY] "
				"[--json]\n");
			status = 2;
			goto out;
		}
		ctl->json = 1;
	}
	if (optind < argc)
		key = argv[optind++];
	if (optind < argc) {
		fprintf(stderr, "ternctl: unexpected argument '%s'\n",
			argv[optind]);
		status = 2;
		goto out;
	}
	if (key != NULL && cfg_lookup(key, &id) < 0) {
		fprintf(stderr, "ternctl: unknown option '%s'\n", key);
		goto out;
	}
	if (cfg_load(ctl->root, conf, ctl_warn, NULL, &cfg, err) < 0) {
		fprintf(stderr, "ternctl: %s\n", str_c(err));
		goto out;
	}
	if (ctl->json) {
		status = config_show_json(cfg, key);
		goto out;
	}
	if (cfg_show(cfg, key, out, err) < 0) {
		fprintf(stderr, "ternctl: %s\n", str_c(err));
		goto out;
	}
	fputs(str_c(out), stdout);
	status = 0;
out:
	cfg_free(&cfg);
	free(conf);
	str_free(&err);
	str_free(&out);
	return status;
}

int ctl_config(struct ctl *ctl, int argc, char **argv)
{
	struct str *out;
	int r;

	if (argc >= 2 && strcmp(argv[1], "show") == 0)
		return config_show(ctl, argc - 1, argv + 1);
	if (argc == 2 && strcmp(argv[1], "doc") == 0) {
		out = str_new(16384, 1 << 20);
		r = cfg_write_markdown(out);
		if (r == 0)
			fputs(str_c(out), stdout);
		str_free(&out);
		return r < 0 ? 1 : 0;
	}
	fprintf(stderr, "usage: ternctl config show [KEY] [--json] | "
		"ternctl config doc\n");
	return 2;
}
