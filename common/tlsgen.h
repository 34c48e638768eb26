/*
 * tlsgen.h: a self-signed server certificate for a fresh installation.
 *
 * `ternctl setup` calls this so that TLS works from the first start; an
 * administrator replaces the pair with a real certificate later (see
 * docs/tls.md).  Everything is done with OpenSSL library calls, never a
 * shell-out.  The key is EC P-256: every TLS 1.2+ client supports it, it is
 * generated instantly and it matches the strength of our ciphers (an RSA key
 * would only matter to clients too old for our TLS floor anyway).  The
 * certificate is X.509 v3, SHA-256, random 159-bit serial, valid from five
 * minutes ago for `days` days, CA:FALSE, keyUsage digitalSignature,
 * extendedKeyUsage serverAuth, subjectAltName = the DNS names (plus the common
 * name when it is a host name) and the addresses 127.0.0.1 and ::1.
 *
 * Both files are written durably: a temporary file in the same directory,
 * fsync, rename (or link when not overwriting, so that an existing file is
 * never replaced), fsync of the directory.  Modes: key 0640 (the caller
 * chowns it to the tern group), certificate 0644.  The key is written first.
 *
 * Limits: common_name 1..64 bytes, at most TLSGEN_NAMES_MAX DNS names of
 * 1..253 bytes each ("*.example.com" allowed), days 1..TLSGEN_DAYS_MAX.
 */
#ifndef TERN_TLSGEN_H
#define TERN_TLSGEN_H

#include <stdbool.h>

#include "compat.h"

#define TLSGEN_NAMES_MAX 100
#define TLSGEN_DAYS_MAX 36500

/* dns_names: NULL-terminated, or NULL for none.  overwrite false refuses
 * (before writing anything) when either file exists.  -1 with *error_r (a
 * per-thread buffer valid until the next call) on failure. */
int tlsgen_selfsigned(const char *cert_path, const char *key_path,
		      const char *common_name, const char *const *dns_names,
		      unsigned int days, bool overwrite, const char **error_r)
	TERN_WUR;

#endif
