"""Inference by model name or config, and our models in MMPretrain's hub.

Importing this package is cheap: its functions are imported on first use,
and the model index (``model-index.yml``) is registered in MMPretrain's
``ModelHub`` as soon as MMPretrain is imported (now, if it already is), so
that after ``import mmflamingo``::

    mmpretrain.get_model('flamingo-tiny_shapes_caption', pretrained=True)
    mmpretrain.inference_model('flamingo-tiny_shapes_caption', 'img.png')

work like MMPretrain's own models. MMPretrain imports all its models, which
takes seconds; ``import mmflamingo`` does not pay for that.
"""
from importlib import import_module

from mmflamingo.compat import after_import

__all__ = [
    'get_model', 'init_model', 'inference_model', 'evaluate_fewshot',
    'list_models', 'get_model_info', 'register_model_index',
    'FlamingoPromptInputs'
]

# public name -> the submodule defining it
_SUBMODULES = {
    'get_model': 'inference',
    'init_model': 'inference',
    'inference_model': 'inference',
    'evaluate_fewshot': 'fewshot',
    'list_models': 'model_index',
    'get_model_info': 'model_index',
    'register_model_index': 'model_index',
    'FlamingoPromptInputs': 'inputs',
}
# where MMPretrain defines ModelHub
_HUB_MODULE = 'mmpretrain.apis.model'


def __getattr__(name: str):
    if name not in _SUBMODULES:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    return getattr(import_module(f'.{_SUBMODULES[name]}', __name__), name)


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))


def _register_model_index(hub_module) -> None:
    from .model_index import register_default_model_index
    register_default_model_index()


after_import(_HUB_MODULE, _register_model_index)
