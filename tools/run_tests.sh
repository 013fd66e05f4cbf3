#!/usr/bin/env bash
# Set up the environment (tools/setup_env.sh, a no-op when up to date) and run
# the test suite on 2 workers. Extra arguments go to pytest, e.g.
#   bash tools/run_tests.sh tests/test_models -k perceiver -n 0
# Without a path, pytest runs `testpaths` from setup.cfg (tests/).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash tools/setup_env.sh
VENV="${MMFLAMINGO_VENV:-$ROOT/.venv}"

status=0
"$VENV/bin/python" -m pytest -n 2 "$@" || status=$?
if [[ $status -eq 5 ]]; then
    echo "[run_tests] FAILED: pytest collected no tests (exit 5);" \
        "check the paths and -k/-m filters." >&2
fi
exit "$status"
