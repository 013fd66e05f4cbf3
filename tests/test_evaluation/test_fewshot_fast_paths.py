"""Few-shot evaluation's visual-token cache, multi-process runs and
multiple-choice queries with grouped demos (an in-context binding task)."""
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from PIL import Image
from test_fewshot import (COLOURS, TOOL, karpathy_datasets, override,
                          tiny_config, write_json)

from mmflamingo.apis import evaluate_fewshot, init_model
from mmflamingo.datasets.transforms import media_pipeline
from mmflamingo.engine.runner import fewshot_loop
from mmflamingo.evaluation import pack_inputs, score_class_names
from mmflamingo.evaluation.demo_selection import (RandomDemoSelector,
                                                  RICESSelector)
from mmflamingo.evaluation.media_cache import VisualTokenCache
from mmflamingo.registry import DATASETS


class RecordingCache(VisualTokenCache):
    """Records the media asked for and the media encoded."""
    asked, encoded = [], []

    def __call__(self, media):
        self.asked.extend(m for ms in media for m in ms)
        return super().__call__(media)

    def _encode(self, media):
        self.encoded.extend(media)
        return super()._encode(media)


def test_cache_encodes_each_image_once(tmp_path, tokenizer_dir, monkeypatch):
    datasets = karpathy_datasets(tmp_path)
    cfg = tiny_config(
        tokenizer_dir,
        'caption',
        datasets['train'],
        datasets['test'],
        media_batch_size=4)
    model = init_model(Config(cfg))
    plain = evaluate_fewshot(model, override(cfg, cache_media=False))
    monkeypatch.setattr(fewshot_loop, 'VisualTokenCache', RecordingCache)
    batch_shapes, extract = [], model.extract_media

    def recording_extract(images):
        batch_shapes.append(tuple(images.shape[:2]))
        return extract(images)

    model.extract_media = recording_extract
    cached = evaluate_fewshot(model, cfg)
    # the same predictions, scores and files as without the cache
    assert cached == plain
    # 2 shot counts x 2 trials ask for many images, each encoded once, in
    # forwards of exactly media_batch_size (the last chunk padded)
    assert len(RecordingCache.asked) > len(set(RecordingCache.asked))
    assert sorted(RecordingCache.encoded) == sorted(set(RecordingCache.asked))
    assert batch_shapes and set(batch_shapes) == {(4, 1)}


def test_cached_tokens_equal_direct_encoding(tmp_path, tokenizer_dir):
    datasets = karpathy_datasets(tmp_path)
    cfg = tiny_config(tokenizer_dir, 'caption', datasets['train'],
                      datasets['test'])
    model = init_model(Config(cfg))
    paths = [str(tmp_path / f'{i}.jpg') for i in range(5)]
    pipeline = Compose(media_pipeline(model.backbone.image_size))
    cache = VisualTokenCache(model, pipeline, batch_size=3)
    tokens = cache([paths[:2], paths[2:5], [paths[0]]])  # (3, 3, L, D)
    assert cache.num_encoded == 5 and len(cache) == 5
    data = pack_inputs(model, pipeline, ['<image>' * 3], [paths[2:5]])
    direct = model.extract_media(data['images'])[0]
    # encoded in batches of 3 images across samples, against the 3 of one
    # sample: other batches, which may round differently (fp32 tokens up
    # to ~2.5, equal where this was written)
    torch.testing.assert_close(tokens[1], direct, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tokens[2, 0], tokens[0, 0])
    assert tokens[0, 2].abs().sum() == 0 and tokens[2, 1:].abs().sum() == 0
    # in-memory media are encoded, not cached
    array = torch.zeros(32, 32, 3, dtype=torch.uint8).numpy()
    cache([[array]])
    assert cache.num_encoded == 6 and len(cache) == 5
    with pytest.raises(ValueError, match='batch_size'):
        VisualTokenCache(model, None, batch_size=0)


def test_distributed_equals_single_process(tmp_path, tokenizer_dir):
    datasets = karpathy_datasets(tmp_path)
    cfg = tiny_config(
        tokenizer_dir,
        'caption',
        datasets['train'],
        datasets['test'],
        batch_size=1,
        num_trials=1)
    config_file = tmp_path / 'tiny_fewshot.py'
    config_file.write_text('\n'.join(f'{k} = {v!r}' for k, v in cfg.items()))
    summaries = []
    for nproc in (1, 2):
        work_dir = str(tmp_path / f'work_dir{nproc}')
        launch = [sys.executable, TOOL] if nproc == 1 else [
            sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node',
            '2', '--master_port',
            str(29500 + (hash(str(tmp_path)) % 1000)), TOOL
        ]
        args = [str(config_file), 'none', '--work-dir', work_dir]
        if nproc > 1:
            args += ['--launcher', 'pytorch']
        # in tmp_path: mmengine's collect_results writes to ./.dist_test
        result = subprocess.run(
            launch + args,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=str(tmp_path))
        assert result.returncode == 0, result.stderr[-3000:]
        assert f'({nproc} process(es))' in result.stdout
        with open(osp.join(work_dir, 'fewshot_results.json')) as f:
            summaries.append(json.load(f))
    assert summaries[0] == summaries[1]
    assert summaries[0]['num_queries'] == 3


def test_selectors_keep_demos_in_the_query_group():
    support_groups = ['a', 'b', 'a', 'b', 'a', 'c']
    random = RandomDemoSelector(
        6, seed=1, support_groups=support_groups, query_groups=['a', 'b'])
    for seed_query in range(2):
        group = ['a', 'b'][seed_query]
        demos = random.select(seed_query, 2)
        assert all(support_groups[i] == group for i in demos)
    with pytest.raises(ValueError, match='only 2 usable'):
        random.select(1, 3)
    features = torch.eye(6)
    rices = RICESSelector(
        features,
        features[[5, 0]],  # most like support 5 (group c), then support 0
        support_groups=support_groups,
        query_groups=['a', 'a'])
    assert 5 not in rices.select(0, 3)
    assert rices.select(1, 3)[-1] == 0
    with pytest.raises(ValueError, match='go together'):
        RandomDemoSelector(6, support_groups=support_groups)


def binding_datasets(tmp_path) -> dict:
    """Episodes of 2 or 3 invented names in the VQA multiple-choice format:
    each episode's support samples reveal which colour has which name."""
    names = [['dax', 'wug'], ['blick', 'fep'], ['zup', 'tove', 'mip']]
    splits = dict(train=([], []), val=([], []))
    qid = 0
    for episode, episode_names in enumerate(names):
        for k in range(3):
            for j, name in enumerate(episode_names):
                image_id = qid
                Image.new('RGB', (32, 32),
                          COLOURS[j]).save(tmp_path / f'{image_id}.jpg')
                split = 'val' if k == 2 else 'train'
                splits[split][0].append(
                    dict(
                        question_id=qid,
                        image_id=image_id,
                        question='What is this called?',
                        episode=episode,
                        multiple_choices=episode_names))
                splits[split][1].append(
                    dict(
                        question_id=qid,
                        multiple_choice_answer=name,
                        answers=[dict(answer=name)] * 10))
                qid += 1
    return {
        split:
        dict(
            type='VQADataset',
            question_file=write_json(tmp_path / f'q_{split}.json',
                                     dict(questions=q)),
            annotation_file=write_json(tmp_path / f'a_{split}.json',
                                       dict(annotations=a)),
            split=split,
            data_prefix=dict(img_path=str(tmp_path)))
        for split, (q, a) in splits.items()
    }


def test_multiple_choice_queries_with_grouped_demos(tmp_path, tokenizer_dir):
    datasets = binding_datasets(tmp_path)
    queries = DATASETS.build(datasets['val'])
    infos = [queries.get_data_info(i) for i in range(len(queries))]
    assert [i['label'] for i in infos] == [0, 1, 0, 1, 0, 1, 2]
    assert infos[2]['episode'] == 1
    assert infos[2]['multiple_choices'] == ['blick', 'fep']
    cfg = tiny_config(
        tokenizer_dir,
        'vqa',
        datasets['train'],
        datasets['val'],
        shots=[0, 4],
        num_trials=1,
        demo_group_key='episode',
        prompt=dict(task='vqa'),
        metric=dict(type='RankClassificationMetric', topk=1))
    cfg['test_cfg']['task'] = 'classification'
    model = init_model(Config(cfg))
    scored, score = [], model.score

    def recording_score(images, data_samples, **kwargs):
        scored.extend((s.text, list(s.candidates)) for s in data_samples)
        return score(images, data_samples, **kwargs)

    model.score = recording_score
    summary = evaluate_fewshot(model, cfg)
    accuracy = summary['results'][1]['mean']['classification/accuracy/top1']
    assert 0 <= accuracy <= 100
    assert len(scored) == 2 * 7
    for (prompt, candidates), info in zip(scored[7:], infos):
        # each query ranks its own episode's names, after 4 demos of that
        # episode
        choices = info['multiple_choices']
        assert candidates == choices
        assert prompt.endswith('Question:What is this called? Short answer:')
        assert sum(
            prompt.count(f'Short answer:{name}<|endofchunk|>')
            for name in choices) == 4
    with pytest.raises(KeyError, match="demo_group_key is 'round'"):
        evaluate_fewshot(model, override(cfg, demo_group_key='round'))


def test_score_class_names_of_unequal_counts(tmp_path, tokenizer_dir):
    datasets = karpathy_datasets(tmp_path)
    cfg = tiny_config(tokenizer_dir, 'caption', datasets['train'],
                      datasets['test'])
    model = init_model(Config(cfg))
    pipeline = Compose(media_pipeline(model.backbone.image_size))
    media = [[str(tmp_path / '0.jpg')], [str(tmp_path / '1.jpg')]]
    prompts = ['<image>Output:'] * 2
    names = [['dax', 'wug'], ['dax', 'wug', 'zup']]
    scores = score_class_names(model, pipeline, prompts, media, names, 2)
    assert scores.shape == (2, 3)
    assert scores[0, 2] == -float('inf') and scores[1].isfinite().all()
    # the same as scoring each prompt's own names alone
    alone = score_class_names(model, pipeline, prompts[:1], media[:1],
                              names[0], 2)
    # another batch shape, which may round differently: sums of fp32
    # log-probs up to ~20 (equal where this was written)
    torch.testing.assert_close(scores[0, :2], alone[0], rtol=1e-4, atol=1e-4)
