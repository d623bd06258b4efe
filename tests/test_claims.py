"""The claims scorecard: verdict rules on hand-made measurements, and reading only the recorded profile."""

from __future__ import annotations

import pytest

from rs_repro import measurements, paths
from rs_repro.experiments import claims


def _row(attack, target, model, sigma, n, pa, accuracy, mean_l2):
    return {"attack": attack, "target": target, "model": model, "sigma": sigma, "n": n, "pa": pa,
            "accuracy": accuracy, "mean_l2": mean_l2}


def _fig5(paper_like: bool) -> dict:
    """A Fig. 5 summary shaped like the paper's (paper_like) or its opposite."""
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
    ratios = [{"attack": "HSJA", "target": "RS", "ratio of means": 45.0 if paper_like else 3.0}]
    return {"summary": rows, "ratios": ratios}


@pytest.mark.parametrize("paper_like", [True, False])
def test_fig5_judges_follow_their_rules(paper_like):
    values = _fig5(paper_like)
    assert claims.judge_certificate_ratio(values)[1] == claims._verdict(paper_like)
    measured, verdict = claims.judge_fewer_samples(values)
    assert verdict == claims._verdict(paper_like) and "n = 10, 100" in measured
    assert claims.judge_rays_least_affected(values)[1] == claims.HOLDS
    assert claims.judge_larger_sigma(values)[1] == claims.HOLDS
    assert claims.judge_rs_beats_advtrain(values)[1] == claims.HOLDS
    assert claims.judge_randtrain(values)[1] == claims.HOLDS
    assert claims.judge_pa(values)[1] == claims.HOLDS


def test_other_judges():
    fig1 = {"sigma": 0.25, "crossing_median": 0.4,
            "crossing_by_sigma": {"0.1": {"beyond": 1, "images": 20, "p_beyond": 1.0},
                                  "0.25": {"beyond": 19, "images": 20, "p_beyond": 4e-5}},
            "distance_at_pa": {"5": {"0.5": 0.3, "0.8": 0.7}, "50": {"0.5": 0.4, "0.8": 0.5}}}
    assert claims.judge_boundary_push(fig1)[1] == claims.HOLDS
    assert "19 of 20" in claims.judge_boundary_push(fig1)[0]
    assert claims.judge_boundary_push({**fig1, "sigma": 0.1})[1] == claims.FAILS
    assert claims.judge_bisection_spread({"spread": {"10": 0.3, "100": 0.1}})[1] == claims.HOLDS
    assert claims.judge_bisection_spread({"spread": {"10": 0.1, "100": 0.3}})[1] == claims.FAILS
    assert claims.judge_eq5({"pa": 0.8, "probability_at_threshold": {"5": 0.8, "10": 0.687}})[1] == claims.FAILS
    assert claims.judge_eq5({"pa": 0.8, "probability_at_threshold": {"5": 0.8, "7": 0.8}})[1] == claims.HOLDS


def test_scorecard_reads_only_the_asked_profile(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "BUILD", tmp_path)
    monkeypatch.setenv(measurements.PROFILE_ENV, "smoke")
    measurements.record("fig3_binary_search", {"spread": {"10": 0.3, "100": 0.1}})
    card = claims.scorecard("smoke").set_index("claim")
    assert len(card) == len(claims.CLAIMS) and card.loc[8, "verdict"] == claims.HOLDS
    assert card.loc[1, "verdict"] == claims.NOT_MEASURED and card.loc[9, "verdict"] == claims.NOT_MEASURED
    assert (claims.scorecard("default").verdict == claims.NOT_MEASURED).all()
    measurements.record("fig5_attacks", {"summary": _fig5(True)["summary"]})  # no ratios: the row says so
    assert "recorded no 'ratios'" in claims.scorecard("smoke").set_index("claim").loc[1, "measured"]


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
