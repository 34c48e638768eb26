/* test_services.c: services.conf parsing, the port mapping, the defaults. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "compat.h"
#include "services.h"
#include "str.h"
#include "tmpdir.h"

#define ROOT "/srv/tern"

static const char example[] =
	"# name   type  listen                       procs  enabled  "
	"[options] command [args...]\n"
	"imap     inet  127.0.0.1:7143,[::1]:7143    1      yes      "
	"tern-imapd\n"
	"authd    unix  run/authd.sock               1      yes      "
	"tern-authd\n"
	"qmgr     proc  -                            1      yes      "
	"tern-qmgr\n"
	"slapd    proc  -                            1      no       "
	"ready=tcp:127.0.0.1:389 external=yes /usr/sbin/slapd -d 0 "
	"-h ldap://127.0.0.1:389/\n";

struct fixture {
	char dir[64];
	struct str *error;
	struct services *table;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	assert_non_null(tmpdir_make(f->dir, sizeof(f->dir), "svc"));
	f->error = str_new(0, 4096);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	services_free(&f->table);
	str_free(&f->error);
	assert_int_equal(tmpdir_remove(f->dir), 0);
	free(f);
	return 0;
}

/* Writes text to DIR/conf/services.conf and loads it. */
static int load_text(struct fixture *f, const char *text)
{
	char path[256];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/conf", f->dir);
	if (mkdir(path, 0700) < 0)
		assert_int_equal(errno, EEXIST);
	snprintf(path, sizeof(path), "%s/conf/services.conf", f->dir);
	fp = fopen(path, "w");
	assert_non_null(fp);
	assert_int_equal(fwrite(text, 1, strlen(text), fp), strlen(text));
	assert_int_equal(fclose(fp), 0);
	services_free(&f->table);
	return services_load(f->dir, "conf/services.conf", &f->table,
			     f->error);
}

static int load_mem(struct fixture *f, const char *text)
{
	services_free(&f->table);
	return services_load_buffer(ROOT, "s.conf", text, strlen(text),
				    &f->table, f->error);
}

/* text must fail with "s.conf:LINE: " + message. */
static void expect_error(struct fixture *f, const char *text,
			 const char *message)
{
	assert_int_equal(load_mem(f, text), -1);
	assert_null(f->table);
	if (strcmp(str_c(f->error), message) != 0)
		fail_msg("error '%s', wanted '%s'", str_c(f->error), message);
}

static void test_example(void **state)
{
	struct fixture *f = *state;
	const struct service *s;
	struct str *a = str_new(0, 256);

	assert_int_equal(load_text(f, example), 0);
	assert_int_equal(services_count(f->table), 4);

	s = services_get(f->table, 0);
	assert_string_equal(s->name, "imap");
	assert_int_equal(s->type, SERVICE_INET);
	assert_int_equal(s->nlisten, 2);
	assert_int_equal(s->listen[0].family, AF_INET);
	assert_string_equal(s->listen[0].host, "127.0.0.1");
	assert_int_equal(s->listen[0].port, 7143);
	assert_int_equal(s->listen[1].family, AF_INET6);
	assert_string_equal(s->listen[1].host, "::1");
	assert_int_equal(services_addr_format(a, &s->listen[1]), 0);
	assert_string_equal(str_c(a), "[::1]:7143");
	assert_int_equal(s->procs, 1);
	assert_true(s->enabled);
	assert_false(s->external);
	assert_false(s->has_ready);
	assert_int_equal(s->drain_ms, -1);
	assert_int_equal(s->backlog, SERVICE_BACKLOG_DEFAULT);
	assert_int_equal(s->argc, 1);
	assert_string_equal(s->argv[0], "tern-imapd");
	assert_null(s->argv[1]);
	assert_int_equal(s->line, 2);
	assert_non_null(strstr(s->file, "/conf/services.conf"));

	s = services_find(f->table, "authd");
	assert_non_null(s);
	assert_int_equal(s->type, SERVICE_UNIX);
	assert_int_equal(s->nlisten, 1);
	assert_int_equal(s->listen[0].family, AF_UNIX);
	assert_non_null(strstr(s->listen[0].path, "/run/authd.sock"));
	assert_true(s->listen[0].path[0] == '/');
	assert_int_equal(s->mode, SERVICE_MODE_DEFAULT);

	s = services_find(f->table, "qmgr");
	assert_int_equal(s->type, SERVICE_PROC);
	assert_int_equal(s->nlisten, 0);

	s = services_find(f->table, "slapd");
	assert_false(s->enabled);
	assert_true(s->external);
	assert_true(s->has_ready);
	assert_int_equal(s->ready.family, AF_INET);
	assert_string_equal(s->ready.host, "127.0.0.1");
	assert_int_equal(s->ready.port, 389);
	assert_int_equal(s->argc, 5);
	assert_string_equal(s->argv[0], "/usr/sbin/slapd");
	assert_string_equal(s->argv[4], "ldap://127.0.0.1:389/");
	assert_null(services_find(f->table, "nope"));
	assert_null(services_get(f->table, 4));
	assert_string_equal(services_type_name(SERVICE_UNIX), "unix");
	str_free(&a);
}

static void test_options_and_words(void **state)
{
	struct fixture *f = *state;
	const struct service *s;

	assert_int_equal(load_mem(f,
		"web inet *:80,[2001:db8:0::1]:80,0.0.0.0:81 - on drain=5s "
		"backlog=64\n"
		"  \"/opt/my prog\" -x \"a b\" c\\ d \"\" \\\"q\\\\\n"
		"sock unix /tmp/x.sock 2 yes mode=0600 tern-authd\n"
		"ext proc - 1 no ready=unix:run/ldapi external=yes drain=0\n"
		"  slapd\n"), 0);
	s = services_find(f->table, "ext");
	assert_false(s->ready_ldap);
	assert_int_equal(s->ready.family, AF_UNIX);
	s = services_find(f->table, "web");
	assert_int_equal(s->nlisten, 3);
	assert_int_equal(s->listen[0].family, AF_UNSPEC);
	assert_string_equal(s->listen[0].host, "*");
	assert_string_equal(s->listen[1].host, "2001:db8::1");
	assert_int_equal(s->procs, 0);
	assert_true(services_procs(s) >= 1);
	assert_true(s->enabled);
	assert_int_equal(s->drain_ms, 5000);
	assert_int_equal(s->backlog, 64);
	assert_int_equal(s->argc, 6);
	assert_string_equal(s->argv[0], "/opt/my prog");
	assert_string_equal(s->argv[1], "-x");
	assert_string_equal(s->argv[2], "a b");
	assert_string_equal(s->argv[3], "c d");
	assert_string_equal(s->argv[4], "");
	assert_string_equal(s->argv[5], "\"q\\");
	s = services_find(f->table, "sock");
	assert_string_equal(s->listen[0].path, "/tmp/x.sock");
	assert_int_equal(s->mode, 0600);
	assert_int_equal(s->procs, 2);
	s = services_find(f->table, "ext");
	assert_int_equal(s->ready.family, AF_UNIX);
	assert_string_equal(s->ready.path, ROOT "/run/ldapi");
	assert_int_equal(s->drain_ms, 0);
	assert_string_equal(s->argv[0], "slapd");
}

static void test_field_errors(void **state)
{
	struct fixture *f = *state;

	expect_error(f, "\n\nimap inet *:143 1 yes\n",
		     "s.conf:3: missing fields (expected NAME TYPE LISTEN "
		     "PROCS ENABLED [OPTION=VALUE...] COMMAND [ARG...])");
	expect_error(f, "imap inet *:143 1 yes drain=1s\n",
		     "s.conf:1: missing command (expected NAME TYPE LISTEN "
		     "PROCS ENABLED [OPTION=VALUE...] COMMAND [ARG...])");
	expect_error(f, "Imap inet *:143 1 yes x\n",
		     "s.conf:1: bad service name 'Imap' (expected 1 to 32 of "
		     "a-z, 0-9, _ and -)");
	expect_error(f, "abcdefghijabcdefghijabcdefghijabc inet *:1 1 yes x\n",
		     "s.conf:1: bad service name "
		     "'abcdefghijabcdefghijabcdefghijabc' (expected 1 to 32 "
		     "of a-z, 0-9, _ and -)");
	expect_error(f, "imap tcp *:143 1 yes x\n",
		     "s.conf:1: bad service type 'tcp' (expected inet, unix "
		     "or proc)");
	expect_error(f, "q proc run/x 1 yes x\n",
		     "s.conf:1: bad listen field 'run/x' for a proc service "
		     "(expected -)");
	expect_error(f, "a inet *:1 0 yes x\n",
		     "s.conf:1: bad process count '0' (expected 1 to 256, or "
		     "- for one per CPU core)");
	expect_error(f, "a inet *:1 257 yes x\n",
		     "s.conf:1: bad process count '257' (expected 1 to 256, "
		     "or - for one per CPU core)");
	expect_error(f, "a inet *:1 two yes x\n",
		     "s.conf:1: bad process count 'two' (expected 1 to 256, "
		     "or - for one per CPU core)");
	expect_error(f, "a inet *:1 1 maybe x\n",
		     "s.conf:1: bad enabled field 'maybe' (expected yes or "
		     "no)");
}

static void test_listen_errors(void **state)
{
	static const char *const bad[] = {
		"*:0", "*:65536", "*:", "*:http", "127.0.0.1", "1.2.3:25",
		"256.1.1.1:25", "[::1:25", "[::1]25", "::1:25", "[1.2.3.4]:25",
		"host.example:25", "*:25,", ",*:25", "[]:25", "*:-1",
		"*:123456",
	};
	struct fixture *f = *state;
	char text[256], msg[512];

	for (size_t i = 0; i < TERN_NELEM(bad); i++) {
		const char *item = bad[i];

		snprintf(text, sizeof(text), "a inet %s 1 yes x\n", bad[i]);
		/* the message names the first bad item */
		if (strcmp(item, "*:25,") == 0 || strcmp(item, ",*:25") == 0)
			item = "";
		snprintf(msg, sizeof(msg), "s.conf:1: bad listen address '%s' "
			 "(expected HOST:PORT, [IPV6]:PORT or *:PORT with HOST "
			 "an IPv4 address and PORT 1 to 65535, "
			 "comma-separated, e.g. 127.0.0.1:7143,[::1]:7143)",
			 item);
		expect_error(f, text, msg);
	}
	expect_error(f, "a inet *:1,*:2,*:3,*:4,*:5,*:6,*:7,*:8,*:9,*:10,"
		     "*:11,*:12,*:13,*:14,*:15,*:16,*:17 1 yes x\n",
		     "s.conf:1: more than 16 listen addresses");
	expect_error(f, "a inet [::1]:25,[0:0::1]:25 1 yes x\n",
		     "s.conf:1: listen address '[::1]:25,[0:0::1]:25' is "
		     "given twice");
	expect_error(f, "a unix - 1 yes x\n",
		     "s.conf:1: bad listen path '-' for a unix service "
		     "(expected a socket path, relative to the instance "
		     "root, of at most 107 bytes in full, e.g. "
		     "run/authd.sock)");
	memset(text, 0, sizeof(text));
	memcpy(text, "a unix ", 7);
	memset(text + 7, 'p', 100);	/* fits alone, not under ROOT */
	memcpy(text + 107, " 1 yes x\n", 9);
	assert_int_equal(load_mem(f, text), -1);
	assert_non_null(strstr(str_c(f->error), "bad listen path"));
}

static void test_option_errors(void **state)
{
	struct fixture *f = *state;

	expect_error(f, "a proc - 1 yes extrnal=yes x\n",
		     "s.conf:1: unknown option 'extrnal=yes' (expected ready=, "
		     "external=, drain=, mode= or backlog= before the "
		     "command)");
	expect_error(f, "a proc - 1 yes external=yes external=no x\n",
		     "s.conf:1: option external= given twice");
	expect_error(f, "a proc - 1 yes external=maybe x\n",
		     "s.conf:1: bad external= value 'maybe' (expected yes or "
		     "no)");
	expect_error(f, "a proc - 1 yes external=yes ready=tcp:*:389 x\n",
		     "s.conf:1: bad ready= value 'tcp:*:389' (expected "
		     "tcp:HOST:PORT, unix:PATH, ldap:HOST:PORT or ldapi:PATH, "
		     "e.g. ready=tcp:127.0.0.1:389)");
	expect_error(f, "a proc - 1 yes external=yes ready=ldapi: x\n",
		     "s.conf:1: bad ready= value 'ldapi:' (expected "
		     "tcp:HOST:PORT, unix:PATH, ldap:HOST:PORT or ldapi:PATH, "
		     "e.g. ready=tcp:127.0.0.1:389)");
	expect_error(f, "a proc - 1 yes external=yes ready=http://x x\n",
		     "s.conf:1: bad ready= value 'http://x' (expected "
		     "tcp:HOST:PORT, unix:PATH, ldap:HOST:PORT or ldapi:PATH, "
		     "e.g. ready=tcp:127.0.0.1:389)");
	expect_error(f, "a proc - 1 yes drain=2h x\n",
		     "s.conf:1: bad drain= value '2h' (expected a duration "
		     "from 0 to 1h with an ms, s, m or h suffix, e.g. "
		     "drain=30s)");
	expect_error(f, "a unix r.sock 1 yes mode=0800 x\n",
		     "s.conf:1: bad mode= value '0800' (expected octal "
		     "permissions, e.g. mode=0660)");
	expect_error(f, "a unix r.sock 1 yes mode=1777 x\n",
		     "s.conf:1: bad mode= value '1777' (expected octal "
		     "permissions, e.g. mode=0660)");
	expect_error(f, "a inet *:1 1 yes backlog=0 x\n",
		     "s.conf:1: bad backlog= value '0' (expected 1 to 65535)");
	expect_error(f, "a inet *:1 1 yes backlog=65536 x\n",
		     "s.conf:1: bad backlog= value '65536' (expected 1 to "
		     "65535)");
	expect_error(f, "a inet *:1 1 yes mode=0600 x\n",
		     "s.conf:1: mode= applies only to unix services");
	expect_error(f, "a proc - 1 yes backlog=5 x\n",
		     "s.conf:1: backlog= applies only to inet and unix "
		     "services");
	expect_error(f, "a inet *:1 1 yes external=yes x\n",
		     "s.conf:1: an external=yes service must be of type proc "
		     "(it gets no listening socket from the master)");
	expect_error(f, "a proc - 1 yes ready=tcp:127.0.0.1:1 x\n",
		     "s.conf:1: ready= applies only to external=yes services "
		     "(Tern daemons report readiness themselves)");
}

static void test_word_errors(void **state)
{
	struct fixture *f = *state;
	struct str *text = str_new(0, 65536);

	expect_error(f, "a proc - 1 yes x \"unterminated\n",
		     "s.conf:1: unterminated double quote");
	expect_error(f, "a proc - 1 yes x y\\\n",
		     "s.conf:1: backslash at the end of the line");
	expect_error(f, "  a proc - 1 yes x\n",
		     "s.conf:1: continuation line with nothing to continue");

	assert_int_equal(str_append_c(text, "a proc - 1 yes x"), 0);
	for (int i = 1; i < SERVICES_ARGS_MAX; i++)
		assert_int_equal(str_append_c(text, " y"), 0);
	assert_int_equal(load_mem(f, str_c(text)), 0);
	assert_int_equal(services_get(f->table, 0)->argc, SERVICES_ARGS_MAX);
	assert_int_equal(str_append_c(text, " z"), 0);
	expect_error(f, str_c(text), "s.conf:1: too many arguments (at most "
		     "64)");
	for (int i = 0; i < 20; i++)
		assert_int_equal(str_append_c(text, " z"), 0);
	expect_error(f, str_c(text), "s.conf:1: too many words (at most 64 "
		     "arguments)");

	str_clear(text);
	assert_int_equal(str_append_c(text, "a proc - 1 yes x "), 0);
	for (int i = 0; i < SERVICES_LINE_MAX; i++)
		assert_int_equal(str_append_c(text, "y"), 0);
	expect_error(f, str_c(text), "s.conf:1: line too long");
	str_free(&text);
}

static void test_table_errors(void **state)
{
	struct fixture *f = *state;
	struct str *text = str_new(0, 65536);

	expect_error(f, "a proc - 1 yes x\n# c\nb proc - 1 yes x\n"
		     "a proc - 1 yes x\n",
		     "s.conf:4: service 'a' is already defined at s.conf:1");
	expect_error(f, "a inet 127.0.0.1:25 1 yes x\n"
		     "b inet *:26,127.0.0.1:25 1 yes x\n",
		     "s.conf:2: listen address '127.0.0.1:25' is already used "
		     "by service a (s.conf:1)");
	expect_error(f, "a unix run/a.sock 1 yes x\n"
		     "b unix /srv/tern/run/a.sock 1 yes x\n",
		     "s.conf:2: listen address '/srv/tern/run/a.sock' is "
		     "already used by service a (s.conf:1)");
	/* A disabled alternative may share the address. */
	assert_int_equal(load_mem(f, "a inet *:143 1 yes x\n"
				     "b inet *:143 1 no y\n"), 0);

	for (int i = 0; i <= SERVICES_MAX; i++)
		assert_int_equal(str_printf(text, "s%d proc - 1 yes x\n", i),
				 0);
	expect_error(f, str_c(text), "s.conf:257: more than 256 services");
	str_free(&text);
}

static void test_file_errors(void **state)
{
	struct fixture *f = *state;
	char msg[512];
	char *big;

	services_free(&f->table);
	assert_int_equal(services_load(f->dir, "none.conf", &f->table,
				       f->error), -1);
	snprintf(msg, sizeof(msg), "%s/none.conf: %s", f->dir,
		 strerror(ENOENT));
	assert_string_equal(str_c(f->error), msg);

	big = malloc(SERVICES_FILE_MAX + 2);
	assert_non_null(big);
	memset(big, '\n', SERVICES_FILE_MAX + 1);
	big[SERVICES_FILE_MAX + 1] = '\0';
	assert_int_equal(load_text(f, big), -1);
	assert_non_null(strstr(str_c(f->error), "file too large"));
	assert_int_equal(services_load_buffer(ROOT, "m", big,
					      SERVICES_FILE_MAX + 1, &f->table,
					      f->error), -1);
	assert_string_equal(str_c(f->error), "m: file larger than 1048576 "
			    "bytes");
	free(big);
	assert_int_equal(services_load_buffer(ROOT, "m", "a\0", 2, &f->table,
					      f->error), -1);
	assert_string_equal(str_c(f->error), "m:1: NUL byte in line");
	assert_int_equal(load_mem(f, "\n# only comments\n\n"), 0);
	assert_int_equal(services_count(f->table), 0);
}

static void test_equal(void **state)
{
	struct fixture *f = *state;
	struct services *other;
	struct str *err = str_new(0, 1024);
	static const char changed[] =
		"\n\n# moved down, same definitions but for slapd\n"
		"imap     inet  127.0.0.1:7143,[0::1]:7143 1 yes tern-imapd\n"
		"authd    unix  /srv/tern/run/authd.sock 1 yes tern-authd\n"
		"qmgr     proc  - 1 yes\n  tern-qmgr\n"
		"slapd    proc  - 1 no ready=tcp:127.0.0.1:389 external=yes "
		"/usr/sbin/slapd -d 1\n";

	assert_int_equal(load_mem(f, example), 0);
	assert_int_equal(services_load_buffer(ROOT, "t.conf", changed,
					      strlen(changed), &other, err), 0);
	for (size_t i = 0; i < 3; i++)
		assert_true(services_equal(services_get(f->table, i),
					   services_get(other, i)));
	assert_false(services_equal(services_find(f->table, "slapd"),
				    services_find(other, "slapd")));
	assert_false(services_equal(services_find(f->table, "imap"),
				    services_find(other, "authd")));
	assert_true(services_addr_equal(&services_get(f->table, 0)->listen[1],
					&services_get(other, 0)->listen[1]));
	assert_false(services_addr_equal(&services_get(f->table, 0)->listen[0],
					 &services_get(other, 0)->listen[1]));
	services_free(&other);
	assert_null(other);
	str_free(&err);
}

/* ready=ldap:HOST:PORT and ready=ldapi:PATH: an address to search; a
 * change between ldap and tcp is a change of the service. */
static void test_ready_ldap(void **state)
{
	struct fixture *f = *state;
	struct services *other;
	struct str *err = str_new(0, 1024);
	const struct service *s;
	static const char tcp[] =
		"d proc - 1 yes ready=tcp:127.0.0.1:389 external=yes slapd\n";

	assert_int_equal(load_mem(f,
		"d proc - 1 yes ready=ldap:127.0.0.1:389 external=yes slapd\n"
		"e proc - 1 yes ready=ldapi:run/ldapi external=yes slapd\n"),
		0);
	s = services_find(f->table, "d");
	assert_true(s->has_ready && s->ready_ldap);
	assert_int_equal(s->ready.family, AF_INET);
	assert_int_equal(s->ready.port, 389);
	s = services_find(f->table, "e");
	assert_true(s->ready_ldap);
	assert_int_equal(s->ready.family, AF_UNIX);
	assert_string_equal(s->ready.path, ROOT "/run/ldapi");
	assert_int_equal(services_load_buffer(ROOT, "t.conf", tcp,
					      strlen(tcp), &other, err), 0);
	assert_false(services_equal(services_find(f->table, "d"),
				    services_find(other, "d")));
	services_free(&other);
	str_free(&err);
}

static void test_port_mapping(void **state)
{
	static const unsigned bases[] = {
		0, 1024, 10000, 20000, 30000, 50000, TERN_PORT_BASE_MAX,
	};
	const struct tern_std_port *ports;
	size_t n;

	ports = tern_std_ports(&n);
	assert_int_equal(n, 19);
	for (size_t b = 0; b < TERN_NELEM(bases); b++) {
		for (size_t i = 0; i < n; i++) {
			unsigned p = tern_port(bases[b], ports[i].port);

			assert_true(p >= 1 && p <= 65535);
			if (bases[b] == 0)
				assert_int_equal(p, ports[i].port);
			else
				assert_in_range(p, bases[b] + 1,
						bases[b] + 1999);
			for (size_t j = 0; j < i; j++)
				assert_int_not_equal(p, tern_port(bases[b],
							ports[j].port));
		}
	}
	assert_int_equal(tern_port(20000, 25), 20025);
	assert_int_equal(tern_port(20000, 993), 20993);
	assert_int_equal(tern_port(20000, 7143), 21143);
	assert_int_equal(tern_port(20000, 11211), 21211);
	assert_int_equal(tern_port(0, 11211), 11211);
	assert_int_equal(tern_port(TERN_PORT_BASE_MAX + 1, 7995), 0);
	assert_int_equal(tern_port(1000, 0), 0);
	assert_int_equal(tern_port(0, 65536), 0);
}

/* Parses a generated table back and checks its names. */
static void check_default(struct fixture *f, unsigned base,
			  const char *const *installed, const char *names)
{
	struct str *out = str_new(0, 65536), *got = str_new(0, 4096);

	assert_int_equal(services_write_default(out, base, installed), 0);
	if (load_mem(f, str_c(out)) < 0)
		fail_msg("%s\n%s", str_c(f->error), str_c(out));
	for (size_t i = 0; i < services_count(f->table); i++) {
		const struct service *s = services_get(f->table, i);

		assert_true(s->enabled);
		assert_int_equal(str_printf(got, "%s%s", i > 0 ? " " : "",
					    s->name), 0);
		if (s->type == SERVICE_INET && base != 0)
			assert_true(s->listen[0].port > base);
	}
	assert_string_equal(str_c(got), names);
	str_free(&out);
	str_free(&got);
}

static void test_default_table(void **state)
{
	static const char *const all[] = {
		"tern-authd", "tern-stored", "tern-qmgr", "tern-lmtpd",
		"tern-smtpd", "tern-imapd", "tern-popd", "tern-webd",
		"tern-proxyd", "tern-unknownd", NULL,
	};
	static const char *const noproxy[] = {
		"tern-imapd", "tern-popd", "tern-webd", NULL,
	};
	static const char *const nowebd[] = {
		"tern-imapd", "tern-popd", "tern-proxyd", NULL,
	};
	static const char *const none[] = { NULL };
	struct fixture *f = *state;
	struct str *out = str_new(0, 65536), *uncommented = str_new(0, 65536);
	const struct service *s;

	check_default(f, 0, none, "");
	check_default(f, 0, NULL, "");
	check_default(f, 20000, all,
		      "authd stored qmgr lmtp lmtp-local smtp submission "
		      "submissions imap "
		      "imaps pop3 pop3s http https imap-backend imaps-backend "
		      "pop3-backend pop3s-backend http-backend https-backend "
		      "admin");
	s = services_find(f->table, "imap-backend");
	assert_int_equal(s->listen[0].port, 21143);
	assert_string_equal(s->listen[0].host, "127.0.0.1");
	assert_int_equal(services_find(f->table, "smtp")->listen[0].family,
			 AF_UNSPEC);
	check_default(f, 0, noproxy,
		      "imap imaps pop3 pop3s http https admin");
	/* The proxy's HTTP front end only comes with tern-webd. */
	check_default(f, 0, nowebd,
		      "imap imaps pop3 pop3s imap-backend imaps-backend "
		      "pop3-backend pop3s-backend");
	assert_int_equal(services_find(f->table, "imap")->listen[0].port, 143);

	/* The commented examples are valid lines once uncommented. */
	assert_int_equal(services_write_default(out, 30000, none), 0);
	for (const char *p = str_c(out); *p != '\0'; p++) {
		if (p[0] == '#' && (p == str_c(out) || p[-1] == '\n') &&
		    p[1] >= 'a' && p[1] <= 'z')
			continue;
		assert_int_equal(str_append_byte(uncommented,
						 (unsigned char)*p), 0);
	}
	assert_int_equal(load_mem(f, str_c(uncommented)), 0);
	assert_int_equal(services_count(f->table), 2);
	s = services_find(f->table, "ldap");
	assert_true(s->external);
	assert_int_equal(s->ready.port, 30389);
	assert_string_equal(s->argv[s->argc - 1], "ldap://127.0.0.1:30389/");
	assert_int_equal(services_find(f->table, "memcached")->ready.port,
			 31211);

	assert_int_equal(services_write_default(out, TERN_PORT_BASE_MAX + 1,
						all), -1);
	str_free(&out);
	str_free(&uncommented);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_example, setup, teardown),
		cmocka_unit_test_setup_teardown(test_options_and_words, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_field_errors, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_listen_errors, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_option_errors, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_word_errors, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_table_errors, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_file_errors, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_equal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ready_ldap, setup,
						teardown),
		cmocka_unit_test(test_port_mapping),
		cmocka_unit_test_setup_teardown(test_default_table, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
