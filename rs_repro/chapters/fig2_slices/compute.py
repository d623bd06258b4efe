"""The compute half of the ``fig2_slices`` chapter: Fig. 2 of the paper, a slice of input space under
smoothing.

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
drawn in the figure; the second one measures how random the map is (the page's speckle measures).

The chapter's shape: :func:`check_parameters` (run before anything), :func:`plan` (the standard model, a
unit of :func:`rs_repro.chapters.common.model_units`; then the centre image, :func:`centre_unit`, the
labels of f and the votes of each n, :func:`labels_unit`: independent units of
:mod:`rs_repro.pipeline.engine`). The page half (``rs_repro.chapters.fig2_slices.page``) measures the
speckle and draws the figure; the chapter records no measurements for the claims chapter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from rs_repro import checks, data, seeds
from rs_repro.chapters import common
from rs_repro.checks import device_rule, rule_checker
from rs_repro.models import load_model
from rs_repro.pipeline.engine import Stage, Unit, fixed
from rs_repro.smoothing import Smooth

_MODULE = __name__
#: Independent votes of g_{sigma,n} per grid point and n (``replicate`` 0 and 1).
REPLICATES = 2


def check_parameters(values: Mapping[str, Any]) -> None:
    """The chapter's rules on its parameters (ValueError naming the first one broken), run before anything."""
    need = rule_checker(values)
    size = common.data_and_models(values)
    subset = common.pool_rule(values, "num_images", size)
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


def plan(values: Mapping[str, Any]) -> list[Stage]:
    """The chapter's work: the standard model (``model-standard``), then the centre image (``centre``), the
    labels of f (``labels-f``) and the two votes of g_{sigma,n} for each n (``labels-n<n>``), each unit with
    the arguments its numbers depend on.

    ``values`` are the notebook's parameters (:func:`rs_repro.pipeline.parameters.chapter_values`). Pure: nothing
    is read, trained or drawn here.
    """
    data_dir = values["data_dir"] or None
    specs = common.model_specs(values, ("standard",))
    centre = {"dataset": values["dataset"], "data_dir": data_dir, "num_images": values["num_images"],
              "image": values["image"], "model": specs["standard"], "device": values["device"],
              "seed": values["seed"]}
    grid = {**centre, "resolution": values["resolution"], "extent": values["extent"],
            "batch_size": values["batch_size"]}
    slices = [Unit("centre", f"{_MODULE}:centre_unit", centre),
              Unit("labels-f", f"{_MODULE}:labels_unit", {**grid, "n": 0}),
              *(Unit(f"labels-n{n}", f"{_MODULE}:labels_unit", {**grid, "n": n, "sigma": values["sigma"]})
                for n in values["ns"])]
    return [Stage("models", fixed(common.model_units(values["dataset"], data_dir, specs))),
            Stage("slice labels", fixed(slices))]


def _centre(dataset: str, data_dir: str | None, num_images: int, image: int, model: Mapping[str, Any],
            device: str, seed: int) -> tuple[nn.Module, torch.Tensor, int, int]:
    """The base model on ``device``, the centre image x_o [C, H, W] on ``device``, its position in the full
    test split and its true class."""
    test = common.test_pool(dataset, data_dir, num_images, seed)
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
