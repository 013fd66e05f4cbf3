from .checkpoint import load_flamingo_checkpoint
from .hf_utils import (build_causal_lm, find_decoder_layers, get_attr_path,
                       lm_hidden_size, read_legacy_parameter_names,
                       to_torch_dtype)
from .labels import build_labels

__all__ = [
    'build_causal_lm', 'find_decoder_layers', 'get_attr_path',
    'lm_hidden_size', 'to_torch_dtype', 'build_labels',
    'load_flamingo_checkpoint', 'read_legacy_parameter_names'
]
