"""Keeps the streaming datasets' progress in the checkpoint."""
from typing import List, Optional

from mmengine.dist import all_gather_object
from mmengine.hooks import Hook

from mmflamingo.registry import HOOKS


@HOOKS.register_module()
class StreamResumeHook(Hook):
    """Save where every rank's streams stand, and hand it back on resume.

    After every iteration the progress of the training loop's streaming
    datasets (``train_loop.stream_state()``, see
    :class:`~mmflamingo.engine.MixtureTrainLoop`) is gathered from all
    ranks, since a checkpoint is written by rank 0 alone; it is saved as
    ``checkpoint['stream_state'] = dict(world_size=..., ranks=[...])``. On
    resume, every rank passes it to ``train_loop.resume_streams``. The
    loop registers this hook itself when it has a streaming dataset; it
    does nothing otherwise.
    """

    # before CheckpointHook (VERY_LOW), which saves in after_train_iter
    priority = 'NORMAL'

    def __init__(self) -> None:
        self._states: Optional[List[dict]] = None

    @staticmethod
    def _streaming_loop(runner):
        loop = runner.train_loop
        return loop if getattr(loop, 'progress', None) else None

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        loop = self._streaming_loop(runner)
        if loop is not None:
            self._states = all_gather_object(loop.stream_state())

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._states is not None:
            checkpoint['stream_state'] = dict(
                world_size=len(self._states), ranks=self._states)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        loop = self._streaming_loop(runner)
        if loop is not None:
            loop.resume_streams(checkpoint.get('stream_state'))
