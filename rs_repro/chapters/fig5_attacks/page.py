"""The page half of the ``fig5_attacks`` chapter: the tables of Fig. 5 joined and summarised, the record the
claims chapter reads, the page's glued numbers and the figures.

Everything here reads the tables of the units of :func:`rs_repro.chapters.fig5_attacks.compute.plan`
(:func:`results`); nothing is computed on a model. Both protocols are summarised side by side: the paper's
(the distortion of the best accepted query) and the confirmed one (eq. 4 with fresh votes, a failure counting
as an infinite distortion).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from rs_repro import theory
from rs_repro.attacks.verification import CANDIDATES
from rs_repro.chapters import common
from rs_repro.chapters.fig5_attacks import compute
from rs_repro.report.measurements import AttackConfiguration, AttackGrid
from rs_repro.report.paper import DISTORTION_OVER_RADIUS, fig5_readings
from rs_repro.report.plots import PALETTE


@dataclass(frozen=True)
class Results:
    """The chapter's tables, joined from its units' tables (:func:`results`).

    Attributes
    ----------
    accuracy : pandas.DataFrame
        ``target, correct, tested, accuracy``: clean accuracy of every classifier.
    answers : pandas.DataFrame
        ``target, idx, correct``: every classifier's answer on every tested image
        (:func:`rs_repro.chapters.fig5_attacks.compute.accuracy_unit`).
    runs : pandas.DataFrame
        One row per attacked image, attack and classifier
        (:func:`rs_repro.chapters.fig5_attacks.compute.attack_rows`), with the classifier's
        ``model, sigma, n, pa, accuracy``.
    summary : pandas.DataFrame
        :func:`summarize` of ``runs``.
    ratios : pandas.DataFrame
        Per attack and smoothed classifier, the median confirmed distortion over the median and over the
        largest certified radius of the same images (:func:`certificate_ratios`).
    certified : dict
        (model name, sigma) to the CERTIFY rows of the attacked images.
    clean : pandas.DataFrame
        The micro-decisions at the clean images (:func:`rs_repro.chapters.fig5_attacks.compute.clean_votes_unit`), every
        smoothed base model.
    acceptance : pandas.DataFrame
        :func:`acceptance` of ``clean``: how likely each clean image is accepted by each smoothed oracle.
    minimal : pandas.DataFrame
        ``idx, minimal_l2`` (``minimal_unit`` of ``rs_repro.chapters.fig5_attacks.whitebox``).
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
    """The chapter's tables from those of the units of :func:`rs_repro.chapters.fig5_attacks.compute.plan`
    (``tables`` maps the id of every unit of every step to its table, as
    :func:`rs_repro.pipeline.engine.compute` returns them)."""
    answers = _joined(tables, "accuracy-")
    accuracy = (answers.groupby("target", sort=False).correct.agg(correct="sum", tested="size").reset_index()
                .assign(accuracy=lambda a: a.correct / a.tested))
    runs = runs_table([t for k, t in tables.items() if k.startswith("attack-")], compute.targets(values), accuracy)
    summary = summarize(runs)
    certified = {(name, sigma): _joined(tables, f"certify-{name}-sigma{sigma:g}-")
                 for name, sigma in compute.smoothed_models(values)}
    clean = _joined(tables, "clean-votes-")
    return Results(accuracy, answers, runs, summary, certificate_ratios(summary, certified), certified, clean,
                   acceptance(clean, compute.targets(values), values["max_queries"]), tables["minimal-standard"])


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


def acceptance(clean: pd.DataFrame, targets: Sequence[compute.Target], max_queries: int) -> pd.DataFrame:
    """How likely the smoothed oracles accept the clean images themselves.

    With pi_1 the fraction of wrong micro-decisions at x_o (``clean``, :func:`rs_repro.chapters.fig5_attacks.compute.clean_votes_unit`), one query at
    x_o is accepted with probability a = P[Bin(n, pi_1) >= ceil(n P_a)] (:func:`rs_repro.theory.accelerated_acceptance`,
    at :attr:`rs_repro.chapters.fig5_attacks.compute.Target.level`), and at least once in ``max_queries``
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


def runs_table(tables: Sequence[pd.DataFrame], targets: Sequence[compute.Target],
               accuracy: pd.DataFrame) -> pd.DataFrame:
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


def record(res: Results, values: Mapping[str, Any]) -> AttackGrid:
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
                           in common.absent_models(values).items()) or "Every base model of the grid is present.",
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
    (CERTIFY, :data:`rs_repro.chapters.fig5_attacks.compute.CERTIFY`) is the fraction certified correct with a radius
    above epsilon: what the certificate of g_sigma promises.

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
    :func:`rs_repro.chapters.fig5_attacks.compute.attack_rows`; every image counts (inf until a query is accepted, 0 where
    the clean image was).
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
    pi_1(x_o) of wrong micro-decisions at the clean image (:func:`rs_repro.chapters.fig5_attacks.compute.clean_votes_unit`).
    Right: the probability that x_o itself is accepted at least once within the budget, mean over images, for
    each n and P_a (:func:`acceptance`).
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
