"""Train a Flamingo: ``python tools/train.py CONFIG [options]``.

Configs with a ``strategy`` (e.g. DeepSpeed ZeRO-1) run on mmengine's
``FlexibleRunner``, the others on its ``Runner``. On a machine without GPUs,
one process or several (``--launcher pytorch`` under torchrun) use gloo.
"""
import argparse
import os
import os.path as osp
from typing import List, Optional

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import FlexibleRunner, Runner

from mmflamingo.engine.dist import setup_cpu_distributed


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a Flamingo')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='where to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from this checkpoint; without a path, from the latest '
        'checkpoint in the work dir')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='bf16 automatic mixed precision (Runner configs, on GPU)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. train_cfg.max_iters=100')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command line to the config."""
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        if cfg.get('strategy') is not None:
            raise ValueError('--amp is for Runner configs; a strategy config '
                             'sets its precision itself (e.g. bf16 in the '
                             'DeepSpeed config)')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.dtype = 'bfloat16'
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    return cfg


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    cfg = merge_args(Config.fromfile(args.config), args)
    strategy = cfg.get('strategy')
    is_deepspeed = strategy is not None and 'DeepSpeed' in strategy.get(
        'type', '')
    setup_cpu_distributed(args.launcher, is_deepspeed)
    if 'runner_type' in cfg:
        runner = RUNNERS.build(cfg)
    elif strategy is not None:
        runner = FlexibleRunner.from_cfg(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    runner.train()


if __name__ == '__main__':
    main()
