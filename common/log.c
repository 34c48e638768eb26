/* log.c: see log.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "log.h"
#include "str.h"

static struct {
	char ident[64];
	char target[1024];
	char host[256];
	enum log_level min;
	int fd;			/* -1 = syslog */
	int use_syslog;
} lg = { "tern", "stderr", "localhost", LOGL_INFO, 2, 0 };

static const char *const level_names[] = {
	"debug", "info", "warning", "error", "fatal", "panic",
};

static void log_hostname(void)
{
	char *dot;

	if (gethostname(lg.host, sizeof(lg.host) - 1) < 0)
		str_lcpy(lg.host, "localhost", sizeof(lg.host));
	lg.host[sizeof(lg.host) - 1] = '\0';
	dot = strchr(lg.host, '.');
	if (dot != NULL)
		*dot = '\0';
}

static int log_open_target(const char **error_r)
{
	if (strcmp(lg.target, "syslog") == 0) {
		char ident[80];

		snprintf(ident, sizeof(ident), "tern/%s", lg.ident);
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
		lg.use_syslog = 1;
		lg.fd = -1;
		return 0;
	}
	lg.use_syslog = 0;
	if (strcmp(lg.target, "stderr") == 0) {
		lg.fd = 2;
		return 0;
	}
	if (lg.target[0] != '/') {
		*error_r = "log target must be syslog, stderr or an absolute path";
		lg.fd = 2;
		return -1;
	}
	lg.fd = open(lg.target, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
		     0640);
	if (lg.fd < 0) {
		*error_r = strerror(errno);
		lg.fd = 2;
		return -1;
	}
	return 0;
}

int log_open(const char *ident, const char *target, enum log_level min,
	     const char **error_r)
{
	log_close();
	str_lcpy(lg.ident, ident, sizeof(lg.ident));
	if (str_lcpy(lg.target, target, sizeof(lg.target)) >=
	    sizeof(lg.target)) {
		*error_r = "log target path too long";
		str_lcpy(lg.target, "stderr", sizeof(lg.target));
	}
	lg.min = min;
	log_hostname();
	return log_open_target(error_r);
}

int log_reopen(const char **error_r)
{
	if (lg.use_syslog || lg.fd == 2)
		return 0;
	log_close();
	return log_open_target(error_r);
}

void log_close(void)
{
	if (lg.use_syslog)
		closelog();
	else if (lg.fd > 2)
		close(lg.fd);
	lg.use_syslog = 0;
	lg.fd = 2;
}

void log_set_level(enum log_level min)
{
	lg.min = min;
}

const char *log_target(void)
{
	return lg.target;
}

int log_level_parse(const char *name, enum log_level *level_r)
{
	for (size_t i = 0; i <= LOGL_ERROR; i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*level_r = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

/* Appends src to dst[*pos..size-1], escaping what could forge a line. */
static void log_escape(char *dst, size_t *pos, size_t size, const char *src)
{
	static const char hex[] = "0123456789abcdef";

	for (; *src != '\0' && *pos + 5 < size; src++) {
		unsigned char c = (unsigned char)*src;

		if (c < 0x20 || c >= 0x7f || c == '\\') {
			dst[(*pos)++] = '\\';
			if (c == '\\') {
				dst[(*pos)++] = '\\';
				continue;
			}
			dst[(*pos)++] = 'x';
			dst[(*pos)++] = hex[c >> 4];
			dst[(*pos)++] = hex[c & 15];
		} else {
			dst[(*pos)++] = (char)c;
		}
	}
}

static int syslog_prio(enum log_level level)
{
	switch (level) {
	case LOGL_DEBUG: return LOG_DEBUG;
	case LOGL_INFO: return LOG_INFO;
	case LOGL_WARN: return LOG_WARNING;
	case LOGL_ERROR: return LOG_ERR;
	case LOGL_FATAL: return LOG_CRIT;
	default: return LOG_ALERT;
	}
}

void log_vmsg(enum log_level level, const char *id, const char *fmt,
	      va_list ap)
{
	char msg[LOG_LINE_MAX], line[LOG_LINE_MAX + 512];
	size_t pos = 0;
	int saved = errno;

	if (level < lg.min)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (!lg.use_syslog) {
		struct tm tm;
		time_t now = time(NULL);

		localtime_r(&now, &tm);
		pos = strftime(line, sizeof(line), "%b %e %H:%M:%S ", &tm);
		pos += (size_t)snprintf(line + pos, sizeof(line) - pos,
					"%s tern/%s[%ld]: ", lg.host, lg.ident,
					(long)getpid());
	}
	if (level != LOGL_INFO)
		pos += (size_t)snprintf(line + pos, sizeof(line) - pos, "%s: ",
					level_names[level]);
	if (id != NULL && *id != '\0') {
		log_escape(line, &pos, sizeof(line) - 2, id);
		line[pos++] = ':';
		line[pos++] = ' ';
	}
	log_escape(line, &pos, sizeof(line) - 1, msg);
	if (lg.use_syslog) {
		line[pos] = '\0';
		syslog(syslog_prio(level), "%s", line);
	} else {
		line[pos++] = '\n';
		/* One write() per line keeps lines whole in O_APPEND files. */
		if (write(lg.fd, line, pos) < 0) {
			/* nowhere left to report it */
		}
	}
	errno = saved;
}

void log_msg(enum log_level level, const char *id, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, id, fmt, ap);
	va_end(ap);
}

void log_fatal(const char *id, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOGL_FATAL, id, fmt, ap);
	va_end(ap);
	exit(1);
}

void log_panic(const char *id, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOGL_PANIC, id, fmt, ap);
	va_end(ap);
	abort();
}
