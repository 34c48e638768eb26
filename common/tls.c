/* tls.c: see tls.h. */
#include "config.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "compat.h"
#include "log.h"
#include "str.h"
#include "tls.h"

#define TLS_ERROR_MAX 1024
#define TLS_SESSION_ID_CONTEXT "tern"

struct tls_sni {
	struct str *name;	/* lower case; "*.example.com" for wildcards */
	SSL_CTX *ssl_ctx;
};

struct tls_ctx {
	int refs;
	enum tls_role role;
	SSL_CTX *ssl_ctx;
	int min_version;
	bool verify;
	struct str *ciphers;	/* server: reused for the SNI contexts */
	struct tls_sni *sni;
	size_t sni_count;
};

struct tls_engine {
	struct tls_ctx *ctx;
	SSL *ssl;
	BIO *rbio;		/* network -> SSL */
	BIO *wbio;		/* SSL -> network */
	struct str *id;
	struct str *error;
	struct str *peer_cn;
	bool handshake_done;
	bool failed;
	bool name_checked;
};

/* tls_ctx_* error strings: see tls.h. */
static _Thread_local char tls_ctx_errbuf[TLS_ERROR_MAX];

/* One queue entry in words: errno text for system errors, else the reason;
 * NULL for the generic "... lib" entries that only say where it passed. */
static const char *tls_err_text(unsigned long code, char *buf, size_t size)
{
	const char *reason;
	size_t len;

	if (ERR_SYSTEM_ERROR(code))
		return strerror(ERR_GET_REASON(code));
	reason = ERR_reason_error_string(code);
	if (reason == NULL) {
		snprintf(buf, size, "error %lx", code);
		return buf;
	}
	len = strlen(reason);
	if (len > 4 && strcmp(reason + len - 4, " lib") == 0)
		return NULL;
	return reason;
}

/* Appends the OpenSSL error queue of this thread (and empties it). */
static void tls_err_append_queue(struct str *dst)
{
	unsigned long code;
	const char *data, *last = NULL;
	char buf[32];
	int flags, r = 0;
	size_t start = str_len(dst);

	while ((code = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) !=
	       0) {
		const char *text = tls_err_text(code, buf, sizeof(buf));

		if (text == NULL || (last != NULL && strcmp(text, last) == 0))
			continue;
		last = text;
		if (r == 0)
			r = str_printf(dst, "%s%s",
				       str_len(dst) > start ? ", " : "", text);
		/* The file name is in our own prefix already. */
		if (r == 0 && (flags & ERR_TXT_STRING) != 0 && data != NULL &&
		    *data != '\0' && strncmp(data, "calling ", 8) != 0)
			r = str_printf(dst, " (%s)", data);
	}
	if (str_len(dst) == start && str_append_c(dst, "unknown error") < 0) {
		/* too long already */
	}
}

/* Formats "prefix: <OpenSSL errors>" into the per-thread buffer. */
static const char *tls_ctx_error(const char *fmt, ...) TERN_PRINTF(1, 2);
static const char *tls_ctx_error(const char *fmt, ...)
{
	struct str *s = str_new(256, TLS_ERROR_MAX - 1);
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = str_vprintf(s, fmt, ap);
	va_end(ap);
	if (r == 0 && str_append_c(s, ": ") == 0)
		tls_err_append_queue(s);
	ERR_clear_error();
	str_lcpy(tls_ctx_errbuf, str_c(s), sizeof(tls_ctx_errbuf));
	str_free(&s);
	return tls_ctx_errbuf;
}

static int tls_parse_version(const char *v, int *version_r)
{
	if (v == NULL || *v == '\0') {
		*version_r = TLS1_2_VERSION;
		return 0;
	}
	if (strncasecmp(v, "TLSv", 4) == 0)
		v += 4;
	if (strcmp(v, "1.2") == 0)
		*version_r = TLS1_2_VERSION;
	else if (strcmp(v, "1.3") == 0)
		*version_r = TLS1_3_VERSION;
	else
		return -1;
	return 0;
}

/* What every context shares, server or client. */
static SSL_CTX *tls_ssl_ctx_new(enum tls_role role, int min_version,
				const char *ciphers)
{
	SSL_CTX *c = SSL_CTX_new(role == TLS_ROLE_SERVER ? TLS_server_method()
							 : TLS_client_method());

	if (c == NULL)
		return NULL;
	/* Not SSL_OP_CIPHER_SERVER_PREFERENCE: all of the list is strong, so
	 * the client may pick what is fastest for it (Mozilla intermediate). */
	SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_set_min_proto_version(c, min_version) != 1 ||
	    SSL_CTX_set1_groups_list(c, TLS_DEFAULT_GROUPS) != 1 ||
	    (ciphers != NULL && SSL_CTX_set_cipher_list(c, ciphers) != 1)) {
		SSL_CTX_free(c);
		return NULL;
	}
	return c;
}

static SSL_CTX *tls_server_ssl_ctx_new(const char *cert_file,
				       const char *key_file,
				       const char *ciphers, int min_version,
				       const char **error_r)
{
	SSL_CTX *c = tls_ssl_ctx_new(TLS_ROLE_SERVER, min_version, ciphers);

	if (c == NULL) {
		*error_r = tls_ctx_error("cannot set up TLS (ciphers \"%s\")",
					 ciphers);
		return NULL;
	}
	SSL_CTX_set_dh_auto(c, 1);
	SSL_CTX_set_session_id_context(
		c, (const unsigned char *)TLS_SESSION_ID_CONTEXT,
		sizeof(TLS_SESSION_ID_CONTEXT) - 1);
	if (SSL_CTX_use_certificate_chain_file(c, cert_file) != 1) {
		*error_r = tls_ctx_error("cannot load certificate chain %s",
					 cert_file);
	} else if (SSL_CTX_use_PrivateKey_file(c, key_file,
					       SSL_FILETYPE_PEM) != 1) {
		unsigned long code = ERR_peek_last_error();

		if (ERR_GET_LIB(code) == ERR_LIB_X509 &&
		    ERR_GET_REASON(code) == X509_R_KEY_VALUES_MISMATCH)
			*error_r = tls_ctx_error(
				"private key %s does not match certificate %s",
				key_file, cert_file);
		else
			*error_r = tls_ctx_error("cannot load private key %s",
						 key_file);
	} else if (SSL_CTX_check_private_key(c) != 1) {
		*error_r = tls_ctx_error(
			"private key %s does not match certificate %s",
			key_file, cert_file);
	} else {
		return c;
	}
	SSL_CTX_free(c);
	return NULL;
}

static int tls_sni_cb(SSL *ssl, int *alert, void *arg);

struct tls_ctx *tls_ctx_server_new(const char *cert_file, const char *key_file,
				   const char *ciphers,
				   const char *min_version,
				   const char **error_r)
{
	struct tls_ctx *ctx;
	int version;

	if (tls_parse_version(min_version, &version) < 0) {
		*error_r = "tls_min_version must be 1.2 or 1.3";
		return NULL;
	}
	if (ciphers == NULL || *ciphers == '\0')
		ciphers = TLS_DEFAULT_CIPHERS;
	if (cert_file == NULL || *cert_file == '\0' || key_file == NULL ||
	    *key_file == '\0') {
		*error_r = "TLS needs both a certificate and a key file";
		return NULL;
	}
	ERR_clear_error();
	ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL)
		abort();
	ctx->refs = 1;
	ctx->role = TLS_ROLE_SERVER;
	ctx->min_version = version;
	ctx->ciphers = str_dup_c(ciphers);
	ctx->ssl_ctx = tls_server_ssl_ctx_new(cert_file, key_file, ciphers,
					      version, error_r);
	if (ctx->ssl_ctx == NULL) {
		tls_ctx_free(&ctx);
		return NULL;
	}
	SSL_CTX_set_tlsext_servername_callback(ctx->ssl_ctx, tls_sni_cb);
	SSL_CTX_set_tlsext_servername_arg(ctx->ssl_ctx, ctx);
	return ctx;
}

struct tls_ctx *tls_ctx_client_new(const char *ca_file, bool verify,
				   const char *min_version,
				   const char **error_r)
{
	struct tls_ctx *ctx;
	int version, r;

	if (tls_parse_version(min_version, &version) < 0) {
		*error_r = "tls_min_version must be 1.2 or 1.3";
		return NULL;
	}
	ERR_clear_error();
	ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL)
		abort();
	ctx->refs = 1;
	ctx->role = TLS_ROLE_CLIENT;
	ctx->min_version = version;
	ctx->verify = verify;
	/* OpenSSL's default list: for opportunistic TLS to other servers any
	 * TLS 1.2+ cipher beats plaintext. */
	ctx->ssl_ctx = tls_ssl_ctx_new(TLS_ROLE_CLIENT, version, NULL);
	if (ctx->ssl_ctx == NULL) {
		*error_r = tls_ctx_error("cannot set up TLS");
		tls_ctx_free(&ctx);
		return NULL;
	}
	if (ca_file != NULL && *ca_file != '\0')
		r = SSL_CTX_load_verify_locations(ctx->ssl_ctx, ca_file, NULL);
	else
		r = SSL_CTX_set_default_verify_paths(ctx->ssl_ctx);
	if (r != 1) {
		*error_r = tls_ctx_error("cannot load CA certificates %s",
					 ca_file != NULL && *ca_file != '\0'
						 ? ca_file
						 : "(system default)");
		tls_ctx_free(&ctx);
		return NULL;
	}
	/* Without verify the handshake goes on and the result is reported. */
	SSL_CTX_set_verify(ctx->ssl_ctx,
			   verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	return ctx;
}

static bool tls_hostname_char(unsigned char c)
{
	return c == '-' || c == '.' || c == '_' || (c >= '0' && c <= '9') ||
	       (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Letters, digits, "-", ".", "_"; "*." only at the start. */
static bool tls_valid_hostname(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > TLS_HOSTNAME_MAX)
		return false;
	if (name[0] == '*' && name[1] == '.')
		name++;
	for (const char *p = name; *p != '\0'; p++)
		if (!tls_hostname_char((unsigned char)*p))
			return false;
	return true;
}

int tls_ctx_add_sni(struct tls_ctx *ctx, const char *hostname,
		    const char *cert_file, const char *key_file,
		    const char **error_r)
{
	struct tls_sni *sni;
	SSL_CTX *c;

	if (ctx->role != TLS_ROLE_SERVER) {
		*error_r = "SNI certificates need a server context";
		return -1;
	}
	if (!tls_valid_hostname(hostname) ||
	    (hostname[0] == '*' && strlen(hostname) < 3)) {
		*error_r = "invalid SNI host name";
		return -1;
	}
	if (ctx->sni_count >= TLS_SNI_MAX) {
		*error_r = "too many SNI certificates";
		return -1;
	}
	ERR_clear_error();
	c = tls_server_ssl_ctx_new(cert_file, key_file, str_c(ctx->ciphers),
				   ctx->min_version, error_r);
	if (c == NULL)
		return -1;
	sni = realloc(ctx->sni, (ctx->sni_count + 1) * sizeof(*sni));
	if (sni == NULL)
		abort();
	ctx->sni = sni;
	sni += ctx->sni_count++;
	sni->name = str_dup_c(hostname);
	for (char *p = str_data(sni->name); *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	sni->ssl_ctx = c;
	return 0;
}

enum tls_role tls_ctx_role(const struct tls_ctx *ctx)
{
	return ctx->role;
}

void tls_ctx_free(struct tls_ctx **ctxp)
{
	struct tls_ctx *ctx = *ctxp;

	if (ctx == NULL)
		return;
	*ctxp = NULL;
	if (--ctx->refs > 0)
		return;
	for (size_t i = 0; i < ctx->sni_count; i++) {
		str_free(&ctx->sni[i].name);
		SSL_CTX_free(ctx->sni[i].ssl_ctx);
	}
	free(ctx->sni);
	str_free(&ctx->ciphers);
	SSL_CTX_free(ctx->ssl_ctx);
	free(ctx);
}

int tls_hostname_match(const char *pattern, const char *host)
{
	size_t hlen = strlen(host);
	const char *dot;

	if (hlen > 0 && host[hlen - 1] == '.')
		hlen--;		/* "mail.example.com." is fully qualified */
	if (hlen == 0)
		return 0;
	if (pattern[0] != '*')
		return strlen(pattern) == hlen &&
		       strncasecmp(pattern, host, hlen) == 0;
	/* "*.example.com": exactly one non-empty label in front. */
	dot = memchr(host, '.', hlen);
	if (dot == NULL || dot == host)
		return 0;
	return strlen(pattern + 1) == hlen - (size_t)(dot - host) &&
	       strncasecmp(pattern + 1, dot, hlen - (size_t)(dot - host)) == 0;
}

static const struct tls_sni *tls_sni_lookup(const struct tls_ctx *ctx,
					    const char *name)
{
	for (size_t i = 0; i < ctx->sni_count; i++)
		if (str_c(ctx->sni[i].name)[0] != '*' &&
		    tls_hostname_match(str_c(ctx->sni[i].name), name))
			return &ctx->sni[i];
	for (size_t i = 0; i < ctx->sni_count; i++)
		if (str_c(ctx->sni[i].name)[0] == '*' &&
		    tls_hostname_match(str_c(ctx->sni[i].name), name))
			return &ctx->sni[i];
	return NULL;
}

static int tls_sni_cb(SSL *ssl, int *alert, void *arg)
{
	const struct tls_ctx *ctx = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	const struct tls_sni *hit;
	struct tls_engine *e = SSL_get_app_data(ssl);

	if (name == NULL || ctx->sni_count == 0)
		return SSL_TLSEXT_ERR_OK;
	hit = tls_sni_lookup(ctx, name);
	if (hit == NULL)
		return SSL_TLSEXT_ERR_OK;	/* the default certificate */
	if (SSL_set_SSL_CTX(ssl, hit->ssl_ctx) == NULL) {
		*alert = SSL_AD_INTERNAL_ERROR;
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	}
	if (e != NULL)
		log_debug(str_c(e->id), "SNI %s: certificate for %s", name,
			  str_c(hit->name));
	return SSL_TLSEXT_ERR_OK;
}

/* Engines. */

static bool tls_is_ip(const char *name)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, name, buf) == 1 ||
	       inet_pton(AF_INET6, name, buf) == 1;
}

/* Client: SNI and the name the certificate must carry. */
static int tls_engine_set_peer(struct tls_engine *e, const char *name)
{
	if (name[0] == '*' || (!tls_valid_hostname(name) && !tls_is_ip(name)))
		return -1;
	if (tls_is_ip(name)) {
		/* RFC 6066: no SNI for addresses. */
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(e->ssl),
						  name) != 1)
			return -1;
	} else {
		if (SSL_set_tlsext_host_name(e->ssl, name) != 1)
			return -1;
		SSL_set_hostflags(e->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (SSL_set1_host(e->ssl, name) != 1)
			return -1;
	}
	e->name_checked = true;
	return 0;
}

struct tls_engine *tls_engine_new(struct tls_ctx *ctx, const char *peer_name,
				  const char *id, const char **error_r)
{
	struct tls_engine *e = calloc(1, sizeof(*e));

	if (e == NULL)
		abort();
	ERR_clear_error();
	e->ctx = ctx;
	ctx->refs++;
	e->id = str_dup_c(id != NULL ? id : "");
	e->error = str_new(128, TLS_ERROR_MAX);
	e->ssl = SSL_new(ctx->ssl_ctx);
	e->rbio = BIO_new(BIO_s_mem());
	e->wbio = BIO_new(BIO_s_mem());
	if (e->ssl == NULL || e->rbio == NULL || e->wbio == NULL) {
		BIO_free(e->rbio);
		BIO_free(e->wbio);
		e->rbio = e->wbio = NULL;
		*error_r = tls_ctx_error("cannot create TLS session");
		tls_engine_free(&e);
		return NULL;
	}
	/* An empty input BIO means "more later", not end of file. */
	BIO_set_mem_eof_return(e->rbio, -1);
	SSL_set_bio(e->ssl, e->rbio, e->wbio);
	SSL_set_app_data(e->ssl, e);
	if (ctx->role == TLS_ROLE_SERVER) {
		SSL_set_accept_state(e->ssl);
	} else {
		SSL_set_connect_state(e->ssl);
		if (peer_name != NULL &&
		    tls_engine_set_peer(e, peer_name) < 0) {
			*error_r = tls_ctx_error("invalid TLS peer name %s",
						 peer_name);
			tls_engine_free(&e);
			return NULL;
		}
	}
	return e;
}

void tls_engine_free(struct tls_engine **ep)
{
	struct tls_engine *e = *ep;

	if (e == NULL)
		return;
	*ep = NULL;
	SSL_free(e->ssl);	/* frees the BIOs too */
	str_free(&e->id);
	str_free(&e->error);
	str_free(&e->peer_cn);
	tls_ctx_free(&e->ctx);
	free(e);
}

enum tls_role tls_engine_role(const struct tls_engine *e)
{
	return e->ctx->role;
}

int tls_engine_feed(struct tls_engine *e, const void *data, size_t len)
{
	while (len > 0) {
		int n = len > INT_MAX ? INT_MAX : (int)len;
		int w = BIO_write(e->rbio, data, n);

		if (w <= 0)
			return -1;
		data = (const char *)data + w;
		len -= (size_t)w;
	}
	return 0;
}

size_t tls_engine_out_pending(const struct tls_engine *e)
{
	return BIO_ctrl_pending(e->wbio);
}

size_t tls_engine_out_take(struct tls_engine *e, void *buf, size_t size)
{
	size_t got = 0;

	if (size > 0 && BIO_read_ex(e->wbio, buf, size, &got) != 1)
		return 0;
	return got;
}

/* Sets e->error from the OpenSSL state after a failed call. */
static const char *tls_engine_error(struct tls_engine *e, const char *what,
				    int ssl_error)
{
	long vr = SSL_get_verify_result(e->ssl);

	str_clear(e->error);
	if (str_printf(e->error, "%s: ", what) < 0)
		return what;
	if (ssl_error == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
		if (str_append_c(e->error, "unexpected end of data") < 0)
			return what;
	} else {
		tls_err_append_queue(e->error);
	}
	if (vr != X509_V_OK && e->ctx->verify && !e->handshake_done &&
	    str_printf(e->error, " (%s)", X509_verify_cert_error_string(vr)) <
		    0) {
		/* cut */
	}
	ERR_clear_error();
	return str_c(e->error);
}

static int tls_engine_result(struct tls_engine *e, int ret, const char *what,
			     const char **error_r)
{
	int err = SSL_get_error(e->ssl, ret);

	switch (err) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return TLS_R_AGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return TLS_R_EOF;
	default:
		e->failed = true;
		*error_r = tls_engine_error(e, what, err);
		return TLS_R_ERROR;
	}
}

int tls_engine_handshake(struct tls_engine *e, const char **error_r)
{
	int ret;

	if (e->handshake_done)
		return TLS_R_OK;
	if (e->failed) {
		*error_r = str_c(e->error);
		return TLS_R_ERROR;
	}
	ERR_clear_error();
	ret = SSL_do_handshake(e->ssl);
	if (ret == 1) {
		e->handshake_done = true;
		return TLS_R_OK;
	}
	ret = tls_engine_result(e, ret, "TLS handshake failed", error_r);
	if (ret == TLS_R_EOF) {
		e->failed = true;
		*error_r = "TLS handshake failed: peer closed the session";
		return TLS_R_ERROR;
	}
	return ret;
}

bool tls_engine_handshake_done(const struct tls_engine *e)
{
	return e->handshake_done;
}

int tls_engine_read(struct tls_engine *e, void *buf, size_t size,
		    size_t *len_r, const char **error_r)
{
	int ret;

	*len_r = 0;
	if (e->failed || !e->handshake_done) {
		*error_r = e->failed ? str_c(e->error)
				     : "TLS read before the handshake";
		return TLS_R_ERROR;
	}
	ERR_clear_error();
	ret = SSL_read_ex(e->ssl, buf, size, len_r);
	if (ret == 1)
		return TLS_R_OK;
	return tls_engine_result(e, ret, "TLS read failed", error_r);
}

int tls_engine_write(struct tls_engine *e, const void *data, size_t len,
		     const char **error_r)
{
	if (e->failed || !e->handshake_done) {
		*error_r = e->failed ? str_c(e->error)
				     : "TLS write before the handshake";
		return -1;
	}
	while (len > 0) {
		size_t done = 0;
		int ret;

		ERR_clear_error();
		ret = SSL_write_ex(e->ssl, data, len, &done);
		if (ret != 1) {
			/* The memory BIO never refuses, so this is fatal. */
			if (tls_engine_result(e, ret, "TLS write failed",
					      error_r) != TLS_R_ERROR) {
				e->failed = true;
				*error_r = "TLS write failed";
			}
			return -1;
		}
		data = (const char *)data + done;
		len -= done;
	}
	return 0;
}

int tls_engine_shutdown(struct tls_engine *e)
{
	if (e->failed || !e->handshake_done)
		return 0;
	ERR_clear_error();
	if (SSL_shutdown(e->ssl) < 0) {
		ERR_clear_error();
		return -1;
	}
	return 0;
}

static void tls_engine_load_peer_cn(struct tls_engine *e, X509 *peer)
{
	X509_NAME *subject = X509_get_subject_name(peer);
	int idx = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
	unsigned char *utf8 = NULL;
	int len;

	if (idx < 0)
		return;
	len = ASN1_STRING_to_UTF8(
		&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject,
								    idx)));
	if (len > 0 && len <= TLS_HOSTNAME_MAX) {
		e->peer_cn = str_new((size_t)len, (size_t)len);
		if (str_append(e->peer_cn, utf8, (size_t)len) < 0)
			str_free(&e->peer_cn);
	}
	OPENSSL_free(utf8);
}

void tls_engine_info(struct tls_engine *e, struct tls_info *info_r)
{
	const SSL_CIPHER *cipher = SSL_get_current_cipher(e->ssl);
	X509 *peer = SSL_get0_peer_certificate(e->ssl);

	memset(info_r, 0, sizeof(*info_r));
	info_r->protocol = SSL_get_version(e->ssl);
	info_r->cipher = cipher != NULL ? SSL_CIPHER_get_name(cipher) : "none";
	if (cipher != NULL)
		info_r->bits = SSL_CIPHER_get_bits(cipher, &info_r->alg_bits);
	info_r->sni = SSL_get_servername(e->ssl, TLSEXT_NAMETYPE_host_name);
	if (peer == NULL) {
		info_r->trust = TLS_TRUST_ANONYMOUS;
		return;
	}
	if (e->peer_cn == NULL)
		tls_engine_load_peer_cn(e, peer);
	info_r->peer_cn = e->peer_cn != NULL ? str_c(e->peer_cn) : NULL;
	if (SSL_get_verify_result(e->ssl) != X509_V_OK)
		info_r->trust = TLS_TRUST_UNTRUSTED;
	else if (e->name_checked)
		info_r->trust = TLS_TRUST_VERIFIED;
	else
		info_r->trust = TLS_TRUST_TRUSTED;
}

const char *tls_trust_name(enum tls_trust trust)
{
	switch (trust) {
	case TLS_TRUST_UNTRUSTED: return "Untrusted";
	case TLS_TRUST_TRUSTED: return "Trusted";
	case TLS_TRUST_VERIFIED: return "Verified";
	default: return "Anonymous";
	}
}

int tls_engine_describe(struct tls_engine *e, struct str *dst)
{
	struct tls_info info;

	tls_engine_info(e, &info);
	return str_printf(dst, "%s with cipher %s (%d/%d bits)", info.protocol,
			  info.cipher, info.bits, info.alg_bits);
}
