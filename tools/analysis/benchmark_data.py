"""Time the interleaved-document loaders: streaming, indexed, OpenFlamingo's.

Writes MMC4 shards in OpenFlamingo's format (each document a ``KEY.json``
with ``text_list``, ``similarity_matrix`` and ``image_info`` entries holding
the images as ``image_base64``), which all three loaders read:
``StreamingWebDatasetInterleaved``, ``WebDatasetInterleaved`` (the tar
index, cached) and OpenFlamingo's own ``get_mmc4_dataset``
(``open_flamingo/train/data.py``, imported from the installed package). Each
document has ``--images`` JPEGs of ``--image-size`` px (photo-like, over
OpenFlamingo's 10 KB minimum) and more text than ``--max-tokens`` tokens
(cut to it). Reported, as the median and range of ``--trials`` trials in
which the loaders take turns (a different one first each trial):

- samples/s with ``--workers`` dataloader workers and batch
  ``--batch-size``, from the first batch to the end of one pass over the
  documents (what the workers sustain, not their start);
- start-up: seconds from building the loader to its first batch, on
  ``--startup-shards`` shards of ``--startup-samples`` documents (two
  ``--startup-image-size`` px images each, still over 10 KB: the time is
  listing, scanning or opening shards, not decoding), for each number of
  shards given; the indexed path both scanning the shards (its first run:
  the cached indexes are deleted before each trial) and reading its cached
  indexes (every later run). The shards were just written, so they are in
  the page cache.

The loaders are configured as in training: shuffled shards, their default
shuffle buffers (ours 1000 samples; OpenFlamingo's 5000, filled with 1000
before the first sample); no document has a single image, which
OpenFlamingo drops half of the time.
OpenFlamingo's loader (2.0.1) predates the end-of-shard markers of
webdataset 1.0: it is given the stream without them (one
``functools.partial`` of webdataset's ``tar_file_expander``), nothing else
is changed; its image transform is open_clip's evaluation transform at 224
px, built once outside the timings as its training script does. Our
loaders give uint8 images for the data preprocessor to normalise (on the
accelerator); OpenFlamingo's normalises float images in its workers.

Example:
    python tools/analysis/benchmark_data.py --trials 5
"""
import argparse
import base64
import functools
import io
import json
import os
import os.path as osp
import random
import statistics
import sys
import tempfile
import time
from types import SimpleNamespace
from typing import Callable, Dict, Iterable, List, Sequence

import numpy as np
import torch
from mmengine.dataset import DefaultSampler, pseudo_collate
from mmengine.registry import DefaultScope
from PIL import Image
from torch.utils.data import DataLoader
from webdataset import TarWriter
from webdataset.tariterators import tar_file_expander

import mmflamingo.datasets  # noqa: F401 (registers the datasets)
from mmflamingo.datasets.tar_shards import expand_braces, index_path
from mmflamingo.registry import DATASETS
from mmflamingo.testing import build_tiny_tokenizer
from mmflamingo.tokens import add_flamingo_tokens, build_tokenizer

WORDS = ('the a dog cat runs on beach under blue sky red house near tree '
         'small large green field with two birds over river').split()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--shards', type=int, default=8)
    parser.add_argument('--samples-per-shard', type=int, default=50)
    parser.add_argument('--images', type=int, default=5)
    parser.add_argument('--image-size', type=int, default=224)
    parser.add_argument('--max-tokens', type=int, default=256)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument(
        '--startup-shards', type=int, nargs='+', default=[100, 1000])
    parser.add_argument('--startup-samples', type=int, default=100)
    parser.add_argument('--startup-image-size', type=int, default=176)
    parser.add_argument('--trials', type=int, default=3)
    parser.add_argument(
        '--skip-startup', action='store_true', help='only the throughput')
    parser.add_argument('--work-dir', help='default: a temporary directory')
    return parser.parse_args()


def jpeg(rng: np.random.Generator, size: int) -> bytes:
    """A photo-like JPEG: smooth colour gradients plus noise."""
    ramp = np.linspace(0, 1, size)
    base = rng.uniform(0, 255, 3) * np.outer(ramp, ramp[::-1])[..., None]
    noise = rng.normal(0, 20, (size, size, 3))
    pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format='JPEG', quality=90)
    return buffer.getvalue()


def document(rng: np.random.Generator, images: Sequence[str],
             num_sentences: int) -> dict:
    """An MMC4 document as OpenFlamingo's shards hold it; image ``i``
    matches sentence ``i * num_sentences // len(images)`` best."""
    text_list = [
        ' '.join(rng.choice(WORDS, 12)).capitalize() + '.'
        for _ in range(num_sentences)
    ]
    similarity = rng.uniform(0.1, 0.2, (len(images), num_sentences))
    for i in range(len(images)):
        similarity[i, i * num_sentences // len(images)] = 0.3
    image_info = [dict(image_base64=data) for data in images]
    return dict(
        text_list=text_list,
        similarity_matrix=similarity.round(3).tolist(),
        image_info=image_info)


def write_shards(folder: str, num_shards: int, per_shard: int, num_images: int,
                 image_size: int, num_sentences: int,
                 distinct_images: int) -> str:
    """Shards ``folder/NNNNN.tar`` (reused when there); returns their brace
    pattern."""
    pattern = osp.join(folder, f'{{00000..{num_shards - 1:05d}}}.tar')
    last = osp.join(folder, f'{num_shards - 1:05d}.tar')
    if osp.isfile(last):
        return pattern
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    pool = [
        base64.b64encode(jpeg(rng, image_size)).decode('ascii')
        for _ in range(distinct_images)
    ]
    for shard in range(num_shards):
        path = osp.join(folder, f'{shard:05d}.tar')
        with TarWriter(path + '.tmp') as writer:
            for i in range(per_shard):
                images = [
                    pool[j] for j in rng.integers(0, len(pool), num_images)
                ]
                doc = document(rng, images, num_sentences)
                writer.write({
                    '__key__': f'{shard:05d}{i:05d}',
                    'json': json.dumps(doc).encode('utf-8')
                })
        os.replace(path + '.tmp', path)
    return pattern


def our_loader(kind: str, shards: str, tokenizer_dir: str,
               args: argparse.Namespace) -> DataLoader:
    cfg = dict(
        shards=shards,
        tokenizer=dict(pretrained=tokenizer_dir),
        max_tokens=args.max_tokens,
        max_num_images=args.images,
        single_image_drop_prob=0,
        pipeline=[
            dict(type='LoadMedia'),
            dict(type='ResizeMedia', size=224),
            dict(type='PackFlamingoInputs'),
        ])
    with DefaultScope.overwrite_default_scope('mmflamingo'):
        if kind == 'streaming':
            dataset = DATASETS.build(
                dict(type='StreamingWebDatasetInterleaved', epochs=1, **cfg))
            sampler = None
        else:
            dataset = DATASETS.build(dict(type='WebDatasetInterleaved', **cfg))
            sampler = DefaultSampler(dataset, shuffle=True, seed=0)
    return DataLoader(
        dataset,
        batch_size=args.batch_size,
        sampler=sampler,
        num_workers=args.workers,
        collate_fn=pseudo_collate)


def import_openflamingo_data():
    """OpenFlamingo's ``train/data.py`` (``get_mmc4_dataset``), with the
    end-of-shard markers of webdataset >= 0.2.60 left out of its stream,
    which its ``group_by_keys_nothrow`` (written for older versions)
    cannot read."""
    import open_flamingo
    sys.path.insert(0, osp.join(osp.dirname(open_flamingo.__file__), 'train'))
    import data  # OpenFlamingo's train/data.py
    import data_utils  # OpenFlamingo's train/data_utils.py
    data_utils.tar_file_expander = functools.partial(
        tar_file_expander, eof_value=None)
    return data


def openflamingo_loader(data, processor, tokenizer, shards: str,
                        num_samples: int, args: argparse.Namespace):
    options = SimpleNamespace(
        mmc4_shards=shards,
        dataset_resampled=False,
        train_num_samples_mmc4=num_samples,
        mmc4_textsim_threshold=0.24,
        mmc4_min_num_images=1,
        mmc4_max_num_images=args.images,
        seed=0,
        batch_size_mmc4=args.batch_size,
        workers=args.workers,
        world_size=1)
    return data.get_mmc4_dataset(
        options, processor, tokenizer, floor=True).dataloader


def batch_size_of(batch) -> int:
    if isinstance(batch, dict):
        return len(batch['data_samples'])
    return len(batch[0])  # OpenFlamingo's (images, (ids, mask))


def throughput(build: Callable[[], Iterable]) -> float:
    """Samples/s of one pass, from the first batch on."""
    iterator = iter(build())
    next(iterator)
    start = time.perf_counter()
    samples = sum(batch_size_of(batch) for batch in iterator)
    return samples / (time.perf_counter() - start)


def startup(build: Callable[[], Iterable]) -> float:
    """Seconds from building a loader to its first batch."""
    start = time.perf_counter()
    iterator = iter(build())
    next(iterator)
    seconds = time.perf_counter() - start
    del iterator  # stop its workers before the next loader starts
    return seconds


def run_trials(loaders: Dict[str, Callable[[], float]],
               trials: int) -> Dict[str, List[float]]:
    """Each measurement ``trials`` times, taking turns, a different one
    first each trial (the machine may be shared: no loader always gets
    the quiet moments)."""
    names = list(loaders)
    results: Dict[str, List[float]] = {name: [] for name in names}
    for trial in range(trials):
        shift = trial % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(loaders[name]())
    return results


def summary(values: List[float], unit: str, digits: int) -> str:
    return (f'{statistics.median(values):.{digits}f} {unit} '
            f'(range {min(values):.{digits}f}-{max(values):.{digits}f}, '
            f'{len(values)} trials)')


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    random.seed(0)
    work_dir = args.work_dir or tempfile.mkdtemp(prefix='benchmark_data_')
    tokenizer_dir = build_tiny_tokenizer(osp.join(work_dir, 'tokenizer'))
    tokenizer = build_tokenizer(tokenizer_dir)
    tokens_per_sentence = len(
        tokenizer(' '.join(WORDS[:12]) + '.')['input_ids'])
    num_sentences = args.max_tokens // max(tokens_per_sentence, 1) + 2
    add_flamingo_tokens(tokenizer)

    import open_clip
    data = import_openflamingo_data()
    processor = open_clip.image_transform(224, is_train=False)

    shards = write_shards(
        osp.join(work_dir, 'throughput'),
        args.shards,
        args.samples_per_shard,
        args.images,
        args.image_size,
        num_sentences,
        distinct_images=64)
    num_samples = args.shards * args.samples_per_shard
    print(f'{num_samples} documents in {args.shards} shards, {args.images} '
          f'{args.image_size} px JPEGs and {args.max_tokens} tokens each, '
          f'batch {args.batch_size}, {args.workers} workers')
    our_loader('indexed', shards, tokenizer_dir, args)  # cache the index
    rates = run_trials(
        {
            'streaming':
            lambda: throughput(lambda: our_loader('streaming', shards,
                                                  tokenizer_dir, args)),
            'indexed':
            lambda: throughput(lambda: our_loader('indexed', shards,
                                                  tokenizer_dir, args)),
            'openflamingo':
            lambda: throughput(lambda: openflamingo_loader(
                data, processor, tokenizer, shards, num_samples, args)),
        }, args.trials)
    for name, values in rates.items():
        print(f'throughput {name}: {summary(values, "samples/s", 1)}')
    if args.skip_startup:
        return

    for num_shards in args.startup_shards:
        startup_shards = write_shards(
            osp.join(work_dir, f'startup-{num_shards}'),
            num_shards,
            args.startup_samples,
            num_images=2,
            image_size=args.startup_image_size,
            num_sentences=num_sentences,
            distinct_images=8)
        total = num_shards * args.startup_samples

        def scan_indexed(startup_shards=startup_shards) -> float:
            for shard in expand_braces(startup_shards):
                if osp.isfile(index_path(shard)):
                    os.remove(index_path(shard))
            return startup(lambda: our_loader('indexed', startup_shards,
                                              tokenizer_dir, args))

        times = run_trials(
            {
                'streaming':
                lambda: startup(lambda: our_loader('streaming', startup_shards,
                                                   tokenizer_dir, args)),
                'indexed, first run (scan)':
                scan_indexed,
                'indexed, cached index':
                lambda: startup(lambda: our_loader('indexed', startup_shards,
                                                   tokenizer_dir, args)),
                'openflamingo':
                lambda: startup(lambda: openflamingo_loader(
                    data, processor, tokenizer, startup_shards, total, args)),
            }, args.trials)
        print(f'start-up on {num_shards} shards of {args.startup_samples} '
              'documents')
        for name, values in times.items():
            print(f'start-up {name}: {summary(values, "s", 2)}')


if __name__ == '__main__':
    main()
