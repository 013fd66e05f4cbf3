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
:func:`mmflamingo.evaluation.demo_selection.save_rices_features`, with the
file of each feature and a fingerprint of what made it (the vision
encoder's weights and how media are loaded): ``--reuse`` takes the features
of files already in such outputs (another task's support set over the same
images, say) instead of encoding them again.

OpenFlamingo's RICES ranks by a separate CLIP model's image embedding (the
projected CLS token, ViT-B/32 by default); here the Flamingo's own frozen
vision encoder is used, so no second model is needed. The two rankings are
close but not identical.
"""
import argparse
import hashlib
import json
import warnings
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.config import Config, DictAction
from mmengine.dataset import Compose, pseudo_collate
from mmengine.utils import ProgressBar

import mmflamingo.datasets.eval_datasets  # noqa: F401 (registers them)
from mmflamingo.apis import init_model
from mmflamingo.datasets.transforms import media_pipeline
from mmflamingo.evaluation.demo_selection import (load_rices_features,
                                                  save_rices_features)
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
        '--reuse',
        nargs='+',
        default=[],
        metavar='FILE',
        help='outputs of this tool whose features of the same files, by the '
        'same vision encoder and media loading, are taken over (those of a '
        '--fp16 file with its rounding)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries')
    return parser.parse_args(argv)


def encoder_fingerprint(model: torch.nn.Module,
                        pipeline: Optional[list] = None) -> str:
    """What a feature depends on: the vision encoder's weights (a sha256)
    and how media are loaded."""
    digest = hashlib.sha256()
    for name, tensor in model.backbone.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(
            torch.uint8).numpy().tobytes())
    return json.dumps(
        dict(
            backbone=digest.hexdigest(),
            pipeline=repr(
                pipeline or media_pipeline(model.backbone.image_size))),
        sort_keys=True)


def reusable_features(files: List[str],
                      encoder: str) -> Dict[str, torch.Tensor]:
    """The features by medium file of ``files`` (outputs of this tool).

    A file whose features cannot stand for this run's (made by another
    vision encoder or media loading, e.g. a video task's, or keeping no
    media files) is left out with a warning that names it and says why.
    """
    known: Dict[str, torch.Tensor] = {}
    for path in files:
        cache = load_rices_features(path)
        why = None
        if 'media' not in cache:
            why = ('it keeps no media files to reuse by (written before '
                   '--reuse existed)')
        elif cache['encoder'] != encoder:
            why = ('it was computed by another vision encoder or media '
                   'loading than this run')
        if why is not None:
            warnings.warn(f'--reuse {path}: not reused: {why}')
            continue
        for medium, feature in zip(cache['media'], cache['features']):
            if medium is not None:
                known[medium] = feature.float()
    return known


@torch.no_grad()
def compute_features(
    model: torch.nn.Module,
    dataset,
    batch_size: int,
    pipeline: Optional[list] = None,
    known: Optional[Dict[str, torch.Tensor]] = None
) -> Tuple[torch.Tensor, list, list]:
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
        known (dict[str, Tensor], optional): Features already computed, by
            medium file (:func:`reusable_features`): not encoded again.

    Returns:
        tuple[Tensor, list, list]: ``(N, D)`` float32 features, the N ids
        and the file of each feature (None where the medium is not a
        file); a video's is the mean over its frames' patches. Samples that
        share their first medium (VQA's questions about one image) share
        its feature: each file is encoded once.
    """
    known = known or {}
    pipeline = Compose(pipeline or media_pipeline(model.backbone.image_size))
    keys, rows, files, unique = [], [], [], {}  # unique: medium -> its row
    for idx in range(len(dataset)):
        info = dataset.get_data_info(idx)
        keys.append(info['sample_id'])
        medium = info['media'][0]
        name = medium if isinstance(medium, str) else ('sample', idx)
        files.append(medium if isinstance(medium, str) else None)
        rows.append(unique.setdefault(name, len(unique)))
    media = list(unique)
    todo = [medium for medium in media if medium not in known]
    computed = {}
    progress = ProgressBar(len(todo)) if todo else None
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        packed = [pipeline(dict(media=[medium], text='')) for medium in batch]
        images = model.data_preprocessor(pseudo_collate(packed))['images']
        patches = model.backbone(images)  # (B, 1, T, P, D)
        pooled = patches[:, 0].float().mean(dim=(1, 2))  # (B, D)
        pooled = torch.nn.functional.normalize(pooled, dim=-1).cpu()
        computed.update(zip(batch, pooled))
        for _ in packed:
            progress.update()
    print(f'\n{len(media) - len(todo)} of {len(media)} media taken from '
          f'--reuse, {len(todo)} encoded')
    features = torch.stack(
        [known[m] if m in known else computed[m] for m in media])
    return features[torch.tensor(rows)], keys, files


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
    pipeline = (cfg.get('test_cfg') or {}).get('media_pipeline')
    encoder = encoder_fingerprint(model, pipeline)
    features, keys, files = compute_features(
        model, dataset, args.batch_size, pipeline,
        reusable_features(args.reuse, encoder))
    if args.fp16:
        features = features.half()
    save_rices_features(args.out, features, keys,
                        f'{args.config} (checkpoint: {args.checkpoint})',
                        files, encoder)
    print(f'\nsaved {tuple(features.shape)} features of {args.split} '
          f'({key}) to {args.out}')


if __name__ == '__main__':
    main()
