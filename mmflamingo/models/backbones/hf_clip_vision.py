"""The vision tower of a Hugging Face CLIP as a frozen Flamingo backbone."""
import os.path as osp
from typing import Optional

import torch
from transformers import CLIPVisionConfig, CLIPVisionModel

from mmflamingo.compat import clip_vision_transformer
from mmflamingo.registry import MODELS
from ..utils import read_legacy_parameter_names
from .base_vision_encoder import BaseVisionEncoder

__all__ = ['HFCLIPVisionEncoder']


@MODELS.register_module()
class HFCLIPVisionEncoder(BaseVisionEncoder):
    """Frozen Hugging Face ``CLIPVisionModel`` returning patch tokens.

    With the defaults it returns what OpenFlamingo feeds its perceiver: the
    last block's patch tokens, without the CLS token and before the final
    LayerNorm (``post_layernorm``).

    Give exactly one of ``pretrained`` and ``config``.

    Args:
        pretrained (str, optional): Local directory saved by
            ``save_pretrained`` of a ``CLIPVisionModel`` or of a whole
            ``CLIPModel`` (its text tower is ignored). Never looked up on the
            Hugging Face Hub. Defaults to None.
        config (dict, optional): Keyword arguments of ``CLIPVisionConfig``
            to build a randomly initialised model, for tests and tiny
            configs. Defaults to None.
        out_layer (int): Index of the transformer block whose output is
            returned; negative indexes count from the end. Defaults to -1.
        final_norm (bool): Whether to apply ``post_layernorm`` to the
            tokens. Defaults to False.
        with_cls (bool): Whether to keep the CLS token. Defaults to False.
        dtype (str): Storage dtype of the weights: ``'float32'``,
            ``'bfloat16'`` or ``'float16'``. The output is float32.
            Defaults to ``'float32'``.
        cache_size (int): Frames whose tokens are cached (see
            :class:`BaseVisionEncoder`); 0: no cache. Defaults to 0.
        cache_chunk (int): Frames per forward with the cache. Defaults
            to 16.

    Examples:
        >>> from mmflamingo.registry import MODELS
        >>> encoder = MODELS.build(dict(
        ...     type='HFCLIPVisionEncoder',
        ...     config=dict(hidden_size=32, intermediate_size=64,
        ...                 num_hidden_layers=2, num_attention_heads=2,
        ...                 image_size=32, patch_size=8)))
        >>> encoder(torch.rand(2, 1, 1, 3, 32, 32)).shape
        torch.Size([2, 1, 1, 16, 32])
    """

    def __init__(self,
                 pretrained: Optional[str] = None,
                 config: Optional[dict] = None,
                 out_layer: int = -1,
                 final_norm: bool = False,
                 with_cls: bool = False,
                 dtype: str = 'float32',
                 cache_size: int = 0,
                 cache_chunk: int = 16) -> None:
        if (pretrained is None) == (config is None):
            raise ValueError('Give exactly one of `pretrained` and `config` '
                             f'to {type(self).__name__}, got '
                             f'pretrained={pretrained!r}, config={config!r}')
        if pretrained is not None:
            clip = self._load_pretrained(pretrained)
        else:
            clip = CLIPVisionModel(CLIPVisionConfig(**config))
        # checkpoints with the frozen weights (``save_frozen``) written
        # with transformers 4 load under 5
        read_legacy_parameter_names(clip)
        clip_config = clip.config
        super().__init__(
            encoder=clip,
            num_layers=clip_config.num_hidden_layers,
            embed_dims=clip_config.hidden_size,
            num_patches=(clip_config.image_size // clip_config.patch_size)**2,
            image_size=clip_config.image_size,
            out_layer=out_layer,
            final_norm=final_norm,
            with_cls=with_cls,
            dtype=dtype,
            cache_size=cache_size,
            cache_chunk=cache_chunk)

    @staticmethod
    def _load_pretrained(pretrained: str) -> CLIPVisionModel:
        if not osp.isdir(pretrained):
            raise FileNotFoundError(
                f'`pretrained` of HFCLIPVisionEncoder must be a local '
                f'directory, and {pretrained!r} is not one')
        clip, loading_info = CLIPVisionModel.from_pretrained(
            pretrained, local_files_only=True, output_loading_info=True)
        if loading_info['missing_keys']:
            raise RuntimeError(f'{pretrained} lacks weights for '
                               f'{sorted(loading_info["missing_keys"])}')
        return clip

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Encode images with CLIP; see ``BaseVisionEncoder.encode``."""
        vision_model = clip_vision_transformer(self.encoder)
        is_last = self.out_layer == self.num_layers - 1
        outputs = vision_model(
            pixel_values=images, output_hidden_states=not is_last)
        if is_last:
            tokens = outputs.last_hidden_state
        else:
            # hidden_states[0] is the embedding output (after pre_layrnorm)
            # and hidden_states[i + 1] the output of block i.
            tokens = outputs.hidden_states[self.out_layer + 1]
        if self.final_norm:
            tokens = vision_model.post_layernorm(tokens)
        return tokens
