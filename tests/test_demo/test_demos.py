"""The demo scripts run end to end on a tiny random Flamingo.

The model is the shapes inference config with its model swapped for a tiny
one and trained weights saved next to it; each demo runs as a subprocess.
"""
import importlib.util
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from mmflamingo.apis import init_model
from mmflamingo.datasets.transforms import LoadVideoFrames
from mmflamingo.testing import tiny_flamingo_config

ROOT = Path(__file__).parents[2]
DEMO_ASSETS = ['demo_shapes.png', 'demo_shapes_video.mp4']


@pytest.fixture(scope='module')
def tiny(tokenizer_dir, tmp_path_factory):
    """Configs (caption, vqa), a checkpoint, two images and a video."""
    root = tmp_path_factory.mktemp('demo')
    configs = {}
    for task in ('caption', 'vqa'):
        cfg = Config.fromfile(ROOT /
                              f'configs/shapes/flamingo-tiny_shapes_{task}.py')
        cfg.model = dict(
            tiny_flamingo_config(tokenizer_dir, image_size=64),
            task=task,
            generation_cfg=dict(max_new_tokens=4))
        configs[task] = str(root / f'{task}.py')
        cfg.dump(configs[task])
    torch.manual_seed(0)
    torch.save(init_model(configs['caption']).state_dict(), root / 'tiny.pth')
    images = []
    for i, colour in enumerate(['red', 'blue']):
        images.append(str(root / f'{i}.png'))
        Image.new('RGB', (64, 64), colour).save(images[-1])
    video = str(root / 'clip.mp4')
    with av.open(video, 'w') as container:
        stream = container.add_stream('mpeg4', rate=1)
        stream.width = stream.height = 64
        stream.pix_fmt = 'yuv420p'
        for i in range(8):
            frame = np.full((64, 64, 3), 30 * i, np.uint8)
            container.mux(
                stream.encode(av.VideoFrame.from_ndarray(frame, 'rgb24')))
        container.mux(stream.encode())
    return dict(
        configs=configs,
        checkpoint=str(root / 'tiny.pth'),
        images=images,
        video=video)


def run_demo(script: str, *args: str) -> str:
    """Run ``demo/<script>`` and return what it printed."""
    out = subprocess.run([sys.executable, f'demo/{script}', *args],
                         cwd=ROOT,
                         check=True,
                         capture_output=True,
                         text=True,
                         timeout=120)
    return out.stdout


def test_image_demo_answers_a_question(tiny):
    out = run_demo('image_demo.py', tiny['images'][0], '--config',
                   tiny['configs']['vqa'], '--checkpoint', tiny['checkpoint'],
                   '--question', 'what color is the square?')
    assert 'prompt: <image>Question: what color is the square? Short ' \
        'answer:\n' in out
    assert '\nanswer: ' in out


def test_fewshot_demo_prints_the_prompt_and_output(tiny):
    demo, query = tiny['images']
    out = run_demo('fewshot_demo.py', tiny['configs']['caption'],
                   '--checkpoint', tiny['checkpoint'], '--demos', demo,
                   'a red square.', query, 'a blue square.', '--query', query)
    # the config's fewshot_prompt: the shapes world's, as evaluated
    prompt = ('<image>Output: a red square.<|endofchunk|>'
              '<image>Output: a blue square.<|endofchunk|><image>Output:')
    assert f'prompt: {prompt}\n' in out
    assert '\ngenerated: ' in out


def test_fewshot_demo_defaults_to_openflamingos_prompt(tiny, tmp_path):
    cfg = Config.fromfile(tiny['configs']['caption'])
    cfg.pop('fewshot_prompt')
    cfg.dump(tmp_path / 'caption.py')
    demo, query = tiny['images']
    out = run_demo('fewshot_demo.py', str(tmp_path / 'caption.py'),
                   '--checkpoint', tiny['checkpoint'], '--demos', demo,
                   'a red square.', '--query', query)
    assert ('prompt: <image>Output:a red square.<|endofchunk|>\n'
            '<image>Output:\n') in out


def test_video_demo_captions_a_video_file(tiny):
    out = run_demo('video_demo.py', tiny['video'], '--config',
                   tiny['configs']['caption'], '--checkpoint',
                   tiny['checkpoint'])
    assert 'prompt: <image>Output:\n' in out
    assert '\ncaption: ' in out


@pytest.mark.parametrize('name', DEMO_ASSETS)
def test_demo_assets_are_small(name):
    path = ROOT / 'demo' / name
    assert path.is_file(), 'make it with tools/misc/make_demo_assets.py'
    assert path.stat().st_size < 50_000


def test_make_demo_assets_is_deterministic_and_small(tmp_path):
    pytest.importorskip('mmflamingo.shapes_world')
    spec = importlib.util.spec_from_file_location(
        'make_demo_assets', ROOT / 'tools/misc/make_demo_assets.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    captions = tool.make_demo_assets(str(tmp_path / 'a'), seed=3)
    assert sorted(captions) == sorted(tool.IMAGES + [tool.VIDEO])
    assert all(isinstance(c, str) and c for c in captions.values())
    assert tool.make_demo_assets(str(tmp_path / 'b'), seed=3) == captions
    for name in captions:
        first, again = (tmp_path / 'a' / name), (tmp_path / 'b' / name)
        assert first.read_bytes() == again.read_bytes(), name
        assert first.stat().st_size < 50_000
    frames = LoadVideoFrames(num_frames=8).load(
        str(tmp_path / 'a' / tool.VIDEO))
    assert frames[0].shape == (64, 64, 3)
    assert Image.open(tmp_path / 'a' / tool.IMAGES[0]).size == (64, 64)
