"""Pack our JSON-lines training data into WebDataset shards.

From the formats the indexed datasets read to the shards the streaming ones
(and the indexed ``WebDataset*`` ones) read::

    # image-text (or video-text) pairs: {"image"|"video": path, "caption"}
    python tools/dataset_converters/jsonl_to_webdataset.py pairs \\
        data/toy/pairs.jsonl --media-dir data/toy/images \\
        --out 'data/toy/shards/pairs-%05d.tar' --samples-per-shard 1000
    # MMC4-style documents whose image_info entries name image files
    python tools/dataset_converters/jsonl_to_webdataset.py mmc4 \\
        'data/mmc4/docs_*.jsonl' --media-dir data/mmc4/images \\
        --out 'data/mmc4/shards/%05d.tar'

A pair becomes ``KEY.EXT`` (the medium's bytes, its extension kept) and
``KEY.txt``. A document becomes ``KEY.json`` and, for each image it names
that exists, a member ``KEY.I.EXT`` (``I`` its index in ``image_info``),
whose name replaces ``image_name``; with ``--embed-images`` the image goes
into the JSON as ``image_base64`` instead, as OpenFlamingo's MMC4 shards
have it. Images that do not exist are left as they are (the datasets skip
them, as they do on disk). Keys are the sample's number in the input.
"""
import argparse
import base64
import json
import os
import os.path as osp
import sys
from typing import Iterator, List, Optional, Tuple

from webdataset import ShardWriter

from mmflamingo.datasets.tar_shards import expand_paths


def read_jsonl(patterns: List[str]) -> Iterator[Tuple[str, dict]]:
    """``(where, record)`` of every non-blank line of the files."""
    for path in expand_paths(patterns, field='input'):
        with open(path, encoding='utf-8') as f:
            for line_no, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield f'{path}:{line_no}', json.loads(line)
                    except ValueError as error:
                        raise ValueError(
                            f'{path}:{line_no} is not JSON: {error}') from None


def extension(path: str) -> str:
    """A file's extension as a WebDataset member's: lower case, no dot."""
    return osp.splitext(path)[1][1:].lower()


def read_bytes(path: str) -> Optional[bytes]:
    """The file's bytes, or None if it does not exist."""
    try:
        with open(path, 'rb') as f:
            return f.read()
    except FileNotFoundError:
        return None


def pair_sample(where: str, record: dict, media_dir: str) -> dict:
    """The members of one pair."""
    media_key = 'video' if 'video' in record else 'image'
    media, caption = record.get(media_key), record.get('caption')
    if not (isinstance(media, str) and isinstance(caption, str)):
        raise ValueError(f'{where}: expected "image" (or "video") and '
                         '"caption" strings')
    path = osp.join(media_dir, media)
    data = read_bytes(path)
    if data is None:
        raise FileNotFoundError(f'{where}: {path} does not exist')
    return {extension(media): data, 'txt': caption}


def document_sample(key: str, where: str, doc: dict, media_dir: str,
                    embed: bool) -> Tuple[dict, int]:
    """The members of one document, and how many of its images were
    missing."""
    if not isinstance(doc.get('image_info'), list):
        raise ValueError(f'{where}: expected a document with "image_info"')
    sample, missing = {}, 0
    for index, entry in enumerate(doc['image_info']):
        name = entry.get('image_name')
        if not isinstance(name, str):
            continue
        data = read_bytes(osp.join(media_dir, name))
        if data is None:
            missing += 1
            continue
        if embed:
            entry['image_base64'] = base64.b64encode(data).decode('ascii')
            del entry['image_name']
        else:
            ext = f'{index}.{extension(name)}'
            entry['image_name'] = f'{key}.{ext}'
            sample[ext] = data
    sample['json'] = json.dumps(doc).encode('utf-8')
    return sample, missing


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Pack jsonl pairs or MMC4-style documents into '
        'WebDataset shards')
    parser.add_argument('kind', choices=['pairs', 'mmc4'])
    parser.add_argument(
        'inputs', nargs='+', help='jsonl files (braces and globs allowed)')
    parser.add_argument(
        '--media-dir',
        default='',
        help='directory the image / video paths are relative to')
    parser.add_argument(
        '--out',
        required=True,
        help='shard name pattern with a %%d field, e.g. out/%%05d.tar')
    parser.add_argument('--samples-per-shard', type=int, default=1000)
    parser.add_argument(
        '--embed-images',
        action='store_true',
        help='mmc4: put images into the JSON as image_base64 '
        "(OpenFlamingo's shard format) instead of members")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> dict:
    """Convert; return the counts (samples, shards, missing images)."""
    args = parse_args(argv)
    folder = osp.dirname(args.out)
    if folder:
        os.makedirs(folder, exist_ok=True)
    samples, missing = 0, 0
    with ShardWriter(
            args.out, maxcount=args.samples_per_shard, verbose=0) as writer:
        for number, (where, record) in enumerate(read_jsonl(args.inputs)):
            key = f'{number:09d}'
            if args.kind == 'pairs':
                sample = pair_sample(where, record, args.media_dir)
            else:
                sample, gone = document_sample(key, where, record,
                                               args.media_dir,
                                               args.embed_images)
                missing += gone
            writer.write({'__key__': key, **sample})
            samples += 1
        shards = writer.shard
    if not samples:
        os.remove(args.out % 0)  # the writer opens its first shard at once
        raise ValueError(f'no records in {args.inputs}')
    counts = dict(samples=samples, shards=shards, missing_images=missing)
    print(
        f'{samples} samples in {shards} shards ({args.out}); '
        f'{missing} images not found',
        file=sys.stderr)
    return counts


if __name__ == '__main__':
    main()
