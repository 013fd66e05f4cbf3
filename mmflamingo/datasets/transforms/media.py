"""Transforms that load and shape the media of one Flamingo sample.

A sample has N media, each a list of T frames (T = 1 for an image). Frames are
``(H, W, 3)`` uint8 RGB arrays until :class:`PackFlamingoInputs` stacks them.
"""
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmpretrain.structures import DataSample
from PIL import Image

from mmflamingo.registry import TRANSFORMS

MediaInput = Union[str, np.ndarray, Image.Image]


def load_rgb(item: MediaInput) -> np.ndarray:
    """An image path, PIL image or array -> ``(H, W, 3)`` uint8 RGB array.

    Raises:
        FileNotFoundError / ValueError: naming the file that failed.
    """
    if isinstance(item, np.ndarray):
        if item.ndim != 3 or item.shape[2] != 3:
            raise ValueError(f'an image array must be (H, W, 3), got '
                             f'{item.shape}')
        return item.astype(np.uint8, copy=False)
    if isinstance(item, Image.Image):
        return np.asarray(item.convert('RGB'))
    try:
        with Image.open(item) as img:
            return np.asarray(img.convert('RGB'))
    except FileNotFoundError:
        raise FileNotFoundError(f'image not found: {item}') from None
    except (OSError, Image.DecompressionBombError) as e:
        raise ValueError(f'cannot read image {item}: {e}') from None


@TRANSFORMS.register_module()
class LoadMedia(BaseTransform):
    """Load ``results['media']``: a list of images, or of lists of frames.

    Each entry is a path, a PIL image or an array (one image), or a list of
    those (the frames of a video). Adds ``media`` as a list of frame lists.
    """

    def transform(self, results: dict) -> dict:
        media = []
        for item in results.get('media', []):
            frames = item if isinstance(item, (list, tuple)) else [item]
            media.append([load_rgb(frame) for frame in frames])
        results['media'] = media
        return results


@TRANSFORMS.register_module()
class ResizeMedia(BaseTransform):
    """CLIP's resize: shorter side to ``size`` (bicubic), then centre crop.

    Args:
        size (int): Output height and width.
    """

    def __init__(self, size: int) -> None:
        self.size = size

    def _resize(self, frame: np.ndarray) -> np.ndarray:
        height, width = frame.shape[:2]
        scale = self.size / min(height, width)
        new_w = max(self.size, round(width * scale))
        new_h = max(self.size, round(height * scale))
        img = Image.fromarray(frame).resize((new_w, new_h), Image.BICUBIC)
        left, top = (new_w - self.size) // 2, (new_h - self.size) // 2
        img = img.crop((left, top, left + self.size, top + self.size))
        return np.asarray(img)

    def transform(self, results: dict) -> dict:
        results['media'] = [[self._resize(f) for f in frames]
                            for frames in results['media']]
        return results


@TRANSFORMS.register_module()
class PackFlamingoInputs(BaseTransform):
    """Stack media to ``inputs`` ``(N, T, C, H, W)`` uint8 and pack the text.

    Args:
        text_key (str): Key of the interleaved text (prompt for inference,
            whole sequence for training). Defaults to ``'text'``.
        meta_keys (Sequence[str]): Keys copied into the data sample.
            Defaults to ``()``.
    """

    def __init__(self,
                 text_key: str = 'text',
                 meta_keys: Sequence[str] = ()) -> None:
        self.text_key = text_key
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: dict) -> dict:
        media: List[List[np.ndarray]] = results.get('media', [])
        lengths = {len(frames) for frames in media}
        if len(lengths) > 1:
            raise ValueError(f'media of one sample have different frame '
                             f'counts {sorted(lengths)}')
        if media:
            array = np.stack([np.stack(frames) for frames in media])
            # (N, T, H, W, C) -> (N, T, C, H, W)
            inputs = torch.from_numpy(array).permute(0, 1, 4, 2, 3)
        else:
            inputs = torch.zeros((0, 1, 3, 1, 1), dtype=torch.uint8)
        sample = DataSample()
        sample.set_field(results[self.text_key], 'text', field_type='data')
        for key in self.meta_keys:
            if key in results:
                sample.set_field(results[key], key, field_type='metainfo')
        return dict(inputs=inputs.contiguous(), data_samples=sample)


def media_pipeline(size: int,
                   text_key: str = 'text',
                   meta_keys: Optional[Sequence[str]] = None) -> List[dict]:
    """The inference pipeline: load, resize and pack the media of a prompt.
    """
    return [
        dict(type='LoadMedia'),
        dict(type='ResizeMedia', size=size),
        dict(
            type='PackFlamingoInputs',
            text_key=text_key,
            meta_keys=meta_keys or ())
    ]
