/* test_queue_spool.c: writing a queue file the way tern-smtpd does, with
 * the spool writer on a real libuv loop: create in tmp/, write records,
 * commit (fsync, rename into incoming/, fsync the folder), read back; a
 * commit that cannot rename leaves nothing behind; a spool dropped before
 * its commit removes its file. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>
#include <cmocka.h>

#include "compat.h"
#include "queue.h"
#include "spool.h"
#include "str.h"

struct fixture {
	uv_loop_t loop;
	char root[64];
	char tmp[96], incoming[96];
	int calls;
};

static void on_op(void *ctx)
{
	struct fixture *f = ctx;

	f->calls++;
}

/* Runs the loop until the spool's operation called back. */
static void wait_op(struct fixture *f, struct spool *sp)
{
	for (int i = 0; i < 10000 && spool_busy(sp); i++)
		uv_run(&f->loop, UV_RUN_ONCE);
	assert_false(spool_busy(sp));
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_int_equal(uv_loop_init(&f->loop), 0);
	snprintf(f->root, sizeof(f->root), "/tmp/test_queue_spool.XXXXXX");
	assert_non_null(mkdtemp(f->root));
	snprintf(f->tmp, sizeof(f->tmp), "%s/tmp", f->root);
	snprintf(f->incoming, sizeof(f->incoming), "%s/incoming", f->root);
	assert_int_equal(mkdir(f->tmp, 0750), 0);
	assert_int_equal(mkdir(f->incoming, 0750), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	while (uv_run(&f->loop, UV_RUN_DEFAULT) != 0)
		;
	assert_int_equal(uv_loop_close(&f->loop), 0);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->root);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static int count_files(const char *dir)
{
	char cmd[160];
	FILE *p;
	int n = -1;

	snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", dir);
	p = popen(cmd, "r");
	assert_non_null(p);
	assert_int_equal(fscanf(p, "%d", &n), 1);
	pclose(p);
	return n;
}

/* A queue file of one recipient and the message text. */
static struct str *records(const char *id, const char *text)
{
	struct queue_envelope e;
	struct str *out = str_new(256, 1 << 20);

	memset(&e, 0, sizeof(e));
	e.id = strdup(id);
	e.arrival_sec = 1732850000;
	e.sender = strdup("a@example.org");
	queue_envelope_add_rcpt(&e, "b@example.com", NULL, NULL);
	assert_int_equal(queue_encode_envelope(out, &e), 0);
	assert_int_equal(queue_encode_data(out, text, strlen(text)), 0);
	assert_int_equal(queue_encode_end(out, strlen(text)), 0);
	queue_envelope_clear(&e);
	return out;
}

static void test_commit(void **state)
{
	struct fixture *f = *state;
	char id[QUEUE_ID_SIZE], final[160];
	struct str *out, *msg = str_new(64, 4096);
	struct queue_envelope env;
	struct spool *sp;

	queue_id_new(id);
	snprintf(final, sizeof(final), "%s/%s", f->incoming, id);
	sp = spool_new(&f->loop, f->tmp, id, on_op, f);
	wait_op(f, sp);
	assert_null(spool_error(sp));
	out = records(id, "Subject: x\r\n\r\nhi\r\n");
	assert_int_equal(spool_write(sp, out, on_op, f), 0);
	wait_op(f, sp);
	assert_int_equal(count_files(f->incoming), 0);
	assert_int_equal(spool_commit(sp, final, on_op, f), 0);
	wait_op(f, sp);
	assert_null(spool_error(sp));
	assert_int_equal(f->calls, 3);
	spool_free(&sp, true);	/* committed: the file stays */
	assert_int_equal(count_files(f->tmp), 0);
	memset(&env, 0, sizeof(env));
	assert_int_equal(queue_file_read(final, &env, msg, NULL), 0);
	assert_string_equal(env.id, id);
	assert_string_equal(str_c(msg), "Subject: x\r\n\r\nhi\r\n");
	queue_envelope_clear(&env);
	str_free(&out);
	str_free(&msg);
}

static void test_commit_fails(void **state)
{
	struct fixture *f = *state;
	char id[QUEUE_ID_SIZE], final[200];
	struct str *out;
	struct spool *sp;

	queue_id_new(id);
	/* incoming/ID/ID: a folder that does not exist */
	snprintf(final, sizeof(final), "%s/%s/%s", f->incoming, id, id);
	sp = spool_new(&f->loop, f->tmp, id, on_op, f);
	wait_op(f, sp);
	out = records(id, "x\r\n");
	assert_int_equal(spool_write(sp, out, on_op, f), 0);
	wait_op(f, sp);
	assert_int_equal(spool_commit(sp, final, on_op, f), 0);
	wait_op(f, sp);
	assert_non_null(spool_error(sp));
	assert_non_null(strstr(spool_error(sp), "rename"));
	/* nothing more can be done with it */
	assert_int_equal(spool_commit(sp, final, on_op, f), -1);
	spool_free(&sp, true);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(count_files(f->tmp), 0);
	assert_int_equal(count_files(f->incoming), 0);
	str_free(&out);
}

static void test_dropped_before_commit(void **state)
{
	struct fixture *f = *state;
	char id[QUEUE_ID_SIZE];
	struct str *out;
	struct spool *sp;

	queue_id_new(id);
	sp = spool_new(&f->loop, f->tmp, id, on_op, f);
	wait_op(f, sp);
	out = records(id, "x\r\n");
	assert_int_equal(spool_write(sp, out, on_op, f), 0);
	spool_free(&sp, true);	/* while the write runs */
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(count_files(f->tmp), 0);
	assert_int_equal(count_files(f->incoming), 0);
	str_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_fails, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_dropped_before_commit,
						setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
