#!/usr/bin/env bash
# Set up (venv + install with test extras) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${OCTGUIDE_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q ".[test]"
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
