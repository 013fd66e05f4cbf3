"""Interleaved image-text documents (MMC4 / OBELICS style).

A document is a list of sentences (``text_list``) and a list of images
(``image_info``), each matched to one sentence with a CLIP similarity. Its
training text is built as OpenFlamingo's ``preprocess_interleaved`` builds
it: an ``<|endofchunk|><image>`` before each kept image's sentence, the first
``<|endofchunk|>`` removed, sentences joined with spaces, no whitespace
around the markers, ``<|endofchunk|>{eos}`` at the end, e.g.::

    Intro sentence.<image>A dog on a beach. It runs.<|endofchunk|><image>
    A cat.<|endofchunk|></s>

(one line in reality). The text is then truncated to ``max_tokens`` and the
images whose markers were cut are dropped.
"""
import base64
import json
import os.path as osp
from typing import Callable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from mmflamingo.registry import DATASETS
from mmflamingo.tokens import END_OF_CHUNK_TOKEN, MEDIA_TOKEN
from .base_dataset import (FilteredSample, UnusableSample,
                           check_no_flamingo_tokens)
from .sequence_dataset import (BaseSequenceDataset, SequenceBuilder, check_dir,
                               image_from_bytes)
from .tar_shards import ShardMembers, expand_paths, group_samples, scan_shard
from .transforms.media import MediaInput

# gives the image an ``image_name`` names, and its size in bytes
OpenNamedImage = Callable[[str], Tuple[MediaInput, int]]

# OpenFlamingo's whitespace cleanup, in its order
_NO_SPACE_AROUND_MARKERS = [
    (f' {END_OF_CHUNK_TOKEN}', END_OF_CHUNK_TOKEN),
    (f'{MEDIA_TOKEN} ', MEDIA_TOKEN),
    (f' {MEDIA_TOKEN}', MEDIA_TOKEN),
]


def interleave(sentences: Sequence[str], image_sentences: Sequence[int],
               eos_token: str) -> str:
    """OpenFlamingo's interleaved text: a marker before each image's
    sentence.

    Args:
        sentences (Sequence[str]): The document's sentences.
        image_sentences (Sequence[int]): The sentence index of each image,
            in image order (sorted, so that the k-th marker is the k-th
            image).
        eos_token (str): The tokenizer's eos token.

    Returns:
        str: The text, with one ``<image>`` per image.
    """
    sentences = list(sentences)
    for ix in image_sentences:
        sentences[ix] = f'{END_OF_CHUNK_TOKEN}{MEDIA_TOKEN}{sentences[ix]}'
    # the first chunk has no chunk before it to end
    text = ' '.join(sentences).replace(END_OF_CHUNK_TOKEN, '', 1)
    for spaced, tight in _NO_SPACE_AROUND_MARKERS:
        text = text.replace(spaced, tight)
    return f'{text}{END_OF_CHUNK_TOKEN}{eos_token}'


class InterleavedBuilder(SequenceBuilder):
    """Builds OpenFlamingo's training sequences from interleaved documents.

    Images are taken in ``image_info`` order. An image is kept if its
    similarity to its sentence is at least ``sim_threshold``, it can be
    found (an ``image_base64`` field, else ``image_name``: see the
    datasets) and it has at least ``min_image_bytes`` bytes; the first
    ``max_num_images`` kept ones are used. The sentence and similarity are
    ``matched_text_index`` and ``matched_sim`` (MMC4), or, when absent, the
    best row entry of the document's ``similarity_matrix`` (what
    OpenFlamingo always uses).

    The images are then sorted by sentence, so that the k-th ``<image>`` is
    the k-th image. (OpenFlamingo keeps them in ``image_info`` order, which
    pairs markers with the wrong images when that order differs from the
    sentence order.)

    A document with a literal ``<image>`` or ``<|endofchunk|>`` in a
    sentence raises :class:`UnusableSample`: the tokenizer would read it as
    a marker and bind the wrong image.

    After truncation to ``max_tokens`` tokens, as OpenFlamingo, a document
    raises :class:`UnusableSample` (training skips it with a warning) when:

    - no image is usable;
    - fewer than ``min_num_images`` ``<image>`` tokens are left;
    - one is left and it is the last token (no text to learn);
    - one is left, with probability ``single_image_drop_prob`` (training
      only). The coin is a function of ``seed`` and the sample index, so
      runs and resumed runs drop the same documents.

    Only the images whose markers survive truncation are returned.
    OpenFlamingo pads every sample to ``max_num_images`` images; here the
    data preprocessor pads each batch.

    Args:
        tokenizer (dict): The model's tokenizer config.
        max_tokens (int): Truncate each sequence to this many tokens.
            Defaults to 256.
        sim_threshold (float): Minimum image-sentence similarity. Defaults
            to 0.24, the value of OpenFlamingo's training command (its
            ``train.py`` default, 30, would reject every MMC4 image: the
            similarities are CLIP cosines).
        min_num_images (int): Minimum images after truncation. Defaults
            to 1.
        max_num_images (int): Maximum images per sequence. Defaults to 5,
            the Flamingo paper's M3W setting (OpenFlamingo uses 6).
        single_image_drop_prob (float): Probability of dropping a sequence
            with one image. Defaults to 0.5.
        min_image_bytes (int): Smaller images are not used. Defaults to
            11000: OpenFlamingo drops images of 10 kB or less
            (``len(bytes) // 1000 <= 10``). Set 0 to keep all.
        seed (int): Seed of the single-image coin. Defaults to 0.
    """

    def __init__(self,
                 tokenizer: dict,
                 max_tokens: int = 256,
                 sim_threshold: float = 0.24,
                 min_num_images: int = 1,
                 max_num_images: int = 5,
                 single_image_drop_prob: float = 0.5,
                 min_image_bytes: int = 11000,
                 seed: int = 0) -> None:
        if not 1 <= min_num_images <= max_num_images:
            raise ValueError('need 1 <= min_num_images <= max_num_images, '
                             f'got {min_num_images} and {max_num_images}')
        if not 0 <= single_image_drop_prob <= 1:
            raise ValueError('single_image_drop_prob must be in [0, 1], got '
                             f'{single_image_drop_prob}')
        self.sim_threshold = sim_threshold
        self.min_num_images = min_num_images
        self.max_num_images = max_num_images
        self.single_image_drop_prob = single_image_drop_prob
        self.min_image_bytes = min_image_bytes
        self.seed = seed
        super().__init__(tokenizer, max_tokens)

    @staticmethod
    def open_image(entry: dict, index: int, source: str,
                   open_named_image: OpenNamedImage) -> Tuple[MediaInput, int]:
        """An ``image_info`` entry's image and its size in bytes.

        Raises:
            FileNotFoundError: when the entry has no image data or name, or
                its image cannot be found.
        """
        if 'image_base64' in entry:
            data = base64.b64decode(entry['image_base64'])
            return image_from_bytes(data, f'{source} image {index}'), len(data)
        if 'image_name' in entry:
            return open_named_image(entry['image_name'])
        raise FileNotFoundError(f'image {index} has neither "image_base64" '
                                'nor "image_name"')

    @staticmethod
    def _match(entry: dict, doc: dict, index: int) -> Tuple[int, float]:
        """The sentence an image belongs to, and their similarity."""
        if 'matched_text_index' in entry:
            return int(entry['matched_text_index']), float(
                entry['matched_sim'])
        row = doc['similarity_matrix'][index]
        best = int(np.argmax(row))
        return best, float(row[best])

    def select_images(
            self, doc: dict, source: str,
            open_named_image: OpenNamedImage) -> List[Tuple[int, MediaInput]]:
        """The usable images (at most ``max_num_images``), each with its
        sentence index, sorted by sentence."""
        sentences, entries = doc['text_list'], doc['image_info']
        selected = []
        low_sim, small, missing = 0, 0, []
        for index, entry in enumerate(entries):
            sentence, sim = self._match(entry, doc, index)
            if not 0 <= sentence < len(sentences):
                raise UnusableSample(
                    f'image {index} of {source} is matched to '
                    f'sentence {sentence}, but there are {len(sentences)}')
            if sim < self.sim_threshold:
                low_sim += 1
                continue
            try:
                image, num_bytes = self.open_image(entry, index, source,
                                                   open_named_image)
            except FileNotFoundError as error:
                missing.append(str(error))
                continue
            if num_bytes < self.min_image_bytes:
                small += 1
                continue
            selected.append((sentence, image))
            if len(selected) == self.max_num_images:
                break
        if not selected:
            raise UnusableSample(
                f'no usable image in {source}: of {len(entries)}, '
                f'{low_sim} below sim_threshold {self.sim_threshold}, '
                f'{small} under min_image_bytes {self.min_image_bytes}, '
                f'{len(missing)} not found' +
                (f' ({missing[0]})' if missing else ''))
        return sorted(selected, key=lambda pair: pair[0])

    def build(self, doc: dict, open_named_image: OpenNamedImage, source: str,
              sample_idx: int, training: bool) -> dict:
        """The pipeline's input for one document.

        Args:
            doc (dict): The parsed document.
            open_named_image (Callable[[str], tuple]): Gives the image an
                ``image_name`` names and its size in bytes; raises
                FileNotFoundError (naming where it looked) when missing.
            source (str): Where the document comes from, named in errors.
            sample_idx (int): The sample's index (its position in the
                stream for streaming datasets): the single-image coin's.
            training (bool): Whether the single-image coin is thrown.
        """
        if not (isinstance(doc, dict)
                and isinstance(doc.get('text_list'), list)
                and all(isinstance(s, str) for s in doc['text_list'])
                and isinstance(doc.get('image_info'), list)):
            raise UnusableSample(
                f'{source} is not a document with "text_list" (a '
                'list of strings) and "image_info" (a list)')
        for index, sentence in enumerate(doc['text_list']):
            check_no_flamingo_tokens(sentence, f'sentence {index} of {source}')
        try:
            selected = self.select_images(doc, source, open_named_image)
        except (KeyError, TypeError, IndexError) as error:
            raise UnusableSample(
                f'malformed image_info in {source}: {error!r}') from None
        text = interleave(doc['text_list'], [s for s, _ in selected],
                          self.eos_token)
        text, input_ids = self.truncate(text)
        num_images = input_ids.count(self.tokens.media)
        if num_images < self.min_num_images:
            raise FilteredSample(
                f'{source} has {num_images} images within '
                f'{self.max_tokens} tokens, fewer than min_num_images '
                f'{self.min_num_images}')
        if num_images == 1 and input_ids[-1] == self.tokens.media:
            raise UnusableSample(
                f'the only {MEDIA_TOKEN} of {source} is its last '
                'token: no text to learn')
        if num_images == 1 and training:
            coin = np.random.default_rng([self.seed, sample_idx])
            if coin.random() < self.single_image_drop_prob:
                raise FilteredSample(
                    f'{source} has one image: dropped with '
                    f'probability {self.single_image_drop_prob}')
        return dict(
            media=[image for _, image in selected[:num_images]],
            text=text,
            source=source,
            sample_idx=sample_idx)


def webdataset_document(members: Mapping[str, bytes], source: str) -> dict:
    """The document of a WebDataset interleaved sample: its ``json`` member.

    The one reading of a document's member that the indexed
    (:class:`WebDatasetInterleaved`) and the streaming datasets share.

    Raises:
        UnusableSample: naming the sample when it has no ``json`` member or
            the member is not JSON.
    """
    if 'json' not in members:
        raise UnusableSample(f'{source} has no json member')
    try:
        return json.loads(members['json'])
    except ValueError as error:
        raise UnusableSample(f'{source}.json is not JSON: {error}') from None


def member_image(members: Mapping[str, bytes], name: str,
                 where: str) -> Tuple[MediaInput, int]:
    """The image member ``name`` of ``members`` and its size in bytes.

    Raises:
        FileNotFoundError: naming ``where`` when there is no such member.
    """
    if name not in members:
        raise FileNotFoundError(f'{where} has no member {name!r}')
    data = members[name]
    return image_from_bytes(data, f'{where}:{name}'), len(data)


class BaseInterleavedDataset(BaseSequenceDataset):
    """Base of the indexed interleaved-document datasets.

    Subclasses read a data list entry's document (:meth:`read_document`)
    and the images its ``image_name`` fields name
    (:meth:`open_named_image`); :class:`InterleavedBuilder` writes the text
    and applies the drop rules (see there for the arguments).

    Args:
        tokenizer (dict): The model's tokenizer config.
        max_tokens (int): Defaults to 256.
        sim_threshold (float): Defaults to 0.24.
        min_num_images (int): Defaults to 1.
        max_num_images (int): Defaults to 5.
        single_image_drop_prob (float): Defaults to 0.5.
        min_image_bytes (int): Defaults to 11000.
        seed (int): Seed of the single-image coin. Defaults to 0.
        **kwargs: :class:`mmengine.dataset.BaseDataset` arguments.
    """

    def __init__(self,
                 tokenizer: dict,
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
        super().__init__(builder, **kwargs)

    def read_document(self, info: dict) -> dict:
        """The JSON document of a data list entry."""
        raise NotImplementedError

    def open_named_image(self, name: str,
                         info: dict) -> Tuple[MediaInput, int]:
        """The image an ``image_name`` names, and its size in bytes.

        Raises:
            FileNotFoundError: naming where it was looked for.
        """
        raise NotImplementedError

    def load_sample(self, info: dict) -> dict:
        return self.builder.build(
            self.read_document(info),
            lambda name: self.open_named_image(name, info),
            info['source'],
            info['sample_idx'],
            training=not self.test_mode)


@DATASETS.register_module()
class MMC4Interleaved(BaseInterleavedDataset):
    """MMC4 documents in JSON-lines files, images in a local directory.

    Each line is a document: ``text_list`` (sentences) and ``image_info``
    (``image_name``, a file under ``data_prefix['img_path']``, or
    ``image_base64``; ``matched_text_index``, ``matched_sim``). Images that
    are missing on disk are skipped like those under the similarity
    threshold. At construction only line offsets are indexed; documents are
    parsed when loaded.

    Args:
        ann_file (str): The ``.jsonl`` file, or a ``{a,b}`` / ``{00..99}``
            / glob pattern of several (relative to ``data_root``).
        tokenizer (dict): The model's tokenizer config.
        data_prefix (dict): ``img_path``: the image directory. Defaults to
            ``dict(img_path='')``.
        **kwargs: :class:`BaseInterleavedDataset` and
            :class:`mmengine.dataset.BaseDataset` arguments.
    """

    def __init__(self,
                 ann_file: str,
                 tokenizer: dict,
                 data_prefix: dict = dict(img_path=''),
                 **kwargs) -> None:
        self.files: List[str] = []
        super().__init__(
            tokenizer=tokenizer,
            ann_file=ann_file,
            data_prefix=data_prefix,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        self.files = expand_paths(self.ann_file, field='ann_file')
        check_dir(self.data_prefix['img_path'], "data_prefix['img_path']")
        data_list = []
        for file, path in enumerate(self.files):
            with open(path, 'rb') as f:
                offset = 0
                for line_no, line in enumerate(f, 1):
                    if line.strip():
                        data_list.append(
                            dict(file=file, line=line_no, offset=offset))
                    offset += len(line)
        return data_list

    def get_data_info(self, idx: int) -> dict:
        info = super().get_data_info(idx)
        info['source'] = f'{self.files[info["file"]]}:{info["line"]}'
        return info

    def read_document(self, info: dict) -> dict:
        with open(self.files[info['file']], 'rb') as f:
            f.seek(info['offset'])
            return json.loads(f.readline())

    def open_named_image(self, name: str,
                         info: dict) -> Tuple[MediaInput, int]:
        path = osp.join(self.data_prefix['img_path'], name)
        try:
            return path, osp.getsize(path)
        except OSError:
            raise FileNotFoundError(f'{path} not found') from None


@DATASETS.register_module()
class WebDatasetInterleaved(BaseInterleavedDataset):
    """Interleaved documents in WebDataset tar shards, as OpenFlamingo
    trains on MMC4.

    Each sample is ``KEY.json``, a document as in :class:`MMC4Interleaved`
    whose images are ``image_base64`` fields (OpenFlamingo's shards) or
    members of the same shard named by ``image_name`` (the converter's
    shards: ``KEY.0.jpg``, ``KEY.1.jpg``, ... beside ``KEY.json``). The
    documents are read by :func:`webdataset_document`, as the streaming
    :class:`StreamingWebDatasetInterleaved` reads them (which finds named
    images among the members of the same key only). The member offsets of
    every shard are indexed and cached (see :class:`WebDatasetImageText`),
    so the dataset is indexable.

    Args:
        shards (str | Sequence[str]): Shard paths, with braces or globs
            (relative to ``data_root``).
        tokenizer (dict): The model's tokenizer config.
        index_cache (str, optional): Directory of the cached shard indexes;
            None writes each next to its shard. Defaults to None.
        **kwargs: :class:`BaseInterleavedDataset` and
            :class:`mmengine.dataset.BaseDataset` arguments.
    """

    def __init__(self,
                 shards: Union[str, Sequence[str]],
                 tokenizer: dict,
                 index_cache: Optional[str] = None,
                 **kwargs) -> None:
        self.shard_patterns = shards
        self.index_cache = index_cache
        self.shards: List[str] = []
        # per shard, its members other than documents: images by name
        self.image_members: List[dict] = []
        super().__init__(tokenizer=tokenizer, **kwargs)

    def load_data_list(self) -> List[dict]:
        self.shards = expand_paths(self.shard_patterns, self.data_root)
        self.image_members = []
        data_list = []
        for shard, path in enumerate(self.shards):
            members = scan_shard(path, self.index_cache)
            for key, exts in group_samples(members).items():
                if 'json' in exts:
                    data_list.append(
                        dict(shard=shard, key=key, json=exts['json']))
            self.image_members.append({
                name: location
                for name, location in members.items()
                if not name.endswith('.json')
            })
        return data_list

    def get_data_info(self, idx: int) -> dict:
        info = super().get_data_info(idx)
        info['source'] = f'{self.shards[info["shard"]]}:{info["key"]}'
        return info

    def read_document(self, info: dict) -> dict:
        members = ShardMembers(self.shards[info['shard']],
                               dict(json=info['json']), f'{info["key"]}.')
        return webdataset_document(members, info['source'])

    def open_named_image(self, name: str,
                         info: dict) -> Tuple[MediaInput, int]:
        shard = self.shards[info['shard']]
        return member_image(
            ShardMembers(shard, self.image_members[info['shard']]), name,
            shard)
