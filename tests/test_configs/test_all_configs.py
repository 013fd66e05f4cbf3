"""Every config parses, and every ``type`` it names is registered.

Building the real recipes needs their weights and data; what can be checked
here is that nothing they name is misspelt or missing.
"""
import glob
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import FUNCTIONS, init_default_scope

import mmflamingo.datasets  # noqa: F401
import mmflamingo.engine  # noqa: F401
import mmflamingo.evaluation  # noqa: F401
import mmflamingo.models  # noqa: F401
from mmflamingo.registry import (DATA_SAMPLERS, DATASETS, HOOKS, LOOPS,
                                 METRICS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS,
                                 OPTIM_WRAPPERS, OPTIMIZERS, PARAM_SCHEDULERS,
                                 TRANSFORMS)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(
    path for path in glob.glob(
        osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
    if '_base_' not in path)
REGISTRIES = [
    MODELS, DATASETS, TRANSFORMS, HOOKS, LOOPS, OPTIM_WRAPPERS,
    OPTIM_WRAPPER_CONSTRUCTORS, PARAM_SCHEDULERS, OPTIMIZERS, DATA_SAMPLERS,
    METRICS, FUNCTIONS
]


def _types(node, found):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ('type', 'constructor') and isinstance(value, str):
                found.add(value)
            else:
                _types(value, found)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _types(value, found)
    return found


def test_configs_found():
    assert len(CONFIGS) >= 8


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: osp.relpath(p, ROOT))
def test_config_types_are_registered(path):
    init_default_scope('mmflamingo')
    cfg = Config.fromfile(path)
    names = _types(cfg.to_dict(), set())
    # a Flamingo, or a stage of the shapes recipe that pretrains its parts
    assert MODELS.get(cfg.model.type) is not None
    unknown = [
        name for name in sorted(names) if not any(
            registry.get(name) is not None
            for registry in REGISTRIES) and name not in ('DeepSpeedStrategy', )
    ]
    assert not unknown, f'{osp.basename(path)} names unregistered {unknown}'
