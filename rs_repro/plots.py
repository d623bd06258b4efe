"""Shared figure style and the one way figures are written (``figures/<stem>.{pdf,png}``)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import seaborn as sns
from IPython.display import Markdown

from . import paths

#: Colour per model family, the same in every chapter.
PALETTE = sns.color_palette("colorblind")


def set_style() -> None:
    """Apply the book's matplotlib/seaborn style (white grid, readable sizes, fixed PDF metadata)."""
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE)
    matplotlib.rcParams.update({
        "figure.dpi": 110,
        "savefig.dpi": 150,
        "savefig.bbox": "tight",
        "axes.titlesize": "medium",
        "legend.fontsize": "small",
        "svg.hashsalt": "rs-repro",
    })


def save_figure(fig: plt.Figure, stem: str, figures_dir: str | Path, suffix: str = "") -> list[Path]:
    """Save ``fig`` as ``<figures_dir>/<stem>[-suffix].pdf`` and ``.png`` and return both paths.

    The PDF carries no creation date, so the same figure gives the same bytes (with
    ``SOURCE_DATE_EPOCH`` set, as the Makefile does).
    """
    folder = Path(figures_dir)
    folder.mkdir(parents=True, exist_ok=True)
    base = f"{stem}-{suffix}" if suffix else stem
    written = []
    for ext, metadata in (("pdf", {"CreationDate": None, "ModDate": None}), ("png", {"Software": None})):
        path = folder / f"{base}.{ext}"
        fig.savefig(path, metadata=metadata)
        written.append(path)
    return written


def figure_links(written: list[Path]) -> Markdown:
    """A line of download links to the files :func:`save_figure` wrote, relative to the chapter's page.

    Display it under a figure: the book build copies each linked file into the HTML site. The page's
    folder is the one the chapter runner publishes to (``paths.CHAPTERS`` outside the runner).
    """
    page_dir = Path(os.environ.get(paths.CHAPTERS_ENV, paths.CHAPTERS))
    links = [f"[{p.suffix[1:].upper()}]({Path(os.path.relpath(Path(p).resolve(), page_dir.resolve())).as_posix()})"
             for p in written]
    return Markdown("Download this figure: " + " · ".join(links))
