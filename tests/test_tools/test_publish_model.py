"""tools/model_converters/publish_model.py: a training checkpoint stripped
to the trained weights, loadable the safe way."""
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

from mmflamingo.models.utils import load_flamingo_checkpoint

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'model_converters', 'publish_model.py')


def test_publish_model(tmp_path, build_flamingo, set_gates):
    trained = build_flamingo()
    set_gates(trained, 0.5)
    state_dict = trained.state_dict()
    src = str(tmp_path / 'iter_10.pth')
    loss = HistoryBuffer()
    loss.update(1.0)
    torch.save(
        dict(
            state_dict=state_dict,
            optimizer=dict(state={}, param_groups=[dict(lr=1e-3)]),
            message_hub=dict(log_scalars=dict(loss=loss)),
            meta=dict(iter=10, seed=np.int64(0))), src)
    dst = str(tmp_path / 'out' / 'published.pth')
    result = subprocess.run([sys.executable, TOOL, src, dst],
                            capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    published = torch.load(dst, weights_only=True)
    assert set(published) == {'state_dict', 'meta'}
    assert published['meta']['iter'] == 10
    assert published['meta']['source'] == 'iter_10.pth'
    assert published['state_dict'].keys() == state_dict.keys()
    fresh = build_flamingo()
    missing, unexpected = load_flamingo_checkpoint(fresh, dst)
    assert not missing and not unexpected
    for key, value in state_dict.items():
        torch.testing.assert_close(fresh.state_dict()[key], value)


def test_publish_model_errors(tmp_path):
    sys.path.insert(0, osp.dirname(TOOL))
    try:
        from publish_model import publish_checkpoint
    finally:
        sys.path.pop(0)
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        publish_checkpoint(str(tmp_path / 'missing.pth'), 'x.pth')
    torch.save(dict(weights={}), tmp_path / 'bad.pth')
    with pytest.raises(ValueError, match='bad.pth: no "state_dict"'):
        publish_checkpoint(str(tmp_path / 'bad.pth'), 'x.pth')
