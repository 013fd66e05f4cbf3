"""The OpenFlamingo recipes parse and say what OpenFlamingo's models are.

They are not built here: their weights are not here. The 3B recipe is built
on tiny stand-ins of its parts in tests/test_models/test_utils/
test_mosaic_gpt.py, where its MosaicGPT language model is checked.
"""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

from mmflamingo.evaluation import FewShotSettings

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# the model recipes; the evaluation recipes add '_<dataset>-fewshot'
CONFIGS = sorted(
    glob.glob(
        osp.join(ROOT, 'configs', 'openflamingo', '*openflamingo-*b.py')))
EVAL_CONFIGS = sorted(
    glob.glob(osp.join(ROOT, 'configs', 'openflamingo', '*-fewshot.py')))
# model size in the file name -> OpenFlamingo's cross_attn_every_n_layers
EVERY_N_LAYERS = {'3b': 1, '4b': 2, '9b': 4}


def test_all_sizes_present():
    sizes = {osp.basename(path)[:-3].rsplit('-', 1)[1] for path in CONFIGS}
    assert sizes == set(EVERY_N_LAYERS)


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_config(path):
    cfg = Config.fromfile(path)
    model = cfg.model
    size = osp.basename(path)[:-3].rsplit('-', 1)[1]
    assert model.type == 'Flamingo'
    assert model.head.cross_attn_every_n_layers == EVERY_N_LAYERS[size]
    assert model.head.xattn_placement == 'openflamingo'
    assert model.head.only_attend_last_media
    assert model.backbone.type == 'HFCLIPVisionEncoder'
    assert model.backbone.out_layer == -1 and not model.backbone.final_norm
    assert (model.neck.depth, model.neck.heads, model.neck.dim_head,
            model.neck.num_latents) == (6, 8, 64, 64)
    assert model.generation_cfg == dict(
        num_beams=3, max_new_tokens=20, length_penalty=0.0)
    # every weight comes from a local path, never from the hub
    for pretrained in (model.backbone.pretrained, model.tokenizer.pretrained,
                       model.head.lm.pretrained, model.checkpoint):
        assert pretrained.startswith('data/checkpoints/')
    # no recipe runs code from a model directory (MPT-1B's MosaicGPT is
    # built as transformers' MPT)
    assert not model.head.lm.get('trust_remote_code', False)


@pytest.mark.parametrize('path', EVAL_CONFIGS, ids=osp.basename)
def test_eval_config(path):
    cfg = Config.fromfile(path)
    assert cfg.test_cfg.type == 'FewShotTestLoop'
    # every key is one the loop knows, every value one it takes
    settings = FewShotSettings.from_cfg({
        k: v
        for k, v in cfg.test_cfg.items() if k != 'type'
    })
    assert settings.shots == [0, 4, 8, 16, 32]
    assert cfg.test_dataloader.dataset.split in ('test', 'val', 'dev_seen')
    metric = cfg.test_evaluator.type
    if settings.task == 'classification':
        # OpenFlamingo's ranking rule
        assert settings.score_reduction == 'mean'
        assert metric in ('RankClassificationMetric', 'ROCAUC')
    else:
        assert cfg.model.task == settings.task
        assert metric in ('CaptionMetric', 'VQAAccuracy')
    assert cfg.model.checkpoint  # the converted OpenFlamingo weights


def test_eval_configs_present():
    names = {
        osp.basename(path)[:-3].rsplit('_', 1)[1]
        for path in EVAL_CONFIGS
    }
    assert names == {
        'coco-caption-fewshot', 'vqav2-fewshot', 'imagenet-fewshot',
        'hateful-memes-fewshot'
    }
