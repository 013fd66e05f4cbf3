import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.dataset import default_collate
from mmengine.optim import OptimWrapper
from mmpretrain.structures import DataSample

from mmflamingo.registry import DATASETS, MODELS
from mmflamingo.testing import tiny_flamingo_config

LM_CFG = dict(
    model_type='llama',
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1)


def build_model(tokenizer_dir, seed=0):
    torch.manual_seed(seed)
    return MODELS.build(
        dict(
            type='CausalLMPretrainer',
            config=LM_CFG,
            tokenizer=dict(pretrained=tokenizer_dir)))


def build_corpus(tokenizer_dir, path, **kwargs):
    return DATASETS.build(
        dict(
            type='TextCorpusDataset',
            ann_file=path,
            tokenizer=dict(pretrained=tokenizer_dir),
            **kwargs))


@pytest.fixture
def corpus_file(tmp_path):
    path = tmp_path / 'corpus.txt'
    path.write_text('a red circle.\n\n  the blue square is on the left.  \n')
    return str(path)


def test_corpus_chunks_and_pads_each_document(shapes_tokenizer, corpus_file):
    dataset = build_corpus(shapes_tokenizer, corpus_file, max_tokens=4)
    tokenizer = dataset.tokenizer
    first = tokenizer('a red circle.')['input_ids'] + [3]  # bos ... eos
    second = tokenizer('the blue square is on the left.')['input_ids'] + [3]
    assert first[0] == tokenizer.bos_token_id == 2
    expected = [first[i:i + 4] for i in range(0, len(first), 4)]
    expected += [second[i:i + 4] for i in range(0, len(second), 4)]
    assert len(dataset) == len(expected)
    for i, ids in enumerate(expected):
        sample = dataset[i]
        assert sample['inputs'].tolist() == ids + [1] * (4 - len(ids))
        assert sample['attention_mask'].tolist(
        ) == [1] * len(ids) + [0] * (4 - len(ids))
    assert dataset.get_data_info(len(expected) - 1)['source'].endswith(':3')


def test_packed_corpus_has_full_chunks_only(shapes_tokenizer, corpus_file):
    dataset = build_corpus(
        shapes_tokenizer, corpus_file, max_tokens=5, pack=True)
    tokenizer = dataset.tokenizer
    stream = (
        tokenizer('a red circle.')['input_ids'] + [3] +
        tokenizer('the blue square is on the left.')['input_ids'] + [3])
    assert len(dataset) == len(stream) // 5
    batch = default_collate([dataset[i] for i in range(len(dataset))])
    assert batch['inputs'].flatten().tolist() == stream[:len(dataset) * 5]
    assert batch['attention_mask'].all()
    with pytest.raises(ValueError, match='fewer than max_tokens=1000'):
        build_corpus(shapes_tokenizer, corpus_file, max_tokens=1000, pack=True)


def test_corpus_errors_name_the_file(shapes_tokenizer, tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.txt'):
        build_corpus(shapes_tokenizer, str(tmp_path / 'missing.txt'))
    empty = tmp_path / 'empty.txt'
    empty.write_text('\n \n')
    with pytest.raises(ValueError, match='empty.txt has no text'):
        build_corpus(shapes_tokenizer, str(empty))


def test_loss_is_next_token_ce_without_padding_and_decreases(
        shapes_tokenizer, shapes_root):
    model = build_model(shapes_tokenizer)
    assert model.lm.config.vocab_size == len(model.tokenizer) == 320
    assert model.lm.config.pad_token_id == 1
    dataset = build_corpus(
        shapes_tokenizer,
        osp.join(shapes_root, 'text', 'corpus.txt'),
        max_tokens=24)
    batch = default_collate([dataset[i] for i in range(8)])
    data = model.data_preprocessor(batch, True)
    inputs, mask = data['inputs'], data['attention_mask']
    assert not mask.all()  # some padding to ignore
    logits = model(**data, mode='tensor')
    targets = inputs[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    expected = F.cross_entropy(logits[:, :-1].flatten(0, 1), targets.flatten())
    loss = model(**data, mode='loss')['loss']
    torch.testing.assert_close(loss, expected)
    # whatever the padding holds
    padded = inputs.masked_fill(mask == 0, 7)
    torch.testing.assert_close(model(padded, mask, mode='loss')['loss'], loss)

    optim_wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), 1e-2))
    history = [
        model.train_step(batch, optim_wrapper)['loss'].item()
        for _ in range(15)
    ]
    assert history[-1] < 0.5 * history[0], history


def test_save_pretrained_is_flamingos_lm_and_tokenizer(shapes_tokenizer,
                                                       tmp_path):
    model = build_model(shapes_tokenizer).eval()
    out_dir = str(tmp_path / 'hf')
    model.save_pretrained(out_dir)
    cfg = tiny_flamingo_config(out_dir, image_size=64)
    cfg['head']['lm'] = dict(pretrained=out_dir)
    flamingo = MODELS.build(cfg).eval()
    assert len(flamingo.tokenizer) == len(model.tokenizer) + 2
    assert flamingo.tokens.num_base == len(model.tokenizer)
    text = 'a red circle on the left.'
    ids = model.tokenizer([text], return_tensors='pt')['input_ids']
    data_sample = DataSample()
    data_sample.set_field(text, 'text', field_type='metainfo')
    with torch.no_grad():
        logits = flamingo(None, [data_sample], mode='tensor')
        expected = model(ids, mode='tensor')
    # text before any image: the pretrained LM's own predictions
    torch.testing.assert_close(logits[..., :len(model.tokenizer)], expected)


def test_trains_on_from_a_pretrained_directory(shapes_tokenizer, tmp_path):
    """``pretrained=``: the next stage starts from an export, exactly."""
    model = build_model(shapes_tokenizer).eval()
    out_dir = str(tmp_path / 'hf')
    model.save_pretrained(out_dir)
    again = MODELS.build(
        dict(
            type='CausalLMPretrainer',
            pretrained=out_dir,
            tokenizer=dict(pretrained=out_dir))).eval()
    again.init_weights()  # keeps the pretrained weights
    ids = model.tokenizer(['a red circle.'], return_tensors='pt')['input_ids']
    with torch.no_grad():
        assert torch.equal(again(ids), model(ids))
    with pytest.raises(
            ValueError, match='config.*pretrained|pretrained.*'
            'config'):
        MODELS.build(
            dict(
                type='CausalLMPretrainer',
                config=LM_CFG,
                pretrained=out_dir,
                tokenizer=dict(pretrained=out_dir)))


def test_config_trains_and_exports_with_tools_train(recipe_world, run_train,
                                                    tmp_path):
    """The recipe's two LM stages: copy rows from scratch, then the world's
    text from that export."""
    shapes_root, shapes_tokenizer = recipe_world
    data = [
        f'train_dataloader.dataset.data_root={shapes_root}',
        f'model.tokenizer.pretrained={shapes_tokenizer}',
        f'train_dataloader.dataset.tokenizer.pretrained={shapes_tokenizer}',
        'train_cfg.max_iters=3', 'train_dataloader.batch_size=4'
    ]
    previous = None
    for stage in ('lm-induction', 'lm'):
        out_dir = str(tmp_path / stage / 'hf')
        options = data + [f'custom_hooks.0.out_dir={out_dir}']
        if previous:
            options.append(f'model.pretrained={previous}')
        rows = run_train(f'configs/shapes/llama-tiny_shapes_{stage}.py',
                         str(tmp_path / stage), options)
        assert [row['iter'] for row in rows] == [1, 2, 3]
        previous = out_dir
    assert all(row['loss'] > 0 for row in rows)
    cfg = tiny_flamingo_config(out_dir, cross_attn_every_n_layers=2)
    cfg['head']['lm'] = dict(pretrained=out_dir)
    flamingo = MODELS.build(cfg)
    assert flamingo.head.lm.config.num_hidden_layers == 4
    assert flamingo.head.xattn_layers == [1, 3]
