/*
 * dsn.c: RFC 3464 delivery status notifications (see dsn.h).
 */
#include "config.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "compat.h"
#include "dsn.h"
#include "str.h"

const char *dsn_action_name(enum dsn_action a)
{
	switch (a) {
	case DSN_FAILED:
		return "failed";
	case DSN_DELAYED:
		return "delayed";
	case DSN_DELIVERED:
		return "delivered";
	case DSN_RELAYED:
		return "relayed";
	}
	return "failed";
}

bool dsn_notify_has(const char *notify, const char *word)
{
	size_t n = strlen(word);
	const char *s = notify;

	if (notify == NULL)
		return strcmp(word, "SUCCESS") != 0;
	while (*s != '\0') {
		size_t len = strcspn(s, ",");

		if (len == n && strncasecmp(s, word, n) == 0)
			return true;
		s += len;
		if (*s == ',')
			s++;
	}
	return false;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int dsn_xtext_decode(const char *in, struct str *out)
{
	for (const char *s = in; *s != '\0'; s++) {
		int hi, lo;

		if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e ||
		    *s == '=')
			return -1;
		if (*s != '+') {
			if (str_append_byte(out, (unsigned char)*s) < 0)
				return -1;
			continue;
		}
		hi = hexval(s[1]);
		lo = hi < 0 ? -1 : hexval(s[2]);
		if (lo < 0)
			return -1;
		if (str_append_byte(out, (unsigned char)(hi * 16 + lo)) < 0)
			return -1;
		s += 2;
	}
	return 0;
}

/* Appends s without control characters (a header value on one line). */
static int append_clean(struct str *out, const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (str_append_byte(out, c < 0x20 || c == 0x7f ? ' ' : c) < 0)
			return -1;
	}
	return 0;
}

static int append_date(struct str *out, int64_t t)
{
	char buf[64];
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL ||
	    strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S +0000",
		     &tm) == 0)
		return -1;
	return str_append_c(out, buf);
}

static bool any_delayed(const struct dsn_rcpt *rcpts, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (rcpts[i].action == DSN_DELAYED)
			return true;
	}
	return false;
}

static bool any_failed(const struct dsn_rcpt *rcpts, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (rcpts[i].action == DSN_FAILED)
			return true;
	}
	return false;
}

static int build_header(struct str *out, const struct dsn_info *info,
			bool failed, bool delayed)
{
	const char *subject = failed ? "Undelivered Mail Returned to Sender" :
			      delayed ? "Delayed Mail (still being retried)" :
					"Successful Mail Delivery Report";
	int ret = 0;

	ret |= str_printf(out, "From: Mail Delivery System "
			  "<MAILER-DAEMON@%s>\r\nTo: <", info->hostname);
	ret |= append_clean(out, info->to);
	ret |= str_printf(out, ">\r\nSubject: %s\r\nDate: ", subject);
	ret |= append_date(out, info->now);
	ret |= str_printf(out, "\r\nMessage-ID: <%s.dsn@%s>\r\n"
			  "Auto-Submitted: auto-replied\r\n"
			  "MIME-Version: 1.0\r\n"
			  "Content-Type: multipart/report; "
			  "report-type=delivery-status;\r\n"
			  "\tboundary=\"%s/%s\"\r\n\r\n"
			  "This is a MIME-encapsulated message.\r\n\r\n",
			  info->bounce_id, info->hostname, info->queue_id,
			  info->bounce_id);
	return ret < 0 ? -1 : 0;
}

static int build_human(struct str *out, const struct dsn_info *info,
		       const struct dsn_rcpt *rcpts, size_t n, bool failed)
{
	int ret = 0;

	ret |= str_printf(out, "--%s/%s\r\nContent-Type: text/plain; "
			  "charset=us-ascii\r\nContent-Description: "
			  "Notification\r\n\r\nThis is the mail system at "
			  "host %s.\r\n\r\n", info->queue_id, info->bounce_id,
			  info->hostname);
	ret |= str_append_c(out, failed ?
			    "Your message could not be delivered to one or "
			    "more recipients.\r\n"
			    "It is attached below.\r\n\r\n" :
			    any_delayed(rcpts, n) ?
			    "Your message could not be delivered yet; it "
			    "will be retried.\r\nYou do not need to send it "
			    "again.\r\n\r\n" :
			    "Your message was delivered to the following "
			    "recipients.\r\n\r\n");
	for (size_t i = 0; i < n; i++) {
		ret |= str_append_c(out, "<");
		ret |= append_clean(out, rcpts[i].address);
		ret |= str_printf(out, ">: %s", dsn_action_name(
						    rcpts[i].action));
		if (rcpts[i].diagnostic != NULL) {
			ret |= str_append_c(out, ": ");
			ret |= append_clean(out, rcpts[i].diagnostic);
		}
		ret |= str_append_c(out, "\r\n");
	}
	ret |= str_append_c(out, "\r\n");
	return ret < 0 ? -1 : 0;
}

static int build_rcpt(struct str *out, const struct dsn_rcpt *r,
		      const struct dsn_info *info)
{
	struct str *dec = str_new(64, 2048);
	const char *semi;
	int ret = 0;

	ret |= str_append_c(out, "\r\nFinal-Recipient: rfc822; ");
	ret |= append_clean(out, r->address);
	semi = r->orcpt != NULL ? strchr(r->orcpt, ';') : NULL;
	if (semi != NULL && dsn_xtext_decode(semi + 1, dec) == 0) {
		ret |= str_printf(out, "\r\nOriginal-Recipient: %.*s; ",
				  (int)(semi - r->orcpt), r->orcpt);
		ret |= append_clean(out, str_c(dec));
	}
	str_free(&dec);
	ret |= str_printf(out, "\r\nAction: %s\r\nStatus: ",
			  dsn_action_name(r->action));
	ret |= append_clean(out, r->status);
	if (r->remote_mta != NULL) {
		/* "host[ip]:port" is a host found in the DNS: its name. */
		const char *br = strchr(r->remote_mta, '[');

		if (br != NULL && br > r->remote_mta) {
			struct str *h = str_new(64, 1024);

			ret |= str_append(h, r->remote_mta,
					  (size_t)(br - r->remote_mta));
			ret |= str_append_c(out, "\r\nRemote-MTA: dns; ");
			ret |= append_clean(out, str_c(h));
			str_free(&h);
		} else {
			ret |= str_append_c(out, "\r\nRemote-MTA: x-local; ");
			ret |= append_clean(out, r->remote_mta);
		}
	}
	if (r->diagnostic != NULL) {
		ret |= str_append_c(out, "\r\nDiagnostic-Code: smtp; ");
		ret |= append_clean(out, r->diagnostic);
	}
	ret |= str_append_c(out, "\r\nLast-Attempt-Date: ");
	ret |= append_date(out, info->now);
	ret |= str_append_c(out, "\r\n");
	return ret < 0 ? -1 : 0;
}

static int build_status(struct str *out, const struct dsn_info *info,
			const struct dsn_rcpt *rcpts, size_t n)
{
	struct str *dec = str_new(64, 2048);
	int ret = 0;

	ret |= str_printf(out, "--%s/%s\r\nContent-Type: "
			  "message/delivery-status\r\nContent-Description: "
			  "Delivery report\r\n\r\nReporting-MTA: dns; %s\r\n"
			  "X-Tern-Queue-ID: %s\r\n", info->queue_id,
			  info->bounce_id, info->hostname, info->queue_id);
	if (info->envid != NULL && dsn_xtext_decode(info->envid, dec) == 0) {
		ret |= str_append_c(out, "Original-Envelope-Id: ");
		ret |= append_clean(out, str_c(dec));
		ret |= str_append_c(out, "\r\n");
	}
	str_free(&dec);
	ret |= str_append_c(out, "Arrival-Date: ");
	ret |= append_date(out, info->arrival);
	ret |= str_append_c(out, "\r\n");
	for (size_t i = 0; i < n; i++)
		ret |= build_rcpt(out, &rcpts[i], info);
	ret |= str_append_c(out, "\r\n");
	return ret < 0 ? -1 : 0;
}

/* The length of the header section of msg (with its blank line). */
static size_t header_len(const char *msg, size_t len)
{
	if (len >= 2 && msg[0] == '\r' && msg[1] == '\n')
		return 2;
	for (size_t i = 0; i + 3 < len; i++) {
		if (memcmp(msg + i, "\r\n\r\n", 4) == 0)
			return i + 4;
	}
	return len;
}

int dsn_build(struct str *out, const struct dsn_info *info,
	      const struct dsn_rcpt *rcpts, size_t nrcpts, const char *msg,
	      size_t msglen)
{
	bool failed = any_failed(rcpts, nrcpts);
	size_t n = info->headers_only ? header_len(msg, msglen) : msglen;
	int ret = 0;

	ret |= build_header(out, info, failed, any_delayed(rcpts, nrcpts));
	ret |= build_human(out, info, rcpts, nrcpts, failed);
	ret |= build_status(out, info, rcpts, nrcpts);
	ret |= str_printf(out, "--%s/%s\r\nContent-Type: %s\r\n"
			  "Content-Description: %s\r\n\r\n", info->queue_id,
			  info->bounce_id, info->headers_only ?
				   "text/rfc822-headers" : "message/rfc822",
			  failed ? "Undelivered Message" :
			  any_delayed(rcpts, nrcpts) ? "Delayed Message" :
						       "Delivered Message");
	ret |= str_append(out, msg, n);
	if (n > 0 && msg[n - 1] != '\n')
		ret |= str_append_c(out, "\r\n");
	ret |= str_printf(out, "\r\n--%s/%s--\r\n", info->queue_id,
			  info->bounce_id);
	return ret < 0 ? -1 : 0;
}
