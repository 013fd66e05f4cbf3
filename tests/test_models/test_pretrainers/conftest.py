"""A miniature shapes world on disk, in the formats the recipe reads, a BPE
tokenizer trained on its text, and ``tools/train.py`` in a subprocess."""
import glob
import itertools
import json
import os
import os.path as osp
import random
import subprocess
import sys
from typing import List, Sequence

import pytest
from PIL import Image, ImageDraw

from mmflamingo.models.utils.bpe import train_bpe_tokenizer

REPO_ROOT = osp.dirname(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
COLOURS = ('red', 'green', 'blue', 'yellow')
SHAPES = ('circle', 'square', 'triangle')
PLACES = {'left': (16, 32), 'right': (48, 32), 'center': (32, 32)}


def draw(colour: str, shape: str, place: str, size: int = 64) -> Image.Image:
    """One shape on a white ``size`` x ``size`` image."""
    image = Image.new('RGB', (size, size), 'white')
    pen = ImageDraw.Draw(image)
    x, y = PLACES[place]
    r = 10
    if shape == 'circle':
        pen.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    elif shape == 'square':
        pen.rectangle((x - r, y - r, x + r, y + r), fill=colour)
    else:
        pen.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=colour)
    return image


def write_shapes_world(root: str, seed: int = 0) -> str:
    """Images, Karpathy captions, pairs.jsonl and text/corpus.txt.

    One image per (colour, shape, place); a sixth of them are the test split.
    """
    rng = random.Random(seed)
    os.makedirs(osp.join(root, 'images'), exist_ok=True)
    os.makedirs(osp.join(root, 'captions'), exist_ok=True)
    os.makedirs(osp.join(root, 'text'), exist_ok=True)
    entries, pairs, corpus = [], [], []
    scenes = itertools.product(COLOURS, SHAPES, PLACES)
    for i, (colour, shape, place) in enumerate(scenes):
        name = f'{i:04d}.png'
        draw(colour, shape, place).save(osp.join(root, 'images', name))
        captions = [
            f'a {colour} {shape} on the {place}.',
            f'a {colour} {shape}.',
            f'there is a {shape} on the {place}.',
            f'the {shape} is {colour}.',
            f'one {colour} {shape} at the {place}.',
        ]
        entries.append(
            dict(
                filepath='',
                filename=name,
                split='test' if i % 6 == 5 else 'train',
                cocoid=i,
                sentences=[
                    dict(raw=c, tokens=c[:-1].split()) for c in captions
                ]))
        pairs.append(dict(image=name, caption=captions[0]))
        corpus.append(' '.join(rng.sample(captions, 3)) +
                      f' What colour is the {shape}? {colour}.')
    with open(osp.join(root, 'captions', 'karpathy_shapes.json'), 'w') as f:
        json.dump(dict(images=entries), f)
    with open(osp.join(root, 'pairs.jsonl'), 'w') as f:
        f.writelines(json.dumps(p) + '\n' for p in pairs)
    with open(osp.join(root, 'text', 'corpus.txt'), 'w') as f:
        f.writelines(doc + '\n' for doc in corpus)
    return root


@pytest.fixture(scope='session')
def shapes_root(tmp_path_factory):
    """The miniature world's root directory."""
    return write_shapes_world(str(tmp_path_factory.mktemp('shapes')))


@pytest.fixture(scope='session')
def shapes_tokenizer(shapes_root, tmp_path_factory):
    """A BPE tokenizer directory trained on the world's corpus."""
    out_dir = str(tmp_path_factory.mktemp('shapes_tokenizer'))
    train_bpe_tokenizer(
        osp.join(shapes_root, 'text', 'corpus.txt'), out_dir, vocab_size=320)
    return out_dir


@pytest.fixture(scope='session')
def recipe_world(tmp_path_factory):
    """The recipe's own tiny world and a tokenizer with the Flamingo tokens
    (what the LM stages read): ``(root, tokenizer directory)``."""
    from mmflamingo.shapes_world import write_shapes_world as write_world
    root = str(tmp_path_factory.mktemp('recipe_world'))
    paths = write_world(root, seed=0, scale='tiny')
    out_dir = osp.join(root, 'tokenizer')
    train_bpe_tokenizer(paths['corpus'], out_dir, flamingo_tokens=True)
    return root, out_dir


def _run_train(config: str, work_dir: str,
               options: Sequence[str]) -> List[dict]:
    """Run ``tools/train.py`` on ``config`` with ``--cfg-options``; assert it
    succeeds and return its per-iteration scalars (``scalars.json`` rows).
    """
    command = [
        sys.executable, 'tools/train.py',
        osp.join(REPO_ROOT, config), '--work-dir', work_dir, '--cfg-options',
        'log_processor.window_size=1', 'default_hooks.logger.interval=1',
        *options
    ]
    # the models are tiny: more threads only fight over the cores
    env = dict(os.environ, OMP_NUM_THREADS='1')
    process = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert process.returncode == 0, (process.stdout + process.stderr)[-6000:]
    [scalars] = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(scalars) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope='session')
def run_train():
    """``run_train(config, work_dir, options)``: see :func:`_run_train`."""
    return _run_train
