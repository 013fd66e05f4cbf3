"""Models by name: the model index, our inference API and MMPretrain's.

A tiny random Flamingo stands in for the shapes model: the real inference
configs (``configs/shapes/flamingo-tiny_shapes_{caption,vqa}.py``) with
their model swapped for the tiny one, its trained weights saved in a
temporary directory and a temporary model index naming them.
"""
from pathlib import Path

import mmpretrain
import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

import mmflamingo  # noqa: F401  (registers the model index)
from mmflamingo.apis import (get_model, get_model_info, inference_model,
                             init_model, list_models, register_model_index)
from mmflamingo.apis.model_index import RECIPE_COMMAND
from mmflamingo.datasets.transforms import LoadVideoFrames, write_video
from mmflamingo.testing import tiny_flamingo_config

ROOT = Path(__file__).parents[2]
CAPTION, VQA = 'tiny-flamingo_test_caption', 'tiny-flamingo_test_vqa'
TINY_INDEX = f"""
Models:
  - Name: {CAPTION}
    Results:
      - {{Task: Image Caption, Dataset: Shapes, Metrics: {{}}}}
    Weights: weights/tiny.pth
    Config: tiny_caption.py
  - Name: {VQA}
    Results:
      - {{Task: Visual Question Answering, Dataset: Shapes, Metrics: {{}}}}
    Weights: weights/tiny.pth
    Config: tiny_vqa.py
  - Name: tiny-flamingo_test_untrained
    Results:
      - {{Task: Image Caption, Dataset: Shapes, Metrics: {{}}}}
    Weights: weights/not_trained_yet.pth
    Config: tiny_caption.py
"""


def seeded(fn, *args, **kwargs):
    """``fn`` with the seed fixed: the frozen parts of the tiny model are
    random, so two builds are the same model only from the same seed."""
    torch.manual_seed(0)
    return fn(*args, **kwargs)


@pytest.fixture(scope='module')
def index(tokenizer_dir, tmp_path_factory):
    """The tiny index: its root, and the trained state dict it names."""
    root = tmp_path_factory.mktemp('index')
    for task in ('caption', 'vqa'):
        cfg = Config.fromfile(ROOT /
                              f'configs/shapes/flamingo-tiny_shapes_{task}.py')
        tiny = tiny_flamingo_config(tokenizer_dir, image_size=64)
        cfg.model = dict(
            tiny,
            _scope_=cfg.model._scope_,
            task=cfg.model.task,
            generation_cfg=dict(max_new_tokens=4))
        cfg.dump(root / f'tiny_{task}.py')
    model = seeded(init_model, str(root / 'tiny_caption.py'))
    with torch.no_grad():  # trained weights unlike fresh ones: open gates
        for block in model.head.xattn_blocks.values():
            block.attn_gate.fill_(0.5)
    (root / 'weights').mkdir()
    state = model.state_dict()
    # as tools/model_converters/publish_model.py writes it
    torch.save(
        dict(state_dict=state, meta=dict(iter=1)), root / 'weights/tiny.pth')
    (root / 'model-index.yml').write_text(TINY_INDEX)
    register_model_index(str(root / 'model-index.yml'))
    return root, state


@pytest.fixture(scope='module')
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp('images') / 'shapes.png'
    array = np.zeros((64, 64, 3), np.uint8)
    array[8:40, 16:48] = (255, 0, 0)
    Image.fromarray(array).save(path)
    return str(path)


def test_repository_index_names_the_shapes_models():
    names = ['flamingo-tiny_shapes_caption', 'flamingo-tiny_shapes_vqa']
    assert set(names) <= set(list_models('flamingo-tiny_shapes'))
    assert list_models(
        'flamingo-tiny_shapes', task='Image Caption') == [names[0]]
    for name, task in zip(names, ['caption', 'vqa']):
        info = get_model_info(name.upper())
        assert info.config == str(ROOT / f'configs/shapes/{name}.py')
        assert info.weights == str(
            ROOT / 'work_dirs/shapes/flamingo/flamingo-tiny_shapes.pth')
        cfg = Config.fromfile(info.config)
        assert cfg.model.task == task
    # MMPretrain's hub knows them too
    assert names == mmpretrain.list_models('flamingo-tiny_shapes')


def test_registration_resolves_paths_against_the_root(index):
    root, _ = index
    info = get_model_info(CAPTION)
    assert info.config == str(root / 'tiny_caption.py')
    assert info.weights == str(root / 'weights/tiny.pth')
    # registering the same file again is a no-op, not a name conflict
    assert register_model_index(str(root / 'model-index.yml')) == sorted(
        [CAPTION, VQA, 'tiny-flamingo_test_untrained'])


def test_unknown_name_lists_the_known_ones(index):
    with pytest.raises(KeyError, match=CAPTION):
        get_model_info('no-such-model')


def test_missing_weights_name_the_recipe(index):
    root, _ = index
    with pytest.raises(FileNotFoundError) as error:
        get_model('tiny-flamingo_test_untrained')
    assert RECIPE_COMMAND == 'bash tools/run_shapes_recipe.sh'
    assert RECIPE_COMMAND in str(error.value)
    assert str(root / 'weights/not_trained_yet.pth') in str(error.value)
    # without its weights a named model still builds on request
    model = get_model('tiny-flamingo_test_untrained', pretrained=False)
    assert model.task == 'caption'


def test_get_model_loads_the_named_weights(index):
    _, state = index
    torch.manual_seed(1)  # other frozen parts; the trained ones are loaded
    model = get_model(CAPTION)
    assert not model.training
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], value), key


def test_caption_by_name_uses_the_config_prompt(index, image):
    result = seeded(inference_model, CAPTION, image)
    assert result.text == '<image>Output:'
    assert isinstance(result.pred_caption, str)
    assert 'pred_answer' not in result
    # the same as the model given the prompt and image explicitly
    model = seeded(init_model, CAPTION)
    again = inference_model(model, [image], '<image>Output:')
    assert again.pred_caption == result.pred_caption


def test_vqa_by_name(index, image):
    model = seeded(init_model, VQA)
    result = inference_model(model, image, question='what color is it?')
    assert result.text == '<image>Question: what color is it? Short answer:'
    assert result.question == 'what color is it?'
    assert isinstance(result.pred_answer, str)
    with pytest.raises(KeyError, match='question'):
        inference_model(model, image)
    caption_model = seeded(init_model, CAPTION)
    with pytest.raises(ValueError, match='asks no question'):
        inference_model(caption_model, image, question='what color?')


def test_fewshot_interleaved(index, image, tmp_path):
    model = seeded(init_model, CAPTION)
    demo = tmp_path / 'demo.png'
    Image.new('RGB', (50, 40), 'blue').save(demo)
    prompt = ('<image>Output:a blue square.<|endofchunk|>\n'
              '<image>Output:')
    result = inference_model(model, [str(demo), image], prompt)
    assert result.text == prompt
    assert result.num_media == 2
    assert isinstance(result.pred_caption, str)
    with pytest.raises(ValueError, match='1 <image> markers but 2 media'):
        inference_model(model, [str(demo), image], '<image>Output:')


def _write_video(path: Path, num_frames: int) -> list:
    frames = [
        np.random.RandomState(i).randint(0, 255, (64, 64, 3), np.uint8)
        for i in range(num_frames)
    ]
    write_video(str(path), frames)
    return frames


def test_video_file_and_frames(index, tmp_path):
    model = seeded(init_model, CAPTION)
    path = str(tmp_path / 'clip.mp4')
    _write_video(tmp_path / 'clip.mp4', 8)
    # sampled as the config's video_sampling says
    assert model.cfg.video_sampling == dict(num_frames=4, fps=0.5)
    result = inference_model(model, path)
    assert result.text == '<image>Output:'
    assert isinstance(result.pred_caption, str)
    # the same as the sampled frames given as one medium
    frames = LoadVideoFrames(num_frames=4, fps=0.5).load(path)
    assert inference_model(model, [frames]).pred_caption == (
        result.pred_caption)
    three = inference_model(model, path, num_frames=3, fps=1)
    frames = LoadVideoFrames(num_frames=3).load(path)
    assert inference_model(model, [frames]).pred_caption == (
        three.pred_caption)


def test_mmpretrain_inference_model_by_name(index, image):
    ours = seeded(inference_model, CAPTION, image)
    theirs = seeded(mmpretrain.inference_model, CAPTION, image)
    assert theirs == {'pred_caption': ours.pred_caption}
    ours = seeded(inference_model, VQA, image, question='what shape?')
    theirs = seeded(mmpretrain.inference_model, VQA, image, 'what shape?')
    assert theirs == {
        'question': 'what shape?',
        'pred_answer': ours.pred_answer
    }


def test_mmpretrain_get_model_by_name(index, image):
    _, state = index
    model = mmpretrain.get_model(VQA, pretrained=True)
    assert type(model).__module__ == 'mmflamingo.models.flamingo'
    assert model.task == 'vqa'
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], value), key
    # our models also go into MMPretrain's inferencers directly
    result = mmpretrain.inference_model(
        seeded(get_model, CAPTION), image, return_datasamples=True)
    assert result.text == '<image>Output:'
