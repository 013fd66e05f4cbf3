"""Confidence intervals of few-shot scores, by bootstrap.

A few-shot score is a mean over queries and, with random demos, over trials
too: a table of per-query scores, ``scores[trial][query]``. Each trial draws
every query's demos anew and independently of the other queries', so what
varies is the query and, within a query, its demos. The interval here
resamples both, nested as the score was made: a replicate draws as many
queries as were asked, with replacement, and for each drawn query as many of
its trials as were run, with replacement, and takes the mean. The interval
is the replicates' 2.5th and 97.5th percentiles. With one trial (RICES demos
are the same in every trial) this is the bootstrap over queries.

CIDEr's per-query scores use the document frequencies of the whole
evaluated set, which the resampling holds fixed.
"""
from typing import List, Sequence, Tuple

import numpy as np

__all__ = ['bootstrap_ci', 'interval_bars']


def bootstrap_ci(scores: Sequence[Sequence[float]],
                 num_resamples: int = 2000,
                 level: float = 0.95,
                 seed: int = 0) -> Tuple[float, float]:
    """The bootstrap interval of the mean of ``scores[trial][query]``.

    Args:
        scores (Sequence[Sequence[float]]): Per trial, the score of every
            query (the same queries, in the same order, in every trial).
        num_resamples (int): Bootstrap replicates. Defaults to 2000.
        level (float): The interval's coverage. Defaults to 0.95.
        seed (int): Seed of the resampling. Defaults to 0.

    Returns:
        tuple[float, float]: The lower and upper bounds.
    """
    try:
        table = np.asarray(scores, dtype=np.float64)
    except ValueError:
        raise ValueError(
            'scores must be a (trials, queries) table of equal rows, got '
            f'rows of {[len(row) for row in scores]} scores') from None
    if table.ndim != 2 or 0 in table.shape:
        raise ValueError('scores must be a non-empty (trials, queries) table '
                         f'of equal rows, got shape {table.shape}')
    if not 0 < level < 1:
        raise ValueError(f'level must be in (0, 1), got {level}')
    if num_resamples < 1:
        raise ValueError(
            f'num_resamples must be at least 1, got {num_resamples}')
    num_trials, num_queries = table.shape
    rng = np.random.default_rng(seed)
    # replicates in blocks of about 4M drawn scores: memory stays bounded
    # for a VQAv2-sized set
    block = max(1, (1 << 22) // (num_queries * num_trials))
    means = []
    for start in range(0, num_resamples, block):
        size = min(block, num_resamples - start)
        queries = rng.integers(num_queries, size=(size, num_queries, 1))
        trials = rng.integers(num_trials, size=(size, num_queries, num_trials))
        # (R, Q, T) drawn (trial, query) pairs -> (R, ) means
        means.append(table[trials, queries].mean(axis=(1, 2)))
    alpha = (1 - level) / 2
    low, high = np.quantile(np.concatenate(means), [alpha, 1 - alpha])
    return float(low), float(high)


def interval_bars(means: Sequence[float],
                  intervals: Sequence[Sequence[float]]) -> List[List[float]]:
    """``[below, above]`` error-bar lengths (matplotlib's ``yerr``) of
    ``means`` with their ``[low, high]`` intervals. A mean rounded as the
    official VQA script rounds it may lie a hair outside its interval: its
    bar is then 0, not negative."""
    return [[max(0., m - low) for m, (low, _) in zip(means, intervals)],
            [max(0., high - m) for m, (_, high) in zip(means, intervals)]]
