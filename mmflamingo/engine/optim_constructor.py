"""An optimizer that holds the trained parameters only."""
from typing import List

from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn

from mmflamingo.registry import OPTIM_WRAPPER_CONSTRUCTORS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class TrainableOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor, for the trained parameters only.

    The default hands every parameter to the optimizer (and logs a line for
    each frozen one); for Flamingo that is the whole LM and vision encoder,
    which ZeRO would then partition and track for nothing. Here the
    optimizer sees the parameters that require gradients, grouped by
    learning rate and weight decay. ``paramwise_cfg.custom_keys`` set
    ``lr_mult`` and ``decay_mult`` as in mmengine (the longest key contained
    in a parameter's name wins), e.g. no weight decay on the perceiver and
    the new token rows.
    """

    def __call__(self, model: nn.Module):
        # the paramwise path is the one that goes through add_params
        self.paramwise_cfg.setdefault('custom_keys', {})
        return super().__call__(model)

    def add_params(self, params: List[dict], module: nn.Module, *args,
                   **kwargs) -> None:
        custom_keys = self.paramwise_cfg['custom_keys']
        keys = sorted(custom_keys, key=len, reverse=True)
        groups = {}  # (lr, weight decay) -> group: few groups suit ZeRO
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            lr, weight_decay = self.base_lr, self.base_wd
            key = next((k for k in keys if k in name), None)
            if key is not None:
                multipliers = custom_keys[key]
                lr = lr * multipliers.get('lr_mult', 1.0)
                if weight_decay is not None:
                    weight_decay *= multipliers.get('decay_mult', 1.0)
            group = groups.setdefault((lr, weight_decay), dict(params=[]))
            group['params'].append(param)
            if lr is not None:
                group['lr'] = lr
            if weight_decay is not None:
                group['weight_decay'] = weight_decay
        params.extend(groups.values())
