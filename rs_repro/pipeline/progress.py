"""Progress of a running chapter, shown in the terminal of ``make book`` / ``make chapter``.

A chapter executes in a Jupyter kernel whose output goes to the page, not to the user's terminal. The
chapter's loops report through :func:`bar`: inside a chapter kernel (the runner names a file,
``progress`` of :class:`rs_repro.pipeline.context.RunContext`) each bar appends its state to that file as JSON lines and prints nothing on the page; anywhere
else (a user's own notebook or script) :func:`bar` is a plain ``tqdm`` bar.

In the runner, :class:`ChapterProgress` follows that file and the cell being executed (papermill's
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
import shutil
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Self

from rs_repro.pipeline import context

if TYPE_CHECKING:  # the chapter runner's types only: computing a chapter imports nothing of Jupyter
    import nbformat

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


class ChapterProgress:
    """Show a chapter's progress while papermill executes it.

    Parameters
    ----------
    stem
        The chapter, named at the start of every line.
    nb
        The notebook being executed (its code cells are counted, its headings name the sections).
    events
        The file the kernel's bars report to (the runner names it in the kernel's context); emptied here.
    stream
        Where the lines go, ``sys.stderr`` by default.
    interval
        Seconds between two plain lines when ``stream`` is not a terminal.

    Use it as a context manager around the execution, with :meth:`cell_start` as papermill's
    ``on_cell_start`` hook.
    """

    def __init__(self, stem: str, nb: nbformat.NotebookNode, events: Path, *, stream: IO[str] | None = None,
                 interval: float = 30.0) -> None:
        self.stem, self.events, self.interval = stem, events, interval
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._cells = sum(c.cell_type == "code" for c in nb.cells)
        self._number, self._section, self._cell = 0, "", ""
        self._bars: dict[str, dict[str, Any]] = {}
        self._offset = 0
        self._start = time.time()
        self._last_plain = 0.0
        self._width = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"progress-{stem}", daemon=True)
        events.parent.mkdir(parents=True, exist_ok=True)
        events.write_text("", encoding="utf-8")

    def cell_start(self, cell: nbformat.NotebookNode, cell_index: int = 0, **_: Any) -> None:
        """papermill's (nbclient's) ``on_cell_start`` hook, called for every cell in order.

        A markdown cell's headings name the section; a code cell is counted among the notebook's own
        (papermill's injected parameters cell is not one of them).
        """
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    self._section = line.lstrip("#").strip()
            return
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            return
        self._number += 1
        with self._lock:
            self._cell = f"cell {self._number}/{self._cells}" + (f", {self._section}" if self._section else "")

    def _read(self) -> None:
        """Take in the bar states the kernel appended since the last read (complete lines only)."""
        try:
            with open(self.events, encoding="utf-8") as source:
                source.seek(self._offset)
                chunk = source.read()
        except FileNotFoundError:
            return
        end = chunk.rfind("\n") + 1
        self._offset += len(chunk[:end].encode("utf-8"))
        for line in chunk[:end].splitlines():
            state = json.loads(line)
            if state["done"]:
                self._bars.pop(state["id"], None)
            else:
                self._bars[state["id"]] = state

    def line(self, now: float | None = None) -> str:
        """What the chapter is doing now, as one line."""
        now = time.time() if now is None else now
        with self._lock:
            self._read()
            parts = [f"[rs-repro] {self.stem} {clock(now - self._start)}"]
            if self._cell:
                parts.append(self._cell)
            if self._bars:
                parts.append(" > ".join(describe_bar(s, now) for s in self._bars.values()))
        return " | ".join(parts)

    def _show(self, final: bool = False) -> None:
        text = self.line()
        if self.tty:
            columns = shutil.get_terminal_size((120, 24)).columns - 1
            text = text[:columns]
            self.stream.write("\r" + text + " " * max(self._width - len(text), 0) + ("\n" if final else ""))
            self._width = 0 if final else len(text)
        else:
            self.stream.write(text + "\n")
            self._last_plain = time.monotonic()
        self.stream.flush()

    def _loop(self) -> None:
        while not self._stop.wait(0.5 if self.tty else 1.0):
            if self.tty or time.monotonic() - self._last_plain >= self.interval:
                self._show()

    def __enter__(self) -> Self:
        self._last_plain = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        with self._lock:
            self._cell = "failed" if kind else "done"
            self._bars.clear()
            self._offset = self.events.stat().st_size if self.events.exists() else 0
        self._show(final=True)
