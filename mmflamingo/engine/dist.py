"""Process-group set-up for the cases mmengine does not cover: the CPU.

mmengine's ``init_dist`` calls ``torch.cuda.set_device``, and DeepSpeed with
no launcher looks for MPI; on CPU-only machines we initialise gloo ourselves
before the runner starts (the runner then sees a ready process group).
"""
import os
import socket

import torch
import torch.distributed as torch_dist


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def setup_cpu_distributed(launcher: str, deepspeed: bool) -> bool:
    """Initialise gloo when there is no GPU; return whether it did.

    Args:
        launcher (str): ``'none'`` (one process) or ``'pytorch'``
            (torchrun, which sets ``RANK``, ``WORLD_SIZE``, ...).
        deepspeed (bool): Whether a DeepSpeed strategy will run; DeepSpeed
            needs its own communication set-up, even for one process.
    """
    if torch.cuda.is_available() or torch_dist.is_initialized():
        return False
    if launcher == 'none':
        if not deepspeed:
            return False
        # one process: give DeepSpeed the environment a launcher would
        os.environ.setdefault('RANK', '0')
        os.environ.setdefault('LOCAL_RANK', '0')
        os.environ.setdefault('WORLD_SIZE', '1')
        os.environ.setdefault('MASTER_ADDR', '127.0.0.1')
        os.environ.setdefault('MASTER_PORT', str(_free_port()))
    elif launcher != 'pytorch':
        raise ValueError(f'launcher {launcher!r} needs GPUs; on CPU use '
                         '"none" or "pytorch" (torchrun)')
    if deepspeed:
        import deepspeed as ds
        ds.init_distributed(dist_backend='gloo')
    else:
        torch_dist.init_process_group(backend='gloo')
    return True
