"""Post-processing of generated VQA answers (the few-shot runner's step)."""
import pytest

from mmflamingo.evaluation import (postprocess_answer,
                                   postprocess_vqa_generation, stem_vqa_answer)


@pytest.mark.parametrize(
    'text,expected',
    [
        (' yes', 'yes'),
        (' a dog, a cat', 'a dog'),
        (' two\nQuestion: what is it? Short answer: one', 'two'),
        ('red Answer: blue', 'red'),
        ('blue Short', 'blue'),
        ('1,000', '1,000'),  # only ', ' cuts
        ('washington, dc', 'washington'),
    ])
def test_openflamingo_cut(text, expected):
    assert postprocess_vqa_generation(text) == expected
    assert postprocess_answer(text, 'openflamingo') == expected


def test_comma_cut_switched_off():
    text = ' washington, dc Question: where?'
    assert postprocess_vqa_generation(
        text, cut_at_comma=False) == 'washington, dc'
    assert postprocess_answer(text, 'no_comma_cut') == 'washington, dc'
    assert postprocess_answer(text, None) == text


def test_okvqa_stems_after_the_cut():
    assert postprocess_answer(' Riding Horses, a cat Question',
                              'openflamingo_okvqa') == 'ride horse'


def test_unknown_mode():
    with pytest.raises(ValueError, match="answer_postprocess.*'comma'"):
        postprocess_answer('yes', 'comma')


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
