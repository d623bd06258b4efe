"""Compute functions of the ``fig5_attacks`` chapter: Fig. 5 of the paper.

Three decision-based attacks (HSJA, SurFree, RayS) against the undefended model, the standard model under
smoothing at two noise levels with n in {10, 50, 100} micro-decisions and the acceptance levels
P_a in {0.5, 0.8} (the paper's ceil(n P_a) rule), RandTrain under smoothing, and AdvTrain, all with the
same per-image query budget (2,000 in the paper). One row per attacked image records its distortions, its
queries and forward passes, and its best distortion at several budgets (from the oracle's history).

The work is a list of units (:mod:`rs_repro.engine`): one per classifier and attack and chunk of images
(:func:`attack_units`), one per classifier for its clean accuracy (:func:`accuracy_units`). A unit reads only
the code of its own attack, so an edit of one attack recomputes that attack's units and no other.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.artist import Artist
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from torch import nn

from .. import data, seeds
from ..attacks.oracle import AttackResult, Oracle, smoothed_oracle
from ..attacks.verification import verify
from ..checks import rule_checker
from ..engine import Unit
from ..measurements import AttackConfiguration, AttackGrid, CertificateRatio
from ..models import accuracy, load_model, model_spec
from ..paper import DISTORTION_OVER_RADIUS, fig5_readings
from ..plots import PALETTE
from ..smoothing import Smooth

#: The module and function of each attack of the paper, by the names its Fig. 5 uses.
ATTACKS: dict[str, str] = {"HSJA": "rs_repro.attacks.hsja:hsja", "SurFree": "rs_repro.attacks.surfree:surfree",
                           "RayS": "rs_repro.attacks.rays:rays"}
_MODULE = __name__


def check_parameters(values: Mapping[str, Any]) -> None:
    """The chapter's rules on its parameters (ValueError naming the first one broken), run before anything."""
    need = rule_checker(values)
    need(values["num_images"] >= 1, "num_images", "at least 1")
    need(values["max_queries"] >= 1, "max_queries", "at least 1")
    budgets = values["budgets"]
    need(bool(budgets) and budgets == sorted(set(budgets)) and budgets[0] >= 1 and budgets[-1] == values["max_queries"],
         "budgets", f"increasing positive budgets ending at max_queries={values['max_queries']}")
    need(bool(values["attacks"]) and set(values["attacks"]) <= set(ATTACKS), "attacks",
         f"a non-empty list of {sorted(ATTACKS)}")
    need(all(s > 0 for s in values["sigmas"]), "sigmas", "noise levels > 0")
    need(bool(values["ns"]) and all(n >= 1 for n in values["ns"]), "ns", "sample counts >= 1")
    need(all(n >= 1 for n in values["randtrain_ns"]), "randtrain_ns", "sample counts >= 1")
    need(bool(values["pas"]) and all(0 < p <= 1 for p in values["pas"]), "pas", "levels in (0, 1]")
    need(values["randtrain_sigma"] > 0, "randtrain_sigma", "a noise level > 0")
    need(values["advtrain_epsilon"] > 0, "advtrain_epsilon", "a radius > 0")
    for name in ("chunk", "verify_repeats", "certify_n"):
        need(values[name] >= 1, name, "at least 1")


def attack_function(attack: str) -> Callable[..., AttackResult]:
    """The attack called ``attack`` in :data:`ATTACKS` (imported on first use)."""
    if attack not in ATTACKS:
        raise ValueError(f"attack={attack!r} is not accepted; accepted: {sorted(ATTACKS)}")
    module, _, name = ATTACKS[attack].partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Target:
    """One attacked classifier of Fig. 5.

    ``model`` names the base model (``standard``, ``randtrain`` or ``advtrain``); ``sigma`` is ``None``
    without smoothing; ``n`` and ``pa`` are the votes per query and the acceptance level of the smoothed
    oracle (``pa=None``: the plain majority vote).
    """

    model: str
    sigma: float | None = None
    n: int | None = None
    pa: float | None = None

    @property
    def label(self) -> str:
        if self.sigma is None:
            return self.model
        rule = f", Pa={self.pa:g}" if self.pa is not None else ""
        return f"{self.model}/RS sigma={self.sigma:g}, n={self.n}{rule}"

    @property
    def slug(self) -> str:
        """The label as a file-name part, e.g. ``standard-rs0.35-n10-pa0.8``."""
        if self.sigma is None:
            return self.model
        rule = f"-pa{self.pa:g}" if self.pa is not None else ""
        return f"{self.model}-rs{self.sigma:g}-n{self.n}{rule}"


def grid(sigmas: Sequence[float], ns: Sequence[int], pas: Sequence[float], randtrain_sigma: float,
         randtrain_ns: Sequence[int]) -> list[Target]:
    """The classifiers of Fig. 5: undefended, smoothed standard, smoothed RandTrain, AdvTrain."""
    targets = [Target("standard")]
    targets += [Target("standard", s, n, pa) for s in sigmas for n in ns for pa in pas]
    targets += [Target("randtrain", randtrain_sigma, n, pa) for n in randtrain_ns for pa in pas]
    return targets + [Target("advtrain")]


def make_oracle(target: Target, model: nn.Module, num_classes: int, max_queries: int,
                generator: torch.Generator) -> Oracle:
    """The oracle an attack queries for ``target``: the base model, or g_{sigma,n} with the P_a rule."""
    if target.sigma is None:
        return Oracle(model, max_queries)
    return smoothed_oracle(Smooth(model, num_classes, target.sigma), target.n, target.pa, max_queries=max_queries,
                           generator=generator)


def vote_accuracy(target: Target, model: nn.Module, num_classes: int, x: torch.Tensor, y: torch.Tensor,
                  seed: int, batch_size: int = 10_000) -> float:
    """Clean accuracy of the attacked classifier: the base model, or the majority vote g_{sigma,n}."""
    if target.sigma is None:
        return accuracy(model, x, y, batch_size=batch_size)
    device = next(model.parameters()).device
    labels = Smooth(model, num_classes, target.sigma).vote(
        x.to(device), target.n, batch_size, generator=seeds.generator(seed, "accuracy", target.label, device=device))
    return float((labels.cpu() == y).double().mean())


def attack_rows(target: Target, attack: str, model: nn.Module, num_classes: int, x: torch.Tensor,
                y: torch.Tensor, index: torch.Tensor, units: Sequence[int], *, max_queries: int,
                budgets: Sequence[int], verify_repeats: int, seed: int) -> pd.DataFrame:
    """Run ``attack`` on the images at positions ``units`` (one batch) against ``target``.

    The attack and the oracle draw from generators seeded by the seed, the target, the attack and the
    first unit of the batch, so a resumed run recomputes a batch exactly. Under smoothing an answer
    "adversarial" may be luck, so the best adversarial query of each image is checked afterwards with
    ``verify_repeats`` fresh votes: ``verified`` estimates P[g_{sigma,n}(x_adv) != y], the level of
    eq. (4) (1 or 0 without smoothing).

    Returns
    -------
    pandas.DataFrame
        One row per image: ``unit, idx, label, attack, target, success, l2, linf, best_linf, queries,
        forward_passes, verified`` and ``l2_at_<q>`` for each budget q (inf where not yet adversarial).
    """
    device = next(model.parameters()).device
    block = torch.as_tensor(list(units))
    key = (target.label, attack, int(block[0]))
    oracle = make_oracle(target, model, num_classes, max_queries,
                         seeds.generator(seed, "oracle", *key, device=device))
    result = attack_function(attack)(oracle, x[block].to(device), y[block].to(device),
                                     seed=seeds.derive_seed(seed, *key))
    curves = oracle.best_at(budgets)
    if target.sigma is None:
        verified = result.success.double().numpy()
    else:
        smooth = Smooth(model, num_classes, target.sigma)
        verified = verify(smooth, result.x_adv.to(device), y[block].to(device), target.n, verify_repeats,
                          generator=seeds.generator(seed, "verify", *key, device=device))[0]
    rows = pd.DataFrame({"unit": block.numpy(), "idx": index[block].numpy(), "label": y[block].numpy(),
                         "attack": attack, "target": target.label, "success": result.success.numpy(),
                         "l2": result.l2.numpy(), "linf": result.linf.numpy(),
                         "best_linf": result.best_linf.numpy(), "queries": result.queries.numpy(),
                         "forward_passes": result.forward_passes.numpy(), "verified": verified})
    for j, q in enumerate(budgets):
        rows[f"l2_at_{q}"] = curves[:, j]
    return rows



def attacked_images(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_images: int, seed: int) -> torch.Tensor:
    """Positions of the attacked images: a seeded subset of ``num_images`` of those ``model`` classifies
    correctly (all of them when fewer), in the order of :func:`rs_repro.data.subset_indices`."""
    with torch.inference_mode():
        right = (model(x).argmax(1) == y).nonzero().squeeze(1)
    return right[data.subset_indices(len(right), min(num_images, len(right)), seed)]


def _images(dataset: str, data_dir: str | None, index: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    full = data.load_dataset(dataset, "test", data_dir=data_dir)
    positions = torch.as_tensor(list(index))
    return full.x[positions], full.y[positions]


def attack_unit(*, dataset: str, data_dir: str | None, index: list[int], positions: list[int],
                model: Mapping[str, Any], target: Mapping[str, Any], attack: str, max_queries: int,
                budgets: list[int], verify_repeats: int, seed: int) -> pd.DataFrame:
    """One unit of the attack grid: :func:`attack_rows` on the attacked images at ``positions``.

    ``index`` are the dataset positions of all the attacked images (test split), ``model`` the
    :func:`rs_repro.models.model_spec` of the base model, ``target`` the fields of a :class:`Target`.
    """
    base, _ = load_model(dataset, model, data_dir=data_dir)
    x, y = _images(dataset, data_dir, index)
    return attack_rows(Target(**target), attack, base, data.num_classes(dataset), x, y, torch.as_tensor(index),
                       positions, max_queries=max_queries, budgets=budgets, verify_repeats=verify_repeats,
                       seed=seed)


def attack_units(*, dataset: str, data_dir: str | None, index: Sequence[int], targets: Sequence[Target],
                 attacks: Sequence[str], models: Mapping[str, Mapping[str, Any]], max_queries: int,
                 budgets: Sequence[int], chunk: int, verify_repeats: int, seed: int) -> list[Unit]:
    """The attack grid as units: every target x attack x chunk of ``chunk`` attacked images.

    ``models`` maps a target's ``model`` name to its :func:`rs_repro.models.model_spec`. A unit's
    code is this module and its attack's module.
    """
    for attack in attacks:
        attack_function(attack)
    units = []
    for target in targets:
        for attack in attacks:
            for start in range(0, len(index), chunk):
                positions = list(range(start, min(start + chunk, len(index))))
                units.append(Unit(
                    f"attack-{attack}-{target.slug}-images{start}", f"{_MODULE}:attack_unit",
                    {"dataset": dataset, "data_dir": data_dir, "index": [int(i) for i in index],
                     "positions": positions, "model": dict(models[target.model]), "target": dataclasses.asdict(target),
                     "attack": attack, "max_queries": max_queries, "budgets": list(budgets),
                     "verify_repeats": verify_repeats, "seed": seed},
                    (_MODULE, ATTACKS[attack].partition(":")[0])))
    return units


def accuracy_unit(*, dataset: str, data_dir: str | None, model: Mapping[str, Any], target: Mapping[str, Any],
                  seed: int) -> pd.DataFrame:
    """One row ``target, accuracy``: :func:`vote_accuracy` of one classifier on the whole test split."""
    base, _ = load_model(dataset, model, data_dir=data_dir)
    full = data.load_dataset(dataset, "test", data_dir=data_dir)
    target = Target(**target)
    return pd.DataFrame([{"target": target.label, "accuracy": vote_accuracy(target, base, data.num_classes(dataset),
                                                                            full.x, full.y, seed)}])


def accuracy_units(*, dataset: str, data_dir: str | None, targets: Sequence[Target],
                   models: Mapping[str, Mapping[str, Any]], seed: int) -> list[Unit]:
    """The clean accuracy of every classifier, one unit each."""
    return [Unit(f"accuracy-{t.slug}", f"{_MODULE}:accuracy_unit",
                 {"dataset": dataset, "data_dir": data_dir, "model": dict(models[t.model]),
                  "target": dataclasses.asdict(t), "seed": seed}) for t in targets]


def model_specs(values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The :func:`rs_repro.models.model_spec` of each base model of the chapter, by name."""
    seed = values["seed"]
    return {"standard": model_spec("standard", seed=seed),
            "randtrain": model_spec("randtrain", sigma=values["randtrain_sigma"], seed=seed),
            "advtrain": model_spec("advtrain", epsilon=values["advtrain_epsilon"], seed=seed)}


def targets(values: Mapping[str, Any]) -> list[Target]:
    """The attacked classifiers of the chapter's parameters (:func:`grid`)."""
    return grid(values["sigmas"], values["ns"], values["pas"], values["randtrain_sigma"], values["randtrain_ns"])


def units(values: Mapping[str, Any]) -> list[Unit]:
    """The chapter's work: every classifier's clean accuracy, the attack grid (:func:`attack_units`) and
    CERTIFY of the attacked images under each smoothed base model (for the distortion-to-radius ratios).

    The base models are trained here when missing, before any unit runs, and the attacked images are chosen
    with the standard model (:func:`attacked_images`).
    """
    where = {"dataset": values["dataset"], "data_dir": values["data_dir"] or None}
    specs = model_specs(values)
    for spec in specs.values():
        load_model(values["dataset"], spec, data_dir=where["data_dir"])
    index = attacked_index(values)
    work = accuracy_units(**where, targets=targets(values), models=specs, seed=values["seed"])
    work += attack_units(**where, index=index, targets=targets(values), attacks=values["attacks"], models=specs,
                         max_queries=values["max_queries"], budgets=values["budgets"], chunk=values["chunk"],
                         verify_repeats=values["verify_repeats"], seed=values["seed"])
    # Imported by name: the certification units read the certification chapter's code, the attack units do not
    # (a static import would put it in their code digest, rs_repro.cache.code_digest).
    certification = importlib.import_module("rs_repro.experiments.fig4_certification")
    for name, sigma in _smoothed_models(values):
        work += certification.certify_units(**where, images=index, chunk=values["chunk"], model=specs[name], name=name, sigma=sigma,
                              n0=CERTIFY["n0"], n=values["certify_n"], alpha=CERTIFY["alpha"],
                              batch_size=CERTIFY["batch_size"], seed=values["seed"])
    return work


#: CERTIFY's settings for the certified radii of the attacked images, besides ``certify_n``.
CERTIFY = {"n0": 100, "alpha": 0.001, "batch_size": 10_000}


def _smoothed_models(values: Mapping[str, Any]) -> list[tuple[str, float]]:
    return sorted({(t.model, t.sigma) for t in targets(values) if t.sigma is not None})


def attacked_index(values: Mapping[str, Any]) -> list[int]:
    """Test-split positions of the attacked images (:func:`attacked_images` with the standard model)."""
    base, _ = load_model(values["dataset"], model_specs(values)["standard"], data_dir=values["data_dir"] or None)
    full = data.load_dataset(values["dataset"], "test", data_dir=values["data_dir"] or None)
    return full.index[attacked_images(base, full.x, full.y, values["num_images"], values["seed"])].tolist()


@dataclass(frozen=True)
class Results:
    """The chapter's tables, joined from its units' tables (:func:`results`).

    Attributes
    ----------
    accuracy : pandas.DataFrame
        ``target, accuracy``: clean accuracy of every classifier.
    runs : pandas.DataFrame
        One row per attacked image, attack and classifier (:func:`attack_rows`), with the classifier's
        ``model, sigma, n, pa, accuracy``.
    summary : pandas.DataFrame
        :func:`summarize` of ``runs``.
    ratios : pandas.DataFrame
        Per attack and smoothed classifier, the mean distortion over the certified radii of the same images
        (the fields of :class:`rs_repro.measurements.CertificateRatio`).
    certified : dict
        (model name, sigma) to the CERTIFY rows of the attacked images.
    """

    accuracy: pd.DataFrame
    runs: pd.DataFrame
    summary: pd.DataFrame
    ratios: pd.DataFrame
    certified: dict[tuple[str, float], pd.DataFrame]


def results(tables: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> Results:
    """The chapter's tables from the tables of :func:`units` (``tables`` maps a unit id to its table)."""
    accuracy = pd.concat([t for k, t in tables.items() if k.startswith("accuracy-")], ignore_index=True)
    runs = runs_table([t for k, t in tables.items() if k.startswith("attack-")], targets(values), accuracy)
    summary = summarize(runs)
    certified = {}
    for name, sigma in _smoothed_models(values):
        prefix = f"certify-{name}-sigma{sigma:g}-"
        certified[name, sigma] = pd.concat([t for k, t in tables.items() if k.startswith(prefix)], ignore_index=True)
    ratios = pd.DataFrame([{"attack": row.attack, "target": row.target, "mean_l2": row.mean_l2,
                            "mean_radius": certified[row.model, row.sigma].radius.mean(),
                            "ratio_of_means": row.mean_l2 / certified[row.model, row.sigma].radius.mean(),
                            "ratio_to_largest": row.mean_l2 / certified[row.model, row.sigma].radius.max()}
                           for row in summary[summary.sigma.notna()].itertuples()],
                          columns=[f.name for f in dataclasses.fields(CertificateRatio)])
    return Results(accuracy, runs, summary, ratios, certified)


def runs_table(tables: Sequence[pd.DataFrame], targets: Sequence[Target], accuracy: pd.DataFrame) -> pd.DataFrame:
    """The attack units' rows in one table, with each classifier's ``model, sigma, n, pa`` and ``accuracy``."""
    grid_table = pd.DataFrame([{"target": t.label, "model": t.model, "sigma": t.sigma, "n": t.n, "pa": t.pa}
                               for t in targets], dtype=object).astype({"sigma": float, "n": float, "pa": float})
    runs = pd.concat(list(tables), ignore_index=True)
    return runs.merge(grid_table, on="target").merge(accuracy, on="target")


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per attack and classifier: mean and median l2, success and verified rates, images, passes.

    Images misclassified from the start (distortion 0) are left out.
    """
    attacked = runs[runs.l2 > 0]
    return (attacked.groupby(["attack", "target", "model", "sigma", "n", "pa", "accuracy"], dropna=False)
            .agg(mean_l2=("l2", "mean"), median_l2=("l2", "median"), success=("success", "mean"),
                 verified=("verified", "mean"), images=("l2", "size"),
                 forward_passes=("forward_passes", "mean")).reset_index())


def _optional(value: float, kind: type) -> Any:
    return None if pd.isna(value) else kind(value)


def measured(res: Results, values: Mapping[str, Any]) -> AttackGrid:
    """The record the claims chapter reads (claims 1-6 and 10): every configuration and ratio."""
    configurations = [AttackConfiguration(
        attack=r.attack, target=r.target, model=r.model, sigma=_optional(r.sigma, float), n=_optional(r.n, int),
        pa=_optional(r.pa, float), accuracy=float(r.accuracy), mean_l2=float(r.mean_l2),
        median_l2=float(r.median_l2), success=float(r.success), verified=float(r.verified), images=int(r.images),
        forward_passes=float(r.forward_passes)) for r in res.summary.itertuples()]
    ratios = [CertificateRatio(**{k: (v if isinstance(v, str) else float(v)) for k, v in row.items()})
              for row in res.ratios.to_dict("records")]
    return AttackGrid(dataset=values["dataset"], num_images=int(res.runs.unit.nunique()),
                      max_queries=values["max_queries"], configurations=configurations, ratios=ratios)


#: The paper's name of each of our base models in its Fig. 5 (:func:`rs_repro.paper.fig5_readings`).
PAPER_MODELS = {"standard": "ResNet50", "randtrain": "RandTrain/RS", "advtrain": "AdvTrain"}


def beside_paper(summary: pd.DataFrame) -> pd.DataFrame:
    """Each configuration beside the paper's reading of the same marker of its Fig. 5, matched by attack,
    model, rank of sigma (the paper's and ours differ), n and P_a; columns ``attack, target, accuracy,
    mean_l2, accuracy_paper, l2_low, l2_high`` (NaN where the paper has no such marker)."""
    paper = fig5_readings()
    ours = summary.assign(paper_model=summary.model.map(PAPER_MODELS))
    ours.loc[ours.sigma.notna() & (ours.model == "standard"), "paper_model"] = "ResNet50/RS"
    ours["sigma_rank"] = ours.sigma.map({s: k for k, s in enumerate(sorted(ours.sigma[ours.model == "standard"]
                                                                            .dropna().unique()))})
    paper["sigma_rank"] = paper.sigma.map({s: k for k, s in enumerate(sorted(paper.sigma.dropna().unique()))})
    paper.loc[paper.model == "RandTrain/RS", "sigma_rank"] = np.nan
    side = ours.merge(paper, left_on=["attack", "paper_model", "sigma_rank", "n", "pa"],
                      right_on=["attack", "model", "sigma_rank", "n", "pa"], how="left", suffixes=("", "_paper"))
    return side[["attack", "target", "accuracy", "mean_l2", "accuracy_paper", "l2_low", "l2_high"]]


def page(res: Results, values: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers and phrases the chapter's prose reads, by glue name."""
    summary, attacks = res.summary, values["attacks"]
    undefended = summary[summary.target == "standard"].set_index("attack").mean_l2
    trend = []
    for attack in attacks:
        part = summary[(summary.attack == attack) & (summary.model == "standard") & summary.sigma.notna()]
        by_n = part.groupby("n").mean_l2.mean()
        trend.append(f"{attack}: " + " → ".join(f"{by_n[n]:.2f}" for n in sorted(values["ns"]) if n in by_n))
    paper = fig5_readings()
    surfree = paper[(paper.attack == "SurFree") & (paper.sigma == 0.05) & (paper.pa == 0.8)].sort_values("n")
    smoothed = summary[summary.sigma.notna()]
    level = smoothed.groupby("pa").verified.mean()
    top = smoothed[smoothed.pa == max(values["pas"])].groupby("n").verified.mean()
    return {
        "smallest_ratio": float(res.ratios.ratio_of_means.min()),
        "smallest_ratio_max": float(res.ratios.ratio_to_largest.min()),
        "certify_n": float(values["certify_n"]), "paper_ratio": DISTORTION_OVER_RADIUS,
        "undefended": ", ".join(f"{undefended[a]:.2f} ({a})" for a in attacks),
        "trend": "; ".join(trend), "ns_text": ", ".join(map(str, sorted(values["ns"]))),
        "paper_trend": " → ".join(f"{v:g}" for v in surfree.l2_low),
        "verified_by_pa": ", ".join(f"{level[p]:.2f} at Pa = {p:g}" for p in sorted(level.index)),
        "verified_by_n": ", ".join(f"{top[n]:.2f} (n={n:.0f})" for n in sorted(top.index)),
        "pa_max": float(max(values["pas"])), "verify_repeats": values["verify_repeats"],
    }


#: Colours of the classifier families without smoothing and of RandTrain in the Fig. 5 scatter.
FAMILY_COLOURS = {"undefended": "black", "randtrain": PALETTE[2], "advtrain": PALETTE[4]}
#: Colours of the smoothed standard model, one per sigma in increasing order, far from the families' colours.
SIGMA_COLOURS = (PALETTE[0], PALETTE[1], PALETTE[9], PALETTE[5], PALETTE[8], PALETTE[7])
#: Marker shapes of the acceptance levels, the largest level first (as in the paper, a disc for 80% and a
#: cross for 50%).
PA_MARKERS = ("o", "X", "^", "D", "v")
#: Marker shape of the classifiers without smoothing.
UNSMOOTHED_MARKER = "s"


def _family(row: Any, sigma_colour: dict[float, object]) -> tuple[tuple[int, float], str, object]:
    """Legend order, name and colour of the classifier of one summary row (a row of ``itertuples``)."""
    if pd.isna(row.sigma):
        if row.model == "advtrain":
            return (3, 0.0), "AdvTrain", FAMILY_COLOURS["advtrain"]
        return (0, 0.0), "undefended", FAMILY_COLOURS["undefended"]
    if row.model == "randtrain":
        return (2, row.sigma), f"RandTrain/RS $\\sigma$={row.sigma:g}", FAMILY_COLOURS["randtrain"]
    return (1, row.sigma), f"RS $\\sigma$={row.sigma:g}", sigma_colour[row.sigma]


def plot_scatter(summary: pd.DataFrame, attacks: Sequence[str]) -> plt.Figure:
    """Fig. 5: mean l2 distortion against clean accuracy, one panel per attack.

    Parameters
    ----------
    summary
        One row per (attack, classifier) with columns ``attack, model, sigma, n, pa, accuracy, mean_l2``
        (``sigma``, ``n``, ``pa`` NaN without smoothing).
    attacks
        The panels, in order.

    Returns
    -------
    matplotlib.figure.Figure
        Colour: classifier family (and sigma); marker size: n; marker shape: P_a, squares without smoothing.
        The legend explains all three (colours as patches, sizes and shapes in grey).
    """
    smoothed = summary.dropna(subset=["sigma"])
    sigmas = sorted(smoothed.loc[smoothed.model == "standard", "sigma"].unique())
    if len(sigmas) > len(SIGMA_COLOURS):
        raise ValueError(f"at most {len(SIGMA_COLOURS)} smoothing noises can be told apart, got {sigmas}")
    sigma_colour = dict(zip(sigmas, SIGMA_COLOURS))
    ns = sorted(int(n) for n in smoothed.n.unique())
    pas = sorted(smoothed.pa.dropna().unique(), reverse=True)
    if len(pas) > len(PA_MARKERS):
        raise ValueError(f"at most {len(PA_MARKERS)} acceptance levels can be told apart, got {pas}")
    size = {n: 30 + 90 * k for k, n in enumerate(ns)}
    marker = dict(zip(pas, PA_MARKERS))
    fig, axes = plt.subplots(1, len(attacks), figsize=(4.2 * len(attacks), 3.8), squeeze=False)
    families: dict[tuple[int, float], tuple[str, object]] = {}
    for ax, attack in zip(axes[0], attacks):
        for row in summary[summary.attack == attack].itertuples():
            order, name, colour = _family(row, sigma_colour)
            families[order] = name, colour
            plain = pd.isna(row.sigma)
            ax.scatter(row.accuracy, row.mean_l2, color=colour, alpha=0.8, edgecolors="white", linewidths=0.5,
                       s=60 if plain else size[int(row.n)],
                       marker=UNSMOOTHED_MARKER if plain else marker.get(row.pa, PA_MARKERS[0]))
        ax.set(title=attack, xlabel="accuracy", ylabel="mean $\\ell_2$ distortion")

    def key(label: str, **style: object) -> Line2D:
        return Line2D([], [], linestyle="", label=label, **style)

    grey = {"color": "0.45", "markeredgecolor": "white"}
    handles: list[Artist] = [Patch(color=colour, alpha=0.8, label=name) for _, (name, colour) in sorted(families.items())]
    handles += [key(f"$n$ = {n}", marker="o", markersize=size[n] ** 0.5, **grey) for n in ns]
    handles += [key(f"$P_a$ = {pa:g}", marker=marker[pa], markersize=8, **grey) for pa in pas]
    handles += [key("no smoothing", marker=UNSMOOTHED_MARKER, markersize=8, **grey)]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small", frameon=False,
               labelspacing=1.0)
    fig.tight_layout()
    return fig


def plot_queries(runs: pd.DataFrame, attacks: Sequence[str], budgets: Sequence[int], pas: Sequence[float]) -> plt.Figure:
    """Median over the attacked images of the best distortion found within each budget, one panel per
    attack (the classifiers without smoothing and those at the largest P_a, for legibility).

    ``runs`` holds one row per image as :func:`results` joins them, with the ``l2_at_<q>`` columns of
    :func:`attack_rows`; images misclassified from the start are left out.
    """
    attacked = runs[runs.l2 > 0]
    columns = [f"l2_at_{q}" for q in budgets]
    fig, axes = plt.subplots(1, len(attacks), figsize=(4.2 * len(attacks), 3.6), squeeze=False, sharey=True)
    for ax, attack in zip(axes[0], attacks):
        part = attacked[attacked.attack == attack]
        for k, (label, rows) in enumerate(part.groupby("target", sort=False)):
            if not pd.isna(rows.pa.iloc[0]) and rows.pa.iloc[0] != max(pas):
                continue
            ax.plot(budgets, rows[columns].median().to_numpy(), marker=".", color=f"C{k % 10}",
                    label=label.replace("sigma", "$\\sigma$"))
        ax.set(title=attack, xlabel="queries", ylabel="median best $\\ell_2$ so far", xscale="log")
    axes[0][-1].legend(fontsize="xx-small", loc="upper right")
    return fig
