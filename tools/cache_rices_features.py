"""Cache the image features RICES ranks demos by.

Usage::

    python tools/cache_rices_features.py CONFIG --split support --out FILE

Builds the model of CONFIG (``mmflamingo.apis.init_model``) and the dataset
of ``rices_dataset`` in CONFIG (``--split support``; ``--split query`` reads
``rices_query_dataset``), an evaluation dataset whose samples have ``media``
and ``sample_id`` (:mod:`mmflamingo.datasets.eval_datasets`). Each sample's
first image goes through the model's vision encoder; its patch tokens,
mean-pooled and L2-normalised, are the feature. The features and the
samples' ids are saved with
:func:`mmflamingo.evaluation.demo_selection.save_rices_features`.

OpenFlamingo's RICES ranks by a separate CLIP model's image embedding (the
projected CLS token, ViT-B/32 by default); here the Flamingo's own frozen
vision encoder is used, so no second model is needed. The two rankings are
close but not identical.
"""
import argparse
from typing import List, Optional, Tuple

import torch
from mmengine.config import Config, DictAction
from mmengine.dataset import Compose, pseudo_collate
from mmengine.utils import ProgressBar

import mmflamingo.datasets.eval_datasets  # noqa: F401 (registers them)
from mmflamingo.apis import init_model
from mmflamingo.datasets.transforms import media_pipeline
from mmflamingo.evaluation.demo_selection import save_rices_features
from mmflamingo.evaluation.fewshot_settings import OLD_KEY_HELP
from mmflamingo.registry import DATASETS

# the config key of the dataset of each split
SPLIT_KEYS = {'support': 'rices_dataset', 'query': 'rices_query_dataset'}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Cache the vision features RICES selects demos by')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--split',
        choices=sorted(SPLIT_KEYS),
        default='support',
        help='support: the dataset of `rices_dataset`; query: of '
        '`rices_query_dataset`')
    parser.add_argument('--out', required=True, help='the output file')
    parser.add_argument('--checkpoint', help='checkpoint of the model')
    parser.add_argument(
        '--batch-size', type=int, default=64, help='images per forward')
    parser.add_argument(
        '--device',
        default='cuda' if torch.cuda.is_available() else 'cpu',
        help='defaults to cuda when available')
    parser.add_argument(
        '--fp16',
        action='store_true',
        help='store float16 features (half the file size)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries')
    return parser.parse_args(argv)


@torch.no_grad()
def compute_features(
        model: torch.nn.Module,
        dataset,
        batch_size: int,
        pipeline: Optional[list] = None) -> Tuple[torch.Tensor, list]:
    """Mean-pooled, L2-normalised vision features of every sample.

    Args:
        model (nn.Module): A Flamingo (its ``backbone`` and
            ``data_preprocessor`` are used).
        dataset: A dataset whose data infos have ``media`` and
            ``sample_id``.
        batch_size (int): Media per forward.
        pipeline (list, optional): How a medium is loaded, as the few-shot
            evaluation loads it (``test_cfg.media_pipeline``, e.g.
            ``LoadVideoFrames`` for videos). Defaults to the image pipeline.

    Returns:
        tuple[Tensor, list]: ``(N, D)`` float32 features and the N ids; a
        video's is the mean over its frames' patches. Samples that share
        their first medium (VQA's questions about one image) share its
        feature: each file is encoded once.
    """
    pipeline = Compose(pipeline or media_pipeline(model.backbone.image_size))
    keys, rows, unique = [], [], {}  # unique: first medium -> its row
    for idx in range(len(dataset)):
        info = dataset.get_data_info(idx)
        keys.append(info['sample_id'])
        medium = info['media'][0]
        name = medium if isinstance(medium, str) else ('sample', idx)
        rows.append(unique.setdefault(name, len(unique)))
    media = list(unique)
    features = []
    progress = ProgressBar(len(media))
    for start in range(0, len(media), batch_size):
        packed = [
            pipeline(dict(media=[medium], text=''))
            for medium in media[start:start + batch_size]
        ]
        images = model.data_preprocessor(pseudo_collate(packed))['images']
        patches = model.backbone(images)  # (B, 1, T, P, D)
        pooled = patches[:, 0].float().mean(dim=(1, 2))  # (B, D)
        features.append(torch.nn.functional.normalize(pooled, dim=-1).cpu())
        for _ in packed:
            progress.update()
    return torch.cat(features)[torch.tensor(rows)], keys


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if 'fewshot_eval' in cfg:
        raise KeyError(f'{args.config}: {OLD_KEY_HELP}')
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    key = SPLIT_KEYS[args.split]
    if key not in cfg:
        raise KeyError(f'{args.config} has no `{key}` (the dataset of the '
                       f'{args.split} split)')
    model = init_model(cfg, args.checkpoint, device=args.device)
    dataset = DATASETS.build(cfg[key])
    if len(dataset) == 0:
        raise ValueError(f'the {args.split} dataset of {args.config} is '
                         'empty')
    features, keys = compute_features(model, dataset, args.batch_size,
                                      (cfg.get('test_cfg')
                                       or {}).get('media_pipeline'))
    if args.fp16:
        features = features.half()
    save_rices_features(args.out, features, keys,
                        f'{args.config} (checkpoint: {args.checkpoint})')
    print(f'\nsaved {tuple(features.shape)} features of {args.split} '
          f'({key}) to {args.out}')


if __name__ == '__main__':
    main()
