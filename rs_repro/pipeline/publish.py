"""Results computed on another machine (a GPU), brought back with their provenance (issue 13, item 5).

A profile run elsewhere, e.g. ``make book PROFILE=imagenet`` on a GPU machine, is packed there by
:func:`export` (``rs-repro export --profile imagenet results-imagenet.tar.gz``): the measurements every
chapter recorded under the profile (:mod:`rs_repro.report.measurements`), its executed pages (tables and figures
inline, with their provenance box), its figure files and the tables it wrote under ``build/results``, and a
manifest with the SHA-256 and size of every file and :func:`rs_repro.pipeline.provenance.stamp` of the exporting machine.
:func:`import_archive` (``rs-repro import results-imagenet.tar.gz``) checks the archive and puts the
measurements where the claims chapter reads them, so that its table across profiles shows the profile's column
on a machine that never ran it; the rest goes to ``build/published/<profile>/``. Every measurement file
carries the :func:`rs_repro.pipeline.provenance.stamp` of the run that wrote it (commit, machine, versions, time), which the claims chapter
shows beside its column.

An archive comes from elsewhere and is checked before anything of it is used (issue 21, "trust boundaries"):
its profile is one of the book's profiles (:func:`check_profile`); every member has a name of the layout
:func:`export` writes, is a plain file, and has the size and SHA-256 its manifest declares, each size capped
(:data:`MAX_MEMBER`, :data:`MAX_TOTAL`) and checked on the tar headers before any member is read, then read
in chunks; every string of the manifest and of the records' stamps has its type and a bounded length without
control characters (:func:`rs_repro.pipeline.provenance.check_stamp`); every file is written inside the build folder only
(:func:`inside`). The claims chapter escapes what it shows of them (:mod:`rs_repro.report.markup`).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import IO, Any

from rs_repro.pipeline import paths, provenance
from rs_repro.pipeline.provenance import check_stamp, checked_keys, shown
from rs_repro.report import measurements
from rs_repro.report.markup import plain

#: The name of the manifest inside an archive and in ``build/published/<profile>/``.
MANIFEST = "manifest.json"

#: The version of the archive layout :func:`import_archive` reads; since version 2, ``files`` maps each name
#: to its ``sha256`` and ``size``.
FORMAT = 2

#: The largest member an archive may declare, in bytes.
MAX_MEMBER = 256 * 2**20
#: The largest sum of the members' sizes, in bytes.
MAX_TOTAL = 2**30
#: The largest manifest, in bytes.
MAX_MANIFEST = 4 * 2**20
#: The most members an archive may hold.
MAX_MEMBERS = 10_000
#: Members are read and hashed this many bytes at a time.
CHUNK = 2**20

#: A file or folder name inside an archive, of a closed alphabet, not starting with a dot.
_NAME = r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}"
#: The member names :func:`export` writes, for records, pages, figures and tables (the record's chapter in
#: group ``record``).
LAYOUT = re.compile(rf"measurements/(?P<record>{_NAME})\.json|pages/{_NAME}\.ipynb|figures/{_NAME}"
                    rf"|tables/{_NAME}/{_NAME}", re.ASCII)


class ArchiveError(ValueError):
    """An archive that cannot be exported or imported; the message names the file and what is wrong."""


def published_dir(profile: str) -> Path:
    """``build/published/<profile>/``: what :func:`import_archive` brought back for ``profile``."""
    return paths.BUILD / "published" / profile


def imported(profile: str) -> dict[str, Any] | None:
    """The manifest of the archive ``profile`` was imported from, or None if it was computed here (ValueError
    naming the file if it is not a JSON object)."""
    path = published_dir(profile) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} cannot be read: {exc}") from exc
    if type(manifest) is not dict:
        raise ValueError(f"{path} is not accepted; expected a JSON object")
    return manifest


def check_profile(name: object) -> str:
    """``name`` if it is one of the book's profiles (:data:`rs_repro.pipeline.paths.PROFILES`), else ValueError.

    A profile names folders (``build/published/<profile>/``, the records' ``<profile>.json``): only a known
    one is accepted from an archive or a results folder.
    """
    if not isinstance(name, str) or name not in paths.PROFILES:
        raise ValueError(f"profile={shown(name)} is not accepted; expected one of: {', '.join(paths.PROFILES)}")
    return name


def inside(path: str | Path, roots: Iterable[str | Path]) -> Path:
    """``path`` resolved (symbolic links followed, ``..`` removed), if it lies inside one of ``roots``
    (resolved too); else ValueError.

    Parameters
    ----------
    path : str or pathlib.Path
        A file about to be written (it need not exist).
    roots : iterable of str or pathlib.Path
        The folders it may be written in.

    Returns
    -------
    pathlib.Path
        The resolved ``path``.
    """
    resolved = Path(path).resolve()
    folders = [Path(root).resolve() for root in roots]
    if not any(resolved.is_relative_to(folder) and resolved != folder for folder in folders):
        shown = "" if str(resolved) == str(path) else f" (that is {str(resolved)!r})"
        raise ValueError(f"path={str(path)!r}{shown} is not accepted; expected a file inside "
                         f"{' or '.join(str(folder) for folder in folders)}")
    return resolved


def check_manifest(value: object) -> dict[str, Any]:
    """``value`` if it is the manifest of an archive of this :data:`FORMAT`, else ValueError naming the field.

    A manifest holds ``format``, ``profile`` (:func:`check_profile`), ``exported`` (:func:`rs_repro.pipeline.provenance.check_stamp`) and
    ``files``: for every member, its ``sha256`` (64 hexadecimal digits) and ``size`` (bytes, at most
    :data:`MAX_MEMBER`).
    """
    if isinstance(value, dict) and value.get("format") != FORMAT and value.get("format") in range(1, FORMAT):
        raise ValueError(f"format={value['format']!r} is not accepted; expected {FORMAT}: re-export the profile "
                         "with this version of rs-repro (rs-repro export)")
    manifest = checked_keys(value, "manifest", {"format", "profile", "exported", "files"})
    if manifest["format"] != FORMAT:
        raise ValueError(f"format={shown(manifest['format'])} is not accepted; expected {FORMAT}")
    check_profile(manifest["profile"])
    check_stamp(manifest["exported"], "exported")
    files = manifest["files"]
    if not isinstance(files, dict) or len(files) > MAX_MEMBERS:
        raise ValueError(f"files={shown(files)} is not accepted; expected an object of at most {MAX_MEMBERS} "
                         "members")
    for name, entry in files.items():
        _member_name(name)
        checked_keys(entry, f"files[{name!r}]", {"sha256", "size"})
        if not isinstance(entry["sha256"], str) or not re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]):
            raise ValueError(f"files[{name!r}].sha256={shown(entry['sha256'])} is not accepted; expected 64 "
                             "hexadecimal digits")
        if type(entry["size"]) is not int or not 0 <= entry["size"] <= MAX_MEMBER:
            raise ValueError(f"files[{name!r}].size={shown(entry['size'])} is not accepted; expected an int "
                             f"from 0 to {MAX_MEMBER}")
    return manifest


def _member_name(name: str) -> str:
    """``name`` if it is a member name of :data:`LAYOUT` (a record of a chapter of
    :data:`rs_repro.report.measurements.SCHEMA`), else ValueError."""
    found = LAYOUT.fullmatch(name)
    if found is None or (found["record"] is not None and found["record"] not in measurements.SCHEMA):
        raise ValueError(f"member={shown(name)} is not accepted; expected measurements/<chapter>.json, "
                         "pages/<stem>.ipynb, figures/<name> or tables/<stem>/<name>, names of letters, digits, "
                         "'.', '_' and '-'")
    return name


def summary(manifest: Mapping[str, Any]) -> str:
    """One line on an imported archive, what ``rs-repro import`` prints: its profile, its number of files,
    where, at which commit and when it was computed, and what to run next (no control character)."""
    where = manifest["exported"]
    commit = where["commit"][:10] or "unknown"
    return plain(f"{manifest['profile']}: {len(manifest['files'])} files computed on {where['machine']['host']} "
                 f"({where['machine']['accelerator']}) at commit {commit}, exported {where['time']}; now run "
                 "`make chapter CH=claims` to show its column")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _members(profile: str) -> dict[str, Path]:
    """The files of ``profile`` to export, by their name in the archive."""
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
    try:
        check_profile(profile)
        members = {_member_name(name): path for name, path in _members(profile).items()}
    except ValueError as exc:
        raise ArchiveError(f"cannot export {profile!r}: {exc}") from exc
    if not any(name.startswith("measurements/") for name in members):
        raise ArchiveError(f"profile={profile!r} is not accepted; no chapter recorded measurements under it in "
                           f"{paths.BUILD / 'results'} (run `make book PROFILE={profile}` first)")
    contents = {name: path.read_bytes() for name, path in members.items()}
    large = [name for name, data in contents.items() if len(data) > MAX_MEMBER]
    if large or sum(map(len, contents.values())) > MAX_TOTAL:
        raise ArchiveError(f"cannot export {profile!r}: {', '.join(large) or 'its files'} exceed what an import "
                           f"accepts ({MAX_MEMBER} bytes a file, {MAX_TOTAL} in all)")
    manifest = {"format": FORMAT, "profile": profile, "exported": provenance.stamp(),
                "files": {name: {"sha256": _sha256(data), "size": len(data)} for name, data in contents.items()}}
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


def _chunks(stream: IO[bytes], size: int, name: str) -> Iterator[bytes]:
    """The ``size`` bytes of member ``name``, :data:`CHUNK` at a time (ValueError if fewer arrive)."""
    left = size
    while left:
        chunk = stream.read(min(CHUNK, left))
        if not chunk:
            raise ValueError(f"{name} ends after {size - left} of its {size} bytes")
        left -= len(chunk)
        yield chunk


class _Bounded(io.RawIOBase):
    """A file whose reads are refused above :data:`CHUNK` bytes: tarfile reads a long-name or pax header's
    data in one read, which a crafted header could make as large as it likes."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or not 0 <= size <= CHUNK:
            raise ValueError(f"it holds a header of more than {CHUNK} bytes")
        return self.raw.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()


def _headers(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    """The members of ``tar`` by name, in archive order, from their headers only (no data read): each a
    plain file of a :data:`LAYOUT` name (or the manifest), once, its declared size within the caps."""
    members: dict[str, tarfile.TarInfo] = {}
    total = 0
    for info in tar:
        name = PurePosixPath(info.name)
        if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or name.is_absolute() or ".." in name.parts:
            raise ValueError(f"it holds {shown(info.name)}, which is not a plain relative file")
        if info.name != MANIFEST:
            _member_name(info.name)
        if info.name in members:
            raise ValueError(f"it holds {info.name} twice")
        if len(members) >= MAX_MEMBERS:
            raise ValueError(f"it holds more than {MAX_MEMBERS} members")
        total += info.size
        cap = MAX_MANIFEST if info.name == MANIFEST else MAX_MEMBER
        if info.size > cap or total > MAX_TOTAL:
            raise ValueError(f"{info.name} declares {info.size} bytes; accepted: {cap} bytes a member, "
                             f"{MAX_TOTAL} bytes in all")
        members[info.name] = info
    return members


def _hashed(chunks: Iterable[bytes], expected: str, name: str, sink: Callable[[bytes], object] | None = None
            ) -> None:
    """Pass member ``name``'s ``chunks`` to ``sink`` while hashing them; ValueError unless their SHA-256 is
    ``expected`` (the manifest's)."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
        if sink is not None:
            sink(chunk)
    if digest.hexdigest() != expected:
        raise ValueError(f"{name} does not match its SHA-256 in the manifest")


def _write_hashed(tmp: Path, chunks: Iterable[bytes], expected: str, name: str) -> None:
    """Write member ``name``'s ``chunks`` to ``tmp``, checked by :func:`_hashed` as they pass."""
    with tmp.open("wb") as out:
        _hashed(chunks, expected, name, out.write)


def _read(archive: Path, keep: Callable[[str], bool], target: Callable[[str], Path] | None = None,
          ) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The checked manifest of ``archive`` and the bytes of the members that ``keep`` names.

    The headers and then the manifest are checked before any other member is read; each member is then
    read in chunks and hashed, and refused if its SHA-256 differs from the manifest's. With ``target``, every
    member not kept is streamed to a temporary file beside ``target(name)`` and moved there once it
    matches. Anything unexpected raises :class:`ArchiveError` naming ``archive``.
    """
    try:
        with gzip.open(archive, "rb") as raw, tarfile.open(fileobj=_Bounded(raw), mode="r:") as tar:
            members = _headers(tar)
            if MANIFEST not in members:
                raise ValueError(f"it has no {MANIFEST}; expected an archive written by rs-repro export")
            info = members.pop(MANIFEST)
            text = b"".join(_chunks(tar.extractfile(info), info.size, MANIFEST))  # type: ignore[arg-type]
            try:
                manifest = check_manifest(json.loads(text))
            except json.JSONDecodeError as exc:
                raise ValueError(f"its {MANIFEST} is not JSON ({exc})") from exc
            declared = manifest["files"]
            if set(members) != set(declared):
                raise ValueError(f"files {sorted(set(members) ^ set(declared))} differ from its manifest")
            for name, info in members.items():
                if info.size != declared[name]["size"]:
                    raise ValueError(f"{name} does not match its SHA-256 and size in the manifest "
                                     f"({info.size} bytes; {declared[name]['size']} declared)")
            kept = {}
            for name, info in members.items():
                chunks = _chunks(tar.extractfile(info), info.size, name)  # type: ignore[arg-type]
                expected = declared[name]["sha256"]
                if keep(name):
                    parts: list[bytes] = []
                    _hashed(chunks, expected, name, parts.append)
                    kept[name] = b"".join(parts)
                elif target is not None:
                    path = target(name)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    paths.atomic_write(path, lambda tmp, chunks=chunks, expected=expected, name=name:
                                       _write_hashed(tmp, chunks, expected, name))
                else:
                    _hashed(chunks, expected, name)
    except ArchiveError:
        raise
    except (OSError, tarfile.TarError, EOFError, zlib.error) as exc:
        raise ArchiveError(f"archive={str(archive)!r} is not accepted; expected a .tar.gz written by "
                           f"rs-repro export ({exc})") from exc
    except ValueError as exc:
        raise ArchiveError(f"archive {archive} is not accepted: {exc}") from exc
    return manifest, kept


def _record(archive: Path, name: str, data: bytes, profile: str) -> None:
    """Check the record ``name`` of ``archive``: its chapter's :data:`rs_repro.report.measurements.SCHEMA` type,
    under ``profile``, with a :func:`rs_repro.pipeline.provenance.check_stamp` provenance (or none)."""
    stem = PurePosixPath(name).stem
    try:
        payload = json.loads(data)
        checked_keys(payload, name, {"stem", "profile", "created", "values"}, frozenset({"provenance"}))
        if payload["stem"] != stem or payload["profile"] != profile:
            raise ValueError(f"{name} is not {stem}'s record of {profile!r}")
        if type(payload["created"]) not in (int, float):
            raise ValueError(f"{name}.created={shown(payload['created'])} is not accepted; expected a time")
        if payload.get("provenance") is not None:
            check_stamp(payload["provenance"], f"{name}.provenance")
        measurements.decode(stem, payload)
    except ValueError as exc:  # json.JSONDecodeError included
        raise ArchiveError(f"archive {archive} is not accepted: {exc}") from exc


def import_archive(archive: str | Path, *, replace: bool = False) -> dict[str, Any]:
    """Bring back what :func:`export` packed on another machine.

    The measurements go to ``build/results/<stem>/measurements/<profile>.json``, where
    :func:`rs_repro.report.measurements.load` and the claims chapter read them; pages, figures, tables and the
    manifest go to :func:`published_dir`. Nothing is written before the whole archive is checked (names,
    sizes, hashes, manifest, records, targets inside ``build/results`` and ``build/published``). Re-run the
    claims chapter afterwards (``make chapter CH=claims``).

    Parameters
    ----------
    archive : str or pathlib.Path
        A ``.tar.gz`` written by :func:`export` (format :data:`FORMAT`).
    replace : bool, optional
        Overwrite measurements that this machine computed itself under the same profile (refused by default;
        those of an earlier import are always replaced).

    Returns
    -------
    dict
        The archive's manifest (``profile``, ``exported``: the exporting machine's :func:`rs_repro.pipeline.provenance.stamp`, ``files``)
        and ``archive``, the archive's file name; :func:`summary` says it in one line.

    Raises
    ------
    ArchiveError
        Not an archive of :func:`export` of this format, a member of another name, type or size than the
        manifest's, a manifest or a stamp of another shape (:func:`check_manifest`), a record that
        :mod:`rs_repro.report.measurements` cannot read, or local measurements of the profile without ``replace``.
    """
    archive = Path(archive)

    def record(name: str) -> bool:
        return name.startswith("measurements/")

    manifest, records = _read(archive, record)
    profile = manifest["profile"]
    for name, data in records.items():
        _record(archive, name, data, profile)
    folder = published_dir(profile)
    try:
        targets = {name: inside(measurements.path(PurePosixPath(name).stem, profile) if record(name)
                                else folder / name, [paths.BUILD / "results", paths.BUILD / "published"])
                   for name in [*manifest["files"], MANIFEST]}
    except ValueError as exc:
        raise ArchiveError(f"archive {archive} is not accepted: {exc}") from exc
    local = [PurePosixPath(name).stem for name in records if targets[name].exists()]
    if local and not targets[MANIFEST].exists() and not replace:
        raise ArchiveError(f"archive {archive}: profile {profile!r} was computed on this machine too ({', '.join(sorted(local))}); "
                           "pass replace=True (rs-repro import --replace) to overwrite it with the archive's")
    _read(archive, record, targets.__getitem__)  # streams pages, figures and tables, checked again
    for name, data in records.items():
        targets[name].parent.mkdir(parents=True, exist_ok=True)
        paths.atomic_write(targets[name], lambda tmp, data=data: tmp.write_bytes(data))
    manifest["archive"] = plain(archive.name)
    text = json.dumps(manifest, indent=1)
    targets[MANIFEST].parent.mkdir(parents=True, exist_ok=True)
    paths.atomic_write(targets[MANIFEST], lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return manifest
