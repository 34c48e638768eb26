/* privs.c: see privs.h. */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include "compat.h"
#include "privs.h"
#include "str.h"

int privs_drop(const char *user, struct str *error)
{
	struct passwd *pw;

	if (geteuid() != 0 || user[0] == '\0')
		return 0;
	pw = getpwnam(user);
	if (pw == NULL)
		return str_setf(error, "user '%s' does not exist: create it "
				"(ternctl setup does) or set user = in "
				"tern.conf", user);
	if (pw->pw_uid == 0)
		return str_setf(error, "user '%s' in tern.conf is root: name "
				"an unprivileged account", user);
	if (initgroups(pw->pw_name, pw->pw_gid) < 0 ||
	    setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0)
		return str_setf(error, "cannot switch to user %s: %s", user,
				strerror(errno));
	if (setuid(0) == 0)
		return str_setf(error, "root could be regained after "
				"switching to %s", user);
	return 0;
}
