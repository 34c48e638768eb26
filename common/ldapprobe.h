/*
 * ldapprobe.h: the few bytes of LDAP (RFC 4511, BER) that tell whether a
 * directory server answers searches, for tern-master's readiness probe of
 * an external slapd (services.conf ready=ldapi:PATH or ready=ldap:HOST:PORT).
 *
 * The probe sends one search of the root DSE (base "", scope base,
 * (objectClass=*), no attributes: "1.1"), message id 1, anonymous, and
 * reads the answer: any search result entries, then the SearchResultDone
 * with its result code.  A server that only accepts connections (slapd
 * still opening its databases) is not ready yet.
 *
 * Callers: master/service.c.  Pure functions, no allocation.
 */
#ifndef TERN_LDAPPROBE_H
#define TERN_LDAPPROBE_H

#include <stddef.h>

#include "compat.h"

#define LDAPPROBE_REQUEST_SIZE 44
#define LDAPPROBE_ANSWER_MAX 4096	/* bytes of answer read, at most */

/* The request, LDAPPROBE_REQUEST_SIZE bytes, into buf. */
void ldapprobe_request(unsigned char buf[LDAPPROBE_REQUEST_SIZE]);

enum ldapprobe_state {
	LDAPPROBE_MORE,		/* the answer is not complete yet */
	LDAPPROBE_DONE,		/* *code_r: the SearchResultDone's code */
	LDAPPROBE_BAD,		/* not an LDAP answer to the probe */
};

/* Reads the answer so far (from its first byte). */
enum ldapprobe_state ldapprobe_answer(const unsigned char *buf, size_t len,
				      int *code_r) TERN_WUR;

#endif
