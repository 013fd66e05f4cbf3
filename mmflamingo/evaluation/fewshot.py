"""Few-shot evaluation: several shot counts and trials in one run.

``fewshot_eval`` in a config says what to evaluate::

    fewshot_eval = dict(
        task='caption',                 # or 'vqa', 'classification'
        support=dict(type='KarpathyCaptionDataset', split='train', ...),
        query=dict(type='KarpathyCaptionDataset', split='test', ...),
        shots=[0, 4, 8, 16, 32],
        num_trials=1,                   # random demos: seeds seed + trial
        seed=0,
        demo_selection='random',        # or 'rices'
        rices_support_features=None,    # tools/cache_rices_features.py
        rices_query_features=None,
        batch_size=8,
        prompt=dict(),                  # FewShotPromptBuilder kwargs
        metric=dict(type='CaptionMetric'),  # or VQAAccuracy
        answer_postprocess='openflamingo',  # VQA: how generations are cut
        max_queries=None,               # the first N queries only
        class_names=None,               # classification: the dataset's
        candidate_batch_size=100,       # class names scored per call
        candidate_prefix='',            # e.g. ' ': names scored as ' name'
        num_permutations=1,             # demo orders averaged
        demo_group_key=None,            # e.g. 'episode': demos of the group
        cache_media=True,               # visual tokens once per image
        media_batch_size=16,            # images per vision-encoder forward
        media_pipeline=None,            # e.g. LoadVideoFrames for videos
        media_cache_device=None)        # e.g. 'cpu' to spare GPU memory

For every shot count and trial, each query gets its demos from the support
set (:mod:`~mmflamingo.evaluation.demo_selection`), its prompt and media from
:class:`~mmflamingo.evaluation.prompts.FewShotPromptBuilder`, and the model's
``predict`` generates its answer; the metric scores the trial. VQA
generations are cut into answers first, as ``answer_postprocess`` names
(:mod:`~mmflamingo.evaluation.answer_postprocess`): ``'openflamingo'``
(before 'Question', 'Answer', 'Short', then before the first ', '),
``'no_comma_cut'`` (keeps 'washington, dc'), ``'openflamingo_okvqa'`` (then
OK-VQA stemming) or None (as generated); the metric scores exactly these
answers against the query's ``answer_records``. The mean and
standard deviation over the trials (``np.std``, as OpenFlamingo) are
reported per shot count.

**Classification** (``ImageFolderClassification``, ``HatefulMemesDataset``)
ranks the class names instead of generating: the model's ``score`` gives the
summed log-likelihood of every class name after the prompt (the prompt's KV
cache shared by the names), ``candidate_batch_size`` names per call.
The class names are ``class_names`` or the query dataset's (its
``metainfo['classes']`` or ``CLASS_NAMES``); the prompt templates default to
``'hateful_memes'`` for :class:`HatefulMemesDataset` queries and
``'imagenet'`` otherwise. With ``num_permutations`` > 1 the same demos are
scored in that many distinct orders (:func:`demo_orders`, the first being
the selector's) and the log-likelihoods averaged: OpenFlamingo's prompt
ensembling. A metric's ``outfile_prefix`` (e.g. for ``format_only``
exports: VQAv2 test-dev answers in the EvalAI format, caption predictions)
gets ``_<shots>shot_trial<trial>`` appended. ``metric`` may be a list, e.g.
``[dict(type='RankClassificationMetric'), dict(type='ROCAUC')]``; the
query's ``label`` is the metric's ``gt_label``. A query with its own
``multiple_choices`` (the VQA multiple-choice format, e.g. an in-context
binding task whose names only the demos of the query's ``demo_group_key``
group reveal) ranks those instead of the class names.

**Speed.** Queries are batched (``batch_size``). With ``cache_media`` each
image's visual tokens (vision encoder + Perceiver) are computed once per run
and reused by every query, shot count and trial that shows it
(:class:`~mmflamingo.evaluation.media_cache.VisualTokenCache`).

**Distributed.** Under a launcher (``tools/test.py --launcher pytorch``) the
query batches are dealt out to the processes round-robin, each process
evaluates whole batches exactly as one process would, and rank 0 scores the
predictions in query order: the results equal the single-process ones.
"""
import json
import math
import os
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.dataset import Compose, pseudo_collate
from mmengine.dist import (all_gather_object, broadcast_object_list,
                           get_dist_info, is_main_process)
from mmengine.logging import print_log
from mmpretrain.structures import DataSample
from tqdm import tqdm

from mmflamingo.datasets.eval_datasets import HatefulMemesDataset
from mmflamingo.datasets.transforms import media_pipeline
from mmflamingo.registry import DATASETS, METRICS
from .answer_postprocess import check_answer_postprocess, postprocess_answer
from .bootstrap import bootstrap_ci, interval_bars
from .demo_selection import (RandomDemoSelector, RICESSelector,
                             load_rices_features)
from .media_cache import VisualTokenCache
from .prompts import FewShotPromptBuilder

__all__ = [
    'evaluate_fewshot', 'build_demo_selector', 'build_query_prompt',
    'demo_orders', 'pack_inputs', 'score_class_names', 'to_metric_sample',
    'write_fewshot_results', 'FEWSHOT_DEFAULTS'
]

FEWSHOT_DEFAULTS: Dict[str, Any] = dict(
    shots=[0, 4, 8, 16, 32],
    num_trials=1,
    seed=0,
    demo_selection='random',
    rices_support_features=None,
    rices_query_features=None,
    batch_size=8,
    prompt=dict(),
    max_queries=None,
    answer_postprocess='openflamingo',
    class_names=None,
    candidate_batch_size=100,
    candidate_prefix='',
    num_permutations=1,
    demo_group_key=None,
    cache_media=True,
    media_batch_size=16,
    media_cache_device=None,
    media_pipeline=None)
REQUIRED_KEYS = ('task', 'support', 'query', 'metric')
TASKS = ('caption', 'vqa', 'classification')


def _check_cfg(eval_cfg: dict) -> dict:
    """``eval_cfg`` with the defaults filled in; missing keys raise."""
    missing = [k for k in REQUIRED_KEYS if k not in eval_cfg]
    if missing:
        raise KeyError(f'fewshot_eval lacks the key(s) {missing}; it needs '
                       f'{list(REQUIRED_KEYS)}')
    cfg = {**FEWSHOT_DEFAULTS, **eval_cfg}
    if cfg['task'] not in TASKS:
        raise ValueError(f"fewshot_eval.task must be one of {TASKS}, got "
                         f"{cfg['task']!r}")
    check_answer_postprocess(cfg['answer_postprocess'])
    if cfg['demo_selection'] not in ('random', 'rices'):
        raise ValueError("fewshot_eval.demo_selection must be 'random' or "
                         f"'rices', got {cfg['demo_selection']!r}")
    if cfg['demo_selection'] == 'rices':
        for key in ('rices_support_features', 'rices_query_features'):
            if not cfg[key]:
                raise KeyError(f"fewshot_eval.{key} is needed with "
                               "demo_selection='rices'")
    for key in ('batch_size', 'candidate_batch_size', 'num_permutations',
                'media_batch_size'):
        if cfg[key] < 1:
            raise ValueError(f'fewshot_eval.{key} must be positive, got '
                             f'{cfg[key]}')
    return cfg


def _groups(samples: Sequence[dict], key: Optional[str],
            name: str) -> Optional[list]:
    """Each sample's ``key`` (its demo group), or None without a key."""
    if key is None:
        return None
    missing = [s['sample_id'] for s in samples if key not in s]
    if missing:
        raise KeyError(f'fewshot_eval.demo_group_key is {key!r}, but '
                       f'{len(missing)} {name} sample(s) lack it, e.g. '
                       f'{missing[0]!r}')
    return [s[key] for s in samples]


def build_demo_selector(eval_cfg: dict, support: Sequence[dict],
                        queries: Sequence[dict], trial: int):
    """The demo selector of one trial.

    Random demos are drawn with seed ``seed + trial``; RICES demos are the
    same in every trial. A query is never its own demo; with
    ``demo_group_key`` its demos share its group.

    Args:
        eval_cfg (dict): ``fewshot_eval`` (defaults filled in).
        support (Sequence[dict]): The support samples (``sample_id``...).
        queries (Sequence[dict]): The query samples.
        trial (int): The trial index.

    RICES query features may cover more queries than evaluated
    (``max_queries`` evaluates the first ones).
    """
    support_keys = [s['sample_id'] for s in support]
    query_keys = [q['sample_id'] for q in queries]
    groups = dict(
        support_groups=_groups(support, eval_cfg['demo_group_key'], 'support'),
        query_groups=_groups(queries, eval_cfg['demo_group_key'], 'query'))
    if eval_cfg['demo_selection'] == 'random':
        return RandomDemoSelector(
            len(support_keys),
            seed=eval_cfg['seed'] + trial,
            support_keys=support_keys,
            query_keys=query_keys,
            **groups)
    support_features = load_rices_features(eval_cfg['rices_support_features'],
                                           support_keys)['features']
    query_features = load_rices_features(eval_cfg['rices_query_features'],
                                         None)
    if list(query_features['keys'][:len(queries)]) != query_keys:
        raise ValueError(
            f"{eval_cfg['rices_query_features']}: its sample ids do not match "
            "the query dataset's; recompute it with "
            'tools/cache_rices_features.py')
    return RICESSelector(support_features,
                         query_features['features'][:len(queries)],
                         support_keys, query_keys, **groups)


def build_query_prompt(builder: FewShotPromptBuilder, selector,
                       support: Sequence[dict], query: dict, query_index: int,
                       num_shots: int):
    """The prompt, media and demo indices of one query.

    Args:
        builder (FewShotPromptBuilder): Formats the prompt.
        selector: Picks the demos (``select(query_index, num_demos)``).
        support (Sequence[dict]): The support samples (data infos).
        query (dict): The query sample.
        query_index (int): Its index in the query set.
        num_shots (int): The shot count.

    Returns:
        tuple[str, list, list[int]]: The prompt, its media and the support
        indices of its demos.
    """
    demo_indices = selector.select(query_index, builder.num_demos(num_shots))
    demos = [support[i] for i in demo_indices]
    prompt, media = builder.build(query, demos, num_shots)
    return prompt, media, demo_indices


def demo_orders(num_demos: int, num_permutations: int,
                seed: Union[int, Sequence[int]]) -> List[List[int]]:
    """Distinct orders of ``num_demos`` demos for prompt ensembling.

    The first order is the given one (``[0, 1, ...]``); the others are drawn
    at random with ``seed``, without repeats, so there are at most
    ``num_demos!`` of them (OpenFlamingo shuffles, repeats allowed).

    Args:
        num_demos (int): The number of demos.
        num_permutations (int): The number of orders wanted.
        seed (int | Sequence[int]): The seed of the random orders
            (``np.random.default_rng``'s).

    Returns:
        list[list[int]]: ``min(num_permutations, num_demos!)`` orders, each
        a permutation of ``range(num_demos)``.
    """
    count = min(num_permutations, math.factorial(num_demos))
    orders = [list(range(num_demos))]
    rng = np.random.default_rng(seed)
    while len(orders) < count:
        order = rng.permutation(num_demos).tolist()
        if order not in orders:
            orders.append(order)
    return orders


def pack_inputs(model,
                pipeline,
                prompts: Sequence[str],
                media: Sequence[list],
                cache: Optional[VisualTokenCache] = None) -> dict:
    """The model inputs of B prompts and their media.

    Args:
        model (nn.Module): A Flamingo.
        pipeline (Callable): Packs ``dict(media=..., text=...)``.
        prompts (Sequence[str]): The prompts.
        media (Sequence[list]): The media of each prompt.
        cache (VisualTokenCache, optional): Gives the visual tokens, so that
            no image is encoded twice. Defaults to None (images are loaded
            and encoded by the model).

    Returns:
        dict: ``images``, ``data_samples`` and ``media_tokens``, the
        arguments of the model's ``predict`` and ``score``.
    """
    if cache is None or not any(media):
        packed = [
            pipeline(dict(media=m, text=prompt))
            for prompt, m in zip(prompts, media)
        ]
        data = model.data_preprocessor(pseudo_collate(packed), False)
        return dict(**data, media_tokens=None)
    samples = []
    for prompt, m in zip(prompts, media):
        sample = DataSample(metainfo=dict(num_media=len(m)))
        sample.text = prompt
        samples.append(sample)
    return dict(images=None, data_samples=samples, media_tokens=cache(media))


def score_class_names(
        model,
        pipeline,
        prompts: Sequence[str],
        media: Sequence[list],
        class_names: Union[Sequence[str], Sequence[Sequence[str]]],
        candidate_batch_size: int,
        cache: Optional[VisualTokenCache] = None) -> torch.Tensor:
    """The log-likelihood of every class name after each prompt.

    The names are scored ``candidate_batch_size`` at a time by the model's
    ``score`` (each call encodes the prompts once for all its names).

    Args:
        model (nn.Module): A Flamingo.
        pipeline (Callable): Packs ``dict(media=..., text=...)``.
        prompts (Sequence[str]): The prompts, ending where a name goes.
        media (Sequence[list]): The media of each prompt.
        class_names (Sequence[str] | Sequence[Sequence[str]]): The C
            candidate names of every prompt, or the names of each prompt
            (C: the most any prompt has).
        candidate_batch_size (int): Names per ``score`` call.
        cache (VisualTokenCache, optional): See :func:`pack_inputs`.

    Returns:
        Tensor: ``(B, C)`` summed log-probabilities; ``-inf`` after a
        prompt's last name.
    """
    if class_names and isinstance(class_names[0], str):
        class_names = [class_names] * len(prompts)
    # prompts with fewer names get copies of their last one, scored -inf
    num = max(len(names) for names in class_names)
    padded = [list(n) + [n[-1]] * (num - len(n)) for n in class_names]
    data = pack_inputs(model, pipeline, prompts, media, cache)
    chunks = []
    for start in range(0, num, candidate_batch_size):
        for sample, names in zip(data['data_samples'], padded):
            sample.candidates = names[start:start + candidate_batch_size]
        scored = model.score(**data)
        chunks.append(torch.stack([s.pred_scores for s in scored]))
    scores = torch.cat(chunks, dim=1)  # C / chunk x (B, chunk) -> (B, C)
    for row, names in zip(scores, class_names):
        row[len(names):] = -float('inf')
    return scores


def to_metric_sample(
        task: str,
        query: dict,
        prediction,
        answer_postprocess: Optional[str] = 'openflamingo') -> dict:
    """The fields the task's metric reads, from a query and its prediction.

    Captioning: ``pred_caption``, ``gt_caption`` (the query's ``captions``),
    ``image_id``. VQA: ``pred_answer`` (the generation post-processed as
    ``answer_postprocess`` names, see
    :func:`~mmflamingo.evaluation.answer_postprocess.postprocess_answer`),
    ``gt_answer`` (its ``answer_records``, the annotation's answer dicts,
    else its ``answers``), ``question_id`` and ``answer_type`` when known.
    Classification (``prediction``: the ``(C, )`` class scores):
    ``pred_scores``, ``gt_label`` (its ``label``), ``sample_id``.
    """
    if task == 'classification':
        if 'label' not in query:
            raise KeyError(f"query {query['sample_id']!r} has no 'label' "
                           '(a test split without labels?)')
        if 'multiple_choices' in query:
            prediction = prediction[:len(query['multiple_choices'])]
        return dict(
            pred_scores=prediction,
            gt_label=query['label'],
            sample_id=query['sample_id'])
    if task == 'caption':
        return dict(
            pred_caption=prediction.pred_caption,
            gt_caption=query['captions'],
            image_id=query['image_id'])
    sample = dict(
        pred_answer=postprocess_answer(prediction.pred_answer,
                                       answer_postprocess),
        question_id=query['question_id'])
    if 'answer_records' in query:
        sample['gt_answer'] = query['answer_records']
    elif 'answers' in query:
        sample['gt_answer'] = query['answers']
    if 'answer_type' in query:
        sample['answer_type'] = query['answer_type']
    return sample


def _load_infos(dataset_cfg: dict, name: str):
    """The dataset of ``dataset_cfg`` and its data infos."""
    dataset = DATASETS.build(dataset_cfg)
    if len(dataset) == 0:
        raise ValueError(f'fewshot_eval.{name}: the dataset is empty '
                         f'({dataset_cfg})')
    return dataset, [dataset.get_data_info(i) for i in range(len(dataset))]


def _class_names(eval_cfg: dict, dataset) -> List[str]:
    names = (
        eval_cfg['class_names'] or dataset.metainfo.get('classes')
        or getattr(dataset, 'CLASS_NAMES', None))
    if not names:
        raise KeyError('fewshot_eval.class_names is needed: the query '
                       f'dataset {type(dataset).__name__} names no classes')
    return list(names)


def _predict_batch(model, pipeline, builder: FewShotPromptBuilder, selector,
                   support: List[dict], queries: List[dict], batch: range,
                   num_shots: int, cache: Optional[VisualTokenCache]) -> list:
    prompts, media = [], []
    for i in batch:
        prompt, m, _ = build_query_prompt(builder, selector, support,
                                          queries[i], i, num_shots)
        prompts.append(prompt)
        media.append(m)
    return model.predict(**pack_inputs(model, pipeline, prompts, media, cache))


def _classify_batch(model, pipeline, eval_cfg: dict,
                    builder: FewShotPromptBuilder, selector,
                    support: List[dict], queries: List[dict], batch: range,
                    num_shots: int, trial: int,
                    cache: Optional[VisualTokenCache]) -> torch.Tensor:
    """``(B, C)`` class scores, averaged over the demo orders."""
    demos, orders = [], []
    for i in batch:
        indices = selector.select(i, builder.num_demos(num_shots))
        demos.append(indices)
        # a seed per query, so a query's orders do not depend on its batch
        orders.append(
            demo_orders(
                len(indices),
                eval_cfg['num_permutations'],
                seed=[eval_cfg['seed'] + trial, i]))
    # the text each name is scored as: after the prompt's last character
    names = [[
        eval_cfg['candidate_prefix'] + name
        for name in queries[i].get('multiple_choices', eval_cfg['class_names'])
    ] for i in batch]
    scores = []
    for p in range(len(orders[0])):
        prompts, media = [], []
        for i, indices, query_orders in zip(batch, demos, orders):
            prompt, m = builder.build(
                queries[i], [support[indices[j]] for j in query_orders[p]],
                num_shots)
            prompts.append(prompt)
            media.append(m)
        scores.append(
            score_class_names(model, pipeline, prompts, media, names,
                              eval_cfg['candidate_batch_size'], cache))
    return torch.stack(scores).mean(0)  # (P, B, C) -> (B, C)


def _build_metrics(eval_cfg: dict, num_shots: int, trial: int) -> list:
    metric_cfgs = eval_cfg['metric']
    if isinstance(metric_cfgs, dict):
        metric_cfgs = [metric_cfgs]
    # a metric that writes files (format_only) gets one file per run
    return [
        METRICS.build({
            **cfg, 'outfile_prefix':
            f"{cfg['outfile_prefix']}_{num_shots}shot_trial{trial}"
        } if cfg.get('outfile_prefix') else cfg) for cfg in metric_cfgs
    ]


def _score_in_order(eval_cfg: dict, samples: List[tuple], num_shots: int,
                    trial: int) -> Tuple[Dict[str, float], Dict[str, list]]:
    """Gather every process's ``(query index, metric sample)`` pairs and
    score them in query order on rank 0; every process gets the scores, and
    the per-query scores of the metrics that are means over queries (their
    ``sample_scores``, for confidence intervals)."""
    rank, world_size = get_dist_info()
    if world_size > 1:
        samples = [s for part in all_gather_object(samples) for s in part]
    results: List[Optional[tuple]] = [None]
    if rank == 0:
        ordered = [sample for _, sample in sorted(samples, key=lambda x: x[0])]
        scores, sample_scores = {}, {}
        for metric in _build_metrics(eval_cfg, num_shots, trial):
            metric.process(None, ordered)
            # compute_metrics, not evaluate: the samples are gathered here
            prefix = f'{metric.prefix}/' if metric.prefix else ''
            for name, value in metric.compute_metrics(metric.results).items():
                scores[prefix + name] = value
            for name, values in getattr(metric, 'sample_scores', {}).items():
                sample_scores[prefix + name] = list(values)
        results[0] = (scores, sample_scores)
    if world_size > 1:
        broadcast_object_list(results, src=0)
    return results[0]


@torch.no_grad()
def _run_trial(
    model, pipeline, eval_cfg: dict, builder: FewShotPromptBuilder, selector,
    support: List[dict], queries: List[dict], num_shots: int, trial: int,
    cache: Optional[VisualTokenCache]
) -> Tuple[Dict[str, float], Dict[str, list]]:
    batch_size = eval_cfg['batch_size']
    batches = [
        range(start, min(start + batch_size, len(queries)))
        for start in range(0, len(queries), batch_size)
    ]
    rank, world_size = get_dist_info()
    samples = []
    for batch in tqdm(
            batches[rank::world_size],
            desc=f'{num_shots} shots, trial {trial}',
            unit='batch',
            leave=False,
            disable=not is_main_process()):
        if eval_cfg['task'] == 'classification':
            predictions = _classify_batch(model, pipeline, eval_cfg, builder,
                                          selector, support, queries, batch,
                                          num_shots, trial, cache)
        else:
            predictions = _predict_batch(model, pipeline, builder, selector,
                                         support, queries, batch, num_shots,
                                         cache)
        samples.extend((i,
                        to_metric_sample(eval_cfg['task'], queries[i], pred,
                                         eval_cfg['answer_postprocess']))
                       for i, pred in zip(batch, predictions))
    return _score_in_order(eval_cfg, samples, num_shots, trial)


def evaluate_fewshot(model: torch.nn.Module,
                     eval_cfg: dict,
                     work_dir: Optional[str] = None) -> dict:
    """Evaluate ``model`` over the shot counts and trials of ``eval_cfg``.

    Args:
        model (nn.Module): A Flamingo whose ``task`` is ``eval_cfg.task``
            (any task for classification, which uses its ``score``).
        eval_cfg (dict): The ``fewshot_eval`` config (see the module doc).
        work_dir (str, optional): Where to write ``fewshot_results.json``
            and ``fewshot_results.md`` (rank 0). Defaults to None (nothing
            written).

    Returns:
        dict: ``task``, ``demo_selection``, ``num_queries``, ``num_support``
        and ``results``: per shot count, ``shots``, ``trials`` (each
        ``seed`` and ``metrics``), ``mean`` and ``std``.

    Raises:
        KeyError / ValueError: For a bad ``eval_cfg``, a model of another
            task, or a support set smaller than a shot count.
    """
    eval_cfg = _check_cfg(dict(eval_cfg))
    task = eval_cfg['task']
    if task != 'classification' and getattr(model, 'task', task) != task:
        raise ValueError(f'fewshot_eval.task is {task!r} but the model '
                         f"predicts for {model.task!r}; set model.task='"
                         f"{task}' in the config")
    _, support = _load_infos(eval_cfg['support'], 'support')
    query_set, queries = _load_infos(eval_cfg['query'], 'query')
    if eval_cfg['max_queries'] is not None:
        queries = queries[:eval_cfg['max_queries']]
    prompt_task = task
    if task == 'classification':
        if not all('multiple_choices' in q for q in queries):
            eval_cfg['class_names'] = _class_names(eval_cfg, query_set)
        prompt_task = ('hateful_memes' if isinstance(
            query_set, HatefulMemesDataset) else 'imagenet')
    builder = FewShotPromptBuilder(**{
        'task': prompt_task,
        **eval_cfg['prompt']
    })
    for shots in eval_cfg['shots']:
        if builder.num_demos(shots) > len(support):
            raise ValueError(
                f'{shots}-shot prompts need {builder.num_demos(shots)} demos '
                f'per query, but the support set (fewshot_eval.support) has '
                f'only {len(support)} samples')
    # how each medium is loaded: images by default; videos with
    # LoadVideoFrames, as in training
    pipeline = Compose(eval_cfg['media_pipeline']
                       or media_pipeline(model.backbone.image_size))
    cache = None
    if eval_cfg['cache_media']:
        cache = VisualTokenCache(
            model,
            pipeline,
            batch_size=eval_cfg['media_batch_size'],
            device=eval_cfg['media_cache_device'])

    results = []
    for shots in eval_cfg['shots']:
        trials = []
        for trial in range(eval_cfg['num_trials']):
            selector = build_demo_selector(eval_cfg, support, queries, trial)
            metrics, sample_scores = _run_trial(model, pipeline, eval_cfg,
                                                builder, selector, support,
                                                queries, shots, trial, cache)
            print_log(
                f'{shots} shots, trial {trial}: {metrics}', logger='current')
            trials.append(
                dict(
                    seed=eval_cfg['seed'] + trial,
                    metrics=metrics,
                    sample_scores=sample_scores))
        results.append(_summarize_trials(shots, trials))
    summary = dict(
        task=task,
        demo_selection=eval_cfg['demo_selection'],
        num_support=len(support),
        num_queries=len(queries),
        results=results)
    if cache is not None:
        print_log(
            f'vision features computed for {len(cache)} media, once each',
            logger='current')
    if work_dir is not None and is_main_process():
        write_fewshot_results(summary, work_dir)
    return summary


def _summarize_trials(shots: int, trials: List[dict]) -> dict:
    """One shot count's row: its trials, the mean and std over them and,
    for the metrics that are means over queries, the 95% bootstrap interval
    over queries and trials (:func:`~.bootstrap.bootstrap_ci`)."""
    names = list(trials[0]['metrics'])
    values = {n: [t['metrics'][n] for t in trials] for n in names}
    return dict(
        shots=shots,
        trials=trials,
        mean={
            n: float(np.mean(v))
            for n, v in values.items()
        },
        std={
            n: float(np.std(v))
            for n, v in values.items()
        },
        ci95={
            n: list(bootstrap_ci([t['sample_scores'][n] for t in trials]))
            for n in trials[0]['sample_scores']
        })


def format_markdown(summary: dict) -> str:
    """A markdown table: one row per shot count, ``mean ± std`` over the
    trials per metric, and its 95% interval where there is one."""
    names = list(summary['results'][0]['mean'])
    num_trials = len(summary['results'][0]['trials'])
    lines = [
        f"Few-shot {summary['task']} ({summary['demo_selection']} demos, "
        f"{summary['num_queries']} queries, {num_trials} trial(s))", '',
        '| shots | ' + ' | '.join(names) + ' |',
        '|---:|' + '---:|' * len(names)
    ]
    for row in summary['results']:
        cells = []
        for n in names:
            cell = f"{row['mean'][n]:.2f} ± {row['std'][n]:.2f}"
            if n in row.get('ci95', {}):
                low, high = row['ci95'][n]
                cell += f' [{low:.1f}, {high:.1f}]'
            cells.append(cell)
        lines.append(f"| {row['shots']} | " + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def write_fewshot_results(summary: dict, work_dir: str) -> List[str]:
    """Write ``fewshot_results.json`` and ``fewshot_results.md`` (and
    ``fewshot_results.png`` when matplotlib is installed).

    Returns:
        list[str]: The files written.
    """
    os.makedirs(work_dir, exist_ok=True)
    json_file = osp.join(work_dir, 'fewshot_results.json')
    with open(json_file, 'w', encoding='utf-8') as f:
        json.dump(summary, f, indent=2)
    md_file = osp.join(work_dir, 'fewshot_results.md')
    with open(md_file, 'w', encoding='utf-8') as f:
        f.write(format_markdown(summary))
    files = [json_file, md_file]
    plot = _plot(summary, osp.join(work_dir, 'fewshot_results.png'))
    if plot is not None:
        files.append(plot)
    return files


def _plot(summary: dict, path: str) -> Optional[str]:
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:  # matplotlib is optional
        return None
    shots = [r['shots'] for r in summary['results']]
    fig, ax = plt.subplots()
    for name in summary['results'][0]['mean']:
        means = [r['mean'][name] for r in summary['results']]
        # the 95% interval where there is one, else the std over trials
        rows = summary['results']
        if all(name in r.get('ci95', {}) for r in rows):
            errors = interval_bars(means, [r['ci95'][name] for r in rows])
        else:
            errors = [[r['std'][name] for r in rows]] * 2
        ax.errorbar(
            shots, means, yerr=errors, marker='o', capsize=3, label=name)
    ax.set_xlabel('shots')
    ax.set_ylabel('score')
    ax.set_xticks(shots)
    ax.legend()
    fig.savefig(path)
    plt.close(fig)
    return path
