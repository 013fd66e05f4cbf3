"""Loading Flamingo checkpoints that hold only some of the weights."""
from collections import defaultdict
from typing import List, Tuple

from mmengine.logging import MMLogger, print_log
from torch import nn

from mmflamingo.checkpoint_io import load_checkpoint_file


def _summarise(keys: List[str], depth: int = 3) -> str:
    groups = defaultdict(int)
    for key in keys:
        groups['.'.join(key.split('.')[:depth])] += 1
    return ', '.join(f'{prefix}.* ({n})'
                     for prefix, n in sorted(groups.items()))


def load_flamingo_checkpoint(
        model: nn.Module,
        path: str,
        logger: str = 'current') -> Tuple[List[str], List[str]]:
    """Load trained weights into ``model`` and report honestly, in brief.

    Flamingo checkpoints hold the trained parameters (perceiver,
    cross-attention, new token rows); the frozen encoders come from their own
    pretrained files. Frozen weights absent from the checkpoint are counted,
    not listed; trained weights absent from it and unexpected keys are listed
    by prefix, since either means the checkpoint does not fit the config.

    Args:
        model (nn.Module): A :class:`Flamingo`.
        path (str): A ``.pth`` holding a state dict, or mmengine's checkpoint
            dict with ``state_dict``.
        logger (str): mmengine logger name. Defaults to ``'current'``.

    Returns:
        tuple[list[str], list[str]]: Missing trained keys, unexpected keys.
    """
    checkpoint = load_checkpoint_file(path)
    state_dict = checkpoint.get('state_dict', checkpoint)
    result = model.load_state_dict(state_dict, strict=False)
    trained = {name for name, p in model.named_parameters() if p.requires_grad}
    missing_trained = [k for k in result.missing_keys if k in trained]
    missing_frozen = sum(1 for name, p in model.named_parameters()
                         if not p.requires_grad and name not in state_dict)
    loaded = len(state_dict) - len(result.unexpected_keys)
    lines = [f'Loaded {loaded} tensors from {path}.']
    if missing_frozen:
        lines.append(f'{missing_frozen} frozen tensors are not in it and keep '
                     'their pretrained values.')
    if missing_trained:
        lines.append(f'MISSING trained tensors ({len(missing_trained)}): '
                     f'{_summarise(missing_trained)}')
    if result.unexpected_keys:
        lines.append(f'UNEXPECTED tensors ({len(result.unexpected_keys)}): '
                     f'{_summarise(result.unexpected_keys)}')
    print_log(
        ' '.join(lines),
        logger=MMLogger.get_current_instance()
        if logger == 'current' else logger)
    return missing_trained, list(result.unexpected_keys)
