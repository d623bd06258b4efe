"""rs_repro.pipeline.provision: a profile's dataset installed from Debian's package when missing, else a clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write_idx

from rs_repro import data
from rs_repro.pipeline import book, cli, provision


class FakeApt:
    """Records the commands :func:`provision.ensure` runs; ``apt-get install`` writes the idx files into
    ``folder`` (where the patched Debian package would put them) unless ``fail`` names the command."""

    def __init__(self, folder: Path, fail: str = "", sudo: bool = True) -> None:
        self.folder, self.fail, self.sudo, self.commands = folder, fail, sudo, []

    def __call__(self, command):
        self.commands.append(list(command))
        if command[:3] == ["sudo", "-n", "true"]:
            return 0 if self.sudo else 1
        if self.fail and self.fail in command:
            return 100
        if "install" in command:
            self.folder.mkdir(parents=True)
            for prefix, count in (("train", 3), ("t10k", 2)):
                write_idx(self.folder / f"{prefix}-images-idx3-ubyte.gz", np.zeros((count, 28, 28)))
                write_idx(self.folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(count))
        return 0


@pytest.fixture
def debian(monkeypatch, tmp_path) -> Path:
    """The Debian package's folder moved to an empty temporary place, apt-get present, this user root."""
    folder = tmp_path / "debian" / "fashion-mnist"
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", folder)
    monkeypatch.setattr(provision.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(provision.os, "geteuid", lambda: 0)
    return folder


def test_a_dataset_without_a_package_needs_nothing(debian):
    apt = FakeApt(debian)
    assert provision.ensure({"dataset": "digits", "data_dir": ""}, run=apt) is None
    assert provision.ensure({"sigmas": [0.1]}, run=apt) is None  # the theory chapter: no dataset
    assert apt.commands == []


def test_files_in_data_dir_install_nothing(debian, tmp_path):
    FakeApt(tmp_path / "mine")(["apt-get", "install", "-y", "-q", "dataset-fashion-mnist"])
    apt = FakeApt(debian)
    assert provision.ensure({"dataset": "fashion-mnist", "data_dir": str(tmp_path / "mine")}, run=apt) is None
    assert apt.commands == [] and not debian.exists()


def test_root_installs_the_package(debian):
    apt = FakeApt(debian)
    assert provision.ensure({"dataset": "fashion-mnist", "data_dir": ""}, run=apt) == "dataset-fashion-mnist"
    assert apt.commands == [["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "dataset-fashion-mnist"]]
    assert len(data.load_dataset("fashion-mnist", "test").y) == 2


def test_passwordless_sudo_installs_the_package(debian, monkeypatch):
    monkeypatch.setattr(provision.os, "geteuid", lambda: 1000)
    apt = FakeApt(debian)
    assert provision.ensure({"dataset": "fashion-mnist", "data_dir": ""}, run=apt) == "dataset-fashion-mnist"
    assert apt.commands[0] == ["sudo", "-n", "true"]
    assert apt.commands[-1] == ["sudo", "-n", "apt-get", "install", "-y", "-q", "dataset-fashion-mnist"]


@pytest.mark.parametrize(("sudo", "apt_get", "fail", "why"), [
    (False, True, "", "this user can install no package"),
    (True, False, "", "this machine has no apt-get"),
    (True, True, "install", "apt-get could not install dataset-fashion-mnist"),
    (True, True, "update", "apt-get could not install dataset-fashion-mnist"),
])
def test_no_way_to_install_names_the_package_and_data_dir(debian, monkeypatch, sudo, apt_get, fail, why):
    monkeypatch.setattr(provision.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(provision.shutil, "which", lambda name: None if name == "apt-get" and not apt_get
                        else f"/usr/bin/{name}")
    with pytest.raises(provision.MissingData) as err:
        provision.ensure({"dataset": "fashion-mnist", "data_dir": ""}, run=FakeApt(debian, fail, sudo))
    message = str(err.value)
    assert why in message
    assert "sudo apt-get install dataset-fashion-mnist" in message and "data_dir (now '')" in message
    assert not debian.exists()


def test_cli_reports_missing_data_as_an_error(debian, monkeypatch, capsys):
    monkeypatch.setattr(provision.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(provision, "_run", FakeApt(debian, sudo=False))
    assert cli.main(["run", "fig4_certification", "--profile", "fashion", "--no-build"]) == 2
    assert "dataset-fashion-mnist" in capsys.readouterr().err


def test_cli_book_looks_for_each_dataset_of_the_profile_once(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(provision, "ensure", lambda values: calls.append(dict(values)))
    monkeypatch.setattr(book, "make_book", lambda *args, **kwargs: tmp_path / "index.html")
    assert cli.main(["book", "--profile", "fashion"]) == 0
    assert calls == [{"dataset": "fashion-mnist", "data_dir": ""}, {"dataset": None, "data_dir": None}]
