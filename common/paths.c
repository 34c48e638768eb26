/* paths.c: see paths.h. */
#include "config.h"

#include <stdlib.h>
#include <unistd.h>

#include "compat.h"
#include "log.h"
#include "paths.h"
#include "str.h"
#include "xalloc.h"

char *path_join(const char *root, const char *rel)
{
	struct str *s = str_new(128, PATH_JOIN_MAX);
	char *r;

	if (str_printf(s, "%s/%s", root, rel) < 0)
		log_panic(NULL, "path too long: %s/%s", root, rel);
	r = xstrdup(str_c(s));
	str_free(&s);
	return r;
}

const char *path_libexec_dirs(void)
{
	const char *dirs = getenv("TERN_LIBEXECDIR");

	return dirs != NULL && *dirs != '\0' ? dirs : TERN_LIBEXECDIR;
}

char *path_find_program(const char *name)
{
	const char *dirs = path_libexec_dirs();
	struct str *path = str_new(256, PATH_JOIN_MAX);
	char *r = NULL;

	while (*dirs != '\0' && r == NULL) {
		size_t n = strcspn(dirs, ":");

		str_clear(path);
		if (n > 0 && str_append(path, dirs, n) == 0 &&
		    str_printf(path, "/%s", name) == 0 &&
		    access(str_c(path), X_OK) == 0)
			r = xstrdup(str_c(path));
		dirs += n;
		if (*dirs == ':')
			dirs++;
	}
	str_free(&path);
	return r;
}
