"""The query oracle and the shared bisection: accounting, budgets, best adversarial, exact boundaries."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from linear import Linear, images_at
from scipy import stats

from rs_repro.attacks import Oracle, bisect_segment, smoothed_oracle, verify
from rs_repro.noise import ImageStreams
from rs_repro.smoothing import Smooth


def test_budget_is_hard_and_extra_rows_never_reach_the_model():
    model = Linear()
    x = images_at(model, [0.3, 0.3])
    oracle = Oracle(model, max_queries=5)
    oracle.start(x, torch.zeros(2, dtype=torch.long))
    rows = torch.cat([x[:1].repeat(7, 1, 1, 1), x[1:].repeat(3, 1, 1, 1)])
    images = torch.tensor([0] * 7 + [1] * 3)
    answer = oracle.query(rows, images)
    assert oracle.queries.tolist() == [5, 3] and model.rows == 8
    assert answer.counted.tolist() == [True] * 5 + [False] * 2 + [True] * 3
    assert not answer.adversarial[5:7].any()
    assert not hasattr(oracle, "last_counted")  # what was counted comes with the answer, nowhere else
    verdict = oracle.is_adversarial(rows, images)  # the verdicts alone
    assert verdict.dtype == torch.bool and not verdict.any()  # x is 0.3 away from the boundary
    assert oracle.queries.tolist() == [5, 5] and model.rows == 10
    assert oracle.active().tolist() == [False, False]
    assert oracle.forward_passes.tolist() == [5, 5]


def test_best_adversarial_history_and_budget_curves():
    model = Linear()
    x = images_at(model, [0.5])
    oracle = Oracle(model, max_queries=100)
    oracle.start(x, torch.zeros(1, dtype=torch.long))
    steps = [0.2, 0.8, 0.6, 1.5, 0.55, 3.0]  # crossing at 0.5 along -w direction... moves towards +w
    for t in steps:
        oracle.is_adversarial(x + t * model.w.view(1, 1, 8, 8), torch.tensor([0]))
    assert math.isclose(oracle.best_l2.item(), 0.55, rel_tol=1e-5)
    assert torch.allclose(oracle.best_x, x + 0.55 * model.w.view(1, 1, 8, 8))
    result = oracle.result()
    assert result.success.tolist() == [True] and result.queries.tolist() == [6]
    assert math.isclose(result.linf.item(), 0.55 * model.w.abs().max().item(), rel_tol=1e-5)
    assert math.isclose(result.best_linf.item(), result.linf.item(), rel_tol=1e-6)  # same point along one ray
    hist = oracle.history()
    assert hist["query"].tolist() == list(range(1, 7))
    assert hist["adversarial"].tolist() == [False, True, True, True, True, True]
    curve = oracle.best_at([1, 2, 3, 4, 5, 6])[0]
    assert np.isinf(curve[0]) and np.allclose(curve[1:], [0.8, 0.6, 0.6, 0.55, 0.55], rtol=1e-5)
    assert np.all(np.diff(curve[1:]) <= 0)


def test_distances_are_exact_and_the_numpy_and_torch_paths_agree():
    model = Linear()
    x = images_at(model, [0.1, 0.2, 0.4])
    oracle = Oracle(model, max_queries=10)
    oracle.start(x, torch.zeros(3, dtype=torch.long))
    steps = torch.tensor([0.5, 1.5, 3.0]).view(3, 1, 1, 1)
    rows = x[[2, 0, 1]] + steps * model.w.view(1, 1, 8, 8)
    images = torch.tensor([2, 0, 1])
    l2, linf = oracle.distances(rows, images)  # the CPU (NumPy) path
    assert np.allclose(l2, [0.5, 1.5, 3.0], rtol=1e-6) and l2.dtype == np.float64
    assert np.allclose(linf, steps.flatten().numpy() * model.w.abs().max().item(), rtol=1e-6)
    oracle._books = dataclasses.replace(oracle._books, x0=None)  # the path taken off the CPU
    torch_l2, torch_linf = oracle.distances(rows, images.numpy())
    assert np.allclose(torch_l2, l2, rtol=1e-6) and np.allclose(torch_linf, linf, rtol=1e-6)
    half = Oracle(model, max_queries=10)  # bfloat16 has no NumPy view: the torch path
    half.start(x.bfloat16(), torch.zeros(3, dtype=torch.long))
    bf_l2, _ = half.distances(rows.bfloat16(), images)
    assert np.allclose(bf_l2, l2, rtol=2e-2)


def test_distances_in_high_dimension_are_summed_in_float64():
    x = torch.zeros(1, 3, 256, 256)  # 196,608 dimensions: a float32 sum would drift
    oracle = Oracle(lambda xs: torch.zeros(len(xs), 2), max_queries=1)
    oracle.start(x, torch.zeros(1, dtype=torch.long))
    row = torch.full_like(x, 1e-3)
    row.view(-1)[::2] = 3e-3
    l2, linf = oracle.distances(row, np.array([0]))
    small, large = (float(torch.tensor(v, dtype=torch.float32)) for v in (1e-3, 3e-3))  # the stored values
    exact = math.sqrt(x.numel() / 2 * (small**2 + large**2))
    assert abs(l2[0] - exact) <= 1e-12 * exact and linf[0] == large


@pytest.mark.parametrize("images", [[0, 2], [-1, 0], [0, 0, 1]])
def test_image_indices_outside_the_batch_are_refused(images):
    model = Linear()
    x = images_at(model, [0.3, 0.3])
    oracle = Oracle(model, max_queries=5)
    oracle.start(x, torch.zeros(2, dtype=torch.long))
    rows = x[[0] * len(images)]
    if len(images) == 3:  # one index per row is required
        with pytest.raises(ValueError, match=r"xs must be \[m, 1, 8, 8\] with one image index per row"):
            oracle.is_adversarial(rows[:2], torch.tensor(images))
    else:
        with pytest.raises(ValueError, match=r"images must index the 2 started images \(0 to 1\), got values from"):
            oracle.is_adversarial(rows, torch.tensor(images))
    assert oracle.queries.tolist() == [0, 0] and model.rows == 0


@pytest.mark.parametrize("distance", [0.05, 0.3, 1.0])
def test_bisection_finds_the_hyperplane_within_tolerance(distance):
    model = Linear(seed=1)
    x = images_at(model, [distance, 2 * distance])
    y = torch.zeros(2, dtype=torch.long)
    far = x + 4 * distance * model.w.view(1, 1, 8, 8)
    oracle = Oracle(model, max_queries=1000)
    oracle.start(x, y)
    result = bisect_segment(oracle, x, far, torch.arange(2), tol=1e-4)
    found = (result.x - x).flatten(1).norm(dim=1)
    assert torch.allclose(found, torch.tensor([distance, 2 * distance]), atol=2e-4)
    assert (model.signed_distance(result.x) >= 0).all()  # the adversarial end is kept
    assert result.queries.tolist() == oracle.queries.tolist()
    assert oracle.queries.max() <= math.ceil(math.log2(4 * 2 * distance / 1e-4)) + 1


def test_bisection_stops_when_the_budget_runs_out():
    model = Linear()
    x = images_at(model, [0.3])
    oracle = Oracle(model, max_queries=4)
    oracle.start(x, torch.zeros(1, dtype=torch.long))
    result = bisect_segment(oracle, x, x + model.w.view(1, 1, 8, 8), torch.tensor([0]), tol=1e-9)
    assert oracle.queries.item() == 4 and result.queries.item() == 4
    assert model.signed_distance(result.x).item() >= 0


@pytest.mark.parametrize("pa", [None, 0.5, 0.8])
def test_smoothed_oracle_counts_forward_passes_and_never_hangs_at_n_1(pa):
    model = Linear()
    x = images_at(model, [0.0, 0.0, 0.0])  # on the boundary: answers are coin flips
    smooth = Smooth(model, 2, 0.25, seed=3)
    oracle = smoothed_oracle(smooth, 1 if pa is None else 10, pa, max_queries=30)
    oracle.start(x, torch.zeros(3, dtype=torch.long))
    result = bisect_segment(oracle, x, x + model.w.view(1, 1, 8, 8), torch.arange(3), tol=1e-12, max_steps=200)
    assert oracle.queries.tolist() == [30, 30, 30]
    assert model.rows == oracle.forward_passes.sum() <= 90 * (1 if pa is None else 10)
    assert torch.isfinite(result.high).all()


def test_accelerated_rule_is_stricter_than_the_majority():
    model = Linear()
    x = images_at(model, [-0.05] * 200)  # just on the adversarial side: pi1 = Phi(0.2) = 0.58
    y = torch.zeros(200, dtype=torch.long)
    smooth = Smooth(model, 2, 0.25, seed=0)
    rates = {}
    for pa in (None, 0.8):
        oracle = smoothed_oracle(smooth, 10, pa, max_queries=1)
        oracle.start(x, y)
        rates[pa] = oracle.is_adversarial(x, torch.arange(200)).double().mean().item()
    assert rates[0.8] < rates[None]


def test_verify_estimates_the_probability_of_eq4():
    model = Linear()
    x = images_at(model, [-1.0, 1.0])  # deep on the adversarial side, deep on the clean side
    smooth = Smooth(model, 2, 0.25, seed=0)
    p_hat, lower, upper = verify(smooth, x, torch.zeros(2, dtype=torch.long), n=10, repeats=200)
    assert p_hat.tolist() == [1.0, 0.0]
    assert lower[0] > 0.95 and upper[1] < 0.05


def _vote_wrong(s: float, n: int, sigma: float) -> float:
    """P[g_{sigma,n}(x) != 0] for the linear model at signed distance s past its hyperplane: each micro-decision
    is wrong with probability p = Phi(s / sigma), the vote when more than n/2 are, and with probability 1/2 when
    exactly n/2 are (a tie broken at random): P[Bin(n, p) > n/2] + P[Bin(n, p) = n/2] / 2."""
    p = stats.norm.cdf(s / sigma)
    return float(stats.binom.sf(n // 2, n, p) + (stats.binom.pmf(n // 2, n, p) / 2 if n % 2 == 0 else 0.0))


class Swapped(Linear):
    """The linear model with its two classes in the other order: class 0 where w.x + b > 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).flip(1)


@pytest.mark.parametrize("n", [2, 10])
def test_majority_rule_breaks_ties_at_random_whatever_the_class_order(n):
    # A tie between the label and the other class is adversarial with probability 1/2: the law of the vote is
    # the same with the classes in either order (the first-maximum rule made it P[Bin > n/2] in one order,
    # P[Bin >= n/2] in the other).
    rows, sigma, s = 8000, 0.25, 0.03
    for model, label in ((Linear(seed=3), 0), (Swapped(seed=3), 1)):
        x = images_at(model, [-s] * rows)  # s past the hyperplane, labelled by the model's clean class
        oracle = smoothed_oracle(Smooth(model, 2, sigma, seed=n), n, max_queries=1)
        oracle.start(x, torch.full((rows,), label, dtype=torch.long))
        rate = oracle.is_adversarial(x, torch.arange(rows)).double().mean().item()
        exact = _vote_wrong(s, n, sigma)
        assert abs(rate - exact) < 5 * math.sqrt(exact * (1 - exact) / rows), (n, label, rate, exact)


def test_majority_rule_draws_its_ties_from_each_image_tie_stream():
    model = Linear(seed=4)
    x = images_at(model, [0.0] * 500)  # on the boundary: with n = 2 half the votes tie
    y = torch.zeros(500, dtype=torch.long)
    answers = []
    for _ in range(2):
        oracle = smoothed_oracle(Smooth(model, 2, 0.25), 2, max_queries=1, seed=9)
        oracle.start(x, y)
        answers.append(oracle.is_adversarial(x, torch.arange(500)))
    assert torch.equal(*answers)  # same seed, same answers
    # the oracle's verdict is g_{sigma,n} != y on the images' streams, tie rule included
    expected, _ = Smooth(model, 2, 0.25).decide(x, y, 2, ImageStreams(9, range(500), "cpu", limit=2))
    assert torch.equal(answers[0], expected)
    assert 0.3 < answers[0].double().mean() < 0.7


@pytest.mark.parametrize("n, k", [(1, 1), (1, 3), (5, 3), (1, 9), (4, 9), (4, 2)])
def test_repeat_and_vote_follows_the_binomial_of_binomial_law(n, k):
    model = Linear(seed=2)
    rows, sigma, s = 4000, 0.25, 0.05
    x = images_at(model, [-s] * rows)  # s past the hyperplane
    oracle = smoothed_oracle(Smooth(model, 2, sigma, seed=k), n, max_queries=k, repeats=k)
    oracle.start(x, torch.zeros(rows, dtype=torch.long))
    rate = oracle.is_adversarial(x, torch.arange(rows)).double().mean().item()
    q = _vote_wrong(s, n, sigma)
    exact = float(stats.binom.sf(k // 2, k, q))  # a strict majority of the k votes is wrong (a tie is not)
    assert abs(rate - exact) < 5 * math.sqrt(exact * (1 - exact) / rows), (rate, exact)
    assert model.rows == oracle.forward_passes.sum() and (oracle.forward_passes <= k * n).all()
    assert oracle.queries.tolist() == [k] * rows


def test_repeats_cost_k_queries_each_and_stop_short_of_the_budget():
    model = Linear()
    x = images_at(model, [0.3, 0.3])
    oracle = Oracle(model, max_queries=10, repeats=3)
    oracle.start(x, torch.zeros(2, dtype=torch.long))
    assert oracle.remaining.tolist() == [3, 3]
    rows = torch.cat([x[:1].repeat(4, 1, 1, 1), x[1:]])
    answer = oracle.query(rows, torch.tensor([0, 0, 0, 0, 1]))
    assert answer.counted.tolist() == [True, True, True, False, True]
    assert oracle.queries.tolist() == [9, 3] and model.rows == 12
    assert oracle.active().tolist() == [False, True] and oracle.remaining.tolist() == [0, 2]
    assert oracle.history()["query"].tolist() == [3, 6, 9, 3]


def test_jittered_repeats_are_asked_at_the_jitter_distance_and_booked_at_the_row():
    seen = []

    class Recorder(Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.clone())
            return super().forward(x)

    model = Recorder()
    x = images_at(model, [0.2])
    oracle = Oracle(model, max_queries=5, repeats=5, jitter=0.01, jitter_seed=4)
    oracle.start(x, torch.zeros(1, dtype=torch.long))
    point = x + 0.5 * model.w.view(1, 1, 8, 8)  # 0.3 past the hyperplane: every copy is adversarial
    assert oracle.is_adversarial(point, torch.tensor([0])).tolist() == [True]
    offsets = (seen[0] - point).flatten(1).norm(dim=1)
    assert len(seen[0]) == 5 and torch.allclose(offsets, torch.full((5,), 0.01), rtol=1e-4)
    assert math.isclose(oracle.best_l2.item(), 0.5, rel_tol=1e-5)
    again = Oracle(model, max_queries=5, repeats=5, jitter=0.01, jitter_seed=4)
    again.start(x, torch.zeros(1, dtype=torch.long))
    again.is_adversarial(point, torch.tensor([0]))
    assert torch.equal(seen[0], seen[1])  # same jitter seed, same copies


def test_input_hash_noise_answers_the_same_point_the_same_way_and_jitter_undoes_it():
    model = Linear(seed=5)
    rows, sigma, s, n = 2000, 0.25, 0.02, 2  # n = 2: a tie half the time, broken by the input's own generator
    x = images_at(model, [-s])  # one point, asked many times: a coin of bias Phi(s / sigma)
    smooth = Smooth(model, 2, sigma)
    keyed = smoothed_oracle(smooth, n, max_queries=rows, noise="input-hash", noise_key=7)
    keyed.start(x, torch.zeros(1, dtype=torch.long))
    answers = keyed.is_adversarial(x.repeat(rows, 1, 1, 1), torch.zeros(rows, dtype=torch.long))
    assert answers.all() or not answers.any()  # the same input, the same answer
    other = smoothed_oracle(smooth, n, max_queries=1, noise="input-hash", noise_key=7)
    other.start(x, torch.zeros(1, dtype=torch.long))
    assert other.is_adversarial(x, torch.tensor([0])).item() == answers[0].item()  # a deterministic classifier
    jittered = smoothed_oracle(smooth, n, max_queries=rows, noise="input-hash", noise_key=7, jitter=1e-4)
    jittered.start(x, torch.zeros(1, dtype=torch.long))
    rate = jittered.is_adversarial(x.repeat(rows, 1, 1, 1), torch.zeros(rows, dtype=torch.long)).double().mean().item()
    p = _vote_wrong(s, n, sigma)  # jittered asks get independent noise: the fresh-noise law again
    assert abs(rate - p) < 5 * math.sqrt(p * (1 - p) / rows), (rate, p)


@pytest.mark.parametrize("n, pa, batch_size", [(10, None, 7), (10, 0.8, 10_000), (31, None, 13), (100, 0.5, 64)])
def test_input_hash_answers_each_row_as_if_it_were_asked_alone(n, pa, batch_size):
    """With input-hash seeding a row's answer and forward passes depend on the row alone: the rows of one call
    (their forward groups cut anywhere by ``batch_size``) are answered as each asked alone, and again the same."""
    model = Linear(seed=6)
    x = images_at(model, [-0.02, 0.0, 0.01, 0.03, -0.05])
    rows = x.repeat(4, 1, 1, 1) + 0.01 * torch.randn((20, *x.shape[1:]), generator=torch.Generator().manual_seed(8))
    images = torch.arange(5).repeat(4)

    def oracle():
        keyed = smoothed_oracle(Smooth(model, 2, 0.25), n, pa, max_queries=100, noise="input-hash", noise_key=3,
                                batch_size=batch_size)
        keyed.start(x, torch.zeros(5, dtype=torch.long))
        return keyed

    together = oracle()
    answers = together.is_adversarial(rows, images)
    alone = [oracle() for _ in range(len(rows))]
    one_by_one = [o.is_adversarial(row, image.view(1)).item()
                  for o, row, image in zip(alone, rows.split(1), images, strict=True)]
    assert answers.tolist() == one_by_one and 0 < sum(one_by_one) < len(rows)  # both answers occur
    passes = torch.stack([o.forward_passes for o in alone]).sum(0)
    assert torch.equal(together.forward_passes, passes)


@pytest.mark.parametrize("name, value", [("repeats", 0), ("jitter", -0.1), ("jitter_seed", 1.5)])
def test_bad_repeat_parameters_are_named(name, value):
    with pytest.raises(ValueError, match=name):
        Oracle(Linear(), max_queries=3, **{name: value})


def test_unknown_noise_seeding_is_named():
    with pytest.raises(ValueError, match="noise"):
        smoothed_oracle(Smooth(Linear(), 2, 0.25), 1, max_queries=3, noise="hashed")
