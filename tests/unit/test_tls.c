/*
 * test_tls.c: tlsgen, TLS contexts, the TLS engine alone (in memory), and
 * conn over 127.0.0.1 on a libuv loop: implicit TLS, STARTTLS (with command
 * injection), protocol versions, SNI.  Certificates come from tlsgen in a
 * temporary directory.  Raw OpenSSL clients run in a thread where a test
 * needs a peer that is not our own code.
 */
#include "config.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <uv.h>

#include "compat.h"
#include "conn.h"
#include "log.h"
#include "str.h"
#include "tls.h"
#include "tlsgen.h"

#define PATH_LEN 4096
#define BIG_PAYLOAD (1024 * 1024)
#define GUARD_MS 20000

/* The temporary directory and the certificates in it. */
static struct {
	struct str *dir;
	struct str *path[24];
	size_t npaths;
} fx;

static const char *fx_path(const char *name)
{
	struct str *s = str_new(64, PATH_LEN);

	assert_int_equal(str_printf(s, "%s/%s", str_c(fx.dir), name), 0);
	for (size_t i = 0; i < fx.npaths; i++) {
		if (strcmp(str_c(fx.path[i]), str_c(s)) == 0) {
			str_free(&s);
			return str_c(fx.path[i]);
		}
	}
	assert_true(fx.npaths < TERN_NELEM(fx.path));
	fx.path[fx.npaths++] = s;
	return str_c(s);
}

static void gen(const char *base, const char *cn, const char *const *names)
{
	struct str *crt = str_new(16, 64), *key = str_new(16, 64);
	const char *error = NULL;

	assert_int_equal(str_printf(crt, "%s.crt", base), 0);
	assert_int_equal(str_printf(key, "%s.key", base), 0);
	if (tlsgen_selfsigned(fx_path(str_c(crt)), fx_path(str_c(key)), cn,
			      names, 30, false, &error) < 0)
		fail_msg("tlsgen %s: %s", base, error);
	str_free(&crt);
	str_free(&key);
}

static int group_setup(void **state)
{
	static const char *const a_names[] = { "localhost", NULL };
	static const char *const b_names[] = { "mail.example.com",
					       "*.example.com", NULL };
	const char *tmp = getenv("TMPDIR");
	const char *error;

	fx.dir = str_new(64, PATH_LEN);
	if (str_printf(fx.dir, "%s/tern-test-tls-XXXXXX",
		       tmp != NULL && *tmp != '\0' ? tmp : "/tmp") < 0 ||
	    mkdtemp(str_data(fx.dir)) == NULL)
		return -1;
	gen("a", "localhost", a_names);
	gen("b", "mail.example.com", b_names);
	gen("c", "other.test", NULL);
	if (log_open("test_tls", fx_path("log"), LOGL_INFO, &error) < 0)
		return -1;
	return 0;
}

static int group_teardown(void **state)
{
	log_close();
	for (size_t i = 0; i < fx.npaths; i++) {
		unlink(str_c(fx.path[i]));
		str_free(&fx.path[i]);
	}
	rmdir(str_c(fx.dir));
	str_free(&fx.dir);
	return 0;
}

static struct tls_ctx *server_ctx(const char *base)
{
	struct str *crt = str_new(16, 64), *key = str_new(16, 64);
	struct tls_ctx *ctx;
	const char *error = NULL;

	assert_int_equal(str_printf(crt, "%s.crt", base), 0);
	assert_int_equal(str_printf(key, "%s.key", base), 0);
	ctx = tls_ctx_server_new(fx_path(str_c(crt)), fx_path(str_c(key)),
				 NULL, "1.2", &error);
	if (ctx == NULL)
		fail_msg("server ctx: %s", error);
	str_free(&crt);
	str_free(&key);
	return ctx;
}

static struct tls_ctx *client_ctx(const char *ca, bool verify)
{
	const char *error = NULL;
	struct tls_ctx *ctx = tls_ctx_client_new(ca, verify, NULL, &error);

	if (ctx == NULL)
		fail_msg("client ctx: %s", error);
	return ctx;
}

/* tlsgen */

static X509 *load_cert(const char *path)
{
	FILE *f = fopen(path, "r");
	X509 *x;

	assert_non_null(f);
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(x);
	return x;
}

static bool san_has_ip(X509 *x, const unsigned char *ip, int len)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL,
					       NULL);
	bool found = false;

	for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);

		if (g->type == GEN_IPADD &&
		    ASN1_STRING_length(g->d.iPAddress) == len &&
		    memcmp(ASN1_STRING_get0_data(g->d.iPAddress), ip,
			   (size_t)len) == 0)
			found = true;
	}
	GENERAL_NAMES_free(gens);
	return found;
}

static void test_tlsgen_output(void **state)
{
	static const unsigned char v4[4] = { 127, 0, 0, 1 };
	static const unsigned char v6[16] = { [15] = 1 };
	X509 *a = load_cert(fx_path("a.crt"));
	X509 *b = load_cert(fx_path("b.crt"));
	EVP_PKEY *pub = X509_get0_pubkey(a);
	struct stat st;

	assert_int_equal(X509_get_version(a), X509_VERSION_3);
	assert_int_equal(X509_verify(a, pub), 1);	/* self-signed */
	assert_int_equal(EVP_PKEY_get_base_id(pub), EVP_PKEY_EC);
	assert_int_equal(X509_check_host(a, "localhost", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(a, "example.com", 0, 0, NULL), 0);
	assert_true(san_has_ip(a, v4, 4));
	assert_true(san_has_ip(a, v6, 16));
	assert_int_equal(X509_check_ca(a), 0);
	assert_true(X509_get_extension_flags(a) & EXFLAG_XKUSAGE);
	assert_true(X509_get_extended_key_usage(a) & XKU_SSL_SERVER);
	assert_true(X509_get_key_usage(a) & KU_DIGITAL_SIGNATURE);
	assert_int_equal(X509_get_signature_nid(a), NID_ecdsa_with_SHA256);
	assert_int_equal(X509_check_host(b, "imap.example.com", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(b, "mail.example.com", 0, 0, NULL), 1);
	assert_int_equal(X509_cmp_time(X509_get0_notBefore(a), NULL), -1);
	assert_int_equal(X509_cmp_time(X509_get0_notAfter(a), NULL), 1);
	/* Two certificates never share a serial. */
	assert_int_not_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(a),
					      X509_get0_serialNumber(b)), 0);
	X509_free(a);
	X509_free(b);

	assert_int_equal(stat(fx_path("a.key"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal(stat(fx_path("a.crt"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
}

static void test_tlsgen_overwrite(void **state)
{
	const char *crt = fx_path("d.crt"), *key = fx_path("d.key");
	const char *error = NULL;
	X509 *first, *second;
	DIR *dir;
	struct dirent *de;

	assert_int_equal(tlsgen_selfsigned(crt, key, "d.test", NULL, 1, false,
					   &error), 0);
	first = load_cert(crt);
	assert_int_equal(tlsgen_selfsigned(crt, key, "d.test", NULL, 1, false,
					   &error), -1);
	assert_non_null(strstr(error, "refusing to overwrite"));
	assert_int_equal(tlsgen_selfsigned(crt, key, "d.test", NULL, 1, true,
					   &error), 0);
	second = load_cert(crt);
	assert_int_not_equal(X509_cmp(first, second), 0);
	X509_free(first);
	X509_free(second);
	/* Bad input is refused before anything is written. */
	static const char *const bad[] = { "a,DNS:evil.test", NULL };
	assert_int_equal(tlsgen_selfsigned(fx_path("e.crt"), fx_path("e.key"),
					   "e", bad, 1, false, &error), -1);
	assert_non_null(strstr(error, "invalid DNS name"));
	assert_int_equal(access(fx_path("e.key"), F_OK), -1);
	assert_int_equal(tlsgen_selfsigned(fx_path("e.crt"), fx_path("e.key"),
					   "e", NULL, 0, false, &error), -1);
	/* No temporary file is left behind. */
	dir = opendir(str_c(fx.dir));
	assert_non_null(dir);
	while ((de = readdir(dir)) != NULL)
		assert_null(strstr(de->d_name, ".tmp."));
	closedir(dir);
}

/* Contexts */

static void test_ctx_errors(void **state)
{
	const char *error = NULL;
	struct tls_ctx *ctx;

	ctx = tls_ctx_server_new(fx_path("a.crt"), fx_path("a.key"), NULL,
				 "1.1", &error);
	assert_null(ctx);
	assert_non_null(strstr(error, "1.2 or 1.3"));
	ctx = tls_ctx_server_new(fx_path("a.crt"), fx_path("a.key"), NULL,
				 "1.0", &error);
	assert_null(ctx);
	ctx = tls_ctx_client_new(NULL, false, "TLSv1.1", &error);
	assert_null(ctx);

	/* The key of b with the certificate of a. */
	ctx = tls_ctx_server_new(fx_path("a.crt"), fx_path("b.key"), NULL, NULL,
				 &error);
	assert_null(ctx);
	assert_non_null(strstr(error, "does not match"));
	assert_non_null(strstr(error, fx_path("a.crt")));
	assert_non_null(strstr(error, fx_path("b.key")));

	ctx = tls_ctx_server_new(fx_path("missing.crt"), fx_path("a.key"), NULL,
				 NULL, &error);
	assert_null(ctx);
	assert_non_null(strstr(error, fx_path("missing.crt")));
	ctx = tls_ctx_server_new(fx_path("a.crt"), fx_path("missing.key"),
				 NULL, NULL, &error);
	assert_null(ctx);
	assert_non_null(strstr(error, fx_path("missing.key")));

	ctx = tls_ctx_server_new(fx_path("a.crt"), fx_path("a.key"),
				 "NO-SUCH-CIPHER", NULL, &error);
	assert_null(ctx);
	assert_non_null(strstr(error, "NO-SUCH-CIPHER"));

	ctx = tls_ctx_server_new(fx_path("a.crt"), fx_path("a.key"), "",
				 "TLSv1.3", &error);
	assert_non_null(ctx);
	assert_int_equal(tls_ctx_add_sni(ctx, "bad name", fx_path("b.crt"),
					 fx_path("b.key"), &error), -1);
	assert_int_equal(tls_ctx_add_sni(ctx, "x.test", fx_path("b.crt"),
					 fx_path("a.key"), &error), -1);
	assert_non_null(strstr(error, "does not match"));
	tls_ctx_free(&ctx);
	assert_null(ctx);
}

static void test_hostname_match(void **state)
{
	assert_true(tls_hostname_match("mail.example.com", "MAIL.Example.com"));
	assert_true(tls_hostname_match("mail.example.com",
				       "mail.example.com."));
	assert_false(tls_hostname_match("mail.example.com", "mail.example.co"));
	assert_true(tls_hostname_match("*.example.com", "imap.example.com"));
	assert_true(tls_hostname_match("*.example.com", "IMAP.EXAMPLE.COM"));
	assert_false(tls_hostname_match("*.example.com", "example.com"));
	assert_false(tls_hostname_match("*.example.com", ".example.com"));
	assert_false(tls_hostname_match("*.example.com", "a.b.example.com"));
	assert_false(tls_hostname_match("*.example.com", "imap.example.org"));
	assert_false(tls_hostname_match("*.example.com", ""));
}

/* The engine alone: two engines wired back to back in memory. */

/* Moves at most max bytes of ciphertext from one engine to the other. */
static size_t shuttle(struct tls_engine *from, struct tls_engine *to,
		      size_t max)
{
	char buf[4096];
	size_t total = 0, n;

	while (total < max &&
	       (n = tls_engine_out_take(from, buf,
					max - total < sizeof(buf)
						? max - total
						: sizeof(buf))) > 0) {
		assert_int_equal(tls_engine_feed(to, buf, n), 0);
		total += n;
	}
	return total;
}

/* Runs both handshakes, handing over `step` bytes at a time. */
static void handshake_pair(struct tls_engine *cli, struct tls_engine *srv,
			   size_t step, int *cli_r, int *srv_r,
			   const char **error_r)
{
	const char *cerr = NULL, *serr = NULL;

	*cli_r = *srv_r = TLS_R_AGAIN;
	for (int i = 0; i < 100000; i++) {
		size_t moved;

		if (*cli_r == TLS_R_AGAIN)
			*cli_r = tls_engine_handshake(cli, &cerr);
		moved = shuttle(cli, srv, step);
		if (*srv_r == TLS_R_AGAIN)
			*srv_r = tls_engine_handshake(srv, &serr);
		moved += shuttle(srv, cli, step);
		if (*cli_r == TLS_R_ERROR || *srv_r == TLS_R_ERROR ||
		    (*cli_r == TLS_R_OK && *srv_r == TLS_R_OK && moved == 0))
			break;
	}
	*error_r = *cli_r == TLS_R_ERROR ? cerr : serr;
}

/* Moves ciphertext one byte at a time until `want` comes out of e. */
static void engine_expect_read(struct tls_engine *from, struct tls_engine *e,
			       const char *want)
{
	char buf[256];
	size_t len;
	const char *error;
	int r;

	while ((r = tls_engine_read(e, buf, sizeof(buf), &len, &error)) ==
		       TLS_R_AGAIN &&
	       shuttle(from, e, 1) == 1)
		;
	assert_int_equal(r, TLS_R_OK);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(buf, want, len);
	assert_int_equal(tls_engine_read(e, buf, sizeof(buf), &len, &error),
			 TLS_R_AGAIN);
}

static void test_engine_byte_at_a_time(void **state)
{
	struct tls_ctx *sctx = server_ctx("a");
	struct tls_ctx *cctx = client_ctx(fx_path("a.crt"), true);
	const char *error = NULL;
	struct tls_engine *srv = tls_engine_new(sctx, NULL, "s", &error);
	struct tls_engine *cli = tls_engine_new(cctx, "localhost", "c", &error);
	struct tls_info info;
	struct str *desc = str_new(64, 256);
	char buf[16];
	size_t len;
	int cr, sr;

	/* The engines keep the contexts alive. */
	tls_ctx_free(&sctx);
	tls_ctx_free(&cctx);
	assert_non_null(srv);
	assert_non_null(cli);
	assert_int_equal(tls_engine_role(srv), TLS_ROLE_SERVER);
	handshake_pair(cli, srv, 1, &cr, &sr, &error);
	if (cr != TLS_R_OK || sr != TLS_R_OK)
		fail_msg("handshake: %s", error);
	assert_true(tls_engine_handshake_done(cli));

	tls_engine_info(cli, &info);
	assert_string_equal(info.protocol, "TLSv1.3");
	assert_int_equal(info.trust, TLS_TRUST_VERIFIED);
	assert_string_equal(info.peer_cn, "localhost");
	tls_engine_info(srv, &info);
	assert_int_equal(info.trust, TLS_TRUST_ANONYMOUS);
	assert_string_equal(info.sni, "localhost");
	assert_int_equal(tls_engine_describe(srv, desc), 0);
	assert_non_null(strstr(str_c(desc), "TLSv1.3 with cipher TLS_"));
	assert_non_null(strstr(str_c(desc), " bits)"));

	assert_int_equal(tls_engine_write(cli, "a1 LOGIN\r\n", 10, &error), 0);
	engine_expect_read(cli, srv, "a1 LOGIN\r\n");
	assert_int_equal(tls_engine_write(srv, "a1 OK\r\n", 7, &error), 0);
	engine_expect_read(srv, cli, "a1 OK\r\n");

	/* close_notify reaches the other side as end of file. */
	assert_int_equal(tls_engine_shutdown(cli), 0);
	shuttle(cli, srv, SIZE_MAX);
	assert_int_equal(tls_engine_read(srv, buf, sizeof(buf), &len, &error),
			 TLS_R_EOF);

	/* Garbage is a fatal error, not a hang. */
	assert_int_equal(tls_engine_feed(cli, "\x17\x03\x03\x00\x05zzzzz", 10),
			 0);
	assert_int_equal(tls_engine_read(cli, buf, sizeof(buf), &len, &error),
			 TLS_R_ERROR);
	assert_non_null(strstr(error, "TLS read failed"));
	str_free(&desc);
	tls_engine_free(&srv);
	tls_engine_free(&cli);
	assert_null(srv);
}

static void test_engine_verify(void **state)
{
	struct tls_ctx *sctx = server_ctx("a");
	struct tls_ctx *strict = client_ctx(fx_path("a.crt"), true);
	struct tls_ctx *lax = client_ctx(fx_path("b.crt"), false);
	const char *error = NULL;
	struct tls_engine *srv, *cli;
	struct tls_info info;
	int cr, sr;

	/* Name mismatch with verify on: refused. */
	srv = tls_engine_new(sctx, NULL, "s", &error);
	cli = tls_engine_new(strict, "wrong.test", "c", &error);
	handshake_pair(cli, srv, SIZE_MAX, &cr, &sr, &error);
	assert_int_equal(cr, TLS_R_ERROR);
	assert_non_null(strstr(error, "certificate verify failed"));
	assert_non_null(strstr(error, "hostname mismatch"));
	tls_engine_free(&srv);
	tls_engine_free(&cli);

	/* Unknown CA with verify off: accepted, reported Untrusted. */
	srv = tls_engine_new(sctx, NULL, "s", &error);
	cli = tls_engine_new(lax, "localhost", "c", &error);
	handshake_pair(cli, srv, SIZE_MAX, &cr, &sr, &error);
	assert_int_equal(cr, TLS_R_OK);
	tls_engine_info(cli, &info);
	assert_int_equal(info.trust, TLS_TRUST_UNTRUSTED);
	assert_string_equal(tls_trust_name(info.trust), "Untrusted");
	tls_engine_free(&srv);
	tls_engine_free(&cli);

	/* An address as peer name: no SNI, the IP SAN is checked. */
	srv = tls_engine_new(sctx, NULL, "s", &error);
	cli = tls_engine_new(strict, "127.0.0.1", "c", &error);
	handshake_pair(cli, srv, SIZE_MAX, &cr, &sr, &error);
	assert_int_equal(cr, TLS_R_OK);
	tls_engine_info(cli, &info);
	assert_int_equal(info.trust, TLS_TRUST_VERIFIED);
	tls_engine_info(srv, &info);
	assert_null(info.sni);
	tls_engine_free(&srv);
	tls_engine_free(&cli);

	tls_ctx_free(&sctx);
	tls_ctx_free(&strict);
	tls_ctx_free(&lax);
}

/* Which certificate the server presents for an SNI name. */
static void expect_sni(struct tls_ctx *sctx, struct tls_ctx *cctx,
		       const char *name, const char *want_cn)
{
	const char *error = NULL;
	struct tls_engine *srv = tls_engine_new(sctx, NULL, "s", &error);
	struct tls_engine *cli = tls_engine_new(cctx, name, "c", &error);
	struct tls_info info;
	int cr, sr;

	handshake_pair(cli, srv, SIZE_MAX, &cr, &sr, &error);
	if (cr != TLS_R_OK || sr != TLS_R_OK)
		fail_msg("SNI %s: %s", name != NULL ? name : "(none)", error);
	tls_engine_info(cli, &info);
	assert_non_null(info.peer_cn);
	if (strcmp(info.peer_cn, want_cn) != 0)
		fail_msg("SNI %s: got %s, want %s", name, info.peer_cn,
			 want_cn);
	tls_engine_free(&srv);
	tls_engine_free(&cli);
}

static void test_engine_sni(void **state)
{
	struct tls_ctx *sctx = server_ctx("a");
	struct tls_ctx *cctx = client_ctx(NULL, false);
	const char *error = NULL;

	assert_int_equal(tls_ctx_add_sni(sctx, "*.example.com",
					 fx_path("b.crt"), fx_path("b.key"),
					 &error), 0);
	assert_int_equal(tls_ctx_add_sni(sctx, "Other.Test", fx_path("c.crt"),
					 fx_path("c.key"), &error), 0);
	expect_sni(sctx, cctx, "imap.example.com", "mail.example.com");
	expect_sni(sctx, cctx, "IMAP.EXAMPLE.COM", "mail.example.com");
	expect_sni(sctx, cctx, "other.test", "other.test");
	expect_sni(sctx, cctx, "example.com", "localhost");
	expect_sni(sctx, cctx, "a.b.example.com", "localhost");
	expect_sni(sctx, cctx, "unknown.test", "localhost");
	expect_sni(sctx, cctx, NULL, "localhost");
	tls_ctx_free(&sctx);
	tls_ctx_free(&cctx);
}

/* conn over 127.0.0.1: a harness with one server and one client side. */

enum app_mode {
	APP_NONE,
	APP_ECHO,		/* server: echo with back-pressure */
	APP_LINES,		/* server: line protocol with STARTTLS */
	APP_ECHO_CLIENT,	/* client: send a payload, expect it back */
	APP_STARTTLS_CLIENT,	/* client: STARTTLS with injected command */
};

struct harness;

struct peer {
	struct harness *h;
	enum app_mode mode;
	struct conn *conn;
	struct str *in;		/* plaintext received (client) or lines */
	struct str *line;	/* server line buffer */
	struct str *reason;
	struct str *protocol;
	struct str *peer_cn;
	bool closed, tls_done, upgraded;
	size_t sent, max_pending, pauses;
};

struct harness {
	uv_loop_t loop;
	uv_tcp_t listener;
	uv_timer_t guard, pause;
	bool listener_open, timed_out;
	int port;
	int conns_expected, conns_closed;
	struct tls_ctx *sctx;	/* server TLS */
	bool implicit;		/* start TLS on accept / on connect */
	struct tls_ctx *cctx;	/* client TLS */
	const char *sni;
	size_t payload_len;
	struct peer srv, cli;
};

static unsigned char *payload;

static void peer_init(struct peer *p, struct harness *h, enum app_mode mode)
{
	memset(p, 0, sizeof(*p));
	p->h = h;
	p->mode = mode;
	p->in = str_new(1024, 2 * BIG_PAYLOAD);
	p->line = str_new(64, 1024);
	p->reason = str_new(64, 1024);
	p->protocol = str_new(16, 64);
	p->peer_cn = str_new(16, 256);
}

static void peer_deinit(struct peer *p)
{
	str_free(&p->in);
	str_free(&p->line);
	str_free(&p->reason);
	str_free(&p->protocol);
	str_free(&p->peer_cn);
}

static void harness_finish(struct harness *h)
{
	if (h->listener_open) {
		h->listener_open = false;
		uv_close((uv_handle_t *)&h->listener, NULL);
	}
	if (!uv_is_closing((uv_handle_t *)&h->guard)) {
		uv_close((uv_handle_t *)&h->guard, NULL);
		uv_close((uv_handle_t *)&h->pause, NULL);
	}
}

static void on_close(struct conn *c, const char *reason)
{
	struct peer *p = conn_ctx(c);

	p->closed = true;
	p->conn = NULL;
	if (reason != NULL && str_set(p->reason, reason, strlen(reason)) < 0)
		str_clear(p->reason);
	if (reason == NULL && str_set(p->reason, "(null)", 6) < 0)
		str_clear(p->reason);
	if (++p->h->conns_closed == p->h->conns_expected)
		harness_finish(p->h);
}

static void on_tls(struct conn *c)
{
	struct peer *p = conn_ctx(c);
	struct tls_info info;

	p->tls_done = true;
	tls_engine_info(conn_tls(c), &info);
	if (str_set(p->protocol, info.protocol, strlen(info.protocol)) < 0)
		str_clear(p->protocol);
	if (info.peer_cn != NULL &&
	    str_set(p->peer_cn, info.peer_cn, strlen(info.peer_cn)) < 0)
		str_clear(p->peer_cn);
	if (p->mode == APP_STARTTLS_CLIENT)
		(void)conn_write_c(c, "AFTER\r\nQUIT\r\n");
}

static void note_pending(struct peer *p)
{
	if (conn_pending(p->conn) > p->max_pending)
		p->max_pending = conn_pending(p->conn);
}

/* Server: echo everything, pausing input while the output is high. */
static void echo_on_read(struct conn *c, const char *data, size_t len)
{
	struct peer *p = conn_ctx(c);

	(void)conn_write(c, data, len);
	note_pending(p);
	if (conn_pending(c) >= CONN_HIGH_WATER)
		conn_read_stop(c);
}

static void echo_on_drain(struct conn *c)
{
	conn_read_start(c);
}

/* Server: a line protocol with STARTTLS.  Lines are logged to p->in. */
static void lines_on_read(struct conn *c, const char *data, size_t len)
{
	struct peer *p = conn_ctx(c);
	const char *error;
	char *eol;

	if (str_append(p->line, data, len) < 0) {
		conn_abort(c, "line too long");
		return;
	}
	while ((eol = memmem(str_c(p->line), str_len(p->line), "\r\n", 2)) !=
	       NULL) {
		size_t n = (size_t)(eol - str_c(p->line));

		assert_int_equal(str_append(p->in, str_c(p->line), n), 0);
		assert_int_equal(str_append_c(p->in, "\n"), 0);
		if (n == 8 && memcmp(str_c(p->line), "STARTTLS", 8) == 0) {
			(void)conn_write_c(c, "220 go ahead\r\n");
			if (conn_start_tls(c, p->h->sctx, NULL, &error) < 0)
				conn_abort(c, error);
			/* CVE-2011-0411: the rest of this chunk came in
			 * plaintext; drop it with the parser state. */
			str_clear(p->line);
			return;
		}
		if (n == 4 && memcmp(str_c(p->line), "QUIT", 4) == 0) {
			(void)conn_write_c(c, "221 bye\r\n");
			conn_close(c, NULL);
			str_clear(p->line);
			return;
		}
		(void)conn_write_c(c, "250 ");
		(void)conn_write(c, str_c(p->line), n);
		(void)conn_write_c(c, "\r\n");
		str_consume(p->line, n + 2);
	}
}

/* Client: send the payload in uneven pieces while the queue is low. */
static void client_send(struct peer *p)
{
	while (p->conn != NULL && p->sent < p->h->payload_len &&
	       conn_pending(p->conn) < CONN_HIGH_WATER) {
		size_t n = 1 + (p->sent * 7919) % 20000;

		if (n > p->h->payload_len - p->sent)
			n = p->h->payload_len - p->sent;
		assert_int_equal(conn_write(p->conn, payload + p->sent, n), 0);
		p->sent += n;
		note_pending(p);
	}
}

static void client_on_drain(struct conn *c)
{
	client_send(conn_ctx(c));
}

static void pause_done(uv_timer_t *t)
{
	struct harness *h = t->data;

	if (h->cli.conn != NULL)
		conn_read_start(h->cli.conn);
}

static void echo_client_on_read(struct conn *c, const char *data, size_t len)
{
	struct peer *p = conn_ctx(c);
	size_t before = str_len(p->in);

	assert_int_equal(str_append(p->in, data, len), 0);
	/* Pause now and then so that plaintext waits inside the engine. */
	if (before / 200000 != str_len(p->in) / 200000) {
		p->pauses++;
		conn_read_stop(c);
		uv_timer_start(&p->h->pause, pause_done, 20, 0);
	}
	if (str_len(p->in) == p->h->payload_len)
		conn_close(c, NULL);
}

static void starttls_client_on_read(struct conn *c, const char *data,
				    size_t len)
{
	struct peer *p = conn_ctx(c);
	const char *error;

	assert_int_equal(str_append(p->in, data, len), 0);
	if (!p->upgraded && strstr(str_c(p->in), "\r\n") != NULL) {
		p->upgraded = true;
		if (strncmp(str_c(p->in), "220 ", 4) != 0) {
			conn_abort(c, "no 220");
			return;
		}
		if (conn_start_tls(c, p->h->cctx, p->h->sni, &error) < 0)
			conn_abort(c, error);
	}
}

static const struct conn_ops echo_ops = {
	.on_read = echo_on_read,
	.on_close = on_close,
	.on_drain = echo_on_drain,
	.on_tls = on_tls,
};
static const struct conn_ops lines_ops = {
	.on_read = lines_on_read,
	.on_close = on_close,
	.on_tls = on_tls,
};
static const struct conn_ops echo_client_ops = {
	.on_read = echo_client_on_read,
	.on_close = on_close,
	.on_drain = client_on_drain,
	.on_tls = on_tls,
};
static const struct conn_ops starttls_client_ops = {
	.on_read = starttls_client_on_read,
	.on_close = on_close,
	.on_tls = on_tls,
};

static void on_connection(uv_stream_t *server, int status)
{
	struct harness *h = server->data;
	const struct conn_ops *ops =
		h->srv.mode == APP_ECHO ? &echo_ops : &lines_ops;
	const char *error = "listen error";
	struct conn *c;

	c = status < 0 ? NULL
		       : conn_accept(server, ops, &h->srv, "srv", &error);
	if (c == NULL)
		fail_msg("accept: %s", error);
	h->srv.conn = c;
	if (h->implicit && conn_start_tls(c, h->sctx, NULL, &error) < 0)
		fail_msg("start_tls: %s", error);
	h->listener_open = false;
	uv_close((uv_handle_t *)&h->listener, NULL);
}

static void on_connect(uv_connect_t *req, int status)
{
	struct harness *h = req->data;
	uv_stream_t *stream = req->handle;
	const struct conn_ops *ops = h->cli.mode == APP_ECHO_CLIENT
					     ? &echo_client_ops
					     : &starttls_client_ops;
	const char *error;
	struct conn *c;

	free(req);
	if (status < 0)
		fail_msg("connect: %s", uv_strerror(status));
	c = conn_new(&h->loop, stream, ops, &h->cli, "cli");
	h->cli.conn = c;
	if (h->cli.mode == APP_STARTTLS_CLIENT) {
		/* One write: the injected line rides in the same packet. */
		assert_int_equal(conn_write_c(c, "STARTTLS\r\nINJECTED\r\n"),
				 0);
		return;
	}
	if (conn_start_tls(c, h->cctx, h->sni, &error) < 0)
		fail_msg("client start_tls: %s", error);
	client_send(&h->cli);	/* queued until the handshake is done */
}

static void on_guard(uv_timer_t *t)
{
	struct harness *h = t->data;

	h->timed_out = true;
	if (h->srv.conn != NULL)
		conn_abort(h->srv.conn, "test timeout");
	if (h->cli.conn != NULL)
		conn_abort(h->cli.conn, "test timeout");
	harness_finish(h);
}

static void harness_init(struct harness *h, enum app_mode srv_mode,
			 enum app_mode cli_mode)
{
	struct sockaddr_in sin;
	struct sockaddr_storage ss;
	int len = sizeof(ss);

	memset(h, 0, sizeof(*h));
	assert_int_equal(uv_loop_init(&h->loop), 0);
	peer_init(&h->srv, h, srv_mode);
	peer_init(&h->cli, h, cli_mode);
	h->conns_expected = cli_mode == APP_NONE ? 1 : 2;
	assert_int_equal(uv_tcp_init(&h->loop, &h->listener), 0);
	h->listener.data = h;
	h->listener_open = true;
	assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sin), 0);
	assert_int_equal(uv_tcp_bind(&h->listener, (struct sockaddr *)&sin, 0),
			 0);
	assert_int_equal(uv_listen((uv_stream_t *)&h->listener, 8,
				   on_connection), 0);
	assert_int_equal(uv_tcp_getsockname(&h->listener,
					    (struct sockaddr *)&ss, &len), 0);
	h->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	uv_timer_init(&h->loop, &h->guard);
	uv_timer_init(&h->loop, &h->pause);
	h->guard.data = h->pause.data = h;
	uv_timer_start(&h->guard, on_guard, GUARD_MS, 0);
}

static void harness_connect(struct harness *h)
{
	uv_tcp_t *tcp = malloc(sizeof(*tcp));
	uv_connect_t *req = malloc(sizeof(*req));
	struct sockaddr_in sin;

	assert_non_null(tcp);
	assert_non_null(req);
	uv_tcp_init(&h->loop, tcp);
	req->data = h;
	assert_int_equal(uv_ip4_addr("127.0.0.1", h->port, &sin), 0);
	assert_int_equal(uv_tcp_connect(req, tcp, (struct sockaddr *)&sin,
					on_connect), 0);
}

static void harness_run(struct harness *h)
{
	assert_int_equal(uv_run(&h->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&h->loop), 0);
	assert_false(h->timed_out);
}

static void harness_deinit(struct harness *h)
{
	peer_deinit(&h->srv);
	peer_deinit(&h->cli);
	tls_ctx_free(&h->sctx);
	tls_ctx_free(&h->cctx);
}

static bool log_contains(const char *needle)
{
	FILE *f = fopen(fx_path("log"), "r");
	struct str *all = str_new(4096, 1 << 22);
	char buf[4096];
	size_t n;
	bool found;

	assert_non_null(f);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		assert_int_equal(str_append(all, buf, n), 0);
	fclose(f);
	found = strstr(str_c(all), needle) != NULL;
	str_free(&all);
	return found;
}

static void test_conn_implicit_tls_echo(void **state)
{
	struct harness h;

	harness_init(&h, APP_ECHO, APP_ECHO_CLIENT);
	h.sctx = server_ctx("a");
	h.cctx = client_ctx(fx_path("a.crt"), true);
	h.implicit = true;
	h.sni = "localhost";
	h.payload_len = BIG_PAYLOAD;
	harness_connect(&h);
	harness_run(&h);

	assert_true(h.srv.tls_done);
	assert_true(h.cli.tls_done);
	assert_string_equal(str_c(h.srv.protocol), "TLSv1.3");
	assert_string_equal(str_c(h.cli.peer_cn), "localhost");
	assert_int_equal(h.cli.sent, BIG_PAYLOAD);
	assert_int_equal(str_len(h.cli.in), BIG_PAYLOAD);
	assert_memory_equal(str_c(h.cli.in), payload, BIG_PAYLOAD);
	assert_true(h.cli.pauses >= 4);
	/* Back-pressure: the echo never held much more than the high mark. */
	assert_true(h.srv.max_pending < CONN_HIGH_WATER + 2 * CONN_READ_SIZE);
	assert_string_equal(str_c(h.cli.reason), "(null)");
	assert_string_equal(str_c(h.srv.reason), "disconnected");
	assert_true(log_contains("srv: Anonymous TLS connection established "
				 "from 127.0.0.1: TLSv1.3 with cipher TLS_"));
	assert_true(log_contains("cli: Verified TLS connection established to "
				 "127.0.0.1: TLSv1.3 with cipher TLS_"));
	harness_deinit(&h);
}

/* STARTTLS with "INJECTED" in the same packet: never executed. */
static void test_conn_starttls_injection(void **state)
{
	struct harness h;

	harness_init(&h, APP_LINES, APP_STARTTLS_CLIENT);
	h.sctx = server_ctx("a");
	h.cctx = client_ctx(fx_path("a.crt"), true);
	h.sni = "localhost";
	harness_connect(&h);
	harness_run(&h);

	assert_true(h.srv.tls_done);
	assert_true(h.cli.tls_done);
	assert_string_equal(str_c(h.srv.in), "STARTTLS\nAFTER\nQUIT\n");
	assert_string_equal(str_c(h.cli.in),
			    "220 go ahead\r\n250 AFTER\r\n221 bye\r\n");
	assert_string_equal(str_c(h.srv.reason), "(null)");
	harness_deinit(&h);
}

/* Raw OpenSSL clients in a thread: a peer that is not our own code. */

struct raw_client {
	int port;
	int min_version, max_version;
	bool seclevel0;
	bool starttls, late_inject;
	/* results */
	bool connected, handshake_ok, echo_ok;
	char version[32];
};

static bool raw_read_line(int fd, char *buf, size_t size)
{
	size_t n = 0;

	while (n + 1 < size) {
		ssize_t r = read(fd, buf + n, 1);

		if (r <= 0)
			return false;
		if (buf[n++] == '\n')
			break;
	}
	buf[n] = '\0';
	return true;
}

static void raw_tls(struct raw_client *rc, int fd)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl;
	char buf[16];
	size_t got = 0;

	if (ctx == NULL)
		return;
	if (rc->seclevel0) {
		SSL_CTX_set_security_level(ctx, 0);
		SSL_CTX_set_cipher_list(ctx, "DEFAULT@SECLEVEL=0");
	}
	SSL_CTX_set_min_proto_version(ctx, rc->min_version);
	SSL_CTX_set_max_proto_version(ctx, rc->max_version);
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	if (SSL_connect(ssl) == 1) {
		rc->handshake_ok = true;
		str_lcpy(rc->version, SSL_get_version(ssl),
			 sizeof(rc->version));
		if (SSL_write(ssl, "ping\r\n", 6) == 6) {
			while (got < 6) {
				int r = SSL_read(ssl, buf + got,
						 (int)(sizeof(buf) - got));

				if (r <= 0)
					break;
				got += (size_t)r;
			}
			rc->echo_ok = got == 6 &&
				      memcmp(buf, "ping\r\n", 6) == 0;
		}
		SSL_shutdown(ssl);
	}
	SSL_free(ssl);
	SSL_CTX_free(ctx);
}

static void *raw_client_main(void *arg)
{
	struct raw_client *rc = arg;
	struct sockaddr_in sin;
	struct timeval tv = { .tv_sec = 10 };
	char line[256];
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		return NULL;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)rc->port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		close(fd);
		return NULL;
	}
	rc->connected = true;
	if (rc->starttls) {
		if (write(fd, "STARTTLS\r\n", 10) != 10)
			goto out;
		if (!raw_read_line(fd, line, sizeof(line)) ||
		    strncmp(line, "220 ", 4) != 0)
			goto out;
		/* A man in the middle adds a plaintext command after the
		 * server's reply. */
		if (rc->late_inject && write(fd, "INJECTED\r\n", 10) != 10)
			goto out;
	}
	raw_tls(rc, fd);
out:
	close(fd);
	return NULL;
}

static void run_raw(struct harness *h, struct raw_client *rc)
{
	pthread_t thread;

	rc->port = h->port;
	assert_int_equal(pthread_create(&thread, NULL, raw_client_main, rc),
			 0);
	harness_run(h);
	assert_int_equal(pthread_join(thread, NULL), 0);
	assert_true(rc->connected);
}

static void test_conn_tls12_accepted(void **state)
{
	struct raw_client rc = {
		.min_version = TLS1_2_VERSION,
		.max_version = TLS1_2_VERSION,
	};
	struct harness h;

	harness_init(&h, APP_ECHO, APP_NONE);
	h.sctx = server_ctx("a");
	h.implicit = true;
	run_raw(&h, &rc);
	assert_true(rc.handshake_ok);
	assert_true(rc.echo_ok);
	assert_string_equal(rc.version, "TLSv1.2");
	assert_string_equal(str_c(h.srv.protocol), "TLSv1.2");
	assert_string_equal(str_c(h.srv.reason), "disconnected");
	harness_deinit(&h);
}

static void test_conn_tls11_refused(void **state)
{
	/* SECLEVEL=0 so that the refusal comes from our server, not from
	 * the client's own OpenSSL policy. */
	struct raw_client rc = {
		.min_version = TLS1_VERSION,
		.max_version = TLS1_1_VERSION,
		.seclevel0 = true,
	};
	struct harness h;

	harness_init(&h, APP_ECHO, APP_NONE);
	h.sctx = server_ctx("a");
	h.implicit = true;
	run_raw(&h, &rc);
	assert_false(rc.handshake_ok);
	assert_false(h.srv.tls_done);
	assert_non_null(strstr(str_c(h.srv.reason), "TLS handshake failed"));
	assert_non_null(strstr(str_c(h.srv.reason), "unsupported protocol"));
	harness_deinit(&h);
}

/* Bytes that arrive after the "220" are TLS: plaintext injected there fails
 * the handshake instead of being read as a command. */
static void test_conn_starttls_late_injection(void **state)
{
	struct raw_client rc = {
		.min_version = TLS1_2_VERSION,
		.max_version = TLS1_3_VERSION,
		.starttls = true,
		.late_inject = true,
	};
	struct harness h;

	harness_init(&h, APP_LINES, APP_NONE);
	h.sctx = server_ctx("a");
	run_raw(&h, &rc);
	assert_false(rc.handshake_ok);
	assert_false(h.srv.tls_done);
	assert_string_equal(str_c(h.srv.in), "STARTTLS\n");
	assert_non_null(strstr(str_c(h.srv.reason), "TLS handshake failed"));
	harness_deinit(&h);
}

/* STARTTLS without tricks, raw client, TLS 1.3. */
static void test_conn_starttls_raw(void **state)
{
	struct raw_client rc = {
		.min_version = TLS1_2_VERSION,
		.max_version = TLS1_3_VERSION,
		.starttls = true,
	};
	struct harness h;

	harness_init(&h, APP_LINES, APP_NONE);
	h.sctx = server_ctx("a");
	run_raw(&h, &rc);
	assert_true(rc.handshake_ok);
	assert_true(h.srv.tls_done);
	assert_string_equal(rc.version, "TLSv1.3");
	/* The server answered "250 ping" where an echo was expected. */
	assert_false(rc.echo_ok);
	assert_string_equal(str_c(h.srv.in), "STARTTLS\nping\n");
	harness_deinit(&h);
}

static void test_conn_sni(void **state)
{
	struct harness h;
	const char *error = NULL;

	harness_init(&h, APP_ECHO, APP_ECHO_CLIENT);
	h.sctx = server_ctx("a");
	assert_int_equal(tls_ctx_add_sni(h.sctx, "*.example.com",
					 fx_path("b.crt"), fx_path("b.key"),
					 &error), 0);
	h.cctx = client_ctx(fx_path("b.crt"), true);
	h.implicit = true;
	h.sni = "imap.example.com";
	h.payload_len = 1000;
	harness_connect(&h);
	harness_run(&h);
	assert_true(h.cli.tls_done);
	assert_string_equal(str_c(h.cli.peer_cn), "mail.example.com");
	assert_int_equal(str_len(h.cli.in), 1000);
	assert_true(log_contains("SNI=imap.example.com"));
	harness_deinit(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tlsgen_output),
		cmocka_unit_test(test_tlsgen_overwrite),
		cmocka_unit_test(test_ctx_errors),
		cmocka_unit_test(test_hostname_match),
		cmocka_unit_test(test_engine_byte_at_a_time),
		cmocka_unit_test(test_engine_verify),
		cmocka_unit_test(test_engine_sni),
		cmocka_unit_test(test_conn_implicit_tls_echo),
		cmocka_unit_test(test_conn_starttls_injection),
		cmocka_unit_test(test_conn_tls12_accepted),
		cmocka_unit_test(test_conn_tls11_refused),
		cmocka_unit_test(test_conn_starttls_late_injection),
		cmocka_unit_test(test_conn_starttls_raw),
		cmocka_unit_test(test_conn_sni),
	};
	int r;

	payload = malloc(BIG_PAYLOAD);
	if (payload == NULL)
		return 1;
	for (size_t i = 0; i < BIG_PAYLOAD; i++)
		payload[i] = (unsigned char)(i * 7 + i / 251);
	r = cmocka_run_group_tests(tests, group_setup, group_teardown);
	free(payload);
	return r;
}
