"""MosaicGPT directories (OpenFlamingo-3B's MPT-1B) build as transformers' MPT.

The reference, :mod:`mosaic_gpt_reference` beside this file, re-states the
published MosaicGPT forward; a tiny MosaicGPT saved as a directory must give
the same logits once built by :func:`build_causal_lm`, and the OpenFlamingo-3B
recipe must build end to end on tiny stand-ins of its pretrained parts and
compute what OpenFlamingo (the installed open_flamingo) computes on them.
"""
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmpretrain.structures import DataSample
from mosaic_gpt_reference import (MosaicGPTReference, mosaic_gpt_config,
                                  save_mosaic_gpt_dir)
from safetensors.torch import save_file
from torch import nn
from transformers import (AutoModelForCausalLM, AutoTokenizer,
                          CLIPVisionConfig, CLIPVisionModel, MptForCausalLM)
from transformers.modeling_outputs import CausalLMOutputWithPast

from mmflamingo.compat import lm_cache_name
from mmflamingo.models.utils import build_causal_lm
from mmflamingo.models.utils.mosaic_gpt import (QKLayerNormWqkv,
                                                convert_mosaic_gpt_state_dict,
                                                mosaic_gpt_to_mpt_config)
from mmflamingo.models.utils.openflamingo import (
    convert_openflamingo_state_dict, read_openflamingo_checkpoint)
from mmflamingo.registry import MODELS
from mmflamingo.testing import generation_margin
from mmflamingo.testing.openflamingo import (build_openflamingo,
                                             randomise_openflamingo,
                                             save_openflamingo_checkpoint)

ROOT = osp.dirname(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
CONFIG_3B = osp.join(ROOT, 'configs', 'openflamingo',
                     'flamingo_vitl14-mpt1b_openflamingo-3b.py')

# MPT-1B's architecture (ALiBi, QK LayerNorm, no biases, MLP ratio 4) at
# width 64
TINY = dict(
    d_model=64,
    n_heads=4,
    n_layers=2,
    max_seq_len=128,
    vocab_size=512,
    alibi=True,
    attn_qk_ln=True,
    no_bias=True)
# Two implementations of one function, in the same shapes: equal to the last
# bit where this was written (1 and 2 threads). Another CPU may order their
# reductions differently; the fp32 logits reach ~20 (wide init), so allow
# 1e-3, 100 times below what the controls below move them by (> 0.1).
ATOL = 1e-3


def reference(seed=0, **overrides) -> MosaicGPTReference:
    """A tiny MosaicGPT with wide random weights (norm weights around 1),
    so that every parameter, each LayerNorm's included, shows in the
    logits."""
    torch.manual_seed(seed)
    model = MosaicGPTReference(mosaic_gpt_config(**{**TINY, **overrides}))
    with torch.no_grad():
        for name, param in model.named_parameters():
            is_norm = param.dim() == 1 and name.endswith('weight')
            param.normal_(1.0 if is_norm else 0.0, 0.5)
    return model.eval()


def text(vocab_size=512, seed=0):
    """``(2, 12)`` ids and mask; row 1 left-padded by 4."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (2, 12), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, :4] = 0
    return ids, mask


def assert_same_logits(mapped, ref, ids, mask):
    real = mask.bool()
    with torch.no_grad():
        logits = mapped(input_ids=ids, attention_mask=mask).logits
        expected = ref(ids, mask)
    torch.testing.assert_close(logits[real], expected[real], rtol=0, atol=ATOL)
    return logits


@pytest.mark.parametrize(
    'weights',
    ['pytorch_model.bin', 'model.safetensors', 'model.safetensors.index.json'],
    ids=['bin', 'safetensors', 'sharded'])
def test_mosaic_gpt_dir_builds_as_mpt(weights, tmp_path):
    ref = reference()
    path = save_mosaic_gpt_dir(ref, str(tmp_path / 'mpt'), weights)
    # no trust_remote_code: nothing from the directory is run
    lm = build_causal_lm(pretrained=path)
    assert type(lm) is MptForCausalLM
    assert not lm.training
    # generate caches by default, although MosaicGPT's config says not to
    assert not ref.cfg['use_cache'] and lm.generation_config.use_cache
    blocks = lm.transformer.blocks
    assert len(blocks) == 2
    assert all(isinstance(b.attn.Wqkv, QKLayerNormWqkv) for b in blocks)
    # the head extends these
    assert lm.get_input_embeddings() is lm.transformer.wte
    assert lm.get_output_embeddings().weight is lm.transformer.wte.weight
    ids, mask = text()
    logits = assert_same_logits(lm, ref, ids, mask)

    # control: MPT without the QK LayerNorms computes something else
    plain = AutoModelForCausalLM.from_config(lm.config).eval()
    state = {k: v for k, v in lm.state_dict().items() if '_ln.' not in k}
    plain.load_state_dict(state)
    with torch.no_grad():
        other = plain(input_ids=ids, attention_mask=mask).logits
    assert (other - logits)[mask.bool()].abs().amax() > 1e-1


@pytest.mark.parametrize(
    'variant', [
        dict(attn_clip_qkv=0.3),
        dict(attn_qk_ln=False),
        dict(attn_qk_ln=False, attn_clip_qkv=0.3),
        dict(softmax_scale=0.1, n_heads=8),
        dict(low_precision_layernorm=False, logit_scale=1.0),
    ],
    ids=['clip', 'no-qk-ln', 'no-qk-ln-clip', 'scale-8-heads', 'plain-ln'])
def test_config_variants(variant, tmp_path):
    ref = reference(seed=1, **variant)
    path = save_mosaic_gpt_dir(ref, str(tmp_path / 'mpt'))
    lm = build_causal_lm(pretrained=path)
    assert isinstance(lm.transformer.blocks[0].attn.Wqkv,
                      QKLayerNormWqkv) == ref.cfg['attn_qk_ln']
    ids, mask = text(seed=1)
    assert_same_logits(lm, ref, ids, mask)
    if variant.get('attn_clip_qkv'):
        # control: the clip binds on these weights
        unclipped = reference(seed=1, **{**variant, 'attn_clip_qkv': None})
        with torch.no_grad():
            diff = unclipped(ids, mask) - ref(ids, mask)
        assert diff[mask.bool()].abs().amax() > 1e-1


def test_cache_continues_the_text(tmp_path):
    """Keys normalised once, in the cache, serve later tokens."""
    ref = reference()
    lm = build_causal_lm(
        pretrained=save_mosaic_gpt_dir(ref, str(tmp_path / 'mpt')))
    ids, mask = text()
    with torch.no_grad():
        full = lm(input_ids=ids, attention_mask=mask).logits
        prefix = lm(
            input_ids=ids[:, :7], attention_mask=mask[:, :7], use_cache=True)
        cache = lm_cache_name(lm)  # past_key_values before transformers 5
        chunk = lm(
            input_ids=ids[:, 7:],
            attention_mask=mask,
            use_cache=True,
            **{cache: prefix[cache]}).logits
    real = mask.bool()
    # other shapes than the uncached call: may round differently
    torch.testing.assert_close(
        torch.cat((prefix.logits, chunk), dim=1)[real],
        full[real],
        rtol=0,
        atol=1e-3)


def test_bfloat16(tmp_path):
    ref = reference()
    lm = build_causal_lm(
        pretrained=save_mosaic_gpt_dir(ref, str(tmp_path / 'mpt')),
        torch_dtype='bfloat16')
    assert {p.dtype for p in lm.parameters()} == {torch.bfloat16}
    ids, mask = text()
    with torch.no_grad():
        logits = lm(input_ids=ids, attention_mask=mask).logits.float()
        expected = ref(ids, mask)
    real = mask.bool()
    # bf16 keeps 8 bits: the logits stay within a few percent of their range
    assert (logits - expected)[real].abs().amax() < 0.1 * expected.abs().max()


@pytest.mark.parametrize(
    'overrides, key', [
        (dict(alibi=False), 'alibi'),
        (dict(no_bias=False), 'no_bias'),
        (dict(mlp_ratio=2), 'mlp_ratio'),
        (dict(logit_scale=0.5), 'logit_scale'),
        (dict(prefix_lm=True), 'prefix_lm'),
        (dict(norm_type='rmsnorm'), 'norm_type'),
        (dict(alibi_bias_max=4), 'alibi_bias_max'),
        (dict(n_heads=6, d_model=48), 'n_heads'),
    ],
    ids=lambda v: v if isinstance(v, str) else None)
def test_refuses_what_mpt_computes_otherwise(overrides, key):
    config = mosaic_gpt_config(**{**TINY, **overrides})
    with pytest.raises(ValueError, match=f'{key}='):
        mosaic_gpt_to_mpt_config(config, 'mpt/config.json')


def test_refuses_unknown_parameters(tmp_path):
    state = reference().state_dict()
    with pytest.raises(KeyError, match='attn.Wqkv.bias'):
        convert_mosaic_gpt_state_dict(
            {
                **state, 'transformer.blocks.0.attn.Wqkv.bias':
                torch.zeros(192)
            }, 'mpt')
    # a directory whose weights lack most of the model's, then none
    path = save_mosaic_gpt_dir(reference(), str(tmp_path / 'mpt'),
                               'model.safetensors')
    save_file({'transformer.wte.weight': state['transformer.wte.weight']},
              osp.join(path, 'model.safetensors'))
    with pytest.raises(KeyError, match='do not fit its config'):
        build_causal_lm(pretrained=path)
    (tmp_path / 'mpt' / 'model.safetensors').unlink()
    with pytest.raises(FileNotFoundError, match='no model.safetensors'):
        build_causal_lm(pretrained=path)


# ------------------------------------------- the OpenFlamingo-3B recipe
@pytest.fixture(scope='module')
def parts_3b(tmp_path_factory, tokenizer_dir):
    """Tiny stand-ins of the 3B recipe's pretrained directories: the
    MosaicGPT (512 rows, more than the tokenizer has, as MPT-1B's 50432),
    a CLIP and the test tokenizer; and the recipe's model config pointing
    at them, without a checkpoint."""
    tmp_path = tmp_path_factory.mktemp('openflamingo_3b')
    ref = reference()
    lm_dir = save_mosaic_gpt_dir(ref, str(tmp_path / 'mpt'))
    torch.manual_seed(0)
    clip = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8)).eval()
    clip.save_pretrained(str(tmp_path / 'clip'))
    cfg = Config.fromfile(CONFIG_3B).model.to_dict()
    cfg['backbone']['pretrained'] = str(tmp_path / 'clip')
    cfg['tokenizer']['pretrained'] = tokenizer_dir
    cfg['head']['lm']['pretrained'] = lm_dir
    assert cfg.pop('checkpoint').endswith('.pth')
    return SimpleNamespace(
        ref=ref, clip=clip, tokenizer_dir=tokenizer_dir, cfg=cfg, tmp=tmp_path)


def images_3b(seed=0):
    """``(2, 2, 1, 3, 32, 32)`` pixels; sample 1 has one image."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(2, 2, 1, 3, 32, 32, generator=generator)
    images[1, 1] = 0
    return images


def test_openflamingo_3b_config_builds(parts_3b, set_gates):
    """The 3B recipe as written builds on the stand-ins and a checkpoint
    saved from it, gives MosaicGPT's logits with closed gates and generates
    the same with and without its KV cache."""
    # "trained": gates open, every trained tensor moved from its init
    torch.manual_seed(0)
    trained = MODELS.build(parts_3b.cfg)
    with torch.no_grad():
        for param in trained.parameters():
            if param.requires_grad:
                param.add_(0.02 * torch.randn_like(param))
    set_gates(trained, 1.0)
    checkpoint = str(parts_3b.tmp / 'trained.pth')
    torch.save(trained.state_dict(), checkpoint)

    model = MODELS.build({**parts_3b.cfg, 'checkpoint': checkpoint}).eval()
    head, lm = model.head, model.head.lm
    assert type(lm) is MptForCausalLM
    assert head.xattn_layers == [0, 1]  # every layer, as OpenFlamingo-3B
    assert len(model.neck.layers) == 6
    for key, value in trained.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key

    # gates closed: the MosaicGPT's own logits
    num_base = model.tokens.num_base
    texts = ['a photo of a red circle.', 'the quick brown fox jumps over']
    encoded = model.tokenizer(
        texts, padding='longest', padding_side='left', return_tensors='pt')
    ids, mask = encoded['input_ids'], encoded['attention_mask']
    assert not mask.all() and ids[mask.bool()].max() < num_base
    with torch.no_grad():
        media = model.extract_media(images_3b())
    set_gates(model, 0.0)
    with torch.no_grad():
        logits = head(ids, mask, media).logits[..., :num_base]
        expected = parts_3b.ref(ids, mask)[..., :num_base]
    real = mask.bool()
    torch.testing.assert_close(logits[real], expected[real], rtol=0, atol=ATOL)

    # gates open: generation with the KV cache equals generation without
    set_gates(model, 1.0)
    prompts = [f'<image>{texts[0]}', f'<image>{texts[1]}']
    prompt = model.tokenizer(
        prompts, padding='longest', padding_side='left', return_tensors='pt')

    def generate(visual, use_cache):
        out = head.generate(
            prompt['input_ids'],
            prompt['attention_mask'],
            visual,
            max_new_tokens=5,
            min_new_tokens=5,
            use_cache=use_cache,
            output_scores=True,
            return_dict_in_generate=True)
        return out.sequences[:, prompt['input_ids'].shape[1]:], out.scores

    cached, scores = generate(media, True)
    uncached, _ = generate(media, False)
    # generations in other shapes round differently: equal tokens are only
    # guaranteed away from ties (see the head's tests)
    assert generation_margin(scores) > 2e-3
    assert torch.equal(cached, uncached)
    # control: the images are seen (the first step's scores move; the
    # suppressed tokens score -inf either way)
    _, other = generate(media.flip(0), True)
    allowed = scores[0].isfinite()
    assert (other[0] - scores[0])[allowed].abs().amax() > 1e-2


class OpenFlamingoMosaicGPT(MosaicGPTReference):
    """The reference as OpenFlamingo's factory meets MosaicGPT: a
    ``config`` with ``d_model``, the embedding accessors the factory patches
    in for MPT-1B, ``PreTrainedModel``'s ``resize_token_embeddings`` (old
    rows kept, new rows drawn) and an output with ``logits``."""

    def __init__(self, cfg: dict) -> None:
        super().__init__(cfg)
        self.config = SimpleNamespace(d_model=cfg['d_model'])

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.wte

    def set_input_embeddings(self, embedding: nn.Embedding) -> None:
        self.transformer.wte = embedding

    def resize_token_embeddings(self, num: int) -> nn.Embedding:
        old = self.transformer.wte.weight
        new = nn.Embedding(num, old.shape[1])
        rows = min(num, old.shape[0])
        with torch.no_grad():
            new.weight[:rows] = old[:rows]
        self.set_input_embeddings(new)
        return new

    def forward(self, input_ids, attention_mask=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return CausalLMOutputWithPast(
            logits=super().forward(input_ids, attention_mask))


def test_openflamingo_3b_computes_what_openflamingo_computes(parts_3b):
    """NEEDS open_flamingo (as tests/test_models/
    test_openflamingo_equivalence.py). OpenFlamingo-3B as its factory builds
    it on the same MosaicGPT, its trained parts randomised, saved as
    OpenFlamingo saves and converted: the 3B recipe built from the MosaicGPT
    directory and that checkpoint gives OpenFlamingo's logits."""
    of_lm = OpenFlamingoMosaicGPT(parts_3b.ref.cfg)
    of_lm.load_state_dict(parts_3b.ref.state_dict())
    tokenizer = AutoTokenizer.from_pretrained(parts_3b.tokenizer_dir)
    of_model = build_openflamingo(of_lm, parts_3b.clip, tokenizer, 1,
                                  'transformer.blocks')
    randomise_openflamingo(of_model)
    of_checkpoint = save_openflamingo_checkpoint(
        of_model, str(parts_3b.tmp / 'checkpoint.pt'))
    checkpoint = str(parts_3b.tmp / 'openflamingo-3b_mmflamingo.pth')
    torch.save(
        convert_openflamingo_state_dict(
            read_openflamingo_checkpoint(of_checkpoint)), checkpoint)
    model = MODELS.build({**parts_3b.cfg, 'checkpoint': checkpoint}).eval()
    assert len(tokenizer) == len(model.tokenizer)

    # right padding: OpenFlamingo's forward passes no position ids
    texts = [
        '<image>a photo of a red circle.<|endofchunk|><image>a blue square',
        'Output: <image>a cat sitting on a mat.'
    ]
    samples = []
    for text, num in zip(texts, (2, 1)):
        samples.append(DataSample(metainfo=dict(text=text, num_media=num)))
    text = tokenizer(
        texts, padding='longest', padding_side='right', return_tensors='pt')
    real = text['attention_mask'].bool()

    def both(images):
        with torch.no_grad():
            of_logits = of_model(images, text['input_ids'],
                                 text['attention_mask']).logits
            logits = model(images, samples, mode='tensor')
        return of_logits[real], logits[real]

    images = images_3b()
    of_logits, logits = both(images)
    # as for the other LMs' OpenFlamingo equivalence: other sums in other
    # orders (1.5e-5 here on logits up to 17); a wrong image or mask moves
    # them by > 1e-2
    torch.testing.assert_close(logits, of_logits, rtol=0, atol=ATOL)
    changed = images.clone()
    changed[0, 1] = images_3b(seed=1)[0, 1]
    of_changed, changed_logits = both(changed)
    assert (of_changed - of_logits).abs().amax() > 1e-2
    torch.testing.assert_close(changed_logits, of_changed, rtol=0, atol=ATOL)
