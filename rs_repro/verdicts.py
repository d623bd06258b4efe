"""Verdicts with their uncertainty: a seeded bootstrap interval and the rule that turns it into a verdict.

DESIGN.md, "Verdicts": a claim is judged on per-image quantities (for a comparison, the per-image paired
differences of two configurations attacked on the same images), through a bootstrap interval of the statistic
the claim is about, and the verdict is read off the interval against the claim's threshold: it *holds* when
the whole interval lies on the claim's side, *does not hold* when it lies on the other side, and is
*undecided* when it contains the threshold. Resampling draws from a :class:`torch.Generator` derived from a
recorded seed, so the same measurements give the same interval.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from . import checks
from .seeds import generator

#: The verdict when the whole interval lies on the claim's side of its threshold.
HOLDS = "holds"
#: The verdict when the whole interval lies on the other side.
FAILS = "does not hold"
#: The verdict when the interval contains the threshold.
UNDECIDED = "undecided"


@dataclass(frozen=True)
class Interval:
    """A statistic and its bootstrap confidence interval.

    Attributes
    ----------
    estimate : float
        The statistic on the measured rows.
    lower, upper : float
        Percentile bootstrap interval at ``confidence``.
    confidence : float
    rows : int
        Number of rows (images) resampled.
    """

    estimate: float
    lower: float
    upper: float
    confidence: float
    rows: int

    def __str__(self) -> str:
        return f"{self.estimate:.3g} [{self.lower:.3g}, {self.upper:.3g}]"


def _mean(rows: np.ndarray) -> np.ndarray:
    """The mean of the first column over the k rows of ``rows`` [..., k, m]: the default statistic."""
    return rows[..., 0].mean(axis=-1)


def bootstrap(rows: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray] = _mean, *, seed: int,
              confidence: float = 0.95, resamples: int = 4000) -> Interval:
    """Percentile bootstrap interval of ``statistic`` over the rows (images) of ``rows``.

    Parameters
    ----------
    rows : numpy.ndarray, shape [k] or [k, m]
        One row per image; the columns of a row are resampled together, so paired measurements stay paired
        (e.g. the distortions of two configurations on the same image).
    statistic : callable
        Maps an array [..., k, m] to the statistic [...] over its k rows, vectorised over the leading axes
        (the resamples); by default the mean of the first column.
    seed : int
        Resampling draws from ``rs_repro.seeds.generator(seed, "bootstrap")``.
    confidence : float
        In (0, 1).
    resamples : int
        Bootstrap resamples.

    Returns
    -------
    Interval
    """
    values = np.asarray(rows, dtype=np.float64)
    values = values[:, None] if values.ndim == 1 else values
    checks.require(values.ndim == 2 and len(values) >= 2, "rows", values.shape, "an array [k] or [k, m] with k >= 2")
    checks.require(bool(np.isfinite(values).all()), "rows", "non-finite values", "finite measurements only")
    confidence = checks.real("confidence", confidence, 0, 1)
    resamples = checks.integer("resamples", resamples, 1)
    k = len(values)
    picks = torch.randint(k, (resamples, k), generator=generator(seed, "bootstrap")).numpy()
    replicates = np.asarray(statistic(values[picks]), dtype=np.float64)
    tail = (1 - confidence) / 2
    lower, upper = np.quantile(replicates, [tail, 1 - tail])
    return Interval(float(statistic(values[None])[0]), float(lower), float(upper), confidence, k)


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
