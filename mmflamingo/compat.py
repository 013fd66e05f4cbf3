"""Where mmflamingo meets the versions of its dependencies.

- **MMPretrain 1.2.0** imports its multimodal models (BLIP, its Flamingo,
  ...) with ``mmpretrain.models``, and its BLIP module raises ``TypeError``
  with transformers >= 4.52. mmflamingo uses none of MMPretrain's multimodal
  models or datasets, so it switches them off with MMPretrain's own switch,
  ``mmpretrain.utils.dependency.WITH_MULTIMODAL``: MMPretrain then registers
  placeholders for them (that raise when built), and its ViT backbone,
  registries, transforms and structures import on every transformers
  version. The switch is set right after ``mmpretrain.utils.dependency`` is
  imported, which MMPretrain does before any of its models, so
  ``import mmflamingo`` stays cheap (it imports no MMPretrain itself).
- **transformers** 4.46 and later, 5.x included: the few places where
  the two major versions need different calls are the functions here.

``mmflamingo/__init__.py`` imports this module first.
"""
import sys
from importlib.abc import MetaPathFinder
from importlib.metadata import version
from importlib.util import find_spec
from types import ModuleType
from typing import Callable

__all__ = ['after_import', 'TRANSFORMERS_MAJOR']

# where MMPretrain decides whether to import its multimodal models
_MMPRETRAIN_DEPENDENCY = 'mmpretrain.utils.dependency'

TRANSFORMERS_MAJOR = int(version('transformers').split('.')[0])


class _AfterImport(MetaPathFinder):
    """Runs a callback right after a module is imported, by whoever.

    It finds no module itself: for its module it takes the spec the other
    finders give, runs the callback after the loader's ``exec_module`` and
    leaves ``sys.meta_path``.
    """

    def __init__(self, name: str, callback: Callable[[ModuleType],
                                                     None]) -> None:
        self.name, self.callback = name, callback

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = find_spec(fullname)
        exec_module = spec.loader.exec_module

        def exec_and_call(module: ModuleType) -> None:
            exec_module(module)
            self.callback(module)

        spec.loader.exec_module = exec_and_call
        return spec


def after_import(name: str, callback: Callable[[ModuleType], None]) -> None:
    """Call ``callback(module)`` once module ``name`` is imported: now if it
    already is, otherwise right after it is executed, before the importer
    sees it."""
    if name in sys.modules:
        callback(sys.modules[name])
    else:
        sys.meta_path.insert(0, _AfterImport(name, callback))


def _without_mmpretrain_multimodal(dependency: ModuleType) -> None:
    dependency.WITH_MULTIMODAL = False


after_import(_MMPRETRAIN_DEPENDENCY, _without_mmpretrain_multimodal)
