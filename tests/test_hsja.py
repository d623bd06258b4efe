"""HSJA on the shared oracle: convergence to a known hyperplane, budgets, accounting, seeds, noisy oracles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from linear import Constant, Linear, images_at

from rs_repro.attacks import Oracle, smoothed_oracle
from rs_repro.attacks.hsja import hsja, normal_estimate
from rs_repro.seeds import ImageGenerators
from rs_repro.smoothing import Smooth


def _labels(b: int) -> torch.Tensor:
    return torch.zeros(b, dtype=torch.long)


def test_converges_to_the_hyperplane_with_a_non_increasing_best():
    model = Linear(seed=1)
    distances = [0.15, 0.3]
    x = images_at(model, distances)
    oracle = Oracle(model, max_queries=20_000)
    result = hsja(oracle, x, _labels(2), seed=0)
    ratio = result.l2.numpy() / np.array(distances)
    assert result.success.all() and np.all(ratio >= 1 - 1e-4) and np.all(ratio <= 1.10), ratio
    budgets = [1, 50, 100, 500, 1000, 2000, 5000, 10_000, 20_000]
    curve = oracle.best_at(budgets)
    assert np.all(np.diff(curve, axis=1) <= 0)
    assert np.allclose(curve[:, -1], result.l2.numpy())
    assert np.all(curve[:, budgets.index(1000)] / distances < 1.5)  # well on its way after 1,000 queries
    assert (model(result.x_adv).argmax(1) == 1).all()


@pytest.mark.parametrize("budget", [1, 2, 13, 150, 377])
def test_budget_is_never_exceeded_and_every_query_is_counted(budget):
    model = Linear()
    x = images_at(model, [0.1, 0.25, 0.4])
    result = hsja(Oracle(model, max_queries=budget), x, _labels(3), seed=1)
    assert (result.queries <= budget).all()
    assert model.rows == result.queries.sum().item()  # initialisation, checks and probes included
    assert len(result.history) == model.rows
    assert result.queries.tolist() == [budget] * 3  # a linear boundary always leaves work to do
    adversarial = result.history.groupby("image").adversarial.any()
    assert result.success.tolist() == adversarial.tolist()
    assert result.success.all() or budget < 150


def test_same_seed_same_output_different_seed_different_output():
    model = Linear()
    x = images_at(model, [0.2, 0.3])
    runs = [hsja(Oracle(model, max_queries=400), x, _labels(2), seed=s) for s in (7, 7, 8)]
    assert torch.equal(runs[0].x_adv, runs[1].x_adv) and torch.equal(runs[0].l2, runs[1].l2)
    assert runs[0].history.equals(runs[1].history)
    assert not torch.equal(runs[0].x_adv, runs[2].x_adv)


def test_already_misclassified_images_cost_one_query_at_distortion_zero():
    model = Linear()
    x = images_at(model, [-0.2, 0.2])  # the first is on the adversarial side already
    oracle = Oracle(model, max_queries=300)
    result = hsja(oracle, x, _labels(2), seed=0)
    assert result.l2[0].item() == 0 and result.success[0] and result.queries[0].item() == 1
    assert torch.equal(result.x_adv[0], x[0])
    assert result.queries[1].item() == 300 and 0.2 < result.l2[1].item() < 0.4


def test_initialisation_is_capped_when_no_adversarial_noise_exists():
    model = Constant()
    result = hsja(Oracle(model, max_queries=1000), torch.full((2, 1, 8, 8), 0.5), _labels(2), seed=0,
                  init_tries=30)
    assert result.queries.tolist() == [31, 31]  # one check, 30 draws
    assert not result.success.any() and torch.isinf(result.l2).all() and model.rows == 62


@pytest.mark.parametrize("n", [1, 3])
def test_random_oracle_at_n_1_ends_within_budget(n):
    model = Linear()
    x = images_at(model, [0.0, 0.05, 0.3])  # on, near and away from the boundary
    oracle = smoothed_oracle(Smooth(model, 2, 0.25, seed=0), n, max_queries=600)
    result = hsja(oracle, x, _labels(3), seed=0)
    assert (result.queries <= 600).all()
    # every forward pass is booked; a vote stops once settled, after n // 2 + 1 to n micro-decisions
    assert model.rows == result.forward_passes.sum().item()
    assert ((n // 2 + 1) * result.queries <= result.forward_passes).all()
    assert (result.forward_passes <= n * result.queries).all()
    found = result.success
    assert found.all() and torch.isfinite(result.l2[found]).all()
    assert torch.isfinite(result.x_adv).all() and result.x_adv.min() >= 0 and result.x_adv.max() <= 1


def test_every_loop_is_capped_when_nothing_but_the_first_noise_is_adversarial():
    calls = []

    def decide(xs: torch.Tensor, ys: torch.Tensor, images: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        calls.append(len(xs))  # call 1: the clean check; call 2: the noise
        return torch.full((len(xs),), len(calls) == 2), np.ones(len(xs), dtype=np.int64)

    oracle = Oracle(None, max_queries=10**6, decide=decide)
    x = torch.full((1, 1, 8, 8), 0.5)
    result = hsja(oracle, x, _labels(1), seed=0, num_iterations=3, init_num_evals=10, max_halvings=25)
    bisection = 10  # tolerance 1e-3 on [0, 1]
    probes = 10 + 14 + 17  # int(10 * sqrt(t)), t = 1, 2, 3; all answered "not adversarial"
    assert result.queries.item() == 1 + 1 + bisection + probes + 3 * 26 == sum(calls)
    noise = ImageGenerators(0, ("hsja",), [0]).draw(torch.tensor([0]), x.shape[1:], "uniform", x.dtype)
    assert torch.equal(result.x_adv, noise)  # the step search fails: HSJA goes on from the best adversarial
    assert result.l2.item() == pytest.approx((noise - x).norm().item())


def test_all_probes_adversarial_uses_the_mean_direction():
    model = Linear()
    b = images_at(model, [-0.5])  # deep on the adversarial side: every probe is adversarial
    oracle = Oracle(model, max_queries=100)
    oracle.start(b, _labels(1))
    v, one_label = normal_estimate(oracle, b, torch.tensor([0]), torch.tensor([40]),
                                   torch.tensor([0.01], dtype=torch.float64), ImageGenerators(0, ("probes",), [0]),
                                   fallback=torch.zeros_like(b))
    assert one_label.tolist() == [True]
    u = ImageGenerators(0, ("probes",), [0]).draw(torch.zeros(40, dtype=torch.long), b.shape[1:], "normal", b.dtype)
    u /= u.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    mean = u.mean(0, keepdim=True)
    assert torch.allclose(v, mean / mean.norm(), atol=1e-5)
    assert oracle.queries.item() == 40


def test_no_counted_probe_falls_back_without_nan():
    model = Linear()
    b = images_at(model, [0.0])
    oracle = Oracle(model, max_queries=1)
    oracle.start(b, _labels(1))
    oracle.is_adversarial(b, torch.tensor([0]))  # the budget is spent: no probe is answered
    fallback = torch.full_like(b, 2.0)
    v, one_label = normal_estimate(oracle, b, torch.tensor([0]), torch.tensor([10]),
                                   torch.tensor([0.1], dtype=torch.float64), ImageGenerators(0, ("probes",), [0]),
                                   fallback=fallback)
    assert torch.allclose(v, fallback / fallback.norm())
    assert one_label.tolist() == [False]  # no counted probe: no answer at all, not one label


def test_probes_across_the_boundary_get_two_labels():
    model = Linear()
    b = images_at(model, [0.0])
    oracle = Oracle(model, max_queries=100)
    oracle.start(b, _labels(1))
    _, one_label = normal_estimate(oracle, b, torch.tensor([0]), torch.tensor([40]),
                                   torch.tensor([0.1], dtype=torch.float64), ImageGenerators(0, ("probes",), [0]),
                                   fallback=torch.zeros_like(b))
    assert one_label.tolist() == [False]


def test_final_iterate_and_step_counts_are_reported():
    model = Linear()
    x = images_at(model, [0.3, 0.6])
    result = hsja(Oracle(model, max_queries=400), x, _labels(2), seed=0)
    steps, one_label = result.diagnostics["gradient_steps"], result.diagnostics["one_label_steps"]
    assert (steps >= 1).all() and (one_label <= steps).all()
    # The final boundary point is on the adversarial side of the hyperplane, within the bisection's tolerance
    # of it, and no closer to x than the best accepted query.
    final_l2 = (result.x_final - x).flatten(1).norm(dim=1).double()
    assert (final_l2 >= result.l2 - 1e-6).all()
    assert torch.allclose(final_l2, result.l2, rtol=0.05)


@pytest.mark.parametrize(("name", "value"), [("seed", 1.5), ("num_iterations", 0), ("gamma", -1.0),
                                             ("gamma", float("nan")), ("init_tries", True),
                                             ("max_halvings", -1), ("init_num_evals", 0)])
def test_bad_parameters_are_named(name, value):
    model = Linear()
    kwargs = {"seed": 0, name: value}
    with pytest.raises(ValueError, match=name):
        hsja(Oracle(model, max_queries=10), images_at(model, [0.2]), _labels(1), **kwargs)
