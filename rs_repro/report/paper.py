"""Numbers the paper reports, for side-by-side comparison only (never used as results).

Values were read off the figures of Maho, Furon, Le Merrer (ICASSP 2022); ``paper-notes.md`` section 2
gives the readings. A reading given as a range has ``l2_low < l2_high``; otherwise both are equal.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

_HSJA, _SURFREE, _RAYS = "HSJA", "SurFree", "RayS"


def _rows() -> list[dict]:
    rows = []

    def add(model, accuracy, sigma, n, pa, attack, low, high=None):
        rows.append({"model": model, "accuracy": accuracy, "sigma": sigma, "n": n, "pa": pa,
                     "attack": attack, "l2_low": low, "l2_high": low if high is None else high})

    for attack, value in ((_HSJA, 17.4), (_SURFREE, 15.9), (_RAYS, 13.4)):
        add("ResNet50", 0.75, None, None, None, attack, value)
    for attack, value in ((_HSJA, 22.8), (_SURFREE, 21.2), (_RAYS, 12.9)):
        add("AdvTrain", 0.56, None, None, None, attack, value)
    for n in (10, 50, 100):
        for pa in (0.8, 0.5):
            add("ResNet50/RS", 0.73, 0.05, n, pa, _HSJA, 46.6, 49.0)
    for n, (s80, s50) in {10: (41.0, 38.6), 50: (36.7, 35.8), 100: (33.9, 33.6)}.items():
        add("ResNet50/RS", 0.73, 0.05, n, 0.8, _SURFREE, s80)
        add("ResNet50/RS", 0.73, 0.05, n, 0.5, _SURFREE, s50)
    add("ResNet50/RS", 0.73, 0.05, 10, 0.8, _RAYS, 16.4)
    add("ResNet50/RS", 0.73, 0.05, 10, 0.5, _RAYS, 15.0)
    for n in (50, 100):
        add("ResNet50/RS", 0.73, 0.05, n, 0.8, _RAYS, 15.2, 15.3)
        add("ResNet50/RS", 0.73, 0.05, n, 0.5, _RAYS, 14.4, 14.6)
    sigma15 = {  # n: (accuracy, {attack: (Pa=0.8, Pa=0.5)})
        10: (0.60, {_HSJA: (38.7, 34.4), _SURFREE: (36.6, 32.0), _RAYS: (16.75, 14.15)}),
        50: (0.62, {_HSJA: (36.2, 36.2), _SURFREE: (34.9, 33.5), _RAYS: (15.0, 13.85)}),
        100: (0.635, {_HSJA: (36.9, 36.0), _SURFREE: (34.0, 33.4), _RAYS: (14.9, 13.8)}),
    }
    for n, (accuracy, by_attack) in sigma15.items():
        for attack, (v80, v50) in by_attack.items():
            add("ResNet50/RS", accuracy, 0.15, n, 0.8, attack, v80)
            add("ResNet50/RS", accuracy, 0.15, n, 0.5, attack, v50)
    for attack, (v80, v50) in {_HSJA: (37.0, 36.5), _SURFREE: (35.9, 33.1), _RAYS: (11.6, 11.05)}.items():
        add("RandTrain/RS", 0.64, 0.25, None, 0.8, attack, v80)
        add("RandTrain/RS", 0.64, 0.25, None, 0.5, attack, v50)
    return rows


def fig5_readings() -> pd.DataFrame:
    """Mean l2 distortions of Fig. 5 (2,000 queries, 200 ImageNet images), one row per marker.

    Returns
    -------
    pandas.DataFrame
        Columns ``model, accuracy, sigma, n, pa, attack, l2_low, l2_high``; ``n`` is missing where the
        paper shows no smoothing or leaves n unclear (RandTrain).
    """
    return pd.DataFrame(_rows())


def fig4_readings() -> pd.DataFrame:
    """Fig. 4 (certified accuracy against l2 radius, 200 ImageNet images), read off the figure.

    Returns
    -------
    pandas.DataFrame
        One row per model: ``model, sigma, clean_accuracy`` (the base ResNet50 without noise, 0.75),
        ``smoothed_accuracy`` (certified accuracy at radius 0) and ``last_radius`` (where the curve ends).
    """
    return pd.DataFrame([
        {"model": "ResNet50", "sigma": None, "clean_accuracy": 0.75, "smoothed_accuracy": None, "last_radius": None},
        {"model": "ResNet50/RS", "sigma": 0.05, "clean_accuracy": 0.75, "smoothed_accuracy": 0.735,
         "last_radius": 0.145},
        {"model": "ResNet50/RS", "sigma": 0.15, "clean_accuracy": 0.75, "smoothed_accuracy": 0.62,
         "last_radius": 0.47},
        {"model": "RandTrain/RS", "sigma": 0.25, "clean_accuracy": None, "smoothed_accuracy": 0.63,
         "last_radius": 0.80},
    ])


#: "distortions ... at least 30 times larger than the certified robustness" (section 4 of the paper).
DISTORTION_OVER_RADIUS = 30

#: The paper's Fig. 1 read off the figure (``paper-notes.md`` section 2; ImageNet, ResNet50, one image). The
#: entries are distances past x_a in l2: ``crossing`` where the boundary of g_sigma is crossed (the text says
#: about 4.0), and per n where P[g_{sigma,n} != y] reaches 0.8 (``distance_at_0.8``) and about 1
#: (``distance_at_1``); ``sigma`` is not stated, 0.05 is likely.
FIG1_READINGS: dict[str, Any] = {
    "crossing": 4.0,
    "sigma": 0.05,
    "distance_at_0.8": {5: 4.25, 10: 4.1, 50: 4.1},
    "distance_at_1": {5: 5.0, 10: 4.7, 50: 4.3},
}
