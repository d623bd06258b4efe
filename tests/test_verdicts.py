"""Bootstrap intervals cover known values at about their nominal rate; verdicts follow their rule."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from rs_repro import theory
from rs_repro.report import verdicts


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
    with pytest.raises(ValueError, match="rows must be free of NaN"):
        verdicts.bootstrap(np.array([1.0, np.nan, 2.0]), seed=0)
    with pytest.raises(ValueError, match="rows must be an array"):
        verdicts.bootstrap(np.array([1.0]), seed=0)
    with pytest.raises(ValueError, match="confidence must be"):
        verdicts.bootstrap(rows, seed=0, confidence=1.0)
    # the mean of -inf and inf is NaN: a statistic that gives NaN is refused
    with pytest.raises(ValueError, match="statistic must be a statistic without NaN"):
        verdicts.bootstrap(np.array([-np.inf, np.inf, 1.0]), seed=0)


def test_the_median_is_inf_aware_and_never_nan():
    assert verdicts.median([3.0, 1.0, 2.0]) == 2.0 and verdicts.median([1.0, 2.0, 3.0, 4.0]) == 2.5
    assert verdicts.median([1.0, np.inf]) == np.inf and verdicts.median([np.inf, np.inf, 1.0]) == np.inf
    assert verdicts.median([-np.inf, np.inf]) == 0.0 and verdicts.median([-np.inf, -np.inf, 5.0]) == -np.inf
    # several axes pool their values; the others stay
    values = np.arange(12.0).reshape(2, 3, 2)
    assert np.array_equal(verdicts.median(values, axis=(0, 2)), [3.5, 5.5, 7.5])
    assert np.array_equal(verdicts.median(values), np.median(values, axis=-1))
    with pytest.raises(ValueError, match="values must be at least one value, no NaN"):
        verdicts.median([1.0, np.nan])


def test_paired_differences_and_ratios_of_failures():
    inf = np.inf
    assert np.array_equal(verdicts.paired_difference([inf, inf, 1.0, 3.0], [inf, 1.0, inf, 1.0]), [0.0, inf, -inf, 2.0])
    assert np.array_equal(verdicts.paired_difference([[1.0], [2.0]], [1.0, 0.5]), [[0.0, 0.5], [1.0, 1.5]])
    ratios = verdicts.ratio([inf, 0.0, 1.0, 1.0, 6.0], [inf, 0.0, 0.0, inf, 3.0])
    assert np.array_equal(ratios, [1.0, 1.0, inf, 0.0, 2.0])


def test_infinite_values_give_intervals_without_nan():
    # half of the images failed (inf): the median is inf and so is the upper bound, the lower one finite
    rows = np.array([1.0, 2.0, 3.0, np.inf, np.inf, np.inf])
    interval = verdicts.bootstrap(rows, lambda r: verdicts.median(r[..., 0]), seed=0)
    assert interval.estimate == np.inf and interval.upper == np.inf and np.isfinite(interval.lower)
    assert verdicts.verdict(interval, 0.5) == verdicts.HOLDS
    # paired: a failure on both configurations of an image counts as no difference
    pairs = np.array([[np.inf, np.inf], [2.0, 1.0], [3.0, 1.0], [np.inf, 1.0], [np.inf, np.inf]])
    interval = verdicts.bootstrap(pairs, lambda r: verdicts.median(verdicts.paired_difference(r[..., 0], r[..., 1])),
                                  seed=0)
    assert interval.estimate == 1.0 and interval.lower == 0.0 and interval.upper == np.inf
    assert str(interval) == "1 [0, inf]"


def test_proportions_and_their_differences():
    interval = verdicts.proportion(5, 10)
    lower, upper = theory.clopper_pearson(5, 10, 0.05)
    assert interval == verdicts.Interval(0.5, lower, upper, 0.95, 10)
    assert verdicts.proportion(0, 10).lower == 0.0 and verdicts.proportion(10, 10).upper == 1.0
    # the difference of two intervals excludes 0 exactly when they do not overlap
    low, high = verdicts.proportion(400, 1000, 0.975), verdicts.proportion(800, 1000, 0.975)
    gap = verdicts.difference(low, high)
    assert gap.estimate == pytest.approx(-0.4) and gap.upper == pytest.approx(low.upper - high.lower)
    assert gap.upper < 0
    assert gap.confidence == pytest.approx(0.95)
    close = verdicts.difference(verdicts.proportion(10, 20), verdicts.proportion(12, 20))
    assert close.lower < 0 < close.upper


def test_equivalence_and_conjunction_rules():
    inside = verdicts.Interval(estimate=1.0, lower=0.9, upper=1.1, confidence=0.95, rows=10)
    assert verdicts.verdict_within(inside, 0.75, 1.25) == verdicts.HOLDS
    assert verdicts.verdict_within(inside, 0.95, 1.25) == verdicts.UNDECIDED
    assert verdicts.verdict_within(inside, 1.2, 1.5) == verdicts.FAILS
    assert verdicts.verdict_within(inside, 0.1, 0.8) == verdicts.FAILS
    holds, fails, undecided = verdicts.HOLDS, verdicts.FAILS, verdicts.UNDECIDED
    assert verdicts.all_of([holds, holds]) == holds
    assert verdicts.all_of([holds, undecided]) == undecided
    assert verdicts.all_of([undecided, fails, holds]) == fails
    with pytest.raises(ValueError, match="verdicts must be a non-empty list"):
        verdicts.all_of([])


def test_the_median_interval_is_the_order_statistic_interval_of_the_sign_test():
    # k = 10 at 95%: P[Bin(10, 1/2) < 2] = 11/1024 <= 0.025 < P[Bin(10, 1/2) < 3] = 56/1024, so [x_(2), x_(9)]
    interval = verdicts.median_interval([7, 3, 1, 10, 2, 9, 4, 8, 6, 5])
    assert (interval.estimate, interval.lower, interval.upper, interval.rows) == (5.5, 2, 9, 10)
    # k = 6 is the smallest with an interval at 95% (1/64 <= 0.025); k = 5 gives none (1/32 > 0.025)
    assert (verdicts.median_interval(range(6)).lower, verdicts.median_interval(range(6)).upper) == (0, 5)
    five = verdicts.median_interval([1.0, 2.0, 3.0, 4.0, math.inf])
    assert (five.estimate, five.lower, five.upper) == (3.0, -math.inf, math.inf)
    # distribution-free: it covers the median of a skewed law at least at its level
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(500):
        found = verdicts.median_interval(rng.exponential(size=15))
        hits += found.lower <= np.log(2) <= found.upper
    assert hits / 500 >= 0.93  # exact coverage at k = 15: 1 - 2 P[Bin(15, 1/2) < 4] = 0.965
    with pytest.raises(ValueError, match="values"):
        verdicts.median_interval([])


def test_bonferroni_shares_the_confidence_and_decides_a_union_as_holm_does():
    # hand-worked: 5 intervals at 95% together are each at 1 - 0.05 / 5 = 0.99; one interval is left as it is
    assert verdicts.bonferroni(0.95, 5) == pytest.approx(0.99) and verdicts.bonferroni(0.95, 1) == 0.95
    assert verdicts.bonferroni(0.9, 4) == pytest.approx(0.975)
    with pytest.raises(ValueError, match="tests"):
        verdicts.bonferroni(0.95, 0)

    def holm(p_values, alpha):
        """Holm's step-down: reject the i-th smallest p-value while it is at most alpha / (m - i)."""
        rejected = 0
        for i, p in enumerate(sorted(p_values)):
            if p > alpha / (len(p_values) - i):
                break
            rejected += 1
        return rejected

    # hand-worked Holm: p = 0.01, 0.02, 0.03, 0.04 at 0.05: 0.01 <= 0.05/4 rejects, 0.02 > 0.05/3 stops
    assert holm([0.04, 0.01, 0.03, 0.02], 0.05) == 1
    # "some hypothesis rejected" is the same event for Holm and for Bonferroni (min p <= alpha / m)
    rng = np.random.default_rng(0)
    for p_values in rng.uniform(0, 0.1, (2000, 6)):
        assert (holm(p_values, 0.05) > 0) == (p_values.min() <= 1 - verdicts.bonferroni(0.95, 6))


def test_bonferroni_intervals_cover_together_at_the_family_confidence():
    # 6 means of 100 images, each with its bootstrap interval at the corrected level: all 6 cover in about 95% of
    # the trials; at 95% each, far fewer. (With 40 images the percentile bootstrap's small-sample undercoverage
    # shows: about 90% for the family, as about 93% for one 95% interval above.)
    rng = np.random.default_rng(1)
    together, each = [], []
    for trial in range(200):
        rows = rng.standard_normal((100, 6))
        corrected = [verdicts.bootstrap(rows[:, j], seed=trial, confidence=verdicts.bonferroni(0.95, 6))
                     for j in range(6)]
        plain = [verdicts.bootstrap(rows[:, j], seed=trial, resamples=1000) for j in range(6)]
        together.append(all(i.lower <= 0 <= i.upper for i in corrected))
        each.append(all(i.lower <= 0 <= i.upper for i in plain))
    # 200 trials: a binomial standard error of 1.5 points around 95%; 0.95^6 = 0.74 without the correction
    assert np.mean(together) >= 0.9 and np.mean(each) < 0.85


def test_a_corrected_interval_has_enough_resamples_in_its_tails():
    rows = np.arange(30.0)
    # at 1 - 0.05 / 42, each tail is 0.06% of the resamples: 20 of them need 33,600 resamples
    wide = verdicts.bootstrap(rows, seed=0, confidence=verdicts.bonferroni(0.95, 42))
    narrow = verdicts.bootstrap(rows, seed=0)
    assert wide.lower < narrow.lower and wide.upper > narrow.upper and wide.confidence == pytest.approx(1 - 0.05 / 42)
    assert math.ceil(verdicts.TAIL_RESAMPLES / (0.05 / 42 / 2)) == 33_600


def test_mcnemar_is_the_exact_binomial_test_on_the_discordant_pairs():
    from scipy import stats

    # 8 images right for the first only, 2 for the second only, 90 for both or neither
    first = np.array([True] * 8 + [False] * 2 + [True] * 60 + [False] * 30)
    second = np.array([False] * 8 + [True] * 2 + [True] * 60 + [False] * 30)
    # hand-worked: two-sided p = 2 P[Bin(10, 1/2) <= 2] = 2 (1 + 10 + 45) / 1024
    assert verdicts.mcnemar(first, second) == pytest.approx(2 * 56 / 1024)
    assert verdicts.mcnemar(first, second, "greater") == pytest.approx(56 / 1024)
    assert verdicts.mcnemar(first, second, "less") == pytest.approx(stats.binomtest(8, 10, 0.5, "less").pvalue)
    assert verdicts.mcnemar(second, first, "less") == pytest.approx(56 / 1024)
    # the concordant images do not count; without discordant ones nothing is seen
    assert verdicts.mcnemar(first[:10], second[:10]) == verdicts.mcnemar(first, second)
    assert verdicts.mcnemar(first, first) == 1.0
    with pytest.raises(ValueError, match="first, second"):
        verdicts.mcnemar(first, second[:5])


def test_no_number_is_printed_across_its_threshold():
    assert verdicts.shown(2.95) == "2.95" and verdicts.shown(2.9996) == "3"
    assert verdicts.shown(2.9996, [3]) == "2.9996" and verdicts.shown(3.0004, [3]) == "3.0004"
    assert verdicts.shown(3.0, [3]) == "3" and verdicts.shown(-math.inf, [3]) == "-inf"
    assert verdicts.shown(1.1499, [0.87, 1.15]) == "1.1499"
    # an interval prints each bound on the side of its thresholds
    interval = verdicts.Interval(29.996, 29.991, 30.2, 0.95, 10, thresholds=(30.0,))
    assert str(interval) == "29.996 [29.99, 30.2]"
    assert str(dataclasses.replace(interval, thresholds=())) == "30 [30, 30.2]"
    assert interval == dataclasses.replace(interval, thresholds=())  # the thresholds are not compared


def test_a_median_is_finite_only_where_fewer_than_half_fail():
    inf = np.inf
    assert verdicts.median([1.0, 2.0, 3.0, inf]) == 2.5  # one of four failed
    assert verdicts.median([1.0, 2.0, inf, inf]) == inf  # half failed
    assert verdicts.median([1.0, 2.0, 3.0, inf, inf]) == 3.0 and verdicts.median([1.0, 2.0, inf, inf, inf]) == inf


def test_images_to_decide_scales_the_half_width_toward_the_threshold():
    from rs_repro.report.verdicts import Interval, images_to_decide

    # half-width 0.4 toward 0, effect 0.3: 20 * (0.4 / 0.3)**2 = 35.6 images
    assert images_to_decide(Interval(0.3, -0.1, 0.7, 0.95, 20, thresholds=(0.0,))) == 36
    # the other side: estimate below the threshold 1.15, upper end above it
    assert images_to_decide(Interval(1.0, 0.9, 1.2, 0.95, 50, thresholds=(1.15,))) == math.ceil(50 * (0.2 / 0.15) ** 2)
    assert images_to_decide(Interval(0.3, 0.1, 0.7, 0.95, 20, thresholds=(0.0,))) is None  # decided already
    assert images_to_decide(Interval(0.0, -0.1, 0.1, 0.95, 20, thresholds=(0.0,))) is None  # a null effect
    assert images_to_decide(Interval(0.3, -0.1, np.inf, 0.95, 20, thresholds=(0.0,))) is None
