/* cfg.c: see cfg.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compat.h"
#include "cfg.h"
#include "log.h"
#include "str.h"
#include "xalloc.h"

#define CFG_ERROR_MAX 8192
#define CFG_QUOTE_MAX 120	/* bytes of a bad value quoted in messages */

static const struct cfg_def cfg_defs[] = {
#define CFG_OPT(id, name, type, def, min, max, words, doc) \
	{ #name, CFG_##type, def, min, max, words, doc },
#include "cfg_options.def"
#undef CFG_OPT
};

enum { ENTRY_TODO, ENTRY_EXPANDING, ENTRY_DONE };

struct cfg_entry {
	char *raw;		/* as written; NULL = the default */
	char *source;		/* "FILE:LINE"; NULL = "default" */
	char *value;		/* effective text */
	long long num;		/* INT, BOOL, SIZE, DURATION, ENUM */
	char **list;		/* LIST */
	size_t nlist;
	int state;
};

struct cfg {
	char *root;
	struct cfg_entry e[OPT_COUNT];
};

struct file_id {
	dev_t dev;
	ino_t ino;
};

struct cfg_loader {
	struct cfg *cfg;
	cfg_warn_fn *warn;
	void *ctx;
	struct str *error;
	struct file_id stack[CFG_INCLUDE_DEPTH + 1];
	unsigned depth;		/* files on the stack */
	unsigned files;		/* files read so far */
};

/* ---- small helpers ---- */

static char *xstrfmt(const char *fmt, ...) TERN_PRINTF(1, 2);
static char *xstrfmt(const char *fmt, ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	if (vasprintf(&p, fmt, ap) < 0)
		abort();
	va_end(ap);
	return p;
}

/* Replaces the contents of dst with fmt, cut to dst's maximum. */
static void set_error(struct str *dst, const char *fmt, ...) TERN_PRINTF(2, 3);
static void set_error(struct str *dst, const char *fmt, ...)
{
	struct str *tmp = str_new(256, CFG_ERROR_MAX);
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	if (str_vprintf(tmp, fmt, ap) < 0)
		str_clear(tmp);
	va_end(ap);
	n = str_len(tmp) < str_max(dst) ? str_len(tmp) : str_max(dst);
	if (str_set(dst, str_c(tmp), n) < 0)
		str_clear(dst);
	str_free(&tmp);
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

int cfg_append_quoted(struct str *out, const char *text)
{
	static const char hex[] = "0123456789abcdef";
	size_t i;

	for (i = 0; text[i] != '\0' && i < CFG_QUOTE_MAX; i++) {
		unsigned char c = (unsigned char)text[i];
		int r;

		if (c < 0x20 || c >= 0x7f || c == '\\')
			r = str_printf(out, "\\x%c%c", hex[c >> 4],
				       hex[c & 15]);
		else
			r = str_append_byte(out, c);
		if (r < 0)
			return -1;
	}
	if (text[i] != '\0')
		return str_append_c(out, "...");
	return 0;
}

static char *quoted(const char *text)
{
	struct str *s = str_new(64, CFG_QUOTE_MAX * 4 + 8);
	char *p;

	if (cfg_append_quoted(s, text) < 0)
		abort();	/* s is large enough */
	p = xstrdup(str_c(s));
	str_free(&s);
	return p;
}

static char *path_join(const char *dir, const char *rel)
{
	size_t n = strlen(dir);

	if (rel[0] == '/' || n == 0)
		return xstrdup(rel);
	return xstrfmt("%s%s%s", dir, dir[n - 1] == '/' ? "" : "/", rel);
}

static char *path_dir(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		return xstrdup(".");
	if (slash == path)
		return xstrdup("/");
	return xstrndup(path, (size_t)(slash - path));
}

/* ---- value forms ---- */

static int parse_digits(const char **p, unsigned long long *v_r)
{
	unsigned long long v = 0;
	const char *s = *p;

	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');

		if (v > (ULLONG_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*p = s;
	*v_r = v;
	return 0;
}

int cfg_parse_bool(const char *text, bool *value_r)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };

	for (size_t i = 0; i < TERN_NELEM(yes); i++) {
		if (strcasecmp(text, yes[i]) == 0) {
			*value_r = true;
			return 0;
		}
		if (strcasecmp(text, no[i]) == 0) {
			*value_r = false;
			return 0;
		}
	}
	return -1;
}

int cfg_parse_int(const char *text, long long *value_r)
{
	unsigned long long v;
	bool neg = false;
	const char *p = text;

	if (*p == '-' || *p == '+')
		neg = *p++ == '-';
	if (parse_digits(&p, &v) < 0 || *p != '\0')
		return -1;
	if (neg ? v > (unsigned long long)LLONG_MAX + 1 : v > LLONG_MAX)
		return -1;
	*value_r = neg ? (long long)(0 - v) : (long long)v;
	return 0;
}

static int scale(unsigned long long v, unsigned long long mult, uint64_t *r)
{
	if (v > (unsigned long long)LLONG_MAX / mult)
		return -1;
	*r = v * mult;
	return 0;
}

int cfg_parse_size(const char *text, uint64_t *bytes_r)
{
	unsigned long long v, mult;
	const char *p = text;

	if (parse_digits(&p, &v) < 0)
		return -1;
	switch (*p) {
	case '\0': mult = 1; break;
	case 'k': case 'K': mult = CFG_KIB; break;
	case 'm': case 'M': mult = CFG_MIB; break;
	case 'g': case 'G': mult = CFG_GIB; break;
	default: return -1;
	}
	if (*p != '\0' && p[1] != '\0')
		return -1;
	return scale(v, mult, bytes_r);
}

int cfg_parse_duration(const char *text, uint64_t *ms_r)
{
	static const struct {
		const char *suffix;
		unsigned long long ms;
	} units[] = {
		{ "", CFG_SECOND }, { "ms", 1 }, { "s", CFG_SECOND },
		{ "m", CFG_MINUTE }, { "h", CFG_HOUR }, { "d", CFG_DAY },
	};
	unsigned long long v;
	const char *p = text;

	if (parse_digits(&p, &v) < 0)
		return -1;
	for (size_t i = 0; i < TERN_NELEM(units); i++) {
		if (strcmp(p, units[i].suffix) == 0)
			return scale(v, units[i].ms, ms_r);
	}
	return -1;
}

int cfg_format_duration(struct str *out, uint64_t ms)
{
	static const struct {
		const char *suffix;
		uint64_t ms;
	} units[] = {
		{ "d", CFG_DAY }, { "h", CFG_HOUR }, { "m", CFG_MINUTE },
		{ "s", CFG_SECOND },
	};

	if (ms == 0)
		return str_append_c(out, "0");
	for (size_t i = 0; i < TERN_NELEM(units); i++) {
		unsigned long long n = ms / units[i].ms;

		if (ms % units[i].ms == 0)
			return str_printf(out, "%llu%s", n, units[i].suffix);
	}
	return str_printf(out, "%llums", (unsigned long long)ms);
}

int cfg_format_size(struct str *out, uint64_t bytes)
{
	static const struct {
		const char *suffix;
		uint64_t n;
	} units[] = { { "G", CFG_GIB }, { "M", CFG_MIB }, { "k", CFG_KIB } };

	for (size_t i = 0; bytes != 0 && i < TERN_NELEM(units); i++) {
		unsigned long long n = bytes / units[i].n;

		if (bytes % units[i].n == 0)
			return str_printf(out, "%llu%s", n, units[i].suffix);
	}
	return str_printf(out, "%llu", (unsigned long long)bytes);
}

char **cfg_list_split(const char *text, size_t *count_r)
{
	size_t n = 0, cap = 4;
	char **items = xcalloc(cap + 1, sizeof(*items));
	const char *p = text;

	for (;;) {
		size_t len;

		while (*p == ',' || is_blank(*p))
			p++;
		if (*p == '\0')
			break;
		len = strcspn(p, ", \t\r\f\v");
		if (n == cap) {
			cap *= 2;
			items = realloc(items, (cap + 1) * sizeof(*items));
			if (items == NULL)
				abort();
		}
		items[n++] = xstrndup(p, len);
		p += len;
	}
	items[n] = NULL;
	*count_r = n;
	return items;
}

void cfg_list_free(char ***items)
{
	if (*items == NULL)
		return;
	for (char **p = *items; *p != NULL; p++)
		free(*p);
	free(*items);
	*items = NULL;
}

/* A DNS name: dot-separated labels of letters, digits and inner hyphens. */
static bool hostname_valid(const char *name)
{
	size_t label = 0, total = strlen(name);

	if (total == 0 || total > 253)
		return false;
	for (const char *p = name;; p++) {
		if (*p == '.' || *p == '\0') {
			if (label == 0 || label > 63 || p[-1] == '-')
				return false;
			if (*p == '\0')
				return true;
			label = 0;
			continue;
		}
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || (*p == '-' && label > 0)))
			return false;
		label++;
	}
}

/* Index of word in "a|b|c" (case-insensitive), or -1. */
static int enum_index(const char *words, const char *word)
{
	size_t n = strlen(word);
	int i = 0;

	for (const char *p = words;; i++) {
		size_t len = strcspn(p, "|");

		if (len == n && strncasecmp(p, word, n) == 0)
			return i;
		if (p[len] == '\0')
			return -1;
		p += len + 1;
	}
}

/* A copy of word number i of "a|b|c" (i is valid). */
static char *enum_word(const char *words, int i)
{
	const char *p = words;

	for (; i > 0; i--)
		p += strcspn(p, "|") + 1;
	return xstrndup(p, strcspn(p, "|"));
}

static const char *const type_names[] = {
	[CFG_STRING] = "string", [CFG_PATH] = "path",
	[CFG_TARGET] = "target", [CFG_HOSTNAME] = "hostname",
	[CFG_INT] = "int", [CFG_BOOL] = "bool", [CFG_SIZE] = "size",
	[CFG_DURATION] = "duration", [CFG_ENUM] = "enum", [CFG_LIST] = "list",
};

const char *cfg_type_name(enum cfg_type type)
{
	if ((size_t)type >= TERN_NELEM(type_names))
		return "?";
	return type_names[type];
}

static int append_number(struct str *out, const struct cfg_def *def,
			 long long v)
{
	if (def->type == CFG_SIZE)
		return cfg_format_size(out, (uint64_t)v);
	if (def->type == CFG_DURATION)
		return cfg_format_duration(out, (uint64_t)v);
	return str_printf(out, "%lld", v);
}

/* The words of an enum as "a, b, c". */
static int append_words(struct str *out, const char *words)
{
	for (const char *p = words;;) {
		size_t len = strcspn(p, "|");

		if (str_append(out, p, len) < 0)
			return -1;
		if (p[len] == '\0')
			return 0;
		if (str_append_c(out, ", ") < 0)
			return -1;
		p += len + 1;
	}
}

/* "from MIN to MAX" */
static int append_range(struct str *out, const struct cfg_def *def)
{
	if (str_append_c(out, "from ") < 0 ||
	    append_number(out, def, def->min) < 0 ||
	    str_append_c(out, " to ") < 0)
		return -1;
	return append_number(out, def, def->max);
}

/* The form of a type in words, shared by messages and the docs. */
static int append_form(struct str *out, const struct cfg_def *def)
{
	bool numeric = def->type == CFG_INT || def->type == CFG_SIZE ||
		       def->type == CFG_DURATION;
	static const char *const forms[] = {
		[CFG_STRING] = "text",
		[CFG_PATH] = "a file path (relative = under the instance "
			     "root; empty = none)",
		[CFG_TARGET] = "syslog, stderr or a file path (relative = "
			       "under the instance root)",
		[CFG_HOSTNAME] = "a host name (empty = the system's host "
				 "name)",
		[CFG_INT] = "an integer",
		[CFG_BOOL] = "yes or no (also true/false, on/off, 1/0)",
		[CFG_SIZE] = "a size",
		[CFG_DURATION] = "a duration",
		[CFG_ENUM] = "one of ",
		[CFG_LIST] = "a list of words separated by commas and/or "
			     "spaces",
	};

	if (str_append_c(out, forms[def->type]) < 0)
		return -1;
	if (def->type == CFG_ENUM)
		return append_words(out, def->words);
	if (numeric && (str_append_c(out, " ") < 0 ||
			append_range(out, def) < 0))
		return -1;
	if (def->type == CFG_SIZE)
		return str_append_c(out, ": bytes with an optional k, m or g "
				    "suffix (KiB, MiB, GiB)");
	if (def->type == CFG_DURATION)
		return str_append_c(out, ": a number with an ms, s, m, h or d "
				    "suffix (bare = seconds)");
	return 0;
}

static const char *example_of(const struct cfg_def *def)
{
	if (def->default_value[0] != '\0')
		return def->default_value;
	switch (def->type) {
	case CFG_HOSTNAME: return "mail.example.com";
	case CFG_PATH: case CFG_TARGET: return "conf/ssl/ca.pem";
	case CFG_LIST: return "a, b, c";
	default: return "text";
	}
}

static void set_expected(struct str *expected, const struct cfg_def *def)
{
	str_clear(expected);
	if (append_form(expected, def) < 0 ||
	    str_append_c(expected, ", e.g. ") < 0 ||
	    str_append_c(expected, example_of(def)) < 0)
		return;	/* cut: the message is only less complete */
}

/* Parses text (expanded) for def into e; 0 or -1. */
static int value_parse(const struct cfg_def *def, const char *root,
		       const char *text, struct cfg_entry *e)
{
	uint64_t u = 0;
	long long v = 0;
	bool b;
	int i;

	switch (def->type) {
	case CFG_STRING:
		e->value = xstrdup(text);
		return 0;
	case CFG_TARGET:
		if (text[0] == '\0')
			return -1;
		if (strcmp(text, "syslog") == 0 ||
		    strcmp(text, "stderr") == 0) {
			e->value = xstrdup(text);
			return 0;
		}
		/* fall through */
	case CFG_PATH:
		e->value = text[0] == '\0' ? xstrdup("") :
			   path_join(root, text);
		return 0;
	case CFG_HOSTNAME:
		if (text[0] == '\0') {
			char host[256];

			if (gethostname(host, sizeof(host) - 1) < 0)
				str_lcpy(host, "localhost", sizeof(host));
			host[sizeof(host) - 1] = '\0';
			e->value = xstrdup(host);
			return 0;
		}
		if (!hostname_valid(text))
			return -1;
		e->value = xstrdup(text);
		return 0;
	case CFG_BOOL:
		if (cfg_parse_bool(text, &b) < 0)
			return -1;
		e->num = b;
		e->value = xstrdup(text);
		return 0;
	case CFG_ENUM:
		i = enum_index(def->words, text);
		if (i < 0)
			return -1;
		e->num = i;
		e->value = enum_word(def->words, i);
		return 0;
	case CFG_LIST:
		e->list = cfg_list_split(text, &e->nlist);
		e->value = xstrdup(text);
		return 0;
	case CFG_INT:
		if (cfg_parse_int(text, &v) < 0)
			return -1;
		break;
	case CFG_SIZE:
		if (cfg_parse_size(text, &u) < 0)
			return -1;
		v = (long long)u;
		break;
	case CFG_DURATION:
		if (cfg_parse_duration(text, &u) < 0)
			return -1;
		v = (long long)u;
		break;
	}
	if (v < def->min || v > def->max)
		return -1;
	e->num = v;
	e->value = xstrdup(text);
	return 0;
}

static void entry_clear(struct cfg_entry *e)
{
	free(e->value);
	e->value = NULL;
	cfg_list_free(&e->list);
	e->nlist = 0;
	e->num = 0;
}

int cfg_value_check(const struct cfg_def *def, const char *text,
		    struct str *expected)
{
	struct cfg_entry e = { 0 };
	int r = value_parse(def, "/", text, &e);

	entry_clear(&e);
	if (r < 0)
		set_expected(expected, def);
	return r;
}

/* ---- logical lines ---- */

void cfg_lines_init(struct cfg_lines *r, const void *buf, size_t len)
{
	r->pos = buf;
	r->end = r->pos + len;
	r->lineno = 1;
}

int cfg_lines_next(struct cfg_lines *r, struct str *line, unsigned *lineno_r,
		   const char **error_r)
{
	bool have = false;

	str_clear(line);
	while (r->pos < r->end) {
		const char *s = r->pos, *nl, *e, *c;

		nl = memchr(s, '\n', (size_t)(r->end - s));
		e = nl != NULL ? nl : r->end;
		if (e - s > CFG_LINE_MAX || memchr(s, '\0', (size_t)(e - s))) {
			*lineno_r = r->lineno;
			*error_r = e - s > CFG_LINE_MAX ?
				   "line longer than 65536 bytes" :
				   "NUL byte in line";
			return -1;
		}
		for (c = s; c < e && is_blank(*c); c++)
			;
		while (e > c && is_blank(e[-1]))
			e--;
		if (c < e && *c != '#' && c == s && have)
			return 1;	/* the next logical line starts here */
		r->pos = nl != NULL ? nl + 1 : r->end;
		r->lineno++;
		if (c == e || *c == '#')
			continue;	/* blank or comment */
		if (c != s && !have) {
			*lineno_r = r->lineno - 1;
			*error_r = "continuation line with nothing to continue";
			return -1;
		}
		if (!have)
			*lineno_r = r->lineno - 1;
		if ((have && str_append_byte(line, ' ') < 0) ||
		    str_append(line, c, (size_t)(e - c)) < 0) {
			*error_r = "line too long";
			return -1;
		}
		have = true;
	}
	return have ? 1 : 0;
}

/* ---- files ---- */

static int read_fd(int fd, size_t max, struct str *out, struct file_id *id_r,
		   const char **error_r)
{
	struct stat st;
	char buf[8192];
	ssize_t n;

	if (fstat(fd, &st) < 0) {
		*error_r = strerror(errno);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		*error_r = "not a regular file";
		return -1;
	}
	if (st.st_size > (off_t)max) {
		*error_r = "file too large";
		return -1;
	}
	if (id_r != NULL) {
		id_r->dev = st.st_dev;
		id_r->ino = st.st_ino;
	}
	str_clear(out);
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*error_r = strerror(errno);
			return -1;
		}
		if (str_len(out) + (size_t)n > max ||
		    str_append(out, buf, (size_t)n) < 0) {
			*error_r = "file too large";
			return -1;
		}
	}
	return 0;
}

static int read_file_id(const char *path, size_t max, struct str *out,
			struct file_id *id_r, const char **error_r)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	int r;

	if (fd < 0) {
		*error_r = strerror(errno);
		return -1;
	}
	r = read_fd(fd, max, out, id_r, error_r);
	close(fd);
	return r;
}

int cfg_read_file(const char *path, size_t max, struct str *out,
		  const char **error_r)
{
	return read_file_id(path, max, out, NULL, error_r);
}

/* ---- loading ---- */

static int parse_buffer(struct cfg_loader *ld, const char *name,
			const char *include_dir, const char *buf, size_t len);

static void warnf(struct cfg_loader *ld, const char *fmt, ...)
	TERN_PRINTF(2, 3);
static void warnf(struct cfg_loader *ld, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	if (ld->warn == NULL)
		return;
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		abort();
	va_end(ap);
	ld->warn(ld->ctx, msg);
	free(msg);
}

static int include_file(struct cfg_loader *ld, const char *path,
			const char *from, unsigned line)
{
	struct str *buf = str_new(4096, CFG_FILE_MAX);
	struct file_id id;
	const char *err;
	char *qpath = quoted(path), *dir = NULL;
	int r = -1;

	if (ld->depth > CFG_INCLUDE_DEPTH) {
		set_error(ld->error, "%s:%u: include %s: nested deeper than %d "
			  "files", from, line, qpath, CFG_INCLUDE_DEPTH);
		goto out;
	}
	if (++ld->files > CFG_INCLUDE_MAX) {
		set_error(ld->error, "%s:%u: include %s: more than %d files",
			  from, line, qpath, CFG_INCLUDE_MAX);
		goto out;
	}
	if (read_file_id(path, CFG_FILE_MAX, buf, &id, &err) < 0) {
		if (from == NULL)
			set_error(ld->error, "%s: %s", qpath, err);
		else
			set_error(ld->error, "%s:%u: include %s: %s", from,
				  line, qpath, err);
		goto out;
	}
	for (unsigned i = 0; i < ld->depth; i++) {
		if (ld->stack[i].dev == id.dev && ld->stack[i].ino == id.ino) {
			set_error(ld->error, "%s:%u: include loop: %s is "
				  "already being read", from, line, qpath);
			goto out;
		}
	}
	ld->stack[ld->depth++] = id;
	dir = path_dir(path);
	r = parse_buffer(ld, path, dir, str_c(buf), str_len(buf));
	ld->depth--;
out:
	free(dir);
	free(qpath);
	str_free(&buf);
	return r;
}

static bool key_valid(const char *key)
{
	if (*key == '\0')
		return false;
	for (; *key != '\0'; key++) {
		if (!((*key >= 'a' && *key <= 'z') ||
		      (*key >= '0' && *key <= '9') || *key == '_'))
			return false;
	}
	return true;
}

static void set_raw(struct cfg_loader *ld, enum cfg_opt id, const char *value,
		    const char *name, unsigned line)
{
	struct cfg_entry *e = &ld->cfg->e[id];

	if (e->source != NULL)
		warnf(ld, "%s:%u: %s is set again, overriding %s", name, line,
		      cfg_defs[id].name, e->source);
	free(e->raw);
	free(e->source);
	e->raw = xstrdup(value);
	e->source = xstrfmt("%s:%u", name, line);
}

static int parse_line(struct cfg_loader *ld, const char *name,
		      const char *include_dir, unsigned line, char *text)
{
	char *eq = strchr(text, '='), *key = text, *value, *end;
	enum cfg_opt id;

	if (eq == NULL) {
		char *q = quoted(text);

		set_error(ld->error, "%s:%u: expected 'key = value', got '%s'",
			  name, line, q);
		free(q);
		return -1;
	}
	for (end = eq; end > key && is_blank(end[-1]); end--)
		;
	*end = '\0';
	for (value = eq + 1; is_blank(*value); value++)
		;
	if (!key_valid(key)) {
		char *q = quoted(key);

		set_error(ld->error, "%s:%u: bad option name '%s' (expected "
			  "lowercase letters, digits and _)", name, line, q);
		free(q);
		return -1;
	}
	if (strcmp(key, "include") == 0) {
		char *path;
		int r;

		if (include_dir == NULL) {
			set_error(ld->error, "%s:%u: include is not allowed "
				  "here", name, line);
			return -1;
		}
		if (*value == '\0') {
			set_error(ld->error, "%s:%u: include needs a file "
				  "path", name, line);
			return -1;
		}
		path = path_join(include_dir, value);
		r = include_file(ld, path, name, line);
		free(path);
		return r;
	}
	if (cfg_lookup(key, &id) < 0) {
		warnf(ld, "%s:%u: unknown option '%s' (ignored)", name, line,
		      key);
		return 0;
	}
	set_raw(ld, id, value, name, line);
	return 0;
}

static int parse_buffer(struct cfg_loader *ld, const char *name,
			const char *include_dir, const char *buf, size_t len)
{
	struct str *line = str_new(256, CFG_LINE_MAX);
	struct cfg_lines lr;
	const char *err;
	unsigned lineno = 0;
	int r;

	cfg_lines_init(&lr, buf, len);
	while ((r = cfg_lines_next(&lr, line, &lineno, &err)) > 0) {
		if (parse_line(ld, name, include_dir, lineno,
			       str_data(line)) < 0) {
			r = -1;
			break;
		}
	}
	if (r < 0 && str_len(ld->error) == 0)
		set_error(ld->error, "%s:%u: %s", name, lineno, err);
	str_free(&line);
	return r < 0 ? -1 : 0;
}

/* ---- $name expansion and typed values ---- */

static int resolve(struct cfg_loader *ld, enum cfg_opt id);

static const char *source_of(const struct cfg_entry *e)
{
	return e->source != NULL ? e->source : "default";
}

/* Reads a $name or ${name} at *p (just after the $) into id_r. */
static int reference(const char **p, enum cfg_opt *id_r, char **name_r)
{
	const char *s = *p;
	bool brace = *s == '{';
	size_t len;

	if (brace)
		s++;
	len = strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_");
	if (brace && (len == 0 || s[len] != '}'))
		return -1;
	*name_r = xstrndup(s, len);
	*p = s + len + (brace ? 1 : 0);
	return cfg_lookup(*name_r, id_r) < 0 ? -2 : 0;
}

static int expand(struct cfg_loader *ld, enum cfg_opt id, const char *text,
		  struct str *out)
{
	const char *p = text, *key = cfg_defs[id].name;
	const char *src = source_of(&ld->cfg->e[id]);

	while (*p != '\0') {
		const char *dollar = strchr(p, '$');
		enum cfg_opt ref;
		char *name = NULL;
		int r;

		if (dollar == NULL)
			dollar = p + strlen(p);
		if (str_append(out, p, (size_t)(dollar - p)) < 0)
			goto too_long;
		if (*dollar == '\0')
			break;
		p = dollar + 1;
		if (*p == '$' || (*p != '{' && (*p < 'a' || *p > 'z'))) {
			/* "$$" is a $; so is a $ that starts no name */
			p += *p == '$';
			if (str_append_byte(out, '$') < 0)
				goto too_long;
			continue;
		}
		r = reference(&p, &ref, &name);
		if (r == -1) {
			set_error(ld->error, "%s: %s: bad ${name} in value",
				  src, key);
			free(name);
			return -1;
		}
		if (r == -2) {
			set_error(ld->error, "%s: %s: unknown option $%s in "
				  "value", src, key, name);
			free(name);
			return -1;
		}
		if (ld->cfg->e[ref].state == ENTRY_EXPANDING) {
			set_error(ld->error, "%s: %s: reference loop through "
				  "$%s", src, key, name);
			free(name);
			return -1;
		}
		free(name);
		if (resolve(ld, ref) < 0)
			return -1;
		if (str_append_c(out, ld->cfg->e[ref].value) < 0)
			goto too_long;
	}
	return 0;
too_long:
	set_error(ld->error, "%s: %s: value longer than %d bytes after "
		  "expansion", src, key, CFG_LINE_MAX);
	return -1;
}

static int resolve(struct cfg_loader *ld, enum cfg_opt id)
{
	const struct cfg_def *def = &cfg_defs[id];
	struct cfg_entry *e = &ld->cfg->e[id];
	struct str *text;
	int r = 0;

	if (e->state == ENTRY_DONE)
		return 0;
	e->state = ENTRY_EXPANDING;
	text = str_new(64, CFG_LINE_MAX);
	if (expand(ld, id, e->raw != NULL ? e->raw : def->default_value,
		   text) < 0) {
		r = -1;
	} else if (value_parse(def, ld->cfg->root, str_c(text), e) < 0) {
		struct str *expected = str_new(128, 1024);
		char *q = quoted(str_c(text));

		entry_clear(e);
		set_expected(expected, def);
		set_error(ld->error, "%s: bad value for %s: '%s' (expected %s)",
			  source_of(e), def->name, q, str_c(expected));
		free(q);
		str_free(&expected);
		r = -1;
	}
	str_free(&text);
	e->state = ENTRY_DONE;
	return r;
}

static int load(const char *root, const char *name, const char *include_dir,
		const char *path, const void *buf, size_t len,
		cfg_warn_fn *warn, void *ctx, struct cfg **cfg_r,
		struct str *error)
{
	struct cfg_loader ld = {
		.warn = warn, .ctx = ctx, .error = error,
	};
	int r = 0;

	*cfg_r = NULL;
	str_clear(error);
	ld.cfg = xcalloc(1, sizeof(*ld.cfg));
	ld.cfg->root = xstrdup(root != NULL ? root : "/");
	if (path != NULL)
		r = include_file(&ld, path, NULL, 0);
	else if (buf != NULL)
		r = parse_buffer(&ld, name, include_dir, buf, len);
	for (size_t i = 0; r == 0 && i < OPT_COUNT; i++)
		r = resolve(&ld, (enum cfg_opt)i);
	if (r < 0) {
		cfg_free(&ld.cfg);
		return -1;
	}
	*cfg_r = ld.cfg;
	return 0;
}

int cfg_load(const char *root, const char *path, cfg_warn_fn *warn,
	     void *ctx, struct cfg **cfg_r, struct str *error)
{
	char *full = NULL;
	int r;

	if (path != NULL)
		full = path_join(root != NULL ? root : "", path);
	r = load(root, NULL, NULL, full, NULL, 0, warn, ctx, cfg_r, error);
	free(full);
	return r;
}

int cfg_load_buffer(const char *root, const char *name,
		    const char *include_dir, const void *buf, size_t len,
		    cfg_warn_fn *warn, void *ctx, struct cfg **cfg_r,
		    struct str *error)
{
	if (len > CFG_FILE_MAX) {
		*cfg_r = NULL;
		set_error(error, "%s: file too large", name);
		return -1;
	}
	return load(root, name, include_dir, NULL, buf != NULL ? buf : "",
		    len, warn, ctx, cfg_r, error);
}

void cfg_free(struct cfg **cfg)
{
	if (*cfg == NULL)
		return;
	for (size_t i = 0; i < OPT_COUNT; i++) {
		struct cfg_entry *e = &(*cfg)->e[i];

		entry_clear(e);
		free(e->raw);
		free(e->source);
	}
	free((*cfg)->root);
	free(*cfg);
	*cfg = NULL;
}

/* ---- accessors ---- */

#define CFG_ANY (-1)

/* The entry of id, whose type must be type (a cfg_type) or CFG_ANY. */
static const struct cfg_entry *entry(const struct cfg *cfg, enum cfg_opt id,
				     int type)
{
	if ((size_t)id >= OPT_COUNT)
		log_panic(NULL, "cfg: bad option id %d", (int)id);
	if (type != CFG_ANY && (int)cfg_defs[id].type != type)
		log_panic(NULL, "cfg: %s is a %s, not a %s", cfg_defs[id].name,
			  cfg_type_name(cfg_defs[id].type),
			  cfg_type_name((enum cfg_type)type));
	return &cfg->e[id];
}

const char *cfg_str(const struct cfg *cfg, enum cfg_opt id)
{
	return entry(cfg, id, CFG_ANY)->value;
}

long long cfg_int(const struct cfg *cfg, enum cfg_opt id)
{
	return entry(cfg, id, CFG_INT)->num;
}

bool cfg_bool(const struct cfg *cfg, enum cfg_opt id)
{
	return entry(cfg, id, CFG_BOOL)->num != 0;
}

uint64_t cfg_size(const struct cfg *cfg, enum cfg_opt id)
{
	return (uint64_t)entry(cfg, id, CFG_SIZE)->num;
}

uint64_t cfg_duration(const struct cfg *cfg, enum cfg_opt id)
{
	return (uint64_t)entry(cfg, id, CFG_DURATION)->num;
}

unsigned cfg_enum(const struct cfg *cfg, enum cfg_opt id)
{
	return (unsigned)entry(cfg, id, CFG_ENUM)->num;
}

const char *const *cfg_list(const struct cfg *cfg, enum cfg_opt id,
			    size_t *count_r)
{
	const struct cfg_entry *e = entry(cfg, id, CFG_LIST);

	*count_r = e->nlist;
	return (const char *const *)e->list;
}

const char *cfg_source(const struct cfg *cfg, enum cfg_opt id)
{
	return source_of(entry(cfg, id, CFG_ANY));
}

const char *cfg_root(const struct cfg *cfg)
{
	return cfg->root;
}

const struct cfg_def *cfg_def(enum cfg_opt id)
{
	if ((size_t)id >= OPT_COUNT)
		log_panic(NULL, "cfg: bad option id %d", (int)id);
	return &cfg_defs[id];
}

int cfg_lookup(const char *name, enum cfg_opt *id_r)
{
	for (size_t i = 0; i < OPT_COUNT; i++) {
		if (strcmp(cfg_defs[i].name, name) == 0) {
			*id_r = (enum cfg_opt)i;
			return 0;
		}
	}
	return -1;
}

bool cfg_iter(const struct cfg *cfg, size_t *pos, struct cfg_item *item_r)
{
	const struct cfg_def *def;

	if (*pos >= OPT_COUNT)
		return false;
	def = &cfg_defs[*pos];
	item_r->id = (enum cfg_opt)*pos;
	item_r->name = def->name;
	item_r->value = cfg->e[*pos].value;
	item_r->source = source_of(&cfg->e[*pos]);
	item_r->type = cfg_type_name(def->type);
	item_r->default_value = def->default_value;
	item_r->doc = def->doc;
	(*pos)++;
	return true;
}

/* ---- output ---- */

static int show_one(const struct cfg *cfg, size_t i, struct str *out)
{
	const char *value = cfg->e[i].value;

	return str_printf(out, "%s =%s%s  # %s\n", cfg_defs[i].name,
			  value[0] != '\0' ? " " : "", value,
			  source_of(&cfg->e[i]));
}

int cfg_show(const struct cfg *cfg, const char *key, struct str *out,
	     struct str *error)
{
	enum cfg_opt id;

	if (key == NULL) {
		for (size_t i = 0; i < OPT_COUNT; i++) {
			if (show_one(cfg, i, out) < 0)
				goto full;
		}
		return 0;
	}
	if (cfg_lookup(key, &id) < 0) {
		char *q = quoted(key);

		set_error(error, "unknown option '%s'", q);
		free(q);
		return -1;
	}
	if (show_one(cfg, id, out) == 0)
		return 0;
full:
	set_error(error, "output too long");
	return -1;
}

/* Appends text as comment lines "# ..." cut at spaces to width columns. */
static int append_wrapped(struct str *out, const char *prefix,
			  const char *text, size_t width)
{
	size_t plen = strlen(prefix);

	while (*text != '\0') {
		size_t n = strlen(text), cut = n;

		if (plen + n > width) {
			for (cut = width - plen; cut > 0 && text[cut] != ' ';
			     cut--)
				;
			if (cut == 0)
				cut = strcspn(text, " ");
		}
		if (str_append_c(out, prefix) < 0 ||
		    str_append(out, text, cut) < 0 ||
		    str_append_byte(out, '\n') < 0)
			return -1;
		text += cut;
		while (*text == ' ')
			text++;
	}
	return 0;
}

static const char conf_header[] =
	"# tern.conf: Tern's main configuration.\n"
	"#\n"
	"# Syntax: \"key = value\" lines.  A line starting with whitespace\n"
	"# continues the previous value; lines starting with # are comments\n"
	"# (a # later in a line is part of the value).  \"include = FILE\"\n"
	"# reads another file (relative to this file's directory).  $name or\n"
	"# ${name} in a value is replaced by that option's value.  Relative\n"
	"# paths are under the instance root.  Durations take ms, s, m, h\n"
	"# or d (a bare number is seconds); sizes take k, m or g.\n"
	"#\n"
	"# Every option is listed below with its default, commented out.\n"
	"# `ternctl config show` prints the effective values and where each\n"
	"# one comes from; docs/config.md has the full reference.\n";

/* "# One of: a, b." or "# Range: MIN to MAX." for enums and numbers. */
static int conf_range(struct str *out, const struct cfg_def *def)
{
	if (def->type == CFG_ENUM)
		return str_append_c(out, "# One of: ") < 0 ||
		       append_words(out, def->words) < 0 ||
		       str_append_c(out, ".\n") < 0 ? -1 : 0;
	if (def->type != CFG_INT && def->type != CFG_SIZE &&
	    def->type != CFG_DURATION)
		return 0;
	return str_append_c(out, "# Range: ") < 0 ||
	       append_number(out, def, def->min) < 0 ||
	       str_append_c(out, " to ") < 0 ||
	       append_number(out, def, def->max) < 0 ||
	       str_append_c(out, ".\n") < 0 ? -1 : 0;
}

int cfg_write_default_conf(struct str *out)
{
	if (str_append_c(out, conf_header) < 0)
		return -1;
	for (size_t i = 0; i < OPT_COUNT; i++) {
		const struct cfg_def *def = &cfg_defs[i];
		const char *v = def->default_value;

		if (str_append_c(out, "\n") < 0 ||
		    append_wrapped(out, "# ", def->doc, 78) < 0 ||
		    conf_range(out, def) < 0 ||
		    str_printf(out, "#%s =%s%s\n", def->name,
			       v[0] != '\0' ? " " : "", v) < 0)
			return -1;
	}
	return 0;
}

static const char md_header[] =
	"# tern.conf reference\n"
	"\n"
	"<!-- Generated from common/cfg_options.def by `ternctl config doc`;"
	" do not edit. -->\n"
	"\n"
	"`conf/tern.conf` under the instance root holds Tern's main settings, "
	"one\n"
	"`key = value` per line, in the style of Postfix's main.cf. Every "
	"option has a\n"
	"compiled-in default; `ternctl config show [KEY]` prints the "
	"effective values\n"
	"with their source (`default` or `FILE:LINE`), and `ternctl setup` "
	"writes a\n"
	"commented file listing every option.\n"
	"\n"
	"## Syntax\n"
	"\n"
	"- `key = value`; whitespace around `=` and at the ends of the value "
	"is\n"
	"  ignored.\n"
	"- A line whose first non-blank character is `#` is a comment; a `#` "
	"later in\n"
	"  a line is part of the value. Blank lines are ignored.\n"
	"- A line starting with a space or tab continues the previous value "
	"(joined\n"
	"  with one space).\n"
	"- `include = FILE` reads another file at that point; a relative FILE "
	"is\n"
	"  taken from the including file's directory. Includes nest at most 8 "
	"deep,\n"
	"  at most 64 files are read, and a loop is an error.\n"
	"- `$name` or `${name}` in a value is replaced by the effective value "
	"of\n"
	"  option `name` (wherever in the files it is set); `$$` is a "
	"literal `$`.\n"
	"- A key set twice: the last one wins, with a warning. An unknown key "
	"is a\n"
	"  warning naming the file and line; the rest of the file still "
	"loads.\n"
	"- A bad value is an error naming the file, line, option and the "
	"expected\n"
	"  form; the program does not start.\n"
	"- Limits: 65536 bytes per line and per value, 1 MiB per file.\n"
	"\n"
	"## Value types\n"
	"\n"
	"| type | form |\n"
	"|---|---|\n"
	"| string | any text |\n"
	"| path | a file path; relative paths are under the instance root; "
	"empty = none |\n"
	"| target | `syslog`, `stderr`, or a file path as for path |\n"
	"| hostname | a DNS host name; empty = the system's host name |\n"
	"| int | a decimal integer within the option's range |\n"
	"| bool | `yes` or `no` (also `true`/`false`, `on`/`off`, `1`/`0`) |\n"
	"| size | bytes, with an optional `k`, `m` or `g` suffix (KiB, MiB, "
	"GiB; case does not matter) |\n"
	"| duration | a number with an `ms`, `s`, `m`, `h` or `d` suffix; a "
	"bare number is seconds |\n"
	"| enum | one word of a fixed set |\n"
	"| list | words separated by commas and/or whitespace |\n"
	"\n"
	"## Options\n"
	"\n"
	"| option | type | default |\n"
	"|---|---|---|\n";

static int md_default(struct str *out, const struct cfg_def *def, bool brief)
{
	if (def->default_value[0] == '\0')
		return str_append_c(out, "(empty)");
	if (brief && strlen(def->default_value) > 40)
		return str_append_c(out, "(see below)");
	return str_printf(out, "`%s`", def->default_value);
}

static int md_option(struct str *out, const struct cfg_def *def)
{
	bool numeric = def->type == CFG_INT || def->type == CFG_SIZE ||
		       def->type == CFG_DURATION;

	if (str_printf(out, "\n### %s\n\n%s\n\n- Type: %s", def->name,
		       def->doc, cfg_type_name(def->type)) < 0)
		return -1;
	if (def->type == CFG_ENUM && (str_append_c(out, " (") < 0 ||
				      append_words(out, def->words) < 0 ||
				      str_append_c(out, ")") < 0))
		return -1;
	if (str_append_c(out, "\n- Default: ") < 0 ||
	    md_default(out, def, false) < 0)
		return -1;
	if (numeric && (str_append_c(out, "\n- Range: ") < 0 ||
			append_number(out, def, def->min) < 0 ||
			str_append_c(out, " to ") < 0 ||
			append_number(out, def, def->max) < 0))
		return -1;
	return str_append_c(out, "\n");
}

int cfg_write_markdown(struct str *out)
{
	if (str_append_c(out, md_header) < 0)
		return -1;
	for (size_t i = 0; i < OPT_COUNT; i++) {
		const struct cfg_def *def = &cfg_defs[i];

		if (str_printf(out, "| [`%s`](#%s) | %s | ", def->name,
			       def->name, cfg_type_name(def->type)) < 0 ||
		    md_default(out, def, true) < 0 ||
		    str_append_c(out, " |\n") < 0)
			return -1;
	}
	for (size_t i = 0; i < OPT_COUNT; i++) {
		if (md_option(out, &cfg_defs[i]) < 0)
			return -1;
	}
	return 0;
}
