"""Batches images and videos for Flamingo; text is tokenized by the model."""
from typing import List, Optional, Sequence

import torch
from mmengine.model import BaseDataPreprocessor

from mmflamingo.registry import MODELS

# CLIP's normalisation, on the 0-255 scale
CLIP_MEAN = (122.770938, 116.7460125, 104.09373615)
CLIP_STD = (68.5005327, 66.6321579, 70.32316305)


@MODELS.register_module()
class FlamingoDataPreprocessor(BaseDataPreprocessor):
    """Stack each sample's media into one padded, normalised tensor.

    Each sample's ``inputs`` is a ``(N_i, T, C, H, W)`` tensor (N_i media of
    T frames; N_i may be 0 for text only). The batch becomes
    ``images`` of shape ``(B, max N_i, T, C, H, W)``, zero-padded, and each
    data sample records its ``num_media``. The placeholders of skipped
    training samples (``unusable`` metainfo, see
    :class:`~mmflamingo.datasets.BaseFlamingoDataset`) are removed first, so
    a batch may become empty: ``images`` None and no data samples.

    Args:
        mean (Sequence[float]): Per-channel mean on the input's scale.
            Defaults to CLIP's (0-255 scale).
        std (Sequence[float]): Per-channel std. Defaults to CLIP's.
        dtype (str, optional): Cast the images to this dtype (e.g.
            ``'bfloat16'`` for a bf16 vision encoder). Defaults to None.
    """

    def __init__(self,
                 mean: Sequence[float] = CLIP_MEAN,
                 std: Sequence[float] = CLIP_STD,
                 dtype: Optional[str] = None) -> None:
        super().__init__()
        self.register_buffer('mean', torch.tensor(mean).view(-1, 1, 1), False)
        self.register_buffer('std', torch.tensor(std).view(-1, 1, 1), False)
        self.dtype = getattr(torch, dtype) if dtype else None

    def forward(self, data: dict, training: bool = False) -> dict:
        """Returns ``dict(images=Tensor | None, data_samples=list)``.

        A mixture (a dict of such batches keyed by dataset name) gives
        ``images`` and ``data_samples`` as dicts with the same keys.
        """
        if 'inputs' not in data:
            parts = {
                name: self.forward(batch, training)
                for name, batch in data.items()
            }
            return dict(
                images={
                    k: v['images']
                    for k, v in parts.items()
                },
                data_samples={
                    k: v['data_samples']
                    for k, v in parts.items()
                })
        inputs: List[torch.Tensor] = data['inputs']
        data_samples = data.get('data_samples')
        if data_samples is not None:
            kept = [
                i for i, sample in enumerate(data_samples)
                if not sample.get('unusable', False)
            ]
            inputs = [inputs[i] for i in kept]
            data_samples = [data_samples[i] for i in kept]
        data = self.cast_data(dict(inputs=inputs, data_samples=data_samples))
        inputs, data_samples = data['inputs'], data['data_samples']
        frames = {tuple(x.shape[1:]) for x in inputs if x.shape[0] > 0}
        if len(frames) > 1:
            raise ValueError(
                'all media of a batch need the same (T, C, H, W); got '
                f'{sorted(frames)}: resize images and sample a fixed number '
                'of frames in the pipeline')
        num_media = [x.shape[0] for x in inputs]
        if data_samples is not None:
            for sample, count in zip(data_samples, num_media):
                sample.set_field(count, 'num_media', field_type='metainfo')
        if not frames:
            return dict(images=None, data_samples=data_samples)
        shape = frames.pop()
        images = inputs[0].new_zeros((len(inputs), max(num_media), *shape),
                                     dtype=torch.float32)
        for i, x in enumerate(inputs):
            # (N_i, T, C, H, W), normalised per channel
            images[i, :x.shape[0]] = (x.float() - self.mean) / self.std
        if self.dtype is not None:
            images = images.to(self.dtype)
        return dict(images=images, data_samples=data_samples)
