"""Few-shot COCO-style captioning evaluation: queries/s of mmflamingo's
``evaluate_fewshot`` against OpenFlamingo's evaluation path.

Both sides hold the same weights (:func:`build_openflamingo_pair`), read the
same Karpathy-format caption files from disk and caption the same number of
test images with random 4-shot demos, beam search and a fixed number of new
tokens (so both do the same amount of generation whatever the demos).

- **OpenFlamingo**: the loop of ``open_flamingo.eval.evaluate
  .evaluate_captioning`` (``open-flamingo==2.0.1``) with its own
  ``CaptionDataset``, ``prepare_eval_samples``, ``get_query_set`` and
  ``sample_batch_demos_from_query_set``, and the generation of its
  ``EvalModel.get_outputs`` (CLIP preprocessing of every image of every
  prompt, left-padded prompts, ``Flamingo.generate``). The module itself
  cannot be imported without scikit-learn and its sibling-module imports,
  and the pip package lacks ``EvalModel``, so the loop is restated here.
- **mmflamingo**: ``evaluate_fewshot``, the Runner's ``FewShotTestLoop``
  that ``tools/test.py`` runs (datasets, prompt builder, demo selection,
  visual-token cache, batched ``predict``, the metric through mmengine's
  ``Evaluator``), writing the caption predictions json (``format_only``);
  scoring is left out on both sides.

Example:
    python tools/analysis/benchmark_eval.py --num-queries 48
"""
import argparse
import json
import os
import os.path as osp
import random
import socket
import tempfile
import time

import numpy as np
import torch
import torch.distributed as torch_dist
from mmengine.registry import init_default_scope
from PIL import Image, ImageDraw

from mmflamingo.apis import evaluate_fewshot
from mmflamingo.testing.openflamingo import (build_openflamingo_pair,
                                             openflamingo_image_processor,
                                             openflamingo_vision_x)

SHAPES = ('ellipse', 'rectangle')
COLOURS = ('red', 'green', 'blue', 'yellow', 'purple', 'orange')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--lm-type', default='llama')
    parser.add_argument('--hidden-size', type=int, default=512)
    parser.add_argument('--num-layers', type=int, default=8)
    parser.add_argument('--cross-attn-every', type=int, default=1)
    parser.add_argument('--vision-width', type=int, default=256)
    parser.add_argument('--vision-layers', type=int, default=4)
    parser.add_argument('--image-size', type=int, default=112)
    parser.add_argument('--num-support', type=int, default=64)
    parser.add_argument('--num-queries', type=int, default=48)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--shots', type=int, default=4)
    parser.add_argument('--num-beams', type=int, default=3)
    parser.add_argument('--new-tokens', type=int, default=20)
    parser.add_argument('--repeats', type=int, default=1)
    parser.add_argument('--threads', type=int, default=2)
    return parser.parse_args()


def write_karpathy(root: str, num_support: int, num_queries: int) -> str:
    """COCO-style files: train2014/ and val2014/ images and a Karpathy json
    (train split: the support set; test split: the queries)."""
    rng = random.Random(0)
    images = []
    for i in range(num_support + num_queries):
        folder = 'train2014' if i < num_support else 'val2014'
        os.makedirs(osp.join(root, folder), exist_ok=True)
        shape, colour = rng.choice(SHAPES), rng.choice(COLOURS)
        image = Image.new('RGB', (160, 160), 'white')
        x, y = rng.randint(10, 80), rng.randint(10, 80)
        getattr(ImageDraw.Draw(image), shape)((x, y, x + 60, y + 60),
                                              fill=colour)
        filename = f'COCO_{folder}_{i:012d}.jpg'
        image.save(osp.join(root, folder, filename))
        images.append(
            dict(
                filepath=folder,
                filename=filename,
                cocoid=i,
                split='train' if i < num_support else 'test',
                sentences=[
                    dict(raw=f'a {colour} {shape} on a white background.')
                ] * 5))
    path = osp.join(root, 'dataset_coco.json')
    with open(path, 'w') as f:
        json.dump(dict(images=images), f)
    return path


def openflamingo_eval(model, tokenizer, root: str, ann_file: str,
                      args: argparse.Namespace, num_queries: int) -> list:
    """The captioning loop of OpenFlamingo's ``evaluate_captioning``."""
    from open_flamingo.eval.coco_metric import \
        postprocess_captioning_generation
    from open_flamingo.eval.eval_datasets import CaptionDataset
    from open_flamingo.eval.utils import (compute_effective_num_shots,
                                          get_query_set, prepare_eval_samples,
                                          random_seed,
                                          sample_batch_demos_from_query_set)
    image_processor = openflamingo_image_processor(args.image_size)

    def get_outputs(batch_text, batch_images):
        # EvalModel.get_outputs: preprocess and stack every image, generate
        vision_x = openflamingo_vision_x(batch_images, image_processor)
        tokenizer.padding_side = 'left'
        encodings = tokenizer(
            batch_text,
            padding='longest',
            truncation=True,
            return_tensors='pt',
            max_length=2000)
        with torch.inference_mode():
            outputs = model.generate(
                vision_x,
                encodings['input_ids'],
                attention_mask=encodings['attention_mask'],
                min_new_tokens=args.new_tokens,
                max_new_tokens=args.new_tokens,
                num_beams=args.num_beams,
                length_penalty=0.0)
        outputs = outputs[:, encodings['input_ids'].shape[1]:]
        return tokenizer.batch_decode(outputs, skip_special_tokens=True)

    train = CaptionDataset(
        osp.join(root, 'train2014'),
        ann_file,
        is_train=True,
        dataset_name='coco',
        image_val_dir_path=osp.join(root, 'val2014'))
    test = CaptionDataset(
        osp.join(root, 'train2014'),
        ann_file,
        is_train=False,
        dataset_name='coco',
        image_val_dir_path=osp.join(root, 'val2014'))
    num_shots = compute_effective_num_shots(args.shots, 'open_flamingo')
    np.random.seed(42)
    loader = prepare_eval_samples(test, num_queries, args.batch_size)
    query_set = get_query_set(train, len(train))
    random_seed(42, 0)
    predictions = []
    for batch in loader:
        demos = sample_batch_demos_from_query_set(query_set, num_shots,
                                                  len(batch['image']))
        batch_images, batch_text = [], []
        for i in range(len(batch['image'])):
            batch_images.append([x['image']
                                 for x in demos[i]] + [batch['image'][i]])
            context = ''.join(f"<image>Output:{x['caption'].strip()}"
                              '<|endofchunk|>\n' for x in demos[i])
            batch_text.append(context + '<image>Output:')
        outputs = get_outputs(batch_text, batch_images)
        predictions.extend(
            postprocess_captioning_generation(out).replace('"', '')
            for out in outputs)
    return predictions


def mmflamingo_eval(model, root: str, ann_file: str, args: argparse.Namespace,
                    num_queries: int, cache_media: bool) -> dict:
    """``evaluate_fewshot`` on the same files."""
    model.generation_cfg = dict(
        num_beams=args.num_beams,
        min_new_tokens=args.new_tokens,
        max_new_tokens=args.new_tokens,
        length_penalty=0.0)
    split = dict(
        type='KarpathyCaptionDataset',
        ann_file=ann_file,
        data_prefix=dict(img_path=root))
    return evaluate_fewshot(
        model,
        dict(
            test_dataloader=dict(
                batch_size=args.batch_size,
                dataset={
                    **split, 'split': 'test'
                },
                sampler=dict(type='DefaultSampler', shuffle=False)),
            test_evaluator=dict(
                type='CaptionMetric',
                format_only=True,
                outfile_prefix=osp.join(root, 'predictions')),
            test_cfg=dict(
                type='FewShotTestLoop',
                task='caption',
                support={
                    **split, 'split': 'train'
                },
                shots=[args.shots],
                max_queries=num_queries,
                cache_media=cache_media)))


def init_single_process_group() -> None:
    """OpenFlamingo's loader uses a DistributedSampler: one gloo process."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    torch_dist.init_process_group(
        'gloo', init_method=f'tcp://127.0.0.1:{port}', rank=0, world_size=1)


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    init_default_scope('mmflamingo')
    init_single_process_group()
    with tempfile.TemporaryDirectory() as tmpdir:
        of_model, mm_model, tokenizer = build_openflamingo_pair(
            args.lm_type,
            osp.join(tmpdir, 'models'),
            hidden_size=args.hidden_size,
            num_layers=args.num_layers,
            cross_attn_every_n_layers=args.cross_attn_every,
            vision_width=args.vision_width,
            vision_layers=args.vision_layers,
            image_size=args.image_size,
            patch_size=16)
        root = osp.join(tmpdir, 'coco')
        ann_file = write_karpathy(root, args.num_support, args.num_queries)
        runs = dict(
            openflamingo=lambda n: openflamingo_eval(of_model, tokenizer, root,
                                                     ann_file, args, n),
            mmflamingo=lambda n: mmflamingo_eval(mm_model, root, ann_file,
                                                 args, n, True),
            mmflamingo_no_cache=lambda n: mmflamingo_eval(
                mm_model, root, ann_file, args, n, False))
        for run in runs.values():  # warm-up: one batch each
            run(args.batch_size)
        times = {name: [] for name in runs}
        for _ in range(args.repeats):  # alternate, so load hits all alike
            for name, run in runs.items():
                times[name].append(timed(lambda: run(args.num_queries)))
    print(f'config: {args.lm_type} hidden {args.hidden_size} x '
          f'{args.num_layers} layers (xattn every {args.cross_attn_every}), '
          f'ViT {args.vision_width} x {args.vision_layers} at '
          f'{args.image_size}px; {args.num_queries} queries, '
          f'{args.shots}-shot random demos from {args.num_support}, batch '
          f'{args.batch_size}, beam {args.num_beams}, {args.new_tokens} new '
          f'tokens, {torch.get_num_threads()} threads')
    rates = {
        name: args.num_queries / float(np.median(t))
        for name, t in times.items()
    }
    for name, rate in rates.items():
        print(
            f'{name:>20}: {rate:.3f} queries/s  ({np.median(times[name]):.1f}'
            f' s, median of {args.repeats})')
    speed_up = rates['mmflamingo'] / rates['openflamingo']
    no_cache = rates['mmflamingo_no_cache'] / rates['openflamingo']
    print(f'speed-up over OpenFlamingo: {speed_up:.2f}x (without the '
          f'visual-token cache: {no_cache:.2f}x)')


if __name__ == '__main__':
    main()
