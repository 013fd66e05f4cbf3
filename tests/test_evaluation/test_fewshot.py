"""Few-shot evaluation (the FewShotTestLoop, tools/test.py) on a tiny
Flamingo and tiny COCO-Karpathy and VQA files written here."""
import glob
import importlib.util
import json
import math
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmpretrain.structures import DataSample
from PIL import Image

from mmflamingo.apis import evaluate_fewshot, init_model
from mmflamingo.evaluation import (FewShotPromptBuilder, RandomDemoSelector,
                                   build_query_prompt, demo_selection,
                                   save_rices_features, to_metric_sample)
from mmflamingo.registry import DATASETS
from mmflamingo.testing import tiny_flamingo_config

TOOL = osp.join(osp.dirname(__file__), '..', '..', 'tools', 'test.py')
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255),
           (255, 0, 255), (128, 128, 128), (0, 0, 0), (255, 255, 255)]


def write_json(path, data) -> str:
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(data, f)
    return str(path)


def karpathy_datasets(tmp_path) -> dict:
    """6 train and 3 test images, 5 captions each."""
    images = []
    for i, colour in enumerate(COLOURS):
        Image.new('RGB', (40, 48), colour).save(tmp_path / f'{i}.jpg')
        images.append(
            dict(
                filename=f'{i}.jpg',
                split='train' if i < 6 else 'test',
                cocoid=i,
                sentences=[
                    dict(raw=f'a photo of a shape {i} {j}.') for j in range(5)
                ]))
    ann = write_json(tmp_path / 'dataset_coco.json', dict(images=images))
    return {
        split:
        dict(
            type='KarpathyCaptionDataset',
            ann_file=ann,
            split=split,
            data_prefix=dict(img_path=str(tmp_path)))
        for split in ('train', 'test')
    }


def vqa_datasets(tmp_path) -> dict:
    """A train split of 4 questions and a val split of 2."""
    datasets = {}
    for split, ids in (('train', range(4)), ('val', range(4, 6))):
        questions, annotations = [], []
        for i in ids:
            Image.new('RGB', (32, 32), COLOURS[i]).save(tmp_path / f'{i}.jpg')
            questions.append(
                dict(question_id=10 * i, image_id=i, question=f'shape {i}?'))
            annotations.append(
                dict(
                    question_id=10 * i,
                    answers=[
                        dict(answer='red' if j < 5 else f'colour {i}')
                        for j in range(10)
                    ]))
        datasets[split] = dict(
            type='VQADataset',
            question_file=write_json(tmp_path / f'q_{split}.json',
                                     dict(questions=questions)),
            annotation_file=write_json(tmp_path / f'a_{split}.json',
                                       dict(annotations=annotations)),
            split=split,
            data_prefix=dict(img_path=str(tmp_path)))
    return datasets


def fewshot_config(task,
                   support,
                   query,
                   metric,
                   batch_size=2,
                   **settings) -> dict:
    """The three keys of a few-shot test config."""
    return dict(
        test_dataloader=dict(
            batch_size=batch_size,
            dataset=query,
            sampler=dict(type='DefaultSampler', shuffle=False)),
        test_evaluator=metric,
        test_cfg=dict(
            type='FewShotTestLoop', task=task, support=support, **settings))


def tiny_config(tokenizer_dir, task, support, query, **settings) -> dict:
    """A tiny model and its few-shot config; ``settings`` override the
    test_cfg's (``metric``, ``batch_size``: the evaluator's and the
    dataloader's)."""
    model = tiny_flamingo_config(tokenizer_dir)
    model.update(task=task, generation_cfg=dict(max_new_tokens=3, num_beams=1))
    settings = {**dict(shots=[0, 2], num_trials=2, seed=0), **settings}
    metric = settings.pop(
        'metric',
        dict(type='CaptionMetric' if task == 'caption' else 'VQAAccuracy'))
    return dict(
        model=model,
        **fewshot_config(task, support, query, metric, **settings))


def override(cfg,
             query=None,
             metric=None,
             batch_size=None,
             **settings) -> dict:
    """``cfg`` with other test_cfg settings, query set, metrics or batch
    size."""
    cfg = dict(cfg)
    cfg['test_cfg'] = {**cfg['test_cfg'], **settings}
    loader = dict(cfg['test_dataloader'])
    if query is not None:
        loader['dataset'] = query
    if batch_size is not None:
        loader['batch_size'] = batch_size
    cfg['test_dataloader'] = loader
    if metric is not None:
        cfg['test_evaluator'] = metric
    return cfg


def record_prompts(model) -> list:
    """Make ``model.predict`` append the prompts it gets to a list."""
    prompts, predict = [], model.predict

    def recording_predict(images, data_samples, **kwargs):
        prompts.extend(s.text for s in data_samples)
        return predict(images, data_samples, **kwargs)

    model.predict = recording_predict
    return prompts


def check_results(summary, work_dir, metric_name, shots, num_trials):
    with open(osp.join(work_dir, 'fewshot_results.json')) as f:
        written = json.load(f)
    assert written == summary
    assert [r['shots'] for r in summary['results']] == shots
    for row in summary['results']:
        assert len(row['trials']) == num_trials
        assert set(row['mean']) == set(row['std']) == {metric_name}
        values = [row['mean'][metric_name], row['std'][metric_name]]
        values += [t['metrics'][metric_name] for t in row['trials']]
        assert all(math.isfinite(v) and 0 <= v <= 100 for v in values)
    with open(osp.join(work_dir, 'fewshot_results.md')) as f:
        table = f.read()
    assert f'| shots | {metric_name} |' in table
    for s in shots:
        assert f'\n| {s} | ' in table
    # the score-vs-shots plot (matplotlib is in requirements/optional.txt)
    with open(osp.join(work_dir, 'fewshot_results.png'), 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_caption_fewshot(tmp_path, tokenizer_dir):
    datasets = karpathy_datasets(tmp_path)
    cfg = tiny_config(tokenizer_dir, 'caption', datasets['train'],
                      datasets['test'])
    model = init_model(Config(cfg))
    prompts = record_prompts(model)
    work_dir = str(tmp_path / 'work_dir')
    summary = evaluate_fewshot(model, cfg, work_dir)
    check_results(summary, work_dir, 'caption/CIDEr', [0, 2], 2)
    assert summary['num_support'] == 6 and summary['num_queries'] == 3

    # the prompts follow FewShotPromptBuilder and the trial's demos: shot
    # counts, then trials, then queries, in predict order
    support = DATASETS.build(datasets['train'])
    query = DATASETS.build(datasets['test'])
    support_infos = [support.get_data_info(i) for i in range(len(support))]
    query_infos = [query.get_data_info(i) for i in range(len(query))]
    builder = FewShotPromptBuilder('caption')
    assert len(prompts) == 2 * 2 * 3
    demos_of_trial = []
    for trial in range(2):
        selector = RandomDemoSelector(
            6,
            seed=trial,
            support_keys=[s['sample_id'] for s in support_infos],
            query_keys=[q['sample_id'] for q in query_infos])
        demos = []
        for q, info in enumerate(query_infos):
            indices = selector.select(q, 2)
            expected, media = builder.build(
                info, [support_infos[i] for i in indices], 2)
            assert prompts[3 * (2 + trial) + q] == expected
            assert build_query_prompt(builder, selector, support_infos, info,
                                      q, 2) == (expected, media, indices)
            assert media[-1] == info['media'][0]
            demos.append(indices)
        demos_of_trial.append(demos)
    assert demos_of_trial[0] != demos_of_trial[1]
    # 0 shots: two text-only demos, only the query's image
    assert all(p.count('<image>') == 1 for p in prompts[:6])
    assert all(p.count('<image>') == 3 for p in prompts[6:])


def test_vqa_fewshot(tmp_path, tokenizer_dir):
    datasets = vqa_datasets(tmp_path)
    cfg = tiny_config(tokenizer_dir, 'vqa', datasets['train'], datasets['val'])
    model = init_model(Config(cfg))
    prompts = record_prompts(model)
    work_dir = str(tmp_path / 'work_dir')
    summary = evaluate_fewshot(model, cfg, work_dir)
    check_results(summary, work_dir, 'vqa/accuracy', [0, 2], 2)
    assert prompts[-1].endswith('Question:shape 5? Short answer:')
    assert 'Short answer:red<|endofchunk|>' in prompts[-1]


def test_vqa_answers_exported_per_run(tmp_path, tokenizer_dir):
    """A format_only metric writes EvalAI answers for every shots/trial."""
    datasets = vqa_datasets(tmp_path)
    prefix = str(tmp_path / 'exports' / 'vqav2_answers')
    metrics = [
        dict(type='VQAAccuracy'),
        dict(type='VQAAccuracy', format_only=True, outfile_prefix=prefix)
    ]
    cfg = tiny_config(
        tokenizer_dir,
        'vqa',
        datasets['train'],
        datasets['val'],
        metric=metrics,
        num_trials=1)
    model = init_model(Config(cfg))
    evaluate_fewshot(model, cfg)
    queries = DATASETS.build(datasets['val'])
    question_ids = {
        queries.get_data_info(i)['question_id']
        for i in range(len(queries))
    }
    assert question_ids
    for shots in (0, 2):
        with open(f'{prefix}_{shots}shot_trial0.json') as f:
            answers = json.load(f)
        assert {a['question_id'] for a in answers} == question_ids
        assert all(
            isinstance(a['question_id'], int) and isinstance(a['answer'], str)
            for a in answers)


def test_vqa_metric_sample():
    """The generation is post-processed as answer_postprocess names; the
    metric gets the annotation's records."""
    records = [dict(answer='washington dc', answer_confidence='yes')] * 10
    query = dict(
        question_id=3,
        answers=['washington dc'] * 10,
        answer_records=records,
        answer_type='other')
    prediction = DataSample(pred_answer='washington, dc Question: where?')
    assert to_metric_sample('vqa', query, prediction) == dict(
        pred_answer='washington',
        question_id=3,
        gt_answer=records,
        answer_type='other')
    for mode, answer in (('no_comma_cut', 'washington, dc'),
                         (None, prediction.pred_answer)):
        sample = to_metric_sample('vqa', query, prediction, mode)
        assert sample['pred_answer'] == answer
    del query['answer_records']
    sample = to_metric_sample('vqa', query, prediction)
    assert sample['gt_answer'] == query['answers']


def test_fewshot_errors(tmp_path, tokenizer_dir):
    datasets = vqa_datasets(tmp_path)
    cfg = tiny_config(tokenizer_dir, 'vqa', datasets['train'], datasets['val'])
    model = init_model(Config(cfg))
    with pytest.raises(ValueError, match='8-shot .* only 4 samples'):
        evaluate_fewshot(model, override(cfg, shots=[8]))
    # 4 support samples, but a query is never its own demo: the selector's
    # error reaches the caller
    same = override(cfg, shots=[4], query=datasets['train'])
    with pytest.raises(ValueError, match='only 3 usable samples'):
        evaluate_fewshot(model, same)
    incomplete = dict(cfg)
    del incomplete['test_evaluator']
    with pytest.raises(KeyError, match="'test_evaluator'"):
        evaluate_fewshot(model, incomplete)
    with pytest.raises(ValueError, match="model.task='caption'"):
        evaluate_fewshot(model, override(cfg, task='caption'))
    with pytest.raises(ValueError, match="answer_postprocess.*'okvqa'"):
        evaluate_fewshot(model, override(cfg, answer_postprocess='okvqa'))
    # the old place of the metric
    old = {
        **cfg, 'test_cfg': {
            **cfg['test_cfg'], 'metric': cfg['test_evaluator']
        }
    }
    with pytest.raises(
            KeyError, match=r"unknown key\(s\) \['metric'\].*evaluator"):
        evaluate_fewshot(model, old)
    with pytest.raises(ValueError, match="score_reduction must be 'sum' or"):
        evaluate_fewshot(model, override(cfg, score_reduction='max'))


def load_tool(path):
    spec = importlib.util.spec_from_file_location('test_tool', path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_test_tool(tmp_path, tokenizer_dir):
    """tools/test.py runs the Runner's test loop: it loads the checkpoint
    (load_from), writes the results to the work dir and the Runner's logs,
    with each shot count's scores as the visualizer's scalars (step: the
    shot count), to its log dir."""
    datasets = vqa_datasets(tmp_path)
    cfg = tiny_config(
        tokenizer_dir,
        'vqa',
        datasets['train'],
        datasets['val'],
        shots=[0, 4, 8],
        num_trials=3)
    config_file = tmp_path / 'tiny_fewshot.py'
    config_file.write_text('\n'.join(f'{k} = {v!r}' for k, v in cfg.items()))
    checkpoint = str(tmp_path / 'trained.pth')
    torch.save(
        dict(state_dict=init_model(Config(cfg)).state_dict()), checkpoint)
    work_dir = str(tmp_path / 'work_dir')
    result = subprocess.run([
        sys.executable, TOOL,
        str(config_file), checkpoint, '--work-dir', work_dir, '--shots', '0',
        '2', '--num-trials', '1'
    ],
                            capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(osp.join(work_dir, 'fewshot_results.json')) as f:
        summary = json.load(f)
    check_results(summary, work_dir, 'vqa/accuracy', [0, 2], 1)
    assert '| shots | vqa/accuracy |' in result.stdout
    assert f'Load checkpoint from {checkpoint}' in result.stdout
    scalars = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    assert len(scalars) == 1
    with open(scalars[0]) as f:
        rows = [json.loads(line) for line in f]
    assert [row['step'] for row in rows] == [0, 2]
    for row, result_row in zip(rows, summary['results']):
        assert row['vqa/accuracy'] == result_row['mean']['vqa/accuracy']
        assert row['vqa/accuracy_std'] == 0

    # a config of the old layout is refused, saying where its keys go
    old_file = tmp_path / 'old_fewshot.py'
    old_file.write_text(
        f"model = {cfg['model']!r}\nfewshot_eval = dict(task='vqa')")
    with pytest.raises(
            KeyError,
            match='`fewshot_eval` is no longer read.*'
            "type='FewShotTestLoop'"):
        load_tool(TOOL).main([str(old_file), 'none'])


def test_rices_demos_reach_the_prompts(tmp_path, tokenizer_dir, monkeypatch):
    """With RICES the prompt holds the most similar support samples, the
    most similar last, the same in every trial."""
    datasets = karpathy_datasets(tmp_path)
    # support ids 0..5, query ids 6..8; one axis per support sample, and
    # each query leans most on one support sample, then on another
    support = torch.eye(6)
    query = torch.zeros(3, 6)
    for row, (best, second) in enumerate([(4, 1), (0, 5), (2, 3)]):
        query[row, best], query[row, second] = 0.8, 0.6
    save_rices_features(
        str(tmp_path / 'support.pth'), support, list(range(6)), 'test')
    save_rices_features(str(tmp_path / 'query.pth'), query, [6, 7, 8], 'test')
    cfg = tiny_config(
        tokenizer_dir,
        'caption',
        datasets['train'],
        datasets['test'],
        shots=[2],
        demo_selection='rices',
        rices_support_features=str(tmp_path / 'support.pth'),
        rices_query_features=str(tmp_path / 'query.pth'))
    model = init_model(Config(cfg))
    prompts = record_prompts(model)
    summary = evaluate_fewshot(model, cfg)
    # 2 trials of the same demos: the 3 queries are predicted once, and
    # scored for each trial; each demo caption names its support image
    assert len(prompts) == 3
    for prompt, (best, second) in zip(prompts, [(4, 1), (0, 5), (2, 3)]):
        assert prompt.index(f'shape {second} 0.') < prompt.index(
            f'shape {best} 0.')
        assert prompt.count('<image>') == 3
    first, second = summary['results'][0]['trials']
    assert (first['seed'], second['seed']) == (0, 1)
    assert first['metrics'] == second['metrics']
    assert first['sample_scores'] == second['sample_scores']
    # sampled generations differ between trials: predicted again
    model.generation_cfg = dict(model.generation_cfg, do_sample=True)
    evaluate_fewshot(model, cfg)
    assert len(prompts) == 3 + 6

    # the two feature files are read once per run, whatever the shot counts
    # and trials
    loaded = []
    load = demo_selection.load_rices_features

    def recording_load(path, *args, **kwargs):
        loaded.append(osp.basename(path))
        return load(path, *args, **kwargs)

    monkeypatch.setattr(demo_selection, 'load_rices_features', recording_load)
    evaluate_fewshot(model, override(cfg, shots=[1, 2], num_trials=3))
    assert sorted(loaded) == ['query.pth', 'support.pth']


def answer_with(model, choose):
    """Make ``model.predict`` answer ``choose(prompt)`` to every prompt."""
    predict = model.predict

    def answering_predict(images, data_samples, **kwargs):
        predictions = predict(images, data_samples, **kwargs)
        for sample, prediction in zip(data_samples, predictions):
            prediction.pred_answer = choose(sample.text)
        return predictions

    model.predict = answering_predict


def test_results_carry_bootstrap_intervals(tmp_path, tokenizer_dir):
    """Each result row has ci95, the bootstrap interval over the trials'
    per-question scores (kept with each trial): the 2 questions score 50
    and 0 in both trials, so a replicate's mean is 0 when it draws the
    second question twice (1 in 4), 50 when it draws the first one twice:
    the interval is [0, 50] around the mean 25. The json and the markdown
    table have it."""
    datasets = vqa_datasets(tmp_path)
    cfg = tiny_config(tokenizer_dir, 'vqa', datasets['train'], datasets['val'])
    model = init_model(Config(cfg))
    # 'red' is 5 of the 10 answers (records without answer ids) of each
    # question: a 'red' record leaves out the 5 'red' ones (0 matches), the
    # others leave 5 (accuracy 1): 0.5; 'blue' is no answer: 0
    answer_with(
        model, lambda p: 'red'
        if p.endswith('shape 4? Short answer:') else 'blue')
    work_dir = str(tmp_path / 'work_dir')
    summary = evaluate_fewshot(model, cfg, work_dir)
    check_results(summary, work_dir, 'vqa/accuracy', [0, 2], 2)
    with open(osp.join(work_dir, 'fewshot_results.md')) as f:
        table = f.read()
    for row in summary['results']:
        for trial in row['trials']:
            assert trial['sample_scores'] == {'vqa/accuracy': [50., 0.]}
            assert trial['metrics']['vqa/accuracy'] == 25
        assert row['mean'] == {'vqa/accuracy': 25.}
        assert row['ci95'] == {'vqa/accuracy': [0., 50.]}
        assert f"\n| {row['shots']} | 25.00 ± 0.00 [0.0, 50.0] |" in table
    with open(osp.join(work_dir, 'fewshot_results.json')) as f:
        assert json.load(f)['results'][0]['ci95'] == {
            'vqa/accuracy': [0., 50.]
        }


def test_rows_are_written_when_the_rounded_mean_is_off_the_interval(
        tmp_path, tokenizer_dir):
    """VQA accuracies are reported rounded to 2 decimals, their interval is
    not: every question at 4/9 gives the mean 44.44 and the interval
    [44.44..., 44.44...] just above it. The results (the plot's error bars
    included) are still written."""
    datasets = vqa_datasets(tmp_path)
    # answers 'yes', 'yes', 'no': a 'yes' record leaves 1 match (1/3), the
    # 'no' record 2 (2/3), so 'yes' scores 4/9
    for split in ('train', 'val'):
        path = datasets[split]['annotation_file']
        with open(path) as f:
            annotations = json.load(f)
        for ann in annotations['annotations']:
            ann['answers'] = [
                dict(answer=a, answer_id=j + 1)
                for j, a in enumerate(['yes', 'yes', 'no'])
            ]
        write_json(path, annotations)
    cfg = tiny_config(
        tokenizer_dir,
        'vqa',
        datasets['train'],
        datasets['val'],
        shots=[0],
        num_trials=1)
    model = init_model(Config(cfg))
    answer_with(model, lambda p: 'yes')
    work_dir = str(tmp_path / 'work_dir')
    summary = evaluate_fewshot(model, cfg, work_dir)
    row = summary['results'][0]
    assert row['mean']['vqa/accuracy'] == 44.44
    low, high = row['ci95']['vqa/accuracy']
    assert low == high == pytest.approx(400 / 9)
    assert osp.isfile(osp.join(work_dir, 'fewshot_results.png'))
