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
- **transformers** 4.46 and later, 5.x included: where versions name the
  same thing differently, the functions here give the name to use.

``import mmflamingo`` imports this module, and no MMPretrain.
"""
import inspect
import sys
from importlib.abc import MetaPathFinder
from importlib.metadata import version
from importlib.util import find_spec
from types import ModuleType
from typing import Callable, Optional

from packaging.version import Version

__all__ = [
    'after_import', 'TRANSFORMERS_VERSION', 'dtype_kwargs', 'lm_cache_name',
    'clip_vision_transformer', 'enable_activation_checkpointing',
    'legacy_key_renamer'
]

# where MMPretrain decides whether to import its multimodal models
_MMPRETRAIN_DEPENDENCY = 'mmpretrain.utils.dependency'

TRANSFORMERS_VERSION = Version(version('transformers'))


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


def dtype_kwargs(dtype) -> dict:
    """The keyword that sets a model's dtype in ``from_pretrained`` and
    ``from_config``: ``dtype`` since transformers 4.56, ``torch_dtype``
    (deprecated since) before."""
    if TRANSFORMERS_VERSION >= Version('4.56'):
        return dict(dtype=dtype)
    return dict(torch_dtype=dtype)


def lm_cache_name(lm) -> str:
    """The name under which a causal LM takes and returns its KV cache:
    ``cache`` in recent transformers 5.x (which still accepts
    ``past_key_values``, with a deprecation warning), ``past_key_values``
    in 4.x and in remote code."""
    params = inspect.signature(lm.forward).parameters
    return 'cache' if 'cache' in params else 'past_key_values'


def enable_activation_checkpointing(lm, checkpoint_kwargs: dict) -> None:
    """Recompute ``lm``'s layers in the backward pass, with
    ``torch.utils.checkpoint.checkpoint(**checkpoint_kwargs)``.

    ``activation_checkpointing_enable`` in recent transformers 5.x, where
    ``gradient_checkpointing_enable`` is its deprecated alias; the latter
    before. transformers 5 checkpoints a layer's ``forward``, so forward
    pre-hooks on the layer run outside the checkpoint; transformers 4
    checkpoints its ``__call__``, hooks included.
    """
    enable = getattr(lm, 'activation_checkpointing_enable', None)
    if enable is not None:
        enable(activation_checkpointing_kwargs=checkpoint_kwargs)
    else:
        lm.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs=checkpoint_kwargs)


def clip_vision_transformer(clip):
    """The module of a ``CLIPVisionModel`` that holds ``embeddings``,
    ``pre_layrnorm``, ``encoder`` and ``post_layernorm``: its
    ``vision_model`` in transformers 4.x, the model itself in 5.x (which
    still reads and writes the 4.x parameter names in saved files)."""
    return getattr(clip, 'vision_model', clip)


def legacy_key_renamer(model,
                       reverse: bool = False
                       ) -> Optional[Callable[[str], str]]:
    """How transformers renames the parameter names that earlier versions
    gave ``model``, as a function of a name relative to ``model``; None
    where nothing is renamed (transformers 4).

    transformers 5 reads older files through renamings of its own (for
    example GPT-NeoX's ``embed_out`` is ``lm_head``, and a
    ``CLIPVisionModel``'s ``vision_model.`` prefix is gone); these are the
    plain renamings among them, for state dicts read by other means (our
    checkpoints, OpenFlamingo's). ``reverse``: the other way, from today's
    names to those of transformers 4 (without the renamings of still older
    formats), as ``save_pretrained`` writes them.
    """
    try:
        from transformers.conversion_mapping import \
            get_model_conversion_mapping
        from transformers.core_model_loading import WeightRenaming
    except ImportError:
        return None
    renamings = [
        transform for transform in get_model_conversion_mapping(
            model, add_legacy=not reverse)
        if isinstance(transform, WeightRenaming)
    ]
    if not renamings:
        return None
    if reverse:
        renamings = [t.reverse_transform() for t in reversed(renamings)]

    def rename(name: str) -> str:
        for renaming in renamings:
            name, _ = renaming.rename_source_key(name)
        return name

    return rename


def _without_mmpretrain_multimodal(dependency: ModuleType) -> None:
    dependency.WITH_MULTIMODAL = False


after_import(_MMPRETRAIN_DEPENDENCY, _without_mmpretrain_multimodal)
