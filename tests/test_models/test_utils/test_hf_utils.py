"""State dicts with the parameter names transformers 4 gave (our checkpoints
written with it, OpenFlamingo's) load under any transformers."""
import torch

from mmflamingo.compat import legacy_key_renamer


def _legacy_names(model, state_dict):
    """``state_dict`` of ``model`` by transformers 4's names."""
    parts = {
        'head.lm.': model.head.lm,
        'backbone.encoder.': model.backbone.encoder
    }
    renamed = {}
    for key, value in state_dict.items():
        for prefix, part in parts.items():
            to_legacy = legacy_key_renamer(part, reverse=True)
            if key.startswith(prefix) and to_legacy is not None:
                key = prefix + to_legacy(key[len(prefix):])
        renamed[key] = value
    return renamed


def test_transformers4_parameter_names_load(build_flamingo):
    # GPT-NeoX's untied output head was embed_out, the CLIP tower's
    # parameters were under vision_model.
    cfg = dict(model_cfg=dict(save_frozen=True))
    source = build_flamingo('gpt_neox', seed=0, **cfg)
    state = _legacy_names(source, source.state_dict())
    assert any(k.startswith('head.lm.embed_out.') for k in state)
    assert any(k.startswith('backbone.encoder.vision_model.') for k in state)

    target = build_flamingo('gpt_neox', seed=1, **cfg)
    result = target.load_state_dict(state)
    assert result.missing_keys == [] and result.unexpected_keys == []
    loaded = target.state_dict()
    assert loaded.keys() == source.state_dict().keys()
    for key, value in source.state_dict().items():
        assert torch.equal(loaded[key], value), key
