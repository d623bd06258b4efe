"""The progress of a running chapter in the user's terminal (rs_repro.pipeline.progress, rs_repro.pipeline.terminal)."""

from __future__ import annotations

import io
import json

import nbformat
import pytest
from conftest import HEADER, in_run
from tqdm import tqdm

from rs_repro.pipeline import book, context, progress, terminal


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _notebook() -> nbformat.NotebookNode:
    cells = [nbformat.v4.new_markdown_cell("# Title\n\n## Attacks"), nbformat.v4.new_code_cell("a = 1"),
             nbformat.v4.new_code_cell("b = 2")]
    return nbformat.v4.new_notebook(cells=cells)


def test_clock_and_bar_description():
    assert [progress.clock(s) for s in (0, 59.4, 61, 3725)] == ["0:00", "0:59", "1:01", "1:02:05"]
    state = {"desc": "HSJA", "n": 3, "total": 10, "start": 100.0}
    assert progress.describe_bar(state, 130.0) == "HSJA 3/10, 0:30 elapsed, ~1:10 left"
    assert progress.describe_bar({**state, "n": 0}, 130.0) == "HSJA 0/10, 0:30 elapsed"
    assert progress.describe_bar({**state, "total": None}, 130.0) == "HSJA 3, 0:30 elapsed"


def test_bar_is_tqdm_outside_a_chapter(monkeypatch):
    monkeypatch.delenv(context.CONTEXT_ENV, raising=False)
    assert isinstance(progress.bar(range(3), desc="x"), tqdm)


def test_bar_reports_to_the_runner_and_prints_nothing(monkeypatch, tmp_path, capsys):
    events = tmp_path / "events.jsonl"
    in_run(monkeypatch, progress=str(events))
    monkeypatch.setattr(progress, "WRITE_EVERY_S", 0.0)
    assert list(progress.bar(range(3), desc="images")) == [0, 1, 2]
    with progress.bar(total=5, desc="units") as counted:
        counted.update(2)
    states = [json.loads(line) for line in events.read_text().splitlines()]
    assert [(s["desc"], s["n"], s["total"], s["done"]) for s in states] == [
        ("images", 0, 3, False), ("images", 1, 3, False), ("images", 2, 3, False), ("images", 3, 3, False),
        ("images", 3, 3, True), ("units", 0, 5, False), ("units", 2, 5, False), ("units", 2, 5, True)]
    assert capsys.readouterr() == ("", "")
    with pytest.raises(TypeError, match="'units' was given no iterable"):
        iter(progress.bar(total=5, desc="units")).__next__()


def test_line_names_the_cell_its_section_and_the_open_bars(tmp_path):
    events = tmp_path / "events.jsonl"
    shown = terminal.ChapterProgress("fig5_attacks", _notebook(), events, stream=io.StringIO())
    nb = _notebook()
    injected = nbformat.v4.new_code_cell("seed = 1", metadata={"tags": ["injected-parameters"]})
    for index, cell in enumerate([nb.cells[0], injected, nb.cells[1]]):
        shown.cell_start(cell, index)
    start = shown._start
    with open(events, "a") as out:
        out.writelines(json.dumps(state) + "\n" for state in ({"id": "a", "desc": "attacks", "n": 7, "total": 39, "start": start, "done": False},
                      {"id": "b", "desc": "HSJA vs RS", "n": 0, "total": 1, "start": start + 60, "done": False},
                      {"id": "c", "desc": "closed", "n": 1, "total": 1, "start": start, "done": False},
                      {"id": "c", "desc": "closed", "n": 1, "total": 1, "start": start, "done": True}))
        out.write('{"id": "half a line')  # the kernel is still writing it: left for the next read
    assert shown.line(start + 70) == ("[rs-repro] fig5_attacks 1:10 | cell 1/2, Attacks | attacks 7/39, 1:10 "
                                      "elapsed, ~5:20 left > HSJA vs RS 0/1, 0:10 elapsed")


def test_terminal_gets_one_line_rewritten_and_a_log_gets_plain_lines(tmp_path):
    screen = Terminal()
    with terminal.ChapterProgress("theory", _notebook(), tmp_path / "a.jsonl", stream=screen) as shown:
        shown.cell_start(_notebook().cells[1], 1)
    text = screen.getvalue()
    assert text.startswith("\r[rs-repro] theory") and text.endswith(" | done\n") and text.count("\n") == 1
    log = io.StringIO()
    with pytest.raises(RuntimeError), terminal.ChapterProgress("theory", _notebook(), tmp_path / "b.jsonl",
                                                               stream=log, interval=0.0):
        import time

        time.sleep(1.5)
        raise RuntimeError("a cell failed")
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) >= 2 and lines[-1].endswith(" | failed")


TRACKED = HEADER + """
# A chapter with a progress bar

```{code-cell} ipython3
:tags: [parameters]

seed: int = 0  # seed
```

## Work

```{code-cell} ipython3
import time
from rs_repro.pipeline.progress import bar
for _ in bar(range(4), desc="steps"):
    time.sleep(0.3)
print("finished")
```
"""


@pytest.mark.slow
def test_running_chapter_shows_progress_in_the_terminal_and_nothing_else(sandbox, capfd):
    (sandbox / "notebooks" / "tracked.md").write_text(TRACKED)
    (sandbox / "params" / "smoke" / "tracked.yml").write_text("seed: 0\n")
    page = book.run_chapter("tracked", "smoke", chapters_dir=sandbox / "chapters")
    _out, err = capfd.readouterr()
    assert err.splitlines()[-1].startswith("[rs-repro] tracked ") and err.endswith(" | done\n")
    assert "TCP" not in err and "WARNING" not in err, err  # the kernel talks over IPC, and says nothing
    outputs = [o for c in nbformat.read(page, as_version=4).cells for o in c.get("outputs", [])]
    assert [o.get("text") for o in outputs] == ["finished\n"], "the bar printed nothing on the page"
    [events] = (book.paths.RUNS / "tracked").glob("*/progress.jsonl")  # the run's own folder
    states = [json.loads(line) for line in events.read_text().splitlines()]
    assert states[0]["desc"] == "steps" and states[-1]["n"] == 4 and states[-1]["done"]
