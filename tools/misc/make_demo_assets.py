"""Make the demo assets with the shapes world's own renderer.

Usage::

    python tools/misc/make_demo_assets.py [--out-dir demo] [--seed 0]

Writes ``demo_shapes.png`` (a query image), ``demo_shapes_1.png`` and
``demo_shapes_2.png`` (demos) and ``demo_shapes_video.mp4`` (8 frames at
1 fps), a few KB each, and prints their captions, which
``demo/fewshot_demo.py`` takes with the demo images. The same seed gives
the same files.
"""
import argparse
import os
import os.path as osp
import random
from typing import Dict

from PIL import Image

from mmflamingo.datasets.transforms.video import write_video
from mmflamingo.shapes_world import (canonical_caption, render_scene,
                                     render_video, sample_scene, sample_shape)
from mmflamingo.shapes_world.language import video_caption
from mmflamingo.shapes_world.scenes import DIRECTIONS

IMAGES = ['demo_shapes.png', 'demo_shapes_1.png', 'demo_shapes_2.png']
VIDEO = 'demo_shapes_video.mp4'


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out-dir', default='demo', help='output folder')
    parser.add_argument('--seed', type=int, default=0, help='world seed')
    return parser.parse_args()


def make_demo_assets(out_dir: str, seed: int = 0) -> Dict[str, str]:
    """Write the assets; returns each file's caption by file name."""
    os.makedirs(out_dir, exist_ok=True)
    rng = random.Random(seed)
    captions = {}
    for name in IMAGES:
        scene = sample_scene(rng)
        Image.fromarray(render_scene(scene)).save(
            osp.join(out_dir, name), optimize=True)
        captions[name] = canonical_caption(scene)
    shape = sample_shape(rng)
    direction = rng.choice(sorted(DIRECTIONS))
    write_video(osp.join(out_dir, VIDEO), render_video(shape, direction))
    captions[VIDEO] = video_caption(shape.colour, shape.shape, direction)
    return captions


def main() -> None:
    args = parse_args()
    captions = make_demo_assets(args.out_dir, args.seed)
    for name, caption in captions.items():
        path = osp.join(args.out_dir, name)
        print(f'{path} ({osp.getsize(path)} bytes): {caption}')


if __name__ == '__main__':
    main()
