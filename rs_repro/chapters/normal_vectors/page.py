"""The page half of the ``normal_vectors`` chapter (claim 9 of Maho, Furon and Le Merrer, ICASSP 2022, section
3.5): the record the claims chapter reads, the numbers of the prose and the figures.

:func:`results` joins the tables of the units of :func:`rs_repro.chapters.normal_vectors.compute.plan`: one
row per chosen image (:func:`image_rows`), the normal estimates at the images' x_b (:func:`estimates`) and
their summary per probe radius (:func:`by_ratio`). :func:`record` gives the
:class:`~rs_repro.report.measurements.NormalAgreement` the claims chapter reads, :func:`page` the numbers
and phrases of the prose, :func:`plot_cosine` and :func:`plot_one_label` the figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from rs_repro import seeds
from rs_repro.chapters.normal_vectors.compute import BOUNDARY_TOL, CROSSED, STEM
from rs_repro.report.measurements import NormalAgreement
from rs_repro.report.prose import counted
from rs_repro.report.verdicts import Interval, bootstrap


@dataclass(frozen=True)
class Results:
    """The chapter's tables, joined from its units' tables (:func:`results`).

    Attributes
    ----------
    images : pandas.DataFrame
        :func:`image_rows`: one row per chosen image.
    estimates : pandas.DataFrame
        :func:`estimates`: the rows of the images with an x_b, one per image and probe radius.
    by_ratio : pandas.DataFrame
        :func:`by_ratio` of ``estimates``: one row per probe radius.
    """

    images: pd.DataFrame
    estimates: pd.DataFrame
    by_ratio: pd.DataFrame


def results(tables: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> Results:
    """The chapter's tables from the tables of every unit of the plan (``tables`` maps a unit id to its table,
    :func:`rs_repro.pipeline.engine.compute`): the units ``image-<k>`` of the images the unit ``images``
    chose.

    Raises
    ------
    ValueError
        No chosen image has an x_b (:func:`estimates`).
    """
    parts = [tables[f"image-{k}"] for k in range(len(tables["images"]))]
    rows = estimates(parts)
    return Results(image_rows(parts), rows, by_ratio(rows, values))


def image_rows(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """One row per chosen image, in order, from the tables of its units
    (:func:`rs_repro.chapters.normal_vectors.compute.image_unit`): ``position, index, label, distance_a,
    outcome, past_x_a, gap`` and, for the images with an x_b, the columns of
    :func:`rs_repro.chapters.normal_vectors.compute.hsja_run`."""
    rows = pd.concat(list(tables), ignore_index=True).drop_duplicates("position")
    columns = ["position", "index", "label", "distance_a", "outcome", "past_x_a", "gap"]
    columns += [c for c in ("hsja_steps", "hsja_one_label_steps", "hsja_delta_ratio") if c in rows]
    return rows[columns].sort_values("position", ignore_index=True)


def estimates(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The rows of :func:`rs_repro.chapters.normal_vectors.compute.compare` of every image with an x_b, from
    the tables of the images' units, sorted by ratio then image position (the one-label columns as bool)."""
    rows = pd.concat(list(tables), ignore_index=True)
    rows = rows[rows.outcome == CROSSED]
    if rows.empty:
        raise ValueError("no chosen image has an x_b (no ray crosses the boundary of g_sigma): nothing was measured")
    return rows.astype({"one_label_f": bool, "one_label_rs": bool}).sort_values(["ratio", "position"],
                                                                               ignore_index=True)


def record(res: Results, values: Mapping[str, Any]) -> NormalAgreement:
    """The measurement of claim 9, on the images whose ray crosses the boundary of g_sigma (in the order of
    their positions, the same for every list)."""
    by = {float(r): part for r, part in res.estimates.groupby("ratio")}
    ratios = [float(r) for r in values["ratios"]]
    crossed = res.images[res.images.outcome == CROSSED]
    return NormalAgreement(dataset=values["dataset"], seed=int(values["seed"]), sigma=float(values["sigma"]),
                           n=int(values["n"]), probes=int(values["probes"]), ratios=ratios,
                           cosine=[[float(c) for c in by[r].cosine] for r in ratios],
                           one_label=[[bool(b) for b in by[r].one_label_rs] for r in ratios],
                           hsja_steps=[int(s) for s in crossed.hsja_steps],
                           hsja_one_label_steps=[int(s) for s in crossed.hsja_one_label_steps])


def cosine_interval(cosines: Sequence[float], seed: int, ratio: float) -> Interval:
    """The mean of ``cosines`` (one per image) and its 95% percentile bootstrap interval
    (:func:`rs_repro.report.verdicts.bootstrap`, seed ``seeds.derive_seed(seed, STEM, ratio)``); a degenerate
    interval with a single image."""
    if len(cosines) < 2:
        mean = float(np.mean(cosines))
        return Interval(mean, mean, mean, 0.95, len(cosines))
    return bootstrap(np.asarray(cosines), seed=seeds.derive_seed(seed, STEM, ratio))


def by_ratio(rows: pd.DataFrame, values: Mapping[str, Any]) -> pd.DataFrame:
    """One row per probe radius of the estimates ``rows`` (:func:`estimates`): the mean cosine between the
    estimates with and without RS and its bootstrap interval (:func:`cosine_interval`), the mean cosine
    between the two estimates without RS, the rates at which every probe got one label, and the mean fraction
    of probes answered adversarial, with and without RS."""
    table = []
    for ratio, part in rows.groupby("ratio"):
        interval = cosine_interval(part.cosine.tolist(), values["seed"], float(ratio))
        table.append({"delta / sigma": float(ratio), "delta": float(part.delta.iloc[0]),
                      "mean cosine": interval.estimate, "95% low": interval.lower, "95% high": interval.upper,
                      "mean cosine (f, f)": float(part.cosine_f.mean()),
                      "one label (RS)": float(part.one_label_rs.mean()),
                      "one label (f)": float(part.one_label_f.mean()),
                      "adversarial probes (RS)": float(part.adversarial_rs.mean()),
                      "adversarial probes (f)": float(part.adversarial_f.mean())})
    return pd.DataFrame(table)


def _by_ratio_text(table: pd.DataFrame, column: str, form: str) -> str:
    return ", ".join(f"{value:{form}} (δ/σ = {ratio:g})" for ratio, value in zip(table["delta / sigma"], table[column],
                                                                              strict=True))


def page(res: Results, values: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers and phrases the page's prose reads (glue name to value).

    The parameters ``sigma``, ``n``, ``probes``, ``boundary_samples``, ``hsja_queries``. The images:
    ``tried``, ``crossed``, ``not_crossed`` (a sentence), ``past_median`` and ``gap_max`` (median distance of
    x_b past x_a, largest absolute gap at x_b), ``gap_se`` (1 / sqrt(boundary_samples), a bound on the
    standard error of a gap on the boundary); the scan's parameters ``scan_step`` and ``scan_past`` and its
    constant ``boundary_tol``. Per ratio (texts over :func:`by_ratio`): ``cosines``, ``cosines_f``,
    ``one_label_rs``, ``one_label_f``, ``adversarial_f``; ``cosine_low`` / ``cosine_high`` and
    ``ratio_low`` / ``ratio_high`` at the smallest and largest ratio. HSJA: ``hsja_steps``,
    ``hsja_one_label_steps``, ``hsja_rate`` (their ratio), ``hsja_images`` (how many images had such a step,
    with the noun), ``hsja_delta_ratio`` (median probe radius at the last iterate, in sigma, over the runs that made a
    step) and the ratio nearest to it (in log scale) with its mean cosine, ``hsja_nearest_ratio`` and
    ``hsja_nearest_cosine``.
    """
    chosen = res.images
    crossed = chosen[chosen.outcome == CROSSED]
    others = chosen[chosen.outcome != CROSSED].outcome.value_counts()
    if others.empty:
        not_crossed = "every ray crosses it"
    else:
        not_crossed = "; ".join(f"{counted(int(c), 'image')}: {reason}" for reason, c in others.items())
    table = res.by_ratio
    steps, one = int(crossed.hsja_steps.sum()), int(crossed.hsja_one_label_steps.sum())
    hsja_delta = float(crossed.hsja_delta_ratio[crossed.hsja_steps > 0].median())
    nearest = int(np.argmin(np.abs(np.log(table["delta / sigma"].to_numpy() / hsja_delta))))
    return {"sigma": float(values["sigma"]), "n": int(values["n"]), "probes": int(values["probes"]),
            "boundary_samples": int(values["boundary_samples"]), "hsja_queries": int(values["hsja_queries"]),
            "tried": len(chosen), "crossed": len(crossed), "not_crossed": not_crossed,
            "past_median": float(crossed.past_x_a.median()), "gap_max": float(crossed.gap.abs().max()),
            "gap_se": 1 / math.sqrt(values["boundary_samples"]),
            "scan_step": float(values["scan_step"]), "scan_past": float(values["scan_past"]),
            "boundary_tol": BOUNDARY_TOL,
            "cosines": _by_ratio_text(table, "mean cosine", ".2f"),
            "cosines_f": _by_ratio_text(table, "mean cosine (f, f)", ".2f"),
            "one_label_rs": _by_ratio_text(table, "one label (RS)", ".2f"),
            "one_label_f": _by_ratio_text(table, "one label (f)", ".2f"),
            "adversarial_f": _by_ratio_text(table, "adversarial probes (f)", ".2f"),
            "ratio_low": float(table["delta / sigma"].iloc[0]), "ratio_high": float(table["delta / sigma"].iloc[-1]),
            "cosine_low": float(table["mean cosine"].iloc[0]), "cosine_high": float(table["mean cosine"].iloc[-1]),
            "hsja_steps": steps, "hsja_one_label_steps": one, "hsja_rate": one / steps if steps else math.nan,
            "hsja_images": counted(int((crossed.hsja_one_label_steps > 0).sum()), "image"),
            "hsja_delta_ratio": hsja_delta, "hsja_nearest_ratio": float(table["delta / sigma"].iloc[nearest]),
            "hsja_nearest_cosine": float(table["mean cosine"].iloc[nearest])}


# ---------------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------------

def plot_cosine(res: Results, values: Mapping[str, Any]) -> plt.Figure:
    """The cosine between HSJA's normal estimates at x_b with and without RS against delta / sigma: one dot
    per image, the mean with its 95% bootstrap interval; the mean cosine between two estimates without RS;
    and the paper's condition delta = sigma."""
    rows, table = res.estimates, res.by_ratio
    fig, ax = plt.subplots(figsize=(6.4, 3.8), layout="constrained")
    for ratio, part in rows.groupby("ratio"):
        spread = 10 ** (((np.arange(len(part)) % 7) - 3) * 0.012)  # a fixed spread, so that equal values stay visible
        ax.scatter(ratio * spread, part.cosine, s=10, color="grey", alpha=0.6, lw=0)
    ax.errorbar(table["delta / sigma"], table["mean cosine"],
                yerr=[table["mean cosine"] - table["95% low"], table["95% high"] - table["mean cosine"]],
                color="C0", marker="o", capsize=3, label="mean over the images (95% bootstrap interval)")
    ax.plot(table["delta / sigma"], table["mean cosine (f, f)"], color="grey", ls=":", marker=".",
            label="two estimates without RS (mean)")
    ax.axvline(1.0, color="black", ls="--", lw=1, label="$\\delta = \\sigma$")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set(xlabel="probe radius $\\delta / \\sigma$", ylabel="cosine (with RS, without RS)", ylim=(-1.05, 1.05),
           title=f"normal estimates at $x_b \\in \\partial g_\\sigma$, $\\sigma$ = {values['sigma']:g}, "
                 f"n = {values['n']}, {values['probes']} probes")
    ax.legend(fontsize="small", loc="lower right")
    return fig


def plot_one_label(res: Results, values: Mapping[str, Any]) -> plt.Figure:
    """The rate at which every probe of an estimate at x_b got the same answer, with and without RS, against
    delta / sigma; and the rate over the normal estimates of the full HSJA runs, at their median radius."""
    table, chosen = res.by_ratio, res.images
    crossed = chosen[chosen.outcome == CROSSED]
    fig, ax = plt.subplots(figsize=(6.4, 3.4), layout="constrained")
    ax.plot(table["delta / sigma"], table["one label (RS)"], marker="o", color="C0",
            label=f"with RS ($g_{{\\sigma,n}}$, n = {values['n']})")
    ax.plot(table["delta / sigma"], table["one label (f)"], marker="s", color="C1", label="without RS ($f$)")
    ran = crossed[crossed.hsja_steps > 0]
    ax.scatter([ran.hsja_delta_ratio.median()], [ran.hsja_one_label_steps.sum() / ran.hsja_steps.sum()], marker="*",
               s=120, color="C3", zorder=3, label="full HSJA runs against $g_{\\sigma,n}$ (median radius)")
    ax.axvline(1.0, color="black", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set(xlabel="probe radius $\\delta / \\sigma$", ylabel="estimates with one label", ylim=(-0.05, 1.05),
           title="every probe got the same answer")
    ax.legend(fontsize="small", loc="center right")
    return fig
