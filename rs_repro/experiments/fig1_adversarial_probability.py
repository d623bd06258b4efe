"""The ``fig1_adversarial_probability`` chapter: Fig. 1 of the paper.

Maho, Furon and Le Merrer (ICASSP 2022, section 3.3 and Fig. 1) attack an image x_o white-box to get the
closest adversarial example x_a on the boundary of the base classifier f, then walk past it along the
ray ``x(t) = x_a + t u``, ``u = (x_a - x_o) / ||x_a - x_o||``. Under randomized smoothing the image stays
correctly classified well beyond x_a: the boundary of g_sigma lies further out (eq. (3): the boundary of
f curves away from x_o), and the probability that the random vote g_{sigma,n} is wrong rises from 0 to 1
over a transition that is wider for small n. Here, for each image:

* :func:`scan` draws, at every point of the ray, a pool of noisy micro-decisions f(x(t) + sigma N_i)
  (:meth:`rs_repro.smoothing.Smooth.counts`). Their class frequencies estimate the class probabilities of
  g_sigma (where another class overtakes the label is the boundary of g_sigma); cut into consecutive
  groups of n draws they are independent votes of g_{sigma,n}, whose wrong fraction estimates
  P[g_{sigma,n}(x(t)) != y] with a Clopper-Pearson band. The votes of different n share the pool (they
  are correlated across n, never within one n);
* :func:`first_reach` turns a curve into the distance past x_a at which it reaches a level: the boundary
  of g_sigma, or the levels P_a = 0.5 and 0.8 of eq. (4).

The chapter's work is a list of units (:mod:`rs_repro.pipeline.engine`, :func:`units`): the white-box attack's table
(:func:`attack_unit`), the scan of each attacked image (:func:`ray_unit`), a finer scan of the image of the
left panel, and the crossing alone at each further noise level on every image's ray (:func:`sweep_unit`).
The attack is batched over all the attacked images; each unit recomputes it from its arguments (it is
deterministic), once per process. :func:`results` joins the units' tables, :func:`summarize` gives the
record of the claims chapter, :func:`page` the numbers and sentences of the prose, :func:`plot_probability`
and :func:`plot_crossing_sigma` the two figures.
"""

from __future__ import annotations

import functools
import itertools
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn

from rs_repro import data, seeds, theory
from rs_repro.attacks.minimal import MinimalAdversarial, minimal_l2
from rs_repro.checks import device_rule, integer, real, require, rule_checker
from rs_repro.experiments.common import count_rule, data_and_models
from rs_repro.models import load_model, model_spec
from rs_repro.pipeline.engine import Unit
from rs_repro.pipeline.runtime import compute_threads
from rs_repro.report.measurements import BoundaryPush, Crossing
from rs_repro.report.paper import FIG1_READINGS
from rs_repro.report.prose import counted
from rs_repro.smoothing import Smooth, top_class

#: Largest number of input values (points x repeats x pixels) :func:`scan` gives one call of Smooth.counts.
SCAN_BLOCK_FLOATS = 2**22
#: The chapter's name, which is the cache namespace and the first label of every noise seed.
STEM = __name__.rpartition(".")[2]
_MODULE = __name__


def check_parameters(values: Mapping[str, Any]) -> None:
    """The chapter's rules on its parameters (ValueError naming the first one broken), run before anything."""
    need = rule_checker(values)
    size = data_and_models(values)
    fits, accepted = count_rule(values["num_candidates"], size, f"test images of {values['dataset']}",
                                zero="the whole test split")
    need(fits, "num_candidates", accepted)
    fits, accepted = count_rule(values["num_images"], values["num_candidates"] or size, "candidate test images")
    need(fits, "num_images", accepted)
    need(0 <= values["panel_image"] < values["num_images"], "panel_image",
         f"a position in [0, num_images) = [0, {values['num_images']})")
    need(values["sigma"] > 0, "sigma", "a noise level > 0")
    ns = values["ns"]
    need(bool(ns) and all(n >= 1 for n in ns), "ns", "a non-empty list of vote sizes >= 1")
    need(bool(values["pas"]) and all(0 < p <= 1 for p in values["pas"]), "pas", "a non-empty list of levels in (0, 1]")
    need(values["t_stop"] > values["t_start"], "t_stop", f"a distance > t_start = {values['t_start']:g}")
    for name in ("points", "panel_points", "sweep_points"):
        need(values[name] >= 2, name, "at least 2 points on the ray")
    group = math.gcd(*ns)
    for name in ("pool", "panel_pool"):
        need(values[name] >= max(ns) and values[name] % group == 0, name,
             f"an integer >= max(ns) = {max(ns)} and a multiple of gcd(ns) = {group}")
    need(values["sweep_pool"] >= 1, "sweep_pool", "at least 1")
    need(0 < values["alpha"] < 1, "alpha", "a level in the open interval (0, 1)")
    sweep = values["sweep_sigmas"]
    need(bool(sweep) and all(s > 0 for s in sweep) and len(set(sweep)) == len(sweep), "sweep_sigmas",
         "a non-empty list of distinct noise levels > 0 (the page compares the crossing across them)")
    need(values["sigma"] not in sweep, "sweep_sigmas",
         f"noise levels other than the main sigma = {values['sigma']:g} (it is measured by the main scan)")
    need(values["sweep_span"] > 0, "sweep_span", "a span > 0")
    need(values["attack_steps"] >= 1, "attack_steps", "at least 1")
    need(values["attack_init_norm"] > 0, "attack_init_norm", "a norm > 0")
    need(values["batch_size"] >= 1, "batch_size", "at least 1")
    fits, accepted = device_rule(values["device"])
    need(fits, "device", accepted)


# ---------------------------------------------------------------------------------------------------
# The white-box attack and the scan along a ray
# ---------------------------------------------------------------------------------------------------

@dataclass
class Scan:
    """What :func:`scan` measures along the ray of one image.

    Attributes
    ----------
    profile : pandas.DataFrame
        One row per point: ``t, draws, p_label`` (frequency of the label among the draws), ``p_other``
        (largest frequency of another class), ``other_class`` (that class).
    votes : pandas.DataFrame
        One row per point and n: ``t, n, votes, wrong`` (votes whose majority is not the label),
        ``p`` (= wrong / votes), ``lower, upper`` (two-sided Clopper-Pearson band at level 1 - alpha).
    """

    profile: pd.DataFrame
    votes: pd.DataFrame


def correct_images(model: nn.Module, x: torch.Tensor, y: torch.Tensor, count: int) -> torch.Tensor:
    """Positions (int64 [<= count]) of the first ``count`` images of ``x`` [B, C, H, W] that f classifies as ``y``."""
    integer("count", count, 1)
    with torch.inference_mode():
        right = model(x).argmax(1).cpu() == y.cpu()
    return right.nonzero().squeeze(1)[:count]


def directions(x_o: torch.Tensor, attack: MinimalAdversarial) -> torch.Tensor:
    """Unit directions ``u = (x_a - x_o) / ||x_a - x_o||`` [B, C, H, W] of the rays of Fig. 1."""
    if not bool(attack.success.all()):
        raise ValueError(f"every attack must have succeeded to define a ray; images "
                         f"{(~attack.success).nonzero().flatten().tolist()} have no adversarial example")
    delta = attack.x_a - x_o
    return delta / delta.flatten(1).norm(dim=1).view(-1, *([1] * (x_o.dim() - 1)))


def box_exit(x_a: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Largest t >= 0 (float64 [B]) with ``x_a + t u`` inside the pixel box [0, 1]^d, per image.

    The scan does not clip the ray (nor does smoothing clip its noisy inputs); this says how far past x_a
    the points remain images.
    """
    a, v = x_a.flatten(1).double(), u.flatten(1).double()
    room = torch.where(v > 0, (1 - a) / v, torch.where(v < 0, -a / v, torch.full_like(a, math.inf)))
    return room.amin(dim=1).clamp_min(0).cpu()


def attack_table(x_o: torch.Tensor, y: torch.Tensor, index: torch.Tensor, attack: MinimalAdversarial,
                 model: nn.Module) -> pd.DataFrame:
    """One row per attacked image: where x_a is and what f says there.

    Returns
    -------
    pandas.DataFrame
        ``unit`` (position in the batch), ``index`` (in the test split), ``label``, ``distance``
        (||x_a - x_o||, the attack's float32 value), ``label_a`` (f(x_a)), ``margin_a`` (logit of f(x_a)
        minus the label's: >= 0, small on the boundary), ``box_exit`` (:func:`box_exit`).
    """
    with torch.inference_mode():
        logits = model(attack.x_a).cpu()
    label_a = logits.argmax(1)
    margin = logits.gather(1, label_a.view(-1, 1)) - logits.gather(1, y.cpu().view(-1, 1))
    return pd.DataFrame({"unit": np.arange(len(y)), "index": index.cpu().numpy(), "label": y.cpu().numpy(),
                         "distance": attack.distance.numpy(), "label_a": label_a.numpy(),
                         "margin_a": margin.squeeze(1).double().numpy(),
                         "box_exit": box_exit(attack.x_a, directions(x_o, attack)).numpy()})


def scan(smooth: Smooth, x_a: torch.Tensor, u: torch.Tensor, label: int, ts: Sequence[float], ns: Sequence[int],
         pool: int, *, generator: torch.Generator, alpha: float = 0.05, batch_size: int = 10_000) -> Scan:
    """Class probabilities of g_sigma and P[g_{sigma,n} != y] along ``x(t) = x_a + t u`` (Fig. 1).

    Parameters
    ----------
    smooth : Smooth
        The smoothed base classifier (sigma, number of classes).
    x_a : torch.Tensor, shape [1, C, H, W]
        The start of the ray, on the boundary of f.
    u : torch.Tensor, shape [1, C, H, W]
        Unit direction of the ray (away from x_o).
    label : int
        The true label y of x_o.
    ts : sequence of float
        Increasing distances t past x_a (negative: between x_o and x_a).
    ns : sequence of int
        Votes sizes n of g_{sigma,n} (the paper: 5, 10, 50).
    pool : int
        Noisy micro-decisions per point; a multiple of gcd(ns), at least max(ns). n gets
        ``pool // n`` independent votes.
    generator : torch.Generator
        Source of every noise draw, on the device of ``x_a``; consumed point after point.
    alpha : float
        The bands are two-sided Clopper-Pearson intervals at level 1 - alpha.
    batch_size : int
        Largest batch of noisy inputs per forward pass.

    Returns
    -------
    Scan

    Raises
    ------
    ValueError
        ``ts``, ``ns``, ``pool`` or ``alpha`` out of range (the message names it).

    Notes
    -----
    A vote is the most frequent class of its n draws, ties broken at random from ``generator`` (the rule of
    :meth:`rs_repro.smoothing.Smooth.vote`); it is wrong when that class is not ``label``.
    """
    require(len(ts) >= 2 and all(isinstance(t, numbers.Real) and math.isfinite(t) for t in ts)
            and all(a < b for a, b in itertools.pairwise(ts)), "ts", list(ts),
            "at least two finite, strictly increasing distances")
    require(len(ns) > 0 and all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1 for n in ns),
            "ns", list(ns), "a non-empty list of integers >= 1")
    group = math.gcd(*ns)
    integer("pool", pool, max(ns))
    require(pool % group == 0, "pool", pool, f"a multiple of gcd(ns) = {group}")
    real("alpha", alpha, 0, 1)
    groups = pool // group
    # Points per call of Smooth.counts: as many as fit in SCAN_BLOCK_FLOATS once repeated ``groups`` times
    # (small inputs: few large calls), at least one (large inputs: one point, repeated as a view, no copy).
    block = max(1, SCAN_BLOCK_FLOATS // (groups * x_a[0].numel()))
    all_counts = []
    for start in range(0, len(ts), block):
        t = torch.tensor(ts[start:start + block], dtype=x_a.dtype, device=x_a.device).view(-1, 1, 1, 1)
        points = (x_a + t * u).unsqueeze(1).expand(len(t), groups, *x_a.shape[1:]).reshape(-1, *x_a.shape[1:])
        all_counts += smooth.counts(points, group, batch_size, generator=generator).cpu().view(len(t), groups, -1)
    profile, votes = [], []
    for t, counts in zip(ts, all_counts, strict=True):  # counts: [groups, K], the draws of one point
        total = counts.sum(0).double() / pool
        p_label = float(total[label])
        total[label] = -1.0
        profile.append({"t": float(t), "draws": pool, "p_label": p_label, "p_other": float(total.max()),
                        "other_class": int(total.argmax())})
        for n in ns:
            per_vote = n // group
            voted = counts[: groups // per_vote * per_vote].view(-1, per_vote, counts.shape[1]).sum(1)
            wrong = int((top_class(voted.to(generator.device), generator).cpu() != label).sum())
            votes.append({"t": float(t), "n": int(n), "votes": len(voted), "wrong": wrong})
    votes_table = pd.DataFrame(votes)
    lower, upper = theory.clopper_pearson(votes_table.wrong.to_numpy(), votes_table.votes.to_numpy(), alpha)
    votes_table = votes_table.assign(p=votes_table.wrong / votes_table.votes, lower=lower, upper=upper)
    return Scan(profile=pd.DataFrame(profile), votes=votes_table)


def first_reach(t: Sequence[float], values: Sequence[float], level: float) -> float:
    """First distance at which a curve sampled at increasing ``t`` reaches ``level``, linearly interpolated.

    Returns NaN when the curve is at or above ``level`` already at the first point (reached before the
    scan) or never reaches it (after the scan): such an image is censored, not placed at an end.
    """
    t, values = np.asarray(t, dtype=float), np.asarray(values, dtype=float)
    if t.shape != values.shape or t.ndim != 1 or len(t) < 2:
        raise ValueError(f"t and values must be 1-D of the same length >= 2, got shapes {t.shape} and {values.shape}")
    reached = np.nonzero(values >= level)[0]
    if len(reached) == 0 or reached[0] == 0:
        return math.nan
    k = int(reached[0])
    return float(t[k - 1] + (t[k] - t[k - 1]) * (level - values[k - 1]) / (values[k] - values[k - 1]))


def crossing(profile: pd.DataFrame) -> float:
    """Distance past x_a where another class overtakes the label: the boundary of g_sigma on the ray."""
    return first_reach(profile.t, profile.p_other - profile.p_label, 0.0)


def distances_at(votes: pd.DataFrame, pas: Sequence[float]) -> pd.DataFrame:
    """Distance past x_a where the estimated P[g_{sigma,n} != y] first reaches each level P_a, per n.

    ``votes`` holds the rows of one or several units (column ``unit``, optional). Returns columns
    ``[unit,] n, pa, distance`` (NaN when censored, see :func:`first_reach`).
    """
    if any(isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 < p <= 1 for p in pas):
        raise ValueError(f"pas must be levels in (0, 1], got {list(pas)!r}")
    keys = ["unit", "n"] if "unit" in votes else ["n"]
    rows = []
    for key, part in votes.sort_values("t").groupby(keys, sort=True):
        ids = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        rows += [{**ids, "pa": float(pa), "distance": first_reach(part.t, part.p, pa)} for pa in pas]
    return pd.DataFrame(rows)


def crossing_summary(crossings: pd.DataFrame) -> pd.DataFrame:
    """Distribution of the crossing distance over images, per noise level.

    Parameters
    ----------
    crossings : pandas.DataFrame
        Columns ``sigma, crossing`` (one row per image and sigma; NaN = censored, see :func:`first_reach`).

    Returns
    -------
    pandas.DataFrame
        One row per sigma: ``images``, ``censored``, ``median`` and ``median_sigma`` (in units of sigma) of
        the finite crossings, ``beyond`` (how many are past x_a, > 0) and ``p_beyond``, the one-sided
        sign-test p-value of "the crossing is past x_a more often than not" (binomial, 1/2).
    """
    rows = []
    for sigma, part in crossings.groupby("sigma", sort=True):
        finite = part.crossing[np.isfinite(part.crossing)]
        beyond = int((finite > 0).sum())
        rows.append({"sigma": float(sigma), "images": len(part), "censored": len(part) - len(finite),
                     "median": float(finite.median()) if len(finite) else math.nan,
                     "median_sigma": float(finite.median() / sigma) if len(finite) else math.nan,
                     "beyond": beyond,
                     "p_beyond": float(stats.binomtest(beyond, len(finite), 0.5, alternative="greater").pvalue)
                     if len(finite) else math.nan})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------
# Work units
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Attacked:
    """The attacked images of the chapter and their white-box adversarial examples (:func:`attacked`).

    Attributes
    ----------
    model : torch.nn.Module
        The standard base model f, on the chapter's device.
    x_o : torch.Tensor, shape [B, C, H, W]
        The first ``num_images`` candidates f classifies correctly, on the device.
    y : torch.Tensor, shape [B]
        Their labels, on the device.
    index : torch.Tensor, shape [B]
        Their positions in the test split.
    attack : MinimalAdversarial or None
        :func:`rs_repro.attacks.minimal.minimal_l2` on all of them at once (``None`` while the
        images are only chosen, as :func:`units` does).
    u : torch.Tensor or None, shape [B, C, H, W]
        The directions of their rays (:func:`directions`).
    """

    model: nn.Module
    x_o: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor
    attack: MinimalAdversarial | None = None
    u: torch.Tensor | None = None


def image_arguments(values: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments that fix the attacked images and their x_a, shared by every unit of the chapter."""
    return {"dataset": values["dataset"], "data_dir": values["data_dir"],
            "model": model_spec("standard", weights=values["standard_weights"], seed=values["seed"]),
            "num_candidates": values["num_candidates"], "num_images": values["num_images"], "seed": values["seed"],
            "attack_steps": values["attack_steps"], "attack_init_norm": values["attack_init_norm"],
            "device": values["device"]}


@functools.lru_cache(maxsize=4)
def _chosen(dataset: str, data_dir: str, model: tuple[tuple[str, Any], ...], num_candidates: int, num_images: int,
            seed: int, device: str) -> Attacked:
    base, _ = load_model(dataset, dict(model), data_dir=data_dir or None, device=device)
    test = data.load_dataset(dataset, "test", data_dir=data_dir or None, n=num_candidates or None, seed=seed)
    chosen = correct_images(base, test.x.to(device), test.y, num_images)
    return Attacked(base, test.x[chosen].to(device), test.y[chosen].to(device), test.index[chosen])


def _images_key(images: Mapping[str, Any]) -> tuple[Any, ...]:
    """The arguments that choose the images, from those of :func:`image_arguments` (hashable)."""
    return (images["dataset"], images["data_dir"], tuple(sorted(images["model"].items())), images["num_candidates"],
            images["num_images"], images["seed"], images["device"])


@functools.lru_cache(maxsize=4)
def _attacked(key: tuple[Any, ...], attack_steps: int, attack_init_norm: float) -> Attacked:
    images = _chosen(*key)
    attack = minimal_l2(images.model, images.x_o, images.y, steps=attack_steps, init_norm=attack_init_norm)
    return Attacked(images.model, images.x_o, images.y, images.index, attack, directions(images.x_o, attack))


def attacked(**images: Any) -> Attacked:
    """The attacked images and their x_a, from the arguments :func:`image_arguments` gives; memoised per
    process, so the units of one process run the attack once.

    The images are the first ``num_images`` of a seeded subset of ``num_candidates`` test images (0: all)
    that the standard model classifies correctly; the attack (:func:`rs_repro.attacks.minimal.minimal_l2`, no
    random draw) is batched over all of them, so every unit finds the same x_a.
    """
    return _attacked(_images_key(images), images["attack_steps"], images["attack_init_norm"])


def attack_unit(**images: Any) -> pd.DataFrame:
    """The white-box attack's table (:func:`attack_table`); ``images`` as :func:`image_arguments` gives them."""
    found = attacked(**images)
    table = attack_table(found.x_o, found.y, found.index, found.attack, found.model)
    return table.astype({"distance": "float64"})  # float32 would be written to the cache's CSV rounded


def ray_unit(*, position: int, sigma: float, ts: list[float], ns: list[int], pool: int, alpha: float,
             batch_size: int, **images: Any) -> pd.DataFrame:
    """The :func:`scan` of the attacked image at ``position`` (its profile and votes rows, column ``part``).

    Its noise comes from ``seeds.generator(seed, STEM, <test index of the image>, pool)``.
    """
    found = attacked(**images)
    k, device = position, images["device"]
    generator = seeds.generator(images["seed"], STEM, int(found.index[k]), pool, device=device)
    done = scan(Smooth(found.model, data.num_classes(images["dataset"]), sigma), found.attack.x_a[k:k + 1],
                found.u[k:k + 1], int(found.y[k]), ts, ns, pool, generator=generator, alpha=alpha,
                batch_size=batch_size)
    return pd.concat([done.profile.assign(part="profile"), done.votes.assign(part="votes")],
                     ignore_index=True).assign(unit=k)


def sweep_unit(*, position: int, sigma: float, ts: list[float], pool: int, batch_size: int,
               **images: Any) -> pd.DataFrame:
    """The ``profile`` of the :func:`scan` of g_sigma (column ``unit``) on the ray of the attacked image at
    ``position``, at a further noise level ``sigma``; noise from ``seeds.generator(seed, STEM, "sweep", sigma,
    <test index of the image>)``."""
    found = attacked(**images)
    k, device = position, images["device"]
    generator = seeds.generator(images["seed"], STEM, "sweep", sigma, int(found.index[k]), device=device)
    done = scan(Smooth(found.model, data.num_classes(images["dataset"]), sigma), found.attack.x_a[k:k + 1],
                found.u[k:k + 1], int(found.y[k]), ts, [1], pool, generator=generator, batch_size=batch_size)
    return done.profile.assign(unit=k)


def _sweep_grid(values: Mapping[str, Any], level: float) -> list[float]:
    """The points t of the rays at the further noise level ``level``: ``level * [-sweep_span, sweep_span]``."""
    return (level * np.linspace(-values["sweep_span"], values["sweep_span"], values["sweep_points"])).tolist()


def units(values: Mapping[str, Any]) -> list[Unit]:
    """The chapter's work: ``attack`` (the attack's table), ``scan-image<k>`` (the scan of the k-th attacked
    image), ``panel-image<k>`` (the finer scan of the panel image), ``sweep-sigma<s>-image<k>`` (the crossing
    at each further noise level s on every ray).

    The standard model is trained here when missing, and the attacked images chosen, before any unit runs.

    Raises
    ------
    ValueError
        Fewer correctly classified candidates than ``panel_image`` needs.
    """
    images = image_arguments(values)
    with compute_threads():  # as in the units, which choose the images again (rs_repro.pipeline.runtime)
        count = len(_chosen(*_images_key(images)).y)
    if count <= values["panel_image"]:
        raise ValueError(f"only {count} of the candidates are correctly classified; panel_image="
                         f"{values['panel_image']} needs more (raise num_candidates)")
    scans = {"sigma": values["sigma"], "ns": list(values["ns"]), "alpha": values["alpha"],
             "batch_size": values["batch_size"]}
    ts = np.linspace(values["t_start"], values["t_stop"], values["points"]).tolist()
    panel_ts = np.linspace(values["t_start"], values["t_stop"], values["panel_points"]).tolist()
    work = [Unit("attack", f"{_MODULE}:attack_unit", images)]
    work += [Unit(f"scan-image{k}", f"{_MODULE}:ray_unit",
                  {**images, **scans, "position": k, "ts": ts, "pool": values["pool"]}) for k in range(count)]
    work.append(Unit(f"panel-image{values['panel_image']}", f"{_MODULE}:ray_unit",
                     {**images, **scans, "position": values["panel_image"], "ts": panel_ts,
                      "pool": values["panel_pool"]}))
    work += [Unit(f"sweep-sigma{level:g}-image{k}", f"{_MODULE}:sweep_unit",
                  {**images, "position": k, "sigma": level, "ts": _sweep_grid(values, level),
                   "pool": values["sweep_pool"], "batch_size": values["batch_size"]})
             for level in values["sweep_sigmas"] for k in range(count)]
    return work


# ---------------------------------------------------------------------------------------------------
# Results, record, page
# ---------------------------------------------------------------------------------------------------

_PROFILE = {"t": float, "draws": int, "p_label": float, "p_other": float, "other_class": int, "unit": int}
_VOTES = {"t": float, "n": int, "votes": int, "wrong": int, "p": float, "lower": float, "upper": float,
          "unit": int}


def ray_scan(table: pd.DataFrame) -> Scan:
    """The :class:`Scan` of a :func:`ray_unit` table, each part with its column ``unit``."""
    parts = {name: table[table.part == name][list(columns)].astype(columns).reset_index(drop=True)
             for name, columns in (("profile", _PROFILE), ("votes", _VOTES))}
    return Scan(**parts)


@dataclass(frozen=True)
class Results:
    """The chapter's tables, joined from its units' tables (:func:`results`).

    Attributes
    ----------
    attacked : pandas.DataFrame
        :func:`attack_table`: one row per attacked image.
    profile, votes : pandas.DataFrame
        The main scans of all attacked images (:class:`Scan`, column ``unit``: position among them).
    panel : Scan
        The finer scan of the panel image.
    crossings : pandas.Series
        Position -> distance past x_a where the boundary of g_sigma is crossed (:func:`crossing`).
    at_pa : pandas.DataFrame
        :func:`distances_at` of ``votes``: ``unit, n, pa, distance``.
    medians : pandas.Series
        (n, pa) -> median over the images of ``at_pa.distance``.
    panel_at : pandas.Series
        (n, pa) -> the same distance on the panel scan.
    transitions : pandas.DataFrame
        One row per n: the medians, the panel image's distances and the width of the transition.
    located : pandas.DataFrame
        ``sigma, unit, crossing``: the crossings at the main noise level and at each further one.
    by_sigma : pandas.DataFrame
        :func:`crossing_summary` of ``located``, one row per noise level, increasing.
    """

    attacked: pd.DataFrame
    profile: pd.DataFrame
    votes: pd.DataFrame
    panel: Scan
    crossings: pd.Series
    at_pa: pd.DataFrame
    medians: pd.Series
    panel_at: pd.Series
    transitions: pd.DataFrame
    located: pd.DataFrame
    by_sigma: pd.DataFrame


def results(tables: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> Results:
    """The chapter's tables from the tables of :func:`units` (``tables`` maps a unit id to its table)."""
    ns, pas, sigma = values["ns"], values["pas"], values["sigma"]
    attacked_rows = tables["attack"]
    count = len(attacked_rows)
    main = [ray_scan(tables[f"scan-image{k}"]) for k in range(count)]
    profile = pd.concat([s.profile for s in main], ignore_index=True)
    votes = pd.concat([s.votes for s in main], ignore_index=True)
    panel = ray_scan(tables[f"panel-image{values['panel_image']}"])
    panel = Scan(panel.profile.drop(columns="unit"), panel.votes.drop(columns="unit"))
    crossings = pd.Series({unit: crossing(part) for unit, part in profile.groupby("unit")})
    at_pa = distances_at(votes, pas)
    medians = at_pa.groupby(["n", "pa"]).distance.median()
    panel_at = distances_at(panel.votes, pas).set_index(["n", "pa"]).distance
    width = {n: medians[n, max(pas)] - medians[n, min(pas)] for n in ns}
    transitions = pd.DataFrame([{"n": n, **{f"distance at Pa={pa:g} (median)": medians[n, pa] for pa in pas},
                                 **{f"panel image, Pa={pa:g}": panel_at[n, pa] for pa in pas},
                                 f"width Pa {min(pas):g} -> {max(pas):g}": width[n]} for n in ns])
    located = [pd.DataFrame({"sigma": sigma, "unit": crossings.index, "crossing": crossings.to_numpy()})]
    for level in values["sweep_sigmas"]:
        located.append(pd.DataFrame([{"sigma": level, "unit": k,
                                      "crossing": crossing(tables[f"sweep-sigma{level:g}-image{k}"])}
                                     for k in range(count)]))
    located = pd.concat(located, ignore_index=True)
    return Results(attacked_rows, profile, votes, panel, crossings, at_pa, medians, panel_at, transitions, located,
                   crossing_summary(located))


def _censored_crossing(profile: pd.DataFrame) -> float:
    """:func:`crossing`, with a crossing outside the scanned range placed on its side: -inf when another class
    already leads at the first point of the ray, inf when the label leads at every point."""
    found = crossing(profile)
    if not math.isnan(found):
        return found
    return -math.inf if profile.p_other.iloc[0] >= profile.p_label.iloc[0] else math.inf


def _width(low: float, high: float) -> float | None:
    """The width of a transition first reaching its lower level at ``low`` and its upper one at ``high`` (NaN:
    censored, :func:`first_reach`): None without ``low``, inf without ``high`` only (it lies past the scan)."""
    if math.isnan(low):
        return None
    return math.inf if math.isnan(high) else float(high - low)


def summarize(tables: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> BoundaryPush:
    """The record the claims chapter reads (claim 7: RS pushes the boundary; the transition of
    P[g_{sigma,n} != y] from 0 to 1 is wider for small n), image by image, from the tables of :func:`units`.

    Distances are l2, in [0, 1] pixel units, along the ray past the white-box x_a (t = 0); the crossing at
    the main noise level comes first in ``crossings``, then those of ``sweep_sigmas`` in increasing order.
    """
    res = results(tables, values)
    ns, pas, sigma = values["ns"], values["pas"], values["sigma"]
    count = len(res.attacked)
    distances = {float(sigma): [_censored_crossing(part) for _, part in res.profile.groupby("unit", sort=True)]}
    for level in sorted(values["sweep_sigmas"]):
        distances.setdefault(float(level), [_censored_crossing(tables[f"sweep-sigma{level:g}-image{k}"])
                                            for k in range(count)])
    reach = res.at_pa.set_index(["unit", "n", "pa"]).distance
    low, high = float(min(pas)), float(max(pas))
    return BoundaryPush(
        dataset=values["dataset"], sigma=float(sigma), ns=[int(n) for n in ns], pas=[float(p) for p in pas],
        num_images=count, attack_distance_median=float(res.attacked.distance.median()),
        widths={int(n): [_width(reach[k, n, low], reach[k, n, high]) for k in range(count)] for n in ns},
        crossings=[Crossing(sigma=level, distances=found) for level, found in distances.items()])


def _sign(p_value: float) -> str:
    return ("significantly more often than before it" if p_value < 0.05
            else "not significantly more often than before it")


def page(res: Results, values: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers and phrases the chapter's prose reads, by glue name."""
    ns, pas, sigma = values["ns"], values["pas"], values["sigma"]
    low, high = min(pas), max(pas)
    attacked_rows, by_sigma = res.attacked, res.by_sigma
    dims = math.prod(data.input_shape(values["dataset"]))
    main = by_sigma[by_sigma.sigma == sigma].iloc[0]
    finite = res.crossings[np.isfinite(res.crossings)]
    width = {n: res.medians[n, high] - res.medians[n, low] for n in ns}
    narrows = all(a > b for a, b in itertools.pairwise(width.values()))
    first = by_sigma.iloc[0]
    if first.p_beyond < 0.05:
        size = "a fraction of σ" if abs(first.median_sigma) < 1 else "several σ"
        push = ("Smoothing does push the boundary outwards past the closest point of the boundary of f, as eq. (3) "
                f"predicts for a boundary that curves away from x_o, by {size} at the smallest noise level")
    else:
        push = "No consistent outward push of the boundary past the closest point of the boundary of f is seen"
    readings = FIG1_READINGS
    return {
        "num_images": len(attacked_rows), "dataset": values["dataset"], "sigma": float(sigma),
        "attack_median": float(attacked_rows.distance.median()), "attack_min": float(attacked_rows.distance.min()),
        "attack_max": float(attacked_rows.distance.max()), "margin_max": float(attacked_rows.margin_a.max()),
        "box_exit_median": float(attacked_rows.box_exit.median()), "noise_norm": float(sigma * math.sqrt(dims)),
        "crossing_median": float(main["median"]), "crossing_median_sigma": float(main.median_sigma),
        "crossing_min": float(finite.min()), "crossing_max": float(finite.max()),
        "panel_crossing": float(crossing(res.panel.profile)),
        "beyond": int(main.beyond), "located": int(main.images - main.censored),
        "censored": counted(int(main.censored) + int((~np.isfinite(res.at_pa.distance)).sum()), "measurement"),
        "main_p": float(main.p_beyond), "main_sign": _sign(main.p_beyond),
        "pa_low": f"{low:g}", "pa_high": f"{high:g}",
        "at_low": ", ".join(f"{res.medians[n, low]:.3f} (n = {n})" for n in ns),
        "at_high": ", ".join(f"{res.medians[n, high]:.3f} (n = {n})" for n in ns),
        "widths": ", ".join(f"{width[n]:.3f} (n = {n})" for n in ns),
        "panel_at_high": ", ".join(f"{res.panel_at[n, high]:.3f} (n = {n})" for n in ns),
        "width_trend": "narrows steadily as n grows" if narrows else "does not narrow steadily as n grows",
        "paper_crossing": float(readings["crossing"]), "paper_sigma": float(readings["sigma"]),
        "paper_crossing_sigma": float(readings["crossing"] / readings["sigma"]),
        "paper_at_high": ", ".join(f"{d:g} (n = {n})" for n, d in readings["distance_at_0.8"].items()),
        "paper_at_one": ", ".join(f"{d:g} (n = {n})" for n, d in readings["distance_at_1"].items()),
        "directions": dims - 1, "paper_directions": math.prod(data.input_shape("imagenet")) - 1,
        "sweep_sigmas": ", ".join(f"{v:g}" for v in values["sweep_sigmas"]),
        "sweep_span": float(values["sweep_span"]),
        "sweep_medians": ", ".join(f"{m:.2f} σ (σ = {v:g})" for v, m in zip(by_sigma.sigma, by_sigma.median_sigma)),
        "sweep_beyond": ", ".join(f"{b} of {i - c} (σ = {v:g})" for v, b, i, c in
                                  zip(by_sigma.sigma, by_sigma.beyond, by_sigma.images, by_sigma.censored)),
        "smallest_sigma": float(first.sigma), "smallest_median": float(first["median"]),
        "smallest_p": float(first.p_beyond), "smallest_sign": _sign(first.p_beyond), "push_conclusion": push,
    }


# ---------------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------------

def plot_probability(res: Results, values: Mapping[str, Any]) -> plt.Figure:
    """Fig. 1: P[g_{sigma,n} != y] along the ray of the panel image (left), and over all attacked images
    the distances past x_a where the boundary of g_sigma is crossed and each level P_a reached (right)."""
    ns, pas, alpha = values["ns"], values["pas"], values["alpha"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [3, 2]},
                                   layout="constrained")
    prof = res.panel.profile
    ax1.plot(prof.t, 1 - prof.p_label, color="grey", lw=1, label="one micro-decision, $1 - P[f(x+\\sigma N) = y]$")
    for k, n in enumerate(ns):
        part = res.panel.votes[res.panel.votes.n == n]
        ax1.plot(part.t, part.p, color=f"C{k}", lw=1.6, label=f"n = {n} ({int(part.votes.iloc[0])} votes per point)")
        ax1.fill_between(part.t, part.lower, part.upper, color=f"C{k}", alpha=0.2, lw=0)
    for pa in pas:
        ax1.axhline(pa, color="black", lw=0.8, ls=":")
    ax1.axvline(0, color="grey", lw=1, ls="-.", label="$x_a$, boundary of $f$")
    ax1.axvline(crossing(prof), color="black", lw=1, ls="--", label="boundary of $g_\\sigma$ (Monte Carlo)")
    panel_index = int(res.attacked["index"].iloc[values["panel_image"]])
    ax1.set(xlabel="distance past $x_a$ along $x_a - x_o$ ($\\ell_2$)", ylabel="$P[g_{\\sigma,n}(x) \\neq y]$",
            title=f"one image (test index {panel_index}), $\\sigma$ = {values['sigma']:g}, "
                  f"{int((1 - alpha) * 100)}% bands")
    ax1.legend(fontsize="x-small", loc="lower right")

    at_pa = res.at_pa
    rows = [("boundary of $g_\\sigma$", res.crossings.to_numpy(), "black", "o")]
    rows += [(f"n = {n}, $P_a$ = {pa:g}", at_pa[(at_pa.n == n) & (at_pa.pa == pa)].distance.to_numpy(), f"C{k}",
              "o" if pa == min(pas) else "x") for k, n in enumerate(ns) for pa in pas]
    for r, (_, found, color, marker) in enumerate(rows):
        found = np.sort(found[np.isfinite(found)])
        offsets = ((np.arange(len(found)) % 5) - 2) * 0.07  # a fixed spread, so that equal values stay visible
        ax2.scatter(found, r + offsets, s=12, color=color, alpha=0.7, marker=marker)
        if len(found):
            ax2.plot([np.median(found)] * 2, [r - 0.3, r + 0.3], color=color, lw=2)
    ax2.axvline(0, color="grey", lw=1, ls="-.")
    ax2.set_yticks(range(len(rows)), [row[0] for row in rows])
    ax2.invert_yaxis()
    ax2.set(xlabel="distance past $x_a$ ($\\ell_2$)", title=f"{len(res.crossings)} images (bar: median)")
    return fig


def plot_crossing_sigma(res: Results) -> plt.Figure:
    """The crossing past x_a in units of sigma on every ray, at each noise level (bar: median)."""
    fig, ax = plt.subplots(figsize=(6, 3.4), layout="constrained")
    for r, (level, part) in enumerate(res.located.groupby("sigma", sort=True)):
        found = np.sort((part.crossing / level).to_numpy())
        found = found[np.isfinite(found)]
        ax.scatter(r + ((np.arange(len(found)) % 5) - 2) * 0.06, found, s=12, color="C0", alpha=0.7)
        ax.plot([r - 0.3, r + 0.3], [np.median(found)] * 2, color="black", lw=2)
    ax.axhline(0, color="grey", lw=1, ls="-.")
    ax.set_xticks(range(res.by_sigma.shape[0]), [f"{v:g}" for v in res.by_sigma.sigma])
    ax.set(xlabel="$\\sigma$", ylabel="crossing past $x_a$ / $\\sigma$",
           title="boundary of $g_\\sigma$ on the rays of the attacked images (bar: median)")
    return fig
