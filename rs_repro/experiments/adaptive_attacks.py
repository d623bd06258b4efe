"""Compute functions of the ``adaptive_attacks`` chapter: beyond the paper, attackers that know the defence is
random, and noise inside the network.

The paper's attackers (HSJA, SurFree, RayS) treat g_{sigma,n} as a deterministic classifier, and its practical
advice, "a few samples n defend better" (ICASSP 2022, section 4), is measured against them. This chapter asks
whether the advice survives attackers that adapt to the randomness:

* repeat-and-vote: every query asked k times and answered by the majority (:class:`rs_repro.attacks.oracle.Oracle`
  with ``repeats``), at the same total budget (k times fewer distinct queries) and at k times the budget;
* PopSkipJump (Simon-Gabriel, Sheikh and Krause, ICML 2021), HSJA adapted to probabilistic classifiers;
* against a defence that seeds its noise from a hash of the input (the same query always gets the same answer,
  so plain repeats buy nothing), the counter: repeats at slightly jittered points;

and compares input noise with noise injected after the first layer (Gaussian and Laplace, Pinot et al.,
NeurIPS 2019; :class:`rs_repro.hidden_noise.HiddenNoise`) at the same clean accuracy. Every adversarial example
is confirmed (eq. 4 at the chapter's level, inside the pixel box, from the attack's best query or last iterate:
:func:`rs_repro.experiments.fig5_attacks.confirm_rows`), an image without one being a failure, and every query is
counted: a repeated query is k queries and k n forward passes.

The work is two lists of units (:mod:`rs_repro.pipeline.engine`): the hidden-noise levels (:func:`calibration_units`,
one per law and sigma), then the attacks, one unit per defence, attacker and chunk of images
(:func:`units`), and the clean accuracy of every defence.
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
from torch import nn

from rs_repro import data, seeds
from rs_repro.attacks.oracle import AttackResult, smoothed_oracle
from rs_repro.attacks.verification import verify
from rs_repro.checks import rule_checker
from rs_repro.experiments.claims import BEYOND
from rs_repro.experiments.common import count_rule, data_and_models
from rs_repro.experiments.fig5_attacks import ATTACKS as PAPER_ATTACKS
from rs_repro.experiments.fig5_attacks import _images, attacked_images, confirm_rows, test_pool
from rs_repro.hidden_noise import LAWS, HiddenNoise, match_accuracy
from rs_repro.models import load_model, model_spec
from rs_repro.pipeline.engine import Unit
from rs_repro.report.measurements import AdaptiveConfiguration, AdaptiveGrid
from rs_repro.report.plots import PALETTE
from rs_repro.smoothing import Smooth

#: The module and function of each attack of the chapter, the paper's three
#: (:data:`rs_repro.experiments.fig5_attacks.ATTACKS`) and PopSkipJump.
ATTACKS: dict[str, str] = {**PAPER_ATTACKS, "PopSkipJump": "rs_repro.attacks.popskipjump:popskipjump"}
#: Where a defence adds its noise, at the input (randomized smoothing) or after the first layer.
NOISES = ("input", *(f"hidden-{law}" for law in LAWS))
_MODULE = __name__


def check_parameters(values: Mapping[str, Any]) -> None:
    """The chapter's rules on its parameters (ValueError naming the first one broken), run before anything."""
    need = rule_checker(values)
    size = data_and_models(values, device=True)
    fits, accepted = count_rule(values["pool"], size, f"test images of {values['dataset']}",
                                zero="the whole test split")
    need(fits, "pool", accepted)
    for name in ("num_images", "calibration_images"):
        fits, accepted = count_rule(values[name], values["pool"] or size, "test images in the pool")
        need(fits, name, accepted)
    for name in ("max_queries", "chunk", "verify_repeats", "votes", "confirm_votes", "calibration_draws",
                 "batch_size"):
        need(values[name] >= 1, name, "at least 1")
    need(0 < values["alpha"] < 1, "alpha", "a level in (0, 1)")
    need(bool(values["sigmas"]) and all(s > 0 for s in values["sigmas"]), "sigmas", "noise levels > 0")
    need(bool(values["ns"]) and all(n >= 1 for n in values["ns"]), "ns", "sample counts >= 1")
    need(0 < values["level"] < 1, "level", "a level P_a in (0, 1) (a level of 1 cannot be confirmed by votes)")
    need(bool(values["attacks"]) and set(values["attacks"]) <= set(ATTACKS), "attacks",
         f"a non-empty list of {sorted(ATTACKS)}")
    for name in ("repeat_attacks", "scaled_attacks", "hash_attacks", "hidden_attacks"):
        need(set(values[name]) <= set(ATTACKS), name, f"a list of {sorted(ATTACKS)}")
    need(all(k >= 2 for k in values["repeats"]), "repeats", "repeat counts >= 2")
    need(bool(values["repeats"]) or not (values["repeat_attacks"] or values["scaled_attacks"]), "repeats",
         "at least one repeat count when repeat_attacks or scaled_attacks are given")
    need(all(k >= 2 for k in values["hash_repeats"]), "hash_repeats", "repeat counts >= 2")
    need(values["jitter"] > 0, "jitter", "an l2 norm > 0")
    need(set(values["hidden_laws"]) <= set(LAWS), "hidden_laws", f"a list of {list(LAWS)}")
    need(not values["hidden_laws"] or bool(values["hidden_attacks"]), "hidden_attacks",
         "at least one attack when hidden_laws are given")


def attack_function(attack: str) -> Callable[..., AttackResult]:
    """The attack called ``attack`` in :data:`ATTACKS` (imported on first use)."""
    if attack not in ATTACKS:
        raise ValueError(f"attack={attack!r} is not accepted; accepted: {sorted(ATTACKS)}")
    module, _, name = ATTACKS[attack].partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Defence:
    """One random classifier: a vote of ``n`` noisy micro-decisions of the standard model.

    ``noise`` is where the noise goes (:data:`NOISES`); ``sigma`` the input noise, or for hidden noise the
    input noise whose clean accuracy its ``scale`` matches (:func:`calibration_units`); ``seeding`` how a
    query's noise is drawn (:data:`rs_repro.attacks.oracle.NOISE_SEEDINGS`).
    """

    sigma: float
    n: int
    noise: str = "input"
    seeding: str = "fresh"
    scale: float | None = None

    @property
    def noise_scale(self) -> float:
        """The standard deviation of each noise coordinate (sigma for input noise)."""
        return self.sigma if self.scale is None else self.scale

    @property
    def label(self) -> str:
        where = f"input σ={self.sigma:g}" if self.noise == "input" else \
            f"{self.noise} {self.noise_scale:.3g} (accuracy of σ={self.sigma:g})"
        return f"{where}, n={self.n}" + (", input-hash" if self.seeding == "input-hash" else "")

    @property
    def slug(self) -> str:
        return f"{self.noise}-s{self.sigma:g}-n{self.n}" + ("-hash" if self.seeding == "input-hash" else "")


@dataclass(frozen=True)
class Attacker:
    """An attack and how it queries: each query asked ``repeats`` times (the majority answer), at
    ``jitter`` l2 from the query point, with ``budget_factor`` times the chapter's budget."""

    attack: str
    repeats: int = 1
    budget_factor: int = 1
    jitter: float = 0.0

    @property
    def kind(self) -> str:
        """``plain``, ``repeat`` (equal budget), ``scaled`` (k times the budget), with ``jittered`` before."""
        if self.repeats == 1:
            return "plain"
        base = "scaled" if self.budget_factor > 1 else "repeat"
        return f"jittered {base}" if self.jitter else base

    @property
    def label(self) -> str:
        if self.repeats == 1:
            return self.attack
        jitter = " jittered" if self.jitter else ""
        budget = f", {self.budget_factor}× budget" if self.budget_factor > 1 else ""
        return f"{self.attack} ×{self.repeats}{jitter}{budget}"

    @property
    def slug(self) -> str:
        return f"{self.attack}-k{self.repeats}-b{self.budget_factor}" + ("-jitter" if self.jitter else "")


def grid(values: Mapping[str, Any],
         scales: Mapping[tuple[str, float, int], float]) -> list[tuple[Defence, Attacker]]:
    """Every (defence, attacker) pair of the chapter's parameters; ``scales`` maps (law, sigma, n) to the
    hidden noise level of :func:`hidden_scales`."""
    pairs = []
    for sigma in values["sigmas"]:
        for n in values["ns"]:
            plain = Defence(sigma, n)
            pairs += [(plain, Attacker(a)) for a in values["attacks"]]
            for k in values["repeats"]:
                pairs += [(plain, Attacker(a, k)) for a in values["repeat_attacks"]]
                pairs += [(plain, Attacker(a, k, k)) for a in values["scaled_attacks"]]
            hashed = Defence(sigma, n, seeding="input-hash")
            for a in values["hash_attacks"]:
                pairs.append((hashed, Attacker(a)))
                pairs += [(hashed, Attacker(a, k, k, values["jitter"])) for k in values["hash_repeats"]]
            for law in values["hidden_laws"]:
                hidden = Defence(sigma, n, f"hidden-{law}", scale=scales[law, sigma, n])
                pairs += [(hidden, Attacker(a)) for a in values["hidden_attacks"]]
    return pairs


def smooth_for(defence: Defence, model: nn.Module, num_classes: int) -> Smooth:
    """The random classifier of ``defence`` around ``model``: :class:`~rs_repro.smoothing.Smooth`, or
    :class:`~rs_repro.hidden_noise.HiddenNoise` for hidden noise."""
    if defence.noise == "input":
        return Smooth(model, num_classes, defence.sigma)
    return HiddenNoise(model, num_classes, defence.noise_scale, law=defence.noise.removeprefix("hidden-"))


def attack_rows(defence: Defence, attacker: Attacker, model: nn.Module, num_classes: int, x: torch.Tensor,
                y: torch.Tensor, index: torch.Tensor, positions: Sequence[int], *, max_queries: int, level: float,
                verify_repeats: int, votes: int, confirm_votes: int, alpha: float, seed: int,
                batch_size: int = 10_000) -> pd.DataFrame:
    """Run ``attacker`` on the images at ``positions`` against ``defence``; confirm its points at ``level``.

    The oracle is g_{sigma,n}'s majority vote (the answer a deployed defence gives), with the attacker's
    repeats and jitter (:func:`rs_repro.attacks.oracle.smoothed_oracle`) and ``attacker.budget_factor *
    max_queries`` queries per image. The defender's secret of input-hash seeding, the attack's, the oracle's
    and the jitter's generators are seeded by the seed, the defence, the attacker and the first position, so
    a resumed run recomputes a batch exactly. Each image's best accepted query is re-checked with
    ``verify_repeats`` fresh votes (``level_at_reported``), and the attack's candidates (best accepted query,
    last iterate) give a confirmed adversarial example at ``level`` inside the pixel box, at confidence
    1 - ``alpha`` (:func:`rs_repro.experiments.fig5_attacks.confirm_rows`; ``verified_l2`` inf on a failure).
    Eq. (4)'s probability is over the defence's noise; for input-hash seeding that is the defender's unknown
    key, so the same fresh votes confirm it.

    Returns
    -------
    pandas.DataFrame
        One row per image: ``unit, idx, label, defence, attacker, success, l2, queries, forward_passes,
        level_at_reported, verified_l2, t, source, confirm_forward_passes``.
    """
    device = next(model.parameters()).device
    block = torch.as_tensor(list(positions))
    key = (defence.label, attacker.label, int(block[0]))
    x_o, labels = x[block].to(device), y[block].to(device)
    smooth = smooth_for(defence, model, num_classes)
    oracle = smoothed_oracle(smooth, defence.n, max_queries=attacker.budget_factor * max_queries,
                             batch_size=batch_size, generator=seeds.generator(seed, "oracle", *key, device=device),
                             noise=defence.seeding, noise_key=seeds.derive_seed(seed, "noise-key", defence.label),
                             repeats=attacker.repeats, jitter=attacker.jitter,
                             jitter_seed=seeds.derive_seed(seed, "jitter", *key))
    result = attack_function(attacker.attack)(oracle, x_o, labels, seed=seeds.derive_seed(seed, *key))
    reported = verify(smooth, result.x_adv.to(device), labels, defence.n, verify_repeats, batch_size=batch_size,
                      generator=seeds.generator(seed, "verify", *key, device=device))[0]
    confirmed = confirm_rows(smooth, x_o, labels, result, n=defence.n, level=level, votes=votes,
                             confirm_votes=confirm_votes, alpha=alpha, seed=seeds.derive_seed(seed, "push", *key),
                             batch_size=batch_size)
    return pd.DataFrame({"unit": block.numpy(), "idx": index[block].numpy(), "label": y[block].numpy(),
                         "defence": defence.label, "attacker": attacker.label, "success": result.success.numpy(),
                         "l2": result.l2.numpy(), "queries": result.queries.numpy(),
                         "forward_passes": result.forward_passes.numpy(), "level_at_reported": reported,
                         "verified_l2": confirmed["verified_l2"], "t": confirmed["t"],
                         "source": confirmed["source"], "confirm_forward_passes": confirmed["confirm_forward_passes"]})


def attack_unit(*, dataset: str, data_dir: str | None, pool: int, index: list[int], positions: list[int],
                model: Mapping[str, Any], defence: Mapping[str, Any], attacker: Mapping[str, Any], max_queries: int,
                level: float, verify_repeats: int, votes: int, confirm_votes: int, alpha: float, batch_size: int,
                device: str, seed: int) -> pd.DataFrame:
    """One unit of the attack grid: :func:`attack_rows` on the attacked images at ``positions`` (``index``:
    the test-split positions of all of them), ``model`` a :func:`rs_repro.models.model_spec`, ``defence``
    and ``attacker`` the fields of a :class:`Defence` and an :class:`Attacker`."""
    base, _ = load_model(dataset, model, data_dir=data_dir, device=device)
    x, y = _images(dataset, data_dir, pool, seed, index)
    return attack_rows(Defence(**defence), Attacker(**attacker), base, data.num_classes(dataset), x, y,
                       torch.as_tensor(index), positions, max_queries=max_queries, level=level,
                       verify_repeats=verify_repeats, votes=votes, confirm_votes=confirm_votes, alpha=alpha, seed=seed,
                       batch_size=batch_size)


def _vote_correct(smooth: Smooth, n: int, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
                  batch_size: int) -> np.ndarray:
    """Which majority votes g_{sigma,n} of ``smooth`` on ``x`` [N, C, H, W] are right (labels ``y`` [N]; ties
    broken at random), bool [N]."""
    return (smooth.vote(x, n, batch_size, generator=generator).cpu() == y.cpu()).numpy()


def calibration_unit(*, dataset: str, data_dir: str | None, pool: int, images: int, draws: int,
                     model: Mapping[str, Any], law: str, sigma: float, n: int, batch_size: int, device: str,
                     seed: int) -> pd.DataFrame:
    """The hidden-noise level of ``law`` at the clean accuracy of the input-noise vote g_{sigma,n}.

    On the first ``images`` of the chapter's pool (:func:`~rs_repro.experiments.fig5_attacks.test_pool`), the
    accuracy of g_{sigma,n} is measured over ``draws`` independent votes per image, then
    :func:`rs_repro.hidden_noise.match_accuracy` finds the scale of noise after the first layer whose vote of n
    has the same accuracy there, also averaged over ``draws`` votes per image (each accuracy from a seeded
    generator; the standard error of each is at most 0.5 / sqrt(draws * images)). The match is made at every n:
    the accuracy of a vote grows with n, and a level matched at the largest n, where input noise costs least, can
    be no noise at all.

    Returns
    -------
    pandas.DataFrame
        One row: ``law, sigma, n, images, input_accuracy, scale, hidden_accuracy``.
    """
    base, _ = load_model(dataset, model, data_dir=data_dir, device=device)
    drawn = test_pool(dataset, data_dir, pool, seed)
    x, y = drawn.x[:images].to(device), drawn.y[:images].to(device)
    right = _vote_correct(Smooth(base, data.num_classes(dataset), sigma), n, x.repeat(draws, 1, 1, 1),
                          y.repeat(draws), seeds.generator(seed, "calibration", sigma, n, device=device), batch_size)
    scale, achieved = match_accuracy(base, data.num_classes(dataset), x, y, float(right.mean()), law=law, n=n,
                                     seed=seeds.derive_seed(seed, "calibration", law, sigma, n), draws=draws,
                                     batch_size=batch_size)
    return pd.DataFrame([{"law": law, "sigma": sigma, "n": n, "images": len(y), "draws": draws,
                          "input_accuracy": float(right.mean()), "scale": scale, "hidden_accuracy": achieved}])


def _where(values: Mapping[str, Any]) -> dict[str, Any]:
    return {"dataset": values["dataset"], "data_dir": values["data_dir"] or None, "pool": values["pool"]}


def _standard(values: Mapping[str, Any]) -> dict[str, Any]:
    """The :func:`rs_repro.models.model_spec` of the standard model (trained here when it has no checkpoint)."""
    return model_spec("standard", seed=values["seed"], weights=values["standard_weights"])


def calibration_units(values: Mapping[str, Any]) -> list[Unit]:
    """One :func:`calibration_unit` per hidden law, sigma and n."""
    run = {"batch_size": values["batch_size"], "device": values["device"]}
    spec = _standard(values)
    load_model(values["dataset"], spec, data_dir=values["data_dir"] or None)  # trained before any unit runs
    return [Unit(f"calibration-{law}-sigma{sigma:g}-n{n}", f"{_MODULE}:calibration_unit",
                 {**_where(values), **run, "images": values["calibration_images"],
                  "draws": values["calibration_draws"], "model": spec, "law": law,
                  "sigma": sigma, "n": n, "seed": values["seed"]},
                 (_MODULE, "rs_repro.hidden_noise"))
            for law in values["hidden_laws"] for sigma in values["sigmas"] for n in values["ns"]]


def hidden_scales(tables: Mapping[str, pd.DataFrame]) -> dict[tuple[str, float, int], float]:
    """(law, sigma, n) to the hidden-noise scale, from the tables of :func:`calibration_units`."""
    return {(row.law, float(row.sigma), int(row.n)): float(row.scale) for t in tables.values()
            for row in t.itertuples()}


def accuracy_unit(*, dataset: str, data_dir: str | None, pool: int, model: Mapping[str, Any],
                  defence: Mapping[str, Any], batch_size: int, device: str, seed: int) -> pd.DataFrame:
    """One row per test image of the chapter (:func:`~rs_repro.experiments.fig5_attacks.test_pool`), ``defence,
    idx, correct``: whether the majority vote of one defence labels it right, from fresh noise (input-hash
    seeding has the same law over the unknown key)."""
    base, _ = load_model(dataset, model, data_dir=data_dir, device=device)
    full = test_pool(dataset, data_dir, pool, seed)
    defence = Defence(**defence)
    right = _vote_correct(smooth_for(defence, base, data.num_classes(dataset)), defence.n, full.x.to(device),
                          full.y, seeds.generator(seed, "accuracy", defence.label, device=device), batch_size)
    return pd.DataFrame({"defence": defence.label, "idx": np.asarray(full.index), "correct": right})


def attacked_positions(values: Mapping[str, Any]) -> list[int]:
    """Test-split positions of the attacked images: :func:`rs_repro.experiments.fig5_attacks.attacked_images`
    with the standard model in the chapter's pool."""
    device, data_dir = values["device"], values["data_dir"] or None
    base, _ = load_model(values["dataset"], _standard(values), data_dir=data_dir, device=device)
    drawn = test_pool(values["dataset"], data_dir, values["pool"], values["seed"])
    chosen = attacked_images(base, drawn.x.to(device), drawn.y.to(device), values["num_images"], values["seed"])
    return drawn.index[chosen.cpu()].tolist()


def _unfreshed(defence: Defence) -> Defence:
    """The defence with fresh noise (whose accuracy an input-hash defence shares)."""
    return dataclasses.replace(defence, seeding="fresh")


def units(values: Mapping[str, Any], scales: Mapping[tuple[str, float, int], float]) -> list[Unit]:
    """The chapter's work after the calibration: the clean accuracy of every defence and every (defence,
    attacker, chunk of ``chunk`` images) of :func:`grid`. An attack unit's code is this module and its
    attack's module."""
    run = {"batch_size": values["batch_size"], "device": values["device"], "seed": values["seed"]}
    spec = _standard(values)
    index = attacked_positions(values)
    pairs = grid(values, scales)
    work = [Unit(f"accuracy-{d.slug}", f"{_MODULE}:accuracy_unit",
                 {**_where(values), **run, "model": spec, "defence": dataclasses.asdict(d)})
            for d in dict.fromkeys(_unfreshed(d) for d, _ in pairs)]
    for defence, attacker in pairs:
        for start in range(0, len(index), values["chunk"]):
            positions = list(range(start, min(start + values["chunk"], len(index))))
            work.append(Unit(
                f"attack-{attacker.slug}-{defence.slug}-images{start}", f"{_MODULE}:attack_unit",
                {**_where(values), **run, "index": index, "positions": positions, "model": spec,
                 "defence": dataclasses.asdict(defence), "attacker": dataclasses.asdict(attacker),
                 "max_queries": values["max_queries"], "level": values["level"],
                 "verify_repeats": values["verify_repeats"], "votes": values["votes"],
                 "confirm_votes": values["confirm_votes"], "alpha": values["alpha"]},
                (_MODULE, ATTACKS[attacker.attack].partition(":")[0])))
    return work


@dataclass(frozen=True)
class Results:
    """The chapter's tables (:func:`results`).

    Attributes
    ----------
    calibration : pandas.DataFrame
        :func:`calibration_unit` rows (empty without hidden noise).
    accuracy : pandas.DataFrame
        ``defence, correct, tested, accuracy`` of every defence (input-hash rows share their fresh twin's).
    answers : pandas.DataFrame
        ``defence, idx, correct``: every defence's answer on every tested image (input-hash rows share their
        fresh twin's).
    runs : pandas.DataFrame
        One row per image, defence and attacker (:func:`attack_rows`) with the fields of both.
    summary : pandas.DataFrame
        :func:`summarize` of ``runs``.
    """

    calibration: pd.DataFrame
    accuracy: pd.DataFrame
    answers: pd.DataFrame
    runs: pd.DataFrame
    summary: pd.DataFrame


def results(calibration: Mapping[str, pd.DataFrame], tables: Mapping[str, pd.DataFrame],
            values: Mapping[str, Any]) -> Results:
    """The chapter's tables from those of :func:`calibration_units` and :func:`units`."""
    scales = hidden_scales(calibration)
    pairs = grid(values, scales)
    answers = pd.concat([t for k, t in tables.items() if k.startswith("accuracy-")], ignore_index=True)
    hashed = [answers[answers.defence == _unfreshed(d).label].assign(defence=d.label)
              for d in dict.fromkeys(d for d, _ in pairs) if d.seeding != "fresh"]
    answers = pd.concat([answers, *hashed], ignore_index=True)
    accuracy = (answers.groupby("defence", sort=False).correct.agg(correct="sum", tested="size").reset_index()
                .assign(accuracy=lambda a: a.correct / a.tested))
    fields = pd.DataFrame([{"defence": d.label, "attacker": a.label, "attack": a.attack, "kind": a.kind,
                            "repeats": a.repeats, "budget_factor": a.budget_factor, "jitter": a.jitter,
                            "noise": d.noise, "seeding": d.seeding, "sigma": d.sigma, "scale": d.noise_scale,
                            "n": d.n} for d, a in pairs])
    runs = pd.concat([t for k, t in tables.items() if k.startswith("attack-")], ignore_index=True)
    runs = runs.merge(fields, on=["defence", "attacker"]).merge(accuracy[["defence", "accuracy"]], on="defence")
    columns = ["law", "sigma", "n", "images", "draws", "input_accuracy", "scale", "hidden_accuracy"]
    frame = pd.concat(list(calibration.values()), ignore_index=True) if calibration else pd.DataFrame(columns=columns)
    return Results(frame, accuracy, answers, runs, summarize(runs))


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per defence and attacker over every attacked image: ``median_verified_l2`` (the confirmed
    distortion; inf when at least half of the images fail), ``median_l2`` (reported), ``verified`` (fraction with
    a confirmed point),
    ``level_at_reported`` (mean), ``queries`` and ``forward_passes`` (means per image), ``accuracy``."""
    keys = ["defence", "attacker", "attack", "kind", "repeats", "budget_factor", "noise", "seeding", "sigma",
            "scale", "n", "accuracy"]
    return (runs.assign(found=np.isfinite(runs.verified_l2))
            .groupby(keys, sort=False)
            .agg(median_verified_l2=("verified_l2", "median"), median_l2=("l2", "median"), verified=("found", "mean"),
                 level_at_reported=("level_at_reported", "mean"), queries=("queries", "mean"),
                 forward_passes=("forward_passes", "mean"), images=("l2", "size")).reset_index())


def measured(res: Results, values: Mapping[str, Any]) -> AdaptiveGrid:
    """The record the claims chapter reads (the rows beyond the paper): every configuration, image by image."""
    images = res.runs.sort_values("unit").drop_duplicates("unit").idx.tolist()
    counts = res.accuracy.set_index("defence")
    answers = {label: part.correct.astype(bool).tolist() for label, part in res.answers.groupby("defence")}
    configurations = []
    for (_, _), part in res.runs.groupby(["defence", "attacker"], sort=False):
        part = part.set_index("idx").loc[images]
        first = part.iloc[0]
        configurations.append(AdaptiveConfiguration(
            attack=str(first.attack), repeats=int(first.repeats), budget_factor=int(first.budget_factor),
            jitter=float(first.jitter), noise=str(first.noise), seeding=str(first.seeding), sigma=float(first.sigma),
            scale=float(first.scale), n=int(first.n), correct=int(counts.correct[first.defence]),
            tested=int(counts.tested[first.defence]), correct_images=answers[first.defence], reported_l2=part.l2.astype(float).tolist(),
            verified_l2=part.verified_l2.astype(float).tolist(), queries=float(part.queries.mean()),
            forward_passes=float(part.forward_passes.mean())))
    return AdaptiveGrid(dataset=values["dataset"], seed=values["seed"], max_queries=values["max_queries"],
                        level=values["level"], votes=values["votes"], alpha=values["alpha"], images=[int(i) for i in images],
                        configurations=configurations)


#: The marker of each attacker kind in the figures (the plain attack, repeats at the same budget, at k times it).
KIND_MARKERS = {"plain": "o", "repeat": "v", "scaled": "s"}
#: Marker area per repeat count k in the figures (larger k, larger marker).
REPEAT_SIZES = {1: 36, 3: 60, 9: 100}


def plot_cost(summary: pd.DataFrame) -> plt.Figure:
    """Median confirmed distortion against the attacker's cost, input noise with fresh noise, one column per
    attack.

    Top row: against the mean queries per image; bottom row: against the mean base-model forward passes per
    image (log scales). Colour: n; marker: the attacker's kind (:data:`KIND_MARKERS`), its area the repeat count
    k (:data:`REPEAT_SIZES`); filled markers at the smallest sigma, hollow ones at the others. A line joins, for
    each n and sigma, the plain attack and its repeats at k times the budget (the cost multiplier). An infinite
    median (at least half of the images without a confirmed point) is not drawn.
    """
    fresh = summary[(summary.noise == "input") & (summary.seeding == "fresh")]
    attacks = list(dict.fromkeys(fresh.attack))
    ns, sigmas = sorted(fresh.n.unique()), sorted(fresh.sigma.unique())
    colour = {n: PALETTE[k % len(PALETTE)] for k, n in enumerate(ns)}
    fig, axes = plt.subplots(2, len(attacks), figsize=(3.9 * len(attacks), 6.6), squeeze=False, sharex="row",
                             sharey=True)
    for column, attack in enumerate(attacks):
        part = fresh[(fresh.attack == attack) & np.isfinite(fresh.median_verified_l2)]
        for row, x in enumerate(("queries", "forward_passes")):
            ax = axes[row][column]
            for (n, sigma), series in part.groupby(["n", "sigma"]):
                line = series[series.kind.isin(["plain", "scaled"])].sort_values("budget_factor")
                ax.plot(line[x], line.median_verified_l2, color=colour[n], alpha=0.5, linewidth=0.8)
                filled = sigma == sigmas[0]
                for r in series.itertuples():
                    ax.scatter(getattr(r, x), r.median_verified_l2, marker=KIND_MARKERS.get(r.kind, "o"),
                               s=REPEAT_SIZES.get(r.repeats, 60), linewidths=1.0, edgecolors=colour[n],
                               facecolors=colour[n] if filled else "none")
            ax.set(xscale="log", xlabel="queries per image" if row == 0 else "forward passes per image",
                   ylabel="median confirmed $\\ell_2$", title=attack)
    grey = {"color": "0.4", "linestyle": ""}
    handles = [plt.Line2D([], [], color=colour[n], marker="o", linestyle="", label=f"$n$ = {n}") for n in ns]
    handles += [plt.Line2D([], [], marker=m, label={"plain": "as it is", "repeat": "×k, same budget",
                                                    "scaled": "×k, k× budget"}[kind], **grey)
                for kind, m in KIND_MARKERS.items() if kind in set(fresh.kind)]
    handles += [plt.Line2D([], [], marker="o", markersize=REPEAT_SIZES[k] ** 0.5, label=f"k = {k}", **grey)
                for k in sorted(set(fresh.repeats)) if k in REPEAT_SIZES]
    handles += [plt.Line2D([], [], marker="o", markerfacecolor="0.4" if j == 0 else "none", markeredgecolor="0.4",
                           linestyle="", label=f"$\\sigma$ = {sigma:g}") for j, sigma in enumerate(sigmas)]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize="small")
    fig.tight_layout()
    return fig


def plot_defences(summary: pd.DataFrame, attacks: Sequence[str]) -> plt.Figure:
    """The defence variants side by side: median confirmed distortion against n, one panel per attack of
    ``attacks``, one line per defence family (input noise, input-hash seeding, each hidden law) and sigma (the
    larger sigma lighter) for the plain attack; against input-hash seeding, the jittered repeats at the largest
    k (and k times the budget) are dashed."""
    fig, axes = plt.subplots(1, len(attacks), figsize=(4.6 * len(attacks), 3.8), squeeze=False, sharey=True)
    families = list(dict.fromkeys(zip(summary.noise, summary.seeding, strict=True)))
    jittered = summary[summary.kind == "jittered scaled"]
    for ax, attack in zip(axes[0], attacks):
        part = summary[summary.attack == attack]
        for k, (noise, seeding) in enumerate(families):
            name = noise if seeding == "fresh" else f"{noise}, {seeding}"
            for j, sigma in enumerate(sorted(part.sigma.unique())):
                same = (part.noise == noise) & (part.seeding == seeding) & (part.sigma == sigma)
                lines = [("-", part[same & (part.kind == "plain")], f"{name} (σ={sigma:g})")]
                if len(jittered):
                    top = jittered.repeats.max()
                    lines.append(("--", part[same & (part.kind == "jittered scaled") & (part.repeats == top)],
                                  f"{name} (σ={sigma:g}), ×{top} jittered"))
                for style, series, label in lines:
                    if len(series):
                        series = series.sort_values("n")
                        ax.plot(series.n, series.median_verified_l2, style, marker="o",
                                color=PALETTE[k % len(PALETTE)], alpha=1.0 - 0.4 * j, label=label)
        ax.set(xscale="log", xlabel="$n$", ylabel="median confirmed $\\ell_2$", title=attack)
    labelled = {label: handle for ax in axes[0] for handle, label in zip(*ax.get_legend_handles_labels(), strict=True)}
    fig.legend(labelled.values(), labelled.keys(), fontsize="x-small", loc="center left", bbox_to_anchor=(1.0, 0.5),
               frameon=False)
    fig.tight_layout()
    return fig


def matched_gap(accuracy: pd.DataFrame, calibration: pd.DataFrame) -> str:
    """How far the hidden-noise defences' clean accuracy on the whole pool (``accuracy``, one vote per image,
    fresh draws) lands from that of their input-noise twin (same sigma and n), as a sentence: the largest gap in
    both directions and where it is (``calibration``: the calibration rows, for the twins' labels)."""
    if not len(calibration):
        return "No hidden noise was measured."
    by_label = accuracy.set_index("defence").accuracy
    gaps = []
    for row in calibration.itertuples():
        hidden = Defence(float(row.sigma), int(row.n), f"hidden-{row.law}", scale=float(row.scale))
        gaps.append((float(by_label[hidden.label] - by_label[Defence(float(row.sigma), int(row.n)).label]),
                     hidden.label))
    gap, where = max(gaps, key=lambda g: abs(g[0]))
    return (f"On the whole pool (one vote per image, fresh noise) the hidden-noise accuracies land within "
            f"{abs(gap):.3f} of their input twins' (largest gap {gap:+.3f}, {where})")


def _trend(summary: pd.DataFrame, ns: Sequence[int], **fields: object) -> str:
    """Per attack among the rows of ``summary`` matching ``fields`` (input noise, fresh), the median verified
    distortion at each n (the median over sigma of each configuration's median), e.g. "HSJA: 1.2 → 0.9"; "not
    run" when no row matches."""
    part = summary[(summary.noise == "input") & (summary.seeding == "fresh")]
    for name, value in fields.items():
        part = part[part[name] == value]
    texts = []
    for attack, rows in part.groupby("attack", sort=False):
        by_n = rows.groupby("n").median_verified_l2.median()
        texts.append(f"{attack}: " + " → ".join(f"{by_n[n]:.2f}" for n in sorted(ns) if n in by_n))
    return "; ".join(texts) or "not run in this profile"


def _answer(judgement: Any) -> str:
    """A claim's judgement as a sentence for the page: its verdict, then what it measured."""
    return f"{judgement.verdict[0].upper()}{judgement.verdict[1:]} ({judgement.measured})."


def page(res: Results, values: Mapping[str, Any], record: AdaptiveGrid) -> dict[str, Any]:
    """The numbers and phrases the chapter's prose reads, by glue name; the answers are the verdicts of the
    claims beyond the paper (:data:`rs_repro.experiments.claims.BEYOND`) on this run's ``record``."""
    judged = {claim.number: claim.judge(record) for claim in BEYOND}
    ns, summary = values["ns"], res.summary
    k_top = max(values["repeats"], default=1)
    return {
        "level": float(values["level"]), "confidence": 1 - float(values["alpha"]), "ns_text": ", ".join(map(str, sorted(ns))), "k_top": k_top,
        "calibration_used": int(res.calibration.images.max()) if len(res.calibration) else 0,
        "calibration_draws": int(values["calibration_draws"]),
        "matched_gap": matched_gap(res.accuracy, res.calibration),
        "trend_plain": _trend(summary, ns, kind="plain"),
        "trend_scaled": _trend(summary, ns, kind="scaled", repeats=k_top),
        "trend_repeat": _trend(summary, ns, kind="repeat", repeats=k_top),
        "trend_psj": _trend(summary, ns, kind="plain", attack="PopSkipJump"),
        "answer_survives": _answer(judged[12]), "answer_multiplier": _answer(judged[13]),
        "answer_equal": _answer(judged[14]), "answer_psj": _answer(judged[15]), "answer_hash": _answer(judged[16]),
        "answer_hidden": _answer(judged[17]),
    }
