"""Fig. 5 chapter: the grid of attacked classifiers and one batch of attacks, checked on a linear model."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from rs_repro.experiments import fig5_attacks as ex


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
    targets = ex.grid([0.05, 0.15], [10, 50, 100], [0.5, 0.8], 0.25, [10])
    assert len(targets) == 1 + 2 * 3 * 2 + 2 + 1
    assert len({t.label for t in targets}) == len(targets) == len({t.slug for t in targets})
    assert all(re.fullmatch(r"[a-z0-9.-]+", t.slug) for t in targets)  # safe as file names
    assert targets[0] == ex.Target("standard") and targets[-1] == ex.Target("advtrain")


@pytest.mark.parametrize("attack", sorted(ex.ATTACKS))
def test_attack_rows_without_smoothing(attack):
    model = Linear()
    distances = [0.2, 0.4]
    x = _images(model, distances)
    y = torch.zeros(2, dtype=torch.long)
    kwargs = {"max_queries": 300, "budgets": [50, 300], "verify_repeats": 5, "seed": 0}
    rows = ex.attack_rows(ex.Target("standard"), attack, model, 10, x, y, torch.tensor([7, 9]), [0, 1], **kwargs)
    assert rows.idx.tolist() == [7, 9] and rows.success.all() and (rows.verified == 1.0).all()
    assert (rows.l2 >= np.array(distances) * (1 - 1e-5)).all()
    assert (rows.queries <= 300).all() and (rows.forward_passes == rows.queries).all()
    assert (rows.l2_at_300 <= rows.l2_at_50).all() and np.allclose(rows.l2_at_300, rows.l2)
    again = ex.attack_rows(ex.Target("standard"), attack, model, 10, x, y, torch.tensor([7, 9]), [0, 1], **kwargs)
    assert rows.equals(again)


def test_attack_rows_under_smoothing_verifies_eq4():
    model = Linear()
    x = _images(model, [0.3])
    target = ex.Target("standard", sigma=0.1, n=10, pa=0.8)
    rows = ex.attack_rows(target, "RayS", model, 10, x, torch.zeros(1, dtype=torch.long), torch.tensor([0]), [0],
                          max_queries=200, budgets=[200], verify_repeats=50, seed=1)
    assert (rows.forward_passes == 10 * rows.queries).all() and rows.queries.item() <= 200
    assert 0.0 <= rows.verified.item() <= 1.0
    assert 0.0 <= ex.vote_accuracy(target, model, 10, x, torch.zeros(1, dtype=torch.long), seed=0) <= 1.0


def test_scatter_legend_explains_colour_size_and_shape():
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt
    import pandas as pd

    targets = ex.grid([0.35, 0.45], [10, 50, 100], [0.5, 0.8], 0.5, [10])
    summary = pd.DataFrame([{"attack": a, "model": t.model, "sigma": t.sigma, "n": t.n, "pa": t.pa,
                             "accuracy": 0.9 - 0.01 * k, "mean_l2": 1.0 + 0.1 * k}
                            for a in ("HSJA", "RayS") for k, t in enumerate(targets)]).astype(
        {"sigma": float, "n": float, "pa": float})
    fig = ex.plot_scatter(summary, ["HSJA", "RayS"])
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["undefended", "RS $\\sigma$=0.35", "RS $\\sigma$=0.45", "RandTrain/RS $\\sigma$=0.5",
                      "AdvTrain", "$n$ = 10", "$n$ = 50", "$n$ = 100", "$P_a$ = 0.8", "$P_a$ = 0.5",
                      "no smoothing"]
    handles = legend.legend_handles
    sizes = [h.get_markersize() for h in handles[5:8]]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3
    assert [h.get_marker() for h in handles[8:]] == ["o", "X", "s"]
    colours = [np.array(mcolors.to_rgb(h.get_facecolor())) for h in handles[:5]]
    gaps = [np.abs(a - b).sum() for i, a in enumerate(colours) for b in colours[i + 1:]]
    assert min(gaps) > 0.3, "two classifier families share a colour"
    every = [np.array(mcolors.to_rgb(c)) for c in (*ex.FAMILY_COLOURS.values(), *ex.SIGMA_COLOURS)]
    assert min(np.abs(a - b).sum() for i, a in enumerate(every) for b in every[i + 1:]) > 0.3
    assert sum(len(ax.collections) for ax in fig.axes) == 2 * len(targets)
    plt.close(fig)
    with pytest.raises(ValueError, match="at most 5 acceptance levels"):
        ex.plot_scatter(summary.assign(pa=summary.pa * np.arange(len(summary)) / 10), ["HSJA"])


def test_every_profile_passes_the_chapter_checks():
    from rs_repro import book, paths

    profiles = [p for p in book.PROFILES if (paths.PARAMS / p / "fig5_attacks.yml").exists()]
    assert "smoke" in profiles and "default" in profiles
    for profile in profiles:
        ex.check_parameters(book.profile_values("fig5_attacks", profile))


@pytest.mark.parametrize("key, value, message", [
    ("budgets", [100, 50, 2000], "budgets=[100, 50, 2000] is not accepted; expected increasing positive budgets"),
    ("attacks", ["HSJA", "PGD"], "attacks=['HSJA', 'PGD'] is not accepted"),
    ("pas", [0.0], "pas=[0.0] is not accepted; expected levels in (0, 1]"),
    ("chunk", 0, "chunk=0 is not accepted; expected at least 1"),
])
def test_bad_parameters_stop_the_chapter_before_it_runs(tmp_path, monkeypatch, key, value, message):
    from rs_repro import book, paths

    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    with pytest.raises(book.ChapterError, match=re.escape(f"chapter 'fig5_attacks': {message}")):
        book.run_chapter("fig5_attacks", "default", {key: value})
    assert not (tmp_path / "runs").exists()


def _small(**changes):
    from rs_repro import book

    values = book.profile_values("fig5_attacks", "smoke")
    values.update(num_images=3, max_queries=20, budgets=[10, 20], attacks=["RayS", "HSJA"], sigmas=[0.35], ns=[10],
                  pas=[0.8], certify_n=20, verify_repeats=5, chunk=2, **changes)
    ex.check_parameters(values)
    return values


def test_units_cover_the_grid_with_stable_distinct_ids():
    values = _small()
    units = ex.units(values)
    ids = [u.id for u in units]
    assert len(set(ids)) == len(ids) and ids == [u.id for u in ex.units(values)]
    targets = ex.targets(values)  # undefended, RS sigma=0.35 n=10, RandTrain/RS, AdvTrain
    assert sum(i.startswith("accuracy-") for i in ids) == len(targets) == 4
    assert sum(i.startswith("attack-") for i in ids) == len(targets) * 2 * 2  # 2 attacks x 2 chunks (3 images)
    assert sorted(i for i in ids if i.startswith("certify-")) == [
        "certify-randtrain-sigma0.5-images0", "certify-randtrain-sigma0.5-images2",
        "certify-standard-sigma0.35-images0", "certify-standard-sigma0.35-images2"]
    # an attack unit reads its own attack and the chapter, not the certification chapter
    rays = next(u for u in units if u.id.startswith("attack-RayS"))
    assert rays.code == ("rs_repro.experiments.fig5_attacks", "rs_repro.attacks.rays")
    index = ex.attacked_index(values)
    assert len(index) == 3 and all(u.arguments["index"] == index for u in units if u.id.startswith("attack-"))


def test_results_record_and_page_from_the_units(tmp_path, monkeypatch):
    from rs_repro import engine, measurements, paths

    values = _small()
    res = ex.results(engine.run("fig5_attacks", ex.units(values), root=tmp_path / "cache"), values)
    targets = ex.targets(values)
    assert len(res.runs) == 3 * 2 * len(targets) and set(res.accuracy.target) == {t.label for t in targets}
    smoothed = res.summary[res.summary.sigma.notna()]
    assert len(res.ratios) == len(smoothed)
    for row, ratio in zip(smoothed.itertuples(), res.ratios.itertuples()):
        radii = res.certified[row.model, row.sigma].radius
        assert ratio.ratio_of_means == row.mean_l2 / radii.mean() and ratio.ratio_to_largest == row.mean_l2 / radii.max()
    grid = ex.measured(res, values)
    assert len(grid.configurations) == len(res.summary) and grid.num_images == 3 and grid.max_queries == 20
    undefended = next(c for c in grid.configurations if c.target == "standard" and c.attack == "RayS")
    assert undefended.sigma is None and undefended.n is None and isinstance(undefended.images, int)
    smoothed_rays = next(c for c in grid.configurations if c.model == "standard" and c.sigma == 0.35)
    assert smoothed_rays.n == 10 and smoothed_rays.pa == 0.8
    monkeypatch.setattr(paths, "BUILD", tmp_path)
    measurements.record("fig5_attacks", grid)
    assert measurements.load("fig5_attacks") == grid
    text = ex.page(res, values)
    assert text["ns_text"] == "10" and text["verified_by_n"].endswith("(n=10)")
    assert text["smallest_ratio"] == res.ratios.ratio_of_means.min()
    assert set(ex.beside_paper(res.summary).target) == set(res.summary.target)
