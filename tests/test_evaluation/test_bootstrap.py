"""The nested bootstrap interval of few-shot scores
(mmflamingo.evaluation.bootstrap)."""
import math

import numpy as np
import pytest

from mmflamingo.evaluation.bootstrap import bootstrap_ci


def bernoulli_scores(num_trials, num_queries, seed=0):
    """``scores[trial][query]``: right (100) or wrong (0), half and half."""
    rng = np.random.default_rng(seed)
    return 100. * (rng.random((num_trials, num_queries)) < 0.5)


def width(interval):
    return interval[1] - interval[0]


def test_constant_scores_give_a_degenerate_interval():
    """Every replicate of a constant table has its mean: both bounds are
    that value, whatever the trials and queries."""
    for num_trials, num_queries in ((1, 1), (1, 30), (3, 30)):
        low, high = bootstrap_ci([[37.5] * num_queries] * num_trials)
        assert low == high == pytest.approx(37.5)


def test_interval_contains_the_mean_and_lies_within_the_scores():
    """The interval holds the mean of the table, lies within its smallest
    and largest score, and is an interval (low < high) for varied
    scores."""
    for seed in range(3):
        rng = np.random.default_rng(seed)
        scores = rng.uniform(0, 100, (3, 40))
        low, high = bootstrap_ci(scores, seed=seed)
        assert scores.min() <= low < scores.mean() < high <= scores.max()
    # a skewed table: most queries wrong, a few right
    skewed = [[100.] * 3 + [0.] * 37, [100.] * 2 + [0.] * 38]
    low, high = bootstrap_ci(skewed)
    assert 0 <= low < np.mean(skewed) < high <= 100


def test_deterministic_for_a_seed():
    """The same seed gives the same interval; another seed resamples
    differently."""
    scores = np.random.default_rng(0).uniform(0, 100, (2, 50))
    assert bootstrap_ci(scores, seed=3) == bootstrap_ci(scores, seed=3)
    assert bootstrap_ci(
        scores.tolist(), seed=3) == bootstrap_ci(
            scores, seed=3)
    assert bootstrap_ci(scores, seed=3) != bootstrap_ci(scores, seed=4)


def test_fewer_queries_give_a_wider_interval():
    """The width shrinks as 1 / sqrt(queries): 25 of the 400 queries give an
    interval about 4 times as wide."""
    scores = bernoulli_scores(2, 400)
    full = bootstrap_ci(scores)
    few = bootstrap_ci(scores[:, :25])
    assert width(few) > 2.5 * width(full)


def test_one_trial_is_the_bootstrap_over_queries():
    """With one trial a replicate is a resample of the queries: the bounds
    are the percentiles of the plain bootstrap over queries, drawn here
    from ``default_rng(seed)`` as the queries of the nested one are."""
    scores = np.random.default_rng(1).uniform(0, 100, 60)
    num_resamples, seed = 500, 7
    rng = np.random.default_rng(seed)
    resampled = rng.integers(60, size=(num_resamples, 60))
    means = scores[resampled].mean(axis=1)
    expected = np.quantile(means, [0.05, 0.95])
    low, high = bootstrap_ci([scores],
                             num_resamples=num_resamples,
                             level=0.9,
                             seed=seed)
    assert (low, high) == pytest.approx(tuple(expected), rel=1e-12)


def test_one_trial_half_width_of_bernoulli_queries():
    """400 queries right or wrong at random: the 95% interval's half-width is
    about 1.96 standard errors of a proportion, 1.96 sqrt(p (1-p) / 400),
    in percent (about 4.9), and it is centred on the accuracy."""
    scores = bernoulli_scores(1, 400, seed=2)
    accuracy = scores.mean() / 100
    expected = 1.96 * math.sqrt(accuracy * (1 - accuracy) / 400) * 100
    low, high = bootstrap_ci(scores)
    assert width((low, high)) / 2 == pytest.approx(expected, rel=0.15)
    assert (low + high) / 2 == pytest.approx(100 * accuracy, abs=1)
    # a narrower level gives a narrower interval: 1.645 / 1.96 of it
    narrow = bootstrap_ci(scores, level=0.9)
    assert low < narrow[0] < narrow[1] < high
    assert width(narrow) / width((low, high)) == pytest.approx(
        1.645 / 1.96, rel=0.15)


def test_trial_variation_widens_the_interval():
    """Demos that change a query's score from trial to trial add their
    variance: a replicate's mean has variance Var(query means) / Q plus
    E[within-query variance] / (T Q), so trials spread around the same
    per-query means give a wider interval than those means as one trial."""
    rng = np.random.default_rng(0)
    means = rng.uniform(20, 80, 200)  # variance 300
    # 4 trials per query: mean + 40, - 40, + 40, - 40 (variance 1600): the
    # variance of a replicate grows by 1600 / 4 over 300, x 2.33, the width
    # by about 1.53
    offsets = np.array([40., -40., 40., -40.])[:, None]
    trials = means[None] + offsets
    np.testing.assert_allclose(trials.mean(axis=0), means)
    one_trial = bootstrap_ci([means])
    four_trials = bootstrap_ci(trials)
    assert width(four_trials) > 1.3 * width(one_trial)
    assert sum(four_trials) / 2 == pytest.approx(means.mean(), abs=2)
    # with equal query means, only the trials vary: one trial of the means
    # is degenerate, four trials are not
    flat = np.full(200, 50.)
    assert width(bootstrap_ci([flat])) == 0
    low, high = bootstrap_ci(flat[None] + offsets)
    assert low < 50 < high


def test_bad_input_is_a_clear_error():
    """Ragged rows, empty tables, a row instead of a table and a level
    outside (0, 1) raise ValueError."""
    with pytest.raises(ValueError, match=r'equal rows, got rows of \[2, 1\]'):
        bootstrap_ci([[1., 2.], [3.]])
    with pytest.raises(ValueError, match='num_resamples must be at least 1'):
        bootstrap_ci([[1., 2.]], num_resamples=0)
    for empty in ([], [[]], [[], []]):
        with pytest.raises(ValueError, match='non-empty'):
            bootstrap_ci(empty)
    with pytest.raises(ValueError, match=r'\(trials, queries\) table'):
        bootstrap_ci([1., 2., 3.])
    for level in (0, 1, 1.5, -0.1, 95):
        with pytest.raises(ValueError, match=r'level must be in \(0, 1\)'):
            bootstrap_ci([[1., 2.]], level=level)


def test_large_tables_are_resampled_in_blocks():
    """A table too large for one draw (here 2**21 queries: blocks of two
    replicates) gives the interval of its per-query scores' mean."""
    scores = np.tile([0., 100.], 1 << 20)[None]
    low, high = bootstrap_ci(scores, num_resamples=5, seed=0)
    # standard error of the mean of 2**21 fair 0/100 scores: about 0.035
    assert 49.8 < low <= high < 50.2


def test_interval_bars_are_never_negative():
    """Bars below and above each mean; a mean a hair outside its interval
    (rounded as the official VQA script rounds) gets a bar of 0."""
    from mmflamingo.evaluation.bootstrap import interval_bars
    below, above = interval_bars([50., 44.44], [[40., 55.], [44.444, 44.5]])
    assert below == pytest.approx([10., 0.])
    assert above == pytest.approx([5., 0.06])
