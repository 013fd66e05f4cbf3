"""Random access to WebDataset tar shards.

WebDataset shards (LAION, CC, MMC4 as OpenFlamingo packs it) are plain tar
files whose members ``KEY.EXT`` share a key per sample. Scanning the member
headers once gives each member's offset and size, so a dataset can read any
sample with one seek: it becomes indexable, works with mmengine's samplers
and resumes exactly, which streaming readers cannot.
"""
import glob
import os.path as osp
import re
import tarfile
from typing import Dict, List, Sequence, Tuple, Union

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
