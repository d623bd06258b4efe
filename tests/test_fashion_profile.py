"""The fashion profile (Fashion-MNIST, d = 784): its regime (dataset, noise levels shared across chapters; the
chapter rules are checked for every profile in tests/test_book.py), and every chapter runs end to end at the smoke profile's sizes on the idx files of :func:`conftest.synthetic_fashion`, so no
Debian package is needed."""

from __future__ import annotations

import nbformat
import pytest

from rs_repro import data
from rs_repro.pipeline import book, paths
from rs_repro.report import measurements

STEMS = book.chapters()

#: What the fashion profile says about the regime (dataset, noise levels, geometry of the scans): kept in the
#: end-to-end run, every other value (counts, budgets, sizes) taken from the smoke profile.
REGIME = {"dataset", "sigma", "sigmas", "randtrain_sigma", "advtrain_epsilon", "dims", "t_start", "t_stop",
          "extent", "sweep_span", "scan_step", "scan_past", "sweep_sigmas"}


@pytest.mark.parametrize("stem", STEMS)
def test_the_fashion_profile_reads_fashion_mnist_from_its_default_place(stem):
    values = book.profile_values(stem, "fashion")  # the chapter rules: tests/test_book.py, for every profile
    assert values.get("dataset", "fashion-mnist") == "fashion-mnist"
    if "data_dir" in values:  # the Debian package's folder, or what the user gives
        assert values["data_dir"] == ""


def test_the_fashion_noise_levels_are_those_the_certification_chapter_uses():
    """Figs. 1-3 and the normal vectors at the smaller of the theory chapter's two levels (those Fig. 4's rule
    picks on g_sigma); Fig. 5's own levels are chosen on the attacked g_{sigma,n} (claim 4, its profile's
    header), larger."""
    fig4, fig5 = (book.profile_values(stem, "fashion") for stem in ("fig4_certification", "fig5_attacks"))
    levels = book.profile_values("theory", "fashion")["sigmas"][:2]
    for stem in ("fig1_adversarial_probability", "fig2_slices", "fig3_binary_search", "normal_vectors"):
        assert book.profile_values(stem, "fashion")["sigma"] == min(levels)
    assert sorted(fig5["sigmas"]) > sorted(levels)
    assert fig4["randtrain_sigma"] == fig5["randtrain_sigma"]
    assert book.profile_values("theory", "fashion")["dims"] == [784]


def smoke_sized(stem: str, folder: str, figures: str) -> dict:
    """The fashion profile's regime at the smoke profile's sizes, on the data in ``folder``."""
    fashion, smoke = book.profile_values(stem, "fashion"), book.profile_values(stem, "smoke")
    values = {k: v for k, v in smoke.items() if k not in REGIME and k in fashion} | {"figures_dir": figures}
    if "data_dir" in fashion:
        values["data_dir"] = folder
    if stem == "fig4_certification":  # the synthetic classes are too far apart for the accuracy-cost rule
        values["sigmas"] = book.profile_values("fig5_attacks", "fashion")["sigmas"]
    return values


@pytest.mark.slow
def test_every_chapter_runs_on_fashion_mnist_at_smoke_sizes(synthetic_fashion, tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    monkeypatch.setenv("RS_REPRO_BUILD", str(tmp_path / "build"))
    monkeypatch.setattr(paths, "BUILD", tmp_path / "build")
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-package")
    for stem in STEMS:
        overrides = smoke_sized(stem, str(synthetic_fashion), str(tmp_path / "figures"))
        page = book.run_chapter(stem, "fashion", overrides, chapters_dir=tmp_path / "chapters", timeout=600)
        record = nbformat.read(page, as_version=4).metadata["rs_repro"]
        assert record["profile"] == "fashion"
        assert record["parameters"].get("dataset", "fashion-mnist") == "fashion-mnist"
    for stem in measurements.SCHEMA:  # every chapter that records measurements recorded them for fashion
        record = measurements.load(stem, "fashion")
        assert record is not None and getattr(record, "dataset", "fashion-mnist") == "fashion-mnist"
    assert measurements.recorded_profiles() == ["fashion"]
