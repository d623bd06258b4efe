"""What the ``theory`` chapter computes: eq. (2), (3), (5) and (6) of the paper as tidy tables.

Section 3 of Maho, Furon, Le Merrer (ICASSP 2022): the certified radius (eq. 2), the SORM approximation of
the probability of crossing a curved boundary (eq. 3), the threshold on pi0 for a vote of n micro-decisions
to be adversarial with probability P_a (eq. 5) and the distance bound it implies (eq. 6). The tables need no
data and no model: the plan (:func:`plan`) is one stage, one unit per table and the sphere test of eq. (3)
one per input dimension (its d = 150,528 Monte Carlo dominates the chapter). Every Monte Carlo draws from a
:class:`torch.Generator` seeded from the chapter's ``seed`` and the unit's labels
(:func:`rs_repro.seeds.derive_seed`), so the tables do not depend on the order the units run in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats

from rs_repro import seeds, theory
from rs_repro.checks import rule_checker
from rs_repro.pipeline.engine import Stage, Unit, fixed

#: Grid of p_A on which the certified radius of eq. (2) is drawn, 400 points from 0.5 to 0.9999.
#:
#: :meta hide-value:
P_GRID = np.linspace(0.5, 0.9999, 400)
#: Sample counts n of the largest-certifiable-radius curve, 10 to 10**6 on a log grid of 60 points.
#:
#: :meta hide-value:
CERTIFY_NS = np.unique(np.logspace(1, 6, 60).astype(int))
#: Sample counts at which strict-majority votes are simulated (those up to ``n_max``, and ``n_max``).
SIMULATED_NS = (1, 2, 3, 5, 10, 11, 20, 21, 50, 51, 100, 101)
#: Grid of pi1 over which the acceptance of the ceil(n P_a) rule is drawn and simulated, 0.4 to 1 by 0.01.
#:
#: :meta hide-value:
PI1_GRID = np.linspace(0.4, 1.0, 61)


def check_parameters(values: Mapping[str, Any]) -> None:
    """The chapter's rules on its parameters (ValueError naming the first one broken), run before anything.

    Beyond ranges: the prose reads the SORM error at beta = 0 and the boundary shift of the most convex
    sphere, so ``betas`` must hold 0 and ``curvature_sums`` a negative and a positive value; every sphere
    must hold x at distance beta * sigma inside it, and SORM must be defined there.
    """
    need = rule_checker(values)
    need(values["seed"] >= 0, "seed", "an integer >= 0")
    sigmas = values["sigmas"]
    need(bool(sigmas) and len(set(sigmas)) == len(sigmas) and all(s > 0 for s in sigmas), "sigmas",
         "a non-empty list of distinct noise levels > 0")
    need(0 < values["alpha"] < 1, "alpha", "a failure probability in (0, 1)")
    for name in ("certify_n", "mc_samples", "vote_reps", "n_max"):
        need(values[name] >= 1, name, "at least 1")
    dims = values["dims"]
    need(bool(dims) and len(set(dims)) == len(dims) and all(d >= 2 for d in dims), "dims",
         "a non-empty list of distinct dimensions >= 2")
    sums = values["curvature_sums"]
    need(len(set(sums)) == len(sums) and min(sums, default=0) < 0 < max(sums, default=0) and 0 not in sums,
         "curvature_sums", "distinct non-zero sums with at least one negative (convex) and one positive "
         "(concave) value")
    betas = values["betas"]
    need(len(set(betas)) == len(betas) and 0 in betas and all(b >= 0 for b in betas), "betas",
         "distinct distances >= 0 that include 0")
    limit = (min(dims) - 1) / abs(min(sums))
    need(max(betas) < limit, "betas", f"distances below (min(dims) - 1) / |min(curvature_sums)| = {limit:g}, "
         "inside the most curved sphere")
    pas = values["pas"]
    need(bool(pas) and len(set(pas)) == len(pas) and all(0 < p <= 1 for p in pas), "pas",
         "a non-empty list of distinct levels in (0, 1]")
    ns = values["acceptance_ns"]
    need(bool(ns) and len(set(ns)) == len(ns) and all(n >= 1 for n in ns), "acceptance_ns",
         "a non-empty list of distinct sample counts >= 1")
    need(0.5 < values["pa_attack"] < 1, "pa_attack",
         "a level in (1/2, 1), where eq. (6) adds a finite positive distance")


def plan(values: Mapping[str, Any]) -> list[Stage]:
    """The chapter's work, one stage: one unit per table, the sphere test of eq. (3) one unit per dimension of
    ``dims``.

    Ids: ``radius``, ``max_radius``, ``sorm-d<d>`` for each d, ``majority``, ``acceptance``,
    ``extra_distance``. Each unit's arguments are the parameters and grids its numbers depend on.
    """
    v = values
    sigmas, n_grid = list(v["sigmas"]), list(range(1, v["n_max"] + 1))
    found = [Unit("radius", f"{__name__}:radius_table", {"sigmas": sigmas, "p_grid": P_GRID.tolist()}),
             Unit("max_radius", f"{__name__}:max_radius_table",
                  {"sigmas": sigmas, "ns": CERTIFY_NS.tolist(), "alpha": v["alpha"]})]
    found += [Unit(f"sorm-d{d}", f"{__name__}:sorm_table",
                   {"d": d, "curvature_sums": list(v["curvature_sums"]), "betas": list(v["betas"]),
                    "sigma": sigmas[0], "samples": v["mc_samples"], "seed": v["seed"]}) for d in v["dims"]]
    found += [Unit("majority", f"{__name__}:majority_table",
                   {"ns": simulated_ns(v["n_max"]), "pas": list(v["pas"]), "reps": v["vote_reps"],
                    "seed": v["seed"]}),
              Unit("acceptance", f"{__name__}:acceptance_table",
                   {"ns": list(v["acceptance_ns"]), "pa": v["pa_attack"], "pi1_grid": PI1_GRID.tolist(),
                    "reps": v["vote_reps"], "seed": v["seed"]}),
              Unit("extra_distance", f"{__name__}:extra_distance_table",
                   {"ns": n_grid, "sigmas": sigmas, "pa": v["pa_attack"]})]
    return [Stage("theory tables", fixed(found))]


def simulated_ns(n_max: int) -> list[int]:
    """The n of :data:`SIMULATED_NS` up to ``n_max``, and ``n_max`` itself, sorted."""
    return sorted({n for n in (*SIMULATED_NS, n_max) if n <= n_max})


# --------------------------------------------------------------------------------------------------
# unit functions: one table each
# --------------------------------------------------------------------------------------------------
def radius_table(*, sigmas: list[float], p_grid: list[float]) -> pd.DataFrame:
    """Certified radius R = sigma * Phi^-1(p) of eq. (2) over a grid of p, for each sigma.

    Returns columns ``sigma, p, radius``.
    """
    rows = [{"sigma": s, "p": p, "radius": theory.certified_radius(p, s)} for s in sigmas for p in p_grid]
    return pd.DataFrame(rows)


def max_radius_table(*, sigmas: list[float], ns: list[int], alpha: float) -> pd.DataFrame:
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


def sorm_table(*, d: int, curvature_sums: list[float], betas: list[float], sigma: float, samples: int,
               seed: int) -> pd.DataFrame:
    """Eq. (3) against the exact sphere probability and a Monte Carlo estimate, in dimension ``d``.

    A sphere of radius ``rho = (d-1) * sigma / |S|`` has, in standard-normal units, the d-1 equal principal
    curvatures kappa = S / (d-1), so that their sum is S. ``S > 0`` puts x outside the ball (the paper's
    concave case, pi0 below the flat value), ``S < 0`` inside (convex case). x is at distance
    beta * sigma from the sphere; pi0 is the probability that x + sigma N crosses it. The ``samples``
    Gaussian vectors are drawn with the seed ``derive_seed(seed, "sorm", d)``.

    Returns
    -------
    pandas.DataFrame
        Columns ``d, S, case, beta, sorm, exact, mc, mc_se, flat``: ``mc_se`` is the standard error a
        Monte Carlo of ``samples`` draws has if ``exact`` is right; ``flat`` = Phi(-beta).
    """
    n1, rest_sq = noise_statistics(d, samples, seeds.derive_seed(seed, "sorm", d))
    rows = []
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


def majority_table(*, ns: list[int], pas: list[float], reps: int, seed: int) -> pd.DataFrame:
    """Eq. (5) thresholds, printed and exact, checked by simulating strict-majority votes.

    At each threshold pi0*, the n micro-decisions are wrong with probability pi1 = 1 - pi0*; a vote is
    adversarial when more than n/2 are wrong. ``p_exact`` is binom.sf, ``p_sim`` the fraction over
    ``reps`` simulated votes, all drawn from one generator seeded with ``seed``.

    Returns
    -------
    pandas.DataFrame
        Columns ``n, pa, rule, pi1, p_exact, p_sim, p_sim_se``; ``rule`` is ``printed`` or ``exact``.
    """
    g = torch.Generator().manual_seed(seed)
    rows = []
    for pa in pas:
        for n in ns:
            for rule, pi0 in (("printed", theory.pi0_threshold(n, pa)),
                              ("exact", theory.pi0_threshold_exact(n, pa))):
                pi1 = 1.0 - float(pi0)
                wrong = (torch.rand(reps, n, generator=g, dtype=torch.float64) < pi1).sum(1)
                p_sim = (wrong > n / 2).double().mean().item()
                rows.append({"n": n, "pa": pa, "rule": rule, "pi1": pi1,
                             "p_exact": float(stats.binom.sf(n // 2, n, pi1)), "p_sim": p_sim,
                             "p_sim_se": np.sqrt(max(p_sim * (1 - p_sim), 1e-12) / reps)})
    return pd.DataFrame(rows)


def acceptance_table(*, ns: list[int], pa: float, pi1_grid: list[float], reps: int,
                     seed: int) -> pd.DataFrame:
    """Acceptance probability of the paper's ceil(n*Pa) rule against pi1, closed form and simulated.

    The votes are drawn from the generator ``rs_repro.seeds.generator(seed, "acceptance")``.

    Returns
    -------
    pandas.DataFrame
        Columns ``n, pa, pi1, accept, accept_sim``.
    """
    g = seeds.generator(seed, "acceptance")
    rows = []
    for n in ns:
        k = theory.votes_needed(n, pa)
        for pi1 in pi1_grid:
            wrong = (torch.rand(reps, n, generator=g, dtype=torch.float64) < pi1).sum(1)
            rows.append({"n": n, "pa": pa, "pi1": float(pi1),
                         "accept": float(theory.accelerated_acceptance(pi1, n, pa)),
                         "accept_sim": (wrong >= k).double().mean().item()})
    return pd.DataFrame(rows)


def extra_distance_table(*, ns: list[int], sigmas: list[float], pa: float) -> pd.DataFrame:
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
