"""Helpers that build tiny Flamingo models offline (tests, demos, benchmarks).
"""
from .generation import generation_margin
from .tiny import (TINY_LM_CONFIGS, build_tiny_tokenizer, tiny_flamingo_config,
                   tiny_lm_config)

__all__ = [
    'TINY_LM_CONFIGS', 'build_tiny_tokenizer', 'generation_margin',
    'tiny_flamingo_config', 'tiny_lm_config'
]
