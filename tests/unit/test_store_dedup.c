/* test_store_dedup.c: tern-stored's deliver request with a delivery key
 * (stored/ops.c on stored/meta_sqlite.c): a repeated key is answered as
 * delivered with the UID of the first delivery and stores no second copy,
 * in the same transaction as the message; keys are per mailbox; a bad key
 * is refused; a failed recipient leaves no key behind. */
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
#include <cmocka.h>

#include "compat.h"
#include "ipc.h"
#include "meta.h"
#include "stored.h"
#include "str.h"
#include "tmpdir.h"

#define BLOB_A "aa000000000000000000000000000000" \
	       "00000000000000000000000000000000"
#define BLOB_B "bb000000000000000000000000000000" \
	       "00000000000000000000000000000000"

struct fixture {
	char dir[64];
	char db[96];
	struct store_ctx ctx;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	assert_non_null(tmpdir_make(f->dir, sizeof(f->dir), "dedup"));
	snprintf(f->db, sizeof(f->db), "%s/meta.db", f->dir);
	f->ctx.error = str_new(0, 4096);
	f->ctx.fetch_max = 100;
	assert_int_equal(meta_open(f->db, &f->ctx.meta, f->ctx.error),
			 META_OK);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	meta_close(&f->ctx.meta);
	str_free(&f->ctx.error);
	tmpdir_remove(f->dir);
	free(f);
	return 0;
}

struct rcpt {
	int64_t account;
	const char *address, *folder;
	int64_t quota;
};

/* A deliver request as tern-lmtpd sends it; key NULL for none. */
static struct store_op *deliver_op(const char *key, const char *blob,
				   const struct rcpt *r, size_t n)
{
	struct store_op *op = calloc(1, sizeof(*op));
	const char *error;

	assert_non_null(op);
	op->def = ops_find("deliver");
	assert_non_null(op->def);
	op->req = ipc_msg_new("deliver");
	ipc_msg_set_id(op->req, 9);
	ipc_msg_add_cstr(op->req, "file", "/nonexistent/spool");
	if (key != NULL)
		ipc_msg_add_cstr(op->req, "key", key);
	for (size_t i = 0; i < n; i++) {
		ipc_msg_add_int(op->req, "rcpt_account", r[i].account);
		ipc_msg_add_cstr(op->req, "rcpt_address", r[i].address);
		ipc_msg_add_cstr(op->req, "rcpt_folder", r[i].folder);
		ipc_msg_add_int(op->req, "rcpt_flags", 0);
		ipc_msg_add_int(op->req, "rcpt_quota", r[i].quota);
	}
	assert_int_equal(ipc_msg_check(op->req, ops_schema(op->def), &error),
			 0);
	op->received = 1700000000;
	str_lcpy(op->hex, blob, sizeof(op->hex));
	op->size = 100;
	op->ready = 1;
	return op;
}

/* Runs one op in its own committed transaction, as the writer does. */
static void run(struct fixture *f, struct store_op *op)
{
	struct meta *m = f->ctx.meta;

	assert_int_equal(meta_begin(m, f->ctx.error), META_OK);
	assert_int_equal(meta_blob_register(m, op->hex, op->size,
					    f->ctx.error), META_OK);
	ops_exec(&f->ctx, op);
	assert_int_equal(meta_commit(m, f->ctx.error), META_OK);
}

static const struct ipc_msg *final(const struct store_op *op)
{
	assert_true(op->nreplies > 0);
	return op->replies[op->nreplies - 1];
}

static const char *status_nth(const struct store_op *op, unsigned i)
{
	const char *v = NULL;

	assert_int_equal(ipc_msg_get_cstr_nth(final(op), "status", i, &v), 0);
	return v;
}

static int64_t uid_nth(const struct store_op *op, unsigned i)
{
	int64_t v = -1;

	assert_int_equal(ipc_msg_get_int_nth(final(op), "uid", i, &v), 0);
	return v;
}

static uint32_t exists(struct fixture *f, int64_t account,
		       const char *folder)
{
	struct meta_status_info st;

	assert_int_equal(meta_folder_status(f->ctx.meta, account, folder,
					    true, &st, f->ctx.error),
			 META_OK);
	return st.exists;
}

static int64_t refs(struct fixture *f, const char *blob)
{
	int64_t n = -1;

	assert_int_equal(meta_blob_refs(f->ctx.meta, blob, &n, f->ctx.error),
			 META_OK);
	return n;
}

static const struct rcpt ann = { 1, "ann@example.com", "", -1 };
static const struct rcpt bob = { 2, "bob@example.com", "", -1 };

static void test_repeat_is_delivered_once(void **state)
{
	struct fixture *f = *state;
	struct rcpt both[2] = { ann, bob };
	struct store_op *op = deliver_op("mx.example.org/QID1", BLOB_A, both,
					 2);

	run(f, op);
	assert_string_equal(ipc_msg_type(final(op)), "ok");
	assert_string_equal(status_nth(op, 0), "ok");
	assert_string_equal(status_nth(op, 1), "ok");
	assert_int_equal(uid_nth(op, 0), 1);
	assert_int_equal(op->events.n, 2);
	op_free(&op);
	/* the same delivery again, with another spool file (a new blob, as
	 * tern-lmtpd writes its own Received: line each time) */
	op = deliver_op("mx.example.org/QID1", BLOB_B, both, 2);
	run(f, op);
	assert_string_equal(ipc_msg_type(final(op)), "ok");
	assert_string_equal(status_nth(op, 0), "ok");
	assert_string_equal(status_nth(op, 1), "ok");
	assert_int_equal(uid_nth(op, 0), 1);	/* the first delivery's */
	assert_int_equal(uid_nth(op, 1), 1);
	assert_int_equal(op->events.n, 0);	/* nothing new to announce */
	op_free(&op);
	assert_int_equal(exists(f, 1, "INBOX"), 1);
	assert_int_equal(exists(f, 2, "INBOX"), 1);
	assert_int_equal(refs(f, BLOB_A), 2);
	assert_int_equal(refs(f, BLOB_B), 0);	/* reclaimed later */
	/* another queue id is another message */
	op = deliver_op("mx.example.org/QID2", BLOB_B, both, 1);
	run(f, op);
	assert_int_equal(uid_nth(op, 0), 2);
	op_free(&op);
	assert_int_equal(exists(f, 1, "INBOX"), 2);
	/* without a key nothing is remembered or recognised */
	op = deliver_op(NULL, BLOB_B, both, 1);
	run(f, op);
	assert_int_equal(uid_nth(op, 0), 3);
	op_free(&op);
	op = deliver_op(NULL, BLOB_B, both, 1);
	run(f, op);
	assert_int_equal(uid_nth(op, 0), 4);
	op_free(&op);
}

static void test_key_per_mailbox(void **state)
{
	struct fixture *f = *state;
	struct rcpt ann_junk = { 1, "ann@example.com", "Junk", -1 };
	struct rcpt first[1] = { ann };
	struct rcpt second[3] = { ann, bob, ann_junk };
	struct store_op *op = deliver_op("h/Q", BLOB_A, first, 1);

	run(f, op);
	op_free(&op);
	/* a later attempt for more mailboxes: only the new ones get it */
	op = deliver_op("h/Q", BLOB_B, second, 3);
	run(f, op);
	assert_string_equal(status_nth(op, 0), "ok");
	assert_string_equal(status_nth(op, 1), "ok");
	assert_string_equal(status_nth(op, 2), "ok");
	assert_int_equal(op->events.n, 2);
	op_free(&op);
	assert_int_equal(exists(f, 1, "INBOX"), 1);
	assert_int_equal(exists(f, 2, "INBOX"), 1);
	assert_int_equal(exists(f, 1, "Junk"), 1);
}

static void test_failed_rcpt_keeps_no_key(void **state)
{
	struct fixture *f = *state;
	struct rcpt full = { 1, "ann@example.com", "", 50 };	/* < 100 */
	struct rcpt nofolder = { 2, "bob@example.com", "Nowhere", -1 };
	struct rcpt r[2] = { full, nofolder };
	struct rcpt roomy[2] = { ann, bob };
	struct store_op *op = deliver_op("h/Q9", BLOB_A, r, 2);

	run(f, op);
	assert_string_equal(status_nth(op, 0), "overquota");
	assert_string_equal(status_nth(op, 1), "nofolder");
	op_free(&op);
	/* the retry after the quota was raised is delivered */
	roomy[0].quota = 0;
	op = deliver_op("h/Q9", BLOB_A, roomy, 2);
	run(f, op);
	assert_string_equal(status_nth(op, 0), "ok");
	assert_string_equal(status_nth(op, 1), "ok");
	assert_int_equal(op->events.n, 2);
	op_free(&op);
	assert_int_equal(exists(f, 1, "INBOX"), 1);
}

static void test_bad_key(void **state)
{
	struct fixture *f = *state;
	struct rcpt one[1] = { ann };
	struct store_op *op = deliver_op("", BLOB_A, one, 1);
	struct str *big = str_new(0, 2048);
	const char *code = NULL, *error;

	run(f, op);
	assert_string_equal(ipc_msg_type(final(op)), "error");
	assert_int_equal(ipc_msg_get_cstr(final(op), "code", &code), 0);
	assert_string_equal(code, "invalid");
	op_free(&op);
	/* a key over META_DELIVERY_KEY_MAX fails the schema */
	for (int i = 0; i <= META_DELIVERY_KEY_MAX; i++)
		assert_int_equal(str_append_byte(big, 'k'), 0);
	op = deliver_op(NULL, BLOB_A, one, 1);
	ipc_msg_add_cstr(op->req, "key", str_c(big));
	assert_int_equal(ipc_msg_check(op->req, ops_schema(op->def), &error),
			 -1);
	assert_non_null(strstr(error, "key"));
	op_free(&op);
	/* two keys too */
	op = deliver_op("a", BLOB_A, one, 1);
	ipc_msg_add_cstr(op->req, "key", "b");
	assert_int_equal(ipc_msg_check(op->req, ops_schema(op->def), &error),
			 -1);
	op_free(&op);
	str_free(&big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_repeat_is_delivered_once,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_per_mailbox, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_failed_rcpt_keeps_no_key,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_key, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
