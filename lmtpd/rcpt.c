/* rcpt.c: see rcpt.h. */
#include "config.h"

#include <stdarg.h>
#include <stdlib.h>
#include <strings.h>

#include "compat.h"
#include "authclient.h"
#include "ipc.h"
#include "lmtpd.h"
#include "log.h"
#include "rcpt.h"
#include "storeasync.h"
#include "str.h"
#include "xalloc.h"

#define REPLY_MAX 1024

struct rcpt_job {
	struct lmtpd *ld;
	char id[16];
	char *address;
	char *detail;		/* the +tag, or NULL */
	uint64_t size;
	rcpt_check_cb *cb;
	void *ctx;
	struct rcpt *r;		/* the targets being checked */
	size_t cur;		/* the one being checked now */
	size_t kept;		/* targets kept so far (compacted) */
	struct str *drop;	/* the reply when every member is left out */
};

void rcpt_free(struct rcpt **rp)
{
	struct rcpt *r = *rp;

	*rp = NULL;
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->ntargets; i++) {
		free(r->targets[i].address);
		free(r->targets[i].folder);
	}
	free(r->targets);
	free(r->address);
	free(r);
}

/* Ends the job with a reply; the recipient goes with a 250. */
static void job_end(struct rcpt_job *job, const char *fmt, ...)
	TERN_PRINTF(2, 3);

static void job_end(struct rcpt_job *job, const char *fmt, ...)
{
	struct str *reply = str_new(128, REPLY_MAX);
	struct rcpt *accepted = NULL;
	va_list ap;

	va_start(ap, fmt);
	(void)str_vsetf(reply, fmt, ap);
	va_end(ap);
	if (str_c(reply)[0] == '2') {
		accepted = job->r;
		accepted->ntargets = job->kept;
		job->r = NULL;
	}
	job->cb(str_c(reply), accepted, job->ctx);
	str_free(&reply);
	rcpt_free(&job->r);
	str_free(&job->drop);
	free(job->detail);
	free(job->address);
	free(job);
}

static void end_tempfail_dir(struct rcpt_job *job, const char *error)
{
	log_warn(job->id, "RCPT <%s>: directory: %s", job->address,
		 error != NULL ? error : "unavailable");
	job_end(job, "451 4.3.0 <%s>: directory unavailable, try again later",
		job->address);
}

static void end_tempfail_store(struct rcpt_job *job, const char *error)
{
	log_warn(job->id, "RCPT <%s>: store: %s", job->address,
		 error != NULL ? error : "unavailable");
	job_end(job, "451 4.3.0 <%s>: mail store unavailable, try again later",
		job->address);
}

/* A member that cannot take the mail now: refuses a plain recipient,
 * leaves a member of an expansion out (the others still get it). */
static void job_drop(struct rcpt_job *job, const char *why,
		     const char *fmt, ...) TERN_PRINTF(3, 4);

static void job_drop(struct rcpt_job *job, const char *why,
		     const char *fmt, ...)
{
	struct rcpt_target *t = &job->r->targets[job->cur];
	va_list ap;

	if (str_len(job->drop) == 0) {
		va_start(ap, fmt);
		(void)str_vsetf(job->drop, fmt, ap);
		va_end(ap);
	}
	if (job->r->ntargets > 1)
		log_info(job->id, "to=<%s>, orig_to=<%s>, relay=none, "
			 "status=bounced (%s; left out of the expansion)",
			 t->address, job->address, why);
	free(t->address);
	free(t->folder);
	t->address = t->folder = NULL;
}

static void next_target(struct rcpt_job *job);

static void keep_target(struct rcpt_job *job, const char *folder)
{
	struct rcpt_target *t = &job->r->targets[job->cur];

	free(t->folder);
	t->folder = xstrdup(folder);
	if (job->kept != job->cur) {
		job->r->targets[job->kept] = *t;
		t->address = t->folder = NULL;
	}
	job->kept++;
	job->cur++;
	next_target(job);
}

/* The folder named by the tag: exactly, else without regard to case
 * (the directory hands the tag over lower-cased); NULL when none. */
static const char *find_folder(struct ipc_msg *const *frames,
			       size_t nframes, const char *tag)
{
	const char *name, *fold = NULL;

	for (size_t i = 0; i < nframes; i++) {
		if (ipc_msg_get_cstr(frames[i], "name", &name) < 0)
			continue;
		if (strcmp(name, tag) == 0)
			return name;
		if (fold == NULL && strcasecmp(name, tag) == 0)
			fold = name;
	}
	return fold;
}

static void on_folders(enum storeasync_status st,
		       struct ipc_msg *const *frames, size_t nframes,
		       const struct ipc_msg *final, const char *code,
		       const char *error, void *ctx)
{
	struct rcpt_job *job = ctx;
	const char *folder;

	if (st == STOREASYNC_TEMPFAIL) {
		end_tempfail_store(job, error);
		return;
	}
	if (st != STOREASYNC_OK) {
		end_tempfail_store(job, code);
		return;
	}
	folder = find_folder(frames, nframes, job->detail);
	keep_target(job, folder != NULL ? folder : "");
}

static void check_folder(struct rcpt_job *job)
{
	struct rcpt_target *t = &job->r->targets[job->cur];
	struct ipc_msg *m;

	if (job->detail == NULL || !job->ld->plus_folder ||
	    job->detail[0] == '\0') {
		keep_target(job, "");
		return;
	}
	m = ipc_msg_new("folder.list");
	ipc_msg_add_int(m, "account", t->account);
	ipc_msg_add_cstr(m, "address", t->address);
	storeasync_request(job->ld->store, &m, STOREASYNC_IDEMPOTENT,
			   on_folders, job);
}

static void over_quota(struct rcpt_job *job)
{
	if (job->ld->quota_permanent)
		job_drop(job, "mailbox full", "552 5.2.2 <%s>: mailbox full",
			 job->address);
	else
		job_drop(job, "mailbox full", "452 4.2.2 <%s>: mailbox full, "
			 "try again later", job->address);
	job->cur++;
	next_target(job);
}

static void on_quota(enum storeasync_status st,
		     struct ipc_msg *const *frames, size_t nframes,
		     const struct ipc_msg *final, const char *code,
		     const char *error, void *ctx)
{
	struct rcpt_job *job = ctx;
	struct rcpt_target *t = &job->r->targets[job->cur];
	uint64_t need = job->size > 0 ? job->size : 1;
	int64_t used;

	if (st != STOREASYNC_OK) {
		end_tempfail_store(job, error);
		return;
	}
	if (ipc_msg_get_int(final, "used", &used) < 0 || used < 0) {
		end_tempfail_store(job, "quota answer without usage");
		return;
	}
	if ((uint64_t)used + need > (uint64_t)t->quota) {
		over_quota(job);
		return;
	}
	check_folder(job);
}

static void on_lookup(enum authclient_status st,
		      const struct authclient_account *acct,
		      const char *error, void *ctx)
{
	struct rcpt_job *job = ctx;
	struct rcpt_target *t = &job->r->targets[job->cur];
	struct ipc_msg *m;

	if (st == AUTHCLIENT_TEMPFAIL) {
		end_tempfail_dir(job, error);
		return;
	}
	if (st != AUTHCLIENT_OK) {
		/* Deleted since the resolution: as unknown. */
		job_drop(job, "no such user", "550 5.1.1 <%s>: no such user "
			 "here", job->address);
	} else if (acct->status != DIR_ACCOUNT_ACTIVE) {
		job_drop(job, "mailbox disabled", "550 5.2.1 <%s>: mailbox "
			 "disabled", job->address);
	} else {
		t->quota = acct->quota_effective > INT64_MAX ?
				   INT64_MAX : (int64_t)acct->quota_effective;
		if (t->quota == 0) {
			check_folder(job);
			return;
		}
		m = ipc_msg_new("quota.get");
		ipc_msg_add_int(m, "account", t->account);
		ipc_msg_add_cstr(m, "address", t->address);
		storeasync_request(job->ld->store, &m, STOREASYNC_IDEMPOTENT,
				   on_quota, job);
		return;
	}
	job->cur++;
	next_target(job);
}

static void next_target(struct rcpt_job *job)
{
	if (job->cur < job->r->ntargets) {
		authclient_lookup(job->ld->auth,
				  job->r->targets[job->cur].address,
				  on_lookup, job);
		return;
	}
	if (job->kept == 0) {
		job_end(job, "%s", str_c(job->drop));
		return;
	}
	job_end(job, "250 2.1.5 <%s> OK", job->address);
}

/* Refuses the whole recipient when any target is not ours to deliver;
 * 0 when all are local accounts on this server. */
static int check_targets(struct rcpt_job *job,
			 const struct authclient_resolution *res)
{
	for (size_t i = 0; i < res->ntargets; i++) {
		const struct authclient_target *t = &res->targets[i];

		if (t->kind == DIR_TARGET_EXTERNAL) {
			job_end(job, "550 5.3.3 <%s>: expands to <%s>, "
				"outside our domains; LMTP delivers to local "
				"mailboxes only", job->address, t->address);
			return -1;
		}
		if (!lmtpd_host_is_local(job->ld, t->mailhost)) {
			job_end(job, "451 4.3.0 <%s>: mailbox is on %s",
				job->address, t->mailhost);
			return -1;
		}
	}
	if (res->ntargets > STOREASYNC_RCPT_MAX) {
		job_end(job, "550 5.5.3 <%s>: expands to more than %u "
			"mailboxes", job->address, STOREASYNC_RCPT_MAX);
		return -1;
	}
	return 0;
}

static void on_resolved(enum authclient_status st,
			const struct authclient_resolution *res,
			const char *error, void *ctx)
{
	struct rcpt_job *job = ctx;
	struct rcpt *r;

	switch (st) {
	case AUTHCLIENT_OK:
		break;
	case AUTHCLIENT_NOTFOUND:
		job_end(job, "550 5.1.1 <%s>: no such user here",
			job->address);
		return;
	case AUTHCLIENT_INVALID:
		job_end(job, "501 5.1.3 <%s>: bad address syntax",
			job->address);
		return;
	default:
		end_tempfail_dir(job, error);
		return;
	}
	if (!res->local_domain) {
		job_end(job, "550 5.3.3 <%s>: not one of our domains; LMTP "
			"delivers to local mailboxes only", job->address);
		return;
	}
	if (res->ntargets == 0) {
		job_end(job, "550 5.1.1 <%s>: no mailbox behind this address",
			job->address);
		return;
	}
	if (check_targets(job, res) < 0)
		return;
	r = job->r;
	r->targets = xcalloc(res->ntargets, sizeof(*r->targets));
	r->ntargets = res->ntargets;
	for (size_t i = 0; i < res->ntargets; i++) {
		r->targets[i].account = res->targets[i].account_id;
		r->targets[i].address = xstrdup(res->targets[i].address);
	}
	if (res->detail != NULL)
		job->detail = xstrdup(res->detail);
	next_target(job);
}

void rcpt_check(struct lmtpd *ld, const char *id, const char *address,
		uint64_t size, rcpt_check_cb *cb, void *ctx)
{
	struct rcpt_job *job = xcalloc(1, sizeof(*job));

	job->ld = ld;
	str_lcpy(job->id, id, sizeof(job->id));
	job->address = xstrdup(address);
	job->size = size;
	job->cb = cb;
	job->ctx = ctx;
	job->r = xcalloc(1, sizeof(*job->r));
	job->r->address = xstrdup(address);
	job->drop = str_new(128, REPLY_MAX);
	authclient_resolve(ld->auth, address, on_resolved, job);
}
