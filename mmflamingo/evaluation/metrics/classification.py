"""Metrics of classification by ranking class names (ImageNet, HatefulMemes).

The model scores every class name as a continuation of the prompt (its score
mode): ``pred_scores`` holds one log-likelihood per class, and the predicted
class is the most likely one, as in OpenFlamingo's classification evaluation.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.evaluator import BaseMetric

from mmflamingo.registry import METRICS

__all__ = ['RankClassificationMetric', 'ROCAUC', 'roc_auc']


def _label(sample: dict) -> int:
    if 'gt_label' not in sample:
        raise KeyError("the data sample has no 'gt_label' (the index of its "
                       'class among the scored class names)')
    label = np.asarray(sample['gt_label']).reshape(-1)
    if label.size != 1:
        raise ValueError('gt_label must be a single class index, got '
                         f'{label.tolist()}')
    return int(label[0])


def _scores(sample: dict) -> np.ndarray:
    if 'pred_scores' not in sample:
        raise KeyError("the data sample has no 'pred_scores' (one "
                       "log-likelihood per class, from the model's score "
                       'mode)')
    return np.asarray(sample['pred_scores'], dtype=np.float64).reshape(-1)


@METRICS.register_module()
class RankClassificationMetric(BaseMetric):
    """Top-k accuracy of the class names ranked by their log-likelihood.

    Each data sample needs ``pred_scores`` (a ``(C, )`` tensor, array or
    list: the log-likelihood of each class name) and ``gt_label`` (int: the
    index of the true class in that order). A sample is right at k if its
    class is among the k highest scores; tied scores rank the lower class
    index first. With fewer than k classes every sample is right at k.

    Reports ``accuracy/top{k}`` for each k, in percent. After
    :meth:`compute_metrics`, ``sample_scores`` holds each sample's (100 or
    0, their mean is the accuracy), for confidence intervals.

    Args:
        topk (int | Sequence[int]): The k's. Defaults to ``(1, 5)``.
        collect_device (str): Device to gather the results of all ranks on,
            'cpu' or 'gpu'. Defaults to 'cpu'.
        prefix (str, optional): Prefix of the metric names, e.g. 'imagenet'.
            Defaults to None.
    """
    default_prefix: Optional[str] = 'classification'

    def __init__(self,
                 topk: Union[int, Sequence[int]] = (1, 5),
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk: Tuple[int, ...] = (topk, ) if isinstance(
            topk, int) else tuple(topk)
        if not self.topk or min(self.topk) < 1:
            raise ValueError(f'topk must be positive integers, got {topk}')

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Keep the rank of the true class of each sample of a batch.

        Args:
            data_batch: The batch from the dataloader (unused).
            data_samples (Sequence[dict]): The model's outputs, as dicts.
        """
        for sample in data_samples:
            scores, label = _scores(sample), _label(sample)
            if not 0 <= label < len(scores):
                raise ValueError(
                    f'gt_label {label} is not the index of one of '
                    f'the {len(scores)} scored classes')
            order = np.argsort(-scores, kind='stable')
            self.results.append(
                dict(rank=int(np.flatnonzero(order == label)[0])))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """The top-k accuracies over all samples.

        Args:
            results (list[dict]): What :meth:`process` kept, from all ranks.

        Returns:
            dict[str, float]: ``accuracy/top{k}`` in percent.
        """
        ranks = np.array([r['rank'] for r in results])
        self.sample_scores = {
            f'accuracy/top{k}': (100. * (ranks < k)).tolist()
            for k in self.topk
        }
        return {
            name: float(np.mean(scores))
            for name, scores in self.sample_scores.items()
        }


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Area under the ROC curve, in [0, 1].

    The probability that a random positive scores higher than a random
    negative, a tie counting one half: by the rank formula
    ``(sum of the positives' ranks - P (P + 1) / 2) / (P N)``, with tied
    scores given their average rank.

    Args:
        labels (Sequence[int]): 1 for the positives, 0 for the negatives.
        scores (Sequence[float]): The score of each sample for the positive
            class.

    Returns:
        float: The area.
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    num_pos = int(labels.sum())
    num_neg = len(labels) - num_pos
    if num_pos == 0 or num_neg == 0:
        raise ValueError('the ROC AUC needs positives and negatives, got '
                         f'{num_pos} positives and {num_neg} negatives')
    # 1-based ranks; a run of tied scores shares the mean of its ranks
    _, group, counts = np.unique(
        scores, return_inverse=True, return_counts=True)
    last_rank = np.cumsum(counts)
    ranks = (last_rank - (counts - 1) / 2)[group]
    return float((ranks[labels].sum() - num_pos * (num_pos + 1) / 2) /
                 (num_pos * num_neg))


@METRICS.register_module()
class ROCAUC(BaseMetric):
    """Area under the ROC curve of a binary task (HatefulMemes), x100.

    Each data sample needs ``pred_scores`` (the log-likelihood of each class
    name) and ``gt_label`` (int: the index of its class). As in OpenFlamingo,
    the score of a sample is the probability of the positive class, the
    softmax of ``pred_scores`` at ``pos_label``.

    Reports ``roc_auc`` in percent (:func:`roc_auc`).

    Args:
        pos_label (int): The index of the positive class (for HatefulMemes
            with the class names ``['no', 'yes']``, 1: hateful). Defaults
            to 1.
        collect_device (str): Device to gather the results of all ranks on,
            'cpu' or 'gpu'. Defaults to 'cpu'.
        prefix (str, optional): Prefix of the metric names, e.g.
            'hateful_memes'. Defaults to None.
    """
    default_prefix: Optional[str] = 'classification'

    def __init__(self,
                 pos_label: int = 1,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.pos_label = pos_label

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Keep the positive-class probability and label of each sample.

        Args:
            data_batch: The batch from the dataloader (unused).
            data_samples (Sequence[dict]): The model's outputs, as dicts.
        """
        for sample in data_samples:
            scores = _scores(sample)
            if not 0 <= self.pos_label < len(scores):
                raise ValueError(
                    f'pos_label {self.pos_label} is not the index '
                    f'of one of the {len(scores)} scored classes')
            probs = np.exp(scores - scores.max())
            self.results.append(
                dict(
                    score=float(probs[self.pos_label] / probs.sum()),
                    label=int(_label(sample) == self.pos_label)))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """The area under the ROC curve over all samples.

        Args:
            results (list[dict]): What :meth:`process` kept, from all ranks.

        Returns:
            dict[str, float]: ``roc_auc`` in percent.
        """
        auc = roc_auc([r['label'] for r in results],
                      [r['score'] for r in results])
        return {'roc_auc': 100 * auc}
