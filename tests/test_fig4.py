"""Fig. 4 chapter: its compute half (rules, plan, units), its page half, and the paper profile end to end on a
synthetic ImageNet (the ``synthetic_imagenet`` fixture of conftest.py)."""

from __future__ import annotations

import re

import nbformat
import numpy as np
import pandas as pd
import pytest

from rs_repro import data, models
from rs_repro.chapters import common
from rs_repro.chapters.fig4_certification import compute, page
from rs_repro.pipeline import book, engine, paths

STEM = "fig4_certification"


def test_choose_sigmas_picks_the_closest_cost():
    sweep = pd.DataFrame({"sigma": [0.1, 0.2, 0.3, 0.4], "majority_accuracy": [0.96, 0.93, 0.87, 0.80]})
    assert compute.choose_sigmas(sweep, 0.97, [0.03, 0.12]) == [0.2, 0.3]  # costs 0.01, 0.04, 0.10, 0.17


def test_certified_accuracy_counts_correct_and_radius():
    rows = pd.DataFrame({"correct": [1, 1, 0, 1], "radius": [0.0, 0.5, 0.9, 0.2]})
    curve = page.certified_accuracy(rows, np.array([0.0, 0.2, 0.5, 0.6]))
    assert curve.certified_accuracy.tolist() == [0.75, 0.5, 0.25, 0.0]


def test_cohen_log_format(tmp_path):
    rows = pd.DataFrame({"idx": [3, 7], "label": [1, 2], "predict": [1, -1], "radius": [0.123456, 0.0],
                         "correct": [1, 0], "time": [0.5, 61.25]})
    text = page.write_cohen_log(rows, tmp_path / "log.tsv").read_text().splitlines()
    assert text == ["idx\tlabel\tpredict\tradius\tcorrect\ttime",
                    "3\t1\t1\t0.123\t1\t0:00:00.500000",
                    "7\t2\t-1\t0.0\t0\t0:01:01.250000"]


@pytest.mark.slow
def test_paper_profile_runs_end_to_end_on_synthetic_imagenet(synthetic_imagenet, tmp_path, monkeypatch):
    root, weights = synthetic_imagenet
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    monkeypatch.setenv("RS_REPRO_BUILD", str(tmp_path / "build"))
    monkeypatch.setattr(paths, "BUILD", tmp_path / "build")
    overrides = {"data_dir": str(root), "standard_weights": str(weights), "randtrain_weights": str(weights),
                 "num_images": 2, "sweep_sigmas": [0.05, 0.15], "sweep_n": 2, "n0": 3, "n": 8,
                 "batch_size": 8, "device": "cpu", "figures_dir": str(tmp_path / "fig"),
                 "results_dir": str(tmp_path / "results")}
    page = book.run_chapter("fig4_certification", "paper", overrides, chapters_dir=tmp_path / "chapters")
    record = nbformat.read(page, as_version=4).metadata["rs_repro"]
    assert record["profile"] == "paper" and record["parameters"]["dataset"] == "imagenet"
    assert record["parameters"]["sigmas"] == [0.05, 0.15]
    logs = sorted((tmp_path / "results" / "fig4_certification").glob("*.tsv"))
    assert [p.name for p in logs] == ["imagenet-randtrain-sigma0.25.tsv", "imagenet-standard-sigma0.05.tsv",
                                      "imagenet-standard-sigma0.15.tsv"]
    table = pd.read_csv(logs[1], sep="\t")
    assert list(table.columns) == ["idx", "label", "predict", "radius", "correct", "time"] and len(table) == 2
    assert (tmp_path / "fig" / "fig4_certification.pdf").exists()


def test_sweep_units_give_the_rows_of_one_sweep(tmp_path):
    from rs_repro import data
    from rs_repro.models import load_model, model_spec

    spec = model_spec("standard")
    where = {"dataset": "digits", "data_dir": None, "subset": 30, "subset_seed": 1, "batch_size": 64, "seed": 2}
    units = compute.sweep_units(**where, model=spec, sigmas=[0.2, 0.5], n=20)
    split = pd.concat(engine.run("fig4_certification", units, root=tmp_path).values(), ignore_index=True)
    model, _ = load_model("digits", spec)
    test = data.load_dataset("digits", "test", n=30, seed=1)
    pd.testing.assert_frame_equal(split, compute.sigma_sweep(model, 10, test.x, test.y, [0.2, 0.5], 20, 64, 2),
                                  check_exact=True)


def test_certify_units_cover_every_image_once_and_join_in_order(tmp_path):
    from rs_repro.models import model_spec

    units = common.certify_units(dataset="digits", data_dir=None, subset=7, subset_seed=0, images=list(range(7)),
                                 chunk=3, model=model_spec("standard"), name="standard", sigma=0.25, n0=5, n=20,
                                 alpha=0.01, batch_size=64, seed=0)
    assert [u.arguments["positions"] for u in units] == [[0, 1, 2], [3, 4, 5], [6]]
    assert {u.function for u in units} == {common.CERTIFY_UNIT} == {"rs_repro.chapters.certify:certify_unit"}
    tables = page.certified_tables(units, engine.run("fig4_certification", units, root=tmp_path))
    assert list(tables) == [("standard", 0.25)] and tables["standard", 0.25].unit.tolist() == list(range(7))


def test_bad_values_stop_the_chapter(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    for key, value, message in (("sigmas", [0.25], "sigmas=[0.25] is not accepted"),
                                ("alpha", 1.5, "alpha=1.5 is not accepted; expected a failure probability"),
                                ("device", "tpu", "device='tpu' is not accepted")):
        with pytest.raises(book.ChapterError, match=f"chapter 'fig4_certification': {re.escape(message)}"):
            book.run_chapter("fig4_certification", "smoke", {key: value})
    assert not (tmp_path / "runs").exists()


def test_the_plan_chooses_the_sigmas_then_certifies_every_image(tmp_path, monkeypatch):
    values = book.profile_values(STEM, "smoke")
    values.update(num_images=12, sweep_sigmas=[0.1, 0.5, 1.5], sweep_n=20, n0=5, n=20, batch_size=64)
    with monkeypatch.context() as planning:  # planning reads no data and trains no model
        for module, name in ((data, "load_dataset"), (models, "load_model"), (compute, "load_model")):
            planning.setattr(module, name, lambda *args, **kwargs: pytest.fail("planning loaded data or a model"))
        stages = compute.plan(values)
        first = [[u.id for u in stage.units({})] for stage in stages[:2]]
    assert [stage.name for stage in stages] == ["models", "selection", "certification"]
    assert first == [["model-standard", "model-randtrain"],
                     ["clean-standard", "clean-randtrain", "sweep-sigma0.1", "sweep-sigma0.5", "sweep-sigma1.5",
                      "images"]]
    selection = engine.compute(STEM, stages[:2], root=tmp_path)
    assert selection["images"].idx.tolist() == data.load_dataset("digits", "test", n=12, seed=0).index.tolist()
    sweep = pd.concat([selection[f"sweep-sigma{s:g}"] for s in values["sweep_sigmas"]], ignore_index=True)
    cost = selection["clean-standard"].accuracy.iloc[0] - sweep.majority_accuracy
    values["accuracy_costs"] = [float(cost.iloc[2]), float(cost.iloc[0])]  # the costs of sigma 1.5 and 0.1
    sigmas = compute.chosen_sigmas(selection, values)
    assert sigmas == (0.1, 1.5)
    units = compute.plan(values)[-1].units(selection)
    assert all(u.arguments["batch_size"] == 64 and u.arguments["device"] == "cpu" for u in units)
    assert [u.id for u in units] == [u.id for u in compute.certification_units(values, sigmas, 12)]
    tables = engine.compute(STEM, compute.plan(values), root=tmp_path)
    assert list(tables)[:len(selection)] == list(selection) and list(tables)[len(selection):] == [u.id for u in units]
    res = page.results(tables, values)
    assert list(res.certified) == [("standard", sigmas[0]), ("standard", sigmas[1]), ("randtrain", 0.5)]
    assert all(rows.unit.tolist() == list(range(12)) for rows in res.certified.values())
    assert page.record(res, values) is None
    text = page.page(res, values)
    assert text["num_images"] == 12 and text["sigma_lo"] == sigmas[0]
    assert text["smoothed_rt"] == res.certified["randtrain", 0.5].correct.mean()
    table = page.summary_table(res)
    assert len(table) == 3 and table["clean accuracy"].iloc[2] == res.clean["randtrain"]
    assert page.clean_table(res).model.tolist() == ["standard", "randtrain"]
    with pytest.raises(ValueError, match="need two distinct smoothing noises"):
        compute.chosen_sigmas(selection, {**values, "sigmas": [0.2, 0.2]})


@pytest.mark.parametrize("profile", ["default", "fashion", "imagenet", "paper", "smoke"])
def test_the_models_of_every_profile(profile):
    values = book.profile_values(STEM, profile)
    specs = common.model_specs(values, compute.MODELS)
    assert specs["standard"] == models.model_spec("standard", weights=values["standard_weights"], seed=values["seed"])
    absent = values["dataset"] not in models.ARCHITECTURES and not values["randtrain_weights"]
    assert ("randtrain" in specs) is not absent
    assert list(common.absent_models(values, compute.MODELS)) == (["randtrain"] if absent else [])
    assert [u.id for u in compute.plan(values)[0].units({})] == [f"model-{name}" for name in specs]
