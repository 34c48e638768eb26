/* smtpproto.c: see smtpproto.h. */
#include "config.h"

#include <ctype.h>
#include <stdlib.h>
#include <strings.h>

#include "compat.h"
#include "smtpproto.h"
#include "xalloc.h"

/* ---- commands ------------------------------------------------------- */

static const struct {
	const char *name;
	enum smtp_verb verb;
} verbs[] = {
	{ "HELO", SMTP_HELO }, { "EHLO", SMTP_EHLO }, { "LHLO", SMTP_LHLO },
	{ "MAIL", SMTP_MAIL }, { "RCPT", SMTP_RCPT }, { "DATA", SMTP_DATA },
	{ "BDAT", SMTP_BDAT }, { "RSET", SMTP_RSET }, { "NOOP", SMTP_NOOP },
	{ "QUIT", SMTP_QUIT }, { "VRFY", SMTP_VRFY }, { "EXPN", SMTP_EXPN },
	{ "HELP", SMTP_HELP }, { "STARTTLS", SMTP_STARTTLS },
	{ "AUTH", SMTP_AUTH },
};

const char *smtp_verb_name(enum smtp_verb verb)
{
	for (size_t i = 0; i < TERN_NELEM(verbs); i++) {
		if (verbs[i].verb == verb)
			return verbs[i].name;
	}
	return "UNKNOWN";
}

static bool is_atext(unsigned char c, unsigned flags)
{
	if (c >= 0x80)
		return (flags & SMTP_PARSE_UTF8) != 0;
	/* c != 0: strchr() would find the string's own terminator. */
	return isalnum(c) ||
	       (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* Local-part = Dot-string / Quoted-string; *p advances past it. */
static int parse_local_part(const char **p, unsigned flags)
{
	const char *s = *p;

	if (*s == '"') {
		for (s++; *s != '"'; s++) {
			if (*s == '\0')
				return -1;
			if (*s == '\\') {
				s++;
				if (*s < 32 || *s == 127)
					return -1;
			} else if ((unsigned char)*s < 32 || *s == 127 ||
				   ((unsigned char)*s >= 0x80 &&
				    !(flags & SMTP_PARSE_UTF8))) {
				return -1;
			}
		}
		*p = s + 1;
		return 0;
	}
	for (;;) {
		const char *start = s;

		while (is_atext((unsigned char)*s, flags))
			s++;
		if (s == start)
			return -1;	/* empty atom: "..", leading or trailing dot */
		if (*s != '.')
			break;
		s++;
	}
	*p = s;
	return 0;
}

/* Domain / address-literal, to the end of the string. */
static int parse_domain(const char *s, unsigned flags)
{
	if (*s == '[') {
		size_t n = strlen(s);

		if (n < 3 || s[n - 1] != ']')
			return -1;
		for (size_t i = 1; i < n - 1; i++) {
			if ((unsigned char)s[i] <= 32 || s[i] == '[' ||
			    s[i] == ']' || s[i] == '\\' ||
			    (unsigned char)s[i] >= 127)
				return -1;
		}
		return 0;
	}
	for (;;) {
		const char *start = s;

		while (isalnum((unsigned char)*s) || *s == '-' ||
		       ((unsigned char)*s >= 0x80 && (flags & SMTP_PARSE_UTF8)))
			s++;
		if (s == start || start[0] == '-' || s[-1] == '-' ||
		    s - start > 63)
			return -1;
		if (*s == '\0')
			return 0;
		if (*s != '.')
			return -1;
		s++;
	}
}

/* Checks a mailbox "local@domain" (or "postmaster" for RCPT). */
static int check_mailbox(const char *box, enum smtp_verb verb,
			 unsigned flags)
{
	const char *p = box;

	if (verb == SMTP_RCPT && strcasecmp(box, "postmaster") == 0)
		return 0;
	if (parse_local_part(&p, flags) < 0 || *p != '@' ||
	    p - box > 64 * 4)
		return -1;
	return parse_domain(p + 1, flags);
}

/* Splits "<path> params" at *s: NUL-terminates the address in place. */
static int parse_path(char **s, enum smtp_verb verb, unsigned flags,
		      const char **path_r)
{
	char *p = *s, *start, *end;
	bool quoted = false;

	while (*p == ' ')
		p++;	/* "MAIL FROM: <a@b>" from older clients */
	if (*p != '<') {
		/* A bare address (no brackets, no spaces), as some old clients
		 * send it. */
		start = p;
		end = p + strcspn(p, " ");
	} else {
		start = ++p;
		for (end = p; *end != '\0'; end++) {
			if (*end == '\\' && quoted && end[1] != '\0')
				end++;
			else if (*end == '"')
				quoted = !quoted;
			else if (*end == '>' && !quoted)
				break;
		}
		if (*end != '>' || (end[1] != '\0' && end[1] != ' '))
			return -1;
	}
	p = *end != '\0' ? end + 1 : end;
	*end = '\0';
	/* Source route "@a,@b:" is obsolete: dropped (RFC 5321 4.1.2). */
	if (*start == '@') {
		char *colon = strchr(start, ':');
		if (colon == NULL)
			return -1;
		start = colon + 1;
	}
	if (strlen(start) > SMTP_PATH_MAX)
		return -1;
	if (*start == '\0') {
		if (verb != SMTP_MAIL)
			return -1;
	} else if (check_mailbox(start, verb, flags) < 0) {
		return -1;
	}
	*path_r = start;
	*s = p;
	return 0;
}

static bool is_esmtp_value_char(unsigned char c, unsigned flags)
{
	if (c >= 0x80)
		return (flags & SMTP_PARSE_UTF8) != 0;
	return c >= 33 && c <= 126 && c != '=';
}

/* One "KEY[=VALUE]" word: the keyword is upper-cased in place. */
static int parse_param(char *tok, unsigned flags, struct smtp_cmd *cmd)
{
	struct smtp_param *prm;
	char *p = tok;

	if (cmd->nparams == SMTP_PARAMS_MAX || !isalnum((unsigned char)*p))
		return -1;
	for (; isalnum((unsigned char)*p) || *p == '-'; p++)
		*p = (char)toupper((unsigned char)*p);
	prm = &cmd->params[cmd->nparams];
	prm->keyword = tok;
	prm->value = NULL;
	if (*p == '=') {
		*p++ = '\0';
		prm->value = p;
		if (*p == '\0')
			return -1;
		for (; *p != '\0'; p++) {
			if (!is_esmtp_value_char((unsigned char)*p, flags))
				return -1;
		}
	} else if (*p != '\0') {
		return -1;
	}
	cmd->nparams++;
	return 0;
}

/* The words after the path, to the end of the line. */
static int parse_params(char *s, unsigned flags, struct smtp_cmd *cmd)
{
	while (*s == ' ')
		s++;
	while (*s != '\0') {
		char *tok = s;

		s += strcspn(s, " ");
		if (*s == ' ') {
			*s++ = '\0';
			while (*s == ' ')
				s++;
		}
		if (parse_param(tok, flags, cmd) < 0)
			return -1;
	}
	return 0;
}

static int parse_bdat(char *arg, struct smtp_cmd *cmd)
{
	uint64_t n = 0;
	char *p = arg;

	if (!isdigit((unsigned char)*p))
		return -1;
	for (; isdigit((unsigned char)*p); p++) {
		if (n > (UINT64_MAX - 9) / 10)
			return -1;
		n = n * 10 + (uint64_t)(*p - '0');
	}
	cmd->chunk_size = n;
	while (*p == ' ')
		p++;
	if (*p == '\0')
		return 0;
	if (strcasecmp(p, "LAST") != 0)
		return -1;
	cmd->last = true;
	return 0;
}

static int parse_mail_rcpt(char *arg, unsigned flags, struct smtp_cmd *cmd,
			   const char **error_r)
{
	const char *prefix = cmd->verb == SMTP_MAIL ? "FROM:" : "TO:";
	size_t n = strlen(prefix);

	if (strncasecmp(arg, prefix, n) != 0) {
		*error_r = cmd->verb == SMTP_MAIL ?
				   "501 5.5.4 Syntax: MAIL FROM:<address>" :
				   "501 5.5.4 Syntax: RCPT TO:<address>";
		return -1;
	}
	arg += n;
	if (parse_path(&arg, cmd->verb, flags, &cmd->path) < 0) {
		*error_r = cmd->verb == SMTP_MAIL ?
				   "501 5.1.7 Bad sender address syntax" :
				   "501 5.1.3 Bad recipient address syntax";
		return -1;
	}
	if (parse_params(arg, flags, cmd) < 0) {
		*error_r = "501 5.5.4 Bad parameters";
		return -1;
	}
	return 0;
}

static int parse_args(struct smtp_cmd *cmd, char *arg, unsigned flags,
		      const char **error_r)
{
	switch (cmd->verb) {
	case SMTP_HELO:
	case SMTP_EHLO:
	case SMTP_LHLO:
		if (*arg == '\0') {
			*error_r = "501 5.5.4 Syntax: EHLO hostname";
			return -1;
		}
		return 0;
	case SMTP_MAIL:
	case SMTP_RCPT:
		return parse_mail_rcpt(arg, flags, cmd, error_r);
	case SMTP_BDAT:
		if (parse_bdat(arg, cmd) < 0) {
			*error_r = "501 5.5.4 Syntax: BDAT size [LAST]";
			return -1;
		}
		return 0;
	case SMTP_DATA:
	case SMTP_RSET:
	case SMTP_QUIT:
	case SMTP_STARTTLS:
		if (*arg != '\0') {
			*error_r = "501 5.5.4 Syntax error (no parameters "
				   "allowed)";
			return -1;
		}
		return 0;
	case SMTP_VRFY:
	case SMTP_EXPN:
	case SMTP_AUTH:
		if (*arg == '\0') {
			*error_r = "501 5.5.4 Syntax error (argument required)";
			return -1;
		}
		return 0;
	default:
		return 0;
	}
}

int smtp_cmd_parse(char *line, size_t len, unsigned flags,
		   struct smtp_cmd *cmd_r, const char **error_r)
{
	char *arg;
	size_t vlen;

	memset(cmd_r, 0, sizeof(*cmd_r));
	if (memchr(line, '\0', len) != NULL) {
		*error_r = "500 5.5.2 Error: NUL character in command";
		return -1;
	}
	line[len] = '\0';
	vlen = strcspn(line, " ");
	arg = line + vlen;
	if (*arg == ' ')
		*arg++ = '\0';
	while (*arg == ' ')
		arg++;
	/* Trailing spaces are common and harmless. */
	for (size_t n = strlen(arg); n > 0 && arg[n - 1] == ' '; n--)
		arg[n - 1] = '\0';
	cmd_r->name = line;
	cmd_r->arg = arg;
	cmd_r->path = "";
	for (size_t i = 0; i < TERN_NELEM(verbs); i++) {
		if (strcasecmp(line, verbs[i].name) == 0) {
			cmd_r->verb = verbs[i].verb;
			break;
		}
	}
	return parse_args(cmd_r, arg, flags, error_r);
}

const char *smtp_cmd_param(const struct smtp_cmd *cmd, const char *keyword,
			   bool *found_r)
{
	for (size_t i = 0; i < cmd->nparams; i++) {
		if (strcasecmp(cmd->params[i].keyword, keyword) == 0) {
			if (found_r != NULL)
				*found_r = true;
			return cmd->params[i].value;
		}
	}
	if (found_r != NULL)
		*found_r = false;
	return NULL;
}

/* ---- DATA ----------------------------------------------------------- */

enum data_state {
	D_BOL,		/* after CRLF (or at the start) */
	D_BOL_DOT,	/* "." at the start of a line */
	D_BOL_DOT_CR,	/* ".\r" at the start of a line */
	D_MID,		/* inside a line */
	D_CR,		/* a CR inside a line, LF not seen yet */
};

struct smtp_data {
	enum smtp_data_mode mode;
	enum data_state state;
	uint64_t max, size;
	unsigned flags;
};

struct smtp_data *smtp_data_new(enum smtp_data_mode mode, uint64_t max_size)
{
	struct smtp_data *d = xcalloc(1, sizeof(*d));

	d->mode = mode;
	d->max = max_size;
	return d;
}

void smtp_data_free(struct smtp_data **d)
{
	free(*d);
	*d = NULL;
}

void smtp_data_reset(struct smtp_data *d)
{
	d->state = D_BOL;
	d->size = 0;
	d->flags = 0;
}

unsigned smtp_data_flags(const struct smtp_data *d)
{
	return d->flags;
}

uint64_t smtp_data_size(const struct smtp_data *d)
{
	return d->size;
}

/* Appends what still fits under max_size; the size counts everything. */
static void data_emit(struct smtp_data *d, struct str *out, const char *p,
		      size_t n)
{
	uint64_t fit = d->size >= d->max ? 0 : d->max - d->size;

	if (fit > n)
		fit = n;
	if (fit < n)
		d->flags |= SMTP_DATA_TOO_BIG;
	d->size += n;
	if (fit > 0 && str_append(out, p, (size_t)fit) < 0)
		abort();	/* room was checked by the caller */
}

/* A bare CR or LF: strict mode keeps the byte (the message is flagged and
 * will be refused); normalize mode writes CRLF. */
static void data_bare(struct smtp_data *d, struct str *out, char c)
{
	d->flags |= c == '\r' ? SMTP_DATA_BARE_CR : SMTP_DATA_BARE_LF;
	if (d->mode == SMTP_DATA_NORMALIZE)
		data_emit(d, out, "\r\n", 2);
	else
		data_emit(d, out, &c, 1);
}

/* Copies the run of ordinary bytes at p; returns how many. */
static size_t data_run(struct smtp_data *d, struct str *out, const char *p,
		       const char *end)
{
	const char *s = p;
	size_t room = str_room(out);

	while (s < end && *s != '\r' && *s != '\n' && (size_t)(s - p) < room) {
		if (*s == '\0')
			d->flags |= SMTP_DATA_NUL;
		s++;
	}
	if (s > p)
		data_emit(d, out, p, (size_t)(s - p));
	return (size_t)(s - p);
}

/* One step: consumes at least one byte; 1 = end of data. */
static int data_step(struct smtp_data *d, const char **pos, const char *end,
		     struct str *out)
{
	char c = **pos;

	switch (d->state) {
	case D_BOL:
		if (c == '.') {
			d->state = D_BOL_DOT;
			(*pos)++;
			return 0;
		}
		d->state = D_MID;
		return 0;
	case D_BOL_DOT:
		if (c == '\r') {
			d->state = D_BOL_DOT_CR;
			(*pos)++;
			return 0;
		}
		d->state = D_MID;	/* the stuffed dot is dropped */
		return 0;
	case D_BOL_DOT_CR:
		if (c == '\n') {
			(*pos)++;
			return 1;
		}
		data_bare(d, out, '\r');	/* ".\rX": dot dropped */
		d->state = D_MID;
		return 0;
	case D_CR:
		if (c == '\n') {
			data_emit(d, out, "\r\n", 2);
			d->state = D_BOL;
			(*pos)++;
			return 0;
		}
		data_bare(d, out, '\r');
		d->state = D_MID;
		return 0;
	case D_MID:
		if (c == '\r') {
			d->state = D_CR;
			(*pos)++;
		} else if (c == '\n') {
			/* Not a line end for the end marker or dot stuffing. */
			data_bare(d, out, '\n');
			(*pos)++;
		} else {
			*pos += data_run(d, out, *pos, end);
		}
		return 0;
	}
	return 0;
}

int smtp_data_feed(struct smtp_data *d, const char **pos, const char *end,
		   struct str *out)
{
	while (*pos < end) {
		/* Each step writes at most 3 bytes outside a run. */
		if (str_room(out) < 4)
			return -1;
		if (data_step(d, pos, end, out) == 1)
			return 1;
	}
	return 0;
}

void smtp_date(time_t when, char buf[static SMTP_DATE_SIZE])
{
	struct tm tm;

	if (localtime_r(&when, &tm) == NULL ||
	    strftime(buf, SMTP_DATE_SIZE, "%a, %d %b %Y %H:%M:%S %z",
		     &tm) == 0)
		str_lcpy(buf, "Thu, 01 Jan 1970 00:00:00 +0000",
			 SMTP_DATE_SIZE);
}

bool smtp_hello_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > SMTP_HELLO_MAX)
		return false;
	for (const char *p = name; *p != '\0'; p++) {
		if (*p <= ' ' || *p >= 127 || *p == '(' || *p == ')')
			return false;
	}
	return true;
}
