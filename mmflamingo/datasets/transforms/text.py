"""Transforms of a sample's text."""
import numpy as np
from mmcv.transforms import BaseTransform

from mmflamingo.registry import TRANSFORMS

__all__ = ['RandomCaption']


@TRANSFORMS.register_module()
class RandomCaption(BaseTransform):
    """Pick one of a sample's reference captions at random.

    For training on caption datasets with several references per image
    (e.g. :class:`KarpathyCaptionDataset`'s ``captions``): each visit of the
    image sees one of them.

    Args:
        captions_key (str): Key of the list of captions. Defaults to
            ``'captions'``.
        out_key (str): Key to write the chosen caption to. Defaults to
            ``'text'``.
    """

    def __init__(self,
                 captions_key: str = 'captions',
                 out_key: str = 'text') -> None:
        self.captions_key = captions_key
        self.out_key = out_key

    def transform(self, results: dict) -> dict:
        captions = results.get(self.captions_key)
        if not captions:
            raise ValueError(
                f'RandomCaption: {results.get("source", "a sample")} has no '
                f'{self.captions_key!r} to choose from')
        results[self.out_key] = captions[np.random.randint(len(captions))]
        return results
