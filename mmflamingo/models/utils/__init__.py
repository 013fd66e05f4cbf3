from .checkpoint import load_flamingo_checkpoint
from .hf_utils import (END_OF_CHUNK_TOKEN, MEDIA_TOKEN, PAD_TOKEN,
                       FlamingoTokens, add_flamingo_tokens, build_causal_lm,
                       build_tokenizer, check_local_dir, find_decoder_layers,
                       get_attr_path, lm_hidden_size, to_torch_dtype)
from .labels import build_labels

__all__ = [
    'MEDIA_TOKEN', 'END_OF_CHUNK_TOKEN', 'PAD_TOKEN', 'FlamingoTokens',
    'add_flamingo_tokens', 'build_causal_lm', 'build_tokenizer',
    'check_local_dir', 'find_decoder_layers', 'get_attr_path',
    'lm_hidden_size', 'to_torch_dtype', 'build_labels',
    'load_flamingo_checkpoint'
]
