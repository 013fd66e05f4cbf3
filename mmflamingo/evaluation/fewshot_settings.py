"""The few-shot protocol's settings, checked once.

:class:`FewShotSettings` holds what ``test_cfg`` (the keys of a
:class:`~mmflamingo.engine.FewShotTestLoop` other than ``type``) says about a
few-shot evaluation; :meth:`FewShotSettings.from_cfg` checks every key and
value when the loop is built, so the rest of the evaluation reads typed
fields and never re-checks a dict. The query set and its batch size come
from ``test_dataloader`` and the metrics from ``test_evaluator``::

    test_dataloader = dict(
        batch_size=8,
        dataset=dict(type='KarpathyCaptionDataset', split='test', ...),
        sampler=dict(type='DefaultSampler', shuffle=False))
    test_evaluator = dict(type='CaptionMetric')
    test_cfg = dict(
        type='FewShotTestLoop',
        task='caption',                 # or 'vqa', 'classification'
        support=dict(type='KarpathyCaptionDataset', split='train', ...),
        shots=[0, 4, 8, 16, 32],
        num_trials=1)                   # and the fields below
"""
import dataclasses
from dataclasses import dataclass, field
from typing import List, Optional

from .answer_postprocess import check_answer_postprocess

__all__ = ['FewShotSettings', 'TASKS']

TASKS = ('caption', 'vqa', 'classification')
# where the configs of older versions said what to evaluate
OLD_KEY_HELP = (
    '`fewshot_eval` is no longer read: few-shot evaluation is the Runner\'s '
    "test loop. Move its keys to test_cfg = dict(type='FewShotTestLoop', "
    'task=..., support=..., shots=..., ...), its `query` dataset to '
    'test_dataloader = dict(batch_size=<its batch_size>, dataset=..., '
    "sampler=dict(type='DefaultSampler', shuffle=False)) and its `metric` to "
    'test_evaluator; see configs/_base_/datasets/coco_caption_fewshot.py')


@dataclass
class FewShotSettings:
    """What a few-shot evaluation does, besides its query set and metrics.

    Args:
        task (str): ``'caption'``, ``'vqa'`` (generate) or
            ``'classification'`` (rank class names, or each query's
            ``multiple_choices``, by log-likelihood).
        support (dict): The dataset config of the support set, where demos
            come from.
        shots (list[int]): The shot counts. Defaults to
            ``[0, 4, 8, 16, 32]``.
        num_trials (int): Trials per shot count; random demos are drawn
            with seed ``seed + trial``. Defaults to 1.
        seed (int): Defaults to 0.
        demo_selection (str): ``'random'`` or ``'rices'``. Defaults to
            ``'random'``.
        rices_support_features (str, optional): The support set's RICES
            features (``tools/cache_rices_features.py``); needed with
            ``'rices'``.
        rices_query_features (str, optional): The query set's.
        prompt (dict): :class:`~mmflamingo.evaluation.FewShotPromptBuilder`
            kwargs. Defaults to the task's templates.
        max_queries (int, optional): Evaluate the first N queries only.
        answer_postprocess (str, optional): How VQA generations are cut
            into answers (:mod:`~mmflamingo.evaluation.answer_postprocess`).
            Defaults to ``'openflamingo'``.
        class_names (list[str], optional): Classification: the names ranked.
            Defaults to the query dataset's.
        candidate_batch_size (int): Class names scored per LM call, after
            the prompt's cache (the prompt itself runs once per query).
            Defaults to 100.
        candidate_prefix (str): Text before each name, e.g. ``' '``.
            Defaults to ``''``.
        score_reduction (str): A name's score: the ``'sum'`` of its tokens'
            log-probabilities, or their ``'mean'`` (OpenFlamingo's ImageNet
            and HatefulMemes evaluations). Defaults to ``'sum'``.
        num_permutations (int): Demo orders averaged (prompt ensembling).
            Defaults to 1.
        demo_group_key (str, optional): A query's demos come from the
            support samples with the same value of this field (e.g.
            ``'episode'``).
        cache_media (bool): Compute each image's visual tokens once per run.
            Defaults to True.
        media_batch_size (int): Media per vision-encoder forward of the
            cache. Defaults to 16.
        media_cache_device (str, optional): Where cached visual tokens are
            kept (e.g. ``'cpu'``). Defaults to the model's device.
        media_pipeline (list[dict], optional): How a medium is loaded (e.g.
            ``LoadVideoFrames`` for videos). Defaults to images.
    """
    task: str
    support: dict
    shots: List[int] = field(default_factory=lambda: [0, 4, 8, 16, 32])
    num_trials: int = 1
    seed: int = 0
    demo_selection: str = 'random'
    rices_support_features: Optional[str] = None
    rices_query_features: Optional[str] = None
    prompt: dict = field(default_factory=dict)
    max_queries: Optional[int] = None
    answer_postprocess: Optional[str] = 'openflamingo'
    class_names: Optional[List[str]] = None
    candidate_batch_size: int = 100
    candidate_prefix: str = ''
    score_reduction: str = 'sum'
    num_permutations: int = 1
    demo_group_key: Optional[str] = None
    cache_media: bool = True
    media_batch_size: int = 16
    media_cache_device: Optional[str] = None
    media_pipeline: Optional[List[dict]] = None

    @classmethod
    def from_cfg(cls, cfg: dict) -> 'FewShotSettings':
        """Check ``test_cfg`` (without ``type``) and build the settings.

        Raises:
            KeyError: For an unknown or a missing key, naming it.
            ValueError: For a bad value, naming its key.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(cfg) - set(names))
        if unknown:
            hint = ''
            if 'metric' in unknown or 'query' in unknown or \
                    'batch_size' in unknown:
                hint = ('; the query set and its batch size belong in '
                        'test_dataloader, the metrics in test_evaluator')
            raise KeyError(f'test_cfg has unknown key(s) {unknown}{hint}')
        missing = [n for n in ('task', 'support') if n not in cfg]
        if missing:
            raise KeyError(f'test_cfg lacks the key(s) {missing}')
        settings = cls(**cfg)
        settings.check()
        return settings

    def check(self) -> None:
        """Raise ``ValueError`` naming the first bad value."""
        if self.task not in TASKS:
            raise ValueError(f'test_cfg.task must be one of {TASKS}, got '
                             f'{self.task!r}')
        check_answer_postprocess(self.answer_postprocess)
        if self.demo_selection not in ('random', 'rices'):
            raise ValueError("test_cfg.demo_selection must be 'random' or "
                             f"'rices', got {self.demo_selection!r}")
        if self.demo_selection == 'rices':
            for key in ('rices_support_features', 'rices_query_features'):
                if not getattr(self, key):
                    raise ValueError(f"test_cfg.{key} is needed with "
                                     "demo_selection='rices'")
        if self.score_reduction not in ('sum', 'mean'):
            raise ValueError("test_cfg.score_reduction must be 'sum' or "
                             f"'mean', got {self.score_reduction!r}")
        if not self.shots or any(s < 0 for s in self.shots):
            raise ValueError('test_cfg.shots must be non-negative shot '
                             f'counts, got {self.shots}')
        for key in ('num_trials', 'candidate_batch_size', 'num_permutations',
                    'media_batch_size'):
            if getattr(self, key) < 1:
                raise ValueError(f'test_cfg.{key} must be positive, got '
                                 f'{getattr(self, key)}')
        if self.max_queries is not None and self.max_queries < 1:
            raise ValueError('test_cfg.max_queries must be positive, got '
                             f'{self.max_queries}')

    def trial_seed(self, trial: int) -> int:
        """The seed of trial ``trial``'s random demos and demo orders."""
        return self.seed + trial

    def trials_differ(self, sampling: bool) -> bool:
        """Whether trials can give different predictions.

        RICES picks the same demos in every trial; only random demo orders
        (``num_permutations`` > 1) or sampled generations (``sampling``)
        then differ between trials.
        """
        return (self.demo_selection == 'random' or sampling or
                (self.task == 'classification' and self.num_permutations > 1))
