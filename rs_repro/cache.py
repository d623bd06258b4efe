"""Content-addressed cache of computed tables (DESIGN.md, "Flow of one chapter").

A chapter's expensive results are tidy :class:`pandas.DataFrame` tables stored as
``build/cache/<stem>/<name>-<key>.csv`` beside a ``.json`` manifest. The key hashes the inputs that
determine the table (parameters, seeds, data identifiers) together with the source of the ``rs_repro``
package, so a change of either recomputes and nothing stale is ever read back. Every hit and miss is
appended to the run log named by ``RS_REPRO_RUN_LOG`` when the chapter runner sets it, which is how the
provenance box counts cache hits.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from . import paths

RUN_LOG_ENV = "RS_REPRO_RUN_LOG"


#: Modules that run chapters but compute no result; editing them does not invalidate the cache.
PIPELINE_MODULES = ("book.py", "cli.py")


@lru_cache(maxsize=1)
def source_digest() -> str:
    """sha256 of the package's ``.py`` files (relative path and bytes, sorted), but the pipeline modules."""
    h = hashlib.sha256()
    for path in sorted(paths.PACKAGE.rglob("*.py")):
        if path.relative_to(paths.PACKAGE).as_posix() in PIPELINE_MODULES:
            continue
        h.update(path.relative_to(paths.PACKAGE).as_posix().encode())
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the form that is hashed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def cache_key(name: str, inputs: Mapping[str, Any]) -> str:
    """Hex key of a table: its name, its inputs and the package source."""
    payload = canonical_json({"name": name, "inputs": dict(inputs), "source": source_digest()})
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _log(event: dict[str, Any]) -> None:
    target = os.environ.get(RUN_LOG_ENV)
    if target:
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(event) + "\n")


def _store(table_path: Path, table: pd.DataFrame, manifest: dict[str, Any]) -> None:
    """Write a cache entry: the table, then its manifest (whose presence marks the entry complete)."""
    table_path.parent.mkdir(parents=True, exist_ok=True)
    paths.atomic_write(table_path, lambda tmp: table.to_csv(tmp, index=False))
    text = json.dumps({**manifest, "source": source_digest(), "created": time.time()}, indent=1, default=str)
    paths.atomic_write(table_path.with_suffix(".json"), lambda tmp: tmp.write_text(text, encoding="utf-8"))


def cached(
    stem: str,
    name: str,
    inputs: Mapping[str, Any],
    compute: Callable[[], pd.DataFrame],
    *,
    use_cache: bool = True,
    root: Path | None = None,
) -> pd.DataFrame:
    """Return the table ``compute()`` would return, from the cache when its key is there.

    Parameters
    ----------
    stem
        Chapter stem, the cache namespace (``build/cache/<stem>/``).
    name
        Name of the table within the chapter.
    inputs
        Everything ``compute`` depends on besides the package source: parameters, seeds, data ids.
        Must be JSON-serialisable.
    compute
        Zero-argument function returning a :class:`pandas.DataFrame`.
    use_cache
        ``False`` recomputes and overwrites the entry.
    root
        Cache root, ``build/cache`` by default.

    Returns
    -------
    pandas.DataFrame
        The table; on a hit it is read back from CSV (floats round-trip exactly).
    """
    key = cache_key(name, inputs)
    folder = (root or paths.CACHE) / stem
    table_path = folder / f"{name}-{key}.csv"
    manifest_path = table_path.with_suffix(".json")
    if use_cache and table_path.exists() and manifest_path.exists():
        _log({"stem": stem, "name": name, "key": key, "hit": True})
        return pd.read_csv(table_path)
    start = time.perf_counter()
    table = compute()
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"compute for cache entry {name!r} must return a pandas.DataFrame, got {type(table)}")
    wall_s = time.perf_counter() - start
    _store(table_path, table, {"stem": stem, "name": name, "key": key, "inputs": dict(inputs), "wall_s": wall_s})
    _log({"stem": stem, "name": name, "key": key, "hit": False, "wall_s": wall_s})
    return table


def cached_rows(
    stem: str,
    name: str,
    inputs: Mapping[str, Any],
    units: Sequence[int],
    compute: Callable[[Sequence[int]], pd.DataFrame],
    *,
    chunk: int = 1,
    use_cache: bool = True,
    root: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Like :func:`cached`, for a table built unit by unit (one unit = one image), resumable.

    ``compute(units)`` returns the rows of those units with a column ``unit``. Finished chunks are
    written to ``<name>-<key>.parts/`` as they complete, so an interrupted run loses no finished unit:
    the next call computes only the missing ones. When every unit is done the parts are merged into the
    same ``<name>-<key>.csv`` + ``.json`` entry :func:`cached` would write. For the result not to depend
    on the chunking or on a resume, ``compute`` must draw each unit's randomness from its own generator
    (:func:`rs_repro.seeds.generator`).

    Parameters
    ----------
    units
        Integer identifiers of the units, in table order.
    chunk
        Units computed (and saved) together.
    progress
        Called with the number of units finished after each chunk (e.g. ``tqdm.update``).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    units = [int(u) for u in units]
    key = cache_key(name, {**dict(inputs), "units": units})
    folder = (root or paths.CACHE) / stem
    table_path = folder / f"{name}-{key}.csv"
    manifest_path = table_path.with_suffix(".json")
    parts_dir = folder / f"{name}-{key}.parts"
    if use_cache and table_path.exists() and manifest_path.exists():
        _log({"stem": stem, "name": name, "key": key, "hit": True})
        return pd.read_csv(table_path)
    if not use_cache and parts_dir.exists():
        for old in parts_dir.glob("*.csv"):
            old.unlink()
    parts_dir.mkdir(parents=True, exist_ok=True)
    done = {int(p.stem.removeprefix("unit-")): p for p in parts_dir.glob("unit-*.csv")}
    resumed = sum(u in done for u in units)
    if progress and resumed:
        progress(resumed)
    start = time.perf_counter()
    todo = [u for u in units if u not in done]
    for i in range(0, len(todo), chunk):
        block = todo[i:i + chunk]
        rows = compute(block)
        if "unit" not in rows.columns or set(rows["unit"]) != set(block):
            raise ValueError(f"compute for {name!r} must return rows with a 'unit' column covering {block}")
        for unit, part in rows.groupby("unit", sort=False):
            done[int(unit)] = paths.atomic_write(parts_dir / f"unit-{unit}.csv",
                                                 lambda tmp, part=part: part.to_csv(tmp, index=False))
        if progress:
            progress(len(block))
    table = pd.concat([pd.read_csv(done[u]) for u in units], ignore_index=True)
    wall_s = time.perf_counter() - start
    _store(table_path, table, {"stem": stem, "name": name, "key": key, "inputs": dict(inputs), "units": len(units),
                               "resumed_units": resumed, "wall_s": wall_s})
    for path in done.values():
        path.unlink()
    parts_dir.rmdir()
    _log({"stem": stem, "name": name, "key": key, "hit": False, "resumed_units": resumed, "wall_s": wall_s})
    return table
