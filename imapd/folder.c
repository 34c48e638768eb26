/*
 * folder.c: the folder commands: CREATE (with CREATE-SPECIAL-USE),
 * DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST and LSUB (LIST-EXTENDED,
 * SPECIAL-USE, CHILDREN, LIST-STATUS), STATUS (STATUS=SIZE, CONDSTORE),
 * and QUOTA (RFC 9208: the account is the one quota root "").
 *
 * The hierarchy delimiter is "/", the store's.  A folder whose children
 * exist but which does not itself is listed as \NonExistent \Noselect
 * when a pattern matches it only as a parent ("%").
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "compat.h"
#include "commands.h"
#include "imapcmd.h"
#include "imapd.h"
#include "imapparse.h"
#include "ipc.h"
#include "log.h"
#include "mbox.h"
#include "session.h"
#include "storeasync.h"
#include "str.h"
#include "xalloc.h"

/* ---- simple folder requests ---- */

static void simple_answer(struct session *s, enum storeasync_status st,
			  struct ipc_msg *const *frames, size_t nframes,
			  const struct ipc_msg *final, const char *code,
			  const char *error, void *ctx)
{
	const char *what = s->cmd->name;

	if (st == STOREASYNC_TEMPFAIL) {
		cmd_tempfail(s, what, error);
	} else if (st == STOREASYNC_OK) {
		cmd_done(s, false, "OK", "%s completed", what);
	} else if (strcmp(code, "exists") == 0) {
		cmd_done(s, false, "NO", "[ALREADYEXISTS] Folder exists");
	} else if (strcmp(code, "nofolder") == 0) {
		cmd_done(s, false, "NO", "[NONEXISTENT] No such folder");
	} else if (strcmp(code, "notempty") == 0) {
		cmd_done(s, false, "NO", "[INUSE] Folder has child folders");
	} else if (strcmp(code, "invalid") == 0) {
		cmd_done(s, false, "NO", "[CANNOT] %s",
			 error != NULL ? error : "Not possible");
	} else {
		cmd_done(s, false, "NO", "[SERVERBUG] %s failed", what);
		log_warn(s->id, "%s: %s: %s", what, code,
			 error != NULL ? error : "");
	}
}

/* The folder name of argument i, without a trailing "/". */
static int arg_folder(struct session *s, struct imap_cmd *cmd, size_t i,
		      const char **name_r)
{
	const char *error, *name;
	size_t n;

	if (i >= cmd->nargs) {
		cmd_error(s, "BAD", "Missing folder name");
		return -1;
	}
	if (imap_arg_mailbox(cmd, &cmd->args[i], s->utf8, &name, &error) < 0) {
		cmd_error(s, "BAD", error);
		return -1;
	}
	n = strlen(name);
	while (n > 1 && name[n - 1] == '/')
		n--;
	*name_r = imap_cmd_strndup(cmd, name, n);
	if (n == 0) {
		cmd_done(s, false, "NO", "[CANNOT] Empty folder name");
		return -1;
	}
	return 0;
}

void cmd_create(struct session *s, struct imap_cmd *cmd)
{
	const char *name, *use = NULL;
	struct ipc_msg *req;

	if (arg_folder(s, cmd, 0, &name) < 0)
		return;
	if (cmd->nargs == 2) {
		/* CREATE-SPECIAL-USE: (USE (\Sent)) */
		const struct imap_arg *l = &cmd->args[1];

		if (l->type != IMAP_ARG_LIST || l->count != 2 ||
		    !imap_arg_atom_eq(&l->list[0], "USE") ||
		    l->list[1].type != IMAP_ARG_LIST ||
		    l->list[1].count > 1) {
			cmd_error(s, "BAD", "Expected (USE (flag))");
			return;
		}
		if (l->list[1].count == 1) {
			static const char *const uses[] = {
				"\\Sent", "\\Drafts", "\\Trash", "\\Junk",
				"\\Archive", "\\All", "\\Flagged",
			};
			const char *u = l->list[1].list[0].str;

			for (size_t i = 0; i < TERN_NELEM(uses); i++) {
				if (strcasecmp(u, uses[i]) == 0)
					use = uses[i];
			}
			if (use == NULL) {
				cmd_done(s, false, "NO", "[USEATTR] Unknown "
					 "special use");
				return;
			}
		}
	} else if (cmd->nargs != 1) {
		cmd_error(s, "BAD", "Expected a folder name");
		return;
	}
	if (strcmp(name, "INBOX") == 0) {
		cmd_done(s, false, "NO", "[ALREADYEXISTS] INBOX exists");
		return;
	}
	req = store_req(s, "folder.create", name);
	if (use != NULL)
		ipc_msg_add_cstr(req, "special_use", use);
	store_call(s, req, false, simple_answer, NULL, NULL);
}

/* ctx: the folder name (of the command, alive until it is done). */
static void delete_answer(struct session *s, enum storeasync_status st,
			  struct ipc_msg *const *frames, size_t nframes,
			  const struct ipc_msg *final, const char *code,
			  const char *error, void *ctx)
{
	if (st == STOREASYNC_OK)
		mbox_folder_deleted(s->d, s->account, ctx);
	simple_answer(s, st, frames, nframes, final, code, error, ctx);
}

void cmd_delete(struct session *s, struct imap_cmd *cmd)
{
	const char *name;

	if (cmd->nargs != 1) {
		cmd_error(s, "BAD", "Expected a folder name");
		return;
	}
	if (arg_folder(s, cmd, 0, &name) < 0)
		return;
	if (strcmp(name, "INBOX") == 0) {
		cmd_done(s, false, "NO", "[CANNOT] INBOX cannot be deleted");
		return;
	}
	if (s->mb != NULL && strcmp(s->mb->name, name) == 0)
		mbox_close(s);
	store_call(s, store_req(s, "folder.delete", name), false,
		   delete_answer, (void *)name, NULL);
}

static void rename_inbox_moved(struct session *s, enum storeasync_status st,
			       struct ipc_msg *const *frames, size_t nframes,
			       const struct ipc_msg *final, const char *code,
			       const char *error, void *ctx)
{
	if (st == STOREASYNC_OK) {
		if (s->mb != NULL && strcmp(s->mb->name, "INBOX") == 0)
			s->mb->resync = true;	/* its messages left */
		mbox_broadcast_resync(s, s->account, "INBOX");
		mbox_broadcast_new(s, s->account, ctx);
	}
	simple_answer(s, st, frames, nframes, final, code, error, ctx);
}

static void rename_inbox_created(struct session *s,
				 enum storeasync_status st,
				 struct ipc_msg *const *frames, size_t nframes,
				 const struct ipc_msg *final, const char *code,
				 const char *error, void *ctx)
{
	struct ipc_msg *req;

	if (st != STOREASYNC_OK) {
		simple_answer(s, st, frames, nframes, final, code, error,
			      ctx);
		return;
	}
	req = store_req(s, "move", "INBOX");
	ipc_msg_add_cstr(req, "uids", "1:*");
	ipc_msg_add_cstr(req, "to", (const char *)ctx);
	store_call(s, req, false, rename_inbox_moved, ctx, NULL);
}

/* The two names of a RENAME (the command's, alive until it is done). */
struct rename_names {
	const char *from, *to;
};

static void rename_answer(struct session *s, enum storeasync_status st,
			  struct ipc_msg *const *frames, size_t nframes,
			  const struct ipc_msg *final, const char *code,
			  const char *error, void *ctx)
{
	struct rename_names *names = ctx;

	if (st == STOREASYNC_OK)
		mbox_folder_renamed(s->d, s->account, names->from, names->to);
	free(names);
	simple_answer(s, st, frames, nframes, final, code, error, NULL);
}

void cmd_rename(struct session *s, struct imap_cmd *cmd)
{
	const char *from, *to;
	struct rename_names *names;
	struct ipc_msg *req;

	if (cmd->nargs != 2) {
		cmd_error(s, "BAD", "Expected two folder names");
		return;
	}
	if (arg_folder(s, cmd, 0, &from) < 0 ||
	    arg_folder(s, cmd, 1, &to) < 0)
		return;
	if (strcmp(from, "INBOX") == 0) {
		/* RFC 9051 6.3.6: INBOX's messages move to the new folder,
		 * INBOX stays (empty), its children stay where they are. */
		store_call(s, store_req(s, "folder.create", to), false,
			   rename_inbox_created, (void *)to, NULL);
		return;
	}
	req = store_req(s, "folder.rename", from);
	ipc_msg_add_cstr(req, "new_name", to);
	names = xmalloc(sizeof(*names));
	names->from = from;
	names->to = to;
	store_call(s, req, false, rename_answer, names, free);
}

void cmd_subscribe(struct session *s, struct imap_cmd *cmd)
{
	const char *name;

	if (cmd->nargs != 1) {
		cmd_error(s, "BAD", "Expected a folder name");
		return;
	}
	if (arg_folder(s, cmd, 0, &name) < 0)
		return;
	store_call(s, store_req(s, strcmp(cmd->name, "SUBSCRIBE") == 0 ?
				"folder.subscribe" : "folder.unsubscribe",
				name),
		   false, simple_answer, NULL, NULL);
}

/* ---- STATUS ---- */

static void status_line(struct session *s, const char *name, unsigned items,
			const struct ipc_msg *st)
{
	static const struct {
		unsigned bit;
		const char *item, *field;
	} map[] = {
		{ IMAP_STATUS_MESSAGES, "MESSAGES", "exists" },
		{ IMAP_STATUS_UIDNEXT, "UIDNEXT", "uidnext" },
		{ IMAP_STATUS_UIDVALIDITY, "UIDVALIDITY", "uidvalidity" },
		{ IMAP_STATUS_UNSEEN, "UNSEEN", "unseen" },
		{ IMAP_STATUS_SIZE, "SIZE", "size" },
		{ IMAP_STATUS_HIGHESTMODSEQ, "HIGHESTMODSEQ",
		  "highestmodseq" },
		{ IMAP_STATUS_DELETED, "DELETED", "deleted" },
	};
	bool first = true;
	int64_t v;

	out_printf(s, "* STATUS ");
	out_mailbox(s, name);
	out_printf(s, " (");
	for (size_t i = 0; i < TERN_NELEM(map); i++) {
		if ((items & map[i].bit) == 0)
			continue;
		if (ipc_msg_get_int(st, map[i].field, &v) < 0)
			continue;	/* not kept by this store */
		out_printf(s, "%s%s %lld", first ? "" : " ", map[i].item,
			   (long long)v);
		first = false;
	}
	if (items & IMAP_STATUS_RECENT)
		out_printf(s, "%sRECENT 0", first ? "" : " ");
	out_printf(s, ")\r\n");
}

struct status_op {
	const char *name;
	unsigned items;
};

static void status_answer(struct session *s, enum storeasync_status st,
			  struct ipc_msg *const *frames, size_t nframes,
			  const struct ipc_msg *final, const char *code,
			  const char *error, void *ctx)
{
	struct status_op *op = ctx;

	if (st == STOREASYNC_OK) {
		status_line(s, op->name, op->items, final);
		cmd_done(s, false, "OK", "STATUS completed");
	} else if (st == STOREASYNC_ERROR && (strcmp(code, "nofolder") == 0 ||
					      strcmp(code, "invalid") == 0)) {
		cmd_done(s, false, "NO", "[NONEXISTENT] No such folder");
	} else {
		cmd_tempfail(s, "status", error != NULL ? error : code);
	}
	free(op);
}

void cmd_status(struct session *s, struct imap_cmd *cmd)
{
	const struct imap_status *st;
	const char *error;
	struct status_op *op;
	struct ipc_msg *req;

	if (imap_cmd_status(cmd, s->utf8, &st, &error) < 0) {
		cmd_error(s, "BAD", error);
		return;
	}
	op = xcalloc(1, sizeof(*op));
	op->name = st->mailbox;
	op->items = st->items;
	if (st->items & IMAP_STATUS_HIGHESTMODSEQ)
		s->condstore = true;
	req = store_req(s, "status", st->mailbox);
	store_call(s, req, true, status_answer, op, free);
}

/* ---- LIST, LSUB ---- */

struct folder {
	char *name;
	char *special_use;
	bool subscribed;
	bool exists;		/* false: only a parent of others */
	bool children;
	bool subscribed_child;
	bool matched;		/* to be listed */
	bool child_matched;	/* RECURSIVEMATCH: a child matched */
};

struct list_op {
	const struct imap_list *l;
	struct folder *f;
	size_t n, cap;
	size_t next;		/* LIST-STATUS: the next folder to report */
};

static void list_op_free(void *ctx)
{
	struct list_op *op = ctx;

	for (size_t i = 0; i < op->n; i++) {
		free(op->f[i].name);
		free(op->f[i].special_use);
	}
	free(op->f);
	free(op);
}

static struct folder *folder_find(struct list_op *op, const char *name,
				  size_t len)
{
	for (size_t i = 0; i < op->n; i++) {
		if (strlen(op->f[i].name) == len &&
		    memcmp(op->f[i].name, name, len) == 0)
			return &op->f[i];
	}
	return NULL;
}

static struct folder *folder_add(struct list_op *op, const char *name,
				 size_t len)
{
	struct folder *f;

	if (op->n == op->cap) {
		op->cap = op->cap * 2 + 32;
		op->f = xrealloc(op->f, op->cap * sizeof(*op->f));
	}
	f = &op->f[op->n++];
	memset(f, 0, sizeof(*f));
	f->name = xstrndup(name, len);
	return f;
}

/* IMAP wildcard match: "*" matches anything, "%" anything but "/";
 * "INBOX" at the start matches without regard to case. */
static bool wild_match(const char *pat, const char *name)
{
	if (strncasecmp(pat, "INBOX", 5) == 0 &&
	    strncasecmp(name, "INBOX", 5) == 0 &&
	    (pat[5] == '\0' || pat[5] == '/') &&
	    (name[5] == '\0' || name[5] == '/')) {
		pat += 5;
		name += 5;
	}
	while (*pat != '\0') {
		if (*pat == '*' || *pat == '%') {
			bool slash = *pat == '*';

			pat++;
			for (const char *p = name;; p++) {
				if (wild_match(pat, p))
					return true;
				if (*p == '\0' || (!slash && *p == '/'))
					return false;
			}
		}
		if (*pat != *name)
			return false;
		pat++;
		name++;
	}
	return *name == '\0';
}

static bool list_matches(const struct list_op *op, const char *name)
{
	const struct imap_list *l = op->l;
	struct str *full = str_new(256, 16384);
	bool m = false;

	for (size_t i = 0; i < l->npatterns && !m; i++) {
		str_clear(full);
		if (l->patterns[i][0] == '/' && l->reference[0] == '\0')
			(void)!str_append_c(full, l->patterns[i]);
		else
			(void)!str_printf(full, "%s%s", l->reference,
					 l->patterns[i]);
		m = wild_match(str_c(full), name);
	}
	str_free(&full);
	return m;
}

static void list_line(struct session *s, struct list_op *op,
		      const struct folder *f)
{
	const struct imap_list *l = op->l;
	struct str *attrs = str_new(128, 1024);

	if (!f->exists)
		(void)!str_append_c(attrs, l->extended || s->rev2 ?
				   " \\NonExistent" : " \\Noselect");
	if (!l->lsub && (l->ret & IMAP_LIST_RET_CHILDREN ||
			 !l->extended || s->rev2 || true))
		(void)!str_append_c(attrs, f->children ? " \\HasChildren" :
						       " \\HasNoChildren");
	if (f->subscribed && !l->lsub &&
	    (l->ret & IMAP_LIST_RET_SUBSCRIBED ||
	     l->select & IMAP_LIST_SEL_SUBSCRIBED))
		(void)!str_append_c(attrs, " \\Subscribed");
	if (f->special_use != NULL && f->special_use[0] != '\0' &&
	    !l->lsub)
		(void)!str_printf(attrs, " %s", f->special_use);
	out_printf(s, "* %s (%s) \"/\" ", l->lsub ? "LSUB" : "LIST",
		   str_len(attrs) > 0 ? str_c(attrs) + 1 : "");
	out_mailbox(s, f->name);
	if (f->child_matched && !f->matched)
		out_printf(s, " (\"CHILDINFO\" (\"SUBSCRIBED\"))");
	else if (f->child_matched)
		out_printf(s, " (\"CHILDINFO\" (\"SUBSCRIBED\"))");
	out_printf(s, "\r\n");
	str_free(&attrs);
}

static void list_status_next(struct session *s, struct list_op *op);

static void list_status_answer(struct session *s, enum storeasync_status st,
			       struct ipc_msg *const *frames, size_t nframes,
			       const struct ipc_msg *final, const char *code,
			       const char *error, void *ctx)
{
	struct list_op *op = ctx;

	if (st == STOREASYNC_OK)
		status_line(s, op->f[op->next].name, op->l->status_items,
			    final);
	else if (st == STOREASYNC_TEMPFAIL) {
		list_op_free(op);
		cmd_tempfail(s, "list status", error);
		return;
	}
	op->next++;
	list_status_next(s, op);
}

static void list_status_next(struct session *s, struct list_op *op)
{
	for (; op->next < op->n; op->next++) {
		struct folder *f = &op->f[op->next];

		if (!f->matched && !f->child_matched)
			continue;
		list_line(s, op, f);
		if (f->exists && f->matched) {
			store_call(s, store_req(s, "status", f->name), true,
				   list_status_answer, op, list_op_free);
			return;
		}
	}
	list_op_free(op);
	cmd_done(s, false, "OK", "%s completed", s->cmd->name);
}

static int folder_cmp(const void *a, const void *b)
{
	const struct folder *x = a, *y = b;
	bool xi = strcmp(x->name, "INBOX") == 0;
	bool yi = strcmp(y->name, "INBOX") == 0;

	if (xi != yi)
		return xi ? -1 : 1;
	return strcmp(x->name, y->name);
}

static void list_answer(struct session *s, enum storeasync_status st,
			struct ipc_msg *const *frames, size_t nframes,
			const struct ipc_msg *final, const char *code,
			const char *error, void *ctx)
{
	struct list_op *op = ctx;
	const struct imap_list *l = op->l;
	bool subscribed_only = l->lsub ||
			       (l->select & IMAP_LIST_SEL_SUBSCRIBED) != 0;

	if (st != STOREASYNC_OK) {
		list_op_free(op);
		cmd_tempfail(s, "list", error != NULL ? error : code);
		return;
	}
	for (size_t i = 0; i < nframes; i++) {
		const char *name, *use = "";
		int64_t sub = 0;
		struct folder *f;

		if (ipc_msg_get_cstr(frames[i], "name", &name) < 0)
			continue;
		(void)!ipc_msg_get_cstr(frames[i], "special_use", &use);
		(void)!ipc_msg_get_int(frames[i], "subscribed", &sub);
		f = folder_find(op, name, strlen(name));
		if (f == NULL)
			f = folder_add(op, name, strlen(name));
		f->exists = true;
		f->subscribed = sub != 0;
		free(f->special_use);
		f->special_use = xstrdup(use);
	}
	/* Parents, real or not. */
	for (size_t i = 0; i < op->n; i++) {
		const char *name = op->f[i].name;
		bool sub = op->f[i].subscribed;

		for (const char *p = strchr(name, '/'); p != NULL;
		     p = strchr(p + 1, '/')) {
			struct folder *parent = folder_find(op, name,
							    (size_t)(p - name));

			if (parent == NULL) {
				parent = folder_add(op, name,
						    (size_t)(p - name));
				name = op->f[i].name;	/* realloc */
			}
			parent->children = true;
			if (sub)
				parent->subscribed_child = true;
		}
	}
	qsort(op->f, op->n, sizeof(*op->f), folder_cmp);
	for (size_t i = 0; i < op->n; i++) {
		struct folder *f = &op->f[i];
		bool m = list_matches(op, f->name);

		if (!m)
			continue;
		if (subscribed_only) {
			f->matched = f->subscribed;
			if (!f->matched && f->subscribed_child &&
			    (l->select & IMAP_LIST_SEL_RECURSIVEMATCH))
				f->child_matched = true;
			if (l->lsub && !f->matched && f->subscribed_child) {
				/* LSUB "%": a parent of subscribed ones. */
				f->matched = true;
				f->exists = false;
			}
		} else if (l->select & IMAP_LIST_SEL_SPECIAL_USE) {
			f->matched = f->special_use != NULL &&
				     f->special_use[0] != '\0';
		} else {
			f->matched = f->exists || f->children;
		}
	}
	if (l->ret & IMAP_LIST_RET_STATUS) {
		op->next = 0;
		list_status_next(s, op);
		return;
	}
	for (size_t i = 0; i < op->n; i++) {
		if (op->f[i].matched || op->f[i].child_matched)
			list_line(s, op, &op->f[i]);
	}
	list_op_free(op);
	cmd_done(s, false, "OK", "%s completed", s->cmd->name);
}

void cmd_list(struct session *s, struct imap_cmd *cmd)
{
	const struct imap_list *l;
	const char *error;
	struct list_op *op;

	if (imap_cmd_list(cmd, s->utf8, &l, &error) < 0) {
		cmd_error(s, "BAD", error);
		return;
	}
	if (l->npatterns == 1 && l->patterns[0][0] == '\0' && !l->lsub &&
	    !l->extended) {
		/* The delimiter and the root. */
		out_printf(s, "* LIST (\\Noselect) \"/\" \"\"\r\n");
		cmd_done(s, false, "OK", "LIST completed");
		return;
	}
	if (l->ret & IMAP_LIST_RET_STATUS &&
	    l->status_items & IMAP_STATUS_HIGHESTMODSEQ)
		s->condstore = true;
	op = xcalloc(1, sizeof(*op));
	op->l = l;
	store_call(s, store_req(s, "folder.list", NULL), true, list_answer, op,
		   list_op_free);
}

/* ---- QUOTA ---- */

static void quota_answer(struct session *s, enum storeasync_status st,
			 struct ipc_msg *const *frames, size_t nframes,
			 const struct ipc_msg *final, const char *code,
			 const char *error, void *ctx)
{
	int64_t used = 0, messages = 0, limit = 0;

	if (st != STOREASYNC_OK) {
		cmd_tempfail(s, "quota", error != NULL ? error : code);
		return;
	}
	(void)!ipc_msg_get_int(final, "used", &used);
	(void)!ipc_msg_get_int(final, "messages", &messages);
	(void)!ipc_msg_get_int(final, "limit", &limit);
	if (limit <= 0 && s->quota > 0)
		limit = (int64_t)s->quota;
	if (strcmp(s->cmd->name, "GETQUOTAROOT") == 0) {
		out_printf(s, "* QUOTAROOT ");
		out_string(s, s->cmd->args[0].str,
			   strlen(s->cmd->args[0].str));
		out_printf(s, " \"\"\r\n");
	}
	if (limit > 0)
		out_printf(s, "* QUOTA \"\" (STORAGE %lld %lld)\r\n",
			   (long long)(used + 1023) / 1024,
			   (long long)limit / 1024);
	else
		out_printf(s, "* QUOTA \"\" ()\r\n");
	cmd_done(s, false, "OK", "%s completed", s->cmd->name);
}

void cmd_getquota(struct session *s, struct imap_cmd *cmd)
{
	const char *root;
	size_t len;

	if (strcmp(cmd->name, "SETQUOTA") == 0) {
		cmd_done(s, false, "NO", "[NOPERM] Quotas are set by the "
			 "administrator");
		return;
	}
	if (cmd->nargs != 1 || imap_arg_astring(&cmd->args[0], &root,
						&len) < 0) {
		cmd_error(s, "BAD", "Expected one argument");
		return;
	}
	if (strcmp(cmd->name, "GETQUOTA") == 0 && len != 0) {
		cmd_done(s, false, "NO", "[NONEXISTENT] No such quota root");
		return;
	}
	store_call(s, store_req(s, "quota.get", NULL), true, quota_answer,
		   NULL, NULL);
}
