"""The content-addressed cache: entries, and keys that change exactly when what a unit reads changes."""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import in_run, plan_units

from rs_repro import models, seeds
from rs_repro.pipeline import cache, engine, parameters, paths


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


@pytest.fixture
def scratch_package(tmp_path, monkeypatch):
    """A copy of the package that the digests read, to edit freely."""
    copy = tmp_path / "rs_repro"
    shutil.copytree(paths.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(paths, "PACKAGE", copy)
    return copy


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path.name} no longer holds {old!r}"
    path.write_text(text.replace(old, new, 1))


def _append(path: Path) -> None:
    path.write_text(path.read_text() + "\nEDITED = 1\n")


def _unit_keys(smoke_tables, values: dict[str, dict] | None = None) -> dict[str, str]:
    """Every unit key of every chapter with a compute half, for the smoke values or ``values`` per chapter (the
    later steps of a plan worked out from the smoke tables)."""
    return {f"{stem}/{u.id}": u.key() for stem, (smoke, tables) in smoke_tables.items()
            for u in plan_units(stem, (values or {}).get(stem, smoke), tables)}


def test_presentation_docstrings_and_prose_recompute_no_unit(scratch_package, smoke_tables, tmp_path, monkeypatch):
    keys, trained = _unit_keys(smoke_tables), cache.code_digest(models.TRAINING_CODE)
    edited = [*scratch_package.glob("report/*.py"), *scratch_package.glob("claims/*.py"),
              *scratch_package.glob("chapters/*/page.py"), *scratch_package.glob("pipeline/*.py")]
    assert len([p for p in edited if p.name == "page.py"]) == len(smoke_tables)
    for path in edited:
        _append(path)
    _edit(scratch_package / "smoothing.py", '"""', '"""An edited docstring. ')
    _edit(scratch_package / "attacks" / "hsja.py", "\n", "\n# an edited comment\n")
    # the prose of every notebook, read from a scratch copy of the sources
    notebooks = tmp_path / "notebooks"
    shutil.copytree(paths.NOTEBOOKS, notebooks)
    for page in notebooks.glob("*.md"):
        page.write_text(page.read_text() + "\nAn edited closing paragraph of prose.\n")
    monkeypatch.setattr(paths, "NOTEBOOKS", notebooks)
    values = {stem: parameters.resolve_device(parameters.profile_values(stem, "smoke")) for stem in smoke_tables}
    assert values == {stem: smoke for stem, (smoke, _) in smoke_tables.items()}
    assert cache.code_digest(models.TRAINING_CODE) == trained
    assert _unit_keys(smoke_tables, values) == keys  # zero units to recompute


def test_a_unit_is_a_hit_after_a_presentation_edit_and_a_miss_after_a_code_edit(scratch_package, tmp_path,
                                                                              monkeypatch):
    log = tmp_path / "log.jsonl"
    in_run(monkeypatch, run_log=str(log))
    radius = importlib.import_module("rs_repro.chapters.theory.compute").plan(
        parameters.profile_values("theory", "smoke"))[0].units({})[0]

    def computed() -> list[bool]:
        engine.run("theory", [radius], root=tmp_path / "cache")
        return [not json.loads(line)["hit"] for line in log.read_text().splitlines()]

    assert computed() == [True]
    _append(scratch_package / "report" / "plots.py")
    _append(scratch_package / "chapters" / "theory" / "page.py")
    assert computed() == [True, False]
    _append(scratch_package / "theory.py")
    assert computed() == [True, False, True]


def test_a_parameter_recomputes_exactly_the_units_that_receive_it(smoke_tables):
    keys = _unit_keys(smoke_tables)
    for stem, name, value in (("fig1_adversarial_probability", "batch_size", 77), ("fig2_slices", "batch_size", 77),
                              ("fig4_certification", "batch_size", 77), ("fig5_attacks", "verify_repeats", 3),
                              ("fig5_attacks", "votes", 3), ("fig3_binary_search", "repeats", 3)):
        smoke, tables = smoke_tables[stem]
        after = _unit_keys(smoke_tables, {stem: {**smoke, name: value}})
        assert sorted(after) == sorted(keys)
        changed = {k for k in keys if keys[k] != after[k]}
        receive = {f"{stem}/{u.id}" for u in plan_units(stem, {**smoke, name: value}, tables)
                   if u.arguments.get(name) == value}
        assert receive and changed == receive, (stem, name)


def test_code_edits_change_the_keys_of_the_computations_that_read_it(scratch_package, smoke_tables):
    keys = _unit_keys(smoke_tables)
    _append(scratch_package / "attacks" / "hsja.py")
    after = _unit_keys(smoke_tables)
    changed = {k for k in keys if keys[k] != after[k]}
    attacks = {f"fig5_attacks/{u.id}": u.arguments["attack"]
               for u in plan_units("fig5_attacks", *smoke_tables["fig5_attacks"]) if "attack" in u.arguments}
    assert {k for k, attack in attacks.items() if attack == "HSJA"} == {k for k in changed if k in attacks}
    assert not any(k.startswith(("theory/", "fig1_", "fig2_", "fig3_", "fig4_")) for k in changed)
    _append(scratch_package / "attacks" / "oracle.py")
    again = _unit_keys(smoke_tables)
    assert all(again[k] != after[k] for k in attacks)  # every attack queries through the oracle
    assert all(again[k] == after[k] for k in again if k.startswith("theory/"))  # the theory queries no oracle
    _append(scratch_package / "smoothing.py")
    trained = cache.code_digest(models.TRAINING_CODE)
    assert all(_unit_keys(smoke_tables)[k] != again[k] for k in again if k.startswith("fig5_attacks/attack-"))
    _append(scratch_package / "data.py")
    assert cache.code_digest(models.TRAINING_CODE) != trained


def test_code_digest_names_what_it_cannot_find():
    with pytest.raises(ValueError, match="'rs_repro.nowhere' is no module"):
        cache.code_digest(["rs_repro.nowhere"])
