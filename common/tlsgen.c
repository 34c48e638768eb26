/* tlsgen.c: see tlsgen.h. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "compat.h"
#include "fsutil.h"
#include "str.h"
#include "tlsgen.h"

#define TLSGEN_CN_MAX 64	/* ub-common-name */
#define TLSGEN_NAME_MAX 253
#define TLSGEN_BACKDATE_SECS 300

static _Thread_local char tlsgen_errbuf[1024];

/* "what: reason"; reason from the OpenSSL queue, or errno when sys. */
static const char *tlsgen_error(bool sys, const char *fmt, ...)
	TERN_PRINTF(2, 3);
static const char *tlsgen_error(bool sys, const char *fmt, ...)
{
	int saved = errno;
	unsigned long code = ERR_peek_last_error();
	size_t n;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tlsgen_errbuf, sizeof(tlsgen_errbuf), fmt, ap);
	va_end(ap);
	n = strlen(tlsgen_errbuf);
	if (sys)
		snprintf(tlsgen_errbuf + n, sizeof(tlsgen_errbuf) - n, ": %s",
			 strerror(saved));
	else if (code != 0 && ERR_reason_error_string(code) != NULL)
		snprintf(tlsgen_errbuf + n, sizeof(tlsgen_errbuf) - n, ": %s",
			 ERR_reason_error_string(code));
	ERR_clear_error();
	return tlsgen_errbuf;
}

static bool tlsgen_valid_name(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > TLSGEN_NAME_MAX || name[0] == '.' ||
	    name[0] == '-')
		return false;
	for (const char *p = name; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (!(c == '-' || c == '.' || (c >= '0' && c <= '9') ||
		      (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c == '*' && p == name && p[1] == '.' && p[2] != '\0')))
			return false;
	}
	return true;
}

static int tlsgen_check_args(const char *common_name,
			     const char *const *dns_names, unsigned int days,
			     const char **error_r)
{
	size_t n = 0;

	if (common_name == NULL || *common_name == '\0' ||
	    strlen(common_name) > TLSGEN_CN_MAX) {
		*error_r = "common name must be 1 to 64 bytes";
		return -1;
	}
	for (const char *p = common_name; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			*error_r = "common name contains control characters";
			return -1;
		}
	}
	for (; dns_names != NULL && dns_names[n] != NULL; n++) {
		if (!tlsgen_valid_name(dns_names[n])) {
			*error_r = tlsgen_error(false,
						"invalid DNS name \"%.*s\"", 64,
						dns_names[n]);
			return -1;
		}
	}
	if (n > TLSGEN_NAMES_MAX) {
		*error_r = "too many DNS names";
		return -1;
	}
	if (days < 1 || days > TLSGEN_DAYS_MAX) {
		*error_r = "validity must be 1 to 36500 days";
		return -1;
	}
	return 0;
}

static int tlsgen_add_dns(GENERAL_NAMES *gens, const char *name)
{
	GENERAL_NAME *g = GENERAL_NAME_new();
	ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();

	if (g == NULL || ia5 == NULL ||
	    ASN1_STRING_set(ia5, name, (int)strlen(name)) != 1) {
		GENERAL_NAME_free(g);
		ASN1_IA5STRING_free(ia5);
		return -1;
	}
	GENERAL_NAME_set0_value(g, GEN_DNS, ia5);
	if (sk_GENERAL_NAME_push(gens, g) <= 0) {
		GENERAL_NAME_free(g);
		return -1;
	}
	return 0;
}

static int tlsgen_add_ip(GENERAL_NAMES *gens, int family, const char *addr)
{
	unsigned char buf[16];
	GENERAL_NAME *g;
	ASN1_OCTET_STRING *os;

	if (inet_pton(family, addr, buf) != 1)
		return -1;
	g = GENERAL_NAME_new();
	os = ASN1_OCTET_STRING_new();
	if (g == NULL || os == NULL ||
	    ASN1_OCTET_STRING_set(os, buf, family == AF_INET ? 4 : 16) != 1) {
		GENERAL_NAME_free(g);
		ASN1_OCTET_STRING_free(os);
		return -1;
	}
	GENERAL_NAME_set0_value(g, GEN_IPADD, os);
	if (sk_GENERAL_NAME_push(gens, g) <= 0) {
		GENERAL_NAME_free(g);
		return -1;
	}
	return 0;
}

static int tlsgen_add_san(X509 *x, const char *common_name,
			  const char *const *dns_names)
{
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	bool cn_listed = false;
	int r = -1;

	if (gens == NULL)
		return -1;
	for (size_t i = 0; dns_names != NULL && dns_names[i] != NULL; i++) {
		if (strcasecmp(dns_names[i], common_name) == 0)
			cn_listed = true;
		if (tlsgen_add_dns(gens, dns_names[i]) < 0)
			goto out;
	}
	if (!cn_listed && tlsgen_valid_name(common_name) &&
	    tlsgen_add_dns(gens, common_name) < 0)
		goto out;
	if (tlsgen_add_ip(gens, AF_INET, "127.0.0.1") < 0 ||
	    tlsgen_add_ip(gens, AF_INET6, "::1") < 0)
		goto out;
	if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0,
			      X509V3_ADD_DEFAULT) == 1)
		r = 0;
out:
	GENERAL_NAMES_free(gens);
	return r;
}

static int tlsgen_add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	int r;

	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (ext == NULL)
		return -1;
	r = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return r == 1 ? 0 : -1;
}

static int tlsgen_serial(X509 *x)
{
	BIGNUM *bn = BN_new();
	int r = -1;

	/* 159 bits keeps the DER integer positive and within 20 octets. */
	if (bn != NULL &&
	    BN_rand(bn, 159, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) == 1 &&
	    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL)
		r = 0;
	BN_free(bn);
	return r;
}

static X509 *tlsgen_build(EVP_PKEY *key, const char *common_name,
			  const char *const *dns_names, unsigned int days)
{
	X509 *x = X509_new();
	X509_NAME *name;

	if (x == NULL)
		return NULL;
	name = X509_get_subject_name(x);
	if (X509_set_version(x, X509_VERSION_3) != 1 || tlsgen_serial(x) < 0 ||
	    X509_gmtime_adj(X509_getm_notBefore(x), -TLSGEN_BACKDATE_SECS) ==
		    NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, NULL) ==
		    NULL ||
	    X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
				       (const unsigned char *)common_name, -1,
				       -1, 0) != 1 ||
	    X509_set_issuer_name(x, name) != 1 ||
	    X509_set_pubkey(x, key) != 1 ||
	    tlsgen_add_ext(x, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    tlsgen_add_ext(x, NID_key_usage, "critical,digitalSignature") < 0 ||
	    tlsgen_add_ext(x, NID_ext_key_usage, "serverAuth") < 0 ||
	    tlsgen_add_ext(x, NID_subject_key_identifier, "hash") < 0 ||
	    tlsgen_add_san(x, common_name, dns_names) < 0 ||
	    X509_sign(x, key, EVP_sha256()) <= 0) {
		X509_free(x);
		return NULL;
	}
	return x;
}

/* Durably (fsutil.h): temporary file, fsync, rename (or link when not
 * overwriting), fsync of the directory. */
static int tlsgen_write_file(const char *path, BIO *pem, mode_t mode,
			     bool overwrite, const char **error_r)
{
	struct str *err = str_new(128, sizeof(tlsgen_errbuf) - 1);
	char *data;
	long len = BIO_get_mem_data(pem, &data);
	int r = -1;

	if (len < 0) {
		errno = EINVAL;
		*error_r = tlsgen_error(true, "cannot write %s", path);
	} else if ((r = fsutil_write_file(path, data, (size_t)len, mode,
					  overwrite ? FSUTIL_REPLACE : 0,
					  err)) < 0) {
		ERR_clear_error();
		*error_r = tlsgen_error(false, "%s", str_c(err));
	}
	str_free(&err);
	return r;
}

static int tlsgen_refuse_existing(const char *path, const char **error_r)
{
	struct stat st;

	if (lstat(path, &st) == 0) {
		errno = EEXIST;
		*error_r = tlsgen_error(true, "refusing to overwrite %s", path);
		return -1;
	}
	return 0;
}

int tlsgen_selfsigned(const char *cert_path, const char *key_path,
		      const char *common_name, const char *const *dns_names,
		      unsigned int days, bool overwrite, const char **error_r)
{
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	BIO *key_pem = NULL, *cert_pem = NULL;
	int r = -1;

	if (tlsgen_check_args(common_name, dns_names, days, error_r) < 0)
		return -1;
	if (!overwrite && (tlsgen_refuse_existing(key_path, error_r) < 0 ||
			   tlsgen_refuse_existing(cert_path, error_r) < 0))
		return -1;
	ERR_clear_error();
	key = EVP_EC_gen("P-256");
	if (key == NULL) {
		*error_r = tlsgen_error(false, "cannot generate a P-256 key");
		goto out;
	}
	x = tlsgen_build(key, common_name, dns_names, days);
	if (x == NULL) {
		*error_r = tlsgen_error(false, "cannot build the certificate");
		goto out;
	}
	key_pem = BIO_new(BIO_s_secmem());	/* cleared on free */
	cert_pem = BIO_new(BIO_s_mem());
	if (key_pem == NULL || cert_pem == NULL ||
	    PEM_write_bio_PrivateKey(key_pem, key, NULL, NULL, 0, NULL,
				     NULL) != 1 ||
	    PEM_write_bio_X509(cert_pem, x) != 1) {
		*error_r = tlsgen_error(false, "cannot encode PEM");
		goto out;
	}
	if (tlsgen_write_file(key_path, key_pem, 0640, overwrite, error_r) < 0)
		goto out;
	if (tlsgen_write_file(cert_path, cert_pem, 0644, overwrite,
			      error_r) < 0) {
		if (!overwrite)
			unlink(key_path);	/* ours: created just now */
		goto out;
	}
	r = 0;
out:
	BIO_free(key_pem);
	BIO_free(cert_pem);
	X509_free(x);
	EVP_PKEY_free(key);
	return r;
}
