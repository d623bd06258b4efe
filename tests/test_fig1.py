"""Fig. 1 chapter: the white-box minimal-l2 attack and the scan along the ray, on a linear classifier; the
chapter's parameter checks, units, record and page on a tiny digits run.

A linear classifier has a known minimal l2 perturbation (the distance to its hyperplane, or the water-filling
solution when the pixel box binds), and smoothing leaves it unchanged (ICASSP 2022, section 3.1): along the
normal of its hyperplane a micro-decision is wrong with probability Phi(t / sigma), so the vote of n of them
follows an exact binomial law.
"""

from __future__ import annotations

import math
import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import computed_plan_units
from linear import Linear, images_at
from scipy import optimize, stats

from rs_repro import data, models, seeds
from rs_repro.attacks import MinimalAdversarial, minimal_l2
from rs_repro.chapters import common
from rs_repro.chapters.fig1_adversarial_probability import compute, page
from rs_repro.pipeline import book, engine, paths
from rs_repro.report import measurements
from rs_repro.smoothing import Smooth

DISTANCES = [0.1, 0.3, 0.5, 1.0]
SIGMA = 0.2
NS = [5, 10, 50]


@pytest.fixture(scope="module")
def attacked():
    model = Linear(0)
    x = images_at(model, DISTANCES)
    y = torch.zeros(len(DISTANCES), dtype=torch.long)
    return model, x, y, minimal_l2(model, x, y, tol=1e-5)


def test_x_a_is_on_the_hyperplane_at_the_exact_distance(attacked):
    model, x, _, result = attacked
    assert result.success.all()
    assert np.allclose(result.distance.numpy(), DISTANCES, atol=2e-5)
    s = model.signed_distance(result.x_a)
    assert ((s > 0) & (s <= 2e-5)).all()  # on the boundary, adversarial end kept (class 1 is s > 0)
    u = compute.directions(x, result).flatten(1)
    assert torch.allclose(u @ model.w, torch.ones(len(DISTANCES)), atol=1e-6)  # along the normal
    assert (result.x_a >= 0).all() and (result.x_a <= 1).all()


def _water_filling(model: Linear, x: torch.Tensor) -> float:
    """Exact minimal l2 perturbation to w.x' + b = 0 with x' in [0, 1]^d: delta_i = clip(lam w_i, -x_i, 1 - x_i)."""
    w, x = model.w.double(), x.flatten().double()

    def gap(lam: float) -> float:
        return float(w @ (x + torch.clamp(lam * w, -x, 1 - x)) + model.b)

    lam = optimize.brentq(gap, 0.0, 100.0, xtol=1e-12)
    return float(torch.clamp(lam * w, -x, 1 - x).norm())


def test_the_pixel_box_is_respected_and_the_constrained_minimum_reached():
    model = Linear(3)
    x = torch.full((64,), 0.5)
    x[model.w < -0.1] = 0.0  # these pixels would have to decrease: the box stops them
    b = -float(x @ model.w) - 0.6
    model.b = b
    x = x.view(1, 1, 8, 8)
    exact = _water_filling(model, x)
    assert exact > 0.6 + 1e-3  # the box binds: the unconstrained distance is 0.6
    result = minimal_l2(model, x, torch.zeros(1, dtype=torch.long), steps=300, tol=1e-5)
    assert (result.x_a >= 0).all() and (result.x_a <= 1).all() and (result.x_adv >= 0).all()
    assert model.signed_distance(result.x_a).item() > 0
    assert exact * (1 - 1e-4) <= result.distance.item() <= exact * 1.01


def test_attack_is_deterministic(attacked):
    model, x, y, result = attacked
    again = minimal_l2(model, x, y, tol=1e-5)
    assert torch.equal(again.x_a, result.x_a) and torch.equal(again.distance, result.distance)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"steps": 0}, "steps"), ({"gamma": 1.0}, "gamma"), ({"tol": 0.0}, "tol"), ({"step_size": -1.0}, "step_size"),
    ({"init_norm": 0}, "init_norm"), ({"bisection_steps": 2.5}, "bisection_steps"),
])
def test_attack_rejects_bad_parameters(attacked, kwargs, match):
    model, x, y, _ = attacked
    with pytest.raises(ValueError, match=match):
        minimal_l2(model, x, y, **kwargs)


def test_attack_rejects_bad_inputs(attacked):
    model, x, y, _ = attacked
    with pytest.raises(ValueError, match="pixel box"):
        minimal_l2(model, x + 1.0, y)
    with pytest.raises(ValueError, match="int64"):
        minimal_l2(model, x, y.int())
    with pytest.raises(ValueError, match="correctly classified"):
        minimal_l2(model, x, torch.ones_like(y))


def test_a_failed_attack_defines_no_ray(attacked):
    x = attacked[1]
    failed = MinimalAdversarial(x_adv=x, x_a=x, distance=torch.full((len(x),), math.inf),
                                success=torch.tensor([True, False, True, True]))
    with pytest.raises(ValueError, match=r"images \[1\]"):
        compute.directions(x, failed)


def _exact_wrong(t: np.ndarray, n: int) -> np.ndarray:
    """P[g_{sigma,n} != 0] on the normal of a hyperplane: more than n/2 of n draws in class 1, and half of the
    ties (even n: a tie is broken at random)."""
    q = stats.norm.cdf(t / SIGMA)
    tie = 0.5 * stats.binom.pmf(n // 2, n, q) if n % 2 == 0 else 0.0
    return stats.binom.sf(n // 2, n, q) + tie


@pytest.fixture(scope="module")
def scanned(attacked):
    model, x, _, result = attacked
    u = compute.directions(x, result)
    ts = np.linspace(-0.4, 0.4, 17).tolist()
    smooth = Smooth(model, 2, SIGMA)
    return compute.scan(smooth, result.x_a[2:3], u[2:3], 0, ts, NS, 4000, generator=seeds.generator(0, "test"), alpha=0.01)


def test_probability_along_the_ray_matches_the_binomial_law(scanned):
    votes = scanned.votes
    exact = np.concatenate([_exact_wrong(part.t.to_numpy(), n) for n, part in votes.groupby("n", sort=False)])
    votes = pd.concat([part for _, part in votes.groupby("n", sort=False)])
    se = np.sqrt(exact * (1 - exact) / votes.votes)
    assert (np.abs(votes.p - exact) <= 4.5 * se + 1.5 / votes.votes).all()
    assert votes.groupby("n").votes.first().to_dict() == {5: 800, 10: 400, 50: 80}
    assert ((votes.lower <= votes.p) & (votes.p <= votes.upper)).all()
    for _, part in votes.groupby("n"):  # increasing in t, up to Monte Carlo noise
        p = part.sort_values("t").p.to_numpy()
        assert (np.maximum.accumulate(p) - p <= 0.1).all() and p[0] < 0.05 and p[-1] > 0.95


def test_attack_table_and_correct_images(attacked):
    model, x, y, result = attacked
    table = compute.attack_table(x, y, torch.arange(10, 14), result, model)
    assert table["index"].tolist() == [10, 11, 12, 13] and (table.label_a == 1).all()
    assert ((table.margin_a >= 0) & (table.margin_a <= 1e-4)).all()  # logits are -s and s, s <= tol
    assert np.allclose(table.distance, DISTANCES, atol=2e-5) and (table.box_exit > 0.1).all()
    labels = torch.tensor([0, 1, 0, 0])
    assert common.correct_images(model, x, labels, 2).tolist() == [0, 2]


def test_smoothing_leaves_the_linear_boundary_in_place(scanned):
    profile = scanned.profile
    exact = stats.norm.cdf(profile.t / SIGMA)  # class 1 = the only other class
    assert np.allclose(profile.p_other, exact, atol=4.5 * math.sqrt(0.25 / 4000))
    assert np.allclose(profile.p_label + profile.p_other, 1.0)
    assert abs(page.crossing(profile)) < 0.02


def test_distances_at_pa_match_the_exact_law_and_grow_with_pa(scanned):
    found = page.distances_at(scanned.votes, [0.5, 0.8]).set_index(["n", "pa"]).distance
    width = {}
    for n in NS:
        for pa in (0.5, 0.8):
            exact = optimize.brentq(lambda t, n=n, pa=pa: _exact_wrong(np.array([t]), n)[0] - pa, -0.4, 0.4)
            assert abs(found[n, pa] - exact) < 0.03, (n, pa, found[n, pa], exact)
        assert found[n, 0.5] < found[n, 0.8]
        width[n] = found[n, 0.8] - found[n, 0.5]
    assert width[5] > width[50]  # the transition is wider for small n (the paper's Fig. 1)


def test_scan_is_deterministic_by_seed(attacked):
    model, x, _, result = attacked
    u = compute.directions(x, result)
    smooth = Smooth(model, 2, SIGMA)

    def run(seed):
        return compute.scan(smooth, result.x_a[:1], u[:1], 0, [-0.1, 0.0, 0.1], [5, 10], 200,
                       generator=seeds.generator(seed, "test"))

    first, again, other = run(1), run(1), run(2)
    assert first.votes.equals(again.votes) and first.profile.equals(again.profile)
    assert not first.votes.equals(other.votes)


@pytest.mark.parametrize(("ts", "ns", "pool", "alpha", "match"), [
    ([0.0, 0.0], [5], 10, 0.05, "ts"), ([0.1], [5], 10, 0.05, "ts"), ([0.0, 1.0], [], 10, 0.05, "ns"),
    ([0.0, 1.0], [0], 10, 0.05, "ns"), ([0.0, 1.0], [5, 10], 12, 0.05, "pool"), ([0.0, 1.0], [50], 20, 0.05, "pool"),
    ([0.0, 1.0], [5], 10, 1.0, "alpha"),
])
def test_scan_rejects_bad_parameters(attacked, ts, ns, pool, alpha, match):
    model, x, _, result = attacked
    with pytest.raises(ValueError, match=match):
        compute.scan(Smooth(model, 2, SIGMA), result.x_a[:1], compute.directions(x, result)[:1], 0, ts, ns, pool,
                generator=seeds.generator(0), alpha=alpha)


def test_first_reach_interpolates_and_censors():
    t = [0.0, 1.0, 2.0]
    assert page.first_reach(t, [0.0, 0.4, 1.0], 0.5) == pytest.approx(1 + 0.1 / 0.6)
    assert math.isnan(page.first_reach(t, [0.6, 0.7, 0.9], 0.5))  # reached before the scan
    assert math.isnan(page.first_reach(t, [0.0, 0.1, 0.2], 0.5))  # never reached
    with pytest.raises(ValueError, match="pas"):
        page.distances_at(pd.DataFrame({"n": [5], "t": [0.0], "p": [0.0]}), [0.0])


def test_crossing_summary_counts_and_tests_the_sign():
    table = pd.DataFrame({"sigma": [0.1] * 5 + [0.2] * 2, "crossing": [0.01, 0.02, -0.01, 0.03, np.nan, 0.1, 0.3]})
    summary = page.crossing_summary(table).set_index("sigma")
    assert summary.loc[0.1, ["images", "censored", "beyond"]].tolist() == [5, 1, 3]
    assert summary.loc[0.1, "median"] == pytest.approx(0.015)
    assert summary.loc[0.2, "median_sigma"] == pytest.approx(1.0)
    assert summary.loc[0.1, "p_beyond"] == pytest.approx(stats.binom.sf(2, 4, 0.5))


def test_box_exit_is_where_the_ray_leaves_the_box():
    x_a = torch.tensor([0.5, 0.2, 0.9]).view(1, 1, 1, 3)
    u = torch.tensor([0.6, -0.8, 0.0]).view(1, 1, 1, 3)
    assert compute.box_exit(x_a, u).item() == pytest.approx(0.25)  # the second pixel reaches 0 first


# ---------------------------------------------------------------------------------------------------
# The chapter: parameter checks, units, record and page
# ---------------------------------------------------------------------------------------------------

STEM = "fig1_adversarial_probability"


def _values(**changes):
    """The smoke profile cut down to seconds: 3 images, 5 points per ray, small pools, one further sigma."""
    values = book.profile_values(STEM, "smoke")
    values.update(num_images=3, points=5, pool=50, panel_points=6, panel_pool=100, sweep_sigmas=[0.1],
                  sweep_points=3, sweep_pool=20, attack_steps=20, **changes)
    compute.check_parameters(values)
    return values


@pytest.mark.parametrize(("changes", "message"), [
    ({"sweep_sigmas": [0.05, 0.35]},
     "sweep_sigmas=[0.05, 0.35] is not accepted; expected noise levels other than the main sigma = 0.35"),
    ({"sweep_sigmas": [0.05, 0.05]}, "sweep_sigmas=[0.05, 0.05] is not accepted; expected a non-empty list of distinct noise levels"),
    ({"panel_image": 3}, "panel_image=3 is not accepted; expected a position in [0, num_images) = [0, 3)"),
    ({"panel_image": -1}, "panel_image=-1 is not accepted"),
    ({"pool": 52}, "pool=52 is not accepted; expected an integer >= max(ns) = 50 and a multiple of gcd(ns) = 5"),
    ({"panel_pool": 45}, "panel_pool=45 is not accepted; expected an integer >= max(ns) = 50"),
    ({"ns": []}, "ns=[] is not accepted"), ({"ns": [0, 5]}, "ns=[0, 5] is not accepted"),
    ({"pas": [0.0]}, "pas=[0.0] is not accepted"), ({"alpha": 1.0}, "alpha=1.0 is not accepted"),
    ({"t_stop": -0.5}, "t_stop=-0.5 is not accepted; expected a distance > t_start = -0.5"),
    ({"points": 1}, "points=1 is not accepted"), ({"sweep_points": 1}, "sweep_points=1 is not accepted"),
    ({"sigma": 0.0}, "sigma=0.0 is not accepted"), ({"num_images": 0}, "num_images=0 is not accepted"),
    ({"num_candidates": -1}, "num_candidates=-1 is not accepted"), ({"sweep_span": 0.0}, "sweep_span=0.0"),
    ({"sweep_pool": 0}, "sweep_pool=0"), ({"attack_steps": 0}, "attack_steps=0"),
    ({"attack_init_norm": 0.0}, "attack_init_norm=0.0"), ({"batch_size": 0}, "batch_size=0"),
    ({"device": "tpu"}, "device='tpu' is not accepted"), ({"dataset": "svhn"}, "dataset='svhn' is not accepted"),
    ({"dataset": "imagenet"}, "standard_weights='' is not accepted; expected a local ResNet50 weights file"),
])
def test_check_parameters_names_the_broken_rule(changes, message):
    values = {**book.profile_values(STEM, "smoke"), **changes}
    with pytest.raises(ValueError, match=re.escape(message)):
        compute.check_parameters(values)


def test_bad_parameters_stop_the_chapter_before_it_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    with pytest.raises(book.ChapterError, match=re.escape(f"chapter '{STEM}': sweep_sigmas=[0.35] is not accepted")):
        book.run_chapter(STEM, "smoke", {"sweep_sigmas": [0.35]})
    assert not (tmp_path / "runs").exists()


def test_plan_is_pure(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the plan read data or loaded a model")

    values = _values()
    for module, name in ((compute, "load_model"), (models, "load_model"), (data, "load_dataset")):
        monkeypatch.setattr(module, name, refuse)
    plan = compute.plan(values)
    assert [stage.name for stage in plan] == ["models", "white-box attack", "rays"]
    assert [u.id for u in plan[0].units({}) + plan[1].units({})] == ["model-standard", "attack"]
    rays = plan[2].units({"attack": pd.DataFrame({"unit": [0, 1], "index": [4, 9]})})
    assert [u.id for u in rays] == ["scan-image0", "scan-image1", "panel-image0", "sweep-sigma0.1-image0",
                                    "sweep-sigma0.1-image1"]


def test_units_have_stable_distinct_ids_and_the_arguments_that_change_numbers():
    values = _values()
    units = computed_plan_units(STEM, values)
    ids = [u.id for u in units]
    assert ids == ["model-standard", "attack", "scan-image0", "scan-image1", "scan-image2", "panel-image0",
                   "sweep-sigma0.1-image0", "sweep-sigma0.1-image1", "sweep-sigma0.1-image2"]
    assert [u.key() for u in computed_plan_units(STEM, values)] == [u.key() for u in units]
    assert units[0].arguments["model"] == units[1].arguments["model"]
    for unit in units[1:]:
        assert unit.arguments["device"] == "cpu" and unit.arguments["model"]["recipe"] == "standard"
        assert ("batch_size" in unit.arguments) == (unit.id != "attack")  # the attack makes no noisy batch
        assert not {"figures_dir", "use_cache", "panel_image", "pas"} & set(unit.arguments)
    by_id = {u.id: u for u in units}
    assert by_id["panel-image0"].arguments["pool"] == 100 and len(by_id["panel-image0"].arguments["ts"]) == 6
    assert by_id["sweep-sigma0.1-image1"].arguments["ts"] == pytest.approx([-0.1, 0.0, 0.1])
    # what does not change a unit's numbers does not change its key
    assert [u.key() for u in computed_plan_units(STEM, {**values, "figures_dir": "elsewhere", "pas": [0.6]})] == [u.key() for u in units]
    assert by_id["scan-image0"].key() != computed_plan_units(STEM, {**values, "batch_size": 7})[2].key()


def test_units_refuse_a_panel_image_the_correct_candidates_do_not_reach():
    with pytest.raises(ValueError, match=r"num_images=3 is not accepted; expected an integer from 1 to 2"):
        _values(num_candidates=2, panel_image=2)  # more images than candidates: refused before anything runs
    # fewer correctly classified candidates than the panel needs: found once the attack's table has them
    rays = compute.plan(_values(num_candidates=3, panel_image=2))[-1]
    with pytest.raises(ValueError, match=r"only 2 of the candidates are correctly classified; panel_image=2"):
        rays.units({"attack": pd.DataFrame({"unit": [0, 1], "index": [0, 1]})})


def test_a_unit_gives_the_same_table_twice_and_after_the_attack_is_recomputed():
    unit = {u.id: u for u in computed_plan_units(STEM, _values())}["scan-image1"]
    first = unit.compute()
    assert set(first.part) == {"profile", "votes"} and (first.unit == 1).all()
    assert first.equals(unit.compute())
    compute._attacked.cache_clear()
    compute._chosen.cache_clear()
    assert first.equals(unit.compute())
    scan_of = page.ray_scan(first)
    assert scan_of.profile.draws.dtype == np.int64 and len(scan_of.profile) == 5
    assert len(scan_of.votes) == 5 * 3 and scan_of.votes.groupby("n").votes.first().to_dict() == {5: 10, 10: 5, 50: 1}


@pytest.fixture(scope="module")
def chapter(tmp_path_factory):
    values = _values()
    tables = engine.compute(STEM, compute.plan(values), root=tmp_path_factory.mktemp("cache"))
    return values, tables, page.results(tables, values)


def test_results_join_the_units(chapter):
    values, tables, res = chapter
    assert len(res.attacked) == 3 and res.attacked.distance.dtype == np.float64
    assert len(res.profile) == 3 * 5 and sorted(res.profile.unit.unique()) == [0, 1, 2]
    assert len(res.panel.profile) == 6 and "unit" not in res.panel.votes
    assert res.crossings.tolist() == [page.crossing(page.ray_scan(tables[f"scan-image{k}"]).profile) for k in range(3)]
    assert res.by_sigma.sigma.tolist() == [0.1, 0.35] and len(res.located) == 2 * 3
    assert list(res.transitions.n) == values["ns"]


def test_summary_record_has_the_main_crossing_first(chapter, tmp_path, monkeypatch):
    values, _, res = chapter
    push = page.record(res, values)
    assert isinstance(push, measurements.BoundaryPush)
    assert push.num_images == 3 and push.ns == [5, 10, 50] and push.pas == [0.5, 0.8] and push.sigma == 0.35
    assert [c.sigma for c in push.crossings] == [0.35, 0.1] and push.crossing(0.1) is push.crossings[1]
    # per image, the crossing where it was located and its side where it was censored
    for found, located in zip(push.crossings[0].distances, res.crossings, strict=True):
        assert found == located if not math.isnan(located) else math.isinf(found)
    assert len(push.crossing(0.1).distances) == 3
    reach = res.at_pa.set_index(["unit", "n", "pa"]).distance
    assert set(push.widths) == {5, 10, 50}
    for n in push.ns:
        for k, width in enumerate(push.widths[n]):
            low, high = reach[k, n, 0.5], reach[k, n, 0.8]
            assert width == (None if math.isnan(low) else math.inf if math.isnan(high) else high - low)
    assert push.attack_distance_median == float(np.median(res.attacked.distance))
    monkeypatch.setattr(paths, "BUILD", tmp_path)
    measurements.record(STEM, push)
    assert measurements.load(STEM) == push


def test_a_censored_crossing_or_transition_keeps_its_side():
    ray = pd.DataFrame({"t": [0.0, 0.1, 0.2], "p_label": [0.9, 0.6, 0.3], "p_other": [0.1, 0.4, 0.7]})
    assert page._censored_crossing(ray) == pytest.approx(0.1 + 0.1 / 3)  # the gap -0.2 -> 0.4 crosses 0 a third of the way
    assert page._censored_crossing(ray.assign(p_other=0.95)) == -math.inf  # another class leads from the start
    assert page._censored_crossing(ray.assign(p_other=0.0)) == math.inf  # the label leads all along
    assert page._width(0.1, 0.4) == pytest.approx(0.3) and page._width(0.1, math.nan) == math.inf
    assert page._width(math.nan, math.nan) is None


def test_page_gives_every_glued_name_of_the_prose(chapter):
    values, _, res = chapter
    text = page.page(res, values)
    source = (paths.NOTEBOOKS / f"{STEM}.md").read_text(encoding="utf-8")
    glued = set(re.findall(r"\{glue:text\}`([a-z_0-9]+)", source))
    assert glued <= set(text) and all(isinstance(v, (int, float, str)) for v in text.values())
    assert text["num_images"] == 3 and text["directions"] == 63 and text["paper_directions"] == 3 * 224 * 224 - 1
    assert text["sweep_sigmas"] == "0.1" and text["pa_low"] == "0.5" and text["pa_high"] == "0.8"
    assert text["noise_norm"] == pytest.approx(0.35 * 8) and text["paper_crossing_sigma"] == pytest.approx(80)
    assert text["main_sign"].endswith("more often than before it") and text["censored"].endswith("measurements")
    assert text["at_low"].endswith("(n = 50)") and text["smallest_sigma"] == 0.1


def test_figures_draw_the_panels(chapter):
    values, _, res = chapter
    fig = page.plot_probability(res, values)
    left, right = fig.axes
    assert len(left.get_lines()) == 1 + len(values["ns"]) + len(values["pas"]) + 2
    assert "test index" in left.get_title() and len(right.get_yticklabels()) == 1 + 3 * 2
    plt.close(fig)
    fig = page.plot_crossing_sigma(res)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0.1", "0.35"]
    plt.close(fig)
