"""Training on several datasets at once, the way the Flamingo paper does."""
import logging
from typing import Dict, Iterator, List, Optional, Sequence, Union

from mmengine.dist import get_dist_info
from mmengine.logging import print_log
from mmengine.runner import IterBasedTrainLoop
from mmengine.runner.loops import _InfiniteDataloaderIterator
from torch.utils.data import ConcatDataset, DataLoader

from mmflamingo.datasets import LossWeightedStream, loss_weighted
from mmflamingo.registry import LOOPS
from ..hooks import StreamResumeHook
from .stream_progress import StreamProgress

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
    logs each dataset's loss.

    Streaming datasets (:class:`BaseStreamingDataset`) order and split
    their samples themselves, so their dataloaders take no sampler (the
    shared ``sampler`` is ignored for them), and they cannot be merged.
    Their length, which mmengine asks for, is the samples of ``max_iters``
    batches (see :class:`LossWeightedStream`).

    Resuming: an indexed dataset's dataloader is advanced past the batches
    already trained on, as mmengine does for one dataloader, which replays
    the run exactly. A streaming dataset is not re-read: the loop records
    which batches it took from each worker (:class:`StreamProgress`),
    :class:`StreamResumeHook` (registered by the loop) keeps that in the
    checkpoint for every rank, and on resume each worker's stream starts
    where the last batch taken from it left it (see
    :class:`BaseStreamingDataset` for what that reproduces). With another
    number of processes or workers than the checkpoint's, the streams
    start at the next epoch instead.

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
        self.dataloaders = self._build_dataloaders(runner, dataloader,
                                                   max_iters)
        self.progress: Dict[str, StreamProgress] = {
            name: StreamProgress(loader.num_workers)
            for name, loader in self.dataloaders.items()
            if isinstance(loader.dataset, LossWeightedStream)
        }
        self._streams_resumed = False
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
        if self.progress and not any(
                isinstance(hook, StreamResumeHook) for hook in runner.hooks):
            runner.register_hook(StreamResumeHook())

    def _build_dataloaders(self, runner, config: dict,
                           max_iters: int) -> Dict[str, DataLoader]:
        shared = dict(config)
        weighted = {}
        for name, own in shared.pop('datasets').items():
            cfg = {**shared, **own}
            if 'dataset' not in cfg:
                raise KeyError(
                    f'train_dataloader.datasets.{name} has no `dataset`')
            cfg['dataset'] = loss_weighted(cfg['dataset'],
                                           cfg.pop('loss_weight', 1.0), name)
            if isinstance(cfg['dataset'], LossWeightedStream):
                cfg['sampler'] = None
                # at most one batch per iteration: the run is its epoch
                cfg['dataset'].num_samples = max_iters * cfg.get(
                    'batch_size', 1)
            weighted[name] = cfg
        streams = [
            name for name, cfg in weighted.items()
            if isinstance(cfg['dataset'], LossWeightedStream)
        ]
        if self.strategy == 'merge' and streams:
            raise ValueError(
                f'train_cfg.strategy="merge" cannot merge the streaming '
                f'datasets {streams}: use "accumulate"')
        if self.strategy == 'merge':
            name = next(iter(weighted))
            merged = dict(weighted[name])
            merged['dataset'] = ConcatDataset(
                [cfg['dataset'] for cfg in weighted.values()])
            weighted = {'mixture': merged}
        self._loader_cfgs = weighted
        return {
            name: self._build_dataloader(runner, cfg)
            for name, cfg in weighted.items()
        }

    @staticmethod
    def _build_dataloader(runner, cfg: dict) -> DataLoader:
        return runner.build_dataloader(
            cfg,
            seed=runner.seed,
            diff_rank_seed=runner._randomness_cfg.get('diff_rank_seed', False))

    def stream_state(self) -> Dict[str, dict]:
        """This rank's progress in each streaming dataset."""
        return {name: p.state_dict() for name, p in self.progress.items()}

    def resume_streams(self, state: Optional[dict]) -> None:
        """Start the streams where a checkpoint's ``stream_state`` (see
        :class:`StreamResumeHook`) says this rank's stood.

        Args:
            state (dict, optional): ``dict(world_size, ranks)``; None (a
                checkpoint without it) leaves the streams to be advanced by
                reading, as indexed datasets are.
        """
        if state is None:
            print_log(
                'The checkpoint does not say where the streaming datasets '
                f'{list(self.progress)} stood: they will be read again up '
                'to where the run was',
                logger='current',
                level=logging.WARNING)
            return
        rank, world_size = get_dist_info()
        for name, progress in self.progress.items():
            states = [ranks.get(name) for ranks in state['ranks']]
            mine = states[rank] if state['world_size'] == world_size else None
            if mine is not None and mine['num_workers'] == progress.num_roles:
                progress.load_state_dict(mine)
            else:
                progress.restart_after(states)
                print_log(
                    f'{name}: the checkpoint was written by '
                    f'{state["world_size"]} processes with '
                    f'{[s and s["num_workers"] for s in states]} dataloader '
                    f'workers, this run has {world_size} with '
                    f'{progress.num_roles}: its streams start at epoch '
                    f'{progress.cursors[0].epoch}',
                    logger='current',
                    level=logging.WARNING)
            dataset = self.dataloaders[name].dataset.dataset
            dataset.set_start(progress.cursors, progress.next_role)
        self._streams_resumed = True

    def _restart_streams(self) -> None:
        """New dataloaders for the streaming datasets, whose workers start
        at the cursors :meth:`resume_streams` set."""
        for name in self.progress:
            old = self.dataloaders[name]
            cfg = dict(self._loader_cfgs[name], dataset=old.dataset)
            self.dataloaders[name] = self._build_dataloader(self.runner, cfg)
            self.iterators[name] = _InfiniteDataloaderIterator(
                self.dataloaders[name])
            if old is self.dataloader:
                self.dataloader = self.dataloaders[name]
                self.dataloader_iterator = self.iterators[name]

    def _names_at(self, iteration: int) -> List[str]:
        if self.strategy == 'round_robin':
            return [self.names[iteration % len(self.names)]]
        return self.names

    def _next_batch(self,
                    iteration: int,
                    names: Optional[Sequence[str]] = None
                    ) -> Dict[str, Union[dict, list]]:
        """The batches of iteration ``iteration`` (of the datasets in
        ``names`` only, when given)."""
        batches = {}
        for name in self._names_at(iteration):
            if names is not None and name not in names:
                continue
            batches[name] = next(self.iterators[name])
            if name in self.progress:
                self.progress[name].update(batches[name])
        return batches

    def run(self) -> None:
        """Launch training."""
        self.runner.call_hook('before_train')
        self.runner.call_hook('before_train_epoch')
        if self._iter > 0:
            replayed = list(self.names)
            if self._streams_resumed:
                self._restart_streams()
                replayed = [n for n in self.names if n not in self.progress]
            print_log(
                f'Advancing the dataloaders {self._iter} steps past the data '
                f'already trained on: {replayed}',
                logger='current',
                level=logging.WARNING)
            if replayed:
                for iteration in range(self._iter):
                    self._next_batch(iteration, replayed)
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
        self.stop_workers()
        return self.runner.model

    def stop_workers(self) -> None:
        """Stop the dataloaders' worker processes: training is over.

        Persistent workers otherwise live as long as the Runner, which is
        cyclic garbage: finalised by the garbage collector, each loader's
        iterator waited out its full join timeout (5 s) for its workers
        (16 s for the recipe's three loaders), where stopping them here
        takes milliseconds. Loaders without workers are left as they are.
        """
        for name, loader in self.dataloaders.items():
            workers = getattr(self.iterators[name], '_iterator', None)
            shutdown = getattr(workers, '_shutdown_workers', None)
            if shutdown is not None:
                shutdown()
            # the DataLoader's own reference to its persistent iterator
            if getattr(loader, '_iterator', None) is workers:
                loader._iterator = None
