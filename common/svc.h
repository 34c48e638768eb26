/*
 * svc.h: the daemon skeleton every Tern daemon's main() sits on.
 *
 * svc_main() parses the common arguments, loads tern.conf, opens the log,
 * adopts the listening sockets tern-master passed (fd 4 and up, count in
 * TERN_LISTEN_FDS), loads the TLS server context when the config has a
 * certificate, drops privileges to the configured user when started as root,
 * reports readiness to the master on the status fd (fd 3), and runs the libuv
 * loop.  Signals: SIGTERM/SIGINT = stop accepting and let open sessions drain
 * up to drain_timeout, then exit; SIGHUP = reload tern.conf and reopen the
 * log.  A daemon's main is a few lines: a struct svc_spec and svc_main().
 *
 * Common arguments: -r ROOT (or TERN_ROOT), -c FILE (tern.conf; default
 * ROOT/conf/tern.conf), -o key=value (a per-service override, repeatable),
 * -f (foreground debugging without a master: -l ADDR to listen yourself),
 * -d (log level debug).  Unknown options go to spec->getopt.
 */
#ifndef TERN_SVC_H
#define TERN_SVC_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "compat.h"

struct svc;
struct cfg;
struct tls_ctx;

struct svc_spec {
	const char *name;		/* "imapd": log ident and process title */
	const char *optstring;		/* the daemon's own getopt letters */
	/* Returns -1 for a bad option (usage is printed). */
	int (*getopt)(struct svc *svc, int opt, const char *arg);
	/* Before the privilege drop: open what only root may. */
	int (*pre_drop)(struct svc *svc, const char **error_r);
	/* After the drop: connect to peers, allocate state. */
	int (*init)(struct svc *svc, const char **error_r);
	/* A new connection accepted on listener index (0-based). */
	void (*on_accept)(struct svc *svc, uv_stream_t *client, int listener);
	/* tern.conf was re-read (the new config is already in place). */
	void (*on_reload)(struct svc *svc);
	/* Stop was asked: close idle sessions, finish busy ones. */
	void (*on_stop)(struct svc *svc);
	/* Stopping and no session is left (called once): close connections
	 * to other daemons (authd, stored) so that the loop can end. */
	void (*on_drained)(struct svc *svc);
	/* Called once when the loop has ended, to free state. */
	void (*deinit)(struct svc *svc);
};

int svc_main(int argc, char **argv, const struct svc_spec *spec);

uv_loop_t *svc_loop(struct svc *svc);
const struct cfg *svc_config(struct svc *svc);
const char *svc_root(struct svc *svc);
const char *svc_name(struct svc *svc);		/* service name from the table */
void *svc_ctx(struct svc *svc);
void svc_set_ctx(struct svc *svc, void *ctx);
/* The value of -o key=value, or NULL. */
const char *svc_override(struct svc *svc, const char *key);
/* The server TLS context from tls_cert_file/tls_key_file, or NULL when the
 * certificate is not configured or failed to load (the error was logged). */
struct tls_ctx *svc_tls_server(struct svc *svc);

/*
 * Whether the service speaks TLS from the first byte: true when its name is
 * implicit_name ("imaps") or starts with implicit_name and '-'
 * ("imaps-backend"), unless -o tls=implicit|starttls says otherwise.  -1
 * with *error_r for a bad -o value, or implicit TLS without a certificate.
 */
int svc_tls_mode(struct svc *svc, const char *implicit_name, bool *implicit_r,
		 const char **error_r) TERN_WUR;
/* An enum setting with its -o key=value override: the index of the
 * override in words (any case), else cfg_value (a bad override is logged
 * and ignored). */
int svc_enum_setting(struct svc *svc, const char *key, unsigned cfg_value,
		     const char *const *words, size_t nwords);

/*
 * Plaintext logins (pop3_plaintext_auth, imap_plaintext_auth, ...): the
 * values of the option in its order, and whether a login may happen on a
 * connection: always under TLS; without it as the setting says, where
 * loopback means a client on 127.0.0.0/8, ::1 or a unix socket (peer as
 * conn_peer_address() gives it).
 */
enum svc_plaintext {
	SVC_PLAINTEXT_NO = 0,
	SVC_PLAINTEXT_LOOPBACK,
	SVC_PLAINTEXT_YES,
};
#define SVC_PLAINTEXT_WORDS { "no", "loopback", "yes" }
bool svc_plaintext_allowed(enum svc_plaintext setting, bool tls,
			   const char *peer);
/* The setting from tern.conf, or the service's -o key=... override. */
enum svc_plaintext svc_plaintext_setting(struct svc *svc, const char *key,
					 unsigned cfg_value);

/*
 * The client sessions of a protocol daemon: struct svc_session is the
 * first member of the daemon's session struct.  The skeleton keeps the
 * open sessions in a list (svc_session_first(), then ->next) and counts
 * them for the drain on stop.  holds counts what may still call back into
 * the session (its connection, timers, requests in flight: take one with
 * ss->holds++); svc_session_put() drops one and, at the last, takes the
 * session off the list and returns true: the caller then frees it.
 */
struct svc_session {
	struct svc_session *prev, *next;
	unsigned holds;
};

void svc_session_add(struct svc *svc, struct svc_session *ss,
		     unsigned holds);
bool svc_session_put(struct svc *svc, struct svc_session *ss) TERN_WUR;
struct svc_session *svc_session_first(struct svc *svc);

/* Session accounting for the drain on stop: the loop ends when stopping and
 * no session is open, or at the drain deadline.  (svc_session_add and
 * svc_session_put do this for listed sessions.) */
void svc_session_opened(struct svc *svc);
void svc_session_closed(struct svc *svc);
size_t svc_sessions(struct svc *svc);
int svc_stopping(struct svc *svc);

/* Unique session id: 10 hex digits, different across processes and time. */
void svc_new_id(char id[static 16]);

#endif
