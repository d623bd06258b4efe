"""RayS on a linear classifier, where the exact l-inf and l2 distances to the boundary are known."""

from __future__ import annotations

import math
from itertools import islice

import numpy as np
import pytest
import torch
from linear import Linear, images_at

from rs_repro.attacks.oracle import Oracle, smoothed_oracle
from rs_repro.attacks.rays import _blocks, rays
from rs_repro.smoothing import Smooth

BUDGET = 2000




def _model(seed: int = 1) -> Linear:
    """A :class:`Linear` oriented so that the all-ones box corner, RayS's first probe, is of class 1.

    RayS starts with d_t = inf, so its probes are box corners until one is adversarial; with
    sum(w) < 0 no corner of the schedule's first levels need be, and the attack never starts.
    """
    model = Linear(seed)
    if model.w.sum() < 0:
        model.w = -model.w
    return model




DISTANCES = [0.1, 0.3, 0.5]


@pytest.fixture(scope="module")
def run():
    model = _model()
    x = images_at(model, DISTANCES)
    y = torch.zeros(len(DISTANCES), dtype=torch.long)
    oracle = Oracle(model, max_queries=BUDGET)
    result = rays(oracle, x, y, seed=0)
    return model, x, y, oracle, result


def test_linf_distance_within_5_percent_of_the_hyperplane(run):
    model, x, _, _, result = run
    exact = torch.tensor(DISTANCES, dtype=torch.float64) / model.w.abs().sum().double()  # |w.x + b| / ||w||_1
    ratio = result.best_linf / exact
    assert result.success.all()
    assert (ratio >= 1 - 1e-4).all() and (ratio <= 1.05).all(), ratio
    assert (model.signed_distance(result.x_adv_linf) > 0).all()
    assert (x.min() > 0.2) and (x.max() < 0.9)  # clipping does not bind near the boundary


def test_budget_is_spent_and_never_exceeded(run):
    model, _, _, oracle, result = run
    assert (result.queries <= BUDGET).all()
    assert model.rows == int(result.queries.sum())  # every model row is a counted query
    assert result.queries.tolist() == [BUDGET] * len(DISTANCES)
    assert len(oracle.history()) == int(result.queries.sum())


def test_best_distortion_never_increases(run):
    _, _, _, oracle, result = run
    budgets = list(range(1, BUDGET + 1))
    curves = oracle.best_at(budgets, norm="linf")
    for curve in curves:
        finite = curve[np.isfinite(curve)]
        assert len(finite) > 0 and np.all(np.diff(finite) <= 0)
        assert np.isinf(curve[: len(curve) - len(finite)]).all()  # once found, always found
    assert np.allclose(curves[:, -1], result.best_linf.numpy())


def test_reported_l2_adversarial_is_a_real_query_and_not_below_the_exact_distance(run):
    model, x, y, oracle, result = run
    assert (result.l2 >= torch.tensor(DISTANCES, dtype=torch.float64) * (1 - 1e-5)).all()
    assert (model(result.x_adv).argmax(1) != y).all()  # the model, not the books, says adversarial
    assert torch.allclose((result.x_adv - x).flatten(1).norm(dim=1).double(), result.l2, rtol=1e-5)
    hist = oracle.history()
    for image in range(len(DISTANCES)):
        adv = hist[(hist.image == image) & hist.adversarial.astype(bool)]
        assert np.isclose(adv.l2.min(), result.l2[image].item())


def test_same_seed_same_output_and_seed_unused_without_random_start():
    model = _model()
    x = images_at(model, [0.2, 0.4])
    y = torch.zeros(2, dtype=torch.long)
    results = [rays(Oracle(model, max_queries=300), x, y, seed=s, random_start=r)
               for s, r in ((3, False), (4, False), (3, True), (3, True))]
    for a, b in (results[:2], results[2:]):
        assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.x_adv_linf, b.x_adv_linf)
        assert torch.equal(a.queries, b.queries)
        assert a.history.equals(b.history)
    assert not results[0].history.equals(results[2].history)


@pytest.mark.parametrize("budget", [1, 2, 37])
def test_small_budgets_are_hard(budget):
    model = _model()
    x = images_at(model, [0.2, -0.1, 0.4])
    oracle = Oracle(model, max_queries=budget)
    result = rays(oracle, x, torch.zeros(3, dtype=torch.long))
    assert (result.queries <= budget).all()
    assert model.rows == int(result.queries.sum())
    assert result.queries[1] == 1


def test_already_misclassified_images_cost_one_query_and_have_zero_distortion():
    model = _model()
    x = images_at(model, [-0.2, 0.3, -0.05])
    oracle = Oracle(model, max_queries=200)
    result = rays(oracle, x, torch.zeros(3, dtype=torch.long))
    assert result.queries.tolist() == [1, 200, 1]
    assert result.l2[[0, 2]].tolist() == [0.0, 0.0] and result.best_linf[[0, 2]].tolist() == [0.0, 0.0]
    assert torch.equal(result.x_adv[[0, 2]], x[[0, 2]])
    assert result.success.all()


@pytest.mark.parametrize("pa", [None, 0.8])
def test_smoothed_oracle_with_one_sample_never_crashes_or_hangs(pa):
    model = _model()
    x = images_at(model, [0.0, 0.1, 0.5])  # on the boundary, near it, far: noisy answers everywhere
    smooth = Smooth(model, 2, 0.25, seed=0)
    oracle = smoothed_oracle(smooth, 1, pa, max_queries=150)
    result = rays(oracle, x, torch.zeros(3, dtype=torch.long), seed=0)
    assert (result.queries <= 150).all()
    assert model.rows == int(result.queries.sum())  # n = 1: one forward pass per query
    assert torch.isfinite(result.best_linf).any()
    found = result.success
    assert (result.l2[found] >= 0).all() and (result.best_linf[found] <= 1).all()


def test_block_schedule_is_the_reference_one():
    blocks = list(islice(_blocks(5), 12))
    assert blocks == [(0, 5), (0, 3), (3, 5), (0, 2), (2, 4), (4, 5),
                      (0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (0, 1)]
    dim = 64
    assert sum(1 for _ in islice(_blocks(dim), 127)) == 127
    assert list(islice(_blocks(dim), 127))[-1] == (63, 64)
    assert math.prod((1, 8, 8)) == dim


def test_every_call_asks_each_image_at_most_once():
    """Probing and bisecting images share each oracle call, so the calls are about the per-image budget."""
    model = Linear(seed=2)
    x = images_at(model, [0.2, 0.4, 0.6, 0.9])
    oracle = smoothed_oracle(Smooth(model, 2, 0.05, seed=0), 10, 0.8, max_queries=300)
    calls = []
    ask = oracle.is_adversarial

    def counting(xs, images):
        calls.append(images.tolist())
        return ask(xs, images)

    oracle.is_adversarial = counting
    result = rays(oracle, x, torch.zeros(4, dtype=torch.long))
    assert all(len(set(images)) == len(images) for images in calls)
    assert len(calls) == int(result.queries.max())
