"""Plain text for pretraining a causal LM: one document per line."""
from typing import List

import torch
from mmengine.dataset import BaseDataset

from mmflamingo.registry import DATASETS
from mmflamingo.tokens import build_tokenizer
from .sequence_dataset import check_file

__all__ = ['TextCorpusDataset']


@DATASETS.register_module()
class TextCorpusDataset(BaseDataset):
    """A text file of one document per line, as fixed-length token chunks.

    Each non-blank line is tokenized (with the tokenizer's own special
    tokens, e.g. a leading bos) and ended with the eos token. Without
    ``pack`` every document is cut into chunks of ``max_tokens`` tokens,
    the last one right-padded; with ``pack`` the documents are concatenated
    and the stream is cut into full chunks (the remainder is dropped), which
    wastes no compute on padding when documents are short.

    A sample is ``dict(inputs=input_ids, attention_mask=mask)``, both
    ``(max_tokens, )`` int64 tensors (mask 0 on padding): batch them with
    ``collate_fn=dict(type='default_collate')``.

    Args:
        ann_file (str): The text file (relative to ``data_root``), UTF-8.
        tokenizer (dict): ``pretrained`` (a local directory) plus
            ``AutoTokenizer.from_pretrained`` kwargs.
        max_tokens (int): Tokens per sample. Defaults to 128.
        pack (bool): Concatenate the documents before chunking.
            Defaults to False.
        **kwargs: Other :class:`mmengine.dataset.BaseDataset` arguments.
    """

    def __init__(self,
                 ann_file: str,
                 tokenizer: dict,
                 max_tokens: int = 128,
                 pack: bool = False,
                 **kwargs) -> None:
        if max_tokens < 2:
            raise ValueError(f'max_tokens must be at least 2, got '
                             f'{max_tokens}')
        self.tokenizer = build_tokenizer(
            **tokenizer, field='dataset.tokenizer')
        if self.tokenizer.eos_token_id is None:
            raise ValueError('dataset.tokenizer has no eos token to end the '
                             'documents with')
        self.pad_token_id = self.tokenizer.pad_token_id
        if self.pad_token_id is None:
            self.pad_token_id = self.tokenizer.eos_token_id
        self.max_tokens = max_tokens
        self.pack = pack
        super().__init__(ann_file=ann_file, **kwargs)

    def load_data_list(self) -> List[dict]:
        check_file(self.ann_file, 'ann_file')
        with open(self.ann_file, encoding='utf-8') as f:
            lines = [(no, line.strip()) for no, line in enumerate(f, 1)]
        lines = [(no, text) for no, text in lines if text]
        if not lines:
            raise ValueError(f'ann_file: {self.ann_file} has no text')
        encoded = self.tokenizer([text for _, text in lines])['input_ids']
        documents = [(no, ids + [self.tokenizer.eos_token_id])
                     for (no, _), ids in zip(lines, encoded)]
        size = self.max_tokens
        if not self.pack:
            return [
                dict(
                    input_ids=ids[start:start + size],
                    source=f'{self.ann_file}:{no}') for no, ids in documents
                for start in range(0, len(ids), size)
            ]
        stream = [token for _, ids in documents for token in ids]
        if len(stream) < size:
            raise ValueError(f'ann_file: {self.ann_file} has {len(stream)} '
                             f'tokens, fewer than max_tokens={size}')
        return [
            dict(
                input_ids=stream[start:start + size],
                source=f'{self.ann_file} (chunk {start // size})')
            for start in range(0,
                               len(stream) - size + 1, size)
        ]

    def prepare_data(self, idx: int) -> dict:
        ids = self.get_data_info(idx)['input_ids']
        padding = self.max_tokens - len(ids)
        input_ids = torch.tensor(ids + [self.pad_token_id] * padding)
        attention_mask = torch.tensor([1] * len(ids) + [0] * padding)
        return dict(inputs=input_ids, attention_mask=attention_mask)
