"""Compute functions of the ``theory`` chapter: eq. (2), (3), (5), (6) of the paper as tidy tables.

Every function returns a :class:`pandas.DataFrame` (one row per configuration) and draws its randomness
from a :class:`torch.Generator` seeded by its ``seed`` argument. The notebook wraps them in
:func:`rs_repro.cache.cached`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from scipy import optimize, stats

from .. import theory


def radius_table(sigmas: list[float], p_grid: np.ndarray) -> pd.DataFrame:
    """Certified radius R = sigma * Phi^-1(p) of eq. (2) over a grid of p, for each sigma.

    Returns columns ``sigma, p, radius``.
    """
    rows = [{"sigma": s, "p": p, "radius": theory.certified_radius(p, s)} for s in sigmas for p in p_grid]
    return pd.DataFrame(rows)


def max_radius_table(sigmas: list[float], ns: list[int], alpha: float) -> pd.DataFrame:
    """Largest radius that n samples can certify at level alpha, sigma * Phi^-1(alpha^(1/n)).

    Returns columns ``sigma, n, alpha, max_radius``.
    """
    rows = [{"sigma": s, "n": n, "alpha": alpha, "max_radius": theory.max_certified_radius(n, alpha, s)}
            for s in sigmas for n in ns]
    return pd.DataFrame(rows)


def noise_statistics(d: int, samples: int, seed: int, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``samples`` Gaussian vectors N ~ N(0, I_d) and keep (N_1, ||N_2..d||^2) of each.

    The vectors are drawn whole, in chunks of ``chunk`` rows, so that the Monte Carlo below is a
    genuine d-dimensional one; only the two statistics a sphere test needs are kept.

    Returns
    -------
    n1, rest_sq : numpy.ndarray
        Shapes ``[samples]`` each, float64.
    """
    g = torch.Generator().manual_seed(seed)
    n1, rest = [], []
    for start in range(0, samples, chunk):
        block = torch.randn(min(chunk, samples - start), d, generator=g, dtype=torch.float32)
        n1.append(block[:, 0].double())
        rest.append(torch.linalg.vector_norm(block[:, 1:], dim=1).double().square())
    return torch.cat(n1).numpy(), torch.cat(rest).numpy()


def sorm_table(dims: list[int], curvature_sums: list[float], betas: list[float], sigma: float,
               samples: int, seed: int) -> pd.DataFrame:
    """Eq. (3) against the exact sphere probability and a Monte Carlo estimate.

    A sphere of radius ``rho = (d-1) * sigma / |S|`` has, in standard-normal units, the d-1 equal principal
    curvatures kappa = S / (d-1), so that their sum is S. ``S > 0`` puts x outside the ball (the paper's
    concave case, pi0 below the flat value), ``S < 0`` inside (convex case). x is at distance
    beta * sigma from the sphere; pi0 is the probability that x + sigma N crosses it.

    Returns
    -------
    pandas.DataFrame
        Columns ``d, S, case, beta, sorm, exact, mc, mc_se, flat``: ``mc_se`` is the standard error a
        Monte Carlo of ``samples`` draws has if ``exact`` is right; ``flat`` = Phi(-beta).
    """
    rows = []
    for i, d in enumerate(dims):
        n1, rest_sq = noise_statistics(d, samples, seed + i)
        for s in curvature_sums:
            if s == 0:
                raise ValueError("curvature_sums must be non-zero (use pi0_hyperplane for a flat boundary)")
            r = (d - 1) / abs(s)  # sphere radius in units of sigma
            inside = s < 0
            kappa = np.full(d - 1, s / (d - 1))
            b = np.asarray(betas, dtype=float)
            t = b[:, None] - n1[None, :]  # beta - N_1, broadcast [betas, samples]
            # ||x + sigma N - c||^2 - rho^2, over sigma^2, with no cancellation of the large r^2 terms.
            excess = (-2 * r * t if inside else 2 * r * t) + t**2 + rest_sq[None, :]
            crossed = (excess > 0) if inside else (excess <= 0)
            mc = crossed.mean(1)
            exact = theory.pi0_sphere(b * sigma, r * sigma, sigma, d, inside)
            sorm = theory.sorm_pi0(b, kappa)
            for j, beta in enumerate(b):
                rows.append({"d": d, "S": s, "case": "convex (inside)" if inside else "concave (outside)",
                             "beta": beta, "sorm": float(sorm[j]), "exact": float(exact[j]), "mc": mc[j],
                             "mc_se": np.sqrt(exact[j] * (1 - exact[j]) / samples),
                             "flat": float(theory.pi0_hyperplane(beta))})
    return pd.DataFrame(rows)


def boundary_shift(pi0: Callable[[float], float], beta_max: float = 20.0, steps: int = 400) -> float:
    """Smallest beta > 0 where ``pi0(beta)`` falls through 1/2: where the boundary of g_sigma lies.

    ``pi0`` maps the distance beta (in sigma units) from the boundary of f to the probability of
    crossing it. Returns 0.0 when ``pi0 <= 1/2`` on the whole grid of ``(0, beta_max]`` (the boundary
    of g_sigma is not pushed inside), the crossing refined by Brent's method otherwise.
    """
    grid = np.linspace(beta_max / steps, beta_max, steps)
    above = np.array([pi0(b) for b in grid]) > 0.5
    if not above[0]:
        return 0.0
    if above.all():
        raise ValueError(f"pi0 stays above 1/2 up to beta_max={beta_max}; increase beta_max")
    k = int(np.argmin(above))
    return float(optimize.brentq(lambda b: pi0(b) - 0.5, grid[k - 1], grid[k]))


def majority_table(ns: list[int], pas: list[float], reps: int, seed: int) -> pd.DataFrame:
    """Eq. (5) thresholds, printed and exact, checked by simulating strict-majority votes.

    At each threshold pi0*, the n micro-decisions are wrong with probability pi1 = 1 - pi0*; a vote is
    adversarial when more than n/2 are wrong. ``p_exact`` is binom.sf, ``p_sim`` the fraction over
    ``reps`` simulated votes.

    Returns
    -------
    pandas.DataFrame
        Columns ``n, pa, rule, pi1, p_exact, p_sim, p_sim_se``; ``rule`` is ``printed`` or ``exact``.
    """
    g = torch.Generator().manual_seed(seed)
    rows = []
    for pa in pas:
        for n in ns:
            for rule, pi0 in (("printed", theory.pi0_threshold(n, pa)), ("exact", theory.pi0_threshold_exact(n, pa))):
                pi1 = 1.0 - float(pi0)
                wrong = (torch.rand(reps, n, generator=g, dtype=torch.float64) < pi1).sum(1)
                p_sim = (wrong > n / 2).double().mean().item()
                rows.append({"n": n, "pa": pa, "rule": rule, "pi1": pi1,
                             "p_exact": float(stats.binom.sf(n // 2, n, pi1)), "p_sim": p_sim,
                             "p_sim_se": np.sqrt(max(p_sim * (1 - p_sim), 1e-12) / reps)})
    return pd.DataFrame(rows)


def acceptance_table(ns: list[int], pa: float, pi1_grid: np.ndarray, reps: int, seed: int) -> pd.DataFrame:
    """Acceptance probability of the paper's ceil(n*Pa) rule against pi1, closed form and simulated.

    Returns
    -------
    pandas.DataFrame
        Columns ``n, pa, pi1, accept, accept_sim``.
    """
    g = torch.Generator().manual_seed(seed)
    rows = []
    for n in ns:
        k = theory.votes_needed(n, pa)
        for pi1 in pi1_grid:
            wrong = (torch.rand(reps, n, generator=g, dtype=torch.float64) < pi1).sum(1)
            rows.append({"n": n, "pa": pa, "pi1": float(pi1),
                         "accept": float(theory.accelerated_acceptance(pi1, n, pa)),
                         "accept_sim": (wrong >= k).double().mean().item()})
    return pd.DataFrame(rows)


def extra_distance_table(ns: list[int], sigmas: list[float], pa: float) -> pd.DataFrame:
    """The second term of eq. (6), sigma * Phi^-1(I^-1_Pa(n~, n~)), as printed and exact.

    Returns
    -------
    pandas.DataFrame
        Columns ``n, sigma, pa, printed, exact``.
    """
    rows = [{"n": n, "sigma": s, "pa": pa,
             "printed": float(theory.distance_bound(0.0, s, n, pa)),
             "exact": float(theory.distance_bound(0.0, s, n, pa, exact=True))}
            for s in sigmas for n in ns]
    return pd.DataFrame(rows)
