/*
 * tern-echod: a line echo daemon on the service skeleton, for tests only.
 *
 * It exercises what every protocol daemon builds on: inherited listeners,
 * sessions on struct conn, the line reader, STARTTLS (plaintext pipelined
 * after STARTTLS is dropped), implicit TLS (-T), drain on stop.  Protocol:
 * greeting "+OK tern-echod ready"; "STARTTLS" -> "+OK begin TLS" and the
 * upgrade; "QUIT" -> "+OK bye"; any other line L -> "ECHO L".  -X makes the
 * process exit with status 1 right after start (a crash loop for tests).
 */
#include "config.h"

#include <stdlib.h>

#include "compat.h"
#include "conn.h"
#include "linereader.h"
#include "log.h"
#include "str.h"
#include "svc.h"
#include "tls.h"
#include "xalloc.h"

#define ECHO_LINE_MAX 1024

struct echo_session {
	struct svc *svc;
	struct conn *conn;
	struct linereader *lr;
	char id[16];
};

static int implicit_tls;
static int crash_at_start;

static void echo_reply(struct echo_session *s, const char *text)
{
	if (conn_write_c(s->conn, text) < 0 || conn_write_c(s->conn, "\r\n") < 0)
		conn_abort(s->conn, "write failed");
}

/* 1 when the rest of the current chunk must be dropped. */
static int echo_command(struct echo_session *s, const char *line, size_t len)
{
	struct str *out;
	const char *error;

	if (len == 8 && strncmp(line, "STARTTLS", 8) == 0) {
		if (conn_tls(s->conn) != NULL) {
			echo_reply(s, "-ERR TLS already active");
			return 0;
		}
		if (svc_tls_server(s->svc) == NULL) {
			echo_reply(s, "-ERR TLS not available");
			return 0;
		}
		echo_reply(s, "+OK begin TLS");
		if (conn_start_tls(s->conn, svc_tls_server(s->svc), NULL,
				   &error) < 0) {
			conn_abort(s->conn, error);
			return 1;
		}
		linereader_reset(s->lr);
		return 1;
	}
	if (len == 4 && strncmp(line, "QUIT", 4) == 0) {
		echo_reply(s, "+OK bye");
		conn_close(s->conn, NULL);
		return 1;
	}
	out = str_new(len + 8, ECHO_LINE_MAX + 8);
	if (str_append_c(out, "ECHO ") == 0 && str_append(out, line, len) == 0)
		echo_reply(s, str_c(out));
	str_free(&out);
	return 0;
}

static void echo_read(struct conn *c, const char *data, size_t len)
{
	struct echo_session *s = conn_ctx(c);
	const char *pos = data, *end = data + len;
	struct linereader_line line;
	int r;

	while (!conn_closing(c) &&
	       (r = linereader_feed(s->lr, &pos, end, &line)) !=
		       LINEREADER_MORE) {
		if (r == LINEREADER_TOO_LONG) {
			echo_reply(s, "-ERR line too long");
			continue;
		}
		if (r == LINEREADER_LINE &&
		    echo_command(s, line.data, line.len))
			break;
	}
}

static void echo_tls(struct conn *c)
{
	struct echo_session *s = conn_ctx(c);
	struct str *desc = str_new(64, 512);

	if (tls_engine_describe(conn_tls(c), desc) == 0)
		log_info(s->id, "TLS established from %s: %s",
			 conn_peer_address(c), str_c(desc));
	str_free(&desc);
}

static void echo_closed(struct conn *c, const char *reason)
{
	struct echo_session *s = conn_ctx(c);

	log_info(s->id, "disconnect from %s%s%s", conn_peer_address(c),
		 reason != NULL ? ": " : "", reason != NULL ? reason : "");
	linereader_free(&s->lr);
	svc_session_closed(s->svc);
	free(s);
}

static const struct conn_ops echo_ops = {
	.on_read = echo_read,
	.on_close = echo_closed,
	.on_tls = echo_tls,
};

static void echo_accept(struct svc *svc, uv_stream_t *client, int listener)
{
	struct echo_session *s = xcalloc(1, sizeof(*s));
	const char *error;

	s->svc = svc;
	svc_new_id(s->id);
	s->lr = linereader_new(ECHO_LINE_MAX);
	s->conn = conn_new(svc_loop(svc), client, &echo_ops, s, s->id);
	svc_session_opened(svc);
	log_info(s->id, "connect from %s", conn_peer_address(s->conn));
	if (implicit_tls) {
		if (svc_tls_server(svc) == NULL ||
		    conn_start_tls(s->conn, svc_tls_server(svc), NULL,
				   &error) < 0) {
			conn_abort(s->conn, "TLS not available");
			return;
		}
	}
	echo_reply(s, "+OK tern-echod ready");
}

static int echo_getopt(struct svc *svc, int opt, const char *arg)
{
	if (opt == 'T')
		implicit_tls = 1;
	else if (opt == 'X')
		crash_at_start = 1;
	else
		return -1;
	return 0;
}

static int echo_init(struct svc *svc, const char **error_r)
{
	if (crash_at_start) {
		log_error(NULL, "exiting at start as asked (-X)");
		exit(1);
	}
	return 0;
}

static int echo_pre_drop(struct svc *svc, const char **error_r)
{
	(void)svc_tls_server(svc);	/* the key may be readable by root only */
	return 0;
}

static const struct svc_spec echo_spec = {
	.name = "echod",
	.optstring = "TX",
	.getopt = echo_getopt,
	.pre_drop = echo_pre_drop,
	.init = echo_init,
	.on_accept = echo_accept,
};

int main(int argc, char **argv)
{
	return svc_main(argc, argv, &echo_spec);
}
