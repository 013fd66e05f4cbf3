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
    patches, with a learned temporal embedding added per frame and,
    optionally, a learned spatial embedding per patch position) concatenated
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
        max_num_patches (int, optional): If set, learn a spatial embedding
            for each of up to this many token positions of a frame, added to
            the features of every frame. The paper uses none (its NFNet's
            features carry their position); the last tokens of a small ViT
            carry it weakly, and the latents then take thousands of steps to
            tell where a patch is (see ``configs/shapes``). Defaults to None.
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
                 max_num_patches: Optional[int] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.dim = dim
        self.num_latents = num_latents
        self.max_num_frames = max_num_frames
        self.max_num_patches = max_num_patches
        self.latents = nn.Parameter(torch.randn(num_latents, dim))
        self.frame_embs = (
            nn.Parameter(torch.randn(max_num_frames, dim))
            if max_num_frames else None)
        self.patch_embs = (
            nn.Parameter(torch.randn(max_num_patches, dim))
            if max_num_patches else None)
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
        num_frames, num_patches = x.shape[2:4]
        x = x.to(self.latents.dtype)
        if self.patch_embs is not None:
            if num_patches > self.max_num_patches:
                raise ValueError(
                    f'a frame has {num_patches} tokens but the perceiver '
                    f'learned spatial embeddings for max_num_patches='
                    f'{self.max_num_patches}')
            # (P, D), broadcast over batch, media and frames
            x = x + self.patch_embs[:num_patches]
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
