/* imapparse.c: see imapparse.h. */
#include "config.h"

#include "compat.h"

#include <ctype.h>
#include <stdlib.h>
#include <strings.h>

#include "imapparse.h"
#include "imaptypes.h"
#include "log.h"
#include "str.h"
#include "xalloc.h"

/* ---- command memory ------------------------------------------------- */

#define POOL_ALIGN 16
#define POOL_BLOCK 4096

struct pool_block {
	struct pool_block *next;
	size_t size, used;
};

struct cleanup {
	struct cleanup *next;
	void (*fn)(void *);
	void *ctx;
};

struct imap_cmd_priv {
	struct pool_block *blocks;
	struct cleanup *cleanups;
};

#define BLOCK_HDR \
	((sizeof(struct pool_block) + POOL_ALIGN - 1) & ~(size_t)(POOL_ALIGN - 1))

void *imap_cmd_alloc(struct imap_cmd *cmd, size_t n)
{
	struct imap_cmd_priv *pv = cmd->priv;
	struct pool_block *b = pv->blocks;
	char *mem;

	n = (n + POOL_ALIGN - 1) & ~(size_t)(POOL_ALIGN - 1);
	if (n == 0)
		n = POOL_ALIGN;
	if (b == NULL || b->size - b->used < n) {
		size_t size = n > POOL_BLOCK ? n : POOL_BLOCK;

		b = xmalloc(BLOCK_HDR + size);
		b->size = size;
		b->used = 0;
		b->next = pv->blocks;
		pv->blocks = b;
	}
	mem = (char *)b + BLOCK_HDR + b->used;
	b->used += n;
	memset(mem, 0, n);
	return mem;
}

char *imap_cmd_strndup(struct imap_cmd *cmd, const char *s, size_t n)
{
	char *d = imap_cmd_alloc(cmd, n + 1);

	if (n > 0)
		memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

void imap_cmd_on_free(struct imap_cmd *cmd, void (*fn)(void *), void *ctx)
{
	struct cleanup *c = imap_cmd_alloc(cmd, sizeof(*c));

	c->fn = fn;
	c->ctx = ctx;
	c->next = cmd->priv->cleanups;
	cmd->priv->cleanups = c;
}

static struct imap_cmd *cmd_new(void)
{
	struct imap_cmd *cmd = xcalloc(1, sizeof(*cmd));

	cmd->priv = xcalloc(1, sizeof(*cmd->priv));
	cmd->tag = "";
	cmd->name = "";
	return cmd;
}

void imap_cmd_free(struct imap_cmd **cmdp)
{
	struct imap_cmd *cmd = *cmdp;

	if (cmd == NULL)
		return;
	for (struct cleanup *c = cmd->priv->cleanups; c != NULL; c = c->next)
		c->fn(c->ctx);
	while (cmd->priv->blocks != NULL) {
		struct pool_block *b = cmd->priv->blocks;

		cmd->priv->blocks = b->next;
		free(b);
	}
	free(cmd->priv);
	free(cmd);
	*cmdp = NULL;
}

static void str_free_cb(void *ctx)
{
	struct str *s = ctx;

	str_free(&s);
}

/* ---- the parser ----------------------------------------------------- */

/* A node while the command is built; arrays come at the end. */
struct pnode {
	struct imap_arg a;
	struct pnode *next, *child, *tail;
	struct str *data;	/* literal data being read */
};

enum pstate {
	ST_LINE,	/* reading a line */
	ST_LITERAL,	/* reading literal bytes */
	ST_SKIP,	/* skipping a refused non-synchronising literal */
	ST_DISCARD,	/* discarding the rest of a refused command line */
};

enum seg_result {
	SEG_DONE,
	SEG_LITERAL,
	SEG_ERROR,
};

#define TAIL_MAX 32	/* "~{" + 20 digits + "+}" + CR fits */

struct imap_parser {
	struct imap_parser_settings set, next_set;
	bool set_pending;	/* next_set waits for the next command */
	bool raw_skip;		/* feed_line: discarding an over-long line */
	bool raw_returned;	/* p->line holds the line feed_line gave */
	enum pstate state;
	struct str *line;	/* the current line, max_line + 1 */
	struct imap_cmd *cmd;	/* the command being built, or NULL */
	bool after_literal;	/* the line goes on after a literal */
	struct pnode *root;
	struct pnode **stack;	/* open lists; stack[0] = root */
	size_t depth;
	bool in_section;	/* the top list is a section list */
	struct pnode *open_atom; /* atom owning that section list */
	struct str *atom;	/* its text so far */
	size_t nodes;
	uint64_t size;		/* bytes of the command so far */
	/* literal announced at the end of the line */
	uint64_t lit_size;
	bool lit_sync, lit8;
	struct pnode *lit;
	uint64_t left;		/* literal bytes to read or skip */
	/* discarding */
	char tail[TAIL_MAX];
	size_t ntail;
	/* the last error */
	struct imap_parse_error err;
	struct str *errtag;
	const char *errtext;
};

void imap_parser_settings_default(struct imap_parser_settings *set)
{
	set->max_line = IMAP_DEFAULT_MAX_LINE;
	set->max_append = IMAP_DEFAULT_MAX_APPEND;
	set->max_literal = IMAP_DEFAULT_MAX_LITERAL;
	set->max_command = IMAP_DEFAULT_MAX_COMMAND;
	set->max_args = IMAP_DEFAULT_MAX_ARGS;
	set->max_depth = IMAP_DEFAULT_MAX_DEPTH;
	set->literal = IMAP_LITERAL_SYNC;
}

static void clamp_settings(struct imap_parser_settings *s)
{
	if (s->max_line < 64)
		s->max_line = 64;
	if (s->max_line > IMAP_LIMIT_MAX_LINE)
		s->max_line = IMAP_LIMIT_MAX_LINE;
	if (s->max_append > IMAP_LIMIT_MAX_LITERAL)
		s->max_append = IMAP_LIMIT_MAX_LITERAL;
	if (s->max_literal > IMAP_LIMIT_MAX_LITERAL)
		s->max_literal = IMAP_LIMIT_MAX_LITERAL;
	if (s->max_command < s->max_line)
		s->max_command = s->max_line;
	if (s->max_args < 16)
		s->max_args = 16;
	if (s->max_args > IMAP_LIMIT_MAX_ARGS)
		s->max_args = IMAP_LIMIT_MAX_ARGS;
	if (s->max_depth < 1)
		s->max_depth = 1;
	if (s->max_depth > IMAP_LIMIT_MAX_DEPTH)
		s->max_depth = IMAP_LIMIT_MAX_DEPTH;
	if (s->literal > IMAP_LITERAL_MINUS)
		s->literal = IMAP_LITERAL_SYNC;
}

/* Takes the pending settings (only between commands). */
static void apply_settings(struct imap_parser *p)
{
	if (p->set.max_line != p->next_set.max_line) {
		str_free(&p->line);
		str_free(&p->atom);
		p->line = str_new(256, p->next_set.max_line + 1);
		p->atom = str_new(64, p->next_set.max_line);
	}
	if (p->set.max_depth != p->next_set.max_depth || p->stack == NULL) {
		free(p->stack);
		p->stack = xcalloc(p->next_set.max_depth + 2,
				   sizeof(*p->stack));
	}
	p->set = p->next_set;
	p->set_pending = false;
}

struct imap_parser *imap_parser_new(const struct imap_parser_settings *set)
{
	struct imap_parser *p = xcalloc(1, sizeof(*p));

	if (set != NULL)
		p->next_set = *set;
	else
		imap_parser_settings_default(&p->next_set);
	clamp_settings(&p->next_set);
	p->set.max_line = 0;
	apply_settings(p);
	p->errtag = str_new(16, IMAP_LIMIT_MAX_LINE);
	return p;
}

void imap_parser_set_settings(struct imap_parser *p,
			      const struct imap_parser_settings *set)
{
	p->next_set = *set;
	clamp_settings(&p->next_set);
	p->set_pending = true;
	if (!imap_parser_in_command(p))
		apply_settings(p);
}

/* Forgets the command in progress. */
static void drop_command(struct imap_parser *p)
{
	imap_cmd_free(&p->cmd);
	p->after_literal = false;
	p->root = NULL;
	p->depth = 0;
	p->in_section = false;
	p->open_atom = NULL;
	str_clear(p->atom);
	p->nodes = 0;
	p->size = 0;
	p->lit = NULL;
	if (p->set_pending)
		apply_settings(p);
}

void imap_parser_free(struct imap_parser **pp)
{
	struct imap_parser *p = *pp;

	if (p == NULL)
		return;
	imap_cmd_free(&p->cmd);
	str_free(&p->line);
	str_free(&p->atom);
	str_free(&p->errtag);
	free(p->stack);
	free(p);
	*pp = NULL;
}

void imap_parser_reset(struct imap_parser *p)
{
	drop_command(p);
	str_clear(p->line);
	p->state = ST_LINE;
	p->left = 0;
	p->ntail = 0;
	p->raw_skip = false;
	p->raw_returned = false;
}

bool imap_parser_in_command(const struct imap_parser *p)
{
	return p->cmd != NULL || p->state != ST_LINE ||
	       (str_len(p->line) > 0 && !p->raw_returned);
}

/* ---- characters ----------------------------------------------------- */

/* ATOM-CHAR, loosely: also list wildcards and "]" (astrings, patterns). */
static bool is_atom_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '{' &&
	       c != '"';
}

/* A tag: ASTRING-CHAR but "+"; strictly no wildcards or "\". */
static bool is_tag_char(unsigned char c)
{
	return is_atom_char(c) && c != '+' && c != '*' && c != '%' &&
	       c != '\\';
}

static bool ends_with_ci(const char *s, size_t n, const char *w)
{
	size_t wn = strlen(w);

	return n >= wn && strncasecmp(s + n - wn, w, wn) == 0;
}

/* ---- errors --------------------------------------------------------- */

static int fail(struct imap_parser *p, enum imap_resp_kind kind,
		const char *code, const char *text)
{
	p->err.kind = kind;
	p->err.code = code;
	p->err.text = text;
	p->err.tag = NULL;
	if (p->cmd != NULL && p->cmd->tag[0] != '\0') {
		str_clear(p->errtag);
		if (str_append_c(p->errtag, p->cmd->tag) == 0)
			p->err.tag = str_c(p->errtag);
	}
	return IMAP_PARSE_ERROR;
}

/* The tag at the start of a line that is being refused. */
static void tag_from_line(struct imap_parser *p, const char *s, size_t n)
{
	size_t i = 0;

	if (p->cmd != NULL)
		return;
	while (i < n && is_tag_char((unsigned char)s[i]))
		i++;
	if (i == 0 || i >= n || s[i] != ' ')
		return;
	str_clear(p->errtag);
	if (str_append(p->errtag, s, i) == 0)
		p->err.tag = str_c(p->errtag);
}

/* ---- the tree ------------------------------------------------------- */

static struct pnode *node_add(struct imap_parser *p, enum imap_arg_type t)
{
	struct pnode *parent = p->stack[p->depth];
	struct pnode *n;

	if (p->nodes >= p->set.max_args)
		return NULL;
	p->nodes++;
	n = imap_cmd_alloc(p->cmd, sizeof(*n));
	n->a.type = t;
	n->a.str = "";
	if (parent->tail != NULL)
		parent->tail->next = n;
	else
		parent->child = n;
	parent->tail = n;
	parent->a.count++;
	return n;
}

static enum imap_arg_type classify(const char *s, size_t n, uint64_t *num_r)
{
	uint64_t v = 0;
	size_t i;

	if (n == 3 && strncasecmp(s, "NIL", 3) == 0)
		return IMAP_ARG_NIL;
	for (i = 0; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
		if (v > (UINT64_C(0x7fffffffffffffff) - (uint64_t)(s[i] - '0')) /
			    10)
			break;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (i == n && n > 0) {
		*num_r = v;
		return IMAP_ARG_NUMBER;
	}
	if (imap_seqset_syntax(s, n))
		return IMAP_ARG_SEQSET;
	return IMAP_ARG_ATOM;
}

static void node_text(struct imap_parser *p, struct pnode *n, const char *s,
		      size_t len)
{
	n->a.str = imap_cmd_strndup(p->cmd, s, len);
	n->a.len = len;
	if (n->a.type == IMAP_ARG_ATOM && !(n->a.flags & IMAP_ARG_F_SECTION))
		n->a.type = classify(s, len, &n->a.num);
}

/* Converts the built tree into arrays. */
static void finish_list(struct imap_parser *p, struct pnode *n,
			struct imap_arg *out)
{
	struct imap_arg *items = NULL;
	size_t i = 0;

	*out = n->a;
	if (n->a.count == 0) {
		out->list = NULL;
		return;
	}
	items = imap_cmd_alloc(p->cmd, n->a.count * sizeof(*items));
	for (struct pnode *c = n->child; c != NULL; c = c->next)
		finish_list(p, c, &items[i++]);
	out->list = items;
}

static struct imap_cmd *finish_command(struct imap_parser *p)
{
	struct imap_cmd *cmd = p->cmd;
	struct imap_arg top;

	finish_list(p, p->root, &top);
	cmd->args = top.list;
	cmd->nargs = top.count;
	cmd->size = p->size;
	p->cmd = NULL;
	drop_command(p);
	return cmd;
}

/* ---- one line ------------------------------------------------------- */

/* "tag SP name [SP "UID" name]": returns the index after it, or 0. */
static size_t parse_head(struct imap_parser *p, const char *s, size_t n)
{
	size_t i = 0, start;
	char *name;

	while (i < n && is_tag_char((unsigned char)s[i]))
		i++;
	if (i == 0 || i >= n || s[i] != ' ') {
		p->errtext = i == n && i > 0 ? "Missing command" :
			     "Invalid tag";
		if (i > 0 && i == n)
			p->cmd->tag = imap_cmd_strndup(p->cmd, s, i);
		return 0;
	}
	p->cmd->tag = imap_cmd_strndup(p->cmd, s, i);
	for (int word = 0; word < 2; word++) {
		start = ++i;
		while (i < n && isalnum((unsigned char)s[i]))
			i++;
		if (i == start || (i < n && s[i] != ' ')) {
			p->errtext = "Invalid command name";
			return 0;
		}
		name = imap_cmd_strndup(p->cmd, s + start, i - start);
		for (char *c = name; *c != '\0'; c++)
			*c = (char)toupper((unsigned char)*c);
		if (word == 0 && strcmp(name, "UID") == 0 && i < n) {
			p->cmd->uid = true;
			continue;
		}
		p->cmd->name = name;
		break;
	}
	if (p->cmd->uid && strcmp(p->cmd->name, "UID") == 0) {
		p->errtext = "Missing command after UID";
		return 0;
	}
	return i;
}

/* A quoted string from s[i] (the opening quote); returns the index after
 * it or 0. */
static size_t parse_quoted(struct imap_parser *p, const char *s, size_t n,
			   size_t i)
{
	struct pnode *node;
	char *out;
	size_t o = 0;
	unsigned flags = 0;

	node = node_add(p, IMAP_ARG_QUOTED);
	if (node == NULL) {
		p->errtext = "Too many arguments";
		return 0;
	}
	out = imap_cmd_alloc(p->cmd, n - i);
	for (i++; i < n && s[i] != '"'; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\\') {
			if (++i >= n || (s[i] != '\\' && s[i] != '"')) {
				p->errtext = "Invalid escape in quoted string";
				return 0;
			}
			c = (unsigned char)s[i];
		} else if (c == 0 || c == '\r' || c == '\n') {
			p->errtext = "Invalid character in quoted string";
			return 0;
		} else if (c >= 0x80) {
			flags |= IMAP_ARG_F_8BIT;
		}
		out[o++] = (char)c;
	}
	if (i >= n) {
		p->errtext = "Unterminated quoted string";
		return 0;
	}
	out[o] = '\0';
	node->a.str = out;
	node->a.len = o;
	node->a.flags = flags;
	return i + 1;
}

/* A literal marker {n}, {n+}, ~{n}, ~{n+} at s[i], which must end the
 * line. */
static int parse_marker(struct imap_parser *p, const char *s, size_t n,
			size_t i)
{
	uint64_t v = 0;
	size_t digits = 0;

	p->lit8 = s[i] == '~';
	i += p->lit8 ? 2 : 1;
	for (; i < n && s[i] >= '0' && s[i] <= '9'; i++, digits++) {
		if (v > (UINT64_MAX - 9) / 10) {
			p->errtext = "Literal size out of range";
			return -1;
		}
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	p->lit_sync = true;
	if (i < n && s[i] == '+') {
		p->lit_sync = false;
		i++;
	}
	if (digits == 0 || i >= n || s[i] != '}' || i + 1 != n) {
		p->errtext = "Invalid literal";
		return -1;
	}
	if (p->in_section && p->lit8) {
		p->errtext = "literal8 in a section";
		return -1;
	}
	p->lit_size = v;
	return 0;
}

/* Reads atom characters from s[i]; *brk tracks an open "[". */
static size_t scan_atom(const char *s, size_t n, size_t i, bool *brk,
			bool *bad)
{
	for (; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == ' ' || c == '(' || c == ')' || c == '"' || c == '{')
			break;
		if (!is_atom_char(c)) {
			*bad = true;
			break;
		}
		if (c == '[')
			*brk = true;
		else if (c == ']')
			*brk = false;
	}
	return i;
}

/* An atom from s[i]; it may open a FETCH section list. */
static size_t parse_atom(struct imap_parser *p, const char *s, size_t n,
			 size_t i)
{
	size_t start = i;
	bool brk = false, bad = false;
	struct pnode *node;

	i = scan_atom(s, n, i, &brk, &bad);
	if (bad || i == start) {
		p->errtext = "Invalid character in atom";
		return 0;
	}
	node = node_add(p, IMAP_ARG_ATOM);
	if (node == NULL) {
		p->errtext = "Too many arguments";
		return 0;
	}
	if (!p->in_section && brk && i + 1 < n && s[i] == ' ' &&
	    s[i + 1] == '(' &&
	    (ends_with_ci(s + start, i - start, "HEADER.FIELDS") ||
	     ends_with_ci(s + start, i - start, "HEADER.FIELDS.NOT"))) {
		if (p->depth + 1 > p->set.max_depth) {
			p->errtext = "Too deeply nested";
			return 0;
		}
		str_clear(p->atom);
		if (str_append(p->atom, s + start, i - start + 2) < 0) {
			p->errtext = "Atom too long";
			return 0;
		}
		node->a.flags |= IMAP_ARG_F_SECTION;
		p->open_atom = node;
		p->stack[++p->depth] = node;
		p->in_section = true;
		return i + 2;
	}
	node_text(p, node, s + start, i - start);
	return i;
}

/* ")" closed a section list: the atom goes on after it. */
static size_t finish_section_atom(struct imap_parser *p, const char *s,
				  size_t n, size_t i)
{
	size_t start = i;
	bool brk = true, bad = false;
	struct pnode *node = p->open_atom;

	i = scan_atom(s, n, i, &brk, &bad);
	if (bad || str_append_byte(p->atom, ')') < 0 ||
	    str_append(p->atom, s + start, i - start) < 0) {
		p->errtext = "Invalid section";
		return 0;
	}
	node_text(p, node, str_c(p->atom), str_len(p->atom));
	p->open_atom = NULL;
	str_clear(p->atom);
	return i;
}

static enum seg_result parse_args(struct imap_parser *p, const char *s,
				  size_t n, size_t i, bool need_sep)
{
	while (i < n) {
		unsigned char c = (unsigned char)s[i];

		if (c == ' ') {
			i++;
			need_sep = false;
			continue;
		}
		if (c == ')') {
			if (p->depth == 0) {
				p->errtext = "Unexpected )";
				return SEG_ERROR;
			}
			p->depth--;
			i++;
			if (p->in_section) {
				p->in_section = false;
				i = finish_section_atom(p, s, n, i);
				if (i == 0)
					return SEG_ERROR;
			}
			need_sep = true;
			continue;
		}
		if (need_sep) {
			p->errtext = "Missing space between arguments";
			return SEG_ERROR;
		}
		if (c == '(') {
			struct pnode *l;

			if (p->in_section) {
				p->errtext = "List inside a section list";
				return SEG_ERROR;
			}
			if (p->depth + 1 > p->set.max_depth) {
				p->errtext = "Too deeply nested";
				return SEG_ERROR;
			}
			l = node_add(p, IMAP_ARG_LIST);
			if (l == NULL) {
				p->errtext = "Too many arguments";
				return SEG_ERROR;
			}
			p->stack[++p->depth] = l;
			i++;
			continue;
		}
		if (c == '{' || (c == '~' && i + 1 < n && s[i + 1] == '{')) {
			if (parse_marker(p, s, n, i) < 0)
				return SEG_ERROR;
			return SEG_LITERAL;
		}
		if (c == '"')
			i = parse_quoted(p, s, n, i);
		else
			i = parse_atom(p, s, n, i);
		if (i == 0)
			return SEG_ERROR;
		/* An atom that opened a section list wants no space. */
		need_sep = !(p->in_section && p->open_atom->a.count == 0);
	}
	if (p->depth > 0) {
		p->errtext = "Unterminated list";
		return SEG_ERROR;
	}
	return SEG_DONE;
}

static enum seg_result parse_line(struct imap_parser *p, const char *s,
				  size_t n)
{
	size_t i = 0;
	bool after = p->after_literal;

	p->after_literal = false;
	if (p->cmd == NULL) {
		p->cmd = cmd_new();
		p->root = imap_cmd_alloc(p->cmd, sizeof(*p->root));
		p->root->a.type = IMAP_ARG_LIST;
		p->stack[0] = p->root;
		p->depth = 0;
		i = parse_head(p, s, n);
		if (i == 0)
			return SEG_ERROR;
		if (i < n)
			i++;	/* the space after the name */
	}
	return parse_args(p, s, n, i, after);
}

/* ---- literals and limits -------------------------------------------- */

static bool is_append(const struct imap_parser *p)
{
	return strcmp(p->cmd->name, "APPEND") == 0;
}

/* Checks the literal announced at the end of a line; -1 refused. */
static int literal_check(struct imap_parser *p)
{
	uint64_t max = is_append(p) ? p->set.max_append : p->set.max_literal;

	if (!p->lit_sync && p->set.literal == IMAP_LITERAL_SYNC)
		return fail(p, IMAP_RESP_BAD, NULL,
			    "Non-synchronizing literals are not supported");
	if (!p->lit_sync && p->set.literal == IMAP_LITERAL_MINUS &&
	    p->lit_size > IMAP_LITERAL_MINUS_MAX)
		return fail(p, IMAP_RESP_BAD, "TOOBIG",
			    "Non-synchronizing literal over 4096 bytes");
	if (p->lit_size > max)
		return fail(p, IMAP_RESP_NO, "TOOBIG", "Literal too big");
	if (p->lit_size > p->set.max_command ||
	    p->size > p->set.max_command - p->lit_size)
		return fail(p, IMAP_RESP_NO, "TOOBIG", "Command too big");
	return 0;
}

static int literal_start(struct imap_parser *p)
{
	struct pnode *node;

	node = node_add(p, p->lit8 ? IMAP_ARG_LITERAL8 : IMAP_ARG_LITERAL);
	if (node == NULL)
		return fail(p, IMAP_RESP_BAD, NULL, "Too many arguments");
	if (!p->lit_sync)
		node->a.flags |= IMAP_ARG_F_NONSYNC;
	node->data = str_new(p->lit_size < 4096 ? (size_t)p->lit_size + 1 :
			     4096, p->lit_size > 0 ? (size_t)p->lit_size : 1);
	imap_cmd_on_free(p->cmd, str_free_cb, node->data);
	p->lit = node;
	p->left = p->lit_size;
	p->size += p->lit_size;
	p->state = ST_LITERAL;
	return 0;
}

static void literal_end(struct imap_parser *p)
{
	struct pnode *node = p->lit;
	const char *d = str_c(node->data);
	size_t n = str_len(node->data);

	node->a.str = d;
	node->a.len = n;
	if (memchr(d, '\0', n) != NULL)
		node->a.flags |= IMAP_ARG_F_NUL;
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)d[i] >= 0x80) {
			node->a.flags |= IMAP_ARG_F_8BIT;
			break;
		}
	}
	p->lit = NULL;
	p->after_literal = true;
	p->state = ST_LINE;
}

/* After a refused line: skip a non-synchronising literal it announced,
 * then the rest of the command's line. */
static void resync(struct imap_parser *p, const char *s, size_t n)
{
	size_t i = n;
	uint64_t v = 0, mul = 1;
	bool skip = false;

	if (n >= 4 && s[n - 1] == '}' && s[n - 2] == '+') {
		for (i = n - 2; i > 0 && s[i - 1] >= '0' && s[i - 1] <= '9' &&
			     n - 2 - i < 19; i--) {
			v += (uint64_t)(s[i - 1] - '0') * mul;
			mul *= 10;
		}
		skip = i < n - 2 && i > 0 && s[i - 1] == '{';
	}
	/* s may point into p->line, which drop_command() may replace. */
	drop_command(p);
	p->state = ST_LINE;
	if (!skip)
		return;
	p->left = v;
	p->state = v > 0 ? ST_SKIP : ST_DISCARD;
}

/* A complete line is in p->line. */
static int line_done(struct imap_parser *p, struct imap_cmd **cmd_r)
{
	const char *s = str_c(p->line);
	size_t n = str_len(p->line);
	enum seg_result r;

	if (n > 0 && s[n - 1] == '\r')
		n--;
	if (n > p->set.max_line) {
		fail(p, IMAP_RESP_BAD, NULL, "Line too long");
		tag_from_line(p, s, n);
		resync(p, s, n);
		return IMAP_PARSE_ERROR;
	}
	if (n == 0 && p->cmd == NULL && !p->after_literal)
		return IMAP_PARSE_MORE;	/* empty lines are ignored */
	r = parse_line(p, s, n);
	if (r == SEG_ERROR) {
		fail(p, IMAP_RESP_BAD, NULL, p->errtext);
		resync(p, s, n);
		return IMAP_PARSE_ERROR;
	}
	if (r == SEG_DONE) {
		*cmd_r = finish_command(p);
		return IMAP_PARSE_COMMAND;
	}
	if (literal_check(p) < 0 || literal_start(p) < 0) {
		resync(p, s, n);
		return IMAP_PARSE_ERROR;
	}
	return p->lit_sync ? IMAP_PARSE_CONTINUE : IMAP_PARSE_MORE;
}

/* Remembers the last bytes of a discarded line. */
static void tail_keep(struct imap_parser *p, const char *s, size_t n)
{
	if (n >= TAIL_MAX) {
		memcpy(p->tail, s + n - TAIL_MAX, TAIL_MAX);
		p->ntail = TAIL_MAX;
		return;
	}
	if (p->ntail + n > TAIL_MAX) {
		size_t drop = p->ntail + n - TAIL_MAX;

		memmove(p->tail, p->tail + drop, p->ntail - drop);
		p->ntail -= drop;
	}
	memcpy(p->tail + p->ntail, s, n);
	p->ntail += n;
}

/* Appends [s, s+n) to the line; an over-long line becomes a discard. */
static int line_add(struct imap_parser *p, const char *s, size_t n)
{
	const char *l;
	size_t len = str_len(p->line), line_left = str_room(p->line);
	uint64_t used = p->size + len;
	uint64_t cmd_left = used < p->set.max_command ?
			    p->set.max_command - used : 0;
	size_t room;

	if (n <= line_left && n <= cmd_left) {
		if (str_append(p->line, s, n) < 0)
			abort();	/* checked above */
		return 0;
	}
	/* Keep what fits: the tag is at the start. */
	room = str_room(p->line) < n ? str_room(p->line) : n;
	if (str_append(p->line, s, room) < 0)
		room = 0;
	l = str_c(p->line);
	/* Whichever limit the first byte too many crosses. */
	if (cmd_left < line_left)
		fail(p, IMAP_RESP_BAD, NULL, "Command too long");
	else
		fail(p, IMAP_RESP_BAD, NULL, "Line too long");
	tag_from_line(p, l, str_len(p->line));
	p->ntail = 0;
	tail_keep(p, l, str_len(p->line));
	tail_keep(p, s + room, n - room);
	str_clear(p->line);
	drop_command(p);
	p->state = ST_DISCARD;
	return -1;
}

static int feed_line(struct imap_parser *p, const char **pos, const char *end,
		     struct imap_cmd **cmd_r)
{
	const char *lf = memchr(*pos, '\n', (size_t)(end - *pos));
	const char *stop = lf != NULL ? lf : end;
	int r;

	if (line_add(p, *pos, (size_t)(stop - *pos)) < 0) {
		*pos = stop;	/* a line end is left for ST_DISCARD */
		return IMAP_PARSE_ERROR;
	}
	*pos = lf != NULL ? lf + 1 : end;
	if (lf == NULL)
		return IMAP_PARSE_MORE;
	p->size += str_len(p->line) + 1;
	r = line_done(p, cmd_r);
	str_clear(p->line);
	return r;
}

static void feed_discard(struct imap_parser *p, const char **pos,
			 const char *end)
{
	const char *lf = memchr(*pos, '\n', (size_t)(end - *pos));
	const char *stop = lf != NULL ? lf : end;

	tail_keep(p, *pos, (size_t)(stop - *pos));
	*pos = lf != NULL ? lf + 1 : end;
	if (lf == NULL)
		return;
	resync(p, p->tail, p->ntail > 0 && p->tail[p->ntail - 1] == '\r' ?
			   p->ntail - 1 : p->ntail);
	p->ntail = 0;
}

int imap_parser_feed(struct imap_parser *p, const char **pos, const char *end,
		     struct imap_cmd **cmd_r,
		     const struct imap_parse_error **error_r)
{
	int r;

	*cmd_r = NULL;
	*error_r = &p->err;
	if (p->raw_returned) {
		str_clear(p->line);
		p->raw_returned = false;
	}
	for (;;) {
		size_t avail = (size_t)(end - *pos), n;

		if (p->state == ST_LITERAL && p->left == 0) {
			literal_end(p);
			continue;
		}
		if (avail == 0)
			return IMAP_PARSE_MORE;
		switch (p->state) {
		case ST_LINE:
			r = feed_line(p, pos, end, cmd_r);
			if (r != IMAP_PARSE_MORE)
				return r;
			break;
		case ST_LITERAL:
			n = (uint64_t)avail > p->left ? (size_t)p->left : avail;
			if (str_append(p->lit->data, *pos, n) < 0)
				abort();	/* sized to the literal */
			*pos += n;
			p->left -= n;
			break;
		case ST_SKIP:
			n = (uint64_t)avail > p->left ? (size_t)p->left : avail;
			*pos += n;
			p->left -= n;
			if (p->left == 0)
				p->state = ST_DISCARD;
			break;
		case ST_DISCARD:
			feed_discard(p, pos, end);
			break;
		}
	}
}

int imap_parser_feed_line(struct imap_parser *p, const char **pos,
			  const char *end, const char **line_r, size_t *len_r,
			  const struct imap_parse_error **error_r)
{
	const char *lf;
	size_t n;

	*error_r = &p->err;
	if (p->raw_returned) {
		str_clear(p->line);
		p->raw_returned = false;
	}
	if (p->cmd != NULL || p->state != ST_LINE)
		log_panic(NULL, "imap_parser_feed_line inside a command");
	if (p->raw_skip) {
		lf = memchr(*pos, '\n', (size_t)(end - *pos));
		*pos = lf != NULL ? lf + 1 : end;
		if (lf == NULL)
			return 0;
		p->raw_skip = false;
	}
	if (*pos == end)
		return 0;
	lf = memchr(*pos, '\n', (size_t)(end - *pos));
	n = (size_t)((lf != NULL ? lf : end) - *pos);
	if (str_append(p->line, *pos, n) < 0) {
		fail(p, IMAP_RESP_BAD, NULL, "Line too long");
		str_clear(p->line);
		p->raw_skip = true;
		*pos += n;
		return -1;
	}
	*pos = lf != NULL ? lf + 1 : end;
	if (lf == NULL)
		return 0;
	n = str_len(p->line);
	if (n > 0 && str_c(p->line)[n - 1] == '\r')
		str_truncate(p->line, --n);
	*line_r = str_c(p->line);
	*len_r = n;
	p->raw_returned = true;
	return 1;
}

/* ---- accessors ------------------------------------------------------ */

bool imap_arg_is_atom(const struct imap_arg *a)
{
	return a->type == IMAP_ARG_ATOM || a->type == IMAP_ARG_NUMBER ||
	       a->type == IMAP_ARG_SEQSET || a->type == IMAP_ARG_NIL;
}

bool imap_arg_atom_eq(const struct imap_arg *a, const char *word)
{
	return imap_arg_is_atom(a) && !(a->flags & IMAP_ARG_F_SECTION) &&
	       strcasecmp(a->str, word) == 0;
}

int imap_arg_string(const struct imap_arg *a, const char **s_r,
		    size_t *len_r)
{
	if ((a->type != IMAP_ARG_QUOTED && a->type != IMAP_ARG_LITERAL) ||
	    (a->flags & IMAP_ARG_F_NUL))
		return -1;
	*s_r = a->str;
	*len_r = a->len;
	return 0;
}

int imap_arg_astring(const struct imap_arg *a, const char **s_r,
		     size_t *len_r)
{
	if (imap_arg_is_atom(a) && !(a->flags & IMAP_ARG_F_SECTION)) {
		*s_r = a->str;
		*len_r = a->len;
		return 0;
	}
	return imap_arg_string(a, s_r, len_r);
}

int imap_arg_nstring(const struct imap_arg *a, const char **s_r,
		     size_t *len_r)
{
	if (a->type == IMAP_ARG_NIL) {
		*s_r = NULL;
		*len_r = 0;
		return 0;
	}
	return imap_arg_string(a, s_r, len_r);
}

int imap_arg_number(const struct imap_arg *a, uint64_t *n_r)
{
	if (a->type != IMAP_ARG_NUMBER)
		return -1;
	*n_r = a->num;
	return 0;
}

const char *imap_arg_type_name(enum imap_arg_type type)
{
	static const char *const names[] = {
		"atom", "number", "seqset", "nil", "quoted", "literal",
		"literal8", "list",
	};

	return (size_t)type < TERN_NELEM(names) ? names[type] : "?";
}
