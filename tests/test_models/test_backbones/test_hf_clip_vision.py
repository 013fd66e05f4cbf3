import pytest
import torch
from mmengine.model import BaseModule
from transformers import (CLIPConfig, CLIPModel, CLIPVisionConfig,
                          CLIPVisionModel)

from mmflamingo.compat import clip_vision_transformer
from mmflamingo.models.backbones import HFCLIPVisionEncoder
from mmflamingo.registry import MODELS

TINY_CLIP = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    image_size=32,
    patch_size=8)
NUM_PATCHES = (32 // 8)**2


def media(batch=2, num_media=2, num_frames=1, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(
        batch, num_media, num_frames, 3, 32, 32, generator=generator)


def reference_tokens(clip: CLIPVisionModel, images: torch.Tensor,
                     num_blocks: int, final_norm: bool) -> torch.Tensor:
    """The last hidden state of a copy of ``clip`` cut after ``num_blocks``
    blocks (``post_layernorm`` applies only to its pooled output)."""
    config = CLIPVisionConfig(**{**TINY_CLIP, 'num_hidden_layers': num_blocks})
    cut = CLIPVisionModel(config).eval()
    state = clip.state_dict()
    result = cut.load_state_dict(state, strict=False)
    # all but the blocks cut off are loaded
    assert result.missing_keys == []
    cut_off = [f'.layers.{i}.' for i in range(num_blocks, 2)]
    assert set(result.unexpected_keys) == {
        name
        for name in state if any(layer in name for layer in cut_off)
    }
    with torch.no_grad():
        tokens = cut(pixel_values=images).last_hidden_state
        if final_norm:
            tokens = clip_vision_transformer(cut).post_layernorm(tokens)
    return tokens


@pytest.mark.parametrize('num_frames', [1, 3])
def test_output_shape(num_frames):
    encoder = HFCLIPVisionEncoder(config=TINY_CLIP)
    assert encoder.embed_dims == 32
    assert encoder.num_patches == NUM_PATCHES

    tokens = encoder(media(num_frames=num_frames))
    assert tokens.shape == (2, 2, num_frames, NUM_PATCHES, 32)
    assert tokens.dtype == torch.float32

    with_cls = HFCLIPVisionEncoder(config=TINY_CLIP, with_cls=True)
    tokens = with_cls(media(num_frames=num_frames))
    assert tokens.shape == (2, 2, num_frames, NUM_PATCHES + 1, 32)


def test_default_is_last_hidden_state_without_cls():
    encoder = HFCLIPVisionEncoder(config=TINY_CLIP)
    images = media()
    flat = images.flatten(0, 2)
    with torch.no_grad():
        last = encoder.encoder(pixel_values=flat).last_hidden_state
        normed = clip_vision_transformer(encoder.encoder).post_layernorm(last)

    tokens = encoder(images)
    torch.testing.assert_close(tokens.flatten(0, 2), last[:, 1:])

    encoder.final_norm = True
    tokens = encoder(images)
    torch.testing.assert_close(tokens.flatten(0, 2), normed[:, 1:])


@pytest.mark.parametrize('out_layer, num_blocks', [(-1, 2), (1, 2), (-2, 1),
                                                   (0, 1)])
@pytest.mark.parametrize('final_norm', [False, True])
@pytest.mark.parametrize('with_cls', [False, True])
def test_tokens_match_blocks(out_layer, num_blocks, final_norm, with_cls):
    encoder = HFCLIPVisionEncoder(
        config=TINY_CLIP,
        out_layer=out_layer,
        final_norm=final_norm,
        with_cls=with_cls)
    images = media(num_frames=3)
    expected = reference_tokens(encoder.encoder, images.flatten(0, 2),
                                num_blocks, final_norm)
    if not with_cls:
        expected = expected[:, 1:]

    tokens = encoder(images)
    torch.testing.assert_close(tokens.flatten(0, 2), expected)


def test_blocks_differ():
    """Guards the test above against layers that happen to agree."""
    images = media()
    last = HFCLIPVisionEncoder(config=TINY_CLIP, out_layer=-1)
    first = HFCLIPVisionEncoder(config=TINY_CLIP, out_layer=0)
    first.load_state_dict(last.state_dict())
    assert not torch.allclose(last(images), first(images))


@pytest.mark.parametrize('out_layer', [2, -3])
def test_out_layer_out_of_range(out_layer):
    with pytest.raises(ValueError, match='out_layer'):
        HFCLIPVisionEncoder(config=TINY_CLIP, out_layer=out_layer)


def test_frozen():
    encoder = HFCLIPVisionEncoder(config=TINY_CLIP)
    assert not any(param.requires_grad for param in encoder.parameters())

    images = media().requires_grad_()
    tokens = encoder(images)
    assert tokens.grad_fn is None
    assert not tokens.requires_grad


def test_stays_in_eval_mode():
    encoder = HFCLIPVisionEncoder(config=TINY_CLIP)
    assert not any(module.training for module in encoder.modules())

    parent = torch.nn.ModuleDict(dict(backbone=encoder))
    parent.train()
    assert parent.training
    assert not any(module.training for module in encoder.modules())


def test_bfloat16_storage():
    torch.manual_seed(0)
    fp32 = HFCLIPVisionEncoder(config=TINY_CLIP)
    torch.manual_seed(0)
    bf16 = HFCLIPVisionEncoder(config=TINY_CLIP, dtype='bfloat16')
    assert all(param.dtype == torch.bfloat16 for param in bf16.parameters())

    images = media()
    tokens = bf16(images)
    assert tokens.dtype == torch.float32
    torch.testing.assert_close(tokens, fp32(images), atol=0.1, rtol=0.05)


def test_unknown_dtype():
    with pytest.raises(ValueError, match='float64'):
        HFCLIPVisionEncoder(config=TINY_CLIP, dtype='float64')


def test_wrong_input_shape():
    encoder = HFCLIPVisionEncoder(config=TINY_CLIP)
    with pytest.raises(ValueError, match=r'\(2, 3, 32, 32\)'):
        encoder(torch.rand(2, 3, 32, 32))


def test_build_from_registry():
    encoder = MODELS.build(
        dict(type='HFCLIPVisionEncoder', config=TINY_CLIP, out_layer=-2))
    assert isinstance(encoder, HFCLIPVisionEncoder)
    assert encoder.out_layer == 0


def test_load_vision_model_directory(tmp_path):
    clip = CLIPVisionModel(CLIPVisionConfig(**TINY_CLIP)).eval()
    clip.save_pretrained(tmp_path)

    encoder = HFCLIPVisionEncoder(pretrained=str(tmp_path))
    images = media()
    with torch.no_grad():
        expected = clip(pixel_values=images.flatten(0, 2)).last_hidden_state
    torch.testing.assert_close(encoder(images).flatten(0, 2), expected[:, 1:])


def test_load_full_clip_directory(tmp_path):
    text_config = dict(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=16)
    clip = CLIPModel(
        CLIPConfig(text_config=text_config, vision_config=TINY_CLIP)).eval()
    clip.save_pretrained(tmp_path)

    encoder = HFCLIPVisionEncoder(pretrained=str(tmp_path))
    images = media()
    with torch.no_grad():
        expected = clip.vision_model(
            pixel_values=images.flatten(0, 2)).last_hidden_state
    torch.testing.assert_close(encoder(images).flatten(0, 2), expected[:, 1:])


def test_missing_directory(tmp_path):
    missing = str(tmp_path / 'no-such-clip')
    with pytest.raises(FileNotFoundError, match='no-such-clip') as error:
        HFCLIPVisionEncoder(pretrained=missing)
    assert missing in str(error.value)
    assert 'pretrained' in str(error.value)


def test_directory_without_weights(tmp_path):
    CLIPVisionConfig(**TINY_CLIP).save_pretrained(tmp_path)
    with pytest.raises(OSError):
        HFCLIPVisionEncoder(pretrained=str(tmp_path))


def test_directory_missing_some_weights(tmp_path):
    clip = CLIPVisionModel(CLIPVisionConfig(**TINY_CLIP))
    state_dict = {
        key: value
        for key, value in clip.state_dict().items()
        if 'post_layernorm' not in key
    }
    clip.save_pretrained(tmp_path, state_dict=state_dict)
    with pytest.raises(RuntimeError, match='post_layernorm'):
        HFCLIPVisionEncoder(pretrained=str(tmp_path))


@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(pretrained='clip', config=TINY_CLIP),
])
def test_needs_exactly_one_source(kwargs):
    with pytest.raises(ValueError, match='exactly one'):
        HFCLIPVisionEncoder(**kwargs)


def test_init_weights_keeps_weights():
    encoder = HFCLIPVisionEncoder(config=TINY_CLIP)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}

    encoder.init_weights()

    class Parent(BaseModule):

        def __init__(self):
            super().__init__()
            self.backbone = encoder

    Parent().init_weights()
    for key, value in encoder.state_dict().items():
        torch.testing.assert_close(value, before[key], msg=key)


def test_feature_cache_reuses_frames_and_matches_the_encoder():
    plain = HFCLIPVisionEncoder(config=TINY_CLIP)
    cached = HFCLIPVisionEncoder(config=TINY_CLIP, cache_size=100)
    cached.encoder.load_state_dict(plain.encoder.state_dict())
    images = media(batch=2, num_media=3, num_frames=2)
    first = cached(images)
    assert cached.num_encoded == 12
    # the same frames again, in another order and with one repeated: none
    # goes through the encoder, and each gets its tokens back
    again = images.flip(0)
    again[0, 0, 1] = again[1, 2, 0]
    second = cached(again)
    assert cached.num_encoded == 12
    assert torch.equal(second[0, 0, 1], first[0, 2, 0])
    assert torch.equal(second[1], first[0])
    assert torch.equal(second[0, 1:], first[1, 1:])
    # fp32 tokens of a chunk of 16 against one batch of 12 frames: the
    # matmuls are blocked differently, a few ulps of values of order 1
    torch.testing.assert_close(first, plain(images), atol=1e-5, rtol=1e-5)


def test_feature_cache_tokens_do_not_depend_on_the_batch():
    encoder = HFCLIPVisionEncoder(config=TINY_CLIP, cache_size=100)
    other = HFCLIPVisionEncoder(config=TINY_CLIP, cache_size=100)
    other.encoder.load_state_dict(encoder.encoder.state_dict())
    images = media(batch=1, num_media=3)
    shared = images[:, :1]
    a = encoder(torch.cat([shared, images[:, 1:2]], dim=1))
    b = other(torch.cat([images[:, 2:], shared], dim=1))
    assert torch.equal(a[0, 0], b[0, 1])


def test_feature_cache_keeps_the_most_recent_frames():
    encoder = HFCLIPVisionEncoder(config=TINY_CLIP, cache_size=3)
    images = media(batch=1, num_media=5)
    for i in range(5):
        encoder(images[:, i:i + 1])
    assert len(encoder._cache) == 3 and encoder.num_encoded == 5
    encoder(images[:, 4:5])  # cached
    assert encoder.num_encoded == 5
    encoder(images[:, 0:1])  # dropped, encoded again
    assert encoder.num_encoded == 6


@pytest.mark.parametrize('kwargs', [dict(cache_size=-1), dict(cache_chunk=0)])
def test_feature_cache_arguments_are_checked(kwargs):
    with pytest.raises(ValueError, match='cache_size'):
        HFCLIPVisionEncoder(config=TINY_CLIP, **kwargs)
