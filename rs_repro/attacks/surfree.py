"""SurFree: a fast surrogate-free decision-based l2 attack (Maho, Furon, Le Merrer, CVPR 2021).

SurFree keeps a point x_b on the boundary and, at each step, turns the direction u = (x_b - x) / ||x_b - x||
towards a new random direction v orthogonal to u and to the last directions tried. In the plane (u, v) the
points ``x(theta) = x + r cos(theta) (cos(theta) u + sin(theta) v)``, r = ||x_b - x||, lie on the circle of
diameter [x, x_b] and at distance ``r cos(theta)`` from x: a sign search at +-theta_max tells whether the
direction helps, an angle bisection finds the most turned adversarial point of the circle, which becomes the
new x_b. theta_max shrinks by rho after a failed direction and grows by 1/rho after a successful one. The
directions live in a low-frequency DCT subspace. Maho, Furon and Le Merrer (ICASSP 2022, section 4) run it
against the randomized-smoothing oracle g_{sigma,n}.

This is a rewrite of the batched reference (t-maho/SurFree ``surfree.py``, see ``attacks.md`` section 3)
on the project's :class:`~.oracle.Oracle`: every query counted (initialisation, the "already adversarial"
check and the final line search included), a hard per-image budget, images batched with index sets
instead of zero-tensor sentinels, every loop capped, a candidate accepted only where it was answered
adversarial (so the attack is safe on a random oracle), and one seeded generator per image.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rs_repro import checks
from rs_repro.attacks.bisection import bisect
from rs_repro.attacks.oracle import AttackResult, Oracle
from rs_repro.seeds import generator

#: Largest theta_max in degrees (at 90 degrees the circle point is x itself).
THETA_CAP = 89.0
#: Cap on the steps that extend a sign-search hit at theta_max before bisecting; the bracket then closes at
#: 90 degrees (the original image, answered non-adversarial at the start).
MAX_EXTENSION = 20


def dct_matrix(n: int, *, dtype: torch.dtype = torch.float64,
               device: torch.device | str | None = None) -> torch.Tensor:
    """The orthonormal DCT-II matrix [n, n]: ``C[k, i] = a_k cos(pi (2 i + 1) k / (2 n))``.

    ``a_0 = sqrt(1/n)``, ``a_k = sqrt(2/n)``; C is orthogonal, so its transpose is the DCT-III (the inverse).
    """
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    i = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    c = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    c[0] /= math.sqrt(2)
    return c.to(device=device, dtype=dtype)


def zigzag_mask(height: int, width: int, frequency_range: Sequence[float] = (0.0, 0.5)) -> torch.Tensor:
    """Boolean mask [H, W] of the DCT coefficients ranked in ``[lo, hi)`` of the zig-zag order.

    The zig-zag order runs over the anti-diagonals i + j = 0, 1, 2, ... (low frequencies first), odd
    anti-diagonals from the top row down, even ones from the bottom up, as the reference's
    ``get_zig_zag_mask``. Coefficients of rank ``int(lo H W)`` to ``int(hi H W) - 1`` are kept (at least one).
    """
    lo, hi = frequency_range
    rows = torch.arange(height).unsqueeze(1).expand(height, width)
    cols = torch.arange(width).unsqueeze(0).expand(height, width)
    diagonal = rows + cols
    within = torch.where(diagonal % 2 == 1, rows, -rows)
    order = torch.argsort((diagonal * (2 * height + 1) + within + height).flatten())
    total = height * width
    start = min(int(total * lo), total - 1)
    stop = max(int(total * hi), start + 1)
    mask = torch.zeros(total, dtype=torch.bool)
    mask[order[start:stop]] = True
    return mask.view(height, width)


def _line_search(oracle: Oracle, x_in: torch.Tensor, x_out: torch.Tensor, images: torch.Tensor, *,
                 tol: float, max_steps: int) -> torch.Tensor:
    """The reference's boosted binary search on ``(1 - t) x_in + t x_out`` for m rows; adversarial ends [m, ...].

    One probe at t = 0.8 first (the "boost"), then :func:`~.bisection.bisect` down to ``tol`` in t or
    ``max_steps`` probes. ``x_out`` rows must have been answered adversarial; each returned row is ``x_out``
    or a point answered adversarial.
    """
    m = len(images)

    def point(rows: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        dev = rows.to(x_in.device)
        t = t.to(x_in.device, x_in.dtype).view(-1, *([1] * (x_in.dim() - 1)))
        return (1 - t) * x_in[dev] + t * x_out[dev]

    low, high = torch.zeros(m, dtype=torch.float64), torch.ones(m, dtype=torch.float64)
    rows = oracle.active(images).nonzero().squeeze(1)
    if len(rows):
        boost = torch.full((len(rows),), 0.8, dtype=torch.float64)
        adversarial, counted = oracle.query(point(rows, boost), images[rows])
        high[rows[adversarial]] = 0.8
        low[rows[~adversarial & counted]] = 0.8
    return bisect(oracle, images, point, low, high, tol=tol, max_steps=max_steps).x


def _project_out(v: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``v`` [m, d] minus its projection on the orthonormal rows of ``basis`` [m, n, d] (zero rows ignored)."""
    if basis.shape[1] == 0:
        return v
    if basis.is_cuda:
        return v - torch.bmm(basis.transpose(1, 2), torch.bmm(basis, v.unsqueeze(2))).squeeze(2)
    # Elementwise on the CPU: small products stay out of the thread pool (bmm on two busy cores is slow).
    return v - ((basis * v.unsqueeze(1)).sum(2, keepdim=True) * basis).sum(1)


def _orthonormalise(r: torch.Tensor, u: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit vectors v [m, d]: r [m, d] orthogonalised against the stored directions [m, n, d] and u [m, d].

    The stored directions are orthonormal (each was orthogonalised against the others); u is first
    orthogonalised against them, so that r is projected on the orthogonal complement of their joint span
    (Gram-Schmidt, two passes: "twice is enough"). Also returns, per row, whether r was numerically in
    that span (residual below 1e-3 of its norm), bool [m].
    """
    u_rest = _project_out(_project_out(u, memory), memory)
    norm = u_rest.norm(dim=1, keepdim=True)
    u_rest = torch.where(norm > 1e-6, u_rest / norm.clamp_min(1e-6), torch.zeros_like(u_rest))
    v = r
    for _ in range(2):
        v = _project_out(v, memory)
        v = v - (v * u_rest).sum(1, keepdim=True) * u_rest
    norm = v.norm(dim=1)
    degenerate = norm <= 1e-3 * r.norm(dim=1)
    return v / norm.clamp_min(torch.finfo(v.dtype).tiny).unsqueeze(1), degenerate


def surfree(oracle: Oracle, x: torch.Tensor, y: torch.Tensor, *, seed: int, keys: Sequence[int] | None = None,
            theta_max: float = 30.0, rho: float = 0.95, n_ortho: int = 100, sign_trials: int = 1,
            bs_gamma: float = 0.01, bs_max_iteration: int = 7, frequency_range: tuple[float, float] = (0.0, 0.5),
            final_line_search: bool = True, theta_min: float = 1e-4, init_tries: int = 20, init_sigma: float = 0.5,
            init_growth: float = 1.5) -> AttackResult:
    """Run SurFree (l2, untargeted) on B images through ``oracle`` until each has spent its budget or converged.

    Parameters
    ----------
    oracle : Oracle
        Counted access to the attacked classifier; its ``max_queries`` is the per-image budget (the
        ICASSP 2022 paper uses 2,000). It is (re)started on ``x``, ``y``.
    x : torch.Tensor, shape [B, C, H, W]
        Images in [0, 1].
    y : torch.Tensor, shape [B], int64
        Their labels.
    seed : int
        Master seed; image i draws its noise and directions from ``rs_repro.seeds.generator(seed,
        "surfree", keys[i])``, so its run does not depend on the other images of the batch.
    keys : sequence of int, optional
        Each image's identity (its test-split index, given to :meth:`~rs_repro.attacks.oracle.Oracle.start`):
        the attack's own draws for the image and a smoothed oracle's noise are seeded with it; default 0 to
        B - 1.
    theta_max : float, default 30
        Initial largest angle of the sign search, in degrees (reference default).
    rho : float, default 0.95
        theta_max is multiplied by rho after a failed direction and divided by it after a successful one
        (reference torch-class default; its ``config_example.json`` uses 0.98). In (0, 1].
    n_ortho : int, default 100
        A new direction is orthogonalised against the current u and the last ``n_ortho`` directions tried
        (reference default; memory B * n_ortho * C * H * W floats on the device of ``x``). When the
        directions span the whole DCT subspace the memory of that image is cleared.
    sign_trials : int, default 1
        The reference's T: the sign search tries +-theta_max (1 - i/T) for i < T, at most 2T queries.
    bs_gamma : float, default 0.01
        Precision of the angle bisection on ``1 - cos(theta)`` (the relative distance of the circle point),
        and ``bs_gamma / d**1.5`` in t of the line searches (reference ``BS_gamma``).
    bs_max_iteration : int, default 7
        Cap on the probes of each bisection (reference torch-class default; ``config_example.json``: 10).
    frequency_range : (float, float), default (0, 0.5)
        The directions are inverse DCTs of random {-1, 0, +1} coefficients on the coefficients of rank
        ``[lo, hi)`` (fractions of H W, per channel) in the zig-zag order of the full-image DCT: by
        default the first half, the low frequencies (reference ``dct_type='full'``, ``frequence_range``).
        ``(0, 1)`` gives random directions of the whole space.
    final_line_search : bool, default True
        Keep ``1 + bs_max_iteration`` queries per image for a last boosted line search towards x
        (reference default).
    theta_min : float, default 1e-4
        An image stops (before its final line search) when theta_max falls below ``theta_min`` degrees
        (not in the reference, which runs on: 0 restores that). A step then turns u by at most
        (1 + :data:`MAX_EXTENSION`) theta_min unless its bracket closes at 90 degrees, so it shortens the
        distance by a factor of at least cos(21e-4 degrees) = 1 - 7e-10, below float32 precision: the
        queries left would all land on x_b up to rounding. It fires on converged small problems (8x8
        digits, the tests) and, under a random oracle, when fewer than about 38% of the circle points
        next to x_b are answered adversarial (theta_max then drifts down).
    init_tries : int, default 20
        Cap on the random starting points tried per image (counted queries).
    init_sigma, init_growth : float, default 0.5 and 1.5
        Try k is ``clip(x + init_sigma * init_growth**k * N(0, I), 0, 1)``; 0.5 is the reference's noise.

    Returns
    -------
    AttackResult
        The oracle's books: best adversarial query in l2 (``x_adv``, ``l2``) and in l-inf, queries, forward
        passes and the history of every query. An image misclassified from the start costs one query and
        has distortion 0; an image without an adversarial starting point after ``init_tries`` is given up
        (``success`` False unless a query happened to be adversarial). ``x_final`` is the attack's own boundary
        point x_b (after the final line search; x where the attack never started).

    Notes
    -----
    Steps (Maho et al., CVPR 2021, Algorithm 1, and the reference code), one function each:

    1. One query on x: images already misclassified are done (``_initialise``).
    2. Initialisation: up to ``init_tries`` noisy images, the first answered adversarial is projected on
       the boundary by a boosted line search (one probe at 0.2 x + 0.8 x_init, then a bisection).
    3. Each iteration, every image with budget left draws a direction v in the DCT subspace, orthogonal to
       u and to its last directions (``_circles``), and tries the circle points at +-theta_max (the
       sign search, ``_sign_search``); theta_max shrinks or grows. On a hit at theta_max the angle is
       extended by theta_max / T while still adversarial (at most :data:`MAX_EXTENSION` probes, then the
       bracket closes at 90 degrees, the original image; ``_bracket``); the angle is then bisected on
       ``1 - cos(theta)`` between the adversarial and the non-adversarial end (``_bisect_angle``), and
       the adversarial end replaces x_b if it is closer to x (``_accept``).
    4. Final line search (optional) with the queries kept for it.

    Differences from the reference, kept on purpose: the stopping rule is the oracle's budget (no
    ``steps``, whose default 100 stops the attack around 1,000 to 1,500 queries); the direction is the
    reference's ``function='constant'`` variant (``config_example.json``: random signs on the masked
    coefficients, independent of the image; the class default ``tanh`` of the unnormalised DCT of the
    image is the same up to coefficients near zero), with an orthonormal DCT; no ``-theta`` probes during
    the bisection (on a locally flat boundary only one side of the circle is adversarial); v is
    orthogonalised against the current u rather than the first direction; no quantisation to 1/255 and no
    interpolation or distance line search (all off in ``config_example.json``). Under a random oracle the
    returned point should be re-verified with fresh noise (:func:`~.verification.verify`).
    """
    checks.images("x", x, 4, "[B, C, H, W]", pixel_box=True)
    checks.integer("seed", seed)
    checks.real("theta_max", theta_max, 0, THETA_CAP, include_high=True)
    checks.real("rho", rho, 0, 1, include_high=True)
    checks.integer("n_ortho", n_ortho, 0)
    checks.integer("sign_trials", sign_trials, 1)
    checks.real("bs_gamma", bs_gamma, 0)
    checks.integer("bs_max_iteration", bs_max_iteration, 1)
    checks.require(len(frequency_range) == 2 and 0 <= frequency_range[0] < frequency_range[1] <= 1,
                   "frequency_range", frequency_range, "(lo, hi) with 0 <= lo < hi <= 1")
    checks.real("theta_min", theta_min, 0, theta_max, include_low=True)
    checks.integer("init_tries", init_tries, 1)
    checks.real("init_sigma", init_sigma, 0)
    checks.real("init_growth", init_growth, 1, include_low=True)
    batch = x.shape[0]
    gens = [generator(seed, "surfree", key) for key in (range(batch) if keys is None else keys)]
    line_tol = bs_gamma / math.prod(x.shape[1:])**1.5

    oracle.start(x, y, keys)
    current, started = _initialise(oracle, x, gens, tries=init_tries, sigma=init_sigma, growth=init_growth,
                                   tol=line_tol, max_steps=bs_max_iteration)
    done = ~started  # misclassified at the start (never started), or no adversarial starting point
    basis = _Basis.build(x, gens, frequency_range, n_ortho)
    theta = torch.full((batch,), float(theta_max), dtype=torch.float64)
    reserve = 1 + bs_max_iteration if final_line_search else 0

    # Each iteration costs every image it runs at least one query: at most max_queries iterations.
    for _ in range(oracle.max_queries):
        done |= (current - x).flatten(1).norm(dim=1).cpu() == 0  # at x itself (distance 0): nothing to improve
        rows = (~done & (oracle.remaining > reserve)).nonzero().squeeze(1)
        if len(rows) == 0:
            break
        circle = _circles(x, current, rows, basis)
        tmax = theta[rows]
        found, at_max, lower, side = _sign_search(oracle, circle, rows, tmax, sign_trials)
        theta[rows] = torch.where(found, tmax / rho, tmax * rho).clamp(max=THETA_CAP)
        done[rows[theta[rows] < theta_min]] = True  # converged: no step can change the distance any more
        hits = found.nonzero().squeeze(1)
        if len(hits) == 0:
            continue
        lower, upper = _bracket(oracle, circle, rows, lower, side, at_max, tmax / sign_trials)
        candidates = _bisect_angle(oracle, circle, rows, hits, lower, upper, side, tol=bs_gamma,
                                   max_steps=bs_max_iteration)
        _accept(current, circle, rows, hits, candidates)

    if final_line_search:
        moved = (current - x).flatten(1).norm(dim=1).cpu() > 0
        rows = (started & moved & oracle.active()).nonzero().squeeze(1)
        if len(rows):
            dev = rows.to(x.device)
            current[dev] = _line_search(oracle, x[dev], current[dev], rows, tol=line_tol, max_steps=bs_max_iteration)
    return oracle.result(x_final=current)


def _initialise(oracle: Oracle, x: torch.Tensor, gens: Sequence[torch.Generator], *, tries: int, sigma: float,
                growth: float, tol: float, max_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SurFree's first boundary points (Maho et al., CVPR 2021, Algorithm 1; the reference's initialisation).

    One query on each image x (a misclassified image is done). Then, for each other image, noisy images
    ``clip(x + sigma * growth**k * N(0, I), 0, 1)`` for k < ``tries``, drawn from the image's own generator,
    until one is answered adversarial; it is projected on the boundary by the boosted line search of
    :func:`_line_search` on the segment from x.

    Parameters
    ----------
    oracle : Oracle
        The started oracle.
    x : torch.Tensor, shape [B, C, H, W]
        The images.
    gens : sequence of torch.Generator
        One CPU generator per image, B in all.
    tries, sigma, growth : int, float, float
        ``init_tries``, ``init_sigma``, ``init_growth`` of :func:`surfree`.
    tol, max_steps : float, int
        Tolerance in t and probe cap of the line search.

    Returns
    -------
    current : torch.Tensor, shape [B, C, H, W]
        x_b, the boundary point of each started image (x itself for the others).
    started : torch.Tensor, shape [B], bool
        Which images have an adversarial starting point.
    """
    batch, shape = x.shape[0], x.shape[1:]
    device, dtype = x.device, x.dtype
    misclassified = oracle.is_adversarial(x, torch.arange(batch))  # one counted query each
    x_init = x.clone()
    started = torch.zeros(batch, dtype=torch.bool)
    for k in range(tries):
        rows = (~misclassified & ~started & oracle.active()).nonzero().squeeze(1)
        if len(rows) == 0:
            break
        noise = torch.stack([torch.randn(tuple(shape), generator=gens[i]) for i in rows.tolist()])
        candidates = (x[rows.to(device)] + sigma * growth**k * noise.to(device, dtype)).clamp(0, 1)
        hit = oracle.is_adversarial(candidates, rows)
        x_init[rows[hit].to(device)] = candidates[hit.to(device)]
        started[rows[hit]] = True
    current = x.clone()
    rows = started.nonzero().squeeze(1)
    if len(rows):
        dev = rows.to(device)
        current[dev] = _line_search(oracle, x[dev], x_init[dev], rows, tol=tol, max_steps=max_steps)
    return current, started


@dataclass
class _Basis:
    """SurFree's directions: random {-1, 0, +1} low-frequency DCT coefficients, and each image's memory.

    Maho et al. (CVPR 2021, Algorithm 1) draw each new direction in a low-frequency subspace of the DCT of
    the image and orthogonalise it against the last directions tried.

    Attributes
    ----------
    shape : tuple of int
        (C, H, W) of one image; d = C H W.
    mask : torch.Tensor
        int64 [k], the flat indices (in the H W coefficients of a channel) of the coefficients drawn.
    dct_h, dct_w : torch.Tensor
        The orthonormal DCT-II matrices [H, H] and [W, W] (:func:`dct_matrix`), on the device and in the
        dtype of the images.
    gens : sequence of torch.Generator
        One CPU generator per image, B in all.
    memory : torch.Tensor
        [B, n_ortho, d], the last ``n_ortho`` unit directions of each image (zero rows: none yet).
    stored : torch.Tensor
        int64 [B], the directions stored per image since its memory was last cleared.
    """

    shape: tuple[int, int, int]
    mask: torch.Tensor
    dct_h: torch.Tensor
    dct_w: torch.Tensor
    gens: Sequence[torch.Generator]
    memory: torch.Tensor
    stored: torch.Tensor

    @classmethod
    def build(cls, x: torch.Tensor, gens: Sequence[torch.Generator], frequency_range: tuple[float, float],
              n_ortho: int) -> _Basis:
        """The basis of the images ``x`` [B, C, H, W], with an empty memory of ``n_ortho`` directions each."""
        batch, channels, height, width = x.shape
        device, dtype = x.device, x.dtype
        mask = zigzag_mask(height, width, frequency_range).flatten().nonzero().squeeze(1).to(device)
        return cls(shape=(channels, height, width), mask=mask,
                   dct_h=dct_matrix(height, dtype=dtype, device=device),
                   dct_w=dct_matrix(width, dtype=dtype, device=device), gens=gens,
                   memory=torch.zeros(batch, n_ortho, channels * height * width, device=device, dtype=dtype),
                   stored=torch.zeros(batch, dtype=torch.int64))

    def draw(self, rows: torch.Tensor) -> torch.Tensor:
        """Random low-frequency directions [m, d] for the images ``rows`` [m], each from its own generator:
        the inverse DCT of {-1, 0, +1} coefficients on ``mask`` (the reference's ``function='constant'``)."""
        channels, height, width = self.shape
        device, dtype = self.dct_h.device, self.dct_h.dtype
        signs = torch.stack([torch.randint(0, 3, (channels, len(self.mask)), generator=self.gens[i])
                             for i in rows.tolist()])
        coeffs = torch.zeros(len(rows), channels, height * width, device=device, dtype=dtype)
        coeffs[:, :, self.mask] = (signs - 1).to(device, dtype)
        inverse = self.dct_h.T @ coeffs.view(-1, channels, height, width) @ self.dct_w  # the inverse DCT
        return inverse.flatten(1)


@dataclass
class _Circle:
    """The circles of one iteration, one per image it runs (m rows; Maho et al., CVPR 2021, Algorithm 1).

    In the plane (u, v) of row i, ``x(theta) = x + r cos(theta) (cos(theta) u + sin(theta) v)`` lies on the
    circle of diameter [x, x_b], at distance ``r cos(theta)`` from x.

    Attributes
    ----------
    origins : torch.Tensor
        [m, C, H, W], the images x.
    radius : torch.Tensor
        [m, 1, 1, 1], r = ||x_b - x||.
    u, v : torch.Tensor
        [m, C, H, W] each: the unit direction (x_b - x) / r and the new unit direction, orthogonal to u.
    """

    origins: torch.Tensor
    radius: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor

    def point(self, sub: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
        """The points at ``angle`` (degrees, [len(sub)]) of the circles ``sub`` (indices into the m rows),
        clipped to [0, 1]: [len(sub), C, H, W]."""
        device, dtype = self.origins.device, self.origins.dtype
        s = sub.to(device)
        rad = torch.deg2rad(angle.double())
        cos = torch.cos(rad).to(device, dtype).view(-1, 1, 1, 1)
        sin = torch.sin(rad).to(device, dtype).view(-1, 1, 1, 1)
        return (self.origins[s] + self.radius[s] * cos * (cos * self.u[s] + sin * self.v[s])).clamp(0, 1)

    def on_arc(self, hits: torch.Tensor, side: torch.Tensor, sub: torch.Tensor,
               alpha: torch.Tensor) -> torch.Tensor:
        """The point of circle ``hits[sub]`` whose relative distance to x is ``1 - cos(angle) = alpha``, on
        the side ``side[sub]`` (+1 or -1, [len(hits)]): the path of the angle bisection."""
        angle = torch.rad2deg(torch.arccos((1 - alpha).clamp(-1, 1)))
        return self.point(hits[sub], side[sub] * angle)


def _circles(x: torch.Tensor, current: torch.Tensor, rows: torch.Tensor, basis: _Basis) -> _Circle:
    """The direction search of one iteration (Maho et al., CVPR 2021, Algorithm 1): a new direction per image.

    For each image of ``rows`` [m], u = (x_b - x) / ||x_b - x||, and a direction drawn from ``basis`` is
    orthonormalised against u and the image's memory; where the draw lies in their span, the memory is
    cleared and the draw orthonormalised against u alone. The new direction v is stored in the memory, over
    the oldest one.

    Parameters
    ----------
    x, current : torch.Tensor, shape [B, C, H, W]
        The images and their current boundary points x_b.
    rows : torch.Tensor, shape [m], int64
        The images this iteration runs.
    basis : _Basis
        The directions and the memory (updated in place).

    Returns
    -------
    _Circle
        The m circles of diameter [x, x_b] in the planes (u, v).
    """
    device, dtype = x.device, x.dtype
    dev = rows.to(device)
    origins = x[dev]
    delta = (current[dev] - origins).flatten(1)
    radius = delta.norm(dim=1).clamp_min(torch.finfo(dtype).tiny)
    u = delta / radius.unsqueeze(1)
    memory, stored, n_ortho = basis.memory, basis.stored, basis.memory.shape[1]
    r = basis.draw(rows)
    v, degenerate = _orthonormalise(r, u, memory[dev])
    if degenerate.any():
        memory[dev[degenerate.to(device)]] = 0
        stored[rows[degenerate]] = 0
        fresh = degenerate.to(device)
        empty = memory.new_zeros(int(fresh.sum()), 0, memory.shape[2])
        v[fresh], _ = _orthonormalise(r[fresh], u[fresh], empty)
    if n_ortho:
        memory[dev, (stored[rows] % n_ortho).to(device)] = v
        stored[rows] += 1
    shape = x.shape[1:]
    return _Circle(origins=origins, radius=radius.view(-1, 1, 1, 1), u=u.view(-1, *shape),
                   v=v.view(-1, *shape))


def _sign_search(oracle: Oracle, circle: _Circle, rows: torch.Tensor, tmax: torch.Tensor,
                 trials: int) -> tuple[torch.Tensor, ...]:
    """SurFree's sign search (Maho et al., CVPR 2021, Algorithm 1): does the new direction help?

    Tries the circle points at +theta_max (1 - i/T), then -theta_max (1 - i/T), for i < T = ``trials``; the
    first point answered adversarial wins, at most 2T queries per image.

    Parameters
    ----------
    oracle, circle, rows : Oracle, _Circle, torch.Tensor
        The started oracle, the m circles of the iteration, their images (int64 [m]).
    tmax : torch.Tensor, shape [m], float64
        theta_max of each image, in degrees.
    trials : int
        T.

    Returns
    -------
    found, at_max : torch.Tensor, shape [m], bool
        Whether a point was answered adversarial, and whether it was at theta_max itself (i = 0).
    lower, side : torch.Tensor, shape [m], float64
        The angle of that point (degrees, >= 0; 0 where none) and its sign (+1 or -1; 0 where none).
    """
    m = len(rows)
    found = torch.zeros(m, dtype=torch.bool)
    at_max = torch.zeros(m, dtype=torch.bool)
    lower = torch.zeros(m, dtype=torch.float64)
    side = torch.zeros(m, dtype=torch.float64)
    for i in range(trials):
        for sign in (1.0, -1.0):
            sub = (~found & oracle.active(rows)).nonzero().squeeze(1)
            if len(sub) == 0:
                continue
            angle = (1 - i / trials) * tmax[sub]
            hit = sub[oracle.is_adversarial(circle.point(sub, sign * angle), rows[sub])]
            found[hit], at_max[hit] = True, i == 0
            lower[hit], side[hit] = (1 - i / trials) * tmax[hit], sign
    return found, at_max, lower, side


def _bracket(oracle: Oracle, circle: _Circle, rows: torch.Tensor, lower: torch.Tensor, side: torch.Tensor,
             at_max: torch.Tensor, step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The bracket [lower, upper] of angles around the boundary on each circle (Maho et al., CVPR 2021,
    Algorithm 1, and the reference code).

    A hit below theta_max is bounded by the larger angle tried before it, ``lower + step``. A hit at
    theta_max is extended by ``step`` while adversarial, at most :data:`MAX_EXTENSION` probes; its bracket
    closes at 90 degrees (the image itself, answered non-adversarial) when the extension does not stop.

    Parameters
    ----------
    oracle, circle, rows : Oracle, _Circle, torch.Tensor
        The started oracle, the m circles of the iteration, their images (int64 [m]).
    lower, side : torch.Tensor, shape [m], float64
        The adversarial angle (degrees) and side of each row, from :func:`_sign_search`.
    at_max : torch.Tensor, shape [m], bool
        The rows whose hit was at theta_max.
    step : torch.Tensor, shape [m], float64
        theta_max / T, degrees.

    Returns
    -------
    lower, upper : torch.Tensor, shape [m], float64
        The adversarial and the non-adversarial (or 90 degrees) end of each bracket, in degrees.
    """
    lower = lower.clone()
    upper = torch.where(at_max, torch.full_like(lower, 90.0), lower + step)
    extend = at_max.clone()
    for _ in range(MAX_EXTENSION):
        extend &= lower + step < 90  # else the bracket closes at 90 degrees
        sub = (extend & oracle.active(rows)).nonzero().squeeze(1)
        if len(sub) == 0:
            break
        angle = lower[sub] + step[sub]
        adversarial, counted = oracle.query(circle.point(sub, side[sub] * angle), rows[sub])
        lower[sub[adversarial]] = angle[adversarial]
        stop = sub[~adversarial & counted]
        upper[stop] = angle[~adversarial & counted]
        extend[stop] = False
        extend[sub[~counted]] = False
    return lower, upper


def _bisect_angle(oracle: Oracle, circle: _Circle, rows: torch.Tensor, hits: torch.Tensor,
                  lower: torch.Tensor, upper: torch.Tensor, side: torch.Tensor, *, tol: float,
                  max_steps: int) -> torch.Tensor:
    """SurFree's binary search on theta (Maho et al., CVPR 2021, Algorithm 1): the most turned adversarial
    point.

    Bisects each bracket of the rows ``hits`` on ``alpha = 1 - cos(angle)``, the relative distance of the
    circle point to x, in [0, 1] (:func:`~.bisection.bisect`, ``|high - low| <= tol`` or ``max_steps``
    probes).

    Parameters
    ----------
    oracle, circle, rows : Oracle, _Circle, torch.Tensor
        The started oracle, the m circles of the iteration, their images (int64 [m]).
    hits : torch.Tensor, shape [h], int64
        The rows (indices into the m) with an adversarial angle.
    lower, upper, side : torch.Tensor, shape [m], float64
        The brackets of :func:`_bracket` (degrees) and the sides.
    tol, max_steps : float, int
        ``bs_gamma`` and ``bs_max_iteration`` of :func:`surfree`.

    Returns
    -------
    torch.Tensor, shape [h, C, H, W]
        The adversarial end of each bracket: a point answered adversarial.
    """
    alpha_high = 1 - torch.cos(torch.deg2rad(lower[hits]))
    alpha_low = 1 - torch.cos(torch.deg2rad(upper[hits]))
    arc = functools.partial(circle.on_arc, hits, side[hits])
    result = bisect(oracle, rows[hits], arc, alpha_low, alpha_high, tol=tol, max_steps=max_steps)
    moved = (result.high != alpha_high).to(circle.origins.device).view(-1, 1, 1, 1)
    return torch.where(moved, result.x, circle.point(hits, side[hits] * lower[hits]))


def _accept(current: torch.Tensor, circle: _Circle, rows: torch.Tensor, hits: torch.Tensor,
            candidates: torch.Tensor) -> None:
    """SurFree's update (Maho et al., CVPR 2021, Algorithm 1): a candidate closer to x than x_b replaces it.

    Parameters
    ----------
    current : torch.Tensor, shape [B, C, H, W]
        The boundary points x_b, updated in place.
    circle, rows : _Circle, torch.Tensor
        The m circles of the iteration, their images (int64 [m]).
    hits : torch.Tensor, shape [h], int64
        The rows (indices into the m) the ``candidates`` [h, C, H, W] belong to.
    """
    on = hits.to(circle.origins.device)
    better = (candidates - circle.origins[on]).flatten(1).norm(dim=1) < circle.radius[on].flatten()
    current[rows.to(current.device)[on][better]] = candidates[better]
