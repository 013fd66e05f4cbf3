from .flamingo_monitor_hook import FlamingoMonitorHook, unwrap_flamingo

__all__ = ['FlamingoMonitorHook', 'unwrap_flamingo']
