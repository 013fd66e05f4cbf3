"""The cached index of a tar shard: written by the first scan, reused while
the shard is unchanged, rebuilt when its size or mtime changes."""
import os
import os.path as osp

import pytest

from mmflamingo.datasets import tar_shards
from mmflamingo.datasets.tar_shards import index_path, scan_shard


@pytest.fixture
def shard(tmp_path, write_tar):
    return write_tar(tmp_path / 'shard-000.tar', {
        'a.txt': 'first',
        'a.json': '{}',
        'b.txt': 'second'
    })


def test_the_first_scan_writes_the_index_and_later_ones_read_it(
        shard, monkeypatch):
    members = scan_shard(shard)
    assert list(members) == ['a.txt', 'a.json', 'b.txt']
    cache = index_path(shard)
    # hidden, next to the shard: globs such as '*' do not pick it up
    assert cache == osp.join(osp.dirname(shard), '.shard-000.tar.idx.json')
    assert osp.isfile(cache)

    def no_scan(path):
        raise AssertionError(f'{path} was scanned again')

    monkeypatch.setattr(tar_shards, 'list_members', no_scan)
    assert scan_shard(shard) == members


def test_a_changed_shard_is_scanned_again(shard, write_tar, monkeypatch):
    scan_shard(shard)
    write_tar(shard, {'c.txt': 'replaced', 'c.png': b'x' * 600})
    stat = os.stat(shard)
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    scans = []
    real = tar_shards.list_members
    monkeypatch.setattr(tar_shards, 'list_members',
                        lambda path: scans.append(path) or real(path))
    assert list(scan_shard(shard)) == ['c.txt', 'c.png']
    assert list(scan_shard(shard)) == ['c.txt', 'c.png']
    assert scans == [shard]


def test_an_index_directory_and_an_unwritable_one(shard, tmp_path,
                                                  warnings_logged):
    cache_dir = tmp_path / 'indexes'
    members = scan_shard(shard, str(cache_dir))
    (written, ) = os.listdir(cache_dir)
    assert written.endswith('-shard-000.tar.idx.json')
    assert not osp.exists(index_path(shard))
    blocked = tmp_path / 'a_file'
    blocked.write_text('not a directory')
    assert scan_shard(shard, str(blocked)) == members
    assert 'cannot cache the index of' in warnings_logged[-1]
