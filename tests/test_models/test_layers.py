import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmflamingo.models.layers import (ExtendedEmbedding, ExtendedLMHead,
                                      FeedForward, GatedCrossAttentionBlock,
                                      MaskedCrossAttention, SquaredReLU)

DIM, DIM_VISUAL, HEADS, DIM_HEAD = 16, 12, 2, 8
NUM_MEDIA, NUM_LATENTS = 3, 4

# each token's 1-based image index (0: no image yet), written by hand
MEDIA_INDEX = torch.tensor([
    [0, 0, 1, 1, 2, 2, 3, 3],  # text first, then three images
    [1, 1, 1, 1, 1, 1, 1, 1],  # one image from the start
    [0, 1, 1, 3, 3, 3, 3, 3],  # image 2 skipped (never seen by this text)
    [0, 0, 0, 0, 0, 0, 0, 0],  # no image at all
])


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def perturb_(module: nn.Module, seed=0) -> nn.Module:
    """Make LayerNorm affine parameters non-trivial too."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(0.5 * torch.randn(param.shape, generator=generator))
    return module


# ----------------------------------------------------------------- FFN
@pytest.mark.parametrize('act, fn', [('gelu', F.gelu),
                                     ('squared_relu', lambda x: F.relu(x)**2)])
def test_feed_forward(act, fn):
    torch.manual_seed(0)
    ff = perturb_(FeedForward(DIM, mult=3, act=act))
    assert ff.fc1.weight.shape == (3 * DIM, DIM)
    assert ff.fc1.bias is None and ff.fc2.bias is None
    x = randn(2, 5, DIM)
    normed = F.layer_norm(x, (DIM, ), ff.norm.weight, ff.norm.bias)
    expected = fn(normed @ ff.fc1.weight.T) @ ff.fc2.weight.T
    torch.testing.assert_close(ff(x), expected)


def test_feed_forward_activations_differ():
    torch.manual_seed(0)
    gelu = FeedForward(DIM, act='gelu')
    relu2 = FeedForward(DIM, act='squared_relu')
    relu2.load_state_dict(gelu.state_dict())
    assert isinstance(relu2.act, SquaredReLU)
    x = randn(3, DIM)
    assert not torch.allclose(gelu(x), relu2(x))


def test_feed_forward_bad_activation():
    with pytest.raises(ValueError, match='relu6'):
        FeedForward(DIM, act='relu6')


# ------------------------------------------------------ masked attention
def naive_cross_attention(attn: MaskedCrossAttention,
                          x,
                          media,
                          media_index,
                          per_sample=1):
    """Token by token: softmax over exactly the keys of the visible images.
    """
    rows, seq, _ = x.shape
    q = attn.to_q(attn.norm(x))
    k, v = attn.to_kv(media.flatten(1, 2)).chunk(2, dim=-1)
    out = torch.zeros(rows, seq, attn.to_q.weight.shape[0])
    for row in range(rows):
        sample = row // per_sample
        for pos in range(seq):
            m = int(media_index[row, pos])
            if m == 0:
                continue
            first = (m - 1) * NUM_LATENTS if attn.only_attend_last_media \
                else 0
            keys = slice(first, m * NUM_LATENTS)
            for h in range(HEADS):
                dims = slice(h * DIM_HEAD, (h + 1) * DIM_HEAD)
                scores = k[sample, keys, dims] @ q[row, pos, dims]
                weights = (scores / math.sqrt(DIM_HEAD)).softmax(0)
                out[row, pos, dims] = weights @ v[sample, keys, dims]
    return out @ attn.to_out.weight.T


# Token by token against batched: other summation orders. The outputs reach
# ~16, where an fp32 ulp is 2e-6; they agreed to 3.3e-6 where this was
# written; attending to the wrong image changes them by O(1).
NAIVE_ATOL = 1e-4


def build_attention(only_attend_last_media=True):
    torch.manual_seed(0)
    return perturb_(
        MaskedCrossAttention(
            DIM,
            DIM_VISUAL,
            dim_head=DIM_HEAD,
            heads=HEADS,
            only_attend_last_media=only_attend_last_media))


@pytest.mark.parametrize('only_attend_last_media', [True, False])
def test_masked_cross_attention_matches_naive(only_attend_last_media):
    attn = build_attention(only_attend_last_media)
    rows = MEDIA_INDEX.shape[0]
    x = randn(rows, MEDIA_INDEX.shape[1], DIM, seed=1)
    media = randn(rows, NUM_MEDIA, NUM_LATENTS, DIM_VISUAL, seed=2)

    media_kv = attn.project_media(media)
    assert media_kv[0].shape == (rows, HEADS, NUM_MEDIA * NUM_LATENTS,
                                 DIM_HEAD)
    out = attn(x, media_kv, MEDIA_INDEX, NUM_LATENTS)
    expected = naive_cross_attention(attn, x, media, MEDIA_INDEX)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=NAIVE_ATOL)

    # tokens that follow no image get exactly nothing
    no_image = MEDIA_INDEX == 0
    assert torch.equal(out[no_image], torch.zeros_like(out[no_image]))
    assert out[~no_image].abs().min(-1).values.gt(0).all()


def test_attend_last_vs_all_previous():
    last, every = build_attention(True), build_attention(False)
    x = randn(4, 8, DIM, seed=1)
    media = randn(4, NUM_MEDIA, NUM_LATENTS, DIM_VISUAL, seed=2)
    out_last = last(x, last.project_media(media), MEDIA_INDEX, NUM_LATENTS)
    out_all = every(x, every.project_media(media), MEDIA_INDEX, NUM_LATENTS)
    # the two modes agree exactly where only one image can be seen
    sees_one = MEDIA_INDEX == 1
    torch.testing.assert_close(out_last[sees_one], out_all[sees_one])
    sees_more = MEDIA_INDEX > 1
    assert (out_last[sees_more] -
            out_all[sees_more]).abs().amax(-1).gt(1e-4).all()


@pytest.mark.parametrize('only_attend_last_media', [True, False])
def test_changing_an_image_affects_exactly_its_tokens(only_attend_last_media):
    attn = build_attention(only_attend_last_media)
    x = randn(4, 8, DIM, seed=1)
    media = randn(4, NUM_MEDIA, NUM_LATENTS, DIM_VISUAL, seed=2)
    changed = media.clone()
    changed[:, 1] = randn(4, NUM_LATENTS, DIM_VISUAL, seed=3)  # image 2
    out = attn(x, attn.project_media(media), MEDIA_INDEX, NUM_LATENTS)
    new = attn(x, attn.project_media(changed), MEDIA_INDEX, NUM_LATENTS)
    if only_attend_last_media:
        sees_image_2 = MEDIA_INDEX == 2
    else:
        sees_image_2 = MEDIA_INDEX >= 2
    diff = (out - new).abs().amax(-1)
    assert torch.equal(diff[~sees_image_2],
                       torch.zeros_like(diff[~sees_image_2]))
    assert diff[sees_image_2].gt(1e-4).all()


@pytest.mark.parametrize('only_attend_last_media', [True, False])
def test_rows_grouped_per_sample(only_attend_last_media):
    """B samples' media shared by K rows each (beams, candidates)."""
    attn = build_attention(only_attend_last_media)
    batch, per_sample, seq = 2, 3, 5
    x = randn(batch * per_sample, seq, DIM, seed=1)
    media = randn(batch, NUM_MEDIA, NUM_LATENTS, DIM_VISUAL, seed=2)
    media_index = torch.tensor([
        [0, 1, 1, 2, 2],
        [1, 1, 2, 3, 3],
        [0, 0, 0, 0, 3],
        [3, 3, 3, 3, 3],
        [0, 0, 1, 1, 1],
        [2, 2, 2, 2, 2],
    ])
    k, v = attn.project_media(media)
    grouped = attn(x, (k, v), media_index, NUM_LATENTS)
    k_rows, v_rows = (t.repeat_interleave(per_sample, 0) for t in (k, v))
    repeated = attn(x, (k_rows, v_rows), media_index, NUM_LATENTS)
    # (B, H, K * S, Dh) queries against (B * K, H, S, Dh): other shapes, which
    # may round differently (equal where this was written); outputs up to ~16
    torch.testing.assert_close(grouped, repeated, rtol=1e-5, atol=1e-5)
    expected = naive_cross_attention(attn, x, media, media_index, per_sample)
    torch.testing.assert_close(grouped, expected, rtol=1e-5, atol=NAIVE_ATOL)
    # control: the rows really read their own sample's media
    swapped = attn(x, (k.flip(0), v.flip(0)), media_index, NUM_LATENTS)
    assert not torch.allclose(grouped, swapped)


def test_gated_block_with_closed_gates_is_identity():
    torch.manual_seed(0)
    block = GatedCrossAttentionBlock(
        DIM, DIM_VISUAL, dim_head=DIM_HEAD, heads=HEADS, ff_mult=2)
    assert block.attn_gate.item() == 0 and block.ff_gate.item() == 0
    x = randn(4, 8, DIM, seed=1)
    media = randn(4, NUM_MEDIA, NUM_LATENTS, DIM_VISUAL, seed=2)
    media_kv = block.project_media(media)
    assert torch.equal(block(x, media_kv, MEDIA_INDEX, NUM_LATENTS), x)

    with torch.no_grad():
        block.attn_gate.fill_(1.0)
    attn_only = block(x, media_kv, MEDIA_INDEX, NUM_LATENTS)
    expected = x + math.tanh(1.0) * block.attn(x, media_kv, MEDIA_INDEX,
                                               NUM_LATENTS)
    torch.testing.assert_close(attn_only, expected)
    # tokens before any image are untouched by the attention alone
    no_image = MEDIA_INDEX == 0
    assert torch.equal(attn_only[no_image], x[no_image])
    assert not torch.allclose(attn_only[~no_image], x[~no_image])

    with torch.no_grad():
        block.ff_gate.fill_(0.5)
    out = block(x, media_kv, MEDIA_INDEX, NUM_LATENTS)
    torch.testing.assert_close(
        out, attn_only + math.tanh(0.5) * block.ff(attn_only))


# ------------------------------------------------- extended embeddings
NUM_ROWS, NUM_BASE, NUM_NEW, WIDTH = 12, 10, 3, 6


def base_modules(bias=False):
    torch.manual_seed(0)
    embedding = nn.Embedding(NUM_ROWS, WIDTH)  # 2 rows of vocab padding
    head = nn.Linear(WIDTH, NUM_ROWS, bias=bias)
    return embedding, head


def test_extended_embedding():
    base, _ = base_modules()
    emb = ExtendedEmbedding(base, NUM_BASE, NUM_NEW)
    assert emb.num_embeddings == NUM_BASE + NUM_NEW
    assert emb.embedding_dim == WIDTH
    assert not emb.weight.requires_grad and emb.new_weight.requires_grad
    assert emb.weight.shape == (NUM_BASE, WIDTH)
    assert emb.new_weight.shape == (NUM_NEW, WIDTH)
    # new rows start at the mean of the base rows (not the padding rows)
    torch.testing.assert_close(
        emb.new_weight.data,
        base.weight.data[:NUM_BASE].mean(0, keepdim=True).expand(NUM_NEW, -1))

    with torch.no_grad():
        emb.new_weight.copy_(randn(NUM_NEW, WIDTH, seed=5))
    ids = torch.tensor([[0, 9, 10, 3], [12, 11, 1, 10]])
    out = emb(ids)
    is_base = ids < NUM_BASE
    assert torch.equal(out[is_base], base.weight[ids[is_base]].detach())
    assert torch.equal(out[~is_base],
                       emb.new_weight[ids[~is_base] - NUM_BASE].detach())

    # gradients reach the new rows only
    out.sum().backward()
    assert emb.weight.grad is None
    assert emb.new_weight.grad is not None


@pytest.mark.parametrize('bias', [False, True])
def test_known_tokens_start_from_the_lms_own_rows(bias):
    """An LM pretrained with the Flamingo tokens (``known``): their trainable
    rows start as the LM's rows for them, so the model is the LM at the
    start; with too few rows for them, a clear error."""
    base_emb, base_head = base_modules(bias)
    base = NUM_ROWS - NUM_NEW  # the LM has rows for the known tokens
    emb = ExtendedEmbedding(base_emb, base, NUM_NEW, known=True)
    rows = slice(base, base + NUM_NEW)
    assert torch.equal(emb.new_weight.data, base_emb.weight.data[rows])
    ids = torch.arange(base + NUM_NEW)
    assert torch.equal(emb(ids).detach(), base_emb(ids).detach())
    head = ExtendedLMHead(base_head, emb, tied=False, known=True)
    assert torch.equal(head.new_weight.data, base_head.weight.data[rows])
    if bias:
        assert torch.equal(head.new_bias.data, base_head.bias.data[rows])
    hidden = randn(2, 3, WIDTH, seed=1)
    torch.testing.assert_close(
        head(hidden),
        base_head(hidden)[..., :base + NUM_NEW],
        rtol=1e-5,
        atol=1e-5)  # matmuls of other widths may differ in the last bits
    # not known: the mean of the old rows, not the LM's rows
    assert not torch.equal(
        ExtendedEmbedding(base_emb, base, NUM_NEW).new_weight.data,
        base_emb.weight.data[rows])
    with pytest.raises(ValueError, match='fewer than their ids'):
        ExtendedEmbedding(base_emb, base + 1, NUM_NEW, known=True)


def test_extended_embedding_keeps_the_lms_row_scale():
    """Gemma 3's embedding multiplies the rows it looks up by
    ``embed_scale``; an embedding computing anything else is refused."""
    from transformers.models.gemma3.modeling_gemma3 import \
        Gemma3TextScaledWordEmbedding
    torch.manual_seed(0)
    base = Gemma3TextScaledWordEmbedding(NUM_ROWS, WIDTH, None, 3.0)
    emb = ExtendedEmbedding(base, NUM_BASE, NUM_NEW)
    ids = torch.tensor([[0, 9, 10, 3], [12, 11, 1, 10]])
    is_base = ids < NUM_BASE
    out = emb(ids).detach()
    expected = base(ids.masked_fill(~is_base, 0)).detach()
    assert torch.equal(out[is_base], expected[is_base])
    # the new rows are scaled as the LM scales its own
    assert torch.equal(out[~is_base],
                       3.0 * emb.new_weight[ids[~is_base] - NUM_BASE].detach())

    class Shifted(nn.Embedding):

        def forward(self, input_ids):
            return super().forward(input_ids) + 1

    with pytest.raises(TypeError, match='Shifted'):
        ExtendedEmbedding(Shifted(NUM_ROWS, WIDTH), NUM_BASE, NUM_NEW)


def test_extended_embedding_needs_enough_rows():
    base, _ = base_modules()
    with pytest.raises(ValueError, match=f'{NUM_ROWS} embedding rows'):
        ExtendedEmbedding(base, NUM_ROWS + 1, NUM_NEW)


def test_extended_embedding_loads_legacy_full_table():
    base, _ = base_modules()
    emb = ExtendedEmbedding(base, NUM_BASE, NUM_NEW)
    full = randn(NUM_BASE + NUM_NEW, WIDTH, seed=7)
    emb.load_state_dict({'weight': full})
    assert torch.equal(emb.weight, full[:NUM_BASE])
    assert torch.equal(emb.new_weight.data, full[NUM_BASE:])
    assert torch.equal(emb(torch.arange(NUM_BASE + NUM_NEW)).detach(), full)

    # the split format loads as it is
    state = {'weight': full[:NUM_BASE] + 1, 'new_weight': full[NUM_BASE:] + 1}
    emb.load_state_dict(state)
    assert torch.equal(emb.weight, state['weight'])
    assert set(emb.state_dict()) == {'weight', 'new_weight'}


@pytest.mark.parametrize('bias', [False, True])
def test_untied_lm_head(bias):
    base_emb, base_head = base_modules(bias)
    emb = ExtendedEmbedding(base_emb, NUM_BASE, NUM_NEW)
    head = ExtendedLMHead(base_head, emb, tied=False)
    with torch.no_grad():
        head.new_weight.copy_(randn(NUM_NEW, WIDTH, seed=5))
        if bias:
            head.new_bias.copy_(randn(NUM_NEW, seed=6))
    trainable = {n for n, p in head.named_parameters() if p.requires_grad}
    assert trainable == ({'new_weight', 'new_bias'}
                         if bias else {'new_weight'})

    hidden = randn(2, 4, WIDTH, seed=1)
    logits = head(hidden)
    assert logits.shape == (2, 4, NUM_BASE + NUM_NEW)
    # base columns are the original head's (without its padding rows; a
    # matmul of another width may round differently in the last bit)
    torch.testing.assert_close(logits[..., :NUM_BASE],
                               base_head(hidden)[..., :NUM_BASE])
    expected_new = hidden @ head.new_weight.T
    if bias:
        expected_new = expected_new + head.new_bias
    torch.testing.assert_close(logits[..., NUM_BASE:], expected_new)

    # a legacy full table (and bias) is split
    full = randn(NUM_BASE + NUM_NEW, WIDTH, seed=8)
    state = {'weight': full}
    if bias:
        state['bias'] = randn(NUM_BASE + NUM_NEW, seed=9)
    head.load_state_dict(state)
    assert torch.equal(head.weight, full[:NUM_BASE])
    assert torch.equal(head.new_weight.data, full[NUM_BASE:])
    if bias:
        assert torch.equal(head.new_bias.data, state['bias'][NUM_BASE:])


def test_tied_lm_head_uses_embedding_rows():
    base_emb, base_head = base_modules()
    base_head.weight = base_emb.weight
    emb = ExtendedEmbedding(base_emb, NUM_BASE, NUM_NEW)
    head = ExtendedLMHead(base_head, emb, tied=True)
    assert list(head.parameters()) == []
    assert head.state_dict() == {}

    with torch.no_grad():
        emb.new_weight.copy_(randn(NUM_NEW, WIDTH, seed=5))
    hidden = randn(2, 4, WIDTH, seed=1)
    table = torch.cat((emb.weight, emb.new_weight)).detach()
    torch.testing.assert_close(head(hidden), hidden @ table.T)
    # the rows are shared, not copied: training the embedding moves both
    with torch.no_grad():
        emb.new_weight.add_(1.0)
    torch.testing.assert_close(
        head(hidden)[..., NUM_BASE:], hidden @ emb.new_weight.detach().T)
    head(hidden).sum().backward()
    assert emb.new_weight.grad is not None

    # a tied checkpoint may repeat the table under the head: ignored
    head.load_state_dict({'weight': randn(NUM_BASE + NUM_NEW, WIDTH)})
    torch.testing.assert_close(
        head(hidden)[..., :NUM_BASE], hidden @ emb.weight.T)
