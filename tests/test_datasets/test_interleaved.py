"""Interleaved document datasets (MMC4 JSON lines, WebDataset shards)."""
import base64
import io
import json
import re

import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope
from PIL import Image

from mmflamingo.datasets import (MMC4Interleaved, UnusableSample,
                                 WebDatasetInterleaved)
from mmflamingo.datasets.interleaved import interleave
from mmflamingo.datasets.transforms import RandomFlipMedia
from mmflamingo.registry import DATASETS

EOC, EOS = '<|endofchunk|>', '<|endoftext|>'  # EOS: the tiny tokenizer's
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
PIPELINE = [
    dict(type='LoadMedia'),
    dict(type='ResizeMedia', size=8),
    dict(type='PackFlamingoInputs', meta_keys=['source']),
]


def doc(sentences, *images, **fields):
    """An MMC4 document; ``images`` are ``(image_name, sentence, sim)``."""
    image_info = [
        dict(image_name=name, matched_text_index=ix, matched_sim=sim)
        for name, ix, sim in images
    ]
    return dict(text_list=list(sentences), image_info=image_info, **fields)


def colors(sample):
    """The RGB of the centre pixel of each image of a packed sample."""
    return [tuple(image[0, :, 4, 4].tolist()) for image in sample['inputs']]


@pytest.fixture
def root(tmp_path, png_bytes):
    """``tmp_path`` with ``images/``: red/green/blue PNGs, a corrupt one."""
    (tmp_path / 'images').mkdir()
    for name, color in [('red', RED), ('green', GREEN), ('blue', BLUE)]:
        (tmp_path / 'images' / f'{name}.png').write_bytes(png_bytes(color))
    (tmp_path / 'images' / 'broken.png').write_bytes(b'not a png')
    return tmp_path


def build(root, tokenizer_dir, docs, test_mode=False, **cfg):
    """An MMC4Interleaved over ``docs`` (keeping images of any size and
    single-image documents unless ``cfg`` says otherwise)."""
    (root / 'docs.jsonl').write_text(''.join(
        json.dumps(d) + '\n' for d in docs))
    defaults = dict(
        type='MMC4Interleaved',
        ann_file='docs.jsonl',
        data_root=str(root),
        data_prefix=dict(img_path='images'),
        tokenizer=dict(pretrained=tokenizer_dir),
        test_mode=test_mode,
        min_image_bytes=0,
        single_image_drop_prob=0.0,
        pipeline=PIPELINE)
    with DefaultScope.overwrite_default_scope('mmflamingo'):
        return DATASETS.build({**defaults, **cfg})


DOCS = [
    doc(['Intro here.', 'A red square.', 'A green square.'],
        ('red.png', 1, 0.3), ('green.png', 2, 0.3)),
    # image_info out of sentence order: markers follow the sentences
    doc(['First.', 'Second.', 'Third.'], ('green.png', 2, 0.3),
        ('red.png', 0, 0.25)),
    doc(['Not similar.'], ('red.png', 0, 0.1), ('blue.png', 0, 0.2)),
    doc(['Gone.'], ('missing.png', 0, 0.3)),
    doc(['Broken.', 'Red.'], ('broken.png', 0, 0.3), ('red.png', 1, 0.3)),
    doc(['See <image> here.'], ('red.png', 0, 0.3)),
    doc(['Blue one.', 'Red one.'], ('blue.png', 0, 0.3), ('red.png', 1, 0.3)),
]


def test_mmc4_texts_and_images(root, tokenizer_dir):
    dataset = build(root, tokenizer_dir, DOCS)
    assert isinstance(dataset, MMC4Interleaved) and len(dataset) == 7
    first, second, last = dataset[0], dataset[1], dataset[6]
    assert first['data_samples'].text == (
        f'Intro here.<image>A red square.{EOC}<image>A green square.{EOC}'
        f'{EOS}')
    assert first['inputs'].shape == (2, 1, 3, 8, 8)
    assert colors(first) == [RED, GREEN]
    assert second['data_samples'].text == (
        f'<image>First. Second.{EOC}<image>Third.{EOC}{EOS}')
    assert colors(second) == [RED, GREEN]
    assert last['data_samples'].text == (
        f'<image>Blue one.{EOC}<image>Red one.{EOC}{EOS}')
    assert colors(last) == [BLUE, RED]
    assert last['data_samples'].source == f'{root}/docs.jsonl:7'
    assert 'unusable' not in last['data_samples']


def test_mmc4_skips_bad_documents_in_training(root, tokenizer_dir,
                                              warnings_logged):
    dataset = build(root, tokenizer_dir, DOCS)
    samples = [dataset[i] for i in range(2, 7)]
    assert [s['data_samples'].get('unusable', False)
            for s in samples] == [True] * 4 + [False]
    assert colors(samples[4]) == [BLUE, RED]
    expected = [('docs.jsonl:3', '2 below sim_threshold 0.24'),
                ('docs.jsonl:4', 'missing.png not found'),
                ('docs.jsonl:5', 'broken.png'),
                ('docs.jsonl:6', 'sentence 0 of')]
    assert len(warnings_logged) == 4
    for message, (name, reason) in zip(warnings_logged, expected):
        assert message.startswith('skipping ')
        assert name in message and reason in message
    assert 'holds a literal <image>' in warnings_logged[3]


def test_mmc4_raises_in_test_mode(root, tokenizer_dir):
    dataset = build(root, tokenizer_dir, DOCS, test_mode=True)
    with pytest.raises(UnusableSample, match='no usable image'):
        dataset[2]
    with pytest.raises(UnusableSample, match='1 not found'):
        dataset[3]
    with pytest.raises(ValueError, match='broken.png'):
        dataset[4]
    with pytest.raises(UnusableSample, match='literal <image>'):
        dataset[5]


@pytest.mark.parametrize('token', ['<image>', '<|endofchunk|>'])
def test_literal_flamingo_tokens_in_a_sentence_are_refused(
        token, root, tokenizer_dir, write_tar, warnings_logged):
    # truncation cuts the real marker: a literal <image> would be the only
    # one left, and bind the red image to 'Look' without a word of warning
    document = doc([f'Look{token}here.', 'the quick brown fox ' * 4, 'Red.'],
                   ('red.png', 2, 0.3))
    dataset = build(root, tokenizer_dir, [DOCS[0], document], max_tokens=20)
    assert dataset[1]['data_samples'].unusable
    (message, ) = warnings_logged
    assert 'docs.jsonl:2' in message
    assert f'sentence 0 of {root}/docs.jsonl:2 holds a literal {token}' in (
        message)
    write_tar(root / 'docs-0.tar', {
        'd0.json': json.dumps(document),
        'red.png': png_of(RED)
    })
    shards = build_shards(
        root,
        tokenizer_dir,
        min_image_bytes=0,
        single_image_drop_prob=0.0,
        test_mode=True,
        pipeline=PIPELINE)
    with pytest.raises(
            UnusableSample,
            match=re.escape(f'docs-0.tar:d0 holds a literal {token}')):
        shards[0]


def test_image_count_rules(root, tokenizer_dir):
    sentences = [f'Sentence {i}.' for i in range(7)]
    seven = doc(sentences, *[('red.png', i, 0.3) for i in range(7)])
    dataset = build(root, tokenizer_dir, [seven, DOCS[0]], test_mode=True)
    sample = dataset[0]
    assert sample['data_samples'].text.count('<image>') == 5
    assert sample['inputs'].shape[0] == 5
    # OpenFlamingo drops images of 10 kB or less by default
    dataset = build(
        root, tokenizer_dir, [DOCS[0]], test_mode=True, min_image_bytes=11000)
    with pytest.raises(UnusableSample, match='2 under min_image_bytes'):
        dataset[0]
    dataset = build(
        root,
        tokenizer_dir, [DOCS[6], DOCS[5]],
        test_mode=True,
        min_num_images=3,
        max_num_images=5)
    with pytest.raises(UnusableSample, match='fewer than min_num_images 3'):
        dataset[0]


def test_truncation_drops_the_images_it_cuts(root, tokenizer_dir):
    long = doc(['Intro here.', 'the quick brown fox ' * 4, 'A green one.'],
               ('red.png', 1, 0.3), ('green.png', 2, 0.3))
    dataset = build(root, tokenizer_dir, [long], max_tokens=20)
    sample = dataset[0]
    text = sample['data_samples'].text
    full = interleave(long['text_list'], [1, 2], EOS)
    assert full.startswith(text) and text.count('<image>') == 1
    assert len(dataset.tokenizer(text)['input_ids']) == 20
    assert colors(sample) == [RED]
    # the only image is the last token kept: nothing to learn
    length = len(dataset.tokenizer('Intro here.<image>')['input_ids'])
    dataset = build(
        root, tokenizer_dir, [long], max_tokens=length, test_mode=True)
    with pytest.raises(UnusableSample, match='last token'):
        dataset[0]


def test_single_image_documents_are_dropped_by_a_seeded_coin(
        root, tokenizer_dir):
    single = doc(['One image.'], ('red.png', 0, 0.3))
    docs = [single] * 40

    def dropped(**cfg):
        # serialize_data=False: mmengine's serialisation runs gc.collect()
        dataset = build(root, tokenizer_dir, docs, serialize_data=False, **cfg)
        indices = []
        for i in range(len(dataset)):
            try:
                dataset.load_sample(dataset.get_data_info(i))
            except UnusableSample as error:
                assert 'one image' in str(error)
                indices.append(i)
        return indices

    half = dropped(single_image_drop_prob=0.5)
    assert 10 < len(half) < 30
    assert dropped(single_image_drop_prob=0.5) == half
    assert dropped(single_image_drop_prob=0.5, seed=1) != half
    assert dropped(single_image_drop_prob=1.0) == list(range(40))
    assert dropped(single_image_drop_prob=1.0, test_mode=True) == []


def png_of(color, noise=0, seed=0, size=16):
    """PNG bytes of a colour; ``noise`` > 0 makes them large (> 10 kB)."""
    array = np.full((size, size, 3), color, dtype=np.int64)
    if noise:
        rng = np.random.default_rng(seed)
        array = array + rng.integers(0, noise, array.shape)
    image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format='PNG')
    return buffer.getvalue()


def b64(data):
    return base64.b64encode(data).decode('ascii')


def build_shards(folder, tokenizer_dir, **cfg):
    with DefaultScope.overwrite_default_scope('mmflamingo'):
        return DATASETS.build(
            dict(
                type='WebDatasetInterleaved',
                shards=str(folder / '*.tar'),
                tokenizer=dict(pretrained=tokenizer_dir),
                **cfg))


def test_webdataset_members_and_base64(tmp_path, tokenizer_dir, write_tar):
    members = DOCS[0]
    embedded = doc(['Blue.', 'Red.'])
    embedded['image_info'] = [
        dict(
            image_base64=b64(png_of(BLUE)),
            matched_text_index=0,
            matched_sim=0.3),
        dict(
            image_base64=b64(png_of(RED)),
            matched_text_index=1,
            matched_sim=0.3),
    ]
    write_tar(
        tmp_path / 'mmc4-0.tar', {
            'd0.json': json.dumps(members),
            'red.png': png_of(RED),
            'green.png': png_of(GREEN),
            'd1.json': json.dumps(embedded),
            'd2.json': json.dumps(DOCS[3]),
            'd3.json': '{"not": "a document"}',
        })
    dataset = build_shards(
        tmp_path,
        tokenizer_dir,
        min_image_bytes=0,
        single_image_drop_prob=0.0,
        pipeline=PIPELINE)
    assert isinstance(dataset, WebDatasetInterleaved) and len(dataset) == 4
    first, second = dataset[0], dataset[1]
    assert first['data_samples'].text == (
        f'Intro here.<image>A red square.{EOC}<image>A green square.{EOC}'
        f'{EOS}')
    assert colors(first) == [RED, GREEN]
    assert second['data_samples'].text == (
        f'<image>Blue.{EOC}<image>Red.{EOC}{EOS}')
    assert colors(second) == [BLUE, RED]
    assert second['data_samples'].source == f'{tmp_path}/mmc4-0.tar:d1'
    dataset.test_mode = True
    with pytest.raises(UnusableSample, match="no member 'missing.png'"):
        dataset[2]
    with pytest.raises(UnusableSample, match='not a document'):
        dataset[3]
    with pytest.raises(FileNotFoundError, match='no file matches'):
        build_shards(tmp_path / 'nowhere', tokenizer_dir)


def test_wrong_paths_fail_at_construction(root, tokenizer_dir):
    with pytest.raises(FileNotFoundError, match='ann_file.*nope.jsonl'):
        build(root, tokenizer_dir, DOCS, ann_file='nope.jsonl')
    with pytest.raises(FileNotFoundError, match='img_path.*no_images'):
        build(
            root, tokenizer_dir, DOCS, data_prefix=dict(img_path='no_images'))


def test_random_flip_is_one_coin_per_sample():
    # left half red, right half blue: a flip is visible
    frame = np.zeros((4, 4, 3), dtype=np.uint8)
    frame[:, :2], frame[:, 2:] = RED, BLUE
    flipped = RandomFlipMedia(prob=1.0)(dict(media=[[frame], [frame] * 3]))
    assert flipped['flip'] is True
    for frames in flipped['media']:
        for out in frames:
            assert tuple(out[0, 0]) == BLUE and tuple(out[0, 3]) == RED
            assert out.flags['C_CONTIGUOUS']
    kept = RandomFlipMedia(prob=0.0)(dict(media=[[frame]]))
    assert kept['flip'] is False and kept['media'][0][0] is frame
    np.random.seed(0)
    flips = RandomFlipMedia(prob=0.5)
    for _ in range(20):
        media = flips(dict(media=[[frame], [frame, frame]]))['media']
        lefts = {tuple(out[0, 0]) for frames in media for out in frames}
        assert len(lefts) == 1
    with pytest.raises(TypeError, match='after LoadMedia'):
        RandomFlipMedia(prob=1.0)(dict(media=['a.png']))


def test_matches_openflamingo_preprocess_interleaved(tmp_path, tokenizer_dir,
                                                     write_tar,
                                                     openflamingo_data):
    """Same documents, same tokenizer: the same token ids and images.

    OpenFlamingo reads ``similarity_matrix`` and base64 images over 10 kB.
    """
    big = [
        png_of((40 * i, 80, 200 - 40 * i), noise=60, seed=i, size=80)
        for i in range(5)
    ]
    small = png_of(RED)

    def of_doc(sentences, *images):
        """``images``: ``(png bytes or None, sims over the sentences)``."""
        image_info = [{} if data is None else dict(image_base64=b64(data))
                      for data, _ in images]
        return dict(
            text_list=sentences,
            image_info=image_info,
            similarity_matrix=[sims for _, sims in images])

    words = 'the quick brown fox jumps over the lazy dog'
    docs = [
        of_doc(['Intro.', 'A dog.', 'A cat.'], (big[0], [0.1, 0.3, 0.2]),
               (big[1], [0.0, 0.1, 0.5])),
        # a low similarity, a small image, one without data, then two images
        # on one sentence
        of_doc(['A.', 'B.', 'C.'], (big[0], [0.3, 0.1, 0.1]),
               (big[1], [0.1, 0.2, 0.1]), (small, [0.1, 0.9, 0.1]),
               (None, [0.9, 0.1, 0.1]), (big[2], [0.1, 0.1, 0.4]),
               (big[3], [0.1, 0.1, 0.4])),
        # more images than max_num_images
        of_doc([f'{i}.' for i in range(6)],
               *[(big[i % 5], [0.3 if j == i else 0 for j in range(6)])
                 for i in range(6)]),
        # truncated to max_tokens: its third image is cut
        of_doc([words] * 3, (big[0], [0.3, 0, 0]), (big[1], [0, 0.3, 0]),
               (big[2], [0, 0, 0.3])),
    ]
    write_tar(tmp_path / 'shard.tar', {
        f'{i:02d}.json': json.dumps(d)
        for i, d in enumerate(docs)
    })
    max_tokens, max_num_images = 48, 5
    dataset = build_shards(
        tmp_path,
        tokenizer_dir,
        max_tokens=max_tokens,
        max_num_images=max_num_images,
        test_mode=True,
        pipeline=[dict(type='LoadMedia'),
                  dict(type='PackFlamingoInputs')])
    tokenizer = dataset.tokenizer
    if not hasattr(tokenizer, 'additional_special_tokens_ids'):
        pytest.skip('OpenFlamingo 2.0.1 cannot read these documents here: '
                    'its preprocess_interleaved finds <image> in '
                    'tokenizer.additional_special_tokens_ids, which '
                    'transformers 5 tokenizers no longer have (their '
                    'extra_special_tokens); it runs with transformers 4')

    def processor(image):
        return torch.from_numpy(np.array(image)).permute(2, 0, 1) / 255

    for i, document in enumerate(docs):
        images, (input_ids, attention_mask) = (
            openflamingo_data.preprocess_interleaved(
                [json.dumps(document)],
                tokenizer,
                processor,
                sim_threshold=0.24,
                min_num_images=1,
                max_num_images=max_num_images,
                max_tokens=max_tokens))
        expected = input_ids[attention_mask.bool()].tolist()
        sample = dataset[i]
        assert tokenizer(
            sample['data_samples'].text)['input_ids'] == (expected), i
        # OpenFlamingo keeps max_num_images (zero-padded), we keep the
        # images whose markers survive; they agree on those (up to its flip)
        ours = sample['inputs'][:, 0].float() / 255
        assert len(ours) == expected.count(dataset.tokens.media)
        means = images[:len(ours)].mean(dim=(2, 3))
        assert torch.allclose(ours.mean(dim=(2, 3)), means, atol=1e-4), i


def test_flamingo_loss_on_interleaved_batch(root, tokenizer_dir,
                                            build_flamingo):
    pipeline = [
        dict(type='LoadMedia'),
        dict(type='RandomFlipMedia', prob=0.5),
        dict(type='ResizeMedia', size=16),
        dict(type='RandomImagePlacement', prob=0.5),
        dict(type='PackFlamingoInputs', meta_keys=['source']),
    ]
    dataset = build(root, tokenizer_dir, DOCS, pipeline=pipeline)
    model = build_flamingo(gates=1.0, image_size=16)
    np.random.seed(0)
    # 2 and 2 images (or 1 where the placement drops a first image)
    data = model.data_preprocessor(pseudo_collate([dataset[0], dataset[6]]))
    assert data['images'].shape[0] == 2 and data['images'].shape[2:] == (1, 3,
                                                                         16,
                                                                         16)
    loss = model.loss(**data)['loss']
    assert torch.isfinite(loss) and loss > 0
