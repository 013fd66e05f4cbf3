"""Few-shot evaluation of a Flamingo, in one process or several.

Usage::

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--shots 0 4]
        [--num-trials N] [--cfg-options KEY=VALUE ...]
    torchrun --nproc_per_node 8 tools/test.py CONFIG CHECKPOINT \
        --launcher pytorch

Several processes split the query batches and give exactly the one-process
results (see :mod:`mmflamingo.evaluation.fewshot`). Models are built after
seeding with ``randomness.seed`` (default 0), so parts a checkpoint does not
hold are the same in every process and run.

CONFIG has the ``model`` and a ``fewshot_eval`` dict (see
:mod:`mmflamingo.evaluation.fewshot`); CHECKPOINT ``none`` evaluates the
model as built (tests, sanity checks). Writes ``fewshot_results.json``,
``fewshot_results.md`` and ``fewshot_results.png`` (score against shots)
to the work dir.
"""
import argparse
import os.path as osp
from typing import List, Optional

import torch
from mmengine.config import Config, DictAction
from mmengine.dist import get_dist_info, init_dist, is_main_process
from mmengine.runner import set_random_seed

from mmflamingo.apis import init_model
from mmflamingo.engine.dist import setup_cpu_distributed
from mmflamingo.evaluation import evaluate_fewshot
from mmflamingo.evaluation.fewshot import format_markdown


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Few-shot evaluation of a Flamingo')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        'checkpoint', help="checkpoint file, or 'none' for no checkpoint")
    parser.add_argument('--work-dir', help='where to save the results')
    parser.add_argument(
        '--shots',
        type=int,
        nargs='+',
        help='shot counts (overrides fewshot_eval.shots)')
    parser.add_argument(
        '--num-trials',
        type=int,
        help='trials per shot count (overrides fewshot_eval.num_trials)')
    parser.add_argument(
        '--device',
        default='cuda' if torch.cuda.is_available() else 'cpu',
        help='defaults to cuda when available')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher for several processes')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if 'fewshot_eval' not in cfg:
        raise KeyError(f'{args.config} has no `fewshot_eval` (what to '
                       'evaluate; see mmflamingo/evaluation/fewshot.py)')
    if args.shots is not None:
        cfg.fewshot_eval.shots = args.shots
    if args.num_trials is not None:
        cfg.fewshot_eval.num_trials = args.num_trials
    work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs',
        osp.splitext(osp.basename(args.config))[0])
    checkpoint = None if args.checkpoint.lower() == 'none' else (
        args.checkpoint)
    device = args.device
    if args.launcher != 'none':
        if not setup_cpu_distributed(args.launcher, deepspeed=False):
            init_dist(args.launcher)
        if device == 'cuda':
            device = f'cuda:{torch.cuda.current_device()}'
    set_random_seed(cfg.get('randomness', {}).get('seed') or 0)
    model = init_model(cfg, checkpoint, device=device)
    summary = evaluate_fewshot(model, cfg.fewshot_eval, work_dir)
    if is_main_process():
        print(format_markdown(summary))
        print(f'results written to {work_dir} '
              f'({get_dist_info()[1]} process(es))')
    return summary


if __name__ == '__main__':
    main()
