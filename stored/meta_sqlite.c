/*
 * meta_sqlite.c: the SQLite backend of meta.h.
 *
 * One database file (store_meta_file, default data/mbox/meta.db) in WAL
 * mode with synchronous=FULL, so a commit is on disk when meta_commit()
 * returns.  Every query is a prepared statement from the table below,
 * prepared once at open.  The schema_version table holds META_SCHEMA; a
 * database from a newer Tern is refused, an older one is upgraded in place
 * (schema_upgrade_sql, one transaction per step).
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <strings.h>
#include <time.h>

#include <sqlite3.h>

#include "compat.h"
#include "meta.h"
#include "str.h"
#include "xalloc.h"

#define META_SCHEMA 2
#define META_BUSY_MS 10000

static const char *const schema_sql[] = {
	"CREATE TABLE schema_version (version INTEGER NOT NULL)",
	"CREATE TABLE accounts (id INTEGER PRIMARY KEY, address TEXT NOT NULL,"
	" quota_used INTEGER NOT NULL DEFAULT 0,"
	" quota_messages INTEGER NOT NULL DEFAULT 0,"
	" quota_limit INTEGER NOT NULL DEFAULT 0,"
	" next_uidvalidity INTEGER NOT NULL, created INTEGER NOT NULL)",
	"CREATE TABLE folders (id INTEGER PRIMARY KEY,"
	" account_id INTEGER NOT NULL REFERENCES accounts(id),"
	" name TEXT NOT NULL, special_use TEXT NOT NULL DEFAULT '',"
	" subscribed INTEGER NOT NULL DEFAULT 0,"
	" uidvalidity INTEGER NOT NULL, uidnext INTEGER NOT NULL DEFAULT 1,"
	" highestmodseq INTEGER NOT NULL DEFAULT 1,"
	" UNIQUE (account_id, name))",
	"CREATE TABLE blobs (sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL,"
	" refcount INTEGER NOT NULL) WITHOUT ROWID",
	"CREATE INDEX blobs_unreferenced ON blobs (refcount)"
	" WHERE refcount = 0",
	"CREATE TABLE messages (folder_id INTEGER NOT NULL"
	" REFERENCES folders(id), uid INTEGER NOT NULL,"
	" modseq INTEGER NOT NULL, flags INTEGER NOT NULL,"
	" keywords TEXT NOT NULL DEFAULT '', internal_date INTEGER NOT NULL,"
	" size INTEGER NOT NULL, blob TEXT NOT NULL REFERENCES blobs(sha256),"
	" envelope TEXT, bodystructure TEXT, PRIMARY KEY (folder_id, uid))"
	" WITHOUT ROWID",
	"CREATE INDEX messages_modseq ON messages (folder_id, modseq)",
	"CREATE TABLE expunged (folder_id INTEGER NOT NULL,"
	" uid INTEGER NOT NULL, modseq INTEGER NOT NULL,"
	" PRIMARY KEY (folder_id, uid)) WITHOUT ROWID",
	"CREATE INDEX expunged_modseq ON expunged (folder_id, modseq)",
	"INSERT INTO schema_version (version) VALUES (1)",
};

/* Version 2: the delivery keys (meta_delivery_*), so that a delivery
 * repeated after a crash is recognised. */
static const char *const schema_upgrade_2[] = {
	"CREATE TABLE IF NOT EXISTS deliveries (key TEXT NOT NULL,"
	" account_id INTEGER NOT NULL, folder TEXT NOT NULL,"
	" uid INTEGER NOT NULL, uidvalidity INTEGER NOT NULL,"
	" created INTEGER NOT NULL, PRIMARY KEY (key, account_id, folder))"
	" WITHOUT ROWID",
	"CREATE INDEX IF NOT EXISTS deliveries_created ON deliveries (created)",
	"UPDATE schema_version SET version = 2",
};

enum stmt_id {
	S_BEGIN, S_COMMIT, S_ROLLBACK, S_SAVEPOINT, S_RELEASE, S_ROLLBACK_TO,
	S_ACCT_GET, S_ACCT_INSERT, S_ACCT_ADDRESS, S_ACCT_UIDV_SET,
	S_FOLDER_INSERT, S_FOLDER_LIST, S_FOLDER_GET, S_FOLDER_CHILDREN,
	S_FOLDER_SET_NAME, S_FOLDER_DELETE, S_FOLDER_SUBSCRIBE,
	S_FOLDER_BUMP, S_FOLDER_NEXT_UID, S_FOLDER_TAKE_UIDS, S_FOLDER_STATUS,
	S_MSG_INSERT, S_MSG_RANGE, S_MSG_FLAGS_PAGE, S_MSG_FLAGS_RANGE,
	S_MSG_SET_FLAGS,
	S_MSG_DELETED_RANGE, S_MSG_DELETE, S_MSG_OF_FOLDER,
	S_MSG_DELETE_FOLDER, S_MSG_COPY_RANGE,
	S_EXP_INSERT, S_EXP_DELETE_FOLDER, S_EXP_SINCE,
	S_BLOB_REGISTER, S_BLOB_REF, S_BLOB_GET, S_BLOB_UNREF, S_BLOB_FORGET,
	S_BLOB_ALL,
	S_QUOTA_GET, S_QUOTA_ADD, S_QUOTA_SET,
	S_CHECK_BLOBS, S_BLOB_SET_REFS, S_BLOB_USERS, S_CHECK_USAGE,
	S_USAGE_SET, S_ACCT_FIND,
	S_DELIV_GET, S_DELIV_ADD, S_DELIV_PRUNE,
	S_COUNT
};

static const char *const stmt_sql[S_COUNT] = {
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
	[S_SAVEPOINT] = "SAVEPOINT req",
	[S_RELEASE] = "RELEASE req",
	[S_ROLLBACK_TO] = "ROLLBACK TO req",
	[S_ACCT_GET] = "SELECT address, next_uidvalidity FROM accounts"
		       " WHERE id = ?1",
	[S_ACCT_INSERT] = "INSERT INTO accounts (id, address,"
			  " next_uidvalidity, created) VALUES (?1, ?2, ?3, ?4)",
	[S_ACCT_ADDRESS] = "UPDATE accounts SET address = ?2 WHERE id = ?1",
	[S_ACCT_UIDV_SET] = "UPDATE accounts SET next_uidvalidity = ?2"
			    " WHERE id = ?1",
	[S_FOLDER_INSERT] = "INSERT INTO folders (account_id, name,"
			    " special_use, subscribed, uidvalidity)"
			    " VALUES (?1, ?2, ?3, ?4, ?5)",
	[S_FOLDER_LIST] = "SELECT name, special_use, subscribed, uidvalidity,"
			  " uidnext, highestmodseq, id FROM folders"
			  " WHERE account_id = ?1 ORDER BY name",
	[S_FOLDER_GET] = "SELECT name, special_use, subscribed, uidvalidity,"
			 " uidnext, highestmodseq, id FROM folders"
			 " WHERE account_id = ?1 AND name = ?2",
	[S_FOLDER_CHILDREN] = "SELECT id, name FROM folders"
			      " WHERE account_id = ?1"
			      " AND substr(name, 1, ?3) = ?2",
	[S_FOLDER_SET_NAME] = "UPDATE folders SET name = ?2 WHERE id = ?1",
	[S_FOLDER_DELETE] = "DELETE FROM folders WHERE id = ?1",
	[S_FOLDER_SUBSCRIBE] = "UPDATE folders SET subscribed = ?2"
			       " WHERE id = ?1",
	[S_FOLDER_BUMP] = "UPDATE folders SET highestmodseq ="
			  " highestmodseq + 1 WHERE id = ?1",
	[S_FOLDER_NEXT_UID] = "UPDATE folders SET uidnext = uidnext + 1,"
			      " highestmodseq = highestmodseq + 1"
			      " WHERE id = ?1",
	[S_FOLDER_TAKE_UIDS] = "UPDATE folders SET uidnext = uidnext + ?2,"
			       " highestmodseq = highestmodseq + 1"
			       " WHERE id = ?1",
	[S_FOLDER_STATUS] = "SELECT count(*), coalesce(sum(size), 0),"
			    " coalesce(sum((flags & 1) = 0), 0),"
			    " coalesce(sum((flags & 8) != 0), 0)"
			    " FROM messages WHERE folder_id = ?1",
	[S_MSG_INSERT] = "INSERT INTO messages (folder_id, uid, modseq, flags,"
			 " keywords, internal_date, size, blob, envelope,"
			 " bodystructure)"
			 " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
	[S_MSG_RANGE] = "SELECT uid, modseq, flags, keywords, internal_date,"
			" size, blob, envelope, bodystructure FROM messages"
			" WHERE folder_id = ?1 AND uid BETWEEN ?2 AND ?3"
			" ORDER BY uid LIMIT ?4",
	[S_MSG_FLAGS_PAGE] = "SELECT uid, modseq, flags, keywords FROM messages"
			     " WHERE folder_id = ?1 AND uid BETWEEN ?2 AND ?3"
			     " ORDER BY uid LIMIT ?4",
	[S_MSG_FLAGS_RANGE] = "SELECT uid, modseq, flags, keywords"
			      " FROM messages WHERE folder_id = ?1"
			      " AND uid BETWEEN ?2 AND ?3 ORDER BY uid",
	[S_MSG_SET_FLAGS] = "UPDATE messages SET flags = ?3, keywords = ?4,"
			    " modseq = ?5 WHERE folder_id = ?1 AND uid = ?2",
	[S_MSG_DELETED_RANGE] = "SELECT uid, size, blob FROM messages"
				" WHERE folder_id = ?1"
				" AND uid BETWEEN ?2 AND ?3"
				" AND (flags & 8) != 0 ORDER BY uid",
	[S_MSG_DELETE] = "DELETE FROM messages WHERE folder_id = ?1"
			 " AND uid = ?2",
	[S_MSG_OF_FOLDER] = "SELECT uid, size, blob FROM messages"
			    " WHERE folder_id = ?1",
	[S_MSG_DELETE_FOLDER] = "DELETE FROM messages WHERE folder_id = ?1",
	[S_MSG_COPY_RANGE] = "SELECT uid, flags, keywords, internal_date, size,"
			     " blob, envelope, bodystructure FROM messages"
			     " WHERE folder_id = ?1 AND uid BETWEEN ?2 AND ?3"
			     " ORDER BY uid",
	[S_EXP_INSERT] = "INSERT OR REPLACE INTO expunged (folder_id, uid,"
			 " modseq) VALUES (?1, ?2, ?3)",
	[S_EXP_DELETE_FOLDER] = "DELETE FROM expunged WHERE folder_id = ?1",
	[S_EXP_SINCE] = "SELECT uid FROM expunged WHERE folder_id = ?1"
			" AND modseq > ?2 ORDER BY uid",
	[S_BLOB_REGISTER] = "INSERT OR IGNORE INTO blobs (sha256, size,"
			    " refcount) VALUES (?1, ?2, 0)",
	[S_BLOB_REF] = "UPDATE blobs SET refcount = refcount + ?2"
		       " WHERE sha256 = ?1",
	[S_BLOB_GET] = "SELECT refcount FROM blobs WHERE sha256 = ?1",
	[S_BLOB_UNREF] = "SELECT sha256, refcount FROM blobs"
			 " WHERE refcount = 0",
	[S_BLOB_FORGET] = "DELETE FROM blobs WHERE refcount = 0",
	[S_BLOB_ALL] = "SELECT sha256, refcount FROM blobs ORDER BY sha256",
	[S_QUOTA_GET] = "SELECT quota_used, quota_messages, quota_limit"
			" FROM accounts WHERE id = ?1",
	[S_QUOTA_ADD] = "UPDATE accounts SET quota_used = quota_used + ?2,"
			" quota_messages = quota_messages + ?3 WHERE id = ?1",
	[S_QUOTA_SET] = "UPDATE accounts SET quota_limit = ?2 WHERE id = ?1",
	[S_CHECK_BLOBS] = "SELECT b.sha256, b.refcount,"
			  " (SELECT count(*) FROM messages m"
			  "  WHERE m.blob = b.sha256) FROM blobs b"
			  " UNION ALL SELECT m.blob, -1, count(*)"
			  " FROM messages m WHERE m.blob NOT IN"
			  " (SELECT sha256 FROM blobs) GROUP BY m.blob",
	[S_BLOB_SET_REFS] = "INSERT INTO blobs (sha256, size, refcount)"
			    " VALUES (?1, ?3, ?2) ON CONFLICT (sha256)"
			    " DO UPDATE SET refcount = ?2",
	[S_BLOB_USERS] = "SELECT a.id, a.address, f.name, m.uid, m.size"
			 " FROM messages m JOIN folders f ON f.id = m.folder_id"
			 " JOIN accounts a ON a.id = f.account_id"
			 " WHERE m.blob = ?1 ORDER BY a.id, f.name, m.uid",
	[S_CHECK_USAGE] = "SELECT a.id, a.address, a.quota_used,"
			  " a.quota_messages,"
			  " (SELECT coalesce(sum(m.size), 0) FROM messages m"
			  "  JOIN folders f ON f.id = m.folder_id"
			  "  WHERE f.account_id = a.id),"
			  " (SELECT count(*) FROM messages m"
			  "  JOIN folders f ON f.id = m.folder_id"
			  "  WHERE f.account_id = a.id)"
			  " FROM accounts a WHERE ?1 = 0 OR a.id = ?1"
			  " ORDER BY a.id",
	[S_USAGE_SET] = "UPDATE accounts SET quota_used = ?2,"
			" quota_messages = ?3 WHERE id = ?1",
	[S_ACCT_FIND] = "SELECT id FROM accounts WHERE address = ?1",
	[S_DELIV_GET] = "SELECT uid, uidvalidity FROM deliveries"
			" WHERE key = ?1 AND account_id = ?2 AND folder = ?3",
	[S_DELIV_ADD] = "INSERT INTO deliveries (key, account_id, folder,"
			" uid, uidvalidity, created)"
			" VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[S_DELIV_PRUNE] = "DELETE FROM deliveries WHERE created < ?1",
};

static const struct {
	const char *name, *special_use;
} default_folders[] = {
	{ "INBOX", "" },
	{ "Sent", "\\Sent" },
	{ "Drafts", "\\Drafts" },
	{ "Trash", "\\Trash" },
	{ "Junk", "\\Junk" },
	{ "Archive", "\\Archive" },
};

struct meta {
	sqlite3 *db;
	sqlite3_stmt *st[S_COUNT];
};

/* A folder row as read by folder_find(). */
struct folder_row {
	int64_t id;
	uint32_t uidvalidity, uidnext;
	uint64_t highestmodseq;
};

/* ---- errors and statements ---- */

/* Sets the error text and returns META_EINTERNAL (str_setf returns -1). */
#define meta_fail str_setf
_Static_assert(META_EINTERNAL == -1, "meta_fail returns str_setf's -1");

static int db_fail(struct meta *m, struct str *error)
{
	return meta_fail(error, "sqlite: %s", sqlite3_errmsg(m->db));
}

/* The statement, reset and with no bindings. */
static sqlite3_stmt *st(struct meta *m, enum stmt_id id)
{
	sqlite3_reset(m->st[id]);
	sqlite3_clear_bindings(m->st[id]);
	return m->st[id];
}

/* Runs a statement that returns no rows. */
static int st_exec(struct meta *m, sqlite3_stmt *s, struct str *error)
{
	int r = sqlite3_step(s);

	sqlite3_reset(s);
	if (r != SQLITE_DONE && r != SQLITE_ROW)
		return db_fail(m, error);
	return META_OK;
}

static void bind_text(sqlite3_stmt *s, int i, const char *text)
{
	if (text == NULL)
		sqlite3_bind_null(s, i);
	else
		sqlite3_bind_text(s, i, text, -1, SQLITE_STATIC);
}

static const char *col_text(sqlite3_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s, i);

	return t != NULL ? (const char *)t : "";
}

static const char *col_text_null(sqlite3_stmt *s, int i)
{
	if (sqlite3_column_type(s, i) == SQLITE_NULL)
		return NULL;
	return col_text(s, i);
}

/* ---- open and transactions ---- */

static int schema_version(struct meta *m, int64_t *version_r)
{
	sqlite3_stmt *s;
	int r;

	*version_r = 0;
	r = sqlite3_prepare_v2(m->db, "SELECT version FROM schema_version",
			       -1, &s, NULL);
	if (r != SQLITE_OK)
		return 0;	/* no table: a new database */
	if (sqlite3_step(s) == SQLITE_ROW)
		*version_r = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return 0;
}

static int schema_create(struct meta *m, struct str *error)
{
	char *msg = NULL;

	if (sqlite3_exec(m->db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != 0)
		goto fail;
	for (size_t i = 0; i < TERN_NELEM(schema_sql); i++)
		if (sqlite3_exec(m->db, schema_sql[i], NULL, NULL, &msg) != 0)
			goto fail;
	if (sqlite3_exec(m->db, "COMMIT", NULL, NULL, &msg) != 0)
		goto fail;
	return META_OK;
fail:
	meta_fail(error, "sqlite: creating the schema: %s",
		  msg != NULL ? msg : "?");
	sqlite3_free(msg);
	(void)sqlite3_exec(m->db, "ROLLBACK", NULL, NULL, NULL);
	return META_EINTERNAL;
}

/* Brings a database of version `from` up to META_SCHEMA. */
static int schema_upgrade(struct meta *m, int64_t from, struct str *error)
{
	char *msg = NULL;

	if (from >= 2)
		return META_OK;
	if (sqlite3_exec(m->db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != 0)
		goto fail;
	for (size_t i = 0; i < TERN_NELEM(schema_upgrade_2); i++)
		if (sqlite3_exec(m->db, schema_upgrade_2[i], NULL, NULL,
				 &msg) != 0)
			goto fail;
	if (sqlite3_exec(m->db, "COMMIT", NULL, NULL, &msg) != 0)
		goto fail;
	return META_OK;
fail:
	meta_fail(error, "sqlite: upgrading the schema to version 2: %s",
		  msg != NULL ? msg : "?");
	sqlite3_free(msg);
	(void)sqlite3_exec(m->db, "ROLLBACK", NULL, NULL, NULL);
	return META_EINTERNAL;
}

static int meta_setup(struct meta *m, const char *path, struct str *error)
{
	static const char *const pragmas[] = {
		"PRAGMA journal_mode = WAL",
		"PRAGMA synchronous = FULL",
		"PRAGMA foreign_keys = ON",
	};
	int64_t version;

	if (sqlite3_open_v2(path, &m->db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	    SQLITE_OK)
		return meta_fail(error, "sqlite: open %s: %s", path,
				 m->db != NULL ? sqlite3_errmsg(m->db) :
						 "out of memory");
	sqlite3_busy_timeout(m->db, META_BUSY_MS);
	for (size_t i = 0; i < TERN_NELEM(pragmas); i++)
		if (sqlite3_exec(m->db, pragmas[i], NULL, NULL, NULL) != 0)
			return db_fail(m, error);
	(void)schema_version(m, &version);
	if (version == 0) {
		if (schema_create(m, error) < 0)
			return META_EINTERNAL;
		version = 1;
	}
	if (version > META_SCHEMA)
		return meta_fail(error, "%s: schema version %lld is newer than "
				 "this tern-stored (%d)", path,
				 (long long)version, META_SCHEMA);
	if (schema_upgrade(m, version, error) < 0)
		return META_EINTERNAL;
	for (int i = 0; i < S_COUNT; i++)
		if (sqlite3_prepare_v3(m->db, stmt_sql[i], -1,
				       SQLITE_PREPARE_PERSISTENT, &m->st[i],
				       NULL) != SQLITE_OK)
			return meta_fail(error, "sqlite: preparing '%s': %s",
					 stmt_sql[i], sqlite3_errmsg(m->db));
	return META_OK;
}

int meta_open(const char *path, struct meta **m_r, struct str *error)
{
	struct meta *m = xcalloc(1, sizeof(*m));

	if (meta_setup(m, path, error) < 0) {
		meta_close(&m);
		return META_EINTERNAL;
	}
	*m_r = m;
	return META_OK;
}

int meta_open_reader(const char *path, struct meta **m_r, struct str *error)
{
	struct meta *m = xcalloc(1, sizeof(*m));

	/* A second connection for reads: WAL lets it read committed data
	 * while the writer writes; query_only makes a stray write an error. */
	if (sqlite3_open_v2(path, &m->db, SQLITE_OPEN_READWRITE, NULL) !=
	    SQLITE_OK) {
		(void)meta_fail(error, "sqlite: open %s: %s", path,
				m->db != NULL ? sqlite3_errmsg(m->db) :
						"out of memory");
		meta_close(&m);
		return META_EINTERNAL;
	}
	sqlite3_busy_timeout(m->db, META_BUSY_MS);
	if (sqlite3_exec(m->db, "PRAGMA query_only = 1", NULL, NULL, NULL) !=
	    SQLITE_OK) {
		(void)db_fail(m, error);
		meta_close(&m);
		return META_EINTERNAL;
	}
	for (int i = 0; i < S_COUNT; i++)
		if (sqlite3_prepare_v3(m->db, stmt_sql[i], -1,
				       SQLITE_PREPARE_PERSISTENT, &m->st[i],
				       NULL) != SQLITE_OK) {
			(void)meta_fail(error, "sqlite: preparing '%s': %s",
					stmt_sql[i], sqlite3_errmsg(m->db));
			meta_close(&m);
			return META_EINTERNAL;
		}
	*m_r = m;
	return META_OK;
}

void meta_close(struct meta **mp)
{
	struct meta *m = *mp;

	if (m == NULL)
		return;
	for (int i = 0; i < S_COUNT; i++)
		sqlite3_finalize(m->st[i]);
	sqlite3_close(m->db);
	free(m);
	*mp = NULL;
}

int meta_begin(struct meta *m, struct str *error)
{
	return st_exec(m, st(m, S_BEGIN), error);
}

int meta_begin_read(struct meta *m, struct str *error)
{
	if (sqlite3_exec(m->db, "BEGIN DEFERRED", NULL, NULL, NULL) !=
	    SQLITE_OK)
		return db_fail(m, error);
	return META_OK;
}

int meta_commit(struct meta *m, struct str *error)
{
	return st_exec(m, st(m, S_COMMIT), error);
}

void meta_rollback(struct meta *m)
{
	if (!sqlite3_get_autocommit(m->db))
		(void)sqlite3_step(st(m, S_ROLLBACK));
	sqlite3_reset(m->st[S_ROLLBACK]);
}

int meta_savepoint(struct meta *m, struct str *error)
{
	return st_exec(m, st(m, S_SAVEPOINT), error);
}

int meta_release(struct meta *m, struct str *error)
{
	return st_exec(m, st(m, S_RELEASE), error);
}

void meta_rollback_to(struct meta *m)
{
	(void)sqlite3_step(st(m, S_ROLLBACK_TO));
	sqlite3_reset(m->st[S_ROLLBACK_TO]);
	(void)sqlite3_step(st(m, S_RELEASE));
	sqlite3_reset(m->st[S_RELEASE]);
}

/* ---- names ---- */

/* Length of the UTF-8 sequence at p (n bytes left), 0 when invalid. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	size_t len;
	uint32_t cp;

	if (p[0] < 0x80)
		return 1;
	if ((p[0] & 0xe0) == 0xc0) {
		len = 2;
		cp = p[0] & 0x1f;
	} else if ((p[0] & 0xf0) == 0xe0) {
		len = 3;
		cp = p[0] & 0x0f;
	} else if ((p[0] & 0xf8) == 0xf0) {
		len = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

int meta_folder_name_check(const char *name, struct str *out)
{
	const unsigned char *p = (const unsigned char *)name;
	size_t n = strlen(name), i = 0;

	if (n == 0 || n > META_FOLDER_NAME_MAX || name[0] == '/' ||
	    name[n - 1] == '/' || strstr(name, "//") != NULL)
		return -1;
	while (i < n) {
		size_t len = utf8_len(p + i, n - i);

		if (len == 0 || p[i] < 0x20 || p[i] == 0x7f || p[i] == '*' ||
		    p[i] == '%')
			return -1;
		i += len;
	}
	str_clear(out);
	if (strncasecmp(name, "INBOX", 5) == 0 &&
	    (name[5] == '\0' || name[5] == '/'))
		return str_append_c(out, "INBOX") < 0 ||
		       str_append_c(out, name + 5) < 0 ? -1 : 0;
	return str_append_c(out, name);
}

static int keyword_valid(const char *k, size_t n)
{
	if (n == 0 || n > META_KEYWORD_MAX || k[0] == '\\')
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)k[i];

		if (c <= 0x20 || c >= 0x7f || strchr("(){%*\"\\]", c) != NULL)
			return 0;
	}
	return 1;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Splits a space-separated list into a sorted, unique array (strings
 * xstrdup'd).  -1 when a word is invalid or there are too many. */
static int keywords_split(const char *text, char ***words_r, size_t *n_r)
{
	char **w = NULL;
	size_t n = 0, cap = 0;
	const char *p = text;

	while (*p != '\0') {
		size_t len;

		while (*p == ' ')
			p++;
		len = strcspn(p, " ");
		if (len == 0)
			break;
		if (!keyword_valid(p, len) || n >= 4 * META_KEYWORDS_MAX)
			goto fail;
		if (n == cap) {
			cap = cap == 0 ? 8 : cap * 2;
			w = xrealloc(w, cap * sizeof(*w));
		}
		w[n++] = xstrndup(p, len);
		p += len;
	}
	if (n > 0)
		qsort(w, n, sizeof(*w), cmp_str);
	*words_r = w;
	*n_r = n;
	return 0;
fail:
	while (n > 0)
		free(w[--n]);
	free(w);
	return -1;
}

static void words_free(char **w, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(w[i]);
	free(w);
}

static int words_join(char **w, size_t n, struct str *out)
{
	size_t kept = 0;

	str_clear(out);
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && strcmp(w[i], w[i - 1]) == 0)
			continue;
		if (++kept > META_KEYWORDS_MAX)
			return -1;
		if ((str_len(out) > 0 && str_append_byte(out, ' ') < 0) ||
		    str_append_c(out, w[i]) < 0)
			return -1;
	}
	return 0;
}

int meta_keywords_normalise(const char *text, struct str *out)
{
	char **w;
	size_t n;
	int r;

	if (keywords_split(text, &w, &n) < 0)
		return -1;
	r = words_join(w, n, out);
	words_free(w, n);
	return r;
}

int meta_uidset_parse(const char *text, struct meta_uidset *set_r)
{
	const char *p = text;

	set_r->n = 0;
	for (;;) {
		unsigned long long v[2];
		int k = 0;

		do {
			char *end;

			if (k == 1)
				p++;
			if (*p == '*') {
				v[k] = UINT32_MAX;
				p++;
			} else {
				if (*p < '1' || *p > '9')
					return -1;
				errno = 0;
				v[k] = strtoull(p, &end, 10);
				if (errno != 0 || v[k] > UINT32_MAX - 1)
					return -1;
				p = end;
			}
			k++;
		} while (k == 1 && *p == ':');
		if (k == 1)
			v[1] = v[0];
		if (set_r->n == META_UIDSET_MAX)
			return -1;
		set_r->r[set_r->n].lo = (uint32_t)(v[0] < v[1] ? v[0] : v[1]);
		set_r->r[set_r->n].hi = (uint32_t)(v[0] < v[1] ? v[1] : v[0]);
		set_r->n++;
		if (*p == '\0')
			return 0;
		if (*p++ != ',')
			return -1;
	}
}

/* ---- accounts ---- */

static int folder_insert(struct meta *m, int64_t account, const char *name,
			 const char *special_use, int subscribed,
			 struct str *error)
{
	sqlite3_stmt *s = st(m, S_ACCT_GET);
	int64_t uidv;
	int r;

	sqlite3_bind_int64(s, 1, account);
	r = sqlite3_step(s);
	if (r != SQLITE_ROW) {
		sqlite3_reset(s);
		return r == SQLITE_DONE ?
			       meta_fail(error, "account %lld has no row",
					 (long long)account) :
			       db_fail(m, error);
	}
	uidv = sqlite3_column_int64(s, 1);
	sqlite3_reset(s);
	if (uidv <= 0 || uidv >= UINT32_MAX)
		uidv = 1;
	s = st(m, S_ACCT_UIDV_SET);
	sqlite3_bind_int64(s, 1, account);
	sqlite3_bind_int64(s, 2, uidv + 1);
	if (st_exec(m, s, error) < 0)
		return META_EINTERNAL;
	s = st(m, S_FOLDER_INSERT);
	sqlite3_bind_int64(s, 1, account);
	bind_text(s, 2, name);
	bind_text(s, 3, special_use);
	sqlite3_bind_int(s, 4, subscribed);
	sqlite3_bind_int64(s, 5, uidv);
	r = sqlite3_step(s);
	sqlite3_reset(s);
	if (r == SQLITE_CONSTRAINT)
		return META_EEXISTS;
	return r == SQLITE_DONE ? META_OK : db_fail(m, error);
}

int meta_account_known(struct meta *m, const struct meta_account *a,
		       struct str *error)
{
	sqlite3_stmt *s = st(m, S_ACCT_GET);
	int r, same = 0;

	sqlite3_bind_int64(s, 1, a->id);
	r = sqlite3_step(s);
	if (r == SQLITE_ROW)
		same = strcmp(col_text(s, 0), a->address) == 0;
	sqlite3_reset(s);
	if (r != SQLITE_ROW && r != SQLITE_DONE)
		return db_fail(m, error);
	return same;
}

int meta_account_use(struct meta *m, const struct meta_account *a,
		     struct str *error)
{
	sqlite3_stmt *s = st(m, S_ACCT_GET);
	int r, same;

	sqlite3_bind_int64(s, 1, a->id);
	r = sqlite3_step(s);
	if (r == SQLITE_ROW) {
		same = strcmp(col_text(s, 0), a->address) == 0;
		sqlite3_reset(s);
		if (same)
			return META_OK;
		s = st(m, S_ACCT_ADDRESS);
		sqlite3_bind_int64(s, 1, a->id);
		bind_text(s, 2, a->address);
		return st_exec(m, s, error);
	}
	sqlite3_reset(s);
	if (r != SQLITE_DONE)
		return db_fail(m, error);
	s = st(m, S_ACCT_INSERT);
	sqlite3_bind_int64(s, 1, a->id);
	bind_text(s, 2, a->address);
	sqlite3_bind_int64(s, 3, (int64_t)time(NULL) & 0x7fffffff);
	sqlite3_bind_int64(s, 4, (int64_t)time(NULL));
	if (st_exec(m, s, error) < 0)
		return META_EINTERNAL;
	for (size_t i = 0; i < TERN_NELEM(default_folders); i++)
		if (folder_insert(m, a->id, default_folders[i].name,
				  default_folders[i].special_use, 1,
				  error) < 0)
			return META_EINTERNAL;
	return META_OK;
}

/* ---- folders ---- */

static void folder_from_row(sqlite3_stmt *s, struct meta_folder *f)
{
	f->name = col_text(s, 0);
	f->special_use = col_text(s, 1);
	f->subscribed = sqlite3_column_int(s, 2);
	f->uidvalidity = (uint32_t)sqlite3_column_int64(s, 3);
	f->uidnext = (uint32_t)sqlite3_column_int64(s, 4);
	f->highestmodseq = (uint64_t)sqlite3_column_int64(s, 5);
}

static int folder_find(struct meta *m, int64_t account, const char *name,
		       struct folder_row *row_r, struct str *error)
{
	sqlite3_stmt *s = st(m, S_FOLDER_GET);
	struct meta_folder f;
	int r;

	sqlite3_bind_int64(s, 1, account);
	bind_text(s, 2, name);
	r = sqlite3_step(s);
	if (r == SQLITE_ROW) {
		folder_from_row(s, &f);
		row_r->id = sqlite3_column_int64(s, 6);
		row_r->uidvalidity = f.uidvalidity;
		row_r->uidnext = f.uidnext;
		row_r->highestmodseq = f.highestmodseq;
	}
	sqlite3_reset(s);
	if (r == SQLITE_DONE)
		return META_ENOTFOUND;
	return r == SQLITE_ROW ? META_OK : db_fail(m, error);
}

static int folder_list_stmt(struct meta *m, sqlite3_stmt *s,
			    meta_folder_cb *cb, void *ctx, int *found_r,
			    struct str *error)
{
	struct meta_folder f;
	int r;

	*found_r = 0;
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		folder_from_row(s, &f);
		*found_r = 1;
		if (cb(&f, ctx) < 0) {
			sqlite3_reset(s);
			return meta_fail(error, "stopped by the caller");
		}
	}
	sqlite3_reset(s);
	return r == SQLITE_DONE ? META_OK : db_fail(m, error);
}

int meta_folder_list(struct meta *m, int64_t account, meta_folder_cb *cb,
		     void *ctx, struct str *error)
{
	sqlite3_stmt *s = st(m, S_FOLDER_LIST);
	int found;

	sqlite3_bind_int64(s, 1, account);
	return folder_list_stmt(m, s, cb, ctx, &found, error);
}

int meta_folder_get(struct meta *m, int64_t account, const char *name,
		    meta_folder_cb *cb, void *ctx, struct str *error)
{
	sqlite3_stmt *s = st(m, S_FOLDER_GET);
	int found, r;

	sqlite3_bind_int64(s, 1, account);
	bind_text(s, 2, name);
	r = folder_list_stmt(m, s, cb, ctx, &found, error);
	return r < 0 ? r : found ? META_OK : META_ENOTFOUND;
}

static int special_use_valid(const char *s)
{
	static const char *const known[] = {
		"", "\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive",
		"\\All", "\\Flagged",
	};

	for (size_t i = 0; i < TERN_NELEM(known); i++)
		if (strcmp(s, known[i]) == 0)
			return 1;
	return 0;
}

int meta_folder_create(struct meta *m, int64_t account, const char *name,
		       const char *special_use, struct str *error)
{
	if (!special_use_valid(special_use))
		return META_EINVALID;
	return folder_insert(m, account, name, special_use, 0, error);
}

/* Calls fn for the folder and every child (name/...). */
struct child {
	int64_t id;
	char *name;
};

static int folder_children(struct meta *m, int64_t account, const char *name,
			   struct child **c_r, size_t *n_r, struct str *error)
{
	struct str *prefix = str_new(strlen(name) + 2,
				     META_FOLDER_NAME_MAX + 2);
	sqlite3_stmt *s = st(m, S_FOLDER_CHILDREN);
	struct child *c = NULL;
	size_t n = 0;
	int r;

	if (str_printf(prefix, "%s/", name) < 0)
		abort();
	sqlite3_bind_int64(s, 1, account);
	sqlite3_bind_text(s, 2, str_c(prefix), -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 3, (int64_t)str_len(prefix));
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		c = xrealloc(c, (n + 1) * sizeof(*c));
		c[n].id = sqlite3_column_int64(s, 0);
		c[n].name = xstrdup(col_text(s, 1));
		n++;
	}
	sqlite3_reset(s);
	str_free(&prefix);
	*c_r = c;
	*n_r = n;
	return r == SQLITE_DONE ? META_OK : db_fail(m, error);
}

static void children_free(struct child *c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(c[i].name);
	free(c);
}

static int folder_set_name(struct meta *m, int64_t id, const char *name,
			   struct str *error)
{
	sqlite3_stmt *s = st(m, S_FOLDER_SET_NAME);
	int r;

	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_text(s, 2, name, -1, SQLITE_TRANSIENT);
	r = sqlite3_step(s);
	sqlite3_reset(s);
	if (r == SQLITE_CONSTRAINT)
		return META_EEXISTS;
	return r == SQLITE_DONE ? META_OK : db_fail(m, error);
}

int meta_folder_rename(struct meta *m, int64_t account, const char *from,
		       const char *to, struct str *error)
{
	size_t from_len = strlen(from), n = 0;
	struct str *name = NULL;
	struct folder_row row;
	struct child *c = NULL;
	int r;

	if (strcmp(from, "INBOX") == 0 || strncmp(to, "INBOX", 5) == 0 ||
	    (strncmp(to, from, from_len) == 0 && to[from_len] == '/'))
		return META_EINVALID;
	r = folder_find(m, account, from, &row, error);
	if (r < 0)
		return r;
	r = folder_children(m, account, from, &c, &n, error);
	if (r < 0)
		goto done;
	r = folder_set_name(m, row.id, to, error);
	name = str_new(256, 2 * META_FOLDER_NAME_MAX + 2);
	for (size_t i = 0; r == META_OK && i < n; i++) {
		str_clear(name);
		if (str_printf(name, "%s%s", to, c[i].name + from_len) < 0 ||
		    str_len(name) > META_FOLDER_NAME_MAX) {
			r = META_EINVALID;
			break;
		}
		r = folder_set_name(m, c[i].id, str_c(name), error);
	}
done:
	str_free(&name);
	children_free(c, n);
	return r;
}

/* Drops one message's blob reference and quota charge. */
static int message_release(struct meta *m, int64_t account, const char *blob,
			   int64_t size, struct str *error)
{
	sqlite3_stmt *s = st(m, S_BLOB_REF);

	sqlite3_bind_text(s, 1, blob, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 2, -1);
	if (st_exec(m, s, error) < 0)
		return META_EINTERNAL;
	s = st(m, S_QUOTA_ADD);
	sqlite3_bind_int64(s, 1, account);
	sqlite3_bind_int64(s, 2, -size);
	sqlite3_bind_int64(s, 3, -1);
	return st_exec(m, s, error);
}

/* uid, size and blob of messages, collected before changing them. */
struct msg_ref {
	uint32_t uid;
	int64_t size;
	char blob[65];
};

static int collect_refs(struct meta *m, sqlite3_stmt *s, struct msg_ref **r_r,
			size_t *n_r, struct str *error)
{
	struct msg_ref *v = *r_r;
	size_t n = *n_r;
	int r;

	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		v = xrealloc(v, (n + 1) * sizeof(*v));
		v[n].uid = (uint32_t)sqlite3_column_int64(s, 0);
		v[n].size = sqlite3_column_int64(s, 1);
		str_lcpy(v[n].blob, col_text(s, 2), sizeof(v[n].blob));
		n++;
	}
	sqlite3_reset(s);
	*r_r = v;
	*n_r = n;
	return r == SQLITE_DONE ? META_OK : db_fail(m, error);
}

int meta_folder_delete(struct meta *m, int64_t account, const char *name,
		       struct str *error)
{
	struct msg_ref *refs = NULL;
	struct folder_row row;
	struct child *c;
	size_t n = 0, nc;
	sqlite3_stmt *s;
	int r;

	if (strcmp(name, "INBOX") == 0)
		return META_EINVALID;
	r = folder_find(m, account, name, &row, error);
	if (r < 0)
		return r;
	r = folder_children(m, account, name, &c, &nc, error);
	children_free(c, nc);
	if (r < 0)
		return r;
	if (nc > 0)
		return META_ENOTEMPTY;
	s = st(m, S_MSG_OF_FOLDER);
	sqlite3_bind_int64(s, 1, row.id);
	r = collect_refs(m, s, &refs, &n, error);
	for (size_t i = 0; r == META_OK && i < n; i++)
		r = message_release(m, account, refs[i].blob, refs[i].size,
				    error);
	free(refs);
	if (r < 0)
		return r;
	s = st(m, S_MSG_DELETE_FOLDER);
	sqlite3_bind_int64(s, 1, row.id);
	if (st_exec(m, s, error) < 0)
		return META_EINTERNAL;
	s = st(m, S_EXP_DELETE_FOLDER);
	sqlite3_bind_int64(s, 1, row.id);
	if (st_exec(m, s, error) < 0)
		return META_EINTERNAL;
	s = st(m, S_FOLDER_DELETE);
	sqlite3_bind_int64(s, 1, row.id);
	return st_exec(m, s, error);
}

int meta_folder_subscribe(struct meta *m, int64_t account, const char *name,
			  int subscribed, struct str *error)
{
	struct folder_row row;
	sqlite3_stmt *s;
	int r;

	r = folder_find(m, account, name, &row, error);
	if (r < 0)
		return r;
	s = st(m, S_FOLDER_SUBSCRIBE);
	sqlite3_bind_int64(s, 1, row.id);
	sqlite3_bind_int(s, 2, subscribed != 0);
	return st_exec(m, s, error);
}

int meta_folder_status(struct meta *m, int64_t account, const char *name,
		       bool counts, struct meta_status_info *st_r,
		       struct str *error)
{
	struct folder_row row;
	sqlite3_stmt *s;
	int r;

	r = folder_find(m, account, name, &row, error);
	if (r < 0)
		return r;
	memset(st_r, 0, sizeof(*st_r));
	st_r->uidvalidity = row.uidvalidity;
	st_r->uidnext = row.uidnext;
	st_r->highestmodseq = row.highestmodseq;
	if (!counts)
		return META_OK;
	s = st(m, S_FOLDER_STATUS);
	sqlite3_bind_int64(s, 1, row.id);
	r = sqlite3_step(s);
	if (r == SQLITE_ROW) {
		st_r->exists = (uint32_t)sqlite3_column_int64(s, 0);
		st_r->size = (uint64_t)sqlite3_column_int64(s, 1);
		st_r->unseen = (uint32_t)sqlite3_column_int64(s, 2);
		st_r->deleted = (uint32_t)sqlite3_column_int64(s, 3);
	}
	sqlite3_reset(s);
	if (r != SQLITE_ROW)
		return db_fail(m, error);
	return META_OK;
}

/* ---- messages ---- */

int meta_blob_register(struct meta *m, const char *hex, uint64_t size,
		       struct str *error)
{
	sqlite3_stmt *s = st(m, S_BLOB_REGISTER);

	bind_text(s, 1, hex);
	sqlite3_bind_int64(s, 2, (int64_t)size);
	return st_exec(m, s, error);
}

int meta_quota_get(struct meta *m, int64_t account, struct meta_quota *q_r,
		   struct str *error)
{
	sqlite3_stmt *s = st(m, S_QUOTA_GET);
	int r;

	sqlite3_bind_int64(s, 1, account);
	r = sqlite3_step(s);
	if (r == SQLITE_ROW) {
		q_r->used = (uint64_t)sqlite3_column_int64(s, 0);
		q_r->messages = (uint64_t)sqlite3_column_int64(s, 1);
		q_r->limit = (uint64_t)sqlite3_column_int64(s, 2);
	}
	sqlite3_reset(s);
	if (r == SQLITE_DONE)
		return meta_fail(error, "account %lld has no row",
				 (long long)account);
	return r == SQLITE_ROW ? META_OK : db_fail(m, error);
}

int meta_quota_set(struct meta *m, int64_t account, uint64_t limit,
		   struct str *error)
{
	sqlite3_stmt *s = st(m, S_QUOTA_SET);

	if (limit > INT64_MAX)
		return META_EINVALID;
	sqlite3_bind_int64(s, 1, account);
	sqlite3_bind_int64(s, 2, (int64_t)limit);
	return st_exec(m, s, error);
}

static int message_insert(struct meta *m, const struct folder_row *row,
			  const struct meta_new_message *nm, struct str *error)
{
	sqlite3_stmt *s = st(m, S_MSG_INSERT);

	sqlite3_bind_int64(s, 1, row->id);
	sqlite3_bind_int64(s, 2, row->uidnext);
	sqlite3_bind_int64(s, 3, (int64_t)row->highestmodseq + 1);
	sqlite3_bind_int(s, 4, (int)(nm->flags & META_FLAGS_ALL));
	bind_text(s, 5, nm->keywords != NULL ? nm->keywords : "");
	sqlite3_bind_int64(s, 6, nm->internal_date);
	sqlite3_bind_int64(s, 7, (int64_t)nm->size);
	bind_text(s, 8, nm->blob);
	bind_text(s, 9, nm->envelope);
	bind_text(s, 10, nm->bodystructure);
	return st_exec(m, s, error);
}

int meta_message_add(struct meta *m, int64_t account, const char *folder,
		     const struct meta_new_message *nm, uint32_t *uid_r,
		     uint32_t *uidvalidity_r, uint64_t *modseq_r,
		     struct str *error)
{
	struct folder_row row;
	struct meta_quota q;
	sqlite3_stmt *s;
	int r;

	r = folder_find(m, account, folder, &row, error);
	if (r < 0)
		return r;
	if (meta_quota_get(m, account, &q, error) < 0)
		return META_EINTERNAL;
	if (q.limit > 0 && q.used + nm->size > q.limit)
		return META_EOVERQUOTA;
	if (row.uidnext >= UINT32_MAX - 1)
		return meta_fail(error, "folder %s: UIDs exhausted", folder);
	if (meta_blob_register(m, nm->blob, nm->size, error) < 0)
		return META_EINTERNAL;
	s = st(m, S_BLOB_REF);
	bind_text(s, 1, nm->blob);
	sqlite3_bind_int64(s, 2, 1);
	if (st_exec(m, s, error) < 0)
		return META_EINTERNAL;
	s = st(m, S_FOLDER_NEXT_UID);
	sqlite3_bind_int64(s, 1, row.id);
	if (st_exec(m, s, error) < 0 || message_insert(m, &row, nm, error) < 0)
		return META_EINTERNAL;
	s = st(m, S_QUOTA_ADD);
	sqlite3_bind_int64(s, 1, account);
	sqlite3_bind_int64(s, 2, (int64_t)nm->size);
	sqlite3_bind_int64(s, 3, 1);
	if (st_exec(m, s, error) < 0)
		return META_EINTERNAL;
	*uid_r = row.uidnext;
	*uidvalidity_r = row.uidvalidity;
	*modseq_r = row.highestmodseq + 1;
	return META_OK;
}

/* S_MSG_RANGE (every column) or S_MSG_FLAGS_PAGE (the first four). */
static int fetch_page(struct meta *m, enum stmt_id id, int64_t account,
		      const char *folder, uint32_t first, uint32_t last,
		      unsigned limit, meta_message_cb *cb, void *ctx,
		      uint32_t *next_r, struct str *error)
{
	struct folder_row row;
	struct meta_message msg;
	unsigned seen = 0;
	sqlite3_stmt *s;
	int r;

	*next_r = 0;
	r = folder_find(m, account, folder, &row, error);
	if (r < 0)
		return r;
	memset(&msg, 0, sizeof(msg));
	s = st(m, id);
	sqlite3_bind_int64(s, 1, row.id);
	sqlite3_bind_int64(s, 2, first);
	sqlite3_bind_int64(s, 3, last);
	sqlite3_bind_int64(s, 4, (int64_t)limit + 1);
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		msg.uid = (uint32_t)sqlite3_column_int64(s, 0);
		if (seen++ == limit) {
			*next_r = msg.uid;	/* one more exists */
			break;
		}
		msg.modseq = (uint64_t)sqlite3_column_int64(s, 1);
		msg.flags = (unsigned)sqlite3_column_int(s, 2);
		msg.keywords = col_text(s, 3);
		if (id == S_MSG_RANGE) {
			msg.internal_date = sqlite3_column_int64(s, 4);
			msg.size = (uint64_t)sqlite3_column_int64(s, 5);
			msg.blob = col_text(s, 6);
			msg.envelope = col_text_null(s, 7);
			msg.bodystructure = col_text_null(s, 8);
		}
		if (cb(&msg, ctx) < 0) {
			sqlite3_reset(s);
			return meta_fail(error, "stopped by the caller");
		}
	}
	sqlite3_reset(s);
	return r == SQLITE_DONE || r == SQLITE_ROW ? META_OK :
						     db_fail(m, error);
}

int meta_fetch(struct meta *m, int64_t account, const char *folder,
	       uint32_t first, uint32_t last, unsigned limit,
	       meta_message_cb *cb, void *ctx, uint32_t *next_r,
	       struct str *error)
{
	return fetch_page(m, S_MSG_RANGE, account, folder, first, last, limit,
			  cb, ctx, next_r, error);
}

int meta_fetch_flags(struct meta *m, int64_t account, const char *folder,
		     uint32_t first, uint32_t last, unsigned limit,
		     meta_message_cb *cb, void *ctx, uint32_t *next_r,
		     struct str *error)
{
	return fetch_page(m, S_MSG_FLAGS_PAGE, account, folder, first, last,
			  limit, cb, ctx, next_r, error);
}

/* One message's flags, collected before a STORE changes them. */
struct flag_row {
	uint32_t uid;
	uint64_t modseq;
	unsigned flags;
	char *keywords;
};

static int collect_flags(struct meta *m, int64_t folder_id,
			 const struct meta_uidset *set, struct flag_row **v_r,
			 size_t *n_r, struct str *error)
{
	struct flag_row *v = NULL;
	size_t n = 0;
	int r = SQLITE_DONE;

	for (size_t i = 0; r == SQLITE_DONE && i < set->n; i++) {
		sqlite3_stmt *s = st(m, S_MSG_FLAGS_RANGE);

		sqlite3_bind_int64(s, 1, folder_id);
		sqlite3_bind_int64(s, 2, set->r[i].lo);
		sqlite3_bind_int64(s, 3, set->r[i].hi);
		while ((r = sqlite3_step(s)) == SQLITE_ROW) {
			v = xrealloc(v, (n + 1) * sizeof(*v));
			v[n].uid = (uint32_t)sqlite3_column_int64(s, 0);
			v[n].modseq = (uint64_t)sqlite3_column_int64(s, 1);
			v[n].flags = (unsigned)sqlite3_column_int(s, 2);
			v[n].keywords = xstrdup(col_text(s, 3));
			n++;
		}
		sqlite3_reset(s);
	}
	*v_r = v;
	*n_r = n;
	return r == SQLITE_DONE ? META_OK : db_fail(m, error);
}

/* The new keyword list of one message into out; -1 past the limits. */
static int keywords_apply(const char *old, const char *given,
			  enum meta_store_mode mode, struct str *out)
{
	char **a, **b, **w;
	size_t na, nb, n = 0;
	int r;

	if (mode == META_STORE_REPLACE)
		return meta_keywords_normalise(given, out);
	if (keywords_split(old, &a, &na) < 0)
		return -1;
	if (keywords_split(given, &b, &nb) < 0) {
		words_free(a, na);
		return -1;
	}
	w = xcalloc(na + nb + 1, sizeof(*w));
	for (size_t i = 0; i < na; i++) {
		int drop = 0;

		for (size_t j = 0; mode == META_STORE_REMOVE && j < nb; j++)
			drop |= strcmp(a[i], b[j]) == 0;
		if (!drop)
			w[n++] = a[i];
	}
	for (size_t j = 0; mode == META_STORE_ADD && j < nb; j++)
		w[n++] = b[j];
	qsort(w, n, sizeof(*w), cmp_str);
	r = words_join(w, n, out);
	free(w);
	words_free(a, na);
	words_free(b, nb);
	return r;
}

/* Takes the folder's next MODSEQ. */
static int folder_bump(struct meta *m, int64_t account, const char *folder,
		       struct folder_row *row, struct str *error)
{
	sqlite3_stmt *s = st(m, S_FOLDER_BUMP);

	sqlite3_bind_int64(s, 1, row->id);
	if (st_exec(m, s, error) < 0)
		return META_EINTERNAL;
	return folder_find(m, account, folder, row, error);
}

static int flags_update(struct meta *m, const struct folder_row *row,
			const struct flag_row *f, unsigned flags,
			const char *keywords, struct str *error)
{
	sqlite3_stmt *s = st(m, S_MSG_SET_FLAGS);

	sqlite3_bind_int64(s, 1, row->id);
	sqlite3_bind_int64(s, 2, f->uid);
	sqlite3_bind_int(s, 3, (int)flags);
	bind_text(s, 4, keywords);
	sqlite3_bind_int64(s, 5, (int64_t)row->highestmodseq);
	return st_exec(m, s, error);
}

int meta_store_flags(struct meta *m, int64_t account, const char *folder,
		     const struct meta_uidset *set, enum meta_store_mode mode,
		     unsigned flags, const char *keywords,
		     uint64_t unchangedsince, meta_message_cb *changed_cb,
		     meta_uid_cb *failed_cb, void *ctx,
		     uint64_t *highestmodseq_r, struct str *error)
{
	struct str *kw = str_new(256, META_KEYWORDS_MAX *
					      (META_KEYWORD_MAX + 1));
	struct flag_row *v = NULL;
	struct folder_row row;
	struct meta_message msg;
	size_t n = 0;
	int r, bumped = 0;

	flags &= META_FLAGS_ALL;
	r = folder_find(m, account, folder, &row, error);
	if (r == META_OK)
		r = collect_flags(m, row.id, set, &v, &n, error);
	for (size_t i = 0; r == META_OK && i < n; i++) {
		unsigned nf = mode == META_STORE_ADD ? v[i].flags | flags :
			      mode == META_STORE_REMOVE ? v[i].flags & ~flags :
							  flags;

		if (unchangedsince > 0 && v[i].modseq > unchangedsince) {
			if (failed_cb != NULL && failed_cb(v[i].uid, ctx) < 0)
				r = meta_fail(error, "stopped by the caller");
			continue;
		}
		if (keywords_apply(v[i].keywords, keywords, mode, kw) < 0) {
			r = META_EINVALID;
			break;
		}
		if (nf == v[i].flags && strcmp(str_c(kw), v[i].keywords) == 0)
			continue;
		if (!bumped && (r = folder_bump(m, account, folder, &row,
						 error)) < 0)
			break;
		bumped = 1;
		r = flags_update(m, &row, &v[i], nf, str_c(kw), error);
		if (r < 0 || changed_cb == NULL)
			continue;
		memset(&msg, 0, sizeof(msg));
		msg.uid = v[i].uid;
		msg.modseq = row.highestmodseq;
		msg.flags = nf;
		msg.keywords = str_c(kw);
		if (changed_cb(&msg, ctx) < 0)
			r = meta_fail(error, "stopped by the caller");
	}
	for (size_t i = 0; i < n; i++)
		free(v[i].keywords);
	free(v);
	str_free(&kw);
	if (r == META_OK)
		*highestmodseq_r = row.highestmodseq;
	return r;
}

int meta_expunge(struct meta *m, int64_t account, const char *folder,
		 const struct meta_uidset *set, meta_uid_cb *cb, void *ctx,
		 uint64_t *highestmodseq_r, struct str *error)
{
	static const struct meta_uidset all = { 1, { { 1, UINT32_MAX } } };
	struct msg_ref *refs = NULL;
	struct folder_row row;
	size_t n = 0;
	sqlite3_stmt *s;
	int r;

	if (set == NULL)
		set = &all;
	r = folder_find(m, account, folder, &row, error);
	for (size_t i = 0; r == META_OK && i < set->n; i++) {
		s = st(m, S_MSG_DELETED_RANGE);
		sqlite3_bind_int64(s, 1, row.id);
		sqlite3_bind_int64(s, 2, set->r[i].lo);
		sqlite3_bind_int64(s, 3, set->r[i].hi);
		r = collect_refs(m, s, &refs, &n, error);
	}
	if (r == META_OK && n > 0)
		r = folder_bump(m, account, folder, &row, error);
	for (size_t i = 0; r == META_OK && i < n; i++) {
		s = st(m, S_MSG_DELETE);
		sqlite3_bind_int64(s, 1, row.id);
		sqlite3_bind_int64(s, 2, refs[i].uid);
		r = st_exec(m, s, error);
		if (r < 0)
			break;
		s = st(m, S_EXP_INSERT);
		sqlite3_bind_int64(s, 1, row.id);
		sqlite3_bind_int64(s, 2, refs[i].uid);
		sqlite3_bind_int64(s, 3, (int64_t)row.highestmodseq);
		r = st_exec(m, s, error);
		if (r == META_OK)
			r = message_release(m, account, refs[i].blob,
					    refs[i].size, error);
		if (r == META_OK && cb != NULL && cb(refs[i].uid, ctx) < 0)
			r = meta_fail(error, "stopped by the caller");
	}
	free(refs);
	if (r == META_OK)
		*highestmodseq_r = row.highestmodseq;
	return r;
}

/* One message read for a copy or move. */
struct copy_row {
	uint32_t uid;
	unsigned flags;
	int64_t date, size;
	char blob[65];
	char *keywords, *envelope, *bodystructure;
};

static char *dup_null(const char *text)
{
	return text != NULL ? xstrdup(text) : NULL;
}

static void copy_rows_free(struct copy_row *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].keywords);
		free(v[i].envelope);
		free(v[i].bodystructure);
	}
	free(v);
}

static int cmp_copy_row(const void *a, const void *b)
{
	uint32_t x = ((const struct copy_row *)a)->uid;
	uint32_t y = ((const struct copy_row *)b)->uid;

	return x < y ? -1 : x > y;
}

/* The messages of set in UID order, each once (ranges may overlap). */
static int collect_copy_rows(struct meta *m, int64_t folder_id,
			     const struct meta_uidset *set,
			     struct copy_row **v_r, size_t *n_r,
			     struct str *error)
{
	struct copy_row *v = NULL;
	size_t n = 0, kept = 0;
	int r = SQLITE_DONE;

	for (size_t i = 0; r == SQLITE_DONE && i < set->n; i++) {
		sqlite3_stmt *s = st(m, S_MSG_COPY_RANGE);

		sqlite3_bind_int64(s, 1, folder_id);
		sqlite3_bind_int64(s, 2, set->r[i].lo);
		sqlite3_bind_int64(s, 3, set->r[i].hi);
		while ((r = sqlite3_step(s)) == SQLITE_ROW) {
			v = xrealloc(v, (n + 1) * sizeof(*v));
			v[n].uid = (uint32_t)sqlite3_column_int64(s, 0);
			v[n].flags = (unsigned)sqlite3_column_int(s, 1);
			v[n].keywords = xstrdup(col_text(s, 2));
			v[n].date = sqlite3_column_int64(s, 3);
			v[n].size = sqlite3_column_int64(s, 4);
			str_lcpy(v[n].blob, col_text(s, 5), sizeof(v[n].blob));
			v[n].envelope = dup_null(col_text_null(s, 6));
			v[n].bodystructure = dup_null(col_text_null(s, 7));
			n++;
		}
		sqlite3_reset(s);
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), cmp_copy_row);
	for (size_t i = 0; i < n; i++) {
		if (kept > 0 && v[kept - 1].uid == v[i].uid) {
			free(v[i].keywords);
			free(v[i].envelope);
			free(v[i].bodystructure);
			continue;
		}
		v[kept++] = v[i];
	}
	*v_r = v;
	*n_r = kept;
	return r == SQLITE_DONE ? META_OK : db_fail(m, error);
}

/* Copy only: the new references and the quota charge, checked first. */
static int copy_charge(struct meta *m, int64_t account,
		       const struct copy_row *v, size_t n, struct str *error)
{
	struct meta_quota q;
	uint64_t total = 0;
	sqlite3_stmt *s;

	for (size_t i = 0; i < n; i++)
		total += (uint64_t)v[i].size;
	if (meta_quota_get(m, account, &q, error) < 0)
		return META_EINTERNAL;
	if (q.limit > 0 && q.used + total > q.limit)
		return META_EOVERQUOTA;
	for (size_t i = 0; i < n; i++) {
		s = st(m, S_BLOB_REF);
		bind_text(s, 1, v[i].blob);
		sqlite3_bind_int64(s, 2, 1);
		if (st_exec(m, s, error) < 0)
			return META_EINTERNAL;
	}
	s = st(m, S_QUOTA_ADD);
	sqlite3_bind_int64(s, 1, account);
	sqlite3_bind_int64(s, 2, (int64_t)total);
	sqlite3_bind_int64(s, 3, (int64_t)n);
	return st_exec(m, s, error);
}

/* Move only: the source rows go, remembered as expunged. */
static int move_remove(struct meta *m, int64_t account, const char *from,
		       struct folder_row *src, const struct copy_row *v,
		       size_t n, struct str *error)
{
	sqlite3_stmt *s;
	int r = folder_bump(m, account, from, src, error);

	for (size_t i = 0; r == META_OK && i < n; i++) {
		s = st(m, S_MSG_DELETE);
		sqlite3_bind_int64(s, 1, src->id);
		sqlite3_bind_int64(s, 2, v[i].uid);
		r = st_exec(m, s, error);
		if (r < 0)
			break;
		s = st(m, S_EXP_INSERT);
		sqlite3_bind_int64(s, 1, src->id);
		sqlite3_bind_int64(s, 2, v[i].uid);
		sqlite3_bind_int64(s, 3, (int64_t)src->highestmodseq);
		r = st_exec(m, s, error);
	}
	return r;
}

/* Inserts the rows into the target: UIDs from its uidnext, one MODSEQ. */
static int copy_insert(struct meta *m, struct folder_row *dst,
		       const struct copy_row *v, size_t n, meta_copy_cb *cb,
		       void *ctx, struct str *error)
{
	struct folder_row row = *dst;
	sqlite3_stmt *s = st(m, S_FOLDER_TAKE_UIDS);
	int r;

	sqlite3_bind_int64(s, 1, dst->id);
	sqlite3_bind_int64(s, 2, (int64_t)n);
	if (st_exec(m, s, error) < 0)
		return META_EINTERNAL;
	for (size_t i = 0; i < n; i++) {
		struct meta_new_message nm = {
			.blob = v[i].blob,
			.size = (uint64_t)v[i].size,
			.flags = v[i].flags,
			.keywords = v[i].keywords,
			.internal_date = v[i].date,
			.envelope = v[i].envelope,
			.bodystructure = v[i].bodystructure,
		};

		row.uidnext = dst->uidnext + (uint32_t)i;
		r = message_insert(m, &row, &nm, error);
		if (r < 0)
			return r;
		if (cb != NULL && cb(v[i].uid, row.uidnext, ctx) < 0)
			return meta_fail(error, "stopped by the caller");
	}
	dst->uidnext += (uint32_t)n;
	dst->highestmodseq++;
	return META_OK;
}

int meta_copy(struct meta *m, int64_t account, const char *from,
	      const char *to, const struct meta_uidset *set, int move,
	      meta_copy_cb *cb, void *ctx, struct meta_copy_result *res_r,
	      struct str *error)
{
	struct folder_row src, dst;
	struct copy_row *v = NULL;
	size_t n = 0;
	int r;

	if (move && strcmp(from, to) == 0)
		return META_EINVALID;
	r = folder_find(m, account, from, &src, error);
	if (r < 0)
		return r;
	r = folder_find(m, account, to, &dst, error);
	if (r < 0)
		return r == META_ENOTFOUND ? META_ENOTARGET : r;
	r = collect_copy_rows(m, src.id, set, &v, &n, error);
	if (r == META_OK && n > 0 &&
	    (uint64_t)dst.uidnext + n >= UINT32_MAX - 1)
		r = meta_fail(error, "folder %s: UIDs exhausted", to);
	if (r == META_OK && n > 0 && !move)
		r = copy_charge(m, account, v, n, error);
	if (r == META_OK && n > 0)
		r = copy_insert(m, &dst, v, n, cb, ctx, error);
	if (r == META_OK && n > 0 && move)
		r = move_remove(m, account, from, &src, v, n, error);
	copy_rows_free(v, n);
	if (r < 0)
		return r;
	if (!move && strcmp(from, to) == 0)
		src = dst;
	res_r->uidvalidity = dst.uidvalidity;
	res_r->highestmodseq = dst.highestmodseq;
	res_r->src_highestmodseq = src.highestmodseq;
	res_r->count = (uint32_t)n;
	return META_OK;
}

int meta_vanished(struct meta *m, int64_t account, const char *folder,
		  uint64_t since, meta_uid_cb *cb, void *ctx,
		  struct str *error)
{
	struct folder_row row;
	sqlite3_stmt *s;
	int r;

	r = folder_find(m, account, folder, &row, error);
	if (r < 0)
		return r;
	s = st(m, S_EXP_SINCE);
	sqlite3_bind_int64(s, 1, row.id);
	sqlite3_bind_int64(s, 2, (int64_t)since);
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		if (cb((uint32_t)sqlite3_column_int64(s, 0), ctx) < 0) {
			sqlite3_reset(s);
			return meta_fail(error, "stopped by the caller");
		}
	}
	sqlite3_reset(s);
	return r == SQLITE_DONE ? META_OK : db_fail(m, error);
}

/* ---- blobs ---- */

int meta_blob_refs(struct meta *m, const char *hex, int64_t *refs_r,
		   struct str *error)
{
	sqlite3_stmt *s = st(m, S_BLOB_GET);
	int r;

	bind_text(s, 1, hex);
	r = sqlite3_step(s);
	if (r == SQLITE_ROW)
		*refs_r = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (r == SQLITE_DONE)
		return META_ENOTFOUND;
	return r == SQLITE_ROW ? META_OK : db_fail(m, error);
}

static int blobs_each(struct meta *m, sqlite3_stmt *s, meta_blob_cb *cb,
		      void *ctx, struct str *error)
{
	int r;

	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		if (cb(col_text(s, 0), sqlite3_column_int64(s, 1), ctx) < 0) {
			sqlite3_reset(s);
			return meta_fail(error, "stopped by the caller");
		}
	}
	sqlite3_reset(s);
	return r == SQLITE_DONE ? META_OK : db_fail(m, error);
}

int meta_blobs_unreferenced(struct meta *m, meta_blob_cb *cb, void *ctx,
			    struct str *error)
{
	return blobs_each(m, st(m, S_BLOB_UNREF), cb, ctx, error);
}

int meta_blobs_forget_unreferenced(struct meta *m, struct str *error)
{
	return st_exec(m, st(m, S_BLOB_FORGET), error);
}

int meta_blobs_all(struct meta *m, meta_blob_cb *cb, void *ctx,
		   struct str *error)
{
	return blobs_each(m, st(m, S_BLOB_ALL), cb, ctx, error);
}

/* ---- consistency ---- */

int meta_check_blobs(struct meta *m, meta_blob_use_cb *cb, void *ctx,
		     struct str *error)
{
	sqlite3_stmt *s = st(m, S_CHECK_BLOBS);
	int r;

	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		if (cb(col_text(s, 0), sqlite3_column_int64(s, 1),
		       sqlite3_column_int64(s, 2), ctx) < 0) {
			sqlite3_reset(s);
			return meta_fail(error, "stopped by the caller");
		}
	}
	sqlite3_reset(s);
	return r == SQLITE_DONE ? META_OK : db_fail(m, error);
}

int meta_blob_set_refs(struct meta *m, const char *hex, int64_t refs,
		       uint64_t size, struct str *error)
{
	sqlite3_stmt *s = st(m, S_BLOB_SET_REFS);

	bind_text(s, 1, hex);
	sqlite3_bind_int64(s, 2, refs);
	sqlite3_bind_int64(s, 3, (int64_t)size);
	return st_exec(m, s, error);
}

int meta_blob_users(struct meta *m, const char *hex, meta_blob_user_cb *cb,
		    void *ctx, struct str *error)
{
	sqlite3_stmt *s = st(m, S_BLOB_USERS);
	struct meta_blob_user u;
	int r;

	sqlite3_bind_text(s, 1, hex, -1, SQLITE_TRANSIENT);
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		u.account = sqlite3_column_int64(s, 0);
		u.address = col_text(s, 1);
		u.folder = col_text(s, 2);
		u.uid = (uint32_t)sqlite3_column_int64(s, 3);
		u.size = (uint64_t)sqlite3_column_int64(s, 4);
		if (cb(&u, ctx) < 0) {
			sqlite3_reset(s);
			return meta_fail(error, "stopped by the caller");
		}
	}
	sqlite3_reset(s);
	return r == SQLITE_DONE ? META_OK : db_fail(m, error);
}

/* One message of a lost blob, collected before it is expunged. */
struct lost {
	int64_t account;
	char *folder;
	uint32_t uid;
};

struct lost_list {
	struct lost *v;
	size_t n;
};

static int lost_add(const struct meta_blob_user *u, void *ctx)
{
	struct lost_list *l = ctx;

	l->v = xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
	l->v[l->n].account = u->account;
	l->v[l->n].folder = xstrdup(u->folder);
	l->v[l->n].uid = u->uid;
	l->n++;
	return 0;
}

int meta_blob_drop(struct meta *m, const char *hex, struct str *error)
{
	struct lost_list l = { NULL, 0 };
	struct meta_uidset set;
	uint64_t hms;
	int r;

	r = meta_blob_users(m, hex, lost_add, &l, error);
	for (size_t i = 0; r == META_OK && i < l.n; i++) {
		set.n = 1;
		set.r[0].lo = set.r[0].hi = l.v[i].uid;
		r = meta_store_flags(m, l.v[i].account, l.v[i].folder, &set,
				     META_STORE_ADD, META_DELETED, "", 0, NULL,
				     NULL, NULL, &hms, error);
		if (r == META_OK)
			r = meta_expunge(m, l.v[i].account, l.v[i].folder,
					 &set, NULL, NULL, &hms, error);
	}
	for (size_t i = 0; i < l.n; i++)
		free(l.v[i].folder);
	free(l.v);
	if (r == META_OK)
		r = meta_blob_set_refs(m, hex, 0, 0, error);
	return r;
}

int meta_check_usage(struct meta *m, int64_t account, meta_usage_cb *cb,
		     void *ctx, struct str *error)
{
	sqlite3_stmt *s = st(m, S_CHECK_USAGE);
	struct meta_usage u;
	int r;

	sqlite3_bind_int64(s, 1, account);
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		u.account = sqlite3_column_int64(s, 0);
		u.address = col_text(s, 1);
		u.used = (uint64_t)sqlite3_column_int64(s, 2);
		u.messages = (uint64_t)sqlite3_column_int64(s, 3);
		u.real_used = (uint64_t)sqlite3_column_int64(s, 4);
		u.real_messages = (uint64_t)sqlite3_column_int64(s, 5);
		if (cb(&u, ctx) < 0) {
			sqlite3_reset(s);
			return meta_fail(error, "stopped by the caller");
		}
	}
	sqlite3_reset(s);
	return r == SQLITE_DONE ? META_OK : db_fail(m, error);
}

int meta_usage_set(struct meta *m, int64_t account, uint64_t used,
		   uint64_t messages, struct str *error)
{
	sqlite3_stmt *s = st(m, S_USAGE_SET);

	sqlite3_bind_int64(s, 1, account);
	sqlite3_bind_int64(s, 2, (int64_t)used);
	sqlite3_bind_int64(s, 3, (int64_t)messages);
	return st_exec(m, s, error);
}

int meta_account_find(struct meta *m, const char *address, int64_t *id_r,
		      struct str *error)
{
	sqlite3_stmt *s = st(m, S_ACCT_FIND);
	int r;

	bind_text(s, 1, address);
	r = sqlite3_step(s);
	if (r == SQLITE_ROW)
		*id_r = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (r == SQLITE_DONE)
		return META_ENOTFOUND;
	return r == SQLITE_ROW ? META_OK : db_fail(m, error);
}

/* ---- delivery keys ---- */

int meta_delivery_find(struct meta *m, const char *key, int64_t account,
		       const char *folder, uint32_t *uid_r,
		       uint32_t *uidvalidity_r, struct str *error)
{
	sqlite3_stmt *s = st(m, S_DELIV_GET);
	int r;

	bind_text(s, 1, key);
	sqlite3_bind_int64(s, 2, account);
	bind_text(s, 3, folder);
	r = sqlite3_step(s);
	if (r == SQLITE_ROW) {
		*uid_r = (uint32_t)sqlite3_column_int64(s, 0);
		*uidvalidity_r = (uint32_t)sqlite3_column_int64(s, 1);
	}
	sqlite3_reset(s);
	if (r == SQLITE_DONE)
		return META_ENOTFOUND;
	return r == SQLITE_ROW ? META_OK : db_fail(m, error);
}

int meta_delivery_add(struct meta *m, const char *key, int64_t account,
		      const char *folder, uint32_t uid, uint32_t uidvalidity,
		      int64_t created, struct str *error)
{
	sqlite3_stmt *s = st(m, S_DELIV_ADD);
	int r;

	bind_text(s, 1, key);
	sqlite3_bind_int64(s, 2, account);
	bind_text(s, 3, folder);
	sqlite3_bind_int64(s, 4, uid);
	sqlite3_bind_int64(s, 5, uidvalidity);
	sqlite3_bind_int64(s, 6, created);
	r = sqlite3_step(s);
	sqlite3_reset(s);
	if ((r & 0xff) == SQLITE_CONSTRAINT)
		return META_EEXISTS;
	return r == SQLITE_DONE ? META_OK : db_fail(m, error);
}

int meta_delivery_prune(struct meta *m, int64_t before, uint64_t *removed_r,
			struct str *error)
{
	sqlite3_stmt *s = st(m, S_DELIV_PRUNE);

	sqlite3_bind_int64(s, 1, before);
	if (st_exec(m, s, error) < 0)
		return META_EINTERNAL;
	*removed_r = (uint64_t)sqlite3_changes(m->db);
	return META_OK;
}
