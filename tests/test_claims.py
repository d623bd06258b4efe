"""The claims scorecard: verdict rules on hand-made measurements, and reading only the recorded profile."""

from __future__ import annotations

import pytest

from rs_repro import measurements, paths
from rs_repro.experiments import claims
from rs_repro.measurements import (
    AttackConfiguration,
    AttackGrid,
    BisectionSpread,
    BoundaryPush,
    CertificateRatio,
    Crossing,
    ThresholdCheck,
)


def _row(attack, target, model, sigma, n, pa, accuracy, mean_l2):
    return AttackConfiguration(attack=attack, target=target, model=model, sigma=sigma, n=n, pa=pa, accuracy=accuracy,
                               mean_l2=mean_l2, median_l2=mean_l2, success=1.0, verified=1.0, images=10,
                               forward_passes=1.0)


def _fig5(paper_like: bool, with_ratios: bool = True) -> AttackGrid:
    """A Fig. 5 record shaped like the paper's (paper_like) or its opposite."""
    rows = []
    for attack, base in (("HSJA", 1.0), ("SurFree", 1.0), ("RayS", 1.0)):
        rows.append(_row(attack, "standard", "standard", None, None, None, 0.95, base))
        rows.append(_row(attack, "advtrain", "advtrain", None, None, None, 0.85, 1.2))
        boost = 1.2 if attack == "RayS" else 3.0
        for sigma, accuracy in ((0.25, 0.93), (0.5, 0.85)):
            for n, factor in ((10, 1.2), (100, 1.0)):
                for pa, pa_factor in ((0.5, 1.0), (0.8, 1.1 if n == 10 else 1.02)):
                    grow = factor if paper_like else 1 / factor
                    rows.append(_row(attack, f"RS {sigma} {n} {pa}", "standard", sigma, n, pa, accuracy,
                                     base * boost * grow * pa_factor))
        rows.append(_row(attack, "randtrain", "randtrain", 0.5, 10, 0.8, 0.86,
                         (0.9 if attack == "RayS" else 3.3) * base))
    ratio = 45.0 if paper_like else 3.0
    ratios = [CertificateRatio("HSJA", "RS", 1.0, 1.0 / ratio, ratio, ratio / 2)] if with_ratios else []
    return AttackGrid(dataset="digits", num_images=10, max_queries=100, configurations=rows, ratios=ratios)


@pytest.mark.parametrize("paper_like", [True, False])
def test_fig5_judges_follow_their_rules(paper_like):
    grid = _fig5(paper_like)
    assert claims.judge_certificate_ratio(grid)[1] == claims._verdict(paper_like)
    measured, verdict = claims.judge_fewer_samples(grid)
    assert verdict == claims._verdict(paper_like) and "n = 10, 100" in measured
    assert claims.judge_rays_least_affected(grid)[1] == claims.HOLDS
    assert claims.judge_larger_sigma(grid)[1] == claims.HOLDS
    assert claims.judge_rs_beats_advtrain(grid)[1] == claims.HOLDS
    assert claims.judge_randtrain(grid)[1] == claims.HOLDS
    assert claims.judge_pa(grid)[1] == claims.HOLDS
    assert claims.judge_certificate_ratio(_fig5(paper_like, with_ratios=False))[1] == claims.NOT_MEASURED


def _push(pas=(0.5, 0.8), sigma=0.25) -> BoundaryPush:
    low, high = min(pas), max(pas)
    return BoundaryPush(dataset="digits", sigma=sigma, ns=[5, 50], pas=list(pas), num_images=20,
                        attack_distance_median=1.0, crossing_distance=[0.4] * 20,
                        distance_at_pa={5: {low: 0.3, high: 0.7}, 50: {low: 0.4, high: 0.5}},
                        crossings=[Crossing(0.25, 0.4, 1.6, 19, 20, 0, 4e-5), Crossing(0.1, -0.1, -1.0, 1, 20, 0, 1.0)])


def test_other_judges():
    assert claims.judge_boundary_push(_push())[1] == claims.HOLDS
    assert "19 of 20" in claims.judge_boundary_push(_push())[0]
    assert claims.judge_boundary_push(_push(sigma=0.1))[1] == claims.FAILS
    # the levels are the recorded ones, whatever they are (not the keys 0.5 and 0.8)
    measured, verdict = claims.judge_boundary_push(_push(pas=(0.6, 0.9)))
    assert verdict == claims.HOLDS and "P 0.6 → 0.9 over 0.400 (n=5), 0.100 (n=50)" in measured
    assert claims.judge_boundary_push(_push(pas=(0.8,)))[1] == claims.NOT_MEASURED
    spread = {"dataset": "digits", "sigma": 0.25}
    assert claims.judge_bisection_spread(BisectionSpread(**spread, spread={10: 0.3, 100: 0.1}))[1] == claims.HOLDS
    assert claims.judge_bisection_spread(BisectionSpread(**spread, spread={10: 0.1, 100: 0.3}))[1] == claims.FAILS
    assert claims.judge_eq5(ThresholdCheck(0.8, {5: 0.8, 10: 0.687}))[1] == claims.FAILS
    assert claims.judge_eq5(ThresholdCheck(0.8, {5: 0.8, 7: 0.8}))[1] == claims.HOLDS


def test_records_round_trip_as_their_types(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "BUILD", tmp_path)
    for stem, record in (("fig5_attacks", _fig5(True)), ("fig1_adversarial_probability", _push()),
                         ("theory", ThresholdCheck(0.8, {5: 0.8, 10: 0.687})),
                         ("fig3_binary_search", BisectionSpread("digits", 0.25, {10: 0.3}))):
        measurements.record(stem, record)
        assert measurements.load(stem) == record
    with pytest.raises(ValueError, match="ThresholdCheck are not accepted for 'fig3_binary_search'"):
        measurements.record("fig3_binary_search", ThresholdCheck(0.8, {5: 0.8}))
    with pytest.raises(ValueError, match="stem='fig2_slices' is not accepted"):
        measurements.record("fig2_slices", ThresholdCheck(0.8, {5: 0.8}))
    # a file of an older shape fails loudly, naming what differs
    measurements.path("theory").write_text('{"profile": null, "values": {"pa": 0.8}}', encoding="utf-8")
    with pytest.raises(ValueError, match="theory measurements has fields"):
        measurements.load("theory")


def test_scorecard_reads_only_the_asked_profile(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "BUILD", tmp_path)
    monkeypatch.setenv(measurements.PROFILE_ENV, "smoke")
    measurements.record("fig3_binary_search", BisectionSpread("digits", 0.25, {10: 0.3, 100: 0.1}))
    card = claims.scorecard("smoke").set_index("claim")
    assert len(card) == len(claims.CLAIMS) and card.loc[8, "verdict"] == claims.HOLDS
    assert card.loc[1, "verdict"] == claims.NOT_MEASURED and card.loc[9, "verdict"] == claims.NOT_MEASURED
    assert (claims.scorecard("default").verdict == claims.NOT_MEASURED).all()
    assert "[Fig. 3](fig3_binary_search.ipynb)" in claims.scorecard_markdown(claims.scorecard("smoke"))


def test_make_book_refreshes_claims_after_any_chapter(monkeypatch):
    from rs_repro import book

    ran = []
    engines = []
    monkeypatch.setattr(book, "run_chapter", lambda stem, profile, timeout, workers, scheduler:
                        ran.append(stem) or engines.append((workers, scheduler)))
    monkeypatch.setattr(book, "build_html", lambda strict: "index.html")
    monkeypatch.setattr(book, "stale", lambda profile: ["fig3_binary_search"])
    book.make_book("smoke", workers=2)
    assert ran == ["fig3_binary_search", "claims"] and engines == [(2, None), (2, None)]
    ran.clear()
    monkeypatch.setattr(book, "stale", lambda profile: [])
    book.make_book("smoke")
    assert ran == []


def test_summary_sentence_agrees_with_its_counts():
    import pandas as pd

    card = pd.DataFrame({"verdict": [claims.HOLDS, claims.FAILS, claims.FAILS, claims.NOT_MEASURED]})
    assert claims.summary_sentence(card) == ("Of the 4 claims, 1 holds in this build, 2 do not hold and 1 is not "
                                             "measured")
    card = pd.DataFrame({"verdict": [claims.HOLDS, claims.HOLDS, claims.FAILS]})
    assert claims.summary_sentence(card) == "Of the 3 claims, 2 hold in this build, 1 does not hold and 0 are not measured"
