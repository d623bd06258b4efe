"""The ``claims`` chapter: each headline claim of the paper against the numbers this build measured.

The claims are those of ``paper-notes.md`` section 4, restated in our words. Every claim is decided by a
*judge*: a function of the typed record one chapter wrote (:data:`rs_repro.measurements.SCHEMA`) that
returns the measured number as text and a verdict. Nothing is computed again here: a chapter that did not run
under the profile asked for leaves its claims "not measured in this profile".

The verdict rules are written next to each judge; they are deliberately simple, stated on the page, and
use the paper's own threshold where it gives one (30 times the certified radius).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .. import measurements
from ..measurements import AttackConfiguration, AttackGrid, BisectionSpread, BoundaryPush, ThresholdCheck
from ..paper import DISTORTION_OVER_RADIUS
from ..prose import agree

HOLDS = "holds"
FAILS = "does not hold"
NOT_MEASURED = "not measured in this profile"

#: ``judge(record) -> (measured, verdict)``, the record being the typed measurements
#: (:data:`rs_repro.measurements.SCHEMA`) a chapter recorded.
Judge = Callable[[Any], tuple[str, str]]


@dataclass(frozen=True)
class Claim:
    """One claim of the paper.

    Attributes
    ----------
    number : int
        Its number in ``paper-notes.md`` section 4.
    statement : str
        The claim, in our words.
    paper : str
        What the paper reports for it.
    chapter : str or None
        The chapter whose measurements decide it (``None``: no chapter of this book measures it).
    rule : str
        The verdict rule, in words.
    judge : Judge or None
        The verdict rule, as code.
    """

    number: int
    statement: str
    paper: str
    chapter: str | None
    rule: str
    judge: Judge | None


def _verdict(ok: bool) -> str:
    return HOLDS if ok else FAILS


def _configurations(grid: AttackGrid) -> pd.DataFrame:
    """The attacks chapter's configurations as a table (one row per attack and target)."""
    return pd.DataFrame([dataclasses.asdict(c) for c in grid.configurations],
                        columns=[f.name for f in dataclasses.fields(AttackConfiguration)])


def _smoothed_standard(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[(summary.model == "standard") & summary.sigma.notna()]


def _undefended(summary: pd.DataFrame) -> pd.Series:
    """Mean l2 distortion per attack on the standard model without smoothing."""
    return summary[(summary.model == "standard") & summary.sigma.isna()].set_index("attack").mean_l2


def judge_certificate_ratio(grid: AttackGrid) -> tuple[str, str]:
    """Claim 1: the smallest ratio, over attacks and smoothed classifiers, of the mean distortion to the
    mean certified radius of the same images; holds when it is at least 30 (the paper's factor)."""
    if not grid.ratios:
        return "no certified radii were recorded", NOT_MEASURED
    worst = min(grid.ratios, key=lambda r: r.ratio_of_means)
    median = float(np.median([r.ratio_of_means for r in grid.ratios]))
    text = f"smallest ratio {worst.ratio_of_means:.1f} ({worst.attack} vs {worst.target}); median ratio {median:.1f}"
    return text, _verdict(worst.ratio_of_means >= DISTORTION_OVER_RADIUS)


def judge_fewer_samples(grid: AttackGrid) -> tuple[str, str]:
    """Claim 2: for each attack, the mean distortion (averaged over sigma and Pa) at the smallest n against
    the largest n; holds when it is larger at the smallest n for every attack."""
    smoothed = _smoothed_standard(_configurations(grid))
    parts, ok = [], True
    for attack, part in smoothed.groupby("attack", sort=False):
        by_n = part.groupby("n").mean_l2.mean().sort_index()
        parts.append(f"{attack} " + " → ".join(f"{v:.2f}" for v in by_n))
        ok &= bool(by_n.iloc[0] > by_n.iloc[-1])
    return f"mean l2 for n = {', '.join(f'{n:g}' for n in sorted(smoothed.n.unique()))}: " + "; ".join(parts), \
        _verdict(ok)


def judge_rays_least_affected(grid: AttackGrid) -> tuple[str, str]:
    """Claim 3: per attack, the mean distortion over the smoothed standard classifiers divided by the
    undefended one; holds when RayS has the smallest factor."""
    summary = _configurations(grid)
    undefended = _undefended(summary)
    factors = _smoothed_standard(summary).groupby("attack").mean_l2.mean() / undefended
    factors = factors.dropna()
    if "RayS" not in factors or len(factors) < 2:
        return "RayS and another attack are needed", NOT_MEASURED
    text = "increase over the undefended model: " + ", ".join(f"{a} ×{f:.2f}" for a, f in factors.items())
    return text, _verdict(factors.idxmin() == "RayS")


def judge_larger_sigma(grid: AttackGrid) -> tuple[str, str]:
    """Claim 4: between the smallest and the largest sigma of the smoothed standard model, the mean
    distortion (over n and Pa) and the vote accuracy; holds when the accuracy is lower at the larger sigma
    and no attack gains more than 10% distortion from it."""
    smoothed = _smoothed_standard(_configurations(grid))
    sigmas = sorted(smoothed.sigma.unique())
    if len(sigmas) < 2:
        return "one sigma only", NOT_MEASURED
    low, high = smoothed[smoothed.sigma == sigmas[0]], smoothed[smoothed.sigma == sigmas[-1]]
    gain = high.groupby("attack").mean_l2.mean() / low.groupby("attack").mean_l2.mean()
    accuracy = (low.accuracy.mean(), high.accuracy.mean())
    text = (f"sigma {sigmas[0]:g} → {sigmas[-1]:g}: accuracy {accuracy[0]:.3f} → {accuracy[1]:.3f}; distortion "
            + ", ".join(f"{a} ×{g:.2f}" for a, g in gain.items()))
    return text, _verdict(accuracy[1] < accuracy[0] and bool((gain <= 1.1).all()))


def judge_randtrain(grid: AttackGrid) -> tuple[str, str]:
    """Claim 5: RandTrain under smoothing against the standard model at the largest sigma (means over n and
    Pa) and, for RayS, against the undefended model; holds when its accuracy is within 0.05, its mean
    distortion within 25% for the other attacks, and RayS needs less distortion than on the undefended model."""
    summary = _configurations(grid)
    rand = summary[summary.model == "randtrain"]
    smoothed = _smoothed_standard(summary)
    if rand.empty or smoothed.empty:
        return "RandTrain or the smoothed standard model is missing", NOT_MEASURED
    top = smoothed[smoothed.sigma == smoothed.sigma.max()]
    ratio = rand.groupby("attack").mean_l2.mean() / top.groupby("attack").mean_l2.mean()
    gap = abs(rand.accuracy.mean() - top.accuracy.mean())
    undefended = _undefended(summary)
    rays = rand[rand.attack == "RayS"].mean_l2.mean()
    text = (f"accuracy gap {gap:.3f}; distortion ratio RandTrain/RS σ={top.sigma.iloc[0]:g}: "
            + ", ".join(f"{a} {r:.2f}" for a, r in ratio.items()))
    if "RayS" in undefended:
        text += f"; RayS {rays:.2f} vs undefended {undefended['RayS']:.2f}"
    others = ratio.drop("RayS", errors="ignore")
    ok = gap <= 0.05 and bool(((others - 1).abs() <= 0.25).all()) and "RayS" in undefended \
        and rays < undefended["RayS"]
    return text, _verdict(ok)


def judge_pa(grid: AttackGrid) -> tuple[str, str]:
    """Claim 6: the mean distortion at the larger Pa over the smaller, per n (averaged over attacks and
    sigma); holds when it never exceeds 1.15 and is largest at the smallest n."""
    smoothed = _smoothed_standard(_configurations(grid))
    pas = sorted(smoothed.pa.dropna().unique())
    if len(pas) < 2:
        return "one Pa only", NOT_MEASURED
    by = smoothed.groupby(["n", "pa"]).mean_l2.mean().unstack("pa")
    ratio = (by[pas[-1]] / by[pas[0]]).sort_index()
    text = f"distortion Pa={pas[-1]:g} / Pa={pas[0]:g}: " + ", ".join(f"×{r:.2f} (n={n:g})" for n, r in ratio.items())
    return text, _verdict(bool((ratio <= 1.15).all()) and ratio.idxmax() == ratio.index[0])


def judge_rs_beats_advtrain(grid: AttackGrid) -> tuple[str, str]:
    """Claim 10: HSJA and SurFree against the smoothed model at the smallest sigma (mean over n and Pa) and
    against AdvTrain; holds when both attacks need more distortion against the smoothed model."""
    summary = _configurations(grid)
    smoothed = _smoothed_standard(summary)
    adv = summary[summary.model == "advtrain"].set_index("attack").mean_l2
    low = smoothed[smoothed.sigma == smoothed.sigma.min()].groupby("attack").mean_l2.mean()
    attacks = [a for a in ("HSJA", "SurFree") if a in adv and a in low]
    if not attacks:
        return "HSJA or SurFree against AdvTrain and RS is missing", NOT_MEASURED
    text = "; ".join(f"{a}: RS {low[a]:.2f} vs AdvTrain {adv[a]:.2f}" for a in attacks)
    return text, _verdict(all(low[a] > adv[a] for a in attacks))


def judge_boundary_push(push: BoundaryPush) -> tuple[str, str]:
    """Claim 7: the median distance past the white-box x_a at which the boundary of g_sigma is crossed, with
    the sign test of "beyond x_a" over the images, and the width of the transition (distance from the
    smallest to the largest measured P_a) at the smallest and largest n; holds when the crossing is beyond
    x_a for significantly more than half of the images (sign test p < 0.05) and the transition is wider at
    the smallest n."""
    ns = sorted(push.distance_at_pa)
    low, high = min(push.pas), max(push.pas)
    if low == high:
        return f"one level P_a = {low:g} only", NOT_MEASURED

    def width(n: int) -> float:
        at = push.distance_at_pa[n]
        return np.nan if at[low] is None or at[high] is None else at[high] - at[low]

    main = push.crossing(push.sigma)
    p_beyond = np.nan if main.p_beyond is None else main.p_beyond
    located = main.images - main.censored
    median = "not located" if main.median is None else f"{main.median:.3f}"
    text = (f"median crossing {median} past x_a (σ = {push.sigma:g}), beyond x_a for {main.beyond} of {located} "
            f"images (sign test p = {p_beyond:.2g}); P {low:g} → {high:g} over "
            + ", ".join(f"{width(n):.3f} (n={n})" for n in ns))
    ok = p_beyond < 0.05 and np.isfinite(width(ns[0])) and np.isfinite(width(ns[-1])) and width(ns[0]) > width(ns[-1])
    return text, _verdict(bool(ok))


def judge_bisection_spread(spread: BisectionSpread) -> tuple[str, str]:
    """Claim 8: the standard deviation of the bisection's output at each n; holds when it decreases from
    the smallest to the largest n."""
    by_n = dict(sorted(spread.spread.items()))
    ns = list(by_n)
    text = "spread " + ", ".join(f"{s:.3f} (n={n})" for n, s in by_n.items())
    return text, _verdict(by_n[ns[0]] > by_n[ns[-1]])


def judge_eq5(check: ThresholdCheck) -> tuple[str, str]:
    """Claim 11: P[g_{sigma,n} adversarial] at the threshold eq. (5) prints, for each n; holds when it
    equals Pa (to 1e-6) for every n checked, odd and even."""
    probability = dict(sorted(check.probability_at_threshold.items()))
    text = f"at Pa = {check.pa:g}: " + ", ".join(f"{p:.3f} (n={n})" for n, p in probability.items())
    return text, _verdict(all(abs(p - check.pa) <= 1e-6 for p in probability.values()))


CLAIMS: tuple[Claim, ...] = (
    Claim(1, "Black-box attacks need distortions far larger than the certified radius.",
          f"at least {DISTORTION_OVER_RADIUS} times larger", "fig5_attacks",
          f"smallest ratio of mean distortion to mean certified radius ≥ {DISTORTION_OVER_RADIUS}",
          judge_certificate_ratio),
    Claim(2, "Fewer Monte Carlo samples n give larger distortions, for every attack.",
          "SurFree, σ = 0.05: 41 → 37 → 34 for n = 10, 50, 100", "fig5_attacks",
          "mean distortion larger at the smallest n than at the largest, for every attack", judge_fewer_samples),
    Claim(3, "RayS is the attack least affected by smoothing.",
          "RayS ≈ 15 with RS against 13.4 without; HSJA ≈ 47 against 17.4", "fig5_attacks",
          "RayS has the smallest ratio of distortion with RS to distortion without", judge_rays_least_affected),
    Claim(4, "A larger σ costs accuracy without adding robustness.",
          "σ = 0.15 costs 12% accuracy (σ = 0.05: 3%); HSJA ≈ 36 against ≈ 48", "fig5_attacks",
          "accuracy lower at the larger σ and no attack gains more than 10% distortion", judge_larger_sigma),
    Claim(5, "Noise training (RandTrain) with RS behaves like the standard model with RS at the large σ, "
             "and against RayS it is less robust than the undefended model.",
          "accuracy 0.64 vs 0.62; RayS ≈ 11 against 13.4 undefended", "fig5_attacks",
          "accuracy within 0.05, HSJA and SurFree distortion within 25%, RayS below the undefended model",
          judge_randtrain),
    Claim(6, "The level P_a matters little, and mostly for small n.",
          "80% against 50%: slightly larger distortions, mostly at n = 10", "fig5_attacks",
          "distortion at the larger P_a at most 1.15 times the smaller, largest ratio at the smallest n",
          judge_pa),
    Claim(7, "Smoothing pushes the boundary beyond the base classifier's, and the transition from 0 to 1 of "
             "P[g_{σ,n}(x) ≠ y] is wider for small n.",
          "boundary of g_σ crossed about 4.0 past x_a on ImageNet", "fig1_adversarial_probability",
          "crossing beyond x_a for significantly more than half of the images (sign test p < 0.05), and a wider "
          "transition from the smallest to the largest P_a at the smallest n", judge_boundary_push),
    Claim(8, "Smoothing disturbs the binary search; its spread shrinks as n grows.",
          "peak 0.13 (n = 10), 0.21 (n = 50), 0.28 (n = 100)", "fig3_binary_search",
          "spread of the search's output smaller at the largest n", judge_bisection_spread),
    Claim(9, "Normal vectors estimated at the boundary with and without smoothing correlate well when the "
             "estimation noise exceeds σ; HSJA sometimes crashes when every probe gets the same label.",
          "stated, no number", None, "no chapter of this book measures it", None),
    Claim(10, "Smoothing at the small σ beats adversarial training in practice against HSJA and SurFree.",
          "HSJA ≈ 47 vs 22.8; SurFree ≈ 34-41 vs 21.2 (accuracy 0.73 vs 0.56)", "fig5_attacks",
          "both attacks need more distortion against RS at the smallest σ than against AdvTrain",
          judge_rs_beats_advtrain),
    Claim(11, "Eq. (5) gives the threshold on π_0(x_a) above which a vote is adversarial with probability "
              "P_a.", "eq. (5), with ñ = 1 + ⌊n/2⌋, for every n", "theory",
          "the exact probability at the printed threshold equals P_a for every n checked", judge_eq5),
)


def scorecard(profile: str | None) -> pd.DataFrame:
    """One row per claim: the paper's statement and number, what this build measured, the verdict.

    Parameters
    ----------
    profile : str or None
        Only measurements recorded under this profile count (``None``: any).

    Returns
    -------
    pandas.DataFrame
        Columns ``claim, statement, paper, measured, verdict, rule, chapter``.
    """
    rows = []
    for claim in CLAIMS:
        record = measurements.load(claim.chapter, profile) if claim.chapter else None
        if record is None or claim.judge is None:
            measured, verdict = "—", NOT_MEASURED
        else:
            measured, verdict = claim.judge(record)
        rows.append({"claim": claim.number, "statement": claim.statement, "paper": claim.paper,
                     "measured": measured, "verdict": verdict, "rule": claim.rule, "chapter": claim.chapter})
    return pd.DataFrame(rows)


def summary_sentence(card: pd.DataFrame) -> str:
    """The scorecard in one sentence, e.g. "Of the 11 claims, 5 hold in this build, 1 does not hold and
    1 is not measured." (``card`` as :func:`scorecard` returns it)."""
    counts = card.verdict.value_counts()
    holds, fails, unmeasured = (int(counts.get(v, 0)) for v in (HOLDS, FAILS, NOT_MEASURED))
    return (f"Of the {len(card)} claims, {holds} {agree(holds, 'holds', 'hold')} in this build, {fails} "
            f"{agree(fails, 'does', 'do')} not hold and {unmeasured} {agree(unmeasured, 'is', 'are')} not measured")


#: The chapters' short names in the scorecard's links.
CHAPTER_TITLES = {"theory": "theory", "fig1_adversarial_probability": "Fig. 1", "fig3_binary_search": "Fig. 3",
                  "fig5_attacks": "Fig. 5"}


def scorecard_markdown(card: pd.DataFrame) -> str:
    """The scorecard as a Markdown table for the page, verdicts in bold and chapters linked
    (``card`` as :func:`scorecard` returns it)."""
    lines = ["| # | claim (paper's number) | measured here | verdict | rule | chapter |", "|---|---|---|---|---|---|"]
    for row in card.itertuples():
        chapter = f"[{CHAPTER_TITLES.get(row.chapter, row.chapter)}]({row.chapter}.ipynb)" if row.chapter else "—"
        verdict = f"**{row.verdict}**" if row.verdict in (HOLDS, FAILS) else row.verdict
        lines.append(f"| {row.claim} | {row.statement} ({row.paper}) | {row.measured} | {verdict} | {row.rule} | "
                     f"{chapter} |")
    return "\n".join(lines)
