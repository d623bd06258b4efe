"""Where things live: the repository root and the generated folders (DESIGN.md, layout)."""

from __future__ import annotations

import os
from pathlib import Path

#: The repository root: the folder holding ``_toc.yml``, ``book/`` and ``rs_repro/``.
ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
NOTEBOOKS = BOOK / "notebooks"
PARAMS = BOOK / "params"
CHAPTERS = BOOK / "chapters"
#: Generated results; ``RS_REPRO_BUILD`` moves them (the tests point it at a temporary folder).
BUILD = Path(os.environ.get("RS_REPRO_BUILD", ROOT / "build"))
CACHE = BUILD / "cache"
RUNS = BUILD / "runs"
FIGURES = ROOT / "figures"
PACKAGE = ROOT / "rs_repro"
#: Set by the chapter runner while a chapter executes: the folder its page is published to.
CHAPTERS_ENV = "RS_REPRO_CHAPTERS"
