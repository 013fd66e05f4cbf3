from .mixture_loop import MixtureTrainLoop

__all__ = ['MixtureTrainLoop']
