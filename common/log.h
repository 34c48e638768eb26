/*
 * log.h: one line per event, syslog-compatible, with the session or queue id.
 *
 * Lines look like Postfix's: "Nov 29 01:23:45 host tern/smtpd[812]: 4F2A9C01E3:
 * to=<a@example.com>, status=sent".  Info lines carry no level word; the
 * others start with "debug:", "warning:", "error:", "fatal:" or "panic:".
 * Control bytes and non-ASCII bytes in the formatted message are escaped
 * (\xNN) so that peer data cannot forge or split log lines.  A line is cut at
 * LOG_LINE_MAX bytes.
 *
 * Target: "syslog" (facility mail), "stderr", or an absolute file path
 * (opened in append mode; log_reopen() reopens it after rotation).
 * panic = our bug (aborts), fatal = environment or config (exit 1).
 */
#ifndef TERN_LOG_H
#define TERN_LOG_H

#include <stdarg.h>

#include "compat.h"

#define LOG_LINE_MAX 4096

enum log_level {
	LOGL_DEBUG = 0,
	LOGL_INFO,
	LOGL_WARN,
	LOGL_ERROR,
	LOGL_FATAL,
	LOGL_PANIC,
};

/* ident is the program name shown after "tern/" (e.g. "master").  Returns -1
 * with *error_r set when a file target cannot be opened; logging then stays on
 * stderr. */
int log_open(const char *ident, const char *target, enum log_level min,
	     const char **error_r) TERN_WUR;
int log_reopen(const char **error_r);
void log_close(void);
void log_set_level(enum log_level min);
/* Parses "debug", "info", "warning", "error"; -1 when unknown. */
int log_level_parse(const char *name, enum log_level *level_r) TERN_WUR;
const char *log_target(void);

/* id: session or queue id (NULL or "" for none). */
void log_msg(enum log_level level, const char *id, const char *fmt, ...)
	TERN_PRINTF(3, 4);
void log_vmsg(enum log_level level, const char *id, const char *fmt,
	      va_list ap) TERN_PRINTF(3, 0);

#define log_debug(id, ...) log_msg(LOGL_DEBUG, id, __VA_ARGS__)
#define log_info(id, ...) log_msg(LOGL_INFO, id, __VA_ARGS__)
#define log_warn(id, ...) log_msg(LOGL_WARN, id, __VA_ARGS__)
#define log_error(id, ...) log_msg(LOGL_ERROR, id, __VA_ARGS__)

void log_fatal(const char *id, const char *fmt, ...) TERN_PRINTF(2, 3)
	TERN_NORETURN;
void log_panic(const char *id, const char *fmt, ...) TERN_PRINTF(2, 3)
	TERN_NORETURN;

#endif
