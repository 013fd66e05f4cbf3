"""What to watch while Flamingo trains: gates, throughput, skipped samples."""
import time
from typing import Optional

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook

from mmflamingo.registry import HOOKS


def _samples(data_batch: Optional[dict]):
    if not data_batch:
        return []
    if 'data_samples' in data_batch:
        return data_batch['data_samples']
    return [s for b in data_batch.values() for s in _samples(b)]


def unwrap_flamingo(model):
    """The Flamingo inside DDP or DeepSpeed wrappers."""
    while hasattr(model, 'module'):
        model = model.module
    return model


@HOOKS.register_module()
class FlamingoMonitorHook(Hook):
    """Log tanh(gate) of every cross-attention block, tokens/s, samples/s,
    the number of samples skipped as unusable, and the loss averaged over
    all processes (``loss_global``; ``loss`` is this process's).

    Scalars go to the message hub (``train/...``) and so to the text log and
    any visualisation backend. Throughput counts all processes (this
    process's count times the world size).
    """

    # above LoggerHook (BELOW_NORMAL), which writes the message hub out
    # after each iteration: at equal priority the LoggerHook, registered
    # first, would log these scalars one iteration late (none at the first)
    priority = 'NORMAL'

    def before_train(self, runner) -> None:
        self._skipped = 0
        self._last = None

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch=None) -> None:
        if self._last is None:
            self._last = time.perf_counter()

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        now = time.perf_counter()
        elapsed = max(now - self._last, 1e-9)
        self._last = now
        hub = runner.message_hub
        world = get_world_size()
        if outputs and 'loss' in outputs:
            # each process logs its own loss; this is the mean over all
            loss = torch.as_tensor(outputs['loss']).detach().float().reshape(1)
            if world > 1:
                all_reduce(loss, op='mean')
            hub.update_scalar('train/loss_global', float(loss))
        hub.update_scalar('train/samples_per_s',
                          len(_samples(data_batch)) * world / elapsed)
        if outputs and 'num_tokens' in outputs:
            hub.update_scalar('train/tokens_per_s',
                              float(outputs['num_tokens']) * world / elapsed)
        self._skipped += sum(
            s.get('num_skipped', 0) for s in _samples(data_batch))
        hub.update_scalar('train/skipped_samples', self._skipped)
        head = unwrap_flamingo(runner.model).head
        with torch.no_grad():
            for name, block in head.xattn_blocks.items():
                hub.update_scalar(f'train/gate_attn_{name}',
                                  float(block.attn_gate.float().tanh()))
                hub.update_scalar(f'train/gate_ff_{name}',
                                  float(block.ff_gate.float().tanh()))
