/*
 * job.c: tern-authd's directory work on the libuv thread pool.
 *
 * Every SQLite call and every password check runs in a work function here,
 * never on the loop thread.  Each work function takes a directory handle
 * of its own from the pool (as many as threads: an SQLite connection or an
 * LDAP connection each), so lookups proceed in parallel; password
 * verification (argon2, the slow part) runs after the handle is given back.  An unknown account
 * is checked against a dummy hash so that it costs the same time as a
 * wrong password.
 *
 * With an external directory (dir_ext.h), the account still comes from
 * Tern's directory (status, mail host, quota) but its password is checked
 * by the external one, and address book searches add its entries; it has
 * a lock of its own, so those calls run without a handle.
 */
#include "config.h"

#include <stdlib.h>

#include "compat.h"
#include "authd.h"
#include "log.h"
#include "svc.h"
#include "xalloc.h"

static void set_error(struct str *error, const char *msg)
{
	if (str_set(error, msg, strlen(msg)) < 0)
		str_clear(error);
}

/* ---- the dummy hash ---- */

static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
static char *dummy_hash;

static void dummy_make(void)
{
	struct str *out = str_new(128, 1024), *err = str_new(64, 512);
	unsigned char r[24];
	char pw[sizeof(r) * 2 + 1];

	/* A password nobody knows: the hash must only cost the same time. */
	if (getentropy(r, sizeof(r)) < 0)
		memset(r, 0x5a, sizeof(r));
	for (size_t i = 0; i < sizeof(r); i++)
		snprintf(pw + 2 * i, 3, "%02x", r[i]);
	if (dir_password_hash(pw, out, err) == DIR_OK)
		dummy_hash = xstrdup(str_c(out));
	explicit_bzero(pw, sizeof(pw));
	str_free(&out);
	str_free(&err);
}

/* The dummy hash is made once, with the default argon2id cost (tens of
 * milliseconds): at start-up on the thread pool, so that the first login
 * after a start does not pay for it. */
static void dummy_work(uv_work_t *w)
{
	pthread_once(&dummy_once, dummy_make);
}

static void dummy_after(uv_work_t *w, int status)
{
	free(w);
}

void authd_job_prepare(struct authd *ad)
{
	uv_work_t *w = xcalloc(1, sizeof(*w));

	if (uv_queue_work(ad->loop, w, dummy_work, dummy_after) < 0)
		free(w);	/* the first check makes it instead */
}

/* ---- work functions (pool threads) ---- */

/* A free directory handle (waiting for one when every handle is taken),
 * opened when it is not (SQLite); NULL with error when it cannot be. */
static struct dir *dir_take(struct authd *ad, unsigned *slot_r,
			    struct str *error)
{
	unsigned i;
	bool forget;

	pthread_mutex_lock(&ad->dir_lock);
	for (;;) {
		for (i = 0; i < ad->ndirs && ad->dir_busy[i]; i++)
			;
		if (i < ad->ndirs)
			break;
		pthread_cond_wait(&ad->dir_free, &ad->dir_lock);
	}
	ad->dir_busy[i] = true;
	forget = ad->dir_gen[i] != ad->gen;
	ad->dir_gen[i] = ad->gen;
	pthread_mutex_unlock(&ad->dir_lock);
	*slot_r = i;
	/* The directory changed since this handle was last used: what it
	 * remembers may be out of date. */
	if (forget && ad->dirs[i] != NULL)
		dir_forget(ad->dirs[i]);
	if (ad->dirs[i] == NULL &&
	    dir_open_sqlite(ad->dir_path, true, &ad->dirs[i], error) !=
		    DIR_OK) {
		pthread_mutex_lock(&ad->dir_lock);
		ad->dir_busy[i] = false;
		pthread_cond_signal(&ad->dir_free);
		pthread_mutex_unlock(&ad->dir_lock);
		return NULL;
	}
	return ad->dirs[i];
}

static void dir_give(struct authd *ad, unsigned slot)
{
	pthread_mutex_lock(&ad->dir_lock);
	ad->dir_busy[slot] = false;
	pthread_cond_signal(&ad->dir_free);
	pthread_mutex_unlock(&ad->dir_lock);
}


/* The external directory's address book entries, merged into Tern's. */
static void work_gal_ext(struct authd_job *job)
{
	struct dir_gal_entry **more = NULL;
	size_t nmore = 0;

	job->status = dir_ext_gal_search(job->ad->ext, job->key, job->limit,
					 &more, &nmore, job->error);
	if (job->status == DIR_OK)
		dir_gal_merge(&job->gal, &job->ngal, &more, nmore,
			      job->limit);
	else
		dir_gal_array_free(&job->gal, job->ngal);
	dir_gal_array_free(&more, nmore);
}

static void work_lookup(struct authd_job *job)
{
	struct authd *ad = job->ad;
	unsigned slot;
	struct dir *d = dir_take(ad, &slot, job->error);

	if (d == NULL) {
		job->status = DIR_TEMPFAIL;
	} else if (job->kind == JOB_LOOKUP) {
		job->status = dir_account_get(d, job->key,
					      &job->value.account, job->error);
	} else if (job->kind == JOB_RESOLVE) {
		job->status = dir_resolve(d, job->key,
					  &job->value.resolution, job->error);
	} else if (job->kind == JOB_GAL) {
		job->status = dir_gal_search(d, job->key, job->limit,
					     &job->gal, &job->ngal,
					     job->error);
		if (job->status == DIR_OK && dir_ext_gal(ad->ext) &&
		    job->limit == 0)
			job->limit = DIR_GAL_LIMIT_DEFAULT;
	} else {
		struct dir_domain *dom = NULL;

		job->status = dir_domain_get(d, job->key, &dom, job->error);
		dir_domain_free(&dom);
	}
	if (d != NULL)
		dir_give(ad, slot);
	if (job->kind == JOB_GAL && job->status == DIR_OK &&
	    dir_ext_gal(ad->ext))
		work_gal_ext(job);
	job->value.status = job->status;
	job->value.exists = job->status == DIR_OK;
	if (job->value.account != NULL &&
	    job->value.account->password_hash != NULL) {
		char *h = job->value.account->password_hash;

		explicit_bzero(h, strlen(h));
		free(h);
		job->value.account->password_hash = NULL;
	}
}

/* The password check by a bind as the account's DN (ldap_auth = bind):
 * on a connection of its own, made with d's settings. */
static enum dir_status auth_bind(struct authd_job *job, struct dir *d,
				 const char *dn)
{
	enum dir_status st;

	if (dn == NULL)
		return DIR_AUTHFAIL;
	st = dir_password_bind(d, dn, job->password, job->error);
	return st == DIR_OK || st == DIR_TEMPFAIL ? st : DIR_AUTHFAIL;
}

/* The verdict for a password check, as dir_authenticate() gives it. */
static void work_auth(struct authd_job *job)
{
	struct authd *ad = job->ad;
	struct dir_account *acct = NULL;
	enum dir_status st = DIR_INVALID, bst = DIR_AUTHFAIL;
	bool ok, by_bind = false, ext = dir_ext_auth(ad->ext);
	char *dn = NULL;
	struct dir *d = NULL;
	unsigned slot;

	pthread_once(&dummy_once, dummy_make);
	if (job->key != NULL) {
		d = dir_take(ad, &slot, job->error);
		if (d == NULL) {
			st = DIR_TEMPFAIL;
		} else {
			st = dir_account_get(d, job->key, &acct, job->error);
			by_bind = !ext && dir_auth_by_bind(d);
			if (st == DIR_OK && by_bind &&
			    dir_account_dn(d, job->key, &dn, job->error) ==
				    DIR_TEMPFAIL)
				st = DIR_TEMPFAIL;
		}
	}
	/* The bind has a connection of its own: the handle only lends its
	 * settings (handles are closed only when authd stops). */
	if (d != NULL)
		dir_give(ad, slot);
	if (st == DIR_OK && by_bind)
		bst = auth_bind(job, d, dn);
	else if (st == DIR_OK && ext)
		bst = dir_ext_authenticate(ad->ext, job->key, job->password,
					   job->error);
	free(dn);
	if (st == DIR_TEMPFAIL || bst == DIR_TEMPFAIL) {
		job->status = DIR_TEMPFAIL;
		dir_account_free(&acct);
		return;
	}
	if (st == DIR_OK && (by_bind || ext)) {
		ok = bst == DIR_OK;
		/* Not in the external directory (or more than once there). */
		job->reason = bst == DIR_NOTFOUND ? "external-unknown" :
						    "password";
	} else if (st == DIR_OK && acct->password_hash != NULL) {
		ok = dir_password_verify(job->password, acct->password_hash);
		job->reason = "password";
	} else {
		(void)dir_password_verify(job->password, dummy_hash);
		ok = false;
		job->reason = st == DIR_OK ? "nologin" :
			      st == DIR_INVALID ? "invalid" : "unknown";
	}
	explicit_bzero(job->password, strlen(job->password));
	if (acct != NULL && acct->password_hash != NULL) {
		explicit_bzero(acct->password_hash,
			       strlen(acct->password_hash));
		free(acct->password_hash);
		acct->password_hash = NULL;
	}
	if (!ok) {
		job->status = DIR_AUTHFAIL;
		dir_account_free(&acct);
		return;
	}
	job->status = acct->status == DIR_ACCOUNT_ACTIVE ? DIR_OK :
							   DIR_REFUSED;
	job->reason = dir_account_status_name(acct->status);
	job->value.status = DIR_OK;
	job->value.account = acct;
}

static void job_work(uv_work_t *w)
{
	struct authd_job *job = w->data;

	if (job->kind == JOB_AUTH)
		work_auth(job);
	else if (job->key == NULL)
		job->status = DIR_INVALID;
	else
		work_lookup(job);
}

static void job_after(uv_work_t *w, int status)
{
	struct authd_job *job = w->data;

	if (status == UV_ECANCELED) {
		job->status = DIR_TEMPFAIL;
		set_error(job->error, "cancelled");
	}
	authd_server_job_done(job);
}

void authd_job_start(struct authd_job *job)
{
	int r;

	job->work.data = job;
	r = uv_queue_work(job->ad->loop, &job->work, job_work, job_after);
	if (r < 0)
		log_panic(NULL, "uv_queue_work: %s", uv_strerror(r));
}

/* ---- the directory handle ---- */

void authd_dir_open(struct authd *ad)
{
	struct str *error = str_new(128, AUTHD_ERROR_MAX);
	unsigned slot;
	struct dir *d = dir_take(ad, &slot, error);

	if (d == NULL || dir_serial(d, &ad->serial, error) != DIR_OK) {
		log_warn(NULL, "directory %s not available (retrying): %s",
			 ad->dir_path, str_c(error));
		ad->dir_down = true;
	} else {
		ad->have_serial = true;
		log_info(NULL, "directory %s open (serial %llu, %u "
			 "connections)", ad->dir_path,
			 (unsigned long long)ad->serial, ad->ndirs);
	}
	if (d != NULL)
		dir_give(ad, slot);
	str_free(&error);
}

void authd_dir_close(struct authd *ad)
{
	pthread_mutex_lock(&ad->dir_lock);
	for (unsigned i = 0; i < ad->ndirs; i++)
		dir_close(&ad->dirs[i]);
	pthread_mutex_unlock(&ad->dir_lock);
}

/* ---- the serial poll ---- */

struct poll_job {
	uv_work_t work;
	struct authd *ad;
	enum dir_status status;
	uint64_t serial;
	struct str *error;
};

static void poll_work(uv_work_t *w)
{
	struct poll_job *p = w->data;
	struct authd *ad = p->ad;
	unsigned slot;
	struct dir *d = dir_take(ad, &slot, p->error);

	p->status = d != NULL ? dir_serial(d, &p->serial, p->error) :
				DIR_TEMPFAIL;
	if (d != NULL)
		dir_give(ad, slot);
}

static void poll_after(uv_work_t *w, int status)
{
	struct poll_job *p = w->data;
	struct authd *ad = p->ad;

	ad->poll_busy = false;
	ad->polls++;
	if (status == 0 && p->status != DIR_OK && !ad->dir_down) {
		log_warn(NULL, "directory %s not available: %s",
			 ad->dir_path, str_c(p->error));
		ad->dir_down = true;
	} else if (status == 0 && p->status == DIR_OK) {
		if (ad->dir_down)
			log_info(NULL, "directory %s available again",
				 ad->dir_path);
		ad->dir_down = false;
		if (!ad->have_serial || p->serial != ad->serial) {
			log_debug(NULL, "directory serial %llu: cache "
				  "cleared (%zu entries)",
				  (unsigned long long)p->serial,
				  cache_entries(ad->cache));
			cache_clear(ad->cache);
			pthread_mutex_lock(&ad->dir_lock);
			ad->gen++;
			pthread_mutex_unlock(&ad->dir_lock);
			if (ad->have_serial)
				authd_server_invalidate(ad);
			ad->serial = p->serial;
			ad->have_serial = true;
		}
	}
	str_free(&p->error);
	free(p);
}

static void poll_tick(uv_timer_t *t)
{
	struct authd *ad = t->data;
	struct poll_job *p;
	uint64_t now = uv_now(ad->loop);

	if (now - ad->last_expire >= AUTHD_EXPIRE_MS) {
		anvil_expire(ad->anvil, now);
		ad->last_expire = now;
	}
	if (ad->poll_busy || ad->stopping)
		return;
	p = xcalloc(1, sizeof(*p));
	p->ad = ad;
	p->error = str_new(128, AUTHD_ERROR_MAX);
	p->work.data = p;
	ad->poll_busy = true;
	if (uv_queue_work(ad->loop, &p->work, poll_work, poll_after) < 0) {
		ad->poll_busy = false;
		str_free(&p->error);
		free(p);
	}
}

void authd_poll_start(struct authd *ad)
{
	uv_timer_init(ad->loop, &ad->poll_timer);
	ad->poll_timer.data = ad;
	ad->last_expire = uv_now(ad->loop);
	uv_timer_start(&ad->poll_timer, poll_tick, AUTHD_POLL_MS,
		       AUTHD_POLL_MS);
}

void authd_poll_stop(struct authd *ad)
{
	if (!uv_is_closing((uv_handle_t *)&ad->poll_timer))
		uv_close((uv_handle_t *)&ad->poll_timer, NULL);
}
