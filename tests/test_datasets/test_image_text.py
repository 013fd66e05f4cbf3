"""Image-text pair datasets on small files written by the tests."""
import json
import re

import pytest
from mmengine.registry import DefaultScope

from mmflamingo.datasets import (CocoCaptionPairs, JsonlImageText,
                                 UnusableSample, WebDatasetImageText)
from mmflamingo.datasets.tar_shards import (expand_braces, expand_paths,
                                            list_members, read_member)
from mmflamingo.registry import DATASETS

EOC, EOS = '<|endofchunk|>', '<|endoftext|>'  # EOS: the tiny tokenizer's
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
PIPELINE = [
    dict(type='LoadMedia'),
    dict(type='ResizeMedia', size=8),
    dict(type='PackFlamingoInputs', meta_keys=['source']),
]


@pytest.fixture
def images(tmp_path, png_bytes):
    """``tmp_path/images`` with red/green/blue PNGs and a corrupt one."""
    folder = tmp_path / 'images'
    folder.mkdir()
    for name, color in [('red', RED), ('green', GREEN), ('blue', BLUE)]:
        (folder / f'{name}.png').write_bytes(png_bytes(color))
    (folder / 'broken.png').write_bytes(b'not a png at all')
    return folder


def build(tokenizer_dir, test_mode=False, **cfg):
    with DefaultScope.overwrite_default_scope('mmflamingo'):
        return DATASETS.build(
            dict(
                tokenizer=dict(pretrained=tokenizer_dir),
                pipeline=PIPELINE,
                test_mode=test_mode,
                **cfg))


def pixel(sample, index=0):
    """The RGB of the centre pixel of image ``index`` of a packed sample."""
    return sample['inputs'][index, 0, :, 4, 4].tolist()


def test_coco_one_sample_per_caption(images, tokenizer_dir):
    ann_file = images.parent / 'captions.json'
    ann_file.write_text(
        json.dumps(
            dict(
                images=[
                    dict(id=1, file_name='red.png'),
                    dict(id=7, file_name='blue.png')
                ],
                annotations=[
                    dict(id=10, image_id=1, caption='  A red square.\n'),
                    dict(id=11, image_id=7, caption='A blue square.'),
                    dict(id=12, image_id=1, caption='Red, again.'),
                ])))
    dataset = build(
        tokenizer_dir,
        type='CocoCaptionPairs',
        ann_file='captions.json',
        data_root=str(images.parent),
        data_prefix=dict(img_path='images'))
    assert isinstance(dataset, CocoCaptionPairs) and len(dataset) == 3
    samples = [dataset[i] for i in range(3)]
    assert [s['data_samples'].text for s in samples] == [
        f'<image>A red square.{EOC}{EOS}',
        f'<image>A blue square.{EOC}{EOS}',
        f'<image>Red, again.{EOC}{EOS}',
    ]
    assert samples[0]['inputs'].shape == (1, 1, 3, 8, 8)
    assert [pixel(s) for s in samples] == [list(RED), list(BLUE), list(RED)]
    assert samples[1]['data_samples'].source == (
        f'{images}/blue.png (caption 11)')
    assert 'unusable' not in samples[1]['data_samples']


def write_jsonl(path, records):
    path.write_text('\n'.join(json.dumps(r) for r in records) + '\n\n')
    return str(path)


@pytest.fixture
def jsonl_dataset(images, tokenizer_dir):
    """Six pairs; 1 to 4 are unusable."""
    ann_file = write_jsonl(images.parent / 'pairs.jsonl', [
        dict(image='red.png', caption='a red square'),
        dict(image='missing.png', caption='never loaded'),
        dict(image='broken.png', caption='never decoded'),
        dict(image='red.png', caption=' \n '),
        dict(image='red.png', caption='a literal <image> marker'),
        dict(image='green.png', caption='a green square'),
    ])

    def make(test_mode=False):
        return build(
            tokenizer_dir,
            test_mode=test_mode,
            type='JsonlImageText',
            ann_file=ann_file,
            data_prefix=dict(img_path=str(images)))

    return make


def test_jsonl_texts(jsonl_dataset):
    dataset = jsonl_dataset()
    assert isinstance(dataset, JsonlImageText) and len(dataset) == 6
    sample = dataset[5]
    assert sample['data_samples'].text == f'<image>a green square{EOC}{EOS}'
    assert pixel(sample) == list(GREEN)


def test_jsonl_skips_bad_samples_in_training(jsonl_dataset, warnings_logged):
    dataset = jsonl_dataset()
    data = [dataset[i] for i in range(len(dataset))]
    samples = [d['data_samples'] for d in data]
    # each unusable sample is a placeholder, not its neighbour
    unusable = [s.get('unusable', False) for s in samples]
    assert unusable == [False, True, True, True, True, False]
    assert samples[5].text == f'<image>a green square{EOC}{EOS}'
    assert data[1]['inputs'].shape[0] == 0
    assert len(warnings_logged) == 4
    expected = [('missing.png', 'not found'), ('broken.png', 'cannot read'),
                ('pairs.jsonl:4', 'empty caption'),
                ('pairs.jsonl:5', 'holds a literal <image>')]
    for message, sample, (name, reason) in zip(warnings_logged, samples[1:5],
                                               expected):
        assert message.startswith('skipping ')
        assert name in message and reason in message
        assert name in sample.source


def test_jsonl_raises_in_test_mode(jsonl_dataset):
    dataset = jsonl_dataset(test_mode=True)
    with pytest.raises(FileNotFoundError, match='missing.png'):
        dataset[1]
    with pytest.raises(ValueError, match='broken.png'):
        dataset[2]
    with pytest.raises(UnusableSample, match='empty caption'):
        dataset[3]
    with pytest.raises(UnusableSample, match='literal <image>'):
        dataset[4]


@pytest.mark.parametrize('token', ['<image>', '<|endofchunk|>'])
def test_literal_flamingo_tokens_in_a_caption_are_refused(
        token, images, tokenizer_dir, png_bytes, write_tar, warnings_logged):
    caption = f'a red{token}square'
    root = images.parent
    ann_file = write_jsonl(root / 'tokens.jsonl', [
        dict(image='red.png', caption='a red square'),
        dict(image='red.png', caption=caption)
    ])
    (root / 'coco.json').write_text(
        json.dumps(
            dict(
                images=[dict(id=1, file_name='red.png')],
                annotations=[dict(id=7, image_id=1, caption=caption)])))
    shard = write_tar(root / 'tokens.tar', {
        'k0.png': png_bytes(RED),
        'k0.txt': caption
    })
    # each dataset, and how its error names the sample
    datasets = {
        'tokens.jsonl:2)':
        build(
            tokenizer_dir,
            type='JsonlImageText',
            ann_file=ann_file,
            data_prefix=dict(img_path=str(images))),
        'red.png (caption 7)':
        build(
            tokenizer_dir,
            type='CocoCaptionPairs',
            ann_file=str(root / 'coco.json'),
            data_prefix=dict(img_path=str(images))),
        'tokens.tar:k0':
        build(tokenizer_dir, type='WebDatasetImageText', shards=shard),
    }
    for source, dataset in datasets.items():
        last = len(dataset) - 1
        assert dataset[last]['data_samples'].unusable
        assert source in warnings_logged[-1]
        assert f'holds a literal {token}' in warnings_logged[-1]
        dataset.test_mode = True
        with pytest.raises(
                UnusableSample,
                match=re.escape(f'{source} holds a literal {token}')):
            dataset[last]
    assert len(warnings_logged) == 3


def test_truncation_keeps_what_the_tokenizer_keeps(images, tokenizer_dir):
    caption = 'the quick brown fox jumps over the lazy dog ' * 3
    ann_file = write_jsonl(images.parent / 'long.jsonl',
                           [dict(image='red.png', caption=caption)])
    kwargs = dict(
        type='JsonlImageText',
        ann_file=ann_file,
        data_prefix=dict(img_path=str(images)))
    dataset = build(tokenizer_dir, max_tokens=12, **kwargs)
    text = dataset[0]['data_samples'].text
    tokenizer = dataset.tokenizer
    full = f'<image>{caption.strip()}{EOC}{EOS}'
    assert full.startswith(text) and len(text) < len(full)
    # what the model will tokenize is exactly the truncated sequence
    expected = tokenizer(full, truncation=True, max_length=12)['input_ids']
    assert tokenizer(text)['input_ids'] == expected
    untruncated = build(tokenizer_dir, max_tokens=None, **kwargs)
    assert untruncated[0]['data_samples'].text == full


@pytest.fixture
def shards(tmp_path, png_bytes, write_tar):
    """Two WebDataset shards; ``bad0`` and ``bad1`` are unusable."""
    folder = tmp_path / 'shards'
    folder.mkdir()
    write_tar(
        folder / 'shard-000.tar', {
            'k0.png': png_bytes(RED),
            'k0.txt': ' a red square ',
            'k1.jpg': png_bytes(GREEN),
            'k1.json': json.dumps(dict(caption='a green square', url='x')),
            'k1.txt': 'the txt wins',
            'no_image.txt': 'a caption alone',
            'no_caption.png': png_bytes(BLUE),
        })
    write_tar(
        folder / 'shard-001.tar', {
            'bad0.png': b'corrupt bytes',
            'bad0.txt': 'never decoded',
            'bad1.png': png_bytes(BLUE),
            'bad1.json': json.dumps(dict(url='no caption field')),
            'sub/k2.webp': png_bytes(BLUE),
            'sub/k2.json': json.dumps(dict(caption='a blue square')),
        })
    return folder


def test_webdataset_index_and_texts(shards, tokenizer_dir):
    dataset = build(
        tokenizer_dir,
        type='WebDatasetImageText',
        shards='shard-{000..001}.tar',
        data_root=str(shards))
    assert isinstance(dataset, WebDatasetImageText) and len(dataset) == 5
    keys = [
        dataset.get_data_info(i)['source'].rsplit(':', 1)[1] for i in range(5)
    ]
    assert keys == ['k0', 'k1', 'bad0', 'bad1', 'sub/k2']
    samples = [dataset[i] for i in (0, 1, 4)]
    assert [s['data_samples'].text for s in samples] == [
        f'<image>a red square{EOC}{EOS}',
        f'<image>the txt wins{EOC}{EOS}',
        f'<image>a blue square{EOC}{EOS}',
    ]
    assert [pixel(s) for s in samples] == [list(RED), list(GREEN), list(BLUE)]
    assert samples[0]['data_samples'].source == f'{shards}/shard-000.tar:k0'
    # a glob and a list of paths find the same shards
    for pattern in (str(shards / '*.tar'), [
            str(shards / 'shard-000.tar'),
            str(shards / 'shard-001.tar')
    ]):
        assert len(
            build(tokenizer_dir, type='WebDatasetImageText',
                  shards=pattern)) == 5


def test_webdataset_skips_bad_samples(shards, tokenizer_dir, warnings_logged):
    kwargs = dict(type='WebDatasetImageText', shards=str(shards / '*.tar'))
    dataset = build(tokenizer_dir, **kwargs)
    samples = [dataset[i]['data_samples'] for i in (2, 3, 4)]
    assert samples[0].unusable and samples[1].unusable
    assert samples[2].text == f'<image>a blue square{EOC}{EOS}'
    assert len(warnings_logged) == 2
    assert 'shard-001.tar:bad0' in warnings_logged[0]
    assert 'cannot read image' in warnings_logged[0]
    assert 'shard-001.tar:bad1' in warnings_logged[1]
    assert '"caption"' in warnings_logged[1]
    dataset = build(tokenizer_dir, test_mode=True, **kwargs)
    with pytest.raises(ValueError, match='bad0'):
        dataset[2]


def test_wrong_paths_fail_at_construction(images, shards, tokenizer_dir):
    with pytest.raises(FileNotFoundError, match='ann_file.*nope.json'):
        build(
            tokenizer_dir,
            type='CocoCaptionPairs',
            ann_file='nope.json',
            data_root=str(images.parent))
    ann_file = write_jsonl(images.parent / 'a.jsonl',
                           [dict(image='red.png', caption='red')])
    with pytest.raises(FileNotFoundError, match='img_path.*no_dir'):
        build(
            tokenizer_dir,
            type='JsonlImageText',
            ann_file=ann_file,
            data_prefix=dict(img_path=str(images.parent / 'no_dir')))
    with pytest.raises(FileNotFoundError, match='no_shards/shard-000.tar'):
        build(
            tokenizer_dir,
            type='WebDatasetImageText',
            shards=str(shards.parent / 'no_shards/shard-{000..001}.tar'))
    with pytest.raises(FileNotFoundError, match=r'no file matches .*\*.tgz'):
        build(
            tokenizer_dir,
            type='WebDatasetImageText',
            shards=str(shards / '*.tgz'))
    with pytest.raises(FileNotFoundError, match='tokenizer.pretrained'):
        build(
            str(images / 'no_tokenizer'),
            type='JsonlImageText',
            ann_file=ann_file)
    bad_line = images.parent / 'bad.jsonl'
    bad_line.write_text('{"image": "red.png", "caption": "ok"}\n{oops\n')
    with pytest.raises(ValueError, match='bad.jsonl:2'):
        build(tokenizer_dir, type='JsonlImageText', ann_file=str(bad_line))


def test_shard_helpers(shards):
    assert expand_braces('s{08..10}-{a,b}.tar') == [
        's08-a.tar', 's08-b.tar', 's09-a.tar', 's09-b.tar', 's10-a.tar',
        's10-b.tar'
    ]
    assert expand_braces('{1..2}{}') == ['1{}', '2{}']
    assert expand_paths(
        'shard-00{0,1}.tar', root=str(shards)) == [
            f'{shards}/shard-000.tar', f'{shards}/shard-001.tar'
        ]
    path = str(shards / 'shard-000.tar')
    members = list_members(path)
    assert read_member(path, members['k0.txt'], 'k0.txt') == b' a red square '
    # a shard cut short: the index says more bytes than there are
    offset, size = members['k0.txt']
    with pytest.raises(EOFError, match='k0.txt is truncated'):
        read_member(path, (offset, size + 10**6), 'k0.txt')
    not_a_tar = shards / 'not.tar'
    not_a_tar.write_bytes(b'\x01' * 1000)
    with pytest.raises(ValueError, match='not.tar'):
        list_members(str(not_a_tar))


def test_matches_openflamingo_preprocess_laion_text(images, tokenizer_dir,
                                                    openflamingo_data):
    captions = [
        '  a red square \n', 'two yellow stars above a purple hexagon.',
        'the quick brown fox jumps over the lazy dog. ' * 4
    ]
    ann_file = write_jsonl(
        images.parent / 'laion.jsonl',
        [dict(image='red.png', caption=c) for c in captions])
    dataset = build(
        tokenizer_dir,
        type='JsonlImageText',
        ann_file=ann_file,
        data_prefix=dict(img_path=str(images)))
    tokenizer = dataset.tokenizer
    input_ids, attention_mask = openflamingo_data.preprocess_laion_text(
        captions, tokenizer)
    for i in range(len(captions)):
        expected = input_ids[i][attention_mask[i].bool()].tolist()
        text = dataset[i]['data_samples'].text
        assert tokenizer(text)['input_ids'] == expected
    assert len(expected) == 32  # the long caption was truncated
