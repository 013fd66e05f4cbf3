"""The vocabulary of Flamingo: its tokens, and loading a tokenizer offline.

This is the lowest layer of the package: datasets, evaluation, apis and
models all import the Flamingo token strings and the tokenizer builder from
here, so none of them needs to import another.
"""
import os.path as osp
from dataclasses import dataclass
from typing import List

MEDIA_TOKEN = '<image>'
END_OF_CHUNK_TOKEN = '<|endofchunk|>'
PAD_TOKEN = '<PAD>'
# the tokens that bind text to media: a literal one inside a caption, a
# question or a document would be read as a marker and bind the wrong image
FLAMINGO_TOKENS = (MEDIA_TOKEN, END_OF_CHUNK_TOKEN)

__all__ = [
    'MEDIA_TOKEN', 'END_OF_CHUNK_TOKEN', 'PAD_TOKEN', 'FLAMINGO_TOKENS',
    'FlamingoTokens', 'add_flamingo_tokens', 'build_tokenizer',
    'check_local_dir', 'flamingo_tokens_in'
]


def check_local_dir(path: str, field: str) -> str:
    """Raise a FileNotFoundError naming ``field`` unless ``path`` is a dir."""
    if not isinstance(path, str) or not osp.isdir(path):
        raise FileNotFoundError(
            f'{field}: {path!r} is not a local directory. mmflamingo never '
            'downloads weights: point it at a directory saved with '
            '`save_pretrained`.')
    return path


def flamingo_tokens_in(text: str) -> List[str]:
    """The Flamingo tokens (``<image>``, ``<|endofchunk|>``) ``text`` holds.

    Data text (a caption, a question, a document's sentence) must hold none:
    the tokenizer would read a literal one as a marker.
    """
    return [token for token in FLAMINGO_TOKENS if token in text]


@dataclass
class FlamingoTokens:
    """Ids of the tokens Flamingo adds, and the vocabulary size before them.

    ``known`` says the tokenizer had ``<image>`` and ``<|endofchunk|>``
    before Flamingo came (a language model pretrained with them, such as the
    shapes recipe's): the LM's own rows for them are then where their
    trainable rows start.
    """
    media: int
    end_of_chunk: int
    pad: int
    num_base: int
    num_new: int
    known: bool = False


def build_tokenizer(pretrained: str, field: str = 'tokenizer', **kwargs):
    """Load a tokenizer from a local directory (``AutoTokenizer``)."""
    from transformers import AutoTokenizer
    check_local_dir(pretrained, f'{field}.pretrained')
    return AutoTokenizer.from_pretrained(
        pretrained, local_files_only=True, **kwargs)


def add_flamingo_tokens(tokenizer) -> FlamingoTokens:
    """Add ``<|endofchunk|>``, ``<image>`` (and ``<PAD>``) as OpenFlamingo.

    The order matters for checkpoint compatibility: OpenFlamingo appends
    ``<|endofchunk|>`` then ``<image>``, then a pad token if none exists.
    Calling it twice adds nothing the second time.
    """
    vocab = tokenizer.get_vocab()
    known = MEDIA_TOKEN in vocab and END_OF_CHUNK_TOKEN in vocab
    if known:
        num_base = min(vocab[MEDIA_TOKEN], vocab[END_OF_CHUNK_TOKEN])
    else:
        num_base = len(tokenizer)
        tokenizer.add_special_tokens(
            {'additional_special_tokens': [END_OF_CHUNK_TOKEN, MEDIA_TOKEN]})
        if tokenizer.pad_token is None:
            tokenizer.add_special_tokens({'pad_token': PAD_TOKEN})
    return FlamingoTokens(
        media=tokenizer.convert_tokens_to_ids(MEDIA_TOKEN),
        end_of_chunk=tokenizer.convert_tokens_to_ids(END_OF_CHUNK_TOKEN),
        pad=tokenizer.pad_token_id,
        num_base=num_base,
        num_new=len(tokenizer) - num_base,
        known=known)
