"""Image-text pairs (COCO captions, JSON lines, LAION / CC WebDataset shards).

Every pair becomes OpenFlamingo's LAION sequence
``<image>{caption}<|endofchunk|>{eos}``, the caption stripped of surrounding
whitespace, truncated to 32 tokens by default as OpenFlamingo does.
"""
import json
import logging
import os.path as osp
from typing import List, Mapping, Optional, Sequence, Tuple, Union

from mmengine.logging import print_log

from mmflamingo.registry import DATASETS
from mmflamingo.tokens import END_OF_CHUNK_TOKEN, MEDIA_TOKEN
from .base_dataset import UnusableSample, check_no_flamingo_tokens
from .sequence_dataset import (BaseSequenceDataset, SequenceBuilder, check_dir,
                               check_file, image_from_bytes)
from .tar_shards import ShardMembers, expand_paths, group_samples, scan_shard
from .transforms.media import MediaInput

# the media extensions of a WebDataset sample, by preference
IMAGE_EXTENSIONS = ('jpg', 'jpeg', 'png', 'webp')
VIDEO_EXTENSIONS = ('mp4', 'webm', 'mkv', 'avi', 'mov')
CAPTION_EXTENSIONS = ('txt', 'json')


class PairBuilder(SequenceBuilder):
    """Writes a pair's text: ``<image>{caption}<|endofchunk|>{eos}``.

    A caption that is empty after stripping, or holds a literal ``<image>``
    or ``<|endofchunk|>`` (which would bind the wrong image), raises
    :class:`UnusableSample`.

    Args:
        tokenizer (dict): The model's tokenizer config.
        max_tokens (int, optional): Truncate each sequence to this many
            tokens. Defaults to 32, as OpenFlamingo does for LAION.
    """

    def __init__(self,
                 tokenizer: dict,
                 max_tokens: Optional[int] = 32) -> None:
        super().__init__(tokenizer, max_tokens)

    def build(self, media: Union[MediaInput, bytes], caption: str, source: str,
              sample_idx: int) -> dict:
        """The pipeline's input for one pair.

        Args:
            media (MediaInput | bytes): The image (path, PIL image, array)
                or video (path or encoded bytes).
            caption (str): The raw caption.
            source (str): Where the pair comes from, named in errors.
            sample_idx (int): The sample's index (its position in the
                stream for streaming datasets).
        """
        caption = caption.strip()
        if not caption:
            raise UnusableSample(f'empty caption in {source}')
        check_no_flamingo_tokens(caption, f'the caption of {source}')
        text, _ = self.truncate(
            f'{MEDIA_TOKEN}{caption}{END_OF_CHUNK_TOKEN}{self.eos_token}')
        return dict(
            media=[media], text=text, source=source, sample_idx=sample_idx)


def media_extension(exts, media_extensions: Sequence[str]) -> Optional[str]:
    """The first of ``media_extensions`` among a sample's ``exts``."""
    return next((e for e in media_extensions if e in exts), None)


def webdataset_pair(members: Mapping[str, bytes], source: str,
                    media_extensions: Sequence[str],
                    caption_key: str) -> Tuple[Union[MediaInput, bytes], str]:
    """The medium and raw caption of a WebDataset pair sample.

    The one reading of a pair's members that the indexed
    (:class:`WebDatasetImageText`) and the streaming datasets share. The
    medium is the first of ``media_extensions`` present: an image
    (opened lazily, decoded by ``LoadMedia``) or, for
    ``VIDEO_EXTENSIONS``, the encoded bytes (``LoadVideoFrames`` decodes
    them). The caption is ``txt``, else the ``caption_key`` field of
    ``json``.

    Args:
        members (Mapping[str, bytes]): The sample's members by extension.
        source (str): ``shard:key``, named in errors.
        media_extensions (Sequence[str]): The media extensions, by
            preference.
        caption_key (str): Caption field of the ``json`` member.

    Raises:
        UnusableSample: naming the sample when it has no medium or caption,
            or its ``json`` has no caption string.
        ValueError: naming the member when the image bytes are not an image.
    """
    ext = media_extension(members, media_extensions)
    caption_ext = media_extension(members, CAPTION_EXTENSIONS)
    if ext is None or caption_ext is None:
        raise UnusableSample(
            f'{source} has no {"/".join(media_extensions)} member or no '
            'txt/json caption')
    data = members[ext]
    media = data if ext in VIDEO_EXTENSIONS else image_from_bytes(
        data, f'{source}.{ext}')
    try:
        caption = members[caption_ext].decode('utf-8')
        if caption_ext == 'json':
            caption = json.loads(caption)
    except ValueError as error:
        raise UnusableSample(
            f'{source}.{caption_ext} is not UTF-8 text or JSON: {error}'
        ) from None
    if caption_ext == 'json':
        if not (isinstance(caption, dict)
                and isinstance(caption.get(caption_key), str)):
            raise UnusableSample(
                f'{source}.json has no "{caption_key}" string')
        caption = caption[caption_key]
    return media, caption


class BaseImageTextDataset(BaseSequenceDataset):
    """Base of the image-text pair datasets: builds each pair's text.

    Subclasses list the pairs (``load_data_list``) and read one
    (:meth:`read_pair`); :class:`PairBuilder` writes the text. An unusable
    caption (see there) is found when the sample is loaded, so training
    skips it with a warning (see :class:`BaseFlamingoDataset`).

    Args:
        tokenizer (dict): The model's tokenizer config (its eos token ends
            every sequence; truncation counts its tokens).
        max_tokens (int, optional): Truncate each sequence to this many
            tokens, as OpenFlamingo does for LAION. Defaults to 32.
        **kwargs: :class:`mmengine.dataset.BaseDataset` arguments.
    """

    def __init__(self,
                 tokenizer: dict,
                 max_tokens: Optional[int] = 32,
                 **kwargs) -> None:
        super().__init__(PairBuilder(tokenizer, max_tokens), **kwargs)

    def read_pair(self, info: dict) -> Tuple[MediaInput, str]:
        """The image (path, PIL image or array) and raw caption of a pair.
        """
        return info['img_path'], info['caption']

    def load_sample(self, info: dict) -> dict:
        media, caption = self.read_pair(info)
        return self.builder.build(media, caption, info['source'],
                                  info['sample_idx'])


@DATASETS.register_module()
class CocoCaptionPairs(BaseImageTextDataset):
    """COCO captions: one sample per caption.

    The annotation file is COCO's ``captions_*.json``:
    ``{"images": [{"id", "file_name"}], "annotations": [{"image_id",
    "caption"}]}``; ``img_path`` is ``file_name`` under
    ``data_prefix['img_path']``.

    Args:
        ann_file (str): The annotation file (relative to ``data_root``).
        tokenizer (dict): The model's tokenizer config.
        data_prefix (dict): ``img_path``: the image directory. Defaults to
            ``dict(img_path='')``.
        max_tokens (int, optional): Defaults to 32.
        **kwargs: Other :class:`mmengine.dataset.BaseDataset` arguments.
    """

    def __init__(self,
                 ann_file: str,
                 tokenizer: dict,
                 data_prefix: dict = dict(img_path=''),
                 max_tokens: Optional[int] = 32,
                 **kwargs) -> None:
        super().__init__(
            tokenizer=tokenizer,
            max_tokens=max_tokens,
            ann_file=ann_file,
            data_prefix=data_prefix,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        check_file(self.ann_file, 'ann_file')
        image_dir = self.data_prefix['img_path']
        check_dir(image_dir, "data_prefix['img_path']")
        with open(self.ann_file, encoding='utf-8') as f:
            coco = json.load(f)
        files = {image['id']: image['file_name'] for image in coco['images']}
        data_list = []
        for ann in coco['annotations']:
            if ann.get('image_id') not in files:
                raise ValueError(
                    f'{self.ann_file}: annotation {ann.get("id")} names '
                    f'image_id {ann.get("image_id")}, which is not in '
                    '"images"')
            if not isinstance(ann.get('caption'), str):
                raise ValueError(f'{self.ann_file}: annotation '
                                 f'{ann.get("id")} has no "caption" string')
            path = osp.join(image_dir, files[ann['image_id']])
            data_list.append(
                dict(
                    img_path=path,
                    caption=ann['caption'],
                    source=f'{path} (caption {ann.get("id")})'))
        return data_list


@DATASETS.register_module()
class JsonlImageText(BaseImageTextDataset):
    """Image-text pairs from a JSON-lines file.

    Each line is ``{"image": path, "caption": str}``, the path relative to
    ``data_prefix['img_path']``; blank lines are ignored. Subclasses read
    other media by setting ``media_key`` (the JSON field) and ``prefix_key``
    (the ``data_prefix`` entry, also the data-info key of the path).

    Args:
        ann_file (str): The ``.jsonl`` file (relative to ``data_root``).
        tokenizer (dict): The model's tokenizer config.
        data_prefix (dict): ``img_path``: the image directory. Defaults to
            ``dict(img_path='')``.
        max_tokens (int, optional): Defaults to 32.
        **kwargs: Other :class:`mmengine.dataset.BaseDataset` arguments.
    """

    media_key = 'image'
    prefix_key = 'img_path'

    def __init__(self,
                 ann_file: str,
                 tokenizer: dict,
                 data_prefix: Optional[dict] = None,
                 max_tokens: Optional[int] = 32,
                 **kwargs) -> None:
        super().__init__(
            tokenizer=tokenizer,
            max_tokens=max_tokens,
            ann_file=ann_file,
            data_prefix=data_prefix or {self.prefix_key: ''},
            **kwargs)

    def load_data_list(self) -> List[dict]:
        """Read the file; a malformed line raises, naming it."""
        check_file(self.ann_file, 'ann_file')
        media_dir = self.data_prefix[self.prefix_key]
        check_dir(media_dir, f"data_prefix['{self.prefix_key}']")
        data_list = []
        with open(self.ann_file, encoding='utf-8') as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    media, caption = record[self.media_key], record['caption']
                    if not (isinstance(media, str)
                            and isinstance(caption, str)):
                        raise TypeError('not strings')
                except (ValueError, KeyError, TypeError) as error:
                    raise ValueError(
                        f'{self.ann_file}:{line_no}: expected a JSON object '
                        f'with "{self.media_key}" and "caption" strings '
                        f'({error!r})') from None
                path = osp.join(media_dir, media)
                data_list.append({
                    self.prefix_key:
                    path,
                    'caption':
                    caption,
                    'source':
                    f'{path} ({self.ann_file}:{line_no})'
                })
        return data_list

    def read_pair(self, info: dict) -> Tuple[MediaInput, str]:
        return info[self.prefix_key], info['caption']


@DATASETS.register_module()
class WebDatasetImageText(BaseImageTextDataset):
    """Image-text pairs in WebDataset tar shards, as LAION and CC ship.

    A sample is the members sharing a key: an image ``KEY.jpg`` (or another
    of ``media_extensions``) and its caption, ``KEY.txt`` or else the
    ``caption_key`` field of ``KEY.json`` (read by :func:`webdataset_pair`,
    as the streaming :class:`StreamingWebDatasetImageText` reads them).
    Keys without both a medium and a caption are left out (counted in the
    log), as OpenFlamingo filters them.

    The member offsets of every shard are indexed (:func:`scan_shard`: the
    tar headers are read once and cached, see ``index_cache``), so the
    dataset is indexable: any sampler works and resuming is exact. Samples
    are read with one seek each. Shards must be uncompressed local tars, as
    WebDataset writes them; for ``pipe:`` or remote URLs use the streaming
    dataset.

    Args:
        shards (str | Sequence[str]): Shard paths, with ``{0000..0999}``
            / ``{a,b}`` braces or globs (relative to ``data_root``).
        tokenizer (dict): The model's tokenizer config.
        caption_key (str): Caption field of ``KEY.json``. Defaults to
            ``'caption'``.
        media_extensions (Sequence[str]): Extensions of the medium, by
            preference; video extensions (``mp4``, ...) give encoded bytes
            for ``LoadVideoFrames``. Defaults to ``IMAGE_EXTENSIONS``.
        index_cache (str, optional): Directory of the cached shard indexes;
            None writes each next to its shard (``SHARD.tar.idx.json``).
            Defaults to None.
        max_tokens (int, optional): Defaults to 32.
        **kwargs: Other :class:`mmengine.dataset.BaseDataset` arguments.
    """

    def __init__(self,
                 shards: Union[str, Sequence[str]],
                 tokenizer: dict,
                 caption_key: str = 'caption',
                 media_extensions: Sequence[str] = IMAGE_EXTENSIONS,
                 index_cache: Optional[str] = None,
                 max_tokens: Optional[int] = 32,
                 **kwargs) -> None:
        self.shard_patterns = shards
        self.caption_key = caption_key
        self.media_extensions = tuple(media_extensions)
        self.index_cache = index_cache
        self.shards: List[str] = []
        super().__init__(tokenizer=tokenizer, max_tokens=max_tokens, **kwargs)

    def load_data_list(self) -> List[dict]:
        self.shards = expand_paths(self.shard_patterns, self.data_root)
        data_list, incomplete = [], 0
        for shard, path in enumerate(self.shards):
            members = scan_shard(path, self.index_cache)
            for key, exts in group_samples(members).items():
                media = media_extension(exts, self.media_extensions)
                caption = media_extension(exts, CAPTION_EXTENSIONS)
                if media is None or caption is None:
                    incomplete += 1
                    continue
                data_list.append(
                    dict(
                        shard=shard,
                        key=key,
                        members={
                            media: exts[media],
                            caption: exts[caption]
                        }))
        print_log(
            f'{type(self).__name__}: {len(data_list)} samples in '
            f'{len(self.shards)} shards; {incomplete} keys without a medium '
            'or a caption left out',
            logger='current',
            level=logging.INFO)
        return data_list

    def get_data_info(self, idx: int) -> dict:
        info = super().get_data_info(idx)
        info['source'] = f'{self.shards[info["shard"]]}:{info["key"]}'
        return info

    def read_pair(self, info: dict) -> Tuple[MediaInput, str]:
        members = ShardMembers(self.shards[info['shard']], info['members'],
                               f'{info["key"]}.')
        return webdataset_pair(members, info['source'], self.media_extensions,
                               self.caption_key)
