"""Convert an OpenFlamingo v2 ``checkpoint.pt`` to an mmflamingo state dict.

Usage::

    python tools/model_converters/openflamingo_to_mmflamingo.py \\
        data/checkpoints/OpenFlamingo-3B-vitl-mpt1b/checkpoint.pt \\
        data/checkpoints/openflamingo-3b_mmflamingo.pth

The output is a plain dict of tensors (``torch.load(weights_only=True)``
reads it): give it as ``model.checkpoint`` in a config. The vision encoder
and the frozen LM are not in it; they load from their own pretrained
directories.
"""
import argparse
import os
import os.path as osp
from collections import Counter

import torch

from mmflamingo.models.utils.openflamingo import (
    convert_openflamingo_state_dict, read_openflamingo_checkpoint)


def parse_args():
    parser = argparse.ArgumentParser(
        description='Convert an OpenFlamingo v2 checkpoint (released state '
        'dict or training checkpoint) to an mmflamingo state dict.')
    parser.add_argument('src', help='OpenFlamingo checkpoint.pt')
    parser.add_argument('dst', help='output .pth')
    parser.add_argument(
        '--decoder-layers-attr',
        default=None,
        help='dotted path of the LM decoder layers (e.g. model.layers); '
        'only needed when the checkpoint holds them as old_decoder_blocks '
        'alone')
    return parser.parse_args()


def _group(key: str) -> str:
    if key.startswith('neck.'):
        return 'perceiver (neck)'
    if key.startswith('head.xattn_blocks.'):
        return 'gated cross-attention (head.xattn_blocks)'
    return 'language model (head.lm)'


def main():
    args = parse_args()
    source = read_openflamingo_checkpoint(args.src)
    converted = convert_openflamingo_state_dict(
        source, decoder_layers_attr=args.decoder_layers_attr)
    num_vision = sum(
        key.removeprefix('module.').startswith('vision_encoder.')
        for key in source)
    num_duplicates = len(source) - num_vision - len(converted)

    dst_dir = osp.dirname(osp.abspath(args.dst))
    os.makedirs(dst_dir, exist_ok=True)
    torch.save(converted, args.dst)

    print(f'Read {len(source)} tensors from {args.src}')
    for group, count in sorted(Counter(map(_group, converted)).items()):
        print(f'  {group}: {count}')
    print(f'  dropped vision encoder tensors: {num_vision}')
    print(f'  merged duplicate copies: {num_duplicates}')
    print(f'Saved {len(converted)} tensors to {args.dst}')


if __name__ == '__main__':
    main()
