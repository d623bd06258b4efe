"""The ``fig2_slices`` chapter: Fig. 2 of the paper, a slice of input space under smoothing.

Fig. 2 of Maho, Furon, Le Merrer (ICASSP 2022) is a two-dimensional slice of the input space of a classifier
around a validation image x_o, spanned by two random directions, each point coloured by the label the
classifier elects there: the base classifier f (no RS) and the majority vote g_{sigma,n} of n noisy
micro-decisions for n = 10, 50, 200 (sigma = 0.05). With smoothing the regions are smoother, but their
borders are speckled ("fractalised", French version), and the speckle shrinks as n grows.

Here the slice is the set of points

    x(a, b) = x_o + a u + b v,    (a, b) on a resolution x resolution grid of [-extent, extent]^2,

with u, v orthonormal (Gram-Schmidt of two Gaussian vectors from a seeded generator), so (a, b) are l2
distances in [0, 1]^d. The points are **not clipped** to the pixel box [0, 1]^d: the slice is a plane of
R^d on which f and g_sigma are defined, as the Gaussian noise of smoothing is never clipped either.

Each grid point gets the label of the base classifier f (no RS) and, for each n, two independent
votes of g_{sigma,n}: one fresh vote of n micro-decisions per point, as a user of the smoothed model sees it
(one query per point), ties broken at random (:meth:`~rs_repro.smoothing.Smooth.vote`). The first vote is
drawn in the figure; the second one measures how random the map is (:func:`speckle_summary`).

The chapter's shape: :func:`check_parameters` (run before anything), :func:`units` (the centre image,
the labels of f, and the votes of each n: independent units of :mod:`rs_repro.pipeline.engine`), :func:`page` and
:func:`speckle_table` (what the page prints), :func:`plot_slices` (the figure). The chapter records no
measurements for the claims chapter.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch
from torch import nn

from rs_repro import checks, data, seeds
from rs_repro.checks import device_rule, rule_checker
from rs_repro.experiments.common import count_rule, data_and_models
from rs_repro.models import load_model, model_spec
from rs_repro.pipeline.engine import Unit
from rs_repro.smoothing import Smooth

_MODULE = __name__
#: Independent votes of g_{sigma,n} per grid point and n (``replicate`` 0 and 1).
REPLICATES = 2


def check_parameters(values: Mapping[str, Any]) -> None:
    """The chapter's rules on its parameters (ValueError naming the first one broken), run before anything."""
    need = rule_checker(values)
    size = data_and_models(values)
    fits, accepted = count_rule(values["num_images"], size, f"test images of {values['dataset']}",
                                zero="the whole test split")
    need(fits, "num_images", accepted)
    subset = values["num_images"] or size
    need(0 <= values["image"] < subset, "image",
         f"a position in the subset of num_images={subset} test images (0 <= image < {subset})"
         if values["num_images"] else f"a position in the test split of {size} images (0 <= image < {size})")
    need(math.isfinite(values["sigma"]) and values["sigma"] > 0, "sigma", "a noise level > 0")
    ns = values["ns"]
    need(bool(ns) and all(n >= 1 for n in ns) and len(set(ns)) == len(ns), "ns",
         "a non-empty list of distinct sample counts >= 1")
    need(values["resolution"] >= 2, "resolution", "at least 2 grid points per axis")
    need(math.isfinite(values["extent"]) and values["extent"] > 0, "extent", "a finite half-width > 0 (l2 units)")
    need(values["batch_size"] >= 1, "batch_size", "at least 1")
    fits, accepted = device_rule(values["device"])
    need(fits, "device", accepted)


def units(values: Mapping[str, Any]) -> list[Unit]:
    """The chapter's work: the centre image (``centre``), the labels of f (``labels-f``) and the two votes of
    g_{sigma,n} for each n (``labels-n<n>``), each unit with the arguments its numbers depend on.

    ``values`` are the notebook's parameters (:func:`rs_repro.pipeline.book.chapter_values`). A model to train is
    trained here, once, before any worker starts.
    """
    centre = {"dataset": values["dataset"], "data_dir": values["data_dir"] or None,
              "num_images": values["num_images"], "image": values["image"],
              "model": model_spec("standard", weights=values["standard_weights"], seed=values["seed"]),
              "device": values["device"], "seed": values["seed"]}
    if not values["standard_weights"]:
        load_model(values["dataset"], centre["model"], data_dir=centre["data_dir"])
    grid = {**centre, "resolution": values["resolution"], "extent": values["extent"],
            "batch_size": values["batch_size"]}
    return [Unit("centre", f"{_MODULE}:centre_unit", centre),
            Unit("labels-f", f"{_MODULE}:labels_unit", {**grid, "n": 0}),
            *(Unit(f"labels-n{n}", f"{_MODULE}:labels_unit", {**grid, "n": n, "sigma": values["sigma"]})
              for n in values["ns"])]


def _centre(dataset: str, data_dir: str | None, num_images: int, image: int, model: Mapping[str, Any],
            device: str, seed: int) -> tuple[nn.Module, torch.Tensor, int, int]:
    """The base model on ``device``, the centre image x_o [C, H, W] on ``device``, its position in the full
    test split and its true class."""
    test = data.load_dataset(dataset, "test", data_dir=data_dir, n=num_images or None, seed=seed)
    if not 0 <= image < len(test.x):
        raise ValueError(f"image={image} is not accepted; expected a position in the test split of {dataset} "
                         f"(0 <= image < {len(test.x)})")
    base, _ = load_model(dataset, model, data_dir=data_dir, device=device)
    return base, test.x[image].to(device), int(test.index[image]), int(test.y[image])


def centre_unit(*, dataset: str, data_dir: str | None, num_images: int, image: int, model: Mapping[str, Any],
                device: str, seed: int) -> pd.DataFrame:
    """The centre image x_o of the slice: test image ``image`` of ``dataset`` (or of its seeded subset of
    ``num_images`` images), and the label f gives it (``model``: a :func:`rs_repro.models.model_spec`).

    Returns
    -------
    pandas.DataFrame
        One row: ``index`` (position in the full test split), ``label`` (true class), ``f`` (f(x_o)).
    """
    base, x_o, index, label = _centre(dataset, data_dir, num_images, image, model, device, seed)
    with torch.inference_mode():
        f_o = int(base(x_o[None]).argmax(1))
    return pd.DataFrame([{"index": index, "label": label, "f": f_o}])


def labels_unit(*, dataset: str, data_dir: str | None, num_images: int, image: int, model: Mapping[str, Any],
                resolution: int, extent: float, batch_size: int, device: str, seed: int, n: int,
                sigma: float | None = None) -> pd.DataFrame:
    """:func:`slice_labels` around the centre image of :func:`centre_unit`: f's for ``n = 0``, else the
    votes of g_{sigma,n}."""
    base, x_o, _, _ = _centre(dataset, data_dir, num_images, image, model, device, seed)
    return slice_labels(base, data.num_classes(dataset), x_o, n=n, sigma=sigma, resolution=resolution,
                        extent=extent, seed=seed, batch_size=batch_size)


def orthonormal_directions(shape: Sequence[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two random orthonormal directions u, v of R^d spanning the slice (Fig. 2: "2 random directions").

    Two standard Gaussian vectors are drawn from ``seeds.generator(seed, "fig2", "directions")`` and made
    orthonormal by Gram-Schmidt in float64: u = g1 / ||g1||, v = (g2 - <g2, u> u) / ||...||.

    Parameters
    ----------
    shape : sequence of int
        Shape of one image, e.g. [C, H, W]; d is the product.
    seed : int
        Master seed.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        u and v, float64 of shape ``shape``, on CPU, ||u|| = ||v|| = 1 and <u, v> = 0.
    """
    shape = tuple(checks.integer("shape[i]", s, 1) for s in shape)
    d = math.prod(shape)
    if d < 2:
        raise ValueError(f"shape={shape!r} is not accepted; a slice needs an input dimension d >= 2")
    g = torch.randn(2, d, generator=seeds.generator(seed, "fig2", "directions"), dtype=torch.float64)
    u = g[0] / g[0].norm()
    w = g[1] - (g[1] @ u) * u
    v = w / w.norm()
    return u.view(shape), v.view(shape)


def grid_coordinates(resolution: int, extent: float) -> np.ndarray:
    """The ``resolution`` evenly spaced coordinates of one grid axis, from -extent to extent.

    Returns
    -------
    numpy.ndarray, shape [resolution], float64
        Includes 0 (the centre image x_o) when ``resolution`` is odd.

    Raises
    ------
    ValueError
        resolution < 2, extent not a finite number > 0.
    """
    resolution = checks.integer("resolution", resolution, 2)
    extent = checks.real("extent", extent, 0)
    return np.linspace(-extent, extent, resolution)


def slice_points(x_o: torch.Tensor, u: torch.Tensor, v: torch.Tensor, a: torch.Tensor,
                 b: torch.Tensor) -> torch.Tensor:
    """The points x_o + a u + b v of the slice (not clipped to [0, 1]^d).

    Parameters
    ----------
    x_o : torch.Tensor, shape [C, H, W]
        Centre image.
    u, v : torch.Tensor, shape [C, H, W]
        Directions of the slice (any dtype; computed in float64, returned in ``x_o``'s dtype).
    a, b : torch.Tensor, shape [m]
        Coordinates of m points along u and v.

    Returns
    -------
    torch.Tensor, shape [m, C, H, W], dtype and device of ``x_o``
    """
    device = x_o.device
    a = a.to(device, torch.float64).view(-1, *([1] * x_o.dim()))
    b = b.to(device, torch.float64).view(-1, *([1] * x_o.dim()))
    points = x_o.double() + a * u.to(device, torch.float64) + b * v.to(device, torch.float64)
    return points.to(x_o.dtype)


def slice_labels(model: nn.Module, num_classes: int, x_o: torch.Tensor, *, n: int, sigma: float | None,
                 resolution: int, extent: float, seed: int, batch_size: int = 10_000) -> pd.DataFrame:
    """Labels elected on the slice around ``x_o`` by f (``n = 0``) or by two independent votes of g_{sigma,n}.

    Parameters
    ----------
    model : torch.nn.Module
        Base classifier f: [m, C, H, W] in [0, 1] space -> [m, num_classes] logits, on ``x_o``'s device,
        in eval mode.
    num_classes : int
        Number of classes K.
    x_o : torch.Tensor, shape [C, H, W]
        Centre of the slice (a test image).
    n : int
        0 for f, else the votes per point of the majority vote g_{sigma,n} (paper: 10, 50, 200).
    sigma : float or None
        Smoothing noise, [0, 1] pixel units (> 0); not used for f.
    resolution : int
        Grid points per axis (>= 2); resolution ** 2 points in all.
    extent : float
        Half-width of the slice in l2 units (> 0): a and b range over [-extent, extent].
    seed : int
        Master seed: directions from :func:`orthonormal_directions`, vote r of size n from
        ``seeds.generator(seed, "fig2", "vote", n, r)`` on ``x_o``'s device.
    batch_size : int
        Largest batch per forward pass (see :meth:`~rs_repro.smoothing.Smooth.counts`); the grid is processed
        ``max(1, batch_size // n)`` points at a time (``batch_size`` for f), which bounds the memory of the
        points themselves too.

    Returns
    -------
    pandas.DataFrame
        One row per grid point (and vote), columns ``i`` (grid row, along v), ``j`` (grid column, along u),
        ``a``, ``b`` (coordinates), ``classifier`` (``"f"`` or ``"vote"``), ``n`` (0 for f),
        ``replicate`` (0 for f; 0 or 1, the two independent votes) and ``label``; row-major grid order.

    Raises
    ------
    ValueError
        A bad ``x_o`` (not a finite floating-point [C, H, W] tensor), n < 0, resolution < 2, extent <= 0,
        batch_size < 1; sigma not > 0 for a vote.
    """
    x_o = checks.images("x_o", x_o, 3, "[C, H, W]")
    n = checks.integer("n", n, 0)
    batch_size = checks.integer("batch_size", batch_size, 1)
    coords = grid_coordinates(resolution, extent)
    u, v = orthonormal_directions(x_o.shape, seed)
    i, j = np.divmod(np.arange(resolution * resolution), resolution)
    a, b = torch.from_numpy(coords[j]), torch.from_numpy(coords[i])

    def labels_of(label: Callable[[torch.Tensor], torch.Tensor], chunk: int) -> np.ndarray:
        """``label(points)`` over the whole grid, ``chunk`` points at a time."""
        return torch.cat([label(slice_points(x_o, u, v, a[k:k + chunk], b[k:k + chunk])).cpu()
                          for k in range(0, len(a), chunk)]).numpy()

    def rows(classifier: str, replicate: int, label: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({"i": i, "j": j, "a": a.numpy(), "b": b.numpy(), "classifier": classifier, "n": n,
                             "replicate": replicate, "label": label})

    if n == 0:
        with torch.inference_mode():
            return rows("f", 0, labels_of(lambda p: model(p).argmax(1), batch_size))
    smooth = Smooth(model, num_classes, sigma)
    frames = []
    for r in range(REPLICATES):
        gen = seeds.generator(seed, "fig2", "vote", n, r, device=x_o.device)
        frames.append(rows("vote", r, labels_of(lambda p, gen=gen: smooth.vote(p, n, batch_size, generator=gen),
                                                max(1, batch_size // n))))
    return pd.concat(frames, ignore_index=True)


def slice_table(tables: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> pd.DataFrame:
    """The labels of every unit of :func:`units` in one table: f's, then the votes of each n of ``ns``."""
    return pd.concat([tables["labels-f"], *(tables[f"labels-n{n}"] for n in values["ns"])], ignore_index=True)


def label_map(table: pd.DataFrame, n: int = 0, replicate: int = 0) -> np.ndarray:
    """The labels of f (``n=0``) or of one vote of g_{sigma,n} from :func:`slice_labels`, as an image.

    Parameters
    ----------
    table : pandas.DataFrame
        Rows of :func:`slice_labels` (e.g. :func:`slice_table`).
    n : int
        0 for f, else the vote's n.
    replicate : int
        Which of the :data:`REPLICATES` independent votes (0 for f).

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
    """Measures of the speckle of each label map of :func:`slice_labels` (the paper's point about Fig. 2).

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
        Rows of :func:`slice_labels` for f and for each n (:func:`slice_table`).

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


def speckle_table(tables: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> pd.DataFrame:
    """:func:`speckle_summary` as the page shows it: one row per map (``f (no RS)``, then each n), 4 decimals."""
    summary = speckle_summary(slice_table(tables, values)).set_index("n")
    return summary.rename(index={0: "f (no RS)"}).rename_axis("n").round(4)


def page(tables: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers and phrases the page's prose reads (glue name to value), from the tables of :func:`units`.

    The setting (``dataset``, ``image``: position in the full test split, ``y_o``, ``f_o``, ``sigma``,
    ``extent``, ``resolution``, ``points``, ``forward_passes``), ``classes_f`` (classes f shows on the slice)
    and the speckle of :func:`speckle_summary`: ``unstable_all``, ``vs_f_all``, ``isolated_all`` (one phrase
    over ``ns``), ``isolated_f``, ``shrink`` (ratio of ``unstable`` between the first and the last n, against
    ``sqrt_ratio`` = sqrt(n_last / n_first) for a flat border), ``shrinks`` (whether ``unstable`` decreases
    strictly along ``ns``).
    """
    ns, resolution = list(values["ns"]), values["resolution"]
    table = slice_table(tables, values)
    summary = speckle_summary(table).set_index("n")
    centre = tables["centre"].iloc[0]
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


def plot_slices(tables: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> plt.Figure:
    """The paper's Fig. 2: the label maps of f and of the first vote of each n, one colour per label.

    With few classes (K <= 10) each class keeps its own colour whatever the slice shows; with many, the 19
    largest regions get their own colour and the others are grouped as 'other classes'.
    """
    ns, extent, resolution, dataset = values["ns"], values["extent"], values["resolution"], values["dataset"]
    table = slice_table(tables, values)
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
    fig.suptitle(f"{dataset}, test image {int(tables['centre']['index'].iloc[0])}, $\\sigma$ = {values['sigma']:g}")
    fig.tight_layout()
    return fig
