"""The page half of the ``fig4_certification`` chapter: its results from the tables of
:mod:`rs_repro.chapters.fig4_certification.compute`, the numbers its prose glues, the summary beside the
paper's readings, Cohen et al.'s certification logs and the figures."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from rs_repro import theory
from rs_repro.chapters import common
from rs_repro.chapters.fig4_certification import compute
from rs_repro.pipeline.engine import Unit
from rs_repro.report.paper import fig4_readings
from rs_repro.smoothing import ABSTAIN

#: The chapter's name, the folder of its certification logs under ``results_dir``.
STEM = "fig4_certification"


@dataclass(frozen=True)
class Results:
    """The chapter's tables (:func:`results`).

    Attributes
    ----------
    clean : dict of str to float
        Clean accuracy of each base model that exists (:func:`rs_repro.chapters.common.model_specs`).
    sweep : pandas.DataFrame
        :func:`~rs_repro.chapters.fig4_certification.compute.sigma_sweep` over ``sweep_sigmas``.
    sigmas : tuple of float
        The two noise levels of the standard model, smaller first.
    certified : dict
        (model name, sigma) to the CERTIFY rows of every test image
        (:func:`~rs_repro.chapters.certify.certify_rows`): the standard model at both
        sigmas, then RandTrain unless it is absent.
    """

    clean: dict[str, float]
    sweep: pd.DataFrame
    sigmas: tuple[float, float]
    certified: dict[tuple[str, float], pd.DataFrame]


def certified_tables(units: Sequence[Unit], done: Mapping[str, pd.DataFrame]) -> dict[tuple[str, float], pd.DataFrame]:
    """The rows of CERTIFY units (:func:`rs_repro.chapters.common.certify_units`) joined per (model name,
    sigma), in the order of ``units``."""
    tables: dict[tuple[str, float], list[pd.DataFrame]] = {}
    for unit in units:
        tables.setdefault((unit.arguments["name"], unit.arguments["sigma"]), []).append(done[unit.id])
    return {key: pd.concat(parts, ignore_index=True) for key, parts in tables.items()}


def results(tables: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> Results:
    """The chapter's results from the tables of every unit of
    :func:`~rs_repro.chapters.fig4_certification.compute.plan`."""
    sigmas = compute.chosen_sigmas(tables, values)
    units = compute.certification_units(values, sigmas, len(tables["images"]))
    return Results(clean={name: float(tables[f"clean-{name}"].accuracy.iloc[0])
                          for name in common.model_specs(values, compute.MODELS)},
                   sweep=compute.sweep_table(tables, values), sigmas=sigmas, certified=certified_tables(units, tables))


def record(res: Results, values: Mapping[str, Any]) -> None:
    """The chapter records no measurement (no claim reads Fig. 4's numbers): ``None``."""


def clean_table(res: Results) -> pd.DataFrame:
    """Columns ``model, accuracy``: the clean accuracy of each base model on the test images."""
    return pd.DataFrame({"model": list(res.clean), "accuracy": list(res.clean.values())})


def log_paths(res: Results, values: Mapping[str, Any]) -> dict[tuple[str, float], Path]:
    """Where :func:`write_cohen_log` writes each configuration's log: ``<results_dir>/<stem>/<dataset>-<model>-
    sigma<sigma>.tsv``."""
    folder = Path(values["results_dir"]) / STEM
    return {(name, sigma): folder / f"{values['dataset']}-{name}-sigma{sigma:g}.tsv" for name, sigma in res.certified}


def _label(name: str, sigma: float) -> str:
    return f"{'RandTrain' if name == 'randtrain' else 'standard'}, RS $\\sigma$={sigma:g}"


def summary_table(res: Results) -> pd.DataFrame:
    """One row per certified configuration beside the paper's (ImageNet) row in the same order (the standard
    model at its two noise levels, then RandTrain when it is certified): clean and smoothed accuracy,
    abstentions, median certified radius of the certified images, largest radius."""
    paper = fig4_readings().dropna(subset=["smoothed_accuracy"]).reset_index(drop=True)
    rows = [{"model": _label(name, sigma).replace("$\\sigma$", "sigma"), "clean accuracy": res.clean[name],
             "smoothed accuracy (certified at r=0)": float(rows.correct.mean()),
             "abstained": float((rows.predict == ABSTAIN).mean()),
             "median certified radius": float(rows.radius[rows.correct == 1].median()) if rows.correct.any() else 0.0,
             "largest radius": float(rows.radius.max())} for (name, sigma), rows in res.certified.items()]
    table = pd.DataFrame(rows)
    paper = paper.iloc[:len(table)]
    table["paper: model (ImageNet)"] = [f"{m} sigma={s:g}" for m, s in zip(paper.model, paper.sigma)]
    table["paper: smoothed accuracy"] = paper.smoothed_accuracy
    return table


def page(res: Results, values: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers and phrases the chapter's prose reads, by glue name.

    Without RandTrain (:func:`rs_repro.chapters.common.absent_models`) its numbers ``clean_randtrain`` and
    ``smoothed_rt`` are NaN, and the phrases ``randtrain_clean`` and ``randtrain_smoothed`` say why it has no
    row.
    """
    low, high = res.sigmas
    clean = res.clean["standard"]
    majority = dict(zip(res.sweep.sigma, res.sweep.majority_accuracy))
    smoothed = {key: float(rows.correct.mean()) for key, rows in res.certified.items()}
    paper = fig4_readings()
    logs = log_paths(res, values)
    rt_sigma = values["randtrain_sigma"]
    clean_rt, smoothed_rt = res.clean.get("randtrain", np.nan), smoothed.get(("randtrain", rt_sigma), np.nan)
    absent = common.absent_models(values, compute.MODELS).get("randtrain")
    return {
        "num_images": len(next(iter(res.certified.values()))), "dataset": values["dataset"],
        "clean_standard": clean, "clean_randtrain": clean_rt,
        "randtrain_clean": f"{absent[0].upper()}{absent[1:]}: there is no RandTrain row, and only the standard "
                           "model is certified below." if absent else
                           f"The noise-trained model (RandTrain) has clean accuracy {clean_rt:.3f} on them.",
        "randtrain_smoothed": "RandTrain is absent (see above)" if absent else
                              f"RandTrain reaches {smoothed_rt:.3f} at its training noise σ = {rt_sigma:g}",
        "paper_clean": float(paper.clean_accuracy.iloc[0]), "sigma_lo": low, "sigma_hi": high,
        "sigma_source": "given as parameters" if values["sigmas"] else "chosen from the sweep",
        "cost_lo": clean - majority.get(low, np.nan), "cost_hi": clean - majority.get(high, np.nan),
        "paper_smoothed": ", ".join(f"{v:g}" for v in paper.smoothed_accuracy.dropna()),
        "paper_last_radius": ", ".join(f"{v:g}" for v in paper.last_radius.dropna()),
        "smoothed_lo": smoothed["standard", low], "smoothed_hi": smoothed["standard", high],
        "smoothed_rt": smoothed_rt,
        "rmax_lo": theory.max_certified_radius(values["n"], values["alpha"], low),
        "largest_lo": float(res.certified["standard", low].radius.max()),
        "logs": ", ".join(str(path) for path in logs.values()),
    }


def plot_sweep(res: Results, values: Mapping[str, Any]) -> plt.Figure:
    """Accuracy of the smoothed standard model against sigma: images whose true class gets more than half of
    the votes, images where the plurality is right, the clean accuracy, the target costs, the chosen sigmas."""
    sweep, clean = res.sweep, res.clean["standard"]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.plot(sweep.sigma, sweep.majority_accuracy, "o-", label=f"true class has $p_A > 1/2$ (n={values['sweep_n']} votes)")
    ax.plot(sweep.sigma, sweep.vote_accuracy, "s--", ms=4, label="majority vote $g_{\\sigma,n}$ correct")
    ax.axhline(clean, color="black", lw=1, ls=":", label="base model, clean")
    for target in values["accuracy_costs"]:
        ax.axhline(clean - target, color="grey", lw=0.8, ls="--")
    for sigma in res.sigmas:
        ax.axvline(sigma, color="C3", lw=1)
    ax.set(xlabel="$\\sigma$", ylabel="accuracy", title="accuracy of the standard model under smoothing")
    ax.legend()
    return fig


def plot_certified(res: Results, values: Mapping[str, Any]) -> plt.Figure:
    """Fig. 4: certified accuracy against the l2 radius for each configuration, with the largest radius
    ``n`` samples can certify at level ``alpha`` dotted."""
    top = max(rows.radius.max() for rows in res.certified.values())
    radii = np.linspace(0, max(top, 1e-3) * 1.05, 300)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for k, ((name, sigma), rows) in enumerate(res.certified.items()):
        curve = certified_accuracy(rows, radii)
        ax.plot(curve.radius, curve.certified_accuracy, color=f"C{k}", label=_label(name, sigma))
        ax.axvline(theory.max_certified_radius(values["n"], values["alpha"], sigma), color=f"C{k}", ls=":", lw=1)
    ax.set(xlabel="radius ($\\ell_2$)", ylabel="certified accuracy",
           title=f"CERTIFY, n={values['n']}, $\\alpha$={values['alpha']:g}")
    ax.legend()
    return fig


def certified_accuracy(rows: pd.DataFrame, radii: np.ndarray) -> pd.DataFrame:
    """Approximate certified accuracy (Cohen et al.): the fraction certified correct with radius >= r, for
    each r of ``radii`` [R].

    Returns
    -------
    pandas.DataFrame
        Columns ``radius, certified_accuracy``.
    """
    correct = rows["correct"].to_numpy().astype(bool)
    radius = rows["radius"].to_numpy()
    return pd.DataFrame({"radius": radii,
                         "certified_accuracy": [float(np.mean(correct & (radius >= r))) for r in radii]})


def write_cohen_log(rows: pd.DataFrame, path: Path) -> Path:
    """Write ``rows`` as locuslab/smoothing's certification log: ``idx label predict radius correct time``.

    Tab-separated with a header, radius printed with 3 significant digits and time as a
    :class:`datetime.timedelta`, as their ``certify.py`` writes it, so their ``analyze.py`` reads it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["idx\tlabel\tpredict\tradius\tcorrect\ttime"]
    for r in rows.itertuples():
        elapsed = str(datetime.timedelta(seconds=float(r.time)))
        lines.append(f"{r.idx}\t{r.label}\t{r.predict}\t{r.radius:.3}\t{r.correct}\t{elapsed}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
