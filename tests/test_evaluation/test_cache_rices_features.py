"""tools/cache_rices_features.py on a tiny Flamingo and a tiny dataset."""
import importlib.util
import json
import os.path as osp

import torch
from PIL import Image

from mmflamingo.evaluation.demo_selection import load_rices_features
from mmflamingo.testing import build_tiny_tokenizer, tiny_flamingo_config

TOOL = osp.join(
    osp.dirname(__file__), '..', '..', 'tools', 'cache_rices_features.py')


def load_tool():
    spec = importlib.util.spec_from_file_location('cache_rices_features', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cache_rices_features(tmp_path):
    colours = [(255, 0, 0), (250, 10, 0), (0, 0, 255), (0, 255, 0),
               (10, 0, 250)]
    images = []
    for i, colour in enumerate(colours):
        Image.new('RGB', (40, 48), colour).save(tmp_path / f'{i}.jpg')
        images.append(
            dict(
                filename=f'{i}.jpg',
                split='train',
                cocoid=100 + i,
                sentences=[dict(raw='a colour')]))
    with open(tmp_path / 'karpathy.json', 'w') as f:
        json.dump(dict(images=images), f)

    tokenizer = build_tiny_tokenizer(str(tmp_path / 'tokenizer'))
    config = dict(
        model=tiny_flamingo_config(tokenizer),
        rices_dataset=dict(
            type='KarpathyCaptionDataset',
            ann_file=str(tmp_path / 'karpathy.json'),
            split='train',
            data_prefix=dict(img_path=str(tmp_path))))
    config_file = tmp_path / 'tiny_rices.py'
    config_file.write_text('\n'.join(f'{k} = {v!r}'
                                     for k, v in config.items()))
    out = str(tmp_path / 'features.pth')

    # the tiny model has random weights: build it the same way both times
    torch.manual_seed(0)
    load_tool().main([
        str(config_file), '--split', 'support', '--out', out, '--batch-size',
        '2', '--device', 'cpu'
    ])

    cache = load_rices_features(out, keys=[100, 101, 102, 103, 104])
    features = cache['features']
    assert features.shape == (5, 32) and features.dtype == torch.float32
    torch.testing.assert_close(features.norm(dim=-1), torch.ones(5))
    assert str(config_file) in cache['config']
    # the features come from the images: red differs from blue
    assert (features[0] - features[2]).abs().max() > 1e-3

    half = str(tmp_path / 'half.pth')
    torch.manual_seed(0)
    load_tool().main([str(config_file), '--out', half, '--fp16'])
    cache = load_rices_features(half, keys=[100, 101, 102, 103, 104])
    assert cache['features'].dtype == torch.float16
    torch.testing.assert_close(
        cache['features'].float(), features, atol=1e-3, rtol=0)
