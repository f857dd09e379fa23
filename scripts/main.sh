#!/usr/bin/env bash
# Set up (venv + install) and run the main job on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${OCTGUIDE_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q .
out="${OCTGUIDE_OUT:-out}"
mkdir -p "$out"
"$venv/bin/octguide" phantom calcified --seed 1 --out "$out/calcified.oct.h5" --out "$out/calcified.dcm" --png "$out/previews"
"$venv/bin/octguide" info "$out/calcified.dcm"
