/* mime_addr.c: RFC 5322 address-list parsing, lenient. */
#include "config.h"

#include "compat.h"

#include <stdlib.h>

#include "mime_addr.h"
#include "str.h"
#include "xalloc.h"

enum tok {
	TOK_END = 0,
	TOK_WORD,	/* atom (dots allowed) or quoted string */
	TOK_DLIT,	/* [domain literal] */
	TOK_SPECIAL,	/* one of < > : ; @ , */
};

struct addr_lexer {
	const char *p, *end;
	enum tok tok;
	char special;
	int quoted;		/* the word was a quoted string */
	struct str *text;	/* the token's text (unquoted) */
	struct str *comment;	/* the last comment seen, trimmed */
};

struct addr_parser {
	struct addr_lexer lx;
	struct mime_address *head, **tail;
	size_t count, max;
	int in_group;
	struct str *phrase;	/* words joined by one space */
	struct str *local;	/* words joined as they are */
};

static int is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int is_special(char c)
{
	return c == '<' || c == '>' || c == ':' || c == ';' || c == '@' ||
	       c == ',' || c == '(' || c == ')' || c == '"' || c == '[' ||
	       c == ']' || c == '\\';
}

/* Reads a (nested) comment, keeping its outer text in lx->comment. */
static void lex_comment(struct addr_lexer *lx)
{
	unsigned int depth = 0;

	str_clear(lx->comment);
	for (; lx->p < lx->end; lx->p++) {
		char c = *lx->p;

		if (c == '\\' && lx->p + 1 < lx->end)
			c = *++lx->p;
		else if (c == '(' && depth++ == 0)
			continue;
		else if (c == ')' && --depth == 0)
			break;
		if (c != '\r' && c != '\n')
			(void)!str_append_byte(lx->comment, (unsigned char)c);
	}
	if (lx->p < lx->end)
		lx->p++;
	while (str_len(lx->comment) > 0 &&
	       is_ws(str_c(lx->comment)[str_len(lx->comment) - 1]))
		str_truncate(lx->comment, str_len(lx->comment) - 1);
	while (str_len(lx->comment) > 0 && is_ws(str_c(lx->comment)[0]))
		str_consume(lx->comment, 1);
}

/* Reads up to the closing delimiter; quoted strings unescape. */
static void lex_delimited(struct addr_lexer *lx, char close, int keep)
{
	if (keep)
		(void)!str_append_byte(lx->text, (unsigned char)*lx->p);
	for (lx->p++; lx->p < lx->end && *lx->p != close; lx->p++) {
		if (*lx->p == '\\' && lx->p + 1 < lx->end && !keep)
			lx->p++;
		if (*lx->p != '\r' && *lx->p != '\n')
			(void)!str_append_byte(lx->text,
					       (unsigned char)*lx->p);
	}
	if (lx->p < lx->end) {
		if (keep)
			(void)!str_append_byte(lx->text, (unsigned char)close);
		lx->p++;
	}
}

static void lex_next(struct addr_lexer *lx)
{
	str_clear(lx->text);
	lx->quoted = 0;
	for (;;) {
		while (lx->p < lx->end && is_ws(*lx->p))
			lx->p++;
		if (lx->p >= lx->end || *lx->p != '(')
			break;
		lex_comment(lx);
	}
	if (lx->p >= lx->end) {
		lx->tok = TOK_END;
	} else if (*lx->p == '"') {
		lx->tok = TOK_WORD;
		lx->quoted = 1;
		lex_delimited(lx, '"', 0);
	} else if (*lx->p == '[') {
		lx->tok = TOK_DLIT;
		lex_delimited(lx, ']', 1);
	} else if (is_special(*lx->p)) {
		lx->tok = TOK_SPECIAL;
		lx->special = *lx->p++;
	} else {
		const char *s = lx->p;

		while (lx->p < lx->end && !is_ws(*lx->p) &&
		       !is_special(*lx->p))
			lx->p++;
		lx->tok = TOK_WORD;
		(void)!str_append(lx->text, s, (size_t)(lx->p - s));
	}
}

static int at_special(const struct addr_parser *ap, char c)
{
	return ap->lx.tok == TOK_SPECIAL && ap->lx.special == c;
}

static char *str_take(const struct str *s)
{
	return xstrndup(str_c(s), str_len(s));
}

static struct mime_address *addr_add(struct addr_parser *ap,
				     enum mime_addr_kind kind)
{
	struct mime_address *a;

	if (ap->count >= ap->max && kind != MIME_ADDR_GROUP_END)
		return NULL;
	a = xcalloc(1, sizeof(*a));
	a->kind = kind;
	*ap->tail = a;
	ap->tail = &a->next;
	ap->count++;
	return a;
}

/* Collects words (and stray dots) into phrase and local. */
static void read_phrase(struct addr_parser *ap)
{
	str_clear(ap->phrase);
	str_clear(ap->local);
	str_clear(ap->lx.comment);
	while (ap->lx.tok == TOK_WORD || at_special(ap, '\\') ||
	       at_special(ap, ']') || at_special(ap, ')')) {
		if (ap->lx.tok == TOK_WORD) {
			if (str_len(ap->phrase) > 0)
				(void)!str_append_byte(ap->phrase, ' ');
			(void)!str_append(ap->phrase, str_c(ap->lx.text),
					  str_len(ap->lx.text));
			(void)!str_append(ap->local, str_c(ap->lx.text),
					  str_len(ap->lx.text));
		}
		lex_next(&ap->lx);
	}
}

/* Domain after '@': words and literals up to a special. */
static char *read_domain(struct addr_parser *ap)
{
	struct str *d = ap->phrase;

	str_clear(d);
	while (ap->lx.tok == TOK_WORD || ap->lx.tok == TOK_DLIT) {
		(void)!str_append(d, str_c(ap->lx.text), str_len(ap->lx.text));
		lex_next(&ap->lx);
	}
	return str_take(d);
}

/* "<[@r1,@r2:]local@domain>" after '<'; the name was read before. */
static void read_angle(struct addr_parser *ap, struct mime_address *a)
{
	struct str *route = str_new(16, (size_t)(ap->lx.end - ap->lx.p) + 8);

	lex_next(&ap->lx);
	while (at_special(ap, '@') || at_special(ap, ',')) {
		char sep = ap->lx.special;
		char *dom;

		lex_next(&ap->lx);
		if (sep == ',')
			continue;
		dom = read_domain(ap);
		(void)!str_printf(route, "%s@%s",
				  str_len(route) > 0 ? "," : "", dom);
		free(dom);
	}
	if (str_len(route) > 0 && at_special(ap, ':'))
		lex_next(&ap->lx);
	if (str_len(route) > 0)
		a->route = str_take(route);
	str_free(&route);
	read_phrase(ap);
	a->mailbox = str_take(ap->local);
	if (at_special(ap, '@')) {
		lex_next(&ap->lx);
		a->domain = read_domain(ap);
	}
	while (ap->lx.tok != TOK_END && !at_special(ap, '>') &&
	       !at_special(ap, ',') && !at_special(ap, ';'))
		lex_next(&ap->lx);
	if (at_special(ap, '>'))
		lex_next(&ap->lx);
}

static void mailbox_finish(struct mime_address *a)
{
	if (a->mailbox == NULL)
		a->mailbox = xstrdup("");
	if (a->domain == NULL)
		a->domain = xstrdup("");
}

/* One mailbox or group start, after the phrase was read. */
static void read_after_phrase(struct addr_parser *ap)
{
	struct mime_address *a;
	int has_words = str_len(ap->phrase) > 0;

	if (at_special(ap, ':') && has_words && !ap->in_group) {
		a = addr_add(ap, MIME_ADDR_GROUP_START);
		if (a != NULL)
			a->name = str_take(ap->phrase);
		ap->in_group = a != NULL;
		lex_next(&ap->lx);
		return;
	}
	if (!at_special(ap, '<') && !at_special(ap, '@') && !has_words)
		return;
	a = addr_add(ap, MIME_ADDR_MAILBOX);
	if (a == NULL)
		return;
	if (at_special(ap, '<')) {
		if (has_words)
			a->name = str_take(ap->phrase);
		read_angle(ap, a);
	} else {
		a->mailbox = str_take(ap->local);
		if (at_special(ap, '@')) {
			lex_next(&ap->lx);
			a->domain = read_domain(ap);
		}
		if (str_len(ap->lx.comment) > 0)
			a->name = str_take(ap->lx.comment);
	}
	mailbox_finish(a);
}

static void group_end(struct addr_parser *ap)
{
	if (ap->in_group)
		(void)addr_add(ap, MIME_ADDR_GROUP_END);
	ap->in_group = 0;
}

static void parse_list(struct addr_parser *ap)
{
	lex_next(&ap->lx);
	while (ap->lx.tok != TOK_END) {
		read_phrase(ap);
		read_after_phrase(ap);
		/* skip junk up to the next separator */
		while (ap->lx.tok != TOK_END && !at_special(ap, ',') &&
		       !at_special(ap, ';') && ap->lx.tok != TOK_WORD &&
		       !at_special(ap, '<'))
			lex_next(&ap->lx);
		if (at_special(ap, ';')) {
			group_end(ap);
			lex_next(&ap->lx);
		} else if (at_special(ap, ',')) {
			lex_next(&ap->lx);
		}
		if (ap->count >= ap->max)
			break;
	}
	group_end(ap);
}

struct mime_address *mime_address_parse(const char *in, size_t len,
					size_t max_addrs)
{
	struct addr_parser ap;

	memset(&ap, 0, sizeof(ap));
	ap.lx.p = in;
	ap.lx.end = in + len;
	ap.lx.text = str_new(64, len + 8);
	ap.lx.comment = str_new(16, len + 8);
	ap.phrase = str_new(64, len + 8);
	ap.local = str_new(64, len + 8);
	ap.tail = &ap.head;
	/* a group's end marker may go one past the limit */
	ap.max = max_addrs > 0 ? max_addrs : 1;
	parse_list(&ap);
	str_free(&ap.lx.text);
	str_free(&ap.lx.comment);
	str_free(&ap.phrase);
	str_free(&ap.local);
	return ap.head;
}

void mime_address_free(struct mime_address **list)
{
	struct mime_address *a = *list, *next;

	for (; a != NULL; a = next) {
		next = a->next;
		free(a->name);
		free(a->route);
		free(a->mailbox);
		free(a->domain);
		free(a);
	}
	*list = NULL;
}
