"""Inputs refused before anything runs: every chapter's rules name the parameter, its value and what is accepted.

A ``data_dir`` that does not exist, or that a dataset would ignore; a device this machine does not have; weights
files that are missing or that ``torch.load(weights_only=True)`` cannot read as a state dict (a pickle that would
run code among them); checkpoints named where the models are trained here; empty grids, non-positive counts,
negative pools, and image counts or positions beyond the test split or the pool they are drawn from. Each is a
:class:`rs_repro.pipeline.book.ChapterError` from :func:`rs_repro.pipeline.book.check_chapter`, which the runner calls before
papermill starts; the Debian package is installed only when ``data_dir`` is empty (:mod:`rs_repro.pipeline.provision`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_idx

from rs_repro import checks, data, models
from rs_repro.pipeline import book, cli, parameters, paths, provision

STEMS = book.chapters()
#: The chapters whose parameters name a dataset (every one but the theory and the claims).
DATA_STEMS = [stem for stem in STEMS if "dataset" in parameters.parameters(stem)]
#: A count no test split holds.
HUGE = 10**20
#: Images in the digits test split, the smoke profile's dataset.
DIGITS = data.TEST_SIZES["digits"]

#: One bad value per row: (chapter, parameter, value). Each is refused with the parameter and the value named.
BAD = [
    ("theory", "sigmas", []), ("theory", "dims", []), ("theory", "pas", []), ("theory", "acceptance_ns", []),
    ("theory", "betas", []), ("theory", "curvature_sums", []), ("theory", "certify_n", 0),
    ("theory", "mc_samples", -1), ("theory", "vote_reps", 0), ("theory", "n_max", 0),
    ("fig1_adversarial_probability", "num_images", HUGE), ("fig1_adversarial_probability", "num_images", 0),
    ("fig1_adversarial_probability", "num_candidates", HUGE), ("fig1_adversarial_probability", "num_candidates", -1),
    ("fig1_adversarial_probability", "num_candidates", DIGITS + 1), ("fig1_adversarial_probability", "ns", []),
    ("fig1_adversarial_probability", "pas", []), ("fig1_adversarial_probability", "sweep_sigmas", []),
    ("fig1_adversarial_probability", "pool", -5),
    ("fig1_adversarial_probability", "panel_pool", 0), ("fig1_adversarial_probability", "sweep_pool", -5),
    ("fig1_adversarial_probability", "points", 0), ("fig1_adversarial_probability", "batch_size", 0),
    ("fig2_slices", "num_images", HUGE), ("fig2_slices", "num_images", -1), ("fig2_slices", "image", DIGITS),
    ("fig2_slices", "image", HUGE), ("fig2_slices", "image", -1), ("fig2_slices", "ns", []),
    ("fig2_slices", "resolution", 0), ("fig2_slices", "batch_size", -1),
    ("fig3_binary_search", "num_candidates", HUGE), ("fig3_binary_search", "num_candidates", -5),
    ("fig3_binary_search", "num_segments", HUGE), ("fig3_binary_search", "num_segments", DIGITS + 1),
    ("fig3_binary_search", "num_segments", 0), ("fig3_binary_search", "ns", []), ("fig3_binary_search", "repeats", 0),
    ("fig3_binary_search", "steps", 0), ("fig3_binary_search", "bins", 0),
    ("fig4_certification", "num_images", HUGE), ("fig4_certification", "num_images", -1),
    ("fig4_certification", "sweep_sigmas", []), ("fig4_certification", "accuracy_costs", []),
    ("fig4_certification", "sweep_n", 0), ("fig4_certification", "n0", 0), ("fig4_certification", "n", -1),
    ("fig5_attacks", "pool", -5), ("fig5_attacks", "pool", HUGE), ("fig5_attacks", "pool", DIGITS + 1),
    ("fig5_attacks", "num_images", HUGE), ("fig5_attacks", "num_images", 0), ("fig5_attacks", "sigmas", []),
    ("fig5_attacks", "ns", []), ("fig5_attacks", "randtrain_ns", []), ("fig5_attacks", "pas", []),
    ("fig5_attacks", "attacks", []), ("fig5_attacks", "budgets", []), ("fig5_attacks", "chunk", 0),
    ("fig5_attacks", "max_queries", 0), ("fig5_attacks", "certify_n", -1),
    ("normal_vectors", "num_candidates", HUGE), ("normal_vectors", "num_candidates", -1),
    ("normal_vectors", "num_images", HUGE), ("normal_vectors", "num_images", 0), ("normal_vectors", "ratios", []),
    ("normal_vectors", "probes", 0), ("normal_vectors", "hsja_queries", 0),
    ("adaptive_attacks", "pool", -5), ("adaptive_attacks", "pool", HUGE), ("adaptive_attacks", "num_images", HUGE),
    ("adaptive_attacks", "num_images", 0), ("adaptive_attacks", "calibration_images", HUGE),
    ("adaptive_attacks", "calibration_images", 0), ("adaptive_attacks", "sigmas", []), ("adaptive_attacks", "ns", []),
    ("adaptive_attacks", "attacks", []), ("adaptive_attacks", "chunk", 0),
]
#: Two parameters together, the second beyond what the first allows: (chapter, the first, the refused one).
BEYOND_THE_POOL = [
    ("fig1_adversarial_probability", {"num_candidates": 2, "num_images": 3}, "num_images"),
    ("fig2_slices", {"num_images": 3, "image": 3}, "image"),
    ("fig3_binary_search", {"num_candidates": 2, "num_segments": 3}, "num_segments"),
    ("normal_vectors", {"num_candidates": 2, "num_images": 3}, "num_images"),
    ("fig5_attacks", {"pool": 3, "num_images": 4}, "num_images"),
    ("adaptive_attacks", {"pool": 50, "calibration_images": 51}, "calibration_images"),
    ("adaptive_attacks", {"pool": 2, "num_images": 3}, "num_images"),
]


def refused(stem: str, values: dict, name: str) -> str:
    """The message of the :class:`rs_repro.pipeline.book.ChapterError` that ``values`` raise, checked to name ``name``
    with its value and what is accepted."""
    with pytest.raises(book.ChapterError) as err:
        book.check_chapter(stem, values)
    message = str(err.value)
    assert f"chapter {stem!r}: {name}={values[name]!r} is not accepted; expected " in message, message
    return message


@pytest.fixture
def fake_cuda(monkeypatch):
    """``fake_cuda(k)``: this machine has k CUDA devices, as torch says (0: none)."""
    def have(count: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)

    return have


def imagenet_folder(folder: Path, count: int) -> Path:
    """A flat ImageNet validation folder of ``count`` images with their labels (``val.txt``); the images are
    empty files, which the rules count and never decode."""
    folder.mkdir(parents=True)
    names = [f"ILSVRC2012_val_{k:08d}.JPEG" for k in range(1, count + 1)]
    for name in names:
        (folder / name).touch()
    (folder / "val.txt").write_text("".join(f"{name} {k % 1000}\n" for k, name in enumerate(names)))
    return folder


def state_dict_file(path: Path) -> str:
    """A file holding a state dict (a mapping of names to tensors), as the rules on weights require."""
    torch.save({"fc.weight": torch.zeros(2, 2), "fc.bias": torch.zeros(2)}, path)
    return str(path)


class RunsCode:
    """Unpickled, it would create the folder ``marker`` (a stand-in for any code a pickle can run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def bad_weights(kind: str, tmp_path: Path) -> str:
    """A weights path that no rule accepts: missing, a folder, garbage, code-running or of the wrong type."""
    path = tmp_path / f"{kind}.pth"
    if kind == "missing":
        return str(path)
    if kind == "folder":
        path.mkdir()
    elif kind == "garbage":
        path.write_bytes(b"not a torch file at all")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "runs-code":
        torch.save({"fc.weight": RunsCode(tmp_path / "ran")}, path)
    elif kind == "a-list":
        torch.save([torch.zeros(2)], path)
    elif kind == "no-tensors":
        torch.save({"fc.weight": 1.0, "arch": "resnet50"}, path)
    return str(path)


WEIGHTS_KINDS = ["missing", "folder", "garbage", "empty", "runs-code", "a-list", "no-tensors"]


# --------------------------------------------------------------------------------------------------
# the good profiles pass
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stem", STEMS)
@pytest.mark.parametrize("profile", ["smoke", "default"])
def test_the_smoke_and_default_profiles_pass_every_chapter(stem, profile):
    book.check_chapter(stem, book.resolve_device(book.profile_values(stem, profile)))


@pytest.mark.parametrize("stem", DATA_STEMS)
def test_the_paper_profile_passes_where_its_files_and_gpu_are(stem, tmp_path, fake_cuda):
    values = book.profile_values(stem, "paper")
    fake_cuda(1)
    values["data_dir"] = str(imagenet_folder(tmp_path / "val", 200))
    for name in [name for name in values if name.endswith("_weights") and values[name]]:
        values[name] = state_dict_file(tmp_path / f"{name}.pth")
    book.check_chapter(stem, values)
    # on this machine as it is, its local paths are refused: the weights, then the data folder
    paper = book.profile_values(stem, "paper")
    refused(stem, paper, "standard_weights")
    refused(stem, {**paper, **{name: values[name] for name in paper if name.endswith("_weights")}}, "data_dir")


# --------------------------------------------------------------------------------------------------
# empty grids, non-positive counts, rows the dataset or the pool does not have
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("stem", "name", "value"), BAD)
def test_a_bad_value_is_refused_naming_the_parameter_and_the_value(stem, name, value):
    refused(stem, {**book.profile_values(stem, "smoke"), name: value}, name)


@pytest.mark.parametrize(("stem", "change", "name"), BEYOND_THE_POOL)
def test_counts_beyond_the_pool_they_are_drawn_from_are_refused(stem, change, name):
    values = {**book.profile_values(stem, "smoke"), **change}
    message = refused(stem, values, name)
    assert str(values[name] - 1) in message  # the largest value accepted


def test_image_counts_are_bounded_by_the_test_split_and_say_its_size():
    values = {**book.profile_values("fig5_attacks", "smoke"), "pool": -5}
    message = refused("fig5_attacks", values, "pool")  # the pool, not the n of the subset draw
    assert f"from 0 to {DIGITS}" in message and "the whole test split" in message
    book.check_chapter("fig5_attacks", {**values, "pool": DIGITS, "num_images": DIGITS})  # the whole split: fine


def test_the_split_sizes_are_those_the_loader_gives(synthetic_fashion, synthetic_imagenet):
    assert data.count_test_images("digits") == len(data.load_dataset("digits", "test").y) == DIGITS
    assert data.count_test_images("fashion-mnist", synthetic_fashion) == len(
        data.load_dataset("fashion-mnist", "test", data_dir=synthetic_fashion).y) == 120
    root, _ = synthetic_imagenet
    assert data.count_test_images("imagenet", root) == 6
    assert data.count_test_images("imagenet-samples") == data.IMAGENET_SAMPLES
    with pytest.raises(ValueError, match="data_dir=None is not accepted for imagenet"):
        data.count_test_images("imagenet")


def test_a_fashion_data_dir_bounds_the_counts_by_its_own_files(synthetic_fashion):
    values = {**book.profile_values("fig4_certification", "smoke"), "dataset": "fashion-mnist",
              "data_dir": str(synthetic_fashion), "num_images": 120}
    book.check_chapter("fig4_certification", values)
    assert "from 0 to 120" in refused("fig4_certification", {**values, "num_images": 121}, "num_images")


# --------------------------------------------------------------------------------------------------
# data_dir: an existing folder, read alone; nothing installed for it
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stem", DATA_STEMS)
def test_a_data_dir_on_digits_is_refused_as_it_would_be_ignored(stem, tmp_path):
    smoke = book.profile_values(stem, "smoke")
    for folder in (tmp_path / "nowhere", tmp_path):  # missing or not, digits read no folder
        message = refused(stem, {**smoke, "data_dir": str(folder)}, "data_dir")
        assert "'' for dataset 'digits', which reads no folder" in message


@pytest.mark.parametrize("stem", DATA_STEMS)
def test_a_fashion_data_dir_that_does_not_exist_is_refused(stem, tmp_path):
    values = {**book.profile_values(stem, "smoke"), "dataset": "fashion-mnist", "data_dir": str(tmp_path / "nowhere")}
    assert "an existing folder" in refused(stem, values, "data_dir")


def test_a_fashion_data_dir_without_the_files_is_refused_not_replaced_by_debians(tmp_path, monkeypatch):
    debian = tmp_path / "debian"  # the Debian package's folder, with its files
    debian.mkdir()
    for prefix in ("train", "t10k"):
        write_idx(debian / f"{prefix}-images-idx3-ubyte.gz", np.zeros((3, 28, 28)))
        write_idx(debian / f"{prefix}-labels-idx1-ubyte.gz", np.arange(3))
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", debian)
    mine = tmp_path / "mine"
    mine.mkdir()
    values = {**book.profile_values("fig4_certification", "smoke"), "dataset": "fashion-mnist",
              "data_dir": str(mine), "num_images": 2}
    assert "t10k-labels-idx1-ubyte" in refused("fig4_certification", values, "data_dir")
    with pytest.raises(FileNotFoundError, match="read only when no data_dir is given"):
        data.load_dataset("fashion-mnist", "test", data_dir=mine)
    with pytest.raises(FileNotFoundError, match="is not an existing folder"):
        data.load_dataset("fashion-mnist", "test", data_dir=tmp_path / "nowhere")
    monkeypatch.setattr(paths, "BUILD", tmp_path / "build")  # without a data_dir, Debian's folder is read
    assert len(data.load_dataset("fashion-mnist", "test").y) == 3


def test_the_loader_refuses_a_folder_for_the_digits():
    with pytest.raises(ValueError, match="data_dir='/somewhere' is not accepted for digits"):
        data.load_dataset("digits", data_dir="/somewhere")
    assert len(data.load_dataset("digits", data_dir="").y) == DIGITS  # '' is no folder


class NoApt:
    """A ``run`` for :func:`rs_repro.pipeline.provision.ensure` that records the commands it was asked to run."""

    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def __call__(self, command) -> int:
        self.commands.append(list(command))
        return 0


@pytest.fixture
def as_root(monkeypatch, tmp_path) -> Path:
    """This user root, apt-get present, Debian's Fashion-MNIST folder empty: the package would be installed."""
    monkeypatch.setattr(provision.os, "geteuid", lambda: 0)
    monkeypatch.setattr(provision.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "debian")
    monkeypatch.setattr(paths, "BUILD", tmp_path / "build")
    return tmp_path


@pytest.mark.parametrize("where", ["nowhere", "empty"])
def test_provision_installs_nothing_for_a_data_dir(as_root, where):
    folder = as_root / where
    if where == "empty":
        folder.mkdir()
    apt = NoApt()
    with pytest.raises(provision.MissingData) as err:
        provision.ensure({"dataset": "fashion-mnist", "data_dir": str(folder)}, run=apt)
    assert f"data_dir={str(folder)!r}" in str(err.value)
    assert apt.commands == []  # no sudo probe, no apt-get


def test_provision_installs_the_named_datasets_package_only_without_a_data_dir(as_root):
    apt = NoApt()
    with pytest.raises(provision.MissingData, match="still not found"):  # the fake apt-get writes no file
        provision.ensure({"dataset": "fashion-mnist", "data_dir": ""}, run=apt)
    assert apt.commands == [["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "dataset-fashion-mnist"]]
    for dataset in ("digits", "mnist", "cifar10", "imagenet-samples"):  # no package of theirs: nothing to install
        apt = NoApt()
        assert provision.ensure({"dataset": dataset, "data_dir": ""}, run=apt) is None
        assert apt.commands == []


def test_provision_accepts_a_data_dir_holding_the_files(as_root, synthetic_fashion):
    apt = NoApt()
    assert provision.ensure({"dataset": "fashion-mnist", "data_dir": str(synthetic_fashion)}, run=apt) is None
    assert apt.commands == []


def test_the_cli_refuses_a_missing_data_dir_before_anything_runs(as_root, monkeypatch, capsys):
    apt = NoApt()
    monkeypatch.setattr(provision, "_run", apt)
    monkeypatch.setattr(paths, "RUNS", as_root / "runs")
    nowhere = str(as_root / "nowhere")
    for profile in ("fashion", "smoke"):  # fashion: provision refuses it; digits: the chapter's rules
        assert cli.main(["run", "fig4_certification", "--profile", profile, "-p", "data_dir", nowhere,
                         "--no-build"]) == 2
        assert f"data_dir={nowhere!r}" in capsys.readouterr().err
    assert apt.commands == [] and not (as_root / "runs").exists()


# --------------------------------------------------------------------------------------------------
# device: one this machine has
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stem", DATA_STEMS)
def test_cuda_without_cuda_is_refused(stem, fake_cuda):
    fake_cuda(0)
    smoke = book.profile_values(stem, "smoke")
    for device in ("cuda", "cuda:0"):
        assert "no CUDA device" in refused(stem, {**smoke, "device": device}, "device")
    for device in ("cpu", "auto"):  # auto is resolved by the runner before the rules run
        book.check_chapter(stem, {**smoke, "device": device})


@pytest.mark.parametrize("stem", DATA_STEMS)
def test_a_cuda_index_beyond_the_devices_is_refused(stem, fake_cuda):
    fake_cuda(2)
    smoke = book.profile_values(stem, "smoke")
    for device in ("cuda", "cuda:0", "cuda:1"):
        book.check_chapter(stem, {**smoke, "device": device})
    assert "k < 2" in refused(stem, {**smoke, "device": "cuda:2"}, "device")
    refused(stem, {**smoke, "device": "gpu"}, "device")


def test_device_rule_says_what_this_machine_has(fake_cuda):
    fake_cuda(0)
    assert checks.device_rule("cpu")[0] and checks.device_rule("auto")[0]
    assert checks.device_rule("cuda") == (False, ("'auto' or 'cpu': this machine has no CUDA device "
                                                  "(torch.cuda.is_available() is False)"))
    fake_cuda(1)
    assert checks.device_rule("cuda")[0] and checks.device_rule("cuda:0")[0] and not checks.device_rule("cuda:1")[0]


# --------------------------------------------------------------------------------------------------
# weights: a file that torch.load(weights_only=True) reads as a state dict, only where nothing is trained here
# --------------------------------------------------------------------------------------------------

#: (chapter, weights parameter) of every checkpoint a chapter can name.
WEIGHTS = [(stem, name) for stem in DATA_STEMS for name in parameters.parameters(stem) if name.endswith("_weights")]


@pytest.mark.parametrize(("stem", "name"), WEIGHTS)
@pytest.mark.parametrize("kind", WEIGHTS_KINDS)
def test_weights_that_cannot_be_loaded_are_refused(stem, name, kind, tmp_path):
    values = {**book.profile_values(stem, "imagenet"), "device": "cpu"}
    book.check_chapter(stem, values)
    values[name] = bad_weights(kind, tmp_path)
    refused(stem, values, name)
    assert not (tmp_path / "ran").exists()  # the pickle's code did not run


@pytest.mark.parametrize(("stem", "name"), WEIGHTS)
def test_a_state_dict_file_passes_the_rules(stem, name, tmp_path):
    values = {**book.profile_values(stem, "imagenet"), "device": "cpu", name: state_dict_file(tmp_path / "w.pth")}
    book.check_chapter(stem, values)


@pytest.mark.parametrize(("stem", "name"), WEIGHTS)
def test_weights_on_digits_are_refused_as_the_models_are_trained_here(stem, name, tmp_path):
    values = {**book.profile_values(stem, "smoke"), name: state_dict_file(tmp_path / "w.pth")}
    assert "trained here" in refused(stem, values, name)


@pytest.mark.parametrize(("stem", "name"), [(stem, name) for stem, name in WEIGHTS if name != "standard_weights"])
def test_only_the_standard_model_is_a_pretrained_one(stem, name):
    values = {**book.profile_values(stem, "imagenet"), "device": "cpu", name: "pretrained:efficientnet-lite0"}
    refused(stem, values, name)


def test_weights_problem_names_what_is_wrong(tmp_path):
    assert models.weights_problem(state_dict_file(tmp_path / "good.pth")) is None
    assert models.weights_problem(torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "c.pth")
                                  or tmp_path / "c.pth") is None  # a checkpoint dict holding one
    expected = {"missing": "does not exist", "folder": "is not a file", "garbage": "cannot be read with torch.load",
                "empty": "torch", "runs-code": "weights_only=True",
                "a-list": "holds a list, not a state dict", "no-tensors": "holds no state dict"}
    for kind, words in expected.items():
        problem = models.weights_problem(bad_weights(kind, tmp_path))
        assert problem is not None and words in problem, (kind, problem)
    assert not (tmp_path / "ran").exists()
