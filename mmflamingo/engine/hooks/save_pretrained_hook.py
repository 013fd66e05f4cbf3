"""Export a trained model as a Hugging Face directory when training ends."""
import logging

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log

from mmflamingo.registry import HOOKS
from .flamingo_monitor_hook import unwrap_flamingo

__all__ = ['SavePretrainedHook']


@HOOKS.register_module()
class SavePretrainedHook(Hook):
    """Call the model's ``save_pretrained(out_dir)`` after training.

    The model is taken out of its DDP or DeepSpeed wrapper first, and only
    the main process writes.

    Args:
        out_dir (str): The directory to write (created if needed).
    """

    priority = 'LOW'

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def before_train(self, runner) -> None:
        model = unwrap_flamingo(runner.model)
        if not callable(getattr(model, 'save_pretrained', None)):
            raise TypeError(f'SavePretrainedHook: {type(model).__name__} has '
                            'no save_pretrained method')

    def after_train(self, runner) -> None:
        if not is_main_process():
            return
        unwrap_flamingo(runner.model).save_pretrained(self.out_dir)
        print_log(
            f'saved the trained model to {self.out_dir}',
            logger='current',
            level=logging.INFO)
