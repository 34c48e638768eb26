/*
 * tls.h: TLS contexts and a socket-free TLS engine on OpenSSL memory BIOs.
 *
 * A struct tls_ctx holds what is shared by many connections: the protocol
 * floor, the cipher list, the certificates (server) or the trust store
 * (client).  TLS 1.2 is the floor and cannot be lowered; tls_min_version may
 * raise it to 1.3.  The default TLS 1.2 cipher list is Mozilla's
 * "intermediate" profile (TLS_DEFAULT_CIPHERS); TLS 1.3 uses OpenSSL's
 * default suites.  Compression and renegotiation are always off; session
 * tickets are on.  A server context may carry extra certificates selected by
 * the client's SNI name (tls_ctx_add_sni).  Contexts are reference counted:
 * every engine keeps its context alive, so on reload a daemon simply builds a
 * new context, swaps it in and tls_ctx_free()s the old one; connections
 * already open finish on the old one.
 *
 * A struct tls_engine is one TLS connection without any I/O: the owner feeds
 * the ciphertext it read from the network (tls_engine_feed), takes the
 * ciphertext to send (tls_engine_out_take), drives the handshake, and reads
 * and writes plaintext.  It never blocks and never touches a socket, so it is
 * tested alone; common/conn.c glues it to libuv.  The engine does not bound
 * its input: its caller feeds at most one read buffer and drains the
 * plaintext before feeding more.
 *
 * Error strings returned through error_r by the tls_ctx functions live in a
 * per-thread buffer valid until the next tls_ctx call (tls_engine_new too);
 * other engine errors live in the engine until its next call or free.
 *
 * Callers: the daemon skeleton (server context from tls_cert_file and
 * friends), common/conn.c (engines), clients that speak STARTTLS.
 */
#ifndef TERN_TLS_H
#define TERN_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "compat.h"

struct str;

/* Mozilla "intermediate": forward secrecy and AEAD only. */
#define TLS_DEFAULT_CIPHERS                                                    \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"           \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"           \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"           \
	"DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:"                 \
	"DHE-RSA-CHACHA20-POLY1305"
#define TLS_DEFAULT_GROUPS "X25519:prime256v1:secp384r1"

#define TLS_SNI_MAX 256		/* extra certificates per server context */
#define TLS_HOSTNAME_MAX 253

enum tls_role { TLS_ROLE_SERVER, TLS_ROLE_CLIENT };

struct tls_ctx;
struct tls_engine;

/*
 * Contexts.  min_version is "1.2" or "1.3" ("TLSv1.2" also accepted; NULL or
 * "" = "1.2"); anything else, including "1.0" and "1.1", is an error.
 * ciphers NULL or "" = TLS_DEFAULT_CIPHERS (it applies to TLS 1.2 only).
 * cert_file is a PEM chain, leaf first; key_file its private key, which must
 * match.  Returns NULL with *error_r set on failure.
 */
struct tls_ctx *tls_ctx_server_new(const char *cert_file, const char *key_file,
				   const char *ciphers,
				   const char *min_version,
				   const char **error_r) TERN_WUR;
/* ca_file NULL or "" = the system's default trust store.  verify: refuse a
 * peer whose chain (or, given a name to tls_engine_new, host name) does not
 * verify; without it the result is only reported (tls_info.trust). */
struct tls_ctx *tls_ctx_client_new(const char *ca_file, bool verify,
				   const char *min_version,
				   const char **error_r) TERN_WUR;
/* Adds a certificate used when the client's SNI name matches hostname:
 * exact (case-insensitive) or "*.example.com" (one whole leftmost label).
 * Exact entries win over wildcards; no match = the default certificate.
 * Server contexts only; add before the context is used. */
int tls_ctx_add_sni(struct tls_ctx *ctx, const char *hostname,
		    const char *cert_file, const char *key_file,
		    const char **error_r) TERN_WUR;
enum tls_role tls_ctx_role(const struct tls_ctx *ctx);
/* Drops the caller's reference; engines keep their own. */
void tls_ctx_free(struct tls_ctx **ctx);

/* 1 when host matches pattern under the SNI rules above, else 0. */
int tls_hostname_match(const char *pattern, const char *host);

/*
 * Engines.  The role comes from the context.  Client: peer_name is sent as
 * SNI (unless it is an IP address) and checked against the certificate; NULL
 * = no SNI and no name check.  Server: peer_name is ignored.  id is the
 * session id for log lines.
 */
struct tls_engine *tls_engine_new(struct tls_ctx *ctx, const char *peer_name,
				  const char *id, const char **error_r)
	TERN_WUR;
void tls_engine_free(struct tls_engine **e);
enum tls_role tls_engine_role(const struct tls_engine *e);

/* Network side.  feed: ciphertext received (copied); -1 if out of memory. */
int tls_engine_feed(struct tls_engine *e, const void *data, size_t len)
	TERN_WUR;
/* Ciphertext waiting to be sent, and taking (copying out) up to size bytes. */
size_t tls_engine_out_pending(const struct tls_engine *e);
size_t tls_engine_out_take(struct tls_engine *e, void *buf, size_t size);

/* Results of the plaintext calls. */
#define TLS_R_ERROR (-1)	/* fatal; *error_r says why */
#define TLS_R_OK 0
#define TLS_R_AGAIN 1		/* feed more ciphertext (and send the output) */
#define TLS_R_EOF 2		/* the peer sent close_notify */

/* Advances the handshake: TLS_R_OK when complete, TLS_R_AGAIN, TLS_R_ERROR.
 * Always send tls_engine_out_pending() bytes afterwards (alerts too). */
int tls_engine_handshake(struct tls_engine *e, const char **error_r) TERN_WUR;
bool tls_engine_handshake_done(const struct tls_engine *e);
/* Decrypts up to size bytes: TLS_R_OK with *len_r > 0, TLS_R_AGAIN,
 * TLS_R_EOF or TLS_R_ERROR.  Only after the handshake. */
int tls_engine_read(struct tls_engine *e, void *buf, size_t size,
		    size_t *len_r, const char **error_r) TERN_WUR;
/* Encrypts all of data into the output (never partial): 0 or -1.  Only after
 * the handshake. */
int tls_engine_write(struct tls_engine *e, const void *data, size_t len,
		     const char **error_r) TERN_WUR;
/* Queues our close_notify (a no-op after a fatal error or before the
 * handshake is done).  0 or -1. */
int tls_engine_shutdown(struct tls_engine *e);

/* How far the peer's certificate is to be believed (Postfix's words). */
enum tls_trust {
	TLS_TRUST_ANONYMOUS,	/* no peer certificate (normal for servers) */
	TLS_TRUST_UNTRUSTED,	/* certificate did not verify */
	TLS_TRUST_TRUSTED,	/* chain verified, no name was checked */
	TLS_TRUST_VERIFIED,	/* chain and peer name verified */
};

/* For logging; pointers stay valid until the engine is freed. */
struct tls_info {
	const char *protocol;	/* "TLSv1.3" */
	const char *cipher;	/* "TLS_AES_256_GCM_SHA384" */
	int bits, alg_bits;
	const char *sni;	/* name the client asked for, or NULL */
	const char *peer_cn;	/* peer certificate subject CN, or NULL */
	enum tls_trust trust;
};
/* Valid once the handshake is done. */
void tls_engine_info(struct tls_engine *e, struct tls_info *info_r);
const char *tls_trust_name(enum tls_trust trust);	/* "Verified" */
/* Appends "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)". */
int tls_engine_describe(struct tls_engine *e, struct str *dst) TERN_WUR;

#endif
