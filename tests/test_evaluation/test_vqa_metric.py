import itertools

import mmengine
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmpretrain.structures import DataSample
from open_flamingo.eval.vqa_metric import VQAEval

from mmflamingo.evaluation import (VQAAccuracy, normalize_vqa_answer,
                                   postprocess_vqa_generation, stem_vqa_answer,
                                   vqa_accuracy)
from mmflamingo.evaluation.metrics.vqa import _CONTRACTIONS
from mmflamingo.registry import METRICS


def _leave_one_out(pred, answers):
    """The official definition, literally: every subset of 9 of the 10."""
    subsets = itertools.combinations(answers, len(answers) - 1)
    return sum(min(1,
                   sum(a == pred for a in s) / 3)
               for s in subsets) / len(answers)


@pytest.mark.parametrize('matches,expected', [(0, 0.), (1, 30.), (2, 60.),
                                              (3, 90.), (4, 100.), (10, 100.)])
def test_accuracy_by_number_of_matching_answers(matches, expected):
    answers = ['cat'] * matches + ['dog'] * (10 - matches)
    assert 100 * vqa_accuracy('cat', answers) == pytest.approx(expected)
    assert vqa_accuracy('cat', answers) == pytest.approx(
        _leave_one_out('cat', answers))


@pytest.mark.parametrize('pred,answer',
                         [('Two', '2'), ('a dog', 'dog'), ('The Dog', 'dog'),
                          ('dont', "don't"), ('yes.', 'yes'),
                          ('1,000', '1000'), ('none', '0'),
                          (' black-and-white\n', 'black and white'),
                          ('2.5', '2.5'), ('red, white', 'red white'),
                          ('ten', '10')])
def test_normalisation_matches(pred, answer):
    assert normalize_vqa_answer(pred) == normalize_vqa_answer(answer)
    assert vqa_accuracy(pred, [answer] * 10) == 1


def test_normalisation_keeps_what_differs():
    assert normalize_vqa_answer('2.5') == '2.5'  # a period inside a number
    assert normalize_vqa_answer('1, 000') == '1 000'  # not a number's comma
    assert normalize_vqa_answer('1.000') != normalize_vqa_answer('1000')
    assert vqa_accuracy('dogs', ['dog'] * 10) == 0


def test_normalisation_equals_openflamingo_vqa_eval():
    """OpenFlamingo's copy of the official evaluation, as the reference."""
    ref = VQAEval(None, None)
    cases = [
        'Two', 'a dog', 'dont', 'yes.', '1,000', '1,000 dogs!', 'u.s.a.',
        'mr. smith 2.5', '  The  Cat; ', 'hello?world', 'x - y', '(a) b',
        'it"s', '3.14.', 'a/b', 'Ten dogs.', 'black-and-white', "Isn't",
        'an apple, a pear'
    ] + list(_CONTRACTIONS)
    for text in cases:
        expected = ref.processDigitArticle(
            ref.processPunctuation(text.strip()))
        assert normalize_vqa_answer(text) == expected, text


@pytest.mark.parametrize(
    'text,expected',
    [
        (' yes', 'yes'),
        (' a dog, a cat', 'a dog'),
        (' two\nQuestion: what is it? Short answer: one', 'two'),
        ('red Answer: blue', 'red'),
        ('blue Short', 'blue'),
        ('1,000', '1,000'),  # only ', ' cuts
    ])
def test_postprocess(text, expected):
    assert postprocess_vqa_generation(text) == expected


@pytest.mark.parametrize('word,stem', [('dogs', 'dog'), ('running', 'run'),
                                       ('riding', 'ride'), ('surfing', 'surf'),
                                       ('skiing', 'ski'), ('eating', 'eat'),
                                       ('king', 'king'), ('boxes', 'box'),
                                       ('berries', 'berry'),
                                       ('tomatoes', 'tomato'),
                                       ('leaves', 'leaf'), ('glass', 'glass'),
                                       ('bus', 'bus'), ('yes', 'yes'),
                                       ('tennis', 'tennis'),
                                       ("domino's", 'domino'),
                                       ('Two Dogs', 'two dog'),
                                       ('dogs.', 'dog.'), ('"cats"', '"cat"')])
def test_stem(word, stem):
    assert stem_vqa_answer(word) == stem


def _evaluate(metric, samples):
    metric.process(None, samples)
    return metric.evaluate(len(samples))


def test_metric_mean_and_answer_types():
    metric = METRICS.build(dict(type='VQAAccuracy'))
    samples = [
        dict(
            pred_answer=' Two, three',
            gt_answer=['2'] * 2 + ['3'] * 8,
            question_id=1,
            answer_type='number'),  # 60
        dict(
            pred_answer=' yes Question: is it?',
            gt_answer=['yes'] * 10,
            question_id=2,
            answer_type='yes/no'),  # 100
        dict(
            pred_answer='no',
            gt_answer=['yes'] * 10,
            question_id=3,
            answer_type='yes/no'),  # 0
    ]
    assert _evaluate(metric, samples) == pytest.approx({
        'vqa/accuracy':
        160 / 3,
        'vqa/accuracy/number':
        60.,
        'vqa/accuracy/yes/no':
        50.,
    })


def test_metric_options():
    sample = dict(pred_answer='dogs, cats', gt_answer=['dog'] * 10)
    assert _evaluate(VQAAccuracy(), [sample]) == {'vqa/accuracy': 0.}
    assert _evaluate(VQAAccuracy(stem_answers=True), [sample]) == {
        'vqa/accuracy': 100.
    }
    assert _evaluate(
        VQAAccuracy(postprocess=False, prefix='okvqa'),
        [dict(pred_answer='dog Question', gt_answer=['dog'] * 10)]) == {
            'okvqa/accuracy': 0.
        }


def test_metric_through_mmengine_evaluator():
    evaluator = Evaluator(VQAAccuracy())
    sample = DataSample(
        pred_answer='a Dog.', gt_answer=['dog'] * 3 + ['cat'] * 7)
    evaluator.process([sample])
    assert evaluator.evaluate(1) == {'vqa/accuracy': pytest.approx(90.)}


def test_errors():
    with pytest.raises(ValueError, match='outfile_prefix'):
        VQAAccuracy(format_only=True)
    with pytest.raises(KeyError, match='gt_answer'):
        VQAAccuracy().process(None, [dict(pred_answer='a', question_id=7)])
    with pytest.raises(TypeError, match="the string 'dog'"):
        VQAAccuracy().process(None, [dict(pred_answer='a', gt_answer='dog')])
    with pytest.raises(ValueError, match='several annotators'):
        vqa_accuracy('a', ['a'])


def test_format_only_writes_evalai_json(tmp_path):
    prefix = str(tmp_path / 'out' / 'vqav2_test-dev')
    metric = VQAAccuracy(format_only=True, outfile_prefix=prefix)
    # no ground truth at test-dev; ids may come as tensors from collate
    samples = [
        dict(pred_answer=' Two, three', question_id=262148000),
        dict(pred_answer=' yes\nQuestion: x', question_id=torch.tensor(5)),
    ]
    assert _evaluate(metric, samples) == {}
    assert mmengine.load(f'{prefix}.json') == [
        {
            'question_id': 262148000,
            'answer': 'Two'
        },
        {
            'question_id': 5,
            'answer': 'yes'
        },
    ]
