"""Building Hugging Face language models from configs, offline.

Pretrained weights are always read from local directories: a missing path is
an error that names the config field, never a download.
"""
from typing import Optional, Tuple, Union

import torch
from torch import nn

from mmflamingo.compat import dtype_kwargs, legacy_key_renamer
from mmflamingo.tokens import check_local_dir
from .mosaic_gpt import is_mosaic_gpt_dir, load_mosaic_gpt_as_mpt

_DTYPES = {
    'float32': torch.float32,
    'bfloat16': torch.bfloat16,
    'float16': torch.float16
}


def to_torch_dtype(dtype: Union[str, torch.dtype, None]) -> torch.dtype:
    """``'bfloat16'`` -> ``torch.bfloat16``; ``None`` -> ``torch.float32``."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f'dtype must be one of {sorted(_DTYPES)}, '
                         f'got {dtype!r}')
    return _DTYPES[dtype]


def build_causal_lm(pretrained: Optional[str] = None,
                    config: Optional[dict] = None,
                    torch_dtype: Union[str, torch.dtype, None] = None,
                    trust_remote_code: bool = False,
                    field: str = 'lm') -> nn.Module:
    """Build a ``transformers`` causal LM from a local directory or a config.

    A MosaicGPT directory (MPT-1B of OpenFlamingo-3B) is built as
    transformers' MPT without running its code (see
    :mod:`mmflamingo.models.utils.mosaic_gpt`).

    Args:
        pretrained (str, optional): Local directory of a saved model.
        config (dict, optional): ``model_type`` plus config kwargs, to build
            a randomly initialised model (tests, tiny recipes).
        torch_dtype (str | torch.dtype, optional): Storage dtype.
        trust_remote_code (bool): Allow modelling code shipped inside the
            local directory.
        field (str): Config field named in errors.
    """
    from transformers import AutoConfig, AutoModelForCausalLM
    if (pretrained is None) == (config is None):
        raise ValueError(f'{field}: give exactly one of `pretrained` (a local '
                         'directory) and `config` (a dict with model_type)')
    dtype = to_torch_dtype(torch_dtype)
    if pretrained is not None:
        check_local_dir(pretrained, f'{field}.pretrained')
        if is_mosaic_gpt_dir(pretrained):
            return load_mosaic_gpt_as_mpt(pretrained, dtype)
        return read_legacy_parameter_names(
            AutoModelForCausalLM.from_pretrained(
                pretrained,
                local_files_only=True,
                trust_remote_code=trust_remote_code,
                **dtype_kwargs(dtype)))
    config = dict(config)
    if 'model_type' not in config:
        raise KeyError(f'{field}.config needs a `model_type`, e.g. "llama"')
    hf_config = AutoConfig.for_model(config.pop('model_type'), **config)
    return read_legacy_parameter_names(
        AutoModelForCausalLM.from_config(
            hf_config,
            trust_remote_code=trust_remote_code,
            **dtype_kwargs(dtype)))


def read_legacy_parameter_names(model: nn.Module) -> nn.Module:
    """Let state dicts name ``model``'s parameters as earlier ``transformers``
    did (see :func:`mmflamingo.compat.legacy_key_renamer`).

    A load-state-dict pre-hook on ``model`` renames them, whichever module
    holding it loads the state dict: checkpoints written with transformers
    4 (ours, OpenFlamingo's) load under transformers 5.

    Returns:
        nn.Module: ``model``.
    """
    rename = legacy_key_renamer(model)
    if rename is None:
        return model

    def hook(module, state_dict, prefix, *args) -> None:
        for key in [k for k in state_dict if k.startswith(prefix)]:
            new = prefix + rename(key[len(prefix):])
            if new != key and new not in state_dict:
                state_dict[new] = state_dict.pop(key)

    model.register_load_state_dict_pre_hook(hook)
    return model


def get_attr_path(obj, path: str):
    """``get_attr_path(m, 'model.layers')`` is ``m.model.layers``."""
    for name in path.split('.'):
        obj = getattr(obj, name)
    return obj


def find_decoder_layers(
        lm: nn.Module,
        attr_path: Optional[str] = None) -> Tuple[str, nn.ModuleList]:
    """Find the ``nn.ModuleList`` of decoder layers of any causal LM.

    It is the module list whose length is the config's number of layers
    (``num_hidden_layers``, which every ``transformers`` config maps to its
    own name: ``n_layer``, ``n_layers``, ...).

    Args:
        lm (nn.Module): The causal LM.
        attr_path (str, optional): Dotted path to the list, to override the
            search (e.g. ``'model.decoder.layers'``).

    Returns:
        tuple[str, nn.ModuleList]: Its dotted path and the list.
    """
    if attr_path is not None:
        layers = get_attr_path(lm, attr_path)
        if not isinstance(layers, nn.ModuleList):
            raise TypeError(f'decoder_layers_attr {attr_path!r} is a '
                            f'{type(layers).__name__}, not an nn.ModuleList')
        return attr_path, layers
    num_layers = getattr(lm.config, 'num_hidden_layers', None)
    found = [(name, module) for name, module in lm.named_modules()
             if isinstance(module, nn.ModuleList) and len(module) == num_layers
             and len(module) > 0]
    if len(found) != 1:
        names = [name for name, _ in found]
        raise ValueError(
            f'cannot tell the decoder layers of {type(lm).__name__} '
            f'(config has {num_layers} layers; candidates: {names}); set '
            '`decoder_layers_attr` in the head config')
    return found[0]


def lm_hidden_size(lm: nn.Module) -> int:
    """Hidden size of the decoder layers (``d_model``, ``n_embd``, ...)."""
    return lm.config.hidden_size
