from unittest import mock

import mmengine
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from mmflamingo.evaluation import CaptionMetric, postprocess_caption_generation
from mmflamingo.registry import METRICS

PREDICTIONS = [
    ' A dog sleeping on a "red" sofa. Output: a cat',
    ' two cats play with a ball',
    ' a man rides a horse on the beach.\n',
    '',
]
REFERENCES = [
    [
        'A dog is asleep on a red couch.', 'a dog lying on the sofa',
        'A brown dog sleeps on a red sofa.'
    ],
    ['Two kittens playing with a ball of yarn.', 'two cats and a ball'],
    [
        'A man riding a horse along the beach.',
        'a person on a horse by the sea',
        'Someone rides a brown horse on the sand.'
    ],
    ['A plate of food.', 'some food on a plate'],
]
# building SPICE downloads Stanford CoreNLP, which fails offline
NO_SPICE = mock.patch(
    'pycocoevalcap.spice.spice.Spice.__init__',
    side_effect=AssertionError('SPICE was built'))
NO_COCO_EVAL_CAP = mock.patch(
    'pycocoevalcap.eval.COCOEvalCap.__init__',
    side_effect=AssertionError('COCOEvalCap was built'))


@pytest.fixture(scope='module')
def scores():
    """The metric's scores, computed once: the tokenizer starts a JVM."""
    metric = METRICS.build(
        dict(type='CaptionMetric', metrics=['CIDEr', 'BLEU-4', 'ROUGE-L']))
    with NO_SPICE as spice, NO_COCO_EVAL_CAP as coco_eval_cap:
        metric.process(None, [
            dict(pred_caption=p, gt_caption=r, image_id=i)
            for i, (p, r) in enumerate(zip(PREDICTIONS, REFERENCES))
        ])
        scores = metric.evaluate(len(PREDICTIONS))
    assert not spice.called and not coco_eval_cap.called
    return scores


@pytest.fixture(scope='module')
def tokenized():
    """pycocoevalcap's own tokenisation of the same captions."""
    captions = {
        ('res', i): [dict(caption=postprocess_caption_generation(p))]
        for i, p in enumerate(PREDICTIONS)
    }
    captions.update({
        ('gts', i): [dict(caption=c) for c in refs]
        for i, refs in enumerate(REFERENCES)
    })
    tokens = PTBTokenizer().tokenize(captions)
    ids = range(len(PREDICTIONS))
    return ({
        i: tokens[('gts', i)]
        for i in ids
    }, {
        i: tokens[('res', i)]
        for i in ids
    })


def test_scores_equal_pycocoevalcap(scores, tokenized):
    gts, res = tokenized
    assert res[0] == ['a dog sleeping on a red sofa']
    assert set(scores) == {
        'caption/CIDEr', 'caption/BLEU-4', 'caption/ROUGE-L'
    }
    cider = Cider().compute_score(gts, res)[0]
    assert scores['caption/CIDEr'] == pytest.approx(100 * cider)
    assert scores['caption/CIDEr'] > 0
    bleu = Bleu(4).compute_score(gts, res, verbose=0)[0][3]
    assert scores['caption/BLEU-4'] == pytest.approx(100 * bleu)
    rouge = Rouge().compute_score(gts, res)[0]
    assert scores['caption/ROUGE-L'] == pytest.approx(100 * rouge)


def test_default_is_cider_only():
    assert CaptionMetric().metrics == ('CIDEr', )


@pytest.mark.parametrize('text,expected', [
    (' a dog on a "sofa". Output: a cat', 'a dog on a sofa.'),
    ('a cat\nOutput:', 'a cat'),
    (' "quoted"', 'quoted'),
])
def test_postprocess(text, expected):
    assert postprocess_caption_generation(text) == expected


def test_missing_java_is_a_clear_error(tmp_path):
    with mock.patch('shutil.which', return_value=None):
        with pytest.raises(RuntimeError, match='default-jre-headless'):
            CaptionMetric()
        # writing the captions needs no Java
        CaptionMetric(format_only=True, outfile_prefix=str(tmp_path / 'c'))


def test_errors():
    with pytest.raises(ValueError, match='SPICE'):
        CaptionMetric(metrics=['CIDEr', 'SPICE'])
    with pytest.raises(ValueError, match='outfile_prefix'):
        CaptionMetric(format_only=True)
    with pytest.raises(KeyError, match='gt_caption'):
        CaptionMetric().process(None, [dict(pred_caption='a', image_id=3)])


def test_format_only_writes_coco_results_json(tmp_path):
    prefix = str(tmp_path / 'coco_test')
    metric = CaptionMetric(format_only=True, outfile_prefix=prefix)
    metric.process(None, [
        dict(pred_caption=' a "dog". Output: a cat', image_id=42),
        dict(pred_caption='a cat', image_id=7),
    ])
    assert metric.evaluate(2) == {}
    assert mmengine.load(f'{prefix}.json') == [
        {
            'image_id': 42,
            'caption': 'a dog.'
        },
        {
            'image_id': 7,
            'caption': 'a cat'
        },
    ]


def test_sample_scores_are_each_images_cider_and_rouge(tokenized):
    """After compute_metrics, sample_scores holds each image's CIDEr and
    ROUGE-L in percent, in image order (pycocoevalcap's per-image scores,
    CIDEr's document frequencies those of the whole set), and their means
    are the corpus scores; BLEU-4 (a corpus statistic) has none."""
    metric = CaptionMetric(metrics=['CIDEr', 'BLEU-4', 'ROUGE-L'])
    metric.process(None, [
        dict(pred_caption=p, gt_caption=r, image_id=i)
        for i, (p, r) in enumerate(zip(PREDICTIONS, REFERENCES))
    ])
    with NO_SPICE:
        scores = metric.evaluate(len(PREDICTIONS))
    assert set(metric.sample_scores) == {'CIDEr', 'ROUGE-L'}
    gts, res = tokenized
    per_image = dict(
        CIDEr=Cider().compute_score(gts, res)[1],
        ROUGE=Rouge().compute_score(gts, res)[1])
    for name, key in (('CIDEr', 'CIDEr'), ('ROUGE-L', 'ROUGE')):
        values = metric.sample_scores[name]
        assert len(values) == len(PREDICTIONS)
        assert values == pytest.approx([100 * s for s in per_image[key]])
        assert sum(values) / len(values) == pytest.approx(
            scores[f'caption/{name}'])
        # the empty prediction scores nothing, the others share words
        assert values[3] == 0 and min(values[:3]) > 0
