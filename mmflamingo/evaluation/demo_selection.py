"""Which support samples become the demos of a few-shot query.

Two selectors, both answering ``select(query_index, num_demos)`` with indices
into the support set, in prompt order:

- :class:`RandomDemoSelector`: uniform random demos, as OpenFlamingo's
  default;
- :class:`RICESSelector`: Retrieval-based In-Context Example Selection
  (Flamingo, after Yang et al. 2022): the support samples whose image
  features are most similar to the query's, the most similar last, i.e.
  nearest to the query (OpenFlamingo's ``RICES.find`` reverses its top-k the
  same way).

When the support and query sets overlap (the same files, or a support split
that contains the queries), give both selectors the sample ids of both sets:
a query's own sample is then never one of its demos. With ``support_groups``
and ``query_groups`` (e.g. the episodes of an in-context binding task, whose
names only their own episode reveals), a query's demos come only from the
support samples of its group.

RICES features are computed once by ``tools/cache_rices_features.py`` and
stored with :func:`save_rices_features`: a ``torch.save`` of
``{'features': (N, D) float tensor, L2-normalised, 'keys': [N sample ids],
'config': str}``. A few-shot run loads them once
(:func:`load_rices_pair`) and builds each trial's selector with
:func:`build_demo_selector`; :func:`demo_orders` gives the orders of a
query's demos for prompt ensembling.
"""
import math
import os.path as osp
from typing import Hashable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .fewshot_settings import FewShotSettings

__all__ = [
    'RandomDemoSelector', 'RICESSelector', 'save_rices_features',
    'load_rices_features', 'load_rices_pair', 'build_demo_selector',
    'demo_orders'
]


def _check_enough(num_support: int, num_demos: int) -> None:
    if num_demos > num_support:
        raise ValueError(f'{num_demos} demos were asked for, but the support '
                         f'set has only {num_support} usable samples')


class _KeyedSelector:
    """Shared by the selectors: which support samples may be a query's demos.

    Not the query itself (matched by sample id), and only samples of the
    query's group when groups are given.
    """

    def __init__(self,
                 num_support: int,
                 support_keys: Optional[Sequence[Hashable]],
                 query_keys: Optional[Sequence[Hashable]],
                 support_groups: Optional[Sequence[Hashable]] = None,
                 query_groups: Optional[Sequence[Hashable]] = None) -> None:
        for name, values in (('support_keys', support_keys), ('support_groups',
                                                              support_groups)):
            if values is not None and len(values) != num_support:
                raise ValueError(f'{len(values)} {name} for {num_support} '
                                 'support samples')
        if (support_groups is None) != (query_groups is None):
            raise ValueError('support_groups and query_groups go together')
        self.num_support = num_support
        self.query_keys = None if query_keys is None else list(query_keys)
        self._support_index = None
        if support_keys is not None:
            self._support_index = {k: i for i, k in enumerate(support_keys)}
        self.query_groups = None
        if query_groups is not None:
            self.query_groups = list(query_groups)
            self._group_members = {}
            for i, group in enumerate(support_groups):
                self._group_members.setdefault(group, []).append(i)

    def own_index(self, query_index: int) -> Optional[int]:
        """The support index holding query ``query_index`` itself, if any."""
        if self._support_index is None or self.query_keys is None:
            return None
        return self._support_index.get(self.query_keys[query_index])

    def allowed(self, query_index: int) -> np.ndarray:
        """``(num_support, )`` bool: the possible demos of a query."""
        mask = np.ones(self.num_support, dtype=bool)
        if self.query_groups is not None:
            mask[:] = False
            members = self._group_members.get(self.query_groups[query_index])
            mask[members or []] = True
        own = self.own_index(query_index)
        if own is not None:
            mask[own] = False
        return mask


class RandomDemoSelector(_KeyedSelector):
    """Random demos, reproducible per query.

    The demos of query ``i`` are drawn by a generator seeded with
    ``(seed, i)``: the same seed gives the same demos for every query,
    whatever order or process evaluates it. OpenFlamingo runs several trials
    with different seeds (``--trial_seeds``) and reports their mean; do the
    same by building one selector per trial seed.

    Like OpenFlamingo, demos may come from a random pool of ``pool_size``
    support samples drawn once per seed (its ``--query_set_size``, 2048),
    or from the whole support set (the default).

    Args:
        num_support (int): The size of the support set.
        seed (int): The trial's seed. Defaults to 42.
        pool_size (int, optional): Draw demos from a fixed random subset of
            this size. Defaults to None (the whole support set).
        support_keys (Sequence, optional): The support samples' ids.
        query_keys (Sequence, optional): The query samples' ids; with
            ``support_keys``, a query is never its own demo.
        support_groups (Sequence, optional): The support samples' groups.
        query_groups (Sequence, optional): The query samples' groups; with
            ``support_groups``, demos come from the query's group only.
    """

    def __init__(self,
                 num_support: int,
                 seed: int = 42,
                 pool_size: Optional[int] = None,
                 support_keys: Optional[Sequence[Hashable]] = None,
                 query_keys: Optional[Sequence[Hashable]] = None,
                 support_groups: Optional[Sequence[Hashable]] = None,
                 query_groups: Optional[Sequence[Hashable]] = None) -> None:
        super().__init__(num_support, support_keys, query_keys, support_groups,
                         query_groups)
        self.seed = seed
        self.pool = np.arange(num_support)
        if pool_size is not None and pool_size < num_support:
            rng = np.random.default_rng(seed)
            self.pool = np.sort(
                rng.choice(num_support, pool_size, replace=False))

    def select(self, query_index: int, num_demos: int) -> List[int]:
        """Support indices of the demos of query ``query_index``.

        Raises:
            ValueError: If the pool has fewer than ``num_demos`` samples
                (not counting the query itself).
        """
        pool = self.pool[self.allowed(query_index)[self.pool]]
        _check_enough(len(pool), num_demos)
        rng = np.random.default_rng((self.seed, query_index))
        return pool[rng.choice(len(pool), num_demos, replace=False)].tolist()


class RICESSelector(_KeyedSelector):
    """The most similar support samples, the most similar last.

    Similarity is the cosine of the cached, L2-normalised image features.

    Args:
        support_features (Tensor): ``(N, D)`` L2-normalised support features.
        query_features (Tensor): ``(Q, D)`` L2-normalised query features.
        support_keys (Sequence, optional): The support samples' ids.
        query_keys (Sequence, optional): The query samples' ids; with
            ``support_keys``, a query is never its own demo.
        support_groups (Sequence, optional): The support samples' groups.
        query_groups (Sequence, optional): The query samples' groups; with
            ``support_groups``, demos come from the query's group only.
    """

    def __init__(self,
                 support_features: torch.Tensor,
                 query_features: torch.Tensor,
                 support_keys: Optional[Sequence[Hashable]] = None,
                 query_keys: Optional[Sequence[Hashable]] = None,
                 support_groups: Optional[Sequence[Hashable]] = None,
                 query_groups: Optional[Sequence[Hashable]] = None) -> None:
        super().__init__(
            len(support_features), support_keys, query_keys, support_groups,
            query_groups)
        if (support_features.ndim != 2 or query_features.ndim != 2
                or support_features.shape[1] != query_features.shape[1]):
            raise ValueError(
                'support and query features must be (N, D) and (Q, D), got '
                f'{tuple(support_features.shape)} and '
                f'{tuple(query_features.shape)}')
        self.support_features = support_features.float()
        self.query_features = query_features.float()

    def select(self, query_index: int, num_demos: int) -> List[int]:
        """Support indices of the ``num_demos`` most similar samples, in
        increasing similarity (the most similar last).

        Raises:
            ValueError: If the support set has fewer than ``num_demos``
                samples (not counting the query itself).
        """
        similarity = self.support_features @ self.query_features[query_index]
        allowed = torch.from_numpy(self.allowed(query_index))
        similarity[~allowed] = -float('inf')
        _check_enough(int(allowed.sum()), num_demos)
        top = similarity.topk(num_demos).indices  # most similar first
        return top.flip(0).tolist()


def save_rices_features(path: str,
                        features: torch.Tensor,
                        keys: Sequence[Hashable],
                        config: str,
                        media: Optional[Sequence[Optional[str]]] = None,
                        encoder: Optional[str] = None) -> None:
    """Save RICES features with the ids of the samples they describe.

    Args:
        path (str): The output file.
        features (Tensor): ``(N, D)`` L2-normalised features (float16 or
            float32).
        keys (Sequence): The N sample ids, in support-set order (ints or
            strings).
        config (str): What computed them (the model config), for the record.
        media (Sequence[str | None], optional): The file each feature was
            computed from (None: not a file), so that another set with the
            same files and ``encoder`` can take the features over.
        encoder (str, optional): What the features depend on (the vision
            encoder, its weights, how media are loaded); files of the same
            ``encoder`` share features by ``media``.
    """
    if features.ndim != 2 or len(features) != len(keys):
        raise ValueError(f'{len(keys)} keys for features of shape '
                         f'{tuple(features.shape)}')
    if media is not None and len(media) != len(keys):
        raise ValueError(f'{len(media)} media for {len(keys)} keys')
    record = dict(features=features.cpu(), keys=list(keys), config=config)
    if media is not None:
        record.update(media=list(media), encoder=encoder)
    torch.save(record, path)


def load_rices_features(path: str,
                        keys: Optional[Sequence[Hashable]] = None) -> dict:
    """Load a :func:`save_rices_features` file and check it fits the set.

    Args:
        path (str): The file.
        keys (Sequence, optional): The sample ids of the set the features
            are for, in order; a file for other samples raises.

    Returns:
        dict: ``features`` (N, D), ``keys``, ``config``.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is malformed or its keys differ from
            ``keys``; the message names the file.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'RICES feature file {path!r} does not exist;'
                                ' make it with tools/cache_rices_features.py')
    cache = torch.load(path, map_location='cpu', weights_only=True)
    if not (isinstance(cache, dict) and {'features', 'keys'} <= set(cache)):
        raise ValueError(f'{path}: not a RICES feature file (expected a dict '
                         'with "features" and "keys")')
    if keys is not None and list(cache['keys']) != list(keys):
        keys = list(keys)
        mismatch = next(
            (i for i, (a, b) in enumerate(zip(cache['keys'], keys)) if a != b),
            min(len(keys), len(cache['keys'])))
        raise ValueError(
            f'{path}: its {len(cache["keys"])} sample ids do not match the '
            f'{len(keys)} of the dataset (first difference at position '
            f'{mismatch}); recompute it with tools/cache_rices_features.py')
    return cache


def load_rices_pair(
        settings: FewShotSettings, support: Sequence[dict],
        queries: Sequence[dict]) -> Tuple[torch.Tensor, torch.Tensor]:
    """The support and query RICES features of a run, loaded once.

    Args:
        settings (FewShotSettings): Names the two feature files.
        support (Sequence[dict]): The support samples (``sample_id``).
        queries (Sequence[dict]): The evaluated queries; the query features
            may cover more (``max_queries`` evaluates the first ones).

    Returns:
        tuple[Tensor, Tensor]: ``(N, D)`` support and ``(Q, D)`` query
        features.

    Raises:
        ValueError: If a file's sample ids do not match its set, naming it.
    """
    support_features = load_rices_features(settings.rices_support_features,
                                           [s['sample_id']
                                            for s in support])['features']
    query_features = load_rices_features(settings.rices_query_features, None)
    query_keys = [q['sample_id'] for q in queries]
    if list(query_features['keys'][:len(queries)]) != query_keys:
        raise ValueError(
            f'{settings.rices_query_features}: its sample ids do not match '
            "the query dataset's; recompute it with "
            'tools/cache_rices_features.py')
    return support_features, query_features['features'][:len(queries)]


def _groups(samples: Sequence[dict], key: Optional[str],
            name: str) -> Optional[list]:
    """Each sample's ``key`` (its demo group), or None without a key."""
    if key is None:
        return None
    missing = [s['sample_id'] for s in samples if key not in s]
    if missing:
        raise KeyError(f'test_cfg.demo_group_key is {key!r}, but '
                       f'{len(missing)} {name} sample(s) lack it, e.g. '
                       f'{missing[0]!r}')
    return [s[key] for s in samples]


def build_demo_selector(
    settings: FewShotSettings,
    support: Sequence[dict],
    queries: Sequence[dict],
    trial: int,
    rices_features: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
) -> Union[RandomDemoSelector, RICESSelector]:
    """The demo selector of one trial.

    Random demos are drawn with seed ``settings.trial_seed(trial)``; RICES
    demos are the same in every trial. A query is never its own demo; with
    ``demo_group_key`` its demos share its group.

    Args:
        settings (FewShotSettings): The run's settings.
        support (Sequence[dict]): The support samples (``sample_id``...).
        queries (Sequence[dict]): The query samples.
        trial (int): The trial index.
        rices_features (tuple[Tensor, Tensor], optional): From
            :func:`load_rices_pair`; needed with RICES.
    """
    keys = dict(
        support_keys=[s['sample_id'] for s in support],
        query_keys=[q['sample_id'] for q in queries],
        support_groups=_groups(support, settings.demo_group_key, 'support'),
        query_groups=_groups(queries, settings.demo_group_key, 'query'))
    if settings.demo_selection == 'random':
        return RandomDemoSelector(
            len(support), seed=settings.trial_seed(trial), **keys)
    if rices_features is None:
        raise ValueError('RICES demos need the features of load_rices_pair')
    return RICESSelector(*rices_features, **keys)


def demo_orders(num_demos: int, num_permutations: int,
                seed: Union[int, Sequence[int]]) -> List[List[int]]:
    """Distinct orders of ``num_demos`` demos for prompt ensembling.

    The first order is the given one (``[0, 1, ...]``); the others are drawn
    at random with ``seed``, without repeats, so there are at most
    ``num_demos!`` of them (OpenFlamingo shuffles, repeats allowed).

    Args:
        num_demos (int): The number of demos.
        num_permutations (int): The number of orders wanted.
        seed (int | Sequence[int]): The seed of the random orders
            (``np.random.default_rng``'s).

    Returns:
        list[list[int]]: ``min(num_permutations, num_demos!)`` orders, each
        a permutation of ``range(num_demos)``.
    """
    count = min(num_permutations, math.factorial(num_demos))
    orders = [list(range(num_demos))]
    rng = np.random.default_rng(seed)
    while len(orders) < count:
        order = rng.permutation(num_demos).tolist()
        if order not in orders:
            orders.append(order)
    return orders
