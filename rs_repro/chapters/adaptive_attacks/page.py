"""The page half of the ``adaptive_attacks`` chapter: the tables joined and summarised, the record the claims
beyond the paper read, the page's glued numbers (with the verdicts of those claims) and the figures.

Everything here reads the tables of the units of :func:`rs_repro.chapters.adaptive_attacks.compute.plan`
(:func:`results`); nothing is computed on a model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from rs_repro.chapters.adaptive_attacks import compute
from rs_repro.claims.beyond import BEYOND
from rs_repro.report.measurements import AdaptiveConfiguration, AdaptiveGrid
from rs_repro.report.plots import PALETTE


@dataclass(frozen=True)
class Results:
    """The chapter's tables (:func:`results`).

    Attributes
    ----------
    calibration : pandas.DataFrame
        :func:`rs_repro.chapters.adaptive_attacks.compute.calibration_unit` rows (empty without hidden noise).
    accuracy : pandas.DataFrame
        ``defence, correct, tested, accuracy`` of every defence (input-hash rows share their fresh twin's).
    answers : pandas.DataFrame
        ``defence, idx, correct``: every defence's answer on every tested image (input-hash rows share their
        fresh twin's).
    runs : pandas.DataFrame
        One row per image, defence and attacker
        (:func:`rs_repro.chapters.adaptive_attacks.compute.attack_rows`) with the fields of both.
    summary : pandas.DataFrame
        :func:`summarize` of ``runs``.
    """

    calibration: pd.DataFrame
    accuracy: pd.DataFrame
    answers: pd.DataFrame
    runs: pd.DataFrame
    summary: pd.DataFrame


def results(tables: Mapping[str, pd.DataFrame], values: Mapping[str, Any]) -> Results:
    """The chapter's tables from those of the units of :func:`rs_repro.chapters.adaptive_attacks.compute.plan`
    (``tables`` maps the id of every unit of every step to its table, as
    :func:`rs_repro.pipeline.engine.compute` returns them)."""
    calibration = compute.calibration_tables(tables)
    pairs = compute.grid(values, compute.hidden_scales(calibration))
    answers = pd.concat([t for k, t in tables.items() if k.startswith("accuracy-")], ignore_index=True)
    hashed = [answers[answers.defence == d.fresh.label].assign(defence=d.label)
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


def record(res: Results, values: Mapping[str, Any]) -> AdaptiveGrid:
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
        hidden = compute.Defence(float(row.sigma), int(row.n), f"hidden-{row.law}", scale=float(row.scale))
        gaps.append((float(by_label[hidden.label] - by_label[compute.Defence(float(row.sigma), int(row.n)).label]),
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


def page(res: Results, values: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers and phrases the chapter's prose reads, by glue name; the answers are the verdicts of the
    claims beyond the paper (:data:`rs_repro.claims.beyond.BEYOND`) on this run's record (:func:`record`)."""
    measured = record(res, values)
    judged = {claim.number: claim.judge(measured) for claim in BEYOND}
    ns, summary = values["ns"], res.summary
    k_top = max(values["repeats"], default=1)
    return {
        "level": float(values["level"]), "confidence": 1 - float(values["alpha"]), "ns_text": ", ".join(map(str, sorted(ns))), "k_top": k_top,
        "repeat_ns_text": ", ".join(map(str, compute.repeat_ns(values))),
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
