"""Training augmentations of a whole sample: its images, its text.
"""
from typing import List, Tuple

import numpy as np
from mmcv.transforms import BaseTransform

from mmflamingo.registry import TRANSFORMS
from mmflamingo.tokens import END_OF_CHUNK_TOKEN, MEDIA_TOKEN


@TRANSFORMS.register_module()
class RandomFlipMedia(BaseTransform):
    """Flip all images and frames of a sample horizontally, or none.

    One coin per sample, as OpenFlamingo flips the stacked images of a
    sample together. Place it after :class:`LoadMedia`. Adds ``flip``.

    Known issue: the text is not changed, so a caption that says "left" or
    "right" describes a flipped image wrongly (OpenFlamingo has the same
    issue). Leave it out of pipelines where that matters.

    Args:
        prob (float): Probability of flipping. Defaults to 0.5.
    """

    def __init__(self, prob: float = 0.5) -> None:
        if not 0 <= prob <= 1:
            raise ValueError(f'prob must be in [0, 1], got {prob}')
        self.prob = prob

    def transform(self, results: dict) -> dict:
        flip = bool(np.random.rand() < self.prob)
        if flip:
            media = results.get('media', [])
            if not all(
                    isinstance(frame, np.ndarray) for frames in media
                    for frame in frames):
                raise TypeError('RandomFlipMedia needs loaded frames: place '
                                'it after LoadMedia')
            # (H, W, C): flip W, then copy: a negative stride breaks PIL
            results['media'] = [[
                np.ascontiguousarray(frame[:, ::-1]) for frame in frames
            ] for frames in media]
        results['flip'] = flip
        return results


def attend_next_image(text: str) -> Tuple[str, List[int]]:
    """Rewrite ``text`` so that each chunk of text sees the next image.

    ``text`` splits at its markers into ``c_0 <image> c_1 ... <image> c_n``:
    image ``i`` (from 1) comes after ``c_{i-1}`` and before ``c_i``. The
    output is ``<image> b_0 <eoc> <image> b_1 <eoc> ... <image> b_{n-1}
    <eoc> c_n``, where ``b_{i-1}`` is ``c_{i-1}`` without a trailing
    ``<|endofchunk|>``: image ``i``'s marker moves back to the start of the
    chunk before it. An image whose chunk before is blank is dropped (no
    text would see it). No text is removed: only ``<image>`` and
    ``<|endofchunk|>`` tokens move, appear or go.

    Args:
        text (str): Training text with ``<image>`` markers.

    Returns:
        tuple[str, list[int]]: The new text and the (0-based) indices of the
        images it keeps, in order; ``(text, [])`` when no image has text
        before it.
    """
    *chunks, tail = text.split(MEDIA_TOKEN)
    pieces, kept = [], []
    for index, chunk in enumerate(chunks):
        if chunk.endswith(END_OF_CHUNK_TOKEN):
            chunk = chunk[:-len(END_OF_CHUNK_TOKEN)]
        if chunk.strip():
            pieces.append(f'{MEDIA_TOKEN}{chunk}{END_OF_CHUNK_TOKEN}')
            kept.append(index)
    if not kept:
        return text, []
    return ''.join(pieces) + tail, kept


@TRANSFORMS.register_module()
class RandomImagePlacement(BaseTransform):
    """The paper's image placement augmentation for interleaved documents.

    Flamingo trains on M3W with each text token attending to the image just
    before it or, for a document with probability ``p_next = 1/2``, to the
    image just after it. Our model attends from each token to the most
    recent ``<image>`` marker before it, so "the next image" is realised by
    moving each image's marker back to the start of the text chunk that
    precedes the image (:func:`attend_next_image`). With ``<eoc>`` for
    ``<|endofchunk|>``, and text chunks P (before the first image), A and
    B::

        before: P<image>A<eoc><image>B<eoc></s>
        after:  <image>P<eoc><image>A<eoc>B<eoc></s>

    P now sees the first image and A the second, each learned
    up to its ``<|endofchunk|>`` (OpenFlamingo's labels learn the text from
    an ``<image>`` to the next ``<|endofchunk|>``). The last chunk has no
    next image: as in the paper it is not conditioned on a following
    image, and with those labels it is context only (not learned). Moving
    markers *after* their chunk instead would be wrong: the chunk after
    would then see the previous chunk's image.

    Images with no text before them are dropped from ``media`` with their
    markers (the document starting with an image loses its first image). A
    sample where no image has text before it, an image-text pair for
    instance, is left unchanged: apply this to interleaved documents, as
    the paper does. Place it anywhere before :class:`PackFlamingoInputs`.
    Adds ``attend_next``.

    Args:
        prob (float): Probability ``p_next`` of attending to the next image.
            Defaults to 0.5.
    """

    def __init__(self, prob: float = 0.5) -> None:
        if not 0 <= prob <= 1:
            raise ValueError(f'prob must be in [0, 1], got {prob}')
        self.prob = prob

    def transform(self, results: dict) -> dict:
        attend_next = False
        if np.random.rand() < self.prob:
            text, kept = attend_next_image(results['text'])
            if kept:
                results['text'] = text
                results['media'] = [results['media'][i] for i in kept]
                attend_next = True
        results['attend_next'] = attend_next
        return results
