"""Few-shot evaluation of a model already built, through the Runner."""
import itertools
import os
import tempfile
from typing import Optional, Union

import torch
from mmengine.config import Config
from mmengine.runner import Runner

__all__ = ['evaluate_fewshot']

_RUNS = itertools.count()


def evaluate_fewshot(model: torch.nn.Module,
                     cfg: Union[dict, Config],
                     work_dir: Optional[str] = None) -> dict:
    """Run the few-shot test loop of ``cfg`` on ``model``.

    What ``tools/test.py`` does for a config, for a model at hand (e.g. one
    being inspected, or timed): a Runner holding ``model`` runs
    :class:`~mmflamingo.engine.FewShotTestLoop`.

    Args:
        model (nn.Module): A Flamingo.
        cfg (dict | Config): With ``test_cfg``, ``test_dataloader`` and
            ``test_evaluator`` (other keys are not read).
        work_dir (str, optional): Where the results files and the Runner's
            logs go. Defaults to a temporary directory, removed afterwards.

    Returns:
        dict: The run's summary (see :attr:`FewShotTestLoop.summary`).
    """
    missing = [
        key for key in ('test_cfg', 'test_dataloader', 'test_evaluator')
        if key not in cfg
    ]
    if missing:
        raise KeyError(f'the config lacks {missing}')
    with tempfile.TemporaryDirectory() as scratch:
        runner = Runner(
            model=model,
            work_dir=work_dir or scratch,
            test_dataloader=dict(cfg['test_dataloader']),
            test_cfg=dict(cfg['test_cfg']),
            test_evaluator=cfg['test_evaluator'],
            default_scope='mmflamingo',
            randomness=dict(seed=0),
            # one logger and visualizer per run
            experiment_name=f'fewshot_{os.getpid()}_{next(_RUNS)}')
        runner.test()
        return runner.test_loop.summary
