"""Verification of eq. (4): is a point adversarial for the smoothed classifier, checked with fresh votes?

Under randomized smoothing an attack's "adversarial" answer may be luck: the vote g_{sigma,n} is random,
and a query point answered adversarial once may be answered correctly the next time. Maho, Furon and
Le Merrer (ICASSP 2022, eq. (4)) call x_a an adversarial example of level P_a when
P[g_{sigma,n}(x_a) != g_sigma(x_o)] >= P_a, the probability being over the n noise draws of one vote; as
in their experiments, the true label y stands for the unobservable g_sigma(x_o). :func:`verify`
estimates that probability for the points an attack returns, from independent votes with noise the
attack never saw, with a Clopper-Pearson interval; :func:`push_to_level` moves each point outward along the
attack's direction until the level is verified, which gives the distortion of a genuine adversarial example.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from .. import checks, theory
from ..seeds import generator
from ..smoothing import Smooth

__all__ = ["Pushed", "push_to_level", "verify"]


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
    wrong = _wrong_votes(smooth, xs, ys, n, repeats, batch_size, generator)
    lower, upper = theory.clopper_pearson(wrong, np.full_like(wrong, repeats), alpha)
    return wrong / repeats, np.asarray(lower), np.asarray(upper)


@dataclass(frozen=True)
class Pushed:
    """Points verified adversarial at level P_a by :func:`push_to_level`, one per image.

    Attributes
    ----------
    x : torch.Tensor, shape [B, C, H, W]
        x_o + t (x_adv - x_o), on the device of the inputs (x_adv where the level was not reached).
    t : numpy.ndarray, shape [B]
        The factor on the attack's perturbation: 1 where x_adv already satisfied eq. (4), ``inf`` where no
        factor up to ``max_t`` did.
    l2, linf : numpy.ndarray, shape [B]
        Distortions of ``x`` from x_o (``inf`` where the level was not reached).
    p, lower, upper : numpy.ndarray, shape [B]
        P[g_{sigma,n}(x) != y] at ``x`` estimated from ``votes`` further fresh votes (not those that chose
        ``t``, so the estimate is not biased by the search) and its Clopper-Pearson interval.
    reached : numpy.ndarray of bool, shape [B]
        Whether a factor t <= ``max_t`` reached the level.
    """

    x: torch.Tensor
    t: np.ndarray
    l2: np.ndarray
    linf: np.ndarray
    p: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    reached: np.ndarray


def _wrong_votes(smooth: Smooth, xs: torch.Tensor, ys: torch.Tensor, n: int, votes: int, batch_size: int,
                 generator: torch.Generator | None) -> np.ndarray:
    """How many of ``votes`` fresh votes of n micro-decisions at each of ``xs`` [B, C, H, W] are not its label
    in ``ys`` [B] (int64 [B])."""
    labels = smooth.vote(xs.repeat_interleave(votes, dim=0), n, batch_size, generator=generator)
    return (labels.view(len(xs), votes).cpu() != ys.cpu().view(-1, 1)).sum(1).numpy()


def _at_level(smooth: Smooth, origin: torch.Tensor, delta: torch.Tensor, label: torch.Tensor, factor: float, *,
              n: int, votes: int, pa: float, batch_size: int, generator: torch.Generator) -> bool:
    """Whether at least ``pa * votes`` of ``votes`` fresh votes at origin + factor * delta ([1, C, H, W]) are not
    ``label`` ([1])."""
    return bool(_wrong_votes(smooth, origin + factor * delta, label, n, votes, batch_size, generator)[0] >= pa * votes)


def _smallest_factor(adversarial: Callable[[float], bool], *, moves: bool, tolerance: float, max_t: float) -> float:
    """The smallest factor t >= 1 that ``adversarial`` accepts: 1, else bracketed by doubling up to ``max_t``
    and bisected to a relative width ``tolerance`` (the upper end); ``inf`` when none is accepted, at once
    when the ray does not move (``moves`` false)."""
    if adversarial(1.0):
        return 1.0
    if not moves:
        return np.inf
    low, high = 1.0, min(2.0, max_t)
    while not adversarial(high):
        if high >= max_t:
            return np.inf
        low, high = high, min(2 * high, max_t)
    while high - low > tolerance * high:
        middle = (low + high) / 2
        low, high = (low, middle) if adversarial(middle) else (middle, high)
    return high


def push_to_level(smooth: Smooth, x_o: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, *, n: int, pa: float,
                  votes: int, seed: int, alpha: float = 0.05, tolerance: float = 0.01, max_t: float = 1024.0,
                  batch_size: int = 10_000) -> Pushed:
    """The smallest t >= 1 such that x_o + t (x_adv - x_o) is adversarial at level P_a (eq. (4)).

    ICASSP 2022, eq. (4): x is an adversarial example of level P_a for the majority vote g_{sigma,n} when
    P[g_{sigma,n}(x) != y] >= P_a. An attack on a random oracle reports a point that was answered
    adversarial once; this function moves it outward along the attack's own direction until the level is
    verified. Each candidate t is judged by ``votes`` fresh independent votes of n micro-decisions (the
    fraction of wrong votes against ``pa``): t = 1 is tried first, then t = 2, 4, 8, ... until a candidate
    passes (bracketing), then the bracket is bisected until its width is below ``tolerance`` times t
    (about 1% of the distance by default). The point returned is the upper end of the last bracket, and
    its level is estimated again from ``votes`` fresh votes. A point at x_o (no perturbation) is verified
    like any other: it reaches the level only if x_o itself is adversarial. The ray is not clipped to the
    pixel box [0, 1]^d (the noise of smoothing is not either); pushed points may leave it.

    Parameters
    ----------
    smooth : rs_repro.smoothing.Smooth
        The smoothed classifier (base model and sigma) the points were attacked on.
    x_o, x_adv : torch.Tensor, shape [B, C, H, W]
        The attacked images and the attack's points.
    y : torch.Tensor, shape [B]
        True labels (standing for g_sigma(x_o), as in the paper's experiments).
    n : int
        Micro-decisions per vote.
    pa : float
        Level P_a in (0, 1].
    votes : int
        Fresh votes per candidate (the resolution of each decision is 1 / votes).
    seed : int
        Image k draws from ``rs_repro.seeds.generator(seed, "push-to-level", k)``: the result of an image
        does not depend on the others in the batch.
    alpha : float
        Two-sided Clopper-Pearson interval of ``p`` at confidence 1 - alpha.
    tolerance : float
        Relative width of the final bracket on t.
    max_t : float
        Largest factor tried; beyond it the level counts as not reached.
    batch_size : int
        Largest batch of noisy inputs per forward pass; memory is bounded by it and by ``votes`` copies of
        one image at a time.

    Returns
    -------
    Pushed
    """
    x_o = checks.images("x_o", x_o, 4, "[B, C, H, W]")
    x_adv = checks.images("x_adv", x_adv, 4, "[B, C, H, W]")
    checks.require(x_adv.shape == x_o.shape, "x_adv", tuple(x_adv.shape), f"the shape of x_o, {tuple(x_o.shape)}")
    checks.require(y.shape == (len(x_o),), "y", tuple(y.shape), f"one label per image, shape ({len(x_o)},)")
    n = checks.integer("n", n, 1)
    pa = checks.real("pa", pa, 0, 1, include_high=True)
    votes = checks.integer("votes", votes, 1)
    seed = checks.integer("seed", seed)
    tolerance = checks.real("tolerance", tolerance, 0, 1)
    max_t = checks.real("max_t", max_t, 1, include_low=True)
    batch_size = checks.integer("batch_size", batch_size, 1)
    device = x_o.device
    batch = len(x_o)
    t = np.full(batch, np.inf)
    wrong = np.zeros(batch, dtype=np.int64)
    points = x_adv.clone()
    for k in range(batch):
        gen = generator(seed, "push-to-level", k, device=device)
        label, delta = y[k:k + 1], x_adv[k:k + 1] - x_o[k:k + 1]
        adversarial = partial(_at_level, smooth, x_o[k:k + 1], delta, label, n=n, votes=votes, pa=pa,
                              batch_size=batch_size, generator=gen)
        t[k] = _smallest_factor(adversarial, moves=bool(delta.any()), tolerance=tolerance, max_t=max_t)
        if np.isfinite(t[k]):
            points[k] = (x_o[k:k + 1] + t[k] * delta)[0]
        wrong[k] = _wrong_votes(smooth, points[k:k + 1], label, n, votes, batch_size, gen)[0]
    lower, upper = theory.clopper_pearson(wrong, np.full_like(wrong, votes), alpha)
    perturbation = (points - x_o).flatten(1)
    reached = np.isfinite(t)
    l2 = np.where(reached, perturbation.norm(dim=1).cpu().double().numpy(), np.inf)
    linf = np.where(reached, perturbation.abs().amax(dim=1).cpu().double().numpy(), np.inf)
    return Pushed(x=points, t=t, l2=l2, linf=linf, p=wrong / votes, lower=np.asarray(lower),
                  upper=np.asarray(upper), reached=reached)
