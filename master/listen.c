/* listen.c: see listen.h. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "compat.h"
#include "listen.h"
#include "str.h"
#include "xalloc.h"

struct listener {
	struct listener *next;
	enum listen_kind kind;
	char *addr;		/* as configured: the reuse key */
	int fds[2];
	size_t nfds;
	char *names[2];
	int used;
};

struct listen_pool {
	struct listener *head;
	long uid, gid;		/* owner of new unix sockets, -1 = keep */
	char errbuf[512];
};

struct listen_pool *listen_pool_new(void)
{
	struct listen_pool *pool = xcalloc(1, sizeof(*pool));

	pool->uid = pool->gid = -1;

	return pool;
}

static void listener_close(struct listener *l)
{
	for (size_t i = 0; i < l->nfds; i++) {
		if (l->kind == LISTEN_UNIX) {
			struct stat st;

			/* Remove the path only while it is still ours. */
			if (stat(l->names[i], &st) == 0 && S_ISSOCK(st.st_mode))
				unlink(l->names[i]);
		}
		close(l->fds[i]);
		free(l->names[i]);
	}
	free(l->addr);
	free(l);
}

void listen_pool_free(struct listen_pool **pool)
{
	struct listener *l, *next;

	if (*pool == NULL)
		return;
	for (l = (*pool)->head; l != NULL; l = next) {
		next = l->next;
		listener_close(l);
	}
	free(*pool);
	*pool = NULL;
}

static const char *pool_err(struct listen_pool *pool, const char *addr,
			    const char *what, int err)
{
	snprintf(pool->errbuf, sizeof(pool->errbuf), "%s: %s: %s", addr, what,
		 strerror(err));
	return pool->errbuf;
}

static char *sockaddr_name(const struct sockaddr *sa)
{
	char host[INET6_ADDRSTRLEN], buf[INET6_ADDRSTRLEN + 16];
	int port;

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;
		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		port = ntohs(s6->sin6_port);
		snprintf(buf, sizeof(buf), "[%s]:%d", host, port);
	} else {
		const struct sockaddr_in *s4 = (const void *)sa;
		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		port = ntohs(s4->sin_port);
		snprintf(buf, sizeof(buf), "%s:%d", host, port);
	}
	return xstrdup(buf);
}

static int bind_inet_one(struct listen_pool *pool, const char *addr,
			 const struct addrinfo *ai, int backlog, int *fd_r,
			 const char **error_r)
{
	int one = 1;
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
			ai->ai_protocol);

	if (fd < 0) {
		*error_r = pool_err(pool, addr, "socket", errno);
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ai->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
	    listen(fd, backlog) < 0) {
		*error_r = pool_err(pool, addr, "bind", errno);
		close(fd);
		return -1;
	}
	*fd_r = fd;
	return 0;
}

/* Splits "HOST:PORT" / "[V6]:PORT" / "*:PORT" into host (NULL = any) and
 * port, in the caller's buffer. */
static int split_hostport(char *buf, const char **host_r, const char **port_r)
{
	char *colon = strrchr(buf, ':');

	if (colon == NULL || colon[1] == '\0')
		return -1;
	*colon = '\0';
	*port_r = colon + 1;
	if (buf[0] == '[') {
		size_t n = strlen(buf);
		if (n < 3 || buf[n - 1] != ']')
			return -1;
		buf[n - 1] = '\0';
		*host_r = buf + 1;
	} else if (strcmp(buf, "*") == 0) {
		*host_r = NULL;
	} else {
		*host_r = buf;
	}
	return 0;
}

static int bind_inet(struct listen_pool *pool, struct listener *l,
		     int backlog, const char **error_r)
{
	struct addrinfo hints = { 0 }, *res = NULL, *ai;
	const char *host, *port;
	char buf[300];
	int err;

	if (str_lcpy(buf, l->addr, sizeof(buf)) >= sizeof(buf) ||
	    split_hostport(buf, &host, &port) < 0) {
		*error_r = pool_err(pool, l->addr, "bad address", EINVAL);
		return -1;
	}
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
	hints.ai_family = AF_UNSPEC;
	err = getaddrinfo(host, port, &hints, &res);
	if (err != 0) {
		snprintf(pool->errbuf, sizeof(pool->errbuf), "%s: %s", l->addr,
			 gai_strerror(err));
		*error_r = pool->errbuf;
		return -1;
	}
	for (ai = res; ai != NULL && l->nfds < 2; ai = ai->ai_next) {
		int fd;

		if (bind_inet_one(pool, l->addr, ai, backlog, &fd, error_r) < 0) {
			/* "*" on a host without IPv6 still works on IPv4. */
			if (host == NULL && ai->ai_family == AF_INET6 &&
			    errno == EAFNOSUPPORT)
				continue;
			freeaddrinfo(res);
			return -1;
		}
		l->fds[l->nfds] = fd;
		l->names[l->nfds] = sockaddr_name(ai->ai_addr);
		l->nfds++;
	}
	freeaddrinfo(res);
	if (l->nfds == 0) {
		*error_r = pool_err(pool, l->addr, "no address", EADDRNOTAVAIL);
		return -1;
	}
	return 0;
}

static int bind_unix(struct listen_pool *pool, struct listener *l,
		     int backlog, unsigned mode, const char **error_r)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat st;
	int fd;

	if (str_lcpy(sun.sun_path, l->addr, sizeof(sun.sun_path)) >=
	    sizeof(sun.sun_path)) {
		*error_r = pool_err(pool, l->addr, "path too long",
				    ENAMETOOLONG);
		return -1;
	}
	/* A stale socket from a crashed master; never remove anything else. */
	if (lstat(l->addr, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			*error_r = pool_err(pool, l->addr, "exists", EEXIST);
			return -1;
		}
		unlink(l->addr);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*error_r = pool_err(pool, l->addr, "socket", errno);
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    (pool->uid >= 0 &&
	     chown(l->addr, (uid_t)pool->uid, (gid_t)pool->gid) < 0) ||
	    chmod(l->addr, mode != 0 ? mode : 0666) < 0 ||
	    listen(fd, backlog) < 0) {
		*error_r = pool_err(pool, l->addr, "bind", errno);
		close(fd);
		return -1;
	}
	l->fds[0] = fd;
	l->names[0] = xstrdup(l->addr);
	l->nfds = 1;
	return 0;
}

int listen_pool_get(struct listen_pool *pool, enum listen_kind kind,
		    const char *addr, int backlog, unsigned mode, int *fds_r,
		    size_t *nfds_r, const char **error_r)
{
	struct listener *l;
	int r;

	for (l = pool->head; l != NULL; l = l->next) {
		if (l->kind == kind && strcmp(l->addr, addr) == 0)
			break;
	}
	if (l == NULL) {
		l = xcalloc(1, sizeof(*l));
		l->kind = kind;
		l->addr = xstrdup(addr);
		r = kind == LISTEN_INET ?
			    bind_inet(pool, l, backlog, error_r) :
			    bind_unix(pool, l, backlog, mode, error_r);
		if (r < 0) {
			free(l->addr);
			free(l);
			return -1;
		}
		l->next = pool->head;
		pool->head = l;
	}
	if (*nfds_r + l->nfds > LISTEN_FDS_MAX) {
		*error_r = pool_err(pool, addr, "too many listening sockets",
				    EMFILE);
		return -1;
	}
	for (size_t i = 0; i < l->nfds; i++)
		fds_r[(*nfds_r)++] = l->fds[i];
	l->used = 1;
	return 0;
}

void listen_pool_set_owner(struct listen_pool *pool, long uid, long gid)
{
	pool->uid = uid;
	pool->gid = gid;
}

void listen_pool_mark(struct listen_pool *pool)
{
	for (struct listener *l = pool->head; l != NULL; l = l->next)
		l->used = 0;
}

void listen_pool_sweep(struct listen_pool *pool)
{
	struct listener **lp = &pool->head;

	while (*lp != NULL) {
		struct listener *l = *lp;

		if (l->used) {
			lp = &l->next;
			continue;
		}
		*lp = l->next;
		listener_close(l);
	}
}

const char *listen_pool_name(struct listen_pool *pool, int fd)
{
	for (struct listener *l = pool->head; l != NULL; l = l->next) {
		for (size_t i = 0; i < l->nfds; i++) {
			if (l->fds[i] == fd)
				return l->names[i];
		}
	}
	return "?";
}
