from .attention import MaskedCrossAttention, PerceiverAttention
from .extended_embedding import ExtendedEmbedding, ExtendedLMHead
from .ffn import FeedForward, SquaredReLU
from .gated_xattn import GatedCrossAttentionBlock

__all__ = [
    'FeedForward', 'SquaredReLU', 'PerceiverAttention', 'MaskedCrossAttention',
    'GatedCrossAttentionBlock', 'ExtendedEmbedding', 'ExtendedLMHead'
]
