/* imapcmd.c: see imapcmd.h. */
#include "config.h"

#include "compat.h"

#include <ctype.h>
#include <stdlib.h>
#include <strings.h>

#include "imapcmd.h"
#include "str.h"

#define MAILBOX_MAX 4096	/* bytes of a decoded mailbox name */

static int bad(const char **error_r, const char *text)
{
	*error_r = text;
	return -1;
}

static void seqset_free_cb(void *ctx)
{
	struct imap_seqset *set = ctx;

	imap_seqset_free(&set);
}

static void str_free_cb(void *ctx)
{
	struct str *s = ctx;

	str_free(&s);
}

/* ---- shared argument types ------------------------------------------ */

int imap_arg_seqset(struct imap_cmd *cmd, const struct imap_arg *a,
		    struct imap_seqset **set_r, const char **error_r)
{
	if (a->type != IMAP_ARG_NUMBER && a->type != IMAP_ARG_SEQSET)
		return bad(error_r, "Invalid sequence set");
	if (imap_seqset_parse(a->str, a->len, set_r, error_r) < 0)
		return -1;
	imap_cmd_on_free(cmd, seqset_free_cb, *set_r);
	return 0;
}

/* Decodes s as a mailbox name (or pattern) into the command's memory. */
static int mailbox_decode(struct imap_cmd *cmd, const char *s, size_t len,
			  bool utf8, const char **name_r,
			  const char **error_r)
{
	struct str *out;

	if (len == 5 && strncasecmp(s, "INBOX", 5) == 0) {
		*name_r = "INBOX";
		return 0;
	}
	if (len > MAILBOX_MAX)
		return bad(error_r, "Mailbox name too long");
	if (utf8) {
		if (!imap_utf8_valid(s, len) || memchr(s, '\0', len) != NULL)
			return bad(error_r, "Invalid UTF-8 in mailbox name");
		*name_r = imap_cmd_strndup(cmd, s, len);
		return 0;
	}
	out = str_new(len + 1, MAILBOX_MAX);
	imap_cmd_on_free(cmd, str_free_cb, out);
	if (imap_mutf7_decode(s, len, out, error_r) < 0)
		return -1;
	*name_r = str_c(out);
	return 0;
}

int imap_arg_mailbox(struct imap_cmd *cmd, const struct imap_arg *a,
		     bool utf8, const char **name_r, const char **error_r)
{
	const char *s;
	size_t len;

	if (imap_arg_astring(a, &s, &len) < 0)
		return bad(error_r, "Invalid mailbox name");
	return mailbox_decode(cmd, s, len, utf8, name_r, error_r);
}

/* flag = "\" atom / atom (keyword); \Recent cannot be set. */
static bool flag_ok(const struct imap_arg *a)
{
	const char *s = a->str;

	if (!imap_arg_is_atom(a) || (a->flags & IMAP_ARG_F_SECTION) ||
	    a->type == IMAP_ARG_NIL || strcasecmp(s, "\\Recent") == 0)
		return false;
	if (*s == '\\')
		s++;
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		if (strchr("*%]\\[", *s) != NULL)
			return false;
	}
	return true;
}

int imap_arg_flags(struct imap_cmd *cmd, const struct imap_arg *a,
		   bool bare, const char *const **flags_r, size_t *n_r,
		   const char **error_r)
{
	const struct imap_arg *items = a;
	size_t n = 1;
	const char **flags;

	if (a->type == IMAP_ARG_LIST) {
		items = a->list;
		n = a->count;
	} else if (!bare) {
		return bad(error_r, "Flags must be a list");
	}
	flags = imap_cmd_alloc(cmd, (n + 1) * sizeof(*flags));
	for (size_t i = 0; i < n; i++) {
		if (!flag_ok(&items[i]))
			return bad(error_r, "Invalid flag");
		flags[i] = items[i].str;
	}
	*flags_r = flags;
	*n_r = n;
	return 0;
}

/* Flags as the rest of the arguments (STORE): a list or bare flags. */
static int flags_rest(struct imap_cmd *cmd, size_t first,
		      const char *const **flags_r, size_t *n_r,
		      const char **error_r)
{
	const char **flags;
	size_t n = cmd->nargs - first;

	if (n == 1)
		return imap_arg_flags(cmd, &cmd->args[first], true, flags_r,
				      n_r, error_r);
	flags = imap_cmd_alloc(cmd, (n + 1) * sizeof(*flags));
	for (size_t i = 0; i < n; i++) {
		if (!flag_ok(&cmd->args[first + i]))
			return bad(error_r, "Invalid flag");
		flags[i] = cmd->args[first + i].str;
	}
	*flags_r = flags;
	*n_r = n;
	return 0;
}

static int mod_value(const struct imap_arg *a, bool allow_zero, uint64_t *v)
{
	return imap_arg_number(a, v) < 0 || (*v == 0 && !allow_zero) ? -1 : 0;
}

/* ---- FETCH ---------------------------------------------------------- */

static const struct {
	const char *name;
	unsigned items;
} fetch_simple[] = {
	{ "ALL", IMAP_FETCH_FLAGS | IMAP_FETCH_INTERNALDATE |
		 IMAP_FETCH_RFC822_SIZE | IMAP_FETCH_ENVELOPE },
	{ "FAST", IMAP_FETCH_FLAGS | IMAP_FETCH_INTERNALDATE |
		  IMAP_FETCH_RFC822_SIZE },
	{ "FULL", IMAP_FETCH_FLAGS | IMAP_FETCH_INTERNALDATE |
		  IMAP_FETCH_RFC822_SIZE | IMAP_FETCH_ENVELOPE |
		  IMAP_FETCH_BODY },
	{ "FLAGS", IMAP_FETCH_FLAGS },
	{ "INTERNALDATE", IMAP_FETCH_INTERNALDATE },
	{ "RFC822.SIZE", IMAP_FETCH_RFC822_SIZE },
	{ "ENVELOPE", IMAP_FETCH_ENVELOPE },
	{ "BODY", IMAP_FETCH_BODY },
	{ "BODYSTRUCTURE", IMAP_FETCH_BODYSTRUCTURE },
	{ "UID", IMAP_FETCH_UID },
	{ "MODSEQ", IMAP_FETCH_MODSEQ },
	{ "RFC822", IMAP_FETCH_RFC822 },
	{ "RFC822.HEADER", IMAP_FETCH_RFC822_HEADER },
	{ "RFC822.TEXT", IMAP_FETCH_RFC822_TEXT },
};

#define FETCH_MACROS 3	/* the first entries: only alone, not in a list */

static int parse_u64(const char *s, size_t n, uint64_t *v)
{
	*v = 0;
	if (n == 0 || n > 19)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		*v = *v * 10 + (uint64_t)(s[i] - '0');
	}
	return 0;
}

/* "<offset.length>" */
static int parse_partial(const char *s, size_t n,
			 struct imap_fetch_section *sec)
{
	const char *dot;

	if (n == 0)
		return 0;
	if (n < 5 || s[0] != '<' || s[n - 1] != '>')
		return -1;
	dot = memchr(s, '.', n);
	if (dot == NULL ||
	    parse_u64(s + 1, (size_t)(dot - s - 1), &sec->offset) < 0 ||
	    parse_u64(dot + 1, (size_t)(s + n - 1 - dot - 1),
		      &sec->length) < 0 || sec->length == 0)
		return -1;
	sec->partial = true;
	return 0;
}

/* Header field names of a HEADER.FIELDS list. */
static int section_fields(struct imap_cmd *cmd, const struct imap_arg *a,
			  struct imap_fetch_section *sec)
{
	const char **f;

	if (!(a->flags & IMAP_ARG_F_SECTION) || a->count == 0)
		return -1;
	f = imap_cmd_alloc(cmd, a->count * sizeof(*f));
	for (size_t i = 0; i < a->count; i++) {
		size_t len;

		if (imap_arg_astring(&a->list[i], &f[i], &len) < 0 ||
		    len == 0)
			return -1;
	}
	sec->fields = f;
	sec->nfields = a->count;
	return 0;
}

/* The text between "[" and "]". */
static int parse_section(struct imap_cmd *cmd, const struct imap_arg *a,
			 const char *s, size_t n,
			 struct imap_fetch_section *sec)
{
	size_t i = 0;

	while (i < n && s[i] >= '0' && s[i] <= '9') {
		uint64_t v;
		size_t start = i;

		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
		if (parse_u64(s + start, i - start, &v) < 0 || v == 0 ||
		    v > UINT32_MAX || sec->nparts >= IMAP_SECTION_PARTS_MAX)
			return -1;
		sec->parts[sec->nparts++] = (uint32_t)v;
		if (i == n)
			break;
		if (s[i] != '.')
			return -1;
		i++;
		if (i == n)
			return -1;
	}
	s += i;
	n -= i;
	if (n == 0) {
		sec->spec = IMAP_SECTION_ALL;
		return a->flags & IMAP_ARG_F_SECTION ? -1 : 0;
	}
	if (sec->kind != IMAP_FETCH_KIND_BODY)
		return -1;
	if (n == 6 && strncasecmp(s, "HEADER", 6) == 0)
		sec->spec = IMAP_SECTION_HEADER;
	else if (n == 4 && strncasecmp(s, "TEXT", 4) == 0)
		sec->spec = IMAP_SECTION_TEXT;
	else if (n == 4 && strncasecmp(s, "MIME", 4) == 0 && sec->nparts > 0)
		sec->spec = IMAP_SECTION_MIME;
	else if (n == 16 && strncasecmp(s, "HEADER.FIELDS ()", 16) == 0)
		sec->spec = IMAP_SECTION_HEADER_FIELDS;
	else if (n == 20 && strncasecmp(s, "HEADER.FIELDS.NOT ()", 20) == 0)
		sec->spec = IMAP_SECTION_HEADER_FIELDS_NOT;
	else
		return -1;
	if (sec->spec == IMAP_SECTION_HEADER_FIELDS ||
	    sec->spec == IMAP_SECTION_HEADER_FIELDS_NOT)
		return section_fields(cmd, a, sec);
	return a->flags & IMAP_ARG_F_SECTION ? -1 : 0;
}

static const struct {
	const char *prefix;
	enum imap_fetch_kind kind;
	bool peek;
} section_kinds[] = {
	{ "BODY", IMAP_FETCH_KIND_BODY, false },
	{ "BODY.PEEK", IMAP_FETCH_KIND_BODY, true },
	{ "BINARY", IMAP_FETCH_KIND_BINARY, false },
	{ "BINARY.PEEK", IMAP_FETCH_KIND_BINARY, true },
	{ "BINARY.SIZE", IMAP_FETCH_KIND_BINARY_SIZE, true },
};

/* BODY[...]<...> and the like. */
static int fetch_section(struct imap_cmd *cmd, const struct imap_arg *a,
			 struct imap_fetch_section *sec)
{
	const char *s = a->str;
	const char *open = strchr(s, '['), *close;
	size_t plen, k;

	if (open == NULL)
		return -1;
	plen = (size_t)(open - s);
	for (k = 0; k < TERN_NELEM(section_kinds); k++) {
		if (strlen(section_kinds[k].prefix) == plen &&
		    strncasecmp(s, section_kinds[k].prefix, plen) == 0)
			break;
	}
	if (k == TERN_NELEM(section_kinds))
		return -1;
	memset(sec, 0, sizeof(*sec));
	sec->kind = section_kinds[k].kind;
	sec->peek = section_kinds[k].peek;
	close = strchr(open, ']');
	if (close == NULL ||
	    parse_section(cmd, a, open + 1, (size_t)(close - open - 1),
			  sec) < 0 ||
	    parse_partial(close + 1, strlen(close + 1), sec) < 0)
		return -1;
	if (sec->partial && sec->kind == IMAP_FETCH_KIND_BINARY_SIZE)
		return -1;
	return 0;
}

static int fetch_att(struct imap_cmd *cmd, const struct imap_arg *a,
		     bool alone, struct imap_fetch *f, size_t *nsec)
{
	if (!imap_arg_is_atom(a))
		return -1;
	for (size_t i = 0; i < TERN_NELEM(fetch_simple); i++) {
		if ((alone || i >= FETCH_MACROS) &&
		    imap_arg_atom_eq(a, fetch_simple[i].name)) {
			f->items |= fetch_simple[i].items;
			return 0;
		}
	}
	if (fetch_section(cmd, a, &f->sections[*nsec]) < 0)
		return -1;
	if (!f->sections[*nsec].peek)
		f->sets_seen = true;
	(*nsec)++;
	return 0;
}

static int fetch_modifiers(struct imap_cmd *cmd, const struct imap_arg *a,
			   struct imap_fetch *f)
{
	if (a->type != IMAP_ARG_LIST || a->count == 0)
		return -1;
	for (size_t i = 0; i < a->count; i++) {
		const struct imap_arg *m = &a->list[i];

		if (imap_arg_atom_eq(m, "CHANGEDSINCE") && i + 1 < a->count &&
		    !f->changedsince_set) {
			if (mod_value(&m[1], true, &f->changedsince) < 0)
				return -1;
			f->changedsince_set = true;
			i++;
		} else if (imap_arg_atom_eq(m, "VANISHED") && !f->vanished) {
			f->vanished = true;
		} else {
			return -1;
		}
	}
	if (f->vanished && (!cmd->uid || !f->changedsince_set))
		return -1;
	if (f->changedsince_set)
		f->items |= IMAP_FETCH_MODSEQ;
	return 0;
}

int imap_cmd_fetch(struct imap_cmd *cmd, const struct imap_fetch **fetch_r,
		   const char **error_r)
{
	struct imap_fetch *f = imap_cmd_alloc(cmd, sizeof(*f));
	const struct imap_arg *atts;
	size_t natts = 1, nsec = 0;

	if (cmd->nargs < 2 || cmd->nargs > 3)
		return bad(error_r, "FETCH needs a sequence set and items");
	if (imap_arg_seqset(cmd, &cmd->args[0], &f->set, error_r) < 0)
		return -1;
	atts = &cmd->args[1];
	if (atts->type == IMAP_ARG_LIST) {
		natts = atts->count;
		atts = atts->list;
		if (natts == 0)
			return bad(error_r, "Empty FETCH item list");
	}
	f->sections = imap_cmd_alloc(cmd, natts * sizeof(*f->sections));
	for (size_t i = 0; i < natts; i++) {
		if (fetch_att(cmd, &atts[i], cmd->args[1].type != IMAP_ARG_LIST,
			      f, &nsec) < 0)
			return bad(error_r, "Invalid FETCH item");
	}
	f->nsections = nsec;
	if (f->items & (IMAP_FETCH_RFC822 | IMAP_FETCH_RFC822_TEXT))
		f->sets_seen = true;
	if (cmd->uid)
		f->items |= IMAP_FETCH_UID;
	if (cmd->nargs == 3 && fetch_modifiers(cmd, &cmd->args[2], f) < 0)
		return bad(error_r, "Invalid FETCH modifier");
	*fetch_r = f;
	return 0;
}

/* An astring for a response: atom, quoted string or literal. */
static int put_astring(struct str *out, const char *s)
{
	size_t n = strlen(s);
	bool literal = false;
	int r;

	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)s[i] >= 0x80 || s[i] == '\r' || s[i] == '\n')
			literal = true;
	}
	if (literal)
		return str_printf(out, "{%zu}\r\n%s", n, s);
	r = str_append_byte(out, '"');
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '"' || s[i] == '\\')
			r |= str_append_byte(out, '\\');
		r |= str_append_byte(out, (unsigned char)s[i]);
	}
	return r | str_append_byte(out, '"');
}

static bool plain_atom(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c <= 0x20 || c >= 0x7f || strchr("(){\"\\%*]", c) != NULL)
			return false;
	}
	return true;
}

int imap_fetch_section_name(const struct imap_fetch_section *s,
			    struct str *out)
{
	static const char *const specs[] = {
		"", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT",
		"MIME",
	};
	static const char *const kinds[] = { "BODY[", "BINARY[",
					     "BINARY.SIZE[" };
	int r = str_append_c(out, kinds[s->kind]);

	for (size_t i = 0; i < s->nparts; i++)
		r |= str_printf(out, i > 0 ? ".%u" : "%u", (unsigned)s->parts[i]);
	if (s->spec != IMAP_SECTION_ALL)
		r |= str_printf(out, "%s%s", s->nparts > 0 ? "." : "",
				specs[s->spec]);
	if (s->nfields > 0) {
		r |= str_append_c(out, " (");
		for (size_t i = 0; i < s->nfields; i++) {
			if (i > 0)
				r |= str_append_byte(out, ' ');
			if (plain_atom(s->fields[i]))
				r |= str_append_c(out, s->fields[i]);
			else
				r |= put_astring(out, s->fields[i]);
		}
		r |= str_append_byte(out, ')');
	}
	r |= str_append_byte(out, ']');
	if (s->partial)
		r |= str_printf(out, "<%llu>", (unsigned long long)s->offset);
	return r < 0 ? -1 : 0;
}

/* ---- STORE, COPY ---------------------------------------------------- */

static int store_item(const struct imap_arg *a, struct imap_store *st)
{
	const char *s = a->str;

	if (!imap_arg_is_atom(a))
		return -1;
	st->op = IMAP_STORE_REPLACE;
	if (*s == '+' || *s == '-')
		st->op = *s++ == '+' ? IMAP_STORE_ADD : IMAP_STORE_REMOVE;
	if (strcasecmp(s, "FLAGS.SILENT") == 0)
		st->silent = true;
	else if (strcasecmp(s, "FLAGS") != 0)
		return -1;
	return 0;
}

int imap_cmd_store(struct imap_cmd *cmd, const struct imap_store **store_r,
		   const char **error_r)
{
	struct imap_store *st = imap_cmd_alloc(cmd, sizeof(*st));
	size_t i = 1;

	if (cmd->nargs < 3)
		return bad(error_r, "STORE needs a sequence set, item and flags");
	if (imap_arg_seqset(cmd, &cmd->args[0], &st->set, error_r) < 0)
		return -1;
	if (cmd->args[1].type == IMAP_ARG_LIST) {
		const struct imap_arg *m = &cmd->args[1];

		if (m->count != 2 || !imap_arg_atom_eq(&m->list[0],
						       "UNCHANGEDSINCE") ||
		    mod_value(&m->list[1], true, &st->unchangedsince) < 0)
			return bad(error_r, "Invalid STORE modifier");
		st->unchangedsince_set = true;
		i++;
	}
	if (cmd->nargs < i + 2 || store_item(&cmd->args[i], st) < 0)
		return bad(error_r, "Invalid STORE item");
	if (flags_rest(cmd, i + 1, &st->flags, &st->nflags, error_r) < 0)
		return -1;
	*store_r = st;
	return 0;
}

int imap_cmd_copy(struct imap_cmd *cmd, bool utf8,
		  const struct imap_copy **copy_r, const char **error_r)
{
	struct imap_copy *c = imap_cmd_alloc(cmd, sizeof(*c));

	if (cmd->nargs != 2)
		return bad(error_r, "Expected a sequence set and a mailbox");
	if (imap_arg_seqset(cmd, &cmd->args[0], &c->set, error_r) < 0 ||
	    imap_arg_mailbox(cmd, &cmd->args[1], utf8, &c->mailbox,
			     error_r) < 0)
		return -1;
	*copy_r = c;
	return 0;
}

/* ---- SELECT, EXAMINE ------------------------------------------------ */

static int qresync_params(struct imap_cmd *cmd, const struct imap_arg *a,
			  struct imap_select *sel)
{
	const struct imap_arg *l = a->list;
	uint64_t v;
	size_t i = 2;
	const char *error;

	if (a->type != IMAP_ARG_LIST || a->count < 2 || a->count > 4 ||
	    imap_arg_number(&l[0], &v) < 0 || v == 0 || v > UINT32_MAX ||
	    mod_value(&l[1], false, &sel->modseq) < 0)
		return -1;
	sel->uidvalidity = (uint32_t)v;
	if (i < a->count && l[i].type != IMAP_ARG_LIST) {
		if (imap_arg_seqset(cmd, &l[i], &sel->known_uids, &error) < 0 ||
		    imap_seqset_has_star(sel->known_uids) ||
		    imap_seqset_is_saved(sel->known_uids))
			return -1;
		i++;
	}
	if (i < a->count) {
		const struct imap_arg *m = &l[i];

		if (m->type != IMAP_ARG_LIST || m->count != 2 ||
		    imap_arg_seqset(cmd, &m->list[0], &sel->match_seqs,
				    &error) < 0 ||
		    imap_arg_seqset(cmd, &m->list[1], &sel->match_uids,
				    &error) < 0 ||
		    imap_seqset_has_star(sel->match_seqs) ||
		    imap_seqset_has_star(sel->match_uids) ||
		    imap_seqset_is_saved(sel->match_seqs) ||
		    imap_seqset_is_saved(sel->match_uids) ||
		    imap_seqset_count(sel->match_seqs) !=
			    imap_seqset_count(sel->match_uids))
			return -1;
		i++;
	}
	return i == a->count ? 0 : -1;
}

int imap_cmd_select(struct imap_cmd *cmd, bool utf8,
		    const struct imap_select **select_r, const char **error_r)
{
	struct imap_select *sel = imap_cmd_alloc(cmd, sizeof(*sel));
	const struct imap_arg *p;

	if (cmd->nargs < 1 || cmd->nargs > 2)
		return bad(error_r, "Expected a mailbox name");
	if (imap_arg_mailbox(cmd, &cmd->args[0], utf8, &sel->mailbox,
			     error_r) < 0)
		return -1;
	p = cmd->nargs == 2 ? &cmd->args[1] : NULL;
	if (p != NULL && p->type != IMAP_ARG_LIST)
		return bad(error_r, "Invalid SELECT parameters");
	for (size_t i = 0; p != NULL && i < p->count; i++) {
		const struct imap_arg *a = &p->list[i];

		if (imap_arg_atom_eq(a, "CONDSTORE") && !sel->condstore) {
			sel->condstore = true;
		} else if (imap_arg_atom_eq(a, "QRESYNC") && !sel->qresync &&
			   i + 1 < p->count) {
			if (qresync_params(cmd, &a[1], sel) < 0)
				return bad(error_r, "Invalid QRESYNC parameters");
			sel->qresync = true;
			i++;
		} else {
			return bad(error_r, "Invalid SELECT parameter");
		}
	}
	*select_r = sel;
	return 0;
}

/* ---- STATUS --------------------------------------------------------- */

static const struct {
	const char *name;
	unsigned bit;
} status_names[] = {
	{ "MESSAGES", IMAP_STATUS_MESSAGES },
	{ "RECENT", IMAP_STATUS_RECENT },
	{ "UIDNEXT", IMAP_STATUS_UIDNEXT },
	{ "UIDVALIDITY", IMAP_STATUS_UIDVALIDITY },
	{ "UNSEEN", IMAP_STATUS_UNSEEN },
	{ "DELETED", IMAP_STATUS_DELETED },
	{ "SIZE", IMAP_STATUS_SIZE },
	{ "HIGHESTMODSEQ", IMAP_STATUS_HIGHESTMODSEQ },
};

int imap_status_items(const struct imap_arg *a, unsigned *items_r,
		      const char **error_r)
{
	unsigned items = 0;

	if (a->type != IMAP_ARG_LIST || a->count == 0)
		return bad(error_r, "Expected a list of status items");
	for (size_t i = 0; i < a->count; i++) {
		size_t k;

		for (k = 0; k < TERN_NELEM(status_names); k++) {
			if (imap_arg_atom_eq(&a->list[i], status_names[k].name))
				break;
		}
		if (k == TERN_NELEM(status_names))
			return bad(error_r, "Invalid status item");
		items |= status_names[k].bit;
	}
	*items_r = items;
	return 0;
}

int imap_cmd_status(struct imap_cmd *cmd, bool utf8,
		    const struct imap_status **status_r, const char **error_r)
{
	struct imap_status *st = imap_cmd_alloc(cmd, sizeof(*st));

	if (cmd->nargs != 2)
		return bad(error_r, "Expected a mailbox and status items");
	if (imap_arg_mailbox(cmd, &cmd->args[0], utf8, &st->mailbox,
			     error_r) < 0 ||
	    imap_status_items(&cmd->args[1], &st->items, error_r) < 0)
		return -1;
	*status_r = st;
	return 0;
}

/* ---- LIST, LSUB ----------------------------------------------------- */

static int list_select(const struct imap_arg *a, unsigned *sel)
{
	static const struct {
		const char *name;
		unsigned bit;
	} opts[] = {
		{ "SUBSCRIBED", IMAP_LIST_SEL_SUBSCRIBED },
		{ "REMOTE", IMAP_LIST_SEL_REMOTE },
		{ "RECURSIVEMATCH", IMAP_LIST_SEL_RECURSIVEMATCH },
		{ "SPECIAL-USE", IMAP_LIST_SEL_SPECIAL_USE },
	};

	for (size_t i = 0; i < a->count; i++) {
		size_t k;

		for (k = 0; k < TERN_NELEM(opts); k++) {
			if (imap_arg_atom_eq(&a->list[i], opts[k].name))
				break;
		}
		if (k == TERN_NELEM(opts))
			return -1;
		*sel |= opts[k].bit;
	}
	/* RECURSIVEMATCH needs an option it can modify (RFC 5258). */
	if ((*sel & IMAP_LIST_SEL_RECURSIVEMATCH) &&
	    !(*sel & (IMAP_LIST_SEL_SUBSCRIBED | IMAP_LIST_SEL_SPECIAL_USE)))
		return -1;
	return 0;
}

static int list_return(const struct imap_arg *a, struct imap_list *l)
{
	const char *error;

	if (a->type != IMAP_ARG_LIST)
		return -1;
	for (size_t i = 0; i < a->count; i++) {
		const struct imap_arg *o = &a->list[i];

		if (imap_arg_atom_eq(o, "SUBSCRIBED")) {
			l->ret |= IMAP_LIST_RET_SUBSCRIBED;
		} else if (imap_arg_atom_eq(o, "CHILDREN")) {
			l->ret |= IMAP_LIST_RET_CHILDREN;
		} else if (imap_arg_atom_eq(o, "SPECIAL-USE")) {
			l->ret |= IMAP_LIST_RET_SPECIAL_USE;
		} else if (imap_arg_atom_eq(o, "STATUS") && i + 1 < a->count &&
			   !(l->ret & IMAP_LIST_RET_STATUS)) {
			if (imap_status_items(&o[1], &l->status_items,
					      &error) < 0)
				return -1;
			l->ret |= IMAP_LIST_RET_STATUS;
			i++;
		} else {
			return -1;
		}
	}
	return 0;
}

static int list_patterns(struct imap_cmd *cmd, const struct imap_arg *a,
			 bool utf8, struct imap_list *l, const char **error_r)
{
	const struct imap_arg *items = a;
	size_t n = 1;
	const char **pats;

	if (a->type == IMAP_ARG_LIST) {
		items = a->list;
		n = a->count;
		l->extended = true;
		if (n == 0)
			return bad(error_r, "Empty pattern list");
	}
	pats = imap_cmd_alloc(cmd, n * sizeof(*pats));
	for (size_t i = 0; i < n; i++) {
		const char *s;
		size_t len;

		if (imap_arg_astring(&items[i], &s, &len) < 0)
			return bad(error_r, "Invalid mailbox pattern");
		if (mailbox_decode(cmd, s, len, utf8, &pats[i], error_r) < 0)
			return -1;
	}
	l->patterns = pats;
	l->npatterns = n;
	return 0;
}

int imap_cmd_list(struct imap_cmd *cmd, bool utf8,
		  const struct imap_list **list_r, const char **error_r)
{
	struct imap_list *l = imap_cmd_alloc(cmd, sizeof(*l));
	const struct imap_arg *a = cmd->args;
	size_t n = cmd->nargs;
	const char *s;
	size_t len;

	l->lsub = strcmp(cmd->name, "LSUB") == 0;
	if (!l->lsub && n > 0 && a[0].type == IMAP_ARG_LIST) {
		if (list_select(&a[0], &l->select) < 0)
			return bad(error_r, "Invalid LIST selection option");
		l->extended = true;
		a++;
		n--;
	}
	if (n != 2 && (l->lsub || n != 4 || !imap_arg_atom_eq(&a[2],
							       "RETURN")))
		return bad(error_r, "Expected a reference and a pattern");
	if (n == 4) {
		if (list_return(&a[3], l) < 0)
			return bad(error_r, "Invalid LIST return option");
		l->extended = true;
	}
	if (imap_arg_astring(&a[0], &s, &len) < 0)
		return bad(error_r, "Invalid reference");
	if (mailbox_decode(cmd, s, len, utf8, &l->reference, error_r) < 0)
		return -1;
	if ((l->lsub && a[1].type == IMAP_ARG_LIST) ||
	    list_patterns(cmd, &a[1], utf8, l, error_r) < 0)
		return bad(error_r, "Invalid mailbox pattern");
	*list_r = l;
	return 0;
}

/* ---- APPEND --------------------------------------------------------- */

/* One message from a[*i]: [flags] [date-time] data. */
static int append_msg(struct imap_cmd *cmd, const struct imap_arg *a,
		      size_t n, size_t *i, struct imap_append_msg *m,
		      const char **error_r)
{
	const struct imap_arg *d;

	if (*i < n && a[*i].type == IMAP_ARG_LIST) {
		if (imap_arg_flags(cmd, &a[*i], false, &m->flags, &m->nflags,
				   error_r) < 0)
			return -1;
		(*i)++;
	}
	if (*i < n && a[*i].type == IMAP_ARG_QUOTED) {
		if (imap_datetime_parse(a[*i].str, a[*i].len, &m->date,
					&m->zone) < 0)
			return bad(error_r, "Invalid date-time");
		m->date_set = true;
		(*i)++;
	}
	/* RFC 6855: UTF8 (~{n}...) */
	if (*i + 1 < n && imap_arg_atom_eq(&a[*i], "UTF8") &&
	    a[*i + 1].type == IMAP_ARG_LIST && a[*i + 1].count == 1 &&
	    a[*i + 1].list[0].type == IMAP_ARG_LITERAL8) {
		(*i)++;
		d = &a[*i].list[0];
	} else if (*i < n && (a[*i].type == IMAP_ARG_LITERAL ||
			      a[*i].type == IMAP_ARG_LITERAL8)) {
		d = &a[*i];
	} else {
		return bad(error_r, "Expected a message literal");
	}
	(*i)++;
	if (d->type == IMAP_ARG_LITERAL && (d->flags & IMAP_ARG_F_NUL))
		return bad(error_r, "NUL in message: use a literal8");
	m->data = d->str;
	m->size = d->len;
	m->binary = d->type == IMAP_ARG_LITERAL8;
	return 0;
}

int imap_cmd_append(struct imap_cmd *cmd, bool utf8,
		    const struct imap_append **append_r, const char **error_r)
{
	struct imap_append *ap = imap_cmd_alloc(cmd, sizeof(*ap));
	size_t i = 1, max;

	if (cmd->nargs < 2)
		return bad(error_r, "Expected a mailbox and a message");
	if (imap_arg_mailbox(cmd, &cmd->args[0], utf8, &ap->mailbox,
			     error_r) < 0)
		return -1;
	max = cmd->nargs - 1;
	ap->msgs = imap_cmd_alloc(cmd, max * sizeof(*ap->msgs));
	while (i < cmd->nargs) {
		if (append_msg(cmd, cmd->args, cmd->nargs, &i,
			       &ap->msgs[ap->nmsgs], error_r) < 0)
			return -1;
		ap->nmsgs++;
	}
	*append_r = ap;
	return 0;
}

/* ---- ENABLE, ID, AUTHENTICATE, LOGIN -------------------------------- */

int imap_cmd_enable(struct imap_cmd *cmd, const struct imap_enable **en_r,
		    const char **error_r)
{
	struct imap_enable *en = imap_cmd_alloc(cmd, sizeof(*en));
	char **caps;

	if (cmd->nargs == 0)
		return bad(error_r, "Expected capabilities");
	caps = imap_cmd_alloc(cmd, cmd->nargs * sizeof(*caps));
	for (size_t i = 0; i < cmd->nargs; i++) {
		const struct imap_arg *a = &cmd->args[i];

		if (a->type != IMAP_ARG_ATOM)
			return bad(error_r, "Invalid capability");
		caps[i] = imap_cmd_strndup(cmd, a->str, a->len);
		for (char *c = caps[i]; *c != '\0'; c++)
			*c = (char)toupper((unsigned char)*c);
	}
	en->caps = (const char *const *)caps;
	en->ncaps = cmd->nargs;
	*en_r = en;
	return 0;
}

int imap_cmd_id(struct imap_cmd *cmd, const struct imap_id **id_r,
		const char **error_r)
{
	struct imap_id *id = imap_cmd_alloc(cmd, sizeof(*id));
	const struct imap_arg *l;
	const char **keys, **values;

	if (cmd->nargs != 1)
		return bad(error_r, "Expected a list or NIL");
	l = &cmd->args[0];
	if (l->type == IMAP_ARG_NIL) {
		*id_r = id;
		return 0;
	}
	if (l->type != IMAP_ARG_LIST || l->count % 2 != 0 ||
	    l->count / 2 > IMAP_ID_MAX_PAIRS)
		return bad(error_r, "Invalid ID parameters");
	keys = imap_cmd_alloc(cmd, (l->count / 2 + 1) * sizeof(*keys));
	values = imap_cmd_alloc(cmd, (l->count / 2 + 1) * sizeof(*values));
	for (size_t i = 0; i < l->count; i += 2) {
		size_t klen, vlen;

		if (imap_arg_string(&l->list[i], &keys[i / 2], &klen) < 0 ||
		    imap_arg_nstring(&l->list[i + 1], &values[i / 2],
				     &vlen) < 0 ||
		    klen > IMAP_ID_MAX_KEY || vlen > IMAP_ID_MAX_VALUE)
			return bad(error_r, "Invalid ID parameters");
	}
	id->keys = keys;
	id->values = values;
	id->n = l->count / 2;
	*id_r = id;
	return 0;
}

static bool base64_ok(const char *s, size_t n)
{
	size_t i = 0;

	while (i < n && (isalnum((unsigned char)s[i]) || s[i] == '+' ||
			 s[i] == '/'))
		i++;
	if (i < n && s[i] == '=')
		i++;
	if (i < n && s[i] == '=')
		i++;
	return i == n && n % 4 == 0;
}

int imap_cmd_authenticate(struct imap_cmd *cmd,
			  const struct imap_authenticate **auth_r,
			  const char **error_r)
{
	struct imap_authenticate *au = imap_cmd_alloc(cmd, sizeof(*au));
	const struct imap_arg *a = cmd->args;
	char *mech;

	if (cmd->nargs < 1 || cmd->nargs > 2 || a[0].type != IMAP_ARG_ATOM)
		return bad(error_r, "Expected a SASL mechanism");
	mech = imap_cmd_strndup(cmd, a[0].str, a[0].len);
	for (char *c = mech; *c != '\0'; c++) {
		if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_')
			return bad(error_r, "Invalid SASL mechanism");
		*c = (char)toupper((unsigned char)*c);
	}
	au->mechanism = mech;
	if (cmd->nargs == 2) {
		if (!imap_arg_is_atom(&a[1]))
			return bad(error_r, "Invalid initial response");
		au->has_ir = true;
		au->ir = a[1].str;
		if (strcmp(au->ir, "=") == 0)
			au->ir = "";
		else if (!base64_ok(a[1].str, a[1].len))
			return bad(error_r, "Invalid initial response");
	}
	*auth_r = au;
	return 0;
}

int imap_cmd_login(struct imap_cmd *cmd, const struct imap_login **login_r,
		   const char **error_r)
{
	struct imap_login *lo = imap_cmd_alloc(cmd, sizeof(*lo));
	size_t len;

	if (cmd->nargs != 2 ||
	    imap_arg_astring(&cmd->args[0], &lo->user, &len) < 0 ||
	    imap_arg_astring(&cmd->args[1], &lo->password, &len) < 0)
		return bad(error_r, "Expected a user name and a password");
	*login_r = lo;
	return 0;
}
