"""The judging kernel of the claims: what a judge returns, and the machinery every judge decides with.

A claim is decided by a *judge*: a function of the typed record one chapter wrote
(:data:`rs_repro.report.measurements.SCHEMA`) that returns a :class:`Judgement`, with the interval its verdict was
decided on. Nothing is measured again: a chapter that did not run under the profile asked for leaves its
claims :data:`NOT_MEASURED`. The paper's claims are in :mod:`rs_repro.claims.paper`, those beyond it in
:mod:`rs_repro.claims.beyond`, the tables that show them in :mod:`rs_repro.claims.scorecard`.

A judge works on the per-image values of its record (``docs/architecture.md``, "Measurements and verdicts"):
medians over images and medians of per-image paired differences, where a failure (an attack that found no
adversarial example) is censored at inf, kept and never dropped, so a median is finite only where fewer than
half fail. Their intervals are bootstrap intervals (:func:`rs_repro.report.verdicts.bootstrap`) that resample
the images jointly across all configurations (:class:`Protocol`), from a seed derived from the record's seed and
the claim's number (:func:`claim_seed`); proportions have exact Clopper-Pearson intervals, medians of few units
exact order-statistic intervals. A rule that reads several intervals (:class:`Test`) reads each at the
Bonferroni confidence that makes them 95% family-wise (:func:`run_tests`,
:func:`rs_repro.report.verdicts.bonferroni`): it does not hold when one lies on the other side of its threshold
(:func:`decided`). The verdict is read off the intervals by the rule stated in ``Claim.rule``: *holds*, *does
not hold*, *undecided* (an interval contains its threshold) or :data:`NOT_TESTABLE` (the record lacks what the
rule needs). Every measured text gives the confidence, the number of images and of failures; no printed number
is rounded across the threshold it is read against (:func:`rs_repro.report.verdicts.shown`). The thresholds the
rules read are here, each named after the claim it decides.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from rs_repro.report import verdicts
from rs_repro.report.measurements import AdaptiveGrid, AttackConfiguration, AttackGrid
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
    """One claim, of the paper (:data:`rs_repro.claims.paper.CLAIMS`) or beyond it
    (:data:`rs_repro.claims.beyond.BEYOND`).

    Attributes
    ----------
    number : int
        Its number: in ``paper-notes.md`` section 4 for the paper's, after them for those beyond it.
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


def claim_seed(seed: int, number: int) -> int:
    """The bootstrap seed of claim ``number`` on a record whose seed is ``seed``."""
    return derive_seed(seed, "claim", number)


def too_few(rows: int, what: str) -> Judgement | None:
    """The not-testable judgement when fewer than 2 ``what`` (images, segments) leave no interval."""
    return Judgement(f"fewer than 2 {what}: no bootstrap interval", NOT_TESTABLE) if rows < 2 else None


def percent(fraction: float) -> str:
    """A confidence as a percentage, e.g. ``95%``, ``99.88%``."""
    return f"{100 * fraction:.4g}%"


@dataclass(frozen=True)
class Part:
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


def threshold_part(kind: str, which: str, interval: Interval, threshold: float, *, above: bool = True) -> Part:
    """The part "the statistic is above ``threshold``" (``above=False``: below), judged by
    :func:`rs_repro.report.verdicts.verdict`."""
    margin = interval.lower - threshold if above else threshold - interval.upper
    return Part(kind, which, dataclasses.replace(interval, thresholds=(threshold,)),
                verdicts.verdict(interval, threshold, above=above), margin)


def _part_within(kind: str, which: str, interval: Interval, low: float, high: float) -> Part:
    """The part "the statistic is between ``low`` and ``high``", :func:`rs_repro.report.verdicts.verdict_within`."""
    return Part(kind, which, dataclasses.replace(interval, thresholds=(low, high)),
                verdicts.verdict_within(interval, low, high), min(interval.lower - low, high - interval.upper))


@dataclass(frozen=True)
class Test:
    """One interval a rule will read, before its confidence is known.

    Attributes
    ----------
    kind, which : str
        As in :class:`Part`.
    interval : callable
        ``interval(confidence=...)`` computes it.
    threshold : float or (float, float)
        Its threshold; a pair is the band of an equivalence (:func:`rs_repro.report.verdicts.verdict_within`).
    above : bool
        Whether the claim's side is above a single threshold.
    """

    kind: str
    which: str
    interval: Callable[..., Interval]
    threshold: float | tuple[float, float]
    above: bool = True


def run_tests(tests: Sequence[Test]) -> list[Part]:
    """The parts of ``tests``, every interval at the Bonferroni confidence that makes them cover together with
    probability :data:`CONFIDENCE` (:func:`rs_repro.report.verdicts.bonferroni`): a rule that does not hold when one
    of them lies on the other side then errs with probability at most 1 - :data:`CONFIDENCE`."""
    confidence = verdicts.bonferroni(CONFIDENCE, len(tests))
    parts = []
    for test in tests:
        interval = test.interval(confidence=confidence)
        parts.append(_part_within(test.kind, test.which, interval, *test.threshold)
                     if isinstance(test.threshold, tuple) else
                     threshold_part(test.kind, test.which, interval, test.threshold, above=test.above))
    return parts


def family(parts: Sequence[Part]) -> str:
    """The confidence of the intervals of ``parts`` for the measured text, with the multiplicity correction."""
    if len(parts) == 1:
        return f"{percent(parts[0].interval.confidence)} interval"
    return (f"{percent(CONFIDENCE)} family-wise: Bonferroni over the {len(parts)} intervals, each at "
            f"{percent(parts[0].interval.confidence)}")


#: The order of the verdicts from worst to best, for :func:`worst_part`.
_RANK = {FAILS: 0, UNDECIDED: 1, HOLDS: 2}


def worst_part(parts: Sequence[Part]) -> Part:
    """The part with the worst verdict (does not hold, then undecided, then holds); among those, the first
    kind in the order of ``parts``, and of that kind the smallest margin."""
    kinds = list(dict.fromkeys(p.kind for p in parts))
    return min(parts, key=lambda p: (_RANK[p.verdict], kinds.index(p.kind), p.margin))


def decided(measured: str, parts: Sequence[Part], *others: str) -> Judgement:
    """``measured`` with the confidence of its parts' intervals, the verdict of all its parts and of the
    ``others`` verdicts (parts without an interval; :func:`rs_repro.report.verdicts.all_of`), and the worst part as
    headline (:func:`worst_part`)."""
    worst = worst_part(parts)
    verdict = verdicts.all_of([*(p.verdict for p in parts), *others])
    needed = verdicts.images_to_decide(worst.interval) if verdict == UNDECIDED else None
    decide = "" if needed is None else (f"; at the measured effect about {needed} images (here "
                                        f"{worst.interval.rows}) would decide {worst.statistic}")
    return Judgement(f"{measured}; {family(parts)}{decide}", verdict, headline=worst.interval,
                     statistic=worst.statistic)


def label(c: AttackConfiguration) -> str:
    """A configuration's classifier, short: e.g. ``standard σ=0.35 n=10 Pa=0.8``."""
    parts = [c.model] + [f"{name}={value:g}" for name, value in (("σ", c.sigma), ("n", c.n), ("Pa", c.pa))
                         if value is not None]
    return " ".join(parts)


def _pooled_median(rows: np.ndarray, columns: Sequence[int]) -> np.ndarray:
    """The median of ``rows`` [..., k, m] over its k images and the given columns together."""
    return verdicts.median(rows[..., list(columns)], axis=(-2, -1))


def median_difference(rows: np.ndarray, first: Sequence[int], second: Sequence[int]) -> np.ndarray:
    """The median over images and column pairs of the paired differences ``first`` - ``second`` (columns
    paired in order)."""
    return verdicts.median(verdicts.paired_difference(rows[..., list(first)], rows[..., list(second)]),
                           axis=(-2, -1))


def median_ratio(rows: np.ndarray, numerator: Sequence[int], denominator: Sequence[int]) -> np.ndarray:
    """The pooled median of the ``numerator`` columns over that of the ``denominator`` columns."""
    return verdicts.ratio(_pooled_median(rows, numerator), _pooled_median(rows, denominator))


#: The fields that identify a configuration of an attack grid.
_KEY = ("attack", "model", "sigma", "n", "pa")


@dataclass(frozen=True)
class Protocol:
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
    def of(cls, grid: AttackGrid | AdaptiveGrid, source: str, number: int) -> Protocol:
        """The distortions ``source`` of ``grid`` for claim ``number``."""
        distortion = np.array([getattr(c, source) for c in grid.configurations], dtype=np.float64).T
        return cls(grid, distortion.reshape(len(grid.images), len(grid.configurations)),
                   claim_seed(grid.seed, number), source)

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
             threshold: float | tuple[float, float], *, above: bool = True) -> Test:
        """The :class:`Test` of :meth:`interval` on ``groups`` against ``threshold``."""
        return Test(kind, which, partial(self.interval, statistic, *groups), threshold, above)

    def sample(self) -> str:
        """The images and the failures behind the intervals computed so far, for the measured text: a failure
        (inf, no adversarial point) is counted as larger than any distortion, never left out."""
        columns = sorted(self.read)
        images = len(self.grid.images)
        failures = int(np.isinf(self.distortion[:, columns]).sum())
        text = (f"{images} images; {failures} failures (inf, kept as larger than any distortion) among the "
                f"{images * len(columns)} attacks of the {len(columns)} configurations read")
        if self.source == "verified_l2":
            text += (f"; an adversarial example is confirmed when its one-sided {percent(1 - self.grid.alpha)} "
                     "Clopper-Pearson lower bound of P[g(x) ≠ y] is at least P_a")
        return text


#: How the rule texts name the interval shown beside a verdict decided on several.
WORST = ("shown beside the verdict: the worst interval (one on the other side if any, else an undecided one, "
         "else the one nearest its threshold)")
#: How the rule texts name the multiplicity correction of a rule that reads several intervals.
BONFERRONI = (f"the intervals are {percent(CONFIDENCE)} family-wise (Bonferroni: each at 1 − "
              f"{1 - CONFIDENCE:g}/m for the m intervals the rule reads)")
