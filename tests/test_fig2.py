"""Fig. 2 chapter: the slice's geometry, the speckle of g_{sigma,n} against the binomial law, the units, the
parameter rules and the page."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from linear import Linear
from scipy import stats

from rs_repro import data, models
from rs_repro.chapters.fig2_slices import compute, page
from rs_repro.pipeline import book, engine

STEM = "fig2_slices"
SHAPE = (1, 8, 8)
THETA = 0.7  # angle of the halfspace's normal in the (u, v) plane
OFFSET = 0.3137  # signed distance from x_o to the boundary, chosen so that no grid point lies on it


def _halfspace(x_o: torch.Tensor, seed: int) -> Linear:
    """Class 1 where a cos(THETA) + b sin(THETA) > OFFSET on the slice of ``seed`` (normal in its plane)."""
    u, v = compute.orthonormal_directions(SHAPE, seed)
    w = math.cos(THETA) * u + math.sin(THETA) * v
    return Linear(w=w, b=float(-(w.flatten() @ x_o.double().flatten()) - OFFSET))


def _signed_distance(table) -> np.ndarray:
    return table.a.to_numpy() * math.cos(THETA) + table.b.to_numpy() * math.sin(THETA) - OFFSET


def _labels(model, x_o, ns, **kwargs) -> pd.DataFrame:
    """The table of f and of every n of ``ns`` on one slice, as the chapter's units join them."""
    return pd.concat([compute.slice_labels(model, 2, x_o, n=n, **kwargs) for n in [0, *ns]], ignore_index=True)


@pytest.fixture
def values() -> dict:
    """The smoke profile's parameters of the chapter, on a 7 x 7 grid."""
    return {**book.profile_values(STEM, "smoke"), "resolution": 7}


def test_directions_are_orthonormal_and_seeded():
    u, v = compute.orthonormal_directions((3, 5, 7), seed=4)
    assert u.shape == v.shape == (3, 5, 7)
    assert abs(float(u.norm()) - 1) < 1e-12 and abs(float(v.norm()) - 1) < 1e-12
    assert abs(float((u * v).sum())) < 1e-12
    again = compute.orthonormal_directions((3, 5, 7), seed=4)
    assert torch.equal(u, again[0]) and torch.equal(v, again[1])
    assert not torch.equal(u, compute.orthonormal_directions((3, 5, 7), seed=5)[0])


def test_grid_is_centred_on_the_image():
    assert compute.grid_coordinates(5, 2.0).tolist() == [-2.0, -1.0, 0.0, 1.0, 2.0]
    x_o = torch.rand(SHAPE)
    u, v = compute.orthonormal_directions(SHAPE, 0)
    points = compute.slice_points(x_o, u, v, torch.tensor([0.0, 3.0]), torch.tensor([0.0, -4.0]))
    assert torch.equal(points[0], x_o)
    assert abs(float((points[1] - x_o).norm()) - 5.0) < 1e-5  # (a, b) are l2 distances in [0, 1]^d


def test_no_rs_slice_matches_the_halfspace_geometry():
    x_o = torch.full(SHAPE, 0.5)
    table = compute.slice_labels(_halfspace(x_o, 3), 2, x_o, n=0, sigma=None, resolution=31, extent=2.0, seed=3)
    assert set(table.classifier) == {"f"} and len(table) == 31 * 31
    s = _signed_distance(table)
    assert np.abs(s).min() > 1e-3  # no point on the boundary: the expected labels are exact
    assert (table.label.to_numpy() == (s > 0)).all()
    assert 0.2 < table.label.mean() < 0.6  # both classes present
    labels = page.label_map(table)  # rows along v (b), columns along u (a)
    assert labels[0, -1] == (2.0 * math.cos(THETA) - 2.0 * math.sin(THETA) > OFFSET)
    assert labels[-1, -1] == 1 and labels[0, 0] == 0


def test_speckle_follows_the_binomial_law_on_a_halfspace():
    # g_sigma = f for a linear f (paper, section 3.1); at signed distance s, one vote of n elects class 1
    # with q = P[B(n, Phi(s / sigma)) > n / 2] (ties go to class 0), two votes disagree with 2 q (1 - q)
    x_o = torch.full(SHAPE, 0.5)
    sigma, ns = 0.3, [10, 50, 200]
    table = _labels(_halfspace(x_o, 1), x_o, ns, sigma=sigma, resolution=41, extent=1.0, seed=1)
    summary = page.speckle_summary(table).set_index("n")
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
    run = lambda seed: compute.slice_labels(model, 2, x_o, n=5, sigma=0.5, resolution=9, extent=1.0, seed=seed)
    first = run(2)
    assert first.equals(run(2))
    assert not first.label.equals(run(7).label)
    assert len(first) == 9 * 9 * compute.REPLICATES and first.replicate.tolist() == [0] * 81 + [1] * 81


def test_isolated_fraction_on_known_maps():
    checkerboard = np.indices((6, 6)).sum(0) % 2
    assert page.isolated_fraction(checkerboard) == 1.0
    halves = np.repeat([[0, 0, 0, 1, 1, 1]], 6, axis=0)
    assert page.isolated_fraction(halves) == 0.0
    island = np.zeros((5, 5), dtype=int)
    island[2, 2] = 3
    assert page.isolated_fraction(island) == 1 / 25


@pytest.mark.parametrize(("change", "message"), [
    ({"resolution": 1}, "resolution must be an integer >= 2, got 1"),
    ({"resolution": 2.5}, "resolution must be an integer >= 2, got 2.5"),
    ({"extent": 0.0}, "extent must be a finite real number > 0, got 0.0"),
    ({"extent": float("nan")}, "extent must be .*, got nan"),
    ({"n": -1}, "n must be an integer >= 0, got -1"),
    ({"sigma": -0.1}, "sigma must be"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
])
def test_bad_arguments_raise(change, message):
    x_o = torch.full(SHAPE, 0.5)
    args = {"sigma": 0.25, "n": 10, "resolution": 5, "extent": 1.0, "seed": 0, **change}
    with pytest.raises(ValueError, match=message):
        compute.slice_labels(_halfspace(x_o, 0), 2, x_o, **args)
    with pytest.raises(ValueError, match="x_o must be a 3-D tensor"):
        compute.slice_labels(_halfspace(x_o, 0), 2, x_o[None], sigma=0.25, n=10, resolution=5, extent=1.0, seed=0)


@pytest.mark.parametrize(("change", "name"), [
    ({"dataset": "svhn"}, "dataset"),
    ({"dataset": "imagenet", "standard_weights": ""}, "standard_weights"),
    ({"num_images": -1}, "num_images"),
    ({"image": -1}, "image"),
    ({"num_images": 3, "image": 3}, "image"),
    ({"sigma": 0.0}, "sigma"),
    ({"sigma": float("inf")}, "sigma"),
    ({"ns": []}, "ns"),
    ({"ns": [0, 10]}, "ns"),
    ({"ns": [10, 10]}, "ns"),
    ({"resolution": 1}, "resolution"),
    ({"extent": 0.0}, "extent"),
    ({"extent": float("nan")}, "extent"),
    ({"batch_size": 0}, "batch_size"),
    ({"device": "tpu"}, "device"),
])
def test_check_parameters_rejects_each_bad_combination(values, change, name):
    compute.check_parameters(values)
    with pytest.raises(ValueError, match=f"^{name}=.* is not accepted; expected"):
        compute.check_parameters({**values, **change})
    with pytest.raises(book.ChapterError, match=f"chapter 'fig2_slices': {name}="):
        book.check_chapter(STEM, {**values, **change})


def _units(values: dict) -> list:
    """Every unit of the chapter's plan, stage after stage (no stage reads an earlier table)."""
    return [unit for stage in compute.plan(values) for unit in stage.units({})]


def test_plan_is_pure(values, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the plan read data or loaded a model")

    for module, name in ((compute, "load_model"), (models, "load_model"), (data, "load_dataset")):
        monkeypatch.setattr(module, name, refuse)
    assert [stage.name for stage in compute.plan(values)] == ["models", "slice labels"]
    assert len(_units(values)) == 2 + 1 + len(values["ns"])


def test_units_have_stable_distinct_ids_and_the_arguments_of_their_numbers(values):
    work = _units(values)
    assert [u.id for u in work] == ["model-standard", "centre", "labels-f"] + [f"labels-n{n}" for n in values["ns"]]
    assert [u.key() for u in work] == [u.key() for u in _units(values)]
    by_id = {u.id: u.arguments for u in work}
    for uid in ("labels-f", "labels-n10"):
        assert by_id[uid]["batch_size"] == values["batch_size"] and by_id[uid]["device"] == values["device"]
    assert "sigma" not in by_id["labels-f"] and "sigma" not in by_id["centre"]
    assert by_id["labels-n10"]["sigma"] == values["sigma"] and by_id["labels-n10"]["n"] == 10
    assert by_id["centre"]["model"] == {"recipe": "standard", "sigma": 0.0, "epsilon": 0.0, "seed": 0, "weights": ""}
    assert by_id["model-standard"]["model"] == by_id["centre"]["model"]
    # what changes no number changes no key; sigma changes the votes only
    same = _units({**values, "figures_dir": "elsewhere", "use_cache": False})
    assert [u.key() for u in same] == [u.key() for u in work]
    other = {u.id: u.key() for u in _units({**values, "sigma": 0.5})}
    keys = {u.id: u.key() for u in work}
    assert other["labels-f"] == keys["labels-f"] and other["centre"] == keys["centre"]
    assert other["labels-n10"] != keys["labels-n10"]


def test_a_unit_gives_the_same_table_twice_and_the_image_is_checked(values):
    unit = {u.id: u for u in _units(values)}["labels-n10"]  # on a 7 x 7 grid
    first, _ = engine.compute_unit(unit)
    again, _ = engine.compute_unit(unit)
    assert first.equals(again) and len(first) == 7 * 7 * compute.REPLICATES
    assert set(first.n) == {10} and set(first.classifier) == {"vote"}
    with pytest.raises(ValueError, match=r"image=100000 is not accepted; expected a position in the test split"):
        compute.centre_unit(**{**_units(values)[1].arguments, "image": 100_000})


def test_page_and_figure(values, tmp_path):
    tables = engine.compute(STEM, compute.plan(values), root=tmp_path)
    res = page.results(tables, values)
    assert page.record(res, values) is None  # Fig. 2 feeds no claim
    centre = tables["centre"].iloc[0]
    assert centre["index"] == values["image"] and 0 <= centre["f"] < 10  # the whole split: position = index
    glued = page.page(res, values)
    summary = page.speckle_summary(page.slice_table(tables, values)).set_index("n")
    assert glued["points"] == 49 and glued["forward_passes"] == f"{49 * (1 + 2 * sum(values['ns'])):,}"
    assert glued["image"] == values["image"] and glued["y_o"] == centre["label"] and glued["f_o"] == centre["f"]
    assert glued["shrink"] == summary.unstable[10] / summary.unstable[200]
    assert glued["sqrt_ratio"] == math.sqrt(20)
    decreasing = summary.unstable[10] > summary.unstable[50] > summary.unstable[200]
    assert glued["shrinks"] == ("decreases" if decreasing else "does not decrease")
    assert glued["unstable_all"].startswith(f"{summary.unstable[10]:.3f} (n = 10), ")
    assert 1 <= glued["classes_f"] <= 10
    shown = page.speckle_table(res)
    assert shown.index.tolist() == ["f (no RS)", 10, 50, 200] and shown.columns.tolist() == ["unstable", "vs_f", "isolated"]
    fig = page.plot_slices(res, values)
    assert len(fig.axes) == 4 and fig.axes[0].get_title() == "(a) no RS: $f$"
    plt.close(fig)
