#!/usr/bin/env bash
# Set up (venv + install with test extras + the browser for the viewer's tests) and run the
# whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${OCTGUIDE_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# Exact versions from the lock (scripts/lock.sh refreshes it), so every machine tests the same wheels.
"$venv/bin/python" -m pip install -q -c requirements-test.lock ".[test,hospital,fleet]"
# The viewer's browser tests drive Debian's Chromium (never a downloaded browser). Install it
# where this user can; elsewhere those tests skip (CI sets OCTGUIDE_REQUIRE_BROWSER=1: they fail).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
    >/dev/null 2>&1 || echo "test.sh: chromium could not be installed; the browser tests will skip"
fi
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
