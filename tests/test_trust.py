"""Hostile and broken inputs to the runner, the cache and the engine (issue 21): a cache entry that is cut,
emptied or carries a foreign manifest is discarded and recomputed, never served; a file replaced under the same
path changes the keys of the units that read it; a run has its own folder and holds its chapter; a failed run
leaves the previous figures; the local Dask cluster serves no HTTP and talks TLS only; SIGTERM cleans up."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import HEADER, in_run

from rs_repro import data
from rs_repro.pipeline import book, cache, cli, engine, paths
from rs_repro.report import measurements

TABLE = pd.DataFrame({"image": [0, 1, 2], "l2": [0.1425, 1 / 3, float("inf")], "at_level": [False, True, False]})


def _stored(tmp_path: Path, key: str = "0123abcd") -> Path:
    entry = tmp_path / "cache" / "t" / f"unit-{key}.csv"
    cache.store(entry, TABLE, {"stem": "t", "name": "unit", "key": key})
    return entry


def _cut_mid_row(entry: Path) -> None:
    text = entry.read_text()
    entry.write_text(text[: text.rindex("\n", 0, len(text) - 1) + 5])


def _last_row_dropped(entry: Path) -> None:
    entry.write_text("".join(entry.read_text().splitlines(keepends=True)[:-1]))


def _header_only(entry: Path) -> None:
    entry.write_text(entry.read_text().splitlines(keepends=True)[0])


def _emptied(entry: Path) -> None:
    entry.write_bytes(b"")


def _garbage_manifest(entry: Path) -> None:
    entry.with_suffix(".json").write_bytes(b"\x00garbage{")


def _foreign_manifest(entry: Path) -> None:
    manifest = json.loads(entry.with_suffix(".json").read_text())
    entry.with_suffix(".json").write_text(json.dumps({**manifest, "key": "ffffffff"}))


def _old_manifest(entry: Path) -> None:
    manifest = json.loads(entry.with_suffix(".json").read_text())
    entry.with_suffix(".json").write_text(json.dumps({k: v for k, v in manifest.items() if k not in ("sha256", "rows")}))


def _same_rows_other_number(entry: Path) -> None:
    entry.write_text(entry.read_text().replace("0.1425", "0.1"))


@pytest.mark.parametrize("damage", [_cut_mid_row, _last_row_dropped, _header_only, _emptied, _garbage_manifest,
                                    _foreign_manifest, _old_manifest, _same_rows_other_number])
def test_a_damaged_cache_entry_is_discarded_not_served(tmp_path, monkeypatch, capsys, damage):
    log = tmp_path / "log.jsonl"
    in_run(monkeypatch, run_log=str(log))
    entry = _stored(tmp_path)
    assert cache.read_entry("t", "unit", "0123abcd", entry).equals(TABLE)
    damage(entry)
    assert cache.read_entry("t", "unit", "0123abcd", entry) is None
    assert not entry.exists() and not entry.with_suffix(".json").exists()
    err = capsys.readouterr().err
    assert "cache entry t/unit discarded and recomputed" in err and str(entry.parent) in err
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert events[0]["hit"] is True and "damaged" in events[1] and "hit" not in events[1]


def test_the_engine_recomputes_a_damaged_entry_and_serves_the_true_table(tmp_path, capsys):
    from test_engine import _accuracy_units

    [unit] = _accuracy_units()[:1]
    first = engine.run("fig5_attacks", [unit], root=tmp_path)[unit.id]
    [entry] = (tmp_path / "fig5_attacks").glob("*.csv")
    _last_row_dropped(entry)
    again = engine.run("fig5_attacks", [unit], root=tmp_path)[unit.id]
    pd.testing.assert_frame_equal(again, first, check_exact=True)
    assert "discarded and recomputed" in capsys.readouterr().err


def test_a_file_replaced_under_the_same_path_changes_the_key(tmp_path):
    weights, folder = tmp_path / "model.pt", tmp_path / "data"
    folder.mkdir()
    weights.write_bytes(b"A" * 64)
    (folder / "images.idx").write_bytes(b"x" * 32)
    unit = engine.Unit("u", "rs_repro.theory:f", {"dataset": "fashion-mnist", "data_dir": str(folder),
                                                   "model": {"kind": "standard", "weights": str(weights)}})
    plain = engine.Unit("p", "rs_repro.theory:f", {"dataset": "digits", "data_dir": "",
                                                    "model": {"weights": ""}, "other": "pretrained:x"})
    assert engine.input_digests(plain.arguments) == {}
    first = unit.key()
    stat = weights.stat()
    weights.write_bytes(b"B" * 64)  # same size, same modification time: only the content differs
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = unit.key()
    assert second != first
    (folder / "images.idx").write_bytes(b"y" * 32)
    assert unit.key() not in (first, second)
    weights.write_bytes(b"A" * 64)
    (folder / "images.idx").write_bytes(b"x" * 32)
    assert unit.key() == first  # the content, not the time, decides
    assert engine.input_digests({"weights": str(tmp_path / "absent.pt")}) == {str(tmp_path / "absent.pt"): "missing"}


def test_the_folder_a_dataset_is_read_from_without_data_dir_is_digested(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "BUILD", tmp_path)
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-package")
    arguments = {"dataset": "fashion-mnist", "data_dir": ""}
    assert engine.input_digests(arguments) == {}  # no file found: nothing read, the loader will say so
    folder = tmp_path / "data"
    folder.mkdir()
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (folder / stem).write_bytes(b"idx")
    first = engine.input_digests(arguments)
    assert list(first) == [str(folder)]
    (folder / "t10k-labels-idx1-ubyte").write_bytes(b"other")
    assert engine.input_digests(arguments)[str(folder)] != first[str(folder)]


FIGURED = HEADER + """
# A chapter that draws a figure, records a measurement and can fail after both

```{code-cell} ipython3
:tags: [parameters]

fail: bool = False  # raise after the figure is saved
colour: str = "red"  # colour of the figure
figures_dir: str = "figures"  # where the figure goes
hold: float = 0.0  # seconds to sleep before finishing
marker: str = ""  # a file the kernel writes its process id to, once started
```

```{code-cell} ipython3
import os, time
import matplotlib.pyplot as plt
from rs_repro.report.plots import save_figure
if marker:
    open(marker, "w").write(str(os.getpid()))
fig, ax = plt.subplots()
ax.plot([0, 1], [0, 1], color=colour)
save_figure(fig, "figured", figures_dir)
from rs_repro.report import measurements
measurements.record("theory", measurements.ThresholdCheck(pa=len(colour) / 10, probability_at_threshold={1: 0.5}))
time.sleep(hold)
```

```{code-cell} ipython3
if fail:
    raise RuntimeError("boom after the figure")
```
"""


@pytest.fixture
def figured(sandbox, monkeypatch):
    monkeypatch.setattr(paths, "BUILD", sandbox / "build")
    (sandbox / "notebooks" / "figured.md").write_text(FIGURED)
    (sandbox / "params" / "smoke" / "figured.yml").write_text(
        f"fail: false\ncolour: red\nfigures_dir: {sandbox / 'figures'}\nhold: 0.0\nmarker: ''\n")
    return sandbox


@pytest.mark.slow
def test_a_failed_run_keeps_the_previous_figures_and_each_run_has_its_folder(figured):
    chapters, figure = figured / "chapters", figured / "figures" / "figured.png"
    page = book.run_chapter("figured", "smoke", chapters_dir=chapters)
    before, shown = figure.read_bytes(), page.read_text()
    assert measurements.load("theory", "smoke").pa == 0.3  # "red"
    with pytest.raises(book.ChapterError, match="boom after the figure; the previous page and figures are kept"):
        book.run_chapter("figured", "smoke", {"fail": True, "colour": "blue"}, chapters_dir=chapters)
    assert figure.read_bytes() == before and page.read_text() == shown
    assert measurements.load("theory", "smoke").pa == 0.3  # the failed run's record was not moved into place
    book.run_chapter("figured", "smoke", {"colour": "blue"}, chapters_dir=chapters)
    assert figure.read_bytes() != before and measurements.load("theory", "smoke").pa == 0.4
    runs = sorted(p for p in (paths.RUNS / "figured").iterdir() if p.is_dir())
    assert len(runs) == 3 and all((run / "executed.ipynb").exists() for run in runs)  # no run shares a folder


def test_a_second_run_of_a_chapter_is_refused_while_one_runs(sandbox):
    folder = paths.RUNS / "tiny"
    folder.mkdir(parents=True)
    with open(folder / "lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("by process 12345 since 2026-12-07 00:00:00 UTC")
        held.flush()
        with pytest.raises(book.ChapterError, match=r"chapter 'tiny' is already being run \(by process 12345"):
            book.run_chapter("tiny", "smoke", chapters_dir=sandbox / "chapters")
    assert not (sandbox / "chapters" / "tiny.ipynb").exists()


def test_the_local_cluster_serves_no_http_and_talks_tls_only():
    from distributed import Client

    dask_client = engine.client(workers=1)
    try:
        scheduler = dask_client.cluster.scheduler
        assert scheduler.address.startswith("tls://127.0.0.1:")
        # the dashboard's server and the workers' HTTP servers listen nowhere: every socket closed
        assert all(s.fileno() == -1 for s in scheduler.http_server._sockets.values())
        listening = dask_client.run(lambda dask_worker: [s.fileno() for s in dask_worker.http_server._sockets.values()])
        assert [fd for fds in listening.values() for fd in fds] == [-1]
        with pytest.raises((OSError, TypeError, TimeoutError)):
            Client(scheduler.address, timeout="3s")  # a process without this run's certificate
        assert dask_client.submit(sum, [1, 2, 3]).result() == 6
    finally:
        engine._close(dask_client)
        engine._clients.clear()


def test_cli_errors_are_one_line(monkeypatch, capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setattr(paths, "BUILD", tmp_path / "build")
    monkeypatch.setattr(paths, "RUNS", blocker / "runs")  # the run's lock and folder cannot be written
    assert cli.main(["run", "theory", "--profile", "smoke", "--no-build"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rs-repro: error: cannot access ") and str(blocker) in err and "Traceback" not in err

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(book, "run_chapter", interrupted)
    assert cli.main(["run", "theory", "--profile", "smoke", "--no-build"]) == 130
    assert "interrupted; the finished work units are kept" in capsys.readouterr().err


@pytest.mark.slow
def test_sigterm_shuts_the_kernel_down_and_removes_its_folder(figured, tmp_path):
    temp, marker = tmp_path / "tmp", tmp_path / "kernel.pid"
    temp.mkdir()
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from rs_repro.pipeline import cli, paths
        paths.NOTEBOOKS, paths.PARAMS, paths.RUNS = (Path({str(figured / 'notebooks')!r}),
                                                     Path({str(figured / 'params')!r}), Path({str(paths.RUNS)!r}))
        sys.exit(cli.main(["run", "figured", "--profile", "smoke", "--no-build", "-p", "hold", "120",
                           "-p", "marker", {str(marker)!r}]))
    """)
    process = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "TMPDIR": str(temp)},
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert marker.exists(), process.stderr.read() if process.poll() is not None else "the kernel never started"
    time.sleep(1)
    kernel = int(marker.read_text())
    assert list(temp.glob("rsk-*"))
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 130
    assert "interrupted" in process.stderr.read()
    assert not list(temp.glob("rsk-*"))
    for _ in range(50):
        try:
            os.kill(kernel, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"the kernel (pid {kernel}) outlived the run")
    assert not (figured / "chapters" / "figured.ipynb").exists()


def test_the_kernels_sockets_go_where_their_address_fits(tmp_path, monkeypatch):
    from rs_repro.pipeline.book import SOCKET_PATH_MAX, _kernel_sockets
    short, long = tmp_path / "t", tmp_path / ("x" * (SOCKET_PATH_MAX - len(str(tmp_path))))
    for folder in (short, long):
        folder.mkdir()
        monkeypatch.setattr(tempfile, "tempdir", str(folder))
        with _kernel_sockets() as sockets:
            assert Path(sockets).name.startswith("rsk-")
            assert Path(sockets).parent == (short if folder == short else Path("/tmp"))
            assert len(os.fsencode(sockets)) + len("/kernel-99") <= SOCKET_PATH_MAX
