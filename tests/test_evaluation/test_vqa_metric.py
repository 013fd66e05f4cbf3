"""The VQA accuracy against the rules of the official VQA evaluation
(GT-Vision-Lab/VQA ``vqaEval.py``), one test per rule; every expected value
is worked out by hand from what that script does."""
import mmengine
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmpretrain.structures import DataSample

from mmflamingo.evaluation import (VQAAccuracy, normalize_vqa_answer,
                                   round_half_away, summarize_vqa_accuracy,
                                   vqa_accuracy)
from mmflamingo.registry import METRICS


def vqav2_records(answers):
    """VQAv2's answer records: each has its own answer_id."""
    return [
        dict(answer=a, answer_confidence='yes', answer_id=i + 1)
        for i, a in enumerate(answers)
    ]


def vizwiz_records(answers, confidences=None):
    """VizWiz's answer records: no answer_id."""
    confidences = confidences or ['yes'] * len(answers)
    return [
        dict(answer=a, answer_confidence=c)
        for a, c in zip(answers, confidences)
    ]


def test_answers_and_prediction_are_cleaned():
    # newlines and tabs become spaces, ends are stripped, always: the
    # answers are then all 'yes' (not normalised) and the prediction too
    answers = vqav2_records(['yes\t', ' yes'] + ['yes'] * 8)
    assert vqa_accuracy(' yes\n', answers) == 1
    # inside the text a newline is a space: 'red car' != 'red  car' since
    # identical answers are not normalised, so the split does not join them
    assert vqa_accuracy('red\ncar', vqav2_records(['red car'] * 10)) == 1
    assert vqa_accuracy('red \ncar', vqav2_records(['red car'] * 10)) == 0


@pytest.mark.parametrize('pred', ['Yes', 'yes.', 'YES', 'yes!'])
def test_identical_answers_are_not_normalised(pred):
    # ten identical 'yes': neither they nor the prediction are normalised,
    # so only the exact string matches
    assert vqa_accuracy(pred, vqav2_records(['yes'] * 10)) == 0
    assert vqa_accuracy('yes', vqav2_records(['yes'] * 10)) == 1
    # one different answer: everything is normalised, 'Yes.' -> 'yes' has
    # 9 matches: a 'yes' record leaves 8 (>= 3 -> 1), 'no' leaves 9 -> 1
    assert vqa_accuracy(pred, vqav2_records(['yes'] * 9 + ['no'])) == 1


def test_identical_number_words_are_not_mapped():
    assert vqa_accuracy('2', vqav2_records(['two'] * 10)) == 0
    # with another answer 'two' -> '2': 9 matches -> 1
    assert vqa_accuracy('2', vqav2_records(['two'] * 9 + ['3'])) == 1


def test_normalisation_when_answers_differ():
    # normalised: '2 dogs', '2 dogs', '2 dogs', 'cat'; prediction '2 dogs'.
    # A '2 dogs' record leaves 2 matches -> 2/3; the 'cat' record leaves 3
    # -> 1; mean (3 * 2/3 + 1) / 4 = 0.75
    answers = vqav2_records(['Two dogs', '2 dogs', 'two dogs.', 'cat'])
    assert vqa_accuracy('2 Dogs', answers) == pytest.approx(0.75)


@pytest.mark.parametrize('matches,expected', [(0, 0.), (1, 0.3), (2, 0.6),
                                              (3, 0.9), (4, 1.), (10, 1.)])
def test_leave_one_out_with_answer_ids(matches, expected):
    # m of 10 match: a matching record leaves m - 1, another leaves m, so
    # (m min(1, (m-1)/3) + (10-m) min(1, m/3)) / 10: 2 -> (2/3 + 16/3) / 10
    answers = vqav2_records(['cat'] * matches + ['dog'] * (10 - matches))
    assert vqa_accuracy('cat', answers) == pytest.approx(expected)


def test_answer_strings_are_records_with_ids():
    answers = ['cat'] * 3 + ['dog'] * 7
    assert vqa_accuracy('cat', answers) == pytest.approx(0.9)
    # the same records as VQAv2's, whose ids tell equal answers apart
    with_ids = vqa_accuracy('cat', vqav2_records(answers))
    assert vqa_accuracy('cat', answers) == with_ids


def test_leave_one_out_without_answer_ids():
    # VizWiz: a record leaves out every record equal to it. A 'cat' record
    # leaves out the 3 cats -> 0 matches; a 'dog' record leaves the 3 cats
    # -> 1; mean 7 / 10 (0.9 with answer ids)
    answers = vizwiz_records(['cat'] * 3 + ['dog'] * 7)
    assert vqa_accuracy('cat', answers) == pytest.approx(0.7)
    # the records differ by their confidence too: the 2 'cat'/'yes' leave
    # 'cat'/'maybe' -> 1/3 each, 'cat'/'maybe' leaves 2 cats -> 2/3, the
    # dogs leave 3 cats -> 1: (2/3 + 2/3 + 7) / 10
    answers = vizwiz_records(['cat'] * 3 + ['dog'] * 7,
                             ['yes', 'yes', 'maybe'] + ['yes'] * 7)
    assert vqa_accuracy('cat', answers) == pytest.approx(25 / 30)
    # ten identical records leave each other out: 0 whatever the prediction
    assert vqa_accuracy('yes', vizwiz_records(['yes'] * 10)) == 0


def test_records_are_compared_after_normalisation():
    # 'Yes' and 'yes' differ, so all are normalised, and then the two
    # records are equal and leave each other out: 'yes' records -> 0, the
    # 'no' record leaves 2 matches -> 2/3; mean 2/9
    answers = vizwiz_records(['Yes', 'yes', 'no'])
    assert vqa_accuracy('yes', answers) == pytest.approx(2 / 9)
    # with answer ids they stay apart: 1/3, 1/3, 2/3 -> 4/9
    answers = vqav2_records(['Yes', 'yes', 'no'])
    assert vqa_accuracy('yes', answers) == pytest.approx(4 / 9)


def test_records_are_not_modified():
    answers = vqav2_records(['Yes.', 'no'])
    vqa_accuracy('yes', answers)
    assert answers == vqav2_records(['Yes.', 'no'])


def test_single_record_scores_zero():
    # no other annotator is left to agree with
    assert vqa_accuracy('cat', ['cat']) == 0


def test_at_most_32_periods_are_removed():
    # the official sub() gets re.UNICODE (32) as its count
    assert normalize_vqa_answer('.' * 40) == '.' * 8
    # the period of 'a.b' counts: 31 of the next 32 go
    assert normalize_vqa_answer('a.b' + '.' * 32) == 'ab.'
    answers = vqav2_records(['yes'] * 9 + ['no'])
    assert vqa_accuracy('yes' + '.' * 32, answers) == 1
    assert vqa_accuracy('yes' + '.' * 33, answers) == 0  # 'yes.'


@pytest.mark.parametrize(
    'text,expected',
    [
        ('black-white', 'black white'),  # between letters: a space
        ('black - white', 'black white'),  # touching a space: deleted
        ('a -b-c', 'bc'),  # one '-' touches a space: every '-' deleted
        ('x;-y z-w', 'x y z w'),  # tested on the text as it came
        ('1,000', '1000'),  # a comma between digits: all deleted
        ('1,000 black-white', '1000 blackwhite'),
        ('1, 000', '1 000'),
        ('red,white', 'red white'),
        ('why?', 'why'),
        ('(x)', 'x'),
        ('x/y', 'x y'),
        ("don't", "don't"),  # the apostrophe is not punctuation
        ('yes.', 'yes'),
        ('u.s.a.', 'usa'),  # periods are deleted, not spaces
        ('2.5', '2.5'),  # a period before a digit stays
        ('.5', '.5'),
        ('5.', '5'),  # after a digit it goes: (?!<=\\d) is no lookbehind
        ('\u0661,\u0660', '\u0661 \u0660'),  # digits are ASCII digits
    ])
def test_punctuation(text, expected):
    assert normalize_vqa_answer(text) == expected


@pytest.mark.parametrize(
    'text,expected',
    [
        ('Two', '2'),
        ('none', '0'),
        ('Ten', '10'),
        ('eleven', 'eleven'),  # the map stops at ten
        ('The Cat', 'cat'),
        ('an apple a day', 'apple day'),
        ('theme', 'theme'),  # whole words only
        ('dont', "don't"),
        ('Dont', "don't"),  # lowercased first
        ('isnt two', "isn't 2"),
        ('Im', 'im'),  # capitalised keys of the table never match
        ("somebody'd", 'somebodyd'),  # the table's reversed entry
        ('  a   dog  ', 'dog'),
    ])
def test_number_words_articles_contractions(text, expected):
    assert normalize_vqa_answer(text) == expected


def test_rounding():
    # one right of 32: 100 / 32 = 3.125 exactly, rounded half away from
    # zero as Python 2 does (Python 3's round gives 3.12)
    assert summarize_vqa_accuracy([1.] + [0.] * 31) == {'accuracy': 3.13}
    assert summarize_vqa_accuracy([1 / 3]) == {'accuracy': 33.33}
    assert summarize_vqa_accuracy([2 / 3]) == {'accuracy': 66.67}
    assert round_half_away(0.125) == 0.13
    assert round_half_away(2.675) == 2.67  # the float is 2.67499...
    assert round_half_away(22.2222, 3) == 22.222


def test_per_answer_type():
    accs = [1., 0., 0., 1., 0.3]
    types = ['number', 'number', 'number', 'yes/no', 'yes/no']
    assert summarize_vqa_accuracy(accs, types) == {
        'accuracy': 46.,  # 2.3 / 5
        'accuracy/number': 33.33,
        'accuracy/yes/no': 65.,
    }
    # questions without a type count in the overall accuracy only
    assert summarize_vqa_accuracy([1., 0.], ['other', None]) == {
        'accuracy': 50.,
        'accuracy/other': 100.,
    }


def _evaluate(metric, samples):
    metric.process(None, samples)
    return metric.evaluate(len(samples))


def test_metric():
    metric = METRICS.build(dict(type='VQAAccuracy'))
    samples = [
        dict(
            pred_answer='2',
            gt_answer=vqav2_records(['two'] * 2 + ['3'] * 8),
            question_id=1,
            answer_type='number'),  # 0.6
        dict(
            pred_answer='yes',
            gt_answer=vizwiz_records(['yes'] * 10),
            question_id=2,
            answer_type='yes/no'),  # 0: VizWiz records
        dict(
            pred_answer='yes',
            gt_answer=['yes'] * 10,
            question_id=3,
            answer_type='yes/no'),  # 1: strings have ids
        dict(
            pred_answer='yes Question: is it?',
            gt_answer=['yes'] * 10,
            question_id=4,
            answer_type='yes/no'),  # 0: scored as given
    ]
    assert _evaluate(metric, samples) == {
        'vqa/accuracy': 40.,
        'vqa/accuracy/number': 60.,
        'vqa/accuracy/yes/no': 33.33,
    }


def test_metric_through_mmengine_evaluator():
    evaluator = Evaluator(VQAAccuracy())
    sample = DataSample(
        pred_answer='a Dog.', gt_answer=['dog'] * 3 + ['cat'] * 7)
    evaluator.process([sample])
    assert evaluator.evaluate(1) == {'vqa/accuracy': 90.}


def test_errors():
    with pytest.raises(ValueError, match='outfile_prefix'):
        VQAAccuracy(format_only=True)
    with pytest.raises(KeyError, match='gt_answer'):
        VQAAccuracy().process(None, [dict(pred_answer='a', question_id=7)])
    with pytest.raises(ValueError, match="question 7: .*got 'dog'"):
        VQAAccuracy().process(
            None, [dict(pred_answer='a', gt_answer='dog', question_id=7)])
    with pytest.raises(ValueError, match='question 8: .*string "answer"'):
        VQAAccuracy().process(
            None,
            [dict(pred_answer='a', gt_answer=[dict(ans='a')], question_id=8)])
    with pytest.raises(ValueError, match='list of the annotators'):
        vqa_accuracy('a', [])
    with pytest.raises(TypeError, match="unexpected argument 'postproces'"):
        VQAAccuracy(postproces=True)


@pytest.mark.parametrize('key', ['postprocess', 'stem_answers'])
def test_removed_options(key):
    with pytest.raises(TypeError, match=f"'{key}'.*answer_postprocess"):
        METRICS.build(dict(type='VQAAccuracy', **{key: True}))


def test_format_only_writes_evalai_json(tmp_path):
    prefix = str(tmp_path / 'out' / 'vqav2_test-dev')
    metric = VQAAccuracy(format_only=True, outfile_prefix=prefix)
    # no ground truth at test-dev; ids may come as tensors from collate
    samples = [
        dict(pred_answer='washington, dc', question_id=262148000),
        dict(pred_answer='yes', question_id=torch.tensor(5)),
    ]
    assert _evaluate(metric, samples) == {}
    assert mmengine.load(f'{prefix}.json') == [
        {
            'question_id': 262148000,
            'answer': 'washington, dc'
        },
        {
            'question_id': 5,
            'answer': 'yes'
        },
    ]


def test_sample_scores_are_each_questions_accuracy():
    """After compute_metrics, sample_scores['accuracy'] holds each
    question's accuracy in percent, in order, unrounded; their mean is the
    reported accuracy up to its rounding to 2 decimals."""
    metric = VQAAccuracy()
    samples = [
        dict(
            pred_answer='2',
            gt_answer=vqav2_records(['two'] * 2 + ['3'] * 8),
            question_id=1,
            answer_type='number'),  # 0.6
        dict(pred_answer='yes', gt_answer=['yes'] * 10, question_id=2),  # 1
        dict(pred_answer='no', gt_answer=['yes'] * 10, question_id=3),  # 0
        # 'Yes' and 'yes' are normalised and leave each other out: 2 / 9
        dict(
            pred_answer='yes',
            gt_answer=vizwiz_records(['Yes', 'yes', 'no']),
            question_id=4),
    ]
    scores = _evaluate(metric, samples)
    assert set(metric.sample_scores) == {'accuracy'}
    assert metric.sample_scores['accuracy'] == pytest.approx(
        [60., 100., 0., 100 * 2 / 9])
    mean = sum(metric.sample_scores['accuracy']) / len(samples)
    assert scores['vqa/accuracy'] == round_half_away(mean, 2)
    assert scores['vqa/accuracy'] != mean  # 45.5555...: rounded
    assert abs(scores['vqa/accuracy'] - mean) <= 0.005
    # a second run scores its own questions only
    metric = VQAAccuracy()
    _evaluate(metric, samples[2:3])
    assert metric.sample_scores == {'accuracy': [0.]}
