"""OpenFlamingo v2 checkpoints -> mmflamingo state dicts.

OpenFlamingo saves ``filter_state_dict_to_trainable(model.state_dict())``:
the perceiver, the gated cross-attention blocks (reached through the
``FlamingoLayer`` wrappers it puts in place of the LM's decoder layers) and
the LM's embedding tables. Training checkpoints wrap it in
``model_state_dict`` and may carry DDP's ``module.`` prefix; unfiltered
state dicts also hold the vision encoder, the frozen decoder layers and
duplicate copies under ``old_decoder_blocks`` / ``gated_cross_attn_layers``.

Key mapping (``i`` a layer index, ``<path>`` the LM's decoder layers):

- ``perceiver.latents``, ``perceiver.frame_embs``, ``perceiver.norm.*``
  -> ``neck.latents``, ``neck.frame_embs``, ``neck.norm.*``
- ``perceiver.layers.i.0.*`` -> ``neck.layers.i.attn.*``
- ``perceiver.layers.i.1.{0,1,3}.*`` -> ``neck.layers.i.ff.{norm,fc1,fc2}.*``
- ``lang_encoder.<path>.i.gated_cross_attn_layer.*`` and its copy
  ``lang_encoder.gated_cross_attn_layers.i.*`` -> ``head.xattn_blocks.i.*``
  (``ff.{0,1,3}`` renamed as above)
- ``lang_encoder.<path>.i.decoder_layer.*`` and its copy
  ``lang_encoder.old_decoder_blocks.i.*`` -> ``head.lm.<path>.i.*``
- any other ``lang_encoder.*`` -> ``head.lm.*``
- ``vision_encoder.*``: dropped, the vision encoder loads its own weights.

Embedding tables keep their ``(vocab + new, D)`` shape: ``ExtendedEmbedding``
and ``ExtendedLMHead`` split them when the state dict is loaded.
"""
import os.path as osp
import pickle
import re
from typing import Dict, Optional

import torch

from mmflamingo.checkpoint_io import load_checkpoint_file

__all__ = ['convert_openflamingo_state_dict', 'read_openflamingo_checkpoint']

# OpenFlamingo's FeedForward is nn.Sequential(LayerNorm, Linear, GELU, Linear)
_FF_NAMES = {'0': 'norm', '1': 'fc1', '3': 'fc2'}

_PERCEIVER_LAYER = re.compile(r'^layers\.(\d+)\.(0|1)\.(.+)$')
_FF_PARAM = re.compile(r'^ff\.(\d+)\.(.+)$')
_FLAMINGO_LAYER = re.compile(r'^(?P<path>.+?)\.(?P<index>\d+)\.'
                             r'(?P<kind>gated_cross_attn_layer|decoder_layer)'
                             r'\.(?P<rest>.+)$')
_DUPLICATE_COPY = re.compile(r'^(?P<kind>gated_cross_attn_layers|'
                             r'old_decoder_blocks)\.(?P<index>\d+)\.'
                             r'(?P<rest>.+)$')


def read_openflamingo_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    """Read an OpenFlamingo ``checkpoint.pt`` as a flat state dict.

    Accepts the released state dict and training checkpoints
    (``{'model_state_dict': ..., 'optimizer_state_dict': ...}``). It is
    loaded with ``weights_only=True``: a checkpoint is untrusted input.

    Args:
        path (str): The checkpoint file.

    Returns:
        dict[str, Tensor]: The model's state dict, keys as saved.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'OpenFlamingo checkpoint not found: {path!r}')
    try:
        checkpoint = load_checkpoint_file(path)
    except pickle.UnpicklingError as error:
        raise RuntimeError(
            f'{path} holds objects other than tensors and plain containers, '
            'which torch.load(weights_only=True) refuses to unpickle. Load '
            'it in a trusted session and save its "model_state_dict" alone.'
        ) from error
    if not isinstance(checkpoint, dict):
        raise TypeError(f'{path} holds a {type(checkpoint).__name__}, not a '
                        'state dict')
    state_dict = checkpoint.get('model_state_dict', checkpoint)
    not_tensors = [
        k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)
    ]
    if not_tensors:
        raise TypeError(f'{path} is not an OpenFlamingo state dict: '
                        f'{not_tensors[:5]} are not tensors')
    return state_dict


def _convert_ff(name: str, rest: str) -> str:
    """``ff.{0,1,3}.*`` -> ``ff.{norm,fc1,fc2}.*``; other names unchanged."""
    match = _FF_PARAM.match(rest)
    if match is None:
        return rest
    index, param = match.groups()
    if index not in _FF_NAMES:
        raise KeyError(f'{name}: OpenFlamingo feed-forward blocks have '
                       f'parameters at 0, 1 and 3 only, not {index}')
    return f'ff.{_FF_NAMES[index]}.{param}'


def _convert_perceiver(name: str, rest: str) -> str:
    if rest == 'media_time_embs':
        raise ValueError(
            f'{name}: media time embeddings (OpenFlamingo v1 style '
            '`max_num_media`) are not supported; OpenFlamingo v2 has none')
    if rest in ('latents', 'frame_embs') or rest.startswith('norm.'):
        return f'neck.{rest}'
    match = _PERCEIVER_LAYER.match(rest)
    if match is None:
        raise KeyError(f'{name}: unknown OpenFlamingo perceiver parameter')
    index, part, param = match.groups()
    if part == '0':
        return f'neck.layers.{index}.attn.{param}'
    return f'neck.layers.{index}.{_convert_ff(name, "ff." + param)}'


def _decoder_layers_path(keys, given: Optional[str]) -> Optional[str]:
    """The LM's decoder-layer path, from the FlamingoLayer keys."""
    found = set()
    for key in keys:
        match = _FLAMINGO_LAYER.match(key)
        if match is not None:
            found.add(match['path'])
    if given is not None:
        found.add(given)
    if len(found) > 1:
        raise ValueError('decoder layers under several paths (the '
                         'checkpoint\'s and decoder_layers_attr): '
                         f'{sorted(found)}')
    return found.pop() if found else None


def _convert_lang_encoder(name: str, rest: str,
                          layers_path: Optional[str]) -> str:
    match = _FLAMINGO_LAYER.match(rest)
    if match is not None:
        path, index, kind, param = match.group('path', 'index', 'kind', 'rest')
        if kind == 'gated_cross_attn_layer':
            return f'head.xattn_blocks.{index}.{_convert_ff(name, param)}'
        return f'head.lm.{path}.{index}.{param}'
    match = _DUPLICATE_COPY.match(rest)
    if match is not None:
        kind, index, param = match.group('kind', 'index', 'rest')
        if kind == 'gated_cross_attn_layers':
            return f'head.xattn_blocks.{index}.{_convert_ff(name, param)}'
        if layers_path is None:
            raise ValueError(
                f'{name}: cannot tell where the LM keeps its decoder layers '
                '(no "<path>.<i>.decoder_layer" keys); give '
                'decoder_layers_attr, e.g. "model.layers"')
        return f'head.lm.{layers_path}.{index}.{param}'
    return f'head.lm.{rest}'


def convert_openflamingo_state_dict(
        state_dict: Dict[str, torch.Tensor],
        decoder_layers_attr: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """Rename an OpenFlamingo v2 state dict to mmflamingo's ``Flamingo``.

    See the module docstring for the mapping. Keys that OpenFlamingo stores
    twice (a ``FlamingoLayer`` and the list it was built from) map to one
    key; their tensors must be equal.

    Args:
        state_dict (dict[str, Tensor]): OpenFlamingo's state dict, e.g. from
            :func:`read_openflamingo_checkpoint`; a ``module.`` prefix is
            stripped.
        decoder_layers_attr (str, optional): Dotted path of the LM's decoder
            layers (``'model.layers'``...). Needed only when the frozen
            layers appear as ``old_decoder_blocks`` alone. Defaults to None.

    Returns:
        dict[str, Tensor]: mmflamingo's state dict, without the vision
        encoder.
    """
    stripped = {}
    for name, tensor in state_dict.items():
        key = name[len('module.'):] if name.startswith('module.') else name
        if key in stripped:
            raise ValueError(f'{name!r} appears with and without the '
                             '"module." prefix')
        stripped[key] = tensor
    lang_keys = [
        k[len('lang_encoder.'):] for k in stripped
        if k.startswith('lang_encoder.')
    ]
    layers_path = _decoder_layers_path(lang_keys, decoder_layers_attr)

    converted, sources = {}, {}
    for name, tensor in stripped.items():
        head, _, rest = name.partition('.')
        if head == 'vision_encoder':
            continue
        if head == 'perceiver':
            key = _convert_perceiver(name, rest)
        elif head == 'lang_encoder':
            key = _convert_lang_encoder(name, rest, layers_path)
        else:
            raise KeyError(f'{name}: not an OpenFlamingo parameter (expected '
                           'perceiver.*, lang_encoder.* or vision_encoder.*)')
        if key in converted:
            other = converted[key]
            if (other.shape != tensor.shape or other.dtype != tensor.dtype
                    or not torch.equal(other, tensor)):
                raise ValueError(
                    f'{sources[key]!r} and {name!r} both map to {key!r} but '
                    'hold different values')
            continue
        converted[key], sources[key] = tensor, name
    return converted
