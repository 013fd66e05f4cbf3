import pytest
import torch
import torch.nn.functional as F

from mmflamingo.models.layers import SquaredReLU
from mmflamingo.models.necks import PerceiverResampler
from mmflamingo.registry import MODELS

DIM, DEPTH, HEADS, DIM_HEAD, NUM_LATENTS = 16, 2, 2, 8, 3


def features(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def build(**kwargs):
    torch.manual_seed(0)
    cfg = dict(
        type='PerceiverResampler',
        dim=DIM,
        depth=DEPTH,
        dim_head=DIM_HEAD,
        heads=HEADS,
        num_latents=NUM_LATENTS,
        ff_mult=2)
    perceiver = MODELS.build({**cfg, **kwargs})
    # non-trivial LayerNorm parameters, so that the reference must use them
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in perceiver.named_parameters():
            if 'norm' in name:
                param.add_(0.3 * torch.randn(param.shape, generator=generator))
    return perceiver


def layer_norm(x, norm):
    return F.layer_norm(x, x.shape[-1:], norm.weight, norm.bias, norm.eps)


def reference_perceiver(perceiver: PerceiverResampler, x: torch.Tensor,
                        act) -> torch.Tensor:
    """The Perceiver Resampler with plain matmuls, one medium at a time."""
    batch, num_media, num_frames = x.shape[:3]
    out = torch.empty(batch, num_media, NUM_LATENTS, DIM)
    for b in range(batch):
        for n in range(num_media):
            medium = x[b, n]  # (T, P, D)
            if perceiver.patch_embs is not None:
                medium = medium + perceiver.patch_embs[:medium.shape[1]]
            if perceiver.frame_embs is not None:
                medium = medium + perceiver.frame_embs[:num_frames, None]
            medium = medium.reshape(-1, DIM)  # (T * P, D)
            latents = perceiver.latents
            for layer in perceiver.layers:
                attn, ff = layer['attn'], layer['ff']
                media_n = layer_norm(medium, attn.norm_media)
                latents_n = layer_norm(latents, attn.norm_latents)
                context = torch.cat((media_n, latents_n))  # (T * P + L, D)
                w_k, w_v = attn.to_kv.weight.chunk(2, dim=0)
                q = latents_n @ attn.to_q.weight.T
                k, v = context @ w_k.T, context @ w_v.T
                heads = []
                for h in range(HEADS):
                    cols = slice(h * DIM_HEAD, (h + 1) * DIM_HEAD)
                    scores = q[:, cols] @ k[:, cols].T / DIM_HEAD**0.5
                    heads.append(scores.softmax(-1) @ v[:, cols])
                latents = latents + torch.cat(heads, -1) @ attn.to_out.weight.T
                hidden = act(layer_norm(latents, ff.norm) @ ff.fc1.weight.T)
                latents = latents + hidden @ ff.fc2.weight.T
            out[b, n] = layer_norm(latents, perceiver.norm)
    return out


@pytest.mark.parametrize('num_frames', [1, 3])
@pytest.mark.parametrize('max_num_frames', [None, 4])
def test_shapes(num_frames, max_num_frames):
    perceiver = build(max_num_frames=max_num_frames)
    assert perceiver.latents.shape == (NUM_LATENTS, DIM)
    assert len(perceiver.layers) == DEPTH
    out = perceiver(features(2, 5, num_frames, 7, DIM))
    assert out.shape == (2, 5, NUM_LATENTS, DIM)  # (B, N, T, P, D) -> L
    # media are resampled independently: no sample or medium leaks into
    # another
    x = features(2, 5, num_frames, 7, DIM)
    x2 = x.clone()
    x2[1, 3] = features(num_frames, 7, DIM, seed=9)
    out, out2 = perceiver(x), perceiver(x2)
    changed = torch.zeros(2, 5, dtype=torch.bool)
    changed[1, 3] = True
    torch.testing.assert_close(out[~changed], out2[~changed])
    assert not torch.allclose(out[changed], out2[changed])


@pytest.mark.parametrize('act, fn', [('gelu', F.gelu),
                                     ('squared_relu', lambda x: F.relu(x)**2)])
@pytest.mark.parametrize('num_frames, max_num_frames', [(1, None), (3, None),
                                                        (3, 4)])
@pytest.mark.parametrize('max_num_patches', [None, 6])
def test_matches_reference(act, fn, num_frames, max_num_frames,
                           max_num_patches):
    perceiver = build(
        act=act,
        max_num_frames=max_num_frames,
        max_num_patches=max_num_patches)
    x = features(2, 2, num_frames, 5, DIM)
    with torch.no_grad():
        out = perceiver(x)
        expected = reference_perceiver(perceiver, x, fn)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_squared_relu_option():
    gelu, relu2 = build(), build(act='squared_relu')
    assert all(
        isinstance(layer['ff'].act, SquaredReLU) for layer in relu2.layers)
    relu2.load_state_dict(gelu.state_dict())
    x = features(1, 2, 1, 5, DIM)
    assert not torch.allclose(gelu(x), relu2(x))


def test_frame_order_matters_only_with_temporal_embeddings():
    x = features(2, 2, 3, 5, DIM)
    reordered = x[:, :, [2, 0, 1]]

    timed = build(max_num_frames=4)
    assert timed.frame_embs.shape == (4, DIM)
    assert not torch.allclose(timed(x), timed(reordered), atol=1e-4)

    # without them a medium is a set of tokens: order does not matter
    untimed = build()
    assert untimed.frame_embs is None
    torch.testing.assert_close(untimed(x), untimed(reordered))


def test_patch_order_matters_only_with_spatial_embeddings():
    x = features(2, 2, 3, 5, DIM)
    reordered = x[:, :, :, [4, 0, 1, 2, 3]]

    placed = build(max_num_patches=8)
    assert placed.patch_embs.shape == (8, DIM)
    assert not torch.allclose(placed(x), placed(reordered), atol=1e-4)

    # without them a frame is a set of tokens
    unplaced = build()
    assert unplaced.patch_embs is None
    torch.testing.assert_close(unplaced(x), unplaced(reordered))


def test_too_many_patches():
    perceiver = build(max_num_patches=5)
    perceiver(features(1, 1, 2, 5, DIM))
    with pytest.raises(ValueError, match='max_num_patches=5'):
        perceiver(features(1, 1, 1, 6, DIM))


def test_too_many_frames():
    perceiver = build(max_num_frames=2)
    perceiver(features(1, 1, 2, 5, DIM))
    with pytest.raises(ValueError, match='max_num_frames=2'):
        perceiver(features(1, 1, 3, 5, DIM))


def test_needs_five_dims():
    with pytest.raises(ValueError, match=r'\(B, N, T, P, D\)'):
        build()(features(2, 5, DIM))
