"""What the ``fig3_binary_search`` chapter computes: Fig. 3 of Maho, Furon, Le Merrer (ICASSP 2022), a binary
search against g_{sigma,n}.

A bisection between a point the smoothed classifier g_{sigma,n} labels correctly (PointA) and one it
labels otherwise (PointB) ends somewhere random, because every query is a fresh vote of n noisy
micro-decisions (section 3.5 and Fig. 3 of the paper). Repeating it many times gives the distribution of its
output, to compare with the boundary of g_sigma on the segment, located by a large Monte Carlo.

The segments are chosen among candidate test images (:func:`rs_repro.chapters.common.test_pool`): the whole test
split, or a seeded random subset of ``num_candidates`` of them, which bounds the pairing on ImageNet (the paper
draws 200 random ILSVRC2012 validation images). Each correctly classified candidate, in the order of the
split, is PointA of a segment whose PointB is its nearest (l2) candidate of another class that the base model
labels otherwise (:func:`segments`).

The plan (:func:`plan`) has three stages: the standard model (:func:`rs_repro.chapters.common.model_units`),
the choice of the segments with it (``segments``, :func:`segments_unit`), and one unit per segment
(``segment-<k>``, :func:`segment_unit`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from rs_repro import data, seeds
from rs_repro.attacks.bisection import bisect_segment
from rs_repro.attacks.oracle import Oracle, smoothed_oracle
from rs_repro.chapters import common
from rs_repro.checks import rule_checker
from rs_repro.models import load_model
from rs_repro.pipeline.engine import Stage, Unit, fixed
from rs_repro.smoothing import Smooth

#: Bisection steps that locate the boundary of the base classifier f on a segment (a deterministic search).
BASE_STEPS = 50


def check_parameters(values: Mapping[str, Any]) -> None:
    """The chapter's rules on its parameters (ValueError naming the first one broken), run before anything."""
    need = rule_checker(values)
    size = common.data_and_models(values, device=True)
    dataset = values["dataset"]
    need(values["num_candidates"] == 0 or 2 <= values["num_candidates"] <= size, "num_candidates",
         f"0 (the whole test split) or 2 to {size} images, the size of the {dataset} test split (a segment "
         "needs two)")
    need(dataset != "imagenet" or values["num_candidates"] >= 2, "num_candidates",
         "a subset of at least 2 images for dataset 'imagenet' (the whole validation split takes 30 GB)")
    need(np.isfinite(values["sigma"]) and values["sigma"] > 0, "sigma", "a noise level > 0")
    ns = values["ns"]
    need(bool(ns) and all(n >= 1 for n in ns) and len(set(ns)) == len(ns), "ns",
         "a non-empty list of distinct sample counts >= 1")
    need(values["repeats"] >= 2, "repeats", "at least 2 searches (a spread needs two)")
    for name in ("steps", "profile_samples", "bins", "batch_size"):
        need(values[name] >= 1, name, "at least 1")
    fits, accepted = common.count_rule(values["num_segments"], values["num_candidates"] or size,
                                       "candidate test images (a segment starts at one)")
    need(fits, "num_segments", accepted)
    need(values["profile_points"] >= 2, "profile_points", "at least 2 points on the segment")


def plan(values: Mapping[str, Any]) -> list[Stage]:
    """The chapter's work in three stages.

    ``models``: the standard model (``model-standard``). ``segment selection``: the unit ``segments``
    (:func:`segments_unit`), the first ``num_segments`` pairs of :func:`segments` among the candidates, fewer
    if the candidates have fewer correctly classified images. ``segments``: one unit per pair of its table
    (``segment-<k>``, :func:`segment_unit`): its Monte Carlo profile and the bisections of every n.
    ``values`` are the notebook's parameters (:func:`rs_repro.pipeline.parameters.chapter_values`).
    """
    dataset, data_dir, device = values["dataset"], values["data_dir"] or None, values["device"]
    specs = common.model_specs(values, ("standard",))
    where = {"dataset": dataset, "data_dir": data_dir, "num_candidates": values["num_candidates"],
             "model": specs["standard"]}
    choose = Unit("segments", f"{__name__}:segments_unit",
                  {**where, "count": values["num_segments"], "batch_size": values["batch_size"], "device": device,
                   "seed": values["seed"]})
    search = {**where, "sigma": values["sigma"], "ns": list(values["ns"]), "repeats": values["repeats"],
              "steps": values["steps"], "profile_points": values["profile_points"],
              "profile_samples": values["profile_samples"], "batch_size": values["batch_size"], "device": device,
              "seed": values["seed"]}

    def segment_units(done: Mapping[str, pd.DataFrame]) -> list[Unit]:
        pairs = done["segments"]
        if pairs.empty:
            raise ValueError(f"no candidate test image of {dataset} is correctly classified with a candidate of "
                             "another class to pair it with: no segment to search on (raise num_candidates)")
        return [Unit(f"segment-{k}", f"{__name__}:segment_unit", {**search, "segment": k, "a": int(a), "b": int(b)})
                for k, a, b in zip(pairs.segment, pairs.a, pairs.b, strict=True)]

    return [Stage("models", fixed(common.model_units(dataset, data_dir, specs))),
            Stage("segment selection", fixed([choose])), Stage("segments", segment_units)]


def segments(model: nn.Module, x: torch.Tensor, y: torch.Tensor, count: int, batch_size: int) -> list[tuple[int, int]]:
    """Pairs (a, b) of positions in ``x`` [N, C, H, W]: a correctly classified image and its nearest (l2)
    image of another class that the base model labels differently from ``y[a]``; the first ``count`` such
    images a (an image without such a partner is skipped). The model sees ``batch_size`` images at a time,
    on its own device."""
    device = next(model.parameters()).device
    with torch.inference_mode():
        predicted = torch.cat([model(x[k:k + batch_size].to(device)).argmax(1).cpu()
                               for k in range(0, len(x), batch_size)])
    flat = x.flatten(1)
    pairs = []
    for a in range(len(x)):
        if predicted[a] != y[a]:
            continue
        other = (y != y[a]) & (predicted != y[a])
        if not other.any():
            continue
        distance = (flat - flat[a]).norm(dim=1).masked_fill(~other, float("inf"))
        pairs.append((a, int(distance.argmin())))
        if len(pairs) == count:
            break
    return pairs


def segments_unit(*, dataset: str, data_dir: str | None, num_candidates: int, model: Mapping[str, Any], count: int,
                  batch_size: int, device: str, seed: int) -> pd.DataFrame:
    """The segments of the chapter: :func:`segments` of the base model ``model`` among the candidates (the
    chapter's pool of ``num_candidates`` test images drawn with ``seed``, :func:`rs_repro.chapters.common.test_pool`).

    Returns
    -------
    pandas.DataFrame
        One row per segment, in order: ``segment`` (its number k), ``a`` and ``b`` (the positions of PointA and
        PointB in the test split); no row when no candidate pairs.
    """
    base, _ = load_model(dataset, model, data_dir=data_dir, device=device)
    test = common.test_pool(dataset, data_dir, num_candidates, seed)
    pairs = segments(base, test.x, test.y, count, batch_size)
    return pd.DataFrame({"segment": list(range(len(pairs))), "a": [int(test.index[a]) for a, _ in pairs],
                         "b": [int(test.index[b]) for _, b in pairs]}, dtype="int64")


def segment_unit(*, dataset: str, data_dir: str | None, num_candidates: int, model: Mapping[str, Any], sigma: float,
                 ns: Sequence[int], repeats: int, steps: int, profile_points: int, profile_samples: int,
                 batch_size: int, device: str, seed: int, segment: int, a: int, b: int) -> pd.DataFrame:
    """Segment ``segment`` from test image ``a`` (PointA) to test image ``b`` (PointB), both positions in the
    test split and among the candidates (:func:`segments_unit`): its class profile (:func:`class_profile` at
    ``profile_points`` evenly spaced t) and ``repeats`` bisections against g_{sigma,n} for each n
    (:func:`bisection_outputs`), both drawn from the segment's own seed ``seeds.derive_seed(seed, "segment",
    segment)``, on ``device`` with at most ``batch_size`` noisy inputs per forward pass.

    Returns
    -------
    pandas.DataFrame
        The profile's rows (``part = "profile"``: ``t, p_label, p_other, se``) then the bisections' rows
        (``part = "search"``: ``n, repeat, t, queries``), each with the segment's ``segment, a, b``,
        ``length`` (||x_b - x_a||) and ``t_f`` (the boundary of f, :func:`base_boundary`).
    """
    base, _ = load_model(dataset, model, data_dir=data_dir, device=device)
    test = common.test_pool(dataset, data_dir, num_candidates, seed)
    at = {int(index): k for k, index in enumerate(test.index)}
    x_a, x_b = (test.x[at[i]:at[i] + 1].to(device) for i in (a, b))
    label = int(test.y[at[a]])
    smooth = Smooth(base, data.num_classes(dataset), sigma)
    own = seeds.derive_seed(seed, "segment", segment)
    profile = class_profile(smooth, x_a, x_b, label, np.linspace(0, 1, profile_points).tolist(), profile_samples,
                            own, batch_size)
    searches = [bisection_outputs(smooth, x_a, x_b, label, n, repeats, steps, own, batch_size).assign(n=n)
                for n in ns]
    return pd.concat([profile.assign(part="profile"), *(s.assign(part="search") for s in searches)],
                     ignore_index=True).assign(segment=segment, a=a, b=b, length=float((x_b - x_a).norm()),
                                               t_f=base_boundary(base, x_a, x_b, label, BASE_STEPS))


def class_profile(smooth: Smooth, x_a: torch.Tensor, x_b: torch.Tensor, label: int, ts: Sequence[float],
                  samples: int, seed: int, batch_size: int) -> pd.DataFrame:
    """Monte Carlo class probabilities of f(x(t) + sigma N) along x(t) = (1 - t) x_a + t x_b.

    Parameters
    ----------
    smooth : rs_repro.smoothing.Smooth
        The smoothed classifier g_sigma.
    x_a, x_b : torch.Tensor, shape [1, C, H, W]
        The ends of the segment (PointA, PointB).
    label : int
        The class whose probability is followed (PointA's true class).
    ts : sequence of float
        Positions on the segment, in [0, 1].
    samples : int
        Noise draws per position, from ``seeds.generator(seed, "profile")`` on the device of ``x_a``.
    seed : int
        Seed of the draws.
    batch_size : int
        Largest batch of noisy inputs per forward pass.

    Returns
    -------
    pandas.DataFrame
        Columns ``t, p_label, p_other`` (the largest probability of another class) and ``se`` (the
        binomial standard error of ``p_label``).
    """
    t = torch.tensor(list(ts), dtype=x_a.dtype, device=x_a.device).view(-1, 1, 1, 1)
    points = (1 - t) * x_a + t * x_b
    generator = seeds.generator(seed, "profile", device=x_a.device)
    counts = smooth.counts(points, samples, batch_size, generator=generator).cpu().double() / samples
    p_label = counts[:, label].clone().numpy()
    counts[:, label] = -1
    return pd.DataFrame({"t": list(ts), "p_label": p_label, "p_other": counts.max(1).values.numpy(),
                         "se": np.sqrt(p_label * (1 - p_label) / samples)})


def bisection_outputs(smooth: Smooth, x_a: torch.Tensor, x_b: torch.Tensor, label: int, n: int, repeats: int,
                      steps: int, seed: int, batch_size: int) -> pd.DataFrame:
    """Run ``repeats`` independent bisections of ``steps`` queries on the segment from ``x_a`` to ``x_b``
    (each [1, C, H, W]) against g_{sigma,n}, each its own image (repeat r's noise streams keyed by r, seeded
    by ``seeds.derive_seed(seed, "bisection", n)``) and at most ``batch_size`` noisy inputs per forward pass.

    Returns
    -------
    pandas.DataFrame
        Columns ``repeat, t`` (the adversarial end each bisection returns) and ``queries``.
    """
    oracle = smoothed_oracle(smooth, n, max_queries=steps, batch_size=batch_size,
                             seed=seeds.derive_seed(seed, "bisection", n))
    rows = torch.arange(repeats)
    start = x_a.expand(repeats, *x_a.shape[1:]).contiguous()
    oracle.start(start, torch.full((repeats,), label, dtype=torch.long))
    result = bisect_segment(oracle, start, x_b.expand_as(start), rows, tol=0.0, max_steps=steps)
    return pd.DataFrame({"repeat": rows.numpy(), "t": result.high.numpy(), "queries": result.queries.numpy()})


def base_boundary(model: nn.Module, x_a: torch.Tensor, x_b: torch.Tensor, label: int, steps: int) -> float:
    """Where the base classifier f changes its answer on the segment from ``x_a`` to ``x_b`` (each
    [1, C, H, W]): a deterministic bisection of ``steps`` steps."""
    oracle = Oracle(model, max_queries=steps)
    oracle.start(x_a, torch.tensor([label]))
    return float(bisect_segment(oracle, x_a, x_b, torch.tensor([0]), tol=0.0, max_steps=steps).high[0])
