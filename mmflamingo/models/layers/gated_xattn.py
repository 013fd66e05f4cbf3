"""GATED XATTN-DENSE: the block Flamingo inserts before frozen LM layers."""
from typing import Tuple

import torch
from torch import nn

from .attention import MaskedCrossAttention
from .ffn import FeedForward


class GatedCrossAttentionBlock(nn.Module):
    """Masked cross-attention then a dense FFN, each scaled by tanh(gate).

    Both gates start at 0, so a freshly built Flamingo computes exactly what
    its frozen language model computes.

    Args:
        dim (int): LM hidden size.
        dim_visual (int): Feature size of the visual tokens.
        dim_head (int): Size of one attention head. Defaults to 64.
        heads (int): Number of heads. Defaults to 8.
        ff_mult (int): FFN hidden size as a multiple of ``dim``.
            Defaults to 4.
        act (str): FFN activation, ``'gelu'`` or ``'squared_relu'``.
            Defaults to ``'gelu'``.
        only_attend_last_media (bool): See :class:`MaskedCrossAttention`.
            Defaults to True.
    """

    def __init__(self,
                 dim: int,
                 dim_visual: int,
                 dim_head: int = 64,
                 heads: int = 8,
                 ff_mult: int = 4,
                 act: str = 'gelu',
                 only_attend_last_media: bool = True) -> None:
        super().__init__()
        self.attn = MaskedCrossAttention(
            dim,
            dim_visual,
            dim_head=dim_head,
            heads=heads,
            only_attend_last_media=only_attend_last_media)
        self.attn_gate = nn.Parameter(torch.zeros(1))
        self.ff = FeedForward(dim, mult=ff_mult, act=act)
        self.ff_gate = nn.Parameter(torch.zeros(1))

    def project_media(
            self, media: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """See :meth:`MaskedCrossAttention.project_media`."""
        return self.attn.project_media(media)

    def forward(self, x: torch.Tensor, media_kv: Tuple[torch.Tensor,
                                                       torch.Tensor],
                media_index: torch.Tensor, num_latents: int) -> torch.Tensor:
        """Apply the block; arguments as :meth:`MaskedCrossAttention.forward`.
        """
        bias = self.attn.attention_bias(media_index, media_kv[0].shape[0],
                                        media_kv[0].shape[2], num_latents,
                                        x.dtype)
        return self.gated(x, media_kv, bias, media_index > 0)

    def gated(self, x: torch.Tensor, media_kv: Tuple[torch.Tensor,
                                                     torch.Tensor],
              bias: torch.Tensor, has_media: torch.Tensor) -> torch.Tensor:
        """Apply the block given a precomputed attention mask (see
        :meth:`MaskedCrossAttention.attend`)."""
        x = x + self.attn_gate.tanh() * self.attn.attend(
            x, media_kv, bias, has_media)
        return x + self.ff_gate.tanh() * self.ff(x)
