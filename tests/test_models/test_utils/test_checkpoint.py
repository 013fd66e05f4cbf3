"""Every checkpoint file is read through ``load_checkpoint_file``, whose
errors name the file (torch's own do not)."""
import importlib.util
import os.path as osp
import pickle

import pytest
import torch
from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint
from torch import nn

from mmflamingo.checkpoint_io import load_checkpoint_file
from mmflamingo.engine.checkpoint import register_local_checkpoint_loader
from mmflamingo.models import MMPretrainViTEncoder
from mmflamingo.models.utils import load_flamingo_checkpoint
from mmflamingo.models.utils.openflamingo import read_openflamingo_checkpoint

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..', '..'))
TINY_VIT = dict(
    arch=dict(
        embed_dims=32, num_layers=1, num_heads=2, feedforward_channels=64),
    img_size=32,
    patch_size=16)


def _publish_checkpoint(src, dst):
    """``tools/model_converters/publish_model.py``'s function."""
    path = osp.join(ROOT, 'tools', 'model_converters', 'publish_model.py')
    spec = importlib.util.spec_from_file_location('publish_model', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.publish_checkpoint(src, dst)


def _mmengine(path):
    """What mmengine's Runner (``load_from``, ``resume``) calls."""
    register_local_checkpoint_loader()  # as importing mmflamingo.engine does
    return _load_checkpoint(path, map_location='cpu')


def _flamingo(path):
    return load_flamingo_checkpoint(nn.Linear(2, 2), path)


def _publish(path):
    return _publish_checkpoint(path, path + '.out')


def _vit(path):
    return MMPretrainViTEncoder(vit=TINY_VIT, pretrained=path)


# every place that reads a checkpoint file
LOADERS = dict(
    load_checkpoint_file=load_checkpoint_file,
    load_flamingo_checkpoint=_flamingo,
    read_openflamingo_checkpoint=read_openflamingo_checkpoint,
    publish_model=_publish,
    MMPretrainViTEncoder=_vit,
    mmengine=_mmengine)


def _bad_file(tmp_path, kind: str) -> str:
    """A checkpoint cut short, an empty file, or one that is not torch's."""
    good = str(tmp_path / 'good.pth')
    torch.save({'weight': torch.ones(64, 64)}, good)
    with open(good, 'rb') as f:
        data = f.read()
    contents = dict(
        truncated=data[:len(data) // 2], empty=b'', junk=b'not a pickle' * 9)
    path = str(tmp_path / f'{kind}.pth')
    with open(path, 'wb') as f:
        f.write(contents[kind])
    return path


@pytest.mark.parametrize('kind', ['truncated', 'empty', 'junk'])
@pytest.mark.parametrize('loader', list(LOADERS))
def test_unreadable_checkpoints_are_named(loader, kind, tmp_path):
    path = _bad_file(tmp_path, kind)
    # junk may get as far as the unpickler, which raises UnpicklingError
    with pytest.raises((RuntimeError, pickle.UnpicklingError)) as error:
        LOADERS[loader](path)
    assert path in str(error.value)
    if kind == 'truncated':
        assert 'cut short' in str(error.value)


def test_refused_objects_are_named(tmp_path):
    """``weights_only`` refusals stay ``UnpicklingError`` (callers that
    explain them catch that) and name the file."""
    path = str(tmp_path / 'objects.pth')
    torch.save({'module': nn.Linear(2, 2)}, path)
    with pytest.raises(pickle.UnpicklingError, match='Weights only') as error:
        load_checkpoint_file(path)
    assert path in str(error.value)
    # the OpenFlamingo reader adds its advice
    with pytest.raises(RuntimeError, match='model_state_dict') as error:
        read_openflamingo_checkpoint(path)
    assert path in str(error.value)


def test_good_and_missing_files(tmp_path):
    path = str(tmp_path / 'good.pth')
    torch.save({'weight': torch.ones(2)}, path)
    assert torch.equal(load_checkpoint_file(path)['weight'], torch.ones(2))
    assert torch.equal(_mmengine(path)['weight'], torch.ones(2))
    missing = str(tmp_path / 'missing.pth')
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        load_checkpoint_file(missing)
    # other schemes keep their mmengine loaders
    assert CheckpointLoader._get_checkpoint_loader('https://a/b.pth') \
        is not CheckpointLoader._get_checkpoint_loader(path)
