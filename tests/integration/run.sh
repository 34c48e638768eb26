#!/bin/sh
# Runs the integration tests (pytest) against this build tree.  Extra pytest
# arguments come from TERN_PYTEST_ARGS (e.g. "-k reload -x");
# TERN_INTEGRATION_FILES names the only test files to run (e.g.
# "test_master.py test_config.py", as make distcheck does).
set -u
src=${TERN_TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${TERN_TOP_BUILDDIR:-$src}
export TERN_TOP_SRCDIR="$src" TERN_TOP_BUILDDIR="$build"
export PYTHONDONTWRITEBYTECODE=1
mkdir -p "$build/tests/integration"
targets="$src/tests/integration"
if [ -n "${TERN_INTEGRATION_FILES:-}" ]; then
	targets=""
	for f in $TERN_INTEGRATION_FILES; do
		targets="$targets $src/tests/integration/$f"
	done
fi
# Debian's interpreter: the first python3 on PATH may lack pytest.
# shellcheck disable=SC2086
/usr/bin/python3 -m pytest -p no:cacheprovider -q -rfE \
	--junitxml="$build/tests/integration/junit.xml" \
	${TERN_PYTEST_ARGS:-} $targets
rc=$?
# 5 = no tests collected: that is a failure here.
[ "$rc" -eq 5 ] && echo "no integration tests were collected" >&2
exit "$rc"
