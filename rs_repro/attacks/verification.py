"""Verification of eq. (4): is a point adversarial for the smoothed classifier, checked with fresh votes?

Under randomized smoothing an attack's "adversarial" answer may be luck: the vote g_{sigma,n} is random,
and a query point answered adversarial once may be answered correctly the next time. Maho, Furon and
Le Merrer (ICASSP 2022, eq. (4)) call x_a an adversarial example of level P_a when
P[g_{sigma,n}(x_a) != g_sigma(x_o)] >= P_a, the probability being over the n noise draws of one vote; as
in their experiments, the true label y stands for the unobservable g_sigma(x_o). :func:`verify`
estimates that probability for the points an attack returns, from independent votes with noise the
attack never saw, with a Clopper-Pearson interval.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import checks, theory
from ..smoothing import Smooth

__all__ = ["verify"]


def verify(smooth: Smooth, xs: torch.Tensor, ys: torch.Tensor, n: int, repeats: int, alpha: float = 0.05, *,
           batch_size: int = 1000, generator: torch.Generator | None = None) -> tuple[np.ndarray, ...]:
    """Estimate P[g_{sigma,n}(x) != y] of eq. (4) from ``repeats`` independent votes per input.

    Parameters
    ----------
    smooth : rs_repro.smoothing.Smooth
        The smoothed classifier g_{sigma,n} the points were attacked on.
    xs : torch.Tensor, shape [B, C, H, W]
        Candidate adversarial examples.
    ys : torch.Tensor, shape [B]
        True labels.
    n : int
        Micro-decisions per vote.
    repeats : int
        Independent votes per input (each with n fresh draws).
    alpha : float
        The interval is two-sided Clopper-Pearson at confidence 1 - alpha.
    batch_size : int, default 1000
        Largest batch given to the base classifier (:meth:`~rs_repro.smoothing.Smooth.counts`).
    generator : torch.Generator, optional
        Source of the noise, on the device of ``xs``; default: ``smooth``'s own generator.

    Returns
    -------
    p_hat, lower, upper : numpy.ndarray, shape [B] each
        Fraction of wrong votes and its confidence interval.
    """
    xs = checks.images("xs", xs, 4, "[B, C, H, W]")
    repeats = checks.integer("repeats", repeats, 1)
    alpha = checks.real("alpha", alpha, 0, 1)
    votes = smooth.vote(xs.repeat_interleave(repeats, dim=0), n, batch_size, generator=generator)
    wrong = (votes.view(len(xs), repeats).cpu() != ys.cpu().view(-1, 1)).sum(1).numpy()
    lower, upper = theory.clopper_pearson(wrong, np.full_like(wrong, repeats), alpha)
    return wrong / repeats, np.asarray(lower), np.asarray(upper)
