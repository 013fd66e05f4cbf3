"""The pretrained parts the repository ships (checkpoints/shapes, made by
`tools/shapes_recipe.py --from-scratch --export-pretrained`): the language
model copies from its context, binds names that only its context reveals
and answers about a caption in it, on text it never saw, and both parts
load where Flamingo loads them."""
import os.path as osp

import pytest
import torch

from mmflamingo.compat import dtype_kwargs
from mmflamingo.shapes_world.probes import held_out_text, probe_lm
from mmflamingo.shapes_world.text_episodes import parse_lm_world
from mmflamingo.shapes_world.writer import lm_world

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
LM = osp.join(ROOT, 'checkpoints', 'shapes', 'lm')
VISION = osp.join(ROOT, 'checkpoints', 'shapes', 'vision')


@pytest.fixture(scope='module')
def probes():
    from transformers import AutoModelForCausalLM, AutoTokenizer
    lm = AutoModelForCausalLM.from_pretrained(
        LM, local_files_only=True, **dtype_kwargs(torch.float32)).eval()
    tokenizer = AutoTokenizer.from_pretrained(LM, local_files_only=True)
    # the default world's, on which the shipped LM was trained
    names, scenes = held_out_text(parse_lm_world(lm_world(seed=0)))
    return probe_lm(lm, tokenizer, names, scenes, num=200)


def test_the_lm_copies_from_its_context(probes):
    # random tokens: ~ln(vocabulary) the first time, near 0 repeated
    assert probes['repeat_first'] > 6
    assert probes['repeat_copy'] < probes['repeat_first'] - 5


def test_the_lm_binds_names_its_context_reveals(probes):
    """Shapes named in the context (names no training text holds), then
    one more: its name is far above chance and above naming any shape the
    context showed, at 4 and 8 shots."""
    for shots in (4, 8):
        accuracy = probes[f'binding_word_{shots}shot']
        assert accuracy > probes[f'binding_{shots}shot_chance'] + 40, probes
        assert accuracy > probes[f'binding_{shots}shot_seen_name'] + 40, probes


def test_the_lm_answers_about_a_caption_in_its_context(probes):
    assert probes['reading'] > probes['reading_prior'] + 20, probes


def test_the_parts_load_where_flamingo_loads_them():
    from mmflamingo.models.backbones import HFCLIPVisionEncoder
    from mmflamingo.tokens import add_flamingo_tokens, build_tokenizer
    encoder = HFCLIPVisionEncoder(pretrained=VISION)
    assert encoder.image_size == 64
    tokens = add_flamingo_tokens(build_tokenizer(LM))
    # the LM was pretrained with the Flamingo tokens: their rows are its own
    assert tokens.known and tokens.num_new == 2
