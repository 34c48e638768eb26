/* test_sortthread.c: SORT and THREAD (imapd/sortthread).  The expected
 * orders and THREAD responses were worked out by hand from RFC 5256; the
 * big generated mailboxes check against responses built the obvious way
 * and against the rule that every message appears exactly once. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "compat.h"

#include <stdlib.h>
#include <time.h>

#include "mime.h"
#include "sortthread.h"
#include "str.h"
#include "xalloc.h"

/* ---- building messages ---- */

/* A message with empty address keys; refs is space-separated ids. */
static void mk(struct sortthread_msg *m, uint32_t seq, time_t date,
	       const char *subject, bool reply, const char *id,
	       const char *irt, const char *refs)
{
	const char *p, *sp;
	size_t n = 0;

	memset(m, 0, sizeof(*m));
	m->seq = seq;
	m->uid = seq * 10;
	m->internal_date = 1000000 + seq;
	m->sent_date = date;
	m->size = seq;
	m->subject = xstrdup(subject);
	m->is_reply = reply;
	m->from = xstrdup("");
	m->to = xstrdup("");
	m->cc = xstrdup("");
	m->displayfrom = xstrdup("");
	m->displayto = xstrdup("");
	m->message_id = id != NULL ? xstrdup(id) : NULL;
	m->in_reply_to = irt != NULL ? xstrdup(irt) : NULL;
	if (refs == NULL)
		return;
	for (p = refs; *p != '\0'; p++)
		n += *p == ' ';
	m->references = xcalloc(n + 1, sizeof(*m->references));
	for (p = refs; *p != '\0'; p = *sp == ' ' ? sp + 1 : sp) {
		sp = strchr(p, ' ');
		if (sp == NULL)
			sp = p + strlen(p);
		m->references[m->nreferences++] = xstrndup(p, (size_t)(sp - p));
	}
}

static void clear_all(struct sortthread_msg *msgs, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		sortthread_msg_clear(&msgs[i]);
}

static void set_key(char **key, const char *v)
{
	free(*key);
	*key = xstrdup(v);
}

/* ---- checking trees ---- */

/* Every message once; dummies only at the top, with two or more children
 * (REFERENCES) or not at all (ORDEREDSUBJECT). */
static void check_tree(const struct sortthread_tree *tree, size_t count)
{
	unsigned char *seen = xcalloc(count + 1, 1);
	size_t *stack = xmalloc((tree->count + 1) * sizeof(*stack));
	size_t sp = 0, n, ch, kids, visited = 0;

	for (n = tree->first; n != SORTTHREAD_NONE; n = tree->nodes[n].next)
		stack[sp++] = n;
	while (sp > 0) {
		n = stack[--sp];
		assert_true(n < tree->count);
		assert_true(++visited <= tree->count);
		kids = 0;
		for (ch = tree->nodes[n].child; ch != SORTTHREAD_NONE;
		     ch = tree->nodes[ch].next) {
			stack[sp++] = ch;
			kids++;
			if (tree->nodes[ch].msg == SORTTHREAD_NONE)
				fail_msg("dummy below the top level");
		}
		if (tree->nodes[n].msg == SORTTHREAD_NONE) {
			assert_true(kids >= 2);
			continue;
		}
		assert_true(tree->nodes[n].msg < count);
		assert_int_equal(seen[tree->nodes[n].msg], 0);
		seen[tree->nodes[n].msg] = 1;
	}
	for (n = 0; n < count; n++)
		assert_int_equal(seen[n], 1);
	assert_int_equal(visited, tree->count);
	free(stack);
	free(seen);
}

static struct str *thread_str(const struct sortthread_msg *msgs, size_t n,
			      enum sortthread_algo algo, bool use_uid)
{
	struct sortthread_tree *tree = sortthread_thread(msgs, n, algo);
	struct str *s = str_new(0, (size_t)64 << 20);

	check_tree(tree, n);
	assert_int_equal(sortthread_format(tree, msgs, use_uid, s), 0);
	sortthread_tree_free(&tree);
	assert_null(tree);
	return s;
}

/* The THREAD response by sequence number must be want, also when the
 * array comes in reverse order. */
static void expect_thread(struct sortthread_msg *msgs, size_t n,
			  enum sortthread_algo algo, const char *want)
{
	struct sortthread_msg *rev = xmalloc((n + 1) * sizeof(*rev));
	struct str *s = thread_str(msgs, n, algo, false);
	size_t i;

	if (strcmp(str_c(s), want) != 0)
		fail_msg("THREAD %s, want %s", str_c(s), want);
	str_free(&s);
	for (i = 0; i < n; i++)
		rev[i] = msgs[n - 1 - i];
	s = thread_str(rev, n, algo, false);
	if (strcmp(str_c(s), want) != 0)
		fail_msg("THREAD (reversed input) %s, want %s", str_c(s), want);
	str_free(&s);
	free(rev);
}

/* ---- SORT ---- */

static struct sortthread_msg sort_msgs[5];

static void sort_setup(void)
{
	struct sortthread_msg *m = sort_msgs;

	/* Kept out of sequence order on purpose. */
	mk(&m[0], 3, 100, "a", false, NULL, NULL, NULL);
	mk(&m[1], 1, 300, "b", false, NULL, NULL, NULL);
	mk(&m[2], 4, 300, "", false, NULL, NULL, NULL);
	mk(&m[3], 2, 0, "A", true, NULL, NULL, NULL);
	mk(&m[4], 5, 50, "\xC3\x89mile", false, NULL, NULL, NULL);
	m[0].internal_date = 500;
	m[1].internal_date = 1000;
	m[2].internal_date = 500;
	m[3].internal_date = 200;
	m[4].internal_date = 100;
	m[0].size = 20;
	m[1].size = 10;
	m[2].size = 10;
	m[3].size = 30;
	m[4].size = 5;
	set_key(&m[0].from, "alice");
	set_key(&m[1].from, "bob");
	set_key(&m[3].from, "Alice");
	set_key(&m[4].from, "emile");
	set_key(&m[1].to, "Zed");
	set_key(&m[2].to, "zed");
	set_key(&m[3].to, "amy");
	set_key(&m[4].to, "zed@");
	set_key(&m[0].cc, "c");
	set_key(&m[1].cc, "B");
	set_key(&m[2].cc, "a");
	set_key(&m[3].cc, "b");
	set_key(&m[4].cc, "b");
	set_key(&m[0].displayfrom, "Zoe");
	set_key(&m[1].displayfrom, "Bob Smith");
	set_key(&m[3].displayfrom, "alice@x.example");
	set_key(&m[4].displayfrom, "bob smith");
	set_key(&m[0].displayto, "x");
	set_key(&m[1].displayto, "y");
	set_key(&m[2].displayto, "X");
	set_key(&m[3].displayto, "w");
	set_key(&m[4].displayto, "");
}

/* crit is "KEY[-]" words ("-" = REVERSE); want the sequence numbers. */
static void expect_sort(const char *crit, const char *want)
{
	static const char *const names[] = {
		"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO",
		"DISPLAYFROM", "DISPLAYTO",
	};
	struct imap_sort_criterion c[8];
	size_t nc = 0, order[5], i, k, len;
	const char *p = crit;
	struct str *s = str_new(0, 256);

	while (*p != '\0') {
		len = strcspn(p, " -");
		for (k = 0; k < TERN_NELEM(names); k++) {
			if (strlen(names[k]) == len &&
			    strncmp(names[k], p, len) == 0)
				break;
		}
		assert_true(k < TERN_NELEM(names));
		c[nc].key = (enum imap_sort_key)k;
		p += len;
		c[nc].reverse = *p == '-';
		p += *p == '-';
		p += *p == ' ';
		nc++;
	}
	sortthread_sort(sort_msgs, 5, c, nc, order);
	for (i = 0; i < 5; i++)
		assert_int_equal(str_printf(s, "%s%u", i > 0 ? " " : "",
					    (unsigned)sort_msgs[order[i]].seq),
				 0);
	if (strcmp(str_c(s), want) != 0)
		fail_msg("SORT (%s): %s, want %s", crit, str_c(s), want);
	str_free(&s);
}

static void test_sort(void **state)
{
	(void)state;
	sort_setup();
	expect_sort("", "1 2 3 4 5");
	expect_sort("ARRIVAL", "5 2 3 4 1");
	expect_sort("ARRIVAL-", "1 3 4 2 5");
	/* seq 2 has no Date: its internal date 200 stands in. */
	expect_sort("DATE", "5 3 2 1 4");
	expect_sort("DATE-", "1 4 2 3 5");
	expect_sort("SIZE", "5 1 4 3 2");
	expect_sort("SIZE-", "2 3 1 4 5");
	/* Case does not count; "" first; 8-bit bytes after ASCII. */
	expect_sort("SUBJECT", "4 2 3 1 5");
	expect_sort("SUBJECT SIZE-", "4 2 3 1 5");
	expect_sort("SUBJECT SIZE", "4 3 2 1 5");
	expect_sort("SUBJECT- DATE", "5 1 3 2 4");
	expect_sort("FROM", "4 2 3 1 5");
	expect_sort("FROM-", "5 1 2 3 4");
	expect_sort("TO", "3 2 1 4 5");
	expect_sort("TO DATE-", "3 2 1 4 5");
	expect_sort("TO SIZE-", "3 2 1 4 5");
	expect_sort("CC", "4 1 2 5 3");
	expect_sort("CC- ARRIVAL-", "3 1 2 5 4");
	expect_sort("DISPLAYFROM", "4 2 1 5 3");
	expect_sort("DISPLAYTO", "5 2 3 4 1");
	expect_sort("DISPLAYTO-", "1 3 4 2 5");
	expect_sort("FROM SUBJECT- DATE", "4 3 2 1 5");
	clear_all(sort_msgs, 5);
}

static void test_sort_compare(void **state)
{
	struct sortthread_msg a, b;
	struct imap_sort_criterion c[2] = { { IMAP_SORT_SUBJECT, false },
					    { IMAP_SORT_SIZE, true } };

	(void)state;
	mk(&a, 1, 10, "Topic", false, NULL, NULL, NULL);
	mk(&b, 2, 20, "tOPIC", false, NULL, NULL, NULL);
	a.size = 5;
	b.size = 5;
	assert_int_equal(sortthread_compare(&a, &b, c, 2), 0);
	b.size = 6;
	assert_true(sortthread_compare(&a, &b, c, 2) > 0);
	assert_true(sortthread_compare(&b, &a, c, 2) < 0);
	assert_true(sortthread_compare(&a, &b, c, 1) == 0);
	/* A hand-filled struct may leave key strings NULL: "". */
	free(a.from);
	a.from = NULL;
	c[0].key = IMAP_SORT_FROM;
	assert_int_equal(sortthread_compare(&a, &b, c, 1), 0);
	a.sent_date = 0;
	a.internal_date = 20;
	assert_int_equal(sortthread_sent_date(&a), 20);
	c[0].key = IMAP_SORT_DATE;
	assert_int_equal(sortthread_compare(&a, &b, c, 1), 0);
	sortthread_msg_clear(&a);
	sortthread_msg_clear(&b);
	assert_null(a.subject);
}

static void test_algo_parse(void **state)
{
	enum sortthread_algo algo;

	(void)state;
	assert_int_equal(sortthread_algo_parse("REFERENCES", &algo), 0);
	assert_int_equal(algo, SORTTHREAD_REFERENCES);
	assert_int_equal(sortthread_algo_parse("orderedsubject", &algo), 0);
	assert_int_equal(algo, SORTTHREAD_ORDEREDSUBJECT);
	assert_int_equal(sortthread_algo_parse("REFS", &algo), -1);
	assert_int_equal(sortthread_algo_parse("", &algo), -1);
	assert_int_equal(sortthread_algo_parse("REFERENCESX", &algo), -1);
}

/* ---- ORDEREDSUBJECT ---- */

static void test_orderedsubject(void **state)
{
	struct sortthread_msg m[8];

	(void)state;
	mk(&m[0], 1, 300, "B", true, "a", NULL, NULL);
	mk(&m[1], 2, 200, "A", false, "b", NULL, NULL);
	mk(&m[2], 3, 100, "b", false, NULL, NULL, NULL);
	mk(&m[3], 4, 400, "a", false, NULL, "b", NULL);
	mk(&m[4], 5, 150, "b", true, NULL, NULL, NULL);
	mk(&m[5], 6, 250, "C", false, NULL, NULL, NULL);
	mk(&m[6], 7, 50, "", false, NULL, NULL, NULL);
	mk(&m[7], 8, 0, "", false, NULL, NULL, NULL);
	/* seq 8 has no Date: internal date 1000008, after all others. */
	expect_thread(m, 8, SORTTHREAD_ORDEREDSUBJECT,
		      "(7 8)(3 (5)(1))(2 4)(6)");
	/* Equal dates: sequence order, for threads and inside them. */
	m[2].sent_date = 150;
	m[0].sent_date = 150;
	expect_thread(m, 8, SORTTHREAD_ORDEREDSUBJECT,
		      "(7 8)(1 (3)(5))(2 4)(6)");
	clear_all(m, 8);
	expect_thread(m, 0, SORTTHREAD_ORDEREDSUBJECT, "");
	mk(&m[0], 9, 5, "x", false, NULL, NULL, NULL);
	expect_thread(m, 1, SORTTHREAD_ORDEREDSUBJECT, "(9)");
	clear_all(m, 1);
}

/* ---- REFERENCES ---- */

static void test_references_basic(void **state)
{
	struct sortthread_msg m[5];
	struct str *s;

	(void)state;
	mk(&m[0], 1, 100, "Topic", false, "a@x", NULL, NULL);
	mk(&m[1], 2, 200, "Topic", true, "b@x", NULL, "a@x");
	/* Its References name a missing message between it and "a". */
	mk(&m[2], 3, 300, "Topic", true, "c@x", NULL, "a@x gone@x");
	/* No References: In-Reply-To is used. */
	mk(&m[3], 4, 250, "Topic", true, "d@x", "b@x", NULL);
	mk(&m[4], 5, 50, "Other", false, "e@x", NULL, NULL);
	expect_thread(m, 5, SORTTHREAD_REFERENCES, "(5)(1 (2 4)(3))");
	s = thread_str(m, 5, SORTTHREAD_REFERENCES, true);
	assert_string_equal(str_c(s), "(50)(10 (20 40)(30))");
	str_free(&s);
	clear_all(m, 5);
}

/* The shapes of the RFC's example response. */
static void test_references_rfc_shape(void **state)
{
	static const uint32_t seqs[] = { 2, 3, 6, 4, 23, 44, 7, 96 };
	struct sortthread_msg m[9];

	(void)state;
	mk(&m[0], 2, 10, "one", false, "2", NULL, NULL);
	mk(&m[1], 3, 20, "two", false, "3", NULL, NULL);
	mk(&m[2], 6, 30, "two", true, "6", NULL, "3");
	mk(&m[3], 4, 40, "two", true, "4", NULL, "3 6");
	mk(&m[4], 23, 50, "two", true, "23", NULL, "3 6 4");
	mk(&m[5], 44, 45, "two", true, "44", NULL, "3 6");
	mk(&m[6], 7, 60, "two", true, "7", "44", NULL);
	mk(&m[7], 96, 70, "two", true, "96", NULL, "3 6 44 7");
	assert_int_equal(TERN_NELEM(seqs), 8);
	expect_thread(m, 8, SORTTHREAD_REFERENCES,
		      "(2)(3 6 (4 23)(44 7 96))");
	/* Two replies to one missing message keep a dummy at the top. */
	mk(&m[8], 99, 5, "", false, NULL, "lost", NULL);
	set_key(&m[0].message_id, "first");
	set_key(&m[0].in_reply_to, "lost");
	set_key(&m[0].subject, "other");
	expect_thread(m, 9, SORTTHREAD_REFERENCES,
		      "((99)(2))(3 6 (4 23)(44 7 96))");
	clear_all(m, 9);
}

static void test_references_loops(void **state)
{
	struct sortthread_msg m[4];

	(void)state;
	/* a and b name each other: the first link made wins. */
	mk(&m[0], 1, 100, "x1", false, "a", NULL, "b");
	mk(&m[1], 2, 200, "x2", false, "b", NULL, "a");
	expect_thread(m, 2, SORTTHREAD_REFERENCES, "(2 1)");
	clear_all(m, 2);
	/* A three-message ring. */
	mk(&m[0], 1, 100, "x1", false, "a", NULL, "c");
	mk(&m[1], 2, 200, "x2", false, "b", NULL, "a");
	mk(&m[2], 3, 300, "x3", false, "c", NULL, "b");
	expect_thread(m, 3, SORTTHREAD_REFERENCES, "(3 1 2)");
	clear_all(m, 3);
	/* A message naming itself, twice, and a chain naming itself. */
	mk(&m[0], 1, 100, "x1", false, "a", NULL, "a a");
	mk(&m[1], 2, 200, "x2", false, "b", NULL, "a b a b");
	mk(&m[2], 3, 300, "x3", false, "c", "c", NULL);
	expect_thread(m, 3, SORTTHREAD_REFERENCES, "(1)(2)(3)");
	clear_all(m, 3);
	/* References that loop among missing messages. */
	mk(&m[0], 1, 100, "x1", false, "a", NULL, "p q p q");
	mk(&m[1], 2, 200, "x2", false, "b", NULL, "q p");
	expect_thread(m, 2, SORTTHREAD_REFERENCES, "((1)(2))");
	clear_all(m, 2);
}

static void test_references_ids(void **state)
{
	struct sortthread_msg m[6];

	(void)state;
	/* Duplicate ids: the lowest sequence number keeps it. */
	mk(&m[0], 2, 200, "S2", false, "dup", NULL, NULL);
	mk(&m[1], 1, 100, "S1", false, "dup", NULL, NULL);
	mk(&m[2], 3, 300, "S3", true, "c", NULL, "dup");
	mk(&m[3], 4, 400, "S4", true, "d", NULL, "dup");
	expect_thread(m, 4, SORTTHREAD_REFERENCES, "(1 (3)(4))(2)");
	clear_all(m, 4);
	/* Ids compare byte for byte. */
	mk(&m[0], 1, 100, "S1", false, "Id@X", NULL, NULL);
	mk(&m[1], 2, 200, "S2", false, "b", NULL, "id@x");
	expect_thread(m, 2, SORTTHREAD_REFERENCES, "(1)(2)");
	clear_all(m, 2);
	/* No Message-ID (or an empty one): a thread of its own. */
	mk(&m[0], 1, 100, "S1", false, NULL, NULL, NULL);
	mk(&m[1], 2, 200, "S2", false, "", NULL, NULL);
	mk(&m[2], 3, 300, "S3", false, "c", "nowhere", NULL);
	mk(&m[3], 4, 400, "S4", false, "d", NULL, "");
	expect_thread(m, 4, SORTTHREAD_REFERENCES, "(1)(2)(3)(4)");
	clear_all(m, 4);
	/* References win over In-Reply-To. */
	mk(&m[0], 1, 100, "S1", false, "a", NULL, NULL);
	mk(&m[1], 2, 200, "S2", false, "b", NULL, NULL);
	mk(&m[2], 3, 300, "S3", false, "c", "a", "b");
	expect_thread(m, 3, SORTTHREAD_REFERENCES, "(1)(2 3)");
	clear_all(m, 3);
}

/* Step 1.B: the message's own last reference replaces a parent that a
 * truncated References of another message gave it. */
static void test_references_reparent(void **state)
{
	struct sortthread_msg m[3];

	(void)state;
	mk(&m[0], 1, 310, "Correct parent", true, "desc", NULL,
	   "wrong child");
	mk(&m[1], 2, 305, "Correct parent", true, "child", NULL, "right");
	mk(&m[2], 3, 300, "Correct parent", false, "right", NULL, NULL);
	expect_thread(m, 3, SORTTHREAD_REFERENCES, "(3 2 1)");
	/* Without References the old parent goes too, and nothing new
	 * comes (another subject keeps the threads apart). */
	m[1].nreferences = 0;
	set_key(&m[1].subject, "other");
	expect_thread(m, 3, SORTTHREAD_REFERENCES, "(3)(2 1)");
	m[1].nreferences = 1;
	clear_all(m, 3);
}

static void test_references_subjects(void **state)
{
	struct sortthread_msg m[8];

	(void)state;
	/* Replies without References join the thread of their subject. */
	mk(&m[0], 1, 100, "Hello", false, "a", NULL, NULL);
	mk(&m[1], 2, 200, "hello", true, "b", NULL, NULL);
	mk(&m[2], 3, 150, "HELLO", true, "c", NULL, NULL);
	mk(&m[3], 4, 300, "hello", false, "d", NULL, NULL);
	mk(&m[4], 5, 10, "", false, "e", NULL, NULL);
	mk(&m[5], 6, 20, "", false, "f", NULL, NULL);
	expect_thread(m, 6, SORTTHREAD_REFERENCES, "(5)(6)((1 (3)(2))(4))");
	clear_all(m, 6);
	/* A reply first in the table gives way to the original. */
	mk(&m[0], 1, 100, "topic", true, "a", NULL, NULL);
	mk(&m[1], 2, 200, "topic", false, "b", NULL, NULL);
	mk(&m[2], 3, 300, "topic", true, "c", NULL, NULL);
	expect_thread(m, 3, SORTTHREAD_REFERENCES, "(2 (1)(3))");
	clear_all(m, 3);
	/* Two dummies with one subject become one; a message joins it. */
	mk(&m[0], 1, 100, "s", true, "a", "x", NULL);
	mk(&m[1], 2, 200, "s", true, "b", "x", NULL);
	mk(&m[2], 3, 150, "s", true, "c", "y", NULL);
	mk(&m[3], 4, 250, "s", true, "d", "y", NULL);
	mk(&m[4], 5, 50, "s", false, "e", NULL, NULL);
	mk(&m[5], 6, 400, "other", false, "f", NULL, NULL);
	mk(&m[6], 7, 60, "s", true, "g", NULL, "e");
	expect_thread(m, 7, SORTTHREAD_REFERENCES,
		      "((5 7)(1)(3)(2)(4))(6)");
	/* Now the message comes after the dummies: it joins the first. */
	m[4].sent_date = 500;
	m[6].sent_date = 600;
	expect_thread(m, 7, SORTTHREAD_REFERENCES,
		      "((1)(3)(2)(4)(5 7))(6)");
	clear_all(m, 7);
	/* A thread with a subject merges only by its root's subject. */
	mk(&m[0], 1, 100, "A", false, "a", NULL, NULL);
	mk(&m[1], 2, 200, "B", true, "b", NULL, "a");
	mk(&m[2], 3, 300, "B", false, "c", NULL, NULL);
	expect_thread(m, 3, SORTTHREAD_REFERENCES, "(1 2)(3)");
	clear_all(m, 3);
}

/* ---- keys from parsed messages ---- */

/* Fed one byte at a time, as the parser may see it. */
static struct mime_part *parse(const char *msg)
{
	struct mime_parser *p = mime_parser_new(NULL);
	size_t i, len = strlen(msg);

	for (i = 0; i < len; i++)
		mime_parser_feed(p, msg + i, 1);
	return mime_parser_finish(&p);
}

static void fill(struct sortthread_msg *m, uint32_t seq, const char *raw)
{
	struct mime_part *root = parse(raw);

	sortthread_msg_fill(m, root, seq, seq + 100, 5000 + seq, strlen(raw));
	mime_part_free(&root);
}

static void test_fill(void **state)
{
	struct sortthread_msg m[4];
	struct str *s;

	(void)state;
	fill(&m[0], 1,
	     "Date: Tue, 1 Jul 2003 10:52:37 +0200\r\n"
	     "From: \"Smith, Bob\" <Bob@Example.org>\r\n"
	     "To: =?utf-8?q?J=C3=B6rg?= <jorg@x.example>, amy@y\r\n"
	     "Cc: undisclosed:;\r\n"
	     "Subject: Re: [fwd: Re: Hello  world]\r\n"
	     "Message-ID: <1@x>\r\n"
	     "In-Reply-To: <0@x> (sent earlier) <other@x>\r\n"
	     "References: <a@x>\r\n <0@x>\r\n"
	     "\r\nbody\r\n");
	assert_int_equal(m[0].seq, 1);
	assert_int_equal(m[0].uid, 101);
	assert_int_equal(m[0].internal_date, 5001);
	assert_int_equal(m[0].sent_date, 1057049557);
	assert_string_equal(m[0].subject, "Hello world");
	assert_true(m[0].is_reply);
	assert_string_equal(m[0].from, "Bob");
	assert_string_equal(m[0].displayfrom, "Smith, Bob");
	assert_string_equal(m[0].to, "jorg");
	assert_string_equal(m[0].displayto, "J\xC3\xB6rg");
	assert_string_equal(m[0].cc, "");
	assert_string_equal(m[0].message_id, "1@x");
	assert_string_equal(m[0].in_reply_to, "0@x");
	assert_int_equal(m[0].nreferences, 2);
	assert_string_equal(m[0].references[0], "a@x");
	assert_string_equal(m[0].references[1], "0@x");
	/* Nothing at all: empty keys, the internal date as sent date. */
	fill(&m[1], 2, "X-Nothing: here\r\n\r\n");
	assert_int_equal(m[1].sent_date, 0);
	assert_int_equal(sortthread_sent_date(&m[1]), 5002);
	assert_string_equal(m[1].subject, "");
	assert_false(m[1].is_reply);
	assert_string_equal(m[1].from, "");
	assert_string_equal(m[1].displayto, "");
	assert_null(m[1].message_id);
	assert_null(m[1].in_reply_to);
	assert_int_equal(m[1].nreferences, 0);
	assert_null(m[1].references);
	/* A bad date and no ids in the id fields. */
	fill(&m[2], 3,
	     "Date: yesterday\r\nMessage-ID: none\r\nSubject: Fwd: Hello"
	     " World (fwd)\r\nIn-Reply-To: <>\r\n"
	     "From: <bob@example.org>\r\nReferences: <0@x>\r\n\r\n");
	assert_int_equal(m[2].sent_date, 0);
	assert_null(m[2].message_id);
	assert_null(m[2].in_reply_to);
	assert_string_equal(m[2].displayfrom, "bob@example.org");
	assert_string_equal(m[2].subject, "Hello World");
	fill(&m[3], 4,
	     "Subject: hello world\r\nMessage-ID: <0@x>\r\n\r\n");
	/* 4 is the original, 1 and 3 reply to it. */
	s = thread_str(m, 4, SORTTHREAD_REFERENCES, false);
	assert_string_equal(str_c(s), "(2)(4 (3)(1))");
	str_free(&s);
	s = thread_str(m, 4, SORTTHREAD_ORDEREDSUBJECT, true);
	assert_string_equal(str_c(s), "(102)(103 (104)(101))");
	str_free(&s);
	clear_all(m, 4);
}

static void test_fill_many_references(void **state)
{
	struct str *raw = str_new(0, 1 << 20);
	struct sortthread_msg m;
	int i;

	(void)state;
	assert_int_equal(str_append_c(raw, "References:"), 0);
	for (i = 0; i < SORTTHREAD_REFS_MAX + 5; i++)
		assert_int_equal(str_printf(raw, " <r%d@x>\r\n", i), 0);
	assert_int_equal(str_append_c(raw, "\r\n"), 0);
	fill(&m, 1, str_c(raw));
	assert_int_equal(m.nreferences, SORTTHREAD_REFS_MAX);
	assert_string_equal(m.references[0], "r5@x");
	assert_string_equal(m.references[SORTTHREAD_REFS_MAX - 1],
			    "r1004@x");
	sortthread_msg_clear(&m);
	str_free(&raw);
}

static void test_format_limit(void **state)
{
	struct sortthread_msg m[3];
	struct sortthread_tree *tree;
	struct str *s = str_new(0, 10);

	(void)state;
	mk(&m[0], 1, 1, "a", false, "a", NULL, NULL);
	mk(&m[1], 2, 2, "b", false, "b", NULL, "a");
	mk(&m[2], 3, 3, "c", false, "c", NULL, "a");
	tree = sortthread_thread(m, 3, SORTTHREAD_REFERENCES);
	assert_int_equal(sortthread_format(tree, m, false, s), 0);
	assert_string_equal(str_c(s), "(1 (2)(3))");
	str_clear(s);
	assert_int_equal(sortthread_format(tree, m, true, s), -1);
	assert_true(str_len(s) <= 10);
	sortthread_tree_free(&tree);
	sortthread_tree_free(&tree);
	str_free(&s);
	clear_all(m, 3);
}

/* ---- random mailboxes ---- */

static uint64_t rnd_state = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd(uint32_t n)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return (uint32_t)(rnd_state % n);
}

/* Small pools of ids, subjects and dates make duplicates, loops, missing
 * parents and ties common; every tree must hold each message once and
 * not depend on the order of the array. */
static void test_random(void **state)
{
	static const char *const subjects[] = { "", "a", "A", "b", "c" };
	struct sortthread_msg m[40];
	struct str *refs = str_new(0, 1024), *s1, *s2;
	char id[16];
	size_t round, i, k, n, nrefs;

	(void)state;
	for (round = 0; round < 300; round++) {
		n = 1 + rnd(40);
		for (i = 0; i < n; i++) {
			str_clear(refs);
			nrefs = rnd(6);
			for (k = 0; k < nrefs; k++)
				assert_int_equal(str_printf(refs, "%si%u",
							    k > 0 ? " " : "",
							    (unsigned)rnd(30)),
						 0);
			(void)snprintf(id, sizeof(id), "i%u", (unsigned)rnd(30));
			mk(&m[i], (uint32_t)(i + 1), (time_t)rnd(8),
			   subjects[rnd(TERN_NELEM(subjects))], rnd(2) == 0,
			   rnd(5) == 0 ? NULL : id,
			   rnd(3) == 0 ? "i1" : NULL,
			   str_len(refs) > 0 ? str_c(refs) : NULL);
		}
		for (k = 0; k < 2; k++) {
			enum sortthread_algo algo =
				k == 0 ? SORTTHREAD_REFERENCES
				       : SORTTHREAD_ORDEREDSUBJECT;

			s1 = thread_str(m, n, algo, false);
			expect_thread(m, n, algo, str_c(s1));
			s2 = thread_str(m, n, algo, true);
			assert_true(str_len(s2) > str_len(s1));
			str_free(&s2);
			str_free(&s1);
		}
		clear_all(m, n);
	}
	str_free(&refs);
}

/* ---- big generated mailboxes ---- */

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define BIG 100000

/* Threads of ten: each message References the ones before it. */
static void test_big_threads(void **state)
{
	struct sortthread_msg *m = xcalloc(BIG, sizeof(*m));
	struct str *want = str_new(0, 16 << 20), *got, *refs;
	struct imap_sort_criterion c[2] = { { IMAP_SORT_SUBJECT, false },
					    { IMAP_SORT_DATE, true } };
	size_t *order = xmalloc(BIG * sizeof(*order)), i;
	char id[32], subj[32];
	double t0;

	(void)state;
	refs = str_new(0, 4096);
	for (i = 0; i < BIG; i++) {
		if (i % 10 == 0)
			str_clear(refs);
		(void)snprintf(id, sizeof(id), "m%zu@big", i);
		(void)snprintf(subj, sizeof(subj), "topic %zu", i / 10);
		mk(&m[i], (uint32_t)(i + 1), (time_t)(1000 + i), subj,
		   i % 10 != 0, id, NULL, str_len(refs) > 0 ? str_c(refs)
							    : NULL);
		assert_int_equal(str_printf(refs, "%s%s",
					    str_len(refs) > 0 ? " " : "", id),
				 0);
		assert_int_equal(str_printf(want, "%s%zu%s",
					    i % 10 == 0 ? "(" : " ", i + 1,
					    i % 10 == 9 ? ")" : ""),
				 0);
	}
	t0 = now();
	got = thread_str(m, BIG, SORTTHREAD_REFERENCES, false);
	fprintf(stderr, "# REFERENCES, %d messages: %.3f s\n", BIG,
		now() - t0);
	assert_string_equal(str_c(got), str_c(want));
	str_free(&got);
	t0 = now();
	got = thread_str(m, BIG, SORTTHREAD_ORDEREDSUBJECT, false);
	fprintf(stderr, "# ORDEREDSUBJECT, %d messages: %.3f s\n", BIG,
		now() - t0);
	/* "(1 (2)(3)...(10))(11 (12)...": the replies are siblings. */
	str_clear(want);
	for (i = 0; i < BIG; i++) {
		if (i % 10 == 0)
			assert_int_equal(str_printf(want, "(%zu", i + 1), 0);
		else
			assert_int_equal(str_printf(want, "%s(%zu)%s",
						    i % 10 == 1 ? " " : "",
						    i + 1,
						    i % 10 == 9 ? ")" : ""),
					 0);
	}
	assert_string_equal(str_c(got), str_c(want));
	str_free(&got);
	t0 = now();
	sortthread_sort(m, BIG, c, 2, order);
	fprintf(stderr, "# SORT SUBJECT REVERSE DATE, %d messages: %.3f s\n",
		BIG, now() - t0);
	/* "topic 0" < "topic 1" < "topic 10" ...; latest first inside. */
	assert_int_equal(order[0], 9);
	assert_int_equal(order[9], 0);
	assert_int_equal(order[10], 19);
	for (i = 1; i < BIG; i++)
		assert_true(sortthread_compare(&m[order[i - 1]], &m[order[i]],
					       c, 2) <= 0);
	free(order);
	str_free(&refs);
	str_free(&want);
	clear_all(m, BIG);
	free(m);
}

/* One reply chain of BIG messages, arriving oldest first and newest
 * first: deep trees must not recurse. */
static void test_big_chain(void **state)
{
	struct sortthread_msg *m = xcalloc(BIG, sizeof(*m));
	struct str *want = str_new(0, 16 << 20), *got;
	char id[32], parent[32];
	size_t i;
	double t0;

	(void)state;
	for (i = 0; i < BIG; i++) {
		(void)snprintf(id, sizeof(id), "c%zu", i);
		(void)snprintf(parent, sizeof(parent), "c%zu", i - 1);
		mk(&m[i], (uint32_t)(i + 1), (time_t)(1000 + i),
		   i > 0 ? "Re: chain" : "chain", i > 0, id,
		   i > 0 ? parent : NULL, NULL);
		assert_int_equal(str_printf(want, "%s%zu", i > 0 ? " " : "(",
					    i + 1),
				 0);
	}
	assert_int_equal(str_append_c(want, ")"), 0);
	t0 = now();
	got = thread_str(m, BIG, SORTTHREAD_REFERENCES, false);
	fprintf(stderr, "# chain of %d: %.3f s\n", BIG, now() - t0);
	assert_string_equal(str_c(got), str_c(want));
	str_free(&got);
	/* Parents arrive after their replies: renumber newest first. */
	str_clear(want);
	for (i = 0; i < BIG; i++) {
		m[i].seq = (uint32_t)(BIG - i);
		assert_int_equal(str_printf(want, "%s%zu", i > 0 ? " " : "(",
					    BIG - i),
				 0);
	}
	assert_int_equal(str_append_c(want, ")"), 0);
	t0 = now();
	got = thread_str(m, BIG, SORTTHREAD_REFERENCES, false);
	fprintf(stderr, "# chain of %d, newest first: %.3f s\n", BIG,
		now() - t0);
	assert_string_equal(str_c(got), str_c(want));
	str_free(&got);
	str_free(&want);
	clear_all(m, BIG);
	free(m);
}

#define DEEP 20000
#define LATE 20000

/* A DEEP chain, then LATE pairs: a reply y, then its parent x, a reply to
 * the chain's end.  Linking x (which has a child) checks for a loop: its
 * small subtree ends the check early.  Then each x also names the chain's
 * end and its root: linking the root under its own end is a loop that both
 * walks are too long for; it is refused all the same. */
static void test_deep_loop_checks(void **state)
{
	size_t n = DEEP + 2 * LATE, i, j;
	struct sortthread_msg *m = xcalloc(n, sizeof(*m)), *x;
	struct str *want = str_new(0, 16 << 20), *got;
	char id[32], parent[32];
	double t0;

	(void)state;
	for (i = 0; i < DEEP; i++) {
		(void)snprintf(id, sizeof(id), "d%zu", i);
		(void)snprintf(parent, sizeof(parent), "d%zu", i - 1);
		mk(&m[i], (uint32_t)(i + 1), (time_t)i, "deep", i > 0, id,
		   i > 0 ? parent : NULL, NULL);
	}
	for (j = 0; j < LATE; j++) {
		i = DEEP + 2 * j;
		(void)snprintf(id, sizeof(id), "y%zu", j);
		(void)snprintf(parent, sizeof(parent), "x%zu", j);
		mk(&m[i], (uint32_t)(i + 1), (time_t)i, "deep", true, id,
		   parent, NULL);
		(void)snprintf(id, sizeof(id), "x%zu", j);
		(void)snprintf(parent, sizeof(parent), "d%d", DEEP - 1);
		mk(&m[i + 1], (uint32_t)(i + 2), (time_t)(i + 1), "deep", true,
		   id, parent, NULL);
	}
	/* "(1 2 ... 20000 (20002 20001)(20004 20003)...)" */
	for (i = 0; i < DEEP; i++)
		assert_int_equal(str_printf(want, "%s%zu", i > 0 ? " " : "(",
					    i + 1),
				 0);
	for (j = 0; j < LATE; j++)
		assert_int_equal(str_printf(want, "%s(%zu %zu)",
					    j > 0 ? "" : " ",
					    DEEP + 2 * j + 2, DEEP + 2 * j + 1),
				 0);
	assert_int_equal(str_append_c(want, ")"), 0);
	t0 = now();
	got = thread_str(m, n, SORTTHREAD_REFERENCES, false);
	fprintf(stderr, "# deep chain with late parents: %.3f s\n",
		now() - t0);
	assert_string_equal(str_c(got), str_c(want));
	str_free(&got);
	for (j = 0; j < LATE; j++) {
		x = &m[DEEP + 2 * j + 1];
		free(x->in_reply_to);
		x->in_reply_to = NULL;
		x->references = xcalloc(2, sizeof(*x->references));
		(void)snprintf(parent, sizeof(parent), "d%d", DEEP - 1);
		x->references[0] = xstrdup(parent);
		x->references[1] = xstrdup("d0");
		x->nreferences = 2;
	}
	/* "(1 (2 3 ... 20000)(20002 20001)(20004 20003)...)" */
	str_clear(want);
	for (i = 0; i < DEEP; i++)
		assert_int_equal(str_printf(want, "%s%zu",
					    i == 0   ? "("
					    : i == 1 ? " ("
						     : " ",
					    i + 1),
				 0);
	assert_int_equal(str_append_c(want, ")"), 0);
	for (j = 0; j < LATE; j++)
		assert_int_equal(str_printf(want, "(%zu %zu)",
					    DEEP + 2 * j + 2, DEEP + 2 * j + 1),
				 0);
	assert_int_equal(str_append_c(want, ")"), 0);
	t0 = now();
	got = thread_str(m, n, SORTTHREAD_REFERENCES, false);
	fprintf(stderr, "# deep chain with looping references: %.3f s\n",
		now() - t0);
	assert_string_equal(str_c(got), str_c(want));
	str_free(&got);
	str_free(&want);
	clear_all(m, n);
	free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sort),
		cmocka_unit_test(test_sort_compare),
		cmocka_unit_test(test_algo_parse),
		cmocka_unit_test(test_orderedsubject),
		cmocka_unit_test(test_references_basic),
		cmocka_unit_test(test_references_rfc_shape),
		cmocka_unit_test(test_references_loops),
		cmocka_unit_test(test_references_ids),
		cmocka_unit_test(test_references_reparent),
		cmocka_unit_test(test_references_subjects),
		cmocka_unit_test(test_fill),
		cmocka_unit_test(test_fill_many_references),
		cmocka_unit_test(test_format_limit),
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_big_threads),
		cmocka_unit_test(test_big_chain),
		cmocka_unit_test(test_deep_loop_checks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
