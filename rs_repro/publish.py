"""Results computed on another machine (a GPU), brought back with their provenance (issue 13, item 5).

A profile run elsewhere, e.g. ``make book PROFILE=imagenet`` on a GPU machine, is packed there by
:func:`export` (``rs-repro export --profile imagenet results-imagenet.tar.gz``): the measurements every
chapter recorded under the profile (:mod:`rs_repro.measurements`), its executed pages (tables and figures
inline, with their provenance box), its figure files and the tables it wrote under ``build/results``, and a
manifest with the SHA-256 of every file and :func:`stamp` of the exporting machine. :func:`import_archive`
(``rs-repro import results-imagenet.tar.gz``) checks the archive and puts the measurements where the claims
chapter reads them, so that its table across profiles shows the profile's column on a machine that never ran
it; the rest goes to ``build/published/<profile>/``. Every measurement file carries the :func:`stamp` of the
run that wrote it (commit, machine, versions, time), which the claims chapter shows beside its column.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import json
import os
import platform
import subprocess
import tarfile
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from . import paths

#: The packages whose versions a :func:`stamp` records.
VERSIONED = ("rs_repro", "torch", "torchvision", "numpy", "scipy", "matplotlib", "papermill", "jupytext",
             "jupyter-book")

#: The name of the manifest inside an archive and in ``build/published/<profile>/``.
MANIFEST = "manifest.json"

#: The version of the archive layout :func:`import_archive` reads.
FORMAT = 1


class ArchiveError(ValueError):
    """An archive that cannot be exported or imported; the message names the file and what is wrong."""


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


def published_dir(profile: str) -> Path:
    """``build/published/<profile>/``: what :func:`import_archive` brought back for ``profile``."""
    return paths.BUILD / "published" / profile


def imported(profile: str) -> dict[str, Any] | None:
    """The manifest of the archive ``profile`` was imported from, or None if it was computed here."""
    path = published_dir(profile) / MANIFEST
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _members(profile: str) -> dict[str, Path]:
    """The files of ``profile`` to export, by their name in the archive."""
    from . import measurements

    members = {f"measurements/{stem}.json": measurements.path(stem, profile) for stem in measurements.SCHEMA
               if measurements.path(stem, profile).exists()}
    for page in sorted(paths.CHAPTERS.glob("*.ipynb")):
        stem = page.stem
        meta = json.loads(page.read_text(encoding="utf-8")).get("metadata", {}).get("rs_repro", {})
        if meta.get("profile") != profile:
            continue
        members[f"pages/{stem}.ipynb"] = page
        parameters = meta.get("parameters", {})
        for path in sorted(_under_root(parameters.get("figures_dir", "figures")).glob(f"{stem}*")):
            members[f"figures/{path.name}"] = path
        if "results_dir" in parameters:  # the tables the chapter wrote (Fig. 4's certification logs)
            tables = _under_root(parameters["results_dir"]) / stem
            for path in sorted(tables.glob(f"{parameters.get('dataset', '')}-*.tsv")):
                members[f"tables/{stem}/{path.name}"] = path
    return members


def _under_root(folder: str) -> Path:
    """A chapter's folder parameter as a path: relative ones are relative to the repository root."""
    path = Path(folder)
    return path if path.is_absolute() else paths.ROOT / path


def export(profile: str, archive: str | Path) -> Path:
    """Pack what ``profile`` computed on this machine into ``archive`` (a ``.tar.gz``).

    Parameters
    ----------
    profile : str
        The profile whose measurements, pages (those whose provenance names this profile), figures and
        tables are packed.
    archive : str or pathlib.Path
        The file to write (atomically).

    Returns
    -------
    pathlib.Path
        ``archive``.

    Raises
    ------
    ArchiveError
        Nothing recorded under ``profile`` here (no measurement file).
    """
    members = _members(profile)
    if not any(name.startswith("measurements/") for name in members):
        raise ArchiveError(f"profile={profile!r} is not accepted; no chapter recorded measurements under it in "
                         f"{paths.BUILD / 'results'} (run `make book PROFILE={profile}` first)")
    contents = {name: path.read_bytes() for name, path in members.items()}
    manifest = {"format": FORMAT, "profile": profile, "exported": stamp(),
                "files": {name: _sha256(data) for name, data in contents.items()}}
    contents[MANIFEST] = json.dumps(manifest, indent=1).encode()
    archive = Path(archive)
    archive.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with tarfile.open(tmp, "w:gz") as tar:
            for name, data in sorted(contents.items()):
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tar.addfile(info, io.BytesIO(data))

    return paths.atomic_write(archive, write)


def _read(archive: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest and the checked files of ``archive``; :class:`ArchiveError` on anything unexpected."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            files: dict[str, bytes] = {}
            for info in tar.getmembers():
                name = PurePosixPath(info.name)
                if not info.isfile() or name.is_absolute() or ".." in name.parts:
                    raise ArchiveError(f"archive {archive} holds {info.name!r}, which is not a plain relative file")
                files[info.name] = tar.extractfile(info).read()  # type: ignore[union-attr]
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise ArchiveError(f"archive={str(archive)!r} is not accepted; expected a .tar.gz written by "
                         f"rs-repro export ({exc})") from exc
    if MANIFEST not in files:
        raise ArchiveError(f"archive {archive} has no {MANIFEST}; expected an archive written by rs-repro export")
    manifest = json.loads(files.pop(MANIFEST))
    if manifest.get("format") != FORMAT:
        raise ArchiveError(f"archive {archive} has format {manifest.get('format')!r}; this version reads {FORMAT}")
    if set(files) != set(manifest["files"]):
        raise ArchiveError(f"archive {archive}: files {sorted(set(files) ^ set(manifest['files']))} differ from "
                         "its manifest")
    for name, data in files.items():
        if _sha256(data) != manifest["files"][name]:
            raise ArchiveError(f"archive {archive}: {name} does not match its SHA-256 in the manifest")
    return manifest, files


def import_archive(archive: str | Path, *, replace: bool = False) -> dict[str, Any]:
    """Bring back what :func:`export` packed on another machine.

    The measurements go to ``build/results/<stem>/measurements/<profile>.json``, where
    :func:`rs_repro.measurements.load` and the claims chapter read them; pages, figures, tables and the
    manifest go to :func:`published_dir`. Re-run the claims chapter afterwards (``make chapter CH=claims``).

    Parameters
    ----------
    archive : str or pathlib.Path
        A ``.tar.gz`` written by :func:`export`.
    replace : bool, optional
        Overwrite measurements that this machine computed itself under the same profile (refused by default;
        those of an earlier import are always replaced).

    Returns
    -------
    dict
        The archive's manifest (``profile``, ``exported``: the exporting machine's :func:`stamp`, ``files``).

    Raises
    ------
    ArchiveError
        Not an archive of :func:`export`, a file that does not match the manifest, a record that
        :mod:`rs_repro.measurements` cannot read, or local measurements of the profile without ``replace``.
    """
    from . import measurements

    archive = Path(archive)
    manifest, files = _read(archive)
    profile = manifest["profile"]
    records = {PurePosixPath(name).stem: data for name, data in files.items() if name.startswith("measurements/")}
    local = [stem for stem in records if measurements.path(stem, profile).exists()]
    if local and imported(profile) is None and not replace:
        raise ArchiveError(f"profile {profile!r} was computed on this machine too ({', '.join(sorted(local))}); "
                         "pass replace=True (rs-repro import --replace) to overwrite it with the archive's")
    for stem, data in records.items():  # each must decode as its chapter's record before anything is written
        payload = json.loads(data)
        if payload.get("stem") != stem or payload.get("profile") != profile:
            raise ArchiveError(f"archive {archive}: measurements/{stem}.json is not {stem}'s record of {profile!r}")
        try:
            measurements.decode(stem, payload)
        except ValueError as exc:
            raise ArchiveError(f"archive {archive}: {exc}") from exc
    folder = published_dir(profile)
    for name, data in files.items():
        target = (measurements.path(PurePosixPath(name).stem, profile) if name.startswith("measurements/")
                  else folder / name)
        target.parent.mkdir(parents=True, exist_ok=True)
        paths.atomic_write(target, lambda tmp, data=data: tmp.write_bytes(data))
    manifest["archive"] = archive.name
    folder.mkdir(parents=True, exist_ok=True)
    paths.atomic_write(folder / MANIFEST, lambda tmp: tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8"))
    return manifest
