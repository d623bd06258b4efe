"""The numbers a chapter measured, kept for the claims chapter (``docs/architecture.md``, "Flow of one chapter").

Each chapter's page half (``record(res, values)`` of ``rs_repro.chapters.<stem>.page``) returns the few numbers
that decide the paper's claims as one of the typed records below (its :data:`SCHEMA` entry), and the notebook
(or ``rs-repro compute``) stores it with :func:`record`. The record is
written to ``build/results/<stem>/measurements/<profile>.json``, one file per profile the chapter ran under,
so the measurements of several profiles (digits, Fashion-MNIST, ImageNet) stand side by side; the ``claims``
chapter reads them back with :func:`load` as the same dataclass and computes nothing again. A field read by
a claim is a typed attribute, never a string key, and a record of another shape fails loudly.

Distances are l2 norms in [0, 1] pixel units; ``None`` marks a quantity that was not located (outside a
scanned range).
"""

from __future__ import annotations

import dataclasses
import json
import time
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rs_repro.pipeline import context, paths
from rs_repro.pipeline import provenance as stamping
from rs_repro.pipeline.provenance import check_stamp, shown


@dataclass(frozen=True)
class ThresholdCheck:
    """Theory chapter, claim 11: the exact probability that a vote is adversarial at the eq. (5) threshold.

    Attributes
    ----------
    pa : float
        The level P_a.
    probability_at_threshold : dict of int to float
        For each n, P[more than n/2 of n micro-decisions wrong] when each is wrong with probability
        1 - pi0*, pi0* the threshold eq. (5) prints.
    """

    pa: float
    probability_at_threshold: dict[int, float]


@dataclass(frozen=True)
class Crossing:
    """Where the boundary of g_sigma is crossed past the white-box x_a, image by image, at one noise level.

    Attributes
    ----------
    sigma : float
        The smoothing noise.
    distances : list of float
        Per attacked image (the chapter's order), the l2 distance past x_a (negative: before it) where
        another class overtakes the true one in g_sigma; a crossing outside the scanned range is censored on
        its side, ``-inf`` (crossed already at the first point) or ``inf`` (not crossed at the last).
    """

    sigma: float
    distances: list[float]


@dataclass(frozen=True)
class BoundaryPush:
    """Fig. 1 chapter, claim 7: the boundary of g_sigma and the levels P_a along the rays past x_a.

    Attributes
    ----------
    dataset : str
    sigma : float
        The chapter's main noise level.
    ns : list of int
    pas : list of float
    num_images : int
    attack_distance_median : float
        Median ||x_a - x_o|| of the white-box attack.
    widths : dict of int to list of (float or None)
        ``widths[n][i]``: on image i's ray, the width of the transition of P[g_{sigma,n}(x) != y] from the
        smallest P_a of ``pas`` to the largest (the distance between where each is first reached); ``inf``
        where the largest is not reached inside the scanned range, ``None`` where the smallest is not located
        (reached at the first point or never).
    crossings : list of Crossing
        The crossing at every noise level scanned (the main one first).
    """

    dataset: str
    sigma: float
    ns: list[int]
    pas: list[float]
    num_images: int
    attack_distance_median: float
    widths: dict[int, list[float | None]]
    crossings: list[Crossing]

    def crossing(self, sigma: float) -> Crossing:
        """The crossing at noise level ``sigma`` (KeyError if it was not scanned)."""
        for found in self.crossings:
            if found.sigma == sigma:
                return found
        raise KeyError(f"no crossing recorded at sigma={sigma:g}")


@dataclass(frozen=True)
class BisectionSpread:
    """Fig. 3 chapter, claim 8: the spread of a binary search's output against g_{sigma,n}.

    Attributes
    ----------
    dataset : str
    seed : int
        The chapter's seed (the claims chapter derives its bootstrap seed from it).
    sigma : float
    spread : dict of int to float
        For each n, the standard deviation (l2) of the search's output, averaged over the segments.
    per_segment : dict of int to list of float
        For each n, that standard deviation on each segment (the same segments, in order, for every n).
    """

    dataset: str
    seed: int
    sigma: float
    spread: dict[int, float]
    per_segment: dict[int, list[float]]


@dataclass(frozen=True)
class AttackConfiguration:
    """Fig. 5 chapter: one attack against one classifier, on the grid's attacked images.

    Every per-image list follows ``AttackGrid.images``: the same images for every configuration, none
    left out, so two configurations compare image by image. ``inf`` marks an image where no point was found.

    Attributes
    ----------
    attack, target, model : str
        The attack, the classifier's label and its base model (``standard``, ``randtrain``, ``advtrain``).
    sigma, n, pa : float, int, float or None
        The smoothing noise, votes per query and acceptance level of the smoothed oracle (``None`` for a
        classifier without smoothing).
    correct, tested : int
        Clean accuracy of the attacked classifier: images of the test split it classifies right, of those tested.
    correct_images : list of bool
        Per tested image (the chapter's accuracy sample, the same images in the same order for every
        configuration), whether the attacked classifier labels it right: one vote g_{sigma,n} with ties broken
        at random under smoothing, the base model's argmax without. Two configurations pair image by image
        (McNemar's test, claim 4); ``sum(correct_images) == correct``.
    reported_l2 : list of float
        The attack's reported distortion, the paper's protocol: the best query the oracle accepted (under
        smoothing, ceil(n P_a) wrong micro-decisions of one vote); 0 where the clean image was accepted.
    verified_l2 : list of float
        The distortion of a **confirmed** adversarial example at level P_a (eq. 4): an image in [0, 1]^d whose
        one-sided (1 - ``AttackGrid.alpha``) Clopper-Pearson lower bound of P[g_{sigma,n}(x) != y] from fresh
        votes is at least P_a (:func:`rs_repro.attacks.verification.push_to_level`, the smaller over the attack's
        candidates); ``inf`` where the attack failed on the image (no confirmed point inside the box), a failure
        censored at infinity in every statistic. Equal to ``reported_l2`` without smoothing.
    at_level : list of bool
        Whether the reported point itself was confirmed at eq. (4) (the push kept t = 1).
    level : list of float
        P[g_{sigma,n}(x) != y] at the reported point, from fresh votes (1 or 0 without smoothing).
    radius : list of float or None
        The CERTIFY radius of each image under the classifier's base model and sigma (``None`` without
        smoothing).
    forward_passes : float
        Mean base-model forward passes per image.
    """

    attack: str
    target: str
    model: str
    sigma: float | None
    n: int | None
    pa: float | None
    correct: int
    tested: int
    correct_images: list[bool]
    reported_l2: list[float]
    verified_l2: list[float]
    at_level: list[bool]
    level: list[float]
    radius: list[float] | None
    forward_passes: float

    @property
    def accuracy(self) -> float:
        """Clean accuracy, ``correct / tested``."""
        return self.correct / self.tested


@dataclass(frozen=True)
class AttackGrid:
    """Fig. 5 chapter, claims 1-6 and 10: every attack against every classifier, same images, same budget.

    Attributes
    ----------
    dataset : str
    seed : int
        The chapter's seed (judges derive their bootstrap seeds from it).
    max_queries : int
        Query budget per image.
    votes : int
        Fresh votes behind each decision of the verification (:func:`rs_repro.attacks.verification.push_to_level`).
    alpha : float
        A confirmed adversarial example has its one-sided (1 - alpha) Clopper-Pearson lower bound of eq. (4)'s
        probability at or above P_a.
    images : list of int
        Test-split positions of the attacked images, the order of every per-image list.
    minimal_l2 : list of float
        Per image, the white-box minimal l2 distortion on the undefended standard model
        (:func:`rs_repro.attacks.minimal.minimal_l2`), a floor for every attack on it.
    configurations : list of AttackConfiguration
    """

    dataset: str
    seed: int
    max_queries: int
    votes: int
    alpha: float
    images: list[int]
    minimal_l2: list[float]
    configurations: list[AttackConfiguration]


@dataclass(frozen=True)
class NormalAgreement:
    """Normal-vector chapter, claim 9: HSJA's normal estimates at the boundary of g_sigma, with and without RS.

    At a point x_b on the boundary of g_sigma for each image, HSJA's estimator
    (:func:`rs_repro.attacks.hsja.normal_estimate`) is run twice with the same probe radius delta: on the base
    classifier f (without RS) and on the random vote g_{sigma,n} (with RS, one vote of n micro-decisions per
    probe).

    Attributes
    ----------
    dataset : str
    seed : int
    sigma : float
    n : int
        Micro-decisions per probe of the estimate with RS.
    probes : int
        Probes per estimate.
    ratios : list of float
        The probe radii delta in units of sigma, increasing (the paper's condition: delta above sigma).
    cosine : list of list of float
        ``cosine[r][i]``: cosine between the two estimates at ratio ``ratios[r]`` for image i.
    one_label : list of list of bool
        ``one_label[r][i]``: every probe of the estimate with RS got the same answer.
    hsja_steps, hsja_one_label_steps : list of int
        Per image, the gradient steps of a full HSJA run against g_{sigma,n} and those whose probes all got
        the same answer (``AttackResult.diagnostics``).
    """

    dataset: str
    seed: int
    sigma: float
    n: int
    probes: int
    ratios: list[float]
    cosine: list[list[float]]
    one_label: list[list[bool]]
    hsja_steps: list[int]
    hsja_one_label_steps: list[int]


@dataclass(frozen=True)
class AdaptiveConfiguration:
    """Adaptive-attacks chapter: one attacker against one random classifier, on the grid's attacked images.

    Attributes
    ----------
    attack : str
        HSJA, SurFree, RayS or PopSkipJump.
    repeats, budget_factor : int
        Each query asked ``repeats`` times (the majority answer), with ``budget_factor`` times the grid's
        budget (1 and 1 for the plain attack).
    jitter : float
        l2 offset of each repeat (0: at the query point).
    noise, seeding : str
        Where the defence adds noise (``input``, ``hidden-gaussian``, ``hidden-laplace``) and how a query's
        noise is drawn (``fresh`` or ``input-hash``).
    sigma, scale : float
        The input noise (or, for hidden noise, the input noise whose clean accuracy it matches) and the noise
        scale used.
    n : int
        Micro-decisions per vote.
    correct, tested : int
        Clean accuracy of the defence's majority vote.
    correct_images : list of bool
        Per tested image (the same accuracy sample, in the same order, for every configuration), whether the
        defence's vote labels it right (ties broken at random); ``sum(correct_images) == correct``.
    reported_l2, verified_l2 : list of float
        Per image (``AdaptiveGrid.images`` order): the attack's best accepted query, and the distortion of the
        adversarial example confirmed at level ``AdaptiveGrid.level`` (eq. 4, one-sided Clopper-Pearson lower
        bound at confidence 1 - ``AdaptiveGrid.alpha``, inside [0, 1]^d) by
        :func:`rs_repro.attacks.verification.push_to_level`; inf where the attack failed (a censored failure).
    queries, forward_passes : float
        Mean queries and base-model forward passes per image (a repeated query counts ``repeats`` times).
    """

    attack: str
    repeats: int
    budget_factor: int
    jitter: float
    noise: str
    seeding: str
    sigma: float
    scale: float
    n: int
    correct: int
    tested: int
    correct_images: list[bool]
    reported_l2: list[float]
    verified_l2: list[float]
    queries: float
    forward_passes: float


@dataclass(frozen=True)
class AdaptiveGrid:
    """Adaptive-attacks chapter, the claims beyond the paper: every attacker against every random classifier.

    Attributes
    ----------
    dataset : str
    seed : int
        The chapter's seed (judges derive their bootstrap seeds from it).
    max_queries : int
        The base query budget per image.
    level : float
        The level P_a of eq. (4) at which every adversarial example is confirmed.
    votes : int
        Fresh votes behind each decision of the verification.
    alpha : float
        Confirmation at confidence 1 - alpha (one-sided Clopper-Pearson lower bound at or above ``level``).
    images : list of int
        Test-split positions of the attacked images, the order of every per-image list.
    configurations : list of AdaptiveConfiguration
    """

    dataset: str
    seed: int
    max_queries: int
    level: float
    votes: int
    alpha: float
    images: list[int]
    configurations: list[AdaptiveConfiguration]


#: The record type of each chapter that records measurements.
SCHEMA: dict[str, type] = {"theory": ThresholdCheck, "fig1_adversarial_probability": BoundaryPush,
                           "fig3_binary_search": BisectionSpread, "fig5_attacks": AttackGrid,
                           "normal_vectors": NormalAgreement, "adaptive_attacks": AdaptiveGrid}


#: The file name part of measurements recorded outside the chapter runner (no profile set).
NO_PROFILE = "none"


def path(stem: str, profile: str | None = None) -> Path:
    """``build/results/<stem>/measurements/<profile>.json`` (:data:`NO_PROFILE` for ``None``)."""
    return paths.BUILD / "results" / stem / "measurements" / f"{profile or NO_PROFILE}.json"


def recorded_profiles() -> list[str]:
    """The profiles some chapter of :data:`SCHEMA` recorded measurements under, sorted (runs outside the
    chapter runner, :data:`NO_PROFILE`, left out)."""
    found = {p.stem for stem in SCHEMA for p in path(stem).parent.glob("*.json")}
    return sorted(found - {NO_PROFILE})


def _schema(stem: str) -> type:
    if stem not in SCHEMA:
        raise ValueError(f"stem={stem!r} is not accepted; chapters that record measurements: {sorted(SCHEMA)}")
    return SCHEMA[stem]


def record(stem: str, values: Any) -> Path:
    """Write ``values``, the :data:`SCHEMA` record of chapter ``stem``, atomically.

    The file is that of the profile the chapter runs under (``profile`` of :class:`rs_repro.pipeline.context.RunContext`;
    :data:`NO_PROFILE` outside the chapter runner) and carries the profile, the time it was written and the
    provenance of the run (:func:`rs_repro.pipeline.provenance.stamp`: commit, machine, versions), which
    :func:`provenance` reads back. Under the chapter runner it is written to the run's folder
    (``records`` of :class:`rs_repro.pipeline.context.RunContext`) and reaches :func:`path` only when the page is published:
    a failed run changes no record the claims chapter reads.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    kind = _schema(stem)
    if type(values) is not kind:
        raise ValueError(f"values of type {type(values).__name__} are not accepted for {stem!r}; "
                         f"expected a {kind.__name__}")
    run = context.current()
    profile, staging = run.profile, run.records
    target = Path(staging) / f"{stem}.json" if staging else path(stem, profile)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {"stem": stem, "profile": profile, "created": time.time(), "provenance": stamping.stamp(),
               "values": dataclasses.asdict(values)}
    text = json.dumps(payload, indent=1, default=float)
    return paths.atomic_write(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def move_staged(folder: Path, profile: str) -> list[Path]:
    """Move the records a chapter run under ``profile`` staged in ``folder`` (:func:`record`) into place.

    Returns
    -------
    list of pathlib.Path
        The files written (:func:`path`), none when the run recorded nothing.
    """
    moved = []
    for staged in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        _schema(staged.stem)  # a chapter that records measurements
        target = path(staged.stem, profile)
        target.parent.mkdir(parents=True, exist_ok=True)
        moved.append(paths.atomic_write(target, lambda tmp, source=staged: tmp.write_bytes(source.read_bytes())))
    return moved


def _decode(kind: Any, value: Any, where: str) -> Any:
    """``value`` read from JSON as the type ``kind`` (dataclasses, lists, dicts with numeric keys, optionals);
    ValueError naming the field ``where`` if it has another shape."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _decode(inner, value, where)
    if (dataclasses.is_dataclass(kind) or origin is dict) and not isinstance(value, dict):
        raise ValueError(f"{where}={shown(value)} is not accepted; expected an object")
    if origin is list and not isinstance(value, list):
        raise ValueError(f"{where}={shown(value)} is not accepted; expected a list")
    if dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        names = {f.name for f in dataclasses.fields(kind)}
        if set(value) != names:
            raise ValueError(f"{where} has fields {sorted(value)}; a {kind.__name__} has {sorted(names)}")
        return kind(**{name: _decode(hints[name], value[name], f"{where}.{name}") for name in names})
    if origin is list:
        return [_decode(args[0], item, f"{where}[{k}]") for k, item in enumerate(value)]
    if origin is dict:
        key_type, item_type = args
        try:
            keys = [key_type(k) for k in value]
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"{where} has a key that is not a {key_type.__name__} ({exc})") from exc
        return {key: _decode(item_type, item, f"{where}[{k}]")
                for key, (k, item) in zip(keys, value.items(), strict=True)}
    if kind is float:
        if not isinstance(value, int | float):
            raise ValueError(f"{where}={shown(value)} is not accepted; expected a number")
        return float(value)
    if kind in (int, str) and not isinstance(value, kind):
        raise ValueError(f"{where}={shown(value)} is not a {kind.__name__}")
    return value


def _read(target: Path) -> dict[str, Any]:
    """The JSON object in measurement file ``target``; ValueError naming the file if it cannot be read."""
    try:
        payload = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON
        raise ValueError(f"measurement file {target} cannot be read: {exc}") from exc
    if type(payload) is not dict or type(payload.get("values")) is not dict:
        raise ValueError(f"measurement file {target} is not accepted; expected a JSON object with its 'values'")
    return payload


def load(stem: str, profile: str | None = None) -> Any | None:
    """The record chapter ``stem`` wrote under ``profile`` (its :data:`SCHEMA` type), or ``None`` if none.

    With ``profile=None`` the most recently written record of any profile is returned. A file that cannot be
    read, or of another shape (an older build), raises ``ValueError`` naming the file and the field.
    """
    _schema(stem)
    if profile is not None:
        candidates = [path(stem, profile)]
    else:
        candidates = sorted(path(stem).parent.glob("*.json"), key=lambda p: p.stat().st_mtime)[-1:]
    if not candidates or not candidates[0].exists():
        return None
    payload = _read(candidates[0])
    try:
        return decode(stem, payload)
    except ValueError as exc:
        raise ValueError(f"measurement file {candidates[0]}: {exc}") from exc


def decode(stem: str, payload: Mapping[str, Any]) -> Any:
    """The record of chapter ``stem`` in ``payload``, a measurement file's JSON (ValueError naming the field
    that does not fit its :data:`SCHEMA` type)."""
    if not isinstance(payload, Mapping) or "values" not in payload:
        raise ValueError(f"{stem} measurements are not accepted; expected a JSON object with 'values'")
    return _decode(_schema(stem), payload["values"], f"{stem} measurements")


def provenance(stem: str, profile: str) -> dict[str, Any] | None:
    """Where and when chapter ``stem``'s record of ``profile`` was computed (:func:`rs_repro.pipeline.provenance.stamp`
    as :func:`record` wrote it, checked by :func:`rs_repro.pipeline.provenance.check_stamp`), or None without a record
    (or for a record written before stamps). ValueError naming the file if it cannot be read or its stamp
    has another shape."""
    target = path(stem, profile)
    if not target.exists():
        return None
    stamp = _read(target).get("provenance")
    try:
        return None if stamp is None else check_stamp(stamp, "provenance")
    except ValueError as exc:
        raise ValueError(f"measurement file {target}: {exc}") from exc
