"""The frozen vision encoder shared by every Flamingo backbone."""
import hashlib
from abc import ABCMeta, abstractmethod
from collections import OrderedDict

import torch
from mmengine.model import BaseModule
from torch import nn

__all__ = ['BaseVisionEncoder']

DTYPES = {
    'float32': torch.float32,
    'bfloat16': torch.bfloat16,
    'float16': torch.float16,
}


class BaseVisionEncoder(BaseModule, metaclass=ABCMeta):
    """Base class of the frozen vision encoders of Flamingo.

    Flamingo never trains its vision encoder. This class owns what every
    encoder shares: it maps media ``(B, N, T, C, H, W)`` (``N`` media per
    sample, ``T`` frames per medium: ``T == 1`` for images, ``T > 1`` for
    video) to visual tokens ``(B, N, T, P, D)``, keeps the wrapped model
    frozen and in eval mode, and optionally stores its weights in a low
    precision dtype. Subclasses build the pretrained model and implement
    :meth:`encode`.

    The output is always float32, whatever ``dtype`` the weights are stored
    in, because the trained modules downstream (the perceiver resampler)
    keep their weights in float32.

    Args:
        encoder (nn.Module): The pretrained vision model to wrap.
        num_layers (int): Number of transformer blocks of ``encoder``.
        embed_dims (int): Dimension ``D`` of the visual tokens.
        num_patches (int): Number of patch tokens of an image of the size
            the encoder was trained on.
        image_size (int): Height and width of the images it expects.
        out_layer (int): Index of the transformer block whose output is
            returned; negative indexes count from the end, so -1 is the
            last block and -2 the penultimate one. Defaults to -1.
        final_norm (bool): Whether to apply the encoder's final LayerNorm to
            the tokens. OpenFlamingo uses the tokens before it.
            Defaults to False.
        with_cls (bool): Whether to keep the CLS token in front of the patch
            tokens, so that ``P == num_patches + 1``; otherwise
            ``P == num_patches``. Defaults to False.
        dtype (str): Storage dtype of the weights: ``'float32'``,
            ``'bfloat16'`` or ``'float16'``. Inputs are cast to it.
            Defaults to ``'float32'``.
        cache_size (int): Keep the tokens of up to this many distinct frames,
            keyed by their pixel values, and reuse them when a frame comes
            again (least recently used ones are dropped first). The encoder
            is frozen and in eval mode, so its tokens are a function of the
            pixels: this saves its forward when a small dataset is seen for
            many epochs without random augmentation (the shapes recipe). New
            frames are encoded in chunks of ``cache_chunk`` (the last one
            zero-padded), so a frame's tokens do not depend on the other
            frames of its batch. 0 turns the cache off. Defaults to 0.
        cache_chunk (int): Frames per forward when the cache is on.
            Defaults to 16.
    """

    def __init__(self,
                 encoder: nn.Module,
                 num_layers: int,
                 embed_dims: int,
                 num_patches: int,
                 image_size: int,
                 out_layer: int = -1,
                 final_norm: bool = False,
                 with_cls: bool = False,
                 dtype: str = 'float32',
                 cache_size: int = 0,
                 cache_chunk: int = 16) -> None:
        super().__init__()
        if dtype not in DTYPES:
            raise ValueError(f'dtype must be one of {sorted(DTYPES)}, '
                             f'got {dtype!r}')
        if cache_size < 0 or cache_chunk < 1:
            raise ValueError('cache_size must be >= 0 and cache_chunk >= 1, '
                             f'got {cache_size} and {cache_chunk}')
        if not -num_layers <= out_layer < num_layers:
            raise ValueError(f'out_layer={out_layer} is out of range for an '
                             f'encoder with {num_layers} layers')
        self.num_layers = num_layers
        self.embed_dims = embed_dims
        self.num_patches = num_patches
        # square input resolution the encoder expects (pipelines read it)
        self.image_size = image_size
        # Non-negative index of the block whose output is returned.
        self.out_layer = out_layer % num_layers
        self.final_norm = final_norm
        self.with_cls = with_cls
        self.dtype = DTYPES[dtype]
        self.cache_size = cache_size
        self.cache_chunk = cache_chunk
        # frame key -> (1 + P, D) tokens, least recently used first
        self._cache: 'OrderedDict[bytes, torch.Tensor]' = OrderedDict()
        self.num_encoded = 0  # frames that went through the encoder

        self.encoder = encoder.to(self.dtype)
        self.encoder.requires_grad_(False)
        self.train(False)

    @abstractmethod
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Encode a batch of images into tokens.

        Args:
            images (torch.Tensor): Images ``(B', C, H, W)`` in the weights'
                dtype.

        Returns:
            torch.Tensor: The CLS token followed by the patch tokens output
            by block ``self.out_layer``, with the final LayerNorm applied if
            ``self.final_norm``: ``(B', 1 + num_patches, D)``.
        """

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Encode media into visual tokens.

        Args:
            images (torch.Tensor): Media ``(B, N, T, C, H, W)``.

        Returns:
            torch.Tensor: Float32 visual tokens ``(B, N, T, P, D)``.
        """
        if images.dim() != 6:
            raise ValueError('images must have shape (B, N, T, C, H, W), '
                             f'got {tuple(images.shape)}')
        B, N, T = images.shape[:3]
        with torch.no_grad():
            # (B, N, T, C, H, W) -> (B * N * T, C, H, W)
            frames = images.flatten(0, 2)
            # (B * N * T, C, H, W) -> (B * N * T, 1 + P, D)
            tokens = (
                self._encode_cached(frames)
                if self.cache_size else self._encode(frames))
        if not self.with_cls:
            tokens = tokens[:, 1:]
        # (B * N * T, P, D) -> (B, N, T, P, D)
        return tokens.float().reshape(B, N, T, *tokens.shape[1:])

    def _encode(self, frames: torch.Tensor) -> torch.Tensor:
        """``(M, C, H, W)`` frames -> ``(M, 1 + P, D)`` tokens."""
        # the weights' actual dtype: a strategy (DeepSpeed bf16) may have
        # cast them after construction
        weight_dtype = next(self.encoder.parameters()).dtype
        self.num_encoded += len(frames)
        return self.encode(frames.to(weight_dtype))

    def _encode_cached(self, frames: torch.Tensor) -> torch.Tensor:
        """:meth:`_encode` through the cache (see ``cache_size``)."""
        keys = [
            hashlib.blake2b(
                frame.detach().cpu().contiguous().numpy().tobytes(),
                digest_size=16).digest() for frame in frames
        ]
        new = {}  # key -> index of its first frame, in order
        for i, key in enumerate(keys):
            if key not in self._cache:
                new.setdefault(key, i)
        if new:
            chunk = self.cache_chunk
            todo = frames[list(new.values())]
            for start in range(0, len(todo), chunk):
                part = todo[start:start + chunk]
                pad = part.new_zeros((chunk - len(part), *part.shape[1:]))
                encoded = self._encode(torch.cat([part, pad]))[:len(part)]
                self.num_encoded -= len(pad)
                for key, tokens in zip(
                        list(new)[start:start + chunk], encoded):
                    # a copy: a view would keep the whole chunk, padding
                    # included, alive while any of its frames is cached
                    self._cache[key] = tokens.clone()
        out = []
        for key in keys:
            self._cache.move_to_end(key)
            out.append(self._cache[key])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return torch.stack(out)

    def train(self, mode: bool = True) -> 'BaseVisionEncoder':
        """Keep the encoder in eval mode whatever ``mode`` says.

        Dropout and stochastic depth of a frozen encoder must stay off while
        the rest of Flamingo trains.
        """
        return super().train(False)

    def init_weights(self) -> None:
        """Do nothing: the weights come from the pretrained checkpoint.

        ``BaseModule.init_weights`` would recurse into the wrapped model's
        own ``init_weights`` (for Hugging Face models: re-initialise and tie
        weights) and overwrite the pretrained weights.
        """
