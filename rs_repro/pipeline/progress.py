"""Progress of a running chapter, shown in the terminal of ``make book`` / ``make chapter``.

A chapter executes in a Jupyter kernel whose output goes to the page, not to the user's terminal. The
chapter's loops report through :func:`bar`: inside a chapter kernel (the runner names a file,
``progress`` of :class:`rs_repro.pipeline.context.RunContext`) each bar appends its state to that file as JSON lines and prints nothing on the page; anywhere
else (a user's own notebook or script) :func:`bar` is a plain ``tqdm`` bar.

In the runner, :class:`rs_repro.pipeline.terminal.ChapterProgress` follows that file and the cell being executed (papermill's
``on_cell_start`` hook) and writes what the chapter is doing: one line updated in place on a terminal,
and, when the output is not a terminal (a CI log), a plain line every ``interval`` seconds and one at the
end. A line reads, for example::

    [rs-repro] fig5_attacks 2:31 | cell 4/9, Attacks | attacks 7/39, 1:12 elapsed, ~5:20 left > HSJA vs RS ...

The estimate of what is left is the bar's mean time per step so far times the steps left.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from rs_repro.pipeline import context

#: A bar writes its state at most this often (seconds), and always when it opens and closes.
WRITE_EVERY_S = 0.25

_ids = itertools.count()


class _ReportedBar:
    """A progress bar that appends its state to ``path`` as JSON lines (see :func:`bar`)."""

    def __init__(self, iterable: Iterable | None, total: int | None, desc: str, path: Path) -> None:
        self.iterable, self.desc, self.path = iterable, desc, path
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.n = total, 0
        self.id = f"{os.getpid()}-{next(_ids)}"
        self.start = time.time()
        self._written = 0.0
        self._write(done=False)

    def _write(self, done: bool) -> None:
        record = {"id": self.id, "desc": self.desc, "n": self.n, "total": self.total, "start": self.start,
                  "done": done}
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
        self._written = time.monotonic()

    def update(self, k: int = 1) -> None:
        """Count ``k`` more steps done."""
        self.n += k
        if time.monotonic() - self._written >= WRITE_EVERY_S:
            self._write(done=False)

    def close(self) -> None:
        """Report the bar finished."""
        self._write(done=True)

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError(f"progress bar {self.desc!r} was given no iterable to iterate over")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "") -> Any:
    """A progress bar over ``iterable`` (or ``total`` steps counted with ``update``).

    Parameters
    ----------
    iterable
        What to iterate over; ``None`` for a bar advanced by ``update(k)``.
    total
        Number of steps (``len(iterable)`` by default).
    desc
        What the bar counts, e.g. ``"HSJA vs RS sigma=0.35 n=10"``.

    Returns
    -------
    tqdm.tqdm or a bar reporting to the chapter runner
        Both iterate, count with ``update(k)``, close with ``close()`` and work as context managers.
    """
    target = context.current().progress
    if target:
        return _ReportedBar(iterable, total, desc, Path(target))
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=None, leave=False)


def clock(seconds: float) -> str:
    """``seconds`` as ``m:ss`` (``h:mm:ss`` from an hour on)."""
    s = round(max(seconds, 0.0))
    hours, rest = divmod(s, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def describe_bar(state: dict[str, Any], now: float) -> str:
    """One bar's state as text: ``desc n/total, elapsed, ~left`` (no estimate before the first step)."""
    elapsed = now - state["start"]
    n, total = state["n"], state["total"]
    text = f"{state['desc']} {n}/{total}" if total else f"{state['desc']} {n}"
    text += f", {clock(elapsed)} elapsed"
    if total and 0 < n < total:
        text += f", ~{clock(elapsed / n * (total - n))} left"
    return text
