import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModule
from mmpretrain.models import VisionTransformer

from mmflamingo.models.backbones import MMPretrainViTEncoder
from mmflamingo.registry import MODELS

TINY_VIT = dict(
    arch=dict(
        embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
    img_size=32,
    patch_size=8)
NUM_PATCHES = (32 // 8)**2


def media(batch=2, num_media=2, num_frames=1, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(
        batch, num_media, num_frames, 3, 32, 32, generator=generator)


def randomize(module: torch.nn.Module) -> None:
    """Give every weight a random value: the ViT starts with zero CLS and
    position embeddings and unit LayerNorms, which would hide mix-ups."""
    with torch.no_grad():
        for param in module.parameters():
            param.normal_(std=0.5)


def reference_tokens(vit: VisionTransformer, images: torch.Tensor,
                     num_blocks: int, norm) -> torch.Tensor:
    """Run the ViT's embeddings and first ``num_blocks`` blocks by hand."""
    with torch.no_grad():
        tokens, _ = vit.patch_embed(images)
        cls_token = vit.cls_token.expand(len(tokens), -1, -1)
        tokens = torch.cat([cls_token, tokens], dim=1) + vit.pos_embed
        tokens = vit.pre_norm(tokens)
        for layer in vit.layers[:num_blocks]:
            tokens = layer(tokens)
        if norm is not None:
            tokens = norm(tokens)
    return tokens


@pytest.mark.parametrize('num_frames', [1, 3])
def test_output_shape(num_frames):
    encoder = MMPretrainViTEncoder(vit=TINY_VIT)
    assert encoder.embed_dims == 32
    assert encoder.num_patches == NUM_PATCHES

    tokens = encoder(media(num_frames=num_frames))
    assert tokens.shape == (2, 2, num_frames, NUM_PATCHES, 32)
    assert tokens.dtype == torch.float32

    with_cls = MMPretrainViTEncoder(vit=TINY_VIT, with_cls=True)
    tokens = with_cls(media(num_frames=num_frames))
    assert tokens.shape == (2, 2, num_frames, NUM_PATCHES + 1, 32)


@pytest.mark.parametrize('out_layer, num_blocks', [(-1, 2), (1, 2), (-2, 1),
                                                   (0, 1)])
@pytest.mark.parametrize('final_norm', [False, True])
@pytest.mark.parametrize('with_cls', [False, True])
def test_tokens_match_blocks(out_layer, num_blocks, final_norm, with_cls):
    encoder = MMPretrainViTEncoder(
        vit=TINY_VIT,
        out_layer=out_layer,
        final_norm=final_norm,
        with_cls=with_cls)
    randomize(encoder)
    vit = encoder.encoder
    assert hasattr(vit, 'ln1') == final_norm
    images = media(num_frames=3)
    expected = reference_tokens(vit, images.flatten(0, 2), num_blocks,
                                vit.ln1 if final_norm else None)
    if not with_cls:
        expected = expected[:, 1:]

    tokens = encoder(images)
    torch.testing.assert_close(tokens.flatten(0, 2), expected)


def test_pre_norm_vit():
    """A CLIP-style ViT (``pre_norm=True``) runs its pre-norm first."""
    encoder = MMPretrainViTEncoder(vit=dict(TINY_VIT, pre_norm=True))
    randomize(encoder)
    images = media()
    expected = reference_tokens(encoder.encoder, images.flatten(0, 2), 2, None)
    torch.testing.assert_close(encoder(images).flatten(0, 2), expected[:, 1:])


def test_blocks_differ():
    """Guards the tests above against layers that happen to agree."""
    images = media()
    last = MMPretrainViTEncoder(vit=TINY_VIT, out_layer=-1)
    randomize(last)
    first = MMPretrainViTEncoder(vit=TINY_VIT, out_layer=0)
    first.load_state_dict(last.state_dict())
    assert not torch.allclose(last(images), first(images))


@pytest.mark.parametrize('out_layer', [2, -3])
def test_out_layer_out_of_range(out_layer):
    with pytest.raises(ValueError, match='out_layer'):
        MMPretrainViTEncoder(vit=TINY_VIT, out_layer=out_layer)


@pytest.mark.parametrize('key', ['out_indices', 'final_norm', 'out_type'])
def test_owned_vit_keys(key):
    with pytest.raises(ValueError, match=key):
        MMPretrainViTEncoder(vit=dict(TINY_VIT, **{key: -1}))


def test_frozen():
    encoder = MMPretrainViTEncoder(vit=TINY_VIT)
    assert not any(param.requires_grad for param in encoder.parameters())

    images = media().requires_grad_()
    tokens = encoder(images)
    assert tokens.grad_fn is None
    assert not tokens.requires_grad


def test_stays_in_eval_mode():
    encoder = MMPretrainViTEncoder(
        vit=dict(TINY_VIT, drop_rate=0.5, drop_path_rate=0.5))
    assert not any(module.training for module in encoder.modules())

    parent = torch.nn.ModuleDict(dict(backbone=encoder))
    parent.train()
    assert parent.training
    assert not any(module.training for module in encoder.modules())
    images = media()
    torch.testing.assert_close(encoder(images), encoder(images))


def test_bfloat16_storage():
    fp32 = MMPretrainViTEncoder(vit=TINY_VIT)
    bf16 = MMPretrainViTEncoder(vit=TINY_VIT, dtype='bfloat16')
    bf16.load_state_dict(fp32.state_dict())
    assert all(param.dtype == torch.bfloat16 for param in bf16.parameters())

    images = media()
    tokens = bf16(images)
    assert tokens.dtype == torch.float32
    torch.testing.assert_close(tokens, fp32(images), atol=0.1, rtol=0.05)


def test_build_from_registry():
    encoder = MODELS.build(
        dict(type='MMPretrainViTEncoder', vit=TINY_VIT, out_layer=-2))
    assert isinstance(encoder, MMPretrainViTEncoder)
    assert encoder.out_layer == 0
    assert encoder.encoder.out_indices == [0]


@pytest.mark.parametrize('layout', ['plain', 'classifier'])
def test_load_checkpoint(tmp_path, layout):
    source = MMPretrainViTEncoder(vit=TINY_VIT, final_norm=True)
    randomize(source)
    state_dict = source.encoder.state_dict()
    if layout == 'classifier':
        state_dict = {f'backbone.{k}': v for k, v in state_dict.items()}
        state_dict['head.fc.weight'] = torch.zeros(10, 32)
        checkpoint = dict(state_dict=state_dict, meta=dict(epoch=3))
    else:
        checkpoint = state_dict
    path = tmp_path / 'vit.pth'
    torch.save(checkpoint, path)

    images = media()
    for final_norm in (True, False):
        loaded = MMPretrainViTEncoder(
            vit=TINY_VIT, pretrained=str(path), final_norm=final_norm)
        expected = reference_tokens(source.encoder, images.flatten(0, 2), 2,
                                    source.encoder.ln1 if final_norm else None)
        torch.testing.assert_close(
            loaded(images).flatten(0, 2), expected[:, 1:])


def test_missing_checkpoint(tmp_path):
    missing = str(tmp_path / 'no-such-vit.pth')
    with pytest.raises(FileNotFoundError, match='no-such-vit') as error:
        MMPretrainViTEncoder(vit=TINY_VIT, pretrained=missing)
    assert missing in str(error.value)
    assert 'pretrained' in str(error.value)


def test_checkpoint_missing_weights(tmp_path):
    state_dict = MMPretrainViTEncoder(vit=TINY_VIT).encoder.state_dict()
    del state_dict['layers.1.ffn.layers.1.weight']
    path = tmp_path / 'vit.pth'
    torch.save(state_dict, path)
    with pytest.raises(RuntimeError, match=r'layers\.1\.ffn'):
        MMPretrainViTEncoder(vit=TINY_VIT, pretrained=str(path))


def test_checkpoint_with_objects(tmp_path):
    state_dict = MMPretrainViTEncoder(vit=TINY_VIT).encoder.state_dict()
    path = tmp_path / 'vit.pth'
    torch.save(dict(state_dict=state_dict, log=HistoryBuffer()), path)
    with pytest.raises(RuntimeError, match='weights_only'):
        MMPretrainViTEncoder(vit=TINY_VIT, pretrained=str(path))


def test_init_weights_keeps_weights():
    encoder = MMPretrainViTEncoder(vit=TINY_VIT)
    randomize(encoder)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}

    encoder.init_weights()

    class Parent(BaseModule):

        def __init__(self):
            super().__init__()
            self.backbone = encoder

    Parent().init_weights()
    for key, value in encoder.state_dict().items():
        torch.testing.assert_close(value, before[key], msg=key)
