/* test_store_notify.c: tern-stored's change events and watches
 * (stored/notify.h). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "compat.h"
#include "notify.h"

/* A fake client: what it received, and when it stops reading. */
struct client {
	int got;
	int kinds[32];
	char folders[32][16];
	uint32_t uids[32];
	int refuse_after;	/* -1: never */
};

static int send_cb(void *ctx, const struct notify_event *ev)
{
	struct client *c = ctx;

	if (c->refuse_after >= 0 && c->got >= c->refuse_after)
		return -1;
	if (c->got == 32)
		return -1;
	c->kinds[c->got] = (int)ev->kind;
	snprintf(c->folders[c->got], 16, "%s", ev->folder);
	c->uids[c->got] = ev->uid;
	c->got++;
	return 0;
}

static void test_list_marks(void **state)
{
	struct notify_list l = { 0 };

	notify_list_add(&l, NOTIFY_NEW, 1, "INBOX", 1, 5, 0, NULL);
	notify_list_add(&l, NOTIFY_FLAGS, 1, "INBOX", 1, 6, 1, "$A");
	/* a request that rolls back drops only its own events */
	notify_list_add(&l, NOTIFY_EXPUNGE, 1, "INBOX", 1, 7, 0, NULL);
	notify_list_truncate(&l, 2);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.v[1].keywords, "$A");
	assert_null(l.v[0].keywords);
	for (int i = 0; i < 40; i++)
		notify_list_add(&l, NOTIFY_NEW, 2, "Sent", (uint32_t)i, 1, 0,
				NULL);
	assert_int_equal(l.n, 42);
	notify_list_clear(&l);
	assert_int_equal(l.n, 0);
	assert_null(l.v);
	notify_list_clear(&l);
}

static void test_watch_publish(void **state)
{
	struct notify_hub *h = notify_hub_new();
	struct client all = { .refuse_after = -1 };
	struct client inbox = { .refuse_after = -1 };
	struct client origin = { .refuse_after = -1 };
	struct notify_list l = { 0 };

	assert_int_equal(notify_watch(h, &all, 1, NULL), 0);
	assert_int_equal(notify_watch(h, &inbox, 1, "INBOX"), 0);
	assert_int_equal(notify_watch(h, &origin, 1, ""), 0);
	/* overlapping watches of one client: still one frame per event */
	assert_int_equal(notify_watch(h, &all, 1, "INBOX"), 0);
	assert_int_equal(notify_watch(h, &all, 1, "INBOX"), 0);	/* dup */
	assert_int_equal(notify_watches(h, &all), 2);
	assert_int_equal(notify_watches(h, NULL), 4);
	notify_list_add(&l, NOTIFY_NEW, 1, "INBOX", 7, 3, 0, NULL);
	notify_list_add(&l, NOTIFY_EXPUNGE, 1, "Trash", 2, 4, 0, NULL);
	notify_list_add(&l, NOTIFY_NEW, 2, "INBOX", 1, 1, 0, NULL);
	/* the origin's own changes are not sent back to it */
	assert_int_equal(notify_hub_publish(h, &l, &origin, send_cb), 3);
	assert_int_equal(all.got, 2);
	assert_int_equal(all.kinds[1], NOTIFY_EXPUNGE);
	assert_string_equal(all.folders[1], "Trash");
	assert_int_equal(inbox.got, 1);
	assert_int_equal(inbox.uids[0], 7);
	assert_int_equal(origin.got, 0);
	/* without an origin everyone watching gets them */
	assert_int_equal(notify_hub_publish(h, &l, NULL, send_cb), 5);
	assert_int_equal(origin.got, 2);
	/* unwatch and forget */
	assert_int_equal(notify_unwatch(h, &inbox, 1, "INBOX"), 1);
	assert_int_equal(notify_unwatch(h, &inbox, 1, "INBOX"), 0);
	notify_forget(h, &all);
	assert_int_equal(notify_watches(h, NULL), 1);
	notify_list_clear(&l);
	notify_hub_free(&h);
	assert_null(h);
}

static void test_drop_and_limits(void **state)
{
	struct notify_hub *h = notify_hub_new();
	struct client slow = { .refuse_after = 2 };
	struct client fine = { .refuse_after = -1 };
	struct notify_list l = { 0 };
	char name[32];

	assert_int_equal(notify_watch(h, &slow, 1, "INBOX"), 0);
	assert_int_equal(notify_watch(h, &slow, 1, NULL), 0);
	assert_int_equal(notify_watch(h, &fine, 1, NULL), 0);
	for (uint32_t i = 1; i <= 5; i++)
		notify_list_add(&l, NOTIFY_NEW, 1, "INBOX", i, i, 0, NULL);
	/* the slow one takes two, refuses the third and is dropped with
	 * all of its watches; the others go on */
	assert_int_equal(notify_hub_publish(h, &l, NULL, send_cb), 7);
	assert_int_equal(slow.got, 2);
	assert_int_equal(fine.got, 5);
	assert_int_equal(notify_watches(h, &slow), 0);
	assert_int_equal(notify_watches(h, NULL), 1);
	/* a client has at most NOTIFY_WATCHES_MAX watches */
	for (int i = 0; i < NOTIFY_WATCHES_MAX - 1; i++) {
		snprintf(name, sizeof(name), "F%d", i);
		assert_int_equal(notify_watch(h, &fine, 1, name), 0);
	}
	assert_int_equal(notify_watch(h, &fine, 1, "one-too-many"), -1);
	assert_int_equal(notify_watch(h, &slow, 1, "INBOX"), 0);
	notify_list_clear(&l);
	notify_hub_free(&h);
}

static void test_rename_moves_watches(void **state)
{
	struct notify_hub *h = notify_hub_new();
	struct client work = { .refuse_after = -1 };
	struct client child = { .refuse_after = -1 };
	struct client other = { .refuse_after = -1 };
	struct notify_list l = { 0 };

	assert_int_equal(notify_watch(h, &work, 1, "Work"), 0);
	assert_int_equal(notify_watch(h, &child, 1, "Work/2026"), 0);
	assert_int_equal(notify_watch(h, &other, 1, "Workshop"), 0);
	assert_int_equal(notify_watch(h, &other, 2, "Work"), 0);
	notify_list_add_rename(&l, 1, "Work", "Job");
	/* The folder's and its children's watchers; the origin's watches
	 * move too. */
	assert_int_equal(notify_hub_publish(h, &l, &child, send_cb), 1);
	assert_int_equal(work.got, 1);
	assert_int_equal(work.kinds[0], NOTIFY_RENAME);
	assert_string_equal(work.folders[0], "Work");
	assert_int_equal(other.got, 0);
	notify_list_clear(&l);
	/* Events under the new names reach the moved watches. */
	notify_list_add(&l, NOTIFY_NEW, 1, "Job", 5, 9, 0, NULL);
	notify_list_add(&l, NOTIFY_NEW, 1, "Job/2026", 1, 3, 0, NULL);
	notify_list_add(&l, NOTIFY_NEW, 1, "Work", 1, 3, 0, NULL);
	notify_list_add(&l, NOTIFY_DELETE, 2, "Work", 0, 0, 0, NULL);
	assert_int_equal(notify_hub_publish(h, &l, NULL, send_cb), 3);
	assert_int_equal(work.got, 2);
	assert_int_equal(work.uids[1], 5);
	assert_int_equal(child.got, 1);
	assert_string_equal(child.folders[0], "Job/2026");
	assert_int_equal(other.got, 1);
	assert_int_equal(other.kinds[0], NOTIFY_DELETE);
	assert_int_equal(notify_unwatch(h, &child, 1, "Job/2026"), 1);
	/* A rolled back rename frees its new name. */
	notify_list_add_rename(&l, 1, "Job", "Old");
	notify_list_truncate(&l, 0);
	notify_list_clear(&l);
	notify_hub_free(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_list_marks),
		cmocka_unit_test(test_watch_publish),
		cmocka_unit_test(test_drop_and_limits),
		cmocka_unit_test(test_rename_moves_watches),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
