"""Generate the shapes world: images, captions, VQA, the binding task,
interleaved documents, image- and video-text pairs and a text corpus.

Usage: python tools/misc/make_shapes_world.py [--out data/shapes] [--seed 0]
[--scale {tiny,default}] [--force]. A complete world of the same seed and
scale is kept as it is unless ``--force``.
"""
import argparse
import json
import time
from typing import List, Optional

from mmflamingo.shapes_world import SCALES, write_shapes_world


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/shapes', help='the root')
    parser.add_argument('--seed', type=int, default=0, help='world seed')
    parser.add_argument(
        '--scale', default='default', choices=sorted(SCALES), help='size')
    parser.add_argument(
        '--force', action='store_true', help='regenerate a complete world')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    paths = write_shapes_world(
        args.out,
        seed=args.seed,
        scale=args.scale,
        force=args.force,
        progress=True)
    with open(paths['manifest'], encoding='utf-8') as f:
        manifest = json.load(f)
    print(f'shapes world (seed {manifest["seed"]}, scale '
          f'{manifest["scale"]}) in {paths["root"]}, '
          f'{time.perf_counter() - start:.1f} s:')
    for key, count in manifest['counts'].items():
        print(f'  {key:24s} {count}')


if __name__ == '__main__':
    main()
