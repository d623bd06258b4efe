"""The contract every decision-based attack keeps, tested on each of them the same way: the budget is never
exceeded and every query is counted, the same seed gives the same points, a batched run equals image-by-image
runs (each image's draws, the attack's and the smoothed oracle's, come from generators keyed by the image), a
random oracle (one noisy vote per query) is safe, and every point returned is an image inside [0, 1]^d.
"""

from __future__ import annotations

import pytest
import torch
from linear import Linear, RowwiseLinear, images_at

from rs_repro.attacks import Oracle, smoothed_oracle
from rs_repro.attacks.hsja import hsja
from rs_repro.attacks.popskipjump import popskipjump
from rs_repro.attacks.rays import rays
from rs_repro.attacks.surfree import surfree
from rs_repro.smoothing import Smooth

ATTACKS = {"HSJA": hsja, "SurFree": surfree, "RayS": rays, "PopSkipJump": popskipjump}
DISTANCES = [0.1, 0.25, 0.4]


def _labels(b: int) -> torch.Tensor:
    return torch.zeros(b, dtype=torch.long)


def _inside_the_box(result) -> None:
    for name in ("x_adv", "x_adv_linf", "x_final"):
        x = getattr(result, name)
        if x is not None:
            assert torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1, name


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("budget", [1, 17, 250])
def test_the_budget_is_never_exceeded_and_every_query_is_counted(attack, budget):
    model = Linear()
    x = images_at(model, DISTANCES)
    result = ATTACKS[attack](Oracle(model, max_queries=budget), x, _labels(len(x)), seed=0)
    assert (result.queries <= budget).all(), result.queries
    assert model.rows == result.queries.sum().item() == len(result.history)  # no uncounted forward pass
    assert result.forward_passes.tolist() == result.queries.tolist()
    assert result.success.tolist() == result.history.groupby("image").adversarial.any().tolist()
    _inside_the_box(result)


@pytest.mark.parametrize("attack", ATTACKS)
def test_the_same_seed_gives_the_same_points(attack):
    model = Linear()
    x = images_at(model, DISTANCES)
    runs = [ATTACKS[attack](Oracle(model, max_queries=300), x, _labels(len(x)), seed=5) for _ in range(2)]
    assert torch.equal(runs[0].x_adv, runs[1].x_adv) and torch.equal(runs[0].l2, runs[1].l2)
    assert (runs[0].x_final is None) == (runs[1].x_final is None)
    if runs[0].x_final is not None:
        assert torch.equal(runs[0].x_final, runs[1].x_final)
    assert runs[0].history.equals(runs[1].history)


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_random_oracle_is_safe(attack):
    model = Linear()
    x = images_at(model, [0.0, 0.05, 0.3])  # on, near and away from the boundary: one noisy vote flips often
    oracle = smoothed_oracle(Smooth(model, 2, 0.25, seed=0), 1, max_queries=300)
    result = ATTACKS[attack](oracle, x, _labels(len(x)), seed=0)
    assert (result.queries <= 300).all()
    assert model.rows == result.forward_passes.sum().item() == result.queries.sum().item()
    found = result.success
    assert torch.isfinite(result.l2[found]).all() and torch.isinf(result.l2[~found]).all()
    _inside_the_box(result)


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("n", [None, 5], ids=["deterministic", "smoothed-n5"])
def test_a_batched_run_equals_image_by_image_runs(attack, n):
    # The row-by-row linear model answers a row the same whatever the batch (no matrix product); the images'
    # keys, not their places in the batch, seed their draws.
    model = RowwiseLinear(seed=1)
    x = images_at(model, [0.1, 0.25, 0.4])
    keys = [17, 3, 40]

    def oracle():
        if n is None:
            return Oracle(model, max_queries=200)
        return smoothed_oracle(Smooth(model, 2, 0.1), n, max_queries=200, seed=9)

    together = ATTACKS[attack](oracle(), x, _labels(3), seed=2, keys=keys)
    for b, key in enumerate(keys):
        alone = ATTACKS[attack](oracle(), x[b:b + 1], _labels(1), seed=2, keys=[key])
        assert torch.equal(alone.x_adv[0], together.x_adv[b]), (attack, key)
        assert alone.queries[0] == together.queries[b] and alone.forward_passes[0] == together.forward_passes[b]
        history = together.history[together.history.image == b].drop(columns="image").reset_index(drop=True)
        assert history.equals(alone.history.drop(columns="image")), (attack, key)
