"""RayS: hard-label l-inf attack by hierarchical search over sign directions (Chen & Gu, KDD 2020).

RayS looks for the ray ``x + d * s / ||s||_2``, s in {-1, +1}^d, whose boundary is nearest in l-inf. It flips
the signs of s block by block, the blocks halving at each level (the whole vector, then halves, quarters,
... down to single entries, then single entries again and again). A new direction costs one query when it
cannot beat the current best distance d_t (the point at d_t along it is not adversarial), else a bisection
finds its boundary. Maho, Furon and Le Merrer (ICASSP 2022, section 4) run it against randomized smoothing
and report its best l2 adversarial query (their adaptation keeps it), which the :class:`~.oracle.Oracle`
records for every attack.

This is a rewrite of the batched reference (uclaml/RayS ``RayS.py``, see ``attacks.md`` section 4) on the
project's oracle: every query counted, a hard per-image budget (an image never overshoots it by a
bisection), already-misclassified images detected, and only answered-adversarial points accepted, so that
it is safe on the random oracle g_{sigma,n}. On such an oracle the returned point should be re-verified
with fresh noise (:func:`~.verification.verify`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence

import torch

from rs_repro.attacks.oracle import AttackResult, Oracle
from rs_repro.seeds import generator


def _blocks(dim: int) -> Iterator[tuple[int, int]]:
    """The reference's block schedule over ``dim`` entries, forever: ``[start, end)`` of each block to flip.

    Level L cuts the flattened vector into blocks of ``ceil(dim / 2**L)`` entries; after the last block
    of a level comes the next level; once blocks are single entries, the single entries are cycled.
    """
    level = 0
    while True:
        size = -(-dim // 2**level)
        for start in range(0, dim, size):
            yield start, min(dim, start + size)
        if size > 1:
            level += 1


def rays(oracle: Oracle, x: torch.Tensor, y: torch.Tensor, *, seed: int = 0, keys: Sequence[int] | None = None,
         tol: float = 1e-3, random_start: bool = False, max_steps: int = 50) -> AttackResult:
    """Run RayS on B images through ``oracle`` until every image has spent its budget.

    Parameters
    ----------
    oracle : Oracle
        Counted access to the attacked classifier (its ``max_queries`` is the per-image budget; the
        paper uses 2,000). It is (re)started on ``x``, ``y``.
    x : torch.Tensor, shape [B, C, H, W]
        Images in [0, 1].
    y : torch.Tensor, shape [B], int64
        Their labels (untargeted attack).
    seed : int, default 0
        Seed of the random starting sign vectors when ``random_start``; unused otherwise (the reference
        is deterministic: its ``seed`` seeds a numpy generator it never draws from).
    keys : sequence of int, optional
        Each image's identity (its test-split index, given to :meth:`~rs_repro.attacks.oracle.Oracle.start`):
        the random start of the image and a smoothed oracle's noise are seeded with it; default 0 to B - 1.
    tol : float, default 1e-3
        Bisection tolerance on d, the l2 length along the unit direction ``s / sqrt(C*H*W)``, as the
        reference's ``binary_search(tol=1e-3)``; the l-inf precision is ``tol / sqrt(C*H*W)``.
    random_start : bool, default False
        Start from a uniformly random sign vector per image instead of the reference's all-ones vector.
    max_steps : int, default 50
        Cap on the probes of one bisection.

    Returns
    -------
    AttackResult
        The oracle's books: best adversarial in l-inf (``x_adv_linf``, ``best_linf``), the criterion RayS
        optimises, and best adversarial in l2 (``x_adv``, ``l2``), the paper's measure, with the query
        history. An image misclassified from the start costs one query and has distortion 0. ``x_final`` is
        the attack's own point, clip(x + d_t s_t / sqrt(C*H*W), 0, 1) on its best direction s_t at its best
        distance d_t (x where no direction was found).

    Notes
    -----
    Each image runs its own schedule (the k-th direction it tries flips the k-th block of
    ``_blocks``) as a small state machine, probing a new direction or taking one step of the
    bisection of a direction that beat its best distance, so every oracle call asks one query of every
    image with budget left, whichever phase it is in: an image's run does not depend on the other images
    of the batch, and the number of calls is about the per-image budget, not the budget times the
    bisection length. The bisection is that of :func:`~.bisection.bisect` (stop when the bracket is at
    most ``tol`` or after ``max_steps`` probes), unrolled into the state machine. The best distance
    d_t of an image only decreases to a point that was answered adversarial; under a random oracle a lucky
    answer is kept, as in the reference. While d_t is infinite the probes are box corners (the clipped
    ray at d >= sqrt(C*H*W)): an image none of whose scheduled corners is adversarial is never attacked
    (rare on natural images, easy to build on a linear toy model).
    """
    batch, shape = x.shape[0], x.shape[1:]
    dim = math.prod(shape)
    device = x.device
    oracle.start(x, y, keys)
    attacked = ~oracle.is_adversarial(x, torch.arange(batch))  # one query each: misclassified images are done
    if random_start:
        draw = torch.stack([torch.randint(0, 2, (dim,), generator=generator(seed, "rays", "start", key))
                            for key in oracle.keys])
        signs = (2 * draw - 1).to(device, x.dtype)
    else:
        signs = torch.ones(batch, dim, device=device, dtype=x.dtype)
    ray_length = math.sqrt(dim)  # ||s||_2 for any sign vector s; beyond it the clipped ray is a box corner
    # Every block costs at least one query, so an image never gets past the first max_queries blocks.
    blocks = torch.tensor(list(itertools.islice(_blocks(dim), oracle.max_queries)), dtype=torch.int64)
    columns = torch.arange(dim, device=device)
    d_best = torch.full((batch,), math.inf, dtype=torch.float64)
    block = torch.zeros(batch, dtype=torch.int64)  # the block each image tries next
    attempt = signs.clone()  # the sign vector under test
    bisecting = torch.zeros(batch, dtype=torch.bool)  # probing the current block, or bisecting its ray
    low = torch.zeros(batch, dtype=torch.float64)
    high = torch.zeros(batch, dtype=torch.float64)  # the probe distance, then the adversarial end
    steps = torch.zeros(batch, dtype=torch.int64)

    while True:
        rows = (attacked & oracle.active() & (block < len(blocks))).nonzero().squeeze(1)
        if len(rows) == 0:
            break
        probing = rows[~bisecting[rows]]
        if len(probing):  # a new direction: flip the image's next block, probe at its best distance so far
            start, end = blocks[block[probing]].to(device).unbind(1)
            flip = (columns >= start.unsqueeze(1)) & (columns < end.unsqueeze(1))
            on = probing.to(device)
            attempt[on] = torch.where(flip, -signs[on], signs[on])
            high[probing] = d_best[probing].clamp(max=ray_length)
        was_bisecting = bisecting[rows]
        t = torch.where(was_bisecting, (low[rows] + high[rows]) / 2, high[rows])
        on = rows.to(device)
        along = t.to(device, x.dtype).view(-1, *([1] * len(shape)))
        adversarial = oracle.is_adversarial((x[on] + along * attempt[on].view(-1, *shape) / ray_length).clamp(0, 1),
                                            rows)
        # Every row is counted: each image appears once and has budget left.
        hit = rows[~was_bisecting & adversarial]  # the direction beats d_best: bisect its ray on [0, probe]
        bisecting[hit], low[hit], steps[hit] = True, 0.0, 0
        block[rows[~was_bisecting & ~adversarial]] += 1
        inner, verdict = rows[was_bisecting], adversarial[was_bisecting]
        high[inner] = torch.where(verdict, t[was_bisecting], high[inner])
        low[inner] = torch.where(verdict, low[inner], t[was_bisecting])
        steps[inner] += 1
        done = (bisecting & (((high - low).abs() <= tol) | (steps >= max_steps))).nonzero().squeeze(1)
        if len(done):  # ``high`` is the probe or a bisection point answered adversarial
            improved = done[high[done] < d_best[done]]
            d_best[improved] = high[improved]
            signs[improved.to(device)] = attempt[improved.to(device)]
            bisecting[done] = False
            block[done] += 1
    along = torch.where(torch.isfinite(d_best), d_best, 0.0).to(device, x.dtype).view(-1, *([1] * len(shape)))
    return oracle.result(x_final=(x + along * signs.view(-1, *shape) / ray_length).clamp(0, 1))
