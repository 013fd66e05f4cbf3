"""TEST REFERENCE ONLY: a minimal re-implementation of MosaicGPT's forward.

MosaicGPT is the modelling code that MPT-1B (``mosaicml/mpt-1b-redpajama-200b``
and ``anas-awadalla/mpt-1b-redpajama-200b``, OpenFlamingo-3B's LM) ships.
This file re-states, for the tests of
:mod:`mmflamingo.models.utils.mosaic_gpt`, what its inference path computes,
with its module names and in its order of operations, as published in
MosaicML's examples repository (Apache-2.0) at tag v0.0.4 (2023-04-10, the
code MPT-1B's model card links) and commit d5044ba6 (2023-04-27), which
compute the same function for a power-of-two number of heads:

- ``examples/llm/src/models/mosaic_gpt/mosaic_gpt.py``: ``MosaicGPT``
  (embeddings, ALiBi or learned positions, the attention bias with the
  padding mask folded in, logits from ``transformer.wte.weight``,
  ``logit_scale``; ``no_bias`` removes every bias, LayerNorms' included);
- ``examples/llm/src/models/layers/attention.py``: ``MultiheadAttention``
  (fused ``Wqkv``, clip, QK LayerNorm over all heads),
  ``scaled_multihead_dot_product_attention`` (the ``'torch'``
  implementation), ``gen_slopes`` and ``alibi_bias``;
- ``examples/llm/src/models/layers/gpt_blocks.py``: ``GPTBlock``, ``GPTMLP``;
- ``configuration_mosaic_gpt.py``: the config keys and defaults.

Left out, as a frozen LM in eval mode never reaches them: dropout, the KV
cache, prefix-LM and sequence-id masks, initialisation schemes, the flash and
triton kernels. composer's ``LPLayerNorm`` is a LayerNorm outside autocast.
It was checked against the published code of both versions (logits equal
to the last bit on tiny models, with and without QK LayerNorm, clipping,
biases, learned positions and logit scale).
"""
import json
import math
import os
import os.path as osp

import torch
import torch.nn.functional as F
from torch import nn

# MosaicGPTConfig's defaults (configuration_mosaic_gpt.py) for what is used
DEFAULTS = dict(
    d_model=2048,
    n_heads=16,
    n_layers=24,
    mlp_ratio=4,
    max_seq_len=2048,
    vocab_size=50368,
    attn_qk_ln=False,
    attn_clip_qkv=None,
    softmax_scale=None,
    prefix_lm=False,
    alibi=False,
    alibi_bias_max=8,
    logit_scale=None,
    no_bias=False,
    low_precision_layernorm=True)


def mosaic_gpt_config(**kwargs) -> dict:
    """A ``config.json`` as MPT-1B's (``MosaicGPTConfig.to_dict()``)."""
    return dict(
        DEFAULTS,
        model_type='mosaic_gpt',
        architectures=['MosaicGPT'],
        auto_map={
            'AutoConfig': 'configuration_mosaic_gpt.MosaicGPTConfig',
            'AutoModelForCausalLM': 'mosaic_gpt.MosaicGPT'
        },
        attn_impl='torch',
        attn_pdrop=0.0,
        resid_pdrop=0.0,
        emb_pdrop=0.0,
        attn_uses_sequence_id=False,
        embedding_fraction=1.0,
        init_device='cpu',
        use_cache=False,
        **kwargs)


class Attention(nn.Module):
    """``MultiheadAttention`` with ``attn_impl='torch'``."""

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        d_model, bias = cfg['d_model'], not cfg['no_bias']
        self.n_heads = cfg['n_heads']
        self.clip_qkv = cfg['attn_clip_qkv']
        self.qk_ln = cfg['attn_qk_ln']
        self.softmax_scale = cfg['softmax_scale'] or 1 / math.sqrt(
            d_model / self.n_heads)
        self.Wqkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        if self.qk_ln:
            self.q_ln = nn.LayerNorm(d_model, bias=bias)
            self.k_ln = nn.LayerNorm(d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor):
        qkv = self.Wqkv(x)
        if self.clip_qkv:
            qkv = qkv.clamp(min=-self.clip_qkv, max=self.clip_qkv)
        query, key, value = qkv.chunk(3, dim=2)
        if self.qk_ln:
            query = self.q_ln(query).to(query.dtype)
            key = self.k_ln(key).to(key.dtype)
        attn_bias = attn_bias[:, :, -query.size(1):, -key.size(1):]
        b, s, _ = query.shape
        # 'b s (h d) -> b h s d' (keys: 'b h d s')
        q = query.view(b, s, self.n_heads, -1).transpose(1, 2)
        k = key.view(b, s, self.n_heads, -1).permute(0, 2, 3, 1)
        v = value.view(b, s, self.n_heads, -1).transpose(1, 2)
        min_val = torch.finfo(q.dtype).min
        attn_weight = q.matmul(k) * self.softmax_scale + attn_bias
        causal = ~torch.ones(s, s, dtype=torch.bool, device=x.device).tril()
        attn_weight = attn_weight.masked_fill(causal.view(1, 1, s, s), min_val)
        attn_weight = torch.softmax(attn_weight, dim=-1)
        out = attn_weight.matmul(v).transpose(1, 2).reshape(b, s, -1)
        return self.out_proj(out)


class MLP(nn.Module):
    """``GPTMLP``."""

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        d_model, bias = cfg['d_model'], not cfg['no_bias']
        hidden = cfg['mlp_ratio'] * d_model
        self.mlp_up = nn.Linear(d_model, hidden, bias=bias)
        self.mlp_act = nn.GELU(approximate='none')
        self.mlp_down = nn.Linear(hidden, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp_down(self.mlp_act(self.mlp_up(x)))


class Block(nn.Module):
    """``GPTBlock``: pre-LayerNorm attention and MLP."""

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        bias = not cfg['no_bias']
        self.ln_1 = nn.LayerNorm(cfg['d_model'], bias=bias)
        self.attn = Attention(cfg)
        self.ln_2 = nn.LayerNorm(cfg['d_model'], bias=bias)
        self.mlp = MLP(cfg)

    def forward(self,
                x: torch.Tensor,
                past_key_value=None,
                attn_bias: torch.Tensor = None,
                attention_mask=None,
                is_causal: bool = True):
        """Called as MosaicGPT calls it (OpenFlamingo's wrapper passes the
        keywords through); the padding is in ``attn_bias``."""
        assert past_key_value is None and attention_mask is None and is_causal
        x = x + self.attn(self.ln_1(x), attn_bias)
        return x + self.mlp(self.ln_2(x)), None


def alibi_slopes(n_heads: int, alibi_bias_max: int) -> torch.Tensor:
    """``gen_slopes``: ``(1, H, 1, 1)``."""
    padded = 2**math.ceil(math.log2(n_heads))
    m = torch.arange(1, padded + 1, dtype=torch.float32)
    slopes = 1. / torch.pow(2, m * (alibi_bias_max / padded))
    if padded != n_heads:
        slopes = torch.cat([slopes[1::2], slopes[::2]])[:n_heads]
    return slopes.view(1, n_heads, 1, 1)


class MosaicGPTReference(nn.Module):
    """``MosaicGPT``'s inference forward (see the module docstring).

    Args:
        cfg (dict): From :func:`mosaic_gpt_config`.
    """

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.cfg = cfg
        d_model = cfg['d_model']
        self.transformer = nn.ModuleDict(
            dict(wte=nn.Embedding(cfg['vocab_size'], d_model)))
        if not cfg['alibi']:
            self.transformer['wpe'] = nn.Embedding(cfg['max_seq_len'], d_model)
        self.transformer['blocks'] = nn.ModuleList(
            [Block(cfg) for _ in range(cfg['n_layers'])])
        self.transformer['ln_f'] = nn.LayerNorm(
            d_model, bias=not cfg['no_bias'])

    def attn_bias(self, attention_mask: torch.Tensor,
                  dtype: torch.dtype) -> torch.Tensor:
        """``MosaicGPT._attn_bias``: ALiBi over the keys (or none) with the
        padding mask folded in: ``(B, H or 1, 1, S)``."""
        cfg, seq_len = self.cfg, attention_mask.shape[-1]
        if cfg['alibi']:
            max_len = cfg['max_seq_len']
            positions = torch.arange(
                1 - max_len, 1, dtype=torch.int32).view(1, 1, 1, max_len)
            bias = (
                positions *
                alibi_slopes(cfg['n_heads'], cfg['alibi_bias_max'])).to(dtype)
            bias = bias[:, :, :, -seq_len:]
        else:
            bias = torch.zeros(1, 1, 1, seq_len, dtype=dtype)
        return bias.masked_fill(~attention_mask.view(-1, 1, 1, seq_len),
                                torch.finfo(dtype).min)

    def forward(self, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor:
        """``(B, S)`` ids and 0/1 mask -> ``(B, S, V)`` logits."""
        attention_mask = attention_mask.bool()
        x = self.transformer.wte(input_ids)
        if not self.cfg['alibi']:
            # positions count from each row's first real token
            pos = torch.arange(input_ids.shape[1])[None]
            pos = (pos - torch.cumsum(
                (~attention_mask).to(torch.int32), dim=1)).clamp(min=0)
            x = x + self.transformer.wpe(pos)
        attn_bias = self.attn_bias(attention_mask, x.dtype)
        for block in self.transformer.blocks:
            x, _ = block(
                x,
                past_key_value=None,
                attn_bias=attn_bias,
                attention_mask=None,
                is_causal=True)
        x = self.transformer.ln_f(x)
        logits = F.linear(x, self.transformer.wte.weight, None)
        logit_scale = self.cfg['logit_scale']
        if logit_scale is not None:
            if logit_scale == 'inv_sqrt_d_model':
                logit_scale = 1 / math.sqrt(self.cfg['d_model'])
            logits = logits * logit_scale
        return logits


def save_mosaic_gpt_dir(model: MosaicGPTReference,
                        path: str,
                        weights: str = 'pytorch_model.bin') -> str:
    """Write ``model`` as a MosaicGPT directory: its ``config.json`` and its
    weights as ``weights`` names them: ``pytorch_model.bin`` (as on the hub),
    ``model.safetensors`` (as ``save_pretrained`` writes), or
    ``model.safetensors.index.json`` (two shards and their index)."""
    from safetensors.torch import save_file
    os.makedirs(path, exist_ok=True)
    with open(osp.join(path, 'config.json'), 'w') as f:
        json.dump(model.cfg, f, indent=2)
    state_dict = {k: v.contiguous() for k, v in model.state_dict().items()}
    if weights == 'pytorch_model.bin':
        torch.save(state_dict, osp.join(path, weights))
    elif weights == 'model.safetensors':
        save_file(state_dict, osp.join(path, weights))
    elif weights == 'model.safetensors.index.json':
        names = sorted(state_dict)
        shards = {
            'model-00001-of-00002.safetensors': names[::2],
            'model-00002-of-00002.safetensors': names[1::2]
        }
        weight_map = {}
        for shard, keys in shards.items():
            save_file({k: state_dict[k] for k in keys}, osp.join(path, shard))
            weight_map.update({k: shard for k in keys})
        with open(osp.join(path, weights), 'w') as f:
            json.dump(dict(metadata={}, weight_map=weight_map), f)
    else:
        raise ValueError(f'unknown weights file {weights!r}')
    return path
