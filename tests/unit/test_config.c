/* test_config.c: tern.conf loading, value types, includes and output. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "compat.h"
#include "cfg.h"
#include "str.h"
#include "tmpdir.h"

#define ROOT "/srv/tern"

/* A temporary directory with the files of one test. */
struct fixture {
	char dir[64];
	struct str *warnings;	/* one line per warning */
	struct str *error;
	struct cfg *cfg;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	assert_non_null(tmpdir_make(f->dir, sizeof(f->dir), "cfg"));
	f->warnings = str_new(0, 65536);
	f->error = str_new(0, 4096);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	cfg_free(&f->cfg);
	str_free(&f->warnings);
	str_free(&f->error);
	assert_int_equal(tmpdir_remove(f->dir), 0);
	free(f);
	return 0;
}

static void collect_warning(void *ctx, const char *msg)
{
	struct fixture *f = ctx;

	assert_int_equal(str_append_c(f->warnings, msg), 0);
	assert_int_equal(str_append_c(f->warnings, "\n"), 0);
}

static void write_file(struct fixture *f, const char *name, const char *text)
{
	char path[256];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", f->dir, name);
	fp = fopen(path, "w");
	assert_non_null(fp);
	assert_int_equal(fwrite(text, 1, strlen(text), fp), strlen(text));
	assert_int_equal(fclose(fp), 0);
}

/* Loads text as tern.conf in the fixture directory. */
static int load_text(struct fixture *f, const char *text)
{
	char path[256];

	write_file(f, "tern.conf", text);
	snprintf(path, sizeof(path), "%s/tern.conf", f->dir);
	cfg_free(&f->cfg);
	str_clear(f->warnings);
	return cfg_load(ROOT, path, collect_warning, f, &f->cfg, f->error);
}

/* Loads "key = value" and expects it to fail with exactly the message. */
static void expect_bad(struct fixture *f, const char *key, const char *value,
		       const char *expected)
{
	char text[512], msg[1024];

	snprintf(text, sizeof(text), "# comment\n%s = %s\n", key, value);
	assert_int_equal(load_text(f, text), -1);
	assert_null(f->cfg);
	snprintf(msg, sizeof(msg), "%s/tern.conf:2: bad value for %s: '%s' "
		 "(expected %s)", f->dir, key, value, expected);
	assert_string_equal(str_c(f->error), msg);
}

static void test_defaults(void **state)
{
	struct fixture *f = *state;
	char host[256];

	assert_int_equal(cfg_load(ROOT, NULL, NULL, NULL, &f->cfg, f->error),
			 0);
	assert_string_equal(cfg_str(f->cfg, OPT_LOG_TARGET),
			    ROOT "/log/tern.log");
	assert_string_equal(cfg_str(f->cfg, OPT_LOG_LEVEL), "info");
	assert_int_equal(cfg_enum(f->cfg, OPT_LOG_LEVEL), 1);
	assert_string_equal(cfg_str(f->cfg, OPT_USER), "tern");
	assert_string_equal(cfg_str(f->cfg, OPT_TLS_CERT_FILE),
			    ROOT "/conf/ssl/tern.crt");
	assert_string_equal(cfg_str(f->cfg, OPT_TLS_KEY_FILE),
			    ROOT "/conf/ssl/tern.key");
	assert_string_equal(cfg_str(f->cfg, OPT_TLS_CA_FILE), "");
	assert_non_null(strstr(cfg_str(f->cfg, OPT_TLS_CIPHERS),
			       "ECDHE-ECDSA-AES128-GCM-SHA256:"));
	assert_int_equal(cfg_enum(f->cfg, OPT_TLS_MIN_VERSION), 0);
	assert_int_equal(cfg_duration(f->cfg, OPT_DRAIN_TIMEOUT), 30000);
	assert_int_equal(cfg_duration(f->cfg, OPT_RESTART_DELAY), 100);
	assert_int_equal(cfg_duration(f->cfg, OPT_RESTART_BACKOFF_MAX), 60000);
	assert_int_equal(cfg_int(f->cfg, OPT_CRASH_LOOP_LIMIT), 5);
	assert_int_equal(cfg_duration(f->cfg, OPT_CRASH_LOOP_WINDOW), 10000);
	assert_int_equal(cfg_duration(f->cfg, OPT_SERVICE_READY_TIMEOUT),
			 15000);
	assert_int_equal(cfg_size(f->cfg, OPT_IPC_FRAME_MAX), 1024 * 1024);
	assert_int_equal(gethostname(host, sizeof(host)), 0);
	assert_string_equal(cfg_str(f->cfg, OPT_MYHOSTNAME), host);
	for (size_t i = 0; i < OPT_COUNT; i++)
		assert_string_equal(cfg_source(f->cfg, (enum cfg_opt)i),
				    "default");
	assert_string_equal(cfg_root(f->cfg), ROOT);
}

/* Every default passes its own check; numeric ranges are sane. */
static void test_table_consistent(void **state)
{
	struct str *expected = str_new(0, 1024);

	for (size_t i = 0; i < OPT_COUNT; i++) {
		const struct cfg_def *def = cfg_def((enum cfg_opt)i);
		enum cfg_opt id;

		assert_int_equal(cfg_value_check(def, def->default_value,
						 expected), 0);
		assert_int_equal(cfg_lookup(def->name, &id), 0);
		assert_int_equal(id, i);
		assert_true(strlen(def->doc) > 10);
		if (def->type == CFG_INT || def->type == CFG_SIZE ||
		    def->type == CFG_DURATION)
			assert_true(def->min < def->max);
		assert_true((def->type == CFG_ENUM) == (def->words != NULL));
	}
	str_free(&expected);
}

static void test_int(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(load_text(f, "crash_loop_limit = 1000\n"), 0);
	assert_int_equal(cfg_int(f->cfg, OPT_CRASH_LOOP_LIMIT), 1000);
	assert_int_equal(load_text(f, "crash_loop_limit=+7"), 0);
	assert_int_equal(cfg_int(f->cfg, OPT_CRASH_LOOP_LIMIT), 7);
	expect_bad(f, "crash_loop_limit", "0",
		   "an integer from 1 to 1000, e.g. 5");
	expect_bad(f, "crash_loop_limit", "1001",
		   "an integer from 1 to 1000, e.g. 5");
	expect_bad(f, "crash_loop_limit", "5x",
		   "an integer from 1 to 1000, e.g. 5");
	expect_bad(f, "crash_loop_limit", "99999999999999999999999",
		   "an integer from 1 to 1000, e.g. 5");
}

static void test_size(void **state)
{
	static const char form[] =
		"a size from 4k to 16M: bytes with an optional k, m or g "
		"suffix (KiB, MiB, GiB), e.g. 1M";
	struct fixture *f = *state;

	assert_int_equal(load_text(f, "ipc_frame_max = 64k\n"), 0);
	assert_int_equal(cfg_size(f->cfg, OPT_IPC_FRAME_MAX), 65536);
	assert_int_equal(load_text(f, "ipc_frame_max = 2m\n"), 0);
	assert_int_equal(cfg_size(f->cfg, OPT_IPC_FRAME_MAX), 2 << 20);
	assert_int_equal(load_text(f, "ipc_frame_max = 4096\n"), 0);
	assert_int_equal(cfg_size(f->cfg, OPT_IPC_FRAME_MAX), 4096);
	assert_int_equal(load_text(f, "ipc_frame_max = 16M\n"), 0);
	expect_bad(f, "ipc_frame_max", "4095", form);
	expect_bad(f, "ipc_frame_max", "17M", form);
	expect_bad(f, "ipc_frame_max", "1G", form);
	expect_bad(f, "ipc_frame_max", "1MB", form);
	expect_bad(f, "ipc_frame_max", "1.5M", form);
	expect_bad(f, "ipc_frame_max", "-1k", form);
	expect_bad(f, "ipc_frame_max", "k", form);
}

static void test_duration(void **state)
{
	static const char form[] =
		"a duration from 0 to 1h: a number with an ms, s, m, h or d "
		"suffix (bare = seconds), e.g. 30s";
	struct fixture *f = *state;

	assert_int_equal(load_text(f, "drain_timeout = 90\n"), 0);
	assert_int_equal(cfg_duration(f->cfg, OPT_DRAIN_TIMEOUT), 90000);
	assert_int_equal(load_text(f, "drain_timeout = 250ms\n"), 0);
	assert_int_equal(cfg_duration(f->cfg, OPT_DRAIN_TIMEOUT), 250);
	assert_int_equal(load_text(f, "drain_timeout = 2m\n"), 0);
	assert_int_equal(cfg_duration(f->cfg, OPT_DRAIN_TIMEOUT), 120000);
	assert_int_equal(load_text(f, "drain_timeout = 1h\n"), 0);
	assert_int_equal(load_text(f, "drain_timeout = 0\n"), 0);
	assert_int_equal(cfg_duration(f->cfg, OPT_DRAIN_TIMEOUT), 0);
	expect_bad(f, "drain_timeout", "2h", form);
	expect_bad(f, "drain_timeout", "1d", form);
	expect_bad(f, "drain_timeout", "3601", form);
	expect_bad(f, "drain_timeout", "10 s", form);
	expect_bad(f, "drain_timeout", "10sec", form);
	expect_bad(f, "drain_timeout", "-1s", form);
	expect_bad(f, "drain_timeout", "s", form);
	expect_bad(f, "restart_delay", "5ms",
		   "a duration from 10ms to 10m: a number with an ms, s, m, h "
		   "or d suffix (bare = seconds), e.g. 100ms");
}

static void test_enum(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(load_text(f, "log_level = warning\n"), 0);
	assert_int_equal(cfg_enum(f->cfg, OPT_LOG_LEVEL), 2);
	assert_int_equal(load_text(f, "log_level = DEBUG\n"), 0);
	assert_string_equal(cfg_str(f->cfg, OPT_LOG_LEVEL), "debug");
	assert_int_equal(cfg_enum(f->cfg, OPT_LOG_LEVEL), 0);
	assert_int_equal(load_text(f, "tls_min_version = 1.3\n"), 0);
	assert_int_equal(cfg_enum(f->cfg, OPT_TLS_MIN_VERSION), 1);
	expect_bad(f, "log_level", "verbose",
		   "one of debug, info, warning, error, e.g. info");
	expect_bad(f, "log_level", "info,debug",
		   "one of debug, info, warning, error, e.g. info");
	expect_bad(f, "tls_min_version", "1.1", "one of 1.2, 1.3, e.g. 1.2");
	expect_bad(f, "tls_min_version", "1", "one of 1.2, 1.3, e.g. 1.2");
}

static void test_paths_and_strings(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(load_text(f, "tls_ca_file = /etc/ssl/ca.pem\n"
				      "tls_cert_file = my/cert.pem\n"
				      "user =\n"
				      "tls_ciphers = HIGH:!aNULL # not a "
				      "comment\n"), 0);
	assert_string_equal(cfg_str(f->cfg, OPT_TLS_CA_FILE),
			    "/etc/ssl/ca.pem");
	assert_string_equal(cfg_str(f->cfg, OPT_TLS_CERT_FILE),
			    ROOT "/my/cert.pem");
	assert_string_equal(cfg_str(f->cfg, OPT_USER), "");
	assert_string_equal(cfg_str(f->cfg, OPT_TLS_CIPHERS),
			    "HIGH:!aNULL # not a comment");
}

static void test_target(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(load_text(f, "log_target = syslog\n"), 0);
	assert_string_equal(cfg_str(f->cfg, OPT_LOG_TARGET), "syslog");
	assert_int_equal(load_text(f, "log_target = stderr\n"), 0);
	assert_string_equal(cfg_str(f->cfg, OPT_LOG_TARGET), "stderr");
	assert_int_equal(load_text(f, "log_target = /var/log/tern.log\n"), 0);
	assert_string_equal(cfg_str(f->cfg, OPT_LOG_TARGET),
			    "/var/log/tern.log");
	assert_int_equal(load_text(f, "log_target = log/mail.log\n"), 0);
	assert_string_equal(cfg_str(f->cfg, OPT_LOG_TARGET),
			    ROOT "/log/mail.log");
	expect_bad(f, "log_target", "",
		   "syslog, stderr or a file path (relative = under the "
		   "instance root), e.g. log/tern.log");
}

static void test_hostname(void **state)
{
	static const char form[] =
		"a host name (empty = the system's host name), e.g. "
		"mail.example.com";
	struct fixture *f = *state;

	assert_int_equal(load_text(f, "myhostname = mx1.example.com\n"), 0);
	assert_string_equal(cfg_str(f->cfg, OPT_MYHOSTNAME), "mx1.example.com");
	assert_int_equal(load_text(f, "myhostname = a-b.c9\n"), 0);
	expect_bad(f, "myhostname", "-mx.example.com", form);
	expect_bad(f, "myhostname", "mx-.example.com", form);
	expect_bad(f, "myhostname", "mx..example.com", form);
	expect_bad(f, "myhostname", "mx.example.com.", form);
	expect_bad(f, "myhostname", "mx_1.example.com", form);
	expect_bad(f, "myhostname", "mx example", form);
}

/* bool and list have no option yet: the same checks, through a def. */
static void test_bool_and_list_types(void **state)
{
	static const char *const yes[] = { "yes", "Yes", "true", "on", "1" };
	static const char *const no[] = { "no", "NO", "false", "off", "0" };
	const struct cfg_def bdef = {
		"flag", CFG_BOOL, "yes", 0, 0, NULL, "A flag."
	};
	const struct cfg_def ldef = {
		"items", CFG_LIST, "", 0, 0, NULL, "Some items."
	};
	struct str *expected = str_new(0, 1024);
	char **items;
	size_t n;
	bool b;

	for (size_t i = 0; i < TERN_NELEM(yes); i++) {
		assert_int_equal(cfg_parse_bool(yes[i], &b), 0);
		assert_true(b);
		assert_int_equal(cfg_parse_bool(no[i], &b), 0);
		assert_false(b);
	}
	assert_int_equal(cfg_parse_bool("y", &b), -1);
	assert_int_equal(cfg_parse_bool("", &b), -1);
	assert_int_equal(cfg_value_check(&bdef, "maybe", expected), -1);
	assert_string_equal(str_c(expected), "yes or no (also true/false, "
			    "on/off, 1/0), e.g. yes");
	assert_int_equal(cfg_value_check(&ldef, "a, b c", expected), 0);

	items = cfg_list_split(" a, b,,c\td ,", &n);
	assert_int_equal(n, 4);
	assert_string_equal(items[0], "a");
	assert_string_equal(items[1], "b");
	assert_string_equal(items[2], "c");
	assert_string_equal(items[3], "d");
	assert_null(items[4]);
	cfg_list_free(&items);
	assert_null(items);
	items = cfg_list_split(" , ", &n);
	assert_int_equal(n, 0);
	assert_null(items[0]);
	cfg_list_free(&items);
	str_free(&expected);
}

static void test_number_forms(void **state)
{
	uint64_t u;
	long long v;
	struct str *s = str_new(0, 64);

	assert_int_equal(cfg_parse_size("3G", &u), 0);
	assert_true(u == 3ULL << 30);
	assert_int_equal(cfg_parse_size("99999999999G", &u), -1);
	assert_int_equal(cfg_parse_size("", &u), -1);
	assert_int_equal(cfg_parse_duration("2d", &u), 0);
	assert_true(u == 2ULL * 86400 * 1000);
	assert_int_equal(cfg_parse_duration("999999999999999999d", &u), -1);
	assert_int_equal(cfg_parse_duration("1h30m", &u), -1);
	assert_int_equal(cfg_parse_int("-9223372036854775808", &v), 0);
	assert_true(v == INT64_MIN);
	assert_int_equal(cfg_parse_int("9223372036854775808", &v), -1);
	assert_int_equal(cfg_parse_int("-", &v), -1);
	assert_int_equal(cfg_format_duration(s, 3600000), 0);
	assert_int_equal(cfg_format_duration(s, 1500), 0);
	assert_int_equal(cfg_format_duration(s, 0), 0);
	assert_int_equal(cfg_format_size(s, 16 << 20), 0);
	assert_int_equal(cfg_format_size(s, 1000), 0);
	assert_string_equal(str_c(s), "1h1500ms016M1000");
	str_free(&s);
}

static void test_error_names_file_and_line(void **state)
{
	struct fixture *f = *state;
	char msg[512];

	assert_int_equal(load_text(f, "\n# x\nlog_level = info\n\n"
				      "drain_timeout = forever\n"), -1);
	snprintf(msg, sizeof(msg), "%s/tern.conf:5: bad value for "
		 "drain_timeout: 'forever' (expected a duration from 0 to 1h: "
		 "a number with an ms, s, m, h or d suffix (bare = seconds), "
		 "e.g. 30s)", f->dir);
	assert_string_equal(str_c(f->error), msg);

	assert_int_equal(load_text(f, "log_level = info\njust words\n"), -1);
	snprintf(msg, sizeof(msg), "%s/tern.conf:2: expected 'key = value', "
		 "got 'just words'", f->dir);
	assert_string_equal(str_c(f->error), msg);

	assert_int_equal(load_text(f, "Log-Level = info\n"), -1);
	assert_non_null(strstr(str_c(f->error), "tern.conf:1: bad option "
			       "name 'Log-Level'"));

	/* Unprintable bytes are escaped in messages. */
	assert_int_equal(load_text(f, "log_level = a\x01\n"), -1);
	assert_non_null(strstr(str_c(f->error), "'a\\x01'"));
}

static void test_unknown_key_warns(void **state)
{
	struct fixture *f = *state;
	char msg[512];

	assert_int_equal(load_text(f, "log_level = debug\nfoo_bar = 1\n"), 0);
	snprintf(msg, sizeof(msg), "%s/tern.conf:2: unknown option "
		 "'foo_bar' (ignored)\n", f->dir);
	assert_string_equal(str_c(f->warnings), msg);
	assert_int_equal(cfg_enum(f->cfg, OPT_LOG_LEVEL), 0);
	/* Without a callback the warnings are dropped. */
	cfg_free(&f->cfg);
	assert_int_equal(cfg_load_buffer(ROOT, "x", NULL, "foo = 1\n", 8,
					 NULL, NULL, &f->cfg, f->error), 0);
}

static void test_duplicate_key_last_wins(void **state)
{
	struct fixture *f = *state;
	char msg[512];

	assert_int_equal(load_text(f, "log_level = debug\n"
				      "log_level = error\n"), 0);
	assert_int_equal(cfg_enum(f->cfg, OPT_LOG_LEVEL), 3);
	snprintf(msg, sizeof(msg), "%s/tern.conf:2: log_level is set again, "
		 "overriding %s/tern.conf:1\n", f->dir, f->dir);
	assert_string_equal(str_c(f->warnings), msg);
	snprintf(msg, sizeof(msg), "%s/tern.conf:2", f->dir);
	assert_string_equal(cfg_source(f->cfg, OPT_LOG_LEVEL), msg);
}

static void test_continuation_and_crlf(void **state)
{
	struct fixture *f = *state;
	char msg[512];

	assert_int_equal(load_text(f, "tls_ciphers = HIGH\r\n"
				      "   :!aNULL\r\n"
				      "# a comment between\r\n"
				      "\t:!MD5  \r\n"
				      "log_level =\r\n"
				      "  error\r\n"), 0);
	assert_string_equal(cfg_str(f->cfg, OPT_TLS_CIPHERS),
			    "HIGH :!aNULL :!MD5");
	assert_int_equal(cfg_enum(f->cfg, OPT_LOG_LEVEL), 3);
	snprintf(msg, sizeof(msg), "%s/tern.conf:5", f->dir);
	assert_string_equal(cfg_source(f->cfg, OPT_LOG_LEVEL), msg);

	assert_int_equal(load_text(f, "# top\n  log_level = info\n"), -1);
	snprintf(msg, sizeof(msg), "%s/tern.conf:2: continuation line with "
		 "nothing to continue", f->dir);
	assert_string_equal(str_c(f->error), msg);
}

static void make_dir(struct fixture *f, const char *name)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", f->dir, name);
	assert_int_equal(mkdir(path, 0700), 0);
}

static void test_include(void **state)
{
	struct fixture *f = *state;
	char msg[512];

	make_dir(f, "sub");
	write_file(f, "sub/a.conf", "drain_timeout = 5s\ninclude = b.conf\n"
		   "log_level = error\n");
	write_file(f, "sub/b.conf", "\ncrash_loop_limit = 9\n");
	assert_int_equal(load_text(f, "log_level = debug\n"
				      "include = sub/a.conf\n"
				      "ipc_frame_max = 8k\n"), 0);
	assert_int_equal(cfg_duration(f->cfg, OPT_DRAIN_TIMEOUT), 5000);
	assert_int_equal(cfg_int(f->cfg, OPT_CRASH_LOOP_LIMIT), 9);
	assert_int_equal(cfg_size(f->cfg, OPT_IPC_FRAME_MAX), 8192);
	assert_int_equal(cfg_enum(f->cfg, OPT_LOG_LEVEL), 3);
	snprintf(msg, sizeof(msg), "%s/sub/b.conf:2", f->dir);
	assert_string_equal(cfg_source(f->cfg, OPT_CRASH_LOOP_LIMIT), msg);
	snprintf(msg, sizeof(msg), "%s/sub/a.conf:3", f->dir);
	assert_string_equal(cfg_source(f->cfg, OPT_LOG_LEVEL), msg);
	snprintf(msg, sizeof(msg), "%s/sub/a.conf:3: log_level is set again, "
		 "overriding %s/tern.conf:1\n", f->dir, f->dir);
	assert_string_equal(str_c(f->warnings), msg);

	/* The same file twice in a row is no loop. */
	assert_int_equal(load_text(f, "include = sub/b.conf\n"
				      "include = sub/b.conf\n"), 0);

	assert_int_equal(load_text(f, "include = nope.conf\n"), -1);
	snprintf(msg, sizeof(msg), "%s/tern.conf:1: include %s/nope.conf: %s",
		 f->dir, f->dir, strerror(ENOENT));
	assert_string_equal(str_c(f->error), msg);

	assert_int_equal(load_text(f, "include = sub\n"), -1);
	assert_non_null(strstr(str_c(f->error), "not a regular file"));
	assert_int_equal(load_text(f, "include =\n"), -1);
	assert_non_null(strstr(str_c(f->error), "include needs a file path"));
}

static void test_include_loop(void **state)
{
	struct fixture *f = *state;
	char msg[512];

	assert_int_equal(load_text(f, "include = tern.conf\n"), -1);
	snprintf(msg, sizeof(msg), "%s/tern.conf:1: include loop: "
		 "%s/tern.conf is already being read", f->dir, f->dir);
	assert_string_equal(str_c(f->error), msg);

	write_file(f, "a.conf", "include = b.conf\n");
	write_file(f, "b.conf", "log_level = info\n\ninclude = a.conf\n");
	assert_int_equal(load_text(f, "include = a.conf\n"), -1);
	snprintf(msg, sizeof(msg), "%s/b.conf:3: include loop: %s/a.conf is "
		 "already being read", f->dir, f->dir);
	assert_string_equal(str_c(f->error), msg);
}

static void test_include_depth(void **state)
{
	struct fixture *f = *state;
	char name[32], text[64];

	/* tern.conf includes c1.conf, which includes c2.conf, ... */
	for (int i = 1; i <= CFG_INCLUDE_DEPTH + 1; i++) {
		snprintf(name, sizeof(name), "c%d.conf", i);
		snprintf(text, sizeof(text), "include = c%d.conf\n", i + 1);
		write_file(f, name, text);
	}
	snprintf(name, sizeof(name), "c%d.conf", CFG_INCLUDE_DEPTH);
	write_file(f, name, "log_level = error\n");
	assert_int_equal(load_text(f, "include = c1.conf\n"), 0);
	assert_int_equal(cfg_enum(f->cfg, OPT_LOG_LEVEL), 3);

	snprintf(name, sizeof(name), "c%d.conf", CFG_INCLUDE_DEPTH);
	snprintf(text, sizeof(text), "include = c%d.conf\n",
		 CFG_INCLUDE_DEPTH + 1);
	write_file(f, name, text);
	write_file(f, "c9.conf", "log_level = error\n");
	assert_int_equal(load_text(f, "include = c1.conf\n"), -1);
	assert_non_null(strstr(str_c(f->error), "nested deeper than 8 files"));
}

static void test_include_from_buffer(void **state)
{
	struct fixture *f = *state;
	static const char text[] = "log_level = info\ninclude = x.conf\n";

	assert_int_equal(cfg_load_buffer(ROOT, "mem", NULL, text,
					 strlen(text), NULL, NULL, &f->cfg,
					 f->error), -1);
	assert_string_equal(str_c(f->error),
			    "mem:2: include is not allowed here");
	write_file(f, "x.conf", "log_level = error\n");
	assert_int_equal(cfg_load_buffer(ROOT, "mem", f->dir, text,
					 strlen(text), NULL, NULL, &f->cfg,
					 f->error), 0);
	assert_int_equal(cfg_enum(f->cfg, OPT_LOG_LEVEL), 3);
}

static void test_expansion(void **state)
{
	struct fixture *f = *state;
	char msg[512];

	assert_int_equal(load_text(f, "tls_ca_file = ${tls_cert_file}.ca\n"
				      "user = a$$b-$drain_timeout-$ 5$1$\n"
				      "drain_timeout = 7s\n"), 0);
	assert_string_equal(cfg_str(f->cfg, OPT_TLS_CA_FILE),
			    ROOT "/conf/ssl/tern.crt.ca");
	assert_string_equal(cfg_str(f->cfg, OPT_USER), "a$b-7s-$ 5$1$");

	assert_int_equal(load_text(f, "user = $user\n"), -1);
	snprintf(msg, sizeof(msg), "%s/tern.conf:1: user: reference loop "
		 "through $user", f->dir);
	assert_string_equal(str_c(f->error), msg);
	assert_int_equal(load_text(f, "user = x$tls_ciphers\n"
				      "tls_ciphers = ${user}\n"), -1);
	assert_non_null(strstr(str_c(f->error), "reference loop"));
	assert_int_equal(load_text(f, "user = $nosuch\n"), -1);
	snprintf(msg, sizeof(msg), "%s/tern.conf:1: user: unknown option "
		 "$nosuch in value", f->dir);
	assert_string_equal(str_c(f->error), msg);
	assert_int_equal(load_text(f, "user = ${user\n"), -1);
	assert_non_null(strstr(str_c(f->error), "bad ${name}"));
	/* The expanded text is what gets checked. */
	assert_int_equal(load_text(f, "crash_loop_limit = $drain_timeout\n"),
			 -1);
	assert_non_null(strstr(str_c(f->error), "bad value for "
			       "crash_loop_limit: '30s' (expected an integer"));
}

static void test_limits(void **state)
{
	struct fixture *f = *state;
	size_t big = CFG_FILE_MAX + 100;
	char *text = malloc(big + 1);
	char msg[512];

	assert_non_null(text);
	/* A line over CFG_LINE_MAX. */
	memcpy(text, "user = ", 7);
	memset(text + 7, 'a', CFG_LINE_MAX);
	text[7 + CFG_LINE_MAX] = '\0';
	assert_int_equal(load_text(f, text), -1);
	snprintf(msg, sizeof(msg), "%s/tern.conf:1: line longer than 65536 "
		 "bytes", f->dir);
	assert_string_equal(str_c(f->error), msg);

	/* A value over CFG_LINE_MAX made of continuation lines. */
	memset(text + 7, 'a', 40000);
	memcpy(text + 7 + 40000, "\n ", 2);
	memset(text + 7 + 40002, 'b', 40000);
	text[7 + 80002] = '\0';
	assert_int_equal(load_text(f, text), -1);
	assert_non_null(strstr(str_c(f->error), "tern.conf:1: line too long"));

	/* A value that only grows past the limit by expansion. */
	memcpy(text, "user = ", 7);
	memset(text + 7, 'a', 30000);
	memcpy(text + 30007, "\ntls_ciphers = $user$user$user\n", 32);
	assert_int_equal(load_text(f, text), -1);
	snprintf(msg, sizeof(msg), "%s/tern.conf:2: tls_ciphers: value longer "
		 "than 65536 bytes after expansion", f->dir);
	assert_string_equal(str_c(f->error), msg);

	/* A file over CFG_FILE_MAX, from disk and from memory. */
	for (size_t i = 0; i < big; i++)
		text[i] = i % 64 == 63 ? '\n' : '#';
	text[big] = '\0';
	assert_int_equal(load_text(f, text), -1);
	snprintf(msg, sizeof(msg), "%s/tern.conf: file too large", f->dir);
	assert_string_equal(str_c(f->error), msg);
	assert_int_equal(cfg_load_buffer(ROOT, "mem", NULL, text, big, NULL,
					 NULL, &f->cfg, f->error), -1);
	assert_string_equal(str_c(f->error), "mem: file too large");

	/* NUL bytes. */
	assert_int_equal(cfg_load_buffer(ROOT, "mem", NULL, "a = 1\nb\0 = 2\n",
					 13, NULL, NULL, &f->cfg, f->error),
			 -1);
	assert_string_equal(str_c(f->error), "mem:2: NUL byte in line");
	free(text);
}

static void test_missing_file(void **state)
{
	struct fixture *f = *state;
	char msg[512];

	assert_int_equal(cfg_load(f->dir, "conf/none.conf", NULL, NULL,
				  &f->cfg, f->error), -1);
	snprintf(msg, sizeof(msg), "%s/conf/none.conf: %s", f->dir,
		 strerror(ENOENT));
	assert_string_equal(str_c(f->error), msg);
	/* A relative path is under the root. */
	write_file(f, "tern.conf", "log_level = error\n");
	assert_int_equal(cfg_load(f->dir, "tern.conf", NULL, NULL, &f->cfg,
				  f->error), 0);
	assert_int_equal(cfg_enum(f->cfg, OPT_LOG_LEVEL), 3);
}

static void test_show_and_iter(void **state)
{
	struct fixture *f = *state;
	struct str *out = str_new(0, 65536), *small = str_new(0, 10);
	struct cfg_item item;
	size_t pos = 0, n = 0, lines = 0;
	char msg[512];

	assert_int_equal(load_text(f, "\nlog_level = debug\n"), 0);
	assert_int_equal(cfg_show(f->cfg, "log_level", out, f->error), 0);
	snprintf(msg, sizeof(msg), "log_level = debug  # %s/tern.conf:2\n",
		 f->dir);
	assert_string_equal(str_c(out), msg);
	str_clear(out);
	assert_int_equal(cfg_show(f->cfg, "tls_ca_file", out, f->error), 0);
	assert_string_equal(str_c(out), "tls_ca_file =  # default\n");
	str_clear(out);
	assert_int_equal(cfg_show(f->cfg, NULL, out, f->error), 0);
	for (const char *p = str_c(out); *p != '\0'; p++)
		lines += *p == '\n';
	assert_int_equal(lines, OPT_COUNT);
	assert_non_null(strstr(str_c(out), "drain_timeout = 30s  # default\n"));
	assert_int_equal(cfg_show(f->cfg, "nope", out, f->error), -1);
	assert_string_equal(str_c(f->error), "unknown option 'nope'");
	assert_int_equal(cfg_show(f->cfg, NULL, small, f->error), -1);

	while (cfg_iter(f->cfg, &pos, &item)) {
		assert_int_equal(item.id, n);
		assert_string_equal(item.name, cfg_def(item.id)->name);
		assert_string_equal(item.value, cfg_str(f->cfg, item.id));
		assert_string_equal(item.source, cfg_source(f->cfg, item.id));
		assert_string_equal(item.type,
				    cfg_type_name(cfg_def(item.id)->type));
		assert_non_null(item.doc);
		assert_non_null(item.default_value);
		n++;
	}
	assert_int_equal(n, OPT_COUNT);
	assert_false(cfg_iter(f->cfg, &pos, &item));
	str_free(&out);
	str_free(&small);
}

static void test_markdown(void **state)
{
	struct str *out = str_new(0, 1 << 20), *small = str_new(0, 100);
	char want[128];

	assert_int_equal(cfg_write_markdown(out), 0);
	for (size_t i = 0; i < OPT_COUNT; i++) {
		const struct cfg_def *def = cfg_def((enum cfg_opt)i);

		snprintf(want, sizeof(want), "\n### %s\n\n", def->name);
		assert_non_null(strstr(str_c(out), want));
		snprintf(want, sizeof(want), "| [`%s`](#%s) | %s |", def->name,
			 def->name, cfg_type_name(def->type));
		assert_non_null(strstr(str_c(out), want));
	}
	assert_non_null(strstr(str_c(out), "- Range: 4k to 16M\n"));
	assert_non_null(strstr(str_c(out),
			       "- Type: enum (debug, info, warning, error)\n"));
	assert_int_equal(cfg_write_markdown(small), -1);
	str_free(&out);
	str_free(&small);
}

/* The default tern.conf loads as the defaults; uncommented, it sets
 * every option to its default. */
static void test_default_conf(void **state)
{
	struct fixture *f = *state;
	struct str *out = str_new(0, 1 << 20), *small = str_new(0, 100);
	struct cfg *defaults;
	char *text, *p;

	assert_int_equal(cfg_write_default_conf(out), 0);
	assert_int_equal(cfg_write_default_conf(small), -1);
	assert_int_equal(cfg_load(ROOT, NULL, NULL, NULL, &defaults,
				  f->error), 0);
	assert_int_equal(load_text(f, str_c(out)), 0);
	assert_string_equal(str_c(f->warnings), "");
	for (size_t i = 0; i < OPT_COUNT; i++)
		assert_string_equal(cfg_source(f->cfg, (enum cfg_opt)i),
				    "default");

	/* Uncomment the "#key = value" lines. */
	text = strdup(str_c(out));
	assert_non_null(text);
	str_clear(out);
	for (p = text; *p != '\0'; p++) {
		if (p[0] == '#' && p > text && p[-1] == '\n' && p[1] >= 'a' &&
		    p[1] <= 'z')
			continue;
		assert_int_equal(str_append_byte(out, (unsigned char)*p), 0);
	}
	free(text);
	assert_int_equal(load_text(f, str_c(out)), 0);
	assert_string_equal(str_c(f->warnings), "");
	for (size_t i = 0; i < OPT_COUNT; i++) {
		enum cfg_opt id = (enum cfg_opt)i;

		assert_string_equal(cfg_str(f->cfg, id), cfg_str(defaults, id));
		assert_string_not_equal(cfg_source(f->cfg, id), "default");
	}
	cfg_free(&defaults);
	str_free(&out);
	str_free(&small);
}

static void test_lines(void **state)
{
	static const char text[] = "a\n  b\n\n# c\n \t\nd\r\n\te  \n";
	struct str *line = str_new(0, 100), *tiny = str_new(0, 2);
	struct cfg_lines lr;
	const char *err;
	unsigned lineno;

	cfg_lines_init(&lr, text, strlen(text));
	assert_int_equal(cfg_lines_next(&lr, line, &lineno, &err), 1);
	assert_string_equal(str_c(line), "a b");
	assert_int_equal(lineno, 1);
	assert_int_equal(cfg_lines_next(&lr, line, &lineno, &err), 1);
	assert_string_equal(str_c(line), "d e");
	assert_int_equal(lineno, 6);
	assert_int_equal(cfg_lines_next(&lr, line, &lineno, &err), 0);

	cfg_lines_init(&lr, "abc", 3);
	assert_int_equal(cfg_lines_next(&lr, tiny, &lineno, &err), -1);
	assert_string_equal(err, "line too long");
	str_free(&line);
	str_free(&tiny);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
		cmocka_unit_test(test_table_consistent),
		cmocka_unit_test_setup_teardown(test_int, setup, teardown),
		cmocka_unit_test_setup_teardown(test_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_duration, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enum, setup, teardown),
		cmocka_unit_test_setup_teardown(test_paths_and_strings, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_target, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostname, setup, teardown),
		cmocka_unit_test(test_bool_and_list_types),
		cmocka_unit_test(test_number_forms),
		cmocka_unit_test_setup_teardown(test_error_names_file_and_line,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_key_warns, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_duplicate_key_last_wins,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_continuation_and_crlf,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_include, setup, teardown),
		cmocka_unit_test_setup_teardown(test_include_loop, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_include_depth, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_include_from_buffer, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_expansion, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_file, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_show_and_iter, setup,
						teardown),
		cmocka_unit_test(test_markdown),
		cmocka_unit_test_setup_teardown(test_default_conf, setup,
						teardown),
		cmocka_unit_test(test_lines),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
