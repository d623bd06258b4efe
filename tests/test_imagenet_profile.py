"""The ``imagenet`` profile (the README's table of profiles): the 20 ImageNet validation images of the foolbox wheel and the
pretrained EfficientNet-Lite0, the paper's sigma, n, P_a and budgets, ``device: auto``.

Its regime in every chapter (the chapter rules are checked for every profile in tests/test_book.py); ``auto`` resolves to the device of the machine; and every chapter
runs end to end on the real weights and images at a micro size on CPU (2 images, tiny n and budgets), the
claims chapter last, reading what the others recorded. The model's top-1 on the 20 images is asserted in
``tests/test_imagenet.py``.
"""

from __future__ import annotations

import nbformat
import pytest
import torch

from rs_repro import checks
from rs_repro.pipeline import book, parameters, paths
from rs_repro.report import measurements

PROFILE = "imagenet"
#: Positions of the images EfficientNet-Lite0 misclassifies (tests/test_imagenet.py): never attacked.
MISCLASSIFIED = {6, 7, 19}


@pytest.mark.parametrize("stem", book.chapters())
def test_every_chapter_has_the_profiles_regime(stem):
    values = book.profile_values(stem, PROFILE)  # the chapter rules: tests/test_book.py, for every profile
    if "dataset" in values:
        assert values["dataset"] == "imagenet-samples" and values["data_dir"] == ""
        assert values["standard_weights"] == "pretrained:efficientnet-lite0" and values["device"] == "auto"
    for name in ("randtrain_weights", "advtrain_weights"):
        assert values.get(name, "") == ""  # those rows are absent (no checkpoint offline)
    sizes = ("num_images", "num_candidates", "pool") if stem == "fig5_attacks" else ("num_images", "num_candidates")
    assert all(values.get(name, 0) <= 20 for name in sizes)  # imagenet-samples holds 20 images


def test_the_profile_has_the_papers_settings():
    fig5 = book.profile_values("fig5_attacks", PROFILE)
    assert fig5["sigmas"] == [0.05, 0.15] and fig5["ns"] == [10, 50, 100] and fig5["pas"] == [0.5, 0.8]
    assert fig5["max_queries"] == 2000 and fig5["budgets"][-1] == 2000
    assert book.profile_values("fig4_certification", PROFILE)["sigmas"] == [0.05, 0.15]
    assert book.profile_values("theory", PROFILE)["dims"] == [3 * 224 * 224]


def test_auto_is_cpu_without_cuda_and_cuda_with_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert book.resolve_device({"device": "auto", "n": 3}) == {"device": "cpu", "n": 3}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert book.resolve_device({"device": "auto"}) == {"device": "cuda"}
    for given in ("cpu", "cuda:1"):  # a concrete device is kept
        assert book.resolve_device({"device": given}) == {"device": given}
    assert book.resolve_device({"seed": 0}) == {"seed": 0}  # a chapter without a device


def test_a_notebook_run_outside_the_runner_resolves_auto(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    namespace = book.profile_values("fig4_certification", PROFILE)
    values = parameters.chapter_values("fig4_certification", namespace)
    assert values["device"] == "cpu" and namespace["device"] == "auto"


def test_device_rule_names_auto_and_refuses_anything_else():
    assert "'auto' (cuda when available, else cpu)" in checks.DEVICES
    assert all(checks.is_device(d) for d in ("auto", "cpu", "cuda", "cuda:0", "cuda:12"))
    assert not any(checks.is_device(d) for d in ("gpu", "tpu", "mps", "cuda:", "cudax", "cuda:a", "Auto"))
    with pytest.raises(book.ChapterError, match=r"device='gpu' is not accepted; expected 'auto' \(cuda when"):
        book.check_chapter("fig2_slices", {**book.profile_values("fig2_slices", PROFILE), "device": "gpu"})


#: Micro sizes of each chapter (with the figures and logs written under the test's folder): a few of the 20
#: images (a seeded subset: 4 candidates hold 2 correctly classified ones), 2 attacked.
MICRO = {
    "theory": {"mc_samples": 50, "vote_reps": 50, "n_max": 20, "betas": [0.0, 1.0], "curvature_sums": [-1.0, 1.0],
               "pas": [0.5, 0.8], "acceptance_ns": [10]},
    "fig1_adversarial_probability": {"num_candidates": 4, "num_images": 2, "ns": [5, 10], "points": 3, "pool": 10, "panel_points": 3,
                                     "panel_pool": 10, "sweep_sigmas": [0.15], "sweep_points": 2, "sweep_pool": 2,
                                     "attack_steps": 3, "batch_size": 20},
    "fig2_slices": {"num_images": 2, "ns": [1, 2], "resolution": 2, "batch_size": 20},
    "fig3_binary_search": {"num_candidates": 4, "ns": [2, 3], "repeats": 2, "steps": 2, "num_segments": 1, "profile_points": 2,
                           "profile_samples": 2, "batch_size": 20},
    # a ray long enough (400 sigma = 20 in l2) to leave the class whatever the few votes say near x_o
    "normal_vectors": {"num_images": 1, "n": 2, "ratios": [1.0], "probes": 2, "boundary_samples": 5,
                       "hsja_queries": 4, "attack_steps": 3, "scan_step": 40.0, "scan_past": 400.0, "batch_size": 20},
    "fig4_certification": {"num_images": 2, "sweep_sigmas": [0.05, 0.15], "sweep_n": 2, "n0": 2, "n": 4,
                           "batch_size": 20},
    "fig5_attacks": {"pool": 4, "num_images": 2, "sigmas": [0.05], "ns": [2], "pas": [0.8], "attacks": ["RayS"],
                     "max_queries": 4, "budgets": [2, 4], "chunk": 2, "verify_repeats": 2, "votes": 2, "confirm_votes": 8,
                     "certify_n": 4, "minimal_steps": 3, "batch_size": 20},
    "adaptive_attacks": {"num_images": 2, "sigmas": [0.05], "ns": [2], "attacks": ["HSJA"], "repeats": [3],
                         "repeat_attacks": [], "scaled_attacks": ["HSJA"], "hash_attacks": [], "hash_repeats": [],
                         "hidden_laws": ["gaussian"], "hidden_attacks": ["HSJA"], "calibration_images": 2,
                         "calibration_draws": 1, "max_queries": 4, "chunk": 2, "verify_repeats": 2, "votes": 2,
                         "confirm_votes": 8, "batch_size": 20},
    "claims": {},
}


@pytest.mark.slow
def test_every_chapter_runs_end_to_end_on_the_real_model_and_images(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    monkeypatch.setenv("RS_REPRO_BUILD", str(tmp_path / "build"))
    monkeypatch.setattr(paths, "BUILD", tmp_path / "build")
    assert list(MICRO) == book.chapters()  # every chapter, claims last
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pages = {}
    for stem, micro in MICRO.items():
        overrides = {**micro, "figures_dir": str(tmp_path / "fig")}
        if stem == "fig4_certification":
            overrides["results_dir"] = str(tmp_path / "results")
        pages[stem] = book.run_chapter(stem, PROFILE, overrides, chapters_dir=tmp_path / "chapters")
        record = nbformat.read(pages[stem], as_version=4).metadata["rs_repro"]
        assert record["profile"] == PROFILE and record["parameters"].get("device", device) == device
    # Fig. 4 certifies the standard model at the paper's two noise levels, and says why RandTrain is absent
    logs = sorted(p.name for p in (tmp_path / "results" / "fig4_certification").glob("*.tsv"))
    assert logs == ["imagenet-samples-standard-sigma0.05.tsv", "imagenet-samples-standard-sigma0.15.tsv"]
    assert "o randtrain checkpoint was given (randtrain_weights)" in pages["fig4_certification"].read_text()
    # the records of the claims chapter, on the images EfficientNet-Lite0 classifies correctly
    grid = measurements.load("fig5_attacks", PROFILE)
    assert grid.dataset == "imagenet-samples" and grid.max_queries == 4 and len(grid.images) == 2
    assert not set(grid.images) & MISCLASSIFIED and len(grid.minimal_l2) == 2
    assert {c.model for c in grid.configurations} == {"standard"} and len(grid.configurations) == 2
    push = measurements.load("fig1_adversarial_probability", PROFILE)
    assert push.dataset == "imagenet-samples" and push.sigma == 0.05 and push.num_images == 2
    assert sorted(measurements.load("fig3_binary_search", PROFILE).spread) == [2, 3]
    assert measurements.load("normal_vectors", PROFILE).ratios == [1.0]
    assert measurements.load("theory", PROFILE).pa == 0.8
    adaptive = measurements.load("adaptive_attacks", PROFILE)
    assert len(adaptive.images) == 2 and not set(adaptive.images) & MISCLASSIFIED and adaptive.max_queries == 4
    assert {(c.noise, c.repeats, c.budget_factor) for c in adaptive.configurations} == {
        ("input", 1, 1), ("input", 3, 3), ("hidden-gaussian", 1, 1)}
    assert PROFILE in measurements.recorded_profiles()
