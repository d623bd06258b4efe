"""Shared figure style and the one way figures are written (``figures/<stem>.{pdf,png}``)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import seaborn as sns

from rs_repro.pipeline import context, paths

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


#: In a staging folder, the list of staged figures and the paths they go to, one JSON object a line.
STAGED = "staged.jsonl"


def save_figure(fig: plt.Figure, stem: str, figures_dir: str | Path, suffix: str = "") -> list[Path]:
    """Save ``fig`` as ``<figures_dir>/<stem>[-suffix].pdf`` and ``.png`` and return both paths.

    The PDF carries no creation date, so the same figure gives the same bytes (with
    ``SOURCE_DATE_EPOCH`` set, as the Makefile does). Under the chapter runner, the files are written to the
    run's staging folder (``figures`` of :class:`rs_repro.pipeline.context.RunContext`) and reach these paths only when the page is
    published (:func:`move_staged`): a failed run leaves the previous figures in place.
    """
    base = f"{stem}-{suffix}" if suffix else stem
    targets = [Path(figures_dir) / f"{base}.{ext}" for ext in ("pdf", "png")]
    staging = context.current().figures
    folder = Path(staging) if staging else Path(figures_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for target, metadata in zip(targets, ({"CreationDate": None, "ModDate": None}, {"Software": None}),
                                strict=True):
        fig.savefig(folder / target.name, metadata=metadata)
        if staging:
            with open(folder / STAGED, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"file": target.name, "target": str(target.resolve())}) + "\n")
    return targets


def move_staged(folder: Path) -> list[Path]:
    """Move the figures a chapter run staged in ``folder`` (:func:`save_figure`) to their own folder.

    Returns
    -------
    list of pathlib.Path
        The paths the figures now have, in the order they were saved (none when nothing was staged).
    """
    listing = folder / STAGED
    if not listing.exists():
        return []
    moved = []
    for line in listing.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        target = Path(entry["target"])
        target.parent.mkdir(parents=True, exist_ok=True)
        paths.atomic_write(target, lambda tmp, source=folder / entry["file"]: shutil.copyfile(source, tmp))
        moved.append(target)
    return moved


def figure_links(written: list[Path]) -> Any:
    """A line of download links to the files :func:`save_figure` wrote, relative to the chapter's page.

    Display it under a figure. The page's folder is the one the chapter runner publishes to
    (:data:`rs_repro.pipeline.paths.CHAPTERS` outside the runner). The book renders Markdown outputs with MyST
    (``nb_render_markdown_format: myst`` in ``_config.yml``), so each relative link to an existing file
    becomes a Sphinx download reference and the file is copied under ``_build/html/_downloads/``; a
    missing file fails the strict build. (With myst-nb's default CommonMark rendering the same links
    would stay plain relative URLs, broken in the HTML site.)

    Parameters
    ----------
    written : list of pathlib.Path
        The files returned by :func:`save_figure`, in the order the links are shown.

    Returns
    -------
    IPython.display.Markdown
        ``Download this figure: [PDF](<relative path>) · [PNG](<relative path>)``.
    """
    page_dir = Path(context.current().chapters or paths.CHAPTERS)
    links = [f"[{p.suffix[1:].upper()}]({Path(os.path.relpath(Path(p).resolve(), page_dir.resolve())).as_posix()})"
             for p in written]
    from IPython.display import Markdown  # a page's output: computing a chapter imports nothing of Jupyter

    return Markdown("Download this figure: " + " · ".join(links))


def publish(fig: plt.Figure, stem: str, figures_dir: str | Path, name: str, suffix: str = "") -> None:
    """Put ``fig`` on the page: save it (:func:`save_figure`), show its download links
    (:func:`figure_links`), glue it as ``name`` for a ``{glue:figure}`` directive, and close it."""
    from IPython.display import display
    from myst_nb import glue

    display(figure_links(save_figure(fig, stem, figures_dir, suffix)))
    glue(name, fig, display=False)
    plt.close(fig)
