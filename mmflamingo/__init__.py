"""mmflamingo: Flamingo visual language models in the OpenMMLab style."""
from . import apis  # noqa: F401  (cheap: registers our models with MMPretrain)
# cheap too: MMPretrain without its multimodal models, see there
from . import compat  # noqa: F401
from .version import __version__

__all__ = ['__version__']
