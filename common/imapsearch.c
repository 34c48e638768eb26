/* imapsearch.c: see imapsearch.h. */
#include "config.h"

#include "compat.h"

#include <ctype.h>
#include <strings.h>

#include "imapcmd.h"
#include "imapsearch.h"

enum karg {
	KA_NONE,
	KA_STRING,
	KA_FLAG,
	KA_HEADER,
	KA_DATE,
	KA_NUMBER,	/* number, 0 allowed */
	KA_NZNUMBER,
	KA_SET,
	KA_MODSEQ,
	KA_OR,
	KA_NOT,
};

static const struct {
	const char *name;
	enum imap_search_key key;
	enum karg arg;
} keys[] = {
	{ "ALL", IMAP_SEARCH_ALL, KA_NONE },
	{ "ANSWERED", IMAP_SEARCH_ANSWERED, KA_NONE },
	{ "BCC", IMAP_SEARCH_BCC, KA_STRING },
	{ "BEFORE", IMAP_SEARCH_BEFORE, KA_DATE },
	{ "BODY", IMAP_SEARCH_BODY, KA_STRING },
	{ "CC", IMAP_SEARCH_CC, KA_STRING },
	{ "DELETED", IMAP_SEARCH_DELETED, KA_NONE },
	{ "DRAFT", IMAP_SEARCH_DRAFT, KA_NONE },
	{ "FLAGGED", IMAP_SEARCH_FLAGGED, KA_NONE },
	{ "FROM", IMAP_SEARCH_FROM, KA_STRING },
	{ "HEADER", IMAP_SEARCH_HEADER, KA_HEADER },
	{ "KEYWORD", IMAP_SEARCH_KEYWORD, KA_FLAG },
	{ "LARGER", IMAP_SEARCH_LARGER, KA_NUMBER },
	{ "MODSEQ", IMAP_SEARCH_MODSEQ, KA_MODSEQ },
	{ "NEW", IMAP_SEARCH_NEW, KA_NONE },
	{ "NOT", IMAP_SEARCH_NOT, KA_NOT },
	{ "OLD", IMAP_SEARCH_OLD, KA_NONE },
	{ "OLDER", IMAP_SEARCH_OLDER, KA_NZNUMBER },
	{ "ON", IMAP_SEARCH_ON, KA_DATE },
	{ "OR", IMAP_SEARCH_OR, KA_OR },
	{ "RECENT", IMAP_SEARCH_RECENT, KA_NONE },
	{ "SEEN", IMAP_SEARCH_SEEN, KA_NONE },
	{ "SENTBEFORE", IMAP_SEARCH_SENTBEFORE, KA_DATE },
	{ "SENTON", IMAP_SEARCH_SENTON, KA_DATE },
	{ "SENTSINCE", IMAP_SEARCH_SENTSINCE, KA_DATE },
	{ "SINCE", IMAP_SEARCH_SINCE, KA_DATE },
	{ "SMALLER", IMAP_SEARCH_SMALLER, KA_NUMBER },
	{ "SUBJECT", IMAP_SEARCH_SUBJECT, KA_STRING },
	{ "TEXT", IMAP_SEARCH_TEXT, KA_STRING },
	{ "TO", IMAP_SEARCH_TO, KA_STRING },
	{ "UID", IMAP_SEARCH_UID, KA_SET },
	{ "UNANSWERED", IMAP_SEARCH_UNANSWERED, KA_NONE },
	{ "UNDELETED", IMAP_SEARCH_UNDELETED, KA_NONE },
	{ "UNDRAFT", IMAP_SEARCH_UNDRAFT, KA_NONE },
	{ "UNFLAGGED", IMAP_SEARCH_UNFLAGGED, KA_NONE },
	{ "UNKEYWORD", IMAP_SEARCH_UNKEYWORD, KA_FLAG },
	{ "UNSEEN", IMAP_SEARCH_UNSEEN, KA_NONE },
	{ "YOUNGER", IMAP_SEARCH_YOUNGER, KA_NZNUMBER },
};

struct sctx {
	struct imap_cmd *cmd;
	struct imap_search *search;
	const char *error;
};

static int fail(struct sctx *c, const char *text)
{
	if (c->error == NULL)
		c->error = text;
	return -1;
}

static int parse_key(struct sctx *c, const struct imap_arg *a, size_t n,
		     size_t *i, struct imap_search_node *node, unsigned depth);

/* Keys a[*i..n) into node's children as an AND. */
static int parse_group(struct sctx *c, const struct imap_arg *a, size_t n,
		       struct imap_search_node *node, unsigned depth)
{
	size_t i = 0;

	if (n == 0)
		return fail(c, "Missing search key");
	node->key = IMAP_SEARCH_AND;
	node->children = imap_cmd_alloc(c->cmd, n * sizeof(*node->children));
	while (i < n) {
		if (parse_key(c, a, n, &i,
			      &node->children[node->nchildren], depth) < 0)
			return -1;
		node->nchildren++;
	}
	return 0;
}

static int key_date(struct sctx *c, const struct imap_arg *a,
		    struct imap_search_node *node)
{
	const char *s;
	size_t len;

	if (imap_arg_astring(a, &s, &len) < 0 ||
	    imap_date_parse(s, len, &node->date) < 0)
		return fail(c, "Invalid date");
	return 0;
}

static int key_modseq(struct sctx *c, const struct imap_arg *a, size_t n,
		      size_t *i, struct imap_search_node *node)
{
	static const char *const types[] = { "all", "priv", "shared" };

	if (*i + 2 < n && (a[*i].type == IMAP_ARG_QUOTED ||
			   a[*i].type == IMAP_ARG_LITERAL)) {
		size_t t;

		if (strncasecmp(a[*i].str, "/flags/", 7) != 0 ||
		    (a[*i].flags & IMAP_ARG_F_NUL))
			return fail(c, "Invalid MODSEQ entry");
		for (t = 0; t < TERN_NELEM(types); t++) {
			if (imap_arg_atom_eq(&a[*i + 1], types[t]))
				break;
		}
		if (t == TERN_NELEM(types))
			return fail(c, "Invalid MODSEQ entry type");
		node->entry = a[*i].str;
		node->entry_type = (enum imap_search_entry_type)t;
		*i += 2;
	}
	if (*i >= n || imap_arg_number(&a[*i], &node->number) < 0)
		return fail(c, "Invalid MODSEQ value");
	(*i)++;
	c->search->modseq = true;
	return 0;
}

static int key_set(struct sctx *c, const struct imap_arg *a,
		   struct imap_search_node *node)
{
	if (imap_arg_seqset(c->cmd, a, &node->set, &c->error) < 0)
		return -1;
	if (imap_seqset_is_saved(node->set))
		c->search->saved = true;
	return 0;
}

/* The argument(s) of key k from a[*i]. */
static int key_args(struct sctx *c, const struct imap_arg *a, size_t n,
		    size_t *i, size_t k, struct imap_search_node *node,
		    unsigned depth)
{
	enum karg ka = keys[k].arg;
	size_t len;

	if (ka == KA_NONE)
		return 0;
	if (ka == KA_MODSEQ)
		return key_modseq(c, a, n, i, node);
	if (*i >= n)
		return fail(c, "Missing search key argument");
	switch (ka) {
	case KA_STRING:
		if (imap_arg_astring(&a[*i], &node->value, &node->len) < 0)
			return fail(c, "Invalid search string");
		break;
	case KA_FLAG:
		if (a[*i].type != IMAP_ARG_ATOM || a[*i].str[0] == '\\')
			return fail(c, "Invalid keyword");
		node->value = a[*i].str;
		node->len = a[*i].len;
		break;
	case KA_HEADER:
		if (*i + 1 >= n ||
		    imap_arg_astring(&a[*i], &node->header, &len) < 0 ||
		    len == 0 ||
		    imap_arg_astring(&a[*i + 1], &node->value,
				     &node->len) < 0)
			return fail(c, "Invalid HEADER key");
		(*i)++;
		break;
	case KA_DATE:
		if (key_date(c, &a[*i], node) < 0)
			return -1;
		break;
	case KA_NUMBER:
	case KA_NZNUMBER:
		if (imap_arg_number(&a[*i], &node->number) < 0 ||
		    (ka == KA_NZNUMBER && node->number == 0))
			return fail(c, "Invalid number");
		break;
	case KA_SET:
		if (key_set(c, &a[*i], node) < 0)
			return -1;
		break;
	case KA_OR:
	case KA_NOT:
		node->nchildren = ka == KA_OR ? 2 : 1;
		node->children = imap_cmd_alloc(
			c->cmd, node->nchildren * sizeof(*node->children));
		for (size_t j = 0; j < node->nchildren; j++) {
			if (parse_key(c, a, n, i, &node->children[j],
				      depth + 1) < 0)
				return -1;
		}
		return 0;
	default:
		break;
	}
	(*i)++;
	return 0;
}

static int parse_key(struct sctx *c, const struct imap_arg *a, size_t n,
		     size_t *i, struct imap_search_node *node, unsigned depth)
{
	const struct imap_arg *k = &a[*i];

	if (depth >= IMAP_SEARCH_DEPTH_MAX)
		return fail(c, "Search keys nested too deeply");
	if (*i >= n)
		return fail(c, "Missing search key");
	if (k->type == IMAP_ARG_LIST) {
		(*i)++;
		return parse_group(c, k->list, k->count, node, depth + 1);
	}
	if (k->type == IMAP_ARG_NUMBER || k->type == IMAP_ARG_SEQSET) {
		(*i)++;
		node->key = IMAP_SEARCH_SEQSET;
		return key_set(c, k, node);
	}
	for (size_t j = 0; j < TERN_NELEM(keys); j++) {
		if (imap_arg_atom_eq(k, keys[j].name)) {
			node->key = keys[j].key;
			(*i)++;
			return key_args(c, a, n, i, j, node, depth);
		}
	}
	return fail(c, "Unknown search key");
}

static int return_opts(struct sctx *c, const struct imap_arg *a)
{
	static const struct {
		const char *name;
		unsigned bit;
	} opts[] = {
		{ "MIN", IMAP_SEARCH_RET_MIN }, { "MAX", IMAP_SEARCH_RET_MAX },
		{ "ALL", IMAP_SEARCH_RET_ALL },
		{ "COUNT", IMAP_SEARCH_RET_COUNT },
		{ "SAVE", IMAP_SEARCH_RET_SAVE },
	};

	if (a->type != IMAP_ARG_LIST)
		return fail(c, "Invalid RETURN options");
	for (size_t i = 0; i < a->count; i++) {
		size_t k;

		for (k = 0; k < TERN_NELEM(opts); k++) {
			if (imap_arg_atom_eq(&a->list[i], opts[k].name))
				break;
		}
		if (k == TERN_NELEM(opts))
			return fail(c, "Invalid RETURN option");
		c->search->ret |= opts[k].bit;
	}
	if (a->count == 0)
		c->search->ret = IMAP_SEARCH_RET_ALL;
	c->search->esearch = true;
	return 0;
}

static int charset(struct sctx *c, const struct imap_arg *a)
{
	const char *s;
	size_t len;
	char *cs;

	if (imap_arg_astring(a, &s, &len) < 0 || len == 0)
		return fail(c, "Invalid charset");
	cs = imap_cmd_strndup(c->cmd, s, len);
	for (char *p = cs; *p != '\0'; p++)
		*p = (char)toupper((unsigned char)*p);
	c->search->charset = cs;
	return 0;
}

/* [CHARSET x] (or a mandatory charset) then keys, from a[i]. */
static int search_program(struct sctx *c, const struct imap_arg *a,
			  size_t n, size_t i, bool need_charset)
{
	if (need_charset) {
		if (i >= n || charset(c, &a[i]) < 0)
			return fail(c, "Missing charset");
		i++;
	} else if (i + 1 < n && imap_arg_atom_eq(&a[i], "CHARSET")) {
		if (charset(c, &a[i + 1]) < 0)
			return -1;
		i += 2;
	}
	if (i >= n)
		return fail(c, "Missing search key");
	return parse_group(c, a + i, n - i, &c->search->root, 0);
}

/* "RETURN (...)" at a[*i], if there. */
static int maybe_return(struct sctx *c, const struct imap_arg *a, size_t n,
			size_t *i)
{
	if (*i + 1 < n && imap_arg_atom_eq(&a[*i], "RETURN") &&
	    a[*i + 1].type == IMAP_ARG_LIST) {
		if (return_opts(c, &a[*i + 1]) < 0)
			return -1;
		*i += 2;
	}
	return 0;
}

int imap_cmd_search(struct imap_cmd *cmd, const struct imap_search **search_r,
		    const char **error_r)
{
	struct imap_search *s = imap_cmd_alloc(cmd, sizeof(*s));
	struct sctx c = { .cmd = cmd, .search = s };
	size_t i = 0;

	if (maybe_return(&c, cmd->args, cmd->nargs, &i) < 0 ||
	    search_program(&c, cmd->args, cmd->nargs, i, false) < 0) {
		*error_r = c.error;
		return -1;
	}
	*search_r = s;
	return 0;
}

static int sort_criteria(struct sctx *c, const struct imap_arg *a,
			 struct imap_sort *sort)
{
	static const char *const names[] = {
		"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO",
		"DISPLAYFROM", "DISPLAYTO",
	};
	struct imap_sort_criterion *crit;
	bool reverse = false;

	if (a->type != IMAP_ARG_LIST || a->count == 0)
		return fail(c, "Invalid sort criteria");
	crit = imap_cmd_alloc(c->cmd, a->count * sizeof(*crit));
	for (size_t i = 0; i < a->count; i++) {
		size_t k;

		if (imap_arg_atom_eq(&a->list[i], "REVERSE") && !reverse) {
			reverse = true;
			continue;
		}
		for (k = 0; k < TERN_NELEM(names); k++) {
			if (imap_arg_atom_eq(&a->list[i], names[k]))
				break;
		}
		if (k == TERN_NELEM(names))
			return fail(c, "Invalid sort criterion");
		crit[sort->ncriteria].key = (enum imap_sort_key)k;
		crit[sort->ncriteria].reverse = reverse;
		sort->ncriteria++;
		reverse = false;
	}
	if (reverse)
		return fail(c, "REVERSE without a sort key");
	sort->criteria = crit;
	return 0;
}

int imap_cmd_sort(struct imap_cmd *cmd, const struct imap_sort **sort_r,
		  const char **error_r)
{
	struct imap_sort *sort = imap_cmd_alloc(cmd, sizeof(*sort));
	struct sctx c = { .cmd = cmd, .search = &sort->search };
	size_t i = 0;

	if (maybe_return(&c, cmd->args, cmd->nargs, &i) < 0 ||
	    i >= cmd->nargs || sort_criteria(&c, &cmd->args[i], sort) < 0 ||
	    search_program(&c, cmd->args, cmd->nargs, i + 1, true) < 0) {
		*error_r = c.error != NULL ? c.error : "Invalid SORT";
		return -1;
	}
	*sort_r = sort;
	return 0;
}

int imap_cmd_thread(struct imap_cmd *cmd, const struct imap_thread **thread_r,
		    const char **error_r)
{
	struct imap_thread *t = imap_cmd_alloc(cmd, sizeof(*t));
	struct sctx c = { .cmd = cmd, .search = &t->search };
	char *alg;

	if (cmd->nargs < 1 || cmd->args[0].type != IMAP_ARG_ATOM) {
		*error_r = "Expected a threading algorithm";
		return -1;
	}
	alg = imap_cmd_strndup(cmd, cmd->args[0].str, cmd->args[0].len);
	for (char *p = alg; *p != '\0'; p++)
		*p = (char)toupper((unsigned char)*p);
	t->algorithm = alg;
	if (search_program(&c, cmd->args, cmd->nargs, 1, true) < 0) {
		*error_r = c.error;
		return -1;
	}
	*thread_r = t;
	return 0;
}
