"""Verdicts with their uncertainty: seeded bootstrap and exact binomial intervals, and the rules that read them.

``docs/architecture.md``, "Measurements and verdicts": a claim of the paper (Maho, Furon, Le Merrer, ICASSP
2022) is judged on per-image quantities (for a comparison, the per-image paired differences of two configurations attacked on the same
images), through a 95% interval of the statistic the claim is about, and the verdict is read off the
interval against the claim's threshold: it *holds* when the whole interval lies on the claim's side, *does
not hold* when it lies on the other side, and is *undecided* when it contains the threshold. Resampling
draws from a :class:`torch.Generator` derived from a recorded seed, so the same measurements give the same
interval.

Distortions are inf where an attack found no adversarial point (a failure counts as larger than any
distortion), so the statistics here are inf-aware and never NaN: :func:`median` returns a sample value or
the average of two, :func:`paired_difference` takes inf - inf as 0 and :func:`ratio` takes equal values in
ratio 1.

A rule that reads several intervals shares its confidence among them (:func:`bonferroni`); two classifiers'
answers on the same images are compared by the exact McNemar test (:func:`mcnemar`); and a number printed
beside its threshold keeps its side of it (:func:`shown`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy import stats

from rs_repro import checks
from rs_repro.seeds import generator
from rs_repro.theory import clopper_pearson

#: The verdict when the whole interval lies on the claim's side of its threshold.
HOLDS = "holds"
#: The verdict when the whole interval lies on the other side.
FAILS = "does not hold"
#: The verdict when the interval contains the threshold.
UNDECIDED = "undecided"

#: The family-wise confidence of the intervals a verdict reads (:func:`bonferroni` shares it among several).
CONFIDENCE = 0.95
#: The bootstrap resamples of a 95% interval.
RESAMPLES = 4000
#: :func:`bootstrap` draws enough resamples for each tail of its interval to hold at least this many.
TAIL_RESAMPLES = 20

#: Maps per-image rows [..., k, m] to a statistic [...] over their k rows, vectorised over the leading axes.
Statistic = Callable[[np.ndarray], np.ndarray]


def shown(value: float, thresholds: Sequence[float] = (), digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits, or more where fewer would move it onto or across one of
    ``thresholds``: the printed number lies on the same side of every threshold as the value itself.

    Examples
    --------
    >>> shown(2.95), shown(2.95, [3]), shown(3.0, [3]), shown(float("inf"), [3])
    ('2.95', '2.95', '3', 'inf')
    >>> shown(2.9996, [3])
    '2.9996'
    """
    for places in range(digits, 18):
        text = f"{value:.{places}g}"
        if all(np.sign(float(text) - t) == np.sign(value - t) for t in thresholds):
            return text
    return repr(value)


@dataclass(frozen=True)
class Interval:
    """A statistic and its confidence interval.

    Attributes
    ----------
    estimate : float
        The statistic on the measured rows.
    lower, upper : float
        The interval at ``confidence`` (either may be infinite).
    confidence : float
    rows : int
        Number of rows (images) behind it; for a proportion, its trials.
    thresholds : tuple of float
        The thresholds a verdict reads it against: its text (``str``) never rounds a number onto or across
        one of them (:func:`shown`). Not compared.
    """

    estimate: float
    lower: float
    upper: float
    confidence: float
    rows: int
    thresholds: tuple[float, ...] = field(default=(), compare=False)

    def __str__(self) -> str:
        estimate, lower, upper = (shown(v, self.thresholds) for v in (self.estimate, self.lower, self.upper))
        return f"{estimate} [{lower}, {upper}]"


def images_to_decide(interval: Interval) -> int | None:
    """How many images would decide an undecided interval at its measured effect.

    The threshold nearest the estimate inside the interval is at a distance g from it; the interval reaches it
    with a half-width h on that side. Half-widths shrink as 1 / sqrt(images), so about ``rows * (h / g)**2``
    images (rounded up) would give an interval that stops short of the threshold, if the effect stays as
    measured. ``None`` when no threshold lies inside the interval, an end or the estimate is infinite, or the
    estimate sits on the threshold (no number of images decides a null effect).

    Examples
    --------
    >>> images_to_decide(Interval(0.3, -0.1, 0.7, 0.95, 20, thresholds=(0.0,)))
    36
    """
    values = (interval.estimate, interval.lower, interval.upper)
    inside = [t for t in interval.thresholds if interval.lower <= t <= interval.upper]
    if not inside or not all(math.isfinite(v) for v in values):
        return None
    threshold = min(inside, key=lambda t: abs(interval.estimate - t))
    gap = abs(interval.estimate - threshold)
    if gap == 0:
        return None
    half = interval.estimate - interval.lower if threshold < interval.estimate else interval.upper - interval.estimate
    return math.ceil(interval.rows * (half / gap) ** 2)


def median(values: ArrayLike, axis: int | tuple[int, ...] = -1) -> np.ndarray:
    """The median over ``axis`` (several axes: over all their values together), inf-aware and never NaN.

    With an even count it is the average of the two middle values, as :func:`numpy.median`, except that
    two middle values of opposite infinite signs average to 0 (where numpy gives NaN); a single infinite
    middle value makes the median infinite. A failure counted as inf is thus censored: the median is finite
    exactly when fewer than half of the values are infinite.

    Parameters
    ----------
    values : array_like
        Real values, possibly infinite; no NaN.
    axis : int or tuple of int
        The axis, or axes pooled, the median is taken over.

    Returns
    -------
    numpy.ndarray
        The other axes, in order (a 0-d array for a vector).
    """
    x = np.asarray(values, dtype=np.float64)
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    x = np.moveaxis(x, axes, tuple(range(-len(axes), 0)))
    x = x.reshape(*x.shape[:x.ndim - len(axes)], -1)
    checks.require(x.shape[-1] >= 1 and not np.isnan(x).any(), "values", x.shape, "at least one value, no NaN")
    ordered = np.sort(x, axis=-1)
    low, high = ordered[..., (x.shape[-1] - 1) // 2], ordered[..., x.shape[-1] // 2]
    with np.errstate(invalid="ignore"):
        middle = low / 2 + high / 2
    return np.where(low == high, low, np.where(np.isnan(middle), 0.0, middle))


def paired_difference(first: ArrayLike, second: ArrayLike) -> np.ndarray:
    """``first - second`` elementwise (broadcast), with equal values at difference 0 (inf - inf = 0).

    For two distortions of one image, inf - finite = inf: the attack failed on the first configuration only.
    """
    a, b = np.broadcast_arrays(np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64))
    with np.errstate(invalid="ignore"):
        return np.where(a == b, 0.0, a - b)


def ratio(numerator: ArrayLike, denominator: ArrayLike) -> np.ndarray:
    """``numerator / denominator`` of non-negative quantities (distortions, radii), elementwise (broadcast).

    Equal values are in ratio 1 (inf/inf and 0/0 included), x/0 = inf for x > 0 and x/inf = 0 for finite x.
    """
    a, b = np.broadcast_arrays(np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a == b, 1.0, a / b)


def _mean(rows: np.ndarray) -> np.ndarray:
    """The mean of the first column over the k rows of ``rows`` [..., k, m]: the default statistic."""
    return rows[..., 0].mean(axis=-1)


def bootstrap(rows: ArrayLike, statistic: Statistic = _mean, *, seed: int, confidence: float = CONFIDENCE,
              resamples: int | None = None) -> Interval:
    """Percentile bootstrap interval of ``statistic`` over the rows (images) of ``rows``.

    Parameters
    ----------
    rows : array_like, shape [k] or [k, m]
        One row per image; the columns of a row are resampled together, so paired measurements stay paired
        (e.g. the distortions of two configurations on the same image). Values may be infinite (an attack
        that found nothing); NaN is refused.
    statistic : Statistic
        Maps an array [..., k, m] to the statistic [...] over its k rows, vectorised over the leading axes
        (the resamples); by default the mean of the first column. It must give no NaN.
    seed : int
        Resampling draws from ``rs_repro.seeds.generator(seed, "bootstrap")``: the same seed and number of
        rows give the same resamples, so intervals of one seed resample the images jointly.
    confidence : float
        In (0, 1).
    resamples : int or None
        Bootstrap resamples; by default :data:`RESAMPLES`, or more where a tail of the interval (``(1 - confidence) / 2``)
        would hold fewer than :data:`TAIL_RESAMPLES` of them (a Bonferroni-corrected interval).

    Returns
    -------
    Interval
        The bounds are order statistics of the resampled statistic, rounded outward (numpy's ``lower`` and
        ``higher`` quantiles), so an infinite statistic gives an infinite bound and never NaN.
    """
    values = np.asarray(rows, dtype=np.float64)
    values = values[:, None] if values.ndim == 1 else values
    checks.require(values.ndim == 2 and len(values) >= 2, "rows", values.shape, "an array [k] or [k, m] with k >= 2")
    checks.require(not np.isnan(values).any(), "rows", "NaN values", "free of NaN (inf marks a failed attack)")
    confidence = checks.real("confidence", confidence, 0, 1)
    tail = (1 - confidence) / 2
    resamples = checks.integer("resamples", max(RESAMPLES, math.ceil(TAIL_RESAMPLES / tail))
                               if resamples is None else resamples, 1)
    k = len(values)
    picks = torch.randint(k, (resamples, k), generator=generator(seed, "bootstrap")).numpy()
    with np.errstate(invalid="ignore"):  # a NaN is refused just below
        replicates = np.asarray(statistic(values[picks]), dtype=np.float64)
        estimate = float(statistic(values[None])[0])
    checks.require(not (np.isnan(replicates).any() or np.isnan(estimate)), "statistic", "NaN",
                   "a statistic without NaN")
    lower = np.quantile(replicates, tail, method="lower")
    upper = np.quantile(replicates, 1 - tail, method="higher")
    return Interval(estimate, float(lower), float(upper), confidence, k)


def median_interval(values: ArrayLike, confidence: float = CONFIDENCE) -> Interval:
    """The median of ``values`` with its distribution-free (order-statistic) interval, the dual of the sign test.

    With the k values sorted, the interval is [x_(j), x_(k+1-j)] (1-based) for the largest j such that
    P[Binomial(k, 1/2) < j] <= (1 - confidence) / 2, so it covers the population median with probability
    at least ``confidence`` whatever the distribution; it excludes a value m exactly when the two-sided
    sign test of "the median is m" rejects at level 1 - ``confidence``. Too few values for any j (fewer
    than 6 at 95%) give the interval (-inf, inf). No resampling, so no seed.

    Parameters
    ----------
    values : array_like, shape [k]
        Real values, k >= 1, possibly infinite; no NaN.
    confidence : float
        In (0, 1).

    Returns
    -------
    Interval
        The estimate is :func:`median`; ``rows`` is k.

    Examples
    --------
    >>> str(median_interval(range(1, 11)))
    '5.5 [2, 9]'
    """
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    confidence = checks.real("confidence", confidence, 0, 1)
    k = len(x)
    estimate = float(median(x))  # refuses an empty or NaN input
    below = stats.binom.cdf(np.arange(k), k, 0.5)  # below[j - 1] = P[Binomial(k, 1/2) < j]
    j = int(np.count_nonzero(below <= (1 - confidence) / 2))
    if j == 0:
        return Interval(estimate, -np.inf, np.inf, confidence, k)
    return Interval(estimate, float(x[j - 1]), float(x[k - j]), confidence, k)


def proportion(successes: int, trials: int, confidence: float = CONFIDENCE) -> Interval:
    """The proportion ``successes / trials`` with its exact (Clopper-Pearson) interval at ``confidence``
    (:func:`rs_repro.theory.clopper_pearson`)."""
    confidence = checks.real("confidence", confidence, 0, 1)
    lower, upper = clopper_pearson(successes, trials, 1 - confidence)
    return Interval(successes / trials, float(lower), float(upper), confidence, trials)


def difference(first: Interval, second: Interval) -> Interval:
    """``first - second`` with the interval [first.lower - second.upper, first.upper - second.lower].

    It covers the difference whenever both intervals cover their values, so with confidence at least
    ``first.confidence + second.confidence - 1`` (Bonferroni), and it excludes 0 exactly when the two
    intervals do not overlap.
    """
    return Interval(first.estimate - second.estimate, first.lower - second.upper, first.upper - second.lower,
                    first.confidence + second.confidence - 1, min(first.rows, second.rows))


def bonferroni(confidence: float, tests: int) -> float:
    """The confidence of each of ``tests`` intervals for all of them to cover together with probability at
    least ``confidence`` (Bonferroni): ``1 - (1 - confidence) / tests``.

    A rule that says "does not hold" when *any* of its intervals lies on the other side of its threshold (a
    union) reads each at this confidence, so that it errs with probability at most ``1 - confidence``. Holm's
    step-down correction rejects some hypothesis exactly when the smallest p-value is below
    ``(1 - confidence) / tests``, as Bonferroni's, so for such a rule it would decide the same.

    Examples
    --------
    >>> round(bonferroni(0.95, 5), 12), bonferroni(0.95, 1)
    (0.99, 0.95)
    """
    confidence = checks.real("confidence", confidence, 0, 1)
    return 1 - (1 - confidence) / checks.integer("tests", tests, 1)


def mcnemar(first: ArrayLike, second: ArrayLike, alternative: str = "two-sided") -> float:
    """Exact McNemar test that two classifiers are equally accurate, from their answers on the same items.

    Only the discordant items count: under equal accuracy, each is right for ``first`` only with probability
    1/2, so the number b of those among the d discordant ones is Binomial(d, 1/2).

    Parameters
    ----------
    first, second : array_like of bool, shape [k]
        Whether each classifier is right on each item, the same items in the same order.
    alternative : {"two-sided", "less", "greater"}
        "less": the alternative that ``first`` is less accurate than ``second``; "greater": more accurate.

    Returns
    -------
    float
        The exact p-value, :func:`scipy.stats.binomtest` of b among d at 1/2; 1 without a discordant item.
    """
    a, b = np.asarray(first, dtype=bool), np.asarray(second, dtype=bool)
    checks.require(a.shape == b.shape and a.ndim == 1, "first, second", (a.shape, b.shape),
                   "two vectors of the same length")
    only_first, discordant = int(np.sum(a & ~b)), int(np.sum(a != b))
    if discordant == 0:
        return 1.0
    return float(stats.binomtest(only_first, discordant, 0.5, alternative=alternative).pvalue)


def verdict(interval: Interval, threshold: float, *, above: bool = True) -> str:
    """The verdict on "the statistic is above ``threshold``" (``above=False``: below it).

    :data:`HOLDS` when the whole interval is on the claim's side, :data:`FAILS` when it is on the other side,
    :data:`UNDECIDED` when it contains the threshold.
    """
    low, high = (interval.lower, interval.upper) if above else (-interval.upper, -interval.lower)
    bound = threshold if above else -threshold
    if low > bound:
        return HOLDS
    if high < bound:
        return FAILS
    return UNDECIDED


def verdict_within(interval: Interval, low: float, high: float) -> str:
    """The verdict on "the statistic lies between ``low`` and ``high``" (an equivalence, e.g. "within 25%").

    :data:`HOLDS` when the whole interval is inside (low, high), :data:`FAILS` when it lies wholly below
    ``low`` or wholly above ``high``, :data:`UNDECIDED` otherwise.
    """
    if low < interval.lower and interval.upper < high:
        return HOLDS
    if interval.upper < low or interval.lower > high:
        return FAILS
    return UNDECIDED


def all_of(verdicts: Iterable[str]) -> str:
    """The verdict on a claim made of parts: :data:`FAILS` if one part fails, :data:`HOLDS` if every part
    holds, :data:`UNDECIDED` otherwise."""
    found = list(verdicts)
    checks.require(bool(found) and set(found) <= {HOLDS, FAILS, UNDECIDED}, "verdicts", found,
                   f"a non-empty list of {HOLDS!r}, {FAILS!r}, {UNDECIDED!r}")
    if FAILS in found:
        return FAILS
    return HOLDS if set(found) == {HOLDS} else UNDECIDED
