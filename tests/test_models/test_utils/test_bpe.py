import os.path as osp
import runpy
import sys

import pytest
from transformers import AutoTokenizer

from mmflamingo.models.utils.bpe import train_bpe_tokenizer
from mmflamingo.tokens import (END_OF_CHUNK_TOKEN, MEDIA_TOKEN,
                               add_flamingo_tokens)

CORPUS = [
    'a red circle on the left. a blue square on the right.',
    'What colour is the circle? red. What shape is on the right? square.',
    'the dax is a green triangle. the wug is a yellow circle.',
] * 5


@pytest.fixture(scope='module')
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp('corpus') / 'corpus.txt'
    path.write_text('\n'.join(CORPUS) + '\n', encoding='utf-8')
    return str(path)


@pytest.fixture(scope='module')
def tokenizer_dir(corpus_file, tmp_path_factory):
    out_dir = str(tmp_path_factory.mktemp('bpe'))
    train_bpe_tokenizer(corpus_file, out_dir, vocab_size=300)
    return out_dir


def test_loads_with_special_tokens_and_learned_merges(tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(
        tokenizer_dir, local_files_only=True)
    assert tokenizer.is_fast
    assert len(tokenizer) == 300
    assert (tokenizer.unk_token, tokenizer.pad_token, tokenizer.bos_token,
            tokenizer.eos_token) == ('<unk>', '<pad>', '<s>', '</s>')
    assert [
        tokenizer.unk_token_id, tokenizer.pad_token_id, tokenizer.bos_token_id,
        tokenizer.eos_token_id
    ] == [0, 1, 2, 3]
    # frequent words are merged into few tokens; bos comes first
    encoded = tokenizer('a red circle')
    assert encoded['input_ids'][0] == tokenizer.bos_token_id
    assert len(encoded['input_ids']) < 1 + len('a red circle') // 2
    assert set(encoded) == {'input_ids', 'attention_mask'}


@pytest.mark.parametrize('text', [
    'a red circle on the left.', 'an unseen word: zebra-42!',
    'caf\u00e9 \u2192 \u732b', '  two  spaces\tand a tab'
])
def test_round_trips_any_text(tokenizer_dir, text):
    tokenizer = AutoTokenizer.from_pretrained(
        tokenizer_dir, local_files_only=True)
    ids = tokenizer(text)['input_ids']
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_takes_the_flamingo_tokens(tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(
        tokenizer_dir, local_files_only=True)
    tokens = add_flamingo_tokens(tokenizer)
    # the tokenizer has a pad token: only <|endofchunk|> and <image> are new
    assert (tokens.num_base, tokens.num_new) == (300, 2)
    assert (tokens.end_of_chunk, tokens.media, tokens.pad) == (300, 301, 1)
    text = f'{MEDIA_TOKEN}a red circle.{END_OF_CHUNK_TOKEN}</s>'
    ids = tokenizer(text)['input_ids']
    assert ids[:2] == [tokenizer.bos_token_id, tokens.media]
    assert ids[-2:] == [tokens.end_of_chunk, tokenizer.eos_token_id]
    assert tokenizer.decode(ids[1:]) == text


def test_errors_name_the_problem(corpus_file, tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.txt'):
        train_bpe_tokenizer(str(tmp_path / 'missing.txt'), str(tmp_path))
    with pytest.raises(ValueError, match='vocab_size must be at least 260'):
        train_bpe_tokenizer(corpus_file, str(tmp_path), vocab_size=100)


def test_command_line_tool(corpus_file, tmp_path, monkeypatch, capsys):
    out_dir = str(tmp_path / 'tok')
    tool = osp.join(
        osp.dirname(__file__), '..', '..', '..', 'tools', 'misc',
        'train_bpe_tokenizer.py')
    monkeypatch.setattr(
        sys, 'argv',
        [tool, corpus_file, '--out-dir', out_dir, '--vocab-size', '280'])
    runpy.run_path(tool, run_name='__main__')
    assert 'BPE tokenizer of 280 tokens' in capsys.readouterr().out
    tokenizer = AutoTokenizer.from_pretrained(out_dir, local_files_only=True)
    assert len(tokenizer) == 280
