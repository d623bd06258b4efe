"""Compute functions of the ``fig4_certification`` chapter: Fig. 4 of the paper.

Cohen et al.'s CERTIFY on the standard model under smoothing at two noise levels, chosen by the clean
accuracy they cost (paper: about 3% and 12%), and on the noise-trained model (RandTrain) at its training
sigma. Every image draws its noise from its own generator (:func:`rs_repro.seeds.generator`), so the
results do not depend on the order, the batching or a resumed run. The work is units
(:mod:`rs_repro.engine`): the sweep over sigma, and CERTIFY by chunks of images (:func:`certify_units`).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import data, seeds
from ..checks import rule_checker
from ..engine import Unit
from ..models import load_model
from ..smoothing import ABSTAIN, Smooth

_MODULE = __name__


def sigma_sweep(model: nn.Module, num_classes: int, x: torch.Tensor, y: torch.Tensor, sigmas: Sequence[float],
                n: int, batch_size: int, seed: int) -> pd.DataFrame:
    """Accuracy of the smoothed standard model over a grid of sigma (how the paper chose its sigma).

    Two accuracies per sigma, from the same n votes per image: ``vote_accuracy``, the majority vote
    g_{sigma,n} (plurality, as the attacked models answer), and ``majority_accuracy``, the fraction of
    images whose true class gets more than half of the votes (pA > 1/2), which is what CERTIFY's
    certified accuracy at radius 0 tends to as n grows and what Fig. 4 starts from.

    Returns
    -------
    pandas.DataFrame
        Columns ``sigma, n, vote_accuracy, majority_accuracy``.
    """
    device = next(model.parameters()).device
    rows = []
    for sigma in sigmas:
        gen = seeds.generator(seed, "sweep", sigma, device=device)
        counts = Smooth(model, num_classes, sigma).counts(x.to(device), n, batch_size, generator=gen).cpu()
        true_votes = counts.gather(1, y.unsqueeze(1)).squeeze(1)
        rows.append({"sigma": sigma, "n": n,
                     "vote_accuracy": float((counts.argmax(1) == y).double().mean()),
                     "majority_accuracy": float((2 * true_votes > n).double().mean())})
    return pd.DataFrame(rows)


def choose_sigmas(sweep: pd.DataFrame, clean_accuracy: float, costs: Sequence[float]) -> list[float]:
    """For each target cost, the swept sigma whose cost (clean - majority accuracy) is closest to it."""
    cost = clean_accuracy - sweep["majority_accuracy"].to_numpy()
    return [float(sweep["sigma"].iloc[int(np.argmin(np.abs(cost - target)))]) for target in costs]


def certify_rows(model: nn.Module, num_classes: int, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor,
                 units: Sequence[int], *, name: str, sigma: float, n0: int, n: int, alpha: float,
                 batch_size: int, seed: int) -> pd.DataFrame:
    """CERTIFY on the images at positions ``units`` of ``x``: one row per image.

    Returns
    -------
    pandas.DataFrame
        Columns ``unit, idx, label, predict, radius, correct, time`` (``idx`` = position in the dataset
        split; ``predict`` = -1 on abstention; ``time`` = wall seconds), the fields of Cohen et al.'s
        certification logs.
    """
    device = next(model.parameters()).device
    smooth = Smooth(model, num_classes, sigma)
    rows = []
    for unit in units:
        start = time.perf_counter()
        gen = seeds.generator(seed, "certify", name, sigma, int(index[unit]), device=device)
        predict, radius = smooth.certify(x[unit].to(device), n0, n, alpha, batch_size, generator=gen)
        label = int(y[unit])
        rows.append({"unit": unit, "idx": int(index[unit]), "label": label, "predict": predict,
                     "radius": radius, "correct": int(predict == label and predict != ABSTAIN),
                     "time": time.perf_counter() - start})
    return pd.DataFrame(rows)


def _test_images(dataset: str, data_dir: str | None, subset: int | None, subset_seed: int) -> data.Dataset:
    """The test split, or its seeded subset of ``subset`` images (:func:`rs_repro.data.load_dataset`)."""
    return data.load_dataset(dataset, "test", data_dir=data_dir, n=subset, seed=subset_seed)


def sweep_unit(*, dataset: str, data_dir: str | None, subset: int | None, subset_seed: int,
               model: Mapping[str, Any], sigma: float, n: int, batch_size: int, device: str,
               seed: int) -> pd.DataFrame:
    """The row of :func:`sigma_sweep` at one ``sigma`` on the test images (``subset``: see
    :func:`certify_units`)."""
    base, _ = load_model(dataset, model, data_dir=data_dir, device=device)
    test = _test_images(dataset, data_dir, subset, subset_seed)
    return sigma_sweep(base, data.num_classes(dataset), test.x, test.y, [sigma], n, batch_size, seed)


def sweep_units(*, dataset: str, data_dir: str | None, subset: int | None, subset_seed: int,
                model: Mapping[str, Any], sigmas: Sequence[float], n: int, batch_size: int, device: str = "cpu",
                seed: int) -> list[Unit]:
    """The sweep over sigma, one unit per sigma (each draws from its own generator, so the rows are those of
    one :func:`sigma_sweep` over all of them)."""
    return [Unit(f"sweep-sigma{sigma:g}", f"{_MODULE}:sweep_unit",
                 {"dataset": dataset, "data_dir": data_dir, "subset": subset, "subset_seed": subset_seed,
                  "model": dict(model), "sigma": sigma, "n": n, "batch_size": batch_size, "device": device,
                  "seed": seed}) for sigma in sigmas]


def certify_unit(*, dataset: str, data_dir: str | None, subset: int | None, subset_seed: int, images: list[int],
                 positions: list[int], model: Mapping[str, Any], name: str, sigma: float, n0: int, n: int,
                 alpha: float, batch_size: int, device: str, seed: int) -> pd.DataFrame:
    """One unit of certification: :func:`certify_rows` on the images at ``positions`` of ``images``."""
    base, _ = load_model(dataset, model, data_dir=data_dir, device=device)
    test = _test_images(dataset, data_dir, subset, subset_seed)
    chosen = torch.as_tensor(images)
    return certify_rows(base, data.num_classes(dataset), test.x[chosen], test.y[chosen], test.index[chosen],
                        positions, name=name, sigma=sigma, n0=n0, n=n, alpha=alpha, batch_size=batch_size,
                        seed=seed)


def certify_units(*, dataset: str, data_dir: str | None, subset: int | None = None, subset_seed: int = 0,
                  images: Sequence[int], chunk: int, model: Mapping[str, Any], name: str, sigma: float, n0: int,
                  n: int, alpha: float, batch_size: int, device: str = "cpu", seed: int) -> list[Unit]:
    """CERTIFY of one base model at one sigma, as units of ``chunk`` images.

    The images are positions ``images`` in the test split of ``dataset``, or in its seeded subset of
    ``subset`` images drawn with ``subset_seed``; the base model is a :func:`rs_repro.models.model_spec`.
    Every image draws its noise from its own generator, so the rows do not depend on the chunking.
    """
    return [Unit(f"certify-{name}-sigma{sigma:g}-images{start}", f"{_MODULE}:certify_unit",
                 {"dataset": dataset, "data_dir": data_dir, "subset": subset, "subset_seed": subset_seed,
                  "images": [int(i) for i in images], "positions": list(range(start, min(start + chunk, len(images)))),
                  "model": dict(model), "name": name, "sigma": sigma, "n0": n0, "n": n, "alpha": alpha,
                  "batch_size": batch_size, "device": device, "seed": seed})
            for start in range(0, len(images), chunk)]


def certified_tables(units: Sequence[Unit], done: Mapping[str, pd.DataFrame]) -> dict[tuple[str, float], pd.DataFrame]:
    """The rows of :func:`certify_units` units joined per (model name, sigma), in the order of ``units``."""
    tables: dict[tuple[str, float], list[pd.DataFrame]] = {}
    for unit in units:
        tables.setdefault((unit.arguments["name"], unit.arguments["sigma"]), []).append(done[unit.id])
    return {key: pd.concat(parts, ignore_index=True) for key, parts in tables.items()}


def check_parameters(values: Mapping[str, Any]) -> None:
    """The chapter's rules on its parameters (ValueError naming the first one broken), run before anything."""
    need = rule_checker(values)
    need(values["num_images"] >= 0, "num_images", "0 (the whole test split) or more")
    need(len(values["sigmas"]) in (0, 2) and len(set(values["sigmas"])) == len(values["sigmas"])
         and all(s > 0 for s in values["sigmas"]), "sigmas", "[] (chosen from the sweep) or two distinct noises > 0")
    need(len(values["accuracy_costs"]) == 2 and all(0 <= c < 1 for c in values["accuracy_costs"]),
         "accuracy_costs", "two accuracy drops in [0, 1)")
    need(bool(values["sweep_sigmas"]) and all(s > 0 for s in values["sweep_sigmas"]), "sweep_sigmas",
         "a non-empty list of noises > 0")
    need(values["randtrain_sigma"] > 0, "randtrain_sigma", "a noise > 0")
    need(0 < values["alpha"] < 1, "alpha", "a failure probability in (0, 1)")
    for name in ("sweep_n", "n0", "n", "batch_size"):
        need(values[name] >= 1, name, "at least 1")
    need(values["device"] == "cpu" or values["device"].startswith("cuda"), "device", "'cpu' or 'cuda[:k]'")


def certified_accuracy(rows: pd.DataFrame, radii: np.ndarray) -> pd.DataFrame:
    """Approximate certified accuracy (Cohen et al.): the fraction certified correct with radius >= r.

    Returns
    -------
    pandas.DataFrame
        Columns ``radius, certified_accuracy``.
    """
    correct = rows["correct"].to_numpy().astype(bool)
    radius = rows["radius"].to_numpy()
    return pd.DataFrame({"radius": radii,
                         "certified_accuracy": [float(np.mean(correct & (radius >= r))) for r in radii]})


def write_cohen_log(rows: pd.DataFrame, path: Path) -> Path:
    """Write ``rows`` as locuslab/smoothing's certification log: ``idx label predict radius correct time``.

    Tab-separated with a header, radius printed with 3 significant digits and time as a
    :class:`datetime.timedelta`, as their ``certify.py`` writes it, so their ``analyze.py`` reads it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["idx\tlabel\tpredict\tradius\tcorrect\ttime"]
    for r in rows.itertuples():
        elapsed = str(datetime.timedelta(seconds=float(r.time)))
        lines.append(f"{r.idx}\t{r.label}\t{r.predict}\t{r.radius:.3}\t{r.correct}\t{elapsed}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
