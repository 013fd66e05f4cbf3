#!/usr/bin/env bash
# Create (or reuse) the project's virtualenv and install mmflamingo into it.
#
# Idempotent: a stamp file inside the venv records a sha256 of the
# requirement files, setup.py and this script; when it matches, nothing is
# installed and the script returns in well under a second.
#
# Environment:
#   MMFLAMINGO_VENV          venv location (default: <repo>/.venv)
#   MMFLAMINGO_PYTHON        interpreter used to create the venv (default:
#                            python3)
#   MMFLAMINGO_TRANSFORMERS  transformers version to install, within the
#                            range of requirements/runtime.txt (default:
#                            5.25.0, the newest tested); .ci/run also
#                            tests 4.51.3, in .venv-tf4
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="${MMFLAMINGO_VENV:-$ROOT/.venv}"
PYTHON="${MMFLAMINGO_PYTHON:-python3}"
TRANSFORMERS="${MMFLAMINGO_TRANSFORMERS:-5.25.0}"
STAMP="$VENV/.mmflamingo-installed"
START=$SECONDS

log() { echo "[setup_env +$((SECONDS - START))s] $*"; }

if [[ ! -x "$VENV/bin/python" ]]; then
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
        echo "[setup_env] $PYTHON is $("$PYTHON" -V 2>&1); need Python >= 3.10" \
            "(set MMFLAMINGO_PYTHON)" >&2
        exit 1
    fi
    log "creating $VENV with $("$PYTHON" -V 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"

# Everything that decides what gets installed, plus where (an editable
# install records the absolute repo path).
FINGERPRINT="$(
    {
        echo "$ROOT"
        echo "transformers==$TRANSFORMERS"
        "$PY" -V 2>&1
        cat requirements/*.txt setup.py tools/setup_env.sh
    } | "$PY" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())'
)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$FINGERPRINT" ]]; then
    log "up to date: $VENV"
    exit 0
fi
rm -f "$STAMP"

PIP=("$PY" -m pip install --quiet)

log "upgrading pip, setuptools<81, wheel"
"${PIP[@]}" --upgrade pip 'setuptools<81' wheel

# One resolver run for all files, so no later file silently moves a pin of an
# earlier one. DeepSpeed ships only an sdist, built in pip's isolated env
# where torch is absent: an inherited DS_BUILD_OPS=1 makes that build assert,
# so force 0 (ops are JIT-built at first use instead).
log "installing requirements/{runtime,mminstall,tests,optional}.txt" \
    "with transformers==$TRANSFORMERS"
DS_BUILD_OPS=0 "${PIP[@]}" "transformers==$TRANSFORMERS" \
    -r requirements/runtime.txt \
    -r requirements/mminstall.txt \
    -r requirements/tests.txt \
    -r requirements/optional.txt

# OpenFlamingo's metadata pins torch==2.0.1: take the code, not its pins.
log "installing requirements/reference.txt (--no-deps)"
"${PIP[@]}" --no-deps -r requirements/reference.txt

# setuptools<81 and wheel are already in the venv, so skip the isolated build
# env (which would fetch the newest setuptools on every run).
# PYTHONWARNINGS hides setuptools' generic "Editable installation" banner.
log "installing mmflamingo in editable mode"
PYTHONWARNINGS=ignore::UserWarning \
    "${PIP[@]}" --no-deps --no-build-isolation -e .

echo "$FINGERPRINT" >"$STAMP"
log "done: $VENV (activate with: source $VENV/bin/activate)"
