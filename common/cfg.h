/*
 * cfg.h: tern.conf, the main configuration (Postfix main.cf style).
 *
 * Every option is defined once, in cfg_options.def: name, type, default,
 * range and a doc sentence.  The OPT_ ids, the typed accessors, the checks,
 * docs/config.md (cfg_write_markdown) and the default tern.conf
 * (cfg_write_default_conf) all come from that one table.
 *
 * Syntax: "key = value" lines; whole-line "#" comments; blank lines; a line
 * starting with whitespace continues the previous value; "include = PATH"
 * (relative to the including file's directory); $name or ${name} in a value
 * is replaced by that option's effective value ($$ is a literal $).  An
 * unknown key or a repeated key is a warning; a bad value, a bad line, an
 * include loop or a limit is an error and the load fails.
 *
 * Limits: CFG_LINE_MAX bytes per line and per value, CFG_FILE_MAX bytes per
 * file, CFG_INCLUDE_DEPTH nested includes, CFG_INCLUDE_MAX files per load.
 *
 * Callers: every daemon through the service skeleton, tern-master, ternctl
 * (config show, config doc, setup).  A loaded struct cfg is immutable.
 */
#ifndef TERN_CFG_H
#define TERN_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compat.h"
#include "str.h"

#define CFG_LINE_MAX (64 * 1024)
#define CFG_FILE_MAX (1024 * 1024)
#define CFG_INCLUDE_DEPTH 8
#define CFG_INCLUDE_MAX 64

/* Units for the ranges in cfg_options.def: sizes in bytes, durations in ms. */
#define CFG_KIB 1024LL
#define CFG_MIB (1024LL * 1024)
#define CFG_GIB (1024LL * 1024 * 1024)
#define CFG_SECOND 1000LL
#define CFG_MINUTE (60 * CFG_SECOND)
#define CFG_HOUR (60 * CFG_MINUTE)
#define CFG_DAY (24 * CFG_HOUR)

enum cfg_type {
	CFG_STRING,	/* any text */
	CFG_PATH,	/* relative = under the instance root; "" = none */
	CFG_TARGET,	/* "syslog", "stderr" or a path as CFG_PATH */
	CFG_HOSTNAME,	/* a DNS name; "" = the system's host name */
	CFG_INT,	/* decimal integer, min..max */
	CFG_BOOL,	/* yes/no, true/false, on/off, 1/0 */
	CFG_SIZE,	/* bytes, optional k/m/g suffix (powers of 1024) */
	CFG_DURATION,	/* ms/s/m/h/d suffix, bare number = seconds */
	CFG_ENUM,	/* one word of a fixed set */
	CFG_LIST,	/* items separated by commas and/or whitespace */
};

enum cfg_opt {
#define CFG_OPT(id, name, type, def, min, max, words, doc) OPT_##id,
#include "cfg_options.def"
#undef CFG_OPT
	OPT_COUNT
};

/* One row of the option table (read-only data). */
struct cfg_def {
	const char *name;
	enum cfg_type type;
	const char *default_value;
	long long min, max;	/* numeric types only */
	const char *words;	/* CFG_ENUM: "a|b|c" */
	const char *doc;
};

/* One option's effective state, for `ternctl config show --json` and the
 * like.  The strings belong to the cfg and live as long as it. */
struct cfg_item {
	enum cfg_opt id;
	const char *name;
	const char *value;	/* effective value as text (paths resolved) */
	const char *source;	/* "default" or "FILE:LINE" */
	const char *type;	/* cfg_type_name() */
	const char *default_value;
	const char *doc;
};

struct cfg;

/* Receives each warning ("FILE:LINE: unknown option 'x' (ignored)"). */
typedef void cfg_warn_fn(void *ctx, const char *msg);

/*
 * Loads tern.conf.  root: the instance root (absolute); relative PATH values
 * and a relative path are taken under it.  path NULL = defaults only.  warn
 * may be NULL (warnings dropped).  On error returns -1 with the message in
 * error ("FILE:LINE: bad value for KEY: 'VALUE' (expected FORM, e.g. X)").
 */
int cfg_load(const char *root, const char *path, cfg_warn_fn *warn,
	     void *ctx, struct cfg **cfg_r, struct str *error) TERN_WUR;
/* The same from memory.  name is used in sources and messages; includes
 * are resolved against include_dir, and refused when it is NULL. */
int cfg_load_buffer(const char *root, const char *name,
		    const char *include_dir, const void *buf, size_t len,
		    cfg_warn_fn *warn, void *ctx, struct cfg **cfg_r,
		    struct str *error) TERN_WUR;
void cfg_free(struct cfg **cfg);

/* Typed accessors; calling one on an option of another type panics. */
const char *cfg_str(const struct cfg *cfg, enum cfg_opt id); /* any type */
long long cfg_int(const struct cfg *cfg, enum cfg_opt id);
bool cfg_bool(const struct cfg *cfg, enum cfg_opt id);
uint64_t cfg_size(const struct cfg *cfg, enum cfg_opt id);	/* bytes */
uint64_t cfg_duration(const struct cfg *cfg, enum cfg_opt id);	/* ms */
/* Index of the value in the def's words (log_level: the LOGL_ value). */
unsigned cfg_enum(const struct cfg *cfg, enum cfg_opt id);
const char *const *cfg_list(const struct cfg *cfg, enum cfg_opt id,
			    size_t *count_r);
const char *cfg_source(const struct cfg *cfg, enum cfg_opt id);
const char *cfg_root(const struct cfg *cfg);

/* The option table. */
const struct cfg_def *cfg_def(enum cfg_opt id);
int cfg_lookup(const char *name, enum cfg_opt *id_r) TERN_WUR;
const char *cfg_type_name(enum cfg_type type);

/* Iterates the options in table order: *pos starts at 0; returns false
 * after the last one. */
bool cfg_iter(const struct cfg *cfg, size_t *pos, struct cfg_item *item_r);

/* "name = value  # source" lines, for all options (key NULL) or one.
 * -1 when key is unknown (message in error) or out is full. */
int cfg_show(const struct cfg *cfg, const char *key, struct str *out,
	     struct str *error) TERN_WUR;
/* The Markdown reference of every option (docs/config.md). */
int cfg_write_markdown(struct str *out) TERN_WUR;
/* A commented tern.conf listing every option with its default. */
int cfg_write_default_conf(struct str *out) TERN_WUR;

/*
 * Checks text (already $-expanded) against def without a struct cfg, e.g.
 * for `ternctl config set`.  Returns 0, or -1 with the expected form ("a
 * duration from 0 to 1h: ..., e.g. 30s") in expected.
 */
int cfg_value_check(const struct cfg_def *def, const char *text,
		    struct str *expected) TERN_WUR;

/* The value forms, for other configuration files (services.conf).  Each
 * returns -1 on syntax or overflow, and never checks ranges. */
int cfg_parse_bool(const char *text, bool *value_r) TERN_WUR;
int cfg_parse_int(const char *text, long long *value_r) TERN_WUR;
int cfg_parse_size(const char *text, uint64_t *bytes_r) TERN_WUR;
int cfg_parse_duration(const char *text, uint64_t *ms_r) TERN_WUR;
/* Splits a list value into a NULL-terminated array of count_r items; free
 * it with cfg_list_free(). */
char **cfg_list_split(const char *text, size_t *count_r);
void cfg_list_free(char ***items);
/* Reads a whole regular file of at most max bytes into out (replacing its
 * contents); -1 with *error_r (strerror text or a limit message). */
int cfg_read_file(const char *path, size_t max, struct str *out,
		  const char **error_r) TERN_WUR;
/* Appends text for an error message: at most 120 bytes (then "..."),
 * control bytes, non-ASCII bytes and backslashes as \xNN. */
int cfg_append_quoted(struct str *out, const char *text) TERN_WUR;
/* Formats a duration or size compactly ("1h", "100ms", "16M"). */
int cfg_format_duration(struct str *out, uint64_t ms) TERN_WUR;
int cfg_format_size(struct str *out, uint64_t bytes) TERN_WUR;

/*
 * Logical lines of a Tern configuration file (tern.conf, services.conf):
 * blank lines and lines whose first non-blank byte is '#' are skipped; a
 * line starting with a space or tab continues the previous one (joined with
 * one space); CR before LF and surrounding whitespace are dropped.  Lines
 * longer than CFG_LINE_MAX, NUL bytes and a continuation with nothing to
 * continue are errors.  The logical line must fit in line (its max).
 */
struct cfg_lines {
	const char *pos, *end;
	unsigned lineno;	/* of the byte at pos, from 1 */
};

void cfg_lines_init(struct cfg_lines *r, const void *buf, size_t len);
/* 1 = a logical line in line, starting at *lineno_r; 0 = end; -1 = error,
 * *lineno_r is the offending line. */
int cfg_lines_next(struct cfg_lines *r, struct str *line, unsigned *lineno_r,
		   const char **error_r) TERN_WUR;

#endif
