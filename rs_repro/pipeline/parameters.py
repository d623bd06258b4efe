"""A chapter's parameters: declared in its notebook, set by a profile and the command line, checked early.

One chapter is one MyST notebook ``book/notebooks/<stem>.md`` with exactly one code cell tagged
``parameters`` holding annotated literals (``n: int = 100  # help``). A profile's values
(``book/params/<profile>/<stem>.yml``) and the overrides are checked against that cell (nothing runs on an
unknown key or a wrong type), then against the chapter's own rules (``check_parameters`` of its compute half).
The cell is read from the MyST text here, so that computing a chapter (:mod:`rs_repro.pipeline.headless`)
needs neither Jupyter nor jupytext. See ``docs/architecture.md``, "Flow of one chapter".
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rs_repro import checks
from rs_repro.pipeline import paths

_SCALARS = {"int": int, "float": float, "bool": bool, "str": str}

class ChapterError(RuntimeError):
    """A chapter could not be run: bad parameters, a missing file, or a failing cell."""


@dataclass(frozen=True)
class Parameter:
    """One entry of a notebook's parameters cell.

    Attributes
    ----------
    name, annotation, default, help
        ``name: annotation = default  # help``; annotation is one of ``int``, ``float``, ``bool``,
        ``str`` or ``list[<one of those>]``.
    """

    name: str
    annotation: str
    default: Any
    help: str

    def check(self, value: Any) -> Any:
        """Return ``value`` converted to this parameter's type, or raise :class:`ChapterError`."""
        if self.annotation.startswith("list["):
            item = Parameter(self.name, self.annotation[5:-1], None, self.help)
            if not isinstance(value, list):
                raise ChapterError(f"parameter {self.name!r} must be {self.annotation}, got {value!r}")
            return [item.check(v) for v in value]
        kind = _SCALARS[self.annotation]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ChapterError(
                f"parameter {self.name!r} must be {self.annotation}, got {value!r} ({type(value).__name__})")
        return value

    def parse(self, text: str) -> Any:
        """Read a command-line value: YAML for numbers, booleans and lists, the raw text for ``str``."""
        if self.annotation == "str":
            return text
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ChapterError(f"parameter {self.name!r}: cannot read {text!r} as {self.annotation}") from exc
        return self.check(value)


def _annotation(node: ast.expr, where: str) -> str:
    text = ast.unparse(node)
    inner = text[5:-1] if text.startswith("list[") and text.endswith("]") else text
    if inner not in _SCALARS:
        raise ChapterError(f"{where}: annotation {text!r} not supported; use int, float, bool, str or list[...]")
    return text


def notebook_path(stem: str) -> Path:
    """The MyST source of chapter ``stem``; a clear error listing the chapters if there is none."""
    path = paths.NOTEBOOKS / f"{stem}.md"
    if not path.exists():
        raise ChapterError(f"unknown chapter {stem!r}; chapters are: {', '.join(chapters())}")
    return path


def chapters() -> list[str]:
    """Chapter stems in table-of-contents order (entries ``book/chapters/<stem>`` of ``_toc.yml``)."""
    toc = yaml.safe_load((paths.ROOT / "_toc.yml").read_text(encoding="utf-8"))
    stems = []
    for part in toc.get("parts", [{"chapters": toc.get("chapters", [])}]):
        for entry in part.get("chapters", []):
            file = entry.get("file", "")
            if file.startswith("book/chapters/"):
                stems.append(file.removeprefix("book/chapters/"))
    return stems


_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})\{code-cell\}")


def code_cells(text: str) -> list[tuple[dict[str, Any], str]]:
    """The code cells of a MyST notebook's text, in order: each cell's options and its source.

    A cell opens with a fence line (three or more backticks or tildes, then ``{code-cell}``) and closes with
    a line of the same fence; its options are ``:key: value`` lines or a YAML block between ``---`` lines
    at its start, their values read as YAML (``:tags: [parameters]``); the blank lines between the options
    and the code are not part of the source.

    Parameters
    ----------
    text
        The MyST Markdown source of a notebook.

    Returns
    -------
    list of (dict, str)
        Per code cell, in order: its options (``{"tags": ["parameters"]}``) and its source.
    """
    cells: list[tuple[dict[str, Any], str]] = []
    lines = text.splitlines()
    k = 0
    while k < len(lines):
        opened = _FENCE.match(lines[k])
        k += 1
        if not opened:
            continue
        fence, body = opened["fence"], []
        while k < len(lines) and lines[k].rstrip() != fence:
            body.append(lines[k])
            k += 1
        k += 1
        options: dict[str, Any] = {}
        if body and body[0].strip() == "---":
            end = body.index("---", 1) if "---" in body[1:] else len(body)
            options = yaml.safe_load("\n".join(body[1:end])) or {}
            body = body[end + 1:]
        while body and body[0].startswith(":") and ":" in body[0][1:]:
            key, _, value = body.pop(0)[1:].partition(":")
            options[key.strip()] = yaml.safe_load(value) if value.strip() else None
        while body and not body[0].strip():
            body.pop(0)
        cells.append((options, "\n".join(body)))
    return cells


def parameters(stem: str) -> dict[str, Parameter]:
    """Parse the single ``parameters`` cell of chapter ``stem`` (annotated literal assignments only)."""
    cells = [source for options, source in code_cells(notebook_path(stem).read_text(encoding="utf-8"))
             if "parameters" in (options.get("tags") or [])]
    if len(cells) != 1:
        raise ChapterError(f"chapter {stem!r} must have exactly one cell tagged 'parameters', found {len(cells)}")
    source = cells[0]
    lines = source.splitlines()
    declared: dict[str, Parameter] = {}
    for node in ast.parse(source).body:
        where = f"{stem}.md parameters cell, line {node.lineno}"
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value):
            raise ChapterError(f"{where}: only 'name: type = literal  # help' lines are allowed")
        try:
            default = ast.literal_eval(node.value)
        except ValueError as exc:
            raise ChapterError(f"{where}: the default of {node.target.id!r} is not a literal") from exc
        line = lines[node.lineno - 1]
        help_text = line.split("#", 1)[1].strip() if "#" in line[node.value.end_col_offset:] else ""
        param = Parameter(node.target.id, _annotation(node.annotation, where), default, help_text)
        param.check(default)
        declared[param.name] = param
    return declared


def _describe(declared: dict[str, Parameter]) -> str:
    return "\n".join(f"  {p.name}: {p.annotation} (default {p.default!r}){'  # ' + p.help if p.help else ''}"
                     for p in declared.values())


def profile_values(stem: str, profile: str) -> dict[str, Any]:
    """The parameter set ``book/params/<profile>/<stem>.yml``, checked against the notebook."""
    if profile not in paths.PROFILES:
        raise ChapterError(f"unknown profile {profile!r}; profiles are: {', '.join(paths.PROFILES)}")
    path = paths.PARAMS / profile / f"{stem}.yml"
    if not path.exists():
        raise ChapterError(f"chapter {stem!r} has no {profile!r} profile: {path} is missing")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ChapterError(f"{path} cannot be read as YAML: {exc}") from exc
    if not isinstance(values, dict):
        raise ChapterError(f"{path} holds a {type(values).__name__}; expected a mapping of parameter names to values")
    declared = parameters(stem)
    missing = sorted(set(declared) - set(values))
    if missing:
        raise ChapterError(f"{path}: missing parameters {missing}; the notebook declares:\n{_describe(declared)}")
    return validate(stem, values, declared)


def validate(stem: str, values: dict[str, Any], declared: dict[str, Parameter] | None = None) -> dict[str, Any]:
    """Check keys and types of ``values``; return them converted. Unknown keys list the valid ones."""
    declared = declared if declared is not None else parameters(stem)
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise ChapterError(
            f"unknown parameter(s) {', '.join(map(repr, unknown))} for chapter {stem!r}; "
            f"valid parameters:\n{_describe(declared)}")
    return {name: declared[name].check(value) for name, value in values.items()}


def parse_overrides(stem: str, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Turn ``-p key value`` pairs from the command line into typed values, checked like a profile."""
    declared = parameters(stem)
    validate(stem, {key: None for key, _ in pairs if key not in declared}, declared)  # unknown keys raise
    return {key: declared[key].parse(text) for key, text in pairs}


def compute_module(stem: str) -> str | None:
    """The name of chapter ``stem``'s compute half, ``rs_repro.chapters.<stem>.compute``, or ``None`` for a
    chapter that computes nothing (the claims)."""
    if (paths.PACKAGE / "chapters" / stem / "compute.py").is_file():
        return f"rs_repro.chapters.{stem}.compute"
    return None


def check_chapter(stem: str, values: dict[str, Any]) -> None:
    """The chapter's own rules on its parameters (``check_parameters`` of its compute half,
    :func:`compute_module`), as :class:`ChapterError`: run before papermill starts and before anything trains."""
    module = compute_module(stem)
    if module is None:
        return
    try:
        importlib.import_module(module).check_parameters(values)
    except ValueError as exc:
        raise ChapterError(f"chapter {stem!r}: {exc}") from exc


def resolve_device(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with a ``device`` of :data:`rs_repro.checks.AUTO_DEVICE` replaced by the device it means on
    this machine: ``cuda`` when ``torch.cuda.is_available()``, else ``cpu``; any other value is kept.

    The runner resolves it once, before the chapter runs, so the notebook, the units' arguments (and their
    cache keys) and the provenance box all show the concrete device.
    """
    if values.get("device") != checks.AUTO_DEVICE:
        return dict(values)
    import torch

    return {**values, "device": "cuda" if torch.cuda.is_available() else "cpu"}


def chapter_values(stem: str, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The values of chapter ``stem``'s parameters as its notebook holds them (``namespace`` is the notebook's
    ``globals()``), checked as the runner checks them before starting (types, :func:`resolve_device`, then
    :func:`check_chapter`), so a run outside the runner is held to the same rules."""
    declared = parameters(stem)
    values = resolve_device(validate(stem, {name: namespace[name] for name in declared}, declared))
    check_chapter(stem, values)
    return values
