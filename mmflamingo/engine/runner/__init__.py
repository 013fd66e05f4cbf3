from .mixture_loop import MixtureTrainLoop
from .stream_progress import StreamProgress

__all__ = ['MixtureTrainLoop', 'StreamProgress']
