"""Compute functions of the ``fig3_binary_search`` chapter: Fig. 3 of the paper.

A bisection between a point the smoothed classifier g_{sigma,n} labels correctly (PointA) and one it
labels otherwise (PointB) ends somewhere random, because every query is a fresh vote of n noisy
micro-decisions. Repeating it many times gives the distribution of its output, to compare with the
boundary of g_sigma on the segment, located by a large Monte Carlo.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import seeds
from ..attacks.bisection import bisect_segment
from ..attacks.oracle import Oracle
from ..smoothing import Smooth


def segments(model: nn.Module, x: torch.Tensor, y: torch.Tensor, count: int) -> list[tuple[int, int]]:
    """Pairs (a, b) of test positions: a correctly classified image and its nearest (l2) image of another
    class that the base model labels differently from ``y[a]``; the first ``count`` such images a."""
    with torch.inference_mode():
        predicted = model(x).argmax(1)
    flat = x.flatten(1)
    pairs = []
    for a in range(len(x)):
        if predicted[a] != y[a]:
            continue
        other = (y != y[a]) & (predicted != y[a])
        distance = (flat - flat[a]).norm(dim=1).masked_fill(~other, float("inf"))
        pairs.append((a, int(distance.argmin())))
        if len(pairs) == count:
            break
    return pairs


def class_profile(smooth: Smooth, x_a: torch.Tensor, x_b: torch.Tensor, label: int, ts: Sequence[float],
                  samples: int, seed: int) -> pd.DataFrame:
    """Monte Carlo class probabilities of f(x(t) + sigma N) along x(t) = (1 - t) x_a + t x_b.

    Returns
    -------
    pandas.DataFrame
        Columns ``t, p_label, p_other`` (the largest probability of another class) and ``se`` (the
        binomial standard error of ``p_label``).
    """
    t = torch.tensor(list(ts), dtype=x_a.dtype).view(-1, 1, 1, 1)
    points = (1 - t) * x_a + t * x_b
    counts = smooth.counts(points, samples, 10_000, generator=seeds.generator(seed, "profile")).double() / samples
    p_label = counts[:, label].clone()
    counts[:, label] = -1
    return pd.DataFrame({"t": list(ts), "p_label": p_label.numpy(), "p_other": counts.max(1).values.numpy(),
                         "se": np.sqrt(p_label.numpy() * (1 - p_label.numpy()) / samples)})


def boundary_of_g(profile: pd.DataFrame) -> float:
    """First t where another class overtakes the label in ``profile``, linearly interpolated (the
    boundary of g_sigma on the segment); NaN if the label wins everywhere."""
    gap = (profile.p_label - profile.p_other).to_numpy()
    t = profile.t.to_numpy()
    crossed = np.nonzero(gap <= 0)[0]
    if len(crossed) == 0:
        return float("nan")
    k = int(crossed[0])
    if k == 0:
        return float(t[0])
    return float(t[k - 1] + (t[k] - t[k - 1]) * gap[k - 1] / (gap[k - 1] - gap[k]))


def bisection_outputs(smooth: Smooth, x_a: torch.Tensor, x_b: torch.Tensor, label: int, n: int, repeats: int,
                      steps: int, seed: int) -> pd.DataFrame:
    """Run ``repeats`` independent bisections on the segment against g_{sigma,n}, each its own image.

    Returns
    -------
    pandas.DataFrame
        Columns ``repeat, t`` (the adversarial end each bisection returns) and ``queries``.
    """
    oracle = smooth.oracle(n, max_queries=steps, generator=seeds.generator(seed, "bisection", n))
    rows = torch.arange(repeats)
    start = x_a.expand(repeats, *x_a.shape[1:]).contiguous()
    oracle.start(start, torch.full((repeats,), label, dtype=torch.long))
    result = bisect_segment(oracle, start, x_b.expand_as(start), rows, tol=0.0, max_steps=steps)
    return pd.DataFrame({"repeat": rows.numpy(), "t": result.high.numpy(), "queries": result.queries.numpy()})


def base_boundary(model: nn.Module, x_a: torch.Tensor, x_b: torch.Tensor, label: int, steps: int) -> float:
    """Where the base classifier f changes its answer on the segment (a deterministic bisection)."""
    oracle = Oracle(model, max_queries=steps)
    oracle.start(x_a, torch.tensor([label]))
    return float(bisect_segment(oracle, x_a, x_b, torch.tensor([0]), tol=0.0, max_steps=steps).high[0])
