"""Compute a chapter without Jupyter: its plan on the engine, then its record and its tables on disk.

``rs-repro compute <stem> --profile P [--workers N | --scheduler ADDRESS]`` is what a GPU machine or a
cluster runs (``docs/architecture.md``, "Flow of one chapter"). It checks the parameters as the chapter
runner does (:mod:`rs_repro.pipeline.parameters`), computes every unit of the chapter's plan
(``plan(values)`` of ``rs_repro.chapters.<stem>.compute``, :func:`rs_repro.pipeline.engine.compute`; the
finished units are kept in the cache, so an interrupted run resumes where it stopped), then writes, for the
profile, the chapter's typed record (``record`` of its page half,
:func:`rs_repro.report.measurements.record`) and a copy of every unit's table with a manifest
(:func:`tables_folder`). Neither Jupyter, papermill, jupytext nor Sphinx is imported
(``tests/test_headless.py``). ``rs-repro run`` computes the chapter this way first, then renders its page
from the cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from rs_repro.pipeline import cache, context, engine, paths, provenance, runtime
from rs_repro.pipeline.parameters import (
    ChapterError,
    check_chapter,
    compute_module,
    profile_values,
    resolve_device,
    validate,
)
from rs_repro.report import measurements

#: The manifest of a chapter's computed tables in :func:`tables_folder`.
MANIFEST = "computed.json"


def tables_folder(stem: str, profile: str) -> Path:
    """``build/results/<stem>/tables/<profile>/``: a copy of the table of every unit of the chapter's plan
    (``<unit id>.csv``) and their manifest :data:`MANIFEST` (the parameters, each unit's key, SHA-256 and
    rows, the provenance, the wall time, cache hits and misses): the tables behind the chapter's page, as plain
    CSV.

    Parameters
    ----------
    stem, profile
        The chapter and the profile it was computed under.

    Returns
    -------
    pathlib.Path
        The folder (it exists once the chapter was computed under the profile).
    """
    return paths.BUILD / "results" / stem / "tables" / profile


_held: set[str] = set()


@contextlib.contextmanager
def chapter_lock(stem: str) -> Iterator[None]:
    """Hold ``build/runs/<stem>/lock`` while chapter ``stem`` is computed or rendered: a second run of the
    chapter, which would write the same tables, page, figures and measurements, is refused
    (:class:`rs_repro.pipeline.parameters.ChapterError` naming the process that holds it) while the first runs.
    Re-entrant within a process (the page run holds it around its compute step)."""
    if stem in _held:
        yield
        return
    folder = paths.RUNS / stem
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "a+", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise ChapterError(f"chapter {stem!r} is already being run ({lock.read().strip() or 'by another process'}); "
                               "wait for that run to finish or stop it") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"by process {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
        lock.flush()
        _held.add(stem)
        try:
            yield
        finally:
            _held.discard(stem)
            lock.truncate(0)


def compute_chapter(stem: str, profile: str = "default", overrides: dict[str, Any] | None = None, *,
                    workers: int | None = None, scheduler: str | None = None, use_cache: bool = True) -> Path:
    """Compute chapter ``stem`` under ``profile`` and the overrides; write its tables and its record
    (``rs-repro compute``).

    Parameters
    ----------
    stem
        A chapter with a compute half (every chapter but the claims).
    profile, overrides
        The parameter values, checked as :func:`rs_repro.pipeline.book.run_chapter` checks them.
    workers, scheduler, use_cache
        As in :func:`compute_values`.

    Returns
    -------
    pathlib.Path
        The manifest written (:func:`tables_folder`).

    Raises
    ------
    ChapterError
        A bad parameter (named), a chapter without a compute half, or units that failed (named; the others
        are stored).
    """
    values = resolve_device({**profile_values(stem, profile), **validate(stem, dict(overrides or {}))})
    check_chapter(stem, values)
    return compute_values(stem, profile, values, workers=workers, scheduler=scheduler, use_cache=use_cache).manifest


@dataclass(frozen=True)
class Computed:
    """What computing a chapter did (:func:`compute_values`).

    Attributes
    ----------
    manifest : pathlib.Path
        The manifest of its tables (:func:`tables_folder`), which records the other fields under ``run``.
    wall_s : float
        Wall time of the computation, in seconds.
    hits, misses, damaged : int
        Units read from the cache, units computed, cache entries found damaged (and computed again).
    """

    manifest: Path
    wall_s: float
    hits: int
    misses: int
    damaged: int


def compute_values(stem: str, profile: str, values: dict[str, Any], *, workers: int | None = None,
                   scheduler: str | None = None, use_cache: bool = True, record: bool = True) -> Computed:
    """Compute chapter ``stem`` with parameter values already checked (types, device, the chapter's rules);
    write its tables (and its record), holding the chapter's lock (:func:`chapter_lock`).

    Parameters
    ----------
    stem, profile
        A chapter with a compute half, and the profile its results are recorded under.
    values
        Its parameter values, as :func:`rs_repro.pipeline.parameters.chapter_values` returns them.
    workers, scheduler
        Where the units run (:func:`rs_repro.pipeline.engine.engine_options`); a local cluster started here is
        closed when the units are done.
    use_cache
        ``False`` recomputes every unit (as does the chapter's own ``use_cache`` parameter set to false).
    record
        Write the chapter's record (:func:`rs_repro.report.measurements.record`); the chapter runner leaves it
        to the page, which publishes it only once the page is published.

    Returns
    -------
    Computed
        The manifest written, the wall time and the cache's counts.

    Raises
    ------
    ChapterError
        A chapter without a compute half, or units that failed (named; the others are stored).
    """
    module = compute_module(stem)
    if module is None:
        raise ChapterError(f"chapter {stem!r} computes nothing (it reads the other chapters' records); "
                           "render it with rs-repro run")
    use_cache = use_cache and values.get("use_cache", True)
    compute = importlib.import_module(module)
    page = importlib.import_module(f"rs_repro.chapters.{stem}.page")
    plan = compute.plan(values)
    runtime.keep_freed_memory()  # as in the chapter kernels and the workers (rs_repro.pipeline.runtime)
    started = time.perf_counter()
    with chapter_lock(stem), tempfile.TemporaryDirectory(prefix="rs-repro-compute-") as scratch:
        log = Path(scratch) / "cache-log.jsonl"
        with context.using(context.RunContext(profile=profile, run_log=str(log), workers=workers,
                                              scheduler=scheduler)):
            try:
                tables = engine.compute(stem, plan, use_cache=use_cache)
            except (engine.UnitError, ValueError) as exc:
                raise ChapterError(f"chapter {stem!r}: {exc}") from exc
            finally:
                engine.close_clients()  # a local cluster's workers hold memory (and GPU memory) no longer needed
            chapter_record = page.record(page.results(tables, values), values) if record else None
            if chapter_record is not None:
                measurements.record(stem, chapter_record)
        events = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()] if log.exists() else []
    run = {"wall_s": time.perf_counter() - started, "hits": sum(1 for e in events if e.get("hit") is True),
           "misses": sum(1 for e in events if e.get("hit") is False), "damaged": sum("damaged" in e for e in events)}
    keys = {e["name"]: e["key"] for e in events if "hit" in e}  # each unit's key, as the engine looked it up
    units = [unit for stage in plan for unit in stage.units(tables)]
    return Computed(_write_tables(stem, profile, values, units, keys, tables, run), **run)


def _write_tables(stem: str, profile: str, values: dict[str, Any], units: list[engine.Unit], keys: dict[str, str],
                  tables: dict[str, pd.DataFrame], run: dict[str, Any]) -> Path:
    """Write every unit's table and the manifest into :func:`tables_folder`, replacing what was there."""
    target = tables_folder(stem, profile)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{profile}-*"):  # left by an interrupted run of this chapter and profile
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{profile}-", dir=target.parent))
    listed = {}
    for unit in units:
        path = staging / f"{unit.id}.csv"
        tables[unit.id].to_csv(path, index=False)
        listed[unit.id] = {"key": keys[unit.id], "function": unit.function, "sha256": cache.file_sha256(path),
                           "rows": len(tables[unit.id])}
    manifest = {"stem": stem, "profile": profile, "values": values, "units": listed, "run": run,
                "provenance": provenance.stamp()}
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, default=str), encoding="utf-8")
    old = Path(tempfile.mkdtemp(prefix=f".{profile}-", dir=target.parent))
    if target.exists():
        target.replace(old / "previous")
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target / MANIFEST
