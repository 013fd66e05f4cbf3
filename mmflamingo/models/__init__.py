from .backbones import *  # noqa: F401,F403
from .data_preprocessor import FlamingoDataPreprocessor
from .flamingo import Flamingo
from .heads import *  # noqa: F401,F403
from .layers import *  # noqa: F401,F403
from .necks import *  # noqa: F401,F403
from .pretrainers import *  # noqa: F401,F403

__all__ = ['Flamingo', 'FlamingoDataPreprocessor']
