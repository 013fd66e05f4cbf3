"""Transforms of a sample's text."""
import re
from typing import Sequence

import numpy as np
from mmcv.transforms import BaseTransform

from mmflamingo.registry import TRANSFORMS

__all__ = ['RandomCaption', 'SwapWordNegatives']


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


@TRANSFORMS.register_module()
class SwapWordNegatives(BaseTransform):
    """Hard negative captions: the caption with one word swapped for another
    of the same group, as NegCLIP (Yuksekgonul et al., ICLR 2023) makes
    them.

    A batch of random images rarely needs every word of a caption to tell
    its own caption from the others' (in the shapes world, the colours and
    places usually suffice), so a contrastive encoder learns little of the
    rest. A negative that differs from the true caption in one word (``a
    red circle`` -> ``a red square``) scores high unless the image embedding
    holds that word's attribute.

    For each group that has a word in the caption, one occurrence of its
    words (at random) is replaced by another word of the group (at random):
    a caption gets one negative per group it mentions, none if it mentions
    none. Words match whole and case-sensitively.

    Args:
        groups (Sequence[Sequence[str]]): Groups of interchangeable words,
            each of at least two words; no word in two groups.
        text_key (str): Key of the caption. Defaults to ``'text'``.
        out_key (str): Key to write the list of negatives to. Defaults to
            ``'hard_negatives'``.
    """

    def __init__(self,
                 groups: Sequence[Sequence[str]],
                 text_key: str = 'text',
                 out_key: str = 'hard_negatives') -> None:
        groups = [list(group) for group in groups]
        if not groups:
            raise ValueError('SwapWordNegatives: `groups` is empty')
        seen = set()
        for i, group in enumerate(groups):
            if len(set(group)) < 2:
                raise ValueError(
                    f'SwapWordNegatives: groups[{i}] = {group!r} needs at '
                    'least two distinct words to swap between')
            for word in group:
                if not isinstance(word, str) or not re.fullmatch(r'\w+', word):
                    raise ValueError(
                        f'SwapWordNegatives: groups[{i}] has {word!r}, not '
                        'a single word')
                if word in seen:
                    raise ValueError(
                        f'SwapWordNegatives: {word!r} is in two groups')
                seen.add(word)
        self.groups = groups
        self.text_key = text_key
        self.out_key = out_key
        self._patterns = [
            re.compile(r'\b(?:' + '|'.join(map(re.escape, group)) + r')\b')
            for group in groups
        ]

    def transform(self, results: dict) -> dict:
        text = results.get(self.text_key)
        if not isinstance(text, str):
            raise ValueError(
                f'SwapWordNegatives: {results.get("source", "a sample")} has '
                f'no caption string in {self.text_key!r}, got {text!r}')
        negatives = []
        for group, pattern in zip(self.groups, self._patterns):
            matches = list(pattern.finditer(text))
            if not matches:
                continue
            match = matches[np.random.randint(len(matches))]
            others = [word for word in group if word != match.group()]
            word = others[np.random.randint(len(others))]
            negatives.append(text[:match.start()] + word + text[match.end():])
        results[self.out_key] = negatives
        return results
