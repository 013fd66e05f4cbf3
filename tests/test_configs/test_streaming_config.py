"""The web-scale streaming recipe: its datasets build and stream samples
when pointed at shards (here tiny ones, one given as a pipe: URL)."""
import os.path as osp
import sys

from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmflamingo.registry import DATASETS
from mmflamingo.testing.toy_data import write_toy_mixture

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(
    ROOT, 'configs', 'flamingo',
    'flamingo_vitl14-redpajama3b_8xb4-zero1-bf16_mmc4-laion-streaming.py')
sys.path.insert(0, osp.join(ROOT, 'tools', 'dataset_converters'))
import jsonl_to_webdataset  # noqa: E402


def test_the_streaming_recipe_reads_shards(tmp_path, tokenizer_dir):
    cfg = Config.fromfile(CONFIG)
    assert cfg.strategy.zero_optimization.stage == 1
    toy = write_toy_mixture(str(tmp_path / 'toy'))
    for kind, name in (('pairs', 'laion'), ('mmc4', 'mmc4')):
        jsonl_to_webdataset.main([
            kind, toy['pairs' if kind == 'pairs' else 'docs'], '--media-dir',
            osp.join(toy['root'], 'images'), '--out',
            str(tmp_path / f'{name}-%d.tar'), '--samples-per-shard', '4'
        ])
    datasets = cfg.train_dataloader.datasets
    assert set(datasets) == {'mmc4', 'laion'}
    for name, expected in (('mmc4', 'StreamingWebDatasetInterleaved'),
                           ('laion', 'StreamingWebDatasetImageText')):
        dataset = datasets[name].dataset
        assert dataset.type == expected and dataset.resampled
        # what a user changes: the shards (local and through a pipe) and
        # the tokenizer; the toy images are small
        first, second = (tmp_path / f'{name}-{i}.tar' for i in (0, 1))
        dataset.update(
            shards=[str(first), f'pipe:cat {second}'],
            tokenizer=dict(pretrained=tokenizer_dir),
            shuffle_buffer=4)
        if name == 'mmc4':
            dataset.min_image_bytes = 0
        with DefaultScope.overwrite_default_scope('mmflamingo'):
            stream = iter(DATASETS.build(dataset))
            samples = [next(stream) for _ in range(10)]
        # resampled: more samples than the 8 of the shards, all usable
        assert all('text' in s['data_samples'] for s in samples)
        assert {s['inputs'].shape[-1] for s in samples} == {224}
