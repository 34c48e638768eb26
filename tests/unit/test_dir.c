/* test_dir.c: the directory (dir.h) on the embedded SQLite backend, each
 * test on a fresh database in its own temporary folder; then the tests of
 * stored data again on the LDAP backend, against a private slapd (when
 * /usr/sbin/slapd is installed and TERN_TOP_SRCDIR names the source tree),
 * each test under a fresh base DN, bound with SASL EXTERNAL. */
#include "config.h"

#include <argon2.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <ldap.h>
#include <sasl/sasl.h>
#include <sqlite3.h>

#include "compat.h"
#include "dir.h"
#include "str.h"

/* openssl passwd -6 -salt ternsalt 'correct horse' */
#define SHA512_HASH "$6$ternsalt$HFhOcyztjhONQM9BDtIV103a4.LHB0oJBAq/SW7Soi4" \
	"N4DSpIEgjY/o8ekhEcTQAHg4JVVIODuPJPoSbbIPWG0"

struct fx {
	char tmp[64];
	char path[128];
	struct dir *d;
	struct str *err;
};

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	snprintf(f->tmp, sizeof(f->tmp), "/tmp/tern-test-dir-XXXXXX");
	assert_non_null(mkdtemp(f->tmp));
	snprintf(f->path, sizeof(f->path), "%s/directory.db", f->tmp);
	f->err = str_new(256, 4096);
	assert_int_equal(dir_open_sqlite(f->path, false, &f->d, f->err),
			 DIR_OK);
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;
	char p[192];

	dir_close(&f->d);
	assert_null(f->d);
	str_free(&f->err);
	for (const char *const *s = (const char *const[]){ "", "-wal", "-shm",
							   NULL }; *s; s++) {
		snprintf(p, sizeof(p), "%s%s", f->path, *s);
		unlink(p);
	}
	rmdir(f->tmp);
	free(f);
	return 0;
}

/* ---- helpers ---- */

static void add_domain(struct fx *f, const char *name)
{
	struct dir_domain dom = { .name = (char *)name };

	assert_int_equal(dir_domain_add(f->d, &dom, f->err), DIR_OK);
}

static int64_t add_account(struct fx *f, const char *address,
			   const char *hash)
{
	struct dir_account a = { .address = (char *)address,
				 .password_hash = (char *)hash,
				 .mailhost = "mail1.example.com" };

	assert_int_equal(dir_account_add(f->d, &a, f->err), DIR_OK);
	assert_true(a.id > 0);
	assert_true(a.created > 0);
	return a.id;
}

static void add_list(struct fx *f, const char *list, const char *members[])
{
	assert_int_equal(dir_list_add(f->d, list, f->err), DIR_OK);
	for (size_t i = 0; members != NULL && members[i] != NULL; i++)
		assert_int_equal(dir_list_member_add(f->d, list, members[i],
						     f->err), DIR_OK);
}

static void expect_error(struct fx *f, enum dir_status got,
			 enum dir_status want, const char *needle)
{
	if (got != want)
		fail_msg("status %s, want %s (%s)", dir_status_name(got),
			 dir_status_name(want), str_c(f->err));
	if (needle != NULL && strstr(str_c(f->err), needle) == NULL)
		fail_msg("'%s' not in '%s'", needle, str_c(f->err));
}

static uint64_t serial(struct dir *d)
{
	uint64_t s = 0;

	assert_int_equal(dir_serial(d, &s, NULL), DIR_OK);
	return s;
}

/* The resolution's targets as "address" or "address:status" lines. */
static void expect_targets(struct dir_resolution *res, const char *want)
{
	struct str *s = str_new(256, 65536);

	for (size_t i = 0; i < res->ntargets; i++) {
		const struct dir_target *t = &res->targets[i];

		assert_int_equal(str_printf(s, "%s%s%s", i ? " " : "",
					    t->kind == DIR_TARGET_EXTERNAL ?
					    "ext:" : "", t->address), 0);
		if (t->kind == DIR_TARGET_ACCOUNT) {
			assert_string_equal(t->mailhost, "mail1.example.com");
			assert_true(t->account_id > 0);
		}
	}
	assert_string_equal(str_c(s), want);
	str_free(&s);
}

/* ---- names and normalization ---- */

static void test_status_names(void **state)
{
	enum dir_account_status st;

	assert_string_equal(dir_status_name(DIR_TEMPFAIL), "temporary failure");
	assert_string_equal(dir_status_name(DIR_OK), "ok");
	assert_string_equal(dir_account_status_name(DIR_ACCOUNT_LOCKED),
			    "locked");
	assert_int_equal(dir_account_status_parse("closed", &st), 0);
	assert_int_equal(st, DIR_ACCOUNT_CLOSED);
	assert_int_equal(dir_account_status_parse("Closed", &st), -1);
	assert_int_equal(dir_account_status_parse("", &st), -1);
}

static void test_normalize(void **state)
{
	static const char *const bad[] = {
		"", "bob", "@example.com", "bob@", "bob@@example.com",
		".bob@example.com", "bob.@example.com", "b..ob@example.com",
		"b ob@example.com", "\"bob\"@example.com", "bob@exa mple.com",
		"bob@-example.com", "bob@example-.com", "bob@exa..mple.com",
		"bob@exa_mple.com", "bob@[192.0.2.1]", "bob@example.com.",
		"b\x01ob@example.com", "bob@xn--zz.example", "bøb@example.com",
	};
	struct str *out = str_new(64, DIR_ADDRESS_MAX);
	struct str *err = str_new(64, 4096);
	char local[80], buf[400];
	char *detail = NULL;

	assert_int_equal(dir_address_normalize("Bob.Smith@Example.COM", out,
					       NULL, err), DIR_OK);
	assert_string_equal(str_c(out), "bob.smith@example.com");
	assert_int_equal(dir_address_normalize("bob@Bücher.example", out,
					       NULL, err), DIR_OK);
	assert_string_equal(str_c(out), "bob@xn--bcher-kva.example");
	assert_int_equal(dir_domain_normalize("Bücher.example", out, err),
			 DIR_OK);
	assert_string_equal(str_c(out), "xn--bcher-kva.example");
	assert_int_equal(dir_domain_normalize("XN--BCHER-KVA.example", out,
					      err), DIR_OK);
	assert_string_equal(str_c(out), "xn--bcher-kva.example");
	assert_int_equal(dir_address_normalize("o'neil+x!#$%&*/=?^_`{|}~-@a.b",
					       out, NULL, err), DIR_OK);

	/* plus-addressing */
	assert_int_equal(dir_address_normalize("Bob+Tag@example.com", out,
					       &detail, err), DIR_OK);
	assert_string_equal(str_c(out), "bob@example.com");
	assert_string_equal(detail, "tag");
	free(detail);
	assert_int_equal(dir_address_normalize("bob+a+b@example.com", out,
					       &detail, err), DIR_OK);
	assert_string_equal(str_c(out), "bob@example.com");
	assert_string_equal(detail, "a+b");
	free(detail);
	assert_int_equal(dir_address_normalize("bob@example.com", out,
					       &detail, err), DIR_OK);
	assert_null(detail);
	assert_int_equal(dir_address_normalize("+tag@example.com", out,
					       &detail, err), DIR_OK);
	assert_string_equal(str_c(out), "+tag@example.com");
	assert_null(detail);
	assert_int_equal(dir_address_normalize("bob+tag@example.com", out,
					       NULL, err), DIR_OK);
	assert_string_equal(str_c(out), "bob+tag@example.com");

	for (size_t i = 0; i < TERN_NELEM(bad); i++) {
		str_clear(err);
		if (dir_address_normalize(bad[i], out, &detail, err) !=
		    DIR_INVALID)
			fail_msg("accepted '%s'", bad[i]);
		assert_null(detail);
		assert_true(str_len(err) > 0);
	}

	/* lengths: local part 64, label 63, domain 255 */
	memset(local, 'a', 64);
	local[64] = '\0';
	snprintf(buf, sizeof(buf), "%s@example.com", local);
	assert_int_equal(dir_address_normalize(buf, out, NULL, err), DIR_OK);
	snprintf(buf, sizeof(buf), "%sa@example.com", local);
	assert_int_equal(dir_address_normalize(buf, out, NULL, err),
			 DIR_INVALID);
	memset(local, 'b', 63);
	local[63] = '\0';
	snprintf(buf, sizeof(buf), "%s.example", local);
	assert_int_equal(dir_domain_normalize(buf, out, err), DIR_OK);
	snprintf(buf, sizeof(buf), "%sb.example", local);
	assert_int_equal(dir_domain_normalize(buf, out, err), DIR_INVALID);
	snprintf(buf, sizeof(buf), "%s.%s.%s.%s", local, local, local, local);
	assert_int_equal(strlen(buf), 255);
	assert_int_equal(dir_domain_normalize(buf, out, err), DIR_OK);
	snprintf(buf, sizeof(buf), "%s.%s.%s.%s.a", local, local, local,
		 local);
	assert_int_equal(dir_domain_normalize(buf, out, err), DIR_INVALID);
	str_free(&out);
	str_free(&err);
}

/* ---- passwords ---- */

static void test_passwords(void **state)
{
	struct str *h = str_new(128, 1024), *h2 = str_new(128, 1024);
	char enc[256];
	const unsigned char salt[16] = "0123456789abcdef";

	assert_int_equal(dir_password_hash("s3cret pw", h, NULL), DIR_OK);
	assert_memory_equal(str_c(h), "$argon2id$v=19$m=32768,t=3,p=1$", 31);
	assert_true(dir_password_verify("s3cret pw", str_c(h)));
	assert_false(dir_password_verify("s3cret pX", str_c(h)));
	assert_false(dir_password_verify("", str_c(h)));
	/* a random salt each time */
	assert_int_equal(dir_password_hash("s3cret pw", h2, NULL), DIR_OK);
	assert_string_not_equal(str_c(h), str_c(h2));
	assert_int_equal(dir_password_hash("", h2, NULL), DIR_INVALID);
	/* Machine secrets: a cheap hash, and only for long ones. */
	assert_int_equal(dir_secret_hash("0123456789abcdef0123456789abcdef"
					 "01234567", h2, NULL), DIR_OK);
	assert_memory_equal(str_c(h2), "$argon2id$v=19$m=256,t=1,p=1$", 29);
	assert_true(dir_password_verify("0123456789abcdef0123456789abcdef"
					"01234567", str_c(h2)));
	assert_false(dir_password_verify("0123456789abcdef0123456789abcdef"
					 "01234568", str_c(h2)));
	assert_int_equal(dir_secret_hash("short", h2, NULL), DIR_INVALID);

	assert_true(dir_password_verify("correct horse", SHA512_HASH));
	assert_false(dir_password_verify("correct horsE", SHA512_HASH));
	assert_false(dir_password_verify("correct horse", "$6$ternsalt$x"));

	assert_int_equal(argon2i_hash_encoded(2, 1024, 1, "old pw", 6, salt,
					      sizeof(salt), 32, enc,
					      sizeof(enc)), ARGON2_OK);
	assert_true(dir_password_verify("old pw", enc));
	assert_false(dir_password_verify("old px", enc));
	/* Two lanes: verified by libargon2 rather than libsodium. */
	assert_int_equal(argon2id_hash_encoded(2, 1024, 2, "lanes", 5, salt,
					       sizeof(salt), 32, enc,
					       sizeof(enc)), ARGON2_OK);
	assert_non_null(strstr(enc, ",p=2$"));
	assert_true(dir_password_verify("lanes", enc));
	assert_false(dir_password_verify("lanez", enc));

	assert_false(dir_password_verify("x", "x"));
	assert_false(dir_password_verify("x", ""));
	assert_false(dir_password_verify("x", "$1$abc$def"));
	assert_false(dir_password_verify("x", NULL));
	str_free(&h);
	str_free(&h2);
}

/* ---- classes of service ---- */

static void test_cos(void **state)
{
	struct fx *f = *state;
	struct dir_cos gold = { .name = "gold", .quota = 10ULL << 30,
				.max_message_size = 50 << 20,
				.max_recipients = 500 };
	struct dir_cos bad = { .name = "no spaces" };
	struct dir_cos **list;
	struct dir_cos *c;
	struct dir_domain dom = { .name = "example.com", .cos = "gold" };
	size_t n;

	assert_int_equal(dir_cos_get(f->d, "default", &c, f->err), DIR_OK);
	assert_int_equal(c->quota, 0);
	dir_cos_free(&c);
	assert_null(c);
	assert_int_equal(dir_cos_add(f->d, &gold, f->err), DIR_OK);
	expect_error(f, dir_cos_add(f->d, &gold, f->err), DIR_EXISTS,
		     "cos gold exists already");
	expect_error(f, dir_cos_add(f->d, &bad, f->err), DIR_INVALID, "cos");
	assert_int_equal(dir_cos_get(f->d, "gold", &c, f->err), DIR_OK);
	assert_int_equal(c->quota, 10ULL << 30);
	assert_int_equal(c->max_message_size, 50 << 20);
	assert_int_equal(c->max_recipients, 500);
	c->max_recipients = 100;
	assert_int_equal(dir_cos_set(f->d, c, f->err), DIR_OK);
	dir_cos_free(&c);
	assert_int_equal(dir_cos_get(f->d, "gold", &c, f->err), DIR_OK);
	assert_int_equal(c->max_recipients, 100);
	dir_cos_free(&c);
	expect_error(f, dir_cos_get(f->d, "silver", &c, f->err), DIR_NOTFOUND,
		     "cos silver does not exist");
	assert_null(c);
	bad.name = "silver";
	expect_error(f, dir_cos_set(f->d, &bad, f->err), DIR_NOTFOUND,
		     "silver");
	assert_int_equal(dir_cos_list(f->d, &list, &n, f->err), DIR_OK);
	assert_int_equal(n, 2);
	assert_string_equal(list[0]->name, "default");
	assert_string_equal(list[1]->name, "gold");
	dir_cos_array_free(&list, n);
	assert_null(list);

	assert_int_equal(dir_domain_add(f->d, &dom, f->err), DIR_OK);
	expect_error(f, dir_cos_del(f->d, "gold", f->err), DIR_REFUSED,
		     "cos gold is still used by 1 domain and 0 accounts");
	expect_error(f, dir_cos_del(f->d, "default", f->err), DIR_REFUSED,
		     "default");
	expect_error(f, dir_cos_del(f->d, "silver", f->err), DIR_NOTFOUND,
		     "silver");
	assert_int_equal(dir_domain_del(f->d, "example.com", f->err), DIR_OK);
	assert_int_equal(dir_cos_del(f->d, "gold", f->err), DIR_OK);
	expect_error(f, dir_cos_get(f->d, "gold", &c, f->err), DIR_NOTFOUND,
		     NULL);
}

/* ---- domains ---- */

static void test_domains(void **state)
{
	struct fx *f = *state;
	struct dir_domain dom = { .name = "Bücher.example" };
	struct dir_domain **list;
	struct dir_domain *d;
	size_t n;

	assert_int_equal(dir_domain_add(f->d, &dom, f->err), DIR_OK);
	dom.name = "xn--bcher-kva.EXAMPLE";
	expect_error(f, dir_domain_add(f->d, &dom, f->err), DIR_EXISTS,
		     "domain xn--bcher-kva.example exists already");
	dom.name = "bad domain";
	expect_error(f, dir_domain_add(f->d, &dom, f->err), DIR_INVALID,
		     "invalid domain");
	dom.name = "example.org";
	dom.cos = "nosuch";
	expect_error(f, dir_domain_add(f->d, &dom, f->err), DIR_NOTFOUND,
		     "cos nosuch does not exist");
	dom.cos = NULL;
	dom.catchall = "nobody@bücher.example";
	expect_error(f, dir_domain_add(f->d, &dom, f->err), DIR_NOTFOUND,
		     "nobody@xn--bcher-kva.example does not exist");
	dom.catchall = "postmaster@elsewhere.example";
	dom.default_quota = 1 << 30;
	assert_int_equal(dir_domain_add(f->d, &dom, f->err), DIR_OK);
	add_domain(f, "example.com");
	add_account(f, "a@example.com", NULL);
	add_account(f, "b@example.com", NULL);

	assert_int_equal(dir_domain_list(f->d, &list, &n, f->err), DIR_OK);
	assert_int_equal(n, 3);
	assert_string_equal(list[0]->name, "example.com");
	assert_int_equal(list[0]->accounts, 2);
	assert_string_equal(list[1]->name, "example.org");
	assert_string_equal(list[1]->catchall, "postmaster@elsewhere.example");
	assert_int_equal(list[1]->default_quota, 1 << 30);
	assert_string_equal(list[1]->cos, "default");
	assert_string_equal(list[2]->name, "xn--bcher-kva.example");
	dir_domain_array_free(&list, n);

	assert_int_equal(dir_domain_get(f->d, "EXAMPLE.org", &d, f->err),
			 DIR_OK);
	free(d->catchall);
	d->catchall = NULL;
	d->default_quota = 0;
	assert_int_equal(dir_domain_set(f->d, d, f->err), DIR_OK);
	dir_domain_free(&d);
	assert_int_equal(dir_domain_get(f->d, "example.org", &d, f->err),
			 DIR_OK);
	assert_null(d->catchall);
	assert_int_equal(d->default_quota, 0);
	dir_domain_free(&d);
	expect_error(f, dir_domain_get(f->d, "nosuch.example", &d, f->err),
		     DIR_NOTFOUND, "domain nosuch.example does not exist");
	dom.name = "nosuch.example";
	dom.catchall = NULL;
	expect_error(f, dir_domain_set(f->d, &dom, f->err), DIR_NOTFOUND,
		     "nosuch.example");

	assert_int_equal(dir_alias_add(f->d, "x@example.com", "a@example.com",
				       f->err), DIR_OK);
	expect_error(f, dir_domain_del(f->d, "example.com", f->err),
		     DIR_REFUSED, "domain example.com still has 2 accounts, "
		     "1 alias and 0 lists: delete them first");
	assert_int_equal(dir_domain_get(f->d, "example.com", &d, f->err),
			 DIR_OK);
	dir_domain_free(&d);
	expect_error(f, dir_domain_del(f->d, "nosuch.example", f->err),
		     DIR_NOTFOUND, NULL);
	assert_int_equal(dir_domain_del(f->d, "bücher.example", f->err),
			 DIR_OK);
	assert_int_equal(dir_domain_list(f->d, &list, &n, f->err), DIR_OK);
	assert_int_equal(n, 2);
	dir_domain_array_free(&list, n);
}

/* ---- accounts ---- */

static void test_accounts(void **state)
{
	struct fx *f = *state;
	struct dir_account a = { .address = "Carol@Example.com",
				 .display_name = "Carol C",
				 .status = DIR_ACCOUNT_ACTIVE };
	struct dir_cos gold = { .name = "gold", .quota = 5 << 20 };
	struct dir_account **list;
	struct dir_account *g;
	int64_t id1, id2;
	size_t n;

	add_domain(f, "example.com");
	add_domain(f, "example.net");
	assert_int_equal(dir_cos_add(f->d, &gold, f->err), DIR_OK);
	assert_int_equal(dir_account_add(f->d, &a, f->err), DIR_OK);
	id1 = a.id;
	expect_error(f, dir_account_add(f->d, &a, f->err), DIR_EXISTS,
		     "account carol@example.com exists already");
	a.address = "carol@nosuch.example";
	expect_error(f, dir_account_add(f->d, &a, f->err), DIR_NOTFOUND,
		     "domain nosuch.example does not exist");
	a.address = "not an address";
	expect_error(f, dir_account_add(f->d, &a, f->err), DIR_INVALID,
		     "invalid address");
	a.address = "dave@example.com";
	a.password_hash = "plaintext";
	expect_error(f, dir_account_add(f->d, &a, f->err), DIR_INVALID,
		     "hash");
	a.password_hash = NULL;
	a.cos = "nosuch";
	expect_error(f, dir_account_add(f->d, &a, f->err), DIR_NOTFOUND,
		     "cos nosuch does not exist");
	a.cos = NULL;
	a.mailhost = "bad host!";
	expect_error(f, dir_account_add(f->d, &a, f->err), DIR_INVALID,
		     "mail host");
	a.mailhost = NULL;
	assert_int_equal(dir_list_add(f->d, "team@example.com", f->err),
			 DIR_OK);
	a.address = "team@example.com";
	expect_error(f, dir_account_add(f->d, &a, f->err), DIR_EXISTS,
		     "list team@example.com exists already");

	assert_int_equal(dir_account_get(f->d, "CAROL@example.com", &g,
					 f->err), DIR_OK);
	assert_int_equal(g->id, id1);
	assert_string_equal(g->address, "carol@example.com");
	assert_string_equal(g->display_name, "Carol C");
	assert_null(g->password_hash);
	assert_string_equal(g->mailhost, "localhost");
	assert_string_equal(g->cos, "default");
	assert_int_equal(g->quota_effective, 0);
	/* effective quota: the cos, then the domain default, then its own */
	free(g->cos);
	g->cos = strdup("gold");
	assert_int_equal(dir_account_set(f->d, g, f->err), DIR_OK);
	dir_account_free(&g);
	assert_int_equal(dir_account_get(f->d, "carol@example.com", &g,
					 f->err), DIR_OK);
	assert_int_equal(g->quota_effective, 5 << 20);
	g->quota = 7 << 20;
	g->status = DIR_ACCOUNT_LOCKED;
	free(g->mailhost);
	g->mailhost = strdup("Mail2.Example.com");
	g->password_hash = strdup(SHA512_HASH);
	assert_int_equal(dir_account_set(f->d, g, f->err), DIR_OK);
	dir_account_free(&g);
	assert_null(g);
	assert_int_equal(dir_account_get(f->d, "carol@example.com", &g,
					 f->err), DIR_OK);
	assert_int_equal(g->quota_effective, 7 << 20);
	assert_int_equal(g->status, DIR_ACCOUNT_LOCKED);
	assert_string_equal(g->mailhost, "mail2.example.com");
	assert_string_equal(g->password_hash, SHA512_HASH);
	/* NULL password_hash keeps the stored one */
	free(g->password_hash);
	g->password_hash = NULL;
	assert_int_equal(dir_account_set(f->d, g, f->err), DIR_OK);
	dir_account_free(&g);
	assert_int_equal(dir_account_get(f->d, "carol@example.com", &g,
					 f->err), DIR_OK);
	assert_string_equal(g->password_hash, SHA512_HASH);
	free(g->address);
	g->address = strdup("nobody@example.com");
	expect_error(f, dir_account_set(f->d, g, f->err), DIR_NOTFOUND,
		     "account nobody@example.com does not exist");
	dir_account_free(&g);

	id2 = add_account(f, "erin@example.net", NULL);
	assert_true(id2 > id1);
	assert_int_equal(dir_account_list(f->d, NULL, &list, &n, f->err),
			 DIR_OK);
	assert_int_equal(n, 2);
	assert_string_equal(list[0]->address, "carol@example.com");
	dir_account_array_free(&list, n);
	assert_int_equal(dir_account_list(f->d, "example.net", &list, &n,
					  f->err), DIR_OK);
	assert_int_equal(n, 1);
	assert_string_equal(list[0]->address, "erin@example.net");
	dir_account_array_free(&list, n);
	expect_error(f, dir_account_list(f->d, "nosuch.example", &list, &n,
					 f->err), DIR_NOTFOUND, "nosuch");

	/* ids are never reused */
	assert_int_equal(dir_account_del(f->d, "erin@example.net", f->err),
			 DIR_OK);
	expect_error(f, dir_account_del(f->d, "erin@example.net", f->err),
		     DIR_NOTFOUND, "account erin@example.net does not exist");
	assert_true(add_account(f, "erin@example.net", NULL) > id2);
	expect_error(f, dir_account_get(f->d, "x@example.com", &g, f->err),
		     DIR_NOTFOUND, NULL);
	assert_null(g);
}

/* ---- aliases and lists ---- */

static void test_aliases(void **state)
{
	struct fx *f = *state;
	struct dir_alias **list;
	size_t n;

	add_domain(f, "example.com");
	add_account(f, "bob@example.com", NULL);
	assert_int_equal(dir_alias_add(f->d, "Postmaster@example.com",
				       "bob@example.com", f->err), DIR_OK);
	assert_int_equal(dir_alias_add(f->d, "fwd@example.com",
				       "Someone@Elsewhere.example", f->err),
			 DIR_OK);
	expect_error(f, dir_alias_add(f->d, "postmaster@example.com",
				      "bob@example.com", f->err),
		     DIR_EXISTS, "alias postmaster@example.com exists already");
	expect_error(f, dir_alias_add(f->d, "bob@example.com",
				      "fwd@example.com", f->err),
		     DIR_EXISTS, "account bob@example.com exists already");
	expect_error(f, dir_alias_add(f->d, "x@example.com", "x@example.com",
				      f->err), DIR_INVALID, "itself");
	expect_error(f, dir_alias_add(f->d, "x@example.com",
				      "nobody@example.com", f->err),
		     DIR_NOTFOUND, "nobody@example.com does not exist");
	expect_error(f, dir_alias_add(f->d, "x@nosuch.example",
				      "bob@example.com", f->err),
		     DIR_NOTFOUND, "domain nosuch.example does not exist");
	expect_error(f, dir_alias_add(f->d, "x@example.com", "bad", f->err),
		     DIR_INVALID, NULL);
	assert_int_equal(dir_alias_list(f->d, "example.com", &list, &n,
					f->err), DIR_OK);
	assert_int_equal(n, 2);
	assert_string_equal(list[0]->address, "fwd@example.com");
	assert_string_equal(list[0]->target, "someone@elsewhere.example");
	assert_string_equal(list[1]->address, "postmaster@example.com");
	assert_string_equal(list[1]->target, "bob@example.com");
	dir_alias_array_free(&list, n);
	assert_int_equal(dir_alias_del(f->d, "fwd@example.com", f->err),
			 DIR_OK);
	expect_error(f, dir_alias_del(f->d, "fwd@example.com", f->err),
		     DIR_NOTFOUND, "alias fwd@example.com does not exist");
	expect_error(f, dir_alias_del(f->d, "bob@example.com", f->err),
		     DIR_NOTFOUND, NULL);
	assert_int_equal(dir_alias_list(f->d, NULL, &list, &n, f->err),
			 DIR_OK);
	assert_int_equal(n, 1);
	dir_alias_array_free(&list, n);
}

/* ---- the address book ---- */

static void add_named(struct fx *f, const char *address, const char *name,
		      enum dir_account_status status)
{
	struct dir_account a = { .address = (char *)address,
				 .display_name = (char *)name,
				 .status = status,
				 .password_hash = SHA512_HASH,
				 .mailhost = "mail1.example.com" };

	assert_int_equal(dir_account_add(f->d, &a, f->err), DIR_OK);
}

/* "address:kind:name" of each entry found, space-separated. */
static void expect_gal(struct fx *f, const char *text, size_t limit,
		       const char *want)
{
	struct dir_gal_entry **list = NULL;
	struct str *s = str_new(256, 65536);
	size_t n = 0;

	if (dir_gal_search(f->d, text, limit, &list, &n, f->err) != DIR_OK)
		fail_msg("gal '%s': %s", text, str_c(f->err));
	for (size_t i = 0; i < n; i++)
		assert_int_equal(str_printf(s, "%s%s:%s:%s", i ? " " : "",
					    list[i]->address,
					    dir_gal_kind_name(list[i]->kind),
					    list[i]->display_name != NULL ?
					    list[i]->display_name : "-"), 0);
	if (strcmp(str_c(s), want) != 0)
		fail_msg("gal '%s': got '%s', want '%s'", text, str_c(s),
			 want);
	dir_gal_array_free(&list, n);
	assert_null(list);
	str_free(&s);
}

static void test_gal(void **state)
{
	struct fx *f = *state;
	struct dir_gal_entry **list = NULL;
	char longtext[DIR_GAL_TEXT_MAX + 2];
	size_t n = 0;

	expect_gal(f, "anything", 0, "");	/* nothing provisioned */
	add_domain(f, "example.com");
	add_domain(f, "other.example");
	add_named(f, "anna@example.com", "Anna M\xc3\xbcller",
		  DIR_ACCOUNT_ACTIVE);
	add_named(f, "bob@example.com", "Bob *(Star)\\ Builder",
		  DIR_ACCOUNT_LOCKED);
	add_named(f, "carol@example.com", "Carol Closed", DIR_ACCOUNT_CLOSED);
	add_named(f, "dave%x@example.com", NULL, DIR_ACCOUNT_ACTIVE);
	add_named(f, "s*@other.example", "Star", DIR_ACCOUNT_ACTIVE);
	assert_int_equal(dir_alias_add(f->d, "info@example.com",
				       "bob@example.com", f->err), DIR_OK);
	assert_int_equal(dir_alias_add(f->d, "old@example.com",
				       "carol@example.com", f->err), DIR_OK);
	assert_int_equal(dir_alias_add(f->d, "fwd@example.com",
				       "someone@elsewhere.example", f->err),
			 DIR_OK);
	add_list(f, "team@example.com", NULL);

	/* names, parts of names, any case (ASCII), non-ASCII as typed */
	expect_gal(f, "m\xc3\xbcll", 0,
		   "anna@example.com:account:Anna M\xc3\xbcller");
	expect_gal(f, "ANNA", 0, "anna@example.com:account:Anna M\xc3\xbcller");
	expect_gal(f, "builder", 0,
		   "bob@example.com:account:Bob *(Star)\\ Builder");
	/* filter and pattern characters match themselves only */
	expect_gal(f, "*(star)\\", 0,
		   "bob@example.com:account:Bob *(Star)\\ Builder");
	expect_gal(f, "*", 0, "bob@example.com:account:Bob *(Star)\\ Builder "
		   "s*@other.example:account:Star");
	expect_gal(f, "%", 0, "dave%x@example.com:account:-");
	expect_gal(f, "_", 0, "");
	expect_gal(f, "\\", 0, "bob@example.com:account:Bob *(Star)\\ "
		   "Builder");
	expect_gal(f, "x)(mail=*", 0, "");
	/* an alias finds what it points to; lists by address */
	expect_gal(f, "info@", 0,
		   "bob@example.com:account:Bob *(Star)\\ Builder");
	expect_gal(f, "team", 0, "team@example.com:list:-");
	/* closed accounts never, not through an alias either */
	expect_gal(f, "carol", 0, "");
	expect_gal(f, "old@", 0, "");
	expect_gal(f, "fwd", 0, "");
	/* sorted, each once, cut at the limit */
	expect_gal(f, "EXAMPLE", 0, "anna@example.com:account:Anna "
		   "M\xc3\xbcller bob@example.com:account:Bob *(Star)\\ "
		   "Builder dave%x@example.com:account:- "
		   "s*@other.example:account:Star team@example.com:list:-");
	/* which ones is the server's choice with LDAP (sizelimit) */
	assert_int_equal(dir_gal_search(f->d, "example", 2, &list, &n, f->err),
			 DIR_OK);
	assert_int_equal(n, 2);
	assert_true(strcmp(list[0]->address, list[1]->address) < 0);
	for (size_t i = 0; i < n; i++)
		assert_non_null(strstr("anna@example.com bob@example.com "
				       "dave%x@example.com s*@other.example "
				       "team@example.com", list[i]->address));
	dir_gal_array_free(&list, n);
	if (strcmp(dir_backend_name(f->d), "sqlite") == 0)
		expect_gal(f, "example", 2, "anna@example.com:account:Anna "
			   "M\xc3\xbcller bob@example.com:account:Bob "
			   "*(Star)\\ Builder");
	/* bad text */
	memset(longtext, 'a', sizeof(longtext) - 1);
	longtext[sizeof(longtext) - 1] = '\0';
	expect_error(f, dir_gal_search(f->d, "", 0, &list, &n, f->err),
		     DIR_INVALID, "search text");
	expect_error(f, dir_gal_search(f->d, longtext, 0, &list, &n, f->err),
		     DIR_INVALID, "search text");
	expect_error(f, dir_gal_search(f->d, "a\tb", 0, &list, &n, f->err),
		     DIR_INVALID, "control");
	assert_null(list);
	assert_int_equal(n, 0);
}

static void test_lists(void **state)
{
	struct fx *f = *state;
	struct dir_list_info **all;
	struct dir_list_info *l;
	size_t n;

	add_domain(f, "example.com");
	add_account(f, "bob@example.com", NULL);
	add_account(f, "amy@example.com", NULL);
	add_list(f, "team@example.com", (const char *[]){ "bob@example.com",
		 "Amy@example.com", "ext@elsewhere.example", NULL });
	add_list(f, "empty@example.com", NULL);
	expect_error(f, dir_list_add(f->d, "team@example.com", f->err),
		     DIR_EXISTS, "list team@example.com exists already");
	expect_error(f, dir_list_add(f->d, "bob@example.com", f->err),
		     DIR_EXISTS, "account bob@example.com exists already");
	expect_error(f, dir_list_member_add(f->d, "team@example.com",
					    "bob@example.com", f->err),
		     DIR_EXISTS, "already a member");
	expect_error(f, dir_list_member_add(f->d, "team@example.com",
					    "team@example.com", f->err),
		     DIR_INVALID, "itself");
	expect_error(f, dir_list_member_add(f->d, "nolist@example.com",
					    "bob@example.com", f->err),
		     DIR_NOTFOUND, "list nolist@example.com does not exist");
	expect_error(f, dir_list_member_add(f->d, "team@example.com",
					    "ghost@example.com", f->err),
		     DIR_NOTFOUND, "ghost@example.com does not exist");
	expect_error(f, dir_list_member_del(f->d, "team@example.com",
					    "ghost@example.com", f->err),
		     DIR_NOTFOUND, "not a member");

	assert_int_equal(dir_list_get(f->d, "TEAM@example.com", &l, f->err),
			 DIR_OK);
	assert_string_equal(l->address, "team@example.com");
	assert_int_equal(l->nmembers, 3);
	assert_string_equal(l->members[0], "amy@example.com");
	assert_string_equal(l->members[1], "bob@example.com");
	assert_string_equal(l->members[2], "ext@elsewhere.example");
	assert_null(l->members[3]);
	dir_list_info_free(&l);
	assert_null(l);
	expect_error(f, dir_list_get(f->d, "bob@example.com", &l, f->err),
		     DIR_NOTFOUND, "list bob@example.com does not exist");

	/* deleting an account takes it out of its lists */
	assert_int_equal(dir_account_del(f->d, "amy@example.com", f->err),
			 DIR_OK);
	assert_int_equal(dir_list_member_del(f->d, "team@example.com",
					     "ext@elsewhere.example", f->err),
			 DIR_OK);
	assert_int_equal(dir_list_list(f->d, "example.com", &all, &n, f->err),
			 DIR_OK);
	assert_int_equal(n, 2);
	assert_string_equal(all[0]->address, "empty@example.com");
	assert_int_equal(all[0]->nmembers, 0);
	assert_non_null(all[0]->members);
	assert_null(all[0]->members[0]);
	assert_int_equal(all[1]->nmembers, 1);
	assert_string_equal(all[1]->members[0], "bob@example.com");
	dir_list_info_array_free(&all, n);
	assert_null(all);
	assert_int_equal(dir_list_del(f->d, "empty@example.com", f->err),
			 DIR_OK);
	expect_error(f, dir_list_del(f->d, "empty@example.com", f->err),
		     DIR_NOTFOUND, "list empty@example.com does not exist");
}

/* ---- resolution ---- */

static struct dir_resolution *resolve_ok(struct fx *f, const char *address)
{
	struct dir_resolution *res = NULL;
	enum dir_status st = dir_resolve(f->d, address, &res, f->err);

	if (st != DIR_OK)
		fail_msg("resolve %s: %s: %s", address, dir_status_name(st),
			 str_c(f->err));
	return res;
}

static void test_resolve(void **state)
{
	struct fx *f = *state;
	struct dir_resolution *res;
	struct dir_domain *dom;
	char a[64], b[64];

	add_domain(f, "example.com");
	add_account(f, "bob@example.com", NULL);
	add_account(f, "amy@example.com", NULL);
	add_account(f, "old@example.com", NULL);

	res = resolve_ok(f, "Bob@Example.com");
	assert_true(res->local_domain);
	assert_null(res->detail);
	expect_targets(res, "bob@example.com");
	assert_int_equal(res->targets[0].kind, DIR_TARGET_ACCOUNT);
	assert_int_equal(res->targets[0].status, DIR_ACCOUNT_ACTIVE);
	dir_resolution_free(&res);
	assert_null(res);

	/* plus-addressing */
	res = resolve_ok(f, "bob+Lists@example.com");
	assert_string_equal(res->detail, "lists");
	expect_targets(res, "bob@example.com");
	dir_resolution_free(&res);

	/* alias chains */
	assert_int_equal(dir_alias_add(f->d, "a1@example.com",
				       "bob@example.com", f->err), DIR_OK);
	assert_int_equal(dir_alias_add(f->d, "a2@example.com",
				       "a1@example.com", f->err), DIR_OK);
	res = resolve_ok(f, "a2+x@example.com");
	assert_string_equal(res->detail, "x");
	expect_targets(res, "bob@example.com");
	dir_resolution_free(&res);

	/* nested lists, each address once, loops cut */
	add_list(f, "inner@example.com", (const char *[]){ "amy@example.com",
		 "bob@example.com", "far@elsewhere.example", NULL });
	add_list(f, "outer@example.com", (const char *[]){ "a2@example.com",
		 "inner@example.com", "old@example.com", NULL });
	assert_int_equal(dir_list_member_add(f->d, "inner@example.com",
					     "outer@example.com", f->err),
			 DIR_OK);
	res = resolve_ok(f, "outer@example.com");
	expect_targets(res, "bob@example.com amy@example.com "
		       "ext:far@elsewhere.example old@example.com");
	assert_int_equal(res->targets[2].kind, DIR_TARGET_EXTERNAL);
	assert_null(res->targets[2].mailhost);
	dir_resolution_free(&res);

	/* a closed account comes back with its status */
	{
		struct dir_account *o;

		assert_int_equal(dir_account_get(f->d, "old@example.com", &o,
						 f->err), DIR_OK);
		o->status = DIR_ACCOUNT_CLOSED;
		assert_int_equal(dir_account_set(f->d, o, f->err), DIR_OK);
		dir_account_free(&o);
	}
	res = resolve_ok(f, "old@example.com");
	assert_int_equal(res->targets[0].status, DIR_ACCOUNT_CLOSED);
	dir_resolution_free(&res);

	/* unknown local part; then the catch-all */
	expect_error(f, dir_resolve(f->d, "nobody@example.com", &res, f->err),
		     DIR_NOTFOUND, "nobody@example.com does not exist");
	assert_null(res);
	assert_int_equal(dir_domain_get(f->d, "example.com", &dom, f->err),
			 DIR_OK);
	dom->catchall = strdup("inner@example.com");
	assert_int_equal(dir_domain_set(f->d, dom, f->err), DIR_OK);
	dir_domain_free(&dom);
	res = resolve_ok(f, "nobody+tag@example.com");
	assert_true(res->local_domain);
	expect_targets(res, "amy@example.com bob@example.com "
		       "ext:far@elsewhere.example old@example.com");
	dir_resolution_free(&res);

	/* external domains */
	res = resolve_ok(f, "Someone+Tag@Elsewhere.example");
	assert_false(res->local_domain);
	expect_targets(res, "ext:someone+tag@elsewhere.example");
	dir_resolution_free(&res);

	/* an empty list, and too deep a chain, lead nowhere */
	add_list(f, "empty@example.com", NULL);
	expect_error(f, dir_resolve(f->d, "empty@example.com", &res, f->err),
		     DIR_NOTFOUND, "no recipient");
	snprintf(b, sizeof(b), "bob@example.com");
	for (int i = 0; i < DIR_LIST_DEPTH_MAX + 2; i++) {
		snprintf(a, sizeof(a), "chain%d@example.com", i);
		assert_int_equal(dir_alias_add(f->d, a, b, f->err), DIR_OK);
		snprintf(b, sizeof(b), "%s", a);
	}
	res = resolve_ok(f, "chain5@example.com");
	expect_targets(res, "bob@example.com");
	dir_resolution_free(&res);
	expect_error(f, dir_resolve(f->d, a, &res, f->err), DIR_NOTFOUND,
		     "no recipient");
	expect_error(f, dir_resolve(f->d, "bad address", &res, f->err),
		     DIR_INVALID, NULL);
}

/* ---- login ---- */

static void test_authenticate(void **state)
{
	struct fx *f = *state;
	struct str *h = str_new(128, 1024);
	struct dir_account *a = NULL;

	add_domain(f, "example.com");
	assert_int_equal(dir_password_hash("pw one", h, NULL), DIR_OK);
	add_account(f, "bob@example.com", str_c(h));
	add_account(f, "old@example.com", SHA512_HASH);
	add_account(f, "nopw@example.com", NULL);

	assert_int_equal(dir_authenticate(f->d, "Bob@example.com", "pw one",
					  &a, f->err), DIR_OK);
	assert_string_equal(a->address, "bob@example.com");
	dir_account_free(&a);
	assert_int_equal(dir_authenticate(f->d, "old@example.com",
					  "correct horse", NULL, f->err),
			 DIR_OK);
	expect_error(f, dir_authenticate(f->d, "bob@example.com", "pw two", &a,
					 f->err), DIR_AUTHFAIL, NULL);
	assert_null(a);
	expect_error(f, dir_authenticate(f->d, "ghost@example.com", "pw one",
					 &a, f->err), DIR_AUTHFAIL, NULL);
	expect_error(f, dir_authenticate(f->d, "nopw@example.com", "", &a,
					 f->err), DIR_AUTHFAIL, NULL);
	expect_error(f, dir_authenticate(f->d, "not an address", "x", &a,
					 f->err), DIR_AUTHFAIL, NULL);

	assert_int_equal(dir_account_get(f->d, "bob@example.com", &a, f->err),
			 DIR_OK);
	a->status = DIR_ACCOUNT_LOCKED;
	free(a->password_hash);
	a->password_hash = NULL;
	assert_int_equal(dir_account_set(f->d, a, f->err), DIR_OK);
	dir_account_free(&a);
	expect_error(f, dir_authenticate(f->d, "bob@example.com", "pw one", &a,
					 f->err), DIR_REFUSED, "locked");
	expect_error(f, dir_authenticate(f->d, "bob@example.com", "pw two", &a,
					 f->err), DIR_AUTHFAIL, NULL);
	assert_null(a);
	str_free(&h);
}

/* ---- several connections ---- */

static void test_serial_two_connections(void **state)
{
	struct fx *f = *state;
	struct dir *ro = NULL, *rw2 = NULL;
	struct dir_domain dom = { .name = "example.com" };
	struct dir_domain *got;
	uint64_t s0, s1;

	assert_int_equal(dir_open_sqlite(f->path, true, &ro, f->err), DIR_OK);
	assert_int_equal(dir_open_sqlite(f->path, false, &rw2, f->err),
			 DIR_OK);
	s0 = serial(ro);
	assert_int_equal(serial(f->d), s0);
	add_domain(f, "example.com");
	s1 = serial(ro);
	assert_true(s1 > s0);
	assert_int_equal(serial(rw2), s1);
	assert_int_equal(dir_domain_get(ro, "example.com", &got, f->err),
			 DIR_OK);
	dir_domain_free(&got);
	add_account(f, "bob@example.com", NULL);
	assert_true(serial(ro) > s1);
	s1 = serial(ro);
	/* failed writes change nothing */
	expect_error(f, dir_domain_add(rw2, &dom, f->err), DIR_EXISTS, NULL);
	assert_int_equal(serial(ro), s1);
	/* the read-only connection refuses to write */
	dom.name = "example.org";
	expect_error(f, dir_domain_add(ro, &dom, f->err), DIR_REFUSED,
		     "read-only");
	assert_int_equal(dir_domain_add(rw2, &dom, f->err), DIR_OK);
	assert_true(serial(ro) > s1);
	assert_int_equal(dir_domain_get(f->d, "example.org", &got, f->err),
			 DIR_OK);
	dir_domain_free(&got);
	dir_close(&ro);
	dir_close(&rw2);
	assert_null(ro);
}

static void test_open_errors(void **state)
{
	struct fx *f = *state;
	struct dir *d = NULL;
	char p[192];

	snprintf(p, sizeof(p), "%s/missing.db", f->tmp);
	expect_error(f, dir_open_sqlite(p, true, &d, f->err), DIR_TEMPFAIL,
		     "missing.db");
	assert_null(d);
	snprintf(p, sizeof(p), "%s/no/such/dir.db", f->tmp);
	expect_error(f, dir_open_sqlite(p, false, &d, f->err), DIR_TEMPFAIL,
		     NULL);
	assert_null(d);
}

/* A writer holding the lock longer than the busy timeout: DIR_TEMPFAIL. */
static void test_busy_is_tempfail(void **state)
{
	struct fx *f = *state;
	struct dir_domain dom = { .name = "example.com" };
	sqlite3 *db;

	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL),
			 SQLITE_OK);
	expect_error(f, dir_domain_add(f->d, &dom, f->err), DIR_TEMPFAIL,
		     "busy");
	assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(dir_domain_add(f->d, &dom, f->err), DIR_OK);
}

/* ---- the LDAP backend ---- */

#define SLAPD "/usr/sbin/slapd"
#define SLAPADD "/usr/sbin/slapadd"

extern char **environ;

static struct {
	char dir[64];
	char sock[128];
	char uri[512];
	pid_t pid;
	unsigned tests;
	bool running;
} slapd;

static int run_wait(char *const argv[])
{
	pid_t pid;
	int status;

	if (posix_spawn(&pid, argv[0], NULL, NULL, argv, environ) != 0 ||
	    waitpid(pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static int slapd_write_config(const char *srcdir)
{
	char path[192];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/config.ldif", slapd.dir);
	fp = fopen(path, "w");
	if (fp == NULL)
		return -1;
	fprintf(fp,
		"dn: cn=config\nobjectClass: olcGlobal\ncn: config\n\n"
		"dn: cn=module{0},cn=config\nobjectClass: olcModuleList\n"
		"cn: module{0}\nolcModulePath: /usr/lib/ldap\n"
		"olcModuleLoad: back_mdb\nolcModuleLoad: syncprov\n\n"
		"dn: cn=schema,cn=config\nobjectClass: olcSchemaConfig\n"
		"cn: schema\n\n"
		"include: file:///etc/ldap/schema/core.ldif\n\n"
		"include: file:///etc/ldap/schema/cosine.ldif\n\n"
		"include: file:///etc/ldap/schema/inetorgperson.ldif\n\n"
		"include: file://%s/ldap-schema/tern.ldif\n\n"
		"dn: olcDatabase={1}mdb,cn=config\n"
		"objectClass: olcDatabaseConfig\nobjectClass: olcMdbConfig\n"
		"olcDatabase: {1}mdb\nolcDbDirectory: %s/db\n"
		"olcSuffix: dc=test\nolcDbNoSync: TRUE\n"
		"olcRootDN: gidNumber=%u+uidNumber=%u,cn=peercred,"
		"cn=external,cn=auth\n"
		"olcDbIndex: objectClass,mail,ternListMember eq\n\n"
		"dn: olcOverlay={0}syncprov,olcDatabase={1}mdb,cn=config\n"
		"objectClass: olcOverlayConfig\n"
		"objectClass: olcSyncProvConfig\nolcOverlay: {0}syncprov\n",
		srcdir, slapd.dir, (unsigned)getgid(), (unsigned)getuid());
	return fclose(fp) == 0 ? 0 : -1;
}

static bool slapd_answers(void)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), r;

	if (strlen(slapd.sock) >= sizeof(sun.sun_path)) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	memcpy(sun.sun_path, slapd.sock, strlen(slapd.sock) + 1);
	r = fd < 0 ? -1 : connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	if (fd >= 0)
		close(fd);
	return r == 0;
}

/* Starts the private slapd; 0 = running, 1 = not available here. */
static int slapd_start(void)
{
	const char *srcdir = getenv("TERN_TOP_SRCDIR");
	char sub[192], conf[192], hurl[640];
	char *const add[] = { SLAPADD, "-q", "-n0", "-F", sub, "-l", conf,
			      NULL };
	char *const run[] = { SLAPD, "-d", "0", "-h", hurl, "-F", sub, NULL };
	struct timespec pause = { 0, 20 * 1000 * 1000 };

	if (srcdir == NULL || access(SLAPD, X_OK) < 0)
		return 1;
	snprintf(slapd.dir, sizeof(slapd.dir), "/tmp/tern-test-slapd-XXXXXX");
	if (mkdtemp(slapd.dir) == NULL)
		return -1;
	snprintf(slapd.sock, sizeof(slapd.sock), "%s/ldapi", slapd.dir);
	snprintf(slapd.uri, sizeof(slapd.uri), "ldapi://");
	for (const char *p = slapd.sock; *p != '\0'; p++)
		snprintf(slapd.uri + strlen(slapd.uri),
			 sizeof(slapd.uri) - strlen(slapd.uri),
			 *p == '/' ? "%%2F" : "%c", *p);
	snprintf(sub, sizeof(sub), "%s/slapd.d", slapd.dir);
	snprintf(conf, sizeof(conf), "%s/config.ldif", slapd.dir);
	snprintf(hurl, sizeof(hurl), "%s", slapd.uri);
	{
		char db[192];

		snprintf(db, sizeof(db), "%s/db", slapd.dir);
		if (mkdir(sub, 0700) < 0 || mkdir(db, 0700) < 0)
			return -1;
	}
	if (slapd_write_config(srcdir) < 0 || run_wait(add) < 0 ||
	    posix_spawn(&slapd.pid, SLAPD, NULL, NULL, run, environ) != 0)
		return -1;
	for (int i = 0; i < 500 && !slapd_answers(); i++)
		nanosleep(&pause, NULL);
	return slapd_answers() ? 0 : -1;
}

static void slapd_stop(void)
{
	char *const rm[] = { "/bin/rm", "-rf", slapd.dir, NULL };

	if (slapd.pid > 0) {
		kill(slapd.pid, SIGTERM);
		waitpid(slapd.pid, NULL, 0);
		slapd.pid = 0;
	}
	if (slapd.dir[0] != '\0')
		(void)run_wait(rm);
}

static int sasl_defaults(LDAP *ld, unsigned flags, void *defaults, void *in)
{
	sasl_interact_t *it = in;

	(void)ld;
	(void)flags;
	(void)defaults;
	for (; it->id != SASL_CB_LIST_END; it++) {
		it->result = "";
		it->len = 0;
	}
	return LDAP_SUCCESS;
}

/* A fresh base DN "dc=tN,dc=test" for each test. */
static int fx_setup_ldap(void **state)
{
	struct fx *f;
	struct dir_ldap_settings set = { .uri = slapd.uri, .bind_dn = "",
					 .timeout_ms = 5000 };
	char base[64], dc[16];
	char *dc_vals[] = { dc, NULL };
	char *oc_vals[] = { "domain", NULL };
	LDAPMod mdc = { LDAP_MOD_ADD, "dc", { dc_vals } };
	LDAPMod moc = { LDAP_MOD_ADD, "objectClass", { oc_vals } };
	LDAPMod *mods[] = { &moc, &mdc, NULL };
	int v3 = LDAP_VERSION3;
	LDAP *ld = NULL;

	*state = NULL;
	if (!slapd.running)
		return 0;	/* the test skips itself */
	f = calloc(1, sizeof(*f));
	assert_non_null(f);
	snprintf(dc, sizeof(dc), "t%u", ++slapd.tests);
	snprintf(base, sizeof(base), "dc=%s,dc=test", dc);
	assert_int_equal(ldap_initialize(&ld, slapd.uri), LDAP_SUCCESS);
	assert_int_equal(ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &v3),
			 LDAP_OPT_SUCCESS);
	assert_int_equal(ldap_sasl_interactive_bind_s(ld, NULL, "EXTERNAL",
						      NULL, NULL,
						      LDAP_SASL_QUIET,
						      sasl_defaults, NULL),
			 LDAP_SUCCESS);
	if (slapd.tests == 1) {
		char *t_vals[] = { "test", NULL };
		LDAPMod mt = { LDAP_MOD_ADD, "dc", { t_vals } };
		LDAPMod *top[] = { &moc, &mt, NULL };

		assert_int_equal(ldap_add_ext_s(ld, "dc=test", top, NULL,
						NULL), LDAP_SUCCESS);
	}
	assert_int_equal(ldap_add_ext_s(ld, base, mods, NULL, NULL),
			 LDAP_SUCCESS);
	ldap_unbind_ext_s(ld, NULL, NULL);
	set.base_dn = base;
	f->err = str_new(256, 4096);
	assert_int_equal(dir_open_ldap(&set, false, &f->d, f->err), DIR_OK);
	assert_string_equal(dir_backend_name(f->d), "ldap");
	*state = f;
	return 0;
}

static int fx_teardown_ldap(void **state)
{
	struct fx *f = *state;

	if (f == NULL)
		return 0;
	dir_close(&f->d);
	assert_null(f->d);
	str_free(&f->err);
	free(f);
	return 0;
}

/* A read-only handle sees the writer's changes through dir_serial(). */
static void test_ldap_serial_and_readonly(void **state)
{
	struct fx *f = *state;
	struct dir_ldap_settings set = { .uri = slapd.uri, .bind_dn = "",
					 .timeout_ms = 5000 };
	struct dir_account *a = NULL;
	char base[64];
	struct dir *ro = NULL;
	uint64_t s1, s2;

	snprintf(base, sizeof(base), "dc=t%u,dc=test", slapd.tests);
	set.base_dn = base;
	assert_int_equal(dir_open_ldap(&set, true, &ro, f->err), DIR_OK);
	s1 = serial(ro);
	assert_int_equal(serial(ro), s1);
	add_domain(f, "example.com");
	s2 = serial(ro);
	assert_true(s2 != s1);
	add_account(f, "bob@example.com", NULL);
	assert_true(serial(ro) != s2);
	assert_int_equal(dir_account_get(ro, "bob@example.com", &a, f->err),
			 DIR_OK);
	dir_account_free(&a);
	{
		struct dir_cos cos = { .name = "gold" };

		expect_error(f, dir_cos_add(ro, &cos, f->err), DIR_REFUSED,
			     "read-only");
	}
	dir_close(&ro);
}

/* A wrong base DN or a tree without ou=domains is "try again later", never
 * "no such account" (which would bounce mail). */
static void test_ldap_missing_tree_is_tempfail(void **state)
{
	struct fx *f = *state;
	struct dir_ldap_settings set = { .uri = slapd.uri, .bind_dn = "",
					 .timeout_ms = 5000 };
	struct dir_resolution *res = NULL;
	struct dir_account *a = NULL;
	struct dir *ro = NULL;
	uint64_t s;

	add_domain(f, "example.com");
	add_account(f, "bob@example.com", NULL);
	for (int i = 0; i < 2; i++) {
		set.base_dn = i == 0 ? "dc=nothere,dc=test" : "dc=test";
		assert_int_equal(dir_open_ldap(&set, true, &ro, f->err),
				 DIR_OK);
		expect_error(f, dir_account_get(ro, "bob@example.com", &a,
						f->err), DIR_TEMPFAIL,
			     "is missing");
		expect_error(f, dir_resolve(ro, "bob@example.com", &res,
					    f->err), DIR_TEMPFAIL, NULL);
		expect_error(f, dir_authenticate(ro, "bob@example.com", "x",
						 &a, f->err), DIR_TEMPFAIL,
			     NULL);
		/* The serial needs the base entry only. */
		assert_int_equal(dir_serial(ro, &s, f->err),
				 i == 0 ? DIR_TEMPFAIL : DIR_OK);
		dir_close(&ro);
	}
	assert_null(a);
	assert_null(res);
}

/* ldap_auth = bind: slapd checks the password ({CRYPT} here) on a
 * connection of the check's own; the handle's stays the service's. */
static void test_ldap_auth_bind(void **state)
{
	struct fx *f = *state;
	struct dir_ldap_settings set = { .uri = slapd.uri, .bind_dn = "",
					 .timeout_ms = 2000,
					 .auth_bind = true };
	struct dir_account *a = NULL;
	struct dir *bd = NULL, *down = NULL;
	char base[64], want[160];
	char *dn = NULL;

	snprintf(base, sizeof(base), "dc=t%u,dc=test", slapd.tests);
	set.base_dn = base;
	assert_false(dir_auth_by_bind(f->d));
	assert_int_equal(dir_open_ldap(&set, true, &bd, f->err), DIR_OK);
	assert_true(dir_auth_by_bind(bd));
	add_domain(f, "example.com");
	add_account(f, "bob@example.com", SHA512_HASH);
	assert_int_equal(dir_account_dn(bd, "Bob@example.com", &dn, f->err),
			 DIR_OK);
	snprintf(want, sizeof(want), "mail=bob@example.com,ternDomainName="
		 "example.com,ou=domains,%s", base);
	assert_string_equal(dn, want);
	assert_int_equal(dir_password_bind(bd, dn, "correct horse", f->err),
			 DIR_OK);
	expect_error(f, dir_password_bind(bd, dn, "wrong", f->err),
		     DIR_AUTHFAIL, NULL);
	expect_error(f, dir_password_bind(bd, dn, "", f->err), DIR_AUTHFAIL,
		     NULL);
	free(dn);
	expect_error(f, dir_account_dn(bd, "nobody@example.com", &dn, f->err),
		     DIR_NOTFOUND, NULL);
	assert_null(dn);
	assert_int_equal(dir_authenticate(bd, "bob@example.com",
					  "correct horse", &a, f->err),
			 DIR_OK);
	assert_string_equal(a->address, "bob@example.com");
	dir_account_free(&a);
	expect_error(f, dir_authenticate(bd, "bob@example.com", "nope", &a,
					 f->err), DIR_AUTHFAIL, NULL);
	expect_error(f, dir_authenticate(bd, "ghost@example.com",
					 "correct horse", &a, f->err),
		     DIR_AUTHFAIL, NULL);
	/* the handle's own connection still reads as before */
	assert_int_equal(dir_account_get(bd, "bob@example.com", &a, f->err),
			 DIR_OK);
	dir_account_free(&a);
	/* a server that is not there: try again later */
	set.uri = "ldap://127.0.0.1:1/";
	assert_int_equal(dir_open_ldap(&set, true, &down, f->err), DIR_OK);
	expect_error(f, dir_password_bind(down, want, "correct horse",
					  f->err), DIR_TEMPFAIL, NULL);
	dir_close(&down);
	dir_close(&bd);
}

/* The embedded directory has no DNs to bind as. */
static void test_no_bind_on_sqlite(void **state)
{
	struct fx *f = *state;
	char *dn = NULL;

	assert_false(dir_auth_by_bind(f->d));
	add_domain(f, "example.com");
	add_account(f, "bob@example.com", SHA512_HASH);
	expect_error(f, dir_account_dn(f->d, "bob@example.com", &dn, f->err),
		     DIR_REFUSED, NULL);
	expect_error(f, dir_password_bind(f->d, "cn=x", "pw", f->err),
		     DIR_REFUSED, NULL);
	assert_null(dn);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
/* The LDAP run of a test: skipped without a private slapd. */
#define LDAP_VARIANT(fn) \
	static void fn##_ldap(void **state) \
	{ \
		if (*state == NULL) \
			skip(); \
		fn(state); \
	}
LDAP_VARIANT(test_cos)
LDAP_VARIANT(test_domains)
LDAP_VARIANT(test_accounts)
LDAP_VARIANT(test_aliases)
LDAP_VARIANT(test_lists)
LDAP_VARIANT(test_gal)
LDAP_VARIANT(test_resolve)
LDAP_VARIANT(test_authenticate)
LDAP_VARIANT(test_ldap_serial_and_readonly)
LDAP_VARIANT(test_ldap_missing_tree_is_tempfail)
LDAP_VARIANT(test_ldap_auth_bind)

#define TL(fn) cmocka_unit_test_setup_teardown(fn##_ldap, fx_setup_ldap, \
					       fx_teardown_ldap)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status_names),
		cmocka_unit_test(test_normalize),
		cmocka_unit_test(test_passwords),
		T(test_cos),
		T(test_domains),
		T(test_accounts),
		T(test_aliases),
		T(test_lists),
		T(test_gal),
		T(test_resolve),
		T(test_authenticate),
		T(test_serial_two_connections),
		T(test_open_errors),
		T(test_busy_is_tempfail),
		T(test_no_bind_on_sqlite),
		TL(test_cos),
		TL(test_domains),
		TL(test_accounts),
		TL(test_aliases),
		TL(test_lists),
		TL(test_gal),
		TL(test_resolve),
		TL(test_authenticate),
		TL(test_ldap_serial_and_readonly),
		TL(test_ldap_missing_tree_is_tempfail),
		TL(test_ldap_auth_bind),
	};
	int failed, r = slapd_start();

	if (r != 0)
		printf("# %s: the LDAP backend tests are skipped\n",
		       r > 0 ? "no slapd or TERN_TOP_SRCDIR" :
			       "the private slapd did not start");
	slapd.running = r == 0;
	failed = cmocka_run_group_tests(tests, NULL, NULL);
	slapd_stop();
	return failed != 0 || r < 0 ? 1 : 0;
}
