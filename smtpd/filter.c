/* filter.c: see filter.h.  No filter is configured yet: every hook lets
 * the message through. */
#include "config.h"

#include "compat.h"
#include "filter.h"

enum filter_verdict filter_headers(struct smtpd *sd,
				   const struct queue_envelope *env,
				   const char *header, size_t len,
				   const char **reply_r)
{
	(void)sd;
	(void)env;
	(void)header;
	(void)len;
	*reply_r = NULL;
	return FILTER_CONTINUE;
}

void filter_body(struct smtpd *sd, const struct queue_envelope *env,
		 uint64_t size, filter_cb *cb, void *ctx)
{
	(void)sd;
	(void)env;
	(void)size;
	cb(FILTER_CONTINUE, NULL, ctx);
}

void filter_accept(struct smtpd *sd, const struct queue_envelope *env,
		   const char *queue_file, filter_cb *cb, void *ctx)
{
	(void)sd;
	(void)env;
	(void)queue_file;
	cb(FILTER_CONTINUE, NULL, ctx);
}
