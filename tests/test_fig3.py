"""Fig. 3 chapter: the boundary of g_sigma on a segment, the spread of bisections against g_{sigma,n}, the
plan and its units, the parameter rules, the summary record and the page; the paper profile end to end on a synthetic
ImageNet (the ``synthetic_imagenet`` fixture of conftest.py)."""

from __future__ import annotations

import math
import re

import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import computed_plan_units, here
from torch import nn

from rs_repro import data, models
from rs_repro.chapters import common
from rs_repro.chapters.fig3_binary_search import compute, page
from rs_repro.models import load_model, model_spec
from rs_repro.pipeline import book, engine, paths
from rs_repro.pipeline.engine import Unit
from rs_repro.report import measurements
from rs_repro.smoothing import Smooth

STEM = "fig3_binary_search"


class Halfspace(nn.Module):
    """Class 1 where the first pixel exceeds 0.5, class 0 otherwise: the boundary crosses [a, b] at t = 1/2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1)[:, 0] - 0.5
        return torch.stack((-s, s), dim=1)


def _segment():
    a = torch.zeros(1, 1, 8, 8)
    b = a.clone()
    b[0, 0, 0, 0] = 1.0
    return a, b


@pytest.fixture
def values() -> dict:
    """The smoke profile's parameters, with tiny searches and profiles on 2 segments."""
    return {**book.profile_values(STEM, "smoke"), "repeats": 20, "steps": 6, "num_segments": 2, "profile_points": 5,
            "profile_samples": 50}


def _segment_units(values: dict) -> list[Unit]:
    """The units of the plan's last step (one per segment), its earlier steps computed in this process."""
    return [u for u in computed_plan_units(STEM, values) if u.id.startswith("segment-")]


def _table(segment: int, length: float, searches: dict[int, list[float]]) -> pd.DataFrame:
    """A table shaped as segment_unit's: a profile crossing at t = 1/2, the given search outputs."""
    profile = pd.DataFrame({"t": [0.0, 0.5, 1.0], "p_label": [0.9, 0.5, 0.1], "p_other": [0.1, 0.5, 0.9],
                            "se": 0.0, "part": "profile"})
    search = pd.DataFrame([{"repeat": r, "t": t, "queries": 20, "n": n, "part": "search"}
                           for n, ts in searches.items() for r, t in enumerate(ts)])
    return pd.concat([profile, search], ignore_index=True).assign(segment=segment, a=segment, b=9, length=length,
                                                                   t_f=0.25)


#: Two segments of lengths 1 and 2 with known outputs: spreads (std) 0.2 sqrt 2 and 0.4 sqrt 2 at n = 10,
#: 0.02 sqrt 2 and 0.04 sqrt 2 at n = 100; offsets from t_g = 1/2 of 0 and 0.2, then -0.03 and 0.04.
KNOWN = {"segment-0": _table(0, 1.0, {10: [0.3, 0.7], 100: [0.45, 0.49]}),
         "segment-1": _table(1, 2.0, {10: [0.4, 0.8], 100: [0.5, 0.54]})}
KNOWN_VALUES = {"dataset": "digits", "seed": 0, "sigma": 0.35, "ns": [10, 100], "repeats": 2, "steps": 20, "bins": 4,
                "zoom": False}


def test_boundary_of_g_interpolates_the_crossing():
    profile = pd.DataFrame({"t": [0.0, 0.5, 1.0], "p_label": [0.9, 0.6, 0.2], "p_other": [0.1, 0.4, 0.8]})
    assert math.isclose(page.boundary_of_g(profile), 0.5 + 0.5 * 0.2 / (0.2 + 0.6))
    assert math.isnan(page.boundary_of_g(profile.assign(p_other=0.0)))


def test_profile_and_bisections_on_a_halfspace():
    a, b = _segment()
    smooth = Smooth(Halfspace(), 2, 0.05, seed=0)
    profile = compute.class_profile(smooth, a, b, 0, [i / 20 for i in range(21)], 4000, seed=1, batch_size=10_000)
    assert abs(page.boundary_of_g(profile) - 0.5) < 0.02  # a flat boundary: g_sigma = f (paper, section 3.1)
    assert abs(compute.base_boundary(Halfspace(), a, b, 0, 30) - 0.5) < 1e-6
    spread = {n: compute.bisection_outputs(smooth, a, b, 0, n, 300, 15, seed=2, batch_size=10_000).t.std() for n in (1, 100)}
    assert spread[100] < spread[1]
    outputs = compute.bisection_outputs(smooth, a, b, 0, 100, 300, 15, seed=2, batch_size=10_000)
    assert abs(outputs.t.mean() - 0.5) < 0.02 and (outputs.queries == 15).all()
    # same seed, same output
    assert outputs.equals(compute.bisection_outputs(smooth, a, b, 0, 100, 300, 15, seed=2, batch_size=10_000))


#: A valid ImageNet setting of the parameters that name the data and the model.
IMAGENET = {"dataset": "imagenet", "data_dir": "/data/val", "standard_weights": "/data/rn50.pth", "num_candidates": 200}


@pytest.mark.parametrize(("change", "name"), [
    ({"dataset": "svhn"}, "dataset"),
    ({"dataset": "imagenet", "num_candidates": 200}, "standard_weights"),
    ({**IMAGENET, "standard_weights": "pretrained:resnet-9000"}, "standard_weights"),
    ({"standard_weights": "/data/rn50.pth"}, "standard_weights"),
    ({"standard_weights": "pretrained:efficientnet-lite0"}, "standard_weights"),
    ({**IMAGENET, "num_candidates": 0}, "num_candidates"),
    ({"num_candidates": 1}, "num_candidates"),
    ({"num_candidates": -1}, "num_candidates"),
    ({"sigma": 0.0}, "sigma"),
    ({"sigma": float("nan")}, "sigma"),
    ({"ns": []}, "ns"),
    ({"ns": [0, 10]}, "ns"),
    ({"ns": [10, 10]}, "ns"),
    ({"repeats": 1}, "repeats"),
    ({"steps": 0}, "steps"),
    ({"num_segments": 0}, "num_segments"),
    ({"profile_points": 1}, "profile_points"),
    ({"profile_samples": 0}, "profile_samples"),
    ({"bins": 0}, "bins"),
    ({"batch_size": 0}, "batch_size"),
    ({"device": "gpu"}, "device"),
])
def test_check_parameters_rejects_each_bad_combination(values, standins, change, name):
    compute.check_parameters(values)
    change = here(change, standins)
    with pytest.raises(ValueError, match=f"^{name}=.* is not accepted; expected"):
        compute.check_parameters({**values, **change})
    with pytest.raises(book.ChapterError, match=f"chapter 'fig3_binary_search': {name}="):
        book.check_chapter(STEM, {**values, **change})


def test_imagenet_settings_pass_the_checks(values, standins):
    for weights in (standins["/data/rn50.pth"], "pretrained:efficientnet-lite0"):
        compute.check_parameters({**values, **here(IMAGENET, standins), "standard_weights": weights, "device": "cuda:1"})
    compute.check_parameters({**values, "dataset": "imagenet-samples", "standard_weights": "pretrained:efficientnet-lite0"})


def test_segments_pair_each_correct_image_with_its_nearest_other_class():
    model = nn.Sequential(nn.Flatten(), nn.Linear(1, 2))  # class 1 where the one pixel exceeds 0.5
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[-1.0], [1.0]]))
        model[1].bias.copy_(torch.tensor([0.5, -0.5]))
    x = torch.tensor([0.1, 0.2, 0.9]).view(3, 1, 1, 1)
    for batch_size in (1, 10):
        assert compute.segments(model, x, torch.tensor([0, 0, 1]), 5, batch_size) == [(0, 2), (1, 2), (2, 1)]
        assert compute.segments(model, x, torch.tensor([0, 0, 1]), 2, batch_size) == [(0, 2), (1, 2)]
    # image 2 is misclassified, and 0 and 1 have no image of another class: no segment
    assert compute.segments(model, x, torch.tensor([0, 0, 0]), 5, 10) == []


def test_units_are_the_segments_with_stable_keys(values):
    work = _segment_units(values)
    model, _ = load_model("digits", model_spec("standard", seed=0))
    test = data.load_dataset("digits", "test")
    pairs = compute.segments(model, test.x, test.y, values["num_segments"], values["batch_size"])
    assert compute.segments(model, test.x, test.y, values["num_segments"], 7) == pairs  # batches change no prediction
    assert [u.id for u in work] == [f"segment-{k}" for k in range(len(pairs))] and len(pairs) == 2
    assert [(u.arguments["a"], u.arguments["b"]) for u in work] == pairs
    for a, b in pairs:
        assert model(test.x[a:a + 1]).argmax(1) == test.y[a] and test.y[b] != test.y[a]
    assert [u.key() for u in _segment_units(values)] == [u.key() for u in work]
    # what changes no number changes no key, and a third segment leaves the first two as they are
    same = _segment_units({**values, "figures_dir": "elsewhere", "use_cache": False, "bins": 7, "num_segments": 3})
    assert [u.key() for u in same[:2]] == [u.key() for u in work] and len(same) == 3
    assert _segment_units({**values, "zoom": True})[0].key() == work[0].key()
    assert all(u.arguments["batch_size"] == values["batch_size"] and u.arguments["device"] == "cpu" for u in work)
    assert work[0].arguments["model"] == model_spec("standard", seed=0, weights="")
    for change in ({"sigma": 0.5}, {"batch_size": 999}, {"num_candidates": 300}):
        assert _segment_units({**values, **change})[0].key() != work[0].key()


def test_the_plan_trains_the_model_then_chooses_the_segments_then_searches(values, monkeypatch):
    with monkeypatch.context() as planning:  # planning reads no data and trains no model
        for module, name in ((data, "load_dataset"), (models, "load_model"), (compute, "load_model")):
            planning.setattr(module, name, lambda *args, **kwargs: pytest.fail("planning loaded data or a model"))
        stages = compute.plan(values)
        first, second = (stage.units({}) for stage in stages[:2])
    assert [stage.name for stage in stages] == ["models", "segment selection", "segments"]
    assert [u.id for u in first] == ["model-standard"] and first[0].arguments["model"] == second[0].arguments["model"]
    assert [u.id for u in second] == ["segments"] and second[0].arguments["count"] == values["num_segments"]
    chosen = engine.compute_unit(second[0])[0]
    assert chosen.segment.tolist() == [0, 1]
    assert [(u.arguments["a"], u.arguments["b"]) for u in stages[2].units({"segments": chosen})] == list(
        zip(chosen.a, chosen.b, strict=True))
    with pytest.raises(ValueError, match="no segment to search on"):
        stages[2].units({"segments": chosen.iloc[:0]})


def test_segments_are_chosen_among_the_candidates(values):
    full = data.load_dataset("digits", "test")
    assert common.test_pool("digits", None, 0, 0).index.equal(full.index)
    subset = common.test_pool("digits", None, 100, 0)
    assert subset.index.equal(data.load_dataset("digits", "test", n=100, seed=0).index)
    work = _segment_units({**values, "num_candidates": 100})
    ends = [(u.arguments["a"], u.arguments["b"]) for u in work]  # positions in the test split
    assert all(a in subset.index and b in subset.index and full.y[a] != full.y[b] for a, b in ends)
    table = compute.segment_unit(**{**work[0].arguments, "repeats": 2, "ns": [10]})
    a, b = ends[0]
    assert table.length.iloc[0] == pytest.approx(float((full.x[b] - full.x[a]).norm()))


def test_a_unit_gives_the_same_table_twice_from_its_own_seed(values):
    unit = _segment_units(values)[0]
    first, _ = engine.compute_unit(unit)
    again, _ = engine.compute_unit(unit)
    assert first.equals(again)
    profile, searches, length, t_f = page.segment_parts(first)
    assert profile.t.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0] and len(searches) == 20 * len(values["ns"])
    assert set(searches.n) == set(values["ns"]) and (searches.queries == values["steps"]).all()
    assert 0 <= t_f <= 1 and length > 0
    assert set(first.columns) == set(KNOWN["segment-0"].columns)
    # the same segment under another unit number draws other noise (seeds.derive_seed(seed, "segment", k))
    other = compute.segment_unit(**{**unit.arguments, "segment": 1})
    assert not page.segment_parts(other)[1].t.reset_index(drop=True).equals(searches.t.reset_index(drop=True))


def test_summary_record_and_page_have_the_known_answers():
    root2 = math.sqrt(2)
    record = page.record(KNOWN, KNOWN_VALUES)
    assert isinstance(record, measurements.BisectionSpread) and measurements.SCHEMA[STEM] is type(record)
    assert record.dataset == "digits" and record.sigma == 0.35 and sorted(record.spread) == [10, 100]
    assert record.spread[10] == pytest.approx(0.3 * root2) and record.spread[100] == pytest.approx(0.03 * root2)
    assert record.per_segment[10] == pytest.approx([0.2 * root2, 0.4 * root2]) and record.seed == 0  # mean 0.3 root2
    by_n = page.spread_by_n(KNOWN, KNOWN_VALUES)
    assert by_n["mean offset from boundary of g"].tolist() == pytest.approx([0.1, 0.005])
    rows = page.search_summary(KNOWN, KNOWN_VALUES)
    assert rows["boundary of g - boundary of f"].tolist() == pytest.approx([0.25, 0.25, 0.5, 0.5])
    glued = page.page(KNOWN, KNOWN_VALUES)
    assert glued == {"repeats": 2, "num_segments": 2, "peaks": "0.50 (n=10), 1.00 (n=100)",
                    "spread_small": pytest.approx(0.3 * root2), "spread_large": pytest.approx(0.03 * root2),
                    "n_small": 10, "n_large": 100, "offset_small": pytest.approx(0.1),
                    "offset_large": pytest.approx(0.005), "mean_length": 1.5}
    fig = page.plot_bisection(KNOWN, KNOWN_VALUES)
    assert len(fig.axes) == 2 and fig.axes[0].get_title().startswith("output of a 20-step binary search")
    plt.close(fig)


def test_zoom_bins_the_range_of_the_outputs():
    assert page.histogram_edges(KNOWN, KNOWN_VALUES).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]  # the whole segment
    zoom = {**KNOWN_VALUES, "zoom": True}
    # outputs 0.3 to 0.7 and t_g = 0.5 on a segment of length 1: the range 0.3 to 0.7, widened by 0.04 each side
    assert page.histogram_edges(KNOWN, zoom) == pytest.approx(np.linspace(0.26, 0.74, 5))
    assert page.page(KNOWN, zoom)["peaks"] == "0.50 (n=10), 1.00 (n=100)"
    fig = page.plot_bisection(KNOWN, zoom)
    assert all(ax.get_xlim() == pytest.approx((0.26, 0.74)) for ax in fig.axes)
    plt.close(fig)
    # every output at one point: one bin of the segment each side, within the segment
    one = {"segment-0": _table(0, 1.0, {10: [0.5, 0.5], 100: [0.5, 0.5]})}
    assert page.histogram_edges(one, zoom)[[0, -1]] == pytest.approx([0.25, 0.75])


@pytest.mark.slow
def test_paper_profile_runs_end_to_end_on_synthetic_imagenet(synthetic_imagenet, tmp_path, monkeypatch, capsys):
    root, weights = synthetic_imagenet
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    monkeypatch.setenv("RS_REPRO_BUILD", str(tmp_path / "build"))
    monkeypatch.setattr(paths, "BUILD", tmp_path / "build")
    overrides = {"data_dir": str(root), "standard_weights": str(weights), "num_candidates": 6, "ns": [2, 3],
                 "repeats": 2, "steps": 3, "num_segments": 1, "profile_points": 2, "profile_samples": 2,
                 "batch_size": 8, "device": "cpu", "figures_dir": str(tmp_path / "fig")}
    executed = book.run_chapter(STEM, "paper", overrides, chapters_dir=tmp_path / "chapters")
    # the console says what the compute step cost before the page runs (the page's own line follows)
    assert re.search(rf"\[rs-repro\] {STEM} computed in \d+:\d\d: \d+ units computed, 0 read from the cache",
                     capsys.readouterr().out)
    record = nbformat.read(executed, as_version=4).metadata["rs_repro"]
    assert record["profile"] == "paper" and record["parameters"]["dataset"] == "imagenet"
    assert record["parameters"]["sigma"] == 0.05 and record["parameters"]["zoom"] is True
    spread = measurements.load(STEM, "paper")
    assert spread.dataset == "imagenet" and sorted(spread.spread) == [2, 3] and len(spread.per_segment[2]) == 1
    assert (tmp_path / "fig" / f"{STEM}.pdf").exists()
