"""The page half of the ``fig2_slices`` chapter: the label maps, their speckle and the figure (Fig. 2 of Maho,
Furon and Le Merrer, ICASSP 2022).

:func:`results` joins the tables of the units of :func:`rs_repro.chapters.fig2_slices.compute.plan` (the
labels of f and the two votes of g_{sigma,n} for each n, :func:`slice_table`) and measures their speckle
(:func:`speckle_summary`); :func:`page` gives the numbers and phrases of the prose, :func:`speckle_table`
the table the page shows, :func:`plot_slices` the figure. The chapter records nothing for the claims
chapter (:func:`record`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from rs_repro import data
from rs_repro.chapters.fig2_slices.compute import REPLICATES


@dataclass(frozen=True)
class Results:
    """The chapter's tables, joined from its units' tables (:func:`results`).

    Attributes
    ----------
    centre : pandas.Series
        The centre image x_o: ``index`` (position in the full test split), ``label`` (true class), ``f``
        (f(x_o)).
    slices : pandas.DataFrame
        The labels of f, then the votes of each n (:func:`slice_table`).
    speckle : pandas.DataFrame
        :func:`speckle_summary` of ``slices``: one row per map, ``n`` (0 for f), ``unstable``, ``vs_f``,
        ``isolated``.
    """

    centre: pd.Series
    slices: pd.DataFrame
    speckle: pd.DataFrame


def results(tables: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> Results:
    """The chapter's tables from the tables of every unit of the plan (``tables`` maps a unit id to its
    table, :func:`rs_repro.pipeline.engine.compute`)."""
    slices = slice_table(tables, values)
    return Results(tables["centre"].iloc[0], slices, speckle_summary(slices))


def record(res: Results, values: Mapping[str, Any]) -> None:
    """The chapter's record for the claims chapter: none (Fig. 2 feeds no claim)."""


def slice_table(tables: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> pd.DataFrame:
    """The labels of the units ``labels-f`` and ``labels-n<n>`` in one table (rows of
    :func:`rs_repro.chapters.fig2_slices.compute.slice_labels`): f's, then the votes of each n of ``ns``."""
    return pd.concat([tables["labels-f"], *(tables[f"labels-n{n}"] for n in values["ns"])], ignore_index=True)


def label_map(table: pd.DataFrame, n: int = 0, replicate: int = 0) -> np.ndarray:
    """The labels of f (``n=0``) or of one vote of g_{sigma,n} (rows of
    :func:`rs_repro.chapters.fig2_slices.compute.slice_labels`) as an image.

    Parameters
    ----------
    table : pandas.DataFrame
        Rows of :func:`rs_repro.chapters.fig2_slices.compute.slice_labels` (e.g. :func:`slice_table`).
    n : int
        0 for f, else the vote's n.
    replicate : int
        Which of the :data:`rs_repro.chapters.fig2_slices.compute.REPLICATES` independent votes (0 for f).

    Returns
    -------
    numpy.ndarray, shape [resolution, resolution], int64
        ``labels[i, j]`` at (a, b) = (coordinate j, coordinate i): rows go along v, columns along u.
    """
    chosen = table[(table.n == n) & (table.replicate == replicate)]
    if chosen.empty:
        raise ValueError(f"n={n!r}, replicate={replicate!r} is not accepted; the table has (n, replicate) in "
                         f"{sorted(set(zip(table.n.tolist(), table.replicate.tolist())))}")
    resolution = int(chosen.j.max()) + 1
    labels = np.empty((resolution, resolution), dtype=np.int64)
    labels[chosen.i.to_numpy(), chosen.j.to_numpy()] = chosen.label.to_numpy()
    return labels


def isolated_fraction(labels: np.ndarray) -> float:
    """Fraction of grid points whose label none of their grid neighbours (up, down, left, right) shares.

    Speckle in the picture's sense: single-point islands. A map made of regions a few grid steps wide has
    none; a border where labels are drawn at random has many. Edge points count with the 2 or 3
    neighbours they have.

    Parameters
    ----------
    labels : numpy.ndarray, shape [R, R'] with R, R' >= 2
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or min(labels.shape) < 2:
        raise ValueError(f"labels must be a 2-D array with both sides >= 2, got shape {labels.shape}")
    shared = np.zeros(labels.shape, dtype=bool)
    shared[1:] |= labels[1:] == labels[:-1]
    shared[:-1] |= labels[:-1] == labels[1:]
    shared[:, 1:] |= labels[:, 1:] == labels[:, :-1]
    shared[:, :-1] |= labels[:, :-1] == labels[:, 1:]
    return float((~shared).mean())


def speckle_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Measures of the speckle of each label map of :func:`rs_repro.chapters.fig2_slices.compute.slice_labels`
    (the paper's point about Fig. 2).

    Over the resolution ** 2 grid points, for f and for each n:

    * ``unstable``: fraction of points where the two independent votes of g_{sigma,n} elect different
      labels: how often asking the smoothed model twice about the same image gets two answers. It is the
      speckle itself (a map drawn again comes out different there), needs no estimate of g_sigma, and
      vanishes as n grows. At a point where a vote elects the label of g_sigma with probability 1 - q
      and the wrong votes are split among other classes, it is at most 2 q (exactly 2 q (1 - q) with two
      classes). 0 for f, which is deterministic.
    * ``vs_f``: fraction of points where the (first) vote differs from the base classifier f: the speckle
      plus the regions smoothing moves (which remain as n grows: g_sigma is not f).
    * ``isolated``: :func:`isolated_fraction` of the (first) map: single-point islands of a label.

    Parameters
    ----------
    table : pandas.DataFrame
        Rows of :func:`rs_repro.chapters.fig2_slices.compute.slice_labels` for f and for each n
        (:func:`slice_table`).

    Returns
    -------
    pandas.DataFrame
        One row per map: ``n`` (0 for f), ``unstable``, ``vs_f``, ``isolated``.
    """
    f = label_map(table, 0)
    out = [{"n": 0, "unstable": 0.0, "vs_f": 0.0, "isolated": isolated_fraction(f)}]
    for n in sorted(set(table.n[table.classifier == "vote"].tolist())):
        first, second = label_map(table, n, 0), label_map(table, n, 1)
        out.append({"n": int(n), "unstable": float((first != second).mean()), "vs_f": float((first != f).mean()),
                    "isolated": isolated_fraction(first)})
    return pd.DataFrame(out)


def speckle_table(res: Results) -> pd.DataFrame:
    """:func:`speckle_summary` as the page shows it: one row per map (``f (no RS)``, then each n), 4 decimals."""
    summary = res.speckle.set_index("n")
    return summary.rename(index={0: "f (no RS)"}).rename_axis("n").round(4)


def page(res: Results, values: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers and phrases the page's prose reads (glue name to value).

    The setting (``dataset``, ``image``: position in the full test split, ``y_o``, ``f_o``, ``sigma``,
    ``extent``, ``resolution``, ``points``, ``forward_passes``), ``classes_f`` (classes f shows on the slice)
    and the speckle of :func:`speckle_summary`: ``unstable_all``, ``vs_f_all``, ``isolated_all`` (one phrase
    over ``ns``), ``isolated_f``, ``shrink`` (ratio of ``unstable`` between the first and the last n, against
    ``sqrt_ratio`` = sqrt(n_last / n_first) for a flat border), ``shrinks`` (whether ``unstable`` decreases
    strictly along ``ns``).
    """
    ns, resolution = list(values["ns"]), values["resolution"]
    table, summary, centre = res.slices, res.speckle.set_index("n"), res.centre
    first, last = ns[0], ns[-1]
    unstable = summary.unstable
    shrinks = all(unstable[a] > unstable[b] for a, b in itertools.pairwise(ns))
    return {
        "dataset": values["dataset"], "image": int(centre["index"]), "y_o": int(centre["label"]),
        "f_o": int(centre["f"]), "sigma": float(values["sigma"]), "extent": float(values["extent"]),
        "resolution": resolution, "points": resolution * resolution,
        "forward_passes": f"{resolution * resolution * (1 + REPLICATES * sum(ns)):,}",
        "classes_f": len(np.unique(label_map(table, 0))),
        "unstable_all": ", ".join(f"{unstable[n]:.3f} (n = {n})" for n in ns),
        "vs_f_all": ", ".join(f"{summary.vs_f[n]:.3f} (n = {n})" for n in ns),
        "isolated_all": ", ".join(f"{summary.isolated[n]:.4f} (n = {n})" for n in ns),
        "isolated_f": float(summary.isolated[0]), "n_first": first, "n_last": last,
        "shrink": float(unstable[first] / unstable[last] if unstable[last] > 0 else math.inf),
        "sqrt_ratio": math.sqrt(last / first), "shrinks": "decreases" if shrinks else "does not decrease",
    }


def plot_slices(res: Results, values: Mapping[str, Any]) -> plt.Figure:
    """The paper's Fig. 2: the label maps of f and of the first vote of each n, one colour per label.

    With few classes (K <= 10) each class keeps its own colour whatever the slice shows; with many, the 19
    largest regions get their own colour and the others are grouped as 'other classes'.
    """
    ns, extent, resolution, dataset = values["ns"], values["extent"], values["resolution"], values["dataset"]
    table = res.slices
    K = data.num_classes(dataset)
    maps = {0: label_map(table, 0), **{n: label_map(table, n) for n in ns}}
    present = pd.Series(np.concatenate([m.ravel() for m in maps.values()])).value_counts()  # largest area first
    if K <= 10:
        shown = sorted(present.index.tolist())
        palette = plt.get_cmap("tab10").colors
        colour_of = {label: label for label in range(K)}
        other = K
    else:
        shown = present.index[:19].tolist()
        palette = plt.get_cmap("tab10" if len(shown) <= 10 else "tab20").colors
        colour_of = {label: k for k, label in enumerate(sorted(shown))}
        other = len(shown)
    cmap = ListedColormap(list(palette[:other]) + [(0.6, 0.6, 0.6)])
    name = (lambda c: f"digit {c}") if dataset == "digits" else (lambda c: f"class {c}")

    panels = len(maps)
    ncols = 2 if panels <= 4 else 3
    nrows = math.ceil(panels / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 3.3 * nrows), squeeze=False,
                             sharex=True, sharey=True)
    half = extent * resolution / (resolution - 1)  # grid points are pixel centres: edges half a step beyond
    for k, (ax, (n, labels)) in enumerate(zip(axes.flat, maps.items())):
        index = np.vectorize(lambda c: colour_of.get(c, other))(labels)
        ax.imshow(index, origin="lower", extent=[-half, half, -half, half], cmap=cmap, vmin=-0.5,
                  vmax=other + 0.5, interpolation="nearest")
        ax.plot(0, 0, marker="*", ms=12, mfc="white", mec="black", ls="none")
        title = "no RS: $f$" if n == 0 else f"$g_{{\\sigma,n}}$, n = {n}"
        ax.set_title(f"({chr(ord('a') + k)}) {title}")
        ax.grid(False)
    for ax in axes.flat[panels:]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("$a$ (along $u$, $\\ell_2$)")
    for ax in axes[:, 0]:
        ax.set_ylabel("$b$ (along $v$, $\\ell_2$)")
    handles = [Patch(color=palette[colour_of[c]], label=name(c)) for c in sorted(shown)]
    if len(present) > len(shown):
        handles.append(Patch(color=(0.6, 0.6, 0.6), label="other classes"))
    handles.append(plt.Line2D([], [], marker="*", ms=12, mfc="white", mec="black", ls="none", label="$x_o$"))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), title="elected label")
    fig.suptitle(f"{dataset}, test image {int(res.centre['index'])}, $\\sigma$ = {values['sigma']:g}")
    fig.tight_layout()
    return fig
