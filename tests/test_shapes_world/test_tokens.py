"""The same tokens where facts are learned and where they are asked: in the
world's training documents, in the language model's text and in the
few-shot prompts of the evaluation configs."""
import json
import os.path as osp
import re

import pytest
from mmengine.config import Config

from mmflamingo.datasets.interleaved import interleave
from mmflamingo.evaluation.prompts import FewShotPromptBuilder
from mmflamingo.models.utils.bpe import train_bpe_tokenizer
from mmflamingo.shapes_world import write_shapes_world
from mmflamingo.shapes_world.language import NameGenerator
from mmflamingo.shapes_world.text_episodes import ShapesTextEpisodes
from mmflamingo.tokens import END_OF_CHUNK_TOKEN, MEDIA_TOKEN

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(ROOT, 'configs', 'shapes')


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp('shapes')
    paths = write_shapes_world(str(root), seed=0, scale='tiny')
    # the recipe's tokenizer stage (tools/shapes_recipe.py)
    recipe = _recipe_module()
    tokenizer = train_bpe_tokenizer([paths['corpus']],
                                    str(root / 'tokenizer'),
                                    min_frequency=recipe.MIN_MERGE_FREQUENCY,
                                    flamingo_tokens=True)
    return paths, tokenizer, str(root / 'tokenizer')


def _recipe_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'shapes_recipe', osp.join(ROOT, 'tools', 'shapes_recipe.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _prompt_builder(task):
    cfg = Config.fromfile(
        osp.join(CONFIGS, f'flamingo-tiny_shapes_fewshot-{task}.py'))
    return FewShotPromptBuilder(**cfg.test_cfg.prompt), cfg


def _ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)['input_ids']


def _docs(paths):
    with open(paths['docs'], encoding='utf-8') as f:
        return [json.loads(line) for line in f]


def test_flamingo_tokens_end_the_vocabulary(world):
    _, tokenizer, _ = world
    ids = tokenizer.convert_tokens_to_ids([END_OF_CHUNK_TOKEN, MEDIA_TOKEN])
    assert ids == [len(tokenizer) - 2, len(tokenizer) - 1]


@pytest.mark.parametrize('task', ['caption', 'vqa', 'binding'])
def test_documents_chunks_are_the_prompts_demos(world, task):
    """A training document's chunk is, character for character, the demo
    the evaluation prompt writes for the same image and text, and the
    prompt joins its demos as the documents join their chunks."""
    paths, tokenizer, _ = world
    builder, _ = _prompt_builder(task)
    patterns = dict(
        caption=r'Output: (.*)',
        vqa=r'Question: (.*\?) Short answer: (.*)',
        # an episode's chunks name a shape, or ask its type
        binding=r'Question: (What is this called\?|What shape is this\?) '
        r'Short answer: (.*)')
    found = 0
    for doc in _docs(paths):
        chunks = [
            doc['text_list'][e['matched_text_index']]
            for e in doc['image_info']
        ]
        parsed = [re.fullmatch(patterns[task], c) for c in chunks]
        if not all(parsed) or len(parsed) < 2:
            continue
        if task == 'caption':
            demos = [dict(caption=m.group(1), media=['x']) for m in parsed]
        else:
            demos = [
                dict(question=m.group(1), answers=[m.group(2)], media=['x'])
                for m in parsed
            ]
        *shown, query = demos
        prompt, _ = builder.build(query, shown, len(shown))
        text = interleave(chunks, list(range(len(chunks))), '</s>')
        # the document up to where the query's answer starts
        answer_start = text.rindex(':') + 1
        assert prompt == text[:answer_start], (prompt, text)
        # and the answer the model must write is tokenised as in training
        assert _ids(tokenizer, text[:-len(END_OF_CHUNK_TOKEN + '</s>')]) == (
            _ids(tokenizer, prompt) +
            _ids(tokenizer,
                 text[answer_start:-len(END_OF_CHUNK_TOKEN + '</s>')]))
        found += 1
    assert found


def test_binding_names_score_as_they_are_written(world):
    """A name is the same tokens after 'Short answer:' in a training
    episode, in the LM's text and as the binding evaluation scores it."""
    paths, tokenizer, tokenizer_dir = world
    _, cfg = _prompt_builder('binding')
    prefix = cfg.test_cfg.candidate_prefix
    names = json.load(open(paths['lm_world']))['names'][:50]
    for name in names:
        scored = _ids(tokenizer, prefix + name)
        for context in ('Question: What is this called? Short answer:',
                        f'{MEDIA_TOKEN}a circle. Question: What is this '
                        'called? Short answer:'):
            assert _ids(tokenizer, f'{context} {name}{END_OF_CHUNK_TOKEN}') \
                == _ids(tokenizer, context) + scored + _ids(
                    tokenizer, END_OF_CHUNK_TOKEN)
    episodes = ShapesTextEpisodes(
        paths['lm_world'],
        dict(pretrained=tokenizer_dir),
        mix=dict(binding=1.0),
        max_tokens=256)
    row = episodes[0]['inputs'].tolist()
    text = tokenizer.decode(row)
    shown = set(re.findall(r'Short answer: (\w+)', text))
    assert shown
    for name in shown:
        assert any(row[i:i + len(_ids(tokenizer, ' ' +
                                      name))] == _ids(tokenizer, ' ' + name)
                   for i in range(len(row)))


def test_no_name_is_a_token_of_its_own(world):
    """Every name, trained on or held out, is split into pieces the
    training names share: no held-out name brings a token the language
    model never saw."""
    paths, tokenizer, _ = world
    lm_world = json.load(open(paths['lm_world']))
    trained = set(lm_world['names'])
    held_out = set(NameGenerator(__import__('random').Random(0)).take_all())
    held_out -= trained
    assert held_out
    pieces = {t for name in trained for t in _ids(tokenizer, ' ' + name)}
    for name in sorted(held_out):
        ids = _ids(tokenizer, ' ' + name)
        assert len(ids) >= 2, (name, tokenizer.convert_ids_to_tokens(ids))
        assert set(ids) <= pieces, name
