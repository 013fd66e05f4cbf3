from .checkpoint import allow_mmengine_checkpoints
from .hooks import *  # noqa: F401,F403
from .optim_constructor import TrainableOptimWrapperConstructor
from .optim_wrappers import NoGradStepDeepSpeedOptimWrapper
from .runner import *  # noqa: F401,F403

allow_mmengine_checkpoints()

__all__ = [
    'allow_mmengine_checkpoints', 'TrainableOptimWrapperConstructor',
    'NoGradStepDeepSpeedOptimWrapper'
]
