"""Fig. 4 chapter: its compute functions, and the paper profile end to end on a synthetic ImageNet (the
``synthetic_imagenet`` fixture of conftest.py)."""

from __future__ import annotations

import re

import nbformat
import numpy as np
import pandas as pd
import pytest

from rs_repro.experiments import fig4_certification as ex
from rs_repro.pipeline import book, paths


def test_choose_sigmas_picks_the_closest_cost():
    sweep = pd.DataFrame({"sigma": [0.1, 0.2, 0.3, 0.4], "majority_accuracy": [0.96, 0.93, 0.87, 0.80]})
    assert ex.choose_sigmas(sweep, 0.97, [0.03, 0.12]) == [0.2, 0.3]  # costs 0.01, 0.04, 0.10, 0.17


def test_certified_accuracy_counts_correct_and_radius():
    rows = pd.DataFrame({"correct": [1, 1, 0, 1], "radius": [0.0, 0.5, 0.9, 0.2]})
    curve = ex.certified_accuracy(rows, np.array([0.0, 0.2, 0.5, 0.6]))
    assert curve.certified_accuracy.tolist() == [0.75, 0.5, 0.25, 0.0]


def test_cohen_log_format(tmp_path):
    rows = pd.DataFrame({"idx": [3, 7], "label": [1, 2], "predict": [1, -1], "radius": [0.123456, 0.0],
                         "correct": [1, 0], "time": [0.5, 61.25]})
    text = ex.write_cohen_log(rows, tmp_path / "log.tsv").read_text().splitlines()
    assert text == ["idx\tlabel\tpredict\tradius\tcorrect\ttime",
                    "3\t1\t1\t0.123\t1\t0:00:00.500000",
                    "7\t2\t-1\t0.0\t0\t0:01:01.250000"]


@pytest.mark.slow
def test_paper_profile_runs_end_to_end_on_synthetic_imagenet(synthetic_imagenet, tmp_path, monkeypatch):
    root, weights = synthetic_imagenet
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    monkeypatch.setenv("RS_REPRO_BUILD", str(tmp_path / "build"))
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
    from rs_repro.pipeline import engine

    spec = model_spec("standard")
    where = {"dataset": "digits", "data_dir": None, "subset": 30, "subset_seed": 1, "batch_size": 64, "seed": 2}
    units = ex.sweep_units(**where, model=spec, sigmas=[0.2, 0.5], n=20)
    split = pd.concat(engine.run("fig4_certification", units, root=tmp_path).values(), ignore_index=True)
    model, _ = load_model("digits", spec)
    test = data.load_dataset("digits", "test", n=30, seed=1)
    pd.testing.assert_frame_equal(split, ex.sigma_sweep(model, 10, test.x, test.y, [0.2, 0.5], 20, 64, 2),
                                  check_exact=True)


def test_certify_units_cover_every_image_once_and_join_in_order(tmp_path):
    from rs_repro.models import model_spec
    from rs_repro.pipeline import engine

    units = ex.certify_units(dataset="digits", data_dir=None, subset=7, subset_seed=0, images=list(range(7)), chunk=3,
                             model=model_spec("standard"), name="standard", sigma=0.25, n0=5, n=20, alpha=0.01,
                             batch_size=64, seed=0)
    assert [u.arguments["positions"] for u in units] == [[0, 1, 2], [3, 4, 5], [6]]
    tables = ex.certified_tables(units, engine.run("fig4_certification", units, root=tmp_path))
    assert list(tables) == [("standard", 0.25)] and tables["standard", 0.25].unit.tolist() == list(range(7))


def test_bad_values_stop_the_chapter(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    for key, value, message in (("sigmas", [0.25], "sigmas=[0.25] is not accepted"),
                                ("alpha", 1.5, "alpha=1.5 is not accepted; expected a failure probability"),
                                ("device", "tpu", "device='tpu' is not accepted")):
        with pytest.raises(book.ChapterError, match=f"chapter 'fig4_certification': {re.escape(message)}"):
            book.run_chapter("fig4_certification", "smoke", {key: value})
    assert not (tmp_path / "runs").exists()


def test_two_stages_choose_the_sigmas_then_certify_every_image(tmp_path):
    from rs_repro.pipeline import engine

    values = book.profile_values("fig4_certification", "smoke")
    values.update(num_images=12, sweep_sigmas=[0.1, 0.5, 1.5], sweep_n=20, n0=5, n=20, batch_size=64)
    selection = engine.run("fig4_certification", ex.selection_units(values), root=tmp_path)
    assert sorted(selection) == ["clean-randtrain", "clean-standard", "sweep-sigma0.1", "sweep-sigma0.5",
                                 "sweep-sigma1.5"]
    sweep = pd.concat([selection[f"sweep-sigma{s:g}"] for s in values["sweep_sigmas"]], ignore_index=True)
    cost = selection["clean-standard"].accuracy.iloc[0] - sweep.majority_accuracy
    values["accuracy_costs"] = [float(cost.iloc[2]), float(cost.iloc[0])]  # the costs of sigma 1.5 and 0.1
    sigmas = ex.chosen_sigmas(selection, values)
    assert sigmas == (0.1, 1.5)
    units = ex.certification_units(values, sigmas)
    assert all(u.arguments["batch_size"] == 64 and u.arguments["device"] == "cpu" for u in units)
    res = ex.results(selection, engine.run("fig4_certification", units, root=tmp_path), values)
    assert list(res.certified) == [("standard", sigmas[0]), ("standard", sigmas[1]), ("randtrain", 0.5)]
    assert all(rows.unit.tolist() == list(range(12)) for rows in res.certified.values())
    text = ex.page(res, values)
    assert text["num_images"] == 12 and text["sigma_lo"] == sigmas[0]
    assert text["smoothed_rt"] == res.certified["randtrain", 0.5].correct.mean()
    table = ex.summary_table(res)
    assert len(table) == 3 and table["clean accuracy"].iloc[2] == res.clean["randtrain"]
    with pytest.raises(ValueError, match="need two distinct smoothing noises"):
        ex.chosen_sigmas(selection, {**values, "sigmas": [0.2, 0.2]})
