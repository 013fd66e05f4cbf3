import itertools

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmpretrain.structures import DataSample

from mmflamingo.evaluation import ROCAUC, RankClassificationMetric, roc_auc
from mmflamingo.registry import METRICS


def _evaluate(metric, samples):
    metric.process(None, samples)
    return metric.evaluate(len(samples))


def test_topk_accuracy():
    scores = [
        [-1., -2., -3., -4., -5., -6.],  # class 0 first
        [-6., -5., -4., -3., -2., -1.],  # class 0 sixth
        [-3., -1., -2., -9., -9., -9.],  # class 0 third
        [-1., -1., -5., -5., -5., -5.],  # tie: class 0 before class 1
    ]
    samples = [
        dict(pred_scores=torch.tensor(s), gt_label=label)
        for s, label in zip(scores, [0, 0, 0, 1])
    ]
    metric = METRICS.build(
        dict(type='RankClassificationMetric', topk=(1, 2, 5)))
    assert _evaluate(metric, samples) == pytest.approx({
        'classification/accuracy/top1':
        25.,
        'classification/accuracy/top2':
        50.,
        'classification/accuracy/top5':
        75.,
    })


def test_topk_larger_than_the_classes_and_evaluator():
    evaluator = Evaluator(RankClassificationMetric(prefix='hm'))
    sample = DataSample(pred_scores=torch.tensor([-2., -1.])).set_gt_label(0)
    evaluator.process([sample])
    assert evaluator.evaluate(1) == {
        'hm/accuracy/top1': 0.,
        'hm/accuracy/top5': 100.
    }


def test_rank_errors():
    with pytest.raises(ValueError, match='gt_label 3'):
        RankClassificationMetric().process(
            None, [dict(pred_scores=[0., 1.], gt_label=3)])
    with pytest.raises(KeyError, match='pred_scores'):
        RankClassificationMetric().process(None, [dict(gt_label=0)])
    with pytest.raises(ValueError, match='topk'):
        RankClassificationMetric(topk=0)


@pytest.mark.parametrize(
    'labels,scores,expected',
    [
        ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], 0.75),
        ([0, 1], [0.2, 0.9], 1.),
        ([0, 1], [0.9, 0.2], 0.),
        ([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9], 0.875),  # a tie counts 1/2
        ([0, 1, 1, 0, 0], [0.3, 0.3, 0.3, 0.3, 0.3], 0.5),  # all tied
        ([1, 0, 0, 1, 0], [0.7, 0.7, 0.1, 0.2, 0.2], (2.5 + 1.5) / 6),
    ])
def test_roc_auc_hand_computed(labels, scores, expected):
    assert roc_auc(labels, scores) == pytest.approx(expected)


def test_roc_auc_equals_pairwise_count():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 40)
    scores = rng.integers(0, 6, 40) / 5  # many ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = [(p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg)]
    assert roc_auc(labels, scores) == pytest.approx(np.mean(pairs))


def test_roc_auc_metric_uses_the_positive_class_probability():
    # log-likelihoods of ['no', 'yes']; P(yes) = 0.2, 0.6, 0.6, 0.9
    probs = [0.2, 0.6, 0.6, 0.9]
    samples = [
        dict(
            pred_scores=torch.tensor([np.log(1 - p), np.log(p)]) - 7,
            gt_label=label) for p, label in zip(probs, [0, 1, 0, 1])
    ]
    # yes (0.6) vs no (0.6) ties, the other three pairs are right
    assert _evaluate(ROCAUC(), samples) == {
        'classification/roc_auc': pytest.approx(87.5)
    }
    # the same task with the class names in the order ['yes', 'no']
    samples = [
        dict(pred_scores=s['pred_scores'].flip(0), gt_label=1 - s['gt_label'])
        for s in samples
    ]
    assert _evaluate(ROCAUC(pos_label=0), samples) == {
        'classification/roc_auc': pytest.approx(87.5)
    }


def test_roc_auc_errors():
    with pytest.raises(ValueError, match='positives and negatives'):
        roc_auc([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match='pos_label 2'):
        ROCAUC(pos_label=2).process(None,
                                    [dict(pred_scores=[0., 1.], gt_label=0)])


def test_sample_scores_are_each_samples_hit():
    """After compute_metrics, sample_scores['accuracy/top{k}'] holds 100 for
    each sample whose class is among its k best scores, else 0, in order;
    their mean is the reported accuracy."""
    scores = [
        [-1., -2., -3., -4., -5., -6.],  # class 0 first
        [-6., -5., -4., -3., -2., -1.],  # class 0 sixth
        [-3., -1., -2., -9., -9., -9.],  # class 0 third
        [-1., -1., -5., -5., -5., -5.],  # tie: class 1 second
    ]
    samples = [
        dict(pred_scores=torch.tensor(s), gt_label=label)
        for s, label in zip(scores, [0, 0, 0, 1])
    ]
    metric = RankClassificationMetric(topk=(1, 2, 5))
    accuracies = _evaluate(metric, samples)
    assert metric.sample_scores == {
        'accuracy/top1': [100., 0., 0., 0.],
        'accuracy/top2': [100., 0., 0., 100.],
        'accuracy/top5': [100., 0., 100., 100.],
    }
    for name, values in metric.sample_scores.items():
        assert all(isinstance(v, float) for v in values)
        assert accuracies[f'classification/{name}'] == pytest.approx(
            np.mean(values))
