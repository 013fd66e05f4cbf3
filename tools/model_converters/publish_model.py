"""Strip a training checkpoint to the weights a model needs for inference.

Usage::

    python tools/model_converters/publish_model.py IN.pth OUT.pth

mmengine's checkpoints also hold the optimizer state and the message hub;
the published file keeps ``state_dict`` and ``meta`` (with the source file
and its iteration) only, loads with ``weights_only=True`` and is what
``init_model(config, checkpoint)`` and ``tools/test.py`` take.
"""
import argparse
import os
import os.path as osp

import torch

from mmflamingo.checkpoint_io import (allow_mmengine_checkpoints,
                                      load_checkpoint_file)


def publish_checkpoint(src: str, dst: str) -> str:
    """Write ``src``'s ``state_dict`` (and a small ``meta``) to ``dst``.

    Args:
        src (str): A checkpoint saved by mmengine's ``CheckpointHook``.
        dst (str): The output file (its directory is created).

    Returns:
        str: ``dst``.

    Raises:
        ValueError: If ``src`` holds no ``state_dict``.
    """
    allow_mmengine_checkpoints()
    checkpoint = load_checkpoint_file(src)
    if 'state_dict' not in checkpoint:
        raise ValueError(f'{src}: no "state_dict" in the checkpoint (keys: '
                         f'{sorted(checkpoint)[:8]})')
    meta = checkpoint.get('meta', {})
    published = dict(
        state_dict=checkpoint['state_dict'],
        meta=dict(
            source=osp.basename(src),
            iter=meta.get('iter'),
            mmflamingo_version=meta.get('mmflamingo_version')))
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save(published, dst)
    return dst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='the training checkpoint')
    parser.add_argument('dst', help='the published checkpoint')
    args = parser.parse_args()
    publish_checkpoint(args.src, args.dst)
    print(f'{args.src} -> {args.dst}')


if __name__ == '__main__':
    main()
