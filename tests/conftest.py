"""Session fixtures shared by the book tests: one smoke execution of every chapter, one HTML build."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rs_repro import book, paths


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory):
    """Every chapter executed with the smoke profile into a copy of the book skeleton."""
    root = tmp_path_factory.mktemp("book")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(paths.ROOT / name, root / name)
    shutil.copytree(paths.BOOK, root / "book", ignore=shutil.ignore_patterns("chapters", "notebooks", "params"))
    figures = root / "figures"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(paths, "RUNS", root / "runs")
        mp.setenv("RS_REPRO_BUILD", str(root / "build"))
        pages = {stem: book.run_chapter(stem, "smoke", {"figures_dir": str(figures)},
                                        chapters_dir=root / "book" / "chapters", timeout=600)
                 for stem in book.chapters()}
    return root, pages, figures


@pytest.fixture(scope="session")
def smoke_html(smoke_book) -> Path:
    """The smoke book rendered once with warnings as errors; its ``index.html``."""
    root, _, _ = smoke_book
    return book.build_html(strict=True, root=root)
