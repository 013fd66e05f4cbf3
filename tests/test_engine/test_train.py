"""Training end to end: tools/train.py (Runner and DeepSpeed ZeRO-1 on CPU),
kill and resume, one process against two, the mixture's gradient, the
mixture strategies, the monitor hook and start-up errors.

The subprocess runs are the slow part (mostly imports): they are shared where
a test only reads what a run left behind.
"""
import copy
import glob
import json
import math
import multiprocessing
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.registry import DefaultScope

from mmflamingo.datasets import LossWeightedDataset
from mmflamingo.engine import allow_mmengine_checkpoints
from mmflamingo.registry import DATASETS, MODELS

pytestmark = pytest.mark.workflow

# the values of one training iteration that must replay exactly on resume
REPLAYED_KEYS = ('loss', 'interleaved_nll', 'pairs_nll', 'video_nll',
                 'num_tokens', 'grad_norm', 'lr', 'num_truncated',
                 'truncated_samples')


def _replayed(row: dict) -> dict:
    return {key: row[key] for key in REPLAYED_KEYS}


def _trainable_names(config_path: str) -> set:
    """Names of the trained parameters of the model a config builds."""
    model = MODELS.build(Config.fromfile(config_path).model)
    return {n for n, p in model.named_parameters() if p.requires_grad}


# ------------------------------------------------------------ ZeRO-1 on CPU
def test_zero1_bf16_trains_and_saves_trained_weights_only(trainer, tmp_path):
    config = trainer.config(trainer.zero1_config)
    work_dir = str(tmp_path)
    result = trainer.run(
        config,
        work_dir,
        args=[
            '--cfg-options', 'train_cfg.max_iters=2',
            'default_hooks.checkpoint.interval=2'
        ]).check()

    assert [row['iter'] for row in result.rows] == [1, 2]
    for row in result.rows:
        assert math.isfinite(row['loss']) and math.isfinite(row['loss_global'])
    # DeepSpeed's layout: a directory per checkpoint, one file of model
    # states and one of this rank's optimizer partition
    checkpoint = osp.join(work_dir, 'iter_2.pth')
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read().strip() == checkpoint
    assert osp.isdir(checkpoint)
    assert osp.isfile(
        osp.join(checkpoint, 'bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt'))
    # the test's own file: the full pickle (DeepSpeed's objects) is fine
    states = torch.load(
        osp.join(checkpoint, 'mp_rank_00_model_states.pt'),
        map_location='cpu',
        weights_only=False)
    names = set(states['module'])
    assert names == _trainable_names(config)
    trained = ('neck.', 'head.xattn_blocks.')
    for name in names:
        assert name.startswith(trained) or name.endswith('.new_weight'), name
        assert not name.startswith(('backbone.', 'head.lm.model.layers.'))
    assert {n.split('.')[0] for n in names} == {'neck', 'head'}
    assert any(n.startswith('head.xattn_blocks.') for n in names)
    assert any(n.endswith('.new_weight') for n in names)
    assert {v.dtype for v in states['module'].values()} == {torch.bfloat16}


# ----------------------------------------------------------- kill + resume
# text short enough to be truncated: the running count continues on resume
RESUME_ARGS = [
    '--cfg-options', 'train_cfg.max_iters=8',
    'default_hooks.checkpoint.interval=2', 'model.max_text_length=24'
]


@pytest.fixture(scope='module')
def uninterrupted(trainer, tmp_path_factory):
    """The Runner config trained for 8 iterations without a break."""
    return trainer.run(
        trainer.config(trainer.runner_config),
        str(tmp_path_factory.mktemp('uninterrupted')),
        args=RESUME_ARGS).check()


def test_kill_and_resume_replays_the_uninterrupted_run(trainer, uninterrupted,
                                                       tmp_path):
    reference = {row['iter']: row for row in uninterrupted.rows}
    assert sorted(reference) == list(range(1, 9))
    config = trainer.config(trainer.runner_config)
    work_dir = str(tmp_path)

    process = trainer.start(config, work_dir, args=RESUME_ARGS)
    checkpoint = process.wait_for_checkpoint()
    process.popen.kill()
    killed = process.wait()
    assert checkpoint, killed.output[-6000:]
    assert killed.returncode == -9, 'the run ended before it was killed'
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    start = int(re.fullmatch(r'iter_(\d+)\.pth', osp.basename(checkpoint))[1])
    assert start in (2, 4, 6)
    # mmengine's torch.load takes torch's default, weights_only=True: the
    # checkpoint (message hub history, numpy scalars) must load through it
    # with what mmflamingo.engine allows (training imports it)
    allow_mmengine_checkpoints()
    state = torch.load(checkpoint, map_location='cpu', weights_only=True)
    assert isinstance(state['message_hub']['log_scalars']['train/loss'],
                      HistoryBuffer)

    resumed = trainer.run(
        config, work_dir, args=['--resume', *RESUME_ARGS]).check()
    assert f'resumed epoch: 0, iter: {start}' in resumed.output
    assert f'Advancing the dataloaders {start} steps' in resumed.output
    assert 'UnpicklingError' not in resumed.output
    assert [row['iter'] for row in resumed.rows] == list(range(start + 1, 9))
    assert reference[8]['truncated_samples'] > 0
    # fp32 on the CPU, one thread: the resumed run is bit-identical
    for row in killed.rows + resumed.rows:
        assert _replayed(row) == _replayed(reference[row['iter']]), row['iter']


# ---------------------------------------------------- two processes vs one
def _equal_length_pairs(tokenizer_dir: str, toy_root: str, path: str) -> None:
    """Captions that differ (so per-sample losses differ) but tokenise to
    the same length (so the mean of per-rank means is the global mean)."""
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    colours = ['blue', 'green', 'yellow', 'purple']
    captions = [f'a {colour} square.' for colour in colours]
    assert len({len(tokenizer(c)['input_ids']) for c in captions}) == 1
    images = sorted(glob.glob(osp.join(toy_root, 'images', '*.png')))
    with open(path, 'w') as f:
        for i, image in enumerate(images):
            f.write(
                json.dumps(
                    dict(
                        image=osp.basename(image),
                        caption=captions[i % len(captions)])) + '\n')


def _pairs_only(ann_file: str, toy_root: str) -> str:
    """Config text training on the pairs of ``ann_file`` alone."""
    # no random flip: each rank would draw its own, unlike one process
    return f"""
train_dataloader = dict(
    batch_size=2,
    datasets=dict(
        _delete_=True,
        pairs=dict(
            loss_weight=1.0,
            dataset=dict(
                type='JsonlImageText',
                data_root={osp.dirname(ann_file)!r},
                ann_file={ann_file!r},
                data_prefix=dict(img_path={osp.join(toy_root, 'images')!r}),
                tokenizer=tokenizer,
                pipeline=[
                    dict(type='LoadMedia'),
                    dict(type='ResizeMedia', size=64),
                    dict(type='PackFlamingoInputs', meta_keys=['source']),
                ]))))
"""


def test_two_processes_match_one(trainer, tokenizer_dir, toy_root, tmp_path):
    ann_file = str(tmp_path / 'pairs.jsonl')
    _equal_length_pairs(tokenizer_dir, toy_root, ann_file)
    config = trainer.config(trainer.zero1_config,
                            _pairs_only(ann_file, toy_root))
    args = ['--cfg-options', 'train_cfg.max_iters=4']
    # rank r takes samples r::2 of the same permutation: the same global
    # batch as one process with batch size 2
    two = trainer.run(
        config,
        str(tmp_path / 'two'),
        args=[*args, 'train_dataloader.batch_size=1'],
        nproc=2)
    # (without NoGradStepDeepSpeedOptimWrapper this fails at the first step:
    # 'Output 0 of Split is a view and is being modified inplace')
    two.check()
    one = trainer.run(config, str(tmp_path / 'one'), args=args).check()

    iters = [1, 2, 3, 4]
    assert [r['iter'] for r in one.rows] == iters
    assert [r['iter'] for r in two.rows] == iters
    for r1, r2 in zip(one.rows, two.rows):
        # each rank learned from one of the two samples
        assert r2['pairs_tokens'] * 2 == r1['pairs_tokens']
    # Before the first step the weights are the same: only the mean's
    # rounding differs (measured 5e-7, one float32 ulp at 5.8). Then the
    # bf16 weights drift apart: one backward over the batch and two over
    # its halves (averaged over the ranks) round differently; measured up to
    # 1.2e-4 by iteration 4 (and 1e-3 by iteration 8). A wrong sampler split
    # or a loss_global that is not the mean is off by ~3e-2 on this data.
    assert two.rows[0]['loss_global'] == pytest.approx(
        one.rows[0]['loss'], abs=1e-5)
    for r1, r2 in zip(one.rows, two.rows):
        assert r2['loss_global'] == pytest.approx(
            r1['loss'], abs=1e-3), r1['iter']
    # rank 0's own loss is not the global one: the ranks saw other samples
    assert any(abs(r['loss'] - r['loss_global']) > 1e-2 for r in two.rows)


def test_a_process_whose_batch_is_empty_keeps_ddp_in_step(
        trainer, toy_root, tmp_path):
    # four pairs, one with a missing image, one pair per process and
    # iteration: the missing pair leaves the batch of one process empty at
    # two of the four iterations (8 draws, 2 permutations); its zero loss
    # must still join DDP's reduction of every gradient, or the other
    # process waits for it for ever
    with open(osp.join(toy_root, 'pairs.jsonl')) as f:
        rows = [json.loads(line) for line in f][:4]
    rows[1]['image'] = 'missing_1.png'
    ann_file = str(tmp_path / 'pairs.jsonl')
    with open(ann_file, 'w') as f:
        f.writelines(json.dumps(row) + '\n' for row in rows)
    # DDP on the CPU: no device ids
    ddp = "model_wrapper_cfg = dict(type='MMDistributedDataParallel', " \
        'device_ids=None)\n'
    config = trainer.config(trainer.runner_config,
                            _pairs_only(ann_file, toy_root) + ddp)
    result = trainer.run(
        config,
        str(tmp_path / 'work'),
        args=[
            '--cfg-options', 'train_cfg.max_iters=4',
            'train_dataloader.batch_size=1'
        ],
        nproc=2,
        timeout=240).check()
    assert [r['iter'] for r in result.rows] == [1, 2, 3, 4]
    assert all(math.isfinite(r['loss_global']) for r in result.rows)
    # the skips of both processes
    assert result.rows[-1]['skipped_samples'] == 2


# --------------------------------------------------- the mixture's gradient
def _toy_dataset_cfgs(trainer, image_size: int) -> dict:
    """The toy config's datasets and loss weights, reading the test data,
    without random flips; keyed by name."""
    cfg = Config.fromfile(trainer.config(trainer.runner_config))
    datasets = {}
    for name, entry in cfg.train_dataloader.datasets.items():
        dataset = copy.deepcopy(entry.dataset.to_dict())
        pipeline = []
        for step in dataset['pipeline']:
            if step['type'] == 'RandomFlipMedia':
                continue
            if step['type'] == 'ResizeMedia':
                step = dict(step, size=image_size)
            pipeline.append(step)
        dataset['pipeline'] = pipeline
        datasets[name] = (dataset, entry.loss_weight)
    return datasets


def test_mixture_gradient_is_weighted_sum_of_dataset_gradients(
        build_flamingo, trainer):
    # gates open: the images, and so the perceiver, reach the loss
    model = build_flamingo(gates=0.5, neck_cfg=dict(max_num_frames=4)).train()
    params = [p for p in model.parameters() if p.requires_grad]

    def grads(loss):
        return [
            torch.zeros_like(p) if g is None else g for p, g in zip(
                params, torch.autograd.grad(loss, params, allow_unused=True))
        ]

    weights, mixture, alone = {}, {}, {}
    for name, (cfg, weight) in _toy_dataset_cfgs(trainer, 32).items():
        with DefaultScope.overwrite_default_scope('mmflamingo'):
            dataset = DATASETS.build(cfg)
        weighted = LossWeightedDataset(dataset, weight, name)
        weights[name] = weight
        mixture[name] = pseudo_collate([weighted[0], weighted[1]])
        alone[name] = pseudo_collate([dataset[0], dataset[1]])
    assert len(set(weights.values())) == 3, 'the weights must differ'

    out = model.loss(**model.data_preprocessor(mixture, True))
    expected = [torch.zeros_like(p) for p in params]
    unweighted = [torch.zeros_like(p) for p in params]
    for name, batch in alone.items():
        part = model.loss(**model.data_preprocessor(batch, True))
        assert out[f'{name}_nll'] == pytest.approx(
            part['loss'].item(), rel=1e-6)
        for e, u, g in zip(expected, unweighted, grads(part['loss'])):
            e.add_(g, alpha=weights[name])
            u.add_(g)
    actual = grads(out['loss'])

    latents = next(i for i, p in enumerate(params) if p is model.neck.latents)
    assert actual[latents].abs().sum() > 0
    # fp32, summed in another order: measured <= 1e-6 of each tensor's
    # largest entry; the unweighted sum is off by tens of percent
    for a, e, u in zip(actual, expected, unweighted):
        scale = e.abs().max()
        assert (a - e).abs().max() <= 1e-5 * scale
    assert max(
        float((a - u).abs().max() / u.abs().max().clamp(min=1e-12))
        for a, u in zip(actual, unweighted)) > 0.1


# ------------------------------------------------- in-process Runner runs
class _RecordBatches(Hook):
    """Records what every training iteration got and returned."""

    def __init__(self):
        self.batches, self.outputs = [], []

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        self.batches.append({
            name: [(s.dataset_name, s.loss_weight)
                   for s in batch['data_samples']]
            for name, batch in data_batch.items()
        })
        self.outputs.append(dict(outputs))


def _train_in_process(trainer, work_dir, max_iters, edit=None):
    """Train the Runner toy config in this process; return the runner, the
    recorded batches and the scalars.json rows."""
    from mmengine.runner import Runner
    cfg = Config.fromfile(trainer.config(trainer.runner_config))
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'test_train_{osp.basename(work_dir)}'
    cfg.train_cfg.max_iters = max_iters
    cfg.default_hooks.checkpoint = None
    if edit is not None:
        edit(cfg)
    runner = Runner.from_cfg(cfg)
    recorder = _RecordBatches()
    runner.register_hook(recorder)
    runner.train()
    [path] = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    return runner, recorder, rows


def test_round_robin_takes_one_dataset_per_iteration_in_order(
        trainer, tmp_path):

    def edit(cfg):
        cfg.train_cfg.strategy = 'round_robin'

    _, recorder, rows = _train_in_process(trainer, tmp_path, 4, edit)
    order = ['interleaved', 'pairs', 'video', 'interleaved']
    assert [list(b) for b in recorder.batches] == [[n] for n in order]
    for name, batch, outputs, row in zip(order, recorder.batches,
                                         recorder.outputs, rows):
        assert {s[0] for s in batch[name]} == {name}
        assert [k for k in outputs if k.endswith('_nll')] == [f'{name}_nll']
        # the log's num_tokens is this iteration's dataset's
        assert row['num_tokens'] == row[f'{name}_tokens']
    # a dataset first appears in the log at its first iteration
    for i, name in enumerate(order[:3]):
        assert f'{name}_nll' in rows[i]
        assert all(f'{n}_nll' not in rows[i] for n in order[i + 1:3])


def test_merge_batches_mix_datasets_with_their_weights(trainer, tmp_path):

    def edit(cfg):
        cfg.train_cfg.strategy = 'merge'
        cfg.train_dataloader.batch_size = 4
        # a merged batch needs one frame count: the images only
        del cfg.train_dataloader.datasets['video']

    _, recorder, rows = _train_in_process(trainer, tmp_path, 3, edit)
    weights = {'interleaved': 1.0, 'pairs': 0.2}
    names_per_batch = []
    for batch in recorder.batches:
        assert list(batch) == ['mixture']
        assert len(batch['mixture']) == 4
        for name, weight in batch['mixture']:
            assert weight == weights[name]
        names_per_batch.append({name for name, _ in batch['mixture']})
    assert set().union(*names_per_batch) == set(weights)
    assert set(weights) in names_per_batch
    assert all(math.isfinite(row['mixture_nll']) for row in rows)


def test_loader_processes_stop_when_training_ends(trainer, tmp_path):

    def edit(cfg):
        cfg.train_dataloader.num_workers = 1
        cfg.train_dataloader.persistent_workers = True

    before = set(multiprocessing.active_children())
    runner, recorder, _ = _train_in_process(trainer, tmp_path, 2, edit)
    # the workers did the loading (one per dataset) ...
    assert len(recorder.batches) == 2
    assert len(runner.train_loop.dataloaders) == 3
    assert all(loader.num_workers == 1
               for loader in runner.train_loop.dataloaders.values())
    # ... and are gone once train() returns, though the Runner still lives
    assert set(multiprocessing.active_children()) - before == set()


def test_monitor_hook_logs_gates_throughput_and_skipped_samples(
        trainer, toy_root, tmp_path):
    # four pairs, the first and third with a missing image: two iterations
    # of batches of two take each pair once, so they skip exactly two
    with open(osp.join(toy_root, 'pairs.jsonl')) as f:
        rows = [json.loads(line) for line in f][:4]
    for i in (0, 2):
        rows[i]['image'] = f'missing_{i}.png'
    ann_file = str(tmp_path / 'pairs_with_missing.jsonl')
    with open(ann_file, 'w') as f:
        f.writelines(json.dumps(row) + '\n' for row in rows)

    def edit(cfg):
        cfg.train_dataloader.datasets.pairs.dataset.ann_file = ann_file
        # short enough to cut some documents and videos
        cfg.model.max_text_length = 24

    runner, _, rows = _train_in_process(trainer, tmp_path / 'run', 2, edit)
    assert [row['iter'] for row in rows] == [1, 2]
    head = runner.model.head
    skipped, truncated = 0, 0
    for row in rows:
        # one process: the global loss is this process's, logged with it
        assert row['loss_global'] == row['loss']
        assert row['samples_per_s'] > 0
        # same clock: tokens per sample, 2 samples from each of 3 datasets
        # but the skipped ones
        trained = 6 - (row['skipped_samples'] - skipped)
        assert row['tokens_per_s'] / row['samples_per_s'] == pytest.approx(
            row['num_tokens'] / trained, rel=1e-9)
        skipped = row['skipped_samples']
        # a running count of this iteration's truncations
        truncated += row['num_truncated']
        assert row['truncated_samples'] == truncated
        for name in head.xattn_blocks:
            assert f'gate_attn_{name}' in row and f'gate_ff_{name}' in row
    assert skipped == 2
    assert truncated > 0
    # the last row shows the gates as training left them
    for name, block in head.xattn_blocks.items():
        assert rows[-1][f'gate_attn_{name}'] == float(
            block.attn_gate.detach().tanh())
        assert rows[-1][f'gate_ff_{name}'] == float(
            block.ff_gate.detach().tanh())
        assert rows[-1][f'gate_attn_{name}'] != 0
    [log] = glob.glob(str(tmp_path / 'run' / '*' / '*.log'))
    with open(log) as f:
        text = f.read()
    assert 'missing_0.png' in text and 'skipping' in text


# ---------------------------------------------------------- start-up errors
def test_config_errors_fail_at_start_naming_the_culprit(
        trainer, toy_root, tmp_path):
    config = trainer.config(trainer.runner_config)
    missing = trainer.start(
        config,
        str(tmp_path / 'missing'),
        args=[
            '--cfg-options',
            'train_dataloader.datasets.pairs.dataset.ann_file='
            'no_such_pairs.jsonl'
        ])
    unknown = trainer.start(
        config,
        str(tmp_path / 'unknown'),
        args=[
            '--cfg-options',
            'train_dataloader.datasets.video.dataset.type=NoSuchVideoDataset'
        ])
    # a checkpoint cut short (an interrupted save): torch's error does not
    # name the file, mmflamingo's loader for mmengine does
    torch.save(
        dict(state_dict=dict(w=torch.ones(64, 64))), tmp_path / 'full.pth')
    truncated = str(tmp_path / 'iter_2.pth')
    with open(tmp_path / 'full.pth', 'rb') as f, open(truncated, 'wb') as out:
        out.write(f.read()[:2000])
    resume = trainer.start(
        config, str(tmp_path / 'resume'), args=['--resume', truncated])
    missing, unknown, resume = missing.wait(), unknown.wait(), resume.wait()

    assert missing.returncode != 0
    assert osp.join(toy_root, 'no_such_pairs.jsonl') in missing.stderr
    assert unknown.returncode != 0
    assert 'NoSuchVideoDataset' in unknown.stderr
    assert resume.returncode != 0
    assert f'cannot read checkpoint {truncated!r}' in resume.stderr
    for result in (missing, unknown, resume):
        assert 'Iter(train)' not in result.output
        assert result.rows == []
