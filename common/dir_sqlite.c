/*
 * dir_sqlite.c: the embedded directory backend (dir.h) on one SQLite file.
 *
 * The file is in WAL mode so that tern-authd (SQLITE_OPEN_READONLY) reads
 * while ternctl writes; writers use synchronous=FULL.  Every write is one
 * BEGIN IMMEDIATE transaction that also bumps the row in `serial`, which
 * is what dir_serial() returns, so other processes see each change.  A
 * lock held longer than DIR_BUSY_MS, and any other SQLite failure, is
 * DIR_TEMPFAIL.  Only prepared statements with bound values reach SQLite.
 *
 * Schema (version 1, created with the file; `schema_version` and the
 * migrations[] table are where later versions go): cos, domains, accounts
 * (AUTOINCREMENT ids, never reused), aliases, lists and list_members.
 * Accounts, aliases and lists share one namespace: an address is at most
 * one of them, checked inside the writing transaction.  A domain refers to
 * a cos; an account, alias or list to its domain (foreign keys are on).
 * Deleting an account or a list also takes it out of every list; aliases
 * and catch-alls pointing at it stay and resolve to nothing.
 *
 * NULL fields: dir_account_add() takes a NULL cos as the domain's cos and
 * a NULL mailhost as "localhost"; dir_account_set() keeps the stored
 * mailhost, cos and password hash for NULL; dir_domain_add() takes a NULL
 * cos as "default"; dir_domain_set() keeps the cos for NULL and removes
 * the catch-all for NULL or "".  Local alias targets, list members and
 * catch-alls must exist when added.
 *
 * A struct dir is used by one thread at a time.
 */
#include "config.h"

#include "compat.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dir_backend.h"
#include "xalloc.h"

#define DIR_BUSY_MS 5000
#define DIR_SCHEMA_VERSION 1

struct sdir {
	struct dir base;	/* first: dir.c sees this */
	sqlite3 *db;
	char *path;
	bool readonly;
	/* While dir.c resolves an address (sq_resolve_begin/end). */
	sqlite3_stmt *res_kind, *res_members, *res_domain;
};

enum addr_kind { KIND_NONE, KIND_ACCOUNT, KIND_ALIAS, KIND_LIST };

static const char *const kind_names[] = {
	[KIND_NONE] = "address", [KIND_ACCOUNT] = "account",
	[KIND_ALIAS] = "alias", [KIND_LIST] = "list",
};

static const char schema_v1[] =
	"CREATE TABLE schema_version (version INTEGER NOT NULL);"
	"CREATE TABLE serial (id INTEGER PRIMARY KEY CHECK (id = 1),"
	" value INTEGER NOT NULL);"
	"CREATE TABLE cos ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" name TEXT NOT NULL UNIQUE,"
	" quota INTEGER NOT NULL DEFAULT 0,"
	" max_message_size INTEGER NOT NULL DEFAULT 0,"
	" max_recipients INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE domains ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" name TEXT NOT NULL UNIQUE,"
	" cos_id INTEGER NOT NULL REFERENCES cos(id),"
	" catchall TEXT,"
	" default_quota INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE accounts ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" address TEXT NOT NULL UNIQUE,"
	" domain_id INTEGER NOT NULL REFERENCES domains(id),"
	" display_name TEXT,"
	" password_hash TEXT,"
	" quota INTEGER NOT NULL DEFAULT 0,"
	" status INTEGER NOT NULL DEFAULT 0,"
	" mailhost TEXT NOT NULL,"
	" cos_id INTEGER NOT NULL REFERENCES cos(id),"
	" created INTEGER NOT NULL);"
	"CREATE TABLE aliases ("
	" address TEXT PRIMARY KEY,"
	" domain_id INTEGER NOT NULL REFERENCES domains(id),"
	" target TEXT NOT NULL);"
	"CREATE TABLE lists ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" address TEXT NOT NULL UNIQUE,"
	" domain_id INTEGER NOT NULL REFERENCES domains(id));"
	"CREATE TABLE list_members ("
	" list_id INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,"
	" member TEXT NOT NULL,"
	" PRIMARY KEY (list_id, member));"
	"CREATE INDEX accounts_domain ON accounts(domain_id);"
	"CREATE INDEX accounts_cos ON accounts(cos_id);"
	"CREATE INDEX domains_cos ON domains(cos_id);"
	"CREATE INDEX aliases_domain ON aliases(domain_id);"
	"CREATE INDEX lists_domain ON lists(domain_id);"
	"CREATE INDEX list_members_member ON list_members(member);"
	"INSERT INTO serial (id, value) VALUES (1, 1);"
	"INSERT INTO cos (name) VALUES ('default');"
	"INSERT INTO schema_version (version) VALUES (1);";

/* migrations[v] takes schema version v to v + 1 (none yet). */
static const char *const migrations[DIR_SCHEMA_VERSION] = { NULL };

static enum dir_status db_fail(struct sdir *dir, int rc, const char *what,
			       struct str *error)
{
	int prim = rc & 0xff;

	if (prim == SQLITE_BUSY || prim == SQLITE_LOCKED)
		str_setf(error, "directory %s is busy (%s): try again later",
			  dir->path, what);
	else
		str_setf(error, "directory %s: %s: %s", dir->path, what,
			  dir->db != NULL ? sqlite3_errmsg(dir->db) :
			  sqlite3_errstr(rc));
	return DIR_TEMPFAIL;
}

/* ---- statements ---- */

/*
 * Binds the values listed in fmt, one letter each: t = const char * (NULL
 * binds SQL NULL), i = int64_t.
 */
static int bind_va(sqlite3_stmt *st, const char *fmt, va_list ap)
{
	int rc = SQLITE_OK;

	for (int i = 1; rc == SQLITE_OK && fmt[i - 1] != '\0'; i++) {
		if (fmt[i - 1] == 't')
			rc = sqlite3_bind_text(st, i, va_arg(ap, const char *),
					       -1, SQLITE_TRANSIENT);
		else
			rc = sqlite3_bind_int64(st, i, va_arg(ap, int64_t));
	}
	return rc;
}

static enum dir_status stmt_open(struct sdir *dir, const char *sql,
				 sqlite3_stmt **st_r, struct str *error,
				 const char *fmt, ...)
{
	va_list ap;
	int rc;

	rc = sqlite3_prepare_v2(dir->db, sql, -1, st_r, NULL);
	if (rc != SQLITE_OK) {
		*st_r = NULL;
		return db_fail(dir, rc, "prepare", error);
	}
	va_start(ap, fmt);
	rc = bind_va(*st_r, fmt, ap);
	va_end(ap);
	if (rc != SQLITE_OK) {
		sqlite3_finalize(*st_r);
		*st_r = NULL;
		return db_fail(dir, rc, "bind", error);
	}
	return DIR_OK;
}

/* 1 = a row, 0 = done, -1 = error (status in *st_r). */
static int stmt_next(struct sdir *dir, sqlite3_stmt *st, enum dir_status *st_r,
		     struct str *error)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	*st_r = db_fail(dir, rc, "query", error);
	return -1;
}

/* Runs a statement without rows; *changes_r (when not NULL) = rows hit.
 * SQLITE_CONSTRAINT is DIR_EXISTS with no message. */
static enum dir_status run(struct sdir *dir, const char *sql, int *changes_r,
			   struct str *error, const char *fmt, ...)
{
	sqlite3_stmt *st;
	va_list ap;
	int rc;

	rc = sqlite3_prepare_v2(dir->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_fail(dir, rc, "prepare", error);
	va_start(ap, fmt);
	rc = bind_va(st, fmt, ap);
	va_end(ap);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if ((rc & 0xff) == SQLITE_CONSTRAINT) {
		str_setf(error, "directory %s: %s", dir->path,
			  sqlite3_errmsg(dir->db));
		sqlite3_finalize(st);
		return DIR_EXISTS;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_fail(dir, rc, "update", error);
	if (changes_r != NULL)
		*changes_r = sqlite3_changes(dir->db);
	return DIR_OK;
}

/* One integer from the first row: DIR_NOTFOUND when there is no row. */
static enum dir_status query_i64(struct sdir *dir, const char *sql,
				 int64_t *r, struct str *error,
				 const char *fmt, ...)
{
	enum dir_status status = DIR_OK;
	sqlite3_stmt *st;
	va_list ap;
	int rc;

	rc = sqlite3_prepare_v2(dir->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_fail(dir, rc, "prepare", error);
	va_start(ap, fmt);
	rc = bind_va(st, fmt, ap);
	va_end(ap);
	if (rc != SQLITE_OK) {
		status = db_fail(dir, rc, "bind", error);
	} else {
		rc = stmt_next(dir, st, &status, error);
		if (rc == 1)
			*r = sqlite3_column_int64(st, 0);
		else if (rc == 0)
			status = DIR_NOTFOUND;
	}
	sqlite3_finalize(st);
	return status;
}

static char *col_dup(sqlite3_stmt *st, int col)
{
	const unsigned char *p = sqlite3_column_text(st, col);

	return p != NULL ? xstrdup((const char *)p) : NULL;
}

static enum dir_status exec_sql(struct sdir *dir, const char *sql,
				struct str *error)
{
	int rc = sqlite3_exec(dir->db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? DIR_OK : db_fail(dir, rc, sql, error);
}

/* ---- transactions ---- */

static enum dir_status write_begin(struct sdir *dir, struct str *error)
{
	if (dir->readonly) {
		str_setf(error, "directory %s is open read-only", dir->path);
		return DIR_REFUSED;
	}
	return exec_sql(dir, "BEGIN IMMEDIATE", error);
}

/* Commits (bumping the serial) when status is DIR_OK, else rolls back. */
static enum dir_status write_end(struct sdir *dir, enum dir_status status,
				 struct str *error)
{
	if (status == DIR_OK)
		status = run(dir, "UPDATE serial SET value = value + 1 "
			     "WHERE id = 1", NULL, error, "");
	if (status == DIR_OK)
		status = exec_sql(dir, "COMMIT", error);
	if (status != DIR_OK)
		(void)sqlite3_exec(dir->db, "ROLLBACK", NULL, NULL, NULL);
	return status;
}

/* ---- opening ---- */

static enum dir_status schema_ensure(struct sdir *dir, struct str *error)
{
	enum dir_status st;
	int64_t n, version = 0;

	st = query_i64(dir, "SELECT count(*) FROM sqlite_master WHERE "
		       "type = 'table' AND name = 'schema_version'", &n,
		       error, "");
	if (st != DIR_OK)
		return st;
	if (n == 0) {
		if (dir->readonly) {
			str_setf(error, "directory %s has no schema yet: "
				  "create it with ternctl", dir->path);
			return DIR_TEMPFAIL;
		}
		return exec_sql(dir, schema_v1, error);
	}
	st = query_i64(dir, "SELECT max(version) FROM schema_version",
		       &version, error, "");
	if (st != DIR_OK)
		return st == DIR_NOTFOUND ? DIR_TEMPFAIL : st;
	if (version < 1 || version > DIR_SCHEMA_VERSION) {
		str_setf(error, "directory %s has schema version %lld; this "
			  "program knows 1 to %d", dir->path,
			  (long long)version, DIR_SCHEMA_VERSION);
		return DIR_TEMPFAIL;
	}
	for (; version < DIR_SCHEMA_VERSION; version++) {
		if (dir->readonly) {
			str_setf(error, "directory %s needs an upgrade: run "
				  "ternctl once", dir->path);
			return DIR_TEMPFAIL;
		}
		st = exec_sql(dir, migrations[version], error);
		if (st == DIR_OK)
			st = run(dir, "UPDATE schema_version SET version = ?1",
				 NULL, error, "i", (int64_t)(version + 1));
		if (st != DIR_OK)
			return st;
	}
	return DIR_OK;
}

/* Creates the file 0640 so password hashes are never world-readable
 * (SQLite gives the -wal and -shm files the same mode). */
static void file_precreate(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);

	if (fd >= 0)
		close(fd);
}

static enum dir_status dir_setup(struct sdir *dir, struct str *error)
{
	enum dir_status st;

	sqlite3_busy_timeout(dir->db, DIR_BUSY_MS);
	st = exec_sql(dir, "PRAGMA foreign_keys = ON", error);
	if (st == DIR_OK && !dir->readonly)
		st = exec_sql(dir, "PRAGMA journal_mode = WAL", error);
	if (st == DIR_OK && !dir->readonly)
		st = exec_sql(dir, "PRAGMA synchronous = FULL", error);
	if (st != DIR_OK)
		return st;
	if (dir->readonly) {
		st = exec_sql(dir, "BEGIN", error);
		if (st == DIR_OK) {
			st = schema_ensure(dir, error);
			(void)sqlite3_exec(dir->db, "COMMIT", NULL, NULL, NULL);
		}
		return st;
	}
	st = exec_sql(dir, "BEGIN IMMEDIATE", error);
	if (st != DIR_OK)
		return st;
	st = schema_ensure(dir, error);
	if (st == DIR_OK)
		return exec_sql(dir, "COMMIT", error);
	(void)sqlite3_exec(dir->db, "ROLLBACK", NULL, NULL, NULL);
	return st;
}

static void sq_close(struct dir *handle)
{
	struct sdir *dir = (struct sdir *)handle;

	if (dir->db != NULL)
		sqlite3_close_v2(dir->db);
	free(dir->path);
	free(dir);
}

static const struct dir_ops sqlite_ops;

enum dir_status dir_open_sqlite(const char *path, bool readonly,
				struct dir **dir_r, struct str *error)
{
	struct sdir *dir = xcalloc(1, sizeof(*dir));
	int flags = readonly ? SQLITE_OPEN_READONLY :
		    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
	enum dir_status st;
	int rc;

	*dir_r = NULL;
	dir->base.ops = &sqlite_ops;
	dir->path = xstrdup(path);
	dir->readonly = readonly;
	if (!readonly)
		file_precreate(path);
	rc = sqlite3_open_v2(path, &dir->db, flags, NULL);
	if (rc != SQLITE_OK) {
		str_setf(error, "cannot open directory %s: %s", path,
			  dir->db != NULL ? sqlite3_errmsg(dir->db) :
			  sqlite3_errstr(rc));
		sq_close(&dir->base);
		return DIR_TEMPFAIL;
	}
	st = dir_setup(dir, error);
	if (st != DIR_OK) {
		sq_close(&dir->base);
		return st;
	}
	*dir_r = &dir->base;
	return DIR_OK;
}

static enum dir_status sq_serial(struct dir *handle, uint64_t *serial_r,
				 struct str *error)
{
	struct sdir *dir = (struct sdir *)handle;
	enum dir_status st;
	int64_t v = 0;

	st = query_i64(dir, "SELECT value FROM serial WHERE id = 1", &v, error,
		       "");
	if (st == DIR_NOTFOUND) {
		str_setf(error, "directory %s has no serial", dir->path);
		st = DIR_TEMPFAIL;
	}
	*serial_r = (uint64_t)v;
	return st;
}

/* ---- checks shared by the writers ---- */

static const char *domain_of(const char *address)
{
	return strrchr(address, '@') + 1;
}

static enum dir_status domain_id(struct sdir *dir, const char *name,
				 int64_t *id_r, struct str *error)
{
	enum dir_status st;

	st = query_i64(dir, "SELECT id FROM domains WHERE name = ?1", id_r,
		       error, "t", name);
	if (st == DIR_NOTFOUND)
		str_setf(error, "domain %s does not exist", name);
	return st;
}

static enum dir_status cos_id(struct sdir *dir, const char *name,
			      int64_t *id_r, struct str *error)
{
	enum dir_status st;

	st = query_i64(dir, "SELECT id FROM cos WHERE name = ?1", id_r, error,
		       "t", name);
	if (st == DIR_NOTFOUND)
		str_setf(error, "cos %s does not exist", name);
	return st;
}

static const char sql_kind[] =
	"SELECT 1, id, mailhost, status, NULL FROM accounts "
	"WHERE address = ?1 UNION ALL "
	"SELECT 2, 0, NULL, 0, target FROM aliases WHERE address = ?1 "
	"UNION ALL SELECT 3, id, NULL, 0, NULL FROM lists WHERE address = ?1";

static enum dir_status address_kind(struct sdir *dir, const char *address,
				    enum addr_kind *kind_r, struct str *error)
{
	enum dir_status st;
	int64_t k;

	st = query_i64(dir, sql_kind, &k, error, "t", address);
	*kind_r = st == DIR_OK ? (enum addr_kind)k : KIND_NONE;
	return st == DIR_NOTFOUND ? DIR_OK : st;
}

/* The address is free in the shared namespace of its (existing) domain. */
static enum dir_status address_free(struct sdir *dir, const char *address,
				    int64_t *domain_id_r, struct str *error)
{
	enum addr_kind kind;
	enum dir_status st;

	st = domain_id(dir, domain_of(address), domain_id_r, error);
	if (st == DIR_OK)
		st = address_kind(dir, address, &kind, error);
	if (st == DIR_OK && kind != KIND_NONE) {
		str_setf(error, "%s %s exists already", kind_names[kind],
			  address);
		st = DIR_EXISTS;
	}
	return st;
}

/* A target in one of our domains must exist; others are external. */
static enum dir_status target_check(struct sdir *dir, const char *target,
				    struct str *error)
{
	enum addr_kind kind;
	enum dir_status st;
	int64_t id;

	st = query_i64(dir, "SELECT id FROM domains WHERE name = ?1", &id,
		       error, "t", domain_of(target));
	if (st == DIR_NOTFOUND)
		return DIR_OK;
	if (st == DIR_OK)
		st = address_kind(dir, target, &kind, error);
	if (st == DIR_OK && kind == KIND_NONE) {
		str_setf(error, "%s does not exist (no account, alias or "
			  "list)", target);
		st = DIR_NOTFOUND;
	}
	return st;
}

/* ---- classes of service ---- */

static enum dir_status cos_check(const struct dir_cos *cos, struct str *error)
{
	enum dir_status st = dir_check_cos_name(cos->name, error);

	if (st == DIR_OK)
		st = dir_check_u64("quota", cos->quota, error);
	if (st == DIR_OK)
		st = dir_check_u64("max_message_size", cos->max_message_size,
			       error);
	return st;
}

static enum dir_status sq_cos_add(struct dir *handle, const struct dir_cos *cos,
				  struct str *error)
{
	struct sdir *dir = (struct sdir *)handle;
	enum dir_status st = cos_check(cos, error);

	if (st == DIR_OK)
		st = write_begin(dir, error);
	if (st != DIR_OK)
		return st;
	st = run(dir, "INSERT INTO cos (name, quota, max_message_size, "
		 "max_recipients) VALUES (?1, ?2, ?3, ?4)", NULL, error,
		 "tiii", cos->name, (int64_t)cos->quota,
		 (int64_t)cos->max_message_size, (int64_t)cos->max_recipients);
	if (st == DIR_EXISTS)
		str_setf(error, "cos %s exists already", cos->name);
	return write_end(dir, st, error);
}

static enum dir_status sq_cos_set(struct dir *handle, const struct dir_cos *cos,
				  struct str *error)
{
	struct sdir *dir = (struct sdir *)handle;
	enum dir_status st = cos_check(cos, error);
	int n = 0;

	if (st == DIR_OK)
		st = write_begin(dir, error);
	if (st != DIR_OK)
		return st;
	st = run(dir, "UPDATE cos SET quota = ?2, max_message_size = ?3, "
		 "max_recipients = ?4 WHERE name = ?1", &n, error, "tiii",
		 cos->name, (int64_t)cos->quota,
		 (int64_t)cos->max_message_size, (int64_t)cos->max_recipients);
	if (st == DIR_OK && n == 0) {
		str_setf(error, "cos %s does not exist", cos->name);
		st = DIR_NOTFOUND;
	}
	return write_end(dir, st, error);
}

static enum dir_status sq_cos_del(struct dir *handle, const char *name,
				  struct str *error)
{
	struct sdir *dir = (struct sdir *)handle;
	enum dir_status st = dir_check_cos_name(name, error);
	int64_t id, ndom = 0, nacct = 0;

	if (st == DIR_OK && strcmp(name, "default") == 0) {
		str_setf(error, "cos default cannot be deleted");
		st = DIR_REFUSED;
	}
	if (st == DIR_OK)
		st = write_begin(dir, error);
	if (st != DIR_OK)
		return st;
	st = cos_id(dir, name, &id, error);
	if (st == DIR_OK)
		st = query_i64(dir, "SELECT count(*) FROM domains WHERE "
			       "cos_id = ?1", &ndom, error, "i", id);
	if (st == DIR_OK)
		st = query_i64(dir, "SELECT count(*) FROM accounts WHERE "
			       "cos_id = ?1", &nacct, error, "i", id);
	if (st == DIR_OK && ndom + nacct > 0) {
		str_setf(error, "cos %s is still used by %lld domain%s and "
			  "%lld account%s", name, (long long)ndom,
			  ndom == 1 ? "" : "s", (long long)nacct,
			  nacct == 1 ? "" : "s");
		st = DIR_REFUSED;
	}
	if (st == DIR_OK)
		st = run(dir, "DELETE FROM cos WHERE id = ?1", NULL, error, "i",
			 id);
	return write_end(dir, st, error);
}

#define SQL_COS "SELECT name, quota, max_message_size, max_recipients FROM cos"

static struct dir_cos *cos_row(sqlite3_stmt *st)
{
	struct dir_cos *c = xcalloc(1, sizeof(*c));

	c->name = col_dup(st, 0);
	c->quota = (uint64_t)sqlite3_column_int64(st, 1);
	c->max_message_size = (uint64_t)sqlite3_column_int64(st, 2);
	c->max_recipients = (uint32_t)sqlite3_column_int64(st, 3);
	return c;
}

static enum dir_status sq_cos_get(struct dir *handle, const char *name,
				  struct dir_cos **cos_r, struct str *error)
{
	struct sdir *dir = (struct sdir *)handle;
	enum dir_status status = DIR_OK;
	sqlite3_stmt *st;
	int rc;

	*cos_r = NULL;
	status = stmt_open(dir, SQL_COS " WHERE name = ?1", &st, error, "t",
			   name);
	if (status != DIR_OK)
		return status;
	rc = stmt_next(dir, st, &status, error);
	if (rc == 1) {
		*cos_r = cos_row(st);
	} else if (rc == 0) {
		str_setf(error, "cos %s does not exist", name);
		status = DIR_NOTFOUND;
	}
	sqlite3_finalize(st);
	return status;
}

static enum dir_status sq_cos_list(struct dir *handle, struct dir_cos ***list_r,
				   size_t *count_r, struct str *error)
{
	struct sdir *dir = (struct sdir *)handle;
	enum dir_status status = DIR_OK;
	struct dir_cos **list = NULL;
	size_t n = 0;
	sqlite3_stmt *st;
	int rc;

	*list_r = NULL;
	*count_r = 0;
	status = stmt_open(dir, SQL_COS " ORDER BY name", &st, error, "");
	if (status != DIR_OK)
		return status;
	while ((rc = stmt_next(dir, st, &status, error)) == 1)
		dir_array_push((void ***)&list, &n, cos_row(st));
	sqlite3_finalize(st);
	if (rc < 0) {
		dir_cos_array_free(&list, n);
		return status;
	}
	*list_r = list;
	*count_r = n;
	return DIR_OK;
}

/* ---- domains ---- */

static enum dir_status domain_write(struct sdir *dir,
				    const struct dir_domain *dom, bool add,
				    struct str *error)
{
	char *name = NULL, *catchall = NULL;
	enum dir_status st;
	int64_t cid = 0, did = 0;

	st = dir_norm_domain(dom->name, &name, error);
	if (st == DIR_OK && dom->catchall != NULL && dom->catchall[0] != '\0')
		st = dir_norm_address(dom->catchall, &catchall, error);
	if (st == DIR_OK)
		st = dir_check_u64("default quota", dom->default_quota, error);
	if (st == DIR_OK)
		st = write_begin(dir, error);
	if (st != DIR_OK)
		goto out;
	if (add) {
		st = query_i64(dir, "SELECT id FROM domains WHERE name = ?1",
			       &did, error, "t", name);
		if (st == DIR_OK) {
			str_setf(error, "domain %s exists already", name);
			st = DIR_EXISTS;
		} else if (st == DIR_NOTFOUND) {
			st = DIR_OK;
		}
	} else {
		st = domain_id(dir, name, &did, error);
	}
	if (st == DIR_OK && (add || dom->cos != NULL))
		st = cos_id(dir, dom->cos != NULL ? dom->cos : "default", &cid,
			    error);
	if (st == DIR_OK && catchall != NULL)
		st = target_check(dir, catchall, error);
	if (st == DIR_OK && add)
		st = run(dir, "INSERT INTO domains (name, cos_id, catchall, "
			 "default_quota) VALUES (?1, ?2, ?3, ?4)", NULL, error,
			 "titi", name, cid, catchall,
			 (int64_t)dom->default_quota);
	else if (st == DIR_OK)
		st = run(dir, "UPDATE domains SET cos_id = CASE WHEN ?2 = 0 "
			 "THEN cos_id ELSE ?2 END, catchall = ?3, "
			 "default_quota = ?4 WHERE id = ?1", NULL, error,
			 "iiti", did, cid, catchall,
			 (int64_t)dom->default_quota);
	st = write_end(dir, st, error);
out:
	free(name);
	free(catchall);
	return st;
}

static enum dir_status sq_domain_add(struct dir *handle,
				     const struct dir_domain *dom,
				     struct str *error)
{
	struct sdir *dir = (struct sdir *)handle;
	return domain_write(dir, dom, true, error);
}

static enum dir_status sq_domain_set(struct dir *handle,
				     const struct dir_domain *dom,
				     struct str *error)
{
	struct sdir *dir = (struct sdir *)handle;
	return domain_write(dir, dom, false, error);
}

static const char *plural(int64_t n, const char *one, const char *many)
{
	return n == 1 ? one : many;
}

static enum dir_status sq_domain_del(struct dir *handle, const char *name,
				     struct str *error)
{
	struct sdir *dir = (struct sdir *)handle;
	int64_t id, na = 0, nal = 0, nl = 0;
	char *norm = NULL;
	enum dir_status st;

	st = dir_norm_domain(name, &norm, error);
	if (st == DIR_OK)
		st = write_begin(dir, error);
	if (st != DIR_OK) {
		free(norm);
		return st;
	}
	st = domain_id(dir, norm, &id, error);
	if (st == DIR_OK)
		st = query_i64(dir, "SELECT count(*) FROM accounts WHERE "
			       "domain_id = ?1", &na, error, "i", id);
	if (st == DIR_OK)
		st = query_i64(dir, "SELECT count(*) FROM aliases WHERE "
			       "domain_id = ?1", &nal, error, "i", id);
	if (st == DIR_OK)
		st = query_i64(dir, "SELECT count(*) FROM lists WHERE "
			       "domain_id = ?1", &nl, error, "i", id);
	if (st == DIR_OK && na + nal + nl > 0) {
		str_setf(error, "domain %s still has %lld %s, %lld %s and "
			  "%lld %s: delete them first", norm, (long long)na,
			  plural(na, "account", "accounts"), (long long)nal,
			  plural(nal, "alias", "aliases"), (long long)nl,
			  plural(nl, "list", "lists"));
		st = DIR_REFUSED;
	}
	if (st == DIR_OK)
		st = run(dir, "DELETE FROM domains WHERE id = ?1", NULL, error,
			 "i", id);
	free(norm);
	return write_end(dir, st, error);
}

#define SQL_DOMAIN \
	"SELECT d.name, c.name, d.catchall, d.default_quota, " \
	"(SELECT count(*) FROM accounts a WHERE a.domain_id = d.id) " \
	"FROM domains d JOIN cos c ON c.id = d.cos_id"

static struct dir_domain *domain_row(sqlite3_stmt *st)
{
	struct dir_domain *d = xcalloc(1, sizeof(*d));

	d->name = col_dup(st, 0);
	d->cos = col_dup(st, 1);
	d->catchall = col_dup(st, 2);
	d->default_quota = (uint64_t)sqlite3_column_int64(st, 3);
	d->accounts = (uint32_t)sqlite3_column_int64(st, 4);
	return d;
}

static enum dir_status sq_domain_get(struct dir *handle, const char *name,
				     struct dir_domain **dom_r,
				     struct str *error)
{
	struct sdir *dir = (struct sdir *)handle;
	enum dir_status status;
	sqlite3_stmt *st = NULL;
	char *norm = NULL;
	int rc;

	*dom_r = NULL;
	status = dir_norm_domain(name, &norm, error);
	if (status == DIR_OK)
		status = stmt_open(dir, SQL_DOMAIN " WHERE d.name = ?1", &st,
				   error, "t", norm);
	if (status == DIR_OK) {
		rc = stmt_next(dir, st, &status, error);
		if (rc == 1) {
			*dom_r = domain_row(st);
		} else if (rc == 0) {
			str_setf(error, "domain %s does not exist", norm);
			status = DIR_NOTFOUND;
		}
	}
	sqlite3_finalize(st);
	free(norm);
	return status;
}

static enum dir_status sq_domain_list(struct dir *handle,
				      struct dir_domain ***list_r,
				      size_t *count_r, struct str *error)
{
	struct sdir *dir = (struct sdir *)handle;
	enum dir_status status;
	struct dir_domain **list = NULL;
	sqlite3_stmt *st;
	size_t n = 0;
	int rc;

	*list_r = NULL;
	*count_r = 0;
	status = stmt_open(dir, SQL_DOMAIN " ORDER BY d.name", &st, error, "");
	if (status != DIR_OK)
		return status;
	while ((rc = stmt_next(dir, st, &status, error)) == 1)
		dir_array_push((void ***)&list, &n, domain_row(st));
	sqlite3_finalize(st);
	if (rc < 0) {
		dir_domain_array_free(&list, n);
		return status;
	}
	*list_r = list;
	*count_r = n;
	return DIR_OK;
}

/* ---- accounts ---- */

static enum dir_status sq_account_add(struct dir *handle,
				      struct dir_account *acct,
				      struct str *error)
{
	struct sdir *dir = (struct sdir *)handle;
	char *addr = NULL, *host = NULL;
	int64_t did, cid = 0, now = (int64_t)time(NULL);
	enum dir_status st;

	st = dir_norm_address(acct->address, &addr, error);
	if (st == DIR_OK)
		st = dir_check_account(acct, &host, error);
	if (st == DIR_OK)
		st = write_begin(dir, error);
	if (st != DIR_OK)
		goto out;
	st = address_free(dir, addr, &did, error);
	if (st == DIR_OK && acct->cos != NULL)
		st = cos_id(dir, acct->cos, &cid, error);
	else if (st == DIR_OK)
		st = query_i64(dir, "SELECT cos_id FROM domains WHERE id = ?1",
			       &cid, error, "i", did);
	if (st == DIR_OK) {
		st = run(dir, "INSERT INTO accounts (address, domain_id, "
			 "display_name, password_hash, quota, status, "
			 "mailhost, cos_id, created) VALUES (?1, ?2, ?3, ?4, "
			 "?5, ?6, ?7, ?8, ?9)", NULL, error, "tittiitii",
			 addr, did, acct->display_name, acct->password_hash,
			 (int64_t)acct->quota, (int64_t)acct->status,
			 host != NULL ? host : "localhost", cid, now);
		if (st == DIR_EXISTS)
			str_setf(error, "account %s exists already", addr);
	}
	if (st == DIR_OK) {
		acct->id = sqlite3_last_insert_rowid(dir->db);
		acct->created = now;
	}
	st = write_end(dir, st, error);
out:
	free(addr);
	free(host);
	return st;
}

static enum dir_status sq_account_set(struct dir *handle,
				      const struct dir_account *acct,
				      struct str *error)
{
	struct sdir *dir = (struct sdir *)handle;
	char *addr = NULL, *host = NULL;
	enum dir_status st;
	int64_t cid = 0;
	int n = 0;

	st = dir_norm_address(acct->address, &addr, error);
	if (st == DIR_OK)
		st = dir_check_account(acct, &host, error);
	if (st == DIR_OK)
		st = write_begin(dir, error);
	if (st != DIR_OK)
		goto out;
	if (acct->cos != NULL)
		st = cos_id(dir, acct->cos, &cid, error);
	if (st == DIR_OK)
		st = run(dir, "UPDATE accounts SET display_name = ?2, "
			 "quota = ?3, status = ?4, "
			 "mailhost = coalesce(?5, mailhost), "
			 "cos_id = CASE WHEN ?6 = 0 THEN cos_id ELSE ?6 END, "
			 "password_hash = coalesce(?7, password_hash) "
			 "WHERE address = ?1", &n, error, "ttiitit", addr,
			 acct->display_name, (int64_t)acct->quota,
			 (int64_t)acct->status, host, cid,
			 acct->password_hash);
	if (st == DIR_OK && n == 0) {
		str_setf(error, "account %s does not exist", addr);
		st = DIR_NOTFOUND;
	}
	st = write_end(dir, st, error);
out:
	free(addr);
	free(host);
	return st;
}

/* Deletes one kind of entry by address, and its list memberships. */
static enum dir_status entry_del(struct sdir *dir, const char *address,
				 enum addr_kind kind, struct str *error)
{
	static const char *const sql[] = {
		[KIND_ACCOUNT] = "DELETE FROM accounts WHERE address = ?1",
		[KIND_ALIAS] = "DELETE FROM aliases WHERE address = ?1",
		[KIND_LIST] = "DELETE FROM lists WHERE address = ?1",
	};
	enum dir_status st;
	char *addr = NULL;
	int n = 0;

	st = dir_norm_address(address, &addr, error);
	if (st == DIR_OK)
		st = write_begin(dir, error);
	if (st != DIR_OK) {
		free(addr);
		return st;
	}
	st = run(dir, sql[kind], &n, error, "t", addr);
	if (st == DIR_OK && n == 0) {
		str_setf(error, "%s %s does not exist", kind_names[kind],
			  addr);
		st = DIR_NOTFOUND;
	}
	if (st == DIR_OK && kind != KIND_ALIAS)
		st = run(dir, "DELETE FROM list_members WHERE member = ?1",
			 NULL, error, "t", addr);
	free(addr);
	return write_end(dir, st, error);
}

static enum dir_status sq_account_del(struct dir *handle, const char *address,
				      struct str *error)
{
	struct sdir *dir = (struct sdir *)handle;
	return entry_del(dir, address, KIND_ACCOUNT, error);
}

#define SQL_ACCOUNT \
	"SELECT a.id, a.address, a.display_name, a.password_hash, a.quota, " \
	"CASE WHEN a.quota <> 0 THEN a.quota " \
	"WHEN d.default_quota <> 0 THEN d.default_quota ELSE c.quota END, " \
	"a.status, a.mailhost, c.name, a.created FROM accounts a " \
	"JOIN domains d ON d.id = a.domain_id JOIN cos c ON c.id = a.cos_id"

static struct dir_account *account_row(sqlite3_stmt *st)
{
	struct dir_account *a = xcalloc(1, sizeof(*a));
	int64_t status = sqlite3_column_int64(st, 6);

	a->id = sqlite3_column_int64(st, 0);
	a->address = col_dup(st, 1);
	a->display_name = col_dup(st, 2);
	a->password_hash = col_dup(st, 3);
	a->quota = (uint64_t)sqlite3_column_int64(st, 4);
	a->quota_effective = (uint64_t)sqlite3_column_int64(st, 5);
	a->status = status >= 0 && status <= DIR_ACCOUNT_CLOSED ?
		    (enum dir_account_status)status : DIR_ACCOUNT_LOCKED;
	a->mailhost = col_dup(st, 7);
	a->cos = col_dup(st, 8);
	a->created = sqlite3_column_int64(st, 9);
	return a;
}

static enum dir_status sq_account_get(struct dir *handle, const char *address,
				      struct dir_account **acct_r,
				      struct str *error)
{
	struct sdir *dir = (struct sdir *)handle;
	enum dir_status status;
	sqlite3_stmt *st = NULL;
	char *addr = NULL;
	int rc;

	*acct_r = NULL;
	status = dir_norm_address(address, &addr, error);
	if (status == DIR_OK)
		status = stmt_open(dir, SQL_ACCOUNT " WHERE a.address = ?1",
				   &st, error, "t", addr);
	if (status == DIR_OK) {
		rc = stmt_next(dir, st, &status, error);
		if (rc == 1) {
			*acct_r = account_row(st);
		} else if (rc == 0) {
			str_setf(error, "account %s does not exist", addr);
			status = DIR_NOTFOUND;
		}
	}
	sqlite3_finalize(st);
	free(addr);
	return status;
}

/* Normalizes an optional domain filter; it must exist. */
static enum dir_status domain_filter(struct sdir *dir, const char *domain,
				     char **norm_r, struct str *error)
{
	enum dir_status st;
	int64_t id;

	*norm_r = NULL;
	if (domain == NULL)
		return DIR_OK;
	st = dir_norm_domain(domain, norm_r, error);
	if (st == DIR_OK)
		st = domain_id(dir, *norm_r, &id, error);
	return st;
}

static enum dir_status sq_account_list(struct dir *handle, const char *domain,
				       struct dir_account ***list_r,
				       size_t *count_r, struct str *error)
{
	struct sdir *dir = (struct sdir *)handle;
	struct dir_account **list = NULL;
	sqlite3_stmt *st = NULL;
	enum dir_status status;
	char *dom = NULL;
	size_t n = 0;
	int rc = 0;

	*list_r = NULL;
	*count_r = 0;
	status = domain_filter(dir, domain, &dom, error);
	if (status == DIR_OK)
		status = stmt_open(dir, SQL_ACCOUNT " WHERE ?1 IS NULL OR "
				   "d.name = ?1 ORDER BY a.address", &st,
				   error, "t", dom);
	if (status == DIR_OK)
		while ((rc = stmt_next(dir, st, &status, error)) == 1)
			dir_array_push((void ***)&list, &n, account_row(st));
	sqlite3_finalize(st);
	free(dom);
	if (status != DIR_OK) {
		dir_account_array_free(&list, n);
		return status;
	}
	*list_r = list;
	*count_r = n;
	return DIR_OK;
}

/* ---- aliases ---- */

static enum dir_status sq_alias_add(struct dir *handle, const char *address,
				    const char *target, struct str *error)
{
	struct sdir *dir = (struct sdir *)handle;
	char *addr = NULL, *tgt = NULL;
	enum dir_status st;
	int64_t did;

	st = dir_norm_address(address, &addr, error);
	if (st == DIR_OK)
		st = dir_norm_address(target, &tgt, error);
	if (st == DIR_OK && strcmp(addr, tgt) == 0) {
		str_setf(error, "alias %s cannot point to itself", addr);
		st = DIR_INVALID;
	}
	if (st == DIR_OK)
		st = write_begin(dir, error);
	if (st != DIR_OK)
		goto out;
	st = address_free(dir, addr, &did, error);
	if (st == DIR_OK)
		st = target_check(dir, tgt, error);
	if (st == DIR_OK) {
		st = run(dir, "INSERT INTO aliases (address, domain_id, "
			 "target) VALUES (?1, ?2, ?3)", NULL, error, "tit",
			 addr, did, tgt);
		if (st == DIR_EXISTS)
			str_setf(error, "alias %s exists already", addr);
	}
	st = write_end(dir, st, error);
out:
	free(addr);
	free(tgt);
	return st;
}

static enum dir_status sq_alias_del(struct dir *handle, const char *address,
				    struct str *error)
{
	struct sdir *dir = (struct sdir *)handle;
	return entry_del(dir, address, KIND_ALIAS, error);
}

static enum dir_status sq_alias_list(struct dir *handle, const char *domain,
				     struct dir_alias ***list_r,
				     size_t *count_r, struct str *error)
{
	struct sdir *dir = (struct sdir *)handle;
	struct dir_alias **list = NULL;
	sqlite3_stmt *st = NULL;
	enum dir_status status;
	char *dom = NULL;
	size_t n = 0;

	*list_r = NULL;
	*count_r = 0;
	status = domain_filter(dir, domain, &dom, error);
	if (status == DIR_OK)
		status = stmt_open(dir, "SELECT a.address, a.target FROM "
				   "aliases a JOIN domains d ON d.id = "
				   "a.domain_id WHERE ?1 IS NULL OR d.name = "
				   "?1 ORDER BY a.address", &st, error, "t",
				   dom);
	while (status == DIR_OK && stmt_next(dir, st, &status, error) == 1) {
		struct dir_alias *a = xcalloc(1, sizeof(*a));

		a->address = col_dup(st, 0);
		a->target = col_dup(st, 1);
		dir_array_push((void ***)&list, &n, a);
	}
	sqlite3_finalize(st);
	free(dom);
	if (status != DIR_OK) {
		dir_alias_array_free(&list, n);
		return status;
	}
	*list_r = list;
	*count_r = n;
	return DIR_OK;
}

/* ---- distribution lists ---- */

static enum dir_status sq_list_add(struct dir *handle, const char *address,
				   struct str *error)
{
	struct sdir *dir = (struct sdir *)handle;
	enum dir_status st;
	char *addr = NULL;
	int64_t did;

	st = dir_norm_address(address, &addr, error);
	if (st == DIR_OK)
		st = write_begin(dir, error);
	if (st != DIR_OK) {
		free(addr);
		return st;
	}
	st = address_free(dir, addr, &did, error);
	if (st == DIR_OK) {
		st = run(dir, "INSERT INTO lists (address, domain_id) VALUES "
			 "(?1, ?2)", NULL, error, "ti", addr, did);
		if (st == DIR_EXISTS)
			str_setf(error, "list %s exists already", addr);
	}
	free(addr);
	return write_end(dir, st, error);
}

static enum dir_status sq_list_del(struct dir *handle, const char *address,
				   struct str *error)
{
	struct sdir *dir = (struct sdir *)handle;
	return entry_del(dir, address, KIND_LIST, error);
}

static enum dir_status member_write(struct sdir *dir, const char *list,
				    const char *member, bool add,
				    struct str *error)
{
	char *laddr = NULL, *maddr = NULL;
	enum dir_status st;
	int64_t lid;
	int n = 0;

	st = dir_norm_address(list, &laddr, error);
	if (st == DIR_OK)
		st = dir_norm_address(member, &maddr, error);
	if (st == DIR_OK && add && strcmp(laddr, maddr) == 0) {
		str_setf(error, "list %s cannot contain itself", laddr);
		st = DIR_INVALID;
	}
	if (st == DIR_OK)
		st = write_begin(dir, error);
	if (st != DIR_OK)
		goto out;
	st = query_i64(dir, "SELECT id FROM lists WHERE address = ?1", &lid,
		       error, "t", laddr);
	if (st == DIR_NOTFOUND)
		str_setf(error, "list %s does not exist", laddr);
	if (st == DIR_OK && add)
		st = target_check(dir, maddr, error);
	if (st == DIR_OK && add) {
		st = run(dir, "INSERT INTO list_members (list_id, member) "
			 "VALUES (?1, ?2)", NULL, error, "it", lid, maddr);
		if (st == DIR_EXISTS)
			str_setf(error, "%s is already a member of list %s",
				  maddr, laddr);
	} else if (st == DIR_OK) {
		st = run(dir, "DELETE FROM list_members WHERE list_id = ?1 "
			 "AND member = ?2", &n, error, "it", lid, maddr);
		if (st == DIR_OK && n == 0) {
			str_setf(error, "%s is not a member of list %s", maddr,
				  laddr);
			st = DIR_NOTFOUND;
		}
	}
	st = write_end(dir, st, error);
out:
	free(laddr);
	free(maddr);
	return st;
}

static enum dir_status sq_list_member_add(struct dir *handle, const char *list,
					  const char *member, struct str *error)
{
	struct sdir *dir = (struct sdir *)handle;
	return member_write(dir, list, member, true, error);
}

static enum dir_status sq_list_member_del(struct dir *handle, const char *list,
					  const char *member, struct str *error)
{
	struct sdir *dir = (struct sdir *)handle;
	return member_write(dir, list, member, false, error);
}

/*
 * Collects (list address, member or NULL) rows, ordered by list address,
 * into list records.
 */
static enum dir_status list_rows(struct sdir *dir, sqlite3_stmt *st,
				 struct dir_list_info ***list_r,
				 size_t *count_r, struct str *error)
{
	struct dir_list_info **list = NULL, *cur = NULL;
	enum dir_status status = DIR_OK;
	size_t n = 0;

	while (stmt_next(dir, st, &status, error) == 1) {
		const char *a = (const char *)sqlite3_column_text(st, 0);

		if (cur == NULL || strcmp(cur->address, a) != 0) {
			cur = xcalloc(1, sizeof(*cur));
			cur->address = xstrdup(a);
			cur->members = xcalloc(1, sizeof(char *));
			dir_array_push((void ***)&list, &n, cur);
		}
		if (sqlite3_column_type(st, 1) == SQLITE_NULL)
			continue;
		cur->members = xrealloc(cur->members, (cur->nmembers + 2) *
					sizeof(char *));
		cur->members[cur->nmembers++] = col_dup(st, 1);
		cur->members[cur->nmembers] = NULL;
	}
	if (status != DIR_OK) {
		dir_list_info_array_free(&list, n);
		return status;
	}
	*list_r = list;
	*count_r = n;
	return DIR_OK;
}

#define SQL_LIST \
	"SELECT l.address, m.member FROM lists l " \
	"JOIN domains d ON d.id = l.domain_id " \
	"LEFT JOIN list_members m ON m.list_id = l.id "

static enum dir_status sq_list_get(struct dir *handle, const char *address,
				   struct dir_list_info **list_r,
				   struct str *error)
{
	struct sdir *dir = (struct sdir *)handle;
	struct dir_list_info **list = NULL;
	sqlite3_stmt *st = NULL;
	enum dir_status status;
	char *addr = NULL;
	size_t n = 0;

	*list_r = NULL;
	status = dir_norm_address(address, &addr, error);
	if (status == DIR_OK)
		status = stmt_open(dir, SQL_LIST "WHERE l.address = ?1 "
				   "ORDER BY m.member", &st, error, "t", addr);
	if (status == DIR_OK)
		status = list_rows(dir, st, &list, &n, error);
	if (status == DIR_OK && n == 0) {
		str_setf(error, "list %s does not exist", addr);
		status = DIR_NOTFOUND;
	}
	if (status == DIR_OK) {
		*list_r = list[0];
		free(list);
	}
	sqlite3_finalize(st);
	free(addr);
	return status;
}

static enum dir_status sq_list_list(struct dir *handle, const char *domain,
				    struct dir_list_info ***list_r,
				    size_t *count_r, struct str *error)
{
	struct sdir *dir = (struct sdir *)handle;
	sqlite3_stmt *st = NULL;
	enum dir_status status;
	char *dom = NULL;

	*list_r = NULL;
	*count_r = 0;
	status = domain_filter(dir, domain, &dom, error);
	if (status == DIR_OK)
		status = stmt_open(dir, SQL_LIST "WHERE ?1 IS NULL OR d.name "
				   "= ?1 ORDER BY l.address, m.member", &st,
				   error, "t", dom);
	if (status == DIR_OK)
		status = list_rows(dir, st, list_r, count_r, error);
	sqlite3_finalize(st);
	free(dom);
	return status;
}

/* ---- resolution primitives (dir.c walks the graph) ---- */

static enum dir_status sq_resolve_begin(struct dir *handle, struct str *error)
{
	struct sdir *dir = (struct sdir *)handle;
	enum dir_status st = exec_sql(dir, "BEGIN", error);

	if (st == DIR_OK)
		st = stmt_open(dir, sql_kind, &dir->res_kind, error, "");
	if (st == DIR_OK)
		st = stmt_open(dir, "SELECT member FROM list_members WHERE "
			       "list_id = ?1 ORDER BY member",
			       &dir->res_members, error, "");
	if (st == DIR_OK)
		st = stmt_open(dir, "SELECT catchall FROM domains WHERE "
			       "name = ?1", &dir->res_domain, error, "");
	return st;
}

static void sq_resolve_end(struct dir *handle)
{
	struct sdir *dir = (struct sdir *)handle;

	sqlite3_finalize(dir->res_kind);
	sqlite3_finalize(dir->res_members);
	sqlite3_finalize(dir->res_domain);
	dir->res_kind = dir->res_members = dir->res_domain = NULL;
	(void)sqlite3_exec(dir->db, "COMMIT", NULL, NULL, NULL);
}

static enum dir_status sq_node(struct dir *handle, const char *address,
			       struct dir_node *node, struct str *error)
{
	struct sdir *dir = (struct sdir *)handle;
	sqlite3_stmt *row = dir->res_kind, *m = dir->res_members;
	enum dir_status status = DIR_OK;
	int rc;

	if (row == NULL || m == NULL) {
		str_setf(error, "resolution not started");
		return DIR_TEMPFAIL;
	}
	sqlite3_reset(row);
	if (sqlite3_bind_text(row, 1, address, -1, SQLITE_TRANSIENT) !=
	    SQLITE_OK)
		return db_fail(dir, SQLITE_NOMEM, "bind", error);
	rc = stmt_next(dir, row, &status, error);
	if (rc < 0)
		return status;
	if (rc == 0)
		return DIR_OK;
	switch ((enum addr_kind)sqlite3_column_int(row, 0)) {
	case KIND_ACCOUNT:
		node->kind = DIR_NODE_ACCOUNT;
		node->account_id = sqlite3_column_int64(row, 1);
		node->mailhost = col_dup(row, 2);
		node->status = (enum dir_account_status)
			sqlite3_column_int(row, 3);
		break;
	case KIND_ALIAS:
		node->kind = DIR_NODE_ALIAS;
		node->target = col_dup(row, 4);
		break;
	case KIND_LIST:
		node->kind = DIR_NODE_LIST;
		sqlite3_reset(m);
		if (sqlite3_bind_int64(m, 1, sqlite3_column_int64(row, 1)) !=
		    SQLITE_OK)
			return db_fail(dir, SQLITE_NOMEM, "bind", error);
		while (stmt_next(dir, m, &status, error) == 1)
			dir_array_push((void ***)&node->members,
				       &node->nmembers, col_dup(m, 0));
		break;
	case KIND_NONE:
		break;
	}
	return status;
}

static int sq_domain_catchall(struct dir *handle, const char *domain,
			      char **catchall_r, enum dir_status *st_r,
			      struct str *error)
{
	struct sdir *dir = (struct sdir *)handle;
	sqlite3_stmt *d = dir->res_domain;
	int rc;

	*catchall_r = NULL;
	if (d == NULL) {
		str_setf(error, "resolution not started");
		*st_r = DIR_TEMPFAIL;
		return -1;
	}
	sqlite3_reset(d);
	if (sqlite3_bind_text(d, 1, domain, -1, SQLITE_TRANSIENT) !=
	    SQLITE_OK) {
		*st_r = db_fail(dir, SQLITE_NOMEM, "bind", error);
		return -1;
	}
	rc = stmt_next(dir, d, st_r, error);
	if (rc == 1)
		*catchall_r = col_dup(d, 0);
	return rc;
}

/* ---- the address book ---- */

/* "%TEXT%" for LIKE ... ESCAPE '\', with '%', '_' and '\' in text
 * escaped by a backslash (malloc'd). */
static char *like_pattern(const char *text)
{
	size_t n = strlen(text);
	char *p = xmalloc(2 * n + 3), *o = p;

	*o++ = '%';
	for (size_t i = 0; i < n; i++) {
		if (text[i] == '%' || text[i] == '_' || text[i] == '\\')
			*o++ = '\\';
		*o++ = text[i];
	}
	*o++ = '%';
	*o = '\0';
	return p;
}

/* Accounts (not closed) by address or display name, lists by address,
 * and both by the address of an alias pointing at them. */
static const char sql_gal[] =
	"SELECT address, display_name, 0 FROM accounts WHERE status != ?3 "
	"AND (address LIKE ?1 ESCAPE '\\' OR display_name LIKE ?1 "
	"ESCAPE '\\' OR address IN (SELECT target FROM aliases WHERE "
	"address LIKE ?1 ESCAPE '\\')) "
	"UNION SELECT address, NULL, 1 FROM lists WHERE address LIKE ?1 "
	"ESCAPE '\\' OR address IN (SELECT target FROM aliases WHERE "
	"address LIKE ?1 ESCAPE '\\') ORDER BY 1 LIMIT ?2";

static enum dir_status sq_gal_search(struct dir *handle, const char *text,
				     size_t limit,
				     struct dir_gal_entry ***list_r,
				     size_t *count_r, struct str *error)
{
	struct sdir *dir = (struct sdir *)handle;
	struct dir_gal_entry **list = NULL;
	enum dir_status status;
	char *pattern = like_pattern(text);
	sqlite3_stmt *st;
	size_t n = 0;
	int rc;

	status = stmt_open(dir, sql_gal, &st, error, "tii", pattern,
			   (int64_t)limit, (int64_t)DIR_ACCOUNT_CLOSED);
	free(pattern);
	if (status != DIR_OK)
		return status;
	while ((rc = stmt_next(dir, st, &status, error)) == 1) {
		struct dir_gal_entry *e = xcalloc(1, sizeof(*e));

		e->address = col_dup(st, 0);
		e->display_name = col_dup(st, 1);
		e->kind = sqlite3_column_int(st, 2) == 1 ? DIR_GAL_LIST :
							   DIR_GAL_ACCOUNT;
		if (e->address == NULL)
			e->address = xstrdup("");
		dir_array_push((void ***)&list, &n, e);
	}
	sqlite3_finalize(st);
	*list_r = list;
	*count_r = n;
	return rc < 0 ? status : DIR_OK;
}

/* ---- the table dir.c dispatches through ---- */

static const struct dir_ops sqlite_ops = {
	.name = "sqlite",
	.close = sq_close,
	.serial = sq_serial,
	.cos_add = sq_cos_add,
	.cos_set = sq_cos_set,
	.cos_del = sq_cos_del,
	.cos_get = sq_cos_get,
	.cos_list = sq_cos_list,
	.domain_add = sq_domain_add,
	.domain_set = sq_domain_set,
	.domain_del = sq_domain_del,
	.domain_get = sq_domain_get,
	.domain_list = sq_domain_list,
	.account_add = sq_account_add,
	.account_set = sq_account_set,
	.account_del = sq_account_del,
	.account_get = sq_account_get,
	.account_list = sq_account_list,
	.alias_add = sq_alias_add,
	.alias_del = sq_alias_del,
	.alias_list = sq_alias_list,
	.list_add = sq_list_add,
	.list_del = sq_list_del,
	.list_member_add = sq_list_member_add,
	.list_member_del = sq_list_member_del,
	.list_get = sq_list_get,
	.list_list = sq_list_list,
	.gal_search = sq_gal_search,
	.resolve_begin = sq_resolve_begin,
	.resolve_end = sq_resolve_end,
	.node = sq_node,
	.domain_catchall = sq_domain_catchall,
};
