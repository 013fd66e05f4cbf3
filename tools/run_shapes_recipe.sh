#!/usr/bin/env bash
# The main job: set up the environment, then run the whole Flamingo recipe in
# miniature on the shapes world (generate the world, pretrain the vision
# encoder and the LM, train Flamingo, evaluate few-shot) and print the results
# table. Finished stages are reused on a re-run. Options go to
# tools/shapes_recipe.py (e.g. --redo flamingo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
source "${MMFLAMINGO_VENV:-.venv}/bin/activate"
python tools/shapes_recipe.py "$@"
