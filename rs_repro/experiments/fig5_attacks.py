"""Compute functions of the ``fig5_attacks`` chapter: Fig. 5 of the paper.

Three decision-based attacks (HSJA, SurFree, RayS) against the undefended model, the standard model under
smoothing at two noise levels with n in {10, 50, 100} micro-decisions and the acceptance levels
P_a in {0.5, 0.8} (the paper's ceil(n P_a) rule), RandTrain under smoothing, and AdvTrain, all with the
same per-image query budget (2,000 in the paper). One row per attacked image records its distortions, its
queries and forward passes, and its best distortion at several budgets (from the oracle's history).

Two protocols on the same images. The paper's: a query is adversarial when ceil(n P_a) of its n
micro-decisions are wrong, and the distortion is the best accepted query's. Under smoothing that point may be
a lucky vote, so the attack's points (its best accepted query, its own last iterate) are pushed along their
box-projected paths until eq. (4) is confirmed by a one-sided test with fresh votes (:func:`confirm_rows`,
:func:`rs_repro.attacks.verification.push_candidates`): the confirmed distortion, of an image inside [0, 1]^d.
No image is left out of either; an attack that found no confirmed adversarial example on an image failed there
(distortion ``inf``, in every statistic). The wrong-vote rate at each clean image x_o tells how often x_o
itself would be accepted.

The work is a list of units (:mod:`rs_repro.pipeline.engine`): one per classifier and attack and chunk of images
(:func:`attack_units`), one per classifier for its clean accuracy (:func:`accuracy_units`), one per smoothed
base model for the votes at the clean images, one for the white-box minimal distortions, and CERTIFY. A unit
reads only the code of its own attack, so an edit of one attack recomputes that attack's units and no other.
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

from rs_repro import data, seeds, theory
from rs_repro.attacks.oracle import AttackResult, Oracle, smoothed_oracle
from rs_repro.attacks.verification import push_candidates, verify
from rs_repro.checks import rule_checker
from rs_repro.experiments.common import count_rule, data_and_models
from rs_repro.models import ARCHITECTURES, load_model, model_spec
from rs_repro.pipeline.engine import Unit
from rs_repro.report.measurements import AttackConfiguration, AttackGrid
from rs_repro.report.paper import DISTORTION_OVER_RADIUS, fig5_readings
from rs_repro.report.plots import PALETTE
from rs_repro.smoothing import Smooth

#: The module and function of each attack of the paper, by the names its Fig. 5 uses.
ATTACKS: dict[str, str] = {"HSJA": "rs_repro.attacks.hsja:hsja", "SurFree": "rs_repro.attacks.surfree:surfree",
                           "RayS": "rs_repro.attacks.rays:rays"}
_MODULE = __name__


def check_parameters(values: Mapping[str, Any]) -> None:
    """The chapter's rules on its parameters (ValueError naming the first one broken), run before anything."""
    need = rule_checker(values)
    size = data_and_models(values, ("standard", "randtrain", "advtrain"), device=True)
    fits, accepted = count_rule(values["pool"], size, f"test images of {values['dataset']}",
                                zero="the whole test split")
    need(fits, "pool", accepted)
    fits, accepted = count_rule(values["num_images"], values["pool"] or size, "test images in the pool")
    need(fits, "num_images", accepted)
    need(values["max_queries"] >= 1, "max_queries", "at least 1")
    budgets = values["budgets"]
    need(bool(budgets) and budgets == sorted(set(budgets)) and budgets[0] >= 1 and budgets[-1] == values["max_queries"],
         "budgets", f"increasing positive budgets ending at max_queries={values['max_queries']}")
    need(bool(values["attacks"]) and set(values["attacks"]) <= set(ATTACKS), "attacks",
         f"a non-empty list of {sorted(ATTACKS)}")
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


def make_oracle(target: Target, model: nn.Module, num_classes: int, max_queries: int,
                generator: torch.Generator, batch_size: int = 10_000) -> Oracle:
    """The oracle an attack queries for ``target``: the base model, or g_{sigma,n} with the P_a rule
    (``batch_size`` noisy inputs per forward pass at most)."""
    if target.sigma is None:
        return Oracle(model, max_queries)
    return smoothed_oracle(Smooth(model, num_classes, target.sigma), target.n, target.pa, max_queries=max_queries,
                           batch_size=batch_size, generator=generator)


def vote_correct(target: Target, model: nn.Module, num_classes: int, x: torch.Tensor, y: torch.Tensor,
                 seed: int, batch_size: int = 10_000) -> np.ndarray:
    """Which of the images ``x`` [N, C, H, W] the attacked classifier labels ``y`` [N] (bool [N]): the base
    model's argmax, or one majority vote g_{sigma,n} per image (ties broken at random). The votes are drawn
    from a generator seeded by the base model, sigma and n, not P_a: the classifier is the same at every
    P_a, and so are its answers."""
    device = next(model.parameters()).device
    if target.sigma is None:
        with torch.inference_mode():
            labels = torch.cat([model(part.to(device)).argmax(1).cpu() for part in x.split(batch_size)])
    else:
        labels = Smooth(model, num_classes, target.sigma).vote(
            x.to(device), target.n, batch_size,
            generator=seeds.generator(seed, "accuracy", target.model, target.sigma, target.n, device=device)).cpu()
    return (labels == y).numpy()


#: The largest factor on a reported perturbation that the confirmation tries, no practical limit since the
#: box-projected path stops moving before it (:func:`rs_repro.attacks.verification.push_to_level`). A lucky
#: answer may sit a thousandth of the needed distance from x_o and still give the attack's direction; each
#: doubling costs one decision.
PUSH_MAX_T = 2.0 ** 30
#: The names of an attack's candidate points, in the order :func:`rs_repro.attacks.verification.push_candidates`
#: prefers them on a tie: the oracle's best accepted query, the attack's own last iterate.
CANDIDATES = ("best query", "last iterate")


def confirm_rows(smooth: Smooth, x_o: torch.Tensor, labels: torch.Tensor, result: AttackResult, *, n: int,
                 level: float, votes: int, confirm_votes: int, alpha: float, seed: int,
                 batch_size: int) -> dict[str, np.ndarray]:
    """The confirmed adversarial example of each image from an attack's candidates (:data:`CANDIDATES`).

    Each candidate is pushed along its box-projected path and confirmed at eq. (4)'s level ``level`` with a
    one-sided test at confidence 1 - ``alpha`` over all candidates
    (:func:`rs_repro.attacks.verification.push_candidates`); the smaller confirmed distortion is kept.

    Returns
    -------
    dict of str to numpy.ndarray, each [B]
        ``verified_l2, verified_linf, t`` of the point kept (inf where the image failed), ``source`` (the
        candidate kept, "" on a failure), ``at_level`` (the best query itself confirmed at t = 1),
        ``verified_level, confirm_lower, confirm_attempts`` (the kept test's fraction of wrong votes, its
        one-sided lower bound and the confirmations tried), ``confirm_forward_passes`` (every vote drawn for
        every candidate, n forward passes each), and per candidate its confirmed distortion
        (``query_confirmed_l2``; ``final_confirmed_l2``, inf where it failed, could not beat the best query's,
        or the attack has no iterate).
    """
    candidates = {CANDIDATES[0]: result.x_adv.to(x_o.device)}
    if result.x_final is not None:
        candidates[CANDIDATES[1]] = result.x_final.to(x_o.device)
    found = push_candidates(smooth, x_o, candidates, labels, n=n, pa=level, votes=votes, confirm_votes=confirm_votes,
                            alpha=alpha, seed=seed, max_t=PUSH_MAX_T, batch_size=batch_size)
    best, query = found.best, found.each[CANDIDATES[0]]
    final = found.each.get(CANDIDATES[1])
    return {"verified_l2": best.l2, "verified_linf": best.linf, "t": best.t, "source": found.source.astype(str),
            "at_level": query.confirmed & (query.t == 1.0), "verified_level": best.p, "confirm_lower": best.lower,
            "confirm_attempts": best.attempts, "confirm_forward_passes": best.forward_passes,
            "query_confirmed_l2": query.l2,
            "final_confirmed_l2": np.full(len(x_o), np.inf) if final is None else final.l2}


def attack_rows(target: Target, attack: str, model: nn.Module, num_classes: int, x: torch.Tensor,
                y: torch.Tensor, index: torch.Tensor, units: Sequence[int], *, max_queries: int,
                budgets: Sequence[int], verify_repeats: int, votes: int, confirm_votes: int, alpha: float,
                seed: int, batch_size: int = 10_000) -> pd.DataFrame:
    """Run ``attack`` on the images at positions ``units`` (one batch) against ``target``; confirm its points.

    The attack and the oracle draw from generators seeded by the seed, the target, the attack and the
    first unit of the batch, so a resumed run recomputes a batch exactly. Under smoothing an answer
    "adversarial" may be luck, so afterwards ``level`` estimates P[g_{sigma,n}(x_adv) != y], the level of
    eq. (4) at the best accepted query x_adv, from ``verify_repeats`` fresh votes, and :func:`confirm_rows`
    turns the attack's candidates (its best accepted query and its own last iterate) into a confirmed
    adversarial example at the target's level (:attr:`Target.level`): an image of [0, 1]^d whose one-sided
    (1 - ``alpha``) lower bound of eq. (4)'s probability is at least the level (``verified_l2``, inf on a
    failure). Without smoothing the reported point is exact, and confirmed as it is. Every forward pass of the
    smoothed classifier takes ``batch_size`` noisy inputs at most; the attack runs on the device of ``model``.

    Returns
    -------
    pandas.DataFrame
        One row per image: ``unit, idx, label, attack, target, success, l2, linf, best_linf, queries,
        forward_passes, level``, the columns of :func:`confirm_rows`, ``final_l2, final_level``, the attack's
        diagnostics (e.g. HSJA's ``gradient_steps, one_label_steps``) and ``l2_at_<q>`` for each budget q (inf
        where not yet adversarial). ``l2`` is inf where no query was accepted, 0 where the clean image was;
        ``final_*`` (the attack's own last iterate: distortion, and its level from fresh votes) are NaN for an
        attack without one.
    """
    device = next(model.parameters()).device
    block = torch.as_tensor(list(units))
    key = (target.label, attack, int(block[0]))
    x_o, labels = x[block].to(device), y[block].to(device)
    oracle = make_oracle(target, model, num_classes, max_queries,
                         seeds.generator(seed, "oracle", *key, device=device), batch_size)
    result = attack_function(attack)(oracle, x_o, labels, seed=seeds.derive_seed(seed, *key))
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
        verified = confirm_rows(smooth, x_o, labels, result, n=target.n, level=target.level, votes=votes,
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


def attacked_images(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_images: int, seed: int) -> torch.Tensor:
    """Positions of the attacked images: a seeded subset of ``num_images`` of those ``model`` classifies
    correctly (all of them when fewer), in the order of :func:`rs_repro.data.subset_indices`."""
    with torch.inference_mode():
        right = (model(x).argmax(1) == y).nonzero().squeeze(1)
    return right[data.subset_indices(len(right), min(num_images, len(right)), seed)]


def test_pool(dataset: str, data_dir: str | None, pool: int, seed: int) -> data.Dataset:
    """The test images the chapter draws from: a seeded subset of ``pool`` images of the test split
    (:func:`rs_repro.data.load_dataset`; on ImageNet only those files are decoded), the whole split for 0."""
    return data.load_dataset(dataset, "test", data_dir=data_dir, n=pool or None, seed=seed)


def _images(dataset: str, data_dir: str | None, pool: int, seed: int,
            index: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The images and labels at test-split positions ``index``, all in the chapter's pool (:func:`test_pool`)."""
    drawn = test_pool(dataset, data_dir, pool, seed)
    where = {int(i): k for k, i in enumerate(drawn.index)}
    positions = torch.as_tensor([where[int(i)] for i in index])
    return drawn.x[positions], drawn.y[positions]


def attack_unit(*, dataset: str, data_dir: str | None, pool: int, index: list[int], positions: list[int],
                model: Mapping[str, Any], target: Mapping[str, Any], attack: str, max_queries: int,
                budgets: list[int], verify_repeats: int, votes: int, confirm_votes: int, alpha: float,
                batch_size: int, device: str, seed: int) -> pd.DataFrame:
    """One unit of the attack grid: :func:`attack_rows` on the attacked images at ``positions``, on ``device``.

    ``index`` are the dataset positions of all the attacked images (test split, all in the :func:`test_pool`
    of ``pool`` images), ``model`` the :func:`rs_repro.models.model_spec` of the base model, ``target`` the
    fields of a :class:`Target`.
    """
    base, _ = load_model(dataset, model, data_dir=data_dir, device=device)
    x, y = _images(dataset, data_dir, pool, seed, index)
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
                    {"dataset": dataset, "data_dir": data_dir, "pool": pool, "index": [int(i) for i in index],
                     "positions": positions, "model": dict(models[target.model]), "target": dataclasses.asdict(target),
                     "attack": attack, "max_queries": max_queries, "budgets": list(budgets),
                     "verify_repeats": verify_repeats, "votes": votes, "confirm_votes": confirm_votes,
                     "alpha": alpha, "batch_size": batch_size, "device": device, "seed": seed},
                    (_MODULE, ATTACKS[attack].partition(":")[0])))
    return units


def accuracy_unit(*, dataset: str, data_dir: str | None, pool: int, model: Mapping[str, Any],
                  target: Mapping[str, Any], batch_size: int, device: str, seed: int) -> pd.DataFrame:
    """One row per test image of the chapter (:func:`test_pool`: the whole test split for ``pool`` 0),
    ``target, idx, correct``: whether one classifier labels it right (:func:`vote_correct`)."""
    base, _ = load_model(dataset, model, data_dir=data_dir, device=device)
    full = test_pool(dataset, data_dir, pool, seed)
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
    x, y = _images(dataset, data_dir, pool, seed, index)
    counts = Smooth(base, data.num_classes(dataset), sigma).counts(
        x.to(device), samples, batch_size, generator=seeds.generator(seed, "clean-votes", name, sigma, device=device))
    right = counts.cpu().gather(1, y.view(-1, 1)).squeeze(1)
    return pd.DataFrame({"model": name, "sigma": sigma, "idx": index, "label": y.numpy(),
                         "wrong": (samples - right).numpy(), "samples": samples})


def minimal_unit(*, dataset: str, data_dir: str | None, pool: int, index: list[int], model: Mapping[str, Any],
                 steps: int, device: str, seed: int) -> pd.DataFrame:
    """One row per attacked image, ``idx, minimal_l2``: the white-box minimal l2 distortion on the base model
    without smoothing (:func:`rs_repro.attacks.minimal.minimal_l2` with ``steps`` gradient steps), a floor
    for the attacks' distortions on it."""
    minimal = importlib.import_module("rs_repro.attacks.minimal")
    base, _ = load_model(dataset, model, data_dir=data_dir, device=device)
    x, y = _images(dataset, data_dir, pool, seed, index)
    found = minimal.minimal_l2(base, x.to(device), y.to(device), steps=steps)
    return pd.DataFrame({"idx": index, "minimal_l2": found.distance.cpu().numpy()})


def model_specs(values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The :func:`rs_repro.models.model_spec` of each base model of the chapter that exists, by name.

    A base model comes from its checkpoint parameter (``standard_weights``, ``randtrain_weights``,
    ``advtrain_weights``: a file or ``pretrained:<name>``) when one is given, else it is trained here, on the
    datasets of :data:`rs_repro.models.ARCHITECTURES`; elsewhere (ImageNet) a model without a checkpoint is
    absent (:func:`absent_models`).
    """
    seed, trainable = values["seed"], values["dataset"] in ARCHITECTURES
    specs = {"standard": model_spec("standard", seed=seed, weights=values["standard_weights"]),
             "randtrain": model_spec("randtrain", sigma=values["randtrain_sigma"], seed=seed,
                                     weights=values["randtrain_weights"]),
             "advtrain": model_spec("advtrain", epsilon=values["advtrain_epsilon"], seed=seed,
                                    weights=values["advtrain_weights"])}
    return {name: spec for name, spec in specs.items() if trainable or spec["weights"]}


def absent_models(values: Mapping[str, Any]) -> dict[str, str]:
    """The base models left out of the grid, each with the reason (a sentence for the page)."""
    present = model_specs(values)
    return {name: f"no {name} checkpoint was given ({name}_weights) and none is trained on {values['dataset']}"
            for name in ("randtrain", "advtrain") if name not in present}


def targets(values: Mapping[str, Any]) -> list[Target]:
    """The attacked classifiers of the chapter's parameters (:func:`grid`), without the absent base models."""
    present = model_specs(values)
    return [t for t in grid(values["sigmas"], values["ns"], values["pas"], values["randtrain_sigma"],
                            values["randtrain_ns"]) if t.model in present]


def units(values: Mapping[str, Any]) -> list[Unit]:
    """The chapter's work: every classifier's clean accuracy, the attack grid (:func:`attack_units`),
    CERTIFY of the attacked images under each smoothed base model (for the distortion-to-radius ratios), the
    micro-decisions at the clean images under each (:func:`clean_votes_unit`) and the white-box minimal
    distortions on the undefended model (:func:`minimal_unit`).

    The base models are trained here when missing, before any unit runs, and the attacked images are chosen
    with the standard model (:func:`attacked_images`) in the chapter's pool (:func:`test_pool`).
    """
    where = {"dataset": values["dataset"], "data_dir": values["data_dir"] or None, "pool": values["pool"]}
    run = {"batch_size": values["batch_size"], "device": values["device"]}
    specs = model_specs(values)
    for spec in specs.values():
        load_model(values["dataset"], spec, data_dir=where["data_dir"])
    in_pool, index = attacked_positions(values)
    work = accuracy_units(**where, **run, targets=targets(values), models=specs, seed=values["seed"])
    work += attack_units(**where, **run, index=index, targets=targets(values), attacks=values["attacks"],
                         models=specs, max_queries=values["max_queries"], budgets=values["budgets"],
                         chunk=values["chunk"], verify_repeats=values["verify_repeats"], votes=values["votes"],
                         confirm_votes=values["confirm_votes"], alpha=values["alpha"], seed=values["seed"])
    # Imported by name: the certification units read the certification chapter's code, and the minimal unit the
    # white-box attack's, the attack units neither (a static import would put them in their code digest,
    # rs_repro.pipeline.cache.code_digest).
    certification = importlib.import_module("rs_repro.experiments.fig4_certification")
    for name, sigma in _smoothed_models(values):
        work += certification.certify_units(
            dataset=where["dataset"], data_dir=where["data_dir"], subset=values["pool"] or None,
            subset_seed=values["seed"], images=in_pool, chunk=values["chunk"], model=specs[name], name=name,
            sigma=sigma, n0=CERTIFY["n0"], n=values["certify_n"], alpha=CERTIFY["alpha"], **run, seed=values["seed"])
        work.append(Unit(f"clean-votes-{name}-sigma{sigma:g}", f"{_MODULE}:clean_votes_unit",
                         {**where, **run, "index": index, "model": dict(specs[name]), "name": name, "sigma": sigma,
                          "samples": values["certify_n"], "seed": values["seed"]}))
    work.append(Unit("minimal-standard", f"{_MODULE}:minimal_unit",
                     {**where, "index": index, "model": dict(specs["standard"]), "steps": values["minimal_steps"],
                      "device": values["device"], "seed": values["seed"]}, (_MODULE, "rs_repro.attacks.minimal")))
    return work


#: CERTIFY's settings for the certified radii of the attacked images, besides ``certify_n``.
CERTIFY = {"n0": 100, "alpha": 0.001}


def _smoothed_models(values: Mapping[str, Any]) -> list[tuple[str, float]]:
    return sorted({(t.model, t.sigma) for t in targets(values) if t.sigma is not None})


def attacked_positions(values: Mapping[str, Any]) -> tuple[list[int], list[int]]:
    """Where the attacked images are (:func:`attacked_images` with the standard model, among the chapter's
    pool, :func:`test_pool`, loaded once): their positions in the pool, and in the test split."""
    data_dir = values["data_dir"] or None
    base, _ = load_model(values["dataset"], model_specs(values)["standard"], data_dir=data_dir,
                         device=values["device"])
    drawn = test_pool(values["dataset"], data_dir, values["pool"], values["seed"])
    chosen = attacked_images(base, drawn.x.to(values["device"]), drawn.y.to(values["device"]), values["num_images"],
                             values["seed"]).cpu()
    return chosen.tolist(), drawn.index[chosen].tolist()



@dataclass(frozen=True)
class Results:
    """The chapter's tables, joined from its units' tables (:func:`results`).

    Attributes
    ----------
    accuracy : pandas.DataFrame
        ``target, correct, tested, accuracy``: clean accuracy of every classifier.
    answers : pandas.DataFrame
        ``target, idx, correct``: every classifier's answer on every tested image (:func:`accuracy_unit`).
    runs : pandas.DataFrame
        One row per attacked image, attack and classifier (:func:`attack_rows`), with the classifier's
        ``model, sigma, n, pa, accuracy``.
    summary : pandas.DataFrame
        :func:`summarize` of ``runs``.
    ratios : pandas.DataFrame
        Per attack and smoothed classifier, the median confirmed distortion over the median and over the
        largest certified radius of the same images (:func:`certificate_ratios`).
    certified : dict
        (model name, sigma) to the CERTIFY rows of the attacked images.
    clean : pandas.DataFrame
        The micro-decisions at the clean images (:func:`clean_votes_unit`), every smoothed base model.
    acceptance : pandas.DataFrame
        :func:`acceptance` of ``clean``: how likely each clean image is accepted by each smoothed oracle.
    minimal : pandas.DataFrame
        ``idx, minimal_l2`` (:func:`minimal_unit`).
    """

    accuracy: pd.DataFrame
    answers: pd.DataFrame
    runs: pd.DataFrame
    summary: pd.DataFrame
    ratios: pd.DataFrame
    certified: dict[tuple[str, float], pd.DataFrame]
    clean: pd.DataFrame
    acceptance: pd.DataFrame
    minimal: pd.DataFrame


def _joined(tables: Mapping[str, pd.DataFrame], prefix: str) -> pd.DataFrame:
    return pd.concat([t for k, t in tables.items() if k.startswith(prefix)], ignore_index=True)


def results(tables: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> Results:
    """The chapter's tables from the tables of :func:`units` (``tables`` maps a unit id to its table)."""
    answers = _joined(tables, "accuracy-")
    accuracy = (answers.groupby("target", sort=False).correct.agg(correct="sum", tested="size").reset_index()
                .assign(accuracy=lambda a: a.correct / a.tested))
    runs = runs_table([t for k, t in tables.items() if k.startswith("attack-")], targets(values), accuracy)
    summary = summarize(runs)
    certified = {(name, sigma): _joined(tables, f"certify-{name}-sigma{sigma:g}-")
                 for name, sigma in _smoothed_models(values)}
    clean = _joined(tables, "clean-votes-")
    return Results(accuracy, answers, runs, summary, certificate_ratios(summary, certified), certified, clean,
                   acceptance(clean, targets(values), values["max_queries"]), tables["minimal-standard"])


def certificate_ratios(summary: pd.DataFrame, certified: Mapping[tuple[str, float], pd.DataFrame]) -> pd.DataFrame:
    """Per attack and smoothed classifier of ``summary`` (:func:`summarize`), the median confirmed distortion
    over the median and the largest CERTIFY radius of the same images (``certified`` as in :class:`Results`).

    Returns
    -------
    pandas.DataFrame
        ``attack, target, verified_median_l2, median_radius, largest_radius, ratio_to_median,
        ratio_to_largest`` (inf where a median radius is 0 or no verified point was found on most images).
    """
    rows = []
    for row in summary[summary.sigma.notna()].itertuples():
        radius = certified[row.model, row.sigma].radius
        with np.errstate(divide="ignore"):
            rows.append({"attack": row.attack, "target": row.target, "verified_median_l2": row.verified_median_l2,
                         "median_radius": radius.median(), "largest_radius": radius.max(),
                         "ratio_to_median": np.divide(row.verified_median_l2, radius.median()),
                         "ratio_to_largest": np.divide(row.verified_median_l2, radius.max())})
    return pd.DataFrame(rows)


def acceptance(clean: pd.DataFrame, targets: Sequence[Target], max_queries: int) -> pd.DataFrame:
    """How likely the smoothed oracles accept the clean images themselves.

    With pi_1 the fraction of wrong micro-decisions at x_o (``clean``, :func:`clean_votes_unit`), one query at
    x_o is accepted with probability a = P[Bin(n, pi_1) >= ceil(n P_a)] (:func:`rs_repro.theory.accelerated_acceptance`,
    at :attr:`Target.level`), and at least once in ``max_queries``
    queries with probability 1 - (1 - a)^max_queries: the chance that the clean image itself, or a point as
    close to it, passes as adversarial within the budget (a plug-in estimate: pi_1 is itself estimated).

    Returns
    -------
    pandas.DataFrame
        One row per smoothed target and image: ``target, model, sigma, n, pa, idx, wrong_rate, per_query,
        within_budget``.
    """
    rows = []
    for t in targets:
        if t.sigma is None:
            continue
        part = clean[(clean.model == t.model) & (clean.sigma == t.sigma)]
        rate = (part.wrong / part.samples).to_numpy()
        per_query = np.asarray(theory.accelerated_acceptance(rate, t.n, t.level))
        rows.append(pd.DataFrame({"target": t.label, "model": t.model, "sigma": t.sigma, "n": t.n, "pa": t.pa,
                                  "idx": part.idx.to_numpy(), "wrong_rate": rate, "per_query": per_query,
                                  "within_budget": 1 - (1 - per_query) ** max_queries}))
    return pd.concat(rows, ignore_index=True)


def runs_table(tables: Sequence[pd.DataFrame], targets: Sequence[Target], accuracy: pd.DataFrame) -> pd.DataFrame:
    """The attack units' rows in one table, with each classifier's ``model, sigma, n, pa`` and ``accuracy``."""
    grid_table = pd.DataFrame([{"target": t.label, "model": t.model, "sigma": t.sigma, "n": t.n, "pa": t.pa}
                               for t in targets], dtype=object).astype({"sigma": float, "n": float, "pa": float})
    runs = pd.concat(list(tables), ignore_index=True)
    return runs.merge(grid_table, on="target").merge(accuracy[["target", "accuracy"]], on="target")


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per attack and classifier, over every attacked image (none left out).

    Columns: ``attack, target, model, sigma, n, pa, accuracy``; the paper's protocol: ``mean_l2`` (the
    statistic of its Fig. 5; inf if the attack found nothing on some image) and ``median_l2`` of the
    reported distortion, ``success`` (some query accepted), ``level`` (mean P[g_{sigma,n}(x_adv) != y] at the
    reported points); the confirmed protocol: ``verified_median_l2`` (a failure counts as inf, so the median
    is finite only where fewer than half of the images fail), ``verified`` (fraction of images with a confirmed
    adversarial example), ``failures`` (images without one), ``at_level`` (fraction whose reported point was
    itself confirmed), ``from_iterate`` (fraction whose kept point came from the attack's last iterate);
    ``final_median_l2`` (the attack's own last iterate, NaN without one), ``images`` and ``forward_passes``.
    """
    keys = ["attack", "target", "model", "sigma", "n", "pa", "accuracy"]
    return (runs.assign(found=np.isfinite(runs.verified_l2), failed=~np.isfinite(runs.verified_l2),
                        iterate=runs.source == CANDIDATES[1])
            .groupby(keys, dropna=False, sort=False)
            .agg(mean_l2=("l2", "mean"), median_l2=("l2", "median"), success=("success", "mean"),
                 level=("level", "mean"), verified_median_l2=("verified_l2", "median"), verified=("found", "mean"),
                 failures=("failed", "sum"), at_level=("at_level", "mean"), from_iterate=("iterate", "mean"),
                 final_median_l2=("final_l2", "median"), images=("l2", "size"),
                 forward_passes=("forward_passes", "mean")).reset_index())


def _optional(value: float, kind: type) -> Any:
    return None if pd.isna(value) else kind(value)


def measured(res: Results, values: Mapping[str, Any]) -> AttackGrid:
    """The record the claims chapter reads (claims 1-6 and 10): every configuration, image by image."""
    images = res.runs.sort_values("unit").drop_duplicates("unit").idx.tolist()
    minimal = res.minimal.set_index("idx").minimal_l2
    counts = res.accuracy.set_index("target")
    answers = {label: part.correct.astype(bool).tolist() for label, part in res.answers.groupby("target")}
    configurations = []
    for (attack, label), part in res.runs.groupby(["attack", "target"], sort=False):
        part = part.set_index("idx").loc[images]
        first = part.iloc[0]
        sigma = _optional(first.sigma, float)
        radius = None if sigma is None else \
            res.certified[first.model, sigma].set_index("idx").radius.loc[images].astype(float).tolist()
        configurations.append(AttackConfiguration(
            attack=attack, target=label, model=first.model, sigma=sigma, n=_optional(first.n, int),
            pa=_optional(first.pa, float), correct=int(counts.correct[label]), tested=int(counts.tested[label]),
            correct_images=answers[label], reported_l2=part.l2.astype(float).tolist(), verified_l2=part.verified_l2.astype(float).tolist(),
            at_level=part.at_level.astype(bool).tolist(), level=part.level.astype(float).tolist(), radius=radius,
            forward_passes=float(part.forward_passes.mean())))
    return AttackGrid(dataset=values["dataset"], seed=values["seed"], max_queries=values["max_queries"],
                      votes=values["votes"], alpha=values["alpha"], images=[int(i) for i in images],
                      minimal_l2=minimal.loc[images].astype(float).tolist(), configurations=configurations)


#: The paper's name of each of our base models in its Fig. 5 (:func:`rs_repro.report.paper.fig5_readings`).
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


def _by(frame: pd.DataFrame, key: str, column: str, fmt: str, unit: str = "") -> str:
    """``column`` averaged per value of ``key``, as text: e.g. "0.12 at Pa = 0.5, 0.40 at Pa = 0.8"."""
    means = frame.groupby(key)[column].mean()
    return ", ".join(f"{v:{fmt}} {unit}{k:g}" if isinstance(k, float) else f"{v:{fmt}} ({k})"
                     for k, v in means.items())


def accuracy_costs(summary: pd.DataFrame) -> str:
    """What each sigma of the smoothed standard model costs in clean accuracy, at each n, as text: the undefended
    accuracy minus that of g_{sigma,n} (one vote per test image), e.g. "σ = 0.55: 0.105 / 0.037 at n = 10 /
    50"."""
    plain = summary[(summary.model == "standard") & summary.sigma.isna()].accuracy.iloc[0]
    smoothed = summary[(summary.model == "standard") & summary.sigma.notna()].drop_duplicates(["sigma", "n"])
    parts = []
    for sigma, rows in smoothed.sort_values("n").groupby("sigma"):
        ns = " / ".join(f"{n:.0f}" for n in rows.n)
        parts.append(f"σ = {sigma:g}: " + " / ".join(f"{plain - a:.3f}" for a in rows.accuracy) + f" at n = {ns}")
    return "; ".join(parts)


def _at_least(value: float, decimals: int = 2) -> str:
    """A lower bound as text, rounded down so that the printed number is never above ``value`` (2.959 gives
    "2.95", never "3.0"); "infinite" where the attack fails on most images."""
    if not np.isfinite(value):
        return "infinite (the attack fails on most images)"
    scale = 10 ** decimals
    return f"{np.floor(value * scale) / scale:.{decimals}f}"


def page(res: Results, values: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers and phrases the chapter's prose reads, by glue name."""
    summary, attacks = res.summary, values["attacks"]
    undefended = summary[summary.target == "standard"].set_index("attack")
    smoothed = summary[summary.sigma.notna()]
    standard = smoothed[smoothed.model == "standard"]

    def trend(column: str) -> str:
        parts = []
        for attack in attacks:
            by_n = standard[standard.attack == attack].groupby("n")[column].median()
            parts.append(f"{attack}: " + " → ".join(f"{by_n[n]:.2f}" for n in sorted(values["ns"]) if n in by_n))
        return "; ".join(parts)

    paper = fig5_readings()
    surfree = paper[(paper.attack == "SurFree") & (paper.sigma == 0.05) & (paper.pa == 0.8)].sort_values("n")
    clean = res.acceptance[res.acceptance.model == "standard"]
    smallest = clean[(clean.n == min(values["ns"])) & (clean.pa == min(values["pas"]))]
    rate = clean.drop_duplicates(["sigma", "idx"]).groupby("sigma").wrong_rate
    hsja = res.runs[(res.runs.attack == "HSJA") & res.runs.sigma.notna()] if "HSJA" in attacks else res.runs[:0]
    failing = smoothed[smoothed.failures * 2 >= smoothed.images]
    return {
        "smallest_ratio": _at_least(res.ratios.ratio_to_median.min()),
        "smallest_ratio_max": _at_least(res.ratios.ratio_to_largest.min()),
        "certify_n": float(values["certify_n"]), "paper_ratio": DISTORTION_OVER_RADIUS,
        "undefended": ", ".join(f"{undefended.median_l2[a]:.2f} ({a})" for a in attacks),
        "trend_reported": trend("median_l2"), "trend_verified": trend("verified_median_l2"),
        "ns_text": ", ".join(map(str, sorted(values["ns"]))),
        "paper_trend": " → ".join(f"{v:g}" for v in surfree.l2_low),
        "level_by_pa": _by(smoothed, "pa", "level", ".2f", "at Pa = "),
        "at_level_by_pa": _by(smoothed, "pa", "at_level", ".2f", "at Pa = "),
        "verified_found": float(smoothed.verified.min()),
        "confirmed_by_pa": _by(smoothed, "pa", "verified", ".2f", "at Pa = "),
        "from_iterate": _by(smoothed[smoothed.attack.isin(["HSJA", "SurFree", "RayS"])], "attack", "from_iterate",
                            ".2f"),
        "failures_total": int(smoothed.failures.sum()), "attacked_total": int(smoothed.images.sum()),
        "failing": (f"{len(failing)} of {len(smoothed)} smoothed configurations, where the attack fails on at least "
                    f"half of the images and no median is given: " + "; ".join(failing.target + " (" + failing.attack
                                                                                + ")")
                    if len(failing) else f"none of the {len(smoothed)} smoothed configurations"),
        "accuracy_costs": accuracy_costs(summary),
        "alpha": float(values["alpha"]), "confidence": 1 - float(values["alpha"]),
        "confirm_votes": int(values["confirm_votes"]), "images": int(summary.images.max()),
        "verify_repeats": values["verify_repeats"], "votes": values["votes"], "max_queries": values["max_queries"],
        "wrong_rate": "; ".join(f"σ = {s:g}: median {r.median():.2f}, 90th percentile {r.quantile(0.9):.2f}"
                                for s, r in rate),
        "accepted_within_budget": _by(smallest, "sigma", "within_budget", ".2f", "at σ = "),
        "n_small": int(min(values["ns"])), "pa_small": float(min(values["pas"])),
        "absent": " ".join(f"{reason[0].upper()}{reason[1:]}: the grid has no {name} row." for name, reason
                           in absent_models(values).items()) or "Every base model of the grid is present.",
        "hsja_final_level": float(hsja.final_level.mean()) if len(hsja) else float("nan"),
        "hsja_best_level": float(hsja.level.mean()) if len(hsja) else float("nan"),
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
    """Fig. 5, both protocols: median l2 distortion against clean accuracy, one panel per attack.

    Parameters
    ----------
    summary
        One row per (attack, classifier) with columns ``attack, model, sigma, n, pa, accuracy, median_l2,
        verified_median_l2`` (``sigma``, ``n``, ``pa`` NaN without smoothing), as :func:`summarize` gives.
    attacks
        The panels, in order.

    Returns
    -------
    matplotlib.figure.Figure
        Colour: classifier family (and sigma); marker size: n; marker shape: P_a, squares without smoothing.
        Under smoothing a hollow marker is the reported distortion (the paper's protocol), a filled one the
        confirmed distortion (eq. 4), joined by a thin line; without smoothing the two coincide (filled). An
        infinite median (at least half of the images failed) is not drawn. The legend explains all of it.
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
            style = {"s": 60 if plain else size[int(row.n)],
                     "marker": UNSMOOTHED_MARKER if plain else marker.get(row.pa, PA_MARKERS[0])}
            if not plain:
                ax.scatter(row.accuracy, row.median_l2, facecolors="none", edgecolors=colour, linewidths=1.0,
                           alpha=0.8, **style)
                if np.isfinite(row.verified_median_l2):
                    ax.plot([row.accuracy] * 2, [row.median_l2, row.verified_median_l2], color=colour, alpha=0.4,
                            linewidth=0.8)
            if np.isfinite(row.verified_median_l2):
                ax.scatter(row.accuracy, row.verified_median_l2, color=colour, alpha=0.8, edgecolors="white",
                           linewidths=0.5, **style)
        ax.set(title=attack, xlabel="accuracy", ylabel="median $\\ell_2$ distortion")

    def key(label: str, **style: object) -> Line2D:
        return Line2D([], [], linestyle="", label=label, **style)

    grey = {"color": "0.45", "markeredgecolor": "white"}
    handles: list[Artist] = [Patch(color=colour, alpha=0.8, label=name) for _, (name, colour) in sorted(families.items())]
    handles += [key(f"$n$ = {n}", marker="o", markersize=size[n] ** 0.5, **grey) for n in ns]
    handles += [key(f"$P_a$ = {pa:g}", marker=marker[pa], markersize=8, **grey) for pa in pas]
    handles += [key("no smoothing", marker=UNSMOOTHED_MARKER, markersize=8, **grey),
                key("reported (paper's protocol)", marker="o", markersize=8, markerfacecolor="none",
                    markeredgecolor="0.45"),
                key("confirmed, eq. (4)", marker="o", markersize=8, **grey)]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small", frameon=False,
               labelspacing=1.0)
    fig.tight_layout()
    return fig


def robust_accuracy(runs: pd.DataFrame, certified: Mapping[tuple[str, float], pd.DataFrame],
                    epsilons: np.ndarray) -> pd.DataFrame:
    """Robust accuracy against the l2 radius epsilon, per attack and classifier, beside the certified accuracy.

    The robust accuracy at epsilon is the fraction of the attacked images on which the attack found no
    confirmed adversarial example within l2 distance epsilon (``verified_l2 > epsilon``; a failure counts as
    robust at every epsilon): an upper bound on the classifier's true robust accuracy on these images, as far as
    this attack can tell. The certified accuracy of the same images under the classifier's base model and sigma
    (CERTIFY, :data:`CERTIFY`) is the fraction certified correct with a radius above epsilon: what the
    certificate of g_sigma promises.

    Parameters
    ----------
    runs : pandas.DataFrame
        ``Results.runs`` (:class:`Results`).
    certified : mapping
        ``Results.certified``, CERTIFY rows (``idx, radius, correct``) per (base model, sigma).
    epsilons : numpy.ndarray, shape [E]
        The radii.

    Returns
    -------
    pandas.DataFrame
        One row per attack, classifier and epsilon: ``attack, target, model, sigma, n, pa, epsilon, robust,
        certified`` (``certified`` NaN without smoothing).
    """
    rows = []
    for (attack, target), part in runs.groupby(["attack", "target"], sort=False):
        first = part.iloc[0]
        distances = part.verified_l2.to_numpy()
        robust = (distances[None, :] > epsilons[:, None]).mean(1)
        sure = np.full(len(epsilons), np.nan)
        if not pd.isna(first.sigma):
            rows_c = certified[first.model, first.sigma].set_index("idx").loc[part.idx]
            radius = np.where(rows_c.correct.to_numpy(bool), rows_c.radius.to_numpy(float), -np.inf)
            sure = (radius[None, :] > epsilons[:, None]).mean(1)
        rows.append(pd.DataFrame({"attack": attack, "target": target, "model": first.model, "sigma": first.sigma,
                                  "n": first.n, "pa": first.pa, "epsilon": epsilons, "robust": robust,
                                  "certified": sure}))
    return pd.concat(rows, ignore_index=True)


def epsilons(runs: pd.DataFrame, points: int = 200) -> np.ndarray:
    """``points`` radii from 0 to a little beyond the largest finite confirmed distortion of ``runs`` (the
    x axis of :func:`plot_robust_accuracy`; [0, 1] when no distortion is finite)."""
    finite = runs.verified_l2[np.isfinite(runs.verified_l2)]
    return np.linspace(0.0, 1.05 * float(finite.max()) if len(finite) and finite.max() > 0 else 1.0, points)


#: Line styles of the acceptance levels in the robust-accuracy figure, the largest level first.
PA_LINES = ("-", "--", ":", "-.")


def plot_robust_accuracy(curves: pd.DataFrame, attacks: Sequence[str]) -> plt.Figure:
    """Robust accuracy against epsilon (:func:`robust_accuracy`): rows of panels are the attacks, columns the
    smoothed base models (model and sigma). In each panel, one line per n (colour) and P_a (line style), the
    certified accuracy of the same images (thick grey), and the undefended and AdvTrain models for reference
    (black and purple, dotted)."""
    smoothed = curves.dropna(subset=["sigma"])
    columns = list(smoothed[["model", "sigma"]].drop_duplicates().itertuples(index=False, name=None))
    ns = sorted(int(n) for n in smoothed.n.unique())
    pas = sorted(smoothed.pa.dropna().unique(), reverse=True)
    if len(pas) > len(PA_LINES):
        raise ValueError(f"at most {len(PA_LINES)} acceptance levels can be told apart, got {pas}")
    colour = {n: PALETTE[k % len(PALETTE)] for k, n in enumerate(ns)}
    style = dict(zip(pas, PA_LINES))
    fig, axes = plt.subplots(len(attacks), len(columns), figsize=(4.4 * len(columns), 3.3 * len(attacks)),
                             squeeze=False, sharex=True, sharey=True)
    for row, attack in zip(axes, attacks):
        mine = curves[curves.attack == attack]
        for ax, (model, sigma) in zip(row, columns):
            part = mine[(mine.model == model) & (mine.sigma == sigma)]
            for (n, pa), line in part.groupby(["n", "pa"]):
                ax.step(line.epsilon, line.robust, where="post", color=colour[int(n)], linestyle=style[pa],
                        label=f"$n$ = {int(n)}, $P_a$ = {pa:g}")
            sure = part.drop_duplicates("epsilon")
            ax.step(sure.epsilon, sure.certified, where="post", color="0.6", linewidth=3, alpha=0.7,
                    label="certified (CERTIFY)")
            for name, tint in (("standard", FAMILY_COLOURS["undefended"]), ("advtrain", FAMILY_COLOURS["advtrain"])):
                plain = mine[(mine.model == name) & mine.sigma.isna()]
                if len(plain):
                    ax.step(plain.epsilon, plain.robust, where="post", color=tint, linestyle=":",
                            label="undefended" if name == "standard" else "AdvTrain")
            title = "RS" if model == "standard" else "RandTrain/RS"
            ax.set_title(f"{attack}: {title} $\\sigma$ = {sigma:g}")
            ax.set(ylim=(-0.02, 1.02))
        row[0].set_ylabel("robust accuracy")
    for ax in axes[-1]:
        ax.set_xlabel("$\\ell_2$ radius $\\epsilon$")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(4, len(labels)),
               frameon=False)
    fig.tight_layout()
    return fig


def plot_queries(runs: pd.DataFrame, attacks: Sequence[str], budgets: Sequence[int], pas: Sequence[float]) -> plt.Figure:
    """Median over the attacked images of the best distortion the oracle accepted within each budget (the
    paper's protocol), one panel per attack (the classifiers without smoothing and those at the largest P_a,
    for legibility).

    ``runs`` holds one row per image as :func:`results` joins them, with the ``l2_at_<q>`` columns of
    :func:`attack_rows`; every image counts (inf until a query is accepted, 0 where the clean image was).
    """
    columns = [f"l2_at_{q}" for q in budgets]
    fig, axes = plt.subplots(1, len(attacks), figsize=(4.2 * len(attacks), 3.6), squeeze=False, sharey=True)
    for ax, attack in zip(axes[0], attacks):
        part = runs[runs.attack == attack]
        for k, (label, rows) in enumerate(part.groupby("target", sort=False)):
            if not pd.isna(rows.pa.iloc[0]) and rows.pa.iloc[0] != max(pas):
                continue
            ax.plot(budgets, rows[columns].median().to_numpy(), marker=".", color=f"C{k % 10}",
                    label=label.replace("sigma", "$\\sigma$"))
        ax.set(title=attack, xlabel="queries", ylabel="median best $\\ell_2$ so far", xscale="log")
    axes[0][-1].legend(fontsize="xx-small", loc="upper right")
    return fig


def plot_clean_votes(res: Results, values: Mapping[str, Any]) -> plt.Figure:
    """Why a reported distortion can be near zero: the clean images themselves under the smoothed oracles.

    Left: per sigma of the smoothed standard model, the distribution over the attacked images of the fraction
    pi_1(x_o) of wrong micro-decisions at the clean image (:func:`clean_votes_unit`). Right: the probability
    that x_o itself is accepted at least once within the budget, mean over images, for each n and P_a
    (:func:`acceptance`).
    """
    clean = res.acceptance[res.acceptance.model == "standard"]
    sigmas = sorted(clean.sigma.unique())
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.4))
    bins = np.linspace(0, 1, 21)
    for k, sigma in enumerate(sigmas):
        rate = clean[clean.sigma == sigma].drop_duplicates("idx").wrong_rate
        left.hist(rate, bins=bins, histtype="step", linewidth=1.5, color=SIGMA_COLOURS[k % len(SIGMA_COLOURS)],
                  label=f"$\\sigma$ = {sigma:g}")
    left.set(xlabel="wrong micro-decisions at $x_o$, $\\pi_1(x_o)$", ylabel="images")
    left.legend(fontsize="small")
    configurations = clean.groupby(["n", "pa", "sigma"]).within_budget.mean().reset_index()
    labels = [f"n={n:.0f}\n$P_a$={pa:g}" for n, pa in configurations[["n", "pa"]].drop_duplicates().to_numpy()]
    width = 0.8 / len(sigmas)
    for k, sigma in enumerate(sigmas):
        part = configurations[configurations.sigma == sigma]
        right.bar(np.arange(len(part)) + k * width, part.within_budget, width=width,
                  color=SIGMA_COLOURS[k % len(SIGMA_COLOURS)], label=f"$\\sigma$ = {sigma:g}")
    right.set_xticks(np.arange(len(labels)) + width * (len(sigmas) - 1) / 2, labels, fontsize="x-small")
    right.set(ylabel=f"mean P[$x_o$ accepted within {values['max_queries']} queries]", ylim=(0, 1))
    right.legend(fontsize="small")
    fig.tight_layout()
    return fig
