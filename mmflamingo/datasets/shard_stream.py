"""Which shards each process and dataloader worker streams, and how far it
got.

A streaming dataset is read by ``world_size`` processes times ``W``
dataloader workers, each a *consumer* that reads its own shards with
webdataset's readers (:func:`webdataset.gopen`: local paths, ``pipe:``
commands, ``http(s)://`` and the other URL schemes it knows). In epoch ``e``
the shard list is shuffled with ``(seed, e)`` (or kept in order), and rank
``r``'s worker role ``w`` takes ``order[r::world_size][w::W]``: within an
epoch every shard is read by exactly one consumer. With ``resampled`` each
consumer instead draws shards with replacement, forever, from a generator
seeded by ``(seed, rank, role)``.

Where a consumer stands is a :class:`StreamCursor`: the epoch, the position
of the shard in the consumer's sequence (``slot``) and the samples read from
that shard. A stream started at a cursor skips the earlier shards without
opening them and reads past (without decoding) the samples already read of
the shard at ``slot``: that is how a streaming run resumes.
"""
import tarfile
from typing import (Callable, Iterator, List, NamedTuple, Optional, Sequence,
                    Tuple)

import numpy as np
from webdataset import gopen
from webdataset.tariterators import group_by_keys, tar_file_expander

# errors that mean "this shard cannot be read (further)"
SHARD_ERRORS = (tarfile.TarError, OSError, ValueError, EOFError)


class StreamCursor(NamedTuple):
    """Where a consumer's stream stands: the next sample to read is sample
    ``read`` of the shard at position ``slot`` of its sequence of epoch
    ``epoch`` (``resampled``: of the ``slot``-th shard drawn)."""
    epoch: int = 0
    slot: int = 0
    read: int = 0


def consumer_shards(urls: Sequence[str], epoch: int, rank: int,
                    world_size: int, role: int, num_roles: int, seed: int,
                    shuffle: bool) -> List[str]:
    """The shards consumer ``(rank, role)`` reads in ``epoch``, in order.

    Args:
        urls (Sequence[str]): All shards.
        epoch (int): The epoch (seeds the shuffle).
        rank (int): The process.
        world_size (int): The number of processes.
        role (int): The dataloader worker's role (see
            :class:`~mmflamingo.datasets.streaming.BaseStreamingDataset`).
        num_roles (int): The number of dataloader workers (1 without).
        seed (int): Seed of the shard shuffle.
        shuffle (bool): Whether to shuffle the shards each epoch.
    """
    order = np.arange(len(urls))
    if shuffle:
        np.random.default_rng([seed, epoch]).shuffle(order)
    return [urls[i] for i in order[rank::world_size][role::num_roles]]


def read_shard(url: str) -> Iterator[dict]:
    """The samples of one shard, as webdataset groups them:
    ``{'__key__', '__url__', ext: bytes, ...}``, in tar order.

    Raises:
        SHARD_ERRORS: when the shard cannot be opened or read (the message
            names the URL); a ``pipe:`` command that fails raises when the
            stream is closed.
    """
    with gopen(url) as stream:
        files = tar_file_expander([dict(url=url, stream=stream)])
        yield from group_by_keys(files)


class ShardStream:
    """One consumer's raw samples, each with the cursor after it.

    Args:
        urls (Sequence[str]): All shards.
        rank (int): The process.
        world_size (int): The number of processes.
        role (int): The dataloader worker's role.
        num_roles (int): The number of dataloader workers (1 without).
        seed (int): Seed of the shard order.
        shuffle (bool): Shuffle the shards each epoch.
        resampled (bool): Draw shards with replacement, forever.
        epochs (int, optional): Epochs to stream; None streams forever.
        start (StreamCursor): Where to start.
        on_error (Callable[[str, int, Exception], None]): Told the URL, the
            samples read and the error when a shard cannot be read further;
            the stream goes on with the next shard.

    Raises:
        ValueError: (when iterated) if, without ``resampled``, this
            consumer gets no shard: there are fewer shards than processes
            times workers.
    """

    def __init__(self, urls: Sequence[str], rank: int, world_size: int,
                 role: int, num_roles: int, seed: int, shuffle: bool,
                 resampled: bool, epochs: Optional[int], start: StreamCursor,
                 on_error: Callable[[str, int, Exception], None]) -> None:
        self.urls = list(urls)
        self.rank = rank
        self.world_size = world_size
        self.role = role
        self.num_roles = num_roles
        self.seed = seed
        self.shuffle = shuffle
        self.resampled = resampled
        self.epochs = epochs
        self.start = start
        self.on_error = on_error

    def _shards(self, epoch: int) -> Iterator[str]:
        if self.resampled:
            rng = np.random.default_rng(
                [self.seed, self.rank, self.role, epoch])
            while True:
                yield self.urls[int(rng.integers(len(self.urls)))]
        shards = consumer_shards(self.urls, epoch, self.rank, self.world_size,
                                 self.role, self.num_roles, self.seed,
                                 self.shuffle)
        if not shards:
            raise ValueError(
                f'{len(self.urls)} shards cannot feed {self.world_size} '
                f'processes x {self.num_roles} dataloader workers: each '
                'needs at least one shard (use more shards or fewer '
                'workers, or resampled=True)')
        yield from shards

    def __iter__(self) -> Iterator[Tuple[dict, StreamCursor]]:
        epoch, first_slot, skip = self.start
        while self.epochs is None or epoch < self.epochs:
            for slot, url in enumerate(self._shards(epoch)):
                if slot < first_slot:
                    continue
                read = 0
                try:
                    for sample in read_shard(url):
                        read += 1
                        if read > skip:
                            yield sample, StreamCursor(epoch, slot, read)
                except SHARD_ERRORS as error:
                    self.on_error(url, read, error)
                skip = 0
            epoch, first_slot = epoch + 1, 0


def shuffled(stream: Iterator[Tuple[dict, StreamCursor]], buffer_size: int,
             rng: np.random.Generator) -> Iterator[Tuple[dict, StreamCursor]]:
    """Shuffle a stream with a buffer of ``buffer_size`` samples.

    Each sample leaves with the cursor of the stream at that moment (after
    the last sample read), so a stream restarted at the cursor of the last
    sample used reads none of the samples used before; the samples still
    in the buffer then are not read again.
    """
    buffer: List[dict] = []
    cursor = None
    for sample, cursor in stream:
        buffer.append(sample)
        if len(buffer) < buffer_size:
            continue
        index = int(rng.integers(len(buffer)))
        buffer[index], buffer[-1] = buffer[-1], buffer[index]
        yield buffer.pop(), cursor
    while buffer:
        index = int(rng.integers(len(buffer)))
        buffer[index], buffer[-1] = buffer[-1], buffer[index]
        yield buffer.pop(), cursor
