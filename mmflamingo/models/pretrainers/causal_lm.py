"""Next-token pretraining of a causal LM, for Flamingo's language model."""
import os
from typing import Optional, Union

import torch
from mmengine.model import BaseModel

from mmflamingo.registry import MODELS
from mmflamingo.tokens import build_tokenizer
from ..utils import build_causal_lm
from .utils import tokenizer_ids

__all__ = ['CausalLMPretrainer']


@MODELS.register_module()
class CausalLMPretrainer(BaseModel):
    """A Hugging Face causal LM trained from scratch on text.

    The loss is the cross-entropy of every next token, padding excluded.
    :meth:`save_pretrained` writes a directory that Flamingo loads as its
    language model (``head.lm=dict(pretrained=DIR)``) and tokenizer
    (``tokenizer=dict(pretrained=DIR)``).

    Args:
        tokenizer (dict): ``pretrained`` (a local directory) plus
            ``AutoTokenizer.from_pretrained`` kwargs.
        config (dict, optional): ``model_type`` plus the kwargs of its
            ``transformers`` config (e.g. a tiny ``llama``), to train from
            scratch. The vocabulary size and special token ids default to
            the tokenizer's.
        pretrained (str, optional): A local directory saved with
            ``save_pretrained``, to train on (e.g. an earlier stage's
            export). Give exactly one of ``config`` and ``pretrained``.
        data_preprocessor (dict, optional): mmengine's
            ``BaseDataPreprocessor`` (moves the batch to the device) by
            default. Defaults to None.
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self,
                 tokenizer: dict,
                 config: Optional[dict] = None,
                 pretrained: Optional[str] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.tokenizer = build_tokenizer(**tokenizer, field='model.tokenizer')
        if config is not None:
            config = tokenizer_ids(self.tokenizer, config, 'model.config')
        self.lm = build_causal_lm(
            pretrained=pretrained, config=config, field='model')
        if self.lm.get_input_embeddings().num_embeddings < len(
                self.tokenizer):
            raise ValueError(
                f'model.pretrained: {pretrained} has '
                f'{self.lm.get_input_embeddings().num_embeddings} token rows,'
                f' fewer than the tokenizer ({len(self.tokenizer)})')

    def init_weights(self) -> None:
        """Keep pretrained weights (a fresh model is initialised when
        built, by ``transformers``)."""

    def forward(self,
                inputs: torch.Tensor,
                attention_mask: Optional[torch.Tensor] = None,
                mode: str = 'tensor') -> Union[dict, torch.Tensor]:
        """Predict every next token.

        Args:
            inputs (Tensor): ``(B, S)`` token ids.
            attention_mask (Tensor, optional): ``(B, S)``, 0 on padding.
                Defaults to no padding.
            mode (str): ``'loss'``: dict of ``loss``; ``'tensor'``: the
                ``(B, S, V)`` logits.
        """
        if mode not in ('loss', 'tensor'):
            raise ValueError(f'{type(self).__name__} supports the modes '
                             f'"loss" and "tensor", got {mode!r}')
        if attention_mask is None:
            attention_mask = torch.ones_like(inputs)
        if mode == 'tensor':
            return self.lm(
                input_ids=inputs, attention_mask=attention_mask).logits
        # the LM shifts the labels itself
        labels = inputs.masked_fill(attention_mask == 0, -100)
        outputs = self.lm(
            input_ids=inputs, attention_mask=attention_mask, labels=labels)
        return dict(loss=outputs.loss)

    def save_pretrained(self, out_dir: str) -> None:
        """Write the LM and its tokenizer to ``out_dir``."""
        os.makedirs(out_dir, exist_ok=True)
        self.lm.save_pretrained(out_dir)
        self.tokenizer.save_pretrained(out_dir)
