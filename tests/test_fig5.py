"""Fig. 5 chapter: the grid of attacked classifiers and one batch of attacks, checked on a linear model; its
plan, and the page read from its tables."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from rs_repro.attacks.verification import CANDIDATES
from rs_repro.chapters import common
from rs_repro.chapters.fig5_attacks import compute, page


class Linear(nn.Module):
    """Ten-class-shaped linear model: class 1 where w.x > 0.3, class 0 elsewhere (the other logits -inf)."""

    def __init__(self) -> None:
        super().__init__()
        w = torch.randn(64, generator=torch.Generator().manual_seed(0))
        self.w = nn.Parameter(w / w.norm(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1) @ self.w - 0.3
        logits = torch.full((len(x), 10), -1e9)
        logits[:, 0], logits[:, 1] = -s, s
        return logits


def _images(model: Linear, distances: list[float]) -> torch.Tensor:
    base = torch.full((64,), 0.5)
    base -= (base @ model.w - 0.3) * model.w
    return torch.stack([base - d * model.w for d in distances]).view(-1, 1, 8, 8)


def test_grid_matches_the_paper_layout():
    targets = compute.grid([0.05, 0.15], [10, 50, 100], [0.5, 0.8], 0.25, [10])
    assert len(targets) == 1 + 2 * 3 * 2 + 2 + 1
    assert len({t.label for t in targets}) == len(targets) == len({t.slug for t in targets})
    assert all(re.fullmatch(r"[a-z0-9.-]+", t.slug) for t in targets)  # safe as file names
    assert targets[0] == compute.Target("standard") and targets[-1] == compute.Target("advtrain")


@pytest.mark.parametrize("attack", sorted(common.PAPER_ATTACKS))
def test_attack_rows_without_smoothing(attack):
    model = Linear()
    distances = [0.2, 0.4]
    x = _images(model, distances)
    y = torch.zeros(2, dtype=torch.long)
    kwargs = {"max_queries": 300, "budgets": [50, 300], "verify_repeats": 5, "votes": 5, "confirm_votes": 20,
              "alpha": 0.05, "seed": 0}
    rows = compute.attack_rows(compute.Target("standard"), attack, model, 10, x, y, torch.tensor([7, 9]), [0, 1],
                                   **kwargs)
    assert rows.idx.tolist() == [7, 9] and rows.success.all() and (rows.level == 1.0).all()
    # without smoothing the reported point is exact: confirmed as it is
    assert rows.verified_l2.equals(rows.l2) and rows.at_level.all() and (rows.t == 1.0).all()
    assert (rows.source == "best query").all()
    # every attack's own last iterate is recorded beside the best accepted query: an accepted point, no closer
    assert (rows.final_l2 >= rows.l2 - 1e-6).all() and (rows.final_level == 1.0).all()
    if attack == "HSJA":
        assert (rows.one_label_steps <= rows.gradient_steps).all()
    assert (rows.l2 >= np.array(distances) * (1 - 1e-5)).all()
    assert (rows.queries <= 300).all() and (rows.forward_passes == rows.queries).all()
    assert (rows.l2_at_300 <= rows.l2_at_50).all() and np.allclose(rows.l2_at_300, rows.l2)
    again = compute.attack_rows(compute.Target("standard"), attack, model, 10, x, y, torch.tensor([7, 9]), [0, 1],
                                    **kwargs)
    assert rows.equals(again)


@pytest.mark.parametrize("attack", sorted(common.PAPER_ATTACKS))
def test_attack_rows_under_smoothing_confirm_eq4(attack):
    model = Linear()
    x = _images(model, [0.3, 0.5])
    y = torch.zeros(2, dtype=torch.long)
    target = compute.Target("standard", sigma=0.1, n=10, pa=0.8)
    rows = compute.attack_rows(target, attack, model, 10, x, y, torch.tensor([0, 1]), [0, 1], max_queries=200,
                          budgets=[200], verify_repeats=50, votes=40, confirm_votes=160, alpha=0.05, seed=1)
    # a vote stops drawing once settled: at least n - ceil(n P_a) + 1 = 3 and at most n = 10 passes per query
    assert (rows.forward_passes <= 10 * rows.queries).all() and (rows.forward_passes >= 3 * rows.queries).all()
    assert (rows.queries <= 200).all() and rows.level.between(0, 1).all()
    # A confirmed point is adversarial at level 0.8: on this linear model g_sigma = f, a micro-decision at signed
    # distance s past the hyperplane is wrong with probability Phi(s / sigma), so eq. (4) needs
    # P[Bin(10, Phi(s / sigma)) >= 6] (+ half a tie) >= 0.8, i.e. s > 0: never closer than the hyperplane.
    confirmed = np.isfinite(rows.verified_l2.to_numpy())
    assert confirmed.all() and (rows.t >= 1).all()
    assert (rows.verified_l2 >= np.array([0.3, 0.5]) * (1 - 1e-3)).all()
    assert (rows.confirm_lower >= 0.8).all() and set(rows.source) <= set(CANDIDATES)
    assert np.allclose(rows.verified_l2, np.minimum(rows.query_confirmed_l2, rows.final_confirmed_l2))
    at_level = rows.at_level.to_numpy()  # the best query itself confirmed: kept where it was, at t = 1
    assert np.allclose(rows.query_confirmed_l2[at_level], rows.l2[at_level], rtol=1e-5)
    correct = compute.vote_correct(target, model, 10, x, y, seed=0)
    assert correct.dtype == bool and correct.shape == (2,)


def test_a_point_at_the_clean_image_is_not_verified():
    model = Linear()
    x = _images(model, [0.3] * 8)
    y = torch.zeros(8, dtype=torch.long)
    # At sigma = 1 a micro-decision at x_o is wrong with probability Phi(-0.3) = 0.38, so the one-vote oracle
    # (n = 1, Pa = 0.5) accepts x_o itself at HSJA's first query for about 38% of the images, which then stop at
    # distortion 0. Such a report has no direction to push along: it is verified only if x_o is adversarial at
    # level 0.5, which 200 fresh votes refute (P[Bin(200, 0.38) >= 100] < 1e-3).
    target = compute.Target("standard", sigma=1.0, n=1, pa=0.5)
    rows = compute.attack_rows(target, "HSJA", model, 10, x, y, torch.arange(8), list(range(8)), max_queries=50,
                          budgets=[50], verify_repeats=20, votes=200, confirm_votes=200, alpha=0.05, seed=3)
    at_origin = (rows.l2 == 0).to_numpy()
    assert 0 < at_origin.sum() < 8
    assert np.isinf(rows.query_confirmed_l2[at_origin]).all()
    assert not rows.at_level[at_origin].any() and (rows.source[at_origin] != "best query").all()


def test_scatter_legend_explains_colour_size_and_shape():
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt
    import pandas as pd

    targets = compute.grid([0.35, 0.45], [10, 50, 100], [0.5, 0.8], 0.5, [10])
    summary = pd.DataFrame([{"attack": a, "model": t.model, "sigma": t.sigma, "n": t.n, "pa": t.pa,
                             "accuracy": 0.9 - 0.01 * k, "median_l2": 1.0 + 0.1 * k,
                             "verified_median_l2": (1.5 + 0.1 * k) if t.sigma is not None else 1.0 + 0.1 * k}
                            for a in ("HSJA", "RayS") for k, t in enumerate(targets)]).astype(
        {"sigma": float, "n": float, "pa": float})
    fig = page.plot_scatter(summary, ["HSJA", "RayS"])
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["undefended", "RS $\\sigma$=0.35", "RS $\\sigma$=0.45", "RandTrain/RS $\\sigma$=0.5",
                      "AdvTrain", "$n$ = 10", "$n$ = 50", "$n$ = 100", "$P_a$ = 0.8", "$P_a$ = 0.5",
                      "no smoothing", "reported (paper's protocol)", "confirmed, eq. (4)"]
    handles = legend.legend_handles
    sizes = [h.get_markersize() for h in handles[5:8]]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3
    assert [h.get_marker() for h in handles[8:]] == ["o", "X", "s", "o", "o"]
    assert handles[-2].get_markerfacecolor() == "none"
    colours = [np.array(mcolors.to_rgb(h.get_facecolor())) for h in handles[:5]]
    gaps = [np.abs(a - b).sum() for i, a in enumerate(colours) for b in colours[i + 1:]]
    assert min(gaps) > 0.3, "two classifier families share a colour"
    every = [np.array(mcolors.to_rgb(c)) for c in (*page.FAMILY_COLOURS.values(), *page.SIGMA_COLOURS)]
    assert min(np.abs(a - b).sum() for i, a in enumerate(every) for b in every[i + 1:]) > 0.3
    smoothed = sum(t.sigma is not None for t in targets)
    # one marker per classifier without smoothing, two (reported hollow, verified filled) per smoothed one
    assert sum(len(ax.collections) for ax in fig.axes) == 2 * (len(targets) + smoothed)
    plt.close(fig)
    with pytest.raises(ValueError, match="at most 5 acceptance levels"):
        page.plot_scatter(summary.assign(pa=summary.pa * np.arange(len(summary)) / 10), ["HSJA"])


@pytest.mark.parametrize("key, value, message", [
    ("budgets", [100, 50, 2000], "budgets=[100, 50, 2000] is not accepted; expected increasing positive budgets"),
    ("attacks", ["HSJA", "PGD"], "attacks=['HSJA', 'PGD'] is not accepted"),
    ("pas", [0.0], "pas=[0.0] is not accepted; expected levels in (0, 1]"),
    ("pas", [0.5, 1.0], "pas=[0.5, 1.0] is not accepted; expected levels below 1"),
    ("alpha", 0.0, "alpha=0.0 is not accepted; expected a level in (0, 1)"),
    ("confirm_votes", 0, "confirm_votes=0 is not accepted; expected at least 1"),
    ("chunk", 0, "chunk=0 is not accepted; expected at least 1"),
])
def test_bad_parameters_stop_the_chapter_before_it_runs(tmp_path, monkeypatch, key, value, message):
    from rs_repro.pipeline import book, paths

    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    with pytest.raises(book.ChapterError, match=re.escape(f"chapter 'fig5_attacks': {message}")):
        book.run_chapter("fig5_attacks", "default", {key: value})
    assert not (tmp_path / "runs").exists()


def _small(**changes):
    from rs_repro.pipeline import book

    values = book.profile_values("fig5_attacks", "smoke")
    values.update(num_images=3, max_queries=20, budgets=[10, 20], attacks=["RayS", "HSJA"], sigmas=[0.35], ns=[10],
                  pas=[0.8], certify_n=20, verify_repeats=5, chunk=2, **changes)
    compute.check_parameters(values)
    return values


def _attacked(values: dict) -> pd.DataFrame:
    """The table of the plan's image unit (the attacked images), computed here."""
    (chosen,) = compute.plan(values)[1].units({})
    return chosen.compute()


def test_the_plan_trains_the_models_then_chooses_the_images_then_attacks():
    values = _small()
    stages = compute.plan(values)
    assert [stage.name for stage in stages] == ["models", "attacked images", "attacks"]
    assert [u.id for u in stages[0].units({})] == ["model-standard", "model-randtrain", "model-advtrain"]
    (chosen,) = stages[1].units({})
    assert chosen.id == common.IMAGES and chosen.arguments["model"] == common.model_specs(values)["standard"]
    images = pd.DataFrame({"position": [4, 1, 7], "idx": [4, 1, 7]})
    assert [u.id for u in stages[2].units({common.IMAGES: images})] == [u.id for u in compute.units(values, images)]


def test_units_cover_the_grid_with_stable_distinct_ids():
    values = _small()
    images = _attacked(values)
    units = compute.units(values, images)
    ids = [u.id for u in units]
    assert len(set(ids)) == len(ids) and ids == [u.id for u in compute.units(values, _attacked(values))]
    targets = compute.targets(values)  # undefended, RS sigma=0.35 n=10, RandTrain/RS, AdvTrain
    assert sum(i.startswith("accuracy-") for i in ids) == len(targets) == 4
    assert sum(i.startswith("attack-") for i in ids) == len(targets) * 2 * 2  # 2 attacks x 2 chunks (3 images)
    assert sorted(i for i in ids if i.startswith("certify-")) == [
        "certify-randtrain-sigma0.5-images0", "certify-randtrain-sigma0.5-images2",
        "certify-standard-sigma0.35-images0", "certify-standard-sigma0.35-images2"]
    # an attack unit reads its own attack and the chapter, not the certification chapter
    rays = next(u for u in units if u.id.startswith("attack-RayS"))
    assert rays.code == ("rs_repro.chapters.fig5_attacks.compute", "rs_repro.attacks.rays")
    # the white-box attack is read by its own unit only
    assert next(u for u in units if u.id == "minimal-standard").function == compute.MINIMAL_UNIT
    index = images.idx.tolist()
    assert len(index) == 3 and all(u.arguments["index"] == index for u in units if u.id.startswith("attack-"))


def test_results_record_and_page_from_the_units(tmp_path, monkeypatch):
    from rs_repro.pipeline import engine, paths
    from rs_repro.report import measurements

    values = _small()
    tables = engine.compute("fig5_attacks", compute.plan(values), root=tmp_path / "cache")
    res = page.results(tables, values)
    targets = compute.targets(values)
    assert len(res.runs) == 3 * 2 * len(targets) and set(res.accuracy.target) == {t.label for t in targets}
    smoothed = res.summary[res.summary.sigma.notna()]
    assert len(res.ratios) == len(smoothed) and (res.summary.images == 3).all()  # no image left out
    for row, ratio in zip(smoothed.itertuples(), res.ratios.itertuples()):
        radii = res.certified[row.model, row.sigma].radius
        with np.errstate(divide="ignore"):  # a median radius of 0 (CERTIFY abstained) gives an infinite ratio
            assert ratio.ratio_to_median == np.divide(row.verified_median_l2, radii.median())
            assert ratio.ratio_to_largest == np.divide(row.verified_median_l2, radii.max())
    grid = page.record(res, values)
    assert len(grid.configurations) == len(res.summary) and len(grid.images) == 3 and grid.max_queries == 20
    assert grid.images == tables[common.IMAGES].idx.tolist() and len(grid.minimal_l2) == 3 and grid.votes == values["votes"]
    undefended = next(c for c in grid.configurations if c.target == "standard" and c.attack == "RayS")
    assert undefended.sigma is None and undefended.n is None and undefended.radius is None
    assert undefended.verified_l2 == undefended.reported_l2 and undefended.tested > 0
    # the white-box minimal distortion is a floor for an attack on the same undefended model
    assert all(m <= r * (1 + 1e-6) for m, r in zip(grid.minimal_l2, undefended.reported_l2))
    smoothed_rays = next(c for c in grid.configurations if c.model == "standard" and c.sigma == 0.35)
    assert smoothed_rays.n == 10 and smoothed_rays.pa == 0.8 and len(smoothed_rays.radius) == 3
    rows = res.runs[res.runs.target == smoothed_rays.target].set_index("idx").loc[grid.images]
    rows = rows[rows.attack == smoothed_rays.attack]
    assert smoothed_rays.verified_l2 == rows.verified_l2.tolist()
    monkeypatch.setattr(paths, "BUILD", tmp_path)
    measurements.record("fig5_attacks", grid)
    assert measurements.load("fig5_attacks") == grid
    text = page.page(res, values)
    assert text["ns_text"] == "10" and text["at_level_by_pa"].endswith("at Pa = 0.8")
    smallest = res.ratios.ratio_to_median.min()
    assert text["smallest_ratio"].startswith("infinite") if np.isinf(smallest) else \
        float(text["smallest_ratio"]) <= smallest < float(text["smallest_ratio"]) + 0.01
    assert text["failures_total"] == int((~np.isfinite(res.runs.verified_l2[res.runs.sigma.notna()])).sum())
    # every accuracy is the sum of its per-image answers, and record and table agree
    assert all(sum(c.correct_images) == c.correct and len(c.correct_images) == c.tested for c in grid.configurations)
    curves = page.robust_accuracy(res.runs, res.certified, page.epsilons(res.runs))
    assert (curves.groupby(["attack", "target"]).robust.apply(lambda r: r.is_monotonic_decreasing)).all()
    assert curves[curves.sigma.isna()].certified.isna().all() and curves.certified.dropna().between(0, 1).all()
    assert set(page.beside_paper(res.summary).target) == set(res.summary.target)
    # x_o's acceptance: one row per smoothed target and image, probabilities, more likely within the budget
    accept = res.acceptance
    assert len(accept) == 3 * len(smoothed.target.unique())
    assert (accept.within_budget >= accept.per_query).all() and accept.wrong_rate.between(0, 1).all()


def test_acceptance_of_the_clean_image_is_the_binomial_tail():
    from scipy import stats

    clean = pd.DataFrame({"model": "standard", "sigma": 0.5, "idx": [3, 4], "label": [0, 1], "wrong": [30, 0],
                          "samples": 100})
    target = compute.Target("standard", 0.5, 10, 0.5)
    table = page.acceptance(clean, [compute.Target("standard"), target], max_queries=7)
    a = stats.binom.sf(4, 10, 0.3)  # at least ceil(10 * 0.5) = 5 of 10 wrong, each with probability 0.3
    assert table.per_query.tolist() == pytest.approx([a, 0.0])
    assert table.within_budget.tolist() == pytest.approx([1 - (1 - a) ** 7, 0.0])


def paper_here(tmp_path, monkeypatch) -> dict:
    """The paper profile's values with its local files replaced by stand-ins on this machine: an ImageNet folder of
    its pool's 200 images (empty files: the rules count them, never decode them) with their labels, weights files
    holding a state dict (the rules read them with ``torch.load(weights_only=True)``), and a CUDA device."""
    from rs_repro.pipeline import book

    values = book.profile_values("fig5_attacks", "paper")
    folder = tmp_path / "val"
    folder.mkdir()
    names = [f"ILSVRC2012_val_{k:08d}.JPEG" for k in range(1, values["pool"] + 1)]
    for name in names:
        (folder / name).touch()
    (folder / "val.txt").write_text("".join(f"{name} {k}\n" for k, name in enumerate(names)))
    values["data_dir"] = str(folder)
    for model in ("standard", "randtrain", "advtrain"):
        torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / f"{model}.pth")
        values[f"{model}_weights"] = str(tmp_path / f"{model}.pth")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    return values


def test_models_without_a_checkpoint_are_absent_where_none_is_trained(tmp_path, monkeypatch):
    from rs_repro.pipeline import book

    values = paper_here(tmp_path, monkeypatch)
    compute.check_parameters(values)
    assert set(common.model_specs(values)) == {"standard", "randtrain", "advtrain"} and not common.absent_models(values)
    values.update(randtrain_weights="", advtrain_weights="")
    compute.check_parameters(values)
    assert set(common.model_specs(values)) == {"standard"}
    assert {t.model for t in compute.targets(values)} == {"standard"}
    assert set(common.absent_models(values)) == {"randtrain", "advtrain"}
    assert "randtrain_weights" in common.absent_models(values)["randtrain"]
    with pytest.raises(ValueError, match="standard_weights"):
        compute.check_parameters({**values, "standard_weights": ""})
    with pytest.raises(ValueError, match="device"):
        compute.check_parameters({**values, "device": "gpu"})
    # on digits every model is trained here, with or without checkpoints named
    digits = book.profile_values("fig5_attacks", "smoke")
    assert set(common.model_specs(digits)) == {"standard", "randtrain", "advtrain"} and not common.absent_models(digits)


def test_a_pool_draws_the_attacked_images_and_the_accuracy_from_a_subset():
    values = _small(pool=60)
    images = _attacked(values)
    index = images.idx.tolist()
    pool = common.test_pool("digits", None, 60, values["seed"])
    assert set(index) <= set(pool.index.tolist()) and len(index) == 3
    units = compute.units(values, images)
    accuracy = next(u for u in units if u.id.startswith("accuracy-"))
    answers = compute.accuracy_unit(**accuracy.arguments)
    assert len(answers) == 60 and answers.idx.tolist() == pool.index.tolist()
    certify = next(u for u in units if u.id.startswith("certify-"))
    assert certify.arguments["subset"] == 60 and certify.arguments["subset_seed"] == values["seed"]
    assert [pool.index[p].item() for p in certify.arguments["images"]] == index[:len(certify.arguments["images"])]
