/*
 * tern-stored: the mailbox store, sole owner of the metadata and the blobs
 * of the accounts homed on this server.
 *
 * A thin main on the service skeleton: init starts the writer thread
 * (commit.c), which opens and recovers the store before the master hears
 * "ready"; sessions (session.c) speak the protocol of
 * docs/protocols/stored.md on the "stored" unix socket; on stop, idle
 * clients are closed, busy ones are answered first, then the writer
 * finishes and the daemon exits.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "compat.h"
#include "cfg.h"
#include "log.h"
#include "notify.h"
#include "stored.h"
#include "str.h"
#include "svc.h"
#include "xalloc.h"

static struct stored stored_state;

/* mkdir -p of the folder that holds path (mode 0750). */
static int make_parent(const char *path, struct str *error)
{
	struct str *p = str_new(256, 8192);
	char *slash;
	int r = 0;

	if (str_append_c(p, path) < 0) {
		str_free(&p);
		return -1;
	}
	slash = strrchr(str_data(p), '/');
	for (char *q = str_data(p) + 1; slash != NULL && q <= slash; q++) {
		if (*q != '/')
			continue;
		*q = '\0';
		if (mkdir(str_c(p), 0750) < 0 && errno != EEXIST) {
			if (str_printf(error, "mkdir %s: %s", str_c(p),
				       strerror(errno)) < 0)
				str_clear(error);
			r = -1;
			break;
		}
		*q = '/';
	}
	str_free(&p);
	return r;
}

static int stored_init(struct svc *svc, const char **error_r)
{
	static char message[4096];
	const struct cfg *cfg = svc_config(svc);
	struct stored *d = &stored_state;
	struct commit_settings set = {
		.meta_path = cfg_str(cfg, OPT_STORE_META_FILE),
		.store_dir = cfg_str(cfg, OPT_STORE_DIR),
		.batch_max = (unsigned)cfg_int(cfg, OPT_STORE_BATCH_MAX),
		.fetch_max = (unsigned)cfg_int(cfg, OPT_STORE_FETCH_MAX),
		.key_lifetime = (int64_t)(cfg_duration(
			cfg, OPT_STORE_DELIVERY_KEY_LIFETIME) / 1000),
	};
	struct str *error = str_new(256, sizeof(message) - 1);
	int r;

	d->svc = svc;
	d->frame_max = (size_t)cfg_size(cfg, OPT_IPC_FRAME_MAX);
	d->requests_max = (unsigned)cfg_int(cfg,
					    OPT_STORE_CLIENT_REQUESTS_MAX);
	d->notify_backlog_max = (size_t)cfg_size(cfg,
						 OPT_STORE_NOTIFY_BACKLOG_MAX);
	d->hub = notify_hub_new();
	svc_set_ctx(svc, d);
	r = make_parent(set.meta_path, error);
	if (r == 0)
		r = make_parent(set.store_dir, error);
	if (r == 0)
		r = commit_start(svc_loop(svc), &set, session_op_done, d,
				 &d->commit, error);
	if (r == 0)
		r = reader_start(svc_loop(svc), &set, d->commit,
				 session_op_done, d, &d->reader, error);
	if (r < 0) {
		str_lcpy(message, str_c(error), sizeof(message));
		*error_r = message;
	} else {
		log_info(NULL, "store ready: metadata %s, blobs %s",
			 set.meta_path, set.store_dir);
	}
	str_free(&error);
	return r;
}

static void stored_accept(struct svc *svc, uv_stream_t *client, int listener)
{
	session_accept(svc_ctx(svc), client);
}

void stored_sessions_gone(struct stored *d)
{
	reader_stop(&d->reader);	/* it may pass ops to the writer */
	commit_stop(&d->commit);
}

static void stored_stop(struct svc *svc)
{
	struct stored *d = svc_ctx(svc);

	if (d == NULL)
		return;
	sessions_stop(d);
	if (d->nsessions == 0)
		stored_sessions_gone(d);
}

static void stored_deinit(struct svc *svc)
{
	struct stored *d = svc_ctx(svc);

	if (d == NULL)
		return;
	reader_stop(&d->reader);
	commit_stop(&d->commit);
	notify_hub_free(&d->hub);
}

static const struct svc_spec stored_spec = {
	.name = "stored",
	.init = stored_init,
	.on_accept = stored_accept,
	.on_stop = stored_stop,
	.deinit = stored_deinit,
};

int main(int argc, char **argv)
{
	return svc_main(argc, argv, &stored_spec);
}
