"""The ``claims`` chapter: each headline claim of the paper against the numbers this build measured.

The claims are those of ``paper-notes.md`` section 4 (Maho, Furon, Le Merrer, ICASSP 2022), restated in our
words. Every claim is decided by a *judge*: a function of the typed record one chapter wrote
(:data:`rs_repro.report.measurements.SCHEMA`) that returns a :class:`Judgement`, with the interval its verdict was
decided on. Nothing is measured again here: a chapter that did not run under the profile asked for leaves its
claims "not measured in this profile".

A judge works on the per-image values of its record (``docs/architecture.md``, "Measurements and verdicts"): medians over
images and medians of per-image paired differences, where a failure (an attack that found no adversarial
example) is censored at inf, kept and never dropped, so a median is finite only where fewer than half fail.
Their intervals are bootstrap intervals (:func:`rs_repro.report.verdicts.bootstrap`) that resample the images
jointly across all configurations, from a seed derived from the record's seed and the claim's number;
proportions have exact Clopper-Pearson intervals, medians of few units (Fig. 1's images, Fig. 3's
segments) exact order-statistic intervals, and claim 4's accuracies an exact paired McNemar test. A rule
that reads several intervals reads each at the Bonferroni confidence that makes them 95% family-wise
(:func:`rs_repro.report.verdicts.bonferroni`): it does not hold when one lies on the other side of its threshold.
The verdict is read off the intervals by the rule stated in ``Claim.rule``: *holds*, *does not hold*,
*undecided* (an interval contains its threshold, or claim 4's premise is not established) or *not testable
in this profile* (the record lacks what the rule needs, or, for claim 1, the attacks converged). Every
parameter (the levels of sigma, n and P_a, the attacks) is read from the record, and every measured text
gives the confidence, the number of images and of failures; no printed number is rounded across the
threshold it is read against (:func:`rs_repro.report.verdicts.shown`). The Fig. 5 claims 2-6 and 10 are judged on
the confirmed distortions (eq. 4 confirmed with fresh votes, :func:`rs_repro.attacks.verification.push_to_level`)
and, beside, on the paper's protocol (the distortions the attacks reported under the ceil(n P_a) rule).

Across profiles (digits d = 64, Fashion-MNIST d = 784, ImageNet d = 150,528), :func:`across_profiles` lays
the verdicts side by side by input dimension, :func:`dimension_sentence` says which of them change with it,
and :func:`across_dimension` with :func:`plot_across_dimension` follows the statistics of claims 1 and 7
against d.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from rs_repro import data
from rs_repro.pipeline import publish
from rs_repro.report import measurements, verdicts
from rs_repro.report.markup import markdown_cell, markdown_code
from rs_repro.report.measurements import (
    AdaptiveGrid,
    AttackConfiguration,
    AttackGrid,
    BisectionSpread,
    BoundaryPush,
    Crossing,
    NormalAgreement,
    ThresholdCheck,
)
from rs_repro.report.paper import DISTORTION_OVER_RADIUS
from rs_repro.report.plots import PALETTE
from rs_repro.report.prose import agree
from rs_repro.report.verdicts import FAILS, HOLDS, UNDECIDED, Interval
from rs_repro.seeds import derive_seed

#: The verdict when the record lacks what the claim's rule needs (the reason is in the measured text).
NOT_TESTABLE = "not testable in this profile"
#: The verdict when no chapter recorded the claim's measurements under the profile.
NOT_MEASURED = "not measured in this profile"
#: The verdict in every cell of a profile whose records cannot be read (the table across profiles).
DAMAGED = "damaged record"

#: The family-wise confidence of the intervals a rule reads. With several, each is at the Bonferroni
#: confidence that gives them this one together (:func:`rs_repro.report.verdicts.bonferroni`).
CONFIDENCE = verdicts.CONFIDENCE
#: Claim 1 is not testable when every attack's median distortion on the undefended model is within this
#: factor of the white-box minimal distortion.
CONVERGED = 1.2
#: Claim 4 allows the larger sigma at most this factor of distortion.
MAX_GAIN = 1.1
#: Claim 5 calls two accuracies alike within this difference.
SAME_ACCURACY = 0.05
#: Claim 5 calls two distortions alike within this relative difference.
SAME_DISTORTION = 0.25
#: Claim 6 calls the effect of P_a little when the ratio of the distortions at its two levels lies between
#: 1 / PA_EFFECT and PA_EFFECT (a band symmetric in log around 1).
PA_EFFECT = 1.15
#: Claim 9 calls two normal estimates well correlated above this mean cosine.
WELL_CORRELATED = 0.5
#: Claim 11 holds when the exact probability at eq. (5)'s threshold is within this of P_a (floating error).
EQ5_TOLERANCE = 1e-6
#: The level of the exact one-sided McNemar tests of claim 4's premise (the larger sigma costs accuracy).
SIGNIFICANCE = 0.05
#: Claim 7's smallest push of the boundary of g_sigma past x_a, in units of sigma. A flat boundary of f is
#: not pushed (eq. 3), and the vote alone moves the level P_a = 0.8 of eq. (4) past it by
#: sigma Phi^-1(I^-1_0.8(n~, n~)) (eq. 6): 0.45 sigma at n = 5, 0.31 sigma at n = 10, 0.15 sigma at n = 50,
#: what the paper calls moving "a little". A push "well beyond" x_a exceeds the largest of these.
MIN_PUSH = 0.5
#: The attack whose distortions claims 3 and 5 single out.
RAYS = "RayS"
#: The attacks of claim 10.
ADVTRAIN_ATTACKS = ("HSJA", "SurFree")
#: The attack the adaptive-attacks chapter runs with k times the budget and with jittered repeats in every
#: profile: claims 12, 13 and 16 are about it alone.
WRAPPED = "HSJA"


@dataclass(frozen=True)
class Judgement:
    """A claim's verdict on one record.

    Attributes
    ----------
    measured : str
        What the rule read, with every interval it used, e.g. "median paired difference 0.21 [0.05, 0.4]",
        the confidence of the intervals, the number of images and of failures; for :data:`NOT_TESTABLE`,
        the reason.
    verdict : str
        :data:`~rs_repro.report.verdicts.HOLDS`, :data:`~rs_repro.report.verdicts.FAILS`,
        :data:`~rs_repro.report.verdicts.UNDECIDED` or :data:`NOT_TESTABLE`.
    protocol : Judgement or None
        The same rule on the paper's protocol (the reported distortions instead of the confirmed ones), for
        the Fig. 5 claims 2-6 and 10; ``None`` elsewhere.
    headline : Interval or None
        The statistic the verdict was decided on, with its interval (at the rule's Bonferroni confidence when
        it reads several). For a rule that reads several intervals, the worst one: one on the other side of
        its threshold if any, else an undecided one, else the one nearest its threshold (among several, those
        of the statistic the rule names first, and the farthest toward the other side). ``None`` where no
        interval decides (not testable, claim 4 without its premise, claim 11's exact computation).
    statistic : str or None
        What ``headline`` is, e.g. "median paired difference n=10 − n=100 (HSJA)"; ``None`` with it.
    """

    measured: str
    verdict: str
    protocol: Judgement | None = None
    headline: Interval | None = None
    statistic: str | None = None


#: ``judge(record) -> Judgement``, the record being the typed measurements
#: (:data:`rs_repro.report.measurements.SCHEMA`) a chapter recorded.
Judge = Callable[[Any], Judgement]


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
    chapter : str
        The chapter whose measurements decide it.
    rule : str
        The verdict rule, in words.
    judge : Judge
        The verdict rule, as code.
    """

    number: int
    statement: str
    paper: str
    chapter: str
    rule: str
    judge: Judge


def _claim_seed(seed: int, number: int) -> int:
    """The bootstrap seed of claim ``number`` on a record whose seed is ``seed``."""
    return derive_seed(seed, "claim", number)


def _too_few(rows: int, what: str) -> Judgement | None:
    """The not-testable judgement when fewer than 2 ``what`` (images, segments) leave no interval."""
    return Judgement(f"fewer than 2 {what}: no bootstrap interval", NOT_TESTABLE) if rows < 2 else None


def _percent(fraction: float) -> str:
    """A confidence as a percentage, e.g. ``95%``, ``99.88%``."""
    return f"{100 * fraction:.4g}%"


@dataclass(frozen=True)
class _Part:
    """One interval a rule reads, judged against its threshold.

    Attributes
    ----------
    kind : str
        The statistic, e.g. "median paired difference n=10 − n=100".
    which : str
        Which of its instances (an attack, a classifier, a level); "" for a single one.
    interval : Interval
        Its interval, which prints no number rounded across the threshold.
    verdict : str
        The part's verdict.
    margin : float
        How far the interval lies on the claim's side of its threshold, in the statistic's units: negative
        when it reaches the other side.
    """

    kind: str
    which: str
    interval: Interval
    verdict: str
    margin: float

    @property
    def statistic(self) -> str:
        """The kind and, in brackets, which instance it is."""
        return f"{self.kind} ({self.which})" if self.which else self.kind


def _part(kind: str, which: str, interval: Interval, threshold: float, *, above: bool = True) -> _Part:
    """The part "the statistic is above ``threshold``" (``above=False``: below), :func:`rs_repro.report.verdicts.verdict`."""
    margin = interval.lower - threshold if above else threshold - interval.upper
    return _Part(kind, which, dataclasses.replace(interval, thresholds=(threshold,)),
                 verdicts.verdict(interval, threshold, above=above), margin)


def _part_within(kind: str, which: str, interval: Interval, low: float, high: float) -> _Part:
    """The part "the statistic is between ``low`` and ``high``", :func:`rs_repro.report.verdicts.verdict_within`."""
    return _Part(kind, which, dataclasses.replace(interval, thresholds=(low, high)),
                 verdicts.verdict_within(interval, low, high), min(interval.lower - low, high - interval.upper))


@dataclass(frozen=True)
class _Test:
    """One interval a rule will read, before its confidence is known.

    Attributes
    ----------
    kind, which : str
        As in :class:`_Part`.
    interval : callable
        ``interval(confidence=...)`` computes it.
    threshold : float or (float, float)
        Its threshold; a pair is the band of an equivalence (:func:`_part_within`).
    above : bool
        Whether the claim's side is above a single threshold.
    """

    kind: str
    which: str
    interval: Callable[..., Interval]
    threshold: float | tuple[float, float]
    above: bool = True


def _run(tests: Sequence[_Test]) -> list[_Part]:
    """The parts of ``tests``, every interval at the Bonferroni confidence that makes them cover together with
    probability :data:`CONFIDENCE` (:func:`rs_repro.report.verdicts.bonferroni`): a rule that does not hold when one
    of them lies on the other side then errs with probability at most 1 - :data:`CONFIDENCE`."""
    confidence = verdicts.bonferroni(CONFIDENCE, len(tests))
    parts = []
    for test in tests:
        interval = test.interval(confidence=confidence)
        parts.append(_part_within(test.kind, test.which, interval, *test.threshold)
                     if isinstance(test.threshold, tuple) else
                     _part(test.kind, test.which, interval, test.threshold, above=test.above))
    return parts


def _family(parts: Sequence[_Part]) -> str:
    """The confidence of the intervals of ``parts`` for the measured text, with the multiplicity correction."""
    if len(parts) == 1:
        return f"{_percent(parts[0].interval.confidence)} interval"
    return (f"{_percent(CONFIDENCE)} family-wise: Bonferroni over the {len(parts)} intervals, each at "
            f"{_percent(parts[0].interval.confidence)}")


#: The order of the verdicts from worst to best, for :func:`_worst`.
_RANK = {FAILS: 0, UNDECIDED: 1, HOLDS: 2}


def _worst(parts: Sequence[_Part]) -> _Part:
    """The part with the worst verdict (does not hold, then undecided, then holds); among those, the first
    kind in the order of ``parts``, and of that kind the smallest margin."""
    kinds = list(dict.fromkeys(p.kind for p in parts))
    return min(parts, key=lambda p: (_RANK[p.verdict], kinds.index(p.kind), p.margin))


def _decided(measured: str, parts: Sequence[_Part], *others: str) -> Judgement:
    """``measured`` with the confidence of its parts' intervals, the verdict of all its parts and of the
    ``others`` verdicts (parts without an interval; :func:`rs_repro.report.verdicts.all_of`), and the worst part as
    headline (:func:`_worst`)."""
    worst = _worst(parts)
    verdict = verdicts.all_of([*(p.verdict for p in parts), *others])
    needed = verdicts.images_to_decide(worst.interval) if verdict == UNDECIDED else None
    decide = "" if needed is None else (f"; at the measured effect about {needed} images (here "
                                        f"{worst.interval.rows}) would decide {worst.statistic}")
    return Judgement(f"{measured}; {_family(parts)}{decide}", verdict, headline=worst.interval,
                     statistic=worst.statistic)


def _listing(kind: str, parts: Sequence[_Part]) -> str:
    """``kind: <which> <interval>; ...`` for the measured text."""
    return f"{kind}: " + "; ".join(f"{p.which} {p.interval}" for p in parts)


def _label(c: AttackConfiguration) -> str:
    """A configuration's classifier, short: e.g. ``standard σ=0.35 n=10 Pa=0.8``."""
    parts = [c.model] + [f"{name}={value:g}" for name, value in (("σ", c.sigma), ("n", c.n), ("Pa", c.pa))
                         if value is not None]
    return " ".join(parts)


def _pooled_median(rows: np.ndarray, columns: Sequence[int]) -> np.ndarray:
    """The median of ``rows`` [..., k, m] over its k images and the given columns together."""
    return verdicts.median(rows[..., list(columns)], axis=(-2, -1))


def _median_difference(rows: np.ndarray, first: Sequence[int], second: Sequence[int]) -> np.ndarray:
    """The median over images and column pairs of the paired differences ``first`` - ``second`` (columns
    paired in order)."""
    return verdicts.median(verdicts.paired_difference(rows[..., list(first)], rows[..., list(second)]),
                           axis=(-2, -1))


def _median_ratio(rows: np.ndarray, numerator: Sequence[int], denominator: Sequence[int]) -> np.ndarray:
    """The pooled median of the ``numerator`` columns over that of the ``denominator`` columns."""
    return verdicts.ratio(_pooled_median(rows, numerator), _pooled_median(rows, denominator))


def _ratios(rows: np.ndarray, groups: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """:func:`_median_ratio` of each pair of consecutive groups (numerator, denominator, numerator, ...)."""
    return [_median_ratio(rows, top, bottom) for top, bottom in zip(groups[::2], groups[1::2], strict=True)]


def _first_below_others(rows: np.ndarray, *groups: Sequence[int]) -> np.ndarray:
    """The first ratio of :func:`_ratios` minus the smallest of the others (claim 3)."""
    first, *others = _ratios(rows, groups)
    return verdicts.paired_difference(first, np.min(others, axis=0))


def _first_effect_above_others(rows: np.ndarray, *groups: Sequence[int]) -> np.ndarray:
    """The size (absolute log ratio) of the first ratio of :func:`_ratios` minus the largest size of the others
    (claim 6: the effect, of either sign, is largest for the first)."""
    with np.errstate(divide="ignore"):
        first, *others = (np.abs(np.log(r)) for r in _ratios(rows, groups))
    return verdicts.paired_difference(first, np.max(others, axis=0))


#: The fields that identify a configuration of an attack grid.
_KEY = ("attack", "model", "sigma", "n", "pa")


@dataclass(frozen=True)
class _Protocol:
    """The configurations of a Fig. 5 (or adaptive-attacks) record with one protocol's distortions, and the
    claim's seed.

    ``distortion`` [images, configurations] holds ``source`` (``verified_l2`` or ``reported_l2``) of every
    configuration, in the record's order; ``read`` collects the configurations whose distortions an interval
    read, whose failures :meth:`sample` counts.
    """

    grid: AttackGrid | AdaptiveGrid
    distortion: np.ndarray
    seed: int
    source: str
    read: set[int] = dataclasses.field(default_factory=set, compare=False)

    @classmethod
    def of(cls, grid: AttackGrid | AdaptiveGrid, source: str, number: int) -> _Protocol:
        """The distortions ``source`` of ``grid`` for claim ``number``."""
        distortion = np.array([getattr(c, source) for c in grid.configurations], dtype=np.float64).T
        return cls(grid, distortion.reshape(len(grid.images), len(grid.configurations)),
                   _claim_seed(grid.seed, number), source)

    @property
    def attacks(self) -> list[str]:
        """The attacks of the record, in its order."""
        return list(dict.fromkeys(c.attack for c in self.grid.configurations))

    def columns(self, *, smoothed: bool | None = None, **fields: object) -> list[int]:
        """The configurations whose ``fields`` have the given values (and smoothing or not, if ``smoothed``
        is given)."""
        return [j for j, c in enumerate(self.grid.configurations)
                if (smoothed is None or (c.sigma is not None) == smoothed)
                and all(getattr(c, name) == value for name, value in fields.items())]

    def find(self, **fields: object) -> int | None:
        """The first configuration whose ``fields`` have the given values, ``None`` if there is none."""
        return next(iter(self.columns(**fields)), None)

    def levels(self, field: str, **fields: object) -> list[Any]:
        """The values of ``field`` (not ``None``) among the configurations :meth:`columns` selects, sorted."""
        return sorted({getattr(self.grid.configurations[j], field) for j in self.columns(**fields)} - {None})

    def pairs(self, changes: Mapping[str, tuple[object, object]], key: Sequence[str] = _KEY,
              **fields: object) -> tuple[list[int], list[int]]:
        """Paired configurations: those matching ``fields`` with ``changes[name][0]`` in each changed field,
        and each one's partner with ``changes[name][1]`` there and every other field of ``key`` (the fields
        that identify a configuration) equal.

        Returns the two lists of columns, partners in the same order (configurations without a partner left
        out).
        """
        index = {tuple(getattr(c, name) for name in key): j for j, c in enumerate(self.grid.configurations)}
        firsts, seconds = [], []
        for j in self.columns(**fields, **{name: first for name, (first, _) in changes.items()}):
            c = self.grid.configurations[j]
            partner = index.get(tuple(changes[name][1] if name in changes else getattr(c, name) for name in key))
            if partner is not None:
                firsts.append(j)
                seconds.append(partner)
        return firsts, seconds

    def interval(self, statistic: Callable[..., np.ndarray], *groups: Sequence[int],
                 confidence: float = CONFIDENCE) -> Interval:
        """The bootstrap interval at ``confidence`` of ``statistic(rows, *groups)`` over the images, on the
        columns of the groups only (``statistic`` sees each group's positions among them)."""
        columns = [j for group in groups for j in group]
        self.read.update(columns)
        bounds = np.cumsum([0, *map(len, groups)])
        positions = [list(range(start, stop)) for start, stop in itertools.pairwise(bounds)]
        return verdicts.bootstrap(self.distortion[:, columns], lambda rows: statistic(rows, *positions),
                                  seed=self.seed, confidence=confidence)

    def test(self, kind: str, which: str, statistic: Callable[..., np.ndarray], groups: Sequence[Sequence[int]],
             threshold: float | tuple[float, float], *, above: bool = True) -> _Test:
        """The :class:`_Test` of :meth:`interval` on ``groups`` against ``threshold``."""
        return _Test(kind, which, partial(self.interval, statistic, *groups), threshold, above)

    def sample(self) -> str:
        """The images and the failures behind the intervals computed so far, for the measured text: a failure
        (inf, no adversarial point) is counted as larger than any distortion, never left out."""
        columns = sorted(self.read)
        images = len(self.grid.images)
        failures = int(np.isinf(self.distortion[:, columns]).sum())
        text = (f"{images} images; {failures} failures (inf, kept as larger than any distortion) among the "
                f"{images * len(columns)} attacks of the {len(columns)} configurations read")
        if self.source == "verified_l2":
            text += (f"; an adversarial example is confirmed when its one-sided {_percent(1 - self.grid.alpha)} "
                     "Clopper-Pearson lower bound of P[g(x) ≠ y] is at least P_a")
        return text


def _accuracy_difference(first: AttackConfiguration, second: AttackConfiguration, *, confidence: float) -> Interval:
    """The clean accuracy of ``first`` minus that of ``second``, from their Clopper-Pearson intervals at
    (1 + ``confidence``) / 2 each, so that their difference covers at ``confidence`` or more
    (:func:`rs_repro.report.verdicts.difference`)."""
    each = (1 + confidence) / 2
    return verdicts.difference(verdicts.proportion(first.correct, first.tested, each),
                               verdicts.proportion(second.correct, second.tested, each))


def _on_both_protocols(grid: AttackGrid, number: int, rule: Callable[[_Protocol], Judgement]) -> Judgement:
    """``rule`` on the confirmed distortions, with the paper's protocol (the reported ones) beside."""
    few = _too_few(len(grid.images), "images")
    if few is not None:
        return dataclasses.replace(few, protocol=few)
    return dataclasses.replace(rule(_Protocol.of(grid, "verified_l2", number)),
                               protocol=rule(_Protocol.of(grid, "reported_l2", number)))


def undefended_over_minimal(grid: AttackGrid) -> dict[str, Interval]:
    """Per attack, how far from the white-box floor it ends on the undefended model (claim 1's precondition).

    The median distortion the attack reported on the undefended standard model over the median white-box
    minimal distortion of the same images (the record's ``minimal_l2``), with its 95% bootstrap interval over
    the images from claim 1's seed.

    Parameters
    ----------
    grid : rs_repro.report.measurements.AttackGrid
        A Fig. 5 record of 2 images or more.

    Returns
    -------
    dict of str to rs_repro.report.verdicts.Interval
        By attack, in the record's order; attacks without a configuration on the undefended model left out.
    """
    fig = _Protocol.of(grid, "reported_l2", 1)
    found = {}
    for attack in fig.attacks:
        j = fig.find(model="standard", sigma=None, attack=attack)
        if j is not None:
            rows = np.column_stack([fig.distortion[:, j], grid.minimal_l2])
            found[attack] = verdicts.bootstrap(rows, partial(_median_ratio, numerator=[0], denominator=[1]),
                                               seed=fig.seed)
    return found


#: What claim 1 compares to the paper's factor.
_OVER_RADIUS = "median confirmed distortion / median certified radius"


def _certificate_ratio(fig: _Protocol, column: int, *, confidence: float = CONFIDENCE) -> Interval:
    """Claim 1's statistic on configuration ``column`` of ``fig`` (confirmed distortions), with its bootstrap
    interval at ``confidence``."""
    fig.read.add(column)
    rows = np.column_stack([fig.distortion[:, column], fig.grid.configurations[column].radius])
    return verdicts.bootstrap(rows, partial(_median_ratio, numerator=[0], denominator=[1]), seed=fig.seed,
                              confidence=confidence)


def certificate_ratios(grid: AttackGrid) -> list[tuple[AttackConfiguration, Interval | None]]:
    """Claim 1's statistic on every smoothed configuration: the median confirmed distortion over the median
    certified radius of the same images, with its (pointwise) 95% bootstrap interval over the images from
    claim 1's seed.

    Parameters
    ----------
    grid : rs_repro.report.measurements.AttackGrid
        A Fig. 5 record of 2 images or more.

    Returns
    -------
    list of (rs_repro.report.measurements.AttackConfiguration, rs_repro.report.verdicts.Interval or None)
        The configurations with a certified radius, in the record's order; ``None`` where the median radius
        is 0 (CERTIFY abstains on half of the images or more), which gives no ratio.
    """
    fig = _Protocol.of(grid, "verified_l2", 1)
    return [(c, None if verdicts.median(c.radius) == 0 else _certificate_ratio(fig, j))
            for j, c in enumerate(grid.configurations) if c.radius is not None]


def judge_certificate_ratio(grid: AttackGrid) -> Judgement:
    """Claim 1 (ICASSP 2022, section 4): black-box distortions are at least 30 times the certified radius.

    Not testable when, for every attack, the median distortion it reported on the undefended model is within
    :data:`CONVERGED` times the median white-box minimal distortion on the same images
    (:func:`undefended_over_minimal`): the attacks have converged, so the attack inefficiency behind the
    paper's factor cannot appear. Otherwise, for each smoothed configuration of the attacks that did not
    converge, the ratio of the median confirmed distortion to the median certified radius of the same images,
    with its bootstrap interval, Bonferroni-corrected over the configurations: holds if every interval is
    above 30, does not hold if one is below, undecided otherwise; the headline is the worst of them. A
    configuration whose median radius is 0 (CERTIFY abstains on half of the images or more) has no ratio
    and is named, left out.
    """
    few = _too_few(len(grid.images), "images")
    if few is not None:
        return few
    convergence = {attack: interval.estimate for attack, interval in undefended_over_minimal(grid).items()}
    if not convergence:
        return Judgement("no attack on the undefended model was recorded", NOT_TESTABLE)
    factors = ", ".join(f"{a} ×{verdicts.shown(r, (CONVERGED,))}" for a, r in convergence.items())
    converged = [a for a, r in convergence.items() if r <= CONVERGED]
    if len(converged) == len(convergence):
        return Judgement(f"median reported distortion on the undefended model over the white-box minimal one: "
                         f"{factors}, all within ×{CONVERGED:g}: the attacks converged, so the attack "
                         f"inefficiency behind the paper's {DISTORTION_OVER_RADIUS}× cannot appear", NOT_TESTABLE)
    fig = _Protocol.of(grid, "verified_l2", 1)
    tests, zero = [], []
    for j, c in enumerate(grid.configurations):
        if c.radius is None or c.attack in converged:
            continue
        if verdicts.median(c.radius) == 0:
            zero.append(f"{c.attack} {_label(c)}")
        else:
            tests.append(_Test(_OVER_RADIUS, f"{c.attack} {_label(c)}", partial(_certificate_ratio, fig, j),
                               DISTORTION_OVER_RADIUS))
    left_out = (f"; converged, left out: {', '.join(converged)}" if converged else "") + \
        (f"; median radius 0, no ratio: {', '.join(zero)}" if zero else "")
    head = f"undefended / white-box minimal distortion {factors}{left_out}"
    if not tests:
        return Judgement(f"{head}; no smoothed configuration with a positive median certified radius", NOT_TESTABLE)
    parts = _run(tests)
    worst = _worst(parts)
    by_attack = {a: [p for p in parts if p.which.startswith(a + " ")] for a in fig.attacks}
    listed = "; ".join(f"{a}: " + ", ".join(f"{p.which.removeprefix(a + ' ')} {p.interval}" for p in judged)
                       for a, judged in by_attack.items() if judged)
    return _decided(f"{head}; {_OVER_RADIUS}, worst {worst.interval} ({worst.which}); every one: {listed}; "
                    f"{fig.sample()}", parts)


def _fewer_samples(fig: _Protocol) -> Judgement:
    """Claim 2's rule on one protocol (:func:`judge_fewer_samples`)."""
    ns = fig.levels("n", model="standard")
    if len(ns) < 2:
        return Judgement(f"one n only ({', '.join(map(str, ns)) or 'none'})", NOT_TESTABLE)
    kind, tests = f"median paired difference n={ns[0]} − n={ns[-1]}", []
    for attack in fig.attacks:
        small, large = fig.pairs({"n": (ns[0], ns[-1])}, model="standard", attack=attack)
        if small:
            tests.append(fig.test(kind, attack, _median_difference, (small, large), 0))
    if not tests:
        return Judgement(f"no (σ, Pa) at both n={ns[0]} and n={ns[-1]}", NOT_TESTABLE)
    parts = _run(tests)
    return _decided(f"{kind} (pooled over σ, Pa): " + "; ".join(f"{p.which} {p.interval}" for p in parts)
                    + f"; {fig.sample()}", parts)


def judge_fewer_samples(grid: AttackGrid) -> Judgement:
    """Claim 2 (ICASSP 2022, section 4, Fig. 5): fewer Monte Carlo samples n give larger distortions.

    Per attack, on the smoothed standard model, the per-image paired differences between the smallest and
    the largest n, pooled over the (sigma, P_a) pairs; statistic: their median. Holds when every attack's
    interval (Bonferroni over the attacks) is above 0, does not hold when one is below 0, undecided
    otherwise. On the confirmed distortions, with the paper's protocol beside.
    """
    return _on_both_protocols(grid, 2, _fewer_samples)


def _rays_least_affected(fig: _Protocol) -> Judgement:
    """Claim 3's rule on one protocol (:func:`judge_rays_least_affected`)."""
    groups = {}
    for attack in fig.attacks:
        smoothed = fig.columns(smoothed=True, model="standard", attack=attack)
        undefended = fig.find(model="standard", sigma=None, attack=attack)
        if smoothed and undefended is not None:
            groups[attack] = (smoothed, [undefended])
    if RAYS not in groups or len(groups) < 2:
        return Judgement(f"needs {RAYS} and another attack, with and without smoothing", NOT_TESTABLE)
    order = [RAYS, *(a for a in groups if a != RAYS)]
    factors = ", ".join(f"{a} ×{float(_median_ratio(fig.distortion, *groups[a])):.2f}" for a in order)
    (part,) = _run([fig.test(f"{RAYS}'s factor with RS / without minus the smallest other", "", _first_below_others,
                             [group for a in order for group in groups[a]], 0, above=False)])
    return _decided(f"median distortion with RS / without: {factors}; {RAYS} minus the smallest other "
                    f"{part.interval}; {fig.sample()}", [part])


def judge_rays_least_affected(grid: AttackGrid) -> Judgement:
    """Claim 3 (ICASSP 2022, section 4, Fig. 5): RayS is the attack least affected by smoothing.

    Per attack, the factor median distortion over the smoothed standard configurations (pooled) / median
    distortion on the undefended model; statistic: the factor of RayS minus the smallest factor of the other
    attacks. Holds if its interval is below 0, does not hold if above, undecided otherwise.
    """
    return _on_both_protocols(grid, 3, _rays_least_affected)


def _accuracy_cost(first: AttackConfiguration, second: AttackConfiguration) -> tuple[str, str]:
    """Claim 4's premise at one n: whether ``first`` (the larger sigma) is less accurate than ``second`` on
    the same images, by exact one-sided McNemar tests at :data:`SIGNIFICANCE`.

    Returns ``"cost"`` (significantly less accurate), ``"gain"`` (significantly more) or ``"none"``, and
    the text that says it.
    """
    a, b = np.asarray(first.correct_images, dtype=bool), np.asarray(second.correct_images, dtype=bool)
    less, more = verdicts.mcnemar(a, b, "less"), verdicts.mcnemar(a, b, "greater")
    found = "cost" if less < SIGNIFICANCE else "gain" if more < SIGNIFICANCE else "none"
    return found, (f"n={first.n}: {first.accuracy:.3f} vs {second.accuracy:.3f}, right at σ={second.sigma:g} only "
                   f"on {int(np.sum(b & ~a))} images and at σ={first.sigma:g} only on {int(np.sum(a & ~b))}, "
                   f"exact one-sided McNemar p = {verdicts.shown(less, (SIGNIFICANCE,), 2)}")


def _larger_sigma(fig: _Protocol) -> Judgement:
    """Claim 4's rule on one protocol (:func:`judge_larger_sigma`)."""
    sigmas = fig.levels("sigma", model="standard")
    if len(sigmas) < 2:
        return Judgement("one σ only", NOT_TESTABLE)
    small, large = sigmas[0], sigmas[-1]
    premise, images = [], 0
    for n in fig.levels("n", model="standard"):
        j, k = fig.find(model="standard", sigma=large, n=n), fig.find(model="standard", sigma=small, n=n)
        if j is None or k is None:
            continue
        first, second = fig.grid.configurations[j], fig.grid.configurations[k]
        if not first.correct_images or len(first.correct_images) != len(second.correct_images):
            return Judgement(f"no per-image accuracies of σ={large:g} and σ={small:g} on the same images",
                             NOT_TESTABLE)
        premise.append(_accuracy_cost(first, second))
        images = len(first.correct_images)
    kind, tests, levels = f"median distortion ratio σ={large:g} / σ={small:g}", [], []
    for pa in fig.levels("pa", model="standard"):
        for attack in fig.attacks:
            pair = fig.pairs({"sigma": (large, small)}, model="standard", attack=attack, pa=pa)
            if pair[0]:
                tests.append(fig.test(kind, f"{attack}, Pa={pa:g}", _median_ratio, pair, MAX_GAIN, above=False))
                levels.append(pa)
    if not premise or not tests:
        return Judgement(f"no (n, Pa) at both σ={small:g} and σ={large:g}", NOT_TESTABLE)
    parts = _run(tests)
    at = {pa: [p for p, level in zip(parts, levels, strict=True) if level == pa] for pa in dict.fromkeys(levels)}
    by_pa = {pa: verdicts.all_of(p.verdict for p in found) for pa, found in at.items()}
    accuracy = f"accuracy σ={large:g} vs σ={small:g} on the same {images} images: " + "; ".join(
        text for _, text in premise)
    distortion = f"{kind} (pooled over n), verdict per Pa: " + "; ".join(
        f"Pa={pa:g} {by_pa[pa]}: " + ", ".join(f"{p.which.split(',')[0]} ×{p.interval}" for p in found)
        for pa, found in at.items())
    measured = f"{accuracy}; {distortion}; {_family(parts)}; {fig.sample()}"
    found = {cost for cost, _ in premise}
    if found == {"cost"}:
        worst = _worst(parts)
        return Judgement(measured, verdicts.all_of(by_pa.values()), headline=worst.interval,
                         statistic=worst.statistic)
    if "gain" in found:
        return Judgement(f"premise false, the larger σ is significantly more accurate at some n: {measured}",
                         NOT_TESTABLE)
    return Judgement(f"premise not established, the larger σ is not significantly less accurate at every n: "
                     f"{measured}", UNDECIDED)


def judge_larger_sigma(grid: AttackGrid) -> Judgement:
    """Claim 4 (ICASSP 2022, section 4, Fig. 5): a larger sigma costs accuracy without adding robustness.

    Between the smallest and the largest sigma of the smoothed standard model. The premise, "costs accuracy":
    at every n, the larger sigma is less accurate on the same images by an exact one-sided McNemar test at
    :data:`SIGNIFICANCE` (``correct_images`` of the first configuration of each sigma at that n: the accuracy
    of g_{sigma,n} does not depend on P_a). Without it the claim is undecided (no significant cost at some
    n) or not testable (a significant gain), with the reason. With it, per P_a and per attack, the ratio of
    median distortions (largest over smallest sigma, pooled over n) below :data:`MAX_GAIN`, Bonferroni over
    every (attack, P_a): the verdict at a P_a holds when all its attacks' intervals are below, does not hold
    when one is above, undecided otherwise; the claim holds when it holds at every P_a and does not hold when
    it fails at one.
    """
    return _on_both_protocols(grid, 4, _larger_sigma)


def _randtrain(fig: _Protocol) -> Judgement:
    """Claim 5's rule on one protocol (:func:`judge_randtrain`)."""
    rand, standard = fig.levels("sigma", model="randtrain"), fig.levels("sigma", model="standard")
    undefended = fig.find(model="standard", sigma=None, attack=RAYS)
    rays = fig.columns(model="randtrain", sigma=rand[-1], attack=RAYS) if rand else []
    if not rays or not standard or undefended is None:
        return Judgement(f"needs {RAYS} against RandTrain under smoothing and the undefended model, and the "
                         "standard model under smoothing", NOT_TESTABLE)
    change = {"model": ("randtrain", "standard"), "sigma": (rand[-1], standard[-1])}
    matched = fig.pairs(change)
    if not matched[0]:
        return Judgement(f"no (n, Pa) of RandTrain σ={rand[-1]:g} on the standard model at σ={standard[-1]:g}",
                         NOT_TESTABLE)
    classifiers = {(fig.grid.configurations[j].target, fig.grid.configurations[k].target):
                   (fig.grid.configurations[j], fig.grid.configurations[k]) for j, k in zip(*matched, strict=True)}
    accuracy = [_Test("accuracy difference RandTrain − standard", _label(a), partial(_accuracy_difference, a, b),
                      (-SAME_ACCURACY, SAME_ACCURACY)) for a, b in classifiers.values()]
    ratios = [fig.test("median distortion ratio RandTrain / standard", attack, _median_ratio, paired,
                       (1 - SAME_DISTORTION, 1 + SAME_DISTORTION))
              for attack in fig.attacks if attack != RAYS and (paired := fig.pairs(change, attack=attack))[0]]
    rays_test = fig.test("median paired difference RandTrain − undefended", RAYS, _median_difference,
                         (rays, [undefended] * len(rays)), 0, above=False)
    parts = _run([*ratios, rays_test, *accuracy])
    ratio_parts, rays_part, accuracy_parts = parts[:len(ratios)], parts[len(ratios)], parts[len(ratios) + 1:]
    texts = ["accuracy difference " + ", ".join(f"{p.which} {p.interval}" for p in accuracy_parts)]
    texts += [f"{p.which} median distortion ratio ×{p.interval}" for p in ratio_parts]
    texts.append(f"{RAYS} median paired difference RandTrain − undefended {rays_part.interval}")
    return _decided(f"RandTrain σ={rand[-1]:g} against the standard model at σ={standard[-1]:g}: " + "; ".join(texts)
                    + f"; {fig.sample()}", parts)


def judge_randtrain(grid: AttackGrid) -> Judgement:
    """Claim 5 (ICASSP 2022, section 4, Fig. 5): RandTrain under smoothing behaves like the standard model
    under smoothing at the largest sigma, and against RayS it is less robust than the undefended model.

    RandTrain (at its largest sigma) is paired with the standard model at its largest sigma on the same n
    and P_a. Holds when every interval (Bonferroni over all of them) is inside its band: the clean accuracy
    difference (from Clopper-Pearson intervals) within :data:`SAME_ACCURACY`, per attack other than RayS the
    ratio of median distortions RandTrain / standard (pooled over the pairs) within 1 ±
    :data:`SAME_DISTORTION`, and for RayS the median paired difference RandTrain - undefended below 0; does
    not hold when one interval is wholly outside; undecided otherwise.
    """
    return _on_both_protocols(grid, 5, _randtrain)


def _direction(interval: Interval, high: float, low: float) -> str:
    """The sign of claim 6's ratio at one n, in words: which level P_a gives the larger distortions."""
    if interval.lower > 1:
        return f"Pa={high:g} gives larger distortions than Pa={low:g}"
    if interval.upper < 1:
        return f"Pa={high:g} gives smaller distortions than Pa={low:g}"
    return "no sign"


def _pa(fig: _Protocol) -> Judgement:
    """Claim 6's rule on one protocol (:func:`judge_pa`)."""
    pas, ns = fig.levels("pa", model="standard"), fig.levels("n", model="standard")
    if len(pas) < 2:
        return Judgement("one level Pa only", NOT_TESTABLE)
    low, high = pas[0], pas[-1]
    by_n = {n: pair for n in ns if (pair := fig.pairs({"pa": (high, low)}, model="standard", n=n))[0]}
    if len(by_n) < 2:
        return Judgement(f"needs both levels Pa={low:g} and Pa={high:g} at two n or more", NOT_TESTABLE)
    first = f"|log ratio| at n={next(iter(by_n))} minus the largest other"
    parts = _run([*(fig.test(f"median distortion ratio Pa={high:g} / Pa={low:g}", f"n={n}", _median_ratio, pair,
                             (1 / PA_EFFECT, PA_EFFECT)) for n, pair in by_n.items()),
                  fig.test(first, "", _first_effect_above_others, [group for pair in by_n.values() for group in pair],
                           0)])
    ratios = ", ".join(f"×{p.interval} at {p.which} ({_direction(p.interval, high, low)})" for p in parts[:-1])
    return _decided(f"median distortion Pa={high:g} / Pa={low:g} (pooled over σ, attacks): {ratios}; {first} "
                    f"{parts[-1].interval}; {fig.sample()}", parts)


def judge_pa(grid: AttackGrid) -> Judgement:
    """Claim 6 (ICASSP 2022, section 4, Fig. 5): the level P_a matters little, and mostly for small n.

    Per n, the ratio of the median distortion at the largest P_a over the smallest (paired configurations,
    pooled over sigma and attacks) inside the band (1 / :data:`PA_EFFECT`, :data:`PA_EFFECT`), its sign
    said in the measured text; and the size (absolute log ratio) at the smallest n minus the largest size at another
    n above 0. Bonferroni over all the intervals. Holds when every interval is on its side (inside the band,
    above 0), does not hold when one is wholly on the other side, undecided otherwise.
    """
    return _on_both_protocols(grid, 6, _pa)


def _rs_beats_advtrain(fig: _Protocol) -> Judgement:
    """Claim 10's rule on one protocol (:func:`judge_rs_beats_advtrain`)."""
    sigmas = fig.levels("sigma", model="standard")
    smallest = sigmas[0] if sigmas else None
    columns = {a: (fig.columns(smoothed=True, model="standard", sigma=smallest, attack=a),
                   fig.find(model="advtrain", sigma=None, attack=a)) for a in ADVTRAIN_ATTACKS}
    if any(not rs or adv is None for rs, adv in columns.values()):
        return Judgement(f"needs {' and '.join(ADVTRAIN_ATTACKS)} against AdvTrain and the smoothed standard model",
                         NOT_TESTABLE)
    kind = f"median paired difference RS σ={smallest:g} − AdvTrain"
    parts = _run([fig.test(kind, attack, _median_difference, (rs, [adv] * len(rs)), 0)
                  for attack, (rs, adv) in columns.items()])
    return _decided(f"median paired difference RS σ={smallest:g} (pooled over n, Pa) − AdvTrain: "
                    + "; ".join(f"{p.which} {p.interval}" for p in parts) + f"; {fig.sample()}", parts)


def judge_rs_beats_advtrain(grid: AttackGrid) -> Judgement:
    """Claim 10 (ICASSP 2022, Fig. 5): smoothing at the smallest sigma beats adversarial training against HSJA
    and SurFree.

    Per attack, the per-image paired differences of the distortion against the smoothed standard model at
    the smallest sigma (pooled over n and P_a) minus that against AdvTrain; statistic: their median. Holds if
    both intervals (Bonferroni over the two) are above 0, does not hold if one is below, undecided otherwise.
    """
    return _on_both_protocols(grid, 10, _rs_beats_advtrain)


def push_in_sigma(push: BoundaryPush, sigma: float | None = None, *, confidence: float = CONFIDENCE) -> Interval:
    """How far smoothing pushes the boundary (claim 7): the median crossing of the boundary of g_sigma past
    the white-box x_a over the attacked images, in units of sigma.

    Parameters
    ----------
    push : rs_repro.report.measurements.BoundaryPush
        A Fig. 1 record.
    sigma : float or None
        The noise level (one of ``push.crossings``); ``None``: the chapter's main one.
    confidence : float
        Of the interval.

    Returns
    -------
    rs_repro.report.verdicts.Interval
        The median with its order-statistic interval (:func:`rs_repro.report.verdicts.median_interval`, the dual of
        a two-sided sign test), a crossing censored outside the scanned range counted at -inf (before it)
        or inf (past it).
    """
    found = push.crossings[0] if sigma is None else push.crossing(sigma)
    return verdicts.median_interval(np.asarray(found.distances) / found.sigma, confidence)


def _crossing_text(c: Crossing, interval: Interval) -> str:
    """Claim 7's measured text at one noise level."""
    d = np.asarray(c.distances)
    return (f"σ={c.sigma:g}: median {interval} σ past x_a, beyond x_a on {int(np.sum(d > 0))} of {len(d)} images "
            f"({int(np.sum(d == -np.inf))} crossed before the scanned range, {int(np.sum(d == np.inf))} past it)")


def judge_boundary_push(push: BoundaryPush) -> Judgement:
    """Claim 7 (ICASSP 2022, Fig. 1, eq. 3): smoothing pushes the boundary well beyond x_a, and the
    transition of P[g_{sigma,n}(x) != y] from 0 to 1 is wider for small n.

    At every noise level scanned, the median crossing of the boundary of g_sigma past x_a in units of sigma
    (:func:`push_in_sigma`) above :data:`MIN_PUSH`; and the per-image paired difference of the width of the
    transition (from the smallest to the largest recorded P_a) at the smallest n minus the largest, its
    median above 0 (images where the smaller level was not located at both n left out; a transition not
    completed inside the scan is infinitely wide). Order-statistic intervals (exact, distribution-free),
    Bonferroni over all of them. Holds if every interval is on its side, does not hold if one is wholly on
    the other side, undecided otherwise (also when no width was located).
    """
    ns, low, high = sorted(push.widths), min(push.pas), max(push.pas)
    if low == high or len(ns) < 2 or not push.crossings:
        return Judgement("needs two levels P_a, two n and a scanned noise level", NOT_TESTABLE)
    tests = [_Test("median crossing past x_a / σ", f"σ={c.sigma:g}", partial(push_in_sigma, push, c.sigma), MIN_PUSH)
             for c in push.crossings]
    paired = [(a, b) for a, b in zip(push.widths[ns[0]], push.widths[ns[-1]], strict=True)
              if a is not None and b is not None]
    difference = verdicts.paired_difference(*zip(*paired, strict=True)) if paired else np.empty(0)
    kind = f"median paired difference of the width P {low:g} → {high:g}, n={ns[0]} − n={ns[-1]}"
    if paired:
        tests.append(_Test(kind, "", partial(verdicts.median_interval, difference), 0))
    parts = _run(tests)
    texts = [_crossing_text(c, p.interval) for c, p in zip(push.crossings, parts[:len(push.crossings)], strict=True)]
    texts.append(f"{kind} {parts[-1].interval} on the {len(paired)} images located at both n, wider at n={ns[0]} "
                 f"on {int(np.sum(difference > 0))}" if paired else f"no image with the P {low:g} → {high:g} "
                 "transition located at both n")
    return _decided("; ".join(texts) + f"; {push.num_images} images, a crossing outside the scanned range kept "
                    "at -inf or inf", parts, *([] if paired else [UNDECIDED]))


def judge_bisection_spread(spread: BisectionSpread) -> Judgement:
    """Claim 8 (ICASSP 2022, Fig. 3): smoothing disturbs the binary search, and its spread shrinks as n grows.

    The per-segment paired difference of the spread at the smallest n minus the largest (the segments are the
    same for every n); statistic: its median over segments, with its exact order-statistic interval (the dual
    of the sign test, :func:`rs_repro.report.verdicts.median_interval`: coverage at least its confidence whatever the
    law of the differences). Holds if the interval is above 0, does not hold if below, undecided otherwise;
    not testable with too few segments for a finite interval (6 at 95%).
    """
    ns = sorted(spread.per_segment)
    if len(ns) < 2:
        return Judgement("one n only", NOT_TESTABLE)
    difference = verdicts.paired_difference(spread.per_segment[ns[0]], spread.per_segment[ns[-1]])
    (part,) = _run([_Test(f"median paired difference of spread n={ns[0]} − n={ns[-1]}", "",
                          partial(verdicts.median_interval, difference), 0)])
    segments = len(difference)
    if np.isinf(part.interval.lower) and np.isinf(part.interval.upper):
        return Judgement(f"{segments} segments: too few for a {_percent(CONFIDENCE)} order-statistic interval",
                         NOT_TESTABLE)
    spreads = ", ".join(f"{spread.spread[n]:.3f} at n={n}" for n in ns)
    return _decided(f"median over {segments} segments of the spread at n={ns[0]} minus n={ns[-1]}: {part.interval} "
                    f"(order-statistic, exact), positive on {int(np.sum(difference > 0))} of {segments} (mean "
                    f"spread {spreads})", [part])


def judge_normal_agreement(agreement: NormalAgreement) -> Judgement:
    """Claim 9 (ICASSP 2022, section 3.5): normal-vector estimates at the boundary with and without smoothing
    correlate well when the estimation noise exceeds sigma; HSJA sometimes fails because every probe gets the
    same label.

    At every probe radius delta above sigma (the paper's condition: the estimate's noise variance larger than
    sigma^2), the mean cosine between the estimates with and without RS (its bootstrap interval over images)
    above :data:`WELL_CORRELATED`; and the rate of HSJA gradient steps whose probes all got one label (pooled
    over images; Clopper-Pearson) above 0. Bonferroni over all the intervals. Holds if both, does not hold
    if a cosine interval is below :data:`WELL_CORRELATED`, undecided otherwise: no one-label step seen is no
    refutation of "sometimes".
    """
    few = _too_few(len(agreement.hsja_steps), "images")
    if few is not None:
        return few
    if max(agreement.ratios, default=0) <= 1:
        return Judgement("no probe radius above σ", NOT_TESTABLE)
    seed = _claim_seed(agreement.seed, 9)
    above = [(ratio, cosine) for ratio, cosine in zip(agreement.ratios, agreement.cosine, strict=True) if ratio > 1]
    steps, one_label = sum(agreement.hsja_steps), sum(agreement.hsja_one_label_steps)
    tests = [_Test("mean cosine with / without RS", f"δ/σ = {ratio:g}", partial(verdicts.bootstrap, cosine, seed=seed),
                   WELL_CORRELATED) for ratio, cosine in above]
    rate_test = _Test("rate of HSJA steps with one label on every probe", "",
                      partial(verdicts.proportion, one_label, steps), 0)
    parts = _run([*tests, rate_test] if steps else tests)  # a rate cannot lie below 0: it holds or is undecided
    others = []
    if steps:
        steps_text = f"HSJA steps with one label on every probe {one_label} of {steps}, {parts[-1].interval}"
    else:
        others.append(UNDECIDED)
        steps_text = "no HSJA gradient step"
    listed = ", ".join(f"{p.which.removeprefix('δ/σ = ')}: {p.interval}" for p in parts[:len(tests)])
    return _decided(f"mean cosine with / without RS at δ/σ = {listed}; {steps_text}; "
                    f"{len(agreement.hsja_steps)} images", parts, *others)


def judge_eq5(check: ThresholdCheck) -> Judgement:
    """Claim 11 (ICASSP 2022, eq. 5): the exact probability that a vote is adversarial at the printed threshold;
    holds when it equals P_a (to 1e-6) for every n checked, odd and even. Exact: no sampling, no interval."""
    probability = dict(sorted(check.probability_at_threshold.items()))
    band = (check.pa - EQ5_TOLERANCE, check.pa + EQ5_TOLERANCE)
    text = f"exact (no sampling, no interval), at Pa = {check.pa:g}: " + ", ".join(
        f"{verdicts.shown(p, band)} (n={n})" for n, p in probability.items())
    return Judgement(text, HOLDS if all(abs(p - check.pa) <= EQ5_TOLERANCE for p in probability.values()) else FAILS)


#: How the rule texts name the interval shown beside a verdict decided on several.
_WORST = ("shown beside the verdict: the worst interval (one on the other side if any, else an undecided one, "
          "else the one nearest its threshold)")
#: How the rule texts name the multiplicity correction of a rule that reads several intervals.
_BONFERRONI = (f"the intervals are {_percent(CONFIDENCE)} family-wise (Bonferroni: each at 1 − "
               f"{1 - CONFIDENCE:g}/m for the m intervals the rule reads)")

CLAIMS: tuple[Claim, ...] = (
    Claim(1, "Black-box attacks need distortions far larger than the certified radius.",
          f"at least {DISTORTION_OVER_RADIUS} times larger", "fig5_attacks",
          f"not testable if every attack's median distortion on the undefended model is within ×{CONVERGED:g} of "
          "the white-box minimal one (the attacks converged, so the attack inefficiency behind the paper's factor "
          "cannot appear); otherwise, for each smoothed classifier and each attack that did not converge, median "
          "confirmed distortion / median certified radius: holds if every interval is above "
          f"{DISTORTION_OVER_RADIUS}, does not hold if one is below, else undecided (a median radius of 0 gives no "
          f"ratio: left out); {_BONFERRONI}; {_WORST}",
          judge_certificate_ratio),
    Claim(2, "Fewer Monte Carlo samples n give larger distortions, for every attack.",
          "SurFree, σ = 0.05: 41 → 37 → 34 for n = 10, 50, 100", "fig5_attacks",
          "per attack, median paired difference of distortion at the smallest n minus the largest (smoothed "
          "standard model, pooled over σ and P_a): holds if every interval is above 0, does not hold if one is "
          f"below, else undecided; {_BONFERRONI}; {_WORST}, of the attacks", judge_fewer_samples),
    Claim(3, "RayS is the attack least affected by smoothing.",
          "RayS ≈ 15 with RS against 13.4 without; HSJA ≈ 47 against 17.4", "fig5_attacks",
          "per attack, factor = median distortion with RS (smoothed standard model, pooled) / without; RayS's factor "
          f"minus the smallest other: holds if its {_percent(CONFIDENCE)} interval is below 0, does not hold if "
          "above, else undecided", judge_rays_least_affected),
    Claim(4, "A larger σ costs accuracy without adding robustness.",
          "σ = 0.15 costs 12% accuracy (σ = 0.05: 3%); HSJA ≈ 36 against ≈ 48", "fig5_attacks",
          "largest against smallest σ. Premise, \"costs accuracy\": at every n the larger σ is less accurate on the "
          f"same images (exact one-sided McNemar test, p < {SIGNIFICANCE:g}; the accuracy of g_{{σ,n}} does not "
          "depend on P_a); without it the claim is undecided (no significant cost) or not testable (a significant "
          "gain), whatever the distortions. With it, per P_a and attack, the ratio of median distortions (pooled "
          f"over n) below {MAX_GAIN:g}; the verdict at a P_a holds if all its intervals are below, does not hold if "
          "one is above, else undecided; the claim holds if it holds at every P_a, does not hold if it fails at "
          f"one, else undecided; {_BONFERRONI}; {_WORST}", judge_larger_sigma),
    Claim(5, "Noise training (RandTrain) with RS behaves like the standard model with RS at the large σ, "
             "and against RayS it is less robust than the undefended model.",
          "accuracy 0.64 vs 0.62; RayS ≈ 11 against 13.4 undefended", "fig5_attacks",
          "against the standard model at its largest σ with RandTrain's n and P_a: accuracy difference "
          f"(Clopper-Pearson) within ±{SAME_ACCURACY:g}, ratio of median distortions within "
          f"{1 - SAME_DISTORTION:g}-{1 + SAME_DISTORTION:g} for the attacks other than RayS, and for RayS the "
          "median paired difference RandTrain − undefended below 0: holds if every interval is inside, does not "
          f"hold if one is wholly outside, else undecided; {_BONFERRONI}; {_WORST}, the distortion ratios first, "
          "then RayS's difference, then the accuracies", judge_randtrain),
    Claim(6, "The level P_a matters little, and mostly for small n.",
          "80% against 50%: slightly larger distortions, mostly at n = 10", "fig5_attacks",
          "per n, median distortion at the largest P_a / at the smallest (pooled over σ, attacks) inside "
          f"1/{PA_EFFECT:g}-{PA_EFFECT:g} (either sign is little; the sign is said beside), and the size "
          "|log ratio| at the smallest n minus the largest at another n above 0: holds if every interval is on "
          f"its side, does not hold if one is wholly on the other side, else undecided; {_BONFERRONI}; {_WORST}, "
          "the ratios per n first", judge_pa),
    Claim(7, "Smoothing pushes the boundary well beyond the base classifier's, and the transition from 0 to 1 of "
             "P[g_{σ,n}(x) ≠ y] is wider for small n.",
          "boundary of g_σ crossed about 4.0 past x_a on ImageNet", "fig1_adversarial_probability",
          f"at every σ scanned, the median crossing past x_a, in units of σ, above {MIN_PUSH:g} σ (larger than "
          "the shift the vote alone gives the level P_a = 0.8 past a flat boundary, eq. 6: 0.45 σ at n = 5); and "
          "the median per-image paired difference of the width of the transition from the smallest to the "
          "largest P_a, smallest n minus largest, above 0 (a crossing or transition outside the scanned range "
          "kept at ±inf): order-statistic intervals (exact, the dual of the sign test); holds if every interval "
          f"is on its side, does not hold if one is on the other side, else undecided; {_BONFERRONI}; {_WORST}",
          judge_boundary_push),
    Claim(8, "Smoothing disturbs the binary search; its spread shrinks as n grows.",
          "peak 0.13 (n = 10), 0.21 (n = 50), 0.28 (n = 100)", "fig3_binary_search",
          "median over segments of the paired difference of spread at the smallest n minus the largest, with its "
          f"exact {_percent(CONFIDENCE)} order-statistic interval (the dual of the sign test over segments): holds "
          "if the interval is above 0, does not hold if below, else undecided", judge_bisection_spread),
    Claim(9, "Normal vectors estimated at the boundary with and without smoothing correlate well when the "
             "estimation noise exceeds σ; HSJA sometimes crashes when every probe gets the same label.",
          "stated, no number", "normal_vectors",
          f"mean cosine between the estimates with and without RS above {WELL_CORRELATED:g} at every probe radius "
          "above σ, and rate of HSJA steps with one label on every probe (Clopper-Pearson) above 0: holds if both; "
          f"a cosine interval below {WELL_CORRELATED:g}: does not hold; else undecided (no one-label step seen "
          f"does not refute \"sometimes\"); {_BONFERRONI}; {_WORST}, the cosines first", judge_normal_agreement),
    Claim(10, "Smoothing at the small σ beats adversarial training in practice against HSJA and SurFree.",
          "HSJA ≈ 47 vs 22.8; SurFree ≈ 34-41 vs 21.2 (accuracy 0.73 vs 0.56)", "fig5_attacks",
          "per attack, median paired difference of distortion against RS at the smallest σ (pooled over n, P_a) "
          "minus against AdvTrain: holds if both intervals are above 0, does not hold if one is below, else "
          f"undecided; {_BONFERRONI}; {_WORST}, of the attacks", judge_rs_beats_advtrain),
    Claim(11, "Eq. (5) gives the threshold on π_0(x_a) above which a vote is adversarial with probability "
              "P_a.", "eq. (5), with ñ = 1 + ⌊n/2⌋, for every n", "theory",
          "exact computation (no sampling): the probability at the printed threshold equals P_a for every n "
          "checked: holds, else does not hold", judge_eq5),
)


#: The fields that identify a configuration of an adaptive-attacks grid.
_ADAPTIVE_KEY = ("attack", "repeats", "budget_factor", "jitter", "noise", "seeding", "sigma", "n")
#: Input noise drawn fresh for every query: the paper's g_{sigma,n}.
_FRESH = {"noise": "input", "seeding": "fresh"}


def _adaptive(grid: AdaptiveGrid, number: int) -> _Protocol | Judgement:
    """The confirmed distortions of ``grid`` for claim ``number``, or the not-testable judgement with fewer
    than 2 images."""
    return _too_few(len(grid.images), "images") or _Protocol.of(grid, "verified_l2", number)


def _scaled_setting(grid: AdaptiveGrid, number: int) -> tuple[_Protocol, int, list[int]] | Judgement:
    """Claims 12 and 13 read :data:`WRAPPED` with repeat-and-vote at k times the budget against fresh input
    noise: the confirmed distortions, the largest such k and the n of the record, or the not-testable
    judgement."""
    fig = _adaptive(grid, number)
    if isinstance(fig, Judgement):
        return fig
    k = max((c.repeats for c in grid.configurations if c.attack == WRAPPED and c.budget_factor > 1
             and c.jitter == 0 and c.noise == "input" and c.seeding == "fresh"), default=None)
    ns = fig.levels("n", **_FRESH)
    if k is None or len(ns) < 2:
        return Judgement(f"no {WRAPPED} with repeat-and-vote at k times the budget, or one n only", NOT_TESTABLE)
    return fig, k, ns


def judge_adaptive_fewer_samples(grid: AdaptiveGrid) -> Judgement:
    """Beyond the paper, claim 12: against HSJA (:data:`WRAPPED`) repeating each query k times with k times
    the budget (the largest k), fewer samples n still give larger confirmed distortions.

    The per-image paired differences between the smallest and the largest n, pooled over sigma (input noise,
    fresh); statistic: their median. Holds when its interval is above 0, does not hold when below,
    undecided otherwise; not testable without that attacker or with one n.
    """
    setting = _scaled_setting(grid, 12)
    if isinstance(setting, Judgement):
        return setting
    fig, k, ns = setting
    kind = f"median paired difference n={ns[0]} − n={ns[-1]}, ×{k} with {k}× budget"
    pair = fig.pairs({"n": (ns[0], ns[-1])}, _ADAPTIVE_KEY, attack=WRAPPED, repeats=k, budget_factor=k, jitter=0.0,
                     **_FRESH)
    if not pair[0]:
        return Judgement(f"no {WRAPPED} ×{k} at both n", NOT_TESTABLE)
    parts = _run([fig.test(kind, WRAPPED, _median_difference, pair, 0)])
    return _decided(f"{_listing(kind + ' (pooled over σ)', parts)}; {fig.sample()}", parts)


def judge_cost_multiplier(grid: AdaptiveGrid) -> Judgement:
    """Beyond the paper, claim 13: few samples only multiply HSJA's (:data:`WRAPPED`) cost. With k repeats and
    k times the budget (the largest k), it reaches on the smallest n a confirmed distortion no larger than the
    plain attack on the largest n.

    Statistic: the pooled median (over images and sigma) of the first over that of the second. Holds when the
    interval is below 1 + SAME_DISTORTION, does not hold when above, undecided otherwise.
    """
    setting = _scaled_setting(grid, 13)
    if isinstance(setting, Judgement):
        return setting
    fig, k, ns = setting
    kind = f"median ×{k} with {k}× budget at n={ns[0]} / median plain at n={ns[-1]}"
    repeated = fig.columns(attack=WRAPPED, repeats=k, budget_factor=k, jitter=0.0, n=ns[0], **_FRESH)
    plain = fig.columns(attack=WRAPPED, repeats=1, n=ns[-1], **_FRESH)
    if not repeated or not plain:
        return Judgement(f"{WRAPPED} not run both ways", NOT_TESTABLE)
    parts = _run([fig.test(kind, WRAPPED, _median_ratio, (repeated, plain), 1 + SAME_DISTORTION, above=False)])
    return _decided(f"{_listing(kind + ' (pooled over σ)', parts)}; {fig.sample()}", parts)


def judge_equal_budget_repeats(grid: AdaptiveGrid) -> Judgement:
    """Beyond the paper, claim 14: at the same total budget, repeating each query gives the attacker larger
    confirmed distortions (it spends k queries on one answer).

    Per attack and k, the per-image paired differences repeat-and-vote − plain at the smallest n, pooled over
    sigma (input noise, fresh); statistic: their median. Holds when every interval (Bonferroni over them) is
    above 0, does not hold when one is below 0, undecided otherwise.
    """
    fig = _adaptive(grid, 14)
    if isinstance(fig, Judgement):
        return fig
    ns = fig.levels("n", **_FRESH)
    if not ns:
        return Judgement("no input-noise defence", NOT_TESTABLE)
    kind, tests = f"median paired difference repeat-and-vote − plain at n={ns[0]}, equal budget", []
    for k in fig.levels("repeats", budget_factor=1, **_FRESH):
        if k == 1:
            continue
        for attack in fig.levels("attack", repeats=k, budget_factor=1, **_FRESH):
            pair = fig.pairs({"repeats": (k, 1)}, _ADAPTIVE_KEY, attack=attack, budget_factor=1, n=ns[0], **_FRESH)
            if pair[0]:
                tests.append(fig.test(kind, f"{attack} ×{k}", _median_difference, pair, 0))
    if not tests:
        return Judgement("no repeat-and-vote attacker at equal budget", NOT_TESTABLE)
    parts = _run(tests)
    return _decided(f"{_listing(kind + ' (pooled over σ)', parts)}; {fig.sample()}", parts)


def judge_popskipjump(grid: AdaptiveGrid) -> Judgement:
    """Beyond the paper, claim 15: PopSkipJump needs smaller confirmed distortions than HSJA against
    g_{sigma,n}, at the same budget.

    Per n, the per-image paired differences PopSkipJump − HSJA (plain, input noise, fresh), pooled over sigma;
    statistic: their median. Holds when every interval (Bonferroni over the n) is below 0, does not hold when
    one is above 0, undecided otherwise.
    """
    fig = _adaptive(grid, 15)
    if isinstance(fig, Judgement):
        return fig
    kind, tests = "median paired difference PopSkipJump − HSJA", []
    for n in fig.levels("n", **_FRESH):
        pair = fig.pairs({"attack": ("PopSkipJump", "HSJA")}, _ADAPTIVE_KEY, repeats=1, n=n, **_FRESH)
        if pair[0]:
            tests.append(fig.test(kind, f"n={n}", _median_difference, pair, 0, above=False))
    if not tests:
        return Judgement("PopSkipJump and HSJA not both run", NOT_TESTABLE)
    parts = _run(tests)
    return _decided(f"{_listing(kind + ' (pooled over σ)', parts)}; {fig.sample()}", parts)


def judge_jittered_repeats(grid: AdaptiveGrid) -> Judgement:
    """Beyond the paper, claim 16: against a defence that seeds its noise from a hash of the input, HSJA
    (:data:`WRAPPED`) with jittered repeats and k times the budget gives smaller confirmed distortions than the
    plain HSJA.

    Per k, the per-image paired differences jittered repeats − plain (input-hash seeding), pooled over sigma
    and n; statistic: their median. Holds when every interval (Bonferroni over the k) is below 0, does not hold
    when one is above 0, undecided otherwise.
    """
    fig = _adaptive(grid, 16)
    if isinstance(fig, Judgement):
        return fig
    hashed = {"noise": "input", "seeding": "input-hash"}
    kind, tests = f"median paired difference {WRAPPED} jittered repeats − plain, input-hash seeding", []
    for k, jitter in dict.fromkeys((c.repeats, c.jitter) for c in grid.configurations
                                   if c.attack == WRAPPED and c.seeding == "input-hash" and c.jitter > 0):
        pair = fig.pairs({"repeats": (k, 1), "budget_factor": (k, 1), "jitter": (jitter, 0.0)}, _ADAPTIVE_KEY,
                         attack=WRAPPED, **hashed)
        if pair[0]:
            tests.append(fig.test(kind, f"×{k}", _median_difference, pair, 0, above=False))
    if not tests:
        return Judgement(f"no {WRAPPED} with jittered repeats against input-hash seeding", NOT_TESTABLE)
    parts = _run(tests)
    return _decided(f"{_listing(kind + ' (pooled over σ, n)', parts)}; {fig.sample()}", parts)


def judge_hidden_noise(grid: AdaptiveGrid) -> Judgement:
    """Beyond the paper, claim 17: noise after the first layer, at the clean accuracy of the input noise,
    gives larger confirmed distortions than input noise.

    Per law, the per-image paired differences hidden − input noise (plain attacks, fresh noise), pooled over
    the attacks, sigma and n; statistic: their median. Holds when every interval (Bonferroni over the laws) is
    above 0, does not hold when one is below 0, undecided otherwise. The clean accuracies are listed beside
    (the calibration matched them on other test images).
    """
    fig = _adaptive(grid, 17)
    if isinstance(fig, Judgement):
        return fig
    kind, tests, accuracies = "median paired difference hidden − input noise", [], []
    for noise in fig.levels("noise"):
        if noise == "input":
            continue
        hidden, plain = fig.pairs({"noise": (noise, "input")}, _ADAPTIVE_KEY, repeats=1, seeding="fresh")
        if hidden:
            tests.append(fig.test(kind, noise, _median_difference, (hidden, plain), 0))
            defences = dict.fromkeys((a.sigma, a.n, a.correct / a.tested, b.correct / b.tested)
                                     for a, b in ((grid.configurations[j], grid.configurations[k])
                                                  for j, k in zip(hidden, plain, strict=True)))
            accuracies.append(f"{noise}: " + ", ".join(f"σ={sigma:g} n={n} {hid:.3f} vs {inp:.3f}"
                                                       for sigma, n, hid, inp in defences))
    if not tests:
        return Judgement("no hidden-noise defence", NOT_TESTABLE)
    parts = _run(tests)
    return _decided(f"{_listing(kind + ' (pooled over attacks, σ, n)', parts)}; clean accuracy hidden vs input: "
                    f"{'; '.join(accuracies)}; {fig.sample()}", parts)


#: The claims beyond the paper, measured by the adaptive-attacks chapter (attackers that adapt to the
#: randomness, noise inside the network); their ``paper`` field holds what the literature reports.
BEYOND: tuple[Claim, ...] = (
    Claim(12, f"Against {WRAPPED} repeating each query k times with k times the budget, fewer samples n still "
              "give larger distortions.",
          "the paper's advice (fewer n defend better) was measured against attacks as they are", "adaptive_attacks",
          f"{WRAPPED} wrapped with the largest k at k× budget, median paired difference of confirmed distortion at "
          "the smallest n minus the largest (input noise, pooled over σ): holds if its "
          f"{_percent(CONFIDENCE)} interval is above 0, does not hold if below, else undecided",
          judge_adaptive_fewer_samples),
    Claim(13, f"Few samples only multiply {WRAPPED}'s cost: with k repeats and k times the budget, it does as well "
              "on the smallest n as the plain attack on the largest n.",
          "Qin et al. (NeurIPS 2021): the defence's effect depends on its noise against the attacker's",
          "adaptive_attacks",
          f"median confirmed distortion of {WRAPPED} with the largest k at k× budget on the smallest n over the plain "
          f"{WRAPPED}'s on the largest n (pooled over σ): holds if its {_percent(CONFIDENCE)} interval is below "
          f"{1 + SAME_DISTORTION:g}, does not hold if above, else undecided", judge_cost_multiplier),
    Claim(14, "At the same total budget, repeating each query gives the attacker larger distortions.",
          "a k-repeat spends k queries on one answer", "adaptive_attacks",
          "per attack and k, median paired difference repeat-and-vote − plain at the smallest n (input noise, "
          f"pooled over σ): holds if every interval is above 0, does not hold if one is below, else undecided; "
          f"{_BONFERRONI}; {_WORST}", judge_equal_budget_repeats),
    Claim(15, "PopSkipJump needs smaller distortions than HSJA against g_{σ,n} at the same budget.",
          "Simon-Gabriel et al. (ICML 2021): randomized defences give almost no extra robustness against it",
          "adaptive_attacks",
          "per n, median paired difference PopSkipJump − HSJA (input noise, pooled over σ): holds if every "
          f"interval is below 0, does not hold if one is above, else undecided; {_BONFERRONI}; {_WORST}",
          judge_popskipjump),
    Claim(16, f"Seeding the noise from a hash of the input does not stop {WRAPPED} repeating at jittered points: "
              f"with k times the budget, its distortion is smaller than the plain {WRAPPED}'s.",
          "Gao et al. (NeurIPS 2022) on the limits of stochastic pre-processing", "adaptive_attacks",
          f"per k, median paired difference {WRAPPED} with jittered repeats (k× budget) − plain {WRAPPED} against "
          "input-hash seeding (pooled over σ, n): holds if every interval is below 0, does not hold if one is "
          f"above, else undecided; {_BONFERRONI}; {_WORST}", judge_jittered_repeats),
    Claim(17, "Noise after the first layer, at the clean accuracy of input noise, gives larger distortions than "
              "input noise.",
          "Pinot et al. (NeurIPS 2019): noise injection in the network gives robustness", "adaptive_attacks",
          "per law, median paired difference hidden − input noise (plain attacks, pooled over attacks, σ, n): holds "
          f"if every interval is above 0, does not hold if one is below, else undecided; {_BONFERRONI}; {_WORST}",
          judge_hidden_noise),
)


def scorecard(profile: str | None, claims: Sequence[Claim] = CLAIMS) -> pd.DataFrame:
    """One row per claim: the paper's statement and number, what this build measured, the verdicts.

    Parameters
    ----------
    profile : str or None
        Only measurements recorded under this profile count (``None``: any).
    claims : sequence of Claim
        The paper's (``CLAIMS``, the default) or those beyond it (:data:`BEYOND`).

    Returns
    -------
    pandas.DataFrame
        Columns ``claim, statement, paper, measured, verdict, headline, statistic, protocol_measured,
        protocol, protocol_headline, rule, chapter``: ``headline`` and ``statistic`` as in :class:`Judgement`;
        ``protocol_measured``, ``protocol`` and ``protocol_headline`` are the judgement on the paper's protocol
        (``None`` for the claims that have none or were not measured).
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
        ``statistic`` as in :class:`Judgement`; ``protocol`` and ``protocol_headline``: the verdict and
        headline on the paper's protocol, ``None`` where the claim has none), :data:`NOT_MEASURED` where that
        profile recorded nothing for the claim. A profile with a record that cannot be read (ValueError from
        :func:`rs_repro.report.measurements.load`, naming the file) has :data:`DAMAGED` in every row, no dimension,
        and the error in ``damage`` (``None`` elsewhere); the other profiles are unaffected.
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
    white-box minimal one (:func:`undefended_over_minimal`); ``certificate``: per attack, claim 1's ratio of
    the median confirmed distortion to the median certified radius on its worst smoothed classifier (the
    worst of :func:`certificate_ratios`, converged attacks included); ``push``: the median crossing of the
    boundary of g_sigma past x_a at the chapter's main sigma, in units of sigma (:func:`push_in_sigma`).
    Every interval is a pointwise 95% one (the judges read them Bonferroni-corrected).

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
            by_attack: dict[str, list[_Part]] = {}
            for c, interval in certificate_ratios(grid):
                if interval is not None:
                    by_attack.setdefault(c.attack, []).append(_part(_OVER_RADIUS, _label(c), interval,
                                                                    DISTORTION_OVER_RADIUS))
            for attack, parts in by_attack.items():
                point("certificate", profile, grid.dataset, attack, _worst(parts).interval)
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
