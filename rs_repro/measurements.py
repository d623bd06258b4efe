"""The numbers a chapter measured, kept for the claims chapter (DESIGN.md, "Flow of one chapter").

Each chapter ends by recording the few numbers that decide the paper's claims (a distortion per model,
a spread per n, a crossing distance) with :func:`record`. They are written to
``build/results/<stem>/measurements.json`` with the profile the chapter ran under, so the ``claims``
chapter reads them back with :func:`load` and computes nothing again.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from . import paths

#: Set by the chapter runner (:func:`rs_repro.book.run_chapter`) while a chapter executes.
PROFILE_ENV = "RS_REPRO_PROFILE"


def path(stem: str) -> Path:
    """``build/results/<stem>/measurements.json``."""
    return paths.BUILD / "results" / stem / "measurements.json"


def record(stem: str, values: dict[str, Any]) -> Path:
    """Write ``values`` (JSON-serialisable) as the measurements of chapter ``stem``, atomically.

    The record carries the profile the chapter runs under (``None`` outside the chapter runner) and the
    time it was written.
    """
    target = path(stem)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {"stem": stem, "profile": os.environ.get(PROFILE_ENV), "created": time.time(), "values": values}
    text = json.dumps(payload, indent=1, default=float)
    return paths.atomic_write(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def load(stem: str, profile: str | None = None) -> dict[str, Any] | None:
    """The measurements chapter ``stem`` recorded, or ``None`` if it has none for ``profile``.

    With ``profile=None`` any profile is accepted.
    """
    target = path(stem)
    if not target.exists():
        return None
    payload = json.loads(target.read_text(encoding="utf-8"))
    if profile is not None and payload.get("profile") != profile:
        return None
    return payload
