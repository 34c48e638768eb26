/*
 * json.h: a small JSON writer into a struct str, for every --json output.
 *
 * The writer tracks nesting and inserts the commas itself; with JSON_PRETTY
 * it puts one member or element per line, indented by two spaces.  Strings
 * are escaped per RFC 8259 (quote, backslash and every control character;
 * also U+2028 and U+2029), and bytes that are not valid UTF-8 become U+FFFD,
 * so peer data can always be written as it is.
 *
 * Errors are sticky: the writer calls return nothing, and the first problem
 * (the str's maximum reached, nesting deeper than JSON_DEPTH_MAX, a value
 * where a key belongs, an end that does not match its begin, a second
 * top-level value) is reported by json_finish().  After an error the output
 * holds partial JSON and must be discarded.
 *
 * Callers: ternctl and every daemon's --json output.
 */
#ifndef TERN_JSON_H
#define TERN_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "compat.h"
#include "str.h"

#define JSON_PRETTY 0x1
#define JSON_DEPTH_MAX 64

struct json;

/* Appends to out (which the caller keeps owning) one top-level value. */
struct json *json_new(struct str *out, unsigned int flags);
void json_free(struct json **j);

void json_object_begin(struct json *j);
void json_object_end(struct json *j);
void json_array_begin(struct json *j);
void json_array_end(struct json *j);

/* Inside an object: the name of the next member. */
void json_key(struct json *j, const char *key);
void json_key_n(struct json *j, const void *key, size_t len);

void json_string(struct json *j, const void *p, size_t len);
void json_cstring(struct json *j, const char *s);	/* NULL writes null */
void json_int(struct json *j, int64_t v);
void json_bool(struct json *j, int v);
void json_null(struct json *j);

/* Key and value in one call. */
void json_kv_cstring(struct json *j, const char *key, const char *s);
void json_kv_int(struct json *j, const char *key, int64_t v);
void json_kv_bool(struct json *j, const char *key, int v);

/* 0 when exactly one complete value was written; else -1 with *error_r. */
int json_finish(struct json *j, const char **error_r) TERN_WUR;

#endif
