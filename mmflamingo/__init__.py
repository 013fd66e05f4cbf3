"""mmflamingo: Flamingo visual language models in the OpenMMLab style."""
from .version import __version__

__all__ = ['__version__']
