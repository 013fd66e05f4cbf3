"""mmflamingo: Flamingo visual language models in the OpenMMLab style."""
# Both imports are cheap: apis registers our models with MMPretrain, compat
# makes MMPretrain import without its multimodal models (see there).
from . import apis, compat  # noqa: F401
from .version import __version__

__all__ = ['__version__']
