"""The page half of the ``theory`` chapter: the numbers its prose glues from the tables of
:mod:`rs_repro.chapters.theory.compute`, the :class:`~rs_repro.report.measurements.ThresholdCheck` the claims
chapter reads, and its four figures."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import optimize, stats

from rs_repro import theory
from rs_repro.report.measurements import ThresholdCheck
from rs_repro.report.paper import fig4_readings, fig5_readings

#: The even n of the eq. (5) paragraph (the smallest n of Fig. 5).
N_EVEN = 10
#: The n at which the record gives the exact probability of a wrong majority at the printed threshold.
RECORD_NS = (5, 11, 10, 50, 100)
_CASES = (("convex (inside)", "convex"), ("concave (outside)", "concave"))


def results(tables: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """The chapter's results: the tables of every unit of :func:`~rs_repro.chapters.theory.compute.plan`, by
    unit id, each read as it is."""
    return dict(tables)


def sorm_rows(res: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> pd.DataFrame:
    """The rows of the ``sorm-d<d>`` units, joined in the order of ``dims``."""
    return pd.concat([res[f"sorm-d{d}"] for d in values["dims"]], ignore_index=True)


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


def record(res: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> ThresholdCheck:
    """The record of claim 11: the probability of a wrong majority at the printed eq. (5) threshold, at
    ``P_a = pa_attack`` and each n of :data:`RECORD_NS` (closed form; ``res`` is not needed)."""
    pa = values["pa_attack"]
    return ThresholdCheck(pa=pa, probability_at_threshold={n: probability_at_threshold(n, pa)
                                                           for n in RECORD_NS})


def page(res: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> dict[str, Any]:
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
    return {**_radius_page(values), **_sorm_page(sorm_rows(res, values), values),
            **_vote_page(res["majority"], values), **_distance_page(res["extra_distance"], values)}


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
def plot_radius(res: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> plt.Figure:
    """Left: the certified radius of eq. (2) against p_A. Right: the largest radius n samples certify at
    level alpha, with ``certify_n`` dotted. One curve per sigma."""
    radii, rmax = res["radius"], res["max_radius"]
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


def plot_sorm(res: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> plt.Figure:
    """pi0 against beta, one row per dimension, convex and concave spheres side by side: exact (solid),
    SORM eq. (3) (dashed), Monte Carlo (dots, two standard errors) and the flat Phi(-beta) (dotted)."""
    sorm, dims = sorm_rows(res, values), values["dims"]
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


def plot_threshold(res: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> plt.Figure:
    """Left: the eq. (5) threshold on pi1 against n, printed (solid) and exact (dashed). Middle: the
    probability that the vote is adversarial at the threshold, simulated and binomial. Right: the acceptance
    of the ceil(n P_a) rule against pi1, with the eq. (5) thresholds dotted."""
    votes, accept, pa_attack = res["majority"], res["acceptance"], values["pa_attack"]
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


def plot_distance(res: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> plt.Figure:
    """The extra distance of eq. (6) against n for each sigma (printed: solid; exact: dashed), beside the
    range of mean distortions the paper measured in Fig. 5 (grey band)."""
    extra, paper = res["extra_distance"], fig5_readings()
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
