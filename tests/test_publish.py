"""rs_repro.pipeline.publish: a profile computed on one machine, exported, imported on another, with its provenance."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import nbformat
import pytest
from conftest import in_run

from rs_repro.pipeline import cli, context, paths, provenance, publish
from rs_repro.report import measurements
from rs_repro.report.measurements import BisectionSpread, ThresholdCheck

SPREAD = BisectionSpread("imagenet-samples", 0, 0.05, {10: 0.3, 50: 0.2}, {10: [0.3], 50: [0.2]})


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A repository root and build folder of their own (pages in ``book/chapters``, figures in ``figures``)."""
    def at(name: str) -> Path:
        root = tmp_path / name
        monkeypatch.setattr(paths, "ROOT", root)
        monkeypatch.setattr(paths, "BUILD", root / "build")
        monkeypatch.setattr(paths, "CHAPTERS", root / "book" / "chapters")
        return root
    return at


def _page(stem: str, profile: str, parameters: dict) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["rs_repro"] = {"profile": profile, "parameters": parameters, "commit": "abc"}
    paths.CHAPTERS.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, paths.CHAPTERS / f"{stem}.ipynb")


def _gpu_run(monkeypatch) -> None:
    """What a GPU machine's ``make book PROFILE=imagenet`` leaves: records, pages, figures, Fig. 4's logs."""
    monkeypatch.setattr(provenance, "machine", lambda: {"host": "gpu-1", "accelerator": "NVIDIA H200 (x1)"})
    in_run(monkeypatch, profile="imagenet")
    measurements.record("fig3_binary_search", SPREAD)
    measurements.record("theory", ThresholdCheck(0.8, {5: 0.8}))
    _page("fig3_binary_search", "imagenet", {"figures_dir": "figures", "dataset": "imagenet-samples"})
    _page("fig4_certification", "imagenet", {"figures_dir": "figures", "results_dir": "build/results",
                                             "dataset": "imagenet-samples"})
    _page("fig2_slices", "default", {"figures_dir": "figures"})  # another profile's page: not exported
    (paths.ROOT / "figures").mkdir(parents=True)
    for name in ("fig3_binary_search.png", "fig3_binary_search.pdf", "fig2_slices.png"):
        (paths.ROOT / "figures" / name).write_bytes(name.encode())
    logs = paths.BUILD / "results" / "fig4_certification"
    logs.mkdir(parents=True)
    (logs / "imagenet-samples-standard-sigma0.05.tsv").write_text("idx\tlabel\n0\t1\n")
    (logs / "digits-standard-sigma0.35.tsv").write_text("idx\tlabel\n")  # the default profile's: not exported


def test_export_then_import_brings_back_the_profile_with_its_provenance(machine, monkeypatch, tmp_path):
    machine("gpu")
    _gpu_run(monkeypatch)
    archive = publish.export("imagenet", tmp_path / "imagenet.tar.gz")
    with tarfile.open(archive) as tar:
        names = sorted(tar.getnames())
    assert names == ["figures/fig3_binary_search.pdf", "figures/fig3_binary_search.png", publish.MANIFEST,
                     "measurements/fig3_binary_search.json", "measurements/theory.json",
                     "pages/fig3_binary_search.ipynb", "pages/fig4_certification.ipynb",
                     "tables/fig4_certification/imagenet-samples-standard-sigma0.05.tsv"]
    monkeypatch.delenv(context.CONTEXT_ENV, raising=False)
    machine("laptop")  # another machine: nothing recorded under imagenet
    assert measurements.load("fig3_binary_search", "imagenet") is None and publish.imported("imagenet") is None
    manifest = publish.import_archive(archive)
    assert manifest["profile"] == "imagenet" and manifest["exported"]["machine"]["host"] == "gpu-1"
    assert measurements.load("fig3_binary_search", "imagenet") == SPREAD
    assert measurements.recorded_profiles() == ["imagenet"]
    stamp = measurements.provenance("fig3_binary_search", "imagenet")
    assert stamp["machine"]["accelerator"] == "NVIDIA H200 (x1)" and set(stamp) == {"commit", "dirty", "machine",
                                                                                      "versions", "time"}
    folder = publish.published_dir("imagenet")
    assert (folder / "pages" / "fig4_certification.ipynb").exists()
    assert (folder / "figures" / "fig3_binary_search.png").read_bytes() == b"fig3_binary_search.png"
    assert publish.imported("imagenet")["archive"] == "imagenet.tar.gz"
    publish.import_archive(archive)  # a second import replaces the first without asking


def test_import_refuses_to_overwrite_what_this_machine_computed(machine, monkeypatch, tmp_path):
    machine("gpu")
    _gpu_run(monkeypatch)
    archive = publish.export("imagenet", tmp_path / "imagenet.tar.gz")
    with pytest.raises(ValueError, match=r"computed on this machine too \(fig3_binary_search, theory\).*replace"):
        publish.import_archive(archive)
    assert publish.import_archive(archive, replace=True)["profile"] == "imagenet"


def test_export_of_a_profile_never_run_names_it(machine):
    machine("empty")
    with pytest.raises(ValueError, match=r"profile='imagenet' is not accepted.*make book PROFILE=imagenet"):
        publish.export("imagenet", paths.ROOT / "x.tar.gz")


def _rewrite(archive: Path, edit) -> Path:
    """A copy of ``archive`` whose members go through ``edit(name, data) -> (name, data) or None``."""
    out = archive.with_name("edited.tar.gz")
    with tarfile.open(archive) as src, tarfile.open(out, "w:gz") as dst:
        for info in src.getmembers():
            kept = edit(info.name, src.extractfile(info).read())
            if kept is not None:
                new = tarfile.TarInfo(kept[0])
                new.size = len(kept[1])
                dst.addfile(new, io.BytesIO(kept[1]))
    return out


@pytest.mark.parametrize(("edit", "match"), [
    (lambda n, d: (n, d + b" ") if n.startswith("pages/") else (n, d), "does not match its SHA-256"),
    (lambda n, d: None if n.startswith("figures/") else (n, d), "differ from its manifest"),
    (lambda n, d: None if n == publish.MANIFEST else (n, d), "has no manifest.json"),
    (lambda n, d: ("../evil", d) if n.startswith("tables/") else (n, d), "not a plain relative file"),
])
def test_a_damaged_archive_is_refused_before_anything_is_written(machine, monkeypatch, tmp_path, edit, match):
    machine("gpu")
    _gpu_run(monkeypatch)
    archive = _rewrite(publish.export("imagenet", tmp_path / "imagenet.tar.gz"), edit)
    monkeypatch.delenv(context.CONTEXT_ENV, raising=False)
    machine("laptop")
    with pytest.raises(ValueError, match=match):
        publish.import_archive(archive)
    assert not paths.BUILD.exists()


def test_a_record_of_another_shape_is_refused(machine, monkeypatch, tmp_path):
    machine("gpu")
    _gpu_run(monkeypatch)

    def older(name, data):
        if name != "measurements/theory.json":
            return name, data
        payload = json.loads(data)
        payload["values"] = {"pa": 0.8}
        return name, json.dumps(payload).encode()

    def manifest_too(name, data):  # keep the manifest consistent so the record itself is what fails
        if name == publish.MANIFEST:
            manifest = json.loads(data)
            edited = older("measurements/theory.json", theory)[1]
            manifest["files"]["measurements/theory.json"] = {"sha256": publish._sha256(edited), "size": len(edited)}
            return name, json.dumps(manifest).encode()
        return older(name, data)

    archive = publish.export("imagenet", tmp_path / "imagenet.tar.gz")
    with tarfile.open(archive) as tar:
        theory = tar.extractfile("measurements/theory.json").read()
    edited = _rewrite(archive, manifest_too)
    monkeypatch.delenv(context.CONTEXT_ENV, raising=False)
    machine("laptop")
    with pytest.raises(ValueError, match="theory measurements has fields"):
        publish.import_archive(edited)
    with pytest.raises(ValueError, match="expected a .tar.gz written by rs-repro export"):
        publish.import_archive(tmp_path / "imagenet.tar.gz.missing")


def test_cli_export_and_import(machine, monkeypatch, tmp_path, capsys):
    machine("gpu")
    _gpu_run(monkeypatch)
    archive = tmp_path / "out" / "imagenet.tar.gz"
    assert cli.main(["export", "--profile", "imagenet", str(archive)]) == 0
    monkeypatch.delenv(context.CONTEXT_ENV, raising=False)
    machine("laptop")
    assert cli.main(["import", str(archive)]) == 0
    out = capsys.readouterr().out
    assert "imagenet" in out and "gpu-1" in out and "make chapter CH=claims" in out
    assert cli.main(["import", str(tmp_path / "nothing.tar.gz")]) == 2
    assert "rs-repro export" in capsys.readouterr().err
