from .fewshot_loop import FewShotTestLoop
from .mixture_loop import MixtureTrainLoop
from .stream_progress import StreamProgress

__all__ = ['FewShotTestLoop', 'MixtureTrainLoop', 'StreamProgress']
