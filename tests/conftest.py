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


#: The front matter of a MyST chapter source.
HEADER = """---
jupytext:
  text_representation: {extension: .md, format_name: myst, format_version: 0.13}
kernelspec: {display_name: Python 3, language: python, name: python3}
---
"""
#: A chapter that prints its parameter and the kernel's malloc setting, and raises when ``fail`` is true.
TINY = HEADER + """
# A chapter that can fail

```{code-cell} ipython3
:tags: [parameters]

seed: int = 0  # seed
fail: bool = False  # raise in the second cell
label: str = "first"  # text printed on the page
```

```{code-cell} ipython3
import os
print("label is", label, "mmap threshold", os.environ.get("MALLOC_MMAP_THRESHOLD_"))
```

```{code-cell} ipython3
if fail:
    raise RuntimeError("boom on purpose")
```
"""


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A book with one tiny chapter, ``tiny.md`` (:data:`TINY`), wired through paths so that run_chapter
    uses it; a test may add chapters to its ``notebooks`` and ``params/smoke`` folders."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "tiny.md").write_text(TINY)
    (tmp_path / "params" / "smoke").mkdir(parents=True)
    (tmp_path / "params" / "smoke" / "tiny.yml").write_text("seed: 0\nfail: false\nlabel: first\n")
    monkeypatch.setattr(paths, "NOTEBOOKS", tmp_path / "notebooks")
    monkeypatch.setattr(paths, "PARAMS", tmp_path / "params")
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    return tmp_path
