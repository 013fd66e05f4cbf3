"""Reading checkpoint files with torch's safe ``weights_only`` loader.

torch >= 2.6 refuses to unpickle anything but tensors and plain containers
unless allowed; mmengine's checkpoints also hold its ``HistoryBuffer`` and
numpy arrays and scalars (in the message hub), and a ``HistoryBuffer``
pickles its statistics methods as ``getattr(HistoryBuffer, 'min')``. We allow
exactly those, never the whole pickle machinery, and ``getattr`` only on
``HistoryBuffer`` for its statistics methods: a checkpoint is untrusted
input.

Every checkpoint file is read with :func:`load_checkpoint_file`, so that
errors name the file; :mod:`mmflamingo.engine` makes mmengine read its local
ones (``load_from``, ``resume``, ``load_checkpoint``) through it too. This
module is below every other part of the package: models and tools import
it, it imports none of them.
"""
import os.path as osp
import pickle
from typing import Any, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer


def _numpy_globals() -> list:
    multiarray = getattr(np, '_core', np.core).multiarray
    types = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
    # numpy >= 1.25 pickles dtypes by their class (np.dtypes.Float64DType)
    types += [
        type(np.dtype(t))
        for t in (np.float64, np.float32, np.int64, np.int32, np.bool_)
    ]
    return types


def history_buffer_getattr(obj, name: str):
    """``getattr`` restricted to what a pickled ``HistoryBuffer`` needs."""
    # the built-in statistics and any registered with register_statistics
    allowed = {
        'min', 'max', 'current', 'mean', *HistoryBuffer._statistics_methods
    }
    if obj is HistoryBuffer and name in allowed:
        return getattr(obj, name)
    raise RuntimeError(f'checkpoint asks for getattr({obj!r}, {name!r}); '
                       'only HistoryBuffer statistics methods are allowed')


def allow_mmengine_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` read mmengine checkpoints."""
    torch.serialization.add_safe_globals([
        HistoryBuffer, *_numpy_globals(),
        (history_buffer_getattr, '__builtin__.getattr'),
        (history_buffer_getattr, 'builtins.getattr')
    ])


def load_checkpoint_file(
        path: str,
        map_location: Union[str, torch.device, None] = 'cpu') -> Any:
    """``torch.load(path, weights_only=True)``, with errors naming the file.

    Every checkpoint file is read through here (mmengine's through
    :func:`mmflamingo.engine.load_local_checkpoint`): torch's own errors do
    not say which file they are about (a truncated file gives
    ``PytorchStreamReader failed reading zip archive``). A checkpoint is
    untrusted input, hence ``weights_only``; mmengine's training checkpoints
    need :func:`allow_mmengine_checkpoints` (called when
    ``mmflamingo.engine`` is imported).

    Args:
        path (str): The file.
        map_location (str | torch.device, optional): As for ``torch.load``.
            Defaults to ``'cpu'``.

    Returns:
        What the file holds.

    Raises:
        FileNotFoundError: If there is no file at ``path``.
        pickle.UnpicklingError: If torch's ``weights_only`` unpickler refuses
            it: it holds objects other than tensors and plain containers, or
            it is corrupt.
        RuntimeError: If torch cannot read it, e.g. a file cut short by an
            interrupted save or copy, or not a torch file at all.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path!r}')
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise pickle.UnpicklingError(
            f'cannot unpickle checkpoint {path!r}: {error}') from error
    except Exception as error:
        raise RuntimeError(
            f'cannot read checkpoint {path!r} ({osp.getsize(path)} bytes): '
            f'{type(error).__name__}: {error}. A file cut short (an '
            'interrupted save or copy) or corrupted gives this error: save '
            'or copy it again.') from error
