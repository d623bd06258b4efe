"""Content-addressed cache of computed tables (``docs/architecture.md``, "The cache rule").

A chapter's results are the tidy :class:`pandas.DataFrame` tables of its work units (:mod:`rs_repro.pipeline.engine`),
stored as ``build/cache/<stem>/<unit id>-<key>.csv`` beside a ``.json`` manifest (:func:`store`,
:func:`read_entry`). The key hashes the arguments the unit's function receives together with the code it
reads (:func:`code_digest`): the modules of the computation and every module of the package they import,
read as code (docstrings and comments do not count). A change of either recomputes, so nothing stale is ever read
back, and an edit elsewhere (a figure's style, the paper's readings, the prose) recomputes nothing. Every
hit and miss is appended to the run log of the chapter run (``run_log`` of :class:`rs_repro.pipeline.context.RunContext`),
which is how the provenance box counts cache hits.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import sys
import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from rs_repro.pipeline import context, paths

#: Modules that run chapters but compute no result; editing them changes no page (:func:`source_digest`).
PIPELINE_MODULES = ("pipeline/book.py", "pipeline/cli.py", "pipeline/headless.py", "pipeline/terminal.py")
#: The runner's subpackage. It decides where and when a unit runs, never what it computes (the one setting
#: that changes a number, the thread count, enters every key as a value), so the closure of :func:`code_digest`
#: does not enter it.
RUNNER = "rs_repro.pipeline"


def _module_file(name: str) -> Path | None:
    """The source file of package module ``name`` (``rs_repro.a.b``) under :data:`rs_repro.pipeline.paths.PACKAGE`."""
    parts = name.split(".")[1:]
    base = paths.PACKAGE.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _strip(tree: ast.Module) -> ast.Module:
    """``tree`` without docstrings."""
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


def _imports(name: str, tree: ast.Module, is_package: bool) -> set[str]:
    """The package modules ``name`` imports, anywhere in its code (function-level imports included)."""
    found = set()
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level \
                else node.module or ""
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {m for m in found if m.split(".")[0] == "rs_repro" and _module_file(m) is not None}


_parsed: dict[tuple[str, Path, bytes], tuple[str, set[str]]] = {}


def _module_code(name: str, path: Path) -> tuple[str, set[str]]:
    """The code of module ``name`` as text (its stripped syntax tree) and the package modules it imports.

    Parsed once per content of the file, so the many keys of a chapter's units cost one parse of each module.
    """
    source = path.read_bytes()
    stamp = (name, path, hashlib.sha256(source).digest())
    if stamp not in _parsed:
        tree = _strip(ast.parse(source, filename=str(path)))
        _parsed[stamp] = ast.dump(tree, annotate_fields=False), _imports(name, tree, path.name == "__init__.py")
    return _parsed[stamp]


def closure(modules: Sequence[str]) -> dict[str, str]:
    """The code a computation reads: ``modules`` and the package modules they import, transitively.

    Each module counts by its syntax tree without docstrings (comments and layout never count); the runner
    (:data:`RUNNER`) is not entered. A chapter's compute half imports no page, no plot, no prose and nothing
    of the report or the claims (``tests/test_chapter_contract.py``), so editing those, a docstring or a
    module no unit imports changes no key.

    Parameters
    ----------
    modules
        Dotted names of package modules, e.g. ``["rs_repro.chapters.fig5_attacks.compute"]``.

    Returns
    -------
    dict
        Module name to its code (the dump of its stripped syntax tree), for every module of the closure.
    """
    todo, seen = list(modules), {}
    while todo:
        name = todo.pop()
        if name in seen or name == RUNNER or name.startswith(RUNNER + "."):
            continue
        path = _module_file(name)
        if path is None:
            raise ValueError(f"modules: {name!r} is no module of the package under {paths.PACKAGE}")
        seen[name], imported = _module_code(name, path)
        todo += sorted(imported)
    return seen


def code_digest(modules: Sequence[str]) -> str:
    """sha256 hex digest of :func:`closure` of ``modules`` (module names and code, sorted by name): the part of
    a unit's key that changes when the code it reads changes, and only then."""
    seen = closure(modules)
    h = hashlib.sha256()
    for name in sorted(seen):
        h.update(f"{name}\0{seen[name]}\0".encode())
    return h.hexdigest()


@lru_cache(maxsize=1)
def source_digest() -> str:
    """sha256 of the package's ``.py`` files (relative path and bytes, sorted), but the pipeline modules.

    What a published page depends on (its figures and prose change with any module); the cached tables
    depend only on :func:`code_digest` of their computation.
    """
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


def log_lookup(event: dict[str, Any]) -> None:
    """Append one hit or miss to the run log of the chapter run (:func:`rs_repro.pipeline.context.current`), if any."""
    target = context.current().run_log
    if target:
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(event) + "\n")


def read_table(path: Path) -> pd.DataFrame:
    """A cached table read back exactly: every float is the float that was written (pandas' default CSV
    parser can be off by one unit in the last place, e.g. 448/450)."""
    return pd.read_csv(path, float_precision="round_trip")


def file_sha256(path: Path) -> str:
    """sha256 hex digest of the bytes of file ``path``, read 1 MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _manifest(table_path: Path, key: str) -> tuple[dict[str, Any] | None, str | None]:
    """The manifest of the cache entry at ``table_path`` if the entry is sound so far, else what is wrong.

    Sound so far: the manifest (``<table>.json``) is a JSON object naming ``key`` with a SHA-256 and a row
    count, and the table's SHA-256 is the one it records (:func:`read_entry` then checks the rows).
    """
    manifest_path = table_path.with_suffix(".json")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"its manifest {manifest_path} cannot be read as JSON ({type(exc).__name__})"
    if not isinstance(manifest, dict) or manifest.get("key") != key:
        return None, f"its manifest {manifest_path} is not that of key {key}"
    if not (isinstance(manifest.get("sha256"), str) and isinstance(manifest.get("rows"), int)):
        return None, f"its manifest {manifest_path} records no SHA-256 and row count (written by an older version)"
    if file_sha256(table_path) != manifest["sha256"]:
        return None, f"{table_path} does not match the SHA-256 its manifest records"
    return manifest, None


def read_entry(stem: str, name: str, key: str, table_path: Path) -> pd.DataFrame | None:
    """The table of the cache entry at ``table_path``, or ``None`` when it must be computed.

    ``None`` when the entry is absent or incomplete (no manifest yet). A damaged entry (a table cut, emptied,
    replaced or of another number of rows than its manifest records, a manifest that is unreadable or not
    the entry's) is reported on standard error and in the run log, deleted, and counts as a miss: the cache
    never serves a table other than the one it stored.
    """
    if not (table_path.exists() and table_path.with_suffix(".json").exists()):
        return None
    manifest, problem = _manifest(table_path, key)
    if manifest is not None:
        try:
            table = read_table(table_path)
        except (OSError, ValueError, pd.errors.ParserError) as exc:  # EmptyDataError is a ValueError
            problem = f"{table_path} cannot be read as a table ({exc})"
        else:
            if len(table) != manifest["rows"]:
                problem = f"{table_path} has {len(table)} rows, not the number its manifest records"
    if problem is not None:
        print(f"[rs-repro] cache entry {stem}/{name} discarded and recomputed: {problem}", file=sys.stderr,
              flush=True)
        log_lookup({"stem": stem, "name": name, "key": key, "damaged": problem})
        table_path.with_suffix(".json").unlink(missing_ok=True)
        table_path.unlink(missing_ok=True)
        return None
    log_lookup({"stem": stem, "name": name, "key": key, "hit": True})
    return table


def store(table_path: Path, table: pd.DataFrame, manifest: dict[str, Any]) -> None:
    """Write a cache entry: the table, then its manifest with the table's SHA-256 and row count (whose
    presence marks the entry complete, :func:`read_entry`)."""
    table_path.parent.mkdir(parents=True, exist_ok=True)
    paths.atomic_write(table_path, lambda tmp: table.to_csv(tmp, index=False))
    text = json.dumps({**manifest, "sha256": file_sha256(table_path), "rows": len(table), "created": time.time()},
                      indent=1, default=str)
    paths.atomic_write(table_path.with_suffix(".json"), lambda tmp: tmp.write_text(text, encoding="utf-8"))
