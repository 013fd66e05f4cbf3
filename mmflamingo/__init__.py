"""mmflamingo: Flamingo visual language models in the OpenMMLab style."""
from . import apis  # noqa: F401  (cheap: registers our models with MMPretrain)
from .version import __version__

__all__ = ['__version__']
