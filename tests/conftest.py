"""Shared fixtures: a tiny tokenizer and tiny Flamingo models, all offline.

Tiny LMs initialised with the usual std of 0.02 give nearly uniform logits,
so equality tests on them would pass whatever the code does. The models
built here use a large initialiser range instead, and can be built with the
gates open, so that their outputs depend on the text and on the images.
"""
import importlib.util
import os
import sys

import torch

# DeepSpeed comes in with mmpretrain and mmengine.runner, before any test.
# Finding no GPU, it warns "Setting accelerator to CPU" in every process:
# name the accelerator instead, with its override (which the train.py
# subprocesses inherit).
if not torch.cuda.is_available():
    os.environ.setdefault('DS_ACCELERATOR', 'cpu')


def _import_deepspeed() -> None:
    """Import DeepSpeed with the process's own stderr.

    On import, DeepSpeed checks which of its ops could be built; for
    ``async_io`` it links a test program against libaio, with the linker's
    stderr sent to a scratch file by redirecting ``sys.stderr.fileno()``.
    Under pytest's capture that is not fd 2, where the linker writes, so
    ``cannot find -laio`` and ``collect2: error`` reached the test output
    although DeepSpeed meant to hide them. Anything else written during the
    import is captured as usual.
    """
    if importlib.util.find_spec('deepspeed') is None:
        return
    stderr, sys.stderr = sys.stderr, sys.__stderr__
    try:
        import deepspeed  # noqa: F401
    finally:
        sys.stderr = stderr


_import_deepspeed()

import pytest  # noqa: E402
from mmpretrain.structures import DataSample  # noqa: E402

import mmflamingo.models  # noqa: E402,F401 (registers the modules)
from mmflamingo.registry import MODELS  # noqa: E402
from mmflamingo.testing import build_tiny_tokenizer  # noqa: E402
from mmflamingo.testing import tiny_flamingo_config  # noqa: E402

# the config field each architecture initialises its weights from
_INIT_STD_FIELD = {'opt': 'init_std'}
INIT_STD = 0.5
# Gemma 2 and 3 normalise what each layer adds and scale their embeddings by
# sqrt(hidden): drawn with 0.5 the embeddings drown out the layers and the
# images (Gemma 2's generations did not depend on them)
_INIT_STDS = {'gemma2': 0.2, 'gemma3': 0.2}

# The models are tiny: intra-op threads only add synchronisation, which costs
# up to 30x when the cores are shared with other processes.
torch.set_num_threads(1)

# Whole-workflow modules: tools/train.py and tools/shapes_recipe.py run end
# to end in subprocesses (ZeRO-1, two processes, kill and resume, shards,
# every recipe stage); about 60% of the suite's time. Their
# transformers-facing steps (building, training, saving and loading the LMs)
# are what the unit tests cover, so .ci/run runs them in the default
# environment only (``-m "not workflow"`` in the transformers 4.x one).
WORKFLOW = 'workflow'


def pytest_configure(config):
    config.addinivalue_line(
        'markers', f'{WORKFLOW}: an end-to-end run of a training or recipe '
        'tool (minutes); the default environment runs it, .ci/run\'s '
        'transformers 4.x suite leaves it out')


def pytest_collection_modifyitems(config, items):
    """The workflow tests first (each module kept together).

    xdist's load scheduler hands each worker a first chunk of a quarter of
    its share (~100 tests): the workflow tests (~700 s) then all start at
    once on one worker while the other takes everything else on demand,
    instead of the recipe's two runs (~300 s) starting last, with one worker
    idle behind them (the suite: 730 s against 847 s before, of which ~40 s
    are the loaders' faster stop).
    """
    items.sort(key=lambda item: item.get_closest_marker(WORKFLOW) is None)


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
    with std ``INIT_STD`` (or the architecture's ``_INIT_STDS``); ``gates``
    fills all gates; ``neck_cfg`` and ``model_cfg`` update the neck and the
    top-level ``Flamingo`` config;
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
            _INIT_STD_FIELD.get(lm_type, 'initializer_range'):
            _INIT_STDS.get(lm_type, INIT_STD),
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
