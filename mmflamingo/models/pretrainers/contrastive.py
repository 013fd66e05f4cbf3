"""Contrastive image-text pretraining of a CLIP, for Flamingo's vision encoder.
"""
import os
from typing import Dict, List, Optional, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmpretrain.structures import DataSample
from transformers import CLIPConfig, CLIPModel

from mmflamingo.registry import MODELS
from mmflamingo.tokens import build_tokenizer
from .utils import tokenizer_ids

__all__ = ['ContrastiveImageTextPretrainer']


@MODELS.register_module()
class ContrastiveImageTextPretrainer(BaseModel):
    """A Hugging Face ``CLIPModel`` trained from scratch on image-text pairs.

    The loss is CLIP's symmetric InfoNCE over the batch (each image against
    every caption of the batch and the reverse); the accuracy of retrieving
    each image's own caption among the batch's (``i2t_acc``) is logged with
    it. Samples may carry hard negative captions (``hard_negatives``, a
    list of strings, e.g. from :class:`SwapWordNegatives`), as in NegCLIP:
    each image is then scored against the batch's captions and all its
    negatives (the image-to-text term; the text-to-image term keeps the true
    captions only), and ``neg_acc`` logs how often an image scores its own
    caption above each of its own negatives. :meth:`save_pretrained`
    writes a directory whose vision tower :class:`HFCLIPVisionEncoder`
    loads (``pretrained=DIR``).

    Each caption is tokenized, truncated to the text tower's
    ``max_position_embeddings`` and ended with the eos token, whose output
    is the text embedding.

    Args:
        clip_cfg (dict): Keyword arguments of ``CLIPConfig``:
            ``vision_config`` and ``text_config`` (dicts), optionally
            ``projection_dim`` and ``logit_scale_init_value``. The text
            config's vocabulary size and special token ids default to the
            tokenizer's.
        tokenizer (dict): ``pretrained`` (a local directory) plus
            ``AutoTokenizer.from_pretrained`` kwargs.
        data_preprocessor (dict, optional): Batches the images. Defaults to
            ``dict(type='FlamingoDataPreprocessor')``: samples packed by
            :class:`PackFlamingoInputs`, one image each, the caption in the
            data sample's ``text``.
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self,
                 clip_cfg: dict,
                 tokenizer: dict,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(type='FlamingoDataPreprocessor')
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.tokenizer = build_tokenizer(**tokenizer, field='model.tokenizer')
        if self.tokenizer.eos_token_id is None:
            raise ValueError('model.tokenizer has no eos token, which CLIP '
                             'pools the text embedding from')
        if self.tokenizer.eos_token_id == 2:
            # transformers reads eos_token_id == 2 as a legacy CLIP config
            # and pools each text's largest token id instead of its eos
            raise ValueError('model.tokenizer: Hugging Face CLIP cannot use '
                             'an eos token of id 2; train the tokenizer with '
                             'another eos id')
        clip_cfg = dict(clip_cfg)
        clip_cfg['text_config'] = tokenizer_ids(
            self.tokenizer, clip_cfg.get('text_config', {}),
            'model.clip_cfg.text_config')
        self.clip = CLIPModel(CLIPConfig(**clip_cfg))
        text_config = self.clip.config.text_config
        self.max_text_length = text_config.max_position_embeddings

    def tokenize(self, texts: List[str]) -> Dict[str, torch.Tensor]:
        """Token ids ``(B, S)`` ending with eos, and their attention mask."""
        encoded = self.tokenizer(texts)['input_ids']
        eos = self.tokenizer.eos_token_id
        ids = [x[:self.max_text_length - 1] + [eos] for x in encoded]
        length = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), length),
                               self.clip.config.text_config.pad_token_id)
        attention_mask = torch.zeros((len(ids), length), dtype=torch.long)
        for i, x in enumerate(ids):
            input_ids[i, :len(x)] = torch.tensor(x)
            attention_mask[i, :len(x)] = 1
        device = self.clip.logit_scale.device
        return dict(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device))

    def forward(self,
                images: torch.Tensor,
                data_samples: List[DataSample],
                mode: str = 'tensor') -> Union[dict, torch.Tensor]:
        """Score every image of the batch against every caption.

        Args:
            images (Tensor): ``(B, 1, 1, C, H, W)`` normalised images, one
                per sample (from :class:`FlamingoDataPreprocessor`).
            data_samples (list[DataSample]): Each with its caption in
                ``text``.
            mode (str): ``'loss'``: dict of ``loss`` and ``i2t_acc`` (and
                ``neg_acc`` with hard negatives);
                ``'tensor'``: the ``(B, B)`` image-to-text logits.
        """
        if mode not in ('loss', 'tensor'):
            raise ValueError(f'{type(self).__name__} supports the modes '
                             f'"loss" and "tensor", got {mode!r}')
        if images is None or images.shape[1:3] != (1, 1):
            shape = None if images is None else tuple(images.shape)
            raise ValueError(f'{type(self).__name__} needs one image per '
                             f'sample, (B, 1, 1, C, H, W); got {shape}')
        texts = [sample.text for sample in data_samples]
        num_images = len(texts)
        # in training, hard negatives after the true captions, and whose
        # they are
        owners = []
        if mode == 'loss':
            for i, sample in enumerate(data_samples):
                negatives = list(sample.get('hard_negatives', None) or ())
                texts.extend(negatives)
                owners.extend([i] * len(negatives))
        outputs = self.clip(
            pixel_values=images[:, 0, 0], **self.tokenize(texts))
        logits = outputs.logits_per_image  # (B images, B + N texts)
        if mode == 'tensor':
            return logits
        targets = torch.arange(num_images, device=logits.device)
        # CLIP's loss; with negatives, only images score them
        loss = (F.cross_entropy(logits, targets) +
                F.cross_entropy(logits[:, :num_images].t(), targets)) / 2
        accuracy = (logits[:, :num_images].argmax(-1) == targets).float()
        losses = dict(loss=loss, i2t_acc=accuracy.mean())
        if owners:
            owner = torch.tensor(owners, device=logits.device)
            positive = logits[owner, owner]
            columns = num_images + torch.arange(
                len(owners), device=logits.device)
            negative = logits[owner, columns]
            losses['neg_acc'] = (positive > negative).float().mean()
        return losses

    def save_pretrained(self, out_dir: str) -> None:
        """Write the ``CLIPModel`` and its tokenizer to ``out_dir``."""
        os.makedirs(out_dir, exist_ok=True)
        self.clip.save_pretrained(out_dir)
        self.tokenizer.save_pretrained(out_dir)
