from .flamingo_lm_head import FlamingoLMHead

__all__ = ['FlamingoLMHead']
