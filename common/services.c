/* services.c: see services.h. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "compat.h"
#include "cfg.h"
#include "services.h"
#include "str.h"
#include "xalloc.h"

#define ERROR_MAX 8192
/* NAME TYPE LISTEN PROCS ENABLED, the options, COMMAND and its arguments */
#define FIXED_FIELDS 5
#define OPTION_COUNT 5
#define WORDS_MAX (FIXED_FIELDS + OPTION_COUNT + SERVICES_ARGS_MAX)

struct services {
	struct service **svc;
	size_t count;
};

/* One logical line being parsed. */
struct svc_parse {
	const char *root, *file;
	unsigned line;
	struct str *error;
	char *words[WORDS_MAX];
	size_t nwords;
};

static const char line_form[] =
	"expected NAME TYPE LISTEN PROCS ENABLED [OPTION=VALUE...] COMMAND "
	"[ARG...]";

static const char inet_form[] =
	"expected HOST:PORT, [IPV6]:PORT or *:PORT with HOST an IPv4 address "
	"and PORT 1 to 65535, comma-separated, e.g. 127.0.0.1:7143,[::1]:7143";

/* ---- helpers ---- */

/*
 * Sets the error to "FILE:LINE: " + fmt and returns -1.  fmt knows only %s
 * and %u; a '%s' in single quotes is quoted with cfg_append_quoted().
 */
static int fail(struct svc_parse *sp, const char *fmt, ...)
{
	struct str *msg = str_new(256, ERROR_MAX);
	const char *p;
	va_list ap;
	size_t n;

	if ((sp->line > 0 ? str_printf(msg, "%s:%u: ", sp->file, sp->line) :
			    str_printf(msg, "%s: ", sp->file)) < 0)
		abort();
	va_start(ap, fmt);
	for (p = fmt; *p != '\0'; p++) {
		if (p[0] == '%' && p[1] == 's') {
			const char *arg = va_arg(ap, const char *);

			if ((p > fmt && p[-1] == '\'' ?
			     cfg_append_quoted(msg, arg) :
			     str_append_c(msg, arg)) < 0)
				break;
			p++;
		} else if (p[0] == '%' && p[1] == 'u') {
			if (str_printf(msg, "%u", va_arg(ap, unsigned)) < 0)
				break;
			p++;
		} else if (str_append_byte(msg, (unsigned char)*p) < 0) {
			break;
		}
	}
	va_end(ap);
	n = str_len(msg) < str_max(sp->error) ? str_len(msg) :
						    str_max(sp->error);
	if (str_set(sp->error, str_c(msg), n) < 0)
		str_clear(sp->error);
	str_free(&msg);
	return -1;
}

static bool name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > SERVICE_NAME_MAX)
		return false;
	return strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

/* ---- words ---- */

/* Splits the line into words: whitespace separates, "..." keeps it, a
 * backslash takes the next byte literally. */
static int split_words(struct svc_parse *sp, const char *p)
{
	struct str *w = str_new(64, SERVICES_LINE_MAX);

	for (;;) {
		bool quoted = false;

		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0')
			break;
		if (sp->nwords == WORDS_MAX) {
			str_free(&w);
			return fail(sp, "too many words (at most %u arguments)",
				    (unsigned)SERVICES_ARGS_MAX);
		}
		str_clear(w);
		for (; *p != '\0'; p++) {
			if (!quoted && (*p == ' ' || *p == '\t'))
				break;
			if (*p == '"') {
				quoted = !quoted;
				continue;
			}
			if (*p == '\\' && *++p == '\0') {
				str_free(&w);
				return fail(sp, "backslash at the end of the "
					    "line");
			}
			if (str_append_byte(w, (unsigned char)*p) < 0)
				abort();	/* the line itself fits */
		}
		if (quoted) {
			str_free(&w);
			return fail(sp, "unterminated double quote");
		}
		sp->words[sp->nwords++] = xstrdup(str_c(w));
	}
	str_free(&w);
	return 0;
}

/* ---- addresses ---- */

static void addr_clear(struct service_addr *a)
{
	free(a->host);
	free(a->path);
	a->host = NULL;
	a->path = NULL;
}

static int parse_port(const char *s, unsigned *port_r)
{
	unsigned long v = 0;

	if (*s == '\0' || strlen(s) > 5 || strspn(s, "0123456789") != strlen(s))
		return -1;
	v = strtoul(s, NULL, 10);
	if (v < 1 || v > 65535)
		return -1;
	*port_r = (unsigned)v;
	return 0;
}

/* HOST:PORT, [IPV6]:PORT, or *:PORT when star is allowed. */
static int parse_inet(const char *text, bool star, struct service_addr *a)
{
	const char *colon, *host = text;
	size_t hlen;
	unsigned char bin[sizeof(struct in6_addr)];
	char canon[INET6_ADDRSTRLEN], *h;
	int family;

	if (text[0] == '[') {
		const char *close = strchr(text, ']');

		if (close == NULL || close[1] != ':')
			return -1;
		host = text + 1;
		hlen = (size_t)(close - host);
		colon = close + 1;
		family = AF_INET6;
	} else {
		colon = strrchr(text, ':');
		if (colon == NULL)
			return -1;
		hlen = (size_t)(colon - text);
		family = AF_INET;
	}
	if (parse_port(colon + 1, &a->port) < 0)
		return -1;
	if (family == AF_INET && hlen == 1 && host[0] == '*' && star) {
		a->family = AF_UNSPEC;
		a->host = xstrdup("*");
		return 0;
	}
	h = xstrndup(host, hlen);
	if (inet_pton(family, h, bin) != 1 ||
	    inet_ntop(family, bin, canon, sizeof(canon)) == NULL) {
		free(h);
		return -1;
	}
	free(h);
	a->family = family;
	a->host = xstrdup(canon);
	return 0;
}

/* A socket path, relative = under root; it must fit in sun_path. */
static int parse_unix(const char *root, const char *text,
		      struct service_addr *a)
{
	struct sockaddr_un sun;
	size_t n = strlen(root);
	struct str *path = str_new(64, sizeof(sun.sun_path) - 1);

	if (text[0] == '\0' || strcmp(text, "-") == 0)
		goto bad;
	if (text[0] != '/' && (str_append_c(path, root) < 0 ||
			       (n > 0 && root[n - 1] != '/' &&
				str_append_byte(path, '/') < 0)))
		goto bad;
	if (str_append_c(path, text) < 0)
		goto bad;
	a->family = AF_UNIX;
	a->path = xstrdup(str_c(path));
	str_free(&path);
	return 0;
bad:
	str_free(&path);
	return -1;
}

bool services_addr_equal(const struct service_addr *a,
			 const struct service_addr *b)
{
	if (a->family != b->family)
		return false;
	if (a->family == AF_UNIX)
		return strcmp(a->path, b->path) == 0;
	return a->port == b->port && strcmp(a->host, b->host) == 0;
}

int services_addr_format(struct str *out, const struct service_addr *addr)
{
	if (addr->family == AF_UNIX)
		return str_append_c(out, addr->path);
	if (addr->family == AF_INET6)
		return str_printf(out, "[%s]:%u", addr->host, addr->port);
	return str_printf(out, "%s:%u", addr->host, addr->port);
}

/* ---- fields ---- */

static int parse_listen(struct svc_parse *sp, struct service *svc,
			const char *text)
{
	const char *p = text;

	if (svc->type == SERVICE_PROC) {
		if (strcmp(text, "-") != 0)
			return fail(sp, "bad listen field '%s' for a proc "
				    "service (expected -)", text);
		return 0;
	}
	if (svc->type == SERVICE_UNIX) {
		svc->listen = xcalloc(1, sizeof(*svc->listen));
		if (parse_unix(sp->root, text, &svc->listen[0]) < 0)
			return fail(sp, "bad listen path '%s' for a unix "
				    "service (expected a socket path, relative "
				    "to the instance root, of at most %u bytes "
				    "in full, e.g. run/authd.sock)", text,
				    (unsigned)(sizeof(((struct sockaddr_un *)0)
							      ->sun_path) - 1));
		svc->nlisten = 1;
		return 0;
	}
	svc->listen = xcalloc(SERVICES_LISTEN_MAX, sizeof(*svc->listen));
	for (;;) {
		size_t len = strcspn(p, ",");
		char *item = xstrndup(p, len);
		struct service_addr *a = &svc->listen[svc->nlisten];

		if (svc->nlisten == SERVICES_LISTEN_MAX) {
			free(item);
			return fail(sp, "more than %u listen addresses",
				    (unsigned)SERVICES_LISTEN_MAX);
		}
		if (parse_inet(item, true, a) < 0) {
			fail(sp, "bad listen address '%s' (%s)", item,
			     inet_form);
			free(item);
			return -1;
		}
		free(item);
		for (size_t i = 0; i < svc->nlisten; i++) {
			if (services_addr_equal(&svc->listen[i], a)) {
				addr_clear(a);
				return fail(sp, "listen address '%s' is given "
					    "twice", text);
			}
		}
		svc->nlisten++;
		if (p[len] == '\0')
			return 0;
		p += len + 1;
	}
}

static int parse_procs(struct svc_parse *sp, struct service *svc,
		       const char *text)
{
	long long v;

	if (strcmp(text, "-") == 0) {
		svc->procs = 0;
		return 0;
	}
	if (cfg_parse_int(text, &v) < 0 || v < 1 || v > SERVICE_PROCS_MAX)
		return fail(sp, "bad process count '%s' (expected 1 to %u, or "
			    "- for one per CPU core)", text,
			    (unsigned)SERVICE_PROCS_MAX);
	svc->procs = (unsigned)v;
	return 0;
}

static int parse_ready(struct svc_parse *sp, struct service *svc,
		       const char *value)
{
	int r = -1;

	svc->ready_ldap = strncmp(value, "ldap", 4) == 0;
	if (strncmp(value, "tcp:", 4) == 0)
		r = parse_inet(value + 4, false, &svc->ready);
	else if (strncmp(value, "unix:", 5) == 0)
		r = parse_unix(sp->root, value + 5, &svc->ready);
	else if (strncmp(value, "ldap:", 5) == 0)
		r = parse_inet(value + 5, false, &svc->ready);
	else if (strncmp(value, "ldapi:", 6) == 0)
		r = parse_unix(sp->root, value + 6, &svc->ready);
	if (r < 0)
		return fail(sp, "bad ready= value '%s' (expected tcp:HOST:PORT, "
			    "unix:PATH, ldap:HOST:PORT or ldapi:PATH, e.g. "
			    "ready=tcp:127.0.0.1:389)", value);
	svc->has_ready = true;
	return 0;
}

static int parse_number(const char *text, bool octal, unsigned max,
			unsigned *v_r)
{
	const char *digits = octal ? "01234567" : "0123456789";
	size_t n = strlen(text);
	unsigned long v;

	if (n == 0 || n > 6 || strspn(text, digits) != n)
		return -1;
	v = strtoul(text, NULL, octal ? 8 : 10);
	if (v > max || (!octal && v == 0))
		return -1;
	*v_r = (unsigned)v;
	return 0;
}

/* Parses one option word (known to contain '='); bit is set in *seen. */
static int parse_option(struct svc_parse *sp, struct service *svc,
			const char *word, unsigned *seen)
{
	static const char *const names[OPTION_COUNT] = {
		"ready", "external", "drain", "mode", "backlog",
	};
	const char *value = strchr(word, '=') + 1;
	size_t klen = (size_t)(value - 1 - word);
	uint64_t ms;
	unsigned i;

	for (i = 0; i < OPTION_COUNT; i++) {
		if (strlen(names[i]) == klen &&
		    strncmp(names[i], word, klen) == 0)
			break;
	}
	if (i == OPTION_COUNT)
		return fail(sp, "unknown option '%s' (expected ready=, "
			    "external=, drain=, mode= or backlog= before the "
			    "command)", word);
	if (*seen & (1u << i))
		return fail(sp, "option %s= given twice", names[i]);
	*seen |= 1u << i;
	switch (i) {
	case 0:
		return parse_ready(sp, svc, value);
	case 1:
		if (cfg_parse_bool(value, &svc->external) < 0)
			return fail(sp, "bad external= value '%s' (expected "
				    "yes or no)", value);
		return 0;
	case 2: {
		const struct cfg_def *def = cfg_def(OPT_DRAIN_TIMEOUT);

		if (cfg_parse_duration(value, &ms) < 0 ||
		    (long long)ms < def->min || (long long)ms > def->max)
			return fail(sp, "bad drain= value '%s' (expected a "
				    "duration from 0 to 1h with an ms, s, m "
				    "or h suffix, e.g. drain=30s)", value);
		svc->drain_ms = (long long)ms;
		return 0;
	}
	case 3:
		if (parse_number(value, true, 0777, &svc->mode) < 0)
			return fail(sp, "bad mode= value '%s' (expected octal "
				    "permissions, e.g. mode=0660)", value);
		return 0;
	default:
		if (parse_number(value, false, 65535, &svc->backlog) < 0)
			return fail(sp, "bad backlog= value '%s' (expected 1 "
				    "to 65535)", value);
		return 0;
	}
}

/* Whether word looks like an option ("name=..."), not a command. */
static bool is_option(const char *word)
{
	size_t n = strspn(word, "abcdefghijklmnopqrstuvwxyz_");

	return n > 0 && word[n] == '=';
}

/* Cross-field rules, checked once the whole line is read. */
static int check_service(struct svc_parse *sp, const struct service *svc,
			 unsigned seen)
{
	if ((seen & (1u << 3)) && svc->type != SERVICE_UNIX)
		return fail(sp, "mode= applies only to unix services");
	if ((seen & (1u << 4)) && svc->type == SERVICE_PROC)
		return fail(sp, "backlog= applies only to inet and unix "
			    "services");
	if (svc->external && svc->type != SERVICE_PROC)
		return fail(sp, "an external=yes service must be of type proc "
			    "(it gets no listening socket from the master)");
	if (svc->has_ready && !svc->external)
		return fail(sp, "ready= applies only to external=yes services "
			    "(Tern daemons report readiness themselves)");
	return 0;
}

static void service_free(struct service **svc)
{
	struct service *s = *svc;

	if (s == NULL)
		return;
	for (size_t i = 0; i < s->nlisten; i++)
		addr_clear(&s->listen[i]);
	free(s->listen);
	addr_clear(&s->ready);
	for (size_t i = 0; i < s->argc; i++)
		free(s->argv[i]);
	free(s->argv);
	free(s->name);
	free(s->file);
	free(s);
	*svc = NULL;
}

static int parse_type(struct svc_parse *sp, struct service *svc,
		      const char *text)
{
	static const char *const types[] = { "inet", "unix", "proc" };

	for (size_t i = 0; i < TERN_NELEM(types); i++) {
		if (strcmp(text, types[i]) == 0) {
			svc->type = (enum service_type)i;
			return 0;
		}
	}
	return fail(sp, "bad service type '%s' (expected inet, unix or proc)",
		    text);
}

/* Parses the words of one line into a new service. */
static int parse_service(struct svc_parse *sp, struct service **svc_r)
{
	struct service *svc = xcalloc(1, sizeof(*svc));
	char **w = sp->words;
	unsigned seen = 0;
	size_t i;

	svc->drain_ms = -1;
	svc->mode = SERVICE_MODE_DEFAULT;
	svc->backlog = SERVICE_BACKLOG_DEFAULT;
	svc->file = xstrdup(sp->file);
	svc->line = sp->line;
	if (sp->nwords <= FIXED_FIELDS) {
		fail(sp, "missing fields (%s)", line_form);
		goto bad;
	}
	if (!name_valid(w[0])) {
		fail(sp, "bad service name '%s' (expected 1 to %u of a-z, 0-9, "
		     "_ and -)", w[0], (unsigned)SERVICE_NAME_MAX);
		goto bad;
	}
	svc->name = xstrdup(w[0]);
	if (parse_type(sp, svc, w[1]) < 0 || parse_listen(sp, svc, w[2]) < 0 ||
	    parse_procs(sp, svc, w[3]) < 0)
		goto bad;
	if (cfg_parse_bool(w[4], &svc->enabled) < 0) {
		fail(sp, "bad enabled field '%s' (expected yes or no)", w[4]);
		goto bad;
	}
	for (i = FIXED_FIELDS; i < sp->nwords && is_option(w[i]); i++) {
		if (parse_option(sp, svc, w[i], &seen) < 0)
			goto bad;
	}
	if (i == sp->nwords) {
		fail(sp, "missing command (%s)", line_form);
		goto bad;
	}
	if (sp->nwords - i > SERVICES_ARGS_MAX) {
		fail(sp, "too many arguments (at most %u)",
		     (unsigned)SERVICES_ARGS_MAX);
		goto bad;
	}
	if (check_service(sp, svc, seen) < 0)
		goto bad;
	svc->argc = sp->nwords - i;
	svc->argv = xcalloc(svc->argc + 1, sizeof(*svc->argv));
	for (size_t j = 0; j < svc->argc; j++)
		svc->argv[j] = xstrdup(w[i + j]);
	*svc_r = svc;
	return 0;
bad:
	service_free(&svc);
	return -1;
}

/* ---- the table ---- */

/* Rejects a duplicate name, or a listen address that another enabled
 * service already uses. */
static int check_table(struct svc_parse *sp, const struct services *t,
		       const struct service *svc)
{
	for (size_t i = 0; i < t->count; i++) {
		const struct service *o = t->svc[i];

		if (strcmp(o->name, svc->name) == 0)
			return fail(sp, "service '%s' is already defined at "
				    "%s:%u", svc->name, o->file, o->line);
		if (!o->enabled || !svc->enabled)
			continue;
		for (size_t a = 0; a < svc->nlisten; a++) {
			for (size_t b = 0; b < o->nlisten; b++) {
				struct str *s;

				if (!services_addr_equal(&svc->listen[a],
							 &o->listen[b]))
					continue;
				s = str_new(64, 4096);
				if (services_addr_format(s,
							 &svc->listen[a]) < 0)
					str_clear(s);
				fail(sp, "listen address '%s' is already used "
				     "by service %s (%s:%u)", str_c(s), o->name,
				     o->file, o->line);
				str_free(&s);
				return -1;
			}
		}
	}
	return 0;
}

static void words_clear(struct svc_parse *sp)
{
	for (size_t i = 0; i < sp->nwords; i++)
		free(sp->words[i]);
	sp->nwords = 0;
}

static int parse_lines(struct svc_parse *sp, struct services *t,
		       const char *buf, size_t len)
{
	struct str *line = str_new(256, SERVICES_LINE_MAX);
	struct cfg_lines lr;
	const char *err;
	int r;

	cfg_lines_init(&lr, buf, len);
	while ((r = cfg_lines_next(&lr, line, &sp->line, &err)) > 0) {
		struct service *svc = NULL;

		if (t->count == SERVICES_MAX) {
			r = fail(sp, "more than %u services",
				 (unsigned)SERVICES_MAX);
			break;
		}
		r = split_words(sp, str_c(line));
		if (r == 0)
			r = parse_service(sp, &svc);
		if (r == 0)
			r = check_table(sp, t, svc);
		words_clear(sp);
		if (r < 0) {
			service_free(&svc);
			break;
		}
		t->svc[t->count++] = svc;
	}
	if (r < 0 && str_len(sp->error) == 0)
		fail(sp, "%s", err);
	str_free(&line);
	return r < 0 ? -1 : 0;
}

int services_load_buffer(const char *root, const char *name, const void *buf,
			 size_t len, struct services **table_r,
			 struct str *error)
{
	struct svc_parse sp = {
		.root = root != NULL ? root : "/", .file = name,
		.error = error,
	};
	struct services *t;

	*table_r = NULL;
	str_clear(error);
	if (len > SERVICES_FILE_MAX)
		return fail(&sp, "file larger than %u bytes",
			    (unsigned)SERVICES_FILE_MAX);
	t = xcalloc(1, sizeof(*t));
	t->svc = xcalloc(SERVICES_MAX, sizeof(*t->svc));
	if (parse_lines(&sp, t, buf != NULL ? buf : "", len) < 0) {
		services_free(&t);
		return -1;
	}
	*table_r = t;
	return 0;
}

int services_load(const char *root, const char *path,
		  struct services **table_r, struct str *error)
{
	struct svc_parse sp = { .file = path, .error = error };
	struct str *buf, *full = str_new(256, 8192);
	const char *err;
	int r;

	*table_r = NULL;
	str_clear(error);
	if ((path[0] != '/' && root != NULL &&
	     (str_append_c(full, root) < 0 ||
	      str_append_byte(full, '/') < 0)) ||
	    str_append_c(full, path) < 0) {
		str_free(&full);
		return fail(&sp, "path too long");
	}
	sp.file = str_c(full);
	buf = str_new(4096, SERVICES_FILE_MAX);
	if (cfg_read_file(sp.file, SERVICES_FILE_MAX, buf, &err) < 0)
		r = fail(&sp, "%s", err);
	else
		r = services_load_buffer(root, sp.file, str_c(buf),
					 str_len(buf), table_r, error);
	str_free(&buf);
	str_free(&full);
	return r;
}

void services_free(struct services **table)
{
	if (*table == NULL)
		return;
	for (size_t i = 0; i < (*table)->count; i++)
		service_free(&(*table)->svc[i]);
	free((*table)->svc);
	free(*table);
	*table = NULL;
}

size_t services_count(const struct services *table)
{
	return table->count;
}

const struct service *services_get(const struct services *table, size_t i)
{
	return i < table->count ? table->svc[i] : NULL;
}

const struct service *services_find(const struct services *table,
				    const char *name)
{
	for (size_t i = 0; i < table->count; i++) {
		if (strcmp(table->svc[i]->name, name) == 0)
			return table->svc[i];
	}
	return NULL;
}

bool services_equal(const struct service *a, const struct service *b)
{
	if (strcmp(a->name, b->name) != 0 || a->type != b->type ||
	    a->nlisten != b->nlisten || a->procs != b->procs ||
	    a->enabled != b->enabled || a->external != b->external ||
	    a->has_ready != b->has_ready || a->drain_ms != b->drain_ms ||
	    a->ready_ldap != b->ready_ldap ||
	    a->mode != b->mode || a->backlog != b->backlog ||
	    a->argc != b->argc)
		return false;
	if (a->has_ready && !services_addr_equal(&a->ready, &b->ready))
		return false;
	for (size_t i = 0; i < a->nlisten; i++) {
		if (!services_addr_equal(&a->listen[i], &b->listen[i]))
			return false;
	}
	for (size_t i = 0; i < a->argc; i++) {
		if (strcmp(a->argv[i], b->argv[i]) != 0)
			return false;
	}
	return true;
}

unsigned services_procs(const struct service *svc)
{
	long n;

	if (svc->procs > 0)
		return svc->procs;
	n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		return 1;
	return n > SERVICE_PROCS_MAX ? SERVICE_PROCS_MAX : (unsigned)n;
}

const char *services_type_name(enum service_type type)
{
	switch (type) {
	case SERVICE_INET: return "inet";
	case SERVICE_UNIX: return "unix";
	case SERVICE_PROC: return "proc";
	}
	return "?";
}

/* ---- ports and the default table ---- */

static const struct tern_std_port std_ports[] = {
	{ "smtp", 25, "SMTP (MX)" },
	{ "submission", 587, "SMTP submission, STARTTLS" },
	{ "submissions", 465, "SMTP submission, implicit TLS" },
	{ "lmtp", 7025, "LMTP (internal)" },
	{ "imap", 143, "IMAP" },
	{ "imaps", 993, "IMAP, implicit TLS" },
	{ "pop3", 110, "POP3" },
	{ "pop3s", 995, "POP3, implicit TLS" },
	{ "imap-backend", 7143, "IMAP on the mailbox server behind a proxy" },
	{ "imaps-backend", 7993, "IMAPS on the mailbox server behind a proxy" },
	{ "pop3-backend", 7110, "POP3 on the mailbox server behind a proxy" },
	{ "pop3s-backend", 7995, "POP3S on the mailbox server behind a proxy" },
	{ "http", 80, "HTTP" },
	{ "https", 443, "HTTPS" },
	{ "http-backend", 8080, "HTTP on tern-webd behind a proxy" },
	{ "https-backend", 8443, "HTTPS on tern-webd behind a proxy" },
	{ "admin", 7071, "admin console (HTTPS)" },
	{ "ldap", 389, "LDAP (bundled slapd)" },
	{ "memcached", 11211, "memcached (route cache)" },
};

bool tern_server_find(char *const *entries, size_t n, const char *name,
		      struct str *host, unsigned *port_base_r)
{
	size_t len = strlen(name);

	for (size_t i = 0; i < n; i++) {
		const char *e = entries[i];
		const char *addr = e + len + 1, *colon;
		unsigned long base = 0;
		char *end;

		if (strncasecmp(e, name, len) != 0 || e[len] != '=')
			continue;
		if (addr[0] == '[') {
			const char *close = strchr(addr, ']');

			if (close == NULL)
				return false;
			(void)!str_append(host, addr + 1,
					  (size_t)(close - addr - 1));
			colon = close[1] == ':' ? close + 1 : NULL;
		} else {
			colon = strchr(addr, ':');
			if (colon != NULL && strchr(colon + 1, ':') != NULL)
				colon = NULL;	/* a bare IPv6 address */
			(void)!str_append(host, addr, colon != NULL ?
					  (size_t)(colon - addr) :
					  strlen(addr));
		}
		if (colon != NULL) {
			base = strtoul(colon + 1, &end, 10);
			if (*end != '\0' || base > TERN_PORT_BASE_MAX)
				base = 0;
		}
		*port_base_r = (unsigned)base;
		return true;
	}
	return false;
}

const struct tern_std_port *tern_std_ports(size_t *count_r)
{
	*count_r = TERN_NELEM(std_ports);
	return std_ports;
}

unsigned tern_port(unsigned port_base, unsigned standard_port)
{
	unsigned offset;

	if (standard_port == 0 || standard_port > 65535)
		return 0;
	if (port_base == 0)
		return standard_port;
	offset = standard_port < 1000 ? standard_port :
					1000 + standard_port % 1000;
	if (port_base > 65535 - offset)
		return 0;
	return port_base + offset;
}

static unsigned std_port(const char *name)
{
	for (size_t i = 0; i < TERN_NELEM(std_ports); i++) {
		if (strcmp(std_ports[i].name, name) == 0)
			return std_ports[i].port;
	}
	return 0;
}

#define LOOPBACK "127.0.0.1"

/* A line of the default table: inet services take the standard port of
 * their name (or of port_name).  proxy: 1 = only when tern-proxyd is
 * installed, -1 = only when it is not, 0 = either way.  needs: another
 * program that must be installed too (the proxy's HTTP front end is for
 * tern-webd), or NULL. */
static const struct default_service {
	const char *program, *name, *type, *hosts, *procs;
	int proxy;
	const char *needs;
} default_services[] = {
	{ "tern-authd", "authd", "unix", "run/authd.sock", "1", 0, NULL },
	{ "tern-stored", "stored", "unix", "run/stored.sock", "1", 0, NULL },
	{ "tern-qmgr", "qmgr", "proc", "-", "1", 0, NULL },
	{ "tern-lmtpd", "lmtp", "inet", LOOPBACK, "-", 0, NULL },
	{ "tern-lmtpd", "lmtp-local", "unix", "run/lmtp.sock", "-", 0, NULL },
	{ "tern-smtpd", "smtp", "inet", "*", "-", 0, NULL },
	{ "tern-smtpd", "submission", "inet", "*", "-", 0, NULL },
	{ "tern-smtpd", "submissions", "inet", "*", "-", 0, NULL },
	{ "tern-proxyd", "imap", "inet", "*", "-", 1, NULL },
	{ "tern-proxyd", "imaps", "inet", "*", "-", 1, NULL },
	{ "tern-proxyd", "pop3", "inet", "*", "-", 1, NULL },
	{ "tern-proxyd", "pop3s", "inet", "*", "-", 1, NULL },
	{ "tern-proxyd", "http", "inet", "*", "-", 1, "tern-webd" },
	{ "tern-proxyd", "https", "inet", "*", "-", 1, "tern-webd" },
	{ "tern-imapd", "imap-backend", "inet", LOOPBACK, "-", 1, NULL },
	{ "tern-imapd", "imaps-backend", "inet", LOOPBACK, "-", 1, NULL },
	{ "tern-imapd", "imap", "inet", "*", "-", -1, NULL },
	{ "tern-imapd", "imaps", "inet", "*", "-", -1, NULL },
	{ "tern-popd", "pop3-backend", "inet", LOOPBACK, "-", 1, NULL },
	{ "tern-popd", "pop3s-backend", "inet", LOOPBACK, "-", 1, NULL },
	{ "tern-popd", "pop3", "inet", "*", "-", -1, NULL },
	{ "tern-popd", "pop3s", "inet", "*", "-", -1, NULL },
	{ "tern-webd", "http-backend", "inet", LOOPBACK, "-", 1, NULL },
	{ "tern-webd", "https-backend", "inet", LOOPBACK, "-", 1, NULL },
	{ "tern-webd", "http", "inet", "*", "-", -1, NULL },
	{ "tern-webd", "https", "inet", "*", "-", -1, NULL },
	{ "tern-webd", "admin", "inet", "*", "-", 0, NULL },
};

static bool installed_has(const char *const *installed, const char *program)
{
	for (; installed != NULL && *installed != NULL; installed++) {
		if (strcmp(*installed, program) == 0)
			return true;
	}
	return false;
}

/* "HOST:PORT,..." for each host of a comma-separated list. */
static int append_listen(struct str *out, const char *hosts, unsigned port)
{
	for (const char *h = hosts;;) {
		size_t n = strcspn(h, ",");

		if (str_printf(out, "%.*s:%u", (int)n, h, port) < 0)
			return -1;
		if (h[n] == '\0')
			return 0;
		if (str_append_byte(out, ',') < 0)
			return -1;
		h += n + 1;
	}
}

static int write_service(struct str *out, unsigned port_base,
			 const char *prefix, const char *name,
			 const char *type, const char *hosts,
			 const char *procs, const char *command)
{
	struct str *listen = str_new(64, 512);
	int r;

	if (strcmp(type, "inet") == 0)
		r = append_listen(listen, hosts,
				  tern_port(port_base, std_port(name)));
	else
		r = str_append_c(listen, hosts);
	if (r == 0)
		r = str_printf(out, "%s%-*s %-5s %-32s %-5s %-7s %s\n",
			       prefix, (int)(14 - strlen(prefix)), name, type,
			       str_c(listen), procs, "yes", command);
	str_free(&listen);
	return r;
}

static const char default_header[] =
	"# services.conf: the services tern-master runs.\n"
	"#\n"
	"# One service per line; a line starting with whitespace continues "
	"the\n"
	"# previous one.  Fields:\n"
	"#   name     a-z, 0-9, _ and -, unique\n"
	"#   type     inet (TCP), unix (unix socket) or proc (no socket)\n"
	"#   listen   inet: HOST:PORT, [IPV6]:PORT or *:PORT, comma-separated;"
	"\n"
	"#            unix: a socket path (relative = under the instance "
	"root);\n"
	"#            proc: -\n"
	"#   procs    1 to 256, or - for one per CPU core\n"
	"#   enabled  yes or no\n"
	"# then options (ready=tcp:HOST:PORT or ready=unix:PATH, external=yes,"
	"\n"
	"# drain=DURATION, mode=0660, backlog=N), then the command and its\n"
	"# arguments.  See docs/services.md.  `ternctl reload` applies "
	"changes.\n";

int services_write_default(struct str *out, unsigned port_base,
			   const char *const *installed)
{
	bool proxy = installed_has(installed, "tern-proxyd");
	struct str *cmd = str_new(128, 1024);
	unsigned ldap, memcached;
	int r = -1;

	if (port_base > TERN_PORT_BASE_MAX)
		goto out;
	if (str_append_c(out, default_header) < 0 ||
	    (port_base != 0 &&
	     str_printf(out, "#\n# Ports: port base %u (standard port P -> "
			"%u + P below 1000,\n# else %u + 1000 + P %% 1000).\n",
			port_base, port_base, port_base) < 0) ||
	    str_printf(out, "#\n# %-12s %-5s %-32s %-5s %-7s %s\n", "name",
		       "type", "listen", "procs", "enabled", "command") < 0)
		goto out;
	for (size_t i = 0; i < TERN_NELEM(default_services); i++) {
		const struct default_service *d = &default_services[i];

		if (!installed_has(installed, d->program) ||
		    (d->needs != NULL && !installed_has(installed, d->needs)) ||
		    (d->proxy == 1 && !proxy) || (d->proxy == -1 && proxy))
			continue;
		if (write_service(out, port_base, "", d->name, d->type,
				  d->hosts, d->procs, d->program) < 0)
			goto out;
	}
	if (str_append_c(out, "\n# External programs run like any service "
			 "(no Tern sockets or status\n# protocol; ready= says "
			 "how to tell that one has started):\n") < 0)
		goto out;
	ldap = tern_port(port_base, 389);
	memcached = tern_port(port_base, 11211);
	if (str_printf(cmd, "ready=ldap:127.0.0.1:%u external=yes "
		       "/usr/sbin/slapd -d 0 -h ldap://127.0.0.1:%u/", ldap,
		       ldap) < 0 ||
	    write_service(out, port_base, "#", "ldap", "proc", "-", "1",
			  str_c(cmd)) < 0)
		goto out;
	str_clear(cmd);
	if (str_printf(cmd, "ready=tcp:127.0.0.1:%u external=yes "
		       "/usr/bin/memcached -u tern -l 127.0.0.1 -p %u -U 0",
		       memcached, memcached) < 0 ||
	    write_service(out, port_base, "#", "memcached", "proc", "-", "1",
			  str_c(cmd)) < 0)
		goto out;
	r = 0;
out:
	str_free(&cmd);
	return r;
}
