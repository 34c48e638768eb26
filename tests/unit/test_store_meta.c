/* test_store_meta.c: tern-stored's metadata (stored/meta.h, SQLite). */
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
#include <sqlite3.h>

#include "compat.h"
#include "meta.h"
#include "str.h"
#include "tmpdir.h"

#define BLOB_A "aa000000000000000000000000000000" \
	       "00000000000000000000000000000000"
#define BLOB_B "bb000000000000000000000000000000" \
	       "00000000000000000000000000000000"

struct fixture {
	char dir[64];
	char db[96];
	struct meta *m;
	struct str *error;
};

static const struct meta_account alice = { 1, "alice@example.com" };
static const struct meta_account bob = { 2, "bob@example.com" };

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	assert_non_null(tmpdir_make(f->dir, sizeof(f->dir), "meta"));
	snprintf(f->db, sizeof(f->db), "%s/meta.db", f->dir);
	f->error = str_new(0, 4096);
	assert_int_equal(meta_open(f->db, &f->m, f->error), META_OK);
	assert_int_equal(meta_begin(f->m, f->error), META_OK);
	assert_int_equal(meta_account_use(f->m, &alice, f->error), META_OK);
	assert_int_equal(meta_account_use(f->m, &bob, f->error), META_OK);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	meta_rollback(f->m);
	meta_close(&f->m);
	assert_null(f->m);
	str_free(&f->error);
	tmpdir_remove(f->dir);
	free(f);
	return 0;
}

static uint32_t add(struct fixture *f, const struct meta_account *a,
		    const char *folder, const char *blob, uint64_t size,
		    unsigned flags)
{
	struct meta_new_message nm = { blob, size, flags, "", 1700000000,
				       NULL, NULL };
	uint32_t uid, uidv;
	uint64_t modseq;

	assert_int_equal(meta_message_add(f->m, a->id, folder, &nm, &uid,
					  &uidv, &modseq, f->error),
			 META_OK);
	return uid;
}

static int64_t refs(struct fixture *f, const char *blob)
{
	int64_t n = -1;
	int r = meta_blob_refs(f->m, blob, &n, f->error);

	return r == META_ENOTFOUND ? -1 : n;
}

struct folders {
	int n;
	char names[16][64];
	char special[16][16];
	uint32_t uidv[16];
};

static int folder_cb(const struct meta_folder *mf, void *ctx)
{
	struct folders *fs = ctx;

	if (fs->n == 16)
		return -1;
	str_lcpy(fs->names[fs->n], mf->name, 64);
	str_lcpy(fs->special[fs->n], mf->special_use, 16);
	fs->uidv[fs->n] = mf->uidvalidity;
	fs->n++;
	return 0;
}

static const char *special_of(struct folders *fs, const char *name)
{
	for (int i = 0; i < fs->n; i++)
		if (strcmp(fs->names[i], name) == 0)
			return fs->special[i];
	return NULL;
}

static void test_default_folders(void **state)
{
	struct fixture *f = *state;
	struct folders fs = { 0 };

	assert_int_equal(meta_folder_list(f->m, alice.id, folder_cb, &fs,
					  f->error), META_OK);
	assert_int_equal(fs.n, 6);
	assert_string_equal(special_of(&fs, "INBOX"), "");
	assert_string_equal(special_of(&fs, "Sent"), "\\Sent");
	assert_string_equal(special_of(&fs, "Drafts"), "\\Drafts");
	assert_string_equal(special_of(&fs, "Trash"), "\\Trash");
	assert_string_equal(special_of(&fs, "Junk"), "\\Junk");
	assert_string_equal(special_of(&fs, "Archive"), "\\Archive");
	for (int i = 1; i < fs.n; i++)
		assert_true(fs.uidv[i] != fs.uidv[0]);
	/* a second use changes nothing; a new address is recorded */
	struct meta_account renamed = { 1, "alice@example.net" };
	assert_int_equal(meta_account_use(f->m, &renamed, f->error), META_OK);
	fs.n = 0;
	assert_int_equal(meta_folder_list(f->m, alice.id, folder_cb, &fs,
					  f->error), META_OK);
	assert_int_equal(fs.n, 6);
}

static void test_folders(void **state)
{
	struct fixture *f = *state;
	struct meta_status_info st;
	struct folders fs = { 0 };

	assert_int_equal(meta_folder_create(f->m, alice.id, "Work", "",
					    f->error), META_OK);
	assert_int_equal(meta_folder_create(f->m, alice.id, "Work/2024", "",
					    f->error), META_OK);
	assert_int_equal(meta_folder_create(f->m, alice.id, "Work", "",
					    f->error), META_EEXISTS);
	assert_int_equal(meta_folder_create(f->m, alice.id, "X", "\\Bogus",
					    f->error), META_EINVALID);
	add(f, &alice, "Work/2024", BLOB_A, 10, 0);
	assert_int_equal(meta_folder_rename(f->m, alice.id, "Work", "Job",
					    f->error), META_OK);
	assert_int_equal(meta_folder_status(f->m, alice.id, "Job/2024", true,
					    &st, f->error), META_OK);
	assert_int_equal(st.exists, 1);
	assert_int_equal(meta_folder_status(f->m, alice.id, "Work", true, &st,
					    f->error), META_ENOTFOUND);
	assert_int_equal(meta_folder_rename(f->m, alice.id, "INBOX", "Old",
					    f->error), META_EINVALID);
	assert_int_equal(meta_folder_rename(f->m, alice.id, "Job", "Job/x",
					    f->error), META_EINVALID);
	assert_int_equal(meta_folder_rename(f->m, alice.id, "Job", "Sent",
					    f->error), META_EEXISTS);
	assert_int_equal(meta_folder_delete(f->m, alice.id, "Job", f->error),
			 META_ENOTEMPTY);
	assert_int_equal(meta_folder_delete(f->m, alice.id, "Job/2024",
					    f->error), META_OK);
	assert_int_equal(refs(f, BLOB_A), 0);
	assert_int_equal(meta_folder_delete(f->m, alice.id, "Job", f->error),
			 META_OK);
	assert_int_equal(meta_folder_delete(f->m, alice.id, "INBOX", f->error),
			 META_EINVALID);
	assert_int_equal(meta_folder_subscribe(f->m, alice.id, "Nope", 1,
					       f->error), META_ENOTFOUND);
	/* bob's folders are his own */
	assert_int_equal(meta_folder_list(f->m, bob.id, folder_cb, &fs,
					  f->error), META_OK);
	assert_int_equal(fs.n, 6);
}

static void test_uids_and_modseq(void **state)
{
	struct fixture *f = *state;
	struct meta_status_info st;
	uint64_t before;

	assert_int_equal(meta_folder_status(f->m, alice.id, "INBOX", true, &st,
					    f->error), META_OK);
	assert_int_equal(st.uidnext, 1);
	assert_true(st.highestmodseq >= 1);
	before = st.highestmodseq;
	assert_int_equal(add(f, &alice, "INBOX", BLOB_A, 100, 0), 1);
	assert_int_equal(add(f, &alice, "INBOX", BLOB_B, 50, META_SEEN), 2);
	assert_int_equal(add(f, &alice, "INBOX", BLOB_A, 100, 0), 3);
	assert_int_equal(add(f, &alice, "Sent", BLOB_A, 100, 0), 1);
	assert_int_equal(meta_folder_status(f->m, alice.id, "INBOX", true, &st,
					    f->error), META_OK);
	assert_int_equal(st.exists, 3);
	assert_int_equal(st.unseen, 2);
	assert_int_equal(st.uidnext, 4);
	assert_int_equal(st.size, 250);
	assert_int_equal(st.highestmodseq, before + 3);
	/* Without the counts: the folder's row only. */
	assert_int_equal(meta_folder_status(f->m, alice.id, "INBOX", false,
					    &st, f->error), META_OK);
	assert_int_equal(st.exists, 0);
	assert_int_equal(st.size, 0);
	assert_int_equal(st.uidnext, 4);
	assert_int_equal(st.highestmodseq, before + 3);
	assert_int_equal(refs(f, BLOB_A), 3);
	assert_int_equal(refs(f, BLOB_B), 1);
	assert_int_equal(meta_message_add(f->m, alice.id, "Nope",
		&(struct meta_new_message){ BLOB_A, 1, 0, "", 0, NULL, NULL },
		&(uint32_t){ 0 }, &(uint32_t){ 0 }, &(uint64_t){ 0 },
		f->error), META_ENOTFOUND);
}

struct changes {
	int n;
	uint32_t uid[16];
	uint64_t modseq[16];
	unsigned flags[16];
	char keywords[16][128];
	int nfailed;
	uint32_t failed[16];
};

static int changed_cb(const struct meta_message *msg, void *ctx)
{
	struct changes *c = ctx;

	c->uid[c->n] = msg->uid;
	c->modseq[c->n] = msg->modseq;
	c->flags[c->n] = msg->flags;
	str_lcpy(c->keywords[c->n], msg->keywords, 128);
	c->n++;
	return 0;
}

static int failed_cb(uint32_t uid, void *ctx)
{
	struct changes *c = ctx;

	c->failed[c->nfailed++] = uid;
	return 0;
}

static void test_flags(void **state)
{
	struct fixture *f = *state;
	struct meta_uidset set;
	struct changes c = { 0 };
	uint64_t hms, hms2;

	for (int i = 0; i < 3; i++)
		add(f, &alice, "INBOX", BLOB_A, 10, 0);
	assert_int_equal(meta_uidset_parse("1:2", &set), 0);
	assert_int_equal(meta_store_flags(f->m, alice.id, "INBOX", &set,
					  META_STORE_ADD,
					  META_SEEN | META_FLAGGED,
					  "$Work Urgent", 0, changed_cb,
					  failed_cb, &c, &hms, f->error),
			 META_OK);
	assert_int_equal(c.n, 2);
	assert_int_equal(c.flags[0], META_SEEN | META_FLAGGED);
	assert_string_equal(c.keywords[1], "$Work Urgent");
	assert_int_equal(c.modseq[0], hms);
	assert_int_equal(c.modseq[1], hms);
	/* the same again changes nothing: no new MODSEQ */
	c.n = 0;
	assert_int_equal(meta_store_flags(f->m, alice.id, "INBOX", &set,
					  META_STORE_ADD, META_SEEN, "", 0,
					  changed_cb, failed_cb, &c, &hms2,
					  f->error), META_OK);
	assert_int_equal(c.n, 0);
	assert_int_equal(hms2, hms);
	/* remove a keyword and a flag */
	assert_int_equal(meta_uidset_parse("2", &set), 0);
	assert_int_equal(meta_store_flags(f->m, alice.id, "INBOX", &set,
					  META_STORE_REMOVE, META_FLAGGED,
					  "Urgent", 0, changed_cb, failed_cb,
					  &c, &hms2, f->error), META_OK);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.flags[0], META_SEEN);
	assert_string_equal(c.keywords[0], "$Work");
	assert_true(hms2 > hms);
	/* UNCHANGEDSINCE: 1 and 2 changed after hms - 1, 3 did not */
	c.n = 0;
	assert_int_equal(meta_uidset_parse("1:*", &set), 0);
	assert_int_equal(meta_store_flags(f->m, alice.id, "INBOX", &set,
					  META_STORE_REPLACE, META_ANSWERED,
					  "", hms - 1, changed_cb, failed_cb,
					  &c, &hms, f->error), META_OK);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.uid[0], 3);
	assert_int_equal(c.flags[0], META_ANSWERED);
	assert_int_equal(c.nfailed, 2);
	assert_int_equal(c.failed[0], 1);
	assert_int_equal(c.failed[1], 2);
	/* a bad keyword fails the call */
	assert_int_equal(meta_store_flags(f->m, alice.id, "INBOX", &set,
					  META_STORE_ADD, 0, "\\Seen", 0,
					  NULL, NULL, NULL, &hms, f->error),
			 META_EINVALID);
}

static int uid_cb(uint32_t uid, void *ctx)
{
	struct changes *c = ctx;

	c->uid[c->n++] = uid;
	return 0;
}

static int count_blob(const char *hex, int64_t n, void *ctx)
{
	assert_string_equal(hex, BLOB_B);
	assert_int_equal(n, 0);
	(*(int *)ctx)++;
	return 0;
}

static void test_expunge_quota_refcounts(void **state)
{
	struct fixture *f = *state;
	struct meta_uidset set;
	struct changes c = { 0 };
	struct meta_quota q;
	uint64_t hms, hms1;
	int n = 0;

	add(f, &alice, "INBOX", BLOB_A, 100, META_DELETED);	/* 1 */
	add(f, &alice, "INBOX", BLOB_B, 30, 0);			/* 2 */
	add(f, &alice, "INBOX", BLOB_A, 100, META_DELETED);	/* 3 */
	add(f, &bob, "INBOX", BLOB_A, 100, 0);
	assert_int_equal(meta_quota_get(f->m, alice.id, &q, f->error), 0);
	assert_int_equal(q.used, 230);
	assert_int_equal(q.messages, 3);
	assert_int_equal(q.limit, 0);
	assert_int_equal(refs(f, BLOB_A), 3);
	/* UID EXPUNGE 2:3: only 3 is \Deleted */
	assert_int_equal(meta_uidset_parse("2:3", &set), 0);
	assert_int_equal(meta_expunge(f->m, alice.id, "INBOX", &set, uid_cb,
				      &c, &hms1, f->error), META_OK);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.uid[0], 3);
	assert_int_equal(meta_expunge(f->m, alice.id, "INBOX", NULL, uid_cb,
				      &c, &hms, f->error), META_OK);
	assert_int_equal(c.n, 2);
	assert_int_equal(c.uid[1], 1);
	assert_true(hms > hms1);
	assert_int_equal(meta_quota_get(f->m, alice.id, &q, f->error), 0);
	assert_int_equal(q.used, 30);
	assert_int_equal(q.messages, 1);
	assert_int_equal(refs(f, BLOB_A), 1);	/* bob's copy */
	/* vanished since the first expunge names only 1 */
	c.n = 0;
	assert_int_equal(meta_vanished(f->m, alice.id, "INBOX", hms1, uid_cb,
				       &c, f->error), META_OK);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.uid[0], 1);
	/* new UIDs never reuse expunged ones */
	assert_int_equal(add(f, &alice, "INBOX", BLOB_B, 30, 0), 4);
	/* quota limit */
	assert_int_equal(meta_quota_set(f->m, alice.id, 100, f->error), 0);
	assert_int_equal(meta_message_add(f->m, alice.id, "INBOX",
		&(struct meta_new_message){ BLOB_A, 41, 0, "", 0, NULL, NULL },
		&(uint32_t){ 0 }, &(uint32_t){ 0 }, &(uint64_t){ 0 },
		f->error), META_EOVERQUOTA);
	add(f, &alice, "INBOX", BLOB_A, 40, 0);
	assert_int_equal(meta_quota_get(f->m, alice.id, &q, f->error), 0);
	assert_int_equal(q.used, 100);
	assert_int_equal(q.limit, 100);
	/* last references go: the blob shows as unreferenced */
	assert_int_equal(meta_uidset_parse("1:*", &set), 0);
	assert_int_equal(meta_store_flags(f->m, alice.id, "INBOX", &set,
					  META_STORE_ADD, META_DELETED, "", 0,
					  NULL, NULL, NULL, &hms, f->error), 0);
	assert_int_equal(meta_expunge(f->m, alice.id, "INBOX", NULL, NULL,
				      NULL, &hms, f->error), 0);
	assert_int_equal(refs(f, BLOB_B), 0);
	assert_int_equal(meta_blobs_unreferenced(f->m, count_blob, &n,
					 f->error), 0);
	assert_int_equal(n, 1);
	assert_int_equal(meta_blobs_forget_unreferenced(f->m, f->error), 0);
	assert_int_equal(refs(f, BLOB_B), -1);
	assert_int_equal(refs(f, BLOB_A), 1);
	assert_int_equal(meta_quota_get(f->m, alice.id, &q, f->error), 0);
	assert_int_equal(q.used, 0);
	assert_int_equal(q.messages, 0);
}

struct pairs {
	int n;
	uint32_t uid[16], new_uid[16];
};

static int pair_cb(uint32_t uid, uint32_t new_uid, void *ctx)
{
	struct pairs *p = ctx;

	if (p->n == 16)
		return -1;
	p->uid[p->n] = uid;
	p->new_uid[p->n] = new_uid;
	p->n++;
	return 0;
}

struct fetched {
	int n;
	uint32_t uid[16];
	unsigned flags[16];
	char keywords[16][64];
	char blob[16][65];
	int64_t date[16];
	int has_envelope[16];
};

static int fetched_cb(const struct meta_message *msg, void *ctx)
{
	struct fetched *fe = ctx;

	if (fe->n == 16)
		return -1;
	fe->uid[fe->n] = msg->uid;
	fe->flags[fe->n] = msg->flags;
	str_lcpy(fe->keywords[fe->n], msg->keywords, 64);
	str_lcpy(fe->blob[fe->n], msg->blob, 65);
	fe->date[fe->n] = msg->internal_date;
	fe->has_envelope[fe->n] = msg->envelope != NULL;
	fe->n++;
	return 0;
}

static void fetch_folder(struct fixture *f, const char *folder,
			 struct fetched *fe)
{
	uint32_t next;

	memset(fe, 0, sizeof(*fe));
	assert_int_equal(meta_fetch(f->m, alice.id, folder, 1, UINT32_MAX, 16,
				    fetched_cb, fe, &next, f->error), META_OK);
}

static void test_copy(void **state)
{
	struct fixture *f = *state;
	struct meta_new_message nm = { BLOB_B, 50, META_SEEN, "$Work",
				       1600000000, "(\"env\")", NULL };
	struct meta_status_info before, after;
	struct meta_copy_result res;
	struct meta_uidset set;
	struct pairs p = { 0 };
	struct fetched fe;
	struct meta_quota q;
	uint32_t uid, uidv;
	uint64_t modseq;

	add(f, &alice, "INBOX", BLOB_A, 100, 0);		/* 1 */
	assert_int_equal(meta_message_add(f->m, alice.id, "INBOX", &nm, &uid,
					  &uidv, &modseq, f->error), META_OK);
	add(f, &alice, "INBOX", BLOB_A, 100, META_FLAGGED);	/* 3 */
	add(f, &alice, "Archive", BLOB_A, 100, 0);	/* Archive 1 */
	assert_int_equal(meta_folder_status(f->m, alice.id, "Archive",
					    true, &before, f->error), META_OK);
	/* overlapping ranges name each message once; 4 does not exist */
	assert_int_equal(meta_uidset_parse("2:3,3,1:2,4", &set), 0);
	assert_int_equal(meta_copy(f->m, alice.id, "INBOX", "Archive", &set, 0,
				   pair_cb, &p, &res, f->error), META_OK);
	assert_int_equal(res.count, 3);
	assert_int_equal(p.n, 3);
	assert_int_equal(p.uid[0], 1);
	assert_int_equal(p.uid[2], 3);
	assert_int_equal(p.new_uid[0], 2);
	assert_int_equal(p.new_uid[2], 4);
	assert_int_equal(res.uidvalidity, before.uidvalidity);
	assert_int_equal(res.highestmodseq, before.highestmodseq + 1);
	assert_int_equal(meta_folder_status(f->m, alice.id, "Archive", true,
					    &after, f->error), META_OK);
	assert_int_equal(after.uidnext, 5);
	assert_int_equal(after.exists, 4);
	assert_int_equal(after.highestmodseq, res.highestmodseq);
	/* the copies keep flags, keywords, date, blob and cached parts */
	fetch_folder(f, "Archive", &fe);
	assert_int_equal(fe.n, 4);
	assert_int_equal(fe.flags[2], META_SEEN);
	assert_string_equal(fe.keywords[2], "$Work");
	assert_int_equal(fe.date[2], 1600000000);
	assert_string_equal(fe.blob[2], BLOB_B);
	assert_true(fe.has_envelope[2]);
	assert_int_equal(fe.flags[3], META_FLAGGED);
	/* references and usage grew; the source is unchanged */
	assert_int_equal(refs(f, BLOB_A), 5);
	assert_int_equal(refs(f, BLOB_B), 2);
	assert_int_equal(meta_quota_get(f->m, alice.id, &q, f->error), 0);
	assert_int_equal(q.used, 600);
	assert_int_equal(q.messages, 7);
	fetch_folder(f, "INBOX", &fe);
	assert_int_equal(fe.n, 3);
	/* all or nothing over quota; unknown folders */
	assert_int_equal(meta_quota_set(f->m, alice.id, 700, f->error), 0);
	assert_int_equal(meta_uidset_parse("1:*", &set), 0);
	assert_int_equal(meta_copy(f->m, alice.id, "INBOX", "Trash", &set, 0,
				   NULL, NULL, &res, f->error),
			 META_EOVERQUOTA);
	assert_int_equal(meta_copy(f->m, alice.id, "INBOX", "Nope", &set, 0,
				   NULL, NULL, &res, f->error),
			 META_ENOTARGET);
	assert_int_equal(meta_copy(f->m, alice.id, "Nope", "INBOX", &set, 0,
				   NULL, NULL, &res, f->error),
			 META_ENOTFOUND);
	/* a set matching nothing changes nothing */
	assert_int_equal(meta_uidset_parse("100:200", &set), 0);
	assert_int_equal(meta_copy(f->m, alice.id, "INBOX", "Trash", &set, 0,
				   NULL, NULL, &res, f->error), META_OK);
	assert_int_equal(res.count, 0);
	/* another account's folder is out of reach */
	assert_int_equal(meta_uidset_parse("1", &set), 0);
	assert_int_equal(meta_copy(f->m, bob.id, "INBOX", "Archive", &set, 0,
				   NULL, NULL, &res, f->error), META_OK);
	assert_int_equal(res.count, 0);
}

static void test_move(void **state)
{
	struct fixture *f = *state;
	struct meta_status_info src, dst;
	struct meta_copy_result res;
	struct meta_uidset set;
	struct changes c = { 0 };
	struct pairs p = { 0 };
	struct fetched fe;
	struct meta_quota q;
	uint64_t hms;

	add(f, &alice, "INBOX", BLOB_A, 100, 0);		/* 1 */
	add(f, &alice, "INBOX", BLOB_B, 30, META_SEEN);	/* 2 */
	add(f, &alice, "INBOX", BLOB_A, 100, 0);		/* 3 */
	assert_int_equal(meta_folder_status(f->m, alice.id, "INBOX", true, &src,
					    f->error), META_OK);
	assert_int_equal(meta_uidset_parse("2:3", &set), 0);
	assert_int_equal(meta_copy(f->m, alice.id, "INBOX", "INBOX", &set, 1,
				   NULL, NULL, &res, f->error),
			 META_EINVALID);
	assert_int_equal(meta_copy(f->m, alice.id, "INBOX", "Trash", &set, 1,
				   pair_cb, &p, &res, f->error), META_OK);
	assert_int_equal(res.count, 2);
	assert_int_equal(p.uid[0], 2);
	assert_int_equal(p.new_uid[0], 1);
	assert_int_equal(p.uid[1], 3);
	assert_int_equal(p.new_uid[1], 2);
	assert_int_equal(res.src_highestmodseq, src.highestmodseq + 1);
	/* the source lost them, expunged at the new MODSEQ (QRESYNC) */
	fetch_folder(f, "INBOX", &fe);
	assert_int_equal(fe.n, 1);
	assert_int_equal(fe.uid[0], 1);
	assert_int_equal(meta_vanished(f->m, alice.id, "INBOX",
				       src.highestmodseq, uid_cb, &c,
				       f->error), META_OK);
	assert_int_equal(c.n, 2);
	assert_int_equal(c.uid[0], 2);
	assert_int_equal(c.uid[1], 3);
	fetch_folder(f, "Trash", &fe);
	assert_int_equal(fe.n, 2);
	assert_int_equal(fe.flags[0], META_SEEN);
	assert_int_equal(meta_folder_status(f->m, alice.id, "Trash", true, &dst,
					    f->error), META_OK);
	assert_int_equal(dst.highestmodseq, res.highestmodseq);
	/* nothing was copied: references and usage are as before */
	assert_int_equal(refs(f, BLOB_A), 2);
	assert_int_equal(refs(f, BLOB_B), 1);
	assert_int_equal(meta_quota_get(f->m, alice.id, &q, f->error), 0);
	assert_int_equal(q.used, 230);
	assert_int_equal(q.messages, 3);
	/* a move is atomic with its request: rolled back, all is back */
	assert_int_equal(meta_savepoint(f->m, f->error), 0);
	assert_int_equal(meta_uidset_parse("1:*", &set), 0);
	assert_int_equal(meta_copy(f->m, alice.id, "Trash", "Junk", &set, 1,
				   NULL, NULL, &res, f->error), META_OK);
	meta_rollback_to(f->m);
	fetch_folder(f, "Trash", &fe);
	assert_int_equal(fe.n, 2);
	fetch_folder(f, "Junk", &fe);
	assert_int_equal(fe.n, 0);
	/* the moved messages can be expunged from their new folder */
	assert_int_equal(meta_store_flags(f->m, alice.id, "Trash", &set,
					  META_STORE_ADD, META_DELETED, "", 0,
					  NULL, NULL, NULL, &hms, f->error), 0);
	assert_int_equal(meta_expunge(f->m, alice.id, "Trash", NULL, NULL,
				      NULL, &hms, f->error), 0);
	assert_int_equal(refs(f, BLOB_A), 1);
	assert_int_equal(refs(f, BLOB_B), 0);
}

static void test_savepoint_and_durability(void **state)
{
	struct fixture *f = *state;
	struct meta_status_info st;
	struct meta *again;

	assert_int_equal(meta_savepoint(f->m, f->error), 0);
	add(f, &alice, "INBOX", BLOB_A, 10, 0);
	meta_rollback_to(f->m);
	assert_int_equal(refs(f, BLOB_A), -1);
	assert_int_equal(meta_savepoint(f->m, f->error), 0);
	add(f, &alice, "INBOX", BLOB_A, 10, 0);
	assert_int_equal(meta_release(f->m, f->error), 0);
	assert_int_equal(meta_commit(f->m, f->error), 0);
	/* a second handle on the same file sees the committed state */
	assert_int_equal(meta_open(f->db, &again, f->error), 0);
	assert_int_equal(meta_folder_status(again, alice.id, "INBOX", true, &st,
					    f->error), META_OK);
	assert_int_equal(st.exists, 1);
	assert_int_equal(st.uidnext, 2);
	meta_close(&again);
	assert_int_equal(meta_begin(f->m, f->error), 0);
}

static void test_fetch_batches(void **state)
{
	struct fixture *f = *state;
	struct changes c = { 0 };
	uint32_t next;

	for (int i = 0; i < 7; i++)
		add(f, &alice, "INBOX", BLOB_A, 10, 0);
	assert_int_equal(meta_fetch(f->m, alice.id, "INBOX", 1, UINT32_MAX, 3,
				    changed_cb, &c, &next, f->error), 0);
	assert_int_equal(c.n, 3);
	assert_int_equal(next, 4);
	assert_int_equal(meta_fetch(f->m, alice.id, "INBOX", next, 6, 3,
				    changed_cb, &c, &next, f->error), 0);
	assert_int_equal(c.n, 6);
	assert_int_equal(next, 0);
	assert_int_equal(c.uid[5], 6);
	/* The flags-only page: the same messages and continuation. */
	c.n = 0;
	assert_int_equal(meta_fetch_flags(f->m, alice.id, "INBOX", 2,
					  UINT32_MAX, 4, changed_cb, &c, &next,
					  f->error), 0);
	assert_int_equal(c.n, 4);
	assert_int_equal(c.uid[0], 2);
	assert_int_equal(c.uid[3], 5);
	assert_int_equal(next, 6);
	assert_true(c.modseq[3] > c.modseq[0]);
}

static void test_names(void **state)
{
	struct str *out = str_new(0, 4096);
	struct meta_uidset set;

	assert_int_equal(meta_folder_name_check("inbox", out), 0);
	assert_string_equal(str_c(out), "INBOX");
	assert_int_equal(meta_folder_name_check("Inbox/Sub", out), 0);
	assert_string_equal(str_c(out), "INBOX/Sub");
	assert_int_equal(meta_folder_name_check("Inboxes", out), 0);
	assert_string_equal(str_c(out), "Inboxes");
	assert_int_equal(meta_folder_name_check("Été/Ünï", out), 0);
	assert_int_equal(meta_folder_name_check("", out), -1);
	assert_int_equal(meta_folder_name_check("/a", out), -1);
	assert_int_equal(meta_folder_name_check("a/", out), -1);
	assert_int_equal(meta_folder_name_check("a//b", out), -1);
	assert_int_equal(meta_folder_name_check("a*", out), -1);
	assert_int_equal(meta_folder_name_check("a\tb", out), -1);
	assert_int_equal(meta_folder_name_check("\xc3\x28", out), -1);
	assert_int_equal(meta_keywords_normalise(" b a  b $X ", out), 0);
	assert_string_equal(str_c(out), "$X a b");
	assert_int_equal(meta_keywords_normalise("\\Seen", out), -1);
	assert_int_equal(meta_keywords_normalise("a(b", out), -1);
	assert_int_equal(meta_uidset_parse("1,3:5,9:*", &set), 0);
	assert_int_equal(set.n, 3);
	assert_int_equal(set.r[1].lo, 3);
	assert_int_equal(set.r[1].hi, 5);
	assert_int_equal(set.r[2].hi, UINT32_MAX);
	assert_int_equal(meta_uidset_parse("5:3", &set), 0);
	assert_int_equal(set.r[0].lo, 3);
	assert_int_equal(meta_uidset_parse("0", &set), -1);
	assert_int_equal(meta_uidset_parse("1,", &set), -1);
	assert_int_equal(meta_uidset_parse("1:x", &set), -1);
	assert_int_equal(meta_uidset_parse("", &set), -1);
	assert_int_equal(meta_uidset_parse("99999999999", &set), -1);
	str_free(&out);
}

static void test_delivery_keys(void **state)
{
	struct fixture *f = *state;
	uint32_t uid = 0, uidv = 0;
	uint64_t removed = 7;

	assert_int_equal(meta_delivery_find(f->m, "mx/Q1", alice.id, "INBOX",
					    &uid, &uidv, f->error),
			 META_ENOTFOUND);
	assert_int_equal(meta_delivery_add(f->m, "mx/Q1", alice.id, "INBOX",
					   5, 1234, 1000, f->error), META_OK);
	assert_int_equal(meta_delivery_find(f->m, "mx/Q1", alice.id, "INBOX",
					    &uid, &uidv, f->error), META_OK);
	assert_int_equal(uid, 5);
	assert_int_equal(uidv, 1234);
	/* the key is per account and folder */
	assert_int_equal(meta_delivery_find(f->m, "mx/Q1", bob.id, "INBOX",
					    &uid, &uidv, f->error),
			 META_ENOTFOUND);
	assert_int_equal(meta_delivery_find(f->m, "mx/Q1", alice.id, "Junk",
					    &uid, &uidv, f->error),
			 META_ENOTFOUND);
	assert_int_equal(meta_delivery_find(f->m, "mx/Q2", alice.id, "INBOX",
					    &uid, &uidv, f->error),
			 META_ENOTFOUND);
	assert_int_equal(meta_delivery_add(f->m, "mx/Q1", alice.id, "INBOX",
					   6, 1234, 1001, f->error),
			 META_EEXISTS);
	assert_int_equal(meta_delivery_add(f->m, "mx/Q1", bob.id, "INBOX",
					   1, 99, 2000, f->error), META_OK);
	/* a rolled-back savepoint takes its key along */
	assert_int_equal(meta_savepoint(f->m, f->error), META_OK);
	assert_int_equal(meta_delivery_add(f->m, "mx/Q3", alice.id, "INBOX",
					   7, 1234, 3000, f->error), META_OK);
	meta_rollback_to(f->m);
	assert_int_equal(meta_delivery_find(f->m, "mx/Q3", alice.id, "INBOX",
					    &uid, &uidv, f->error),
			 META_ENOTFOUND);
	/* pruning goes by age: only rows created before the bound */
	assert_int_equal(meta_delivery_prune(f->m, 1000, &removed, f->error),
			 META_OK);
	assert_int_equal(removed, 0);
	assert_int_equal(meta_delivery_prune(f->m, 1500, &removed, f->error),
			 META_OK);
	assert_int_equal(removed, 1);
	assert_int_equal(meta_delivery_find(f->m, "mx/Q1", alice.id, "INBOX",
					    &uid, &uidv, f->error),
			 META_ENOTFOUND);
	assert_int_equal(meta_delivery_find(f->m, "mx/Q1", bob.id, "INBOX",
					    &uid, &uidv, f->error), META_OK);
	assert_int_equal(uid, 1);
}

/* A database of schema version 1 (before delivery keys) is upgraded on
 * open and keeps its messages. */
static void test_schema_upgrade(void **state)
{
	struct fixture *f = *state;
	struct meta_status_info st;
	uint32_t uid, uidv;
	sqlite3 *db;
	sqlite3_stmt *s;

	add(f, &alice, "INBOX", BLOB_A, 10, 0);
	assert_int_equal(meta_commit(f->m, f->error), META_OK);
	meta_close(&f->m);
	assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "DROP TABLE deliveries;"
				      " UPDATE schema_version SET version = 1",
				      NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(meta_open(f->db, &f->m, f->error), META_OK);
	assert_int_equal(meta_begin(f->m, f->error), META_OK);
	assert_int_equal(meta_folder_status(f->m, alice.id, "INBOX", true,
					    &st, f->error), META_OK);
	assert_int_equal(st.exists, 1);
	assert_int_equal(meta_delivery_add(f->m, "k", alice.id, "INBOX", 1, 2,
					   3, f->error), META_OK);
	assert_int_equal(meta_delivery_find(f->m, "k", alice.id, "INBOX",
					    &uid, &uidv, f->error), META_OK);
	assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT version FROM"
					    " schema_version", -1, &s, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(s, 0), 2);
	sqlite3_finalize(s);
	sqlite3_close(db);
	/* a newer schema is refused */
	meta_rollback(f->m);
	meta_close(&f->m);
	assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "UPDATE schema_version SET"
				      " version = 99", NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(meta_open(f->db, &f->m, f->error), META_EINTERNAL);
	assert_non_null(strstr(str_c(f->error), "newer"));
	assert_null(f->m);
	/* teardown needs a handle */
	assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "UPDATE schema_version SET"
				      " version = 2", NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(meta_open(f->db, &f->m, f->error), META_OK);
	assert_int_equal(meta_begin(f->m, f->error), META_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_default_folders, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_folders, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uids_and_modseq, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_flags, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expunge_quota_refcounts,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_move, setup, teardown),
		cmocka_unit_test_setup_teardown(test_savepoint_and_durability,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_fetch_batches, setup,
						teardown),
		cmocka_unit_test(test_names),
		cmocka_unit_test_setup_teardown(test_delivery_keys, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_schema_upgrade, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
