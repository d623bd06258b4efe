"""The claims' tables for the claims chapter: the scorecard of one profile, the verdicts across profiles and
input dimension, where each profile's records were computed, and the sentences that sum them up.

:func:`scorecard` judges every claim (:data:`rs_repro.claims.paper.CLAIMS` or
:data:`rs_repro.claims.beyond.BEYOND`) on the records of one profile, and :func:`scorecard_markdown` shows it.
Across profiles (digits d = 64, Fashion-MNIST d = 784, ImageNet d = 150,528), :func:`across_profiles` lays
the verdicts side by side by input dimension, :func:`dimension_sentence` says which of them change with it,
and :func:`across_dimension` with :func:`plot_across_dimension` follows the statistics of claims 1 and 7
against d. Everything the records name is shown as plain text (:func:`rs_repro.report.markup.markdown_cell`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from rs_repro import data
from rs_repro.claims.kernel import (
    DAMAGED,
    NOT_MEASURED,
    NOT_TESTABLE,
    Claim,
    Judgement,
    Part,
    label,
    threshold_part,
    worst_part,
)
from rs_repro.claims.paper import (
    CLAIMS,
    OVER_RADIUS,
    certificate_ratios,
    push_in_sigma,
    undefended_over_minimal,
)
from rs_repro.pipeline import publish
from rs_repro.report import measurements
from rs_repro.report.markup import markdown_cell, markdown_code
from rs_repro.report.paper import DISTORTION_OVER_RADIUS
from rs_repro.report.plots import PALETTE
from rs_repro.report.prose import agree
from rs_repro.report.verdicts import FAILS, HOLDS, UNDECIDED, Interval


def scorecard(profile: str | None, claims: Sequence[Claim] = CLAIMS) -> pd.DataFrame:
    """One row per claim: the paper's statement and number, what this build measured, the verdicts.

    Parameters
    ----------
    profile : str or None
        Only measurements recorded under this profile count (``None``: any).
    claims : sequence of Claim
        The paper's (:data:`~rs_repro.claims.paper.CLAIMS`, the default) or those beyond it
        (:data:`~rs_repro.claims.beyond.BEYOND`).

    Returns
    -------
    pandas.DataFrame
        Columns ``claim, statement, paper, measured, verdict, headline, statistic, protocol_measured, protocol,
        protocol_headline, rule, chapter``: ``headline`` and ``statistic`` as in
        :class:`~rs_repro.claims.kernel.Judgement`; ``protocol_measured``, ``protocol`` and
        ``protocol_headline`` are the judgement on the paper's protocol (``None`` for the claims that have none
        or were not measured).
    """
    rows = []
    for claim in claims:
        record = measurements.load(claim.chapter, profile)
        judged = Judgement("—", NOT_MEASURED) if record is None else claim.judge(record)
        protocol = judged.protocol
        rows.append({"claim": claim.number, "statement": claim.statement, "paper": claim.paper,
                     "measured": judged.measured, "verdict": judged.verdict, "headline": judged.headline,
                     "statistic": judged.statistic,
                     "protocol_measured": None if protocol is None else protocol.measured,
                     "protocol": None if protocol is None else protocol.verdict,
                     "protocol_headline": None if protocol is None else protocol.headline, "rule": claim.rule,
                     "chapter": claim.chapter})
    return pd.DataFrame(rows)


def summary_sentence(card: pd.DataFrame) -> str:
    """The scorecard in one sentence, e.g. "Of the 11 claims, 5 hold in this build, 1 does not hold, 2 are
    undecided, 1 is not testable in this profile and 2 are not measured" (``card`` as :func:`scorecard`
    returns it)."""
    counts = card.verdict.value_counts()
    holds, fails, undecided, untestable, unmeasured = (int(counts.get(v, 0)) for v in
                                                       (HOLDS, FAILS, UNDECIDED, NOT_TESTABLE, NOT_MEASURED))
    return (f"Of the {len(card)} claims, {holds} {agree(holds, 'holds', 'hold')} in this build, {fails} "
            f"{agree(fails, 'does', 'do')} not hold, {undecided} {agree(undecided, 'is', 'are')} undecided, "
            f"{untestable} {agree(untestable, 'is', 'are')} not testable in this profile and {unmeasured} "
            f"{agree(unmeasured, 'is', 'are')} not measured")


#: The chapters' short names in the scorecard's links.
CHAPTER_TITLES = {"theory": "theory", "fig1_adversarial_probability": "Fig. 1", "fig3_binary_search": "Fig. 3",
                  "fig5_attacks": "Fig. 5", "normal_vectors": "normal vectors", "adaptive_attacks": "adaptive attacks"}


def _bold(verdict: str) -> str:
    """A decided verdict in bold (Markdown)."""
    return f"**{verdict}**" if verdict in (HOLDS, FAILS) else verdict


def scorecard_markdown(card: pd.DataFrame, source: str = "paper's number", protocols: bool = True) -> str:
    """The scorecard as a Markdown table for the page, decided verdicts in bold, the paper's protocol in its
    own column (unless ``protocols`` is false: the claims beyond the paper have none) and chapters linked
    (``card`` as :func:`scorecard` returns it; ``source`` names what the text in brackets after each claim is).
    The measured texts, which name what the records name (attacks, models, datasets), are shown as plain text
    (:func:`rs_repro.report.markup.markdown_cell`)."""
    lines = [f"| # | claim ({source}) | measured here | verdict |" + (" paper's protocol |" if protocols else "")
             + " rule | chapter |", "|---|---|---|---|" + ("---|" if protocols else "") + "---|---|"]
    for row in card.itertuples():
        chapter = f"[{CHAPTER_TITLES.get(row.chapter, row.chapter)}]({row.chapter}.ipynb)"
        protocol = ("—" if row.protocol is None else
                    f"{_bold(row.protocol)}: {markdown_cell(row.protocol_measured)}")
        lines.append(f"| {row.claim} | {row.statement} ({row.paper}) | {markdown_cell(row.measured)} | "
                     f"{_bold(row.verdict)} | "
                     + (f"{protocol} | " if protocols else "") + f"{row.rule} | {chapter} |")
    return "\n".join(lines)


def profile_dimensions(profile: str) -> list[int]:
    """The input dimensions d = C H W of the datasets that the records of ``profile`` name
    (:func:`rs_repro.data.input_shape`), e.g. ``[64]`` for digits; one when the profile's chapters share a
    dataset, none when no record names one (the theory chapter's does not).

    Returns
    -------
    list of int
        Distinct, increasing.
    """
    named = {record.dataset for stem in measurements.SCHEMA
             if (record := measurements.load(stem, profile)) is not None and hasattr(record, "dataset")}
    return sorted({math.prod(data.input_shape(name)) for name in named})


def _dimension_order(dimensions: Sequence[int]) -> tuple[bool, int]:
    """Sort key of a profile by its dimensions: by the largest, profiles without one last."""
    return (not dimensions, max(dimensions, default=0))


def across_profiles(profiles: Sequence[str], claims: Sequence[Claim] = CLAIMS) -> pd.DataFrame:
    """The verdicts of every claim, with their headline intervals, under each profile that recorded
    measurements (the claims at growing dimension: digits d = 64, Fashion-MNIST d = 784, ImageNet
    d = 150,528).

    Parameters
    ----------
    profiles : sequence of str
        The profiles (e.g. :func:`rs_repro.report.measurements.recorded_profiles`); the table orders them by input
        dimension (:func:`profile_dimensions`, the largest of a profile's), those without one last, and keeps
        the given order among equals.
    claims : sequence of Claim
        As in :func:`scorecard`.

    Returns
    -------
    pandas.DataFrame
        One row per claim and profile: ``claim, profile, dimensions, verdict, headline, statistic, protocol,
        protocol_headline, damage`` (``dimensions``: the tuple of :func:`profile_dimensions`; ``headline`` and
        ``statistic`` as in :class:`~rs_repro.claims.kernel.Judgement`; ``protocol`` and ``protocol_headline``:
        the verdict and headline on the paper's protocol, ``None`` where the claim has none),
        :data:`~rs_repro.claims.kernel.NOT_MEASURED` where that profile recorded nothing for the claim. A
        profile with a record that cannot be read (ValueError from :func:`rs_repro.report.measurements.load`,
        naming the file) has :data:`~rs_repro.claims.kernel.DAMAGED` in every row, no dimension, and the error
        in ``damage`` (``None`` elsewhere); the other profiles are unaffected.
    """
    dimensions, cards, damage = {}, {}, {}
    for profile in profiles:
        try:
            dimensions[profile] = tuple(profile_dimensions(profile))
            cards[profile] = scorecard(profile, claims)
        except ValueError as exc:
            dimensions[profile], damage[profile] = (), str(exc)
            cards[profile] = pd.DataFrame({"claim": [c.number for c in claims], "verdict": DAMAGED, "headline": None,
                                           "statistic": None, "protocol": None, "protocol_headline": None})
    ordered = sorted(profiles, key=lambda profile: _dimension_order(dimensions[profile]))
    columns = ["claim", "profile", "dimensions", "verdict", "headline", "statistic", "protocol", "protocol_headline",
               "damage"]
    parts = [cards[profile].assign(profile=profile, dimensions=[dimensions[profile]] * len(claims),
                                   damage=damage.get(profile)) for profile in ordered]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def _cell(verdict: str, headline: Interval | None) -> str:
    """A verdict, in bold when decided, with its headline interval, e.g. ``**holds** 3.1 [2.4, 4]``."""
    return _bold(verdict) + ("" if headline is None else f" {headline}")


def _profile_header(profile: str, dimensions: Sequence[int]) -> str:
    """A profile's column title with its input dimensions, e.g. ``default (d = 64)`` (the name as plain text)."""
    name = markdown_cell(profile)
    return f"{name} (d = {', '.join(f'{d:,}' for d in dimensions)})" if dimensions else name


def _damage(table: pd.DataFrame) -> dict[str, str]:
    """The profiles of an :func:`across_profiles` table whose records cannot be read, with the error."""
    if "damage" not in table:
        return {}
    return {r.profile: r.damage for r in table.itertuples() if isinstance(r.damage, str)}


def across_markdown(table: pd.DataFrame) -> str:
    """:func:`across_profiles` as a Markdown table, one column per profile in the table's order with its input
    dimension, each cell the verdict (bold when decided) with its headline interval, and the paper's protocol
    in brackets. A damaged profile's column says so in every cell, and a paragraph after the table names the
    file and the error (as plain text, :func:`rs_repro.report.markup.markdown_cell`)."""
    profiles = dict(zip(table.profile, table.dimensions, strict=True))
    damaged = _damage(table)
    cell = {(r.claim, r.profile): _cell(r.verdict, r.headline)
            + ("" if r.protocol is None else f" (paper's protocol: {_cell(r.protocol, r.protocol_headline)})")
            for r in table.itertuples()}
    lines = ["| # | " + " | ".join(_profile_header(p, d) + (" (damaged)" if p in damaged else "")
                                   for p, d in profiles.items()) + " |",
             "|---|" + "---|" * len(profiles)]
    lines += [f"| {claim} | " + " | ".join(cell[claim, p] for p in profiles) + " |"
              for claim in dict.fromkeys(table.claim)]
    lines += [f"\nThe column {markdown_cell(p)} is damaged, its verdicts are not shown: {markdown_cell(error)}"
              for p, error in damaged.items()]
    return "\n".join(lines)


def _listed(values: Sequence[str], partial: bool) -> str:
    """The distinct ``values`` in order as plain text, ``unrecorded`` if none; ``partial``: some records had no
    stamp."""
    shown = ", ".join(markdown_cell(v) for v in dict.fromkeys(values))
    return (shown or "unrecorded") + (" (and unrecorded)" if partial else "")


def provenance_markdown(profiles: Sequence[str]) -> str:
    """Where and when each profile's column was computed, as a Markdown table: one row per profile with the
    hosts, accelerators and commits its records name (:func:`rs_repro.report.measurements.provenance`), the time of
    its first and last record, and the archive it was imported from (:func:`rs_repro.pipeline.publish.imported`).

    A record written before records carried their provenance counts as ``unrecorded``; a profile whose records
    or manifest cannot be read has one row saying so, with the file and the error. Every string read from the
    records or the manifest is shown as plain text (:func:`rs_repro.report.markup.markdown_cell`).
    """
    lines = ["| profile | computed on | accelerator | commit | when (UTC) | brought back from |",
             "|---|---|---|---|---|---|"]
    for profile in profiles:
        try:
            stamps = [measurements.provenance(stem, profile) for stem in measurements.SCHEMA
                      if measurements.path(stem, profile).exists()]
            source = publish.imported(profile)
        except ValueError as exc:
            lines.append(f"| {markdown_cell(profile)} | {DAMAGED}: {markdown_cell(exc)} | — | — | — | — |")
            continue
        known = [s for s in stamps if s]
        listed = partial(_listed, partial=bool(known) and len(known) < len(stamps))

        commits = [s["commit"][:10] + ("+" if s["dirty"] else "") if s["commit"] else "not a git checkout"
                   for s in known]
        times = sorted(s["time"].replace("+00:00", "") for s in known)
        when = "unrecorded" if not times else times[0] if times[0] == times[-1] else f"{times[0]} to {times[-1]}"
        origin = markdown_code(source.get("archive", "an archive")) if source else "computed in this build"
        lines.append(f"| {markdown_cell(profile)} | {listed([s['machine']['host'] for s in known])} | "
                     f"{listed([s['machine']['accelerator'] for s in known])} | {listed(commits)} | "
                     f"{markdown_cell(when)} | {origin} |")
    return "\n".join(lines)


def _claims_list(numbers: Sequence[int]) -> str:
    """``claim 3``, ``claims 1 and 7``, ``claims 1, 2 and 7``."""
    words = [str(n) for n in numbers]
    listed = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
    return f"{agree(len(words), 'claim', 'claims')} {listed}"


def _numbers_list(values: Sequence[int]) -> str:
    """``64``, ``64 and 784``, ``64, 784 and 150,528``."""
    words = [f"{v:,}" for v in values]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def dimension_sentence(table: pd.DataFrame) -> str:
    """Which claims' verdicts change with the input dimension, from what the profiles measured.

    Only profiles of a single known dimension count (:func:`profile_dimensions`), and only decided verdicts
    (holds, does not hold). A claim whose decided verdicts *differ between profiles of the same dimension*
    is put apart (the sizes, not the dimension, move it). Otherwise each dimension has at most one
    decided verdict: the claim *changes with the dimension* when two dimensions have different ones, *keeps
    one verdict at every measured dimension* when every dimension has the same one, and else it is
    *undecided, not testable or not measured at some dimension*.

    Parameters
    ----------
    table : pandas.DataFrame
        As :func:`across_profiles` returns it.

    Returns
    -------
    str
        One sentence, e.g. "Measured at d = 64 and 784: the decided verdicts of claims 1 and 7 change with
        the dimension; claims 2 and 11 keep one verdict at every measured dimension; claims 3, 4, 5, 6, 8, 9
        and 10 are undecided, not testable or not measured at some dimension." With one dimension only, it
        says so.
    """
    dimensions = dict(zip(table.profile, table.dimensions, strict=True))
    known = {profile: d[0] for profile, d in dimensions.items() if len(d) == 1}
    damaged = _damage(table)
    left_out = [profile for profile in dimensions if profile not in known and profile not in damaged]
    skipped = "".join(f" (profile {', '.join(names)} left out: {why})" for names, why in
                      ((left_out, "its records name no single dataset"), (list(damaged), "damaged records"))
                      if names)
    distinct = sorted(set(known.values()))
    if len(distinct) < 2:
        measured = (f"Only one input dimension was measured (d = {distinct[0]:,}, profile {', '.join(known)})"
                    if distinct else "No input dimension was measured")
        return f"{measured}{skipped}: no claim's verdict can be said to change with the dimension."
    within, changes, same, incomplete = [], [], [], []
    rows = table[table.profile.isin(list(known))]
    for claim, part in rows.groupby("claim", sort=False):
        decided: dict[int, set[str]] = {d: set() for d in distinct}
        for profile, verdict in zip(part.profile, part.verdict, strict=True):
            if verdict in (HOLDS, FAILS):
                decided[known[profile]].add(verdict)
        by_dimension = set().union(*decided.values())
        if any(len(found) > 1 for found in decided.values()):
            within.append(claim)
        elif len(by_dimension) > 1:
            changes.append(claim)
        elif all(decided.values()):
            same.append(claim)
        else:
            incomplete.append(claim)
    clauses = [f"the decided verdicts of {_claims_list(changes)} change with the dimension" if changes else
               "no claim's decided verdict changes with the dimension"]
    if same:
        clauses.append(f"{_claims_list(same)} {agree(len(same), 'keeps', 'keep')} one verdict at every measured "
                       "dimension")
    if within:
        clauses.append(f"{_claims_list(within)} {agree(len(within), 'differs', 'differ')} between profiles of "
                       "the same dimension")
    if incomplete:
        clauses.append(f"{_claims_list(incomplete)} {agree(len(incomplete), 'is', 'are')} undecided, not testable or "
                       "not measured at some dimension")
    return f"Measured at d = {_numbers_list(distinct)}{skipped}: " + "; ".join(clauses) + "."


#: The panels of :func:`plot_across_dimension`, by the name :func:`across_dimension` gives their points, each
#: with its title, y label, y scale and reference line (value, label).
#:
#: :meta hide-value:
PANELS = {
    "undefended": ("undefended model:\nblack-box / white-box minimal distortion", "median ratio", "linear",
                   (1.0, "white-box minimal")),
    "certificate": ("smoothed classifiers, the worst per attack:\nconfirmed distortion / certified radius",
                    "median ratio", "log", (float(DISTORTION_OVER_RADIUS), "the paper's factor")),
    "push": ("boundary of $g_\\sigma$ past the white-box $x_a$\n(each profile's main σ)",
             "median crossing, in units of σ", "linear", (0.0, "$x_a$")),
}


def across_dimension(profiles: Sequence[str]) -> pd.DataFrame:
    """The three quantities whose growth with the input dimension claims 1 and 7 are about, per profile.

    ``undefended``: per attack, the median black-box distortion on the undefended model over the median
    white-box minimal one (:func:`~rs_repro.claims.paper.undefended_over_minimal`); ``certificate``: per attack,
    claim 1's ratio of the median confirmed distortion to the median certified radius on its worst smoothed
    classifier (the worst of :func:`~rs_repro.claims.paper.certificate_ratios`, converged attacks included);
    ``push``: the median crossing of the boundary of g_sigma past x_a at the chapter's main sigma, in units of
    sigma (:func:`~rs_repro.claims.paper.push_in_sigma`). Every interval is a pointwise 95% one (the judges read
    them Bonferroni-corrected).

    Parameters
    ----------
    profiles : sequence of str
        The profiles; one that did not record a chapter (or recorded fewer than 2 Fig. 5 images) has no
        point in its panels, nor one with a record that cannot be read (:func:`across_profiles` shows it).

    Returns
    -------
    pandas.DataFrame
        One row per point: ``panel`` (a key of :data:`PANELS`), ``profile``, ``dataset``, ``d`` (its input
        dimension), ``series`` (the attack; for ``push``, the noise level), ``estimate``, ``lower``,
        ``upper`` (the pointwise 95% interval).
    """
    rows = []

    def point(panel: str, profile: str, dataset: str, series: str, interval: Interval) -> None:
        rows.append({"panel": panel, "profile": profile, "dataset": dataset,
                     "d": math.prod(data.input_shape(dataset)), "series": series, "estimate": interval.estimate,
                     "lower": interval.lower, "upper": interval.upper})

    for profile in profiles:
        try:
            profile_dimensions(profile)  # every record readable, every dataset known
        except ValueError:  # a damaged record: the table across profiles shows it
            continue
        grid = measurements.load("fig5_attacks", profile)
        push = measurements.load("fig1_adversarial_probability", profile)
        if grid is not None and len(grid.images) >= 2:
            for attack, interval in undefended_over_minimal(grid).items():
                point("undefended", profile, grid.dataset, attack, interval)
            by_attack: dict[str, list[Part]] = {}
            for c, interval in certificate_ratios(grid):
                if interval is not None:
                    by_attack.setdefault(c.attack, []).append(threshold_part(OVER_RADIUS, label(c), interval,
                                                                             DISTORTION_OVER_RADIUS))
            for attack, parts in by_attack.items():
                point("certificate", profile, grid.dataset, attack, worst_part(parts).interval)
        if push is not None:
            point("push", profile, push.dataset, f"σ = {push.sigma:g}", push_in_sigma(push))
    return pd.DataFrame(rows, columns=["panel", "profile", "dataset", "d", "series", "estimate", "lower", "upper"])


#: Points of one panel that share a d are spread over this factor of d around it, so none hides another.
_DODGE = 1.15


def plot_across_dimension(points: pd.DataFrame) -> plt.Figure:
    """The quantities of :func:`across_dimension` against the input dimension d (log scale), one panel each
    (:data:`PANELS`), error bars the 95% intervals, one colour per series, with each panel's reference line.

    A panel with no point says so. Points sharing a d are spread slightly in x; a bound that is infinite
    (an attack that failed on most images, or too few images for an order-statistic interval), or not
    positive on a log scale, is drawn to the edge of the panel.

    Parameters
    ----------
    points : pandas.DataFrame
        As :func:`across_dimension` returns it.

    Returns
    -------
    matplotlib.figure.Figure
        One row of :data:`PANELS`, left to right.
    """
    fig, axes = plt.subplots(1, len(PANELS), figsize=(14, 4.2))
    for ax, (panel, (title, ylabel, yscale, (reference, reference_label))) in zip(axes, PANELS.items(),
                                                                                  strict=True):
        part = points[points.panel == panel]
        ax.axhline(reference, color="grey", ls="--", lw=1, label=reference_label)
        ax.set(title=title, xlabel="input dimension d", ylabel=ylabel, xscale="log", yscale=yscale)
        if part.empty:
            ax.text(0.5, 0.5, "not recorded under any profile", transform=ax.transAxes, ha="center", va="center")
            continue
        values = part[["estimate", "lower", "upper"]].to_numpy()
        finite = np.append(values[np.isfinite(values)], reference)
        if yscale == "log":
            finite = finite[finite > 0]
            low, high = finite.min() / 1.5, finite.max() * 1.5
        else:
            pad = 0.1 * max(np.ptp(finite), 1e-9)
            low, high = finite.min() - pad, finite.max() + pad
        slot = part.groupby("d").cumcount().to_numpy()
        spread = part.groupby("d").d.transform("size").to_numpy()
        x = part.d.to_numpy() * _DODGE ** ((slot - (spread - 1) / 2) / np.maximum(spread - 1, 1))
        clipped = np.clip(values, low, high)
        for k, series in enumerate(dict.fromkeys(part.series)):
            at = (part.series == series).to_numpy()
            y, bottom, top = clipped[at].T
            ax.errorbar(x[at], y, yerr=[y - bottom, top - y], fmt="o", capsize=3, color=PALETTE[k], label=series)
        ax.set_ylim(low, high)
        ticks = part.groupby("d").profile.agg(lambda p: ", ".join(dict.fromkeys(p)))
        ax.set_xticks(ticks.index, [f"{d:,}\n{names}" for d, names in ticks.items()], minor=False)
        ax.set_xticks([], minor=True)
        ax.set_xlim(ticks.index.min() / 2, ticks.index.max() * 2)
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig
