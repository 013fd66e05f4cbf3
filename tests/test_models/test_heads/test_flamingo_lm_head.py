"""FlamingoLMHead on every architecture of ``TINY_LM_CONFIGS``.

The LMs are drawn with a large initialiser range and the tests that need the
visual path open the gates, so that outputs depend on text and images; each
equality comes with a control showing that it could fail.
"""
import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from mmflamingo.models.layers import GatedCrossAttentionBlock
from mmflamingo.models.utils import build_causal_lm, find_decoder_layers
from mmflamingo.testing import (TINY_LM_CONFIGS, generation_margin,
                                tiny_lm_config)

ARCHS = list(TINY_LM_CONFIGS)
# tie_word_embeddings in their tiny configs
TIED = {'gemma', 'opt', 'gpt2', 'mpt'}
OUTPUT_BIAS = {'phi'}
DECODER_LAYERS = {
    'llama': 'model.layers',
    'llama3': 'model.layers',
    'mistral': 'model.layers',
    'qwen2': 'model.layers',
    'qwen3': 'model.layers',
    'gemma': 'model.layers',
    'gemma2': 'model.layers',
    'gemma3': 'model.layers',
    'phi': 'model.layers',
    'phi3': 'model.layers',
    'olmo2': 'model.layers',
    'opt': 'model.decoder.layers',
    'gpt2': 'transformer.h',
    'gpt_neox': 'gpt_neox.layers',
    'mpt': 'transformer.blocks',
}
NUM_LATENTS, DIM_VISUAL = 4, 32  # of tiny_flamingo_config's perceiver

# two prompts of different lengths and image counts
PROMPTS = [
    'the quick brown fox <image>a photo of a red circle.<|endofchunk|>'
    '<image>a blue square next to',
    'Question: what colour? <image>Short answer:',
]
NUM_MEDIA = [2, 1]
CANDIDATES = [
    [' a green triangle.', ' red', ' two yellow stars above'],
    [' red', ' three', ' a cat sitting on a mat'],
]


def media(batch=2, num_media=2, seed=0):
    """Random visual tokens ``(B, N, L, Dv)``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(
        batch, num_media, NUM_LATENTS, DIM_VISUAL, generator=generator)


def tokenize(model, texts, padding_side):
    return model.tokenizer(
        texts,
        padding='longest',
        padding_side=padding_side,
        return_tensors='pt')


def generate(model, prompts, visual, num_media, **kwargs):
    """New tokens only, at a fixed length (no early stop), and how far their
    choice was from a tie (:func:`generation_margin`)."""
    prompt = tokenize(model, prompts, 'left')
    kwargs = dict(
        max_new_tokens=6,
        min_new_tokens=6,
        output_scores=True,
        return_dict_in_generate=True,
        **kwargs)
    out = model.head.generate(prompt['input_ids'], prompt['attention_mask'],
                              visual, torch.tensor(num_media), **kwargs)
    margin = generation_margin(out.scores, kwargs.get('num_beams', 1))
    return out.sequences[:, prompt['input_ids'].shape[1]:], margin


def step_scores(model, visual, num_beams):
    """``(steps, B, K * V)`` scores of a cached generation from ``PROMPTS``
    (-inf clamped, so that differences are finite)."""
    prompt = tokenize(model, PROMPTS, 'left')
    out = model.head.generate(
        prompt['input_ids'],
        prompt['attention_mask'],
        visual,
        torch.tensor(NUM_MEDIA),
        num_beams=num_beams,
        max_new_tokens=6,
        min_new_tokens=6,
        output_scores=True,
        return_dict_in_generate=True)
    scores = torch.stack(out.scores)  # (steps, B * K, V)
    return scores.view(len(out.scores), len(PROMPTS), -1).clamp(min=-1e4)


# Generations computed in other shapes (cached or not, batched or alone)
# round differently: their fp32 logits differ by up to ~1e-4 (see
# test_forward_continues_a_cache), a beam's score sums 6 steps of them. The
# tokens are equal on any CPU when no choice was closer than this to its
# runner-up (the closest was 8e-3 where this was written).
MIN_MARGIN = 2e-3
# Media of the generation tests where seed 0 is near a tie: transformers 4
# and 5 draw other tiny LMs from one seed, and with seed 0 Gemma 3's beam
# search under 5.25 had a margin of 5e-4 (seed 2: > 7e-3 under both).
GENERATION_SEEDS = dict(gemma3=2)


@pytest.fixture(scope='module', params=ARCHS)
def arch(request):
    return request.param


@pytest.fixture(scope='module')
def open_model(arch, build_flamingo):
    """A tiny Flamingo on ``arch`` with every gate at 1."""
    return build_flamingo(arch, gates=1.0)


# ------------------------------------------------ (a) closed gates = LM
def test_closed_gates_compute_the_bare_lm(arch, build_flamingo, set_gates):
    model = build_flamingo(arch)  # gates at 0, as built
    head, tokens = model.head, model.tokens
    num_rows = tokens.num_base + tokens.num_new

    config = copy.deepcopy(head.lm.config)
    config.vocab_size = 512
    torch.manual_seed(1)
    bare = AutoModelForCausalLM.from_config(config).eval()
    # the bare LM's table includes rows for the new tokens: load it as a
    # legacy full table (split into frozen and new rows by the head)
    names = {id(m): n for n, m in bare.named_modules()}
    tables = {
        f'{names[id(module)]}.{param}'
        for module in (bare.get_input_embeddings(),
                       bare.get_output_embeddings())
        for param in ('weight', 'bias')
    }
    state = {
        k: v[:num_rows] if k in tables else v
        for k, v in bare.state_dict().items()
    }
    result = head.lm.load_state_dict(state, strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == []

    text = tokenize(model, PROMPTS, 'right')
    ids, mask = text['input_ids'], text['attention_mask']
    assert (ids == tokens.media).any() and (ids == tokens.end_of_chunk).any()
    assert ids.max() < num_rows

    finals = []
    for lm in (head.lm, bare):
        lm.get_output_embeddings().register_forward_hook(
            lambda m, args, out: finals.append(args[0]))
    visual = media()
    with torch.no_grad():
        logits = head(ids, mask, visual).logits
        expected = bare(input_ids=ids, attention_mask=mask).logits
    real = mask.bool()
    assert logits.shape == (*ids.shape, num_rows)
    # the hidden states reaching the output layer are bit for bit the LM's
    assert torch.equal(finals[0][real], finals[1][real])
    # the output layer is split in base and new rows: a matmul of another
    # width may round differently in the last bit
    torch.testing.assert_close(
        logits[real], expected[..., :num_rows][real], rtol=1e-5, atol=1e-5)

    # control: open gates change the logits
    set_gates(head, 1.0)
    with torch.no_grad():
        opened = head(ids, mask, visual).logits
    assert (opened[real] - logits[real]).abs().amax() > 1e-2


def test_llama3_case_scales_rope():
    """The 'llama3' case runs Llama 3's RoPE scaling, not plain RoPE: the
    same weights without it give other hidden states past position 0."""
    config = tiny_lm_config('llama3')
    assert config['rope_scaling']['rope_type'] == 'llama3'
    torch.manual_seed(0)
    scaled = build_causal_lm(config=config).eval()
    plain = build_causal_lm(config={**config, 'rope_scaling': None}).eval()
    plain.load_state_dict(scaled.state_dict())
    ids = torch.arange(1, 41)[None]
    with torch.no_grad():
        outputs = [
            lm.model(input_ids=ids).last_hidden_state for lm in (scaled, plain)
        ]
    torch.testing.assert_close(outputs[0][0, 0], outputs[1][0, 0])
    assert (outputs[0] - outputs[1])[0, 1:].abs().amax() > 1e-2


# ---------------------------------------------- (b) what is trainable
def test_trainable_parameters(arch, open_model):
    model, head = open_model, open_model.head
    lm = head.lm
    embedding, output = lm.get_input_embeddings(), lm.get_output_embeddings()
    names = {id(m): n for n, m in lm.named_modules()}
    new_rows = {f'head.lm.{names[id(embedding)]}.new_weight'}
    if arch in TIED:
        assert output.tied
        assert list(output.parameters()) == []
    else:
        assert not output.tied
        new_rows.add(f'head.lm.{names[id(output)]}.new_weight')
    if arch in OUTPUT_BIAS:
        new_rows.add(f'head.lm.{names[id(output)]}.new_bias')

    trainable = {
        n: p.numel()
        for n, p in model.named_parameters() if p.requires_grad
    }
    expected = {f'neck.{n}' for n, _ in model.neck.named_parameters()}
    expected |= {
        f'head.xattn_blocks.{n}'
        for n, _ in head.xattn_blocks.named_parameters()
    }
    expected |= new_rows
    assert set(trainable) == expected

    hidden, num_new = embedding.embedding_dim, model.tokens.num_new
    num_rows = num_new * hidden * (1 if arch in TIED else 2)
    num_rows += num_new if arch in OUTPUT_BIAS else 0
    assert sum(trainable[n] for n in new_rows) == num_rows
    num_blocks = len(head.xattn_blocks)
    assert num_blocks == lm.config.num_hidden_layers == 2
    assert sum(trainable.values()) == (
        sum(p.numel() for p in model.neck.parameters()) +
        sum(p.numel() for p in head.xattn_blocks.parameters()) + num_rows)

    # and gradients reach exactly those
    text = tokenize(model, PROMPTS, 'right')
    generator = torch.Generator().manual_seed(0)
    # (B, N, T, P, Dv), as from a vision encoder
    features = torch.randn(2, 2, 1, 16, DIM_VISUAL, generator=generator)
    model.zero_grad()
    logits = head(text['input_ids'], text['attention_mask'],
                  model.neck(features)).logits
    logits.logsumexp(-1).sum().backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    assert with_grad == expected


# ------------------------------------------------------- (c) placement
@pytest.mark.parametrize('placement, expected', [('openflamingo', [1, 3]),
                                                 ('paper', [0, 2])])
def test_block_placement(arch, placement, expected, build_flamingo, set_gates):
    model = build_flamingo(
        arch,
        lm_config=dict(num_layers=4),
        cross_attn_every_n_layers=2,
        xattn_placement=placement)
    head = model.head
    path, layers = find_decoder_layers(head.lm)
    assert path == DECODER_LAYERS[arch]
    assert len(layers) == 4
    assert head.xattn_layers == expected
    assert list(head.xattn_blocks) == [str(i) for i in expected]

    # record what enters each layer, after the head's own pre-hooks
    inputs = {}

    def record(i, layer, args, kwargs):
        inputs[i] = kwargs.get('hidden_states', args[0] if args else None)

    for i, layer in enumerate(layers):
        layer.register_forward_pre_hook(
            lambda m, a, k, i=i: record(i, m, a, k), with_kwargs=True)
    text = tokenize(model, PROMPTS, 'right')

    def layer_inputs():
        inputs.clear()
        with torch.no_grad():
            head(text['input_ids'], text['attention_mask'], media())
        return [inputs[i] for i in range(4)]

    closed = layer_inputs()
    for name, block in head.xattn_blocks.items():
        set_gates(head, 0.0)
        with torch.no_grad():
            block.attn_gate.fill_(1.0)
            block.ff_gate.fill_(1.0)
        opened = layer_inputs()
        i = int(name)
        for j in range(i):
            assert torch.equal(opened[j], closed[j]), (name, j)
        assert not torch.allclose(opened[i], closed[i]), name


def test_decoder_layers_attr_must_be_a_module_list(build_flamingo):
    with pytest.raises(TypeError, match="'model.norm'"):
        build_flamingo('llama', decoder_layers_attr='model.norm')


# -------------------------------------------------- (d) KV cache
@pytest.mark.parametrize('num_beams', [1, 3])
def test_generation_with_and_without_cache(arch, open_model, num_beams):
    visual = media(seed=GENERATION_SEEDS.get(arch, 0))
    cached, margin = generate(
        open_model,
        PROMPTS,
        visual,
        NUM_MEDIA,
        num_beams=num_beams,
        use_cache=True)
    uncached, _ = generate(
        open_model,
        PROMPTS,
        visual,
        NUM_MEDIA,
        num_beams=num_beams,
        use_cache=False)
    assert cached.shape == (2, 6)
    assert margin > MIN_MARGIN
    assert torch.equal(cached, uncached)

    # control: the generation depends on the (last) image of each sample,
    # the scores it chooses from if not always the tokens (with Gemma 2 as
    # transformers 5 draws it, one sample's choices stay)
    changed = visual.clone()
    changed[0, 1] = media(1, 1, seed=5)[0, 0]
    changed[1, 0] = media(1, 1, seed=6)[0, 0]
    moved = step_scores(open_model, changed, num_beams) - step_scores(
        open_model, visual, num_beams)
    assert (moved.abs().amax(dim=(0, 2)) > 1e-2).all()


# -------------------------------------------- (e) batched = alone
def test_batched_generation_equals_alone(arch, open_model):
    visual = media(seed=GENERATION_SEEDS.get(arch, 0))
    # sample 1 has one image: its padded second slot must not be seen
    batched, margin = generate(open_model, PROMPTS, visual, NUM_MEDIA)
    assert margin > MIN_MARGIN
    for i, prompt in enumerate(PROMPTS):
        alone, _ = generate(open_model, [prompt],
                            visual[i:i + 1, :NUM_MEDIA[i]], NUM_MEDIA[i:i + 1])
        assert torch.equal(batched[i:i + 1], alone), i
    # the prompts do get padded
    mask = tokenize(open_model, PROMPTS, 'left')['attention_mask']
    assert not mask.all()


# ------------------------------------------------------------ (f) score
def continuations(model, candidates=CANDIDATES):
    """``(B, C, Lc)`` ids and mask of each sample's candidates; a sample
    with fewer gets empty ones."""
    num = max(len(c) for c in candidates)
    flat = [
        c for cands in candidates for c in cands + [''] * (num - len(cands))
    ]
    cont = model.tokenizer(
        flat,
        add_special_tokens=False,
        padding='longest',
        padding_side='right',
        return_tensors='pt')
    shape = (len(candidates), num, -1)
    return cont['input_ids'].view(shape), cont['attention_mask'].view(shape)


def full_forward_scores(model, visual):
    """Each candidate's summed and mean log-probs, the prompt and the
    candidate run alone, uncached."""
    sums, means = torch.empty(2, 3), torch.empty(2, 3)
    for i, text in enumerate(PROMPTS):
        prompt_ids = model.tokenizer(text, return_tensors='pt')['input_ids']
        for c, candidate in enumerate(CANDIDATES[i]):
            cand_ids = model.tokenizer(
                candidate, add_special_tokens=False,
                return_tensors='pt')['input_ids']
            ids = torch.cat((prompt_ids, cand_ids), dim=1)
            with torch.no_grad():
                logits = model.head(ids, torch.ones_like(ids),
                                    visual[i:i + 1, :NUM_MEDIA[i]]).logits
            # logits at t predict token t + 1
            logprobs = logits[0, :-1].log_softmax(-1)
            targets = ids[0, 1:]
            start = prompt_ids.shape[1] - 1
            sums[i, c] = logprobs[start:].gather(-1, targets[start:,
                                                             None]).sum()
            means[i, c] = sums[i, c] / cand_ids.shape[1]
    return sums, means


def test_score_equals_full_forward(arch, open_model, monkeypatch):
    model, head = open_model, open_model.head
    visual = media()
    prompt = tokenize(model, PROMPTS, 'left')
    cont_ids, cont_mask = continuations(model)

    def score(**kwargs):
        return head.score(prompt['input_ids'], prompt['attention_mask'],
                          visual, cont_ids, cont_mask, torch.tensor(NUM_MEDIA),
                          **kwargs)

    scores = score()
    assert scores.shape == (2, 3)
    assert head.packed_scoring == (arch not in ('gpt2', 'mpt'))
    expected, expected_means = full_forward_scores(model, visual)
    # each continuation alone, uncached, against a cached batch of them:
    # other shapes, which round differently; the sums of fp32 log-probs
    # reach ~200 here (the wide init) and agreed to 3e-5
    tolerance = dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(scores, expected, **tolerance)
    torch.testing.assert_close(
        score(reduction='mean'), expected_means, **tolerance)
    # in chunks of 1 and 2 continuations per LM call
    for chunk_size in (1, 2):
        torch.testing.assert_close(
            score(chunk_size=chunk_size), expected, **tolerance)
    if head.packed_scoring:
        # chunks of continuations of unequal widths run as equally wide
        # rows (one shape for the allocator to reuse): the widest chunk's
        widths = []
        hook = head.lm.register_forward_pre_hook(
            lambda _, args, kwargs: widths.append(kwargs['input_ids'].shape),
            with_kwargs=True)
        try:
            score(chunk_size=1)
        finally:
            hook.remove()
        widest = int(cont_mask.sum(-1).max())
        assert widths[1:] == [(2, widest)] * 3, widths
        assert len(set(cont_mask.sum(-1).flatten().tolist())) > 1
        # the other path: a copy of the prompt's cache per continuation
        monkeypatch.setattr(
            'mmflamingo.models.heads.flamingo_lm_head.'
            'PACKED_SCORING_MODEL_TYPES', frozenset())
        assert not head.packed_scoring
        torch.testing.assert_close(score(chunk_size=2), expected, **tolerance)
        monkeypatch.undo()

    # control: the scores depend on the images
    changed = visual.clone()
    changed[:, 0] = media(2, 1, seed=7)[:, 0]
    other = head.score(prompt['input_ids'], prompt['attention_mask'], changed,
                       cont_ids, cont_mask, torch.tensor(NUM_MEDIA))
    assert (other - scores).abs().min() > 1e-3
    with pytest.raises(ValueError, match="'sum' or 'mean'"):
        score(reduction='max')


def test_prefix_cache_attends_over_prompt_and_chunk_without_growing():
    """The scoring cache gives each layer its prompt's keys and values
    followed by the chunk's, keeps the prompt's length for the next chunk,
    and refuses a chunk longer than the room made for it."""
    from transformers import DynamicCache

    from mmflamingo.models.heads.flamingo_lm_head import _PrefixCache
    gen = torch.Generator().manual_seed(0)
    prompt = DynamicCache()
    layers = []
    for i in range(3):
        k, v = (torch.randn(2, 4, 5, 8, generator=gen) for _ in range(2))
        prompt.update(k, v, i)
        layers.append((k, v))
    assert _PrefixCache.takes(prompt)
    cache = _PrefixCache(prompt, room=4)
    for chunk_len in (4, 2, 3):  # chunks of other lengths, one after another
        for i, (k, v) in enumerate(layers):
            new_k, new_v = (
                torch.randn(2, 4, chunk_len, 8, generator=gen)
                for _ in range(2))
            keys, values = cache.update(new_k, new_v, i)
            torch.testing.assert_close(keys, torch.cat((k, new_k), dim=-2))
            torch.testing.assert_close(values, torch.cat((v, new_v), dim=-2))
        assert cache.get_seq_length() == 5
    with pytest.raises(ValueError, match='5 tokens does not fit the 4'):
        cache.update(*(torch.randn(2, 4, 5, 8) for _ in range(2)), 0)
    # what it does not take: another cache class, layers of other shapes
    assert not _PrefixCache.takes(((layers[0]), ))
    ragged = DynamicCache()
    ragged.update(*layers[0], 0)
    ragged.update(*(t[:, :2] for t in layers[1]), 1)
    assert not _PrefixCache.takes(ragged)


def test_score_of_unequal_candidate_counts(arch, open_model):
    """A sample with fewer candidates scores ``-inf`` past its own, and its
    own as if alone."""
    model, head = open_model, open_model.head
    visual = media()
    prompt = tokenize(model, PROMPTS, 'left')
    fewer = [CANDIDATES[0][:1], CANDIDATES[1]]
    cont_ids, cont_mask = continuations(model, fewer)
    scores = head.score(
        prompt['input_ids'],
        prompt['attention_mask'],
        visual,
        cont_ids,
        cont_mask,
        torch.tensor(NUM_MEDIA),
        chunk_size=2)
    expected, _ = full_forward_scores(model, visual)
    assert scores[0, 1:].isneginf().all()
    torch.testing.assert_close(
        scores[0, 0], expected[0, 0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(scores[1], expected[1], rtol=1e-4, atol=1e-4)


def test_forward_continues_a_cache(arch, open_model):
    """A chunk after a KV cache, given the cache's ``<image>`` count, gives
    the logits of the whole text run at once, wherever the text is split."""
    model, head = open_model, open_model.head
    text = tokenize(model, PROMPTS, 'left')
    ids, mask = text['input_ids'], text['attention_mask']
    visual, num_media = media(), torch.tensor(NUM_MEDIA)
    real = mask.bool()

    def continued(split, past_media=None):
        """The logits of ``ids[:, split:]`` after a cache of the rest."""
        prefix = head(
            ids[:, :split], mask[:, :split], visual, num_media, use_cache=True)
        if past_media is None:
            past_media = (ids[:, :split] == model.tokens.media).sum(-1)
        chunk = head(
            ids[:, split:],
            mask,
            visual,
            num_media,
            past_key_values=prefix[head.cache_name],
            past_media=past_media,
            use_cache=True)
        return torch.cat((prefix.logits, chunk.logits), dim=1)

    with torch.no_grad():
        full = head(ids, mask, visual, num_media).logits
        # images in the cache, in the chunk or in both, chunks shorter and
        # longer than the cache
        for split in range(1, ids.shape[1]):
            # Not the same computation: a cached call reduces over other
            # shapes than the uncached one and may round differently. The
            # fp32 logits reach ~20 here (the wide init); they agreed to
            # 1.3e-4 where this was written (Gemma, a chunk of one token),
            # and a token seeing the wrong image moves them by O(1) (the
            # control below).
            torch.testing.assert_close(
                continued(split)[real],
                full[real],
                rtol=0,
                atol=1e-3,
                msg=lambda m, split=split: f'split at {split}: {m}')

        # control: the count matters (a chunk after sample 0's first image)
        split = int((ids[0] == model.tokens.media).nonzero()[0, 0]) + 3
        wrong = continued(split, torch.zeros(2, dtype=torch.long))
    assert (wrong[0, split:] - full[0, split:]).abs().amax() > 1e-1

    prefix = head(ids[:, :split], mask[:, :split], visual, use_cache=True)
    with pytest.raises(ValueError, match='past_media'):
        head(
            ids[:, split:],
            mask,
            visual,
            past_key_values=prefix[head.cache_name],
            use_cache=True)


def test_padded_media_slots_are_never_seen(build_flamingo):
    """Sample 1 has one image; an extra ``<image>`` keeps showing it."""
    model = build_flamingo('llama', gates=1.0)
    texts = [PROMPTS[0], '<image>a cat<|endofchunk|><image>a dog']
    text = tokenize(model, texts, 'right')
    visual = media()
    changed = visual.clone()
    changed[1, 1] = media(1, 1, seed=3)[0, 0]  # sample 1's padding slot
    with torch.no_grad():
        logits = model.head(text['input_ids'], text['attention_mask'], visual,
                            torch.tensor([2, 1])).logits
        same = model.head(text['input_ids'], text['attention_mask'], changed,
                          torch.tensor([2, 1])).logits
        # control: were it a real image, it would be seen
        seen = model.head(text['input_ids'], text['attention_mask'], changed,
                          torch.tensor([2, 2])).logits
    assert torch.equal(logits, same)
    assert not torch.allclose(logits[1], seen[1])


def test_logits_positions_select_rows(arch, open_model):
    """Logits asked for at some positions equal those rows of all logits."""
    model, head = open_model, open_model.head
    visual = media()
    text = tokenize(model, PROMPTS, 'right')
    keep = text['attention_mask'].bool().clone()
    keep[:, ::3] = False  # an irregular selection
    num_media = torch.tensor(NUM_MEDIA)
    with torch.no_grad():
        full = head(text['input_ids'], text['attention_mask'], visual,
                    num_media).logits
        some = head(
            text['input_ids'],
            text['attention_mask'],
            visual,
            num_media,
            logits_positions=keep).logits
    assert some.shape == (1, int(keep.sum()), full.shape[-1])
    # the output layer runs on (1, N, D) instead of (B, S, D): another
    # matmul shape, which may round differently; fp32 logits up to ~15 here
    # (equal where this was written)
    torch.testing.assert_close(some[0], full[keep], rtol=1e-5, atol=1e-5)
    # control: the selection is not the identity
    assert not torch.equal(keep, text['attention_mask'].bool())


@pytest.mark.parametrize('only_last', [True, False])
def test_continuations_keep_only_the_media_they_can_see(
        build_flamingo, monkeypatch, only_last):
    """After a prompt, cached calls reuse its projected keys and values:
    from the earliest image that any sample's last prompt token sees on
    when a token sees only the most recent image (earlier ones are neither
    kept nor projected again), all of them otherwise. Either way cached
    generation equals uncached."""
    model = build_flamingo(
        'llama', gates=1.0, only_attend_last_media=only_last)
    head = model.head
    keys_per_call = []  # the number of visual keys each LM call attends to
    projected = []  # media projected by each layer
    media_kv, project = head._media_kv, GatedCrossAttentionBlock.project_media

    def record_kv(name, visual):
        kv = media_kv(name, visual)
        if name == str(head.xattn_layers[0]):
            keys_per_call.append(kv[0].shape[2])
        return kv

    def record_projection(block, media):
        projected.append(media.shape[1])
        return project(block, media)

    monkeypatch.setattr(head, '_media_kv', record_kv)
    monkeypatch.setattr(GatedCrossAttentionBlock, 'project_media',
                        record_projection)
    num_layers = len(head.xattn_layers)
    # two images each; then as PROMPTS: sample 1's last token sees image 1
    for prompts, num_media in (([PROMPTS[0]] * 2, [2,
                                                   2]), (PROMPTS, NUM_MEDIA)):
        keys_per_call.clear()
        projected.clear()
        visual = media()
        with torch.no_grad():
            cached, _ = generate(
                model, prompts, visual, num_media, use_cache=True)
        # the prompt's images, one layer at a time; then none again
        assert projected == [2] * num_layers
        later = NUM_LATENTS if only_last and num_media == [2, 2] \
            else 2 * NUM_LATENTS
        # the prompt's call, then one per new token (at least 5 more)
        assert keys_per_call[0] == 2 * NUM_LATENTS
        assert len(keys_per_call) >= 6
        assert set(keys_per_call[1:]) == {later}
        uncached, _ = generate(
            model, prompts, visual, num_media, use_cache=False)
        assert torch.equal(cached, uncached)
        # control: the generation depends on the last image
        changed = visual.clone()
        changed[0, 1] = media(1, 1, seed=5)[0, 0]
        with torch.no_grad():
            other, _ = generate(
                model, prompts, changed, num_media, use_cache=True)
        assert (other[0] != cached[0]).any()
