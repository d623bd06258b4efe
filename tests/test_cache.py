"""The content-addressed cache: hits, keys, atomic entries, and per-unit resume after an interruption."""

from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from rs_repro import cache, models, paths, seeds
from rs_repro.experiments import fig5_attacks

#: The code the tables of these tests are computed by (they are not a chapter's).
CODE = ["rs_repro.seeds"]


def test_cache_hits_and_keys(tmp_path, monkeypatch):
    calls = []
    table = pd.DataFrame({"x": [0.1, 1 / 3, 448 / 450], "y": [1, 2, 3]})

    def compute():
        calls.append(1)
        return table.copy()

    log = tmp_path / "log.jsonl"
    monkeypatch.setenv(cache.RUN_LOG_ENV, str(log))
    first = cache.cached("t", "table", {"a": 1}, compute, code=CODE, root=tmp_path)
    again = cache.cached("t", "table", {"a": 1}, compute, code=CODE, root=tmp_path)
    other = cache.cached("t", "table", {"a": 2}, compute, code=CODE, root=tmp_path)
    assert len(calls) == 2
    assert again.equals(first) and other.equals(first) and again.equals(table)  # floats round-trip exactly
    assert [json.loads(line)["hit"] for line in log.read_text().splitlines()] == [False, True, False]
    cache.cached("t", "table", {"a": 1}, compute, code=CODE, root=tmp_path, use_cache=False)
    assert len(calls) == 3
    assert not list(tmp_path.rglob("*.tmp"))


def _noisy_rows(units, calls):
    """One row per unit from the unit's own generator, as the chapters compute per image."""
    calls.extend(units)
    return pd.DataFrame([{"unit": u, "value": torch.randn(3, generator=seeds.generator(7, "u", u)).sum().item()}
                         for u in units])


def test_cached_rows_resume_after_interruption_gives_the_same_table(tmp_path):
    units = [5, 3, 9, 1, 7]
    reference = cache.cached_rows("t", "rows", {"s": 1}, units, lambda b: _noisy_rows(b, []),
                                  chunk=2, code=CODE, root=tmp_path / "a")
    calls: list[int] = []

    def flaky(block):
        if 1 in block:
            raise KeyboardInterrupt  # interrupted in the middle of the run
        return _noisy_rows(block, calls)

    with pytest.raises(KeyboardInterrupt):
        cache.cached_rows("t", "rows", {"s": 1}, units, flaky, chunk=1, code=CODE, root=tmp_path / "b")
    assert calls == [5, 3, 9]
    calls.clear()
    resumed = cache.cached_rows("t", "rows", {"s": 1}, units, lambda b: _noisy_rows(b, calls),
                                chunk=3, code=CODE, root=tmp_path / "b")
    assert calls == [1, 7]  # only the unfinished units are computed
    pd.testing.assert_frame_equal(resumed, reference)
    assert resumed["unit"].tolist() == units
    assert not list((tmp_path / "b").rglob("*.parts")) and not list(tmp_path.rglob("*.tmp"))
    calls.clear()
    cache.cached_rows("t", "rows", {"s": 1}, units, lambda b: _noisy_rows(b, calls), code=CODE, root=tmp_path / "b")
    assert calls == []  # complete entry: a hit


def test_cached_rows_checks_the_unit_column(tmp_path):
    with pytest.raises(ValueError, match="'unit' column covering"):
        cache.cached_rows("t", "rows", {}, [1, 2], lambda b: pd.DataFrame({"unit": [1]}), chunk=2, code=CODE, root=tmp_path)


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
    found = {stem: cache.code_digest(cache.chapter_code(stem)) for stem in CHAPTERS}
    return {**found, "models": cache.code_digest(models.TRAINING_CODE)}


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path.name} no longer holds {old!r}"
    path.write_text(text.replace(old, new, 1))


def test_presentation_docstrings_and_plots_change_no_key(scratch_package):
    before = _digests()
    for module in ("plots.py", "paper.py", "prose.py", "progress.py", "measurements.py", "book.py",
                   "experiments/claims.py"):
        (scratch_package / module).write_text((scratch_package / module).read_text() + "\nEDITED = 1\n")
    _edit(scratch_package / "smoothing.py", '"""', '"""An edited docstring. ')
    _edit(scratch_package / "attacks" / "hsja.py", "\n", "\n# an edited comment\n")
    source = inspect.getsource(fig5_attacks.plot_scatter)
    _edit(scratch_package / "experiments" / "fig5_attacks.py", source,
          source.replace("alpha=0.8", "alpha=0.5"))
    assert _digests() == before


def _attack_keys() -> dict[str, str]:
    units = fig5_attacks.attack_units(dataset="digits", data_dir=None, index=[0, 1], targets=[fig5_attacks.Target("standard")],
                                      attacks=sorted(fig5_attacks.ATTACKS), models={"standard": models.model_spec()},
                                      max_queries=10, budgets=[10], chunk=2, verify_repeats=1, seed=0)
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
    assert changed == sorted(CHAPTERS[1:])  # the oracle is imported by smoothing, which all but theory use
    (scratch_package / "data.py").write_text((scratch_package / "data.py").read_text() + "\nEDITED = 1\n")
    assert cache.code_digest(models.TRAINING_CODE) != after["models"]


def test_a_table_is_a_hit_after_a_presentation_edit_and_a_miss_after_a_code_edit(scratch_package, tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return pd.DataFrame({"x": [1.0]})

    cache.cached("fig2_slices", "labels", {"a": 1}, compute, root=tmp_path / "cache")
    (scratch_package / "plots.py").write_text((scratch_package / "plots.py").read_text() + "\nEDITED = 1\n")
    cache.cached("fig2_slices", "labels", {"a": 1}, compute, root=tmp_path / "cache")
    assert len(calls) == 1
    (scratch_package / "seeds.py").write_text((scratch_package / "seeds.py").read_text() + "\nEDITED = 1\n")
    cache.cached("fig2_slices", "labels", {"a": 1}, compute, root=tmp_path / "cache")
    assert len(calls) == 2


def test_code_digest_names_what_it_cannot_find():
    with pytest.raises(ValueError, match="'rs_repro.nowhere' is no module"):
        cache.code_digest(["rs_repro.nowhere"])
    with pytest.raises(ValueError, match="code=None is not accepted for stem='t'"):
        cache.cached("t", "table", {}, pd.DataFrame)
