"""Training from WebDataset shards through tools/train.py: the streaming and
the indexed datasets in the mixture, and resuming a streaming run at its
streams' cursors instead of re-reading them."""
import math
import os.path as osp
import sys

import pytest
import torch

from mmflamingo.engine import allow_mmengine_checkpoints

sys.path.insert(
    0,
    osp.join(
        osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'tools',
        'dataset_converters'))
import jsonl_to_webdataset  # noqa: E402

pytestmark = pytest.mark.workflow

LOSS_WEIGHTS = dict(interleaved=1.0, pairs=0.2, video=0.03)
# the values of one iteration that a resumed run must replay
REPLAYED_KEYS = ('loss', 'interleaved_nll', 'pairs_nll', 'video_nll',
                 'num_tokens', 'grad_norm', 'lr')


@pytest.fixture(scope='module')
def toy_shards(toy_root, tmp_path_factory):
    """The toy pairs and documents packed into shards of 2 samples."""
    out = tmp_path_factory.mktemp('shards')
    for kind, name in (('pairs', 'pairs'), ('mmc4', 'docs')):
        counts = jsonl_to_webdataset.main([
            kind,
            osp.join(toy_root, f'{name}.jsonl'), '--media-dir',
            osp.join(toy_root, 'images'), '--out',
            str(out / f'{name}-%03d.tar'), '--samples-per-shard', '2'
        ])
        assert counts == dict(samples=8, shards=4, missing_images=0)
    return str(out)


def shard_datasets(shards: str, streaming: bool, workers: int = 2) -> str:
    """Config text: the interleaved and pair datasets read from the shards
    (no random flip: a resumed worker's generator restarts)."""
    prefix = 'Streaming' if streaming else ''
    stream = dict(shuffle_buffer=1, seed=3) if streaming else {}
    return f"""
shard_pipeline = [
    dict(type='LoadMedia'),
    dict(type='ResizeMedia', size=64),
    dict(type='PackFlamingoInputs', meta_keys=['source']),
]
train_dataloader = dict(
    datasets=dict(
        interleaved=dict(
            num_workers={workers},
            dataset=dict(
                _delete_=True,
                type='{prefix}WebDatasetInterleaved',
                shards={shards!r} + '/docs-{{000..003}}.tar',
                tokenizer=tokenizer,
                min_image_bytes=0,
                pipeline=shard_pipeline,
                **{stream!r})),
        pairs=dict(
            num_workers={workers},
            dataset=dict(
                _delete_=True,
                type='{prefix}WebDatasetImageText',
                shards={shards!r} + '/pairs-{{000..003}}.tar',
                tokenizer=tokenizer,
                pipeline=shard_pipeline,
                **{stream!r})),
        video=dict(dataset=dict(data_root=toy_root, tokenizer=tokenizer))))
"""


def check_mixture_rows(rows, iters):
    assert [row['iter'] for row in rows] == iters
    for row in rows:
        # one batch of each dataset per step, their weighted losses summed
        assert row['loss'] == pytest.approx(
            sum(w * row[f'{name}_nll'] for name, w in LOSS_WEIGHTS.items()),
            rel=1e-5)
        assert all(
            math.isfinite(row[f'{name}_nll']) and row[f'{name}_nll'] > 0
            for name in LOSS_WEIGHTS)


@pytest.mark.parametrize(
    'streaming', [True, False], ids=['streaming', 'indexed'])
def test_the_mixture_trains_from_shards(trainer, toy_shards, tmp_path,
                                        streaming):
    config = trainer.config(trainer.runner_config,
                            shard_datasets(toy_shards, streaming))
    result = trainer.run(
        config, str(tmp_path), args=['--cfg-options',
                                     'train_cfg.max_iters=3']).check()
    check_mixture_rows(result.rows, [1, 2, 3])
    assert result.rows[-1]['skipped_samples'] == 0


@pytest.fixture(scope='module')
def uninterrupted(trainer, toy_shards, tmp_path_factory):
    """The streaming mixture trained for 6 iterations without a break."""
    config = trainer.config(trainer.runner_config,
                            shard_datasets(toy_shards, True))
    return trainer.run(
        config,
        str(tmp_path_factory.mktemp('uninterrupted')),
        args=['--cfg-options', 'train_cfg.max_iters=6']).check()


def test_a_resumed_streaming_run_continues_its_streams(trainer, toy_shards,
                                                       uninterrupted,
                                                       tmp_path):
    reference = {row['iter']: row for row in uninterrupted.rows}
    config = trainer.config(trainer.runner_config,
                            shard_datasets(toy_shards, True))
    work_dir = str(tmp_path)
    first = trainer.run(
        config,
        work_dir,
        args=[
            '--cfg-options', 'train_cfg.max_iters=3',
            'default_hooks.checkpoint.interval=3'
        ]).check()
    allow_mmengine_checkpoints()
    state = torch.load(
        osp.join(work_dir, 'iter_3.pth'),
        map_location='cpu',
        weights_only=True)['stream_state']
    assert state['world_size'] == 1
    (streams, ) = state['ranks']
    # 3 batches of 2 from workers 0, 1, 0: 4 samples of worker 0's shards
    # (2 shards of 2), 2 of worker 1's
    assert streams['interleaved'] == dict(
        num_workers=2, next_role=1, cursors=[[0, 0, 1, 2], [1, 0, 0, 2]])

    resumed = trainer.run(
        config,
        work_dir,
        args=['--resume', '--cfg-options', 'train_cfg.max_iters=6']).check()
    # only the indexed dataset is read again up to where the run was
    assert ("Advancing the dataloaders 3 steps past the data already "
            "trained on: ['video']") in resumed.output
    assert [row['iter'] for row in resumed.rows] == [4, 5, 6]
    # no shuffle buffer, same workers: the uninterrupted run's batches
    for row in first.rows + resumed.rows:
        for key in REPLAYED_KEYS:
            assert row[key] == reference[row['iter']][key], (row['iter'], key)


def test_two_processes_train_the_streaming_mixture(trainer, toy_shards,
                                                   tmp_path):
    config = trainer.config(trainer.zero1_config,
                            shard_datasets(toy_shards, True, workers=1))
    result = trainer.run(
        config,
        str(tmp_path),
        args=['--cfg-options', 'train_cfg.max_iters=2'],
        nproc=2).check()
    check_mixture_rows(result.rows, [1, 2])
    for row in result.rows:
        assert math.isfinite(row['loss_global'])
