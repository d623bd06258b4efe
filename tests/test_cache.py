"""The content-addressed cache: entries, and keys that change exactly when what a unit reads changes."""

from __future__ import annotations

import importlib
import inspect
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import in_run

from rs_repro import models, seeds
from rs_repro.experiments import fig5_attacks
from rs_repro.pipeline import book, cache, engine, paths


def test_entries_round_trip_exactly_and_count_only_when_complete(tmp_path, monkeypatch):
    table = pd.DataFrame({"x": [0.1, 1 / 3, 448 / 450], "y": [1, 2, 3]})
    log = tmp_path / "log.jsonl"
    in_run(monkeypatch, run_log=str(log))
    entry = tmp_path / "t" / "unit-0123.csv"
    assert cache.read_entry("t", "unit", "0123", entry) is None
    entry.parent.mkdir()
    table.to_csv(entry, index=False)  # a table without its manifest: an interrupted store, not an entry
    assert cache.read_entry("t", "unit", "0123", entry) is None
    cache.store(entry, table, {"stem": "t", "name": "unit", "key": "0123"})
    assert cache.read_entry("t", "unit", "0123", entry).equals(table)  # floats round-trip exactly
    assert [json.loads(line)["hit"] for line in log.read_text().splitlines()] == [True]
    assert not list(tmp_path.rglob("*.tmp"))


def test_derived_seeds_are_stable_and_distinct():
    assert seeds.derive_seed(0, "image", 3) == seeds.derive_seed(0, "image", 3)
    values = {seeds.derive_seed(s, "image", i) for s in range(3) for i in range(100)}
    assert len(values) == 300 and all(0 <= v < seeds.SEED_SPACE for v in values)
    with pytest.raises(ValueError, match="seed must be an int"):
        seeds.derive_seed(1.5)


def test_atomic_write_keeps_the_previous_file_when_writing_fails(tmp_path):
    target = tmp_path / "table.csv"
    paths.atomic_write(target, lambda tmp: tmp.write_text("first\n"))

    def fails(tmp):
        tmp.write_text("half a fi")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        paths.atomic_write(target, fails)
    assert target.read_text() == "first\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]  # no temporary file left behind
    assert paths.atomic_write(target, lambda tmp: tmp.write_text("second\n")) == target
    assert target.read_text() == "second\n"


CHAPTERS = ["theory", "fig1_adversarial_probability", "fig2_slices", "fig3_binary_search", "fig4_certification",
            "fig5_attacks"]


@pytest.fixture
def scratch_package(tmp_path, monkeypatch):
    """A copy of the package that the digests read, to edit freely."""
    copy = tmp_path / "rs_repro"
    shutil.copytree(paths.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(paths, "PACKAGE", copy)
    return copy


def _digests() -> dict[str, str]:
    found = {stem: cache.code_digest([f"rs_repro.experiments.{stem}"]) for stem in CHAPTERS}
    return {**found, "models": cache.code_digest(models.TRAINING_CODE)}


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path.name} no longer holds {old!r}"
    path.write_text(text.replace(old, new, 1))


def _unit_keys(values: dict[str, dict]) -> dict[str, str]:
    """Every unit key of every chapter but the claims, for the given parameter values per chapter (Fig. 4's
    second stage at fixed noise levels)."""
    keys = {}
    for stem in CHAPTERS:
        module = importlib.import_module(f"rs_repro.experiments.{stem}")
        units = module.selection_units(values[stem]) + module.certification_units(values[stem], (0.25, 0.5)) \
            if stem == "fig4_certification" else module.units(values[stem])
        keys.update({f"{stem}/{u.id}": u.key() for u in units})
    return keys


@pytest.fixture(scope="module")
def smoke_values() -> dict[str, dict]:
    return {stem: book.profile_values(stem, "smoke") for stem in CHAPTERS}


def test_presentation_docstrings_plots_and_prose_recompute_no_unit(scratch_package, smoke_values, tmp_path,
                                                                   monkeypatch):
    before, keys = _digests(), _unit_keys(smoke_values)
    for module in ("report/plots.py", "report/paper.py", "report/prose.py", "pipeline/progress.py",
                   "report/measurements.py", "pipeline/book.py", "experiments/claims.py"):
        (scratch_package / module).write_text((scratch_package / module).read_text() + "\nEDITED = 1\n")
    _edit(scratch_package / "smoothing.py", '"""', '"""An edited docstring. ')
    _edit(scratch_package / "attacks" / "hsja.py", "\n", "\n# an edited comment\n")
    source = inspect.getsource(fig5_attacks.plot_scatter)
    _edit(scratch_package / "experiments" / "fig5_attacks.py", source, source.replace("alpha=0.8", "alpha=0.5"))
    # the prose of every notebook, read from a scratch copy of the sources
    notebooks = tmp_path / "notebooks"
    shutil.copytree(paths.NOTEBOOKS, notebooks)
    for page in notebooks.glob("*.md"):
        page.write_text(page.read_text() + "\nAn edited closing paragraph of prose.\n")
    monkeypatch.setattr(paths, "NOTEBOOKS", notebooks)
    values = {stem: book.profile_values(stem, "smoke") for stem in CHAPTERS}
    assert values == smoke_values
    assert _digests() == before
    assert _unit_keys(values) == keys  # zero units to recompute


def test_a_unit_is_a_hit_after_a_presentation_edit_and_a_miss_after_a_code_edit(scratch_package, tmp_path,
                                                                              monkeypatch):
    log = tmp_path / "log.jsonl"
    in_run(monkeypatch, run_log=str(log))
    (unit,) = fig5_attacks.accuracy_units(dataset="digits", data_dir=None, targets=[fig5_attacks.Target("standard")],
                                          models={"standard": models.model_spec()}, seed=0)

    def computed() -> list[bool]:
        engine.run("fig5_attacks", [unit], root=tmp_path / "cache")
        return [not json.loads(line)["hit"] for line in log.read_text().splitlines()]

    assert computed() == [True]
    (scratch_package / "report" / "plots.py").write_text((scratch_package / "report" / "plots.py").read_text() + "\nEDITED = 1\n")
    assert computed() == [True, False]
    (scratch_package / "seeds.py").write_text((scratch_package / "seeds.py").read_text() + "\nEDITED = 1\n")
    assert computed() == [True, False, True]


def test_a_parameter_recomputes_exactly_the_units_that_receive_it(smoke_values):
    keys = _unit_keys(smoke_values)
    for stem, name, value in (("fig1_adversarial_probability", "batch_size", 77), ("fig2_slices", "batch_size", 77),
                              ("fig4_certification", "batch_size", 77), ("fig5_attacks", "verify_repeats", 3),
                              ("fig5_attacks", "votes", 3),
                              ("fig3_binary_search", "repeats", 3)):
        changed_values = {**smoke_values, stem: {**smoke_values[stem], name: value}}
        after = _unit_keys(changed_values)
        assert sorted(after) == sorted(keys)
        changed = {k for k in keys if keys[k] != after[k]}
        module = importlib.import_module(f"rs_repro.experiments.{stem}")
        units = module.selection_units(changed_values[stem]) + module.certification_units(changed_values[stem],
                                                                                            (0.25, 0.5)) \
            if stem == "fig4_certification" else module.units(changed_values[stem])
        receive = {f"{stem}/{u.id}" for u in units if u.arguments.get(name) == value}
        assert receive and changed == receive, (stem, name)


def _attack_keys() -> dict[str, str]:
    units = fig5_attacks.attack_units(dataset="digits", data_dir=None, index=[0, 1], targets=[fig5_attacks.Target("standard")],
                                      attacks=sorted(fig5_attacks.ATTACKS), models={"standard": models.model_spec()},
                                      max_queries=10, budgets=[10], chunk=2, verify_repeats=1, votes=1, confirm_votes=4,
                                      alpha=0.05, seed=0)
    return {unit.arguments["attack"]: unit.key() for unit in units}


def test_code_edits_change_the_keys_of_the_computations_that_read_it(scratch_package):
    before, attack_keys = _digests(), _attack_keys()
    (scratch_package / "attacks" / "hsja.py").write_text((scratch_package / "attacks" / "hsja.py").read_text()
                                                          + "\nEDITED = 1\n")
    assert _digests() == before  # no chapter module imports hsja: only the HSJA units read it
    after = _attack_keys()
    assert [a for a in attack_keys if attack_keys[a] != after[a]] == ["HSJA"]
    (scratch_package / "attacks" / "oracle.py").write_text((scratch_package / "attacks" / "oracle.py").read_text()
                                                            + "\nEDITED = 1\n")
    assert all(_attack_keys()[a] != after[a] for a in after)  # every attack queries through the oracle
    after = _digests()
    changed = sorted(k for k in before if before[k] != after[k])
    # smoothing does not import the attacks: only the chapters that query an oracle read it
    assert changed == sorted(["fig1_adversarial_probability", "fig3_binary_search", "fig5_attacks"])
    (scratch_package / "smoothing.py").write_text((scratch_package / "smoothing.py").read_text() + "\nEDITED = 1\n")
    assert sorted(k for k in before if _digests()[k] != after[k]) == sorted(set(CHAPTERS) - {"theory"})
    (scratch_package / "data.py").write_text((scratch_package / "data.py").read_text() + "\nEDITED = 1\n")
    assert cache.code_digest(models.TRAINING_CODE) != after["models"]


def test_code_digest_names_what_it_cannot_find():
    with pytest.raises(ValueError, match="'rs_repro.nowhere' is no module"):
        cache.code_digest(["rs_repro.nowhere"])
