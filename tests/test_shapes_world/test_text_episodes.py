"""The language model's training text: rows made from (seed, index) alone,
of training scenes and names only, with the structure of the prompts."""
import json
import random
import re

import pytest
import torch

from mmflamingo.models.utils.bpe import train_bpe_tokenizer
from mmflamingo.shapes_world import write_shapes_world
from mmflamingo.shapes_world.language import NameGenerator, canonical_caption
from mmflamingo.shapes_world.scenes import COLOURS, POSITIONS, SHAPES, Shape
from mmflamingo.shapes_world.text_episodes import (ShapesTextEpisodes,
                                                   binding_episode,
                                                   describe_shape,
                                                   load_lm_world)

SHORT_ANSWERS = {*COLOURS, *SHAPES, *POSITIONS, 'yes', 'no', *'0123'}


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp('shapes')
    paths = write_shapes_world(str(root), seed=0, scale='tiny')
    train_bpe_tokenizer([paths['corpus']],
                        str(root / 'tokenizer'),
                        flamingo_tokens=True)
    return paths, dict(pretrained=str(root / 'tokenizer'))


def build(world, **kwargs):
    paths, tokenizer = world
    kwargs.setdefault('mix',
                      dict(copy=1, binding=1, reading=1, caption=1, video=1))
    return ShapesTextEpisodes(paths['lm_world'], tokenizer, **kwargs)


def test_rows_are_made_from_seed_and_index(world):
    dataset = build(world, max_tokens=64, num_rows=10)
    assert len(dataset) == 10
    row = dataset[3]
    assert row['inputs'].shape == row['attention_mask'].shape == (64, )
    assert row['attention_mask'].all()
    assert torch.equal(build(world, max_tokens=64)[3]['inputs'], row['inputs'])
    assert not torch.equal(dataset[4]['inputs'], row['inputs'])
    assert not torch.equal(
        build(world, max_tokens=64, seed=1)[3]['inputs'], row['inputs'])


def test_copy_rows_repeat_a_random_span(world):
    dataset = build(world, mix=dict(copy=1.0), max_tokens=128)
    tokenizer = dataset.tokenizer
    for idx in range(5):
        ids = dataset[idx]['inputs'].tolist()
        assert ids[0] == tokenizer.bos_token_id
        body = ids[1:]
        # the row is a span repeated: some period divides it
        period = next(
            p for p in range(8, 41)
            if all(body[i] == body[i + p] for i in range(len(body) - p)))
        assert len(set(body[:period])) > period // 2  # random, not constant


def test_text_holds_training_scenes_and_names_only(world):
    paths, _ = world
    dataset = build(world, max_tokens=512)
    lm_world = load_lm_world(paths['lm_world'])
    trained = set(lm_world['names'])
    captions = {canonical_caption(s) for s in lm_world['scenes']}
    tokenizer = dataset.tokenizer
    kinds = set()
    for idx in range(40):
        text = tokenizer.decode(dataset[idx]['inputs'])
        # (a row may end in the middle of a name)
        for name in re.findall(r'called\? Short answer: (\w+)<\|endofchunk\|>',
                               text):
            assert name in trained
            kinds.add('binding')
        # a chunk's description stands where Flamingo's <image> would
        for caption in re.findall(r' (an? [^.<]*\.) Question: ', text):
            if ' and ' in caption or ' on the ' in caption or ' at the ' \
                    in caption or ' in the ' in caption:
                # a scene's caption (reading) or a full description
                kinds.add('reading')
        for caption in re.findall(r'Output: ([^<]*)<', text):
            kinds.add('caption')
            assert caption.endswith('.')
    assert kinds == {'binding', 'reading', 'caption'}
    assert captions  # the training scenes were read


def test_reading_documents_keep_one_answer_style(world):
    """As in the interleaved documents: one answer style per document."""
    dataset = build(world, mix=dict(reading=1.0))
    rng = random.Random(0)
    seen = set()
    for _ in range(30):
        text = dataset.tokenizer.decode(dataset.document('reading', rng))
        answers = re.findall(r'Short answer: ([^<]*?)(?=<|$)', text)
        assert answers
        styles = {
            'short' if answer in SHORT_ANSWERS else 'long'
            for answer in answers
        }
        assert len(styles) == 1, text
        seen |= styles
    assert seen == {'short', 'long'}


def test_binding_episodes_name_each_type_once(world):
    rng = random.Random(0)
    names = NameGenerator(random.Random(1)).take(20)
    items, chosen = binding_episode(rng, names, 12, 'full')
    assert len(items) == 12 and len(chosen) in (3, 4)
    named = {}
    for description, name, shape in items:
        assert shape in description and name in chosen
        assert named.setdefault(shape, name) == name
    assert len(set(named.values())) == len(named)
    shape = Shape('circle', 'red', 'small', 'left')
    assert describe_shape(shape, 'word') == 'circle'
    assert describe_shape(shape, 'colour') == 'a red circle.'
    assert describe_shape(shape, 'full') == 'a small red circle on the left.'
    with pytest.raises(ValueError, match='description'):
        describe_shape(shape, 'poem')


@pytest.mark.parametrize('prob', [0.0, 1.0])
def test_shape_questions_in_binding_episodes(world, prob):
    """shape_question_prob: the share of an episode's chunks that ask the
    shape's type instead of naming it."""
    dataset = build(world, mix=dict(binding=1.0), shape_question_prob=prob)
    rng = random.Random(0)
    text = ''.join(
        dataset.tokenizer.decode(dataset.document('binding', rng))
        for _ in range(10))
    named = text.count('What is this called?')
    asked = text.count('What shape is this?')
    if prob == 1:
        assert named == 0 and asked > 0
    else:
        assert asked == 0 and named > 0


def test_bad_arguments_fail_clearly(world, tmp_path):
    with pytest.raises(ValueError, match='mix'):
        build(world, mix=dict(poetry=1.0))
    with pytest.raises(ValueError, match='shape_question_prob'):
        build(world, shape_question_prob=1.5)
    with pytest.raises(ValueError, match='mix'):
        build(world, mix=dict(copy=0.0))
    paths, _ = world
    plain = tmp_path / 'plain'
    train_bpe_tokenizer([paths['corpus']], str(plain))
    with pytest.raises(ValueError, match='<image>'):
        ShapesTextEpisodes(paths['lm_world'], dict(pretrained=str(plain)),
                           dict(copy=1.0))
    assert json.load(open(paths['lm_world']))['video_combos']
