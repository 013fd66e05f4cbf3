"""Visual tokens of each evaluation image, computed once per run.

Few-shot evaluation shows the same support images again and again: as the
demos of many queries, in every shot count and trial. The frozen vision
encoder and the Perceiver Resampler give an image the same visual tokens
every time, so :class:`VisualTokenCache` computes them once per medium (an
image path, or a video's frame paths) and assembles each batch's
``(B, N, L, D)`` tokens from the cache; the language model then only reads
them.

Media are encoded in chunks of exactly ``batch_size`` (the last one padded
with zero images): every medium's tokens then come from a forward of the
same shape whichever other media share its chunk, so they do not depend on
the order queries are evaluated in, or on how queries are split between
processes.
"""
from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence

import torch
from mmengine.dataset import pseudo_collate

__all__ = ['VisualTokenCache', 'media_key']


def media_key(medium: Any) -> Optional[Hashable]:
    """The cache key of a medium: its path, or its frames' paths; None for
    in-memory media (arrays, PIL images), which are not cached."""
    if isinstance(medium, str):
        return medium
    if isinstance(medium, (list, tuple)) and medium and all(
            isinstance(m, str) for m in medium):
        return tuple(medium)
    return None


class VisualTokenCache:
    """Visual tokens (vision encoder + Perceiver) of media, by path.

    Args:
        model (nn.Module): A Flamingo (its ``data_preprocessor`` and
            ``extract_media``).
        pipeline (Callable): Loads and packs ``dict(media=[m],
            text='<image>')`` for one medium.
        batch_size (int): Media per encoder forward. Defaults to 16.
        device (str | torch.device, optional): Where cached tokens are kept
            (e.g. ``'cpu'`` to spare GPU memory). Defaults to None, the
            model's device.
    """

    def __init__(self,
                 model: torch.nn.Module,
                 pipeline: Callable[[dict], dict],
                 batch_size: int = 16,
                 device: Optional[str] = None) -> None:
        if batch_size < 1:
            raise ValueError(f'batch_size must be positive, got {batch_size}')
        self.model = model
        self.pipeline = pipeline
        self.batch_size = batch_size
        self.device = device
        self._tokens: Dict[Hashable, torch.Tensor] = {}
        self.num_encoded = 0

    def __len__(self) -> int:
        return len(self._tokens)

    @torch.no_grad()
    def _encode(self, media: List[Any]) -> List[torch.Tensor]:
        """``(L, D)`` visual tokens of each medium, in fixed-size chunks."""
        packed = [
            self.pipeline(dict(media=[m], text='<image>')) for m in media
        ]
        tokens = []
        for start in range(0, len(packed), self.batch_size):
            chunk = packed[start:start + self.batch_size]
            images = self.model.data_preprocessor(
                pseudo_collate(chunk), False)['images']  # (M, 1, T, C, H, W)
            real = len(images)
            # pad with zero images to the fixed chunk size
            images = torch.cat([
                images,
                images.new_zeros((self.batch_size - real, *images.shape[1:]))
            ])
            encoded = self.model.extract_media(images)[:real, 0]  # (M, L, D)
            if self.device is not None:
                encoded = encoded.to(self.device)
            tokens.extend(encoded.unbind(0))
        self.num_encoded += len(media)
        return tokens

    def __call__(self, media: Sequence[Sequence[Any]]) -> torch.Tensor:
        """The ``(B, max N, L, D)`` visual tokens of B media lists.

        Media lists shorter than the longest are zero-padded (the model
        reads only each sample's first ``num_media``). Media not seen before
        are encoded; in-memory media are encoded every time.
        """
        if not any(media):
            raise ValueError('VisualTokenCache needs at least one medium')
        missing: Dict[Hashable, Any] = {}
        uncached: List[Any] = []
        for sample_media in media:
            for m in sample_media:
                key = media_key(m)
                if key is None:
                    uncached.append(m)
                elif key not in self._tokens:
                    missing[key] = m
        if missing:
            self._tokens.update(
                zip(missing, self._encode(list(missing.values()))))
        fresh = iter(self._encode(uncached)) if uncached else iter(())
        rows = [[
            self._tokens[media_key(m)]
            if media_key(m) is not None else next(fresh) for m in sample_media
        ] for sample_media in media]
        first = next(t for row in rows for t in row)
        out = first.new_zeros(
            (len(rows), max(len(r) for r in rows), *first.shape))
        for i, row in enumerate(rows):
            for j, tokens in enumerate(row):
                out[i, j] = tokens
        return out.to(self.model.data_preprocessor.device)
