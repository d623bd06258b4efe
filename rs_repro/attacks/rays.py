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
with fresh noise (:meth:`rs_repro.smoothing.Smooth.verify`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from ..seeds import generator
from .bisection import bisect
from .oracle import AttackResult, Oracle


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


def rays(oracle: Oracle, x: torch.Tensor, y: torch.Tensor, *, seed: int = 0, tol: float = 1e-3,
         random_start: bool = False, max_steps: int = 50) -> AttackResult:
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
        history. An image misclassified from the start costs one query and has distortion 0.

    Notes
    -----
    Images move in lockstep: iteration t tries the t-th block of :func:`_blocks` on every image with
    budget left, so an image's run does not depend on the other images of the batch. The best distance
    d_t of an image only decreases to a point that was answered adversarial; under a random oracle a lucky
    answer is kept, as in the reference. While d_t is infinite the probes are box corners (the clipped
    ray at d >= sqrt(C*H*W)): an image none of whose scheduled corners is adversarial is never attacked
    (rare on natural images, easy to build on a linear toy model).
    """
    batch, shape = x.shape[0], x.shape[1:]
    dim = math.prod(shape)
    oracle.start(x, y)
    everyone = torch.arange(batch)
    attacked = ~oracle.is_adversarial(x, everyone)  # one counted query each: misclassified images are done
    if random_start:
        draw = torch.randint(0, 2, (batch, dim), generator=generator(seed, "rays", "start"))
        signs = (2 * draw - 1).to(x.device, x.dtype)
    else:
        signs = torch.ones(batch, dim, device=x.device, dtype=x.dtype)
    d_best = torch.full((batch,), math.inf, dtype=torch.float64)
    ray_length = math.sqrt(dim)  # ||s||_2 for any sign vector s; beyond it the clipped ray is a box corner

    for _, (start, end) in zip(range(oracle.max_queries), _blocks(dim), strict=False):
        rows = (attacked & oracle.active()).nonzero().squeeze(1)
        if len(rows) == 0:
            break
        attempt = signs[rows.to(x.device)].clone()
        attempt[:, start:end] *= -1
        units = attempt.view(-1, *shape) / ray_length
        origins = x[rows.to(x.device)]

        def point(sub: torch.Tensor, d: torch.Tensor, units=units, origins=origins) -> torch.Tensor:
            sub = sub.to(x.device)
            d = d.to(x.device, x.dtype).view(-1, *([1] * len(shape)))
            return (origins[sub] + d * units[sub]).clamp(0, 1)

        probe = d_best[rows].clamp(max=ray_length)
        hit = oracle.is_adversarial(point(torch.arange(len(rows)), probe), rows).nonzero().squeeze(1)
        if len(hit) == 0:
            continue

        def point_hit(sub: torch.Tensor, d: torch.Tensor, hit=hit) -> torch.Tensor:
            return point(hit[sub], d)

        found = bisect(oracle, rows[hit], point_hit, torch.zeros(len(hit)), probe[hit], tol=tol,
                       max_steps=max_steps).high
        better = found < d_best[rows[hit]]  # ``high`` is the probe or a bisection point answered adversarial
        improved = rows[hit][better]
        d_best[improved] = found[better]
        signs[improved.to(x.device)] = attempt[hit[better].to(x.device)]
    return oracle.result()
