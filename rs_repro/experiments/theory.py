"""The ``theory`` chapter: eq. (2), (3), (5) and (6) of the paper as tidy tables, their figures and numbers.

Section 3 of Maho, Furon, Le Merrer (ICASSP 2022): the certified radius (eq. 2), the SORM approximation of
the probability of crossing a curved boundary (eq. 3), the threshold on pi0 for a vote of n micro-decisions
to be adversarial with probability P_a (eq. 5) and the distance bound it implies (eq. 6). The work is units
(:mod:`rs_repro.pipeline.engine`, :func:`units`): one per table, and the sphere test of eq. (3) one per input
dimension (its d = 150,528 Monte Carlo dominates the chapter). Every Monte Carlo draws from a
:class:`torch.Generator` seeded from the chapter's ``seed`` and the unit's labels
(:func:`rs_repro.seeds.derive_seed`), so the tables do not depend on the order the units run in.
:func:`summarize` returns the record the claims chapter reads, :func:`page` the numbers the prose quotes,
and the ``plot_*`` functions draw the chapter's four figures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from scipy import optimize, stats

from rs_repro import seeds, theory
from rs_repro.checks import rule_checker
from rs_repro.pipeline.engine import Unit
from rs_repro.report.measurements import ThresholdCheck
from rs_repro.report.paper import fig4_readings, fig5_readings

_MODULE = __name__
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
#: The even n of the eq. (5) paragraph (the smallest n of Fig. 5).
N_EVEN = 10
#: The n at which the record gives the exact probability of a wrong majority at the printed threshold.
RECORD_NS = (5, 11, 10, 50, 100)
_CASES = (("convex (inside)", "convex"), ("concave (outside)", "concave"))


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


# --------------------------------------------------------------------------------------------------
# the chapter's units and what is read from their tables
# --------------------------------------------------------------------------------------------------
def simulated_ns(n_max: int) -> list[int]:
    """The n of :data:`SIMULATED_NS` up to ``n_max``, and ``n_max`` itself, sorted."""
    return sorted({n for n in (*SIMULATED_NS, n_max) if n <= n_max})


def units(values: Mapping[str, Any]) -> list[Unit]:
    """The chapter's work: one unit per table, the sphere test of eq. (3) one unit per dimension of ``dims``.

    Ids: ``radius``, ``max_radius``, ``sorm-d<d>`` for each d, ``majority``, ``acceptance``,
    ``extra_distance``. Each unit's arguments are the parameters and grids its numbers depend on.
    """
    v = values
    sigmas, n_grid = list(v["sigmas"]), list(range(1, v["n_max"] + 1))
    found = [Unit("radius", f"{_MODULE}:radius_table", {"sigmas": sigmas, "p_grid": P_GRID.tolist()}),
             Unit("max_radius", f"{_MODULE}:max_radius_table",
                  {"sigmas": sigmas, "ns": CERTIFY_NS.tolist(), "alpha": v["alpha"]})]
    found += [Unit(f"sorm-d{d}", f"{_MODULE}:sorm_table",
                   {"d": d, "curvature_sums": list(v["curvature_sums"]), "betas": list(v["betas"]),
                    "sigma": sigmas[0], "samples": v["mc_samples"], "seed": v["seed"]}) for d in v["dims"]]
    found += [Unit("majority", f"{_MODULE}:majority_table",
                   {"ns": simulated_ns(v["n_max"]), "pas": list(v["pas"]), "reps": v["vote_reps"],
                    "seed": v["seed"]}),
              Unit("acceptance", f"{_MODULE}:acceptance_table",
                   {"ns": list(v["acceptance_ns"]), "pa": v["pa_attack"], "pi1_grid": PI1_GRID.tolist(),
                    "reps": v["vote_reps"], "seed": v["seed"]}),
              Unit("extra_distance", f"{_MODULE}:extra_distance_table",
                   {"ns": n_grid, "sigmas": sigmas, "pa": v["pa_attack"]})]
    return found


def sorm_rows(tables: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> pd.DataFrame:
    """The rows of the ``sorm-d<d>`` units, joined in the order of ``dims``."""
    return pd.concat([tables[f"sorm-d{d}"] for d in values["dims"]], ignore_index=True)


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


def probability_at_threshold(n: int, pa: float) -> float:
    """P[more than n/2 of n micro-decisions wrong] when each is wrong with probability 1 - pi0*, pi0* the
    threshold eq. (5) prints: ``pa`` for odd n, less for even n."""
    return float(stats.binom.sf(n // 2, n, 1 - theory.pi0_threshold(n, pa)))


def half_acceptance(n: int, pa: float) -> float:
    """The pi1 at which the paper's ceil(n P_a) rule accepts half of the queries (Brent's method)."""
    return float(optimize.brentq(lambda p: theory.accelerated_acceptance(p, n, pa) - 0.5, 1e-9, 1 - 1e-12))


def summarize(tables: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> ThresholdCheck:
    """The record of claim 11: the probability of a wrong majority at the printed eq. (5) threshold, at
    ``P_a = pa_attack`` and each n of :data:`RECORD_NS` (closed form; ``tables`` are not needed)."""
    pa = values["pa_attack"]
    return ThresholdCheck(pa=pa, probability_at_threshold={n: probability_at_threshold(n, pa)
                                                           for n in RECORD_NS})


def page(tables: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> dict[str, Any]:
    """Every number and text the chapter's prose glues, by glue name.

    Eq. (2): ``rmax_list``, ``certify_n``, ``alpha``, ``paper_last_radius`` (Fig. 4's readings). Eq. (3):
    ``mc_samples``, ``mc_max_z`` (largest Monte Carlo deviation in standard errors), ``sorm_err0_*`` and
    ``sorm_errtop_*`` (SORM's largest relative error at beta = 0 and at the largest beta, ``beta_top``, for
    the convex and concave cases), ``shift_rule_err`` (largest gap between the exact law and
    Phi(-beta - S/2) in the largest dimension ``d_big``), ``exact_cross`` and ``sorm_cross`` (where the
    boundary of g_sigma lies for the most convex sphere, ``s_conv``). Eq. (5): ``vote_reps``,
    ``vote_max_z``, ``pa_attack``, ``n_even``, ``thr_printed``, ``thr_exact``, ``p_at_printed``,
    ``acc_at_thr``, ``acc_half``. Eq. (6): ``sigma0``, ``n10``, ``extra_n10``, ``extra_max``, ``paper_lo``
    and ``paper_hi`` (Fig. 5's range of distortions), ``ratio_min``.
    """
    return {**_radius_page(values), **_sorm_page(sorm_rows(tables, values), values),
            **_vote_page(tables["majority"], values), **_distance_page(tables["extra_distance"], values)}


def _radius_page(values: Mapping[str, Any]) -> dict[str, Any]:
    alpha, certify_n = values["alpha"], values["certify_n"]
    at_n = [f"{theory.max_certified_radius(certify_n, alpha, s):.2f} (σ = {s:g})" for s in values["sigmas"]]
    return {"rmax_list": ", ".join(at_n), "certify_n": certify_n, "alpha": float(alpha),
            "paper_last_radius": ", ".join(f"{r:g}" for r in fig4_readings().last_radius.dropna())}


def _sorm_page(sorm: pd.DataFrame, values: Mapping[str, Any]) -> dict[str, Any]:
    rel = (sorm.sorm - sorm.exact).abs() / sorm.exact
    b_top = sorm.beta.max()
    out = {"mc_samples": values["mc_samples"], "beta_top": float(b_top),
           "mc_max_z": float(((sorm.mc - sorm.exact).abs() / sorm.mc_se).max())}
    for case, key in _CASES:
        out[f"sorm_err0_{key}"] = float(rel[(sorm.case == case) & (sorm.beta == 0)].max())
        out[f"sorm_errtop_{key}"] = float(rel[(sorm.case == case) & (sorm.beta == b_top)].max())
    big = sorm[sorm.d == max(values["dims"])]
    out["shift_rule_err"] = float((big.exact - stats.norm.cdf(-big.beta - big.S / 2)).abs().max())
    # Where the boundary of g_sigma lies for the most convex sphere (x inside it) in the largest dimension.
    sigma0, d_big, s_conv = values["sigmas"][0], max(values["dims"]), min(values["curvature_sums"])
    r_big = (d_big - 1) * sigma0 / abs(s_conv)
    kappa = np.full(d_big - 1, s_conv / (d_big - 1))
    exact_cross = boundary_shift(lambda b: theory.pi0_sphere(b * sigma0, r_big, sigma0, d_big, True))
    return {**out, "d_big": d_big, "s_conv": float(s_conv), "exact_cross": exact_cross,
            "sorm_cross": boundary_shift(lambda b: theory.sorm_pi0(b, kappa))}


def _vote_page(votes: pd.DataFrame, values: Mapping[str, Any]) -> dict[str, Any]:
    pa, ns = values["pa_attack"], values["acceptance_ns"]
    pi1_printed = 1 - theory.pi0_threshold(N_EVEN, pa)
    at_thr = [f"{theory.accelerated_acceptance(1 - theory.pi0_threshold(n, pa), n, pa):.2g} (n={n})"
              for n in ns]
    return {"vote_reps": values["vote_reps"],
            "vote_max_z": float(((votes.p_sim - votes.p_exact).abs() / votes.p_sim_se).max()),
            "pa_attack": float(pa), "n_even": N_EVEN, "thr_printed": float(pi1_printed),
            "thr_exact": float(1 - theory.pi0_threshold_exact(N_EVEN, pa)),
            "p_at_printed": float(stats.binom.sf(N_EVEN // 2, N_EVEN, pi1_printed)),
            "acc_at_thr": ", ".join(at_thr),
            "acc_half": ", ".join(f"{half_acceptance(n, pa):.2f} (n={n})" for n in ns)}


def _distance_page(extra: pd.DataFrame, values: Mapping[str, Any]) -> dict[str, Any]:
    paper = fig5_readings()
    lo, hi = paper.l2_low.min(), paper.l2_high.max()
    sigma0, n10 = values["sigmas"][0], min(N_EVEN, values["n_max"])
    first = extra[extra.sigma == sigma0]
    extra_max = max(extra.printed.max(), extra.exact.max())
    return {"paper_lo": float(lo), "paper_hi": float(hi), "sigma0": float(sigma0), "n10": n10,
            "extra_n10": float(first[first.n == n10].printed.iloc[0]), "extra_max": float(extra_max),
            "ratio_min": float(lo / extra_max)}


# --------------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------------
def plot_radius(tables: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> plt.Figure:
    """Left: the certified radius of eq. (2) against p_A. Right: the largest radius n samples certify at
    level alpha, with ``certify_n`` dotted. One curve per sigma."""
    radii, rmax = tables["radius"], tables["max_radius"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    for s, part in radii.groupby("sigma"):
        ax1.plot(part.p, part.radius, label=f"$\\sigma$={s:g}")
        sub = rmax[rmax.sigma == s]
        ax2.plot(sub.n, sub.max_radius, label=f"$\\sigma$={s:g}")
    ax1.set(xlabel="$p_A$", ylabel="certified radius $R$", title="eq. (2)")
    ax2.set(xscale="log", xlabel="samples $n$", ylabel="largest certifiable radius",
            title=f"$\\sigma\\Phi^{{-1}}(\\alpha^{{1/n}})$, $\\alpha$={values['alpha']:g}")
    ax2.axvline(values["certify_n"], color="grey", ls=":", lw=1)
    ax1.legend()
    ax2.legend()
    return fig


def plot_sorm(tables: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> plt.Figure:
    """pi0 against beta, one row per dimension, convex and concave spheres side by side: exact (solid),
    SORM eq. (3) (dashed), Monte Carlo (dots, two standard errors) and the flat Phi(-beta) (dotted)."""
    sorm, dims = sorm_rows(tables, values), values["dims"]
    fig, axes = plt.subplots(len(dims), 2, figsize=(9, 3.2 * len(dims)), squeeze=False, sharex=True)
    for i, d in enumerate(dims):
        for j, (case, _) in enumerate(_CASES):
            ax = axes[i, j]
            part = sorm[(sorm.d == d) & (sorm.case == case)]
            for k, (s, sub) in enumerate(part.groupby("S")):
                colour = f"C{k}"
                ax.plot(sub.beta, sub.exact, color=colour, label=f"exact, S={s:g}")
                ax.plot(sub.beta, sub.sorm, color=colour, ls="--", label=f"SORM, S={s:g}")
                ax.errorbar(sub.beta, sub.mc, yerr=2 * sub.mc_se, fmt="o", ms=3, color=colour)
            flat = part.drop_duplicates("beta")
            ax.plot(flat.beta, flat.flat, color="black", lw=1, ls=":", label="flat $\\Phi(-\\beta)$")
            ax.axhline(0.5, color="grey", lw=0.8)
            ax.set(yscale="log", title=f"d = {d}, {case}", ylabel="$\\pi_0$")
            if i == len(dims) - 1:
                ax.set_xlabel("$\\beta = \\delta/\\sigma$")
            ax.legend(fontsize="x-small", ncol=2)
    return fig


def plot_threshold(tables: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> plt.Figure:
    """Left: the eq. (5) threshold on pi1 against n, printed (solid) and exact (dashed). Middle: the
    probability that the vote is adversarial at the threshold, simulated and binomial. Right: the acceptance
    of the ceil(n P_a) rule against pi1, with the eq. (5) thresholds dotted."""
    votes, accept, pa_attack = tables["majority"], tables["acceptance"], values["pa_attack"]
    n_grid = list(range(1, values["n_max"] + 1))
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 3.6))
    for k, pa in enumerate(values["pas"]):
        printed = [1 - theory.pi0_threshold(n, pa) for n in n_grid]
        exact = [1 - theory.pi0_threshold_exact(n, pa) for n in n_grid]
        ax1.plot(n_grid, printed, color=f"C{k}", lw=1, label=f"$P_a$={pa:g}, printed")
        ax1.plot(n_grid, exact, color=f"C{k}", lw=1, ls="--", label=f"$P_a$={pa:g}, exact")
        for rule, marker in (("printed", "o"), ("exact", "s")):
            sub = votes[(votes.pa == pa) & (votes.rule == rule)]
            ax2.errorbar(sub.n, sub.p_sim, yerr=2 * sub.p_sim_se, fmt=marker, ms=3, color=f"C{k}",
                         mfc="none" if rule == "exact" else None, label=f"$P_a$={pa:g}, {rule}")
            ax2.plot(sub.n, sub.p_exact, color=f"C{k}", lw=0.6, ls="-" if rule == "printed" else "--")
        ax2.axhline(pa, color=f"C{k}", lw=0.6, ls=":")
    ax1.set(xscale="log", xlabel="samples $n$", ylabel="threshold on $\\pi_1 = 1-\\pi_0$", title="eq. (5)")
    ax2.set(xscale="log", xlabel="samples $n$", ylabel="P[vote adversarial] at the threshold",
            title="simulated votes (dots) vs binomial (lines)")
    for k, (n, sub) in enumerate(accept.groupby("n")):
        ax3.plot(sub.pi1, sub.accept, color=f"C{k}", label=f"n={n}")
        ax3.plot(sub.pi1, sub.accept_sim, "o", ms=2, color=f"C{k}")
        ax3.axvline(1 - theory.pi0_threshold(n, pa_attack), color=f"C{k}", ls=":", lw=1)
    ax3.set(xlabel="$\\pi_1$", ylabel="P[accepted]",
            title=f"rule: $\\geq\\lceil n P_a\\rceil$ wrong, $P_a$={pa_attack:g}")
    ax1.legend(fontsize="x-small", ncol=2)
    ax2.legend(fontsize="x-small", ncol=2)
    ax3.legend(fontsize="small")
    return fig


def plot_distance(tables: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> plt.Figure:
    """The extra distance of eq. (6) against n for each sigma (printed: solid; exact: dashed), beside the
    range of mean distortions the paper measured in Fig. 5 (grey band)."""
    extra, paper = tables["extra_distance"], fig5_readings()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for k, (s, sub) in enumerate(extra.groupby("sigma")):
        ax.plot(sub.n, sub.printed, color=f"C{k}", label=f"$\\sigma$={s:g}, printed")
        ax.plot(sub.n, sub.exact, color=f"C{k}", ls="--", lw=1, label=f"$\\sigma$={s:g}, exact")
    ax.axhspan(paper.l2_low.min(), paper.l2_high.max(), color="grey", alpha=0.25,
               label="paper, Fig. 5: measured $\\ell_2$ distortions")
    ax.set(xscale="log", yscale="log", xlabel="samples $n$", ylabel="$\\ell_2$ distance",
           title=f"extra distance of eq. (6), $P_a$={values['pa_attack']:g}")
    ax.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    return fig
