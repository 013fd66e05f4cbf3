#!/usr/bin/env bash
# The main job: set up the environment, then prompt the tiny Flamingo with
# two captioned images and a third to caption, printing the generated text.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
source "${MMFLAMINGO_VENV:-.venv}/bin/activate"
python tools/misc/make_tiny_assets.py work_dirs/tiny_assets
img=work_dirs/tiny_assets/images
echo "The tiny model has random weights: expect noise, not a caption."
python demo/fewshot_demo.py configs/flamingo/flamingo_tinyclip-tinyllama_random_demo.py \
    --media "$img/red_circle.png" "$img/blue_square.png" "$img/green_triangle.png" \
    --prompt '<image>Output: a red circle.<|endofchunk|><image>Output: a blue square.<|endofchunk|><image>Output:'
