"""Demo selection: random (seeded per query) and RICES (most similar last).
"""
import pytest
import torch

from mmflamingo.evaluation.demo_selection import (RandomDemoSelector,
                                                  RICESSelector,
                                                  load_rices_features,
                                                  save_rices_features)


def unit(*rows):
    return torch.nn.functional.normalize(torch.tensor(rows).float(), dim=-1)


def test_rices_most_similar_last():
    # cosine to the query (1, 0): 1.0, 0.0, ~0.71, ~0.95, -1.0
    support = unit([1., 0.], [0., 1.], [1., 1.], [3., 1.], [-1., 0.])
    selector = RICESSelector(support, unit([1., 0.]))
    assert selector.select(0, 3) == [2, 3, 0]
    assert selector.select(0, 5) == [4, 1, 2, 3, 0]


def test_rices_excludes_the_query_itself():
    support = unit([1., 0.], [0., 1.], [1., 1.])
    selector = RICESSelector(
        support,
        support,
        support_keys=['a', 'b', 'c'],
        query_keys=['a', 'b', 'c'])
    assert selector.select(0, 2) == [1, 2]
    assert 2 not in selector.select(2, 2)
    with pytest.raises(ValueError, match='only 2 usable'):
        selector.select(0, 3)


def test_rices_errors():
    with pytest.raises(ValueError, match='only 2'):
        RICESSelector(unit([1., 0.], [0., 1.]), unit([1., 0.])).select(0, 4)
    with pytest.raises(ValueError, match=r'\(2, 2\) and \(1, 3\)'):
        RICESSelector(unit([1., 0.], [0., 1.]), unit([1., 0., 0.]))


def test_random_is_deterministic_per_seed_and_query():
    a = RandomDemoSelector(1000, seed=42)
    b = RandomDemoSelector(1000, seed=42)
    other = RandomDemoSelector(1000, seed=43)
    # the same demos whatever order the queries come in
    later_first = {q: b.select(q, 4) for q in reversed(range(20))}
    for q in range(20):
        demos = a.select(q, 4)
        assert demos == later_first[q]
        assert len(set(demos)) == 4
    assert [a.select(q, 4)
            for q in range(20)] != [other.select(q, 4) for q in range(20)]
    assert a.select(0, 4) != a.select(1, 4)


def test_random_pool_and_overlap():
    selector = RandomDemoSelector(100, seed=0, pool_size=10)
    pool = set(selector.pool.tolist())
    assert len(pool) == 10
    for q in range(30):
        assert set(selector.select(q, 3)) <= pool
    with pytest.raises(ValueError, match='only 10 usable'):
        selector.select(0, 11)

    keys = list(range(5))
    overlap = RandomDemoSelector(5, seed=1, support_keys=keys, query_keys=keys)
    for q in range(5):
        demos = overlap.select(q, 4)
        assert q not in demos and sorted(demos) == [k for k in keys if k != q]
    with pytest.raises(ValueError, match='only 4 usable'):
        overlap.select(0, 5)
    with pytest.raises(ValueError, match='3 support_keys for 5'):
        RandomDemoSelector(5, support_keys=[0, 1, 2])


def test_feature_cache(tmp_path):
    path = str(tmp_path / 'feats.pth')
    features = unit([1., 0.], [0., 1.], [1., 1.]).half()
    save_rices_features(path, features, [3, 1, 2], 'tiny.py')
    cache = load_rices_features(path, keys=[3, 1, 2])
    assert cache['keys'] == [3, 1, 2] and cache['config'] == 'tiny.py'
    assert cache['features'].dtype == torch.float16
    torch.testing.assert_close(cache['features'], features)

    with pytest.raises(ValueError, match='feats.pth.*position 1'):
        load_rices_features(path, keys=[3, 2, 1])
    with pytest.raises(ValueError, match='feats.pth.*3 sample ids.*4'):
        load_rices_features(path, keys=[3, 1, 2, 4])
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        load_rices_features(str(tmp_path / 'missing.pth'))
    with pytest.raises(ValueError, match='2 keys'):
        save_rices_features(path, features, [1, 2], 'tiny.py')
