"""Bootstrap intervals cover known values at about their nominal rate; verdicts follow their rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rs_repro import verdicts


def _coverage(draw, truth, statistic=None, trials=300, k=40) -> float:
    covered = 0
    for trial in range(trials):
        rows = draw(torch.Generator().manual_seed(trial), k)
        kwargs = {} if statistic is None else {"statistic": statistic}
        interval = verdicts.bootstrap(rows, seed=trial, resamples=1000, **kwargs)
        covered += interval.lower <= truth <= interval.upper
    return covered / trials


def test_the_interval_of_a_mean_covers_it_at_about_95_percent():
    normal = _coverage(lambda g, k: (2.0 + torch.randn(k, generator=g, dtype=torch.float64)).numpy(), 2.0)
    # exponential, mean 1: skewed, where a percentile interval of 40 rows covers a little less
    skewed = _coverage(lambda g, k: torch.empty(k, dtype=torch.float64).exponential_(generator=g).numpy(), 1.0)
    # 300 trials: a binomial standard error of 1.3 points around the nominal 95%
    assert 0.91 <= normal <= 0.985 and 0.88 <= skewed <= 0.985


def test_paired_rows_stay_paired():
    def paired(g, k):
        shared = torch.randn(k, generator=g, dtype=torch.float64) * 5  # a large per-image effect
        return torch.stack([shared + 1.0, shared + 0.1 * torch.randn(k, generator=g, dtype=torch.float64)], 1).numpy()

    def difference(rows):
        return (rows[..., 0] - rows[..., 1]).mean(axis=-1)

    # the per-image effect cancels in the paired difference: the interval is narrow and covers 1
    assert _coverage(paired, 1.0, difference) >= 0.91
    interval = verdicts.bootstrap(paired(torch.Generator().manual_seed(0), 40), difference, seed=0)
    assert interval.upper - interval.lower < 0.2


def test_verdicts_read_the_interval_against_the_threshold():
    interval = verdicts.Interval(estimate=1.0, lower=0.5, upper=1.5, confidence=0.95, rows=10)
    assert verdicts.verdict(interval, 0.4) == verdicts.HOLDS
    assert verdicts.verdict(interval, 1.6) == verdicts.FAILS
    assert verdicts.verdict(interval, 1.0) == verdicts.UNDECIDED
    assert verdicts.verdict(interval, 1.6, above=False) == verdicts.HOLDS
    assert verdicts.verdict(interval, 0.4, above=False) == verdicts.FAILS
    assert str(interval) == "1 [0.5, 1.5]"


def test_same_seed_same_interval_and_bad_rows_are_refused():
    rows = np.arange(10.0)
    assert verdicts.bootstrap(rows, seed=3) == verdicts.bootstrap(rows, seed=3)
    assert verdicts.bootstrap(rows, seed=3) != verdicts.bootstrap(rows, seed=4)
    assert verdicts.bootstrap(rows, seed=3).estimate == 4.5
    with pytest.raises(ValueError, match="rows must be finite measurements only"):
        verdicts.bootstrap(np.array([1.0, np.inf, 2.0]), seed=0)
    with pytest.raises(ValueError, match="rows must be an array"):
        verdicts.bootstrap(np.array([1.0]), seed=0)
    with pytest.raises(ValueError, match="confidence must be"):
        verdicts.bootstrap(rows, seed=0, confidence=1.0)
