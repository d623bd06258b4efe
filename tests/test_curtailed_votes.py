"""Votes counted only as far as they decide (:meth:`rs_repro.smoothing.Smooth.decide`), per-image noise streams
(:mod:`rs_repro.noise`) and the smoothed oracle built on them.

Known answers: on the linear classifier at signed distance s past its hyperplane each micro-decision is wrong
with probability q = Phi(s / sigma), so the majority vote is wrong with probability P[Bin(n, q) > n/2] +
P[Bin(n, q) = n/2] / 2 and the accelerated rule with P[Bin(n, q) >= ceil(n P_a)], whatever the curtailment;
and a curtailed vote gives, on the same noise vectors and tie number, exactly the answer of the full vote.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from linear import Linear, Rowwise, RowwiseLinear, images_at
from scipy import stats

from rs_repro import theory
from rs_repro.attacks import smoothed_oracle
from rs_repro.noise import ImageStreams, SharedNoise, block_vectors
from rs_repro.smoothing import Smooth, pick_top


def _exact(q: float, n: int, needed: int | None) -> float:
    """P[the vote is wrong] when each of its n micro-decisions is wrong with probability q (two classes)."""
    if needed is None:
        return float(stats.binom.sf(n // 2, n, q) + (stats.binom.pmf(n // 2, n, q) / 2 if n % 2 == 0 else 0.0))
    return float(stats.binom.sf(needed - 1, n, q))


RULES = [None, 0.5, 0.8]


@pytest.mark.parametrize("pa", RULES, ids=["majority", "pa0.5", "pa0.8"])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 10, 11, 25, 50, 99, 100])
@pytest.mark.parametrize("source", ["shared", "streams"])
def test_a_curtailed_vote_has_the_binomial_law_of_the_full_vote(pa, n, source):
    rows, sigma = 3000, 0.25
    needed = None if pa is None else int(theory.votes_needed(n, pa))
    s = 0.03 if pa is None else sigma * stats.norm.ppf(pa)  # q near 1/2 for the majority, near P_a for the rule
    model = Linear(seed=n)
    x = images_at(model, [-s] * rows)
    y = torch.zeros(rows, dtype=torch.long)
    smooth = Smooth(model, 2, sigma)
    noise = (SharedNoise(torch.Generator().manual_seed(n)) if source == "shared"
             else ImageStreams(n, range(rows), "cpu", limit=10_000))
    wrong, passes = smooth.decide(x, y, n, noise, needed=needed, batch_size=10_000)
    exact = _exact(stats.norm.cdf(s / sigma), n, needed)
    rate = wrong.double().mean().item()
    assert abs(rate - exact) < 4.5 * math.sqrt(exact * (1 - exact) / rows) + 1e-12, (rate, exact)
    assert model.rows == passes.sum() and (passes >= 1).all() and (passes <= n).all()


@pytest.mark.parametrize("pa", RULES, ids=["majority", "pa0.5", "pa0.8"])
@pytest.mark.parametrize("n", [1, 2, 7, 10, 64, 100])
def test_a_clean_point_stops_as_soon_as_its_answer_is_settled(pa, n):
    # Far from the boundary every micro-decision is right: the vote stops after the fewest draws that settle it.
    model = Linear()
    x = images_at(model, [5.0] * 20)
    needed = None if pa is None else int(theory.votes_needed(n, pa))
    wrong, passes = Smooth(model, 2, 0.25).decide(x, torch.zeros(20, dtype=torch.long), n,
                                                  ImageStreams(0, range(20), "cpu", limit=1000), needed=needed)
    fewest = n // 2 + 1 if needed is None else n - needed + 1
    assert not wrong.any() and passes.tolist() == [fewest] * 20


def _full_votes(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, n: int, needed: int | None, sigma: float,
                seed: int, keys: list[int]) -> torch.Tensor:
    """The full vote of n micro-decisions per row, on the first n vectors of each image's stream and its first
    tie number (read only where the label ties for the most votes): what a curtailed vote reading the same
    streams must answer."""
    streams = ImageStreams(seed, keys, "cpu", limit=n * len(keys))
    rows = np.arange(len(keys))
    noise = streams.vectors(rows, np.full(len(keys), n), x[0].numel(),
                            x, lambda out, gen: out.normal_(0.0, sigma, generator=gen))
    noisy = x.flatten(1).repeat_interleave(n, 0) + noise
    labels = model(noisy.view(-1, *x.shape[1:])).argmax(1).view(len(keys), n)
    counts = torch.nn.functional.one_hot(labels, model(x[:1]).shape[1]).sum(1)
    if needed is not None:
        return n - counts.gather(1, y.view(-1, 1)).squeeze(1) >= needed
    right, top = counts.gather(1, y.view(-1, 1)).squeeze(1), counts.amax(1)
    wrong = right < top
    tied = ((right == top) & ((counts == top.unsqueeze(1)).sum(1) > 1)).nonzero().squeeze(1)
    u = streams.uniforms(tied.numpy(), torch.device("cpu"))
    wrong[tied] = pick_top(counts[tied], u) != y[tied]
    return wrong


@pytest.mark.parametrize("classes", [2, 5])
@pytest.mark.parametrize("pa", RULES, ids=["majority", "pa0.5", "pa0.8"])
@pytest.mark.parametrize("n", [1, 2, 9, 10, 100])
def test_a_curtailed_vote_answers_as_the_full_vote_on_the_same_draws(classes, pa, n):
    model = Rowwise(classes, seed=classes)
    rows, sigma = 400, 0.5
    x = torch.rand((rows, 1, 8, 8), generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, classes, (rows,), generator=torch.Generator().manual_seed(2))
    needed = None if pa is None else int(theory.votes_needed(n, pa))
    keys = list(range(100, 100 + rows))
    wrong, passes = Smooth(model, classes, sigma).decide(x, y, n, ImageStreams(7, keys, "cpu", limit=10_000),
                                                         needed=needed, batch_size=512)
    full = _full_votes(model, x, y, n, needed, sigma, 7, keys)
    assert torch.equal(wrong, full)
    assert 0 < wrong.sum() < rows and (passes <= n).all()
    if n >= 9:
        assert passes.mean() < n  # something was saved


def test_the_smoothed_oracle_answers_an_image_the_same_in_any_batch():
    model = RowwiseLinear(seed=3)
    x = images_at(model, [0.0, 0.02, -0.01, 0.05])  # near the boundary: answers vary
    y = torch.zeros(4, dtype=torch.long)
    keys = [11, 4, 30, 2]
    queries = x.repeat(3, 1, 1, 1) + 0.01 * torch.randn((12, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    images = torch.arange(4).repeat(3)
    together = smoothed_oracle(Smooth(model, 2, 0.25), 10, max_queries=10, seed=5)
    together.start(x, y, keys)
    batched = torch.cat([together.query(queries[:8], images[:8]).adversarial,
                         together.query(queries[8:], images[8:]).adversarial]).view(3, 4)
    for b, key in enumerate(keys):
        alone = smoothed_oracle(Smooth(model, 2, 0.25), 10, max_queries=10, seed=5)
        alone.start(x[b:b + 1], y[:1], [key])
        mine = torch.cat([alone.query(queries[b::4][:2], torch.zeros(2, dtype=torch.long)).adversarial,
                          alone.query(queries[b::4][2:], torch.zeros(1, dtype=torch.long)).adversarial])
        assert torch.equal(mine, batched[:, b]), key
        assert alone.forward_passes[0] == together.forward_passes[b]


def test_an_image_stream_is_the_same_however_its_reads_are_cut():
    fill = lambda out, gen: out.normal_(0.0, 1.0, generator=gen)
    like = torch.empty(0)
    size = 256  # blocks of 4, 8, ..., 256 vectors: the reads below cross nine blocks, none on a boundary
    one = ImageStreams(3, [8], "cpu", limit=2000).vectors(np.array([0]), np.array([1000]), size, like, fill)
    cut = ImageStreams(3, [8], "cpu", limit=2000)
    parts = [cut.vectors(np.array([0] * k), np.array([s] * k), size, like, fill)
             for k, s in ((1, 7), (3, 100), (1, 409), (2, 142))]
    assert [block_vectors(size, j) for j in range(8)] == [4, 8, 16, 32, 64, 128, 256, 256]
    assert torch.equal(one, torch.cat(parts))


def test_a_read_beyond_the_limit_is_refused():
    streams = ImageStreams(0, [1, 2], "cpu", limit=5)
    with pytest.raises(ValueError, match="limit"):
        streams.vectors(np.array([0, 0]), np.array([3, 3]), 4, torch.empty(0),
                        lambda out, gen: out.normal_(generator=gen))


@pytest.mark.parametrize("keys, message", [([], "at least one"), ([3, 3], "distinct")])
def test_bad_stream_keys_are_named(keys, message):
    with pytest.raises(ValueError, match=message):
        ImageStreams(0, keys, "cpu", limit=5)


@pytest.mark.parametrize("pa", [None, 0.8], ids=["majority", "pa0.8"])
def test_copies_cut_across_forward_groups_and_stream_limits_change_no_answer(pa):
    # batch_size 7 and a stream limit of 5 cut every round into many forward groups, one vote's copies across
    # several of them: the answers and the passes are those of one uncut pass over the same streams.
    model = Rowwise(4, seed=8)
    rows, n, sigma = 30, 50, 0.5
    x = torch.rand((rows, 1, 8, 8), generator=torch.Generator().manual_seed(3))
    y = torch.randint(0, 4, (rows,), generator=torch.Generator().manual_seed(4))
    needed = None if pa is None else int(theory.votes_needed(n, pa))
    smooth = Smooth(model, 4, sigma)
    cut = smooth.decide(x, y, n, ImageStreams(2, range(rows), "cpu", limit=5), needed=needed, batch_size=7)
    whole = smooth.decide(x, y, n, ImageStreams(2, range(rows), "cpu", limit=10_000), needed=needed,
                          batch_size=10_000)
    assert torch.equal(cut[0], whole[0]) and np.array_equal(cut[1], whole[1])
    assert torch.equal(whole[0], _full_votes(model, x, y, n, needed, sigma, 2, list(range(rows))))
