"""tools/cache_rices_features.py on a tiny Flamingo and a tiny dataset."""
import importlib.util
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from PIL import Image

from mmflamingo.apis import init_model
from mmflamingo.datasets.transforms import (LoadVideoFrames, media_pipeline,
                                            write_video)
from mmflamingo.evaluation.demo_selection import load_rices_features
from mmflamingo.registry import DATASETS
from mmflamingo.testing import build_tiny_tokenizer, tiny_flamingo_config

TOOL = osp.join(
    osp.dirname(__file__), '..', '..', 'tools', 'cache_rices_features.py')


def load_tool():
    spec = importlib.util.spec_from_file_location('cache_rices_features', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def vqa_dataset(root, questions, annotations, image_name):
    """A ``VQADataset`` (train split) over question/annotation files written
    to ``root``, its media named by ``image_name``."""
    (root / 'q.json').write_text(json.dumps(dict(questions=questions)))
    (root / 'a.json').write_text(json.dumps(dict(annotations=annotations)))
    return DATASETS.build(
        dict(
            type='VQADataset',
            question_file=str(root / 'q.json'),
            annotation_file=str(root / 'a.json'),
            image_name=image_name,
            split='train',
            data_prefix=dict(img_path=str(root))))


def test_cache_rices_features(tmp_path):
    colours = [(255, 0, 0), (250, 10, 0), (0, 0, 255), (0, 255, 0),
               (10, 0, 250)]
    images = []
    for i, colour in enumerate(colours):
        Image.new('RGB', (40, 48), colour).save(tmp_path / f'{i}.jpg')
        images.append(
            dict(
                filename=f'{i}.jpg',
                split='train',
                cocoid=100 + i,
                sentences=[dict(raw='a colour')]))
    with open(tmp_path / 'karpathy.json', 'w') as f:
        json.dump(dict(images=images), f)

    tokenizer = build_tiny_tokenizer(str(tmp_path / 'tokenizer'))
    config = dict(
        model=tiny_flamingo_config(tokenizer),
        rices_dataset=dict(
            type='KarpathyCaptionDataset',
            ann_file=str(tmp_path / 'karpathy.json'),
            split='train',
            data_prefix=dict(img_path=str(tmp_path))))
    config_file = tmp_path / 'tiny_rices.py'
    config_file.write_text('\n'.join(f'{k} = {v!r}'
                                     for k, v in config.items()))
    out = str(tmp_path / 'features.pth')

    # the tiny model has random weights: build it the same way both times
    torch.manual_seed(0)
    load_tool().main([
        str(config_file), '--split', 'support', '--out', out, '--batch-size',
        '2', '--device', 'cpu'
    ])

    cache = load_rices_features(out, keys=[100, 101, 102, 103, 104])
    features = cache['features']
    assert features.shape == (5, 32) and features.dtype == torch.float32
    torch.testing.assert_close(features.norm(dim=-1), torch.ones(5))
    assert str(config_file) in cache['config']
    # the features come from the images: red differs from blue
    assert (features[0] - features[2]).abs().max() > 1e-3

    half = str(tmp_path / 'half.pth')
    torch.manual_seed(0)
    load_tool().main([str(config_file), '--out', half, '--fp16'])
    cache = load_rices_features(half, keys=[100, 101, 102, 103, 104])
    assert cache['features'].dtype == torch.float16
    torch.testing.assert_close(
        cache['features'].float(), features, atol=1e-3, rtol=0)


def test_video_features_pool_every_frame(tmp_path, tokenizer_dir):
    """With a video pipeline (test_cfg.media_pipeline) a clip's feature
    is the L2-normalised mean of the vision encoder's patch tokens over all
    its decoded frames, each frame encoded as an image: not its first
    frame's."""
    questions, annotations = [], []
    for i in range(3):
        frames = []
        for t in range(3):  # a square moving right, a colour per clip
            frame = np.full((32, 32, 3), 255, dtype=np.uint8)
            frame[8:24, 6 * t:6 * t + 12] = [(255, 0, 0), (0, 0, 255),
                                             (0, 160, 0)][i]
            frames.append(frame)
        write_video(str(tmp_path / f'{i}.mp4'), frames)
        questions.append(dict(question_id=i, image_id=i, question='Where?'))
        annotations.append(dict(question_id=i, answers=[dict(answer='a')]))
    dataset = vqa_dataset(tmp_path, questions, annotations, '{image_id}.mp4')
    torch.manual_seed(0)
    model = init_model(Config(dict(model=tiny_flamingo_config(tokenizer_dir))))
    size = model.backbone.image_size
    pipeline = [
        dict(type='LoadVideoFrames', num_frames=3),
        dict(type='ResizeMedia', size=size),
        dict(type='PackFlamingoInputs'),
    ]
    features, keys, _ = load_tool().compute_features(
        model, dataset, batch_size=2, pipeline=pipeline)
    assert features.shape == (3, 32) and keys == [0, 1, 2]

    image_pipeline = Compose(media_pipeline(size))
    for i in range(3):
        frames = LoadVideoFrames(num_frames=3).load(str(tmp_path / f'{i}.mp4'))
        assert len(frames) == 3
        tokens = []
        for frame in frames:  # one image each: (1, 1, 1, P, D)
            packed = image_pipeline(dict(media=[frame], text=''))
            images = model.data_preprocessor(pseudo_collate([packed]))
            with torch.no_grad():
                tokens.append(model.backbone(images['images'])[0, 0, 0])
        tokens = torch.stack(tokens)  # (T, P, D)
        expected = torch.nn.functional.normalize(tokens.mean((0, 1)), dim=0)
        torch.testing.assert_close(features[i], expected, rtol=1e-5, atol=1e-5)
        first = torch.nn.functional.normalize(tokens[0].mean(0), dim=0)
        assert (features[i] - first).abs().max() > 1e-3
    # the default (image) pipeline cannot read a clip
    with pytest.raises(ValueError, match=r'cannot read image .*\.mp4'):
        load_tool().compute_features(model, dataset, batch_size=2)


def test_questions_about_one_image_share_its_feature(tmp_path, tokenizer_dir):
    """VQA-style support sets ask several questions about one image: each
    image file is encoded once and every question gets its feature, equal
    to the one computed with no other question beside it."""
    for i, colour in enumerate([(255, 0, 0), (0, 0, 255)]):
        Image.new('RGB', (40, 48), colour).save(tmp_path / f'{i}.jpg')
    image_ids = [0, 1, 0, 0, 1]  # five questions about two images
    questions = [
        dict(question_id=q, image_id=i, question='What colour?')
        for q, i in enumerate(image_ids)
    ]
    annotations = [
        dict(question_id=q, answers=[dict(answer='red')])
        for q in range(len(image_ids))
    ]
    dataset = vqa_dataset(tmp_path, questions, annotations, '{image_id}.jpg')
    torch.manual_seed(0)
    model = init_model(Config(dict(model=tiny_flamingo_config(tokenizer_dir))))
    model.backbone.num_encoded = 0
    features, keys, files = load_tool().compute_features(model, dataset, 4)
    assert keys == [0, 1, 2, 3, 4]
    assert files == [str(tmp_path / f'{i}.jpg') for i in image_ids]
    assert model.backbone.num_encoded == 2  # two files, not five questions
    for q, i in enumerate(image_ids):
        alone, _, _ = load_tool().compute_features(
            model, Subset(dataset, q), batch_size=1)
        torch.testing.assert_close(features[q], alone[0])
        # the other image's feature is another
        other = image_ids.index(1 - i)
        assert (features[q] - features[other]).abs().max() > 1e-3


def test_reuse_takes_features_of_the_same_files(tmp_path, tokenizer_dir):
    """A support set over images another set's file already has features
    of (same encoder, same loading) encodes only the new images and gets
    the features it would have computed; a file of another encoder or
    media loading, or one that keeps no media, is left out with a warning
    naming it."""
    from mmflamingo.evaluation.demo_selection import save_rices_features
    tool = load_tool()
    for i, colour in enumerate([(255, 0, 0), (0, 0, 255), (0, 160, 0)]):
        Image.new('RGB', (40, 48), colour).save(tmp_path / f'{i}.jpg')

    def questions_about(image_ids):
        return vqa_dataset(tmp_path, [
            dict(question_id=q, image_id=i, question='What colour?')
            for q, i in enumerate(image_ids)
        ], [
            dict(question_id=q, answers=[dict(answer='red')])
            for q in range(len(image_ids))
        ], '{image_id}.jpg')

    first = questions_about([0, 1, 1])
    second = questions_about([2, 0, 1])  # the same files and one more
    torch.manual_seed(0)
    model = init_model(Config(dict(model=tiny_flamingo_config(tokenizer_dir))))
    encoder = tool.encoder_fingerprint(model)
    features, keys, files = tool.compute_features(model, first, 2)
    saved = str(tmp_path / 'first.pth')
    save_rices_features(saved, features, keys, 'test', files, encoder)
    model.backbone.num_encoded = 0
    reused, _, _ = tool.compute_features(
        model, second, 2, known=tool.reusable_features([saved], encoder))
    assert model.backbone.num_encoded == 1  # only image 2 is new
    fresh, _, _ = tool.compute_features(model, second, 2)
    torch.testing.assert_close(reused, fresh)

    torch.manual_seed(1)
    other = init_model(Config(dict(model=tiny_flamingo_config(tokenizer_dir))))
    with pytest.warns(
            UserWarning, match='first.pth: not reused: .* another vision'):
        assert tool.reusable_features([saved],
                                      tool.encoder_fingerprint(other)) == {}
    # another media loading (a video task's): not reused either
    video = [dict(type='LoadVideoFrames', num_frames=3)]
    with pytest.warns(UserWarning, match='first.pth: not reused'):
        assert tool.reusable_features([saved],
                                      tool.encoder_fingerprint(model,
                                                               video)) == {}
    bare = str(tmp_path / 'bare.pth')
    save_rices_features(bare, features, keys, 'test')
    with pytest.warns(UserWarning, match='bare.pth: not reused: it keeps no'):
        known = tool.reusable_features([bare, saved], encoder)
    assert sorted(known) == [str(tmp_path / '0.jpg'), str(tmp_path / '1.jpg')]


class Subset:
    """One sample of a dataset, with its data info (what the tool reads)."""

    def __init__(self, dataset, idx):
        self.dataset, self.idx = dataset, idx

    def __len__(self):
        return 1

    def get_data_info(self, idx):
        return self.dataset.get_data_info(self.idx + idx)
