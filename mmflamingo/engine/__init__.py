from mmflamingo.checkpoint_io import (allow_mmengine_checkpoints,
                                      load_checkpoint_file)
from .checkpoint import load_local_checkpoint, register_local_checkpoint_loader
from .hooks import *  # noqa: F401,F403
from .optim_constructor import TrainableOptimWrapperConstructor
from .optim_wrappers import NoGradStepDeepSpeedOptimWrapper
from .runner import *  # noqa: F401,F403

allow_mmengine_checkpoints()
register_local_checkpoint_loader()

__all__ = [
    'allow_mmengine_checkpoints', 'load_checkpoint_file',
    'load_local_checkpoint', 'register_local_checkpoint_loader',
    'TrainableOptimWrapperConstructor', 'NoGradStepDeepSpeedOptimWrapper'
]
