/* pop3proto.c: see pop3proto.h. */
#include "config.h"

#include <ctype.h>
#include <stdlib.h>
#include <strings.h>

#include "compat.h"
#include "base64.h"
#include "linereader.h"
#include "pop3proto.h"
#include "xalloc.h"

#define VERB_MAX 4

struct pop3_parser {
	struct linereader *lr;
	struct str *line;	/* the current line, NUL-terminated pieces */
	char name[VERB_MAX + 1];
	bool sasl;		/* the next line is a SASL response */
};

static const struct {
	const char *name;
	enum pop3_verb verb;
} verbs[] = {
	{ "USER", POP3_USER }, { "PASS", POP3_PASS }, { "APOP", POP3_APOP },
	{ "STAT", POP3_STAT }, { "LIST", POP3_LIST }, { "RETR", POP3_RETR },
	{ "DELE", POP3_DELE }, { "NOOP", POP3_NOOP }, { "RSET", POP3_RSET },
	{ "QUIT", POP3_QUIT }, { "TOP", POP3_TOP }, { "UIDL", POP3_UIDL },
	{ "CAPA", POP3_CAPA }, { "STLS", POP3_STLS }, { "AUTH", POP3_AUTH },
};

const char *pop3_verb_name(enum pop3_verb verb)
{
	for (size_t i = 0; i < TERN_NELEM(verbs); i++) {
		if (verbs[i].verb == verb)
			return verbs[i].name;
	}
	return verb == POP3_SASL ? "SASL" : "UNKNOWN";
}

struct pop3_parser *pop3_parser_new(size_t max_line)
{
	struct pop3_parser *p = xcalloc(1, sizeof(*p));

	if (max_line < POP3_LINE_MIN)
		max_line = POP3_LINE_MIN;
	if (max_line > LINEREADER_MAX_LIMIT)
		max_line = LINEREADER_MAX_LIMIT;
	p->lr = linereader_new(max_line);
	p->line = str_new(256, max_line);
	return p;
}

void pop3_parser_free(struct pop3_parser **pp)
{
	struct pop3_parser *p = *pp;

	if (p == NULL)
		return;
	linereader_free(&p->lr);
	str_free(&p->line);
	free(p);
	*pp = NULL;
}

void pop3_parser_reset(struct pop3_parser *p)
{
	linereader_reset(p->lr);
	str_clear(p->line);
	p->sasl = false;
}

void pop3_parser_expect_sasl(struct pop3_parser *p)
{
	p->sasl = true;
}

size_t pop3_parser_buffered(const struct pop3_parser *p)
{
	return linereader_buffered(p->lr);
}

/* ---- arguments ---- */

/* The next space-separated word of *s, NUL-terminated in place, or NULL
 * at the end of the line. */
static char *next_word(char **s)
{
	char *w = *s, *e;

	while (*w == ' ')
		w++;
	if (*w == '\0') {
		*s = w;
		return NULL;
	}
	e = w;
	while (*e != '\0' && *e != ' ')
		e++;
	if (*e != '\0')
		*e++ = '\0';
	*s = e;
	return w;
}

/* A decimal number of at most 19 digits, no sign. */
static int parse_number(const char *w, uint64_t *value_r)
{
	uint64_t v = 0;
	size_t n = 0;

	for (; w[n] != '\0'; n++) {
		if (w[n] < '0' || w[n] > '9' || n >= 19)
			return -1;
		v = v * 10 + (uint64_t)(w[n] - '0');
	}
	if (n == 0)
		return -1;
	*value_r = v;
	return 0;
}

static int parse_msg(const char *w, struct pop3_cmd *cmd,
		     const char **error_r)
{
	uint64_t v;

	if (parse_number(w, &v) < 0 || v == 0 || v > POP3_MSG_MAX) {
		*error_r = "-ERR Invalid message number";
		return -1;
	}
	cmd->has_msg = true;
	cmd->msg = (uint32_t)v;
	return 0;
}

static bool rest_empty(char *rest)
{
	while (*rest == ' ')
		rest++;
	return *rest == '\0';
}

/* Strips trailing spaces of s in place. */
static void rstrip(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && s[n - 1] == ' ')
		s[--n] = '\0';
}

/* The arguments of cmd->verb in rest (the line after the verb). */
static int parse_args(struct pop3_cmd *cmd, char *rest, const char **error_r)
{
	char *w;

	switch (cmd->verb) {
	case POP3_USER:
		rstrip(rest);
		while (*rest == ' ')
			rest++;
		if (*rest == '\0') {
			*error_r = "-ERR Syntax: USER name";
			return -1;
		}
		cmd->arg = rest;
		return 0;
	case POP3_PASS:
		cmd->arg = rest;	/* "PASS" alone: an empty password */
		return 0;
	case POP3_APOP:
		cmd->arg = rest;
		return 0;
	case POP3_LIST:
	case POP3_UIDL:
		w = next_word(&rest);
		if (w != NULL && parse_msg(w, cmd, error_r) < 0)
			return -1;
		break;
	case POP3_RETR:
	case POP3_DELE:
	case POP3_TOP:
		w = next_word(&rest);
		if (w == NULL) {
			*error_r = cmd->verb == POP3_TOP ?
				   "-ERR Syntax: TOP msg lines" :
				   "-ERR Syntax: command msg";
			return -1;
		}
		if (parse_msg(w, cmd, error_r) < 0)
			return -1;
		if (cmd->verb != POP3_TOP)
			break;
		w = next_word(&rest);
		if (w == NULL || parse_number(w, &cmd->lines) < 0) {
			*error_r = "-ERR Syntax: TOP msg lines";
			return -1;
		}
		break;
	case POP3_AUTH:
		w = next_word(&rest);
		if (w != NULL) {
			for (char *c = w; *c != '\0'; c++)
				*c = (char)toupper((unsigned char)*c);
			cmd->arg = w;
			cmd->initial = next_word(&rest);
		}
		break;
	default:
		break;
	}
	if (!rest_empty(rest)) {
		*error_r = "-ERR Too many arguments";
		return -1;
	}
	return 0;
}

static int parse_line(struct pop3_parser *p, struct pop3_cmd *cmd,
		      const char **error_r)
{
	char *line = str_data(p->line);
	char *rest = line;
	char *verb;

	if (strncasecmp(line, "PASS ", 5) == 0) {
		/* Every byte after "PASS " is the password, spaces too. */
		str_lcpy(p->name, line, 5);
		cmd->name = p->name;
		cmd->verb = POP3_PASS;
		cmd->arg = line + 5;
		return 1;
	}
	verb = next_word(&rest);
	if (verb == NULL) {
		*error_r = "-ERR Empty command";
		return -1;
	}
	str_lcpy(p->name, verb, sizeof(p->name));
	cmd->name = p->name;
	if (strlen(verb) > VERB_MAX)
		return 1;	/* POP3_UNKNOWN */
	for (size_t i = 0; i < TERN_NELEM(verbs); i++) {
		if (strcasecmp(verbs[i].name, verb) == 0) {
			cmd->verb = verbs[i].verb;
			break;
		}
	}
	if (cmd->verb == POP3_UNKNOWN)
		return 1;
	return parse_args(cmd, rest, error_r) < 0 ? -1 : 1;
}

int pop3_parser_feed(struct pop3_parser *p, const char **pos, const char *end,
		     struct pop3_cmd *cmd_r, const char **error_r)
{
	struct linereader_line l;
	bool sasl;
	int r;

	memset(cmd_r, 0, sizeof(*cmd_r));
	cmd_r->name = cmd_r->arg = "";
	r = linereader_feed(p->lr, pos, end, &l);
	if (r == LINEREADER_MORE)
		return 0;
	sasl = p->sasl;
	p->sasl = false;
	if (r == LINEREADER_TOO_LONG) {
		*error_r = "-ERR Line too long";
		return -1;
	}
	if (r != LINEREADER_LINE || memchr(l.data, '\0', l.len) != NULL ||
	    str_set(p->line, l.data, l.len) < 0) {
		*error_r = "-ERR Invalid characters in command";
		return -1;
	}
	if (sasl) {
		cmd_r->verb = POP3_SASL;
		cmd_r->arg = str_c(p->line);
		return 1;
	}
	return parse_line(p, cmd_r, error_r);
}

/* ---- AUTH PLAIN ---- */

int pop3_sasl_plain_decode(const char *b64, size_t len, struct str *buf,
			   const char **authzid_r, const char **authcid_r,
			   const char **password_r)
{
	return sasl_plain_decode(b64, len, POP3_SASL_MAX, buf, authzid_r,
				 authcid_r, password_r);
}

/* ---- RETR and TOP ---- */

struct pop3_body {
	int64_t lines;		/* body lines still to send; < 0 = all */
	bool bol;		/* at the start of a line */
	bool cr;		/* a CR was seen, its line end not yet sent */
	bool header;		/* still in the header */
	bool empty;		/* the current line has no data so far */
	uint64_t written;
};

struct pop3_body *pop3_body_new(int64_t lines)
{
	struct pop3_body *b = xmalloc(sizeof(*b));

	pop3_body_reset(b, lines);
	return b;
}

void pop3_body_free(struct pop3_body **b)
{
	free(*b);
	*b = NULL;
}

void pop3_body_reset(struct pop3_body *b, int64_t lines)
{
	b->lines = lines;
	b->bol = true;
	b->cr = false;
	b->header = true;
	b->empty = true;
	b->written = 0;
}

uint64_t pop3_body_written(const struct pop3_body *b)
{
	return b->written;
}

static int emit(struct pop3_body *b, struct str *out, const void *p,
		size_t n)
{
	if (str_append(out, p, n) < 0)
		return -1;
	b->written += n;
	return 0;
}

/* Writes a line end (room was checked) and moves to the next line. */
static void end_line(struct pop3_body *b, struct str *out)
{
	(void)emit(b, out, "\r\n", 2);
	if (b->header) {
		if (b->empty)
			b->header = false;
	} else if (b->lines > 0) {
		b->lines--;
	}
	b->bol = true;
	b->empty = true;
}

/* true when TOP has sent everything it needs. */
static bool top_done(const struct pop3_body *b)
{
	return b->bol && !b->header && b->lines == 0;
}

/*
 * The length of the longest run of whole lines at p that need no change:
 * each ends in CRLF, holds no other CR or LF and does not start with ".",
 * and the run fits in max bytes.  RETR copies such a run as it is, which
 * is nearly all of a stored message.
 */
static size_t plain_lines(const char *p, const char *end, size_t max)
{
	const char *q = p;

	if ((size_t)(end - p) > max)
		end = p + max;
	while (q < end && *q != '.') {
		const char *lf = memchr(q, '\n', (size_t)(end - q));

		if (lf == NULL || lf == q || lf[-1] != '\r' ||
		    memchr(q, '\r', (size_t)(lf - 1 - q)) != NULL)
			break;
		q = lf + 1;
	}
	return (size_t)(q - p);
}

int pop3_body_feed(struct pop3_body *b, const char **pos, const char *end,
		   struct str *out)
{
	const char *p = *pos;
	int r = 0;

	while (p < end || b->cr) {
		size_t room = str_room(out), n;

		if (b->lines < 0 && b->bol && !b->cr &&
		    (n = plain_lines(p, end, room)) > 0) {
			/* RETR only: TOP counts lines. */
			(void)emit(b, out, p, n);
			p += n;
			continue;
		}
		if (top_done(b)) {
			r = 1;
			break;
		}
		if (room < POP3_BODY_ROOM_MIN) {
			r = -1;
			break;
		}
		if (b->cr) {
			/* CRLF, or a bare CR: either way one line end. */
			if (p == end)
				break;
			b->cr = false;
			if (*p == '\n')
				p++;
			end_line(b, out);
			continue;
		}
		if (b->bol && *p == '.')
			(void)emit(b, out, ".", 1);
		b->bol = false;
		room = str_room(out);
		n = 0;
		while (p + n < end && p[n] != '\r' && p[n] != '\n' &&
		       n < room)
			n++;
		if (n > 0) {
			(void)emit(b, out, p, n);
			b->empty = false;
			p += n;
			continue;
		}
		if (p == end)
			break;
		if (*p++ == '\r')
			b->cr = true;
		else
			end_line(b, out);
	}
	*pos = p;
	return r;
}

int pop3_body_finish(struct pop3_body *b, struct str *out)
{
	if (b->cr || !b->bol) {
		if (str_room(out) < 2)
			return -1;
		b->cr = false;
		end_line(b, out);
	}
	if (str_room(out) < 3)
		return -1;
	(void)emit(b, out, ".\r\n", 3);
	return 0;
}
