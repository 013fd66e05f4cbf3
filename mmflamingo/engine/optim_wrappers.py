"""Optimizer wrappers mmengine does not provide."""
import torch
from mmengine._strategy.deepspeed import DeepSpeedOptimWrapper

from mmflamingo.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class NoGradStepDeepSpeedOptimWrapper(DeepSpeedOptimWrapper):
    """mmengine's DeepSpeed wrapper, stepping under ``torch.no_grad()``.

    DeepSpeed 0.18's ZeRO-1/2 optimizer builds its flat bf16 parameter buffer
    outside ``no_grad``, so the buffer requires grad; after a step the
    all-gather writes into it in grad mode, and gloo (CPU) splits it into
    views first, which autograd forbids ("Output 0 of Split is a view and is
    being modified inplace"). Stepping under ``no_grad`` is what an optimizer
    step means anyway; NCCL runs are unaffected either way.
    """

    def step(self, **kwargs) -> None:
        with torch.no_grad():
            super().step(**kwargs)
