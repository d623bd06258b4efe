"""What the chapter runner tells the kernel of a chapter run: one typed context.

The runner (:func:`rs_repro.pipeline.book.run_chapter`) starts the kernel with one environment variable,
:data:`CONTEXT_ENV`, holding a :class:`RunContext` as JSON; the package's modules read it with
:func:`current`. Outside the runner (a notebook opened by hand, a test, a script) there is none and every
field is ``None``: the cache logs nothing, a record goes to its profile-less file, figures go straight to
their folder, and the work units run in the process (or on the Dask scheduler ``RS_REPRO_SCHEDULER`` names).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

#: The environment variable holding the context of a chapter run, as JSON.
CONTEXT_ENV = "RS_REPRO_CONTEXT"


@dataclass(frozen=True)
class RunContext:
    """One chapter run as the kernel sees it.

    Attributes
    ----------
    profile : str or None
        The parameter profile the chapter runs under; its measurements are recorded under it
        (:func:`rs_repro.report.measurements.record`).
    run_log : str or None
        File the cache appends each hit and miss to (:func:`rs_repro.pipeline.cache.log_lookup`), which the page's
        provenance box counts.
    progress : str or None
        File the progress bars report to (:func:`rs_repro.pipeline.progress.bar`), shown in the runner's terminal.
    figures, records : str or None
        Folders where the run stages its figures (:func:`rs_repro.report.plots.save_figure`) and its measurement
        record; the runner moves them into place once the page is published.
    chapters : str or None
        The folder the page is published to, from which the figures' download links are relative
        (:func:`rs_repro.report.plots.figure_links`).
    workers : int or None
        Local Dask worker processes the work units run on (:func:`rs_repro.pipeline.engine.engine_options`).
    scheduler : str or None
        Address of the Dask scheduler the work units run on.
    computed : bool
        The runner computed the chapter's units in this run (:func:`rs_repro.pipeline.headless.compute_values`),
        so the page reads them from the cache even when its ``use_cache`` is false
        (:func:`rs_repro.pipeline.engine.run`).
    """

    profile: str | None = None
    run_log: str | None = None
    progress: str | None = None
    figures: str | None = None
    records: str | None = None
    chapters: str | None = None
    workers: int | None = None
    scheduler: str | None = None
    computed: bool = False

    def environment(self) -> dict[str, str]:
        """The environment variable that hands this context to a kernel: ``{CONTEXT_ENV: <JSON>}``."""
        return {CONTEXT_ENV: json.dumps(dataclasses.asdict(self), sort_keys=True)}


def current() -> RunContext:
    """The context of the chapter run this process belongs to (all ``None`` outside the chapter runner).

    Raises
    ------
    ValueError
        :data:`CONTEXT_ENV` holds something other than a :class:`RunContext` (names the variable).
    """
    text = os.environ.get(CONTEXT_ENV)
    if not text:
        return RunContext()
    try:
        fields = json.loads(text)
        found = RunContext(**fields)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{CONTEXT_ENV}={text[:80]!r} is not accepted; expected the JSON of a RunContext, "
                         f"as the chapter runner writes it ({exc})") from exc
    if found.workers is not None and (isinstance(found.workers, bool) or not isinstance(found.workers, int)):
        raise ValueError(f"{CONTEXT_ENV}: workers={found.workers!r} is not accepted; expected a whole number")
    if type(found.computed) is not bool:
        raise ValueError(f"{CONTEXT_ENV}: computed={found.computed!r} is not accepted; expected true or false")
    return found


@contextlib.contextmanager
def using(run: RunContext) -> Iterator[RunContext]:
    """Make ``run`` the context of this process (and of the processes it starts) for the ``with`` block, as
    the chapter runner does for a kernel; the previous context is restored afterwards.

    Parameters
    ----------
    run
        The context :func:`current` returns inside the block.

    Yields
    ------
    RunContext
        ``run``.
    """
    before = os.environ.get(CONTEXT_ENV)
    os.environ.update(run.environment())
    try:
        yield run
    finally:
        if before is None:
            os.environ.pop(CONTEXT_ENV, None)
        else:
            os.environ[CONTEXT_ENV] = before
