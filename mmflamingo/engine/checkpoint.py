"""Loading mmengine checkpoints with torch's safe ``weights_only`` loader.

torch >= 2.6 refuses to unpickle anything but tensors and plain containers
unless allowed; mmengine's checkpoints also hold its ``HistoryBuffer`` and
numpy arrays and scalars (in the message hub), and a ``HistoryBuffer``
pickles its statistics methods as ``getattr(HistoryBuffer, 'min')``. We allow
exactly those, never the whole pickle machinery, and ``getattr`` only on
``HistoryBuffer`` for its statistics methods: a checkpoint is untrusted
input.
"""
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
