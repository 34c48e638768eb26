/*
 * fuzz_imapparse.c: the IMAP command parser and its typed views.
 *
 * The first byte picks the settings (literal mode, small or default
 * limits), the second seeds the chunk sizes.  The rest is fed whole and in
 * chunks whose sizes come from the seed: both must give the same sequence
 * of commands, continuation requests and errors.  Every typed helper runs
 * on every command of the whole run; sequence sets are resolved, walked
 * and printed; decoded mailbox names must survive a modified UTF-7 round
 * trip.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>

#include "compat.h"
#include "imapcmd.h"
#include "imapparse.h"
#include "imapsearch.h"
#include "imaptypes.h"
#include "str.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void put(struct str *out, const void *p, size_t n)
{
	if (str_append(out, p, n) < 0)
		abort();
}

static void dump_arg(struct str *out, const struct imap_arg *a)
{
	char hdr[48];
	int n = snprintf(hdr, sizeof(hdr), "%d:%u:%zu:%zu:", (int)a->type,
			 a->flags, a->len, a->count);

	put(out, hdr, (size_t)n);
	put(out, a->str, a->len);
	for (size_t i = 0; i < a->count; i++)
		dump_arg(out, &a->list[i]);
	put(out, ";", 1);
}

static void check_seqset(struct imap_seqset *set, uint32_t max)
{
	struct str *s = str_new(64, 1 << 24);
	uint32_t n = 0;
	uint64_t count = 0;

	imap_seqset_resolve(set, max);
	while (imap_seqset_next(set, &n) && count < 1000) {
		if (!imap_seqset_contains(set, n))
			abort();
		count++;
	}
	if (imap_seqset_format(set, s) < 0)
		abort();
	str_free(&s);
}

static void check_name(const char *name)
{
	struct str *a = str_new(64, 1 << 16), *b = str_new(64, 1 << 16);
	const char *error;

	if (imap_mutf7_encode(name, strlen(name), a, &error) < 0 ||
	    imap_mutf7_decode(str_c(a), str_len(a), b, &error) < 0 ||
	    strcmp(str_c(b), name) != 0)
		abort();
	str_free(&a);
	str_free(&b);
}

static void check_search_node(const struct imap_search_node *n)
{
	if (n->set != NULL && !imap_seqset_is_saved(n->set))
		check_seqset(n->set, 77);
	for (size_t i = 0; i < n->nchildren; i++)
		check_search_node(&n->children[i]);
}

static void typed(struct imap_cmd *cmd)
{
	const char *error;
	const struct imap_fetch *f;
	const struct imap_store *st;
	const struct imap_copy *cp;
	const struct imap_select *sel;
	const struct imap_status *sta;
	const struct imap_list *l;
	const struct imap_append *ap;
	const struct imap_enable *en;
	const struct imap_id *id;
	const struct imap_authenticate *au;
	const struct imap_login *lo;
	const struct imap_search *se;
	const struct imap_sort *so;
	const struct imap_thread *th;

	if (imap_cmd_fetch(cmd, &f, &error) == 0) {
		struct str *s = str_new(64, 1 << 24);

		for (size_t i = 0; i < f->nsections; i++) {
			if (imap_fetch_section_name(&f->sections[i], s) < 0)
				abort();
		}
		str_free(&s);
		if (!imap_seqset_is_saved(f->set))
			check_seqset(f->set, 3);
	}
	if (imap_cmd_store(cmd, &st, &error) == 0 &&
	    !imap_seqset_is_saved(st->set))
		check_seqset(st->set, 0);
	for (int utf8 = 0; utf8 < 2; utf8++) {
		if (imap_cmd_copy(cmd, utf8, &cp, &error) == 0)
			check_name(cp->mailbox);
		if (imap_cmd_select(cmd, utf8, &sel, &error) == 0)
			check_name(sel->mailbox);
		if (imap_cmd_status(cmd, utf8, &sta, &error) == 0)
			check_name(sta->mailbox);
		if (imap_cmd_list(cmd, utf8, &l, &error) == 0) {
			for (size_t i = 0; i < l->npatterns; i++)
				check_name(l->patterns[i]);
		}
		if (imap_cmd_append(cmd, utf8, &ap, &error) == 0)
			check_name(ap->mailbox);
	}
	(void)imap_cmd_enable(cmd, &en, &error);
	(void)imap_cmd_id(cmd, &id, &error);
	(void)imap_cmd_authenticate(cmd, &au, &error);
	(void)imap_cmd_login(cmd, &lo, &error);
	if (imap_cmd_search(cmd, &se, &error) == 0)
		check_search_node(&se->root);
	if (imap_cmd_sort(cmd, &so, &error) == 0)
		check_search_node(&so->search.root);
	if (imap_cmd_thread(cmd, &th, &error) == 0)
		check_search_node(&th->search.root);
}

static struct str *run(const struct imap_parser_settings *set,
		       const char *in, size_t len, uint8_t seed, bool helpers)
{
	struct imap_parser *p = imap_parser_new(set);
	struct str *out = str_new(256, 1 << 26);
	const char *pos = in, *end = in + len;

	bool chunked = seed != 0;

	while (pos < end) {
		size_t step = chunked ? (size_t)(seed % 17) + 1 : len;
		const char *ce = (size_t)(end - pos) < step ? end : pos + step;

		seed = (uint8_t)(seed * 31 + 7);
		while (pos < ce) {
			struct imap_cmd *cmd;
			const struct imap_parse_error *err;
			int r = imap_parser_feed(p, &pos, ce, &cmd, &err);
			char hdr[32];

			if (r == IMAP_PARSE_MORE)
				break;
			snprintf(hdr, sizeof(hdr), "\n%d:", r);
			put(out, hdr, strlen(hdr));
			if (r == IMAP_PARSE_ERROR) {
				put(out, err->text, strlen(err->text));
				if (err->tag != NULL)
					put(out, err->tag, strlen(err->tag));
				if (err->code != NULL)
					put(out, err->code, strlen(err->code));
				put(out, err->kind == IMAP_RESP_BAD ? "B" : "N",
				    1);
			} else if (r == IMAP_PARSE_COMMAND) {
				put(out, cmd->tag, strlen(cmd->tag));
				put(out, cmd->name, strlen(cmd->name));
				put(out, cmd->uid ? "U" : "-", 1);
				for (size_t i = 0; i < cmd->nargs; i++)
					dump_arg(out, &cmd->args[i]);
				if (helpers)
					typed(cmd);
				imap_cmd_free(&cmd);
			}
		}
	}
	imap_parser_free(&p);
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct imap_parser_settings set;
	struct str *a, *b;

	if (size < 2)
		return 0;
	imap_parser_settings_default(&set);
	set.literal = (enum imap_literal_mode)(data[0] % 3);
	if (data[0] & 0x4) {
		set.max_line = 64;
		set.max_literal = 16;
		set.max_append = 40;
		set.max_command = 200;
		set.max_args = 16;
		set.max_depth = 3;
	}
	a = run(&set, (const char *)data + 2, size - 2, 0, true);
	b = run(&set, (const char *)data + 2, size - 2, data[1] | 1, false);
	if (str_len(a) != str_len(b) ||
	    memcmp(str_c(a), str_c(b), str_len(a)) != 0)
		abort();
	str_free(&a);
	str_free(&b);
	return 0;
}
