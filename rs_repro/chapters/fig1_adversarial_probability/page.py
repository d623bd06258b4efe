"""The page half of the ``fig1_adversarial_probability`` chapter: Fig. 1 of Maho, Furon and Le Merrer (ICASSP
2022, section 3.3), its record for the claims chapter (claim 7), its numbers and its figures.

The scans of :func:`rs_repro.chapters.fig1_adversarial_probability.compute.scan` are curves along the ray
past the white-box x_a; :func:`first_reach` turns a curve into the distance past x_a at which it reaches a
level: the boundary of g_sigma (:func:`crossing`), or the levels P_a = 0.5 and 0.8 of eq. (4)
(:func:`distances_at`). :func:`results` joins the tables of the units of
:func:`rs_repro.chapters.fig1_adversarial_probability.compute.plan`, :func:`record` gives the record of the
claims chapter, :func:`page` the numbers and sentences of the prose, :func:`plot_probability` and
:func:`plot_crossing_sigma` the two figures.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats

from rs_repro import data
from rs_repro.chapters.fig1_adversarial_probability.compute import Scan
from rs_repro.report.measurements import BoundaryPush, Crossing
from rs_repro.report.paper import FIG1_READINGS
from rs_repro.report.prose import counted


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


_PROFILE = {"t": float, "draws": int, "p_label": float, "p_other": float, "other_class": int, "unit": int}
_VOTES = {"t": float, "n": int, "votes": int, "wrong": int, "p": float, "lower": float, "upper": float,
          "unit": int}


def ray_scan(table: pd.DataFrame) -> Scan:
    """The :class:`~rs_repro.chapters.fig1_adversarial_probability.compute.Scan` of a
    :func:`~rs_repro.chapters.fig1_adversarial_probability.compute.ray_unit` table, each part with its column
    ``unit``."""
    parts = {name: table[table.part == name][list(columns)].astype(columns).reset_index(drop=True)
             for name, columns in (("profile", _PROFILE), ("votes", _VOTES))}
    return Scan(**parts)


@dataclass(frozen=True)
class Results:
    """The chapter's tables, joined from its units' tables (:func:`results`).

    Attributes
    ----------
    attacked : pandas.DataFrame
        :func:`rs_repro.chapters.fig1_adversarial_probability.compute.attack_table`: one row per attacked
        image.
    profile, votes : pandas.DataFrame
        The main scans of all attacked images
        (:class:`~rs_repro.chapters.fig1_adversarial_probability.compute.Scan`, column ``unit``: position
        among them).
    panel : Scan
        The finer scan of the panel image.
    sweeps : dict
        Each further noise level of ``sweep_sigmas`` -> the profile of the scan at that level on the ray of
        every attacked image, in order (a list of pandas.DataFrame, column ``unit``).
    crossings : pandas.Series
        Position -> distance past x_a where the boundary of g_sigma is crossed (:func:`crossing`).
    at_pa : pandas.DataFrame
        :func:`distances_at` of ``votes``: ``unit, n, pa, distance``.
    medians : pandas.Series
        (n, pa) -> median over the images of ``at_pa.distance``.
    panel_at : pandas.Series
        (n, pa) -> the same distance on the panel scan.
    transitions : pandas.DataFrame
        One row per n: the medians, the panel image's distances and the width of the transition.
    located : pandas.DataFrame
        ``sigma, unit, crossing``: the crossings at the main noise level and at each further one.
    by_sigma : pandas.DataFrame
        :func:`crossing_summary` of ``located``, one row per noise level, increasing.
    """

    attacked: pd.DataFrame
    profile: pd.DataFrame
    votes: pd.DataFrame
    panel: Scan
    sweeps: dict[float, list[pd.DataFrame]]
    crossings: pd.Series
    at_pa: pd.DataFrame
    medians: pd.Series
    panel_at: pd.Series
    transitions: pd.DataFrame
    located: pd.DataFrame
    by_sigma: pd.DataFrame


def results(tables: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> Results:
    """The chapter's tables from the tables of every unit of the plan (``tables`` maps a unit id to its table,
    :func:`rs_repro.pipeline.engine.compute`)."""
    ns, pas, sigma = values["ns"], values["pas"], values["sigma"]
    attacked_rows = tables["attack"]
    count = len(attacked_rows)
    main = [ray_scan(tables[f"scan-image{k}"]) for k in range(count)]
    profile = pd.concat([s.profile for s in main], ignore_index=True)
    votes = pd.concat([s.votes for s in main], ignore_index=True)
    panel = ray_scan(tables[f"panel-image{values['panel_image']}"])
    panel = Scan(panel.profile.drop(columns="unit"), panel.votes.drop(columns="unit"))
    sweeps = {level: [tables[f"sweep-sigma{level:g}-image{k}"] for k in range(count)]
              for level in values["sweep_sigmas"]}
    crossings = pd.Series({unit: crossing(part) for unit, part in profile.groupby("unit")})
    at_pa = distances_at(votes, pas)
    medians = at_pa.groupby(["n", "pa"]).distance.median()
    panel_at = distances_at(panel.votes, pas).set_index(["n", "pa"]).distance
    width = {n: medians[n, max(pas)] - medians[n, min(pas)] for n in ns}
    transitions = pd.DataFrame([{"n": n, **{f"distance at Pa={pa:g} (median)": medians[n, pa] for pa in pas},
                                 **{f"panel image, Pa={pa:g}": panel_at[n, pa] for pa in pas},
                                 f"width Pa {min(pas):g} -> {max(pas):g}": width[n]} for n in ns])
    located = [pd.DataFrame({"sigma": sigma, "unit": crossings.index, "crossing": crossings.to_numpy()})]
    for level, profiles in sweeps.items():
        located.append(pd.DataFrame([{"sigma": level, "unit": k, "crossing": crossing(part)}
                                     for k, part in enumerate(profiles)]))
    located = pd.concat(located, ignore_index=True)
    return Results(attacked_rows, profile, votes, panel, sweeps, crossings, at_pa, medians, panel_at, transitions,
                   located, crossing_summary(located))


def _censored_crossing(profile: pd.DataFrame) -> float:
    """:func:`crossing`, with a crossing outside the scanned range placed on its side: -inf when another class
    already leads at the first point of the ray, inf when the label leads at every point."""
    found = crossing(profile)
    if not math.isnan(found):
        return found
    return -math.inf if profile.p_other.iloc[0] >= profile.p_label.iloc[0] else math.inf


def _width(low: float, high: float) -> float | None:
    """The width of a transition first reaching its lower level at ``low`` and its upper one at ``high`` (NaN:
    censored, :func:`first_reach`): None without ``low``, inf without ``high`` only (it lies past the scan)."""
    if math.isnan(low):
        return None
    return math.inf if math.isnan(high) else float(high - low)


def record(res: Results, values: Mapping[str, Any]) -> BoundaryPush:
    """The record the claims chapter reads (claim 7: RS pushes the boundary; the transition of
    P[g_{sigma,n} != y] from 0 to 1 is wider for small n), image by image.

    Distances are l2, in [0, 1] pixel units, along the ray past the white-box x_a (t = 0); the crossing at
    the main noise level comes first in ``crossings``, then those of ``sweep_sigmas`` in increasing order.
    """
    ns, pas, sigma = values["ns"], values["pas"], values["sigma"]
    count = len(res.attacked)
    distances = {float(sigma): [_censored_crossing(part) for _, part in res.profile.groupby("unit", sort=True)]}
    for level in sorted(values["sweep_sigmas"]):
        distances.setdefault(float(level), [_censored_crossing(part) for part in res.sweeps[level]])
    reach = res.at_pa.set_index(["unit", "n", "pa"]).distance
    low, high = float(min(pas)), float(max(pas))
    return BoundaryPush(
        dataset=values["dataset"], sigma=float(sigma), ns=[int(n) for n in ns], pas=[float(p) for p in pas],
        num_images=count, attack_distance_median=float(res.attacked.distance.median()),
        widths={int(n): [_width(reach[k, n, low], reach[k, n, high]) for k in range(count)] for n in ns},
        crossings=[Crossing(sigma=level, distances=found) for level, found in distances.items()])


def _sign(p_value: float) -> str:
    return ("significantly more often than before it" if p_value < 0.05
            else "not significantly more often than before it")


def page(res: Results, values: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers and phrases the chapter's prose reads, by glue name."""
    ns, pas, sigma = values["ns"], values["pas"], values["sigma"]
    low, high = min(pas), max(pas)
    attacked_rows, by_sigma = res.attacked, res.by_sigma
    dims = math.prod(data.input_shape(values["dataset"]))
    main = by_sigma[by_sigma.sigma == sigma].iloc[0]
    finite = res.crossings[np.isfinite(res.crossings)]
    width = {n: res.medians[n, high] - res.medians[n, low] for n in ns}
    narrows = all(a > b for a, b in itertools.pairwise(width.values()))
    first = by_sigma.iloc[0]
    if first.p_beyond < 0.05:
        size = "a fraction of σ" if abs(first.median_sigma) < 1 else "several σ"
        push = ("Smoothing does push the boundary outwards past the closest point of the boundary of f, as eq. (3) "
                f"predicts for a boundary that curves away from x_o, by {size} at the smallest noise level")
    else:
        push = "No consistent outward push of the boundary past the closest point of the boundary of f is seen"
    readings = FIG1_READINGS
    return {
        "num_images": len(attacked_rows), "dataset": values["dataset"], "sigma": float(sigma),
        "attack_median": float(attacked_rows.distance.median()), "attack_min": float(attacked_rows.distance.min()),
        "attack_max": float(attacked_rows.distance.max()), "margin_max": float(attacked_rows.margin_a.max()),
        "box_exit_median": float(attacked_rows.box_exit.median()), "noise_norm": float(sigma * math.sqrt(dims)),
        "crossing_median": float(main["median"]), "crossing_median_sigma": float(main.median_sigma),
        "crossing_min": float(finite.min()), "crossing_max": float(finite.max()),
        "panel_crossing": float(crossing(res.panel.profile)),
        "beyond": int(main.beyond), "located": int(main.images - main.censored),
        "censored": counted(int(main.censored) + int((~np.isfinite(res.at_pa.distance)).sum()), "measurement"),
        "main_p": float(main.p_beyond), "main_sign": _sign(main.p_beyond),
        "pa_low": f"{low:g}", "pa_high": f"{high:g}",
        "at_low": ", ".join(f"{res.medians[n, low]:.3f} (n = {n})" for n in ns),
        "at_high": ", ".join(f"{res.medians[n, high]:.3f} (n = {n})" for n in ns),
        "widths": ", ".join(f"{width[n]:.3f} (n = {n})" for n in ns),
        "panel_at_high": ", ".join(f"{res.panel_at[n, high]:.3f} (n = {n})" for n in ns),
        "width_trend": "narrows steadily as n grows" if narrows else "does not narrow steadily as n grows",
        "paper_crossing": float(readings["crossing"]), "paper_sigma": float(readings["sigma"]),
        "paper_crossing_sigma": float(readings["crossing"] / readings["sigma"]),
        "paper_at_high": ", ".join(f"{d:g} (n = {n})" for n, d in readings["distance_at_0.8"].items()),
        "paper_at_one": ", ".join(f"{d:g} (n = {n})" for n, d in readings["distance_at_1"].items()),
        "directions": dims - 1, "paper_directions": math.prod(data.input_shape("imagenet")) - 1,
        "sweep_sigmas": ", ".join(f"{v:g}" for v in values["sweep_sigmas"]),
        "sweep_span": float(values["sweep_span"]),
        "sweep_medians": ", ".join(f"{m:.2f} σ (σ = {v:g})" for v, m in zip(by_sigma.sigma, by_sigma.median_sigma)),
        "sweep_beyond": ", ".join(f"{b} of {i - c} (σ = {v:g})" for v, b, i, c in
                                  zip(by_sigma.sigma, by_sigma.beyond, by_sigma.images, by_sigma.censored)),
        "smallest_sigma": float(first.sigma), "smallest_median": float(first["median"]),
        "smallest_p": float(first.p_beyond), "smallest_sign": _sign(first.p_beyond), "push_conclusion": push,
    }


# ---------------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------------

def plot_probability(res: Results, values: Mapping[str, Any]) -> plt.Figure:
    """Fig. 1: P[g_{sigma,n} != y] along the ray of the panel image (left), and over all attacked images
    the distances past x_a where the boundary of g_sigma is crossed and each level P_a reached (right)."""
    ns, pas, alpha = values["ns"], values["pas"], values["alpha"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [3, 2]},
                                   layout="constrained")
    prof = res.panel.profile
    ax1.plot(prof.t, 1 - prof.p_label, color="grey", lw=1, label="one micro-decision, $1 - P[f(x+\\sigma N) = y]$")
    for k, n in enumerate(ns):
        part = res.panel.votes[res.panel.votes.n == n]
        ax1.plot(part.t, part.p, color=f"C{k}", lw=1.6, label=f"n = {n} ({int(part.votes.iloc[0])} votes per point)")
        ax1.fill_between(part.t, part.lower, part.upper, color=f"C{k}", alpha=0.2, lw=0)
    for pa in pas:
        ax1.axhline(pa, color="black", lw=0.8, ls=":")
    ax1.axvline(0, color="grey", lw=1, ls="-.", label="$x_a$, boundary of $f$")
    ax1.axvline(crossing(prof), color="black", lw=1, ls="--", label="boundary of $g_\\sigma$ (Monte Carlo)")
    panel_index = int(res.attacked["index"].iloc[values["panel_image"]])
    ax1.set(xlabel="distance past $x_a$ along $x_a - x_o$ ($\\ell_2$)", ylabel="$P[g_{\\sigma,n}(x) \\neq y]$",
            title=f"one image (test index {panel_index}), $\\sigma$ = {values['sigma']:g}, "
                  f"{int((1 - alpha) * 100)}% bands")
    ax1.legend(fontsize="x-small", loc="lower right")

    at_pa = res.at_pa
    rows = [("boundary of $g_\\sigma$", res.crossings.to_numpy(), "black", "o")]
    rows += [(f"n = {n}, $P_a$ = {pa:g}", at_pa[(at_pa.n == n) & (at_pa.pa == pa)].distance.to_numpy(), f"C{k}",
              "o" if pa == min(pas) else "x") for k, n in enumerate(ns) for pa in pas]
    for r, (_, found, color, marker) in enumerate(rows):
        found = np.sort(found[np.isfinite(found)])
        offsets = ((np.arange(len(found)) % 5) - 2) * 0.07  # a fixed spread, so that equal values stay visible
        ax2.scatter(found, r + offsets, s=12, color=color, alpha=0.7, marker=marker)
        if len(found):
            ax2.plot([np.median(found)] * 2, [r - 0.3, r + 0.3], color=color, lw=2)
    ax2.axvline(0, color="grey", lw=1, ls="-.")
    ax2.set_yticks(range(len(rows)), [row[0] for row in rows])
    ax2.invert_yaxis()
    ax2.set(xlabel="distance past $x_a$ ($\\ell_2$)", title=f"{len(res.crossings)} images (bar: median)")
    return fig


def plot_crossing_sigma(res: Results) -> plt.Figure:
    """The crossing past x_a in units of sigma on every ray, at each noise level (bar: median)."""
    fig, ax = plt.subplots(figsize=(6, 3.4), layout="constrained")
    for r, (level, part) in enumerate(res.located.groupby("sigma", sort=True)):
        found = np.sort((part.crossing / level).to_numpy())
        found = found[np.isfinite(found)]
        ax.scatter(r + ((np.arange(len(found)) % 5) - 2) * 0.06, found, s=12, color="C0", alpha=0.7)
        ax.plot([r - 0.3, r + 0.3], [np.median(found)] * 2, color="black", lw=2)
    ax.axhline(0, color="grey", lw=1, ls="-.")
    ax.set_xticks(range(res.by_sigma.shape[0]), [f"{v:g}" for v in res.by_sigma.sigma])
    ax.set(xlabel="$\\sigma$", ylabel="crossing past $x_a$ / $\\sigma$",
           title="boundary of $g_\\sigma$ on the rays of the attacked images (bar: median)")
    return fig
