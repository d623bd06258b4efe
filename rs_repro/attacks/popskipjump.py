"""PopSkipJump (PSJ): HSJA for probabilistic classifiers, batched over images, on the shared query oracle.

Simon-Gabriel, Sheikh and Krause, "PopSkipJump: Decision-Based Attack for Probabilistic Classifiers"
(ICML 2021, arXiv 2106.07445; authors' code github.com/cjsg/PopSkipJump, ``popskip.py``, ``infomax.py``,
``abstract_attack.py``). An attack that adapts to randomness, beside Maho, Furon and Le Merrer's HSJA on
g_{sigma,n} (ICASSP 2022). PSJ keeps HopSkipJump's loop (boundary point, normal estimate from the signs of
random probes, step, return to the boundary) and changes two of its parts:

* the bisection becomes a Bayesian search (PopBinSearch): along the segment from the clean image, the
  probability that a query is answered adversarial is modelled as a sigmoid with unknown centre and
  inverse temperature; a posterior over both, on a grid, is updated after every answer; the next queries go
  where they are expected to bring the most information; the search returns the estimated p = 1/2 point;
* the number of probes of the normal estimate grows with the estimated noise, so that the expected cosine
  between estimate and true normal stays that of HSJA on a deterministic classifier (capped).

Every model call goes through :class:`~rs_repro.attacks.oracle.Oracle` (counted, hard per-image budget,
best adversarial kept); the normal estimate is HSJA's :func:`~rs_repro.attacks.hsja.normal_estimate`. Every
loop is capped and no point is assumed to be adversarial.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from rs_repro import checks
from rs_repro.attacks.hsja import boundary_start, normal_estimate, per_row, row_norms
from rs_repro.attacks.oracle import AttackResult, Oracle
from rs_repro.seeds import ImageGenerators

#: Inverse temperatures s of the sigmoid (in units of 1 / segment length), log-spaced from 10^-1 to 10^2 as
#: in the authors' ``infomax.py``.
_LOG10_SLOPES = (-1.0, 2.0)
#: HSJA's alpha (E[phi u . n] scaled, see ``_alpha``) on a deterministic classifier whose boundary is
#: one probe standard deviation from the probe centre: sqrt(2 / pi) exp(-1/2).
_ALPHA_DETERMINISTIC = math.sqrt(2 / math.pi) * math.exp(-0.5)
#: Candidate positions of a round: expected information gain within this fraction of the best (authors' code).
_NEAR_BEST = 0.9


def popskipjump(oracle: Oracle, x: torch.Tensor, y: torch.Tensor, *, seed: int, keys: Sequence[int] | None = None,
                num_iterations: int = 32, init_num_evals: int = 100, max_num_evals: int = 10_000,
                init_tries: int = 100, grid_size: int = 100, num_slopes: int = 31, bin_window: int = 10,
                bin_batch: int = 8, max_bin_queries: int = 500, bin_confidence: float = 0.9) -> AttackResult:
    """Untargeted l2 PopSkipJump on B images (Simon-Gabriel et al. 2021).

    Parameters
    ----------
    oracle : Oracle
        Query oracle on the attacked classifier (e.g. :func:`~.oracle.smoothed_oracle`); restarted here with
        ``x, y``. Its ``max_queries`` is the per-image budget, its ``batch_size`` the chunk of probes.
    x : torch.Tensor, shape [B, C, H, W]
        Clean images in [0, 1] (d = C * H * W); queries are made on their device and dtype.
    y : torch.Tensor, shape [B], int64
        Their labels.
    seed : int
        Seed of the attack's own generators, one per image (:class:`rs_repro.seeds.ImageGenerators`, keyed by
        ``keys``): same seed, same queries, whatever the other images of the batch.
    keys : sequence of int, optional
        Each image's identity (its test-split index, given to :meth:`~rs_repro.attacks.oracle.Oracle.start`):
        the attack's own draws for the image and a smoothed oracle's noise are seeded with it; default 0 to
        B - 1.
    num_iterations : int, default 32
        Iterations T (authors' default). Usually the query budget binds first.
    init_num_evals, max_num_evals : int, default 100 and 10,000
        HSJA's probe schedule n_t = min(init_num_evals * sqrt(t), max_num_evals), the deterministic reference
        that PSJ's own probe count matches (see Notes); ``max_num_evals`` also caps PSJ's count.
    init_tries : int, default 100
        Uniform-noise draws per image in search of a first adversarial, as in :func:`~.hsja.hsja`.
    grid_size : int, default 100
        G: PopBinSearch places queries at the G + 1 positions k / G of the segment and puts its sigmoid
        centres at the G midpoints; 1 / G plays the part of HSJA's bisection tolerance theta, and the probe
        radius is delta = sqrt(d) * L / G for a last segment of length L (authors: 100 on MNIST, 300 on CIFAR).
    num_slopes : int, default 31
        Inverse temperatures on the grid, log-spaced in [0.1, 100] (authors' 31).
    bin_window : int, default 10
        A search stops when the joint posterior mode of (centre, temperature) has not moved for this many
        rounds (authors' "estimate fluctuation" rule with its window of 10).
    bin_batch : int, default 8
        Largest number of queries per image in one round of a search; round r asks min(1 + r // 2,
        bin_batch) (the authors' growth rule; their default asks one query per round).
    max_bin_queries : int, default 500
        Cap on the queries of one search (authors: 5,000).
    bin_confidence : float, default 0.9
        A search also stops when the posterior puts this mass on the centre's mode and its two neighbours
        (the location is known to about 1 / G).

    Returns
    -------
    AttackResult
        ``oracle.result()``: the best adversarial query per image, the books and the query history;
        ``x_final``: the attack's last accepted boundary point per image (x where none was found);
        ``diagnostics``, int64 [B] each: ``gradient_steps``, ``one_label_steps`` (as in HSJA),
        ``gradient_probes`` (probes asked for), ``bin_searches``, ``bin_search_queries`` and
        ``rejected_searches`` (searches whose point was not accepted, see Notes).

    Notes
    -----
    Steps, each batched over the images still running (with budget left):

    1. One counted query of each clean image; an image already misclassified is done, at distortion 0.
    2. Initialisation: uniform noise, as in HSJA, then PopBinSearch on the segment from x to the noise.
    3. Iteration t: HSJA's probes around the boundary point x_b at radius delta = sqrt(d) L / G; their number
       is :func:`probe_count` of HSJA's n_t and of the last estimated inverse temperature. Then the step
       ``x~ = clip(x_b + dist_t / sqrt(t) v)`` without HSJA's geometric search, the "opposite movement"
       ``clip(x~ + (x~ - x) / 2)`` that puts the far end safely on the adversarial side, and PopBinSearch on
       the segment from x to it (:func:`pop_bin_search`).
    4. A search's point is accepted only if, among the search's answers at and beyond it, adversarial ones
       outnumber the others; otherwise the image keeps its boundary point, its L and its temperature (the
       authors retry a search whose centre ends at the clean image). The gradient sample is cut to
       ``remaining - q`` probes (at least 1), q being the queries of the image's last search, so that the
       last iteration within the budget can still search.

    Departures from the paper and its code: the authors' sigmoid also has a noise floor eps (estimated in the
    first search, then frozen); here eps = 0, which g_{sigma,n} satisfies far from its boundary. A round
    asks up to ``bin_batch`` queries at once (spread over the positions whose information gain is within 90%
    of the best; the authors draw them at random there) to keep the number of oracle calls small. The
    concentration stop (``bin_confidence``) is added so that a deterministic oracle costs about a
    bisection. The prior is uniform on the grid at every search (the authors' default, ``prior_frac = 1``).
    The probe radius sqrt(d) L / G is the authors'; it outgrows L when sqrt(d) > G (d > 10^4 at G = 100).
    """
    checks.integer("seed", seed)
    for name, value in (("num_iterations", num_iterations), ("init_num_evals", init_num_evals),
                        ("max_num_evals", max_num_evals), ("init_tries", init_tries), ("bin_window", bin_window),
                        ("bin_batch", bin_batch), ("max_bin_queries", max_bin_queries)):
        checks.integer(name, value, 1)
    checks.integer("grid_size", grid_size, 2)
    checks.integer("num_slopes", num_slopes, 1)
    checks.real("bin_confidence", bin_confidence, 0, 1)
    oracle.start(x, y, keys)
    x = x.detach()
    dev = x.device
    gen = ImageGenerators(seed, ("popskipjump",), oracle.keys, dev)
    d = x[0].numel()
    grid = Grid(grid_size, num_slopes)
    search = {"window": bin_window, "batch": bin_batch, "max_queries": max_bin_queries, "confidence": bin_confidence}
    batch = len(x)
    counters = {k: torch.zeros(batch, dtype=torch.int64) for k in
                ("gradient_steps", "one_label_steps", "gradient_probes", "bin_searches", "bin_search_queries",
                 "rejected_searches")}

    running = ~oracle.is_adversarial(x, torch.arange(batch))  # already misclassified: done at l2 = 0
    noise, running = boundary_start(oracle, x, running, gen, init_tries, tol=1.0)  # tol 1: the noise itself
    xb = noise.clone()  # where the first search is rejected, the noise (answered adversarial) stands
    length = row_norms(noise - x)  # L: length of each image's last accepted segment, float64 [B], CPU
    slope = torch.full((batch,), 10.0 ** _LOG10_SLOPES[1], dtype=torch.float64)  # last s, deterministic prior
    reserve = torch.zeros(batch, dtype=torch.int64)
    rows = running.nonzero().squeeze(1)
    if len(rows):
        _search(oracle, x, noise[rows.to(dev)], rows, grid, search, xb, length, slope, reserve, counters)
    for t in range(1, num_iterations + 1):
        rows = (running & oracle.active()).nonzero().squeeze(1)
        if len(rows) == 0:
            break
        r = rows.to(dev)
        x0, b = x[r], xb[r]
        wanted = probe_count(min(init_num_evals * math.sqrt(t), max_num_evals), slope[rows], grid_size, max_num_evals)
        probes = torch.minimum(wanted, (oracle.remaining[rows] - reserve[rows]).clamp_min(1))
        v, agree = normal_estimate(oracle, b, rows, probes, math.sqrt(d) / grid_size * length[rows], gen,
                                   fallback=b - x0)
        counters["gradient_steps"][rows] += 1
        counters["one_label_steps"][rows] += agree.long()
        counters["gradient_probes"][rows] += probes
        step = (b + per_row(row_norms(b - x0) / math.sqrt(t), b) * v).clamp(0, 1)
        far = (step + (step - x0) / 2).clamp(0, 1)  # the opposite movement
        _search(oracle, x, far, rows, grid, search, xb, length, slope, reserve, counters)
    return oracle.result(x_final=xb, diagnostics=counters)


def probe_count(hsja_probes: float, slope: torch.Tensor, grid_size: int, cap: int) -> torch.Tensor:
    """PSJ's number of probes: as many as keep HSJA's expected cosine with the true normal.

    For probes ``b + delta u`` (u uniform on the sphere, d large), the expected cosine between the estimate
    and the normal is about ``1 / sqrt(1 + (d - 1) / (n alpha^2))`` (Simon-Gabriel et al. 2021, the
    expected-cosine result of their section on the gradient step; authors' ``get_cos_from_n``). HSJA on a
    deterministic classifier has ``alpha = _ALPHA_DETERMINISTIC`` (boundary one probe standard deviation
    away, its tolerance theta vs. delta / sqrt(d) = theta); PSJ has ``_alpha`` of the estimated inverse
    temperature, with offset 1 / G vs. probe spread L / G. Equal cosines give
    ``n = hsja_probes * (_ALPHA_DETERMINISTIC / alpha)^2``, independent of d.

    Parameters
    ----------
    hsja_probes : float
        HSJA's n_t at this iteration.
    slope : torch.Tensor, shape [m], float64
        Estimated inverse temperatures s (units of 1 / segment length).
    grid_size : int
        G.
    cap : int
        Largest count returned.

    Returns
    -------
    torch.Tensor, shape [m], int64
        Probes, in [1, cap].
    """
    ratio = (_ALPHA_DETERMINISTIC / _alpha(slope / grid_size)) ** 2
    return (hsja_probes * ratio).ceil().clamp(1, cap).long()


def _alpha(scaled_slope: torch.Tensor) -> torch.Tensor:
    """E[phi X] for X ~ N(0, 1) the probe coordinate along the normal and phi = +-1 a vote whose probability
    ramps linearly (slope ``scaled_slope``, in probe standard deviations) around a boundary one standard
    deviation away: ``s' (erf((1 + 1 / 2s') / sqrt 2) - erf((1 - 1 / 2s') / sqrt 2))`` (authors' ``get_alpha_``,
    Stein's lemma on the ramp)."""
    half = 1 / (2 * scaled_slope)
    return scaled_slope * (torch.erf((1 + half) / math.sqrt(2)) - torch.erf((1 - half) / math.sqrt(2)))


class Grid:
    """PopBinSearch's discretisation and its likelihood tables, shared by every search of an attack.

    Positions u_j = j / G (j = 0..G) along a segment (0 the clean image, 1 the far end); hypotheses
    h = (k, l): sigmoid centre t_k = (k + 1/2) / G and inverse temperature s_l (``num_slopes`` log-spaced in
    [0.1, 100]); the probability that a query at u is answered adversarial is ``sigmoid(4 s (u - t))`` (slope
    s at the centre; authors' ``0.5 tanh(2 s (u - t)) + 0.5``). Tables are float64 on the CPU, [H, G + 1] with
    H = G * num_slopes: ``log_p`` and ``log_q`` (log-likelihoods of an adversarial and of a clean answer) and
    ``entropy`` (of the answer, in nats).
    """

    def __init__(self, grid_size: int, num_slopes: int) -> None:
        self.size = grid_size
        self.positions = torch.arange(grid_size + 1, dtype=torch.float64) / grid_size
        centres = (torch.arange(grid_size, dtype=torch.float64) + 0.5) / grid_size
        self.slopes = torch.logspace(*_LOG10_SLOPES, num_slopes, dtype=torch.float64)
        z = 4 * self.slopes.view(1, -1, 1) * (self.positions.view(1, 1, -1) - centres.view(-1, 1, 1))
        z = z.reshape(-1, grid_size + 1)  # hypothesis h = k * num_slopes + l
        self.log_p, self.log_q = torch.nn.functional.logsigmoid(z), torch.nn.functional.logsigmoid(-z)
        self.p = self.log_p.exp()
        self.entropy = -(self.p * self.log_p + (1 - self.p) * self.log_q)


class BinSearch(NamedTuple):
    """Result of :func:`pop_bin_search` for m segments.

    Attributes
    ----------
    x : torch.Tensor, shape [m, C, H, W]
        The point at the returned position of each segment.
    accepted : torch.Tensor, shape [m], bool, CPU
        Whether answers at and beyond that position were mostly adversarial (see :func:`pop_bin_search`).
    slope : torch.Tensor, shape [m], float64, CPU
        Posterior-mode inverse temperature s (units of 1 / segment length).
    queries : torch.Tensor, shape [m], int64, CPU
        Counted queries of the search.
    """

    x: torch.Tensor
    accepted: torch.Tensor
    slope: torch.Tensor
    queries: torch.Tensor


def pop_bin_search(oracle: Oracle, x0: torch.Tensor, far: torch.Tensor, images: torch.Tensor, grid: Grid, *,
                   window: int, batch: int, max_queries: int, confidence: float) -> BinSearch:
    """PopBinSearch (Simon-Gabriel et al. 2021): Bayesian search of the p = 1/2 point on m segments at once.

    On segment i, ``(1 - u) x0[i] + u far[i]``, answers are modelled as Bernoulli(sigmoid(4 s (u - t))) with
    (t, s) unknown on ``grid``, uniform prior. Round r: for every segment still searching, the expected
    information gain of one answer at each position, ``I(u) = H(E_post[p(u)]) - E_post[H(p(u))]`` (the
    mutual information between answer and (t, s), the authors' acquisition ``I(y, t, s)``), is computed; the
    round's min(1 + r // 2, ``batch``) queries are spread evenly over the positions with I >= 0.9 max I
    (repeats allowed); all segments' queries go in one oracle call; the posterior is multiplied by the
    likelihood of every counted answer. A segment stops when the mode of (t, s) has not moved for ``window``
    rounds, when the centre's posterior mass on its mode and the two neighbouring cells reaches
    ``confidence``, after ``max_queries`` queries, or when its image's budget runs out.

    Returned position: the grid position just beyond the posterior median of t, ``u = j / G`` with j the
    smallest index such that P(t < u) >= 1/2 (so 1/G <= u <= 1; on a deterministic oracle this is the
    first position answered adversarial above the last answered clean). The point is ``accepted`` when the
    search's answers at positions >= u hold more adversarial than clean ones.

    Parameters
    ----------
    oracle : Oracle
        The started oracle.
    x0, far : torch.Tensor, shape [m, C, H, W]
        Clean images (u = 0) and far ends (u = 1).
    images : torch.Tensor, shape [m], int64
        Image of each segment in the oracle's batch.
    grid : Grid
        Positions, hypotheses and likelihood tables.
    window, batch, max_queries : int
        See above.
    confidence : float
        See above.

    Returns
    -------
    BinSearch
    """
    m, nx, ns = len(images), grid.size + 1, len(grid.slopes)
    log_post = torch.zeros((m, grid.size * ns), dtype=torch.float64)
    answers = torch.zeros((2, m, nx), dtype=torch.float64)  # counted clean / adversarial answers per position
    queries = torch.zeros(m, dtype=torch.int64)
    mode = torch.full((m,), -1, dtype=torch.int64)
    still = torch.zeros(m, dtype=torch.int64)  # rounds without a move of the mode
    done = torch.zeros(m, dtype=torch.bool)
    for r in range(max_queries):  # at least one query per round: the cap also bounds the rounds
        rows = (~done & oracle.active(images)).nonzero().squeeze(1)
        if len(rows) == 0:
            break
        post = torch.softmax(log_post[rows], dim=1)
        mean_p = (post @ grid.p).clamp(1e-12, 1 - 1e-12)
        gain = -(mean_p * mean_p.log() + (1 - mean_p) * (-mean_p).log1p()) - post @ grid.entropy  # [rows, nx]
        count = (max_queries - queries[rows]).clamp(max=min(1 + r // 2, batch))
        owner, position = _spread(gain >= _NEAR_BEST * gain.amax(dim=1, keepdim=True), count)
        u = per_row(grid.positions[position], x0)
        o = rows[owner].to(x0.device)
        adversarial, counted = oracle.query((1 - u) * x0[o] + u * far[o], images[rows[owner]])
        fresh = torch.zeros((2, len(rows), nx), dtype=torch.float64)  # this round's answers per position
        flat = (adversarial.long() * len(rows) + owner) * nx + position
        fresh.view(-1).index_add_(0, flat[counted], torch.ones(int(counted.sum()), dtype=torch.float64))
        answers[:, rows] += fresh
        queries[rows] += fresh.sum(dim=(0, 2)).long()
        log_post[rows] += fresh[1] @ grid.log_p.T + fresh[0] @ grid.log_q.T
        log_post[rows] -= log_post[rows].amax(dim=1, keepdim=True)
        new_mode = log_post[rows].argmax(dim=1)
        still[rows] = torch.where(new_mode == mode[rows], still[rows] + 1, 0)
        mode[rows] = new_mode
        centre = torch.softmax(log_post[rows], dim=1).view(len(rows), grid.size, ns).sum(2)  # P(t = t_k)
        padded = torch.nn.functional.pad(centre, (1, 1))
        mass = (padded[:, :-2] + padded[:, 1:-1] + padded[:, 2:]).gather(1, centre.argmax(dim=1, keepdim=True))
        done[rows] = (still[rows] >= window) | (mass.squeeze(1) >= confidence) | (queries[rows] >= max_queries)
    centre = torch.softmax(log_post, dim=1).view(m, grid.size, ns).sum(2)
    below = (centre.cumsum(dim=1) < 0.5).sum(dim=1) + 1  # smallest j with P(t < j / G) >= 1/2
    beyond = torch.arange(nx).view(1, -1) >= below.view(-1, 1)
    accepted = (answers[1] * beyond).sum(1) > (answers[0] * beyond).sum(1)
    u = per_row(grid.positions[below], x0)
    return BinSearch(x=(1 - u) * x0 + u * far, accepted=accepted, slope=grid.slopes[log_post.argmax(dim=1) % ns],
                     queries=queries)


def _spread(candidates: torch.Tensor, count: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``count[i]`` positions per row, evenly spread over the row's candidate positions (bool [k, nx]): the
    ``(j + 1/2) / count[i]`` quantiles of its sorted candidates, j < count[i]. Returns the owner row and the
    position of each query, int64 [sum(count)] each."""
    k, nx = candidates.shape
    index = torch.arange(nx).expand(k, nx)
    ordered = torch.where(candidates, index, index + nx).sort(dim=1).values  # candidates first, in order
    owner = torch.repeat_interleave(torch.arange(k), count)
    rank = torch.arange(len(owner)) - (count.cumsum(0) - count)[owner]
    pick = ((rank + 0.5) * candidates.sum(1)[owner] / count[owner]).long()
    return owner, ordered[owner, pick]


def _search(oracle: Oracle, x: torch.Tensor, far: torch.Tensor, rows: torch.Tensor, grid: Grid,
            search: dict[str, float], xb: torch.Tensor, length: torch.Tensor, slope: torch.Tensor,
            reserve: torch.Tensor, counters: dict[str, torch.Tensor]) -> None:
    """PopBinSearch from ``x[rows]`` to ``far`` [len(rows), C, H, W]; where its point is accepted, it becomes
    the boundary point in ``xb`` (with its segment's length and inverse temperature). Updates in place."""
    r = rows.to(x.device)
    found = pop_bin_search(oracle, x[r], far, rows, grid, **search)
    keep = found.accepted.nonzero().squeeze(1)
    xb[r[keep.to(x.device)]] = found.x[keep.to(x.device)]
    length[rows[keep]] = row_norms(far - x[r])[keep]
    slope[rows[keep]] = found.slope[keep]
    reserve[rows] = found.queries
    counters["bin_searches"][rows] += 1
    counters["bin_search_queries"][rows] += found.queries
    counters["rejected_searches"][rows] += (~found.accepted).long()
