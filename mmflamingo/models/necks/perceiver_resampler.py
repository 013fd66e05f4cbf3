"""The Perceiver Resampler: any number of visual features -> fixed tokens."""
from typing import Optional

import torch
from mmengine.model import BaseModule
from torch import nn

from mmflamingo.registry import MODELS
from ..layers import FeedForward, PerceiverAttention


@MODELS.register_module()
class PerceiverResampler(BaseModule):
    """Resample each medium's features into ``num_latents`` visual tokens.

    Learned latents cross-attend to the medium's features (all its frames'
    patches, with a learned temporal embedding added per frame) concatenated
    with the latents themselves, ``depth`` times, each attention followed by
    an FFN.

    Args:
        dim (int): Feature size of the vision encoder's tokens.
        depth (int): Number of attention + FFN layers. Defaults to 6.
        dim_head (int): Size of one attention head. Defaults to 64.
        heads (int): Number of heads. Defaults to 8.
        num_latents (int): Visual tokens per medium. Defaults to 64.
        ff_mult (int): FFN hidden size as a multiple of ``dim``.
            Defaults to 4.
        act (str): FFN activation: ``'gelu'`` as OpenFlamingo or
            ``'squared_relu'`` as the paper. Defaults to ``'gelu'``.
        max_num_frames (int, optional): If set, learn temporal embeddings for
            up to this many frames per medium (video). OpenFlamingo v2 has
            none. Defaults to None.
        init_cfg (dict, optional): mmengine initialisation config.
            Defaults to None.
    """

    def __init__(self,
                 dim: int,
                 depth: int = 6,
                 dim_head: int = 64,
                 heads: int = 8,
                 num_latents: int = 64,
                 ff_mult: int = 4,
                 act: str = 'gelu',
                 max_num_frames: Optional[int] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.dim = dim
        self.num_latents = num_latents
        self.max_num_frames = max_num_frames
        self.latents = nn.Parameter(torch.randn(num_latents, dim))
        self.frame_embs = (
            nn.Parameter(torch.randn(max_num_frames, dim))
            if max_num_frames else None)
        self.layers = nn.ModuleList([
            nn.ModuleDict(
                dict(
                    attn=PerceiverAttention(
                        dim, dim_head=dim_head, heads=heads),
                    ff=FeedForward(dim, mult=ff_mult, act=act)))
            for _ in range(depth)
        ])
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Resample.

        Args:
            x (Tensor): ``(B, N, T, P, D)``: N media, T frames, P tokens.

        Returns:
            Tensor: ``(B, N, num_latents, D)``.
        """
        if x.dim() != 5:
            raise ValueError('PerceiverResampler expects (B, N, T, P, D) '
                             f'features, got shape {tuple(x.shape)}')
        num_frames = x.shape[2]
        x = x.to(self.latents.dtype)
        if self.frame_embs is not None:
            if num_frames > self.max_num_frames:
                raise ValueError(
                    f'a medium has {num_frames} frames but the perceiver '
                    f'learned embeddings for max_num_frames='
                    f'{self.max_num_frames}')
            # (T, D) -> (T, 1, D), broadcast over batch, media and patches
            x = x + self.frame_embs[:num_frames, None]
        x = x.flatten(2, 3)  # (B, N, T, P, D) -> (B, N, T * P, D)
        latents = self.latents.expand(*x.shape[:2], *self.latents.shape)
        for layer in self.layers:
            latents = latents + layer['attn'](x, latents)
            latents = latents + layer['ff'](latents)
        return self.norm(latents)  # (B, N, num_latents, D)
