"""Compute functions of the ``fig1_adversarial_probability`` chapter: Fig. 1 of the paper.

Maho, Furon and Le Merrer (ICASSP 2022, section 3.3 and Fig. 1) attack an image x_o white-box to get the
closest adversarial example x_a on the boundary of the base classifier f, then walk past it along the
ray ``x(t) = x_a + t u``, ``u = (x_a - x_o) / ||x_a - x_o||``. Under randomized smoothing the image stays
correctly classified well beyond x_a: the boundary of g_sigma lies further out (eq. (3): the boundary of
f curves away from x_o), and the probability that the random vote g_{sigma,n} is wrong rises from 0 to 1
over a transition that is wider for small n. Here, for each image:

* :func:`scan` draws, at every point of the ray, a pool of noisy micro-decisions f(x(t) + sigma N_i)
  (:meth:`rs_repro.smoothing.Smooth.counts`). Their class frequencies estimate the class probabilities of
  g_sigma (where another class overtakes the label is the boundary of g_sigma); cut into consecutive
  groups of n draws they are independent votes of g_{sigma,n}, whose wrong fraction estimates
  P[g_{sigma,n}(x(t)) != y] with a Clopper-Pearson band. The votes of different n share the pool (they
  are correlated across n, never within one n);
* :func:`first_reach` turns a curve into the distance past x_a at which it reaches a level: the boundary
  of g_sigma, or the levels P_a = 0.5 and 0.8 of eq. (4).
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn

from .. import theory
from ..attacks.minimal import MinimalAdversarial
from ..smoothing import Smooth

#: The paper's Fig. 1 read off the figure (``paper-notes.md`` section 2; ImageNet, ResNet50, one image):
#: distances past x_a, in l2, where the boundary of g_sigma is crossed (the text says about 4.0), where
#: P[g_{sigma,n} != y] reaches 0.8, and where it reaches about 1, per n; sigma is not stated, 0.05 is likely.
PAPER_READINGS: dict[str, Any] = {
    "crossing": 4.0,
    "sigma": 0.05,
    "distance_at_0.8": {5: 4.25, 10: 4.1, 50: 4.1},
    "distance_at_1": {5: 5.0, 10: 4.7, 50: 4.3},
}


#: Largest number of input values (points x repeats x pixels) :func:`scan` gives one call of Smooth.counts.
SCAN_BLOCK_FLOATS = 2**22


@dataclass
class Scan:
    """What :func:`scan` measures along the ray of one image.

    Attributes
    ----------
    profile : pandas.DataFrame
        One row per point: ``t, draws, p_label`` (frequency of the label among the draws), ``p_other``
        (largest frequency of another class), ``other_class`` (that class).
    votes : pandas.DataFrame
        One row per point and n: ``t, n, votes, wrong`` (votes whose majority is not the label),
        ``p`` (= wrong / votes), ``lower, upper`` (two-sided Clopper-Pearson band at level 1 - alpha).
    """

    profile: pd.DataFrame
    votes: pd.DataFrame


def correct_images(model: nn.Module, x: torch.Tensor, y: torch.Tensor, count: int) -> torch.Tensor:
    """Positions (int64 [<= count]) of the first ``count`` images of ``x`` [B, C, H, W] that f classifies as ``y``."""
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:
        raise ValueError(f"count must be an integer >= 1, got {count!r}")
    with torch.inference_mode():
        right = model(x).argmax(1).cpu() == y.cpu()
    return right.nonzero().squeeze(1)[:count]


def directions(x_o: torch.Tensor, attack: MinimalAdversarial) -> torch.Tensor:
    """Unit directions ``u = (x_a - x_o) / ||x_a - x_o||`` [B, C, H, W] of the rays of Fig. 1."""
    if not bool(attack.success.all()):
        raise ValueError(f"every attack must have succeeded to define a ray; images "
                         f"{(~attack.success).nonzero().flatten().tolist()} have no adversarial example")
    delta = attack.x_a - x_o
    return delta / delta.flatten(1).norm(dim=1).view(-1, *([1] * (x_o.dim() - 1)))


def box_exit(x_a: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Largest t >= 0 (float64 [B]) with ``x_a + t u`` inside the pixel box [0, 1]^d, per image.

    The scan does not clip the ray (nor does smoothing clip its noisy inputs); this says how far past x_a
    the points remain images.
    """
    a, v = x_a.flatten(1).double(), u.flatten(1).double()
    room = torch.where(v > 0, (1 - a) / v, torch.where(v < 0, -a / v, torch.full_like(a, math.inf)))
    return room.amin(dim=1).clamp_min(0).cpu()


def attack_table(x_o: torch.Tensor, y: torch.Tensor, index: torch.Tensor, attack: MinimalAdversarial,
                 model: nn.Module) -> pd.DataFrame:
    """One row per attacked image: where x_a is and what f says there.

    Returns
    -------
    pandas.DataFrame
        ``unit`` (position in the batch), ``index`` (in the test split), ``label``, ``distance``
        (||x_a - x_o||), ``label_a`` (f(x_a)), ``margin_a`` (logit of f(x_a) minus the label's: >= 0, small
        on the boundary), ``box_exit`` (:func:`box_exit`).
    """
    with torch.inference_mode():
        logits = model(attack.x_a).cpu()
    label_a = logits.argmax(1)
    margin = logits.gather(1, label_a.view(-1, 1)) - logits.gather(1, y.cpu().view(-1, 1))
    return pd.DataFrame({"unit": np.arange(len(y)), "index": index.cpu().numpy(), "label": y.cpu().numpy(),
                         "distance": attack.distance.numpy(), "label_a": label_a.numpy(),
                         "margin_a": margin.squeeze(1).double().numpy(),
                         "box_exit": box_exit(attack.x_a, directions(x_o, attack)).numpy()})


def _check_scan(ts: Sequence[float], ns: Sequence[int], pool: int, alpha: float) -> int:
    """Validate the scan parameters; return the group size g = gcd(ns)."""
    if len(ts) < 2 or not all(isinstance(t, numbers.Real) and math.isfinite(t) for t in ts) \
            or any(b <= a for a, b in itertools.pairwise(ts)):
        raise ValueError(f"ts must be at least two finite, strictly increasing distances, got {list(ts)!r}")
    if len(ns) == 0 or any(isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1 for n in ns):
        raise ValueError(f"ns must be a non-empty list of integers >= 1, got {list(ns)!r}")
    group = math.gcd(*ns)
    if isinstance(pool, bool) or not isinstance(pool, numbers.Integral) or pool < max(ns) or pool % group:
        raise ValueError(f"pool must be an integer >= max(ns) = {max(ns)} and a multiple of gcd(ns) = {group}, "
                         f"got {pool!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 < alpha < 1:
        raise ValueError(f"alpha must be a real number in the open interval (0, 1), got {alpha!r}")
    return group


def scan(smooth: Smooth, x_a: torch.Tensor, u: torch.Tensor, label: int, ts: Sequence[float], ns: Sequence[int],
         pool: int, *, generator: torch.Generator, alpha: float = 0.05, batch_size: int = 10_000) -> Scan:
    """Class probabilities of g_sigma and P[g_{sigma,n} != y] along ``x(t) = x_a + t u`` (Fig. 1).

    Parameters
    ----------
    smooth : Smooth
        The smoothed base classifier (sigma, number of classes).
    x_a : torch.Tensor, shape [1, C, H, W]
        The start of the ray, on the boundary of f.
    u : torch.Tensor, shape [1, C, H, W]
        Unit direction of the ray (away from x_o).
    label : int
        The true label y of x_o.
    ts : sequence of float
        Increasing distances t past x_a (negative: between x_o and x_a).
    ns : sequence of int
        Votes sizes n of g_{sigma,n} (the paper: 5, 10, 50).
    pool : int
        Noisy micro-decisions per point; a multiple of gcd(ns), at least max(ns). n gets
        ``pool // n`` independent votes.
    generator : torch.Generator
        Source of every noise draw, on the device of ``x_a``; consumed point after point.
    alpha : float
        The bands are two-sided Clopper-Pearson intervals at level 1 - alpha.
    batch_size : int
        Largest batch of noisy inputs per forward pass.

    Returns
    -------
    Scan

    Notes
    -----
    A vote is the most frequent class of its n draws, ties going to the smallest class index (the rule of
    :meth:`rs_repro.smoothing.Smooth.vote`); it is wrong when that class is not ``label``.
    """
    group = _check_scan(ts, ns, pool, alpha)
    groups = pool // group
    # Points per call of Smooth.counts: as many as fit in SCAN_BLOCK_FLOATS once repeated ``groups`` times
    # (small inputs: few large calls), at least one (large inputs: one point, repeated as a view, no copy).
    block = max(1, SCAN_BLOCK_FLOATS // (groups * x_a[0].numel()))
    all_counts = []
    for start in range(0, len(ts), block):
        t = torch.tensor(ts[start:start + block], dtype=x_a.dtype, device=x_a.device).view(-1, 1, 1, 1)
        points = (x_a + t * u).unsqueeze(1).expand(len(t), groups, *x_a.shape[1:]).reshape(-1, *x_a.shape[1:])
        all_counts += smooth.counts(points, group, batch_size, generator=generator).cpu().view(len(t), groups, -1)
    profile, votes = [], []
    for t, counts in zip(ts, all_counts, strict=True):  # counts: [groups, K], the draws of one point
        total = counts.sum(0).double() / pool
        p_label = float(total[label])
        total[label] = -1.0
        profile.append({"t": float(t), "draws": pool, "p_label": p_label, "p_other": float(total.max()),
                        "other_class": int(total.argmax())})
        for n in ns:
            per_vote = n // group
            voted = counts[: groups // per_vote * per_vote].view(-1, per_vote, counts.shape[1]).sum(1)
            wrong = int((voted.argmax(1) != label).sum())
            votes.append({"t": float(t), "n": int(n), "votes": len(voted), "wrong": wrong})
    votes_table = pd.DataFrame(votes)
    lower, upper = theory.clopper_pearson(votes_table.wrong.to_numpy(), votes_table.votes.to_numpy(), alpha)
    votes_table = votes_table.assign(p=votes_table.wrong / votes_table.votes, lower=lower, upper=upper)
    return Scan(profile=pd.DataFrame(profile), votes=votes_table)


def first_reach(t: Sequence[float], values: Sequence[float], level: float) -> float:
    """First distance at which a curve sampled at increasing ``t`` reaches ``level``, linearly interpolated.

    Returns NaN when the curve is at or above ``level`` already at the first point (reached before the
    scan) or never reaches it (after the scan): such an image is censored, not placed at an end.
    """
    t, values = np.asarray(t, dtype=float), np.asarray(values, dtype=float)
    if t.shape != values.shape or t.ndim != 1 or len(t) < 2:
        raise ValueError(f"t and values must be 1-D of the same length >= 2, got shapes {t.shape} and {values.shape}")
    reached = np.nonzero(values >= level)[0]
    if len(reached) == 0 or reached[0] == 0:
        return math.nan
    k = int(reached[0])
    return float(t[k - 1] + (t[k] - t[k - 1]) * (level - values[k - 1]) / (values[k] - values[k - 1]))


def crossing(profile: pd.DataFrame) -> float:
    """Distance past x_a where another class overtakes the label: the boundary of g_sigma on the ray."""
    return first_reach(profile.t, profile.p_other - profile.p_label, 0.0)


def distances_at(votes: pd.DataFrame, pas: Sequence[float]) -> pd.DataFrame:
    """Distance past x_a where the estimated P[g_{sigma,n} != y] first reaches each level P_a, per n.

    ``votes`` holds the rows of one or several units (column ``unit``, optional). Returns columns
    ``[unit,] n, pa, distance`` (NaN when censored, see :func:`first_reach`).
    """
    if any(isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 < p <= 1 for p in pas):
        raise ValueError(f"pas must be levels in (0, 1], got {list(pas)!r}")
    keys = ["unit", "n"] if "unit" in votes else ["n"]
    rows = []
    for key, part in votes.sort_values("t").groupby(keys, sort=True):
        ids = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        rows += [{**ids, "pa": float(pa), "distance": first_reach(part.t, part.p, pa)} for pa in pas]
    return pd.DataFrame(rows)



def crossing_summary(crossings: pd.DataFrame) -> pd.DataFrame:
    """Distribution of the crossing distance over images, per noise level.

    Parameters
    ----------
    crossings : pandas.DataFrame
        Columns ``sigma, crossing`` (one row per image and sigma; NaN = censored, see :func:`first_reach`).

    Returns
    -------
    pandas.DataFrame
        One row per sigma: ``images``, ``censored``, ``median`` and ``median_sigma`` (in units of sigma) of
        the finite crossings, ``beyond`` (how many are past x_a, > 0) and ``p_beyond``, the one-sided
        sign-test p-value of "the crossing is past x_a more often than not" (binomial, 1/2).
    """
    rows = []
    for sigma, part in crossings.groupby("sigma", sort=True):
        finite = part.crossing[np.isfinite(part.crossing)]
        beyond = int((finite > 0).sum())
        rows.append({"sigma": float(sigma), "images": len(part), "censored": len(part) - len(finite),
                     "median": float(finite.median()) if len(finite) else math.nan,
                     "median_sigma": float(finite.median() / sigma) if len(finite) else math.nan,
                     "beyond": beyond,
                     "p_beyond": float(stats.binomtest(beyond, len(finite), 0.5, alternative="greater").pvalue)
                     if len(finite) else math.nan})
    return pd.DataFrame(rows)
