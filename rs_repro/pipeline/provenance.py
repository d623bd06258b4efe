"""Where and how a result was computed: the stamp every record and archive carries, and its checks.

:func:`stamp` describes the run that writes a result now (commit, machine, package versions, time); the
chapter records (:mod:`rs_repro.report.measurements`) and the archives of :mod:`rs_repro.pipeline.publish` carry it, and the
claims chapter shows it beside each profile's column. A stamp read back from a file made elsewhere is
checked by :func:`check_stamp` before any of its strings is used.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import re
import subprocess
from importlib import metadata
from typing import Any

from rs_repro.pipeline import paths
from rs_repro.report.markup import CONTROL

#: The packages whose versions a :func:`stamp` records.
VERSIONED = ("rs_repro", "torch", "torchvision", "numpy", "scipy", "matplotlib", "papermill", "jupytext",
             "jupyter-book")

#: The longest string accepted in a manifest or a stamp.
MAX_TEXT = 200


def git(*args: str) -> str:
    """The output of ``git <args>`` in the repository, stripped; ``''`` outside a git checkout."""
    try:
        out = subprocess.run(["git", *args], cwd=paths.ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return ""
    return out.stdout.strip()


def versions() -> dict[str, str]:
    """Python's version and those of the installed :data:`VERSIONED` packages."""
    found = {"python": platform.python_version()}
    for name in VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def machine() -> dict[str, Any]:
    """What computed a result: host name, operating system, processor, CPU cores and accelerator
    (the first CUDA device's name, ``'none'`` without one)."""
    accelerator = "none"
    with contextlib.suppress(Exception):  # torch may be absent or its CUDA runtime broken: say none
        import torch

        if torch.cuda.is_available():
            accelerator = f"{torch.cuda.get_device_name(0)} (x{torch.cuda.device_count()})"
    return {"host": platform.node(), "system": platform.platform(), "processor": platform.machine(),
            "cores": os.cpu_count() or 0, "accelerator": accelerator}


def stamp() -> dict[str, Any]:
    """The provenance of a result written now: ``commit``, ``dirty`` (uncommitted changes), ``machine``
    (:func:`machine`), ``versions`` (:func:`versions`) and ``time`` (UTC, ISO 8601, to the second)."""
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain")),
            "machine": machine(), "versions": versions(), "time": now.isoformat()}


def shown(value: object) -> str:
    """``repr(value)``, cut to 60 characters, for an error message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def checked_text(value: object, where: str) -> str:
    """``value`` if it is a string of at most :data:`MAX_TEXT` characters without control characters."""
    if not isinstance(value, str) or len(value) > MAX_TEXT or CONTROL.search(value):
        raise ValueError(f"{where}={shown(value)} is not accepted; expected a string of at most {MAX_TEXT} "
                         "characters without control characters")
    return value


def checked_keys(value: object, where: str, required: set[str], optional: frozenset[str] = frozenset()) -> dict:
    """``value`` if it is a dict with every key of ``required`` and no key outside ``required | optional``."""
    if not isinstance(value, dict) or not required <= set(value) <= required | optional:
        raise ValueError(f"{where}={shown(value)} is not accepted; expected an object with keys "
                         f"{sorted(required)}" + (f" (and optionally {sorted(optional)})" if optional else ""))
    return value


def check_stamp(value: object, where: str = "stamp") -> dict[str, Any]:
    """``value`` if it has the shape of a :func:`stamp`, else ValueError naming the field ``where.<key>``.

    ``commit`` is a lower-case hexadecimal string of at most 40 digits (``''`` outside a git checkout);
    ``dirty`` a bool; ``machine`` holds ``host`` and ``accelerator`` (and optionally ``system``,
    ``processor``: strings, ``cores``: a non-negative int); ``versions`` maps names to versions; ``time`` is
    an ISO 8601 time. Every string has at most :data:`MAX_TEXT` characters and no control character.
    """
    stamp = checked_keys(value, where, {"commit", "dirty", "machine", "versions", "time"})
    if not isinstance(stamp["commit"], str) or not re.fullmatch(r"[0-9a-f]{0,40}", stamp["commit"]):
        raise ValueError(f"{where}.commit={shown(stamp['commit'])} is not accepted; expected a git commit "
                         "(at most 40 hexadecimal digits) or ''")
    if type(stamp["dirty"]) is not bool:
        raise ValueError(f"{where}.dirty={shown(stamp['dirty'])} is not accepted; expected true or false")
    host = checked_keys(stamp["machine"], f"{where}.machine", {"host", "accelerator"},
                 frozenset({"system", "processor", "cores"}))
    for key in ("host", "accelerator", "system", "processor"):
        if key in host:
            checked_text(host[key], f"{where}.machine.{key}")
    cores = host.get("cores", 0)
    if type(cores) is not int or cores < 0:
        raise ValueError(f"{where}.machine.cores={shown(cores)} is not accepted; expected a non-negative int")
    found = stamp["versions"]
    if not isinstance(found, dict) or len(found) > 100:
        raise ValueError(f"{where}.versions={shown(found)} is not accepted; expected an object of at most 100 "
                         "names and versions")
    for name, version in found.items():
        checked_text(version, f"{where}.versions.{checked_text(name, f'{where}.versions key')}")
    try:
        datetime.datetime.fromisoformat(checked_text(stamp["time"], f"{where}.time"))
    except ValueError as exc:
        raise ValueError(f"{where}.time={shown(stamp['time'])} is not accepted; expected an ISO 8601 time") \
            from exc
    return stamp
