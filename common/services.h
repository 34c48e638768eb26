/*
 * services.h: services.conf, tern-master's table of the services it runs.
 *
 * One service per logical line (a line starting with whitespace continues
 * the previous one; "#" starts a whole-line comment):
 *
 *   NAME TYPE LISTEN PROCS ENABLED [OPTION=VALUE...] COMMAND [ARG...]
 *
 * TYPE is inet (LISTEN = HOST:PORT,[IPV6]:PORT,*:PORT...), unix (LISTEN = a
 * socket path, relative = under the instance root) or proc (LISTEN = "-",
 * no socket).  PROCS is 1..256 or "-" (one per CPU core).  The options are
 * ready=tcp:HOST:PORT|unix:PATH|ldap:HOST:PORT|ldapi:PATH (the ldap forms
 * wait for an answer to an LDAP search), external=yes|no, drain=DURATION,
 * mode=OCTAL and backlog=N; the first other word is the command.  Words are
 * split at whitespace; double quotes and backslash escapes keep whitespace
 * in a word.  docs/services.md describes the format and the defaults.
 *
 * Limits: SERVICES_LINE_MAX bytes per line, SERVICES_FILE_MAX per file,
 * SERVICES_MAX services, SERVICES_LISTEN_MAX addresses per service,
 * SERVICES_ARGS_MAX words of command and arguments.
 *
 * Callers: tern-master (load, and services_equal() on reload), ternctl
 * (setup writes the default table with services_write_default(); status).
 * tern_port() is the one port-base mapping for the whole suite.
 */
#ifndef TERN_SERVICES_H
#define TERN_SERVICES_H

#include <stdbool.h>
#include <stddef.h>

#include "compat.h"
#include "str.h"

#define SERVICES_LINE_MAX 8192
#define SERVICES_FILE_MAX (1024 * 1024)
#define SERVICES_MAX 256
#define SERVICES_LISTEN_MAX 16
#define SERVICES_ARGS_MAX 64
#define SERVICE_NAME_MAX 32
#define SERVICE_PROCS_MAX 256
#define SERVICE_MODE_DEFAULT 0660	/* unix socket permissions */
#define SERVICE_BACKLOG_DEFAULT 511

enum service_type {
	SERVICE_INET,
	SERVICE_UNIX,
	SERVICE_PROC,
};

/* A listening or probed address.  family: AF_INET or AF_INET6 (host is the
 * numeric address in canonical form), AF_UNSPEC ("*", every address; host
 * is "*") or AF_UNIX (path is absolute, host is NULL). */
struct service_addr {
	int family;
	char *host;
	unsigned port;
	char *path;
};

/* One line of the table (read-only for callers). */
struct service {
	char *name;
	enum service_type type;
	struct service_addr *listen;	/* nlisten entries; none for proc */
	size_t nlisten;
	unsigned procs;		/* 0 = one per CPU core ("-") */
	bool enabled;
	bool external;		/* no Tern fds, no status protocol */
	bool has_ready;		/* ready= given: probe it */
	struct service_addr ready;	/* AF_INET, AF_INET6 or AF_UNIX */
	bool ready_ldap;	/* ready=ldap...: an LDAP search answers */
	long long drain_ms;	/* -1 = drain_timeout from tern.conf */
	unsigned mode;		/* unix: socket permissions */
	unsigned backlog;	/* inet and unix: listen(2) backlog */
	char **argv;		/* argc words, then NULL */
	size_t argc;
	char *file;		/* where it was defined */
	unsigned line;
};

struct services;

/* root: the instance root (absolute); a relative path is under it.  On
 * error returns -1 with "FILE:LINE: problem (expected FORM)" in error. */
int services_load(const char *root, const char *path,
		  struct services **table_r, struct str *error) TERN_WUR;
/* The same from memory; name is used in messages. */
int services_load_buffer(const char *root, const char *name, const void *buf,
			 size_t len, struct services **table_r,
			 struct str *error) TERN_WUR;
void services_free(struct services **table);

/* Services in file order. */
size_t services_count(const struct services *table);
const struct service *services_get(const struct services *table, size_t i);
/* NULL when there is no service of that name. */
const struct service *services_find(const struct services *table,
				    const char *name);

/* Whether two definitions are the same but for where they were written
 * (the listen list compares in order). */
bool services_equal(const struct service *a, const struct service *b);
bool services_addr_equal(const struct service_addr *a,
			 const struct service_addr *b);
/* "127.0.0.1:25", "[::1]:25", "*:25" or the path. */
int services_addr_format(struct str *out, const struct service_addr *addr)
	TERN_WUR;
/* procs, with "-" resolved to the number of online CPUs (1..256). */
unsigned services_procs(const struct service *svc);
const char *services_type_name(enum service_type type);

/*
 * The port-base mapping: with port_base 0 every service keeps its standard
 * port; otherwise a standard port P below 1000 becomes port_base + P and
 * any other P becomes port_base + 1000 + P % 1000 (SMTP 25 -> base + 25,
 * backend IMAP 7143 -> base + 1143, memcached 11211 -> base + 1211).  It is
 * collision-free over Tern's standard ports.  Returns 0 when the result is
 * not in 1..65535; every standard port fits for port_base up to
 * TERN_PORT_BASE_MAX.
 */
#define TERN_PORT_BASE_MAX 63540
unsigned tern_port(unsigned port_base, unsigned standard_port);

/*
 * The site's map of mailbox servers (proxy_servers: entries
 * "NAME=ADDRESS" or "NAME=ADDRESS:PORT_BASE", ADDRESS possibly "[IPv6]"):
 * true when an entry names mail host name (any case), with its address
 * appended to host and its port base in *port_base_r (0 when none or
 * invalid).  Used by tern-proxyd (IMAP, POP3) and tern-qmgr (LMTP).
 */
bool tern_server_find(char *const *entries, size_t n, const char *name,
		      struct str *host, unsigned *port_base_r);

/* Tern's standard ports, for docs and tests. */
struct tern_std_port {
	const char *name;	/* "smtp", "imap-backend", ... */
	unsigned port;
	const char *what;
};
const struct tern_std_port *tern_std_ports(size_t *count_r);

/*
 * Writes a default services.conf: a line for each known service whose
 * program is in installed (program names such as "tern-imapd", NULL-
 * terminated; NULL = none), with ports mapped by tern_port(), then
 * commented-out examples of external programs.  -1 when out is full or
 * port_base is above TERN_PORT_BASE_MAX.
 */
int services_write_default(struct str *out, unsigned port_base,
			   const char *const *installed) TERN_WUR;

#endif
