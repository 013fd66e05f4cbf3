"""What every Flamingo dataset shares: unusable samples are skipped, loudly.
"""
import logging
from typing import Callable, Optional

import torch
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log
from mmpretrain.structures import DataSample

from mmflamingo.tokens import flamingo_tokens_in


class UnusableSample(ValueError):
    """A sample that cannot be trained on (no image left, empty text, ...).
    """


class FilteredSample(UnusableSample):
    """A sample a filter rule drops by design (e.g. OpenFlamingo's coin for
    single-image documents): skipped and counted like an unusable one, but
    logged at debug level, since nothing is wrong with the data."""


# errors that mean "this sample is bad", not "the code is wrong"
SAMPLE_ERRORS = (OSError, ValueError, EOFError)


def check_no_flamingo_tokens(text: str, where: str) -> None:
    """Refuse data text (a caption, a document's sentence) that holds a
    literal ``<image>`` or ``<|endofchunk|>``: the tokenizer would read it
    as a marker and bind the wrong image.

    Args:
        text (str): The text.
        where (str): What the text is, named in the error, e.g.
            ``'the caption of a.jsonl:3'``.

    Raises:
        UnusableSample: naming ``where`` and the tokens.
    """
    tokens = flamingo_tokens_in(text)
    if tokens:
        raise UnusableSample(
            f'{where} holds a literal {" and ".join(tokens)}, which the '
            'tokenizer would read as a marker')


def unusable_sample(source: str) -> dict:
    """The placeholder of a skipped training sample.

    It has no media (``inputs`` of shape ``(0, 1, 3, 1, 1)``, as a
    text-only sample) and its data sample's ``unusable`` metainfo is True:
    ``FlamingoDataPreprocessor`` removes it from the batch and
    ``FlamingoMonitorHook`` counts it as skipped.
    """
    sample = DataSample()
    sample.set_field(True, 'unusable', field_type='metainfo')
    sample.set_field(source, 'source', field_type='metainfo')
    return dict(
        inputs=torch.zeros((0, 1, 3, 1, 1), dtype=torch.uint8),
        data_samples=sample)


class SkipUnusable:
    """Prepares training samples, putting a placeholder in place of an
    unusable one.

    When preparing a sample raises one of ``SAMPLE_ERRORS`` (an unreadable,
    corrupt or missing file, empty text, a document with no usable image,
    more ``<image>`` markers than images, a literal Flamingo token in the
    text, ...) or returns None (the pipeline dropped it), a warning names
    the sample's source and :func:`unusable_sample` takes its place. More
    than ``max_in_a_row`` unusable samples in a row raise a
    ``RuntimeError``: the data, not a few samples, is broken. Each
    dataloader worker has its own copy, hence its own count.

    Args:
        owner (str): The dataset's name, given in the error.
        max_in_a_row (int): Unusable samples allowed in a row.
    """

    def __init__(self, owner: str, max_in_a_row: int) -> None:
        self.owner = owner
        self.max_in_a_row = max_in_a_row
        self.in_a_row = 0

    def __call__(self, prepare: Callable[[], Optional[dict]],
                 describe: Callable[[], str]) -> dict:
        """``prepare()``, or the placeholder of the sample ``describe()``
        names."""
        try:
            data = prepare()
            reason, level = 'the pipeline dropped it', logging.WARNING
        except SAMPLE_ERRORS as error:
            data, reason = None, str(error)
            level = logging.DEBUG if isinstance(
                error, FilteredSample) else logging.WARNING
        if data is not None:
            self.in_a_row = 0
            return data
        source = describe()
        print_log(
            f'skipping {source}: {reason}', logger='current', level=level)
        self.in_a_row += 1
        if self.in_a_row > self.max_in_a_row:
            raise RuntimeError(
                f'{self.owner}: {self.in_a_row} samples in a row were '
                f'unusable (more than max_refetch={self.max_in_a_row}); see '
                'the warnings above')
        return unusable_sample(source)


class BaseFlamingoDataset(BaseDataset):
    """An mmengine ``BaseDataset`` that skips unusable samples in training.

    In training, :class:`SkipUnusable` prepares each sample: an unusable one
    is logged with its source and replaced by :func:`unusable_sample`. The
    batch is then one sample short: no other sample takes its place, so
    none is seen more often than the sampler says, and the sampler's order
    (hence resuming) is untouched. More than ``max_refetch`` unusable
    samples in a row (in one dataloader worker) raise a ``RuntimeError``.
    In ``test_mode`` errors are raised.

    Subclasses name a sample's source through :meth:`describe`.
    """

    # created on first use, in each dataloader worker's copy
    _skip_unusable: Optional[SkipUnusable] = None

    def describe(self, idx: int) -> str:
        """A human-readable source of sample ``idx`` (file, shard, key)."""
        info = self.get_data_info(idx)
        return str(info.get('source', info.get('media', f'sample {idx}')))

    def __getitem__(self, idx: int) -> dict:
        if not self._fully_initialized:
            self.full_init()
        if self.test_mode:
            return self.prepare_data(idx)
        if self._skip_unusable is None:
            self._skip_unusable = SkipUnusable(
                type(self).__name__, self.max_refetch)
        return self._skip_unusable(lambda: self.prepare_data(idx),
                                   lambda: self.describe(idx))
