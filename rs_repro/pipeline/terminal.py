"""The chapter runner's terminal: what a chapter is doing while papermill executes it.

:class:`ChapterProgress` follows the file the kernel's bars report to (:func:`rs_repro.pipeline.progress.bar`)
and the cell being executed (papermill's ``on_cell_start`` hook), and writes one line updated in place on a
terminal or, when the output is not a terminal (a CI log), a plain line every ``interval`` seconds and one at
the end. It is the runner's alone: computing a chapter (:mod:`rs_repro.pipeline.headless`) imports nothing of
Jupyter.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import nbformat

from rs_repro.pipeline import progress


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
            parts = [f"[rs-repro] {self.stem} {progress.clock(now - self._start)}"]
            if self._cell:
                parts.append(self._cell)
            if self._bars:
                parts.append(" > ".join(progress.describe_bar(s, now) for s in self._bars.values()))
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
