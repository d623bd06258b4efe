"""Bisection between a non-adversarial and an adversarial point: the paper's "dichotomy" (section 3.5).

Every attack projects onto the boundary with it: HSJA after each step, SurFree on its circles, RayS along
its rays. It is batched over rows (each row its own segment and image), capped, and safe on a random
oracle: it never assumes that a point is adversarial, it keeps the adversarial end, and an image whose
budget runs out simply stops. Under smoothing its output is random, which is what Fig. 3 shows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from rs_repro.attacks.oracle import Oracle


@dataclass
class Bisection:
    """Result of :func:`bisect` for m rows.

    Attributes
    ----------
    low, high : torch.Tensor, shape [m], float64
        Final bracket: ``point(low)`` was answered non-adversarial (or is the start), ``point(high)``
        adversarial (or is the start of the adversarial side).
    x : torch.Tensor, shape [m, C, H, W]
        ``point(high)``, the adversarial end.
    queries : torch.Tensor, shape [m], int64
        Queries this bisection made per row.
    """

    low: torch.Tensor
    high: torch.Tensor
    x: torch.Tensor
    queries: torch.Tensor


def bisect(oracle: Oracle, images: torch.Tensor, point: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
           low: torch.Tensor, high: torch.Tensor, *, tol: torch.Tensor | float, max_steps: int = 50) -> Bisection:
    """Shrink ``[low, high]`` around the boundary along a path ``t -> point(rows, t)``.

    Parameters
    ----------
    oracle : Oracle
        The started oracle; each probe is one counted query.
    images : torch.Tensor, shape [m], int64
        Image of each row.
    point : callable
        ``point(rows, t)`` returns the points [len(rows), C, H, W] at parameters ``t`` [len(rows)] of the
        given rows (indices into the m rows).
    low, high : torch.Tensor, shape [m]
        Parameters of the non-adversarial and the adversarial end (low may exceed high: only the
        labels of the ends matter).
    tol : float or torch.Tensor [m]
        A row stops when ``|high - low| <= tol``.
    max_steps : int
        At most this many probes per row.

    Returns
    -------
    Bisection
    """
    low, high = low.double().clone(), high.double().clone()
    tol = torch.as_tensor(tol, dtype=torch.float64).expand_as(low)
    queries = torch.zeros(len(low), dtype=torch.int64)
    for _ in range(max_steps):
        rows = ((high - low).abs() > tol) & oracle.active(images)
        rows = rows.nonzero().squeeze(1)
        if len(rows) == 0:
            break
        mid = (low[rows] + high[rows]) / 2
        adversarial, counted = oracle.query(point(rows, mid), images[rows])  # counted: False past the budget
        high[rows] = torch.where(adversarial, mid, high[rows])
        low[rows] = torch.where(~adversarial & counted, mid, low[rows])
        queries[rows] += counted.long()
    everything = torch.arange(len(low))
    return Bisection(low=low, high=high, x=point(everything, high), queries=queries)


def bisect_segment(oracle: Oracle, x_in: torch.Tensor, x_out: torch.Tensor, images: torch.Tensor, *,
                   tol: float, max_steps: int = 50) -> Bisection:
    """Bisection on the segments ``(1 - t) x_in + t x_out``, ``x_in`` non-adversarial, ``x_out`` adversarial.

    ``tol`` is an l2 length: a row stops when its bracket is at most ``tol`` long in input space.
    Returns a :class:`Bisection` whose ``low``/``high`` are positions ``t`` in [0, 1].
    """
    length = (x_out - x_in).flatten(1).double().norm(dim=1).cpu()
    m = len(images)

    def point(rows: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t.to(x_in.device, x_in.dtype).view(-1, *([1] * (x_in.dim() - 1)))
        return (1 - t) * x_in[rows.to(x_in.device)] + t * x_out[rows.to(x_in.device)]

    step_tol = tol / length.clamp_min(torch.finfo(torch.float64).tiny)
    return bisect(oracle, images, point, torch.zeros(m), torch.ones(m), tol=step_tol, max_steps=max_steps)
