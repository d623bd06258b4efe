"""The page half of the ``fig3_binary_search`` chapter: the segments' tables of
:mod:`rs_repro.chapters.fig3_binary_search.compute` read as the boundary of g_sigma and the spread of the
searches, the :class:`~rs_repro.report.measurements.BisectionSpread` the claims chapter reads, the numbers the
prose glues and the figure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from rs_repro.report.measurements import BisectionSpread


def results(tables: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """The tables of the segments (``segment-<k>`` to its
    :func:`~rs_repro.chapters.fig3_binary_search.compute.segment_unit` table, in order), from the tables of
    every unit of :func:`~rs_repro.chapters.fig3_binary_search.compute.plan`."""
    return {f"segment-{k}": tables[f"segment-{k}"] for k in tables["segments"].segment}


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


def segment_parts(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, float, float]:
    """The pieces of one :func:`~rs_repro.chapters.fig3_binary_search.compute.segment_unit` table: the profile,
    the searches, the length and t_f."""
    profile = table[table.part == "profile"]
    return profile, table[table.part == "search"], float(table.length.iloc[0]), float(table.t_f.iloc[0])


def search_summary(res: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> pd.DataFrame:
    """Per segment and n, in l2 units: the spread (standard deviation) of the searches' outputs, their mean
    offset from the boundary of g_sigma (negative: on PointA's side), and how far that boundary lies from
    f's.

    Returns
    -------
    pandas.DataFrame
        Columns ``segment, n, length, spread (std), mean offset from boundary of g,
        boundary of g - boundary of f``.
    """
    rows = []
    for table in res.values():
        profile, searches, length, t_f = segment_parts(table)
        t_g = boundary_of_g(profile)
        for n in values["ns"]:
            t = searches[searches.n == n].t
            rows.append({"segment": int(table.segment.iloc[0]), "n": n, "length": length,
                         "spread (std)": t.std() * length, "mean offset from boundary of g": (t.mean() - t_g) * length,
                         "boundary of g - boundary of f": (t_g - t_f) * length})
    return pd.DataFrame(rows)


def spread_by_n(res: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> pd.DataFrame:
    """The spread and the mean offset of :func:`search_summary`, averaged over the segments, one row per n."""
    return search_summary(res, values).groupby("n")[["spread (std)", "mean offset from boundary of g"]].mean()


def record(res: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> BisectionSpread:
    """The measurement of claim 8: the spread of the search's output per n, averaged over the segments and
    on each segment."""
    spread = spread_by_n(res, values)["spread (std)"]
    per_segment = search_summary(res, values).sort_values("segment").groupby("n")["spread (std)"]
    return BisectionSpread(dataset=values["dataset"], seed=values["seed"], sigma=float(values["sigma"]),
                           spread={int(n): float(s) for n, s in spread.items()},
                           per_segment={int(n): [float(v) for v in part] for n, part in per_segment})


def histogram_edges(res: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> np.ndarray:
    """The edges (l2 from PointA, ``bins + 1`` of them) of the figure's histograms on the first segment.

    ``bins`` equal bins over the whole segment; with ``zoom``, over the range of the searches' outputs (all n)
    and the boundary of g_sigma, widened by a tenth on each side (by one bin of the segment if that range is a
    point) and kept within the segment. Between two ImageNet images (l2 about 100) the outputs spread over a
    small part of the segment, which bins of the whole segment would put into one.
    """
    profile, searches, length, _ = segment_parts(res["segment-0"])
    if not values["zoom"]:
        return np.linspace(0, length, values["bins"] + 1)
    d = searches.t.to_numpy() * length
    ends = [d.min(), d.max(), boundary_of_g(profile) * length]  # the boundary is NaN where g_sigma never flips
    low, high = np.nanmin(ends), np.nanmax(ends)
    pad = (high - low) / 10 if high > low else length / values["bins"]
    return np.linspace(max(low - pad, 0.0), min(high + pad, length), values["bins"] + 1)


def _first_histogram(res: Mapping[str, pd.DataFrame], values: Mapping[str, Any], n: int) -> np.ndarray:
    """The histogram the figure draws for ``n``: the outputs on the first segment, as fractions of the
    searches, over the bins of :func:`histogram_edges`."""
    _, searches, length, _ = segment_parts(res["segment-0"])
    d = searches[searches.n == n].t.to_numpy() * length
    heights, _ = np.histogram(d, bins=histogram_edges(res, values), weights=np.full(len(d), 1 / len(d)))
    return heights


def page(res: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers and phrases the page's prose reads (glue name to value), from the segments' tables
    (:func:`results`).

    ``repeats``, ``num_segments``, ``mean_length``; ``spread_small`` / ``spread_large`` and ``offset_small`` /
    ``offset_large`` (:func:`spread_by_n` at the first and the last n, ``n_small`` and ``n_large``);
    ``peaks``: the highest bin of the first segment's histogram for each n (:func:`histogram_edges`).
    """
    ns = values["ns"]
    by_n = spread_by_n(res, values)
    peaks = {n: _first_histogram(res, values, n).max() for n in ns}
    return {"repeats": values["repeats"], "num_segments": len(res),
            "peaks": ", ".join(f"{peaks[n]:.2f} (n={n})" for n in ns),
            "spread_small": float(by_n["spread (std)"].iloc[0]), "spread_large": float(by_n["spread (std)"].iloc[-1]),
            "n_small": ns[0], "n_large": ns[-1],
            "offset_small": float(by_n["mean offset from boundary of g"].iloc[0]),
            "offset_large": float(by_n["mean offset from boundary of g"].iloc[-1]),
            "mean_length": float(search_summary(res, values).length.mean())}


def plot_bisection(res: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> plt.Figure:
    """The paper's Fig. 3 on the first segment: the distribution of the searches' outputs for each n
    (left) and the class probabilities of the smoothed classifier along the segment (right), with the
    boundaries of g_sigma and of f; both panels over the range of :func:`histogram_edges`."""
    profile, searches, length, t_f = segment_parts(res["segment-0"])
    t_g = boundary_of_g(profile)
    edges = histogram_edges(res, values)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [3, 2]})
    for k, n in enumerate(values["ns"]):
        d = searches[searches.n == n].t.to_numpy() * length
        ax1.hist(d, bins=edges, weights=np.full(len(d), 1 / len(d)), histtype="step", lw=1.5, color=f"C{k}",
                 label=f"n = {n}")
    for ax in (ax1, ax2):
        ax.axvline(t_g * length, color="black", ls="--", lw=1, label="boundary of $g_\\sigma$ (Monte Carlo)")
        ax.axvline(t_f * length, color="grey", ls=":", lw=1, label="boundary of $f$")
    ax1.set(xlabel="position on the segment PointA $\\to$ PointB ($\\ell_2$ from PointA)", ylabel="probability",
            title=f"output of a {values['steps']}-step binary search against $g_{{\\sigma,n}}$, "
                  f"$\\sigma$={values['sigma']:g}")
    ax1.legend(fontsize="small")
    ax2.plot(profile.t * length, profile.p_label, label="$P[f(x+\\sigma N) = y]$")
    ax2.plot(profile.t * length, profile.p_other, label="largest other class")
    ax2.set(xlabel="position on the segment", ylabel="probability", title="class probabilities along the segment")
    ax2.legend(fontsize="small")
    if values["zoom"]:
        for ax in (ax1, ax2):
            ax.set_xlim(edges[0], edges[-1])
    return fig
