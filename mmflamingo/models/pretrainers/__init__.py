"""Pretraining of the parts Flamingo freezes: its vision encoder and LM."""
from .causal_lm import CausalLMPretrainer
from .contrastive import ContrastiveImageTextPretrainer

__all__ = ['ContrastiveImageTextPretrainer', 'CausalLMPretrainer']
