from .fewshot_loop import FewShotTestLoop
from .mixture_loop import MixtureTrainLoop

__all__ = ['FewShotTestLoop', 'MixtureTrainLoop']
