"""Few-shot evaluation as the Runner's test loop.

``tools/test.py CONFIG CHECKPOINT`` is ``Runner.from_cfg(cfg).test()``; a
config names this loop in ``test_cfg`` (the few-shot settings, see
:class:`~mmflamingo.evaluation.FewShotSettings`), the query set in
``test_dataloader`` and the metrics in ``test_evaluator``::

    test_dataloader = dict(
        batch_size=8,
        dataset=dict(type='VQADataset', split='val', ...),
        sampler=dict(type='DefaultSampler', shuffle=False))
    test_evaluator = dict(type='VQAAccuracy')
    test_cfg = dict(
        type='FewShotTestLoop',
        task='vqa',
        support=dict(type='VQADataset', split='train', ...),
        shots=[0, 4, 8, 16, 32],
        num_trials=3)
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.dataset import Compose
from mmengine.dist import (all_gather_object, broadcast_object_list,
                           get_dist_info, is_main_process)
from mmengine.evaluator import Evaluator
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import BaseLoop
from torch.utils.data import DataLoader

from mmflamingo.datasets.eval_datasets import HatefulMemesDataset
from mmflamingo.datasets.transforms import media_pipeline
from mmflamingo.evaluation import (FewShotPromptBuilder, FewShotSettings,
                                   VisualTokenCache, build_demo_selector,
                                   classify_batch, format_markdown,
                                   load_rices_pair, predict_batch,
                                   summarize_trials, to_metric_sample,
                                   write_fewshot_results)
from mmflamingo.registry import DATASETS, LOOPS

__all__ = ['FewShotTestLoop']

MetricSamples = List[dict]


@LOOPS.register_module()
class FewShotTestLoop(BaseLoop):
    """Evaluate a Flamingo at several shot counts and trials in one run.

    For every shot count and trial, each query gets its demos from the
    support set (random, seeded per trial, or RICES), its prompt from
    :class:`~mmflamingo.evaluation.FewShotPromptBuilder`, and the model
    generates its caption or answer (``predict``) or ranks the class names
    (``score``, :mod:`~mmflamingo.evaluation.class_scoring`). The metrics of
    ``test_evaluator`` are built anew for each shot count and trial (a
    metric's ``outfile_prefix`` gets ``_<shots>shot_trial<trial>``) and
    score the trial through mmengine's ``Evaluator``. Each shot count's
    mean over trials is logged and recorded by the visualizer as a scalar
    (step: the shot count), and the run's results are written to the work
    dir (:func:`~mmflamingo.evaluation.write_fewshot_results`); the summary
    is kept as :attr:`summary`.

    **Speed.** With ``cache_media`` each image's visual tokens are computed
    once per run and reused by every query, shot count and trial that shows
    it. RICES features are loaded once; trials that cannot differ (RICES
    demos, no random demo orders, no sampling) are computed once and scored
    again.

    **Processes.** The query batches are dealt out to the processes
    round-robin, each evaluates whole batches exactly as one process would,
    and the metrics get the predictions in query order: the results equal
    the single-process ones.

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader | dict): ``test_dataloader``: its dataset is
            the query set and its ``batch_size`` the queries per model call
            (the loop deals the batches out itself).
        evaluator (dict | list[dict]): ``test_evaluator``, the metric
            configs (or an ``Evaluator`` config with ``metrics``).
        **settings: :class:`~mmflamingo.evaluation.FewShotSettings` fields
            (``task`` and ``support`` at least).
    """

    def __init__(self, runner, dataloader: Union[DataLoader, dict],
                 evaluator: Union[dict, List[dict]], **settings) -> None:
        super().__init__(runner, dataloader)
        self.settings = FewShotSettings.from_cfg(settings)
        if isinstance(
                evaluator,
                dict) and evaluator.get('type') in ('Evaluator', Evaluator):
            evaluator = evaluator['metrics']
        if not isinstance(evaluator, (dict, list, tuple)):
            raise TypeError('test_evaluator must be a metric config or a '
                            'list of them (the loop builds the metrics anew '
                            f'for every shot count and trial), got '
                            f'{type(evaluator).__name__}')
        self.metric_cfgs = [evaluator] if isinstance(evaluator,
                                                     dict) else list(evaluator)
        self.summary: Optional[dict] = None

    # ---------------------------------------------------------------- run
    def run(self) -> Dict[str, float]:
        """Evaluate every shot count and trial.

        Returns:
            dict[str, float]: ``'<shots>shot/<metric>'``: the mean over the
            trials (what ``after_test_epoch`` hooks get); the full summary
            is :attr:`summary`.
        """
        runner, settings = self.runner, self.settings
        runner.call_hook('before_test')
        runner.call_hook('before_test_epoch')
        self._prepare()
        results = []
        sampling = bool(
            getattr(self.model, 'generation_cfg', {}).get('do_sample'))
        for shots in settings.shots:
            trials, first = [], None
            for trial in range(settings.num_trials):
                if first is None or settings.trials_differ(sampling):
                    first = self._predict(shots, trial)
                else:
                    print_log(
                        f'{shots} shots, trial {trial}: the demos of trial '
                        '0, whose predictions are scored again',
                        logger='current')
                metrics, sample_scores = self._evaluate(first, shots, trial)
                print_log(
                    f'{shots} shots, trial {trial}: {metrics}',
                    logger='current')
                trials.append(
                    dict(
                        seed=settings.trial_seed(trial),
                        metrics=metrics,
                        sample_scores=sample_scores))
            row = summarize_trials(shots, trials)
            results.append(row)
            runner.visualizer.add_scalars(
                {
                    **row['mean'],
                    **{
                        f'{n}_std': v
                        for n, v in row['std'].items()
                    }
                },
                step=shots)
        self.summary = dict(
            task=settings.task,
            demo_selection=settings.demo_selection,
            num_support=len(self.support),
            num_queries=len(self.queries),
            results=results)
        if self.cache is not None:
            print_log(
                f'vision features computed for {len(self.cache)} media, '
                'once each',
                logger='current')
        if is_main_process():
            write_fewshot_results(self.summary, runner.work_dir)
            print_log('\n' + format_markdown(self.summary), logger='current')
        metrics = {
            f"{row['shots']}shot/{name}": value
            for row in results
            for name, value in row['mean'].items()
        }
        runner.call_hook('after_test_epoch', metrics=metrics)
        runner.call_hook('after_test')
        return metrics

    # -------------------------------------------------------------- steps
    def _prepare(self) -> None:
        """The model, the data and what every trial shares."""
        settings = self.settings
        model = self.runner.model
        self.model = model.module if is_model_wrapper(model) else model
        self.model.eval()
        task = settings.task
        if task != 'classification' and getattr(self.model, 'task',
                                                task) != task:
            raise ValueError(f'test_cfg.task is {task!r} but the model '
                             f'predicts for {self.model.task!r}; set '
                             f"model.task='{task}' in the config")
        self.query_set = self.dataloader.dataset
        self.queries = _data_infos(self.query_set, 'test_dataloader.dataset')
        if settings.max_queries is not None:
            self.queries = self.queries[:settings.max_queries]
        self.support = _data_infos(
            DATASETS.build(settings.support), 'test_cfg.support')
        prompt_task, self.class_names = task, None
        if task == 'classification':
            if not all('multiple_choices' in q for q in self.queries):
                self.class_names = _class_names(settings, self.query_set)
            prompt_task = ('hateful_memes' if isinstance(
                self.query_set, HatefulMemesDataset) else 'imagenet')
        self.builder = FewShotPromptBuilder(**{
            'task': prompt_task,
            **settings.prompt
        })
        for shots in settings.shots:
            if self.builder.num_demos(shots) > len(self.support):
                raise ValueError(
                    f'{shots}-shot prompts need '
                    f'{self.builder.num_demos(shots)} demos per query, but '
                    'the support set (test_cfg.support) has only '
                    f'{len(self.support)} samples')
        self.rices = None
        if settings.demo_selection == 'rices':
            self.rices = load_rices_pair(settings, self.support, self.queries)
        # how each medium is loaded: images by default; videos with
        # LoadVideoFrames, as in training
        self.pipeline = Compose(
            settings.media_pipeline
            or media_pipeline(self.model.backbone.image_size))
        self.cache = None
        if settings.cache_media:
            self.cache = VisualTokenCache(
                self.model,
                self.pipeline,
                batch_size=settings.media_batch_size,
                device=settings.media_cache_device)

    @torch.no_grad()
    def _predict(self, shots: int, trial: int) -> MetricSamples:
        """Every query's metric sample in one trial, in query order (this
        process's batches, then those of all processes)."""
        settings, runner = self.settings, self.runner
        selector = build_demo_selector(settings, self.support, self.queries,
                                       trial, self.rices)
        batch_size = self.dataloader.batch_size
        batches = [
            range(start, min(start + batch_size, len(self.queries)))
            for start in range(0, len(self.queries), batch_size)
        ]
        rank, world_size = get_dist_info()
        samples = []
        for idx, batch in enumerate(batches[rank::world_size]):
            data_batch = [self.queries[i] for i in batch]
            runner.call_hook(
                'before_test_iter', batch_idx=idx, data_batch=data_batch)
            if settings.task == 'classification':
                predictions = classify_batch(self.model, self.pipeline,
                                             settings, self.builder, selector,
                                             self.support, self.queries, batch,
                                             shots, trial, self.class_names,
                                             self.cache)
            else:
                predictions = predict_batch(self.model, self.pipeline,
                                            self.builder, selector,
                                            self.support, self.queries, batch,
                                            shots, self.cache)
            outputs = [
                to_metric_sample(settings.task, query, prediction,
                                 settings.answer_postprocess)
                for query, prediction in zip(data_batch, predictions)
            ]
            samples.extend(zip(batch, outputs))
            runner.call_hook(
                'after_test_iter',
                batch_idx=idx,
                data_batch=data_batch,
                outputs=outputs)
        if world_size > 1:
            samples = [s for part in all_gather_object(samples) for s in part]
        return [sample for _, sample in sorted(samples, key=lambda x: x[0])]

    def _evaluate(self, samples: MetricSamples, shots: int,
                  trial: int) -> Tuple[Dict[str, float], Dict[str, list]]:
        """Score one trial's samples with fresh metrics.

        Process r gives the metrics samples r, r + W, ...: the order in
        which mmengine's ``collect_results`` interleaves the processes'
        parts, so the metrics see the queries in order.

        Returns:
            tuple[dict, dict]: The metrics, and the per-query scores of the
            metrics that are means over queries (their ``sample_scores``,
            for confidence intervals), on every process.
        """
        evaluator = self.runner.build_evaluator([{
            **cfg, 'outfile_prefix':
            f"{cfg['outfile_prefix']}_{shots}shot_trial{trial}"
        } if cfg.get('outfile_prefix') else dict(cfg)
                                                 for cfg in self.metric_cfgs])
        evaluator.dataset_meta = getattr(self.query_set, 'metainfo', None)
        rank, world_size = get_dist_info()
        evaluator.process(samples[rank::world_size])
        metrics = evaluator.evaluate(len(samples))
        sample_scores: List[Optional[dict]] = [None]
        if rank == 0:
            sample_scores[0] = {
                (f'{metric.prefix}/' if metric.prefix else '') + name:
                list(values)
                for metric in evaluator.metrics
                for name, values in getattr(metric, 'sample_scores',
                                            {}).items()
            }
        if world_size > 1:
            broadcast_object_list(sample_scores, src=0)
        return metrics, sample_scores[0]


def _data_infos(dataset, name: str) -> List[dict]:
    """The data infos of ``dataset``; an empty one raises, naming it."""
    if len(dataset) == 0:
        raise ValueError(f'{name}: the dataset is empty')
    return [dataset.get_data_info(i) for i in range(len(dataset))]


def _class_names(settings: FewShotSettings, dataset) -> Sequence[str]:
    """The names classification ranks: the settings' or the dataset's."""
    names = (
        settings.class_names or dataset.metainfo.get('classes')
        or getattr(dataset, 'CLASS_NAMES', None))
    if not names:
        raise KeyError('test_cfg.class_names is needed: the query dataset '
                       f'{type(dataset).__name__} names no classes')
    return list(names)
