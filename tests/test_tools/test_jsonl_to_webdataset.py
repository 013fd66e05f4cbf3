"""tools/dataset_converters/jsonl_to_webdataset.py: our jsonl pairs and
MMC4-style documents packed into shards and read back, member by member
and as the samples the datasets build from them."""
import base64
import glob
import json
import os.path as osp
import sys

import pytest
from mmengine.registry import DefaultScope

from mmflamingo.datasets.shard_stream import read_shard
from mmflamingo.registry import DATASETS
from mmflamingo.testing.toy_data import write_toy_mixture

sys.path.insert(
    0,
    osp.join(
        osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'tools',
        'dataset_converters'))
import jsonl_to_webdataset  # noqa: E402

PIPELINE = [
    dict(type='LoadMedia'),
    dict(type='PackFlamingoInputs', meta_keys=['source']),
]


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    return write_toy_mixture(str(tmp_path_factory.mktemp('toy')))


def convert(*argv) -> dict:
    return jsonl_to_webdataset.main([str(a) for a in argv])


def read_all(pattern: str) -> list:
    return [s for path in sorted(glob.glob(pattern)) for s in read_shard(path)]


def read_jsonl(path: str) -> list:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def file_bytes(*parts) -> bytes:
    with open(osp.join(*parts), 'rb') as f:
        return f.read()


def build(tokenizer_dir, **cfg):
    with DefaultScope.overwrite_default_scope('mmflamingo'):
        return DATASETS.build(
            dict(
                tokenizer=dict(pretrained=tokenizer_dir),
                pipeline=PIPELINE,
                **cfg))


def same_samples(jsonl_dataset, streamed) -> None:
    """The jsonl dataset's samples, in order, are the streamed ones: the
    same text and the same pixels."""
    expected = [jsonl_dataset[i] for i in range(len(jsonl_dataset))]
    got = list(streamed)
    assert len(got) == len(expected)
    for ours, reference in zip(got, expected):
        assert ours['data_samples'].text == reference['data_samples'].text
        assert ours['inputs'].equal(reference['inputs'])


def test_pairs_round_trip(toy, tmp_path, tokenizer_dir):
    counts = convert('pairs', toy['pairs'], '--media-dir',
                     osp.join(toy['root'], 'images'), '--out',
                     tmp_path / 'p-%02d.tar', '--samples-per-shard', 3)
    # 8 pairs, 3 per shard
    assert counts == dict(samples=8, shards=3, missing_images=0)
    samples = read_all(str(tmp_path / 'p-*.tar'))
    records = read_jsonl(toy['pairs'])
    assert [s['__key__'] for s in samples] == [f'{i:09d}' for i in range(8)]
    for sample, record in zip(samples, records):
        assert sample['png'] == file_bytes(toy['root'], 'images',
                                           record['image'])
        assert sample['txt'].decode() == record['caption']
    same_samples(
        build(
            tokenizer_dir,
            type='JsonlImageText',
            data_root=toy['root'],
            ann_file='pairs.jsonl',
            data_prefix=dict(img_path='images')),
        build(
            tokenizer_dir,
            type='StreamingWebDatasetImageText',
            shards=str(tmp_path / 'p-{00..02}.tar'),
            shard_shuffle=False,
            shuffle_buffer=1,
            epochs=1))


@pytest.mark.parametrize('embed', [False, True], ids=['members', 'base64'])
def test_documents_round_trip(toy, tmp_path, tokenizer_dir, embed):
    counts = convert('mmc4', toy['docs'], '--media-dir',
                     osp.join(toy['root'], 'images'), '--out',
                     tmp_path / 'd-%02d.tar', '--samples-per-shard', 5,
                     *(['--embed-images'] if embed else []))
    assert counts == dict(samples=8, shards=2, missing_images=0)
    samples = read_all(str(tmp_path / 'd-*.tar'))
    docs = read_jsonl(toy['docs'])
    assert len(samples) == len(docs)
    for sample, doc in zip(samples, docs):
        key = sample['__key__']
        packed = json.loads(sample['json'])
        assert packed['text_list'] == doc['text_list']
        for i, (entry, source) in enumerate(
                zip(packed['image_info'], doc['image_info'])):
            image = file_bytes(toy['root'], 'images', source['image_name'])
            assert entry['matched_text_index'] == source['matched_text_index']
            if embed:
                assert 'image_name' not in entry
                assert base64.b64decode(entry['image_base64']) == image
            else:
                assert entry['image_name'] == f'{key}.{i}.png'
                assert sample[f'{i}.png'] == image
    same_samples(
        build(
            tokenizer_dir,
            type='MMC4Interleaved',
            data_root=toy['root'],
            ann_file='docs.jsonl',
            data_prefix=dict(img_path='images'),
            min_image_bytes=0),
        build(
            tokenizer_dir,
            type='StreamingWebDatasetInterleaved',
            shards=str(tmp_path / 'd-{00..01}.tar'),
            min_image_bytes=0,
            shard_shuffle=False,
            shuffle_buffer=1,
            epochs=1))


def test_missing_document_images_are_counted_and_left(toy, tmp_path):
    doc = read_jsonl(toy['docs'])[0]
    doc['image_info'][1]['image_name'] = 'gone.png'
    docs = tmp_path / 'docs.jsonl'
    docs.write_text(json.dumps(doc) + '\n')
    counts = convert('mmc4', docs, '--media-dir',
                     osp.join(toy['root'], 'images'), '--out',
                     tmp_path / 'out' / '%d.tar')
    assert counts == dict(samples=1, shards=1, missing_images=1)
    (sample, ) = read_all(str(tmp_path / 'out' / '*.tar'))
    info = json.loads(sample['json'])['image_info']
    assert info[1]['image_name'] == 'gone.png'
    assert sorted(k for k in sample
                  if not k.startswith('__')) == ['0.png', '2.png', 'json']


@pytest.mark.parametrize(
    'kind, line, message',
    [('pairs', '{"image": "0_red.png"}', 'expected "image"'),
     ('pairs', '{"image": "nowhere.png", "caption": "x"}', 'nowhere.png'),
     ('pairs', '{"image": ', 'is not JSON'),
     ('mmc4', '{"text_list": []}', 'expected a document with "image_info"')])
def test_bad_records_name_the_line(toy, tmp_path, kind, line, message):
    path = tmp_path / 'bad.jsonl'
    path.write_text('\n' + line + '\n')
    with pytest.raises((ValueError, FileNotFoundError)) as error:
        convert(kind, path, '--media-dir', osp.join(toy['root'], 'images'),
                '--out', tmp_path / 'out' / '%d.tar')
    assert f'{path}:2' in str(error.value)
    assert message in str(error.value)


def test_no_records_is_an_error_and_writes_nothing(tmp_path):
    path = tmp_path / 'empty.jsonl'
    path.write_text('\n')
    with pytest.raises(ValueError, match='no records'):
        convert('pairs', path, '--out', tmp_path / 'out' / '%d.tar')
    assert not list((tmp_path / 'out').iterdir())
