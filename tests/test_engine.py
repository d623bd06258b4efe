"""The engine: units cached by key, failures reported by id, and the same tables on a Dask LocalCluster."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pandas as pd
import pytest
from conftest import in_run

from rs_repro.chapters import common
from rs_repro.chapters.fig5_attacks import compute as ex
from rs_repro.models import model_spec
from rs_repro.pipeline import cache, engine, parameters, runtime

SPECS = {"standard": model_spec("standard"), "randtrain": model_spec("randtrain", sigma=0.5),
         "advtrain": model_spec("advtrain", epsilon=1.0)}
WHERE = {"dataset": "digits", "data_dir": None}


def _accuracy_units(targets=None) -> list[engine.Unit]:
    return ex.accuracy_units(**WHERE, targets=targets or [ex.Target("standard"), ex.Target("advtrain")],
                             models=SPECS, seed=0)


def _grid() -> list[engine.Unit]:
    """A small Fig. 5 grid: 4 classifiers x 3 attacks x 2 chunks of 2 images, 40 queries each."""
    targets = ex.grid([0.35], [10], [0.5], 0.5, [10])
    return ex.attack_units(**WHERE, index=[0, 3, 5, 8], targets=targets, attacks=sorted(common.PAPER_ATTACKS), models=SPECS,
                           max_queries=40, budgets=[20, 40], chunk=2, verify_repeats=5, votes=5, confirm_votes=20,
                           alpha=0.05, seed=0)


def test_unit_refuses_bad_ids_and_functions():
    with pytest.raises(ValueError, match="id='a/b' is not accepted"):
        engine.Unit("a/b", "rs_repro.pipeline.engine:compute_unit")
    with pytest.raises(ValueError, match="function='os:getcwd' is not accepted"):
        engine.Unit("a", "os:getcwd")
    unit = engine.Unit("a", "rs_repro.chapters.fig5_attacks.compute:accuracy_unit", {"seed": 1})
    assert unit.code == ("rs_repro.chapters.fig5_attacks.compute",)
    other = engine.Unit("a", "rs_repro.chapters.fig5_attacks.compute:accuracy_unit", {"seed": 2})
    assert unit.key() != other.key()
    with pytest.raises(ValueError, match="ids must be distinct, repeated: \\['a'\\]"):
        engine.run("t", [unit, unit])
    with pytest.raises(ValueError, match="workers=-1 is not accepted"):
        engine.engine_options(workers=-1)


def test_attack_units_read_only_their_own_attack():
    units = _grid()
    assert len(units) == 4 * 3 * 2 and len({u.id for u in units}) == len(units)
    hsja = next(u for u in units if "HSJA" in u.id)
    assert hsja.code == ("rs_repro.chapters.fig5_attacks.compute", "rs_repro.attacks.hsja")
    json.dumps([u.arguments for u in units])  # what a worker receives is plain JSON
    with pytest.raises(ValueError, match="attack='PGD' is not accepted"):
        ex.attack_units(**WHERE, index=[0], targets=[ex.Target("standard")], attacks=["PGD"], models=SPECS,
                        max_queries=10, budgets=[10], chunk=1, verify_repeats=1, votes=1, confirm_votes=4, alpha=0.05,
                        seed=0)


def test_run_stores_each_unit_and_computes_only_what_is_missing(tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    in_run(monkeypatch, run_log=str(log))
    units = _accuracy_units()
    first = engine.run("fig5_attacks", units[:1], root=tmp_path)
    both = engine.run("fig5_attacks", units, root=tmp_path)
    assert list(both) == [u.id for u in units] and both[units[0].id].equals(first[units[0].id])
    assert [json.loads(line)["hit"] for line in log.read_text().splitlines()] == [False, True, False]
    assert sorted(p.name for p in (tmp_path / "fig5_attacks").iterdir()) == sorted(
        f"{u.id}-{u.key()}.{ext}" for u in units for ext in ("csv", "json"))
    engine.run("fig5_attacks", units, root=tmp_path, use_cache=False)
    assert [json.loads(line)["hit"] for line in log.read_text().splitlines()][3:] == [False, False]


def test_a_failing_unit_is_named_and_the_others_are_kept(tmp_path):
    good = _accuracy_units()[0]
    bad = engine.Unit("accuracy-broken", good.function, {**good.arguments, "dataset": "nowhere"})
    with pytest.raises(engine.UnitError, match="1 unit\\(s\\) of chapter 'fig5_attacks' failed") as caught:
        engine.run("fig5_attacks", [bad, good], root=tmp_path)
    assert list(caught.value.failures) == ["accuracy-broken"] and "nowhere" in caught.value.failures["accuracy-broken"]
    assert (tmp_path / "fig5_attacks" / f"{good.id}-{good.key()}.csv").exists()


def _same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    """Identical tables, bit for bit (but CERTIFY's wall-time column)."""
    assert list(a) == list(b)
    for uid, table in a.items():
        pd.testing.assert_frame_equal(table.drop(columns="time", errors="ignore"),
                                      b[uid].drop(columns="time", errors="ignore"), check_exact=True, obj=uid)


def _smoke_plan() -> list[engine.Stage]:
    """The smoke Fig. 5: its models, its images, clean accuracies, 7 classifiers x 3 attacks on 4 images, CERTIFY."""
    return ex.plan(parameters.profile_values("fig5_attacks", "smoke"))


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    """The smoke Fig. 5 computed in this process: the reference."""
    return engine.compute("fig5_attacks", _smoke_plan(), root=tmp_path_factory.mktemp("in-process"))


@pytest.mark.slow
def test_local_cluster_gives_the_same_tables(in_process, tmp_path):
    on_workers = engine.compute("fig5_attacks", _smoke_plan(), root=tmp_path, workers=2)
    _same(in_process, on_workers)
    units = common.certify_units(**WHERE, images=[0, 3, 5], chunk=2, model=SPECS["standard"], name="standard",
                                        sigma=0.35, n0=20, n=200, alpha=0.01, batch_size=64, seed=0)
    here = engine.run("fig4_certification", units, root=tmp_path / "here")
    there = engine.run("fig4_certification", units, root=tmp_path / "there", workers=2)
    _same(here, there)


def _worker_settings() -> tuple:
    """The variables the worker process started with (``/proc/self/environ``: its environment at exec, before
    Python could change ``os.environ``), and whether Dask's profiler is on."""
    import dask

    started = dict(entry.split(b"=", 1) for entry in Path("/proc/self/environ").read_bytes().split(b"\0") if entry)
    names = (b"MALLOC_MMAP_THRESHOLD_", b"MALLOC_TRIM_THRESHOLD_", b"OMP_NUM_THREADS", b"MKL_NUM_THREADS")
    return tuple((started.get(name) or b"").decode() for name in names) + (
        dask.config.get("distributed.worker.profile.enabled"),)


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc/self/environ (Linux)")
def test_local_workers_start_with_the_malloc_thresholds_and_without_the_profiler():
    """Set before a worker starts (glibc reads them at its first allocation), not Dask's default trim threshold
    of 65536; Dask's stack sampler off (together a unit ran 1.7 times slower in a worker than in-process)."""
    settings = set(engine.client(2).run(_worker_settings).values())
    threads = str(runtime.COMPUTE_THREADS)
    assert settings == {(str(runtime.MMAP_THRESHOLD), str(runtime.TRIM_THRESHOLD), threads, threads, False)}


@pytest.mark.slow
def test_a_worker_killed_in_the_middle_changes_no_table(in_process, tmp_path, monkeypatch):
    dask_client = engine.client(2)
    pids = dask_client.run(os.getpid)
    done = []
    store = cache.store

    def store_then_kill(path, table, manifest):
        store(path, table, manifest)
        done.append(path)
        if len(done) == 1:  # after the first finished unit, one worker dies with its running unit
            threading.Thread(target=os.kill, args=(next(iter(pids.values())), signal.SIGKILL)).start()

    monkeypatch.setattr(cache, "store", store_then_kill)
    on_workers = engine.compute("fig5_attacks", _smoke_plan(), root=tmp_path, workers=2)
    assert len(done) == len(on_workers)
    assert next(iter(pids.values())) not in dask_client.run(os.getpid).values(), "the worker was not killed"
    _same(in_process, on_workers)


def test_a_unit_runs_on_one_thread_and_the_process_keeps_its_own(monkeypatch):
    import torch

    seen = []
    monkeypatch.setattr(engine.Unit, "compute", lambda self: seen.append(torch.get_num_threads()) or pd.DataFrame())
    before = torch.get_num_threads()
    _table, seconds = engine.compute_unit(_accuracy_units()[0])
    assert seen == [runtime.COMPUTE_THREADS] and torch.get_num_threads() == before and seconds >= 0
