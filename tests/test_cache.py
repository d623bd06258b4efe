"""The content-addressed cache: hits, keys, atomic entries, and per-unit resume after an interruption."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from rs_repro import cache, paths, seeds


def test_cache_hits_and_keys(tmp_path, monkeypatch):
    calls = []

    def compute():
        calls.append(1)
        return pd.DataFrame({"x": [0.1, 1 / 3], "y": [1, 2]})

    log = tmp_path / "log.jsonl"
    monkeypatch.setenv(cache.RUN_LOG_ENV, str(log))
    first = cache.cached("t", "table", {"a": 1}, compute, root=tmp_path)
    again = cache.cached("t", "table", {"a": 1}, compute, root=tmp_path)
    other = cache.cached("t", "table", {"a": 2}, compute, root=tmp_path)
    assert len(calls) == 2
    assert again.equals(first) and other.equals(first)  # floats round-trip exactly through the CSV
    assert [json.loads(line)["hit"] for line in log.read_text().splitlines()] == [False, True, False]
    cache.cached("t", "table", {"a": 1}, compute, root=tmp_path, use_cache=False)
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
                                  chunk=2, root=tmp_path / "a")
    calls: list[int] = []

    def flaky(block):
        if 1 in block:
            raise KeyboardInterrupt  # interrupted in the middle of the run
        return _noisy_rows(block, calls)

    with pytest.raises(KeyboardInterrupt):
        cache.cached_rows("t", "rows", {"s": 1}, units, flaky, chunk=1, root=tmp_path / "b")
    assert calls == [5, 3, 9]
    calls.clear()
    resumed = cache.cached_rows("t", "rows", {"s": 1}, units, lambda b: _noisy_rows(b, calls),
                                chunk=3, root=tmp_path / "b")
    assert calls == [1, 7]  # only the unfinished units are computed
    pd.testing.assert_frame_equal(resumed, reference)
    assert resumed["unit"].tolist() == units
    assert not list((tmp_path / "b").rglob("*.parts")) and not list(tmp_path.rglob("*.tmp"))
    calls.clear()
    cache.cached_rows("t", "rows", {"s": 1}, units, lambda b: _noisy_rows(b, calls), root=tmp_path / "b")
    assert calls == []  # complete entry: a hit


def test_cached_rows_checks_the_unit_column(tmp_path):
    with pytest.raises(ValueError, match="'unit' column covering"):
        cache.cached_rows("t", "rows", {}, [1, 2], lambda b: pd.DataFrame({"unit": [1]}), chunk=2, root=tmp_path)


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
