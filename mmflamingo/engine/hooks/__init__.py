from .flamingo_monitor_hook import FlamingoMonitorHook, unwrap_flamingo
from .save_pretrained_hook import SavePretrainedHook
from .stream_resume_hook import StreamResumeHook

__all__ = [
    'FlamingoMonitorHook', 'unwrap_flamingo', 'SavePretrainedHook',
    'StreamResumeHook'
]
