"""Figure files and their download links: relative paths from the page, and real downloads in a strict build."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import pytest
from conftest import in_run

from rs_repro.pipeline import book, context, paths
from rs_repro.report.plots import figure_links, save_figure


@pytest.fixture
def written(tmp_path):
    """A figure saved by ``save_figure`` into ``<tmp>/figures``."""
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    files = save_figure(fig, "page", tmp_path / "figures", "demo")
    plt.close(fig)
    return files


def _targets(markdown: str) -> list[str]:
    return re.findall(r"\]\(([^)]+)\)", markdown)


def test_save_figure_writes_pdf_then_png(written, tmp_path):
    assert written == [tmp_path / "figures" / "page-demo.pdf", tmp_path / "figures" / "page-demo.png"]
    assert written[0].read_bytes().startswith(b"%PDF")
    assert written[1].read_bytes().startswith(b"\x89PNG")


def test_links_are_relative_to_the_page_folder_the_runner_names(written, tmp_path, monkeypatch):
    page_dir = tmp_path / "book" / "chapters"
    in_run(monkeypatch, chapters=str(page_dir))
    text = figure_links(written).data
    assert text == "Download this figure: [PDF](../../figures/page-demo.pdf) · [PNG](../../figures/page-demo.png)"
    assert [(page_dir / t).resolve() for t in _targets(text)] == [p.resolve() for p in written]


def test_links_default_to_the_book_chapters_folder(written, monkeypatch):
    monkeypatch.delenv(context.CONTEXT_ENV, raising=False)
    targets = _targets(figure_links(written).data)
    assert [(paths.CHAPTERS / t).resolve() for t in targets] == [p.resolve() for p in written]
    assert all(not Path(t).is_absolute() for t in targets)


@pytest.mark.slow
def test_links_become_download_references_in_a_strict_build(written, tmp_path, monkeypatch):
    """The book's own ``_config.yml`` turns the displayed links into files copied under ``_downloads``."""
    root = tmp_path
    shutil.copy(paths.ROOT / "_config.yml", root / "_config.yml")
    (root / "book").mkdir()
    shutil.copy(paths.BOOK / "references.bib", root / "book" / "references.bib")
    shutil.copytree(paths.BOOK / "_ext", root / "book" / "_ext")
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/chapters/page\n")
    (root / "book" / "intro.md").write_text("# Intro\n\nA page with a figure follows.\n")
    page_dir = root / "book" / "chapters"
    page_dir.mkdir()
    in_run(monkeypatch, chapters=str(page_dir))
    cell = nbformat.v4.new_code_cell("display(figure_links(written))", outputs=[
        nbformat.v4.new_output("display_data", data={"text/markdown": figure_links(written).data,
                                                       "text/plain": "<Markdown>"})])
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Page"), cell])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, page_dir / "page.ipynb")

    html = book.build_html(strict=True, root=root).parent
    page = (html / "book" / "chapters" / "page.html").read_text(encoding="utf-8")
    hrefs = re.findall(r'<a class="reference download internal" download="" href="([^"]+)">', page)
    assert [Path(h).name for h in hrefs] == ["page-demo.pdf", "page-demo.png"]
    for href, source in zip(hrefs, written):
        copied = (html / "book" / "chapters" / href).resolve()
        assert copied.is_relative_to(html / "_downloads")
        assert copied.read_bytes() == source.read_bytes()
