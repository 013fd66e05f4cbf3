import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope

from mmflamingo.registry import DATASETS, MODELS
from mmflamingo.shapes_world.scenes import COLOURS, SHAPES, SIZES

ROOT = osp.dirname(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

CLIP_CFG = dict(
    vision_config=dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=64,
        patch_size=16),
    text_config=dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=12),
    projection_dim=16,
    # CLIP's temperature of 1/14 makes a batch this small collapse to equal
    # embeddings first; a temperature of 1 learns at once
    logit_scale_init_value=0.0)


def build_model(tokenizer_dir, seed=0):
    torch.manual_seed(seed)
    return MODELS.build(
        dict(
            type='ContrastiveImageTextPretrainer',
            clip_cfg=CLIP_CFG,
            tokenizer=dict(pretrained=tokenizer_dir)))


@pytest.fixture(scope='module')
def batch(shapes_root):
    """8 training images with a random one of their captions, collated."""
    with DefaultScope.overwrite_default_scope('mmflamingo'):
        dataset = DATASETS.build(
            dict(
                type='KarpathyCaptionDataset',
                data_root=shapes_root,
                ann_file='captions/karpathy_shapes.json',
                split='train',
                data_prefix=dict(img_path='images'),
                pipeline=[
                    dict(type='RandomCaption'),
                    dict(type='LoadMedia'),
                    dict(type='ResizeMedia', size=64),
                    dict(type='PackFlamingoInputs'),
                ]))
    np.random.seed(0)  # RandomCaption's choices
    return pseudo_collate([dataset[i] for i in range(0, 24, 3)])


def test_loss_is_symmetric_infonce_and_decreases(shapes_tokenizer, batch):
    model = build_model(shapes_tokenizer)
    data = model.data_preprocessor(batch, True)
    logits = model(**data, mode='tensor')  # (B images, B texts)
    assert logits.shape == (8, 8)
    targets = torch.arange(8)
    expected = (F.cross_entropy(logits, targets) +
                F.cross_entropy(logits.t(), targets)) / 2
    losses = model(**data, mode='loss')
    torch.testing.assert_close(losses['loss'], expected)
    accuracy = (logits.argmax(-1) == targets).float().mean()
    torch.testing.assert_close(losses['i2t_acc'], accuracy)

    optim_wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), 3e-4))
    history = [
        model.train_step(batch, optim_wrapper)['loss'].item()
        for _ in range(30)
    ]
    assert history[-1] < 0.75 * history[0], history
    assert float(model(**data, mode='loss')['i2t_acc']) > accuracy


def test_captions_end_with_eos_within_the_text_length(shapes_tokenizer):
    model = build_model(shapes_tokenizer)
    tokenizer = model.tokenizer
    long = ' '.join(['a red circle on the left.'] * 10)
    encoded = model.tokenize(['a red circle.', long])
    ids, mask = encoded['input_ids'], encoded['attention_mask']
    assert ids.shape == (2, 12)  # max_position_embeddings
    short = int(mask[0].sum())
    assert ids[0, :short].tolist(
    ) == tokenizer('a red circle.')['input_ids'] + [tokenizer.eos_token_id]
    assert (ids[0, short:] == tokenizer.pad_token_id).all()
    assert ids[1, -1] == tokenizer.eos_token_id and mask[1].all()
    # the text embedding is read at the eos
    assert model.clip.config.text_config.eos_token_id == 3


def test_rejects_batches_without_one_image_per_sample(shapes_tokenizer, batch):
    model = build_model(shapes_tokenizer)
    data = model.data_preprocessor(batch, True)
    images = data['images'].repeat(1, 2, 1, 1, 1, 1)
    with pytest.raises(ValueError, match=r'one image per sample'):
        model(images, data['data_samples'], mode='loss')
    with pytest.raises(ValueError, match='predict'):
        model(**data, mode='predict')


def test_save_pretrained_loads_as_flamingo_vision_encoder(
        shapes_tokenizer, batch, tmp_path):
    model = build_model(shapes_tokenizer).eval()
    out_dir = str(tmp_path / 'hf')
    model.save_pretrained(out_dir)
    encoder = MODELS.build(
        dict(type='HFCLIPVisionEncoder', pretrained=out_dir))
    images = model.data_preprocessor(batch, False)['images']
    tokens = encoder(images)  # (B, 1, 1, P, D)
    assert tokens.shape == (8, 1, 1, 16, 32)
    with torch.no_grad():
        expected = model.clip.vision_model(
            pixel_values=images[:, 0, 0]).last_hidden_state[:, 1:]
    torch.testing.assert_close(tokens[:, 0, 0], expected)
    assert osp.isfile(osp.join(out_dir, 'tokenizer.json'))


@pytest.mark.parametrize('config', [
    'configs/shapes/clip-tiny_shapes_contrastive.py',
    'configs/shapes/clip-tiny_shapes_contrastive-negclip.py'
])
def test_config_trains_and_exports_with_tools_train(config, shapes_root,
                                                    shapes_tokenizer,
                                                    run_train, tmp_path):
    out_dir = str(tmp_path / 'hf')
    rows = run_train(config, str(tmp_path), [
        f'train_dataloader.dataset.data_root={shapes_root}',
        f'model.tokenizer.pretrained={shapes_tokenizer}',
        f'custom_hooks.0.out_dir={out_dir}', 'train_cfg.max_iters=3',
        'train_dataloader.batch_size=4', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False'
    ])
    assert [row['iter'] for row in rows] == [1, 2, 3]
    assert all(0 <= row['i2t_acc'] <= 1 and row['loss'] > 0 for row in rows)
    # hard negatives are scored where the config makes them
    assert all(
        ('neg_acc' in row) == config.endswith('negclip.py') for row in rows)
    encoder = MODELS.build(
        dict(type='HFCLIPVisionEncoder', pretrained=out_dir))
    assert (encoder.embed_dims, encoder.num_layers) == (128, 4)


def test_negclip_config_swaps_the_worlds_words():
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs', 'shapes',
                 'clip-tiny_shapes_contrastive-negclip.py'))
    swap, = (
        t for t in cfg.train_dataloader.dataset.pipeline
        if t.type == 'SwapWordNegatives')
    groups = [sorted(group) for group in swap.groups]
    assert groups == [sorted(SHAPES), sorted(COLOURS), sorted(SIZES)]
