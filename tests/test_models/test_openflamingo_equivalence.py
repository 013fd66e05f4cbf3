"""Our Flamingo computes what OpenFlamingo computes, from its checkpoint.

For each LM family, a tiny OpenFlamingo model with open gates and random
trained weights is saved as OpenFlamingo saves checkpoints, converted, and
loaded into our model (:func:`build_openflamingo_pair`). Both then see the
same normalised pixels and token ids.
"""
import pytest
import torch

from mmflamingo.testing import generation_margin
from mmflamingo.testing.openflamingo import (build_openflamingo_pair,
                                             openflamingo_rank_classifications)

# (LM, cross_attn_every_n_layers, layers): LLaMA (RoPE, tied here),
# GPT-NeoX (untied embed_out; every 2nd layer as OpenFlamingo-4B), OPT
# (learned positions), MPT (ALiBi; every 4th layer as OpenFlamingo-9B)
LM_CASES = [('llama', 1, 2), ('gpt_neox', 2, 4), ('opt', 1, 2), ('mpt', 4, 4)]
IMAGE_SIZE = 32

# 3 and 2 images; the second prompt starts with text that sees no image
FORWARD_TEXTS = [
    '<image>a photo of a red circle.<|endofchunk|><image>a blue square '
    'next to a green triangle.<|endofchunk|><image>two yellow stars',
    'Output: <image>a cat sitting on a mat.<|endofchunk|><image>a man '
    'riding a bicycle',
]
PROMPTS = [
    '<image>a photo of a red circle.<|endofchunk|><image>a blue square.'
    '<|endofchunk|><image>a photo of',
    '<image>Question: how many shapes are there? Short answer: three'
    '<|endofchunk|><image>Question: what colour is the shape? Short answer:',
]
NUM_MEDIA = [3, 2]
# Two implementations of one function: OpenFlamingo repeats and masks the
# media its own way, so the sums run in other orders and shapes and round
# differently. The fp32 logits reach ~9 (an ulp is ~1e-6) and agreed to
# 2e-6 where this was written; a wrong image or mask moves them by > 1e-2.
ATOL = 1e-4
# Images of test_generations_match, per LM: transformers 4 and 5 draw other
# tiny LMs from one seed; with these, no choice of either is near a tie
# (see generation_margin there). With seed 1, OPT's beam search under
# transformers 5.25 had a margin of 9e-4.
GENERATION_SEEDS = dict(llama=1, gpt_neox=1, opt=4, mpt=1)


@pytest.fixture(
    scope='module', params=LM_CASES, ids=[case[0] for case in LM_CASES])
def pair(request, tmp_path_factory):
    lm_type, every_n, num_layers = request.param
    tmpdir = tmp_path_factory.mktemp(f'openflamingo_{lm_type}')
    return build_openflamingo_pair(
        lm_type,
        str(tmpdir),
        num_layers=num_layers,
        cross_attn_every_n_layers=every_n,
        image_size=IMAGE_SIZE)


def make_images(seed=0):
    """``(2, 3, 1, C, H, W)`` normalised pixels; sample 1's third is padding.
    """
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(
        2, 3, 1, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    images[1, 2] = 0
    return images


def test_open_clip_patch_tokens_are_before_ln_post():
    """OpenFlamingo's vision tokens (``visual(images)[1]``) skip the final
    LayerNorm with the open_clip it was trained with (< 2.23, pinned in
    requirements/tests.txt); ``OpenCLIPStyleVisual`` and our encoders'
    default ``final_norm=False`` follow it."""
    transformer = pytest.importorskip('open_clip.transformer')
    torch.manual_seed(0)
    vit = transformer.VisionTransformer(
        image_size=IMAGE_SIZE,
        patch_size=8,
        width=32,
        layers=1,
        heads=2,
        mlp_ratio=2.0,
        output_dim=16,
        output_tokens=True).eval()
    images = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        pooled, tokens = vit(images)
        vit.ln_post.weight.mul_(3.0)
        vit.ln_post.bias.add_(1.0)
        other_pooled, other_tokens = vit(images)
    assert tokens.shape == (2, (IMAGE_SIZE // 8)**2, 32)
    assert torch.equal(tokens, other_tokens)
    # control: ln_post is in use, for the pooled embedding
    assert not torch.allclose(pooled, other_pooled)


def test_structure_matches(pair):
    of_model, mm_model, tokenizer = pair
    of_blocks = of_model.lang_encoder.gated_cross_attn_layers
    of_layers = [
        str(i) for i, block in enumerate(of_blocks) if block is not None
    ]
    assert list(mm_model.head.xattn_blocks) == of_layers
    tokens = mm_model.tokens
    assert tokenizer.convert_tokens_to_ids(
        ['<image>', '<|endofchunk|>']) == [tokens.media, tokens.end_of_chunk]
    assert tokenizer.pad_token_id == tokens.pad
    assert len(tokenizer) == len(mm_model.tokenizer)


def test_logits_match(pair, make_samples):
    of_model, mm_model, tokenizer = pair
    # right padding: OpenFlamingo's forward passes no position_ids
    text = tokenizer(
        FORWARD_TEXTS,
        padding='longest',
        padding_side='right',
        return_tensors='pt')
    real = text['attention_mask'].bool()
    images = make_images()
    samples = make_samples(FORWARD_TEXTS, num_media=NUM_MEDIA)

    def both(images):
        with torch.no_grad():
            of_logits = of_model(images, text['input_ids'],
                                 text['attention_mask']).logits
            mm_logits = mm_model(images, samples, mode='tensor')
        return of_logits[real], mm_logits[real]

    of_logits, mm_logits = both(images)
    assert mm_logits.shape == of_logits.shape
    torch.testing.assert_close(mm_logits, of_logits, rtol=0, atol=ATOL)

    # the comparison means something: the second image matters
    changed = images.clone()
    changed[0, 1] = torch.randn(changed[0, 1].shape)
    of_changed, mm_changed = both(changed)
    assert (of_changed - of_logits).abs().max() > 1e-2
    torch.testing.assert_close(mm_changed, of_changed, rtol=0, atol=ATOL)


def mm_generate(mm_model, prompt, images, **kwargs):
    with torch.no_grad():
        return mm_model.head.generate(
            prompt['input_ids'],
            prompt['attention_mask'],
            mm_model.extract_media(images),
            num_media=torch.tensor(NUM_MEDIA),
            **kwargs)


@pytest.mark.parametrize('num_beams', [1, 3])
def test_generations_match(pair, num_beams, make_samples):
    of_model, mm_model, tokenizer = pair
    prompt = tokenizer(
        PROMPTS, padding='longest', padding_side='left', return_tensors='pt')
    assert not prompt['attention_mask'].all(), 'the batch must be padded'
    images = make_images(
        seed=GENERATION_SEEDS[mm_model.head.lm.config.model_type])
    # a fixed length (no beam ends early), so that generation_margin covers
    # every choice
    length = dict(max_new_tokens=8, min_new_tokens=8)
    kwargs = dict(
        num_beams=num_beams,
        output_scores=True,
        return_dict_in_generate=True,
        **length)
    with torch.no_grad():
        # ours never generates <image>: it would have no image to show
        of_out = of_model.generate(
            images,
            prompt['input_ids'],
            prompt['attention_mask'],
            pad_token_id=tokenizer.pad_token_id,
            suppress_tokens=[tokenizer.convert_tokens_to_ids('<image>')],
            **kwargs)
    mm_out = mm_generate(mm_model, prompt, images, **kwargs)
    prompt_len = prompt['input_ids'].shape[1]
    new_tokens = of_out.sequences[:, prompt_len:]
    assert new_tokens.shape[1] > 0
    # the same tokens on any CPU: with step scores within ATOL, a beam's sum
    # of 8 is within 8 * ATOL, and only a choice closer than twice that to
    # its runner-up could flip (the closest was 2.3e-3 where this was
    # written)
    assert generation_margin(of_out.scores, num_beams) > 2 * 8 * ATOL
    assert mm_out.sequences[:, prompt_len:].tolist() == new_tokens.tolist()
    # every step's scores, not only the tokens they chose
    torch.testing.assert_close(
        torch.stack(mm_out.scores),
        torch.stack(of_out.scores),
        rtol=0,
        atol=ATOL)

    # the algorithm's entry tokenizes, generates and decodes the same way
    samples = mm_model.predict(
        images,
        make_samples(PROMPTS, num_media=NUM_MEDIA),
        num_beams=num_beams,
        **length)
    of_texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    assert [s.pred_caption for s in samples] == [t.strip() for t in of_texts]


def test_decoding_sees_the_images(pair):
    """Scores after the first new token depend on the images, so comparing
    them with OpenFlamingo's tests the cached decoding steps too."""
    _, mm_model, tokenizer = pair
    prompt = tokenizer(
        PROMPTS, padding='longest', padding_side='left', return_tensors='pt')
    kwargs = dict(
        max_new_tokens=4, output_scores=True, return_dict_in_generate=True)
    first, second = (
        mm_generate(mm_model, prompt, make_images(seed), **kwargs).scores
        for seed in (1, 2))
    steps = min(len(first), len(second))
    assert steps > 1
    first, second = torch.stack(first[1:steps]), torch.stack(second[1:steps])
    finite = first.isfinite() & second.isfinite()
    assert (first - second)[finite].abs().max() > 1e-2


@pytest.mark.parametrize('normalize_length', [True, False])
def test_rank_classifications_match(pair, normalize_length, make_samples):
    """Our ``score`` ranks class names as OpenFlamingo's classification
    does (mean per token, or summed) after left-padded prompts."""
    of_model, mm_model, tokenizer = pair
    names = ['red', ' three', 'a cat sitting on a mat', 'two yellow stars']
    images = make_images(seed=2)
    of_scores = openflamingo_rank_classifications(of_model, tokenizer, PROMPTS,
                                                  images, names,
                                                  normalize_length)
    samples = make_samples(
        PROMPTS, num_media=NUM_MEDIA, candidates=[names] * 2)
    scored = mm_model.score(
        images,
        samples,
        reduction='mean' if normalize_length else 'sum',
        chunk_size=3)
    mm_scores = torch.stack([s.pred_scores for s in scored])
    assert mm_scores.shape == of_scores.shape == (2, 4)
    # sums of up to 6 log-probs, each within ATOL
    torch.testing.assert_close(mm_scores, of_scores, rtol=0, atol=6 * ATOL)
    # control: the names are told apart
    assert (of_scores[:, 1:] - of_scores[:, :1]).abs().min() > 1e-2
