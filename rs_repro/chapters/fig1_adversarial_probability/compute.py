"""The compute half of the ``fig1_adversarial_probability`` chapter: Fig. 1 of the paper.

Maho, Furon and Le Merrer (ICASSP 2022, section 3.3 and Fig. 1) attack an image x_o white-box to get the
closest adversarial example x_a on the boundary of the base classifier f, then walk past it along the
ray ``x(t) = x_a + t u``, ``u = (x_a - x_o) / ||x_a - x_o||``. Under randomized smoothing the image stays
correctly classified well beyond x_a: the boundary of g_sigma lies further out (eq. (3): the boundary of
f curves away from x_o), and the probability that the random vote g_{sigma,n} is wrong rises from 0 to 1
over a transition that is wider for small n. Here, for each image, :func:`scan` draws, at every point of
the ray, a pool of noisy micro-decisions f(x(t) + sigma N_i) (:meth:`rs_repro.smoothing.Smooth.counts`).
Their class frequencies estimate the class probabilities of g_sigma (where another class overtakes the
label is the boundary of g_sigma); cut into consecutive groups of n draws they are independent votes of
g_{sigma,n}, whose wrong fraction estimates P[g_{sigma,n}(x(t)) != y] with a Clopper-Pearson band. The
votes of different n share the pool (they are correlated across n, never within one n).

The chapter's work is a plan of units (:mod:`rs_repro.pipeline.engine`, :func:`plan`): the standard model
(:func:`rs_repro.chapters.common.model_units`); the white-box attack's table (:func:`attack_unit`), whose
rows are the attacked images; then the scan of each attacked image (:func:`ray_unit`), a finer scan of the
image of the left panel, and the crossing alone at each further noise level on every image's ray
(:func:`sweep_unit`). The attack is batched over all the attacked images; each unit recomputes it from its
arguments (it is deterministic), once per process. The page half
(``rs_repro.chapters.fig1_adversarial_probability.page``) reads the crossings and the levels P_a off the
scans, gives the record of the claims chapter, the numbers of the prose and the figures.
"""

from __future__ import annotations

import functools
import itertools
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from rs_repro import data, seeds, theory
from rs_repro.attacks.minimal import MinimalAdversarial, minimal_l2
from rs_repro.chapters import common
from rs_repro.checks import device_rule, integer, real, require, rule_checker
from rs_repro.models import load_model
from rs_repro.pipeline.engine import Stage, Unit, fixed
from rs_repro.smoothing import Smooth, top_class

#: Largest number of input values (points x repeats x pixels) :func:`scan` gives one call of Smooth.counts.
SCAN_BLOCK_FLOATS = 2**22
#: The chapter's name, which is the cache namespace and the first label of every noise seed.
STEM = "fig1_adversarial_probability"
_MODULE = __name__


def check_parameters(values: Mapping[str, Any]) -> None:
    """The chapter's rules on its parameters (ValueError naming the first one broken), run before anything."""
    need = rule_checker(values)
    size = common.data_and_models(values)
    pool = common.pool_rule(values, "num_candidates", size)
    fits, accepted = common.count_rule(values["num_images"], pool, "candidate test images")
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
        images are only chosen).
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
    """The arguments that fix the attacked images and their x_a, shared by every unit of the chapter but the
    model's."""
    return {"dataset": values["dataset"], "data_dir": values["data_dir"],
            "model": common.model_specs(values, ("standard",))["standard"],
            "num_candidates": values["num_candidates"], "num_images": values["num_images"], "seed": values["seed"],
            "attack_steps": values["attack_steps"], "attack_init_norm": values["attack_init_norm"],
            "device": values["device"]}


@functools.lru_cache(maxsize=4)
def _chosen(dataset: str, data_dir: str, model: tuple[tuple[str, Any], ...], num_candidates: int, num_images: int,
            seed: int, device: str) -> Attacked:
    base, _ = load_model(dataset, dict(model), data_dir=data_dir or None, device=device)
    test = common.test_pool(dataset, data_dir, num_candidates, seed)
    chosen = common.correct_images(base, test.x.to(device), test.y, num_images)
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


def plan(values: Mapping[str, Any]) -> list[Stage]:
    """The chapter's work in three stages: ``models``, the standard model (``model-standard``); ``white-box
    attack``, the attack's table (``attack``), one row per attacked image; ``rays``, the scan of the k-th
    attacked image (``scan-image<k>``), the finer scan of the panel image (``panel-image<k>``) and the
    crossing at each further noise level s on every ray (``sweep-sigma<s>-image<k>``), for the images of the
    attack's table. Pure: nothing is read, trained or drawn here.

    The last stage raises ``ValueError`` when fewer candidates are correctly classified than ``panel_image``
    needs.
    """
    images = image_arguments(values)
    scans = {"sigma": values["sigma"], "ns": list(values["ns"]), "alpha": values["alpha"],
             "batch_size": values["batch_size"]}
    ts = np.linspace(values["t_start"], values["t_stop"], values["points"]).tolist()
    panel_ts = np.linspace(values["t_start"], values["t_stop"], values["panel_points"]).tolist()

    def rays(done: Mapping[str, pd.DataFrame]) -> list[Unit]:
        count = len(done["attack"])
        if count <= values["panel_image"]:
            raise ValueError(f"only {count} of the candidates are correctly classified; panel_image="
                             f"{values['panel_image']} needs more (raise num_candidates)")
        work = [Unit(f"scan-image{k}", f"{_MODULE}:ray_unit",
                     {**images, **scans, "position": k, "ts": ts, "pool": values["pool"]}) for k in range(count)]
        work.append(Unit(f"panel-image{values['panel_image']}", f"{_MODULE}:ray_unit",
                         {**images, **scans, "position": values["panel_image"], "ts": panel_ts,
                          "pool": values["panel_pool"]}))
        work += [Unit(f"sweep-sigma{level:g}-image{k}", f"{_MODULE}:sweep_unit",
                      {**images, "position": k, "sigma": level, "ts": _sweep_grid(values, level),
                       "pool": values["sweep_pool"], "batch_size": values["batch_size"]})
                 for level in values["sweep_sigmas"] for k in range(count)]
        return work

    models = common.model_units(values["dataset"], values["data_dir"] or None, {"standard": images["model"]})
    return [Stage("models", fixed(models)),
            Stage("white-box attack", fixed([Unit("attack", f"{_MODULE}:attack_unit", images)])),
            Stage("rays", rays)]
