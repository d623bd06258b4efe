"""The engine: a chapter's work as independent units, run in this process or on a Dask cluster.

DESIGN.md, "Engine and cache". A :class:`Unit` names a package function and the JSON-serialisable keyword
arguments it is called with; it returns a table. Its cache key hashes the function, the arguments and the
code the function reads (:func:`rs_repro.cache.code_digest`), so a unit is recomputed exactly when something
it depends on changed. :func:`run` reads the finished units from the cache, computes the others, and stores
each result as soon as it arrives: an interrupted run loses no finished unit, and a re-run computes only what
is missing.

Where the units run is the user's choice, never the chapter's:

* in this process, one unit after the other (the default; nothing to install or start);
* ``workers=N`` (``rs-repro run --workers N``, ``make book WORKERS=N``): a Dask ``LocalCluster`` of N
  single-threaded worker processes on this machine;
* ``scheduler=ADDRESS`` (``--scheduler``, or ``RS_REPRO_SCHEDULER``): an existing Dask cluster, e.g. one
  started on SLURM with ``dask-jobqueue`` or one worker per GPU with ``dask-cuda``. Workers need the package
  installed (same version); results come back to this process, which writes the cache, so the workers need
  no shared folder (a shared ``build/models`` saves each worker training the models again).

A unit draws all its randomness from generators seeded by its own arguments, shares no state with the
others and runs on :data:`rs_repro.runtime.COMPUTE_THREADS` CPU thread wherever it runs (torch's
multi-threaded reductions add in an order that depends on the number of threads, which changes the last
bits of a distance and, through an attack's path, sometimes more), so the results are bit-identical
whatever the engine, the number of workers and the order in which units finish. Parallelism comes from
running units side by side. On Dask a unit that raises, or whose worker dies, is tried once more; a unit
that fails again is reported by id with its error in a :class:`UnitError`, after every other unit has been
finished and stored.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib
import os
import re
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from . import cache, paths
from .progress import bar
from .runtime import COMPUTE_THREADS, compute_threads, malloc_env

#: Environment variable holding the address of the Dask scheduler to run units on (set by the user, or by
#: the chapter runner in the kernel).
SCHEDULER_ENV = "RS_REPRO_SCHEDULER"
#: Environment variable holding the number of local Dask worker processes to start (set by the runner).
WORKERS_ENV = "RS_REPRO_WORKERS"
#: How many times Dask tries a unit in all (the first try and one retry).
TRIES = 2
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=-]*")


@dataclass(frozen=True)
class Unit:
    """One independent piece of a chapter's work.

    Attributes
    ----------
    id : str
        Stable name of the unit within its chapter, safe as a file name (letters, digits, ``. _ = -``),
        e.g. ``attack-HSJA-standard-rs0.35-n10-pa0.5-images0``.
    function : str
        ``"package.module:function"``, importable wherever the unit runs; called with ``arguments`` as
        keyword arguments, it returns a :class:`pandas.DataFrame`.
    arguments : dict
        Everything the result depends on (seeds, parameters, ``batch_size`` and ``device`` included), in
        JSON-serialisable values.
    code : tuple of str
        The package modules the function runs; their code, and that of the modules they import, enters the
        key. The function's own module by default.
    """

    id: str
    function: str
    arguments: Mapping[str, Any] = field(default_factory=dict, hash=False)
    code: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _ID.fullmatch(self.id):
            raise ValueError(f"id={self.id!r} is not accepted; a unit id is letters, digits and '._=-', "
                             "starting with a letter or digit")
        module, _, name = self.function.partition(":")
        if not module.startswith("rs_repro.") or not name:
            raise ValueError(f"function={self.function!r} is not accepted; expected 'rs_repro.<module>:<function>'")
        if not self.code:
            object.__setattr__(self, "code", (module,))

    def key(self) -> str:
        """Hex key of the unit's result: its function, its arguments and the code it reads."""
        payload = cache.canonical_json({"function": self.function, "arguments": dict(self.arguments),
                                        "code": cache.code_digest(self.code), "threads": COMPUTE_THREADS})
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def compute(self) -> pd.DataFrame:
        """Call the function with the arguments; the table it returns."""
        module, _, name = self.function.partition(":")
        table = getattr(importlib.import_module(module), name)(**dict(self.arguments))
        if not isinstance(table, pd.DataFrame):
            raise TypeError(f"unit {self.id!r}: {self.function} must return a pandas.DataFrame, got "
                            f"{type(table).__name__}")
        return table


class UnitError(RuntimeError):
    """Some units failed (on Dask: twice); every other unit was finished and stored.

    Attributes
    ----------
    failures : dict
        Unit id to the error it raised, as text.
    """

    def __init__(self, stem: str, failures: Mapping[str, str]) -> None:
        self.failures = dict(failures)
        lines = "\n".join(f"  {uid}: {error}" for uid, error in self.failures.items())
        super().__init__(f"{len(self.failures)} unit(s) of chapter {stem!r} failed; the others are stored, and a "
                         f"re-run computes only the failed ones:\n{lines}")


def compute_unit(unit: Unit) -> tuple[pd.DataFrame, float]:
    """Run one unit on :data:`rs_repro.runtime.COMPUTE_THREADS` CPU thread (what the engine ships to a worker).

    Returns
    -------
    tuple
        The unit's table and its wall time in seconds.
    """
    started = time.perf_counter()
    with compute_threads():
        table = unit.compute()
    return table, time.perf_counter() - started


def _describe(error: BaseException) -> str:
    last = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
    where = f" (at {last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno})" if last else ""
    return f"{type(error).__name__}: {error}{where}"


_clients: dict[tuple[int | None, str | None], Any] = {}


def client(workers: int | None = None, scheduler: str | None = None) -> Any:
    """The Dask client of this process for ``workers`` local processes or the cluster at ``scheduler``.

    A local cluster is started on first use (single-threaded workers, no dashboard, a unit whose worker
    dies is tried once more) and closed when the process exits.
    """
    import dask
    from distributed import Client, LocalCluster

    if (workers, scheduler) in _clients:
        return _clients[workers, scheduler]
    if scheduler:
        new = Client(scheduler)
    else:
        with dask.config.set({"distributed.scheduler.allowed-failures": TRIES - 1,
                              "distributed.worker.daemon": False}):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=50,
                                   env={"OMP_NUM_THREADS": str(COMPUTE_THREADS),
                                        "MKL_NUM_THREADS": str(COMPUTE_THREADS), **malloc_env()})
        new = Client(cluster)
        atexit.register(_close, new)
    _clients[workers, scheduler] = new
    return new


def _close(dask_client: Any) -> None:
    cluster = dask_client.cluster
    dask_client.close()
    if cluster is not None:
        cluster.close()


def engine_options(workers: int | None = None, scheduler: str | None = None) -> tuple[int | None, str | None]:
    """The engine asked for: the arguments, else the runner's environment variables, else in-process."""
    scheduler = scheduler or os.environ.get(SCHEDULER_ENV) or None
    if workers is None and os.environ.get(WORKERS_ENV):
        text = os.environ[WORKERS_ENV]
        if not text.isdigit():
            raise ValueError(f"{WORKERS_ENV}={text!r} is not accepted; expected a whole number of workers")
        workers = int(text)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise ValueError(f"workers={workers!r} is not accepted; expected 0 (in this process) or more")
    return (workers or None), scheduler


def run(stem: str, units: Sequence[Unit], *, desc: str | None = None, use_cache: bool = True,
        root: Path | None = None, workers: int | None = None, scheduler: str | None = None
        ) -> dict[str, pd.DataFrame]:
    """The tables of ``units``, from the cache or computed on the engine.

    Parameters
    ----------
    stem
        The chapter (the cache namespace ``build/cache/<stem>/``).
    units
        The work; ids must be distinct.
    desc
        What the progress bar says (``"<stem> units"`` by default).
    use_cache
        ``False`` recomputes every unit and overwrites its entry.
    root
        Cache root, ``build/cache`` by default.
    workers, scheduler
        The engine (:func:`engine_options`): in this process by default.

    Returns
    -------
    dict
        Unit id to its table, in the order of ``units``.

    Raises
    ------
    UnitError
        Naming each unit that failed, after all the others were computed and stored.
    """
    ids = [u.id for u in units]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"units: ids must be distinct, repeated: {twice}")
    workers, scheduler = engine_options(workers, scheduler)
    folder = (root or paths.CACHE) / stem
    keys = {u.id: u.key() for u in units}
    entry = {u.id: folder / f"{u.id}-{keys[u.id]}.csv" for u in units}
    tables: dict[str, pd.DataFrame] = {}
    for unit in units:
        if use_cache and (hit := cache.read_entry(stem, unit.id, keys[unit.id], entry[unit.id])) is not None:
            tables[unit.id] = hit
    todo = [u for u in units if u.id not in tables]
    failures: dict[str, str] = {}
    progress = bar(total=len(units), desc=desc or f"{stem} units")
    progress.update(len(tables))

    def finished(unit: Unit, table: pd.DataFrame, wall_s: float) -> None:
        cache.store(entry[unit.id], table, {"stem": stem, "name": unit.id, "key": keys[unit.id],
                                            "function": unit.function, "arguments": dict(unit.arguments),
                                            "code": list(unit.code), "wall_s": wall_s})
        cache.log_lookup({"stem": stem, "name": unit.id, "key": keys[unit.id], "hit": False, "wall_s": wall_s})
        tables[unit.id] = table
        progress.update(1)

    try:
        if todo and (workers or scheduler):
            from distributed import as_completed

            dask_client = client(workers, scheduler)
            futures = {dask_client.submit(compute_unit, u, key=f"{stem}-{u.id}-{keys[u.id]}", pure=False,
                                          retries=TRIES - 1): u for u in todo}
            for future in as_completed(futures):
                unit = futures[future]
                if future.status == "finished":
                    finished(unit, *future.result())
                else:
                    failures[unit.id] = _describe(future.exception())
        else:
            for unit in todo:
                try:
                    result = compute_unit(unit)
                except Exception as error:  # noqa: BLE001  (reported by id below, after the other units)
                    failures[unit.id] = _describe(error)
                    continue
                finished(unit, *result)
    finally:
        progress.close()
    if failures:
        raise UnitError(stem, failures)
    return {uid: tables[uid] for uid in ids}
