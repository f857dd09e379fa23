#!/usr/bin/env bash
# Set up (venv + install) and run the main job on the CPU: render the bundled phantom pullback
# (scenario "calcified", seed 1) to a DICOM IVOCT file, then replay it through a real engine
# over ZeroMQ and print the guidance. Results land in $OCTGUIDE_OUT (default ./out).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${OCTGUIDE_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# Exact versions from the lock (scripts/lock.sh refreshes it).
"$venv/bin/python" -m pip install -q -c requirements.lock .
out="${OCTGUIDE_OUT:-out}"
mkdir -p "$out"
"$venv/bin/octguide" phantom calcified --seed 1 --out "$out/calcified.dcm" --out "$out/calcified.oct.h5" --png "$out/previews"
"$venv/bin/octguide" replay "$out/calcified.dcm" --out "$out/replay"
