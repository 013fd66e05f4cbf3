"""mmengine reads its local checkpoint files (``load_from``, ``resume``,
``load_checkpoint``) with
:func:`mmflamingo.checkpoint_io.load_checkpoint_file`, so that their errors
name the file and unpickling stays ``weights_only``.
"""
import os.path as osp

from mmengine.runner import CheckpointLoader

from mmflamingo.checkpoint_io import load_checkpoint_file


def load_local_checkpoint(filename: str, map_location=None):
    """mmengine's local-file checkpoint loader, through
    :func:`load_checkpoint_file`."""
    return load_checkpoint_file(osp.expanduser(filename), map_location)


def register_local_checkpoint_loader() -> None:
    """Make mmengine's ``CheckpointLoader`` read local files (paths without
    a URL scheme) with :func:`load_local_checkpoint`."""
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_local_checkpoint, force=True)
