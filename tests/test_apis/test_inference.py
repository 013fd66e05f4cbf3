import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from mmengine.config import Config
from PIL import Image

from mmflamingo.apis import inference_model, init_model
from mmflamingo.testing import tiny_flamingo_config

ROOT = Path(__file__).parents[2]
DEMO_CONFIG = (
    ROOT / 'configs/flamingo/flamingo_tinyclip-tinyllama_random_demo.py')
PROMPT = ('<image>Output: a red circle.<|endofchunk|>'
          '<image>Output: a blue square.<|endofchunk|><image>Output:')


def _images(tmp_path, n=3):
    paths = []
    for i, colour in enumerate(['red', 'blue', 'green'][:n]):
        path = tmp_path / f'{i}.png'
        Image.new('RGB', (40, 30), colour).save(path)
        paths.append(str(path))
    return paths


def _config(tokenizer_dir):
    return Config(dict(model=tiny_flamingo_config(tokenizer_dir)))


def test_init_model_and_inference(tokenizer_dir, tmp_path):
    torch.manual_seed(0)
    model = init_model(_config(tokenizer_dir))
    assert not model.training
    paths = _images(tmp_path)
    result = inference_model(model, paths, PROMPT, max_new_tokens=5)
    assert isinstance(result.pred_caption, str)
    # the same inputs give the same text; arrays and paths are equivalent
    arrays = [np.asarray(Image.open(p).convert('RGB')) for p in paths]
    again = inference_model(model, arrays, PROMPT, max_new_tokens=5)
    assert again.pred_caption == result.pred_caption


def test_inference_video(tokenizer_dir):
    torch.manual_seed(0)
    model = init_model(_config(tokenizer_dir))
    frames = [
        np.random.RandomState(i).randint(0, 255, (32, 32, 3)).astype(np.uint8)
        for i in range(3)
    ]
    result = inference_model(
        model, [frames], '<image>Output:', max_new_tokens=3)
    assert isinstance(result.pred_caption, str)


def test_init_model_loads_checkpoint(tokenizer_dir, tmp_path, set_gates):
    torch.manual_seed(0)
    trained = init_model(_config(tokenizer_dir))
    set_gates(trained, 0.7)
    state = {
        k: v
        for k, v in trained.state_dict().items()
        if k.startswith(('neck.', 'head.xattn_blocks.'))
    }
    path = str(tmp_path / 'trained.pth')
    torch.save(state, path)
    torch.manual_seed(1)
    loaded = init_model(_config(tokenizer_dir), checkpoint=path)
    for key, value in state.items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_demo_script_runs_the_demo_config(tmp_path):
    assets = tmp_path / 'assets'
    subprocess.run(
        [sys.executable, 'tools/misc/make_tiny_assets.py',
         str(assets)],
        cwd=ROOT,
        check=True)
    images = sorted(str(p) for p in (assets / 'images').glob('*.png'))[:3]
    out = subprocess.run([
        sys.executable, 'demo/fewshot_demo.py',
        str(DEMO_CONFIG), '--media', *images, '--prompt', PROMPT,
        '--max-new-tokens', '4', '--cfg-options',
        f'model.tokenizer.pretrained={assets / "tokenizer"}'
    ],
                         cwd=ROOT,
                         check=True,
                         capture_output=True,
                         text=True)
    assert 'generated:' in out.stdout
