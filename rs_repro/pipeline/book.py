"""The chapter pipeline: validate parameters, execute a MyST notebook with papermill, publish, build.

One chapter is one MyST notebook ``book/notebooks/<stem>.md`` with exactly one code cell tagged
``parameters`` holding annotated literals (``n: int = 100  # help``). A run takes the profile's values
(``book/params/<profile>/<stem>.yml``), applies the overrides, checks every key and type against that
cell (nothing runs on an unknown key or a wrong type), executes the notebook with papermill, appends a
provenance box, and moves the result atomically to ``book/chapters/<stem>.ipynb``. A failed run leaves
the previous page in place and names the failing cell. See ``docs/architecture.md``, "Flow of one chapter".
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat

from rs_repro.pipeline import cache, context, engine, headless, paths, progress, provenance, runtime, terminal
from rs_repro.pipeline.parameters import (
    ChapterError,
    chapters,
    check_chapter,
    compute_module,
    notebook_path,
    profile_values,
    resolve_device,
    validate,
)
from rs_repro.report import measurements, plots

KERNEL = "python3"
#: The chapter that reads the other chapters' measurements (see :mod:`rs_repro.report.measurements`).
SUMMARY_CHAPTER = "claims"


def read_notebook(stem: str) -> nbformat.NotebookNode:
    """The chapter's MyST source read by jupytext as a notebook."""
    import jupytext

    return jupytext.read(notebook_path(stem))


def chapter_digest(stem: str, values: dict[str, Any]) -> str:
    """What a chapter's page depends on: its source, its parameter values and the package source."""
    h = hashlib.sha256()
    h.update(notebook_path(stem).read_bytes())
    h.update(cache.canonical_json(values).encode())
    h.update(cache.source_digest().encode())
    return h.hexdigest()[:16]


def rerun_command(stem: str, profile: str, overrides: dict[str, Any]) -> str:
    """The command that re-runs this chapter with the same parameters."""
    args = " ".join(f"-p {k} {shlex.quote(_cli_text(v))}" for k, v in overrides.items())
    return f"make chapter CH={stem} PROFILE={profile}" + (f" P={shlex.quote(args)}" if args else "")


def _cli_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return json.dumps(value) if isinstance(value, list) else str(value)


def _provenance_cell(record: dict[str, Any]) -> nbformat.NotebookNode:
    rows = "\n".join(f"| `{k}` | `{v!r}` |" for k, v in record["parameters"].items())
    versions = ", ".join(f"{k} {v}" for k, v in record["versions"].items())
    hits = record["cache"]
    text = (
        ":::{admonition} Provenance of this page\n:class: note dropdown\n\n"
        f"- commit: `{record['commit'] or 'not a git checkout'}`{' (uncommitted changes)' if record['dirty'] else ''}\n"
        f"- profile: `{record['profile']}`; wall time: {record['wall_s']:.1f} s; "
        f"cache: {hits['hits']} hit(s), {hits['misses']} miss(es)"
        f"{', ' + str(hits['damaged']) + ' damaged entry(ies) discarded' if hits.get('damaged') else ''}\n"
        f"- versions: {versions}\n"
        f"- re-run: `{record['command']}`\n\n"
        f"| parameter | value |\n|---|---|\n{rows}\n:::\n"
    )
    return nbformat.v4.new_markdown_cell(text, metadata={"tags": ["provenance"]})


def _failing_cell(nb_path: Path, stem: str) -> str:
    """Describe the cell of an executed notebook that raised, numbered as in the MyST source."""
    nb = nbformat.read(nb_path, as_version=4)
    code_cells = [c for c in nb.cells
                  if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]
    for number, cell in enumerate(code_cells, start=1):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                first = next((line for line in cell.source.splitlines() if line.strip()), "")
                return (f"code cell {number} of {stem}.md (starting {first.strip()[:60]!r}): "
                        f"{output.get('ename')}: {output.get('evalue')}")
    return "no cell recorded an error"


def _engine(workers: int | None, scheduler: str | None) -> tuple[int | None, str | None]:
    """:func:`rs_repro.pipeline.engine.engine_options` and :func:`rs_repro.pipeline.engine.check_scheduler`, their errors as
    :class:`ChapterError` (before anything runs)."""
    try:
        workers, scheduler = engine.engine_options(workers, scheduler)
        if scheduler:
            engine.check_scheduler(scheduler)
    except ValueError as exc:
        raise ChapterError(str(exc)) from exc
    return workers, scheduler


def _shown(path: Path) -> str:
    """``path`` as a page may show it: relative to the repository root, else the file name alone."""
    path = path.resolve()
    return path.relative_to(paths.ROOT).as_posix() if path.is_relative_to(paths.ROOT) else path.name


def _drop_parameter_parsing_warnings(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(("Passed unknown parameter", "Unable to parse line"))


def run_chapter(stem: str, profile: str = "default", overrides: dict[str, Any] | None = None, *,
                timeout: int = 3600, chapters_dir: Path | None = None, workers: int | None = None,
                scheduler: str | None = None) -> Path:
    """Execute chapter ``stem`` with a profile and overrides, and publish it atomically.

    Parameters
    ----------
    stem
        Chapter stem, e.g. ``"theory"``.
    profile
        One of :data:`rs_repro.pipeline.paths.PROFILES`: the base parameter set (a ``device`` of ``auto`` is resolved here,
        :func:`rs_repro.pipeline.parameters.resolve_device`).
    overrides
        Values replacing the profile's; every key must be a declared parameter.
    timeout
        Per-cell execution timeout in seconds.
    chapters_dir
        Where the executed page goes, ``book/chapters`` by default.
    workers, scheduler
        Where the chapter's work units run (:mod:`rs_repro.pipeline.engine`): ``workers`` local Dask worker
        processes, or the Dask cluster at ``scheduler``; in the kernel's process by default (or on the
        cluster ``RS_REPRO_SCHEDULER`` names).

    Returns
    -------
    pathlib.Path
        The published notebook ``<chapters_dir>/<stem>.ipynb``.

    Raises
    ------
    ChapterError
        On an unknown parameter or profile, a wrong type, a run of the same chapter already under way, or
        a failing cell (the previous page and figures are kept).

    Notes
    -----
    Each run has its own folder ``build/runs/<stem>/<UTC time>-<suffix>/`` (staged and executed
    notebook, cache log, progress events, figures, provenance); a failed or interrupted run keeps it and
    says where, and the :data:`KEPT_RUNS` newest finished runs keep theirs. A run holds the chapter's lock
    while it executes, so two runs of one chapter never write the same page, figures or measurements. The
    figures and the chapter's measurement record are written to the run's folder and moved into place only
    once the page is published.
    """
    workers, scheduler = _engine(workers, scheduler)
    overrides = validate(stem, dict(overrides or {}))
    values = resolve_device({**profile_values(stem, profile), **overrides})
    check_chapter(stem, values)
    chapters_dir = chapters_dir or paths.CHAPTERS
    with headless.chapter_lock(stem), _kernel_sockets() as sockets:
        computed = None
        if compute_module(stem) is not None:  # the numbers first, without Jupyter; the page then reads them
            computed = headless.compute_values(stem, profile, values, workers=workers, scheduler=scheduler,
                                               record=False)
            print(f"[rs-repro] {stem} computed in {progress.clock(computed.wall_s)}: {computed.misses} units "
                  f"computed, {computed.hits} read from the cache", flush=True)
        run_dir = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%dT%H%M%S-", time.gmtime()),
                                        dir=paths.RUNS / stem))
        chapters_dir.mkdir(parents=True, exist_ok=True)
        try:
            page = _execute(stem, profile, values, overrides, run_dir, chapters_dir, Path(sockets),
                            timeout=timeout, workers=workers, scheduler=scheduler, computed=computed)
        except BaseException:
            print(f"[rs-repro] {stem}: the run's files are kept in {run_dir}", file=sys.stderr, flush=True)
            raise
        _prune_runs(stem)
        return page


#: The longest path a Unix socket's address holds (``sun_path``: 108 bytes on Linux, 104 on macOS, with its NUL).
SOCKET_PATH_MAX = 103


def _kernel_sockets() -> tempfile.TemporaryDirectory:
    """A private folder ``rsk-*`` for the kernel's IPC sockets (``<folder>/kernel-<n>``), in the temporary
    folder (``TMPDIR``), or in ``/tmp`` where that folder's path is too long for a socket's address."""
    base = tempfile.gettempdir()
    if len(os.fsencode(base)) + len("/rsk-12345678/kernel-99") > SOCKET_PATH_MAX:
        base = "/tmp"
    return tempfile.TemporaryDirectory(prefix="rsk-", dir=base)


#: How many finished runs of a chapter keep their folder under ``build/runs/<stem>/``.
KEPT_RUNS = 3


def _prune_runs(stem: str) -> None:
    """Remove all but the :data:`KEPT_RUNS` newest run folders of ``stem`` (their names sort by time)."""
    runs = sorted(p for p in (paths.RUNS / stem).iterdir() if p.is_dir())
    for old in runs[:-KEPT_RUNS]:
        shutil.rmtree(old, ignore_errors=True)


def _execute(stem: str, profile: str, values: dict[str, Any], overrides: dict[str, Any], run_dir: Path,
             chapters_dir: Path, sockets: Path, *, timeout: int, workers: int | None,
             scheduler: str | None, computed: headless.Computed | None) -> Path:
    """Execute the chapter in ``run_dir``; publish its page and then its figures (:func:`run_chapter`).
    ``computed`` is what the compute step did, which the provenance box reports."""
    import jupytext
    import papermill
    from traitlets.config import Config

    staging = run_dir / "input.ipynb"
    nb = read_notebook(stem)
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    jupytext.write(nb, staging, fmt="ipynb")
    executed = run_dir / "executed.ipynb"
    log = run_dir / "cache-log.jsonl"
    events = run_dir / "progress.jsonl"
    figures, records = run_dir / "figures", run_dir / "measurements"
    # The kernel must draw with IPython's inline backend: under MPLBACKEND=Agg (the Makefile's, for the
    # tests) a glued figure would carry only its text/plain repr and the page would show no image.
    # The malloc thresholds keep the forward passes' activations in the process (rs_repro.pipeline.runtime).
    # Everything else the kernel needs to know of this run is its context (rs_repro.pipeline.context): the chapter's
    # progress bars report to `events`, shown in this terminal (rs_repro.pipeline.progress); its figures and its
    # record are written to `figures` and `records`, and moved into place once the page is published.
    run = context.RunContext(profile=profile, run_log=str(log), progress=str(events), figures=str(figures),
                             records=str(records), chapters=str(chapters_dir.resolve()), workers=workers,
                             scheduler=scheduler, computed=compute_module(stem) is not None)
    kernel_env = {**run.environment(), "MPLBACKEND": "module://matplotlib_inline.backend_inline",
                  **runtime.malloc_env()}
    env_before = {name: os.environ.get(name) for name in kernel_env}
    os.environ.update(kernel_env)
    # The parameters were validated above; papermill's own parser misreads annotated defaults such as
    # `sigmas: list[float] = []` and would warn "Unable to parse line" and "Passed unknown parameter".
    for name in ("papermill", "papermill.translators"):
        logging.getLogger(name).addFilter(_drop_parameter_parsing_warnings)
    start = time.perf_counter()
    try:
        # The kernel talks to us over IPC sockets in a private temporary folder: over TCP, ipykernel warns
        # in the terminal that the channel is unencrypted, and IPC socket files would land in the cwd.
        with terminal.ChapterProgress(stem, nb, events) as shown:
            transport = Config({"KernelManager": {"transport": "ipc", "ip": str(sockets / "kernel")}})
            papermill.execute_notebook(staging, executed, parameters=values, kernel_name=KERNEL,
                                       cwd=str(paths.ROOT), progress_bar=False, execution_timeout=timeout,
                                       on_cell_start=shown.cell_start, config=transport)
    except papermill.PapermillExecutionError as exc:
        raise ChapterError(f"chapter {stem!r} failed at {_failing_cell(executed, stem)}; the previous page and "
                           f"figures are kept; the failed notebook is {executed}") from exc
    finally:
        for name, before in env_before.items():
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before
    wall_s = time.perf_counter() - start

    lookups = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    counts = {"hits": sum(bool(e.get("hit")) for e in lookups), "misses": sum(e.get("hit") is False for e in lookups),
              "damaged": sum("damaged" in e for e in lookups)}
    if computed is not None:  # the units were computed (or found) by the compute step; the page only read them
        counts = {name: getattr(computed, name) for name in counts}
        wall_s += computed.wall_s
    record = {
        "stem": stem, "profile": profile, "parameters": values, "overrides": overrides,
        "digest": chapter_digest(stem, values), "commit": provenance.git("rev-parse", "HEAD"),
        "dirty": bool(provenance.git("status", "--porcelain")), "versions": provenance.versions(), "wall_s": wall_s,
        "cache": counts,
        "command": rerun_command(stem, profile, overrides), "finished": time.time(),
    }
    out = nbformat.read(executed, as_version=4)
    for cell in out.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "parameters" in tags:
            tags.append("remove-cell")
        if "injected-parameters" in tags:
            tags.append("hide-input")
    out.cells.append(_provenance_cell(record))
    out.metadata["rs_repro"] = record
    # papermill records where it read and wrote; the page shows no path of this machine (the repository's
    # own files are named from its root, any other by its name alone).
    target = chapters_dir / f"{stem}.ipynb"
    out.metadata.setdefault("papermill", {}).update(input_path=_shown(notebook_path(stem)), output_path=_shown(target))
    (run_dir / "provenance.json").write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")

    paths.atomic_write(target, lambda tmp: nbformat.write(out, tmp))
    plots.move_staged(figures)
    measurements.move_staged(records, profile)
    return target


def page_digest(stem: str, chapters_dir: Path | None = None) -> str | None:
    """The digest recorded in the published page of ``stem``, ``None`` if there is no page."""
    target = (chapters_dir or paths.CHAPTERS) / f"{stem}.ipynb"
    if not target.exists():
        return None
    return nbformat.read(target, as_version=4).metadata.get("rs_repro", {}).get("digest")


def stale(profile: str, chapters_dir: Path | None = None) -> list[str]:
    """Chapters whose page is missing or was made from another source, parameter set or package code."""
    return [stem for stem in chapters() if page_digest(stem, chapters_dir)
            != chapter_digest(stem, resolve_device(profile_values(stem, profile)))]


def build_html(strict: bool = True, root: Path | None = None) -> Path:
    """Render the executed chapters with Jupyter Book (execution off) into ``<root>/_build/html``.

    ``strict`` turns every warning into an error (``-W -n --keep-going``); ``root`` is the book's root
    (the folder of ``_config.yml``), the repository by default.
    """
    root = root or paths.ROOT
    args = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(root)]
    if strict:
        args += ["-W", "-n", "--keep-going"]
    result = subprocess.run(args, cwd=root, check=False)
    if result.returncode:
        raise ChapterError(f"jupyter-book build failed (exit {result.returncode}); see the messages above")
    return root / "_build" / "html" / "index.html"


def make_book(profile: str = "default", *, force: bool = False, timeout: int = 3600, workers: int | None = None,
              scheduler: str | None = None) -> Path:
    """Execute every chapter whose source, parameters or package code changed, then build the HTML.

    When any chapter runs, the summary chapter (``claims``, last in the table of contents) runs after
    it, since it reads the measurements the other chapters record. Every chapter to run is checked
    (:func:`rs_repro.pipeline.parameters.check_chapter`) before the first one starts. ``workers`` and ``scheduler`` choose where the
    work units run, as in :func:`run_chapter`.
    """
    workers, scheduler = _engine(workers, scheduler)
    todo = chapters() if force else stale(profile)
    if todo and SUMMARY_CHAPTER in chapters() and SUMMARY_CHAPTER not in todo:
        todo.append(SUMMARY_CHAPTER)  # it reads what the others recorded: refresh it after them
    for stem in todo:  # every chapter's parameters checked before the first one runs
        check_chapter(stem, resolve_device(profile_values(stem, profile)))
    for stem in todo:
        print(f"[rs-repro] running chapter {stem} ({profile})", flush=True)
        run_chapter(stem, profile, timeout=timeout, workers=workers, scheduler=scheduler)
    if not todo:
        print("[rs-repro] every chapter is up to date", flush=True)
    return build_html(strict=True)
