"""An MMPretrain ``VisionTransformer`` as a frozen Flamingo backbone."""
import os.path as osp
import pickle
from typing import Optional

import torch
from mmengine.logging import print_log
from mmpretrain.models import VisionTransformer

from mmflamingo.checkpoint_io import load_checkpoint_file
from mmflamingo.registry import MODELS
from .base_vision_encoder import BaseVisionEncoder

__all__ = ['MMPretrainViTEncoder']


@MODELS.register_module()
class MMPretrainViTEncoder(BaseVisionEncoder):
    """Frozen MMPretrain ``VisionTransformer`` returning patch tokens.

    The ViT is built with ``out_type='raw'`` and ``with_cls_token=True``; the
    CLS token is dropped here unless ``with_cls``. ``VisionTransformer``
    only builds its final LayerNorm (``ln1``) when asked for one and then
    applies it to the last block's output only; this class applies it to
    the output of ``out_layer`` whichever block that is.

    Args:
        vit (dict): Keyword arguments of
            :class:`mmpretrain.models.VisionTransformer` (``arch``,
            ``img_size``, ``patch_size``, ``pre_norm``, ``norm_cfg``, ...).
            ``out_indices``, ``out_type``, ``final_norm`` and
            ``with_cls_token`` are set by this class and must not be given.
        pretrained (str, optional): Local checkpoint file holding either the
            ``VisionTransformer`` state dict or an MMPretrain model's whose
            keys start with ``backbone.``, at the top level or under
            ``state_dict``. It is loaded with ``torch.load(weights_only=True)``
            so it may only hold tensors and plain containers. None keeps the
            random weights, for tests. Defaults to None.
        out_layer (int): Index of the transformer block whose output is
            returned; negative indexes count from the end. Defaults to -1.
        final_norm (bool): Whether to apply the ViT's final LayerNorm
            (``ln1``) to the tokens. Defaults to False.
        with_cls (bool): Whether to keep the CLS token. Defaults to False.
        dtype (str): Storage dtype of the weights: ``'float32'``,
            ``'bfloat16'`` or ``'float16'``. The output is float32.
            Defaults to ``'float32'``.
        cache_size (int): Frames whose tokens are cached (see
            :class:`BaseVisionEncoder`); 0: no cache. Defaults to 0.
        cache_chunk (int): Frames per forward with the cache. Defaults
            to 16.
    """

    OWNED_KEYS = ('out_indices', 'out_type', 'final_norm', 'with_cls_token')

    def __init__(self,
                 vit: dict,
                 pretrained: Optional[str] = None,
                 out_layer: int = -1,
                 final_norm: bool = False,
                 with_cls: bool = False,
                 dtype: str = 'float32',
                 cache_size: int = 0,
                 cache_chunk: int = 16) -> None:
        owned = sorted(set(vit) & set(self.OWNED_KEYS))
        if owned:
            raise ValueError(f'`vit` of {type(self).__name__} must not set '
                             f'{owned}: use out_layer, final_norm and '
                             'with_cls of the encoder instead')
        model = VisionTransformer(
            **vit, out_type='raw', final_norm=final_norm, with_cls_token=True)
        if pretrained is not None:
            self._load_pretrained(model, pretrained)
        super().__init__(
            encoder=model,
            num_layers=model.num_layers,
            embed_dims=model.embed_dims,
            num_patches=model.patch_resolution[0] * model.patch_resolution[1],
            image_size=model.img_size[0],
            out_layer=out_layer,
            final_norm=final_norm,
            with_cls=with_cls,
            dtype=dtype,
            cache_size=cache_size,
            cache_chunk=cache_chunk)
        self.encoder.out_indices = [self.out_layer]

    @staticmethod
    def _load_pretrained(model: VisionTransformer, pretrained: str) -> None:
        if not osp.isfile(pretrained):
            raise FileNotFoundError(
                '`pretrained` checkpoint of MMPretrainViTEncoder not found: '
                f'{pretrained!r}')
        try:
            checkpoint = load_checkpoint_file(pretrained)
        except pickle.UnpicklingError as error:
            raise RuntimeError(
                f'{pretrained} holds objects other than tensors, which '
                'torch.load(weights_only=True) refuses to unpickle. Save '
                "{'state_dict': model.state_dict()} alone and point "
                '`pretrained` at that file.') from error
        state_dict = checkpoint.get('state_dict', checkpoint)
        if any(key.startswith('backbone.') for key in state_dict):
            state_dict = {
                key[len('backbone.'):]: value
                for key, value in state_dict.items()
                if key.startswith('backbone.')
            }
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
        if missing:
            raise RuntimeError(
                f'{pretrained} lacks weights for {sorted(missing)}')
        if unexpected:
            print_log(
                f'Weights of {pretrained} not used by the ViT: '
                f'{sorted(unexpected)}',
                logger='current')

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Encode images with the ViT; see ``BaseVisionEncoder.encode``."""
        tokens = self.encoder(images)[0]
        if self.final_norm and self.out_layer != self.num_layers - 1:
            # VisionTransformer normalises the last block's output only.
            tokens = self.encoder.ln1(tokens)
        return tokens
