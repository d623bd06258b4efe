"""The compute half of the ``adaptive_attacks`` chapter: beyond the paper, attackers that know the defence is
random, and noise inside the network.

The paper's attackers (HSJA, SurFree, RayS) treat g_{sigma,n} as a deterministic classifier, and its practical
advice, "a few samples n defend better" (Maho, Furon and Le Merrer, ICASSP 2022, section 4), is measured against
them. This chapter asks whether the advice survives attackers that adapt to the randomness:

* repeat-and-vote: every query asked k times and answered by the majority (:class:`rs_repro.attacks.oracle.Oracle`
  with ``repeats``), at the same total budget (k times fewer distinct queries) and at k times the budget;
* PopSkipJump (Simon-Gabriel, Sheikh and Krause, ICML 2021), HSJA adapted to probabilistic classifiers;
* against a defence that seeds its noise from a hash of the input (the same query always gets the same answer,
  so plain repeats buy nothing), the counter: repeats at slightly jittered points;

and compares input noise with noise injected after the first layer (Gaussian and Laplace, Pinot et al.,
NeurIPS 2019; :class:`rs_repro.hidden_noise.HiddenNoise`) at the same clean accuracy. Every adversarial example
is confirmed (eq. 4 at the chapter's level, inside the pixel box, from the attack's best query or last iterate:
:func:`rs_repro.attacks.verification.confirm_attack`), an image without one being a failure, and every query is
counted: a repeated query is k queries and the forward passes of its k votes (at most k n; a vote stops
drawing once its answer is settled).

The chapter's shape: :func:`check_parameters` (run before anything) and :func:`plan`, four steps of units of
:mod:`rs_repro.pipeline.engine`: the standard model (:func:`rs_repro.chapters.common.model_units`); the
attacked images, chosen with it (:func:`rs_repro.chapters.common.images_unit`); the hidden-noise levels, one per law, sigma and
n (:func:`calibration_units`); then, from those levels and images (:func:`units`), the clean accuracy of every
defence and one unit per defence, attacker and chunk of images. The page half
(``rs_repro.chapters.adaptive_attacks.page``) summarises the tables, records them for the claims beyond the
paper and draws the figures.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from rs_repro import data, seeds
from rs_repro.attacks.oracle import smoothed_oracle
from rs_repro.attacks.verification import confirm_attack, verify
from rs_repro.chapters import common
from rs_repro.checks import rule_checker
from rs_repro.hidden_noise import LAWS, HiddenNoise, match_accuracy
from rs_repro.models import load_model
from rs_repro.pipeline.engine import Stage, Unit, fixed
from rs_repro.smoothing import Smooth

#: Where a defence adds its noise, at the input (randomized smoothing) or after the first layer.
NOISES = ("input", *(f"hidden-{law}" for law in LAWS))
_MODULE = __name__
#: The prefix of the ids of the calibration units (:func:`calibration_units`).
CALIBRATION = "calibration-"


def check_parameters(values: Mapping[str, Any]) -> None:
    """The chapter's rules on its parameters (ValueError naming the first one broken), run before anything."""
    need = rule_checker(values)
    size = common.data_and_models(values, device=True)
    pool = common.pool_rule(values, "pool", size)
    for name in ("num_images", "calibration_images"):
        fits, accepted = common.count_rule(values[name], pool, "test images in the pool")
        need(fits, name, accepted)
    for name in ("max_queries", "chunk", "verify_repeats", "votes", "confirm_votes", "calibration_draws",
                 "batch_size"):
        need(values[name] >= 1, name, "at least 1")
    need(0 < values["alpha"] < 1, "alpha", "a level in (0, 1)")
    need(bool(values["sigmas"]) and all(s > 0 for s in values["sigmas"]), "sigmas", "noise levels > 0")
    need(bool(values["ns"]) and all(n >= 1 for n in values["ns"]), "ns", "sample counts >= 1")
    need(0 < values["level"] < 1, "level", "a level P_a in (0, 1) (a level of 1 cannot be confirmed by votes)")
    need(bool(values["attacks"]) and set(values["attacks"]) <= set(common.ATTACKS), "attacks",
         f"a non-empty list of {sorted(common.ATTACKS)}")
    for name in ("repeat_attacks", "scaled_attacks", "hash_attacks", "hidden_attacks"):
        need(set(values[name]) <= set(common.ATTACKS), name, f"a list of {sorted(common.ATTACKS)}")
    need(all(k >= 2 for k in values["repeats"]), "repeats", "repeat counts >= 2")
    need(bool(values["repeats"]) or not (values["repeat_attacks"] or values["scaled_attacks"]), "repeats",
         "at least one repeat count when repeat_attacks or scaled_attacks are given")
    need(set(values["repeat_ns"]) <= set(values["ns"]), "repeat_ns",
         f"a list of the ns {values['ns']} ([] for the smallest)")
    need(all(k >= 2 for k in values["hash_repeats"]), "hash_repeats", "repeat counts >= 2")
    need(values["jitter"] > 0, "jitter", "an l2 norm > 0")
    need(set(values["hidden_laws"]) <= set(LAWS), "hidden_laws", f"a list of {list(LAWS)}")
    need(not values["hidden_laws"] or bool(values["hidden_attacks"]), "hidden_attacks",
         "at least one attack when hidden_laws are given")


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

    @property
    def fresh(self) -> Defence:
        """The defence with fresh noise (whose accuracy an input-hash defence shares)."""
        return dataclasses.replace(self, seeding="fresh")


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


def repeat_ns(values: Mapping[str, Any]) -> list[int]:
    """The n at which the repeat attacks run at the same budget: ``repeat_ns``, or when it is empty the
    smallest of ``ns`` (claim 14 compares them with the attacks as they are there)."""
    return sorted(values["repeat_ns"]) or [min(values["ns"])]


def grid(values: Mapping[str, Any],
         scales: Mapping[tuple[str, float, int], float]) -> list[tuple[Defence, Attacker]]:
    """Every (defence, attacker) pair of the chapter's parameters; ``scales`` maps (law, sigma, n) to the
    hidden noise level of :func:`hidden_scales`."""
    pairs, repeated_at = [], repeat_ns(values)
    for sigma in values["sigmas"]:
        for n in values["ns"]:
            plain = Defence(sigma, n)
            pairs += [(plain, Attacker(a)) for a in values["attacks"]]
            for k in values["repeats"]:
                if n in repeated_at:
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
    max_queries`` queries per image. The defender's secret of input-hash seeding is seeded by the seed and the
    defence; the attack's draws for an image and the oracle's noise at it by the seed, the defence, the
    attacker and the image's test-split index (so an image's run does not depend on its batch); the jitter's
    and the verification's by the seed, the defence, the attacker and the first position, so a resumed run
    recomputes a batch exactly. Each image's best accepted query is re-checked with
    ``verify_repeats`` fresh votes (``level_at_reported``), and the attack's candidates (best accepted query,
    last iterate) give a confirmed adversarial example at ``level`` inside the pixel box, at confidence
    1 - ``alpha`` (:func:`rs_repro.attacks.verification.confirm_attack`; ``verified_l2`` inf on a failure).
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
                             batch_size=batch_size, seed=seeds.derive_seed(seed, "oracle", *key[:2]),
                             noise=defence.seeding, noise_key=seeds.derive_seed(seed, "noise-key", defence.label),
                             repeats=attacker.repeats, jitter=attacker.jitter,
                             jitter_seed=seeds.derive_seed(seed, "jitter", *key))
    result = common.attack_function(attacker.attack)(oracle, x_o, labels, seed=seeds.derive_seed(seed, *key[:2]),
                                                     keys=index[block].tolist())
    reported = verify(smooth, result.x_adv.to(device), labels, defence.n, verify_repeats, batch_size=batch_size,
                      generator=seeds.generator(seed, "verify", *key, device=device))[0]
    confirmed = confirm_attack(smooth, x_o, labels, result, n=defence.n, level=level, votes=votes,
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
    x, y = common.images_at(dataset, data_dir, pool, seed, index)
    return attack_rows(Defence(**defence), Attacker(**attacker), base, data.num_classes(dataset), x, y,
                       torch.as_tensor(index), positions, max_queries=max_queries, level=level,
                       verify_repeats=verify_repeats, votes=votes, confirm_votes=confirm_votes, alpha=alpha, seed=seed,
                       batch_size=batch_size)


def calibration_unit(*, dataset: str, data_dir: str | None, pool: int, images: int, draws: int,
                     model: Mapping[str, Any], law: str, sigma: float, n: int, batch_size: int, device: str,
                     seed: int) -> pd.DataFrame:
    """The hidden-noise level of ``law`` at the clean accuracy of the input-noise vote g_{sigma,n}.

    On the first ``images`` of the chapter's pool (:func:`rs_repro.chapters.common.test_pool`), the
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
    drawn = common.test_pool(dataset, data_dir, pool, seed)
    x, y = drawn.x[:images].to(device), drawn.y[:images].to(device)
    right = Smooth(base, data.num_classes(dataset), sigma).vote_matches(
        x.repeat(draws, 1, 1, 1), y.repeat(draws), n, batch_size,
        generator=seeds.generator(seed, "calibration", sigma, n, device=device)).numpy()
    scale, achieved = match_accuracy(base, data.num_classes(dataset), x, y, float(right.mean()), law=law, n=n,
                                     seed=seeds.derive_seed(seed, "calibration", law, sigma, n), draws=draws,
                                     batch_size=batch_size)
    return pd.DataFrame([{"law": law, "sigma": sigma, "n": n, "images": len(y), "draws": draws,
                          "input_accuracy": float(right.mean()), "scale": scale, "hidden_accuracy": achieved}])



def _where(values: Mapping[str, Any]) -> dict[str, Any]:
    return {"dataset": values["dataset"], "data_dir": values["data_dir"] or None, "pool": values["pool"]}


def calibration_units(values: Mapping[str, Any]) -> list[Unit]:
    """One :func:`calibration_unit` per hidden law, sigma and n (ids ``calibration-<law>-sigma<sigma>-n<n>``)."""
    run = {"batch_size": values["batch_size"], "device": values["device"]}
    spec = common.model_specs(values, ("standard",))["standard"]
    return [Unit(f"{CALIBRATION}{law}-sigma{sigma:g}-n{n}", f"{_MODULE}:calibration_unit",
                 {**_where(values), **run, "images": values["calibration_images"],
                  "draws": values["calibration_draws"], "model": spec, "law": law,
                  "sigma": sigma, "n": n, "seed": values["seed"]})
            for law in values["hidden_laws"] for sigma in values["sigmas"] for n in values["ns"]]


def calibration_tables(tables: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The tables of the :func:`calibration_units` among ``tables`` (unit id to table), by id."""
    return {uid: table for uid, table in tables.items() if uid.startswith(CALIBRATION)}


def hidden_scales(tables: Mapping[str, pd.DataFrame]) -> dict[tuple[str, float, int], float]:
    """(law, sigma, n) to the hidden-noise scale, from the tables of the :func:`calibration_units` among
    ``tables`` (unit id to table)."""
    return {(row.law, float(row.sigma), int(row.n)): float(row.scale)
            for t in calibration_tables(tables).values() for row in t.itertuples()}


def accuracy_unit(*, dataset: str, data_dir: str | None, pool: int, model: Mapping[str, Any],
                  defence: Mapping[str, Any], batch_size: int, device: str, seed: int) -> pd.DataFrame:
    """One row per test image of the chapter (:func:`rs_repro.chapters.common.test_pool`), ``defence, idx,
    correct``: whether the majority vote of one defence labels it right, from fresh noise (input-hash seeding
    has the same law over the unknown key)."""
    base, _ = load_model(dataset, model, data_dir=data_dir, device=device)
    full = common.test_pool(dataset, data_dir, pool, seed)
    defence = Defence(**defence)
    right = smooth_for(defence, base, data.num_classes(dataset)).vote_matches(
        full.x.to(device), full.y, defence.n, batch_size,
        generator=seeds.generator(seed, "accuracy", defence.label, device=device)).numpy()
    return pd.DataFrame({"defence": defence.label, "idx": np.asarray(full.index), "correct": right})


def plan(values: Mapping[str, Any]) -> list[Stage]:
    """The chapter's work, in four steps: the standard model (``model-standard``), the attacked images
    (:func:`rs_repro.chapters.common.images_unit`, id ``images``), the hidden-noise levels (:func:`calibration_units`), then
    the units of :func:`units` on those images at those levels.

    ``values`` are the notebook's parameters (:func:`rs_repro.pipeline.parameters.chapter_values`). Pure:
    nothing is read, trained or drawn here.
    """
    specs = common.model_specs(values, ("standard",))
    return [Stage("models", fixed(common.model_units(values["dataset"], values["data_dir"], specs))),
            Stage("attacked images", fixed(common.images_units(values))),
            Stage("calibration", fixed(calibration_units(values))),
            Stage("attacks", lambda done: units(values, done[common.IMAGES], hidden_scales(done)))]


def units(values: Mapping[str, Any], images: pd.DataFrame,
          scales: Mapping[tuple[str, float, int], float]) -> list[Unit]:
    """The chapter's work after the calibration: the clean accuracy of every defence and every (defence,
    attacker, chunk of ``chunk`` images) of :func:`grid`, on the attacked images ``images`` (the table of
    :func:`rs_repro.chapters.common.images_unit`) with the hidden-noise levels ``scales`` (:func:`hidden_scales`). An attack
    unit's code is this module and its attack's module (:func:`rs_repro.chapters.common.attack_module`). Pure,
    as :func:`plan`."""
    run = {"batch_size": values["batch_size"], "device": values["device"], "seed": values["seed"]}
    spec = common.model_specs(values, ("standard",))["standard"]
    index = [int(i) for i in images.idx]
    pairs = grid(values, scales)
    work = [Unit(f"accuracy-{d.slug}", f"{_MODULE}:accuracy_unit",
                 {**_where(values), **run, "model": spec, "defence": dataclasses.asdict(d)})
            for d in dict.fromkeys(d.fresh for d, _ in pairs)]
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
                (_MODULE, common.attack_module(attacker.attack))))
    return work
