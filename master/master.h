/*
 * master.h: tern-master's shared state and the calls between its parts.
 *
 * main.c owns the process (pid file, signals, the loop), service.c the
 * services and their processes, control.c the control socket that ternctl
 * talks to (docs/protocols/master.md).  Only tern-master includes this.
 */
#ifndef TERN_MASTER_H
#define TERN_MASTER_H

#include <stdint.h>
#include <uv.h>

#include "compat.h"
#include "str.h"

struct cfg;
struct services;
struct ipc_chan;

#define MASTER_PROTO "tern-master"
#define MASTER_PROTO_VERSION 1

struct master {
	uv_loop_t *loop;
	char *root;
	char *conf_path;
	char *services_path;
	struct cfg *cfg;
	struct services *table;
	struct listen_pool *pool;
	struct svc_rt *services;	/* current and retiring */
	uv_signal_t sig_term, sig_int, sig_hup;
	uv_pipe_t control;
	int control_open;
	int stopping;
	uint64_t started_ms;
	char **base_env;		/* environ without TERN_* */
};

extern struct master master;

uint64_t master_now_ms(void);

/* service.c */
void services_rt_start(struct master *m);
/* Applies a new table and config; the old ones are freed by this call or
 * later, when no process uses them any more. */
void services_rt_apply(struct master *m, struct services *table);
void services_rt_stop(struct master *m);
/* While stopping: once only external services remain, stop them too. */
void services_rt_stop_externals(struct master *m);
int services_rt_all_gone(struct master *m);
/* Appends one status message per current service to a control channel. */
void services_rt_status(struct master *m, struct ipc_chan *chan,
			uint32_t id, int *all_ready_r);

/* main.c */
/* Re-reads tern.conf and services.conf: -1 with the message in error. */
int master_reload(struct master *m, struct str *error);
void master_stop(struct master *m);
void master_exit_if_done(struct master *m);

/* control.c */
int control_open(struct master *m, const char **error_r);
void control_close(struct master *m);

#endif
