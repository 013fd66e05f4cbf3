"""The model inputs of a batch of few-shot prompts and their media."""
from typing import Callable, Optional, Sequence

from mmengine.dataset import pseudo_collate
from mmpretrain.structures import DataSample

from .media_cache import VisualTokenCache

__all__ = ['pack_inputs']


def pack_inputs(model,
                pipeline: Callable[[dict], dict],
                prompts: Sequence[str],
                media: Sequence[list],
                cache: Optional[VisualTokenCache] = None) -> dict:
    """The model inputs of B prompts and their media.

    Args:
        model (nn.Module): A Flamingo.
        pipeline (Callable): Packs ``dict(media=..., text=...)``.
        prompts (Sequence[str]): The prompts.
        media (Sequence[list]): The media of each prompt.
        cache (VisualTokenCache, optional): Gives the visual tokens, so that
            no image is encoded twice. Defaults to None (images are loaded
            and encoded by the model).

    Returns:
        dict: ``images``, ``data_samples`` and ``media_tokens``, the
        arguments of the model's ``predict`` and ``score``.
    """
    if cache is None or not any(media):
        packed = [
            pipeline(dict(media=m, text=prompt))
            for prompt, m in zip(prompts, media)
        ]
        data = model.data_preprocessor(pseudo_collate(packed), False)
        return dict(**data, media_tokens=None)
    samples = []
    for prompt, m in zip(prompts, media):
        sample = DataSample(metainfo=dict(num_media=len(m)))
        sample.text = prompt
        samples.append(sample)
    return dict(images=None, data_samples=samples, media_tokens=cache(media))
