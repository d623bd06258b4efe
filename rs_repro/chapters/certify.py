"""CERTIFY (Cohen et al., 2019) over chosen test images: the unit that Fig. 4 and Fig. 5 both run.

Its own module, so that the units of either chapter that certify images read this code only, not the rest of
the certification chapter (``docs/architecture.md``, "The cache rule"); :func:`rs_repro.chapters.common.certify_units`
lists them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from rs_repro import data, seeds
from rs_repro.chapters import common
from rs_repro.models import load_model
from rs_repro.smoothing import ABSTAIN, Smooth


def certify_rows(model: nn.Module, num_classes: int, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor,
                 units: Sequence[int], *, name: str, sigma: float, n0: int, n: int, alpha: float,
                 batch_size: int, seed: int) -> pd.DataFrame:
    """CERTIFY on the images at positions ``units`` of ``x`` [B, C, H, W] (labels ``y`` [B], positions in the
    test split ``index`` [B]): one row per image.

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


def certify_unit(*, dataset: str, data_dir: str | None, subset: int | None, subset_seed: int, images: list[int],
                 positions: list[int], model: Mapping[str, Any], name: str, sigma: float, n0: int, n: int,
                 alpha: float, batch_size: int, device: str, seed: int) -> pd.DataFrame:
    """One unit of certification (:func:`rs_repro.chapters.common.certify_units`): :func:`certify_rows` on the
    images at ``positions`` of ``images``, themselves positions in the test images (``subset``: see
    :func:`rs_repro.chapters.fig4_certification.compute.images_unit`)."""
    base, _ = load_model(dataset, model, data_dir=data_dir, device=device)
    test = common.test_pool(dataset, data_dir, subset or 0, subset_seed)
    chosen = torch.as_tensor(images)
    return certify_rows(base, data.num_classes(dataset), test.x[chosen], test.y[chosen], test.index[chosen],
                        positions, name=name, sigma=sigma, n0=n0, n=n, alpha=alpha, batch_size=batch_size,
                        seed=seed)
