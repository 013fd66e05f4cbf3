"""Named models: the model index (``model-index.yml``) in MMPretrain's hub.

An OpenMMLab model index lists models by name, each with a config file, the
tasks it was evaluated on and its weights. Ours (``model-index.yml`` at the
repository root, importing ``configs/*/metafile.yml``) is registered in
MMPretrain's :class:`~mmpretrain.apis.ModelHub`, so that both our API
(:func:`~mmflamingo.apis.get_model`, :func:`~mmflamingo.apis.inference_model`)
and MMPretrain's (``mmpretrain.get_model``, ``mmpretrain.inference_model``)
find the models by name.

Weights are local files: a relative ``Weights`` path is relative to the
index's root (the repository), as a relative ``Config`` path is.

Nothing here imports MMPretrain (seconds) until a function needs it.
"""
import fnmatch
import os
import os.path as osp
from typing import Dict, List, Optional

__all__ = [
    'MODEL_INDEX', 'RECIPE_COMMAND', 'register_model_index',
    'register_default_model_index', 'list_models', 'get_model_info',
    'trained_weights', 'is_model_name'
]

# the repository: configs, model-index.yml and work_dirs/ live here
ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MODEL_INDEX = osp.join(ROOT, 'model-index.yml')
# what makes the weights of the shapes models
RECIPE_COMMAND = 'bash tools/run_shapes_recipe.sh'

# model-index file -> the names it registered
_INDEX_FILES: Dict[str, List[str]] = {}


def _resolve(root: str, path: Optional[str]) -> Optional[str]:
    if path is None or osp.isabs(path) or '://' in path:
        return path
    return osp.join(root, path)


def register_model_index(path: str, root: Optional[str] = None) -> List[str]:
    """Register the models of a model-index file in MMPretrain's hub.

    Registering the same file again changes nothing; a name that another
    file already registered is an error (MMPretrain's rule).

    Args:
        path (str): A ``model-index.yml`` or ``metafile.yml``.
        root (str, optional): What relative ``Config`` and ``Weights``
            paths are relative to. Defaults to the file's directory.

    Returns:
        list[str]: The registered model names (lower case).
    """
    from mmpretrain.apis.model import ModelHub
    path = osp.abspath(path)
    if path in _INDEX_FILES:
        return _INDEX_FILES[path]
    root = osp.abspath(root or osp.dirname(path))
    before = set(ModelHub._models_dict)
    ModelHub.register_model_index(path, config_prefix=root)
    names = sorted(set(ModelHub._models_dict) - before)
    # MMPretrain keeps ``Weights`` as written (it expects URLs): make ours
    # absolute so that they load from any working directory
    for name in names:
        info = ModelHub._models_dict[name]
        info.weights = _resolve(root, info.weights)
    _INDEX_FILES[path] = names
    return names


def list_models(pattern: Optional[str] = None,
                task: Optional[str] = None) -> List[str]:
    """The names of mmflamingo's registered models.

    Args:
        pattern (str, optional): A wildcard pattern the names start with,
            e.g. ``'flamingo-tiny*'``. Defaults to None (all).
        task (str, optional): Only models with this task in their results,
            e.g. ``'Image Caption'``, ``'Visual Question Answering'``.
            Defaults to None.

    Returns:
        list[str]: Sorted model names.
    """
    names = sorted(name for names in _INDEX_FILES.values() for name in names)
    if pattern is not None:
        names = fnmatch.filter(names, pattern + '*')
    if task is not None:
        names = [name for name in names if task in _tasks(name)]
    return names


def _tasks(name: str) -> List[str]:
    return [result.task for result in get_model_info(name).results or []]


def get_model_info(name: str):
    """The model-index entry of one of our models.

    Args:
        name (str): A name from :func:`list_models` (any case).

    Returns:
        modelindex.models.Model: With ``config`` (an absolute path),
        ``weights`` (an absolute path) and ``results`` (the tasks).

    Raises:
        KeyError: if no registered model has that name.
    """
    from mmpretrain.apis.model import ModelHub
    key = name.lower()
    if key not in list_models():
        raise KeyError(f'no model named {name!r}; registered models: '
                       f'{", ".join(list_models()) or "none"}')
    return ModelHub._models_dict[key]


def trained_weights(name: str) -> str:
    """The weights file of a registered model, checked to exist.

    Raises:
        FileNotFoundError: naming the file and the command that makes it.
    """
    weights = get_model_info(name).weights
    if weights is None or not osp.isfile(weights):
        raise FileNotFoundError(
            f'the weights of {name!r} ({weights}) do not exist: make them '
            f'with `{RECIPE_COMMAND}` (from {ROOT}), or pass a checkpoint')
    return weights


def register_default_model_index() -> None:
    """Register ``model-index.yml`` of the repository, if it is there (a
    wheel without the repository has none)."""
    if osp.isfile(MODEL_INDEX):
        register_model_index(MODEL_INDEX, root=ROOT)


def is_model_name(model: object) -> bool:
    """Whether ``model`` is a registered name rather than a config path."""
    return (isinstance(model, (str, os.PathLike))
            and str(model).lower() in list_models())
