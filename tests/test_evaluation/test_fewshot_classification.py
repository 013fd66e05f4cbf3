"""Few-shot classification (the FewShotTestLoop, class_scoring) on a tiny
Flamingo, a tiny ImageNet-style folder and a tiny HatefulMemes file written
here."""
import json
import math
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.evaluator import BaseMetric
from PIL import Image
from test_fewshot import TOOL, load_tool

from mmflamingo.apis import evaluate_fewshot, init_model
from mmflamingo.datasets.transforms import media_pipeline, write_video
from mmflamingo.evaluation import (FewShotPromptBuilder, RandomDemoSelector,
                                   build_query_prompt, demo_orders,
                                   format_markdown)
from mmflamingo.evaluation.bootstrap import bootstrap_ci
from mmflamingo.registry import DATASETS, METRICS
from mmflamingo.testing import tiny_flamingo_config

CLASS_NAMES = ['goldfish', 'great white shark', 'tench']
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255),
           (255, 0, 255), (128, 128, 128), (0, 0, 0)]
RECORDED = []


@METRICS.register_module(force=True)
class RecordScores(BaseMetric):
    """Keeps the ``pred_scores`` the runner gives the metrics, in order."""

    def process(self, data_batch, data_samples) -> None:
        RECORDED.extend(s['pred_scores'] for s in data_samples)
        self.results.extend(data_samples)

    def compute_metrics(self, results) -> dict:
        return {}


def write_image(path, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new('RGB', (16, 16), colour).save(path)


def imagenet_datasets(tmp_path) -> dict:
    """2 train images and 1 val image for each of 3 classes."""
    root = tmp_path / 'imagenet'
    for label, wnid in enumerate(['n01', 'n02', 'n03']):
        for i in range(3):
            split = 'train' if i < 2 else 'val'
            write_image(root / split / wnid / f'{i}.png',
                        COLOURS[2 * label + i])
    (root / 'classnames.txt').write_text('\n'.join(CLASS_NAMES) + '\n')
    return {
        split:
        dict(
            type='ImageFolderClassification',
            data_root=str(root),
            class_names_file='classnames.txt',
            split=split)
        for split in ('train', 'val')
    }


def memes_datasets(tmp_path) -> dict:
    """4 train memes and 4 dev memes, half of each hateful."""
    img_dir = tmp_path / 'img'
    datasets = {}
    for split, ids in (('train', range(4)), ('dev', range(4, 8))):
        lines = []
        for i in ids:
            write_image(img_dir / f'{i:05d}.png', COLOURS[i])
            lines.append(
                json.dumps(
                    dict(
                        id=i,
                        img=f'img/{i:05d}.png',
                        label=i % 2,
                        text=f'meme text {i}')))
        ann = tmp_path / f'{split}.jsonl'
        ann.write_text('\n'.join(lines) + '\n')
        datasets[split] = dict(
            type='HatefulMemesDataset',
            ann_file=str(ann),
            split=split,
            data_prefix=dict(img_path=str(img_dir)))
    return datasets


@pytest.fixture(scope='module')
def model(tokenizer_dir):
    torch.manual_seed(0)
    return init_model(Config(dict(model=tiny_flamingo_config(tokenizer_dir))))


def fewshot_cfg(datasets,
                support,
                query,
                metric=None,
                batch_size=2,
                **settings) -> dict:
    """A few-shot classification test config (test_cfg settings first)."""
    settings = {**dict(shots=[0, 2], num_trials=1), **settings}
    return dict(
        test_dataloader=dict(
            batch_size=batch_size,
            dataset=datasets[query],
            sampler=dict(type='DefaultSampler', shuffle=False)),
        test_evaluator=metric or dict(type='RankClassificationMetric'),
        test_cfg=dict(
            type='FewShotTestLoop',
            task='classification',
            support=datasets[support],
            **settings))


def with_settings(cfg, **settings) -> dict:
    """``cfg`` with other test_cfg settings."""
    return {**cfg, 'test_cfg': {**cfg['test_cfg'], **settings}}


def direct_scores(model, prompt, media, names, **kwargs) -> torch.Tensor:
    """``model.score`` of one prompt, all names in one call."""
    pipeline = Compose(media_pipeline(model.backbone.image_size))
    data = model.data_preprocessor(
        pseudo_collate([pipeline(dict(media=media, text=prompt))]), False)
    data['data_samples'][0].candidates = list(names)
    return model.score(data['images'], data['data_samples'],
                       **kwargs)[0].pred_scores


def check_metrics(summary, names):
    assert [r['shots'] for r in summary['results']] == [0, 2]
    for row in summary['results']:
        assert set(row['mean']) == set(names)
        for value in row['trials'][0]['metrics'].values():
            assert math.isfinite(value) and 0 <= value <= 100


def run_recording_prompts(model, eval_cfg):
    """``evaluate_fewshot``, and the prompts ``model.score`` got."""
    prompts, score = [], model.score

    def recording_score(images, data_samples, **kwargs):
        prompts.extend(s.text for s in data_samples)
        return score(images, data_samples, **kwargs)

    model.score = recording_score
    try:
        return evaluate_fewshot(model, eval_cfg), prompts
    finally:
        del model.score


def test_imagenet_fewshot(tmp_path, model):
    datasets = imagenet_datasets(tmp_path)
    summary, prompts = run_recording_prompts(
        model, fewshot_cfg(datasets, 'train', 'val', candidate_batch_size=2))
    check_metrics(
        summary,
        ['classification/accuracy/top1', 'classification/accuracy/top5'])
    # 3 classes: every query is right at 5
    assert all(r['mean']['classification/accuracy/top5'] == 100
               for r in summary['results'])
    assert summary['num_queries'] == 3 and summary['num_support'] == 6
    # each prompt is run once (2 shot counts x 3 queries), its 3 names in
    # 2 chunks after it
    assert len(prompts) == 6
    # the ImageNet template, demos joined with ''
    assert prompts[-1].endswith('<|endofchunk|><image>Output:')
    assert prompts[-1].count('<image>') == 3
    assert prompts[0].count('<image>') == 1


def test_hateful_memes_fewshot(tmp_path, model):
    datasets = memes_datasets(tmp_path)
    metric = [
        dict(type='RankClassificationMetric', topk=(1, 5)),
        dict(type='ROCAUC')
    ]
    summary, prompts = run_recording_prompts(
        model, fewshot_cfg(datasets, 'train', 'dev', metric=metric))
    check_metrics(summary, [
        'classification/accuracy/top1', 'classification/accuracy/top5',
        'classification/roc_auc'
    ])
    assert prompts[-1].endswith("<image>is an image with: 'meme text 7' "
                                'written on it. Is it hateful? Answer:')
    assert 'Is it hateful? Answer:no<|endofchunk|>' in ''.join(prompts)


def test_scores_match_model_score(tmp_path, model):
    datasets = imagenet_datasets(tmp_path)
    metric = [dict(type='RankClassificationMetric'), dict(type='RecordScores')]

    def runner_scores(**kwargs):
        RECORDED.clear()
        evaluate_fewshot(
            model,
            fewshot_cfg(
                datasets, 'train', 'val', shots=[2], metric=metric, **kwargs))
        return list(RECORDED)

    one_by_one = runner_scores(candidate_batch_size=1)
    all_at_once = runner_scores(candidate_batch_size=3)
    ensembled = runner_scores(num_permutations=2)
    means = runner_scores(score_reduction='mean')

    support_set = DATASETS.build(datasets['train'])
    query_set = DATASETS.build(datasets['val'])
    support = [support_set.get_data_info(i) for i in range(6)]
    queries = [query_set.get_data_info(i) for i in range(3)]
    selector = RandomDemoSelector(
        6,
        seed=0,
        support_keys=[s['sample_id'] for s in support],
        query_keys=[q['sample_id'] for q in queries])
    builder = FewShotPromptBuilder('imagenet')
    assert len(one_by_one) == len(all_at_once) == len(ensembled) == 3
    assert len(means) == 3
    for q, query in enumerate(queries):
        prompt, media, demos = build_query_prompt(builder, selector, support,
                                                  query, q, 2)
        expected = direct_scores(model, prompt, media, CLASS_NAMES)
        assert expected.shape == (3, )
        # The runner scores in batches of queries and of names, here one
        # query with all names: other shapes, which round differently. The
        # sums of fp32 log-probs reach ~70, where an ulp is 8e-6 (they
        # agreed to one ulp where this was written).
        tolerance = dict(rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(one_by_one[q], expected, **tolerance)
        torch.testing.assert_close(all_at_once[q], expected, **tolerance)
        # OpenFlamingo's ranking: the mean log-prob per token of the name
        torch.testing.assert_close(
            means[q],
            direct_scores(model, prompt, media, CLASS_NAMES, reduction='mean'),
            **tolerance)
        lengths = torch.tensor([
            len(model.tokenizer(n, add_special_tokens=False)['input_ids'])
            for n in CLASS_NAMES
        ])
        torch.testing.assert_close(means[q], expected / lengths, **tolerance)
        # 2 demos have 2 orders: as selected, then reversed
        reversed_prompt, reversed_media = builder.build(
            query, [support[i] for i in demos[::-1]], 2)
        other = direct_scores(model, reversed_prompt, reversed_media,
                              CLASS_NAMES)
        assert not torch.allclose(other, expected)
        torch.testing.assert_close(ensembled[q], (expected + other) / 2,
                                   **tolerance)


def test_demo_orders():
    orders = demo_orders(3, 4, seed=0)
    assert orders[0] == [0, 1, 2] and len(orders) == 4
    assert len({tuple(o) for o in orders}) == 4
    assert all(sorted(o) == [0, 1, 2] for o in orders)
    assert orders == demo_orders(3, 4, seed=0)
    assert len(demo_orders(2, 6, seed=0)) == 2
    assert demo_orders(5, 1, seed=0) == [[0, 1, 2, 3, 4]]


def test_candidate_prefix_is_scored_before_each_name(tmp_path, model):
    """candidate_prefix=' ' scores ' goldfish' where 'goldfish' was scored:
    the names reach model.score with the prefix, the prompts (whose demos
    show the support's class names) are unchanged, and the scores equal
    those of class names written with a leading space, and model.score's
    own scores of them."""
    datasets = imagenet_datasets(tmp_path)
    metric = [dict(type='RankClassificationMetric'), dict(type='RecordScores')]

    def run(**kwargs):
        RECORDED.clear()
        scored, score = [], model.score

        def recording_score(images, data_samples, **score_kwargs):
            scored.extend((s.text, list(s.candidates)) for s in data_samples)
            return score(images, data_samples, **score_kwargs)

        model.score = recording_score
        try:
            evaluate_fewshot(
                model,
                fewshot_cfg(
                    datasets,
                    'train',
                    'val',
                    shots=[2],
                    metric=metric,
                    **kwargs))
        finally:
            del model.score
        return list(RECORDED), scored

    spaced = [' ' + name for name in CLASS_NAMES]
    prefixed, prefixed_calls = run(candidate_prefix=' ')
    written, written_calls = run(class_names=spaced)
    plain, plain_calls = run()
    assert len(prefixed) == len(written) == len(plain) == 3
    assert [c for _, c in prefixed_calls] == [spaced] * 3
    assert [c for _, c in plain_calls] == [CLASS_NAMES] * 3
    assert prefixed_calls == written_calls
    # the prefix touches the candidates only
    assert [p for p, _ in prefixed_calls] == [p for p, _ in plain_calls]
    for prompt, _ in prefixed_calls:
        assert sum(
            prompt.count(f'Output:{name}<|endofchunk|>')
            for name in CLASS_NAMES) == 2
        assert 'Output: ' not in prompt
    for with_prefix, with_space, without in zip(prefixed, written, plain):
        torch.testing.assert_close(with_prefix, with_space, rtol=0, atol=0)
        assert not torch.allclose(with_prefix, without)

    support_set = DATASETS.build(datasets['train'])
    query_set = DATASETS.build(datasets['val'])
    support = [support_set.get_data_info(i) for i in range(6)]
    query = query_set.get_data_info(0)
    selector = RandomDemoSelector(
        6,
        seed=0,
        support_keys=[s['sample_id'] for s in support],
        query_keys=[query_set.get_data_info(i)['sample_id'] for i in range(3)])
    prompt, media, _ = build_query_prompt(
        FewShotPromptBuilder('imagenet'), selector, support, query, 0, 2)
    # one query with all names: another batch shape (see
    # test_scores_match_model_score)
    torch.testing.assert_close(
        prefixed[0],
        direct_scores(model, prompt, media, spaced),
        rtol=1e-5,
        atol=1e-5)


def test_intervals_of_the_per_sample_metrics(tmp_path, model):
    """A result row has a 95% interval for each metric that scores every
    sample (the top-k accuracies), the bootstrap of the trials' per-sample
    scores, holding the mean; ROC AUC, a statistic of the whole set, has
    none, and its markdown cell shows none."""
    datasets = memes_datasets(tmp_path)
    metric = [
        dict(type='RankClassificationMetric', topk=(1, 5)),
        dict(type='ROCAUC')
    ]
    summary = evaluate_fewshot(
        model, fewshot_cfg(datasets, 'train', 'dev', metric=metric))
    accuracies = [
        'classification/accuracy/top1', 'classification/accuracy/top5'
    ]
    for row in summary['results']:
        assert set(row['ci95']) == set(accuracies)
        assert 'classification/roc_auc' in row['mean']
        for name in accuracies:
            table = [t['sample_scores'][name] for t in row['trials']]
            assert [len(scores) for scores in table] == [4]
            assert all(s in (0., 100.) for s in table[0])
            assert row['trials'][0]['metrics'][name] == pytest.approx(
                sum(table[0]) / 4)
            low, high = row['ci95'][name]
            assert [low, high] == list(bootstrap_ci(table))
            assert low <= row['mean'][name] <= high
        # 2 classes: every sample is right at 5
        assert row['ci95']['classification/accuracy/top5'] == [100., 100.]
    table = format_markdown(summary)
    for row in summary['results']:
        line = next(line for line in table.splitlines()
                    if line.startswith(f"| {row['shots']} | "))
        cells = line.strip('|').split('|')[1:]
        names = list(row['mean'])
        for name, cell in zip(names, cells):
            if name in row['ci95']:
                low, high = row['ci95'][name]
                assert cell.strip().endswith(f'[{low:.1f}, {high:.1f}]')
            else:
                assert '[' not in cell


def write_moving_square(path, colour, num_frames=3, size=32):
    """A clip of a square of ``colour`` moving right, one frame a second."""
    frames = []
    for t in range(num_frames):
        frame = np.full((size, size, 3), 255, dtype=np.uint8)
        frame[8:24, 6 * t:6 * t + 12] = colour
        frames.append(frame)
    write_video(str(path), frames)


def video_datasets(tmp_path) -> dict:
    """4 train and 2 val clips, each asked which way its square moves."""
    datasets = {}
    for split, ids in (('train', range(4)), ('val', range(4, 6))):
        questions, annotations = [], []
        for i in ids:
            write_moving_square(tmp_path / f'{i}.mp4', COLOURS[i])
            questions.append(
                dict(
                    question_id=i,
                    image_id=i,
                    question='Which way?',
                    multiple_choices=['left', 'right']))
            answer = 'right' if i % 2 else 'left'
            annotations.append(
                dict(
                    question_id=i,
                    multiple_choice_answer=answer,
                    answers=[dict(answer=answer)] * 10))
        for name, key, rows in (('q', 'questions', questions),
                                ('a', 'annotations', annotations)):
            path = tmp_path / f'{name}_{split}.json'
            path.write_text(json.dumps({key: rows}))
        datasets[split] = dict(
            type='VQADataset',
            question_file=str(tmp_path / f'q_{split}.json'),
            annotation_file=str(tmp_path / f'a_{split}.json'),
            image_name='{image_id}.mp4',
            split=split,
            data_prefix=dict(img_path=str(tmp_path)))
    return datasets


def test_media_pipeline_loads_video_queries(tmp_path, model):
    """With media_pipeline (LoadVideoFrames) every clip of a prompt is 3
    decoded frames: the scores, with and without the visual-token cache,
    are model.score's on the prompt packed by that pipeline. The default
    image pipeline cannot read the clips."""
    datasets = video_datasets(tmp_path)
    size = model.backbone.image_size
    video_pipeline = [
        dict(type='LoadVideoFrames', num_frames=3),
        dict(type='ResizeMedia', size=size),
        dict(type='PackFlamingoInputs'),
    ]
    cfg = fewshot_cfg(
        datasets,
        'train',
        'val',
        shots=[2],
        prompt=dict(task='vqa'),
        metric=[
            dict(type='RankClassificationMetric', topk=1),
            dict(type='RecordScores')
        ])
    with pytest.raises(ValueError, match=r'cannot read image .*\.mp4'):
        evaluate_fewshot(model, cfg)
    with pytest.raises(ValueError, match=r'cannot read image .*\.mp4'):
        evaluate_fewshot(model, with_settings(cfg, cache_media=False))

    runs = []
    for cache_media in (True, False):
        RECORDED.clear()
        evaluate_fewshot(
            model,
            with_settings(
                cfg, media_pipeline=video_pipeline, cache_media=cache_media))
        runs.append(list(RECORDED))

    support_set = DATASETS.build(datasets['train'])
    query_set = DATASETS.build(datasets['val'])
    support = [support_set.get_data_info(i) for i in range(4)]
    queries = [query_set.get_data_info(i) for i in range(2)]
    selector = RandomDemoSelector(
        4,
        seed=0,
        support_keys=[s['sample_id'] for s in support],
        query_keys=[q['sample_id'] for q in queries])
    builder = FewShotPromptBuilder('vqa')
    pipeline = Compose(video_pipeline)
    for q, query in enumerate(queries):
        prompt, media, _ = build_query_prompt(builder, selector, support,
                                              query, q, 2)
        assert media[-1] == query['media'][0]
        assert media[-1].endswith(f"{query['image_id']}.mp4")
        data = model.data_preprocessor(
            pseudo_collate([pipeline(dict(media=media, text=prompt))]), False)
        assert data['images'].shape == (1, 3, 3, 3, size, size)
        data['data_samples'][0].candidates = ['left', 'right']
        expected = model.score(data['images'],
                               data['data_samples'])[0].pred_scores
        for run in runs:
            torch.testing.assert_close(run[q], expected, rtol=1e-5, atol=1e-5)


def test_test_tool_classifies(tmp_path, tokenizer_dir):
    """tools/test.py ranks ImageNet-style class names through the Runner,
    by OpenFlamingo's mean per token when asked."""
    datasets = imagenet_datasets(tmp_path)
    cfg = dict(
        model=tiny_flamingo_config(tokenizer_dir),
        **fewshot_cfg(
            datasets,
            'train',
            'val',
            metric=[
                dict(type='RankClassificationMetric'),
                dict(type='RecordScores')
            ],
            candidate_batch_size=2,
            num_trials=2))
    config_file = tmp_path / 'tiny_imagenet.py'
    config_file.write_text('\n'.join(f'{k} = {v!r}' for k, v in cfg.items()))
    scores = {}
    for reduction in ('sum', 'mean'):
        work_dir = str(tmp_path / f'work_dir_{reduction}')
        RECORDED.clear()
        summary = load_tool(TOOL).main([
            str(config_file), 'none', '--work-dir', work_dir, '--cfg-options',
            f'test_cfg.score_reduction={reduction}'
        ])
        scores[reduction] = torch.stack(RECORDED)
        with open(osp.join(work_dir, 'fewshot_results.json')) as f:
            assert json.load(f) == summary
        check_metrics(
            summary,
            ['classification/accuracy/top1', 'classification/accuracy/top5'])
        assert [len(row['trials']) for row in summary['results']] == [2, 2]
    # 3 queries x 2 shot counts x 2 trials, each name's score the sum of its
    # tokens' log-probs, or their mean (the same model: seeded the same)
    assert scores['sum'].shape == (12, 3)
    tokenizer = init_model(Config(cfg)).tokenizer
    lengths = torch.tensor([
        len(tokenizer(name, add_special_tokens=False)['input_ids'])
        for name in CLASS_NAMES
    ])
    assert lengths.tolist() != [lengths[0]] * 3
    torch.testing.assert_close(
        scores['mean'], scores['sum'] / lengths, rtol=1e-6, atol=1e-6)
