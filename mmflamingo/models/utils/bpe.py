"""Train a byte-level BPE tokenizer on local text files, offline.

The result is a ``PreTrainedTokenizerFast`` directory that
``AutoTokenizer.from_pretrained`` loads, with LLaMA's conventions: it adds
``<s>`` (bos) in front of every text and has ``</s>`` (eos), ``<pad>`` and
``<unk>`` tokens. Flamingo then adds its own tokens to it
(:func:`~mmflamingo.tokens.add_flamingo_tokens`), or, with
``flamingo_tokens=True``, the tokenizer has them from the start, as the last
two ids, for a language model pretrained on text that already has their
structure (chunks ended by ``<|endofchunk|>``, each opened by ``<image>``).
"""
import os
import os.path as osp
from typing import Sequence, Union

from mmflamingo.tokens import END_OF_CHUNK_TOKEN, MEDIA_TOKEN

__all__ = ['BPE_SPECIAL_TOKENS', 'train_bpe_tokenizer']

# ids 0-3, in this order. eos must not be id 2: Hugging Face's CLIP text
# model reads an eos_token_id of 2 as a legacy config and pools the
# largest id of each text instead of its eos.
BPE_SPECIAL_TOKENS = dict(
    unk_token='<unk>', pad_token='<pad>', bos_token='<s>', eos_token='</s>')


def train_bpe_tokenizer(corpus_files: Union[str, Sequence[str]],
                        out_dir: str,
                        vocab_size: int = 1024,
                        min_frequency: int = 2,
                        flamingo_tokens: bool = False):
    """Train a byte-level BPE tokenizer and save it with ``save_pretrained``.

    Args:
        corpus_files (str | Sequence[str]): Text files to learn the merges
            from (read as UTF-8).
        out_dir (str): Directory to write (created if needed).
        vocab_size (int): Vocabulary size, special tokens and the 256 byte
            tokens included. Defaults to 1024.
        min_frequency (int): A pair is merged only if it occurs at least
            this many times. Defaults to 2.
        flamingo_tokens (bool): End the vocabulary with ``<|endofchunk|>``
            and ``<image>`` (in OpenFlamingo's order), counted in
            ``vocab_size``. Defaults to False.

    Returns:
        PreTrainedTokenizerFast: The saved tokenizer.
    """
    from tokenizers import (Tokenizer, decoders, models, pre_tokenizers,
                            processors, trainers)
    from transformers import PreTrainedTokenizerFast
    files = [corpus_files] if isinstance(corpus_files, str) else corpus_files
    if not files:
        raise ValueError('corpus_files: give at least one text file')
    for path in files:
        if not osp.isfile(path):
            raise FileNotFoundError(f'corpus_files: {path!r} does not exist')
    specials = list(BPE_SPECIAL_TOKENS.values())
    extra = [END_OF_CHUNK_TOKEN, MEDIA_TOKEN] if flamingo_tokens else []
    minimum = len(specials) + len(extra) + 256
    if vocab_size < minimum:
        raise ValueError(f'vocab_size must be at least {minimum} (special '
                         f'and byte tokens), got {vocab_size}')
    tokenizer = Tokenizer(
        models.BPE(unk_token=BPE_SPECIAL_TOKENS['unk_token']))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(extra),
        min_frequency=min_frequency,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False)
    tokenizer.train(list(files), trainer)
    bos = BPE_SPECIAL_TOKENS['bos_token']
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f'{bos} $A',
        pair=f'{bos} $A {bos} $B',
        special_tokens=[(bos, tokenizer.token_to_id(bos))])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        model_input_names=['input_ids', 'attention_mask'],
        **BPE_SPECIAL_TOKENS)
    if extra:
        fast.add_special_tokens({'additional_special_tokens': extra})
    os.makedirs(out_dir, exist_ok=True)
    fast.save_pretrained(out_dir)
    return fast
