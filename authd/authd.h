/*
 * authd.h: tern-authd's shared state, between its modules.
 *
 * main.c     the service skeleton glue: settings, start, reload, stop
 * server.c   client channels: request schemas, dispatch, replies, anvil
 * job.c      the directory work on the libuv thread pool: lookups,
 *            password checks, and the serial poll that drives the cache
 *
 * Threads: everything here runs on the loop thread, except the work
 * functions of job.c, which touch only their struct authd_job and one
 * directory handle each, taken from the pool (dirs, under dir_lock).
 * Internal to tern-authd.
 */
#ifndef TERN_AUTHD_H
#define TERN_AUTHD_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "compat.h"
#include "anvil.h"
#include "cache.h"
#include "dir.h"
#include "dir_ext.h"
#include "str.h"

#define AUTHD_PROTO "tern-authd"
#define AUTHD_VERSION 1
#define AUTHD_POLL_MS 250		/* dir_serial poll interval */
#define AUTHD_EXPIRE_MS 10000		/* anvil sweep interval */
#define AUTHD_PASSWORD_MAX 4096
#define AUTHD_SERVICE_MAX 32
#define AUTHD_RIP_MAX 64
#define AUTHD_EVENTS_MAX 100000	/* events one "event" request may add */
#define AUTHD_AUTH_WAIT_MAX 4096	/* password checks queued, at most */
#define AUTHD_ERROR_MAX 1024
#define AUTHD_DIRS_MAX 64		/* directory handles, at most */

struct svc;
struct authd_client;

struct authd {
	struct svc *svc;
	uv_loop_t *loop;
	struct anvil *anvil;
	struct cache *cache;
	size_t max_frame;

	/* The directory handles: one per pool thread, so that lookups run in
	 * parallel (each LDAP handle is a connection of its own); a work
	 * function takes one for its calls. */
	pthread_mutex_t dir_lock;	/* dir_busy */
	pthread_cond_t dir_free;
	struct dir *dirs[AUTHD_DIRS_MAX];	/* NULL: SQLite not open yet */
	bool dir_busy[AUTHD_DIRS_MAX];
	uint64_t dir_gen[AUTHD_DIRS_MAX];	/* gen when last taken */
	uint64_t gen;			/* moves with the serial (dir_lock) */
	unsigned ndirs;
	char *dir_path;
	uint64_t serial;		/* last seen dir_serial() */
	uint64_t polls;			/* serial checks done */
	bool have_serial;
	bool dir_down;			/* logged as unavailable */
	struct dir_ext *ext;		/* ext_ldap_*: own lock; NULL: none */

	uv_timer_t poll_timer;
	bool poll_busy;
	uint64_t last_expire;

	struct authd_client *clients;	/* open channels */
	struct authd_job *delayed;	/* failed replies waiting on a timer */
	struct authd_job *wait_head, *wait_tail; /* checks waiting for a slot */
	size_t waiting;
	unsigned int auth_running, auth_slots;
	uint64_t lockout_ms;		/* for the lockout log line */
	uint64_t client_ttl_ms;		/* authclient_cache_ttl (watchers) */
	uint64_t requests[6];		/* by enum authd_job_kind, + gal */
	bool stopping;
};

enum authd_job_kind {
	JOB_LOOKUP,
	JOB_RESOLVE,
	JOB_DOMAIN,
	JOB_AUTH,
	JOB_GAL,
};

/* One request handed to the thread pool.  Inputs are set by server.c;
 * job.c fills status, value, reason and error. */
struct authd_job {
	uv_work_t work;
	struct authd *ad;
	struct authd_client *client;	/* holds a reference */
	struct authd_job *prev, *next;	/* wait queue or delayed list */
	enum authd_job_kind kind;
	uint32_t id;
	uint64_t generation;		/* cache generation at start */
	char *key;	/* normalized address or domain; NULL: invalid */
	char *user;	/* JOB_AUTH: as given, for the log */
	char *password;	/* JOB_AUTH: wiped after the check */
	char *service, *rip;
	size_t limit;	/* JOB_GAL: the search text is in key */
	/* results */
	enum dir_status status;
	struct cache_value value;	/* JOB_AUTH: account on DIR_OK */
	const char *reason;		/* JOB_AUTH failures, for the log */
	struct dir_gal_entry **gal;	/* JOB_GAL on DIR_OK */
	size_t ngal;
	struct str *error;
	uv_timer_t timer;		/* the delay of a failed reply */
};

/* job.c */
void authd_job_start(struct authd_job *job);
/* Start-up work on the thread pool (the dummy hash of unknown users). */
void authd_job_prepare(struct authd *ad);
void authd_poll_start(struct authd *ad);
void authd_poll_stop(struct authd *ad);
/* Opens the directory now (start-up, before serving); logs failures. */
void authd_dir_open(struct authd *ad);
void authd_dir_close(struct authd *ad);

/* server.c */
void authd_server_accept(struct authd *ad, uv_stream_t *listener);
void authd_server_job_done(struct authd_job *job);
void authd_server_stop(struct authd *ad);
/* Tells every client that asked ("watch") to drop its cache: the
 * directory changed, or the cache's time to live did. */
void authd_server_invalidate(struct authd *ad);
void authd_job_free(struct authd_job **job);

#endif
