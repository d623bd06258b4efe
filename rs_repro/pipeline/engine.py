"""The engine: a chapter's work as independent units, run in this process or on a Dask cluster.

``docs/architecture.md``, "The cache rule". A :class:`Unit` names a package function and the JSON-serialisable keyword
arguments it is called with; it returns a table. Its cache key hashes the function, the arguments and the
code the function reads (:func:`rs_repro.pipeline.cache.code_digest`), so a unit is recomputed exactly when something
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
others and runs on :data:`rs_repro.pipeline.runtime.COMPUTE_THREADS` CPU thread wherever it runs (torch's
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from rs_repro.pipeline import cache, context, paths
from rs_repro.pipeline.progress import bar
from rs_repro.pipeline.runtime import COMPUTE_THREADS, compute_threads, malloc_env

#: Environment variable a user may set to the address of the Dask scheduler to run units on.
SCHEDULER_ENV = "RS_REPRO_SCHEDULER"
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
        """Hex key of the unit's result: its function, its arguments, the code it reads and the content of
        the files it reads (:func:`input_digests`)."""
        fields = {"function": self.function, "arguments": dict(self.arguments),
                  "code": cache.code_digest(self.code), "threads": COMPUTE_THREADS}
        if inputs := input_digests(self.arguments):
            fields["inputs"] = inputs
        payload = cache.canonical_json(fields)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def compute(self) -> pd.DataFrame:
        """Call the function with the arguments; the table it returns."""
        module, _, name = self.function.partition(":")
        table = getattr(importlib.import_module(module), name)(**dict(self.arguments))
        if not isinstance(table, pd.DataFrame):
            raise TypeError(f"unit {self.id!r}: {self.function} must return a pandas.DataFrame, got "
                            f"{type(table).__name__}")
        return table


#: The names of the arguments (at any depth of a unit's arguments) that hold a file or folder the unit reads,
#: a weights file or the folder of a dataset's files.
INPUT_ARGUMENTS = ("weights", "data_dir")


def _is_input(name: str) -> bool:
    return name in INPUT_ARGUMENTS or name.endswith("_weights")


def input_digests(arguments: Any) -> dict[str, str]:
    """The content digest of every file a unit with ``arguments`` reads, by its path.

    A file is named by an argument :data:`INPUT_ARGUMENTS` (or ending in ``_weights``) at any depth of the
    arguments, with a local path as its value (``pretrained:<name>`` weights come with an installed package,
    whose version the provenance records); a dataset whose ``data_dir`` is empty names the folder of this
    machine it is read from (:func:`rs_repro.data.default_folder`, e.g. Debian's Fashion-MNIST). A folder counts by every file under it
    (:func:`file_digest`). So a checkpoint or a data file replaced under the same path changes the key.

    Returns
    -------
    dict
        Path to sha256 hex digest; empty for a unit that reads no file (the keys of such units do not
        change).
    """
    from rs_repro import data  # here: the runner imports this module, and needs no torch

    found: dict[str, str] = {}

    def walk(value: Any) -> None:
        if isinstance(value, Mapping):
            for name, item in value.items():
                if (_is_input(str(name)) and isinstance(item, str) and item
                        and not item.startswith("pretrained:")):
                    found[item] = file_digest(Path(item))
                else:
                    walk(item)
            dataset = value.get("dataset")
            folder = data.default_folder(dataset) if dataset in data.DATASETS and not value.get("data_dir") else None
            if folder is not None:
                found[str(folder)] = file_digest(folder)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(arguments)
    return found


_digests: dict[tuple[str, int, int, int, int], str] = {}


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, or of a folder's files (their relative names and digests, sorted).

    Remembered in this process by the file's inode, size, modification and change times, so the many units
    of a chapter hash a file once; a file replaced or rewritten is hashed again. A path that does not exist
    gets the digest ``missing`` (the unit then fails with the loader's own error).
    """
    if path.is_dir():
        h = hashlib.sha256()
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f"{item.relative_to(path).as_posix()}\0{file_digest(item)}\0".encode())
        return h.hexdigest()
    try:
        st = path.stat()
    except OSError:
        return "missing"
    stamp = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if stamp not in _digests:
        _digests[stamp] = cache.file_sha256(path)
    return _digests[stamp]


@dataclass(frozen=True)
class Stage:
    """One step of a chapter's plan: the units it runs, worked out from the tables of the steps before.

    Attributes
    ----------
    name : str
        What the step does, for the progress bar (e.g. ``"models"``, ``"attacked images"``).
    units : callable
        ``units(done) -> list[Unit]``, ``done`` mapping the id of every unit of the earlier steps to its table.
        A pure function: it reads no data, trains nothing and draws nothing; what needs a model or the data
        is a unit of an earlier step.
    """

    name: str
    units: Callable[[Mapping[str, pd.DataFrame]], list[Unit]]


#: A chapter's plan (``plan(values)`` of its compute half): the steps of its work, in order.
Plan = Sequence[Stage]


def fixed(units: Sequence[Unit]) -> Callable[[Mapping[str, pd.DataFrame]], list[Unit]]:
    """The ``units`` of a :class:`Stage`, for a step whose units do not depend on earlier tables.

    Parameters
    ----------
    units
        The step's units.

    Returns
    -------
    callable
        ``units(done)`` returning a copy of ``units`` whatever ``done`` holds.
    """
    return lambda done: list(units)


def compute(stem: str, plan: Plan, *, use_cache: bool = True, root: Path | None = None, workers: int | None = None,
            scheduler: str | None = None) -> dict[str, pd.DataFrame]:
    """The tables of every unit of ``plan``, step after step (:func:`run` for each step).

    Parameters
    ----------
    stem
        The chapter (the cache namespace).
    plan
        Its steps, in order (``plan(values)`` of the chapter's compute half).
    use_cache, root, workers, scheduler
        As in :func:`run`.

    Returns
    -------
    dict
        Unit id to its table, for the units of every step in plan order; ids are distinct across steps.
    """
    done: dict[str, pd.DataFrame] = {}
    for stage in plan:
        units = stage.units(done)
        again = sorted(u.id for u in units if u.id in done)
        if again:
            raise ValueError(f"plan of {stem!r}: step {stage.name!r} repeats unit ids of earlier steps: {again}")
        done.update(run(stem, units, desc=f"{stem}: {stage.name}", use_cache=use_cache, root=root, workers=workers,
                        scheduler=scheduler))
    return done


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
    """Run one unit on :data:`rs_repro.pipeline.runtime.COMPUTE_THREADS` CPU thread (what the engine ships to a worker).

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
#: Seconds a Dask scheduler named by the user has to answer before the run is refused.
CONNECT_TIMEOUT_S = 5


def max_workers() -> int:
    """The most local worker processes a run may start: four per CPU core, and no more than the open-file
    limit allows (a worker and its nanny hold about 32 descriptors of this process)."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    by_files = soft // 32 if soft != resource.RLIM_INFINITY else 1 << 20
    return max(1, min(4 * (os.cpu_count() or 1), by_files))


def _stop_http(dask_worker: Any) -> None:
    """Close a worker's HTTP server (run on each worker of a local cluster)."""
    dask_worker.http_server.stop()


def client(workers: int | None = None, scheduler: str | None = None) -> Any:
    """The Dask client of this process for ``workers`` local processes or the cluster at ``scheduler``.

    A local cluster is started on first use and closed when the process exits: single-threaded workers, a
    unit whose worker dies is tried once more, and nothing another user of the machine can reach. Its
    scheduler, nannies and workers listen on 127.0.0.1 only, over TLS with a certificate made for this run
    (``distributed.security.Security.temporary()``), so a process without it can neither submit tasks
    nor read results; their HTTP servers (dashboard, metrics) serve no route and are closed once started.
    A scheduler named by the user must answer within :data:`CONNECT_TIMEOUT_S` seconds; its security is
    the user's Dask configuration (``distributed.comm.tls``).
    """
    import dask
    from distributed import Client, LocalCluster
    from distributed.security import Security

    if (workers, scheduler) in _clients:
        return _clients[workers, scheduler]
    if scheduler:
        new = _connect(scheduler)
    else:
        security = Security.temporary()
        # The workers' environment is set before they start (Dask's "pre-spawn-environ"): glibc reads its
        # malloc thresholds once, at a process's first allocation, so Dask's own default there
        # (MALLOC_TRIM_THRESHOLD_=65536, which also pins the mmap threshold at 128 KiB) would otherwise stay, and
        # a unit would run about 1.4 times slower in a worker than in this process; Dask's statistical profiler,
        # which samples every worker thread's stack each 10 ms, another 1.2 times (a Fig. 5 unit: 50 s, 36 s
        # without the first, 30 s without both, 28 s in this process; README).
        environ = {"OMP_NUM_THREADS": str(COMPUTE_THREADS), "MKL_NUM_THREADS": str(COMPUTE_THREADS),
                   "OPENBLAS_NUM_THREADS": str(COMPUTE_THREADS), **malloc_env()}
        with dask.config.set({"distributed.scheduler.allowed-failures": TRIES - 1,
                              "distributed.worker.daemon": False,
                              "distributed.nanny.pre-spawn-environ": environ,
                              "distributed.worker.profile.enabled": False,
                              "distributed.scheduler.http.routes": [], "distributed.worker.http.routes": []}):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   protocol="tls://", security=security, dashboard_address=None,
                                   silence_logs=50)
        cluster.scheduler.http_server.stop()
        new = Client(cluster, security=security)
        new.run(_stop_http)
        atexit.register(_close, new)
    _clients[workers, scheduler] = new
    return new


def _connect(scheduler: str) -> Any:
    """A client of the Dask scheduler at ``scheduler``; ``ValueError`` naming it unless it answers within
    :data:`CONNECT_TIMEOUT_S` seconds."""
    from distributed import Client

    try:
        return Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise ValueError(f"scheduler={scheduler!r} is not accepted; expected the address of a Dask scheduler "
                         f"that answers within {CONNECT_TIMEOUT_S} s ({type(exc).__name__}: {exc})") from exc


def check_scheduler(scheduler: str) -> None:
    """Refuse (``ValueError`` naming the address) a Dask scheduler that does not answer within
    :data:`CONNECT_TIMEOUT_S` seconds; the connection made to check it is closed."""
    _connect(scheduler).close()


def close_clients() -> None:
    """Close the Dask clients of this process and the local clusters they started (:func:`client`)."""
    while _clients:
        _close(_clients.popitem()[1])


def _close(dask_client: Any) -> None:
    cluster = dask_client.cluster
    dask_client.close()
    if cluster is not None:
        cluster.close()


def engine_options(workers: int | None = None, scheduler: str | None = None) -> tuple[int | None, str | None]:
    """The engine asked for: the arguments, else the chapter run's context (:func:`rs_repro.pipeline.context.current`),
    else the user's ``RS_REPRO_SCHEDULER``, else in-process.

    Raises ``ValueError`` naming the value for a number of workers that is not a whole number from 0 to
    :func:`max_workers`.
    """
    run = context.current()
    scheduler = scheduler or run.scheduler or os.environ.get(SCHEDULER_ENV) or None
    workers = run.workers if workers is None else workers
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or not 0 <= workers <= max_workers()):
        raise ValueError(f"workers={workers!r} is not accepted; expected 0 (in this process) to {max_workers()} "
                         f"(four per CPU core of this machine, within its open-file limit)")
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
        ``False`` recomputes every unit and overwrites its entry, unless the chapter runner computed them in
        this run (``computed`` of :class:`rs_repro.pipeline.context.RunContext`).
    root
        Cache root, ``<build>/cache`` by default (:data:`rs_repro.pipeline.paths.BUILD`).
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
    use_cache = use_cache or context.current().computed
    folder = (root or paths.BUILD / "cache") / stem
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
