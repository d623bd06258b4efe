"""Fig. 2 chapter: the slice's geometry, and the speckle of g_{sigma,n} against the binomial law."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from linear import Linear
from scipy import stats

from rs_repro.experiments import fig2_slices as ex

SHAPE = (1, 8, 8)
THETA = 0.7  # angle of the halfspace's normal in the (u, v) plane
OFFSET = 0.3137  # signed distance from x_o to the boundary, chosen so that no grid point lies on it


def _halfspace(x_o: torch.Tensor, seed: int) -> Linear:
    """Class 1 where a cos(THETA) + b sin(THETA) > OFFSET on the slice of ``seed`` (normal in its plane)."""
    u, v = ex.orthonormal_directions(SHAPE, seed)
    w = math.cos(THETA) * u + math.sin(THETA) * v
    return Linear(w=w, b=float(-(w.flatten() @ x_o.double().flatten()) - OFFSET))


def _signed_distance(table) -> np.ndarray:
    return table.a.to_numpy() * math.cos(THETA) + table.b.to_numpy() * math.sin(THETA) - OFFSET


def test_directions_are_orthonormal_and_seeded():
    u, v = ex.orthonormal_directions((3, 5, 7), seed=4)
    assert u.shape == v.shape == (3, 5, 7)
    assert abs(float(u.norm()) - 1) < 1e-12 and abs(float(v.norm()) - 1) < 1e-12
    assert abs(float((u * v).sum())) < 1e-12
    again = ex.orthonormal_directions((3, 5, 7), seed=4)
    assert torch.equal(u, again[0]) and torch.equal(v, again[1])
    assert not torch.equal(u, ex.orthonormal_directions((3, 5, 7), seed=5)[0])


def test_grid_is_centred_on_the_image():
    assert ex.grid_coordinates(5, 2.0).tolist() == [-2.0, -1.0, 0.0, 1.0, 2.0]
    x_o = torch.rand(SHAPE)
    u, v = ex.orthonormal_directions(SHAPE, 0)
    points = ex.slice_points(x_o, u, v, torch.tensor([0.0, 3.0]), torch.tensor([0.0, -4.0]))
    assert torch.equal(points[0], x_o)
    assert abs(float((points[1] - x_o).norm()) - 5.0) < 1e-5  # (a, b) are l2 distances in [0, 1]^d


def test_no_rs_slice_matches_the_halfspace_geometry():
    x_o = torch.full(SHAPE, 0.5)
    table = ex.slice_labels(_halfspace(x_o, 3), 2, x_o, sigma=0.2, ns=[1], resolution=31, extent=2.0, seed=3)
    f = table[table.classifier == "f"]
    s = _signed_distance(f)
    assert np.abs(s).min() > 1e-3  # no point on the boundary: the expected labels are exact
    assert (f.label.to_numpy() == (s > 0)).all()
    assert 0.2 < f.label.mean() < 0.6  # both classes present
    labels = ex.label_map(table)  # rows along v (b), columns along u (a)
    assert labels[0, -1] == (2.0 * math.cos(THETA) - 2.0 * math.sin(THETA) > OFFSET)
    assert labels[-1, -1] == 1 and labels[0, 0] == 0


def test_speckle_follows_the_binomial_law_on_a_halfspace():
    # g_sigma = f for a linear f (paper, section 3.1); at signed distance s, one vote of n elects class 1
    # with q = P[B(n, Phi(s / sigma)) > n / 2] (ties go to class 0), two votes disagree with 2 q (1 - q)
    x_o = torch.full(SHAPE, 0.5)
    sigma, ns = 0.3, [10, 50, 200]
    table = ex.slice_labels(_halfspace(x_o, 1), 2, x_o, sigma=sigma, ns=ns, resolution=41, extent=1.0, seed=1)
    summary = ex.speckle_summary(table).set_index("n")
    s = _signed_distance(table[table.classifier == "f"])
    assert summary.loc[0].tolist() == [0.0, 0.0, 0.0]
    for n in ns:
        q = stats.binom.sf(n // 2, n, stats.norm.cdf(s / sigma))
        for measure, p in (("unstable", 2 * q * (1 - q)), ("vs_f", np.where(s > 0, 1 - q, q))):
            sd = math.sqrt((p * (1 - p)).sum()) / len(p)
            assert abs(summary.loc[n, measure] - p.mean()) < 4 * sd + 1e-3, (n, measure)
    assert summary.unstable.loc[10] > summary.unstable.loc[50] > summary.unstable.loc[200]


def test_same_seed_same_output():
    x_o = torch.full(SHAPE, 0.5)
    model = _halfspace(x_o, 2)
    run = lambda seed: ex.slice_labels(model, 2, x_o, sigma=0.5, ns=[5], resolution=9, extent=1.0, seed=seed)
    first = run(2)
    assert first.equals(run(2))
    assert not first.label.equals(run(7).label)
    assert len(first) == 9 * 9 * (1 + ex.REPLICATES)


def test_isolated_fraction_on_known_maps():
    checkerboard = np.indices((6, 6)).sum(0) % 2
    assert ex.isolated_fraction(checkerboard) == 1.0
    halves = np.repeat([[0, 0, 0, 1, 1, 1]], 6, axis=0)
    assert ex.isolated_fraction(halves) == 0.0
    island = np.zeros((5, 5), dtype=int)
    island[2, 2] = 3
    assert ex.isolated_fraction(island) == 1 / 25


@pytest.mark.parametrize(("change", "message"), [
    ({"resolution": 1}, "resolution=1"),
    ({"resolution": 2.5}, "resolution=2.5"),
    ({"extent": 0.0}, "extent=0.0"),
    ({"extent": float("nan")}, "extent=nan"),
    ({"ns": [0, 10]}, "ns\\[i\\]=0"),
    ({"ns": []}, "ns=\\[\\]"),
    ({"ns": [10, 10]}, "distinct"),
    ({"sigma": -0.1}, "sigma must be"),
    ({"batch_size": 0}, "batch_size=0"),
])
def test_bad_parameters_raise(change, message):
    x_o = torch.full(SHAPE, 0.5)
    args = {"sigma": 0.25, "ns": [10], "resolution": 5, "extent": 1.0, "seed": 0, **change}
    with pytest.raises(ValueError, match=message):
        ex.slice_labels(_halfspace(x_o, 0), 2, x_o, **args)
    with pytest.raises(ValueError, match="x_o must be"):
        ex.slice_labels(_halfspace(x_o, 0), 2, x_o[None], sigma=0.25, ns=[10], resolution=5, extent=1.0, seed=0)
