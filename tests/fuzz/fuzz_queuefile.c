/*
 * fuzz_queuefile.c: the queue file reader.
 *
 * The input is read whole and in pieces whose sizes come from the input
 * itself; both ways must give the same events, message bytes, error and
 * envelope.  A file the reader accepts is written again from its envelope
 * and message, and that copy must read back to the same envelope.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "queue.h"
#include "str.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct outcome {
	struct str *msg;
	int last;		/* the last event */
	const char *error;
	size_t nrcpts;
};

static void read_all(const char *in, size_t len, size_t step,
		     struct outcome *o, struct queue_envelope *env_r)
{
	struct queue_reader *r = queue_reader_new();
	const char *pos = in, *end = in + len;

	o->msg = str_new(256, 64 * 1024 * 1024);
	o->last = QUEUE_READ_MORE;
	o->error = NULL;
	while (pos < end && o->last != QUEUE_READ_ERROR) {
		const char *stop = step == 0 || (size_t)(end - pos) < step ?
				   end : pos + step;

		while (pos < stop) {
			const char *d;
			size_t n;
			int ev = queue_reader_feed(r, &pos, stop, &d, &n,
						   &o->error);

			if (ev == QUEUE_READ_DATA) {
				if (str_append(o->msg, d, n) < 0)
					abort();
			} else if (ev != QUEUE_READ_MORE) {
				o->last = ev;
			}
			if (ev == QUEUE_READ_ERROR)
				break;
		}
	}
	o->nrcpts = queue_reader_envelope(r)->nrcpts;
	if (env_r != NULL && o->last == QUEUE_READ_END) {
		*env_r = *queue_reader_envelope(r);
		/* the reader's copy goes with it: duplicate the strings */
		env_r->id = strdup(env_r->id);
		env_r->sender = strdup(env_r->sender);
		env_r->client_addr = env_r->client_addr != NULL ?
				     strdup(env_r->client_addr) : NULL;
		env_r->client_name = env_r->helo = env_r->protocol = NULL;
		env_r->auth = env_r->tls = env_r->body = env_r->ret = NULL;
		env_r->envid = NULL;
		env_r->rcpts = NULL;
		env_r->nrcpts = 0;
		for (size_t i = 0; i < o->nrcpts; i++) {
			const struct queue_rcpt *rc =
				&queue_reader_envelope(r)->rcpts[i];

			queue_envelope_add_rcpt(env_r, rc->address, rc->notify,
						rc->orcpt);
		}
	}
	queue_reader_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct outcome whole, parts;
	struct queue_envelope env;
	size_t step = size > 0 ? (size_t)(data[0] % 17) + 1 : 1;

	memset(&env, 0, sizeof(env));
	read_all((const char *)data, size, 0, &whole, &env);
	read_all((const char *)data, size, step, &parts, NULL);
	if (whole.last != parts.last || whole.nrcpts != parts.nrcpts ||
	    str_len(whole.msg) != str_len(parts.msg) ||
	    memcmp(str_c(whole.msg), str_c(parts.msg), str_len(whole.msg)) !=
		    0 ||
	    (whole.error == NULL) != (parts.error == NULL) ||
	    (whole.error != NULL && strcmp(whole.error, parts.error) != 0))
		abort();
	if (whole.last == QUEUE_READ_END) {
		struct str *again = str_new(1024, 256 * 1024 * 1024);
		struct outcome o2;

		if (queue_encode_envelope(again, &env) < 0 ||
		    queue_encode_data(again, str_c(whole.msg),
				      str_len(whole.msg)) < 0 ||
		    queue_encode_end(again, str_len(whole.msg)) < 0)
			abort();
		read_all(str_c(again), str_len(again), 0, &o2, NULL);
		if (o2.last != QUEUE_READ_END || o2.nrcpts != whole.nrcpts ||
		    str_len(o2.msg) != str_len(whole.msg))
			abort();
		str_free(&o2.msg);
		str_free(&again);
	}
	queue_envelope_clear(&env);
	str_free(&whole.msg);
	str_free(&parts.msg);
	return 0;
}
