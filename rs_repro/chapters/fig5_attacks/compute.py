"""The compute half of the ``fig5_attacks`` chapter: Fig. 5 of the paper, decision-based attacks against
smoothed classifiers.

Three decision-based attacks (HSJA, SurFree, RayS) against the undefended model, the standard model under
smoothing at two noise levels with n in {10, 50, 100} micro-decisions and the acceptance levels
P_a in {0.5, 0.8} (the paper's ceil(n P_a) rule), RandTrain under smoothing, and AdvTrain, all with the
same per-image query budget (2,000 in the paper; Maho, Furon and Le Merrer, ICASSP 2022, section 4). One row
per attacked image records its distortions, its queries and forward passes, and its best distortion at several
budgets (from the oracle's history).

Two protocols on the same images. The paper's: a query is adversarial when ceil(n P_a) of its n
micro-decisions are wrong, and the distortion is the best accepted query's. Under smoothing that point may be
a lucky vote, so the attack's points (its best accepted query, its own last iterate) are pushed along their
box-projected paths until eq. (4) is confirmed by a one-sided test with fresh votes
(:func:`rs_repro.attacks.verification.confirm_attack`): the confirmed distortion, of an image inside [0, 1]^d.
No image is left out of either; an attack that found no confirmed adversarial example on an image failed there
(distortion ``inf``, in every statistic). The wrong-vote rate at each clean image x_o tells how often x_o
itself would be accepted.

The chapter's shape: :func:`check_parameters` (run before anything) and :func:`plan`, three steps of units of
:mod:`rs_repro.pipeline.engine`: the base models (:func:`rs_repro.chapters.common.model_units`); the attacked
images, chosen with the standard model (:func:`rs_repro.chapters.common.images_unit`); then, from those images
(:func:`units`), every classifier's clean accuracy (:func:`accuracy_unit`), the attack grid, one unit per
classifier, attack and chunk of images (:func:`attack_unit`), CERTIFY of the attacked images under each
smoothed base model (:func:`rs_repro.chapters.common.certify_units`), the votes at the clean images
(:func:`clean_votes_unit`) and the white-box minimal distortions (``minimal_unit`` of
``rs_repro.chapters.fig5_attacks.whitebox``). A unit reads only the code of its own attack, so an edit of one
attack recomputes that attack's units and no other. The page half (``rs_repro.chapters.fig5_attacks.page``)
summarises the tables, records them for the claims and draws the figures.
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
from rs_repro.attacks.oracle import Oracle, smoothed_oracle
from rs_repro.attacks.verification import CANDIDATES, confirm_attack, verify
from rs_repro.chapters import common
from rs_repro.checks import rule_checker
from rs_repro.models import load_model
from rs_repro.pipeline.engine import Stage, Unit, fixed
from rs_repro.smoothing import Smooth

_MODULE = __name__
#: The unit function of the white-box minimal distortions, in a module of its own; the white-box attack's code
#: (:mod:`rs_repro.attacks.minimal`) enters that unit's key only, not the keys of the attack grid.
MINIMAL_UNIT = "rs_repro.chapters.fig5_attacks.whitebox:minimal_unit"

def check_parameters(values: Mapping[str, Any]) -> None:
    """The chapter's rules on its parameters (ValueError naming the first one broken), run before anything."""
    need = rule_checker(values)
    size = common.data_and_models(values, common.BASE_MODELS, device=True)
    pool = common.pool_rule(values, "pool", size)
    fits, accepted = common.count_rule(values["num_images"], pool, "test images in the pool")
    need(fits, "num_images", accepted)
    need(values["max_queries"] >= 1, "max_queries", "at least 1")
    budgets = values["budgets"]
    need(bool(budgets) and budgets == sorted(set(budgets)) and budgets[0] >= 1 and budgets[-1] == values["max_queries"],
         "budgets", f"increasing positive budgets ending at max_queries={values['max_queries']}")
    need(bool(values["attacks"]) and set(values["attacks"]) <= set(common.PAPER_ATTACKS), "attacks",
         f"a non-empty list of {sorted(common.PAPER_ATTACKS)}")
    need(bool(values["sigmas"]) and all(s > 0 for s in values["sigmas"]), "sigmas",
         "a non-empty list of noise levels > 0")
    need(bool(values["ns"]) and all(n >= 1 for n in values["ns"]), "ns", "a non-empty list of sample counts >= 1")
    need(bool(values["randtrain_ns"]) and all(n >= 1 for n in values["randtrain_ns"]), "randtrain_ns",
         "a non-empty list of sample counts >= 1")
    need(bool(values["pas"]) and all(0 < p <= 1 for p in values["pas"]), "pas", "levels in (0, 1]")
    need(values["randtrain_sigma"] > 0, "randtrain_sigma", "a noise level > 0")
    need(values["advtrain_epsilon"] > 0, "advtrain_epsilon", "a radius > 0")
    for name in ("chunk", "verify_repeats", "votes", "confirm_votes", "certify_n", "minimal_steps", "batch_size"):
        need(values[name] >= 1, name, "at least 1")
    need(0 < values["alpha"] < 1, "alpha", "a level in (0, 1)")
    need(all(p < 1 for p in values["pas"]), "pas", "levels below 1 (a level of 1 cannot be confirmed by votes)")


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
    def level(self) -> float | None:
        """The level P_a of eq. (4) at which its adversarial examples are verified.

        ``pa``, or 0.5 for the plain majority vote (the vote is wrong at least half the time); ``None`` without
        smoothing.
        """
        if self.sigma is None:
            return None
        return 0.5 if self.pa is None else self.pa

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


def make_oracle(target: Target, model: nn.Module, num_classes: int, max_queries: int, seed: int,
                batch_size: int = 10_000) -> Oracle:
    """The oracle an attack queries for ``target``: the base model, or g_{sigma,n} with the P_a rule
    (``batch_size`` noisy inputs per forward pass at most; each image's noise streams seeded by ``seed`` and
    the image's key)."""
    if target.sigma is None:
        return Oracle(model, max_queries)
    return smoothed_oracle(Smooth(model, num_classes, target.sigma), target.n, target.pa, max_queries=max_queries,
                           batch_size=batch_size, seed=seed)


def vote_correct(target: Target, model: nn.Module, num_classes: int, x: torch.Tensor, y: torch.Tensor,
                 seed: int, batch_size: int = 10_000) -> np.ndarray:
    """Which of the images ``x`` [N, C, H, W] the attacked classifier labels ``y`` [N] (bool [N]): the base
    model's argmax, or one majority vote g_{sigma,n} per image (ties broken at random; each vote drawn only
    as far as it decides, :meth:`rs_repro.smoothing.Smooth.vote_matches`). The votes are drawn
    from a generator seeded by the base model, sigma and n, not P_a: the classifier is the same at every
    P_a, and so are its answers."""
    device = next(model.parameters()).device
    if target.sigma is None:
        with torch.inference_mode():
            labels = torch.cat([model(part.to(device)).argmax(1).cpu() for part in x.split(batch_size)])
        return (labels == y).numpy()
    votes = seeds.generator(seed, "accuracy", target.model, target.sigma, target.n, device=device)
    return Smooth(model, num_classes, target.sigma).vote_matches(x.to(device), y, target.n, batch_size,
                                                                 generator=votes).numpy()


def attack_rows(target: Target, attack: str, model: nn.Module, num_classes: int, x: torch.Tensor,
                y: torch.Tensor, index: torch.Tensor, units: Sequence[int], *, max_queries: int,
                budgets: Sequence[int], verify_repeats: int, votes: int, confirm_votes: int, alpha: float,
                seed: int, batch_size: int = 10_000) -> pd.DataFrame:
    """Run ``attack`` on the images at positions ``units`` (one batch) against ``target``; confirm its points.

    The attack's draws for an image and the oracle's noise at it come from generators seeded by the seed, the
    target, the attack and the image's test-split index (``keys`` of the attack), so an image's run does not
    depend on its batch; the verification's votes from generators seeded by the first unit of the batch, so a
    resumed run recomputes a batch exactly. Under smoothing an answer
    "adversarial" may be luck, so afterwards ``level`` estimates P[g_{sigma,n}(x_adv) != y], the level of
    eq. (4) at the best accepted query x_adv, from ``verify_repeats`` fresh votes, and
    :func:`rs_repro.attacks.verification.confirm_attack` turns the attack's candidates (its best accepted query
    and its own last iterate) into a confirmed adversarial example at the target's level
    (:attr:`Target.level`): an image of [0, 1]^d whose one-sided (1 - ``alpha``) lower bound of eq. (4)'s
    probability is at least the level (``verified_l2``, inf on a failure). Without smoothing the reported point
    is exact, and confirmed as it is. Every forward pass of the smoothed classifier takes ``batch_size`` noisy
    inputs at most; the attack runs on the device of ``model``.

    Parameters
    ----------
    x : torch.Tensor, shape [N, C, H, W]
        Every attacked image of the chapter; ``y`` [N] their labels, ``index`` [N] their test-split positions.
    units : sequence of int
        The positions in ``x`` of this batch.

    Returns
    -------
    pandas.DataFrame
        One row per image: ``unit, idx, label, attack, target, success, l2, linf, best_linf, queries,
        forward_passes, level``, the columns of :func:`rs_repro.attacks.verification.confirm_attack`,
        ``final_l2, final_level``, the attack's diagnostics (e.g. HSJA's ``gradient_steps, one_label_steps``)
        and ``l2_at_<q>`` for each budget q (inf where not yet adversarial). ``l2`` is inf where no query was
        accepted, 0 where the clean image was; ``final_*`` (the attack's own last iterate: distortion, and its
        level from fresh votes) are NaN for an attack without one.
    """
    device = next(model.parameters()).device
    block = torch.as_tensor(list(units))
    key = (target.label, attack, int(block[0]))
    x_o, labels = x[block].to(device), y[block].to(device)
    oracle = make_oracle(target, model, num_classes, max_queries, seeds.derive_seed(seed, "oracle", *key[:2]),
                         batch_size)
    result = common.attack_function(attack)(oracle, x_o, labels, seed=seeds.derive_seed(seed, *key[:2]),
                                            keys=index[block].tolist())
    curves = oracle.best_at(budgets)
    success = result.success.numpy()
    if target.sigma is None:
        level = success.astype(np.float64)
        l2 = result.l2.numpy()
        verified = {"verified_l2": l2, "verified_linf": result.linf.numpy(), "t": np.where(success, 1.0, np.inf),
                    "source": np.where(success, CANDIDATES[0], ""), "at_level": success, "verified_level": level,
                    "confirm_lower": level, "confirm_attempts": success.astype(np.int64),
                    "confirm_forward_passes": np.zeros(len(block), dtype=np.int64), "query_confirmed_l2": l2,
                    "final_confirmed_l2": np.full(len(block), np.inf)}
    else:
        smooth = Smooth(model, num_classes, target.sigma)
        level = verify(smooth, result.x_adv.to(device), labels, target.n, verify_repeats, batch_size=batch_size,
                       generator=seeds.generator(seed, "verify", *key, device=device))[0]
        verified = confirm_attack(smooth, x_o, labels, result, n=target.n, level=target.level, votes=votes,
                                  confirm_votes=confirm_votes, alpha=alpha, seed=seeds.derive_seed(seed, "push", *key),
                                  batch_size=batch_size)
    final_l2 = final_level = np.full(len(block), np.nan)
    if result.x_final is not None:
        x_final = result.x_final.to(device)
        final_l2 = (x_final - x_o).flatten(1).double().norm(dim=1).cpu().numpy()
        if target.sigma is None:
            with torch.inference_mode():
                final_level = (model(x_final).argmax(1) != labels).double().cpu().numpy()
        else:
            final_level = verify(smooth, x_final, labels, target.n, verify_repeats, batch_size=batch_size,
                                 generator=seeds.generator(seed, "verify-final", *key, device=device))[0]
    rows = pd.DataFrame({"unit": block.numpy(), "idx": index[block].numpy(), "label": y[block].numpy(),
                         "attack": attack, "target": target.label, "success": success,
                         "l2": result.l2.numpy(), "linf": result.linf.numpy(),
                         "best_linf": result.best_linf.numpy(), "queries": result.queries.numpy(),
                         "forward_passes": result.forward_passes.numpy(), "level": level, **verified,
                         "final_l2": final_l2, "final_level": final_level})
    for name, counts in result.diagnostics.items():
        rows[name] = counts.numpy()
    for j, q in enumerate(budgets):
        rows[f"l2_at_{q}"] = curves[:, j]
    return rows


def attack_unit(*, dataset: str, data_dir: str | None, pool: int, index: list[int], positions: list[int],
                model: Mapping[str, Any], target: Mapping[str, Any], attack: str, max_queries: int,
                budgets: list[int], verify_repeats: int, votes: int, confirm_votes: int, alpha: float,
                batch_size: int, device: str, seed: int) -> pd.DataFrame:
    """One unit of the attack grid: :func:`attack_rows` on the attacked images at ``positions``, on ``device``.

    ``index`` are the dataset positions of all the attacked images (test split, all in the
    :func:`rs_repro.chapters.common.test_pool` of ``pool`` images), ``model`` the
    :func:`rs_repro.models.model_spec` of the base model, ``target`` the fields of a :class:`Target`.
    """
    base, _ = load_model(dataset, model, data_dir=data_dir, device=device)
    x, y = common.images_at(dataset, data_dir, pool, seed, index)
    return attack_rows(Target(**target), attack, base, data.num_classes(dataset), x, y, torch.as_tensor(index),
                       positions, max_queries=max_queries, budgets=budgets, verify_repeats=verify_repeats,
                       votes=votes, confirm_votes=confirm_votes, alpha=alpha, seed=seed, batch_size=batch_size)


def attack_units(*, dataset: str, data_dir: str | None, pool: int = 0, index: Sequence[int],
                 targets: Sequence[Target], attacks: Sequence[str], models: Mapping[str, Mapping[str, Any]],
                 max_queries: int, budgets: Sequence[int], chunk: int, verify_repeats: int, votes: int,
                 confirm_votes: int, alpha: float, batch_size: int = 10_000, device: str = "cpu",
                 seed: int) -> list[Unit]:
    """The attack grid as units: every target x attack x chunk of ``chunk`` attacked images.

    ``models`` maps a target's ``model`` name to its :func:`rs_repro.models.model_spec`. A unit's
    code is this module and its attack's module (:func:`rs_repro.chapters.common.attack_module`).
    """
    code = {attack: common.attack_module(attack) for attack in attacks}
    units = []
    for target in targets:
        for attack in attacks:
            for start in range(0, len(index), chunk):
                positions = list(range(start, min(start + chunk, len(index))))
                units.append(Unit(
                    f"attack-{attack}-{target.slug}-images{start}", f"{_MODULE}:attack_unit",
                    {"dataset": dataset, "data_dir": data_dir, "pool": pool, "index": [int(i) for i in index],
                     "positions": positions, "model": dict(models[target.model]), "target": dataclasses.asdict(target),
                     "attack": attack, "max_queries": max_queries, "budgets": list(budgets),
                     "verify_repeats": verify_repeats, "votes": votes, "confirm_votes": confirm_votes,
                     "alpha": alpha, "batch_size": batch_size, "device": device, "seed": seed},
                    (_MODULE, code[attack])))
    return units


def accuracy_unit(*, dataset: str, data_dir: str | None, pool: int, model: Mapping[str, Any],
                  target: Mapping[str, Any], batch_size: int, device: str, seed: int) -> pd.DataFrame:
    """One row per test image of the chapter (:func:`rs_repro.chapters.common.test_pool`: the whole test split
    for ``pool`` 0), ``target, idx, correct``: whether one classifier labels it right (:func:`vote_correct`)."""
    base, _ = load_model(dataset, model, data_dir=data_dir, device=device)
    full = common.test_pool(dataset, data_dir, pool, seed)
    target = Target(**target)
    right = vote_correct(target, base, data.num_classes(dataset), full.x, full.y, seed, batch_size)
    return pd.DataFrame({"target": target.label, "idx": np.asarray(full.index), "correct": right})


def accuracy_units(*, dataset: str, data_dir: str | None, pool: int = 0, targets: Sequence[Target],
                   models: Mapping[str, Mapping[str, Any]], batch_size: int = 10_000, device: str = "cpu",
                   seed: int) -> list[Unit]:
    """The clean accuracy of every classifier, one unit each."""
    return [Unit(f"accuracy-{t.slug}", f"{_MODULE}:accuracy_unit",
                 {"dataset": dataset, "data_dir": data_dir, "pool": pool, "model": dict(models[t.model]),
                  "target": dataclasses.asdict(t), "batch_size": batch_size, "device": device, "seed": seed})
            for t in targets]


def clean_votes_unit(*, dataset: str, data_dir: str | None, pool: int, index: list[int], model: Mapping[str, Any],
                     name: str, sigma: float, samples: int, batch_size: int, device: str, seed: int) -> pd.DataFrame:
    """Micro-decisions at the clean attacked images under one smoothed base model: ``samples`` noisy copies of
    each image x_o, and how many are not its label.

    Returns
    -------
    pandas.DataFrame
        One row per image: ``model, sigma, idx, label, wrong, samples``; ``wrong / samples`` estimates
        pi_1(x_o), the probability that one micro-decision at x_o is wrong.
    """
    base, _ = load_model(dataset, model, data_dir=data_dir, device=device)
    x, y = common.images_at(dataset, data_dir, pool, seed, index)
    counts = Smooth(base, data.num_classes(dataset), sigma).counts(
        x.to(device), samples, batch_size, generator=seeds.generator(seed, "clean-votes", name, sigma, device=device))
    right = counts.cpu().gather(1, y.view(-1, 1)).squeeze(1)
    return pd.DataFrame({"model": name, "sigma": sigma, "idx": index, "label": y.numpy(),
                         "wrong": (samples - right).numpy(), "samples": samples})


def targets(values: Mapping[str, Any]) -> list[Target]:
    """The attacked classifiers of the chapter's parameters (:func:`grid`), without the absent base models
    (:func:`rs_repro.chapters.common.absent_models`)."""
    present = common.model_specs(values)
    return [t for t in grid(values["sigmas"], values["ns"], values["pas"], values["randtrain_sigma"],
                            values["randtrain_ns"]) if t.model in present]


def smoothed_models(values: Mapping[str, Any]) -> list[tuple[str, float]]:
    """The smoothed base models of the chapter's classifiers (:func:`targets`): (model name, sigma), sorted."""
    return sorted({(t.model, t.sigma) for t in targets(values) if t.sigma is not None})


#: CERTIFY's settings for the certified radii of the attacked images, besides ``certify_n``.
CERTIFY = {"n0": 100, "alpha": 0.001}


def plan(values: Mapping[str, Any]) -> list[Stage]:
    """The chapter's work, in three steps: the base models (``model-<name>``), the attacked images
    (:func:`rs_repro.chapters.common.images_unit`, id ``images``, with the standard model), then the units of :func:`units`
    on those images.

    ``values`` are the notebook's parameters (:func:`rs_repro.pipeline.parameters.chapter_values`). Pure:
    nothing is read, trained or drawn here.
    """
    data_dir = values["data_dir"] or None
    specs = common.model_specs(values)
    return [Stage("models", fixed(common.model_units(values["dataset"], data_dir, specs))),
            Stage("attacked images", fixed(common.images_units(values))),
            Stage("attacks", lambda done: units(values, done[common.IMAGES]))]


def units(values: Mapping[str, Any], images: pd.DataFrame) -> list[Unit]:
    """The chapter's work on the attacked images ``images`` (the table of :func:`rs_repro.chapters.common.images_unit`): every
    classifier's clean accuracy, the attack grid (:func:`attack_units`), CERTIFY of the attacked images under
    each smoothed base model (for the distortion-to-radius ratios), the micro-decisions at the clean images
    under each (:func:`clean_votes_unit`) and the white-box minimal distortions on the undefended model
    (:data:`MINIMAL_UNIT`). Pure, as :func:`plan`.
    """
    where = {"dataset": values["dataset"], "data_dir": values["data_dir"] or None, "pool": values["pool"]}
    run = {"batch_size": values["batch_size"], "device": values["device"]}
    specs = common.model_specs(values)
    chosen = targets(values)
    in_pool, index = [int(p) for p in images.position], [int(i) for i in images.idx]
    work = accuracy_units(**where, **run, targets=chosen, models=specs, seed=values["seed"])
    work += attack_units(**where, **run, index=index, targets=chosen, attacks=values["attacks"],
                         models=specs, max_queries=values["max_queries"], budgets=values["budgets"],
                         chunk=values["chunk"], verify_repeats=values["verify_repeats"], votes=values["votes"],
                         confirm_votes=values["confirm_votes"], alpha=values["alpha"], seed=values["seed"])
    for name, sigma in smoothed_models(values):
        work += common.certify_units(
            dataset=where["dataset"], data_dir=where["data_dir"], subset=values["pool"] or None,
            subset_seed=values["seed"], images=in_pool, chunk=values["chunk"], model=specs[name], name=name,
            sigma=sigma, n0=CERTIFY["n0"], n=values["certify_n"], alpha=CERTIFY["alpha"], **run, seed=values["seed"])
        work.append(Unit(f"clean-votes-{name}-sigma{sigma:g}", f"{_MODULE}:clean_votes_unit",
                         {**where, **run, "index": index, "model": dict(specs[name]), "name": name, "sigma": sigma,
                          "samples": values["certify_n"], "seed": values["seed"]}))
    work.append(Unit("minimal-standard", MINIMAL_UNIT,
                     {**where, "index": index, "model": dict(specs["standard"]), "steps": values["minimal_steps"],
                      "device": values["device"], "seed": values["seed"]}))
    return work
