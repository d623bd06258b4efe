"""The ``fig3_binary_search`` chapter: Fig. 3 of the paper, a binary search against g_{sigma,n}.

A bisection between a point the smoothed classifier g_{sigma,n} labels correctly (PointA) and one it
labels otherwise (PointB) ends somewhere random, because every query is a fresh vote of n noisy
micro-decisions (Maho, Furon, Le Merrer, ICASSP 2022, section 3.5 and Fig. 3). Repeating it many times
gives the distribution of its output, to compare with the boundary of g_sigma on the segment, located by a
large Monte Carlo.

The segments are chosen among candidate test images (:func:`candidate_images`): the whole test split, or a
seeded random subset of ``num_candidates`` of them, which bounds the pairing on ImageNet (the paper draws
200 random ILSVRC2012 validation images). Each correctly classified candidate, in the order of the split,
is PointA of a segment whose PointB is its nearest (l2) candidate of another class that the base model
labels otherwise (:func:`segments`).

The chapter's shape: :func:`check_parameters` (run before anything), :func:`units` (one unit of
:mod:`rs_repro.pipeline.engine` per segment, chosen by :func:`segments`), :func:`summarize` (the
:class:`~rs_repro.report.measurements.BisectionSpread` the claims chapter reads), :func:`page` and
:func:`spread_by_n` (what the page prints), :func:`plot_bisection` (the figure).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn

from rs_repro import data, seeds
from rs_repro.attacks.bisection import bisect_segment
from rs_repro.attacks.oracle import Oracle, smoothed_oracle
from rs_repro.checks import device_rule, rule_checker
from rs_repro.experiments.common import count_rule, data_and_models
from rs_repro.models import load_model, model_spec
from rs_repro.pipeline.engine import Unit
from rs_repro.report.measurements import BisectionSpread
from rs_repro.smoothing import Smooth

_MODULE = __name__
#: Bisection steps that locate the boundary of the base classifier f on a segment (a deterministic search).
BASE_STEPS = 50


def check_parameters(values: Mapping[str, Any]) -> None:
    """The chapter's rules on its parameters (ValueError naming the first one broken), run before anything."""
    need = rule_checker(values)
    size = data_and_models(values)
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
    fits, accepted = count_rule(values["num_segments"], values["num_candidates"] or size,
                                "candidate test images (a segment starts at one)")
    need(fits, "num_segments", accepted)
    need(values["profile_points"] >= 2, "profile_points", "at least 2 points on the segment")
    fits, accepted = device_rule(values["device"])
    need(fits, "device", accepted)


def candidate_images(dataset: str, data_dir: str | None, num_candidates: int, seed: int) -> data.Dataset:
    """The test images the segments are chosen among: the whole test split (``num_candidates = 0``), or its
    random subset of ``num_candidates`` images drawn with ``seed`` (:func:`rs_repro.data.load_dataset`)."""
    return data.load_dataset(dataset, "test", data_dir=data_dir, n=num_candidates or None, seed=seed)


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


def units(values: Mapping[str, Any]) -> list[Unit]:
    """One unit per segment (``segment-<k>``): its Monte Carlo profile and the bisections of every n.

    The segments are chosen here, among the :func:`candidate_images`, with the base model (trained here on
    first use, before any worker starts): the first ``num_segments`` pairs of :func:`segments`, fewer if the
    candidates have fewer correctly classified images. ``values`` are the notebook's parameters
    (:func:`rs_repro.pipeline.book.chapter_values`).

    Raises
    ------
    ValueError
        No candidate is correctly classified with a candidate of another class to pair it with.
    """
    dataset, data_dir, device = values["dataset"], values["data_dir"] or None, values["device"]
    spec = model_spec("standard", seed=values["seed"], weights=values["standard_weights"])
    model, _ = load_model(dataset, spec, data_dir=data_dir, device=device)
    test = candidate_images(dataset, data_dir, values["num_candidates"], values["seed"])
    pairs = segments(model, test.x, test.y, values["num_segments"], values["batch_size"])
    if not pairs:
        raise ValueError(f"no candidate test image of {dataset} is correctly classified with a candidate of another "
                         "class to pair it with: no segment to search on (raise num_candidates)")
    common = {"dataset": dataset, "data_dir": data_dir, "num_candidates": values["num_candidates"], "model": spec,
              "sigma": values["sigma"], "ns": list(values["ns"]), "repeats": values["repeats"],
              "steps": values["steps"], "profile_points": values["profile_points"],
              "profile_samples": values["profile_samples"], "batch_size": values["batch_size"], "device": device,
              "seed": values["seed"]}
    return [Unit(f"segment-{k}", f"{_MODULE}:segment_unit",
                 {**common, "segment": k, "a": int(test.index[a]), "b": int(test.index[b])})
            for k, (a, b) in enumerate(pairs)]


def segment_unit(*, dataset: str, data_dir: str | None, num_candidates: int, model: Mapping[str, Any], sigma: float,
                 ns: Sequence[int], repeats: int, steps: int, profile_points: int, profile_samples: int,
                 batch_size: int, device: str, seed: int, segment: int, a: int, b: int) -> pd.DataFrame:
    """Segment ``segment`` from test image ``a`` (PointA) to test image ``b`` (PointB), both positions in the
    test split and among the :func:`candidate_images`: its class profile (:func:`class_profile` at
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
    test = candidate_images(dataset, data_dir, num_candidates, seed)
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


def boundary_of_g(profile: pd.DataFrame) -> float:
    """First t where another class overtakes the label in ``profile``, linearly interpolated (the
    boundary of g_sigma on the segment); NaN if the label wins everywhere."""
    gap = (profile.p_label - profile.p_other).to_numpy()
    t = profile.t.to_numpy()
    crossed = np.nonzero(gap <= 0)[0]
    if len(crossed) == 0:
        return float("nan")
    k = int(crossed[0])
    if k == 0:
        return float(t[0])
    return float(t[k - 1] + (t[k] - t[k - 1]) * gap[k - 1] / (gap[k - 1] - gap[k]))


def bisection_outputs(smooth: Smooth, x_a: torch.Tensor, x_b: torch.Tensor, label: int, n: int, repeats: int,
                      steps: int, seed: int, batch_size: int) -> pd.DataFrame:
    """Run ``repeats`` independent bisections of ``steps`` queries on the segment against g_{sigma,n}, each
    its own image, with the noise of ``seeds.generator(seed, "bisection", n)`` on the device of ``x_a`` and at
    most ``batch_size`` noisy inputs per forward pass.

    Returns
    -------
    pandas.DataFrame
        Columns ``repeat, t`` (the adversarial end each bisection returns) and ``queries``.
    """
    oracle = smoothed_oracle(smooth, n, max_queries=steps, batch_size=batch_size,
                             generator=seeds.generator(seed, "bisection", n, device=x_a.device))
    rows = torch.arange(repeats)
    start = x_a.expand(repeats, *x_a.shape[1:]).contiguous()
    oracle.start(start, torch.full((repeats,), label, dtype=torch.long))
    result = bisect_segment(oracle, start, x_b.expand_as(start), rows, tol=0.0, max_steps=steps)
    return pd.DataFrame({"repeat": rows.numpy(), "t": result.high.numpy(), "queries": result.queries.numpy()})


def base_boundary(model: nn.Module, x_a: torch.Tensor, x_b: torch.Tensor, label: int, steps: int) -> float:
    """Where the base classifier f changes its answer on the segment (a deterministic bisection)."""
    oracle = Oracle(model, max_queries=steps)
    oracle.start(x_a, torch.tensor([label]))
    return float(bisect_segment(oracle, x_a, x_b, torch.tensor([0]), tol=0.0, max_steps=steps).high[0])


def segment_parts(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, float, float]:
    """The pieces of one :func:`segment_unit` table: the profile, the searches, the length and t_f."""
    profile = table[table.part == "profile"]
    return profile, table[table.part == "search"], float(table.length.iloc[0]), float(table.t_f.iloc[0])


def search_summary(tables: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> pd.DataFrame:
    """Per segment and n, in l2 units: the spread (standard deviation) of the searches' outputs, their mean
    offset from the boundary of g_sigma (negative: on PointA's side), and how far that boundary lies from
    f's.

    Returns
    -------
    pandas.DataFrame
        Columns ``segment, n, length, spread (std), mean offset from boundary of g,
        boundary of g - boundary of f``.
    """
    rows = []
    for table in tables.values():
        profile, searches, length, t_f = segment_parts(table)
        t_g = boundary_of_g(profile)
        for n in values["ns"]:
            t = searches[searches.n == n].t
            rows.append({"segment": int(table.segment.iloc[0]), "n": n, "length": length,
                         "spread (std)": t.std() * length, "mean offset from boundary of g": (t.mean() - t_g) * length,
                         "boundary of g - boundary of f": (t_g - t_f) * length})
    return pd.DataFrame(rows)


def spread_by_n(tables: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> pd.DataFrame:
    """The spread and the mean offset of :func:`search_summary`, averaged over the segments, one row per n."""
    return search_summary(tables, values).groupby("n")[["spread (std)", "mean offset from boundary of g"]].mean()


def summarize(tables: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> BisectionSpread:
    """The measurement of claim 8: the spread of the search's output per n, averaged over the segments and
    on each segment."""
    spread = spread_by_n(tables, values)["spread (std)"]
    per_segment = search_summary(tables, values).sort_values("segment").groupby("n")["spread (std)"]
    return BisectionSpread(dataset=values["dataset"], seed=values["seed"], sigma=float(values["sigma"]),
                           spread={int(n): float(s) for n, s in spread.items()},
                           per_segment={int(n): [float(v) for v in part] for n, part in per_segment})


def histogram_edges(tables: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> np.ndarray:
    """The edges (l2 from PointA, ``bins + 1`` of them) of the figure's histograms on the first segment.

    ``bins`` equal bins over the whole segment; with ``zoom``, over the range of the searches' outputs (all n)
    and the boundary of g_sigma, widened by a tenth on each side (by one bin of the segment if that range is a
    point) and kept within the segment. Between two ImageNet images (l2 about 100) the outputs spread over a
    small part of the segment, which bins of the whole segment would put into one.
    """
    profile, searches, length, _ = segment_parts(tables["segment-0"])
    if not values["zoom"]:
        return np.linspace(0, length, values["bins"] + 1)
    d = searches.t.to_numpy() * length
    ends = [d.min(), d.max(), boundary_of_g(profile) * length]  # the boundary is NaN where g_sigma never flips
    low, high = np.nanmin(ends), np.nanmax(ends)
    pad = (high - low) / 10 if high > low else length / values["bins"]
    return np.linspace(max(low - pad, 0.0), min(high + pad, length), values["bins"] + 1)


def _first_histogram(tables: Mapping[str, pd.DataFrame], values: Mapping[str, Any], n: int) -> np.ndarray:
    """The histogram the figure draws for ``n``: the outputs on the first segment, as fractions of the
    searches, over the bins of :func:`histogram_edges`."""
    _, searches, length, _ = segment_parts(tables["segment-0"])
    d = searches[searches.n == n].t.to_numpy() * length
    heights, _ = np.histogram(d, bins=histogram_edges(tables, values), weights=np.full(len(d), 1 / len(d)))
    return heights


def page(tables: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers and phrases the page's prose reads (glue name to value), from the tables of :func:`units`.

    ``repeats``, ``num_segments``, ``mean_length``; ``spread_small`` / ``spread_large`` and ``offset_small`` /
    ``offset_large`` (:func:`spread_by_n` at the first and the last n, ``n_small`` and ``n_large``);
    ``peaks``: the highest bin of the first segment's histogram for each n (:func:`histogram_edges`).
    """
    ns = values["ns"]
    by_n = spread_by_n(tables, values)
    peaks = {n: _first_histogram(tables, values, n).max() for n in ns}
    return {"repeats": values["repeats"], "num_segments": len(tables),
            "peaks": ", ".join(f"{peaks[n]:.2f} (n={n})" for n in ns),
            "spread_small": float(by_n["spread (std)"].iloc[0]), "spread_large": float(by_n["spread (std)"].iloc[-1]),
            "n_small": ns[0], "n_large": ns[-1],
            "offset_small": float(by_n["mean offset from boundary of g"].iloc[0]),
            "offset_large": float(by_n["mean offset from boundary of g"].iloc[-1]),
            "mean_length": float(search_summary(tables, values).length.mean())}


def plot_bisection(tables: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> plt.Figure:
    """The paper's Fig. 3 on the first segment: the distribution of the searches' outputs for each n
    (left) and the class probabilities of the smoothed classifier along the segment (right), with the
    boundaries of g_sigma and of f; both panels over the range of :func:`histogram_edges`."""
    profile, searches, length, t_f = segment_parts(tables["segment-0"])
    t_g = boundary_of_g(profile)
    edges = histogram_edges(tables, values)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [3, 2]})
    for k, n in enumerate(values["ns"]):
        d = searches[searches.n == n].t.to_numpy() * length
        ax1.hist(d, bins=edges, weights=np.full(len(d), 1 / len(d)), histtype="step", lw=1.5, color=f"C{k}",
                 label=f"n = {n}")
    for ax in (ax1, ax2):
        ax.axvline(t_g * length, color="black", ls="--", lw=1, label="boundary of $g_\\sigma$ (Monte Carlo)")
        ax.axvline(t_f * length, color="grey", ls=":", lw=1, label="boundary of $f$")
    ax1.set(xlabel="position on the segment PointA $\\to$ PointB ($\\ell_2$ from PointA)", ylabel="probability",
            title=f"output of a {values['steps']}-step binary search against $g_{{\\sigma,n}}$, "
                  f"$\\sigma$={values['sigma']:g}")
    ax1.legend(fontsize="small")
    ax2.plot(profile.t * length, profile.p_label, label="$P[f(x+\\sigma N) = y]$")
    ax2.plot(profile.t * length, profile.p_other, label="largest other class")
    ax2.set(xlabel="position on the segment", ylabel="probability", title="class probabilities along the segment")
    ax2.legend(fontsize="small")
    if values["zoom"]:
        for ax in (ax1, ax2):
            ax.set_xlim(edges[0], edges[-1])
    return fig
