/* base64.c: see base64.h. */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "base64.h"
#include "compat.h"

int base64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int base64_decode(const char *in, size_t len, unsigned flags,
		  struct str *out)
{
	size_t pad_max = (flags & BASE64_STRICT) ? 2 : len;
	uint32_t acc = 0;
	unsigned int bits = 0;

	if ((flags & BASE64_STRICT) && len % 4 != 0)
		return -1;
	/* Padding only at the end: a "=" left inside is a bad character. */
	for (size_t pad = 0; len > 0 && in[len - 1] == '=' && pad < pad_max;
	     pad++)
		len--;
	for (size_t i = 0; i < len; i++) {
		int v = base64_value((unsigned char)in[i]);

		if (v < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (str_append_byte(out, (acc >> bits) & 0xFF) < 0)
				return -1;
		}
	}
	return bits >= 6 ? -1 : 0;
}

int sasl_plain_decode(const char *b64, size_t len, size_t max,
		      struct str *buf, const char **authzid_r,
		      const char **authcid_r, const char **password_r)
{
	const char *d, *n1, *n2;
	size_t n;

	str_clear(buf);
	if (len > (max / 3 + 1) * 4 ||
	    base64_decode(b64, len, BASE64_STRICT, buf) < 0 ||
	    str_len(buf) > max)
		return -1;
	d = str_c(buf);
	n = str_len(buf);
	n1 = memchr(d, '\0', n);
	if (n1 == NULL)
		return -1;
	n2 = memchr(n1 + 1, '\0', n - (size_t)(n1 + 1 - d));
	if (n2 == NULL || memchr(n2 + 1, '\0', n - (size_t)(n2 + 1 - d)))
		return -1;
	if (n2 == n1 + 1 || n2 + 1 == d + n)
		return -1;	/* empty authcid or password */
	*authzid_r = d;
	*authcid_r = n1 + 1;
	*password_r = n2 + 1;
	return 0;
}

int base64_encode(const void *in, size_t len, struct str *out)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		"0123456789+/";
	const unsigned char *p = in;
	char quad[4];

	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		size_t n = len - i < 3 ? len - i : 3;

		if (n > 1)
			v |= (uint32_t)p[i + 1] << 8;
		if (n > 2)
			v |= p[i + 2];
		quad[0] = alphabet[v >> 18 & 63];
		quad[1] = alphabet[v >> 12 & 63];
		quad[2] = n > 1 ? alphabet[v >> 6 & 63] : '=';
		quad[3] = n > 2 ? alphabet[v & 63] : '=';
		if (str_append(out, quad, 4) < 0)
			return -1;
	}
	return 0;
}
