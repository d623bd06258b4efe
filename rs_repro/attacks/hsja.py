"""HopSkipJumpAttack (HSJA): a decision-based l2 attack, batched over images, on the shared query oracle.

Chen, Jordan and Wainwright, "HopSkipJumpAttack: A Query-Efficient Decision-Based Attack" (IEEE S&P 2020),
one of the three attacks that Maho, Furon and Le Merrer, "Randomized Smoothing under Attack: How Good is it
in Practice?" (ICASSP 2022, Fig. 5) run against the smoothed classifier g_{sigma,n}. Each iteration estimates
the normal of the decision boundary at the current boundary point from the signs of random probes, steps
along it (geometric step size), and projects back onto the boundary with the shared bisection.

Every model call goes through :class:`~rs_repro.attacks.oracle.Oracle` (counted, hard per-image budget,
best adversarial kept) and every projection through :func:`~rs_repro.attacks.bisection.bisect`. Unlike the
reference implementations (``shared/reference/attacks.md``), every loop is capped and no point is ever
assumed to be adversarial, so the attack ends on a random oracle such as g_{sigma,n} with n = 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from rs_repro import checks
from rs_repro.attacks.bisection import bisect
from rs_repro.attacks.oracle import AttackResult, Oracle
from rs_repro.seeds import ImageGenerators

_TINY = 1e-12


def hsja(oracle: Oracle, x: torch.Tensor, y: torch.Tensor, *, seed: int, keys: Sequence[int] | None = None,
         num_iterations: int = 64, gamma: float = 1.0, init_num_evals: int = 100, max_num_evals: int = 10_000,
         init_tries: int = 100, max_halvings: int = 25) -> AttackResult:
    """Untargeted l2 HopSkipJumpAttack on B images (Chen et al. 2020; geometric step-size search).

    Parameters
    ----------
    oracle : Oracle
        Query oracle on the attacked classifier (e.g. :func:`~.oracle.smoothed_oracle`); restarted here with
        ``x, y``.
        Its ``max_queries`` is the per-image budget, its ``batch_size`` the chunk of gradient probes.
    x : torch.Tensor, shape [B, C, H, W]
        Clean images in [0, 1] (d = C * H * W); the attack runs on their device and dtype.
    y : torch.Tensor, shape [B], int64
        Their labels; a query is adversarial when the oracle says so.
    seed : int
        Seed of the attack's own generators, one per image (:class:`rs_repro.seeds.ImageGenerators`, keyed by
        ``keys``): same seed, same queries, whatever the other images of the batch.
    keys : sequence of int, optional
        Each image's identity (its test-split index, given to :meth:`~rs_repro.attacks.oracle.Oracle.start`):
        the attack's own draws for the image and a smoothed oracle's noise are seeded with it; default 0 to
        B - 1.
    num_iterations : int, default 64
        Gradient-step-projection iterations T (Foolbox 3 ``steps=64``; the reference ``hsja.py`` has 40
        in its signature, 64 in its ``main.py``). Usually the query budget binds first.
    gamma : float, default 1.0
        Sets the bisection tolerance theta = gamma / d^1.5 (relative to the segment being bisected) and
        the probe radius delta_t = sqrt(d) * theta * dist_t = gamma * dist_t / d, with delta_1 = 0.1
        (reference and Foolbox).
    init_num_evals, max_num_evals : int, default 100 and 10,000
        Probes of the gradient estimate at iteration t: min(init_num_evals * sqrt(t), max_num_evals)
        (reference and Foolbox), fewer when the budget left cannot pay for them and a step (see Notes).
    init_tries : int, default 100
        Uniform-noise draws per image in search of a first adversarial (reference: up to 10,000 behind an
        assert; Foolbox: up to 1,000 uncounted draws; ART: 100).
    max_halvings : int, default 25
        Halvings of the geometric step size per iteration (reference and Foolbox: unbounded).

    Returns
    -------
    AttackResult
        ``oracle.result()``: the best adversarial query per image (the attack's own boundary points are
        among the queries), queries and forward passes spent, and the full query history; ``x_final``, the
        attack's last boundary point x_b per image (x where the attack found none); ``diagnostics``:
        ``gradient_steps`` (normal estimates made) and ``one_label_steps`` (those whose counted probes all
        got the same answer, where HSJA's estimate degenerates; ICASSP 2022, section 3.5), int64 [B] each.

    Notes
    -----
    Steps, each batched over the images still running (with budget left):

    1. One counted query of each clean image; an image already misclassified is done, at distortion 0.
    2. Initialisation: uniform noise in [0, 1]^d, one draw per image and round, at most ``init_tries``
       rounds; then a bisection on the segment from x to the noise (tolerance min(theta, 0.001), which
       replaces the reference's two successive bisections). An image without adversarial noise fails.
    3. Iteration t: probes ``clip(x_b + delta_t u)`` with u uniform on the unit sphere; the estimate is
       ``mean(phi u)`` when all signs phi agree (HSJA's rule), ``mean((phi - mean(phi)) u)`` otherwise,
       normalised per image (Foolbox 3.3.4 normalises by the norm over the whole batch). A zero estimate
       falls back to the direction ``x_b - x``. Step ``eps = dist_t / sqrt(t)``, halved until
       ``clip(x_b + eps v)`` is adversarial, then bisection from x back to the boundary. If no step is
       found (a random oracle may deny even x_b itself), the image stays at x_b for the next iteration, as
       the reference does (it keeps halving); it does not jump to the oracle's best accepted query, which
       under a random oracle is often a lucky answer. Distances dist_t are measured after the bisection, as
       in Foolbox (the reference uses the distance before it).
    4. Budget: the gradient sample is cut to ``remaining - (2 + ceil(log2(1 / theta)))`` probes (at least
       1), so that the last iteration within the budget can still step and project.

    Randomness: one generator per image, on ``x.device``, seeded by ``seed`` and the image's key
    (:class:`rs_repro.seeds.ImageGenerators`). The same seed, images and budget give the same queries (on a
    deterministic model, the same result), and an image's queries do not depend on the other images of the
    batch; a smoothed oracle draws each image's noise from its own streams too.

    The grid-search step size and the l-inf version of the reference are not implemented; the oracle
    still reports the best l-inf distortion among the queries of this l2 attack.
    """
    checks.integer("seed", seed)
    checks.real("gamma", gamma, 0)
    for name, value in (("num_iterations", num_iterations), ("init_num_evals", init_num_evals),
                        ("max_num_evals", max_num_evals), ("init_tries", init_tries)):
        checks.integer(name, value, 1)
    checks.integer("max_halvings", max_halvings, 0)
    oracle.start(x, y, keys)
    x = x.detach()
    dev = x.device
    gen = ImageGenerators(seed, ("hsja",), oracle.keys, dev)
    d = x[0].numel()
    theta = gamma / d ** 1.5
    reserve = 2 + math.ceil(math.log2(1 / theta))  # queries kept for the step and the bisection

    running = ~oracle.is_adversarial(x, torch.arange(len(x)))  # already misclassified: done at l2 = 0
    xb, running = boundary_start(oracle, x, running, gen, init_tries, tol=min(theta, 1e-3))
    dist = row_norms(xb - x)  # float64 [B], CPU
    steps = torch.zeros(len(x), dtype=torch.int64)
    one_label = torch.zeros(len(x), dtype=torch.int64)
    for t in range(1, num_iterations + 1):
        rows = (running & oracle.active()).nonzero().squeeze(1)
        if len(rows) == 0:
            break
        x0, b = x[rows.to(dev)], xb[rows.to(dev)]
        delta = torch.full((len(rows),), 0.1, dtype=torch.float64) if t == 1 else gamma * dist[rows] / d
        evals = min(int(init_num_evals * math.sqrt(t)), max_num_evals)
        probes = (oracle.remaining[rows] - reserve).clamp(1, evals)
        v, agree = normal_estimate(oracle, b, rows, probes, delta, gen, fallback=b - x0)
        steps[rows] += 1
        one_label[rows] += agree.long()
        step, found = _geometric_step(oracle, b, v, dist[rows] / math.sqrt(t), rows, max_halvings)
        k = found.nonzero().squeeze(1)  # where no step was found, the image stays at its boundary point
        if len(k):
            b = b.clone()
            b[k.to(dev)] = _project(oracle, x0[k.to(dev)], step[k.to(dev)], rows[k], theta)
        xb[rows.to(dev)] = b
        dist[rows] = row_norms(b - x0)
    return oracle.result(x_final=xb, diagnostics={"gradient_steps": steps, "one_label_steps": one_label})


def row_norms(z: torch.Tensor) -> torch.Tensor:
    """Per-row l2 norms of ``z`` [m, ...], float64 [m] on the CPU (also PopSkipJump's)."""
    return z.flatten(1).double().norm(dim=1).cpu()


def per_row(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values`` [m] as [m, 1, 1, 1] on the device and dtype of ``like``, to scale the rows of ``like``."""
    return values.to(like.device, like.dtype).view(-1, *([1] * (like.dim() - 1)))


def _segment(x_in: torch.Tensor, x_out: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The path ``t -> (1 - t) x_in + t x_out`` for :func:`bisect` (rows index the m segments)."""
    def point(rows: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        r = rows.to(x_in.device)
        t = per_row(t, x_in)
        return (1 - t) * x_in[r] + t * x_out[r]
    return point


def _project(oracle: Oracle, x0: torch.Tensor, x_adv: torch.Tensor, images: torch.Tensor,
             tol: float) -> torch.Tensor:
    """Bisect from ``x0`` (t = 0) to ``x_adv`` (t = 1) until ``|high - low| <= tol``; the adversarial ends."""
    m = len(images)
    return bisect(oracle, images, _segment(x0, x_adv), torch.zeros(m), torch.ones(m), tol=tol).x


def boundary_start(oracle: Oracle, x: torch.Tensor, running: torch.Tensor, gen: ImageGenerators, tries: int,
                tol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """HSJA's (and PopSkipJump's) starting points: seeded uniform noise until adversarial (``tries`` rounds
    at most, drawn from each ``running`` image's generator), then bisection towards x to tolerance ``tol``.

    Returns the boundary points [B, C, H, W] (x where none was found) and which images go on, bool [B].
    """
    noise = x.clone()
    found = torch.zeros(len(x), dtype=torch.bool)
    for _ in range(tries):
        rows = (running & ~found & oracle.active()).nonzero().squeeze(1)
        if len(rows) == 0:
            break
        draw = gen.draw(rows, x.shape[1:], "uniform", x.dtype)
        adversarial = oracle.is_adversarial(draw, rows)
        noise[rows[adversarial].to(x.device)] = draw[adversarial.to(x.device)]
        found[rows[adversarial]] = True
    xb = x.clone()
    rows = found.nonzero().squeeze(1)
    if len(rows):
        r = rows.to(x.device)
        xb[r] = _project(oracle, x[r], noise[r], rows, tol)
    return xb, found


def normal_estimate(oracle: Oracle, b: torch.Tensor, images: torch.Tensor, probes: torch.Tensor,
                    delta: torch.Tensor, gen: ImageGenerators,
                    fallback: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """HSJA's Monte Carlo estimate of the boundary normal at each point of ``b`` (Chen et al. 2020, eq. 9-10).

    Probes ``clip(b + delta u)``, u uniform on the unit sphere, each answered by one counted query; the
    estimate is ``mean(phi u)`` (phi = +1 adversarial, -1 not) when every counted probe of a point got the
    same answer, ``mean((phi - mean(phi)) u)`` otherwise, normalised per point; a zero estimate falls back
    to ``fallback``. Probes are drawn and queried in chunks of ``oracle.batch_size`` rows, all points
    together; each point's probes are cut into pieces of ``oracle.batch_size`` from its own first, and each
    piece is drawn by one call of its image's generator, so an image's probes do not depend on the batch.

    Parameters
    ----------
    oracle : Oracle
        A started oracle; ``images`` index its batch.
    b : torch.Tensor, shape [m, C, H, W]
        Points near the boundary of the images ``images`` [m] (int64).
    probes : torch.Tensor, shape [m], int64
        Probes per point (fewer are counted where a budget runs out).
    delta : torch.Tensor, shape [m], float64
        Probe radii.
    gen : rs_repro.seeds.ImageGenerators
        Each image's source of probe directions, on ``b.device``.
    fallback : torch.Tensor, shape [m, C, H, W]
        Direction used where the estimate is zero.

    Returns
    -------
    v : torch.Tensor, shape [m, C, H, W]
        Unit estimates, pointing to the adversarial side.
    one_label : torch.Tensor, shape [m], bool, on the CPU
        Whether every counted probe of the point got the same answer (the estimate is then a mean of
        signed directions that carries no information on the boundary; ICASSP 2022, section 3.5).
    """
    m = len(images)
    sums = torch.zeros((2, m, b[0].numel()), dtype=b.dtype, device=b.device)  # sums of phi * u and of u
    sum_p = torch.zeros(m, dtype=torch.float64)
    count = torch.zeros(m, dtype=torch.float64)
    for own in _probe_chunks(probes, oracle.batch_size):
        own_d = own.to(b.device)
        u = gen.draw(images[own], b.shape[1:], "normal", b.dtype)
        u /= per_row(u.flatten(1).norm(dim=1).clamp_min(_TINY), u)
        radius = per_row(delta[own].clamp_min(_TINY), b)
        points = (b[own_d] + radius * u).clamp(0, 1)
        u = (points - b[own_d]) / radius  # the probe actually made, after clipping
        adversarial, counted = oracle.query(points, images[own])
        counted = counted.double()  # probes beyond the budget carry no sign
        phi = (2 * adversarial.double() - 1) * counted
        # Per-point sums, one product per point's piece (its rows are consecutive): a point's sums do not
        # depend on the other points of the chunk, to the last bit.
        weights = torch.stack((phi, counted)).to(b.device, b.dtype)  # [2, rows]
        flat = u.flatten(1)
        points_in_chunk, sizes = torch.unique_consecutive(own, return_counts=True)
        start = 0
        for point, size in zip(points_in_chunk.tolist(), sizes.tolist(), strict=True):
            sums[:, point] += weights[:, start:start + size] @ flat[start:start + size]
            start += size
        sum_p.index_add_(0, own, phi)
        count.index_add_(0, own, counted)
    count = count.clamp_min(1)
    mean_p = sum_p / count
    baseline = torch.where(mean_p.abs() == 1, 0.0, mean_p)  # all signs equal: HSJA uses mean(phi u)
    grad = ((sums[0] - per_row(baseline, sums[1]) * sums[1]) / per_row(count, sums[1])).view_as(b)
    zero = (row_norms(grad) <= _TINY).to(b.device)
    grad[zero] = fallback[zero]
    return grad / per_row(row_norms(grad).clamp_min(_TINY), grad), mean_p.abs() == 1


def _probe_chunks(probes: torch.Tensor, size: int) -> list[torch.Tensor]:
    """The owners (point indices, int64) of the probes of each chunk: every point's ``probes`` [m] cut into
    pieces of ``size`` from its first, the pieces packed in order into chunks of at most ``size`` rows."""
    chunks: list[list[torch.Tensor]] = []
    filled = size
    for point, count in enumerate(probes.tolist()):
        for piece in range(0, count, size):
            rows = min(size, count - piece)
            if filled + rows > size:
                chunks.append([])
                filled = 0
            chunks[-1].append(torch.full((rows,), point, dtype=torch.int64))
            filled += rows
    return [torch.cat(chunk) for chunk in chunks]


def _geometric_step(oracle: Oracle, b: torch.Tensor, v: torch.Tensor, eps: torch.Tensor, images: torch.Tensor,
                    max_halvings: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Halve ``eps`` [m] until ``clip(b + eps v)`` is adversarial, at most ``max_halvings`` times.

    Returns the adversarial points found [m, C, H, W] (``b`` where none) and which rows found one, bool [m].
    """
    eps = eps.clone()
    step = b.clone()
    found = torch.zeros(len(images), dtype=torch.bool)
    for _ in range(max_halvings + 1):
        rows = (~found & oracle.active(images)).nonzero().squeeze(1)
        if len(rows) == 0:
            break
        r = rows.to(b.device)
        candidates = (b[r] + per_row(eps[rows], b) * v[r]).clamp(0, 1)
        adversarial = oracle.is_adversarial(candidates, images[rows])
        step[r[adversarial.to(b.device)]] = candidates[adversarial.to(b.device)]
        found[rows] = adversarial
        eps[rows] = torch.where(adversarial, eps[rows], eps[rows] / 2)
    return step, found
