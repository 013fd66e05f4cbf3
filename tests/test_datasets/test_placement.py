"""The paper's image placement augmentation on hand-made strings.

``<eoc>`` in the cases below stands for ``<|endofchunk|>``; markers are
written as ``<image>``.
"""
import numpy as np
import pytest
import torch

from mmflamingo.datasets.transforms import (RandomImagePlacement,
                                            attend_next_image)
from mmflamingo.models.utils.labels import build_labels
from mmflamingo.tokens import add_flamingo_tokens, build_tokenizer

EOC, EOS = '<|endofchunk|>', '<|endoftext|>'


def expand(text):
    return text.replace('<eoc>', EOC)


# (input, output, kept images)
CASES = [
    # OpenFlamingo's interleaved form: text before the first image
    ('P<image>A<eoc><image>B<eoc></s>', '<image>P<eoc><image>A<eoc>B<eoc></s>',
     [0, 1]),
    # a document starting with an image: nothing comes before it
    ('<image>A<eoc><image>B<eoc></s>', '<image>A<eoc>B<eoc></s>', [1]),
    # two images in a row: the second has no text of its own before it
    ('P<image>A<eoc><image><eoc><image>C<eoc></s>',
     '<image>P<eoc><image>A<eoc>C<eoc></s>', [0, 1]),
    # truncated: no final <eoc>
    ('P<image>A b<eoc><image>B c', '<image>P<eoc><image>A b<eoc>B c', [0, 1]),
    # an image-text pair, text only: unchanged, no image kept
    ('<image>caption<eoc></s>', '<image>caption<eoc></s>', []),
    ('just text</s>', 'just text</s>', []),
]


@pytest.mark.parametrize('text, expected, kept', CASES)
def test_attend_next_image(text, expected, kept):
    assert attend_next_image(expand(text)) == (expand(expected), kept)


def test_each_chunk_sees_the_image_after_it_and_learns_to_stop(tokenizer_dir):
    """Through the tokenizer and OpenFlamingo's labels: the learned text of
    the k-th marker is the chunk that preceded the k-th kept image."""
    tokenizer = build_tokenizer(tokenizer_dir)
    tokens = add_flamingo_tokens(tokenizer)
    text = (f'a red circle.<image>a blue square.{EOC}<image>two yellow '
            f'stars.{EOC}<image>a lazy dog.{EOC}{EOS}')
    chunk_before = ['a red circle.', 'a blue square.', 'two yellow stars.']
    new_text, kept = attend_next_image(text)
    assert kept == [0, 1, 2]
    ids = tokenizer(new_text, return_tensors='pt')['input_ids']
    labels = build_labels(ids, torch.ones_like(ids), tokens.media,
                          tokens.end_of_chunk)[0]
    # the image each token attends to: the most recent marker (0 = none)
    seen = (ids[0] == tokens.media).cumsum(0)
    for k, index in enumerate(kept, 1):
        learned = labels[(seen == k) & (labels != -100)]
        assert tokenizer.decode(learned) == chunk_before[index] + EOC
    # the last chunk has no image after it: context only, never learned
    assert 'lazy' not in tokenizer.decode(labels[labels != -100])


def test_transform_moves_markers_and_media():
    media = ['first.png', 'second.png']
    text = expand('<image>A<eoc><image>B<eoc></s>')
    out = RandomImagePlacement(prob=1.0)(dict(text=text, media=list(media)))
    assert out['text'] == expand('<image>A<eoc>B<eoc></s>')
    assert out['media'] == ['second.png'] and out['attend_next'] is True
    out = RandomImagePlacement(prob=0.0)(dict(text=text, media=list(media)))
    assert out['text'] == text and out['media'] == media
    assert out['attend_next'] is False
    # a pair cannot attend to a next image: left as it is
    pair = dict(text=expand('<image>A<eoc></s>'), media=['only.png'])
    out = RandomImagePlacement(prob=1.0)(dict(pair))
    assert out['text'] == pair['text'] and out['media'] == ['only.png']
    assert out['attend_next'] is False


def test_transform_probability():
    np.random.seed(0)
    placement = RandomImagePlacement(prob=0.5)
    text = expand('P<image>A<eoc><image>B<eoc></s>')
    moved = [
        placement(dict(text=text, media=[0, 1]))['attend_next']
        for _ in range(200)
    ]
    assert 70 < sum(moved) < 130
    with pytest.raises(ValueError, match='prob'):
        RandomImagePlacement(prob=1.5)
