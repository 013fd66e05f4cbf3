"""Few-shot evaluation of a Flamingo: ``Runner.from_cfg(cfg).test()``.

Usage::

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--shots 0 4]
        [--num-trials N] [--cfg-options KEY=VALUE ...]
    torchrun --nproc_per_node 8 tools/test.py CONFIG CHECKPOINT \
        --launcher pytorch

CONFIG names :class:`~mmflamingo.engine.FewShotTestLoop` in ``test_cfg``,
the query set in ``test_dataloader`` and the metrics in ``test_evaluator``
(see :mod:`mmflamingo.engine.runner.fewshot_loop`). CHECKPOINT is loaded
with the Runner's ``load_from``; ``none`` evaluates the model as built
(tests, sanity checks, or a converted OpenFlamingo checkpoint named in the
model config). Several processes split the query batches and give exactly
the one-process results. Models are built after seeding with
``randomness.seed`` (default 0), so parts a checkpoint does not hold are the
same in every process and run. Writes ``fewshot_results.json``,
``fewshot_results.md`` and ``fewshot_results.png`` (score against shots) to
the work dir, and the Runner's logs (each shot count's scores as scalars of
its visualizer) to its timestamped log dir.
"""
import argparse
import os.path as osp
from typing import List, Optional

import torch
from mmengine.config import Config, DictAction
from mmengine.dist import get_dist_info, is_main_process
from mmengine.runner import Runner

from mmflamingo.engine.dist import setup_cpu_distributed
from mmflamingo.evaluation import format_markdown
from mmflamingo.evaluation.fewshot_settings import OLD_KEY_HELP


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
        help='shot counts (overrides test_cfg.shots)')
    parser.add_argument(
        '--num-trials',
        type=int,
        help='trials per shot count (overrides test_cfg.num_trials)')
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


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command line to the config and check it is a few-shot
    test config."""
    if 'fewshot_eval' in cfg:
        raise KeyError(f'{args.config}: {OLD_KEY_HELP}')
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    test_cfg = cfg.get('test_cfg')
    if not test_cfg or 'test_dataloader' not in cfg or \
            'test_evaluator' not in cfg:
        raise KeyError(
            f'{args.config} needs test_cfg (the few-shot settings, '
            "type='FewShotTestLoop'), test_dataloader (the query set) and "
            'test_evaluator (the metrics); see '
            'configs/_base_/datasets/coco_caption_fewshot.py')
    if args.shots is not None:
        test_cfg.shots = args.shots
    if args.num_trials is not None:
        test_cfg.num_trials = args.num_trials
    cfg.launcher = args.launcher
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs',
        osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = None if args.checkpoint.lower() == 'none' else (
        args.checkpoint)
    cfg.default_scope = cfg.get('default_scope') or 'mmflamingo'
    # the same model in every process and run, whatever the checkpoint
    # leaves out
    randomness = dict(cfg.get('randomness') or {})
    if randomness.get('seed') is None:
        randomness['seed'] = 0
    cfg.randomness = randomness
    if args.launcher != 'none' and not torch.cuda.is_available() and \
            'model_wrapper_cfg' not in cfg:
        # DDP takes no device ids on the CPU
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel', device_ids=None)
    return cfg


def main(argv: Optional[List[str]] = None) -> dict:
    """Run the few-shot test loop of a config.

    Returns:
        dict: The run's summary (``results``: per shot count, ``shots``,
        ``trials``, ``mean``, ``std``, ``ci95``; ``num_queries``...), as
        written to ``fewshot_results.json``.
    """
    args = parse_args(argv)
    cfg = merge_args(Config.fromfile(args.config), args)
    setup_cpu_distributed(args.launcher, deepspeed=False)
    runner = Runner.from_cfg(cfg)
    runner.test()
    summary = runner.test_loop.summary
    if is_main_process():
        print(format_markdown(summary))
        print(f'results written to {runner.work_dir} '
              f'({get_dist_info()[1]} process(es))')
    return summary


if __name__ == '__main__':
    main()
