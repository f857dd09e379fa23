#!/usr/bin/env bash
# Refresh the dependency locks (exact versions that CI and the README's two commands install):
#   requirements-test.lock  octguide + [test] + [hospital] + [fleet] + onnx  (scripts/test.sh, .ci/run)
#   requirements.lock       octguide                   (scripts/main.sh), the same versions
# Versions already in the locks are kept; `scripts/lock.sh --upgrade` moves every package to its
# newest release (then run the whole suite before committing the new locks). Needs uv
# (`python -m pip install uv`); torch is not locked: .ci/run installs the CPU wheel itself.
set -euo pipefail
cd "$(dirname "$0")/.."
uv="${UV:-$(command -v uv || echo "${OCTGUIDE_VENV:-.venv}/bin/uv")}"
common=(--universal --python-version 3.11 --quiet "$@")
echo "onnx>=1.15" | "$uv" pip compile pyproject.toml - --extra test --extra hospital --extra fleet "${common[@]}" \
  --custom-compile-command "scripts/lock.sh" -o requirements-test.lock
"$uv" pip compile pyproject.toml -c requirements-test.lock "${common[@]}" \
  --custom-compile-command "scripts/lock.sh" -o requirements.lock
