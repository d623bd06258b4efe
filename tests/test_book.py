"""The chapter pipeline: sources, parameter validation, execution, failure handling, the book build."""

from __future__ import annotations

import ast
import re
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest
import yaml

from rs_repro.pipeline import book, cli, engine, parameters, paths, runtime

STEMS = book.chapters()


def test_toc_lists_every_notebook_once():
    sources = sorted(p.stem for p in paths.NOTEBOOKS.glob("*.md"))
    assert sorted(STEMS) == sources
    assert len(set(STEMS)) == len(STEMS)
    assert not list(paths.NOTEBOOKS.glob("*.ipynb")), "executed notebooks must not sit beside the sources"


@pytest.mark.parametrize("stem", STEMS)
def test_source_header_and_parameters_cell(stem):
    nb = book.read_notebook(stem)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.metadata["jupytext"]["text_representation"]["format_name"] == "myst"
    declared = parameters.parameters(stem)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    for node in ast.parse(cell.source).body:  # literals only, so papermill's injection is the whole truth
        ast.literal_eval(node.value)
    assert {"seed", "figures_dir", "use_cache"} <= set(declared)
    assert all(p.help for p in declared.values()), "every parameter needs a help comment"
    # the MyST reader of the parameters (no jupytext, for rs-repro compute) sees the cells jupytext sees
    read = parameters.code_cells(book.notebook_path(stem).read_text(encoding="utf-8"))
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [source for _, source in read] == [c.source for c in code]
    assert [options.get("tags", []) for options, _ in read] == [c.metadata.get("tags", []) for c in code]


@pytest.mark.parametrize("stem", STEMS)
@pytest.mark.parametrize("profile", paths.PROFILES)
def test_every_profile_has_exactly_the_declared_keys_and_passes_the_chapter_rules(stem, profile):
    path = paths.PARAMS / profile / f"{stem}.yml"  # every chapter has every profile (docs/architecture.md)
    values = yaml.safe_load(path.read_text())
    assert set(values) == set(parameters.parameters(stem))
    if profile != "paper":  # its data, weights and GPU are this machine's: tests/test_refused_inputs.py
        book.check_chapter(stem, book.profile_values(stem, profile))  # types, then the chapter's own rules


def test_unknown_key_lists_valid_parameters():
    with pytest.raises(book.ChapterError) as err:
        book.validate("theory", {"sigmaz": [0.1]})
    message = str(err.value)
    assert "'sigmaz'" in message
    for name, param in parameters.parameters("theory").items():
        assert f"{name}: {param.annotation}" in message


@pytest.mark.parametrize(("key", "text", "expected"), [
    ("n_max", "40", 40),
    ("alpha", "0.01", 0.01),
    ("alpha", "1", 1.0),
    ("sigmas", "[0.1, 0.2]", [0.1, 0.2]),
    ("use_cache", "false", False),
    ("figures_dir", "123", "123"),
])
def test_overrides_are_typed(key, text, expected):
    value = parameters.parse_overrides("theory", [(key, text)])[key]
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(("key", "text"), [("n_max", "4.5"), ("n_max", "true"), ("sigmas", "0.1"),
                                           ("dims", "[64, 'a']"), ("use_cache", "1")])
def test_wrong_type_is_refused(key, text):
    with pytest.raises(book.ChapterError, match=f"parameter '{key}' must be"):
        parameters.parse_overrides("theory", [(key, text)])


def test_cli_misspelt_key_fails_before_running(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    status = cli.main(["run", "theory", "--profile", "smoke", "-p", "nmax", "40"])
    err = capsys.readouterr().err
    assert status == 2
    assert "unknown parameter(s) 'nmax'" in err and "n_max: int" in err
    assert not (tmp_path / "runs").exists()


def test_cli_bad_engine_fails_before_running(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    assert cli.main(["run", "theory", "--profile", "smoke", "--workers", "-2"]) == 2
    assert "workers=-2 is not accepted; expected 0 (in this process) to " in capsys.readouterr().err
    assert cli.main(["run", "theory", "--profile", "smoke", "--workers", "100000"]) == 2
    assert f"workers=100000 is not accepted; expected 0 (in this process) to {engine.max_workers()} " \
        in capsys.readouterr().err
    assert cli.main(["run", "theory", "--profile", "smoke", "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert "scheduler='tcp://127.0.0.1:1' is not accepted; expected the address of a Dask scheduler that answers " \
        f"within {engine.CONNECT_TIMEOUT_S} s" in capsys.readouterr().err
    monkeypatch.setenv("RS_REPRO_CONTEXT", '{"workers": "two"}')
    assert cli.main(["book", "--profile", "smoke"]) == 2
    assert "RS_REPRO_CONTEXT: workers='two' is not accepted" in capsys.readouterr().err
    monkeypatch.setenv("RS_REPRO_CONTEXT", '{"colour": "red"}')
    assert cli.main(["book", "--profile", "smoke"]) == 2
    assert "RS_REPRO_CONTEXT='{\"colour\": \"red\"}' is not accepted; expected the JSON of a RunContext" \
        in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    with pytest.raises(SystemExit):
        cli.main(["run", "theory", "--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"])  # one or the other
    makefile = (paths.ROOT / "Makefile").read_text()
    assert "--workers $(WORKERS)" in makefile and "--scheduler $(SCHEDULER)" in makefile


def test_unknown_chapter_and_profile():
    with pytest.raises(book.ChapterError, match="unknown chapter 'nope'; chapters are: theory"):
        parameters.parameters("nope")
    with pytest.raises(book.ChapterError, match="unknown profile 'fast'"):
        book.profile_values("theory", "fast")


@pytest.mark.slow
def test_failed_run_keeps_previous_page_and_names_cell(sandbox):
    chapters = sandbox / "chapters"
    page = book.run_chapter("tiny", "smoke", {"label": "second"}, chapters_dir=chapters)
    text = page.read_text()
    assert f"label is second mmap threshold {runtime.MMAP_THRESHOLD}" in text  # the kernel got the malloc setting
    record = nbformat.read(page, as_version=4).metadata["rs_repro"]
    assert record["parameters"] == {"seed": 0, "fail": False, "label": "second"}
    assert record["command"] == "make chapter CH=tiny PROFILE=smoke P='-p label second'"
    with pytest.raises(book.ChapterError, match=r"code cell 3 of tiny.md \(starting 'if fail:'\): RuntimeError: boom on purpose; the previous page and figures are kept"):
        book.run_chapter("tiny", "smoke", {"fail": True}, chapters_dir=chapters)
    assert page.read_text() == text
    assert sorted(p.name for p in chapters.iterdir()) == ["tiny.ipynb"]


@pytest.mark.slow
@pytest.mark.parametrize("stem", STEMS)
def test_smoke_chapter_executes_with_figures_and_glue(smoke_book, stem):
    _, pages, figures = smoke_book
    nb = nbformat.read(pages[stem], as_version=4)
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert not [o.text for o in outputs if o.get("name") == "stderr"], "warnings would print on the page"
    figures_glued = [o for o in outputs if o.get("metadata", {}).get("scrapbook", {}).get("name", "").startswith("fig_")]
    assert all(any(k.endswith("image/png") for k in o.data) for o in figures_glued), "a glued figure without its image"
    glued = {o["metadata"]["scrapbook"]["name"] for c in nb.cells for o in c.get("outputs", [])
             if "scrapbook" in o.get("metadata", {})}
    source = paths.NOTEBOOKS.joinpath(f"{stem}.md").read_text()
    cited = set(re.findall(r"\{glue:(?:text|figure)\}`([A-Za-z0-9_]+)", source))
    cited |= set(re.findall(r":::\{glue:figure\} ([A-Za-z0-9_]+)", source))
    assert cited and cited <= glued
    pdfs = sorted(p.stem for p in figures.glob(f"{stem}*.pdf"))
    assert pdfs == sorted(p.stem for p in figures.glob(f"{stem}*.png"))
    assert pdfs, "every chapter draws figures (the claims chapter its quantities across dimension)"
    assert nb.cells[-1].metadata["tags"] == ["provenance"]
    injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert f"figures_dir = \"{figures}\"" in injected.source
    record = nb.metadata["rs_repro"]
    assert record["overrides"] == {"figures_dir": str(figures)}
    assert record["digest"] != book.chapter_digest(stem, book.profile_values(stem, "smoke"))


@pytest.mark.slow
def test_book_builds_with_warnings_as_errors(smoke_html):
    html = smoke_html.parent
    for stem in STEMS:
        page = html / "book" / "chapters" / f"{stem}.html"
        assert page.exists()
        text = re.sub(r"<[^>]+>", "", page.read_text())
        assert "Provenance of this page" in text
        assert "caption-number" not in page.read_text(), "Sphinx's book-wide figure numbers would contradict the paper's"
        assert "make chapter CH=" in text


def _local_places(root: Path) -> list[str]:
    """Absolute paths of this machine that must appear on no page: the checkout, the smoke book's folder,
    the home and temporary folders, the Python environment."""
    places = {paths.ROOT, root, Path.home(), Path(tempfile.gettempdir()), Path(sys.prefix)}
    return sorted({str(p.resolve()) + "/" for p in places} | {str(p) + "/" for p in places})


@pytest.mark.slow
def test_no_page_shows_a_local_path(smoke_book, smoke_html):
    root, pages, figures = smoke_book
    # The only absolute path the pages may show is the figures_dir this test passes as a parameter (the
    # injected parameters and the provenance box record what the user asked for); a book built with the
    # profiles' values has none.
    given = str(figures)
    places = _local_places(root)
    found = []
    documents = sorted(smoke_html.parent.rglob("*.html")) + sorted(pages.values())
    for document in documents:
        text = document.read_text(encoding="utf-8").replace(given, "<figures_dir>")
        found += [f"{document.relative_to(document.parents[1])}: {place}" for place in places
                  if place in text or place.replace("/", "\\/") in text]
    assert len(documents) > len(pages) and found == [], found
