"""The gated XATTN language model: any HF causal LM plus GATED XATTN-DENSE."""
import contextlib
import copy
import inspect
from dataclasses import dataclass
from functools import partial
from typing import Dict, Iterator, Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import nn
from transformers import DynamicCache

from mmflamingo.compat import enable_activation_checkpointing, lm_cache_name
from mmflamingo.registry import MODELS
from mmflamingo.tokens import FlamingoTokens
from ..layers import (ExtendedEmbedding, ExtendedLMHead,
                      GatedCrossAttentionBlock)
from ..utils import build_causal_lm, find_decoder_layers, lm_hidden_size

KVPair = Tuple[torch.Tensor, torch.Tensor]
# LMs that take a 4-D attention mask (and position ids) after a KV cache, so
# that :meth:`FlamingoLMHead.score` packs continuations: each type is
# checked against the repeated-cache path in
# tests/test_models/test_heads/test_flamingo_lm_head.py
PACKED_SCORING_MODEL_TYPES = frozenset(
    ('llama', 'mistral', 'qwen2', 'qwen3', 'gemma', 'gemma2', 'gemma3_text',
     'phi', 'phi3', 'olmo2', 'opt', 'gpt_neox'))


@dataclass
class _VisualInputs:
    """What the cross-attention layers see during one call of the head.

    Built by :meth:`FlamingoLMHead.visual_inputs` from explicit arguments and
    dropped when that call returns: no visual state outlives a call.
    """
    media: Optional[torch.Tensor]  # (B, N, L, Dv) visual tokens, or None
    # per layer, (B, H, (N - kv_offset) * L, Dh): the keys and values of the
    # media from ``kv_offset`` (0-based) on, kept between the LM calls of
    # one head call; each call projects what it needs that is not kept
    media_kv: Dict[str, KVPair]
    # (B, P + 1): images in the cache and among the first j prompt tokens
    prompt_media_counts: torch.Tensor
    num_media: torch.Tensor  # (B, ) images available per sample
    num_latents: int
    past_length: int = 0  # tokens in the KV cache before the prompt
    kv_offset: Optional[int] = None  # first media in media_kv (None: none)
    call_offset: int = 0  # first media this LM call attends to
    project: bool = True  # this call projects media[:, call_offset:]
    keep_from: int = 0  # first media a later call can attend to
    media_index: Optional[torch.Tensor] = None  # (B * K, S), per LM call
    attn_bias: Optional[torch.Tensor] = None  # (B, 1, K * S, N * L), per call
    logits_positions: Optional[torch.Tensor] = None  # (B, S) bool, see forward


@MODELS.register_module()
class FlamingoLMHead(BaseModule):
    """A frozen causal LM with GATED XATTN-DENSE blocks before chosen layers.

    The LM's decoder layers are found generically, and a forward pre-hook on
    each chosen layer applies its :class:`GatedCrossAttentionBlock` to the
    hidden states entering it, so the LM keeps its own modules, parameter
    names and caching; LLaMA (Llama 3's RoPE scaling included), Mistral,
    Qwen2, Qwen3, Gemma, Gemma 2, Gemma 3, Phi, Phi-3, OLMo 2, OPT, GPT-2,
    GPT-NeoX and MPT all work unchanged.

    The tokenizer's new tokens get trainable rows of their own
    (:class:`ExtendedEmbedding`, :class:`ExtendedLMHead`); the rest of the LM
    is frozen.

    Args:
        lm (dict): How to build the LM: ``pretrained`` (local directory) or
            ``config`` (dict with ``model_type``), plus optional
            ``torch_dtype`` and ``trust_remote_code``.
        tokens (FlamingoTokens): Ids of the Flamingo tokens (given by
            :class:`Flamingo`, which owns the tokenizer).
        dim_visual (int): Feature size of the visual tokens.
        cross_attn_every_n_layers (int): Insert a block every n layers.
            Defaults to 1.
        xattn_placement (str): ``'openflamingo'``: before layer i when
            ``(i + 1) % n == 0``; ``'paper'``: when ``i % n == 0`` (from
            layer 0). Defaults to ``'openflamingo'``.
        only_attend_last_media (bool): Each token sees only the most recent
            preceding image; False: all preceding images. Defaults to True.
        xattn_cfg (dict, optional): ``dim_head``, ``heads``, ``ff_mult``,
            ``act`` of the blocks. Defaults to OpenFlamingo's (64, 8, 4,
            ``'gelu'``).
        decoder_layers_attr (str, optional): Dotted path of the decoder
            layers, if they cannot be found automatically.
        gradient_checkpointing (bool): Recompute the LM's layers in the
            backward pass instead of storing their activations (with
            transformers 4 the blocks run by their pre-hooks too; 5 keeps
            hooks out of the recomputation). The frozen LM otherwise runs
            in eval mode (no dropout, like the frozen vision encoder);
            ``transformers`` checkpoints only in train mode, so with this
            option it runs in train mode and its dropout, if any, is
            active. Defaults to False.
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self,
                 lm: dict,
                 tokens: FlamingoTokens,
                 dim_visual: int,
                 cross_attn_every_n_layers: int = 1,
                 xattn_placement: str = 'openflamingo',
                 only_attend_last_media: bool = True,
                 xattn_cfg: Optional[dict] = None,
                 decoder_layers_attr: Optional[str] = None,
                 gradient_checkpointing: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if xattn_placement not in ('openflamingo', 'paper'):
            raise ValueError('xattn_placement must be "openflamingo" or '
                             f'"paper", got {xattn_placement!r}')
        self.tokens = tokens
        self.lm = build_causal_lm(**lm, field='model.head.lm')
        self.lm.requires_grad_(False)
        self._extend_vocabulary()

        _, layers = find_decoder_layers(self.lm, decoder_layers_attr)
        offset = 1 if xattn_placement == 'openflamingo' else 0
        xattn_cfg = dict(xattn_cfg or {})
        self.xattn_layers = [
            i for i in range(len(layers))
            if (i + offset) % cross_attn_every_n_layers == 0
        ]
        self.only_attend_last_media = only_attend_last_media
        self.xattn_blocks = nn.ModuleDict({
            str(i):
            GatedCrossAttentionBlock(
                lm_hidden_size(self.lm),
                dim_visual,
                only_attend_last_media=only_attend_last_media,
                **xattn_cfg)
            for i in self.xattn_layers
        })
        for i in self.xattn_layers:
            layers[i].register_forward_pre_hook(
                partial(self._cross_attend, str(i)), with_kwargs=True)
        self.lm.register_forward_pre_hook(self._locate_media, with_kwargs=True)
        output = self.lm.get_output_embeddings()
        if output is not None:
            output.register_forward_pre_hook(self._select_positions)
        self._visual: Optional[_VisualInputs] = None
        self._lm_takes_position_ids = 'position_ids' in inspect.signature(
            self.lm.forward).parameters
        # the LM's keyword and output field for its KV cache
        self.cache_name: str = lm_cache_name(self.lm)
        # LMs with a fixed-size cache of their own (Gemma 2's HybridCache)
        # would size it to the call that starts it, which later calls
        # (decode steps, continuations) outgrow: they get a DynamicCache.
        # (transformers 4.x's Gemma 2 masks its sliding window right with a
        # DynamicCache only while the text fits in the window, 4096 tokens.)
        self._lm_sizes_its_cache = getattr(self.lm.generation_config,
                                           'cache_implementation',
                                           None) is not None
        self.gradient_checkpointing = gradient_checkpointing
        if gradient_checkpointing:
            enable_activation_checkpointing(
                self.lm,
                dict(
                    use_reentrant=False, context_fn=self._checkpoint_contexts))
        self.train(self.training)

    def _checkpoint_contexts(self):
        """Contexts for a checkpointed layer's forward and recomputation.

        The layer is recomputed during backward, after its call has ended:
        the recomputation (of the block too, with transformers 4) gets back
        the visual inputs of that call.
        """
        visual = self._visual

        @contextlib.contextmanager
        def restore() -> Iterator[None]:
            previous, self._visual = self._visual, visual
            try:
                yield
            finally:
                self._visual = previous

        return contextlib.nullcontext(), restore()

    def train(self, mode: bool = True) -> 'FlamingoLMHead':
        """Train the blocks; the frozen LM stays in eval mode unless it is
        gradient-checkpointed (see ``gradient_checkpointing``)."""
        super().train(mode)
        self.lm.train(mode and self.gradient_checkpointing)
        return self

    def _extend_vocabulary(self) -> None:
        """Give the new tokens trainable input (and output) rows."""
        lm, tokens = self.lm, self.tokens
        old_in, old_out = lm.get_input_embeddings(), lm.get_output_embeddings()
        tied = old_out is not None and old_out.weight is old_in.weight
        embedding = ExtendedEmbedding(old_in, tokens.num_base, tokens.num_new,
                                      tokens.known)
        lm.set_input_embeddings(embedding)
        if old_out is not None:
            lm.set_output_embeddings(
                ExtendedLMHead(old_out, embedding, tied, tokens.known))
        lm.config.vocab_size = embedding.num_embeddings

    def init_weights(self) -> None:
        """Keep the LM's weights: only the blocks are new, and they are
        initialised when built (the gates at 0)."""

    # ---------------------------------------------------------------- calls
    @contextlib.contextmanager
    def visual_inputs(self,
                      media: Optional[torch.Tensor],
                      prompt_ids: torch.Tensor,
                      num_media: Optional[torch.Tensor] = None,
                      past_media: Optional[torch.Tensor] = None,
                      past_length: int = 0) -> Iterator[None]:
        """Make ``media`` visible to the cross-attention during the block.

        The media keys and values are projected once here, for every layer,
        and reused by every LM call inside the block (all decode steps and
        beams of a generation).

        Args:
            media (Tensor, optional): ``(B, N, L, Dv)`` visual tokens, or
                None for text only.
            prompt_ids (Tensor): ``(B, P)`` ids of the first LM call; later
                calls continue it (with a KV cache) or repeat it with new
                tokens appended (without one).
            num_media (Tensor, optional): ``(B, )`` real images per sample
                when ``media`` is padded. Defaults to N for every sample.
            past_media (Tensor, optional): ``(B, )`` ``<image>`` tokens in
                the KV cache that the first call continues. Defaults to none.
            past_length (int): Tokens in that KV cache. Defaults to 0.
        """
        if self._visual is not None:
            raise RuntimeError('FlamingoLMHead calls cannot be nested')
        batch = prompt_ids.shape[0]
        if media is None:
            num_latents = 1
            num_media = prompt_ids.new_zeros(batch)
        else:
            if media.dim() != 4 or media.shape[0] != batch:
                raise ValueError(f'media must be (B={batch}, N, L, D), got '
                                 f'{tuple(media.shape)}')
            num_latents = media.shape[2]
            if num_media is None:
                num_media = prompt_ids.new_full((batch, ), media.shape[1])
        is_media = (prompt_ids == self.tokens.media).long()
        counts = F.pad(is_media.cumsum(-1), (1, 0))  # (B, P + 1)
        if past_media is not None:
            counts = counts + past_media.to(counts)[:, None]
        self._visual = _VisualInputs(media, {}, counts, num_media.long(),
                                     num_latents, past_length)
        try:
            yield
        finally:
            self._visual = None

    def _locate_media(self, lm, args, kwargs):
        """LM pre-hook: which image each token of this call may see."""
        visual = self._visual
        if visual is None:
            raise RuntimeError(
                'the Flamingo LM was called outside FlamingoLMHead.'
                'visual_inputs(); use FlamingoLMHead.forward/generate/score')
        input_ids = kwargs.get('input_ids', args[0] if args else None)
        rows, seq = input_ids.shape
        batch = visual.num_media.shape[0]
        if rows % batch:
            raise ValueError(f'{rows} LM rows cannot share the media of '
                             f'{batch} samples')
        per_sample = rows // batch
        past = self._past_length(kwargs, seq)
        prompt_len = visual.prompt_media_counts.shape[1] - 1
        # how far into the prompt this call starts
        start = min(past - visual.past_length, prompt_len)
        prior = visual.prompt_media_counts[:, start]
        index = prior.repeat_interleave(per_sample)[:, None] + (
            input_ids == self.tokens.media).long().cumsum(-1)
        # an <image> with no image behind it has nothing to show
        limit = visual.num_media.repeat_interleave(per_sample)[:, None]
        visual.media_index = index = torch.minimum(index, limit)
        if visual.media is not None:
            self._plan_media(visual, index, batch)

    def _plan_media(self, visual: _VisualInputs, index: torch.Tensor,
                    batch: int) -> None:
        """Which media this LM call projects or reuses, and its mask.

        A token that sees only the most recent image never sees one before
        the most recent image of its row's first token, nor can any later
        call's token: the keys and values of the earlier media are neither
        projected (a prompt's media are projected one layer at a time) nor
        kept. After a prompt of N images, its continuations (generated
        tokens, scored class names) attend to 1 image's keys, not N's.
        """
        num_media = visual.media.shape[1]
        first, keep = 0, 0
        if self.only_attend_last_media and bool((index > 0).any()):
            # 1-based media index -> 0-based place in visual.media
            first = int(index[index > 0].min()) - 1
            # later calls continue after each row's last token
            keep = max(int(index[:, -1].min()) - 1, 0)
        visual.project = visual.kv_offset is None or visual.kv_offset > first
        visual.call_offset = first if visual.project else visual.kv_offset
        visual.keep_from = max(keep, visual.call_offset)
        # one mask for every layer of this call, over the media it attends
        # to: (index - offset) is the media's place among them
        shifted = torch.where(index > 0, index - visual.call_offset, 0)
        block = next(iter(self.xattn_blocks.values()))
        visual.attn_bias = block.attn.attention_bias(
            shifted, batch,
            (num_media - visual.call_offset) * visual.num_latents,
            visual.num_latents, block.ff_gate.dtype)
        if visual.project:
            visual.kv_offset = None  # set again as the layers keep theirs
            visual.media_kv.clear()

    def _media_kv(self, name: str, visual: _VisualInputs) -> KVPair:
        """A layer's keys and values for this call (see
        :meth:`_plan_media`)."""
        if not visual.project:
            return visual.media_kv[name]
        block = self.xattn_blocks[name]
        media = visual.media[:, visual.call_offset:]
        kv = block.project_media(media.to(block.ff_gate.dtype))
        if not torch.is_grad_enabled():
            # inference: keep what a later call can attend to, as a copy
            # (a view would keep the others alive)
            skip = (visual.keep_from - visual.call_offset) * visual.num_latents
            visual.media_kv[name] = tuple(t[:, :, skip:].contiguous()
                                          for t in kv)
            visual.kv_offset = visual.keep_from
        return kv

    def _past_length(self, lm_kwargs: dict, seq: int) -> int:
        """Tokens in the KV cache before the ``seq`` tokens of an LM call."""
        # the attention mask (2-D, or 4-D from :meth:`score`) covers them too
        attention_mask = lm_kwargs.get('attention_mask')
        if attention_mask is not None:
            return attention_mask.shape[-1] - seq
        # transformers 5 ``generate`` drops a mask without padding
        cache = lm_kwargs.get(self.cache_name)
        if cache is None:
            return 0
        return cache.get_seq_length()

    def _cross_attend(self, name, layer, args, kwargs):
        """Decoder-layer pre-hook: GATED XATTN-DENSE on its input."""
        visual, block = self._visual, self.xattn_blocks[name]
        in_kwargs = 'hidden_states' in kwargs
        hidden = kwargs['hidden_states'] if in_kwargs else args[0]
        x = hidden.to(block.ff_gate.dtype)
        if visual.media is None:
            x = x + block.ff_gate.tanh() * block.ff(x)
        else:
            x = block.gated(x, self._media_kv(name, visual), visual.attn_bias,
                            visual.media_index > 0)
        x = x.to(hidden.dtype)
        if in_kwargs:
            return args, {**kwargs, 'hidden_states': x}
        return (x, *args[1:]), kwargs

    def _select_positions(self, output_layer, args):
        """Output-layer pre-hook: project only the positions asked for."""
        positions = self._visual.logits_positions if self._visual else None
        if positions is None:
            return None
        hidden = args[0]
        # (B, S, D) -> (1, N, D): the selected positions, batch-major
        return (hidden[positions][None], *args[1:])

    def _lm_kwargs(self, input_ids, attention_mask, past_key_values,
                   use_cache) -> dict:
        if use_cache and past_key_values is None and \
                self._lm_sizes_its_cache:
            past_key_values = DynamicCache()
        kwargs = {
            'input_ids': input_ids,
            'attention_mask': attention_mask,
            self.cache_name: past_key_values,
            'use_cache': use_cache,
            'return_dict': True
        }
        if self._lm_takes_position_ids:
            # left padding: count positions from each row's first real token
            positions = attention_mask.long().cumsum(-1) - 1
            kwargs['position_ids'] = positions[:, -input_ids.shape[1]:].clamp(
                min=0)
        return kwargs

    def forward(self,
                input_ids: torch.Tensor,
                attention_mask: torch.Tensor,
                media: Optional[torch.Tensor],
                num_media: Optional[torch.Tensor] = None,
                past_key_values=None,
                past_media: Optional[torch.Tensor] = None,
                use_cache: bool = False,
                logits_positions: Optional[torch.Tensor] = None):
        """Run the LM on text interleaved with ``media``.

        Args:
            input_ids (Tensor): ``(B, S)``.
            attention_mask (Tensor): ``(B, S)`` (``(B, past + S)`` with a
                cache).
            media (Tensor, optional): ``(B, N, L, Dv)`` visual tokens.
            num_media (Tensor, optional): ``(B, )`` real images per sample.
            past_key_values: The LM's KV cache from an earlier call
                (``use_cache=True``), which ``input_ids`` continue.
            past_media (Tensor, optional): ``(B, )`` ``<image>`` tokens in
                ``past_key_values``, so that the new tokens see the image
                they follow; required with ``past_key_values``.
                (:meth:`generate` and :meth:`score` keep their own cache.)
            use_cache (bool): Return the KV cache.
            logits_positions (Tensor, optional): ``(B, S)`` bool: compute
                logits only there (a training loss needs them where a label
                follows, not on padding or unlearned text); the output's
                ``logits`` are then ``(1, N, V)`` for the N positions, in
                batch-major order. Defaults to all positions, ``(B, S, V)``.

        Returns:
            ``transformers.modeling_outputs.CausalLMOutputWithPast``; with
            ``use_cache``, its field :attr:`cache_name` holds the KV cache
            (``past_key_values`` in transformers 4, ``cache`` in 5).
        """
        past_length = 0
        if past_key_values is not None:
            if past_media is None or past_media.shape != input_ids.shape[:1]:
                shape = None if past_media is None else tuple(past_media.shape)
                raise ValueError(
                    'FlamingoLMHead.forward with past_key_values needs '
                    f'past_media, the ({input_ids.shape[0]}, ) counts of '
                    f'<image> tokens in the cache; got {shape}')
            past_length = attention_mask.shape[1] - input_ids.shape[1]
        with self.visual_inputs(media, input_ids, num_media, past_media,
                                past_length):
            self._visual.logits_positions = logits_positions
            return self.lm(**self._lm_kwargs(input_ids, attention_mask,
                                             past_key_values, use_cache))

    @torch.no_grad()
    def generate(self,
                 input_ids: torch.Tensor,
                 attention_mask: torch.Tensor,
                 media: Optional[torch.Tensor],
                 num_media: Optional[torch.Tensor] = None,
                 **generate_kwargs) -> torch.Tensor:
        """Generate with ``transformers``' ``generate``, seeing ``media``.

        Beams (and returned sequences) of a sample share its projected media
        keys and values: nothing visual is repeated per beam.

        Args:
            input_ids (Tensor): ``(B, P)`` left-padded prompts.
            attention_mask (Tensor): ``(B, P)``.
            media (Tensor, optional): ``(B, N, L, Dv)`` visual tokens.
            num_media (Tensor, optional): ``(B, )`` real images per sample.
            **generate_kwargs: Passed to ``generate`` (``num_beams``,
                ``max_new_tokens``, ``eos_token_id``, ...).

        Returns:
            Tensor: ``(B * num_return_sequences, P + new)`` token ids.
        """
        generate_kwargs.setdefault('pad_token_id', self.tokens.pad)
        generate_kwargs.setdefault('eos_token_id', self.tokens.end_of_chunk)
        # an <image> token generated without an image has nothing to show
        generate_kwargs.setdefault('suppress_tokens', [self.tokens.media])
        # explicit: transformers 5 takes the default from the LM's config
        # (False for MPT), and a cache is passed below
        use_cache = generate_kwargs.setdefault('use_cache', True)
        with self.visual_inputs(media, input_ids, num_media):
            if use_cache and input_ids.shape[1] > 1:
                # ``generate`` would run the prompt once per beam; run it
                # once per sample instead and give every beam a copy of the
                # cache. The last prompt token is left for ``generate``.
                # no logits: the prefill is run for its cache only
                self._visual.logits_positions = input_ids.new_zeros(
                    input_ids[:, :-1].shape, dtype=torch.bool)
                prefill = self.lm(**self._lm_kwargs(
                    input_ids[:, :-1], attention_mask[:, :-1], None, True))
                self._visual.logits_positions = None
                rows = _rows_per_sample(generate_kwargs)
                generate_kwargs[self.cache_name] = _repeat_cache(
                    prefill[self.cache_name], rows)
                if self._lm_sizes_its_cache:
                    # generate refuses a cache besides a cache_implementation
                    generate_kwargs.setdefault('cache_implementation', None)
            return self.lm.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                **generate_kwargs)

    @torch.no_grad()
    def score(self,
              input_ids: torch.Tensor,
              attention_mask: torch.Tensor,
              media: Optional[torch.Tensor],
              continuation_ids: torch.Tensor,
              continuation_mask: torch.Tensor,
              num_media: Optional[torch.Tensor] = None,
              reduction: str = 'sum',
              chunk_size: Optional[int] = None) -> torch.Tensor:
        """Log-likelihood of continuations after a prompt, prompt run once.

        The prompt runs once per sample, its logits at its last position
        only, and its KV cache serves all the sample's continuations, which
        are scored ``chunk_size`` per LM call:

        - **packed** (the LMs of :data:`PACKED_SCORING_MODEL_TYPES`, which
          take 4-D attention masks): a sample's continuations follow each
          other in one row after the cached prompt, each seeing the prompt
          and its own earlier tokens (a 4-D mask) at the positions it would
          have alone; the cache is not copied per continuation, and the
          layers share one buffer for a chunk's keys and values
          (:class:`_PrefixCache`); every chunk's row is padded to the
          widest chunk's tokens, so that all LM calls allocate the same
          shapes and the allocator reuses its blocks (chunks of varying
          widths left glibc's heap in holes: a peak up to ~100 MiB higher
          on 1000 ImageNet names, for ~15% more compute);
        - **repeated** (the other LMs, e.g. GPT-2 and MPT, whose ALiBi
          ties a bias to a token's place in the row): each continuation
          gets a row with a copy of its sample's cache, ``chunk_size`` rows
          per sample at a time.

        Either way the logits are computed only where a continuation token
        is predicted.

        Args:
            input_ids (Tensor): ``(B, P)`` left-padded prompts.
            attention_mask (Tensor): ``(B, P)``.
            media (Tensor, optional): ``(B, N, L, Dv)`` visual tokens.
            continuation_ids (Tensor): ``(B, C, Lc)`` right-padded.
            continuation_mask (Tensor): ``(B, C, Lc)``; an all-zero row is
                no continuation (a sample with fewer than C) and scores
                ``-inf``.
            num_media (Tensor, optional): ``(B, )`` real images per sample.
            reduction (str): ``'sum'`` of the continuation's token
                log-probabilities, or their ``'mean'`` (OpenFlamingo ranks
                class names by it). Defaults to ``'sum'``.
            chunk_size (int, optional): Continuations per LM call. Defaults
                to all C in one call.

        Returns:
            Tensor: ``(B, C)`` float32 log-likelihoods.
        """
        if reduction not in ('sum', 'mean'):
            raise ValueError(
                f"reduction must be 'sum' or 'mean', got {reduction!r}")
        batch, num_cont, _ = continuation_ids.shape
        chunk_size = chunk_size or max(num_cont, 1)
        lengths = continuation_mask.sum(-1)  # (B, C)
        packed = self.packed_scoring
        with self.visual_inputs(media, input_ids, num_media):
            # the prompt's last logits predict every first token
            self._visual.logits_positions = F.pad(
                attention_mask.new_zeros(
                    batch, input_ids.shape[1] - 1, dtype=torch.bool), (0, 1),
                value=True)
            prompt = self.lm(
                **self._lm_kwargs(input_ids, attention_mask, None, True))
            cache = prompt[self.cache_name]
            first = prompt.logits[0].float().log_softmax(-1)  # (B, V)
            if packed:
                # every chunk as wide as the widest: the same shapes in
                # every LM call, so the allocator reuses its blocks
                width = max(
                    int(lengths[:, start:start + chunk_size].sum(-1).max())
                    for start in range(0, num_cont, chunk_size))
                if _PrefixCache.takes(cache):
                    cache = _PrefixCache(cache, width)
                    del prompt  # its cache: _PrefixCache holds what it needs
            rest = []
            for start in range(0, num_cont, chunk_size):
                chunk = (continuation_ids[:, start:start + chunk_size],
                         continuation_mask[:, start:start + chunk_size])
                if packed:
                    rest.append(
                        self._score_packed(*chunk, attention_mask, cache,
                                           width))
                else:
                    rest.append(
                        self._score_repeated(*chunk, attention_mask, cache))
        logprobs = first.gather(-1, continuation_ids[..., 0]) + torch.cat(
            rest, dim=1)  # (B, C)
        if reduction == 'mean':
            logprobs = logprobs / lengths.clamp(min=1)
        return logprobs.masked_fill(lengths == 0, -float('inf'))

    @property
    def packed_scoring(self) -> bool:
        """Whether :meth:`score` packs continuations (see there)."""
        return self.lm.config.model_type in PACKED_SCORING_MODEL_TYPES

    def _chunk_logprobs(self, logits: torch.Tensor, targets: torch.Tensor,
                        rows: torch.Tensor, columns: torch.Tensor,
                        shape: Tuple[int, int]) -> torch.Tensor:
        """Sum the log-probabilities of ``targets`` into ``(rows, columns)``
        of a ``shape`` table (``logits``: ``(N, V)``, the others ``(N, )``).
        """
        logprobs = logits.float().log_softmax(-1).gather(-1, targets[:,
                                                                     None])[:,
                                                                            0]
        return logprobs.new_zeros(shape).index_put_((rows, columns),
                                                    logprobs,
                                                    accumulate=True)

    def _score_packed(self, ids: torch.Tensor, mask: torch.Tensor,
                      prompt_mask: torch.Tensor, cache,
                      width: int) -> torch.Tensor:
        """``(B, K)`` summed log-probs of all but the first token of K
        continuations packed after the cached prompt (see :meth:`score`),
        in a row of ``width`` tokens (at least the chunk's; padding after
        them).
        """
        batch, num, cont_len = ids.shape
        valid = mask.bool()
        lengths = valid.sum(-1)  # (B, K)
        if not lengths.any():
            return ids.new_zeros(batch, num, dtype=torch.float32)
        # each continuation token's place in its sample's packed row
        step = torch.arange(cont_len, device=ids.device).expand_as(ids)
        slot = (lengths.cumsum(-1) - lengths)[..., None] + step  # (B, K, Lc)
        row = torch.arange(batch, device=ids.device)[:, None, None]
        row, owner = row.expand_as(ids)[valid], torch.arange(
            num, device=ids.device)[:, None].expand_as(ids)[valid]
        slot, step = slot[valid], step[valid]
        packed = ids.new_full((batch, width), self.tokens.pad)
        packed[row, slot] = ids[valid]  # (B, K, Lc) -> (B, T)
        owners = ids.new_full((batch, width), -1)
        owners[row, slot] = owner
        steps = ids.new_zeros(batch, width)
        steps[row, slot] = step
        # a token sees the prompt and its own continuation's earlier tokens
        # (a padding slot sees the prompt only): (B, T, P + T)
        earlier = torch.ones(
            width, width, dtype=torch.bool, device=ids.device).tril()
        own = (owners[:, :, None] == owners[:, None, :]) & earlier
        visible = torch.cat(
            (prompt_mask.bool()[:, None].expand(-1, width, -1), own), dim=-1)
        dtype = self.lm.get_input_embeddings().weight.dtype
        bias = torch.zeros(
            visible.shape, dtype=dtype, device=ids.device).masked_fill_(
                ~visible,
                torch.finfo(dtype).min)[:, None]  # (B, 1, T, P + T)
        # the positions each token would have right after its prompt
        positions = prompt_mask.long().sum(-1, keepdim=True) + steps
        # logits where the next slot is the same continuation's next token
        predicts = torch.zeros_like(owners, dtype=torch.bool)
        predicts[row, slot] = step + 1 < lengths[row, owner]
        prompt_len = prompt_mask.shape[1]
        self._visual.logits_positions = predicts
        kwargs = {
            'input_ids': packed,
            'attention_mask': bias,
            self.cache_name: cache,
            'use_cache': True,
            'return_dict': True,
            'position_ids': positions
        }
        try:
            logits = self.lm(**kwargs).logits[0]  # (N, V)
        finally:
            # back to the prompt's cache for the next chunk (a legacy tuple
            # cache is copied by the LM, not extended); a negative count of
            # tokens to remove means the same to transformers 4 and 5
            if hasattr(cache, 'crop') and cache.get_seq_length() > prompt_len:
                cache.crop(prompt_len - cache.get_seq_length())
        rows, slots = predicts.nonzero(as_tuple=True)
        return self._chunk_logprobs(logits, packed[rows, slots + 1], rows,
                                    owners[rows, slots], (batch, num))

    def _score_repeated(self, ids: torch.Tensor, mask: torch.Tensor,
                        prompt_mask: torch.Tensor, cache) -> torch.Tensor:
        """``(B, K)`` summed log-probs of all but the first token of K
        continuations, one row each with a copy of the prompt's cache."""
        batch, num, cont_len = ids.shape
        flat_ids, flat_mask = ids.flatten(0, 1), mask.flatten(0, 1)
        # (B * K, Lc): logits where the continuation's next token follows
        predicts = F.pad(flat_mask[:, 1:].bool(), (0, 1), value=False)
        if not predicts.any():
            return ids.new_zeros(batch, num, dtype=torch.float32)
        full_mask = torch.cat(
            (prompt_mask.repeat_interleave(num, 0), flat_mask), dim=1)
        self._visual.logits_positions = predicts
        logits = self.lm(
            **self._lm_kwargs(flat_ids, full_mask, _repeated_cache(cache, num),
                              True)).logits[0]  # (N, V)
        rows, steps = predicts.nonzero(as_tuple=True)
        return self._chunk_logprobs(logits, flat_ids[rows, steps + 1],
                                    rows // num, rows % num, (batch, num))


class _PrefixCache(DynamicCache):
    """A prompt's KV cache that continuations are scored against, chunk
    after chunk, without growing it.

    The LM's layers run one after another and a layer needs a chunk's keys
    and values only inside its own attention, so all layers share one
    buffer of the prompt's length plus ``room``: a layer's call copies its
    prompt keys and values into it, writes the chunk's after them and
    attends over both. The cache keeps the prompt's length, so the next
    chunk starts after the prompt again. A :class:`DynamicCache` would
    concatenate new keys and values in every layer for every chunk (the
    whole cache again, alive until the chunk ends) and be cropped back.

    Args:
        cache (DynamicCache): The prompt's cache, ``(B, H, P, Dh)`` per layer
            (see :meth:`takes`).
        room (int): The most tokens one chunk holds.
    """

    def __init__(self, cache: DynamicCache, room: int) -> None:
        super().__init__([tuple(layer[:2]) for layer in cache])
        # the prompt's keys and values as this cache holds them (transformers
        # 5 copies them, 4 keeps the prompt cache's own): one copy lives on
        self._layers = [tuple(layer[:2]) for layer in self]
        keys = self._layers[0][0]
        self._prompt_len = keys.shape[-2]
        self._buffer = keys.new_empty(2, *keys.shape[:-2],
                                      self._prompt_len + room, keys.shape[-1])

    @staticmethod
    def takes(cache) -> bool:
        """Whether ``cache`` is a full-attention :class:`DynamicCache` (no
        sliding-window layers, as transformers 5 may hold) with the same
        shape of keys and values in every layer."""
        if type(cache) is not DynamicCache:
            return False
        layers = list(cache)
        if not layers or any(
                len(layer) > 2 and layer[2] is not None for layer in layers):
            return False
        shapes = {
            None if t is None else tuple(t.shape)
            for layer in layers
            for t in layer[:2]
        }
        return len(shapes) == 1 and None not in shapes

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor,
               layer_idx: int, *args, **kwargs):
        """The layer's prompt keys and values followed by the chunk's."""
        prompt, end = self._prompt_len, self._prompt_len + key_states.shape[-2]
        if end > self._buffer.shape[-2]:
            raise ValueError(
                f'a chunk of {key_states.shape[-2]} tokens does not fit the '
                f'{self._buffer.shape[-2] - prompt} made room for')
        keys, values = self._buffer[:, ..., :end, :]
        for out, past, new in ((keys, self._layers[layer_idx][0], key_states),
                               (values, self._layers[layer_idx][1],
                                value_states)):
            out[..., :prompt, :] = past
            out[..., prompt:, :] = new
        return keys, values


def _rows_per_sample(generate_kwargs: dict) -> int:
    """How many rows ``generate`` makes of each prompt."""
    num_beams = generate_kwargs.get('num_beams', 1)
    if num_beams > 1:
        return num_beams
    return generate_kwargs.get('num_return_sequences', 1)


def _repeated_cache(cache, repeats: int):
    """A copy of a KV cache with each row repeated ``repeats`` times
    (sample-major); ``cache`` itself is left as it is."""
    if isinstance(cache, tuple):
        return _repeat_cache(cache, repeats)
    return _repeat_cache(copy.deepcopy(cache), repeats)


def _repeat_cache(cache, repeats: int):
    """Repeat each row of a KV cache ``repeats`` times (sample-major)."""
    if hasattr(cache, 'batch_repeat_interleave'):
        cache.batch_repeat_interleave(repeats)
        return cache
    return tuple(
        tuple(t.repeat_interleave(repeats, 0) for t in layer)
        for layer in cache)
