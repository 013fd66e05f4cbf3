"""Shared fixtures: a tiny tokenizer and tiny Flamingo models, all offline.

Tiny LMs initialised with the usual std of 0.02 give nearly uniform logits,
so equality tests on them would pass whatever the code does. The models
built here use a large initialiser range instead, and can be built with the
gates open, so that their outputs depend on the text and on the images.
"""
import pytest
import torch
from mmpretrain.structures import DataSample

import mmflamingo.models  # noqa: F401 (registers the modules)
from mmflamingo.registry import MODELS
from mmflamingo.testing import build_tiny_tokenizer, tiny_flamingo_config

# the config field each architecture initialises its weights from
_INIT_STD_FIELD = {'opt': 'init_std'}
INIT_STD = 0.5

# The models are tiny: intra-op threads only add synchronisation, which costs
# up to 30x when the cores are shared with other processes.
torch.set_num_threads(1)


def _set_gates(model_or_head, value: float) -> None:
    head = getattr(model_or_head, 'head', model_or_head)
    with torch.no_grad():
        for block in head.xattn_blocks.values():
            block.attn_gate.fill_(value)
            block.ff_gate.fill_(value)


@pytest.fixture(scope='session')
def tokenizer_dir(tmp_path_factory):
    """A byte-level BPE tokenizer saved with ``save_pretrained``."""
    return build_tiny_tokenizer(str(tmp_path_factory.mktemp('tokenizer')))


@pytest.fixture(scope='session')
def set_gates():
    """``set_gates(model_or_head, value)`` fills every attn and ff gate."""
    return _set_gates


@pytest.fixture(scope='session')
def build_flamingo(tokenizer_dir):
    """``build_flamingo(lm_type, gates=None, seed=0, lm_config=None, ...)``.

    Builds :func:`tiny_flamingo_config` in eval mode with LM weights drawn
    with std ``INIT_STD``; ``gates`` fills all gates; ``neck_cfg`` and
    ``model_cfg`` update the neck and the top-level ``Flamingo`` config;
    other keyword arguments go to :func:`tiny_flamingo_config` (head
    overrides included).
    """

    def build(lm_type='llama',
              gates=None,
              seed=0,
              lm_config=None,
              neck_cfg=None,
              model_cfg=None,
              **kwargs):
        lm_config = {
            _INIT_STD_FIELD.get(lm_type, 'initializer_range'): INIT_STD,
            **(lm_config or {})
        }
        cfg = tiny_flamingo_config(
            tokenizer_dir, lm_type=lm_type, lm_config=lm_config, **kwargs)
        cfg['neck'].update(neck_cfg or {})
        cfg.update(model_cfg or {})
        torch.manual_seed(seed)
        model = MODELS.build(cfg).eval()
        if gates is not None:
            _set_gates(model, gates)
        return model

    return build


@pytest.fixture(scope='session')
def make_images():
    """``make_images(*shape, seed=0)``: random uint8 images (0-255)."""

    def make(*shape, seed=0):
        generator = torch.Generator().manual_seed(seed)
        return torch.randint(
            0, 256, shape, generator=generator, dtype=torch.uint8)

    return make


@pytest.fixture(scope='session')
def make_samples():
    """``make_samples(texts, num_media=None, **fields)``: DataSamples."""

    def make(texts, num_media=None, **fields):
        samples = []
        for i, text in enumerate(texts):
            sample = DataSample()
            sample.set_field(text, 'text', field_type='metainfo')
            if num_media is not None:
                sample.set_field(
                    num_media[i], 'num_media', field_type='metainfo')
            for key, values in fields.items():
                sample.set_field(values[i], key, field_type='metainfo')
            samples.append(sample)
        return samples

    return make
