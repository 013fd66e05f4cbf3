from .augment import RandomFlipMedia, RandomImagePlacement, attend_next_image
from .media import (LoadMedia, MediaInput, PackFlamingoInputs, ResizeMedia,
                    load_rgb, media_pipeline)
from .text import RandomCaption, SwapWordNegatives
from .video import LoadVideoFrames, sample_timestamps, write_video

__all__ = [
    'LoadMedia', 'MediaInput', 'ResizeMedia', 'PackFlamingoInputs', 'load_rgb',
    'media_pipeline', 'RandomFlipMedia', 'RandomImagePlacement',
    'attend_next_image', 'LoadVideoFrames', 'sample_timestamps',
    'RandomCaption', 'SwapWordNegatives', 'write_video'
]
