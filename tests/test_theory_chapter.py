"""The theory chapter (rs_repro.chapters.theory): its plan, units and tables (compute), its record, page numbers
and figures (page), and its parameter rules. The equations themselves are tested in test_theory.py."""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from rs_repro import seeds, theory
from rs_repro.chapters.theory import compute, page
from rs_repro.pipeline import book, engine, paths
from rs_repro.report import measurements

#: Small values of every parameter: each unit runs in well under a second.
TINY = {"seed": 0, "sigmas": [0.05, 0.25], "alpha": 0.001, "certify_n": 1000, "dims": [8, 32],
        "curvature_sums": [-1.0, 1.0], "betas": [0.0, 0.5, 1.0, 2.0], "mc_samples": 64, "vote_reps": 64,
        "n_max": 12, "pas": [0.5, 0.8], "acceptance_ns": [10, 3], "pa_attack": 0.8, "figures_dir": "figures",
        "use_cache": True}
IDS = ["radius", "max_radius", "sorm-d8", "sorm-d32", "majority", "acceptance", "extra_distance"]


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    """Every unit of :data:`TINY` computed in this process, as the engine does (one thread)."""
    return {unit.id: engine.compute_unit(unit)[0] for unit in _units(TINY)}


def _units(values) -> list[engine.Unit]:
    """The units of the plan, its one stage."""
    (stage,) = compute.plan(values)
    return stage.units({})


def _keys(values) -> dict[str, str]:
    return {unit.id: unit.key() for unit in _units(values)}


# ---------------------------------------------------------------------------------------------- units
def test_units_have_distinct_stable_ids_one_sorm_unit_per_dimension():
    units = _units(TINY)
    assert [stage.name for stage in compute.plan(TINY)] == ["theory tables"]  # no data: one stage
    assert [u.id for u in units] == IDS
    assert _keys(TINY) == _keys(dict(TINY))
    default = _units(book.profile_values("theory", "default"))
    assert [u.id for u in default if u.id.startswith("sorm")] == ["sorm-d64", "sorm-d150528"]


def test_unit_arguments_hold_what_changes_the_numbers_and_nothing_else():
    before = _keys(TINY)
    assert _keys({**TINY, "figures_dir": "elsewhere", "use_cache": False}) == before
    changed = {
        "mc_samples": ["sorm-d8", "sorm-d32"],
        "seed": ["sorm-d8", "sorm-d32", "majority", "acceptance"],
        "pa_attack": ["acceptance", "extra_distance"],
        "vote_reps": ["majority", "acceptance"],
        "alpha": ["max_radius"],
        "n_max": ["majority", "extra_distance"],
        "certify_n": [],  # read by the page and the figure only
    }
    new_values = {"mc_samples": 65, "seed": 1, "pa_attack": 0.9, "vote_reps": 65, "alpha": 0.01, "n_max": 13,
                  "certify_n": 100}
    for name, expected in changed.items():
        after = _keys({**TINY, name: new_values[name]})
        assert [uid for uid in IDS if after[uid] != before[uid]] == expected, name
    after = _keys({**TINY, "sigmas": [0.1, 0.25]})  # sigmas[0] is the sphere test's sigma
    assert [uid for uid in IDS if after[uid] != before[uid]] == ["radius", "max_radius", "sorm-d8",
                                                                 "sorm-d32", "extra_distance"]


def test_a_unit_gives_the_same_table_twice_in_process(tables):
    for unit in _units(TINY):
        pd.testing.assert_frame_equal(engine.compute_unit(unit)[0], tables[unit.id])


def test_sorm_unit_draws_its_vectors_from_the_derived_seed(monkeypatch):
    drawn = []
    original = compute.noise_statistics

    def spy(d, samples, seed, *args):
        drawn.append((d, samples, seed))
        return original(d, samples, seed, *args)

    monkeypatch.setattr(compute, "noise_statistics", spy)
    compute.sorm_table(d=8, curvature_sums=[1.0], betas=[0.0], sigma=0.1, samples=16, seed=3)
    assert drawn == [(8, 16, seeds.derive_seed(3, "sorm", 8))]


def test_sorm_table_matches_a_direct_sphere_monte_carlo(tables):
    d, samples = 8, TINY["mc_samples"]
    g = torch.Generator().manual_seed(seeds.derive_seed(TINY["seed"], "sorm", d))
    noise = torch.randn(samples, d, generator=g).double().numpy()
    rows = tables["sorm-d8"]
    for s in TINY["curvature_sums"]:
        r = (d - 1) / abs(s)  # sphere radius in sigma units, centre on the first axis
        for beta in TINY["betas"]:
            centre = -(r - beta) if s < 0 else r + beta  # x at the origin, beta inside / outside the sphere
            dist = np.sqrt((noise[:, 0] - centre) ** 2 + (noise[:, 1:] ** 2).sum(1))
            expected = np.mean(dist > r) if s < 0 else np.mean(dist <= r)
            row = rows[(rows.S == s) & (rows.beta == beta)].iloc[0]
            assert row.mc == pytest.approx(expected, abs=1.5 / samples)  # float32 draws: a point may flip
            assert row.exact == pytest.approx(float(theory.pi0_sphere(beta * 0.05, r * 0.05, 0.05, d, s < 0)))
    assert rows.case.tolist()[0] == "convex (inside)" and set(rows.d) == {d}


def test_acceptance_draws_from_the_derived_seed(tables):
    g = seeds.generator(TINY["seed"], "acceptance")
    acc = tables["acceptance"]
    for n in TINY["acceptance_ns"]:
        k = theory.votes_needed(n, TINY["pa_attack"])
        for pi1 in compute.PI1_GRID:
            wrong = (torch.rand(TINY["vote_reps"], n, generator=g, dtype=torch.float64) < float(pi1)).sum(1)
            row = acc[(acc.n == n) & (acc.pi1 == float(pi1))].iloc[0]
            assert row.accept_sim == (wrong >= k).double().mean().item()


def test_majority_table_printed_threshold_is_exact_for_odd_n(tables):
    votes = tables["majority"]
    assert sorted(set(votes.n)) == [1, 2, 3, 5, 10, 11, 12]  # SIMULATED_NS up to n_max, and n_max
    odd = votes[votes.n % 2 == 1]
    np.testing.assert_allclose(odd.p_exact, odd.pa, rtol=1e-9)
    exact = votes[votes.rule == "exact"]
    assert (exact.p_exact >= exact.pa - 1e-9).all()


# ------------------------------------------------------------------------------------ record and page
def test_summarize_is_the_threshold_record():
    record = page.record({}, TINY)
    assert isinstance(record, measurements.ThresholdCheck)
    assert record.pa == 0.8 and list(record.probability_at_threshold) == [5, 11, 10, 50, 100]
    p = record.probability_at_threshold
    assert p[5] == pytest.approx(0.8) and p[11] == pytest.approx(0.8)
    assert p[10] == 0.6874380011953493  # the baseline's number
    assert p[10] < p[50] < p[100] < 0.8


def test_page_glues_every_name_the_prose_reads(tables):
    source = (paths.BOOK / "notebooks" / "theory.md").read_text(encoding="utf-8")
    texts = set(re.findall(r"\{glue:text\}`([A-Za-z0-9_]+)", source))
    figures = set(re.findall(r":::\{glue:figure\} (\w+)", source))
    glued = page.page(page.results(tables, TINY), TINY)
    assert set(glued) == texts
    assert figures == {"fig_radius", "fig_sorm", "fig_threshold", "fig_distance"}
    assert all(type(v) in (int, float, str) for v in glued.values())


def test_page_known_answers(tables):
    glued = page.page(tables, TINY)
    quantile = stats.norm.ppf(0.001 ** (1 / 1000))  # sigma * Phi^-1(alpha^(1/n)), n = certify_n
    assert glued["rmax_list"] == f"{0.05 * quantile:.2f} (σ = 0.05), {0.25 * quantile:.2f} (σ = 0.25)"
    assert glued["n_even"] == 10 and glued["n10"] == 10 and glued["d_big"] == 32 and glued["s_conv"] == -1.0
    assert glued["thr_printed"] == pytest.approx(0.6221349270230295)
    assert glued["p_at_printed"] == pytest.approx(0.6874380011953493)
    assert glued["thr_exact"] > glued["thr_printed"]
    assert glued["ratio_min"] == pytest.approx(glued["paper_lo"] / glued["extra_max"])
    assert glued["acc_half"].endswith("(n=3)") and glued["acc_at_thr"].startswith("0.21 (n=10)")
    assert glued["beta_top"] == 2.0 and glued["mc_samples"] == 64 and glued["vote_reps"] == 64
    sorm = page.sorm_rows(tables, TINY)
    assert glued["mc_max_z"] == pytest.approx(((sorm.mc - sorm.exact).abs() / sorm.mc_se).max())
    assert 0 < glued["sorm_cross"] < glued["exact_cross"] or glued["sorm_cross"] == 0.0


def test_boundary_shift_known_answers():
    assert page.boundary_shift(lambda b: stats.norm.cdf(1.0 - b)) == pytest.approx(1.0, abs=1e-9)
    assert page.boundary_shift(lambda b: stats.norm.cdf(-b)) == 0.0
    with pytest.raises(ValueError, match="beta_max"):
        page.boundary_shift(lambda b: 0.9)


def test_half_acceptance_is_where_the_rule_accepts_half():
    p = page.half_acceptance(10, 0.8)
    assert theory.accelerated_acceptance(p, 10, 0.8) == pytest.approx(0.5)
    assert page.half_acceptance(1, 0.8) == pytest.approx(0.5)


def test_plots_draw_every_panel(tables):
    for plot, panels in ((page.plot_radius, 2), (page.plot_sorm, 2 * len(TINY["dims"])), (page.plot_threshold, 3),
                         (page.plot_distance, 1)):
        fig = plot(tables, TINY)
        assert isinstance(fig, plt.Figure) and len(fig.axes) == panels
        plt.close(fig)


# ------------------------------------------------------------------------------------ parameter rules
@pytest.mark.parametrize("profile", ["default", "smoke"])
def test_profiles_pass_the_rules(profile):
    compute.check_parameters(book.profile_values("theory", profile))


@pytest.mark.parametrize(("name", "value"), [
    ("seed", -1),
    ("sigmas", []), ("sigmas", [0.1, 0.1]), ("sigmas", [0.0, 0.1]),
    ("alpha", 0.0), ("alpha", 1.0),
    ("certify_n", 0), ("mc_samples", 0), ("vote_reps", 0), ("n_max", 0),
    ("dims", []), ("dims", [1, 64]), ("dims", [64, 64]),
    ("curvature_sums", [1.0, 2.0]), ("curvature_sums", [-1.0]), ("curvature_sums", [-1.0, 0.0, 1.0]),
    ("curvature_sums", [-1.0, -1.0, 1.0]),
    ("betas", [0.5, 1.0]), ("betas", [-0.5, 0.0]), ("betas", [0.0, 0.0]), ("betas", [0.0, 7.0]),
    ("pas", []), ("pas", [0.0]), ("pas", [1.5]), ("pas", [0.8, 0.8]),
    ("acceptance_ns", []), ("acceptance_ns", [0]), ("acceptance_ns", [10, 10]),
    ("pa_attack", 0.5), ("pa_attack", 1.0),
])
def test_check_parameters_rejects_naming_the_parameter(name, value):
    with pytest.raises(ValueError, match=rf"^{name}={re.escape(repr(value))} is not accepted; expected"):
        compute.check_parameters({**TINY, name: value})


def test_the_runner_applies_the_rules_before_running():
    with pytest.raises(book.ChapterError, match=r"chapter 'theory': curvature_sums=\[1.0\] is not accepted"):
        book.check_chapter("theory", {**TINY, "curvature_sums": [1.0]})
