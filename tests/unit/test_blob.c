/* test_blob.c: content-addressed blob files of tern-stored (stored/blob.c). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
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
#include "blob.h"
#include "str.h"
#include "tmpdir.h"

/* SHA-256 of "abc". */
#define ABC_HEX "ba7816bf8f01cfea414140de5dae2223" \
		"b00361a396177a9cb410ff61f20015ad"

struct fixture {
	char dir[64];
	char store[96];
	struct blob_store *bs;
	struct str *error;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	assert_non_null(tmpdir_make(f->dir, sizeof(f->dir), "blob"));
	snprintf(f->store, sizeof(f->store), "%s/store", f->dir);
	f->error = str_new(0, 4096);
	assert_int_equal(blob_store_open(f->store, &f->bs, f->error), 0);
	*state = f;
	return 0;
}

/* A store of the nested layout (DIR/ab/cd/<hash>): one shard holding a
 * shard directory, as such a store has from its first blob on. */
static int setup_nested(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char sub[160];

	assert_non_null(f);
	assert_non_null(tmpdir_make(f->dir, sizeof(f->dir), "blob"));
	snprintf(f->store, sizeof(f->store), "%s/store", f->dir);
	assert_int_equal(mkdir(f->store, 0750), 0);
	snprintf(sub, sizeof(sub), "%s/00", f->store);
	assert_int_equal(mkdir(sub, 0750), 0);
	snprintf(sub, sizeof(sub), "%s/00/00", f->store);
	assert_int_equal(mkdir(sub, 0750), 0);
	f->error = str_new(0, 4096);
	assert_int_equal(blob_store_open(f->store, &f->bs, f->error), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	blob_store_free(&f->bs);
	assert_null(f->bs);
	str_free(&f->error);
	tmpdir_remove(f->dir);
	free(f);
	return 0;
}

static void spool(struct fixture *f, const char *name, const char *text,
		  struct str *path)
{
	int fd;

	str_clear(path);
	assert_int_equal(str_printf(path, "%s/%s", blob_store_tmp_dir(f->bs),
				    name), 0);
	fd = open(str_c(path), O_WRONLY | O_CREAT | O_EXCL, 0640);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static int count_cb(const char *hex, void *ctx)
{
	(*(int *)ctx)++;
	return 0;
}

static void test_prepare_install_dedup(void **state)
{
	struct fixture *f = *state;
	struct str *path = str_new(0, 4096), *dest = str_new(0, 4096);
	char hex[BLOB_HEX_LEN + 1];
	uint64_t size;
	int installed, count = 0;
	struct stat st;

	spool(f, "one", "abc", path);
	assert_int_equal(blob_spool_check(f->bs, str_c(path), f->error), 0);
	assert_int_equal(blob_prepare(str_c(path), hex, &size, NULL, NULL,
				      f->error), 0);
	assert_string_equal(hex, ABC_HEX);
	assert_int_equal(size, 3);
	assert_false(blob_exists(f->bs, hex));
	assert_int_equal(blob_install(f->bs, str_c(path), hex, &installed,
				      f->error), 0);
	assert_int_equal(installed, 1);
	assert_int_equal(blob_sync_dirs(f->bs, f->error), 0);
	assert_true(blob_exists(f->bs, hex));
	assert_int_equal(access(str_c(path), F_OK), -1);
	assert_int_equal(blob_path(f->bs, hex, dest), 0);
	assert_non_null(strstr(str_c(dest), "/store/ba/" ABC_HEX));
	assert_int_equal(stat(str_c(dest), &st), 0);
	assert_int_equal(st.st_size, 3);

	/* the same content again: the spooled copy is dropped */
	spool(f, "two", "abc", path);
	assert_int_equal(blob_prepare(str_c(path), hex, &size, NULL, NULL,
				      f->error), 0);
	assert_int_equal(blob_install(f->bs, str_c(path), hex, &installed,
				      f->error), 0);
	assert_int_equal(installed, 0);
	assert_int_equal(access(str_c(path), F_OK), -1);
	assert_int_equal(blob_scan(f->bs, count_cb, &count, f->error), 0);
	assert_int_equal(count, 1);

	assert_int_equal(blob_remove(f->bs, hex, f->error), 0);
	assert_false(blob_exists(f->bs, hex));
	assert_int_equal(blob_remove(f->bs, hex, f->error), 0);
	str_free(&path);
	str_free(&dest);
}

static void test_spool_rules(void **state)
{
	struct fixture *f = *state;
	struct str *path = str_new(0, 4096), *other = str_new(0, 4096);
	char hex[BLOB_HEX_LEN + 1];
	uint64_t size;

	assert_int_equal(blob_spool_check(f->bs, "/etc/passwd", f->error), -1);
	str_clear(path);
	assert_int_equal(str_printf(path, "%s/../x", blob_store_tmp_dir(f->bs)),
			 0);
	assert_int_equal(blob_spool_check(f->bs, str_c(path), f->error), -1);
	str_clear(path);
	assert_int_equal(str_printf(path, "%s/.hidden",
				    blob_store_tmp_dir(f->bs)), 0);
	assert_int_equal(blob_spool_check(f->bs, str_c(path), f->error), -1);
	/* a symbolic link and a file with two links are refused */
	spool(f, "real", "data", path);
	str_clear(other);
	assert_int_equal(str_printf(other, "%s/link",
				    blob_store_tmp_dir(f->bs)), 0);
	assert_int_equal(symlink(str_c(path), str_c(other)), 0);
	assert_int_equal(blob_prepare(str_c(other), hex, &size, NULL, NULL,
				      f->error), -1);
	assert_int_equal(unlink(str_c(other)), 0);
	assert_int_equal(link(str_c(path), str_c(other)), 0);
	assert_int_equal(blob_prepare(str_c(path), hex, &size, NULL, NULL,
				      f->error), -1);
	assert_int_equal(blob_prepare("/nonexistent/x", hex, &size, NULL,
				      NULL, f->error), -1);
	str_free(&path);
	str_free(&other);
}

struct seen {
	int n;
	char last[BLOB_HEX_LEN + 1];
};

static int seen_cb(const char *hex, void *ctx)
{
	struct seen *s = ctx;

	s->n++;
	str_lcpy(s->last, hex, sizeof(s->last));
	return 0;
}

static void test_intent(void **state)
{
	struct fixture *f = *state;
	const char *list[] = { ABC_HEX,
		"00000000000000000000000000000000"
		"00000000000000000000000000000000" };
	struct seen s = { 0, "" };
	struct str *p = str_new(0, 4096);
	FILE *fp;

	assert_int_equal(blob_intent_scan(f->bs, seen_cb, &s, f->error), 0);
	assert_int_equal(s.n, 0);
	assert_int_equal(blob_intent_write(f->bs, list, 2, f->error), 0);
	assert_int_equal(blob_intent_scan(f->bs, seen_cb, &s, f->error), 0);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.last, list[1]);
	/* a torn last line is ignored */
	assert_int_equal(str_printf(p, "%s/intent", blob_store_dir(f->bs)), 0);
	fp = fopen(str_c(p), "a");
	assert_non_null(fp);
	fputs("abcdef", fp);
	fclose(fp);
	s.n = 0;
	assert_int_equal(blob_intent_scan(f->bs, seen_cb, &s, f->error), 0);
	assert_int_equal(s.n, 2);
	/* rewritten in place: a shorter list leaves nothing stale listed */
	assert_int_equal(blob_intent_write(f->bs, list, 1, f->error), 0);
	s.n = 0;
	assert_int_equal(blob_intent_scan(f->bs, seen_cb, &s, f->error), 0);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.last, ABC_HEX);
	assert_int_equal(blob_intent_write(f->bs, list, 0, f->error), 0);
	s.n = 0;
	assert_int_equal(blob_intent_scan(f->bs, seen_cb, &s, f->error), 0);
	assert_int_equal(s.n, 0);
	/* and the store reopened sees the same */
	blob_store_free(&f->bs);
	assert_int_equal(blob_store_open(f->store, &f->bs, f->error), 0);
	assert_int_equal(blob_intent_scan(f->bs, seen_cb, &s, f->error), 0);
	assert_int_equal(s.n, 0);
	assert_int_equal(blob_intent_write(f->bs, list + 1, 1, f->error), 0);
	assert_int_equal(blob_intent_scan(f->bs, seen_cb, &s, f->error), 0);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.last, list[1]);
	str_free(&p);
}

/* blob_runner that runs the tasks backwards, as another order would. */
static void run_backwards(size_t n, blob_task_cb *fn, void *arg,
			  void *ctx)
{
	size_t *calls = ctx;

	for (size_t i = n; i-- > 0;) {
		fn(i, arg);
		(*calls)++;
	}
}

/* A new store is flat: its 256 shards exist from the open on, and the
 * directories need no preparing. */
static void test_flat_shards_made_at_open(void **state)
{
	struct fixture *f = *state;
	struct str *dir = str_new(0, 4096);
	struct stat st;

	for (unsigned i = 0; i < 256; i++) {
		str_clear(dir);
		assert_int_equal(str_printf(dir, "%s/%02x", f->store, i), 0);
		assert_int_equal(stat(str_c(dir), &st), 0);
		assert_true(S_ISDIR(st.st_mode));
	}
	assert_int_equal(blob_prepare_dirs(f->bs, "xyz", f->error), -1);
	assert_int_equal(blob_prepare_dirs(f->bs, ABC_HEX, f->error), 0);
	str_clear(dir);
	assert_int_equal(str_printf(dir, "%s/ba/78", f->store), 0);
	assert_int_equal(stat(str_c(dir), &st), -1);
	/* reopened, it is still flat */
	blob_store_free(&f->bs);
	assert_int_equal(blob_store_open(f->store, &f->bs, f->error), 0);
	str_clear(dir);
	assert_int_equal(blob_path(f->bs, ABC_HEX, dir), 0);
	assert_non_null(strstr(str_c(dir), "/store/ba/" ABC_HEX));
	str_free(&dir);
}

/* In a store of the nested layout the shards are made per blob. */
static void test_prepare_dirs_and_parallel_sync(void **state)
{
	struct fixture *f = *state;
	struct str *path = str_new(0, 4096), *dir = str_new(0, 4096);
	char hex[BLOB_HEX_LEN + 1];
	uint64_t size;
	size_t calls = 0;
	int installed, count;
	struct stat st;

	spool(f, "one", "abc", path);
	assert_int_equal(blob_prepare(str_c(path), hex, &size, NULL, NULL,
				      f->error), 0);
	assert_int_equal(blob_prepare_dirs(f->bs, "xyz", f->error), -1);
	assert_int_equal(blob_prepare_dirs(f->bs, hex, f->error), 0);
	assert_int_equal(str_printf(dir, "%s/ba/78", f->store), 0);
	assert_int_equal(stat(str_c(dir), &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	/* again: nothing to do */
	assert_int_equal(blob_prepare_dirs(f->bs, hex, f->error), 0);
	assert_int_equal(blob_install(f->bs, str_c(path), hex, &installed,
				      f->error), 0);
	assert_int_equal(installed, 1);
	assert_int_equal(blob_sync_dirs_with(f->bs, run_backwards, &calls,
					     f->error), 0);
	assert_true(blob_exists(f->bs, hex));
	str_clear(dir);
	assert_int_equal(str_printf(dir, "%s/ba/78/" ABC_HEX, f->store), 0);
	assert_int_equal(stat(str_c(dir), &st), 0);
	count = 0;
	assert_int_equal(blob_scan(f->bs, count_cb, &count, f->error), 0);
	assert_int_equal(count, 1);
	/* reopened, the layout is kept */
	blob_store_free(&f->bs);
	assert_int_equal(blob_store_open(f->store, &f->bs, f->error), 0);
	assert_true(blob_exists(f->bs, hex));
	str_clear(dir);
	assert_int_equal(str_printf(dir, "%s/ab", f->store), 0);
	assert_int_equal(stat(str_c(dir), &st), -1);
	/* nothing left to sync */
	calls = 0;
	assert_int_equal(blob_sync_dirs_with(f->bs, run_backwards, &calls,
					     f->error), 0);
	assert_int_equal(calls, 0);
	str_free(&path);
	str_free(&dir);
}

static void test_hex_valid(void **state)
{
	assert_true(blob_hex_valid(ABC_HEX));
	assert_false(blob_hex_valid("ABC"));
	assert_false(blob_hex_valid(
		"BA7816BF8F01CFEA414140DE5DAE2223"
		"B00361A396177A9CB410FF61F20015AD"));
	assert_false(blob_hex_valid(ABC_HEX "0"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_prepare_install_dedup,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_spool_rules, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_intent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flat_shards_made_at_open,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_prepare_dirs_and_parallel_sync, setup_nested,
			teardown),
		cmocka_unit_test(test_hex_valid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
