"""Where things live: the repository root and the generated folders (``docs/architecture.md``, "Layers").

The API page shows these folders without their values, which are paths of the machine that built it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

#: The repository root, the folder holding ``_toc.yml``, ``book/`` and ``rs_repro/``.
#:
#: :meta hide-value:
ROOT = Path(__file__).resolve().parents[2]
#: The book's hand-written pages, ``references.bib`` and the folders below.
#:
#: :meta hide-value:
BOOK = ROOT / "book"
#: The MyST sources of the chapters, ``<stem>.md``.
#:
#: :meta hide-value:
NOTEBOOKS = BOOK / "notebooks"
#: The parameter profiles, ``<profile>/<stem>.yml``.
#:
#: :meta hide-value:
PARAMS = BOOK / "params"
#: The executed chapters, ``<stem>.ipynb``, the pages the book renders.
#:
#: :meta hide-value:
CHAPTERS = BOOK / "chapters"
#: Generated results; ``RS_REPRO_BUILD`` moves them (the tests point it at a temporary folder).
#:
#: :meta hide-value:
BUILD = Path(os.environ.get("RS_REPRO_BUILD", ROOT / "build"))
#: Where the chapter runner stages and executes a notebook before publishing it.
#:
#: :meta hide-value:
RUNS = BUILD / "runs"
#: The package source, read by the cache keys (:func:`rs_repro.pipeline.cache.code_digest`) and the pages' digest
#: (:func:`rs_repro.pipeline.cache.source_digest`).
#:
#: :meta hide-value:
PACKAGE = ROOT / "rs_repro"
#: The parameter sets every chapter has, ``book/params/<profile>/<stem>.yml`` (the README's table says what each
#: runs and what it costs); a profile also names the folders of its results.
PROFILES = ("smoke", "default", "fashion", "imagenet", "paper")


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Write ``path`` through ``write(tmp)`` on a temporary name in the same folder, then rename it.

    A reader (or an interrupted run) never sees half a file: ``path`` is either the previous file or the
    complete new one. The temporary file is removed if ``write`` fails.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
