"""Random access to WebDataset tar shards.

WebDataset shards (LAION, CC, MMC4 as OpenFlamingo packs it) are plain tar
files whose members ``KEY.EXT`` share a key per sample. Scanning the member
headers once gives each member's offset and size, so a dataset can read any
sample with one seek: it becomes indexable, works with mmengine's samplers
and resumes exactly, which streaming readers cannot. The scan is cached per
shard (:func:`scan_shard`), so only the first run pays for it.
"""
import glob
import hashlib
import json
import logging
import os
import os.path as osp
import re
import tarfile
from typing import (Dict, Iterator, List, Mapping, Optional, Sequence, Tuple,
                    Union)

from mmengine.logging import print_log

# member name -> (offset of its data in the tar file, size in bytes)
Members = Dict[str, Tuple[int, int]]

_BRACES = re.compile(r'\{([^{}]*)\}')
_RANGE = re.compile(r'^(\d+)\.\.(\d+)$')


def expand_braces(pattern: str) -> List[str]:
    """Expand ``{a,b}`` lists and ``{000..999}`` ranges (not nested).

    A range keeps the zero padding of its start: ``{08..10}`` gives ``08``,
    ``09``, ``10``.
    """
    match = _BRACES.search(pattern)
    if match is None:
        return [pattern]
    body = match.group(1)
    numbers = _RANGE.match(body)
    if numbers:
        start, stop = numbers.groups()
        width = len(start) if start.startswith('0') else 0
        options = [
            str(i).zfill(width) for i in range(int(start),
                                               int(stop) + 1)
        ]
    elif ',' in body:
        options = body.split(',')
    else:
        options = ['{' + body + '}']
    head, tail = pattern[:match.start()], pattern[match.end():]
    return [
        head + option + rest for option in options
        for rest in expand_braces(tail)
    ]


def expand_paths(patterns: Union[str, Sequence[str]],
                 root: str = '',
                 field: str = 'shards') -> List[str]:
    """Expand brace and glob patterns into a list of existing files.

    Args:
        patterns (str | Sequence[str]): Paths with ``{a,b}`` /
            ``{000..999}`` braces or ``*`` / ``?`` / ``[]`` globs.
        root (str): Directory relative patterns are joined to.
            Defaults to ``''``.
        field (str): Config field named in errors. Defaults to
            ``'shards'``.

    Returns:
        list[str]: The files, in pattern order (each glob sorted).

    Raises:
        FileNotFoundError: naming the pattern when a glob matches nothing
            or an expanded path does not exist.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    paths = []
    for pattern in patterns:
        if root and not osp.isabs(pattern):
            pattern = osp.join(root, pattern)
        for path in expand_braces(pattern):
            if glob.has_magic(path):
                found = sorted(p for p in glob.glob(path) if osp.isfile(p))
                if not found:
                    raise FileNotFoundError(
                        f'{field}: no file matches {path!r}')
                paths.extend(found)
            elif osp.isfile(path):
                paths.append(path)
            else:
                raise FileNotFoundError(
                    f'{field}: {path!r} does not exist (from {pattern!r})')
    if not paths:
        raise FileNotFoundError(f'{field}: no file in {list(patterns)!r}')
    return paths


def list_members(path: str) -> Members:
    """Offsets and sizes of the regular files of an uncompressed tar.

    Only the 512-byte headers are read; member data is skipped with seeks.

    Raises:
        ValueError: naming the shard when it is not a readable tar file.
    """
    members = {}
    try:
        # 'r:' refuses compressed tars, which cannot be read with a seek
        with tarfile.open(path, 'r:') as tar:
            for info in tar:
                if info.isfile():
                    members[info.name] = (info.offset_data, info.size)
    except tarfile.TarError as error:
        raise ValueError(f'cannot index shard {path}: {error}') from None
    return members


# bumped when the cached index format changes: older files are rescanned
INDEX_VERSION = 1


def index_path(path: str, cache_dir: Optional[str] = None) -> str:
    """Where the cached index of shard ``path`` lives.

    Next to the shard as a hidden file (``.NAME.idx.json``, which globs
    such as ``*`` do not match) when ``cache_dir`` is None; otherwise in
    ``cache_dir``, named by a hash of the shard's absolute path.
    """
    folder, name = osp.split(path)
    if cache_dir is None:
        return osp.join(folder, f'.{name}.idx.json')
    digest = hashlib.sha1(osp.abspath(path).encode('utf-8')).hexdigest()[:16]
    return osp.join(cache_dir, f'{digest}-{name}.idx.json')


def _stamp(path: str) -> List[int]:
    stat = os.stat(path)
    return [stat.st_size, stat.st_mtime_ns]


def scan_shard(path: str, cache_dir: Optional[str] = None) -> Members:
    """:func:`list_members` of a shard, cached in a JSON file.

    The first scan writes the index (see :func:`index_path`); later calls,
    in this run, later runs or other ranks, read it instead of the tar
    headers as long as the shard's size and modification time are those
    the index was written for, and rescan (and rewrite it) otherwise. The
    file is replaced atomically, so ranks scanning at once do not read a
    half-written index. When the index cannot be written (a read-only
    folder), the scan is used uncached and a warning names the file.

    Args:
        path (str): The shard.
        cache_dir (str, optional): Directory of the index files; None puts
            each next to its shard. Defaults to None.

    Raises:
        ValueError: naming the shard when it is not a readable tar file.
    """
    stamp = _stamp(path)
    cache = index_path(path, cache_dir)
    try:
        with open(cache, encoding='utf-8') as f:
            index = json.load(f)
        if (index.get('version') == INDEX_VERSION
                and index.get('stamp') == stamp):
            return {
                name: tuple(location)
                for name, location in index['members'].items()
            }
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        pass  # no index yet, or an unreadable one: scan
    members = list_members(path)
    index = dict(version=INDEX_VERSION, stamp=stamp, members=members)
    temporary = f'{cache}.{os.getpid()}.tmp'
    try:
        if cache_dir is not None:
            os.makedirs(cache_dir, exist_ok=True)
        with open(temporary, 'w', encoding='utf-8') as f:
            json.dump(index, f)
        os.replace(temporary, cache)
    except OSError as error:
        print_log(
            f'cannot cache the index of {path} in {cache}: {error}',
            logger='current',
            level=logging.WARNING)
    return members


class ShardMembers(Mapping):
    """Members of one shard, read (with one seek each) when accessed.

    What a WebDataset sample's members are to the code that builds a
    sample from them, for the indexed datasets: ``members[name]`` is the
    member's bytes, as in a streamed sample.

    Args:
        path (str): The shard.
        locations (Members): ``{name: (offset, size)}`` of the members.
        prefix (str): Prepended to a name in errors (the sample key and a
            dot when the names are extensions). Defaults to ``''``.
    """

    def __init__(self,
                 path: str,
                 locations: Members,
                 prefix: str = '') -> None:
        self.path = path
        self.locations = locations
        self.prefix = prefix

    def __getitem__(self, name: str) -> bytes:
        return read_member(self.path, self.locations[name], self.prefix + name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.locations)

    def __len__(self) -> int:
        return len(self.locations)


def split_key(name: str) -> Tuple[str, str]:
    """WebDataset's ``KEY.EXT`` split: the extension starts at the first dot
    of the base name and is lower-cased; ``('', '')`` if there is none."""
    folder, base = osp.split(name)
    stem, dot, ext = base.partition('.')
    if not stem or not dot:
        return '', ''
    return osp.join(folder, stem), ext.lower()


def group_samples(members: Members) -> Dict[str, Members]:
    """Group members by key: ``{key: {ext: (offset, size)}}``, in tar
    order. Members without an extension are ignored."""
    samples: Dict[str, Members] = {}
    for name, location in members.items():
        key, ext = split_key(name)
        if key:
            samples.setdefault(key, {})[ext] = location
    return samples


def read_member(path: str, location: Tuple[int, int], name: str) -> bytes:
    """Read one member's bytes with a seek.

    Raises:
        EOFError: naming the member when the shard is shorter than its index
            says (a truncated download).
    """
    offset, size = location
    with open(path, 'rb') as f:
        f.seek(offset)
        data = f.read(size)
    if len(data) != size:
        raise EOFError(f'{path}:{name} is truncated ({len(data)} of {size} '
                       'bytes)')
    return data
