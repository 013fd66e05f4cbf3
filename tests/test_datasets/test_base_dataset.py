"""Skipping unusable training samples (BaseFlamingoDataset)."""
import json
from collections import Counter

import pytest
from mmengine.dataset import DefaultSampler, pseudo_collate
from mmengine.registry import DefaultScope
from torch.utils.data import DataLoader

from mmflamingo.models import FlamingoDataPreprocessor
from mmflamingo.registry import DATASETS

PIPELINE = [
    dict(type='LoadMedia'),
    dict(type='ResizeMedia', size=8),
    dict(type='PackFlamingoInputs', meta_keys=['source']),
]


@pytest.fixture
def pairs(tmp_path, png_bytes, tokenizer_dir):
    """``pairs(images, **cfg)``: a JsonlImageText, one pair per image name
    (``red.png`` exists, any other name is missing)."""
    (tmp_path / 'red.png').write_bytes(png_bytes())

    def build(images, **cfg):
        ann_file = tmp_path / 'pairs.jsonl'
        ann_file.write_text(''.join(
            json.dumps(dict(image=name, caption=f'pair {i}')) + '\n'
            for i, name in enumerate(images)))
        with DefaultScope.overwrite_default_scope('mmflamingo'):
            return DATASETS.build(
                dict(
                    type='JsonlImageText',
                    ann_file=str(ann_file),
                    data_prefix=dict(img_path=str(tmp_path)),
                    tokenizer=dict(pretrained=tokenizer_dir),
                    pipeline=PIPELINE,
                    **cfg))

    return build


def test_a_skipped_sample_is_dropped_not_replaced_by_its_neighbour(pairs):
    images = ['red.png'] * 8
    images[2] = images[5] = 'missing.png'
    dataset = pairs(images)
    sampler = DefaultSampler(dataset, shuffle=True, seed=0)
    loader = DataLoader(
        dataset, batch_size=3, sampler=sampler, collate_fn=pseudo_collate)
    preprocessor = FlamingoDataPreprocessor()
    trained, skipped = Counter(), []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        for batch in loader:
            skipped += [
                s.source for s in batch['data_samples']
                if s.get('unusable', False)
            ]
            data = preprocessor(batch, training=True)
            assert len(data['data_samples']) == len(data['images'])
            trained.update(s.text for s in data['data_samples'])
    # every usable sample once per epoch: none stands in for a skipped one
    assert trained == {
        f'<image>pair {i}<|endofchunk|><|endoftext|>': 2
        for i in (0, 1, 3, 4, 6, 7)
    }
    assert len(skipped) == 4
    assert all('missing.png' in source for source in skipped)


def test_more_than_max_refetch_unusable_samples_in_a_row_raise(pairs):
    images = ['missing.png'] * 2 + ['red.png'] + ['missing.png'] * 3
    dataset = pairs(images, max_refetch=2)
    assert dataset[0]['data_samples'].unusable
    assert dataset[1]['data_samples'].unusable
    # a usable sample starts the count again
    assert 'unusable' not in dataset[2]['data_samples']
    assert dataset[3]['data_samples'].unusable
    assert dataset[4]['data_samples'].unusable
    with pytest.raises(RuntimeError, match=r'3 samples in a row.*=2'):
        dataset[5]
