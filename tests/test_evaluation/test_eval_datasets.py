"""Evaluation datasets on small files written here, one per format."""
import json
import os
from unittest import mock

import pytest
from PIL import Image

from mmflamingo.datasets import eval_datasets
from mmflamingo.datasets.eval_datasets import (IMAGENET_CLASS_NAMES_FILE,
                                               HatefulMemesDataset,
                                               ImageFolderClassification,
                                               KarpathyCaptionDataset,
                                               VQADataset)
from mmflamingo.registry import DATASETS


def write_image(path) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new('RGB', (8, 8), (0, 128, 255)).save(path)
    return str(path)


def write_json(path, data) -> str:
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(data, f)
    return str(path)


@pytest.fixture
def karpathy(tmp_path):
    """4 train and 2 test COCO images (train2014 and val2014 folders)."""
    images = []
    for i, split in enumerate(['train'] * 4 + ['test'] * 2 + ['restval']):
        folder = 'train2014' if split == 'train' else 'val2014'
        name = f'COCO_{folder}_{i:012d}.jpg'
        write_image(tmp_path / folder / name)
        images.append(
            dict(
                filename=name,
                filepath=folder,
                split=split,
                cocoid=i,
                sentences=[
                    dict(raw=f' image {i} caption {j}.') for j in range(5)
                ]))
    return write_json(tmp_path / 'dataset_coco.json', dict(images=images))


def test_karpathy_splits(karpathy, tmp_path):
    support = KarpathyCaptionDataset(
        karpathy, split='train', data_prefix=dict(img_path=str(tmp_path)))
    query = DATASETS.build(
        dict(
            type='KarpathyCaptionDataset',
            ann_file='dataset_coco.json',
            data_root=str(tmp_path),
            data_prefix=dict(img_path='')))
    assert len(support) == 4 and len(query) == 2
    sample = query[0]
    assert sample['media'] == [
        str(tmp_path / 'val2014' / 'COCO_val2014_000000000004.jpg')
    ]
    assert sample['caption'] == ' image 4 caption 0.'
    assert len(sample['captions']) == 5
    assert sample['image_id'] == sample['sample_id'] == 4
    assert sample['split'] == 'test'
    assert [s['image_id'] for s in support] == [0, 1, 2, 3]
    both = KarpathyCaptionDataset(
        karpathy,
        split=['train', 'restval'],
        data_prefix=dict(img_path=str(tmp_path)))
    assert len(both) == 5


def test_flickr_ids_and_missing_images(tmp_path):
    images = [
        dict(
            filename=f'{1000 + i}.jpg',
            split='test',
            imgid=i,
            sentences=[dict(raw='a dog')]) for i in range(3)
    ]
    ann = write_json(tmp_path / 'dataset_flickr30k.json', dict(images=images))
    write_image(tmp_path / 'img' / '1000.jpg')
    write_image(tmp_path / 'img' / '1002.jpg')
    prefix = dict(img_path=str(tmp_path / 'img'))
    with pytest.raises(FileNotFoundError, match='1001.jpg'):
        KarpathyCaptionDataset(ann, data_prefix=prefix)
    dataset = KarpathyCaptionDataset(
        ann, data_prefix=prefix, on_missing='skip')
    assert dataset.num_skipped == 1
    assert [s['image_id'] for s in dataset] == ['1000', '1002']
    with pytest.raises(ValueError, match='on_missing'):
        KarpathyCaptionDataset(ann, data_prefix=prefix, on_missing='ignore')


@pytest.fixture
def vqa(tmp_path):
    questions, annotations = [], []
    for i in range(3):
        write_image(tmp_path / 'val2014' / f'COCO_val2014_{i:012d}.jpg')
        questions.append(
            dict(question_id=10 * i, image_id=i, question=f'question {i}?'))
        annotations.append(
            dict(
                question_id=10 * i,
                answer_type='other',
                answers=[
                    dict(answer=f'answer {i}.{j}', answer_id=j)
                    for j in range(10)
                ]))
    return dict(
        question_file=write_json(tmp_path / 'questions.json',
                                 dict(questions=questions)),
        annotation_file=write_json(tmp_path / 'annotations.json',
                                   dict(annotations=annotations)),
        data_prefix=dict(img_path=str(tmp_path / 'val2014')),
        image_name='COCO_val2014_{image_id:012d}.jpg')


def test_vqa(vqa, tmp_path):
    dataset = VQADataset(**vqa)
    assert len(dataset) == 3
    sample = dataset[2]
    assert sample['question'] == 'question 2?'
    assert sample['question_id'] == sample['sample_id'] == 20
    assert sample['image_id'] == 2
    assert sample['answers'] == [f'answer 2.{j}' for j in range(10)]
    # the records as the annotation has them, for the VQA accuracy
    assert sample['answer_records'] == [
        dict(answer=f'answer 2.{j}', answer_id=j) for j in range(10)
    ]
    assert sample['answer_type'] == 'other'
    assert sample['media'][0].endswith('COCO_val2014_000000000002.jpg')
    assert sample['split'] == 'val'

    # test-dev: no annotations
    test_dev = VQADataset(**dict(vqa, annotation_file=None), split='testdev')
    assert 'answers' not in test_dev[0] and test_dev[0]['split'] == 'testdev'


def test_vqa_bad_annotations(vqa, tmp_path):
    with open(vqa['annotation_file']) as f:
        annotations = json.load(f)
    annotations['annotations'][1]['question_id'] = 999
    bad = write_json(tmp_path / 'bad.json', annotations)
    with pytest.raises(ValueError, match='bad.json.*question_id 999'):
        VQADataset(**dict(vqa, annotation_file=bad))
    annotations['annotations'].pop(1)
    partial = write_json(tmp_path / 'partial.json', annotations)
    with pytest.raises(ValueError, match='no annotation for question_id 10'):
        VQADataset(**dict(vqa, annotation_file=partial))
    with pytest.raises(FileNotFoundError, match='annotation_file.*nope.json'):
        VQADataset(**dict(vqa, annotation_file=str(tmp_path / 'nope.json')))
    annotations['annotations'].append(
        dict(question_id=10, answers=['yes'] * 10))
    strings = write_json(tmp_path / 'strings.json', annotations)
    with pytest.raises(ValueError, match='strings.json.*question_id 10'):
        VQADataset(**dict(vqa, annotation_file=strings))
    with pytest.raises(FileNotFoundError, match='question_file.*nope.json'):
        VQADataset(**dict(vqa, question_file=str(tmp_path / 'nope.json')))


def test_vqa_missing_images(vqa, tmp_path):
    os.remove(tmp_path / 'val2014' / 'COCO_val2014_000000000001.jpg')
    with pytest.raises(
            FileNotFoundError, match='COCO_val2014_000000000001.jpg'):
        VQADataset(**vqa)
    dataset = VQADataset(**vqa, on_missing='skip')
    assert [s['question_id'] for s in dataset] == [0, 20]
    assert dataset.num_skipped == 1


def test_hateful_memes(tmp_path):
    lines = []
    for i, label in enumerate([0, 1, 1]):
        write_image(tmp_path / 'img' / f'{i:05d}.png')
        lines.append(
            json.dumps(
                dict(
                    id=i,
                    img=f'img/{i:05d}.png',
                    label=label,
                    text=f'meme {i}')))
    ann = tmp_path / 'dev_seen.jsonl'
    ann.write_text('\n'.join(lines) + '\n\n')
    dataset = HatefulMemesDataset(
        str(ann),
        split='dev',
        data_prefix=dict(img_path=str(tmp_path / 'img')))
    assert len(dataset) == 3
    assert [s['class_name'] for s in dataset] == ['no', 'yes', 'yes']
    sample = dataset[1]
    assert sample['text'] == 'meme 1' and sample['label'] == 1
    assert sample['id'] == sample['sample_id'] == 1
    assert sample['media'] == [str(tmp_path / 'img' / '00001.png')]

    (tmp_path / 'broken.jsonl').write_text('{"id": 1}\n')
    with pytest.raises(ValueError, match='broken.jsonl:1'):
        HatefulMemesDataset(str(tmp_path / 'broken.jsonl'))
    with pytest.raises(FileNotFoundError, match='ann_file.*absent.jsonl'):
        HatefulMemesDataset(str(tmp_path / 'absent.jsonl'))


def test_image_folder(tmp_path):
    for split, count in (('train', 3), ('val', 1)):
        for wnid in ('n02', 'n01'):
            for i in range(count):
                write_image(tmp_path / split / wnid / f'{wnid}_{i}.JPEG')
    (tmp_path / split / 'n01' / 'notes.txt').write_text('not an image')
    (tmp_path / 'classnames.txt').write_text('tench\ngoldfish\n')
    support = ImageFolderClassification(
        'classnames.txt', split='train', data_root=str(tmp_path))
    query = ImageFolderClassification(
        'classnames.txt', split='val', data_root=str(tmp_path))
    assert len(support) == 6 and len(query) == 2
    assert [(s['label'], s['class_name']) for s in query] == [(0, 'tench'),
                                                              (1, 'goldfish')]
    assert query[0]['sample_id'] == 'n01/n01_0.JPEG'
    assert query.metainfo['classes'] == ('tench', 'goldfish')

    (tmp_path / 'three.txt').write_text('a\nb\nc\n')
    with pytest.raises(ValueError, match='three.txt names 3 classes'):
        ImageFolderClassification('three.txt', data_root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match='class_names_file'):
        ImageFolderClassification('none.txt', data_root=str(tmp_path))


def test_imagenet_class_names(tmp_path):
    """The packaged ImageNet names name a 1000-class folder, in the order
    of the sorted WordNet ids, the data root aside."""
    with open(IMAGENET_CLASS_NAMES_FILE, encoding='utf-8') as f:
        names = f.read().split('\n')
    assert names[-1] == '' and len(names[:-1]) == 1000
    names = names[:-1]
    assert all(name and name == name.strip() for name in names)
    assert names[:3] == ['tench', 'goldfish', 'great white shark']
    assert names[-1] == 'toilet paper'
    for label in range(1000):
        os.makedirs(tmp_path / 'val' / f'n{label:08d}')
    write_image(tmp_path / 'val' / 'n00000002' / 'a.JPEG')
    query = ImageFolderClassification(
        IMAGENET_CLASS_NAMES_FILE, split='val', data_root=str(tmp_path))
    assert len(query) == 1 and query[0]['class_name'] == 'great white shark'
    assert query.metainfo['classes'] == tuple(names)


def _edited(path, edit) -> str:
    """A copy of the json file ``path`` changed by ``edit``."""
    with open(path) as f:
        data = json.load(f)
    edit(data)
    return write_json(str(path).replace('.json', '_edited.json'), data)


def test_literal_flamingo_tokens_leave_a_sample_out(karpathy, vqa, tmp_path):
    """A literal <image> or <|endofchunk|> in text a prompt will hold
    would bind the wrong image: the sample is left out, loudly."""

    def caption(data):
        data['images'][4]['sentences'][2]['raw'] = 'a cat<|endofchunk|>'

    def question(data):
        data['questions'][1]['question'] = 'what is in the <image>?'

    def answer(data):
        data['annotations'][2]['answers'][0]['answer'] = '<image>'

    with mock.patch.object(eval_datasets, 'print_log') as log:
        captions = KarpathyCaptionDataset(
            _edited(karpathy, caption),
            data_prefix=dict(img_path=str(tmp_path)))
        questions = VQADataset(**dict(
            vqa,
            question_file=_edited(vqa['question_file'], question),
            annotation_file=_edited(vqa['annotation_file'], answer)))
    assert [s['image_id'] for s in captions] == [5]
    assert [s['question_id'] for s in questions] == [0]
    assert captions.num_skipped == 1 and questions.num_skipped == 2
    messages = [call.args[0] for call in log.call_args_list]
    assert len(messages) == 3
    expected = [
        ('COCO_val2014_000000000004.jpg',
         'its captions holds a literal <|endofchunk|>'),
        ('question_id 10', 'its question holds a literal <image>'),
        ('question_id 20', 'its answers holds a literal <image>'),
    ]
    for message, (source, reason) in zip(messages, expected):
        assert 'leaving out' in message
        assert source in message and reason in message
