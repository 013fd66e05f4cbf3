"""The streaming WebDataset datasets on small shards written by the tests:
the same samples as the indexed datasets, pipe: URLs, bad members and
shards, the split over processes and workers, and resuming at a cursor."""
import base64
import json
import os.path as osp
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope
from torch.utils.data import DataLoader

from mmflamingo.datasets import StreamCursor
from mmflamingo.datasets.shard_stream import consumer_shards
from mmflamingo.datasets.transforms.video import write_video
from mmflamingo.registry import DATASETS

EOC, EOS = '<|endofchunk|>', '<|endoftext|>'
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
LOAD_AND_PACK = [
    dict(type='LoadMedia'),
    dict(type='PackFlamingoInputs', meta_keys=['source']),
]
PIPELINE = [
    dict(type='LoadMedia'),
    dict(type='ResizeMedia', size=8),
    dict(type='PackFlamingoInputs', meta_keys=['source']),
]


def build(tokenizer_dir, **cfg):
    cfg.setdefault('pipeline', PIPELINE)
    with DefaultScope.overwrite_default_scope('mmflamingo'):
        return DATASETS.build(
            dict(tokenizer=dict(pretrained=tokenizer_dir), **cfg))


def in_order(**cfg):
    """Streaming settings that read the shards once, in order."""
    return dict(shard_shuffle=False, shuffle_buffer=1, epochs=1, **cfg)


def by_source(samples):
    return {s['data_samples'].source: s for s in samples}


@pytest.fixture
def pair_shards(tmp_path, png_bytes, write_tar):
    """Two pair shards; ``bad0`` (corrupt image) and ``bad1`` (no caption
    field) are unusable."""
    folder = tmp_path / 'pairs'
    folder.mkdir()
    write_tar(
        folder / 'shard-000.tar', {
            'k0.png': png_bytes(RED),
            'k0.txt': ' a red square ',
            'k1.jpg': png_bytes(GREEN),
            'k1.json': json.dumps(dict(caption='a green square')),
        })
    write_tar(
        folder / 'shard-001.tar', {
            'bad0.png': b'corrupt bytes',
            'bad0.txt': 'never decoded',
            'bad1.png': png_bytes(BLUE),
            'bad1.json': json.dumps(dict(url='no caption field')),
            'k2.webp': png_bytes(BLUE),
            'k2.txt': 'a blue square',
        })
    return folder


def test_streamed_pairs_are_the_indexed_samples(pair_shards, tokenizer_dir,
                                                warnings_logged):
    indexed = build(
        tokenizer_dir,
        type='WebDatasetImageText',
        shards=str(pair_shards / 'shard-{000..001}.tar'))
    streamed = build(
        tokenizer_dir,
        type='StreamingWebDatasetImageText',
        shards=str(pair_shards / 'shard-{000..001}.tar'),
        **in_order())
    expected = by_source(indexed[i] for i in range(len(indexed)))
    got = list(streamed)
    assert list(by_source(got)) == list(expected)
    for source, sample in by_source(got).items():
        reference = expected[source]
        assert sample['data_samples'].get('unusable', False) == (
            reference['data_samples'].get('unusable', False))
        if 'text' in reference['data_samples']:
            assert sample['data_samples'].text == (
                reference['data_samples'].text)
            assert sample['inputs'].equal(reference['inputs'])
    texts = [s['data_samples'].get('text') for s in got]
    assert texts[0] == f'<image>a red square{EOC}{EOS}'
    assert texts[1] == f'<image>a green square{EOC}{EOS}'
    # bad members: skipped with a placeholder, counted, shard and key named
    unusable = [
        s['data_samples'].source for s in got
        if 'text' not in s['data_samples']
    ]
    assert [u.rsplit('/', 1)[1]
            for u in unusable] == ['shard-001.tar:bad0', 'shard-001.tar:bad1']
    streamed_warnings = warnings_logged[-2:]
    assert 'shard-001.tar:bad0' in streamed_warnings[0]
    assert 'cannot read image' in streamed_warnings[0]
    assert '"caption"' in streamed_warnings[1]
    # each sample says where its stream stood: (role, epoch, slot, read)
    assert [s['data_samples'].stream_cursor for s in got] == [(0, 0, 0, 1),
                                                              (0, 0, 0, 2),
                                                              (0, 0, 1, 1),
                                                              (0, 0, 1, 2),
                                                              (0, 0, 1, 3)]


def test_pipe_urls_and_unreadable_shards(pair_shards, tokenizer_dir,
                                         warnings_logged):
    first, second = (str(pair_shards / f'shard-00{i}.tar') for i in (0, 1))
    truncated = pair_shards / 'truncated.tar'
    data = open(first, 'rb').read()
    # members of 512-byte header + 512-byte data: cut in k1.json's data
    truncated.write_bytes(data[:3600])
    streamed = build(
        tokenizer_dir,
        type='StreamingWebDatasetImageText',
        shards=[
            f'pipe:cat {first}',
            str(truncated), f'pipe:cat {pair_shards}/missing.tar', second
        ],
        **in_order())
    sources = [s['data_samples'].source for s in streamed]
    assert sources[:2] == [f'pipe:cat {first}:k0', f'pipe:cat {first}:k1']
    # the truncated shard yields what it holds, then is left with a warning
    assert sources[2] == f'{truncated}:k0'
    assert [s.rsplit(':', 1)[1]
            for s in sources[-3:]] == ['bad0', 'bad1', 'k2']
    left = [w for w in warnings_logged if 'skipping the rest of shard' in w]
    assert len(left) == 2
    assert str(truncated) in left[0] and 'after 1 samples' in left[0]
    assert 'missing.tar' in left[1]


def test_streamed_documents_are_the_indexed_samples(tmp_path, tokenizer_dir,
                                                    png_bytes, write_tar):
    red, green = png_bytes(RED), png_bytes(GREEN)
    docs = {
        # images as members of the sample, named by image_name
        'd0': (dict(
            text_list=['Intro.', 'A red one.', 'A green one.'],
            image_info=[
                dict(
                    image_name='d0.0.png',
                    matched_text_index=1,
                    matched_sim=0.3),
                dict(
                    image_name='d0.1.png',
                    matched_text_index=2,
                    matched_sim=0.3)
            ]), {
                '0.png': red,
                '1.png': green
            }),
        # OpenFlamingo's shards: base64 in the JSON
        'd1': (dict(
            text_list=['Green first.', 'Then red.'],
            image_info=[
                dict(
                    image_base64=base64.b64encode(green).decode(),
                    matched_text_index=0,
                    matched_sim=0.3),
                dict(
                    image_base64=base64.b64encode(red).decode(),
                    matched_text_index=1,
                    matched_sim=0.3)
            ]), {}),
        'd2': ('{"broken json', {}),
    }
    members = {}
    for key, (doc, images) in docs.items():
        members[f'{key}.json'] = doc if isinstance(doc,
                                                   str) else json.dumps(doc)
        members.update({f'{key}.{ext}': data for ext, data in images.items()})
    shard = write_tar(tmp_path / 'docs.tar', members)
    common = dict(shards=shard, min_image_bytes=0, single_image_drop_prob=0)
    indexed = build(tokenizer_dir, type='WebDatasetInterleaved', **common)
    streamed = list(
        build(
            tokenizer_dir,
            type='StreamingWebDatasetInterleaved',
            **common,
            **in_order()))
    assert len(indexed) == len(streamed) == 3
    for i, sample in enumerate(streamed):
        reference = indexed[i]
        assert sample['data_samples'].source == (
            reference['data_samples'].source)
        if i == 2:
            assert sample['data_samples'].unusable
            continue
        assert sample['data_samples'].text == reference['data_samples'].text
        assert sample['inputs'].equal(reference['inputs'])
        assert sample['inputs'].shape[0] == 2
    assert streamed[0]['data_samples'].text == (
        f'Intro.<image>A red one.{EOC}<image>A green one.{EOC}{EOS}')


def test_streamed_video_bytes(tmp_path, tokenizer_dir, write_tar):
    frames = [np.full((16, 16, 3), 40 * t, dtype=np.uint8) for t in range(4)]
    path = str(tmp_path / 'clip.mp4')
    write_video(path, frames)
    shard = write_tar(tmp_path / 'videos.tar', {
        'v0.mp4': open(path, 'rb').read(),
        'v0.txt': 'a clip that fades in',
    })
    dataset = build(
        tokenizer_dir,
        type='StreamingWebDatasetImageText',
        shards=shard,
        media_extensions=['mp4'],
        pipeline=[
            dict(type='LoadVideoFrames', num_frames=4, fps=1.0),
            dict(type='PackFlamingoInputs', meta_keys=['source']),
        ],
        **in_order())
    (sample, ) = list(dataset)
    assert sample['inputs'].shape == (1, 4, 3, 16, 16)
    assert sample['data_samples'].text == (
        f'<image>a clip that fades in{EOC}{EOS}')
    brightness = sample['inputs'][0].float().mean(dim=(1, 2, 3))
    assert (brightness.diff() > 20).all()


# ------------------------------------------------------------ split, resume
def write_numbered_shards(folder, write_tar, png_bytes, sizes):
    """Shards of pairs whose captions are their keys; returns the paths and
    all keys."""
    folder.mkdir(exist_ok=True)
    image = png_bytes(RED)
    paths, keys = [], []
    for s, size in enumerate(sizes):
        members = {}
        for i in range(size):
            key = f's{s}k{i}'
            members[f'{key}.png'] = image
            members[f'{key}.txt'] = key
            keys.append(key)
        paths.append(write_tar(folder / f'shard-{s:03d}.tar', members))
    return paths, keys


def key_of(data_sample):
    return data_sample.source.rsplit(':', 1)[1]


def test_consumer_shards_partition_each_epoch():
    urls = [f'u{i}' for i in range(11)]
    for epoch in range(3):
        parts = [
            consumer_shards(
                urls, epoch, rank, 2, role, 3, seed=0, shuffle=True)
            for rank in range(2) for role in range(3)
        ]
        assert sorted(sum(parts, [])) == sorted(urls)
    assert consumer_shards(urls, 0, 0, 1, 0, 1, 0,
                           True) != consumer_shards(urls, 1, 0, 1, 0, 1, 0,
                                                    True)


def test_too_few_shards_for_the_workers_is_an_error(tmp_path, tokenizer_dir,
                                                    write_tar, png_bytes):
    paths, _ = write_numbered_shards(tmp_path / 's', write_tar, png_bytes, [2])
    dataset = build(
        tokenizer_dir,
        type='StreamingWebDatasetImageText',
        shards=paths,
        epochs=1)
    loader = DataLoader(
        dataset, batch_size=1, num_workers=2, collate_fn=pseudo_collate)
    with pytest.raises(
            ValueError,
            match='1 shards cannot feed 1 processes '
            'x 2 dataloader workers'):
        list(loader)


@pytest.mark.parametrize('buffer', [1, 4])
def test_resuming_at_the_cursors_continues_the_stream(tmp_path, tokenizer_dir,
                                                      write_tar, png_bytes,
                                                      buffer):
    paths, keys = write_numbered_shards(tmp_path / 's', write_tar, png_bytes,
                                        [5, 3, 4, 6, 2])
    cfg = dict(
        type='StreamingWebDatasetImageText',
        shards=paths,
        shuffle_buffer=buffer,
        epochs=1,
        seed=3,
        pipeline=LOAD_AND_PACK)

    def batches(dataset):
        return list(
            DataLoader(
                dataset,
                batch_size=2,
                num_workers=2,
                collate_fn=pseudo_collate))

    whole = batches(build(tokenizer_dir, **cfg))
    assert sorted(key_of(s) for b in whole
                  for s in b['data_samples']) == sorted(keys)
    # a run that stopped after 3 batches: the cursor of each role's last
    # batch, and the role whose batch comes next
    used = whole[:3]
    cursors = {}
    for batch in used:
        role, *cursor = batch['data_samples'][-1].stream_cursor
        cursors[role] = StreamCursor(*cursor)
    resumed_dataset = build(tokenizer_dir, **cfg)
    resumed_dataset.set_start(cursors, first_role=(role + 1) % 2)
    resumed = batches(resumed_dataset)
    seen = [key_of(s) for b in used for s in b['data_samples']]
    rest = [key_of(s) for b in resumed for s in b['data_samples']]
    assert not set(seen) & set(rest)
    if buffer == 1:
        # without a shuffle buffer, exactly the uninterrupted run's batches
        assert [[key_of(s) for s in b['data_samples']]
                for b in resumed] == [[key_of(s) for s in b['data_samples']]
                                      for b in whole[3:]]
    else:
        # what was waiting in the two workers' buffers is not read again
        assert len(keys) - 2 * (buffer - 1) <= len(seen) + len(rest)


SPLIT_SCRIPT = """
import json, sys
import torch.distributed as dist
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope
from torch.utils.data import DataLoader
import mmflamingo.datasets  # noqa: F401
from mmflamingo.registry import DATASETS

dist.init_process_group('gloo')
cfg = json.loads(sys.argv[1])
with DefaultScope.overwrite_default_scope('mmflamingo'):
    dataset = DATASETS.build(cfg)
loader = DataLoader(dataset, batch_size=3, num_workers=2,
                    collate_fn=pseudo_collate)
mine = [(s.source.rsplit(':', 1)[1], s.stream_cursor[0])
        for batch in loader for s in batch['data_samples']]
every = [None] * dist.get_world_size()
dist.all_gather_object(every, (dist.get_rank(), mine))
if dist.get_rank() == 0:
    with open(sys.argv[2], 'w') as f:
        json.dump(every, f)
dist.destroy_process_group()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_two_processes_by_two_workers_read_every_sample_once(
        tmp_path, tokenizer_dir, write_tar, png_bytes):
    paths, keys = write_numbered_shards(tmp_path / 's', write_tar, png_bytes,
                                        [4, 7, 3, 5, 6, 2, 5])
    # some shards through a pipe, as remote ones are read
    urls = [f'pipe:cat {p}' if i % 2 else p for i, p in enumerate(paths)]
    cfg = dict(
        type='StreamingWebDatasetImageText',
        shards=urls,
        tokenizer=dict(pretrained=tokenizer_dir),
        shuffle_buffer=4,
        epochs=1,
        seed=1,
        pipeline=LOAD_AND_PACK)
    script = tmp_path / 'split.py'
    script.write_text(textwrap.dedent(SPLIT_SCRIPT))
    out = tmp_path / 'keys.json'
    result = subprocess.run([
        sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
        '--master_port',
        str(free_port()),
        str(script),
        json.dumps(cfg),
        str(out)
    ],
                            capture_output=True,
                            text=True,
                            timeout=120,
                            env=dict(osp.os.environ, OMP_NUM_THREADS='1'))
    assert result.returncode == 0, result.stderr[-4000:]
    every = json.loads(out.read_text())
    read = [key for _, mine in every for key, _ in mine]
    assert sorted(read) == sorted(keys)  # no duplicates, no holes
    for rank, mine in every:
        # both processes and both workers of each read
        assert {role for _, role in mine} == {0, 1}, rank
        assert 0 < len(mine) < len(keys)


def test_buffer_shuffles_within_a_worker(tmp_path, tokenizer_dir, write_tar,
                                         png_bytes):
    paths, keys = write_numbered_shards(tmp_path / 's', write_tar, png_bytes,
                                        [10, 10])
    common = dict(
        type='StreamingWebDatasetImageText',
        shards=paths,
        epochs=2,
        shard_shuffle=True,
        pipeline=LOAD_AND_PACK)
    shuffled = [
        key_of(s['data_samples'])
        for s in build(tokenizer_dir, shuffle_buffer=8, **common)
    ]
    ordered = [
        key_of(s['data_samples'])
        for s in build(tokenizer_dir, shuffle_buffer=1, **common)
    ]
    # two epochs: each sample twice, in another order each epoch
    assert sorted(shuffled) == sorted(ordered) == sorted(keys * 2)
    assert shuffled != ordered
