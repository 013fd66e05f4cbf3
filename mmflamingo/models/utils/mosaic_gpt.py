"""MosaicGPT directories -> transformers' native ``MptForCausalLM``.

OpenFlamingo-3B's language model, ``anas-awadalla/mpt-1b-redpajama-200b``
(with the model card of ``mosaicml/mpt-1b-redpajama-200b``), ships its own
modelling code: ``MosaicGPT`` from MosaicML's examples repository of April
2023 (``examples/llm/src/models/mosaic_gpt``; the card links tag v0.0.4).
That code has no
``get_input_embeddings`` and computes its logits from ``transformer.wte``
directly, so it cannot take the head's extended vocabulary; running it also
means trusting code from the directory. We never run it: a directory whose
``config.json`` says ``"model_type": "mosaic_gpt"`` is built as
transformers' ``MptForCausalLM``, which computes the same function, and its
weights are renamed onto it.

The two models differ only where MPT-1B uses QK LayerNorm
(``attn_qk_ln``): transformers' MPT has none, so each block's fused
``Wqkv`` projection becomes a :class:`QKLayerNormWqkv`, which returns the
queries and keys normalised as MosaicGPT's attention normalises them.

Config (MosaicGPT -> ``MptConfig``):

- ``d_model``, ``n_heads``, ``n_layers``, ``max_seq_len``, ``vocab_size``,
  ``softmax_scale``, ``attn_clip_qkv`` (as
  ``attn_config.clip_qkv``, or inside :class:`QKLayerNormWqkv` with QK
  LayerNorm, where MosaicGPT clips before normalising), the dropouts;
  LayerNorm epsilon 1e-5 (``nn.LayerNorm``'s and composer's
  ``LPLayerNorm``'s default, which MosaicGPT never changes); ``use_cache``
  True (MosaicGPTConfig's default, False, is for training, and ``generate``
  would follow it);
- refused, naming the key, where MPT would compute something else:
  learned positions (``alibi`` false), biases (``no_bias`` false), an MLP
  ratio other than 4 (MPT's is fixed), a ``logit_scale``, a prefix LM,
  RMSNorm (``norm_type``), an ``alibi_bias_max`` other than 8 (MPT's ALiBi
  ignores its own), and a head count that is not a power of two
  (MosaicGPT changed those ALiBi slopes on 2023-04-25, so a directory's
  code may use either);
- ignored, since they do not change the forward: ``attn_impl``,
  ``low_precision_layernorm`` (a LayerNorm run in the autocast dtype),
  ``embedding_fraction`` (scales gradients only), ``attn_uses_sequence_id``
  (needs a ``sequence_id`` input that nothing passes), initialisation keys.

Parameters (MosaicGPT has no ``lm_head``: its logits use ``transformer.wte``,
as MPT's tied ``lm_head`` does; under ``transformer.blocks.i.``, i a block):

- ``transformer.wte.weight`` -> same name
- ``ln_1.weight`` -> ``norm_1.weight``
- ``attn.Wqkv.weight`` -> same name
- ``attn.q_ln.weight`` / ``attn.k_ln.weight`` -> ``attn.Wqkv.q_ln.weight`` /
  ``attn.Wqkv.k_ln.weight`` (:class:`QKLayerNormWqkv`)
- ``attn.out_proj.weight`` -> same name
- ``ln_2.weight`` -> ``norm_2.weight``
- ``mlp.mlp_up.weight`` -> ``ffn.up_proj.weight``
- ``mlp.mlp_down.weight`` -> ``ffn.down_proj.weight``
- ``transformer.ln_f.weight`` -> ``transformer.norm_f.weight``

In float32 the logits equal MosaicGPT's; in bfloat16 they round differently
(MosaicGPT v0.0.4 builds its ALiBi biases in the model's dtype, MPT in
float32). A model built here saved with ``save_pretrained`` and reloaded as
a plain MPT loses its QK LayerNorms: load MPT-1B from its MosaicGPT
directory.
"""
import json
import math
import os.path as osp
import re
from typing import Dict, Optional, Union

import torch
from torch import nn

from mmflamingo.checkpoint_io import load_checkpoint_file
from mmflamingo.compat import dtype_kwargs

__all__ = [
    'QKLayerNormWqkv', 'convert_mosaic_gpt_state_dict', 'is_mosaic_gpt_dir',
    'load_mosaic_gpt_as_mpt', 'mosaic_gpt_to_mpt_config'
]

MOSAIC_GPT_MODEL_TYPE = 'mosaic_gpt'
LAYER_NORM_EPS = 1e-5

_BLOCK_PARAM = re.compile(r'^transformer\.blocks\.(\d+)\.(.+)$')
_BLOCK_NAMES = {
    'ln_1.weight': 'norm_1.weight',
    'attn.Wqkv.weight': 'attn.Wqkv.weight',
    'attn.q_ln.weight': 'attn.Wqkv.q_ln.weight',
    'attn.k_ln.weight': 'attn.Wqkv.k_ln.weight',
    'attn.out_proj.weight': 'attn.out_proj.weight',
    'ln_2.weight': 'norm_2.weight',
    'mlp.mlp_up.weight': 'ffn.up_proj.weight',
    'mlp.mlp_down.weight': 'ffn.down_proj.weight',
}
_TOP_NAMES = {
    'transformer.wte.weight': 'transformer.wte.weight',
    'transformer.ln_f.weight': 'transformer.norm_f.weight',
}


class QKLayerNormWqkv(nn.Linear):
    """MosaicGPT's fused query-key-value projection with QK LayerNorm.

    MosaicGPT projects, clips (``attn_clip_qkv``), then normalises the
    queries and the keys, each with a LayerNorm over all heads at once
    (``d_model`` wide, no bias). transformers' ``MptAttention`` splits what
    its ``Wqkv`` returns into heads, so returning normalised queries and
    keys from here gives it MosaicGPT's attention inputs.

    Args:
        d_model (int): Model width.
        clip_qkv (float, optional): Clamp the projection to
            ``[-clip_qkv, clip_qkv]`` before normalising. Defaults to None.
        eps (float): LayerNorm epsilon. Defaults to 1e-5.
    """

    def __init__(self,
                 d_model: int,
                 clip_qkv: Optional[float] = None,
                 eps: float = LAYER_NORM_EPS) -> None:
        super().__init__(d_model, 3 * d_model, bias=False)
        self.clip_qkv = clip_qkv
        self.q_ln = nn.LayerNorm(d_model, eps=eps, bias=False)
        self.k_ln = nn.LayerNorm(d_model, eps=eps, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = super().forward(x)  # (B, S, D) -> (B, S, 3 * D)
        if self.clip_qkv:
            qkv = qkv.clamp(min=-self.clip_qkv, max=self.clip_qkv)
        query, key, value = qkv.chunk(3, dim=-1)
        query = self.q_ln(query).to(query.dtype)
        key = self.k_ln(key).to(key.dtype)
        return torch.cat((query, key, value), dim=-1)


def is_mosaic_gpt_dir(path: str) -> bool:
    """Whether ``path/config.json`` names ``"model_type": "mosaic_gpt"``."""
    config_file = osp.join(path, 'config.json')
    if not osp.isfile(config_file):
        return False
    with open(config_file) as f:
        return json.load(f).get('model_type') == MOSAIC_GPT_MODEL_TYPE


def _refuse(source: str, key: str, value, why: str):
    raise ValueError(f'{source}: MosaicGPT with {key}={value!r} cannot be '
                     f'built as transformers\' MPT ({why})')


def mosaic_gpt_to_mpt_config(config: dict, source: str = 'config.json'):
    """The ``MptConfig`` computing what a MosaicGPT config computes.

    Args:
        config (dict): MosaicGPT's ``config.json``.
        source (str): Named in errors. Defaults to ``'config.json'``.

    Returns:
        transformers.MptConfig: Its ``attn_config.qk_ln`` records QK
        LayerNorm, which :func:`load_mosaic_gpt_as_mpt` adds.
    """
    from transformers import MptConfig
    get = config.get
    if not get('alibi', False):
        _refuse(source, 'alibi', get('alibi'),
                'MPT has ALiBi, not learned positions')
    if not get('no_bias', False):
        _refuse(source, 'no_bias', get('no_bias'), 'MPT has no biases')
    ratio = get('mlp_ratio', get('expansion_ratio', 4))
    if ratio != 4:
        _refuse(source, 'mlp_ratio', ratio, 'MPT\'s MLP ratio is 4')
    if get('logit_scale') not in (None, 1, 1.0):
        _refuse(source, 'logit_scale', get('logit_scale'),
                'MPT does not scale its logits')
    if get('prefix_lm', False):
        _refuse(source, 'prefix_lm', get('prefix_lm'), 'MPT is causal')
    if get('norm_type',
           'low_precision_layernorm') not in ('layernorm',
                                              'low_precision_layernorm'):
        _refuse(source, 'norm_type', get('norm_type'),
                'MPT normalises with LayerNorm')
    if get('alibi_bias_max', 8) != 8:
        # MptModel builds its ALiBi without the config's alibi_bias_max
        _refuse(source, 'alibi_bias_max', get('alibi_bias_max'),
                'MPT\'s ALiBi slopes always use 8')
    n_heads = config['n_heads']
    if 2**int(math.log2(n_heads)) != n_heads:
        _refuse(
            source, 'n_heads', n_heads,
            'MosaicGPT\'s ALiBi slopes for a head count that is not a power '
            'of two changed on 2023-04-25; transformers uses the later ones')
    qk_ln = bool(get('attn_qk_ln', False))
    attn_config = dict(
        softmax_scale=get('softmax_scale'),
        # with QK LayerNorm, QKLayerNormWqkv clips before normalising
        clip_qkv=None if qk_ln else get('attn_clip_qkv'),
        qk_ln=qk_ln,
        alibi=True,
        alibi_bias_max=8)
    # transformers 5 types MptAttentionConfig.attn_pdrop as an int and
    # checks it strictly, so a 0.0 is refused: leave 0 to its default
    if get('attn_pdrop', 0.0):
        attn_config['attn_pdrop'] = get('attn_pdrop')
    return MptConfig(
        d_model=config['d_model'],
        n_heads=n_heads,
        n_layers=config['n_layers'],
        expansion_ratio=4,
        max_seq_len=config['max_seq_len'],
        vocab_size=config['vocab_size'],
        resid_pdrop=get('resid_pdrop', 0.0),
        emb_pdrop=get('emb_pdrop', 0.0),
        layer_norm_epsilon=LAYER_NORM_EPS,
        learned_pos_emb=False,
        no_bias=True,
        attn_config=attn_config,
        tie_word_embeddings=True,
        # MosaicGPTConfig's default is False (training); generate reads it
        use_cache=True)


def convert_mosaic_gpt_state_dict(
        state_dict: Dict[str, torch.Tensor],
        source: str = 'MosaicGPT') -> Dict[str, torch.Tensor]:
    """Rename a MosaicGPT state dict to ``MptForCausalLM``'s (module doc).

    Args:
        state_dict (dict[str, Tensor]): MosaicGPT's parameters.
        source (str): Named in errors. Defaults to ``'MosaicGPT'``.

    Returns:
        dict[str, Tensor]: The same tensors under MPT's names, without
        ``lm_head.weight`` (tied to ``transformer.wte.weight``).
    """
    converted = {}
    for name, tensor in state_dict.items():
        if name in _TOP_NAMES:
            converted[_TOP_NAMES[name]] = tensor
            continue
        match = _BLOCK_PARAM.match(name)
        if match is None or match[2] not in _BLOCK_NAMES:
            raise KeyError(f'{source}: {name!r} is not a MosaicGPT parameter '
                           'that transformers\' MPT has (a bias, learned '
                           'positions?)')
        converted[f'transformer.blocks.{match[1]}.'
                  f'{_BLOCK_NAMES[match[2]]}'] = tensor
    return converted


def _read_weights(path: str) -> Dict[str, torch.Tensor]:
    """The state dict saved in a model directory: ``model.safetensors`` or
    ``pytorch_model.bin``, either possibly sharded (``*.index.json``)."""
    from safetensors.torch import load_file
    for name, load in (('model.safetensors', load_file),
                       ('pytorch_model.bin', load_checkpoint_file)):
        index = osp.join(path, f'{name}.index.json')
        if osp.isfile(index):
            with open(index) as f:
                files = sorted(set(json.load(f)['weight_map'].values()))
        elif osp.isfile(osp.join(path, name)):
            files = [name]
        else:
            continue
        state_dict = {}
        for file in files:
            state_dict.update(load(osp.join(path, file)))
        return state_dict
    raise FileNotFoundError(
        f'{path}: no model.safetensors or pytorch_model.bin (or their '
        '.index.json) in this MosaicGPT directory')


def load_mosaic_gpt_as_mpt(path: str,
                           torch_dtype: Union[torch.dtype, None] = None):
    """Build a MosaicGPT directory as ``MptForCausalLM``, running none of
    its code.

    Args:
        path (str): Local directory with MosaicGPT's ``config.json`` and
            weights.
        torch_dtype (torch.dtype, optional): Storage dtype. Defaults to
            float32.

    Returns:
        transformers.MptForCausalLM: In eval mode, with
        :class:`QKLayerNormWqkv` projections where MosaicGPT has QK
        LayerNorm.
    """
    from transformers import AutoModelForCausalLM
    config_file = osp.join(path, 'config.json')
    with open(config_file) as f:
        mosaic_config = json.load(f)
    config = mosaic_gpt_to_mpt_config(mosaic_config, config_file)
    dtype = torch_dtype or torch.float32
    model = AutoModelForCausalLM.from_config(config, **dtype_kwargs(dtype))
    if config.attn_config.qk_ln:
        for block in model.transformer.blocks:
            block.attn.Wqkv = QKLayerNormWqkv(
                config.d_model, mosaic_config.get('attn_clip_qkv')).to(dtype)
    state_dict = convert_mosaic_gpt_state_dict(_read_weights(path), path)
    result = model.load_state_dict(state_dict, strict=False)
    if result.unexpected_keys or set(result.missing_keys) - {'lm_head.weight'}:
        raise KeyError(f'{path}: the MosaicGPT weights do not fit its config '
                       f'(missing: {result.missing_keys}, unexpected: '
                       f'{result.unexpected_keys})')
    if model.lm_head.weight is not model.transformer.wte.weight:
        raise RuntimeError(f'{path}: MPT did not tie lm_head to wte')
    return model.eval()
