"""The adaptive-attacks chapter: its grid, its rules, the attack rows on a linear model with known distances,
and the judges of the claims beyond the paper on records shaped for and against them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import in_run
from torch import nn

from rs_repro.chapters import common
from rs_repro.chapters.adaptive_attacks import compute
from rs_repro.claims import beyond, scorecard
from rs_repro.claims.kernel import NOT_TESTABLE
from rs_repro.pipeline import book
from rs_repro.report.measurements import AdaptiveConfiguration, AdaptiveGrid
from rs_repro.report.verdicts import FAILS, HOLDS

SMOKE = book.profile_values("adaptive_attacks", "smoke")


def test_the_grid_holds_every_attacker_and_defence_of_the_parameters():
    scales = {("gaussian", 0.35, n): 1.5 for n in SMOKE["ns"]}
    pairs = compute.grid(SMOKE, scales)
    per_vote = len(SMOKE["attacks"]) + len(SMOKE["repeats"]) * len(SMOKE["scaled_attacks"])
    per_vote += len(SMOKE["hash_attacks"]) * (1 + len(SMOKE["hash_repeats"])) + len(SMOKE["hidden_attacks"])
    repeated = len(SMOKE["repeats"]) * len(SMOKE["repeat_attacks"])  # at the smallest n only (repeat_ns [])
    assert len(pairs) == (per_vote * len(SMOKE["ns"]) + repeated) * len(SMOKE["sigmas"])
    assert SMOKE["repeat_ns"] == [] and {d.n for d, a in pairs if a.kind == "repeat"} == {min(SMOKE["ns"])}
    both = compute.grid({**SMOKE, "repeat_ns": SMOKE["ns"]}, scales)
    assert {d.n for d, a in both if a.kind == "repeat"} == set(SMOKE["ns"])
    with pytest.raises(ValueError, match="repeat_ns="):
        compute.check_parameters({**SMOKE, "repeat_ns": [max(SMOKE["ns"]) + 1]})
    assert len({(d.label, a.label) for d, a in pairs}) == len(pairs)
    assert len({(d.slug, a.slug) for d, a in pairs}) == len(pairs)
    kinds = {(d.noise, d.seeding, a.kind) for d, a in pairs}
    assert kinds == {("input", "fresh", "plain"), ("input", "fresh", "repeat"), ("input", "fresh", "scaled"),
                     ("input", "input-hash", "plain"), ("input", "input-hash", "jittered scaled"),
                     ("hidden-gaussian", "fresh", "plain")}
    hidden = [d for d, _ in pairs if d.noise != "input"]
    assert {d.noise_scale for d in hidden} == {1.5}
    scaled = [a for _, a in pairs if a.kind.endswith("scaled")]
    assert all(a.budget_factor == a.repeats for a in scaled)


def test_the_plan_trains_the_model_chooses_the_images_calibrates_then_attacks():
    stages = compute.plan(SMOKE)
    assert [stage.name for stage in stages] == ["models", "attacked images", "calibration", "attacks"]
    assert [u.id for u in stages[0].units({})] == ["model-standard"]
    assert [u.id for u in stages[1].units({})] == [common.IMAGES]
    calibration = stages[2].units({})
    assert [u.id for u in calibration] == [f"calibration-gaussian-sigma0.35-n{n}" for n in SMOKE["ns"]]
    done = {common.IMAGES: pd.DataFrame({"position": [3, 8], "idx": [3, 8]}),
            **{u.id: pd.DataFrame([{"law": "gaussian", "sigma": 0.35, "n": u.arguments["n"], "scale": 1.5}])
               for u in calibration}}
    assert compute.hidden_scales(done) == {("gaussian", 0.35, n): 1.5 for n in SMOKE["ns"]}
    attacks = stages[3].units(done)
    assert [u.id for u in attacks] == [u.id for u in compute.units(SMOKE, done[common.IMAGES],
                                                                     compute.hidden_scales(done))]
    assert all(u.arguments["index"] == [3, 8] for u in attacks if u.id.startswith("attack-"))


def test_every_unit_has_its_own_id_and_reads_its_attacks_code():
    units = compute.units(SMOKE, pd.DataFrame({"position": [3, 8], "idx": [3, 8]}),
                          {("gaussian", 0.35, n): 1.5 for n in SMOKE["ns"]})
    assert len({u.id for u in units}) == len(units)
    attack_units = [u for u in units if u.id.startswith("attack-")]
    assert {u.code[1] for u in attack_units} == {"rs_repro.attacks.hsja", "rs_repro.attacks.popskipjump"}
    accuracy = [u for u in units if u.id.startswith("accuracy-")]
    assert all(u.arguments["defence"]["seeding"] == "fresh" for u in accuracy)  # input-hash shares its twin's


@pytest.mark.parametrize("name, value", [("attacks", ["FGSM"]), ("repeats", [1]), ("hash_repeats", [0]),
                                         ("hidden_laws", ["uniform"]), ("level", 0.0), ("jitter", 0.0),
                                         ("scaled_attacks", ["HSJA", "Boundary"]), ("calibration_images", 0)])
def test_bad_parameters_are_named(name, value):
    with pytest.raises(ValueError, match=name):
        compute.check_parameters({**SMOKE, name: value})


def test_hidden_laws_need_an_attack():
    with pytest.raises(ValueError, match="hidden_attacks"):
        compute.check_parameters({**SMOKE, "hidden_attacks": []})


def _linear_network(seed: int = 0) -> nn.Module:
    """Logits (-s, s), s = w.x the signed distance to the hyperplane w.x = 0 (||w|| = 1), as a network whose
    first affine layer is the whole classifier (for the hidden noise too)."""
    w = torch.randn(64, generator=torch.Generator().manual_seed(seed))
    w /= w.norm()
    layer = nn.Linear(64, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.stack((-w, w)))
    return nn.Sequential(nn.Flatten(), layer).eval()


def _images_at(model: nn.Module, distances: list[float]) -> torch.Tensor:
    w = model[1].weight[1].detach()
    base = torch.full((64,), 0.5)
    base -= (base @ w) * w
    return torch.stack([base - d * w for d in distances]).view(-1, 1, 8, 8)


@pytest.mark.parametrize("defence, attacker", [
    (compute.Defence(0.25, 3), compute.Attacker("HSJA")),
    (compute.Defence(0.25, 3), compute.Attacker("HSJA", 3, 3)),
    (compute.Defence(0.25, 3), compute.Attacker("RayS", 3)),
    (compute.Defence(0.25, 3, seeding="input-hash"), compute.Attacker("HSJA", 3, 3, 0.01)),
    (compute.Defence(0.25, 3, "hidden-laplace", scale=0.3), compute.Attacker("PopSkipJump")),
])
def test_attack_rows_count_every_repeat_and_verify_beyond_the_hyperplane(defence, attacker):
    model = _linear_network()
    distances = [0.3, 0.5]
    x = _images_at(model, distances)
    y = torch.zeros(2, dtype=torch.long)
    kwargs = {"max_queries": 120, "level": 0.5, "verify_repeats": 20, "votes": 32, "confirm_votes": 128,
              "alpha": 0.05, "seed": 4}
    rows = compute.attack_rows(defence, attacker, model, 2, x, y, torch.tensor([7, 9]), [0, 1], **kwargs)
    budget = attacker.budget_factor * kwargs["max_queries"]
    assert rows.idx.tolist() == [7, 9] and (rows.queries <= budget).all()
    assert (rows.queries % attacker.repeats == 0).all()  # every row asked k times
    assert (rows.forward_passes <= rows.queries * defence.n).all() and (rows.forward_passes >= rows.queries).all()
    # eq. (4) at level 0.5 with odd n is the hyperplane itself for both noises (their laws are symmetric): a
    # point confirmed at 95% lies beyond it
    verified = rows.verified_l2.to_numpy()
    assert np.isfinite(verified).all() and (verified >= np.array(distances) - 1e-4).all(), verified
    assert set(rows.source) <= {"best query", "last iterate"}
    again = compute.attack_rows(defence, attacker, model, 2, x, y, torch.tensor([7, 9]), [0, 1], **kwargs)
    assert again.equals(rows)  # same seed, same rows


def _configuration(attack: str, values: np.ndarray, *, n: int = 10, repeats: int = 1, budget_factor: int = 1,
                   jitter: float = 0.0, noise: str = "input", seeding: str = "fresh") -> AdaptiveConfiguration:
    return AdaptiveConfiguration(attack=attack, repeats=repeats, budget_factor=budget_factor, jitter=jitter,
                                 noise=noise, seeding=seeding, sigma=0.35, scale=0.35, n=n, correct=90, tested=100,
                                 correct_images=[True] * 90 + [False] * 10, reported_l2=list(values * 0.5),
                                 verified_l2=list(values),
                                 queries=2000.0 * budget_factor, forward_passes=2000.0 * budget_factor * n)


def _grid(configurations: list[AdaptiveConfiguration], images: int = 40) -> AdaptiveGrid:
    return AdaptiveGrid(dataset="digits", seed=0, max_queries=2000, level=0.5, votes=32, alpha=0.05,
                        images=list(range(images)), configurations=configurations)


def _record(rng: np.random.Generator, images: int = 40) -> AdaptiveGrid:
    """Distortions shaped so that claims 13-16 hold and 12 and 17 do not: repeats at 9x the budget bring n = 10
    below n = 100; repeats at an equal budget cost; PopSkipJump beats HSJA; jitter beats input-hash seeding;
    hidden noise is weaker than input noise."""
    base = 1 + rng.random(images)
    plain = {n: base * (1.2 if n == 10 else 1.0) for n in (10, 100)}
    return _grid([
        _configuration("HSJA", plain[10]), _configuration("HSJA", plain[100], n=100),
        _configuration("HSJA", base * 0.8, repeats=9, budget_factor=9),
        _configuration("HSJA", base * 0.95, n=100, repeats=9, budget_factor=9),
        _configuration("HSJA", plain[10] + 0.5, repeats=3),
        _configuration("PopSkipJump", plain[10] - 0.3), _configuration("PopSkipJump", plain[100] - 0.3, n=100),
        _configuration("HSJA", plain[10] * 1.3, seeding="input-hash"),
        _configuration("HSJA", plain[10] * 0.9, seeding="input-hash", repeats=3, budget_factor=3, jitter=0.01),
        _configuration("HSJA", plain[10] - 0.3, noise="hidden-gaussian"),
    ], images)


def test_the_judges_beyond_the_paper_on_a_record_shaped_for_and_against_them():
    record = _record(np.random.default_rng(0))
    verdicts = {claim.number: claim.judge(record).verdict for claim in beyond.BEYOND}
    assert verdicts == {12: FAILS, 13: HOLDS, 14: HOLDS, 15: HOLDS, 16: HOLDS, 17: FAILS}
    judged = beyond.judge_popskipjump(record)
    assert judged.headline is not None and judged.headline.upper < 0
    assert "n=10" in judged.measured and "n=100" in judged.measured
    hidden = beyond.judge_hidden_noise(record)
    assert "0.900 vs 0.900" in hidden.measured  # the clean accuracies beside the verdict


def test_the_judges_say_what_a_record_lacks():
    rng = np.random.default_rng(1)
    plain_only = _grid([_configuration("HSJA", 1 + rng.random(40))])
    judged = {claim.number: claim.judge(plain_only) for claim in beyond.BEYOND}
    assert all(j.verdict == NOT_TESTABLE for j in judged.values()), judged
    one_image = dataclasses.replace(_record(rng, images=1))
    assert all(claim.judge(one_image).verdict == NOT_TESTABLE for claim in beyond.BEYOND)


def test_the_beyond_scorecard_reads_the_chapters_record(tmp_path, monkeypatch):
    from rs_repro.pipeline import paths
    from rs_repro.report import measurements

    monkeypatch.setattr(paths, "BUILD", tmp_path)
    in_run(monkeypatch, profile="smoke")
    measurements.record("adaptive_attacks", _record(np.random.default_rng(0)))
    assert measurements.load("adaptive_attacks", "smoke") == _record(np.random.default_rng(0))
    card = scorecard.scorecard("smoke", beyond.BEYOND)
    assert card.claim.tolist() == [12, 13, 14, 15, 16, 17] and card.verdict.tolist()[1] == HOLDS
    table = scorecard.scorecard_markdown(card, "literature", protocols=False)
    assert "claim (literature)" in table and "paper's protocol" not in table
    assert "paper's protocol" in scorecard.scorecard_markdown(scorecard.scorecard("smoke"))
