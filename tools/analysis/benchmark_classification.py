"""8-shot classification over ImageNet's 1000 class names: queries/s and
peak memory of mmflamingo's few-shot test loop against OpenFlamingo's
classification path, the same weights and demos, and the same top-5.

Both sides hold the same weights (:func:`build_openflamingo_pair`, the small
config of ``benchmark_eval.py``), read the same ImageNet-style folders from
disk (``train/<wnid>/`` the support set, ``val/<wnid>/`` the queries, one
image per class in each) and rank all 1000 class names
(:data:`~mmflamingo.datasets.IMAGENET_CLASS_NAMES_FILE`) by OpenFlamingo's
rule, the mean log-likelihood per token, after an 8-shot prompt.

- **OpenFlamingo**: the loop of ``open_flamingo.eval.evaluate
  .evaluate_classification`` (``open-flamingo==2.0.1``) on its own
  ``ImageNetDataset``, its ImageNet prompt, ``EvalModel._prepare_images``
  and ``get_rank_classifications(..., use_cache=True,
  normalize_length=True)``
  (:func:`~mmflamingo.testing.openflamingo.openflamingo_rank_classifications`:
  the prompt is run once with its KV cache, then each name one token per
  forward after a copy of it), and ``get_predicted_classnames`` for the
  top-5. Its demos are the ones mmflamingo's loop draws (its own
  selector), so both sides rank after the same prompts.
- **mmflamingo**: ``evaluate_fewshot``, the Runner's ``FewShotTestLoop``
  that ``tools/test.py`` runs, with ``score_reduction='mean'``: each prompt
  runs once per query and its names are packed after its cache,
  ``--candidate-batch-size`` per LM call.

Class names are as long in tokens as a real tokenizer makes them: the tiny
byte-level BPE is trained with ``--vocab-size`` entries on the names too
(2000: a mean of 3.0 tokens a name, 1 to 13; CLIP's 49k-entry BPE, the one
real tokenizer at hand, makes 2.2, 1 to 12; a name split finer costs
OpenFlamingo one forward per extra token). The script prints the spread.

Each side runs in its own process (so that one's memory does not count as
the other's), warmed up with one batch (of 20 names), and the timed runs
alternate between them, so load on the machine hits both alike. A run's
peak memory is the high-water mark of the process's resident set during
the run over what it held just before (the evaluation's own memory, in a
process that has evaluated before). The warm-up's figures are printed
apart: its peak over what the process held with the model built, and what
it keeps for good (code and kernels loaded, the Runner's machinery, caches;
paid once per process, whatever the number of classes or queries). A peak
depends on how glibc's heap fragments as much as on what is in use: on
1000 names mmflamingo's moved between +200 and +385 MiB over 8 runs before
its chunks were padded to one width, +197 to +231 over 5 after, and
OpenFlamingo's between +311 and +338 over 3; ``--malloc-mmap-threshold``
runs both sides with large blocks mmapped, so that the peak follows the
memory in use (at about two thirds of the speed).

Example:
    python tools/analysis/benchmark_classification.py --num-queries 16 \
        --repeats 3 --threads 1
"""
import argparse
import ctypes
import gc
import itertools
import multiprocessing
import os
import os.path as osp
import shutil
import tempfile
import time
from typing import Dict, List, Optional

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.registry import init_default_scope
from PIL import Image, ImageDraw

from mmflamingo.datasets import IMAGENET_CLASS_NAMES_FILE
from mmflamingo.registry import METRICS

SIDES = ('openflamingo', 'mmflamingo')
TOP_K = 5
# the warm-up ranks these first names only (OpenFlamingo's 1000 take long)
WARM_UP_NAMES = 20


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--lm-type', default='llama')
    parser.add_argument('--hidden-size', type=int, default=512)
    parser.add_argument('--num-layers', type=int, default=8)
    parser.add_argument('--cross-attn-every', type=int, default=1)
    parser.add_argument('--vision-width', type=int, default=256)
    parser.add_argument('--vision-layers', type=int, default=4)
    parser.add_argument('--image-size', type=int, default=112)
    parser.add_argument('--vocab-size', type=int, default=2000)
    parser.add_argument('--num-queries', type=int, default=16)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--shots', type=int, default=8)
    parser.add_argument('--candidate-batch-size', type=int, default=50)
    parser.add_argument(
        '--num-names',
        type=int,
        help='rank the first names only (a quick check; default: all)')
    parser.add_argument(
        '--malloc-mmap-threshold',
        type=int,
        help='run both sides with glibc\'s MALLOC_MMAP_THRESHOLD_ at this '
        'many bytes: larger blocks are mmapped and go back to the system '
        'when freed, so the peak follows the memory in use rather than how '
        'the heap fragments (default: glibc\'s own, a threshold that '
        'grows to 32 MiB)')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument(
        '--sides',
        nargs='+',
        choices=SIDES,
        default=list(SIDES),
        help='run these sides only (one side: its speed and memory, e.g. '
        "mmflamingo's with another --candidate-batch-size, no comparison)")
    return parser.parse_args()


def read_class_names() -> List[str]:
    with open(IMAGENET_CLASS_NAMES_FILE, encoding='utf-8') as f:
        return [line.strip() for line in f if line.strip()]


def write_imagenet(root: str, num_classes: int) -> None:
    """``train/`` and ``val/``: one image per class each (OpenFlamingo's
    ``ImageNetDataset``, a torchvision ``ImageFolder``, takes no empty
    class), a shape whose colour and place follow the class."""
    rng = np.random.default_rng(0)
    for split in ('train', 'val'):
        for label in range(num_classes):
            folder = osp.join(root, split, f'n{label:08d}')
            os.makedirs(folder)
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            x, y = (int(v) for v in rng.integers(10, 80, 2))
            image = Image.new('RGB', (160, 160), 'white')
            ImageDraw.Draw(image).ellipse((x, y, x + 60, y + 60), fill=colour)
            # distinct names: a query is never taken for a demo of itself
            image.save(osp.join(folder, f'{split}_{label}.jpg'))


@METRICS.register_module(force=True)
class TopKNames(BaseMetric):
    """Keeps each query's top-5 class names, in query order, in
    :attr:`RECORDED` (the benchmark compares them with OpenFlamingo's)."""

    RECORDED: List[List[str]] = []

    def __init__(self, class_names: List[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.class_names = class_names

    def process(self, data_batch, data_samples) -> None:
        for sample in data_samples:
            top = torch.as_tensor(sample['pred_scores']).topk(TOP_K).indices
            self.results.append([self.class_names[i] for i in top.tolist()])

    def compute_metrics(self, results: list) -> dict:
        TopKNames.RECORDED[:] = results
        return {}


def test_config(root: str,
                args: argparse.Namespace,
                class_names: List[str],
                num_queries: int,
                num_names: Optional[int] = None) -> dict:
    """mmflamingo's config of the run (what ``tools/test.py`` reads);
    ``num_names``: rank the first names only (the warm-up)."""
    names = {} if num_names is None else dict(
        class_names=class_names[:num_names])
    split = dict(
        type='ImageFolderClassification',
        data_root=root,
        class_names_file=IMAGENET_CLASS_NAMES_FILE)
    return dict(
        test_dataloader=dict(
            batch_size=args.batch_size,
            dataset={
                **split, 'split': 'val'
            },
            sampler=dict(type='DefaultSampler', shuffle=False)),
        test_evaluator=[
            dict(type='RankClassificationMetric'),
            dict(type='TopKNames', class_names=class_names[:num_names])
        ],
        test_cfg=dict(
            type='FewShotTestLoop',
            task='classification',
            support={
                **split, 'split': 'train'
            },
            shots=[args.shots],
            max_queries=num_queries,
            candidate_batch_size=args.candidate_batch_size,
            score_reduction='mean',
            **names))


def mmflamingo_classify(model,
                        root: str,
                        args: argparse.Namespace,
                        class_names: List[str],
                        num_queries: int,
                        num_names: Optional[int] = None) -> List[List[str]]:
    """``evaluate_fewshot`` on the folders; each query's top-5 names."""
    from mmflamingo.apis import evaluate_fewshot
    evaluate_fewshot(
        model, test_config(root, args, class_names, num_queries, num_names))
    return list(TopKNames.RECORDED)


def loop_demos(root: str, args: argparse.Namespace, class_names: List[str],
               num_queries: int) -> List[List[int]]:
    """The support indices of each query's demos, as mmflamingo's loop
    draws them (trial 0), and a check that both sides' datasets list the
    same files in the same order."""
    from open_flamingo.eval.eval_datasets import ImageNetDataset

    from mmflamingo.evaluation import FewShotSettings, build_demo_selector
    from mmflamingo.registry import DATASETS
    cfg = test_config(root, args, class_names, num_queries)
    settings = FewShotSettings.from_cfg({
        k: v
        for k, v in cfg['test_cfg'].items() if k != 'type'
    })
    infos = {}
    for split, dataset_cfg in (('train', settings.support),
                               ('val', cfg['test_dataloader']['dataset'])):
        dataset = DATASETS.build(dataset_cfg)
        infos[split] = [dataset.get_data_info(i) for i in range(len(dataset))]
        ours = [info['media'][0] for info in infos[split]]
        theirs = ImageNetDataset(osp.join(root, split)).samples
        theirs = [path for path, _ in theirs]
        if ours != theirs:
            raise RuntimeError(f'the {split} folders are listed differently')
    queries = infos['val'][:num_queries]
    selector = build_demo_selector(settings, infos['train'], queries, 0)
    return [
        selector.select(i, args.shots)  # the demos in prompt order
        for i in range(num_queries)
    ]


def openflamingo_classify(model,
                          tokenizer,
                          root: str,
                          args: argparse.Namespace,
                          demos: List[List[int]],
                          num_queries: int,
                          num_names: Optional[int] = None) -> List[List[str]]:
    """The loop of OpenFlamingo's ``evaluate_classification`` (ImageNet,
    KV cache on, no prompt ensembling); each query's top-5 names."""
    from open_flamingo.eval.classification_utils import IMAGENET_CLASSNAMES
    from open_flamingo.eval.eval_datasets import ImageNetDataset
    from open_flamingo.eval.utils import get_predicted_classnames

    from mmflamingo.testing.openflamingo import (
        openflamingo_image_processor, openflamingo_rank_classifications,
        openflamingo_vision_x)
    image_processor = openflamingo_image_processor(args.image_size)
    train_dataset = ImageNetDataset(osp.join(root, 'train'))
    test_dataset = ImageNetDataset(osp.join(root, 'val'))
    all_class_names = IMAGENET_CLASSNAMES[:num_names]
    class_id_to_name = dict(enumerate(all_class_names))

    def prompt_fn(x):  # EvalModel.get_imagenet_prompt
        label = x['class_name']
        return (f"<image>Output:{label if label is not None else ''}"
                f"{'<|endofchunk|>' if label is not None else ''}")

    top_names = []
    for start in range(0, num_queries, args.batch_size):
        batch = [
            test_dataset[i]
            for i in range(start, min(start + args.batch_size, num_queries))
        ]
        batch_demo_samples = [[train_dataset[j] for j in demos[i]]
                              for i in range(start, start + len(batch))]
        batch_images, batch_text = [], []
        for i, query in enumerate(batch):
            batch_images.append([x['image'] for x in batch_demo_samples[i]] +
                                [query['image']])
            context_text = ''.join(prompt_fn(x) for x in batch_demo_samples[i])
            batch_text.append(context_text + prompt_fn({'class_name': None}))
        logprobs = openflamingo_rank_classifications(
            model,
            tokenizer,
            batch_text,
            openflamingo_vision_x(batch_images, image_processor),
            all_class_names,
            normalize_length=True)
        predicted_classnames, predicted_logprobs = get_predicted_classnames(
            logprobs, TOP_K, class_id_to_name)
        for i in range(len(batch)):
            # the confidence its loop gives each prediction (kept: a cost)
            torch.exp(predicted_logprobs[i][0] -
                      torch.logsumexp(logprobs[i], dim=0)).item()
        top_names.extend(predicted_classnames)
    return top_names


def settle_rss() -> int:
    """Free what can be freed (garbage, glibc's free heap top and holes),
    reset the process's resident-set high-water mark; its RSS (bytes)."""
    gc.collect()
    ctypes.CDLL('libc.so.6').malloc_trim(0)
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    return _status_bytes('VmRSS')


def _status_bytes(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def worker(side: str, args: argparse.Namespace, root: str, conn) -> None:
    """Build one side's model and time its runs on request: receives a
    query count (None: stop), answers seconds, the run's peak memory (over
    what the process held before it), the warm-up's (over the model's) and
    top-5."""
    from mmflamingo.testing.openflamingo import build_openflamingo_pair
    torch.set_num_threads(args.threads)
    init_default_scope('mmflamingo')
    class_names = read_class_names()
    models = osp.join(root, side)
    # the tokenizer trained once, by the parent: build_openflamingo_pair
    # reuses it
    shutil.copytree(osp.join(root, 'tokenizer'), osp.join(models, 'tokenizer'))
    of_model, mm_model, tokenizer = build_openflamingo_pair(
        args.lm_type,
        models,
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        cross_attn_every_n_layers=args.cross_attn_every,
        vision_width=args.vision_width,
        vision_layers=args.vision_layers,
        image_size=args.image_size,
        patch_size=16)
    if side == 'openflamingo':
        model = of_model
        del mm_model
        demos = loop_demos(root, args, class_names, args.num_queries)

        def run(n, num_names=None):
            return openflamingo_classify(of_model, tokenizer, root, args,
                                         demos, n, num_names)
    else:
        model = mm_model
        del of_model

        def run(n, num_names=None):
            return mmflamingo_classify(mm_model, root, args, class_names, n,
                                       num_names)

    # the weights in memory: transformers maps a safetensors file and its
    # pages come in when first read, which would count as the first call's
    with torch.no_grad():
        for tensor in itertools.chain(model.parameters(), model.buffers()):
            tensor.sum()
    model_bytes = settle_rss()  # what the other model held is let go
    run(args.batch_size, num_names=WARM_UP_NAMES)  # first-call costs
    # what the first call left behind for good: code and kernels loaded,
    # caches filled (imports, the Runner's machinery, oneDNN)
    warm_bytes = settle_rss()
    first_call_peak = _status_bytes('VmHWM') - model_bytes
    conn.send(torch.get_num_threads())
    while (num_queries := conn.recv()) is not None:
        start_bytes = settle_rss()
        start = time.perf_counter()
        top5 = run(num_queries, args.num_names)
        seconds = time.perf_counter() - start
        conn.send(
            dict(
                seconds=seconds,
                first_call_bytes=warm_bytes - model_bytes,
                first_call_peak_bytes=first_call_peak,
                peak_bytes=_status_bytes('VmHWM') - start_bytes,
                top5=top5))


def report(args: argparse.Namespace, lengths: np.ndarray,
           runs: Dict[str, List[dict]], threads: int) -> None:
    lengths = lengths[:args.num_names]
    allocator = 'as it comes'
    if args.malloc_mmap_threshold is not None:
        allocator = f'with MALLOC_MMAP_THRESHOLD_={args.malloc_mmap_threshold}'
    print(f'config: {args.lm_type} hidden {args.hidden_size} x '
          f'{args.num_layers} layers (xattn every {args.cross_attn_every}), '
          f'ViT {args.vision_width} x {args.vision_layers} at '
          f'{args.image_size}px; {args.num_queries} queries, {args.shots}-'
          f'shot random demos, batch {args.batch_size}, {len(lengths)} class '
          f'names of {lengths.mean():.2f} tokens on average (median '
          f'{np.median(lengths):.0f}, 1st-99th percentile '
          f'{np.percentile(lengths, 1):.0f}-'
          f'{np.percentile(lengths, 99):.0f}, max {lengths.max()}), '
          f'mmflamingo {args.candidate_batch_size} names per LM call, '
          f'{threads} threads, {args.repeats} alternating runs each, '
          f'glibc malloc {allocator}')
    rates = {}
    for side in runs:
        seconds = np.array([run['seconds'] for run in runs[side]])
        rate = args.num_queries / seconds
        peaks = [run['peak_bytes'] / 2**20 for run in runs[side]]
        first = runs[side][0]
        rates[side] = float(np.median(rate))
        print(f'{side:>14}: {rates[side]:.3f} queries/s (median; runs '
              f'{", ".join(f"{r:.3f}" for r in rate)}); peak memory of a '
              f'run +{max(peaks):.0f} MiB (the highest; runs '
              f'{", ".join(f"+{p:.0f}" for p in peaks)}); first call '
              f'(warm-up, {WARM_UP_NAMES} names) peak '
              f'+{first["first_call_peak_bytes"] / 2**20:.0f} MiB, kept '
              f'+{first["first_call_bytes"] / 2**20:.0f} MiB')
    if len(runs) < 2:
        return
    reference = runs['openflamingo'][0]['top5']
    same = all(run['top5'] == reference for side in SIDES
               for run in runs[side])
    mismatches = [
        i
        for i, (a,
                b) in enumerate(zip(reference, runs['mmflamingo'][0]['top5']))
        if a != b
    ]
    print(f'same top-5 for every query: {same} (queries that differ: '
          f'{mismatches})')
    ratios = np.array([
        m['seconds'] / o['seconds']
        for m, o in zip(runs['mmflamingo'], runs['openflamingo'])
    ])
    pairs = ', '.join(f'{1 / r:.1f}' for r in ratios)
    print(f'speed-up over OpenFlamingo: '
          f'{rates["mmflamingo"] / rates["openflamingo"]:.1f}x (of the '
          f'medians; per pair of runs {pairs})')


def main() -> None:
    args = parse_args()
    class_names = read_class_names()
    with tempfile.TemporaryDirectory() as root:
        write_imagenet(root, len(class_names))
        from transformers import AutoTokenizer

        from mmflamingo.testing.tiny import build_tiny_tokenizer
        build_tiny_tokenizer(
            osp.join(root, 'tokenizer'),
            vocab_size=args.vocab_size,
            extra_texts=class_names)
        tokenizer = AutoTokenizer.from_pretrained(osp.join(root, 'tokenizer'))
        lengths = np.array([
            len(tokenizer(name, add_special_tokens=False)['input_ids'])
            for name in class_names
        ])
        if args.malloc_mmap_threshold is not None:
            # read by glibc when a worker starts
            os.environ['MALLOC_MMAP_THRESHOLD_'] = str(
                args.malloc_mmap_threshold)
        context = multiprocessing.get_context('spawn')
        workers = {}
        for side in args.sides:
            conn, child = context.Pipe()
            process = context.Process(
                target=worker, args=(side, args, root, child))
            process.start()
            workers[side] = (process, conn)
        threads = [conn.recv() for _, conn in workers.values()][0]
        runs = {side: [] for side in args.sides}
        for _ in range(args.repeats):
            for side in args.sides:
                conn = workers[side][1]
                conn.send(args.num_queries)
                runs[side].append(conn.recv())
                # as it comes, should the job be cut short
                print(
                    f"{side} run {len(runs[side])}: "
                    f"{runs[side][-1]['seconds']:.1f} s",
                    flush=True)
        for process, conn in workers.values():
            conn.send(None)
            process.join()
    report(args, lengths, runs, threads)


if __name__ == '__main__':
    main()
