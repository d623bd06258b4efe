"""The white-box minimal distortions of the ``fig5_attacks`` chapter: a floor for the decision-based attacks'
distortions on the undefended model.

A module of its own, beside the compute half (``rs_repro.chapters.fig5_attacks.compute``): a unit's key
reads the code its function's module imports (``docs/architecture.md``, "The cache rule"), so the white-box
attack (:mod:`rs_repro.attacks.minimal`) enters the key of :func:`minimal_unit` and of no unit of the attack
grid, and an edit of the attack grid does not recompute the minimal distortions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from rs_repro.attacks.minimal import minimal_l2
from rs_repro.chapters import common
from rs_repro.models import load_model


def minimal_unit(*, dataset: str, data_dir: str | None, pool: int, index: list[int], model: Mapping[str, Any],
                 steps: int, device: str, seed: int) -> pd.DataFrame:
    """One row per attacked image, ``idx, minimal_l2``: the white-box minimal l2 distortion on the base model
    without smoothing (:func:`rs_repro.attacks.minimal.minimal_l2` with ``steps`` gradient steps), a floor
    for the attacks' distortions on it.

    ``index`` are the test-split positions of the attacked images, all in the chapter's pool
    (:func:`rs_repro.chapters.common.images_at`); ``model`` is a :func:`rs_repro.models.model_spec`.
    """
    base, _ = load_model(dataset, model, data_dir=data_dir, device=device)
    x, y = common.images_at(dataset, data_dir, pool, seed, index)
    found = minimal_l2(base, x.to(device), y.to(device), steps=steps)
    return pd.DataFrame({"idx": index, "minimal_l2": found.distance.cpu().numpy()})
