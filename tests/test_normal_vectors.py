"""Normal-vector chapter (claim 9): the boundary point and HSJA's normal estimates on a hyperplane, where
g_sigma = f and the normal is known; the parameter rules, the units, the record and the page; the paper
profile end to end on a synthetic ImageNet (the ``synthetic_imagenet`` fixture of conftest.py)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import nbformat
import pandas as pd
import pytest
import torch
from conftest import computed_plan_units, here
from linear import Linear, images_at

from rs_repro import data, models, seeds
from rs_repro.attacks.oracle import Oracle, smoothed_oracle
from rs_repro.chapters import common
from rs_repro.chapters.normal_vectors import compute, page
from rs_repro.models import load_model, model_spec
from rs_repro.pipeline import book, engine, paths
from rs_repro.report import measurements
from rs_repro.smoothing import Smooth

STEM = "normal_vectors"
SIGMA = 0.1


@pytest.fixture
def values() -> dict:
    """The smoke profile's parameters, with tinier counts."""
    return {**book.profile_values(STEM, "smoke"), "num_images": 2, "ratios": [0.25, 4.0], "probes": 50,
            "boundary_samples": 500, "hsja_queries": 150}


@pytest.fixture
def plane() -> tuple[Linear, torch.Tensor, Smooth]:
    """A linear binary classifier, the unit normal w of its boundary [1, 1, 8, 8] (pointing to class 1), and
    its smoothed version at SIGMA: a hyperplane is its own boundary under smoothing (paper, section 3.1)."""
    model = Linear(seed=3)
    return model, model.w.view(1, 1, 8, 8), Smooth(model, 2, SIGMA)


def _directions(name: str, key: float) -> seeds.ImageGenerators:
    """One image's probe directions, seeded by ``name`` and ``key``."""
    return seeds.ImageGenerators(0, (name, key), [0])


def test_the_boundary_point_of_a_hyperplane_is_on_it(plane):
    model, w, smooth = plane
    x_o = images_at(model, [0.5])  # class 0, at distance 0.5 from the hyperplane
    found = compute.boundary_point(smooth, x_o, x_o + 0.5 * w, 0, samples=4000, step=0.25, past=4.0,
                              seed=seeds.derive_seed(0, "b"), batch_size=10_000)
    assert found.outcome == compute.CROSSED and found.x_b.shape == x_o.shape
    # x_a is on the hyperplane, which is also the boundary of g_sigma: x_b is there, to the Monte Carlo's
    # resolution (4,000 draws: a standard error of 0.008 on the frequencies, 0.02 sigma in position)
    assert abs(float(model.signed_distance(found.x_b))) < 0.1 * SIGMA
    assert abs(found.past_x_a) < 0.1 * SIGMA and abs(found.gap) < 0.1


def test_rays_without_a_crossing_say_why(plane):
    model, w, smooth = plane
    x_o = images_at(model, [0.5])
    away = compute.boundary_point(smooth, x_o, x_o - 0.3 * w, 0, samples=500, step=0.25, past=4.0,
                             seed=seeds.derive_seed(0, "b"), batch_size=10_000)
    assert away.outcome == compute.NO_CROSSING and away.x_b is None and math.isnan(away.past_x_a)
    wrong = compute.boundary_point(smooth, x_o, x_o + 0.5 * w, 1, samples=500, step=0.25, past=4.0,
                              seed=seeds.derive_seed(0, "b"), batch_size=10_000)
    assert wrong.outcome == compute.MISCLASSIFIED and wrong.x_b is None


def test_estimates_on_a_hyperplane_point_along_its_normal(plane):
    model, w, smooth = plane
    x_b, fallback = images_at(model, [0.0]), -w
    # Without RS the probes' labels are the side of the hyperplane: with 2,000 probes in d = 64 the cosine
    # with w is about sqrt(2 / (pi d)) / sqrt(2 / (pi d) + 1 / 2000) = 0.975 at any radius.
    for delta in (0.01, 0.3):
        found = compute.estimate(Oracle(model, 2000), x_b, 0, delta, 2000, _directions("f", delta), fallback)
        assert compute.cosine(found.v, w) > 0.9 and not found.one_label and abs(found.adversarial - 0.5) < 0.05
    # With RS (an odd n, so no tie favours a class) a probe at delta = 4 sigma is still decided by its side;
    # at delta = sigma / 20 its vote is nearly a coin flip and the estimate nearly a random direction.
    def with_rs(ratio: float, k: int) -> float:
        oracle = smoothed_oracle(smooth, 11, max_queries=2000, seed=seeds.derive_seed(k, "votes"))
        found = compute.estimate(oracle, x_b, 0, ratio * SIGMA, 2000, _directions("rs", k), fallback)
        return compute.cosine(found.v, w)

    assert min(with_rs(4.0, k) for k in range(3)) > 0.9
    assert abs(sum(with_rs(0.05, k) for k in range(3)) / 3) < 0.3
    # Off the boundary by more than the radius, every probe gets the same label (ICASSP 2022, section 3.5).
    off = compute.estimate(Oracle(model, 200), images_at(model, [0.1]), 0, 0.01, 200, _directions("off", 0),
                           fallback)
    assert off.one_label and off.adversarial == 0.0


def test_with_and_without_rs_agree_on_a_hyperplane_when_delta_exceeds_sigma(plane):
    model, w, smooth = plane
    x_b = images_at(model, [0.0])
    runs = [compute.compare(model, smooth, x_b, -w, 0, n=11, ratios=[0.05, 4.0], probes=2000, seed=0, key=k,
                       batch_size=10_000) for k in range(4)]
    mean = pd.concat(runs).groupby("ratio").cosine.mean()
    assert mean[4.0] > 0.85 and abs(mean[0.05]) < 0.3
    # two estimates without RS agree at any radius (both about 0.975 from w: a cosine near 0.95)
    assert (pd.concat(runs).cosine_f > 0.85).all()
    first = runs[0]
    assert first.ratio.tolist() == [0.05, 4.0] and first.delta.tolist() == pytest.approx([0.05 * SIGMA, 4 * SIGMA])
    assert not first.one_label_f.any() and not first.one_label_rs.any()
    assert first.equals(compute.compare(model, smooth, x_b, -w, 0, n=11, ratios=[0.05, 4.0], probes=2000, seed=0, key=0,
                                   batch_size=10_000))  # same seed, same estimates
    # a ratio's estimates do not depend on the other ratios
    alone = compute.compare(model, smooth, x_b, -w, 0, n=11, ratios=[4.0], probes=2000, seed=0, key=0, batch_size=10_000)
    assert alone.cosine.tolist() == first.cosine.tolist()[1:]


#: A valid ImageNet setting of the parameters that name the data and the model.
IMAGENET = {"dataset": "imagenet", "data_dir": "/data/val", "standard_weights": "/data/rn50.pth", "num_candidates": 40}


@pytest.mark.parametrize(("change", "name"), [
    ({"dataset": "svhn"}, "dataset"),
    ({"dataset": "imagenet", "num_candidates": 40}, "standard_weights"),
    ({**IMAGENET, "standard_weights": "pretrained:resnet-9000"}, "standard_weights"),
    ({"standard_weights": "/data/rn50.pth"}, "standard_weights"),
    ({"standard_weights": "pretrained:efficientnet-lite0"}, "standard_weights"),
    ({**IMAGENET, "num_candidates": 0}, "num_candidates"),
    ({"num_candidates": -1}, "num_candidates"),
    ({"sigma": 0.0}, "sigma"),
    ({"sigma": float("nan")}, "sigma"),
    ({"n": 0}, "n"),
    ({"num_images": 0}, "num_images"),
    ({"ratios": []}, "ratios"),
    ({"ratios": [0.0, 1.0]}, "ratios"),
    ({"ratios": [2.0, 1.0]}, "ratios"),
    ({"ratios": [1.0, 1.0]}, "ratios"),
    ({"ratios": [1.0, float("inf")]}, "ratios"),
    ({"probes": 1}, "probes"),
    ({"boundary_samples": 0}, "boundary_samples"),
    ({"hsja_queries": 0}, "hsja_queries"),
    ({"attack_steps": 0}, "attack_steps"),
    ({"scan_step": 0.0}, "scan_step"),
    ({"scan_step": float("inf")}, "scan_step"),
    ({"scan_past": -1.0}, "scan_past"),
    ({"batch_size": 0}, "batch_size"),
    ({"device": "gpu"}, "device"),
])
def test_check_parameters_rejects_each_bad_value(values, standins, change, name):
    compute.check_parameters(values)
    change = here(change, standins)
    with pytest.raises(ValueError, match=f"^{name}=.* is not accepted; expected"):
        compute.check_parameters({**values, **change})
    with pytest.raises(book.ChapterError, match=f"chapter 'normal_vectors': {name}="):
        book.check_chapter(STEM, {**values, **change})


def test_imagenet_settings_pass_the_checks(values, standins):
    for weights in (standins["/data/rn50.pth"], "pretrained:efficientnet-lite0"):
        compute.check_parameters({**values, **here(IMAGENET, standins), "standard_weights": weights, "device": "cuda:1"})
    compute.check_parameters({**values, "dataset": "imagenet-samples", "standard_weights": "pretrained:efficientnet-lite0"})


def test_plan_is_pure_and_chooses_the_images_in_a_unit(values, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the plan read data or loaded a model")

    with monkeypatch.context() as patch:
        for module, name in ((compute, "load_model"), (models, "load_model"), (data, "load_dataset")):
            patch.setattr(module, name, refuse)
        plan = compute.plan(values)
        assert [stage.name for stage in plan] == ["models", "chosen images", "images"]
        assert [u.id for u in plan[0].units({}) + plan[1].units({})] == ["model-standard", "images"]
        chosen = pd.DataFrame({"position": [0, 1], "index": [7, 3]})
        work = plan[2].units({"images": chosen})
        assert [(u.id, u.arguments["position"], u.arguments["index"]) for u in work] == [("image-0", 0, 7),
                                                                                         ("image-1", 1, 3)]
        with pytest.raises(ValueError, match=r"classifies no candidate image .* \(raise num_candidates\)"):
            plan[2].units({"images": chosen.iloc[:0]})


def _first_correct(model, test, count: int, seed: int) -> list[int]:
    """The first ``count`` images of ``test`` the model labels right, in the chapter's seeded order, one by one."""
    order = torch.randperm(len(test.y), generator=seeds.generator(seed, "normal_vectors", "images"))
    with torch.inference_mode():
        right = [int(test.index[k]) for k in order if int(model(test.x[k:k + 1]).argmax(1)) == int(test.y[k])]
    return right[:count]


def test_units_are_the_images_with_stable_keys(values):
    everything = computed_plan_units(STEM, values)
    assert [u.id for u in everything[:2]] == ["model-standard", "images"]
    work = everything[2:]
    assert [u.id for u in work] == ["image-0", "image-1"]
    model, _ = load_model("digits", model_spec("standard", seed=0))
    test = data.load_dataset("digits", "test")
    chosen = [u.arguments["index"] for u in work]
    assert chosen == _first_correct(model, test, 2, 0) and len(set(chosen)) == 2
    assert all(int(model(test.x[i:i + 1]).argmax(1)) == int(test.y[i]) for i in chosen)
    assert all(u.arguments["batch_size"] == values["batch_size"] and u.arguments["device"] == "cpu" for u in work)
    assert [u.key() for u in computed_plan_units(STEM, values)[2:]] == [u.key() for u in work]
    # what changes no number changes no key, and a third image leaves the first two as they are
    same = computed_plan_units(STEM, {**values, "figures_dir": "elsewhere", "use_cache": False, "num_images": 3})[2:]
    assert [u.key() for u in same[:2]] == [u.key() for u in work] and len(same) == 3
    assert work[0].arguments["model"] == model_spec("standard", seed=0, weights="")
    for change in ({"sigma": 0.5}, {"ratios": [0.25]}, {"batch_size": 999}, {"seed": 1}, {"attack_steps": 100},
                   {"scan_step": 0.5}, {"scan_past": 2.0}, {"num_candidates": 300}):
        assert computed_plan_units(STEM, {**values, **change})[2].key() != work[0].key()


def test_images_are_chosen_among_the_candidates(values):
    full = data.load_dataset("digits", "test")
    assert common.test_pool("digits", None, 0, 0).index.equal(full.index)
    subset = common.test_pool("digits", None, 100, 0)
    assert subset.index.equal(data.load_dataset("digits", "test", n=100, seed=0).index)
    work = computed_plan_units(STEM, {**values, "num_candidates": 100})[2:]
    chosen = [u.arguments["index"] for u in work]  # positions in the test split
    assert len(chosen) == 2 and all(i in subset.index for i in chosen)
    model, _ = load_model("digits", model_spec("standard", seed=0))
    assert chosen == _first_correct(model, subset, 2, 0)
    row = compute.image_unit(**{**work[0].arguments, "ratios": [1.0], "probes": 10, "hsja_queries": 20})
    assert row["index"].iloc[0] == chosen[0] and row["label"].iloc[0] == int(full.y[chosen[0]])


def test_a_smoke_run_gives_the_same_record_from_the_cache(values, tmp_path, monkeypatch):
    work = computed_plan_units(STEM, values)
    first, _ = engine.compute_unit(work[2])
    again, _ = engine.compute_unit(work[2])
    assert first.equals(again)  # same seed, same table
    assert (first.outcome == compute.CROSSED).all() and first.ratio.tolist() == values["ratios"]
    assert first.cosine.between(-1, 1).all() and (first.hsja_one_label_steps <= first.hsja_steps).all()
    tables = engine.compute(STEM, compute.plan(values), root=tmp_path / "cache")
    assert tables["image-0"].equals(first)
    cached = engine.compute(STEM, compute.plan(values), root=tmp_path / "cache")  # read back from the CSV files
    record = page.record(page.results(tables, values), values)
    assert page.record(page.results(cached, values), values) == record
    assert isinstance(record, measurements.NormalAgreement) and measurements.SCHEMA[STEM] is type(record)
    crossed = (page.results(tables, values).images.outcome == compute.CROSSED).sum()
    assert record.ratios == values["ratios"] and [len(c) for c in record.cosine] == [crossed] * 2
    assert len(record.hsja_steps) == len(record.hsja_one_label_steps) == crossed
    monkeypatch.setattr(paths, "BUILD", tmp_path)
    measurements.record(STEM, record)
    assert measurements.load(STEM) == record


def _table(position: int, cosines: list[float], one_rs: list[bool], one_f: list[bool], hsja: tuple[int, int, float]
           ) -> pd.DataFrame:
    """A table shaped as image_unit's for an image with an x_b, at the ratios 0.5 and 2."""
    return pd.DataFrame({"ratio": [0.5, 2.0], "delta": [0.175, 0.7], "cosine": cosines, "cosine_f": [0.6, 0.9],
                         "one_label_f": one_f,
                         "one_label_rs": one_rs, "adversarial_f": [0.0, 0.5], "adversarial_rs": [0.4, 0.5]}).assign(
        position=position, index=10 + position, label=3, distance_a=0.6, outcome=compute.CROSSED, past_x_a=0.01 * position,
        gap=-0.01, hsja_steps=hsja[0], hsja_one_label_steps=hsja[1], hsja_delta_ratio=hsja[2])


#: Two images with an x_b and one without: mean cosines 0.2 and 0.8, one-label rates (RS) 0.5 and 0,
#: HSJA 2 one-label steps out of 18.
KNOWN = {"images": pd.DataFrame({"position": [0, 1, 2], "index": [10, 11, 12]}),
         "image-0": _table(0, [0.1, 0.9], [True, False], [True, False], (10, 2, 0.05)),
         "image-1": _table(1, [0.3, 0.7], [False, False], [False, False], (8, 0, 0.07)),
         "image-2": pd.DataFrame([{"position": 2, "index": 12, "label": 1, "distance_a": 0.5,
                                   "outcome": compute.NO_CROSSING, "past_x_a": math.nan, "gap": math.nan}])}
KNOWN_VALUES = {"dataset": "digits", "seed": 0, "sigma": 0.35, "n": 10, "probes": 100, "ratios": [0.5, 2.0],
                "boundary_samples": 1000, "hsja_queries": 300, "scan_step": 0.5, "scan_past": 8.0}


def test_summary_record_and_page_have_the_known_answers():
    res = page.results(KNOWN, KNOWN_VALUES)
    record = page.record(res, KNOWN_VALUES)
    assert record == measurements.NormalAgreement(
        dataset="digits", seed=0, sigma=0.35, n=10, probes=100, ratios=[0.5, 2.0], cosine=[[0.1, 0.3], [0.9, 0.7]],
        one_label=[[True, False], [False, False]], hsja_steps=[10, 8], hsja_one_label_steps=[2, 0])
    table = res.by_ratio
    assert table.equals(page.by_ratio(page.estimates([KNOWN[f"image-{k}"] for k in range(3)]), KNOWN_VALUES))
    assert table["mean cosine"].tolist() == pytest.approx([0.2, 0.8])
    assert (table["95% low"] <= table["mean cosine"]).all() and (table["mean cosine"] <= table["95% high"]).all()
    assert table["one label (f)"].tolist() == [0.5, 0.0] and table["adversarial probes (f)"].tolist() == [0.0, 0.5]
    glued = page.page(res, KNOWN_VALUES)
    assert glued["tried"] == 3 and glued["crossed"] == 2
    assert glued["not_crossed"] == "1 image: no crossing within the scanned range"
    assert glued["cosines"] == "0.20 (δ/σ = 0.5), 0.80 (δ/σ = 2)"
    assert glued["cosines_f"] == "0.60 (δ/σ = 0.5), 0.90 (δ/σ = 2)"
    assert glued["one_label_rs"] == "0.50 (δ/σ = 0.5), 0.00 (δ/σ = 2)"
    assert glued["hsja_rate"] == pytest.approx(2 / 18) and glued["hsja_images"] == "1 image"
    assert glued["hsja_delta_ratio"] == pytest.approx(0.06)
    assert (glued["hsja_nearest_ratio"], glued["hsja_nearest_cosine"]) == (0.5, pytest.approx(0.2))
    assert glued["past_median"] == pytest.approx(0.005) and glued["gap_max"] == pytest.approx(0.01)
    assert (glued["scan_step"], glued["scan_past"], glued["boundary_tol"]) == (0.5, 8.0, compute.BOUNDARY_TOL)
    for plot in (page.plot_cosine, page.plot_one_label):
        fig = plot(res, KNOWN_VALUES)
        assert fig.axes[0].get_xscale() == "log"
        plt.close(fig)
    with pytest.raises(ValueError, match="no chosen image has an x_b"):
        page.results({"images": KNOWN["images"].iloc[:1], "image-0": KNOWN["image-2"]}, KNOWN_VALUES)


@pytest.mark.slow
def test_paper_profile_runs_end_to_end_on_synthetic_imagenet(synthetic_imagenet, tmp_path, monkeypatch):
    root, weights = synthetic_imagenet
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    monkeypatch.setenv("RS_REPRO_BUILD", str(tmp_path / "build"))
    monkeypatch.setattr(paths, "BUILD", tmp_path / "build")
    # On the synthetic model the boundary of g_sigma lies about 9 (l2, 190 sigma) past x_a: a longer, coarser grid.
    overrides = {"data_dir": str(root), "standard_weights": str(weights), "num_candidates": 6, "num_images": 1,
                 "n": 2, "ratios": [1.0], "probes": 4, "boundary_samples": 2, "hsja_queries": 10, "attack_steps": 10,
                 "scan_step": 100.0, "scan_past": 400.0, "batch_size": 8, "device": "cpu",
                 "figures_dir": str(tmp_path / "fig")}
    page = book.run_chapter(STEM, "paper", overrides, chapters_dir=tmp_path / "chapters")
    record = nbformat.read(page, as_version=4).metadata["rs_repro"]
    assert record["profile"] == "paper" and record["parameters"]["dataset"] == "imagenet"
    assert record["parameters"]["sigma"] == 0.05 and record["parameters"]["num_candidates"] == 6
    agreement = measurements.load(STEM, "paper")
    assert agreement.dataset == "imagenet" and agreement.ratios == [1.0] and len(agreement.cosine[0]) == 1
    assert (tmp_path / "fig" / f"{STEM}.pdf").exists()
