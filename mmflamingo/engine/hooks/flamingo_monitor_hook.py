"""What to watch while Flamingo trains: gates, throughput, skipped samples,
truncated texts."""
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


def _value(outputs: dict, key: str) -> float:
    """An output of the model as a float (0 if absent)."""
    return float(torch.as_tensor(outputs.get(key, 0)).detach())


def _last_count(hub, key: str) -> int:
    """The last value of a message hub count (0 if it has none)."""
    buffer = hub.log_scalars.get(key)
    return 0 if buffer is None else int(buffer.current())


def unwrap_flamingo(model):
    """The Flamingo inside DDP or DeepSpeed wrappers."""
    while hasattr(model, 'module'):
        model = model.module
    return model


@HOOKS.register_module()
class FlamingoMonitorHook(Hook):
    """Log tanh(gate) of every cross-attention block, tokens/s, samples/s,
    the running numbers of samples skipped as unusable
    (``skipped_samples``) and of texts truncation cut
    (``truncated_samples``), and the loss averaged over all processes
    (``loss_global``; ``loss`` is this process's).

    Scalars go to the message hub (``train/...``) and so to the text log and
    any visualisation backend. Throughput and counts are summed over all
    processes; samples/s counts the samples trained on, not the skipped
    ones. The running counts continue from a resumed checkpoint.
    """

    # above LoggerHook (BELOW_NORMAL), which writes the message hub out
    # after each iteration: at equal priority the LoggerHook, registered
    # first, would log these scalars one iteration late (none at the first)
    priority = 'NORMAL'

    def before_train(self, runner) -> None:
        hub = runner.message_hub
        # a resumed run's message hub holds the counts it was saved with
        self._skipped = _last_count(hub, 'train/skipped_samples')
        self._truncated = _last_count(hub, 'train/truncated_samples')
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
        outputs = outputs or {}
        samples = _samples(data_batch)
        # placeholders of skipped samples (see BaseFlamingoDataset)
        skipped = sum(bool(s.get('unusable', False)) for s in samples)
        # this process's numbers, summed over all processes in one call
        totals = [
            _value(outputs, 'loss'),
            len(samples) - skipped,
            _value(outputs, 'num_tokens'), skipped,
            _value(outputs, 'num_truncated')
        ]
        totals = torch.tensor(totals, dtype=torch.float64)
        if world > 1:
            all_reduce(totals)
        loss, trained, tokens, skipped, truncated = totals.tolist()
        if 'loss' in outputs:
            hub.update_scalar('train/loss_global', loss / world)
        hub.update_scalar('train/samples_per_s', trained / elapsed)
        if 'num_tokens' in outputs:
            hub.update_scalar('train/tokens_per_s', tokens / elapsed)
        self._skipped += int(skipped)
        self._truncated += int(truncated)
        hub.update_scalar('train/skipped_samples', self._skipped)
        hub.update_scalar('train/truncated_samples', self._truncated)
        head = unwrap_flamingo(runner.model).head
        with torch.no_grad():
            for name, block in head.xattn_blocks.items():
                hub.update_scalar(f'train/gate_attn_{name}',
                                  float(block.attn_gate.float().tanh()))
                hub.update_scalar(f'train/gate_ff_{name}',
                                  float(block.ff_gate.float().tanh()))
