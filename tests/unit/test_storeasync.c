/* test_storeasync.c: the asynchronous tern-stored client against a fake
 * store on the same loop: answers, data frames, errors, the request
 * timeout, a lost connection (no resend of a delivery, one resend of an
 * idempotent read), a store that is down and comes back, and free. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "compat.h"

#include <stdlib.h>
#include <unistd.h>
#include <uv.h>

#include "ipc.h"
#include "ipcchan.h"
#include "storeasync.h"
#include "str.h"

static char sock_dir[64];
static char sock_path[128];

/* ---- the fake store ---- */

struct fake {
	uv_loop_t loop;
	uv_pipe_t listener;
	bool listening;
	struct ipc_chan *chan;
	unsigned hellos, requests, drops;
};

static void fake_send(struct ipc_chan *chan, struct ipc_msg *m)
{
	const char *error;

	assert_int_equal(ipc_chan_send(chan, m, &error), 0);
}

static struct ipc_msg *answer(const struct ipc_msg *req, const char *type)
{
	struct ipc_msg *m = ipc_msg_new(type);

	ipc_msg_set_id(m, ipc_msg_id(req));
	return m;
}

static void fake_deliver(struct fake *f, struct ipc_msg *req)
{
	struct ipc_msg *m;
	const char *file;
	unsigned n = ipc_msg_count(req, "rcpt_account");

	assert_int_equal(ipc_msg_get_cstr(req, "file", &file), 0);
	if (strcmp(file, "/drop") == 0) {
		f->drops++;
		ipc_chan_close(&f->chan);
		return;
	}
	if (strcmp(file, "/busy") == 0 || strcmp(file, "/nofile") == 0) {
		m = answer(req, "error");
		ipc_msg_add_cstr(m, "code", file + 1);
		ipc_msg_add_cstr(m, "message", "as asked");
		fake_send(f->chan, m);
		ipc_msg_free(&m);
		return;
	}
	m = answer(req, "ok");
	ipc_msg_add_cstr(m, "blob", "ab12");
	ipc_msg_add_int(m, "size", 42);
	for (unsigned i = 0; i < n; i++) {
		ipc_msg_add_cstr(m, "status", i == 1 ? "overquota" : "ok");
		ipc_msg_add_int(m, "uid", i == 1 ? 0 : 10 + i);
		ipc_msg_add_int(m, "uidvalidity", i == 1 ? 0 : 7);
		ipc_msg_add_cstr(m, "message", i == 1 ? "quota exceeded" : "");
	}
	fake_send(f->chan, m);
	ipc_msg_free(&m);
}

static void fake_msg(struct ipc_chan *chan, struct ipc_msg **msgp, void *ctx)
{
	struct fake *f = ctx;
	struct ipc_msg *req = *msgp, *m;

	f->requests++;
	if (ipc_msg_type_is(req, "deliver")) {
		fake_deliver(f, req);
	} else if (ipc_msg_type_is(req, "folder.list")) {
		for (int i = 0; i < 2; i++) {
			m = answer(req, "folder");
			ipc_msg_add_cstr(m, "name", i == 0 ? "INBOX" : "Work");
			fake_send(chan, m);
			ipc_msg_free(&m);
		}
		m = answer(req, "ok");
		fake_send(chan, m);
		ipc_msg_free(&m);
	} else if (ipc_msg_type_is(req, "quota.get")) {
		if (f->drops == 0) {	/* the first one is lost */
			f->drops++;
			ipc_chan_close(&f->chan);
			return;
		}
		m = answer(req, "ok");
		ipc_msg_add_int(m, "used", 5);
		fake_send(chan, m);
		ipc_msg_free(&m);
	}
	/* "status": never answered (timeouts) */
}

static void fake_closed(struct ipc_chan *chan, const char *error, void *ctx)
{
	struct fake *f = ctx;

	if (f->chan == chan)
		f->chan = NULL;
}

static void fake_connection(uv_stream_t *server, int status)
{
	struct fake *f = server->data;
	struct ipc_chan_settings set = {
		.proto = STOREASYNC_PROTO,
		.version = STOREASYNC_VERSION,
		.on_msg = fake_msg,
		.on_close = fake_closed,
		.ctx = f,
	};
	const char *error;

	assert_int_equal(status, 0);
	assert_null(f->chan);
	f->chan = ipc_chan_accept(server, &set, &error);
	assert_non_null(f->chan);
	f->hellos++;
}

static void fake_listen(struct fake *f)
{
	unlink(sock_path);
	assert_int_equal(uv_pipe_init(&f->loop, &f->listener, 0), 0);
	f->listener.data = f;
	assert_int_equal(uv_pipe_bind(&f->listener, sock_path), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&f->listener, 8,
				   fake_connection), 0);
	f->listening = true;
}

static void fake_stop(struct fake *f)
{
	ipc_chan_close(&f->chan);
	if (f->listening)
		uv_close((uv_handle_t *)&f->listener, NULL);
	f->listening = false;
}

/* Runs the loop until *flag is set (bounded by the alarm). */
static void run_until(struct fake *f, const int *flag)
{
	while (!*flag)
		uv_run(&f->loop, UV_RUN_ONCE);
}

static void timer_fired(uv_timer_t *t)
{
	*(int *)t->data = 1;
	uv_close((uv_handle_t *)t, NULL);
}

/* Runs the loop for about ms milliseconds. */
static void run_for(struct fake *f, uint64_t ms)
{
	uv_timer_t t;
	int fired = 0;

	uv_timer_init(&f->loop, &t);
	t.data = &fired;
	uv_timer_start(&t, timer_fired, ms, 0);
	run_until(f, &fired);
	uv_run(&f->loop, UV_RUN_NOWAIT);	/* the timer's close */
}

static void finish(struct fake *f, struct storeasync **sa)
{
	storeasync_free(sa);
	fake_stop(f);
	while (uv_run(&f->loop, UV_RUN_DEFAULT) != 0)
		;
	assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* ---- results ---- */

struct result {
	int done;
	bool in_call;		/* set while the request call runs */
	bool early;		/* the callback came inside the call */
	enum storeasync_status st;
	bool file_ours;
	char code[32], error[256];
	size_t nframes, nresults;
	struct storeasync_rcpt_result res[4];
	int64_t used;
	uint64_t size;
};

static void keep_text(char *dst, size_t size, const char *s)
{
	str_lcpy(dst, s != NULL ? s : "", size);
}

static void on_deliver(enum storeasync_status st,
		       const struct storeasync_delivery *d, bool file_ours,
		       const char *code, const char *error, void *ctx)
{
	struct result *r = ctx;

	r->early = r->in_call;
	r->st = st;
	r->file_ours = file_ours;
	keep_text(r->code, sizeof(r->code), code);
	keep_text(r->error, sizeof(r->error), error);
	if (d != NULL) {
		r->nresults = d->nresults;
		r->size = d->size;
		for (size_t i = 0; i < d->nresults && i < 4; i++) {
			r->res[i] = d->results[i];
			r->res[i].message = NULL;
		}
	}
	r->done++;
}

static void on_done(enum storeasync_status st, struct ipc_msg *const *frames,
		    size_t nframes, const struct ipc_msg *final,
		    const char *code, const char *error, void *ctx)
{
	struct result *r = ctx;

	r->early = r->in_call;
	r->st = st;
	r->nframes = nframes;
	keep_text(r->code, sizeof(r->code), code);
	keep_text(r->error, sizeof(r->error), error);
	if (final != NULL && ipc_msg_get_int(final, "used", &r->used) < 0)
		r->used = -1;
	r->done++;
}

static const struct storeasync_rcpt rcpts[] = {
	{ 1, "a@example.com", "", 0, 0 },
	{ 2, "b@example.com", "Work", 1, 4096 },
	{ 3, "c@example.com", NULL, 0, -1 },
};

static void deliver(struct storeasync *sa, const char *file,
		    struct result *r)
{
	r->in_call = true;
	storeasync_deliver(sa, file, 0, rcpts, 3, on_deliver, r);
	r->in_call = false;
}

static void request(struct storeasync *sa, const char *type, unsigned flags,
		    struct result *r)
{
	struct ipc_msg *m = ipc_msg_new(type);

	ipc_msg_add_int(m, "account", 1);
	ipc_msg_add_cstr(m, "address", "a@example.com");
	r->in_call = true;
	storeasync_request(sa, &m, flags, on_done, r);
	r->in_call = false;
	assert_null(m);
}

/* ---- tests ---- */

static void test_deliver_and_frames(void **state)
{
	struct storeasync_settings set = { .timeout_ms = 5000 };
	struct fake f = { 0 };
	struct result r1 = { 0 }, r2 = { 0 }, r3 = { 0 }, r4 = { 0 };
	struct storeasync *sa;

	uv_loop_init(&f.loop);
	fake_listen(&f);
	sa = storeasync_new(&f.loop, sock_path, &set);
	deliver(sa, "/spool/1", &r1);
	request(sa, "folder.list", STOREASYNC_IDEMPOTENT, &r2);
	deliver(sa, "/busy", &r3);
	deliver(sa, "/nofile", &r4);
	run_until(&f, &r4.done);
	assert_true(storeasync_connected(sa));
	assert_int_equal(r1.done + r2.done + r3.done, 3);
	assert_false(r1.early || r2.early || r3.early || r4.early);
	assert_int_equal(r1.st, STOREASYNC_OK);
	assert_int_equal(r1.nresults, 3);
	assert_int_equal(r1.size, 42);
	assert_int_equal(r1.res[0].status, STOREASYNC_RCPT_OK);
	assert_int_equal(r1.res[0].uid, 10);
	assert_int_equal(r1.res[1].status, STOREASYNC_RCPT_OVERQUOTA);
	assert_int_equal(r1.res[2].uid, 12);
	assert_int_equal(r2.st, STOREASYNC_OK);
	assert_int_equal(r2.nframes, 2);
	/* busy: the store did not take the file; nofile: it did */
	assert_int_equal(r3.st, STOREASYNC_ERROR);
	assert_string_equal(r3.code, "busy");
	assert_string_equal(r3.error, "as asked");
	assert_true(r3.file_ours);
	assert_int_equal(r4.st, STOREASYNC_ERROR);
	assert_false(r4.file_ours);
	assert_int_equal(storeasync_pending(sa), 0);
	finish(&f, &sa);
}

static void test_lost_connection(void **state)
{
	struct storeasync_settings set = { .timeout_ms = 5000 };
	struct fake f = { 0 };
	struct result r1 = { 0 }, r2 = { 0 }, r3 = { 0 };
	struct storeasync *sa;

	uv_loop_init(&f.loop);
	fake_listen(&f);
	sa = storeasync_new(&f.loop, sock_path, &set);
	/* The quota.get is lost with the connection and sent again; the
	 * delivery in flight with it is not (the store may have done it). */
	request(sa, "quota.get", STOREASYNC_IDEMPOTENT, &r1);
	deliver(sa, "/spool/2", &r2);
	run_until(&f, &r2.done);
	assert_int_equal(r2.st, STOREASYNC_TEMPFAIL);
	assert_true(r2.file_ours);
	assert_non_null(strstr(r2.error, "lost"));
	run_until(&f, &r1.done);
	assert_int_equal(r1.st, STOREASYNC_OK);
	assert_int_equal(r1.used, 5);
	assert_int_equal(f.hellos, 2);
	/* A delivery lost with the connection is not sent again either. */
	deliver(sa, "/drop", &r3);
	run_until(&f, &r3.done);
	assert_int_equal(r3.st, STOREASYNC_TEMPFAIL);
	assert_true(r3.file_ours);
	finish(&f, &sa);
	assert_int_equal(f.drops, 2);
}

static void test_timeout_down_and_back(void **state)
{
	struct storeasync_settings set = { .timeout_ms = 300 };
	struct fake f = { 0 };
	struct result r1 = { 0 }, r2 = { 0 }, r3 = { 0 }, r4 = { 0 };
	struct storeasync *sa;
	uint64_t t0;

	uv_loop_init(&f.loop);
	unlink(sock_path);
	/* The store is down: requests wait, then fail at their timeout. */
	sa = storeasync_new(&f.loop, sock_path, &set);
	t0 = uv_now(&f.loop);
	deliver(sa, "/spool/3", &r1);
	run_until(&f, &r1.done);
	assert_int_equal(r1.st, STOREASYNC_TEMPFAIL);
	assert_true(r1.file_ours);	/* never sent */
	assert_true(uv_now(&f.loop) - t0 >= 250);
	assert_false(storeasync_connected(sa));
	/* It comes back: the next request connects at once. */
	fake_listen(&f);
	run_for(&f, 150);
	deliver(sa, "/spool/4", &r2);
	run_until(&f, &r2.done);
	assert_int_equal(r2.st, STOREASYNC_OK);
	/* No answer in time: tempfail, the file's fate unknown. */
	request(sa, "status", 0, &r3);
	run_until(&f, &r3.done);
	assert_int_equal(r3.st, STOREASYNC_TEMPFAIL);
	assert_non_null(strstr(r3.error, "in time"));
	/* free ends what is pending. */
	request(sa, "status", 0, &r4);
	storeasync_free(&sa);
	assert_int_equal(r4.done, 1);
	assert_int_equal(r4.st, STOREASYNC_TEMPFAIL);
	assert_string_equal(r4.error, "storeasync closed");
	finish(&f, &sa);
}

static int setup_sock(void **state)
{
	str_lcpy(sock_dir, "/tmp/tern-test-sa.XXXXXX", sizeof(sock_dir));
	if (mkdtemp(sock_dir) == NULL)
		return -1;
	snprintf(sock_path, sizeof(sock_path), "%s/stored.sock", sock_dir);
	return 0;
}

static int teardown_sock(void **state)
{
	unlink(sock_path);
	rmdir(sock_dir);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_deliver_and_frames,
						setup_sock, teardown_sock),
		cmocka_unit_test_setup_teardown(test_lost_connection,
						setup_sock, teardown_sock),
		cmocka_unit_test_setup_teardown(test_timeout_down_and_back,
						setup_sock, teardown_sock),
	};

	alarm(120);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
