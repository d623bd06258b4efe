"""Verification of eq. (4): is a point adversarial for the smoothed classifier, checked with fresh votes?

Under randomized smoothing an attack's "adversarial" answer may be luck: the vote g_{sigma,n} is random,
and a query point answered adversarial once may be answered correctly the next time. Maho, Furon and
Le Merrer (ICASSP 2022, eq. (4)) call x_a an adversarial example of level P_a when
P[g_{sigma,n}(x_a) != g_sigma(x_o)] >= P_a, the probability being over the n noise draws of one vote; as
in their experiments, the true label y stands for the unobservable g_sigma(x_o). :func:`verify`
estimates that probability for the points an attack returns, from independent votes with noise the
attack never saw, with a Clopper-Pearson interval. :func:`push_to_level` turns an attack's point into a
*confirmed* adversarial example: an image of [0, 1]^d on the box-projected path from x_o through the point,
where a one-sided test with fresh votes says that eq. (4) holds at confidence 1 - alpha; :func:`push_candidates`
does so from several points of one attack (its best accepted query, its own last iterate) and keeps the
smallest confirmed distortion, and :func:`confirm_attack` does so for the candidates of an attack's result
(:data:`CANDIDATES`). An image without a confirmed point is a failure of the attack.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.stats
import torch

from rs_repro import checks, theory
from rs_repro.attacks.oracle import AttackResult
from rs_repro.noise import GroupedNoise, SharedNoise
from rs_repro.seeds import derive_seed, generator
from rs_repro.smoothing import Smooth

__all__ = ["CANDIDATES", "PUSH_MAX_T", "Candidates", "Pushed", "box_path", "confirm_attack", "push_candidates",
           "push_to_level", "saturation", "verify"]


def verify(smooth: Smooth, xs: torch.Tensor, ys: torch.Tensor, n: int, repeats: int, alpha: float = 0.05, *,
           batch_size: int = 1000, generator: torch.Generator | None = None) -> tuple[np.ndarray, ...]:
    """Estimate P[g_{sigma,n}(x) != y] of eq. (4) from ``repeats`` independent votes per input.

    Parameters
    ----------
    smooth : rs_repro.smoothing.Smooth
        The smoothed classifier g_{sigma,n} the points were attacked on.
    xs : torch.Tensor, shape [B, C, H, W]
        Candidate adversarial examples.
    ys : torch.Tensor, shape [B]
        True labels.
    n : int
        Micro-decisions per vote.
    repeats : int
        Independent votes per input (each with n fresh draws).
    alpha : float
        The interval is two-sided Clopper-Pearson at confidence 1 - alpha.
    batch_size : int, default 1000
        Largest batch given to the base classifier (:meth:`~rs_repro.smoothing.Smooth.counts`).
    generator : torch.Generator, optional
        Source of the noise, on the device of ``xs``; default: ``smooth``'s own generator.

    Returns
    -------
    p_hat, lower, upper : numpy.ndarray, shape [B] each
        Fraction of wrong votes and its confidence interval.
    """
    xs = checks.images("xs", xs, 4, "[B, C, H, W]")
    repeats = checks.integer("repeats", repeats, 1)
    alpha = checks.real("alpha", alpha, 0, 1)
    wrong, _ = _wrong_votes(smooth, xs, ys, n, repeats, batch_size, generator)
    lower, upper = theory.clopper_pearson(wrong, np.full_like(wrong, repeats), alpha)
    return wrong / repeats, np.asarray(lower), np.asarray(upper)


@dataclass(frozen=True)
class Pushed:
    """Adversarial examples confirmed at level P_a (eq. 4) by :func:`push_to_level`, one per image.

    Attributes
    ----------
    x : torch.Tensor, shape [B, C, H, W]
        The confirmed point clip(x_o + t (x_adv - x_o), 0, 1), inside [0, 1]^d, on the device of the inputs;
        the attack's point x_adv where the image failed.
    t : numpy.ndarray, shape [B]
        The factor on the attack's perturbation (>= 1), ``inf`` where the image failed.
    l2, linf : numpy.ndarray, shape [B]
        Distortions of ``x`` from x_o, ``inf`` where the image failed.
    confirmed : numpy.ndarray of bool, shape [B]
        Whether a point was confirmed: the one-sided Clopper-Pearson lower bound ``lower`` of
        P[g_{sigma,n}(x) != y] from ``votes`` fresh votes is at least P_a.
    p, lower : numpy.ndarray, shape [B]
        At the last point tested (the confirmed one, or the last that failed): the fraction of wrong votes
        among those drawn, and the one-sided lower bound at confidence 1 - ``alpha`` that the test established
        (confirmed: the bound of the count that settled it, at least P_a; failed: the largest bound it could
        still have reached, below P_a); nan where no point was tested (the path never reached the level, or
        the cap ``max_l2`` came first).
    votes : int
        The size of each confirmation test (``confirm_votes``); a test stops drawing once it is settled.
    alpha : numpy.ndarray, shape [B]
        The alpha of the test behind ``lower``.
    attempts : numpy.ndarray of int, shape [B]
        Confirmations tried (0 where the search never reached the level inside the box).
    forward_passes : numpy.ndarray of int, shape [B]
        Base-model forward passes spent on the image, search and confirmations: the micro-decisions of every
        vote drawn (a vote stops drawing once its answer is settled, :meth:`~rs_repro.smoothing.Smooth.decide`).
    """

    x: torch.Tensor
    t: np.ndarray
    l2: np.ndarray
    linf: np.ndarray
    confirmed: np.ndarray
    p: np.ndarray
    lower: np.ndarray
    votes: int
    alpha: np.ndarray
    attempts: np.ndarray
    forward_passes: np.ndarray


#: The fewest votes a test draws at a time. A test stops drawing as soon as its outcome is settled.
VOTE_CHUNK = 16
#: The fewest noisy inputs (n per vote) in a test's chunk of votes. With few micro-decisions per vote, larger
#: chunks keep each forward pass from being mostly overhead.
CHUNK_ROWS = 1024


def box_path(x_o: torch.Tensor, delta: torch.Tensor, t: float) -> torch.Tensor:
    """The box-projected path clip(x_o + t delta, 0, 1) at factor ``t`` (x_o, delta of one shape)."""
    return (x_o + t * delta).clamp_(0.0, 1.0)


def saturation(x_o: torch.Tensor, delta: torch.Tensor) -> float:
    """The factor beyond which :func:`box_path` no longer moves: every coordinate with delta_i != 0 has hit
    its face of [0, 1]^d (0 when delta is 0 or only pushes coordinates already at their face)."""
    moving = delta != 0
    if not bool(moving.any()):
        return 0.0
    room = torch.where(delta > 0, 1.0 - x_o, x_o)[moving]
    return float((room.double() / delta[moving].abs().double()).max())


def _wrong_votes(smooth: Smooth, xs: torch.Tensor, ys: torch.Tensor, n: int, votes: int, batch_size: int,
                 generator: torch.Generator | None) -> tuple[np.ndarray, int]:
    """How many of ``votes`` fresh votes g_{sigma,n} at each of ``xs`` [B, C, H, W] are not its label in ``ys``
    [B] (int64 [B]), and the forward passes they drew (each vote curtailed, :meth:`Smooth.decide`)."""
    noise = SharedNoise(smooth.noise_generator(xs.device, generator))
    wrong, passes = smooth.decide(xs.repeat_interleave(votes, dim=0), ys.repeat_interleave(votes), n, noise,
                                  batch_size=batch_size)
    return wrong.view(len(xs), votes).sum(1).numpy(), int(passes.sum())


def _settle(smooth: Smooth, points: torch.Tensor, labels: torch.Tensor, n: int, votes: np.ndarray, needed: np.ndarray,
            batch_size: int, generators: Sequence[torch.Generator]) -> tuple[np.ndarray, ...]:
    """Whether at least ``needed[i]`` of ``votes[i]`` fresh votes at ``points[i]`` [m, C, H, W] are not
    ``labels[i]`` [m], test i drawing from ``generators[i]``.

    Each test draws its votes in chunks (:data:`VOTE_CHUNK` votes, or :data:`CHUNK_ROWS` / n if more) and stops
    as soon as its answer is settled (``needed`` wrong votes reached, or no longer reachable with the votes
    left): a curtailed test, whose answer is that of counting all its votes, so its law is the binomial tail
    P[Bin(votes, L) >= needed] at the level L of its point. The tests go in lockstep, a chunk of each open test
    per call of :meth:`~rs_repro.smoothing.Smooth.decide` (:class:`~rs_repro.noise.GroupedNoise`, at most
    ``batch_size`` noisy copies a call), and test i reads ``generators[i]`` as it would alone.

    Returns
    -------
    passed : numpy.ndarray of bool, shape [m]
        The answers.
    wrong, drawn, passes : numpy.ndarray of int64, shape [m]
        The wrong votes and the votes drawn by each test, and their forward passes.
    """
    m = len(points)
    wrong, drawn, passes = (np.zeros(m, dtype=np.int64) for _ in range(3))
    size = max(VOTE_CHUNK, math.ceil(CHUNK_ROWS / n))
    while True:
        open_ = np.flatnonzero((wrong < needed) & (needed <= wrong + votes - drawn))
        if not len(open_):
            return wrong >= needed, wrong, drawn, passes
        chunk = np.minimum(size, votes[open_] - drawn[open_])
        # tests together while their copies (chunk * n each at most) fit in one forward group of the vote
        cuts, copies = [0], 0
        for j, rows in enumerate(chunk * n):
            if j > cuts[-1] and copies + rows > batch_size:
                cuts.append(j)
                copies = 0
            copies += rows
        cuts.append(len(open_))
        for first, stop in itertools.pairwise(cuts):
            tests, k = open_[first:stop], chunk[first:stop]
            index = torch.from_numpy(np.repeat(tests, k)).to(points.device)
            groups = np.repeat(np.arange(len(tests)), k)
            answers, spent = smooth.decide(points[index], labels[index], n,
                                           GroupedNoise([generators[i] for i in tests]), streams=groups,
                                           batch_size=batch_size)
            wrong[tests] += np.bincount(groups, weights=answers.numpy(), minlength=len(tests)).astype(np.int64)
            passes[tests] += np.bincount(groups, weights=spent, minlength=len(tests)).astype(np.int64)
            drawn[tests] += k


def _needed(votes: int, alpha: float, pa: float) -> int:
    """The fewest wrong votes of ``votes`` whose one-sided (1 - alpha) Clopper-Pearson lower bound is at least
    ``pa`` (``votes + 1`` when none is)."""
    counts = np.arange(votes + 1)
    reach = np.asarray(theory.clopper_pearson(counts, np.full_like(counts, votes), 2 * alpha)[0]) >= pa
    return int(np.argmax(reach)) if reach.any() else votes + 1


def _factor_at_distance(origin: torch.Tensor, delta: torch.Tensor, distance: float, end: float) -> float:
    """The factor t in [1, ``end``] where the box-projected path is ``distance`` away from ``origin`` in l2 (it
    only grows with t; at t = 1 it is nearer): ``end`` when it never is that far; bisected to 1e-9 relative."""
    def far(t: float) -> float:
        return float((box_path(origin, delta, t) - origin).double().norm())

    if far(end) < distance:
        return end
    low, high = 1.0, end
    while high - low > 1e-9 * high:
        middle = (low + high) / 2
        low, high = (low, middle) if far(middle) >= distance else (middle, high)
    return low


#: A test asked by an image's search or confirmation: (factor t on the path, votes, wrong votes needed); the
#: reply is (passed, wrong votes, votes drawn).
_Request = tuple[float, int, int]
_Reply = tuple[bool, int, int]


def _smallest_factor(votes: int, needed: int, *, end: float, tolerance: float) -> Generator[_Request, _Reply, float]:
    """The smallest factor t in [1, ``end``] whose test (``needed`` of ``votes`` wrong) passes: 1, else bracketed
    by doubling (the last bracket ending at ``end``) and bisected to a relative width ``tolerance`` (the upper
    end); ``inf`` when ``end`` does not pass either. A coroutine: it yields the tests and is sent their replies."""
    if (yield 1.0, votes, needed)[0]:
        return 1.0
    low, high = 1.0, min(2.0, end)
    while high > low and not (yield high, votes, needed)[0]:
        low, high = high, min(2 * high, end)
    if high <= low:
        return np.inf
    while high - low > tolerance * high:
        middle = (low + high) / 2
        low, high = (low, middle) if (yield middle, votes, needed)[0] else (middle, high)
    return high


def _one_sided_lower(wrong: int, votes: int, alpha: float) -> float:
    """The one-sided (1 - alpha) Clopper-Pearson lower bound of a proportion from ``wrong`` of ``votes``."""
    return float(theory.clopper_pearson(wrong, votes, 2 * alpha)[0])


def _drive(smooth: Smooth, x_o: torch.Tensor, y: torch.Tensor,
           searches: Mapping[int, tuple[Generator[_Request, _Reply, None], torch.Tensor]], n: int, batch_size: int,
           generators: Sequence[torch.Generator]) -> np.ndarray:
    """Run each image's coroutine of tests (image k: its coroutine and its perturbation [1, C, H, W]) to its end,
    the open tests of all images settled together (:func:`_settle`, image k drawing from ``generators[k]``);
    returns the forward passes spent per image, int64 [B]."""
    passes = np.zeros(len(x_o), dtype=np.int64)
    asked = {}
    for k, (steps, _) in searches.items():
        with contextlib.suppress(StopIteration):
            asked[k] = next(steps)
    while asked:
        images = list(asked)
        points = torch.cat([box_path(x_o[k:k + 1], searches[k][1], asked[k][0]) for k in images])
        votes = np.array([asked[k][1] for k in images], dtype=np.int64)
        needed = np.array([asked[k][2] for k in images], dtype=np.int64)
        passed, wrong, drawn, spent = _settle(smooth, points, y[images], n, votes, needed, batch_size,
                                              [generators[k] for k in images])
        passes[images] += spent
        for i, k in enumerate(images):
            try:
                asked[k] = searches[k][0].send((bool(passed[i]), int(wrong[i]), int(drawn[i])))
            except StopIteration:
                del asked[k]
    return passes


def push_to_level(smooth: Smooth, x_o: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, *, n: int, pa: float,
                  votes: int, seed: int, alpha: float = 0.05, tolerance: float = 0.01, max_t: float = 1024.0,
                  batch_size: int = 10_000, confirm_votes: int | None = None, attempts: int = 8,
                  max_l2: np.ndarray | None = None) -> Pushed:
    """A confirmed adversarial example of level P_a (eq. 4) on the box-projected path from x_o through x_adv.

    ICASSP 2022, eq. (4): x is an adversarial example of level P_a for the majority vote g_{sigma,n} when
    P[g_{sigma,n}(x) != y] >= P_a. An attack on a random oracle reports a point that was answered
    adversarial once; this function looks along the path p(t) = clip(x_o + t (x_adv - x_o), 0, 1), t >= 1
    (never closer to x_o than the attack's own point, always an image), for the crossing of the level, then
    confirms it:

    1. *Search.* Each candidate t is judged by ``votes`` fresh votes: their fraction of wrong votes against the
       level where the first confirmation passes about half the time, P_a + z sqrt(P_a (1 - P_a) /
       ``confirm_votes``), z the one-sided normal quantile at alpha / 2 (at most (1 + P_a) / 2). t = 1 first,
       then t = 2, 4, 8, ... until a candidate passes (the last bracket ends where the path stops moving,
       :func:`saturation`, or at ``max_t``), then the bracket is bisected to a relative width ``tolerance``.
       Its upper end t_c estimates the crossing. When even the end of the path does not pass, the image is a
       failure.
    2. *Confirmation.* Attempt j = 0, 1, ... (at most ``attempts``) draws ``confirm_votes`` fresh votes at
       p(t_j), t_0 = t_c and t_j = t_c (1 + ``tolerance`` 2^(j-1)) beyond (capped at the end of the path), and
       confirms when the one-sided Clopper-Pearson lower bound of P[g_{sigma,n}(p(t_j)) != y] at confidence
       1 - alpha 2^-(j+1) is at least ``pa``. The alphas sum to less than ``alpha``, so the probability that
       the returned point is confirmed although its level is below P_a is at most ``alpha`` (a union bound
       over the attempts). An image whose attempts all fail, or whose point stops moving, is a failure: no
       point outside the box and no unconfirmed point is ever returned as adversarial.

    Every test (a decision of the search, a confirmation) draws its votes in chunks and stops once its answer
    is settled (a curtailed test): the same answer as counting all of them, at a fraction of the forward
    passes. The images' searches go in lockstep, their open tests sharing each call of the vote (and its
    forward passes), each image drawing from its own generator as it would alone.

    Parameters
    ----------
    smooth : rs_repro.smoothing.Smooth
        The smoothed classifier (base model and sigma) the points were attacked on.
    x_o, x_adv : torch.Tensor, shape [B, C, H, W]
        The attacked images and the attack's points, both inside [0, 1]^d.
    y : torch.Tensor, shape [B]
        True labels (standing for g_sigma(x_o), as in the paper's experiments).
    n : int
        Micro-decisions per vote.
    pa : float
        Level P_a in (0, 1) (a level of 1 cannot be confirmed by finitely many votes).
    votes : int
        Fresh votes per decision of the search (its resolution is 1 / votes).
    seed : int
        Image k draws from ``rs_repro.seeds.generator(seed, "push-to-level", k)``: the result of an image
        does not depend on the others in the batch.
    alpha : float
        Each image's confirmation holds at confidence 1 - alpha, in (0, 1).
    tolerance : float
        Relative width of the search's last bracket on t, and the first outward step of the confirmation.
    max_t : float
        Largest factor tried (>= 1), besides the end of the box-projected path.
    batch_size : int
        Largest batch of noisy inputs per forward pass.
    confirm_votes : int, optional
        Fresh votes per confirmation; default ``4 * votes``.
    attempts : int
        Most confirmations tried per image (>= 1).
    max_l2 : numpy.ndarray, shape [B], optional
        Per image, a distortion not worth reaching (another candidate's, :func:`push_candidates`): the path is
        searched only below it, and an image whose level is not confirmed below it counts as not confirmed.

    Returns
    -------
    Pushed
    """
    x_o = checks.images("x_o", x_o, 4, "[B, C, H, W]", pixel_box=True)
    x_adv = checks.images("x_adv", x_adv, 4, "[B, C, H, W]", pixel_box=True)
    checks.require(x_adv.shape == x_o.shape, "x_adv", tuple(x_adv.shape), f"the shape of x_o, {tuple(x_o.shape)}")
    checks.require(y.shape == (len(x_o),), "y", tuple(y.shape), f"one label per image, shape ({len(x_o)},)")
    n = checks.integer("n", n, 1)
    pa = checks.real("pa", pa, 0, 1)
    votes = checks.integer("votes", votes, 1)
    seed = checks.integer("seed", seed)
    alpha = checks.real("alpha", alpha, 0, 1)
    tolerance = checks.real("tolerance", tolerance, 0, 1)
    max_t = checks.real("max_t", max_t, 1, include_low=True)
    batch_size = checks.integer("batch_size", batch_size, 1)
    confirm_votes = checks.integer("confirm_votes", 4 * votes if confirm_votes is None else confirm_votes, 1)
    attempts = checks.integer("attempts", attempts, 1)
    caps = np.full(len(x_o), np.inf) if max_l2 is None else np.asarray(max_l2, dtype=np.float64)
    checks.require(caps.shape == (len(x_o),), "max_l2", caps.shape, f"one distortion per image, shape ({len(x_o)},)")
    # The search aims at the level where the first confirmation passes about half the time: P_a plus the
    # one-sided margin of ``confirm_votes`` votes at its alpha (never at or above 1).
    aim = min(pa + scipy.stats.norm.isf(alpha / 2) * math.sqrt(pa * (1 - pa) / confirm_votes), (1 + pa) / 2)
    batch = len(x_o)
    t = np.full(batch, np.inf)
    p, lower, spent = np.full(batch, np.nan), np.full(batch, np.nan), np.full(batch, np.nan)
    tried = np.zeros(batch, dtype=np.int64)
    points = x_adv.clone()
    search_needed = math.ceil(aim * votes)

    def image(k: int, delta: torch.Tensor, end: float) -> Generator[_Request, _Reply, None]:
        """Image k's search and confirmations, a coroutine yielding its tests (recording into the arrays)."""
        crossing = yield from _smallest_factor(votes, search_needed, end=end, tolerance=tolerance)
        factor = crossing
        for j in range(attempts if np.isfinite(crossing) else 0):
            if j:
                moved = min(crossing * (1 + tolerance * 2 ** (j - 1)), end)
                if moved <= factor:
                    break
                factor = moved
            spent[k] = alpha * 2.0 ** -(j + 1)
            needed = _needed(confirm_votes, spent[k], pa)
            passed, wrong, used = yield factor, confirm_votes, needed
            reached = needed if passed else wrong + confirm_votes - used
            tried[k], p[k] = j + 1, wrong / max(used, 1)
            lower[k] = _one_sided_lower(min(reached, confirm_votes), confirm_votes, spent[k])
            if passed:
                t[k] = factor
                points[k] = box_path(x_o[k], delta[0], factor)
                return

    searches: dict[int, tuple[Generator[_Request, _Reply, None], torch.Tensor]] = {}
    for k in range(batch):
        origin, delta = x_o[k:k + 1], x_adv[k:k + 1] - x_o[k:k + 1]
        if float(delta.double().norm()) >= caps[k]:
            continue  # the candidate starts at or beyond the cap: nothing to gain
        end = min(max_t, max(1.0, saturation(origin, delta)))
        if np.isfinite(caps[k]):
            end = _factor_at_distance(origin, delta, caps[k], end)
        searches[k] = image(k, delta, end), delta
    passes = _drive(smooth, x_o, y, searches, n, batch_size,
                    [generator(seed, "push-to-level", k, device=x_o.device) for k in range(batch)])
    confirmed = np.isfinite(t)
    perturbation = (points - x_o).flatten(1).double()
    l2 = np.where(confirmed, perturbation.norm(dim=1).cpu().numpy(), np.inf)
    linf = np.where(confirmed, perturbation.abs().amax(dim=1).cpu().numpy(), np.inf)
    return Pushed(x=points, t=t, l2=l2, linf=linf, confirmed=confirmed, p=p, lower=lower, votes=confirm_votes,
                  alpha=spent, attempts=tried, forward_passes=passes)


@dataclass(frozen=True)
class Candidates:
    """What :func:`push_candidates` found, per image.

    Attributes
    ----------
    best : Pushed
        The fields of the candidate with the smallest confirmed l2 (the first candidate's where none was
        confirmed).
    source : numpy.ndarray of str, shape [B]
        The name of the candidate kept, ``""`` where no candidate was confirmed (a failure).
    each : dict of str to Pushed
        Every candidate's own result, by name.
    """

    best: Pushed
    source: np.ndarray
    each: dict[str, Pushed]


def push_candidates(smooth: Smooth, x_o: torch.Tensor, candidates: Mapping[str, torch.Tensor], y: torch.Tensor, *,
                    seed: int, alpha: float = 0.05, **options: object) -> Candidates:
    """:func:`push_to_level` from each of an attack's candidate points; per image the smallest confirmed l2.

    An attack on a random oracle leaves several points that carry its information: its best accepted query
    (which may be a lucky vote next to x_o) and its own last iterate (where it believes the boundary is).
    Each candidate is pushed and confirmed with its own fresh votes at confidence 1 - alpha / C (C
    candidates), so the point kept, whichever candidate it came from, is confirmed at confidence 1 - alpha
    (a union bound over the candidates). A candidate is searched only below the smallest distortion the
    candidates before it confirmed (``max_l2`` of :func:`push_to_level`; the distortion only grows along a
    path), which changes no image's kept point and spares the votes of a candidate that cannot win.

    Parameters
    ----------
    smooth, x_o, y
        As in :func:`push_to_level`.
    candidates : mapping of str to torch.Tensor, each [B, C, H, W]
        The candidates by name, e.g. ``{"best query": result.x_adv, "last iterate": result.x_final}``; on a
        tie of distortions the first wins.
    seed : int
        Candidate ``name`` is pushed with the seed ``rs_repro.seeds.derive_seed(seed, name)``.
    alpha : float
        Confidence 1 - alpha of each image's confirmed point, in (0, 1).
    **options
        ``n, pa, votes`` and the other keywords of :func:`push_to_level`.

    Returns
    -------
    Candidates
        The point kept per image (each test's ``alpha`` is a share of ``alpha / C``; ``forward_passes`` those
        of every candidate), its source, and every candidate's own result (searched below the caps above).
    """
    checks.require(len(candidates) >= 1, "candidates", dict(candidates), "at least one named candidate")
    alpha = checks.real("alpha", alpha, 0, 1)
    names = list(candidates)
    each: dict[str, Pushed] = {}
    cap = np.full(len(x_o), np.inf)
    for name in names:
        each[name] = push_to_level(smooth, x_o, candidates[name], y, seed=derive_seed(seed, name),
                                   alpha=alpha / len(names), max_l2=cap, **options)
        cap = np.minimum(cap, each[name].l2)
    results = list(each.values())
    l2 = np.stack([r.l2 for r in results])  # [C, B]
    best = np.argmin(l2, axis=0)  # the first candidate on ties and where every one is inf
    rows = np.arange(l2.shape[1])
    pick = torch.as_tensor(best, device=x_o.device)
    x = torch.stack([r.x for r in results])[pick, torch.arange(len(best), device=x_o.device)]

    def field(name: str) -> np.ndarray:
        return np.stack([getattr(r, name) for r in results])[best, rows]

    pushed = Pushed(x=x, t=field("t"), l2=field("l2"), linf=field("linf"), confirmed=field("confirmed"),
                    p=field("p"), lower=field("lower"), votes=results[0].votes, alpha=field("alpha"),
                    attempts=field("attempts"), forward_passes=sum(r.forward_passes for r in results))
    return Candidates(best=pushed, source=np.where(pushed.confirmed, np.asarray(names, dtype=object)[best], ""),
                      each=each)


#: The largest factor on a reported perturbation that :func:`confirm_attack` tries, no practical limit since the
#: box-projected path stops moving before it (:func:`push_to_level`). A lucky answer may sit a thousandth of the
#: needed distance from x_o and still give the attack's direction; each doubling costs one decision.
PUSH_MAX_T = 2.0 ** 30
#: The names of an attack's candidate points, in the order :func:`push_candidates` prefers them on a tie: the
#: oracle's best accepted query, the attack's own last iterate.
CANDIDATES = ("best query", "last iterate")


def confirm_attack(smooth: Smooth, x_o: torch.Tensor, labels: torch.Tensor, result: AttackResult, *, n: int,
                   level: float, votes: int, confirm_votes: int, alpha: float, seed: int,
                   batch_size: int) -> dict[str, np.ndarray]:
    """The confirmed adversarial example of each image from an attack's candidates (:data:`CANDIDATES`).

    Each candidate of ``result`` (its best accepted query ``x_adv``, its last iterate ``x_final`` when it has
    one) is pushed along its box-projected path and confirmed at eq. (4)'s level ``level`` with a one-sided
    test at confidence 1 - ``alpha`` over all candidates (:func:`push_candidates`, up to the factor
    :data:`PUSH_MAX_T`); the smaller confirmed distortion is kept.

    Parameters
    ----------
    smooth : rs_repro.smoothing.Smooth
        The random classifier the attack queried (base model and noise).
    x_o : torch.Tensor, shape [B, C, H, W]
        The attacked images, on the device of the base model.
    labels : torch.Tensor, shape [B]
        Their true labels, on the same device.
    result : rs_repro.attacks.oracle.AttackResult
        The attack's result on ``x_o``.
    n, level, votes, confirm_votes, alpha, seed, batch_size
        Micro-decisions per vote, the level P_a, and the keywords of :func:`push_candidates`.

    Returns
    -------
    dict of str to numpy.ndarray, each [B]
        ``verified_l2, verified_linf, t`` of the point kept (inf where the image failed), ``source`` (the
        candidate kept, "" on a failure), ``at_level`` (the best query itself confirmed at t = 1),
        ``verified_level, confirm_lower, confirm_attempts`` (the kept test's fraction of wrong votes, its
        one-sided lower bound and the confirmations tried), ``confirm_forward_passes`` (every vote drawn for
        every candidate, the micro-decisions each drew), and per candidate its confirmed distortion
        (``query_confirmed_l2``; ``final_confirmed_l2``, inf where it failed, could not beat the best query's,
        or the attack has no iterate).
    """
    candidates = {CANDIDATES[0]: result.x_adv.to(x_o.device)}
    if result.x_final is not None:
        candidates[CANDIDATES[1]] = result.x_final.to(x_o.device)
    found = push_candidates(smooth, x_o, candidates, labels, n=n, pa=level, votes=votes, confirm_votes=confirm_votes,
                            alpha=alpha, seed=seed, max_t=PUSH_MAX_T, batch_size=batch_size)
    best, query = found.best, found.each[CANDIDATES[0]]
    final = found.each.get(CANDIDATES[1])
    return {"verified_l2": best.l2, "verified_linf": best.linf, "t": best.t, "source": found.source.astype(str),
            "at_level": query.confirmed & (query.t == 1.0), "verified_level": best.p, "confirm_lower": best.lower,
            "confirm_attempts": best.attempts, "confirm_forward_passes": best.forward_passes,
            "query_confirmed_l2": query.l2,
            "final_confirmed_l2": np.full(len(x_o), np.inf) if final is None else final.l2}
