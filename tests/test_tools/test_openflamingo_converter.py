"""OpenFlamingo checkpoints -> mmflamingo: key mapping, checks and the CLI."""
import os.path as osp
import subprocess
import sys

import pytest
import torch

from mmflamingo.models.utils import load_flamingo_checkpoint
from mmflamingo.models.utils.openflamingo import (
    convert_openflamingo_state_dict, read_openflamingo_checkpoint)
from mmflamingo.testing.openflamingo import (build_openflamingo_pair,
                                             openflamingo_trainable_state_dict)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'model_converters',
                'openflamingo_to_mmflamingo.py')

# OpenFlamingo key -> mmflamingo key, as a LLaMA OpenFlamingo saves them
MAPPING = {
    'perceiver.latents': 'neck.latents',
    'perceiver.frame_embs': 'neck.frame_embs',
    'perceiver.layers.0.0.norm_media.weight':
    'neck.layers.0.attn.norm_media.weight',
    'perceiver.layers.0.0.norm_latents.bias':
    'neck.layers.0.attn.norm_latents.bias',
    'perceiver.layers.0.0.to_kv.weight': 'neck.layers.0.attn.to_kv.weight',
    'perceiver.layers.1.1.0.weight': 'neck.layers.1.ff.norm.weight',
    'perceiver.layers.1.1.0.bias': 'neck.layers.1.ff.norm.bias',
    'perceiver.layers.1.1.1.weight': 'neck.layers.1.ff.fc1.weight',
    'perceiver.layers.1.1.3.weight': 'neck.layers.1.ff.fc2.weight',
    'perceiver.norm.bias': 'neck.norm.bias',
    'lang_encoder.model.layers.1.gated_cross_attn_layer.attn_gate':
    'head.xattn_blocks.1.attn_gate',
    'lang_encoder.model.layers.1.gated_cross_attn_layer.ff_gate':
    'head.xattn_blocks.1.ff_gate',
    'lang_encoder.model.layers.1.gated_cross_attn_layer.attn.to_q.weight':
    'head.xattn_blocks.1.attn.to_q.weight',
    'lang_encoder.model.layers.1.gated_cross_attn_layer.attn.norm.bias':
    'head.xattn_blocks.1.attn.norm.bias',
    'lang_encoder.model.layers.1.gated_cross_attn_layer.ff.0.weight':
    'head.xattn_blocks.1.ff.norm.weight',
    'lang_encoder.model.layers.1.gated_cross_attn_layer.ff.1.weight':
    'head.xattn_blocks.1.ff.fc1.weight',
    'lang_encoder.model.layers.1.gated_cross_attn_layer.ff.3.weight':
    'head.xattn_blocks.1.ff.fc2.weight',
    'lang_encoder.model.layers.0.decoder_layer.self_attn.q_proj.weight':
    'head.lm.model.layers.0.self_attn.q_proj.weight',
    'lang_encoder.model.embed_tokens.weight':
    'head.lm.model.embed_tokens.weight',
    'lang_encoder.model.norm.weight': 'head.lm.model.norm.weight',
    'lang_encoder.lm_head.weight': 'head.lm.lm_head.weight',
}
# the copies OpenFlamingo also keeps, of the keys above
COPIES = {
    'lang_encoder.gated_cross_attn_layers.1.ff.3.weight':
    'lang_encoder.model.layers.1.gated_cross_attn_layer.ff.3.weight',
    'lang_encoder.gated_cross_attn_layers.1.attn_gate':
    'lang_encoder.model.layers.1.gated_cross_attn_layer.attn_gate',
    'lang_encoder.old_decoder_blocks.0.self_attn.q_proj.weight':
    'lang_encoder.model.layers.0.decoder_layer.self_attn.q_proj.weight',
}
VISION = ['vision_encoder.conv1.weight', 'vision_encoder.ln_post.bias']


def openflamingo_state_dict(copies=False, vision=False):
    generator = torch.Generator().manual_seed(0)
    state_dict = {key: torch.randn(4, generator=generator) for key in MAPPING}
    if copies:
        state_dict.update({
            copy: state_dict[key].clone()
            for copy, key in COPIES.items()
        })
    if vision:
        state_dict.update({key: torch.zeros(2) for key in VISION})
    return state_dict


def assert_converted(converted, source):
    assert set(converted) == set(MAPPING.values())
    for of_key, mm_key in MAPPING.items():
        assert torch.equal(converted[mm_key], source[of_key])


def test_mapping():
    source = openflamingo_state_dict()
    assert_converted(convert_openflamingo_state_dict(source), source)


def test_module_prefix():
    source = openflamingo_state_dict(copies=True, vision=True)
    prefixed = {f'module.{key}': value for key, value in source.items()}
    assert_converted(convert_openflamingo_state_dict(prefixed), source)


def test_duplicates_merged():
    source = openflamingo_state_dict(copies=True)
    assert_converted(convert_openflamingo_state_dict(source), source)


@pytest.mark.parametrize('copy', sorted(COPIES))
def test_conflicting_duplicates_raise(copy):
    source = openflamingo_state_dict(copies=True)
    source[copy] = source[copy] + 1
    with pytest.raises(ValueError, match='different values') as error:
        convert_openflamingo_state_dict(source)
    assert copy in str(error.value) and COPIES[copy] in str(error.value)


def test_vision_encoder_dropped():
    source = openflamingo_state_dict(vision=True)
    converted = convert_openflamingo_state_dict(source)
    assert not any('vision' in key for key in converted)
    assert_converted(converted, source)


def test_media_time_embs_unsupported():
    source = openflamingo_state_dict()
    source['perceiver.media_time_embs'] = torch.zeros(2, 1, 4)
    with pytest.raises(ValueError, match='media_time_embs'):
        convert_openflamingo_state_dict(source)


@pytest.mark.parametrize('key', [
    'text_encoder.weight', 'perceiver.layers.0.2.weight',
    'perceiver.layers.0.1.2.weight'
])
def test_unknown_keys_raise(key):
    source = openflamingo_state_dict()
    source[key] = torch.zeros(1)
    with pytest.raises(KeyError, match=key.replace('.', r'\.')):
        convert_openflamingo_state_dict(source)


def test_old_decoder_blocks_alone_need_the_layers_path():
    source = {
        'lang_encoder.old_decoder_blocks.3.mlp.up_proj.weight': torch.zeros(1)
    }
    with pytest.raises(ValueError, match='decoder_layers_attr'):
        convert_openflamingo_state_dict(source)
    converted = convert_openflamingo_state_dict(
        source, decoder_layers_attr='model.layers')
    assert list(converted) == ['head.lm.model.layers.3.mlp.up_proj.weight']


def test_read_training_checkpoint(tmp_path):
    source = openflamingo_state_dict()
    path = str(tmp_path / 'checkpoint_0.pt')
    torch.save(
        dict(
            epoch=0,
            model_state_dict=source,
            optimizer_state_dict=dict(state={}, param_groups=[dict(lr=1.)])),
        path)
    read = read_openflamingo_checkpoint(path)
    assert read.keys() == source.keys()
    with pytest.raises(FileNotFoundError, match='missing.pt'):
        read_openflamingo_checkpoint(str(tmp_path / 'missing.pt'))


# ----------------------------------------------------- real OpenFlamingo
@pytest.fixture(scope='module', params=['llama', 'gpt_neox', 'opt', 'mpt'])
def pair_dir(request, tmp_path_factory):
    """An OpenFlamingo / mmflamingo pair and the directory of its files."""
    tmpdir = str(tmp_path_factory.mktemp(f'pair_{request.param}'))
    return build_openflamingo_pair(request.param, tmpdir), tmpdir


def test_converted_checkpoint_loads_cleanly(pair_dir):
    (_, mm_model, _), tmpdir = pair_dir
    missing, unexpected = load_flamingo_checkpoint(
        mm_model, osp.join(tmpdir, 'mmflamingo_checkpoint.pth'))
    assert missing == [] and unexpected == []


def test_unfiltered_state_dict(pair_dir):
    """The whole model's state dict: vision encoder, frozen layers, copies.
    """
    (of_model, mm_model, _), _ = pair_dir
    full = of_model.state_dict()
    assert any('old_decoder_blocks' in key for key in full)
    converted = convert_openflamingo_state_dict(full)
    result = mm_model.load_state_dict(converted, strict=False)
    assert result.unexpected_keys == []
    assert all(key.startswith('backbone.') for key in result.missing_keys)
    mm_state = mm_model.state_dict()
    trained = convert_openflamingo_state_dict(
        openflamingo_trainable_state_dict(of_model))
    for key, value in trained.items():
        if key not in mm_state:  # a tied output head repeats the embedding
            continue
        ours = mm_state[key]
        if ours.shape != value.shape:  # a full table, split in base and new
            prefix, name = key.rsplit('.', 1)
            ours = torch.cat((ours, mm_state[f'{prefix}.new_{name}']))
        assert torch.equal(ours, value), key


def test_untied_llama_output_rows_are_lost(tmp_path):
    """Why the LLaMA pairs are tied: OpenFlamingo drops an untied lm_head."""
    _, mm_model, _ = build_openflamingo_pair(
        'llama', str(tmp_path), lm_overrides=dict(tie_word_embeddings=False))
    missing, unexpected = load_flamingo_checkpoint(
        mm_model, str(tmp_path / 'mmflamingo_checkpoint.pth'))
    assert missing == ['head.lm.lm_head.new_weight'] and unexpected == []


@pytest.mark.parametrize('pair_dir', ['gpt_neox'], indirect=True)
def test_cli(pair_dir, tmp_path):
    (of_model, mm_model, _), tmpdir = pair_dir
    # a DDP training checkpoint: `module.` prefix under model_state_dict
    src = str(tmp_path / 'checkpoint_0.pt')
    state_dict = openflamingo_trainable_state_dict(of_model)
    torch.save(
        dict(
            epoch=0,
            model_state_dict={
                f'module.{k}': v
                for k, v in state_dict.items()
            }), src)
    dst = str(tmp_path / 'out' / 'converted.pth')
    result = subprocess.run([sys.executable, TOOL, src, dst],
                            cwd=ROOT,
                            capture_output=True,
                            text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert 'perceiver (neck)' in result.stdout
    assert 'gated cross-attention (head.xattn_blocks): ' in result.stdout

    converted = torch.load(dst, weights_only=True)
    expected = torch.load(
        osp.join(tmpdir, 'mmflamingo_checkpoint.pth'), weights_only=True)
    assert converted.keys() == expected.keys()
    assert all(torch.equal(converted[k], expected[k]) for k in expected)
    assert load_flamingo_checkpoint(mm_model, dst) == ([], [])
