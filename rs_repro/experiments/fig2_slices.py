"""Compute functions of the ``fig2_slices`` chapter: Fig. 2 of the paper.

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
(one query per point), ties to the smallest class (:meth:`~rs_repro.smoothing.Smooth.vote`). The first vote is drawn in the
figure; the second one measures how random the map is (:func:`speckle_summary`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import seeds
from ..smoothing import Smooth

#: Independent votes of g_{sigma,n} per grid point and n (``replicate`` 0 and 1).
REPLICATES = 2


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}={value!r} is not accepted; expected an integer >= {minimum}")
    return int(value)


def _check_extent(extent: object) -> float:
    if isinstance(extent, bool) or not isinstance(extent, numbers.Real) or not math.isfinite(extent) \
            or extent <= 0:
        raise ValueError(f"extent={extent!r} is not accepted; expected a finite real number > 0 (l2 units)")
    return float(extent)


def _check_ns(ns: object) -> list[int]:
    if not isinstance(ns, Sequence) or isinstance(ns, str) or len(ns) == 0:
        raise ValueError(f"ns={ns!r} is not accepted; expected a non-empty list of integers >= 1")
    values = [_check_int("ns[i]", n, 1) for n in ns]
    if len(set(values)) != len(values):
        raise ValueError(f"ns={list(ns)!r} is not accepted; expected distinct integers >= 1")
    return values


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
    shape = tuple(_check_int("shape[i]", s, 1) for s in shape)
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
    """
    resolution = _check_int("resolution", resolution, 2)
    return np.linspace(-_check_extent(extent), _check_extent(extent), resolution)


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


def slice_labels(model: nn.Module, num_classes: int, x_o: torch.Tensor, *, sigma: float, ns: Sequence[int],
                 resolution: int, extent: float, seed: int, batch_size: int = 10_000) -> pd.DataFrame:
    """Labels elected by f and by g_{sigma,n} (two independent votes per n) on the slice around ``x_o``.

    Parameters
    ----------
    model : torch.nn.Module
        Base classifier f: [m, C, H, W] in [0, 1] space -> [m, num_classes] logits, on ``x_o``'s device,
        in eval mode.
    num_classes : int
        Number of classes K.
    x_o : torch.Tensor, shape [C, H, W]
        Centre of the slice (a test image).
    sigma : float
        Smoothing noise, [0, 1] pixel units (> 0).
    ns : sequence of int
        Votes per point of the majority vote g_{sigma,n} (paper: 10, 50, 200); distinct, >= 1.
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
        One row per grid point and label, columns ``i`` (grid row, along v), ``j`` (grid column, along u),
        ``a``, ``b`` (coordinates), ``classifier`` (``"f"`` or ``"vote"``), ``n`` (0 for f),
        ``replicate`` (0 for f; 0 or 1, the two independent votes) and ``label``; row-major grid order.

    Raises
    ------
    ValueError
        resolution < 2, extent <= 0, an n < 1 or repeated, sigma <= 0, a bad ``x_o``.
    """
    ns = _check_ns(ns)
    coords = grid_coordinates(resolution, extent)
    batch_size = _check_int("batch_size", batch_size, 1)
    if not isinstance(x_o, torch.Tensor) or x_o.dim() != 3 or not x_o.is_floating_point():
        raise ValueError(f"x_o must be a floating-point tensor of shape [C, H, W], got "
                         f"{tuple(x_o.shape) if isinstance(x_o, torch.Tensor) else type(x_o).__name__}")
    smooth = Smooth(model, num_classes, sigma)
    u, v = orthonormal_directions(x_o.shape, seed)
    i, j = np.divmod(np.arange(resolution * resolution), resolution)
    a, b = torch.from_numpy(coords[j]), torch.from_numpy(coords[i])

    def labels_of(label: Callable[[torch.Tensor], torch.Tensor], chunk: int) -> np.ndarray:
        """``label(points)`` over the whole grid, ``chunk`` points at a time."""
        return torch.cat([label(slice_points(x_o, u, v, a[k:k + chunk], b[k:k + chunk])).cpu()
                          for k in range(0, len(a), chunk)]).numpy()

    def rows(classifier: str, n: int, replicate: int, label: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({"i": i, "j": j, "a": a.numpy(), "b": b.numpy(), "classifier": classifier, "n": n,
                             "replicate": replicate, "label": label})

    with torch.inference_mode():
        frames = [rows("f", 0, 0, labels_of(lambda p: model(p).argmax(1), batch_size))]
    for n in ns:
        for r in range(REPLICATES):
            gen = seeds.generator(seed, "fig2", "vote", n, r, device=x_o.device)
            frames.append(rows("vote", n, r, labels_of(
                lambda p, n=n, gen=gen: smooth.vote(p, n, batch_size, generator=gen), max(1, batch_size // n))))
    return pd.concat(frames, ignore_index=True)


def label_map(table: pd.DataFrame, n: int = 0, replicate: int = 0) -> np.ndarray:
    """The labels of f (``n=0``) or of one vote of g_{sigma,n} from :func:`slice_labels`, as an image.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`slice_labels`.
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
