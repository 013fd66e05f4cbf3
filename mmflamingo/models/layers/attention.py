"""Attention blocks of Flamingo: the Perceiver's and the masked one.

Both use ``torch.nn.functional.scaled_dot_product_attention`` so that fused
kernels are picked where the hardware has them.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    # (..., S, H * Dh) -> (..., H, S, Dh)
    x = x.unflatten(-1, (heads, -1))
    return x.transpose(-3, -2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    # (..., H, S, Dh) -> (..., S, H * Dh)
    return x.transpose(-3, -2).flatten(-2)


class PerceiverAttention(nn.Module):
    """Latents attend to the media features concatenated with themselves.

    Args:
        dim (int): Feature size of media and latents.
        dim_head (int): Size of one attention head. Defaults to 64.
        heads (int): Number of heads. Defaults to 8.
    """

    def __init__(self, dim: int, dim_head: int = 64, heads: int = 8) -> None:
        super().__init__()
        self.heads = heads
        inner_dim = dim_head * heads
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner_dim, bias=False)
        self.to_kv = nn.Linear(dim, inner_dim * 2, bias=False)
        self.to_out = nn.Linear(inner_dim, dim, bias=False)

    def forward(self, media: torch.Tensor,
                latents: torch.Tensor) -> torch.Tensor:
        """Cross-attend.

        Args:
            media (Tensor): ``(..., M, D)`` visual features.
            latents (Tensor): ``(..., L, D)`` latent queries.

        Returns:
            Tensor: ``(..., L, D)``.
        """
        media = self.norm_media(media)
        latents = self.norm_latents(latents)
        q = _split_heads(self.to_q(latents), self.heads)
        # keys and values come from the media and the latents together
        kv_input = torch.cat((media, latents), dim=-2)  # (..., M + L, D)
        k, v = self.to_kv(kv_input).chunk(2, dim=-1)
        k, v = _split_heads(k, self.heads), _split_heads(v, self.heads)
        out = F.scaled_dot_product_attention(q, k, v)  # (..., H, L, Dh)
        return self.to_out(_merge_heads(out))


class MaskedCrossAttention(nn.Module):
    """Text tokens attend to the visual tokens of the images they may see.

    The media keys and values are projected once by :meth:`project_media`
    and then reused by every call of :meth:`forward`, e.g. at every step
    of generation and for every beam.

    Args:
        dim (int): Feature size of the text (LM hidden size).
        dim_visual (int): Feature size of the visual tokens.
        dim_head (int): Size of one attention head. Defaults to 64.
        heads (int): Number of heads. Defaults to 8.
        only_attend_last_media (bool): Each token attends only to the most
            recent preceding image (the paper's and OpenFlamingo's choice);
            if False, to all preceding images. Defaults to True.
    """

    def __init__(self,
                 dim: int,
                 dim_visual: int,
                 dim_head: int = 64,
                 heads: int = 8,
                 only_attend_last_media: bool = True) -> None:
        super().__init__()
        self.heads = heads
        self.only_attend_last_media = only_attend_last_media
        inner_dim = dim_head * heads
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner_dim, bias=False)
        self.to_kv = nn.Linear(dim_visual, inner_dim * 2, bias=False)
        self.to_out = nn.Linear(inner_dim, dim, bias=False)

    def project_media(
            self, media: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Project visual tokens to keys and values.

        Args:
            media (Tensor): ``(B, N, L, Dv)``: N media of L tokens each.

        Returns:
            tuple[Tensor, Tensor]: keys and values, each ``(B, H, N * L, Dh)``.
        """
        media = media.flatten(1, 2)  # (B, N, L, Dv) -> (B, N * L, Dv)
        k, v = self.to_kv(media).chunk(2, dim=-1)
        return _split_heads(k, self.heads), _split_heads(v, self.heads)

    def forward(self, x: torch.Tensor, media_kv: Tuple[torch.Tensor,
                                                       torch.Tensor],
                media_index: torch.Tensor, num_latents: int) -> torch.Tensor:
        """Attend from text to media.

        Args:
            x (Tensor): ``(B * K, S, D)`` text features. ``K`` rows share the
                media of one sample (beams, or candidate continuations),
                laid out sample-major as ``repeat_interleave`` makes them.
            media_kv (tuple[Tensor, Tensor]): from :meth:`project_media`,
                each ``(B, H, N * L, Dh)``.
            media_index (Tensor): ``(B * K, S)`` long: for each token, the
                1-based index of the most recent preceding image; 0 where no
                image precedes the token.
            num_latents (int): L, visual tokens per medium.

        Returns:
            Tensor: ``(B * K, S, D)``; zero for tokens that follow no image.
        """
        bias = self.attention_bias(media_index, media_kv[0].shape[0],
                                   media_kv[0].shape[2], num_latents, x.dtype)
        return self.attend(x, media_kv, bias, media_index > 0)

    def attention_bias(self, media_index: torch.Tensor, batch: int,
                       num_keys: int, num_latents: int,
                       dtype: torch.dtype) -> torch.Tensor:
        """The additive mask of :meth:`attend`, shared by all layers.

        Returns:
            Tensor: ``(B, 1, K * S, N * L)``: 0 where a token may see a
            visual token, the dtype's minimum elsewhere.
        """
        # (B * K, S) -> (B, 1, K * S, 1)
        text_index = media_index.reshape(batch, 1, -1, 1)
        key_index = torch.arange(
            num_keys, device=media_index.device) // num_latents + 1
        if self.only_attend_last_media:
            visible = text_index == key_index
        else:
            visible = (text_index >= key_index) & (text_index > 0)
        # a finite minimum keeps rows with no visible image free of NaNs;
        # :meth:`attend` zeroes those rows
        bias = torch.zeros(visible.shape, dtype=dtype, device=visible.device)
        return bias.masked_fill_(~visible, torch.finfo(dtype).min)

    def attend(self, x: torch.Tensor, media_kv: Tuple[torch.Tensor,
                                                      torch.Tensor],
               bias: torch.Tensor, has_media: torch.Tensor) -> torch.Tensor:
        """Attend given the mask from :meth:`attention_bias`.

        Args:
            x (Tensor): ``(B * K, S, D)`` text features.
            media_kv (tuple[Tensor, Tensor]): Each ``(B, H, N * L, Dh)``.
            bias (Tensor): ``(B, 1, K * S, N * L)``.
            has_media (Tensor): ``(B * K, S)`` bool, False for tokens that
                follow no image (their output is zero).
        """
        k, v = media_kv
        batch, rows, seq = k.shape[0], x.shape[0], x.shape[1]
        q = self.to_q(self.norm(x))
        # group the K rows of a sample so that they share its keys/values:
        # (B * K, S, H * Dh) -> (B, H, K * S, Dh)
        q = _split_heads(q.reshape(batch, rows // batch * seq, -1), self.heads)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias.to(q.dtype))
        # (B, H, K * S, Dh) -> (B * K, S, H * Dh)
        out = _merge_heads(out).reshape(rows, seq, -1)
        return self.to_out(out * has_media[..., None].to(out.dtype))
