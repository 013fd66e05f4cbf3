"""The shapes world: deterministic, held out where it must be, true to its
pixels, and read by the real datasets."""
import importlib.util
import json
import os
import os.path as osp
import random
import re

import av
import numpy as np
import pytest
from mmengine.registry import DefaultScope
from PIL import Image

from mmflamingo.registry import DATASETS
from mmflamingo.shapes_world import (COLOURS, SHAPES, NameGenerator, Shape,
                                     render_scene, world_vocabulary,
                                     write_shapes_world)
from mmflamingo.shapes_world.language import BINDING_QUESTION, SHAPE_QUESTION
from mmflamingo.shapes_world.scenes import BACKGROUND, POSITIONS, SIZES
from mmflamingo.shapes_world.writer import scene_to_json

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PIPELINE = [
    dict(type='LoadMedia'),
    dict(type='PackFlamingoInputs', meta_keys=['source']),
]
PHRASE = re.compile(r'(?:an?) (small|large) (\w+) (\w+) '
                    r'(?:on the|at the|in the) (\w+)')


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    return write_shapes_world(
        str(tmp_path_factory.mktemp('shapes')), seed=0, scale='tiny')


def load(path):
    with open(path, encoding='utf-8') as f:
        if path.endswith('.jsonl'):
            return [json.loads(line) for line in f]
        return json.load(f)


def read_tree(root):
    """``{relative path: bytes}`` of every file under root."""
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = osp.join(folder, name)
            with open(path, 'rb') as f:
                files[osp.relpath(path, root)] = f.read()
    return files


def nearest_colour(rgb) -> str:
    return min(
        COLOURS,
        key=lambda c: sum((int(a) - b)**2 for a, b in zip(rgb, COLOURS[c])))


def build(cfg):
    with DefaultScope.overwrite_default_scope('mmflamingo'):
        return DATASETS.build(cfg)


def test_deterministic_by_seed(world, tmp_path):
    again = write_shapes_world(str(tmp_path / 'again'), seed=0, scale='tiny')
    other = write_shapes_world(str(tmp_path / 'other'), seed=1, scale='tiny')
    files = read_tree(world['root'])
    assert read_tree(again['root']) == files
    assert any(name.endswith('.mp4') for name in files)
    differs = read_tree(other['root'])
    for key in ('captions', 'docs', 'corpus', 'binding_val_questions',
                'lm_world', 'videoqa_val_questions'):
        name = osp.relpath(world[key], world['root'])
        assert differs[name] != files[name], name
    assert differs['images/0.png'] != files['images/0.png']


def test_manifest_skips_a_complete_world(tmp_path):
    paths = write_shapes_world(str(tmp_path), seed=0, scale='tiny')
    manifest = load(paths['manifest'])
    assert manifest['complete'] and manifest['seed'] == 0
    assert manifest['counts']['images'] == len(os.listdir(paths['images']))
    assert manifest['counts']['docs'] == len(load(paths['docs']))
    os.remove(paths['pairs'])
    write_shapes_world(str(tmp_path), seed=0, scale='tiny')
    assert not osp.exists(paths['pairs'])  # reused, not rewritten
    write_shapes_world(str(tmp_path), seed=0, scale='tiny', force=True)
    assert osp.isfile(paths['pairs'])
    stale = osp.join(paths['images'], 'stale.png')
    Image.new('RGB', (4, 4)).save(stale)
    write_shapes_world(str(tmp_path), seed=2, scale='tiny')
    assert load(paths['manifest'])['seed'] == 2 and not osp.exists(stale)
    with pytest.raises(ValueError, match='scale'):
        write_shapes_world(str(tmp_path), scale='huge')


def test_real_datasets_read_every_file(world, tokenizer_dir):
    root = world['root']
    counts = load(world['manifest'])['counts']
    captions = dict(
        type='KarpathyCaptionDataset',
        data_root=root,
        ann_file='captions/karpathy_shapes.json',
        data_prefix=dict(img_path='images'))
    for split in ('train', 'test'):
        dataset = build(dict(captions, split=split))
        assert len(dataset) == counts[f'caption_{split}'] > 0
        assert len(dataset[0]['captions']) == 5
    media = dict(
        vqa=('{image_id}.png', 'images'),
        binding=('{image_id}.png', 'images'),
        videoqa=('{image_id}.mp4', 'videos'))
    for task, (image_name, folder) in media.items():
        for split in ('train', 'val'):
            dataset = build(
                dict(
                    type='VQADataset',
                    data_root=root,
                    question_file=f'{task}/{split}_questions.json',
                    annotation_file=f'{task}/{split}_annotations.json',
                    split=split,
                    image_name=image_name,
                    data_prefix=dict(img_path=folder)))
            assert len(dataset) == counts[f'{task}_{split}'] > 0
            sample = dataset[0]
            assert len(sample['answers']) == 10
            assert ('label' in sample) == (task == 'binding')
    tokenizer = dict(pretrained=tokenizer_dir)
    docs = build(
        dict(
            type='MMC4Interleaved',
            data_root=root,
            ann_file='interleaved/docs.jsonl',
            data_prefix=dict(img_path='images'),
            tokenizer=tokenizer,
            max_tokens=512,
            max_num_images=9,
            min_image_bytes=0,
            single_image_drop_prob=0.0,
            test_mode=True,
            pipeline=PIPELINE))
    assert len(docs) == counts['docs']
    for i in range(len(docs)):
        sample = docs[i]
        num_images = load(world['docs'])[i]['image_info']
        assert len(sample['inputs']) == len(num_images)
        assert sample['data_samples'].text.count('<image>') == len(num_images)
    pairs = build(
        dict(
            type='JsonlImageText',
            data_root=root,
            ann_file='pairs.jsonl',
            data_prefix=dict(img_path='images'),
            tokenizer=tokenizer,
            test_mode=True,
            pipeline=PIPELINE))
    assert len(pairs) == counts['pairs']
    assert pairs[0]['inputs'][0].shape[-2:] == (64, 64)
    videos = build(
        dict(
            type='VideoTextPairs',
            data_root=root,
            ann_file='videos.jsonl',
            data_prefix=dict(video='videos'),
            tokenizer=tokenizer,
            test_mode=True,
            pipeline=[
                dict(type='LoadVideoFrames', num_frames=4, fps=0.5),
                dict(type='PackFlamingoInputs', meta_keys=['source']),
            ]))
    assert len(videos) == counts['video_pairs']
    assert videos[0]['inputs'][0].shape == (4, 3, 64, 64)


def test_query_splits_are_held_out(world):
    karpathy = load(world['captions'])['images']
    train_captions = {
        e['sentences'][0]['raw']
        for e in karpathy if e['split'] == 'train'
    }
    test_captions = [
        e['sentences'][0]['raw'] for e in karpathy if e['split'] == 'test'
    ]
    assert test_captions and not train_captions & set(test_captions)
    trained_images = {
        d['image_name']
        for doc in load(world['docs'])
        for d in doc['image_info']
    }
    trained_images |= {p['image'] for p in load(world['pairs'])}
    trained_images |= {
        e['filename']
        for e in karpathy if e['split'] == 'train'
    }
    vqa_train = load(world['vqa_train_questions'])['questions']
    trained_images |= {f'{q["image_id"]}.png' for q in vqa_train}
    held_out = {e['filename'] for e in karpathy if e['split'] == 'test'}
    for key in ('vqa_val_questions', 'binding_val_questions'):
        held_out |= {
            f'{q["image_id"]}.png'
            for q in load(world[key])['questions']
        }
    val_episodes = {
        q['episode']
        for q in load(world['binding_val_questions'])['questions']
    }
    support = load(world['binding_train_questions'])['questions']
    held_out |= {
        f'{q["image_id"]}.png'
        for q in support if q['episode'] in val_episodes
    }
    assert held_out and not held_out & trained_images
    # as words: the tokenizer's syllable words have three syllables, names two
    corpus = set(
        re.findall(r'[a-z]+',
                   open(world['corpus'], encoding='utf-8').read()))
    docs = set(
        re.findall(r'[a-z]+',
                   open(world['docs'], encoding='utf-8').read()))
    lm_world = load(world['lm_world'])
    trained_names = set(lm_world['names'])
    for q in load(world['binding_val_questions'])['questions']:
        for name in q['multiple_choices']:
            assert name not in corpus and name not in docs
            assert name not in trained_names
    # the LM's text is made of training scenes only
    assert {str(s)
            for s in lm_world['scenes']
            } == {str(scene_to_json(scene))
                  for scene in _train_scenes(world)}
    # val videos show combinations no training video shows
    val_videos = {
        q['image_id']
        for q in load(world['videoqa_val_questions'])['questions']
    }
    train_videos = {
        row['video'].split('.')[0]
        for row in load(world['video_pairs'])
    }
    assert val_videos and not val_videos & train_videos
    combos = {tuple(c) for c in lm_world['video_combos']}
    for q, ann in zip(
            load(world['videoqa_val_questions'])['questions'],
            load(world['videoqa_val_annotations'])['annotations']):
        shape = re.fullmatch(r'Which way does the (\w+) move\?',
                             q['question']).group(1)
        colour = _video_colour(world, q['image_id'])
        assert (shape, colour, ann['multiple_choice_answer']) not in combos
    ids = [
        q['question_id'] for key in world if key.endswith('_questions')
        for q in load(world[key])['questions']
    ]
    assert len(ids) == len(set(ids))


def _train_scenes(world):
    """The scenes of the training captions, parsed back from the first
    reference."""
    scenes = []
    for entry in load(world['captions'])['images']:
        if entry['split'] != 'train':
            continue
        phrases = PHRASE.findall(entry['sentences'][0]['raw'])
        scenes.append(
            tuple(
                Shape(shape, colour, size, position)
                for size, colour, shape, position in phrases))
    return scenes


def _video_colour(world, video_id):
    with av.open(osp.join(world['videos'], f'{video_id}.mp4')) as container:
        frame = next(container.decode(video=0)).to_ndarray(format='rgb24')
    mask = np.abs(frame.astype(int) - BACKGROUND).sum(-1) > 150
    ys, xs = np.nonzero(mask)
    return nearest_colour(frame[int(ys.mean()), int(xs.mean())])


def test_binding_episodes(world):
    queries = load(world['binding_val_questions'])['questions']
    answers = {
        a['question_id']: a['multiple_choice_answer']
        for a in load(world['binding_val_annotations'])['annotations']
    }
    support = load(world['binding_train_questions'])['questions']
    support_answers = {
        a['question_id']: a['multiple_choice_answer']
        for a in load(world['binding_train_annotations'])['annotations']
    }
    vocabulary = world_vocabulary()
    assert queries
    for q in queries:
        name = answers[q['question_id']]
        choices = q['multiple_choices']
        assert name in choices and len(choices) in (3, 4)
        assert len(set(choices)) == len(choices)
        assert not vocabulary & set(choices)
        demos = [s for s in support if s['episode'] == q['episode']]
        assert len(demos) >= 8
        assert all(d['multiple_choices'] == choices for d in demos)
        assert name in {support_answers[d['question_id']] for d in demos}
    # in an episode, each name is bound to its own shape type
    shape_of = {}
    for questions, names in ((queries, answers), (support, support_answers)):
        for q in questions:
            image = np.asarray(
                Image.open(osp.join(world['images'], f'{q["image_id"]}.png')))
            episode = shape_of.setdefault(q['episode'], {})
            shape = _shape_type(image)
            assert episode.setdefault(names[q['question_id']], shape) == shape
    for names in shape_of.values():
        assert len(set(names.values())) == len(names)


SHORT_ANSWERS = {*COLOURS, *SHAPES, *POSITIONS, 'yes', 'no', *'0123'}


def answer_styles(texts):
    """The styles of the scene answers (not binding's) in ``texts``."""
    styles = set()
    for text in texts:
        for question, answer in re.findall(
                r'Question: ([^?]*\?) Short answer: ([^<.]*?)(?=<|$)', text):
            if question in (BINDING_QUESTION, SHAPE_QUESTION):
                continue
            styles.add('short' if answer in SHORT_ANSWERS else 'long')
    return styles


def test_documents_keep_one_answer_style(world):
    """A document answers every question type in one style, so one demo of
    any type shows a few-shot prompt's convention."""
    seen = set()
    for doc in load(world['docs']):
        styles = answer_styles(doc['text_list'])
        assert len(styles) <= 1, doc['text_list']
        seen |= styles
    assert seen == {'short', 'long'}


def _shape_type(image: np.ndarray) -> str:
    """The shape type whose rendering (near the drawn bounding box, any
    size and jitter) gives exactly ``image``."""
    ys, xs = np.nonzero(np.abs(image.astype(int) - BACKGROUND).sum(-1) > 150)
    centre = np.array([xs.min() + xs.max(), ys.min() + ys.max()]) / 2
    position = min(
        POSITIONS, key=lambda p: np.abs(np.array(POSITIONS[p]) - centre).sum())
    colour = nearest_colour(image[int(centre[1]), int(centre[0])])
    found = {
        shape
        for shape in SHAPES
        for size in SIZES
        for dx in (-1, 0, 1)
        for dy in (-1, 0, 1) if np.array_equal(
            render_scene((
                Shape(shape, colour, size, position, dx, dy), )), image)
    }
    assert len(found) == 1, found
    return found.pop()


def test_captions_describe_the_pixels(world):
    karpathy = load(world['captions'])['images']
    checked = 0
    for entry in karpathy:
        image = np.asarray(
            Image.open(osp.join(world['images'], entry['filename'])))
        caption = entry['sentences'][0]['raw']
        phrases = PHRASE.findall(caption)
        xs = []
        for size, colour, shape, position in phrases:
            assert shape in SHAPES
            x, y = POSITIONS[position]
            assert nearest_colour(image[y, x]) == colour, caption
            xs.append(x)
            checked += 1
        assert phrases and xs == sorted(xs), caption
        # nothing is drawn that the caption does not mention
        drawn = np.abs(image.astype(int) - BACKGROUND).sum(-1) > 150
        assert drawn.sum() > 0
        for position, (x, y) in POSITIONS.items():
            if position not in {p[3] for p in phrases}:
                assert not drawn[y, x], (caption, position)
    assert checked > len(karpathy)


def test_vqa_answers_describe_the_pixels(world):
    checked = 0
    for split in ('train', 'val'):
        questions = load(world[f'vqa_{split}_questions'])['questions']
        annotations = load(world[f'vqa_{split}_annotations'])['annotations']
        for q, ann in zip(questions, annotations):
            assert q['question_id'] == ann['question_id']
            answers = [a['answer'] for a in ann['answers']]
            assert answers[0] == ann['multiple_choice_answer']
            assert answers.count(answers[0]) >= 9
            image = np.asarray(
                Image.open(osp.join(world['images'], f'{q["image_id"]}.png')))
            drawn = np.abs(image.astype(int) - BACKGROUND).sum(-1) > 150
            where = re.fullmatch(r'Where is the (\w+) \w+\?', q['question'])
            if where:
                x, y = POSITIONS[answers[0]]
                assert nearest_colour(image[y, x]) == where.group(1)
                checked += 1
            if q['question'] == 'How many shapes are there?':
                assert int(answers[0]) == sum(drawn[y, x]
                                              for x, y in POSITIONS.values())
                checked += 1
    assert checked


def test_videos_move_as_captioned(world):
    rows = load(world['video_pairs'])
    motions = {
        'to the right': 'right',
        'to the left': 'left',
        'up': 'up',
        'down': 'down'
    }
    checked = set()
    for row in rows:
        caption = re.fullmatch(r'Output: an? (\w+) (\w+) moves (.*)\.',
                               row['caption'])
        question = re.fullmatch(
            r'Question: Which way does the (\w+) move\? Short answer: '
            r'(\w+)', row['caption'])
        assert caption or question, row
        if caption:
            colour, direction = caption.group(1), motions[caption.group(3)]
        else:
            colour, direction = None, question.group(2)
        with av.open(osp.join(world['videos'], row['video'])) as container:
            frames = [
                f.to_ndarray(format='rgb24') for f in container.decode(video=0)
            ]
        assert len(frames) == 8 and frames[0].shape == (64, 64, 3)
        centres = []
        for frame in frames:
            mask = np.abs(frame.astype(int) - BACKGROUND).sum(-1) > 150
            ys, xs = np.nonzero(mask)
            centres.append((xs.mean(), ys.mean()))
            if colour is not None:
                assert nearest_colour(frame[int(ys.mean()),
                                            int(xs.mean())]) == colour
        dx = centres[-1][0] - centres[0][0]
        dy = centres[-1][1] - centres[0][1]
        expected = {
            'right': dx > 30,
            'left': dx < -30,
            'up': dy < -30,
            'down': dy > 30
        }
        assert expected[direction] and min(abs(dx), abs(dy)) < 3, row
        checked.add(bool(caption))
    assert checked == {True, False}


def test_names_are_fresh():
    names = NameGenerator(random.Random(0))
    taken = names.take(50) + names.take(50)
    assert len(set(taken)) == 100
    assert all(re.fullmatch(r'([bdfgklmnprstvz][aeiou]){2}', n) for n in taken)
    assert not set(taken) & world_vocabulary()
    assert NameGenerator(random.Random(0)).take(100) == taken
    with pytest.raises(RuntimeError, match='out of invented names'):
        names.take(10**6)


def test_cli(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        'make_shapes_world',
        osp.join(ROOT, 'tools', 'misc', 'make_shapes_world.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main(['--out', str(tmp_path), '--scale', 'tiny', '--seed', '3'])
    out = capsys.readouterr().out
    manifest = load(str(tmp_path / 'world.json'))
    assert manifest['seed'] == 3 and manifest['scale'] == 'tiny'
    assert f'docs                     {manifest["counts"]["docs"]}' in out
