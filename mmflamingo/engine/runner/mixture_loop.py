"""Training on several datasets at once, the way the Flamingo paper does."""
import logging
from typing import Dict, Iterator, List, Union

from mmengine.logging import print_log
from mmengine.runner import IterBasedTrainLoop
from mmengine.runner.loops import _InfiniteDataloaderIterator
from torch.utils.data import ConcatDataset, DataLoader

from mmflamingo.datasets import LossWeightedDataset
from mmflamingo.registry import LOOPS

STRATEGIES = ('accumulate', 'round_robin', 'merge')


@LOOPS.register_module()
class MixtureTrainLoop(IterBasedTrainLoop):
    """Iteration-based training over a weighted mixture of datasets.

    ``train_dataloader`` holds the dataloader settings the datasets share,
    and under ``datasets`` each dataset's config with its ``loss_weight``
    and any setting of its own::

        train_dataloader = dict(
            batch_size=4,
            num_workers=2,
            sampler=dict(type='InfiniteSampler', shuffle=True),
            datasets=dict(
                mmc4=dict(dataset=..., loss_weight=1.0),
                laion=dict(dataset=..., batch_size=8, loss_weight=0.2)))

    (The shared ``batch_size`` is also what DeepSpeed is told is the
    micro-batch size.)

    Strategies:

    - ``'accumulate'`` (the paper's): every iteration takes one batch from
      every dataset and the optimizer steps on the sum of their weighted
      losses, i.e. the weighted sum of their gradients.
    - ``'round_robin'``: iteration i takes a batch of dataset ``i % n`` only
      (the paper found it 7.8 points worse; kept for comparison).
    - ``'merge'``: one dataloader over the concatenated datasets, with the
      first dataloader's settings; each sample keeps its dataset's weight.
      A batch then mixes datasets, so their media need the same number of
      frames (images with images; videos go in their own dataset).

    Each sample is tagged with its ``loss_weight`` and ``dataset_name`` by
    :class:`LossWeightedDataset`; :meth:`Flamingo.loss` weights by it and
    logs each dataset's loss. On resume every dataloader is advanced past
    the batches already trained on, as mmengine does for one dataloader.

    Args:
        runner (Runner): The runner.
        dataloader (dict): Shared dataloader settings plus ``datasets``,
            the named dataset configs with ``loss_weight``.
        max_iters (int): Total optimizer steps.
        strategy (str): ``'accumulate'``, ``'round_robin'`` or ``'merge'``.
            Defaults to ``'accumulate'``.
        val_begin (int): Iteration to start validating. Defaults to 1.
        val_interval (int): Validation interval. Defaults to 1000.
    """

    def __init__(self,
                 runner,
                 dataloader: Dict[str, dict],
                 max_iters: int,
                 strategy: str = 'accumulate',
                 val_begin: int = 1,
                 val_interval: int = 1000) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f'train_cfg.strategy must be one of '
                             f'{STRATEGIES}, got {strategy!r}')
        if not isinstance(dataloader, dict) or not isinstance(
                dataloader.get('datasets'),
                dict) or not dataloader['datasets']:
            raise TypeError('MixtureTrainLoop needs train_dataloader.datasets:'
                            ' a dict of named dataset configs')
        self.strategy = strategy
        self.dataloaders = self._build_dataloaders(runner, dataloader)
        self.names: List[str] = list(self.dataloaders)
        first = self.dataloaders[self.names[0]]
        super().__init__(
            runner,
            first,
            max_iters,
            val_begin=val_begin,
            val_interval=val_interval)
        self.iterators: Dict[str, Iterator] = {
            name: (self.dataloader_iterator
                   if loader is first else _InfiniteDataloaderIterator(loader))
            for name, loader in self.dataloaders.items()
        }

    def _build_dataloaders(self, runner,
                           config: dict) -> Dict[str, DataLoader]:
        shared = dict(config)
        weighted = {}
        for name, own in shared.pop('datasets').items():
            cfg = {**shared, **own}
            if 'dataset' not in cfg:
                raise KeyError(
                    f'train_dataloader.datasets.{name} has no `dataset`')
            cfg['dataset'] = LossWeightedDataset(cfg['dataset'],
                                                 cfg.pop('loss_weight', 1.0),
                                                 name)
            weighted[name] = cfg
        if self.strategy == 'merge':
            name = next(iter(weighted))
            merged = dict(weighted[name])
            merged['dataset'] = ConcatDataset(
                [cfg['dataset'] for cfg in weighted.values()])
            weighted = {'mixture': merged}
        seed = runner.seed
        diff_rank_seed = runner._randomness_cfg.get('diff_rank_seed', False)
        return {
            name:
            runner.build_dataloader(
                cfg, seed=seed, diff_rank_seed=diff_rank_seed)
            for name, cfg in weighted.items()
        }

    def _names_at(self, iteration: int) -> List[str]:
        if self.strategy == 'round_robin':
            return [self.names[iteration % len(self.names)]]
        return self.names

    def _next_batch(self, iteration: int) -> Dict[str, Union[dict, list]]:
        return {
            name: next(self.iterators[name])
            for name in self._names_at(iteration)
        }

    def run(self) -> None:
        """Launch training."""
        self.runner.call_hook('before_train')
        self.runner.call_hook('before_train_epoch')
        if self._iter > 0:
            print_log(
                f'Advancing the dataloaders {self._iter} steps past the data '
                'already trained on',
                logger='current',
                level=logging.WARNING)
            for iteration in range(self._iter):
                self._next_batch(iteration)
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            self.run_iter(self._next_batch(self._iter))
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None
                    and self._iter >= self.val_begin
                    and (self._iter % self.val_interval == 0
                         or self._iter == self._max_iters)):
                self.runner.val_loop.run()
        self.runner.call_hook('after_train_epoch')
        self.runner.call_hook('after_train')
        return self.runner.model
