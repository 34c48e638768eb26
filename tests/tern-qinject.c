/*
 * tern-qinject: writes one queue file into ROOT/queue/incoming the way
 * tern-smtpd does (common/queue's writer; tmp/, fsync, rename, fsync), for
 * the integration tests of tern-qmgr.
 *
 *   tern-qinject [-r RET] [-e ENVID] [-8] [-d FOLDER] ROOT SENDER RCPT...
 *
 * The message is read from standard input.  RCPT may carry DSN options:
 * "addr;NOTIFY;ORCPT" (empty fields = none).  Prints the queue id.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "compat.h"
#include "queue.h"
#include "str.h"
#include "xalloc.h"

/* A string that reached its maximum is cut there: fine here. */
#define STR_TRY(x) do { if ((x) < 0) { /* cut */ } } while (0)

static void die(const char *what)
{
	fprintf(stderr, "tern-qinject: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void add_rcpt(struct queue_envelope *env, const char *arg)
{
	char *copy = xstrdup(arg), *notify = NULL, *orcpt = NULL, *p;

	p = strchr(copy, ';');
	if (p != NULL) {
		*p++ = '\0';
		notify = p;
		p = strchr(p, ';');
		if (p != NULL) {
			*p++ = '\0';
			orcpt = p;
		}
	}
	queue_envelope_add_rcpt(env, copy,
				notify != NULL && *notify ? notify : NULL,
				orcpt != NULL && *orcpt ? orcpt : NULL);
	free(copy);
}

int main(int argc, char **argv)
{
	struct queue_envelope env;
	struct str *out = str_new(65536, (size_t)1 << 30);
	struct str *path = str_new(256, 8192), *final = str_new(256, 8192);
	const char *folder = "incoming";
	char id[QUEUE_ID_SIZE], buf[65536];
	struct timeval tv;
	struct stat sb;
	uint64_t size = 0;
	ssize_t n;
	int opt, fd;

	memset(&env, 0, sizeof(env));
	while ((opt = getopt(argc, argv, "r:e:8Ud:")) != -1) {
		switch (opt) {
		case 'r': env.ret = xstrdup(optarg); break;
		case 'e': env.envid = xstrdup(optarg); break;
		case '8': env.body = xstrdup("8BITMIME"); break;
		case 'U': env.smtputf8 = true; break;
		case 'd': folder = optarg; break;
		default: return 2;
		}
	}
	if (argc - optind < 3) {
		fprintf(stderr, "usage: tern-qinject [-r RET] [-e ENVID] [-8] [-U] "
			"[-d FOLDER] ROOT SENDER RCPT...\n");
		return 2;
	}
	queue_id_new(id);
	gettimeofday(&tv, NULL);
	env.id = xstrdup(id);
	env.arrival_sec = tv.tv_sec;
	env.arrival_usec = (uint32_t)tv.tv_usec;
	env.client_addr = xstrdup("127.0.0.1");
	env.protocol = xstrdup("ESMTP");
	env.sender = xstrdup(argv[optind + 1]);
	for (int i = optind + 2; i < argc; i++)
		add_rcpt(&env, argv[i]);
	if (queue_encode_envelope(out, &env) < 0) {
		fprintf(stderr, "tern-qinject: bad envelope\n");
		return 1;
	}
	while ((n = read(0, buf, sizeof(buf))) > 0) {
		if (queue_encode_data(out, buf, (size_t)n) < 0) {
			fprintf(stderr, "tern-qinject: message too big\n");
			return 1;
		}
		size += (uint64_t)n;
	}
	if (queue_encode_end(out, size) < 0)
		return 1;
	STR_TRY(str_printf(path, "%s/queue/tmp", argv[optind]));
	(void)mkdir(str_c(path), 0750);
	STR_TRY(str_printf(path, "/%s", id));
	fd = open(str_c(path), O_WRONLY | O_CREAT | O_EXCL, 0640);
	if (fd < 0)
		die(str_c(path));
	/* The file belongs to the daemons' user, like tern-smtpd's. */
	STR_TRY(str_printf(final, "%s/queue/%s", argv[optind], folder));
	if (stat(str_c(final), &sb) == 0 &&
	    fchown(fd, sb.st_uid, sb.st_gid) < 0)
		die("fchown");
	str_clear(final);
	if (write(fd, str_c(out), str_len(out)) != (ssize_t)str_len(out) ||
	    fsync(fd) < 0 || close(fd) < 0)
		die("write");
	STR_TRY(str_printf(final, "%s/queue/%s/%s", argv[optind], folder, id));
	if (rename(str_c(path), str_c(final)) < 0)
		die(str_c(final));
	printf("%s\n", id);
	queue_envelope_clear(&env);
	str_free(&out);
	str_free(&path);
	str_free(&final);
	return 0;
}
