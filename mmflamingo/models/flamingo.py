"""The Flamingo algorithm: vision encoder -> Perceiver Resampler -> gated LM.
"""
from typing import Dict, List, Optional, Union

import torch
import torch.nn.functional as F
from mmengine.logging import MMLogger
from mmengine.model import BaseModel
from mmpretrain.structures import DataSample

from mmflamingo.registry import MODELS
from mmflamingo.tokens import add_flamingo_tokens, build_tokenizer
from .utils import build_labels, load_flamingo_checkpoint

Images = Optional[torch.Tensor]  # (B, N, T, C, H, W), None for text only
Samples = List[DataSample]


@MODELS.register_module()
class Flamingo(BaseModel):
    """Flamingo (Alayrac et al., 2022) on any Hugging Face causal LM.

    Data flow: ``images (B, N, T, C, H, W)`` -> backbone (frozen) ->
    ``(B, N, T, P, Dv)`` -> neck (Perceiver Resampler) -> ``(B, N, L, Dv)``
    visual tokens -> head (frozen LM with GATED XATTN-DENSE blocks), which
    reads the text of each data sample (``data_sample.text``) with
    ``<image>`` marking where each medium appears.

    Args:
        backbone (dict): Vision encoder config (``HFCLIPVisionEncoder``...).
        neck (dict): Perceiver config. ``dim`` defaults to the backbone's
            ``embed_dims``.
        head (dict): :class:`FlamingoLMHead` config, without ``tokens`` and
            ``dim_visual`` (filled in here).
        tokenizer (dict): ``pretrained`` (local directory) plus
            ``AutoTokenizer.from_pretrained`` kwargs.
        task (str): What :meth:`predict` writes: ``'caption'`` ->
            ``pred_caption``, ``'vqa'`` -> ``pred_answer``. Defaults to
            ``'caption'``.
        generation_cfg (dict, optional): Default ``generate`` kwargs, e.g.
            ``dict(num_beams=3, max_new_tokens=20, length_penalty=0.0)``.
        max_text_length (int, optional): Truncate training text to this many
            tokens; the media whose markers are cut are not encoded, and
            :meth:`loss` counts the texts cut (``num_truncated``). Defaults
            to None.
        checkpoint (str, optional): A Flamingo checkpoint (trained weights,
            e.g. converted from OpenFlamingo) loaded after building.
        save_frozen (bool): Whether ``state_dict()`` includes the frozen
            weights. By default it holds the trained ones only, so a 9B
            model's checkpoints do not carry its frozen 7B LM and ViT (they
            come from their own pretrained files); loading a state dict
            without them is not an error. Defaults to False.
        data_preprocessor (dict, optional): Defaults to
            ``FlamingoDataPreprocessor``.
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 head: dict,
                 tokenizer: dict,
                 task: str = 'caption',
                 generation_cfg: Optional[dict] = None,
                 max_text_length: Optional[int] = None,
                 checkpoint: Optional[str] = None,
                 save_frozen: bool = False,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(type='FlamingoDataPreprocessor')
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if task not in ('caption', 'vqa'):
            raise ValueError(f'task must be "caption" or "vqa", got {task!r}')
        self.task = task
        self.generation_cfg = dict(generation_cfg or {})
        self.max_text_length = max_text_length

        self.tokenizer = build_tokenizer(**tokenizer, field='model.tokenizer')
        self.tokens = add_flamingo_tokens(self.tokenizer)
        self.backbone = MODELS.build(backbone)
        neck = dict(neck)
        neck.setdefault('dim', self.backbone.embed_dims)
        self.neck = MODELS.build(neck)
        self.head = MODELS.build(
            head,
            default_args=dict(tokens=self.tokens, dim_visual=neck['dim']))
        self._log_trainable_parameters()
        self.save_frozen = save_frozen
        self._register_state_dict_hook(_drop_frozen_weights)
        self.register_load_state_dict_post_hook(_allow_missing_frozen_weights)
        if checkpoint is not None:
            load_flamingo_checkpoint(self, checkpoint)

    def _log_trainable_parameters(self) -> None:
        """Log the trainable parameter count by part."""
        parts = {
            'vision encoder': self.backbone.parameters(),
            'perceiver': self.neck.parameters(),
            'cross-attention': self.head.xattn_blocks.parameters(),
            'language model': self.head.lm.parameters(),
        }
        counts = {
            name: sum(p.numel() for p in params if p.requires_grad)
            for name, params in parts.items()
        }
        frozen = sum(p.numel() for p in self.parameters()
                     if not p.requires_grad)
        MMLogger.get_current_instance().info(
            'Flamingo trainable parameters: ' +
            ', '.join(f'{name} {n:,}' for name, n in counts.items()) +
            f' (language model: new token rows only); total '
            f'{sum(counts.values()):,}; frozen {frozen:,}')

    # --------------------------------------------------------------- inputs
    def extract_media(
            self,
            images: Optional[torch.Tensor],
            num_media: Optional[torch.Tensor] = None
    ) -> Optional[torch.Tensor]:
        """``(B, N, T, C, H, W)`` images -> ``(B, N, L, D)`` visual tokens.

        Each image and video is encoded once, whatever follows (beams,
        candidate continuations). Given ``num_media`` ``(B, )``, only the
        first ``num_media[i]`` media of sample i are encoded (the others are
        batch padding, or media whose markers truncation cut) and N becomes
        ``max(num_media)``, with zeros past each sample's count; None when
        no medium is left.
        """
        if images is None or images.shape[1] == 0:
            return None
        if num_media is None:
            features = self.backbone(images)  # (B, N, T, P, Dv)
            return self.neck(features)  # (B, N, L, Dv)
        num = int(num_media.max()) if num_media.numel() else 0
        if num == 0:
            return None
        kept = torch.arange(num, device=images.device) < num_media[:, None]
        # (B, N, T, C, H, W) -> (1, M, T, C, H, W): the M kept media only
        selected = images[:, :num][kept][None]
        tokens = self.neck(self.backbone(selected))[0]  # (M, L, Dv)
        media = tokens.new_zeros(*kept.shape, *tokens.shape[1:])
        media[kept] = tokens  # (M, L, Dv) -> (B, num, L, Dv)
        return media

    def _tokenize(self,
                  texts: List[str],
                  padding_side: str,
                  truncate: bool = False) -> Dict[str, torch.Tensor]:
        encoded = self.tokenizer(
            texts,
            padding='longest',
            padding_side=padding_side,
            truncation=truncate and self.max_text_length is not None,
            max_length=self.max_text_length if truncate else None,
            return_tensors='pt')
        return {
            k: v.to(self.data_preprocessor.device)
            for k, v in encoded.items()
        }

    def _num_media(self, data_samples: List[DataSample],
                   input_ids: torch.Tensor) -> torch.Tensor:
        """Images per sample; checks no text names more than it has."""
        counts = torch.tensor([s.get('num_media', 0) for s in data_samples],
                              device=input_ids.device)
        markers = (input_ids == self.tokens.media).sum(-1)
        for i in torch.nonzero(markers > counts).flatten().tolist():
            source = data_samples[i].get('source',
                                         data_samples[i].get('img_path'))
            raise ValueError(
                f'sample {i} ({source or "no source"}) has '
                f'{int(markers[i])} <image> markers but {int(counts[i])} '
                'images')
        return counts

    # ---------------------------------------------------------------- modes
    def forward(self,
                images: Optional[torch.Tensor],
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        """mmengine's entry: ``mode`` is ``'loss'``, ``'predict'``,
        ``'score'`` or ``'tensor'``."""
        if mode == 'loss':
            return self.loss(images, data_samples)
        if mode == 'predict':
            return self.predict(images, data_samples)
        if mode == 'score':
            return self.score(images, data_samples)
        if mode == 'tensor':
            return self._forward_text(images, data_samples, 'right').logits
        raise RuntimeError(f'invalid mode "{mode}"')

    def _tokenize_samples(self, data_samples, padding_side: str):
        """Tokenize the samples' text, truncated at ``max_text_length``.

        Returns:
            dict: ``input_ids`` and ``attention_mask`` ``(B, S)``;
            ``num_media`` ``(B, )``, the media whose ``<image>`` markers
            survive truncation (the first ones: the others are never seen);
            ``num_truncated``, how many texts truncation cut.
        """
        texts = [s.text for s in data_samples]
        text = self._tokenize(texts, padding_side, truncate=True)
        # no text may name more media than its sample has
        self._num_media(data_samples, text['input_ids'])
        text['num_media'] = (text['input_ids'] == self.tokens.media).sum(-1)
        text['num_truncated'] = self._num_truncated(texts,
                                                    text['attention_mask'])
        return text

    def _num_truncated(self, texts: List[str],
                       attention_mask: torch.Tensor) -> torch.Tensor:
        """How many of ``texts`` truncation at ``max_text_length`` cut."""
        num = 0
        if self.max_text_length is not None:
            # only a text that fills max_text_length tokens may have been cut
            full = attention_mask.sum(-1) == self.max_text_length
            filled = [texts[i] for i in full.nonzero().flatten().tolist()]
            if filled:
                num = sum(
                    len(ids) > self.max_text_length
                    for ids in self.tokenizer(filled)['input_ids'])
        return attention_mask.new_tensor(num, dtype=torch.float32)

    def _zero_loss(self) -> torch.Tensor:
        """0, with a (zero) gradient for every trained parameter.

        DDP and DeepSpeed reduce every trained parameter's gradient at each
        step: a process whose loss misses some would wait for the others for
        ever (or fail).
        """
        return sum(
            p.sum(dtype=torch.float32)
            for p in self.parameters() if p.requires_grad) * 0

    def _forward_text(self, images, data_samples, padding_side: str):
        text = self._tokenize_samples(data_samples, padding_side)
        return self.head(
            text['input_ids'],
            text['attention_mask'],
            self.extract_media(images, text['num_media']),
            num_media=text['num_media'])

    def loss(
        self, images: Union[Images, Dict[str, Images]],
        data_samples: Union[Samples, Dict[str, Samples]]
    ) -> Dict[str, torch.Tensor]:
        """Next-token loss over ``data_sample.text`` (OpenFlamingo's labels).

        Each sample's tokens are weighted by its ``loss_weight`` metainfo
        (default 1). Given a mixture (``images`` and ``data_samples`` as dicts
        keyed by dataset name, see :class:`MixtureTrainLoop`), the loss is the
        sum of the datasets' weighted losses, so one optimizer step follows
        the weighted sum of every dataset's gradient; each dataset's own
        (unweighted) loss is logged as ``<name>_nll``.

        Text is truncated at ``max_text_length``; the media whose markers
        are cut, like the batch's padding media, are not encoded. A batch
        left empty by skipped samples (see :class:`FlamingoDataPreprocessor`)
        has a zero loss and no ``nll``.

        Returns:
            dict: ``loss`` and, for logging, ``nll`` (the unweighted loss),
            ``num_tokens`` (tokens learned) and ``num_truncated`` (texts
            truncation cut).
        """
        if isinstance(data_samples, dict):
            parts = {
                name: self.loss(images[name], samples)
                for name, samples in data_samples.items()
            }
            logs = {}
            for name, part in parts.items():
                if 'nll' in part:
                    logs[f'{name}_nll'] = part['nll']
                logs[f'{name}_tokens'] = part['num_tokens']
            return dict(
                loss=sum(part['loss'] for part in parts.values()),
                **logs,
                num_tokens=sum(part['num_tokens'] for part in parts.values()),
                num_truncated=sum(part['num_truncated']
                                  for part in parts.values()))
        if not data_samples:
            # a loss still, so that DDP and DeepSpeed reduce the gradients
            zero = self._zero_loss()
            return dict(
                loss=zero,
                num_tokens=zero.detach(),
                num_truncated=zero.detach())
        text = self._tokenize_samples(data_samples, 'right')
        labels = build_labels(text['input_ids'], text['attention_mask'],
                              self.tokens.media, self.tokens.end_of_chunk)
        # each position predicts the next token; the last predicts nothing
        labels = F.pad(labels[:, 1:], (0, 1), value=-100)
        learned = labels != -100  # (B, S)
        # logits only where a token is learned: no output projection for
        # padding and unlearned text
        media = self.extract_media(images, text['num_media'])
        logits = self.head(
            text['input_ids'],
            text['attention_mask'],
            media,
            num_media=text['num_media'],
            logits_positions=learned).logits[0]  # (N, V)
        token_loss = F.cross_entropy(
            logits.float(), labels[learned], reduction='none')  # (N, )
        weights = token_loss.new_tensor(
            [s.get('loss_weight', 1.0) for s in data_samples])
        # the sample each learned token belongs to
        rows = learned.nonzero()[:, 0]
        # a batch with nothing to learn (e.g. text only) gives 0, not 0 / 0
        num_tokens = learned.sum()
        denominator = num_tokens.clamp(min=1)
        nll = token_loss.sum() / denominator
        loss = (token_loss * weights[rows]).sum() / denominator
        if media is None:
            # no medium reached the cross-attention (text only, or every
            # marker cut): the perceiver and the attention need a gradient
            loss = loss + self._zero_loss()
        return dict(
            loss=loss,
            nll=nll.detach(),
            num_tokens=num_tokens.float(),
            num_truncated=text['num_truncated'])

    def _visual_tokens(
            self, images: Images,
            media_tokens: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """The given ``media_tokens`` or those of ``images``."""
        if media_tokens is not None:
            return media_tokens
        return self.extract_media(images)

    @torch.no_grad()
    def predict(self,
                images: Optional[torch.Tensor],
                data_samples: List[DataSample],
                media_tokens: Optional[torch.Tensor] = None,
                **generation_cfg) -> List[DataSample]:
        """Generate after each sample's prompt (``data_sample.text``).

        Prompts are left-padded into one batch; beams share their sample's
        visual tokens. Generation stops at ``<|endofchunk|>``.

        ``media_tokens`` (``(B, N, L, D)``, e.g. from
        :class:`~mmflamingo.evaluation.VisualTokenCache`) replace
        ``images``, which may then be None; each sample's ``num_media`` says
        how many of its N are real.

        With ``num_return_sequences=R > 1`` (beam search, or sampling with
        ``do_sample=True``), each sample also gets its R texts as a list,
        ``pred_captions`` or ``pred_answers``, in ``generate``'s order: beam
        search returns its R best beams best first, so ``pred_caption`` /
        ``pred_answer`` is the best; samples are R independent draws, in no
        order, and ``pred_caption`` / ``pred_answer`` is the first of them.

        Returns:
            list[DataSample]: with ``pred_caption`` or ``pred_answer`` (and
            ``pred_captions`` or ``pred_answers`` when R > 1).
        """
        cfg = {**self.generation_cfg, **generation_cfg}
        prompt = self._tokenize([s.text for s in data_samples], 'left')
        num_media = self._num_media(data_samples, prompt['input_ids'])
        generated = self.head.generate(
            prompt['input_ids'],
            prompt['attention_mask'],
            self._visual_tokens(images, media_tokens),
            num_media=num_media,
            **cfg)
        new_tokens = generated[:, prompt['input_ids'].shape[1]:]
        texts = [
            text.strip() for text in self.tokenizer.batch_decode(
                new_tokens, skip_special_tokens=True)
        ]
        # (B * R, ) texts, sample-major: the R of sample i are rows iR..iR+R-1
        per_sample = len(texts) // len(data_samples)
        field = 'pred_caption' if self.task == 'caption' else 'pred_answer'
        for i, sample in enumerate(data_samples):
            sequences = texts[i * per_sample:(i + 1) * per_sample]
            sample.set_field(sequences[0], field)
            if per_sample > 1:
                sample.set_field(sequences, field + 's')
        return data_samples

    @torch.no_grad()
    def score(self,
              images: Optional[torch.Tensor],
              data_samples: List[DataSample],
              media_tokens: Optional[torch.Tensor] = None,
              reduction: str = 'sum',
              chunk_size: Optional[int] = None) -> List[DataSample]:
        """Log-likelihood of each ``data_sample.candidates`` after its prompt.

        Each prompt and its images are encoded once, and its KV cache serves
        all its candidates (see :meth:`FlamingoLMHead.score`); samples may
        have different numbers of candidates. ``media_tokens`` replace
        ``images`` as in :meth:`predict`.

        Args:
            images (Tensor, optional): ``(B, N, T, C, H, W)``.
            data_samples (list[DataSample]): With ``text`` (the prompt) and
                ``candidates`` (a list of str, each scored as the text right
                after the prompt).
            media_tokens (Tensor, optional): ``(B, N, L, D)`` visual tokens.
            reduction (str): ``'sum'`` or ``'mean'`` of a candidate's token
                log-probabilities. Defaults to ``'sum'``.
            chunk_size (int, optional): Candidates per LM call. Defaults to
                all of them in one call.

        Returns:
            list[DataSample]: with ``pred_scores``, a ``(C_i, )`` float32
            tensor for the C_i candidates of sample i.
        """
        prompt = self._tokenize([s.text for s in data_samples], 'left')
        num_media = self._num_media(data_samples, prompt['input_ids'])
        candidates = [list(s.candidates) for s in data_samples]
        num = max(len(c) for c in candidates)
        if num == 0:
            raise ValueError('no sample of the batch has candidates')
        # samples with fewer candidates get empty ones, which score -inf
        flat = [
            c for cands in candidates
            for c in cands + [''] * (num - len(cands))
        ]
        # each distinct text tokenized once (the samples of a batch often
        # share their candidates, e.g. 1000 class names)
        distinct = list(dict.fromkeys(flat))
        place = {text: i for i, text in enumerate(distinct)}
        rows = torch.tensor([place[text] for text in flat])
        cont = self.tokenizer(
            distinct,
            add_special_tokens=False,
            padding='longest',
            padding_side='right',
            return_tensors='pt')
        cont = {
            key: cont[key][rows].to(self.data_preprocessor.device)
            for key in ('input_ids', 'attention_mask')
        }
        lengths = cont['attention_mask'].sum(-1).view(-1, num)  # (B, C)
        for i, cands in enumerate(candidates):
            for name, length in zip(cands, lengths[i].tolist()):
                if length == 0:
                    raise ValueError(f'sample {i}: the candidate {name!r} '
                                     'has no tokens')
        shape = (len(data_samples), num, -1)
        scores = self.head.score(
            prompt['input_ids'],
            prompt['attention_mask'],
            self._visual_tokens(images, media_tokens),
            cont['input_ids'].view(shape),
            cont['attention_mask'].view(shape),
            num_media=num_media,
            reduction=reduction,
            chunk_size=chunk_size)
        for sample, cands, sample_scores in zip(data_samples, candidates,
                                                scores):
            sample.set_field(sample_scores[:len(cands)].cpu(), 'pred_scores')
        return data_samples


def _frozen_names(model: Flamingo) -> set:
    return {
        name
        for name, p in model.named_parameters() if not p.requires_grad
    }


def _drop_frozen_weights(model: Flamingo, state_dict: dict, prefix: str,
                         local_metadata: dict) -> None:
    """State-dict hook: keep only trained weights unless ``save_frozen``."""
    if model.save_frozen:
        return
    for name in _frozen_names(model):
        state_dict.pop(prefix + name, None)


def _allow_missing_frozen_weights(model: Flamingo, incompatible_keys) -> None:
    """Load post-hook: frozen weights come from their pretrained files."""
    frozen = _frozen_names(model)
    missing = incompatible_keys.missing_keys
    missing[:] = [key for key in missing if key not in frozen]
