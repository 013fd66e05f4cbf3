"""WebDataset shards streamed with the ``webdataset`` library: for data that
is too large to index, or is not on a local disk.

The streaming datasets read the same shards as the indexed
:class:`WebDatasetImageText` and :class:`WebDatasetInterleaved` and build
each sample from its members with the same code (:func:`webdataset_pair`,
:func:`webdataset_document` and the :class:`PairBuilder` /
:class:`InterleavedBuilder` text rules) and the same pipeline transforms,
but never seek: each process and dataloader worker reads its own shards
front to back (see :mod:`.shard_stream`), through a shuffle buffer.

Resuming (see :class:`~mmflamingo.engine.MixtureTrainLoop`): every sample
carries ``stream_cursor``, where its worker's stream stood when it left
the shuffle buffer; the training loop records the cursor of the last sample
it used from each worker, the checkpoint keeps them per rank, and a resumed
stream starts at them, skipping the shards already read without opening
them.
"""
import logging
import os.path as osp
import zlib
from typing import Dict, List, Optional, Sequence, Union
from urllib.parse import urlparse

import numpy as np
from mmengine.dataset import Compose
from mmengine.dist import get_dist_info
from mmengine.logging import print_log
from torch.utils.data import IterableDataset, get_worker_info

from mmflamingo.registry import DATASETS
from .base_dataset import SkipUnusable
from .image_text import IMAGE_EXTENSIONS, PairBuilder, webdataset_pair
from .interleaved import InterleavedBuilder, member_image, webdataset_document
from .sequence_dataset import SequenceBuilder
from .shard_stream import ShardStream, StreamCursor, shuffled
from .tar_shards import expand_braces


def expand_urls(shards: Union[str, Sequence[str]],
                data_root: str = '') -> List[str]:
    """Expand ``{a,b}`` / ``{000..999}`` braces of shard URLs.

    Local paths (no URL scheme) are joined to ``data_root`` when relative
    and must exist; ``pipe:`` commands and remote URLs are taken as they
    are.

    Raises:
        FileNotFoundError: naming a local shard that does not exist.
    """
    if isinstance(shards, str):
        shards = [shards]
    urls = []
    for pattern in shards:
        for url in expand_braces(pattern):
            if urlparse(url).scheme:
                urls.append(url)
                continue
            if data_root and not osp.isabs(url):
                url = osp.join(data_root, url)
            if not osp.isfile(url):
                raise FileNotFoundError(
                    f'shards: {url!r} does not exist (from {pattern!r})')
            urls.append(url)
    if not urls:
        raise FileNotFoundError(f'shards: no shard in {list(shards)!r}')
    return urls


class BaseStreamingDataset(IterableDataset):
    """Streams WebDataset shards; each sample is built by :meth:`build`.

    Which shards a process and worker reads, and in which order, is
    :class:`ShardStream`'s: over one epoch without ``resampled`` every
    sample is read exactly once by all processes and workers together.
    The rank and world size are those of ``torch.distributed`` when the
    stream starts. Dataloader worker ``i`` of ``W`` plays role
    ``(i + first_role) % W``: a resumed run gives each worker the stream of
    the role whose batch comes next, so that the batches follow each other
    in the order of the uninterrupted run.

    A sample that cannot be built (corrupt image, broken JSON, no caption,
    the drop rules) is replaced by a placeholder and counted, with a
    warning naming ``shard:key`` (:class:`SkipUnusable`, as the indexed
    datasets do); a shard that cannot be read further is left with a
    warning naming it and the samples read, and the stream goes on.

    Args:
        shards (str | Sequence[str]): Shard URLs with ``{a,b}`` /
            ``{000..999}`` braces: local paths (relative to
            ``data_root``), ``pipe:COMMAND`` (e.g. ``pipe:aws s3 cp
            s3://bucket/shard-0001.tar -``), ``http(s)://...`` and the
            other schemes of :func:`webdataset.gopen`.
        builder (SequenceBuilder): Writes each sample's text.
        pipeline (Sequence[dict]): The transforms, as for the indexed
            datasets.
        data_root (str): Directory of relative local paths. Defaults to
            ``''``.
        shard_shuffle (bool): Shuffle the shard order each epoch.
            Defaults to True.
        shuffle_buffer (int): Samples in the shuffle buffer of each
            worker; 1 or less streams in shard order. Defaults to 1000.
        resampled (bool): Draw shards with replacement, forever
            (webdataset's ``ResampledShards``, for epoch-less training).
            Defaults to False.
        epochs (int, optional): Passes over the shards each time the
            dataloader is iterated; None streams forever. Defaults to None.
        seed (int): Seed of the shard order, the shuffle buffers and the
            single-image coin. Defaults to 0.
        max_refetch (int): Unusable samples allowed in a row in one
            worker before the run stops. Defaults to 1000.
    """

    def __init__(self,
                 shards: Union[str, Sequence[str]],
                 builder: SequenceBuilder,
                 pipeline: Sequence[dict],
                 data_root: str = '',
                 shard_shuffle: bool = True,
                 shuffle_buffer: int = 1000,
                 resampled: bool = False,
                 epochs: Optional[int] = None,
                 seed: int = 0,
                 max_refetch: int = 1000) -> None:
        self.urls = expand_urls(shards, data_root)
        self.builder = builder
        self.pipeline = Compose(pipeline)
        self.shard_shuffle = shard_shuffle
        self.shuffle_buffer = shuffle_buffer
        self.resampled = resampled
        self.epochs = epochs
        self.seed = seed
        self.max_refetch = max_refetch
        # where each role starts: set by the training loop on resume
        self.start_cursors: Dict[int, StreamCursor] = {}
        self.first_role = 0

    @property
    def metainfo(self) -> dict:
        return {}

    def set_start(self, cursors: Dict[int, StreamCursor],
                  first_role: int) -> None:
        """Start each worker role's stream at its cursor (roles not given
        start at the beginning) and worker 0 at role ``first_role``."""
        self.start_cursors = dict(cursors)
        self.first_role = first_role

    def build(self, members: dict, source: str) -> dict:
        """The pipeline's input built from one sample's members."""
        raise NotImplementedError

    def _warn_shard(self, url: str, read: int, error: Exception) -> None:
        print_log(
            f'{type(self).__name__}: skipping the rest of shard {url} after '
            f'{read} samples: {error}',
            logger='current',
            level=logging.WARNING)

    def __iter__(self):
        rank, world_size = get_dist_info()
        worker = get_worker_info()
        worker_id, num_workers = (0, 1) if worker is None else (
            worker.id, worker.num_workers)
        role = (worker_id + self.first_role) % num_workers
        start = self.start_cursors.get(role, StreamCursor())
        stream = ShardStream(self.urls, rank, world_size, role, num_workers,
                             self.seed, self.shard_shuffle, self.resampled,
                             self.epochs, start, self._warn_shard)
        rng = np.random.default_rng([self.seed, rank, role, *start])
        skip = SkipUnusable(type(self).__name__, self.max_refetch)
        for members, cursor in shuffled(
                iter(stream), self.shuffle_buffer, rng):
            source = f'{members["__url__"]}:{members["__key__"]}'
            data = skip(
                lambda: self.pipeline(
                    self.builder.check_markers(self.build(members, source))),
                lambda: source)
            data['data_samples'].set_field((role, *cursor),
                                           'stream_cursor',
                                           field_type='metainfo')
            yield data


def _sample_idx(key: str) -> int:
    """A sample's index for the seeded rules: a hash of its key, so that a
    sample gets the same coin whichever worker reads it, and when."""
    return zlib.crc32(key.encode('utf-8'))


@DATASETS.register_module()
class StreamingWebDatasetImageText(BaseStreamingDataset):
    """Image-text (or video-text) pairs streamed from WebDataset shards.

    The samples of :class:`WebDatasetImageText` (an image or video member
    and ``txt`` or ``json`` caption), streamed (see
    :class:`BaseStreamingDataset`). A video (``media_extensions`` such as
    ``('mp4',)``) reaches the pipeline as bytes, which ``LoadVideoFrames``
    decodes.

    Args:
        shards (str | Sequence[str]): Shard URLs (see
            :class:`BaseStreamingDataset`).
        tokenizer (dict): The model's tokenizer config.
        pipeline (Sequence[dict]): The transforms.
        caption_key (str): Caption field of ``KEY.json``. Defaults to
            ``'caption'``.
        media_extensions (Sequence[str]): Extensions of the medium, by
            preference. Defaults to ``IMAGE_EXTENSIONS``.
        max_tokens (int, optional): Defaults to 32.
        **kwargs: :class:`BaseStreamingDataset` arguments.
    """

    def __init__(self,
                 shards: Union[str, Sequence[str]],
                 tokenizer: dict,
                 pipeline: Sequence[dict],
                 caption_key: str = 'caption',
                 media_extensions: Sequence[str] = IMAGE_EXTENSIONS,
                 max_tokens: Optional[int] = 32,
                 **kwargs) -> None:
        self.caption_key = caption_key
        self.media_extensions = tuple(media_extensions)
        super().__init__(shards, PairBuilder(tokenizer, max_tokens), pipeline,
                         **kwargs)

    def build(self, members: dict, source: str) -> dict:
        media, caption = webdataset_pair(members, source,
                                         self.media_extensions,
                                         self.caption_key)
        return self.builder.build(media, caption, source,
                                  _sample_idx(members['__key__']))


@DATASETS.register_module()
class StreamingWebDatasetInterleaved(BaseStreamingDataset):
    """Interleaved documents streamed from WebDataset shards.

    The samples of :class:`WebDatasetInterleaved` (``KEY.json`` with
    ``image_base64`` images, or ``image_name`` naming a member of the same
    key such as ``KEY.0.jpg``), streamed (see
    :class:`BaseStreamingDataset`). The single-image coin is seeded by
    ``seed`` and a hash of the key.

    Args:
        shards (str | Sequence[str]): Shard URLs (see
            :class:`BaseStreamingDataset`).
        tokenizer (dict): The model's tokenizer config.
        pipeline (Sequence[dict]): The transforms.
        max_tokens (int): Defaults to 256.
        sim_threshold (float): Defaults to 0.24.
        min_num_images (int): Defaults to 1.
        max_num_images (int): Defaults to 5.
        single_image_drop_prob (float): Defaults to 0.5.
        min_image_bytes (int): Defaults to 11000.
        seed (int): Seed of the shard order, the shuffle buffers and the
            single-image coin. Defaults to 0.
        **kwargs: :class:`BaseStreamingDataset` arguments.
    """

    def __init__(self,
                 shards: Union[str, Sequence[str]],
                 tokenizer: dict,
                 pipeline: Sequence[dict],
                 max_tokens: int = 256,
                 sim_threshold: float = 0.24,
                 min_num_images: int = 1,
                 max_num_images: int = 5,
                 single_image_drop_prob: float = 0.5,
                 min_image_bytes: int = 11000,
                 seed: int = 0,
                 **kwargs) -> None:
        builder = InterleavedBuilder(tokenizer, max_tokens, sim_threshold,
                                     min_num_images, max_num_images,
                                     single_image_drop_prob, min_image_bytes,
                                     seed)
        super().__init__(shards, builder, pipeline, seed=seed, **kwargs)

    def build(self, members: dict, source: str) -> dict:
        key = members['__key__']
        by_name = {
            f'{key}.{ext}': data
            for ext, data in members.items() if not ext.startswith('__')
        }
        return self.builder.build(
            webdataset_document(members, source),
            lambda name: member_image(by_name, name, source),
            source,
            _sample_idx(key),
            training=True)
