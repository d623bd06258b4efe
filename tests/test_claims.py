"""The claims scorecard: verdict rules on hand-made per-image measurements, and reading only the recorded profile."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from rs_repro import measurements, paths
from rs_repro.experiments import claims
from rs_repro.measurements import (
    AttackConfiguration,
    AttackGrid,
    BisectionSpread,
    BoundaryPush,
    Crossing,
    NormalAgreement,
    ThresholdCheck,
)

ATTACKS = ("HSJA", "SurFree", "RayS")


def paper_like(attack: str, model: str, sigma: float | None, n: int | None, pa: float | None, ns, pas) -> float:
    """A distortion scale shaped like the paper's Fig. 5: RS raises every attack's distortion but RayS's little,
    more at the smallest n and (a little) at the largest P_a, no gain from sigma; RandTrain like the standard
    model, below the undefended model against RayS; AdvTrain below RS."""
    if sigma is None:
        return 1.2 if model == "advtrain" else 1.0
    if model == "randtrain" and attack == "RayS":
        return 0.8
    small_n = n == min(ns)
    return (1.2 if attack == "RayS" else 3.0) * (1.3 if small_n else 1.0) * \
        ((1.1 if small_n else 1.02) if pa == max(pas) else 1.0)


def clear_accuracy(model: str, sigma: float | None, sigmas) -> float:
    """Accuracies like the paper's: the smallest sigma costs little, the largest much, RandTrain as much."""
    if sigma is None:
        return 0.85 if model == "advtrain" else 0.95
    return 0.93 if model == "standard" and sigma == min(sigmas) else 0.80


def _grid(scale=paper_like, *, reported=None, sigmas=(0.25, 0.5), ns=(10, 100), pas=(0.5, 0.8), images=30,
          noise=0.02, minimal=0.5, radius=0.01, accuracy=clear_accuracy, seed=0, attacks=ATTACKS,
          failures=()) -> AttackGrid:
    """A Fig. 5 record: image i's distortion under a configuration is base_i * scale(...) * (1 + noise * N(0, 1)).

    ``reported`` scales the reported distortions the same way (default: equal to the verified ones);
    ``minimal`` is the white-box minimal distortion and ``radius`` the certified radius as fractions of
    base_i; ``accuracy(model, sigma, sigmas)`` gives the clean accuracy of 5,000 tested images; ``failures``
    are (image, predicate of attack, model, sigma, n, pa) pairs where the verified distortion is inf.
    """
    rng = np.random.default_rng(seed)
    base = np.exp(0.3 * rng.standard_normal(images))

    def distortion(shape, attack, model, sigma, n, pa) -> list[float]:
        noisy = 1 + noise * rng.standard_normal(images)
        return (base * shape(attack, model, sigma, n, pa, ns, pas) * noisy).tolist()

    targets = [("standard", None, None, None)] + [("standard", s, n, p) for s in sigmas for n in ns for p in pas]
    targets += [("randtrain", max(sigmas), ns[0], p) for p in pas] + [("advtrain", None, None, None)]
    configurations = []
    for attack in attacks:
        for model, sigma, n, pa in targets:
            verified = distortion(scale, attack, model, sigma, n, pa)
            for image, predicate in failures:
                if predicate(attack, model, sigma, n, pa):
                    verified[image] = math.inf
            configurations.append(AttackConfiguration(
                attack=attack, target=f"{model} {sigma} {n} {pa}", model=model, sigma=sigma, n=n, pa=pa,
                correct=round(accuracy(model, sigma, sigmas) * 5000), tested=5000,
                reported_l2=verified if reported is None else distortion(reported, attack, model, sigma, n, pa),
                verified_l2=verified, at_level=[True] * images, level=[1.0] * images,
                radius=None if sigma is None else (base * radius).tolist(), forward_passes=1.0))
    return AttackGrid(dataset="digits", seed=seed, max_queries=100, votes=64, images=list(range(images)),
                      minimal_l2=(base * minimal).tolist(), configurations=configurations)


def opposite(attack, model, sigma, n, pa, ns, pas) -> float:
    """The paper's shape with n's effect reversed (larger distortions at the largest n)."""
    value = paper_like(attack, model, sigma, n, pa, ns, pas)
    return value / 1.3 ** 2 if sigma is not None and model == "standard" and n == min(ns) else value


def flat(attack, model, sigma, n, pa, ns, pas) -> float:
    """No effect of n, sigma or P_a: identical distortions up to the noise."""
    return 1.0 if sigma is None else 3.0


def test_fig5_judges_hold_on_a_paper_like_record():
    grid = _grid()
    for judge in (claims.judge_certificate_ratio, claims.judge_fewer_samples, claims.judge_rays_least_affected,
                  claims.judge_larger_sigma, claims.judge_randtrain, claims.judge_pa, claims.judge_rs_beats_advtrain):
        judged = judge(grid)
        assert judged.verdict == claims.HOLDS, (judge.__name__, judged.measured)
    judged = claims.judge_fewer_samples(grid)
    assert judged.protocol == claims.Judgement(judged.measured, claims.HOLDS)  # reported == verified here
    assert judged.measured.startswith("median paired difference n=10 − n=100 (pooled over σ, Pa): HSJA ")
    assert claims.judge_certificate_ratio(grid).protocol is None


def test_fewer_samples_holds_fails_or_is_undecided_by_its_interval():
    assert claims.judge_fewer_samples(_grid(opposite)).verdict == claims.FAILS
    undecided = claims.judge_fewer_samples(_grid(flat, noise=0.2))
    assert undecided.verdict == claims.UNDECIDED
    # every interval is shown, and the one of each attack contains 0
    for attack in ATTACKS:
        text = undecided.measured.split(f"{attack} ")[1].split(";")[0]
        low, high = (float(v) for v in text.split("[")[1].rstrip("]").split(", "))
        assert low <= 0 <= high
    # the paper's protocol is judged by the same rule on the reported distortions, shown beside
    judged = claims.judge_fewer_samples(_grid(reported=opposite))
    assert judged.verdict == claims.HOLDS and judged.protocol.verdict == claims.FAILS


def test_failures_count_as_larger_than_any_distortion_without_nan():
    # the attack fails (inf) on a third of the images at the smallest n: paired differences inf there, the
    # median stays finite and the claim holds; failures in both configurations pair to 0
    at_small = [(i, lambda a, m, s, n, p: n == 10) for i in range(10)]
    at_both = [(i, lambda a, m, s, n, p: n is not None) for i in range(10, 14)]
    grid = _grid(failures=at_small + at_both)
    judged = claims.judge_fewer_samples(grid)
    assert judged.verdict == claims.HOLDS and "nan" not in judged.measured
    for judge in (claims.judge_certificate_ratio, claims.judge_rays_least_affected, claims.judge_larger_sigma,
                  claims.judge_randtrain, claims.judge_pa, claims.judge_rs_beats_advtrain):
        assert "nan" not in judge(grid).measured
    # failures everywhere at the smallest n: the median difference is inf and the interval's bounds too
    everywhere = _grid(failures=[(i, lambda a, m, s, n, p: n == 10) for i in range(30)])
    judged = claims.judge_fewer_samples(everywhere)
    assert judged.verdict == claims.HOLDS and "inf [inf, inf]" in judged.measured


def test_same_record_same_intervals_and_the_seed_is_the_records():
    grid = _grid(flat, noise=0.2)
    assert claims.judge_fewer_samples(grid) == claims.judge_fewer_samples(_grid(flat, noise=0.2))
    reseeded = dataclasses.replace(grid, seed=1)
    assert claims.judge_fewer_samples(reseeded).measured != claims.judge_fewer_samples(grid).measured


def test_parameters_are_read_from_the_record():
    grid = _grid(ns=(7, 21), pas=(0.6, 0.9), sigmas=(0.1, 0.3))
    judged = claims.judge_fewer_samples(grid)
    assert judged.verdict == claims.HOLDS and "n=7 − n=21" in judged.measured
    judged = claims.judge_pa(grid)
    assert judged.verdict == claims.HOLDS and "Pa=0.9 / Pa=0.6" in judged.measured and "(n=7)" in judged.measured
    judged = claims.judge_larger_sigma(grid)
    assert judged.verdict == claims.HOLDS and "σ=0.3 against σ=0.1" in judged.measured
    assert "RS σ=0.1" in claims.judge_rs_beats_advtrain(grid).measured
    assert "RandTrain σ=0.3 against the standard model at σ=0.3" in claims.judge_randtrain(grid).measured
    # one n only: claims 2 and 6 are not testable, and say why
    single = _grid(ns=(10,))
    assert claims.judge_fewer_samples(single) == claims.Judgement(
        "one n only (10)", claims.NOT_TESTABLE, claims.Judgement("one n only (10)", claims.NOT_TESTABLE))
    assert claims.judge_pa(single).verdict == claims.NOT_TESTABLE


def test_other_fig5_rules_fail_on_records_shaped_against_them():
    # RayS as affected as the others
    same = claims.judge_rays_least_affected(_grid(lambda a, m, s, n, p, ns, pas: 1.0 if s is None else
                                                  3.0 + (a == "RayS")))
    assert same.verdict == claims.FAILS and "RayS minus the smallest other" in same.measured
    # a larger sigma with more distortion, and with no accuracy cost
    gain = claims.judge_larger_sigma(_grid(lambda a, m, s, n, p, ns, pas: 1.0 if s is None else 3.0 * (1 + (s == 0.5))))
    assert gain.verdict == claims.FAILS
    costless = claims.judge_larger_sigma(_grid(accuracy=lambda model, sigma, sigmas: 0.9))
    assert costless.verdict == claims.UNDECIDED and "accuracy difference" in costless.measured
    # Pa matters a lot
    assert claims.judge_pa(_grid(lambda a, m, s, n, p, ns, pas: 1.0 if s is None else 1 + p ** 3 * 5)).verdict == \
        claims.FAILS
    # AdvTrain as hard as RS
    assert claims.judge_rs_beats_advtrain(_grid(lambda a, m, s, n, p, ns, pas: 5.0 if m == "advtrain" else 3.0)
                                          ).verdict == claims.FAILS
    # RandTrain twice as robust as the standard model
    assert claims.judge_randtrain(_grid(lambda a, m, s, n, p, ns, pas: 6.0 if m == "randtrain" else 3.0)).verdict == \
        claims.FAILS
    # without AdvTrain's attacks, claim 10 is not testable; with fewer than 2 images, nothing is
    assert claims.judge_rs_beats_advtrain(_grid(attacks=("RayS",))).verdict == claims.NOT_TESTABLE
    assert claims.judge_rays_least_affected(_grid(attacks=("HSJA",))).verdict == claims.NOT_TESTABLE
    assert claims.judge_larger_sigma(_grid(images=1)).verdict == claims.NOT_TESTABLE


def test_certificate_ratio_rules():
    grid = _grid()
    judged = claims.judge_certificate_ratio(grid)
    assert judged.verdict == claims.HOLDS and "HSJA: standard σ=0.25 n=10 Pa=0.5 " in judged.measured
    assert "lowest 82.1 [77.4, 84.5] (RayS randtrain σ=0.5 n=10 Pa=0.8)" in judged.measured
    # attacks that reach the white-box minimal distortion have converged: not testable, with the reason
    converged = claims.judge_certificate_ratio(_grid(minimal=1.0))
    assert converged.verdict == claims.NOT_TESTABLE and "the attacks converged" in converged.measured
    # one attack converged: judged on the others, and the page says which
    partly = claims.judge_certificate_ratio(_grid(minimal=1.0, reported=lambda a, *rest: 2.0 if a == "HSJA" else
                                                  paper_like(a, *rest)))
    assert partly.verdict == claims.HOLDS and "converged, left out: SurFree, RayS" in partly.measured
    assert claims.judge_certificate_ratio(_grid(radius=0.5)).verdict == claims.FAILS
    # RandTrain against RayS (0.8 base) at 30 times the radius: its interval contains 30, the others are above
    assert claims.judge_certificate_ratio(_grid(radius=0.8 / 30, noise=0.1)).verdict == claims.UNDECIDED
    # a zero median radius (CERTIFY abstains) gives no ratio: left out, and not testable if none is left
    abstains = claims.judge_certificate_ratio(_grid(radius=0.0))
    assert abstains.verdict == claims.NOT_TESTABLE and "median radius 0, no ratio" in abstains.measured


def _push(crossings=None, pas=(0.5, 0.8), widths=(0.4, 0.1)) -> BoundaryPush:
    low, high = min(pas), max(pas)
    return BoundaryPush(dataset="digits", sigma=0.25, ns=[5, 50], pas=list(pas), num_images=20,
                        attack_distance_median=1.0, crossing_distance=[0.4] * 20,
                        distance_at_pa={5: {low: 0.3, high: 0.3 + widths[0]}, 50: {low: 0.4, high: 0.4 + widths[1]}},
                        crossings=crossings or [Crossing(0.25, 0.4, 1.6, 19, 20, 0, 4e-5),
                                                Crossing(0.1, 0.2, 2.0, 16, 20, 0, 0.006)])


def test_boundary_push_is_judged_at_every_sigma():
    judged = claims.judge_boundary_push(_push())
    assert judged.verdict == claims.HOLDS
    assert "σ=0.25: median 0.400 (1.60 σ) past x_a, beyond for 19 of 20" in judged.measured
    assert "σ=0.1: median 0.200 (2.00 σ)" in judged.measured and "no interval" in judged.measured
    # crossed before x_a at one sigma: the claim does not hold
    before = claims.judge_boundary_push(_push([Crossing(0.25, 0.4, 1.6, 19, 20, 0, 4e-5),
                                               Crossing(0.1, -0.1, -1.0, 1, 20, 0, 1.0)]))
    assert before.verdict == claims.FAILS and "2e-05 before" in before.measured
    # neither side significant at one sigma: undecided
    even = claims.judge_boundary_push(_push([Crossing(0.25, 0.4, 1.6, 19, 20, 0, 4e-5),
                                             Crossing(0.1, 0.0, 0.0, 9, 20, 2, 0.76)]))
    assert even.verdict == claims.UNDECIDED and "beyond for 9 of 18" in even.measured
    assert claims.judge_boundary_push(_push(widths=(0.1, 0.4))).verdict == claims.FAILS
    # the levels are the recorded ones, whatever they are (not the keys 0.5 and 0.8)
    judged = claims.judge_boundary_push(_push(pas=(0.6, 0.9)))
    assert judged.verdict == claims.HOLDS and "P 0.6 → 0.9 over 0.400 (n=5), 0.100 (n=50)" in judged.measured
    assert claims.judge_boundary_push(_push(pas=(0.8,))).verdict == claims.NOT_TESTABLE


def _spread(small, large) -> BisectionSpread:
    return BisectionSpread("digits", 0, 0.25, {10: float(np.mean(small)), 100: float(np.mean(large))},
                           {10: list(small), 100: list(large)})


def test_bisection_spread_and_eq5():
    wide, narrow = [0.3, 0.35, 0.28, 0.31], [0.1, 0.12, 0.09, 0.1]
    assert claims.judge_bisection_spread(_spread(wide, narrow)).verdict == claims.HOLDS
    assert claims.judge_bisection_spread(_spread(narrow, wide)).verdict == claims.FAILS
    undecided = claims.judge_bisection_spread(_spread([0.3, 0.1, 0.3, 0.1], [0.1, 0.3, 0.1, 0.3]))
    assert undecided.verdict == claims.UNDECIDED and "mean over 4 segments" in undecided.measured
    assert claims.judge_bisection_spread(_spread([0.3], [0.1])).verdict == claims.NOT_TESTABLE
    assert claims.judge_eq5(ThresholdCheck(0.8, {5: 0.8, 10: 0.687})).verdict == claims.FAILS
    judged = claims.judge_eq5(ThresholdCheck(0.8, {5: 0.8, 7: 0.8}))
    assert judged.verdict == claims.HOLDS and judged.measured.startswith("exact")


def _agreement(cosine_low=0.2, cosine_high=0.9, one_label=3, images=12) -> NormalAgreement:
    rng = np.random.default_rng(0)
    ratios = [0.25, 0.5, 1.0, 2.0]
    cosine = [(rng.uniform(-0.05, 0.05, images) + (cosine_low if r < 1 else cosine_high)).tolist() for r in ratios]
    return NormalAgreement(dataset="digits", seed=0, sigma=0.35, n=10, probes=100, ratios=ratios, cosine=cosine,
                           one_label=[[False] * images for _ in ratios], hsja_steps=[20] * images,
                           hsja_one_label_steps=[one_label] + [0] * (images - 1))


def test_normal_agreement_rules():
    judged = claims.judge_normal_agreement(_agreement())
    assert judged.verdict == claims.HOLDS and "3 of 240" in judged.measured and "δ/σ = 0.25: " in judged.measured
    # no one-label step seen: "sometimes" is not refuted, undecided
    assert claims.judge_normal_agreement(_agreement(one_label=0)).verdict == claims.UNDECIDED
    # poorly correlated at a probe radius above sigma: does not hold (low cosines below sigma do not count)
    assert claims.judge_normal_agreement(_agreement(cosine_high=0.2)).verdict == claims.FAILS
    assert claims.judge_normal_agreement(_agreement(images=1)).verdict == claims.NOT_TESTABLE


def test_records_round_trip_as_their_types(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "BUILD", tmp_path)
    for stem, record in (("fig5_attacks", _grid(images=4)), ("fig1_adversarial_probability", _push()),
                         ("theory", ThresholdCheck(0.8, {5: 0.8, 10: 0.687})),
                         ("fig3_binary_search", _spread([0.3, 0.2], [0.1, 0.1])), ("normal_vectors", _agreement())):
        measurements.record(stem, record)
        assert measurements.load(stem) == record
    with pytest.raises(ValueError, match="ThresholdCheck are not accepted for 'fig3_binary_search'"):
        measurements.record("fig3_binary_search", ThresholdCheck(0.8, {5: 0.8}))
    # a file of an older shape fails loudly, naming what differs
    measurements.path("theory").write_text('{"profile": null, "values": {"pa": 0.8}}', encoding="utf-8")
    with pytest.raises(ValueError, match="theory measurements has fields"):
        measurements.load("theory")


def test_scorecard_reads_only_the_asked_profile(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "BUILD", tmp_path)
    monkeypatch.setenv(measurements.PROFILE_ENV, "smoke")
    measurements.record("fig3_binary_search", _spread([0.3, 0.35, 0.28], [0.1, 0.12, 0.09]))
    # a Fig. 5 record with failures (inf) goes through JSON and is judged the same
    grid = _grid(failures=[(0, lambda a, m, s, n, p: n == 10)])
    measurements.record("fig5_attacks", grid)
    card = claims.scorecard("smoke").set_index("claim")
    assert len(card) == len(claims.CLAIMS) and card.loc[8, "verdict"] == claims.HOLDS
    assert card.loc[2, "verdict"] == claims.HOLDS
    assert card.loc[2, "measured"] == claims.judge_fewer_samples(grid).measured
    assert card.loc[2, "protocol"] == claims.HOLDS and card.loc[1, "protocol"] is None
    assert card.loc[9, "verdict"] == claims.NOT_MEASURED and card.loc[11, "verdict"] == claims.NOT_MEASURED
    assert (claims.scorecard("default").verdict == claims.NOT_MEASURED).all()
    table = claims.scorecard_markdown(claims.scorecard("smoke"))
    assert "[Fig. 3](fig3_binary_search.ipynb)" in table and "| paper's protocol |" in table
    assert "| **holds**: median paired difference" in table and "[normal vectors](normal_vectors.ipynb)" in table


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
    card = pd.DataFrame({"verdict": [claims.HOLDS, claims.FAILS, claims.FAILS, claims.UNDECIDED, claims.NOT_TESTABLE,
                                     claims.NOT_MEASURED]})
    assert claims.summary_sentence(card) == ("Of the 6 claims, 1 holds in this build, 2 do not hold, 1 is undecided, "
                                             "1 is not testable in this profile and 1 is not measured")
    card = pd.DataFrame({"verdict": [claims.HOLDS, claims.HOLDS, claims.FAILS]})
    assert claims.summary_sentence(card) == ("Of the 3 claims, 2 hold in this build, 1 does not hold, 0 are undecided, "
                                             "0 are not testable in this profile and 0 are not measured")


def test_each_profile_keeps_its_own_measurements_and_the_table_across_them(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "BUILD", tmp_path)
    for profile, large in (("smoke", [0.1, 0.12, 0.09]), ("fashion", [0.5, 0.6, 0.55])):
        monkeypatch.setenv(measurements.PROFILE_ENV, profile)
        measurements.record("fig3_binary_search", _spread([0.3, 0.35, 0.28], large))
    assert measurements.recorded_profiles() == ["fashion", "smoke"]
    assert measurements.load("fig3_binary_search", "smoke").per_segment[100] == [0.1, 0.12, 0.09]
    assert measurements.load("fig3_binary_search", "fashion").per_segment[100] == [0.5, 0.6, 0.55]
    assert measurements.load("fig3_binary_search", "default") is None
    table = claims.across_profiles(["smoke", "fashion"]).set_index(["claim", "profile"])
    assert table.loc[(8, "smoke"), "verdict"] == claims.HOLDS and table.loc[(8, "fashion"), "verdict"] == claims.FAILS
    assert table.loc[(1, "smoke"), "verdict"] == claims.NOT_MEASURED
    text = claims.across_markdown(claims.across_profiles(["smoke", "fashion"]))
    assert text.splitlines()[0] == "| # | smoke | fashion |"
    assert "| 8 | **holds** | **does not hold** |" in text
