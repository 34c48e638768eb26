/*
 * imapparse.h: the IMAP command parser (server side): raw bytes in, one
 * complete command out at a time.
 *
 * Pure and resumable, no I/O: input may be split at any byte and gives the
 * same commands.  A command is a tag, an upper-cased name, the UID prefix
 * and a typed argument tree: atoms, numbers, sequence sets ("1:*", "$"),
 * NIL, quoted strings (escapes removed), literals {n}, {n+} and literal8
 * ~{n}, and parenthesised lists.  FETCH section lists ride inside their
 * atom: "BODY[HEADER.FIELDS (A B)]" is one atom whose text reads
 * "BODY[HEADER.FIELDS ()]" and whose items are A and B.
 *
 * Literals: when a line ends with a synchronising literal, feed returns
 * IMAP_PARSE_CONTINUE before reading any literal byte; the caller sends
 * "+ ..." and feeds on.  Every literal is checked against the limits and
 * the LITERAL+/LITERAL- rules as soon as its {n} is seen, before a byte of
 * it is read.  A refused literal gives IMAP_PARSE_ERROR with the response
 * to send; the rest of the command is then discarded (a refused
 * non-synchronising literal is skipped by its announced size) and the
 * parser goes on with the next command, so the connection stays usable.
 *
 * Limits (struct imap_parser_settings): bytes per line, bytes per literal
 * (APPEND and other commands apart), arguments (every node of the tree),
 * list nesting, bytes per command (lines and literals).  Literal bytes are
 * held in memory up to those limits.
 *
 * Commands belong to the caller: free each with imap_cmd_free(), in any
 * order, whenever done (the parser keeps no pointer into them).  The typed
 * helpers of imapcmd.h and imapsearch.h allocate from the command.
 *
 * Callers: tern-imapd session code; tern-proxyd.
 */
#ifndef TERN_IMAPPARSE_H
#define TERN_IMAPPARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compat.h"

enum imap_literal_mode {
	IMAP_LITERAL_SYNC,	/* only {n}: {n+} is refused */
	IMAP_LITERAL_PLUS,	/* LITERAL+: {n+} of any size */
	IMAP_LITERAL_MINUS,	/* LITERAL-: {n+} up to 4096 bytes */
};

#define IMAP_LITERAL_MINUS_MAX 4096

struct imap_parser_settings {
	size_t max_line;	/* bytes per line, CRLF not counted */
	uint64_t max_append;	/* bytes per APPEND literal (APPENDLIMIT) */
	uint64_t max_literal;	/* bytes per literal of other commands */
	uint64_t max_command;	/* bytes per command, literals included */
	size_t max_args;	/* argument nodes per command */
	unsigned max_depth;	/* list nesting */
	enum imap_literal_mode literal;
};

/* Defaults; settings are clamped to these bounds. */
#define IMAP_DEFAULT_MAX_LINE ((size_t)64 << 10)
#define IMAP_DEFAULT_MAX_APPEND ((uint64_t)64 << 20)
#define IMAP_DEFAULT_MAX_LITERAL ((uint64_t)64 << 10)
#define IMAP_DEFAULT_MAX_COMMAND ((uint64_t)128 << 20)
#define IMAP_DEFAULT_MAX_ARGS 4096
#define IMAP_DEFAULT_MAX_DEPTH 32
#define IMAP_LIMIT_MAX_LINE ((size_t)16 << 20)
#define IMAP_LIMIT_MAX_LITERAL ((uint64_t)1 << 31)
#define IMAP_LIMIT_MAX_ARGS 1000000
#define IMAP_LIMIT_MAX_DEPTH 1000

void imap_parser_settings_default(struct imap_parser_settings *set);

enum imap_arg_type {
	IMAP_ARG_ATOM,
	IMAP_ARG_NUMBER,	/* digits only, <= 2^63-1: also in num */
	IMAP_ARG_SEQSET,	/* sequence-set syntax other than a number */
	IMAP_ARG_NIL,
	IMAP_ARG_QUOTED,
	IMAP_ARG_LITERAL,
	IMAP_ARG_LITERAL8,
	IMAP_ARG_LIST,
};

#define IMAP_ARG_F_NONSYNC 0x1	/* literal sent as {n+} */
#define IMAP_ARG_F_NUL 0x2	/* literal with a NUL byte */
#define IMAP_ARG_F_8BIT 0x4	/* quoted or literal with 8-bit bytes */
#define IMAP_ARG_F_SECTION 0x8	/* atom with a section list in list */

struct imap_arg {
	enum imap_arg_type type;
	unsigned flags;		/* IMAP_ARG_F_* */
	/* NUL-terminated text: atoms as sent (NIL too), quoted strings
	 * unescaped, literal data (may hold NULs: use len).  "" for lists. */
	const char *str;
	size_t len;
	uint64_t num;		/* IMAP_ARG_NUMBER */
	/* IMAP_ARG_LIST items, or the section list of an F_SECTION atom. */
	const struct imap_arg *list;
	size_t count;
};

struct imap_cmd_priv;

struct imap_cmd {
	const char *tag;
	const char *name;	/* upper-cased, without "UID " */
	bool uid;		/* "UID FETCH" and the like */
	const struct imap_arg *args;
	size_t nargs;
	uint64_t size;		/* bytes, line ends and literals included */
	struct imap_cmd_priv *priv;
};

void imap_cmd_free(struct imap_cmd **cmd);
/* Memory that lives as long as the command (for the typed helpers). */
void *imap_cmd_alloc(struct imap_cmd *cmd, size_t n);
char *imap_cmd_strndup(struct imap_cmd *cmd, const char *s, size_t n);
/* Runs fn(ctx) when the command is freed. */
void imap_cmd_on_free(struct imap_cmd *cmd, void (*fn)(void *), void *ctx);

/* What to answer when feed returns IMAP_PARSE_ERROR. */
enum imap_resp_kind {
	IMAP_RESP_BAD,
	IMAP_RESP_NO,
};

struct imap_parse_error {
	enum imap_resp_kind kind;
	const char *code;	/* response code ("TOOBIG") or NULL */
	const char *text;	/* human-readable */
	const char *tag;	/* NULL: no valid tag, answer "* BAD" */
};

/* Return values of imap_parser_feed(). */
#define IMAP_PARSE_ERROR (-1)	/* answer *error_r; then go on feeding */
#define IMAP_PARSE_MORE 0	/* all input consumed */
#define IMAP_PARSE_COMMAND 1	/* *cmd_r is a command (caller owns it) */
#define IMAP_PARSE_CONTINUE 2	/* send "+ ..." for a literal, go on */

struct imap_parser;

struct imap_parser *imap_parser_new(const struct imap_parser_settings *set);
void imap_parser_free(struct imap_parser **p);
/* New limits (after login, say); they apply from the next command. */
void imap_parser_set_settings(struct imap_parser *p,
			      const struct imap_parser_settings *set);

/*
 * Consumes input from *pos up to end and returns one IMAP_PARSE_* value.
 * It stops after each command, continuation request or error, with *pos
 * just past what it used: call again with the rest.  *error_r stays valid
 * until the next feed or reset.
 */
int imap_parser_feed(struct imap_parser *p, const char **pos, const char *end,
		     struct imap_cmd **cmd_r,
		     const struct imap_parse_error **error_r) TERN_WUR;

/*
 * A raw line instead of a command: an AUTHENTICATE response or the DONE
 * that ends IDLE.  1 = line in *line_r, *len_r (without CRLF, valid until
 * the next call), 0 = need more, -1 = line too long (*error_r; discarded).
 * Only between commands.
 */
int imap_parser_feed_line(struct imap_parser *p, const char **pos,
			  const char *end, const char **line_r, size_t *len_r,
			  const struct imap_parse_error **error_r) TERN_WUR;

/* True while part of a command has been read. */
bool imap_parser_in_command(const struct imap_parser *p);
/* Drops all state (STARTTLS: no plaintext survives). */
void imap_parser_reset(struct imap_parser *p);

/* ---- argument accessors: 0, or -1 when the type does not fit ---- */

/* astring: atom-like, quoted or literal (not literal8), without NULs. */
int imap_arg_astring(const struct imap_arg *a, const char **s_r,
		     size_t *len_r) TERN_WUR;
/* string: quoted or literal only. */
int imap_arg_string(const struct imap_arg *a, const char **s_r,
		    size_t *len_r) TERN_WUR;
/* nstring: NIL gives *s_r = NULL. */
int imap_arg_nstring(const struct imap_arg *a, const char **s_r,
		     size_t *len_r) TERN_WUR;
/* An atom-like token (atom, number, sequence set, NIL). */
bool imap_arg_is_atom(const struct imap_arg *a);
/* Atom-like and equal to word, ignoring case. */
bool imap_arg_atom_eq(const struct imap_arg *a, const char *word);
int imap_arg_number(const struct imap_arg *a, uint64_t *n_r) TERN_WUR;
const char *imap_arg_type_name(enum imap_arg_type type);

#endif
