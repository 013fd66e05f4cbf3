import re

import numpy as np
import pytest

from mmflamingo.datasets.transforms import RandomCaption, SwapWordNegatives

SHAPES = ['circle', 'square', 'triangle']
COLOURS = ['red', 'blue']


def words(text):
    return re.findall(r'\w+|[^\w\s]', text)


def test_random_caption_picks_each_reference():
    np.random.seed(0)
    captions = ['a.', 'b.', 'c.']
    seen = {
        RandomCaption().transform(dict(captions=captions))['text']
        for _ in range(50)
    }
    assert seen == set(captions)


def test_one_negative_per_mentioned_group_differing_in_one_word():
    transform = SwapWordNegatives(groups=[SHAPES, COLOURS, ['small', 'big']])
    caption = 'a red circle on the left and a blue square at the top.'
    np.random.seed(0)
    swapped = set()
    for _ in range(100):
        negatives = transform.transform(dict(text=caption))['hard_negatives']
        # shapes and colours are mentioned, sizes are not
        assert len(negatives) == 2
        for negative, group in zip(negatives, (SHAPES, COLOURS)):
            before, after = words(caption), words(negative)
            assert len(before) == len(after)
            diff = [(a, b) for a, b in zip(before, after) if a != b]
            assert len(diff) == 1, (caption, negative)
            old, new = diff[0]
            assert old in group and new in group and old != new
            swapped.add((old, new))
    # every occurrence and every replacement is drawn
    assert {('circle', 'square'), ('circle', 'triangle'), ('square', 'circle'),
            ('square', 'triangle'), ('red', 'blue'),
            ('blue', 'red')} == swapped


def test_whole_words_only_and_no_negatives_without_a_match():
    transform = SwapWordNegatives(groups=[SHAPES])
    results = transform.transform(dict(text='two squares and circles.'))
    assert results['hard_negatives'] == []
    results = transform.transform(dict(text='a squared circle.'))
    assert results['hard_negatives'] in (['a squared square.'],
                                         ['a squared triangle.'])
    # the caption itself is left as it was
    assert results['text'] == 'a squared circle.'


@pytest.mark.parametrize('groups, match', [
    ([], 'empty'),
    ([['circle']], r'groups\[0\].*two distinct words'),
    ([['circle', 'circle']], r'groups\[0\].*two distinct words'),
    ([SHAPES, ['red', 'circle']], "'circle' is in two groups"),
    ([['red circle', 'blue']], r"groups\[0\] has 'red circle'"),
])
def test_rejects_bad_groups(groups, match):
    with pytest.raises(ValueError, match=match):
        SwapWordNegatives(groups=groups)


def test_names_the_sample_without_a_caption():
    transform = SwapWordNegatives(groups=[SHAPES])
    with pytest.raises(ValueError, match=r"images/7\.png.*'text'"):
        transform.transform(dict(source='images/7.png', captions=['a.']))
