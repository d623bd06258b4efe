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
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from . import paths

RUN_LOG_ENV = "RS_REPRO_RUN_LOG"


@lru_cache(maxsize=1)
def source_digest() -> str:
    """sha256 of every ``.py`` file of the package (relative path and bytes), in sorted order."""
    h = hashlib.sha256()
    for path in sorted(paths.PACKAGE.rglob("*.py")):
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
    folder.mkdir(parents=True, exist_ok=True)
    # Write to temporary names then rename, so an interruption never leaves a half-written entry.
    tmp_table = table_path.with_name(f".{table_path.name}.{os.getpid()}.tmp")
    table.to_csv(tmp_table, index=False)
    manifest = {"stem": stem, "name": name, "key": key, "inputs": dict(inputs),
                "source": source_digest(), "wall_s": wall_s, "created": time.time()}
    tmp_manifest = manifest_path.with_name(f".{manifest_path.name}.{os.getpid()}.tmp")
    tmp_manifest.write_text(json.dumps(manifest, indent=1, default=str), encoding="utf-8")
    os.replace(tmp_table, table_path)
    os.replace(tmp_manifest, manifest_path)
    _log({"stem": stem, "name": name, "key": key, "hit": False, "wall_s": wall_s})
    return table
