"""What every Flamingo dataset shares: unusable samples are skipped, loudly.
"""
import logging

from mmengine.dataset import BaseDataset
from mmengine.logging import print_log


class UnusableSample(ValueError):
    """A sample that cannot be trained on (no image left, empty text, ...).
    """


class FilteredSample(UnusableSample):
    """A sample a filter rule drops by design (e.g. OpenFlamingo's coin for
    single-image documents): skipped and counted like an unusable one, but
    logged at debug level, since nothing is wrong with the data."""


# errors that mean "this sample is bad", not "the code is wrong"
SAMPLE_ERRORS = (OSError, ValueError, EOFError)


class BaseFlamingoDataset(BaseDataset):
    """An mmengine ``BaseDataset`` that skips unusable samples in training.

    When loading or transforming a sample raises one of ``SAMPLE_ERRORS``
    (an unreadable, corrupt or missing file, empty text, a document with no
    usable image, more ``<image>`` markers than images, ...), training logs a
    warning that names the sample's source and takes the next sample. The
    number of samples skipped on the way to each returned sample is recorded
    in its data sample's ``num_skipped`` metainfo, so that a hook can count
    them exactly across dataloader workers. In ``test_mode`` errors are
    raised.

    Subclasses name a sample's source through :meth:`describe`.
    """

    def describe(self, idx: int) -> str:
        """A human-readable source of sample ``idx`` (file, shard, key)."""
        info = self.get_data_info(idx)
        return str(info.get('source', info.get('media', f'sample {idx}')))

    def __getitem__(self, idx: int) -> dict:
        if not self._fully_initialized:
            self.full_init()
        if self.test_mode:
            return self.prepare_data(idx)
        skipped = 0
        for _ in range(self.max_refetch + 1):
            try:
                data = self.prepare_data(idx)
            except SAMPLE_ERRORS as error:
                skipped += 1
                print_log(
                    f'skipping {self.describe(idx)}: {error}',
                    logger='current',
                    level=logging.DEBUG
                    if isinstance(error, FilteredSample) else logging.WARNING)
                data = None
            if data is not None:
                sample = data.get('data_samples')
                if sample is not None:
                    sample.set_field(
                        skipped, 'num_skipped', field_type='metainfo')
                return data
            # the next sample, not a random one: runs stay reproducible
            idx = (idx + 1) % len(self)
        raise RuntimeError(
            f'{type(self).__name__}: {self.max_refetch + 1} samples in a row '
            'were unusable; see the warnings above')
