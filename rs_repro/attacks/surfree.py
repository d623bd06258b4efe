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

import math
from collections.abc import Sequence

import torch

from ..seeds import generator
from .bisection import bisect
from .oracle import AttackResult, Oracle

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


def dct_2d(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal 2-D DCT-II over the last two dimensions of ``x`` [..., H, W] (two matmuls)."""
    ch = dct_matrix(x.shape[-2], dtype=x.dtype, device=x.device)
    cw = dct_matrix(x.shape[-1], dtype=x.dtype, device=x.device)
    return ch @ x @ cw.T


def idct_2d(coeffs: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`dct_2d` (orthonormal 2-D DCT-III) over the last two dimensions [..., H, W]."""
    ch = dct_matrix(coeffs.shape[-2], dtype=coeffs.dtype, device=coeffs.device)
    cw = dct_matrix(coeffs.shape[-1], dtype=coeffs.dtype, device=coeffs.device)
    return ch.T @ coeffs @ cw


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


def _check(name: str, value: object, ok: bool, accepted: str) -> None:
    if not ok:
        raise ValueError(f"{name} must be {accepted}, got {value!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
        adversarial = oracle.is_adversarial(point(rows, boost), images[rows])
        counted = oracle.last_counted
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


def surfree(oracle: Oracle, x: torch.Tensor, y: torch.Tensor, *, seed: int, theta_max: float = 30.0,
            rho: float = 0.95, n_ortho: int = 100, sign_trials: int = 1, bs_gamma: float = 0.01,
            bs_max_iteration: int = 7, frequency_range: tuple[float, float] = (0.0, 0.5),
            final_line_search: bool = True, theta_min: float = 1e-4, init_tries: int = 20,
            init_sigma: float = 0.5, init_growth: float = 1.5) -> AttackResult:
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
        "surfree", i)``, so its run does not depend on the other images of the batch (given a
        deterministic model).
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
        (``success`` False unless a query happened to be adversarial).

    Notes
    -----
    Steps (Maho et al., CVPR 2021, Algorithm 1, and the reference code):

    1. One query on x: images already misclassified are done.
    2. Initialisation: up to ``init_tries`` noisy images, the first answered adversarial is projected on
       the boundary by a boosted line search (one probe at 0.2 x + 0.8 x_init, then a bisection).
    3. Each iteration, every image with budget left draws a direction v and tries the circle points at
       +-theta_max (the sign search). On a hit at theta_max the angle is extended by theta_max / T while
       still adversarial (at most :data:`MAX_EXTENSION` probes, then the bracket closes at 90 degrees, the
       original image); the angle is then bisected on ``1 - cos(theta)`` between the adversarial and the
       non-adversarial end, and the adversarial end replaces x_b if it is closer to x.
    4. Final line search (optional) with the queries kept for it.

    Differences from the reference, kept on purpose: the stopping rule is the oracle's budget (no
    ``steps``, whose default 100 stops the attack around 1,000 to 1,500 queries); the direction is the
    reference's ``function='constant'`` variant (``config_example.json``: random signs on the masked
    coefficients, independent of the image; the class default ``tanh`` of the unnormalised DCT of the
    image is the same up to coefficients near zero), with an orthonormal DCT; no ``-theta`` probes during
    the bisection (on a locally flat boundary only one side of the circle is adversarial); v is
    orthogonalised against the current u rather than the first direction; no quantisation to 1/255 and no
    interpolation or distance line search (all off in ``config_example.json``). Under a random oracle the
    returned point should be re-verified with fresh noise (:meth:`rs_repro.smoothing.Smooth.verify`).
    """
    _check("x", tuple(x.shape), x.dim() == 4, "a tensor [B, C, H, W]")
    _check("x", "values outside [0, 1]", bool(((x >= 0) & (x <= 1)).all()), "in [0, 1]")
    _check("seed", seed, _is_int(seed), "an int")
    _check("theta_max", theta_max, 0 < theta_max <= THETA_CAP, f"in (0, {THETA_CAP}] degrees")
    _check("rho", rho, 0 < rho <= 1, "in (0, 1]")
    _check("n_ortho", n_ortho, _is_int(n_ortho) and n_ortho >= 0, "an integer >= 0")
    _check("sign_trials", sign_trials, _is_int(sign_trials) and sign_trials >= 1, "an integer >= 1")
    _check("bs_gamma", bs_gamma, bs_gamma > 0, "> 0")
    _check("bs_max_iteration", bs_max_iteration, _is_int(bs_max_iteration) and bs_max_iteration >= 1,
           "an integer >= 1")
    _check("frequency_range", frequency_range,
           len(frequency_range) == 2 and 0 <= frequency_range[0] < frequency_range[1] <= 1,
           "(lo, hi) with 0 <= lo < hi <= 1")
    _check("theta_min", theta_min, 0 <= theta_min < theta_max, "in [0, theta_max)")
    _check("init_tries", init_tries, _is_int(init_tries) and init_tries >= 1, "an integer >= 1")
    _check("init_sigma", init_sigma, init_sigma > 0, "> 0")
    _check("init_growth", init_growth, init_growth >= 1, ">= 1")

    batch, shape = x.shape[0], x.shape[1:]
    channels, height, width = shape
    dim = math.prod(shape)
    device, dtype = x.device, x.dtype
    gens = [generator(seed, "surfree", i) for i in range(batch)]
    line_tol = bs_gamma / dim**1.5

    oracle.start(x, y)
    everyone = torch.arange(batch)
    done = oracle.is_adversarial(x, everyone).clone()  # one counted query each: misclassified images are done

    # Initialisation: noisy images, the first adversarial one projected on the boundary.
    x_init = x.clone()
    started = torch.zeros(batch, dtype=torch.bool)
    for k in range(init_tries):
        rows = (~done & ~started & oracle.active()).nonzero().squeeze(1)
        if len(rows) == 0:
            break
        noise = torch.stack([torch.randn(tuple(shape), generator=gens[i]) for i in rows.tolist()])
        candidates = (x[rows.to(device)] + init_sigma * init_growth**k * noise.to(device, dtype)).clamp(0, 1)
        hit = oracle.is_adversarial(candidates, rows)
        x_init[rows[hit].to(device)] = candidates[hit.to(device)]
        started[rows[hit]] = True
    done |= ~started
    current = x.clone()  # x_b, the current boundary point (x where none)
    rows = started.nonzero().squeeze(1)
    if len(rows):
        dev = rows.to(device)
        current[dev] = _line_search(oracle, x[dev], x_init[dev], rows, tol=line_tol, max_steps=bs_max_iteration)

    # Direction basis and memory.
    mask = zigzag_mask(height, width, frequency_range).flatten().nonzero().squeeze(1).to(device)
    dct_h, dct_w = dct_matrix(height, dtype=dtype, device=device), dct_matrix(width, dtype=dtype, device=device)
    memory = torch.zeros(batch, n_ortho, dim, device=device, dtype=dtype)
    stored = torch.zeros(batch, dtype=torch.int64)
    theta = torch.full((batch,), float(theta_max), dtype=torch.float64)
    reserve = 1 + bs_max_iteration if final_line_search else 0

    def draw(rows: torch.Tensor) -> torch.Tensor:
        """Random low-frequency directions [m, d] for the images ``rows`` (each from its own generator)."""
        signs = torch.stack([torch.randint(0, 3, (channels, len(mask)), generator=gens[i]) for i in rows.tolist()])
        coeffs = torch.zeros(len(rows), channels, height * width, device=device, dtype=dtype)
        coeffs[:, :, mask] = (signs - 1).to(device, dtype)
        return (dct_h.T @ coeffs.view(-1, channels, height, width) @ dct_w).flatten(1)  # inverse DCT

    # Each iteration costs every image it runs at least one query: at most max_queries iterations.
    for _ in range(oracle.max_queries):
        done |= (current - x).flatten(1).norm(dim=1).cpu() == 0  # at x itself (distance 0): nothing to improve
        rows = (~done & (oracle.remaining > reserve)).nonzero().squeeze(1)
        if len(rows) == 0:
            break
        dev, m = rows.to(device), len(rows)
        origins = x[dev]
        delta = (current[dev] - origins).flatten(1)
        radius = delta.norm(dim=1).clamp_min(torch.finfo(dtype).tiny)
        u = delta / radius.unsqueeze(1)

        # New direction, orthogonal to u and to the last n_ortho directions (memory cleared when exhausted).
        r = draw(rows)
        v, degenerate = _orthonormalise(r, u, memory[dev])
        if degenerate.any():
            memory[dev[degenerate.to(device)]] = 0
            stored[rows[degenerate]] = 0
            fresh = degenerate.to(device)
            v[fresh], _ = _orthonormalise(r[fresh], u[fresh], memory.new_zeros(int(fresh.sum()), 0, dim))
        if n_ortho:
            memory[dev, (stored[rows] % n_ortho).to(device)] = v
            stored[rows] += 1
        radius, u, v = radius.view(-1, 1, 1, 1), u.view(-1, *shape), v.view(-1, *shape)

        def circle(sub: torch.Tensor, angle: torch.Tensor, origins=origins, radius=radius, u=u, v=v) -> torch.Tensor:
            """Circle points at ``angle`` (degrees, [len(sub)]) of the iteration rows ``sub``, clipped."""
            s = sub.to(device)
            rad = torch.deg2rad(angle.double())
            cos = torch.cos(rad).to(device, dtype).view(-1, 1, 1, 1)
            sin = torch.sin(rad).to(device, dtype).view(-1, 1, 1, 1)
            return (origins[s] + radius[s] * cos * (cos * u[s] + sin * v[s])).clamp(0, 1)

        # Sign search: +theta_max (1 - i/T), then -theta_max (1 - i/T), for i < T; the first hit wins.
        tmax = theta[rows]
        found = torch.zeros(m, dtype=torch.bool)
        at_max = torch.zeros(m, dtype=torch.bool)
        lower = torch.zeros(m, dtype=torch.float64)  # |angle| of the hit, answered adversarial
        side = torch.zeros(m, dtype=torch.float64)  # its sign
        for i in range(sign_trials):
            for sign in (1.0, -1.0):
                sub = (~found & oracle.active(rows)).nonzero().squeeze(1)
                if len(sub) == 0:
                    continue
                angle = (1 - i / sign_trials) * tmax[sub]
                hit = sub[oracle.is_adversarial(circle(sub, sign * angle), rows[sub])]
                found[hit], at_max[hit] = True, i == 0
                lower[hit], side[hit] = (1 - i / sign_trials) * tmax[hit], sign
        theta[rows] = torch.where(found, tmax / rho, tmax * rho).clamp(max=THETA_CAP)
        done[rows[theta[rows] < theta_min]] = True  # converged: no step can change the distance any more
        hits = found.nonzero().squeeze(1)
        if len(hits) == 0:
            continue

        # Bracket: a hit below theta_max is bounded by the larger angle tried before; one at theta_max is
        # extended by theta_max / T while adversarial.
        step = tmax / sign_trials
        upper = torch.where(at_max, torch.full_like(lower, 90.0), lower + step)
        extend = at_max.clone()
        for _ in range(MAX_EXTENSION):
            extend &= lower + step < 90  # else the bracket closes at 90 degrees
            sub = (extend & oracle.active(rows)).nonzero().squeeze(1)
            if len(sub) == 0:
                break
            angle = lower[sub] + step[sub]
            adversarial = oracle.is_adversarial(circle(sub, side[sub] * angle), rows[sub])
            counted = oracle.last_counted
            lower[sub[adversarial]] = angle[adversarial]
            stop = sub[~adversarial & counted]
            upper[stop] = angle[~adversarial & counted]
            extend[stop] = False
            extend[sub[~counted]] = False

        # Angle bisection on alpha = 1 - cos(angle) (relative distance of the circle point), in [0, 1].
        def on_circle(sub: torch.Tensor, alpha: torch.Tensor, hits=hits, side=side, circle=circle) -> torch.Tensor:
            angle = torch.rad2deg(torch.arccos((1 - alpha).clamp(-1, 1)))
            return circle(hits[sub], side[hits[sub]] * angle)

        alpha_high = 1 - torch.cos(torch.deg2rad(lower[hits]))
        alpha_low = 1 - torch.cos(torch.deg2rad(upper[hits]))
        result = bisect(oracle, rows[hits], on_circle, alpha_low, alpha_high, tol=bs_gamma,
                        max_steps=bs_max_iteration)
        moved = (result.high != alpha_high).to(device).view(-1, 1, 1, 1)
        candidates = torch.where(moved, result.x, circle(hits, side[hits] * lower[hits]))
        better = (candidates - origins[hits.to(device)]).flatten(1).norm(dim=1) < radius[hits.to(device)].flatten()
        current[dev[hits.to(device)][better]] = candidates[better]

    if final_line_search:
        moved = (current - x).flatten(1).norm(dim=1).cpu() > 0
        rows = (started & moved & oracle.active()).nonzero().squeeze(1)
        if len(rows):
            dev = rows.to(device)
            _line_search(oracle, x[dev], current[dev], rows, tol=line_tol, max_steps=bs_max_iteration)
    return oracle.result()
