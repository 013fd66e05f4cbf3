from .media import (LoadMedia, MediaInput, PackFlamingoInputs, ResizeMedia, load_rgb,
                    media_pipeline)

__all__ = [
    'LoadMedia', 'MediaInput', 'ResizeMedia', 'PackFlamingoInputs', 'load_rgb',
    'media_pipeline'
]
