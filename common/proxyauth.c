/* proxyauth.c: see proxyauth.h. */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>

#include "compat.h"
#include "cfg.h"
#include "log.h"
#include "netlist.h"
#include "proxyauth.h"
#include "str.h"
#include "xalloc.h"

struct proxyauth {
	char *user;
	char *secret;		/* "" when none could be read */
	struct netlist *trusted;
};

static void warn_entry(const char *entry)
{
	log_warn(NULL, "proxy_trusted_networks: ignoring '%s': not an "
		 "address or network", entry);
}

struct proxyauth *proxyauth_load(const struct cfg *cfg)
{
	struct proxyauth *pa = xcalloc(1, sizeof(*pa));
	const char *path = cfg_str(cfg, OPT_PROXY_SECRET_FILE);
	struct str *text = str_new(64, PROXYAUTH_SECRET_MAX + 2);
	const char *const *nets;
	const char *error;
	size_t n = 0;

	pa->user = xstrdup(cfg_str(cfg, OPT_PROXY_MASTER_USER));
	nets = cfg_list(cfg, OPT_PROXY_TRUSTED_NETWORKS, &n);
	pa->trusted = netlist_new(nets, n, warn_entry);
	if (path[0] == '\0') {
		pa->secret = xstrdup("");
	} else if (cfg_read_file(path, PROXYAUTH_SECRET_MAX + 1, text,
				 &error) < 0) {
		log_info(NULL, "proxy logins off: %s: %s", path, error);
		pa->secret = xstrdup("");
	} else {
		size_t len = strcspn(str_c(text), "\r\n");

		pa->secret = xstrndup(str_c(text), len);
		if (len == 0)
			log_warn(NULL, "proxy logins off: %s is empty", path);
	}
	str_free(&text);
	return pa;
}

void proxyauth_free(struct proxyauth **pap)
{
	struct proxyauth *pa = *pap;

	*pap = NULL;
	if (pa == NULL)
		return;
	free(pa->user);
	if (pa->secret != NULL)
		OPENSSL_cleanse(pa->secret, strlen(pa->secret));
	free(pa->secret);
	netlist_free(&pa->trusted);
	free(pa);
}

const char *proxyauth_user(const struct proxyauth *pa)
{
	return pa->user;
}

const char *proxyauth_secret(const struct proxyauth *pa)
{
	return pa->secret;
}

bool proxyauth_trusted(const struct proxyauth *pa, const char *peer)
{
	return netlist_match(pa->trusted, peer);
}

bool proxyauth_verify(const struct proxyauth *pa, const char *authcid,
		      const char *password, const char *peer)
{
	size_t len = strlen(pa->secret);

	if (len == 0 || pa->user[0] == '\0' ||
	    strcmp(authcid, pa->user) != 0 || !proxyauth_trusted(pa, peer) ||
	    strlen(password) != len)
		return false;
	return CRYPTO_memcmp(password, pa->secret, len) == 0;
}
