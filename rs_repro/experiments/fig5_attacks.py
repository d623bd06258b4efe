"""Compute functions of the ``fig5_attacks`` chapter: Fig. 5 of the paper.

Three decision-based attacks (HSJA, SurFree, RayS) against the undefended model, the standard model under
smoothing at two noise levels with n in {10, 50, 100} micro-decisions and the acceptance levels
P_a in {0.5, 0.8} (the paper's ceil(n P_a) rule), RandTrain under smoothing, and AdvTrain, all with the
same per-image query budget (2,000 in the paper). One row per attacked image records its distortions, its
queries and forward passes, and its best distortion at several budgets (from the oracle's history).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import torch
from matplotlib.lines import Line2D
from torch import nn

from .. import seeds
from ..attacks import AttackResult, Oracle, hsja, rays, surfree
from ..models import accuracy
from ..plots import PALETTE
from ..smoothing import Smooth

#: The attacks of the paper, by the names its Fig. 5 uses.
ATTACKS: dict[str, Callable[..., AttackResult]] = {"HSJA": hsja, "SurFree": surfree, "RayS": rays}


@dataclass(frozen=True)
class Target:
    """One attacked classifier of Fig. 5.

    ``model`` names the base model (``standard``, ``randtrain`` or ``advtrain``); ``sigma`` is ``None``
    without smoothing; ``n`` and ``pa`` are the votes per query and the acceptance level of the smoothed
    oracle (``pa=None``: the plain majority vote).
    """

    model: str
    sigma: float | None = None
    n: int | None = None
    pa: float | None = None

    @property
    def label(self) -> str:
        if self.sigma is None:
            return self.model
        rule = f", Pa={self.pa:g}" if self.pa is not None else ""
        return f"{self.model}/RS sigma={self.sigma:g}, n={self.n}{rule}"

    @property
    def slug(self) -> str:
        """The label as a file-name part, e.g. ``standard-rs0.35-n10-pa0.8``."""
        if self.sigma is None:
            return self.model
        rule = f"-pa{self.pa:g}" if self.pa is not None else ""
        return f"{self.model}-rs{self.sigma:g}-n{self.n}{rule}"


def grid(sigmas: Sequence[float], ns: Sequence[int], pas: Sequence[float], randtrain_sigma: float,
         randtrain_ns: Sequence[int]) -> list[Target]:
    """The classifiers of Fig. 5: undefended, smoothed standard, smoothed RandTrain, AdvTrain."""
    targets = [Target("standard")]
    targets += [Target("standard", s, n, pa) for s in sigmas for n in ns for pa in pas]
    targets += [Target("randtrain", randtrain_sigma, n, pa) for n in randtrain_ns for pa in pas]
    return targets + [Target("advtrain")]


def make_oracle(target: Target, model: nn.Module, num_classes: int, max_queries: int,
                generator: torch.Generator) -> Oracle:
    """The oracle an attack queries for ``target``: the base model, or g_{sigma,n} with the P_a rule."""
    if target.sigma is None:
        return Oracle(model, max_queries)
    return Smooth(model, num_classes, target.sigma).oracle(target.n, target.pa, max_queries=max_queries,
                                                          generator=generator)


def vote_accuracy(target: Target, model: nn.Module, num_classes: int, x: torch.Tensor, y: torch.Tensor,
                  seed: int, batch_size: int = 10_000) -> float:
    """Clean accuracy of the attacked classifier: the base model, or the majority vote g_{sigma,n}."""
    if target.sigma is None:
        return accuracy(model, x, y, batch_size=batch_size)
    device = next(model.parameters()).device
    labels = Smooth(model, num_classes, target.sigma).vote(
        x.to(device), target.n, batch_size, generator=seeds.generator(seed, "accuracy", target.label, device=device))
    return float((labels.cpu() == y).double().mean())


def attack_rows(target: Target, attack: str, model: nn.Module, num_classes: int, x: torch.Tensor,
                y: torch.Tensor, index: torch.Tensor, units: Sequence[int], *, max_queries: int,
                budgets: Sequence[int], verify_repeats: int, seed: int) -> pd.DataFrame:
    """Run ``attack`` on the images at positions ``units`` (one batch) against ``target``.

    The attack and the oracle draw from generators seeded by the seed, the target, the attack and the
    first unit of the batch, so a resumed run recomputes a batch exactly. Under smoothing an answer
    "adversarial" may be luck, so the best adversarial query of each image is checked afterwards with
    ``verify_repeats`` fresh votes: ``verified`` estimates P[g_{sigma,n}(x_adv) != y], the level of
    eq. (4) (1 or 0 without smoothing).

    Returns
    -------
    pandas.DataFrame
        One row per image: ``unit, idx, label, attack, target, success, l2, linf, best_linf, queries,
        forward_passes, verified`` and ``l2_at_<q>`` for each budget q (inf where not yet adversarial).
    """
    device = next(model.parameters()).device
    block = torch.as_tensor(list(units))
    key = (target.label, attack, int(block[0]))
    oracle = make_oracle(target, model, num_classes, max_queries,
                         seeds.generator(seed, "oracle", *key, device=device))
    result = ATTACKS[attack](oracle, x[block].to(device), y[block].to(device), seed=seeds.derive_seed(seed, *key))
    curves = oracle.best_at(budgets)
    if target.sigma is None:
        verified = result.success.double().numpy()
    else:
        smooth = Smooth(model, num_classes, target.sigma)
        verified = smooth.verify(result.x_adv.to(device), y[block].to(device), target.n, verify_repeats,
                                 generator=seeds.generator(seed, "verify", *key, device=device))[0]
    rows = pd.DataFrame({"unit": block.numpy(), "idx": index[block].numpy(), "label": y[block].numpy(),
                         "attack": attack, "target": target.label, "success": result.success.numpy(),
                         "l2": result.l2.numpy(), "linf": result.linf.numpy(),
                         "best_linf": result.best_linf.numpy(), "queries": result.queries.numpy(),
                         "forward_passes": result.forward_passes.numpy(), "verified": verified})
    for j, q in enumerate(budgets):
        rows[f"l2_at_{q}"] = curves[:, j]
    return rows


#: Colours of the classifier families without smoothing and of RandTrain in the Fig. 5 scatter.
FAMILY_COLOURS = {"undefended": "black", "randtrain": PALETTE[2], "advtrain": PALETTE[4]}
#: Colours of the smoothed standard model, one per sigma in increasing order, far from the families' colours.
SIGMA_COLOURS = (PALETTE[0], PALETTE[1], PALETTE[9], PALETTE[5], PALETTE[8], PALETTE[7])
#: Marker shapes of the acceptance levels, the largest level first (as in the paper, a disc for 80% and a
#: cross for 50%).
PA_MARKERS = ("o", "X", "^", "D", "v")
#: Marker shape of the classifiers without smoothing.
UNSMOOTHED_MARKER = "s"


def _family(row: Any, sigma_colour: dict[float, object]) -> tuple[tuple[int, float], str, object]:
    """Legend order, name and colour of the classifier of one summary row (a row of ``itertuples``)."""
    if pd.isna(row.sigma):
        if row.model == "advtrain":
            return (3, 0.0), "AdvTrain", FAMILY_COLOURS["advtrain"]
        return (0, 0.0), "undefended", FAMILY_COLOURS["undefended"]
    if row.model == "randtrain":
        return (2, row.sigma), f"RandTrain/RS $\\sigma$={row.sigma:g}", FAMILY_COLOURS["randtrain"]
    return (1, row.sigma), f"RS $\\sigma$={row.sigma:g}", sigma_colour[row.sigma]


def plot_scatter(summary: pd.DataFrame, attacks: Sequence[str]) -> plt.Figure:
    """Fig. 5: mean l2 distortion against clean accuracy, one panel per attack.

    Parameters
    ----------
    summary
        One row per (attack, classifier) with columns ``attack, model, sigma, n, pa, accuracy, mean_l2``
        (``sigma``, ``n``, ``pa`` NaN without smoothing).
    attacks
        The panels, in order.

    Returns
    -------
    matplotlib.figure.Figure
        Colour: classifier family (and sigma); marker size: n; marker shape: P_a, squares without smoothing.
        The legend explains all three.
    """
    smoothed = summary.dropna(subset=["sigma"])
    sigmas = sorted(smoothed.loc[smoothed.model == "standard", "sigma"].unique())
    if len(sigmas) > len(SIGMA_COLOURS):
        raise ValueError(f"at most {len(SIGMA_COLOURS)} smoothing noises can be told apart, got {sigmas}")
    sigma_colour = dict(zip(sigmas, SIGMA_COLOURS))
    ns = sorted(int(n) for n in smoothed.n.unique())
    pas = sorted(smoothed.pa.dropna().unique(), reverse=True)
    if len(pas) > len(PA_MARKERS):
        raise ValueError(f"at most {len(PA_MARKERS)} acceptance levels can be told apart, got {pas}")
    size = {n: 30 + 90 * k for k, n in enumerate(ns)}
    marker = dict(zip(pas, PA_MARKERS))
    fig, axes = plt.subplots(1, len(attacks), figsize=(4.2 * len(attacks), 3.8), squeeze=False)
    families: dict[tuple[int, float], tuple[str, object]] = {}
    for ax, attack in zip(axes[0], attacks):
        for row in summary[summary.attack == attack].itertuples():
            order, name, colour = _family(row, sigma_colour)
            families[order] = name, colour
            plain = pd.isna(row.sigma)
            ax.scatter(row.accuracy, row.mean_l2, color=colour, alpha=0.8, edgecolors="white", linewidths=0.5,
                       s=60 if plain else size[int(row.n)],
                       marker=UNSMOOTHED_MARKER if plain else marker.get(row.pa, PA_MARKERS[0]))
        ax.set(title=attack, xlabel="accuracy", ylabel="mean $\\ell_2$ distortion")

    def key(label: str, **style: object) -> Line2D:
        return Line2D([], [], linestyle="", label=label, **style)

    grey = {"color": "0.45", "markeredgecolor": "white"}
    handles = [key(name, marker="o", markersize=8, color=colour) for _, (name, colour) in sorted(families.items())]
    handles += [key(f"$n$ = {n}", marker="o", markersize=size[n] ** 0.5, **grey) for n in ns]
    handles += [key(f"$P_a$ = {pa:g}", marker=marker[pa], markersize=8, **grey) for pa in pas]
    handles += [key("no smoothing", marker=UNSMOOTHED_MARKER, markersize=8, **grey)]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small", frameon=False,
               labelspacing=1.0)
    fig.tight_layout()
    return fig
