"""Compute functions of the ``fig4_certification`` chapter: Fig. 4 of the paper.

Cohen et al.'s CERTIFY on the standard model under smoothing at two noise levels, chosen by the clean
accuracy they cost (paper: about 3% and 12%), and on the noise-trained model (RandTrain) at its training
sigma. On a dataset where no model is trained here (ImageNet, not in :data:`rs_repro.models.ARCHITECTURES`)
RandTrain comes from its checkpoint (``randtrain_weights``); without one its row is absent
(:func:`absent_models`) and only the standard model is certified. Every image draws its noise from its own
generator (:func:`rs_repro.seeds.generator`), so the results do not depend on the order, the batching or a
resumed run. The work is units
(:mod:`rs_repro.pipeline.engine`): the sweep over sigma, and CERTIFY by chunks of images (:func:`certify_units`).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn

from rs_repro import data, seeds, theory
from rs_repro.checks import device_rule, rule_checker
from rs_repro.experiments.common import count_rule, data_and_models
from rs_repro.models import ARCHITECTURES, accuracy, load_model, model_spec
from rs_repro.pipeline.engine import Unit
from rs_repro.report.paper import fig4_readings
from rs_repro.smoothing import ABSTAIN, Smooth, top_class

_MODULE = __name__


def sigma_sweep(model: nn.Module, num_classes: int, x: torch.Tensor, y: torch.Tensor, sigmas: Sequence[float],
                n: int, batch_size: int, seed: int) -> pd.DataFrame:
    """Accuracy of the smoothed standard model over a grid of sigma (how the paper chose its sigma).

    Two accuracies per sigma, from the same n votes per image: ``vote_accuracy``, the majority vote
    g_{sigma,n} (plurality, as the attacked models answer), and ``majority_accuracy``, the fraction of
    images whose true class gets more than half of the votes (pA > 1/2), which is what CERTIFY's
    certified accuracy at radius 0 tends to as n grows and what Fig. 4 starts from.

    Returns
    -------
    pandas.DataFrame
        Columns ``sigma, n, vote_accuracy, majority_accuracy``.
    """
    device = next(model.parameters()).device
    rows = []
    for sigma in sigmas:
        gen = seeds.generator(seed, "sweep", sigma, device=device)
        counts = Smooth(model, num_classes, sigma).counts(x.to(device), n, batch_size, generator=gen).cpu()
        true_votes = counts.gather(1, y.unsqueeze(1)).squeeze(1)
        rows.append({"sigma": sigma, "n": n,
                     "vote_accuracy": float((top_class(counts.to(device), gen).cpu() == y).double().mean()),
                     "majority_accuracy": float((2 * true_votes > n).double().mean())})
    return pd.DataFrame(rows)


def choose_sigmas(sweep: pd.DataFrame, clean_accuracy: float, costs: Sequence[float]) -> list[float]:
    """For each target cost, the swept sigma whose cost (clean - majority accuracy) is closest to it."""
    cost = clean_accuracy - sweep["majority_accuracy"].to_numpy()
    return [float(sweep["sigma"].iloc[int(np.argmin(np.abs(cost - target)))]) for target in costs]


def certify_rows(model: nn.Module, num_classes: int, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor,
                 units: Sequence[int], *, name: str, sigma: float, n0: int, n: int, alpha: float,
                 batch_size: int, seed: int) -> pd.DataFrame:
    """CERTIFY on the images at positions ``units`` of ``x``: one row per image.

    Returns
    -------
    pandas.DataFrame
        Columns ``unit, idx, label, predict, radius, correct, time`` (``idx`` = position in the dataset
        split; ``predict`` = -1 on abstention; ``time`` = wall seconds), the fields of Cohen et al.'s
        certification logs.
    """
    device = next(model.parameters()).device
    smooth = Smooth(model, num_classes, sigma)
    rows = []
    for unit in units:
        start = time.perf_counter()
        gen = seeds.generator(seed, "certify", name, sigma, int(index[unit]), device=device)
        predict, radius = smooth.certify(x[unit].to(device), n0, n, alpha, batch_size, generator=gen)
        label = int(y[unit])
        rows.append({"unit": unit, "idx": int(index[unit]), "label": label, "predict": predict,
                     "radius": radius, "correct": int(predict == label and predict != ABSTAIN),
                     "time": time.perf_counter() - start})
    return pd.DataFrame(rows)


def _test_images(dataset: str, data_dir: str | None, subset: int | None, subset_seed: int) -> data.Dataset:
    """The test split, or its seeded subset of ``subset`` images (:func:`rs_repro.data.load_dataset`)."""
    return data.load_dataset(dataset, "test", data_dir=data_dir, n=subset, seed=subset_seed)


def sweep_unit(*, dataset: str, data_dir: str | None, subset: int | None, subset_seed: int,
               model: Mapping[str, Any], sigma: float, n: int, batch_size: int, device: str,
               seed: int) -> pd.DataFrame:
    """The row of :func:`sigma_sweep` at one ``sigma`` on the test images (``subset``: see
    :func:`certify_units`)."""
    base, _ = load_model(dataset, model, data_dir=data_dir, device=device)
    test = _test_images(dataset, data_dir, subset, subset_seed)
    return sigma_sweep(base, data.num_classes(dataset), test.x, test.y, [sigma], n, batch_size, seed)


def sweep_units(*, dataset: str, data_dir: str | None, subset: int | None, subset_seed: int,
                model: Mapping[str, Any], sigmas: Sequence[float], n: int, batch_size: int, device: str = "cpu",
                seed: int) -> list[Unit]:
    """The sweep over sigma, one unit per sigma (each draws from its own generator, so the rows are those of
    one :func:`sigma_sweep` over all of them)."""
    return [Unit(f"sweep-sigma{sigma:g}", f"{_MODULE}:sweep_unit",
                 {"dataset": dataset, "data_dir": data_dir, "subset": subset, "subset_seed": subset_seed,
                  "model": dict(model), "sigma": sigma, "n": n, "batch_size": batch_size, "device": device,
                  "seed": seed}) for sigma in sigmas]


def certify_unit(*, dataset: str, data_dir: str | None, subset: int | None, subset_seed: int, images: list[int],
                 positions: list[int], model: Mapping[str, Any], name: str, sigma: float, n0: int, n: int,
                 alpha: float, batch_size: int, device: str, seed: int) -> pd.DataFrame:
    """One unit of certification: :func:`certify_rows` on the images at ``positions`` of ``images``."""
    base, _ = load_model(dataset, model, data_dir=data_dir, device=device)
    test = _test_images(dataset, data_dir, subset, subset_seed)
    chosen = torch.as_tensor(images)
    return certify_rows(base, data.num_classes(dataset), test.x[chosen], test.y[chosen], test.index[chosen],
                        positions, name=name, sigma=sigma, n0=n0, n=n, alpha=alpha, batch_size=batch_size,
                        seed=seed)


def certify_units(*, dataset: str, data_dir: str | None, subset: int | None = None, subset_seed: int = 0,
                  images: Sequence[int], chunk: int, model: Mapping[str, Any], name: str, sigma: float, n0: int,
                  n: int, alpha: float, batch_size: int, device: str = "cpu", seed: int) -> list[Unit]:
    """CERTIFY of one base model at one sigma, as units of ``chunk`` images.

    The images are positions ``images`` in the test split of ``dataset``, or in its seeded subset of
    ``subset`` images drawn with ``subset_seed``; the base model is a :func:`rs_repro.models.model_spec`.
    Every image draws its noise from its own generator, so the rows do not depend on the chunking.
    """
    return [Unit(f"certify-{name}-sigma{sigma:g}-images{start}", f"{_MODULE}:certify_unit",
                 {"dataset": dataset, "data_dir": data_dir, "subset": subset, "subset_seed": subset_seed,
                  "images": [int(i) for i in images], "positions": list(range(start, min(start + chunk, len(images)))),
                  "model": dict(model), "name": name, "sigma": sigma, "n0": n0, "n": n, "alpha": alpha,
                  "batch_size": batch_size, "device": device, "seed": seed})
            for start in range(0, len(images), chunk)]


def certified_tables(units: Sequence[Unit], done: Mapping[str, pd.DataFrame]) -> dict[tuple[str, float], pd.DataFrame]:
    """The rows of :func:`certify_units` units joined per (model name, sigma), in the order of ``units``."""
    tables: dict[tuple[str, float], list[pd.DataFrame]] = {}
    for unit in units:
        tables.setdefault((unit.arguments["name"], unit.arguments["sigma"]), []).append(done[unit.id])
    return {key: pd.concat(parts, ignore_index=True) for key, parts in tables.items()}


def check_parameters(values: Mapping[str, Any]) -> None:
    """The chapter's rules on its parameters (ValueError naming the first one broken), run before anything."""
    need = rule_checker(values)
    size = data_and_models(values, ("standard", "randtrain"))
    fits, accepted = count_rule(values["num_images"], size, f"test images of {values['dataset']}",
                                zero="the whole test split")
    need(fits, "num_images", accepted)
    need(len(values["sigmas"]) in (0, 2) and len(set(values["sigmas"])) == len(values["sigmas"])
         and all(s > 0 for s in values["sigmas"]), "sigmas", "[] (chosen from the sweep) or two distinct noises > 0")
    need(len(values["accuracy_costs"]) == 2 and all(0 <= c < 1 for c in values["accuracy_costs"]),
         "accuracy_costs", "two accuracy drops in [0, 1)")
    need(bool(values["sweep_sigmas"]) and all(s > 0 for s in values["sweep_sigmas"]), "sweep_sigmas",
         "a non-empty list of noises > 0")
    need(values["randtrain_sigma"] > 0, "randtrain_sigma", "a noise > 0")
    need(0 < values["alpha"] < 1, "alpha", "a failure probability in (0, 1)")
    for name in ("sweep_n", "n0", "n", "batch_size"):
        need(values[name] >= 1, name, "at least 1")
    fits, accepted = device_rule(values["device"])
    need(fits, "device", accepted)


#: Images per CERTIFY unit.
CHUNK = 10


def model_specs(values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The :func:`rs_repro.models.model_spec` of the standard and the noise-trained model, by name, of those
    that exist: RandTrain comes from ``randtrain_weights`` when given, else it is trained here on the datasets
    of :data:`rs_repro.models.ARCHITECTURES`; elsewhere (ImageNet) it is absent (:func:`absent_models`)."""
    specs = {"standard": model_spec("standard", weights=values["standard_weights"], seed=values["seed"]),
             "randtrain": model_spec("randtrain", sigma=values["randtrain_sigma"], weights=values["randtrain_weights"],
                                     seed=values["seed"])}
    return {name: spec for name, spec in specs.items()
            if name == "standard" or values["dataset"] in ARCHITECTURES or spec["weights"]}


def absent_models(values: Mapping[str, Any]) -> dict[str, str]:
    """The base models left out of the chapter, each with the reason (a clause for the page)."""
    if "randtrain" in model_specs(values):
        return {}
    return {"randtrain": f"no randtrain checkpoint was given (randtrain_weights) and none is trained on "
                         f"{values['dataset']}"}


def _where(values: Mapping[str, Any]) -> dict[str, Any]:
    """The unit arguments every unit of the chapter shares (the test images, the batch, the device, the seed)."""
    return {"dataset": values["dataset"], "data_dir": values["data_dir"] or None, "subset": values["num_images"] or None,
            "subset_seed": values["seed"], "batch_size": values["batch_size"], "device": values["device"],
            "seed": values["seed"]}


def clean_unit(*, dataset: str, data_dir: str | None, subset: int | None, subset_seed: int, model: Mapping[str, Any],
               name: str, batch_size: int, device: str) -> pd.DataFrame:
    """One row ``model, accuracy``: the clean accuracy of a base model on the test images."""
    base, _ = load_model(dataset, model, data_dir=data_dir, device=device)
    test = _test_images(dataset, data_dir, subset, subset_seed)
    return pd.DataFrame([{"model": name, "accuracy": accuracy(base, test.x, test.y, batch_size=batch_size)}])


def selection_units(values: Mapping[str, Any]) -> list[Unit]:
    """The first stage of the chapter: the clean accuracy of each base model that exists (:func:`model_specs`)
    and the sweep over sigma, from which :func:`chosen_sigmas` picks the two noise levels. The models are
    trained here when missing."""
    where, specs = _where(values), model_specs(values)
    for spec in specs.values():
        load_model(values["dataset"], spec, data_dir=where["data_dir"])
    clean = [Unit(f"clean-{name}", f"{_MODULE}:clean_unit",
                  {k: where[k] for k in ("dataset", "data_dir", "subset", "subset_seed", "batch_size", "device")}
                  | {"model": dict(spec), "name": name}) for name, spec in specs.items()]
    return clean + sweep_units(**where, model=specs["standard"], sigmas=values["sweep_sigmas"], n=values["sweep_n"])


def chosen_sigmas(selection: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> tuple[float, float]:
    """The two noise levels of the standard model, smaller first: the ``sigmas`` parameter, or those the sweep
    picks for the two ``accuracy_costs`` (:func:`choose_sigmas`)."""
    clean = selection["clean-standard"].accuracy.iloc[0]
    sweep = pd.concat([t for k, t in selection.items() if k.startswith("sweep-")], ignore_index=True)
    chosen = list(values["sigmas"]) or choose_sigmas(sweep, clean, values["accuracy_costs"])
    if len(set(chosen)) != 2:
        raise ValueError(f"need two distinct smoothing noises for the standard model, got {chosen} (set sigmas, "
                         "or refine sweep_sigmas so that the two accuracy_costs pick different values)")
    low, high = sorted(chosen)
    return low, high


def certification_units(values: Mapping[str, Any], sigmas: tuple[float, float]) -> list[Unit]:
    """The second stage: CERTIFY of every test image for the standard model at both ``sigmas`` and for
    RandTrain at its training noise (unless it is absent, :func:`absent_models`), by chunks of :data:`CHUNK`
    images."""
    where, specs = _where(values), model_specs(values)
    count = len(_test_images(where["dataset"], where["data_dir"], where["subset"], where["subset_seed"]).x)
    configs = [("standard", sigmas[0]), ("standard", sigmas[1]), ("randtrain", values["randtrain_sigma"])]
    configs = [(name, sigma) for name, sigma in configs if name in specs]
    return [unit for name, sigma in configs
            for unit in certify_units(**where, images=list(range(count)), chunk=CHUNK, model=specs[name], name=name,
                                      sigma=sigma, n0=values["n0"], n=values["n"], alpha=values["alpha"])]


@dataclass(frozen=True)
class Results:
    """The chapter's tables (:func:`results`).

    Attributes
    ----------
    clean : dict of str to float
        Clean accuracy of each base model that exists (:func:`model_specs`).
    sweep : pandas.DataFrame
        :func:`sigma_sweep` over ``sweep_sigmas``.
    sigmas : tuple of float
        The two noise levels of the standard model, smaller first.
    certified : dict
        (model name, sigma) to the CERTIFY rows of every test image (:func:`certify_rows`): the standard model
        at both sigmas, then RandTrain unless it is absent.
    """

    clean: dict[str, float]
    sweep: pd.DataFrame
    sigmas: tuple[float, float]
    certified: dict[tuple[str, float], pd.DataFrame]


def results(selection: Mapping[str, pd.DataFrame], certification: Mapping[str, pd.DataFrame],
            values: Mapping[str, Any]) -> Results:
    """The chapter's tables from the tables of :func:`selection_units` and :func:`certification_units`."""
    sigmas = chosen_sigmas(selection, values)
    return Results(clean={t.model.iloc[0]: float(t.accuracy.iloc[0]) for k, t in selection.items()
                          if k.startswith("clean-")},
                   sweep=pd.concat([t for k, t in selection.items() if k.startswith("sweep-")], ignore_index=True),
                   sigmas=sigmas, certified=certified_tables(certification_units(values, sigmas), certification))


def log_paths(res: Results, values: Mapping[str, Any]) -> dict[tuple[str, float], Path]:
    """Where :func:`write_cohen_log` writes each configuration's log: ``<results_dir>/<stem>/<dataset>-<model>-
    sigma<sigma>.tsv``."""
    folder = Path(values["results_dir"]) / _MODULE.rpartition(".")[2]
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

    Without RandTrain (:func:`absent_models`) its numbers ``clean_randtrain`` and ``smoothed_rt`` are NaN, and
    the phrases ``randtrain_clean`` and ``randtrain_smoothed`` say why it has no row.
    """
    low, high = res.sigmas
    clean = res.clean["standard"]
    majority = dict(zip(res.sweep.sigma, res.sweep.majority_accuracy))
    smoothed = {key: float(rows.correct.mean()) for key, rows in res.certified.items()}
    paper = fig4_readings()
    logs = log_paths(res, values)
    rt_sigma = values["randtrain_sigma"]
    clean_rt, smoothed_rt = res.clean.get("randtrain", np.nan), smoothed.get(("randtrain", rt_sigma), np.nan)
    absent = absent_models(values).get("randtrain")
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
    """Approximate certified accuracy (Cohen et al.): the fraction certified correct with radius >= r.

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
