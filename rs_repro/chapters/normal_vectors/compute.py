"""The compute half of the ``normal_vectors`` chapter: claim 9 of the paper, HSJA's normal estimates with and
without smoothing.

A decision-based attack such as HSJA (Chen, Jordan and Wainwright, IEEE S&P 2020) estimates the normal of
the decision boundary at a boundary point x_b from the labels of noisy probes ``x_b + delta u``. Maho,
Furon and Le Merrer (ICASSP 2022, section 3.5) observe that randomized smoothing "fractalises" the close
neighbourhood of the boundary (Fig. 2), yet that the normal estimates at a point x_b of the boundary of
g_sigma made with and without RS correlate well, provided the noise of the estimate is larger than the
noise sigma of RS; and that HSJA sometimes fails because every noisy version of x_b gets the same label.

Here, for each image x_o of label y:

* :func:`boundary_point` locates x_b: the white-box x_a on the boundary of f
  (:func:`rs_repro.attacks.minimal.minimal_l2`) gives the ray x_o -> x_a, kept in the pixel box; a grid
  along it (``scan_step`` sigma apart, to ``scan_past`` sigma past x_a: the paper reads the boundary of
  g_sigma about 4.0 in l2 past x_a on ImageNet, Fig. 1) finds the first point where the top class of
  g_sigma, estimated from ``boundary_samples`` micro-decisions, is not y, and a bisection narrows the
  bracket to :data:`BOUNDARY_TOL` sigma;
* :func:`compare` makes HSJA's estimate (:func:`rs_repro.attacks.hsja.normal_estimate`) at x_b for each
  probe radius delta = ratio * sigma twice, with the same number of probes: on the base classifier f
  (without RS) and on the random vote g_{sigma,n} (with RS, one vote of n micro-decisions per probe), from
  independent seeded generators, and gives the cosine between the two and whether every probe of each got
  the same answer;
* :func:`hsja_run` attacks x_o with a full HSJA run against g_{sigma,n} and counts its normal estimates
  whose probes all got the same answer.

The images are the first ``num_images`` that the standard model classifies correctly among candidate test
images (the whole test split, or a seeded random subset of ``num_candidates``, which bounds the work on
ImageNet: :func:`rs_repro.chapters.common.test_pool`), in a seeded random order (:func:`rs_repro.chapters.common.shuffled_correct_unit`).

The chapter's shape: :func:`check_parameters`; :func:`plan`, in three stages of units of
:mod:`rs_repro.pipeline.engine`: the standard model (:func:`rs_repro.chapters.common.model_units`), the
chosen images (:func:`rs_repro.chapters.common.shuffled_correct_unit`), then one unit per image (:func:`image_unit`). The page half
(``rs_repro.chapters.normal_vectors.page``) gives the record the claims chapter reads, the page's numbers
and the figures.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import nn

from rs_repro import data, seeds
from rs_repro.attacks.bisection import bisect
from rs_repro.attacks.hsja import hsja, normal_estimate
from rs_repro.attacks.minimal import minimal_l2
from rs_repro.attacks.oracle import Oracle, smoothed_oracle
from rs_repro.chapters import common
from rs_repro.checks import device_rule, rule_checker
from rs_repro.models import load_model
from rs_repro.pipeline.engine import Stage, Unit, fixed
from rs_repro.smoothing import Smooth

#: The chapter's name, which is the cache namespace and the first label of every seed.
STEM = "normal_vectors"
_MODULE = __name__
#: Length, in units of sigma (l2), of the bracket the bisection leaves around x_b.
BOUNDARY_TOL = 0.01
#: HSJA's gamma (:func:`rs_repro.attacks.hsja.hsja`), which sets its probe radius gamma * dist / d.
HSJA_GAMMA = 1.0
#: Outcome of an image whose ray crosses the boundary of g_sigma (the others name the reason).
CROSSED = "crossed"
#: Outcome of an image that the smoothed classifier g_sigma already misclassifies.
MISCLASSIFIED = "g_sigma(x_o) is not y"
#: Outcome of an image whose ray does not leave class y of g_sigma within the grid.
NO_CROSSING = "no crossing within the scanned range"
#: Outcome of an image for which the white-box attack found no adversarial example.
ATTACK_FAILED = "white-box attack failed"


def check_parameters(values: Mapping[str, Any]) -> None:
    """The chapter's rules on its parameters (ValueError naming the first one broken), run before anything."""
    need = rule_checker(values)
    size = common.data_and_models(values)
    dataset = values["dataset"]
    pool = common.pool_rule(values, "num_candidates", size)
    need(dataset != "imagenet" or values["num_candidates"] >= 1, "num_candidates",
         "a subset of at least 1 image for dataset 'imagenet' (the whole validation split takes 30 GB)")
    need(math.isfinite(values["sigma"]) and values["sigma"] > 0, "sigma", "a noise level > 0")
    need(values["n"] >= 1, "n", "at least 1 micro-decision per probe")
    fits, accepted = common.count_rule(values["num_images"], pool, "candidate test images")
    need(fits, "num_images", accepted)
    ratios = values["ratios"]
    need(bool(ratios) and all(math.isfinite(r) and r > 0 for r in ratios)
         and all(a < b for a, b in itertools.pairwise(ratios)), "ratios",
         "a non-empty, strictly increasing list of probe radii delta / sigma > 0")
    need(values["probes"] >= 2, "probes", "at least 2 probes per estimate")
    for name in ("boundary_samples", "hsja_queries", "attack_steps", "batch_size"):
        need(values[name] >= 1, name, "at least 1")
    need(math.isfinite(values["scan_step"]) and values["scan_step"] > 0, "scan_step", "a grid step > 0 (in sigma)")
    need(math.isfinite(values["scan_past"]) and values["scan_past"] >= 0, "scan_past",
         "a distance >= 0 past x_a (in sigma)")
    fits, accepted = device_rule(values["device"])
    need(fits, "device", accepted)


# ---------------------------------------------------------------------------------------------------
# The boundary point, the estimates, the HSJA run
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Boundary:
    """Where the ray of one image crosses the boundary of g_sigma (:func:`boundary_point`).

    Attributes
    ----------
    outcome : str
        :data:`CROSSED`, or why there is no x_b (:data:`MISCLASSIFIED`, :data:`NO_CROSSING`,
        :data:`ATTACK_FAILED`).
    x_b : torch.Tensor or None
        [1, C, H, W]: the point of the boundary, ``None`` without a crossing.
    past_x_a : float
        Signed l2 distance from x_a to x_b along the ray (negative: between x_o and x_a); NaN without x_b.
    gap : float
        At x_b, from fresh draws: frequency of y minus the largest frequency of another class among the
        micro-decisions (about 0 on the boundary); NaN without x_b.
    """

    outcome: str
    x_b: torch.Tensor | None
    past_x_a: float
    gap: float


def boundary_point(smooth: Smooth, x_o: torch.Tensor, x_a: torch.Tensor, label: int, *, samples: int,
                   step: float, past: float, seed: int, batch_size: int) -> Boundary:
    """The first point of the ray x_o -> x_a where the top class of g_sigma stops being ``label``.

    The path is ``x(t) = clip(x_o + t (x_a - x_o), 0, 1)`` for t >= 0 (x_a at t = 1; past x_a the points are
    clipped to the pixel box, so that x_b is an image, as every HSJA query is). A point is "not y" when the
    most frequent class of ``samples`` micro-decisions f(x(t) + sigma N_i) is not ``label`` (the majority
    vote of :func:`rs_repro.attacks.oracle.smoothed_oracle` with n = ``samples``: the top class of g_sigma,
    ICASSP 2022 eq. (1), estimated). The grid runs from x_o in l2 steps of ``step`` sigma to ``past`` sigma
    past x_a; between the last grid point labelled y before the first one that is not, a bisection
    (:func:`rs_repro.attacks.bisection.bisect`, fresh draws at every query) leaves a bracket of at most
    :data:`BOUNDARY_TOL` sigma in l2, and x_b is its middle. Two crossings within one grid step are not told
    apart.

    Parameters
    ----------
    smooth : Smooth
        The smoothed classifier g_sigma.
    x_o, x_a : torch.Tensor, shape [1, C, H, W]
        The image and its white-box adversarial example on the boundary of f (distinct).
    label : int
        The label y of x_o.
    samples : int
        Micro-decisions behind each decision on the ray and behind ``gap``.
    step : float
        Spacing of the grid, in units of sigma (l2).
    past : float
        How far past x_a the grid reaches, in units of sigma (l2 along the unclipped ray).
    seed : int
        Seed of the ray's noise streams (:func:`rs_repro.attacks.oracle.smoothed_oracle`) and of ``gap``'s draws
        (``seeds.generator(seed, "gap")``).
    batch_size : int
        Largest batch of noisy inputs per forward pass.

    Returns
    -------
    Boundary
        With outcome :data:`MISCLASSIFIED` when x_o itself is not y, :data:`NO_CROSSING` when no grid point is
        not y.
    """
    sigma = smooth.sigma
    length = float((x_a - x_o).flatten().double().norm())
    grid = torch.arange(math.ceil((length + past * sigma) / (step * sigma)) + 1,
                        dtype=torch.float64) * (step * sigma / length)
    steps = max(math.ceil(math.log2(step / BOUNDARY_TOL)), 0)

    def point(_rows: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # every row is on the one ray
        t = t.to(x_o.device, x_o.dtype).view(-1, *([1] * (x_o.dim() - 1)))
        return (x_o + t * (x_a - x_o)).clamp(0, 1)

    oracle = smoothed_oracle(smooth, samples, max_queries=len(grid) + steps, batch_size=batch_size, seed=seed)
    oracle.start(x_o, torch.tensor([label], device=x_o.device))
    on_grid = torch.zeros(len(grid), dtype=torch.int64)
    flipped = oracle.is_adversarial(point(on_grid, grid), on_grid).nonzero().squeeze(1)
    if len(flipped) == 0 or flipped[0] == 0:
        return Boundary(NO_CROSSING if len(flipped) == 0 else MISCLASSIFIED, None, math.nan, math.nan)
    k = int(flipped[0])
    found = bisect(oracle, torch.zeros(1, dtype=torch.int64), point, grid[k - 1:k], grid[k:k + 1],
                   tol=BOUNDARY_TOL * sigma / length, max_steps=steps)
    t_b = (found.low + found.high) / 2
    x_b = point(on_grid[:1], t_b)
    frequencies = smooth.counts(x_b, samples, batch_size,
                                generator=seeds.generator(seed, "gap", device=x_b.device))[0].double().cpu() / samples
    gap = float(frequencies[label])
    frequencies[label] = -1.0
    past = float((x_b - x_a).flatten().double().norm()) * (1.0 if float(t_b[0]) >= 1 else -1.0)
    return Boundary(CROSSED, x_b, past, gap - float(frequencies.max()))


@dataclass(frozen=True)
class Estimate:
    """One of HSJA's normal estimates at a point (:func:`estimate`).

    Attributes
    ----------
    v : torch.Tensor, shape [1, C, H, W]
        The unit estimate, pointing to the adversarial side.
    one_label : bool
        Every probe got the same answer (the estimate is then the mean of signed probe directions, which
        says nothing of the boundary; ICASSP 2022, section 3.5).
    adversarial : float
        Fraction of the probes answered adversarial.
    """

    v: torch.Tensor
    one_label: bool
    adversarial: float


def estimate(oracle: Oracle, x_b: torch.Tensor, label: int, delta: float, probes: int,
             directions: seeds.ImageGenerators, fallback: torch.Tensor) -> Estimate:
    """HSJA's estimate of the boundary normal at ``x_b`` [1, C, H, W] (Chen et al. 2020, eq. 9-10), from
    ``probes`` probes ``clip(x_b + delta u)`` answered by ``oracle`` (restarted here with ``x_b`` and
    ``label``), directions u from ``directions`` (one image); ``fallback`` [1, C, H, W] where the estimate is zero
    (:func:`rs_repro.attacks.hsja.normal_estimate`)."""
    oracle.start(x_b, torch.tensor([label], device=x_b.device))
    v, one_label = normal_estimate(oracle, x_b, torch.zeros(1, dtype=torch.int64), torch.tensor([probes]),
                                   torch.tensor([delta], dtype=torch.float64), directions, fallback)
    return Estimate(v, bool(one_label[0]), float(oracle.history().adversarial.mean()))


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine between two tensors of the same shape, read as vectors (in float64)."""
    a, b = a.flatten().double(), b.flatten().double()
    return float(a @ b / (a.norm() * b.norm()))


def compare(model: nn.Module, smooth: Smooth, x_b: torch.Tensor, fallback: torch.Tensor, label: int, *, n: int,
            ratios: Sequence[float], probes: int, seed: int, key: int, batch_size: int) -> pd.DataFrame:
    """HSJA's normal estimate at ``x_b`` without RS (f) and with RS (g_{sigma,n}) for each probe radius, and a
    second estimate without RS, whose agreement with the first is the most the probe count allows.

    Parameters
    ----------
    model : torch.nn.Module
        The base classifier f.
    smooth : Smooth
        g_sigma on f; with RS each probe is one vote of ``n`` micro-decisions (plain majority, ICASSP 2022
        section 3.1).
    x_b : torch.Tensor, shape [1, C, H, W]
        The point where the normal is estimated.
    fallback : torch.Tensor, shape [1, C, H, W]
        Direction taken where an estimate is zero (HSJA's: x_b - x_o).
    label : int
        The label y: a probe is adversarial when its answer is not y.
    n : int
        Micro-decisions per probe with RS.
    ratios : sequence of float
        The probe radii delta in units of sigma.
    probes : int
        Probes of each estimate, with and without RS.
    seed, key : int
        The estimates of ratio r draw their probe directions from ``seeds.ImageGenerators(seed, (STEM,
        "probes", e, key, r), [0])`` (e = ``"f"``, ``"rs"``, and ``"f2"`` for the second estimate without RS)
        and the votes from the noise streams of ``seeds.derive_seed(seed, STEM, "votes", key, r)``: independent
        streams for every estimate, the same whatever the other ratios.
    batch_size : int
        Largest batch of (noisy) inputs per forward pass.

    Returns
    -------
    pandas.DataFrame
        One row per ratio: ``ratio, delta, cosine`` (between the estimates with and without RS),
        ``cosine_f`` (between the two estimates without RS), ``one_label_f,
        one_label_rs`` (every probe of that estimate got the same answer), ``adversarial_f, adversarial_rs``
        (fraction of its probes answered adversarial).
    """
    device = x_b.device
    rows = []
    for ratio in ratios:
        delta = ratio * smooth.sigma
        def directions(name: str, ratio: float = ratio) -> seeds.ImageGenerators:
            return seeds.ImageGenerators(seed, (STEM, "probes", name, key, ratio), [0], device)

        without = estimate(Oracle(model, probes, batch_size=batch_size), x_b, label, delta, probes,
                           directions("f"), fallback)
        again = estimate(Oracle(model, probes, batch_size=batch_size), x_b, label, delta, probes,
                         directions("f2"), fallback)
        votes = seeds.derive_seed(seed, STEM, "votes", key, ratio)
        with_rs = estimate(smoothed_oracle(smooth, n, max_queries=probes, batch_size=batch_size, seed=votes),
                           x_b, label, delta, probes, directions("rs"), fallback)
        rows.append({"ratio": float(ratio), "delta": delta, "cosine": cosine(without.v, with_rs.v),
                     "cosine_f": cosine(without.v, again.v),
                     "one_label_f": without.one_label, "one_label_rs": with_rs.one_label,
                     "adversarial_f": without.adversarial, "adversarial_rs": with_rs.adversarial})
    return pd.DataFrame(rows)


def hsja_run(smooth: Smooth, x_o: torch.Tensor, label: int, *, n: int, queries: int, seed: int, key: int,
             batch_size: int) -> dict[str, float]:
    """A full HSJA run (:func:`rs_repro.attacks.hsja.hsja`, gamma :data:`HSJA_GAMMA`) against g_{sigma,n} on
    ``x_o`` [1, C, H, W] with a budget of ``queries`` queries; votes from the noise streams of
    ``seeds.derive_seed(seed, STEM, "hsja-votes", key)``, the attack's own draws from
    ``seeds.derive_seed(seed, STEM, "hsja", key)``.

    Returns
    -------
    dict
        ``hsja_steps`` (HSJA's normal estimates), ``hsja_one_label_steps`` (those whose probes all got the
        same answer) and ``hsja_delta_ratio``: the probe radius of HSJA at its last iterate,
        gamma * ||x_final - x_o|| / d, in units of sigma (0 where no starting point was found).
    """
    oracle = smoothed_oracle(smooth, n, max_queries=queries, batch_size=batch_size,
                             seed=seeds.derive_seed(seed, STEM, "hsja-votes", key))
    result = hsja(oracle, x_o, torch.tensor([label], device=x_o.device), seed=seeds.derive_seed(seed, STEM, "hsja", key),
                  gamma=HSJA_GAMMA)
    reach = float((result.x_final - x_o).flatten().double().norm())
    return {"hsja_steps": int(result.diagnostics["gradient_steps"][0]),
            "hsja_one_label_steps": int(result.diagnostics["one_label_steps"][0]),
            "hsja_delta_ratio": HSJA_GAMMA * reach / x_o[0].numel() / smooth.sigma}


# ---------------------------------------------------------------------------------------------------
# Work units
# ---------------------------------------------------------------------------------------------------

def plan(values: Mapping[str, Any]) -> list[Stage]:
    """The chapter's work: the standard model (``model-standard``), the chosen images (``images``,
    :func:`rs_repro.chapters.common.shuffled_correct_unit`), then one unit per chosen image (``image-<k>``, :func:`image_unit`). ``values`` are
    the notebook's parameters (:func:`rs_repro.pipeline.parameters.chapter_values`). Pure: nothing is read,
    trained or drawn here.

    The last stage raises ``ValueError`` (naming ``num_candidates``) when the model classifies no candidate
    image correctly.
    """
    dataset, data_dir = values["dataset"], values["data_dir"] or None
    specs = common.model_specs(values, ("standard",))
    spec = specs["standard"]
    choose = Unit("images", "rs_repro.chapters.common:shuffled_correct_unit",
                  {"dataset": dataset, "data_dir": data_dir, "pool": values["num_candidates"],
                   "count": values["num_images"], "model": spec, "device": values["device"], "seed": values["seed"],
                   "label": [STEM, "images"]})
    shared = {name: values[name] for name in ("dataset", "num_candidates", "sigma", "n", "probes", "boundary_samples",
                                              "hsja_queries", "attack_steps", "batch_size", "device", "seed")}
    shared.update(data_dir=data_dir, model=spec, ratios=[float(r) for r in values["ratios"]],
                  scan_step=float(values["scan_step"]), scan_past=float(values["scan_past"]))

    def per_image(done: Mapping[str, pd.DataFrame]) -> list[Unit]:
        chosen = done["images"]["index"].tolist()
        if not chosen:
            raise ValueError(f"the standard model classifies no candidate image of the {dataset} test split "
                             "correctly (raise num_candidates)")
        return [Unit(f"image-{k}", f"{_MODULE}:image_unit", {**shared, "position": k, "index": int(index)})
                for k, index in enumerate(chosen)]

    return [Stage("models", fixed(common.model_units(dataset, data_dir, specs))),
            Stage("chosen images", fixed([choose])), Stage("images", per_image)]


def image_unit(*, dataset: str, data_dir: str | None, num_candidates: int, model: Mapping[str, Any], sigma: float,
               n: int, ratios: Sequence[float], probes: int, boundary_samples: int, hsja_queries: int,
               attack_steps: int, scan_step: float, scan_past: float, batch_size: int, device: str, seed: int,
               position: int, index: int) -> pd.DataFrame:
    """The test image at ``index`` in the test split (the ``position``-th chosen by :func:`rs_repro.chapters.common.shuffled_correct_unit`, one
    of the candidates of :func:`rs_repro.chapters.common.test_pool`): its x_a
    (:func:`rs_repro.attacks.minimal.minimal_l2`, ``attack_steps`` iterations), its x_b (:func:`boundary_point`
    with a grid of ``scan_step`` sigma to ``scan_past`` sigma past x_a, noise seeded by ``seeds.derive_seed(seed, STEM,
    "boundary", index)``), the estimates at x_b (:func:`compare`) and a full HSJA run (:func:`hsja_run`), both
    keyed by ``index``; on ``device``, with at most ``batch_size`` inputs per forward pass.

    Returns
    -------
    pandas.DataFrame
        The rows of :func:`compare` (one per ratio) with the image's columns ``position, index, label,
        distance_a`` (||x_a - x_o||), ``outcome`` (``Boundary.outcome``), ``past_x_a, gap`` and those of
        :func:`hsja_run`; a single row of the image's columns (no estimate, no HSJA run) where there is no
        x_b.
    """
    base, _ = load_model(dataset, model, data_dir=data_dir, device=device)
    x, y = common.images_at(dataset, data_dir, num_candidates, seed, [index])
    x_o, label = x.to(device), int(y[0])
    attack = minimal_l2(base, x_o, torch.tensor([label]), steps=attack_steps)
    smooth = Smooth(base, data.num_classes(dataset), sigma)
    if bool(attack.success[0]):
        found = boundary_point(smooth, x_o, attack.x_a, label, samples=boundary_samples, step=scan_step,
                               past=scan_past, batch_size=batch_size,
                               seed=seeds.derive_seed(seed, STEM, "boundary", index))
    else:
        found = Boundary(ATTACK_FAILED, None, math.nan, math.nan)
    image = {"position": position, "index": index, "label": label, "distance_a": float(attack.distance[0]),
             "outcome": found.outcome, "past_x_a": found.past_x_a, "gap": found.gap}
    if found.x_b is None:
        return pd.DataFrame([image])
    compared = compare(base, smooth, found.x_b, found.x_b - x_o, label, n=n, ratios=ratios, probes=probes,
                       seed=seed, key=index, batch_size=batch_size)
    attacked = hsja_run(smooth, x_o, label, n=n, queries=hsja_queries, seed=seed, key=index, batch_size=batch_size)
    return compared.assign(**image, **attacked)
